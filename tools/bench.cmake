# Measurement (issue 3): ferryd against a zero-logic relay in the same run.
#   cmake --build BUILD --target bench     (runs ferry_bench_pubsub)
add_executable(ferry_relay ${CMAKE_CURRENT_LIST_DIR}/relay.c)
target_link_libraries(ferry_relay PRIVATE ferry_warnings)

if(TARGET ferryd)
  add_executable(ferry_bench_pubsub ${CMAKE_CURRENT_LIST_DIR}/bench_pubsub.c)
  target_compile_definitions(ferry_bench_pubsub PRIVATE
    FERRYD_PATH="$<TARGET_FILE:ferryd>" RELAY_PATH="$<TARGET_FILE:ferry_relay>")
  target_link_libraries(ferry_bench_pubsub PRIVATE ferry_proto Threads::Threads ferry_warnings)
  add_dependencies(ferry_bench_pubsub ferryd ferry_relay)
  add_custom_target(bench
    COMMAND ferry_bench_pubsub
    DEPENDS ferry_bench_pubsub
    USES_TERMINAL
    COMMENT "1->1 and 1->8 pub/sub, 128-byte messages: relay vs ferryd")
endif()

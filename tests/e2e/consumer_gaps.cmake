# End-to-end tests of consumer semantics at the edges (label e2e): what a
# new subscription may and may not get, explicit acks without a durable.
if(NOT TARGET ferryd)
  return()
endif()

foreach(name 76_consumers_gaps)
  ferry_check_test(e2e_${name} LABEL e2e TIMEOUT 300
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/${name}.c
    LIBS ferry_test_support ferry_shared Threads::Threads)
  target_compile_definitions(e2e_${name} PRIVATE FERRYD_PATH="$<TARGET_FILE:ferryd>")
  add_dependencies(e2e_${name} ferryd)
endforeach()

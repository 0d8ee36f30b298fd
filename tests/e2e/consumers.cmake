# End-to-end tests of durable consumers (label e2e): resume across client
# reconnects and kill -9 of the broker, redelivery, dead letters, NAK/TERM,
# queue groups, in-use refusals, flow control and a randomized kill loop.
if(NOT TARGET ferryd)
  return()
endif()

set(names 72_consumers_durable 73_consumers_retention 74_consumers_crash
  82_consumers_wildcard)
# 75 runs the `ferry` tool, when it is built.
if(FERRY_CLI_TARGET AND TARGET ${FERRY_CLI_TARGET})
  list(APPEND names 75_consumers_cli)
endif()
foreach(name IN LISTS names)
  ferry_check_test(e2e_${name} LABEL e2e TIMEOUT 300
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/${name}.c
    LIBS ferry_test_support ferry_shared Threads::Threads)
  target_compile_definitions(e2e_${name} PRIVATE FERRYD_PATH="$<TARGET_FILE:ferryd>")
  add_dependencies(e2e_${name} ferryd)
  if(name STREQUAL "75_consumers_cli")
    target_compile_definitions(e2e_${name} PRIVATE
      FERRY_CLI_PATH="$<TARGET_FILE:${FERRY_CLI_TARGET}>")
    add_dependencies(e2e_${name} ${FERRY_CLI_TARGET})
  endif()
endforeach()

# Managing durables (list, delete, --verify of the consumers table); writes
# corrupt records through the store library.
ferry_check_test(e2e_79_consumers_admin LABEL e2e TIMEOUT 300
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/79_consumers_admin.c
  LIBS ferry_test_support ferry_shared ferry_store Threads::Threads)
target_compile_definitions(e2e_79_consumers_admin PRIVATE FERRYD_PATH="$<TARGET_FILE:ferryd>")
add_dependencies(e2e_79_consumers_admin ferryd)

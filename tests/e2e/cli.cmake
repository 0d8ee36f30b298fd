# End-to-end tests of the `ferry` tool: the real binary, run through pipes
# against a real ferryd (label e2e).
if(NOT TARGET ferry_test_support OR NOT FERRY_CLI_TARGET OR NOT TARGET ${FERRY_CLI_TARGET})
  return()
endif()
ferry_check_test(test_e2e_cli LABEL e2e TIMEOUT 180
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/60_cli.c LIBS ferry_test_support)
target_compile_definitions(test_e2e_cli PRIVATE FERRY_CLI_PATH="$<TARGET_FILE:${FERRY_CLI_TARGET}>")
add_dependencies(test_e2e_cli ${FERRY_CLI_TARGET})

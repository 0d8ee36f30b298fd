# End-to-end tests of the `ferry` tool: the real binary, run through pipes
# against a real ferryd (label e2e).
if(NOT TARGET ferry_test_support OR NOT FERRY_CLI_TARGET OR NOT TARGET ${FERRY_CLI_TARGET})
  return()
endif()
foreach(pair "test_e2e_cli;60_cli" "test_e2e_cli_bench;61_cli_bench"
             "test_e2e_cli_admin;62_cli_admin")
  list(GET pair 0 name)
  list(GET pair 1 file)
  ferry_check_test(${name} LABEL e2e TIMEOUT 180
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/${file}.c ${CMAKE_CURRENT_LIST_DIR}/cli_e2e.c
    LIBS ferry_test_support)
  target_compile_definitions(${name} PRIVATE FERRY_CLI_PATH="$<TARGET_FILE:${FERRY_CLI_TARGET}>")
  add_dependencies(${name} ${FERRY_CLI_TARGET})
endforeach()

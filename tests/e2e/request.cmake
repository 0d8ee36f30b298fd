# End-to-end tests of request/reply (label e2e, issue 16 item 2): a real
# ferryd, libferry's ferry_request() and the `ferry request` / `ferry reply`
# pair, and the inbox under an auth file.
if(NOT TARGET ferry_test_support OR NOT FERRY_CLI_TARGET OR NOT TARGET ${FERRY_CLI_TARGET})
  return()
endif()
find_library(FERRY_E2E_LIBCRYPT crypt REQUIRED)
ferry_check_test(e2e_90_request LABEL e2e TIMEOUT 120
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/90_request.c ${CMAKE_CURRENT_LIST_DIR}/cli_e2e.c
  LIBS ferry_test_support ferry_shared ${FERRY_E2E_LIBCRYPT})
target_compile_definitions(e2e_90_request PRIVATE
  FERRY_CLI_PATH="$<TARGET_FILE:${FERRY_CLI_TARGET}>")
add_dependencies(e2e_90_request ${FERRY_CLI_TARGET})

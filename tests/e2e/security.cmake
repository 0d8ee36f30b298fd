# End-to-end tests of authentication and authorization (label e2e): a real
# ferryd with an auth file, over the wire and through the `ferry` tool.
if(NOT TARGET ferry_test_support)
  return()
endif()
find_library(FERRY_E2E_LIBCRYPT crypt REQUIRED)
ferry_check_test(e2e_80_security LABEL e2e TIMEOUT 120
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/80_security.c
  LIBS ferry_test_support ferry_proto ${FERRY_E2E_LIBCRYPT})
# Durables and their dead letters belong to their owners (issue 14, item 3).
ferry_check_test(e2e_83_owned_consumers LABEL e2e TIMEOUT 120
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/83_owned_consumers.c
  LIBS ferry_test_support ferry_proto ${FERRY_E2E_LIBCRYPT})
# Through the `ferry` tool (its passwd command makes the auth file).
if(FERRY_CLI_TARGET AND TARGET ${FERRY_CLI_TARGET})
  ferry_check_test(e2e_81_security_cli LABEL e2e TIMEOUT 180
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/81_security_cli.c LIBS ferry_test_support)
  target_compile_definitions(e2e_81_security_cli PRIVATE
    FERRY_CLI_PATH="$<TARGET_FILE:${FERRY_CLI_TARGET}>")
  add_dependencies(e2e_81_security_cli ${FERRY_CLI_TARGET})
  # The auth file's strictness, through ferryd and `ferry passwd` (issue
  # 14, item 4).
  ferry_check_test(e2e_84_auth_file LABEL e2e TIMEOUT 120
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/84_auth_file.c
    LIBS ferry_test_support ferry_proto ${FERRY_E2E_LIBCRYPT})
  target_compile_definitions(e2e_84_auth_file PRIVATE
    FERRY_CLI_PATH="$<TARGET_FILE:${FERRY_CLI_TARGET}>")
  add_dependencies(e2e_84_auth_file ${FERRY_CLI_TARGET})
endif()

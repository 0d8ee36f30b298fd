# End-to-end tests of authentication and authorization (label e2e): a real
# ferryd with an auth file, over the wire and through the `ferry` tool.
if(NOT TARGET ferry_test_support)
  return()
endif()
find_library(FERRY_E2E_LIBCRYPT crypt REQUIRED)
ferry_check_test(e2e_80_security LABEL e2e TIMEOUT 120
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/80_security.c
  LIBS ferry_test_support ferry_proto ${FERRY_E2E_LIBCRYPT})

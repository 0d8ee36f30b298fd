# End-to-end tests of TLS (label e2e): a real ferryd with a TLS listener,
# libferry and the `ferry` tool over it. The certificates are made at test
# time with OpenSSL's C API (tests/support/tls_certs.c, in ferry_test_support).
if(NOT TARGET ferry_test_support OR NOT FERRY_OPENSSL_FOUND)
  return()
endif()
ferry_check_test(e2e_84_tls LABEL e2e TIMEOUT 120
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/84_tls.c
  LIBS ferry_test_support ferry_shared)
if(FERRY_CLI_TARGET AND TARGET ${FERRY_CLI_TARGET})
  target_compile_definitions(e2e_84_tls PRIVATE
    FERRY_CLI_PATH="$<TARGET_FILE:${FERRY_CLI_TARGET}>")
  add_dependencies(e2e_84_tls ${FERRY_CLI_TARGET})
endif()

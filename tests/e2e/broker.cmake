# End-to-end tests of ferryd over real sockets (label e2e), and the support
# library every e2e/client/CLI test uses to run a real broker.
if(NOT TARGET ferryd)
  return()
endif()

# ferry_test_support: ferryd_proc (start/stop a real ferryd), rawclient (a
# small blocking client built on the codec) and cli_spawn (run the ferry CLI
# on pipes).
add_library(ferry_test_support STATIC
  ${CMAKE_CURRENT_LIST_DIR}/../support/ferryd_proc.c
  ${CMAKE_CURRENT_LIST_DIR}/../support/rawclient.c
  ${CMAKE_CURRENT_LIST_DIR}/../support/cli_spawn.c)
target_include_directories(ferry_test_support PUBLIC ${CMAKE_CURRENT_LIST_DIR}/../support)
target_compile_definitions(ferry_test_support PRIVATE FERRYD_PATH="$<TARGET_FILE:ferryd>")
target_link_libraries(ferry_test_support PUBLIC ferry_proto PRIVATE ferry_warnings)
# FERRY_TEST_TLS=1 runs the suites over TLS (ferryd_proc.h); tls_certs makes
# the certificates for that and for e2e/84_tls.c.
if(FERRY_OPENSSL_FOUND)
  target_sources(ferry_test_support PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../support/tls_certs.c)
  target_compile_definitions(ferry_test_support PRIVATE FERRY_TEST_HAVE_TLS)
  target_link_libraries(ferry_test_support PUBLIC OpenSSL::SSL OpenSSL::Crypto)
endif()
add_dependencies(ferry_test_support ferryd)

# One Check program per area; every tcase is a ctest entry (label e2e).
foreach(name 01_pubsub 02_protocol 03_limits 04_resources 05_hardening)
  ferry_check_test(e2e_${name} LABEL e2e TIMEOUT 300
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/${name}.c LIBS ferry_test_support ferry_proto)
endforeach()

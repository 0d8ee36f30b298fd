# libferry's tests (label client), against the real ferryd of this build.
if(NOT TARGET ferryd)
  return()
endif()

ferry_check_test(test_client LABEL client TIMEOUT 180
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_client.c
  LIBS ferry_shared ferry_test_support Threads::Threads)
# needs_store exits 77 (skipped, with its reason on stdout) while the broker
# has no store: it acks with sequence 0.
set_tests_properties(test_client.needs_store PROPERTIES SKIP_RETURN_CODE 77)

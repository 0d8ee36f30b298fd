# End-to-end tests of what operators use (label e2e): the metrics endpoint.
if(NOT TARGET ferry_test_support)
  return()
endif()
ferry_check_test(e2e_85_metrics LABEL e2e TIMEOUT 180
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/85_metrics.c
  LIBS ferry_test_support ferry_shared Threads::Threads)
# Without promtool (Debian: prometheus) that case exits 77 (skipped).
set_tests_properties(e2e_85_metrics.promtool_accepts PROPERTIES SKIP_RETURN_CODE 77)
target_compile_definitions(e2e_85_metrics PRIVATE FERRYD_PATH="$<TARGET_FILE:ferryd>")

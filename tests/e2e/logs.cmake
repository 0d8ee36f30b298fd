# End-to-end tests of ferryd's log (label e2e): --log-format text|json. The
# JSON lines are checked by python3's json module (json_log_check.py);
# without python3 (Debian: python3, which .ci/deps installs) the test is not
# built.
if(NOT TARGET ferry_test_support)
  return()
endif()
find_program(FERRY_PYTHON3 python3)
if(NOT FERRY_PYTHON3)
  message(STATUS "python3 not found: e2e_89_log_format (JSON log lines) is not built")
  return()
endif()
ferry_check_test(e2e_89_log_format LABEL e2e TIMEOUT 90
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/89_log_format.c LIBS ferry_test_support ferry_proto)
target_compile_definitions(e2e_89_log_format PRIVATE
  PYTHON3_PATH="${FERRY_PYTHON3}"
  JSON_LOG_CHECK="${CMAKE_CURRENT_LIST_DIR}/json_log_check.py")

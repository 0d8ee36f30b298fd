# Unit tests of the `ferry` tool's pure helpers (tools/).
ferry_check_test(test_hist LABEL unit
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_hist.c LIBS ferry_cli_util)
ferry_check_test(test_cli_util LABEL unit
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_cli_util.c LIBS ferry_cli_util)

# The log's line formats (broker/log_line.c): text and JSON, byte for byte.
if(NOT TARGET ferry_broker)
  return()
endif()
ferry_check_test(test_log LABEL unit
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_log.c LIBS ferry_broker)

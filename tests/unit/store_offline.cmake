# Unit tests of offline store access (broker/store_offline.c: read-only
# opens, compacted copies, recovery on demand) and of the tests' JSON checker.
ferry_check_test(test_store_offline LABEL unit
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_store_offline.c LIBS ferry_store)
ferry_check_test(test_json_check LABEL unit
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_json_check.c
    ${CMAKE_CURRENT_LIST_DIR}/../support/json_check.c)

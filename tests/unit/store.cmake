# Unit tests of the store module (broker/store*.c) and of CRC-32C (proto/crc32c.c).
ferry_check_test(test_crc32c LABEL unit
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_crc32c.c LIBS ferry_store)
ferry_check_test(test_store LABEL unit TIMEOUT 300
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_store.c LIBS ferry_store Threads::Threads)
ferry_check_test(test_store_wal LABEL unit TIMEOUT 300
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_store_wal.c LIBS ferry_store Threads::Threads)
ferry_check_test(test_store_dedupe LABEL unit
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_store_dedupe.c LIBS ferry_store)
ferry_check_test(test_store_map LABEL unit TIMEOUT 300
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_store_map.c LIBS ferry_store Threads::Threads)
ferry_check_test(test_store_lastval LABEL unit
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_store_lastval.c LIBS ferry_store)
ferry_check_test(test_store_sched LABEL unit
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_store_sched.c LIBS ferry_store)

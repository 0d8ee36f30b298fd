# Unit tests of libferry's pure pieces (client-lib/src).
ferry_check_test(test_owner_cache LABEL unit
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_owner_cache.c
          ${PROJECT_SOURCE_DIR}/client-lib/src/owner_cache.c)
target_include_directories(test_owner_cache PRIVATE ${PROJECT_SOURCE_DIR}/client-lib/src)

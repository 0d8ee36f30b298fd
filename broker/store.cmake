# The store module: the only code that includes lmdb.h. Included by
# broker/CMakeLists.txt; ferryd links ferry_store.
add_library(ferry_store STATIC
  ${CMAKE_CURRENT_LIST_DIR}/store.c
  ${CMAKE_CURRENT_LIST_DIR}/store_ckpt.c
  ${CMAKE_CURRENT_LIST_DIR}/store_codec.c
  ${CMAKE_CURRENT_LIST_DIR}/store_offline.c
  ${CMAKE_CURRENT_LIST_DIR}/store_purge.c
  ${CMAKE_CURRENT_LIST_DIR}/store_dedupe.c
  ${CMAKE_CURRENT_LIST_DIR}/store_sched.c
  ${CMAKE_CURRENT_LIST_DIR}/store_lastval.c
  ${CMAKE_CURRENT_LIST_DIR}/store_read.c
  ${CMAKE_CURRENT_LIST_DIR}/store_verify.c
  ${CMAKE_CURRENT_LIST_DIR}/store_wal.c
  ${CMAKE_CURRENT_LIST_DIR}/store_write.c)
target_include_directories(ferry_store PUBLIC
  ${CMAKE_CURRENT_LIST_DIR} ${PROJECT_SOURCE_DIR}/client-lib/include)
target_link_libraries(ferry_store PUBLIC ferry_crc PkgConfig::LMDB Threads::Threads PRIVATE ferry_warnings)

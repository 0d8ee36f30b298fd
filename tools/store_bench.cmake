# Measurement of the store (issue 4): the disk's write + fdatasync rate (the
# yardstick for acked publishes with 1 in flight), and a fast filler for
# measuring ferryd's start-up time with millions of stored messages.
#   ferry_fsync_rate --dir DIR --seconds 3 [--overwrite]
#   ferry_store_fill DIR --messages 10000000
# and two scripts around them and `ferry bench`:
#   sh tools/store_bench.sh BUILD [DATA_PARENT]   acked publishes vs fsync rate
#   sh tools/startup_time.sh BUILD DIR [RUNS]      exec to ready line
add_executable(ferry_fsync_rate ${CMAKE_CURRENT_LIST_DIR}/fsync_rate.c)
target_link_libraries(ferry_fsync_rate PRIVATE ferry_warnings)
if(TARGET ferry_store)
  add_executable(ferry_store_fill ${CMAKE_CURRENT_LIST_DIR}/store_fill.c)
  target_link_libraries(ferry_store_fill PRIVATE ferry_store ferry_warnings)
endif()

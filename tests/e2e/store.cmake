# End-to-end tests of the store in ferryd (label e2e): durability across
# kill -9, the crash loop, fault injection (failing fsync through an
# LD_PRELOAD shim, tiny map, full tmpfs), integrity, start positions and the
# catch-up-to-live seam.
if(NOT TARGET ferryd)
  return()
endif()

# FERRY_FAILSYNC_AFTER=N / FERRY_FAILSYNC_FLAG=FILE make fsync, fdatasync and
# msync(MS_SYNC) fail with EIO (tests/support/failsync.c).
add_library(ferry_failsync SHARED ${CMAKE_CURRENT_LIST_DIR}/../support/failsync.c)
target_link_libraries(ferry_failsync PRIVATE ${CMAKE_DL_LIBS} ferry_warnings)

foreach(name 70_store_durability 71_store_catchup)
  ferry_check_test(e2e_${name} LABEL e2e TIMEOUT 300
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/${name}.c
    LIBS ferry_test_support ferry_shared Threads::Threads)
  target_compile_definitions(e2e_${name} PRIVATE
    FERRYD_PATH="$<TARGET_FILE:ferryd>" FAILSYNC_PATH="$<TARGET_FILE:ferry_failsync>")
  add_dependencies(e2e_${name} ferryd ferry_failsync)
endforeach()
# Mounting a tmpfs needs root: without it the case exits 77 (skipped).
set_tests_properties(e2e_70_store_durability.disk_full PROPERTIES SKIP_RETURN_CODE 77)

# Idempotent publishing: duplicates answered, and the kill -9 loop.
ferry_check_test(e2e_91_idempotent LABEL e2e TIMEOUT 300
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/91_idempotent.c
  LIBS ferry_test_support ferry_shared Threads::Threads)
target_compile_definitions(e2e_91_idempotent PRIVATE FERRYD_PATH="$<TARGET_FILE:ferryd>")
add_dependencies(e2e_91_idempotent ferryd)

# Last-value topics: current values per key, then live; kill -9; retention;
# refusals; `ferry sub --last-per-key` (the CLI run through cli_e2e.c).
if(FERRY_CLI_TARGET AND TARGET ${FERRY_CLI_TARGET})
  ferry_check_test(e2e_92_last_value LABEL e2e TIMEOUT 300
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/92_last_value.c ${CMAKE_CURRENT_LIST_DIR}/cli_e2e.c
    LIBS ferry_test_support ferry_shared Threads::Threads)
  target_compile_definitions(e2e_92_last_value PRIVATE FERRYD_PATH="$<TARGET_FILE:ferryd>"
    FERRY_CLI_PATH="$<TARGET_FILE:${FERRY_CLI_TARGET}>")
  add_dependencies(e2e_92_last_value ferryd ${FERRY_CLI_TARGET})
endif()

# Delayed delivery and expiry (Publish.deliver_at, ttl_ms): order, restart,
# catch-up, durables, retention, refusals; `ferry pub --delay/--ttl`.
if(FERRY_CLI_TARGET AND TARGET ${FERRY_CLI_TARGET})
  ferry_check_test(e2e_94_delayed LABEL e2e TIMEOUT 300
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/94_delayed.c ${CMAKE_CURRENT_LIST_DIR}/cli_e2e.c
    LIBS ferry_test_support ferry_shared Threads::Threads)
  target_compile_definitions(e2e_94_delayed PRIVATE FERRYD_PATH="$<TARGET_FILE:ferryd>"
    FERRY_CLI_PATH="$<TARGET_FILE:${FERRY_CLI_TARGET}>")
  add_dependencies(e2e_94_delayed ferryd ${FERRY_CLI_TARGET})
endif()

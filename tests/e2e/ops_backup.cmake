# End-to-end tests of hot backup (`ferry backup`, label e2e) and of
# `ferryd --inspect`: the real ferryd and ferry binaries.
if(NOT TARGET ferry_test_support OR NOT FERRY_CLI_TARGET OR NOT TARGET ${FERRY_CLI_TARGET})
  return()
endif()
find_library(FERRY_BACKUP_E2E_LIBCRYPT crypt REQUIRED)
ferry_check_test(e2e_86_backup LABEL e2e TIMEOUT 300
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/86_backup.c
  LIBS ferry_test_support ferry_shared Threads::Threads ${FERRY_BACKUP_E2E_LIBCRYPT})
target_compile_definitions(e2e_86_backup PRIVATE FERRYD_PATH="$<TARGET_FILE:ferryd>"
  FERRY_CLI_PATH="$<TARGET_FILE:${FERRY_CLI_TARGET}>")
add_dependencies(e2e_86_backup ferryd ${FERRY_CLI_TARGET})
ferry_check_test(e2e_87_inspect LABEL e2e TIMEOUT 300
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/87_inspect.c ${CMAKE_CURRENT_LIST_DIR}/../support/json_check.c
  LIBS ferry_test_support ferry_shared Threads::Threads)
target_compile_definitions(e2e_87_inspect PRIVATE FERRYD_PATH="$<TARGET_FILE:ferryd>")
add_dependencies(e2e_87_inspect ferryd)

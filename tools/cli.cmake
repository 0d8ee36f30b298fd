# The `ferry` command-line tool. Its pure helpers (histogram, parsing, JSON)
# form a static library that the unit tests link as well.
add_library(ferry_cli_util STATIC
  ${CMAKE_CURRENT_LIST_DIR}/cli_util.c
  ${CMAKE_CURRENT_LIST_DIR}/hist.c)
target_include_directories(ferry_cli_util PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(ferry_cli_util PRIVATE ferry_warnings)

# The `ferry` executable: only libferry's public API (ferry.h), linked
# statically so the binary runs from the build tree and after install alike.
if(NOT TARGET ferry_static)
  set(FERRY_CLI_TARGET "" CACHE INTERNAL "target of the ferry CLI")
  return()
endif()
add_executable(ferry
  ${CMAKE_CURRENT_LIST_DIR}/ferry.c
  ${CMAKE_CURRENT_LIST_DIR}/cmd_pub.c
  ${CMAKE_CURRENT_LIST_DIR}/cmd_sub.c
  ${CMAKE_CURRENT_LIST_DIR}/cmd_bench.c
  ${CMAKE_CURRENT_LIST_DIR}/cmd_admin.c
  ${CMAKE_CURRENT_LIST_DIR}/cmd_backup.c
  ${CMAKE_CURRENT_LIST_DIR}/cmd_passwd.c
  ${CMAKE_CURRENT_LIST_DIR}/cmd_request.c
  ${CMAKE_CURRENT_LIST_DIR}/cmd_top.c
  ${CMAKE_CURRENT_LIST_DIR}/cmd_cluster.c)
target_compile_definitions(ferry PRIVATE FERRY_CLI_VERSION="${PROJECT_VERSION}")
# `ferry passwd` hashes with crypt(3) from libxcrypt (Debian: libcrypt-dev).
find_library(FERRY_CLI_LIBCRYPT crypt REQUIRED)
target_link_libraries(ferry PRIVATE ferry_cli_util ferry_static Threads::Threads
  ${FERRY_CLI_LIBCRYPT} ferry_warnings)
install(TARGETS ferry RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT ferry)
set(FERRY_CLI_TARGET ferry CACHE INTERNAL "target of the ferry CLI")

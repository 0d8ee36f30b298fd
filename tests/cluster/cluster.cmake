# Cluster mode, phase 1 (broker/CLUSTER.md), end to end: a three-server
# ZooKeeper ensemble (Debian: zookeeper) and three ferryd on loopback. Label
# cluster; each test exits 77 (skipped) where java or ZooKeeper is missing,
# or where ferryd is built without cluster mode.
if(NOT TARGET ferryd)
  return()
endif()
add_executable(cluster_test
  ${CMAKE_CURRENT_LIST_DIR}/cluster_test.c
  ${CMAKE_CURRENT_LIST_DIR}/cluster_route.c
  ${CMAKE_CURRENT_LIST_DIR}/zk_ensemble.c)
find_library(FERRY_CLUSTER_LIBCRYPT crypt REQUIRED)
target_link_libraries(cluster_test PRIVATE ferry_shared ferry_test_support ferry_proto
  Threads::Threads ferry_warnings ${FERRY_CLUSTER_LIBCRYPT})
# `ferry cluster` is checked too, where the CLI is built.
if(FERRY_CLI_TARGET)
  target_compile_definitions(cluster_test PRIVATE
    FERRY_CLI_PATH="$<TARGET_FILE:${FERRY_CLI_TARGET}>")
  add_dependencies(cluster_test ${FERRY_CLI_TARGET})
endif()
# One ensemble at a time (RESOURCE_LOCK): six JVMs at once on a shared
# 2-core machine would stretch the 4 s sessions the tests rely on.
foreach(t placement failover zkleader routing auth standalone)
  add_test(NAME cluster.${t} COMMAND cluster_test ${t})
  set_tests_properties(cluster.${t} PROPERTIES LABELS cluster TIMEOUT 150 SKIP_RETURN_CODE 77
    RESOURCE_LOCK zookeeper_ensemble)
endforeach()

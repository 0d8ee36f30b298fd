# Power cuts (label powerloss): ferryd on the workplace's power-loss
# simulator (a FUSE filesystem that drops unsynced writes on command), with a
# publisher logging its acks outside it; after every cut each acked message
# must be stored at its sequence with its exact payload (sync always), or
# the store must stay whole (sync interval, none). Skipped (77) where FUSE,
# fuse3/libfuse3-dev or the simulator's sources are missing.
# FERRY_POWERLOSS_DIR: the simulator's sources (powerloss.sh, plfs.c).
if(NOT TARGET ferryd)
  return()
endif()
set(FERRY_POWERLOSS_DIR "${CMAKE_SOURCE_DIR}/../shared/tools/powerloss"
  CACHE PATH "the power-loss simulator's sources (plfs.c, powerloss.sh)")

add_executable(pl_client ${CMAKE_CURRENT_LIST_DIR}/pl_client.c)
target_link_libraries(pl_client PRIVATE ferry_shared ferry_warnings)

# Sanitizer builds run the same cuts much slower: fewer of them there.
if(FERRY_SANITIZE)
  set(cuts_always 10)
  set(cuts_weak 5)
else()
  set(cuts_always 50)
  set(cuts_weak 20)
endif()
foreach(policy always interval none)
  if(policy STREQUAL "always")
    set(cuts ${cuts_always})
  else()
    set(cuts ${cuts_weak})
  endif()
  add_test(NAME powerloss.${policy}
    COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/powerloss.sh $<TARGET_FILE:ferryd>
            $<TARGET_FILE:pl_client>)
  set_tests_properties(powerloss.${policy} PROPERTIES
    ENVIRONMENT "FERRY_POWERLOSS_SYNC=${policy};FERRY_POWERLOSS_CUTS=${cuts};FERRY_POWERLOSS_DIR=${FERRY_POWERLOSS_DIR}"
    LABELS powerloss TIMEOUT 600 SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)
endforeach()

# ferryd under systemd (label e2e): the notification protocol, READY=1,
# RELOADING=1, STOPPING=1 and WATCHDOG=1 (88_service_notify.c), in builds
# with libsystemd (broker/CMakeLists.txt).
if(NOT TARGET ferry_test_support OR NOT FERRY_HAVE_SYSTEMD)
  return()
endif()
ferry_check_test(e2e_88_service_notify LABEL e2e TIMEOUT 120
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/88_service_notify.c
  LIBS ferry_test_support ferry_proto)

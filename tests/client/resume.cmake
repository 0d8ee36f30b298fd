# libferry resumes a subscription to one stored topic after a reconnect at
# the next sequence it had not received (label client), against the real
# ferryd of this build.
if(NOT TARGET ferryd)
  return()
endif()

ferry_check_test(test_client_resume LABEL client TIMEOUT 180
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_client_resume.c
  LIBS ferry_shared ferry_test_support)

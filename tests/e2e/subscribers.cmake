# TopicInfo.subscribers (`ferry topic info`): live subscriptions matching a
# topic, counted by the worker that owns it (label e2e).
if(NOT TARGET ferryd)
  return()
endif()

ferry_check_test(e2e_76_topic_subscribers LABEL e2e TIMEOUT 120
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/76_topic_subscribers.c
  LIBS ferry_test_support ferry_shared)

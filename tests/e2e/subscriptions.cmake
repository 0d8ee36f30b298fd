# Subscriptions as the admin API and reconnecting clients see them (label
# e2e): TopicInfo.subscribers (`ferry topic info`), the live subscriptions
# matching a topic, counted by the worker that owns it; SubAck.next_sequence,
# where a subscription to one stored topic starts.
if(NOT TARGET ferryd)
  return()
endif()

ferry_check_test(e2e_78_topic_subscribers LABEL e2e TIMEOUT 120
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/78_topic_subscribers.c
  LIBS ferry_test_support ferry_shared)
ferry_check_test(e2e_77_suback_next_sequence LABEL e2e TIMEOUT 60
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/77_suback_next_sequence.c
  LIBS ferry_test_support ferry_proto)

# Unit tests of the broker's modules (broker/): one Check program per module.
if(NOT TARGET ferry_broker)
  return()
endif()
foreach(mod trie topic timer_heap mailbox consumer_rec reactor mqtt_codec mqtt_topic mqtt_retain mqtt_clients mqtt_sys cluster)
  ferry_check_test(test_${mod} LABEL unit
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_${mod}.c LIBS ferry_broker)
endforeach()
ferry_check_test(test_consumer LABEL unit
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_consumer.c LIBS ferry_broker)
ferry_check_test(test_broker_config LABEL unit
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_config.c LIBS ferry_broker)
# The connection state machine, with an in-process IO thread over socketpairs.
if(TARGET ferry_test_support OR FERRY_TESTS)
  ferry_check_test(test_conn LABEL unit
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_conn.c LIBS ferry_broker ferry_test_support)
endif()

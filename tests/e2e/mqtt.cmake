# End-to-end tests of the MQTT 3.1.1 listener (label e2e, issue 17): a real
# ferryd with --mqtt-listen against the real clients of mosquitto-clients and
# python3-paho-mqtt (each case skips, 77, without its tool), and raw sockets.
if(NOT TARGET ferry_test_support)
  return()
endif()
find_library(FERRY_E2E_MQTT_LIBCRYPT crypt REQUIRED)
ferry_check_test(e2e_93_mqtt LABEL e2e TIMEOUT 120
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/93_mqtt.c
  LIBS ferry_test_support ferry_proto ${FERRY_E2E_MQTT_LIBCRYPT})
set_tests_properties(
  e2e_93_mqtt.mosquitto_pub_to_ferry_sub e2e_93_mqtt.ferry_pub_to_mosquitto_sub
  e2e_93_mqtt.paho_qos e2e_93_mqtt.paho_retained e2e_93_mqtt.auth_acl
  e2e_93_mqtt.tls
  PROPERTIES SKIP_RETURN_CODE 77)
# MQTT over TLS: the certificates are made at test time (tls_certs.h).
if(FERRY_OPENSSL_FOUND)
  target_compile_definitions(e2e_93_mqtt PRIVATE E2E_MQTT_TLS)
endif()
# Persistent sessions (clean session 0): raw MQTT clients in python3.
ferry_check_test(e2e_95_mqtt_session LABEL e2e TIMEOUT 120
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/95_mqtt_session.c
  LIBS ferry_test_support ferry_proto)
set_tests_properties(
  e2e_95_mqtt_session.resume e2e_95_mqtt_session.redeliver_dup e2e_95_mqtt_session.kill9
  e2e_95_mqtt_session.clean e2e_95_mqtt_session.takeover e2e_95_mqtt_session.retained_kill9
  PROPERTIES SKIP_RETURN_CODE 77)
# The broker's $SYS topics (mqtt_sys_out.c): raw MQTT clients, and
# mosquitto_sub for one case (skipped, 77, without it).
ferry_check_test(e2e_96_mqtt_sys LABEL e2e TIMEOUT 120
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/96_mqtt_sys.c
  LIBS ferry_test_support ferry_proto ${FERRY_E2E_MQTT_LIBCRYPT})
set_tests_properties(e2e_96_mqtt_sys.mosquitto_sub PROPERTIES SKIP_RETURN_CODE 77)

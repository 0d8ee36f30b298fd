# Fuzz targets. With FERRY_FUZZ=ON (CC=clang) they are libFuzzer programs:
#   build-fuzz/tests/fuzz_frame -max_total_time=600 tests/fuzz/corpus/frame
# Every build also replays the committed corpus through them (label unit).
set(FUZZ_DIR ${CMAKE_CURRENT_LIST_DIR})
if(FERRY_FUZZ)
  add_executable(fuzz_frame ${FUZZ_DIR}/fuzz_frame.c)
  target_link_libraries(fuzz_frame PRIVATE ferry_proto ferry_warnings)
  target_link_options(fuzz_frame PRIVATE -fsanitize=fuzzer,address)
endif()
add_executable(fuzz_frame_replay ${FUZZ_DIR}/fuzz_frame.c ${FUZZ_DIR}/replay_main.c)
target_link_libraries(fuzz_frame_replay PRIVATE ferry_proto ferry_warnings)
add_test(NAME fuzz_frame.replay_corpus COMMAND fuzz_frame_replay ${FUZZ_DIR}/corpus/frame)
set_tests_properties(fuzz_frame.replay_corpus PROPERTIES LABELS unit TIMEOUT 300)

# fuzz_conn: the connection state machine (in-process IO thread and worker,
# with and without an auth file), one connection per input.
if(TARGET ferry_broker)
  find_library(FERRY_FUZZ_LIBCRYPT crypt REQUIRED)
  if(FERRY_FUZZ)
    add_executable(fuzz_conn ${FUZZ_DIR}/fuzz_conn.c ${FUZZ_DIR}/fuzz_server.c)
    target_link_libraries(fuzz_conn PRIVATE ferry_broker ${FERRY_FUZZ_LIBCRYPT} ferry_warnings)
    target_link_options(fuzz_conn PRIVATE -fsanitize=fuzzer,address)
  endif()
  add_executable(fuzz_conn_replay ${FUZZ_DIR}/fuzz_conn.c ${FUZZ_DIR}/fuzz_server.c
    ${FUZZ_DIR}/replay_main.c)
  target_link_libraries(fuzz_conn_replay PRIVATE ferry_broker ${FERRY_FUZZ_LIBCRYPT} ferry_warnings)
  add_test(NAME fuzz_conn.replay_corpus COMMAND fuzz_conn_replay ${FUZZ_DIR}/corpus/conn)
  set_tests_properties(fuzz_conn.replay_corpus PROPERTIES LABELS unit TIMEOUT 300)
endif()

# fuzz_auth: the auth file parser and the rights it builds.
if(TARGET ferry_broker)
  if(FERRY_FUZZ)
    add_executable(fuzz_auth ${FUZZ_DIR}/fuzz_auth.c)
    target_link_libraries(fuzz_auth PRIVATE ferry_broker ${FERRY_FUZZ_LIBCRYPT} ferry_warnings)
    target_link_options(fuzz_auth PRIVATE -fsanitize=fuzzer,address)
  endif()
  add_executable(fuzz_auth_replay ${FUZZ_DIR}/fuzz_auth.c ${FUZZ_DIR}/replay_main.c)
  target_link_libraries(fuzz_auth_replay PRIVATE ferry_broker ${FERRY_FUZZ_LIBCRYPT} ferry_warnings)
  add_test(NAME fuzz_auth.replay_corpus COMMAND fuzz_auth_replay ${FUZZ_DIR}/corpus/auth)
  set_tests_properties(fuzz_auth.replay_corpus PROPERTIES LABELS unit TIMEOUT 300)
endif()

# fuzz_tls: the TLS listener's path (handshake in the reactor, then the first
# frames through the session), raw bytes or a real client; see fuzz_tls.c.
if(TARGET ferry_broker AND FERRY_OPENSSL_FOUND)
  set(FUZZ_TLS_SOURCES ${FUZZ_DIR}/fuzz_tls.c ${FUZZ_DIR}/fuzz_server.c
    ${FUZZ_DIR}/../support/tls_certs.c)
  if(FERRY_FUZZ)
    add_executable(fuzz_tls ${FUZZ_TLS_SOURCES})
    target_include_directories(fuzz_tls PRIVATE ${FUZZ_DIR}/../support)
    target_link_libraries(fuzz_tls PRIVATE ferry_broker ${FERRY_FUZZ_LIBCRYPT} ferry_warnings)
    target_link_options(fuzz_tls PRIVATE -fsanitize=fuzzer,address)
  endif()
  add_executable(fuzz_tls_replay ${FUZZ_TLS_SOURCES} ${FUZZ_DIR}/replay_main.c)
  target_include_directories(fuzz_tls_replay PRIVATE ${FUZZ_DIR}/../support)
  target_link_libraries(fuzz_tls_replay PRIVATE ferry_broker ${FERRY_FUZZ_LIBCRYPT} ferry_warnings)
  add_test(NAME fuzz_tls.replay_corpus COMMAND fuzz_tls_replay ${FUZZ_DIR}/corpus/tls)
  set_tests_properties(fuzz_tls.replay_corpus PROPERTIES LABELS unit TIMEOUT 300)
endif()

# fuzz_mqtt: the MQTT 3.1.1 codec and topic mapping (broker/mqtt_codec.c,
# broker/mqtt_topic.c), a byte stream cut into packets as the broker cuts it.
if(TARGET ferry_broker)
  if(FERRY_FUZZ)
    add_executable(fuzz_mqtt ${FUZZ_DIR}/fuzz_mqtt.c)
    target_link_libraries(fuzz_mqtt PRIVATE ferry_broker ferry_warnings)
    target_link_options(fuzz_mqtt PRIVATE -fsanitize=fuzzer,address)
  endif()
  add_executable(fuzz_mqtt_replay ${FUZZ_DIR}/fuzz_mqtt.c ${FUZZ_DIR}/replay_main.c)
  target_link_libraries(fuzz_mqtt_replay PRIVATE ferry_broker ferry_warnings)
  add_test(NAME fuzz_mqtt.replay_corpus COMMAND fuzz_mqtt_replay ${FUZZ_DIR}/corpus/mqtt)
  set_tests_properties(fuzz_mqtt.replay_corpus PROPERTIES LABELS unit TIMEOUT 300)
endif()

# fuzz_mqtt_conn: an MQTT connection on an in-process IO thread and worker
# (broker/mqtt_conn.c, mqtt_out.c), with and without an auth file.
if(TARGET ferry_broker)
  if(FERRY_FUZZ)
    add_executable(fuzz_mqtt_conn ${FUZZ_DIR}/fuzz_mqtt_conn.c ${FUZZ_DIR}/fuzz_server.c)
    target_link_libraries(fuzz_mqtt_conn PRIVATE ferry_broker ${FERRY_FUZZ_LIBCRYPT} ferry_warnings)
    target_link_options(fuzz_mqtt_conn PRIVATE -fsanitize=fuzzer,address)
  endif()
  add_executable(fuzz_mqtt_conn_replay ${FUZZ_DIR}/fuzz_mqtt_conn.c ${FUZZ_DIR}/fuzz_server.c
    ${FUZZ_DIR}/replay_main.c)
  target_link_libraries(fuzz_mqtt_conn_replay PRIVATE ferry_broker ${FERRY_FUZZ_LIBCRYPT}
    ferry_warnings)
  add_test(NAME fuzz_mqtt_conn.replay_corpus COMMAND fuzz_mqtt_conn_replay
    ${FUZZ_DIR}/corpus/mqtt_conn)
  set_tests_properties(fuzz_mqtt_conn.replay_corpus PROPERTIES LABELS unit TIMEOUT 300)
endif()

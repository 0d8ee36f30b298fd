/*
 * test_mqtt_codec.c - MQTT 3.1.1 packets (broker/mqtt_codec.c): the fixed
 * header's limits, the decoders' refusals, the encoders' bytes.
 */
#include "mqtt_codec.h"

#include <check.h>
#include <string.h>

Suite *test_suite(void);

START_TEST(test_mqtt_hdr_remaining_length_forms)
{
    uint8_t first;
    uint32_t rem;
    size_t hl;
    const uint8_t one[] = {0x30, 0x00};
    ck_assert_int_eq(mqtt_hdr_parse(one, sizeof(one), 100, &first, &rem, &hl), 1);
    ck_assert_uint_eq(first, 0x30);
    ck_assert_uint_eq(rem, 0);
    ck_assert_uint_eq(hl, 2);
    const uint8_t two[] = {0x30, 0xc1, 0x02}; /* 0x41 + 2 * 128 = 321 */
    ck_assert_int_eq(mqtt_hdr_parse(two, sizeof(two), 1000, &first, &rem, &hl), 1);
    ck_assert_uint_eq(rem, 321);
    ck_assert_uint_eq(hl, 3);
    const uint8_t four[] = {0x30, 0xff, 0xff, 0xff, 0x7f};
    ck_assert_int_eq(mqtt_hdr_parse(four, sizeof(four), MQTT_REM_LEN_MAX, &first, &rem, &hl), 1);
    ck_assert_uint_eq(rem, MQTT_REM_LEN_MAX);
    ck_assert_uint_eq(hl, 5);
    /* Round trip through the encoder, at every size class's edges. */
    const uint32_t sizes[] = {0, 127, 128, 16383, 16384, 2097151, 2097152, MQTT_REM_LEN_MAX};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t b[MQTT_HDR_MAX];
        size_t n = mqtt_hdr_put(b, 0x82, sizes[i]);
        ck_assert_uint_eq(n, 1 + mqtt_rem_len_size(sizes[i]));
        ck_assert_int_eq(mqtt_hdr_parse(b, n, MQTT_REM_LEN_MAX, &first, &rem, &hl), 1);
        ck_assert_uint_eq(rem, sizes[i]);
        ck_assert_uint_eq(hl, n);
    }
}
END_TEST

START_TEST(test_mqtt_hdr_partial_too_big_and_fifth_byte)
{
    uint8_t first;
    uint32_t rem;
    size_t hl;
    const uint8_t part[] = {0x30, 0x80, 0x80};
    ck_assert_int_eq(mqtt_hdr_parse(part, 1, 100, &first, &rem, &hl), 0);
    ck_assert_int_eq(mqtt_hdr_parse(part, sizeof(part), MQTT_REM_LEN_MAX, &first, &rem, &hl), 0);
    const uint8_t five[] = {0x30, 0x80, 0x80, 0x80, 0x80, 0x01};
    ck_assert_int_eq(mqtt_hdr_parse(five, sizeof(five), MQTT_REM_LEN_MAX, &first, &rem, &hl),
                     MQTT_EMALFORMED);
    /* Refused by the limit as soon as the length is known, before the
     * body arrives. */
    const uint8_t big[] = {0x30, 0x81, 0x01}; /* 129 */
    ck_assert_int_eq(mqtt_hdr_parse(big, sizeof(big), 128, &first, &rem, &hl), MQTT_ETOOBIG);
    ck_assert_int_eq(mqtt_hdr_parse(big, sizeof(big), 129, &first, &rem, &hl), 1);
}
END_TEST

START_TEST(test_mqtt_flags_fixed_by_the_spec)
{
    ck_assert(mqtt_flags_valid(0x10));  /* CONNECT */
    ck_assert(!mqtt_flags_valid(0x11)); /* CONNECT with a reserved bit */
    ck_assert(mqtt_flags_valid(0x82));  /* SUBSCRIBE */
    ck_assert(!mqtt_flags_valid(0x80));
    ck_assert(mqtt_flags_valid(0x62));  /* PUBREL */
    ck_assert(mqtt_flags_valid(0xa2));  /* UNSUBSCRIBE */
    ck_assert(mqtt_flags_valid(0x3b));  /* PUBLISH DUP QoS 1 retain */
    ck_assert(!mqtt_flags_valid(0x36)); /* PUBLISH QoS 3 */
    ck_assert(!mqtt_flags_valid(0x00)); /* reserved type 0 */
    ck_assert(!mqtt_flags_valid(0xf0)); /* reserved type 15 */
    ck_assert(mqtt_flags_valid(0xc0));  /* PINGREQ */
    ck_assert(!mqtt_flags_valid(0xe1)); /* DISCONNECT with flags */
}
END_TEST

/* A CONNECT body: "MQTT", level, flags, keepalive, then the payload. */
static size_t connect_body(uint8_t *b, uint8_t level, uint8_t flags, const char *const *fields,
                           size_t n_fields)
{
    size_t k = 0;
    const uint8_t hdr[] = {0, 4, 'M', 'Q', 'T', 'T'};
    memcpy(b, hdr, sizeof(hdr));
    k = sizeof(hdr);
    b[k++] = level;
    b[k++] = flags;
    b[k++] = 0;
    b[k++] = 60;
    for (size_t i = 0; i < n_fields; i++) {
        size_t n = strlen(fields[i]);
        b[k++] = (uint8_t)(n >> 8);
        b[k++] = (uint8_t)n;
        memcpy(b + k, fields[i], n);
        k += n;
    }
    return k;
}

START_TEST(test_mqtt_connect_fields_and_refusals)
{
    uint8_t b[256];
    struct mqtt_connect m;
    const char *const all[] = {"dev1", "will/t", "bye", "alice", "pw"};
    size_t n = connect_body(b, 4, 0xc2 | 0x04 | 0x08, all, 5); /* user, pass, will QoS 1, clean */
    ck_assert_int_eq(mqtt_connect_decode(b, n, &m), 0);
    ck_assert_uint_eq(m.level, 4);
    ck_assert_uint_eq(m.keepalive, 60);
    ck_assert(m.is_clean && m.has_will && m.has_user && m.has_pass);
    ck_assert_uint_eq(m.will_qos, 1);
    ck_assert_uint_eq(m.client_id.len, 4);
    ck_assert(memcmp(m.username.p, "alice", 5) == 0);
    ck_assert_uint_eq(m.password.len, 2);
    ck_assert(memcmp(m.will_msg.p, "bye", 3) == 0);
    /* Bytes left over, or one short. */
    ck_assert_int_eq(mqtt_connect_decode(b, n + 1, &m), MQTT_EMALFORMED);
    ck_assert_int_eq(mqtt_connect_decode(b, n - 1, &m), MQTT_EMALFORMED);
    /* Level 3 or 5: CONNACK 0x01. */
    const char *const id[] = {"dev1"};
    n = connect_body(b, 3, 0x02, id, 1);
    ck_assert_int_eq(mqtt_connect_decode(b, n, &m), MQTT_EPROTOCOL);
    n = connect_body(b, 5, 0x02, id, 1);
    ck_assert_int_eq(mqtt_connect_decode(b, n, &m), MQTT_EPROTOCOL);
    /* The reserved flag; a password without a user; will QoS without a will. */
    n = connect_body(b, 4, 0x03, id, 1);
    ck_assert_int_eq(mqtt_connect_decode(b, n, &m), MQTT_EMALFORMED);
    const char *const idpw[] = {"dev1", "pw"};
    n = connect_body(b, 4, 0x42, idpw, 2);
    ck_assert_int_eq(mqtt_connect_decode(b, n, &m), MQTT_EMALFORMED);
    n = connect_body(b, 4, 0x0a, id, 1);
    ck_assert_int_eq(mqtt_connect_decode(b, n, &m), MQTT_EMALFORMED);
    /* Another protocol name: closed without CONNACK. */
    n = connect_body(b, 4, 0x02, id, 1);
    b[2] = 'X';
    ck_assert_int_eq(mqtt_connect_decode(b, n, &m), MQTT_EMALFORMED);
    /* A client id that is not UTF-8, or says its length runs past the end. */
    const char *const bad[] = {"d\xff"};
    n = connect_body(b, 4, 0x02, bad, 1);
    ck_assert_int_eq(mqtt_connect_decode(b, n, &m), MQTT_EMALFORMED);
    n = connect_body(b, 4, 0x02, id, 1);
    b[11] = 200;
    ck_assert_int_eq(mqtt_connect_decode(b, n, &m), MQTT_EMALFORMED);
}
END_TEST

START_TEST(test_mqtt_publish_decode_qos_topic_payload)
{
    struct mqtt_publish m;
    const uint8_t q1[] = {0, 3, 'a', '/', 'b', 0x12, 0x34, 'h', 'i'};
    ck_assert_int_eq(mqtt_publish_decode(0x33, q1, sizeof(q1), &m), 0);
    ck_assert_uint_eq(m.qos, 1);
    ck_assert(m.is_retain);
    ck_assert_uint_eq(m.packet_id, 0x1234);
    ck_assert_uint_eq(m.topic.len, 3);
    ck_assert_uint_eq(m.payload.len, 2);
    ck_assert(memcmp(m.payload.p, "hi", 2) == 0);
    /* QoS 0: no packet id, everything after the topic is payload. */
    ck_assert_int_eq(mqtt_publish_decode(0x30, q1, sizeof(q1), &m), 0);
    ck_assert_uint_eq(m.packet_id, 0);
    ck_assert_uint_eq(m.payload.len, 4);
    /* Packet id 0, QoS 3, DUP on QoS 0, an empty topic, wildcards. */
    const uint8_t pid0[] = {0, 1, 'a', 0, 0};
    ck_assert_int_eq(mqtt_publish_decode(0x32, pid0, sizeof(pid0), &m), MQTT_EMALFORMED);
    ck_assert_int_eq(mqtt_publish_decode(0x36, q1, sizeof(q1), &m), MQTT_EMALFORMED);
    ck_assert_int_eq(mqtt_publish_decode(0x38, q1, sizeof(q1), &m), MQTT_EMALFORMED);
    const uint8_t empty[] = {0, 0, 'x'};
    ck_assert_int_eq(mqtt_publish_decode(0x30, empty, sizeof(empty), &m), MQTT_EMALFORMED);
    const uint8_t plus[] = {0, 3, 'a', '/', '+'};
    ck_assert_int_eq(mqtt_publish_decode(0x30, plus, sizeof(plus), &m), MQTT_EMALFORMED);
    const uint8_t hash[] = {0, 1, '#'};
    ck_assert_int_eq(mqtt_publish_decode(0x30, hash, sizeof(hash), &m), MQTT_EMALFORMED);
    /* The topic's length runs past the packet. */
    const uint8_t past[] = {0, 9, 'a'};
    ck_assert_int_eq(mqtt_publish_decode(0x30, past, sizeof(past), &m), MQTT_EMALFORMED);
}
END_TEST

START_TEST(test_mqtt_subscribe_filters_checked_then_read)
{
    const uint8_t sub[] = {0, 7, 0, 3, 'a', '/', '#', 1, 0, 1, '+', 2};
    uint16_t pid;
    uint32_t n;
    ck_assert_int_eq(mqtt_sub_decode(sub, sizeof(sub), 1, &pid, &n), 0);
    ck_assert_uint_eq(pid, 7);
    ck_assert_uint_eq(n, 2);
    const uint8_t *p = sub + 2;
    struct mqtt_str f;
    uint8_t qos;
    mqtt_filter_next(&p, 1, &f, &qos);
    ck_assert_uint_eq(f.len, 3);
    ck_assert_uint_eq(qos, 1);
    mqtt_filter_next(&p, 1, &f, &qos);
    ck_assert_uint_eq(f.len, 1);
    ck_assert_uint_eq(qos, 2);
    ck_assert_ptr_eq(p, sub + sizeof(sub));
    /* No filters; QoS 3; a missing QoS byte; an empty filter; pid 0. */
    ck_assert_int_eq(mqtt_sub_decode(sub, 2, 1, &pid, &n), MQTT_EMALFORMED);
    const uint8_t q3[] = {0, 7, 0, 1, 'a', 3};
    ck_assert_int_eq(mqtt_sub_decode(q3, sizeof(q3), 1, &pid, &n), MQTT_EMALFORMED);
    ck_assert_int_eq(mqtt_sub_decode(q3, sizeof(q3) - 1, 1, &pid, &n), MQTT_EMALFORMED);
    const uint8_t empty[] = {0, 7, 0, 0, 1};
    ck_assert_int_eq(mqtt_sub_decode(empty, sizeof(empty), 1, &pid, &n), MQTT_EMALFORMED);
    const uint8_t pid0[] = {0, 0, 0, 1, 'a', 0};
    ck_assert_int_eq(mqtt_sub_decode(pid0, sizeof(pid0), 1, &pid, &n), MQTT_EMALFORMED);
    /* UNSUBSCRIBE: filters without QoS bytes. */
    const uint8_t unsub[] = {0, 9, 0, 1, 'a', 0, 3, 'b', '/', 'c'};
    ck_assert_int_eq(mqtt_sub_decode(unsub, sizeof(unsub), 0, &pid, &n), 0);
    ck_assert_uint_eq(pid, 9);
    ck_assert_uint_eq(n, 2);
}
END_TEST

START_TEST(test_mqtt_acks_and_answers_bytes)
{
    uint16_t pid;
    const uint8_t ack[] = {0x01, 0x02};
    ck_assert_int_eq(mqtt_ack_decode(ack, 2, &pid), 0);
    ck_assert_uint_eq(pid, 0x0102);
    ck_assert_int_eq(mqtt_ack_decode(ack, 1, &pid), MQTT_EMALFORMED);
    const uint8_t zero[] = {0, 0};
    ck_assert_int_eq(mqtt_ack_decode(zero, 2, &pid), MQTT_EMALFORMED);

    uint8_t b[64];
    ck_assert_uint_eq(mqtt_connack_put(b, 0, MQTT_CONNACK_BAD_LOGIN), 4);
    const uint8_t connack[] = {0x20, 2, 0, 4};
    ck_assert(memcmp(b, connack, 4) == 0);
    ck_assert_uint_eq(mqtt_ack_put(b, MQTT_PUBREL, 0x0a0b), 4);
    const uint8_t pubrel[] = {0x62, 2, 0x0a, 0x0b};
    ck_assert(memcmp(b, pubrel, 4) == 0);
    const uint8_t codes[] = {1, 0x80, 0};
    ck_assert_uint_eq(mqtt_suback_len(3), 7);
    ck_assert_uint_eq(mqtt_suback_put(b, 5, codes, 3), 7);
    const uint8_t suback[] = {0x90, 5, 0, 5, 1, 0x80, 0};
    ck_assert(memcmp(b, suback, 7) == 0);
    ck_assert_uint_eq(mqtt_pingresp_put(b), 2);
    ck_assert_uint_eq(b[0], 0xd0);
}
END_TEST

START_TEST(test_mqtt_publish_put_maps_separators_and_decodes_back)
{
    uint8_t b[64];
    size_t n = mqtt_publish_len(5, 3, 1);
    ck_assert_uint_eq(n, 2 + 2 + 5 + 2 + 3);
    ck_assert_uint_eq(mqtt_publish_put(b, "a.b.c", 5, '.', '/', "xyz", 3, 1, 42, 0), n);
    uint8_t first;
    uint32_t rem;
    size_t hl;
    ck_assert_int_eq(mqtt_hdr_parse(b, n, 1000, &first, &rem, &hl), 1);
    struct mqtt_publish m;
    ck_assert_int_eq(mqtt_publish_decode(first, b + hl, rem, &m), 0);
    ck_assert_uint_eq(m.qos, 1);
    ck_assert_uint_eq(m.packet_id, 42);
    ck_assert(memcmp(m.topic.p, "a/b/c", 5) == 0);
    ck_assert(memcmp(m.payload.p, "xyz", 3) == 0);
    /* The head alone is the same bytes, without the payload (which is
     * written from where it lies). */
    uint8_t h[64];
    ck_assert_uint_eq(mqtt_publish_head_put(h, "a.b.c", 5, '.', '/', 3, 1, 42, 0), n - 3);
    ck_assert(memcmp(h, b, n - 3) == 0);
    /* QoS 0: no packet id; an empty payload. */
    n = mqtt_publish_put(b, "t", 1, 0, 0, NULL, 0, 0, 0, 1);
    ck_assert_uint_eq(n, 2 + 3);
    ck_assert_uint_eq(b[0], 0x31);
    /* Too large for MQTT: no length. */
    ck_assert_uint_eq(mqtt_publish_len(65536, 0, 0), 0);
    ck_assert_uint_eq(mqtt_publish_len(1, MQTT_REM_LEN_MAX, 0), 0);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("mqtt_codec");
    TCase *tc = tcase_create("mqtt_codec");
    tcase_add_test(tc, test_mqtt_hdr_remaining_length_forms);
    tcase_add_test(tc, test_mqtt_hdr_partial_too_big_and_fifth_byte);
    tcase_add_test(tc, test_mqtt_flags_fixed_by_the_spec);
    tcase_add_test(tc, test_mqtt_connect_fields_and_refusals);
    tcase_add_test(tc, test_mqtt_publish_decode_qos_topic_payload);
    tcase_add_test(tc, test_mqtt_subscribe_filters_checked_then_read);
    tcase_add_test(tc, test_mqtt_acks_and_answers_bytes);
    tcase_add_test(tc, test_mqtt_publish_put_maps_separators_and_decodes_back);
    suite_add_tcase(s, tc);
    return s;
}

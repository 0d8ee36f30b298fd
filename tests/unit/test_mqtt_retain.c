/*
 * test_mqtt_retain.c - MQTT retained messages (broker/mqtt_retain.c): set,
 * replace, clear, the byte bound, matching by one or two patterns.
 */
#include "mqtt_retain.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

Suite *test_suite(void);

struct seen {
    int n;
    char topics[8][32];
    char payloads[8][32];
    uint8_t qos[8];
};

static void collect(void *arg, const char *topic, size_t tlen, const void *payload, size_t plen,
                    uint8_t qos)
{
    struct seen *s = arg;
    ck_assert_int_lt(s->n, 8);
    snprintf(s->topics[s->n], sizeof(s->topics[0]), "%.*s", (int)tlen, topic);
    snprintf(s->payloads[s->n], sizeof(s->payloads[0]), "%.*s", (int)plen, (const char *)payload);
    s->qos[s->n] = qos;
    s->n++;
}

static struct seen each(struct mqtt_retain *r, const char *a, const char *b, size_t b_len)
{
    struct seen s;
    memset(&s, 0, sizeof(s));
    mqtt_retain_each(r, a, strlen(a), b, b_len, collect, &s);
    return s;
}

START_TEST(test_mqtt_retain_set_replace_clear)
{
    struct mqtt_retain *r = mqtt_retain_create(1 << 20);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(mqtt_retain_put(r, "a.b", 3, "one", 3, 1), 0);
    ck_assert_int_eq(mqtt_retain_put(r, "a.b", 3, "two", 3, 0), 0); /* replaces */
    ck_assert_uint_eq(mqtt_retain_count(r), 1);
    struct seen s = each(r, "a.b", NULL, 0);
    ck_assert_int_eq(s.n, 1);
    ck_assert_str_eq(s.payloads[0], "two");
    ck_assert_uint_eq(s.qos[0], 0);
    ck_assert_int_eq(mqtt_retain_put(r, "a.b", 3, "", 0, 1), 0); /* clears */
    ck_assert_uint_eq(mqtt_retain_count(r), 0);
    ck_assert_int_eq(each(r, ">", NULL, 0).n, 0);
    ck_assert_int_eq(mqtt_retain_put(r, "zz", 2, "", 0, 1), 0); /* clearing nothing */
    /* Many topics: the table grows and keeps every one. */
    char t[16];
    for (int i = 0; i < 500; i++) {
        int n = snprintf(t, sizeof(t), "m.%d", i);
        ck_assert_int_eq(mqtt_retain_put(r, t, (size_t)n, "v", 1, 1), 0);
    }
    ck_assert_uint_eq(mqtt_retain_count(r), 500);
    ck_assert_int_eq(each(r, "m.499", NULL, 0).n, 1);
    mqtt_retain_destroy(r);
}
END_TEST

START_TEST(test_mqtt_retain_bound_refuses_without_change)
{
    struct mqtt_retain *r = mqtt_retain_create(16);
    ck_assert_int_eq(mqtt_retain_put(r, "a", 1, "0123456789", 10, 0), 0); /* 11 bytes */
    ck_assert_int_eq(mqtt_retain_put(r, "b", 1, "0123456789", 10, 0), -ENOSPC);
    ck_assert_int_eq(mqtt_retain_put(r, "c", 1, "01234567890123456789", 20, 0), -ENOSPC);
    ck_assert_uint_eq(mqtt_retain_count(r), 1);
    /* Replacing a's counts a's bytes as freed. */
    ck_assert_int_eq(mqtt_retain_put(r, "a", 1, "012345678901234", 15, 0), 0);
    ck_assert_int_eq(mqtt_retain_put(r, "a", 1, "", 0, 0), 0);
    ck_assert_int_eq(mqtt_retain_put(r, "b", 1, "0123456789", 10, 0), 0);
    mqtt_retain_destroy(r);
}
END_TEST

START_TEST(test_mqtt_retain_matches_either_pattern)
{
    struct mqtt_retain *r = mqtt_retain_create(1 << 20);
    const char *topics[] = {"s", "s.eu", "s.eu.t", "x.eu.t", "sx"};
    for (size_t i = 0; i < 5; i++) {
        ck_assert_int_eq(
            mqtt_retain_put(r, topics[i], strlen(topics[i]), topics[i], strlen(topics[i]), 1), 0);
    }
    /* MQTT s/#: s.> and its parent s (the first 1 byte of "s.>"). */
    ck_assert_int_eq(each(r, "s.>", "s.>", 1).n, 3);
    ck_assert_int_eq(each(r, "s.>", NULL, 0).n, 2);
    struct seen s = each(r, "*.eu.t", NULL, 0);
    ck_assert_int_eq(s.n, 2);
    ck_assert_int_eq(each(r, ">", NULL, 0).n, 5);
    ck_assert_int_eq(each(r, "none", NULL, 0).n, 0);
    mqtt_retain_destroy(r);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("mqtt_retain");
    TCase *tc = tcase_create("mqtt_retain");
    tcase_add_test(tc, test_mqtt_retain_set_replace_clear);
    tcase_add_test(tc, test_mqtt_retain_bound_refuses_without_change);
    tcase_add_test(tc, test_mqtt_retain_matches_either_pattern);
    suite_add_tcase(s, tc);
    return s;
}

/*
 * test_mqtt_sys.c - the $SYS topics' names and payloads (broker/mqtt_sys.c):
 * mosquitto's names, decimal text, figures ferry lacks left out.
 */
#include "mqtt_sys.h"
#include "mqtt_topic.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

Suite *test_suite(void);

struct seen {
    char names[32][64];
    char payloads[32][MQTT_SYS_PAYLOAD_MAX + 1];
    int n;
};

static void collect(void *arg, const char *name, size_t name_len, const char *payload,
                    size_t payload_len)
{
    struct seen *s = arg;
    ck_assert_int_lt(s->n, 32);
    ck_assert_uint_eq(strlen(name), name_len);
    ck_assert_uint_lt(name_len, 64);
    ck_assert_uint_le(payload_len, MQTT_SYS_PAYLOAD_MAX);
    memcpy(s->names[s->n], name, name_len + 1);
    memcpy(s->payloads[s->n], payload, payload_len);
    s->payloads[s->n][payload_len] = '\0';
    s->n++;
}

/* The payload of topic name, or NULL when it was not handed over. */
static const char *value(const struct seen *s, const char *name)
{
    for (int i = 0; i < s->n; i++) {
        if (strcmp(s->names[i], name) == 0) {
            return s->payloads[i];
        }
    }
    return NULL;
}

static struct mqtt_sys_figures figures(void)
{
    struct mqtt_sys_figures f = {
        .version = "1.2.3",
        .uptime_s = 42,
        .clients_connected = 3,
        .packets_in = 10,
        .packets_out = 11,
        .publish_in = 7,
        .publish_out = 18446744073709551615ull,
        .bytes_in = 1000,
        .bytes_out = 2000,
        .subscriptions = 5,
        .conns_accepted = 9,
    };
    return f;
}

START_TEST(test_mqtt_sys_payloads_are_decimal_text)
{
    struct mqtt_sys_figures f = figures();
    struct seen s = {.n = 0};
    mqtt_sys_each(&f, collect, &s);
    ck_assert_str_eq(value(&s, "$SYS/broker/version"), "ferryd version 1.2.3");
    ck_assert_str_eq(value(&s, "$SYS/broker/uptime"), "42 seconds");
    ck_assert_str_eq(value(&s, "$SYS/broker/clients/connected"), "3");
    ck_assert_str_eq(value(&s, "$SYS/broker/messages/received"), "10");
    ck_assert_str_eq(value(&s, "$SYS/broker/messages/sent"), "11");
    ck_assert_str_eq(value(&s, "$SYS/broker/publish/messages/received"), "7");
    ck_assert_str_eq(value(&s, "$SYS/broker/publish/messages/sent"), "18446744073709551615");
    ck_assert_str_eq(value(&s, "$SYS/broker/bytes/received"), "1000");
    ck_assert_str_eq(value(&s, "$SYS/broker/bytes/sent"), "2000");
    ck_assert_str_eq(value(&s, "$SYS/broker/subscriptions/count"), "5");
    ck_assert_str_eq(value(&s, "$SYS/broker/ferry/connections/accepted"), "9");
    for (int i = 0; i < s.n; i++) {
        /* every name is a $SYS one, mapped to MQTT as it stands (no '.') */
        ck_assert(mqtt_sys_is_sys(s.names[i], strlen(s.names[i])));
        ck_assert_ptr_null(strchr(s.names[i], '.'));
    }
}
END_TEST

/* No store, no retained table: their topics are left out, not zero. */
START_TEST(test_mqtt_sys_missing_figures_have_no_topic)
{
    struct mqtt_sys_figures f = figures();
    struct seen s = {.n = 0};
    mqtt_sys_each(&f, collect, &s);
    ck_assert_ptr_null(value(&s, "$SYS/broker/ferry/store/messages"));
    ck_assert_ptr_null(value(&s, "$SYS/broker/retained messages/count"));
    int without = s.n;
    f.has_store = 1;
    f.store_messages = 77;
    f.store_commits = 6;
    f.has_retained = 1;
    f.retained = 4;
    s.n = 0;
    mqtt_sys_each(&f, collect, &s);
    ck_assert_int_eq(s.n, without + 5);
    ck_assert_str_eq(value(&s, "$SYS/broker/ferry/store/messages"), "77");
    ck_assert_str_eq(value(&s, "$SYS/broker/ferry/store/commits"), "6");
    ck_assert_str_eq(value(&s, "$SYS/broker/ferry/store/topics"), "0");
    ck_assert_str_eq(value(&s, "$SYS/broker/retained messages/count"), "4");
}
END_TEST

START_TEST(test_mqtt_sys_is_sys_wants_the_whole_first_level)
{
    const char *yes[] = {"$SYS", "$SYS/#", "$SYS/broker/uptime", "$SYS/+"};
    const char *no[] = {"#", "+/broker", "$SYSX/a", "$sys/a", "SYS/a", "a/$SYS", "$SY", ""};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        ck_assert_msg(mqtt_sys_is_sys(yes[i], strlen(yes[i])), "%s", yes[i]);
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        ck_assert_msg(!mqtt_sys_is_sys(no[i], strlen(no[i])), "%s", no[i]);
    }
}
END_TEST

/* Which topics common filters select (as mqtt_sys_out.c asks). */
START_TEST(test_mqtt_sys_filters_select_names)
{
    struct mqtt_sys_figures f = figures();
    f.has_store = 1;
    f.has_retained = 1;
    struct seen s = {.n = 0};
    mqtt_sys_each(&f, collect, &s);
    struct {
        const char *filter;
        int n;
    } cases[] = {
        {"$SYS/#", s.n},
        {"#", 0},
        {"+/broker/uptime", 0},
        {"$SYS/broker/+", 2}, /* version, uptime */
        {"$SYS/broker/clients/connected", 1},
        {"$SYS/broker/+/sent", 2}, /* messages, bytes */
        {"$SYS/broker/ferry/store/#", 4},
        {"$SYS/broker/retained messages/count", 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int n = 0;
        for (int k = 0; k < s.n; k++) {
            n += mqtt_topic_match(cases[i].filter, strlen(cases[i].filter), s.names[k],
                                  strlen(s.names[k]));
        }
        ck_assert_msg(n == cases[i].n, "%s matched %d, not %d", cases[i].filter, n, cases[i].n);
    }
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("mqtt_sys");
    TCase *tc = tcase_create("mqtt_sys");
    tcase_add_test(tc, test_mqtt_sys_payloads_are_decimal_text);
    tcase_add_test(tc, test_mqtt_sys_missing_figures_have_no_topic);
    tcase_add_test(tc, test_mqtt_sys_is_sys_wants_the_whole_first_level);
    tcase_add_test(tc, test_mqtt_sys_filters_select_names);
    suite_add_tcase(s, tc);
    return s;
}

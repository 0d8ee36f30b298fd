/*
 * test_mqtt_topic.c - the one rule between MQTT topics and ferry topics
 * (broker/mqtt_topic.c), both as the README states it.
 */
#include "mqtt_topic.h"

#include <check.h>
#include <string.h>

Suite *test_suite(void);

/* The ferry form of s, or NULL if it cannot map; *parent: its parent's length. */
static const char *map(const char *s, int is_filter, size_t *parent)
{
    static char out[256];
    size_t len;
    memset(out, 'Z', sizeof(out));
    if (mqtt_topic_to_ferry(s, strlen(s), is_filter, out, &len, parent) < 0) {
        ck_assert_uint_eq((unsigned char)out[0], 'Z'); /* untouched on refusal */
        return NULL;
    }
    ck_assert_uint_eq(len, strlen(s));
    ck_assert_uint_eq(out[len], '\0');
    return out;
}

START_TEST(test_mqtt_topic_names_map_levels_to_tokens)
{
    size_t parent;
    ck_assert_str_eq(map("sensors/eu/temp", 0, &parent), "sensors.eu.temp");
    ck_assert_uint_eq(parent, 0);
    ck_assert_str_eq(map("a", 0, &parent), "a");
    ck_assert_str_eq(map("$SYS/x", 0, &parent), "$SYS.x");
    ck_assert_str_eq(map("ünï/cödé", 0, &parent), "ünï.cödé");
}
END_TEST

START_TEST(test_mqtt_topic_unmappable_names_refused)
{
    size_t parent;
    const char *bad[] = {"",    "/",     "/a",  "a/", "a//b", "a.b", "a/b.c",
                         "a/*", "a/x>y", "a/+", "#",  "a/#",  "a+"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(map(bad[i], 0, &parent) == NULL, "\"%s\" mapped", bad[i]);
    }
}
END_TEST

START_TEST(test_mqtt_topic_filters_wildcards_and_parent)
{
    size_t parent = 99;
    ck_assert_str_eq(map("sensors/+/temp", 1, &parent), "sensors.*.temp");
    ck_assert_uint_eq(parent, 0);
    ck_assert_str_eq(map("#", 1, &parent), ">");
    ck_assert_uint_eq(parent, 0); /* every ferry topic has a token: no parent */
    ck_assert_str_eq(map("+", 1, &parent), "*");
    const char *s = map("sensors/eu/#", 1, &parent);
    ck_assert_str_eq(s, "sensors.eu.>");
    ck_assert_uint_eq(parent, strlen("sensors.eu")); /* also matches sensors/eu */
    s = map("+/#", 1, &parent);
    ck_assert_str_eq(s, "*.>");
    ck_assert_uint_eq(parent, 1);
}
END_TEST

START_TEST(test_mqtt_topic_unmappable_filters_refused)
{
    size_t parent;
    const char *bad[] = {"",     "a//b", "/#",  "a/#/b", "#/a", "a#", "a/b#",
                         "a+/b", "+a",   "a/.", "a.b/#", "*",   "a/>"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(map(bad[i], 1, &parent) == NULL, "filter \"%s\" mapped", bad[i]);
    }
}
END_TEST

static int match(const char *f, const char *t)
{
    return mqtt_topic_match(f, strlen(f), t, strlen(t));
}

START_TEST(test_mqtt_topic_match_levels_and_wildcards)
{
    ck_assert(match("a/b/c", "a/b/c"));
    ck_assert(!match("a/b/c", "a/b"));
    ck_assert(!match("a/b", "a/b/c"));
    ck_assert(!match("a/b/c", "a/b/cd"));
    ck_assert(!match("a/bc", "a/b/c"));
    ck_assert(match("a/+/c", "a/b/c"));
    ck_assert(match("a/+/c", "a//c")); /* '+' takes an empty level too */
    ck_assert(!match("a/+/c", "a/b/x/c"));
    ck_assert(match("a/+", "a/b"));
    ck_assert(!match("a/+", "a"));
    ck_assert(match("+/+", "a/b"));
    ck_assert(match("a/#", "a")); /* '#' includes its parent level */
    ck_assert(match("a/#", "a/b"));
    ck_assert(match("a/#", "a/b/c"));
    ck_assert(!match("a/#", "ab"));
    ck_assert(!match("a/#", "b/a"));
    ck_assert(match("#", "a/b"));
    ck_assert(match("a/+/#", "a/b"));
    ck_assert(!match("a/+/#", "a"));
    ck_assert(match("a b/c", "a b/c")); /* other bytes are literal */
}
END_TEST

/* 4.7.2-1: a filter starting with a wildcard does not match a $ topic;
 * one that names the $ level does, wildcards after it included. */
START_TEST(test_mqtt_topic_match_dollar_needs_its_name)
{
    ck_assert(!match("#", "$SYS/broker/uptime"));
    ck_assert(!match("+/broker/uptime", "$SYS/broker/uptime"));
    ck_assert(!match("+/#", "$SYS/broker"));
    ck_assert(match("$SYS/#", "$SYS/broker/uptime"));
    ck_assert(match("$SYS/#", "$SYS"));
    ck_assert(match("$SYS/broker/+", "$SYS/broker/uptime"));
    ck_assert(!match("$SYS/broker/+", "$SYS/broker/clients/connected"));
    ck_assert(match("$SYS/+/clients/#", "$SYS/broker/clients/connected"));
    ck_assert(match("$SYS/broker/retained messages/count", "$SYS/broker/retained messages/count"));
    ck_assert(match("#", "a/$SYS")); /* only the first level counts */
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("mqtt_topic");
    TCase *tc = tcase_create("mqtt_topic");
    tcase_add_test(tc, test_mqtt_topic_names_map_levels_to_tokens);
    tcase_add_test(tc, test_mqtt_topic_unmappable_names_refused);
    tcase_add_test(tc, test_mqtt_topic_filters_wildcards_and_parent);
    tcase_add_test(tc, test_mqtt_topic_unmappable_filters_refused);
    tcase_add_test(tc, test_mqtt_topic_match_levels_and_wildcards);
    tcase_add_test(tc, test_mqtt_topic_match_dollar_needs_its_name);
    suite_add_tcase(s, tc);
    return s;
}

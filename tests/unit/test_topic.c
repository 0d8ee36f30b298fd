/*
 * test_topic.c - topic and pattern rules.
 */
#include <check.h>
#include <string.h>

#include "ferry.h"
#include "topic.h"

Suite *test_suite(void);

static int check(const char *s, int is_pattern)
{
    const char *why = NULL;
    int rc = topic_validate(s, strlen(s), is_pattern, 255, 16, &why);
    if (rc) {
        ck_assert_ptr_nonnull(why);
    }
    return rc;
}

START_TEST(test_topic_valid_and_invalid)
{
    const char *good[] = {"a", "orders.eu.created", "a-b_c.d:e", "ünïcödé.x", "1.2.3"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        ck_assert_msg(check(good[i], 0) == 0, "%s refused", good[i]);
        ck_assert_msg(check(good[i], 1) == 0, "%s refused as pattern", good[i]);
    }
    const char *bad[] = {"", ".", "a.", ".a", "a..b", "a b", "a\tb", "a\nb", "a.*", "a.>",
                         "*", "a*", "x>y", "a\x7f"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(check(bad[i], 0) == FERRY_EINVALIDTOPIC, "topic \"%s\" accepted", bad[i]);
    }
}
END_TEST

START_TEST(test_pattern_wildcards_whole_tokens_gt_last)
{
    const char *good[] = {"*", ">", "a.*", "a.>", "*.b.*", "*.>"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        ck_assert_msg(check(good[i], 1) == 0, "%s refused", good[i]);
    }
    const char *bad[] = {"a.>.b", ">.a", "a*", "a.b*", "**", ">>", "a..*", "a.*."};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(check(bad[i], 1) == FERRY_EINVALIDPATTERN, "pattern \"%s\" accepted",
                      bad[i]);
    }
}
END_TEST

START_TEST(test_topic_length_and_depth_limits)
{
    char buf[600];
    memset(buf, 'x', 255);
    buf[255] = '\0';
    ck_assert_int_eq(check(buf, 0), 0);
    buf[255] = 'x';
    buf[256] = '\0';
    ck_assert_int_eq(check(buf, 0), FERRY_EINVALIDTOPIC);
    buf[0] = '\0';
    for (int i = 0; i < 16; i++) {
        strcat(buf, i ? ".t" : "t");
    }
    ck_assert_int_eq(check(buf, 0), 0);
    strcat(buf, ".t");
    ck_assert_int_eq(check(buf, 0), FERRY_EINVALIDTOPIC);
}
END_TEST

START_TEST(test_topic_hash_is_stable)
{
    ck_assert_uint_eq(topic_hash("abc", 3), topic_hash("abc", 3));
    ck_assert_uint_ne(topic_hash("abc", 3), topic_hash("abd", 3));
    ck_assert_uint_eq(topic_hash("", 0), 2166136261u);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("topic");
    TCase *tc = tcase_create("topic");
    tcase_add_test(tc, test_topic_valid_and_invalid);
    tcase_add_test(tc, test_pattern_wildcards_whole_tokens_gt_last);
    tcase_add_test(tc, test_topic_length_and_depth_limits);
    tcase_add_test(tc, test_topic_hash_is_stable);
    suite_add_tcase(s, tc);
    return s;
}

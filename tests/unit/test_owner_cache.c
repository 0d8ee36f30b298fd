/*
 * test_owner_cache.c - libferry's cluster owner cache (topic -> broker id).
 */
#include "owner_cache.h"

#include <check.h>
#include <stdio.h>

Suite *test_suite(void);

START_TEST(test_ocache_empty_knows_nothing)
{
    struct ferry__owner_cache oc;
    ferry__ocache_init(&oc);
    ck_assert_uint_eq(ferry__ocache_get(&oc, "a"), 0);
    ck_assert_int_eq(ferry__ocache_drop(&oc, "a"), 0);
    ferry__ocache_free(&oc);
}
END_TEST

START_TEST(test_ocache_put_get_replace_drop)
{
    struct ferry__owner_cache oc;
    ferry__ocache_init(&oc);
    ck_assert_int_eq(ferry__ocache_put(&oc, "orders.eu", 2), 0);
    ck_assert_int_eq(ferry__ocache_put(&oc, "orders.us", 3), 0);
    ck_assert_uint_eq(ferry__ocache_get(&oc, "orders.eu"), 2);
    ck_assert_uint_eq(ferry__ocache_get(&oc, "orders.us"), 3);
    ck_assert_uint_eq(ferry__ocache_get(&oc, "orders"), 0);
    ck_assert_int_eq(ferry__ocache_put(&oc, "orders.eu", 1), 0); /* NOT_OWNER taught us */
    ck_assert_uint_eq(ferry__ocache_get(&oc, "orders.eu"), 1);
    ck_assert_uint_eq(oc.n, 2);
    ck_assert_int_eq(ferry__ocache_drop(&oc, "orders.eu"), 1);
    ck_assert_uint_eq(ferry__ocache_get(&oc, "orders.eu"), 0);
    ck_assert_uint_eq(ferry__ocache_get(&oc, "orders.us"), 3);
    ck_assert_int_eq(ferry__ocache_put(&oc, "x", 0), -22); /* id 0 means unknown */
    ferry__ocache_free(&oc);
}
END_TEST

START_TEST(test_ocache_grows_and_keeps_every_entry)
{
    struct ferry__owner_cache oc;
    ferry__ocache_init(&oc);
    char t[32];
    for (unsigned i = 0; i < 5000; i++) {
        snprintf(t, sizeof(t), "t.%u", i);
        ck_assert_int_eq(ferry__ocache_put(&oc, t, 1 + i % 7), 0);
    }
    ck_assert_uint_eq(oc.n, 5000);
    ck_assert_uint_ge(oc.cap, 5000);
    for (unsigned i = 0; i < 5000; i++) {
        snprintf(t, sizeof(t), "t.%u", i);
        ck_assert_uint_eq(ferry__ocache_get(&oc, t), 1 + i % 7);
    }
    for (unsigned i = 0; i < 5000; i += 2) {
        snprintf(t, sizeof(t), "t.%u", i);
        ck_assert_int_eq(ferry__ocache_drop(&oc, t), 1);
    }
    ck_assert_uint_eq(oc.n, 2500);
    for (unsigned i = 0; i < 5000; i++) {
        snprintf(t, sizeof(t), "t.%u", i);
        ck_assert_uint_eq(ferry__ocache_get(&oc, t), i % 2 ? 1 + i % 7 : 0);
    }
    ferry__ocache_free(&oc);
    ck_assert_uint_eq(oc.n, 0);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("owner_cache");
    TCase *tc = tcase_create("owner_cache");
    tcase_add_test(tc, test_ocache_empty_knows_nothing);
    tcase_add_test(tc, test_ocache_put_get_replace_drop);
    tcase_add_test(tc, test_ocache_grows_and_keeps_every_entry);
    suite_add_tcase(s, tc);
    return s;
}

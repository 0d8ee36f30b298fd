/*
 * test_acl.c - ACL pattern coverage: publish on topics, subscribe on patterns.
 */
#include "acl.h"

#include <check.h>
#include <string.h>

Suite *test_suite(void);

static int covers(const char *a, const char *p)
{
    return acl_pattern_covers(a, strlen(a), p, strlen(p));
}

static int may_sub(const struct acl_list *l, const char *p)
{
    return acl_may_subscribe(l, p, strlen(p));
}

static int may_pub(const struct acl_list *l, const char *t)
{
    return acl_may_publish(l, t, strlen(t));
}

static void list_of(struct acl_list *l, const char *const *pats, size_t n)
{
    memset(l, 0, sizeof(*l));
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(acl_list_add(l, pats[i], strlen(pats[i])), 0);
    }
}

START_TEST(test_acl_literal_covers_only_itself)
{
    ck_assert(covers("orders.eu", "orders.eu"));
    ck_assert(!covers("orders.eu", "orders.us"));
    ck_assert(!covers("orders.eu", "orders.eu.x"));
    ck_assert(!covers("orders.eu", "orders"));
    ck_assert(!covers("orders.eu", "orders.*"));
    ck_assert(!covers("orders.eu", "orders.>"));
    ck_assert(!covers("orders.eu", "*.eu"));
    ck_assert(!covers("orders.eu", "orders.eux"));
    ck_assert(!covers("orders.eu", "orders.e"));
}
END_TEST

START_TEST(test_acl_star_covers_one_token_never_gt)
{
    ck_assert(covers("orders.eu.*", "orders.eu.*"));
    ck_assert(covers("orders.eu.*", "orders.eu.new"));
    ck_assert(!covers("orders.eu.*", "orders.*"));
    ck_assert(!covers("orders.eu.*", "orders.>"));
    ck_assert(!covers("orders.eu.*", ">"));
    ck_assert(!covers("orders.eu.*", "*"));
    ck_assert(!covers("orders.eu.*", "orders.eu.>"));
    ck_assert(!covers("orders.eu.*", "orders.eu"));
    ck_assert(!covers("orders.eu.*", "orders.eu.a.b"));
    ck_assert(!covers("orders.eu.*", "*.eu.new"));
    ck_assert(covers("*.*", "a.*"));
    ck_assert(covers("*.*", "*.b"));
    ck_assert(!covers("*.*", "*"));
    ck_assert(!covers("*.*", "*.*.*"));
}
END_TEST

START_TEST(test_acl_gt_covers_one_or_more_tokens)
{
    ck_assert(covers(">", ">"));
    ck_assert(covers(">", "a"));
    ck_assert(covers(">", "*.*.>"));
    ck_assert(covers("orders.>", "orders.>"));
    ck_assert(covers("orders.>", "orders.*"));
    ck_assert(covers("orders.>", "orders.eu.*.>"));
    ck_assert(covers("orders.>", "orders.a.b.c"));
    ck_assert(!covers("orders.>", "orders")); /* '>' needs one token at least */
    ck_assert(!covers("orders.>", ">"));
    ck_assert(!covers("orders.>", "*.>"));
    ck_assert(!covers("orders.>", "*.eu"));
    ck_assert(covers("*.>", "orders.>"));
    ck_assert(!covers("*.*.>", "orders.>")); /* orders.x is not two tokens deep */
    ck_assert(covers("*.*.>", "orders.*.>"));
}
END_TEST

START_TEST(test_acl_no_prefix_confusion)
{
    /* token by token, never by string prefix */
    ck_assert(!covers("ord.>", "orders.x"));
    ck_assert(!covers("orders.>", "ordersx.y"));
    ck_assert(!covers("a.b", "a.bc"));
    ck_assert(!covers("a.b.>", "a.bc.d"));
}
END_TEST

START_TEST(test_acl_union_of_patterns_covers_gt)
{
    const char *pats[] = {"a.*", "a.*.>"};
    struct acl_list l;
    list_of(&l, pats, 2);
    ck_assert(may_sub(&l, "a.>"));
    ck_assert(may_sub(&l, "a.x.y.z"));
    ck_assert(!may_sub(&l, ">"));
    ck_assert(!may_sub(&l, "a"));
    acl_list_deinit(&l);

    const char *pats2[] = {"a.*", "a.*.*"};
    list_of(&l, pats2, 2);
    ck_assert(!may_sub(&l, "a.>")); /* a.x.y.z is not allowed */
    ck_assert(may_sub(&l, "a.*.*"));
    acl_list_deinit(&l);

    const char *pats3[] = {"a.b", "a.*.c"};
    list_of(&l, pats3, 2);
    ck_assert(!may_sub(&l, "a.>"));
    ck_assert(!may_sub(&l, "a.*"));
    acl_list_deinit(&l);
}
END_TEST

START_TEST(test_acl_publish_on_concrete_topic)
{
    const char *pats[] = {"orders.eu.*", "logs.>"};
    struct acl_list l;
    list_of(&l, pats, 2);
    ck_assert(may_pub(&l, "orders.eu.new"));
    ck_assert(!may_pub(&l, "orders.eu"));
    ck_assert(!may_pub(&l, "orders.eu.new.x"));
    ck_assert(!may_pub(&l, "orders.us.new"));
    ck_assert(may_pub(&l, "logs.a"));
    ck_assert(may_pub(&l, "logs.a.b.c"));
    ck_assert(!may_pub(&l, "logs"));
    ck_assert(!may_pub(&l, "logsx.a"));
    acl_list_deinit(&l);
}
END_TEST

START_TEST(test_acl_empty_list_denies_everything)
{
    struct acl_list l;
    memset(&l, 0, sizeof(l));
    ck_assert(!may_pub(&l, "a"));
    ck_assert(!may_sub(&l, "a"));
    ck_assert(!may_sub(&l, ">"));
    acl_list_deinit(&l);
}
END_TEST

START_TEST(test_acl_deep_patterns_are_bounded)
{
    /* 200 tokens: deeper than any allowed pattern can be; denied, no overflow */
    char deep[400];
    size_t n = 0;
    for (int i = 0; i < 200; i++) {
        deep[n++] = i ? '.' : 'a';
        if (i) {
            deep[n++] = 'a';
        }
    }
    deep[n] = '\0';
    const char *pats[] = {">"};
    struct acl_list l;
    list_of(&l, pats, 1);
    ck_assert(!may_sub(&l, deep));
    ck_assert(!covers(">", deep));
    acl_list_deinit(&l);
    /* a long chain of splits stays linear */
    const char *pats2[] = {"*", "*.*", "*.*.*", "*.*.*.*", "*.*.*.*.>"};
    list_of(&l, pats2, 5);
    ck_assert(may_sub(&l, ">"));
    acl_list_deinit(&l);
    const char *pats3[] = {"*", "*.*", "*.*.*", "*.*.*.*"};
    list_of(&l, pats3, 4);
    ck_assert(!may_sub(&l, ">"));
    ck_assert(may_sub(&l, "*.*.*"));
    acl_list_deinit(&l);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("acl");
    TCase *tc = tcase_create("acl");
    tcase_add_test(tc, test_acl_literal_covers_only_itself);
    tcase_add_test(tc, test_acl_star_covers_one_token_never_gt);
    tcase_add_test(tc, test_acl_gt_covers_one_or_more_tokens);
    tcase_add_test(tc, test_acl_no_prefix_confusion);
    tcase_add_test(tc, test_acl_union_of_patterns_covers_gt);
    tcase_add_test(tc, test_acl_publish_on_concrete_topic);
    tcase_add_test(tc, test_acl_empty_list_denies_everything);
    tcase_add_test(tc, test_acl_deep_patterns_are_bounded);
    suite_add_tcase(s, tc);
    return s;
}

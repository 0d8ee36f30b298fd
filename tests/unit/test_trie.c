/*
 * test_trie.c - the subscription index.
 */
#include "topic.h"
#include "trie.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Suite *test_suite(void);

struct seen {
    uint64_t ids[64];
    int n;
};

static void collect(void *ctx, struct trie_sub *s)
{
    struct seen *v = ctx;
    ck_assert_int_lt(v->n, 64);
    v->ids[v->n++] = s->sub_id;
}

/* Bitmask of matched sub ids (ids < 64). */
static uint64_t match(struct trie *t, const char *topic)
{
    struct seen v = {.n = 0};
    int n = trie_match(t, topic, strlen(topic), collect, &v);
    ck_assert_int_eq(n, v.n);
    uint64_t mask = 0;
    for (int i = 0; i < v.n; i++) {
        mask |= 1ull << v.ids[i];
    }
    return mask;
}

static struct trie_sub *add(struct trie *t, uint64_t owner, uint64_t id, const char *pattern,
                            const char *group)
{
    struct trie_sub *s = trie_sub_create(owner, id, pattern, strlen(pattern), group ? group : "",
                                         group ? strlen(group) : 0);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(trie_add(t, s), 0);
    trie_sub_unref(s); /* the trie holds it */
    return s;
}

#define B(x) (1ull << (x))

START_TEST(test_trie_literal_star_and_gt)
{
    struct trie t;
    trie_init(&t);
    add(&t, 1, 1, "a.b.c", NULL);
    add(&t, 1, 2, "a.*.c", NULL);
    add(&t, 1, 3, "a.>", NULL);
    add(&t, 1, 4, "*.*.*", NULL);
    add(&t, 1, 5, ">", NULL);
    add(&t, 1, 6, "a.b", NULL);
    add(&t, 1, 7, "*", NULL);
    ck_assert_uint_eq(match(&t, "a.b.c"), B(1) | B(2) | B(3) | B(4) | B(5));
    ck_assert_uint_eq(match(&t, "a.x.c"), B(2) | B(3) | B(4) | B(5));
    ck_assert_uint_eq(match(&t, "a.b"), B(3) | B(5) | B(6));
    ck_assert_uint_eq(match(&t, "a"), B(5) | B(7)); /* '>' needs one or more tokens */
    ck_assert_uint_eq(match(&t, "b.c.d.e"), B(5));
    ck_assert_uint_eq(match(&t, "a.b.c.d"), B(3) | B(5));
    ck_assert_uint_eq(t.n_subs, 7);
    trie_deinit(&t);
}
END_TEST

START_TEST(test_trie_star_matches_exactly_one_token)
{
    struct trie t;
    trie_init(&t);
    add(&t, 1, 1, "x.*", NULL);
    ck_assert_uint_eq(match(&t, "x"), 0);
    ck_assert_uint_eq(match(&t, "x.y"), B(1));
    ck_assert_uint_eq(match(&t, "x.y.z"), 0);
    ck_assert_uint_eq(match(&t, "xx.y"), 0);
    trie_deinit(&t);
}
END_TEST

START_TEST(test_trie_remove_prunes_nodes)
{
    struct trie t;
    trie_init(&t);
    struct trie_sub *a = add(&t, 1, 1, "p.q.r", NULL);
    struct trie_sub *b = add(&t, 1, 2, "p.q.*", NULL);
    struct trie_sub *c = add(&t, 2, 3, "p.>", "g");
    ck_assert_uint_eq(match(&t, "p.q.r"), B(1) | B(2) | B(3));
    trie_sub_ref(a); /* keep it alive to try a second removal */
    ck_assert_int_eq(trie_remove(&t, a), 0);
    ck_assert_int_eq(trie_remove(&t, a), -ENOENT);
    trie_sub_unref(a);
    ck_assert_uint_eq(match(&t, "p.q.r"), B(2) | B(3));
    ck_assert_int_eq(trie_remove(&t, b), 0);
    ck_assert_int_eq(trie_remove(&t, c), 0);
    ck_assert_uint_eq(match(&t, "p.q.r"), 0);
    ck_assert_uint_eq(t.n_subs, 0);
    ck_assert_uint_eq(t.n_nodes, 0); /* everything pruned, root included */
    ck_assert_ptr_null(t.root);
    trie_deinit(&t);
}
END_TEST

START_TEST(test_trie_queue_group_rotates_one_member)
{
    struct trie t;
    trie_init(&t);
    add(&t, 1, 1, "q", "g");
    add(&t, 2, 2, "q", "g");
    add(&t, 3, 3, "q", "g");
    add(&t, 4, 4, "q", "other");
    add(&t, 5, 5, "q", NULL);
    int count[6] = {0};
    for (int i = 0; i < 300; i++) {
        struct seen v = {.n = 0};
        ck_assert_int_eq(trie_match(&t, "q", 1, collect, &v), 3); /* g, other, plain */
        for (int k = 0; k < v.n; k++) {
            count[v.ids[k]]++;
        }
    }
    ck_assert_int_eq(count[1], 100);
    ck_assert_int_eq(count[2], 100);
    ck_assert_int_eq(count[3], 100);
    ck_assert_int_eq(count[4], 300);
    ck_assert_int_eq(count[5], 300);
    trie_deinit(&t);
}
END_TEST

START_TEST(test_trie_many_literal_children)
{
    struct trie t;
    trie_init(&t);
    struct trie_sub *subs[2000];
    char buf[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(buf, sizeof(buf), "k.%d", i);
        subs[i] = add(&t, 1, (uint64_t)(i % 60), buf, NULL);
    }
    for (int i = 0; i < 2000; i += 7) {
        snprintf(buf, sizeof(buf), "k.%d", i);
        ck_assert_uint_eq(match(&t, buf), B(i % 60));
    }
    /* Remove every other one; the hash must still find the rest. */
    for (int i = 0; i < 2000; i += 2) {
        ck_assert_int_eq(trie_remove(&t, subs[i]), 0);
    }
    for (int i = 0; i < 2000; i++) {
        snprintf(buf, sizeof(buf), "k.%d", i);
        ck_assert_uint_eq(match(&t, buf), (i & 1) ? B(i % 60) : 0);
    }
    trie_deinit(&t);
}
END_TEST

START_TEST(test_trie_deep_topics_do_not_recurse)
{
    struct trie t;
    trie_init(&t);
    /* A pattern of TRIE_MAX_DEPTH '*' tokens and one of a '>' tail. */
    char *p = malloc(2 * TRIE_MAX_DEPTH + 8);
    p[0] = '\0';
    for (int i = 0; i < TRIE_MAX_DEPTH; i++) {
        strcat(p, i ? ".*" : "*");
    }
    add(&t, 1, 1, p, NULL);
    add(&t, 1, 2, ">", NULL);
    ck_assert_uint_eq(match(&t, p), B(1) | B(2)); /* '*' literally also matches '*' tokens */
    /* Too deep to insert. */
    strcat(p, ".*");
    struct trie_sub *s = trie_sub_create(1, 3, p, strlen(p), "", 0);
    ck_assert_int_eq(trie_add(&t, s), -EINVAL);
    trie_sub_unref(s);
    /* A topic of thousands of levels: refused by the matcher, no crash. */
    size_t n = 20000;
    char *deep = malloc(2 * n);
    for (size_t i = 0; i < n; i++) {
        deep[2 * i] = 'a';
        deep[2 * i + 1] = '.';
    }
    deep[2 * n - 1] = '\0';
    struct seen v = {.n = 0};
    ck_assert_int_eq(trie_match(&t, deep, strlen(deep), collect, &v), -EINVAL);
    /* And topic validation refuses it first, with the configured depth. */
    const char *why;
    ck_assert_int_ne(topic_validate(deep, strlen(deep), 0, 1u << 30, 16, &why), 0);
    free(deep);
    free(p);
    trie_deinit(&t);
}
END_TEST

START_TEST(test_trie_record_refcount)
{
    struct trie a, b;
    trie_init(&a);
    trie_init(&b);
    struct trie_sub *s = trie_sub_create(9, 1, "x.y", 3, "grp", 3);
    ck_assert_str_eq(s->pattern, "x.y");
    ck_assert_str_eq(s->group, "grp");
    ck_assert_int_eq(trie_add(&a, s), 0);
    ck_assert_int_eq(trie_add(&b, s), 0);
    ck_assert_uint_eq(atomic_load(&s->refs), 3);
    ck_assert_int_eq(trie_remove(&a, s), 0);
    ck_assert_uint_eq(atomic_load(&s->refs), 2);
    trie_deinit(&b);
    ck_assert_uint_eq(atomic_load(&s->refs), 1);
    trie_sub_unref(s);
    trie_deinit(&a);
}
END_TEST

START_TEST(test_trie_count_counts_every_match_and_every_group_member)
{
    struct trie t;
    trie_init(&t);
    ck_assert_int_eq(trie_count(&t, "a.b", 3), 0);
    add(&t, 1, 1, "a.b", NULL);
    add(&t, 2, 2, "a.b", NULL);
    add(&t, 1, 3, "a.*", NULL);
    add(&t, 1, 4, ">", NULL);
    add(&t, 1, 5, "a.c", NULL);      /* does not match */
    add(&t, 1, 6, "a.b.>", NULL);    /* does not match: needs one more token */
    add(&t, 1, 7, "a.b", "workers"); /* a group of three */
    add(&t, 2, 8, "a.b", "workers");
    add(&t, 3, 9, "a.b", "workers");
    struct trie_sub *g = add(&t, 1, 10, "a.>", "other");
    ck_assert_int_eq(trie_count(&t, "a.b", 3), 8);
    ck_assert_int_eq(trie_count(&t, "a.c", 3), 4);
    ck_assert_int_eq(trie_count(&t, "x", 1), 1);
    /* Counting leaves a group's rotation alone: matching still picks the
     * members of "workers" in turn, 7 first. */
    ck_assert_uint_eq(match(&t, "a.b") & (B(7) | B(8) | B(9)), B(7));
    ck_assert_int_eq(trie_count(&t, "a.b", 3), 8);
    ck_assert_uint_eq(match(&t, "a.b") & (B(7) | B(8) | B(9)), B(8));
    ck_assert_int_eq(trie_remove(&t, g), 0);
    ck_assert_int_eq(trie_count(&t, "a.b", 3), 7);
    trie_deinit(&t);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("trie");
    TCase *tc = tcase_create("trie");
    tcase_add_test(tc, test_trie_literal_star_and_gt);
    tcase_add_test(tc, test_trie_star_matches_exactly_one_token);
    tcase_add_test(tc, test_trie_remove_prunes_nodes);
    tcase_add_test(tc, test_trie_queue_group_rotates_one_member);
    tcase_add_test(tc, test_trie_many_literal_children);
    tcase_add_test(tc, test_trie_deep_topics_do_not_recurse);
    tcase_add_test(tc, test_trie_record_refcount);
    tcase_add_test(tc, test_trie_count_counts_every_match_and_every_group_member);
    suite_add_tcase(s, tc);
    return s;
}

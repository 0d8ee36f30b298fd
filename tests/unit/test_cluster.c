/*
 * test_cluster.c - the cluster view without ZooKeeper (broker/cluster.c):
 * topic names in znode names, the placement table, clu_route's verdicts
 * (owner, other owner live or down, fenced, inboxes) and clu_metadata.
 */
#include "cluster_int.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Suite *test_suite(void);

START_TEST(test_enc_dec_round_trip)
{
    static const char *const names[] = {"orders.eu.created", "a/b", "100%", "..", "x y", "é.ü"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char enc[256], dec[256];
        size_t n;
        ck_assert_int_eq(clu__enc(names[i], strlen(names[i]), enc, sizeof(enc)), 0);
        ck_assert_ptr_null(strchr(enc, '/')); /* never a path */
        ck_assert(strcmp(enc, ".") != 0 && strcmp(enc, "..") != 0);
        ck_assert_int_eq(clu__dec(enc, dec, sizeof(dec), &n), 0);
        ck_assert_uint_eq(n, strlen(names[i]));
        ck_assert_str_eq(dec, names[i]);
    }
    char enc[16];
    ck_assert_int_eq(clu__enc("orders.eu.created", 17, enc, sizeof(enc)), -ENAMETOOLONG);
    ck_assert_int_eq(clu__enc("a/b", 3, enc, sizeof(enc)), 0);
    ck_assert_str_eq(enc, "a%2Fb");
    char dec[16];
    size_t n;
    ck_assert_int_eq(clu__dec("a%2", dec, sizeof(dec), &n), -EINVAL);
    ck_assert_int_eq(clu__dec("a%zz", dec, sizeof(dec), &n), -EINVAL);
}
END_TEST

/* A cluster with no session: brokers 1 (us), 2 (live), 3 (down). */
static struct cluster *view(void)
{
    struct cluster *cl = calloc(1, sizeof(*cl));
    ck_assert_ptr_nonnull(cl);
    pthread_rwlock_init(&cl->view_lock, NULL);
    pthread_mutex_init(&cl->req_mu, NULL);
    pthread_cond_init(&cl->placed_cv, NULL);
    snprintf(cl->name, sizeof(cl->name), "t");
    cl->self = 1;
    cl->brokers = calloc(3, sizeof(*cl->brokers));
    ck_assert_ptr_nonnull(cl->brokers);
    cl->n_brokers = cl->brokers_cap = 3;
    for (uint32_t i = 0; i < 3; i++) {
        cl->brokers[i].id = i + 1;
        cl->brokers[i].is_live = i != 2;
        snprintf(cl->brokers[i].addr, sizeof(cl->brokers[i].addr), "h%u:7373", i + 1);
    }
    atomic_store(&cl->lease_until, clu__now_ms() + 60000);
    return cl;
}

START_TEST(test_route_verdicts)
{
    struct cluster *cl = view();
    ck_assert_int_eq(clu__insert(cl, "mine", 4, 1, 1), 0);
    ck_assert_int_eq(clu__insert(cl, "theirs", 6, 2, 1), 0);
    ck_assert_int_eq(clu__insert(cl, "down", 4, 3, 2), 0);
    char text[400], owner[128];
    ck_assert_int_eq(clu_route(cl, "mine", 4, 0, text, sizeof(text), owner, sizeof(owner)),
                     CLU_SERVE);
    ck_assert_int_eq(clu_route(cl, "theirs", 6, 0, text, sizeof(text), owner, sizeof(owner)),
                     CLU_NOT_OWNER);
    ck_assert_str_eq(owner, "h2:7373");
    ck_assert_ptr_nonnull(strstr(text, "h2:7373"));
    ck_assert_int_eq(clu_route(cl, "down", 4, 0, text, sizeof(text), owner, sizeof(owner)),
                     CLU_UNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(text, "down"));
    /* Inboxes are never placed: served where the requester is. */
    ck_assert_int_eq(clu_route(cl, "_INBOX.x.1", 10, 0, text, sizeof(text), owner, sizeof(owner)),
                     CLU_SERVE);
    /* Fenced: its own topics are refused, nothing new is placed. */
    atomic_store(&cl->lease_until, 0);
    ck_assert_int_eq(clu_route(cl, "mine", 4, 0, text, sizeof(text), owner, sizeof(owner)),
                     CLU_UNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(text, "fenced"));
    ck_assert_int_eq(clu_route(cl, "new", 3, 0, text, sizeof(text), owner, sizeof(owner)),
                     CLU_UNAVAILABLE);
    ck_assert_int_eq(cl->n_wanted, 0);
    /* The other owner's verdict does not depend on our lease. */
    ck_assert_int_eq(clu_route(cl, "theirs", 6, 0, text, sizeof(text), owner, sizeof(owner)),
                     CLU_NOT_OWNER);
    clu__free(cl);
}
END_TEST

START_TEST(test_table_grows_and_metadata_sorts)
{
    struct cluster *cl = view();
    char name[32];
    for (int i = 999; i >= 0; i--) {
        int n = snprintf(name, sizeof(name), "t.%03d", i);
        ck_assert_int_eq(clu__insert(cl, name, (size_t)n, (uint32_t)(i % 2) + 1, 1), 0);
    }
    ck_assert_int_eq(clu__insert(cl, "t.000", 5, 2, 9), 0); /* placed once: kept */
    ck_assert_uint_eq(cl->n_topics, 1000);
    ck_assert_uint_eq(clu__find(cl, "t.000", 5)->owner, 1);
    ck_assert_ptr_null(clu__find(cl, "t.1000", 6));
    struct clu_meta m;
    ck_assert_int_eq(clu_metadata(cl, "t.*", 10, &m), 0);
    ck_assert_uint_eq(m.n_topics, 10);
    ck_assert(m.is_truncated);
    for (uint32_t i = 1; i < m.n_topics; i++) {
        ck_assert(strcmp(m.topics[i - 1].name, m.topics[i].name) < 0);
    }
    ck_assert_uint_eq(m.n_brokers, 3);
    ck_assert_uint_eq(m.brokers[0].n_topics, 500);
    ck_assert_uint_eq(m.brokers[1].n_topics, 500);
    ck_assert(m.is_serving);
    clu_meta_free(&m);
    ck_assert_int_eq(clu_metadata(cl, "nothing.>", 10, &m), 0);
    ck_assert_uint_eq(m.n_topics, 0);
    ck_assert(!m.is_truncated);
    clu_meta_free(&m);
    clu__free(cl);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("cluster");
    TCase *tc = tcase_create("cluster");
    tcase_add_test(tc, test_enc_dec_round_trip);
    tcase_add_test(tc, test_route_verdicts);
    tcase_add_test(tc, test_table_grows_and_metadata_sorts);
    suite_add_tcase(s, tc);
    return s;
}

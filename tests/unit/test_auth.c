/*
 * test_auth.c - the auth file, credential checks, failure delays, the pool.
 */
#include "auth.h"
#include "ferry.h"

#include <check.h>
#include <crypt.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

Suite *test_suite(void);

/* A cheap SHA-512 crypt hash of pw (1000 rounds: tests stay fast). */
static char *hash_of(const char *pw, const char *prefix, unsigned long cost)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    ck_assert_ptr_nonnull(crypt_gensalt_rn(prefix, cost, NULL, 0, setting, sizeof(setting)));
    struct crypt_data cd;
    memset(&cd, 0, sizeof(cd));
    const char *h = crypt_rn(pw, setting, &cd, sizeof(cd));
    ck_assert_ptr_nonnull(h);
    return strdup(h);
}

static struct auth_table *parse_ok(const char *text)
{
    struct auth_table *t = NULL;
    char err[512] = "";
    int rc = auth_table_parse(text, strlen(text), "auth", &t, err, sizeof(err));
    ck_assert_msg(rc == 0, "parse failed: %s", err);
    return t;
}

static void parse_bad(const char *text, const char *want)
{
    struct auth_table *t = NULL;
    char err[512] = "";
    int rc = auth_table_parse(text, strlen(text), "auth", &t, err, sizeof(err));
    ck_assert_msg(rc < 0, "accepted: %s", text);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(err, want) != NULL, "error \"%s\" lacks \"%s\"", err, want);
}

static char *file_with(const char *h1, const char *h2)
{
    char *s = NULL;
    ck_assert_int_ge(asprintf(&s,
                              "# a comment\n"
                              "\n"
                              "user alice %s   # trailing comment\n"
                              "token ci %s\n"
                              "allow alice publish orders.eu.*\n"
                              "allow alice subscribe orders.>\n"
                              "allow ci admin\n",
                              h1, h2),
                     0);
    return s;
}

START_TEST(test_auth_parse_rules_and_rights)
{
    char *h1 = hash_of("secret", "$6$", 1000), *h2 = hash_of("tok", "$6$", 1000);
    char *text = file_with(h1, h2);
    struct auth_table *t = parse_ok(text);
    const struct auth_principal *a = auth_principal_find(t, "alice");
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(a->pub.n_pats, 1);
    ck_assert_int_eq(a->sub.n_pats, 1);
    ck_assert_int_eq(a->is_admin, 0);
    const struct auth_principal *ci = auth_principal_find(t, "ci");
    ck_assert_ptr_nonnull(ci);
    ck_assert_int_eq(ci->is_admin, 1);
    ck_assert_ptr_null(auth_principal_find(t, "bob"));
    auth_table_unref(t);
    free(text);
    free(h1);
    free(h2);
}
END_TEST

START_TEST(test_auth_parse_errors_name_the_line)
{
    char *h = hash_of("x", "$6$", 1000);
    char *s;
    parse_bad("user\n", "auth:1: usage: user NAME HASH");
    parse_bad("\n\nfrobnicate x\n", "auth:3: unknown rule");
    parse_bad("user bob $1$abc$def\n", "auth:1:"); /* MD5: legacy/not accepted */
    parse_bad("user bob plaintext\n", "not a yescrypt");
    parse_bad("user a:b $6$x$y\n", "bad user name");
    ck_assert_int_ge(asprintf(&s, "user bob %s\nuser bob %s\n", h, h), 0);
    parse_bad(s, "auth:2: user \"bob\" declared twice");
    free(s);
    ck_assert_int_ge(asprintf(&s, "user bob %s\nallow bob publish a..b\n", h), 0);
    parse_bad(s, "auth:2: bad pattern");
    free(s);
    ck_assert_int_ge(asprintf(&s, "user bob %s\nallow bob delete x\n", h), 0);
    parse_bad(s, "auth:2: unknown right");
    free(s);
    ck_assert_int_ge(asprintf(&s, "user bob %s\nallow bob admin extra\n", h), 0);
    parse_bad(s, "auth:2: usage: allow NAME admin");
    free(s);
    ck_assert_int_ge(asprintf(&s, "user bob %s\n\nallow bobby subscribe x\n", h), 0);
    parse_bad(s, "auth:3: allow names \"bobby\", which is no user, token or cert");
    free(s);
    free(h);
}
END_TEST

START_TEST(test_auth_cert_declares_a_certificate_login)
{
    struct auth_table *t = parse_ok("cert alice\n"
                                    "cert carol@example.com\n"
                                    "allow alice publish x.>\n");
    const struct auth_principal *a = auth_principal_find(t, "alice");
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(a->is_cert, 1);
    ck_assert_int_eq(a->pub.n_pats, 1);
    const struct auth_principal *c = auth_principal_find(t, "carol@example.com");
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(c->is_cert, 1);
    auth_table_unref(t);
    /* A password user is no certificate login unless a cert line says so. */
    char *h = hash_of("x", "$6$", 1000);
    char *s;
    ck_assert_int_ge(asprintf(&s, "user bob %s\nallow bob publish x\n", h), 0);
    t = parse_ok(s);
    ck_assert_int_eq(auth_principal_find(t, "bob")->is_cert, 0);
    auth_table_unref(t);
    free(s);
    free(h);
    parse_bad("cert\n", "auth:1: usage: cert NAME");
    parse_bad("cert a b\n", "auth:1: usage: cert NAME");
    parse_bad("cert a:b\n", "auth:1: usage: cert NAME");
}
END_TEST

START_TEST(test_auth_check_password_token_and_unknown_user_alike)
{
    char *h1 = hash_of("secret", "$6$", 1000), *h2 = hash_of("tok", "$6$", 1000);
    char *text = file_with(h1, h2);
    struct auth_table *t = parse_ok(text);
    const struct auth_principal *p = NULL;
    ck_assert_int_eq(auth_check(t, "alice", "secret", NULL, &p), 0);
    ck_assert_str_eq(p->name, "alice");
    p = NULL;
    ck_assert_int_eq(auth_check(t, "alice", "Secret", NULL, &p), FERRY_EAUTH);
    ck_assert_int_eq(auth_check(t, "alice", "", NULL, &p), FERRY_EAUTH);
    ck_assert_int_eq(auth_check(t, "mallory", "secret", NULL, &p), FERRY_EAUTH);
    ck_assert_int_eq(auth_check(t, "", "", NULL, &p), FERRY_EAUTH);
    ck_assert_int_eq(auth_check(t, NULL, NULL, NULL, &p), FERRY_EAUTH);
    ck_assert_ptr_null(p);
    /* tokens are NAME:SECRET; a user's password is no token */
    ck_assert_int_eq(auth_check(t, NULL, NULL, "ci:tok", &p), 0);
    ck_assert_str_eq(p->name, "ci");
    p = NULL;
    ck_assert_int_eq(auth_check(t, NULL, NULL, "ci:tok2", &p), FERRY_EAUTH);
    ck_assert_int_eq(auth_check(t, NULL, NULL, "tok", &p), FERRY_EAUTH);
    ck_assert_int_eq(auth_check(t, NULL, NULL, "alice:secret", &p), FERRY_EAUTH);
    ck_assert_int_eq(auth_check(t, "ci", "tok", NULL, &p), FERRY_EAUTH);
    ck_assert_ptr_null(p);
    /* the dummy hash has the method and cost of the real ones */
    ck_assert_int_eq(strncmp(t->dummy_hash, "$6$rounds=1000$", 15), 0);
    auth_table_unref(t);
    free(text);
    free(h1);
    free(h2);
}
END_TEST

START_TEST(test_auth_check_yescrypt_and_bcrypt)
{
    char *hy = hash_of("pw1", "$y$", 0), *hb = hash_of("pw2", "$2b$", 4);
    char *s;
    ck_assert_int_ge(asprintf(&s, "user y %s\nuser b %s\n", hy, hb), 0);
    struct auth_table *t = parse_ok(s);
    const struct auth_principal *p;
    ck_assert_int_eq(auth_check(t, "y", "pw1", NULL, &p), 0);
    ck_assert_int_eq(auth_check(t, "b", "pw2", NULL, &p), 0);
    ck_assert_int_eq(auth_check(t, "y", "pw2", NULL, &p), FERRY_EAUTH);
    ck_assert_int_eq(auth_check(t, "b", "pw1", NULL, &p), FERRY_EAUTH);
    auth_table_unref(t);
    free(s);
    free(hy);
    free(hb);
}
END_TEST

START_TEST(test_auth_holder_swaps_and_counts_generations)
{
    struct auth_holder h;
    auth_holder_init(&h);
    ck_assert_ptr_null(auth_holder_get(&h));
    unsigned g0 = auth_holder_gen(&h);
    struct auth_table *t1 = parse_ok("# empty\n");
    auth_holder_set(&h, t1);
    ck_assert_uint_ne(auth_holder_gen(&h), g0);
    struct auth_table *held = auth_holder_get(&h);
    ck_assert_ptr_eq(held, t1);
    auth_holder_set(&h, parse_ok(""));
    /* the old table stays valid for whoever holds it */
    ck_assert_uint_eq(atomic_load(&held->refs), 1);
    auth_table_unref(held);
    auth_holder_deinit(&h);
}
END_TEST

struct done_box {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int n;
    int rcs[8];
    uint64_t refs[8];
    char names[8][AUTH_NAME_MAX + 1];
};

static void on_done(void *ctx, uint64_t conn_ref, int rc, struct auth_table *t,
                    const struct auth_principal *p, void *tag)
{
    ck_assert_ptr_eq(tag, (void *)(uintptr_t)conn_ref); /* given back as submitted */
    struct done_box *b = ctx;
    pthread_mutex_lock(&b->lock);
    if (b->n < 8) {
        b->rcs[b->n] = rc;
        b->refs[b->n] = conn_ref;
        snprintf(b->names[b->n], sizeof(b->names[0]), "%s", p ? p->name : "");
        b->n++;
    }
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
    auth_table_unref(t);
}

START_TEST(test_auth_pool_answers_off_thread)
{
    char *h1 = hash_of("secret", "$6$", 1000), *h2 = hash_of("tok", "$6$", 1000);
    char *text = file_with(h1, h2);
    struct auth_table *t = parse_ok(text);
    struct done_box b = {.n = 0};
    pthread_mutex_init(&b.lock, NULL);
    pthread_cond_init(&b.cond, NULL);
    struct auth_pool *p = auth_pool_create(2, 16, on_done, &b);
    ck_assert_ptr_nonnull(p);
    atomic_int no = 0, yes = 1;
    ck_assert_int_eq(auth_pool_submit(p, 1, t, "alice", "secret", NULL, &no, (void *)1), 0);
    ck_assert_int_eq(auth_pool_submit(p, 2, t, "alice", "nope", NULL, NULL, (void *)2), 0);
    ck_assert_int_eq(auth_pool_submit(p, 3, t, NULL, NULL, "ci:tok", &no, (void *)3), 0);
    /* Cancelled before a thread took it: answered, never checked. */
    ck_assert_int_eq(auth_pool_submit(p, 4, t, "alice", "secret", NULL, &yes, (void *)4), 0);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 60;
    pthread_mutex_lock(&b.lock);
    while (b.n < 4) {
        ck_assert_int_eq(pthread_cond_timedwait(&b.cond, &b.lock, &dl), 0);
    }
    pthread_mutex_unlock(&b.lock);
    for (int i = 0; i < 4; i++) {
        if (b.refs[i] == 1) {
            ck_assert_int_eq(b.rcs[i], 0);
            ck_assert_str_eq(b.names[i], "alice");
        } else if (b.refs[i] == 2) {
            ck_assert_int_eq(b.rcs[i], FERRY_EAUTH);
        } else if (b.refs[i] == 4) {
            ck_assert_int_eq(b.rcs[i], -ECANCELED);
            ck_assert_str_eq(b.names[i], "");
        } else {
            ck_assert_int_eq(b.rcs[i], 0);
            ck_assert_str_eq(b.names[i], "ci");
        }
    }
    auth_pool_destroy(p);
    ck_assert_uint_eq(atomic_load(&t->refs), 1);
    auth_table_unref(t);
    free(text);
    free(h1);
    free(h2);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("auth");
    tcase_add_test(tc, test_auth_parse_rules_and_rights);
    tcase_add_test(tc, test_auth_parse_errors_name_the_line);
    tcase_add_test(tc, test_auth_cert_declares_a_certificate_login);
    tcase_add_test(tc, test_auth_check_password_token_and_unknown_user_alike);
    tcase_add_test(tc, test_auth_check_yescrypt_and_bcrypt);
    tcase_add_test(tc, test_auth_holder_swaps_and_counts_generations);
    tcase_add_test(tc, test_auth_pool_answers_off_thread);
    suite_add_tcase(s, tc);
    return s;
}

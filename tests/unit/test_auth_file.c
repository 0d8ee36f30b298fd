/*
 * test_auth_file.c - the auth file's strictness: which hashes load, the
 * file's mode, bcrypt's 72-byte limit, and the dummy hash's cost.
 */
#include "auth.h"
#include "ferry.h"

#include <check.h>
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

Suite *test_suite(void);

static char *hash_of(const char *pw, const char *prefix, unsigned long cost)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    ck_assert_ptr_nonnull(crypt_gensalt_rn(prefix, cost, NULL, 0, setting, sizeof(setting)));
    struct crypt_data cd;
    memset(&cd, 0, sizeof(cd));
    const char *h = crypt_rn(pw, setting, &cd, sizeof(cd));
    ck_assert_ptr_nonnull(h);
    ck_assert(h[0] != '*');
    return strdup(h);
}

static int parse(const char *text, struct auth_table **t, char *err, size_t err_len)
{
    *t = NULL;
    err[0] = '\0';
    return auth_table_parse(text, strlen(text), "auth", t, err, err_len);
}

/* "user u HASH" with hash h must be refused, its error containing want. */
static void user_refused(const char *h, const char *want)
{
    char *text = NULL;
    ck_assert_int_ge(asprintf(&text, "user u %s\n", h), 0);
    struct auth_table *t;
    char err[512];
    int rc = parse(text, &t, err, sizeof(err));
    ck_assert_msg(rc == -EINVAL, "hash %s: rc %d (%s)", h, rc, err);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(err, "auth:1:") && strstr(err, want), "hash %s: error \"%s\" lacks \"%s\"",
                  h, err, want);
    free(text);
}

static void user_loads(const char *h)
{
    char *text = NULL;
    ck_assert_int_ge(asprintf(&text, "user u %s\n", h), 0);
    struct auth_table *t;
    char err[512];
    ck_assert_msg(parse(text, &t, err, sizeof(err)) == 0, "hash %s refused: %s", h, err);
    auth_table_unref(t);
    free(text);
}

/* h cut after its last '$' (the setting without the hash), or to n bytes. */
static char *cut(const char *h, size_t n)
{
    char *s = strdup(h);
    if (n == 0) {
        strrchr(s, '$')[1] = '\0';
    } else {
        s[n] = '\0';
    }
    return s;
}

START_TEST(test_auth_file_refuses_unlisted_methods)
{
    /* real hashes of methods libxcrypt knows but auth.h does not list */
    static const char *const prefixes[] = {"$gy$", "$7$", "$5$", "$sha1", "$md5"};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        char setting[CRYPT_GENSALT_OUTPUT_SIZE];
        if (crypt_gensalt_rn(prefixes[i], 0, NULL, 0, setting, sizeof(setting)) == NULL) {
            continue; /* not in this libxcrypt */
        }
        char *h = hash_of("pw", prefixes[i], 0);
        user_refused(h, "not a yescrypt ($y$), bcrypt ($2b$) or SHA-512 crypt ($6$) hash");
        free(h);
    }
    user_refused("$1$abcdefgh$0123456789012345678901", "not a yescrypt");
    user_refused("ab01FAX.bQRSU", "not a yescrypt"); /* DES */
}
END_TEST

START_TEST(test_auth_file_refuses_truncated_and_malformed_hashes)
{
    char *y = hash_of("pw", "$y$", 0), *b = hash_of("pw", "$2b$", 4);
    char *s6 = hash_of("pw", "$6$", 1000), *d6 = hash_of("pw", "$6$", 5000);
    user_loads(y);
    user_loads(b);
    user_loads(s6);
    user_loads(d6);

    user_refused("$6$", "malformed SHA-512 crypt");
    user_refused("$6$saltsalt", "SHA-512 crypt hash missing or truncated");
    user_refused("$6$saltsalt$", "SHA-512 crypt hash missing or truncated");
    char *c = cut(s6, 0); /* $6$rounds=1000$SALT$ */
    user_refused(c, "SHA-512 crypt hash missing or truncated");
    free(c);
    c = cut(d6, strlen(d6) - 1);
    user_refused(c, "SHA-512 crypt hash missing or truncated");
    free(c);
    user_refused("$6$rounds=1000$", "SHA-512 crypt");
    user_refused("$6$x$y$z$w", "malformed SHA-512 crypt");

    c = cut(y, 0); /* the yescrypt salt with the hash missing */
    user_refused(c, "yescrypt hash missing or truncated");
    free(c);
    c = strdup(y);
    *strrchr(c, '$') = '\0'; /* $y$PARAMS$SALT */
    user_refused(c, "malformed yescrypt hash");
    free(c);
    c = cut(y, strlen(y) - 3);
    user_refused(c, "yescrypt hash missing or truncated");
    free(c);
    c = strdup(y);
    c[strlen(c) - 1] = '*'; /* not crypt's alphabet */
    user_refused(c, "yescrypt hash missing or truncated");
    free(c);
    user_refused("$y$", "malformed yescrypt");

    c = cut(b, 29); /* $2b$04$ and the salt: no hash */
    user_refused(c, "malformed or truncated bcrypt");
    free(c);
    c = strdup(b);
    c[4] = '9'; /* cost 94 */
    user_refused(c, "bcrypt");
    free(c);
    free(y);
    free(b);
    free(s6);
    free(d6);
}
END_TEST

START_TEST(test_auth_file_bcrypt_refuses_passwords_over_72_bytes)
{
    char pw72[73], pw73[74];
    memset(pw72, 'p', 72);
    pw72[72] = '\0';
    memcpy(pw73, pw72, 72);
    pw73[72] = 'X';
    pw73[73] = '\0';
    char *b = hash_of(pw72, "$2b$", 4), *y = hash_of(pw73, "$y$", 1);
    char *text = NULL;
    ck_assert_int_ge(asprintf(&text, "user b %s\nuser y %s\n", b, y), 0);
    struct auth_table *t;
    char err[512];
    ck_assert_int_eq(parse(text, &t, err, sizeof(err)), 0);
    const struct auth_principal *p = NULL;
    ck_assert_int_eq(auth_check(t, "b", pw72, NULL, &p), 0);
    ck_assert_str_eq(p->name, "b");
    /* crypt itself accepts the prefix plus any suffix: ferryd does not */
    struct crypt_data cd;
    memset(&cd, 0, sizeof(cd));
    ck_assert_str_eq(crypt_rn(pw73, b, &cd, sizeof(cd)), b);
    p = NULL;
    ck_assert_int_eq(auth_check(t, "b", pw73, NULL, &p), FERRY_EAUTH);
    ck_assert_ptr_null(p);
    /* other methods read the whole password */
    ck_assert_int_eq(auth_check(t, "y", pw73, NULL, &p), 0);
    ck_assert_int_eq(auth_check(t, "y", pw72, NULL, &p), FERRY_EAUTH);
    auth_table_unref(t);
    free(text);
    free(b);
    free(y);
}
END_TEST

START_TEST(test_auth_file_hash_cost_orders_methods_and_parameters)
{
    char *s1k = hash_of("pw", "$6$", 1000), *s5k = hash_of("pw", "$6$", 5000);
    char *b4 = hash_of("pw", "$2b$", 4), *b10 = hash_of("pw", "$2b$", 10);
    char *y1 = hash_of("pw", "$y$", 1), *y5 = hash_of("pw", "$y$", 5);
    ck_assert_uint_eq(auth_hash_cost("$6$abc$x"), 5000u * 600u); /* no rounds=: 5000 */
    ck_assert_uint_eq(auth_hash_cost(s1k), 1000u * 600u);
    ck_assert_uint_lt(auth_hash_cost(s1k), auth_hash_cost(s5k));
    ck_assert_uint_lt(auth_hash_cost(b4), auth_hash_cost(b10));
    ck_assert_uint_eq(auth_hash_cost(b4), 16u * 137000u);
    ck_assert_uint_lt(auth_hash_cost(y1), auth_hash_cost(y5));
    ck_assert_uint_eq(auth_hash_cost(y5), 4096u * 32u * 900u); /* j9T: N 2^12, r 32 */
    ck_assert_uint_lt(auth_hash_cost(s5k), auth_hash_cost(y5));
    ck_assert_uint_lt(auth_hash_cost(y5), auth_hash_cost(b10));
    ck_assert_uint_eq(auth_hash_cost("$gy$j9T$abc$def"), 0);
    free(s1k);
    free(s5k);
    free(b4);
    free(b10);
    free(y1);
    free(y5);
}
END_TEST

/* The dummy hash's setting is the one of want (its method and cost). */
static void dummy_like(const struct auth_table *t, const char *want)
{
    size_t n = (size_t)(strrchr(want, '$') - want); /* up to the hash ($2b$: the salt too) */
    if (strncmp(want, "$2", 2) == 0) {
        n = 7; /* $2b$NN$ */
    } else {
        n = (size_t)((const char *)memrchr(want, '$', n) - want) + 1; /* without the salt */
    }
    ck_assert_msg(strncmp(t->dummy_hash, want, n) == 0, "dummy %s, want the settings of %s",
                  t->dummy_hash, want);
    ck_assert_uint_eq(auth_hash_cost(t->dummy_hash), auth_hash_cost(want));
}

START_TEST(test_auth_file_dummy_hash_has_the_median_cost)
{
    char *cheap = hash_of("a", "$6$", 1000); /* 0.6 ms */
    char *mid = hash_of("b", "$2b$", 5);     /* 4.4 ms */
    char *dear = hash_of("c", "$y$", 1);     /* 7.4 ms */
    char *dearest = hash_of("d", "$y$", 3);  /* 29 ms */
    char *text = NULL;
    struct auth_table *t;
    char err[512];
    /* the first user is the dearest, the median one comes last */
    ck_assert_int_ge(asprintf(&text, "user c %s\nuser a %s\ntoken b %s\n", dear, cheap, mid), 0);
    ck_assert_int_eq(parse(text, &t, err, sizeof(err)), 0);
    dummy_like(t, mid);
    auth_table_unref(t);
    free(text);
    /* an even count takes the lower middle one */
    ck_assert_int_ge(
        asprintf(&text, "user d %s\nuser c %s\nuser a %s\nuser b %s\n", dearest, dear, cheap, mid),
        0);
    ck_assert_int_eq(parse(text, &t, err, sizeof(err)), 0);
    dummy_like(t, mid);
    /* an unknown user is checked against it, and refused */
    const struct auth_principal *p = NULL;
    ck_assert_int_eq(auth_check(t, "nobody", "b", NULL, &p), FERRY_EAUTH);
    ck_assert_int_eq(auth_check(t, "b", "b", NULL, &p), 0);
    auth_table_unref(t);
    free(text);
    /* one user: that one */
    ck_assert_int_ge(asprintf(&text, "user c %s\n", dear), 0);
    ck_assert_int_eq(parse(text, &t, err, sizeof(err)), 0);
    dummy_like(t, dear);
    auth_table_unref(t);
    free(text);
    free(cheap);
    free(mid);
    free(dear);
    free(dearest);
}
END_TEST

static char *write_file(const char *dir, const char *text, mode_t mode)
{
    char *path = NULL;
    ck_assert_int_ge(asprintf(&path, "%s/auth", dir), 0);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(chmod(path, mode), 0);
    return path;
}

START_TEST(test_auth_file_mode_checked_at_every_load)
{
    char dir[] = "/tmp/ferry-auth-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char *h = hash_of("pw", "$6$", 1000);
    char *text = NULL;
    ck_assert_int_ge(asprintf(&text, "user u %s\n", h), 0);
    struct auth_table *t = NULL;
    char err[512];
    char *path = write_file(dir, text, 0600);
    ck_assert_int_eq(auth_table_load(path, &t, err, sizeof(err)), 0);
    ck_assert_uint_eq(t->file_mode, 0600);
    ck_assert_ptr_null(auth_table_mode_warning(t));
    auth_table_unref(t);

    ck_assert_int_eq(chmod(path, 0644), 0);
    ck_assert_int_eq(auth_table_load(path, &t, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(strstr(auth_table_mode_warning(t), "readable by every user"));
    auth_table_unref(t);
    ck_assert_int_eq(chmod(path, 0660), 0);
    ck_assert_int_eq(auth_table_load(path, &t, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(strstr(auth_table_mode_warning(t), "writable by its group"));
    auth_table_unref(t);

    for (mode_t m = 0602; m <= 0666; m += 064) { /* 0602, 0666 */
        ck_assert_int_eq(chmod(path, m), 0);
        t = NULL;
        ck_assert_int_eq(auth_table_load(path, &t, err, sizeof(err)), -EPERM);
        ck_assert_ptr_null(t);
        ck_assert_msg(strstr(err, "writable by every user"), "error: %s", err);
    }
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(rmdir(dir), 0);
    free(path);
    free(text);
    free(h);
}
END_TEST

/* Found by fuzz_auth: a yescrypt hash whose p, t parameters make one check
 * take about 30 s and 6 GB loaded, and so did the whole file (the dummy
 * hash is made at load with the median cost). Such costs are refused. */
START_TEST(test_auth_file_refuses_hashes_too_costly_to_check)
{
    const char *costly = "$y$j9userT$zyU6dW1$HzyBE4MdxuAsL3x4HVsmtXPk2NjqpwC7DcCk1dEU6O5";
    ck_assert_uint_gt(auth_hash_cost(costly), AUTH_HASH_COST_MAX);
    ck_assert_uint_gt(auth_hash_cost(costly), 100 * auth_hash_cost("$y$j9T$a$b"));
    user_refused(costly, "too costly");
    user_refused("$2b$17$abcdefghijklmnopqrstuvabcdefghijklmnopqrstuvwxyz01234", "too costly");
    user_refused(
        "$6$rounds=20000000$salt$"
        "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz01234567",
        "too costly");
    /* the costs `ferry passwd` makes load */
    char *y = hash_of("pw", "$y$", 0), *b = hash_of("pw", "$2b$", 12);
    user_loads(y);
    user_loads(b);
    free(y);
    free(b);
}
END_TEST

/* MQTT's $SYS topics are granted on their ferry form: a '$' in a pattern
 * is an ordinary byte, so "$SYS.>" is a rule of its own, and only a rule
 * that covers it (or ">") lets a user subscribe to "$SYS/#". */
START_TEST(test_auth_file_grants_sys_patterns)
{
    char *h = hash_of("pw", "$6$", 1000);
    char text[1024], err[256];
    snprintf(text, sizeof(text),
             "user ops %s\nuser app %s\nuser root %s\nuser one %s\n"
             "allow ops subscribe $SYS.>\nallow app subscribe a.>\n"
             "allow root subscribe >\nallow one subscribe $SYS.broker.uptime\n",
             h, h, h, h);
    struct auth_table *t;
    ck_assert_msg(parse(text, &t, err, sizeof(err)) == 0, "%s", err);
    const char *sys = "$SYS.>", *up = "$SYS.broker.uptime", *plus = "$SYS.broker.*";
    const struct auth_principal *ops = auth_principal_find(t, "ops");
    const struct auth_principal *app = auth_principal_find(t, "app");
    const struct auth_principal *root = auth_principal_find(t, "root");
    const struct auth_principal *one = auth_principal_find(t, "one");
    ck_assert(ops && app && root && one);
    ck_assert(acl_may_subscribe(&ops->sub, sys, strlen(sys)));
    ck_assert(acl_may_subscribe(&ops->sub, plus, strlen(plus)));
    ck_assert(!acl_may_subscribe(&app->sub, sys, strlen(sys)));
    ck_assert(!acl_may_subscribe(&app->sub, up, strlen(up)));
    ck_assert(acl_may_subscribe(&root->sub, sys, strlen(sys)));
    ck_assert(acl_may_subscribe(&one->sub, up, strlen(up)));
    ck_assert(!acl_may_subscribe(&one->sub, sys, strlen(sys)));
    auth_table_unref(t);
    free(h);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("auth_file");
    TCase *tc = tcase_create("auth_file");
    tcase_add_test(tc, test_auth_file_refuses_unlisted_methods);
    tcase_add_test(tc, test_auth_file_refuses_truncated_and_malformed_hashes);
    tcase_add_test(tc, test_auth_file_bcrypt_refuses_passwords_over_72_bytes);
    tcase_add_test(tc, test_auth_file_hash_cost_orders_methods_and_parameters);
    tcase_add_test(tc, test_auth_file_dummy_hash_has_the_median_cost);
    tcase_add_test(tc, test_auth_file_mode_checked_at_every_load);
    tcase_add_test(tc, test_auth_file_refuses_hashes_too_costly_to_check);
    tcase_add_test(tc, test_auth_file_grants_sys_patterns);
    suite_add_tcase(s, tc);
    return s;
}

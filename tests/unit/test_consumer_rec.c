/*
 * test_consumer_rec.c - durable consumers: the stored record's checks (what
 * `ferryd --verify` and the admin listing rely on).
 */
#include "consumer.h"
#include "ferry.h"
#include "store.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A record as consumer.c writes it: 'D', version, u16 0, u64 next_seq,
 * u32 n, n x (u64 seq, u32 n_deliv), little-endian. */
static int match_any(void *ctx, const char *topic, size_t len)
{
    (void)ctx;
    (void)topic;
    (void)len;
    return 1;
}

static size_t rec_build(unsigned char *v, uint8_t version, uint64_t next_seq, uint32_t n,
                        const uint64_t *seqs, const uint32_t *n_deliv)
{
    memset(v, 0, 16);
    v[0] = 'D';
    v[1] = version;
    for (int i = 0; i < 8; i++) {
        v[4 + i] = (unsigned char)(next_seq >> (8 * i));
    }
    for (int i = 0; i < 4; i++) {
        v[12 + i] = (unsigned char)(n >> (8 * i));
    }
    for (uint32_t j = 0; j < n; j++) {
        unsigned char *e = v + 16 + 12 * j;
        for (int i = 0; i < 8; i++) {
            e[i] = (unsigned char)(seqs[j] >> (8 * i));
        }
        for (int i = 0; i < 4; i++) {
            e[8 + i] = (unsigned char)(n_deliv[j] >> (8 * i));
        }
    }
    return 16 + 12 * (size_t)n;
}

START_TEST(test_consumer_record_decodes_position_and_pending)
{
    unsigned char v[64];
    uint64_t seqs[] = {3, 5, 9};
    uint32_t nd[] = {1, 2, 4};
    size_t len = rec_build(v, 1, 10, 3, seqs, nd);
    struct cons_rec r;
    char why[200] = "";
    ck_assert_int_eq(cons_rec_decode(v, len, &r, why, sizeof(why)), 0);
    ck_assert_uint_eq(r.next_seq, 10);
    ck_assert_uint_eq(r.n_pending, 3);
    ck_assert_uint_eq(r.first_pending, 3);
    ck_assert_uint_eq(r.n_redelivered, 2);
    len = rec_build(v, 1, 1, 0, NULL, NULL);
    ck_assert_int_eq(cons_rec_decode(v, len, &r, why, sizeof(why)), 0);
    ck_assert_uint_eq(r.first_pending, 0);
}
END_TEST

START_TEST(test_consumer_record_rejects_each_kind_of_damage)
{
    unsigned char v[64];
    struct cons_rec r = {.next_seq = 77};
    char why[200];
    uint64_t seqs[] = {3, 5};
    uint32_t nd[] = {1, 1};
    size_t len = rec_build(v, 1, 10, 2, seqs, nd);
    v[0] = 'X';
    ck_assert_int_eq(cons_rec_decode(v, len, &r, why, sizeof(why)), FERRY_ESTORAGE);
    ck_assert_ptr_nonnull(strstr(why, "magic"));
    len = rec_build(v, 9, 10, 2, seqs, nd);
    ck_assert_int_eq(cons_rec_decode(v, len, &r, why, sizeof(why)), FERRY_ESTORAGE);
    ck_assert_ptr_nonnull(strstr(why, "version 9"));
    len = rec_build(v, 1, 10, 2, seqs, nd);
    ck_assert_int_eq(cons_rec_decode(v, len - 1, &r, why, sizeof(why)), FERRY_ESTORAGE);
    ck_assert_ptr_nonnull(strstr(why, "entries"));
    len = rec_build(v, 1, 0, 0, NULL, NULL);
    ck_assert_int_eq(cons_rec_decode(v, len, &r, why, sizeof(why)), FERRY_ESTORAGE);
    uint64_t down[] = {5, 3};
    len = rec_build(v, 1, 10, 2, down, nd);
    ck_assert_int_eq(cons_rec_decode(v, len, &r, why, sizeof(why)), FERRY_ESTORAGE);
    ck_assert_ptr_nonnull(strstr(why, "increasing"));
    uint64_t high[] = {3, 10};
    len = rec_build(v, 1, 10, 2, high, nd);
    ck_assert_int_eq(cons_rec_decode(v, len, &r, why, sizeof(why)), FERRY_ESTORAGE);
    uint64_t zero[] = {0, 3};
    len = rec_build(v, 1, 10, 2, zero, nd);
    ck_assert_int_eq(cons_rec_decode(v, len, &r, why, sizeof(why)), FERRY_ESTORAGE);
    uint32_t nd0[] = {1, 0};
    len = rec_build(v, 1, 10, 2, seqs, nd0);
    ck_assert_int_eq(cons_rec_decode(v, len, &r, why, sizeof(why)), FERRY_ESTORAGE);
    ck_assert_ptr_nonnull(strstr(why, "delivery count 0"));
    ck_assert_uint_eq(r.next_seq, 77); /* out-parameter untouched on failure */
}
END_TEST

START_TEST(test_consumer_record_check_judges_key_and_topic_bounds)
{
    unsigned char v[64];
    char why[200];
    size_t len = rec_build(v, 1, 6, 0, NULL, NULL);
    struct store_topic_info t = {.id = 1, .first_seq = 1, .last_seq = 5, .n_msgs = 5};
    ck_assert_int_eq(cons_rec_check(NULL, "orders\0work", 11, v, len, &t, why, sizeof(why)), 0);
    /* next_seq one past last_seq + 1 */
    len = rec_build(v, 1, 7, 0, NULL, NULL);
    ck_assert_int_ne(cons_rec_check(NULL, "orders\0work", 11, v, len, &t, why, sizeof(why)), 0);
    ck_assert_ptr_nonnull(strstr(why, "beyond"));
    /* a topic never published: only a durable still at 1 is sound */
    len = rec_build(v, 1, 1, 0, NULL, NULL);
    ck_assert_int_eq(cons_rec_check(NULL, "orders\0work", 11, v, len, NULL, why, sizeof(why)), 0);
    len = rec_build(v, 1, 2, 0, NULL, NULL);
    ck_assert_int_ne(cons_rec_check(NULL, "orders\0work", 11, v, len, NULL, why, sizeof(why)), 0);
    ck_assert_ptr_nonnull(strstr(why, "not in the store"));
    /* names: one token, no wildcards */
    len = rec_build(v, 1, 1, 0, NULL, NULL);
    ck_assert_int_ne(cons_rec_check(NULL, "orders\0a.b", 10, v, len, &t, why, sizeof(why)), 0);
    ck_assert_int_ne(cons_rec_check(NULL, "orders\0", 7, v, len, &t, why, sizeof(why)), 0);
    ck_assert_int_ne(cons_rec_check(NULL, "ord*\0x", 6, v, len, &t, why, sizeof(why)), 0);
    ck_assert_int_ne(cons_rec_check(NULL, "ordersx", 7, v, len, &t, why, sizeof(why)), 0);
}
END_TEST

/* A wildcard durable's root (pattern NUL name: a 'W' record) and its
 * positions (pattern NUL name NUL topic: a 'D' record, topic matching). */
START_TEST(test_consumer_record_check_wildcard_keys)
{
    unsigned char root[12] = {'W', 1, 0, 0, 0x10, 0x27, 0, 0, 0, 0, 0, 0};
    char why[200];
    struct cons_rec r;
    ck_assert_int_eq(cons_rec_decode(root, sizeof(root), &r, why, sizeof(why)), 0);
    ck_assert_int_eq(r.is_root, 1);
    ck_assert_int_eq(r.start_ns, 10000);
    ck_assert_int_ne(cons_rec_decode(root, 11, &r, why, sizeof(why)), 0);
    const char rk[] = "orders.*.created\0billing";
    ck_assert_int_eq(cons_rec_check(NULL, rk, sizeof(rk) - 1, root, 12, NULL, why, sizeof(why)), 0);
    unsigned char v[64];
    size_t len = rec_build(v, 1, 6, 0, NULL, NULL);
    /* a root's key with a position's record, and the other way round */
    ck_assert_int_ne(cons_rec_check(NULL, rk, sizeof(rk) - 1, v, len, NULL, why, sizeof(why)), 0);
    const char pk[] = "orders.*.created\0billing\0orders.eu.created";
    struct store_topic_info t = {.id = 1, .first_seq = 1, .last_seq = 5, .n_msgs = 5};
    ck_assert_int_eq(cons_rec_check(NULL, pk, sizeof(pk) - 1, v, len, &t, why, sizeof(why)), 0);
    ck_assert_int_ne(cons_rec_check(NULL, pk, sizeof(pk) - 1, root, 12, &t, why, sizeof(why)), 0);
    /* its position is checked against its own topic's counters */
    len = rec_build(v, 1, 7, 0, NULL, NULL);
    ck_assert_int_ne(cons_rec_check(NULL, pk, sizeof(pk) - 1, v, len, &t, why, sizeof(why)), 0);
    ck_assert_ptr_nonnull(strstr(why, "beyond"));
    /* a topic its pattern does not match */
    len = rec_build(v, 1, 1, 0, NULL, NULL);
    const char bad[] = "orders.*.created\0billing\0orders.eu.deleted";
    ck_assert_int_ne(cons_rec_check(NULL, bad, sizeof(bad) - 1, v, len, NULL, why, sizeof(why)), 0);
    ck_assert_ptr_nonnull(strstr(why, "match"));
}
END_TEST

/* A stored durable as ferry consumers and ferryd --inspect show it. */
START_TEST(test_consumer_info_from_record_keys_and_figures)
{
    unsigned char v[64];
    uint64_t seqs[] = {4, 6};
    uint32_t nd[] = {1, 3};
    size_t len = rec_build(v, 1, 8, 2, seqs, nd);
    struct cons_info ci;
    struct cons_rec r;
    char why[200];
    const char k[] = "orders.eu\0billing";
    ck_assert_int_eq(cons_info_from_record(k, sizeof(k) - 1, v, len, &ci, &r, why, sizeof(why)), 0);
    ck_assert_str_eq(ci.topic, "orders.eu");
    ck_assert_str_eq(ci.name, "billing");
    ck_assert_str_eq(ci.pattern, "");
    ck_assert_int_eq(ci.is_root, 0);
    ck_assert_uint_eq(ci.next_seq, 8);
    ck_assert_uint_eq(ci.ack_floor, 3);
    ck_assert_uint_eq(ci.n_pending, 2);
    ck_assert_uint_eq(ci.n_redelivered, 1);
    ck_assert_str_eq(r.owner, "");
    /* nothing pending: the floor is next_seq - 1 */
    len = rec_build(v, 1, 8, 0, NULL, NULL);
    ck_assert_int_eq(cons_info_from_record(k, sizeof(k) - 1, v, len, &ci, NULL, why, sizeof(why)),
                     0);
    ck_assert_uint_eq(ci.ack_floor, 7);
    /* a wildcard durable's position, and its root */
    const char pk[] = "orders.*\0wd\0orders.us";
    ck_assert_int_eq(cons_info_from_record(pk, sizeof(pk) - 1, v, len, &ci, NULL, why, sizeof(why)),
                     0);
    ck_assert_str_eq(ci.topic, "orders.us");
    ck_assert_str_eq(ci.name, "wd");
    ck_assert_str_eq(ci.pattern, "orders.*");
    unsigned char root[12] = {'W', 1, 0, 0, 0x10, 0x27, 0, 0, 0, 0, 0, 0};
    const char rk[] = "orders.*\0wd";
    ck_assert_int_eq(
        cons_info_from_record(rk, sizeof(rk) - 1, root, sizeof(root), &ci, &r, why, sizeof(why)),
        0);
    ck_assert_int_eq(ci.is_root, 1);
    ck_assert_int_eq(r.start_ns, 10000);
    /* refused: a key without NUL, a damaged record */
    ck_assert_int_ne(cons_info_from_record("orders.eu", 9, v, len, &ci, NULL, why, sizeof(why)), 0);
    ck_assert_int_ne(
        cons_info_from_record(k, sizeof(k) - 1, v, len - 1, &ci, NULL, why, sizeof(why)), 0);
}
END_TEST

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static size_t n_listed(struct cons_reg *r)
{
    struct cons_info *v = NULL;
    size_t n = 0;
    ck_assert_int_eq(cons_reg_list(r, match_any, NULL, &v, &n), 0);
    free(v);
    return n;
}

/* Without a store: the registry alone, the idle clock driven by the test. */
START_TEST(test_consumer_idle_durables_expire_held_ones_stay)
{
    struct cons_reg *r;
    ck_assert_int_eq(cons_reg_create(NULL, NULL, NULL, &r), 0);
    struct consumer *idle, *held;
    uint64_t t0 = mono_ms();
    ck_assert_int_eq(cons_bind(r, "t", 1, "idle", 4, "", 0, NULL, 1, 7, 1, NULL, NULL, &idle), 0);
    ck_assert_int_eq(cons_bind(r, "t", 1, "held", 4, "", 0, NULL, 1, 7, 2, NULL, NULL, &held), 0);
    cons_unbind(r, idle, 7, 1);
    uint64_t t1 = mono_ms();
    ck_assert_uint_eq(n_listed(r), 2);
    /* Not yet idle for 1000 ms. */
    ck_assert_int_eq(cons_reg_expire(r, 1000, t0 + 500, t0), 0);
    ck_assert_uint_eq(n_listed(r), 2);
    /* Idle long enough: it goes; the held one stays however old it is. */
    ck_assert_int_eq(cons_reg_expire(r, 1000, t1 + 1000, t0), 1);
    ck_assert_uint_eq(n_listed(r), 1);
    struct cons_info *v = NULL;
    size_t n = 0;
    ck_assert_int_eq(cons_reg_list(r, match_any, NULL, &v, &n), 0);
    ck_assert_str_eq(v[0].name, "held");
    free(v);
    ck_assert_int_eq(cons_reg_expire(r, 1000, t1 + 100000, t0), 0);
    /* Released, it is idle from then on: a new binding of the expired name
     * starts afresh. */
    cons_unbind(r, held, 7, 2);
    uint64_t t2 = mono_ms();
    ck_assert_int_eq(cons_reg_expire(r, 1000, t2 + 1, t0), 0);
    ck_assert_int_eq(cons_reg_expire(r, 1000, t2 + 1000, t0), 1);
    ck_assert_uint_eq(n_listed(r), 0);
    ck_assert_int_eq(cons_bind(r, "t", 1, "idle", 4, "", 0, NULL, 5, 7, 3, NULL, NULL, &idle), 0);
    ck_assert_uint_eq(cons_next_seq(idle), 5);
    cons_reg_destroy(r);
}
END_TEST

Suite *test_suite(void);

Suite *test_suite(void)
{
    Suite *s = suite_create("consumer");
    TCase *tc = tcase_create("consumer_record_decodes_position_and_pending");
    tcase_add_test(tc, test_consumer_record_decodes_position_and_pending);
    suite_add_tcase(s, tc);
    tc = tcase_create("consumer_record_rejects_each_kind_of_damage");
    tcase_add_test(tc, test_consumer_record_rejects_each_kind_of_damage);
    suite_add_tcase(s, tc);
    tc = tcase_create("consumer_record_check_judges_key_and_topic_bounds");
    tcase_add_test(tc, test_consumer_record_check_judges_key_and_topic_bounds);
    suite_add_tcase(s, tc);
    tc = tcase_create("consumer_record_check_wildcard_keys");
    tcase_add_test(tc, test_consumer_record_check_wildcard_keys);
    suite_add_tcase(s, tc);
    tc = tcase_create("consumer_info_from_record_keys_and_figures");
    tcase_add_test(tc, test_consumer_info_from_record_keys_and_figures);
    suite_add_tcase(s, tc);
    tc = tcase_create("consumer_idle_durables_expire_held_ones_stay");
    tcase_add_test(tc, test_consumer_idle_durables_expire_held_ones_stay);
    suite_add_tcase(s, tc);
    return s;
}

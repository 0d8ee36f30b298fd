/* Unit tests for broker/login.c: the login gate's waits, turns and bounds. */
#include "login.h"

#include <check.h>
#include <errno.h>
#include <string.h>

Suite *test_suite(void);

static struct login_gate g;

static void gate(uint32_t max_unauth, uint32_t per_addr, uint32_t cap)
{
    struct login_limits lim = {.max_unauth = max_unauth,
                               .max_unauth_per_addr = per_addr,
                               .delay_ms = 100,
                               .delay_max_ms = 800};
    ck_assert_int_eq(login_gate_init(&g, &lim, cap), 0);
}

static void addr(uint8_t key[16], uint32_t n)
{
    memset(key, 0, 16);
    key[10] = key[11] = 0xff;
    key[12] = 10;
    key[13] = (uint8_t)(n >> 16);
    key[14] = (uint8_t)(n >> 8);
    key[15] = (uint8_t)n;
}

/* One failed check of key as name at now; returns the verdict it began with. */
static enum login_verdict fail_once(const uint8_t key[16], const char *name, uint64_t now)
{
    uint64_t at;
    enum login_verdict v = login_begin(&g, key, name, now, &at);
    if (v == LOGIN_RUN || v == LOGIN_AT) {
        login_end(&g, key, name, 1, 0, at);
    }
    return v;
}

START_TEST(test_waits_double_after_the_free_failures_then_refuse)
{
    gate(100, 50, 64);
    uint8_t a[16];
    addr(a, 1);
    uint64_t at, now = 1000;
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(fail_once(a, "alice", now), LOGIN_RUN); /* free */
    }
    ck_assert_int_eq(fail_once(a, "alice", now), LOGIN_RUN); /* the 4th sets a wait */
    ck_assert_int_eq(login_begin(&g, a, "bob", now, &at), LOGIN_AT);
    ck_assert_uint_eq(at, now + 100);
    /* One turn per address: a second login waits for the first's end. */
    ck_assert_int_eq(login_begin(&g, a, "bob", now, &at), LOGIN_QUEUED);
    ck_assert_uint_eq(at, now + LOGIN_RETRY_MS);
    login_end(&g, a, "bob", 1, 0, now + 100); /* 5 failures: next wait 200 */
    ck_assert_int_eq(login_begin(&g, a, "bob", now + 100, &at), LOGIN_AT);
    ck_assert_uint_eq(at, now + 300);
    login_end(&g, a, "bob", 1, 0, now + 300);                   /* 6: 400 */
    ck_assert_int_eq(fail_once(a, "bob", now + 300), LOGIN_AT); /* ends at +700; 7: 800 */
    ck_assert_int_eq(fail_once(a, "bob", now + 700), LOGIN_AT); /* ends at +1500; 8: 800 */
    /* The wait stays at the max, under LOGIN_HOLD_MAX_MS: served, never
     * refused with this max. */
    ck_assert_int_eq(login_begin(&g, a, "bob", now + 1500, &at), LOGIN_AT);
    ck_assert_uint_eq(at, now + 2300);
    login_end(&g, a, "bob", 0, 0, now + 2300); /* not checked: nothing counted */
    ck_assert_int_eq(login_begin(&g, a, "bob", now + 2300, &at), LOGIN_RUN);
    login_end(&g, a, "bob", 0, 0, now + 2300);
    /* Quiet for LOGIN_FORGET_MS: starts over. */
    ck_assert_int_eq(login_begin(&g, a, "carol", now + 2000 + LOGIN_FORGET_MS, &at), LOGIN_RUN);
    login_end(&g, a, "carol", 1, 1, now + 2000 + LOGIN_FORGET_MS);
    login_gate_deinit(&g);
}
END_TEST

START_TEST(test_long_waits_are_refused_with_the_time)
{
    struct login_limits lim = {
        .max_unauth = 10, .max_unauth_per_addr = 10, .delay_ms = 400, .delay_max_ms = 5000};
    ck_assert_int_eq(login_gate_init(&g, &lim, 64), 0);
    uint8_t a[16];
    addr(a, 2);
    uint64_t at, now = 5000;
    for (int i = 0; i < 4; i++) {
        fail_once(a, NULL, now);
    }
    ck_assert_int_eq(fail_once(a, NULL, now), LOGIN_AT);       /* waited 400 */
    ck_assert_int_eq(fail_once(a, NULL, now + 400), LOGIN_AT); /* waited 800 */
    /* the next wait is 1.6 s, over LOGIN_HOLD_MAX_MS */
    ck_assert_int_eq(login_begin(&g, a, NULL, now + 1200, &at), LOGIN_REFUSE);
    ck_assert_uint_eq(at, now + 1200 + 1600);
    /* a refusal takes no turn and counts nothing */
    ck_assert_int_eq(login_begin(&g, a, NULL, now + 1200 + 1600, &at), LOGIN_RUN);
    login_gate_deinit(&g);
}
END_TEST

START_TEST(test_a_name_under_attack_holds_a_clean_address_at_most_briefly)
{
    struct login_limits lim = {
        .max_unauth = 10, .max_unauth_per_addr = 10, .delay_ms = 2000, .delay_max_ms = 60000};
    ck_assert_int_eq(login_gate_init(&g, &lim, 64), 0);
    uint64_t at, now = 1000;
    /* alice fails 8 times, from 8 addresses (each address stays free) */
    for (uint32_t i = 0; i < 8; i++) {
        uint8_t a[16];
        addr(a, 100 + i);
        ck_assert_int_ne(fail_once(a, "alice", now), LOGIN_REFUSE);
    }
    uint8_t clean[16], dirty[16];
    addr(clean, 7);
    ck_assert_int_eq(login_begin(&g, clean, "alice", now, &at), LOGIN_AT);
    ck_assert_uint_eq(at, now + LOGIN_CLEAN_WAIT_MS);
    login_end(&g, clean, "alice", 1, 1, at); /* the real alice: the name starts over */
    /* an address that failed before gets the name's full wait */
    addr(dirty, 100);
    for (int i = 0; i < 4; i++) {
        fail_once(dirty, "bob", now);
    }
    for (int i = 0; i < 4; i++) {
        fail_once(clean, "alice", now + 2000);
    }
    ck_assert_int_eq(login_begin(&g, dirty, "alice", now + 2000, &at), LOGIN_REFUSE);
    login_gate_deinit(&g);
}
END_TEST

START_TEST(test_unauthenticated_bounds)
{
    gate(5, 3, 64);
    uint8_t a[16], b[16];
    addr(a, 1);
    addr(b, 2);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(login_unauth_enter(&g, a, 10), 0);
    }
    ck_assert_int_eq(login_unauth_enter(&g, a, 10), -EBUSY); /* per address */
    ck_assert_int_eq(login_unauth_enter(&g, b, 10), 0);
    ck_assert_int_eq(login_unauth_enter(&g, b, 10), 0);
    ck_assert_int_eq(login_unauth_count(&g), 5);
    ck_assert_int_eq(login_unauth_enter(&g, b, 10), -EBUSY); /* in all */
    login_unauth_leave(&g, a, 11);
    ck_assert_int_eq(login_unauth_enter(&g, b, 11), 0);
    ck_assert_int_eq(login_unauth_enter(&g, b, 11), -EBUSY);
    login_gate_deinit(&g);
}
END_TEST

/* A full table drops idle entries, never one that holds a turn or counts
 * connections. */
START_TEST(test_full_table_keeps_what_is_held)
{
    gate(1000, 1000, 16); /* one probe window: 16 entries */
    uint8_t k[16];
    uint64_t at;
    for (uint32_t i = 0; i < 16; i++) {
        addr(k, i);
        ck_assert_int_eq(login_unauth_enter(&g, k, 5), 0);
    }
    addr(k, 99);
    ck_assert_int_eq(login_unauth_enter(&g, k, 5), -EBUSY); /* nothing to drop */
    ck_assert_int_eq(login_begin(&g, k, NULL, 5, &at), LOGIN_QUEUED);
    addr(k, 3);
    login_unauth_leave(&g, k, 6); /* now idle: may make room */
    addr(k, 99);
    ck_assert_int_eq(login_unauth_enter(&g, k, 7), 0);
    for (uint32_t i = 0; i < 16; i++) {
        if (i != 3) {
            addr(k, i);
            login_unauth_leave(&g, k, 8);
        }
    }
    addr(k, 99);
    login_unauth_leave(&g, k, 8);
    ck_assert_int_eq(login_unauth_count(&g), 0);
    login_gate_deinit(&g);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("login");
    TCase *tc = tcase_create("login");
    tcase_add_test(tc, test_waits_double_after_the_free_failures_then_refuse);
    tcase_add_test(tc, test_long_waits_are_refused_with_the_time);
    tcase_add_test(tc, test_a_name_under_attack_holds_a_clean_address_at_most_briefly);
    tcase_add_test(tc, test_unauthenticated_bounds);
    tcase_add_test(tc, test_full_table_keeps_what_is_held);
    suite_add_tcase(s, tc);
    return s;
}

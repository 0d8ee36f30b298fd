/*
 * test_timer_heap.c - the IO threads' deadline heap.
 */
#include <check.h>
#include <stdlib.h>

#include "timer_heap.h"

Suite *test_suite(void);

START_TEST(test_theap_pops_in_deadline_order)
{
    struct theap h;
    theap_init(&h);
    enum { N = 1000 };
    static uint32_t pos[N];
    static uint64_t when[N];
    srand(7);
    for (int i = 0; i < N; i++) {
        pos[i] = TIMER_NONE;
        when[i] = (uint64_t)(rand() % 100000);
        ck_assert_int_eq(theap_set(&h, &pos[i], when[i], &when[i]), 0);
    }
    /* Move some, remove some. */
    for (int i = 0; i < N; i += 3) {
        when[i] = (uint64_t)(rand() % 100000);
        ck_assert_int_eq(theap_set(&h, &pos[i], when[i], &when[i]), 0);
    }
    for (int i = 1; i < N; i += 5) {
        theap_remove(&h, &pos[i]);
        ck_assert_uint_eq(pos[i], TIMER_NONE);
        theap_remove(&h, &pos[i]); /* twice is harmless */
    }
    uint64_t last = 0;
    int n = 0;
    const struct theap_ent *e;
    while ((e = theap_peek(&h)) != NULL) {
        ck_assert_uint_ge(e->when, last);
        uint64_t *w = e->data;
        ck_assert_uint_eq(*w, e->when);
        last = e->when;
        theap_remove(&h, e->pos);
        n++;
    }
    ck_assert_int_eq(n, N - N / 5);
    theap_deinit(&h);
}
END_TEST

/* After theap_reserve(n), n insertions allocate nothing (so they cannot
 * fail): the IO thread reserves a place per connection when it accepts one. */
START_TEST(test_theap_reserve_makes_inserts_infallible)
{
    struct theap h;
    theap_init(&h);
    ck_assert_int_eq(theap_reserve(&h, 1000), 0);
    ck_assert_uint_ge(h.cap, 1000);
    struct theap_ent *before = h.e;
    static uint32_t pos[1000];
    for (uint32_t i = 0; i < 1000; i++) {
        pos[i] = TIMER_NONE;
        ck_assert_int_eq(theap_set(&h, &pos[i], 1000 - i, NULL), 0);
    }
    ck_assert_ptr_eq(h.e, before);
    ck_assert_uint_eq(h.n, 1000);
    ck_assert_uint_eq(theap_peek(&h)->when, 1);
    ck_assert_int_eq(theap_reserve(&h, 10), 0); /* never shrinks */
    ck_assert_ptr_eq(h.e, before);
    theap_deinit(&h);
}
END_TEST

START_TEST(test_theap_positions_track_entries)
{
    struct theap h;
    theap_init(&h);
    uint32_t a = TIMER_NONE, b = TIMER_NONE, c = TIMER_NONE;
    theap_set(&h, &a, 30, NULL);
    theap_set(&h, &b, 20, NULL);
    theap_set(&h, &c, 10, NULL);
    ck_assert_uint_eq(h.e[c].when, 10);
    ck_assert_uint_eq(h.e[a].when, 30);
    ck_assert_ptr_eq(theap_peek(&h)->pos, &c);
    theap_set(&h, &a, 5, NULL); /* earlier: moves up */
    ck_assert_ptr_eq(theap_peek(&h)->pos, &a);
    theap_deinit(&h);
    ck_assert_uint_eq(a, TIMER_NONE);
    ck_assert_uint_eq(c, TIMER_NONE);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("timer_heap");
    TCase *tc = tcase_create("timer_heap");
    tcase_add_test(tc, test_theap_pops_in_deadline_order);
    tcase_add_test(tc, test_theap_positions_track_entries);
    tcase_add_test(tc, test_theap_reserve_makes_inserts_infallible);
    suite_add_tcase(s, tc);
    return s;
}

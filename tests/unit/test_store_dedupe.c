/*
 * test_store_dedupe.c - producer sequences in the store (store_dedupe.c):
 * found in the open batch and after its commit, kept through a crash that
 * left only the log and through a map resize, per topic, within the span,
 * and forgotten by expiry.
 */
#include "store_test.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Append producer p's sequence q to topic at time t; returns its seq. */
static uint64_t put(struct store_batch *b, const char *topic, uint64_t p, uint64_t q, int64_t t)
{
    char text[48]; /* "p" and two 20-digit numbers */
    int len =
        snprintf(text, sizeof(text), "p%llu.%llu", (unsigned long long)p, (unsigned long long)q);
    struct store_msg_in m = {.publish_time = t,
                             .payload = text,
                             .payload_len = (size_t)len,
                             .producer_id = p,
                             .producer_seq = q};
    struct store_append_result ar;
    ck_assert_int_eq(store_batch_append(b, topic, strlen(topic), &m, &ar), 0);
    return ar.seq;
}

/* store_batch_dedupe_find's answer; *seq set when 1. */
static int find(struct store_batch *b, const char *topic, uint64_t p, uint64_t q, uint64_t *seq)
{
    *seq = UINT64_MAX;
    return store_batch_dedupe_find(b, topic, strlen(topic), p, q, seq);
}

/* A whole expiry pass; the count removed. */
static uint64_t expire(struct store *s, int64_t before)
{
    struct store_dedupe_pos pos = {{0}};
    uint64_t total = 0, n;
    bool is_done = false;
    for (int i = 0; !is_done; i++) {
        ck_assert_int_lt(i, 1000);
        ck_assert_int_eq(store_dedupe_expire(s, before, &pos, &n, &is_done), 0);
        total += n;
    }
    return total;
}

START_TEST(test_dedupe_found_in_the_batch_and_after_commit)
{
    struct store *s = open_store(NULL);
    struct store_batch *b;
    uint64_t seq;
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    ck_assert_int_eq(find(b, "d.a", 7, 1, &seq), 0); /* no such topic yet */
    ck_assert_uint_eq(put(b, "d.a", 7, 1, 1000), 1);
    ck_assert_uint_eq(put(b, "d.a", 9, 1, 1001), 2); /* another producer */
    ck_assert_uint_eq(put(b, "d.a", 7, 3, 1002), 3);
    /* Seen in the open batch, with the sequence each got. */
    ck_assert_int_eq(find(b, "d.a", 7, 1, &seq), 1);
    ck_assert_uint_eq(seq, 1);
    ck_assert_int_eq(find(b, "d.a", 9, 1, &seq), 1);
    ck_assert_uint_eq(seq, 2);
    ck_assert_int_eq(find(b, "d.a", 7, 3, &seq), 1);
    ck_assert_uint_eq(seq, 3);
    /* Not seen: a gap between kept ones, a newer one, another topic. */
    ck_assert_int_eq(find(b, "d.a", 7, 2, &seq), 0);
    ck_assert_int_eq(find(b, "d.a", 7, 4, &seq), 0);
    ck_assert_int_eq(find(b, "d.a", 8, 1, &seq), 0);
    ck_assert_int_eq(store_batch_commit(b), 0);
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    ck_assert_uint_eq(put(b, "d.b", 7, 1, 1003), 1); /* the same sequence elsewhere */
    ck_assert_int_eq(find(b, "d.a", 7, 3, &seq), 1);
    ck_assert_uint_eq(seq, 3);
    ck_assert_int_eq(find(b, "d.b", 7, 1, &seq), 1);
    ck_assert_uint_eq(seq, 1);
    /* Bad arguments. */
    ck_assert_int_eq(store_batch_dedupe_find(b, "d.a", 3, 0, 1, &seq), FERRY_EINVAL);
    ck_assert_int_eq(store_batch_dedupe_find(b, "", 0, 7, 1, &seq), FERRY_EINVAL);
    store_batch_abort(b);
    /* The abort took d.b's entry with its message. */
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    ck_assert_int_eq(find(b, "d.b", 7, 1, &seq), 0);
    store_batch_abort(b);
    store_close(s);
}
END_TEST

START_TEST(test_dedupe_span_forgets_old_sequences_as_seen)
{
    struct store *s = open_store(NULL);
    struct store_batch *b;
    uint64_t seq;
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    put(b, "d.s", 5, 10, 1);
    put(b, "d.s", 5, 20, 2);
    /* Far ahead: 10 and 20 fall more than the span behind. */
    put(b, "d.s", 5, 21 + STORE_DEDUPE_SPAN, 3);
    ck_assert_int_eq(store_batch_commit(b), 0);
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    /* Older than every kept one: seen, its sequence forgotten. */
    ck_assert_int_eq(find(b, "d.s", 5, 10, &seq), 1);
    ck_assert_uint_eq(seq, 0);
    ck_assert_int_eq(find(b, "d.s", 5, 20, &seq), 1);
    ck_assert_uint_eq(seq, 0);
    /* The newest is kept exactly; one newer is new. */
    ck_assert_int_eq(find(b, "d.s", 5, 21 + STORE_DEDUPE_SPAN, &seq), 1);
    ck_assert_uint_eq(seq, 3);
    ck_assert_int_eq(find(b, "d.s", 5, 22 + STORE_DEDUPE_SPAN, &seq), 0);
    store_batch_abort(b);
    store_close(s);
}
END_TEST

START_TEST(test_dedupe_expiry_forgets_a_producer)
{
    struct store *s = open_store(NULL);
    struct store_batch *b;
    uint64_t seq;
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    for (uint64_t q = 1; q <= 10; q++) {
        put(b, "d.e", 1, q, (int64_t)q * 1000); /* producer 1: times 1000..10000 */
    }
    put(b, "d.e", 2, 1, 50000); /* producer 2: recent */
    put(b, "d.f", 1, 11, 60000);
    ck_assert_int_eq(store_batch_commit(b), 0);
    /* Everything of producer 1 on d.e up to time 5000 goes. */
    ck_assert_uint_eq(expire(s, 5500), 5);
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    ck_assert_int_eq(find(b, "d.e", 1, 5, &seq), 1);
    ck_assert_uint_eq(seq, 0); /* below what is kept: seen */
    ck_assert_int_eq(find(b, "d.e", 1, 6, &seq), 1);
    ck_assert_uint_eq(seq, 6);
    store_batch_abort(b);
    /* Then all of producer 1 on d.e; producer 2 and d.f stay. */
    ck_assert_uint_eq(expire(s, 20000), 5);
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    ck_assert_int_eq(find(b, "d.e", 1, 10, &seq), 0); /* forgotten: new again */
    ck_assert_int_eq(find(b, "d.e", 2, 1, &seq), 1);
    ck_assert_uint_eq(seq, 11);
    ck_assert_int_eq(find(b, "d.f", 1, 11, &seq), 1);
    ck_assert_uint_eq(seq, 1);
    store_batch_abort(b);
    ck_assert_uint_eq(expire(s, INT64_MAX), 2);
    /* Passes larger than one transaction's share. */
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    for (uint64_t q = 1; q <= 9000; q++) {
        put(b, q % 2 ? "d.g" : "d.h", 4 + q % 3, q, (int64_t)q);
    }
    ck_assert_int_eq(store_batch_commit(b), 0);
    ck_assert_uint_eq(expire(s, 4501), 4500);
    ck_assert_uint_eq(expire(s, 4501), 0);
    ck_assert_uint_eq(expire(s, INT64_MAX), 4500);
    store_close(s);
}
END_TEST

/* A sequence re-sent late (refused the first time, so never stored) is
 * stored below later ones; what the writer caches of the producer must
 * still cover those later ones. */
START_TEST(test_dedupe_late_resend_below_later_ones)
{
    struct store *s = open_store(NULL);
    struct store_batch *b;
    uint64_t seq;
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    ck_assert_uint_eq(put(b, "d.l", 6, 5, 1), 1);
    ck_assert_uint_eq(put(b, "d.l", 6, 7, 2), 2);
    ck_assert_int_eq(store_batch_commit(b), 0);
    store_close(s);
    s = open_store(NULL); /* nothing cached */
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    ck_assert_int_eq(find(b, "d.l", 6, 6, &seq), 0);
    ck_assert_uint_eq(put(b, "d.l", 6, 6, 3), 3);
    ck_assert_int_eq(find(b, "d.l", 6, 7, &seq), 1);
    ck_assert_uint_eq(seq, 2);
    ck_assert_int_eq(find(b, "d.l", 6, 8, &seq), 0);
    ck_assert_int_eq(store_batch_commit(b), 0);
    store_close(s);
}
END_TEST

/* A live entry at the largest sequence there is does not stall expiry:
 * the pass moves on to the next producer and ends. */
START_TEST(test_dedupe_expiry_passes_the_largest_sequence)
{
    struct store *s = open_store(NULL);
    struct store_batch *b;
    uint64_t seq;
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    put(b, "d.m", 1, UINT64_MAX, 5000); /* live at 1000 */
    put(b, "d.m", 2, 1, 10);            /* expired at 1000 */
    put(b, "d.m", UINT64_MAX, UINT64_MAX, 20);
    ck_assert_int_eq(store_batch_commit(b), 0);
    ck_assert_uint_eq(expire(s, 1000), 2);
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    ck_assert_int_eq(find(b, "d.m", 1, UINT64_MAX, &seq), 1);
    ck_assert_uint_eq(seq, 1);
    ck_assert_int_eq(find(b, "d.m", 2, 1, &seq), 0);
    store_batch_abort(b);
    store_close(s);
}
END_TEST

/* The crashed writer's batch: 2,000 messages of producer 3, sequences
 * 2, 4, ..., large enough to grow a 1 MiB map. */
static int fill_dedupe(struct store_batch *b)
{
    static char big[2000];
    for (uint64_t q = 1; q <= 2000; q++) {
        struct store_msg_in m = {.publish_time = (int64_t)q,
                                 .payload = big,
                                 .payload_len = sizeof(big),
                                 .producer_id = 3,
                                 .producer_seq = q * 2};
        if (store_batch_append(b, "d.c", 3, &m, NULL) != 0) {
            return -1;
        }
    }
    return 0;
}

/* Entries written by a batch that was only logged come back with their
 * messages when the log is replayed; so do entries written while the map
 * grew under the batch. */
START_TEST(test_dedupe_survives_a_crash_and_a_map_resize)
{
    struct store_options o;
    store_options_init(&o);
    o.map_size_initial = 1 << 20; /* small: the batch below grows it */
    crash_after_log(&o, fill_dedupe);
    struct store *s = open_store(&o);
    struct store_batch *b;
    uint64_t seq;
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    ck_assert_int_eq(find(b, "d.c", 3, 2, &seq), 1);
    ck_assert_uint_eq(seq, 1);
    ck_assert_int_eq(find(b, "d.c", 3, 4000, &seq), 1);
    ck_assert_uint_eq(seq, 2000);
    ck_assert_int_eq(find(b, "d.c", 3, 3999, &seq), 0);
    store_batch_abort(b);
    store_close(s);
}
END_TEST

Suite *test_suite(void);

Suite *test_suite(void)
{
    Suite *s = suite_create("store_dedupe");
    add_case(s, tcase_create("dedupe_found_in_the_batch_and_after_commit"),
             test_dedupe_found_in_the_batch_and_after_commit);
    add_case(s, tcase_create("dedupe_span_forgets_old_sequences_as_seen"),
             test_dedupe_span_forgets_old_sequences_as_seen);
    add_case(s, tcase_create("dedupe_expiry_forgets_a_producer"),
             test_dedupe_expiry_forgets_a_producer);
    add_case(s, tcase_create("dedupe_late_resend_below_later_ones"),
             test_dedupe_late_resend_below_later_ones);
    add_case(s, tcase_create("dedupe_expiry_passes_the_largest_sequence"),
             test_dedupe_expiry_passes_the_largest_sequence);
    add_case(s, tcase_create("dedupe_survives_a_crash_and_a_map_resize"),
             test_dedupe_survives_a_crash_and_a_map_resize);
    return s;
}

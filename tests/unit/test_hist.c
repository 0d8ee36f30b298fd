/*
 * test_hist.c - the log-bucketed latency histogram of `ferry bench`.
 */
#include "hist.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>

Suite *test_suite(void);

static struct hist *hist_new(void)
{
    struct hist *h = malloc(sizeof(*h));
    ck_assert_ptr_nonnull(h);
    hist_init(h);
    return h;
}

START_TEST(test_hist_small_values_are_exact)
{
    for (uint64_t v = 0; v < HIST_SUB_COUNT; v++) {
        size_t i = hist_bucket_index(v);
        ck_assert_uint_eq(hist_bucket_low(i), v);
        ck_assert_uint_eq(hist_bucket_high(i), v);
    }
}
END_TEST

START_TEST(test_hist_buckets_tile_the_range_without_gaps)
{
    ck_assert_uint_eq(hist_bucket_low(0), 0);
    for (size_t i = 1; i < HIST_N_BUCKETS; i++) {
        ck_assert_uint_eq(hist_bucket_low(i), hist_bucket_high(i - 1) + 1);
        ck_assert_uint_eq(hist_bucket_index(hist_bucket_low(i)), i);
        ck_assert_uint_eq(hist_bucket_index(hist_bucket_high(i)), i);
    }
    ck_assert_uint_eq(hist_bucket_high(HIST_N_BUCKETS - 1), UINT64_MAX);
    ck_assert_uint_eq(hist_bucket_index(UINT64_MAX), HIST_N_BUCKETS - 1);
}
END_TEST

START_TEST(test_hist_relative_error_is_below_one_in_64)
{
    uint64_t v = 65;
    while (v < UINT64_MAX / 3) {
        size_t i = hist_bucket_index(v);
        uint64_t lo = hist_bucket_low(i), hi = hist_bucket_high(i);
        ck_assert(lo <= v && v <= hi);
        ck_assert((double)(hi - lo) <= (double)lo / 64.0);
        v = v * 3 + 7;
    }
}
END_TEST

START_TEST(test_hist_empty_reports_zero)
{
    struct hist *h = hist_new();
    ck_assert_uint_eq(hist_percentile(h, 50), 0);
    ck_assert_uint_eq(hist_percentile(h, 100), 0);
    ck_assert(hist_mean(h) == 0.0);
    ck_assert_uint_eq(h->count, 0);
    free(h);
}
END_TEST

START_TEST(test_hist_percentiles_of_uniform_values)
{
    struct hist *h = hist_new();
    for (uint64_t v = 1; v <= 10000; v++) {
        hist_record(h, v * 1000); /* 1 us .. 10 ms */
    }
    ck_assert_uint_eq(h->count, 10000);
    ck_assert_uint_eq(h->min, 1000);
    ck_assert_uint_eq(h->max, 10000000);
    struct {
        double pct;
        double want;
    } cases[] = {{50, 5000000}, {90, 9000000}, {99, 9900000}, {99.9, 9990000}, {1, 100000}};
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        double got = (double)hist_percentile(h, cases[k].pct);
        ck_assert_msg(got >= cases[k].want && got <= cases[k].want * (1 + 1.0 / 64),
                      "p%g = %g, want about %g", cases[k].pct, got, cases[k].want);
    }
    ck_assert_uint_eq(hist_percentile(h, 100), 10000000);
    ck_assert_uint_eq(hist_percentile(h, 0), 1000);
    double mean = hist_mean(h);
    ck_assert(mean > 5000499.0 && mean < 5000501.0);
    free(h);
}
END_TEST

START_TEST(test_hist_percentile_never_exceeds_max_or_drops_below_min)
{
    struct hist *h = hist_new();
    hist_record(h, 1000001); /* its bucket reaches higher */
    ck_assert_uint_eq(hist_percentile(h, 50), 1000001);
    ck_assert_uint_eq(hist_percentile(h, 99.9), 1000001);
    ck_assert_uint_eq(hist_percentile(h, -5), 1000001);
    ck_assert_uint_eq(hist_percentile(h, 250), 1000001);
    free(h);
}
END_TEST

START_TEST(test_hist_percentiles_are_monotonic)
{
    struct hist *h = hist_new();
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        hist_record(h, x % 50000000);
    }
    uint64_t prev = 0;
    for (double p = 0; p <= 100; p += 0.5) {
        uint64_t v = hist_percentile(h, p);
        ck_assert_uint_ge(v, prev);
        prev = v;
    }
    free(h);
}
END_TEST

START_TEST(test_hist_skewed_tail_is_found)
{
    struct hist *h = hist_new();
    hist_record_n(h, 50000, 9990); /* 50 us */
    hist_record_n(h, 5000000, 10); /* 5 ms: the top 0.1 % */
    uint64_t p99 = hist_percentile(h, 99);
    uint64_t p999 = hist_percentile(h, 99.9);
    uint64_t p9995 = hist_percentile(h, 99.95);
    ck_assert(p99 >= 50000 && p99 <= 50000 + 50000 / 64);
    ck_assert(p999 >= 50000 && p999 <= 50000 + 50000 / 64);
    ck_assert_uint_eq(p9995, 5000000);
    free(h);
}
END_TEST

START_TEST(test_hist_merge_adds_counts_and_extremes)
{
    struct hist *a = hist_new(), *b = hist_new(), *all = hist_new();
    for (uint64_t v = 0; v < 1000; v++) {
        hist_record(a, v * 7);
        hist_record(all, v * 7);
        hist_record(b, v * 13 + 5);
        hist_record(all, v * 13 + 5);
    }
    hist_merge(a, b);
    ck_assert_uint_eq(a->count, 2000);
    ck_assert_uint_eq(a->min, 0);
    ck_assert_uint_eq(a->max, 999 * 13 + 5);
    for (size_t i = 0; i < HIST_N_BUCKETS; i++) {
        ck_assert_uint_eq(a->buckets[i], all->buckets[i]);
    }
    ck_assert_uint_eq(hist_percentile(a, 90), hist_percentile(all, 90));
    /* merging an empty histogram changes nothing */
    struct hist *empty = hist_new();
    hist_merge(a, empty);
    ck_assert_uint_eq(a->count, 2000);
    ck_assert_uint_eq(a->min, 0);
    free(a);
    free(b);
    free(all);
    free(empty);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("hist");
    TCase *tc = tcase_create("hist");
    tcase_add_test(tc, test_hist_small_values_are_exact);
    tcase_add_test(tc, test_hist_buckets_tile_the_range_without_gaps);
    tcase_add_test(tc, test_hist_relative_error_is_below_one_in_64);
    tcase_add_test(tc, test_hist_empty_reports_zero);
    tcase_add_test(tc, test_hist_percentiles_of_uniform_values);
    tcase_add_test(tc, test_hist_percentile_never_exceeds_max_or_drops_below_min);
    tcase_add_test(tc, test_hist_percentiles_are_monotonic);
    tcase_add_test(tc, test_hist_skewed_tail_is_found);
    tcase_add_test(tc, test_hist_merge_adds_counts_and_extremes);
    suite_add_tcase(s, tc);
    return s;
}

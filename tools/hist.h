/*
 * hist.h - a log-bucketed histogram of unsigned 64-bit values (latencies in
 * nanoseconds, for `ferry bench`).
 *
 * Values below 2^HIST_SUB_BITS get one bucket each, so they are exact. Above
 * that, every power of two [2^e, 2^(e+1)) is split into 2^HIST_SUB_BITS equal
 * buckets, so a value is known to within 1/64 (1.6 %) of itself, at any
 * magnitude up to UINT64_MAX. Recording is a few shifts and one increment:
 * cheap enough for every message of a benchmark.
 *
 * A histogram is plain memory (about 30 KiB) with no internal locking: one
 * thread records into it; give each thread its own and hist_merge() them at
 * the end. Pure module: no IO, no allocation.
 */
#ifndef FERRY_TOOLS_HIST_H
#define FERRY_TOOLS_HIST_H

#include <stddef.h>
#include <stdint.h>

#define HIST_SUB_BITS 6
#define HIST_SUB_COUNT (1u << HIST_SUB_BITS)
/* Exact buckets [0, 64), then 64 buckets for each exponent 6..63. */
#define HIST_N_BUCKETS ((size_t)HIST_SUB_COUNT * (64 - HIST_SUB_BITS + 1))

struct hist {
    uint64_t count; /* values recorded */
    uint64_t min;   /* smallest value recorded; UINT64_MAX when empty */
    uint64_t max;   /* largest value recorded; 0 when empty */
    double sum;     /* sum of the values, for the mean */
    uint64_t buckets[HIST_N_BUCKETS];
};

/* Make h empty. h is caller storage; nothing to release afterwards. */
void hist_init(struct hist *h);

/* Record value v once, or n times. */
void hist_record(struct hist *h, uint64_t v);
void hist_record_n(struct hist *h, uint64_t v, uint64_t n);

/* Add every value recorded in src to dst. src is not changed. */
void hist_merge(struct hist *dst, const struct hist *src);

/*
 * The value at percentile pct (0..100): the smallest recorded value v such
 * that at least pct % of the values are <= v, reported as the highest value
 * of v's bucket but never above h->max (so pct 100 is exactly the max) nor
 * below h->min. 0 for an empty histogram. pct outside [0, 100] is clamped.
 */
uint64_t hist_percentile(const struct hist *h, double pct);

/* The arithmetic mean of the recorded values; 0 when empty. */
double hist_mean(const struct hist *h);

/* Bucket arithmetic, exposed for tests: the index of v's bucket, and the
 * lowest and highest value a bucket holds. */
size_t hist_bucket_index(uint64_t v);
uint64_t hist_bucket_low(size_t idx);
uint64_t hist_bucket_high(size_t idx);

#endif /* FERRY_TOOLS_HIST_H */

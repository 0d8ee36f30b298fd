/*
 * hist.c - log-bucketed histogram; see hist.h for the bucket layout.
 */
#include "hist.h"

#include <string.h>

/* floor(log2(v)) for v > 0. */
static unsigned ilog2_u64(uint64_t v)
{
    return 63u - (unsigned)__builtin_clzll(v);
}

size_t hist_bucket_index(uint64_t v)
{
    if (v < HIST_SUB_COUNT) {
        return (size_t)v;
    }
    unsigned e = ilog2_u64(v); /* >= HIST_SUB_BITS */
    unsigned shift = e - HIST_SUB_BITS;
    /* v >> shift lies in [64, 128): the top bit is implied by e. */
    size_t sub = (size_t)(v >> shift) - HIST_SUB_COUNT;
    return (size_t)(e - HIST_SUB_BITS + 1) * HIST_SUB_COUNT + sub;
}

uint64_t hist_bucket_low(size_t idx)
{
    if (idx < HIST_SUB_COUNT) {
        return (uint64_t)idx;
    }
    unsigned e = (unsigned)(idx / HIST_SUB_COUNT) + HIST_SUB_BITS - 1;
    uint64_t sub = (uint64_t)(idx % HIST_SUB_COUNT);
    return (HIST_SUB_COUNT + sub) << (e - HIST_SUB_BITS);
}

uint64_t hist_bucket_high(size_t idx)
{
    if (idx < HIST_SUB_COUNT) {
        return (uint64_t)idx;
    }
    unsigned e = (unsigned)(idx / HIST_SUB_COUNT) + HIST_SUB_BITS - 1;
    uint64_t width = (uint64_t)1 << (e - HIST_SUB_BITS);
    /* The last bucket ends at UINT64_MAX; low + width - 1 cannot overflow. */
    return hist_bucket_low(idx) + (width - 1);
}

void hist_init(struct hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

void hist_record_n(struct hist *h, uint64_t v, uint64_t n)
{
    if (n == 0) {
        return;
    }
    h->buckets[hist_bucket_index(v)] += n;
    h->count += n;
    h->sum += (double)v * (double)n;
    if (v < h->min) {
        h->min = v;
    }
    if (v > h->max) {
        h->max = v;
    }
}

void hist_record(struct hist *h, uint64_t v)
{
    hist_record_n(h, v, 1);
}

void hist_merge(struct hist *dst, const struct hist *src)
{
    if (src->count == 0) {
        return;
    }
    for (size_t i = 0; i < HIST_N_BUCKETS; i++) {
        dst->buckets[i] += src->buckets[i];
    }
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min) {
        dst->min = src->min;
    }
    if (src->max > dst->max) {
        dst->max = src->max;
    }
}

uint64_t hist_percentile(const struct hist *h, double pct)
{
    if (h->count == 0) {
        return 0;
    }
    if (!(pct > 0.0)) { /* also catches NaN */
        return h->min;
    }
    if (pct >= 100.0) {
        return h->max;
    }
    /* rank = ceil(count * pct / 100), at least 1. */
    double want = (double)h->count * pct / 100.0;
    /* 99.9 % of 10000 must be rank 9990, not 9991 from rounding noise. */
    want -= want * 1e-12;
    uint64_t rank = (uint64_t)want;
    if ((double)rank < want) {
        rank++;
    }
    if (rank == 0) {
        rank = 1;
    }
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_N_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t v = hist_bucket_high(i);
            if (v > h->max) {
                v = h->max;
            }
            if (v < h->min) {
                v = h->min;
            }
            return v;
        }
    }
    return h->max;
}

double hist_mean(const struct hist *h)
{
    return h->count ? h->sum / (double)h->count : 0.0;
}

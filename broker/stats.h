/*
 * stats.h - counters kept per thread, summed on demand.
 *
 * Each thread (acceptor, IO thread, worker) owns one struct stats, aligned to
 * its own cache lines so that counting never bounces a line between cores.
 * Only the owner writes (relaxed load + store: no locked instruction); any
 * thread may read a snapshot with stats_sum(). Values are monotonic counters
 * except the gauges (conns, subs), which may go down.
 */
#ifndef FERRY_STATS_H
#define FERRY_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#define STATS_FIELDS(X)                                                                            \
    X(conns)       /* gauge: connections open on this IO thread */                                 \
    X(conns_total) /* connections accepted */                                                      \
    X(subs)        /* gauge: subscriptions open */                                                 \
    X(msgs_in)     /* Publish frames accepted */                                                   \
    X(msgs_out)    /* Deliver frames queued for sending */                                         \
    X(frames_in)                                                                                   \
    X(frames_out)                                                                                  \
    X(bytes_in)                                                                                    \
    X(bytes_out)                                                                                   \
    X(slow_consumers)                                                                              \
    X(protocol_errors)                                                                             \
    X(routed)             /* publications routed by workers */                                     \
    X(deliveries)         /* per-connection deliveries produced by workers */                      \
    X(auth_failures)      /* Connects refused: wrong, missing or unknown credentials */            \
    X(permission_denials) /* publishes, subscriptions, admin requests refused by an ACL */         \
    X(deliver_too_large)  /* Deliver frames not sent: above the connection's max_frame_len */      \
    X(pub_duplicates)     /* publishes answered as stored before (idempotent publishing) */

/* Publishes refused, by the ErrorCode of the answer (codes at or above
 * STATS_CODES count in the last slot). */
#define STATS_CODES 32

struct stats {
#define STATS_DECL(name) _Atomic uint64_t name;
    STATS_FIELDS(STATS_DECL)
#undef STATS_DECL
    _Atomic uint64_t pub_refused[STATS_CODES];
} __attribute__((aligned(64)));

/* Owner thread only. */
static inline void stats_add(_Atomic uint64_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

static inline void stats_sub(_Atomic uint64_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) - v,
                          memory_order_relaxed);
}

/* Owner thread only: a publish was refused with code. */
static inline void stats_pub_refused(struct stats *st, int code)
{
    stats_add(&st->pub_refused[code >= 0 && code < STATS_CODES ? code : STATS_CODES - 1], 1);
}

/* Any thread: out += each of in[0..n). out is a plain snapshot. */
struct stats_snapshot {
#define STATS_PLAIN(name) uint64_t name;
    STATS_FIELDS(STATS_PLAIN)
#undef STATS_PLAIN
    uint64_t pub_refused[STATS_CODES];
};

static inline void stats_sum(struct stats_snapshot *out, struct stats *in)
{
#define STATS_ADD(name) out->name += atomic_load_explicit(&in->name, memory_order_relaxed);
    STATS_FIELDS(STATS_ADD)
#undef STATS_ADD
    for (int i = 0; i < STATS_CODES; i++) {
        out->pub_refused[i] += atomic_load_explicit(&in->pub_refused[i], memory_order_relaxed);
    }
}

#endif

/*
 * router.h - matching publications against subscriptions (prefix router_).
 *
 * A router owns a copy of the subscription index (the topic trie) and the
 * topics that hash to it: it matches their publications and collects, per
 * IO thread, the deliveries (R_DELIVER), the PubAcks of ephemeral
 * publications, and the answers to W_SUB_READY and W_TOPIC_INFO. The sink
 * (router_flush) hands them over: posted to each IO thread's mailbox, or
 * given at once to the IO thread that runs the router in its own loop.
 * A worker thread runs one router (worker.c); with --reactor single, IO
 * thread 0 runs worker 0's router inline. Either way one thread only uses
 * a router: no locks here.
 */
#ifndef FERRY_ROUTER_H
#define FERRY_ROUTER_H

#include "server.h"
#include "trie.h"

struct router_hit;
struct router_outbox;

struct router {
    struct server *srv;
    uint32_t index;      /* the worker's: which topics are ours (topic_hash) */
    struct stats *stats; /* the running thread's counters */
    struct trie trie;
    struct router_hit *hits; /* scratch for one match */
    uint32_t n_hits, hits_cap;
    struct router_outbox *out; /* by IO thread: results not handed over yet */
};

/* 0, or -ENOMEM. */
int router_init(struct router *rt, struct server *s, uint32_t index, struct stats *stats);
void router_deinit(struct router *rt);

/* One item from the IO threads or the writer (W_SUB_ADD, W_SUB_DEL,
 * W_PUB_BATCH, W_STORED, W_SUB_READY, W_TOPIC_INFO); takes its reference.
 * Returns 1 for W_STOP, else 0. Results wait for router_flush(). */
int router_handle(struct router *rt, struct wmsg *m);

/* Hand every IO thread what was collected for it: the one of local (may be
 * NULL) at once, through local->fn; the others through their mailboxes (a
 * blocking post: IO threads never wait for routers). */
void router_flush(struct router *rt, const struct rsink *local);

#endif

/*
 * worker.h - the routing workers (prefix wpool_/worker_).
 *
 * A worker owns the topics that hash to it: it matches their publications
 * against its own copy of the subscription index and hands deliveries to the
 * IO threads. Every worker receives every subscription change, through the
 * same queue as publications, so a Publish that an IO thread posts after a
 * Subscribe (of any connection) is matched against it. Stored topics reach
 * their worker from the store writer, after the commit (W_STORED), so a
 * worker routes a stored topic in sequence order; the owner of a catch-up
 * subscription's topic also answers its W_SUB_READY (see io_thread.c).
 */
#ifndef FERRY_WORKER_H
#define FERRY_WORKER_H

#include "mailbox.h"
#include "server.h"

struct worker;

/* Create worker `index` of server s (not started). Returns NULL on failure. */
struct worker *worker_create(struct server *s, uint32_t index);
int worker_start(struct worker *w);
/* Post W_STOP and join; everything queued before is processed first. */
void worker_stop(struct worker *w);
void worker_destroy(struct worker *w);

/* The worker's inbound queue is server.worker_in[index] (IO threads post
 * with mbox_try_post), its counters server.worker_stats[index]. */

/*
 * --reactor single: no worker thread; the one IO thread runs the worker in
 * its loop, watching worker_fd() (the mailbox's eventfd). One round: take
 * what is queued (a bounded amount), route it, and hand the running IO
 * thread its results at once (through local), not through its mailbox.
 * Returns 1 if more may be queued (call again soon). That IO thread only.
 */
int worker_run_inline(struct worker *w, const struct rsink *local);
int worker_fd(struct worker *w);

#endif

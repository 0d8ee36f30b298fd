/*
 * cluster.h - libferry's cluster mode (broker/CLUSTER.md, "What the client
 * does"): the user's client becomes a facade over one child client per
 * broker, and routes each publish and subscription to its topic's owner.
 *
 * A client turns into a facade inside ferry_client_connect() when it was
 * given two or more servers and the broker it reached answers Metadata with
 * a list of brokers. Until then, and for ever on a standalone broker, it is
 * the ordinary single-connection client, and none of this runs.
 *
 * The public functions of the other files ask ferry__clu(c) first and hand
 * the call over here when it is set; a facade never runs its own engine
 * again (no socket, no IO thread).
 */
#ifndef FERRY_CLUSTER_H
#define FERRY_CLUSTER_H

#include "ferry_int.h"

/* The most brokers a client routes to. */
#define FERRY__CLU_MAX_BROKERS 64
/* How often a facade asks Metadata again, to learn of brokers that came. */
#define FERRY__CLU_REFRESH_MS 5000

/* c's cluster state, NULL while c is an ordinary client. Written once
 * (release) by the connecting thread before ferry_client_connect() returns,
 * and cleared by ferry_client_destroy(); read without c->mu. */
static inline struct ferry__cluster *ferry__clu(ferry_client *c)
{
    return __atomic_load_n(&c->clu, __ATOMIC_ACQUIRE);
}

/* cluster.c */
/* After c connected (blocking connect, lock not held): ask Metadata and
 * become a facade if the broker is in a cluster. 0 (a facade or not), or a
 * negative code if becoming one failed (c is then closed). */
int ferry__clu_detect(ferry_client *c, int64_t deadline);
/* Publish m to its owner: mode 0 fire-and-forget (id_out), 1 async (cb,
 * ud, id_out), 2 sync (timeout_ms, *id_out receives the sequence). */
int ferry__clu_publish(ferry_client *c, const ferry_pub *m, int mode, ferry_pub_cb cb, void *ud,
                       int timeout_ms, uint64_t *id_out);
int ferry__clu_flush(ferry_client *c, int timeout_ms);
int ferry__clu_close(ferry_client *c, int timeout_ms);
/* Close, destroy every child, free the cluster state, clear c->clu. */
void ferry__clu_destroy(ferry_client *c);
/* A child for a call that any broker answers (admin): a connected
 * one if any. c itself when c is not a facade. */
ferry_client *ferry__clu_any(ferry_client *c);
/* For a call about one stored topic (topic info, purge): its owner's child
 * if known (never placing it), else as ferry__clu_any. */
ferry_client *ferry__clu_owner_or_any(ferry_client *c, const char *topic);
size_t ferry__clu_inflight(ferry_client *c);
uint64_t ferry__clu_duplicates(ferry_client *c);

/* Event-loop mode: a facade made from a client without an IO thread
 * queues its children's callbacks for ferry_client_process() on the loop's
 * thread, and wakes the loop through its eventfd (c->wake_fd, the
 * descriptor ferry_client_fd() gives). In thread mode they run on the
 * children's IO threads, one at a time (the callback slot). */
int ferry__clu_is_loop(ferry_client *c);
/* Queue it for the loop and wake it (c->mu held). */
void ferry__clu_loop_push(ferry_client *c, struct ferry__cbitem *it);
int ferry__clu_fd(ferry_client *c);
int ferry__clu_events(ferry_client *c);
int ferry__clu_timeout_ms(ferry_client *c);
int ferry__clu_process(ferry_client *c);

/* Shared by cluster.c and cluster_sub.c. */
struct ferry__cluster;
/* The owner's child of topic, finding the owner if unknown (blocking up to
 * deadline, unless may_block is 0: then -EAGAIN). 0 and *out, or a code. */
int ferry__clu_route(ferry_client *c, const char *topic, int64_t deadline, int may_block,
                     ferry_client **out);
/* Forget topic's owner (a broker said ERROR_NOT_OWNER). */
void ferry__clu_forget(ferry_client *c, const char *topic);
/* The children, for a pattern: up to cap into out; their number. */
size_t ferry__clu_children(ferry_client *c, ferry_client **out, size_t cap);
/* Run a user callback: wait for the facade's callback slot (callbacks of
 * one client never run concurrently), unless *skip becomes non-zero while
 * waiting (0 returned: do not run it). Lock not held. */
int ferry__clu_cb_enter(ferry_client *c, const int *skip);
void ferry__clu_cb_leave(ferry_client *c);
/* What callbacks waiting for the slot wait on (with c->mu): broadcast
 * when a facade subscription closes, so that its deliveries drop. */
pthread_cond_t *ferry__clu_cb_cond(ferry_client *c);
/* c is a facade and the calling thread runs one of its callbacks (lock not
 * held): a blocking call returns -EDEADLK (it would wait for a broker's IO
 * thread, which may be waiting for this callback to end). */
int ferry__clu_calling_back(ferry_client *c);
/* The calling thread runs one of c's callbacks (c->mu held). */
int ferry__clu_in_callback(ferry_client *c);
/* Sleep up to ms, less if deadline comes first (not a synchronisation:
 * the backoff between retries of an unavailable topic). */
void ferry__clu_backoff(int64_t deadline, int ms);

/* cluster_sub.c */
int ferry__clu_subscribe(ferry_client *c, const char *pattern, const ferry_sub_options *opts,
                         ferry_msg_cb cb, void *ud, int timeout_ms, ferry_sub **out);
int ferry__clu_unsubscribe(ferry_sub *s);
int ferry__clu_sub_next(ferry_sub *s, int timeout_ms, ferry_msg **out);
/* A broker was learned: subscribe each wildcard pattern on its child kid
 * too (lock not held). */
void ferry__clu_subs_extend(ferry_client *c, ferry_client *kid);
/* The client closed: every facade subscription reports FERRY_ECLOSED (c->mu held). */
void ferry__clu_subs_closed(ferry_client *c);

#endif /* FERRY_CLUSTER_H */

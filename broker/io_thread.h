/*
 * io_thread.h - the IO reactors (prefix iot_).
 *
 * An IO thread owns its connections outright: their sockets, buffers,
 * subscriptions and timers. Other threads reach it only through its mailbox
 * (server.iot_in[index]: new connections from the acceptor, deliveries and
 * acks from the workers and the writer), whose eventfd its reactor watches,
 * and the writer's commit mark (server.commit[index]).
 */
#ifndef FERRY_IO_THREAD_H
#define FERRY_IO_THREAD_H

#include "mailbox.h"
#include "server.h"

struct iot;

struct iot *iot_create(struct server *s, uint32_t index);
/* --reactor single-pool and single, before iot_start(): this thread also
 * runs the listener's acceptor (acc, may be NULL) and, with single, worker
 * inline_worker's routing (may be NULL) in its loop. 0, or -1. Main. */
struct acceptor;
struct worker;
int iot_embed(struct iot *t, struct acceptor *acc, struct worker *inline_worker);
int iot_start(struct iot *t);
/* Wait for the thread to exit (it exits in PHASE_CLOSE once its connections
 * are flushed and closed, or the shutdown bound passed). */
void iot_join(struct iot *t);
void iot_destroy(struct iot *t);

/* The auth pool's answer (auth_done_fn; ctx is the server): posts R_AUTH to
 * the IO thread owning conn_ref, waiting for room. Auth pool threads. */
void iot_auth_done(void *ctx, uint64_t conn_ref, int rc, struct auth_table *at,
                   const struct auth_principal *who, void *tag);

/* PHASE_DRAIN: true once this thread has stopped reading and handed every
 * queued publication to the workers. Any thread. */
int iot_is_drained(struct iot *t);

#endif

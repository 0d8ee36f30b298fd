/*
 * server.h - what the threads of one ferryd share: settings, the tables
 * through which they reach each other (their mailboxes, counters and the
 * writer's commit marks), the phase, clocks, error texts. The messages they
 * pass are in messages.h.
 */
#ifndef FERRY_SERVER_H
#define FERRY_SERVER_H

#include "auth.h"
#include "config.h"
#include "login.h"
#include "mailbox.h"
#include "messages.h"
#include "stats.h"
#include "tls.h"

#include <stdatomic.h>
#include <stdint.h>

struct auth_table;
struct auth_principal;
struct auth_pool;
struct iot;
struct worker;
struct acceptor;
struct metrics;
struct backup;
struct store;
struct writer;
struct cons_reg;
struct qgroup_reg;
struct mqtt_retain;
struct mqtt_clients;
struct cluster;

enum server_phase { PHASE_RUN = 0, PHASE_DRAIN, PHASE_CLOSE };

/* Mail for one IO thread handled at once by the thread that produced it
 * (the router run inline by --reactor single's IO thread), instead of
 * posted to that IO thread's mailbox. */
struct rsink {
    uint32_t iot; /* the IO thread whose mail fn takes */
    void (*fn)(void *arg, struct rmsg *m, uint32_t n);
    void *arg;
};

/* The store writer's word to IO thread k (server.commit[k]): every stored
 * publication of k up to serial (pub_rec.serial) is committed (or refused)
 * and handed to the workers. A Subscribe that must not overtake them waits
 * for it (conn.c). One cache line each: written by the writer only. */
struct commit_mark {
    _Alignas(64) atomic_uint serial; /* atomic: the writer writes, IO thread k reads */
    atomic_int is_wanted; /* atomic: IO thread k sets it; the writer clears it and wakes k */
};

/*
 * Routed before readable. The writer hands a group of stored publications
 * to the workers as soon as its log record is durable, and commits the
 * LMDB transaction holding them later (writer.c), so for a while a
 * message can be delivered live, and acknowledged, before a store read
 * finds it. Two generations say how far: routed counts the groups handed
 * over, readable the groups committed (readable <= routed). A thread that
 * is about to read the store for something it learned of (a live message
 * it dropped, a subscription's seam, a redelivery, another connection's
 * PubAck) must first see readable reach routed as loaded then:
 * server_store_readable(). Whatever it learned of was routed before.
 */
struct store_gens {
    _Alignas(64) atomic_ullong routed; /* atomic: the writer increments it before a
                                        * group's hand-over (release); anyone reads */
    atomic_ullong readable;            /* atomic: the writer sets it to routed after
                                        * each LMDB commit; anyone reads */
    atomic_int is_wanted; /* atomic: a reader sets it (and wakes the writer) when it waits
                           * for readable; the writer clears it, commits, wakes the IO
                           * threads */
};

struct server {
    struct cfg cfg;            /* immutable after start, except log level */
    uint32_t n_iot, n_workers; /* immutable */
    /* Where the threads post to each other, and their counters: each
     * thread's create fills its entries (its own mailbox and stats); then
     * immutable. The threads reach each other only through these, never
     * through each other's modules. */
    struct mbox **iot_in;        /* [n_iot] */
    struct mbox **worker_in;     /* [n_workers] */
    struct mbox *writer_in;      /* the store writer's */
    struct stats **iot_stats;    /* [n_iot] */
    struct stats **worker_stats; /* [n_workers] */
    struct commit_mark *commit;  /* [n_iot] */
    struct store_gens gens;      /* routed and readable store groups (above) */
    /* The threads themselves: main only (creates, starts, joins). */
    struct iot **iots;
    struct worker **workers;
    struct writer *writer;
    struct store *store;        /* immutable while threads run; thread-safe API */
    struct cons_reg *consumers; /* durable consumers (NULL without a store); thread-safe */
    struct qgroup_reg *qgroups; /* queue groups' owners (NULL without an auth file); thread-safe */
    /* MQTT retained messages (NULL: no mqtt_listen); thread-safe */
    struct mqtt_retain *mqtt_retained;
    /* MQTT client ids and their connections (NULL: no mqtt_listen); thread-safe */
    struct mqtt_clients *mqtt_clients;
    struct acceptor *acc;
    struct metrics *metrics;     /* the HTTP endpoint (NULL: off); main only */
    struct backup *backup;       /* the hot backup slot (NULL without a store); thread-safe */
    struct stats acc_stats;      /* acceptor's counters */
    struct auth_holder auth;     /* the auth file's table (NULL: anonymous); thread-safe */
    struct auth_pool *auth_pool; /* credential checks, off the IO threads; NULL: no auth */
    struct login_gate login;     /* who may try a login, and when (login.h); thread-safe */
    struct tls_holder tls;       /* the TLS context (tls.h); thread-safe; used if has_tls */
    int has_tls;                 /* a TLS listener exists; set by main before the threads */
    struct cluster *cluster;     /* cluster mode (cluster.h); NULL: off. thread-safe */
    atomic_int phase;            /* enum server_phase; main thread writes */
    atomic_int is_ready;         /* atomic: main sets it once listening, clears it on
                                  * SIGTERM; the metrics thread reads it (/readyz) */
    atomic_uint conns_now;       /* atomic: acceptor adds, IO threads subtract */
    atomic_ullong next_client_id;
    uint64_t start_ms;  /* CLOCK_REALTIME ms at start */
    char server_id[40]; /* immutable */
};

/* Milliseconds on CLOCK_MONOTONIC / CLOCK_REALTIME nanoseconds. */
uint64_t now_ms(void);
int64_t now_realtime_ns(void);

/* Text of an error code: FERRY_E* (from ferry.h's table) or -errno. */
const char *server_strerror(int rc);

/* Make the tables of n_iot IO threads and n_workers workers (the threads
 * fill them when created): 0, or -ENOMEM. server_tables_free: main, after
 * the threads are destroyed. */
int server_tables_alloc(struct server *s);
void server_tables_free(struct server *s);

/* Sum every thread's counters (any thread). */
void server_stats(struct server *s, struct stats_snapshot *out);

/* The writer: IO thread k's stored publications up to serial are committed
 * and routed (struct commit_mark); wakes k if it waits for that. */
void server_committed(struct server *s, uint32_t k, uint32_t serial);

/* May the calling thread read the store now (see struct store_gens)? 1:
 * everything routed so far is committed. 0: not yet; the writer is asked
 * to commit at once and will wake every IO thread when it has. */
int server_store_readable(struct server *s);

/* Wake every IO thread (a worker or the writer has room again; the phase
 * changed). Any thread. */
void server_wake_iots(struct server *s);

#endif

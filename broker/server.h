/*
 * server.h - what the threads of one ferryd share, and the messages they pass.
 *
 *   acceptor --R_NEW_CONN--> IO thread k      (IO thread's mailbox)
 *   IO thread --W_SUB_ADD/W_SUB_DEL--> every worker   (worker mailboxes)
 *   IO thread --W_PUB_BATCH--> worker hash(topic) % W
 *   worker --R_DELIVER/R_PUBACK--> IO thread owning the connection
 *
 * A connection is named across threads by a conn ref: IO thread index, slot
 * and generation packed in 64 bits. Only the owning IO thread turns a ref into
 * a struct conn, and a ref to a closed connection simply finds nothing, so a
 * delivery racing with a close is dropped, never dangling.
 */
#ifndef FERRY_SERVER_H
#define FERRY_SERVER_H

#include <stdatomic.h>
#include <stdint.h>

#include "config.h"
#include "stats.h"

struct iot;
struct worker;
struct acceptor;

#define CONN_REF(iot, slot, gen) (((uint64_t)(iot) << 56) | ((uint64_t)(slot) << 32) | (gen))
#define CONN_REF_IOT(ref) ((uint32_t)((ref) >> 56))
#define CONN_REF_SLOT(ref) ((uint32_t)((ref) >> 32) & 0xffffffu)
#define CONN_REF_GEN(ref) ((uint32_t)(ref))

/* Publications travel from an IO thread to a worker in batches: one block of
 * records, reference counted because deliveries point into it until the IO
 * threads have written (or copied) them. Immutable once posted. */
struct pub_batch {
    atomic_uint refs;   /* atomic: the worker and the IO threads holding deliveries */
    uint32_t len;       /* bytes of records */
    uint32_t cap;
    uint32_t n_recs;
    _Alignas(8) unsigned char data[];
};

/* One publication inside a batch; followed by topic bytes, then (8-aligned
 * from the record start + body_off) the encoded Deliver body without sub_ids. */
struct pub_rec {
    uint64_t conn_ref;  /* the publisher */
    uint64_t pub_id;
    uint32_t rec_len;   /* whole record, 8-aligned */
    uint32_t body_off;  /* from the record start */
    uint32_t body_len;
    uint16_t topic_len;
    uint8_t want_ack;
    uint8_t pad;
};

void pub_batch_unref(struct pub_batch *b);

enum wmsg_kind { W_SUB_ADD = 1, W_SUB_DEL, W_PUB_BATCH, W_STOP };

struct wmsg {
    uint32_t kind;
    uint32_t pad;
    void *p;            /* struct trie_sub * (one reference) or struct pub_batch * */
};

enum rmsg_kind { R_NEW_CONN = 1, R_DELIVER, R_PUBACK };

#define RMSG_INLINE_IDS 2

/* A message to an IO thread. R_DELIVER holds one reference on batch. */
struct rmsg {
    uint32_t kind;
    uint32_t n_ids;       /* R_DELIVER: matching sub ids */
    uint64_t conn_ref;    /* R_DELIVER, R_PUBACK */
    struct pub_batch *batch;
    uint32_t body_off;    /* R_DELIVER: body within batch->data */
    uint32_t body_len;
    union {
        uint64_t ids[RMSG_INLINE_IDS]; /* n_ids <= RMSG_INLINE_IDS */
        uint64_t *ext_ids;             /* else: malloc'd, freed by the IO thread */
        uint64_t pub_id;               /* R_PUBACK */
        int fd;                        /* R_NEW_CONN */
    } u;
};

enum server_phase { PHASE_RUN = 0, PHASE_DRAIN, PHASE_CLOSE };

struct server {
    struct cfg cfg;              /* immutable after start, except log level */
    uint32_t n_iot, n_workers;   /* immutable */
    struct iot **iots;           /* immutable array */
    struct worker **workers;     /* immutable array */
    struct acceptor *acc;
    struct stats acc_stats;      /* acceptor's counters */
    atomic_int phase;            /* enum server_phase; main thread writes */
    atomic_uint conns_now;       /* atomic: acceptor adds, IO threads subtract */
    atomic_ullong next_client_id;
    uint64_t start_ms;           /* CLOCK_REALTIME ms at start */
    char server_id[40];          /* immutable */
};

/* Milliseconds on CLOCK_MONOTONIC / CLOCK_REALTIME nanoseconds. */
uint64_t now_ms(void);
int64_t now_realtime_ns(void);

/* Sum every thread's counters (any thread). */
void server_stats(struct server *s, struct stats_snapshot *out);

#endif

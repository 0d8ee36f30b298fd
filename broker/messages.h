/*
 * messages.h - the messages ferryd's threads pass through their mailboxes.
 *
 *   acceptor --R_NEW_CONN--> IO thread k      (IO thread's mailbox)
 *   IO thread --W_SUB_ADD/W_SUB_DEL--> every worker   (worker mailboxes)
 *   IO thread --W_PUB_BATCH--> worker hash(topic) % W      (ephemeral topics)
 *   IO thread --W_PUB_BATCH--> store writer                 (stored topics)
 *   writer: append + group commit, then
 *     --R_PUBACK/R_PUBERR--> publisher's IO thread, and
 *     --W_STORED--> worker hash(topic) % W, which routes in sequence order
 *   worker --R_DELIVER/R_PUBACK--> IO thread owning the connection
 *
 * A connection is named across threads by a conn ref: IO thread index, slot
 * and generation packed in 64 bits. Only the owning IO thread turns a ref into
 * a struct conn, and a ref to a closed connection simply finds nothing, so a
 * delivery racing with a close is dropped, never dangling.
 */
#ifndef FERRY_MESSAGES_H
#define FERRY_MESSAGES_H

#include "codec.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct auth_table;
struct auth_principal;
struct login_turn;

#define CONN_REF(iot, slot, gen) (((uint64_t)(iot) << 56) | ((uint64_t)(slot) << 32) | (gen))
#define CONN_REF_IOT(ref) ((uint32_t)((ref) >> 56))
#define CONN_REF_SLOT(ref) ((uint32_t)((ref) >> 32) & 0xffffffu)
#define CONN_REF_GEN(ref) ((uint32_t)(ref))

/* Publications travel from an IO thread to a worker in batches: one block of
 * records, reference counted because deliveries point into it until the IO
 * threads have written (or copied) them. Immutable once posted. */
struct pub_batch {
    atomic_uint refs; /* atomic: the worker and the IO threads holding deliveries */
    uint32_t len;     /* bytes of records */
    uint32_t cap;
    uint32_t n_recs;
    _Alignas(8) unsigned char data[];
};

/* One publication inside a batch; followed by a stored one's pub_rec_st,
 * the topic bytes, then (8-aligned from the record start + body_off) the
 * encoded Deliver body without sub_ids.
 *
 * A batch holds either ephemeral records only (IO thread -> worker, routed at
 * once) or stored records only (IO thread -> store writer -> workers). The
 * Deliver body of a stored record ends with its sequence field written as a
 * 10-byte varint (PUB_SEQ_TRAILER bytes with the tag), 0 until the writer's
 * commit assigns it: the writer patches it in place (pub_seq_put) while it
 * alone holds the batch, before any worker or IO thread sees the record. */
struct pub_rec {
    uint64_t conn_ref; /* the publisher */
    uint64_t pub_id;
    uint64_t seq;      /* stored: set by the writer after commit; 0: refused */
    uint32_t rec_len;  /* whole record, 8-aligned */
    uint32_t body_off; /* from the record start */
    uint32_t body_len;
    uint32_t worker; /* hash(topic) % n_workers: routes it */
    uint32_t serial; /* stored: the publishing IO thread's count (wraps, never 0);
                      * 0: not from a connection (dead letters) */
    uint16_t topic_len;
    uint8_t want_ack;
    uint8_t is_stored;    /* followed by a pub_rec_st; the body ends with the
                           * sequence trailer */
    uint8_t has_reply_to; /* a request (Publish.reply_to): an ephemeral one
                           * nobody matches is answered ERROR_NO_RESPONDERS */
    uint8_t is_duplicate; /* writer: found stored already; seq is the first one's */
    uint8_t is_scheduled; /* writer: stored in the schedule (deliver_at), seq 0 */
    int64_t publish_time; /* as in the body */
    int64_t expire_time;  /* ns since the epoch (Publish.ttl_ms); 0: never */
};

/* A stored record's part that only the store writer reads, between its
 * pub_rec and its topic (pub_rec_st()). An ephemeral record has none: every
 * byte of a record crosses two cores (worker, then IO thread), and these
 * would nearly double the header. */
struct pub_rec_st {
    struct codec_deliver_spans sp; /* the body's fields: what the writer stores */
    uint64_t producer_id;          /* idempotent publishing (Publish.producer_id); 0 none */
    uint64_t producer_seq;
    int64_t deliver_at; /* scheduled for then (Publish.deliver_at); 0: now */
    int64_t sched_due;  /* writer: the schedule entry this record moves (due, id) */
    uint64_t sched_id;  /* 0: none */
};

/* Bytes before a record's topic. */
static inline size_t pub_rec_head(int is_stored)
{
    return sizeof(struct pub_rec) + (is_stored ? sizeof(struct pub_rec_st) : 0);
}

/* The writer's part of a stored record (r->is_stored). */
static inline struct pub_rec_st *pub_rec_st(const struct pub_rec *r)
{
    return (struct pub_rec_st *)(void *)((unsigned char *)r + sizeof(*r));
}

static inline const char *pub_rec_topic(const struct pub_rec *r)
{
    return (const char *)r + pub_rec_head(r->is_stored);
}

/* Where a record's body starts, for a topic of tlen bytes (8-aligned). */
static inline size_t pub_rec_body_off(size_t tlen, int is_stored)
{
    return (pub_rec_head(is_stored) + tlen + 7) & ~(size_t)7;
}

/* Bytes of a whole record (8-aligned); body_len counts the trailer of a
 * stored one (PUB_SEQ_TRAILER). */
static inline size_t pub_rec_len(size_t tlen, size_t body_len, int is_stored)
{
    return (pub_rec_body_off(tlen, is_stored) + body_len + 7) & ~(size_t)7;
}

/* Serials compare modulo 2^32: is a at or after b? */
static inline int serial_reached(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) >= 0;
}

#define PUB_SEQ_TRAILER 11 /* tag (field 3, varint) + 10-byte varint */

/* Write the tag and sequence into the trailer at the end of a stored
 * record's body (body_end points just past the body). */
static inline void pub_seq_put(unsigned char *body_end, uint64_t seq)
{
    unsigned char *p = body_end - PUB_SEQ_TRAILER;
    *p++ = (3 << 3) | 0;
    for (int i = 0; i < 9; i++) {
        *p++ = (unsigned char)((seq & 0x7f) | 0x80);
        seq >>= 7;
    }
    *p = (unsigned char)(seq & 1);
}

/* Read the sequence of a stored record's body back. */
static inline uint64_t pub_seq_get(const unsigned char *body, uint32_t body_len)
{
    const unsigned char *p = body + body_len - 10;
    uint64_t v = (uint64_t)(p[9] & 1) << 63;
    for (int i = 0; i < 9; i++) {
        v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
    }
    return v;
}

/* Bytes of a record's body for d: with the sequence trailer if stored. */
static inline size_t pub_rec_body_len(const struct codec_deliver *d, int is_stored)
{
    return codec_deliver_body_len(d) + (is_stored ? PUB_SEQ_TRAILER : 0);
}

/* Build a record at r (pub_rec_len(d->topic_len, body_len, is_stored) bytes,
 * body_len from pub_rec_body_len): its fields (seq and serial 0), a stored
 * one's pub_rec_st (zero), the topic, the Deliver body of d (its spans in
 * the pub_rec_st), and a stored one's sequence trailer
 * (0 until the writer's commit). The one builder of both kinds of record:
 * the IO threads' publications and the durables' dead letters. */
static inline void pub_rec_init(struct pub_rec *r, uint64_t conn_ref, uint64_t pub_id,
                                const struct codec_deliver *d, size_t body_len, uint32_t worker,
                                int want_ack, int is_stored)
{
    size_t tlen = d->topic_len;
    r->conn_ref = conn_ref;
    r->pub_id = pub_id;
    r->seq = 0;
    r->rec_len = (uint32_t)pub_rec_len(tlen, body_len, is_stored);
    r->body_off = (uint32_t)pub_rec_body_off(tlen, is_stored);
    r->body_len = (uint32_t)body_len;
    r->worker = worker;
    r->serial = 0;
    r->topic_len = (uint16_t)tlen;
    r->want_ack = want_ack ? 1 : 0;
    r->is_stored = is_stored ? 1 : 0;
    r->has_reply_to = d->reply_to_len != 0;
    r->is_duplicate = 0;
    r->is_scheduled = 0;
    r->publish_time = d->publish_time;
    r->expire_time = 0;
    struct pub_rec_st *st = is_stored ? pub_rec_st(r) : NULL;
    if (st != NULL) {
        *st = (struct pub_rec_st){.producer_id = 0};
    }
    memcpy((char *)pub_rec_topic(r), d->topic, tlen);
    unsigned char *body = (unsigned char *)r + r->body_off;
    codec_deliver_body_put(d, body, st != NULL ? &st->sp : NULL);
    if (is_stored) {
        pub_seq_put(body + body_len, 0);
    }
}

void pub_batch_unref(struct pub_batch *b);
/* One more reference (its holder has one already). */
static inline void pub_batch_ref(struct pub_batch *b)
{
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
}

enum wmsg_kind {
    W_SUB_ADD = 1, /* IO thread -> every worker: p = struct trie_sub (a reference) */
    W_SUB_DEL,     /* likewise */
    W_PUB_BATCH,   /* IO thread -> worker (ephemeral) or -> writer (stored) */
    W_STOP,
    W_STORED,     /* writer -> worker: p = logged pub_batch (a reference);
                   * route its records with rec->worker == this worker */
    W_SUB_READY,  /* IO thread -> the worker owning a catch-up subscription's
                   * topic, after its W_SUB_ADD: p = struct trie_sub (a
                   * reference); answered with R_SUB_READY */
    W_PURGE,      /* IO thread -> writer: p = struct purge_req (malloc'd) */
    W_BARRIER,    /* IO thread -> writer: p = struct barrier (malloc'd); answered
                   * with R_PONG once the durable consumer state changed before
                   * it was posted is committed (the Ack confirmation rule) */
    W_TOPIC_INFO, /* IO thread -> the worker owning a topic: p = struct
                   * topic_info_req (malloc'd); answered with R_RAW */
    W_BACKUP,     /* IO thread -> writer: p = the server's struct backup
                   * (backup.h, claimed); the writer commits, then starts it */
};

struct wmsg {
    uint32_t kind;
    uint32_t pad;
    void *p; /* see enum wmsg_kind */
};

/* W_BARRIER: a Ping that follows Acks to durables on its connection. */
struct barrier {
    uint64_t conn_ref;
    uint64_t nonce;
};

/* W_PURGE: an admin TopicPurgeRequest, run on the writer (it can take long). */
struct purge_req {
    uint64_t conn_ref;
    uint64_t admin_id;
    size_t topic_len;
    char topic[]; /* NUL-terminated */
};

/* W_TOPIC_INFO: an admin TopicInfoRequest. The IO thread fills in what the
 * store knows; the worker that owns the topic counts the subscriptions
 * matching it in its trie (the worker's own data: no other thread reads
 * it), and sends the whole AdminReply (ferry.proto TopicInfo) to conn_ref
 * as R_RAW. The worker frees the request. */
struct topic_info_req {
    uint64_t conn_ref;
    uint64_t admin_id;
    uint64_t messages, bytes, first_seq, last_seq; /* as in TopicInfo */
    int is_ephemeral;
    size_t topic_len;
    char topic[]; /* NUL-terminated */
};

enum rmsg_kind {
    R_NEW_CONN = 1, /* u.fd; n_ids: R_NEW_CONN_* flags */
    R_DELIVER,
    R_PUBACK,      /* u.ack: publish id and sequence; n_ids: wire error code, with
                    * R_PUBACK_DUPLICATE for a duplicate (stored before) */
    R_PUBERR,      /* a refused publish without want_ack: Error; as R_PUBACK */
    R_SUB_READY,   /* u.ack.id: the subscription's key, now in the owning
                    * worker's trie */
    R_RAW,         /* u.raw: a whole encoded frame (malloc'd), freed by the IO thread */
    R_AUTH,        /* auth pool -> IO thread: a credential check's result; n_ids:
                    * 0 accepted, 1 refused, 2 not checked (the connection had
                    * closed); u.auth.t: one reference */
    R_PONG,        /* writer -> IO thread: answer W_BARRIER; u.ack.id: the nonce */
    R_DETACH,      /* an admin deleted a durable (force): end subscription
                    * u.ack.id if it still holds durable u.ack.seq (cons_id) */
    R_BACKUP,      /* backup thread -> IO thread: u.raw as R_RAW (an AdminReply of a
                    * backup); body_off: the backup's number (backup.h); n_ids:
                    * 1 on its last frame (no credit owed), else 0 */
    R_MQTT_KICK,   /* MQTT session takeover: close conn_ref (mqtt_clients.h) */
    R_MQTT_RESUME, /* MQTT session takeover: the old holder of conn_ref's
                    * client id has ended; conn_ref goes on */
};

#define RMSG_INLINE_IDS 2

#define R_PUBACK_DUPLICATE 0x10000u /* R_PUBACK n_ids: PubAck.duplicate */
#define R_PUBACK_SCHEDULED 0x20000u /* R_PUBACK n_ids: PubAck.scheduled */

#define R_NEW_CONN_COUNTED 1u /* the acceptor counted it as not logged in (login.h) */
#define R_NEW_CONN_TLS 2u     /* from the TLS listener: the handshake comes first */
#define R_NEW_CONN_MQTT 4u    /* from the MQTT listener: it speaks MQTT 3.1.1 */

/* A message to an IO thread. R_DELIVER holds one reference on batch. */
struct rmsg {
    uint32_t kind;
    uint32_t n_ids;    /* R_DELIVER: matching subscriptions; R_PUBACK/R_PUBERR: wire code;
                        * R_NEW_CONN: R_NEW_CONN_* flags */
    uint64_t conn_ref; /* every kind but R_NEW_CONN */
    struct pub_batch *batch;
    uint32_t body_off; /* R_DELIVER: body within batch->data */
    uint32_t body_len;
    union {
        /* R_DELIVER: the subscriptions' trie_sub.key (not their reusable
         * sub_ids), ascending; the IO thread maps them to sub_ids */
        uint64_t ids[RMSG_INLINE_IDS]; /* n_ids <= RMSG_INLINE_IDS */
        uint64_t *ext_ids;             /* else: malloc'd, freed by the IO thread */
        uint64_t pub_id;               /* R_PUBACK (the same as ack.id) */
        struct {
            uint64_t id;
            uint64_t seq;
        } ack; /* R_PUBACK, R_PUBERR, R_SUB_READY, R_PONG */
        struct {
            uint8_t *buf;
            size_t len;
        } raw;  /* R_RAW */
        int fd; /* R_NEW_CONN */
        struct {
            struct auth_table *t;
            const struct auth_principal *who; /* in t; NULL when refused */
            struct login_turn *turn;          /* the request's (handle_connect.c) */
        } auth;                               /* R_AUTH */
    } u;
};

#endif

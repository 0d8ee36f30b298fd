/*
 * io_thread.c - one epoll loop per thread; connections, frames, fan-out IO.
 *
 * A round of the loop:
 *   1. epoll_wait (timeout: the next timer, or 0 while work is left over);
 *   2. read ready sockets, many frames per read; handle each frame;
 *   3. take the mailbox: new connections, deliveries, PubAcks;
 *   4. resume publishers that were paused because a worker was full;
 *   5. hand this round's publications to the workers (one post per worker);
 *   6. write every connection with output: one writev carries its queued
 *      replies and all its deliveries of the round;
 *   7. fire due timers (keepalive, Connect deadline, close deadline);
 *   8. free connections closed during the round (never inside a callback).
 *
 * Output of a connection lives in two places. Deliveries of the current
 * round are staged by reference (a per-connection prefix with its sub ids,
 * plus the shared Deliver body inside the worker's publication batch) and
 * written with writev at the end of the round; whatever the socket does not
 * take is copied into the connection's own buffer, so shared batches are
 * never pinned by a slow reader. That buffer is bounded by max_outbound_bytes:
 * past it the connection is a slow consumer and is closed. Replies go to the
 * connection's buffer directly, after any staged deliveries (order kept).
 */
#include "io_thread.h"

#include "acl.h"
#include "auth.h"
#include "codec.h"
#include "consumer.h"
#include "ferry.h"
#include "log.h"
#include "store.h"
#include "timer_heap.h"
#include "topic.h"
#include "trie.h"
#include "worker.h"
#include "writer.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef FERRY_VERSION
#define FERRY_VERSION "0.0.0"
#endif

#define IOT_MBOX_CAP 4096u
#define IOT_TAKE 1024u
#define IOT_EVENTS 256
#define READ_BUF 65536u
#define READS_PER_EVENT 4
#define BATCH_CAP 65536u
#define WQ_PAUSE 8u           /* unposted items to one worker that pause publishers */
#define PRE_CONNECT_MAX 4096u /* frame limit before Connect (ferry.proto) */
#define CLOSE_LINGER_MS 2000u /* bound on flushing a connection we close */
#define MAX_HEADERS 64
#define STALL_MAX_MS 200u /* per episode of lagging subscribers, see struct iot */
#define DUR_SCAN_MS 20u   /* durable consumers: redelivery deadlines checked this often */
#define DUR_DUE_MAX 64u   /* redeliveries per durable subscription per scan */
#define PROTOCOL_VERSION 1

enum conn_state { ST_AWAIT_CONNECT = 0, ST_OPEN, ST_CLOSING, ST_DEAD };

struct conn {
    int fd;
    uint32_t slot;
    uint32_t gen;
    uint8_t state;         /* enum conn_state */
    uint8_t is_dirty;      /* in t->dirty this round */
    uint8_t is_paused;     /* not read: a worker queue is full, or is_out_paused */
    uint8_t is_out_paused; /* not read: its replies fill half its outbound bound */
    uint8_t is_slow_logged;
    uint8_t is_heavy;        /* counted in t->n_heavy: over half its outbound bound */
    uint8_t is_writable;     /* EPOLLOUT reported this round */
    uint8_t is_wr_shut;      /* CLOSING: our FIN is sent, waiting for the peer's */
    uint8_t is_auth_pending; /* Connect is with the auth pool: input is not read */
    uint8_t is_auth_failed;  /* refused: the timer sends the Error (failure delay) */
    uint32_t events;         /* epoll mask registered now */
    uint32_t keepalive_ms;
    uint32_t timer_pos; /* in t->timers */
    int32_t stage_head; /* this round's staged deliveries, or -1 */
    int32_t stage_tail;
    uint32_t stage_bytes; /* bytes staged this round (not in out yet) */
    struct frame_dec dec;
    uint8_t *out;                     /* replies and unwritten deliveries; NULL when drained */
    size_t out_off, out_len, out_cap; /* pending bytes: out[out_off .. out_len) */
    struct trie_sub **subs;           /* sorted by key (keys grow: Subscribe appends) */
    uint32_t n_subs, subs_cap;
    uint64_t unacked_key; /* the subscription whose SubAck is held (deferred), 0: none */
    struct catchup *cu;   /* subscriptions with a start position, sorted by key */
    struct wcu *wcu;      /* wildcard subscriptions reading the store (see struct wcu) */
    uint32_t n_wcu, wcu_cap;
    uint32_t n_wd_fail; /* wildcard durable positions that could not be bound (logged: 10) */
    uint32_t n_cu, cu_cap;
    uint8_t is_cu_listed;        /* in t->cu_conns */
    uint8_t is_dur_listed;       /* in t->dur_conns */
    uint8_t has_dur_acks;        /* Acks to durables since the last Ping went through the writer */
    uint32_t n_barriers;         /* its Pings in the writer's hands (Pongs keep their order) */
    uint32_t last_stored_serial; /* pub_rec.serial of its last stored publish; 0: none */
    uint64_t last_rx_ms;
    uint64_t client_id;
    uint32_t req_max_frame;  /* Connect's max_frame_len, while auth is pending */
    uint32_t max_frame_len;  /* negotiated (Connected): no frame we send is larger */
    uint32_t n_too_large;    /* Deliver frames refused as larger: only the first few logged */
    uint32_t n_denied;       /* ACL refusals: only the first few are logged */
    struct auth_table *auth; /* one reference; NULL: anonymous server, all allowed */
    const struct auth_principal *who; /* in auth: this identity's rights; NULL: none */
    char peer[48];
};

/*
 * Catch-up. A subscription with a start position (all, sequence, time, last
 * N) names one stored topic. It is put in the workers' tries at once, like
 * any other, and additionally keeps next_seq: the next sequence its
 * subscriber gets. Messages come from two sources:
 *   - the store, read here in bounded chunks (short read transactions) while
 *     the connection's output has room, from next_seq on;
 *   - live deliveries from the topic's worker, which carry their sequence:
 *     one equal to next_seq is delivered (and next_seq moves on), one below
 *     is a duplicate of what the store gave and is dropped, and one above
 *     means the store has messages we have not read: it is dropped and
 *     reading resumes. A live message is committed before it is routed, so
 *     whatever is dropped is in the store.
 * The seam: once the owning worker has the subscription in its trie, every
 * message committed later is routed live to it. The worker says so
 * (R_SUB_READY) with the topic's last committed sequence L at that moment;
 * if next_seq <= L we read the store up to its end. From then on live
 * delivery brings every later message, in order, so the subscriber sees
 * each sequence exactly once, with no gap at the seam, whatever publishers
 * do meanwhile. Nothing is delivered before the SubAck is out (is_started).
 *
 * Every subscription to one stored topic (no wildcard, no queue group) has
 * such a position, new-only ones too (next_seq = last + 1 at Subscribe):
 * one whose connection is more than half its outbound bound behind gets no
 * more live deliveries and reads the store instead, as DESIGN.md's
 * backpressure asks for persisted topics, until it has caught up again.
 * (Wildcard subscriptions get positions only when they lag: struct wcu.)
 *
 * A durable consumer's subscription (consumer.h), or one with explicit acks
 * (whose consumer lives in memory only), is a catch-up subscription
 * whose position is the durable's shared next_seq rather than next_seq here:
 * a message is delivered to it only if cons_claim() hands it over (it is the
 * durable's next one, and max_in_flight leaves room), live or from the
 * store alike. Members of a queue group sharing a durable each get the live
 * copies (their trie entries carry no group) and the claim gives every
 * message to one of them. A full durable stops reading; an Ack on the
 * connection, or the periodic scan of t->dur_conns (which also redelivers
 * what passed its ack wait and dead-letters what reached max_deliver),
 * starts it again.
 *
 * A wildcard durable (consumer.h, WILDCARD DURABLES) has a root entry
 * (root set, topic NULL: it reads nothing and takes no message) and, right
 * after it in c->cu (same key), one entry per stored topic it has met, with
 * that topic and its position's binding in cons: each is a durable's
 * catch-up as above. Positions are added when a live message of a new
 * topic arrives (wd_position), and by wd_sync, which lists the matching
 * stored topics after the SubAck and again as each worker answers that the
 * subscription is in its trie: a message committed before the last answer
 * is in the store when that listing reads it, and any later one is routed
 * live, so no topic is missed at the seam.
 *
 * A queue group without acks on stored topics (is_group) has no position:
 * the workers choose one member per message, as for any group. Its
 * members share, per topic, the set of messages left by a member that
 * could not take them (cons_group_leave: its connection lagged as above);
 * each member with room takes from it in the durable scan (group_take) and
 * reads those messages from the store. So a lagging member is never
 * disconnected and the group still gets each message once. On one topic
 * the entry's cons is that set; on a wildcard pattern it is built like a
 * wildcard durable, with a root shared by the members (in memory only) and
 * one entry per topic, made by the topic's first live message.
 */
struct catchup {
    struct trie_sub *sub;  /* c->subs holds the reference; pattern = topic */
    struct consumer *cons; /* a durable consumer's binding, else NULL (see below) */
    struct consumer *root; /* a wildcard durable's root binding (in its root entry
                            * and its positions), else NULL */
    char *topic;           /* a wildcard durable's position: its topic (malloc'd,
                            * NUL-terminated); NULL: sub->pattern */
    uint32_t topic_len;
    uint8_t is_group; /* a queue group's wildcard root or position (see below) */
    uint64_t next_seq;
    uint64_t ready_seq; /* L, valid with is_ready */
    uint32_t topic_id;  /* 0: not resolved yet (topic never stored) */
    uint8_t is_started; /* the SubAck is out */
    uint8_t is_ready;   /* R_SUB_READY arrived */
    uint8_t is_reading; /* the store may hold messages from next_seq on */
};

/*
 * A wildcard subscription (no queue group) has no position of its own: it
 * gets live deliveries only. When its connection lags (as for struct
 * catchup: more than half its outbound bound queued), a live message of a
 * stored topic is not queued: the subscription gets a position on that
 * topic at that message's sequence and reads the topic's log from there,
 * exactly like a catch-up subscription, live messages being dropped while
 * it reads (they are stored). Once it has read to the end and a live
 * message arrives with exactly its next sequence, it is back at the seam:
 * that message is delivered and the position forgotten. So a lagging
 * wildcard subscriber of stored topics is never disconnected and loses
 * nothing; ephemeral topics still disconnect it at the bound. (A queue
 * group member cannot do this: the log holds its group's other messages. A
 * group leaves what a lagging member cannot take to the others instead: see
 * struct catchup, is_group.)
 */
struct wcu {
    struct trie_sub *sub; /* c->subs holds the reference */
    char *topic;          /* malloc'd, NUL-terminated */
    uint32_t topic_len;
    uint32_t topic_id; /* 0: not resolved yet */
    uint64_t next_seq;
    uint8_t is_reading;
};

#define CU_CHUNK_MSGS 256u     /* messages per store read */
#define CU_CHUNK_BYTES 262144u /* about this many bytes per store read */
#define CU_CHUNKS_PER_ROUND 4  /* per connection, then others get a turn */

struct stage {
    struct pub_batch *batch; /* one reference */
    uint32_t body_off, body_len;
    uint32_t pfx_off; /* in t->pfx */
    uint32_t pfx_len; /* up to CODEC_DELIVER_PREFIX_MAX(n_subs) */
    int32_t next;
};

/* Items for one worker (or, at index n_workers, the store writer) that its
 * mailbox has not accepted yet, and the batch being filled. */
struct wq {
    struct wmsg *m;
    uint32_t n, cap;
    struct pub_batch *cur;
};

/* A SubAck held back until the subscription has reached every worker's
 * queue (see handle_subscribe). */
struct deferred_ack {
    uint64_t conn_ref;
    uint64_t sub_id;
};

struct ptrvec {
    struct conn **v;
    uint32_t n, cap;
};

struct iot {
    struct stats stats; /* this thread's counters */
    struct server *srv; /* shared, read-only */
    uint32_t index;
    pthread_t thread;
    int is_started;
    atomic_int is_drained; /* atomic: this thread writes, main reads */
    /* atomic: the writer sets it (iot_committed), this thread reads: the
     * serial of our last stored publication committed and routed */
    atomic_uint committed_serial;
    atomic_int is_commit_wanted; /* atomic: a Subscribe waits for committed_serial */
    struct mbox in;              /* acceptor and workers -> this thread */
    /* Everything below: this IO thread only. */
    int ep;
    struct conn **slots; /* by slot; NULL = free */
    uint32_t *gens;      /* generation of each slot */
    uint32_t n_slots;
    uint32_t *free_slots;
    uint32_t n_free;
    struct theap timers;
    struct codec_arena arena;
    struct wq *wq; /* by worker */
    uint8_t *pfx;  /* this round's Deliver prefixes */
    size_t pfx_len, pfx_cap;
    struct stage *stage;
    uint32_t n_stage, stage_cap;
    struct ptrvec dirty, paused, dead;
    struct deferred_ack *deferred; /* SubAcks waiting for a worker queue */
    uint32_t n_deferred, deferred_cap;
    struct ptrvec cu_conns;  /* connections with catch-up subscriptions reading */
    struct ptrvec dur_conns; /* connections holding durable consumers */
    uint64_t next_dur_scan;  /* monotonic ms */
    Ferry__Header *cu_hdr;   /* scratch for encoding stored messages */
    Ferry__Header **cu_hdrp;
    char *cu_text; /* NUL-terminated copies of header strings */
    size_t cu_text_cap;
    struct iovec *iov;
    uint8_t *rbuf; /* READ_BUF bytes: every read lands here first */
    uint64_t now;
    int64_t now_ns;
    int has_more_mail;
    /* Stalls: while a subscriber of this thread is over half its outbound
     * bound, we stop taking deliveries for a while (at most STALL_MAX_MS per
     * episode). The mailbox fills, the workers wait, their queues fill and
     * publishers stop being read: a subscriber that lags for a moment slows
     * the publishers down instead of being cut off. One that stays behind
     * past the stall budget reaches its bound and is disconnected. */
    uint32_t n_heavy;
    uint64_t stall_since;    /* start of this episode, 0 when none */
    int is_stall_spent;      /* this episode used its budget */
    int is_mail_muted;       /* mailbox eventfd removed from the epoll set */
    unsigned auth_gen;       /* the auth table generation our connections use */
    uint64_t next_sub_key;   /* the last trie_sub.key handed out */
    uint32_t pub_serial;     /* the last pub_rec.serial handed out */
    struct trie_sub **dsubs; /* deliver() scratch: cfg.max_subs entries */
};

static void conn_kill(struct iot *t, struct conn *c);
static void conn_flush(struct iot *t, struct conn *c);
static void process_frames(struct iot *t, struct conn *c);
static int deliver_too_large(struct iot *t, struct conn *c, const uint64_t *ids, uint32_t n,
                             uint64_t seq, size_t frame_len);

/* ---- small helpers ------------------------------------------------------ */

static int ptrvec_push(struct ptrvec *p, struct conn *c)
{
    if (p->n == p->cap) {
        uint32_t cap = p->cap ? p->cap * 2 : 64;
        struct conn **v = realloc(p->v, cap * sizeof(*v));
        if (v == NULL) {
            return -ENOMEM;
        }
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = c;
    return 0;
}

/* Room for n entries in all. */
static int ptrvec_reserve(struct ptrvec *p, uint32_t n)
{
    if (p->cap >= n) {
        return 0;
    }
    uint32_t cap = p->cap ? p->cap : 64;
    while (cap < n) {
        cap *= 2;
    }
    struct conn **v = realloc(p->v, cap * sizeof(*v));
    if (v == NULL) {
        return -ENOMEM;
    }
    p->v = v;
    p->cap = cap;
    return 0;
}

/* Out of memory with part of c's output lost or half written: the stream
 * cannot go on. Logged here; the caller stops using c's output. */
static void conn_lost_output(struct iot *t, struct conn *c, const char *what)
{
    log_error("client %llu %s: out of memory: %s; closing the connection",
              (unsigned long long)c->client_id, c->peer, what);
    conn_kill(t, c);
}

static uint64_t ref_of(const struct iot *t, const struct conn *c)
{
    return CONN_REF(t->index, c->slot, c->gen);
}

static struct conn *conn_by_ref(struct iot *t, uint64_t ref)
{
    uint32_t slot = CONN_REF_SLOT(ref);
    if (slot >= t->n_slots || t->gens[slot] != CONN_REF_GEN(ref)) {
        return NULL;
    }
    struct conn *c = t->slots[slot];
    return c && c->state != ST_DEAD ? c : NULL;
}

static void set_events(struct iot *t, struct conn *c, uint32_t events)
{
    if (c->events == events || c->state == ST_DEAD) {
        return;
    }
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0) {
        c->events = events;
    }
}

static void mark_dirty(struct iot *t, struct conn *c)
{
    if (!c->is_dirty) {
        if (ptrvec_push(&t->dirty, c) == 0) {
            c->is_dirty = 1;
        }
    }
}

/* Cannot fail: conn_add() reserved a place in the heap for every connection. */
static void arm_timer(struct iot *t, struct conn *c, uint64_t when)
{
    int rc = theap_set(&t->timers, &c->timer_pos, when, c);
    assert(rc == 0);
    (void)rc;
}

/* ---- output ------------------------------------------------------------- */

static size_t out_pending(const struct conn *c)
{
    return c->out_len - c->out_off;
}

/* Room for n more bytes at c->out + c->out_len. */
static int out_reserve(struct conn *c, size_t n)
{
    if (c->out_cap - c->out_len >= n) {
        return 0;
    }
    size_t live = out_pending(c);
    if (c->out_off > 0) {
        memmove(c->out, c->out + c->out_off, live);
        c->out_off = 0;
        c->out_len = live;
        if (c->out_cap - live >= n) {
            return 0;
        }
    }
    size_t cap = c->out_cap ? c->out_cap : 1024;
    while (cap - live < n) {
        cap *= 2;
    }
    uint8_t *p = realloc(c->out, cap);
    if (p == NULL) {
        return -ENOMEM;
    }
    c->out = p;
    c->out_cap = cap;
    return 0;
}

static void out_append(struct conn *c, const void *p, size_t n)
{
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

static void out_release(struct conn *c)
{
    free(c->out);
    c->out = NULL;
    c->out_off = c->out_len = c->out_cap = 0;
}

static void heavy_update(struct iot *t, struct conn *c)
{
    uint8_t h = c->state == ST_OPEN && out_pending(c) > t->srv->cfg.max_outbound / 2;
    if (h != c->is_heavy) {
        c->is_heavy = h;
        if (h) {
            t->n_heavy++;
        } else {
            t->n_heavy--;
        }
    }
}

static void stage_release(struct iot *t, struct conn *c)
{
    for (int32_t i = c->stage_head; i >= 0; i = t->stage[i].next) {
        pub_batch_unref(t->stage[i].batch);
        t->stage[i].batch = NULL;
    }
    c->stage_head = c->stage_tail = -1;
    c->stage_bytes = 0;
}

static void slow_consumer(struct iot *t, struct conn *c);

/* Copy the staged deliveries into the connection's buffer (they must keep
 * their place before a reply queued now). */
static void unstage(struct iot *t, struct conn *c)
{
    for (int32_t i = c->stage_head; i >= 0; i = t->stage[i].next) {
        struct stage *s = &t->stage[i];
        if (c->state != ST_DEAD && out_reserve(c, s->pfx_len + (size_t)s->body_len) == 0) {
            out_append(c, t->pfx + s->pfx_off, s->pfx_len);
            out_append(c, s->batch->data + s->body_off, s->body_len);
        } else if (c->state != ST_DEAD) {
            conn_lost_output(t, c, "a delivery could not be queued");
        }
        pub_batch_unref(s->batch);
        s->batch = NULL;
    }
    c->stage_head = c->stage_tail = -1;
    c->stage_bytes = 0;
}

/* Queue one frame (a reply) on c. */
static void conn_send(struct iot *t, struct conn *c, const Ferry__Frame *f)
{
    if (c->state == ST_DEAD) {
        return;
    }
    if (c->stage_head >= 0) {
        unstage(t, c);
    }
    size_t n = codec_frame_size(f);
    size_t len;
    if (out_reserve(c, n) < 0 || codec_frame_encode(f, c->out + c->out_len, n, &len) < 0) {
        log_error("client %llu %s: cannot queue a %s reply, closing",
                  (unsigned long long)c->client_id, c->peer, codec_frame_name(f));
        conn_kill(t, c);
        return;
    }
    c->out_len += len;
    stats_add(&t->stats.frames_out, 1);
    mark_dirty(t, c);
}

/* Queue one frame encoded elsewhere (header included). */
static void conn_send_raw(struct iot *t, struct conn *c, const uint8_t *p, size_t n)
{
    if (c->state == ST_DEAD) {
        return;
    }
    if (c->stage_head >= 0) {
        unstage(t, c);
    }
    if (out_reserve(c, n) < 0) {
        log_error("client %llu %s: cannot queue a reply, closing", (unsigned long long)c->client_id,
                  c->peer);
        conn_kill(t, c);
        return;
    }
    out_append(c, p, n);
    stats_add(&t->stats.frames_out, 1);
    mark_dirty(t, c);
}

/* Why the store writer refused a publish. */
static const char *pub_err_text(uint32_t code)
{
    switch (code) {
    case FERRY__ERROR_CODE__ERROR_STORAGE_FULL:
        return "storage full: the store reached its maximum size or the disk is full; "
               "retry later";
    case FERRY__ERROR_CODE__ERROR_INVALID_TOPIC:
        return "topic cannot be stored (longer than 255 bytes)";
    case FERRY__ERROR_CODE__ERROR_SERVER_BUSY:
        return "out of memory; retry later";
    case FERRY__ERROR_CODE__ERROR_INTERNAL:
        return "internal error";
    default:
        return "the store failed; the message is not stored";
    }
}

static void send_error(struct iot *t, struct conn *c, int wire_code, const char *text,
                       uint64_t ref_id, Ferry__Error__RefKind kind, int is_fatal)
{
    Ferry__Error e = FERRY__ERROR__INIT;
    e.code = (Ferry__ErrorCode)wire_code;
    e.text = (char *)text;
    e.ref_id = ref_id;
    e.ref_kind = kind;
    e.is_fatal = is_fatal ? 1 : 0;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_ERROR;
    f.error = &e;
    conn_send(t, c, &f);
}

/* Stop reading c, flush what is queued (bounded by CLOSE_LINGER_MS), close. */
static void conn_close_after_flush(struct iot *t, struct conn *c)
{
    if (c->state >= ST_CLOSING) {
        return;
    }
    /* A lingering close (as nginx does): keep reading and discarding until
     * our output is out and the peer has seen our FIN, so that closing with
     * unread input does not reset the connection and lose the Error frame. */
    c->state = ST_CLOSING;
    heavy_update(t, c);
    set_events(t, c, c->events | EPOLLIN);
    arm_timer(t, c, t->now + CLOSE_LINGER_MS);
    mark_dirty(t, c);
}

/* A fatal error: Error frame, then close. */
static void conn_fail(struct iot *t, struct conn *c, int wire_code, const char *text)
{
    if (c->state >= ST_CLOSING) {
        return;
    }
    if (wire_code != FERRY__ERROR_CODE__ERROR_KEEPALIVE_TIMEOUT &&
        wire_code != FERRY__ERROR_CODE__ERROR_SHUTTING_DOWN &&
        wire_code != FERRY__ERROR_CODE__ERROR_SLOW_CONSUMER &&
        wire_code != FERRY__ERROR_CODE__ERROR_LIMIT_EXCEEDED &&
        wire_code != FERRY__ERROR_CODE__ERROR_AUTH_FAILED &&
        wire_code != FERRY__ERROR_CODE__ERROR_SERVER_BUSY) {
        stats_add(&t->stats.protocol_errors, 1);
    }
    log_info("client %llu %s: closing: %s", (unsigned long long)c->client_id, c->peer, text);
    send_error(t, c, wire_code, text, 0, FERRY__ERROR__REF_KIND__REF_NONE, 1);
    conn_close_after_flush(t, c);
}

static void slow_consumer(struct iot *t, struct conn *c)
{
    if (c->state >= ST_CLOSING) {
        return;
    }
    stats_add(&t->stats.slow_consumers, 1);
    if (!c->is_slow_logged) {
        c->is_slow_logged = 1;
        log_warn("client %llu %s: slow consumer: more than %llu bytes queued, disconnecting",
                 (unsigned long long)c->client_id, c->peer,
                 (unsigned long long)t->srv->cfg.max_outbound);
    }
    conn_fail(t, c, FERRY__ERROR_CODE__ERROR_SLOW_CONSUMER,
              "slow consumer: outbound buffer overflowed");
}

/* Write what c has: its buffer, then its staged deliveries. */
static void conn_flush(struct iot *t, struct conn *c)
{
    if (c->state == ST_DEAD) {
        stage_release(t, c);
        return;
    }
    /* A backlogged connection waits for EPOLLOUT; until then, just move
     * the staged deliveries behind its backlog. */
    int is_writable = c->is_writable;
    c->is_writable = 0;
    if ((c->events & EPOLLOUT) && out_pending(c) > 0 && !is_writable) {
        unstage(t, c);
    } else {
        int32_t next = c->stage_head;
        int done = 0;
        while (!done) {
            int n_iov = 0;
            size_t total = 0;
            if (out_pending(c) > 0) {
                t->iov[n_iov].iov_base = c->out + c->out_off;
                t->iov[n_iov++].iov_len = out_pending(c);
                total += out_pending(c);
            }
            int32_t first = next;
            while (next >= 0 && n_iov + 2 <= IOV_MAX) {
                struct stage *s = &t->stage[next];
                t->iov[n_iov].iov_base = t->pfx + s->pfx_off;
                t->iov[n_iov++].iov_len = s->pfx_len;
                t->iov[n_iov].iov_base = s->batch->data + s->body_off;
                t->iov[n_iov++].iov_len = s->body_len;
                total += s->pfx_len + (size_t)s->body_len;
                next = s->next;
            }
            if (n_iov == 0) {
                break;
            }
            ssize_t w = writev(c->fd, t->iov, n_iov);
            if (w < 0) {
                if (errno == EINTR) {
                    next = first;
                    continue;
                }
                if (errno != EAGAIN) {
                    log_debug("client %llu %s: write: %s", (unsigned long long)c->client_id,
                              c->peer, strerror(errno));
                    stage_release(t, c);
                    conn_kill(t, c);
                    return;
                }
                w = 0;
            }
            stats_add(&t->stats.bytes_out, (uint64_t)w);
            size_t left = (size_t)w;
            /* Consume the buffer part. */
            size_t from_out = left < out_pending(c) ? left : out_pending(c);
            c->out_off += from_out;
            left -= from_out;
            /* Consume staged parts; copy the unwritten rest of the batch. */
            int32_t i = first;
            int is_torn = 0;
            for (; i != next; i = t->stage[i].next) {
                struct stage *s = &t->stage[i];
                size_t flen = s->pfx_len + (size_t)s->body_len;
                if (left >= flen) {
                    left -= flen;
                } else if (out_reserve(c, flen - left) == 0) {
                    if (left < s->pfx_len) {
                        out_append(c, t->pfx + s->pfx_off + left, s->pfx_len - left);
                        out_append(c, s->batch->data + s->body_off, s->body_len);
                    } else {
                        size_t skip = left - s->pfx_len;
                        out_append(c, s->batch->data + s->body_off + skip, s->body_len - skip);
                    }
                    left = 0;
                } else {
                    is_torn = 1; /* half a frame is on the wire */
                    left = 0;
                }
                pub_batch_unref(s->batch);
                s->batch = NULL;
            }
            /* What was written is released: a write error on the next
             * round must release only from here on. */
            c->stage_head = next;
            if (is_torn) {
                stage_release(t, c);
                conn_lost_output(t, c, "the rest of a partly written delivery could not be kept");
                return;
            }
            if ((size_t)w < total) {
                /* Socket full: keep the rest privately and wait, up to the
                 * connection's bound. (Detach the list first: a slow
                 * consumer's Error goes through conn_send.) */
                c->stage_head = c->stage_tail = -1;
                c->stage_bytes = 0;
                for (; next >= 0; next = t->stage[next].next) {
                    struct stage *s = &t->stage[next];
                    size_t flen = s->pfx_len + (size_t)s->body_len;
                    if (out_pending(c) + flen > t->srv->cfg.max_outbound) {
                        slow_consumer(t, c);
                    } else if (c->state == ST_OPEN && out_reserve(c, flen) == 0) {
                        out_append(c, t->pfx + s->pfx_off, s->pfx_len);
                        out_append(c, s->batch->data + s->body_off, s->body_len);
                    } else if (c->state == ST_OPEN) {
                        conn_lost_output(t, c, "a delivery could not be queued");
                    }
                    pub_batch_unref(s->batch);
                    s->batch = NULL;
                }
                done = 1;
            } else if (next < 0) {
                done = 1;
            }
        }
        c->stage_head = c->stage_tail = -1;
        c->stage_bytes = 0;
    }
    if (c->is_out_paused && out_pending(c) <= t->srv->cfg.max_outbound / 4 && c->state == ST_OPEN &&
        ptrvec_push(&t->paused, c) == 0) {
        c->is_out_paused = 0; /* resume_paused() reads it again (still is_paused) */
    }
    if (out_pending(c) == 0) {
        out_release(c);
        if (c->state == ST_CLOSING && !c->is_wr_shut) {
            c->is_wr_shut = 1;
            shutdown(c->fd, SHUT_WR);
        }
        if (c->state == ST_CLOSING && atomic_load(&t->srv->phase) == PHASE_CLOSE) {
            conn_kill(t, c); /* stopping: do not wait for the peer's FIN */
            return;
        }
        heavy_update(t, c);
        set_events(t, c, c->events & ~(uint32_t)EPOLLOUT);
        return;
    }
    if (out_pending(c) > t->srv->cfg.max_outbound && c->state != ST_CLOSING) {
        slow_consumer(t, c);
    }
    heavy_update(t, c);
    set_events(t, c, c->events | EPOLLOUT);
}

/* ---- catch-up (see struct catchup) -------------------------------------- */

static int wcu_pump(struct iot *t, struct conn *c);

/* The topic an entry reads. */
static const char *cu_topic(const struct catchup *e, size_t *len)
{
    *len = e->topic ? e->topic_len : e->sub->pattern_len;
    return e->topic ? e->topic : e->sub->pattern;
}

/* A wildcard durable's root entry (reads nothing itself). */
static int cu_is_root(const struct catchup *e)
{
    return e->root != NULL && e->topic == NULL;
}

/* The first entry of sub_id (a wildcard durable's: its root entry). */
static struct catchup *cu_find(struct conn *c, uint64_t sub_id)
{
    for (uint32_t i = 0; i < c->n_cu; i++) {
        if (c->cu[i].sub->sub_id == sub_id) {
            return &c->cu[i];
        }
    }
    return NULL;
}

/* The catch-up state of the subscription with that trie_sub.key (c->cu is
 * sorted by key), or NULL. */
static uint32_t cu_lower(const struct conn *c, uint64_t key)
{
    uint32_t lo = 0, hi = c->n_cu;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (c->cu[mid].sub->key < key) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static struct catchup *cu_find_key(struct conn *c, uint64_t key)
{
    uint32_t i = cu_lower(c, key);
    return i < c->n_cu && c->cu[i].sub->key == key ? &c->cu[i] : NULL;
}

/* Release the consumers bound by sub_id's entries (every entry's, sub_id
 * UINT64_MAX): positions before roots, so that a root nobody holds has no
 * held positions (consumer_admin.c, reg_delete). */
static void cu_unbind(struct iot *t, struct conn *c, uint64_t sub_id)
{
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t i = 0; i < c->n_cu; i++) {
            struct catchup *e = &c->cu[i];
            struct consumer *k = pass == 0 ? e->cons : cu_is_root(e) ? e->root : NULL;
            if (k != NULL && (sub_id == UINT64_MAX || e->sub->sub_id == sub_id)) {
                cons_unbind(t->srv->consumers, k, ref_of(t, c), e->sub->sub_id);
            }
        }
    }
}

/* Forget sub_id's entries (every entry, sub_id UINT64_MAX). */
static void cu_remove(struct conn *c, uint64_t sub_id)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < c->n_cu; i++) { /* keeps the order (by key) */
        if (sub_id == UINT64_MAX || c->cu[i].sub->sub_id == sub_id) {
            free(c->cu[i].topic);
        } else {
            c->cu[k++] = c->cu[i];
        }
    }
    c->n_cu = k;
}

/* Make sure the round pumps c. */
static void cu_list(struct iot *t, struct conn *c)
{
    if (!c->is_cu_listed && ptrvec_push(&t->cu_conns, c) == 0) {
        c->is_cu_listed = 1;
    }
}

/* ---- wildcard durables (see struct catchup) ---------------------------- */

static void dur_list(struct iot *t, struct conn *c);

/* Where a new position of root on topic starts: the topic's first message
 * published at or after the root's start_ns (1 for a topic not stored). */
static int wd_first_seq(struct iot *t, struct consumer *root, const char *topic, size_t len,
                        uint64_t *out)
{
    struct store_topic_info info;
    int rc = store_topic_info(t->srv->store, topic, len, &info);
    if (rc == FERRY_ENOTOPIC) {
        *out = 1;
        return 0;
    }
    if (rc < 0) {
        return rc;
    }
    int64_t start_ns = cons_root_start_ns(root);
    if (start_ns <= 0) {
        *out = info.first_seq;
        return 0;
    }
    return store_seek_time(t->srv->store, info.id, start_ns, out);
}

/*
 * The position entry of wildcard durable subscription s on topic: found,
 * or (is_create, after its SubAck) bound and added among s's other
 * entries (in topic order), reading. NULL: none (s is not a wildcard
 * durable, not started, or the binding failed: logged). c->cu may move.
 */
static struct catchup *wd_position(struct iot *t, struct conn *c, struct trie_sub *s,
                                   const char *topic, size_t len, int is_create)
{
    uint32_t i = cu_lower(c, s->key);
    if (i == c->n_cu || c->cu[i].sub != s || !cu_is_root(&c->cu[i])) {
        return NULL;
    }
    /* Positions are sorted by topic (bytes, then length). */
    uint32_t j = i + 1, hi = cu_lower(c, s->key + 1); /* s's entries end there */
    while (j < hi) {
        uint32_t mid = j + (hi - j) / 2;
        const struct catchup *e = &c->cu[mid];
        int cmp = memcmp(e->topic, topic, e->topic_len < len ? e->topic_len : len);
        if (cmp == 0) {
            cmp = (e->topic_len > len) - (e->topic_len < len);
        }
        if (cmp == 0) {
            return &c->cu[mid];
        }
        if (cmp < 0) {
            j = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (!is_create || !c->cu[i].is_started) {
        return NULL;
    }
    struct consumer *root = c->cu[i].root;
    uint64_t first = 1; /* a queue group's has no position, only what is left */
    int rc = c->cu[i].is_group ? 0 : wd_first_seq(t, root, topic, len, &first);
    if (rc == 0 && c->n_cu == c->cu_cap) {
        uint32_t cap = c->cu_cap * 2;
        struct catchup *v = realloc(c->cu, cap * sizeof(*v));
        if (v != NULL) {
            c->cu = v;
            c->cu_cap = cap;
        }
        rc = v != NULL ? 0 : -ENOMEM;
    }
    char *name = rc == 0 ? malloc(len + 1) : NULL;
    struct consumer *k = NULL;
    if (name != NULL) {
        memcpy(name, topic, len);
        name[len] = '\0';
        char who[CONS_WHO_MAX];
        snprintf(who, sizeof(who), "client %llu %s", (unsigned long long)c->client_id, c->peer);
        rc = cons_bind_member(t->srv->consumers, root, topic, len, first, ref_of(t, c), s->sub_id,
                              who, &k);
    } else if (rc == 0) {
        rc = -ENOMEM;
    }
    if (rc < 0) {
        free(name);
        if (c->n_wd_fail++ < 10) {
            log_warn("client %llu %s: wildcard durable %s: no position on %.*s: %s",
                     (unsigned long long)c->client_id, c->peer, s->pattern, (int)len, topic,
                     rc == FERRY_EINVAL ? "pattern, name and topic pass 511 bytes"
                                        : server_strerror(rc));
        }
        return NULL;
    }
    memmove(&c->cu[j + 1], &c->cu[j], (c->n_cu - j) * sizeof(*c->cu));
    c->n_cu++;
    struct catchup *e = &c->cu[j];
    memset(e, 0, sizeof(*e));
    e->sub = s;
    e->cons = k;
    e->root = root;
    e->topic = name;
    e->topic_len = (uint32_t)len;
    e->is_group = c->cu[i].is_group;
    e->is_started = 1;
    e->is_reading = 1;
    cu_list(t, c);
    dur_list(t, c);
    t->next_dur_scan = 0; /* what its last holder left unacked is due */
    return e;
}

struct wd_topics {
    const char *pattern;
    size_t pattern_len;
    char **v;
    size_t n, cap;
};

static int wd_topics_cb(void *ctx, const char *name, size_t len,
                        const struct store_topic_info *info)
{
    (void)info;
    struct wd_topics *l = ctx;
    if (!topic_match(l->pattern, l->pattern_len, name, len)) {
        return 0;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL) {
            return 1;
        }
        l->v = v;
        l->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        return 1;
    }
    memcpy(copy, name, len);
    copy[len] = '\0';
    l->v[l->n++] = copy;
    return 0;
}

/* Give wildcard durable subscription s a position on every stored topic
 * its pattern matches, and make each read the store (see struct catchup). */
static void wd_sync(struct iot *t, struct conn *c, struct trie_sub *s)
{
    struct wd_topics l = {.pattern = s->pattern, .pattern_len = s->pattern_len};
    /* The store lists by prefix: the pattern's tokens before its first
     * wildcard. */
    size_t prefix = 0;
    for (size_t i = 0, tok = 0; i <= s->pattern_len; i++) {
        if (i == s->pattern_len || s->pattern[i] == '.') {
            if (topic_has_wildcard(s->pattern + tok, i - tok)) {
                break;
            }
            prefix = i < s->pattern_len ? i + 1 : i;
            tok = i + 1;
        }
    }
    int rc = store_topic_list(t->srv->store, s->pattern, prefix, wd_topics_cb, &l);
    if (rc < 0) {
        log_warn("client %llu %s: wildcard durable %s: cannot list its topics: %s",
                 (unsigned long long)c->client_id, c->peer, s->pattern, server_strerror(rc));
    }
    for (size_t i = 0; i < l.n; i++) {
        struct catchup *e = wd_position(t, c, s, l.v[i], strlen(l.v[i]), 1);
        if (e != NULL) {
            e->is_reading = 1;
        }
        free(l.v[i]);
    }
    free(l.v);
    cu_list(t, c);
}

static void cu_start(struct iot *t, struct conn *c, uint64_t sub_id)
{
    struct catchup *e = cu_find(c, sub_id);
    if (e && cu_is_root(e)) {
        e->is_started = 1;
        if (!e->is_group) {
            wd_sync(t, c, e->sub);
        }
    } else if (e) {
        e->is_started = 1;
        e->is_reading = !e->is_group; /* a group reads only what is left */
        cu_list(t, c);
    }
}

static int body_topic(const uint8_t *body, uint32_t len, const char **topic, size_t *tlen);

/* Live deliveries to catch-up subscriptions: keep the keys whose next_seq
 * this message is; returns how many of keys ids[0..n) remain. */
static uint32_t cu_filter(struct iot *t, struct conn *c, uint64_t *ids, uint32_t n,
                          const uint8_t *body, uint32_t body_len)
{
    /* A subscriber this far behind reads the store instead: live messages
     * are dropped for it (they are stored) and catch-up resumes from
     * next_seq once its output has drained. No disconnect, no loss. */
    int is_lagging = out_pending(c) + c->stage_bytes > t->srv->cfg.max_outbound / 2;
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct catchup *e = cu_find_key(c, ids[i]);
        if (e == NULL) {
            ids[k++] = ids[i];
            continue;
        }
        if (cu_is_root(e)) {
            /* A wildcard durable, or queue group: the position on the
             * message's topic. An ephemeral topic (no sequence trailer) is
             * not for a durable; a group gets it live, as it does a message
             * it has no position for (out of memory: bounded as ever). */
            const char *topic;
            size_t tlen;
            int is_group = e->is_group;
            if (!body_topic(body, body_len, &topic, &tlen) ||
                (e = wd_position(t, c, e->sub, topic, tlen, 1)) == NULL) {
                if (is_group) {
                    ids[k++] = ids[i];
                }
                continue;
            }
        }
        /* Only stored topics have catch-up subscriptions: the body ends with
         * the sequence trailer. */
        uint64_t seq = pub_seq_get(body, body_len);
        if (e->is_group) {
            /* A queue group (see struct catchup): the workers chose this
             * member; one that lags (or whose SubAck is not out yet) leaves
             * the message to the group. */
            if (e->is_started && !is_lagging) {
                ids[k++] = ids[i];
            } else if (cons_group_leave(e->cons, seq) == 0) {
                t->next_dur_scan = 0; /* another member, or this one later, takes it */
            } else if (e->is_started) {
                ids[k++] = ids[i]; /* the group's set is full: live, bounded as ever */
            }
            continue;
        }
        if (e->cons != NULL) {
            if (!e->is_started) {
                continue;
            }
            enum cons_claim r =
                is_lagging ? CONS_CLAIM_GAP : cons_claim(e->cons, seq, 0, t->now, NULL);
            if (r == CONS_CLAIM_OK) {
                ids[k++] = ids[i];
            } else if (r != CONS_CLAIM_SKIP) {
                e->is_reading = 1; /* a full durable is listed again by an Ack or the scan */
                if (r == CONS_CLAIM_GAP) {
                    cu_list(t, c);
                }
            }
            continue;
        }
        if (e->is_started && seq == e->next_seq && !is_lagging) {
            e->next_seq++;
            ids[k++] = ids[i];
        } else if (e->is_started && seq >= e->next_seq) {
            if (!e->is_reading && is_lagging) {
                log_debug("client %llu %s: subscription %llu lags at sequence %llu of %s: "
                          "reading the store",
                          (unsigned long long)c->client_id, c->peer,
                          (unsigned long long)e->sub->sub_id, (unsigned long long)e->next_seq,
                          e->sub->pattern); /* not a wildcard durable's (e->cons is NULL) */
            }
            e->is_reading = 1; /* the store has next_seq .. seq */
            cu_list(t, c);
        }
    }
    return k;
}

struct cu_ctx {
    struct iot *t;
    struct conn *c;
    struct catchup *e;
    size_t n;
    uint64_t want_seq; /* a durable's redelivery: only this sequence... */
    uint32_t attempt;  /* ...as this attempt; 0: catch-up */
    int is_gone;       /* the redelivered sequence is no longer stored */
    const char *topic; /* the Deliver's topic, if not the subscription's pattern */
};

/* One stored message (inside the read transaction): encode it into the
 * connection's buffer, or refuse when the buffer has had enough. */
static enum store_read_verdict cu_on_msg(void *ctx, const struct store_msg *m)
{
    struct cu_ctx *x = ctx;
    struct iot *t = x->t;
    struct conn *c = x->c;
    if (c->state != ST_OPEN) {
        return STORE_READ_REFUSE;
    }
    size_t size = m->payload_len + m->key_len + m->headers_raw_len + 128;
    if (x->n > 0 && out_pending(c) + size > t->srv->cfg.max_outbound / 4) {
        return STORE_READ_REFUSE;
    }
    uint64_t missed = 0;
    if (x->attempt > 0) {
        if (m->seq != x->want_seq) {
            x->is_gone = 1; /* removed from the store: the caller forgets it */
            return STORE_READ_REFUSE;
        }
    } else if (x->e->cons != NULL) {
        enum cons_claim r = cons_claim(x->e->cons, m->seq, 1, t->now, &missed);
        if (r == CONS_CLAIM_SKIP) {
            return STORE_READ_CONTINUE; /* another member of its queue group has it */
        }
        if (r != CONS_CLAIM_OK) {
            return STORE_READ_REFUSE;
        }
    }
    size_t text_need = m->headers_raw_len + 2 * m->n_headers;
    if (text_need > t->cu_text_cap) {
        char *p = realloc(t->cu_text, text_need);
        if (p == NULL) {
            return STORE_READ_REFUSE;
        }
        t->cu_text = p;
        t->cu_text_cap = text_need;
    }
    Ferry__Deliver d = FERRY__DELIVER__INIT;
    uint64_t sub_id = x->e->sub->sub_id;
    d.n_sub_ids = 1;
    d.sub_ids = &sub_id;
    d.topic = (char *)(x->topic ? x->topic : x->e->sub->pattern);
    d.sequence = m->seq;
    d.publish_time = m->publish_time;
    d.payload.data = (uint8_t *)m->payload;
    d.payload.len = m->payload_len;
    d.key.data = (uint8_t *)m->key;
    d.key.len = m->key_len;
    d.attempt = x->attempt > 0 ? x->attempt : 1;
    d.missed = missed;
    size_t pos = 0, used = 0;
    struct store_kv kv;
    while (d.n_headers < MAX_HEADERS && store_msg_header_next(m, &pos, &kv)) {
        Ferry__Header *h = &t->cu_hdr[d.n_headers];
        ferry__header__init(h);
        h->key = t->cu_text + used;
        memcpy(h->key, kv.key, kv.key_len);
        h->key[kv.key_len] = '\0';
        used += kv.key_len + 1;
        h->value = t->cu_text + used;
        memcpy(h->value, kv.value, kv.value_len);
        h->value[kv.value_len] = '\0';
        used += kv.value_len + 1;
        t->cu_hdrp[d.n_headers++] = h;
    }
    d.headers = d.n_headers ? t->cu_hdrp : NULL;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_DELIVER;
    f.deliver = &d;
    size_t frame_len = codec_frame_size(&f) - FRAME_HDR_LEN;
    if (deliver_too_large(t, c, &sub_id, 1, m->seq, frame_len)) {
        if (c->state != ST_OPEN) {
            return STORE_READ_REFUSE;
        }
        x->e->next_seq = m->seq + 1;
        x->n++;
        return STORE_READ_CONTINUE;
    }
    conn_send(t, c, &f);
    if (c->state == ST_DEAD) {
        return STORE_READ_REFUSE;
    }
    stats_add(&t->stats.msgs_out, 1);
    x->e->next_seq = m->seq + 1;
    x->n++;
    return STORE_READ_CONTINUE;
}

static int cu_has_room(const struct iot *t, const struct conn *c)
{
    return c->state == ST_OPEN && out_pending(c) < t->srv->cfg.max_outbound / 8;
}

/* Read a few chunks for each reading subscription of c. Returns 1 if c
 * still has reading to do. */
static int cu_pump(struct iot *t, struct conn *c)
{
    struct store *st = t->srv->store;
    int more = 0;
    for (uint32_t i = 0; i < c->n_cu && c->state == ST_OPEN; i++) {
        struct catchup *e = &c->cu[i];
        size_t tlen;
        const char *topic = cu_topic(e, &tlen);
        for (int k = 0; k < CU_CHUNKS_PER_ROUND && e->is_started && e->is_reading; k++) {
            if (!cu_has_room(t, c) || cu_is_root(e) || e->is_group) {
                break;
            }
            uint32_t room = e->cons ? cons_room(e->cons) : CU_CHUNK_MSGS;
            if (room == 0) {
                break; /* a full durable: an Ack or the scan lists it again */
            }
            if (e->topic_id == 0) {
                struct store_topic_info info;
                int rc = store_topic_info(st, topic, tlen, &info);
                if (rc == FERRY_ENOTOPIC) {
                    e->is_reading = 0; /* nothing stored yet: live brings it */
                    break;
                }
                if (rc < 0) {
                    if (rc != -EAGAIN) {
                        log_error("client %llu %s: catch-up of %s: %s",
                                  (unsigned long long)c->client_id, c->peer, topic,
                                  server_strerror(rc));
                        e->is_reading = 0;
                    }
                    break;
                }
                e->topic_id = info.id;
            }
            struct cu_ctx x = {.t = t, .c = c, .e = e, .topic = e->topic};
            struct store_read_result res;
            uint64_t from = e->cons ? cons_next_seq(e->cons) : e->next_seq;
            int rc = store_read(st, e->topic_id, from, room < CU_CHUNK_MSGS ? room : CU_CHUNK_MSGS,
                                CU_CHUNK_BYTES, cu_on_msg, &x, &res);
            if (c->state != ST_OPEN) {
                return 0; /* killed while queueing (c->cu is gone) */
            }
            if (rc < 0) {
                if (rc != -EAGAIN) {
                    log_error("client %llu %s: catch-up of %s: %s",
                              (unsigned long long)c->client_id, c->peer, topic,
                              server_strerror(rc));
                    e->is_reading = 0;
                }
                break; /* -EAGAIN: reader slots full, next round */
            }
            if (res.n_corrupt) {
                log_error("topic %s: %zu stored messages failed their CRC check (last: sequence "
                          "%llu); skipped, not delivered to client %llu",
                          topic, res.n_corrupt, (unsigned long long)res.corrupt_seq,
                          (unsigned long long)c->client_id);
            }
            if (res.next_seq > e->next_seq) {
                e->next_seq = res.next_seq;
            }
            if (res.is_end) {
                e->is_reading = 0;
            }
        }
        more |= e->is_started && e->is_reading && !cu_is_root(e) && !e->is_group &&
                (e->cons == NULL || cons_room(e->cons) > 0);
    }
    if (c->n_wcu > 0 && c->state == ST_OPEN) {
        more |= wcu_pump(t, c);
    }
    return more && c->state == ST_OPEN;
}

static void cu_pump_all(struct iot *t)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < t->cu_conns.n; i++) {
        struct conn *c = t->cu_conns.v[i];
        if (c->state == ST_OPEN && cu_pump(t, c)) {
            t->cu_conns.v[k++] = c;
        } else {
            c->is_cu_listed = 0;
        }
    }
    t->cu_conns.n = k;
}

/* ---- wildcard catch-up (see struct wcu) -------------------------------- */

static struct wcu *wcu_find(struct conn *c, const struct trie_sub *sub, const char *topic,
                            size_t len)
{
    for (uint32_t i = 0; i < c->n_wcu; i++) {
        struct wcu *w = &c->wcu[i];
        if (w->sub == sub && w->topic_len == len && memcmp(w->topic, topic, len) == 0) {
            return &c->wcu[i];
        }
    }
    return NULL;
}

static void wcu_del_at(struct conn *c, uint32_t i)
{
    free(c->wcu[i].topic);
    c->wcu[i] = c->wcu[--c->n_wcu];
}

/* Forget every position of sub (NULL: all of them). */
static void wcu_remove_sub(struct conn *c, const struct trie_sub *sub)
{
    for (uint32_t i = c->n_wcu; i-- > 0;) {
        if (sub == NULL || c->wcu[i].sub == sub) {
            wcu_del_at(c, i);
        }
    }
    if (c->n_wcu == 0) {
        free(c->wcu);
        c->wcu = NULL;
        c->wcu_cap = 0;
    }
}

static struct wcu *wcu_add(struct conn *c, struct trie_sub *sub, const char *topic, size_t len,
                           uint64_t seq)
{
    if (c->n_wcu == c->wcu_cap) {
        uint32_t cap = c->wcu_cap ? c->wcu_cap * 2 : 4;
        struct wcu *v = realloc(c->wcu, cap * sizeof(*v));
        if (v == NULL) {
            return NULL;
        }
        c->wcu = v;
        c->wcu_cap = cap;
    }
    char *name = malloc(len + 1);
    if (name == NULL) {
        return NULL;
    }
    memcpy(name, topic, len);
    name[len] = '\0';
    struct wcu *w = &c->wcu[c->n_wcu++];
    memset(w, 0, sizeof(*w));
    w->sub = sub;
    w->topic = name;
    w->topic_len = (uint32_t)len;
    w->next_seq = seq;
    w->is_reading = 1;
    return w;
}

/* A Deliver body encoded by enqueue_publish() starts with its topic (field
 * 2) and, for a stored topic, ends with the sequence trailer; an ephemeral
 * one ends with the attempt field (0x40 0x01), whose first byte has no
 * continuation bit, unlike the trailer's next to last byte. */
static int body_topic(const uint8_t *body, uint32_t len, const char **topic, size_t *tlen)
{
    if (len < 2 + PUB_SEQ_TRAILER || body[0] != ((2 << 3) | 2)) {
        return 0;
    }
    size_t n = 0;
    uint32_t i = 1;
    for (int shift = 0; i < len && shift < 35; shift += 7) {
        uint8_t b = body[i++];
        n |= (size_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            break;
        }
    }
    if (n == 0 || n > len - i) {
        return 0;
    }
    *topic = (const char *)body + i;
    *tlen = n;
    return body[len - PUB_SEQ_TRAILER] == ((3 << 3) | 0) && (body[len - 2] & 0x80);
}

/* Live deliveries to wildcard subscriptions (after cu_filter): see struct
 * wcu. subs[] are the subscriptions of ids[], in the same order. */
static uint32_t wcu_filter(struct iot *t, struct conn *c, uint64_t *ids, struct trie_sub **subs,
                           uint32_t n, const uint8_t *body, uint32_t body_len)
{
    const char *topic;
    size_t tlen;
    if (t->srv->store == NULL || !body_topic(body, body_len, &topic, &tlen)) {
        return n; /* an ephemeral topic */
    }
    int is_lagging = out_pending(c) + c->stage_bytes > t->srv->cfg.max_outbound / 2;
    if (!is_lagging && c->n_wcu == 0) {
        return n;
    }
    uint64_t seq = pub_seq_get(body, body_len);
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct trie_sub *sb = subs[i];
        if (sb->group_len > 0 || !topic_has_wildcard(sb->pattern, sb->pattern_len) ||
            cu_find_key(c, sb->key) != NULL) { /* the last: a wildcard durable */
            subs[k] = sb;
            ids[k++] = ids[i];
            continue;
        }
        struct wcu *w = wcu_find(c, sb, topic, tlen);
        if (w == NULL) {
            if (!is_lagging) {
                subs[k] = sb;
                ids[k++] = ids[i];
            } else if (wcu_add(c, sb, topic, tlen, seq) != NULL) {
                log_debug("client %llu %s: subscription %llu lags at sequence %llu of %.*s: "
                          "reading the store",
                          (unsigned long long)c->client_id, c->peer, (unsigned long long)sb->sub_id,
                          (unsigned long long)seq, (int)tlen, topic);
                cu_list(t, c);
            } else {
                subs[k] = sb; /* out of memory: live, bounded as ever */
                ids[k++] = ids[i];
            }
            continue;
        }
        if (seq == w->next_seq && !w->is_reading && !is_lagging) {
            wcu_del_at(c, (uint32_t)(w - c->wcu)); /* at the seam: live again */
            subs[k] = sb;
            ids[k++] = ids[i];
        } else if (seq >= w->next_seq) {
            w->is_reading = 1; /* the store has next_seq .. seq */
            cu_list(t, c);
        }
    }
    return k;
}

/* Read for c's wildcard positions; returns 1 if some still have reading to
 * do. */
static int wcu_pump(struct iot *t, struct conn *c)
{
    int more = 0;
    for (uint32_t i = 0; i < c->n_wcu && c->state == ST_OPEN; i++) {
        struct wcu *w = &c->wcu[i];
        for (int k = 0; k < CU_CHUNKS_PER_ROUND && w->is_reading; k++) {
            if (!cu_has_room(t, c)) {
                break;
            }
            if (w->topic_id == 0) {
                struct store_topic_info info;
                int rc = store_topic_info(t->srv->store, w->topic, w->topic_len, &info);
                if (rc < 0) {
                    break; /* -EAGAIN or worse: next round */
                }
                w->topic_id = info.id;
            }
            struct catchup tmp;
            memset(&tmp, 0, sizeof(tmp));
            tmp.sub = w->sub;
            tmp.next_seq = w->next_seq;
            struct cu_ctx x = {.t = t, .c = c, .e = &tmp, .topic = w->topic};
            struct store_read_result res;
            int rc = store_read(t->srv->store, w->topic_id, w->next_seq, CU_CHUNK_MSGS,
                                CU_CHUNK_BYTES, cu_on_msg, &x, &res);
            if (c->state != ST_OPEN) {
                return 0; /* killed while queueing (c->wcu is gone) */
            }
            if (rc < 0) {
                break;
            }
            w->next_seq = tmp.next_seq > res.next_seq ? tmp.next_seq : res.next_seq;
            if (res.is_end) {
                w->is_reading = 0;
            }
        }
        more |= w->is_reading;
    }
    return more;
}

/* ---- durable consumers (see struct catchup) ---------------------------- */

struct wq;
static int wq_push(struct wq *q, struct wmsg m);
static void wq_seal(struct iot *t, uint32_t w);

static void dur_list(struct iot *t, struct conn *c)
{
    if (!c->is_dur_listed && ptrvec_push(&t->dur_conns, c) == 0) {
        c->is_dur_listed = 1;
    }
}

/* The stored topic's id, resolved once; 0 while the topic was never stored. */
static uint32_t dur_topic_id(struct iot *t, struct catchup *e)
{
    if (e->topic_id == 0) {
        struct store_topic_info info;
        size_t tlen;
        const char *topic = cu_topic(e, &tlen);
        if (store_topic_info(t->srv->store, topic, tlen, &info) == 0) {
            e->topic_id = info.id;
        }
    }
    return e->topic_id;
}

struct dlq_ctx {
    struct iot *t;
    struct consumer *k;
    uint64_t want_seq;
    uint32_t n_deliv;
    struct pub_batch *b;
    int is_found;
};

static enum store_read_verdict dlq_on_msg(void *ctx, const struct store_msg *m)
{
    struct dlq_ctx *x = ctx;
    if (m->seq != x->want_seq) {
        return STORE_READ_REFUSE;
    }
    x->is_found = 1;
    x->b = cons_dlq_batch(x->k, m, x->n_deliv, x->t->index, x->t->srv->n_workers, x->t->now_ns);
    return STORE_READ_STOP;
}

static int may_publish(const struct conn *c, const char *topic, size_t len);

/*
 * A message that reached max_deliver: publish it to $DLQ.<durable> through
 * the store writer. The durable holds it until the commit, which stores the
 * dead letter and the durable's state without it in one transaction
 * (writer.c, commit): exactly one dead letter, whatever crashes.
 * The rule for $DLQ.*: a dead letter is published for the user holding the
 * durable, so only where that user may publish (ACL publish right on
 * $DLQ.<name>; every user on a server without an auth file). Otherwise the
 * message is dropped, and the log says so.
 */
static void dur_dead_letter(struct iot *t, struct conn *c, struct catchup *e,
                            const struct cons_due *d)
{
    char dlq[CONS_DLQ_TOPIC_MAX];
    size_t dlq_len = cons_dlq_topic(e->cons, dlq, sizeof(dlq));
    size_t tlen;
    const char *topic = cu_topic(e, &tlen);
    if (!may_publish(c, dlq, dlq_len)) {
        log_warn("client %llu %s: durable on %s: sequence %llu not acked after %u deliveries: "
                 "dropped, not dead-lettered (no right to publish to %s)",
                 (unsigned long long)c->client_id, c->peer, topic, (unsigned long long)d->seq,
                 d->n_deliv, dlq);
        cons_forget(e->cons, d->seq);
        return;
    }
    struct dlq_ctx x = {t, e->cons, d->seq, d->n_deliv, NULL, 0};
    struct store_read_result res;
    int rc = store_read(t->srv->store, e->topic_id, d->seq, 1, 1, dlq_on_msg, &x, &res);
    if (rc == 0 && !x.is_found) {
        cons_forget(e->cons, d->seq);
        return;
    }
    if (rc < 0 || x.b == NULL) {
        cons_unsend(e->cons, d->seq);
        return;
    }
    uint32_t w = t->srv->n_workers;
    wq_seal(t, w);
    struct wmsg wm = {.kind = W_PUB_BATCH, .p = x.b};
    if (wq_push(&t->wq[w], wm) < 0) {
        pub_batch_unref(x.b);
        cons_unsend(e->cons, d->seq);
        return;
    }
    log_info("durable on %s: sequence %llu not acked after %u deliveries: dead-lettered", topic,
             (unsigned long long)d->seq, d->n_deliv);
}

/* A queue group member with room takes what members that lagged left (see
 * struct catchup), read from the store one by one. */
static void group_take(struct iot *t, struct conn *c, struct catchup *e)
{
    uint64_t seqs[DUR_DUE_MAX];
    size_t n = cons_group_take(e->cons, seqs, DUR_DUE_MAX);
    for (size_t q = 0; q < n; q++) {
        if (c->state != ST_OPEN || !cu_has_room(t, c)) {
            if (cons_group_leave(e->cons, seqs[q]) < 0) {
                log_warn("client %llu %s: queue group on %s: sequence %llu lost: %s",
                         (unsigned long long)c->client_id, c->peer, e->sub->pattern,
                         (unsigned long long)seqs[q], "no room left to keep it");
            }
            continue;
        }
        struct cu_ctx x = {
            .t = t, .c = c, .e = e, .want_seq = seqs[q], .attempt = 1, .topic = e->topic};
        struct store_read_result res;
        int rc =
            store_read(t->srv->store, e->topic_id, seqs[q], 1, CU_CHUNK_BYTES, cu_on_msg, &x, &res);
        if (c->state == ST_OPEN && rc < 0 && cons_group_leave(e->cons, seqs[q]) < 0) {
            log_warn("client %llu %s: queue group on %s: sequence %llu lost: %s",
                     (unsigned long long)c->client_id, c->peer, e->sub->pattern,
                     (unsigned long long)seqs[q], server_strerror(rc));
        }
        /* Read nothing (rc 0): it is no longer stored (retention). */
    }
}

/* Send again what passed its ack wait, dead-letter what reached
 * max_deliver, and restart reading for durables that have room again. */
static void dur_scan_all(struct iot *t)
{
    if (t->dur_conns.n == 0 || t->now < t->next_dur_scan || t->srv->store == NULL) {
        return;
    }
    t->next_dur_scan = t->now + DUR_SCAN_MS;
    uint32_t kept = 0;
    for (uint32_t i = 0; i < t->dur_conns.n; i++) {
        struct conn *c = t->dur_conns.v[i];
        int has_durable = 0;
        for (uint32_t j = 0; j < c->n_cu && c->state == ST_OPEN; j++) {
            struct catchup *e = &c->cu[j];
            if (e->cons == NULL) {
                continue;
            }
            has_durable = 1;
            if (!e->is_started || !cu_has_room(t, c) || dur_topic_id(t, e) == 0) {
                continue;
            }
            struct consumer *k = e->cons;
            if (e->is_group) {
                group_take(t, c, e);
                continue;
            }
            struct cons_due due[DUR_DUE_MAX];
            size_t n = cons_take_due(k, t->now, due, DUR_DUE_MAX);
            for (size_t q = 0; q < n; q++) {
                if (c->state != ST_OPEN || (!due[q].is_dlq && !cu_has_room(t, c))) {
                    cons_unsend(k, due[q].seq); /* e is gone, or no room: later */
                    continue;
                }
                if (due[q].is_dlq) {
                    dur_dead_letter(t, c, e, &due[q]);
                    continue;
                }
                struct cu_ctx x = {.t = t,
                                   .c = c,
                                   .e = e,
                                   .want_seq = due[q].seq,
                                   .attempt = due[q].n_deliv,
                                   .topic = e->topic};
                struct store_read_result res;
                int rc = store_read(t->srv->store, e->topic_id, due[q].seq, 1, CU_CHUNK_BYTES,
                                    cu_on_msg, &x, &res);
                if (c->state != ST_OPEN) {
                    continue;
                }
                if (rc == 0 && x.n == 0 && (x.is_gone || res.is_end)) {
                    cons_forget(k, due[q].seq);
                } else if (rc < 0 || x.n == 0) {
                    cons_unsend(k, due[q].seq);
                }
            }
            if (c->state == ST_OPEN && e->is_reading && cons_room(k) > 0) {
                cu_list(t, c);
            }
        }
        if (has_durable && c->state == ST_OPEN) {
            t->dur_conns.v[kept++] = c;
        } else {
            c->is_dur_listed = 0;
        }
    }
    t->dur_conns.n = kept;
}

static void handle_ack(struct iot *t, struct conn *c, Ferry__Ack *m)
{
    struct catchup *e = cu_find(c, m->sub_id);
    if (e != NULL && e->is_group) {
        return; /* a queue group without acks */
    }
    if (e != NULL && cu_is_root(e)) {
        /* A wildcard durable: sequences are per topic. */
        size_t tlen = m->topic ? strlen(m->topic) : 0;
        if (tlen == 0) {
            send_error(t, c, FERRY__ERROR_CODE__ERROR_INVALID_ARGUMENT,
                       "an Ack to a wildcard durable must name the message's topic (Ack.topic)",
                       m->sub_id, FERRY__ERROR__REF_KIND__REF_SUBSCRIPTION, 0);
            return;
        }
        e = wd_position(t, c, e->sub, m->topic, tlen, 0);
    }
    if (e == NULL || e->cons == NULL) {
        return; /* a subscription without explicit acks */
    }
    int kind = m->kind == FERRY__ACK__KIND__NAK ? 1 : m->kind == FERRY__ACK__KIND__TERM ? 2 : 0;
    c->has_dur_acks = 1; /* the next Ping confirms it (handle_ping) */
    if (cons_ack(e->cons, m->sequence, kind) && kind == 1) {
        t->next_dur_scan = 0; /* redeliver it this round */
    }
    if (e->is_started && e->is_reading) {
        cu_list(t, c); /* it may have been full */
    }
}

/* Does a listed connection have room for more catch-up now? */
static int cu_has_work(const struct iot *t)
{
    for (uint32_t i = 0; i < t->cu_conns.n; i++) {
        if (cu_has_room(t, t->cu_conns.v[i])) {
            return 1;
        }
    }
    return 0;
}

/* A Deliver of frame_len bytes (without the length prefix) does not fit the
 * limit c negotiated: it is not sent. Instead each subscription it was for
 * gets a non-fatal Error naming it, and the refusal is counted (and logged,
 * the first few per connection): never a silent drop, never a frame the
 * client said it cannot take. Returns 1 if the frame is refused. */
static int deliver_too_large(struct iot *t, struct conn *c, const uint64_t *ids, uint32_t n,
                             uint64_t seq, size_t frame_len)
{
    if (frame_len <= c->max_frame_len) {
        return 0;
    }
    stats_add(&t->stats.deliver_too_large, 1);
    c->n_too_large++;
    if (c->n_too_large <= 10 || c->n_too_large % 1000 == 0) {
        log_warn("client %llu %s: Deliver of %zu bytes (sequence %llu) exceeds the negotiated "
                 "max_frame_len %u: not sent (%u on this connection)",
                 (unsigned long long)c->client_id, c->peer, frame_len, (unsigned long long)seq,
                 c->max_frame_len, c->n_too_large);
    }
    char text[160];
    snprintf(text, sizeof(text),
             "message not delivered: its Deliver frame (%zu bytes, sequence %llu) exceeds the "
             "negotiated max_frame_len %u",
             frame_len, (unsigned long long)seq, c->max_frame_len);
    /* (sequence 0: an ephemeral topic, or not known here) */
    for (uint32_t i = 0; i < n && c->state == ST_OPEN; i++) {
        send_error(t, c, FERRY__ERROR_CODE__ERROR_FRAME_TOO_LARGE, text, ids[i],
                   FERRY__ERROR__REF_KIND__REF_SUBSCRIPTION, 0);
    }
    return 1;
}

/* Deliveries: filter ids against live subscriptions, stage by reference. */
static void deliver(struct iot *t, struct rmsg *m)
{
    uint64_t *ids = m->n_ids > RMSG_INLINE_IDS ? m->u.ext_ids : m->u.ids;
    struct conn *c = conn_by_ref(t, m->conn_ref);
    uint32_t n = 0;
    if (c && c->state == ST_OPEN) {
        /* The worker names subscriptions by key (never reused, unlike
         * sub_ids), sorted, as c->subs is. Keep the keys still subscribed:
         * an Unsubscribe answered since the worker matched (even if the
         * sub_id was subscribed again since) must not get this delivery.
         * Nor does a subscription whose SubAck is held: every Deliver comes
         * after its SubAck, and what arrives before the SubAck is queued
         * was published before it (START_NEW does not want it; catch-up
         * subscriptions read it from the store once started). */
        uint32_t lo = 0;
        for (uint32_t i = 0; i < m->n_ids && lo < c->n_subs; i++) {
            uint32_t hi = c->n_subs;
            while (lo < hi) {
                uint32_t mid = lo + (hi - lo) / 2;
                if (c->subs[mid]->key < ids[i]) {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            if (lo < c->n_subs && c->subs[lo]->key == ids[i] && ids[i] != c->unacked_key) {
                t->dsubs[n] = c->subs[lo];
                ids[n++] = ids[i];
                lo++;
            }
        }
    }
    if (n > 0 && c->n_cu > 0) {
        n = cu_filter(t, c, ids, n, m->batch->data + m->body_off, m->body_len);
    }
    if (n > 0) {
        /* dsubs[] in step with what cu_filter kept (it keeps the order) */
        for (uint32_t i = 0, j = 0; i < n; i++) {
            while (t->dsubs[j]->key != ids[i]) {
                j++;
            }
            t->dsubs[i] = t->dsubs[j];
        }
        n = wcu_filter(t, c, ids, t->dsubs, n, m->batch->data + m->body_off, m->body_len);
    }
    if (n == 0) {
        goto out_drop;
    }
    /* Keys to the client's sub_ids (cu_filter keeps the order). */
    for (uint32_t i = 0, j = 0; i < n; i++) {
        while (t->dsubs[j]->key != ids[i]) {
            j++;
        }
        ids[i] = t->dsubs[j]->sub_id;
    }
    size_t need = CODEC_DELIVER_PREFIX_MAX(n);
    if (t->pfx_cap - t->pfx_len < need) {
        size_t cap = t->pfx_cap ? t->pfx_cap * 2 : 65536;
        while (cap - t->pfx_len < need) {
            cap *= 2;
        }
        uint8_t *p = realloc(t->pfx, cap);
        if (p == NULL) {
            conn_lost_output(t, c, "a delivery could not be staged");
            goto out_drop;
        }
        t->pfx = p;
        t->pfx_cap = cap;
    }
    size_t pl = codec_deliver_prefix(t->pfx + t->pfx_len, ids, n, m->body_len);
    if (pl - FRAME_HDR_LEN + m->body_len > c->max_frame_len) {
        deliver_too_large(t, c, ids, n, 0, pl - FRAME_HDR_LEN + m->body_len);
        goto out_drop;
    }
    stats_add(&t->stats.msgs_out, 1);
    stats_add(&t->stats.frames_out, 1);
    if (out_pending(c) > 0 && (c->events & EPOLLOUT)) {
        /* Backlogged: straight into its private buffer, bounded. */
        if (out_pending(c) + pl + m->body_len > t->srv->cfg.max_outbound) {
            slow_consumer(t, c);
            goto out_drop;
        }
        if (out_reserve(c, pl + m->body_len) == 0) {
            out_append(c, t->pfx + t->pfx_len, pl);
            out_append(c, m->batch->data + m->body_off, m->body_len);
        } else {
            conn_lost_output(t, c, "a delivery could not be queued");
        }
        heavy_update(t, c);
        goto out_drop;
    }
    if (t->n_stage == t->stage_cap) {
        uint32_t cap = t->stage_cap ? t->stage_cap * 2 : 1024;
        struct stage *s = realloc(t->stage, cap * sizeof(*s));
        if (s == NULL) {
            conn_lost_output(t, c, "a delivery could not be staged");
            goto out_drop;
        }
        t->stage = s;
        t->stage_cap = cap;
    }
    int32_t idx = (int32_t)t->n_stage++;
    struct stage *s = &t->stage[idx];
    s->batch = m->batch; /* takes the message's reference */
    s->body_off = m->body_off;
    s->body_len = m->body_len;
    s->pfx_off = (uint32_t)t->pfx_len;
    s->pfx_len = (uint32_t)pl;
    s->next = -1;
    t->pfx_len += pl;
    if (c->stage_tail >= 0) {
        t->stage[c->stage_tail].next = idx;
    } else {
        c->stage_head = idx;
    }
    c->stage_tail = idx;
    c->stage_bytes += (uint32_t)(pl + m->body_len);
    mark_dirty(t, c);
    if (m->n_ids > RMSG_INLINE_IDS) {
        free(m->u.ext_ids);
    }
    return;

out_drop:
    if (m->n_ids > RMSG_INLINE_IDS) {
        free(m->u.ext_ids);
    }
    pub_batch_unref(m->batch);
}

/* ---- to the workers ----------------------------------------------------- */

static int wq_push(struct wq *q, struct wmsg m)
{
    if (q->n == q->cap) {
        uint32_t cap = q->cap ? q->cap * 2 : 64;
        struct wmsg *v = realloc(q->m, cap * sizeof(*v));
        if (v == NULL) {
            return -ENOMEM;
        }
        q->m = v;
        q->cap = cap;
    }
    q->m[q->n++] = m;
    return 0;
}

/* Room for one more item. */
static int wq_reserve(struct wq *q)
{
    if (q->n < q->cap) {
        return 0;
    }
    uint32_t cap = q->cap ? q->cap * 2 : 64;
    struct wmsg *v = realloc(q->m, cap * sizeof(*v));
    if (v == NULL) {
        return -ENOMEM;
    }
    q->m = v;
    q->cap = cap;
    return 0;
}

/* Queues: one per worker, then the store writer's. */
static uint32_t n_queues(const struct iot *t)
{
    return t->srv->n_workers + 1;
}

static struct mbox *wq_mbox(struct iot *t, uint32_t w)
{
    return w < t->srv->n_workers ? worker_mbox(t->srv->workers[w]) : writer_mbox(t->srv->writer);
}

static void wq_flush(struct iot *t, uint32_t w)
{
    struct wq *q = &t->wq[w];
    if (q->n == 0) {
        return;
    }
    uint32_t k = mbox_try_post(wq_mbox(t, w), q->m, q->n);
    if (k > 0) {
        memmove(q->m, q->m + k, (q->n - k) * sizeof(*q->m));
        q->n -= k;
    }
}

/* Close the batch being filled for worker w and queue it. */
static void wq_seal(struct iot *t, uint32_t w)
{
    struct wq *q = &t->wq[w];
    if (q->cur == NULL) {
        return;
    }
    struct wmsg m = {.kind = W_PUB_BATCH, .p = q->cur};
    if (wq_push(q, m) < 0) { /* cannot happen: reserved with the batch */
        log_error("IO thread %u: out of memory, %u publications dropped", t->index, q->cur->n_recs);
        pub_batch_unref(q->cur);
    }
    q->cur = NULL;
}

static void wq_flush_all(struct iot *t)
{
    for (uint32_t w = 0; w < n_queues(t); w++) {
        wq_seal(t, w);
        wq_flush(t, w);
    }
}

/* Subscription changes go to every worker, in order with publications. */
static int post_sub_change(struct iot *t, uint32_t kind, struct trie_sub *s)
{
    for (uint32_t w = 0; w < t->srv->n_workers; w++) {
        wq_seal(t, w); /* publications read before this change go first */
        trie_sub_ref(s);
        struct wmsg m = {.kind = kind, .p = s};
        if (wq_push(&t->wq[w], m) < 0) {
            trie_sub_unref(s);
            return -ENOMEM;
        }
    }
    return 0;
}

/* ---- connections -------------------------------------------------------- */

static void conn_add(struct iot *t, int fd)
{
    /* Every list a connection can be on, and the timer heap, have room for
     * each live connection and each one killed this round: conn_kill(),
     * mark_dirty(), conn_pause(), cu_list() and arm_timer() cannot fail for
     * memory later (a kill that could not list its connection freed it
     * under its callers). */
    uint32_t need = t->n_slots - t->n_free + t->dead.n + 1;
    if (ptrvec_reserve(&t->dead, need) < 0 || ptrvec_reserve(&t->dirty, need) < 0 ||
        ptrvec_reserve(&t->paused, need) < 0 || ptrvec_reserve(&t->cu_conns, need) < 0 ||
        ptrvec_reserve(&t->dur_conns, need) < 0 || theap_reserve(&t->timers, need) < 0) {
        goto out_close;
    }
    struct conn *c = calloc(1, sizeof(*c));
    uint32_t slot;
    if (c == NULL) {
        goto out_close;
    }
    if (t->n_free > 0) {
        slot = t->free_slots[--t->n_free];
    } else {
        if ((t->n_slots & (t->n_slots - 1)) == 0) { /* grow at powers of two */
            uint32_t cap = t->n_slots ? t->n_slots * 2 : 64;
            struct conn **s = realloc(t->slots, cap * sizeof(*s));
            if (s) {
                t->slots = s;
            }
            uint32_t *g = realloc(t->gens, cap * sizeof(*g));
            if (g) {
                t->gens = g;
            }
            uint32_t *f = realloc(t->free_slots, cap * sizeof(*f));
            if (f) {
                t->free_slots = f;
            }
            if (!s || !g || !f) {
                goto out_free;
            }
        }
        if (t->n_slots >= 0xffffffu) {
            goto out_free;
        }
        slot = t->n_slots++;
        t->gens[slot] = 0;
    }
    c->fd = fd;
    c->slot = slot;
    c->gen = ++t->gens[slot];
    c->state = ST_AWAIT_CONNECT;
    c->timer_pos = TIMER_NONE;
    c->stage_head = c->stage_tail = -1;
    c->stage_bytes = 0;
    c->last_rx_ms = t->now;
    c->client_id = atomic_fetch_add(&t->srv->next_client_id, 1);
    frame_dec_init(&c->dec, PRE_CONNECT_MAX);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
            port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
            port = ntohs(a->sin6_port);
        }
    }
    snprintf(c->peer, sizeof(c->peer), "%s:%d", host, port);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(t->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        t->free_slots[t->n_free++] = slot;
        goto out_free;
    }
    c->events = EPOLLIN;
    t->slots[slot] = c;
    arm_timer(t, c, t->now + t->srv->cfg.connect_timeout_ms);
    stats_add(&t->stats.conns, 1);
    stats_add(&t->stats.conns_total, 1);
    log_debug("client %llu %s: accepted", (unsigned long long)c->client_id, c->peer);
    return;

out_free:
    free(c);
out_close:
    log_error("IO thread %u: out of memory, connection refused", t->index);
    close(fd);
    atomic_fetch_sub(&t->srv->conns_now, 1);
}

/* Close now (no flush). The memory is freed at the end of the round. */
static void conn_kill(struct iot *t, struct conn *c)
{
    if (c->state == ST_DEAD) {
        return;
    }
    c->state = ST_DEAD;
    heavy_update(t, c);
    epoll_ctl(t->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    theap_remove(&t->timers, &c->timer_pos);
    for (uint32_t i = 0; i < c->n_subs; i++) {
        if (post_sub_change(t, W_SUB_DEL, c->subs[i]) < 0) {
            log_error("IO thread %u: out of memory removing a subscription", t->index);
        }
        trie_sub_unref(c->subs[i]);
    }
    stats_sub(&t->stats.subs, c->n_subs);
    free(c->subs);
    c->subs = NULL;
    c->n_subs = 0;
    cu_unbind(t, c, UINT64_MAX);
    cu_remove(c, UINT64_MAX);
    free(c->cu);
    c->cu = NULL;
    c->n_cu = c->cu_cap = 0;
    wcu_remove_sub(c, NULL);
    auth_table_unref(c->auth);
    c->auth = NULL;
    c->who = NULL;
    frame_dec_deinit(&c->dec);
    out_release(c);
    t->slots[c->slot] = NULL;
    t->free_slots[t->n_free++] = c->slot;
    stats_sub(&t->stats.conns, 1);
    atomic_fetch_sub(&t->srv->conns_now, 1);
    log_debug("client %llu %s: closed", (unsigned long long)c->client_id, c->peer);
    if (ptrvec_push(&t->dead, c) < 0 && !c->is_dirty && !c->is_paused) {
        free(c); /* not referenced from any list of this round */
    }
}

static void conn_pause(struct iot *t, struct conn *c)
{
    if (c->is_paused) {
        return;
    }
    if (ptrvec_push(&t->paused, c) < 0) {
        return; /* cannot remember it: keep reading rather than stall it */
    }
    c->is_paused = 1;
    set_events(t, c, c->events & ~(uint32_t)EPOLLIN);
}

/* ---- frame handlers ----------------------------------------------------- */

/* Connect accepted (credentials checked, if any): negotiate, say Connected. */
static void connect_accept(struct iot *t, struct conn *c, uint32_t req_ka, uint32_t req_max_frame)
{
    const struct cfg *cfg = &t->srv->cfg;
    uint32_t ka = req_ka ? req_ka : cfg->keepalive_ms;
    if (ka < cfg->keepalive_min_ms) {
        ka = cfg->keepalive_min_ms;
    }
    if (ka > cfg->keepalive_max_ms) {
        ka = cfg->keepalive_max_ms;
    }
    /* The minimum of both, exactly, as ferry.proto says. (Our replies other
     * than Deliver and AdminReply are far below any sensible limit.) */
    uint32_t max_frame = cfg->max_frame_len;
    if (req_max_frame && req_max_frame < max_frame) {
        max_frame = req_max_frame;
    }
    c->max_frame_len = max_frame;
    c->keepalive_ms = ka;
    c->state = ST_OPEN;
    frame_dec_set_max(&c->dec, max_frame);
    arm_timer(t, c, c->last_rx_ms + (uint64_t)ka * 3 / 2);

    Ferry__Connected r = FERRY__CONNECTED__INIT;
    r.protocol_version = PROTOCOL_VERSION;
    r.server_version = (char *)FERRY_VERSION;
    r.server_id = t->srv->server_id;
    r.max_frame_len = max_frame;
    r.keepalive_ms = ka;
    /* What a PubAck of a stored topic promises. (Without a store, only in
     * unit tests, every topic is ephemeral: no promise beyond "routed".) */
    if (t->srv->store == NULL) {
        r.sync_policy = FERRY__SYNC_POLICY__SYNC_NONE;
    } else {
        r.sync_policy = (Ferry__SyncPolicy)cfg->sync_mode;
        if (cfg->sync_mode == STORE_SYNC_INTERVAL) {
            r.sync_interval_ms = cfg->sync_interval_ms;
        }
    }
    r.client_id = c->client_id;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_CONNECTED;
    f.connected = &r;
    conn_send(t, c, &f);
    log_debug("client %llu %s: connected as %s, keepalive %u ms", (unsigned long long)c->client_id,
              c->peer, c->who ? c->who->name : "anonymous", ka);
}

/* Wrong, missing or unknown credentials. The Error goes out when the timer
 * fires: later for each recent failure from the same address, so guessing
 * passwords is slow. Input stays unread meanwhile. */
static void auth_refuse(struct iot *t, struct conn *c)
{
    char host[sizeof(c->peer)];
    snprintf(host, sizeof(host), "%s", c->peer);
    char *colon = strrchr(host, ':');
    if (colon) {
        *colon = '\0'; /* failures count per address, whatever the port */
    }
    uint32_t delay = auth_delay_fail(&t->srv->auth_delay, host, t->now);
    stats_add(&t->stats.auth_failures, 1);
    log_warn("client %llu %s: authentication failed (answered in %u ms)",
             (unsigned long long)c->client_id, c->peer, delay);
    c->is_auth_pending = 1;
    c->is_auth_failed = 1;
    arm_timer(t, c, t->now + delay);
}

static void handle_connect(struct iot *t, struct conn *c, Ferry__Connect *m)
{
    if (m->protocol_version != PROTOCOL_VERSION) {
        conn_fail(t, c, FERRY__ERROR_CODE__ERROR_UNSUPPORTED_VERSION,
                  "unsupported protocol version (this server speaks 1)");
        return;
    }
    if (t->srv->auth_pool == NULL) {
        connect_accept(t, c, m->keepalive_ms, m->max_frame_len);
        return;
    }
    /* The hash is checked on the auth pool; until it answers (R_AUTH) this
     * connection reads nothing more. The Connect deadline still runs. */
    c->keepalive_ms = m->keepalive_ms;
    c->req_max_frame = m->max_frame_len;
    c->is_auth_pending = 1;
    set_events(t, c, c->events & ~(uint32_t)EPOLLIN);
    int rc = FERRY_EAUTH;
    if (m->token[0] != '\0' || m->username[0] != '\0') {
        struct auth_table *at = auth_holder_get(&t->srv->auth);
        rc = at ? auth_pool_submit(t->srv->auth_pool, ref_of(t, c), at, m->username, m->password,
                                   m->token)
                : FERRY_EAUTH;
        auth_table_unref(at);
    }
    explicit_bzero(m->password, strlen(m->password));
    explicit_bzero(m->token, strlen(m->token));
    if (rc == -EAGAIN || rc == -ENOMEM) {
        conn_fail(t, c, FERRY__ERROR_CODE__ERROR_SERVER_BUSY,
                  "too many logins in progress; retry later");
    } else if (rc != 0) {
        auth_refuse(t, c); /* no credentials at all */
    }
}

/* The auth pool's answer to handle_connect. */
static void auth_answer(struct iot *t, struct rmsg *m)
{
    struct conn *c = conn_by_ref(t, m->conn_ref);
    struct auth_table *cur = NULL;
    const struct auth_principal *who = NULL;
    if (c == NULL || c->state != ST_AWAIT_CONNECT || !c->is_auth_pending || c->is_auth_failed) {
        goto out; /* closed, or timed out meanwhile */
    }
    if (m->n_ids == 0) {
        /* A reload may have come in between: take the rights from the
         * current table, where the name may be gone. */
        cur = auth_holder_get(&t->srv->auth);
        who = cur ? auth_principal_find(cur, m->u.auth.who->name) : NULL;
    }
    if (who == NULL) {
        auth_refuse(t, c);
        goto out;
    }
    c->auth = cur;
    c->who = who;
    cur = NULL;
    c->is_auth_pending = 0;
    c->last_rx_ms = t->now; /* not read while the pool checked: a new interval */
    connect_accept(t, c, c->keepalive_ms, c->req_max_frame);
    set_events(t, c, c->events | EPOLLIN);
    process_frames(t, c); /* whatever came after Connect */
out:
    auth_table_unref(cur);
    auth_table_unref(m->u.auth.t);
}

/* A refusal by an ACL: counted and logged here; the caller answers. A client
 * that keeps trying what it may not do must not flood the log: the first 10
 * refusals of a connection are logged, then every 1000th. */
static void acl_denied(struct iot *t, struct conn *c, const char *what, const char *name,
                       size_t name_len)
{
    stats_add(&t->stats.permission_denials, 1);
    c->n_denied++;
    if (c->n_denied <= 10 || c->n_denied % 1000 == 0) {
        log_info("client %llu %s: permission denied: %s %s %.*s (%u on this connection)",
                 (unsigned long long)c->client_id, c->peer, c->who ? c->who->name : "(no rights)",
                 what, (int)(name_len > 256 ? 256 : name_len), name, c->n_denied);
    }
}

static int may_publish(const struct conn *c, const char *topic, size_t len)
{
    return c->auth == NULL || (c->who && acl_may_publish(&c->who->pub, topic, len));
}

static int may_subscribe(const struct conn *c, const char *pattern, size_t len)
{
    return c->auth == NULL || (c->who && acl_may_subscribe(&c->who->sub, pattern, len));
}

static void send_suback_seq(struct iot *t, struct conn *c, uint64_t sub_id, int code,
                            const char *text, uint64_t next_seq)
{
    Ferry__SubAck a = FERRY__SUB_ACK__INIT;
    a.sub_id = sub_id;
    a.code = (Ferry__ErrorCode)code;
    a.text = (char *)(text ? text : "");
    a.next_sequence = next_seq;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_SUB_ACK;
    f.sub_ack = &a;
    conn_send(t, c, &f);
}

/* A SubAck without a position: refusals, Unsubscribe answers. */
static void send_suback(struct iot *t, struct conn *c, uint64_t sub_id, int code, const char *text)
{
    send_suback_seq(t, c, sub_id, code, text, 0);
}

/* The SubAck accepting sub_id. SubAck.next_sequence is the catch-up
 * position of a subscription that has one of its own (one stored topic, no
 * queue group, not durable: a durable's position is the consumer's). Nothing
 * is delivered before the SubAck, so next_seq is still where it starts. */
static void send_suback_ok(struct iot *t, struct conn *c, uint64_t sub_id)
{
    struct catchup *e = cu_find(c, sub_id);
    /* Where this subscription alone decides its position (not a durable,
     * not a queue group's shared one). */
    uint64_t next_seq = 0;
    if (e != NULL && e->cons == NULL) {
        next_seq = e->next_seq;
    } else if (e != NULL && cons_is_private(e->cons)) {
        next_seq = cons_next_seq(e->cons);
    }
    send_suback_seq(t, c, sub_id, FERRY__ERROR_CODE__ERROR_NONE, NULL, next_seq);
}

static int find_sub(const struct conn *c, uint64_t sub_id)
{
    for (uint32_t i = 0; i < c->n_subs; i++) {
        if (c->subs[i]->sub_id == sub_id) {
            return (int)i;
        }
    }
    return -1;
}

static int wq_backlog(const struct iot *t)
{
    for (uint32_t w = 0; w < n_queues(t); w++) {
        if (t->wq[w].n) {
            return 1;
        }
    }
    return 0;
}

static int defer_suback(struct iot *t, struct conn *c, uint64_t sub_id)
{
    if (t->n_deferred == t->deferred_cap) {
        uint32_t cap = t->deferred_cap ? t->deferred_cap * 2 : 16;
        struct deferred_ack *v = realloc(t->deferred, cap * sizeof(*v));
        if (v == NULL) {
            return -ENOMEM;
        }
        t->deferred = v;
        t->deferred_cap = cap;
    }
    t->deferred[t->n_deferred].conn_ref = ref_of(t, c);
    t->deferred[t->n_deferred++].sub_id = sub_id;
    return 0;
}

/* Send held SubAcks once every subscription change is in a worker queue. */
static void send_deferred(struct iot *t)
{
    if (t->n_deferred == 0 || wq_backlog(t)) {
        return;
    }
    for (uint32_t i = 0; i < t->n_deferred; i++) {
        struct conn *c = conn_by_ref(t, t->deferred[i].conn_ref);
        if (c && c->state == ST_OPEN) {
            c->unacked_key = 0;
            send_suback_ok(t, c, t->deferred[i].sub_id);
            cu_start(t, c, t->deferred[i].sub_id);
        }
    }
    t->n_deferred = 0;
}

/* The first sequence a subscription with a start position gets. */
static int cu_first_seq(struct iot *t, const Ferry__Subscribe *m, size_t plen, uint64_t *out)
{
    struct store_topic_info info;
    int rc = store_topic_info(t->srv->store, m->pattern, plen, &info);
    if (rc == FERRY_ENOTOPIC) {
        /* Nothing stored yet: everything from the first message on (for a
         * start sequence, from that one). */
        *out = m->start == FERRY__START_POSITION__START_SEQUENCE && m->start_sequence > 1
                   ? m->start_sequence
                   : 1;
        return 0;
    }
    if (rc < 0) {
        return rc;
    }
    switch (m->start) {
    case FERRY__START_POSITION__START_ALL:
        *out = info.first_seq;
        return 0;
    case FERRY__START_POSITION__START_SEQUENCE:
        *out = m->start_sequence > 1 ? m->start_sequence : 1;
        return 0;
    case FERRY__START_POSITION__START_TIME:
        return store_seek_time(t->srv->store, info.id, m->start_time, out);
    default:
        *out = store_topic_seq_last_n(&info, m->start_last);
        return 0;
    }
}

static void handle_subscribe(struct iot *t, struct conn *c, Ferry__Subscribe *m)
{
    const struct cfg *cfg = &t->srv->cfg;
    const char *why;
    size_t plen = strlen(m->pattern);
    size_t glen = strlen(m->queue_group);
    if (find_sub(c, m->sub_id) >= 0) {
        send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_DUPLICATE_ID,
                    "sub_id already in use on this connection");
        return;
    }
    if (topic_validate(m->pattern, plen, 1, cfg->max_topic_len, cfg->max_topic_depth, &why)) {
        send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_INVALID_PATTERN, why);
        return;
    }
    /* Every delivery path (live fan-out, queue groups, replay from the
     * store) serves a subscription, so checking it here covers them all;
     * a reload that shrinks the rights removes it (auth_reload_conn). */
    if (!may_subscribe(c, m->pattern, plen)) {
        char text[320];
        snprintf(text, sizeof(text), "permission denied: subscribe %.*s",
                 (int)(plen > 256 ? 256 : plen), m->pattern);
        acl_denied(t, c, "subscribe", m->pattern, plen);
        send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED, text);
        return;
    }
    if (glen > 0 && topic_validate(m->queue_group, glen, 0, cfg->max_topic_len, 1, &why)) {
        send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_INVALID_ARGUMENT,
                    "queue group must be one token of printable characters");
        return;
    }
    int is_durable = m->durable_name[0] != '\0';
    int is_wild = topic_has_wildcard(m->pattern, plen);
    if (is_durable) {
        const char *refusal = NULL;
        size_t nlen = strlen(m->durable_name);
        if (m->ack_mode != FERRY__ACK_MODE__ACK_EXPLICIT) {
            refusal = "a durable consumer needs explicit acks (ack_mode ACK_EXPLICIT)";
        } else if (t->srv->consumers == NULL || t->srv->store == NULL) {
            refusal = "durable consumers need the store";
        } else if (nlen > CONS_NAME_MAX ||
                   topic_validate(m->durable_name, nlen, 0, CONS_NAME_MAX, 1, &why)) {
            refusal = "durable name must be one token of printable characters, at most 200 bytes";
        } else if (!is_wild && cfg_is_ephemeral(cfg, m->pattern, plen)) {
            refusal = "the topic is ephemeral (not stored): durable consumers need a stored topic";
        } else if (m->start > FERRY__START_POSITION__START_LAST) {
            refusal = "unknown start position";
        } else if (is_wild && (m->start == FERRY__START_POSITION__START_SEQUENCE ||
                               m->start == FERRY__START_POSITION__START_LAST)) {
            refusal = "a wildcard durable starts at new messages, all, or a time (sequences "
                      "are per topic)";
        }
        if (refusal) {
            send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_INVALID_ARGUMENT, refusal);
            return;
        }
    }
    /* Explicit acks without a durable: the subscription gets a consumer of
     * its own (its queue group's, shared), kept in memory for its life. */
    int is_acked = !is_durable && m->ack_mode == FERRY__ACK_MODE__ACK_EXPLICIT;
    if (is_acked) {
        const char *refusal = NULL;
        if (t->srv->consumers == NULL || t->srv->store == NULL) {
            refusal = "explicit acks need the store";
        } else if (is_wild) {
            refusal = "explicit acks without a durable need a topic name without wildcards (one "
                      "stored topic)";
        } else if (cfg_is_ephemeral(cfg, m->pattern, plen)) {
            refusal = "the topic is ephemeral (not stored): explicit acks need a stored topic";
        }
        if (refusal) {
            send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_INVALID_ARGUMENT, refusal);
            return;
        }
    }
    if (c->n_subs >= cfg->max_subs) {
        send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_LIMIT_EXCEEDED,
                    "too many subscriptions on this connection");
        return;
    }
    uint64_t start_seq = 0;
    int has_start = m->start != FERRY__START_POSITION__START_NEW;
    if (is_durable && is_wild) {
        /* A new wildcard durable's start_ns (its topics' positions start at
         * their first message published from then on); one that exists
         * keeps its own. */
        int64_t now_ns = now_realtime_ns();
        start_seq = m->start == FERRY__START_POSITION__START_ALL ? 0
                    : m->start == FERRY__START_POSITION__START_TIME
                        ? (uint64_t)(m->start_time > 0 ? m->start_time : 0)
                        : (uint64_t)now_ns;
        has_start = 0;
    } else if (is_durable) {
        /* Where a new durable starts; one that exists resumes instead. */
        int rc = cu_first_seq(t, m, plen, &start_seq);
        if (rc < 0) {
            send_suback(t, c, m->sub_id,
                        rc == -EAGAIN ? FERRY__ERROR_CODE__ERROR_SERVER_BUSY
                                      : FERRY__ERROR_CODE__ERROR_STORAGE_FAILED,
                        server_strerror(rc));
            return;
        }
        has_start = 0;
    }
    if (has_start) {
        const char *refusal = NULL;
        if (m->start > FERRY__START_POSITION__START_LAST) {
            refusal = "unknown start position";
        } else if (t->srv->store == NULL) {
            refusal = "start positions need the store";
        } else if (is_wild) {
            refusal = "start positions need a topic name without wildcards (one stored topic)";
        } else if (glen > 0) {
            refusal = "start positions cannot be combined with a queue group";
        } else if (cfg_is_ephemeral(cfg, m->pattern, plen)) {
            refusal = "the topic is ephemeral (not stored): only new messages can be delivered";
        }
        if (refusal) {
            send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_INVALID_ARGUMENT, refusal);
            return;
        }
        int rc = cu_first_seq(t, m, plen, &start_seq);
        if (rc < 0) {
            send_suback(t, c, m->sub_id,
                        rc == -EAGAIN ? FERRY__ERROR_CODE__ERROR_SERVER_BUSY
                                      : FERRY__ERROR_CODE__ERROR_STORAGE_FAILED,
                        server_strerror(rc));
            return;
        }
    }
    int use_cu = has_start || is_durable;
    /* A queue group without acks on stored topics shares what its lagging
     * members leave, so that none is disconnected (struct catchup). */
    int is_group_pos =
        !is_durable && !is_acked && glen > 0 && !has_start && t->srv->consumers != NULL;
    if (!use_cu && t->srv->store != NULL && (glen == 0 || is_acked || is_group_pos) &&
        !is_wild && !cfg_is_ephemeral(cfg, m->pattern, plen)) {
        /* New only, on one stored topic: it gets a position too, so that
         * when it lags it falls back to reading the store (see struct
         * catchup) instead of being disconnected. */
        struct store_topic_info info;
        int rc = store_topic_info(t->srv->store, m->pattern, plen, &info);
        if (rc == 0 || rc == FERRY_ENOTOPIC) {
            start_seq = rc == 0 ? info.last_seq + 1 : 1;
            use_cu = 1;
        }
    } else if (!use_cu && is_group_pos && is_wild && t->srv->store != NULL) {
        /* A queue group on a pattern: a shared set per topic (see struct
         * catchup). */
        use_cu = 1;
    }
    if (use_cu && c->n_cu == c->cu_cap) {
        uint32_t cap = c->cu_cap ? c->cu_cap * 2 : 1;
        struct catchup *v = realloc(c->cu, cap * sizeof(*v));
        if (v == NULL) {
            goto out_nomem;
        }
        c->cu = v;
        c->cu_cap = cap;
    }
    if (c->n_subs == c->subs_cap) {
        uint32_t cap = c->subs_cap ? c->subs_cap * 2 : 1;
        struct trie_sub **v = realloc(c->subs, cap * sizeof(*v));
        if (v == NULL) {
            goto out_nomem;
        }
        c->subs = v;
        c->subs_cap = cap;
    }
    struct consumer *cons = NULL;
    is_group_pos = is_group_pos && use_cu;
    if (is_durable || ((is_acked || is_group_pos) && use_cu)) {
        struct cons_opts o = {m->max_in_flight, m->ack_wait_ms, m->max_deliver,
                              (uint8_t)is_group_pos};
        char who[CONS_WHO_MAX];
        snprintf(who, sizeof(who), "client %llu %s", (unsigned long long)c->client_id, c->peer);
        int rc = cons_bind(t->srv->consumers, m->pattern, plen, is_durable ? m->durable_name : NULL,
                           strlen(m->durable_name), m->queue_group, glen, &o, start_seq,
                           ref_of(t, c), m->sub_id, who, &cons);
        if (rc == -EBUSY) {
            char text[320];
            snprintf(text, sizeof(text),
                     "durable %s on %s is held by another subscription (only members of its "
                     "queue group may share it)",
                     m->durable_name, m->pattern);
            send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_DURABLE_IN_USE, text);
            return;
        }
        if (rc < 0) {
            send_suback(t, c, m->sub_id,
                        rc == -ENOMEM   ? FERRY__ERROR_CODE__ERROR_INTERNAL
                        : rc == -EAGAIN ? FERRY__ERROR_CODE__ERROR_SERVER_BUSY
                                        : FERRY__ERROR_CODE__ERROR_STORAGE_FAILED,
                        server_strerror(rc));
            return;
        }
    }
    /* A durable's queue group members all get live copies; the durable's
     * claim gives each message to one of them (see struct catchup). */
    /* A group without acks keeps the workers' choice of member (load
     * spread); a member that cannot take its message leaves it to the
     * others (struct catchup, is_group). */
    int has_trie_group = cons == NULL || is_group_pos;
    struct trie_sub *s =
        trie_sub_create(ref_of(t, c), m->sub_id, m->pattern, plen,
                        has_trie_group ? m->queue_group : "", has_trie_group ? glen : 0);
    if (s == NULL) {
        goto out_unbind;
    }
    s->key = ++t->next_sub_key; /* before the workers see it */
    if (post_sub_change(t, W_SUB_ADD, s) < 0) {
        trie_sub_unref(s);
        goto out_unbind;
    }
    c->subs[c->n_subs++] = s;
    stats_add(&t->stats.subs, 1);
    if (use_cu) {
        /* After the W_SUB_ADD in the same queue: the owner answers when the
         * subscription is in its trie (a wildcard durable's: every worker). */
        uint32_t owner = topic_hash(m->pattern, plen) % t->srv->n_workers;
        uint32_t w_end = is_wild ? (is_group_pos ? 0 : t->srv->n_workers) : owner + 1;
        for (uint32_t w = is_wild ? 0 : owner; w < w_end; w++) {
            trie_sub_ref(s);
            struct wmsg rm = {.kind = W_SUB_READY, .p = s};
            if (wq_push(&t->wq[w], rm) < 0) {
                trie_sub_unref(s);
                log_error("client %llu %s: out of memory: subscription %llu reads the store only",
                          (unsigned long long)c->client_id, c->peer, (unsigned long long)m->sub_id);
            }
        }
        struct catchup *e = &c->cu[c->n_cu++];
        memset(e, 0, sizeof(*e));
        e->sub = s;
        if (is_wild) {
            e->root = cons; /* a durable's positions come with the SubAck (cu_start) */
            e->is_group = (uint8_t)is_group_pos;
        } else {
            e->next_seq = start_seq;
            e->cons = cons;
            e->is_group = (uint8_t)is_group_pos;
        }
        if (cons != NULL && !is_wild) {
            dur_list(t, c);
            t->next_dur_scan = 0; /* what the last holder left unacked is due */
        }
    }
    /* The SubAck promises that anything published after it is matched, by
     * whichever connection. Normally the change reaches the workers at the
     * end of this round, before the SubAck is written. If a worker's queue
     * is full, hold the SubAck (and this connection's later frames) until
     * the change is queued there. */
    for (uint32_t w = 0; w < n_queues(t); w++) {
        wq_flush(t, w);
    }
    if (wq_backlog(t) && defer_suback(t, c, m->sub_id) == 0) {
        c->unacked_key = s->key; /* deliver() holds nothing for it until then */
        log_debug("client %llu %s: SubAck %llu held: a worker queue is full",
                  (unsigned long long)c->client_id, c->peer, (unsigned long long)m->sub_id);
        conn_pause(t, c);
        return;
    }
    send_suback_ok(t, c, m->sub_id);
    cu_start(t, c, m->sub_id);
    return;

out_unbind:
    if (cons != NULL) {
        cons_unbind(t->srv->consumers, cons, ref_of(t, c), m->sub_id);
    }
out_nomem:
    send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_INTERNAL, "out of memory");
}

/* Remove c->subs[i] from the workers and the connection. Returns 0 or
 * -ENOMEM (nothing changed). */
static int sub_remove_at(struct iot *t, struct conn *c, uint32_t i)
{
    struct trie_sub *s = c->subs[i];
    if (post_sub_change(t, W_SUB_DEL, s) < 0) {
        return -ENOMEM;
    }
    cu_unbind(t, c, s->sub_id);
    cu_remove(c, s->sub_id);
    wcu_remove_sub(c, s);
    /* c->subs stays sorted by key (deliver() searches it) */
    memmove(&c->subs[i], &c->subs[i + 1], (c->n_subs - i - 1) * sizeof(*c->subs));
    c->n_subs--;
    trie_sub_unref(s);
    stats_sub(&t->stats.subs, 1);
    return 0;
}

static void handle_unsubscribe(struct iot *t, struct conn *c, Ferry__Unsubscribe *m)
{
    int i = find_sub(c, m->sub_id);
    if (i < 0) {
        send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_UNKNOWN_SUBSCRIPTION,
                    "no subscription with that sub_id");
        return;
    }
    if (sub_remove_at(t, c, (uint32_t)i) < 0) {
        send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        return;
    }
    /* Deliveries staged before now were matched while the subscription was
     * live; conn_send() writes them ahead of the SubAck, and every later one
     * is filtered out in deliver(). */
    send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_NONE, NULL);
}

/* A Publish, wherever it was decoded from. Pointers are valid for the call. */
struct pub_in {
    uint64_t id;
    const char *topic;
    size_t topic_len;
    const uint8_t *payload;
    size_t payload_len;
    const uint8_t *key;
    size_t key_len;
    size_t n_headers;
    Ferry__Header **headers; /* only from the full decoder */
    int want_ack;
};

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *varint_put(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* Deliver body without headers, written directly (same bytes protobuf-c
 * would produce): topic=2, publish_time=4, payload=5, key=7, attempt=8. */
static size_t deliver_body_size(const struct pub_in *p, int64_t now_ns)
{
    size_t n = 1 + varint_len(p->topic_len) + p->topic_len;
    n += 1 + varint_len((uint64_t)now_ns);
    if (p->payload_len) {
        n += 1 + varint_len(p->payload_len) + p->payload_len;
    }
    if (p->key_len) {
        n += 1 + varint_len(p->key_len) + p->key_len;
    }
    return n + 2;
}

static void deliver_body_put(uint8_t *o, const struct pub_in *p, int64_t now_ns)
{
    *o++ = (2 << 3) | 2;
    o = varint_put(o, p->topic_len);
    memcpy(o, p->topic, p->topic_len);
    o += p->topic_len;
    *o++ = (4 << 3) | 0;
    o = varint_put(o, (uint64_t)now_ns);
    if (p->payload_len) {
        *o++ = (5 << 3) | 2;
        o = varint_put(o, p->payload_len);
        memcpy(o, p->payload, p->payload_len);
        o += p->payload_len;
    }
    if (p->key_len) {
        *o++ = (7 << 3) | 2;
        o = varint_put(o, p->key_len);
        memcpy(o, p->key, p->key_len);
        o += p->key_len;
    }
    *o++ = (8 << 3) | 0;
    *o = 1;
}

static void enqueue_publish(struct iot *t, struct conn *c, const struct pub_in *p)
{
    const struct cfg *cfg = &t->srv->cfg;
    const char *why;
    size_t tlen = p->topic_len;
    int rc = topic_validate(p->topic, tlen, 0, cfg->max_topic_len, cfg->max_topic_depth, &why);
    if (rc) {
        send_error(t, c, FERRY__ERROR_CODE__ERROR_INVALID_TOPIC, why, p->id,
                   FERRY__ERROR__REF_KIND__REF_PUBLISH, 0);
        return;
    }
    if (!may_publish(c, p->topic, tlen)) {
        char text[320];
        snprintf(text, sizeof(text), "permission denied: publish %.*s",
                 (int)(tlen > 256 ? 256 : tlen), p->topic);
        acl_denied(t, c, "publish", p->topic, tlen);
        send_error(t, c, FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED, text, p->id,
                   FERRY__ERROR__REF_KIND__REF_PUBLISH, 0);
        return;
    }
    if (p->n_headers > MAX_HEADERS) {
        send_error(t, c, FERRY__ERROR_CODE__ERROR_LIMIT_EXCEEDED, "more than 64 headers", p->id,
                   FERRY__ERROR__REF_KIND__REF_PUBLISH, 0);
        return;
    }
    /* Stored unless the topic matches an `ephemeral` pattern (or, in unit
     * tests, the server has no store). A stored record's body carries a
     * sequence trailer the writer fills in after its commit. */
    int is_stored = t->srv->store != NULL && !cfg_is_ephemeral(cfg, p->topic, tlen);
    Ferry__Deliver d = FERRY__DELIVER__INIT;
    size_t body_len;
    if (p->n_headers) {
        d.topic = (char *)p->topic; /* NUL-terminated: from the full decoder */
        d.publish_time = t->now_ns;
        d.payload.data = (uint8_t *)p->payload;
        d.payload.len = p->payload_len;
        d.n_headers = p->n_headers;
        d.headers = p->headers;
        d.key.data = (uint8_t *)p->key;
        d.key.len = p->key_len;
        d.attempt = 1;
        body_len = codec_deliver_body_size(&d);
    } else {
        body_len = deliver_body_size(p, t->now_ns);
    }
    if (is_stored) {
        body_len += PUB_SEQ_TRAILER;
    }
    /* The Deliver (publish time, attempt, sequence and a sub id added) is
     * larger than the Publish: one that would not fit the server's frame
     * limit for a subscriber with one matching subscription is refused
     * here, rather than accepted and never deliverable. */
    if (CODEC_DELIVER_PREFIX_MAX(1) - FRAME_HDR_LEN + body_len > cfg->max_frame_len) {
        char text[160];
        snprintf(text, sizeof(text),
                 "message too large: its Deliver frame would be %zu bytes, above the server's "
                 "max_frame_len %u",
                 CODEC_DELIVER_PREFIX_MAX(1) - FRAME_HDR_LEN + body_len, cfg->max_frame_len);
        send_error(t, c, FERRY__ERROR_CODE__ERROR_FRAME_TOO_LARGE, text, p->id,
                   FERRY__ERROR__REF_KIND__REF_PUBLISH, 0);
        return;
    }
    size_t body_off = (sizeof(struct pub_rec) + tlen + 7) & ~(size_t)7;
    size_t rec_len = (body_off + body_len + 7) & ~(size_t)7;

    uint32_t owner = topic_hash(p->topic, tlen) % t->srv->n_workers;
    uint32_t w = is_stored ? t->srv->n_workers : owner;
    struct wq *q = &t->wq[w];
    if (q->cur && q->cur->cap - q->cur->len < rec_len) {
        wq_seal(t, w);
        wq_flush(t, w);
    }
    if (q->cur == NULL) {
        size_t cap = rec_len > BATCH_CAP ? rec_len : BATCH_CAP;
        /* The queue has room for this batch before it takes a publish, so
         * wq_seal() cannot drop it. */
        struct pub_batch *b = wq_reserve(q) == 0 ? malloc(sizeof(*b) + cap) : NULL;
        if (b == NULL) {
            send_error(t, c, FERRY__ERROR_CODE__ERROR_SERVER_BUSY, "out of memory", p->id,
                       FERRY__ERROR__REF_KIND__REF_PUBLISH, 0);
            return;
        }
        atomic_init(&b->refs, 1);
        b->len = 0;
        b->cap = (uint32_t)cap;
        b->n_recs = 0;
        q->cur = b;
    }
    struct pub_batch *b = q->cur;
    struct pub_rec *r = (struct pub_rec *)(b->data + b->len);
    r->conn_ref = ref_of(t, c);
    r->pub_id = p->id;
    r->rec_len = (uint32_t)rec_len;
    r->body_off = (uint32_t)body_off;
    r->body_len = (uint32_t)body_len;
    r->topic_len = (uint16_t)tlen;
    r->want_ack = p->want_ack ? 1 : 0;
    r->is_stored = (uint8_t)is_stored;
    r->worker = owner;
    r->seq = 0;
    r->serial = 0;
    if (is_stored) {
        if (++t->pub_serial == 0) {
            t->pub_serial = 1; /* 0 means "none" */
        }
        r->serial = t->pub_serial;
        c->last_stored_serial = r->serial;
    }
    memcpy(r + 1, p->topic, tlen);
    if (p->n_headers) {
        codec_deliver_body_encode(&d, (uint8_t *)r + body_off);
    } else {
        deliver_body_put((uint8_t *)r + body_off, p, t->now_ns);
    }
    if (is_stored) {
        pub_seq_put((uint8_t *)r + body_off + body_len, 0);
    }
    b->len += (uint32_t)rec_len;
    b->n_recs++;
    stats_add(&t->stats.msgs_in, 1);
    if (q->n >= WQ_PAUSE) {
        conn_pause(t, c); /* the worker is behind: stop reading this publisher */
    }
}

static void handle_publish(struct iot *t, struct conn *c, Ferry__Publish *m)
{
    struct pub_in p = {
        .id = m->id,
        .topic = m->topic,
        .topic_len = strlen(m->topic),
        .payload = m->payload.data,
        .payload_len = m->payload.len,
        .key = m->key.data,
        .key_len = m->key.len,
        .n_headers = m->n_headers,
        .headers = m->headers,
        .want_ack = m->want_ack,
    };
    enqueue_publish(t, c, &p);
}

static int get_varint(const uint8_t **pp, const uint8_t *end, uint64_t *v)
{
    const uint8_t *p = *pp;
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (p == end) {
            return 0;
        }
        uint8_t b = *p++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            if (shift == 63 && b > 1) {
                return 0;
            }
            *pp = p;
            *v = x;
            return 1;
        }
    }
    return 0;
}

/* The hot path: a frame holding only a Publish without headers is read in
 * place, without protobuf-c and without the arena. Anything unusual (other
 * or unknown fields, headers, bad strings, odd encodings) returns 0 and the
 * frame goes through the full decoder, which accepts or rejects it exactly
 * as it would anyway. */
static int publish_fast(struct iot *t, struct conn *c, const uint8_t *body, size_t len)
{
    const uint8_t *p = body, *end = body + len;
    uint64_t v;
    if (p == end || *p++ != ((3 << 3) | 2) || !get_varint(&p, end, &v) ||
        v != (uint64_t)(end - p)) {
        return 0;
    }
    struct pub_in in = {.topic = ""};
    int has_topic = 0;
    while (p < end) {
        uint8_t key = *p++;
        switch (key) {
        case (1 << 3) | 0:
            if (!get_varint(&p, end, &in.id)) {
                return 0;
            }
            break;
        case (6 << 3) | 0:
            if (!get_varint(&p, end, &v)) {
                return 0;
            }
            in.want_ack = v != 0;
            break;
        case (2 << 3) | 2:
        case (3 << 3) | 2:
        case (5 << 3) | 2:
            if (!get_varint(&p, end, &v) || v > (uint64_t)(end - p)) {
                return 0;
            }
            if (key == ((2 << 3) | 2)) {
                if (has_topic++) {
                    return 0; /* repeated: the full decoder checks every copy */
                }
                in.topic = (const char *)p;
                in.topic_len = (size_t)v;
            } else if (key == ((3 << 3) | 2)) {
                in.payload = p;
                in.payload_len = (size_t)v;
            } else {
                in.key = p;
                in.key_len = (size_t)v;
            }
            p += v;
            break;
        default:
            return 0; /* headers, unknown fields, multi-byte keys */
        }
    }
    if (!codec_utf8_valid((const uint8_t *)in.topic, in.topic_len)) {
        return 0;
    }
    enqueue_publish(t, c, &in);
    return 1;
}

#define ADMIN_TOPICS_DEFAULT 1000u
#define ADMIN_TOPICS_MAX 10000u

static void admin_reply_send(struct iot *t, struct conn *c, Ferry__AdminReply *r)
{
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_ADMIN_REPLY;
    f.admin_reply = r;
    if (codec_frame_size(&f) - FRAME_HDR_LEN > c->max_frame_len) {
        /* never a frame above the negotiated limit */
        Ferry__AdminReply e = FERRY__ADMIN_REPLY__INIT;
        e.id = r->id;
        e.code = FERRY__ERROR_CODE__ERROR_LIMIT_EXCEEDED;
        e.text = (char *)"reply larger than the negotiated max_frame_len";
        f.admin_reply = &e;
    }
    conn_send(t, c, &f);
}

struct topic_list {
    const char *pattern;
    size_t pattern_len;
    uint32_t limit;
    size_t budget, used; /* encoded bytes: the reply must fit max_frame_len */
    int is_truncated;    /* more topics match than the reply holds */
    Ferry__TopicInfo *v;
    Ferry__TopicInfo **pv;
    uint32_t n, cap;
    int is_nomem;
};

static void topic_info_fill(Ferry__TopicInfo *ti, char *name, const struct store_topic_info *in)
{
    ferry__topic_info__init(ti);
    ti->name = name;
    ti->messages = in->n_msgs;
    ti->bytes = in->n_bytes;
    ti->first_seq = in->n_msgs ? in->first_seq : 0;
    ti->last_seq = in->last_seq;
}

/* Inside a store read: copy what we keep. */
static int topic_list_cb(void *ctx, const char *name, size_t name_len,
                         const struct store_topic_info *info)
{
    struct topic_list *l = ctx;
    if (l->pattern_len && !topic_match(l->pattern, l->pattern_len, name, name_len)) {
        return 0;
    }
    /* a TopicInfo: the name and six varints, with tags and lengths */
    size_t size = name_len + 80;
    if (l->n == l->limit || l->used + size > l->budget) {
        l->is_truncated = 1;
        return 1;
    }
    l->used += size;
    if (l->n == l->cap) {
        uint32_t cap = l->cap ? l->cap * 2 : 64;
        Ferry__TopicInfo *v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL) {
            l->is_nomem = 1;
            return 1;
        }
        l->v = v;
        l->cap = cap;
    }
    char *copy = malloc(name_len + 1);
    if (copy == NULL) {
        l->is_nomem = 1;
        return 1;
    }
    memcpy(copy, name, name_len);
    copy[name_len] = '\0';
    topic_info_fill(&l->v[l->n++], copy, info);
    return 0;
}

/* TopicListRequest: a bounded list (limit), read in short transactions. */
static void admin_topics(struct iot *t, struct conn *c, Ferry__AdminRequest *m)
{
    Ferry__AdminReply r = FERRY__ADMIN_REPLY__INIT;
    r.id = m->id;
    const char *pat = m->topics->pattern;
    size_t plen = strlen(pat);
    const char *why;
    if (plen && topic_validate(pat, plen, 1, t->srv->cfg.max_topic_len, t->srv->cfg.max_topic_depth,
                               &why)) {
        r.code = FERRY__ERROR_CODE__ERROR_INVALID_PATTERN;
        r.text = (char *)why;
        admin_reply_send(t, c, &r);
        return;
    }
    /* The literal tokens before the first wildcard narrow the scan. */
    size_t prefix = 0;
    for (size_t i = 0; i <= plen; i++) {
        if (i == plen || pat[i] == '.') {
            size_t tok = prefix;
            if (i - tok == 1 && (pat[tok] == '*' || pat[tok] == '>')) {
                break;
            }
            prefix = i < plen ? i + 1 : i;
        }
    }
    uint32_t limit = m->topics->limit ? m->topics->limit : ADMIN_TOPICS_DEFAULT;
    if (limit > ADMIN_TOPICS_MAX) {
        limit = ADMIN_TOPICS_MAX;
    }
    /* The reply fits the client's frame limit (room kept for the rest of
     * AdminReply); a list cut short says so in its text. */
    struct topic_list l = {.pattern = pat, .pattern_len = plen, .limit = limit};
    l.budget = c->max_frame_len > 1024 ? c->max_frame_len - 1024 : 0;
    char text[200];
    int rc = store_topic_list(t->srv->store, pat, prefix, topic_list_cb, &l);
    if (rc < 0 || l.is_nomem) {
        r.code = rc == -EAGAIN || l.is_nomem ? FERRY__ERROR_CODE__ERROR_SERVER_BUSY
                                             : FERRY__ERROR_CODE__ERROR_STORAGE_FAILED;
        r.text = (char *)(l.is_nomem ? "out of memory" : server_strerror(rc));
    } else if (l.n) {
        l.pv = malloc(l.n * sizeof(*l.pv));
        if (l.pv == NULL) {
            r.code = FERRY__ERROR_CODE__ERROR_SERVER_BUSY;
            r.text = (char *)"out of memory";
        } else {
            for (uint32_t i = 0; i < l.n; i++) {
                l.pv[i] = &l.v[i];
            }
            r.n_topics = l.n;
            r.topics = l.pv;
        }
    }
    if (r.code == FERRY__ERROR_CODE__ERROR_NONE && l.is_truncated) {
        snprintf(text, sizeof(text),
                 "truncated: more topics match; %u shown (limit %u, server default %u, "
                 "at most %u, and the negotiated max_frame_len %u)",
                 l.n, limit, ADMIN_TOPICS_DEFAULT, ADMIN_TOPICS_MAX, c->max_frame_len);
        r.text = text;
    }
    admin_reply_send(t, c, &r);
    for (uint32_t i = 0; i < l.n; i++) {
        free(l.v[i].name);
    }
    free(l.v);
    free(l.pv);
}

static void admin_topic_info(struct iot *t, struct conn *c, Ferry__AdminRequest *m)
{
    Ferry__AdminReply r = FERRY__ADMIN_REPLY__INIT;
    Ferry__TopicInfo ti;
    r.id = m->id;
    const char *name = m->topic_info->topic;
    size_t len = strlen(name);
    struct store_topic_info in;
    const char *why;
    int rc = store_topic_info(t->srv->store, name, len, &in);
    int is_ephemeral = rc == FERRY_ENOTOPIC && len &&
                       !topic_validate(name, len, 0, t->srv->cfg.max_topic_len,
                                       t->srv->cfg.max_topic_depth, &why) &&
                       cfg_is_ephemeral(&t->srv->cfg, name, len);
    if (rc == 0 || is_ephemeral) {
        /* The subscriptions are in the workers' tries, which only their
         * workers read: the topic's owner counts them and answers. */
        struct topic_info_req *q = malloc(sizeof(*q) + len + 1);
        if (q != NULL) {
            memset(q, 0, sizeof(*q));
            q->conn_ref = ref_of(t, c);
            q->admin_id = m->id;
            if (rc == 0) {
                topic_info_fill(&ti, (char *)name, &in);
                q->messages = ti.messages;
                q->bytes = ti.bytes;
                q->first_seq = ti.first_seq;
                q->last_seq = ti.last_seq;
            }
            q->is_ephemeral = is_ephemeral;
            q->topic_len = len;
            memcpy(q->topic, name, len + 1);
            /* Queued like a publication: a worker that is behind delays
             * the answer and stops reading this connection (backpressure)
             * rather than failing the request. */
            uint32_t owner = topic_hash(name, len) % t->srv->n_workers;
            struct wmsg w = {.kind = W_TOPIC_INFO, .p = q};
            if (wq_push(&t->wq[owner], w) == 0) {
                if (t->wq[owner].n >= WQ_PAUSE) {
                    conn_pause(t, c);
                }
                return; /* the worker answers */
            }
            free(q);
        }
        r.code = FERRY__ERROR_CODE__ERROR_SERVER_BUSY;
        r.text = (char *)"out of memory; retry";
    } else if (rc == FERRY_ENOTOPIC || rc == FERRY_EINVAL) {
        r.code = FERRY__ERROR_CODE__ERROR_UNKNOWN_TOPIC;
        r.text = (char *)"no such stored topic";
    } else {
        r.code = rc == -EAGAIN ? FERRY__ERROR_CODE__ERROR_SERVER_BUSY
                               : FERRY__ERROR_CODE__ERROR_STORAGE_FAILED;
        r.text = (char *)server_strerror(rc);
    }
    admin_reply_send(t, c, &r);
}

/* A purge writes (in many small commits): the writer runs it and answers. */
static int admin_purge(struct iot *t, struct conn *c, Ferry__AdminRequest *m)
{
    const char *name = m->topic_purge->topic;
    size_t len = strlen(name);
    struct purge_req *q = malloc(sizeof(*q) + len + 1);
    if (q == NULL) {
        return -ENOMEM;
    }
    q->conn_ref = ref_of(t, c);
    q->admin_id = m->id;
    q->topic_len = len;
    memcpy(q->topic, name, len + 1);
    struct wmsg w = {.kind = W_PURGE, .p = q};
    if (mbox_try_post(writer_mbox(t->srv->writer), &w, 1) != 1) {
        free(q);
        return -EAGAIN;
    }
    return 0;
}

#define ADMIN_CONSUMERS_DEFAULT 1000u
#define ADMIN_CONSUMERS_MAX 10000u

struct admin_match {
    const char *pattern;
    size_t pattern_len;
};

static int admin_consumer_match(void *ctx, const char *topic, size_t len)
{
    const struct admin_match *am = ctx;
    return am->pattern_len == 0 || topic_match(am->pattern, am->pattern_len, topic, len);
}

static enum store_read_verdict admin_first_time_cb(void *ctx, const struct store_msg *m)
{
    *(int64_t *)ctx = m->publish_time;
    return STORE_READ_STOP;
}

/* The lag figures of one durable: messages above its ack floor, and how
 * long ago the oldest of them was published (0 when caught up). */
static void admin_consumer_lag(struct iot *t, Ferry__ConsumerInfo *ci)
{
    struct store_topic_info in;
    if (store_topic_info(t->srv->store, ci->topic, strlen(ci->topic), &in) != 0 ||
        in.last_seq <= ci->ack_floor) {
        return;
    }
    ci->lag_messages = in.last_seq - ci->ack_floor;
    int64_t when = INT64_MIN;
    struct store_read_result res;
    if (store_read(t->srv->store, in.id, ci->ack_floor + 1, 1, SIZE_MAX, admin_first_time_cb, &when,
                   &res) == 0 &&
        when != INT64_MIN && t->now_ns > when) {
        ci->lag_ms = (uint64_t)(t->now_ns - when) / 1000000u;
    }
}

/* ConsumerListRequest: durables in memory and only in the store. */
static void admin_consumers(struct iot *t, struct conn *c, Ferry__AdminRequest *m)
{
    Ferry__AdminReply r = FERRY__ADMIN_REPLY__INIT;
    r.id = m->id;
    struct admin_match am = {m->consumers->pattern, strlen(m->consumers->pattern)};
    const char *why;
    if (am.pattern_len && topic_validate(am.pattern, am.pattern_len, 1, t->srv->cfg.max_topic_len,
                                         t->srv->cfg.max_topic_depth, &why)) {
        r.code = FERRY__ERROR_CODE__ERROR_INVALID_PATTERN;
        r.text = (char *)why;
        admin_reply_send(t, c, &r);
        return;
    }
    uint32_t limit = m->consumers->limit ? m->consumers->limit : ADMIN_CONSUMERS_DEFAULT;
    if (limit > ADMIN_CONSUMERS_MAX) {
        limit = ADMIN_CONSUMERS_MAX;
    }
    struct cons_info *v = NULL;
    size_t n = 0;
    int rc = cons_reg_list(t->srv->consumers, admin_consumer_match, &am, &v, &n);
    Ferry__ConsumerInfo *cv = NULL;
    Ferry__ConsumerInfo **pv = NULL;
    char(*held)[CONS_WHO_MAX + 32] = NULL; /* "<who> and N more" */
    char text[200];
    if (rc == 0 && n > 0) {
        cv = calloc(n, sizeof(*cv));
        pv = calloc(n, sizeof(*pv));
        held = calloc(n, sizeof(*held));
        if (cv == NULL || pv == NULL || held == NULL) {
            rc = -ENOMEM;
        }
    }
    if (rc != 0) {
        r.code = rc == -ENOMEM || rc == -EAGAIN ? FERRY__ERROR_CODE__ERROR_SERVER_BUSY
                                                : FERRY__ERROR_CODE__ERROR_STORAGE_FAILED;
        r.text = (char *)server_strerror(rc);
        n = 0;
    }
    /* The reply fits the client's frame limit, as for topics. */
    size_t budget = c->max_frame_len > 1024 ? c->max_frame_len - 1024 : 0;
    size_t used = 0, shown = 0;
    Ferry__ConsumerInfo *root = NULL; /* the last wildcard durable listed */
    for (size_t i = 0; i < n; i++) {
        size_t size = strlen(v[i].topic) + strlen(v[i].name) + strlen(v[i].group) +
                      strlen(v[i].pattern) + 160;
        if (shown == limit || used + size > budget) {
            break;
        }
        used += size;
        Ferry__ConsumerInfo *ci = &cv[shown];
        ferry__consumer_info__init(ci);
        ci->topic = v[i].topic;
        ci->name = v[i].name;
        ci->ack_floor = v[i].ack_floor;
        ci->next_seq = v[i].next_seq;
        ci->pending = v[i].n_pending;
        ci->redelivered = v[i].n_redelivered;
        ci->holders = v[i].n_holders;
        ci->queue_group = v[i].group;
        ci->is_loaded = v[i].is_loaded != 0;
        ci->pattern = v[i].pattern;
        if (v[i].n_holders == 0) {
            ci->held_by = (char *)"";
        } else if (v[i].n_holders == 1) {
            snprintf(held[shown], sizeof(held[shown]), "%s", v[i].held_by);
            ci->held_by = held[shown];
        } else {
            /* the group's name is in queue_group */
            snprintf(held[shown], sizeof(held[shown]), "%s and %u more", v[i].held_by,
                     v[i].n_holders - 1);
            ci->held_by = held[shown];
        }
        if (v[i].is_root) {
            ci->ack_floor = ci->next_seq = 0; /* the sums of its positions, below */
            root = ci;
        } else {
            admin_consumer_lag(t, ci);
        }
        /* A wildcard durable's positions follow it (sorted by key). */
        if (root != NULL && ci != root && strcmp(ci->pattern, root->topic) == 0 &&
            strcmp(ci->name, root->name) == 0) {
            root->pending += ci->pending;
            root->redelivered += ci->redelivered;
            root->lag_messages += ci->lag_messages;
            root->lag_ms = ci->lag_ms > root->lag_ms ? ci->lag_ms : root->lag_ms;
        }
        pv[shown] = ci;
        shown++;
    }
    if (rc == 0 && shown < n) {
        snprintf(text, sizeof(text),
                 "truncated: %zu durables match; %zu shown (limit %u, server default %u, at most "
                 "%u, and the negotiated max_frame_len %u)",
                 n, shown, limit, ADMIN_CONSUMERS_DEFAULT, ADMIN_CONSUMERS_MAX, c->max_frame_len);
        r.text = text;
    }
    r.n_consumers = shown;
    r.consumers = pv;
    admin_reply_send(t, c, &r);
    free(held);
    free(pv);
    free(cv);
    free(v);
}

/* ConsumerDeleteRequest. A forced delete's holders may live on any IO
 * thread: each is told through its thread's mailbox (admin_detach). */
static void admin_consumer_delete(struct iot *t, struct conn *c, Ferry__AdminRequest *m)
{
    Ferry__AdminReply r = FERRY__ADMIN_REPLY__INIT;
    r.id = m->id;
    const Ferry__ConsumerDeleteRequest *q = m->consumer_delete;
    struct cons_detach *hv = NULL;
    uint32_t nh = 0;
    int rc = cons_reg_delete(t->srv->consumers, q->topic, strlen(q->topic), q->name,
                             strlen(q->name), q->force, &hv, &nh);
    char text[400];
    if (rc == -EBUSY) {
        snprintf(text, sizeof(text),
                 "durable %.200s on %.100s is held by a subscription (delete it with force)",
                 q->name, q->topic);
        r.code = FERRY__ERROR_CODE__ERROR_DURABLE_IN_USE;
        r.text = text;
    } else if (rc == FERRY_ENOTOPIC || rc == FERRY_EINVAL) {
        r.code = FERRY__ERROR_CODE__ERROR_UNKNOWN_CONSUMER;
        r.text = (char *)"no such durable consumer";
    } else if (rc != 0) {
        r.code = rc == -ENOMEM || rc == -EAGAIN ? FERRY__ERROR_CODE__ERROR_SERVER_BUSY
                                                : FERRY__ERROR_CODE__ERROR_STORAGE_FAILED;
        r.text = (char *)server_strerror(rc);
    } else {
        log_info("client %llu %s: deleted durable %s on %s%s", (unsigned long long)c->client_id,
                 c->peer, q->name, q->topic, nh ? " (force: holders detached)" : "");
    }
    for (uint32_t i = 0; i < nh; i++) {
        struct rmsg d = {.kind = R_DETACH, .conn_ref = hv[i].holder_ref};
        d.u.ack.id = hv[i].sub_id;
        d.u.ack.seq = hv[i].id;
        uint32_t k = CONN_REF_IOT(hv[i].holder_ref);
        if (k >= t->srv->n_iot || mbox_post(iot_mbox(t->srv->iots[k]), &d, 1) < 0) {
            log_warn("durable %s on %s: could not tell subscription %llu that it was deleted",
                     q->name, q->topic, (unsigned long long)hv[i].sub_id);
        }
    }
    free(hv);
    admin_reply_send(t, c, &r);
}

/* R_DETACH: the durable this subscription held was deleted with force. The
 * sub_id may have been reused since: only a subscription still bound to
 * that durable ends. */
static void admin_detach(struct iot *t, const struct rmsg *m)
{
    struct conn *c = conn_by_ref(t, m->conn_ref);
    if (c == NULL || c->state != ST_OPEN) {
        return;
    }
    uint64_t sub_id = m->u.ack.id;
    struct catchup *e = cu_find(c, sub_id);
    int i = find_sub(c, sub_id);
    struct consumer *k = e == NULL ? NULL : cu_is_root(e) ? e->root : e->cons;
    if (k == NULL || cons_id(k) != (uint32_t)m->u.ack.seq || i < 0) {
        return;
    }
    char text[352];
    snprintf(text, sizeof(text),
             "subscription %llu: its durable consumer on %.*s was deleted by an administrator",
             (unsigned long long)sub_id,
             (int)(c->subs[i]->pattern_len > 256 ? 256 : c->subs[i]->pattern_len),
             c->subs[i]->pattern);
    if (sub_remove_at(t, c, (uint32_t)i) < 0) {
        conn_fail(t, c, FERRY__ERROR_CODE__ERROR_INTERNAL,
                  "out of memory removing a subscription whose durable was deleted");
        return;
    }
    send_error(t, c, FERRY__ERROR_CODE__ERROR_CONSUMER_DELETED, text, sub_id,
               FERRY__ERROR__REF_KIND__REF_SUBSCRIPTION, 0);
}

static void handle_admin(struct iot *t, struct conn *c, Ferry__AdminRequest *m)
{
    Ferry__AdminReply r = FERRY__ADMIN_REPLY__INIT;
    Ferry__Stats st = FERRY__STATS__INIT;
    uint64_t commit_hist[STORE_LAT_BUCKETS];
    r.id = m->id;
    if (c->auth != NULL && (c->who == NULL || !c->who->is_admin)) {
        acl_denied(t, c, "admin", "request", 7);
        r.code = FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED;
        r.text = (char *)"permission denied: admin requests need `allow NAME admin`";
        admin_reply_send(t, c, &r);
        return;
    }
    if (m->request_case == FERRY__ADMIN_REQUEST__REQUEST_STATS) {
        struct stats_snapshot s;
        server_stats(t->srv, &s);
        st.server_id = t->srv->server_id;
        st.server_version = (char *)FERRY_VERSION;
        st.uptime_ms = (uint64_t)(now_realtime_ns() / 1000000) - t->srv->start_ms;
        st.connections = s.conns;
        st.connections_total = s.conns_total;
        st.subscriptions = s.subs;
        st.msgs_in = s.msgs_in;
        st.msgs_out = s.msgs_out;
        st.bytes_in = s.bytes_in;
        st.bytes_out = s.bytes_out;
        st.slow_consumers = s.slow_consumers;
        st.protocol_errors = s.protocol_errors;
        st.auth_failures = s.auth_failures;
        st.permission_denials = s.permission_denials;
        if (t->srv->store) {
            struct store_stats ss;
            store_stats(t->srv->store, &ss);
            st.store_bytes = ss.map_used;
            st.topics = ss.n_topics;
            st.crc_errors = ss.n_crc_errors;
            st.store_commits = ss.n_commits;
            st.store_messages = ss.n_appends;
            size_t nb = STORE_LAT_BUCKETS;
            while (nb > 0 && ss.commit_hist[nb - 1] == 0) {
                nb--;
            }
            memcpy(commit_hist, ss.commit_hist, nb * sizeof(*commit_hist));
            st.n_commit_latency_hist = nb;
            st.commit_latency_hist = commit_hist;
        }
        r.stats = &st;
    } else if (m->request_case == FERRY__ADMIN_REQUEST__REQUEST__NOT_SET) {
        r.code = FERRY__ERROR_CODE__ERROR_INVALID_ARGUMENT;
        r.text = (char *)"empty admin request";
    } else if (t->srv->store == NULL) {
        r.code = FERRY__ERROR_CODE__ERROR_INTERNAL;
        r.text = (char *)"topic administration needs the store";
    } else if (m->request_case == FERRY__ADMIN_REQUEST__REQUEST_TOPICS) {
        admin_topics(t, c, m);
        return;
    } else if (m->request_case == FERRY__ADMIN_REQUEST__REQUEST_TOPIC_INFO) {
        admin_topic_info(t, c, m);
        return;
    } else if (m->request_case == FERRY__ADMIN_REQUEST__REQUEST_TOPIC_PURGE) {
        if (admin_purge(t, c, m) == 0) {
            return; /* the writer answers */
        }
        r.code = FERRY__ERROR_CODE__ERROR_SERVER_BUSY;
        r.text = (char *)"the store writer is busy; retry";
    } else if (m->request_case == FERRY__ADMIN_REQUEST__REQUEST_CONSUMERS &&
               t->srv->consumers != NULL) {
        admin_consumers(t, c, m);
        return;
    } else if (m->request_case == FERRY__ADMIN_REQUEST__REQUEST_CONSUMER_DELETE &&
               t->srv->consumers != NULL) {
        admin_consumer_delete(t, c, m);
        return;
    } else {
        r.code = FERRY__ERROR_CODE__ERROR_UNKNOWN_MESSAGE;
        r.text = (char *)"unknown admin request";
    }
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_ADMIN_REPLY;
    f.admin_reply = &r;
    conn_send(t, c, &f);
}

static void send_pong(struct iot *t, struct conn *c, uint64_t nonce)
{
    Ferry__Pong p = FERRY__PONG__INIT;
    p.nonce = nonce;
    Ferry__Frame r = FERRY__FRAME__INIT;
    r.body_case = FERRY__FRAME__BODY_PONG;
    r.pong = &p;
    conn_send(t, c, &r);
}

/*
 * The Ack confirmation rule (proto/README.md): a Pong confirms every Ack the
 * connection sent before its Ping. Acks change durable state in memory at
 * once; the store writer commits it in its next round. So a Ping that
 * follows Acks to durables goes through the writer's queue (W_BARRIER) and
 * its Pong comes back (R_PONG) only after a commit that includes them. A
 * Ping with no such Ack before it (keepalive) is answered at once, unless
 * an earlier one is still with the writer: Pongs keep the Pings' order (a
 * client counts a later nonce as the answer to every earlier Ping).
 */
static void handle_ping(struct iot *t, struct conn *c, uint64_t nonce)
{
    if ((!c->has_dur_acks && c->n_barriers == 0) || t->srv->writer == NULL) {
        send_pong(t, c, nonce);
        return;
    }
    uint32_t w = t->srv->n_workers;
    struct barrier *b = malloc(sizeof(*b));
    if (b != NULL) {
        b->conn_ref = ref_of(t, c);
        b->nonce = nonce;
        wq_seal(t, w);
        struct wmsg m = {.kind = W_BARRIER, .p = b};
        if (wq_push(&t->wq[w], m) == 0) {
            c->has_dur_acks = 0;
            c->n_barriers++;
            return;
        }
        free(b);
    }
    /* A Pong now would confirm what may not be stored: no answer at all. */
    conn_fail(t, c, FERRY__ERROR_CODE__ERROR_INTERNAL, "out of memory");
}

static void handle_frame(struct iot *t, struct conn *c, const uint8_t *body, size_t len)
{
    Ferry__Frame *f;
    stats_add(&t->stats.frames_in, 1);
    if (c->state == ST_OPEN && publish_fast(t, c, body, len)) {
        return;
    }
    int rc = codec_frame_decode(&t->arena, body, len, &f);
    if (rc < 0) {
        if (rc == FERRY_EUNKNOWNMSG) {
            /* DESIGN.md: an empty oneof is a protocol error (fatal). */
            conn_fail(t, c, FERRY__ERROR_CODE__ERROR_UNKNOWN_MESSAGE,
                      "frame holds no message this server knows");
            return;
        }
        conn_fail(t, c,
                  rc == -ENOMEM ? FERRY__ERROR_CODE__ERROR_INTERNAL
                                : FERRY__ERROR_CODE__ERROR_PROTOCOL,
                  rc == -ENOMEM ? "out of memory" : "frame does not decode");
        return;
    }
    if (c->state == ST_AWAIT_CONNECT) {
        if (f->body_case != FERRY__FRAME__BODY_CONNECT) {
            conn_fail(t, c, FERRY__ERROR_CODE__ERROR_NOT_CONNECTED,
                      "the first frame must be Connect");
            return;
        }
        handle_connect(t, c, f->connect);
        return;
    }
    switch (f->body_case) {
    case FERRY__FRAME__BODY_PUBLISH:
        handle_publish(t, c, f->publish);
        break;
    case FERRY__FRAME__BODY_SUBSCRIBE:
        handle_subscribe(t, c, f->subscribe);
        break;
    case FERRY__FRAME__BODY_UNSUBSCRIBE:
        handle_unsubscribe(t, c, f->unsubscribe);
        break;
    case FERRY__FRAME__BODY_PING:
        handle_ping(t, c, f->ping->nonce);
        break;
    case FERRY__FRAME__BODY_PONG:
        break; /* the receive itself refreshed the keepalive */
    case FERRY__FRAME__BODY_ACK:
        handle_ack(t, c, f->ack);
        break;
    case FERRY__FRAME__BODY_ADMIN_REQUEST:
        handle_admin(t, c, f->admin_request);
        break;
    case FERRY__FRAME__BODY_DISCONNECT:
        log_debug("client %llu %s: disconnect", (unsigned long long)c->client_id, c->peer);
        conn_close_after_flush(t, c);
        break;
    case FERRY__FRAME__BODY_CONNECT:
        send_error(t, c, FERRY__ERROR_CODE__ERROR_PROTOCOL, "Connect may be sent only once", 0,
                   FERRY__ERROR__REF_KIND__REF_NONE, 0);
        break;
    default:
        send_error(t, c, FERRY__ERROR_CODE__ERROR_UNKNOWN_MESSAGE,
                   "message not accepted from clients", 0, FERRY__ERROR__REF_KIND__REF_NONE, 0);
        break;
    }
}

/* Requests make replies: a client that pipelines requests (admin lists,
 * say) without reading the answers is not read any further while its
 * pending output is over half its bound; conn_flush() resumes it when the
 * output has drained (through t->paused and resume_paused()). */
static void conn_out_check(struct iot *t, struct conn *c)
{
    if (c->state != ST_OPEN || c->is_paused || out_pending(c) <= t->srv->cfg.max_outbound / 2) {
        return;
    }
    c->is_paused = 1;
    c->is_out_paused = 1;
    set_events(t, c, c->events & ~(uint32_t)EPOLLIN);
}

/*
 * A Subscribe waits until every stored publication its connection sent
 * before it is committed and routed: a Publish followed by a Subscribe
 * (START_NEW) on one connection must not reach the new subscription, but a
 * stored publication reaches the workers through the writer, later than a
 * subscription change, which goes to them directly. Once the writer has
 * handed those publications to the workers (iot_committed), the
 * subscription is added behind them, and a start position computed from
 * the store counts them. An admin request waits the same way, so that its
 * answer (a topic's last sequence, a topic list) includes them. Returns 1
 * if c must wait (it is paused; the writer's wake-up resumes it).
 */
static int read_must_wait(struct iot *t, struct conn *c, const uint8_t *body, size_t len)
{
    /* Frame's oneof field 5 (subscribe) or 14 (admin_request), length-
     * delimited: tag byte 0x2a or 0x72. */
    if (c->last_stored_serial == 0 || len == 0 ||
        (body[0] != ((5 << 3) | 2) && body[0] != ((14 << 3) | 2))) {
        return 0;
    }
    /* Committed already (the usual case), or after asking for the writer's
     * wake-up: looked at again, in case the commit came in between. */
    for (int asked = 0; asked < 2; asked++) {
        if (serial_reached(atomic_load(&t->committed_serial), c->last_stored_serial)) {
            c->last_stored_serial = 0;
            return 0;
        }
        atomic_store(&t->is_commit_wanted, 1);
    }
    conn_pause(t, c);
    return c->is_paused;
}

static void process_frames(struct iot *t, struct conn *c)
{
    while (c->state <= ST_OPEN && !c->is_paused && !c->is_auth_pending) {
        const uint8_t *body;
        size_t len;
        int rc = frame_dec_peek(&c->dec, &body, &len);
        if (rc > 0 && c->state == ST_OPEN && read_must_wait(t, c, body, len)) {
            break;
        }
        if (rc > 0) {
            rc = frame_dec_next(&c->dec, &body, &len);
        }
        if (rc == 0) {
            break;
        }
        if (rc < 0) {
            conn_fail(t, c, FERRY__ERROR_CODE__ERROR_FRAME_TOO_LARGE,
                      c->state == ST_AWAIT_CONNECT
                          ? "frame length 0 or above 4 KiB before Connect"
                          : "frame length 0 or above the negotiated maximum");
            return;
        }
        handle_frame(t, c, body, len);
        conn_out_check(t, c);
    }
}

/* CLOSING: discard input until the peer closes (or the linger timer). */
static void conn_drain_input(struct iot *t, struct conn *c)
{
    uint8_t sink[4096];
    for (int i = 0; i < READS_PER_EVENT; i++) {
        ssize_t r = read(c->fd, sink, sizeof(sink));
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            conn_kill(t, c);
            return;
        }
        if (r < 0) {
            return;
        }
        stats_add(&t->stats.bytes_in, (uint64_t)r);
    }
}

/* Frames complete in buf[0..n) are handled in place; what remains (a partial
 * frame, or everything after a pause) goes to the connection's decoder. */
static void take_bytes(struct iot *t, struct conn *c, const uint8_t *buf, size_t n)
{
    size_t off = 0;
    if (frame_dec_pending(&c->dec) == 0) {
        while (n - off >= FRAME_HDR_LEN && c->state <= ST_OPEN && !c->is_paused &&
               !c->is_auth_pending) {
            uint32_t len = frame_hdr_get(buf + off);
            if (len == 0 || len > c->dec.max_len) {
                break; /* the decoder reports it, below */
            }
            if (n - off - FRAME_HDR_LEN < len) {
                break;
            }
            if (c->state == ST_OPEN && read_must_wait(t, c, buf + off + FRAME_HDR_LEN, len)) {
                break; /* paused: the rest goes to the decoder */
            }
            handle_frame(t, c, buf + off + FRAME_HDR_LEN, len);
            off += FRAME_HDR_LEN + (size_t)len;
            conn_out_check(t, c);
        }
    }
    if (off < n && c->state <= ST_OPEN) {
        if (frame_dec_feed(&c->dec, buf + off, n - off) == -ENOMEM) {
            conn_fail(t, c, FERRY__ERROR_CODE__ERROR_INTERNAL, "out of memory");
            return;
        }
        process_frames(t, c);
    }
}

/* Reads go into one per-thread buffer, so a busy connection gets many frames
 * per read(2) while an idle one holds no buffer at all. */
static void conn_on_readable(struct iot *t, struct conn *c)
{
    if (c->state == ST_CLOSING) {
        conn_drain_input(t, c);
        return;
    }
    for (int i = 0;
         i < READS_PER_EVENT && c->state <= ST_OPEN && !c->is_paused && !c->is_auth_pending; i++) {
        ssize_t r = read(c->fd, t->rbuf, READ_BUF);
        if (r == 0) {
            log_debug("client %llu %s: end of stream", (unsigned long long)c->client_id, c->peer);
            conn_kill(t, c);
            return;
        }
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN) {
                log_debug("client %llu %s: read: %s", (unsigned long long)c->client_id, c->peer,
                          strerror(errno));
                conn_kill(t, c);
            }
            break;
        }
        stats_add(&t->stats.bytes_in, (uint64_t)r);
        c->last_rx_ms = t->now;
        take_bytes(t, c, t->rbuf, (size_t)r);
        if ((size_t)r < READ_BUF) {
            break;
        }
    }
    if (c->state != ST_DEAD) {
        frame_dec_release_idle(&c->dec);
    }
}

/* ---- the loop ----------------------------------------------------------- */

static void take_mail(struct iot *t)
{
    static _Thread_local struct rmsg mail[IOT_TAKE];
    uint32_t n = mbox_take(&t->in, mail, IOT_TAKE, NULL);
    t->has_more_mail = n == IOT_TAKE;
    for (uint32_t i = 0; i < n; i++) {
        struct rmsg *m = &mail[i];
        switch (m->kind) {
        case R_NEW_CONN:
            conn_add(t, m->u.fd);
            break;
        case R_DELIVER:
            deliver(t, m);
            break;
        case R_PUBACK: {
            if (CONN_REF_SLOT(m->conn_ref) == CONS_DLQ_SLOT) {
                /* A dead letter (dur_dead_letter) refused before it reached a
                 * batch: its durable tries again. (One that was committed, or
                 * failed with its batch, the writer settled itself.) */
                if (t->srv->consumers != NULL && m->n_ids != 0) {
                    cons_dlq_done(t->srv->consumers, CONN_REF_GEN(m->conn_ref), m->u.ack.id, 0);
                }
                break;
            }
            struct conn *c = conn_by_ref(t, m->conn_ref);
            if (c && c->state == ST_OPEN) {
                Ferry__PubAck a = FERRY__PUB_ACK__INIT;
                a.id = m->u.ack.id;
                a.sequence = m->u.ack.seq; /* 0 on an ephemeral topic */
                a.code = (Ferry__ErrorCode)m->n_ids;
                a.text = (char *)(m->n_ids ? pub_err_text(m->n_ids) : "");
                Ferry__Frame f = FERRY__FRAME__INIT;
                f.body_case = FERRY__FRAME__BODY_PUB_ACK;
                f.pub_ack = &a;
                conn_send(t, c, &f);
            }
            break;
        }
        case R_PUBERR: {
            struct conn *c = conn_by_ref(t, m->conn_ref);
            if (c && c->state == ST_OPEN) {
                send_error(t, c, (int)m->n_ids, pub_err_text(m->n_ids), m->u.ack.id,
                           FERRY__ERROR__REF_KIND__REF_PUBLISH, 0);
            }
            break;
        }
        case R_SUB_READY: {
            struct conn *c = conn_by_ref(t, m->conn_ref);
            /* u.ack.id: the subscription's key (a reused sub_id must not
             * take an answer meant for its predecessor) */
            struct catchup *e = c && c->state == ST_OPEN ? cu_find_key(c, m->u.ack.id) : NULL;
            if (e && cu_is_root(e)) {
                /* A worker has the wildcard durable in its trie: what it
                 * committed before is in the store (see struct catchup). */
                if (e->is_started) {
                    wd_sync(t, c, e->sub);
                }
            } else if (e) {
                e->is_ready = 1;
                e->ready_seq = m->u.ack.seq;
                if (e->next_seq <= e->ready_seq) {
                    e->is_reading = 1;
                    cu_list(t, c);
                }
            }
            break;
        }
        case R_RAW: {
            struct conn *c = conn_by_ref(t, m->conn_ref);
            if (c && c->state == ST_OPEN) {
                conn_send_raw(t, c, m->u.raw.buf, m->u.raw.len);
            }
            free(m->u.raw.buf);
            break;
        }
        case R_AUTH:
            auth_answer(t, m);
            break;
        case R_PONG: {
            struct conn *c = conn_by_ref(t, m->conn_ref);
            if (c && c->state == ST_OPEN) {
                c->n_barriers--;
                send_pong(t, c, m->u.ack.id);
            }
            break;
        }
        case R_DETACH:
            admin_detach(t, m);
            break;
        default:
            break;
        }
    }
}

/* The auth file was reloaded: every connection takes the new table and
 * loses the subscriptions its rights no longer cover (an Error with the sub
 * id tells it). Its publishes and admin requests are checked against the new
 * rights from now on. */
static void auth_reload(struct iot *t)
{
    t->auth_gen = auth_holder_gen(&t->srv->auth);
    struct auth_table *cur = auth_holder_get(&t->srv->auth);
    if (cur == NULL) {
        return;
    }
    for (uint32_t k = 0; k < t->n_slots; k++) {
        struct conn *c = t->slots[k];
        if (c == NULL || c->state != ST_OPEN || c->auth == NULL || c->auth == cur) {
            continue;
        }
        const struct auth_principal *who = c->who ? auth_principal_find(cur, c->who->name) : NULL;
        if (c->who && who == NULL) {
            log_warn("client %llu %s: %s is no longer in the auth file: no rights left",
                     (unsigned long long)c->client_id, c->peer, c->who->name);
        }
        auth_table_ref(cur);
        auth_table_unref(c->auth);
        c->auth = cur;
        c->who = who;
        for (uint32_t i = c->n_subs; i-- > 0;) {
            struct trie_sub *sb = c->subs[i];
            if (may_subscribe(c, sb->pattern, sb->pattern_len)) {
                continue;
            }
            char text[352];
            snprintf(text, sizeof(text), "permission denied: subscribe %.*s (rights reloaded)",
                     (int)(sb->pattern_len > 256 ? 256 : sb->pattern_len), sb->pattern);
            uint64_t id = sb->sub_id;
            acl_denied(t, c, "subscribe (reload)", sb->pattern, sb->pattern_len);
            if (sub_remove_at(t, c, i) < 0) {
                conn_fail(t, c, FERRY__ERROR_CODE__ERROR_INTERNAL,
                          "out of memory removing a subscription the rights no longer allow");
                break;
            }
            send_error(t, c, FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED, text, id,
                       FERRY__ERROR__REF_KIND__REF_SUBSCRIPTION, 0);
        }
    }
    auth_table_unref(cur);
}

void iot_auth_done(void *ctx, uint64_t conn_ref, int rc, struct auth_table *at,
                   const struct auth_principal *who)
{
    struct server *s = ctx;
    struct rmsg m = {.kind = R_AUTH, .conn_ref = conn_ref, .n_ids = rc == 0 ? 0 : 1};
    m.u.auth.t = at;
    m.u.auth.who = who;
    uint32_t k = CONN_REF_IOT(conn_ref);
    if (k >= s->n_iot || mbox_post(iot_mbox(s->iots[k]), &m, 1) < 0) {
        auth_table_unref(at);
    }
}

static void resume_paused(struct iot *t)
{
    if (t->paused.n == 0 || t->n_deferred > 0) {
        return;
    }
    for (uint32_t w = 0; w < n_queues(t); w++) {
        if (t->wq[w].n >= WQ_PAUSE / 2) {
            return; /* still behind; a worker wakes us when it drains */
        }
    }
    uint32_t n = t->paused.n;
    t->paused.n = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct conn *c = t->paused.v[i];
        c->is_paused = 0;
        c->last_rx_ms = t->now; /* not read meanwhile: a new interval */
        if (c->state > ST_OPEN) {
            continue;
        }
        process_frames(t, c);
        if (!c->is_paused && c->state <= ST_OPEN) {
            set_events(t, c, c->events | EPOLLIN);
        }
    }
}

static void fire_timers(struct iot *t)
{
    const struct theap_ent *e;
    while ((e = theap_peek(&t->timers)) != NULL && e->when <= t->now) {
        struct conn *c = e->data;
        theap_remove(&t->timers, &c->timer_pos);
        switch (c->state) {
        case ST_AWAIT_CONNECT:
            if (c->is_auth_failed) {
                conn_fail(t, c, FERRY__ERROR_CODE__ERROR_AUTH_FAILED, "authentication failed");
            } else {
                conn_fail(t, c, FERRY__ERROR_CODE__ERROR_AUTH_TIMEOUT,
                          c->is_auth_pending ? "credentials not checked in time (server busy)"
                                             : "Connect did not arrive in time");
            }
            break;
        case ST_OPEN: {
            uint64_t limit = (uint64_t)c->keepalive_ms * 3 / 2;
            if (c->is_paused || !(c->events & EPOLLIN)) {
                /* We are not reading it (backpressure, a held SubAck,
                 * draining): its silence is ours. It gets a whole interval
                 * from when reading resumes. */
                c->last_rx_ms = t->now;
            }
            if (t->now - c->last_rx_ms >= limit) {
                conn_fail(t, c, FERRY__ERROR_CODE__ERROR_KEEPALIVE_TIMEOUT,
                          "nothing received within 1.5 x keepalive");
            } else {
                arm_timer(t, c, c->last_rx_ms + limit);
            }
            break;
        }
        case ST_CLOSING:
            conn_kill(t, c);
            break;
        default:
            break;
        }
    }
}

static void end_round(struct iot *t)
{
    for (uint32_t i = 0; i < t->dirty.n; i++) {
        struct conn *c = t->dirty.v[i];
        c->is_dirty = 0;
        conn_flush(t, c);
    }
    t->dirty.n = 0;
    t->n_stage = 0;
    t->pfx_len = 0;
    fire_timers(t);
    /* Timers may have queued Errors: flush those too. */
    for (uint32_t i = 0; i < t->dirty.n; i++) {
        struct conn *c = t->dirty.v[i];
        c->is_dirty = 0;
        conn_flush(t, c);
    }
    t->dirty.n = 0;
    t->n_stage = 0;
    t->pfx_len = 0;
    /* Paused connections that died must leave the paused list first. */
    if (t->dead.n) {
        uint32_t k = 0;
        for (uint32_t i = 0; i < t->paused.n; i++) {
            if (t->paused.v[i]->state != ST_DEAD) {
                t->paused.v[k++] = t->paused.v[i];
            }
        }
        t->paused.n = k;
        k = 0;
        for (uint32_t i = 0; i < t->cu_conns.n; i++) {
            if (t->cu_conns.v[i]->state != ST_DEAD) {
                t->cu_conns.v[k++] = t->cu_conns.v[i];
            }
        }
        t->cu_conns.n = k;
        k = 0;
        for (uint32_t i = 0; i < t->dur_conns.n; i++) {
            if (t->dur_conns.v[i]->state != ST_DEAD) {
                t->dur_conns.v[k++] = t->dur_conns.v[i];
            }
        }
        t->dur_conns.n = k;
        for (uint32_t i = 0; i < t->dead.n; i++) {
            free(t->dead.v[i]);
        }
        t->dead.n = 0;
    }
}

static int pending_to_workers(const struct iot *t)
{
    for (uint32_t w = 0; w < n_queues(t); w++) {
        if (t->wq[w].n || t->wq[w].cur) {
            return 1;
        }
    }
    return 0;
}

/* Decide whether this round takes deliveries (see struct iot, Stalls). */
static int should_stall(struct iot *t, int phase)
{
    if (t->n_heavy == 0) {
        t->stall_since = 0;
        t->is_stall_spent = 0;
        return 0;
    }
    if (phase != PHASE_RUN || t->is_stall_spent) {
        return 0;
    }
    if (t->stall_since == 0) {
        t->stall_since = t->now;
    }
    if (t->now - t->stall_since >= STALL_MAX_MS) {
        t->is_stall_spent = 1;
        log_debug("IO thread %u: %u subscribers still lagging after %u ms of stalls", t->index,
                  t->n_heavy, STALL_MAX_MS);
        return 0;
    }
    return 1;
}

static void mute_mail(struct iot *t, int mute)
{
    if (mute == t->is_mail_muted) {
        return;
    }
    struct epoll_event ev = {.events = mute ? 0 : EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(t->ep, EPOLL_CTL_MOD, mbox_fd(&t->in), &ev) == 0) {
        t->is_mail_muted = mute;
    }
}

static int epoll_timeout(struct iot *t)
{
    if (t->is_mail_muted) {
        /* Stalled: wake for EPOLLOUT of the laggards, or the budget's end. */
        uint64_t spent = now_ms() - t->stall_since;
        int timeout = spent >= STALL_MAX_MS ? 0 : (int)(STALL_MAX_MS - spent);
        const struct theap_ent *e = theap_peek(&t->timers);
        if (e) {
            uint64_t now = now_ms();
            int d = e->when <= now ? 0 : (int)(e->when - now > INT_MAX ? INT_MAX : e->when - now);
            timeout = d < timeout ? d : timeout;
        }
        return timeout;
    }
    if (t->has_more_mail) {
        return 0;
    }
    if (atomic_load(&t->srv->phase) == PHASE_RUN && cu_has_work(t)) {
        return 0;
    }
    int timeout = -1;
    if (pending_to_workers(t)) {
        timeout = 1; /* a worker was full; it wakes us, this is a backstop */
    }
    const struct theap_ent *e = theap_peek(&t->timers);
    if (e) {
        uint64_t now = now_ms();
        int d = e->when <= now ? 0 : (int)(e->when - now > INT_MAX ? INT_MAX : e->when - now);
        if (timeout < 0 || d < timeout) {
            timeout = d;
        }
    }
    if (t->dur_conns.n > 0 && (timeout < 0 || timeout > (int)DUR_SCAN_MS)) {
        timeout = DUR_SCAN_MS; /* redelivery deadlines */
    }
    if (t->paused.n > 0 && (timeout < 0 || timeout > 1)) {
        timeout = 1; /* resume_paused() runs before the flush that may list one */
    }
    if (atomic_load(&t->srv->phase) == PHASE_CLOSE && timeout < 0) {
        timeout = 50;
    }
    return timeout;
}

/* PHASE_DRAIN: stop reading everyone, once. PHASE_CLOSE: say goodbye. */
static int enter_phase(struct iot *t, int phase, int seen)
{
    if (phase == seen) {
        return seen;
    }
    for (uint32_t i = 0; i < t->n_slots; i++) {
        struct conn *c = t->slots[i];
        if (c == NULL || c->state == ST_DEAD) {
            continue;
        }
        if (phase >= PHASE_DRAIN) {
            set_events(t, c, c->events & ~(uint32_t)EPOLLIN);
        }
        if (phase == PHASE_CLOSE) {
            if (c->state == ST_OPEN) {
                send_error(t, c, FERRY__ERROR_CODE__ERROR_SHUTTING_DOWN, "server shutting down", 0,
                           FERRY__ERROR__REF_KIND__REF_NONE, 1);
            }
            conn_close_after_flush(t, c);
        }
    }
    return phase;
}

static void *iot_main(void *arg)
{
    struct iot *t = arg;
    struct epoll_event evs[IOT_EVENTS];
    int seen_phase = PHASE_RUN;
    uint64_t close_deadline = 0;
    for (;;) {
        int n = epoll_wait(t->ep, evs, IOT_EVENTS, epoll_timeout(t));
        t->now = now_ms();
        t->now_ns = now_realtime_ns();
        int phase = atomic_load(&t->srv->phase);
        int has_mail = t->has_more_mail;
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == NULL) {
                has_mail = 1;
                continue;
            }
            if (c->state == ST_DEAD) {
                continue;
            }
            if (evs[i].events & (EPOLLOUT | EPOLLERR)) {
                c->is_writable = 1;
                mark_dirty(t, c);
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                if ((c->events & EPOLLIN) && (!c->is_paused || c->state == ST_CLOSING)) {
                    conn_on_readable(t, c);
                } else if (evs[i].events & (EPOLLHUP | EPOLLERR) && !(evs[i].events & EPOLLOUT)) {
                    conn_kill(t, c);
                }
            }
        }
        if (should_stall(t, phase)) {
            mute_mail(t, 1);
        } else {
            if (t->is_mail_muted) {
                mute_mail(t, 0);
                has_mail = 1; /* whatever queued meanwhile */
            }
            if (has_mail) {
                take_mail(t);
            }
            if (t->srv->auth_pool && auth_holder_gen(&t->srv->auth) != t->auth_gen) {
                auth_reload(t);
            }
            if (phase == PHASE_CLOSE && seen_phase != PHASE_CLOSE) {
                /* The writer and workers have stopped: take every PubAck they
                 * posted before saying goodbye. */
                while (t->has_more_mail) {
                    take_mail(t);
                }
            }
        }
        wq_flush_all(t);
        send_deferred(t);
        if (phase == PHASE_RUN) {
            resume_paused(t);
            wq_flush_all(t);
            send_deferred(t);
            cu_pump_all(t);
            dur_scan_all(t);
            wq_flush_all(t); /* dead letters */
        }
        seen_phase = enter_phase(t, phase, seen_phase);
        if (phase >= PHASE_DRAIN && !pending_to_workers(t)) {
            atomic_store(&t->is_drained, 1);
        }
        end_round(t);
        if (phase == PHASE_CLOSE) {
            if (close_deadline == 0) {
                close_deadline = t->now + t->srv->cfg.shutdown_ms;
            }
            uint64_t open = atomic_load_explicit(&t->stats.conns, memory_order_relaxed);
            if (open == 0 || t->now >= close_deadline) {
                break;
            }
        }
    }
    for (uint32_t i = 0; i < t->n_slots; i++) {
        if (t->slots[i]) {
            conn_kill(t, t->slots[i]);
        }
    }
    end_round(t);
    return NULL;
}

/* ---- life cycle --------------------------------------------------------- */

struct iot *iot_create(struct server *s, uint32_t index)
{
    struct iot *t = aligned_alloc(64, (sizeof(*t) + 63) & ~(size_t)63);
    if (t == NULL) {
        return NULL;
    }
    memset(t, 0, sizeof(*t));
    t->srv = s;
    t->index = index;
    t->ep = -1;
    theap_init(&t->timers);
    codec_arena_init(&t->arena);
    t->wq = calloc(s->n_workers + 1, sizeof(*t->wq));
    t->iov = calloc(IOV_MAX, sizeof(*t->iov));
    t->rbuf = malloc(READ_BUF);
    t->cu_hdr = calloc(MAX_HEADERS, sizeof(*t->cu_hdr));
    t->cu_hdrp = calloc(MAX_HEADERS, sizeof(*t->cu_hdrp));
    t->dsubs = calloc(s->cfg.max_subs ? s->cfg.max_subs : 1, sizeof(*t->dsubs));
    if (t->wq == NULL || t->iov == NULL || t->rbuf == NULL || t->cu_hdr == NULL ||
        t->cu_hdrp == NULL || t->dsubs == NULL) {
        goto out_free;
    }
    if (mbox_init(&t->in, sizeof(struct rmsg), IOT_MBOX_CAP, 1) < 0) {
        goto out_free;
    }
    t->ep = epoll_create1(EPOLL_CLOEXEC);
    if (t->ep < 0) {
        goto out_mbox;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(t->ep, EPOLL_CTL_ADD, mbox_fd(&t->in), &ev) < 0) {
        goto out_ep;
    }
    return t;

out_ep:
    close(t->ep);
out_mbox:
    mbox_deinit(&t->in);
out_free:
    free(t->wq);
    free(t->iov);
    free(t->rbuf);
    free(t->cu_hdr);
    free(t->cu_hdrp);
    free(t->dsubs);
    free(t);
    return NULL;
}

int iot_start(struct iot *t)
{
    int rc = pthread_create(&t->thread, NULL, iot_main, t);
    if (rc != 0) {
        return -rc;
    }
    t->is_started = 1;
    return 0;
}

void iot_join(struct iot *t)
{
    if (t->is_started) {
        pthread_join(t->thread, NULL);
        t->is_started = 0;
    }
}

void iot_destroy(struct iot *t)
{
    if (t == NULL) {
        return;
    }
    struct rmsg m;
    while (mbox_take(&t->in, &m, 1, NULL) == 1) {
        if (m.kind == R_NEW_CONN) {
            close(m.u.fd);
        } else if (m.kind == R_DELIVER) {
            if (m.n_ids > RMSG_INLINE_IDS) {
                free(m.u.ext_ids);
            }
            pub_batch_unref(m.batch);
        } else if (m.kind == R_RAW) {
            free(m.u.raw.buf);
        } else if (m.kind == R_AUTH) {
            auth_table_unref(m.u.auth.t);
        }
    }
    for (uint32_t w = 0; w < n_queues(t); w++) {
        struct wq *q = &t->wq[w];
        for (uint32_t i = 0; i < q->n; i++) {
            if (q->m[i].kind == W_PUB_BATCH) {
                pub_batch_unref(q->m[i].p);
            } else if (q->m[i].kind == W_BARRIER || q->m[i].kind == W_TOPIC_INFO) {
                free(q->m[i].p);
            } else {
                trie_sub_unref(q->m[i].p);
            }
        }
        if (q->cur) {
            pub_batch_unref(q->cur);
        }
        free(q->m);
    }
    free(t->wq);
    free(t->iov);
    free(t->rbuf);
    free(t->slots);
    free(t->gens);
    free(t->free_slots);
    free(t->pfx);
    free(t->stage);
    free(t->dirty.v);
    free(t->paused.v);
    free(t->dead.v);
    free(t->deferred);
    free(t->cu_conns.v);
    free(t->dur_conns.v);
    free(t->cu_hdr);
    free(t->cu_hdrp);
    free(t->dsubs);
    free(t->cu_text);
    theap_deinit(&t->timers);
    codec_arena_deinit(&t->arena);
    close(t->ep);
    mbox_deinit(&t->in);
    free(t);
}

struct mbox *iot_mbox(struct iot *t)
{
    return &t->in;
}

struct stats *iot_stats(struct iot *t)
{
    return &t->stats;
}

void iot_committed(struct iot *t, uint32_t serial)
{
    atomic_store(&t->committed_serial, serial);
    if (atomic_exchange(&t->is_commit_wanted, 0)) {
        mbox_wake(&t->in);
    }
}

int iot_is_drained(struct iot *t)
{
    return atomic_load(&t->is_drained);
}

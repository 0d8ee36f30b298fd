/*
 * io_int.h - what the IO thread's files share (private to broker/).
 *
 * The IO reactor is one module in several files, one concern each:
 *   io_thread.c   slots, the mailbox, rounds, the loop, life cycle (iot_)
 *   conn.c        a connection: events, timer, read, frames, pause, close (conn_)
 *   conn_out.c    its output: staged deliveries, buffer, replies, flush (conn_)
 *   conn_tls.c    a TLS connection's handshake (conn_)
 *   conn_hold.c   cluster mode: a frame waiting for its topic's placement (conn_)
 *   deliver.c     routed messages staged to their subscribers (deliver_)
 *   catchup.c     positions on stored topics: catch-up, durables (cu_)
 *   handle_*.c    one file per client message (handle_)
 *   mqtt_conn.c,  an MQTT connection: packets to handlers, answers to packets
 *   mqtt_out.c    (mqtt_conn_; what they share: mqtt_int.h)
 * Every structure here belongs to one IO thread and is touched by it only,
 * unless its comment says otherwise.
 */
#ifndef FERRY_IO_INT_H
#define FERRY_IO_INT_H

#include "acceptor.h"
#include "acl.h"
#include "auth.h"
#include "cluster.h"
#include "codec.h"
#include "consumer.h"
#include "ferry.h"
#include "io_thread.h"
#include "log.h"
#include "login.h"
#include "reactor.h"
#include "store.h"
#include "tls.h"
#include "topic.h"
#include "trie.h"
#include "worker.h"
#include "writer.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifndef FERRY_VERSION
#define FERRY_VERSION "0.0.0"
#endif

#define IOT_MBOX_CAP 4096u
#define IOT_TAKE 1024u
#define IOT_EVENTS 256
#define READ_BUF 65536u
#define READS_PER_EVENT 4
#define TLS_READS_PER_EVENT 16 /* a TLS read returns one record (16 KiB at most) */
#define BATCH_CAP 65536u
#define WQ_PAUSE 8u             /* unposted items to one worker that pause publishers */
#define PRE_CONNECT_MAX 4096u   /* frame limit before Connect (ferry.proto) */
#define CLOSE_LINGER_MS 2000u   /* bound on flushing a connection we close */
#define STALL_MAX_MS 200u       /* per episode of lagging subscribers, see struct iot */
#define DUR_SCAN_MS 20u         /* durable consumers: redelivery deadlines checked this often */
#define DUR_DUE_MAX 64u         /* redeliveries per durable subscription per scan */
#define CLU_PLACE_WAIT_MS 1000u /* cluster mode: the wait for a new topic's placement */

enum conn_state { ST_AWAIT_CONNECT = 0, ST_OPEN, ST_CLOSING, ST_DEAD };

struct conn {
    int fd;
    struct tls_conn *tls; /* TLS session (tls.h), or NULL: plain TCP (the hot path) */
    uint32_t slot;
    uint32_t gen;
    uint8_t state;         /* enum conn_state */
    uint8_t is_dirty;      /* in t->dirty this round */
    uint8_t is_paused;     /* not read: a worker queue is full, or is_out_paused */
    uint8_t is_out_paused; /* not read: its replies fill half its outbound bound */
    uint8_t is_slow_logged;
    uint8_t is_heavy;          /* counted in t->n_heavy: over half its outbound bound */
    uint8_t is_writable;       /* RX_WRITE reported this round */
    uint8_t is_wr_shut;        /* CLOSING: our FIN is sent, waiting for the peer's */
    uint8_t is_auth_pending;   /* input is not read: Connect waits for the login gate
                                * or the auth pool, an MQTT CONNECT for its session's
                                * takeover, or hold_frame for its topic's placement */
    uint8_t is_unauth_counted; /* counted by the login gate as not logged in yet */
    uint8_t tls_hs;            /* TLS handshake: 0 done (or plain), 1 under way, 2 not begun */
    uint8_t addr[16];          /* the peer's address, the login gate's key */
    uint64_t connect_deadline; /* ms: Connect and its check must be done by then */
    struct login_turn *turn;   /* the login in progress (handle_connect.c), or NULL */
    uint32_t events;           /* RX_* watched now */
    uint32_t keepalive_ms;
    struct rx_io io;       /* fd's watcher in t->rx: conn_on_io */
    struct rx_timer timer; /* Connect deadline, keepalive, close linger: conn_on_timer */
    int32_t stage_head;    /* this round's staged deliveries, or -1 */
    int32_t stage_tail;
    uint32_t stage_bytes; /* bytes staged this round (not in out yet) */
    struct frame_dec dec;
    uint8_t *out;                     /* replies and unwritten deliveries; NULL when drained */
    size_t out_off, out_len, out_cap; /* pending bytes: out[out_off .. out_len) */
    /* The first frame boundary at or after out_off: out[out_frame ..
     * out_len) are whole frames, none of them begun on the wire (before
     * it: the rest of a frame partly written). */
    size_t out_frame;
    struct trie_sub **subs; /* sorted by key (keys grow: Subscribe appends) */
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
    struct mqtt_sess *mq;             /* an MQTT connection's state (mqtt_conn.c), or NULL: ferry */
    /* Cluster mode: the frame that waits for its topic's placement
     * (conn_hold.c; malloc'd), or NULL; handled again by hold_deadline (ms). */
    uint8_t *hold_frame;
    uint32_t hold_len;
    uint64_t hold_deadline;
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
 *     reading resumes. A live message is durable (in the store's log)
 *     before it is routed, and readable once the writer has committed it,
 *     which a read waits for (server.h, struct store_gens), so whatever is
 *     dropped is read from the store.
 * The seam: once the owning worker has the subscription in its trie, every
 * message routed later reaches it live. The worker says so (R_SUB_READY);
 * then the store is read from next_seq up to its end, as soon as everything
 * routed so far is readable. From then on live delivery brings every later
 * message, in order, so the subscriber sees each sequence exactly once,
 * with no gap at the seam, whatever publishers do meanwhile. Nothing is
 * delivered before the SubAck is out (is_started).
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
 * topic arrives (cu_wd_position), and by cu_wd_sync, which lists the matching
 * stored topics after the SubAck and again as each worker answers that the
 * subscription is in its trie (that listing waits until what was routed is
 * readable): a message routed before the last answer is in the store when
 * the listing reads it, and any later one is routed live, so no topic is
 * missed at the seam.
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
    uint32_t topic_id;      /* 0: not resolved yet (topic never stored) */
    uint8_t is_started;     /* the SubAck is out */
    uint8_t is_reading;     /* the store may hold messages from next_seq on */
    uint8_t is_wd_sync_due; /* a wildcard root: list its topics (cu_wd_sync) once
                             * the store is readable */
    /* START_LAST_PER_KEY: while set, next_seq walks the topic's current
     * values (store_lastval_read) up to lv_upto, the last sequence when the
     * Subscribe was handled; live messages are all dropped meanwhile (they
     * are stored). Then next_seq = lv_upto + 1 and it reads on like any. */
    uint8_t is_lastval;
    uint64_t lv_upto;
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
    atomic_int is_drained;      /* atomic: this thread writes, main reads */
    struct commit_mark *commit; /* &srv->commit[index]: the writer's word to us */
    struct mbox in;             /* acceptor and workers -> this thread */
    /* Everything below: this IO thread only. */
    struct rx *rx; /* this thread's descriptors (reactor.h) */
    /* --reactor single-pool and single (thread 0): the acceptor runs in this
     * loop (acc_embed); single: so does worker 0 (worker_run_inline). */
    struct worker *inline_worker;
    struct rsink local;    /* its results for us (mail_handle), at once */
    int has_more_route;    /* the inline worker's mailbox may hold more */
    struct rx_io mail_io;  /* the mailbox's eventfd */
    struct rx_io route_io; /* the inline worker's mailbox's eventfd */
    /* This round (set by the after-sleep hook, read by the before-sleep one) */
    int round_phase;         /* srv->phase at its start */
    int round_mail;          /* the mailbox may hold mail */
    int round_route;         /* the inline worker's mailbox may hold mail */
    int seen_phase;          /* the last phase entered (enter_phase) */
    uint64_t close_deadline; /* PHASE_CLOSE: give up on goodbyes at, ms; 0: unset */
    struct conn **slots;     /* by slot; NULL = free */
    uint32_t *gens;          /* generation of each slot */
    uint32_t n_slots;
    uint32_t *free_slots;
    uint32_t n_free;
    struct codec_arena arena;
    struct wq *wq; /* by worker */
    uint8_t *pfx;  /* this round's Deliver prefixes */
    size_t pfx_len, pfx_cap;
    struct stage *stage;
    uint32_t n_stage, stage_cap;
    struct ptrvec dirty, paused, dead;
    struct deferred_ack *deferred; /* SubAcks waiting for a worker queue */
    uint32_t n_deferred, deferred_cap;
    struct ptrvec cu_conns;   /* connections with catch-up subscriptions reading */
    struct ptrvec dur_conns;  /* connections holding durable consumers */
    uint64_t next_dur_scan;   /* monotonic ms */
    struct codec_hdr *cu_hdr; /* CODEC_MAX_HEADERS: a stored message's headers */
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
    int is_mail_muted;       /* mailbox eventfd not watched (stalled) */
    int is_read_gated;       /* store reads wait for the writer's commit (this round) */
    unsigned auth_gen;       /* the auth table generation our connections use */
    uint64_t next_sub_key;   /* the last trie_sub.key handed out */
    uint32_t pub_serial;     /* the last pub_rec.serial handed out */
    struct trie_sub **dsubs; /* deliver_routed() scratch: cfg.max_subs entries */
    /* A hot backup's chunks queued on one of our connections and not yet
     * credited back to the backup thread (handle_backup.c). */
    uint64_t backup_ref;  /* that connection */
    uint32_t backup_gen;  /* that backup's number (backup.h) */
    uint32_t backup_owed; /* chunks owed; 0: none */
    /* The frame iot_handle_frame() handles now, and its connection (NULL
     * between frames): what conn_hold.c keeps. replaying: the connection
     * whose held frame is handled again. */
    const uint8_t *frame;
    size_t frame_len;
    struct conn *frame_conn, *replaying;
    /* Connections holding a frame (conn_hold.c), by reference; stale ones
     * are dropped as met. held_gen: the placement generation last acted on. */
    uint64_t *held;
    uint32_t n_held, held_cap;
    uint64_t held_gen;
};

/* A Publish, wherever it was decoded from. Pointers are valid for the call. */
/* A login through the gate and the auth pool (handle_connect.c). Made by
 * handle_connect; until submitted it holds copies of the credentials (wiped
 * when freed). Once submitted, the pool's answer (R_AUTH) frees it, whether
 * the connection still exists or not: a connection that closes first only
 * sets is_cancelled and forgets it. */
struct login_turn {
    /* atomic: the IO thread sets it when the connection closes; an auth
     * pool thread reads it before checking */
    atomic_int is_cancelled;
    uint8_t addr[16];
    char name[AUTH_NAME_MAX + 1]; /* user or token name: the gate counts it */
    char *username, *password, *token;
    uint8_t has_turn;     /* the gate gave this login its address's turn */
    uint8_t is_submitted; /* with the auth pool */
};

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
    uint64_t producer_id; /* idempotent publishing; 0: none */
    uint64_t producer_seq;
    const char *reply_to; /* Publish.reply_to; NULL or "": none (full decoder only) */
    size_t reply_to_len;
    int64_t deliver_at;  /* Publish.deliver_at (full decoder only); 0: now */
    uint64_t ttl_ms;     /* Publish.ttl_ms (full decoder only); 0: never expires */
    uint8_t is_internal; /* the broker's own (MQTT retained: mqtt_retain.h): no ACL */
};

/* ---- conn.c ------------------------------------------------------------ */

/* An ACL refusal: counted and logged (the first few); the caller answers. */
void conn_acl_denied(struct iot *t, struct conn *c, const char *what, const char *name,
                     size_t name_len);
/* c's one timer (keepalive, Connect deadline, close linger) fires at when (ms). */
void conn_timer_arm(struct iot *t, struct conn *c, uint64_t when);
/* A new socket from the acceptor (R_NEW_CONN): a slot, the reactor set,
 * the Connect deadline. flags: R_NEW_CONN_COUNTED (the acceptor counted it
 * as not logged in: login_unauth_enter), R_NEW_CONN_TLS (from the TLS
 * listener: the handshake comes first). */
void conn_add(struct iot *t, int fd, uint32_t flags);
/* The connection a CONN_REF names, if it is still this one (slot + generation). */
struct conn *conn_by_ref(struct iot *t, uint64_t ref);
/* Stop reading, flush what is queued (bounded by CLOSE_LINGER_MS), close. */
void conn_close_after_flush(struct iot *t, struct conn *c);
/* Send a fatal Error, then close after the flush. */
void conn_fail(struct iot *t, struct conn *c, int wire_code, const char *text);
/* Write staged deliveries and queued output with one writev; keep what is left. */
void conn_flush(struct iot *t, struct conn *c);
/* Close at once; freed at the end of the round (never inside a callback). */
void conn_kill(struct iot *t, struct conn *c);
/* Free a killed connection's memory (the end of the round). */
void conn_free(struct conn *c);
void conn_lost_output(struct iot *t, struct conn *c, const char *what);
/* Read what the socket has (READS_PER_EVENT reads at most) and handle its frames. */
void conn_on_readable(struct iot *t, struct conn *c);
/* One step of a TLS connection's handshake (conn_tls.c): is it TLS at all,
 * then as far as the socket allows; done: reading starts. */
void conn_tls_step(struct iot *t, struct conn *c);
/* rx_run's callbacks for a connection's descriptor and its timer. */
void conn_on_io(struct rx *r, struct rx_io *io, uint32_t events);
/* The connection logged in, or closed: it no longer counts as waiting for
 * its login (login_unauth_leave). */
void conn_unauth_leave(struct iot *t, struct conn *c);
void conn_on_timer(struct rx *r, struct rx_timer *tm);
/* Stop reading c until iot_resume_paused() finds the reason gone. */
void conn_pause(struct iot *t, struct conn *c);
/* Queue a frame after anything staged or queued for c (order kept). */
void conn_send(struct iot *t, struct conn *c, const Ferry__Frame *f);
/* Take subscription sub_id out of every delivery queued on c and not begun
 * on the wire (staged or buffered): a delivery for it alone is dropped.
 * Returns how many deliveries were dropped. */
uint32_t conn_drop_deliveries(struct iot *t, struct conn *c, uint64_t sub_id);
/* Queue a Deliver frame: its prefix (codec_deliver_prefix, pl bytes), then
 * the body of d (body_len bytes, codec_deliver_body_len), written straight
 * into c's buffer. */
void conn_send_deliver(struct iot *t, struct conn *c, const uint8_t *pfx, size_t pl,
                       const struct codec_deliver *d, size_t body_len);
void conn_send_raw(struct iot *t, struct conn *c, const uint8_t *p, size_t n);
void conn_heavy_update(struct iot *t, struct conn *c);
void conn_mark_dirty(struct iot *t, struct conn *c);
int conn_may_publish(const struct conn *c, const char *topic, size_t len);
int conn_may_subscribe(const struct conn *c, const char *pattern, size_t len);
void conn_out_append(struct conn *c, const void *p, size_t n);
size_t conn_out_pending(const struct conn *c);
int conn_out_reserve(struct conn *c, size_t n);
/* Free c's output buffer (conn_out.c; a closed connection's, or a drained one). */
void conn_out_release(struct conn *c);
/* Copy c's staged deliveries into its buffer, behind what is there: before
 * anything is written to the buffer directly, to keep the order. */
void conn_unstage(struct iot *t, struct conn *c);
/* Must c's next request wait until its stored publications are committed
 * and routed (conn.c, read_must_wait)? 1: it waits, paused; 0: go on. */
int conn_wait_stored(struct iot *t, struct conn *c);
/* Replies fill half c's outbound bound: stop reading it until they drain. */
void conn_out_check(struct iot *t, struct conn *c);
/* Handle the complete frames in c's decoder until one pauses it. */
void conn_process_frames(struct iot *t, struct conn *c);
/* Append c to a list of connections (0, or -ENOMEM). */
int conn_list_push(struct ptrvec *p, struct conn *c);
/* The CONN_REF other threads use to name c (server.h). */
uint64_t conn_ref_of(const struct iot *t, const struct conn *c);
void conn_send_error(struct iot *t, struct conn *c, int wire_code, const char *text,
                     uint64_t ref_id, Ferry__Error__RefKind kind, int is_fatal);
void conn_set_events(struct iot *t, struct conn *c, uint32_t events);
/* Stop or start reading c (Connect with the auth pool, and its answer). */
/* conn_hold.c - cluster mode: a frame whose topic is not placed yet waits,
 * its connection unread, instead of blocking the thread. */
/* May this broker serve topic (a concrete name) for c? CLU_SERVE; the
 * refusal (text and owner filled, as clu_route); or CLU_PENDING: the frame
 * being handled is held, nothing is to be sent for it now: it is handled
 * again once the topic is placed, or at its deadline (then refused). */
enum clu_verdict conn_clu_route(struct iot *t, struct conn *c, const char *topic, size_t len,
                                char *text, size_t text_cap, char *owner, size_t owner_cap);
/* Before sleeping: hand the held frames back if placements came. */
void conn_held_poll(struct iot *t);
/* c's timer, while it holds a frame: its deadline. */
void conn_held_expire(struct iot *t, struct conn *c);
/* conn_kill: forget the held frame (before c's slot is freed). */
void conn_held_drop(struct iot *t, struct conn *c);
void conn_read_stop(struct iot *t, struct conn *c);
void conn_read_start(struct iot *t, struct conn *c);
/* c has output the socket did not take, and waits to be writable. */
int conn_is_write_waiting(const struct conn *c);
/* c is past max_outbound_bytes: an Error, then closed. */
void conn_slow_consumer(struct iot *t, struct conn *c);

/* ---- catchup.c --------------------------------------------------------- */

/* Live delivery against c's positions: keeps in ids those that take it now. */
uint32_t cu_filter(struct iot *t, struct conn *c, uint64_t *ids, uint32_t n, const uint8_t *body,
                   uint32_t body_len);
struct catchup *cu_find(struct conn *c, uint64_t sub_id);
struct catchup *cu_find_key(struct conn *c, uint64_t key);
int cu_has_work(const struct iot *t);
int cu_is_root(const struct catchup *e);
void cu_list(struct iot *t, struct conn *c);
/* Read the store for every listed connection with room (bounded per round). */
void cu_pump_all(struct iot *t);
void cu_remove(struct conn *c, uint64_t sub_id);
/* The SubAck of sub_id is out: start its position (read the store, bind). */
void cu_start(struct iot *t, struct conn *c, uint64_t sub_id);
void cu_unbind(struct iot *t, struct conn *c, uint64_t sub_id);
void cu_dur_dead_letter(struct iot *t, struct conn *c, struct catchup *e, const struct cons_due *d);
void cu_dur_list(struct iot *t, struct conn *c);
/* Durable consumers: redeliver what passed its ack wait, dead-letter, take. */
void cu_dur_scan_all(struct iot *t);
/* Live delivery to lagging wildcard subscriptions (struct wcu). */
uint32_t cu_wild_filter(struct iot *t, struct conn *c, uint64_t *ids, struct trie_sub **subs,
                        uint32_t n, const uint8_t *body, uint32_t body_len);
void cu_wild_remove_sub(struct conn *c, const struct trie_sub *sub);
struct catchup *cu_wd_position(struct iot *t, struct conn *c, struct trie_sub *s, const char *topic,
                               size_t len, int is_create);
void cu_wd_sync(struct iot *t, struct conn *c, struct trie_sub *s);

/* ---- handle_ack.c ------------------------------------------------------ */

void handle_ack(struct iot *t, struct conn *c, Ferry__Ack *m);

/* ---- deliver.c --------------------------------------------------------- */

/* A routed message from a worker: filtered, then staged for each connection. */
void deliver_routed(struct iot *t, struct rmsg *m);
/* A Deliver over c's negotiated frame size: the subscriptions get an Error (1). */
int deliver_too_large(struct iot *t, struct conn *c, const uint64_t *ids, uint32_t n, uint64_t seq,
                      size_t frame_len);
/* Room for a staged delivery's prefix of up to max bytes, at the end of
 * t->pfx (valid until the next call); NULL: no memory. */
uint8_t *deliver_pfx_room(struct iot *t, size_t max);
/* Stage for c the pl bytes just written at deliver_pfx_room()'s pointer,
 * then bytes [off, off + len) of b, written by reference when c is
 * flushed; the stage takes over one reference on b from the caller (on
 * success only). 0, or -ENOMEM. */
int deliver_stage(struct iot *t, struct conn *c, size_t pl, struct pub_batch *b, uint32_t off,
                  uint32_t len);

/* ---- io_thread.c ------------------------------------------------------- */

/* One frame of an open (or connecting) connection, by its type. */
void iot_handle_frame(struct iot *t, struct conn *c, const uint8_t *body, size_t len);
uint32_t iot_n_queues(const struct iot *t);
/* A trie change (W_SUB_ADD, W_SUB_DEL) for every worker, in each queue's order. */
int iot_post_sub_change(struct iot *t, uint32_t kind, struct trie_sub *s);
void iot_resume_paused(struct iot *t);
/* Post what is queued for worker w (or the writer at n_workers) if it has room. */
void iot_wq_flush(struct iot *t, uint32_t w);
int iot_wq_push(struct wq *q, struct wmsg m);
int iot_wq_reserve(struct wq *q);
/* Close the batch being filled for worker w, so that the next item starts one. */
void iot_wq_seal(struct iot *t, uint32_t w);

/* ---- handle_connect.c -------------------------------------------------- */

/* The auth pool's answer to a Connect. */
void handle_auth_answer(struct iot *t, struct rmsg *m);
/* The timer of a connection whose login waits for the gate: try again. */
void handle_login_step(struct iot *t, struct conn *c);
/* A connection with a login in progress closes (conn_kill). */
void handle_login_abandon(struct iot *t, struct conn *c);
void handle_login_turn_free(struct login_turn *turn);
void handle_connect(struct iot *t, struct conn *c, Ferry__Connect *m);
void handle_ping(struct iot *t, struct conn *c, uint64_t nonce);
/* The Pong of a Ping whose Acks the writer has stored (barrier released). */
void handle_pong_send(struct iot *t, struct conn *c, uint64_t nonce);

/* ---- handle_subscribe.c ------------------------------------------------ */

int handle_subscribe_find(const struct conn *c, uint64_t sub_id);
void handle_subscribe(struct iot *t, struct conn *c, Ferry__Subscribe *m);
void handle_unsubscribe(struct iot *t, struct conn *c, Ferry__Unsubscribe *m);
/* SubAcks held for a full worker queue: sent once the change is queued. */
void handle_subscribe_send_deferred(struct iot *t);
/* Remove c->subs[i]: the workers, its position, its durable binding. */
int handle_subscribe_remove_at(struct iot *t, struct conn *c, uint32_t i);
/* After a reload: may c keep subscription sb? Its subscribe right, and for
 * a durable another user owns, its consume right or admin (consumer.h,
 * OWNERS). Queue groups are not checked again. */
int handle_subscribe_may_keep(const struct conn *c, const struct trie_sub *sb);

/* ---- handle_publish.c -------------------------------------------------- */

/* A checked publication: to its topic's worker, or to the writer if stored. */
void handle_publish_enqueue(struct iot *t, struct conn *c, const struct pub_in *p);
void handle_publish(struct iot *t, struct conn *c, Ferry__Publish *m);
/* A plain Publish read without a full decode; 0 if it needs the decoder. */
int handle_publish_fast(struct iot *t, struct conn *c, const uint8_t *body, size_t len);

/* ---- handle_backup.c --------------------------------------------------- */

/* AdminRequest.backup (the admin right checked): claim the backup slot and
 * hand the start to the writer, or answer with the refusal. */
void handle_backup_request(struct iot *t, struct conn *c, Ferry__AdminRequest *m);
/* R_BACKUP: a frame of the backup thread for one of our connections. */
void handle_backup_frame(struct iot *t, const struct rmsg *m);
/* After a round's writes: credit back what the connection has written. */
void handle_backup_pump(struct iot *t);

/* ---- mqtt_conn.c, mqtt_out.c ------------------------------------------ */

/* An MQTT connection (R_NEW_CONN_MQTT): its state, 0 or -ENOMEM. */
int mqtt_conn_init(struct conn *c);
/* Free the MQTT state (when the connection's memory is freed). */
void mqtt_conn_destroy(struct conn *c);
/* Bytes read from an MQTT connection: its packets, handled. */
void mqtt_conn_take(struct iot *t, struct conn *c, const uint8_t *buf, size_t n);
/* Handle the kept packets (after a pause, or the login). */
void mqtt_conn_process(struct iot *t, struct conn *c);
/* A handler's answer to an MQTT connection (conn_send): as an MQTT packet. */
void mqtt_conn_reply(struct iot *t, struct conn *c, const Ferry__Frame *f);
/* A routed message for subscriptions sub_ids[0..n) of an MQTT connection:
 * body is the shared Deliver body (codec.h). */
void mqtt_conn_deliver(struct iot *t, struct conn *c, const uint64_t *sub_ids, uint32_t n,
                       struct pub_batch *batch, uint32_t body_off, uint32_t body_len);
/* An MQTT connection ends (conn_kill): its will, if it has one and did
 * not say DISCONNECT, is published. */
void mqtt_conn_lost(struct iot *t, struct conn *c);
/* After mqtt_conn_lost, its subscriptions and durables released: the
 * connection lets go of its client id (mqtt_clients.h), telling a
 * connection that waits to take it over. */
void mqtt_conn_ended(struct iot *t, struct conn *c);
/* R_MQTT_KICK: another connection took this one's client id over; close
 * it (its will goes out, as mosquitto does). R_MQTT_RESUME: the connection
 * whose client id this one took over has ended. */
void mqtt_conn_kick(struct iot *t, const struct rmsg *m);
void mqtt_conn_resume(struct iot *t, const struct rmsg *m);
/* The connection's timer in ST_OPEN: 1 when it was MQTT's (a takeover
 * waited too long and was handled; the $SYS values went out and there is
 * no keepalive), 0 for the keepalive check. */
int mqtt_conn_on_timer(struct iot *t, struct conn *c);
/* When an MQTT connection's timer must fire, its keepalive check being due
 * at when (UINT64_MAX: none): the earlier of that and its next $SYS update
 * (mqtt_sys_out.c). */
uint64_t mqtt_conn_timer_due(const struct conn *c, uint64_t when);
/* As conn_send_deliver, for an MQTT connection. */
void mqtt_conn_deliver_one(struct iot *t, struct conn *c, const uint8_t *pfx, size_t pl,
                           const struct codec_deliver *d, size_t body_len);

/* ---- handle_admin.c ---------------------------------------------------- */

/* A durable deleted by an admin: its subscriptions here are ended. */
void handle_admin_detach(struct iot *t, const struct rmsg *m);
void handle_admin(struct iot *t, struct conn *c, Ferry__AdminRequest *m);

#endif

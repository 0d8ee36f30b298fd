/*
 * ferry_int.h - libferry internals shared by the library's sources.
 *
 * LOCKING. One mutex per client, c->mu, guards every mutable field of the
 * client, its subscriptions, pending publishes, admin requests and callback
 * queue, in both modes. (In event-loop mode it is uncontended; it is there so
 * that the same code is correct in thread mode.) c->cond is broadcast
 * whenever something a blocked caller may wait for changed: a PubAck, a
 * delivery, a state change, a callback finished. Callbacks run with c->mu
 * released, one at a time, on the single "dispatcher" thread: the IO thread
 * in thread mode, the loop thread otherwise (and the closing thread once the
 * IO thread has been joined).
 *
 * The socket belongs to the IO driver: the IO thread in thread mode, the
 * loop thread otherwise. Other threads only append to c->out under c->mu
 * and wake the IO thread through c->wake_fd (eventfd) when it sleeps.
 */
#ifndef FERRY_INT_H
#define FERRY_INT_H

#include "codec.h"
#include "ferry.h"
#include "frame.h"

#include <netdb.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define FERRY__DEFAULT_PORT 7373
#define FERRY__MAX_SERVERS 32
#define FERRY__MAX_HEADERS FERRY_MAX_HEADERS
_Static_assert(FERRY_MAX_HEADERS == CODEC_MAX_HEADERS, "ferry.h and codec.h disagree");
#define FERRY__ERRTEXT_CAP 256

struct ferry__server {
    char *host;    /* without brackets */
    char *port;    /* decimal string */
    char *display; /* "host:port" as given (with "tls://" if given) */
    int is_tls;    /* "tls://host:port" */
};

/* ferry_options: plain data, copied into each client. */
struct ferry_options {
    struct ferry__server servers[FERRY__MAX_SERVERS];
    size_t n_servers;
    char *name;
    char *token;
    char *user;
    char *password;
    uint32_t keepalive_ms;
    uint32_t connect_timeout_ms;
    uint32_t max_inflight;
    int window_blocks;
    uint32_t ack_timeout_ms;
    int reconnect;
    uint32_t reconnect_max_attempts;
    uint32_t reconnect_initial_ms;
    uint32_t reconnect_max_ms;
    uint32_t reconnect_jitter_pct;
    int resend_unacked;
    int idempotent; /* Publish.producer_id/producer_seq on acked publishes */
    ferry_log_cb log_cb;
    void *log_ud;
    enum ferry_log_level log_level;
    ferry_event_cb event_cb;
    void *event_ud;
    /* TLS (ferry_options_set_tls): every server, or those given as tls:// */
    int use_tls;         /* ferry_options_set_tls was called */
    char *tls_ca;        /* PEM CA file; NULL: the system's CAs */
    char *tls_cert;      /* PEM client certificate; NULL: none */
    char *tls_key;       /* PEM key of tls_cert */
    int tls_verify_name; /* check the server's name against its certificate */
};

struct ferry_sub_options {
    char *queue_group;
    char *durable;
    enum ferry_start start;
    int64_t start_arg;
    enum ferry_ack_mode ack_mode;
    uint32_t max_in_flight;
    uint32_t ack_wait_ms;
    uint32_t max_deliver;
    size_t queue_max;
};

int ferry__options_copy(struct ferry_options *dst, const struct ferry_options *src);
void ferry__options_deinit(struct ferry_options *o);
void ferry__options_defaults(struct ferry_options *o);
int ferry__sub_options_copy(struct ferry_sub_options *dst, const struct ferry_sub_options *src);
void ferry__sub_options_deinit(struct ferry_sub_options *o);
void ferry__sub_options_defaults(struct ferry_sub_options *o);

/* A delivered message: one malloc'd block, immutable once built. */
struct ferry_msg {
    struct ferry_msg *next; /* link in a subscription's queue (guarded by c->mu) */
    ferry_client *client;
    uint64_t sub_id;
    uint64_t sequence;
    int64_t time;
    uint32_t attempt;
    uint64_t missed;
    const char *topic;
    const uint8_t *data;
    size_t data_len;
    const uint8_t *key;
    size_t key_len;
    ferry_header *headers;
    size_t n_headers;
    const char *reply_to; /* Deliver.reply_to; "" when none */
};

struct ferry__msg_src {
    const char *topic;
    size_t topic_len;
    const uint8_t *data;
    size_t data_len;
    const uint8_t *key;
    size_t key_len;
    size_t n_headers;
    const char *const *hkeys; /* n_headers NUL-terminated keys */
    const char *const *hvals;
    const char *reply_to; /* NULL or "": none */
    size_t reply_to_len;
};

struct ferry_msg *ferry__msg_build(ferry_client *c, uint64_t sub_id, uint64_t seq, int64_t time,
                                   uint32_t attempt, uint64_t missed,
                                   const struct ferry__msg_src *src);

/* One subscription. Freed when its last reference goes (the user's handle
 * and each queued callback item hold one). All fields guarded by c->mu. */
struct ferry_sub {
    struct ferry_sub *prev, *next;   /* c->subs list while active */
    struct ferry_sub *hprev, *hnext; /* c->handles while the user holds it */
    ferry_client *client;
    uint64_t id;
    char *pattern;
    struct ferry_sub_options opts;
    ferry_msg_cb cb;
    void *ud;
    int refs;
    int is_listed;                     /* in c->subs */
    int is_closed;                     /* unsubscribed or client closed: no more callbacks */
    int is_sent;                       /* Subscribe written on the current connection */
    int has_suback;                    /* the server's answer to the first Subscribe came */
    int is_acked;                      /* a SubAck came on the current connection */
    int suback_code;                   /* its code (0 ok) */
    int has_received;                  /* got at least one message (restart from "new") */
    uint64_t last_seq;                 /* highest Deliver.sequence received, 0: none */
    uint64_t next_seq;                 /* SubAck.next_sequence (highest seen), 0: none */
    int is_full;                       /* queue full reported, not yet drained */
    int is_waited;                     /* a ferry_subscribe() caller waits for the SubAck */
    struct ferry_msg *q_head, *q_tail; /* queue of cb-less subscriptions */
    size_t q_len;
    uint64_t dropped;
    int is_inbox; /* the client's request inbox: deliveries go to its requests */
    /* Cluster mode (cluster_sub.c), a facade's subscription: one child
     * subscription per broker that serves it (malloc'd; NULL otherwise). */
    struct ferry_sub **clu_kids;
    size_t n_clu_kids;
};

/* A publish that asked for a PubAck and has none yet. Guarded by c->mu. */
struct ferry__pubwait {
    int is_done;
    int status;
    uint64_t seq;
};

struct ferry__pub {
    struct ferry__pub *prev, *next; /* c->pubs list, in id order */
    struct ferry__pub *hnext;       /* hash chain */
    uint64_t id;
    uint8_t *frame; /* whole encoded frame, kept for re-sending */
    size_t frame_len;
    ferry_pub_cb cb;
    void *ud;
    struct ferry__pubwait *waiter; /* a ferry_publish_sync caller, or NULL */
    int64_t deadline;              /* ack timeout, ms monotonic; 0 none */
};

/* What an admin request asks (struct ferry__admin.kind). */
enum {
    FERRY__ADMIN_STATS = 1,
    FERRY__ADMIN_TOPICS = 2,
    FERRY__ADMIN_TOPIC_INFO = 3,
    FERRY__ADMIN_PURGE = 4,
    FERRY__ADMIN_CONSUMERS = 5,
    FERRY__ADMIN_CONSUMER_DELETE = 6,
    FERRY__ADMIN_BACKUP = 7,
    FERRY__ADMIN_METADATA = 8,
    FERRY__ADMIN_TOPIC_CREATE = 9,
};

/* A pending admin request; lives on its caller's stack. Guarded by c->mu. */
struct ferry__admin {
    struct ferry__admin *next;
    uint64_t id;
    int is_done;
    int code;
    char text[FERRY__ERRTEXT_CAP];
    int kind; /* FERRY__ADMIN_* */
    ferry_stats *stats;
    ferry_topic_info *topics; /* malloc'd result (kind 2, 3) */
    size_t n_topics;
    uint64_t purged;
    ferry_consumer_info *consumers; /* malloc'd result (kind 5) */
    size_t n_consumers;
    ferry_metadata *meta;       /* kind 8: filled by the reply (its arrays malloc'd) */
    ferry_placement *placement; /* kind 9: filled by the reply */
    /* kind 7, a backup (backup.c): its chunks go to the callback queue */
    ferry_backup_cb backup_cb;
    void *backup_ud;
    ferry_backup_result backup_res; /* filled by the last reply */
    uint64_t backup_next;           /* offset the next chunk must have */
    uint32_t backup_crc;            /* CRC-32C of the chunks received */
    uint32_t n_backup_cbs;          /* chunk callbacks queued or running */
    int backup_cb_rc;               /* a callback's non-zero return: the rest is dropped */
    int64_t backup_last_ms;         /* when the last reply came (the timeout's start) */
};

/* Callback queue items. */
enum ferry__cb_kind { FERRY__CB_PUB, FERRY__CB_MSG, FERRY__CB_EVENT, FERRY__CB_BACKUP };

struct ferry__cbitem {
    struct ferry__cbitem *next;
    enum ferry__cb_kind kind;
    /* FERRY__CB_PUB */
    ferry_pub_cb pub_cb;
    void *pub_ud;
    int status;
    uint64_t seq;
    /* FERRY__CB_MSG */
    struct ferry_sub *sub; /* holds a reference */
    struct ferry_msg *msg;
    /* FERRY__CB_EVENT */
    ferry_event ev; /* text and server point into the item's tail */
    /* FERRY__CB_BACKUP: a chunk, in the item's tail */
    struct ferry__admin *admin; /* its ferry_admin_backup() call */
    uint64_t offset;
    size_t len;
};

enum ferry__phase {
    FERRY__PH_NONE = 0,  /* no socket */
    FERRY__PH_TCP,       /* connect(2) in progress */
    FERRY__PH_TLS,       /* TLS handshake in progress */
    FERRY__PH_HANDSHAKE, /* Connect sent, waiting for Connected */
    FERRY__PH_UP,        /* Connected */
};

/* ---- tls.c: TLS sessions (the only file that includes OpenSSL) ---------- */

struct ferry__tls;
/* A client TLS context from o's files. 0, or FERRY_ETLS with text in err. */
int ferry__tls_ctx_open(const struct ferry_options *o, void **out, char *err, size_t err_len);
void ferry__tls_ctx_close(void *ctx);
/* A session on fd for host (SNI, and the name checked if verify_name).
 * 0, or FERRY_ETLS / -ENOMEM with text in err. */
int ferry__tls_open(void *ctx, int fd, const char *host, int verify_name, struct ferry__tls **out,
                    char *err, size_t err_len);
void ferry__tls_close(struct ferry__tls *t);
/* 0 done, 1 not yet (ferry__tls_events says what it waits for), or
 * FERRY_ETLS with text in err (a certificate's error named). */
int ferry__tls_handshake(struct ferry__tls *t, char *err, size_t err_len);
/* >0 bytes, 0 closed by the peer, -EAGAIN, or a negative code with text in err. */
ssize_t ferry__tls_read(struct ferry__tls *t, void *buf, size_t n, char *err, size_t err_len);
ssize_t ferry__tls_write(struct ferry__tls *t, const void *buf, size_t n, char *err,
                         size_t err_len);
/* POLLIN / POLLOUT that the last unfinished call waits for. */
int ferry__tls_events(const struct ferry__tls *t);
/* Decrypted bytes buffered in the session (readable without the socket). */
int ferry__tls_pending(const struct ferry__tls *t);
/* 1 if libferry was built with OpenSSL. */
int ferry__tls_available(void);

struct ferry__outbuf {
    uint8_t *data;
    size_t off; /* bytes already written */
    size_t len; /* bytes filled */
    size_t cap;
};

struct ferry_client {
    /* Immutable after ferry_client_create(). */
    struct ferry_options opts;
    int wake_fd; /* eventfd; written to wake the IO thread */

    pthread_mutex_t mu;  /* guards everything below */
    pthread_cond_t cond; /* broadcast on any change a waiter may wait for */

    int has_thread;      /* thread mode */
    int stop_thread;     /* asks the IO thread to exit */
    int io_sleeping;     /* the IO thread is (about to be) in poll() */
    pthread_t io_thread; /* valid when has_thread */

    enum ferry_state state;
    int is_closing;          /* ferry_client_close() in progress */
    int connect_async;       /* the first connect was started with timeout 0 */
    int connect_result;      /* outcome of the first connect, while IDLE */
    int has_connected;       /* a handshake completed once */
    size_t server_idx;       /* server of the current/next attempt */
    size_t n_tries;          /* first connect: servers tried */
    uint32_t n_attempts;     /* reconnect: consecutive failed attempts */
    int64_t next_attempt_at; /* ms monotonic; when fd < 0 and (re)connecting */

    int fd;                     /* socket, -1 when none */
    struct ferry__tls *tls;     /* the socket's TLS session, NULL: plain (or none yet) */
    void *tls_ctx;              /* SSL_CTX *, made at the first TLS attempt; NULL */
    uint64_t n_sockets_closed;  /* increments whenever an attempt is dropped */
    struct addrinfo *addrs;     /* the current attempt's resolved addresses */
    struct addrinfo *addr_next; /* next one to try if this one fails */
    enum ferry__phase phase;
    int64_t phase_deadline; /* TCP/HANDSHAKE timeout, ms monotonic */
    uint64_t conn_gen;      /* increments per successful handshake */
    uint64_t n_acks_sent;   /* Acks written (ferry_msg_ack) since the client began */
    uint64_t ack_gen;       /* conn_gen of the last Ack not yet confirmed, 0: none */
    int has_lost_acks;      /* Acks were sent on a connection lost before a flush
                             * confirmed them: the next flush says so */
    struct frame_dec dec;
    struct codec_arena arena;
    struct ferry__outbuf out;
    uint32_t max_frame_len; /* negotiated, or the default */
    uint32_t ka_ms;         /* negotiated keepalive */
    int64_t last_send, last_recv;
    uint64_t ping_nonce; /* last Ping nonce sent */
    uint64_t pong_seen;  /* highest Pong nonce received */
    ferry_server_info info;
    int has_info;

    uint64_t next_pub_id;  /* also the producer sequence (idempotent publishing) */
    uint64_t producer_id;  /* random, non-zero; fixed for the client's life */
    uint64_t n_duplicates; /* PubAcks marked duplicate */
    uint64_t next_sub_id;
    uint64_t next_admin_id;

    struct ferry__pub *pubs_head, *pubs_tail; /* waiting for PubAck, id order */
    struct ferry__pub **pub_hash;
    size_t pub_hash_cap; /* power of two */
    size_t n_pubs;

    struct ferry_sub *subs;    /* active subscriptions */
    struct ferry_sub *handles; /* every handle not yet unsubscribed */
    struct ferry__admin *admins;

    struct ferry__cbitem *cb_head, *cb_tail;
    uint64_t n_pub_cb_queued; /* publish callbacks queued, ever */
    uint64_t n_pub_cb_done;   /* ... and finished (flush waits for these) */
    int cb_running;           /* a callback is running on the dispatcher thread */
    struct ferry_sub *cb_sub; /* whose message callback runs now, or NULL */
    pthread_t cb_thread;      /* the thread running it, when cb_running */

    uint64_t rng; /* xorshift state for jitter */

    /* Request/reply (request.c). */
    char inbox[56];              /* "_INBOX.<random id>" ("_INBOX.B<broker id>_<random>" in a
                                  * facade's child: cluster.h); "" until the first request */
    struct ferry_sub *inbox_sub; /* subscription to inbox + ".>", NULL until made */
    int is_inbox_making;         /* a request is subscribing the inbox now */
    uint64_t next_req;           /* the n of the next reply topic inbox.<n> */
    struct ferry__req *reqs;     /* requests waiting for their answer */

    int err_code;
    char err_text[FERRY__ERRTEXT_CAP];

    /* Cluster mode (cluster.h). clu: set once by ferry_client_connect()
     * (atomic, read with ferry__clu()). clu_parent: a child's facade,
     * immutable after the child's creation. */
    struct ferry__cluster *clu;
    ferry_client *clu_parent;
    uint32_t clu_broker_id; /* a child's broker (immutable): its inbox names it */
};

/* client.c */
int64_t ferry__now_ms(void);
int ferry__in_callback(ferry_client *c);
void ferry__seterr(ferry_client *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void ferry__log(ferry_client *c, enum ferry_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int ferry__wait(ferry_client *c, int64_t deadline);
int64_t ferry__deadline(int timeout_ms);
void ferry__kick(ferry_client *c);
int ferry__send_frame(ferry_client *c, const Ferry__Frame *f);
int ferry__out_append(ferry_client *c, const uint8_t *p, size_t n);
void ferry__event(ferry_client *c, enum ferry_event_type type, int code, const char *text,
                  uint64_t ref_id, enum ferry_ref_kind ref_kind, int is_fatal);
void ferry__cb_push(ferry_client *c, struct ferry__cbitem *it);
int ferry__send_ping(ferry_client *c);
/* The engine, for client_api.c: all due IO and timers (lock held, never
 * blocks, no user code); run the queued callbacks (lock released around
 * each); drop the queued ones; write what is queued; close the socket; the
 * next timer's deadline (ms, -1: none); the poll events the socket waits
 * for; the IO thread's body. */
void ferry__work(ferry_client *c);
void ferry__dispatch(ferry_client *c);
void ferry__cbq_free(ferry_client *c);
int ferry__conn_write(ferry_client *c);
void ferry__conn_close_socket(ferry_client *c);
int64_t ferry__next_timer(ferry_client *c);
int ferry__poll_events(ferry_client *c);
void *ferry__io_thread_main(void *arg);

/* client_api.c */
int ferry__flush_locked(ferry_client *c, int64_t deadline);
/* Stop the IO thread (lock held; released around the join): the caller
 * becomes the only driver and dispatcher. */
void ferry__stop_io_thread(ferry_client *c);
/* Say Disconnect (best effort) and close the socket (lock held). */
void ferry__say_goodbye(ferry_client *c);

/* pub.c */
void ferry__pub_on_ack(ferry_client *c, uint64_t id, int code, uint64_t seq);
void ferry__pubs_on_connected(ferry_client *c);
void ferry__pubs_on_lost(ferry_client *c, int code, int resend);
void ferry__pubs_timers(ferry_client *c, int64_t now);
int64_t ferry__pubs_next_deadline(ferry_client *c);
void ferry__pubs_fail_all(ferry_client *c, int code);
int ferry__pubs_init(ferry_client *c);
void ferry__pubs_deinit(ferry_client *c);
int ferry__topic_valid(const char *topic);
int ferry__str_valid(const char *s, size_t max);

/* sub.c */
struct ferry_sub *ferry__sub_find(ferry_client *c, uint64_t id);
void ferry__sub_unref(struct ferry_sub *s);
/* Queue m for ferry_sub_next() on s (c->mu held). */
void ferry__sub_enqueue(struct ferry_sub *s, struct ferry_msg *m);
/* Take the oldest queued message of s (one is queued; c->mu held). */
struct ferry_msg *ferry__sub_dequeue(struct ferry_sub *s);
/* Add s to / take it out of c->handles, the handles the user holds (c->mu held). */
void ferry__sub_handle_list(ferry_client *c, struct ferry_sub *s);
void ferry__sub_handle_unlist(ferry_client *c, struct ferry_sub *s);
void ferry__sub_on_suback(ferry_client *c, uint64_t id, int code, const char *text,
                          uint64_t next_seq, int is_error_frame);
void ferry__sub_on_deliver(ferry_client *c, const Ferry__Deliver *d);
void ferry__subs_on_connected(ferry_client *c);
void ferry__subs_on_lost(ferry_client *c);
void ferry__subs_close_all(ferry_client *c);
void ferry__subs_free_handles(ferry_client *c);

/* admin.c */
void ferry__admin_on_reply(ferry_client *c, const Ferry__AdminReply *r);
void ferry__admin_fail_all(ferry_client *c, int code);
/* Take a out of c->admins (if there). */
void ferry__admin_unlink(ferry_client *c, struct ferry__admin *a);
/* Send req (its id set here) for a, and list a in c->admins. Lock held.
 * 0, FERRY_ECLOSED, -EDEADLK (in a callback), FERRY_ENOTREADY, -ENOMEM. */
int ferry__admin_send(ferry_client *c, Ferry__AdminRequest *req, struct ferry__admin *a);

/* pub.c: a fire-and-forget publish of m (lock held); *id_out its id. */
int ferry__publish_locked(ferry_client *c, const ferry_pub *m, uint64_t *id_out);

/* request.c (lock held) */
/* A delivery on the inbox: hand m (taken) to its request, or free it. */
void ferry__req_on_reply(ferry_client *c, struct ferry_msg *m);
/* An Error for publish id: the request it was, if any, fails with code.
 * 1 if it was a waiting request's (its caller reports it), else 0. */
int ferry__req_on_pub_error(ferry_client *c, uint64_t id, int code);
/* Every waiting request fails with code (connection lost, client closed). */
void ferry__reqs_fail_all(ferry_client *c, int code);

/* backup.c */
/* An AdminReply of a's backup (lock held). */
void ferry__backup_on_reply(ferry_client *c, struct ferry__admin *a, const Ferry__AdminReply *r);
/* Run a FERRY__CB_BACKUP item (dispatcher thread; lock held, released
 * around the user's callback). */
void ferry__backup_dispatch(ferry_client *c, struct ferry__cbitem *it);

#endif /* FERRY_INT_H */

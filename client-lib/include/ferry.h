/*
 * ferry.h - libferry, the C client library of the ferry message broker.
 *
 * ferry is a persistent publish/subscribe broker (ferryd). Clients publish
 * messages to topics ("orders.eu.created") and subscribe to patterns
 * ("orders.*.created", "orders.>"). A topic numbers its messages 1, 2, 3...;
 * a PubAck means the message is stored under the server's sync policy. This
 * header is the whole public API of libferry; it is C and can be included
 * from C++ (extern "C").
 *
 * LIFE OF A CLIENT
 *
 *   ferry_options_create()   fill in servers, name, credentials, policies
 *   ferry_client_create()    copies the options; no IO yet
 *   ferry_client_start_thread()   optional: run IO on a background thread
 *   ferry_client_connect()   TCP connect + Connect/Connected handshake
 *   ferry_publish*(), ferry_subscribe(), ferry_sub_next(), ferry_msg_ack()...
 *   ferry_client_close()     flush (wait for outstanding PubAcks), say
 *                            goodbye, close the socket, stop the IO thread
 *   ferry_client_destroy()   free everything
 *
 * While connected the client keeps the connection alive (Ping), and when it
 * is lost, reconnects with exponential backoff and jitter (by option), sends
 * Connect again and re-subscribes every subscription. How each one resumes:
 *   - durable: from its acknowledged position, kept by the server;
 *   - one stored topic (no wildcard), no queue group, not durable: at the
 *     next sequence it had not received, so that it gets every message
 *     published while it was away, none twice (messages already queued for
 *     ferry_sub_next() count as received). If it had received nothing yet,
 *     it resumes where the server said it started (SubAck.next_sequence);
 *   - wildcard patterns, queue group members, ephemeral topics, and a
 *     subscription whose first SubAck had not arrived yet: as new, from
 *     their start position if they received nothing yet, else with new
 *     messages only (what is published while disconnected is not seen).
 * Publishes that were waiting for a PubAck are re-sent or failed to their
 * callbacks, by option; they are never dropped silently.
 *
 * THREADING MODEL
 *
 * A client runs in one of two modes, chosen before ferry_client_connect():
 *
 * 1. Event-loop mode (default). The application polls the descriptor of
 *    ferry_client_fd() for ferry_client_events(), sleeps at most
 *    ferry_client_timeout_ms(), and then calls ferry_client_process(), which
 *    does non-blocking IO, runs timers (keepalive, reconnect backoff,
 *    timeouts) and fires callbacks, all on the calling thread. In this mode
 *    the client belongs to ONE thread, the loop's: call every function from
 *    that thread. Blocking calls (ferry_client_connect, ferry_publish_sync,
 *    ferry_flush, ferry_sub_next, a ferry_subscribe with a timeout,
 *    ferry_client_close, the ferry_admin_* calls) drive the IO themselves
 *    while they wait, and may fire callbacks on the calling thread. Publish,
 *    ack and subscribe calls write to the socket at once when they can, so
 *    a program that only publishes needs no loop iteration per message.
 *
 * 2. Thread mode: ferry_client_start_thread() starts a background IO thread
 *    that owns the socket. Every callback runs on that thread. Every
 *    function of this header may then be called from any thread, at the same
 *    time (an internal mutex guards the client's state; the IO thread is
 *    woken through an eventfd). Blocking calls wait on a condition variable.
 *
 * In both modes callbacks run without any internal lock held, so a callback
 * may call the non-blocking functions (ferry_publish, ferry_publish_msg,
 * ferry_publish_async - which returns -EAGAIN there instead of waiting for
 * room in a full window -, ferry_msg_ack, ferry_subscribe with timeout 0,
 * ferry_unsubscribe, the ferry_msg_* and getters). A blocking function
 * called from a callback returns -EDEADLK instead of blocking;
 * ferry_client_close() returns -EDEADLK there too, and
 * ferry_client_destroy() must not be called from a callback. No callback
 * runs after ferry_client_destroy() returns.
 *
 * Callbacks of one client never run concurrently with each other, and run
 * in the order their causes arrived from the server: the messages of one
 * subscription in delivery order, publish completions in PubAck order.
 *
 * CLUSTERS
 *
 * Given two or more servers, ferry_client_connect() (with a timeout > 0)
 * asks the broker it reached for Metadata. A standalone broker lists no
 * brokers: the list stays a failover list, and nothing below applies. A
 * broker of a cluster (broker/CLUSTER.md) lists them, and the client
 * becomes a facade that routes by itself: it keeps one connection per
 * broker it needs (made when first needed, each with its own IO thread,
 * reconnecting without end), and sends each publish and each subscription
 * to its topic's owner, which it learns from Metadata, or, for a topic it
 * does not know, by asking any broker (TopicCreate: the topic is placed if
 * new) before the first send. The publishes of one topic thus all travel,
 * in the caller's order, on the one connection to its owner: ordering,
 * acks and idempotent resends per topic are as on one broker. A
 * subscription to one topic goes to its owner; one with wildcards
 * ("orders.>") is made on every broker, which delivers the matching topics
 * it owns, and the deliveries merge into the one ferry_sub (each topic in
 * order; topics of different brokers interleave). ferry_msg_ack() goes to
 * the broker that delivered the message; ferry_msg_sub_id() is that
 * broker's subscription id. Every 5 s the client asks Metadata again, and
 * subscribes its wildcard patterns on brokers that joined. The program
 * sees one client: callbacks receive its pointer, and run one at a time.
 * Its mode stays as chosen: in thread mode callbacks run on the brokers'
 * IO threads (one at a time); in event-loop mode in ferry_client_process(),
 * on the loop's thread, and ferry_client_fd() is then an eventfd that is
 * readable when callbacks wait (poll it for ferry_client_events(), POLLIN;
 * the connections' own IO runs on their threads meanwhile).
 *
 * While a topic's owner is down its topic is unavailable:
 * ferry_publish_sync() retries (with a 100 ms backoff) until its timeout,
 * then returns FERRY_EUNAVAILABLE, the message not sent; -ETIMEDOUT when it
 * was sent and the owner went away before its PubAck (it may be stored when
 * the owner comes back, as after any timeout). ferry_publish() returns
 * FERRY_EUNAVAILABLE at once. ferry_publish_async() queues the publish on
 * the owner's connection: it is sent, in order, when the owner is back,
 * unless the ack timeout (ferry_options_set_ack_timeout_ms) fails it first.
 * ferry_subscribe() to the topic waits for the owner until its timeout,
 * then returns FERRY_EUNAVAILABLE (with timeout 0 the subscription is made
 * when the owner is back); a pattern's subscription on a broker that is
 * down is made when it comes back. Nothing acknowledged is lost: the owner
 * keeps its store.
 *
 * Limits: the connections always have IO threads of their own, also for
 * an event-loop program (its loop only runs the callbacks). Looking up an unknown topic's owner
 * waits (up to the connect timeout): from a callback, a publish or subscription to a topic the
 * client does not know yet returns -EAGAIN. The lookup and Metadata need
 * the admin right on brokers with an auth file; without it, the list is a
 * failover list. Admin calls go to any broker (topic info and purge to the
 * owner when known); ferry_request() and ferry_admin_backup() to any broker
 * (inboxes are per broker). ferry_client_server_info() describes one of the
 * brokers. At most 64 brokers.
 *
 * ERROR MODEL
 *
 * Functions return int: 0 (or a documented non-negative value) on success, a
 * negative number on failure: either -errno (-ECONNREFUSED, -ETIMEDOUT,
 * -EAGAIN, -ENOMEM, -EINVAL for a bad argument...) or a FERRY_E* code from
 * the table below. Codes -1001..-1099 are the server's ErrorCode values from
 * ferry.proto (wire code N is -(1000 + N)); codes from -1100 down are local.
 * ferry_strerror() explains every code. A call that fails never fires its
 * callback. Out-parameters are written only on success. Each client also
 * keeps the text of its last error (ferry_client_last_error()), which often
 * says more (the server's text, the address that refused).
 *
 * EXAMPLE (thread mode, error handling shortened)
 *
 *   static void on_msg(ferry_client *c, ferry_sub *s, const ferry_msg *m, void *ud)
 *   {   // c, s, ud: unused here
 *       size_t n;
 *       const void *p = ferry_msg_data(m, &n);
 *       printf("%s: %.*s\n", ferry_msg_topic(m), (int)n, (const char *)p);
 *   }
 *
 *   ferry_options *o;  ferry_client *c;  ferry_sub *s;  uint64_t seq;
 *   ferry_options_create(&o);
 *   ferry_options_set_servers(o, "127.0.0.1:7373");
 *   ferry_client_create(o, &c);  ferry_options_destroy(o);
 *   ferry_client_start_thread(c);
 *   if (ferry_client_connect(c, 5000) != 0) { ... }
 *   ferry_subscribe(c, "orders.>", NULL, on_msg, NULL, 5000, &s);
 *   ferry_publish_sync(c, &(ferry_pub){.topic = "orders.eu", .payload = "hi",
 *                                      .payload_len = 2}, 5000, &seq);
 *   ferry_client_close(c, 5000);
 *   ferry_client_destroy(c);
 */
#ifndef FERRY_H
#define FERRY_H

#include <stddef.h>
#include <stdint.h>

/* The most headers one message may carry (ferry.proto, Publish.headers). */
#define FERRY_MAX_HEADERS 64

/* The longest topic or pattern the library sends, in bytes: the ceiling of
 * the server's max_topic_len. The server's own setting (255 by default) is
 * the limit that holds, and a stored topic is at most 255 bytes; the
 * server refuses longer ones with FERRY_EINVALIDTOPIC and says why. */
#define FERRY_MAX_TOPIC_LEN 4096

#ifdef __cplusplus
extern "C" {
#endif

/* Symbols of the API are exported; everything else in libferry is hidden. */
#if defined(FERRY_BUILDING) && defined(__GNUC__)
#define FERRY_API __attribute__((visibility("default")))
#else
#define FERRY_API
#endif

/* The version of this header; ferry_version() gives the library's. */
#define FERRY_VERSION_MAJOR 0
#define FERRY_VERSION_MINOR 1
#define FERRY_VERSION_PATCH 0

/*
 * Errors.
 *
 * Every function that can fail returns an int: 0 (or a non-negative count)
 * on success, a negative number on failure. A failure is either a negated
 * errno value (-ECONNREFUSED, -ETIMEDOUT, ...) or one of the FERRY_E* codes
 * below, which sit in their own band from -1000 down.
 *
 * Codes -1001 to -1099 are the server's ErrorCode values from ferry.proto:
 * wire code N is reported as -(1000 + N). Codes from -1100 down are local to
 * the library. ferry_strerror() explains every code of both kinds.
 *
 * Besides these, the library returns these -errno values with one meaning:
 *   -EINVAL     a bad argument (NULL where a pointer is needed, a value out
 *               of range, a call in the wrong mode)
 *   -ENOMEM     out of memory
 *   -ETIMEDOUT  a blocking call's timeout expired
 *   -EAGAIN     the async publish window is full (non-blocking window)
 *   -EDEADLK    a blocking call was made from a callback
 *   -ECONNREFUSED, -EHOSTUNREACH, -ECONNRESET, -EPIPE ...  the socket's error
 */
#define FERRY_EBASE 1000

#define FERRY_ERRNO_MAP(XX)                                                                        \
    XX(EPROTOCOL, -1001, "protocol error")                                                         \
    XX(EFRAMETOOLARGE, -1002, "frame too large")                                                   \
    XX(EVERSION, -1003, "unsupported protocol version")                                            \
    XX(ENOTCONNECTED, -1004, "not connected: Connect must come first")                             \
    XX(EAUTH, -1005, "authentication failed")                                                      \
    XX(EPERM, -1006, "permission denied")                                                          \
    XX(EINVALIDTOPIC, -1007, "invalid topic")                                                      \
    XX(EINVALIDPATTERN, -1008, "invalid subscription pattern")                                     \
    XX(ELIMIT, -1009, "limit exceeded")                                                            \
    XX(ESLOWCONSUMER, -1010, "slow consumer: outbound buffer overflowed")                          \
    XX(ESTORAGEFULL, -1011, "storage full")                                                        \
    XX(ESTORAGE, -1012, "storage failed")                                                          \
    XX(ENOSUB, -1013, "unknown subscription")                                                      \
    XX(EDUPID, -1014, "id already in use")                                                         \
    XX(EDURABLEINUSE, -1015, "durable consumer in use by another connection")                      \
    XX(EKEEPALIVE, -1016, "keepalive timeout")                                                     \
    XX(ESHUTDOWN, -1017, "server shutting down")                                                   \
    XX(EINTERNAL, -1018, "internal server error")                                                  \
    XX(EUNKNOWNMSG, -1019, "unknown or unexpected message")                                        \
    XX(EINVAL, -1020, "invalid argument")                                                          \
    XX(EAUTHTIMEOUT, -1021, "authentication timeout")                                              \
    XX(ENOTOPIC, -1022, "unknown topic")                                                           \
    XX(EBUSY, -1023, "server busy")                                                                \
    XX(ENOCONSUMER, -1024, "unknown durable consumer")                                             \
    XX(ECONSUMERDELETED, -1025, "durable consumer deleted by an administrator")                    \
    XX(ENORESPONDERS, -1026, "no responders: nothing subscribes to the request's topic")           \
    XX(ENOTOWNER, -1027, "not the topic's owner: another broker of the cluster serves it")         \
    XX(EUNAVAILABLE, -1028, "topic unavailable in the cluster now; retry")                         \
    XX(ECLOSED, -1100, "client closed")                                                            \
    XX(ENOTREADY, -1101, "not connected to a server")                                              \
    XX(EDISCONNECTED, -1102, "connection lost before the server answered")                         \
    XX(EQUEUEFULL, -1103, "subscription queue full: message dropped")                              \
    XX(ERECONNECTFAILED, -1104, "gave up reconnecting")                                            \
    XX(ETLS, -1105, "TLS failed (handshake or certificate)")                                       \
    XX(ECHECKSUM, -1106, "checksum mismatch: data damaged on the way or on disk")

enum ferry_errno {
#define FERRY__ERRNO_ENUM(name, value, text) FERRY_##name = (value),
    FERRY_ERRNO_MAP(FERRY__ERRNO_ENUM)
#undef FERRY__ERRNO_ENUM
};

/* Map a wire ErrorCode (ferry.proto) to the library's negative code. */
#define FERRY_ERR_FROM_WIRE(code) (-(FERRY_EBASE + (int)(code)))

/* Explain an error code: every FERRY_E* code, and strerror() text for
 * -errno values; "success" for 0; "unknown error" otherwise. The string
 * is static (never free it). Any thread. */
FERRY_API const char *ferry_strerror(int err);

/* The library's version as "MAJOR.MINOR.PATCH" (static string). Any thread. */
FERRY_API const char *ferry_version(void);

/* ------------------------------------------------------------------------ */
/* Handles                                                                  */

typedef struct ferry_options ferry_options;         /* connection options */
typedef struct ferry_client ferry_client;           /* one client */
typedef struct ferry_sub_options ferry_sub_options; /* subscription options */
typedef struct ferry_sub ferry_sub;                 /* one subscription */
typedef struct ferry_msg ferry_msg;                 /* one delivered message */

/* ------------------------------------------------------------------------ */
/* Callbacks                                                                */

/* Log levels of the log callback. */
enum ferry_log_level {
    FERRY_LOG_ERROR = 0,
    FERRY_LOG_WARN = 1,
    FERRY_LOG_INFO = 2,
    FERRY_LOG_DEBUG = 3,
};

/* The library never prints. If set, it reports what it does through this
 * callback: `msg` is a NUL-terminated line without newline, valid only
 * during the call. Called from whichever thread is doing the work (the IO
 * thread, the loop thread, or a thread inside a blocking call) possibly with
 * internal locks held: it must not call any ferry_* function. */
typedef void (*ferry_log_cb)(void *userdata, enum ferry_log_level level, const char *msg);

/* Connection-level events for the event callback. */
enum ferry_event_type {
    FERRY_EVENT_CONNECTED = 1,    /* first handshake completed */
    FERRY_EVENT_DISCONNECTED = 2, /* the connection was lost; code says why */
    FERRY_EVENT_RECONNECTED = 3,  /* a new connection is up; subscriptions
                                     re-sent, unacked publishes re-sent or
                                     already failed */
    FERRY_EVENT_ERROR = 4,        /* an asynchronous error: an Error frame
                                     from the server (ref_kind/ref_id say
                                     what it refers to), a subscription
                                     refused with nobody waiting (subscribed
                                     with timeout 0, or re-sent after a
                                     reconnect), or a local one
                                     (FERRY_EQUEUEFULL; -ENOMEM: a delivery
                                     dropped) */
    FERRY_EVENT_CLOSED = 5,       /* the client stopped for good: closed by
                                     ferry_client_close(), or reconnecting
                                     gave up (code FERRY_ERECONNECTFAILED) */
};

/* What an Error's ref_id refers to (ferry.proto Error.RefKind). */
enum ferry_ref_kind {
    FERRY_REF_NONE = 0,
    FERRY_REF_PUBLISH = 1,      /* ref_id is the publish id (ferry_publish*'s
                                   id out-parameter) */
    FERRY_REF_SUBSCRIPTION = 2, /* ref_id is ferry_sub_id() of a subscription */
    FERRY_REF_ADMIN = 3,
};

/* An event. Owned by the library, valid only during the callback. */
typedef struct ferry_event {
    enum ferry_event_type type;
    int code;                     /* 0, -errno or FERRY_E* (see type) */
    const char *text;             /* never NULL; "" when there is nothing */
    uint64_t ref_id;              /* FERRY_EVENT_ERROR: see ref_kind */
    enum ferry_ref_kind ref_kind; /* FERRY_EVENT_ERROR: what ref_id means */
    int is_fatal;                 /* FERRY_EVENT_ERROR: the server closes the
                                     connection next (a reconnect follows) */
    const char *server;           /* "host:port" concerned, or "" */
} ferry_event;

/* Connection events. Runs on the IO thread (thread mode) or the thread that
 * drives the IO (event-loop mode), without internal locks held. */
typedef void (*ferry_event_cb)(ferry_client *c, const ferry_event *ev, void *userdata);

/* Completion of ferry_publish_async(): status is 0 and `sequence` the
 * topic's sequence number (0 on an ephemeral topic), or status is negative:
 * a server code (FERRY_EINVALIDTOPIC, FERRY_EPERM, FERRY_ESTORAGEFULL ...),
 * FERRY_EDISCONNECTED (the connection was lost and the publish is not
 * re-sent by option, or reconnecting gave up), -ETIMEDOUT (the ack timeout
 * option), or FERRY_ECLOSED (the client was closed first; the message may or
 * may not have been stored). Called exactly once for every publish that
 * ferry_publish_async() accepted (returned 0 for). Same thread rules as
 * ferry_event_cb. */
typedef void (*ferry_pub_cb)(ferry_client *c, int status, uint64_t sequence, void *userdata);

/* A message for a subscription. `m` is owned by the library and valid only
 * during the call; copy it with ferry_msg_copy() to keep it. It may be
 * acked (ferry_msg_ack) during the call or, through the copy, later. Same
 * thread rules as ferry_event_cb. */
typedef void (*ferry_msg_cb)(ferry_client *c, ferry_sub *s, const ferry_msg *m, void *userdata);

/* ------------------------------------------------------------------------ */
/* Options                                                                  */

/* Every setter below returns -EINVAL when o is NULL, besides what it lists.
 *
 * Create an options object with the defaults listed at each setter. *out
 * receives it; the caller owns it and frees it with ferry_options_destroy().
 * An options object belongs to one thread at a time.
 * Returns 0, -EINVAL (out is NULL), -ENOMEM. */
FERRY_API int ferry_options_create(ferry_options **out);

/* Free an options object (NULL is fine). Clients created from it keep
 * their own copy. */
FERRY_API void ferry_options_destroy(ferry_options *o);

/* Servers to connect to: "host:port[,host:port...]" (host a name, an IPv4
 * address, or an IPv6 address in brackets "[::1]:7373"; port defaults to
 * 7373 when ":port" is left out). "tls://host:port" speaks TLS to that
 * server (see ferry_options_set_tls; without it, the system's CAs verify the
 * server and its name is checked). Tried in order on connect and reconnect.
 * Two or more servers may also be the brokers of a cluster: see CLUSTERS.
 * Default "127.0.0.1:7373". The string is copied.
 * Returns 0, -EINVAL (NULL, empty list, bad port, more than 32 servers),
 * -ENOMEM. */
FERRY_API int ferry_options_set_servers(ferry_options *o, const char *servers);

/* TLS to every server (a tls:// prefix turns it on for one server only).
 * ca_file: PEM file of the CA(s) that the server's certificate must chain
 * to (NULL: the system's CAs). cert_file and key_file: a client certificate
 * and its key, PEM (both NULL: none); a server with tls_identity set takes
 * the certificate's name as the user, with no password. verify_name: 1
 * (recommended) checks the server's certificate against the host name or
 * IP address of the server string; 0 checks only that it chains to the CA.
 * The certificate is always verified. Files are read at the first TLS
 * connect of each client; a file that cannot be used, or a certificate that
 * does not verify, fails the connect with FERRY_ETLS, and
 * ferry_client_last_error() says why (e.g. "certificate verify failed").
 * TLS 1.2 or later. Copied. Returns 0, -EINVAL (cert without key or the
 * other way round, empty names), -ENOTSUP (libferry built without
 * OpenSSL), -ENOMEM. */
FERRY_API int ferry_options_set_tls(ferry_options *o, const char *ca_file, const char *cert_file,
                                    const char *key_file, int verify_name);

/* Client name sent in Connect (logs and stats on the server), at most 128
 * bytes of UTF-8. Default "libferry". Copied. Returns 0, -EINVAL, -ENOMEM. */
FERRY_API int ferry_options_set_name(ferry_options *o, const char *name);

/* Credentials: a bearer token. Replaces username/password. NULL clears.
 * Copied. Returns 0, -EINVAL (not UTF-8), -ENOMEM. */
FERRY_API int ferry_options_set_token(ferry_options *o, const char *token);

/* Credentials: username and password. Replaces a token. NULL user clears.
 * Copied. Returns 0, -EINVAL, -ENOMEM. */
FERRY_API int ferry_options_set_user_password(ferry_options *o, const char *user,
                                              const char *password);

/* Keepalive interval the client asks for (the server clamps it and closes
 * a connection silent for 1.5 times the result; the client pings after
 * half the negotiated interval without sending, and drops a connection
 * from which nothing came for twice the interval: FERRY_EKEEPALIVE).
 * 0: the server's default. Default 0. Returns 0. */
FERRY_API int ferry_options_set_keepalive_ms(ferry_options *o, uint32_t ms);

/* Timeout of one connection attempt (TCP connect + handshake) to one
 * server. Default 5000. Returns 0, -EINVAL (0). */
FERRY_API int ferry_options_set_connect_timeout_ms(ferry_options *o, uint32_t ms);

/* Largest number of publishes waiting for their PubAck (async and sync
 * together): the async window. Default 1024. Returns 0, -EINVAL (0 or more
 * than 1048576). */
FERRY_API int ferry_options_set_max_inflight(ferry_options *o, uint32_t n);

/* When the window is full, ferry_publish_async() blocks until there is room
 * (block = 1, the default) or returns -EAGAIN at once (block = 0). Returns 0. */
FERRY_API int ferry_options_set_window_blocks(ferry_options *o, int block);

/* A publish waiting for its PubAck longer than ms fails with -ETIMEDOUT
 * (async callback or sync call). 0: no limit, the publish waits as long as
 * the connection lives. Default 0. Returns 0. */
FERRY_API int ferry_options_set_ack_timeout_ms(ferry_options *o, uint32_t ms);

/* Reconnect policy. enabled: reconnect after a lost connection (default 1).
 * max_attempts: consecutive failed attempts before giving up, 0 for
 * unlimited (default 0). The delay before attempt k is
 * min(initial_ms * 2^(k-1), max_ms), minus a random part of up to
 * jitter_pct percent of it (defaults 100 ms, 5000 ms, 20%). The first
 * attempt after a loss is made at once. Returns 0, -EINVAL (initial_ms 0,
 * max_ms < initial_ms, jitter_pct > 100). */
FERRY_API int ferry_options_set_reconnect(ferry_options *o, int enabled, uint32_t max_attempts,
                                          uint32_t initial_ms, uint32_t max_ms,
                                          uint32_t jitter_pct);

/* What becomes of publishes still waiting for a PubAck when the connection
 * is lost: resend = 1 (default) re-sends them, in their original order,
 * after the reconnect; resend = 0 fails them with FERRY_EDISCONNECTED
 * (at-most-once). Re-sent publishes to stored topics are idempotent by
 * default (ferry_options_set_idempotent): one whose PubAck was lost in
 * the break is not stored twice. Fire-and-forget publishes are never
 * re-sent. Returns 0. */
FERRY_API int ferry_options_set_resend_unacked(ferry_options *o, int resend);

/* Idempotent publishing (default on; used while resend is on): every
 * publish that wants a PubAck carries this client's producer id (random,
 * the same across its reconnects) and its publish id as the producer
 * sequence, so that the server stores a re-sent one only if it did not
 * store it before, and answers it with the first one's sequence
 * otherwise (within the server's dedupe_window, default 2 minutes).
 * Ephemeral topics ignore it. on = 0: at-least-once (a re-sent publish
 * whose PubAck was lost is stored twice). Returns 0. */
FERRY_API int ferry_options_set_idempotent(ferry_options *o, int on);

/* Log callback (see ferry_log_cb) and the highest level passed to it
 * (default FERRY_LOG_INFO). cb NULL: no logging (default). Returns 0. */
FERRY_API int ferry_options_set_log_cb(ferry_options *o, ferry_log_cb cb, void *userdata,
                                       enum ferry_log_level max_level);

/* Event callback (see ferry_event_cb). Default none. Returns 0. */
FERRY_API int ferry_options_set_event_cb(ferry_options *o, ferry_event_cb cb, void *userdata);

/* ------------------------------------------------------------------------ */
/* Client                                                                   */

/* Create a client from options (NULL: all defaults). The options are
 * copied; the caller keeps ownership of `o`. *out receives the client, owned
 * by the caller until ferry_client_destroy(). No IO happens yet.
 * Returns 0, -EINVAL (out NULL), -ENOMEM, or -errno from eventfd(2). */
FERRY_API int ferry_client_create(const ferry_options *o, ferry_client **out);

/* Switch to thread mode: start the background IO thread. Call at most once,
 * before ferry_client_connect(). From then on callbacks run on that thread
 * and every function may be called from any thread.
 * Returns 0, -EINVAL (NULL), -EALREADY (already started, or already
 * connected in event-loop mode), FERRY_ECLOSED, or -errno of
 * pthread_create. */
FERRY_API int ferry_client_start_thread(ferry_client *c);

/* Connect: try the servers in order, each with the connect timeout, until
 * one accepts Connect, or all failed once, or timeout_ms passed. Blocks
 * (see THREADING MODEL) unless timeout_ms is 0: then the attempt starts and
 * the call returns -EINPROGRESS at once; the FERRY_EVENT_CONNECTED event (or
 * FERRY_EVENT_DISCONNECTED with the error and the state back at
 * FERRY_STATE_IDLE on failure) tells the outcome, and publishes and
 * async/sync publishes and subscriptions made meanwhile are queued and sent
 * once connected (fire-and-forget publishes return FERRY_ENOTREADY).
 * When the connection is later lost, the reconnect policy applies.
 * Returns 0; -EINPROGRESS (timeout 0); -ETIMEDOUT; the last server's error
 * (-ECONNREFUSED, -EHOSTUNREACH, -ENOENT for a host name that does not
 * resolve, FERRY_EAUTH, FERRY_EVERSION, FERRY_EPROTOCOL, ...); -EALREADY
 * (connected or connecting); -EINVAL; -EDEADLK (from a callback);
 * FERRY_ECLOSED. Any thread in thread mode; the loop thread otherwise. */
FERRY_API int ferry_client_connect(ferry_client *c, int timeout_ms);

/* Close: wait up to timeout_ms for queued publishes to be written and for
 * every outstanding PubAck (as ferry_flush), then send Disconnect, close the
 * socket and stop the IO thread (thread mode). Publishes still waiting fail
 * to their callbacks with FERRY_ECLOSED, blocked callers wake with
 * FERRY_ECLOSED, subscriptions end (queued messages stay readable with
 * ferry_sub_next until it reports FERRY_ECLOSED), then FERRY_EVENT_CLOSED
 * fires. After close, every call but the ferry_msg_*, ferry_sub_next,
 * ferry_client_last_error and destroy functions returns FERRY_ECLOSED.
 * Callbacks that run during close run on the calling thread once the IO
 * thread has stopped. Never from a callback.
 * While flushing, a lost connection is reconnected as usual (by option).
 * Returns 0 (everything was acked), -ETIMEDOUT (closed anyway, some
 * publishes failed), FERRY_EDISCONNECTED (the connection was lost for good
 * while flushing: reconnect off or given up), FERRY_ECLOSED (already
 * closed, or reconnecting had given up before the call), -EINVAL,
 * -EDEADLK. */
FERRY_API int ferry_client_close(ferry_client *c, int timeout_ms);

/* Free the client: ferry_client_close(c, 0) if not closed yet, then every
 * subscription handle and the client. Messages obtained with ferry_sub_next
 * or ferry_msg_copy stay valid (free them with ferry_msg_destroy) but can no
 * longer be acked. No callback runs after ferry_client_destroy() returns.
 * NULL is fine. Never from a callback; no other thread may use c during or
 * after the call. */
FERRY_API void ferry_client_destroy(ferry_client *c);

/* Connection states. */
enum ferry_state {
    FERRY_STATE_IDLE = 0,         /* created, connect not called yet */
    FERRY_STATE_CONNECTING = 1,   /* first connect in progress */
    FERRY_STATE_CONNECTED = 2,    /* handshake done, traffic flows */
    FERRY_STATE_RECONNECTING = 3, /* lost; waiting for/in a new attempt */
    FERRY_STATE_CLOSED = 4,       /* closed or gave up */
};

/* The current state. Any thread (a snapshot). */
FERRY_API enum ferry_state ferry_client_state(ferry_client *c);

/* Copy the text of the client's last error (NUL-terminated, truncated to
 * cap) into buf and return the code it belongs to (0 if none yet). The text
 * names what failed ("connect 127.0.0.1:7373: Connection refused", the
 * server's Error text...). Any thread. buf may be NULL when cap is 0. */
FERRY_API int ferry_client_last_error(ferry_client *c, char *buf, size_t cap);

/* What the server said in Connected. */
enum ferry_sync_policy {
    FERRY_SYNC_ALWAYS = 0,   /* every ack follows an fsync */
    FERRY_SYNC_INTERVAL = 1, /* fsync every sync_interval_ms */
    FERRY_SYNC_NONE = 2,     /* the OS decides when to write */
};

typedef struct ferry_server_info {
    uint32_t protocol_version;
    char server_version[64]; /* NUL-terminated, truncated */
    char server_id[64];      /* NUL-terminated, truncated */
    char address[128];       /* "host:port" connected to */
    uint32_t max_frame_len;  /* negotiated */
    uint32_t keepalive_ms;   /* negotiated */
    enum ferry_sync_policy sync_policy;
    uint32_t sync_interval_ms;
    uint64_t client_id;   /* the server's id for this connection */
    uint64_t reserved[8]; /* zero; room for later fields */
} ferry_server_info;

/* Copy what the server of the current (or last) connection reported into
 * *out. Any thread. Returns 0, -EINVAL, FERRY_ENOTREADY (never connected). */
FERRY_API int ferry_client_server_info(ferry_client *c, ferry_server_info *out);

/* ------------------------------------------------------------------------ */
/* Event-loop mode                                                          */

/* Poll flags of ferry_client_events(); equal to POLLIN/POLLOUT of poll.h on
 * Linux. */
#define FERRY_POLLIN 0x001
#define FERRY_POLLOUT 0x004

/* The descriptor to watch, or -1 while there is none (before connect, and
 * while waiting to reconnect: use ferry_client_timeout_ms()). It changes
 * when the client reconnects: read it again after every
 * ferry_client_process(). Do not read, write or close it.
 * Event-loop mode, the loop thread. Returns the fd, -1, or -EINVAL (thread
 * mode or NULL). */
FERRY_API int ferry_client_fd(ferry_client *c);

/* The events to wait for on ferry_client_fd(): FERRY_POLLIN, plus
 * FERRY_POLLOUT while there are bytes to write or a connect is in progress.
 * Returns the mask (0 when there is no fd), or -EINVAL. */
FERRY_API int ferry_client_events(ferry_client *c);

/* Milliseconds until the next timer is due (keepalive, reconnect backoff,
 * connect and ack timeouts): the longest the loop may sleep before calling
 * ferry_client_process() again. 0: call it now. -1: no timer. */
FERRY_API int ferry_client_timeout_ms(ferry_client *c);

/* Do the client's work: non-blocking reads and writes on the socket
 * (`revents` is the mask poll/epoll reported for ferry_client_fd(), or 0
 * when woken by the timeout; the client tolerates spurious calls), run due
 * timers, and fire callbacks on the calling thread. Never blocks.
 * Event-loop mode, the loop thread, never from a callback.
 * Returns 0 (also after a lost connection that will be reconnected),
 * FERRY_ECLOSED (the client closed or gave up reconnecting: stop polling),
 * -EINVAL (thread mode or NULL), -EDEADLK (from a callback). */
FERRY_API int ferry_client_process(ferry_client *c, int revents);

/* ------------------------------------------------------------------------ */
/* Publishing                                                               */

/* One header of a message: NUL-terminated UTF-8 key and value. */
typedef struct ferry_header {
    const char *key;
    const char *value;
} ferry_header;

/* A message to publish. Every pointer is borrowed for the duration of the
 * publish call only; the library copies what it needs. topic: a concrete
 * topic name (no wildcards). payload may be NULL when payload_len is 0; so
 * may key and headers. At most FERRY_MAX_HEADERS headers. */
typedef struct ferry_pub {
    const char *topic;
    const void *payload;
    size_t payload_len;
    const void *key; /* optional; carried to subscribers */
    size_t key_len;
    const ferry_header *headers; /* optional */
    size_t n_headers;
    /* optional: makes the message a request whose answer is to be published
     * to this concrete topic (ferry.proto Publish.reply_to); subscribers see
     * it as ferry_msg_reply_to() on live deliveries (it is not stored). On
     * an ephemeral topic that nothing subscribes to, the publish fails with
     * FERRY_ENORESPONDERS (async/sync: its status; fire-and-forget: a
     * FERRY_EVENT_ERROR). ferry_request() does all of this for you. */
    const char *reply_to;
    /* optional: deliver no earlier than this (ns since the epoch; 0: now).
     * Stored topics only: the server stores the message at once and appends
     * it to the topic when due, when it gets its sequence (the PubAck's
     * sequence is 0); an ephemeral topic refuses it (FERRY_EINVAL from the
     * server). ferry.proto Publish.deliver_at gives the order rule. */
    int64_t deliver_at;
    /* optional: never delivered more than ttl_ms after it became
     * deliverable (published, or due); retention removes it. 0: never
     * expires. ferry.proto Publish.ttl_ms. */
    uint64_t ttl_ms;
} ferry_pub;

/* Bytes waiting to be written above which fire-and-forget publishes wait. */
#define FERRY_OUTBUF_HIGH (4u * 1024u * 1024u)

/* Fire-and-forget publish of `len` bytes at `data` to `topic` (copied): no
 * PubAck is asked for; a failure the server reports arrives as a
 * FERRY_EVENT_ERROR with ref_kind FERRY_REF_PUBLISH. At most once: bytes not
 * yet written when the connection is lost are dropped. While more than
 * FERRY_OUTBUF_HIGH bytes wait to be written (a slow network), it blocks
 * until they drain or returns -EAGAIN, as ferry_options_set_window_blocks()
 * says (from a callback it returns -EAGAIN); it never blocks otherwise.
 * Returns 0; -EINVAL (NULL topic, data NULL with len > 0, topic with a
 * wildcard or empty token, a string that is not UTF-8); -EAGAIN;
 * FERRY_EFRAMETOOLARGE (bigger than the
 * negotiated frame size); FERRY_ENOTREADY (not connected: nothing is
 * queued); FERRY_ECLOSED; -ENOMEM. Any thread in thread mode. */
FERRY_API int ferry_publish(ferry_client *c, const char *topic, const void *data, size_t len);

/* Fire-and-forget with key and headers: as ferry_publish(). id_out, if not
 * NULL, receives the publish id an Error would refer to. */
FERRY_API int ferry_publish_msg(ferry_client *c, const ferry_pub *m, uint64_t *id_out);

/* Publish and wait up to timeout_ms (> 0) for the PubAck. *seq_out (may be
 * NULL) receives the topic's sequence number (0 on an ephemeral topic).
 * Counts against the window like an async publish (waits for room within
 * the timeout, whatever ferry_options_set_window_blocks() says). While
 * connecting or reconnecting, the publish is queued and sent once
 * connected. Returns 0; the server's code (FERRY_EINVALIDTOPIC, FERRY_EPERM,
 * FERRY_ESTORAGEFULL, ...); -ETIMEDOUT (if it was sent, the message may
 * still be stored later: its ack is ignored); FERRY_EDISCONNECTED;
 * FERRY_ENOTREADY (ferry_client_connect() not called yet); -EINVAL;
 * FERRY_EFRAMETOOLARGE; -EDEADLK (from a callback); FERRY_ECLOSED;
 * -ENOMEM. */
FERRY_API int ferry_publish_sync(ferry_client *c, const ferry_pub *m, int timeout_ms,
                                 uint64_t *seq_out);

/* Publish with a PubAck; cb (may be NULL) is called once with the outcome
 * (see ferry_pub_cb). If the window (ferry_options_set_max_inflight) is
 * full, blocks until there is room or returns -EAGAIN, by option (from a
 * callback it always returns -EAGAIN). While connecting or reconnecting,
 * the publish is queued and sent once connected. id_out (may be NULL)
 * receives the publish id. Returns 0 (cb will be called); -EAGAIN;
 * -EINVAL; FERRY_EFRAMETOOLARGE; FERRY_ENOTREADY (ferry_client_connect()
 * not called yet); FERRY_ECLOSED (cb not called); -ENOMEM. */
FERRY_API int ferry_publish_async(ferry_client *c, const ferry_pub *m, ferry_pub_cb cb,
                                  void *userdata, uint64_t *id_out);

/* Wait up to timeout_ms until every publish made before the call has been
 * written to the socket and every one that asked for a PubAck has been
 * answered (callbacks fired), and the server has answered a Ping sent after
 * them (so fire-and-forget publishes made before were processed too).
 * The same round trip confirms the acks (ferry_msg_ack) sent before the
 * call: the server answers only once they are stored (proto/README.md, the
 * Ack confirmation rule). Acks sent on a connection that was lost before a
 * flush confirmed them cannot be confirmed: the next flush that completes
 * returns FERRY_EDISCONNECTED once (the server may deliver those messages
 * again).
 * While disconnected it keeps waiting (publishes are re-sent or failed
 * after the reconnect, by option). With timeout_ms 0 it only checks, without
 * the Ping round trip, that no publish is waiting for its PubAck. Returns 0 (also at once when
 * nothing is outstanding); -ETIMEDOUT; -EDEADLK; FERRY_ECLOSED;
 * FERRY_EDISCONNECTED (acks were lost with a connection, see above); -EINVAL. */
FERRY_API int ferry_flush(ferry_client *c, int timeout_ms);

/* Publishes waiting for their PubAck now. Any thread (a snapshot). */
FERRY_API size_t ferry_client_inflight(ferry_client *c);

/* Publishes the server answered as duplicates since the client was made:
 * re-sent after a reconnect, stored before (ferry_options_set_idempotent).
 * Any thread (a snapshot). */
FERRY_API uint64_t ferry_client_duplicates(ferry_client *c);

/* ------------------------------------------------------------------------ */
/* Subscribing                                                              */

/* Where a new subscription starts (ferry.proto StartPosition). */
enum ferry_start {
    FERRY_START_NEW = 0,      /* messages published after the subscription */
    FERRY_START_ALL = 1,      /* from the oldest stored message */
    FERRY_START_SEQUENCE = 2, /* from a sequence number, inclusive */
    FERRY_START_TIME = 3,     /* from a time, ns since the epoch */
    FERRY_START_LAST = 4,     /* the last N stored messages, then live */
    /* A last-value topic's (ferryd's last_value PATTERN) current value of
     * every key, in sequence order, then live (tombstones included); see
     * ferry.proto START_LAST_PER_KEY. Not with a durable, a queue group or
     * FERRY_ACK_EXPLICIT. After a reconnect the subscription resumes after
     * the last message it received, with every message from there (each
     * key ends at its newest value). */
    FERRY_START_LAST_PER_KEY = 5,
};

enum ferry_ack_mode {
    FERRY_ACK_NONE = 0,     /* no acks */
    FERRY_ACK_EXPLICIT = 1, /* each delivery is acked with ferry_msg_ack() */
};

/* Kinds of ack (ferry.proto Ack.Kind). */
enum ferry_ack_kind {
    FERRY_ACK = 0,  /* processed; never deliver it again */
    FERRY_NAK = 1,  /* not processed; deliver it again now */
    FERRY_TERM = 2, /* never deliver again, and do not dead-letter */
};

/* Subscription options, defaults at each setter. Create, set, pass to
 * ferry_subscribe() (which copies them), destroy. One thread at a time.
 * Returns 0, -EINVAL (out NULL), -ENOMEM. */
FERRY_API int ferry_sub_options_create(ferry_sub_options **out);
FERRY_API void ferry_sub_options_destroy(ferry_sub_options *o); /* NULL ok */

/* Queue group: subscriptions with the same group on the same pattern share
 * the messages. On a server with an auth file a group belongs, while it has
 * members, to its first member's user: another user's ferry_subscribe()
 * joining it fails with FERRY_EPERM unless an `allow USER group NAME` rule
 * names it or the user is an admin.
 * NULL or "": none (default). Copied. 0, -EINVAL, -ENOMEM. */
FERRY_API int ferry_sub_options_set_queue_group(ferry_sub_options *o, const char *group);

/* Durable name: the server keeps the acked position under this name across
 * reconnects and restarts (requires FERRY_ACK_EXPLICIT, which this sets).
 * On a server with an auth file the durable belongs to the user who
 * created it: another user's ferry_subscribe() to it fails with FERRY_EPERM
 * unless an `allow USER consume PATTERN` rule covers it or the user is an
 * admin. Dead letters go to "$DLQ.<topic>.<name>".
 * NULL or "": not durable (default). Copied. 0, -EINVAL, -ENOMEM. */
FERRY_API int ferry_sub_options_set_durable(ferry_sub_options *o, const char *name);

/* Start position. arg: the sequence (FERRY_START_SEQUENCE, >= 1), the time
 * in ns since the epoch (FERRY_START_TIME), the count (FERRY_START_LAST,
 * >= 1); ignored otherwise (FERRY_START_LAST_PER_KEY: on a topic that is
 * not last-value, ferry_subscribe() fails with FERRY_EINVAL). Default
 * FERRY_START_NEW. 0, -EINVAL. */
FERRY_API int ferry_sub_options_set_start(ferry_sub_options *o, enum ferry_start start,
                                          int64_t arg);

/* Ack mode. Default FERRY_ACK_NONE. With FERRY_ACK_EXPLICIT the server
 * redelivers what is not acked within the ack wait, also without a durable
 * (then for the life of the subscription, shared by its queue group); the
 * pattern must be one stored topic (a wildcard or an ephemeral topic makes
 * ferry_subscribe fail with FERRY_EINVAL), unless the subscription is
 * durable: a durable on a wildcard pattern keeps one position per matching
 * stored topic (ferry_msg_ack() names the message's topic). 0, -EINVAL. */
FERRY_API int ferry_sub_options_set_ack_mode(ferry_sub_options *o, enum ferry_ack_mode mode);

/* With FERRY_ACK_EXPLICIT: deliveries sent but not yet acked at most
 * (0: server default 1024); ack wait before redelivery (0: server default
 * 30 s); deliveries before dead-lettering (0: server default 5). 0. */
FERRY_API int ferry_sub_options_set_max_in_flight(ferry_sub_options *o, uint32_t n);
FERRY_API int ferry_sub_options_set_ack_wait_ms(ferry_sub_options *o, uint32_t ms);
FERRY_API int ferry_sub_options_set_max_deliver(ferry_sub_options *o, uint32_t n);

/* Subscriptions without a callback queue their messages for
 * ferry_sub_next(), at most n (default 65536). When full, further messages
 * are dropped, counted (ferry_sub_dropped) and reported once per burst as a
 * FERRY_EVENT_ERROR with code FERRY_EQUEUEFULL and the sub's id (with
 * FERRY_ACK_EXPLICIT the server redelivers them after the ack wait).
 * 0, -EINVAL (0). */
FERRY_API int ferry_sub_options_set_queue_max(ferry_sub_options *o, size_t n);

/* Subscribe to `pattern` (copied; `*` one token, `>` the rest).
 * opts: NULL for defaults; copied. cb: called for each message (see
 * ferry_msg_cb) with `userdata`; NULL: messages queue for ferry_sub_next().
 * timeout_ms > 0: wait that long for the server's SubAck; 0: do not wait
 * (a refusal then arrives as FERRY_EVENT_ERROR with ref_kind
 * FERRY_REF_SUBSCRIPTION and the handle ends: ferry_sub_next returns the
 * code; the handle must still be released with ferry_unsubscribe). If not
 * connected, the Subscribe is sent once connected. The subscription is
 * re-sent after every reconnect: durables resume by name; a subscription to
 * one stored topic without queue group resumes at the sequence after the
 * last one it received (or where it started, if it received nothing), with
 * no gap and no duplicate; the others (wildcards, queue groups, ephemeral
 * topics) restart from their start position if they received nothing yet,
 * else from "new" (see LIFE OF A CLIENT at the top).
 * *out receives the handle, owned by the caller until ferry_unsubscribe()
 * or ferry_client_destroy().
 * Returns 0; the server's code (FERRY_EINVALIDPATTERN, FERRY_EPERM,
 * FERRY_EDURABLEINUSE, FERRY_ELIMIT ...; nothing to release); -ETIMEDOUT
 * (no SubAck in time: the subscription is cancelled); FERRY_ENOTREADY
 * (timeout_ms > 0 before ferry_client_connect(): use 0 to subscribe
 * ahead of connecting); -EINVAL (NULL,
 * durable without FERRY_ACK_EXPLICIT); -EDEADLK (timeout > 0 from a
 * callback); FERRY_ECLOSED; -ENOMEM. */
FERRY_API int ferry_subscribe(ferry_client *c, const char *pattern, const ferry_sub_options *opts,
                              ferry_msg_cb cb, void *userdata, int timeout_ms, ferry_sub **out);

/* End a subscription and free its handle. Sends Unsubscribe (durables keep
 * their position on the server). No callback for s starts after the call
 * returns, and a callback for s running on another thread has finished (so
 * userdata may be freed); called from s's own callback, the handle is
 * released after that callback returns. Queued messages are discarded.
 * Returns 0, -EINVAL (NULL). Works after close too (just frees). */
FERRY_API int ferry_unsubscribe(ferry_sub *s);

/* Take the next queued message of a subscription made without callback,
 * waiting up to timeout_ms (0: do not wait; -1: forever). *out receives it,
 * owned by the caller (ferry_msg_destroy). Returns 0; -ETIMEDOUT (-EAGAIN
 * with timeout 0); -EINVAL (NULL, or s has a callback); FERRY_ECLOSED
 * (client closed and queue empty); the refusal code of the subscription;
 * -EDEADLK (waiting from a callback). */
FERRY_API int ferry_sub_next(ferry_sub *s, int timeout_ms, ferry_msg **out);

/* The subscription's id (Subscribe.sub_id, Error.ref_id). */
FERRY_API uint64_t ferry_sub_id(const ferry_sub *s);

/* Messages queued for ferry_sub_next() now; messages dropped because the
 * queue was full, since the start. Any thread. */
FERRY_API size_t ferry_sub_pending(ferry_sub *s);
FERRY_API uint64_t ferry_sub_dropped(ferry_sub *s);

/* ------------------------------------------------------------------------ */
/* Messages                                                                 */

/* Accessors. Every returned pointer belongs to the message and lives as
 * long as it does. Any thread (a message is immutable; the caller keeps one
 * thread per message for destroy). */
FERRY_API const char *ferry_msg_topic(const ferry_msg *m);
/* The payload; *len (may be NULL) its size. Never NULL (empty: ""). */
FERRY_API const void *ferry_msg_data(const ferry_msg *m, size_t *len);
/* The key; *len its size (0 and "" when there is none). */
FERRY_API const void *ferry_msg_key(const ferry_msg *m, size_t *len);
/* The topic's sequence number (0 on an ephemeral topic). */
FERRY_API uint64_t ferry_msg_sequence(const ferry_msg *m);
/* When the server accepted it, ns since the epoch. */
FERRY_API int64_t ferry_msg_time(const ferry_msg *m);
/* 1 for the first delivery, 2 on the first redelivery... */
FERRY_API uint32_t ferry_msg_attempt(const ferry_msg *m);
/* Messages missed just before this one (removed by retention). */
FERRY_API uint64_t ferry_msg_missed(const ferry_msg *m);
/* The id of the subscription it was delivered for. */
FERRY_API uint64_t ferry_msg_sub_id(const ferry_msg *m);
/* Where the publisher wants the answer to this message (a request): the
 * topic to publish the reply to, e.g. with ferry_publish() or, keeping the
 * request's headers or key, ferry_publish_msg(). "" when it is not a
 * request, and on messages read back from the store (the server stores no
 * reply_to: a subscription that starts in the past or catches up sees
 * stored requests without it). Never NULL. */
FERRY_API const char *ferry_msg_reply_to(const ferry_msg *m);
/* Headers: their count; the i-th (0-based; returns 0, or -EINVAL when out
 * of range); the value for a key (NULL if absent). */
FERRY_API size_t ferry_msg_n_headers(const ferry_msg *m);
FERRY_API int ferry_msg_header_at(const ferry_msg *m, size_t i, const char **key,
                                  const char **value);
FERRY_API const char *ferry_msg_header(const ferry_msg *m, const char *key);

/* Acknowledge a message of a FERRY_ACK_EXPLICIT subscription (kind: ack,
 * nak, term). Never blocks; safe from callbacks. The client must still
 * exist. Returns 0; -EINVAL (NULL, bad kind, subscription is FERRY_ACK_NONE,
 * sequence 0: a message of an ephemeral topic, which has nothing to ack);
 * FERRY_ENOSUB (unsubscribed); FERRY_ENOTREADY (not connected:
 * the server redelivers after a reconnect); FERRY_ECLOSED; -ENOMEM. */
FERRY_API int ferry_msg_ack(const ferry_msg *m, enum ferry_ack_kind kind);

/* Copy a message (to keep one from a callback). *out owned by the caller.
 * Returns 0, -EINVAL, -ENOMEM. */
FERRY_API int ferry_msg_copy(const ferry_msg *m, ferry_msg **out);

/* Free a message from ferry_sub_next() or ferry_msg_copy() (NULL ok). Never
 * free the one a callback receives. */
FERRY_API void ferry_msg_destroy(ferry_msg *m);

/* ------------------------------------------------------------------------ */
/* Request/reply                                                            */

/*
 * Send a request and wait for one answer: publish `len` bytes at `data` to
 * `topic` (copied) with a reply topic, and wait up to timeout_ms (> 0) for
 * the first message published to that reply topic. *reply receives it,
 * owned by the caller (ferry_msg_destroy); its topic is the reply topic,
 * its sequence 0.
 *
 * How: the first request of a client subscribes it to its inbox,
 * "_INBOX.<random id>.>" (one per client, made once, waiting for the SubAck
 * within the same timeout, and re-subscribed after a reconnect like every
 * subscription); each request publishes with reply_to "_INBOX.<id>.<n>", a
 * new n each time. A responder answers by publishing to
 * ferry_msg_reply_to() of the request it got. The server never stores
 * topics under "_INBOX." (always ephemeral). On a server with an auth file
 * the requester needs the rights to publish to `topic` and to subscribe to
 * "_INBOX.>" (or "_INBOX.<id>.>"); a responder the rights to subscribe to
 * the topic and to publish to "_INBOX.>".
 *
 * No responders: when the topic is ephemeral and nothing subscribes to it,
 * the server says so at once and the call returns FERRY_ENORESPONDERS
 * without waiting for the timeout. On a stored topic the request is stored
 * like any message whether or not anyone listens: with no responder the
 * call times out. Only one answer is taken; later ones (several responders
 * without a queue group) are dropped. The server's refusal of a request
 * is returned here, not reported as a FERRY_EVENT_ERROR.
 *
 * Blocking; same thread rules as ferry_publish_sync (any thread in thread
 * mode; the loop thread in event-loop mode, where the call drives the IO
 * while it waits; never from a callback). Needs a connection now (while
 * reconnecting it fails with FERRY_ENOTREADY rather than queue).
 *
 * Returns 0; FERRY_ENORESPONDERS; -ETIMEDOUT (no answer in time; one that
 * arrives later is dropped); the inbox subscription's refusal (FERRY_EPERM
 * without the right to subscribe to the inbox; ferry_client_last_error()
 * names the inbox); the request's refusal (FERRY_EPERM, FERRY_EINVALIDTOPIC
 * ...); FERRY_EDISCONNECTED (the connection was lost while waiting);
 * FERRY_ENOTREADY; FERRY_ECLOSED; -EINVAL (NULL, timeout_ms <= 0, a bad
 * topic); FERRY_EFRAMETOOLARGE; -EDEADLK (from a callback); -ENOMEM.
 */
FERRY_API int ferry_request(ferry_client *c, const char *topic, const void *data, size_t len,
                            int timeout_ms, ferry_msg **reply);

/* ------------------------------------------------------------------------ */
/* Administration (ferry.proto AdminRequest)                                */

/* Server counters (ferry.proto Stats). Strings NUL-terminated, truncated. */
#define FERRY_COMMIT_HIST_BUCKETS 128
#define FERRY_COMMIT_MSGS_BUCKETS 24
#define FERRY_REFUSED_CODES 32

typedef struct ferry_stats {
    char server_id[64];
    char server_version[64];
    uint64_t uptime_ms;
    uint64_t connections;
    uint64_t connections_total;
    uint64_t subscriptions;
    uint64_t msgs_in;
    uint64_t msgs_out;
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t slow_consumers;
    uint64_t store_bytes;
    uint64_t topics;
    uint64_t protocol_errors;
    uint64_t auth_failures;
    uint64_t permission_denials;
    uint64_t crc_errors;
    uint64_t store_commits;  /* the store writer's group commits */
    uint64_t store_messages; /* messages those commits stored */
    /* Commit latency histogram (ferry.proto Stats.commit_latency_hist):
     * bucket i counts commits of t us with floor(4 * log2(t)) == i; see
     * ferry_stats_commit_percentile(). */
    uint64_t commit_hist[FERRY_COMMIT_HIST_BUCKETS];
    uint64_t store_syncs;        /* syncs (fdatasync) of the store's log */
    uint64_t store_map_size;     /* bytes of the store's map now */
    uint64_t store_map_size_max; /* the most it may grow to */
    /* Each sync's latency, in commit_hist's buckets. */
    uint64_t sync_hist[FERRY_COMMIT_HIST_BUCKETS];
    /* Messages per group commit: bucket 0 counts commits of none, bucket
     * i > 0 commits of n with floor(log2(n)) == i - 1. */
    uint64_t commit_msgs_hist[FERRY_COMMIT_MSGS_BUCKETS];
    /* Publishes refused, by error code: publish_refused[i] counts answers
     * with the wire code i (ferry.proto ErrorCode; FERRY_E* is -1000 - i). */
    uint64_t publish_refused[FERRY_REFUSED_CODES];
    uint64_t store_scheduled; /* delayed messages not yet due (ferry_pub.deliver_at) */
    uint64_t reserved[7];
} ferry_stats;

/* A percentile (0 < p <= 100, e.g. 99.9) of the commit latencies counted in
 * hist (FERRY_COMMIT_HIST_BUCKETS buckets: a ferry_stats' commit_hist, or
 * the bucket-wise difference of two), in microseconds: the upper bound of
 * the bucket where it falls (within about 19%). 0 when hist is empty. */
FERRY_API double ferry_stats_commit_percentile(const uint64_t *hist, double p);

/* One topic (ferry.proto TopicInfo). name is NUL-terminated (topics are at
 * most 255 bytes). */
typedef struct ferry_topic_info {
    char name[256];
    uint64_t messages;
    uint64_t bytes;
    uint64_t first_seq;
    uint64_t last_seq;
    int is_ephemeral;
    uint64_t subscribers; /* live subscriptions matching it (wildcards and
                             each queue group member included); filled by
                             ferry_admin_topic_info(), 0 in
                             ferry_admin_topics() */
    uint64_t reserved[4];
} ferry_topic_info;

/* Each admin call sends one request and waits up to timeout_ms (> 0) for
 * the answer. Blocking; same thread rules as ferry_publish_sync. Each
 * returns 0; the server's code (FERRY_EPERM, FERRY_ENOTOPIC,
 * FERRY_EUNKNOWNMSG if the server has no admin support ...); -ETIMEDOUT;
 * FERRY_ENOTREADY (not connected); FERRY_EDISCONNECTED; -EINVAL; -EDEADLK;
 * FERRY_ECLOSED; -ENOMEM. */
FERRY_API int ferry_admin_stats(ferry_client *c, int timeout_ms, ferry_stats *out);

/* Topics matching pattern (NULL or "": all), at most limit (0: the
 * server's default). *out receives a malloc'd array of *n_out entries,
 * owned by the caller: free it with ferry_free() (NULL when none). */
FERRY_API int ferry_admin_topics(ferry_client *c, const char *pattern, uint32_t limit,
                                 int timeout_ms, ferry_topic_info **out, size_t *n_out);

/* One topic's info into *out. -EINVAL also for a topic longer than 255 bytes
 * (the longest a store holds; name has room for no more). */
FERRY_API int ferry_admin_topic_info(ferry_client *c, const char *topic, int timeout_ms,
                                     ferry_topic_info *out);

/* Remove every stored message of a topic; *purged_out (may be NULL)
 * receives how many. */
FERRY_API int ferry_admin_topic_purge(ferry_client *c, const char *topic, int timeout_ms,
                                      uint64_t *purged_out);

/* One durable consumer (ferry.proto ConsumerInfo). Strings NUL-terminated
 * (truncated to fit; topics are at most 255 bytes, durable names 200). A
 * wildcard durable comes as one entry whose topic is its pattern (its
 * figures summed over its topics; ack_floor and next_seq 0), followed by
 * one entry per topic it has a position on, whose pattern is set. */
typedef struct ferry_consumer_info {
    char topic[256];
    char name[256];
    uint64_t ack_floor;    /* every sequence up to it is done */
    uint64_t next_seq;     /* the next sequence it was never handed */
    uint64_t pending;      /* delivered, not acked */
    uint64_t redelivered;  /* pending messages delivered more than once */
    uint64_t lag_messages; /* the topic's last sequence - ack_floor */
    uint64_t lag_ms;       /* age of the oldest message above ack_floor; 0: caught up */
    char held_by[128];     /* "" when nobody holds it, else e.g. "client 12
                            * 127.0.0.1:5555" or "client 12 127.0.0.1:5555 and 2 more" */
    uint32_t holders;      /* subscriptions bound to it now */
    char queue_group[256]; /* the holders' queue group, "" when none */
    int is_loaded;         /* 1: in the broker's memory; 0: only in its store */
    char pattern[256];     /* a wildcard durable's position: its pattern; else "" */
    uint64_t redeliveries; /* messages handed out again since it was loaded */
    uint64_t dead_letters; /* messages dead-lettered since it was loaded */
    uint64_t reserved[2];
} ferry_consumer_info;

/* Durable consumers on topics matching pattern (NULL or "": all), at most
 * limit (0: the server's default, 1000), both those the broker bound since
 * it started and those only in its store, sorted by topic then name. *out
 * receives a malloc'd array of *n_out entries, owned by the caller: free it
 * with ferry_free() (NULL when none). Besides the codes above:
 * FERRY_EINVALIDPATTERN. */
FERRY_API int ferry_admin_consumers(ferry_client *c, const char *pattern, uint32_t limit,
                                    int timeout_ms, ferry_consumer_info **out, size_t *n_out);

/* Delete the durable consumer name on topic (a wildcard durable: on its
 * pattern, with its position on every topic): its position and unacked set
 * go, from memory and from the store; a later subscription with that name
 * starts a new durable. While a subscription holds it: FERRY_EDURABLEINUSE,
 * unless force is non-zero: then each holding subscription ends (its
 * handle reports FERRY_ECONSUMERDELETED). FERRY_ENOCONSUMER: no such
 * durable. */
FERRY_API int ferry_admin_consumer_delete(ferry_client *c, const char *topic, const char *name,
                                          int force, int timeout_ms);

/*
 * Hot backup.
 *
 * ferry_admin_backup() asks the server for a copy of its store, made while
 * it goes on serving, and hands the copy to cb piece by piece, in order:
 * the bytes of one file, `data.mdb` (result->file), which alone makes a
 * store directory (start ferryd with --data-dir on a directory holding only
 * it). The server first commits everything it acknowledged before it read
 * the request: every publish whose PubAck the caller (or any client) saw
 * before this call is in the copy, and so is every durable consumer
 * position confirmed by then (ferry_flush). The copy is compacted (free
 * pages left out) and usually smaller than the server's file.
 *
 * cb(c, offset, data, len, userdata) receives each piece (offset: where it
 * goes in the file, every earlier byte came before it; data valid during
 * the call only) and returns 0 to go on; a non-zero return stops the
 * backup: the call then returns that value if it is negative, else
 * -ECANCELED. cb runs like every callback (see THREADING MODEL): on the IO
 * thread in thread mode (while it runs the client reads nothing more, so a
 * slow disk slows the server's sending down, never the other way round),
 * inside this call in event-loop mode. No cb runs after this call returns.
 *
 * The call waits until the copy is complete: timeout_ms (> 0) bounds the
 * wait for each answer of the server (the first one, and each next piece),
 * not the whole backup, which takes as long as the store is large. At the
 * end the library checks the size and the CRC-32C of what it handed to cb
 * against the server's, and fills *result (may be NULL).
 *
 * Requires the admin right on a server with an auth file. One backup runs
 * at a time per server. If the call fails, what cb received is not a
 * usable copy. A backup stopped early (cb, timeout) goes on in the server
 * until it is done or the connection closes: close the client to stop it.
 *
 * Returns 0; FERRY_EPERM; FERRY_EBUSY (another backup is running, or the
 * server is too busy to start one now: retry); FERRY_ESTORAGE (the server
 * could not copy its store); FERRY_ESHUTDOWN; FERRY_ECHECKSUM (what arrived
 * is not what the server sent); FERRY_EPROTOCOL (answers out of order);
 * FERRY_EUNKNOWNMSG (a server without backups); -ETIMEDOUT;
 * FERRY_EDISCONNECTED; FERRY_ENOTREADY; FERRY_ECLOSED; -EDEADLK; -EINVAL;
 * -ENOMEM; or cb's error. Blocking; same thread rules as
 * ferry_publish_sync.
 */
typedef int (*ferry_backup_cb)(ferry_client *c, uint64_t offset, const void *data, size_t len,
                               void *userdata);

typedef struct ferry_backup_result {
    char file[64];         /* the file's name in a store directory: "data.mdb" */
    uint64_t size;         /* bytes handed to cb, the file's length */
    uint32_t crc32c;       /* their CRC-32C (ferry_crc32c), as the server computed it */
    int64_t snapshot_time; /* ns since the epoch: every publish acknowledged before
                              it is in the copy */
    uint64_t reserved[4];
} ferry_backup_result;

FERRY_API int ferry_admin_backup(ferry_client *c, ferry_backup_cb cb, void *userdata,
                                 int timeout_ms, ferry_backup_result *result);

/* CRC-32C (Castagnoli, as iSCSI and ext4 use) of data[0..len) continuing
 * from crc (0 to start): ferry_crc32c(ferry_crc32c(0, a, n), b, m) is the
 * CRC of a followed by b. The checksum of backups (ferry_backup_result).
 * Pure; any thread. */
FERRY_API uint32_t ferry_crc32c(uint32_t crc, const void *data, size_t len);

/* Cluster mode (ferry.proto Metadata): the brokers of a cluster, its
 * controller, and which broker owns each placed topic, as the broker asked
 * sees them. Strings NUL-terminated (truncated to fit). */
typedef struct ferry_broker_info {
    uint32_t id;
    char address[128]; /* where clients reach it, "host:port" */
    int is_live;       /* registered in ZooKeeper now */
    uint64_t topics;   /* topics placed on it */
    uint64_t reserved[2];
} ferry_broker_info;

typedef struct ferry_placement {
    char topic[256];
    uint32_t owner;    /* ferry_broker_info.id */
    char address[128]; /* the owner's address */
    uint64_t epoch;    /* the controller epoch that placed it */
} ferry_placement;

typedef struct ferry_metadata {
    char cluster[128];   /* "" when the server is not in a cluster */
    uint32_t broker_id;  /* the broker that answered */
    uint32_t controller; /* 0: none known now */
    uint64_t controller_epoch;
    int is_serving;             /* the answering broker is not fenced */
    int is_truncated;           /* more topics matched than the answer holds */
    ferry_broker_info *brokers; /* malloc'd: free with ferry_free() */
    size_t n_brokers;
    ferry_placement *topics; /* malloc'd: free with ferry_free() */
    size_t n_topics;
} ferry_metadata;

/* The cluster's metadata: placed topics matching pattern (NULL or "": all),
 * at most limit of them (0: the server's default). Returns as the other
 * admin calls; *out's arrays are the caller's (ferry_free each). */
FERRY_API int ferry_admin_metadata(ferry_client *c, const char *pattern, uint32_t limit,
                                   int timeout_ms, ferry_metadata *out);

/* Create topic ahead of its first use: in cluster mode it is placed on a
 * broker, and *out (may be NULL) says which (owner 0 and empty strings
 * from a broker not in a cluster, where this does nothing). Returns as the
 * other admin calls; FERRY_EUNAVAILABLE when it cannot be placed now. */
FERRY_API int ferry_admin_topic_create(ferry_client *c, const char *topic, int timeout_ms,
                                       ferry_placement *out);

/* Free memory the library handed to the caller (ferry_admin_topics,
 * ferry_admin_consumers, ferry_admin_metadata's arrays). NULL ok. Any thread. */
FERRY_API void ferry_free(void *p);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_H */

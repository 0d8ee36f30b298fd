/*
 * client.c - the client's IO engine (socket, frames, timers, reconnect),
 * the two ways to drive it, and callbacks. The public calls that create,
 * connect, flush and close a client are in client_api.c.
 *
 * THE ENGINE. ferry__work() is the whole of the client's IO: given the lock,
 * it advances the connection state machine (start an attempt when the
 * backoff expired, finish a non-blocking connect, read and handle frames,
 * write queued bytes, keepalive, timeouts). It never blocks and never calls
 * user code: what must reach the user is queued as callback items (c->cb_*),
 * which ferry__dispatch() then runs one by one with the lock released. Two
 * drivers call these two: the IO thread (thread mode), and in event-loop mode
 * ferry_client_process() or a blocking call waiting on the loop's thread
 * (ferry__wait()).
 *
 * CONNECTION STATE MACHINE.
 *
 *   IDLE --connect--> CONNECTING --Connected--> CONNECTED --lost--> RECONNECTING
 *    ^                    | all servers failed                        |   ^ |
 *    +--------------------+                          attempt failed --+---+ |
 *   CLOSED <-- close (any state), or reconnect gave up <-------------------+
 *
 * Within CONNECTING and RECONNECTING, c->phase says how far the current
 * attempt got: no socket (waiting for c->next_attempt_at), TCP connect in
 * progress, Connect sent. Any failure of an attempt goes through
 * conn_attempt_failed(); the loss of an established connection through
 * conn_lost(), which decides what becomes of pending publishes.
 */
#include "ferry_int.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FERRY__READ_CHUNK (64u * 1024u)
#define FERRY__READ_BUDGET (1024u * 1024u) /* bytes read per work round */
#define FERRY__DEFAULT_KA_MS 30000u

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */

int64_t ferry__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ferry__deadline(int timeout_ms)
{
    if (timeout_ms < 0) {
        return -1;
    }
    return ferry__now_ms() + timeout_ms;
}

void ferry__seterr(ferry_client *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err_text, sizeof(c->err_text), fmt, ap);
    va_end(ap);
    c->err_code = code;
}

void ferry__log(ferry_client *c, enum ferry_log_level lvl, const char *fmt, ...)
{
    if (c->opts.log_cb == NULL || lvl > c->opts.log_level) {
        return;
    }
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    c->opts.log_cb(c->opts.log_ud, lvl, line);
}

/* Errors set both the last error and, at the level given, the log. */
#define FERRY__FAIL(c, lvl, code, ...)                                                             \
    do {                                                                                           \
        ferry__seterr((c), (code), __VA_ARGS__);                                                   \
        ferry__log((c), (lvl), "%s", (c)->err_text);                                               \
    } while (0)

static uint64_t rng_next(ferry_client *c)
{
    uint64_t x = c->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c->rng = x;
    return x;
}

static const char *server_name(ferry_client *c)
{
    return c->opts.servers[c->server_idx].display;
}

/* A thread is "in a callback" when it is the dispatcher running user code:
 * blocking there would wait for work only that same thread can do. */
int ferry__in_callback(ferry_client *c)
{
    if (c->has_thread && !c->stop_thread) {
        return pthread_equal(pthread_self(), c->io_thread);
    }
    return c->cb_running && pthread_equal(pthread_self(), c->cb_thread);
}

/* ------------------------------------------------------------------------ */
/* Output                                                                   */

/* Make room for n more bytes at the end of the output buffer. */
static int out_reserve(ferry_client *c, size_t n)
{
    struct ferry__outbuf *o = &c->out;
    if (o->off > 0 && o->off == o->len) {
        o->off = o->len = 0;
    }
    if (o->cap - o->len >= n) {
        return 0;
    }
    if (o->off > 0 && o->off >= o->len / 2) {
        memmove(o->data, o->data + o->off, o->len - o->off);
        o->len -= o->off;
        o->off = 0;
        if (o->cap - o->len >= n) {
            return 0;
        }
    }
    size_t cap = o->cap ? o->cap : 16384;
    while (cap - o->len < n) {
        cap *= 2;
    }
    uint8_t *d = realloc(o->data, cap);
    if (d == NULL) {
        return -ENOMEM;
    }
    o->data = d;
    o->cap = cap;
    return 0;
}

int ferry__out_append(ferry_client *c, const uint8_t *p, size_t n)
{
    if (n == 0) {
        return 0;
    }
    int rc = out_reserve(c, n);
    if (rc != 0) {
        return rc;
    }
    memcpy(c->out.data + c->out.len, p, n);
    c->out.len += n;
    return 0;
}

/* Encode a frame straight into the output buffer. */
int ferry__send_frame(ferry_client *c, const Ferry__Frame *f)
{
    size_t need = codec_frame_size(f);
    if (need - FRAME_HDR_LEN > c->max_frame_len) {
        return FERRY_EFRAMETOOLARGE;
    }
    int rc = out_reserve(c, need);
    if (rc != 0) {
        return rc;
    }
    struct ferry__outbuf *o = &c->out;
    size_t n = 0;
    rc = codec_frame_encode(f, o->data + o->len, o->cap - o->len, &n);
    if (rc != 0) {
        return rc;
    }
    o->len += n;
    return 0;
}

int ferry__send_ping(ferry_client *c)
{
    Ferry__Ping ping = FERRY__PING__INIT;
    Ferry__Frame f = FERRY__FRAME__INIT;
    ping.nonce = ++c->ping_nonce;
    f.body_case = FERRY__FRAME__BODY_PING;
    f.ping = &ping;
    return ferry__send_frame(c, &f);
}

static void conn_lost(ferry_client *c, int code, const char *text);
static void conn_attempt_failed(ferry_client *c, int code);

/* The socket's bytes, through TLS when the connection has it: >= 0 as
 * send/recv, or -errno / FERRY_ETLS with the text in c->err_text. */
static ssize_t sock_send(ferry_client *c, const void *p, size_t n)
{
    if (c->tls != NULL) {
        char why[FERRY__ERRTEXT_CAP];
        ssize_t w = ferry__tls_write(c->tls, p, n, why, sizeof(why));
        if (w < 0 && w != -EAGAIN) {
            ferry__seterr(c, (int)w, "to %s: %s", server_name(c), why);
        }
        return w;
    }
    ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
        int err = errno == EWOULDBLOCK ? EAGAIN : errno;
        if (err != EAGAIN && err != EINTR) {
            ferry__seterr(c, -err, "send to %s: %s", server_name(c), strerror(err));
        }
        return -err;
    }
    return w;
}

static ssize_t sock_recv(ferry_client *c, void *p, size_t n)
{
    if (c->tls != NULL) {
        char why[FERRY__ERRTEXT_CAP];
        ssize_t r = ferry__tls_read(c->tls, p, n, why, sizeof(why));
        if (r < 0 && r != -EAGAIN) {
            ferry__seterr(c, (int)r, "from %s: %s", server_name(c), why);
        }
        return r;
    }
    ssize_t r = recv(c->fd, p, n, MSG_DONTWAIT);
    if (r < 0) {
        int err = errno == EWOULDBLOCK ? EAGAIN : errno;
        if (err != EAGAIN && err != EINTR) {
            ferry__seterr(c, -err, "read from %s: %s", server_name(c), strerror(err));
        }
        return -err;
    }
    return r;
}

/* Write what is queued, until done or EAGAIN. Returns 0, or the socket's
 * error after it has been handled (connection lost). */
int ferry__conn_write(ferry_client *c)
{
    struct ferry__outbuf *o = &c->out;
    while (c->fd >= 0 && c->phase >= FERRY__PH_HANDSHAKE && o->off < o->len) {
        ssize_t n = sock_send(c, o->data + o->off, o->len - o->off);
        if (n < 0) {
            int err = (int)n;
            if (err == -EINTR) {
                continue;
            }
            if (err == -EAGAIN) {
                return 0;
            }
            if (c->phase == FERRY__PH_UP) {
                conn_lost(c, err, c->err_text);
            } else {
                conn_attempt_failed(c, err);
            }
            return err;
        }
        o->off += (size_t)n;
        c->last_send = ferry__now_ms();
    }
    if (o->off == o->len) {
        o->off = o->len = 0;
        /* Give a large buffer back once it is idle. */
        if (o->cap > 1024u * 1024u) {
            free(o->data);
            o->data = NULL;
            o->cap = 0;
        }
    }
    return 0;
}

/* The caller queued output or changed timers: get the driver to act. */
void ferry__kick(ferry_client *c)
{
    if (c->has_thread && !c->stop_thread) {
        if (c->io_sleeping && !pthread_equal(pthread_self(), c->io_thread)) {
            uint64_t one = 1;
            ssize_t n = write(c->wake_fd, &one, sizeof(one));
            (void)n; /* EAGAIN: the counter is saturated, the thread wakes anyway */
            c->io_sleeping = 0;
        }
        return;
    }
    /* Event-loop mode: we are on the loop's thread and may write now, which
     * saves a loop iteration per publish. */
    if (c->fd >= 0 && c->phase == FERRY__PH_UP) {
        ferry__conn_write(c);
    }
}

/* ------------------------------------------------------------------------ */
/* Callback queue                                                           */

void ferry__cb_push(ferry_client *c, struct ferry__cbitem *it)
{
    it->next = NULL;
    if (c->cb_tail != NULL) {
        c->cb_tail->next = it;
    } else {
        c->cb_head = it;
    }
    c->cb_tail = it;
}

void ferry__event(ferry_client *c, enum ferry_event_type type, int code, const char *text,
                  uint64_t ref_id, enum ferry_ref_kind ref_kind, int is_fatal)
{
    if (c->opts.event_cb == NULL) {
        return;
    }
    if (text == NULL) {
        text = "";
    }
    const char *server = c->opts.servers[c->server_idx].display;
    size_t tl = strlen(text) + 1;
    size_t sl = strlen(server) + 1;
    struct ferry__cbitem *it = calloc(1, sizeof(*it) + tl + sl);
    if (it == NULL) {
        ferry__log(c, FERRY_LOG_ERROR, "out of memory: event %d (%s) lost", (int)type, text);
        return;
    }
    char *tail = (char *)(it + 1);
    memcpy(tail, text, tl);
    memcpy(tail + tl, server, sl);
    it->kind = FERRY__CB_EVENT;
    it->ev.type = type;
    it->ev.code = code;
    it->ev.text = tail;
    it->ev.server = tail + tl;
    it->ev.ref_id = ref_id;
    it->ev.ref_kind = ref_kind;
    it->ev.is_fatal = is_fatal;
    ferry__cb_push(c, it);
}

/* Run queued callbacks, with c->mu released during each. Only the
 * dispatcher thread gets here, so callbacks never overlap. */
void ferry__dispatch(ferry_client *c)
{
    if (c->cb_running) {
        return; /* a callback of ours is on the stack: it finishes first */
    }
    struct ferry__cbitem *it;
    while ((it = c->cb_head) != NULL) {
        c->cb_head = it->next;
        if (c->cb_head == NULL) {
            c->cb_tail = NULL;
        }
        c->cb_running = 1;
        c->cb_thread = pthread_self();
        switch (it->kind) {
        case FERRY__CB_PUB:
            pthread_mutex_unlock(&c->mu);
            it->pub_cb(c, it->status, it->seq, it->pub_ud);
            pthread_mutex_lock(&c->mu);
            c->n_pub_cb_done++;
            break;
        case FERRY__CB_MSG:
            if (!it->sub->is_closed) {
                c->cb_sub = it->sub;
                pthread_mutex_unlock(&c->mu);
                it->sub->cb(c, it->sub, it->msg, it->sub->ud);
                pthread_mutex_lock(&c->mu);
                c->cb_sub = NULL;
            }
            ferry__sub_unref(it->sub);
            free(it->msg);
            break;
        case FERRY__CB_EVENT:
            pthread_mutex_unlock(&c->mu);
            c->opts.event_cb(c, &it->ev, c->opts.event_ud);
            pthread_mutex_lock(&c->mu);
            break;
        case FERRY__CB_BACKUP:
            ferry__backup_dispatch(c, it);
            break;
        }
        c->cb_running = 0;
        free(it);
        pthread_cond_broadcast(&c->cond);
    }
}

void ferry__cbq_free(ferry_client *c)
{
    struct ferry__cbitem *it;
    while ((it = c->cb_head) != NULL) {
        c->cb_head = it->next;
        if (it->kind == FERRY__CB_MSG) {
            ferry__sub_unref(it->sub);
            free(it->msg);
        }
        free(it);
    }
    c->cb_tail = NULL;
}

/* ------------------------------------------------------------------------ */
/* Connection attempts                                                      */

static void conn_free_addrs(ferry_client *c)
{
    if (c->addrs != NULL) {
        freeaddrinfo(c->addrs);
    }
    c->addrs = c->addr_next = NULL;
}

void ferry__conn_close_socket(ferry_client *c)
{
    c->n_sockets_closed++;
    ferry__tls_close(c->tls);
    c->tls = NULL;
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    conn_free_addrs(c);
    c->phase = FERRY__PH_NONE;
    frame_dec_deinit(&c->dec);
    codec_arena_reset(&c->arena);
    c->out.off = c->out.len = 0;
}

static int64_t backoff_ms(ferry_client *c, uint32_t attempt)
{
    uint64_t d = c->opts.reconnect_initial_ms;
    for (uint32_t i = 1; i < attempt && d < c->opts.reconnect_max_ms; i++) {
        d *= 2;
    }
    if (d > c->opts.reconnect_max_ms) {
        d = c->opts.reconnect_max_ms;
    }
    uint64_t jitter = d * c->opts.reconnect_jitter_pct / 100;
    if (jitter > 0) {
        d -= rng_next(c) % (jitter + 1);
    }
    return (int64_t)d;
}

static void give_up(ferry_client *c, int code)
{
    c->state = FERRY_STATE_CLOSED;
    ferry__conn_close_socket(c);
    ferry__pubs_fail_all(c, FERRY_EDISCONNECTED);
    ferry__admin_fail_all(c, FERRY_EDISCONNECTED);
    ferry__reqs_fail_all(c, FERRY_EDISCONNECTED);
    ferry__subs_close_all(c);
    FERRY__FAIL(c, FERRY_LOG_ERROR, code, "gave up reconnecting after %u attempts: %s",
                c->n_attempts, ferry_strerror(c->err_code ? c->err_code : code));
    ferry__event(c, FERRY_EVENT_CLOSED, code, c->err_text, 0, FERRY_REF_NONE, 0);
}

/* One attempt (TCP connect or handshake) failed with code. */
static void conn_attempt_failed(ferry_client *c, int code)
{
    ferry__conn_close_socket(c);
    int64_t now = ferry__now_ms();
    if (c->state == FERRY_STATE_CONNECTING) {
        c->n_tries++;
        if (c->n_tries < c->opts.n_servers) {
            c->server_idx = (c->server_idx + 1) % c->opts.n_servers;
            c->next_attempt_at = now;
            return;
        }
        /* Every server failed once: the first connect fails (a cluster's
         * child, cluster.h, goes on trying its broker as a reconnect). */
        if (c->clu_parent == NULL) {
            c->state = FERRY_STATE_IDLE;
            c->connect_result = code;
            ferry__pubs_fail_all(c, code);
            ferry__event(c, FERRY_EVENT_DISCONNECTED, code, c->err_text, 0, FERRY_REF_NONE, 0);
            return;
        }
        c->state = FERRY_STATE_RECONNECTING;
    }
    if (c->state != FERRY_STATE_RECONNECTING) {
        return;
    }
    c->n_attempts++;
    if (c->opts.reconnect_max_attempts != 0 && c->n_attempts >= c->opts.reconnect_max_attempts) {
        give_up(c, FERRY_ERECONNECTFAILED);
        return;
    }
    c->server_idx = (c->server_idx + 1) % c->opts.n_servers;
    c->next_attempt_at = now + backoff_ms(c, c->n_attempts);
    ferry__log(c, FERRY_LOG_INFO, "reconnect attempt %u failed (%s); next in %lld ms",
               c->n_attempts, ferry_strerror(code), (long long)(c->next_attempt_at - now));
}

/* An established connection is gone. */
static void conn_lost(ferry_client *c, int code, const char *text)
{
    char why[FERRY__ERRTEXT_CAP];
    snprintf(why, sizeof(why), "%s", text != NULL ? text : ferry_strerror(code));
    ferry__conn_close_socket(c);
    ferry__log(c, FERRY_LOG_WARN, "connection to %s lost: %s", server_name(c), why);
    ferry__event(c, FERRY_EVENT_DISCONNECTED, code, why, 0, FERRY_REF_NONE, 0);
    ferry__admin_fail_all(c, FERRY_EDISCONNECTED);
    ferry__reqs_fail_all(c, FERRY_EDISCONNECTED);
    ferry__subs_on_lost(c);
    if (!c->opts.reconnect) {
        c->n_attempts = 0;
        ferry__pubs_on_lost(c, FERRY_EDISCONNECTED, 0);
        c->state = FERRY_STATE_CLOSED;
        ferry__pubs_fail_all(c, FERRY_EDISCONNECTED);
        ferry__subs_close_all(c);
        ferry__seterr(c, code, "%s", why);
        ferry__event(c, FERRY_EVENT_CLOSED, code, why, 0, FERRY_REF_NONE, 0);
        return;
    }
    ferry__pubs_on_lost(c, FERRY_EDISCONNECTED, c->opts.resend_unacked);
    c->state = FERRY_STATE_RECONNECTING;
    c->n_attempts = 0;
    /* The first attempt at once, at the next server of the list. */
    c->server_idx = (c->server_idx + 1) % c->opts.n_servers;
    c->next_attempt_at = ferry__now_ms();
}

static int send_connect(ferry_client *c)
{
    Ferry__Connect m = FERRY__CONNECT__INIT;
    Ferry__Frame f = FERRY__FRAME__INIT;
    m.protocol_version = CODEC_PROTOCOL_VERSION;
    m.client_name = c->opts.name != NULL ? c->opts.name : "libferry";
    m.token = c->opts.token != NULL ? c->opts.token : "";
    m.username = c->opts.user != NULL ? c->opts.user : "";
    m.password = c->opts.password != NULL ? c->opts.password : "";
    m.keepalive_ms = c->opts.keepalive_ms;
    f.body_case = FERRY__FRAME__BODY_CONNECT;
    f.connect = &m;
    return ferry__send_frame(c, &f);
}

/* TCP is up: send Connect and wait for Connected. */
static void conn_handshake_start(ferry_client *c)
{
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->phase = FERRY__PH_HANDSHAKE;
    frame_dec_init(&c->dec, FRAME_MAX_LEN_DEFAULT);
    c->max_frame_len = FRAME_MAX_LEN_DEFAULT;
    c->out.off = c->out.len = 0;
    int rc = send_connect(c);
    if (rc != 0) {
        FERRY__FAIL(c, FERRY_LOG_ERROR, rc, "connect %s: cannot encode Connect: %s", server_name(c),
                    ferry_strerror(rc));
        conn_attempt_failed(c, rc);
        return;
    }
    c->last_recv = ferry__now_ms();
    ferry__conn_write(c);
}

/* One step of the TLS handshake; once done, the ferry handshake. */
static void conn_tls_step(ferry_client *c)
{
    char why[FERRY__ERRTEXT_CAP];
    int rc = ferry__tls_handshake(c->tls, why, sizeof(why));
    if (rc == 1) {
        return;
    }
    if (rc < 0) {
        FERRY__FAIL(c, FERRY_LOG_WARN, rc, "connect %s: %s", server_name(c), why);
        conn_attempt_failed(c, rc);
        return;
    }
    conn_handshake_start(c);
}

/* TCP is up: TLS first if this server speaks it, then Connect. */
static void conn_tcp_up(ferry_client *c)
{
    const struct ferry__server *s = &c->opts.servers[c->server_idx];
    if (!s->is_tls && !c->opts.use_tls) {
        conn_handshake_start(c);
        return;
    }
    char why[FERRY__ERRTEXT_CAP];
    int rc = 0;
    if (c->tls_ctx == NULL) {
        rc = ferry__tls_ctx_open(&c->opts, &c->tls_ctx, why, sizeof(why));
    }
    if (rc == 0) {
        rc = ferry__tls_open(c->tls_ctx, c->fd, s->host, c->opts.tls_verify_name, &c->tls, why,
                             sizeof(why));
    }
    if (rc != 0) {
        FERRY__FAIL(c, FERRY_LOG_ERROR, rc, "connect %s: %s", s->display, why);
        conn_attempt_failed(c, rc);
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->phase = FERRY__PH_TLS;
    conn_tls_step(c);
}

/* Connect to the next address of the current attempt. Returns 0 when a
 * connect is under way (or done), else the last error (addresses used up;
 * the caller fails the attempt). */
static int conn_try_next(ferry_client *c)
{
    int code = -ECONNREFUSED;
    while (c->addr_next != NULL) {
        struct addrinfo *ai = c->addr_next;
        c->addr_next = ai->ai_next;
        int fd =
            socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            code = -errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            c->fd = fd;
            conn_free_addrs(c);
            conn_tcp_up(c);
            return 0;
        }
        if (errno == EINPROGRESS) {
            c->fd = fd;
            c->phase = FERRY__PH_TCP;
            return 0;
        }
        code = -errno;
        close(fd);
    }
    return code;
}

/* Start an attempt at c->opts.servers[c->server_idx]: every address the
 * name resolves to is tried in turn, within one connect timeout. */
static void conn_start(ferry_client *c)
{
    const struct ferry__server *s = &c->opts.servers[c->server_idx];
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    struct addrinfo *res = NULL;
    /* Name resolution blocks (getaddrinfo has no non-blocking form), so it
     * runs without the lock (s is immutable); if the attempt was dropped
     * meanwhile (connect timed out, close), its result is thrown away.
     * Numeric addresses and /etc/hosts names resolve at once. */
    uint64_t gen = ++c->n_sockets_closed;
    pthread_mutex_unlock(&c->mu);
    int gai = getaddrinfo(s->host, s->port, &hints, &res);
    int gai_errno = errno;
    pthread_mutex_lock(&c->mu);
    int connecting = c->state == FERRY_STATE_CONNECTING || c->state == FERRY_STATE_RECONNECTING;
    if (gen != c->n_sockets_closed || !connecting || c->fd >= 0 || c->stop_thread) {
        if (gai == 0) {
            freeaddrinfo(res);
        }
        return;
    }
    if (gai != 0) {
        errno = gai_errno;
        int code = gai == EAI_SYSTEM ? -errno : -ENOENT;
        if (code == 0) {
            code = -ENOENT;
        }
        FERRY__FAIL(c, FERRY_LOG_WARN, code, "connect %s: %s", s->display, gai_strerror(gai));
        conn_attempt_failed(c, code);
        return;
    }
    conn_free_addrs(c);
    c->addrs = c->addr_next = res;
    c->phase_deadline = ferry__now_ms() + c->opts.connect_timeout_ms;
    ferry__log(c, FERRY_LOG_DEBUG, "connecting to %s", s->display);
    int code = conn_try_next(c);
    if (code != 0) {
        FERRY__FAIL(c, FERRY_LOG_WARN, code, "connect %s: %s", s->display, strerror(-code));
        conn_attempt_failed(c, code);
    }
}

/* The TCP connect may have finished. */
static void conn_check_tcp(ferry_client *c)
{
    struct pollfd p = {.fd = c->fd, .events = POLLOUT};
    if (poll(&p, 1, 0) <= 0 || (p.revents & (POLLOUT | POLLERR | POLLHUP)) == 0) {
        return;
    }
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        err = errno;
    }
    if (err != 0) {
        FERRY__FAIL(c, FERRY_LOG_WARN, -err, "connect %s: %s", server_name(c), strerror(err));
        close(c->fd);
        c->fd = -1;
        c->phase = FERRY__PH_NONE;
        if (conn_try_next(c) != 0) { /* another address of the name? */
            conn_attempt_failed(c, -err);
        }
        return;
    }
    conn_free_addrs(c);
    conn_tcp_up(c);
}

/* ------------------------------------------------------------------------ */
/* Frames from the server                                                   */

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src != NULL ? src : "");
}

static void on_connected(ferry_client *c, const Ferry__Connected *m)
{
    c->phase = FERRY__PH_UP;
    c->conn_gen++;
    if (c->ack_gen != 0) {
        c->has_lost_acks = 1; /* sent on a connection that is gone, unconfirmed */
        c->ack_gen = 0;
    }
    memset(&c->info, 0, sizeof(c->info));
    c->info.protocol_version = m->protocol_version;
    copy_str(c->info.server_version, sizeof(c->info.server_version), m->server_version);
    copy_str(c->info.server_id, sizeof(c->info.server_id), m->server_id);
    copy_str(c->info.address, sizeof(c->info.address), server_name(c));
    c->info.max_frame_len = m->max_frame_len;
    c->info.keepalive_ms = m->keepalive_ms;
    c->info.sync_policy = (enum ferry_sync_policy)m->sync_policy;
    c->info.sync_interval_ms = m->sync_interval_ms;
    c->info.client_id = m->client_id;
    c->has_info = 1;
    uint32_t mfl = m->max_frame_len;
    if (mfl == 0 || mfl > FRAME_MAX_LEN_CEILING) {
        mfl = FRAME_MAX_LEN_DEFAULT;
    }
    c->max_frame_len = mfl;
    frame_dec_set_max(&c->dec, mfl);
    c->ka_ms = m->keepalive_ms != 0 ? m->keepalive_ms : FERRY__DEFAULT_KA_MS;
    int was_connected = c->has_connected;
    c->has_connected = 1;
    c->state = FERRY_STATE_CONNECTED;
    c->n_attempts = 0;
    c->n_tries = 0;
    c->connect_result = 0;
    ferry__log(c, FERRY_LOG_INFO, "connected to %s (server %s %s, keepalive %u ms)", server_name(c),
               c->info.server_id, c->info.server_version, c->ka_ms);
    /* Subscriptions first, then the publishes waiting for acks. */
    ferry__subs_on_connected(c);
    ferry__pubs_on_connected(c);
    ferry__event(c, was_connected ? FERRY_EVENT_RECONNECTED : FERRY_EVENT_CONNECTED, 0,
                 server_name(c), 0, FERRY_REF_NONE, 0);
}

static void on_error_frame(ferry_client *c, const Ferry__Error *e)
{
    int code = FERRY_ERR_FROM_WIRE(e->code);
    if (e->code == FERRY__ERROR_CODE__ERROR_NONE) {
        code = FERRY_EINTERNAL;
    }
    FERRY__FAIL(c, FERRY_LOG_WARN, code, "server %s: %s (%s)", server_name(c), e->text,
                ferry_strerror(code));
    if (c->phase == FERRY__PH_HANDSHAKE) {
        conn_attempt_failed(c, code);
        return;
    }
    enum ferry_ref_kind kind = (enum ferry_ref_kind)e->ref_kind;
    if (kind == FERRY_REF_PUBLISH) {
        ferry__pub_on_ack(c, e->ref_id, code, 0);
        if (ferry__req_on_pub_error(c, e->ref_id, code)) {
            return; /* ferry_request() returns it: no event */
        }
    } else if (kind == FERRY_REF_SUBSCRIPTION) {
        ferry__sub_on_suback(c, e->ref_id, code, e->text, 0, 1);
    }
    ferry__event(c, FERRY_EVENT_ERROR, code, e->text, e->ref_id, kind, e->is_fatal);
}

/* Handle one decoded frame. May end the connection. */
static void on_frame(ferry_client *c, const Ferry__Frame *f)
{
    if (c->phase == FERRY__PH_HANDSHAKE) {
        switch (f->body_case) {
        case FERRY__FRAME__BODY_CONNECTED:
            on_connected(c, f->connected);
            return;
        case FERRY__FRAME__BODY_ERROR:
            on_error_frame(c, f->error);
            return;
        case FERRY__FRAME__BODY_DISCONNECT: {
            int code = FERRY_ERR_FROM_WIRE(f->disconnect->code);
            FERRY__FAIL(c, FERRY_LOG_WARN, code, "server %s refused: %s", server_name(c),
                        f->disconnect->text);
            conn_attempt_failed(c, code);
            return;
        }
        default:
            FERRY__FAIL(c, FERRY_LOG_ERROR, FERRY_EPROTOCOL, "server %s sent %s before Connected",
                        server_name(c), codec_frame_name(f));
            conn_attempt_failed(c, FERRY_EPROTOCOL);
            return;
        }
    }
    switch (f->body_case) {
    case FERRY__FRAME__BODY_PUB_ACK: {
        const Ferry__PubAck *a = f->pub_ack;
        int code = a->code == FERRY__ERROR_CODE__ERROR_NONE ? 0 : FERRY_ERR_FROM_WIRE(a->code);
        if (code != 0) {
            ferry__seterr(c, code, "publish %llu: %s", (unsigned long long)a->id,
                          a->text[0] ? a->text : ferry_strerror(code));
        }
        if (code == 0 && a->duplicate) {
            c->n_duplicates++;
        }
        ferry__pub_on_ack(c, a->id, code, a->sequence);
        break;
    }
    case FERRY__FRAME__BODY_SUB_ACK: {
        const Ferry__SubAck *a = f->sub_ack;
        int code = a->code == FERRY__ERROR_CODE__ERROR_NONE ? 0 : FERRY_ERR_FROM_WIRE(a->code);
        if (code != 0) {
            ferry__seterr(c, code, "subscription %llu: %s", (unsigned long long)a->sub_id,
                          a->text[0] ? a->text : ferry_strerror(code));
        }
        ferry__sub_on_suback(c, a->sub_id, code, a->text, a->next_sequence, 0);
        break;
    }
    case FERRY__FRAME__BODY_DELIVER:
        ferry__sub_on_deliver(c, f->deliver);
        break;
    case FERRY__FRAME__BODY_PING: {
        Ferry__Pong pong = FERRY__PONG__INIT;
        Ferry__Frame r = FERRY__FRAME__INIT;
        pong.nonce = f->ping->nonce;
        r.body_case = FERRY__FRAME__BODY_PONG;
        r.pong = &pong;
        if (ferry__send_frame(c, &r) != 0) {
            ferry__log(c, FERRY_LOG_ERROR, "out of memory answering Ping");
        }
        break;
    }
    case FERRY__FRAME__BODY_PONG:
        if (f->pong->nonce > c->pong_seen && f->pong->nonce <= c->ping_nonce) {
            c->pong_seen = f->pong->nonce;
        }
        break;
    case FERRY__FRAME__BODY_ERROR:
        on_error_frame(c, f->error);
        break;
    case FERRY__FRAME__BODY_DISCONNECT: {
        int code = f->disconnect->code == FERRY__ERROR_CODE__ERROR_NONE
                       ? FERRY_EDISCONNECTED
                       : FERRY_ERR_FROM_WIRE(f->disconnect->code);
        ferry__seterr(c, code, "server %s said goodbye: %s", server_name(c),
                      f->disconnect->text[0] ? f->disconnect->text : ferry_strerror(code));
        conn_lost(c, code, c->err_text);
        break;
    }
    case FERRY__FRAME__BODY_ADMIN_REPLY:
        ferry__admin_on_reply(c, f->admin_reply);
        break;
    default:
        /* A client-to-server message from the server: ignore it, as the
         * protocol's compatibility rule asks of a receiver that is not the
         * server. */
        ferry__log(c, FERRY_LOG_WARN, "ignoring unexpected %s from %s", codec_frame_name(f),
                   server_name(c));
        break;
    }
}

/* Read what the socket has (bounded per round) and handle every frame. */
static void conn_read(ferry_client *c)
{
    int fd = c->fd;
    size_t budget = FERRY__READ_BUDGET;
    while (c->fd == fd && budget > 0) {
        uint8_t *p;
        size_t n;
        int rc = frame_dec_space(&c->dec, FERRY__READ_CHUNK, &p, &n);
        if (rc != 0) {
            FERRY__FAIL(c, FERRY_LOG_ERROR, rc, "from %s: %s", server_name(c), ferry_strerror(rc));
            goto fail;
        }
        ssize_t got = sock_recv(c, p, n);
        if (got < 0) {
            if (got == -EINTR) {
                continue;
            }
            if (got == -EAGAIN) {
                return;
            }
            ferry__log(c, FERRY_LOG_WARN, "%s", c->err_text);
            goto fail;
        }
        if (got == 0) {
            rc = -ECONNRESET;
            FERRY__FAIL(c, FERRY_LOG_WARN, rc, "%s closed the connection", server_name(c));
            goto fail;
        }
        frame_dec_commit(&c->dec, (size_t)got);
        budget = (size_t)got >= budget ? 0 : budget - (size_t)got;
        c->last_recv = ferry__now_ms();
        for (;;) {
            const uint8_t *body;
            size_t body_len;
            rc = frame_dec_next(&c->dec, &body, &body_len);
            if (rc == 0) {
                break;
            }
            if (rc < 0) {
                FERRY__FAIL(c, FERRY_LOG_ERROR, rc, "bad frame from %s: %s", server_name(c),
                            ferry_strerror(rc));
                goto fail;
            }
            Ferry__Frame *f;
            rc = codec_frame_decode(&c->arena, body, body_len, &f);
            if (rc != 0) {
                FERRY__FAIL(c, FERRY_LOG_ERROR, rc, "undecodable frame from %s: %s", server_name(c),
                            ferry_strerror(rc));
                goto fail;
            }
            on_frame(c, f);
            if (c->fd != fd) {
                return; /* the frame ended the connection */
            }
        }
    }
    return;
fail : {
    int code = c->err_code;
    if (c->phase == FERRY__PH_UP) {
        conn_lost(c, code, c->err_text);
    } else {
        conn_attempt_failed(c, code);
    }
}
}

/* ------------------------------------------------------------------------ */
/* The engine                                                               */

/* Do every piece of due work. Lock held; never blocks; no user code. */
void ferry__work(ferry_client *c)
{
    int64_t now = ferry__now_ms();
    int connecting = c->state == FERRY_STATE_CONNECTING || c->state == FERRY_STATE_RECONNECTING;
    if (connecting && c->fd < 0 && now >= c->next_attempt_at) {
        conn_start(c);
    }
    if (c->fd >= 0 && c->phase == FERRY__PH_TCP) {
        conn_check_tcp(c);
    }
    if (c->fd >= 0 && c->phase == FERRY__PH_TLS) {
        conn_tls_step(c);
    }
    if (c->fd >= 0 && c->phase >= FERRY__PH_HANDSHAKE) {
        conn_read(c);
    }
    now = ferry__now_ms();
    if (c->fd >= 0 && c->phase != FERRY__PH_UP && now >= c->phase_deadline) {
        FERRY__FAIL(c, FERRY_LOG_WARN, -ETIMEDOUT, "connect %s: timed out", server_name(c));
        conn_attempt_failed(c, -ETIMEDOUT);
        if (c->state == FERRY_STATE_CONNECTING && c->fd < 0 && now >= c->next_attempt_at) {
            conn_start(c);
        }
    }
    if (c->fd >= 0 && c->phase == FERRY__PH_UP) {
        if (now - c->last_recv > 2 * (int64_t)c->ka_ms) {
            FERRY__FAIL(c, FERRY_LOG_WARN, FERRY_EKEEPALIVE, "%s silent for %lld ms",
                        server_name(c), (long long)(now - c->last_recv));
            conn_lost(c, FERRY_EKEEPALIVE, c->err_text);
        } else if (now - c->last_send >= (int64_t)c->ka_ms / 2) {
            /* Ping at half the interval: the server allows 1.5x. */
            if (ferry__send_ping(c) != 0) {
                ferry__log(c, FERRY_LOG_ERROR, "out of memory sending Ping");
            }
            c->last_send = now;
        }
    }
    ferry__pubs_timers(c, now);
    if (c->fd >= 0 && c->out.off < c->out.len) {
        ferry__conn_write(c);
    }
}

/* When the engine next needs to run, ms monotonic, or -1. */
int64_t ferry__next_timer(ferry_client *c)
{
    int64_t t = -1;
#define FERRY__MIN_T(x)                                                                            \
    do {                                                                                           \
        int64_t x_ = (x);                                                                          \
        if (t < 0 || x_ < t) {                                                                     \
            t = x_;                                                                                \
        }                                                                                          \
    } while (0)
    int connecting = c->state == FERRY_STATE_CONNECTING || c->state == FERRY_STATE_RECONNECTING;
    if (connecting && c->fd < 0) {
        FERRY__MIN_T(c->next_attempt_at);
    }
    if (c->fd >= 0 && c->phase != FERRY__PH_UP) {
        FERRY__MIN_T(c->phase_deadline);
    }
    if (c->tls != NULL && ferry__tls_pending(c->tls)) {
        FERRY__MIN_T(ferry__now_ms()); /* decrypted bytes wait: no poll will say so */
    }
    if (c->fd >= 0 && c->phase == FERRY__PH_UP) {
        FERRY__MIN_T(c->last_send + c->ka_ms / 2);
        FERRY__MIN_T(c->last_recv + 2 * (int64_t)c->ka_ms + 1);
    }
    int64_t p = ferry__pubs_next_deadline(c);
    if (p > 0) {
        FERRY__MIN_T(p);
    }
#undef FERRY__MIN_T
    return t;
}

int ferry__poll_events(ferry_client *c)
{
    if (c->fd < 0) {
        return 0;
    }
    if (c->phase == FERRY__PH_TCP) {
        return POLLIN | POLLOUT; /* writable = connected; errors show either way */
    }
    int tls_ev = c->tls != NULL ? ferry__tls_events(c->tls) : 0;
    if (c->phase == FERRY__PH_TLS) {
        return tls_ev ? tls_ev : POLLIN;
    }
    return POLLIN | tls_ev | (c->out.off < c->out.len ? POLLOUT : 0);
}

/* One round of the driver: sleep in poll() (lock released) until the socket
 * is ready, the wake fd fires, the next timer, or `deadline` (ms monotonic,
 * -1 none), then work and dispatch. */
static void io_round(ferry_client *c, int64_t deadline)
{
    struct pollfd pfd[2];
    int n = 0;
    int fd = c->fd;
    if (fd >= 0) {
        pfd[n].fd = fd;
        pfd[n].events = (short)ferry__poll_events(c);
        pfd[n].revents = 0;
        n++;
    }
    int wake_i = -1;
    if (c->has_thread) {
        wake_i = n;
        pfd[n].fd = c->wake_fd;
        pfd[n].events = POLLIN;
        pfd[n].revents = 0;
        n++;
    }
    int64_t t = ferry__next_timer(c);
    if (deadline >= 0 && (t < 0 || deadline < t)) {
        t = deadline;
    }
    int timeout = -1;
    if (t >= 0) {
        int64_t d = t - ferry__now_ms();
        timeout = d <= 0 ? 0 : d > 60000 ? 60000 : (int)d;
    }
    if (c->cb_head != NULL) {
        timeout = 0;
    }
    if (c->has_thread) {
        c->io_sleeping = 1;
    }
    pthread_mutex_unlock(&c->mu);
    int rc = poll(pfd, (nfds_t)n, timeout);
    pthread_mutex_lock(&c->mu);
    c->io_sleeping = 0;
    if (rc > 0 && wake_i >= 0 && (pfd[wake_i].revents & POLLIN)) {
        uint64_t v;
        ssize_t r = read(c->wake_fd, &v, sizeof(v));
        (void)r;
    }
    if (c->state != FERRY_STATE_CLOSED && !c->stop_thread) {
        ferry__work(c);
    }
    pthread_cond_broadcast(&c->cond);
    ferry__dispatch(c);
}

void *ferry__io_thread_main(void *arg)
{
    ferry_client *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->stop_thread) {
        io_round(c, -1);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Wait (lock held) until something changes or the deadline passes. In
 * thread mode the IO thread does the work; otherwise we drive it. */
int ferry__wait(ferry_client *c, int64_t deadline)
{
    /* Also while the IO thread is being stopped by ferry_client_close():
     * the closer becomes the only driver, and broadcasts when done. */
    if (c->has_thread) {
        if (deadline < 0) {
            return pthread_cond_wait(&c->cond, &c->mu);
        }
        struct timespec ts = {.tv_sec = deadline / 1000, .tv_nsec = (deadline % 1000) * 1000000};
        return pthread_cond_timedwait(&c->cond, &c->mu, &ts);
    }
    io_round(c, deadline);
    return 0;
}

/*
 * conn.c - one client connection: its slot, events and timer, reading and
 * frames, pausing, closing. Its output (staged deliveries, the buffer,
 * flush) is in conn_out.c.
 *
 * Input is read into the thread's buffer and handled frame by frame in
 * place (iot_handle_frame); a partial frame goes to the connection's
 * decoder.
 */
#include "io_int.h"
#include "qgroup.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- small helpers ------------------------------------------------------ */

/* The socket's bytes, through TLS if the connection has it (errno set as
 * read(2) does, so that one path serves both; writing: conn_out.c). */
static ssize_t sock_read(struct conn *c, void *buf, size_t n)
{
    if (c->tls == NULL) {
        return read(c->fd, buf, n);
    }
    ssize_t r = tls_conn_read(c->tls, buf, n);
    if (r < 0) {
        errno = (int)-r;
        return -1;
    }
    return r;
}

int conn_list_push(struct ptrvec *p, struct conn *c)
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
void conn_lost_output(struct iot *t, struct conn *c, const char *what)
{
    log_client_error(c->client_id, c->peer, "out of memory: %s; closing the connection", what);
    conn_kill(t, c);
}

uint64_t conn_ref_of(const struct iot *t, const struct conn *c)
{
    return CONN_REF(t->index, c->slot, c->gen);
}

struct conn *conn_by_ref(struct iot *t, uint64_t ref)
{
    uint32_t slot = CONN_REF_SLOT(ref);
    if (slot >= t->n_slots || t->gens[slot] != CONN_REF_GEN(ref)) {
        return NULL;
    }
    struct conn *c = t->slots[slot];
    return c && c->state != ST_DEAD ? c : NULL;
}

void conn_set_events(struct iot *t, struct conn *c, uint32_t events)
{
    if (c->events == events || c->state == ST_DEAD) {
        return;
    }
    if (rx_watch(t->rx, c->fd, 0, events, &c->io) == 0) {
        c->events = events;
    }
}

void conn_read_stop(struct iot *t, struct conn *c)
{
    conn_set_events(t, c, c->events & ~(uint32_t)RX_READ);
}

void conn_read_start(struct iot *t, struct conn *c)
{
    conn_set_events(t, c, c->events | RX_READ);
}

int conn_is_write_waiting(const struct conn *c)
{
    return (c->events & RX_WRITE) != 0;
}

void conn_mark_dirty(struct iot *t, struct conn *c)
{
    if (!c->is_dirty) {
        if (conn_list_push(&t->dirty, c) == 0) {
            c->is_dirty = 1;
        }
    }
}

/* Cannot fail: conn_add() reserved a place in the heap for every connection. */
void conn_timer_arm(struct iot *t, struct conn *c, uint64_t when)
{
    int rc = rx_timer_set(t->rx, &c->timer, when);
    assert(rc == 0);
    (void)rc;
}

/* ---- connections -------------------------------------------------------- */

void conn_add(struct iot *t, int fd, uint32_t flags)
{
    int is_counted = (flags & R_NEW_CONN_COUNTED) != 0;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    uint8_t key[16] = {0};
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
        login_addr_key((struct sockaddr *)&ss, key);
    } else {
        ss.ss_family = AF_UNSPEC;
    }
    /* Every list a connection can be on, and the timer heap, have room for
     * each live connection and each one killed this round: conn_kill(),
     * conn_mark_dirty(), conn_pause(), cu_list() and conn_timer_arm() cannot fail for
     * memory later (a kill that could not list its connection freed it
     * under its callers). */
    uint32_t need = t->n_slots - t->n_free + t->dead.n + 1;
    if (ptrvec_reserve(&t->dead, need) < 0 || ptrvec_reserve(&t->dirty, need) < 0 ||
        ptrvec_reserve(&t->paused, need) < 0 || ptrvec_reserve(&t->cu_conns, need) < 0 ||
        ptrvec_reserve(&t->dur_conns, need) < 0 || rx_timer_reserve(t->rx, need) < 0) {
        goto out_close;
    }
    struct conn *c = calloc(1, sizeof(*c));
    uint32_t slot;
    if (c == NULL) {
        goto out_close;
    }
    if (flags & R_NEW_CONN_TLS) {
        if (tls_conn_create(&t->srv->tls, fd, &c->tls) < 0) {
            free(c);
            goto out_close;
        }
        c->tls_hs = 2;
    }
    if ((flags & R_NEW_CONN_MQTT) && mqtt_conn_init(c) < 0) {
        free(c);
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
    c->io.cb = conn_on_io;
    rx_timer_init(&c->timer, conn_on_timer);
    c->stage_head = c->stage_tail = -1;
    c->stage_bytes = 0;
    c->last_rx_ms = t->now;
    c->client_id = atomic_fetch_add(&t->srv->next_client_id, 1);
    frame_dec_init(&c->dec, PRE_CONNECT_MAX);
    memcpy(c->addr, key, sizeof(c->addr));
    c->is_unauth_counted = is_counted ? 1 : 0;
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        port = ntohs(a->sin6_port);
    }
    snprintf(c->peer, sizeof(c->peer), "%s:%d", host, port);
    if (rx_watch(t->rx, fd, 1, RX_READ, &c->io) < 0) {
        t->free_slots[t->n_free++] = slot;
        goto out_free;
    }
    c->events = RX_READ;
    t->slots[slot] = c;
    /* Under pressure (half the pre-login bound taken) a new connection gets
     * a quarter of the time to log in, at least a second. */
    uint64_t limit = t->srv->cfg.connect_timeout_ms;
    const struct login_limits *lim = &t->srv->login.lim;
    if (is_counted && limit > 1000 && login_unauth_count(&t->srv->login) > lim->max_unauth / 2) {
        limit = limit / 4 > 1000 ? limit / 4 : 1000;
    }
    c->connect_deadline = t->now + limit;
    conn_timer_arm(t, c, c->connect_deadline);
    stats_add(&t->stats.conns, 1);
    stats_add(&t->stats.conns_total, 1);
    log_client_debug(c->client_id, c->peer, "accepted");
    return;

out_free:
    tls_conn_destroy(c->tls);
    mqtt_conn_destroy(c);
    free(c);
out_close:
    log_error("IO thread %u: out of memory, connection refused", t->index);
    close(fd);
    if (is_counted) {
        login_unauth_leave(&t->srv->login, key, t->now);
    }
    atomic_fetch_sub(&t->srv->conns_now, 1);
}

void conn_unauth_leave(struct iot *t, struct conn *c)
{
    if (c->is_unauth_counted) {
        c->is_unauth_counted = 0;
        login_unauth_leave(&t->srv->login, c->addr, t->now);
    }
}

/* The memory of a connection conn_kill() closed. */
void conn_free(struct conn *c)
{
    mqtt_conn_destroy(c);
    free(c);
}

/* Close now (no flush). The memory is freed at the end of the round. */
void conn_kill(struct iot *t, struct conn *c)
{
    if (c->state == ST_DEAD) {
        return;
    }
    if (c->mq != NULL) {
        mqtt_conn_lost(t, c); /* its will, while it still has its rights */
    }
    conn_held_drop(t, c);
    c->state = ST_DEAD;
    conn_heavy_update(t, c);
    conn_unauth_leave(t, c);
    if (c->turn != NULL) {
        handle_login_abandon(t, c);
    }
    (void)rx_unwatch(t->rx, c->fd);
    tls_conn_destroy(c->tls);
    c->tls = NULL;
    c->tls_hs = 0;
    close(c->fd);
    c->fd = -1;
    rx_timer_stop(t->rx, &c->timer);
    for (uint32_t i = 0; i < c->n_subs; i++) {
        if (iot_post_sub_change(t, W_SUB_DEL, c->subs[i]) < 0) {
            log_error("IO thread %u: out of memory removing a subscription", t->index);
        }
        trie_sub_unref(c->subs[i]);
    }
    stats_sub(&t->stats.subs, c->n_subs);
    if (t->srv->qgroups != NULL && c->n_subs > 0) {
        qgroup_leave_all(t->srv->qgroups, conn_ref_of(t, c));
    }
    free(c->subs);
    c->subs = NULL;
    c->n_subs = 0;
    cu_unbind(t, c, UINT64_MAX);
    cu_remove(c, UINT64_MAX);
    free(c->cu);
    c->cu = NULL;
    c->n_cu = c->cu_cap = 0;
    if (c->mq != NULL) {
        mqtt_conn_ended(t, c); /* its durables are free now */
    }
    cu_wild_remove_sub(c, NULL);
    auth_table_unref(c->auth);
    c->auth = NULL;
    c->who = NULL;
    frame_dec_deinit(&c->dec);
    conn_out_release(c);
    t->slots[c->slot] = NULL;
    t->free_slots[t->n_free++] = c->slot;
    stats_sub(&t->stats.conns, 1);
    atomic_fetch_sub(&t->srv->conns_now, 1);
    log_client_debug(c->client_id, c->peer, "closed");
    if (conn_list_push(&t->dead, c) < 0 && !c->is_dirty && !c->is_paused) {
        conn_free(c); /* not referenced from any list of this round */
    }
}

void conn_pause(struct iot *t, struct conn *c)
{
    if (c->is_paused) {
        return;
    }
    if (conn_list_push(&t->paused, c) < 0) {
        return; /* cannot remember it: keep reading rather than stall it */
    }
    c->is_paused = 1;
    conn_set_events(t, c, c->events & ~(uint32_t)RX_READ);
}

/* A refusal by an ACL: counted and logged here; the caller answers. A client
 * that keeps trying what it may not do must not flood the log: the first 10
 * refusals of a connection are logged, then every 1000th. */
void conn_acl_denied(struct iot *t, struct conn *c, const char *what, const char *name,
                     size_t name_len)
{
    stats_add(&t->stats.permission_denials, 1);
    c->n_denied++;
    if (c->n_denied <= 10 || c->n_denied % 1000 == 0) {
        log_client_info(c->client_id, c->peer,
                        "permission denied: %s %s %.*s (%u on this connection)",
                        c->who ? c->who->name : "(no rights)", what,
                        (int)(name_len > 256 ? 256 : name_len), name, c->n_denied);
    }
}

int conn_may_publish(const struct conn *c, const char *topic, size_t len)
{
    return c->auth == NULL || (c->who && acl_may_publish(&c->who->pub, topic, len));
}

int conn_may_subscribe(const struct conn *c, const char *pattern, size_t len)
{
    return c->auth == NULL || (c->who && acl_may_subscribe(&c->who->sub, pattern, len));
}

/* Requests make replies: a client that pipelines requests (admin lists,
 * say) without reading the answers is not read any further while its
 * pending output is over half its bound; conn_flush() resumes it when the
 * output has drained (through t->paused and iot_resume_paused()). */
void conn_out_check(struct iot *t, struct conn *c)
{
    if (c->state != ST_OPEN || c->is_paused ||
        conn_out_pending(c) <= t->srv->cfg.max_outbound / 2) {
        return;
    }
    c->is_paused = 1;
    c->is_out_paused = 1;
    conn_set_events(t, c, c->events & ~(uint32_t)RX_READ);
}

/*
 * A Subscribe waits until every stored publication its connection sent
 * before it is committed and routed: a Publish followed by a Subscribe
 * (START_NEW) on one connection must not reach the new subscription, but a
 * stored publication reaches the workers through the writer, later than a
 * subscription change, which goes to them directly. Once the writer has
 * committed those publications (server_committed; it routed them before),
 * the subscription is added behind them, and a start position computed
 * from the store counts them. An admin request waits the same way, so that its
 * answer (a topic's last sequence, a topic list) includes them (and an
 * MQTT SUBSCRIBE, mqtt_conn.c). Returns 1 if c must wait (it is paused;
 * the writer's wake-up resumes it).
 */
int conn_wait_stored(struct iot *t, struct conn *c)
{
    /* Everything routed so far is readable (another connection's acked
     * publications among it: server.h, struct store_gens)... */
    if (!server_store_readable(t->srv)) {
        conn_pause(t, c);
        return c->is_paused;
    }
    if (c->last_stored_serial == 0) {
        return 0;
    }
    /* ...and so are this connection's own, which may not even be routed
     * yet: committed already (the usual case), or after asking for the
     * writer's wake-up, looked at again in case the commit came in
     * between. */
    for (int asked = 0; asked < 2; asked++) {
        if (serial_reached(atomic_load(&t->commit->serial), c->last_stored_serial)) {
            c->last_stored_serial = 0;
            return 0;
        }
        if (!atomic_exchange(&t->commit->is_wanted, 1)) {
            mbox_wake(t->srv->writer_in); /* it commits when asked (writer.c) */
        }
    }
    conn_pause(t, c);
    return c->is_paused;
}

static int read_must_wait(struct iot *t, struct conn *c, const uint8_t *body, size_t len)
{
    /* Frame's oneof field 5 (subscribe) or 14 (admin_request), length-
     * delimited: tag byte 0x2a or 0x72. */
    if (len == 0 || (body[0] != ((5 << 3) | 2) && body[0] != ((14 << 3) | 2))) {
        return 0;
    }
    return conn_wait_stored(t, c);
}

void conn_process_frames(struct iot *t, struct conn *c)
{
    if (c->mq != NULL) {
        mqtt_conn_process(t, c);
        return;
    }
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
        iot_handle_frame(t, c, body, len);
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
    if (c->mq != NULL) {
        mqtt_conn_take(t, c, buf, n);
        return;
    }
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
            iot_handle_frame(t, c, buf + off + FRAME_HDR_LEN, len);
            off += FRAME_HDR_LEN + (size_t)len;
            conn_out_check(t, c);
        }
    }
    if (off < n && c->state <= ST_OPEN) {
        if (frame_dec_feed(&c->dec, buf + off, n - off) == -ENOMEM) {
            conn_fail(t, c, FERRY__ERROR_CODE__ERROR_INTERNAL, "out of memory");
            return;
        }
        conn_process_frames(t, c);
    }
}

/* Reads go into one per-thread buffer, so a busy connection gets many frames
 * per read(2) while an idle one holds no buffer at all. */
void conn_on_readable(struct iot *t, struct conn *c)
{
    if (c->state == ST_CLOSING) {
        conn_drain_input(t, c);
        return;
    }
    int n_reads = c->tls ? TLS_READS_PER_EVENT : READS_PER_EVENT;
    for (int i = 0; i < n_reads && c->state <= ST_OPEN && !c->is_paused && !c->is_auth_pending;
         i++) {
        ssize_t r = sock_read(c, t->rbuf, READ_BUF);
        if (r == 0) {
            log_client_debug(c->client_id, c->peer, "end of stream");
            conn_kill(t, c);
            return;
        }
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN) {
                log_client_debug(c->client_id, c->peer, "read: %s",
                                 c->tls ? tls_conn_error(c->tls) : strerror(errno));
                conn_kill(t, c);
            } else if (c->tls && (tls_conn_wants(c->tls) & TLS_WANT_WRITE)) {
                conn_set_events(t, c, c->events | RX_WRITE); /* the session must write first */
            }
            break;
        }
        stats_add(&t->stats.bytes_in, (uint64_t)r);
        c->last_rx_ms = t->now;
        take_bytes(t, c, t->rbuf, (size_t)r);
        if ((size_t)r < READ_BUF && c->tls == NULL) {
            break;
        }
    }
    if (c->state != ST_DEAD) {
        frame_dec_release_idle(&c->dec);
    }
}

/* ---- events and timers (rx_run's callbacks) ------------------------------ */

void conn_on_io(struct rx *r, struct rx_io *io, uint32_t events)
{
    struct iot *t = rx_arg(r);
    struct conn *c = (struct conn *)((char *)io - offsetof(struct conn, io));
    if (c->state == ST_DEAD) {
        return; /* killed earlier in this round; freed at its end */
    }
    if (c->tls_hs) {
        conn_tls_step(t, c);
        return;
    }
    if (events & (RX_WRITE | RX_ERROR)) {
        c->is_writable = 1;
        conn_mark_dirty(t, c);
    }
    if (c->tls && (events & RX_WRITE) && !(events & RX_READ)) {
        events |= RX_READ; /* a TLS read may have waited for the socket to take a write */
    }
    if (events & (RX_READ | RX_ERROR)) {
        if ((c->events & RX_READ) && (!c->is_paused || c->state == ST_CLOSING)) {
            conn_on_readable(t, c);
        } else if ((events & RX_ERROR) && !(events & RX_WRITE)) {
            conn_kill(t, c);
        }
    }
}

/* The one timer of a connection: what it means depends on the state. */
void conn_on_timer(struct rx *r, struct rx_timer *tm)
{
    struct iot *t = rx_arg(r);
    struct conn *c = (struct conn *)((char *)tm - offsetof(struct conn, timer));
    switch (c->state) {
    case ST_AWAIT_CONNECT:
        if (c->tls_hs) {
            log_client_info(c->client_id, c->peer, "TLS handshake not finished in time; closing");
            conn_kill(t, c);
        } else if (c->turn != NULL && !c->turn->is_submitted && t->now < c->connect_deadline) {
            handle_login_step(t, c); /* the login gate's wait is over */
        } else {
            conn_fail(t, c, FERRY__ERROR_CODE__ERROR_AUTH_TIMEOUT,
                      c->is_auth_pending ? "credentials not checked in time (server busy)"
                                         : "Connect did not arrive in time");
        }
        break;
    case ST_OPEN: {
        if (c->mq != NULL && mqtt_conn_on_timer(t, c)) {
            break;
        }
        if (c->hold_frame != NULL) {
            conn_held_expire(t, c);
            break;
        }
        uint64_t limit = (uint64_t)c->keepalive_ms * 3 / 2;
        if (c->is_paused || !(c->events & RX_READ)) {
            /* We are not reading it (backpressure, a held SubAck,
             * draining): its silence is ours. It gets a whole interval
             * from when reading resumes. */
            c->last_rx_ms = t->now;
        }
        if (t->now - c->last_rx_ms >= limit) {
            conn_fail(t, c, FERRY__ERROR_CODE__ERROR_KEEPALIVE_TIMEOUT,
                      "nothing received within 1.5 x keepalive");
        } else {
            uint64_t due = c->last_rx_ms + limit;
            conn_timer_arm(t, c, c->mq != NULL ? mqtt_conn_timer_due(c, due) : due);
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

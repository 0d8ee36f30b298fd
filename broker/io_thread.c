/*
 * io_thread.c - one event loop per thread: slots, mail, rounds, life cycle.
 *
 * The loop is rx_run (reactor.h); a round of it, for an IO thread:
 *   1. rx_wait (timeout: the next timer, or 0 while work is left over);
 *   2. after_sleep: read the clocks and the server's phase;
 *   3. each ready socket's callback (conn_on_io): read it, many frames per
 *      read, and handle each frame; the mailbox's only notes that mail came;
 *   4. due timers (conn_on_timer: keepalive, Connect deadline, close linger);
 *   5. before_sleep: take the mailbox (new connections, deliveries,
 *      PubAcks); resume publishers that were paused because a worker was
 *      full; hand the round's publications to the workers (one post per
 *      worker); pump catch-ups; write every connection with output (one
 *      writev carries its queued replies and all its deliveries of the
 *      round); free connections closed during the round (never inside a
 *      callback).
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
#include "io_int.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Why the store writer refused a publish. */
static const char *pub_err_text(uint32_t code)
{
    switch (code) {
    case FERRY__ERROR_CODE__ERROR_STORAGE_FULL:
        return "storage full: the store reached its maximum size or the disk is full; "
               "retry later";
    case FERRY__ERROR_CODE__ERROR_INVALID_TOPIC:
        return "topic cannot be stored (longer than " STORE_TOPIC_MAX_TEXT " bytes)";
    case FERRY__ERROR_CODE__ERROR_SERVER_BUSY:
        return "out of memory; retry later";
    case FERRY__ERROR_CODE__ERROR_INTERNAL:
        return "internal error";
    case FERRY__ERROR_CODE__ERROR_NO_RESPONDERS:
        return "no responders: nothing subscribes to the request's topic";
    default:
        return "the store failed; the message is not stored";
    }
}

/* ---- to the workers ----------------------------------------------------- */

int iot_wq_push(struct wq *q, struct wmsg m)
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
int iot_wq_reserve(struct wq *q)
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
uint32_t iot_n_queues(const struct iot *t)
{
    return t->srv->n_workers + 1;
}

static struct mbox *wq_mbox(struct iot *t, uint32_t w)
{
    return w < t->srv->n_workers ? t->srv->worker_in[w] : t->srv->writer_in;
}

void iot_wq_flush(struct iot *t, uint32_t w)
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
void iot_wq_seal(struct iot *t, uint32_t w)
{
    struct wq *q = &t->wq[w];
    if (q->cur == NULL) {
        return;
    }
    struct wmsg m = {.kind = W_PUB_BATCH, .p = q->cur};
    if (iot_wq_push(q, m) < 0) { /* cannot happen: reserved with the batch */
        log_error("IO thread %u: out of memory, %u publications dropped", t->index, q->cur->n_recs);
        pub_batch_unref(q->cur);
    }
    q->cur = NULL;
}

static void wq_flush_all(struct iot *t)
{
    for (uint32_t w = 0; w < iot_n_queues(t); w++) {
        iot_wq_seal(t, w);
        iot_wq_flush(t, w);
    }
}

/* Subscription changes go to every worker, in order with publications. */
int iot_post_sub_change(struct iot *t, uint32_t kind, struct trie_sub *s)
{
    for (uint32_t w = 0; w < t->srv->n_workers; w++) {
        iot_wq_seal(t, w); /* publications read before this change go first */
        trie_sub_ref(s);
        struct wmsg m = {.kind = kind, .p = s};
        if (iot_wq_push(&t->wq[w], m) < 0) {
            trie_sub_unref(s);
            return -ENOMEM;
        }
    }
    return 0;
}

static void handle_frame(struct iot *t, struct conn *c, const uint8_t *body, size_t len);

void iot_handle_frame(struct iot *t, struct conn *c, const uint8_t *body, size_t len)
{
    /* What a frame that must wait for a placement keeps (conn_hold.c). */
    t->frame = body;
    t->frame_len = len;
    t->frame_conn = c;
    if (t->replaying != c) {
        stats_add(&t->stats.frames_in, 1); /* counted once, however often it waits */
    }
    handle_frame(t, c, body, len);
    t->frame_conn = NULL;
}

static void handle_frame(struct iot *t, struct conn *c, const uint8_t *body, size_t len)
{
    Ferry__Frame *f;
    if (c->state == ST_OPEN && handle_publish_fast(t, c, body, len)) {
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
        log_client_debug(c->client_id, c->peer, "disconnect");
        conn_close_after_flush(t, c);
        break;
    case FERRY__FRAME__BODY_CONNECT:
        conn_send_error(t, c, FERRY__ERROR_CODE__ERROR_PROTOCOL, "Connect may be sent only once", 0,
                        FERRY__ERROR__REF_KIND__REF_NONE, 0);
        break;
    default:
        conn_send_error(t, c, FERRY__ERROR_CODE__ERROR_UNKNOWN_MESSAGE,
                        "message not accepted from clients", 0, FERRY__ERROR__REF_KIND__REF_NONE,
                        0);
        break;
    }
}

/* ---- the loop ----------------------------------------------------------- */

static void mail_handle(struct iot *t, struct rmsg *mail, uint32_t n);

static void take_mail(struct iot *t)
{
    static _Thread_local struct rmsg mail[IOT_TAKE];
    uint32_t n = mbox_take(&t->in, mail, IOT_TAKE, NULL);
    t->has_more_mail = n == IOT_TAKE;
    mail_handle(t, mail, n);
}

/* The inline router's sink (struct rsink): its mail for us, at once. */
static void take_local(void *arg, struct rmsg *mail, uint32_t n)
{
    mail_handle(arg, mail, n);
}

/* Handle n items taken from the mailbox, or given by the inline router. */
static void mail_handle(struct iot *t, struct rmsg *mail, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        struct rmsg *m = &mail[i];
        switch (m->kind) {
        case R_NEW_CONN:
            conn_add(t, m->u.fd, m->n_ids);
            break;
        case R_DELIVER:
            deliver_routed(t, m);
            break;
        case R_PUBACK: {
            if (CONN_REF_SLOT(m->conn_ref) == CONS_DLQ_SLOT) {
                /* A dead letter (cu_dur_dead_letter) refused before it reached a
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
                uint32_t code = m->n_ids & ~(R_PUBACK_DUPLICATE | R_PUBACK_SCHEDULED);
                a.code = (Ferry__ErrorCode)code;
                a.text = (char *)(code ? pub_err_text(code) : "");
                a.duplicate = (m->n_ids & R_PUBACK_DUPLICATE) != 0;
                a.scheduled = (m->n_ids & R_PUBACK_SCHEDULED) != 0;
                if (code != 0) {
                    stats_pub_refused(&t->stats, (int)code);
                } else if (a.duplicate) {
                    stats_add(&t->stats.pub_duplicates, 1);
                }
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
                conn_send_error(t, c, (int)m->n_ids, pub_err_text(m->n_ids), m->u.ack.id,
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
                 * routed before is listed from the store once readable
                 * (see struct catchup). */
                if (e->is_started) {
                    e->is_wd_sync_due = 1;
                    cu_list(t, c);
                }
            } else if (e) {
                /* Whatever the worker routed before is read from the store
                 * up to its end, once readable; what it routes later comes
                 * live. */
                e->is_reading = 1;
                cu_list(t, c);
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
            handle_auth_answer(t, m);
            break;
        case R_PONG: {
            struct conn *c = conn_by_ref(t, m->conn_ref);
            if (c && c->state == ST_OPEN) {
                c->n_barriers--;
                handle_pong_send(t, c, m->u.ack.id);
            }
            break;
        }
        case R_DETACH:
            handle_admin_detach(t, m);
            break;
        case R_BACKUP:
            handle_backup_frame(t, m);
            break;
        case R_MQTT_KICK:
            mqtt_conn_kick(t, m);
            break;
        case R_MQTT_RESUME:
            mqtt_conn_resume(t, m);
            break;
        default:
            break;
        }
    }
}

/* The auth file was reloaded: every connection takes the new table and
 * loses the subscriptions its rights no longer cover (an Error with the sub
 * id tells it, and no delivery of them follows it). Its publishes and admin requests are checked
 * against the new rights from now on. */
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
            log_client_warn(c->client_id, c->peer,
                            "%s is no longer in the auth file: no rights left", c->who->name);
        }
        auth_table_ref(cur);
        auth_table_unref(c->auth);
        c->auth = cur;
        c->who = who;
        for (uint32_t i = c->n_subs; i-- > 0;) {
            struct trie_sub *sb = c->subs[i];
            if (handle_subscribe_may_keep(c, sb)) {
                continue;
            }
            char text[352];
            snprintf(text, sizeof(text), "permission denied: subscribe %.*s (rights reloaded)",
                     (int)(sb->pattern_len > 256 ? 256 : sb->pattern_len), sb->pattern);
            uint64_t id = sb->sub_id;
            conn_acl_denied(t, c, "subscribe (reload)", sb->pattern, sb->pattern_len);
            if (handle_subscribe_remove_at(t, c, i) < 0) {
                conn_fail(t, c, FERRY__ERROR_CODE__ERROR_INTERNAL,
                          "out of memory removing a subscription the rights no longer allow");
                break;
            }
            /* Nothing of it may arrive after the Error: what is queued and
             * not begun on the wire goes too. */
            uint32_t n = conn_drop_deliveries(t, c, id);
            if (n > 0) {
                log_client_info(c->client_id, c->peer,
                                "%u queued deliveries dropped with the subscription", n);
            }
            conn_send_error(t, c, FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED, text, id,
                            FERRY__ERROR__REF_KIND__REF_SUBSCRIPTION, 0);
        }
    }
    auth_table_unref(cur);
}

void iot_auth_done(void *ctx, uint64_t conn_ref, int rc, struct auth_table *at,
                   const struct auth_principal *who, void *tag)
{
    struct server *s = ctx;
    struct rmsg m = {.kind = R_AUTH, .conn_ref = conn_ref};
    m.n_ids = rc == 0 ? 0 : rc == -ECANCELED ? 2 : 1;
    m.u.auth.t = at;
    m.u.auth.who = who;
    m.u.auth.turn = tag;
    uint32_t k = CONN_REF_IOT(conn_ref);
    if (k >= s->n_iot || mbox_post(s->iot_in[k], &m, 1) < 0) {
        auth_table_unref(at);
        handle_login_turn_free(tag); /* shutting down: nobody waits for it */
    }
}

void iot_resume_paused(struct iot *t)
{
    if (t->paused.n == 0 || t->n_deferred > 0) {
        return;
    }
    for (uint32_t w = 0; w < iot_n_queues(t); w++) {
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
        conn_process_frames(t, c);
        if (!c->is_paused && !c->is_auth_pending && c->state <= ST_OPEN) {
            conn_set_events(t, c, c->events | RX_READ); /* (held: its own wait reads it) */
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
            conn_free(t->dead.v[i]);
        }
        t->dead.n = 0;
    }
}

static int pending_to_workers(const struct iot *t)
{
    for (uint32_t w = 0; w < iot_n_queues(t); w++) {
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
    if (rx_watch(t->rx, mbox_fd(&t->in), 0, mute ? 0 : RX_READ, &t->mail_io) == 0) {
        t->is_mail_muted = mute;
        if (t->inline_worker != NULL) { /* its deliveries stall too */
            (void)rx_watch(t->rx, worker_fd(t->inline_worker), 0, mute ? 0 : RX_READ, &t->route_io);
        }
    }
}

static int loop_timeout(struct iot *t)
{
    if (t->is_mail_muted) {
        /* Stalled: wake for RX_WRITE of the laggards, or the budget's end. */
        uint64_t spent = now_ms() - t->stall_since;
        return spent >= STALL_MAX_MS ? 0 : (int)(STALL_MAX_MS - spent);
    }
    if (t->has_more_mail || t->has_more_route) {
        return 0;
    }
    int timeout = -1;
    if (t->is_read_gated) {
        timeout = 1; /* the writer wakes us once it has committed; a backstop */
    } else if (atomic_load(&t->srv->phase) == PHASE_RUN && cu_has_work(t)) {
        return 0;
    }
    if (pending_to_workers(t)) {
        timeout = 1; /* a worker was full; it wakes us, this is a backstop */
    }
    if (t->dur_conns.n > 0 && (timeout < 0 || timeout > (int)DUR_SCAN_MS)) {
        timeout = DUR_SCAN_MS; /* redelivery deadlines */
    }
    if (t->paused.n > 0 && (timeout < 0 || timeout > 1)) {
        timeout = 1; /* iot_resume_paused() runs before the flush that may list one */
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
            conn_set_events(t, c, c->events & ~(uint32_t)RX_READ);
        }
        if (phase == PHASE_CLOSE) {
            if (c->state == ST_OPEN) {
                conn_send_error(t, c, FERRY__ERROR_CODE__ERROR_SHUTTING_DOWN,
                                "server shutting down", 0, FERRY__ERROR__REF_KIND__REF_NONE, 1);
            }
            conn_close_after_flush(t, c);
        }
    }
    return phase;
}

/* The round's start: the clocks and the phase it runs in. */
static void after_sleep(struct rx *r, void *arg)
{
    struct iot *t = arg;
    t->now = rx_now(r);
    t->now_ns = now_realtime_ns();
    t->round_phase = atomic_load(&t->srv->phase);
    t->round_mail = t->has_more_mail;
    t->round_route = t->has_more_route;
}

static void on_mail(struct rx *r, struct rx_io *io, uint32_t events)
{
    (void)io;
    (void)events;
    ((struct iot *)rx_arg(r))->round_mail = 1;
}

static void on_route(struct rx *r, struct rx_io *io, uint32_t events)
{
    (void)io;
    (void)events;
    ((struct iot *)rx_arg(r))->round_route = 1;
}

/* The round's deferred work, after its reads and timers: mail, routing,
 * hand-offs, catch-up, then every write and every free; then how long the
 * loop may sleep. */
static int before_sleep(struct rx *r, void *arg)
{
    struct iot *t = arg;
    int phase = t->round_phase;
    if (should_stall(t, phase)) {
        mute_mail(t, 1);
    } else {
        if (t->is_mail_muted) {
            mute_mail(t, 0);
            t->round_mail = 1; /* whatever queued meanwhile */
        }
        if (t->round_mail) {
            take_mail(t);
        }
        if (t->round_route) {
            t->has_more_route = worker_run_inline(t->inline_worker, &t->local);
        }
        if (t->srv->auth_pool && auth_holder_gen(&t->srv->auth) != t->auth_gen) {
            auth_reload(t);
        }
        if (t->n_held > 0 && phase == PHASE_RUN) {
            conn_held_poll(t); /* frames waiting for placements (conn_hold.c) */
        }
        if (phase == PHASE_CLOSE && t->seen_phase != PHASE_CLOSE) {
            /* The writer and workers have stopped: take every PubAck they
             * posted before saying goodbye. */
            while (t->has_more_mail) {
                take_mail(t);
            }
            while (t->inline_worker != NULL && worker_run_inline(t->inline_worker, &t->local)) {
            }
        }
    }
    t->round_mail = t->round_route = 0;
    wq_flush_all(t);
    handle_subscribe_send_deferred(t);
    t->is_read_gated = 0;
    if (phase == PHASE_RUN) {
        iot_resume_paused(t);
        wq_flush_all(t);
        handle_subscribe_send_deferred(t);
        /* Store reads, once everything routed is readable (server.h,
         * struct store_gens); else the writer's commit wakes us. */
        int wants_reads = cu_has_work(t) || (t->dur_conns.n > 0 && t->now >= t->next_dur_scan);
        t->is_read_gated = wants_reads && t->srv->store != NULL && !server_store_readable(t->srv);
        if (!t->is_read_gated) {
            cu_pump_all(t);
            cu_dur_scan_all(t);
            wq_flush_all(t); /* dead letters */
        }
    }
    t->seen_phase = enter_phase(t, phase, t->seen_phase);
    if (phase >= PHASE_DRAIN && !pending_to_workers(t)) {
        atomic_store(&t->is_drained, 1);
    }
    end_round(t);
    handle_backup_pump(t); /* after the writes, and the closed freed */
    if (phase == PHASE_CLOSE) {
        if (t->close_deadline == 0) {
            t->close_deadline = t->now + t->srv->cfg.shutdown_ms;
        }
        uint64_t open = atomic_load_explicit(&t->stats.conns, memory_order_relaxed);
        if (open == 0 || t->now >= t->close_deadline) {
            rx_stop(r);
            return 0;
        }
    }
    return loop_timeout(t);
}

static void *iot_main(void *arg)
{
    struct iot *t = arg;
    char name[16];
    snprintf(name, sizeof(name), "io%u", t->index);
    log_thread_name_set(name);
    rx_set_hooks(t->rx, before_sleep, after_sleep, t);
    int rc = rx_run(t->rx);
    if (rc < 0) {
        log_error("IO thread %u: %s", t->index, strerror(-rc));
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
    codec_arena_init(&t->arena);
    t->wq = calloc(s->n_workers + 1, sizeof(*t->wq));
    t->iov = calloc(IOV_MAX, sizeof(*t->iov));
    t->rbuf = malloc(READ_BUF);
    t->cu_hdr = calloc(CODEC_MAX_HEADERS, sizeof(*t->cu_hdr));
    t->dsubs = calloc(s->cfg.max_subs ? s->cfg.max_subs : 1, sizeof(*t->dsubs));
    if (t->wq == NULL || t->iov == NULL || t->rbuf == NULL || t->cu_hdr == NULL ||
        t->dsubs == NULL) {
        goto out_free;
    }
    if (mbox_init(&t->in, sizeof(struct rmsg), IOT_MBOX_CAP, 1) < 0) {
        goto out_free;
    }
    s->iot_in[index] = &t->in;
    s->iot_stats[index] = &t->stats;
    t->commit = &s->commit[index];
    t->local = (struct rsink){.iot = index, .fn = take_local, .arg = t};
    t->mail_io.cb = on_mail;
    t->route_io.cb = on_route;
    t->now = now_ms();
    if (rx_open(&t->rx, (enum rx_backend)s->cfg.io_backend) < 0) {
        goto out_mbox;
    }
    if (rx_watch(t->rx, mbox_fd(&t->in), 1, RX_READ, &t->mail_io) < 0) {
        goto out_rx;
    }
    return t;

out_rx:
    rx_close(t->rx);
out_mbox:
    mbox_deinit(&t->in);
out_free:
    free(t->wq);
    free(t->iov);
    free(t->rbuf);
    free(t->held);
    free(t->cu_hdr);
    free(t->dsubs);
    free(t);
    return NULL;
}

int iot_embed(struct iot *t, struct acceptor *acc, struct worker *inline_worker)
{
    if (acc != NULL && acc_embed(acc, t->rx) < 0) {
        return -1;
    }
    if (inline_worker != NULL &&
        rx_watch(t->rx, worker_fd(inline_worker), 1, RX_READ, &t->route_io) < 0) {
        return -1;
    }
    t->inline_worker = inline_worker;
    return 0;
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
        } else if (m.kind == R_RAW || m.kind == R_BACKUP) {
            free(m.u.raw.buf);
        } else if (m.kind == R_AUTH) {
            auth_table_unref(m.u.auth.t);
            handle_login_turn_free(m.u.auth.turn);
        }
    }
    for (uint32_t w = 0; w < iot_n_queues(t); w++) {
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
    free(t->held);
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
    free(t->dsubs);
    codec_arena_deinit(&t->arena);
    rx_close(t->rx);
    mbox_deinit(&t->in);
    free(t);
}

int iot_is_drained(struct iot *t)
{
    return atomic_load(&t->is_drained);
}

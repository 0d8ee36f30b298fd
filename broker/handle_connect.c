/*
 * handle_connect.c - Connect (version, credentials through the auth pool,
 * negotiation) and Ping.
 */
#include "io_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
    conn_timer_arm(t, c, c->last_rx_ms + (uint64_t)ka * 3 / 2);

    Ferry__Connected r = FERRY__CONNECTED__INIT;
    r.protocol_version = CODEC_PROTOCOL_VERSION;
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
    log_client_debug(c->client_id, c->peer, "connected as %s, keepalive %u ms",
                     c->who ? c->who->name : "anonymous", ka);
}

/* ---- logins (login.h: the gate; auth.h: the pool) ---------------------- */

static void wipe_free(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

void handle_login_turn_free(struct login_turn *turn)
{
    if (turn != NULL) {
        wipe_free(turn->username);
        wipe_free(turn->password);
        wipe_free(turn->token);
        free(turn);
    }
}

static char *dup_nonempty(const char *s, int *failed)
{
    if (s == NULL || *s == '\0') {
        return NULL;
    }
    char *d = strdup(s);
    *failed |= d == NULL;
    return d;
}

static struct login_turn *turn_new(const struct conn *c, const Ferry__Connect *m)
{
    struct login_turn *turn = calloc(1, sizeof(*turn));
    if (turn == NULL) {
        return NULL;
    }
    atomic_init(&turn->is_cancelled, 0);
    memcpy(turn->addr, c->addr, sizeof(turn->addr));
    /* The name the gate counts: the user's, or a token's "NAME:". */
    const char *name = m->token[0] != '\0' ? m->token : m->username;
    size_t n = strcspn(name, m->token[0] != '\0' ? ":" : "");
    if (n <= AUTH_NAME_MAX) {
        memcpy(turn->name, name, n);
    }
    int failed = 0;
    turn->username = dup_nonempty(m->username, &failed);
    turn->password = dup_nonempty(m->password, &failed);
    turn->token = dup_nonempty(m->token, &failed);
    if (failed) {
        handle_login_turn_free(turn);
        return NULL;
    }
    return turn;
}

/* Refused: the Error goes out at once (any wait came before the check). */
static void login_refuse(struct iot *t, struct conn *c, const char *why)
{
    stats_add(&t->stats.auth_failures, 1);
    log_client_warn(c->client_id, c->peer, "authentication failed%s%s", why ? ": " : "",
                    why ? why : "");
    conn_fail(t, c, FERRY__ERROR_CODE__ERROR_AUTH_FAILED, why ? why : "authentication failed");
}

/* Hand the login to the auth pool; its answer comes as R_AUTH. */
static void login_submit(struct iot *t, struct conn *c)
{
    struct login_turn *turn = c->turn;
    struct auth_table *at = auth_holder_get(&t->srv->auth);
    int rc = at ? auth_pool_submit(t->srv->auth_pool, conn_ref_of(t, c), at, turn->username,
                                   turn->password, turn->token, &turn->is_cancelled, turn)
                : FERRY_EAUTH;
    auth_table_unref(at);
    if (rc == 0) {
        turn->is_submitted = 1;
        wipe_free(turn->username); /* the pool has its own copies */
        wipe_free(turn->password);
        wipe_free(turn->token);
        turn->username = turn->password = turn->token = NULL;
        return;
    }
    login_end(&t->srv->login, turn->addr, turn->name, 0, 0, t->now);
    c->turn = NULL;
    handle_login_turn_free(turn);
    if (rc == -EAGAIN || rc == -ENOMEM) {
        conn_fail(t, c, FERRY__ERROR_CODE__ERROR_SERVER_BUSY,
                  "too many logins in progress; retry later");
    } else {
        login_refuse(t, c, NULL); /* the auth file was removed meanwhile */
    }
}

/* Ask the gate whether this login's check may run: now, later (the timer
 * comes back here or submits), or not at all. */
void handle_login_step(struct iot *t, struct conn *c)
{
    struct login_turn *turn = c->turn;
    if (turn->has_turn) {
        login_submit(t, c); /* its wait is over */
        return;
    }
    uint64_t at = 0;
    enum login_verdict v = login_begin(&t->srv->login, turn->addr, turn->name, t->now, &at);
    if (v == LOGIN_REFUSE) {
        char why[160];
        snprintf(why, sizeof(why),
                 "too many failed logins from this address or for this user; retry in %llu ms",
                 (unsigned long long)(at - t->now));
        c->turn = NULL;
        handle_login_turn_free(turn);
        login_refuse(t, c, why);
        return;
    }
    turn->has_turn = v == LOGIN_RUN || v == LOGIN_AT;
    if (v == LOGIN_RUN) {
        login_submit(t, c);
    } else {
        /* Wait for the gate, but never past the Connect deadline. */
        conn_timer_arm(t, c, at < c->connect_deadline ? at : c->connect_deadline);
    }
}

void handle_login_abandon(struct iot *t, struct conn *c)
{
    struct login_turn *turn = c->turn;
    c->turn = NULL;
    if (turn->is_submitted) {
        atomic_store(&turn->is_cancelled, 1); /* the answer frees it */
        return;
    }
    if (turn->has_turn) {
        login_end(&t->srv->login, turn->addr, turn->name, 0, 0, t->now);
    }
    handle_login_turn_free(turn);
}

/* A Connect without credentials on a TLS connection whose verified client
 * certificate names a user (tls_identity cn or san-email): that user, with
 * the auth file's rights for the name, and no password. 1 if handled (in or
 * refused); 0: no identity, the usual path decides. */
static int connect_by_certificate(struct iot *t, struct conn *c, Ferry__Connect *m)
{
    const char *name = tls_conn_identity(c->tls, (enum tls_identity)t->srv->cfg.tls_identity);
    if (name == NULL) {
        return 0;
    }
    struct auth_table *at = auth_holder_get(&t->srv->auth);
    const struct auth_principal *who = at ? auth_principal_find(at, name) : NULL;
    if (who == NULL || !who->is_cert) {
        auth_table_unref(at);
        log_client_warn(c->client_id, c->peer,
                        "certificate identity \"%.64s\" is no `cert` of the auth file", name);
        c->keepalive_ms = m->keepalive_ms;
        c->req_max_frame = m->max_frame_len;
        conn_read_stop(t, c);
        login_refuse(t, c, NULL);
        return 1;
    }
    c->auth = at;
    c->who = who;
    conn_unauth_leave(t, c);
    log_client_info(c->client_id, c->peer, "authenticated by its certificate as %s", who->name);
    connect_accept(t, c, m->keepalive_ms, m->max_frame_len);
    return 1;
}

void handle_connect(struct iot *t, struct conn *c, Ferry__Connect *m)
{
    if (m->protocol_version != CODEC_PROTOCOL_VERSION) {
        conn_fail(t, c, FERRY__ERROR_CODE__ERROR_UNSUPPORTED_VERSION,
                  "unsupported protocol version (this server speaks 1)");
        return;
    }
    if (t->srv->auth_pool == NULL) {
        conn_unauth_leave(t, c);
        connect_accept(t, c, m->keepalive_ms, m->max_frame_len);
        return;
    }
    if (c->tls && m->token[0] == '\0' && m->username[0] == '\0' &&
        connect_by_certificate(t, c, m)) {
        return;
    }
    /* Until the login is decided this connection reads nothing more. The
     * Connect deadline still runs. */
    c->keepalive_ms = m->keepalive_ms;
    c->req_max_frame = m->max_frame_len;
    c->is_auth_pending = 1;
    conn_read_stop(t, c);
    if (m->token[0] == '\0' && m->username[0] == '\0') {
        login_refuse(t, c, NULL); /* the same answer as a wrong password */
    } else if ((c->turn = turn_new(c, m)) == NULL) {
        conn_fail(t, c, FERRY__ERROR_CODE__ERROR_SERVER_BUSY, "out of memory");
    } else {
        handle_login_step(t, c);
    }
    explicit_bzero(m->password, strlen(m->password));
    explicit_bzero(m->token, strlen(m->token));
}

/* The auth pool's answer to login_submit. */
void handle_auth_answer(struct iot *t, struct rmsg *m)
{
    struct login_turn *turn = m->u.auth.turn;
    login_end(&t->srv->login, turn->addr, turn->name, m->n_ids != 2, m->n_ids == 0, t->now);
    struct conn *c = conn_by_ref(t, m->conn_ref);
    struct auth_table *cur = NULL;
    const struct auth_principal *who = NULL;
    if (c != NULL && c->turn == turn) {
        c->turn = NULL;
    } else {
        c = NULL; /* closed meanwhile: it let go of the turn */
    }
    if (c == NULL || c->state != ST_AWAIT_CONNECT) {
        goto out; /* closed, or timed out meanwhile */
    }
    if (m->n_ids == 0) {
        /* A reload may have come in between: take the rights from the
         * current table, where the name may be gone. */
        cur = auth_holder_get(&t->srv->auth);
        who = cur ? auth_principal_find(cur, m->u.auth.who->name) : NULL;
    }
    if (who == NULL) {
        login_refuse(t, c, NULL);
        goto out;
    }
    c->auth = cur;
    c->who = who;
    cur = NULL;
    c->is_auth_pending = 0;
    c->last_rx_ms = t->now; /* not read while the pool checked: a new interval */
    conn_unauth_leave(t, c);
    connect_accept(t, c, c->keepalive_ms, c->req_max_frame);
    conn_read_start(t, c);
    conn_process_frames(t, c); /* whatever came after Connect */
out:
    handle_login_turn_free(turn);
    auth_table_unref(cur);
    auth_table_unref(m->u.auth.t);
}

void handle_pong_send(struct iot *t, struct conn *c, uint64_t nonce)
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
void handle_ping(struct iot *t, struct conn *c, uint64_t nonce)
{
    if ((!c->has_dur_acks && c->n_barriers == 0) || t->srv->writer == NULL) {
        handle_pong_send(t, c, nonce);
        return;
    }
    uint32_t w = t->srv->n_workers;
    struct barrier *b = malloc(sizeof(*b));
    if (b != NULL) {
        b->conn_ref = conn_ref_of(t, c);
        b->nonce = nonce;
        iot_wq_seal(t, w);
        struct wmsg m = {.kind = W_BARRIER, .p = b};
        if (iot_wq_push(&t->wq[w], m) == 0) {
            c->has_dur_acks = 0;
            c->n_barriers++;
            return;
        }
        free(b);
    }
    /* A Pong now would confirm what may not be stored: no answer at all. */
    conn_fail(t, c, FERRY__ERROR_CODE__ERROR_INTERNAL, "out of memory");
}

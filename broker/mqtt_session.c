/*
 * mqtt_session.c - MQTT persistent sessions (clean session 0), kept in
 * ferry's durable consumers (consumer.h); mqtt_int.h is what it shares.
 *
 * THE SESSION'S KEY
 *   A session is named by (user, client id): its key is hex(user) "-"
 *   hex(client id), the user being the logged-in one (empty without an
 *   auth file). So two users giving the same client id have two sessions,
 *   and neither can resume, nor clean away, the other's. The key must fit
 *   in a durable name: 2 * (bytes of user + client id) + 1 <= 192
 *   (MQTT_SESS_KEY_MAX); a longer one is refused with CONNACK 0x02
 *   (identifier rejected) when it is to be kept.
 *
 * ONE DURABLE PER FERRY SUBSCRIPTION
 *   In a kept session every SUBSCRIBE filter's ferry subscription is a
 *   durable consumer with explicit acks on the filter's ferry pattern
 *   (a wildcard durable for a wildcard filter), named
 *       mqtt-QK-<key>
 *   Q is the granted QoS ('0' or '1'), K is 'f' for the filter's pattern
 *   and 'p' for the second subscription of "x/#" (the topic "x" itself).
 *   The durables are the session's whole record: the filters are their
 *   patterns (mapped back: '.' '/', '*' '+', '>' '#'), the granted QoS is
 *   in the name; nothing else is stored. Durables are owned as any
 *   (consumer.h, OWNERS): by the user who made them, the session's user.
 *   A filter on an ephemeral topic (no wildcard) cannot be durable: it is
 *   subscribed as in a clean session, and not kept.
 *
 * RESUMING
 *   At CONNECT (clean session 0), the durables named mqtt-Q f-<key> are
 *   listed (cons_reg_list: every durable, in memory and in the store; a
 *   CONNECT pays for that listing); CONNACK says session present when there
 *   is one, and each is subscribed again (its durable bound again: messages
 *   stored meanwhile follow, and what was delivered and not acked is due at
 *   once, redelivered with DUP). Deliveries of a durable go out one PUBLISH
 *   per subscription (two overlapping filters: two copies, as 3.3.5
 *   allows), at QoS 1 acked to the durable when the client's PUBACK comes,
 *   at QoS 0 acked at once. Redelivery counts are unbounded (max_deliver
 *   UINT32_MAX: no dead letters) and a delivery not acked is sent again
 *   within a connection only after an hour (ack_wait): MQTT resends on
 *   reconnect.
 *
 * CLEANING
 *   A CONNECT with clean session 1 deletes the durables of its key's
 *   session; an UNSUBSCRIBE deletes the filter's; a SUBSCRIBE at another
 *   QoS deletes those of the filter's previous QoS. A clean CONNECT lists
 *   the durables only while sessions may exist (sessions_seen): on a
 *   server whose clients never asked for one, it costs nothing.
 *
 * TAKEOVER (3.1.4-2)
 *   A CONNECT with the key of a connected client (clean or not) closes
 *   that connection (R_MQTT_KICK to its IO thread; its will goes out, as
 *   mosquitto does) and waits, reading nothing, for it to end
 *   (R_MQTT_RESUME, mqtt_clients.h): only then, its durables released, is
 *   the session resumed or cleaned and CONNACK sent. A wait longer than
 *   MQTT_TAKEOVER_WAIT_MS, or a durable of the session bound by another
 *   kind of connection (a ferry client naming it), is refused with
 *   CONNACK 0x03. Keys are per user: nobody closes another user's client.
 *
 * Everything here runs on the connection's IO thread; the consumer
 * registry is called without any lock of ours held.
 */
#include "mailbox.h"
#include "mqtt_clients.h"
#include "mqtt_int.h"
#include "mqtt_topic.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SESS_ACK_WAIT_MS 3600000u

/* Does any session's durable exist? Most clients connect with clean
 * session 1 and a client id, and each such CONNECT would list every
 * durable to delete its session's: while no session was ever seen, they
 * need not. 0: not known yet (the first CONNECT lists), 1: none was seen
 * (set only from 0, by a listing that found none), 2: some may exist (set
 * before a session's durable is made, and by a listing that found one).
 * Atomic: every IO thread reads and sets it. */
static atomic_int sessions_seen;

static void hex_put(char *out, const void *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

int mqtt__session_prepare(struct iot *t, struct conn *c, const struct mqtt_connect *m)
{
    struct mqtt_sess *mq = c->mq;
    mq->is_persistent = !m->is_clean;
    if (2 * m->client_id.len + 1 > MQTT_SESS_KEY_MAX) {
        if (!m->is_clean) {
            mqtt__send_connack(t, c, MQTT_CONNACK_BAD_CLIENT_ID);
            mqtt__close(t, c, "MQTT CONNECT: a client id too long for a kept session");
            return -1;
        }
        mq->sess_key[0] = '\0'; /* clean: no session of that id can exist */
        return 0;
    }
    hex_put(mq->sess_key, m->client_id.p, m->client_id.len);
    return 0;
}

void mqtt__session_name(const struct mqtt_sess *mq, uint8_t qos, int i, char *name)
{
    snprintf(name, CONS_NAME_MAX + 1, "mqtt-%c%c-%s", qos ? '1' : '0', i ? 'p' : 'f', mq->sess_key);
}

/* Is name one of this session's durables? Its QoS and kind, then. */
static int is_ours(const struct mqtt_sess *mq, const char *name, uint8_t *qos, int *kind)
{
    size_t klen = strlen(mq->sess_key);
    if (strncmp(name, "mqtt-", 5) != 0 || (name[5] != '0' && name[5] != '1') ||
        (name[6] != 'f' && name[6] != 'p') || name[7] != '-' || strlen(name + 8) != klen ||
        memcmp(name + 8, mq->sess_key, klen) != 0) {
        return 0;
    }
    *qos = (uint8_t)(name[5] - '0');
    *kind = name[6] == 'p';
    return 1;
}

static int match_all(void *ctx, const char *topic, size_t len)
{
    (void)ctx;
    (void)topic;
    (void)len;
    return 1;
}

static void delete_one(struct iot *t, struct conn *c, const char *topic, size_t tlen,
                       const char *name)
{
    struct cons_detach *held = NULL;
    uint32_t n_held = 0;
    int rc = cons_reg_delete(t->srv->consumers, topic, tlen, name, strlen(name), 0, &held, &n_held);
    free(held); /* none: not forced */
    if (rc < 0 && rc != FERRY_ENOTOPIC) {
        log_client_warn(c->client_id, c->peer, "MQTT session: durable %s on %.*s not deleted: %s",
                        name, (int)tlen, topic, server_strerror(rc));
    }
}

/* The key: hex(user) "-" hex(client id). 0, or -1 (too long). */
static int key_make(struct conn *c)
{
    struct mqtt_sess *mq = c->mq;
    const char *user = c->auth != NULL && c->who != NULL ? c->who->name : "";
    size_t ulen = strlen(user), idlen = strlen(mq->sess_key);
    if (2 * ulen + 1 + idlen > MQTT_SESS_KEY_MAX) {
        return -1;
    }
    memmove(mq->sess_key + 2 * ulen + 1, mq->sess_key, idlen + 1);
    hex_put(mq->sess_key, user, ulen); /* its NUL becomes the '-' */
    mq->sess_key[2 * ulen] = '-';
    return 0;
}

/* A ferry pattern as the MQTT filter it came from. */
static size_t filter_of(const char *pat, size_t plen, char *out)
{
    for (size_t i = 0; i < plen; i++) {
        out[i] = pat[i] == '.' ? '/' : pat[i] == '*' ? '+' : pat[i] == '>' ? '#' : pat[i];
    }
    return plen;
}

/* CONNACK 0x03 and close: the session cannot be had now. No will. */
static void refuse_unavailable(struct iot *t, struct conn *c, const char *why)
{
    log_client_info(c->client_id, c->peer, "MQTT CONNECT refused: %s", why);
    c->mq->is_connected = 0;
    mqtt__send_connack(t, c, MQTT_CONNACK_UNAVAILABLE);
    conn_close_after_flush(t, c);
}

/* Without waiting: two IO threads posting to each other's full mailboxes
 * must not block each other. A refused kick is a CONNACK 0x03 (the client
 * retries), a refused resume a wait that runs out (the same). */
static int post_to(struct iot *t, uint32_t kind, uint64_t ref)
{
    struct rmsg m = {.kind = kind, .conn_ref = ref};
    uint32_t k = CONN_REF_IOT(ref);
    return k < t->srv->n_iot && mbox_try_post(t->srv->iot_in[k], &m, 1) == 1 ? 0 : -EAGAIN;
}

static void session_go(struct iot *t, struct conn *c, int may_wait);

/* Wait for R_MQTT_RESUME (at most MQTT_TAKEOVER_WAIT_MS): no CONNACK yet
 * (and so no will), nothing read, as during a login. */
static void wait_start(struct iot *t, struct conn *c)
{
    c->mq->is_connected = 0;
    c->mq->is_waiting = 1;
    c->is_auth_pending = 1;
    conn_read_stop(t, c);
    conn_timer_arm(t, c, t->now + MQTT_TAKEOVER_WAIT_MS);
}

void mqtt__session_connected(struct iot *t, struct conn *c)
{
    struct mqtt_sess *mq = c->mq;
    if (mq->sess_key[0] != '\0' && key_make(c) < 0) {
        mq->sess_key[0] = '\0';
        if (mq->is_persistent) {
            mq->is_connected = 0; /* refused: no will */
            mqtt__send_connack(t, c, MQTT_CONNACK_BAD_CLIENT_ID);
            mqtt__close(t, c, "MQTT CONNECT: user and client id too long for a kept session");
            return;
        }
    }
    uint64_t prev = 0;
    int rc = 0;
    if (mq->sess_key[0] != '\0' && t->srv->mqtt_clients != NULL) {
        rc = mqtt_clients_claim(t->srv->mqtt_clients, mq->sess_key, conn_ref_of(t, c), &prev);
        mq->is_claimed = rc >= 0;
    }
    if (rc < 0) {
        refuse_unavailable(t, c, "out of memory");
        return;
    }
    if (rc == 0) {
        session_go(t, c, 0);
        return;
    }
    /* 3.1.4-2: the connection holding this client id is closed; this one
     * waits for it to end (its durables released: R_MQTT_RESUME), reading
     * nothing and with no CONNACK yet, as during its login. */
    if (post_to(t, R_MQTT_KICK, prev) < 0) {
        refuse_unavailable(t, c, "the connection holding its client id could not be told");
        return;
    }
    log_client_info(c->client_id, c->peer, "MQTT client id in use: taking its session over");
    wait_start(t, c);
}

void mqtt_conn_kick(struct iot *t, const struct rmsg *m)
{
    struct conn *c = conn_by_ref(t, m->conn_ref);
    if (c == NULL || c->mq == NULL || c->state == ST_DEAD) {
        return; /* gone already: its release told the claimant */
    }
    log_client_info(c->client_id, c->peer,
                    "MQTT session taken over by a new connection with its client id; closing");
    conn_kill(t, c); /* its will goes out, and its durables are released */
}

void mqtt_conn_ended(struct iot *t, struct conn *c)
{
    struct mqtt_sess *mq = c->mq;
    uint64_t next;
    if (!mq->is_claimed) {
        return;
    }
    mq->is_claimed = 0;
    if (mqtt_clients_release(t->srv->mqtt_clients, mq->sess_key, conn_ref_of(t, c), &next) == 1 &&
        post_to(t, R_MQTT_RESUME, next) < 0) {
        log_warn("MQTT takeover: could not tell the new connection that the old one ended");
    }
}

/* The takeover's wait is over: the durables are listed again, and the
 * session goes on unless a connection still holds one of them. */
void mqtt_conn_resume(struct iot *t, const struct rmsg *m)
{
    struct conn *c = conn_by_ref(t, m->conn_ref);
    if (c == NULL || c->mq == NULL || c->state != ST_OPEN || !c->mq->is_waiting) {
        return;
    }
    c->mq->is_waiting = 0;
    c->is_auth_pending = 0;
    c->last_rx_ms = t->now; /* not read while it waited: a new interval */
    mqtt__keepalive_arm(t, c);
    session_go(t, c, 1);
    if (c->state == ST_OPEN && !c->mq->is_waiting) {
        conn_read_start(t, c);
        conn_process_frames(t, c); /* what came after CONNECT */
    }
}

int mqtt_conn_on_timer(struct iot *t, struct conn *c)
{
    if (!c->mq->is_waiting) {
        return mqtt__sys_on_timer(t, c);
    }
    c->mq->is_waiting = 0;
    c->is_auth_pending = 0;
    refuse_unavailable(t, c, "the connection holding its client id did not end in time");
    return 1;
}

/* Whether one of the session's durables is bound to a subscription. */
static int is_held(const struct mqtt_sess *mq, const struct cons_info *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t qos;
        int kind;
        if (v[i].n_holders > 0 && is_ours(mq, v[i].name, &qos, &kind)) {
            return 1;
        }
    }
    return 0;
}

/* The client id is ours: CONNACK, cleaning or resuming the session. */
static void session_go(struct iot *t, struct conn *c, int may_wait)
{
    struct mqtt_sess *mq = c->mq;
    mq->is_connected = 1;
    if (mq->sess_key[0] == '\0' || t->srv->consumers == NULL ||
        (!mq->is_persistent && atomic_load(&sessions_seen) == 1)) {
        mqtt__send_connack(t, c, MQTT_CONNACK_ACCEPTED); /* no session to clean */
        return;
    }
    struct cons_info *v = NULL;
    size_t n = 0;
    int rc = cons_reg_list(t->srv->consumers, match_all, NULL, &v, &n);
    if (rc < 0) {
        log_client_warn(c->client_id, c->peer, "MQTT session: durables not listed: %s",
                        server_strerror(rc));
        refuse_unavailable(t, c, "its session could not be read");
        return;
    }
    /* Roots and durables on one topic; a wildcard durable's positions go
     * with their root. */
    size_t n_kept = 0;
    int expect = 0;
    int any = 0;
    for (size_t i = 0; i < n && !any; i++) {
        any = strncmp(v[i].name, "mqtt-", 5) == 0;
    }
    if (any) {
        atomic_store(&sessions_seen, 2);
    } else {
        atomic_compare_exchange_strong(&sessions_seen, &expect, 1);
    }
    if (is_held(mq, v, n)) {
        free(v);
        if (may_wait) {
            /* Another connection of the session is still open or closing,
             * though told to end (takeovers raced): wait once more. */
            wait_start(t, c);
        } else {
            /* Bound by a connection that is not the client id's holder
             * (a ferry client using the durable's name). */
            refuse_unavailable(t, c, "the session is held by another connection");
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t qos;
        int kind;
        if (v[i].pattern[0] != '\0' || !is_ours(mq, v[i].name, &qos, &kind)) {
            continue;
        }
        if (!mq->is_persistent) {
            delete_one(t, c, v[i].topic, strlen(v[i].topic), v[i].name);
        } else if (kind == 0) {
            v[n_kept++] = v[i];
        }
    }
    mqtt__send_connack_sp(t, c, n_kept > 0, MQTT_CONNACK_ACCEPTED);
    for (size_t i = 0; i < n_kept && c->state == ST_OPEN; i++) {
        char text[STORE_TOPIC_MAX + 1];
        size_t len = filter_of(v[i].topic, strlen(v[i].topic), text);
        struct mqtt_str s = {(const uint8_t *)text, len};
        mqtt__subscribe_one(t, c, s, (uint8_t)(v[i].name[5] - '0'), UINT32_MAX, 1);
    }
    if (n_kept > 0) {
        log_client_info(c->client_id, c->peer, "MQTT session resumed: %zu filters", n_kept);
    }
    free(v);
}

void mqtt__session_forget(struct iot *t, struct conn *c, const char *pat, size_t plen,
                          size_t parent, int keep_qos)
{
    struct mqtt_sess *mq = c->mq;
    if (!mq->is_persistent || mq->sess_key[0] == '\0' || t->srv->consumers == NULL) {
        return;
    }
    char name[CONS_NAME_MAX + 1];
    for (uint8_t q = 0; q < 2; q++) {
        if (q == keep_qos) {
            continue;
        }
        mqtt__session_name(mq, q, 0, name);
        delete_one(t, c, pat, plen, name);
        if (parent > 0) {
            mqtt__session_name(mq, q, 1, name);
            delete_one(t, c, pat, parent, name);
        }
    }
}

static void ack_send(struct iot *t, struct conn *c, uint64_t sub_id, uint64_t seq, char *topic)
{
    Ferry__Ack a = FERRY__ACK__INIT;
    a.sub_id = sub_id;
    a.sequence = seq;
    a.topic = topic;
    handle_ack(t, c, &a);
}

void mqtt__session_track(struct iot *t, struct conn *c, uint16_t pid, uint64_t sub_id, uint64_t seq,
                         const char *topic, size_t tlen)
{
    struct mqtt_sess *mq = c->mq;
    char *tc = malloc(tlen + 1);
    if (tc == NULL) {
        conn_fail(t, c, FERRY__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        return;
    }
    memcpy(tc, topic, tlen);
    tc[tlen] = '\0';
    if (pid == 0) {
        ack_send(t, c, sub_id, seq, tc); /* QoS 0: delivered is done */
        free(tc);
        return;
    }
    if (mq->n_ifl == mq->ifl_cap) {
        uint32_t cap = mq->ifl_cap ? mq->ifl_cap * 2 : 16;
        struct mqtt_inflight *nv = realloc(mq->ifl, cap * sizeof(*nv));
        if (nv == NULL) {
            free(tc);
            conn_fail(t, c, FERRY__ERROR_CODE__ERROR_INTERNAL, "out of memory");
            return;
        }
        mq->ifl = nv;
        mq->ifl_cap = cap;
    }
    mq->ifl[mq->n_ifl++] = (struct mqtt_inflight){pid, sub_id, seq, tc};
}

void mqtt__session_puback(struct iot *t, struct conn *c, uint16_t pid)
{
    struct mqtt_sess *mq = c->mq;
    /* Newest first: a PUBACK usually answers a recent PUBLISH. In flight
     * are at most the durables' max_in_flight (1024 each). */
    for (uint32_t i = mq->n_ifl; i-- > 0;) {
        if (mq->ifl[i].pid == pid) {
            struct mqtt_inflight e = mq->ifl[i];
            mq->ifl[i] = mq->ifl[--mq->n_ifl];
            ack_send(t, c, e.sub_id, e.seq, e.topic);
            free(e.topic);
            return;
        }
    }
}

void mqtt__session_free(struct mqtt_sess *mq)
{
    for (uint32_t i = 0; i < mq->n_ifl; i++) {
        free(mq->ifl[i].topic);
    }
    free(mq->ifl);
    mq->ifl = NULL;
    mq->n_ifl = mq->ifl_cap = 0;
}

void mqtt__session_sub_opts(const struct mqtt_sess *mq, uint8_t qos, int i, char *name,
                            Ferry__Subscribe *fs)
{
    atomic_store(&sessions_seen, 2); /* before the durable exists */
    mqtt__session_name(mq, qos, i, name);
    fs->durable_name = name;
    fs->ack_mode = FERRY__ACK_MODE__ACK_EXPLICIT;
    fs->ack_wait_ms = SESS_ACK_WAIT_MS;
    fs->max_deliver = UINT32_MAX;
}

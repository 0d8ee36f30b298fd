/*
 * mqtt_conn.c - an MQTT 3.1.1 connection (the mqtt_listen listener) on an
 * IO thread: its life, the packets it reads and their framing. What it is
 * sent is in mqtt_out.c; mqtt_int.h is what the two share.
 *
 * An MQTT connection is an ordinary struct conn with c->mq set. Everything
 * behind the handlers stays as it is: a PUBLISH becomes a pub_in for
 * handle_publish_enqueue (topic checks, ACLs, stored or ephemeral, the
 * writer's group commit), a SUBSCRIBE becomes one or two Ferry__Subscribe
 * for handle_subscribe (ACLs, the tries, positions on stored topics), and
 * CONNECT becomes a Ferry__Connect for handle_connect (the login gate, the
 * auth pool, the auth file's rights). The handlers answer with ferry frames
 * through conn_send(); for an MQTT connection conn.c hands those frames to
 * mqtt_conn_reply(), which turns them into MQTT packets: Connected into
 * CONNACK 0, a refused login into CONNACK 0x04 or 0x05, PubAck into PUBACK
 * (QoS 1) or PUBREC (QoS 2), SubAcks into one SUBACK per SUBSCRIBE.
 * Deliveries (deliver.c live, catchup.c from the store) reach
 * mqtt_conn_deliver(), which writes an MQTT PUBLISH into the connection's
 * buffer instead of staging the shared Deliver bytes.
 *
 * Choices (MQTT 3.1.1 leaves them to the server; README.md, "MQTT"):
 * - QoS: a subscription is granted QoS 0 or 1 (2 is granted as 1, 3.8.4).
 *   A message goes out at the lower of its publisher's QoS and the granted
 *   one; a message published by a ferry client counts as QoS 1, one
 *   published over MQTT at QoS 0 carries the header mqtt-qos=0 for that.
 *   QoS 1 deliveries get packet ids, held until the client's PUBACK; in a
 *   kept session (clean session 0) the PUBACK acks the message to its
 *   durable, else nothing is redelivered after a reconnect.
 * - An inbound QoS 1 PUBLISH is answered with PUBACK, and a QoS 2 one with
 *   PUBREC, when ferry would send its PubAck: after the commit on a stored
 *   topic. PUBREL is answered with PUBCOMP. A QoS 2 message is stored once
 *   per PUBLISH received (a client resending one after a reconnect of its
 *   session stores it again: QoS 2 is kept as at least once).
 * - A PUBLISH the server refuses (ACL, topic rules, storage full) closes
 *   the connection: MQTT 3.1.1 has no negative PUBACK, and acknowledging a
 *   message that was not taken would be a silent loss (3.3.5).
 * - clean session 0 keeps the session in durable consumers, one per ferry
 *   subscription of each filter, named after the user and the client id
 *   (mqtt_session.c says how); clean session 1 deletes them. A CONNECT
 *   with the client id (and user) of a connected client takes it over:
 *   that connection is closed, its will published, and the new one waits
 *   for its end before its CONNACK (mqtt_clients.h).
 * - The will is published (with the connection's rights, retain ignored)
 *   when a logged-in connection ends without DISCONNECT: closed by the
 *   client, by a keepalive timeout, or by the server for a protocol error;
 *   not when the server stops.
 * - Retained messages (mqtt_retain.h) are kept in the store (an internal
 *   last-value topic) with a table in memory as their cache, bounded
 *   (64 MiB), loaded at start. A retained PUBLISH that was
 *   accepted sets its topic's (an empty one clears it); a subscription
 *   gets the matching ones after its SUBACK, with the RETAIN flag, at the
 *   lower of their QoS and the granted one. A retained message that does
 *   not fit closes the connection (it was published, but not retained).
 * - $SYS/... (mqtt_sys_out.c): the broker's figures, for users an auth file
 *   allows to subscribe to "$SYS.>" (or part of it); no ferry topic. A
 *   PUBLISH or a will to a $SYS topic is refused (closed; CONNACK 0x05).
 */
#include "mqtt_int.h"
#include "mqtt_retain.h"
#include "mqtt_sys.h"
#include "mqtt_topic.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The largest packet before CONNECT is through: a CONNECT with credentials
 * and a modest will. Connections not logged in are bounded in number (the
 * login gate), each to this much input. */
#define MQTT_PRE_CONNECT_MAX 16384u

static void will_forget(struct mqtt_sess *mq)
{
    free(mq->will_topic);
    free(mq->will_msg);
    mq->will_topic = NULL;
    mq->will_msg = NULL;
}

int mqtt_conn_init(struct conn *c)
{
    c->mq = calloc(1, sizeof(*c->mq));
    return c->mq ? 0 : -ENOMEM;
}

void mqtt_conn_destroy(struct conn *c)
{
    struct mqtt_sess *mq = c->mq;
    if (mq == NULL) {
        return;
    }
    for (uint32_t i = 0; i < mq->n_f; i++) {
        free(mq->f[i].text);
    }
    free(mq->f);
    free(mq->sa);
    free(mq->in);
    free(mq->pid_used);
    mqtt__session_free(mq);
    will_forget(mq);
    free(mq);
    c->mq = NULL;
}

/* ---- packets from the client --------------------------------------------- */

/* A copy of s as a C string, or NULL (no memory, or s holds a NUL byte:
 * *has_nul). */
static char *cstr(struct mqtt_str s, int *has_nul)
{
    if (s.len > 0 && memchr(s.p, 0, s.len) != NULL) {
        *has_nul = 1;
        return NULL;
    }
    char *d = malloc(s.len + 1);
    if (d != NULL) {
        if (s.len > 0) {
            memcpy(d, s.p, s.len);
        }
        d[s.len] = '\0';
    }
    return d;
}

static void wipe_free(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

/* Keep CONNECT's will for mqtt_conn_lost. 0, or -1 (refused: failed). */
static int will_keep(struct iot *t, struct conn *c, const struct mqtt_connect *m)
{
    struct mqtt_sess *mq = c->mq;
    size_t tlen, parent;
    char *topic = malloc(m->will_topic.len + 1);
    uint8_t *msg = malloc(m->will_msg.len ? m->will_msg.len : 1);
    if (topic == NULL || msg == NULL) {
        free(topic);
        free(msg);
        conn_fail(t, c, FERRY__ERROR_CODE__ERROR_SERVER_BUSY, "out of memory");
        return -1;
    }
    if (mqtt_sys_is_sys((const char *)m->will_topic.p, m->will_topic.len)) {
        free(topic);
        free(msg);
        mqtt__send_connack(t, c, MQTT_CONNACK_NOT_AUTHORIZED);
        mqtt__close(t, c, "MQTT CONNECT: a will on a $SYS topic (the broker's own)");
        return -1;
    }
    if (m->will_topic.len > t->srv->cfg.max_topic_len ||
        mqtt_topic_to_ferry((const char *)m->will_topic.p, m->will_topic.len, 0, topic, &tlen,
                            &parent) < 0) {
        free(topic);
        free(msg);
        mqtt__close(t, c, "MQTT CONNECT: the will topic has no ferry topic (see README: MQTT)");
        return -1;
    }
    if (m->will_msg.len > 0) {
        memcpy(msg, m->will_msg.p, m->will_msg.len);
    }
    mq->will_topic = topic;
    mq->will_topic_len = tlen;
    mq->will_msg = msg;
    mq->will_len = m->will_msg.len;
    mq->will_qos = m->will_qos;
    return 0;
}

void mqtt_conn_lost(struct iot *t, struct conn *c)
{
    struct mqtt_sess *mq = c->mq;
    if (mq->will_topic == NULL || !mq->is_connected || atomic_load(&t->srv->phase) != PHASE_RUN) {
        return; /* none, never logged in, or the server stops (no routing left) */
    }
    Ferry__Header h = FERRY__HEADER__INIT;
    h.key = (char *)MQTT_QOS_HEADER;
    h.value = (char *)"0";
    Ferry__Header *hp[1] = {&h};
    struct pub_in p = {
        .topic = mq->will_topic,
        .topic_len = mq->will_topic_len,
        .payload = mq->will_msg,
        .payload_len = mq->will_len,
    };
    if (mq->will_qos == 0) {
        p.headers = hp;
        p.n_headers = 1;
    }
    log_client_info(c->client_id, c->peer, "MQTT connection lost: publishing its will on %s",
                    mq->will_topic);
    /* With the rights of the connection, as any of its publishes; nobody
     * waits for an answer (a refusal is counted and logged). */
    handle_publish_enqueue(t, c, &p);
    will_forget(mq);
}

static void on_connect(struct iot *t, struct conn *c, const uint8_t *body, size_t len)
{
    struct mqtt_connect m;
    int rc = mqtt_connect_decode(body, len, &m);
    if (rc == MQTT_EPROTOCOL) {
        mqtt__send_connack(t, c, MQTT_CONNACK_BAD_PROTOCOL);
        mqtt__close(t, c, "MQTT CONNECT: unsupported protocol level (this server speaks 3.1.1)");
        return;
    }
    if (rc < 0) {
        mqtt__close(t, c, "malformed MQTT CONNECT");
        return;
    }
    if (m.client_id.len == 0 && !m.is_clean) {
        mqtt__send_connack(t, c, MQTT_CONNACK_BAD_CLIENT_ID); /* 3.1.3-8 */
        mqtt__close(t, c, "MQTT CONNECT: an empty client id needs clean session 1");
        return;
    }
    if (mqtt__session_prepare(t, c, &m) < 0) {
        return;
    }
    c->mq->keepalive_s = m.keepalive;
    c->mq->has_user = m.has_user;
    if (m.has_will && will_keep(t, c, &m) < 0) {
        return;
    }
    int has_nul = 0;
    char *user = m.has_user ? cstr(m.username, &has_nul) : NULL;
    char *pass = m.has_pass ? cstr(m.password, &has_nul) : NULL;
    if (has_nul) {
        /* A password with a NUL byte cannot be one of the auth file's
         * (never compare a truncated copy): a wrong password, CONNACK
         * 0x04 (on_error). */
        wipe_free(user);
        wipe_free(pass);
        conn_fail(t, c, FERRY__ERROR_CODE__ERROR_AUTH_FAILED, "authentication failed");
        return;
    }
    if ((m.has_user && user == NULL) || (m.has_pass && pass == NULL)) {
        wipe_free(user);
        wipe_free(pass);
        conn_fail(t, c, FERRY__ERROR_CODE__ERROR_SERVER_BUSY, "out of memory");
        return;
    }
    log_client_debug(c->client_id, c->peer, "MQTT CONNECT client id \"%.*s\", keepalive %u s%s",
                     (int)(m.client_id.len > 64 ? 64 : m.client_id.len),
                     m.client_id.len ? (const char *)m.client_id.p : "", m.keepalive,
                     m.is_clean ? "" : ", clean session 0");
    Ferry__Connect fc = FERRY__CONNECT__INIT;
    fc.protocol_version = CODEC_PROTOCOL_VERSION;
    if (user != NULL) {
        fc.username = user;
    }
    if (pass != NULL) {
        fc.password = pass;
    }
    handle_connect(t, c, &fc);
    wipe_free(user);
    wipe_free(pass);
}

/* A retained PUBLISH the client may make: its record in the store's
 * retained topic (mqtt_retain.h, IN THE STORE), queued before the message
 * so that it is committed when the message's PUBACK goes. */
static void retain_store(struct iot *t, struct conn *c, const char *topic, size_t tlen,
                         const struct mqtt_publish *m)
{
    if (t->srv->store == NULL || t->srv->mqtt_retained == NULL || tlen > STORE_LASTVAL_KEY_MAX ||
        !conn_may_publish(c, topic, tlen)) {
        return; /* kept in memory only; or refused, which closes c */
    }
    Ferry__Header h = FERRY__HEADER__INIT;
    h.key = (char *)MQTT_RETAIN_QOS_HEADER;
    h.value = (char *)(m->qos == 0 ? "0" : "1");
    Ferry__Header *hp[1] = {&h};
    struct pub_in p = {
        .topic = MQTT_RETAIN_TOPIC,
        .topic_len = sizeof(MQTT_RETAIN_TOPIC) - 1,
        .payload = m->payload.p,
        .payload_len = m->payload.len,
        .key = (const uint8_t *)topic,
        .key_len = tlen,
        .headers = hp,
        .n_headers = 1,
        .is_internal = 1,
    };
    handle_publish_enqueue(t, c, &p);
}

static void on_publish(struct iot *t, struct conn *c, uint8_t first, const uint8_t *body,
                       size_t len)
{
    struct mqtt_publish m;
    if (mqtt_publish_decode(first, body, len, &m) < 0) {
        mqtt__close(t, c, "malformed MQTT PUBLISH");
        return;
    }
    char topic[4096 + 1];
    size_t tlen, plen;
    if (m.topic.len > t->srv->cfg.max_topic_len ||
        mqtt_topic_to_ferry((const char *)m.topic.p, m.topic.len, 0, topic, &tlen, &plen) < 0) {
        mqtt__close(t, c, "MQTT PUBLISH: the topic name has no ferry topic (see README: MQTT)");
        return;
    }
    if (mqtt_sys_is_sys((const char *)m.topic.p, m.topic.len)) {
        /* The broker's own topics: refused as a PUBLISH without the right
         * is (closed, no PUBACK), whatever the rights say. */
        conn_acl_denied(t, c, "publish to the broker's", topic, tlen);
        conn_close_after_flush(t, c);
        return;
    }
    Ferry__Header h = FERRY__HEADER__INIT;
    h.key = (char *)MQTT_QOS_HEADER;
    h.value = (char *)"0";
    Ferry__Header *hp[1] = {&h};
    struct pub_in p = {
        .id = m.qos ? ((uint64_t)m.qos << 16 | m.packet_id) : 0,
        .topic = topic,
        .topic_len = tlen,
        .payload = m.payload.p,
        .payload_len = m.payload.len,
        .want_ack = m.qos > 0,
    };
    if (m.qos == 0) {
        p.headers = hp;
        p.n_headers = 1;
    }
    if (m.is_retain) {
        retain_store(t, c, topic, tlen, &m);
    }
    handle_publish_enqueue(t, c, &p);
    if (m.is_retain && c->state == ST_OPEN && t->srv->mqtt_retained != NULL) {
        /* Accepted (a refusal closes the connection): it is the topic's
         * retained message now, or an empty one clears it. */
        int rc = mqtt_retain_put(t->srv->mqtt_retained, topic, tlen, m.payload.p, m.payload.len,
                                 m.qos > 1 ? 1 : m.qos);
        if (rc < 0) {
            log_client_warn(
                c->client_id, c->peer, "MQTT retained message on %s not kept (%s); closing", topic,
                rc == -ENOSPC ? "retained messages are at their bound" : "out of memory");
            conn_close_after_flush(t, c);
        }
    }
}

int mqtt__filter_add(struct conn *c, struct mqtt_str s, uint8_t qos, uint32_t ack_idx)
{
    struct mqtt_sess *mq = c->mq;
    if (mq->n_f == mq->f_cap) {
        uint32_t cap = mq->f_cap ? mq->f_cap * 2 : 4;
        struct mqtt_filter *v = realloc(mq->f, cap * sizeof(*v));
        if (v == NULL) {
            return -1;
        }
        mq->f = v;
        mq->f_cap = cap;
    }
    char *text = malloc(s.len);
    if (text == NULL) {
        return -1;
    }
    memcpy(text, s.p, s.len);
    struct mqtt_filter *f = &mq->f[mq->n_f];
    memset(f, 0, sizeof(*f));
    f->text = text;
    f->len = s.len;
    f->qos = qos > 1 ? 1 : qos;
    f->ack_idx = ack_idx;
    return (int)mq->n_f++;
}

static int filter_find_text(const struct mqtt_sess *mq, struct mqtt_str s)
{
    for (uint32_t i = 0; i < mq->n_f; i++) {
        if (mq->f[i].len == s.len && memcmp(mq->f[i].text, s.p, s.len) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* May the session keep pattern (a durable)? */
static int may_keep(struct iot *t, const struct conn *c, const char *pat, size_t plen)
{
    return c->mq->is_persistent && c->mq->sess_key[0] != '\0' && t->srv->consumers != NULL &&
           t->srv->store != NULL &&
           (topic_has_wildcard(pat, plen) || !cfg_is_ephemeral(&t->srv->cfg, pat, plen));
}

static void suback_code(struct mqtt_sess *mq, uint32_t idx, uint8_t code)
{
    if (mq->sa != NULL && idx < mq->sa->n) {
        mq->sa->codes[idx] = code;
        mq->sa->left--;
    }
}

/* One topic filter of a SUBSCRIBE (or a session's, is_restore): its ferry
 * patterns handed to handle_subscribe; the SubAcks settle it (now or
 * later). In a kept session they are its durables (mqtt_session.c). */
void mqtt__subscribe_one(struct iot *t, struct conn *c, struct mqtt_str s, uint8_t qos,
                         uint32_t idx, int is_restore)
{
    struct mqtt_sess *mq = c->mq;
    char pat[4096 + 1];
    size_t plen, parent;
    if (s.len > t->srv->cfg.max_topic_len ||
        mqtt_topic_to_ferry((const char *)s.p, s.len, 1, pat, &plen, &parent) < 0) {
        suback_code(mq, idx, MQTT_SUBACK_FAILURE);
        log_client_info(c->client_id, c->peer, "MQTT SUBSCRIBE %.*s refused: no ferry pattern",
                        (int)(s.len > 256 ? 256 : s.len), (const char *)s.p);
        return;
    }
    int old = filter_find_text(mq, s);
    if (old >= 0) {
        mqtt__filter_remove(t, c, (uint32_t)old); /* 3.8.4-3: a new one replaces it */
    }
    if (mqtt_sys_is_sys((const char *)s.p, s.len)) {
        if (is_restore || mqtt__sys_subscribe(t, c, s, pat, plen, idx) < 0) {
            suback_code(mq, idx, MQTT_SUBACK_FAILURE);
        }
        return; /* the broker's own topics (mqtt_sys_out.c) */
    }
    if (!is_restore) {
        mqtt__session_forget(t, c, pat, plen, parent, qos > 1 ? 1 : qos); /* another QoS's */
    }
    int k = mqtt__filter_add(c, s, qos, idx);
    if (k < 0) {
        suback_code(mq, idx, MQTT_SUBACK_FAILURE);
        return;
    }
    mq->f[k].is_issuing = 1;
    mq->f[k].is_restored = (uint8_t)is_restore;
    for (int i = 0; i < (parent ? 2 : 1) && !mq->f[k].is_failed && c->state == ST_OPEN; i++) {
        Ferry__Subscribe fs = FERRY__SUBSCRIBE__INIT;
        char name[CONS_NAME_MAX + 1];
        fs.sub_id = ++mq->next_sub_id;
        if (i == 1) {
            pat[parent] = '\0'; /* "x/#" matches x too */
        }
        fs.pattern = pat;
        if (may_keep(t, c, pat, strlen(pat))) {
            mqtt__session_sub_opts(mq, mq->f[k].qos, i, name, &fs);
            mq->f[k].is_durable = 1;
        }
        mq->f[k].sub_ids[mq->f[k].n_ids++] = fs.sub_id;
        mq->f[k].n_wait++;
        handle_subscribe(t, c, &fs);
    }
    mq->f[k].is_issuing = 0;
    if (c->state == ST_OPEN) {
        mqtt__filter_settle(t, c, (uint32_t)k);
    }
}

static void on_subscribe(struct iot *t, struct conn *c, const uint8_t *body, size_t len)
{
    uint16_t pid;
    uint32_t n;
    if (mqtt_sub_decode(body, len, 1, &pid, &n) < 0) {
        mqtt__close(t, c, "malformed MQTT SUBSCRIBE");
        return;
    }
    struct mqtt_suback *sa = calloc(1, sizeof(*sa) + n); /* n <= len / 4: in hand */
    if (sa == NULL) {
        conn_fail(t, c, FERRY__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        return;
    }
    sa->packet_id = pid;
    sa->n = sa->left = n;
    sa->is_issuing = 1;
    free(c->mq->sa);
    c->mq->sa = sa;
    const uint8_t *p = body + 2;
    for (uint32_t i = 0; i < n && c->state == ST_OPEN; i++) {
        struct mqtt_str s;
        uint8_t qos;
        mqtt_filter_next(&p, 1, &s, &qos);
        mqtt__subscribe_one(t, c, s, qos, i, 0);
    }
    if (c->state == ST_OPEN && c->mq->sa == sa) {
        sa->is_issuing = 0;
        mqtt__suback_maybe_send(t, c);
    }
}

static void on_unsubscribe(struct iot *t, struct conn *c, const uint8_t *body, size_t len)
{
    uint16_t pid;
    uint32_t n;
    if (mqtt_sub_decode(body, len, 0, &pid, &n) < 0) {
        mqtt__close(t, c, "malformed MQTT UNSUBSCRIBE");
        return;
    }
    const uint8_t *p = body + 2;
    for (uint32_t i = 0; i < n && c->state == ST_OPEN; i++) {
        struct mqtt_str s;
        mqtt_filter_next(&p, 0, &s, NULL);
        int k = filter_find_text(c->mq, s);
        if (k >= 0) {
            mqtt__filter_remove(t, c, (uint32_t)k);
        }
        char pat[4096 + 1];
        size_t plen, parent;
        if (s.len <= t->srv->cfg.max_topic_len && !mqtt_sys_is_sys((const char *)s.p, s.len) &&
            mqtt_topic_to_ferry((const char *)s.p, s.len, 1, pat, &plen, &parent) == 0) {
            mqtt__session_forget(t, c, pat, plen, parent, -1); /* a kept session's durables */
        }
    }
    mqtt__send_ack(t, c, MQTT_UNSUBACK, pid);
}

/* One complete packet: first (type and flags), its body of len bytes. */
static void on_packet(struct iot *t, struct conn *c, uint8_t first, const uint8_t *body, size_t len)
{
    uint16_t pid;
    uint8_t type = first >> 4;
    stats_add(&t->stats.frames_in, 1);
    if (!mqtt_flags_valid(first)) {
        mqtt__close(t, c, "MQTT packet with invalid type or flags");
        return;
    }
    if (c->state == ST_AWAIT_CONNECT) {
        if (type != MQTT_CONNECT) {
            mqtt__close(t, c, "the first MQTT packet must be CONNECT");
        } else {
            on_connect(t, c, body, len);
        }
        return;
    }
    switch (type) {
    case MQTT_PUBLISH:
        on_publish(t, c, first, body, len);
        break;
    case MQTT_PUBACK:
        if (mqtt_ack_decode(body, len, &pid) < 0) {
            mqtt__close(t, c, "malformed MQTT PUBACK");
        } else {
            mqtt__pid_release(c->mq, pid);
            mqtt__session_puback(t, c, pid);
        }
        break;
    case MQTT_PUBREL:
        if (mqtt_ack_decode(body, len, &pid) < 0) {
            mqtt__close(t, c, "malformed MQTT PUBREL");
        } else {
            mqtt__send_ack(t, c, MQTT_PUBCOMP, pid);
        }
        break;
    case MQTT_SUBSCRIBE:
        on_subscribe(t, c, body, len);
        break;
    case MQTT_UNSUBSCRIBE:
        on_unsubscribe(t, c, body, len);
        break;
    case MQTT_PINGREQ:
        if (len != 0) {
            mqtt__close(t, c, "malformed MQTT PINGREQ");
        } else {
            uint8_t b[2];
            conn_send_raw(t, c, b, mqtt_pingresp_put(b));
        }
        break;
    case MQTT_DISCONNECT:
        log_client_debug(c->client_id, c->peer, "MQTT DISCONNECT");
        will_forget(c->mq); /* 3.14.4-3: a goodbye discards the will */
        conn_close_after_flush(t, c);
        break;
    case MQTT_CONNECT:
        mqtt__close(t, c, "a second MQTT CONNECT"); /* 3.1.0-2 */
        break;
    default:
        /* PUBREC, PUBCOMP: the server sends no QoS 2; the rest are
         * server-to-client packets. */
        mqtt__close(t, c, "MQTT packet not accepted from clients");
        break;
    }
}

/* ---- framing ------------------------------------------------------------ */

static int may_go_on(const struct conn *c)
{
    return c->state <= ST_OPEN && !c->is_paused && !c->is_auth_pending;
}

/* The next packet at p[0..n): 1 and its size in *used (handled), 0 when it
 * is not all there, -1 when the connection was failed. */
static int one_packet(struct iot *t, struct conn *c, const uint8_t *p, size_t n, size_t *used)
{
    uint32_t limit =
        c->state == ST_AWAIT_CONNECT ? MQTT_PRE_CONNECT_MAX : t->srv->cfg.max_frame_len;
    uint8_t first;
    uint32_t rem;
    size_t hl;
    int rc = mqtt_hdr_parse(p, n, limit, &first, &rem, &hl);
    if (rc < 0) {
        mqtt__close(t, c,
                    rc == MQTT_ETOOBIG
                        ? (c->state == ST_AWAIT_CONNECT ? "MQTT packet above 16 KiB before CONNECT"
                                                        : "MQTT packet above max_frame_len")
                        : "malformed MQTT remaining length");
        return -1;
    }
    if (rc == 0 || n - hl < rem) {
        return 0;
    }
    if (c->state == ST_OPEN && (first >> 4) == MQTT_SUBSCRIBE && conn_wait_stored(t, c)) {
        /* After its own stored PUBLISHes are routed (as ferry's Subscribe):
         * a new subscription does not get what the client sent before it.
         * The packet stays for when the writer's wake-up resumes c. */
        return 0;
    }
    on_packet(t, c, first, p + hl, rem);
    *used = hl + rem;
    return 1;
}

/* Keep p[0..n) for later, after what is kept already. */
static int keep(struct iot *t, struct conn *c, const uint8_t *p, size_t n)
{
    struct mqtt_sess *mq = c->mq;
    if (mq->in_cap - mq->in_len < n) {
        size_t cap = mq->in_cap ? mq->in_cap : 256;
        while (cap - mq->in_len < n) {
            cap *= 2;
        }
        uint8_t *b = realloc(mq->in, cap);
        if (b == NULL) {
            conn_fail(t, c, FERRY__ERROR_CODE__ERROR_INTERNAL, "out of memory");
            return -1;
        }
        mq->in = b;
        mq->in_cap = cap;
    }
    memcpy(mq->in + mq->in_len, p, n);
    mq->in_len += n;
    return 0;
}

void mqtt_conn_process(struct iot *t, struct conn *c)
{
    struct mqtt_sess *mq = c->mq;
    size_t off = 0, used = 0;
    while (off < mq->in_len && may_go_on(c)) {
        int rc = one_packet(t, c, mq->in + off, mq->in_len - off, &used);
        if (rc <= 0) {
            break;
        }
        off += used;
        conn_out_check(t, c);
    }
    if (c->state == ST_DEAD) {
        return;
    }
    /* Only a partial packet (bounded by the limit) or input after a pause
     * (bounded by one read) stays: an idle connection holds no buffer. */
    if (off > 0) {
        memmove(mq->in, mq->in + off, mq->in_len - off);
        mq->in_len -= off;
    }
    if (mq->in_len == 0 && mq->in != NULL) {
        free(mq->in);
        mq->in = NULL;
        mq->in_cap = 0;
    }
}

/* Append to the kept partial packet only the bytes of buf it lacks (its
 * header first, byte by byte). Returns how many were taken, or -1 when
 * the connection was failed. A packet larger than one read is so copied
 * once, and what follows it in buf is handled in place. */
static ssize_t complete_kept(struct iot *t, struct conn *c, const uint8_t *buf, size_t n)
{
    struct mqtt_sess *mq = c->mq;
    uint32_t limit =
        c->state == ST_AWAIT_CONNECT ? MQTT_PRE_CONNECT_MAX : t->srv->cfg.max_frame_len;
    size_t off = 0;
    while (off < n) {
        uint8_t first;
        uint32_t rem;
        size_t hl;
        int rc = mqtt_hdr_parse(mq->in, mq->in_len, limit, &first, &rem, &hl);
        if (rc < 0) {
            break; /* mqtt_conn_process says why and closes */
        }
        size_t lack = rc == 0 ? 1 : hl + rem > mq->in_len ? hl + rem - mq->in_len : 0;
        if (lack == 0) {
            break; /* whole (kept after a pause) */
        }
        if (lack > n - off) {
            lack = n - off;
        }
        if (keep(t, c, buf + off, lack) < 0) {
            return -1;
        }
        off += lack;
    }
    return (ssize_t)off;
}

void mqtt_conn_take(struct iot *t, struct conn *c, const uint8_t *buf, size_t n)
{
    struct mqtt_sess *mq = c->mq;
    size_t off = 0, used = 0;
    if (mq->in_len > 0) {
        ssize_t k = complete_kept(t, c, buf, n);
        if (k < 0) {
            return;
        }
        off = (size_t)k;
        mqtt_conn_process(t, c);
        if (c->state == ST_DEAD) {
            return;
        }
    }
    if (mq->in_len == 0) {
        /* The usual case: whole packets handled in place. */
        while (off < n && may_go_on(c)) {
            int rc = one_packet(t, c, buf + off, n - off, &used);
            if (rc < 0) {
                return;
            }
            if (rc == 0) {
                break;
            }
            off += used;
            conn_out_check(t, c);
        }
    }
    if (off < n && c->state <= ST_OPEN && keep(t, c, buf + off, n - off) == 0) {
        mqtt_conn_process(t, c);
    }
}

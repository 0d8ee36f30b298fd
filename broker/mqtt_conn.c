/*
 * mqtt_conn.c - an MQTT 3.1.1 connection (the mqtt_listen listener) on an
 * IO thread: packets in, ferry's handlers, packets out.
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
 *   QoS 1 deliveries get packet ids, held until the client's PUBACK, in
 *   memory only (no redelivery on reconnect in this version).
 * - An inbound QoS 1 PUBLISH is answered with PUBACK, and a QoS 2 one with
 *   PUBREC, when ferry would send its PubAck: after the commit on a stored
 *   topic. PUBREL is answered with PUBCOMP. A QoS 2 message is stored once
 *   per PUBLISH received; clients resend one only after a reconnect with a
 *   session, which this version does not keep.
 * - A PUBLISH the server refuses (ACL, topic rules, storage full) closes
 *   the connection: MQTT 3.1.1 has no negative PUBACK, and acknowledging a
 *   message that was not taken would be a silent loss (3.3.5).
 * - clean session 0 is accepted and behaves as clean session 1: CONNACK
 *   says session present 0, and nothing is kept after the connection.
 * - The will is published (with the connection's rights, retain ignored)
 *   when a logged-in connection ends without DISCONNECT: closed by the
 *   client, by a keepalive timeout, or by the server for a protocol error;
 *   not when the server stops.
 * - Retained messages (mqtt_retain.h) are kept in memory, bounded (64 MiB):
 *   not across restarts in this version. A retained PUBLISH that was
 *   accepted sets its topic's (an empty one clears it); a subscription
 *   gets the matching ones after its SUBACK, with the RETAIN flag, at the
 *   lower of their QoS and the granted one. A retained message that does
 *   not fit closes the connection (it was published, but not retained).
 */
#include "io_int.h"
#include "mqtt_codec.h"
#include "mqtt_retain.h"
#include "mqtt_topic.h"
#include "wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The largest packet before CONNECT is through: a CONNECT with credentials
 * and a modest will. Connections not logged in are bounded in number (the
 * login gate), each to this much input. */
#define MQTT_PRE_CONNECT_MAX 16384u
#define MQTT_QOS_HEADER "mqtt-qos"

/* One SUBSCRIBE topic filter in force. */
struct mqtt_filter {
    char *text; /* the MQTT filter as subscribed (malloc'd, not NUL-terminated) */
    size_t len;
    uint8_t qos;           /* granted: 0 or 1 */
    uint8_t n_ids;         /* ferry subscriptions made: "x/#" needs two (x.> and x) */
    uint8_t n_wait;        /* of those, SubAcks still to come */
    uint8_t is_issuing;    /* its Subscribes are being handed to handle_subscribe */
    uint8_t is_failed;     /* one was refused: SUBACK 0x80, the others removed */
    uint8_t want_retained; /* accepted: its retained messages follow the SUBACK */
    uint32_t ack_idx;      /* its place in the SUBACK being gathered */
    uint64_t sub_ids[2];   /* the ferry sub_ids */
};

/* The SUBACK of the SUBSCRIBE being answered: one code per filter. SubAcks
 * of ferry come synchronously or, when a worker queue is full, later (the
 * connection is then paused, so there is never more than one of these). */
struct mqtt_suback {
    uint16_t packet_id;
    uint8_t is_issuing;
    uint32_t n, left;
    uint8_t codes[];
};

struct mqtt_sess {
    uint8_t *in; /* a packet not complete yet (and what follows a pause) */
    size_t in_len, in_cap;
    struct mqtt_filter *f;
    uint32_t n_f, f_cap;
    struct mqtt_suback *sa; /* NULL: none being gathered */
    uint64_t next_sub_id;
    uint64_t *pid_used; /* 65536 bits: QoS 1 packet ids awaiting PUBACK; NULL until needed */
    uint32_t n_inflight;
    uint16_t next_pid;
    uint16_t keepalive_s;
    uint8_t has_user;     /* CONNECT named a user: a refusal is 0x04, else 0x05 */
    uint8_t is_connected; /* CONNACK 0 went out */
    /* The will (CONNECT), published if the connection ends without a
     * DISCONNECT: its ferry topic (NUL-terminated) and message (malloc'd). */
    char *will_topic;
    size_t will_topic_len;
    uint8_t *will_msg;
    size_t will_len;
    uint8_t will_qos;
};

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
    will_forget(mq);
    free(mq);
    c->mq = NULL;
}

/* ---- output ------------------------------------------------------------- */

/* A malformed packet or a protocol violation: closed without an answer. */
static void mq_close(struct iot *t, struct conn *c, const char *why)
{
    conn_fail(t, c, FERRY__ERROR_CODE__ERROR_PROTOCOL, why);
}

static void send_connack(struct iot *t, struct conn *c, uint8_t code)
{
    uint8_t b[4];
    conn_send_raw(t, c, b, mqtt_connack_put(b, 0, code));
}

static void send_ack(struct iot *t, struct conn *c, enum mqtt_type type, uint16_t pid)
{
    uint8_t b[4];
    conn_send_raw(t, c, b, mqtt_ack_put(b, type, pid));
}

/* A QoS 1 packet id not in use, or -1 when all 65535 are. */
static int pid_take(struct mqtt_sess *mq, uint16_t *out)
{
    if (mq->pid_used == NULL) {
        mq->pid_used = calloc(65536 / 64, sizeof(uint64_t));
        if (mq->pid_used == NULL) {
            return -1;
        }
    }
    if (mq->n_inflight >= 65535) {
        return -1;
    }
    uint16_t p = mq->next_pid;
    for (;;) {
        p = (uint16_t)(p + 1);
        if (p != 0 && !(mq->pid_used[p >> 6] & ((uint64_t)1 << (p & 63)))) {
            break;
        }
    }
    mq->pid_used[p >> 6] |= (uint64_t)1 << (p & 63);
    mq->n_inflight++;
    mq->next_pid = p;
    *out = p;
    return 0;
}

static void pid_release(struct mqtt_sess *mq, uint16_t p)
{
    if (mq->pid_used != NULL && (mq->pid_used[p >> 6] & ((uint64_t)1 << (p & 63)))) {
        mq->pid_used[p >> 6] &= ~((uint64_t)1 << (p & 63));
        mq->n_inflight--;
    }
}

static int filter_find_id(const struct mqtt_sess *mq, uint64_t sub_id)
{
    for (uint32_t i = 0; i < mq->n_f; i++) {
        for (uint32_t k = 0; k < mq->f[i].n_ids; k++) {
            if (mq->f[i].sub_ids[k] == sub_id) {
                return (int)i;
            }
        }
    }
    return -1;
}

/* Write one PUBLISH of a ferry topic at qos into c's buffer. */
static void publish_out(struct iot *t, struct conn *c, const char *topic, size_t tlen,
                        const void *payload, size_t plen, int qos, int is_retain)
{
    struct mqtt_sess *mq = c->mq;
    if (c->state != ST_OPEN) {
        return;
    }
    size_t len = mqtt_publish_len(tlen, plen, (uint8_t)qos);
    if (len == 0) {
        stats_add(&t->stats.deliver_too_large, 1);
        log_client_warn(c->client_id, c->peer, "a message too large for MQTT was not delivered");
        return;
    }
    if (conn_out_pending(c) + len > t->srv->cfg.max_outbound) {
        conn_slow_consumer(t, c);
        return;
    }
    uint16_t pid = 0;
    if (qos > 0 && pid_take(mq, &pid) < 0) {
        stats_add(&t->stats.slow_consumers, 1);
        conn_fail(t, c, FERRY__ERROR_CODE__ERROR_SLOW_CONSUMER,
                  "65535 QoS 1 messages not acknowledged (PUBACK)");
        return;
    }
    if (conn_out_reserve(c, len) < 0) {
        conn_lost_output(t, c, "a delivery could not be queued");
        return;
    }
    c->out_len += mqtt_publish_put(c->out + c->out_len, topic, tlen, '.', '/', payload, plen,
                                   (uint8_t)qos, pid, is_retain);
    stats_add(&t->stats.msgs_out, 1);
    stats_add(&t->stats.frames_out, 1);
    conn_heavy_update(t, c);
    conn_mark_dirty(t, c);
}

/* One PUBLISH for a message that matched the subscriptions ids[0..n)
 * (ferry sub_ids); msg_qos: the QoS its publisher gave it. */
static void send_publish(struct iot *t, struct conn *c, const uint64_t *ids, uint32_t n,
                         const char *topic, size_t tlen, const void *payload, size_t plen,
                         uint8_t msg_qos)
{
    struct mqtt_sess *mq = c->mq;
    int qos = -1;
    for (uint32_t i = 0; i < n; i++) {
        int k = filter_find_id(mq, ids[i]);
        if (k >= 0 && mq->f[k].qos > qos) {
            qos = mq->f[k].qos;
        }
    }
    if (qos < 0) {
        return; /* unsubscribed meanwhile */
    }
    publish_out(t, c, topic, tlen, payload, plen, qos > msg_qos ? msg_qos : qos, 0);
}

/* Retained messages for a new subscription (mqtt_retain_each's fn). */
struct retained_to {
    struct iot *t;
    struct conn *c;
    uint8_t qos; /* granted */
};

static void retained_one(void *arg, const char *topic, size_t tlen, const void *payload,
                         size_t plen, uint8_t qos)
{
    struct retained_to *a = arg;
    publish_out(a->t, a->c, topic, tlen, payload, plen, qos > a->qos ? a->qos : qos, 1);
}

/* Filter k was accepted: the retained messages of the topics it matches,
 * with the RETAIN flag (3.3.1-6). */
static void send_retained(struct iot *t, struct conn *c, uint32_t k)
{
    struct mqtt_filter *f = &c->mq->f[k];
    f->want_retained = 0;
    char pat[4096 + 1];
    size_t plen, parent;
    if (t->srv->mqtt_retained == NULL || f->len >= sizeof(pat) ||
        mqtt_topic_to_ferry(f->text, f->len, 1, pat, &plen, &parent) < 0) {
        return;
    }
    struct retained_to a = {t, c, f->qos};
    mqtt_retain_each(t->srv->mqtt_retained, pat, plen, parent ? pat : NULL, parent, retained_one,
                     &a);
}

/* Is this run of Header fields holding mqtt-qos=0? */
static int headers_say_qos0(const uint8_t *p, const uint8_t *end)
{
    struct codec_hdr h;
    while (codec_header_next(&p, end, &h) == 1) {
        if (h.key_len == sizeof(MQTT_QOS_HEADER) - 1 &&
            memcmp(h.key, MQTT_QOS_HEADER, h.key_len) == 0 && h.value_len == 1 &&
            h.value[0] == '0') {
            return 1;
        }
    }
    return 0;
}

void mqtt_conn_deliver(struct iot *t, struct conn *c, const uint64_t *ids, uint32_t n,
                       const uint8_t *body, size_t body_len)
{
    /* The Deliver body (codec.h): topic is field 2, payload 5, headers 6. */
    const uint8_t *p = body, *end = body + body_len;
    const uint8_t *topic = NULL, *payload = NULL, *hdr = NULL, *hdr_end = NULL;
    size_t tlen = 0, plen = 0;
    while (p < end) {
        uint64_t key, v;
        if (wire_varint_get(&p, end, &key) < 0) {
            return;
        }
        if ((key & 7) == 0) {
            if (wire_varint_get(&p, end, &v) < 0) {
                return;
            }
            continue;
        }
        if ((key & 7) != 2 || wire_varint_get(&p, end, &v) < 0 || v > (uint64_t)(end - p)) {
            return; /* the broker writes these bodies: never */
        }
        if (key >> 3 == 2) {
            topic = p;
            tlen = (size_t)v;
        } else if (key >> 3 == 5) {
            payload = p;
            plen = (size_t)v;
        } else if (key >> 3 == 6) {
            hdr = hdr ? hdr : p - 1 - wire_varint_len(v); /* the headers are one run */
            hdr_end = p + v;
        }
        p += v;
    }
    if (topic == NULL) {
        return;
    }
    uint8_t qos = hdr != NULL && headers_say_qos0(hdr, hdr_end) ? 0 : 1;
    send_publish(t, c, ids, n, (const char *)topic, tlen, payload, plen, qos);
}

void mqtt_conn_deliver_one(struct iot *t, struct conn *c, const uint8_t *pfx, size_t pl,
                           const struct codec_deliver *d, size_t body_len)
{
    /* The prefix names the subscriptions; codec_deliver_split reads only
     * the prefix's bytes (the body is not there: it is never touched). */
    uint64_t ids[8];
    size_t n = 0, blen;
    const uint8_t *b;
    if (!codec_deliver_split(pfx, pl + body_len, ids, 8, &n, &b, &blen) || n == 0) {
        return;
    }
    uint8_t qos = 1;
    for (size_t i = 0; i < d->n_headers; i++) {
        const struct codec_hdr *h = &d->headers[i];
        if (h->key_len == sizeof(MQTT_QOS_HEADER) - 1 &&
            memcmp(h->key, MQTT_QOS_HEADER, h->key_len) == 0 && h->value_len == 1 &&
            h->value[0] == '0') {
            qos = 0;
        }
    }
    send_publish(t, c, ids, (uint32_t)n, d->topic, d->topic_len, d->payload, d->payload_len, qos);
}

/* ---- ferry's answers as MQTT packets ------------------------------------ */

static void suback_maybe_send(struct iot *t, struct conn *c)
{
    struct mqtt_suback *sa = c->mq->sa;
    if (sa == NULL || sa->is_issuing || sa->left > 0) {
        return;
    }
    c->mq->sa = NULL;
    uint8_t small[64];
    size_t len = mqtt_suback_len(sa->n);
    uint8_t *b = len <= sizeof(small) ? small : malloc(len);
    if (b == NULL) {
        conn_lost_output(t, c, "a SUBACK could not be queued");
    } else {
        conn_send_raw(t, c, b, mqtt_suback_put(b, sa->packet_id, sa->codes, sa->n));
        if (b != small) {
            free(b);
        }
    }
    free(sa);
    for (uint32_t k = 0; k < c->mq->n_f && c->state == ST_OPEN; k++) {
        if (c->mq->f[k].want_retained) {
            send_retained(t, c, k);
        }
    }
}

/* Remove filter k and the ferry subscriptions it made. */
static void filter_remove(struct iot *t, struct conn *c, uint32_t k)
{
    struct mqtt_sess *mq = c->mq;
    struct mqtt_filter *f = &mq->f[k];
    for (uint32_t i = 0; i < f->n_ids; i++) {
        int j = handle_subscribe_find(c, f->sub_ids[i]);
        if (j >= 0 && handle_subscribe_remove_at(t, c, (uint32_t)j) < 0) {
            conn_fail(t, c, FERRY__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        }
    }
    free(f->text);
    mq->f[k] = mq->f[--mq->n_f];
}

/* Filter k has all its SubAcks: its SUBACK code is known. */
static void filter_settle(struct iot *t, struct conn *c, uint32_t k)
{
    struct mqtt_sess *mq = c->mq;
    struct mqtt_filter *f = &mq->f[k];
    if (f->is_issuing || f->n_wait > 0) {
        return;
    }
    if (mq->sa != NULL && f->ack_idx < mq->sa->n) {
        mq->sa->codes[f->ack_idx] = f->is_failed ? MQTT_SUBACK_FAILURE : f->qos;
        mq->sa->left--;
        f->ack_idx = UINT32_MAX;
    }
    if (f->is_failed) {
        filter_remove(t, c, k);
    } else {
        f->want_retained = 1;
    }
}

static void on_suback(struct iot *t, struct conn *c, const Ferry__SubAck *a)
{
    int k = filter_find_id(c->mq, a->sub_id);
    if (k < 0) {
        return;
    }
    struct mqtt_filter *f = &c->mq->f[k];
    if (a->code != FERRY__ERROR_CODE__ERROR_NONE) {
        log_client_info(c->client_id, c->peer, "MQTT SUBSCRIBE %.*s refused: %s",
                        (int)(f->len > 256 ? 256 : f->len), f->text, a->text);
        f->is_failed = 1;
    }
    if (f->n_wait > 0) {
        f->n_wait--;
    }
    filter_settle(t, c, (uint32_t)k);
    suback_maybe_send(t, c);
}

static void on_connected(struct iot *t, struct conn *c)
{
    struct mqtt_sess *mq = c->mq;
    send_connack(t, c, MQTT_CONNACK_ACCEPTED);
    mq->is_connected = 1;
    /* MQTT's keepalive, not ferry's negotiation: 0 turns it off, and the
     * connection is closed after 1.5 intervals of silence (3.1.2.10). */
    if (mq->keepalive_s == 0) {
        rx_timer_stop(t->rx, &c->timer);
        c->keepalive_ms = 0;
    } else {
        c->keepalive_ms = (uint32_t)mq->keepalive_s * 1000u;
        conn_timer_arm(t, c, c->last_rx_ms + (uint64_t)mq->keepalive_s * 1500u);
    }
}

static void on_error(struct iot *t, struct conn *c, const Ferry__Error *e)
{
    if (c->state == ST_AWAIT_CONNECT) {
        if (e->code == FERRY__ERROR_CODE__ERROR_AUTH_FAILED) {
            send_connack(t, c,
                         c->mq->has_user ? MQTT_CONNACK_BAD_LOGIN : MQTT_CONNACK_NOT_AUTHORIZED);
        } else if (e->code == FERRY__ERROR_CODE__ERROR_SERVER_BUSY ||
                   e->code == FERRY__ERROR_CODE__ERROR_AUTH_TIMEOUT) {
            send_connack(t, c, MQTT_CONNACK_UNAVAILABLE);
        }
        return; /* fatal: conn_fail closes it */
    }
    if (e->is_fatal) {
        return;
    }
    if (e->ref_kind == FERRY__ERROR__REF_KIND__REF_SUBSCRIPTION &&
        e->code == FERRY__ERROR_CODE__ERROR_FRAME_TOO_LARGE) {
        return; /* counted and logged by deliver_too_large */
    }
    /* A refused PUBLISH, a subscription the rights no longer allow: MQTT
     * has no way to say so but closing. */
    log_client_info(c->client_id, c->peer, "closing the MQTT connection: %s", e->text);
    conn_close_after_flush(t, c);
}

void mqtt_conn_reply(struct iot *t, struct conn *c, const Ferry__Frame *f)
{
    switch (f->body_case) {
    case FERRY__FRAME__BODY_CONNECTED:
        on_connected(t, c);
        break;
    case FERRY__FRAME__BODY_ERROR:
        on_error(t, c, f->error);
        break;
    case FERRY__FRAME__BODY_PUB_ACK: {
        const Ferry__PubAck *a = f->pub_ack;
        if (a->code != FERRY__ERROR_CODE__ERROR_NONE) {
            log_client_info(c->client_id, c->peer, "closing the MQTT connection: %s", a->text);
            conn_close_after_flush(t, c);
        } else {
            /* pub_in.id: the QoS above the 16-bit packet id (on_publish) */
            send_ack(t, c, (a->id >> 16) == 2 ? MQTT_PUBREC : MQTT_PUBACK, (uint16_t)a->id);
        }
        break;
    }
    case FERRY__FRAME__BODY_SUB_ACK:
        on_suback(t, c, f->sub_ack);
        break;
    default:
        break; /* Pong, Disconnect at shutdown: nothing in MQTT */
    }
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
    if (m->will_topic.len > t->srv->cfg.max_topic_len ||
        mqtt_topic_to_ferry((const char *)m->will_topic.p, m->will_topic.len, 0, topic, &tlen,
                            &parent) < 0) {
        free(topic);
        free(msg);
        mq_close(t, c, "MQTT CONNECT: the will topic has no ferry topic (see README: MQTT)");
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
        send_connack(t, c, MQTT_CONNACK_BAD_PROTOCOL);
        mq_close(t, c, "MQTT CONNECT: unsupported protocol level (this server speaks 3.1.1)");
        return;
    }
    if (rc < 0) {
        mq_close(t, c, "malformed MQTT CONNECT");
        return;
    }
    if (m.client_id.len == 0 && !m.is_clean) {
        send_connack(t, c, MQTT_CONNACK_BAD_CLIENT_ID); /* 3.1.3-8 */
        mq_close(t, c, "MQTT CONNECT: an empty client id needs clean session 1");
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
                     m.is_clean ? "" : ", clean session 0 (kept as clean)");
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

static void on_publish(struct iot *t, struct conn *c, uint8_t first, const uint8_t *body,
                       size_t len)
{
    struct mqtt_publish m;
    if (mqtt_publish_decode(first, body, len, &m) < 0) {
        mq_close(t, c, "malformed MQTT PUBLISH");
        return;
    }
    if (m.qos == 0 && m.packet_id != 0) {
        mq_close(t, c, "malformed MQTT PUBLISH");
        return;
    }
    char topic[4096 + 1];
    size_t tlen, plen;
    if (m.topic.len > t->srv->cfg.max_topic_len ||
        mqtt_topic_to_ferry((const char *)m.topic.p, m.topic.len, 0, topic, &tlen, &plen) < 0) {
        mq_close(t, c, "MQTT PUBLISH: the topic name has no ferry topic (see README: MQTT)");
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

/* Add a filter for a SUBSCRIBE; its index, or -1 (no memory). */
static int filter_add(struct conn *c, struct mqtt_str s, uint8_t qos, uint32_t ack_idx)
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

/* One topic filter of a SUBSCRIBE: its ferry patterns handed to
 * handle_subscribe; the SubAcks settle it (now or later). */
static void subscribe_one(struct iot *t, struct conn *c, struct mqtt_str s, uint8_t qos,
                          uint32_t idx)
{
    struct mqtt_sess *mq = c->mq;
    char pat[4096 + 1];
    size_t plen, parent;
    if (s.len > t->srv->cfg.max_topic_len ||
        mqtt_topic_to_ferry((const char *)s.p, s.len, 1, pat, &plen, &parent) < 0) {
        mq->sa->codes[idx] = MQTT_SUBACK_FAILURE;
        mq->sa->left--;
        log_client_info(c->client_id, c->peer, "MQTT SUBSCRIBE %.*s refused: no ferry pattern",
                        (int)(s.len > 256 ? 256 : s.len), (const char *)s.p);
        return;
    }
    int old = filter_find_text(mq, s);
    if (old >= 0) {
        filter_remove(t, c, (uint32_t)old); /* 3.8.4-3: a new one replaces it */
    }
    int k = filter_add(c, s, qos, idx);
    if (k < 0) {
        mq->sa->codes[idx] = MQTT_SUBACK_FAILURE;
        mq->sa->left--;
        return;
    }
    mq->f[k].is_issuing = 1;
    for (int i = 0; i < (parent ? 2 : 1) && !mq->f[k].is_failed && c->state == ST_OPEN; i++) {
        Ferry__Subscribe fs = FERRY__SUBSCRIBE__INIT;
        fs.sub_id = ++mq->next_sub_id;
        if (i == 1) {
            pat[parent] = '\0'; /* "x/#" matches x too */
        }
        fs.pattern = pat;
        mq->f[k].sub_ids[mq->f[k].n_ids++] = fs.sub_id;
        mq->f[k].n_wait++;
        handle_subscribe(t, c, &fs);
    }
    mq->f[k].is_issuing = 0;
    if (c->state == ST_OPEN) {
        filter_settle(t, c, (uint32_t)k);
    }
}

static void on_subscribe(struct iot *t, struct conn *c, const uint8_t *body, size_t len)
{
    uint16_t pid;
    uint32_t n;
    if (mqtt_sub_decode(body, len, 1, &pid, &n) < 0) {
        mq_close(t, c, "malformed MQTT SUBSCRIBE");
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
        subscribe_one(t, c, s, qos, i);
    }
    if (c->state == ST_OPEN && c->mq->sa == sa) {
        sa->is_issuing = 0;
        suback_maybe_send(t, c);
    }
}

static void on_unsubscribe(struct iot *t, struct conn *c, const uint8_t *body, size_t len)
{
    uint16_t pid;
    uint32_t n;
    if (mqtt_sub_decode(body, len, 0, &pid, &n) < 0) {
        mq_close(t, c, "malformed MQTT UNSUBSCRIBE");
        return;
    }
    const uint8_t *p = body + 2;
    for (uint32_t i = 0; i < n && c->state == ST_OPEN; i++) {
        struct mqtt_str s;
        mqtt_filter_next(&p, 0, &s, NULL);
        int k = filter_find_text(c->mq, s);
        if (k >= 0) {
            filter_remove(t, c, (uint32_t)k);
        }
    }
    send_ack(t, c, MQTT_UNSUBACK, pid);
}

/* One complete packet: first (type and flags), its body of len bytes. */
static void on_packet(struct iot *t, struct conn *c, uint8_t first, const uint8_t *body, size_t len)
{
    uint16_t pid;
    uint8_t type = first >> 4;
    stats_add(&t->stats.frames_in, 1);
    if (!mqtt_flags_valid(first)) {
        mq_close(t, c, "MQTT packet with invalid type or flags");
        return;
    }
    if (c->state == ST_AWAIT_CONNECT) {
        if (type != MQTT_CONNECT) {
            mq_close(t, c, "the first MQTT packet must be CONNECT");
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
            mq_close(t, c, "malformed MQTT PUBACK");
        } else {
            pid_release(c->mq, pid);
        }
        break;
    case MQTT_PUBREL:
        if (mqtt_ack_decode(body, len, &pid) < 0) {
            mq_close(t, c, "malformed MQTT PUBREL");
        } else {
            send_ack(t, c, MQTT_PUBCOMP, pid);
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
            mq_close(t, c, "malformed MQTT PINGREQ");
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
        mq_close(t, c, "a second MQTT CONNECT"); /* 3.1.0-2 */
        break;
    default:
        /* PUBREC, PUBCOMP: the server sends no QoS 2; the rest are
         * server-to-client packets. */
        mq_close(t, c, "MQTT packet not accepted from clients");
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
        mq_close(t, c,
                 rc == MQTT_ETOOBIG
                     ? (c->state == ST_AWAIT_CONNECT ? "MQTT packet above 16 KiB before CONNECT"
                                                     : "MQTT packet above max_frame_len")
                     : "malformed MQTT remaining length");
        return -1;
    }
    if (rc == 0 || n - hl < rem) {
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

void mqtt_conn_take(struct iot *t, struct conn *c, const uint8_t *buf, size_t n)
{
    struct mqtt_sess *mq = c->mq;
    size_t off = 0, used = 0;
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
        }
    }
    if (off < n && c->state <= ST_OPEN && keep(t, c, buf + off, n - off) == 0) {
        mqtt_conn_process(t, c);
    }
}

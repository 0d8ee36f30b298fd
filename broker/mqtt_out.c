/*
 * mqtt_out.c - what an MQTT connection is sent (mqtt_int.h): ferry's
 * answers (conn_send) as MQTT packets, deliveries as PUBLISH packets
 * written into the connection's buffer, retained messages after a SUBACK.
 */
#include "mqtt_int.h"
#include "mqtt_retain.h"
#include "mqtt_topic.h"
#include "wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- output ------------------------------------------------------------- */

/* A malformed packet or a protocol violation: closed without an answer. */
void mqtt__close(struct iot *t, struct conn *c, const char *why)
{
    conn_fail(t, c, FERRY__ERROR_CODE__ERROR_PROTOCOL, why);
}

void mqtt__send_connack(struct iot *t, struct conn *c, uint8_t code)
{
    mqtt__send_connack_sp(t, c, 0, code);
}

void mqtt__send_connack_sp(struct iot *t, struct conn *c, int session_present, uint8_t code)
{
    uint8_t b[4];
    conn_send_raw(t, c, b, mqtt_connack_put(b, session_present, code));
}

void mqtt__send_ack(struct iot *t, struct conn *c, enum mqtt_type type, uint16_t pid)
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

void mqtt__pid_release(struct mqtt_sess *mq, uint16_t p)
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

/* A PUBLISH to write, and where its payload lies. */
struct pub_msg_ref {
    struct pub_batch *batch; /* holds the payload; NULL: none */
    const char *topic;
    size_t tlen;
    const void *payload;
    size_t plen;
    int qos;
    int is_retain;
    int is_dup;
};

/* Stage the PUBLISH (len bytes, with pid) by reference to its payload in
 * batch: 0, or -1 (not staged: copy it). Staged deliveries go out after
 * the buffer, so once one is staged the next ones are too (or the staged
 * ones are copied first, conn_unstage). */
static int publish_stage(struct iot *t, struct conn *c, const struct pub_msg_ref *r, size_t len,
                         uint16_t pid)
{
    if (r->batch == NULL || (r->plen < MQTT_STAGE_MIN && c->stage_head < 0) ||
        (conn_out_pending(c) > 0 && conn_is_write_waiting(c))) {
        return -1;
    }
    size_t hl = len - r->plen;
    uint8_t *h = deliver_pfx_room(t, hl);
    if (h == NULL) {
        return -1;
    }
    mqtt_publish_head_put(h, r->topic, r->tlen, '.', '/', r->plen, (uint8_t)r->qos, pid,
                          r->is_retain);
    if (r->is_dup && r->qos > 0) {
        h[0] |= 0x08; /* DUP (3.3.1.1): a redelivery */
    }
    pub_batch_ref(r->batch);
    uint32_t off = (uint32_t)((const uint8_t *)r->payload - r->batch->data);
    if (deliver_stage(t, c, hl, r->batch, off, (uint32_t)r->plen) < 0) {
        pub_batch_unref(r->batch);
        return -1;
    }
    return 0;
}

int mqtt__publish_out(struct iot *t, struct conn *c, const char *topic, size_t tlen,
                      const void *payload, size_t plen, int qos, int is_retain, int is_dup,
                      struct pub_batch *batch)
{
    struct mqtt_sess *mq = c->mq;
    if (c->state != ST_OPEN) {
        return -1;
    }
    size_t len = mqtt_publish_len(tlen, plen, (uint8_t)qos);
    if (len == 0) {
        stats_add(&t->stats.deliver_too_large, 1);
        log_client_warn(c->client_id, c->peer, "a message too large for MQTT was not delivered");
        return -1;
    }
    if (conn_out_pending(c) + len > t->srv->cfg.max_outbound) {
        conn_slow_consumer(t, c);
        return -1;
    }
    uint16_t pid = 0;
    if (qos > 0 && pid_take(mq, &pid) < 0) {
        stats_add(&t->stats.slow_consumers, 1);
        conn_fail(t, c, FERRY__ERROR_CODE__ERROR_SLOW_CONSUMER,
                  "65535 QoS 1 messages not acknowledged (PUBACK)");
        return -1;
    }
    struct pub_msg_ref r = {batch, topic, tlen, payload, plen, qos, is_retain, is_dup};
    if (publish_stage(t, c, &r, len, pid) == 0) {
        stats_add(&t->stats.msgs_out, 1);
        stats_add(&t->stats.frames_out, 1);
        return pid;
    }
    conn_unstage(t, c);
    if (conn_out_reserve(c, len) < 0) {
        conn_lost_output(t, c, "a delivery could not be queued");
        return -1;
    }
    uint8_t *first = c->out + c->out_len;
    c->out_len +=
        mqtt_publish_put(first, topic, tlen, '.', '/', payload, plen, (uint8_t)qos, pid, is_retain);
    if (is_dup && qos > 0) {
        *first |= 0x08; /* DUP (3.3.1.1): a redelivery */
    }
    stats_add(&t->stats.msgs_out, 1);
    stats_add(&t->stats.frames_out, 1);
    conn_heavy_update(t, c);
    conn_mark_dirty(t, c);
    return pid;
}

/* 4.7.2: a filter that starts with a wildcard does not match topics that
 * start with '$' (ferry's pattern does: the filter is asked here). */
static int skips_dollar(const struct mqtt_filter *f, const char *topic, size_t tlen)
{
    return tlen > 0 && topic[0] == '$' && (f->text[0] == '+' || f->text[0] == '#');
}

/* A message as it reaches send_publish. */
struct out_msg {
    const char *topic;
    size_t tlen;
    const void *payload;
    size_t plen;
    uint8_t qos;             /* the QoS its publisher gave it */
    uint64_t seq;            /* its sequence (0: ephemeral) */
    uint32_t attempt;        /* 1, or more for a durable's redelivery */
    struct pub_batch *batch; /* holds the payload (NULL: not routed) */
};

/* One PUBLISH for a message that matched the subscriptions ids[0..n)
 * (ferry sub_ids), and one more for each durable (a session's filter)
 * among them: each durable is acked on its own PUBACK. */
static void send_publish(struct iot *t, struct conn *c, const uint64_t *ids, uint32_t n,
                         const struct out_msg *m)
{
    struct mqtt_sess *mq = c->mq;
    int qos = -1;
    for (uint32_t i = 0; i < n && c->state == ST_OPEN; i++) {
        int k = filter_find_id(mq, ids[i]);
        if (k < 0) {
            continue; /* unsubscribed meanwhile */
        }
        if (skips_dollar(&mq->f[k], m->topic, m->tlen)) {
            if (mq->f[k].is_durable && m->seq > 0) {
                mqtt__session_track(t, c, 0, ids[i], m->seq, m->topic, m->tlen); /* done */
            }
            continue; /* a $ topic for a leading wildcard */
        }
        if (mq->f[k].is_durable && m->seq > 0) {
            int q = mq->f[k].qos > m->qos ? m->qos : mq->f[k].qos;
            int pid = mqtt__publish_out(t, c, m->topic, m->tlen, m->payload, m->plen, q, 0,
                                        m->attempt > 1, m->batch);
            if (pid >= 0) {
                mqtt__session_track(t, c, (uint16_t)pid, ids[i], m->seq, m->topic, m->tlen);
            }
        } else if (mq->f[k].qos > qos) {
            qos = mq->f[k].qos;
        }
    }
    if (qos >= 0) {
        mqtt__publish_out(t, c, m->topic, m->tlen, m->payload, m->plen, qos > m->qos ? m->qos : qos,
                          0, 0, m->batch);
    }
}

/* Retained messages for a new subscription (mqtt_retain_each's fn). */
struct retained_to {
    struct iot *t;
    struct conn *c;
    const struct mqtt_filter *f;
    uint8_t qos; /* granted */
};

static void retained_one(void *arg, const char *topic, size_t tlen, const void *payload,
                         size_t plen, uint8_t qos)
{
    struct retained_to *a = arg;
    if (skips_dollar(a->f, topic, tlen)) {
        return;
    }
    mqtt__publish_out(a->t, a->c, topic, tlen, payload, plen, qos > a->qos ? a->qos : qos, 1, 0,
                      NULL);
}

/* Filter k was accepted: the retained messages of the topics it matches,
 * with the RETAIN flag (3.3.1-6). */
static void send_retained(struct iot *t, struct conn *c, uint32_t k)
{
    struct mqtt_filter *f = &c->mq->f[k];
    f->want_retained = 0;
    if (f->is_sys) {
        mqtt__sys_send_filter(t, c, k); /* the broker's figures, as retained */
        return;
    }
    char pat[4096 + 1];
    size_t plen, parent;
    if (t->srv->mqtt_retained == NULL || f->len >= sizeof(pat) ||
        mqtt_topic_to_ferry(f->text, f->len, 1, pat, &plen, &parent) < 0) {
        return;
    }
    struct retained_to a = {t, c, f, f->qos};
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
                       struct pub_batch *batch, uint32_t body_off, uint32_t body_len)
{
    const uint8_t *body = batch->data + body_off;
    /* The Deliver body (codec.h): topic is field 2, payload 5, headers 6. */
    const uint8_t *p = body, *end = body + body_len;
    const uint8_t *topic = NULL, *payload = NULL, *hdr = NULL, *hdr_end = NULL;
    size_t tlen = 0, plen = 0;
    uint64_t seq = 0, attempt = 1;
    while (p < end) {
        uint64_t key, v;
        if (wire_varint_get(&p, end, &key) < 0) {
            return;
        }
        if ((key & 7) == 0) {
            if (wire_varint_get(&p, end, &v) < 0) {
                return;
            }
            if (key >> 3 == 3) {
                seq = v;
            } else if (key >> 3 == 8) {
                attempt = v;
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
    struct out_msg m = {
        .topic = (const char *)topic,
        .tlen = tlen,
        .payload = payload,
        .plen = plen,
        .qos = hdr != NULL && headers_say_qos0(hdr, hdr_end) ? 0 : 1,
        .seq = seq,
        .attempt = attempt > UINT32_MAX ? UINT32_MAX : (uint32_t)attempt,
        .batch = batch,
    };
    send_publish(t, c, ids, n, &m);
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
    struct out_msg m = {d->topic, d->topic_len, d->payload, d->payload_len,
                        qos,      d->sequence,  d->attempt, NULL};
    send_publish(t, c, ids, (uint32_t)n, &m);
}

/* ---- ferry's answers as MQTT packets ------------------------------------ */

void mqtt__suback_maybe_send(struct iot *t, struct conn *c)
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
void mqtt__filter_remove(struct iot *t, struct conn *c, uint32_t k)
{
    struct mqtt_sess *mq = c->mq;
    struct mqtt_filter *f = &mq->f[k];
    if (mq->sa != NULL && f->ack_idx < mq->sa->n) {
        /* Replaced (the same filter twice in one SUBSCRIBE) before its
         * SubAcks came: it was accepted, its SUBACK code still counts. */
        mq->sa->codes[f->ack_idx] = f->is_failed ? MQTT_SUBACK_FAILURE : f->qos;
        mq->sa->left--;
    }
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
void mqtt__filter_settle(struct iot *t, struct conn *c, uint32_t k)
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
        mqtt__filter_remove(t, c, k);
    } else if (!f->is_restored) {
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
    mqtt__filter_settle(t, c, (uint32_t)k);
    mqtt__suback_maybe_send(t, c);
}

void mqtt__keepalive_arm(struct iot *t, struct conn *c)
{
    struct mqtt_sess *mq = c->mq;
    /* MQTT's keepalive, not ferry's negotiation: 0 turns it off, and the
     * connection is closed after 1.5 intervals of silence (3.1.2.10). The
     * same timer brings the $SYS updates (mqtt_sys_out.c). */
    uint64_t due = UINT64_MAX;
    c->keepalive_ms = (uint32_t)mq->keepalive_s * 1000u;
    if (mq->keepalive_s != 0) {
        due = c->last_rx_ms + (uint64_t)mq->keepalive_s * 1500u;
    }
    due = mqtt_conn_timer_due(c, due);
    if (due == UINT64_MAX) {
        rx_timer_stop(t->rx, &c->timer);
    } else {
        conn_timer_arm(t, c, due);
    }
}

static void on_connected(struct iot *t, struct conn *c)
{
    c->mq->is_connected = 1;
    mqtt__keepalive_arm(t, c);
    mqtt__session_connected(t, c); /* CONNACK, then a kept session's filters */
}

static void on_error(struct iot *t, struct conn *c, const Ferry__Error *e)
{
    if (c->state == ST_AWAIT_CONNECT) {
        if (e->code == FERRY__ERROR_CODE__ERROR_AUTH_FAILED) {
            mqtt__send_connack(
                t, c, c->mq->has_user ? MQTT_CONNACK_BAD_LOGIN : MQTT_CONNACK_NOT_AUTHORIZED);
        } else if (e->code == FERRY__ERROR_CODE__ERROR_SERVER_BUSY ||
                   e->code == FERRY__ERROR_CODE__ERROR_AUTH_TIMEOUT) {
            mqtt__send_connack(t, c, MQTT_CONNACK_UNAVAILABLE);
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
            mqtt__send_ack(t, c, (a->id >> 16) == 2 ? MQTT_PUBREC : MQTT_PUBACK, (uint16_t)a->id);
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

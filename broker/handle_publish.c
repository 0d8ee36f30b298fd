/*
 * handle_publish.c - Publish: decoded in full or by the fast path, checked,
 * and queued to the topic's worker or to the store writer.
 */
#include "io_int.h"
#include "wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Cluster mode: does this broker serve p's topic? If not, 0: the publisher
 * is told why, and where the owner is (Error.owner), or the frame waits
 * for the topic's placement (conn_hold.c). */
static int pub_is_served(struct iot *t, struct conn *c, const struct pub_in *p)
{
    char text[400], owner[128];
    enum clu_verdict v =
        conn_clu_route(t, c, p->topic, p->topic_len, text, sizeof(text), owner, sizeof(owner));
    if (v == CLU_SERVE || v == CLU_PENDING) {
        return v == CLU_SERVE;
    }
    Ferry__Error e = FERRY__ERROR__INIT;
    e.code = v == CLU_NOT_OWNER ? FERRY__ERROR_CODE__ERROR_NOT_OWNER
                                : FERRY__ERROR_CODE__ERROR_UNAVAILABLE;
    e.text = text;
    e.ref_id = p->id;
    e.ref_kind = FERRY__ERROR__REF_KIND__REF_PUBLISH;
    e.owner = owner;
    stats_pub_refused(&t->stats, (int)e.code);
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_ERROR;
    f.error = &e;
    conn_send(t, c, &f);
    return 0;
}

void handle_publish_enqueue(struct iot *t, struct conn *c, const struct pub_in *p)
{
    const struct cfg *cfg = &t->srv->cfg;
    const char *why;
    size_t tlen = p->topic_len;
    int rc = topic_validate(p->topic, tlen, 0, cfg->max_topic_len, cfg->max_topic_depth, &why);
    if (rc) {
        conn_send_error(t, c, FERRY__ERROR_CODE__ERROR_INVALID_TOPIC, why, p->id,
                        FERRY__ERROR__REF_KIND__REF_PUBLISH, 0);
        return;
    }
    /* A request's reply topic is a concrete topic too; whether the
     * publisher may subscribe to it, or a responder publish to it, is
     * checked when they do. */
    if (p->reply_to_len != 0 && topic_validate(p->reply_to, p->reply_to_len, 0, cfg->max_topic_len,
                                               cfg->max_topic_depth, &why) != 0) {
        char text[160];
        snprintf(text, sizeof(text), "reply_to: %s", why);
        conn_send_error(t, c, FERRY__ERROR_CODE__ERROR_INVALID_TOPIC, text, p->id,
                        FERRY__ERROR__REF_KIND__REF_PUBLISH, 0);
        return;
    }
    if (!p->is_internal && !conn_may_publish(c, p->topic, tlen)) {
        char text[320];
        snprintf(text, sizeof(text), "permission denied: publish %.*s",
                 (int)(tlen > 256 ? 256 : tlen), p->topic);
        conn_acl_denied(t, c, "publish", p->topic, tlen);
        conn_send_error(t, c, FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED, text, p->id,
                        FERRY__ERROR__REF_KIND__REF_PUBLISH, 0);
        return;
    }
    if (t->srv->cluster != NULL && !pub_is_served(t, c, p)) {
        return;
    }
    if (p->n_headers > CODEC_MAX_HEADERS) {
        conn_send_error(t, c, FERRY__ERROR_CODE__ERROR_LIMIT_EXCEEDED, "more than 64 headers",
                        p->id, FERRY__ERROR__REF_KIND__REF_PUBLISH, 0);
        return;
    }
    /* Stored unless the topic matches an `ephemeral` pattern (or, in unit
     * tests, the server has no store). A stored record's body carries a
     * sequence trailer the writer fills in after its commit. */
    int is_stored = t->srv->store != NULL && !cfg_is_ephemeral(cfg, p->topic, tlen);
    if (is_stored && tlen > STORE_TOPIC_MAX) {
        conn_send_error(t, c, FERRY__ERROR_CODE__ERROR_INVALID_TOPIC,
                        "topic too long to be stored (at most " STORE_TOPIC_MAX_TEXT
                        " bytes); longer topics must be ephemeral (config: ephemeral PATTERN)",
                        p->id, FERRY__ERROR__REF_KIND__REF_PUBLISH, 0);
        return;
    }
    if (is_stored && p->key_len > STORE_LASTVAL_KEY_MAX && cfg_is_last_value(cfg, p->topic, tlen)) {
        conn_send_error(t, c, FERRY__ERROR_CODE__ERROR_INVALID_ARGUMENT,
                        "key too long for a last-value topic (at most " STORE_STR(
                            STORE_LASTVAL_KEY_MAX) " bytes)",
                        p->id, FERRY__ERROR__REF_KIND__REF_PUBLISH, 0);
        return;
    }
    /* Delayed delivery: the store keeps the schedule, so only a stored
     * topic can have one. A time not after now is now. */
    int64_t deliver_at = p->deliver_at > t->now_ns ? p->deliver_at : 0;
    if (deliver_at != 0 && !is_stored) {
        conn_send_error(t, c, FERRY__ERROR_CODE__ERROR_INVALID_ARGUMENT,
                        "deliver_at needs a stored topic (this one is ephemeral)", p->id,
                        FERRY__ERROR__REF_KIND__REF_PUBLISH, 0);
        return;
    }
    /* Expiry counts from when the message becomes deliverable. */
    int64_t from = deliver_at ? deliver_at : t->now_ns;
    int64_t expire_time = 0;
    if (p->ttl_ms != 0) {
        expire_time = p->ttl_ms >= (uint64_t)(INT64_MAX - from) / 1000000u
                          ? INT64_MAX
                          : from + (int64_t)p->ttl_ms * 1000000;
    }
    struct codec_hdr hv[CODEC_MAX_HEADERS];
    for (size_t i = 0; i < p->n_headers; i++) {
        hv[i] = (struct codec_hdr){p->headers[i]->key, strlen(p->headers[i]->key),
                                   p->headers[i]->value, strlen(p->headers[i]->value)};
    }
    struct codec_deliver d = {.topic = p->topic,
                              .topic_len = tlen,
                              .publish_time = t->now_ns,
                              .payload = p->payload,
                              .payload_len = p->payload_len,
                              .headers = hv,
                              .n_headers = p->n_headers,
                              .key = p->key,
                              .key_len = p->key_len,
                              .attempt = 1,
                              .reply_to = p->reply_to,
                              .reply_to_len = p->reply_to_len};
    size_t body_len = pub_rec_body_len(&d, is_stored);
    /* The Deliver (publish time, attempt, sequence and a sub id added) is
     * larger than the Publish: one that would not fit the server's frame
     * limit for a subscriber with one matching subscription is refused
     * here, rather than accepted and never deliverable. */
    if (CODEC_DELIVER_PREFIX_MAX(1) - FRAME_HDR_LEN + body_len > cfg->max_frame_len) {
        char text[160];
        snprintf(text, sizeof(text),
                 "message too large: its Deliver frame would be %zu bytes, above the server's "
                 "max_frame_len %u",
                 CODEC_DELIVER_PREFIX_MAX(1) - FRAME_HDR_LEN + body_len, cfg->max_frame_len);
        conn_send_error(t, c, FERRY__ERROR_CODE__ERROR_FRAME_TOO_LARGE, text, p->id,
                        FERRY__ERROR__REF_KIND__REF_PUBLISH, 0);
        return;
    }
    size_t rec_len = pub_rec_len(tlen, body_len, is_stored);

    uint32_t owner = topic_hash(p->topic, tlen) % t->srv->n_workers;
    uint32_t w = is_stored ? t->srv->n_workers : owner;
    struct wq *q = &t->wq[w];
    if (q->cur && q->cur->cap - q->cur->len < rec_len) {
        iot_wq_seal(t, w);
        iot_wq_flush(t, w);
    }
    if (q->cur == NULL) {
        size_t cap = rec_len > BATCH_CAP ? rec_len : BATCH_CAP;
        /* The queue has room for this batch before it takes a publish, so
         * iot_wq_seal() cannot drop it. */
        struct pub_batch *b = iot_wq_reserve(q) == 0 ? malloc(sizeof(*b) + cap) : NULL;
        if (b == NULL) {
            conn_send_error(t, c, FERRY__ERROR_CODE__ERROR_SERVER_BUSY, "out of memory", p->id,
                            FERRY__ERROR__REF_KIND__REF_PUBLISH, 0);
            return;
        }
        atomic_init(&b->refs, 1);
        b->len = 0;
        b->cap = (uint32_t)cap;
        b->n_recs = 0;
        q->cur = b;
    }
    struct pub_batch *b = q->cur;
    struct pub_rec *r = (struct pub_rec *)(b->data + b->len);
    pub_rec_init(r, conn_ref_of(t, c), p->id, &d, body_len, owner, p->want_ack, is_stored);
    r->expire_time = expire_time;
    if (is_stored) {
        struct pub_rec_st *st = pub_rec_st(r);
        st->deliver_at = deliver_at;
        st->producer_id = p->producer_id;
        st->producer_seq = p->producer_seq;
        if (++t->pub_serial == 0) {
            t->pub_serial = 1; /* 0 means "none" */
        }
        r->serial = t->pub_serial;
        c->last_stored_serial = r->serial;
    }
    b->len += (uint32_t)rec_len;
    b->n_recs++;
    stats_add(&t->stats.msgs_in, 1);
    if (q->n >= WQ_PAUSE) {
        conn_pause(t, c); /* the worker is behind: stop reading this publisher */
    }
}

void handle_publish(struct iot *t, struct conn *c, Ferry__Publish *m)
{
    struct pub_in p = {
        .id = m->id,
        .topic = m->topic,
        .topic_len = strlen(m->topic),
        .payload = m->payload.data,
        .payload_len = m->payload.len,
        .key = m->key.data,
        .key_len = m->key.len,
        .n_headers = m->n_headers,
        .headers = m->headers,
        .want_ack = m->want_ack,
        .producer_id = m->producer_id,
        .producer_seq = m->producer_seq,
        .reply_to = m->reply_to,
        .reply_to_len = m->reply_to != NULL ? strlen(m->reply_to) : 0,
        .deliver_at = m->deliver_at,
        .ttl_ms = m->ttl_ms,
    };
    handle_publish_enqueue(t, c, &p);
}

/* The hot path: a frame holding only a Publish without headers is read in
 * place, without protobuf-c and without the arena. Anything unusual (other
 * or unknown fields, headers, a reply_to, bad strings, odd encodings)
 * returns 0 and the frame goes through the full decoder, which accepts or
 * rejects it exactly as it would anyway. (Requests wait for an answer that
 * takes a round trip through a responder: the decoder's cost is noise
 * there.) */
int handle_publish_fast(struct iot *t, struct conn *c, const uint8_t *body, size_t len)
{
    const uint8_t *p = body, *end = body + len;
    uint64_t v;
    if (p == end || *p++ != ((3 << 3) | 2) || wire_varint_get(&p, end, &v) < 0 ||
        v != (uint64_t)(end - p)) {
        return 0;
    }
    struct pub_in in = {.topic = ""};
    int has_topic = 0;
    while (p < end) {
        uint8_t key = *p++;
        switch (key) {
        case (1 << 3) | 0:
            if (wire_varint_get(&p, end, &in.id) < 0) {
                return 0;
            }
            break;
        case (6 << 3) | 0:
            if (wire_varint_get(&p, end, &v) < 0) {
                return 0;
            }
            in.want_ack = v != 0;
            break;
        case (7 << 3) | 0:
            if (wire_varint_get(&p, end, &in.producer_id) < 0) {
                return 0;
            }
            break;
        case (8 << 3) | 0:
            if (wire_varint_get(&p, end, &in.producer_seq) < 0) {
                return 0;
            }
            break;
        case (2 << 3) | 2:
        case (3 << 3) | 2:
        case (5 << 3) | 2:
            if (wire_varint_get(&p, end, &v) < 0 || v > (uint64_t)(end - p)) {
                return 0;
            }
            if (key == ((2 << 3) | 2)) {
                if (has_topic++) {
                    return 0; /* repeated: the full decoder checks every copy */
                }
                in.topic = (const char *)p;
                in.topic_len = (size_t)v;
            } else if (key == ((3 << 3) | 2)) {
                in.payload = p;
                in.payload_len = (size_t)v;
            } else {
                in.key = p;
                in.key_len = (size_t)v;
            }
            p += v;
            break;
        default:
            return 0; /* headers, reply_to, unknown fields, multi-byte keys */
        }
    }
    if (!codec_utf8_valid((const uint8_t *)in.topic, in.topic_len)) {
        return 0;
    }
    handle_publish_enqueue(t, c, &in);
    return 1;
}

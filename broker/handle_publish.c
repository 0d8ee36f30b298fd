/*
 * handle_publish.c - Publish: decoded in full or by the fast path, checked,
 * and queued to the topic's worker or to the store writer.
 */
#include "io_int.h"
#include "wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Deliver body without headers, written directly (same bytes protobuf-c
 * would produce): topic=2, publish_time=4, payload=5, key=7, attempt=8. */
static size_t deliver_body_size(const struct pub_in *p, int64_t now_ns)
{
    size_t n = 1 + wire_varint_len(p->topic_len) + p->topic_len;
    n += 1 + wire_varint_len((uint64_t)now_ns);
    if (p->payload_len) {
        n += 1 + wire_varint_len(p->payload_len) + p->payload_len;
    }
    if (p->key_len) {
        n += 1 + wire_varint_len(p->key_len) + p->key_len;
    }
    return n + 2;
}

static void deliver_body_put(uint8_t *o, const struct pub_in *p, int64_t now_ns)
{
    *o++ = (2 << 3) | 2;
    o = wire_varint_put(o, p->topic_len);
    memcpy(o, p->topic, p->topic_len);
    o += p->topic_len;
    *o++ = (4 << 3) | 0;
    o = wire_varint_put(o, (uint64_t)now_ns);
    if (p->payload_len) {
        *o++ = (5 << 3) | 2;
        o = wire_varint_put(o, p->payload_len);
        memcpy(o, p->payload, p->payload_len);
        o += p->payload_len;
    }
    if (p->key_len) {
        *o++ = (7 << 3) | 2;
        o = wire_varint_put(o, p->key_len);
        memcpy(o, p->key, p->key_len);
        o += p->key_len;
    }
    *o++ = (8 << 3) | 0;
    *o = 1;
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
    if (!conn_may_publish(c, p->topic, tlen)) {
        char text[320];
        snprintf(text, sizeof(text), "permission denied: publish %.*s",
                 (int)(tlen > 256 ? 256 : tlen), p->topic);
        conn_acl_denied(t, c, "publish", p->topic, tlen);
        conn_send_error(t, c, FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED, text, p->id,
                        FERRY__ERROR__REF_KIND__REF_PUBLISH, 0);
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
    Ferry__Deliver d = FERRY__DELIVER__INIT;
    size_t body_len;
    if (p->n_headers) {
        d.topic = (char *)p->topic; /* NUL-terminated: from the full decoder */
        d.publish_time = t->now_ns;
        d.payload.data = (uint8_t *)p->payload;
        d.payload.len = p->payload_len;
        d.n_headers = p->n_headers;
        d.headers = p->headers;
        d.key.data = (uint8_t *)p->key;
        d.key.len = p->key_len;
        d.attempt = 1;
        body_len = codec_deliver_body_size(&d);
    } else {
        body_len = deliver_body_size(p, t->now_ns);
    }
    if (is_stored) {
        body_len += PUB_SEQ_TRAILER;
    }
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
    size_t rec_len = pub_rec_len(tlen, body_len);

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
    pub_rec_init(r, conn_ref_of(t, c), p->id, p->topic, tlen, body_len, owner, p->want_ack,
                 is_stored);
    uint8_t *body = (uint8_t *)r + r->body_off;
    if (is_stored) {
        if (++t->pub_serial == 0) {
            t->pub_serial = 1; /* 0 means "none" */
        }
        r->serial = t->pub_serial;
        c->last_stored_serial = r->serial;
    }
    if (p->n_headers) {
        codec_deliver_body_encode(&d, body);
    } else {
        deliver_body_put(body, p, t->now_ns);
    }
    if (is_stored) {
        pub_seq_put(body + body_len, 0);
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
    };
    handle_publish_enqueue(t, c, &p);
}

/* The hot path: a frame holding only a Publish without headers is read in
 * place, without protobuf-c and without the arena. Anything unusual (other
 * or unknown fields, headers, bad strings, odd encodings) returns 0 and the
 * frame goes through the full decoder, which accepts or rejects it exactly
 * as it would anyway. */
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
            return 0; /* headers, unknown fields, multi-byte keys */
        }
    }
    if (!codec_utf8_valid((const uint8_t *)in.topic, in.topic_len)) {
        return 0;
    }
    handle_publish_enqueue(t, c, &in);
    return 1;
}

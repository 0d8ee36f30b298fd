/*
 * deliver.c - routed messages from the workers, filtered against the
 * connection's live subscriptions and positions, staged by reference for
 * the end-of-round writev (conn_flush).
 */
#include "io_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A Deliver of frame_len bytes (without the length prefix) does not fit the
 * limit c negotiated: it is not sent. Instead each subscription it was for
 * gets a non-fatal Error naming it, and the refusal is counted (and logged,
 * the first few per connection): never a silent drop, never a frame the
 * client said it cannot take. Returns 1 if the frame is refused. */
int deliver_too_large(struct iot *t, struct conn *c, const uint64_t *ids, uint32_t n, uint64_t seq,
                      size_t frame_len)
{
    if (frame_len <= c->max_frame_len) {
        return 0;
    }
    stats_add(&t->stats.deliver_too_large, 1);
    c->n_too_large++;
    if (c->n_too_large <= 10 || c->n_too_large % 1000 == 0) {
        log_client_warn(c->client_id, c->peer,
                        "Deliver of %zu bytes (sequence %llu) exceeds the negotiated "
                        "max_frame_len %u: not sent (%u on this connection)",
                        frame_len, (unsigned long long)seq, c->max_frame_len, c->n_too_large);
    }
    char text[160];
    snprintf(text, sizeof(text),
             "message not delivered: its Deliver frame (%zu bytes, sequence %llu) exceeds the "
             "negotiated max_frame_len %u",
             frame_len, (unsigned long long)seq, c->max_frame_len);
    /* (sequence 0: an ephemeral topic, or not known here) */
    for (uint32_t i = 0; i < n && c->state == ST_OPEN; i++) {
        conn_send_error(t, c, FERRY__ERROR_CODE__ERROR_FRAME_TOO_LARGE, text, ids[i],
                        FERRY__ERROR__REF_KIND__REF_SUBSCRIPTION, 0);
    }
    return 1;
}

uint8_t *deliver_pfx_room(struct iot *t, size_t max)
{
    if (t->pfx_cap - t->pfx_len < max) {
        size_t cap = t->pfx_cap ? t->pfx_cap * 2 : 65536;
        while (cap - t->pfx_len < max) {
            cap *= 2;
        }
        uint8_t *p = realloc(t->pfx, cap);
        if (p == NULL) {
            return NULL;
        }
        t->pfx = p;
        t->pfx_cap = cap;
    }
    return t->pfx + t->pfx_len;
}

int deliver_stage(struct iot *t, struct conn *c, size_t pl, struct pub_batch *b, uint32_t off,
                  uint32_t len)
{
    if (t->n_stage == t->stage_cap) {
        uint32_t cap = t->stage_cap ? t->stage_cap * 2 : 1024;
        struct stage *s = realloc(t->stage, cap * sizeof(*s));
        if (s == NULL) {
            return -ENOMEM;
        }
        t->stage = s;
        t->stage_cap = cap;
    }
    int32_t idx = (int32_t)t->n_stage++;
    struct stage *s = &t->stage[idx];
    s->batch = b;
    s->body_off = off;
    s->body_len = len;
    s->pfx_off = (uint32_t)t->pfx_len;
    s->pfx_len = (uint32_t)pl;
    s->next = -1;
    t->pfx_len += pl;
    if (c->stage_tail >= 0) {
        t->stage[c->stage_tail].next = idx;
    } else {
        c->stage_head = idx;
    }
    c->stage_tail = idx;
    c->stage_bytes += (uint32_t)(pl + len);
    conn_mark_dirty(t, c);
    return 0;
}

/* Deliveries: filter ids against live subscriptions, stage by reference. */
void deliver_routed(struct iot *t, struct rmsg *m)
{
    uint64_t *ids = m->n_ids > RMSG_INLINE_IDS ? m->u.ext_ids : m->u.ids;
    struct conn *c = conn_by_ref(t, m->conn_ref);
    uint32_t n = 0;
    if (c && c->state == ST_OPEN) {
        /* The worker names subscriptions by key (never reused, unlike
         * sub_ids), sorted, as c->subs is. Keep the keys still subscribed:
         * an Unsubscribe answered since the worker matched (even if the
         * sub_id was subscribed again since) must not get this delivery.
         * Nor does a subscription whose SubAck is held: every Deliver comes
         * after its SubAck, and what arrives before the SubAck is queued
         * was published before it (START_NEW does not want it; catch-up
         * subscriptions read it from the store once started). */
        uint32_t lo = 0;
        for (uint32_t i = 0; i < m->n_ids && lo < c->n_subs; i++) {
            uint32_t hi = c->n_subs;
            while (lo < hi) {
                uint32_t mid = lo + (hi - lo) / 2;
                if (c->subs[mid]->key < ids[i]) {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            if (lo < c->n_subs && c->subs[lo]->key == ids[i] && ids[i] != c->unacked_key) {
                t->dsubs[n] = c->subs[lo];
                ids[n++] = ids[i];
                lo++;
            }
        }
    }
    if (n > 0 && c->n_cu > 0) {
        n = cu_filter(t, c, ids, n, m->batch->data + m->body_off, m->body_len);
    }
    if (n > 0) {
        /* dsubs[] in step with what cu_filter kept (it keeps the order) */
        for (uint32_t i = 0, j = 0; i < n; i++) {
            while (t->dsubs[j]->key != ids[i]) {
                j++;
            }
            t->dsubs[i] = t->dsubs[j];
        }
        n = cu_wild_filter(t, c, ids, t->dsubs, n, m->batch->data + m->body_off, m->body_len);
    }
    if (n == 0) {
        goto out_drop;
    }
    /* Keys to the client's sub_ids (cu_filter keeps the order). */
    for (uint32_t i = 0, j = 0; i < n; i++) {
        while (t->dsubs[j]->key != ids[i]) {
            j++;
        }
        ids[i] = t->dsubs[j]->sub_id;
    }
    if (c->mq != NULL) {
        /* MQTT: a PUBLISH written for this connection, not the shared bytes */
        mqtt_conn_deliver(t, c, ids, n, m->batch, m->body_off, m->body_len);
        goto out_drop;
    }
    uint8_t *pfx = deliver_pfx_room(t, CODEC_DELIVER_PREFIX_MAX(n));
    if (pfx == NULL) {
        conn_lost_output(t, c, "a delivery could not be staged");
        goto out_drop;
    }
    size_t pl = codec_deliver_prefix(pfx, ids, n, m->body_len);
    if (pl - FRAME_HDR_LEN + m->body_len > c->max_frame_len) {
        deliver_too_large(t, c, ids, n, 0, pl - FRAME_HDR_LEN + m->body_len);
        goto out_drop;
    }
    stats_add(&t->stats.msgs_out, 1);
    stats_add(&t->stats.frames_out, 1);
    if (conn_out_pending(c) > 0 && conn_is_write_waiting(c)) {
        /* Backlogged: straight into its private buffer, bounded. */
        if (conn_out_pending(c) + pl + m->body_len > t->srv->cfg.max_outbound) {
            conn_slow_consumer(t, c);
            goto out_drop;
        }
        if (conn_out_reserve(c, pl + m->body_len) == 0) {
            conn_out_append(c, pfx, pl);
            conn_out_append(c, m->batch->data + m->body_off, m->body_len);
        } else {
            conn_lost_output(t, c, "a delivery could not be queued");
        }
        conn_heavy_update(t, c);
        goto out_drop;
    }
    if (deliver_stage(t, c, pl, m->batch, m->body_off, m->body_len) < 0) {
        conn_lost_output(t, c, "a delivery could not be staged");
        goto out_drop;
    }
    /* the stage took the message's reference */
    if (m->n_ids > RMSG_INLINE_IDS) {
        free(m->u.ext_ids);
    }
    return;

out_drop:
    if (m->n_ids > RMSG_INLINE_IDS) {
        free(m->u.ext_ids);
    }
    pub_batch_unref(m->batch);
}

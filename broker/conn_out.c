/*
 * conn_out.c - one connection's output: staged deliveries, the buffer,
 * replies, the flush, closing after it.
 *
 * Output of a connection lives in two places. Deliveries of the current
 * round are staged by reference (deliver.c) and written with writev at the
 * end of the round (conn_flush); whatever the socket does not take is
 * copied into the connection's own buffer, so shared batches are never
 * pinned by a slow reader. That buffer is bounded by max_outbound_bytes:
 * past it the connection is a slow consumer and is closed. Replies go to
 * the buffer directly, after any staged deliveries (order kept).
 */
#include "io_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* Write through TLS if the connection has it (errno set as writev(2)
 * does, so that one path serves both). */
static ssize_t sock_writev(struct conn *c, const struct iovec *iov, int n_iov)
{
    if (c->tls == NULL) {
        return writev(c->fd, iov, n_iov);
    }
    ssize_t w = tls_conn_writev(c->tls, iov, n_iov);
    if (w < 0) {
        errno = (int)-w;
        return -1;
    }
    if (w == 0) {
        errno = EAGAIN;
        return -1;
    }
    return w;
}

/* ---- output ------------------------------------------------------------- */

size_t conn_out_pending(const struct conn *c)
{
    return c->out_len - c->out_off;
}

/* Room for n more bytes at c->out + c->out_len. */
int conn_out_reserve(struct conn *c, size_t n)
{
    if (c->out_cap - c->out_len >= n) {
        return 0;
    }
    size_t live = conn_out_pending(c);
    if (c->out_off > 0) {
        memmove(c->out, c->out + c->out_off, live);
        c->out_frame -= c->out_off;
        c->out_off = 0;
        c->out_len = live;
        if (c->out_cap - live >= n) {
            return 0;
        }
    }
    size_t cap = c->out_cap ? c->out_cap : 1024;
    while (cap - live < n) {
        cap *= 2;
    }
    uint8_t *p = realloc(c->out, cap);
    if (p == NULL) {
        return -ENOMEM;
    }
    c->out = p;
    c->out_cap = cap;
    return 0;
}

void conn_out_append(struct conn *c, const void *p, size_t n)
{
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

void conn_out_release(struct conn *c)
{
    free(c->out);
    c->out = NULL;
    c->out_off = c->out_len = c->out_cap = c->out_frame = 0;
}

void conn_heavy_update(struct iot *t, struct conn *c)
{
    uint8_t h = c->state == ST_OPEN && conn_out_pending(c) > t->srv->cfg.max_outbound / 2;
    if (h != c->is_heavy) {
        c->is_heavy = h;
        if (h) {
            t->n_heavy++;
        } else {
            t->n_heavy--;
        }
    }
}

static void stage_release(struct iot *t, struct conn *c)
{
    for (int32_t i = c->stage_head; i >= 0; i = t->stage[i].next) {
        pub_batch_unref(t->stage[i].batch);
        t->stage[i].batch = NULL;
    }
    c->stage_head = c->stage_tail = -1;
    c->stage_bytes = 0;
}

/* Copy the staged deliveries into the connection's buffer (they must keep
 * their place before a reply queued now). */
static void unstage(struct iot *t, struct conn *c)
{
    for (int32_t i = c->stage_head; i >= 0; i = t->stage[i].next) {
        struct stage *s = &t->stage[i];
        if (c->state != ST_DEAD && conn_out_reserve(c, s->pfx_len + (size_t)s->body_len) == 0) {
            conn_out_append(c, t->pfx + s->pfx_off, s->pfx_len);
            conn_out_append(c, s->batch->data + s->body_off, s->body_len);
        } else if (c->state != ST_DEAD) {
            conn_lost_output(t, c, "a delivery could not be queued");
        }
        pub_batch_unref(s->batch);
        s->batch = NULL;
    }
    c->stage_head = c->stage_tail = -1;
    c->stage_bytes = 0;
}

/* Copy the frame at out[r] (flen bytes) to out[w] (w <= r), without
 * sub_id if it is a Deliver naming it; a Deliver for sub_id alone is not
 * copied. Returns the bytes written at w; *dropped counts the frames left
 * out. ids: scratch for max_ids ids. */
static size_t frame_without(struct conn *c, size_t w, size_t r, size_t flen, uint64_t sub_id,
                            uint64_t *ids, size_t max_ids, uint32_t *dropped)
{
    size_t n = 0, k = 0, body_len;
    const uint8_t *body;
    if (codec_deliver_split(c->out + r, flen, ids, max_ids, &n, &body, &body_len)) {
        for (size_t i = 0; i < n; i++) {
            if (ids[i] != sub_id) {
                ids[k++] = ids[i];
            }
        }
    }
    if (k == n) { /* not a Deliver, or not for sub_id: as it is */
        memmove(c->out + w, c->out + r, flen);
        return flen;
    }
    if (k == 0) {
        (*dropped)++;
        return 0;
    }
    /* Fewer ids: the new prefix is no longer than the old one, so writing
     * it at w never overtakes the body, which still starts at r + the old
     * prefix's length. */
    uint8_t small[CODEC_DELIVER_PREFIX_MAX(1)];
    uint8_t *p = k <= 1 ? small : malloc(CODEC_DELIVER_PREFIX_MAX(k));
    if (p == NULL) {
        memmove(c->out + w, c->out + r, flen); /* out of memory: it stays as it is */
        return flen;
    }
    size_t body_off = (size_t)(body - c->out);
    size_t pl = codec_deliver_prefix(p, ids, k, body_len);
    memcpy(c->out + w, p, pl);
    memmove(c->out + w + pl, c->out + body_off, body_len);
    if (p != small) {
        free(p);
    }
    return pl + body_len;
}

uint32_t conn_drop_deliveries(struct iot *t, struct conn *c, uint64_t sub_id)
{
    if (c->mq != NULL) {
        return 0; /* MQTT packets in the buffer, no Deliver frames to take apart */
    }
    if (c->stage_head >= 0) {
        unstage(t, c); /* staged deliveries become whole frames in the buffer */
    }
    size_t max_ids = t->srv->cfg.max_subs ? t->srv->cfg.max_subs : 1;
    uint64_t *ids = malloc(max_ids * sizeof(*ids));
    if (ids == NULL) {
        return 0;
    }
    /* One pass: frames are read at r and written back, compacted, at w. */
    uint32_t dropped = 0;
    size_t w = c->out_frame;
    for (size_t r = c->out_frame; r < c->out_len;) {
        size_t flen = FRAME_HDR_LEN + frame_hdr_get(c->out + r);
        w += frame_without(c, w, r, flen, sub_id, ids, max_ids, &dropped);
        r += flen;
    }
    c->out_len = w;
    free(ids);
    conn_heavy_update(t, c);
    return dropped;
}

/* Queue one frame (a reply) on c. */
void conn_send(struct iot *t, struct conn *c, const Ferry__Frame *f)
{
    if (c->state == ST_DEAD) {
        return;
    }
    if (c->mq != NULL) {
        mqtt_conn_reply(t, c, f); /* said in MQTT, if at all */
        return;
    }
    if (c->stage_head >= 0) {
        unstage(t, c);
    }
    size_t n = codec_frame_size(f);
    size_t len;
    if (conn_out_reserve(c, n) < 0 || codec_frame_encode(f, c->out + c->out_len, n, &len) < 0) {
        log_client_error(c->client_id, c->peer, "cannot queue a %s reply, closing",
                         codec_frame_name(f));
        conn_kill(t, c);
        return;
    }
    c->out_len += len;
    stats_add(&t->stats.frames_out, 1);
    conn_mark_dirty(t, c);
}

void conn_unstage(struct iot *t, struct conn *c)
{
    if (c->stage_head >= 0) {
        unstage(t, c);
    }
}

void conn_send_deliver(struct iot *t, struct conn *c, const uint8_t *pfx, size_t pl,
                       const struct codec_deliver *d, size_t body_len)
{
    if (c->state == ST_DEAD) {
        return;
    }
    if (c->mq != NULL) {
        mqtt_conn_deliver_one(t, c, pfx, pl, d, body_len);
        return;
    }
    if (c->stage_head >= 0) {
        unstage(t, c);
    }
    if (conn_out_reserve(c, pl + body_len) < 0) {
        log_client_error(c->client_id, c->peer, "cannot queue a delivery, closing");
        conn_kill(t, c);
        return;
    }
    conn_out_append(c, pfx, pl);
    c->out_len += codec_deliver_body_put(d, c->out + c->out_len, NULL);
    stats_add(&t->stats.frames_out, 1);
    conn_mark_dirty(t, c);
}

/* Queue one frame encoded elsewhere (header included). */
void conn_send_raw(struct iot *t, struct conn *c, const uint8_t *p, size_t n)
{
    if (c->state == ST_DEAD) {
        return;
    }
    if (c->stage_head >= 0) {
        unstage(t, c);
    }
    if (conn_out_reserve(c, n) < 0) {
        log_client_error(c->client_id, c->peer, "cannot queue a reply, closing");
        conn_kill(t, c);
        return;
    }
    conn_out_append(c, p, n);
    stats_add(&t->stats.frames_out, 1);
    conn_mark_dirty(t, c);
}

void conn_send_error(struct iot *t, struct conn *c, int wire_code, const char *text,
                     uint64_t ref_id, Ferry__Error__RefKind kind, int is_fatal)
{
    Ferry__Error e = FERRY__ERROR__INIT;
    e.code = (Ferry__ErrorCode)wire_code;
    e.text = (char *)text;
    e.ref_id = ref_id;
    e.ref_kind = kind;
    e.is_fatal = is_fatal ? 1 : 0;
    if (kind == FERRY__ERROR__REF_KIND__REF_PUBLISH) {
        stats_pub_refused(&t->stats, wire_code);
    }
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_ERROR;
    f.error = &e;
    conn_send(t, c, &f);
}

/* Stop reading c, flush what is queued (bounded by CLOSE_LINGER_MS), close. */
void conn_close_after_flush(struct iot *t, struct conn *c)
{
    if (c->state >= ST_CLOSING) {
        return;
    }
    /* A lingering close (as nginx does): keep reading and discarding until
     * our output is out and the peer has seen our FIN, so that closing with
     * unread input does not reset the connection and lose the Error frame. */
    c->state = ST_CLOSING;
    conn_heavy_update(t, c);
    conn_set_events(t, c, c->events | RX_READ);
    conn_timer_arm(t, c, t->now + CLOSE_LINGER_MS);
    conn_mark_dirty(t, c);
}

/* A fatal error: Error frame, then close. */
void conn_fail(struct iot *t, struct conn *c, int wire_code, const char *text)
{
    if (c->state >= ST_CLOSING) {
        return;
    }
    if (wire_code != FERRY__ERROR_CODE__ERROR_KEEPALIVE_TIMEOUT &&
        wire_code != FERRY__ERROR_CODE__ERROR_SHUTTING_DOWN &&
        wire_code != FERRY__ERROR_CODE__ERROR_SLOW_CONSUMER &&
        wire_code != FERRY__ERROR_CODE__ERROR_LIMIT_EXCEEDED &&
        wire_code != FERRY__ERROR_CODE__ERROR_AUTH_FAILED &&
        wire_code != FERRY__ERROR_CODE__ERROR_SERVER_BUSY) {
        stats_add(&t->stats.protocol_errors, 1);
    }
    log_client_info(c->client_id, c->peer, "closing: %s", text);
    conn_send_error(t, c, wire_code, text, 0, FERRY__ERROR__REF_KIND__REF_NONE, 1);
    conn_close_after_flush(t, c);
}

void conn_slow_consumer(struct iot *t, struct conn *c)
{
    if (c->state >= ST_CLOSING) {
        return;
    }
    stats_add(&t->stats.slow_consumers, 1);
    if (!c->is_slow_logged) {
        c->is_slow_logged = 1;
        log_client_warn(c->client_id, c->peer,
                        "slow consumer: more than %llu bytes queued, disconnecting",
                        (unsigned long long)t->srv->cfg.max_outbound);
    }
    conn_fail(t, c, FERRY__ERROR_CODE__ERROR_SLOW_CONSUMER,
              "slow consumer: outbound buffer overflowed");
}

/* Write what c has: its buffer, then its staged deliveries. */
void conn_flush(struct iot *t, struct conn *c)
{
    if (c->state == ST_DEAD) {
        stage_release(t, c);
        return;
    }
    if (c->tls_hs) {
        /* Output before the TLS handshake finished (a goodbye at shutdown):
         * there is no session to send it in. */
        stage_release(t, c);
        conn_kill(t, c);
        return;
    }
    /* A backlogged connection waits for RX_WRITE; until then, just move
     * the staged deliveries behind its backlog. */
    int is_writable = c->is_writable;
    c->is_writable = 0;
    if ((c->events & RX_WRITE) && conn_out_pending(c) > 0 && !is_writable) {
        unstage(t, c);
    } else {
        int32_t next = c->stage_head;
        int done = 0;
        while (!done) {
            int n_iov = 0;
            size_t total = 0;
            if (conn_out_pending(c) > 0) {
                t->iov[n_iov].iov_base = c->out + c->out_off;
                t->iov[n_iov++].iov_len = conn_out_pending(c);
                total += conn_out_pending(c);
            }
            int32_t first = next;
            while (next >= 0 && n_iov + 2 <= IOV_MAX) {
                struct stage *s = &t->stage[next];
                t->iov[n_iov].iov_base = t->pfx + s->pfx_off;
                t->iov[n_iov++].iov_len = s->pfx_len;
                t->iov[n_iov].iov_base = s->batch->data + s->body_off;
                t->iov[n_iov++].iov_len = s->body_len;
                total += s->pfx_len + (size_t)s->body_len;
                next = s->next;
            }
            if (n_iov == 0) {
                break;
            }
            ssize_t w = sock_writev(c, t->iov, n_iov);
            if (w < 0) {
                if (errno == EINTR) {
                    next = first;
                    continue;
                }
                if (errno != EAGAIN) {
                    log_client_debug(c->client_id, c->peer, "write: %s",
                                     c->tls ? tls_conn_error(c->tls) : strerror(errno));
                    stage_release(t, c);
                    conn_kill(t, c);
                    return;
                }
                w = 0;
            }
            stats_add(&t->stats.bytes_out, (uint64_t)w);
            size_t left = (size_t)w;
            /* Consume the buffer part. */
            size_t from_out = left < conn_out_pending(c) ? left : conn_out_pending(c);
            c->out_off += from_out;
            left -= from_out;
            if (c->mq != NULL) {
                c->out_frame = c->out_off; /* MQTT: no frames to keep whole (no staging) */
            }
            while (c->out_frame < c->out_off) { /* past the frames begun */
                c->out_frame += FRAME_HDR_LEN + frame_hdr_get(c->out + c->out_frame);
            }
            /* Consume staged parts; copy the unwritten rest of the batch. */
            int32_t i = first;
            int is_torn = 0;
            for (; i != next; i = t->stage[i].next) {
                struct stage *s = &t->stage[i];
                size_t flen = s->pfx_len + (size_t)s->body_len;
                if (left >= flen) {
                    left -= flen;
                } else if (conn_out_reserve(c, flen - left) == 0) {
                    if (left > 0) { /* begun: the buffer was all written before it */
                        c->out_frame = c->out_len + (flen - left);
                    }
                    if (left < s->pfx_len) {
                        conn_out_append(c, t->pfx + s->pfx_off + left, s->pfx_len - left);
                        conn_out_append(c, s->batch->data + s->body_off, s->body_len);
                    } else {
                        size_t skip = left - s->pfx_len;
                        conn_out_append(c, s->batch->data + s->body_off + skip, s->body_len - skip);
                    }
                    left = 0;
                } else {
                    is_torn = 1; /* half a frame is on the wire */
                    left = 0;
                }
                pub_batch_unref(s->batch);
                s->batch = NULL;
            }
            /* What was written is released: a write error on the next
             * round must release only from here on. */
            c->stage_head = next;
            if (is_torn) {
                stage_release(t, c);
                conn_lost_output(t, c, "the rest of a partly written delivery could not be kept");
                return;
            }
            if ((size_t)w < total) {
                /* Socket full: keep the rest privately and wait, up to the
                 * connection's bound. (Detach the list first: a slow
                 * consumer's Error goes through conn_send.) */
                c->stage_head = c->stage_tail = -1;
                c->stage_bytes = 0;
                for (; next >= 0; next = t->stage[next].next) {
                    struct stage *s = &t->stage[next];
                    size_t flen = s->pfx_len + (size_t)s->body_len;
                    if (conn_out_pending(c) + flen > t->srv->cfg.max_outbound) {
                        conn_slow_consumer(t, c);
                    } else if (c->state == ST_OPEN && conn_out_reserve(c, flen) == 0) {
                        conn_out_append(c, t->pfx + s->pfx_off, s->pfx_len);
                        conn_out_append(c, s->batch->data + s->body_off, s->body_len);
                    } else if (c->state == ST_OPEN) {
                        conn_lost_output(t, c, "a delivery could not be queued");
                    }
                    pub_batch_unref(s->batch);
                    s->batch = NULL;
                }
                done = 1;
            } else if (next < 0) {
                done = 1;
            }
        }
        c->stage_head = c->stage_tail = -1;
        c->stage_bytes = 0;
    }
    if (c->is_out_paused && conn_out_pending(c) <= t->srv->cfg.max_outbound / 4 &&
        c->state == ST_OPEN && conn_list_push(&t->paused, c) == 0) {
        c->is_out_paused = 0; /* iot_resume_paused() reads it again (still is_paused) */
    }
    if (conn_out_pending(c) == 0) {
        conn_out_release(c);
        if (c->state == ST_CLOSING && !c->is_wr_shut) {
            c->is_wr_shut = 1;
            if (c->tls) {
                tls_conn_shutdown(c->tls); /* close_notify, best effort */
            }
            shutdown(c->fd, SHUT_WR);
        }
        if (c->state == ST_CLOSING && atomic_load(&t->srv->phase) == PHASE_CLOSE) {
            conn_kill(t, c); /* stopping: do not wait for the peer's FIN */
            return;
        }
        conn_heavy_update(t, c);
        conn_set_events(t, c, c->events & ~(uint32_t)RX_WRITE);
        return;
    }
    if (conn_out_pending(c) > t->srv->cfg.max_outbound && c->state != ST_CLOSING) {
        conn_slow_consumer(t, c);
    }
    conn_heavy_update(t, c);
    conn_set_events(t, c, c->events | RX_WRITE);
}

/*
 * frame.c - length-prefixed framing.
 *
 * The buffer holds [start, end) of unread bytes. Complete frames are handed out
 * in place; bytes before `start` are dead and are reclaimed by moving the live
 * tail to the front when more space is needed. Growth is driven by what has
 * arrived: when the pending frame does not fit, the buffer doubles, but never
 * past twice the bytes buffered and never past the frame's own size, so a
 * length header alone cannot make us allocate.
 */
#include "frame.h"

#include "ferry.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void frame_hdr_put(uint8_t out[FRAME_HDR_LEN], uint32_t body_len)
{
    out[0] = (uint8_t)(body_len >> 24);
    out[1] = (uint8_t)(body_len >> 16);
    out[2] = (uint8_t)(body_len >> 8);
    out[3] = (uint8_t)body_len;
}

uint32_t frame_hdr_get(const uint8_t in[FRAME_HDR_LEN])
{
    return ((uint32_t)in[0] << 24) | ((uint32_t)in[1] << 16) | ((uint32_t)in[2] << 8) |
           (uint32_t)in[3];
}

void frame_dec_init(struct frame_dec *d, uint32_t max_len)
{
    memset(d, 0, sizeof(*d));
    d->max_len = max_len;
}

void frame_dec_deinit(struct frame_dec *d)
{
    free(d->buf);
    d->buf = NULL;
    d->cap = 0;
    d->start = 0;
    d->end = 0;
}

void frame_dec_set_max(struct frame_dec *d, uint32_t max_len)
{
    d->max_len = max_len;
}

size_t frame_dec_pending(const struct frame_dec *d)
{
    return d->end - d->start;
}

/* Check the header of the pending frame, if it has arrived. Returns the total
 * size (header + body) of the pending frame, 0 if the header is incomplete, or
 * a negative error. */
static long long pending_frame_size(struct frame_dec *d)
{
    if (d->end - d->start < FRAME_HDR_LEN) {
        return 0;
    }
    uint32_t len = frame_hdr_get(d->buf + d->start);
    if (len == 0 || len > d->max_len) {
        d->err = FERRY_EFRAMETOOLARGE;
        return d->err;
    }
    return (long long)len + FRAME_HDR_LEN;
}

int frame_dec_space(struct frame_dec *d, size_t want, uint8_t **p, size_t *n)
{
    if (d->err) {
        return d->err;
    }
    if (want == 0) {
        want = 1;
    }
    size_t live = d->end - d->start;
    long long frame = pending_frame_size(d);
    if (frame < 0) {
        return (int)frame;
    }
    /* Reclaim dead bytes at the front before growing. */
    if (d->start > 0 && (d->cap - d->end < want || live == 0)) {
        memmove(d->buf, d->buf + d->start, live);
        d->start = 0;
        d->end = live;
    }
    if (d->cap - d->end < want) {
        /* Needed: the rest of the pending frame (or just `want` if the header
         * is not complete). Allowed: double what is buffered. */
        size_t need = d->end + want;
        if (frame > 0 && (size_t)frame > d->end && (size_t)frame - d->end < want) {
            need = (size_t)frame;
        }
        size_t cap = d->cap ? d->cap : FRAME_DEC_MIN_CAP;
        while (cap < need && cap < 2 * live + FRAME_DEC_MIN_CAP) {
            cap *= 2;
        }
        size_t ceiling = (size_t)d->max_len + FRAME_HDR_LEN;
        if (cap > ceiling && ceiling >= live + 1) {
            cap = ceiling > FRAME_DEC_MIN_CAP ? ceiling : FRAME_DEC_MIN_CAP;
        }
        if (cap > d->cap) {
            uint8_t *nb = realloc(d->buf, cap);
            if (!nb) {
                return -ENOMEM;
            }
            d->buf = nb;
            d->cap = cap;
        }
    }
    if (d->cap == d->end) {
        return -ENOMEM; /* cannot happen: growth always leaves room */
    }
    *p = d->buf + d->end;
    *n = d->cap - d->end;
    return 0;
}

void frame_dec_commit(struct frame_dec *d, size_t n)
{
    d->end += n;
}

int frame_dec_feed(struct frame_dec *d, const void *data, size_t n)
{
    const uint8_t *src = data;
    while (n > 0) {
        uint8_t *p;
        size_t room;
        int rc = frame_dec_space(d, n, &p, &room);
        if (rc != 0) { /* only 0 sets p and room */
            return rc;
        }
        size_t k = room < n ? room : n;
        memcpy(p, src, k);
        frame_dec_commit(d, k);
        src += k;
        n -= k;
    }
    return 0;
}

int frame_dec_peek(struct frame_dec *d, const uint8_t **body, size_t *body_len)
{
    if (d->err) {
        return d->err;
    }
    long long frame = pending_frame_size(d);
    if (frame <= 0) {
        return (int)frame;
    }
    if ((size_t)frame > d->end - d->start) {
        return 0;
    }
    *body = d->buf + d->start + FRAME_HDR_LEN;
    *body_len = (size_t)frame - FRAME_HDR_LEN;
    return 1;
}

int frame_dec_next(struct frame_dec *d, const uint8_t **body, size_t *body_len)
{
    int rc = frame_dec_peek(d, body, body_len);
    if (rc <= 0) {
        return rc;
    }
    d->start += *body_len + FRAME_HDR_LEN;
    if (d->start == d->end) {
        /* Keep the buffer, but restart at the front. The body pointer stays
         * valid because nothing is moved until bytes are taken again. */
        d->start = d->end = 0;
    }
    return 1;
}

int frame_dec_release_idle(struct frame_dec *d)
{
    if (d->buf == NULL || d->end != d->start) {
        return 0;
    }
    free(d->buf);
    d->buf = NULL;
    d->cap = d->start = d->end = 0;
    return 1;
}

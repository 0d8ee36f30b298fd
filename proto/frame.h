/*
 * frame.h - length-prefixed framing, without knowledge of what a frame holds.
 *
 * A frame on the wire is a 4-byte big-endian body length L, then L bytes of
 * body. This module turns a byte stream into bodies and back. It is pure: no
 * IO, no threads, no logging.
 *
 * The decoder owns one growable buffer. Callers either read(2) straight into
 * the space frame_dec_space() offers and then frame_dec_commit() what arrived,
 * or hand bytes over with frame_dec_feed(). frame_dec_next() then returns one
 * complete body at a time, pointing into the buffer; the pointer is valid
 * until the next call that takes bytes (space/commit/feed) or releases.
 *
 * Memory is committed as bytes arrive, never from a length header alone: the
 * buffer grows at most to twice the bytes actually received (and never beyond
 * the largest allowed frame), so a peer that announces 64 MiB and sends four
 * bytes costs nothing.
 */
#ifndef FERRY_FRAME_H
#define FERRY_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_HDR_LEN 4

/* Default and hard ceilings for a frame body (see ferry.proto, FRAMING). */
#define FRAME_MAX_LEN_DEFAULT (1024u * 1024u + 64u * 1024u)
#define FRAME_MAX_LEN_CEILING (64u * 1024u * 1024u + 64u * 1024u)

/* The buffer starts at this size when bytes first arrive. */
#define FRAME_DEC_MIN_CAP 4096u

struct frame_dec {
    uint8_t *buf;     /* NULL while idle (nothing buffered) */
    size_t cap;       /* bytes allocated at buf */
    size_t start;     /* first byte not yet returned as a frame */
    size_t end;       /* one past the last byte received */
    uint32_t max_len; /* largest body accepted */
    int err;          /* sticky error once the stream is broken, else 0 */
};

/* Initialise a decoder that accepts bodies of 1..max_len bytes. No memory is
 * taken until bytes arrive. */
void frame_dec_init(struct frame_dec *d, uint32_t max_len);

/* Free the buffer. The decoder may be initialised again. */
void frame_dec_deinit(struct frame_dec *d);

/* Change the largest body accepted (after negotiation). */
void frame_dec_set_max(struct frame_dec *d, uint32_t max_len);

/* Offer writable space for at least `want` bytes (fewer if the pending frame
 * needs fewer). On success *p and *n describe the space (n >= 1). Returns 0,
 * -ENOMEM, or the decoder's sticky error. */
int frame_dec_space(struct frame_dec *d, size_t want, uint8_t **p, size_t *n);

/* Record that n bytes were written into the space last offered. */
void frame_dec_commit(struct frame_dec *d, size_t n);

/* Copy n bytes into the decoder (space + memcpy + commit, repeated). Returns
 * 0, -ENOMEM, or the sticky error. */
int frame_dec_feed(struct frame_dec *d, const void *data, size_t n);

/* Take the next complete frame. Returns 1 and sets *body and *body_len when a
 * whole frame is buffered; 0 when more bytes are needed; a negative error
 * when the stream is broken: FERRY_EFRAMETOOLARGE for a length of 0 or above
 * the maximum. After an error the decoder returns the same error forever. */
int frame_dec_next(struct frame_dec *d, const uint8_t **body, size_t *body_len);

/* As frame_dec_next(), but the frame stays buffered: the next peek or
 * next returns it again. */
int frame_dec_peek(struct frame_dec *d, const uint8_t **body, size_t *body_len);

/* Bytes received but not yet returned as frames. */
size_t frame_dec_pending(const struct frame_dec *d);

/* Give the buffer back if nothing is pending (an idle connection costs no
 * buffer). Returns 1 if it released memory. */
int frame_dec_release_idle(struct frame_dec *d);

/* Write the 4-byte big-endian length. */
void frame_hdr_put(uint8_t out[FRAME_HDR_LEN], uint32_t body_len);

/* Read a 4-byte big-endian length. */
uint32_t frame_hdr_get(const uint8_t in[FRAME_HDR_LEN]);

#endif /* FERRY_FRAME_H */

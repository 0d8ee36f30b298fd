/*
 * codec.h - ferry.proto frames behind one small API.
 *
 * Decoding: codec_frame_decode() unpacks one frame body (as frame_dec_next()
 * returns it) into a Ferry__Frame. All memory of the decoded frame comes from
 * one arena whose size is bounded by the body length (CODEC_BUDGET), so a
 * hostile frame cannot make the decoder allocate without bound; the frame is
 * released with codec_frame_free(). On top of protobuf-c's checks, the codec
 * rejects frames whose `body` oneof is empty and frames with any string field
 * that holds a NUL byte or invalid UTF-8: downstream code may treat every
 * decoded string as a C string of its wire length.
 *
 * Encoding: codec_frame_encode() writes the 4-byte length and the body into a
 * caller's buffer. For fan-out, a Deliver is encoded in two parts: a shared
 * body (every field but sub_ids, encoded once per message) and a small
 * per-connection prefix (codec_deliver_prefix()) that carries the frame
 * length, the Frame.deliver tag and that connection's sub_ids. prefix + body
 * is a complete frame.
 *
 * Pure module: no IO, no threads, no logging. All functions are reentrant.
 */
#ifndef FERRY_CODEC_H
#define FERRY_CODEC_H

#include "ferry.pb-c.h"
#include "frame.h"

#include <stddef.h>
#include <stdint.h>

/* The most headers one message may carry: ferry.proto, Publish.headers (and
 * FERRY_MAX_HEADERS in ferry.h, which must agree). */
#define CODEC_MAX_HEADERS 64u

/* Connect.protocol_version of this wire format (client and broker). */
#define CODEC_PROTOCOL_VERSION 1u

/* Arena budget for decoding a body of n bytes: 8x + 16 KiB. Ordinary frames
 * need about 1x (payload bytes are copied) plus their structs; 64 one-letter
 * headers, the most a Publish may carry, need about 6 KiB. Frames packed with
 * empty sub-messages (2 wire bytes each, ~56 bytes decoded) exceed the
 * budget and are refused as protocol errors. */
#define CODEC_BUDGET(n) ((size_t)(n)*8u + 16384u)

/* Largest per-connection Deliver prefix for n sub_ids. */
#define CODEC_DELIVER_PREFIX_MAX(n) (FRAME_HDR_LEN + 1 + 5 + 1 + 5 + (size_t)(n)*10)

/* The memory decoded frames live in. A thread keeps one arena and decodes
 * frame after frame into it: each decode starts by resetting the arena, so
 * the previous frame dies then. The first chunk (up to CODEC_ARENA_KEEP bytes)
 * is kept across resets, so steady traffic of small frames allocates
 * nothing. */
struct codec_arena {
    struct codec_chunk *chunks; /* newest first; NULL until the first decode */
    size_t used;                /* bytes handed out since the last reset */
    size_t budget;              /* limit for the current decode */
};

#define CODEC_ARENA_KEEP (64u * 1024u)

void codec_arena_init(struct codec_arena *a);

/* Free everything but the first CODEC_ARENA_KEEP bytes. */
void codec_arena_reset(struct codec_arena *a);

/* Free all memory. The arena may be initialised again. */
void codec_arena_deinit(struct codec_arena *a);

/* Decode a frame body into arena a. On success *out is the frame, valid until
 * the next decode or reset of the arena, and 0 is returned. Errors:
 * FERRY_EPROTOCOL (does not decode, bad string, or over the budget),
 * FERRY_EUNKNOWNMSG (decodes, but `body` is empty: no message this version
 * knows), -ENOMEM. Both are protocol errors: answer with Error and close. */
int codec_frame_decode(struct codec_arena *a, const uint8_t *body, size_t len, Ferry__Frame **out);

/* Size of the whole encoded frame, header included. */
size_t codec_frame_size(const Ferry__Frame *f);

/* Encode header + body into out[0..cap). On success *out_len is the number
 * of bytes written and 0 is returned; -ENOSPC if cap is too small,
 * FERRY_EFRAMETOOLARGE if the body exceeds FRAME_MAX_LEN_CEILING. */
int codec_frame_encode(const Ferry__Frame *f, uint8_t *out, size_t cap, size_t *out_len);

/* Encode a frame into a new malloc'd buffer (header + body). */
int codec_frame_encode_alloc(const Ferry__Frame *f, uint8_t **out, size_t *out_len);

/*
 * Deliver fan-out, part 1: the shared body, every Deliver field but sub_ids,
 * written straight from pointers and lengths (no protobuf-c structs, no
 * NUL-terminated copies). The bytes are what protobuf-c would pack for the
 * same Deliver: fields in number order, zero values and empty strings
 * left out. Every Deliver body the broker sends comes from here: fresh
 * publications, dead letters, and messages read back from the store.
 */
struct codec_hdr {
    const char *key; /* not NUL-terminated */
    size_t key_len;
    const char *value;
    size_t value_len;
};

struct codec_deliver {
    const char *topic;
    size_t topic_len;
    uint64_t sequence; /* 0: left out (ephemeral, or filled in later) */
    int64_t publish_time;
    const void *payload;
    size_t payload_len;
    const struct codec_hdr *headers;
    size_t n_headers;
    const void *key;
    size_t key_len;
    uint32_t attempt;
    uint64_t missed;
    /* Publish.reply_to, live deliveries only (never stored): not
     * NUL-terminated; reply_to_len 0: none. Written last, after every
     * field the spans describe. */
    const char *reply_to;
    size_t reply_to_len;
};

/* Where a body's fields lie, as offsets from its start: what the store
 * writer takes instead of parsing the body again. The headers are one run
 * of Header fields (read them with codec_header_next). */
struct codec_deliver_spans {
    uint32_t payload_off, payload_len;
    uint32_t hdr_off, hdr_len;
    uint32_t key_off, key_len;
};

size_t codec_deliver_body_len(const struct codec_deliver *d);
/* Write the body (exactly codec_deliver_body_len bytes) at out; fills sp
 * unless NULL. Returns the length. */
size_t codec_deliver_body_put(const struct codec_deliver *d, uint8_t *out,
                              struct codec_deliver_spans *sp);
/* Read the next Header of a run of them (*p advances; end: the run's end):
 * 1 and h filled, 0 at the end, -1 if the bytes are not Header fields. */
int codec_header_next(const uint8_t **p, const uint8_t *end, struct codec_hdr *h);

/* Deliver fan-out, part 2: write the prefix that turns a shared body of
 * body_len bytes into a complete frame for a connection whose subscriptions
 * sub_ids[0..n) matched. out must have CODEC_DELIVER_PREFIX_MAX(n) bytes.
 * Returns the prefix length. */
size_t codec_deliver_prefix(uint8_t *out, const uint64_t *sub_ids, size_t n, size_t body_len);

/* True if s[0..len) is valid UTF-8 without NUL bytes (overlong forms,
 * surrogates and code points above U+10FFFF are invalid). */
int codec_utf8_valid(const uint8_t *s, size_t len);

/* Name of a frame's body type for logs ("publish", "connect", ...), or
 * "empty". */
/* The reverse of codec_deliver_prefix: if frame (len bytes, header
 * included) is a Deliver whose sub_ids come first, as the prefix writes
 * them, fill ids (at most max_ids; *n_ids of them), point *body at the rest
 * and return 1; else 0 (another frame, or more ids than max_ids). */
int codec_deliver_split(const uint8_t *frame, size_t len, uint64_t *ids, size_t max_ids,
                        size_t *n_ids, const uint8_t **body, size_t *body_len);

const char *codec_frame_name(const Ferry__Frame *f);

#endif /* FERRY_CODEC_H */

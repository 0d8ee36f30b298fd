/*
 * codec.c - protobuf-c behind a budget, plus the checks protobuf-c skips.
 *
 * protobuf-c trusts its allocator to say no, so bounding the decoder's memory
 * is a matter of giving it an allocator with a budget: a bump arena that
 * refuses once the frame's budget is spent. Unpacking therefore costs at most
 * CODEC_BUDGET(len) bytes however the frame is built.
 *
 * protobuf-c accepts any bytes in `string` fields. After a successful unpack
 * we walk the wire bytes once more with the message descriptors and check
 * every length-delimited field that the schema declares as a string. Walking
 * the wire (rather than the decoded structs) is what lets us see embedded NUL
 * bytes: the decoded char * would simply look shorter.
 */
#include "codec.h"

#include "ferry.h"
#include "wire.h"

#include <errno.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena ------------------------------------------------------------- */

struct codec_chunk {
    struct codec_chunk *next;
    size_t cap;  /* bytes in data */
    size_t used; /* bytes handed out from data */
    alignas(8) unsigned char data[];
};

/* protobuf-c's structs hold pointers, 64-bit integers and doubles: 8-byte
 * alignment serves them all and wastes less than max_align_t's 16 on the
 * many small strings of a frame. */
#define ARENA_ALIGN 8u
#define ARENA_MIN_CHUNK 4096u

void codec_arena_init(struct codec_arena *a)
{
    memset(a, 0, sizeof(*a));
}

static void free_chunks(struct codec_chunk *c)
{
    while (c) {
        struct codec_chunk *next = c->next;
        free(c);
        c = next;
    }
}

void codec_arena_reset(struct codec_arena *a)
{
    struct codec_chunk *keep = NULL;
    struct codec_chunk *c = a->chunks;
    /* The oldest chunk is last in the list; keep it if it is small. */
    while (c) {
        struct codec_chunk *next = c->next;
        if (next == NULL && c->cap <= CODEC_ARENA_KEEP) {
            keep = c;
        } else {
            free(c);
        }
        c = next;
    }
    if (keep) {
        keep->next = NULL;
        keep->used = 0;
    }
    a->chunks = keep;
    a->used = 0;
}

void codec_arena_deinit(struct codec_arena *a)
{
    free_chunks(a->chunks);
    memset(a, 0, sizeof(*a));
}

static void *arena_alloc(void *data, size_t size)
{
    struct codec_arena *a = data;
    size = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (size == 0) {
        size = ARENA_ALIGN;
    }
    if (size > a->budget - a->used) {
        return NULL;
    }
    struct codec_chunk *c = a->chunks;
    if (c == NULL || c->cap - c->used < size) {
        size_t cap = c ? c->cap * 2 : ARENA_MIN_CHUNK;
        if (cap < size) {
            cap = size;
        }
        if (cap > a->budget - a->used && size <= a->budget - a->used) {
            cap = a->budget - a->used;
        }
        struct codec_chunk *n = malloc(sizeof(*n) + cap);
        if (n == NULL) {
            return NULL;
        }
        n->next = c;
        n->cap = cap;
        n->used = 0;
        a->chunks = c = n;
    }
    void *p = c->data + c->used;
    c->used += size;
    a->used += size;
    return p;
}

static void arena_free(void *data, void *p)
{
    (void)data; /* everything goes at the next reset */
    (void)p;
}

/* ---- strings ----------------------------------------------------------- */

int codec_utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c == 0) {
                return 0;
            }
            i++;
            continue;
        }
        size_t n;
        uint32_t cp;
        uint32_t min;
        if ((c & 0xE0) == 0xC0) {
            n = 1;
            cp = c & 0x1F;
            min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2;
            cp = c & 0x0F;
            min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3;
            cp = c & 0x07;
            min = 0x10000;
        } else {
            return 0;
        }
        if (len - i <= n) {
            return 0;
        }
        for (size_t k = 1; k <= n; k++) {
            uint8_t cc = s[i + k];
            if ((cc & 0xC0) != 0x80) {
                return 0;
            }
            cp = (cp << 6) | (cc & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            return 0;
        }
        i += n + 1;
    }
    return 1;
}

/* ---- wire walk --------------------------------------------------------- */

/* Deeper than any message of ferry.proto nests; a bound in case it changes. */
#define WALK_MAX_DEPTH 8

/* Check every string field of an encoded message, recursing into known
 * sub-messages. Returns 0 if all strings are clean. */
static int walk_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *p, size_t len,
                        int depth)
{
    if (depth > WALK_MAX_DEPTH) {
        return -1;
    }
    const uint8_t *end = p + len;
    while (p < end) {
        uint64_t key;
        if (wire_varint_get(&p, end, &key) < 0) {
            return -1;
        }
        /* Field number 0 is invalid protobuf, yet protobuf-c 1.4.1 accepts
         * it when the key is a non-minimal varint (0x81 0x00) and keeps it
         * as an unknown field, which it then re-encodes in a form it refuses
         * to decode. Found by tests/fuzz/fuzz_frame.c. */
        if ((key >> 3) == 0 || (key >> 3) > 0x1FFFFFFFu) {
            return -1;
        }
        uint64_t v;
        switch (key & 7) {
        case 0: /* varint */
            if (wire_varint_get(&p, end, &v) < 0) {
                return -1;
            }
            break;
        case 1: /* 64-bit */
            if (end - p < 8) {
                return -1;
            }
            p += 8;
            break;
        case 5: /* 32-bit */
            if (end - p < 4) {
                return -1;
            }
            p += 4;
            break;
        case 2: { /* length-delimited */
            if (wire_varint_get(&p, end, &v) < 0 || v > (uint64_t)(end - p)) {
                return -1;
            }
            uint64_t tag = key >> 3;
            const ProtobufCFieldDescriptor *fd =
                tag <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(desc, (unsigned)tag)
                                  : NULL;
            if (fd && fd->type == PROTOBUF_C_TYPE_STRING) {
                if (!codec_utf8_valid(p, (size_t)v)) {
                    return -1;
                }
            } else if (fd && fd->type == PROTOBUF_C_TYPE_MESSAGE) {
                if (walk_strings(fd->descriptor, p, (size_t)v, depth + 1) < 0) {
                    return -1;
                }
            }
            p += v;
            break;
        }
        default: /* groups (3, 4) are not part of proto3; 6, 7 do not exist */
            return -1;
        }
    }
    return 0;
}

/* ---- frames ------------------------------------------------------------ */

int codec_frame_decode(struct codec_arena *a, const uint8_t *body, size_t len, Ferry__Frame **out)
{
    codec_arena_reset(a);
    a->budget = CODEC_BUDGET(len);
    ProtobufCAllocator alloc = {
        .alloc = arena_alloc,
        .free = arena_free,
        .allocator_data = a,
    };
    Ferry__Frame *f = ferry__frame__unpack(&alloc, len, body);
    if (f == NULL) {
        /* protobuf-c does not tell a malformed frame from a refused
         * allocation. Both are the peer's doing: only the budget refuses
         * before malloc would. */
        return FERRY_EPROTOCOL;
    }
    if (walk_strings(&ferry__frame__descriptor, body, len, 0) < 0) {
        return FERRY_EPROTOCOL;
    }
    if (f->body_case == FERRY__FRAME__BODY__NOT_SET) {
        /* Well-formed, but no message this version knows: still a protocol
         * error (DESIGN.md), reported as such so the peer learns why. */
        return FERRY_EUNKNOWNMSG;
    }
    *out = f;
    return 0;
}

size_t codec_frame_size(const Ferry__Frame *f)
{
    return FRAME_HDR_LEN + ferry__frame__get_packed_size(f);
}

int codec_frame_encode(const Ferry__Frame *f, uint8_t *out, size_t cap, size_t *out_len)
{
    size_t body = ferry__frame__get_packed_size(f);
    if (body > FRAME_MAX_LEN_CEILING) {
        return FERRY_EFRAMETOOLARGE;
    }
    if (cap < body + FRAME_HDR_LEN) {
        return -ENOSPC;
    }
    frame_hdr_put(out, (uint32_t)body);
    ferry__frame__pack(f, out + FRAME_HDR_LEN);
    *out_len = body + FRAME_HDR_LEN;
    return 0;
}

int codec_frame_encode_alloc(const Ferry__Frame *f, uint8_t **out, size_t *out_len)
{
    size_t n = codec_frame_size(f);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL) {
        return -ENOMEM;
    }
    int rc = codec_frame_encode(f, buf, n, out_len);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    return 0;
}

/* ---- Deliver fan-out --------------------------------------------------- */

/* Deliver field keys: (number << 3) | wire type (0 varint, 2 bytes). */
#define DK_TOPIC ((2u << 3) | 2u)
#define DK_SEQUENCE ((3u << 3) | 0u)
#define DK_TIME ((4u << 3) | 0u)
#define DK_PAYLOAD ((5u << 3) | 2u)
#define DK_HEADER ((6u << 3) | 2u)
#define DK_KEY ((7u << 3) | 2u)
#define DK_ATTEMPT ((8u << 3) | 0u)
#define DK_MISSED ((9u << 3) | 0u)
#define DK_REPLY_TO ((10u << 3) | 2u)
#define HK_KEY ((1u << 3) | 2u)
#define HK_VALUE ((2u << 3) | 2u)

/* A length-delimited field of n bytes, key included; 0 when n is 0 (empty
 * strings and bytes are left out, as protobuf-c does for proto3). */
static size_t bytes_field_len(size_t n)
{
    return n ? 1 + wire_varint_len(n) + n : 0;
}

static size_t header_len(const struct codec_hdr *h)
{
    return bytes_field_len(h->key_len) + bytes_field_len(h->value_len);
}

size_t codec_deliver_body_len(const struct codec_deliver *d)
{
    size_t n = bytes_field_len(d->topic_len);
    n += d->sequence ? 1 + wire_varint_len(d->sequence) : 0;
    n += d->publish_time ? 1 + wire_varint_len((uint64_t)d->publish_time) : 0;
    n += bytes_field_len(d->payload_len);
    for (size_t i = 0; i < d->n_headers; i++) {
        size_t h = header_len(&d->headers[i]);
        n += 1 + wire_varint_len(h) + h; /* an empty Header is still sent */
    }
    n += bytes_field_len(d->key_len);
    n += d->attempt ? 1 + wire_varint_len(d->attempt) : 0;
    n += d->missed ? 1 + wire_varint_len(d->missed) : 0;
    n += bytes_field_len(d->reply_to_len);
    return n;
}

static uint8_t *put_bytes(uint8_t *o, uint8_t key, const void *p, size_t n)
{
    if (n) {
        *o++ = key;
        o = wire_varint_put(o, n);
        memcpy(o, p, n);
        o += n;
    }
    return o;
}

static uint8_t *put_varint_field(uint8_t *o, uint8_t key, uint64_t v)
{
    if (v) {
        *o++ = key;
        o = wire_varint_put(o, v);
    }
    return o;
}

size_t codec_deliver_body_put(const struct codec_deliver *d, uint8_t *out,
                              struct codec_deliver_spans *sp)
{
    uint8_t *o = put_bytes(out, DK_TOPIC, d->topic, d->topic_len);
    o = put_varint_field(o, DK_SEQUENCE, d->sequence);
    o = put_varint_field(o, DK_TIME, (uint64_t)d->publish_time);
    o = put_bytes(o, DK_PAYLOAD, d->payload, d->payload_len);
    uint8_t *payload_end = o;
    for (size_t i = 0; i < d->n_headers; i++) {
        const struct codec_hdr *h = &d->headers[i];
        *o++ = DK_HEADER;
        o = wire_varint_put(o, header_len(h));
        o = put_bytes(o, HK_KEY, h->key, h->key_len);
        o = put_bytes(o, HK_VALUE, h->value, h->value_len);
    }
    uint8_t *hdr_end = o;
    o = put_bytes(o, DK_KEY, d->key, d->key_len);
    uint8_t *key_end = o;
    o = put_varint_field(o, DK_ATTEMPT, d->attempt);
    o = put_varint_field(o, DK_MISSED, d->missed);
    o = put_bytes(o, DK_REPLY_TO, d->reply_to, d->reply_to_len);
    if (sp != NULL) {
        sp->payload_len = (uint32_t)d->payload_len;
        sp->payload_off = (uint32_t)(payload_end - out) - sp->payload_len;
        sp->hdr_off = (uint32_t)(payload_end - out);
        sp->hdr_len = (uint32_t)(hdr_end - payload_end);
        sp->key_len = (uint32_t)d->key_len;
        sp->key_off = (uint32_t)(key_end - out) - sp->key_len;
    }
    return (size_t)(o - out);
}

int codec_header_next(const uint8_t **p, const uint8_t *end, struct codec_hdr *h)
{
    const uint8_t *q = *p;
    uint64_t k, n;
    if (q == end) {
        return 0;
    }
    if (wire_varint_get(&q, end, &k) < 0 || k != DK_HEADER || wire_varint_get(&q, end, &n) < 0 ||
        n > (uint64_t)(end - q)) {
        return -1;
    }
    const uint8_t *hend = q + n;
    h->key = h->value = "";
    h->key_len = h->value_len = 0;
    while (q < hend) {
        uint64_t hk, hl;
        if (wire_varint_get(&q, hend, &hk) < 0 || (hk & 7) != 2 ||
            wire_varint_get(&q, hend, &hl) < 0 || hl > (uint64_t)(hend - q)) {
            return -1;
        }
        if (hk == HK_KEY) {
            h->key = (const char *)q;
            h->key_len = (size_t)hl;
        } else if (hk == HK_VALUE) {
            h->value = (const char *)q;
            h->value_len = (size_t)hl;
        }
        q += hl;
    }
    *p = hend;
    return 1;
}

/* Field keys: (field number << 3) | wire type 2 (length-delimited). */
#define KEY_FRAME_DELIVER ((7u << 3) | 2u)
#define KEY_DELIVER_SUB_IDS ((1u << 3) | 2u)

size_t codec_deliver_prefix(uint8_t *out, const uint64_t *sub_ids, size_t n, size_t body_len)
{
    size_t ids_len = 0;
    for (size_t i = 0; i < n; i++) {
        ids_len += wire_varint_len(sub_ids[i]);
    }
    size_t ids_field = n ? 1 + wire_varint_len(ids_len) + ids_len : 0;
    size_t deliver_len = ids_field + body_len;
    size_t frame_len = 1 + wire_varint_len(deliver_len) + deliver_len;

    size_t k = 0;
    frame_hdr_put(out, (uint32_t)frame_len);
    k += FRAME_HDR_LEN;
    out[k++] = KEY_FRAME_DELIVER;
    k = (size_t)(wire_varint_put(out + k, deliver_len) - out);
    if (n) {
        out[k++] = KEY_DELIVER_SUB_IDS;
        k = (size_t)(wire_varint_put(out + k, ids_len) - out);
        for (size_t i = 0; i < n; i++) {
            k = (size_t)(wire_varint_put(out + k, sub_ids[i]) - out);
        }
    }
    return k;
}

int codec_deliver_split(const uint8_t *frame, size_t len, uint64_t *ids, size_t max_ids,
                        size_t *n_ids, const uint8_t **body, size_t *body_len)
{
    const uint8_t *p = frame + FRAME_HDR_LEN, *end = frame + len;
    uint64_t dl, il;
    if (len < FRAME_HDR_LEN + 2 || *p++ != KEY_FRAME_DELIVER || wire_varint_get(&p, end, &dl) < 0 ||
        dl != (uint64_t)(end - p)) {
        return 0;
    }
    *n_ids = 0;
    if (p < end && *p == KEY_DELIVER_SUB_IDS) {
        p++;
        if (wire_varint_get(&p, end, &il) < 0 || il > (uint64_t)(end - p)) {
            return 0;
        }
        const uint8_t *iend = p + il;
        while (p < iend) {
            if (*n_ids == max_ids || wire_varint_get(&p, iend, &ids[*n_ids]) < 0) {
                return 0;
            }
            (*n_ids)++;
        }
    }
    *body = p;
    *body_len = (size_t)(end - p);
    return 1;
}

const char *codec_frame_name(const Ferry__Frame *f)
{
    const ProtobufCFieldDescriptor *fd =
        protobuf_c_message_descriptor_get_field(&ferry__frame__descriptor, f->body_case);
    return fd ? fd->name : "empty";
}

/*
 * wire.h - protobuf base-128 varints, the one copy (prefix wire_).
 *
 * The hand-written wire paths (the Deliver prefix in codec.c, the Publish
 * fast path and the Deliver body in the broker's IO threads, the writer's
 * reading of that body) all use these. Pure: no IO, no allocation.
 */
#ifndef FERRY_WIRE_H
#define FERRY_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define WIRE_VARINT_MAX 10 /* bytes of the longest 64-bit varint */

/* Bytes v takes as a varint (1..10). */
static inline size_t wire_varint_len(uint64_t v)
{
    /* 7 bits a byte: ceil(bits / 7) as (bits * 9 + 64) / 64, bits >= 1 */
    unsigned bits = 64 - (unsigned)__builtin_clzll(v | 1);
    return (bits * 9 + 64) / 64;
}

/* Write v at p (room for wire_varint_len(v) bytes); returns the end. */
static inline uint8_t *wire_varint_put(uint8_t *p, uint64_t v)
{
    if (v < 0x80) { /* the usual case: lengths, flags, small ids */
        *p = (uint8_t)v;
        return p + 1;
    }
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* Read a varint at *pp (not past end): 0 and *pp moved past it, or -1 if
 * it is cut short, longer than 10 bytes, or above 64 bits (*pp and *v
 * untouched). */
static inline int wire_varint_get(const uint8_t **pp, const uint8_t *end, uint64_t *v)
{
    const uint8_t *p = *pp;
    if (p != end && *p < 0x80) { /* one byte: the usual case */
        *v = *p;
        *pp = p + 1;
        return 0;
    }
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (p == end) {
            return -1;
        }
        uint8_t b = *p++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            if (shift == 63 && b > 1) {
                return -1; /* the 10th byte may only carry bit 63 */
            }
            *pp = p;
            *v = x;
            return 0;
        }
    }
    return -1;
}

#endif

/*
 * store_bytes.h - fixed-width integers in and out of byte buffers, for the
 * store's on-disk records (store*.c): little-endian fields,
 * big-endian keys (so that LMDB's byte order is numeric order).
 */
#ifndef FERRY_STORE_BYTES_H
#define FERRY_STORE_BYTES_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

static inline void put_le16(unsigned char *p, uint16_t v)
{
    v = htole16(v);
    memcpy(p, &v, 2);
}

static inline void put_le32(unsigned char *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, 4);
}

static inline void put_le64(unsigned char *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, 8);
}

static inline void put_be32(unsigned char *p, uint32_t v)
{
    v = htobe32(v);
    memcpy(p, &v, 4);
}

static inline void put_be64(unsigned char *p, uint64_t v)
{
    v = htobe64(v);
    memcpy(p, &v, 8);
}

static inline uint16_t get_le16(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return le16toh(v);
}

static inline uint32_t get_le32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return le32toh(v);
}

static inline uint64_t get_le64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
}

static inline uint32_t get_be32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return be32toh(v);
}

static inline uint64_t get_be64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return be64toh(v);
}

#endif

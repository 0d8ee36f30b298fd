/*
 * store_codec.c - the bytes of the store's LMDB records: message keys and
 * values, topic and meta records (the key and time helpers are inline in
 * store_int.h). Pure: no IO, no LMDB call, no lock; any thread.
 *
 * Records. Keys are big-endian so that LMDB's byte order is numeric order;
 * values are little-endian fixed-width fields.
 *
 *   msgs   key   (topic id u32 BE, seq u64 BE)                      12 bytes
 *          value 0  crc32c u32   over key[0,12) ++ value[4, len)
 *                4  version u8 (1)    5 flags u8    6 n_headers u16
 *                8  publish_time i64
 *                16 headers_len u32   20 key_len u32   24 payload_len u32
 *                28 headers: n_headers x { klen u32, vlen u32, k, v }
 *                   then key bytes, then payload bytes, then with flag
 *                   0x1 (VAL_F_EXPIRES) the expiry time i64; no other
 *                   flag is defined (a reader refuses one it does not know)
 *          Seeding the CRC with the record's key also catches a value that
 *          ended up under the wrong key.
 *   tidx   key   (topic id u32 BE, bucket u64 BE): bucket = floor(clamped
 *                publish time / 1 ms), biased by 2^63 so negative times sort
 *                first; value: the first seq u64 BE of that bucket. Sparse
 *                (at most one entry per topic per ms, not one per message):
 *                a seek finds the bucket, then scans that bucket's messages.
 *                Clamped time: the running maximum of the topic's publish
 *                times, so the index stays ordered if the clock steps back.
 *   topics key   topic id u32 BE
 *          value 0 crc32c u32 over key ++ value[4, len)  4 version u16
 *                6 name_len u16  8 first_seq  16 last_seq  24 n_msgs
 *                32 n_bytes  40 last_time i64  48 name
 *   names  key   name bytes; value topic id u32 BE
 *   meta   "format" -> "FERRYSTO" u32 version u32 flags i64 created u32 crc
 */
#include "crc32c.h"
#include "store_int.h"

#include <string.h>

#define VAL_VERSION 1
#define TOPIC_REC_VERSION 1

/* ---- value codec ------------------------------------------------------- */

/* Decode and check a stored message. Returns 0, -1 on a CRC mismatch, -2 on
 * a layout error. m is filled only on success. */
int store__msg_decode(const MDB_val *key, const MDB_val *val, struct store_msg *m)
{
    const unsigned char *v = val->mv_data;
    if (key->mv_size != MSG_KEY_LEN || val->mv_size < VAL_HDR_LEN) {
        return -2;
    }
    uint32_t crc = crc32c(0, key->mv_data, MSG_KEY_LEN);
    crc = crc32c(crc, v + 4, val->mv_size - 4);
    if (crc != get_le32(v)) {
        return -1;
    }
    if (v[4] != VAL_VERSION || (v[5] & ~VAL_F_EXPIRES) != 0) {
        return -2;
    }
    size_t n_headers = get_le16(v + 6);
    uint64_t hlen = get_le32(v + 16);
    uint64_t klen = get_le32(v + 20);
    uint64_t plen = get_le32(v + 24);
    uint64_t xlen = (v[5] & VAL_F_EXPIRES) ? 8 : 0;
    if (VAL_HDR_LEN + hlen + klen + plen + xlen != val->mv_size) {
        return -2;
    }
    /* Walk the header block: it must hold exactly n_headers entries. */
    const unsigned char *h = v + VAL_HDR_LEN;
    uint64_t pos = 0;
    for (size_t i = 0; i < n_headers; i++) {
        if (hlen - pos < 8) {
            return -2;
        }
        uint64_t kl = get_le32(h + pos);
        uint64_t vl = get_le32(h + pos + 4);
        if (hlen - pos - 8 < kl + vl) {
            return -2;
        }
        pos += 8 + kl + vl;
    }
    if (pos != hlen) {
        return -2;
    }
    const unsigned char *k = key->mv_data;
    m->topic_id = get_be32(k);
    m->seq = get_be64(k + 4);
    m->publish_time = (int64_t)get_le64(v + 8);
    m->n_headers = n_headers;
    m->headers_raw = h;
    m->headers_raw_len = (size_t)hlen;
    m->key = klen ? h + hlen : NULL;
    m->key_len = (size_t)klen;
    m->payload = v + VAL_HDR_LEN + hlen + klen;
    m->payload_len = (size_t)plen;
    m->expire_time = xlen ? (int64_t)get_le64(v + val->mv_size - 8) : 0;
    return 0;
}

int store_msg_header_next(const struct store_msg *m, size_t *pos, struct store_kv *kv)
{
    const unsigned char *h = m->headers_raw;
    if (*pos + 8 > m->headers_raw_len) {
        return 0;
    }
    size_t kl = get_le32(h + *pos);
    size_t vl = get_le32(h + *pos + 4);
    kv->key = (const char *)h + *pos + 8;
    kv->key_len = kl;
    kv->value = (const char *)h + *pos + 8 + kl;
    kv->value_len = vl;
    *pos += 8 + kl + vl;
    return 1;
}

void store__topic_rec_encode(unsigned char *out, uint32_t id, const struct topic_state *st,
                             const char *name, size_t name_len)
{
    unsigned char key[4];
    put_be32(key, id);
    put_le16(out + 4, TOPIC_REC_VERSION);
    put_le16(out + 6, (uint16_t)name_len);
    put_le64(out + 8, st->first_seq);
    put_le64(out + 16, st->last_seq);
    put_le64(out + 24, st->n_msgs);
    put_le64(out + 32, st->n_bytes);
    put_le64(out + 40, (uint64_t)st->last_time);
    memcpy(out + TOPIC_REC_HDR, name, name_len);
    uint32_t crc = crc32c(crc32c(0, key, 4), out + 4, TOPIC_REC_HDR - 4 + name_len);
    put_le32(out, crc);
}

/* Returns 0 and fills st/name (name points into val), -1 CRC, -2 layout. */
int store__topic_rec_decode(const MDB_val *key, const MDB_val *val, uint32_t *id,
                            struct topic_state *st, const char **name, size_t *name_len)
{
    const unsigned char *v = val->mv_data;
    if (key->mv_size != 4 || val->mv_size < TOPIC_REC_HDR) {
        return -2;
    }
    uint32_t crc = crc32c(crc32c(0, key->mv_data, 4), v + 4, val->mv_size - 4);
    if (crc != get_le32(v)) {
        return -1;
    }
    size_t nl = get_le16(v + 6);
    if (get_le16(v + 4) != TOPIC_REC_VERSION || TOPIC_REC_HDR + nl != val->mv_size || nl == 0 ||
        nl > STORE_TOPIC_MAX) {
        return -2;
    }
    *id = get_be32(key->mv_data);
    st->first_seq = get_le64(v + 8);
    st->last_seq = get_le64(v + 16);
    st->n_msgs = get_le64(v + 24);
    st->n_bytes = get_le64(v + 32);
    st->last_time = (int64_t)get_le64(v + 40);
    *name = (const char *)v + TOPIC_REC_HDR;
    *name_len = nl;
    return 0;
}

void store__meta_encode(unsigned char out[STORE_META_LEN], int64_t created)
{
    memcpy(out, STORE_MAGIC, STORE_MAGIC_LEN);
    put_le32(out + 8, STORE_FORMAT_VERSION);
    put_le32(out + 12, 0);
    put_le64(out + 16, (uint64_t)created);
    put_le32(out + 24, crc32c(0, out, 24));
}

int store__meta_check(const MDB_val *v)
{
    const unsigned char *m = v->mv_data;
    if (v->mv_size != STORE_META_LEN || memcmp(m, STORE_MAGIC, STORE_MAGIC_LEN) != 0) {
        return -1;
    }
    if (crc32c(0, m, 24) != get_le32(m + 24)) {
        return -2;
    }
    return get_le32(m + 8) == STORE_FORMAT_VERSION ? 0 : -3;
}

/* Encode m after r in the arena (r's fields already set). */
void store__value_encode(struct rec_hdr *r, const struct store_msg_in *m, size_t hlen)
{
    unsigned char *v = (unsigned char *)(r + 1);
    v[4] = VAL_VERSION;
    v[5] = m->expire_time != 0 ? VAL_F_EXPIRES : 0;
    put_le16(v + 6, (uint16_t)m->n_headers);
    put_le64(v + 8, (uint64_t)m->publish_time);
    put_le32(v + 16, (uint32_t)hlen);
    put_le32(v + 20, (uint32_t)m->key_len);
    put_le32(v + 24, (uint32_t)m->payload_len);
    unsigned char *p = v + VAL_HDR_LEN;
    for (size_t i = 0; i < m->n_headers; i++) {
        const struct store_kv *h = &m->headers[i];
        put_le32(p, (uint32_t)h->key_len);
        put_le32(p + 4, (uint32_t)h->value_len);
        if (h->key_len) {
            memcpy(p + 8, h->key, h->key_len);
        }
        if (h->value_len) {
            memcpy(p + 8 + h->key_len, h->value, h->value_len);
        }
        p += 8 + h->key_len + h->value_len;
    }
    if (m->key_len) {
        memcpy(p, m->key, m->key_len);
        p += m->key_len;
    }
    if (m->payload_len) {
        memcpy(p, m->payload, m->payload_len);
        p += m->payload_len;
    }
    if (m->expire_time != 0) {
        put_le64(p, (uint64_t)m->expire_time);
    }
    unsigned char kb[MSG_KEY_LEN];
    store__msg_key_make(kb, r->topic_id, r->seq);
    put_le32(v, crc32c(crc32c(0, kb, MSG_KEY_LEN), v + 4, r->val_len - 4));
}

/* A message's index time: its publish time, never below the topic's last
 * (so index times stay non-decreasing when the clock steps back). */
int64_t store__clamped_time(const struct topic_state *st, int64_t publish_time)
{
    int64_t when = publish_time == TIME_NONE ? TIME_NONE + 1 : publish_time;
    if (st->last_time != TIME_NONE && when < st->last_time) {
        when = st->last_time;
    }
    return when;
}

/*
 * store_lastval.c - last-value topics: per message key, the newest message
 * of the key, so that a subscriber can start with the current value of
 * every key (Subscribe START_LAST_PER_KEY) instead of the whole history.
 *
 * The "lastval" database holds two kinds of entries per topic, told apart
 * by a tag byte after the topic id:
 *   (topic id u32 BE, 'k', key bytes)   -> seq u64 BE   the key's newest
 *   (topic id u32 BE, 's', seq u64 BE)  -> key bytes    the same, by seq
 * The first answers "which message is this key's newest" when a message
 * arrives; the second lists a topic's current values in sequence order (a
 * catch-up reads them in bounded chunks from a position, like store_read)
 * and gives retention its floor (the lowest seq still some key's newest)
 * with one seek.
 *
 * Entries are written by the message's own arena record (REC_LASTVAL: the
 * key is in the value, nothing more is needed), so they are in the same
 * LMDB commit, write-ahead log record and replay as the message. A message
 * with a key and an empty payload is a tombstone: it is stored (sequences
 * stay gapless) but removes its key from the index. A message without a
 * key is not indexed. Keys are at most STORE_LASTVAL_KEY_MAX bytes (an
 * LMDB key is at most 511 bytes; 5 go to the topic id and the tag).
 */
#include "store_int.h"

#include <errno.h>
#include <string.h>

#define TAG_KEY 'k'
#define TAG_SEQ 's'
#define PREFIX_LEN 5                 /* topic id, tag */
#define SEQ_KEY_LEN (PREFIX_LEN + 8) /* topic id, tag, seq */

_Static_assert(PREFIX_LEN + STORE_LASTVAL_KEY_MAX == 511, "LMDB's default max key size");

static void seq_key_make(unsigned char k[SEQ_KEY_LEN], uint32_t topic_id, uint64_t seq)
{
    put_be32(k, topic_id);
    k[4] = TAG_SEQ;
    put_be64(k + PREFIX_LEN, seq);
}

int store__lastval_apply(struct store_batch *b, const struct rec_hdr *r)
{
    struct store *s = b->s;
    const unsigned char *v = (const unsigned char *)(r + 1);
    uint64_t hlen = get_le32(v + 16);
    uint64_t klen = get_le32(v + 20);
    uint64_t plen = get_le32(v + 24);
    uint64_t xlen = (v[5] & VAL_F_EXPIRES) ? 8 : 0;
    if (klen == 0 || klen > STORE_LASTVAL_KEY_MAX ||
        VAL_HDR_LEN + hlen + klen + plen + xlen != r->val_len) {
        return MDB_CORRUPTED; /* store_batch_append() never writes such a record */
    }
    unsigned char kb[PREFIX_LEN + STORE_LASTVAL_KEY_MAX];
    put_be32(kb, r->topic_id);
    kb[4] = TAG_KEY;
    memcpy(kb + PREFIX_LEN, v + VAL_HDR_LEN + hlen, (size_t)klen);
    MDB_val k = {PREFIX_LEN + (size_t)klen, kb}, old;
    unsigned char sb[SEQ_KEY_LEN];
    int rc = mdb_get(b->txn, s->dbi_lastval, &k, &old);
    if (rc == 0) {
        if (old.mv_size != 8) {
            return MDB_CORRUPTED;
        }
        uint64_t old_seq = get_be64(old.mv_data);
        if (old_seq >= r->seq) {
            return 0; /* a newer one is indexed already; replays never get here */
        }
        seq_key_make(sb, r->topic_id, old_seq);
        MDB_val sk = {SEQ_KEY_LEN, sb};
        rc = mdb_del(b->txn, s->dbi_lastval, &sk, NULL);
        if (rc != 0 && rc != MDB_NOTFOUND) {
            return rc;
        }
        if (plen == 0) {
            return mdb_del(b->txn, s->dbi_lastval, &k, NULL); /* a tombstone */
        }
    } else if (rc != MDB_NOTFOUND) {
        return rc;
    } else if (plen == 0) {
        return 0; /* a tombstone of a key not held */
    }
    unsigned char vb[8];
    put_be64(vb, r->seq);
    MDB_val nv = {8, vb};
    rc = mdb_put(b->txn, s->dbi_lastval, &k, &nv, 0);
    if (rc != 0) {
        return rc;
    }
    seq_key_make(sb, r->topic_id, r->seq);
    MDB_val sk = {SEQ_KEY_LEN, sb};
    MDB_val kv = {(size_t)klen, kb + PREFIX_LEN};
    return mdb_put(b->txn, s->dbi_lastval, &sk, &kv, 0);
}

int store__lastval_floor(struct store *s, MDB_txn *txn, uint32_t topic_id, uint64_t *seq)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, s->dbi_lastval, &cur);
    if (rc != 0) {
        return rc;
    }
    unsigned char kb[SEQ_KEY_LEN];
    seq_key_make(kb, topic_id, 0);
    MDB_val k = {SEQ_KEY_LEN, kb}, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    *seq = UINT64_MAX;
    if (rc == 0 && k.mv_size == SEQ_KEY_LEN && memcmp(k.mv_data, kb, PREFIX_LEN) == 0) {
        *seq = get_be64((const unsigned char *)k.mv_data + PREFIX_LEN);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int store__lastval_drop(struct store *s, MDB_txn *txn, uint32_t topic_id, size_t max, bool *is_done)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, s->dbi_lastval, &cur);
    if (rc != 0) {
        return rc;
    }
    unsigned char kb[4], cur_key[PREFIX_LEN + STORE_LASTVAL_KEY_MAX];
    put_be32(kb, topic_id);
    MDB_val k = {4, kb}, v;
    *is_done = false;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    for (size_t n = 0; rc == 0; n++) {
        if (k.mv_size < 4 || k.mv_size > sizeof(cur_key) || memcmp(k.mv_data, kb, 4) != 0) {
            rc = MDB_NOTFOUND; /* past the topic's entries */
            break;
        }
        if (n == max) {
            break;
        }
        size_t len = k.mv_size;
        memcpy(cur_key, k.mv_data, len); /* k points into the page */
        rc = mdb_cursor_del(cur, 0);
        if (rc == 0) {
            k = (MDB_val){len, cur_key}; /* re-seek (store_purge.c says why) */
            rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        }
    }
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND) {
        *is_done = true;
        return 0;
    }
    return rc;
}

int store_lastval_read(struct store *s, uint32_t topic_id, uint64_t from_seq, uint64_t upto_seq,
                       size_t max_msgs, size_t max_bytes, store_read_cb cb, void *ctx,
                       struct store_read_result *res)
{
    if (max_msgs == 0 || cb == NULL || res == NULL) {
        return FERRY_EINVAL;
    }
    MDB_txn *txn;
    int ret = store__rtxn_begin(s, &txn);
    if (ret != 0) {
        return ret;
    }
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, s->dbi_lastval, &cur);
    if (rc != 0) {
        ret = store__xlate_read(rc);
        goto out_end;
    }
    struct store_read_result r = {0};
    uint64_t next = from_seq ? from_seq : 1;
    unsigned char kb[SEQ_KEY_LEN], mk[MSG_KEY_LEN];
    seq_key_make(kb, topic_id, next);
    MDB_val k = {SEQ_KEY_LEN, kb}, v;
    size_t n_seen = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint64_t seq = 0;
        if (rc == 0 && k.mv_size == SEQ_KEY_LEN && memcmp(k.mv_data, kb, PREFIX_LEN) == 0) {
            seq = get_be64((const unsigned char *)k.mv_data + PREFIX_LEN);
        } else if (rc != 0 && rc != MDB_NOTFOUND) {
            ret = store__xlate_read(rc);
            goto out_close;
        }
        if (seq == 0 || seq > upto_seq) {
            r.is_end = true;
            if (upto_seq != UINT64_MAX && next <= upto_seq) {
                next = upto_seq + 1;
            }
            break;
        }
        store__msg_key_make(mk, topic_id, seq);
        MDB_val msg_k = {MSG_KEY_LEN, mk}, msg_v;
        rc = mdb_get(txn, s->dbi_msgs, &msg_k, &msg_v);
        struct store_msg m;
        if (rc == MDB_NOTFOUND) {
            next = seq + 1; /* cannot happen: the index holds trims back, purges clear it */
        } else if (rc != 0) {
            ret = store__xlate_read(rc);
            goto out_close;
        } else if (store__msg_decode(&msg_k, &msg_v, &m) != 0) {
            r.n_corrupt++;
            r.corrupt_seq = seq;
            atomic_fetch_add(&s->n_crc_errors, 1);
            next = seq + 1;
        } else {
            if (store__read_one(&r, &m, max_bytes, cb, ctx, &next)) {
                break;
            }
        }
        if (++n_seen >= max_msgs || r.n_bytes >= max_bytes) {
            break;
        }
    }
    r.next_seq = next;
    r.last_seq = upto_seq;
    *res = r;
out_close:
    mdb_cursor_close(cur);
out_end:
    store__rtxn_end(s, txn);
    return ret;
}

/*
 * store_sched.c - scheduled messages: stored at once, appended to their
 * topic when due (store.h, "Scheduled messages").
 *
 * The "sched" database maps (due time u64 BE, biased; schedule id u64 BE)
 * -> (topic id u32 LE, then the message value exactly as "msgs" stores it,
 * its CRC seeded with (topic id, schedule id)). Key order is due order, so
 * the next one due is the first key. An entry is put by its arena record
 * (REC_SCHED) and deleted by the append that moves the message into its
 * topic (REC_UNSCHED: a trailer names the entry): both are in the batch's
 * LMDB commit, write-ahead log record and replay, so a crash at any instant
 * leaves the message either scheduled or in its topic, never both, never
 * neither.
 */
#include "store_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define KEY_LEN 16 /* biased due time, schedule id */
#define TOPIC_ID_LEN 4

static void key_make(unsigned char k[KEY_LEN], uint64_t due_biased, uint64_t id)
{
    put_be64(k, due_biased);
    put_be64(k + 8, id);
}

int store__sched_apply(struct store_batch *b, const struct rec_hdr *r)
{
    unsigned char kb[KEY_LEN];
    key_make(kb, r->tkey, r->seq);
    MDB_val k = {KEY_LEN, kb};
    MDB_val v = {TOPIC_ID_LEN + (size_t)r->val_len, NULL};
    /* A replay may put it again: overwrite. */
    int rc = mdb_put(b->txn, b->s->dbi_sched, &k, &v, MDB_RESERVE);
    if (rc == 0) {
        put_le32(v.mv_data, r->topic_id);
        memcpy((unsigned char *)v.mv_data + TOPIC_ID_LEN, r + 1, r->val_len);
    }
    return rc;
}

void store__unsched_trailer_put(struct rec_hdr *r, int64_t due, uint64_t id)
{
    unsigned char *p = (unsigned char *)r + store__rec_size(r->val_len) +
                       ((r->flags & REC_DEDUPE) ? DEDUPE_TRAILER : 0);
    put_le64(p, store__time_bias(due));
    put_le64(p + 8, id);
}

int store__unsched_apply(struct store_batch *b, const struct rec_hdr *r)
{
    const unsigned char *p = (const unsigned char *)r + store__rec_size(r->val_len) +
                             ((r->flags & REC_DEDUPE) ? DEDUPE_TRAILER : 0);
    unsigned char kb[KEY_LEN];
    key_make(kb, get_le64(p), get_le64(p + 8));
    MDB_val k = {KEY_LEN, kb};
    int rc = mdb_del(b->txn, b->s->dbi_sched, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc; /* a replay after the entry's own */
}

uint64_t store__sched_id_new(struct store_batch *b, int64_t due)
{
    struct store *s = b->s;
    for (;;) {
        uint64_t id = s->sched_next_id++;
        if (id == 0) {
            continue; /* 0 means "none" (store_msg_in.unsched_id) */
        }
        /* Ids start at the wall clock of the open, so they only repeat if
         * the clock stepped back: then skip one that is taken. */
        unsigned char kb[KEY_LEN];
        key_make(kb, store__time_bias(due), id);
        MDB_val k = {KEY_LEN, kb}, v;
        if (b->txn == NULL || mdb_get(b->txn, s->dbi_sched, &k, &v) != 0) {
            return id;
        }
    }
}

/* The first entry of "sched" in txn: 0 (k, v), or an MDB code. */
static int first_entry(struct store *s, MDB_txn *txn, MDB_val *k, MDB_val *v)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, s->dbi_sched, &cur);
    if (rc != 0) {
        return rc;
    }
    rc = mdb_cursor_get(cur, k, v, MDB_FIRST);
    mdb_cursor_close(cur);
    if (rc == 0 && k->mv_size != KEY_LEN) {
        rc = MDB_CORRUPTED;
    }
    return rc;
}

int store__sched_count(struct store *s)
{
    MDB_txn *txn;
    int rc = store__rtxn_begin(s, &txn);
    if (rc != 0) {
        return rc;
    }
    MDB_stat st;
    rc = mdb_stat(txn, s->dbi_sched, &st);
    if (rc == 0) {
        atomic_store(&s->n_scheduled, st.ms_entries);
    }
    store__rtxn_end(s, txn);
    return rc;
}

int store_sched_next(struct store *s, int64_t *next_due)
{
    MDB_txn *txn;
    int rc = store__rtxn_begin(s, &txn);
    if (rc != 0) {
        return rc;
    }
    MDB_val k, v;
    rc = first_entry(s, txn, &k, &v);
    if (rc == 0) {
        *next_due = store__time_unbias(get_be64(k.mv_data));
    } else if (rc == MDB_NOTFOUND) {
        *next_due = INT64_MAX;
        rc = 0;
    }
    store__rtxn_end(s, txn);
    return rc == 0 ? 0 : store__xlate_read(rc);
}

/* Decode a "sched" entry copied to buf (klen + vlen bytes) into out. */
static int item_decode(struct store *s, MDB_txn *txn, unsigned char *buf, size_t vlen,
                       struct store_sched_item *out)
{
    const unsigned char *kp = buf;
    unsigned char *vp = buf + KEY_LEN;
    if (vlen < TOPIC_ID_LEN + VAL_HDR_LEN) {
        return MDB_CORRUPTED;
    }
    uint32_t topic_id = get_le32(vp);
    uint64_t id = get_be64(kp + 8);
    unsigned char mk[MSG_KEY_LEN];
    store__msg_key_make(mk, topic_id, id);
    MDB_val mkey = {MSG_KEY_LEN, mk};
    MDB_val mval = {vlen - TOPIC_ID_LEN, vp + TOPIC_ID_LEN};
    struct store_msg *m = &out->msg;
    if (store__msg_decode(&mkey, &mval, m) != 0) {
        return MDB_CORRUPTED;
    }
    /* The topic's name, from its record. */
    unsigned char tk[4];
    put_be32(tk, topic_id);
    MDB_val tkey = {4, tk}, tval;
    int rc = mdb_get(txn, s->dbi_topics, &tkey, &tval);
    if (rc != 0) {
        return rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc;
    }
    uint32_t tid;
    struct topic_state st;
    const char *name;
    size_t name_len;
    if (store__topic_rec_decode(&tkey, &tval, &tid, &st, &name, &name_len) != 0 ||
        name_len > STORE_TOPIC_MAX) {
        return MDB_CORRUPTED;
    }
    /* The name lives in the map: copy it after the entry (room reserved). */
    char *nb = (char *)buf + KEY_LEN + vlen;
    memcpy(nb, name, name_len);
    out->topic = nb;
    out->topic_len = name_len;
    struct store_msg_in *in = &out->in;
    memset(in, 0, sizeof(*in));
    in->publish_time = m->publish_time;
    in->payload = m->payload;
    in->payload_len = m->payload_len;
    in->key = m->key;
    in->key_len = m->key_len;
    in->expire_time = m->expire_time;
    in->unsched_due = store__time_unbias(get_be64(kp));
    in->unsched_id = id;
    size_t pos = 0;
    struct store_kv kv;
    while (store_msg_header_next(m, &pos, &kv)) {
        if (in->n_headers == STORE_SCHED_HEADERS_MAX) {
            return MDB_CORRUPTED; /* store_batch_schedule() refuses more */
        }
        out->headers[in->n_headers++] = kv;
    }
    in->headers = out->headers;
    return 0;
}

int store_batch_sched_pop(struct store_batch *b, int64_t now, void **buf, size_t *buf_cap,
                          struct store_sched_item *out, int64_t *next_due)
{
    struct store *s = b->s;
    if (b->broken_rc != 0) {
        return b->broken_rc;
    }
    if (b->txn == NULL) {
        return FERRY_ESTORAGE;
    }
    MDB_val k, v;
    int rc = first_entry(s, b->txn, &k, &v);
    if (rc == MDB_NOTFOUND) {
        *next_due = INT64_MAX;
        return 0;
    }
    if (rc != 0) {
        return store__xlate_write(s, rc);
    }
    int64_t due = store__time_unbias(get_be64(k.mv_data));
    if (due > now) {
        *next_due = due;
        return 0;
    }
    /* Copied out: the append that follows changes the txn's pages. */
    size_t need = KEY_LEN + v.mv_size + STORE_TOPIC_MAX;
    if (need > *buf_cap) {
        void *nb = realloc(*buf, need);
        if (nb == NULL) {
            return -ENOMEM;
        }
        *buf = nb;
        *buf_cap = need;
    }
    memcpy(*buf, k.mv_data, KEY_LEN);
    memcpy((unsigned char *)*buf + KEY_LEN, v.mv_data, v.mv_size);
    rc = item_decode(s, b->txn, *buf, v.mv_size, out);
    if (rc != 0) {
        return store__xlate_write(s, rc); /* a corrupt entry: fail-stop */
    }
    return 1;
}

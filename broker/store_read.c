/*
 * store_read.c - the store's readers: messages, seeks by time, topics, and
 * durable consumer records. Any thread, concurrently with each other and
 * with the writer; each call runs short read transactions (store.h).
 */
#include "store_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LIST_CHUNK 256 /* topics per list transaction */

/* ---- readers ----------------------------------------------------------- */

/* Committed topic record by id inside txn. 0, MDB_NOTFOUND, or -2 corrupt. */
static int topic_get_by_id(struct store *s, MDB_txn *txn, uint32_t id, struct topic_state *st,
                           char *name_buf)
{
    unsigned char kb[4];
    put_be32(kb, id);
    MDB_val k = {4, kb};
    MDB_val v;
    int rc = mdb_get(txn, s->dbi_topics, &k, &v);
    if (rc != 0) {
        return rc;
    }
    uint32_t rid;
    const char *name;
    size_t name_len;
    if (store__topic_rec_decode(&k, &v, &rid, st, &name, &name_len) != 0) {
        return -2;
    }
    if (name_buf != NULL) {
        memcpy(name_buf, name, name_len);
        name_buf[name_len] = '\0';
    }
    return 0;
}

void store__info_fill(struct store_topic_info *info, uint32_t id, const struct topic_state *st)
{
    info->id = id;
    info->first_seq = st->first_seq;
    info->last_seq = st->last_seq;
    info->n_msgs = st->n_msgs;
    info->n_bytes = st->n_bytes;
    info->last_time = st->last_time;
}

int store__read_one(struct store_read_result *r, const struct store_msg *m, size_t max_bytes,
                    store_read_cb cb, void *ctx, uint64_t *next)
{
    size_t len = m->payload_len + m->key_len + m->headers_raw_len;
    if (r->n_msgs > 0 && r->n_bytes + len > max_bytes) {
        return 1;
    }
    enum store_read_verdict verdict = cb(ctx, m);
    if (verdict == STORE_READ_REFUSE) {
        *next = m->seq;
        return 1;
    }
    *next = m->seq + 1;
    r->n_msgs++;
    r->n_bytes += len;
    return verdict == STORE_READ_STOP;
}

int store_read(struct store *s, uint32_t topic_id, uint64_t from_seq, size_t max_msgs,
               size_t max_bytes, store_read_cb cb, void *ctx, struct store_read_result *res)
{
    if (max_msgs == 0 || cb == NULL || res == NULL) {
        return FERRY_EINVAL;
    }
    MDB_txn *txn;
    MDB_cursor *cur;
    int ret = store__rtxn_begin(s, &txn);
    if (ret != 0) {
        return ret;
    }
    struct store_read_result r = {0};
    struct topic_state st;
    int rc = topic_get_by_id(s, txn, topic_id, &st, NULL);
    if (rc == MDB_NOTFOUND) {
        r.next_seq = from_seq ? from_seq : 1;
        r.is_end = true;
        store__rtxn_end(s, txn);
        *res = r;
        return 0;
    }
    if (rc != 0) {
        ret = rc == -2 ? FERRY_ESTORAGE : store__xlate_read(rc);
        goto out_end;
    }
    r.last_seq = st.last_seq;
    rc = mdb_cursor_open(txn, s->dbi_msgs, &cur);
    if (rc != 0) {
        ret = store__xlate_read(rc);
        goto out_end;
    }
    uint64_t next = from_seq ? from_seq : 1;
    unsigned char kb[MSG_KEY_LEN];
    store__msg_key_make(kb, topic_id, next);
    MDB_val k = {MSG_KEY_LEN, kb};
    MDB_val v;
    size_t n_seen = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (rc == MDB_NOTFOUND ||
            (rc == 0 && (k.mv_size != MSG_KEY_LEN || get_be32(k.mv_data) != topic_id))) {
            r.is_end = true;
            if (next <= r.last_seq) {
                next = r.last_seq + 1; /* the rest was purged or skipped */
            }
            break;
        }
        if (rc != 0) {
            ret = store__xlate_read(rc);
            goto out_close;
        }
        struct store_msg m;
        if (store__msg_decode(&k, &v, &m) != 0) {
            r.n_corrupt++;
            r.corrupt_seq = get_be64((const unsigned char *)k.mv_data + 4);
            atomic_fetch_add(&s->n_crc_errors, 1);
            next = r.corrupt_seq + 1;
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
    *res = r;
out_close:
    mdb_cursor_close(cur);
out_end:
    store__rtxn_end(s, txn);
    return ret;
}

/* First seq >= from whose running maximum of publish times (that is, its
 * clamped time, when from starts a time bucket) is >= time_ns; or *seq =
 * last + 1. Bounded by the messages of one bucket. */
static int seek_scan(struct store *s, MDB_txn *txn, uint32_t topic_id, uint64_t from,
                     int64_t time_ns, uint64_t *seq)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, s->dbi_msgs, &cur);
    if (rc != 0) {
        return rc;
    }
    unsigned char kb[MSG_KEY_LEN];
    store__msg_key_make(kb, topic_id, from);
    MDB_val k = {MSG_KEY_LEN, kb};
    MDB_val v;
    int64_t run_max = INT64_MIN;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct store_msg m;
        if (k.mv_size != MSG_KEY_LEN || get_be32(k.mv_data) != topic_id) {
            rc = MDB_NOTFOUND;
            break;
        }
        if (store__msg_decode(&k, &v, &m) != 0) {
            continue; /* a corrupt one is reported by the read that meets it */
        }
        if (m.publish_time > run_max) {
            run_max = m.publish_time;
        }
        if (run_max >= time_ns) {
            *seq = m.seq;
            break;
        }
    }
    mdb_cursor_close(cur);
    return rc;
}

int store_seek_time(struct store *s, uint32_t topic_id, int64_t time_ns, uint64_t *seq)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    int ret = store__rtxn_begin(s, &txn);
    if (ret != 0) {
        return ret;
    }
    struct topic_state st;
    int rc = topic_get_by_id(s, txn, topic_id, &st, NULL);
    if (rc != 0) {
        ret = rc == MDB_NOTFOUND ? FERRY_ENOTOPIC
              : rc == -2         ? FERRY_ESTORAGE
                                 : store__xlate_read(rc);
        goto out_end;
    }
    rc = mdb_cursor_open(txn, s->dbi_tidx, &cur);
    if (rc != 0) {
        ret = store__xlate_read(rc);
        goto out_end;
    }
    /* The index holds, per topic and per TIDX_GRAIN_NS bucket of clamped
     * time, the first seq of the bucket. The first entry at or after
     * time_ns's bucket answers directly if it is a later bucket; if it is
     * time_ns's own bucket, scan that bucket's messages. */
    int64_t want = time_ns == INT64_MIN ? INT64_MIN + 1 : time_ns;
    int64_t bucket = store__time_bucket(want);
    unsigned char kb[MSG_KEY_LEN];
    put_be32(kb, topic_id);
    put_be64(kb + 4, store__time_bias(bucket));
    MDB_val k = {MSG_KEY_LEN, kb};
    MDB_val v;
    uint64_t found = st.last_seq + 1;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == 0 && k.mv_size == MSG_KEY_LEN && get_be32(k.mv_data) == topic_id && v.mv_size == 8) {
        uint64_t first = get_be64(v.mv_data);
        if (first < st.first_seq) {
            first = st.first_seq;
        }
        if (store__time_unbias(get_be64((const unsigned char *)k.mv_data + 4)) > bucket) {
            found = first;
        } else {
            rc = seek_scan(s, txn, topic_id, first, want, &found);
        }
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        ret = store__xlate_read(rc);
        goto out_close;
    }
    *seq = found;
out_close:
    mdb_cursor_close(cur);
out_end:
    store__rtxn_end(s, txn);
    return ret;
}

uint64_t store_topic_seq_last_n(const struct store_topic_info *info, uint64_t n)
{
    if (n == 0 || n > info->last_seq) {
        return n == 0 ? info->last_seq + 1 : info->first_seq;
    }
    uint64_t from = info->last_seq - n + 1;
    return from < info->first_seq ? info->first_seq : from;
}

int store_topic_info(struct store *s, const char *topic, size_t topic_len,
                     struct store_topic_info *info)
{
    if (topic == NULL || topic_len == 0 || topic_len > STORE_TOPIC_MAX || info == NULL) {
        return FERRY_EINVAL;
    }
    MDB_txn *txn;
    int ret = store__rtxn_begin(s, &txn);
    if (ret != 0) {
        return ret;
    }
    MDB_val k = {topic_len, (void *)topic};
    MDB_val v;
    int rc = mdb_get(txn, s->dbi_names, &k, &v);
    if (rc == 0 && v.mv_size != 4) {
        rc = -2;
    }
    struct topic_state st;
    uint32_t id = 0;
    if (rc == 0) {
        id = get_be32(v.mv_data);
        rc = topic_get_by_id(s, txn, id, &st, NULL);
    }
    if (rc == 0) {
        store__info_fill(info, id, &st);
    } else {
        ret = rc == MDB_NOTFOUND ? FERRY_ENOTOPIC
              : rc == -2         ? FERRY_ESTORAGE
                                 : store__xlate_read(rc);
    }
    store__rtxn_end(s, txn);
    return ret;
}

int store_topic_info_by_id(struct store *s, uint32_t id, struct store_topic_info *info,
                           char *name_buf)
{
    if (info == NULL) {
        return FERRY_EINVAL;
    }
    MDB_txn *txn;
    int ret = store__rtxn_begin(s, &txn);
    if (ret != 0) {
        return ret;
    }
    struct topic_state st;
    int rc = topic_get_by_id(s, txn, id, &st, name_buf);
    if (rc == 0) {
        store__info_fill(info, id, &st);
    } else {
        ret = rc == MDB_NOTFOUND ? FERRY_ENOTOPIC
              : rc == -2         ? FERRY_ESTORAGE
                                 : store__xlate_read(rc);
    }
    store__rtxn_end(s, txn);
    return ret;
}

/*
 * The keys of dbi that start with prefix, in order, in chunks of LIST_CHUNK
 * records, each chunk in its own short read transaction (a long reader
 * would keep LMDB from reusing pages), resuming after the last key taken.
 * visit() says what became of each record (enum scan_step) or returns a
 * negative error, which ends the scan. Returns how many were taken, or the
 * error.
 */
enum scan_step {
    SCAN_TAKEN = 0,  /* counted; go on */
    SCAN_TAKEN_STOP, /* counted; the caller wants no more */
    SCAN_SKIPPED,    /* not counted; go on */
    SCAN_END,        /* not counted; no more */
};
typedef int (*scan_visit)(struct store *s, MDB_txn *txn, const MDB_val *k, const MDB_val *v,
                          void *ctx);

static int prefix_scan(struct store *s, MDB_dbi dbi, const char *prefix, size_t prefix_len,
                       scan_visit visit, void *ctx)
{
    char resume[STORE_CONSUMER_KEY_MAX]; /* no visit() takes a longer key */
    size_t resume_len = 0;
    bool has_resume = false;
    int count = 0;
    for (;;) {
        MDB_txn *txn;
        MDB_cursor *cur;
        int ret = store__rtxn_begin(s, &txn);
        if (ret != 0) {
            return ret;
        }
        int rc = mdb_cursor_open(txn, dbi, &cur);
        if (rc != 0) {
            store__rtxn_end(s, txn);
            return store__xlate_read(rc);
        }
        MDB_val k = {0, NULL};
        MDB_val v;
        if (has_resume) {
            k.mv_size = resume_len;
            k.mv_data = resume;
        } else if (prefix_len) {
            k.mv_size = prefix_len;
            k.mv_data = (void *)prefix;
        }
        rc = mdb_cursor_get(cur, &k, &v, (has_resume || prefix_len) ? MDB_SET_RANGE : MDB_FIRST);
        if (rc == 0 && has_resume && k.mv_size == resume_len &&
            memcmp(k.mv_data, resume, resume_len) == 0) {
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        int n = 0;
        bool is_done = false;
        for (; rc == 0 && n < LIST_CHUNK; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), n++) {
            if (k.mv_size < prefix_len ||
                (prefix_len && memcmp(k.mv_data, prefix, prefix_len) != 0)) {
                is_done = true;
                break;
            }
            int step = visit(s, txn, &k, &v, ctx);
            if (step < 0) {
                mdb_cursor_close(cur);
                store__rtxn_end(s, txn);
                return step;
            }
            if (step == SCAN_SKIPPED) {
                continue;
            }
            if (step == SCAN_END) {
                is_done = true;
                break;
            }
            count++;
            memcpy(resume, k.mv_data, k.mv_size);
            resume_len = k.mv_size;
            has_resume = true;
            if (step == SCAN_TAKEN_STOP) {
                is_done = true;
                break;
            }
        }
        if (rc == MDB_NOTFOUND) {
            is_done = true;
        } else if (rc != 0) {
            mdb_cursor_close(cur);
            store__rtxn_end(s, txn);
            return store__xlate_read(rc);
        }
        mdb_cursor_close(cur);
        store__rtxn_end(s, txn);
        if (is_done) {
            return count;
        }
    }
}

struct topic_list_ctx {
    store_topic_cb cb;
    void *ctx;
};

static int topic_list_visit(struct store *s, MDB_txn *txn, const MDB_val *k, const MDB_val *v,
                            void *ctx)
{
    struct topic_list_ctx *x = ctx;
    if (k->mv_size > STORE_TOPIC_MAX) {
        return SCAN_END;
    }
    struct topic_state st;
    uint32_t id = v->mv_size == 4 ? get_be32(v->mv_data) : 0;
    int grc = topic_get_by_id(s, txn, id, &st, NULL);
    if (grc != 0) {
        return grc == -2 || grc == MDB_NOTFOUND ? FERRY_ESTORAGE : store__xlate_read(grc);
    }
    struct store_topic_info info;
    store__info_fill(&info, id, &st);
    return x->cb(x->ctx, k->mv_data, k->mv_size, &info) != 0 ? SCAN_TAKEN_STOP : SCAN_TAKEN;
}

int store_topic_list(struct store *s, const char *prefix, size_t prefix_len, store_topic_cb cb,
                     void *ctx)
{
    if (cb == NULL || (prefix_len && prefix == NULL) || prefix_len > STORE_TOPIC_MAX) {
        return FERRY_EINVAL;
    }
    struct topic_list_ctx x = {cb, ctx};
    return prefix_scan(s, s->dbi_names, prefix, prefix_len, topic_list_visit, &x);
}

/* ---- durable consumer records ------------------------------------------ */

int store_consumer_get(struct store *s, const char *key, size_t key_len, void **value,
                       size_t *value_len)
{
    if (key == NULL || key_len == 0 || key_len > STORE_CONSUMER_KEY_MAX || value == NULL ||
        value_len == NULL) {
        return FERRY_EINVAL;
    }
    MDB_txn *txn;
    int ret = store__rtxn_begin(s, &txn);
    if (ret != 0) {
        return ret;
    }
    MDB_val k = {key_len, (void *)key};
    MDB_val v;
    int rc = mdb_get(txn, s->dbi_consumers, &k, &v);
    if (rc == MDB_NOTFOUND) {
        ret = FERRY_ENOTOPIC;
    } else if (rc != 0) {
        ret = store__xlate_read(rc);
    } else {
        void *p = malloc(v.mv_size ? v.mv_size : 1);
        if (p == NULL) {
            ret = -ENOMEM;
        } else {
            memcpy(p, v.mv_data, v.mv_size);
            *value = p;
            *value_len = v.mv_size;
        }
    }
    store__rtxn_end(s, txn);
    return ret;
}

struct consumers_ctx {
    store_consumer_cb cb;
    void *ctx;
};

static int consumers_visit(struct store *s, MDB_txn *txn, const MDB_val *k, const MDB_val *v,
                           void *ctx)
{
    (void)s;
    (void)txn;
    struct consumers_ctx *x = ctx;
    if (k->mv_size > STORE_CONSUMER_KEY_MAX) {
        return SCAN_SKIPPED; /* never written by store_consumers_put(); --verify names it */
    }
    return x->cb(x->ctx, k->mv_data, k->mv_size, v->mv_data, v->mv_size) != 0 ? SCAN_TAKEN_STOP
                                                                              : SCAN_TAKEN;
}

int store_consumers_foreach(struct store *s, const char *prefix, size_t prefix_len,
                            store_consumer_cb cb, void *ctx)
{
    if (cb == NULL || (prefix_len && prefix == NULL) || prefix_len > STORE_CONSUMER_KEY_MAX) {
        return FERRY_EINVAL;
    }
    struct consumers_ctx x = {cb, ctx};
    return prefix_scan(s, s->dbi_consumers, prefix, prefix_len, consumers_visit, &x);
}

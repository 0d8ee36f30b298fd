/*
 * store_purge.c - removing a topic's messages on the writer path: purge
 * (all of them, in bounded transactions) and retention trims (the oldest,
 * one bounded transaction per call). Neither is in the write-ahead log.
 */
#include "store_int.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#define PURGE_CHUNK 1024 /* deletions per purge transaction */

/* ---- purge ------------------------------------------------------------- */

/* Delete up to PURGE_CHUNK entries of topic t from dbi, those whose seq is
 * <= upto (for msgs the key's seq, for tidx the value). Returns an MDB code;
 * *n and *bytes count what went. */
static int purge_chunk(struct store *s, MDB_txn *txn, MDB_dbi dbi, bool is_index, uint32_t id,
                       uint64_t upto, uint64_t *n, uint64_t *bytes, bool *is_done)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0) {
        return rc;
    }
    (void)s;
    unsigned char kb[MSG_KEY_LEN];
    store__msg_key_make(kb, id, 0);
    MDB_val k = {MSG_KEY_LEN, kb};
    MDB_val v;
    *is_done = false;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    for (size_t i = 0; i < PURGE_CHUNK; i++) {
        if (rc == MDB_NOTFOUND) {
            *is_done = true;
            rc = 0;
            break;
        }
        if (rc != 0) {
            break;
        }
        if (k.mv_size != MSG_KEY_LEN || get_be32(k.mv_data) != id) {
            *is_done = true;
            break;
        }
        uint64_t seq = is_index ? (v.mv_size == 8 ? get_be64(v.mv_data) : 0)
                                : get_be64((const unsigned char *)k.mv_data + 4);
        if (seq > upto) {
            *is_done = true;
            break;
        }
        if (!is_index) {
            *bytes += v.mv_size >= VAL_HDR_LEN ? v.mv_size - VAL_HDR_LEN : 0;
        }
        memcpy(kb, k.mv_data, MSG_KEY_LEN); /* k points into the page */
        rc = mdb_cursor_del(cur, 0);
        if (rc != 0) {
            break;
        }
        (*n)++;
        /* Re-seek rather than trust the cursor after a delete: when the
         * last entry of a page or of the database goes, LMDB leaves it
         * unpositioned. The deleted key is just below the next one. */
        k.mv_size = MSG_KEY_LEN;
        k.mv_data = kb;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    }
    if (rc == MDB_NOTFOUND) {
        /* The chunk ended on the database's last entry: the seek after the
         * final delete found nothing, which means done, not failure. */
        *is_done = true;
        rc = 0;
    }
    mdb_cursor_close(cur);
    return rc;
}

static int topic_rec_put_txn(struct store *s, MDB_txn *txn, struct store_topic *t,
                             const struct topic_state *st)
{
    unsigned char buf[TOPIC_REC_HDR + STORE_TOPIC_MAX];
    unsigned char kb[4];
    put_be32(kb, t->id);
    store__topic_rec_encode(buf, t->id, st, t->name, t->name_len);
    MDB_val k = {4, kb};
    MDB_val v = {TOPIC_REC_HDR + (size_t)t->name_len, buf};
    return mdb_put(txn, s->dbi_topics, &k, &v, 0);
}

static int last_topic_of(struct store *s, MDB_txn *txn, MDB_dbi dbi, uint32_t *id)
{
    MDB_cursor *cur;
    MDB_val k;
    MDB_val v;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0) {
        return rc;
    }
    (void)s;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    if (rc == 0 && k.mv_size == MSG_KEY_LEN) {
        *id = get_be32(k.mv_data);
    } else if (rc == MDB_NOTFOUND) {
        *id = 0;
        rc = 0;
    }
    mdb_cursor_close(cur);
    return rc;
}

int store_topic_purge(struct store *s, const char *topic, size_t topic_len, uint64_t *n_removed)
{
    if (topic == NULL || topic_len == 0 || topic_len > STORE_TOPIC_MAX) {
        return FERRY_EINVAL;
    }
    pthread_mutex_lock(&s->wlock);
    int ret = 0;
    uint64_t removed = 0;
    if (atomic_load(&s->is_failed)) {
        ret = FERRY_ESTORAGE;
        goto out_unlock;
    }
    struct store_topic *t =
        store__topic_find(s, topic, topic_len, store__name_hash(topic, topic_len));
    if (t == NULL) {
        ret = FERRY_ENOTOPIC;
        goto out_unlock;
    }
    uint64_t upto = t->cur.last_seq;
    bool is_freed = false; /* a full map made this chunk checkpoint */
    /* The last-value index first, so that it never names a message that is
     * gone (and holds no trim back afterwards). */
    for (bool is_done = false; !is_done;) {
        MDB_txn *txn;
        int rc = store__wtxn_begin(s, &txn);
        if (rc == 0) {
            rc = store__lastval_drop(s, txn, t->id, PURGE_CHUNK, &is_done);
            rc = rc == 0 ? store__wtxn_commit(s, txn) : (store__wtxn_abort(s, txn), rc);
        }
        if (rc != 0) {
            ret = store__xlate_write(s, rc);
            goto out_unlock;
        }
    }
    /* The time index next, so a partly purged topic never has index entries
     * that point below its first_seq; then messages, oldest first. */
    for (int phase = 0; phase < 2; phase++) {
        bool is_index = phase == 0;
        bool is_done = false;
        while (!is_done) {
            MDB_txn *txn;
            uint64_t n = 0;
            uint64_t bytes = 0;
            int rc = store__wtxn_begin(s, &txn);
            if (rc == 0) {
                rc = purge_chunk(s, txn, is_index ? s->dbi_tidx : s->dbi_msgs, is_index, t->id,
                                 upto, &n, &bytes, &is_done);
                struct topic_state st = t->cur;
                if (rc == 0 && !is_index) {
                    st.n_msgs -= n <= st.n_msgs ? n : st.n_msgs;
                    st.n_bytes -= bytes <= st.n_bytes ? bytes : st.n_bytes;
                    st.first_seq = st.n_msgs == 0 ? st.last_seq + 1 : st.first_seq + n;
                    if (is_done && st.n_msgs == 0) {
                        st.last_time = TIME_NONE;
                    }
                    rc = topic_rec_put_txn(s, txn, t, &st);
                }
                if (rc == 0 && is_done) {
                    uint32_t *which = is_index ? &s->tidx_max_topic : &s->msg_max_topic;
                    uint32_t last = *which;
                    if (last == t->id) {
                        rc = last_topic_of(s, txn, is_index ? s->dbi_tidx : s->dbi_msgs, &last);
                    }
                    if (rc == 0) {
                        rc = store__wtxn_commit(s, txn);
                        if (rc == 0) {
                            *which = last;
                        }
                    } else {
                        store__wtxn_abort(s, txn);
                    }
                } else if (rc == 0) {
                    rc = store__wtxn_commit(s, txn);
                } else {
                    store__wtxn_abort(s, txn);
                }
                if (rc == 0 && !is_index) {
                    t->cur = st;
                    t->pend = st;
                    removed += n;
                }
            }
            if (rc == MDB_MAP_FULL && store__map_grow(s) == 0) {
                is_done = false;
                continue;
            }
            if (rc == MDB_MAP_FULL && !is_freed) {
                /* What the purge freed so far is pinned for recovery: a
                 * checkpoint lets LMDB reuse it. Once per chunk. */
                is_freed = true;
                ret = store__ckpt_sync(s);
                if (ret != 0) {
                    goto out_unlock;
                }
                is_done = false;
                continue;
            }
            if (rc == 0) {
                is_freed = false;
            }
            if (rc != 0) {
                if (store__is_full_error(rc)) {
                    ret = FERRY_ESTORAGEFULL;
                } else if (rc == ENOMEM) {
                    ret = -ENOMEM;
                } else {
                    ret = store__fail(s, rc);
                }
                goto out_unlock;
            }
        }
    }
    if (removed > 0) {
        /* LMDB reuses pages freed by transaction T only from T + 2 on (a
         * reader may still see T - 1): one more small commit, so that the
         * very next batch can use the space this purge freed. */
        MDB_txn *txn;
        int rc = store__wtxn_begin(s, &txn);
        if (rc == 0) {
            rc = topic_rec_put_txn(s, txn, t, &t->cur);
            rc = rc == 0 ? store__wtxn_commit(s, txn) : (store__wtxn_abort(s, txn), rc);
        }
        if (rc != 0 && !store__is_full_error(rc) && rc != ENOMEM && rc != MDB_MAP_FULL) {
            ret = store__fail(s, rc);
            goto out_unlock;
        }
    }
    /* Not in the log: the answer waits until a checkpoint holds it. */
    ret = store__ckpt_sync(s);
    if (n_removed != NULL && ret == 0) {
        *n_removed = removed;
    }
out_unlock:
    pthread_mutex_unlock(&s->wlock);
    return ret;
}

/* ---- retention ---------------------------------------------------------- */

int store_topic_trim(struct store *s, const char *topic, size_t topic_len, uint64_t upto,
                     uint64_t *n_removed, bool *is_done)
{
    if (topic == NULL || topic_len == 0 || topic_len > STORE_TOPIC_MAX) {
        return FERRY_EINVAL;
    }
    pthread_mutex_lock(&s->wlock);
    int ret = 0;
    uint64_t n = 0, n_idx = 0, bytes = 0;
    bool idx_done = false, msg_done = true;
    if (atomic_load(&s->is_failed)) {
        ret = FERRY_ESTORAGE;
        goto out_unlock;
    }
    struct store_topic *t =
        store__topic_find(s, topic, topic_len, store__name_hash(topic, topic_len));
    if (t == NULL) {
        ret = FERRY_ENOTOPIC;
        goto out_unlock;
    }
    /* The newest message always stays: the topic is never emptied here, so
     * the bookkeeping of the highest topic with messages is untouched. */
    if (t->cur.last_seq == 0 || upto >= t->cur.last_seq) {
        upto = t->cur.last_seq ? t->cur.last_seq - 1 : 0;
    }
    if (upto < t->cur.first_seq) {
        goto out_done;
    }
    MDB_txn *txn;
    int rc = store__wtxn_begin(s, &txn);
    uint64_t floor = UINT64_MAX;
    if (rc == 0) {
        /* A last-value key's current value stays: the trim ends below the
         * oldest one (store_lastval.c). */
        rc = store__lastval_floor(s, txn, t->id, &floor);
        if (rc == 0 && floor <= upto) {
            upto = floor - 1;
        }
        if (rc != 0 || upto < t->cur.first_seq) {
            store__wtxn_abort(s, txn);
            if (rc == 0) {
                goto out_done;
            }
        }
    }
    if (rc == 0) {
        /* Index entries first: none may point below first_seq. */
        rc = purge_chunk(s, txn, s->dbi_tidx, true, t->id, upto, &n_idx, &bytes, &idx_done);
        msg_done = false;
        if (rc == 0) {
            bytes = 0;
            rc = purge_chunk(s, txn, s->dbi_msgs, false, t->id, upto, &n, &bytes, &msg_done);
        }
        struct topic_state st = t->cur;
        if (rc == 0 && n > 0) {
            st.n_msgs -= n <= st.n_msgs ? n : st.n_msgs;
            st.n_bytes -= bytes <= st.n_bytes ? bytes : st.n_bytes;
            st.first_seq += n;
            rc = topic_rec_put_txn(s, txn, t, &st);
        }
        if (rc == 0) {
            rc = store__wtxn_commit(s, txn);
            if (rc == 0 && n > 0) {
                t->cur = st;
                t->pend = st;
            }
        } else {
            store__wtxn_abort(s, txn);
        }
    }
    if (rc != 0) {
        ret = store__xlate_write(s, rc);
        goto out_unlock;
    }
out_done:
    if (n_removed != NULL) {
        *n_removed = n;
    }
    if (is_done != NULL) {
        *is_done = msg_done && (idx_done || n_idx < PURGE_CHUNK);
    }
out_unlock:
    pthread_mutex_unlock(&s->wlock);
    return ret;
}

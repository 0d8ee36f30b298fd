/*
 * store_dedupe.c - idempotent publishing: which producer sequences a topic
 * has stored, so that a producer's resend is answered, not stored again.
 *
 * The "dedupe" database maps (producer id u64 BE, topic id u32 BE, producer
 * sequence u64 BE) -> (topic sequence u64 LE, publish time i64 LE). An
 * entry is written by the same arena record as its message (REC_DEDUPE: a
 * trailer after the value), so it is in the same LMDB commit, the same
 * write-ahead log record and the same replay as the message: a message and
 * its entry are stored together or not at all.
 *
 * What is kept, per producer and topic: the sequences within
 * STORE_DEDUPE_SPAN of the producer's newest one there (older entries go
 * as newer ones arrive), and, by store_dedupe_expire(), none older than
 * the dedupe window. Producer sequences must grow (libferry uses its
 * publish ids): a sequence below every one kept is taken as seen before.
 *
 * The common case, a producer's next sequence, costs one LMDB put: the
 * writer's cache (struct dedupe_slot) knows it is above everything stored.
 * Evictions run every EVICT_EVERY sequences, so up to that many more than
 * the span may be kept.
 */
#include "store_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define KEY_LEN 20        /* producer, topic id, producer sequence */
#define PREFIX_LEN 12     /* producer, topic id */
#define VAL_LEN 16        /* topic sequence, publish time */
#define EXPIRE_CHUNK 4096 /* deletions per expiry transaction */
#define CACHE_SLOTS 4096  /* struct dedupe_slot entries (power of two) */
#define EVICT_EVERY 1024  /* sequences between two evictions of a producer's oldest */

static void key_make(unsigned char k[KEY_LEN], uint64_t producer, uint32_t topic_id, uint64_t pseq)
{
    put_be64(k, producer);
    put_be32(k + 8, topic_id);
    put_be64(k + PREFIX_LEN, pseq);
}

/* The cache slot of (producer, topic): NULL without a cache (no memory). */
static struct dedupe_slot *slot_of(struct store *s, uint64_t producer, uint32_t topic_id)
{
    if (s->dedupe_cache == NULL) {
        s->dedupe_cache = calloc(CACHE_SLOTS, sizeof(*s->dedupe_cache));
        if (s->dedupe_cache == NULL) {
            return NULL;
        }
    }
    uint64_t h = (producer ^ ((uint64_t)topic_id * 0x9e3779b97f4a7c15ull)) * 0xff51afd7ed558ccdull;
    return &s->dedupe_cache[(h >> 40) & (CACHE_SLOTS - 1)];
}

/* Make k (its prefix) the smallest key of the next prefix: the prefix plus
 * one, sequence 0. 0 if the prefix was the largest. */
static int prefix_next(unsigned char k[KEY_LEN])
{
    put_be64(k + PREFIX_LEN, 0);
    for (int i = PREFIX_LEN - 1; i >= 0; i--) {
        if (++k[i] != 0) {
            return 1;
        }
    }
    return 0;
}

void store__dedupe_trailer_put(struct rec_hdr *r, uint64_t producer, uint64_t pseq)
{
    unsigned char *p = (unsigned char *)r + store__rec_size(r->val_len);
    put_le64(p, producer);
    put_le64(p + 8, pseq);
}

/* Delete the entries of key k's producer and topic whose sequence is below
 * `below`: they are at the start of its range. An MDB code. */
static int evict_below(MDB_txn *txn, MDB_dbi dbi, const unsigned char k[KEY_LEN], uint64_t below)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0) {
        return rc;
    }
    unsigned char kb[KEY_LEN];
    memcpy(kb, k, PREFIX_LEN);
    put_be64(kb + PREFIX_LEN, 0);
    MDB_val key = {KEY_LEN, kb}, val;
    rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
    while (rc == 0 && key.mv_size == KEY_LEN && memcmp(key.mv_data, k, PREFIX_LEN) == 0 &&
           get_be64((const unsigned char *)key.mv_data + PREFIX_LEN) < below) {
        memcpy(kb, key.mv_data, KEY_LEN); /* key points into the page */
        rc = mdb_cursor_del(cur, 0);
        if (rc == 0) {
            /* Re-seek: LMDB may leave the cursor unpositioned after a
             * delete (store_purge.c). */
            key = (MDB_val){KEY_LEN, kb};
            rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
        }
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* The highest sequence stored under k's prefix (0: none) into *top. An MDB
 * code. */
static int prefix_top(MDB_txn *txn, MDB_dbi dbi, const unsigned char k[KEY_LEN], uint64_t *top)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0) {
        return rc;
    }
    unsigned char kb[KEY_LEN];
    memcpy(kb, k, KEY_LEN);
    MDB_val key = {KEY_LEN, kb}, val;
    *top = 0;
    if (!prefix_next(kb)) {
        rc = mdb_cursor_get(cur, &key, &val, MDB_LAST); /* the largest prefix */
    } else {
        rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
        rc = rc == 0              ? mdb_cursor_get(cur, &key, &val, MDB_PREV)
             : rc == MDB_NOTFOUND ? mdb_cursor_get(cur, &key, &val, MDB_LAST)
                                  : rc;
    }
    if (rc == 0 && key.mv_size == KEY_LEN && memcmp(key.mv_data, k, PREFIX_LEN) == 0) {
        *top = get_be64((const unsigned char *)key.mv_data + PREFIX_LEN);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int store__dedupe_apply(struct store_batch *b, const struct rec_hdr *r)
{
    struct store *s = b->s;
    const unsigned char *p = (const unsigned char *)r + store__rec_size(r->val_len);
    uint64_t producer = get_le64(p);
    uint64_t pseq = get_le64(p + 8);
    unsigned char kb[KEY_LEN], vb[VAL_LEN];
    key_make(kb, producer, r->topic_id, pseq);
    put_le64(vb, (r->flags & REC_SCHED) ? 0 : r->seq);     /* scheduled: no sequence yet */
    memcpy(vb + 8, (const unsigned char *)(r + 1) + 8, 8); /* the value's publish time */
    MDB_val k = {KEY_LEN, kb}, v = {VAL_LEN, vb};
    int rc = mdb_put(b->txn, s->dbi_dedupe, &k, &v, 0); /* a replay may put it again */
    if (rc != 0) {
        return rc;
    }
    struct dedupe_slot *sl = slot_of(s, producer, r->topic_id);
    if (sl != NULL && (sl->producer != producer || sl->topic_id != r->topic_id)) {
        /* Taken over: `last` must cover what is stored already, which may
         * be above pseq (a re-sent one stored late, below later ones). */
        uint64_t top = 0;
        rc = prefix_top(b->txn, s->dbi_dedupe, kb, &top);
        if (rc != 0) {
            return rc;
        }
        *sl = (struct dedupe_slot){.producer = producer, .topic_id = r->topic_id, .last = top};
    }
    if (sl != NULL && pseq > sl->last) {
        sl->last = pseq;
    }
    if (pseq <= STORE_DEDUPE_SPAN ||
        (sl != NULL && sl->evicted != 0 && pseq - sl->evicted < EVICT_EVERY)) {
        return 0;
    }
    if (sl != NULL) {
        sl->evicted = pseq;
    }
    return evict_below(b->txn, s->dbi_dedupe, kb, pseq - STORE_DEDUPE_SPAN);
}

int store_batch_dedupe_find(struct store_batch *b, const char *topic, size_t topic_len,
                            uint64_t producer, uint64_t pseq, uint64_t *seq)
{
    struct store *s = b->s;
    if (b->broken_rc != 0) {
        return b->broken_rc;
    }
    if (topic == NULL || topic_len == 0 || topic_len > STORE_TOPIC_MAX || producer == 0) {
        return FERRY_EINVAL;
    }
    if (b->txn == NULL) {
        return FERRY_ESTORAGE; /* cannot happen: a lost txn breaks the batch */
    }
    struct store_topic *t =
        store__topic_find(s, topic, topic_len, store__name_hash(topic, topic_len));
    if (t == NULL) {
        return 0; /* nothing was ever stored there */
    }
    const struct dedupe_slot *sl = slot_of(s, producer, t->id);
    if (sl != NULL && sl->producer == producer && sl->topic_id == t->id && pseq > sl->last) {
        return 0; /* the producer's next one */
    }
    unsigned char kb[KEY_LEN];
    key_make(kb, producer, t->id, pseq);
    MDB_val k = {KEY_LEN, kb}, v;
    int rc = mdb_get(b->txn, s->dbi_dedupe, &k, &v);
    if (rc == 0 && v.mv_size == VAL_LEN) {
        *seq = get_le64(v.mv_data);
        return 1;
    }
    if (rc != MDB_NOTFOUND) {
        return rc == 0 ? store__fail(s, MDB_CORRUPTED) : store__fail(s, rc);
    }
    /* Not kept: new, unless below every sequence kept for this producer
     * on this topic (seen before and since forgotten). */
    MDB_cursor *cur;
    rc = mdb_cursor_open(b->txn, s->dbi_dedupe, &cur);
    if (rc != 0) {
        return store__fail(s, rc);
    }
    key_make(kb, producer, t->id, 0);
    k = (MDB_val){KEY_LEN, kb};
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    int is_old = rc == 0 && k.mv_size == KEY_LEN && memcmp(k.mv_data, kb, PREFIX_LEN) == 0 &&
                 get_be64((const unsigned char *)k.mv_data + PREFIX_LEN) > pseq;
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        return store__fail(s, rc);
    }
    if (is_old) {
        *seq = 0;
        return 1;
    }
    return 0;
}

/* One bounded pass: delete expired entries, walking producer-topic ranges
 * from *k (a whole key; updated to where the next pass goes on). Within a
 * range entries are in sequence order, which is publish order: the
 * expired ones are its first ones. */
static int expire_chunk(MDB_txn *txn, MDB_dbi dbi, int64_t before, unsigned char k[KEY_LEN],
                        uint64_t *n, bool *is_done)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0) {
        return rc;
    }
    MDB_val key = {KEY_LEN, k}, val;
    rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
    size_t steps = 0;
    while (rc == 0 && steps++ < EXPIRE_CHUNK) {
        unsigned char cur_key[KEY_LEN];
        if (key.mv_size != KEY_LEN || val.mv_size != VAL_LEN) {
            rc = MDB_CORRUPTED;
            break;
        }
        memcpy(cur_key, key.mv_data, KEY_LEN);
        if ((int64_t)get_le64((const unsigned char *)val.mv_data + 8) < before) {
            rc = mdb_cursor_del(cur, 0);
            if (rc == 0) {
                (*n)++;
                memcpy(k, cur_key, KEY_LEN);
                key = (MDB_val){KEY_LEN, k};
                rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); /* re-seek */
            }
            continue;
        }
        /* A live entry: the rest of its range is newer. Skip to the next
         * producer-topic range: the first key above this prefix. */
        memcpy(k, cur_key, PREFIX_LEN);
        if (!prefix_next(k)) {
            rc = MDB_NOTFOUND; /* the last prefix there can be */
            break;
        }
        key = (MDB_val){KEY_LEN, k};
        rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
    }
    if (rc == 0) {
        memmove(k, key.mv_data, KEY_LEN); /* the next pass starts here */
    }
    *is_done = rc == MDB_NOTFOUND;
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int store_dedupe_expire(struct store *s, int64_t before, struct store_dedupe_pos *pos,
                        uint64_t *n_removed, bool *is_done)
{
    _Static_assert(sizeof(pos->key) == KEY_LEN, "store.h and store_dedupe.c disagree");
    uint64_t n = 0;
    bool done = false;
    int ret = 0;
    pthread_mutex_lock(&s->wlock);
    if (atomic_load(&s->is_failed)) {
        ret = FERRY_ESTORAGE;
    } else {
        MDB_txn *txn;
        int rc = store__wtxn_begin(s, &txn);
        if (rc == 0) {
            rc = expire_chunk(txn, s->dbi_dedupe, before, pos->key, &n, &done);
            if (rc == 0) {
                rc = store__wtxn_commit(s, txn);
            } else {
                store__wtxn_abort(s, txn);
            }
        }
        ret = store__xlate_write(s, rc);
    }
    pthread_mutex_unlock(&s->wlock);
    if (ret == 0) {
        if (n_removed != NULL) {
            *n_removed = n;
        }
        *is_done = done;
        if (done) {
            memset(pos->key, 0, sizeof(pos->key)); /* the next pass starts over */
        }
    }
    return ret;
}

/*
 * store_write.c - the writer path: batches (begin, append, consumer
 * records, log, commit, abort), their records in the write-ahead log,
 * store_sync(), and map growth. Everything here runs on the writer path,
 * with s->wlock held (store_open() also reserves the map's disk blocks).
 *
 * Writer. One batch object per store, guarded by wlock from begin to
 * commit/abort. Each append is encoded once into the batch's arena (a
 * grow-only buffer kept across batches), then put into LMDB from there. The
 * arena is the batch's redo log: when LMDB says MDB_MAP_FULL, the write
 * transaction is dead (LMDB marks it failed), so we abort it, grow the map
 * with no transaction open, begin a new transaction and replay the arena.
 * Per-topic counters live in memory in two copies: `cur` (committed) and
 * `pend` (with the open batch); commit copies pend to cur, abort the other
 * way, so sequences of a failed batch are handed out again.
 *
 * MDB_APPEND: LMDB accepts it only for a key greater than every key in the
 * database. (topic, seq) keys of the topic with the highest id that has
 * messages satisfy that, so appends to that topic (a single hot topic, or
 * the newest one) use MDB_APPEND and fill pages completely; appends to other
 * topics are ordinary puts (O(log n), pages split in halves).
 *
 * Map resize. mdb_env_set_mapsize() needs every transaction of the process
 * ended. map_lock (writer-preferring rwlock) is held shared by every
 * transaction for its whole life and exclusively only around that call,
 * which the writer makes after aborting its own transaction.
 */
#include "store_int.h"
#include "store_wal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/uio.h>

#define ARENA_KEEP (16u << 20) /* arena capacity kept across batches */
#define LOG_SLACK 65536u       /* room kept in a record for topics and consumers */
#define LOG_DELETE UINT32_MAX  /* value length of a consumer record deleted */

/* Count us microseconds in a STORE_LAT_BUCKETS histogram (store.h). */
static void lat_add(atomic_uint_fast64_t *hist, uint64_t us)
{
    int i = 0;
    if (us >= 1) {
        int e = 63 - __builtin_clzll(us); /* floor(log2(us)) */
        /* the quarter within [2^e, 2^(e+1)): compare with 2^(e + q/4) */
        double x = (double)us / (double)(1ull << e);
        int q = x >= 1.6817928305 ? 3 : x >= 1.4142135624 ? 2 : x >= 1.1892071150 ? 1 : 0;
        i = 4 * e + q;
    }
    if (i >= STORE_LAT_BUCKETS) {
        i = STORE_LAT_BUCKETS - 1;
    }
    atomic_fetch_add(&hist[i], 1);
}

/* Count a group commit that started at t0 (store__mono_us) in s->commit_hist. */
static void commit_timed(struct store *s, uint64_t t0)
{
    uint64_t us = store__mono_us() - t0;
    lat_add(s->commit_hist, us);
    atomic_fetch_add(&s->commit_us, us);
}

/* Count a group commit of n messages in s->commit_msgs_hist (store.h). */
static void msgs_add(struct store *s, size_t n)
{
    int i = n == 0 ? 0 : 64 - __builtin_clzll((unsigned long long)n);
    if (i >= STORE_MSGS_BUCKETS) {
        i = STORE_MSGS_BUCKETS - 1;
    }
    atomic_fetch_add(&s->commit_msgs_hist[i], 1);
}

/* fdatasync the log, timed into s->sync_hist. 0 or -errno. */
static int wal_sync_timed(struct store *s)
{
    uint64_t t0 = store__mono_us();
    int rc = wal_sync(s->wal);
    if (rc == 0) {
        uint64_t us = store__mono_us() - t0;
        lat_add(s->sync_hist, us);
        atomic_fetch_add(&s->sync_us, us);
    }
    return rc;
}

/* ---- map growth -------------------------------------------------------- */

/* Reserve disk blocks for the whole map (beyond the file's end, without
 * changing its size). LMDB writes dirty pages with pwrite; on a full disk a
 * write that lands partly is reported by LMDB as EIO, which we must treat as
 * fail-stop, although nothing was lost. With the map's blocks reserved up
 * front, a full disk shows up here instead, as "cannot grow": storage full.
 * Returns 0, or -errno (ENOSPC, EDQUOT). File systems without fallocate
 * (EOPNOTSUPP) count as success: there we rely on ENOSPC alone. */
int store__map_reserve(struct store *s, size_t size)
{
    if (fallocate(s->lock_fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)size) == 0) {
        return 0;
    }
    int e = errno;
    return e == EOPNOTSUPP || e == ENOSYS ? 0 : -e;
}

/* Grow the map (writer, wlock held, no txn of ours open). 0 if it grew. */
int store__map_grow(struct store *s)
{
    size_t cur = atomic_load(&s->map_size);
    if (cur >= s->map_max) {
        return -1;
    }
    /* Double while small, then steps of map_grow_step: the disk blocks
     * reserved ahead of the data stay bounded (store__map_reserve() reserves the
     * whole map). */
    size_t grow = cur < s->map_grow_step ? cur : s->map_grow_step;
    if (grow < (1u << 20)) {
        grow = 1u << 20;
    }
    size_t next = s->map_max - cur < grow ? s->map_max : cur + grow;
    next = (next + s->page_size - 1) / s->page_size * s->page_size;
    if (next > s->map_max) {
        next = s->map_max;
    }
    if (next <= cur) {
        return -1;
    }
    /* On a nearly full disk, grow by what still fits (down to 256 KiB). */
    while (store__map_reserve(s, next) < 0) {
        size_t step = (next - cur) / 2 / s->page_size * s->page_size;
        if (step < (256u << 10)) {
            return -1; /* the disk cannot hold a larger map now: storage full */
        }
        next = cur + step;
    }
    /* Exclusive: no transaction of this process may be open during this.
     * The checkpoint pins (s->pin, s->pin_next) are the exception: read
     * transactions that never read, so the remap cannot hurt them; LMDB
     * checks only for a write transaction, and they must go on pinning. */
    pthread_rwlock_wrlock(&s->map_lock);
    int rc = mdb_env_set_mapsize(s->env, next);
    MDB_envinfo info;
    if (rc == 0) {
        mdb_env_info(s->env, &info);
    }
    pthread_rwlock_unlock(&s->map_lock);
    if (rc != 0) {
        return -1;
    }
    atomic_store(&s->map_size, info.me_mapsize);
    atomic_fetch_add(&s->n_map_grows, 1);
    return 0;
}

/* ---- writer path ------------------------------------------------------- */

/* Put one arena record into the batch's txn. Returns an MDB/errno code. */
static int rec_apply(struct store_batch *b, const struct rec_hdr *r)
{
    struct store *s = b->s;
    if (r->flags & REC_UNSCHED_ONLY) {
        return store__unsched_apply(b, r);
    }
    if (r->flags & REC_SCHED) {
        int rc = store__sched_apply(b, r); /* not in the topic until it is due */
        return rc == 0 && (r->flags & REC_DEDUPE) ? store__dedupe_apply(b, r) : rc;
    }
    unsigned char kb[MSG_KEY_LEN];
    store__msg_key_make(kb, r->topic_id, r->seq);
    MDB_val k = {MSG_KEY_LEN, kb};
    MDB_val v = {r->val_len, (void *)(r + 1)};
    /* NOOVERWRITE: a duplicate (topic, seq) would be our bug; never hide it. */
    int rc = mdb_put(b->txn, s->dbi_msgs, &k, &v,
                     (r->flags & REC_APPEND_MSG) ? MDB_APPEND : MDB_NOOVERWRITE);
    if (rc == 0 && (r->flags & REC_DEDUPE)) {
        rc = store__dedupe_apply(b, r);
    }
    if (rc == 0 && (r->flags & REC_LASTVAL)) {
        rc = store__lastval_apply(b, r);
    }
    if (rc == 0 && (r->flags & REC_UNSCHED)) {
        rc = store__unsched_apply(b, r);
    }
    if (rc != 0 || !(r->flags & REC_TIDX)) {
        return rc;
    }
    unsigned char tk[MSG_KEY_LEN];
    unsigned char tv[8];
    put_be32(tk, r->topic_id);
    put_be64(tk + 4, r->tkey);
    put_be64(tv, r->seq);
    MDB_val ik = {MSG_KEY_LEN, tk};
    MDB_val iv = {8, tv};
    return mdb_put(b->txn, s->dbi_tidx, &ik, &iv,
                   (r->flags & REC_APPEND_TIDX) ? MDB_APPEND : MDB_NOOVERWRITE);
}

/* Begin a fresh txn and replay every record of the arena into it. */
static int batch_redo(struct store_batch *b)
{
    int rc = store__wtxn_begin(b->s, &b->txn);
    if (rc != 0) {
        b->txn = NULL;
        return rc;
    }
    atomic_fetch_add(&b->s->n_batch_replays, 1);
    for (size_t off = 0; off < b->arena_len;) {
        const struct rec_hdr *r = (const struct rec_hdr *)(b->arena + off);
        rc = rec_apply(b, r);
        if (rc != 0) {
            store__wtxn_abort(b->s, b->txn);
            b->txn = NULL;
            return rc;
        }
        off += store__rec_len(r);
    }
    return 0;
}

/* The txn failed with rc (LMDB marked it unusable). Abort it, grow the map
 * if rc is MDB_MAP_FULL and growth is allowed, and rebuild the txn from the
 * arena. Returns 1 if the map grew, 0 if not, or a negative ferry code with
 * the batch now broken. */
static int batch_recover(struct store_batch *b, int rc)
{
    struct store *s = b->s;
    if (b->txn != NULL) {
        store__wtxn_abort(s, b->txn);
        b->txn = NULL;
    }
    bool grew = rc == MDB_MAP_FULL && store__map_grow(s) == 0;
    if (rc == MDB_MAP_FULL && !grew && !b->is_space_freed) {
        /* Pages freed since the last checkpoint are pinned for recovery:
         * a checkpoint lets LMDB reuse them. Once per batch. */
        b->is_space_freed = true;
        grew = store__ckpt_sync(s) == 0;
    }
    int rc2 = batch_redo(b);
    if (rc2 != 0) {
        if (store__is_full_error(rc2)) {
            b->broken_rc = FERRY_ESTORAGEFULL;
        } else if (rc2 == ENOMEM) {
            b->broken_rc = -ENOMEM;
        } else {
            b->broken_rc = store__fail(s, rc2);
        }
        return b->broken_rc;
    }
    return grew ? 1 : 0;
}

int store_batch_begin(struct store *s, struct store_batch **out)
{
    if (atomic_load(&s->is_failed)) {
        return FERRY_ESTORAGE;
    }
    pthread_mutex_lock(&s->wlock);
    struct store_batch *b = &s->batch;
    if (atomic_load(&s->is_failed)) {
        pthread_mutex_unlock(&s->wlock);
        return FERRY_ESTORAGE;
    }
    int rc = store__wtxn_begin(s, &b->txn);
    if (rc != 0) {
        pthread_mutex_unlock(&s->wlock);
        return rc == ENOMEM ? -ENOMEM : store__fail(s, rc);
    }
    b->is_open = true;
    b->broken_rc = 0;
    b->arena_len = 0;
    b->n_msgs = 0;
    b->n_msgs_logged = 0;
    b->dirty = NULL;
    b->cons_len = 0;
    b->n_cons = 0;
    b->log_off = 0;
    b->cons_logged = 0;
    b->n_cons_logged = 0;
    b->is_promised = false;
    b->saved_next_id = s->next_topic_id;
    b->saved_msg_max = s->msg_max_topic;
    b->saved_tidx_max = s->tidx_max_topic;
    b->is_replay = false;
    b->is_logged = false;
    b->is_unlogged = false;
    b->is_space_freed = false;
    b->sched_delta = 0;
    *out = b;
    return 0;
}

int store__arena_reserve(struct store_batch *b, size_t need)
{
    if (b->arena_cap - b->arena_len >= need) {
        return 0;
    }
    size_t cap = b->arena_cap ? b->arena_cap : 64u << 10;
    while (cap - b->arena_len < need) {
        if (cap > SIZE_MAX / 2) {
            return -ENOMEM;
        }
        cap *= 2;
    }
    unsigned char *p = realloc(b->arena, cap);
    if (p == NULL) {
        return -ENOMEM;
    }
    b->arena = p;
    b->arena_cap = cap;
    return 0;
}

/* Put arena record r (just past the arena's used part) into the txn,
 * growing the map and replaying the batch when LMDB asks for it. Returns 0
 * or a ferry code (the record is then not part of the batch). */
int store__batch_put(struct store_batch *b, struct rec_hdr *r)
{
    struct store *s = b->s;
    for (;;) {
        int rc = b->txn != NULL ? rec_apply(b, r) : MDB_BAD_TXN;
        if (rc == 0) {
            return 0;
        }
        if (rc == MDB_MAP_FULL || rc == MDB_TXN_FULL || rc == ENOMEM || rc == MDB_BAD_TXN) {
            int grew = batch_recover(b, rc);
            if (grew < 0) {
                return grew;
            }
            if (grew == 1) {
                continue;
            }
            if (rc == MDB_MAP_FULL) {
                atomic_fetch_add(&s->n_full_errors, 1);
                return FERRY_ESTORAGEFULL;
            }
            return rc == MDB_TXN_FULL ? FERRY_ELIMIT : -ENOMEM;
        }
        /* Corruption, a duplicate key, EIO: the store cannot be trusted. */
        b->broken_rc = store__fail(s, rc);
        return b->broken_rc;
    }
}

/* Put t on the batch's dirty list (its record is written at the commit). */
static void batch_dirty(struct store_batch *b, struct store_topic *t)
{
    if (!t->is_dirty) {
        t->is_dirty = true;
        t->dnext = b->dirty;
        b->dirty = t;
    }
}

/* Scheduled record (need bytes, now in the txn) joins the batch: its topic
 * counts nothing yet, but a new one must be written. */
void store__batch_account_sched(struct store_batch *b, struct store_topic *t, size_t need)
{
    b->arena_len += need;
    b->n_msgs++;
    b->sched_delta++;
    batch_dirty(b, t);
}

/* Record r (need bytes, now in the txn) joins the batch: count it in its
 * topic's pending state. */
void store__batch_account(struct store_batch *b, struct store_topic *t, const struct rec_hdr *r,
                          size_t need, int64_t when)
{
    struct store *s = b->s;
    struct topic_state *st = &t->pend;
    b->arena_len += need;
    b->n_msgs++;
    st->last_seq = r->seq;
    st->n_msgs++;
    st->n_bytes += r->val_len - VAL_HDR_LEN;
    st->last_time = when;
    if (t->id > s->msg_max_topic) {
        s->msg_max_topic = t->id;
    }
    if ((r->flags & REC_TIDX) && t->id > s->tidx_max_topic) {
        s->tidx_max_topic = t->id;
    }
    batch_dirty(b, t);
}

/* Add m to the batch: appended to topic (due 0), or scheduled for due
 * (REC_SCHED: store_sched.c). */
static int batch_add(struct store_batch *b, const char *topic, size_t topic_len,
                     const struct store_msg_in *m, int64_t due, struct store_append_result *res)
{
    struct store *s = b->s;
    if (b->broken_rc != 0) {
        return b->broken_rc;
    }
    if (topic == NULL || topic_len == 0 || topic_len > STORE_TOPIC_MAX || m == NULL ||
        m->n_headers > UINT16_MAX || (m->n_headers && m->headers == NULL) ||
        (m->payload_len && m->payload == NULL) || (m->key_len && m->key == NULL) ||
        (m->is_last_value && m->key_len > STORE_LASTVAL_KEY_MAX)) {
        return FERRY_EINVAL;
    }
    uint64_t hlen = 0;
    for (size_t i = 0; i < m->n_headers; i++) {
        const struct store_kv *h = &m->headers[i];
        if (h->key_len > UINT32_MAX || h->value_len > UINT32_MAX ||
            (h->key_len && h->key == NULL) || (h->value_len && h->value == NULL)) {
            return FERRY_EINVAL;
        }
        hlen += 8 + (uint64_t)h->key_len + h->value_len;
    }
    uint64_t val_len =
        VAL_HDR_LEN + hlen + (uint64_t)m->key_len + m->payload_len + (m->expire_time ? 8 : 0);
    if (hlen > UINT32_MAX || m->key_len > UINT32_MAX || m->payload_len > UINT32_MAX ||
        val_len > UINT32_MAX - 8) {
        return FERRY_EINVAL;
    }

    /* A batch stays below half a log's half, consumer records included:
     * then what it logged, written again into a fresh generation when a
     * checkpoint starts while it is open (store__batch_relog), still fits with
     * the rest. A full batch commits (the caller appends again after); a
     * single message larger than that goes alone (one larger than the
     * whole log is committed with a checkpoint). */
    size_t need = store__rec_size((uint32_t)val_len) + (m->producer_id ? DEDUPE_TRAILER : 0) +
                  (m->unsched_id ? SCHED_TRAILER : 0);
    if (b->n_msgs > 0 &&
        LOG_HEAD + LOG_SLACK + b->arena_len + b->cons_len + need > wal_max_payload(s->wal) / 2) {
        return FERRY_ELIMIT;
    }
    uint32_t h = store__name_hash(topic, topic_len);
    struct store_topic *t = store__topic_find(s, topic, topic_len, h);
    bool is_created = false;
    if (t == NULL) {
        if (s->next_topic_id == UINT32_MAX) {
            return FERRY_ELIMIT;
        }
        t = store__topic_alloc(topic, topic_len, h, s->next_topic_id);
        if (t == NULL) {
            return -ENOMEM;
        }
        t->is_new = true;
        is_created = true;
    }
    int ret = store__arena_reserve(b, need);
    if (ret != 0) {
        goto out_drop;
    }
    struct topic_state *st = &t->pend;
    struct rec_hdr *r = (struct rec_hdr *)(b->arena + b->arena_len);
    int64_t when = store__clamped_time(st, m->publish_time);
    bool has_tidx =
        st->last_time == TIME_NONE || store__time_bucket(when) > store__time_bucket(st->last_time);
    r->topic_id = t->id;
    r->val_len = (uint32_t)val_len;
    r->pad = 0;
    if (due != 0) {
        r->seq = store__sched_id_new(b, due);
        r->tkey = store__time_bias(due);
        r->flags = REC_SCHED;
    } else {
        r->seq = st->last_seq + 1;
        r->tkey = store__time_bias(store__time_bucket(when));
        r->flags = t->id >= s->msg_max_topic ? REC_APPEND_MSG : 0;
        if (has_tidx) {
            r->flags |= REC_TIDX | (t->id >= s->tidx_max_topic ? REC_APPEND_TIDX : 0);
        }
        if (m->is_last_value && m->key_len > 0) {
            r->flags |= REC_LASTVAL;
        }
    }
    store__value_encode(r, m, (size_t)hlen);
    if (m->producer_id != 0) {
        r->flags |= REC_DEDUPE;
        store__dedupe_trailer_put(r, m->producer_id, m->producer_seq);
    }
    if (due == 0 && m->unsched_id != 0) {
        r->flags |= REC_UNSCHED;
        store__unsched_trailer_put(r, m->unsched_due, m->unsched_id);
    }
    ret = store__batch_put(b, r);
    if (ret != 0) {
        goto out_drop;
    }
    if (is_created) {
        /* The message is in the txn; a failed insert rolls it back with the
         * batch, which is the only consistent thing to do. */
        if (store__topic_insert(s, t) != 0) {
            free(t);
            b->broken_rc = -ENOMEM;
            return -ENOMEM;
        }
        s->next_topic_id++;
    }
    if (due != 0) {
        store__batch_account_sched(b, t, need);
    } else {
        store__batch_account(b, t, r, need, when);
        b->sched_delta -= (r->flags & REC_UNSCHED) ? 1 : 0;
    }
    if (res != NULL) {
        res->topic_id = t->id;
        res->seq = r->seq;
    }
    return 0;

out_drop:
    if (is_created) {
        free(t);
    }
    return ret;
}

int store_batch_append(struct store_batch *b, const char *topic, size_t topic_len,
                       const struct store_msg_in *m, struct store_append_result *res)
{
    return batch_add(b, topic, topic_len, m, 0, res);
}

int store_batch_schedule(struct store_batch *b, const char *topic, size_t topic_len,
                         const struct store_msg_in *m, int64_t due, struct store_append_result *res)
{
    if (due == 0 || due == INT64_MAX || m == NULL || m->unsched_id != 0 ||
        m->n_headers > STORE_SCHED_HEADERS_MAX) {
        return FERRY_EINVAL;
    }
    return batch_add(b, topic, topic_len, m, due, res);
}

/* An open batch this large is committed at once: LMDB's fixed cost per
 * commit (about ten pages) is small beside it, and large commits held back
 * make page writeback come in bursts that the log's syncs wait behind. */
#define BATCH_COMMIT_BYTES (1u << 20)

int store_batch_commit_is_due(struct store_batch *b)
{
    struct store *s = b->s;
    if (b->arena_len >= BATCH_COMMIT_BYTES || store__ckpt_is_due(s)) {
        return 1;
    }
    /* Twice the largest open batch (it must still commit), and a margin. */
    uint64_t need = 2 * (uint64_t)wal_max_payload(s->wal) + (4u << 20);
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    uint64_t used = ((uint64_t)info.me_last_pgno + 1) * s->page_size;
    uint64_t map = atomic_load(&s->map_size);
    uint64_t room = map > used ? map - used : 0;
    if (room >= need) {
        return 0;
    }
    /* The map may still grow: by what its bound and the disk allow. */
    uint64_t grow = s->map_max > map ? s->map_max - map : 0;
    struct statvfs sv;
    if (grow > 0 && fstatvfs(s->lock_fd, &sv) == 0) {
        uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
        grow = grow < avail ? grow : avail;
    }
    return room + grow < need;
}

size_t store_batch_count(const struct store_batch *b)
{
    return b->n_msgs;
}

/* Undo the batch's effect on the in-memory state. */
static void batch_rollback(struct store_batch *b)
{
    struct store *s = b->s;
    struct store_topic *t = b->dirty;
    while (t != NULL) {
        struct store_topic *next = t->dnext;
        if (t->is_new) {
            store__topic_unlink(s, t);
            free(t);
        } else {
            t->pend = t->cur;
            t->is_dirty = false;
            t->dnext = NULL;
        }
        t = next;
    }
    b->dirty = NULL;
    s->next_topic_id = b->saved_next_id;
    s->msg_max_topic = b->saved_msg_max;
    s->tidx_max_topic = b->saved_tidx_max;
}

static void batch_release(struct store_batch *b)
{
    struct store *s = b->s;
    if (b->arena_cap > ARENA_KEEP) {
        free(b->arena);
        b->arena = NULL;
        b->arena_cap = 0;
    }
    b->arena_len = 0;
    b->cons_len = 0;
    b->n_cons = 0;
    if (b->cons_cap > ARENA_KEEP) {
        free(b->cons_buf);
        b->cons_buf = NULL;
        b->cons_cap = 0;
    }
    b->is_open = false;
    pthread_mutex_unlock(&s->wlock);
}

static int topic_records_put(struct store_batch *b)
{
    struct store *s = b->s;
    unsigned char buf[TOPIC_REC_HDR + STORE_TOPIC_MAX];
    for (struct store_topic *t = b->dirty; t != NULL; t = t->dnext) {
        unsigned char kb[4];
        put_be32(kb, t->id);
        store__topic_rec_encode(buf, t->id, &t->pend, t->name, t->name_len);
        MDB_val k = {4, kb};
        MDB_val v = {TOPIC_REC_HDR + (size_t)t->name_len, buf};
        int rc = mdb_put(b->txn, s->dbi_topics, &k, &v, 0);
        if (rc == 0 && t->is_new) {
            MDB_val nk = {t->name_len, t->name};
            MDB_val nv = {4, kb};
            rc = mdb_put(b->txn, s->dbi_names, &nk, &nv, MDB_NOOVERWRITE);
        }
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* Write (value) or delete (LOG_DELETE) the consumer records of buf (the
 * log's format: key_len u32, value_len u32, key, value) in txn, in order.
 * Returns an MDB code, or MDB_CORRUPTED for a malformed buf. */
static int consumers_write(struct store *s, MDB_txn *txn, const unsigned char *buf, size_t len)
{
    int rc = 0;
    for (size_t off = 0; rc == 0 && off < len;) {
        if (len - off < 8) {
            return MDB_CORRUPTED;
        }
        uint32_t kl = get_le32(buf + off);
        uint32_t vl = get_le32(buf + off + 4);
        size_t vbytes = vl == LOG_DELETE ? 0 : vl;
        if (kl == 0 || kl > STORE_CONSUMER_KEY_MAX || len - off - 8 < (size_t)kl + vbytes) {
            return MDB_CORRUPTED;
        }
        MDB_val k = {kl, (void *)(buf + off + 8)};
        if (vl == LOG_DELETE) {
            rc = mdb_del(txn, s->dbi_consumers, &k, NULL);
            rc = rc == MDB_NOTFOUND ? 0 : rc;
        } else {
            MDB_val v = {vl, (void *)(buf + off + 8 + kl)};
            rc = mdb_put(txn, s->dbi_consumers, &k, &v, 0);
        }
        off += 8 + kl + vbytes;
    }
    return rc;
}

static int consumer_keys_check(const struct store_kv *recs, size_t n)
{
    if (n > 0 && recs == NULL) {
        return FERRY_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (recs[i].key_len == 0 || recs[i].key_len > STORE_CONSUMER_KEY_MAX) {
            return FERRY_EINVAL;
        }
    }
    return 0;
}

int store_batch_put_consumers(struct store_batch *b, const struct store_kv *recs, size_t n)
{
    int rc = consumer_keys_check(recs, n);
    if (rc != 0) {
        return rc;
    }
    size_t need = 0;
    for (size_t i = 0; i < n; i++) {
        if (recs[i].value && recs[i].value_len >= LOG_DELETE) {
            return FERRY_EINVAL;
        }
        need += 8 + recs[i].key_len + (recs[i].value ? recs[i].value_len : 0);
    }
    if (b->cons_len + need > b->cons_cap) {
        size_t cap = b->cons_cap ? b->cons_cap : 4096;
        while (cap < b->cons_len + need) {
            cap *= 2;
        }
        unsigned char *p = realloc(b->cons_buf, cap);
        if (p == NULL) {
            return -ENOMEM;
        }
        b->cons_buf = p;
        b->cons_cap = cap;
    }
    unsigned char *p = b->cons_buf + b->cons_len;
    for (size_t i = 0; i < n; i++) {
        const struct store_kv *kv = &recs[i];
        put_le32(p, (uint32_t)kv->key_len);
        put_le32(p + 4, kv->value ? (uint32_t)kv->value_len : LOG_DELETE);
        memcpy(p + 8, kv->key, kv->key_len);
        p += 8 + kv->key_len;
        if (kv->value && kv->value_len) {
            memcpy(p, kv->value, kv->value_len);
            p += kv->value_len;
        }
    }
    b->cons_len += need;
    b->n_cons += (uint32_t)n;
    return 0;
}

/*
 * A batch's log records. A batch is logged in parts (store_batch_log(),
 * then the rest at its commit); each record holds one part:
 *   n_topics u32 | n_cons u32 | arena_len u64 | cons_len u64 |
 *   the topics it creates { id u32, name_len u16, name } |
 *   arena bytes (rec_hdr + value each, as rec_apply() takes them) |
 *   consumer records (consumers_write()'s format).
 * Host byte order inside the arena, like LMDB's own files. When a
 * checkpoint starts while a batch is open, the part already logged is
 * written again into the new generation (store__batch_relog()): the checkpoint's
 * snapshot does not hold the open batch, and replay must find all of it.
 * Replay skips what it already applied (a sequence at or below the
 * topic's last, a topic that exists with the same id).
 */
static int wal_buf_reserve(struct store *s, size_t n)
{
    if (n <= s->wal_buf_cap) {
        return 0;
    }
    unsigned char *p = realloc(s->wal_buf, n);
    if (p == NULL) {
        return -ENOMEM;
    }
    s->wal_buf = p;
    s->wal_buf_cap = n;
    return 0;
}

/* The record of arena [a0, a1) and cons_buf [c0, c1) (n_cons records),
 * with the new topics whose is_logged equals is_relog. Written, not
 * synced. Returns 0, or a negative errno (nothing usable written). */
static int log_part(struct store_batch *b, size_t a0, size_t a1, size_t c0, size_t c1,
                    uint32_t n_cons, bool is_relog)
{
    struct store *s = b->s;
    size_t tl = 0;
    uint32_t n_topics = 0;
    for (struct store_topic *t = b->dirty; t != NULL; t = t->dnext) {
        if (t->is_new && t->is_logged == is_relog) {
            tl += 6 + (size_t)t->name_len;
            n_topics++;
        }
    }
    size_t head = LOG_HEAD + tl;
    if (wal_buf_reserve(s, head) < 0) {
        return -ENOMEM;
    }
    unsigned char *p = s->wal_buf;
    put_le32(p, n_topics);
    put_le32(p + 4, n_cons);
    put_le64(p + 8, a1 - a0);
    put_le64(p + 16, c1 - c0);
    p += LOG_HEAD;
    for (struct store_topic *t = b->dirty; t != NULL; t = t->dnext) {
        if (t->is_new && t->is_logged == is_relog) {
            put_le32(p, t->id);
            put_le16(p + 4, t->name_len);
            memcpy(p + 6, t->name, t->name_len);
            p += 6 + t->name_len;
            t->is_logged = true;
        }
    }
    struct iovec v[3] = {{s->wal_buf, head}};
    int n = 1;
    if (a1 > a0) {
        v[n++] = (struct iovec){b->arena + a0, a1 - a0};
    }
    if (c1 > c0) {
        v[n++] = (struct iovec){b->cons_buf + c0, c1 - c0};
    }
    return wal_append(s->wal, WAL_BATCH, v, n);
}

static int log_sync(struct store *s, bool is_forced)
{
    if (s->sync_mode != STORE_SYNC_ALWAYS && !is_forced) {
        return 0;
    }
    int rc = wal_sync_timed(s);
    if (rc < 0) {
        wal_void_last(s->wal); /* not acked: best not replayed either */
    }
    return rc;
}

/* A checkpoint started (new generation) while b is open: log again, and
 * sync, what b had logged in the old one. 0 or FERRY_ESTORAGE. */
int store__batch_relog(struct store_batch *b)
{
    struct store *s = b->s;
    if (!b->is_logged || b->logged_gen == s->gen) {
        return 0;
    }
    int rc = log_part(b, 0, b->log_off, 0, b->cons_logged, b->n_cons_logged, true);
    if (rc == 0) {
        rc = log_sync(s, true);
    }
    if (rc < 0) {
        return store__fail(s, -rc);
    }
    b->logged_gen = s->gen;
    return 0;
}

/*
 * Large messages are written once: a batch of them, nothing of it logged yet
 * (under sync always), skips the log. Its commit then writes LMDB's pages
 * and makes them durable with a checkpoint (two syncs, of the pages and of
 * the checkpoint record, instead of one of the log): each byte goes to the
 * disk once, not twice (log, then LMDB), which is what bounds the bandwidth
 * of a stream of large messages. Small messages keep the log: for them two
 * syncs cost more than the second copy, and their LMDB pages are written
 * for many group commits at once.
 */
#define BULK_MIN_BYTES (256u << 10) /* the batch's records at least this large, */
#define BULK_MIN_AVG 4096u          /* and this large on average per message */

static bool is_bulk(const struct store_batch *b)
{
    size_t len = b->arena_len - b->log_off;
    size_t n = b->n_msgs - b->n_msgs_logged;
    return !b->is_logged && b->s->sync_mode == STORE_SYNC_ALWAYS && len >= BULK_MIN_BYTES &&
           len >= n * BULK_MIN_AVG;
}

/*
 * Log what b holds beyond its last record (and sync it under sync always):
 * from now on it is durable, whatever becomes of this process. A part too
 * large for the log marks the batch is_unlogged instead (its commit then
 * checkpoints). Returns 0 or FERRY_ESTORAGE (fail-stopped).
 */
static int batch_log(struct store_batch *b)
{
    struct store *s = b->s;
    if (b->is_unlogged || (b->log_off == b->arena_len && b->cons_logged == b->cons_len)) {
        return 0;
    }
    size_t total =
        LOG_HEAD + LOG_SLACK + (b->arena_len - b->log_off) + (b->cons_len - b->cons_logged);
    if (b->is_logged) {
        total += b->log_off + b->cons_logged; /* a relog may have to precede it */
    }
    if (total > wal_max_payload(s->wal) || is_bulk(b)) {
        if (b->is_logged) {
            /* Appends keep a batch below half the log; only consumer
             * records of more than that in one batch get here. */
            return store__fail(s, EFBIG);
        }
        b->is_unlogged = true;
        return 0;
    }
    if (!wal_fits(s->wal, total - LOG_SLACK)) {
        int rc = store__ckpt_begin(s); /* a fresh generation, in the other half; relogs b */
        if (rc < 0) {
            return rc;
        }
    }
    uint64_t t0 = store__mono_us();
    int rc = log_part(b, b->log_off, b->arena_len, b->cons_logged, b->cons_len,
                      b->n_cons - b->n_cons_logged, false);
    if (rc == 0) {
        rc = log_sync(s, false);
    }
    if (rc == 0) {
        atomic_fetch_add(&s->n_commits, 1); /* a group commit: one record */
        commit_timed(s, t0);
        msgs_add(s, b->n_msgs - b->n_msgs_logged);
        b->n_msgs_logged = b->n_msgs;
    }
    if (rc < 0) {
        return store__fail(s, -rc); /* never retry a failed write or sync */
    }
    b->log_off = b->arena_len;
    b->cons_logged = b->cons_len;
    b->n_cons_logged = b->n_cons;
    b->is_logged = true;
    b->logged_gen = s->gen;
    return 0;
}

int store_batch_log(struct store_batch *b)
{
    if (b->broken_rc != 0) {
        return b->broken_rc;
    }
    int rc = batch_log(b);
    if (rc == 0 && !b->is_unlogged) {
        b->is_promised = true;
    }
    return rc != 0 ? rc : b->is_unlogged ? 1 : 0;
}

int store_batch_commit(struct store_batch *b)
{
    struct store *s = b->s;
    int ret = b->broken_rc;
    if (ret != 0) {
        goto out_rollback;
    }
    if (b->n_msgs == 0 && b->n_cons == 0) {
        if (b->txn != NULL) {
            store__wtxn_abort(s, b->txn);
            b->txn = NULL;
        }
        batch_release(b);
        return 0;
    }
    uint64_t t0 = store__mono_us();
    for (;;) {
        int rc = b->txn != NULL ? topic_records_put(b) : MDB_BAD_TXN;
        if (rc == 0) {
            rc = consumers_write(s, b->txn, b->cons_buf, b->cons_len);
        }
        if (rc == 0 && !b->is_replay) {
            int lrc = batch_log(b);
            if (lrc < 0) {
                ret = lrc;
                goto out_rollback;
            }
        }
        if (rc == 0) {
            if (b->is_unlogged) { /* visible from the commit, durable later */
                atomic_store(&s->undurable_txn, (uint64_t)mdb_txn_id(b->txn));
            }
            rc = store__wtxn_commit(s, b->txn);
            b->txn = NULL;
            if (rc == 0) {
                break;
            }
            atomic_store(&s->undurable_txn, 0); /* nothing was committed */
        }
        if (rc == MDB_MAP_FULL || rc == MDB_BAD_TXN) {
            int grew = batch_recover(b, rc);
            if (grew == 1) {
                continue;
            }
            if (grew < 0) {
                ret = grew;
                goto out_rollback;
            }
        }
        if (b->txn != NULL) {
            store__wtxn_abort(s, b->txn);
            b->txn = NULL;
        }
        if (b->is_promised) {
            /* Parts of it were acked as durable: they are in the log, and
             * a restart replays them. Nothing else may be stored first. */
            ret = atomic_load(&s->is_failed) ? FERRY_ESTORAGE : store__fail(s, rc);
        } else if (store__is_full_error(rc)) {
            /* Disk full (from pwrite, or from fdatasync on filesystems
             * that allocate late). The meta page was not written, so the
             * pages of this txn are referenced by nothing; LMDB hands the
             * same pages out again and rewrites them before any meta page
             * points to them. So, unlike EIO, it is safe to go on. If the
             * meta write itself failed, LMDB refuses further txns
             * (MDB_PANIC) and the next begin fail-stops us. */
            atomic_fetch_add(&s->n_full_errors, 1);
            ret = FERRY_ESTORAGEFULL;
        } else if (rc == ENOMEM) {
            ret = -ENOMEM;
        } else if (rc == MDB_TXN_FULL) {
            ret = FERRY_ELIMIT;
        } else {
            ret = store__fail(s, rc); /* EIO, failed fsync, panic: fail-stop */
        }
        goto out_rollback;
    }
    for (struct store_topic *t = b->dirty; t != NULL;) {
        struct store_topic *next = t->dnext;
        t->cur = t->pend;
        if (t->is_new) {
            atomic_fetch_add(&s->n_topics, 1);
        }
        t->is_new = false;
        t->is_logged = false;
        t->is_dirty = false;
        t->dnext = NULL;
        t = next;
    }
    b->dirty = NULL;
    atomic_fetch_add(&s->n_appends, b->n_msgs);
    atomic_fetch_add(&s->n_scheduled, (uint_fast64_t)b->sched_delta); /* mod 2^64 */
    if (b->is_unlogged) {
        /* Not in the log (bulk, or larger than the log): durable once a
         * checkpoint holds it. Readers whose snapshot holds it wait for
         * that (store__rtxn_begin); if it fails, they fail. */
        ret = store__ckpt_sync(s);
        pthread_mutex_lock(&s->ck_mu);
        if (ret == 0) {
            atomic_store(&s->undurable_txn, 0);
        }
        pthread_cond_broadcast(&s->dur_cv);
        pthread_mutex_unlock(&s->ck_mu);
        atomic_fetch_add(&s->n_commits, 1);
        commit_timed(s, t0);
        msgs_add(s, b->n_msgs);
    } else if (!b->is_replay) {
        (void)store__ckpt_maybe(s); /* a failure fail-stops; this batch is logged */
    }
    batch_release(b);
    return ret;

out_rollback:
    if (b->txn != NULL) {
        store__wtxn_abort(s, b->txn);
        b->txn = NULL;
    }
    if (b->is_logged && !b->is_promised && !atomic_load(&s->is_failed)) {
        /* Its records are in the log but the batch is not stored: a
         * checkpoint ends that generation, so they are never replayed. */
        b->is_logged = false; /* nothing to log again into the next one */
        (void)store__ckpt_sync(s);
    }
    batch_rollback(b);
    batch_release(b);
    return ret;
}

void store_batch_abort(struct store_batch *b)
{
    if (b->txn != NULL) {
        store__wtxn_abort(b->s, b->txn);
        b->txn = NULL;
    }
    batch_rollback(b);
    batch_release(b);
}

int store_sync(struct store *s)
{
    if (s->sync_mode == STORE_SYNC_ALWAYS) {
        return 0;
    }
    pthread_mutex_lock(&s->wlock);
    int ret = 0;
    if (atomic_load(&s->is_failed)) {
        ret = FERRY_ESTORAGE;
    } else {
        int rc = wal_sync_timed(s);
        if (rc != 0) {
            ret = store__fail(s, -rc); /* never retry a failed fsync */
        }
    }
    pthread_mutex_unlock(&s->wlock);
    return ret;
}

/* ---- durable consumer state ------------------------------------------- */

int store_consumers_put(struct store *s, const struct store_kv *recs, size_t n)
{
    if (n == 0) {
        return 0;
    }
    int ret = consumer_keys_check(recs, n);
    if (ret != 0) {
        return ret;
    }
    /* A batch of consumer records only: logged and durable like any. */
    struct store_batch *b;
    ret = store_batch_begin(s, &b);
    if (ret != 0) {
        return ret;
    }
    store_batch_put_consumers(b, recs, n);
    return store_batch_commit(b);
}

/*
 * store_ckpt.c - checkpoints, the checkpoint thread, and recovery: the last
 * checkpoint put back and the write-ahead log replayed at open (the log's
 * files are store_wal.c's).
 *
 * Durability (store_wal.h). LMDB runs with MDB_NOSYNC. A batch is durable
 * when its log record is (store_batch_log(), or its commit); it becomes
 * visible to readers at its LMDB commit. Checkpoints (a thread of their
 * own) make LMDB's pages durable and record the snapshot's meta pages; a
 * pinned read transaction keeps that snapshot's pages from reuse until the
 * next checkpoint is durable. store_open() writes the meta pages back and
 * replays the log: the only writes not in the log (trims, and purges, which
 * wait for a checkpoint before they answer) may be undone by a power cut,
 * and a trim is simply done again.
 */
#include "store_int.h"
#include "store_wal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CKPT_COMMITS 2048u /* a checkpoint starts after this many commits, */
#define CKPT_MS 1000u      /* or this long after the last one (with commits), */
#define CKPT_WAL_PART 2u   /* or when 1/this of the log's half is used */
#define CKPT_IDLE_MS 50L   /* the checkpoint thread's wake-up when nothing is committed */
#define CKPT_TRICKLE_MS 5L /* writeback of LMDB pages starts this often */

/* ---- checkpoints (store_wal.h; the writer path, wlock) ----------------- */

static uint64_t mono_ms(void)
{
    return store__mono_us() / 1000u;
}

/* The checkpoint thread: make ck_gen's snapshot durable, then record it. */
static void *ckpt_main(void *arg)
{
    struct store *s = arg;
    /* Its name in ps -L and top -H, and in ferryd's log (log.c reads the
     * kernel's name of a thread the broker did not name: the store does
     * not log itself). Failure is harmless. */
    pthread_setname_np(pthread_self(), "ckpt");
    uint64_t seen = 0;    /* n_commits at the last trickle */
    bool is_busy = false; /* the last wait saw commits */
    pthread_mutex_lock(&s->ck_mu);
    for (;;) {
        while (!s->ck_stop && s->ck_state != CK_REQUESTED) {
            /* Between checkpoints, start the writeback of LMDB's dirty pages
             * every CKPT_TRICKLE_MS while messages are committed: the
             * checkpoint's fdatasync then finds little to write, and the
             * log's syncs never queue behind a second's worth of page
             * writes. Idle, the thread wakes only every CKPT_IDLE_MS. */
            long wait_ms = is_busy ? CKPT_TRICKLE_MS : CKPT_IDLE_MS;
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += wait_ms / 1000;
            ts.tv_nsec += wait_ms % 1000 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            if (pthread_cond_timedwait(&s->ck_cv, &s->ck_mu, &ts) != ETIMEDOUT) {
                continue;
            }
            /* Group commits (log records), not LMDB commits: the writer
             * commits LMDB only every few ms (writer.c). */
            uint64_t now = atomic_load_explicit(&s->n_commits, memory_order_relaxed);
            is_busy = now != seen;
            if (is_busy) {
                seen = now;
                pthread_mutex_unlock(&s->ck_mu);
                (void)sync_file_range(s->lock_fd, 0, 0, SYNC_FILE_RANGE_WRITE);
                pthread_mutex_lock(&s->ck_mu);
            }
        }
        if (s->ck_state != CK_REQUESTED) {
            break; /* asked to stop, nothing pending */
        }
        uint64_t gen = s->ck_gen;
        pthread_mutex_unlock(&s->ck_mu);
        /* Each page of the snapshot was written (pwrite) before its commit
         * returned, so one fdatasync of data.mdb makes all of it durable
         * (later commits' pages may come along: nothing points at them). */
        int rc = fdatasync(s->lock_fd) == 0 ? 0 : errno;
        if (rc == 0) {
            int wrc = wal_ckpt_write(s->wal, gen, s->ck_metas, s->ck_metas_len);
            rc = wrc < 0 ? -wrc : 0;
        }
        pthread_mutex_lock(&s->ck_mu);
        s->ck_rc = rc;
        s->ck_state = CK_DONE;
        pthread_cond_broadcast(&s->ck_cv);
    }
    pthread_mutex_unlock(&s->ck_mu);
    return NULL;
}

/* Take a finished checkpoint's result (waiting for one in progress if
 * is_wait): the new snapshot's pin replaces the old one. Returns 0, 1 (one
 * is still in progress), or FERRY_ESTORAGE (its sync failed: fail-stop). */
int store__ckpt_reap(struct store *s, bool is_wait)
{
    pthread_mutex_lock(&s->ck_mu);
    while (is_wait && s->ck_state == CK_REQUESTED) {
        pthread_cond_wait(&s->ck_cv, &s->ck_mu);
    }
    enum ck_state st = s->ck_state;
    int rc = s->ck_rc;
    if (st == CK_DONE) {
        s->ck_state = CK_IDLE;
    }
    pthread_mutex_unlock(&s->ck_mu);
    if (st != CK_DONE) {
        return st == CK_IDLE ? 0 : 1;
    }
    if (rc != 0) {
        if (s->pin_next != NULL) {
            mdb_txn_abort(s->pin_next);
            s->pin_next = NULL;
        }
        return store__fail(s, rc); /* never retry a failed sync */
    }
    if (s->pin != NULL) {
        mdb_txn_abort(s->pin);
    }
    s->pin = s->pin_next;
    s->pin_next = NULL;
    atomic_fetch_add(&s->n_checkpoints, 1);
    return 0;
}

/*
 * Begin a checkpoint of the last committed snapshot (a write txn may be
 * open: it is not part of it): copy its meta pages, pin it, start the next
 * log generation, and let the checkpoint thread sync. Records of the new
 * generation are replayed on top of this snapshot. Waits for a checkpoint
 * still in progress first. Returns 0 or FERRY_ESTORAGE.
 */
int store__ckpt_begin(struct store *s)
{
    int rc = store__ckpt_reap(s, true);
    if (rc < 0) {
        return rc;
    }
    ssize_t n = pread(s->lock_fd, s->ck_metas, s->ck_metas_len, 0);
    if (n != (ssize_t)s->ck_metas_len) {
        return store__fail(s, n < 0 ? errno : EIO);
    }
    MDB_txn *pin;
    rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &pin);
    if (rc != 0) {
        return store__fail(s, rc);
    }
    rc = wal_start(s->wal, s->gen + 1);
    if (rc < 0) {
        mdb_txn_abort(pin);
        return store__fail(s, -rc);
    }
    s->gen++;
    s->pin_next = pin;
    s->commits_since = 0;
    s->ckpt_began_ms = mono_ms();
    if (s->batch.is_open) {
        rc = store__batch_relog(&s->batch); /* before the checkpoint can be durable */
        if (rc < 0) {
            return rc;
        }
    }
    pthread_mutex_lock(&s->ck_mu);
    s->ck_gen = s->gen;
    s->ck_state = CK_REQUESTED;
    pthread_cond_signal(&s->ck_cv);
    pthread_mutex_unlock(&s->ck_mu);
    return 0;
}

/* A checkpoint, waited for: everything committed so far is durable. */
int store__ckpt_sync(struct store *s)
{
    int rc = store__ckpt_begin(s);
    return rc < 0 ? rc : store__ckpt_reap(s, true);
}

bool store__ckpt_is_due(struct store *s)
{
    return s->commits_since >= CKPT_COMMITS ||
           wal_used(s->wal) * CKPT_WAL_PART >= wal_max_payload(s->wal) ||
           mono_ms() - s->ckpt_began_ms >= CKPT_MS;
}

/* After a commit: begin a checkpoint if one is due and none is running. */
int store__ckpt_maybe(struct store *s)
{
    s->commits_since++;
    int rc = store__ckpt_reap(s, false);
    if (rc != 0) {
        return rc < 0 ? rc : 0;
    }
    return store__ckpt_is_due(s) ? store__ckpt_begin(s) : 0;
}

/* Stop the checkpoint thread (after its last checkpoint) and drop the pins. */
void store__ckpt_thread_stop(struct store *s)
{
    if (s->has_ck_thread) {
        pthread_mutex_lock(&s->ck_mu);
        s->ck_stop = true;
        pthread_cond_broadcast(&s->ck_cv);
        pthread_mutex_unlock(&s->ck_mu);
        pthread_join(s->ck_thread, NULL);
        s->has_ck_thread = false;
    }
    for (MDB_txn **p = &s->pin; p <= &s->pin_next; p++) {
        if (*p != NULL) {
            mdb_txn_abort(*p);
            *p = NULL;
        }
    }
}

/* ---- recovery: the log replayed ---------------------------------------- */

/*
 * Recovery, before LMDB opens data.mdb: put back the meta pages of the last
 * checkpoint, so LMDB starts from that snapshot (whose pages a pin kept
 * intact) whatever later, unsynced commits left on disk. *has_ckpt is
 * false for a new store, or one made before the log existed (it was
 * written with synced commits and is whole as it is).
 */
int store__ckpt_restore(struct store *s, const char *dir, bool *has_ckpt, uint64_t *gen, char *err,
                        size_t err_len)
{
    unsigned char *metas = NULL;
    size_t len = 0;
    int rc = wal_ckpt_read(s->wal, gen, &metas, &len);
    *has_ckpt = rc == 0;
    if (rc == -ENOENT) {
        return 0;
    }
    if (rc < 0) {
        store__err_set(err, err_len, "%s/checkpoint: %s", dir, strerror(-rc));
        return rc;
    }
    struct stat st;
    if (fstat(s->lock_fd, &st) != 0 || (size_t)st.st_size < len) {
        store__err_set(err, err_len,
                       "%s: data.mdb is shorter than its checkpoint says (truncated?)", dir);
        free(metas);
        return FERRY_ESTORAGE;
    }
    const unsigned char *p = metas;
    size_t left = len;
    off_t at = 0;
    while (left > 0) {
        ssize_t n = pwrite(s->lock_fd, p, left, at);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            rc = n < 0 ? -errno : -EIO;
            break;
        }
        p += n;
        left -= (size_t)n;
        at += n;
    }
    free(metas);
    if (rc == 0 && fdatasync(s->lock_fd) != 0) {
        rc = -errno;
    }
    if (rc < 0) {
        store__err_set(err, err_len, "%s/data.mdb: restoring the checkpoint: %s", dir,
                       strerror(-rc));
    }
    return rc;
}

struct replay {
    struct store *s;
    struct store_topic **by_id; /* topics by id, for the arena's records */
    uint32_t cap;
    uint64_t n_msgs;
};

static int replay_index(struct replay *rp, struct store_topic *t)
{
    if (t->id >= rp->cap) {
        uint32_t cap = rp->cap ? rp->cap : 64;
        while (cap <= t->id) {
            cap = cap > UINT32_MAX / 2 ? UINT32_MAX : cap * 2;
        }
        struct store_topic **v = realloc(rp->by_id, (size_t)cap * sizeof(*v));
        if (v == NULL) {
            return -ENOMEM;
        }
        memset(v + rp->cap, 0, (size_t)(cap - rp->cap) * sizeof(*v));
        rp->by_id = v;
        rp->cap = cap;
    }
    rp->by_id[t->id] = t;
    return 0;
}

/* The topics a record created. Returns 0 or FERRY_ESTORAGE (malformed). */
static int replay_topics(struct replay *rp, struct store_batch *b, const unsigned char **pp,
                         const unsigned char *end, uint32_t n)
{
    struct store *s = rp->s;
    const unsigned char *p = *pp;
    for (uint32_t i = 0; i < n; i++) {
        if (end - p < 6) {
            return FERRY_ESTORAGE;
        }
        uint32_t id = get_le32(p);
        uint16_t len = get_le16(p + 4);
        const char *name = (const char *)p + 6;
        if (len == 0 || len > STORE_TOPIC_MAX || end - p - 6 < len || id == UINT32_MAX) {
            return FERRY_ESTORAGE;
        }
        uint32_t h = store__name_hash(name, len);
        struct store_topic *have = store__topic_find(s, name, len, h);
        if (have != NULL) {
            if (have->id != id) {
                return FERRY_ESTORAGE;
            }
            p += 6 + len; /* logged again after a checkpoint (store__batch_relog) */
            continue;
        }
        struct store_topic *t = store__topic_alloc(name, len, h, id);
        if (t == NULL || store__topic_insert(s, t) != 0 || replay_index(rp, t) != 0) {
            free(t);
            return -ENOMEM;
        }
        t->is_new = true;
        t->is_dirty = true;
        t->dnext = b->dirty;
        b->dirty = t;
        if (id >= s->next_topic_id) {
            s->next_topic_id = id + 1;
        }
        p += 6 + len;
    }
    *pp = p;
    return 0;
}

/* The arena's messages, each at exactly its topic's next sequence. */
static int replay_msgs(struct replay *rp, struct store_batch *b, const unsigned char *p, size_t len)
{
    for (size_t off = 0; off < len;) {
        struct rec_hdr h;
        if (len - off < sizeof(h)) {
            return FERRY_ESTORAGE;
        }
        memcpy(&h, p + off, sizeof(h));
        size_t need = store__rec_len(&h);
        struct store_topic *t = h.topic_id < rp->cap ? rp->by_id[h.topic_id] : NULL;
        if (need > len - off || h.val_len < VAL_HDR_LEN || t == NULL) {
            return FERRY_ESTORAGE;
        }
        if (h.flags & REC_SCHED) {
            /* Not in the topic: put again whatever the topic's sequence (a
             * put that is there already changes nothing). */
            int rc = store__arena_reserve(b, need);
            if (rc != 0) {
                return rc;
            }
            struct rec_hdr *r = (struct rec_hdr *)(b->arena + b->arena_len);
            memcpy(r, p + off, need);
            rc = store__batch_put(b, r);
            if (rc != 0) {
                return rc;
            }
            store__batch_account_sched(b, t, need);
            off += need;
            continue;
        }
        if (h.seq > t->pend.last_seq + 1) {
            return FERRY_ESTORAGE;
        }
        if (h.seq <= t->pend.last_seq && (h.flags & REC_UNSCHED)) {
            /* Logged again after a checkpoint, and the move of a scheduled
             * message: its entry may have been put again by the second copy
             * of its REC_SCHED, so delete it again (ops on an entry are
             * redone in log order; the last one wins). */
            int rc = store__arena_reserve(b, need);
            if (rc != 0) {
                return rc;
            }
            struct rec_hdr *r = (struct rec_hdr *)(b->arena + b->arena_len);
            memcpy(r, p + off, need);
            r->flags |= REC_UNSCHED_ONLY;
            rc = store__batch_put(b, r);
            if (rc != 0) {
                return rc;
            }
            b->arena_len += need;
            off += need;
            continue;
        }
        if (h.seq <= t->pend.last_seq) {
            off += need; /* logged again after a checkpoint (store__batch_relog) */
            continue;
        }
        int rc = store__arena_reserve(b, need);
        if (rc != 0) {
            return rc;
        }
        struct rec_hdr *r = (struct rec_hdr *)(b->arena + b->arena_len);
        memcpy(r, p + off, need);
        r->flags &= ~(REC_APPEND_MSG | REC_APPEND_TIDX); /* hints; plain puts are safe */
        int64_t when =
            store__clamped_time(&t->pend, (int64_t)get_le64((const unsigned char *)(r + 1) + 8));
        rc = store__batch_put(b, r);
        if (rc != 0) {
            return rc;
        }
        store__batch_account(b, t, r, need, when);
        off += need;
    }
    return 0;
}

/* The consumer records (consumers_write() checks them at the commit). */
static int replay_cons(struct store_batch *b, const unsigned char *p, size_t len, uint32_t n)
{
    if (len > b->cons_cap) {
        unsigned char *v = realloc(b->cons_buf, len);
        if (v == NULL) {
            return -ENOMEM;
        }
        b->cons_buf = v;
        b->cons_cap = len;
    }
    if (len > 0) {
        memcpy(b->cons_buf, p, len);
    }
    b->cons_len = len;
    b->n_cons = n;
    return 0;
}

/* One WAL_BATCH record: redo its batch (committed without a record). */
static int replay_batch(void *ctx, const unsigned char *p, size_t len)
{
    struct replay *rp = ctx;
    if (len < LOG_HEAD) {
        return FERRY_ESTORAGE;
    }
    uint32_t n_topics = get_le32(p);
    uint32_t n_cons = get_le32(p + 4);
    uint64_t arena_len = get_le64(p + 8);
    uint64_t cons_len = get_le64(p + 16);
    const unsigned char *end = p + len;
    const unsigned char *q = p + LOG_HEAD;
    struct store_batch *b;
    int rc = store_batch_begin(rp->s, &b);
    if (rc != 0) {
        return rc;
    }
    b->is_replay = true;
    rc = replay_topics(rp, b, &q, end, n_topics);
    if (rc == 0 &&
        (arena_len > (uint64_t)(end - q) || cons_len != (uint64_t)(end - q) - arena_len)) {
        rc = FERRY_ESTORAGE;
    }
    if (rc == 0) {
        rc = replay_msgs(rp, b, q, (size_t)arena_len);
    }
    if (rc == 0) {
        rc = replay_cons(b, q + arena_len, (size_t)cons_len, n_cons);
    }
    if (rc != 0) {
        store_batch_abort(b);
        return rc;
    }
    uint64_t n = b->n_msgs;
    rc = store_batch_commit(b);
    if (rc == 0) {
        rp->n_msgs += n;
    }
    return rc;
}

/* Replay the log from generation gen onto the restored checkpoint. */
static int replay_log(struct store *s, uint64_t gen, char *err, size_t err_len)
{
    struct replay rp = {.s = s};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < s->hcap; i++) {
        for (struct store_topic *t = s->htab[i]; rc == 0 && t != NULL; t = t->hnext) {
            rc = replay_index(&rp, t);
        }
    }
    uint64_t n_records = 0;
    uint64_t last_gen = gen;
    if (rc == 0) {
        rc = wal_replay(s->wal, gen, replay_batch, &rp, &n_records, &last_gen);
    }
    free(rp.by_id);
    s->n_replayed = n_records;
    if (rc != 0) {
        store__err_set(
            err, err_len,
            "the write-ahead log does not apply (record %" PRIu64 " of generation %" PRIu64 "): %s",
            n_records, last_gen,
            rc == FERRY_ESTORAGE ? "malformed or out of sequence" : strerror(rc < 0 ? -rc : rc));
        return rc < 0 ? rc : FERRY_ESTORAGE;
    }
    /* The next generation is last_gen + 2: last_gen + 1 may hold records
     * written after a lost WAL_END; they must never look current. */
    s->gen = last_gen + 1;
    return 0;
}

/* After LMDB is open and the topics are loaded: replay the log on top of
 * the checkpoint, start the checkpoint thread, and checkpoint. */
int store__wal_recover(struct store *s, const char *dir, const struct store_options *opts,
                       bool has_ckpt, uint64_t gen, char *err, size_t err_len)
{
    s->ck_metas_len = 2 * s->page_size;
    s->ck_metas = malloc(s->ck_metas_len);
    if (s->ck_metas == NULL) {
        store__err_set(err, err_len, "out of memory");
        return -ENOMEM;
    }
    int rc = pthread_create(&s->ck_thread, NULL, ckpt_main, s);
    if (rc != 0) {
        store__err_set(err, err_len, "cannot start the checkpoint thread: %s", strerror(rc));
        return -rc;
    }
    s->has_ck_thread = true;
    s->gen = gen;
    if (has_ckpt) {
        rc = replay_log(s, gen, err, err_len);
        if (rc != 0) {
            return rc;
        }
    }
    pthread_mutex_lock(&s->wlock);
    rc = store__ckpt_sync(s);
    pthread_mutex_unlock(&s->wlock);
    if (rc == 0) {
        size_t half = opts->wal_half_size ? opts->wal_half_size : DEFAULT_WAL_HALF;
        rc = wal_resize(s->wal, half); /* grows a smaller log, never shrinks one */
    }
    if (rc != 0) {
        store__err_set(err, err_len, "%s: the first checkpoint failed: %s", dir,
                       rc < 0 && rc != FERRY_ESTORAGE ? strerror(-rc) : "storage error");
        return rc;
    }
    return 0;
}

/*
 * store.c - ferry's LMDB message store. The contract is in store.h; the
 * files that keep it share store_int.h, which lists them. This one opens and
 * closes the store (the directory checked and locked, LMDB's environment,
 * the topic table loaded, recovery started), and holds what every other
 * file uses: errors and fail-stop, transactions under map_lock, and the
 * in-memory topic table. The records' byte layouts are described in
 * store_codec.c, which encodes and decodes them; the writer path, map growth
 * and MDB_APPEND in store_write.c; durability (the log, checkpoints,
 * recovery) in store_ckpt.c.
 */
#include "store.h"

#include "store_int.h"
#include "store_wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MAP_INITIAL ((size_t)64 << 20)
#define DEFAULT_MAP_MAX ((size_t)64 << 30)
#define DEFAULT_MAP_GROW_STEP ((size_t)256 << 20)
#define DEFAULT_MAX_READERS 126u

/* ---- errors ------------------------------------------------------------ */

void store__err_set(char *err, size_t err_len, const char *fmt, ...)
{
    if (err == NULL || err_len == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

/* Enter fail-stop. Every later write returns FERRY_ESTORAGE. */
int store__fail(struct store *s, int mdb_rc)
{
    const char *expected = NULL;
    atomic_compare_exchange_strong(&s->fail_reason, &expected, mdb_strerror(mdb_rc));
    atomic_store(&s->is_failed, true);
    return FERRY_ESTORAGE;
}

/* Translate an LMDB/system code from a read path. Never fail-stops. */
int store__xlate_read(int rc)
{
    switch (rc) {
    case 0:
        return 0;
    case MDB_READERS_FULL:
        return -EAGAIN;
    case ENOMEM:
        return -ENOMEM;
    default:
        return FERRY_ESTORAGE;
    }
}

int store__xlate_write(struct store *s, int rc)
{
    if (rc == 0) {
        return 0;
    }
    if (store__is_full_error(rc)) {
        return FERRY_ESTORAGEFULL;
    }
    return rc == ENOMEM ? -ENOMEM : store__fail(s, rc);
}

bool store__is_full_error(int rc)
{
    return rc == MDB_MAP_FULL || rc == ENOSPC || rc == EDQUOT;
}

/* ---- transactions ------------------------------------------------------ */

/* Wait until the bulk commit with txn id u is durable (struct store,
 * undurable_txn). 0, or FERRY_ESTORAGE when its checkpoint failed. */
static int durable_wait(struct store *s, uint64_t u)
{
    pthread_mutex_lock(&s->ck_mu);
    while (atomic_load(&s->undurable_txn) == u && !atomic_load(&s->is_failed)) {
        pthread_cond_wait(&s->dur_cv, &s->ck_mu);
    }
    pthread_mutex_unlock(&s->ck_mu);
    return atomic_load(&s->is_failed) ? FERRY_ESTORAGE : 0;
}

int store__rtxn_begin(struct store *s, MDB_txn **txn)
{
    for (int resized = 0;;) {
        pthread_rwlock_rdlock(&s->map_lock);
        int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
        if (rc == 0) {
            /* Not a snapshot that holds a bulk commit before it is durable
             * (the writer marks it before the commit, so a snapshot taken
             * after the commit sees the mark). */
            uint64_t u = atomic_load(&s->undurable_txn);
            if (u == 0 || (uint64_t)mdb_txn_id(*txn) < u) {
                return 0;
            }
            mdb_txn_abort(*txn);
            pthread_rwlock_unlock(&s->map_lock);
            rc = durable_wait(s, u);
            if (rc != 0) {
                return rc;
            }
            continue;
        }
        pthread_rwlock_unlock(&s->map_lock);
        if (rc != MDB_MAP_RESIZED || resized++ > 0) {
            return store__xlate_read(rc);
        }
        rc = store__map_adopt(s);
        if (rc != 0) {
            return store__xlate_read(rc);
        }
    }
}

/* Another process grew the map past ours (a read-only store next to a live
 * broker: the broker's own store never sees this): adopt its size, with no
 * transaction of ours open (map_lock exclusively). An MDB/errno code. */
int store__map_adopt(struct store *s)
{
    pthread_rwlock_wrlock(&s->map_lock);
    int rc = mdb_env_set_mapsize(s->env, 0);
    MDB_envinfo info;
    if (rc == 0 && mdb_env_info(s->env, &info) == 0) {
        atomic_store(&s->map_size, info.me_mapsize);
    }
    pthread_rwlock_unlock(&s->map_lock);
    return rc;
}

void store__rtxn_end(struct store *s, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&s->map_lock);
}

/* Begin a write txn (caller holds wlock). Returns an MDB/errno code. */
int store__wtxn_begin(struct store *s, MDB_txn **txn)
{
    pthread_rwlock_rdlock(&s->map_lock);
    int rc = mdb_txn_begin(s->env, NULL, 0, txn);
    if (rc != 0) {
        pthread_rwlock_unlock(&s->map_lock);
    }
    return rc;
}

void store__wtxn_abort(struct store *s, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&s->map_lock);
}

uint64_t store__mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Commit; the txn handle is gone afterwards whatever the result. */
int store__wtxn_commit(struct store *s, MDB_txn *txn)
{
    int rc = mdb_txn_commit(txn);
    pthread_rwlock_unlock(&s->map_lock);
    return rc;
}

/* ---- topic table (wlock) ----------------------------------------------- */

uint32_t store__name_hash(const char *p, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 16777619u;
    }
    return h;
}

struct store_topic *store__topic_find(struct store *s, const char *name, size_t len, uint32_t h)
{
    for (struct store_topic *t = s->htab[h & (s->hcap - 1)]; t != NULL; t = t->hnext) {
        if (t->hash == h && t->name_len == len && memcmp(t->name, name, len) == 0) {
            return t;
        }
    }
    return NULL;
}

int store__topic_insert(struct store *s, struct store_topic *t)
{
    if (s->hcount + 1 > s->hcap) {
        size_t ncap = s->hcap * 2;
        struct store_topic **nt = calloc(ncap, sizeof(*nt));
        if (nt == NULL) {
            return -ENOMEM;
        }
        for (size_t i = 0; i < s->hcap; i++) {
            struct store_topic *x = s->htab[i];
            while (x != NULL) {
                struct store_topic *next = x->hnext;
                x->hnext = nt[x->hash & (ncap - 1)];
                nt[x->hash & (ncap - 1)] = x;
                x = next;
            }
        }
        free(s->htab);
        s->htab = nt;
        s->hcap = ncap;
    }
    struct store_topic **slot = &s->htab[t->hash & (s->hcap - 1)];
    t->hnext = *slot;
    *slot = t;
    s->hcount++;
    return 0;
}

void store__topic_unlink(struct store *s, struct store_topic *t)
{
    struct store_topic **pp = &s->htab[t->hash & (s->hcap - 1)];
    while (*pp != t) {
        pp = &(*pp)->hnext;
    }
    *pp = t->hnext;
    s->hcount--;
}

struct store_topic *store__topic_alloc(const char *name, size_t len, uint32_t h, uint32_t id)
{
    struct store_topic *t = calloc(1, sizeof(*t) + len + 1);
    if (t == NULL) {
        return NULL;
    }
    t->id = id;
    t->hash = h;
    t->name_len = (uint16_t)len;
    memcpy(t->name, name, len);
    t->cur.first_seq = 1;
    t->cur.last_time = TIME_NONE;
    t->pend = t->cur;
    return t;
}

/* ---- open / close ------------------------------------------------------ */

void store_options_init(struct store_options *o)
{
    memset(o, 0, sizeof(*o));
    o->sync_mode = STORE_SYNC_ALWAYS;
    o->map_size_initial = DEFAULT_MAP_INITIAL;
    o->map_grow_step_max = DEFAULT_MAP_GROW_STEP;
    o->map_size_max = DEFAULT_MAP_MAX;
    o->max_readers = DEFAULT_MAX_READERS;
    o->file_mode = 0600;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Look at dir before LMDB touches it. Refuses a data.mdb that is not an
 * LMDB file, and a non-empty directory that has no data.mdb. */
int store__dir_precheck(const char *dir, bool may_create, char data_path[PATH_MAX], char *err,
                        size_t err_len)
{
    if ((size_t)snprintf(data_path, PATH_MAX, "%s/data.mdb", dir) >= PATH_MAX) {
        store__err_set(err, err_len, "%s: path too long", dir);
        return -ENAMETOOLONG;
    }
    struct stat st;
    if (stat(dir, &st) != 0) {
        int e = errno;
        if (e != ENOENT || !may_create) {
            store__err_set(err, err_len, "%s: %s", dir, strerror(e));
            return -e;
        }
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            e = errno;
            store__err_set(err, err_len, "%s: cannot create: %s", dir, strerror(e));
            return -e;
        }
        return 0;
    }
    if (!S_ISDIR(st.st_mode)) {
        store__err_set(err, err_len, "%s: not a directory", dir);
        return -ENOTDIR;
    }
    int fd = open(data_path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        /* LMDB's first meta page: 16-byte page header, then mm_magic. */
        unsigned char hdr[20];
        ssize_t n = pread(fd, hdr, sizeof(hdr), 0);
        int e = errno;
        close(fd);
        if (n < 0) {
            store__err_set(err, err_len, "%s: %s", data_path, strerror(e));
            return -e;
        }
        if (n == 0) {
            return 0; /* empty: LMDB initialises it */
        }
        uint32_t magic;
        memcpy(&magic, hdr + 16, 4);
        if (n < (ssize_t)sizeof(hdr) || magic != 0xBEEFC0DEu) {
            store__err_set(err, err_len,
                           "%s: not an LMDB file (foreign or corrupt data directory); refusing to "
                           "use it",
                           data_path);
            return FERRY_ESTORAGE;
        }
        return 0;
    }
    if (errno != ENOENT) {
        int e = errno;
        store__err_set(err, err_len, "%s: %s", data_path, strerror(e));
        return -e;
    }
    if (!may_create) {
        store__err_set(err, err_len, "%s: no ferry store here (no data.mdb)", dir);
        return -ENOENT;
    }
    DIR *d = opendir(dir);
    if (d == NULL) {
        int e = errno;
        store__err_set(err, err_len, "%s: %s", dir, strerror(e));
        return -e;
    }
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || strcmp(de->d_name, "lock.mdb") == 0 ||
            strcmp(de->d_name, "lost+found") == 0) {
            continue;
        }
        store__err_set(
            err, err_len,
            "%s: directory is not empty (has '%s') and holds no ferry store; refusing to "
            "create one there",
            dir, de->d_name);
        rc = FERRY_ESTORAGE;
        break;
    }
    closedir(d);
    return rc;
}

int store__meta_verify(const char *dir, int get_rc, const MDB_val *v, char *err, size_t err_len)
{
    int rc = get_rc == 0 ? store__meta_check(v) : -1;
    if (rc == -1) {
        store__err_set(err, err_len,
                       "%s: not a ferry store (format record missing or wrong magic); refusing "
                       "to use it",
                       dir);
    } else if (rc == -2) {
        store__err_set(err, err_len, "%s: ferry format record is corrupt (CRC mismatch)", dir);
    } else if (rc == -3) {
        store__err_set(err, err_len,
                       "%s: store format version %u, this ferryd reads version %u only", dir,
                       (unsigned)get_le32((const unsigned char *)v->mv_data + 8),
                       (unsigned)STORE_FORMAT_VERSION);
    }
    return rc == 0 ? 0 : FERRY_ESTORAGE;
}

/* Open or create the databases and check the meta record (write txn). */
static int open_dbs(struct store *s, const char *dir, char *err, size_t err_len)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc != 0) {
        store__err_set(err, err_len, "%s: cannot begin transaction: %s", dir, mdb_strerror(rc));
        return rc == ENOMEM ? -ENOMEM : FERRY_ESTORAGE;
    }
    int ret = FERRY_ESTORAGE;
    bool is_new = false;
    rc = mdb_dbi_open(txn, "meta", 0, &s->dbi_meta);
    if (rc == MDB_NOTFOUND) {
        MDB_dbi main_dbi;
        MDB_stat ms;
        rc = mdb_dbi_open(txn, NULL, 0, &main_dbi);
        if (rc == 0) {
            rc = mdb_stat(txn, main_dbi, &ms);
        }
        if (rc != 0) {
            store__err_set(err, err_len, "%s: %s", dir, mdb_strerror(rc));
            goto out_abort;
        }
        if (ms.ms_entries != 0) {
            store__err_set(err, err_len,
                           "%s: an LMDB environment not created by ferry (no format record); "
                           "refusing to use it",
                           dir);
            goto out_abort;
        }
        is_new = true;
        rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->dbi_meta);
    }
    if (rc == MDB_INCOMPATIBLE) {
        store__err_set(err, err_len,
                       "%s: an LMDB environment not created by ferry; refusing to use it", dir);
        goto out_abort;
    }
    if (rc != 0) {
        store__err_set(err, err_len, "%s: %s", dir, mdb_strerror(rc));
        goto out_abort;
    }
    if (is_new) {
        unsigned char meta[STORE_META_LEN];
        store__meta_encode(meta, now_ns());
        MDB_val k = {sizeof(STORE_META_KEY) - 1, STORE_META_KEY};
        MDB_val v = {sizeof(meta), meta};
        rc = mdb_put(txn, s->dbi_meta, &k, &v, 0);
        if (rc != 0) {
            store__err_set(err, err_len, "%s: cannot initialise: %s", dir, mdb_strerror(rc));
            ret = store__is_full_error(rc) ? FERRY_ESTORAGEFULL : FERRY_ESTORAGE;
            goto out_abort;
        }
    } else {
        MDB_val k = {sizeof(STORE_META_KEY) - 1, STORE_META_KEY};
        MDB_val v;
        rc = mdb_get(txn, s->dbi_meta, &k, &v);
        s->n_open_reads++;
        if (store__meta_verify(dir, rc, &v, err, err_len) != 0) {
            goto out_abort;
        }
    }
    unsigned flags = is_new ? MDB_CREATE : 0;
    static const char *const names[] = {"topics", "names", "msgs", "tidx"};
    MDB_dbi *dbis[] = {&s->dbi_topics, &s->dbi_names, &s->dbi_msgs, &s->dbi_tidx};
    for (size_t i = 0; i < 4; i++) {
        rc = mdb_dbi_open(txn, names[i], flags, dbis[i]);
        if (rc != 0) {
            store__err_set(err, err_len, "%s: database '%s': %s (corrupt store?)", dir, names[i],
                           mdb_strerror(rc));
            goto out_abort;
        }
    }
    /* Reserved for durable consumers; created by any version-1 opener. */
    rc = mdb_dbi_open(txn, "consumers", MDB_CREATE, &s->dbi_consumers);
    if (rc != 0) {
        store__err_set(err, err_len, "%s: database 'consumers': %s", dir, mdb_strerror(rc));
        goto out_abort;
    }
    /* Producer sequences of idempotent publishes (store_dedupe.c); created
     * by the first opener that knows them. */
    rc = mdb_dbi_open(txn, "dedupe", MDB_CREATE, &s->dbi_dedupe);
    if (rc != 0) {
        store__err_set(err, err_len, "%s: database 'dedupe': %s", dir, mdb_strerror(rc));
        goto out_abort;
    }
    /* The index of last-value topics (store_lastval.c); created by the
     * first opener that knows it. */
    rc = mdb_dbi_open(txn, "lastval", MDB_CREATE, &s->dbi_lastval);
    if (rc != 0) {
        store__err_set(err, err_len, "%s: database 'lastval': %s", dir, mdb_strerror(rc));
        goto out_abort;
    }
    /* Scheduled messages (store_sched.c); likewise. */
    rc = mdb_dbi_open(txn, "sched", MDB_CREATE, &s->dbi_sched);
    if (rc != 0) {
        store__err_set(err, err_len, "%s: database 'sched': %s", dir, mdb_strerror(rc));
        goto out_abort;
    }
    rc = mdb_txn_commit(txn);
    if (rc == 0) {
        /* MDB_NOSYNC left the new store's pages unsynced: a power cut
         * before the first checkpoint would leave a data.mdb that is not an
         * LMDB file. */
        rc = mdb_env_sync(s->env, 1);
    }
    if (rc != 0) {
        store__err_set(err, err_len, "%s: cannot commit: %s", dir, mdb_strerror(rc));
        return store__is_full_error(rc) ? FERRY_ESTORAGEFULL : FERRY_ESTORAGE;
    }
    return 0;

out_abort:
    mdb_txn_abort(txn);
    return ret;
}

/* Read the topic table into memory: the only per-topic work at start-up. */
static int load_topics(struct store *s, const char *dir, char *err, size_t err_len)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k;
    MDB_val v;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        store__err_set(err, err_len, "%s: %s", dir, mdb_strerror(rc));
        return store__xlate_read(rc);
    }
    int ret = FERRY_ESTORAGE;
    rc = mdb_cursor_open(txn, s->dbi_topics, &cur);
    if (rc != 0) {
        store__err_set(err, err_len, "%s: %s", dir, mdb_strerror(rc));
        goto out_abort;
    }
    uint32_t max_id = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint32_t id;
        struct topic_state st;
        const char *name;
        size_t name_len;
        s->n_open_reads++;
        if (store__topic_rec_decode(&k, &v, &id, &st, &name, &name_len) != 0) {
            store__err_set(err, err_len,
                           "%s: topic record %u is corrupt; run ferryd --verify for details", dir,
                           k.mv_size == 4 ? (unsigned)get_be32(k.mv_data) : 0u);
            goto out_close;
        }
        uint32_t h = store__name_hash(name, name_len);
        struct store_topic *t = store__topic_alloc(name, name_len, h, id);
        if (t == NULL) {
            ret = -ENOMEM;
            store__err_set(err, err_len, "%s: out of memory", dir);
            goto out_close;
        }
        t->cur = st;
        t->pend = st;
        if (store__topic_insert(s, t) != 0) {
            free(t);
            ret = -ENOMEM;
            store__err_set(err, err_len, "%s: out of memory", dir);
            goto out_close;
        }
        if (id > max_id) {
            max_id = id;
        }
    }
    if (rc != MDB_NOTFOUND) {
        store__err_set(err, err_len, "%s: reading topics: %s", dir, mdb_strerror(rc));
        goto out_close;
    }
    mdb_cursor_close(cur);
    s->next_topic_id = max_id + 1;
    atomic_store(&s->n_topics, s->hcount);

    /* Highest topic id present in msgs and tidx: one record each. */
    MDB_dbi last_dbis[2] = {s->dbi_msgs, s->dbi_tidx};
    uint32_t *last_out[2] = {&s->msg_max_topic, &s->tidx_max_topic};
    for (int i = 0; i < 2; i++) {
        rc = mdb_cursor_open(txn, last_dbis[i], &cur);
        if (rc != 0) {
            store__err_set(err, err_len, "%s: %s", dir, mdb_strerror(rc));
            goto out_abort;
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
        if (rc == 0) {
            s->n_open_reads++;
            if (k.mv_size != MSG_KEY_LEN) {
                store__err_set(err, err_len, "%s: malformed key; run ferryd --verify", dir);
                goto out_close;
            }
            *last_out[i] = get_be32(k.mv_data);
        } else if (rc != MDB_NOTFOUND) {
            store__err_set(err, err_len, "%s: %s", dir, mdb_strerror(rc));
            goto out_close;
        }
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    return 0;

out_close:
    mdb_cursor_close(cur);
out_abort:
    mdb_txn_abort(txn);
    return ret;
}

void store__free(struct store *s)
{
    if (s->htab != NULL) {
        for (size_t i = 0; i < s->hcap; i++) {
            struct store_topic *t = s->htab[i];
            while (t != NULL) {
                struct store_topic *next = t->hnext;
                free(t);
                t = next;
            }
        }
        free(s->htab);
    }
    free(s->batch.arena);
    free(s->batch.cons_buf);
    free(s->ck_metas);
    free(s->wal_buf);
    free(s->dedupe_cache);
    wal_close(s->wal);
    pthread_rwlock_destroy(&s->map_lock);
    pthread_mutex_destroy(&s->wlock);
    pthread_mutex_destroy(&s->ck_mu);
    pthread_cond_destroy(&s->ck_cv);
    pthread_cond_destroy(&s->dur_cv);
    free(s);
}

/* A store for opts: its locks made, an empty topic table, nothing opened
 * yet (lock_fd -1). NULL when out of memory. */
struct store *store__alloc(const struct store_options *opts)
{
    struct store *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->lock_fd = -1;
    s->sched_next_id = (uint64_t)now_ns(); /* store__sched_id_new() */
    s->sync_mode = opts->sync_mode;
    s->map_max = opts->map_size_max;
    s->map_grow_step = opts->map_grow_step_max ? opts->map_grow_step_max : DEFAULT_MAP_GROW_STEP;
    long ps = sysconf(_SC_PAGESIZE);
    s->page_size = ps > 0 ? (size_t)ps : 4096;
    pthread_mutex_init(&s->wlock, NULL);
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    /* Writer preference: a resize must not starve behind a stream of readers. */
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&s->map_lock, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutex_init(&s->ck_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->ck_cv, &ca);
    pthread_cond_init(&s->dur_cv, &ca);
    pthread_condattr_destroy(&ca);
    s->hcap = 64;
    s->htab = calloc(s->hcap, sizeof(*s->htab));
    if (s->htab == NULL) {
        store__free(s);
        return NULL;
    }
    s->batch.s = s;
    return s;
}

/* Create LMDB's environment (s->env: the caller closes it, also on failure)
 * and open dir with it. Returns 0, or a ferry code or -errno with err
 * filled. */
static int env_open(struct store *s, const char *dir, const struct store_options *opts, char *err,
                    size_t err_len)
{
    int ret;
    int rc = mdb_env_create(&s->env);
    if (rc == 0) {
        rc = mdb_env_set_maxdbs(s->env, STORE_MAXDBS);
    }
    if (rc == 0) {
        rc = mdb_env_set_maxreaders(s->env, opts->max_readers + 2); /* + the pins */
    }
    if (rc == 0) {
        rc = mdb_env_set_mapsize(s->env, opts->map_size_initial);
    }
    if (rc != 0) {
        store__err_set(err, err_len, "lmdb: %s", mdb_strerror(rc));
        return rc == ENOMEM ? -ENOMEM : FERRY_ESTORAGE;
    }
    /* MDB_NOTLS: read txns are not tied to a thread's TLS slot (the pins
     * are opened and closed by whichever thread writes). MDB_NOSYNC: LMDB
     * never syncs; the log makes commits durable and checkpoints make
     * LMDB's pages durable, and a power cut between checkpoints is undone
     * by store__ckpt_restore() (which is what makes NOSYNC safe here). */
    unsigned env_flags = MDB_NOTLS | MDB_NOSYNC;
    rc = mdb_env_open(s->env, dir, env_flags, (mdb_mode_t)opts->file_mode);
    if (rc != 0) {
        if (rc == MDB_INVALID) {
            store__err_set(err, err_len, "%s: data.mdb is not an LMDB file (foreign or corrupt)",
                           dir);
            ret = FERRY_ESTORAGE;
        } else if (rc == MDB_VERSION_MISMATCH) {
            store__err_set(err, err_len, "%s: written by an incompatible LMDB version", dir);
            ret = FERRY_ESTORAGE;
        } else if (rc > 0) {
            store__err_set(err, err_len, "%s: %s", dir, strerror(rc));
            ret = -rc;
        } else {
            store__err_set(err, err_len, "%s: %s", dir, mdb_strerror(rc));
            ret = FERRY_ESTORAGE;
        }
        return ret;
    }
    int dead = 0;
    mdb_reader_check(s->env, &dead);
    s->n_stale_readers = dead;
    return 0;
}

int store_open(const char *dir, const struct store_options *opts, struct store **out, char *err,
               size_t err_len)
{
    struct store_options defaults;
    if (opts == NULL) {
        store_options_init(&defaults);
        opts = &defaults;
    }
    if (dir == NULL || out == NULL || opts->map_size_initial == 0 ||
        opts->map_size_max < opts->map_size_initial || opts->max_readers == 0 ||
        (opts->sync_mode != STORE_SYNC_ALWAYS && opts->sync_mode != STORE_SYNC_INTERVAL &&
         opts->sync_mode != STORE_SYNC_NONE)) {
        store__err_set(err, err_len, "invalid store options");
        return FERRY_EINVAL;
    }
    char data_path[PATH_MAX];
    int ret = store__dir_precheck(dir, true, data_path, err, err_len);
    if (ret != 0) {
        return ret;
    }

    struct store *s = store__alloc(opts);
    if (s == NULL) {
        store__err_set(err, err_len, "out of memory");
        return -ENOMEM;
    }

    /* Our own fd on data.mdb carries the flock. It is a different file from
     * lock.mdb, whose fcntl locks LMDB uses, so closing it never disturbs
     * LMDB's locks. */
    s->lock_fd = open(data_path, O_RDWR | O_CREAT | O_CLOEXEC, opts->file_mode);
    if (s->lock_fd < 0) {
        ret = -errno;
        store__err_set(err, err_len, "%s: %s", data_path, strerror(-ret));
        goto out_free;
    }
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        ret = errno == EWOULDBLOCK ? -EBUSY : -errno;
        store__err_set(err, err_len, "%s: data directory is in use by another ferryd (%s)", dir,
                       strerror(-ret));
        goto out_close_fd;
    }
    size_t half = opts->wal_half_size ? opts->wal_half_size : DEFAULT_WAL_HALF;
    ret = wal_open(dir, half, opts->file_mode, &s->wal, err, err_len);
    bool has_ckpt = false;
    uint64_t ck_gen = 0;
    if (ret == 0) {
        ret = store__ckpt_restore(s, dir, &has_ckpt, &ck_gen, err, err_len);
    }
    if (ret != 0) {
        goto out_close_fd;
    }

    ret = env_open(s, dir, opts, err, err_len);
    if (ret != 0) {
        goto out_env_close;
    }

    ret = open_dbs(s, dir, err, err_len);
    if (ret != 0) {
        goto out_env_close;
    }
    ret = load_topics(s, dir, err, err_len);
    if (ret != 0) {
        goto out_env_close;
    }
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    /* Best effort: on a disk too full for the whole map, the first growth
     * reports storage full; writes inside the file's blocks still work. */
    (void)store__map_reserve(s, info.me_mapsize);
    atomic_store(&s->map_size, info.me_mapsize);
    MDB_stat est;
    if (mdb_env_stat(s->env, &est) == 0 && est.ms_psize > 0) {
        s->page_size = est.ms_psize;
    }
    ret = store__wal_recover(s, dir, opts, has_ckpt, ck_gen, err, err_len);
    if (ret != 0) {
        goto out_env_close;
    }
    (void)store__sched_count(s); /* a gauge: 0 if it cannot be read */
    *out = s;
    return 0;

out_env_close:
    store__ckpt_thread_stop(s);
    if (s->env != NULL) {
        mdb_env_close(s->env);
    }
out_close_fd:
    close(s->lock_fd);
out_free:
    store__free(s);
    return ret;
}

void store_close(struct store *s)
{
    if (s == NULL) {
        return;
    }
    if (s->is_readonly) {
        mdb_env_close(s->env); /* no writer, no log, no flock */
        store__free(s);
        return;
    }
    pthread_mutex_lock(&s->wlock);
    if (!atomic_load(&s->is_failed)) {
        (void)store__ckpt_sync(s); /* the next open replays nothing */
    } else {
        (void)store__ckpt_reap(s, true);
    }
    pthread_mutex_unlock(&s->wlock);
    store__ckpt_thread_stop(s);
    mdb_env_close(s->env);
    close(s->lock_fd); /* releases the flock */
    store__free(s);
}

int store_readers_check(struct store *s)
{
    int dead = 0;
    return mdb_reader_check(s->env, &dead) == 0 ? dead : 0;
}

void store_stats(struct store *s, struct store_stats *st)
{
    memset(st, 0, sizeof(*st));
    st->n_commits = atomic_load(&s->n_commits);
    st->commit_us = atomic_load(&s->commit_us);
    st->sync_us = atomic_load(&s->sync_us);
    for (int i = 0; i < STORE_MSGS_BUCKETS; i++) {
        st->commit_msgs_hist[i] = atomic_load(&s->commit_msgs_hist[i]);
    }
    for (int i = 0; i < STORE_LAT_BUCKETS; i++) {
        st->sync_hist[i] = atomic_load(&s->sync_hist[i]);
        st->commit_hist[i] = atomic_load(&s->commit_hist[i]);
    }
    st->n_appends = atomic_load(&s->n_appends);
    st->n_crc_errors = atomic_load(&s->n_crc_errors);
    st->n_map_grows = atomic_load(&s->n_map_grows);
    st->n_batch_replays = atomic_load(&s->n_batch_replays);
    st->n_full_errors = atomic_load(&s->n_full_errors);
    st->n_open_reads = s->n_open_reads;
    st->n_replayed = s->n_replayed;
    st->n_checkpoints = atomic_load(&s->n_checkpoints);
    st->n_topics = atomic_load(&s->n_topics);
    st->n_scheduled = atomic_load(&s->n_scheduled);
    st->n_stale_readers = s->n_stale_readers;
    st->map_size = atomic_load(&s->map_size);
    st->map_size_max = s->map_max;
    st->sync_mode = s->sync_mode;
    st->is_failed = atomic_load(&s->is_failed);
    st->fail_reason = atomic_load(&s->fail_reason);
    MDB_envinfo info;
    if (mdb_env_info(s->env, &info) == 0) {
        st->map_used = (info.me_last_pgno + 1) * s->page_size;
    }
}

int store_is_failed(const struct store *s)
{
    return atomic_load(&((struct store *)s)->is_failed) ? 1 : 0;
}

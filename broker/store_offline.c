/*
 * store_offline.c - the store seen from outside a running broker: recovery
 * on demand, read-only opens, and compacted copies (ferryd --verify and
 * --inspect, and the copying process of a hot backup; store.h says what
 * each call promises).
 *
 * A read-only store is a struct store whose LMDB environment was opened
 * with MDB_RDONLY and nothing else: no flock on data.mdb (the broker that
 * owns the directory holds it), no log, no checkpoint thread, no topic
 * table. The readers of store_read.c only need the environment, the
 * database handles and map_lock, so they work on it unchanged. Its reader
 * slot lives in the broker's lock.mdb like any reader's, so the broker
 * never reuses a page of a snapshot read here, however long the read
 * lasts.
 */
#include "store_int.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

int store_recover(const char *dir, uint64_t *n_replayed, char *err, size_t err_len)
{
    char data_path[PATH_MAX];
    if (dir == NULL) {
        return FERRY_EINVAL;
    }
    int rc = store__dir_precheck(dir, false, data_path, err, err_len);
    if (rc != 0) {
        return rc;
    }
    struct store *s;
    rc = store_open(dir, NULL, &s, err, err_len);
    if (rc != 0) {
        return rc;
    }
    if (n_replayed != NULL) {
        *n_replayed = s->n_replayed;
    }
    store_close(s);
    return 0;
}

/* The databases, in one read transaction committed to keep their handles. */
static int readonly_dbs(struct store *s, const char *dir, char *err, size_t err_len)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        store__err_set(err, err_len, "%s: cannot begin a read transaction: %s", dir,
                       mdb_strerror(rc));
        return store__xlate_read(rc);
    }
    static const char *const names[] = {"meta", "topics", "names", "msgs", "tidx", "consumers"};
    MDB_dbi *dbis[] = {&s->dbi_meta, &s->dbi_topics, &s->dbi_names,
                       &s->dbi_msgs, &s->dbi_tidx,   &s->dbi_consumers};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        rc = mdb_dbi_open(txn, names[i], 0, dbis[i]);
        if (rc != 0) {
            store__err_set(err, err_len,
                           "%s: database '%s': %s (not a ferry store, or one no "
                           "ferryd of this version opened yet)",
                           dir, names[i], mdb_strerror(rc));
            mdb_txn_abort(txn);
            return FERRY_ESTORAGE;
        }
    }
    MDB_val k = {sizeof(STORE_META_KEY) - 1, STORE_META_KEY};
    MDB_val v;
    rc = mdb_get(txn, s->dbi_meta, &k, &v);
    if (store__meta_verify(dir, rc, &v, err, err_len) != 0) {
        mdb_txn_abort(txn);
        return FERRY_ESTORAGE;
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        store__err_set(err, err_len, "%s: %s", dir, mdb_strerror(rc));
        return FERRY_ESTORAGE;
    }
    return 0;
}

int store_open_readonly(const char *dir, struct store **out, char *err, size_t err_len)
{
    char data_path[PATH_MAX];
    if (dir == NULL || out == NULL) {
        return FERRY_EINVAL;
    }
    int ret = store__dir_precheck(dir, false, data_path, err, err_len);
    if (ret != 0) {
        return ret;
    }
    struct store_options opts;
    store_options_init(&opts);
    struct store *s = store__alloc(&opts);
    if (s == NULL) {
        store__err_set(err, err_len, "out of memory");
        return -ENOMEM;
    }
    s->is_readonly = true;
    /* Every write path refuses a failed store: so it refuses this one. */
    atomic_store(&s->fail_reason, "the store is open read-only");
    atomic_store(&s->is_failed, true);
    int rc = mdb_env_create(&s->env);
    if (rc == 0) {
        rc = mdb_env_set_maxdbs(s->env, STORE_MAXDBS);
    }
    if (rc != 0) {
        store__err_set(err, err_len, "lmdb: %s", mdb_strerror(rc));
        ret = rc == ENOMEM ? -ENOMEM : FERRY_ESTORAGE;
        goto out_env;
    }
    /* No map size of ours: LMDB takes the one the file records. */
    rc = mdb_env_open(s->env, dir, MDB_RDONLY | MDB_NOTLS, 0600);
    if (rc != 0) {
        store__err_set(err, err_len, "%s: cannot open the LMDB environment: %s", dir,
                       mdb_strerror(rc));
        ret = rc > 0 ? -rc : FERRY_ESTORAGE;
        goto out_env;
    }
    MDB_envinfo info;
    MDB_stat est;
    if (mdb_env_info(s->env, &info) == 0) {
        atomic_store(&s->map_size, info.me_mapsize);
        s->map_max = info.me_mapsize;
    }
    if (mdb_env_stat(s->env, &est) == 0 && est.ms_psize > 0) {
        s->page_size = est.ms_psize;
    }
    ret = readonly_dbs(s, dir, err, err_len);
    if (ret != 0) {
        goto out_env;
    }
    *out = s;
    return 0;

out_env:
    if (s->env != NULL) {
        mdb_env_close(s->env);
    }
    store__free(s);
    return ret;
}

int store_copy(struct store *s, int fd, char *err, size_t err_len)
{
    if (s == NULL || !s->is_readonly || fd < 0) {
        store__err_set(err, err_len, "store_copy: a read-only store and a descriptor are needed");
        return FERRY_EINVAL;
    }
    for (int attempt = 0;; attempt++) {
        /* Shared: the copy's transaction must not meet a remap (the
         * readers' rule); only store__map_adopt() takes it exclusively. */
        pthread_rwlock_rdlock(&s->map_lock);
        int rc = mdb_env_copyfd2(s->env, fd, MDB_CP_COMPACT);
        pthread_rwlock_unlock(&s->map_lock);
        if (rc == MDB_MAP_RESIZED && attempt == 0) {
            /* The broker grew the map since we opened; nothing was written
             * yet (the snapshot's transaction comes first). */
            rc = store__map_adopt(s);
            if (rc == 0) {
                continue;
            }
        }
        if (rc == 0) {
            return 0;
        }
        store__err_set(err, err_len, "compacted copy: %s", mdb_strerror(rc));
        return rc > 0 ? -rc : FERRY_ESTORAGE;
    }
}

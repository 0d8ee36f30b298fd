/*
 * store_verify.c - offline verification of a store (ferryd --verify DIR;
 * store.h says what is checked). With no broker on the directory it first
 * recovers it as a start would; then it walks one snapshot in a read-only
 * LMDB environment of its own, so it may run next to a live broker.
 */
#include "store_int.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vtopic {
    uint32_t id;
    bool is_ok;    /* record decoded */
    bool has_name; /* names DB points here */
    struct topic_state st;
    char name[STORE_TOPIC_MAX + 1];
    /* seen while walking msgs */
    uint64_t n_msgs;
    uint64_t n_bytes;
    uint64_t first;
    uint64_t last;
    /* seen while walking tidx */
    uint64_t last_index_seq;
};

struct verify {
    FILE *report;
    const char *dir;
    struct store_verify_result *r;
    struct vtopic *topics;
    size_t n_topics;
    size_t n_said; /* lines written; findings past VERIFY_MAX_LINES are counted only */
};

#define VERIFY_MAX_LINES 1000

static void vsay(struct verify *vf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void vsay(struct verify *vf, const char *fmt, ...)
{
    if (vf->report == NULL) {
        return;
    }
    if (vf->n_said++ >= VERIFY_MAX_LINES) {
        if (vf->n_said == VERIFY_MAX_LINES + 1) {
            fprintf(vf->report, "verify %s: further findings are counted, not listed\n", vf->dir);
        }
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    fprintf(vf->report, "verify %s: ", vf->dir);
    vfprintf(vf->report, fmt, ap);
    fputc('\n', vf->report);
    va_end(ap);
}

static struct vtopic *vtopic_find(struct verify *vf, uint32_t id)
{
    size_t lo = 0;
    size_t hi = vf->n_topics;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (vf->topics[mid].id == id) {
            return &vf->topics[mid];
        }
        if (vf->topics[mid].id < id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

static int verify_topics(struct verify *vf, MDB_txn *txn, MDB_dbi dbi_topics, MDB_dbi dbi_names)
{
    MDB_stat ms;
    MDB_cursor *cur;
    MDB_val k;
    MDB_val v;
    int rc = mdb_stat(txn, dbi_topics, &ms);
    if (rc != 0) {
        return rc;
    }
    vf->topics = calloc(ms.ms_entries ? ms.ms_entries : 1, sizeof(*vf->topics));
    if (vf->topics == NULL) {
        return ENOMEM;
    }
    rc = mdb_cursor_open(txn, dbi_topics, &cur);
    if (rc != 0) {
        return rc;
    }
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && vf->n_topics < ms.ms_entries;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct vtopic *t = &vf->topics[vf->n_topics];
        const char *name;
        size_t name_len;
        int d = store__topic_rec_decode(&k, &v, &t->id, &t->st, &name, &name_len);
        if (k.mv_size != 4) {
            vf->r->n_order_errors++;
            vsay(vf, "topics: malformed key of %zu bytes", k.mv_size);
            continue;
        }
        t->id = get_be32(k.mv_data);
        if (d != 0) {
            if (d == -1) {
                vf->r->n_crc_errors++;
            } else {
                vf->r->n_layout_errors++;
            }
            vsay(vf, "topic id %u: record %s", (unsigned)t->id,
                 d == -1 ? "fails its CRC" : "is malformed");
        } else {
            t->is_ok = true;
            memcpy(t->name, name, name_len);
            if (t->st.n_msgs != 0 && t->st.last_seq - t->st.first_seq + 1 != t->st.n_msgs) {
                vf->r->n_meta_mismatch++;
                vsay(vf, "topic '%s': first %" PRIu64 " last %" PRIu64 " but %" PRIu64 " messages",
                     t->name, t->st.first_seq, t->st.last_seq, t->st.n_msgs);
            }
        }
        vf->n_topics++;
    }
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        return rc;
    }
    vf->r->n_topics = vf->n_topics;

    rc = mdb_cursor_open(txn, dbi_names, &cur);
    if (rc != 0) {
        return rc;
    }
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        int nl = k.mv_size > STORE_TOPIC_MAX ? STORE_TOPIC_MAX : (int)k.mv_size;
        struct vtopic *t = v.mv_size == 4 ? vtopic_find(vf, get_be32(v.mv_data)) : NULL;
        if (t == NULL) {
            vf->r->n_orphans++;
            vsay(vf, "name '%.*s' points to no topic record", nl, (const char *)k.mv_data);
            continue;
        }
        if (t->is_ok &&
            (strlen(t->name) != k.mv_size || memcmp(t->name, k.mv_data, k.mv_size) != 0)) {
            vf->r->n_meta_mismatch++;
            vsay(vf, "name '%.*s' points to topic id %u named '%s'", nl, (const char *)k.mv_data,
                 (unsigned)t->id, t->name);
        }
        t->has_name = true;
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND) {
        return rc;
    }
    for (size_t i = 0; i < vf->n_topics; i++) {
        if (!vf->topics[i].has_name) {
            vf->r->n_meta_mismatch++;
            vsay(vf, "topic id %u has no name entry", (unsigned)vf->topics[i].id);
        }
    }
    return 0;
}

static void verify_gap(struct verify *vf, struct vtopic *t, uint64_t from, uint64_t to)
{
    vf->r->n_gaps++;
    vsay(vf, "topic '%s': sequences %" PRIu64 "..%" PRIu64 " missing", t->name, from, to);
}

static int verify_msgs(struct verify *vf, MDB_txn *txn, MDB_dbi dbi)
{
    MDB_cursor *cur;
    MDB_val k;
    MDB_val v;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0) {
        return rc;
    }
    unsigned char prev[MSG_KEY_LEN];
    bool has_prev = false;
    struct vtopic *t = NULL;
    uint32_t orphan_id = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != MSG_KEY_LEN) {
            vf->r->n_order_errors++;
            vsay(vf, "msgs: malformed key of %zu bytes", k.mv_size);
            continue;
        }
        if (has_prev && memcmp(prev, k.mv_data, MSG_KEY_LEN) >= 0) {
            vf->r->n_order_errors++;
            vsay(vf, "msgs: key out of order after topic %u seq %" PRIu64, get_be32(prev),
                 get_be64(prev + 4));
        }
        memcpy(prev, k.mv_data, MSG_KEY_LEN);
        has_prev = true;
        uint32_t id = get_be32(k.mv_data);
        uint64_t seq = get_be64(prev + 4);
        vf->r->n_msgs++;
        vf->r->n_bytes += v.mv_size;
        if (t == NULL || t->id != id) {
            t = vtopic_find(vf, id);
        }
        if (t == NULL) {
            vf->r->n_orphans++;
            if (id != orphan_id) {
                vsay(vf, "msgs: messages of unknown topic id %u", (unsigned)id);
                orphan_id = id;
            }
            continue;
        }
        struct store_msg m;
        int d = store__msg_decode(&k, &v, &m);
        if (d != 0) {
            if (d == -1) {
                vf->r->n_crc_errors++;
            } else {
                vf->r->n_layout_errors++;
            }
            vsay(vf, "topic '%s' seq %" PRIu64 ": %s", t->name, seq,
                 d == -1 ? "CRC mismatch (corrupt message)" : "malformed value");
        }
        if (t->n_msgs == 0) {
            t->first = seq;
            if (t->is_ok && seq > t->st.first_seq) {
                verify_gap(vf, t, t->st.first_seq, seq - 1);
            }
        } else if (seq != t->last + 1 && seq > t->last) {
            verify_gap(vf, t, t->last + 1, seq - 1);
        }
        if (t->is_ok && (seq < t->st.first_seq || seq > t->st.last_seq)) {
            vf->r->n_meta_mismatch++;
            vsay(vf, "topic '%s' seq %" PRIu64 ": outside first..last %" PRIu64 "..%" PRIu64,
                 t->name, seq, t->st.first_seq, t->st.last_seq);
        }
        t->last = seq;
        t->n_msgs++;
        t->n_bytes += v.mv_size >= VAL_HDR_LEN ? v.mv_size - VAL_HDR_LEN : 0;
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND) {
        return rc;
    }
    for (size_t i = 0; i < vf->n_topics; i++) {
        t = &vf->topics[i];
        if (!t->is_ok) {
            continue;
        }
        if (t->n_msgs == 0 && t->st.n_msgs != 0) {
            verify_gap(vf, t, t->st.first_seq, t->st.last_seq);
        } else if (t->n_msgs != 0 && t->last < t->st.last_seq) {
            verify_gap(vf, t, t->last + 1, t->st.last_seq);
        }
        if (t->n_msgs != t->st.n_msgs || t->n_bytes != t->st.n_bytes) {
            vf->r->n_meta_mismatch++;
            vsay(vf,
                 "topic '%s': record says %" PRIu64 " messages / %" PRIu64 " bytes, found %" PRIu64
                 " / %" PRIu64,
                 t->name, t->st.n_msgs, t->st.n_bytes, t->n_msgs, t->n_bytes);
        }
        if (t->st.n_msgs == 0 && t->st.first_seq != t->st.last_seq + 1) {
            vf->r->n_meta_mismatch++;
            vsay(vf, "topic '%s': empty but first_seq %" PRIu64 " != last_seq + 1", t->name,
                 t->st.first_seq);
        }
    }
    return 0;
}

static int verify_index(struct verify *vf, MDB_txn *txn, MDB_dbi dbi)
{
    MDB_cursor *cur;
    MDB_val k;
    MDB_val v;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0) {
        return rc;
    }
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        vf->r->n_index++;
        if (k.mv_size != MSG_KEY_LEN || v.mv_size != 8) {
            vf->r->n_index_errors++;
            vsay(vf, "tidx: malformed entry");
            continue;
        }
        uint32_t id = get_be32(k.mv_data);
        uint64_t seq = get_be64(v.mv_data);
        struct vtopic *t = vtopic_find(vf, id);
        if (t == NULL) {
            vf->r->n_orphans++;
            vsay(vf, "tidx: entry of unknown topic id %u", (unsigned)id);
            continue;
        }
        if (t->is_ok && (seq < t->st.first_seq || seq > t->st.last_seq)) {
            vf->r->n_index_errors++;
            vsay(vf,
                 "topic '%s': time index points to seq %" PRIu64 " outside %" PRIu64 "..%" PRIu64,
                 t->name, seq, t->st.first_seq, t->st.last_seq);
        }
        if (seq <= t->last_index_seq) {
            vf->r->n_index_errors++;
            vsay(vf, "topic '%s': time index not increasing at seq %" PRIu64, t->name, seq);
        }
        t->last_index_seq = seq;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* The last-value index (store_lastval.c): every (topic, 'k', key) -> seq
 * entry names a stored message of that topic with that key and a payload,
 * and has its (topic, 's', seq) -> key twin; every twin has its entry.
 * Problems count as index errors. */
static int verify_lastval(struct verify *vf, MDB_txn *txn, MDB_dbi dbi, MDB_dbi dbi_msgs)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0) {
        return rc;
    }
    unsigned char kb[5 + STORE_LASTVAL_KEY_MAX];
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const unsigned char *kp = k.mv_data;
        struct vtopic *t = k.mv_size > 5 ? vtopic_find(vf, get_be32(kp)) : NULL;
        if (t == NULL) {
            vf->r->n_orphans++;
            vsay(vf, "lastval: entry of an unknown topic");
            continue;
        }
        const char *why = NULL;
        uint64_t seq = 0;
        MDB_val twin_k, twin_v;
        unsigned char mk[MSG_KEY_LEN];
        if (kp[4] == 'k' && v.mv_size == 8 && k.mv_size - 5 <= STORE_LASTVAL_KEY_MAX) {
            seq = get_be64(v.mv_data);
            store__msg_key_make(mk, t->id, seq);
            MDB_val msg_k = {MSG_KEY_LEN, mk}, msg_v;
            struct store_msg m;
            int grc = mdb_get(txn, dbi_msgs, &msg_k, &msg_v);
            if (grc != 0 || store__msg_decode(&msg_k, &msg_v, &m) != 0) {
                why = "names a message that is not stored (or is corrupt)";
            } else if (m.key_len != k.mv_size - 5 || memcmp(m.key, kp + 5, m.key_len) != 0 ||
                       m.payload_len == 0) {
                why = "names a message of another key, or a tombstone";
            } else {
                memcpy(kb, kp, 4);
                kb[4] = 's';
                put_be64(kb + 5, seq);
                twin_k = (MDB_val){13, kb};
                grc = mdb_get(txn, dbi, &twin_k, &twin_v);
                if (grc != 0 || twin_v.mv_size != k.mv_size - 5 ||
                    memcmp(twin_v.mv_data, kp + 5, twin_v.mv_size) != 0) {
                    why = "has no by-sequence entry";
                }
            }
        } else if (kp[4] == 's' && k.mv_size == 13 && v.mv_size > 0 &&
                   v.mv_size <= STORE_LASTVAL_KEY_MAX) {
            seq = get_be64(kp + 5);
            memcpy(kb, kp, 4);
            kb[4] = 'k';
            memcpy(kb + 5, v.mv_data, v.mv_size);
            twin_k = (MDB_val){5 + v.mv_size, kb};
            int grc = mdb_get(txn, dbi, &twin_k, &twin_v);
            if (grc != 0 || twin_v.mv_size != 8 || get_be64(twin_v.mv_data) != seq) {
                why = "by-sequence entry without its key's entry";
            }
        } else {
            why = "malformed entry";
        }
        if (why != NULL) {
            vf->r->n_index_errors++;
            vsay(vf, "topic '%s': last-value index at seq %" PRIu64 ": %s", t->name, seq, why);
        }
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* The consumers table: the key must be "topic NUL name", or "pattern NUL
 * name [NUL topic]" (a wildcard durable and its positions); the record
 * itself belongs to consumer.c, so it is judged by the caller's check (if
 * any) against the committed counters of the key's last topic. A durable on
 * a topic never published (next_seq 1, nothing pending) is legitimate: the
 * check sees topic NULL and decides. */
static int verify_consumers(struct verify *vf, MDB_txn *txn, MDB_dbi dbi, MDB_dbi dbi_names,
                            store_consumer_check_cb check, void *ctx)
{
    MDB_cursor *cur;
    MDB_val k;
    MDB_val v;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0) {
        return rc;
    }
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        vf->r->n_consumers++;
        const char *key = k.mv_data;
        int kl = k.mv_size > STORE_CONSUMER_KEY_MAX ? STORE_CONSUMER_KEY_MAX : (int)k.mv_size;
        const char *nul = memchr(key, '\0', k.mv_size);
        if (k.mv_size > STORE_CONSUMER_KEY_MAX || nul == NULL || nul == key ||
            (size_t)(nul - key) > STORE_TOPIC_MAX) {
            vf->r->n_consumer_errors++;
            vsay(vf, "consumer key '%.*s' (%zu bytes): not a topic name, NUL, durable name", kl,
                 key, k.mv_size);
            continue;
        }
        size_t tl = (size_t)(nul - key);
        int nl = (int)(k.mv_size - tl - 1);
        /* A wildcard durable's position: its topic is the third part. */
        const char *nul2 = memchr(nul + 1, '\0', (size_t)nl);
        MDB_val tk = {tl, (void *)key};
        if (nul2 != NULL && memchr(key, '*', tl) == NULL && memchr(key, '>', tl) == NULL) {
            nul2 = NULL; /* not a pattern: a plain durable's name (judged by check) */
        }
        if (nul2 != NULL) {
            nl = (int)(nul2 - nul - 1);
            tk.mv_size = k.mv_size - (size_t)(nul2 + 1 - key);
            tk.mv_data = (void *)(nul2 + 1);
        }
        MDB_val tv;
        struct vtopic *t = NULL;
        int grc = mdb_get(txn, dbi_names, &tk, &tv);
        if (grc == 0 && tv.mv_size == 4) {
            t = vtopic_find(vf, get_be32(tv.mv_data));
        } else if (grc != MDB_NOTFOUND && grc != 0) {
            mdb_cursor_close(cur);
            return grc;
        }
        if (t != NULL && !t->is_ok) {
            continue; /* its topic record is corrupt: reported already */
        }
        struct store_topic_info info;
        if (t != NULL) {
            store__info_fill(&info, t->id, &t->st);
        }
        char why[200] = "";
        if (check != NULL &&
            check(ctx, key, k.mv_size, v.mv_data, v.mv_size, t ? &info : NULL, why, sizeof(why))) {
            vf->r->n_consumer_errors++;
            vsay(vf, "consumer '%.*s' on '%.*s': %s", nl, nul + 1, (int)tk.mv_size,
                 (const char *)tk.mv_data, why);
        }
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int store_verify(const char *dir, FILE *report, struct store_verify_result *res)
{
    return store_verify_ex(dir, report, NULL, NULL, res);
}

int store_verify_ex(const char *dir, FILE *report, store_consumer_check_cb check, void *ctx,
                    struct store_verify_result *res)
{
    struct store_verify_result r;
    memset(&r, 0, sizeof(r));
    struct verify vf = {.report = report, .dir = dir, .r = &r};
    char data_path[PATH_MAX];
    char err[512] = "";
    if (dir == NULL) {
        return FERRY_EINVAL;
    }
    int ret = store__dir_precheck(dir, false, data_path, err, sizeof(err));
    if (ret != 0) {
        vsay(&vf, "%s", err);
        return ret;
    }
    /* With no broker on it, recover first, as a start would (the log
     * replayed onto the last checkpoint): what is checked is what a broker
     * would serve. Next to a live broker (-EBUSY) its snapshot is whole. */
    ret = store_recover(dir, NULL, err, sizeof(err));
    if (ret != 0 && ret != -EBUSY) {
        vsay(&vf, "recovery: %s", err);
    }
    MDB_env *env;
    MDB_txn *txn;
    int rc = mdb_env_create(&env);
    if (rc != 0) {
        vsay(&vf, "lmdb: %s", mdb_strerror(rc));
        return rc == ENOMEM ? -ENOMEM : FERRY_ESTORAGE;
    }
    mdb_env_set_maxdbs(env, STORE_MAXDBS);
    rc = mdb_env_open(env, dir, MDB_RDONLY | MDB_NOTLS, 0600);
    if (rc != 0) {
        vsay(&vf, "cannot open the LMDB environment: %s", mdb_strerror(rc));
        ret = rc > 0 ? -rc : FERRY_ESTORAGE;
        goto out_env;
    }
    rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        vsay(&vf, "cannot begin a read transaction: %s", mdb_strerror(rc));
        ret = FERRY_ESTORAGE;
        goto out_env;
    }
    MDB_dbi dbi_meta, dbi_topics, dbi_names, dbi_msgs, dbi_tidx;
    static const char *const names[] = {"meta", "topics", "names", "msgs", "tidx"};
    MDB_dbi *dbis[] = {&dbi_meta, &dbi_topics, &dbi_names, &dbi_msgs, &dbi_tidx};
    for (size_t i = 0; i < 5; i++) {
        rc = mdb_dbi_open(txn, names[i], 0, dbis[i]);
        if (rc != 0) {
            vsay(&vf, "database '%s': %s (not a ferry store, or corrupt)", names[i],
                 mdb_strerror(rc));
            ret = FERRY_ESTORAGE;
            goto out_txn;
        }
    }
    MDB_val k = {sizeof(STORE_META_KEY) - 1, STORE_META_KEY};
    MDB_val v;
    rc = mdb_get(txn, dbi_meta, &k, &v);
    int mc = rc == 0 ? store__meta_check(&v) : -1;
    if (mc != 0) {
        vsay(&vf, "%s",
             mc == -1 ? "format record missing or wrong magic: not a ferry store"
                      : "format record corrupt or of another version");
        ret = FERRY_ESTORAGE;
        goto out_txn;
    }
    rc = verify_topics(&vf, txn, dbi_topics, dbi_names);
    if (rc == 0) {
        rc = verify_msgs(&vf, txn, dbi_msgs);
    }
    if (rc == 0) {
        rc = verify_index(&vf, txn, dbi_tidx);
    }
    if (rc == 0) {
        /* Stores made before last-value topics lack the index. */
        MDB_dbi dbi_lastval;
        int lrc = mdb_dbi_open(txn, "lastval", 0, &dbi_lastval);
        if (lrc == 0) {
            rc = verify_lastval(&vf, txn, dbi_lastval, dbi_msgs);
        } else if (lrc != MDB_NOTFOUND) {
            rc = lrc;
        }
    }
    if (rc == 0) {
        /* Stores made before durable consumers may lack the table. */
        MDB_dbi dbi_consumers;
        int crc = mdb_dbi_open(txn, "consumers", 0, &dbi_consumers);
        if (crc == 0) {
            rc = verify_consumers(&vf, txn, dbi_consumers, dbi_names, check, ctx);
        } else if (crc != MDB_NOTFOUND) {
            rc = crc;
        }
    }
    if (rc != 0) {
        vsay(&vf, "walk stopped: %s", mdb_strerror(rc));
        r.n_order_errors++;
    }
    vf.n_said = 0; /* the summary is always written */
    r.n_problems = r.n_crc_errors + r.n_layout_errors + r.n_order_errors + r.n_gaps + r.n_orphans +
                   r.n_meta_mismatch + r.n_index_errors + r.n_consumer_errors;
    vsay(&vf,
         "%" PRIu64 " topics, %" PRIu64 " messages, %" PRIu64 " bytes, %" PRIu64
         " index entries, %" PRIu64 " consumers; %" PRIu64 " problems (%" PRIu64 " crc, %" PRIu64
         " layout, %" PRIu64 " order, %" PRIu64 " gaps, %" PRIu64 " orphans, %" PRIu64
         " counters, %" PRIu64 " index, %" PRIu64 " consumers)",
         r.n_topics, r.n_msgs, r.n_bytes, r.n_index, r.n_consumers, r.n_problems, r.n_crc_errors,
         r.n_layout_errors, r.n_order_errors, r.n_gaps, r.n_orphans, r.n_meta_mismatch,
         r.n_index_errors, r.n_consumer_errors);
    ret = r.n_problems == 0 ? 0 : FERRY_ESTORAGE;
    if (res != NULL) {
        *res = r;
    }
out_txn:
    mdb_txn_abort(txn);
out_env:
    mdb_env_close(env);
    free(vf.topics);
    return ret;
}

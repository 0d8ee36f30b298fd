/*
 * store_int.h - what the store's files share: struct store, the batch, the
 * in-memory topics, the record constants, and the helpers one file offers
 * the others (prefix store__). Private to broker/store*.c: it includes
 * lmdb.h, which no other file of ferry may. The module's API is store.h.
 *
 *   store.c         open and close, stats, errors, transactions, the
 *                   in-memory topic table
 *   store_codec.c   the records' bytes: keys, values, topic and meta records
 *   store_write.c   the writer path: batches, their log records, map growth
 *   store_purge.c   purge and retention trims
 *   store_read.c    readers: messages, time seeks, topics, consumer records
 *   store_ckpt.c    checkpoints and their thread; recovery (the log replayed)
 *   store_verify.c  ferryd --verify
 *   store_offline.c recovery on demand, read-only opens, compacted copies
 *                   (ferryd --inspect, backups)
 *   store_wal.c     the write-ahead log's files (store_wal.h)
 */
#ifndef FERRY_STORE_INT_H
#define FERRY_STORE_INT_H

#include "store.h"
#include "store_bytes.h"

#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_MAGIC "FERRYSTO"
#define STORE_MAGIC_LEN 8
#define STORE_META_KEY "format"
#define STORE_META_LEN 28
#define STORE_MAXDBS 16

#define MSG_KEY_LEN 12
#define VAL_HDR_LEN 28
#define TOPIC_REC_HDR 48

#define DEFAULT_WAL_HALF ((size_t)16 << 20) /* bytes per half of the log */
#define LOG_HEAD 24u                        /* a batch record's fixed head (batch_log) */

#define TIME_NONE INT64_MIN            /* topic_state.last_time: nothing indexed yet */
#define TIDX_GRAIN_NS INT64_C(1000000) /* one time index entry per topic per ms */

/* Arena record flags. */
#define REC_APPEND_MSG 0x1u
#define REC_TIDX 0x2u
#define REC_APPEND_TIDX 0x4u
#define REC_DEDUPE 0x8u    /* a producer trailer follows the value (store_dedupe.c) */
#define DEDUPE_TRAILER 16u /* producer id, producer sequence (u64 LE each) */
#define REC_LASTVAL 0x10u  /* index the message's key in "lastval" (store_lastval.c) */
/* Into "sched", not the topic: seq is the schedule id, tkey the biased due
 * time (store_sched.c). */
#define REC_SCHED 0x20u
#define REC_UNSCHED 0x40u /* a trailer names the "sched" entry this append moves */
#define SCHED_TRAILER 16u /* biased due time, schedule id (u64 LE each) */
/* Replay: only its REC_UNSCHED delete (the append is in LMDB already;
 * store_ckpt.c). */
#define REC_UNSCHED_ONLY 0x80u
#define VAL_F_EXPIRES 0x1u /* value flag: an expiry time (i64 LE) follows the payload */

struct topic_state {
    uint64_t first_seq;
    uint64_t last_seq;
    uint64_t n_msgs;
    uint64_t n_bytes;
    int64_t last_time;
};

/* In-memory topic; the table and everything in it is guarded by s->wlock. */
struct store_topic {
    struct store_topic *hnext; /* hash chain */
    struct store_topic *dnext; /* the open batch's dirty list */
    uint32_t id;
    uint32_t hash;
    bool is_new;             /* created by the open batch, not committed yet */
    bool is_dirty;           /* on the dirty list */
    bool is_logged;          /* is_new, and its creation is in the log */
    struct topic_state cur;  /* committed */
    struct topic_state pend; /* including the open batch */
    uint16_t name_len;
    char name[];
};

/* One append in the arena, followed by the encoded value padded to 8. */
struct rec_hdr {
    uint32_t topic_id;
    uint32_t val_len;
    uint64_t seq;
    uint64_t tkey; /* biased index time */
    uint32_t flags;
    uint32_t pad;
};

struct store_batch {
    struct store *s;
    MDB_txn *txn; /* NULL between a failure and the replay */
    bool is_open;
    int broken_rc; /* non-zero: the batch is lost, commit returns this */
    unsigned char *arena;
    size_t arena_len;
    size_t arena_cap;
    size_t n_msgs;
    struct store_topic *dirty;
    unsigned char *cons_buf; /* consumer records put, in the log's format (batch_log) */
    size_t cons_len, cons_cap;
    uint32_t n_cons;
    size_t n_msgs_logged;   /* messages among them (the commit-size histogram) */
    size_t log_off;         /* arena bytes in the log (this generation) */
    size_t cons_logged;     /* cons_buf bytes in the log */
    uint32_t n_cons_logged; /* records among them */
    bool is_promised;       /* store_batch_log() ran: a failed commit fail-stops */
    uint32_t saved_next_id;
    uint32_t saved_msg_max;
    uint32_t saved_tidx_max;
    bool is_replay;      /* replaying the log: commit writes no record */
    bool is_logged;      /* part of it is in the log, generation logged_gen */
    bool is_unlogged;    /* too large for the log: committed with a checkpoint */
    bool is_space_freed; /* a full map made it checkpoint (batch_recover) */
    int64_t sched_delta; /* scheduled messages added less moved, for n_scheduled */
    uint64_t logged_gen;
};

/* The checkpoint thread's state (ck_mu). */
enum ck_state {
    CK_IDLE = 0,      /* nothing asked */
    CK_REQUESTED = 1, /* ck_gen's checkpoint asked for, in progress */
    CK_DONE = 2,      /* finished with ck_rc; the writer has not looked yet */
};

struct store {
    MDB_env *env;
    MDB_dbi dbi_meta;
    MDB_dbi dbi_topics;
    MDB_dbi dbi_names;
    MDB_dbi dbi_msgs;
    MDB_dbi dbi_tidx;
    MDB_dbi dbi_consumers;
    MDB_dbi dbi_dedupe;
    MDB_dbi dbi_lastval;
    MDB_dbi dbi_sched;
    uint64_t sched_next_id;           /* wlock: the next schedule id to try */
    struct dedupe_slot *dedupe_cache; /* wlock: store_dedupe.c; NULL until used */
    int lock_fd;      /* our fd on data.mdb, flock'ed exclusively; -1 when read-only */
    bool is_readonly; /* store_open_readonly(): readers only (written by open only) */
    enum store_sync_mode sync_mode;
    size_t map_max;
    size_t map_grow_step; /* store_options.map_grow_step_max */
    size_t page_size;

    pthread_mutex_t wlock;     /* the writer path: batch, purge, sync */
    pthread_rwlock_t map_lock; /* shared: any txn; exclusive: set_mapsize */

    /* guarded by wlock */
    struct store_topic **htab;
    size_t hcap;
    size_t hcount;
    uint32_t next_topic_id;
    uint32_t msg_max_topic;  /* highest topic id with a message, 0: none */
    uint32_t tidx_max_topic; /* highest topic id with an index entry */
    struct store_batch batch;

    /*
     * Write-ahead log and checkpoints (store_wal.h). Every LMDB commit is
     * made without a sync (MDB_NOSYNC); a batch is durable once its log
     * record is. A checkpoint makes LMDB's pages durable up to a snapshot,
     * then records that snapshot's meta pages; recovery writes them back.
     * Until the next checkpoint is durable, a read transaction (pin) keeps
     * LMDB from reusing any page of the checkpointed snapshot, so that
     * snapshot stays whole on disk whatever later commits write.
     */
    struct wal *wal;        /* the log; wlock (the writer path) */
    uint64_t gen;           /* wlock: the log generation being written */
    MDB_txn *pin;           /* wlock: on the last durable checkpoint's snapshot */
    MDB_txn *pin_next;      /* wlock: on the snapshot of the one in progress */
    uint32_t commits_since; /* wlock: commits since the last checkpoint began */
    uint64_t ckpt_began_ms; /* wlock: when it began */
    unsigned char *wal_buf; /* wlock: a batch record's head and consumer part */
    size_t wal_buf_cap;     /* wlock */
    pthread_t ck_thread;    /* makes checkpoints durable off the writer */
    bool has_ck_thread;     /* written by open/close only */
    pthread_mutex_t ck_mu;  /* guards ck_state, ck_stop, ck_gen, ck_rc */
    pthread_cond_t ck_cv;   /* ck_state or ck_stop changed */
    enum ck_state ck_state;
    bool ck_stop;
    uint64_t ck_gen;
    int ck_rc;
    unsigned char *ck_metas; /* the meta pages of ck_gen's snapshot: the writer
                              * fills it while CK_IDLE, the thread reads it
                              * while CK_REQUESTED (ck_mu hands it over) */
    size_t ck_metas_len;
    /* A bulk batch (store_write.c, batch_log) is not logged: it is visible
     * from its LMDB commit but durable only when the checkpoint that follows
     * is. Meanwhile a reader whose snapshot holds it waits
     * (store__rtxn_begin), so nothing is read that a power cut could take
     * back. */
    atomic_uint_fast64_t undurable_txn; /* atomic: that commit's txn id, 0: none. The
                                         * writer sets it before the commit and clears
                                         * it under ck_mu once durable (without, if
                                         * the commit failed: no snapshot holds it) */
    pthread_cond_t dur_cv;              /* with ck_mu: undurable_txn cleared, or failed */

    /* atomic: read by any thread */
    _Atomic size_t map_size;
    atomic_bool is_failed;
    _Atomic(const char *) fail_reason;
    atomic_uint_fast64_t n_commits;
    atomic_uint_fast64_t commit_hist[STORE_LAT_BUCKETS]; /* atomic: the writer adds, any
                                                          * thread reads (store_stats) */
    atomic_uint_fast64_t sync_hist[STORE_LAT_BUCKETS];   /* atomic: as commit_hist */
    atomic_uint_fast64_t commit_us, sync_us;             /* atomic: as commit_hist; their sums */
    atomic_uint_fast64_t commit_msgs_hist[STORE_MSGS_BUCKETS]; /* atomic: as commit_hist */
    atomic_uint_fast64_t n_appends;
    atomic_uint_fast64_t n_crc_errors;
    atomic_uint_fast64_t n_map_grows;
    atomic_uint_fast64_t n_batch_replays;
    atomic_uint_fast64_t n_full_errors;
    atomic_uint_fast64_t n_topics;
    atomic_uint_fast64_t n_checkpoints;
    atomic_uint_fast64_t n_scheduled; /* entries of "sched", as committed */
    uint64_t n_replayed;              /* log records replayed by open; written by open only */
    uint64_t n_open_reads;            /* written by open only */
    int n_stale_readers;              /* written by open only */
};

/* ---- time keys (store_codec.c says how keys are laid out) -------------- */

static inline uint64_t store__time_bias(int64_t t)
{
    return (uint64_t)t ^ (UINT64_C(1) << 63);
}

static inline int64_t store__time_unbias(uint64_t u)
{
    return (int64_t)(u ^ (UINT64_C(1) << 63));
}

/* floor(t / TIDX_GRAIN_NS); t > INT64_MIN. */
static inline int64_t store__time_bucket(int64_t t)
{
    return t >= 0 ? t / TIDX_GRAIN_NS : -((-t + TIDX_GRAIN_NS - 1) / TIDX_GRAIN_NS);
}

static inline void store__msg_key_make(unsigned char k[MSG_KEY_LEN], uint32_t topic_id,
                                       uint64_t seq)
{
    put_be32(k, topic_id);
    put_be64(k + 4, seq);
}

/* Bytes of one arena record: its rec_hdr and its value padded to 8. */
static inline size_t store__rec_size(uint32_t val_len)
{
    return sizeof(struct rec_hdr) + (((size_t)val_len + 7u) & ~(size_t)7u);
}

/* Bytes of arena record r, with its producer trailer if it has one. */
static inline size_t store__rec_len(const struct rec_hdr *r)
{
    /* REC_LASTVAL adds nothing: the key is in the value. */
    return store__rec_size(r->val_len) + ((r->flags & REC_DEDUPE) ? DEDUPE_TRAILER : 0) +
           ((r->flags & REC_UNSCHED) ? SCHED_TRAILER : 0);
}

/* ---- store_sched.c: scheduled messages (writer path) --------------------- */

/* Put r (REC_SCHED) into "sched", or delete the entry r's trailer names
 * (REC_UNSCHED; gone already is fine: a replay). MDB codes. Writer. */
int store__sched_apply(struct store_batch *b, const struct rec_hdr *r);
int store__unsched_apply(struct store_batch *b, const struct rec_hdr *r);
/* A schedule id for due that no entry of "sched" has (b's txn). Writer. */
uint64_t store__sched_id_new(struct store_batch *b, int64_t due);
/* Count the entries of "sched" into n_scheduled (open, after recovery):
 * an MDB code. */
int store__sched_count(struct store *s);
/* Write r's REC_UNSCHED trailer (after its value and producer trailer). */
void store__unsched_trailer_put(struct rec_hdr *r, int64_t due, uint64_t id);

/* ---- store_dedupe.c: producer sequences (writer path) -------------------- */

/* What the writer knows of a producer on a topic without asking LMDB: a
 * direct-mapped cache (a collision replaces the slot). `last` is at least
 * every sequence of it stored (appends that failed may have raised it:
 * harmless, a lookup then asks LMDB). */
struct dedupe_slot {
    uint64_t producer; /* 0: empty */
    uint32_t topic_id;
    uint64_t last;    /* its highest sequence appended */
    uint64_t evicted; /* the sequence at its last eviction */
};

/* Write the producer trailer of r (REC_DEDUPE; its value encoded). Pure. */
void store__dedupe_trailer_put(struct rec_hdr *r, uint64_t producer, uint64_t pseq);
/* Put the dedupe entry of r (REC_DEDUPE) into b's txn, and drop its
 * producer's entries that fell out of the span. An MDB code. Writer. */
int store__dedupe_apply(struct store_batch *b, const struct rec_hdr *r);

/* ---- store_lastval.c: last-value topics -------------------------------- */

/* Index the key of r (REC_LASTVAL; its value encoded) in b's txn: its
 * entry now names r->seq, or is gone if r's payload is empty (a
 * tombstone). An MDB code. Writer. */
int store__lastval_apply(struct store_batch *b, const struct rec_hdr *r);
/* The lowest seq topic_id's index holds (UINT64_MAX: none), in txn. An
 * MDB code. */
int store__lastval_floor(struct store *s, MDB_txn *txn, uint32_t topic_id, uint64_t *seq);
/* Delete up to max entries of topic_id's index in txn; *is_done once none
 * is left. An MDB code. Writer. */
int store__lastval_drop(struct store *s, MDB_txn *txn, uint32_t topic_id, size_t max,
                        bool *is_done);

/* ---- store_codec.c: pure byte work, any thread ------------------------- */

/* Check and decode a stored message: 0, -1 CRC mismatch, -2 layout error;
 * m is filled only on success and points into val. */
int store__msg_decode(const MDB_val *key, const MDB_val *val, struct store_msg *m);
/* Encode m as the value after arena record r (r's fields set), CRC last. */
void store__value_encode(struct rec_hdr *r, const struct store_msg_in *m, size_t hlen);
/* A message's index time: its publish time, never below the topic's last. */
int64_t store__clamped_time(const struct topic_state *st, int64_t publish_time);
/* Encode a topics record (TOPIC_REC_HDR + name_len bytes) with its CRC. */
void store__topic_rec_encode(unsigned char *out, uint32_t id, const struct topic_state *st,
                             const char *name, size_t name_len);
/* Decode a topics record: 0 (*name points into val), -1 CRC, -2 layout. */
int store__topic_rec_decode(const MDB_val *key, const MDB_val *val, uint32_t *id,
                            struct topic_state *st, const char **name, size_t *name_len);
/* The meta "format" record of a store created at `created` (ns). */
void store__meta_encode(unsigned char out[STORE_META_LEN], int64_t created);
/* Check a meta "format" record: 0 (ours, this format), -1 not ferry's (no
 * such record, wrong length or magic), -2 CRC mismatch, -3 another format
 * version. Pure. */
int store__meta_check(const MDB_val *v);

/* ---- store.c: errors, transactions, topic table, open ------------------ */

/* One line of explanation into err (err NULL or err_len 0: none). Any thread. */
void store__err_set(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Enter fail-stop with mdb_rc's text; returns FERRY_ESTORAGE. Any thread. */
int store__fail(struct store *s, int mdb_rc);
/* A read path's LMDB/system code as a ferry code; never fail-stops. Any thread. */
int store__xlate_read(int rc);
/* A write path's LMDB/system code as a ferry code: storage full, -ENOMEM,
 * or else a fail-stop (FERRY_ESTORAGE). Writer. */
int store__xlate_write(struct store *s, int rc);
/* Is rc "storage full" (map full, ENOSPC, EDQUOT)? Any thread. */
bool store__is_full_error(int rc);
/* Begin a read txn, map_lock held shared: 0 or a ferry code. Any thread. */
int store__rtxn_begin(struct store *s, MDB_txn **txn);
/* Adopt the map size another process grew the file to (MDB_MAP_RESIZED),
 * no txn of ours open (takes map_lock exclusively): an MDB/errno code. */
int store__map_adopt(struct store *s);
/* A store's memory and locks, nothing opened (lock_fd -1); NULL: no memory.
 * store__free() undoes it (and closes the log, if any). Open/close only. */
struct store *store__alloc(const struct store_options *opts);
void store__free(struct store *s);
/* End a read txn and release map_lock. The thread that began it. */
void store__rtxn_end(struct store *s, MDB_txn *txn);
/* Begin a write txn, map_lock held shared: an MDB/errno code. Writer (wlock). */
int store__wtxn_begin(struct store *s, MDB_txn **txn);
/* Abort a write txn and release map_lock. Writer (wlock). */
void store__wtxn_abort(struct store *s, MDB_txn *txn);
/* Commit a write txn (gone afterwards whatever the result), release map_lock:
 * an MDB/errno code. Writer (wlock). */
int store__wtxn_commit(struct store *s, MDB_txn *txn);
/* CLOCK_MONOTONIC in microseconds. Any thread. */
uint64_t store__mono_us(void);
/* FNV-1a of a topic name, the topic table's hash. Pure. */
uint32_t store__name_hash(const char *p, size_t len);
/* The in-memory topic of that name (hash h), or NULL. Writer (wlock). */
struct store_topic *store__topic_find(struct store *s, const char *name, size_t len, uint32_t h);
/* Add t to the topic table: 0 or -ENOMEM. Writer (wlock). */
int store__topic_insert(struct store *s, struct store_topic *t);
/* Take t out of the topic table (the caller frees it). Writer (wlock). */
void store__topic_unlink(struct store *s, struct store_topic *t);
/* A new, empty in-memory topic (not in the table), or NULL. Pure. */
struct store_topic *store__topic_alloc(const char *name, size_t len, uint32_t h, uint32_t id);
/* Check the meta record that mdb_get() returned get_rc for: 0, or
 * FERRY_ESTORAGE with err saying why ("not a ferry store" ...). */
int store__meta_verify(const char *dir, int get_rc, const MDB_val *v, char *err, size_t err_len);
/* Look at dir before LMDB touches it (store_open(), store_verify(), the
 * offline opens): its data.mdb's path into data_path; 0, or a ferry code or
 * -errno (-ENAMETOOLONG: the path) with err filled. No store needed. */
int store__dir_precheck(const char *dir, bool may_create, char data_path[PATH_MAX], char *err,
                        size_t err_len);

/* ---- store_write.c: the writer path (wlock held) ----------------------- */

/* Reserve disk blocks for a map of size bytes: 0 or -errno. Writer, or open. */
int store__map_reserve(struct store *s, size_t size);
/* Grow the map, no txn of ours open: 0 if it grew, -1 if it cannot. Writer. */
int store__map_grow(struct store *s);
/* Room for need more bytes in b's arena: 0 or -ENOMEM. Writer. */
int store__arena_reserve(struct store_batch *b, size_t need);
/* Put arena record r (just past the arena's used part) into b's txn,
 * growing the map and replaying b as needed: 0 or a ferry code. Writer. */
int store__batch_put(struct store_batch *b, struct rec_hdr *r);
/* Record r (need bytes, in the txn) joins b: count it in t's pending
 * state. Writer. */
/* A scheduled record (need bytes, in the txn) joins the batch. */
void store__batch_account_sched(struct store_batch *b, struct store_topic *t, size_t need);
void store__batch_account(struct store_batch *b, struct store_topic *t, const struct rec_hdr *r,
                          size_t need, int64_t when);
/* A checkpoint began a new generation while b is open: log again what b
 * had logged. 0 or FERRY_ESTORAGE. Writer (store__ckpt_begin()). */
int store__batch_relog(struct store_batch *b);

/* ---- store_read.c ------------------------------------------------------ */

/* One decoded message of a read (store_read, store_lastval_read): handed
 * to cb within the byte budget and counted in *r; *next is where the read
 * goes on. 1: the read ends here. Inside the read's txn. */
int store__read_one(struct store_read_result *r, const struct store_msg *m, size_t max_bytes,
                    store_read_cb cb, void *ctx, uint64_t *next);

/* The public view of a topic's counters. Pure. */
void store__info_fill(struct store_topic_info *info, uint32_t id, const struct topic_state *st);

/* ---- store_ckpt.c: checkpoints and recovery ---------------------------- */

/* Take a finished checkpoint's result (waiting if is_wait): 0, 1 (still in
 * progress) or FERRY_ESTORAGE. Writer (wlock). */
int store__ckpt_reap(struct store *s, bool is_wait);
/* Begin a checkpoint of the last committed snapshot: 0 or FERRY_ESTORAGE.
 * Writer (wlock). */
int store__ckpt_begin(struct store *s);
/* A checkpoint, waited for: 0 or FERRY_ESTORAGE. Writer (wlock). */
int store__ckpt_sync(struct store *s);
/* Is a checkpoint due (by commits, log use or time)? Writer (wlock). */
bool store__ckpt_is_due(struct store *s);
/* After a commit: begin a checkpoint if one is due. Writer (wlock). */
int store__ckpt_maybe(struct store *s);
/* Stop the checkpoint thread and drop the pins. Open or close only. */
void store__ckpt_thread_stop(struct store *s);
/* Before LMDB opens data.mdb: write the last checkpoint's meta pages back.
 * 0, or -errno / FERRY_ESTORAGE with err filled. Open only. */
int store__ckpt_restore(struct store *s, const char *dir, bool *has_ckpt, uint64_t *gen, char *err,
                        size_t err_len);
/* After the topics are loaded: replay the log, start the checkpoint thread,
 * checkpoint. 0 or a ferry code / -errno with err filled. Open only. */
int store__wal_recover(struct store *s, const char *dir, const struct store_options *opts,
                       bool has_ckpt, uint64_t gen, char *err, size_t err_len);

#endif

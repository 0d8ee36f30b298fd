/*
 * store.h - ferry's message store: topics persisted in one LMDB environment.
 *
 * WHAT IT IS
 *   One LMDB environment in the data directory holds every persistent topic.
 *   Each topic has a 32-bit id and numbers its messages 1, 2, 3, ... with no
 *   gaps, continuing across restarts. A message is stored once, under the key
 *   (topic id, sequence), with a CRC32C that is checked on every read. This
 *   file is the contract; the store's own files (broker/store*.c, through
 *   their private store_int.h) are the only ones in ferry that include
 *   lmdb.h, and every MDB_* code is translated there into ferry's codes.
 *
 * ON DISK (format version 1; see store_codec.c for the byte layouts)
 *   data.mdb, lock.mdb    the LMDB environment, written without syncs
 *   wal, checkpoint       the write-ahead log that makes commits durable
 *                         with one sequential sync, and the last
 *                         checkpoint (store_wal.h says how)
 *   named databases:
 *     "meta"       "format" -> magic "FERRYSTO", format version, created time
 *     "topics"     topic id (u32 BE) -> counters: first/last seq, message and
 *                  byte counts, last indexed time, name; CRC32C protected
 *     "names"      topic name -> topic id (u32 BE)
 *     "msgs"       (topic id u32 BE, seq u64 BE) -> header + headers + key +
 *                  payload; the header's CRC32C covers the key and the value
 *     "tidx"       (topic id u32 BE, ms bucket of publish time u64 BE, biased)
 *                  -> first seq u64 BE of that bucket: a sparse index for
 *                  start by time (at most one entry per topic per ms)
 *     "consumers"  durable consumer state: key topic name, NUL, durable
 *                  name -> an opaque record owned by consumer.c (ack floor,
 *                  next sequence, delivered-but-unacked set). Written with
 *                  store_consumers_put() on the writer path.
 *     "dedupe"     (producer id u64 BE, topic id u32 BE, producer seq u64 BE)
 *                  -> topic seq u64 LE, publish time i64 LE: the producer
 *                  sequences of idempotent publishes (store_dedupe.c)
 *     "sched"      (due time u64 BE, biased, schedule id u64 BE) -> topic id
 *                  u32 LE, then a message value as in "msgs": scheduled
 *                  messages not yet in their topic (store_sched.c)
 *     "lastval"    (topic id u32 BE, 'k', message key) -> seq u64 BE, and
 *                  (topic id u32 BE, 's', seq u64 BE) -> message key: the
 *                  newest message of each key of last-value topics
 *                  (store_lastval.c)
 *   Start-up reads the meta record and the topics table only (plus the last
 *   key of two tables): its cost does not grow with the number of messages.
 *
 * THREADS
 *   - Writer path: store_batch_begin() .. store_batch_commit()/abort(), and
 *     store_topic_purge(), store_sync(). They serialise on the store's writer
 *     mutex. A batch belongs to the thread that began it (LMDB ties a write
 *     transaction to its thread): append, commit and abort must be called on
 *     that thread. A second store_batch_begin() blocks until the open batch
 *     ends, so a thread holding a batch must not call begin, purge or sync
 *     (self-deadlock). Intended use: one "store writer" thread that drains
 *     what the IO threads queued, appends it, logs it (store_batch_log: one
 *     sync), posts the acks, and commits the batch when idle or after a few
 *     hundred microseconds (INTEGRATION below).
 *   - Readers: store_read(), store_seek_time(), store_topic_info(),
 *     store_topic_info_by_id(), store_topic_list(), store_stats() may be
 *     called from any thread, concurrently with each other and with the
 *     writer. Each call runs one (or, for lists, a few) short read-only
 *     transactions and never keeps one across calls. Read callbacks run
 *     inside that transaction: they must copy what they keep, return quickly,
 *     and must not call any store function (that could deadlock against a
 *     map resize, see below).
 *   - Map resize: LMDB can change the map size only while this process has
 *     no transaction open. The store owns a writer-preferring rwlock,
 *     map_lock: every transaction (read or write) holds it shared for its
 *     whole life; the writer takes it exclusively, with its own transaction
 *     ended, only to call mdb_env_set_mapsize(). Callers need to do nothing
 *     beyond keeping to the rules above; a resize waits for in-flight reads
 *     (which are bounded by their max_msgs/max_bytes) and blocks new ones
 *     for its duration (microseconds).
 *   - store_open() and store_close() are not concurrent with anything: close
 *     only after every reader returned and no batch is open.
 *   - Concurrency with other processes: store_open() takes an exclusive
 *     flock on data.mdb, so two brokers never share a directory (the writer
 *     caches topic counters in memory). store_verify() takes no such lock and
 *     may run next to a live broker (it reads one consistent snapshot).
 *
 * INTEGRATION (what writer.c does)
 *   Store writer thread, the single writer path:
 *     loop: take what the IO threads queued; store_batch_begin() if no
 *       batch is open; store_batch_append() each publish (sequence numbers
 *       come from the store; a per-message error nacks just that publish);
 *       store_batch_log(): one log record, one sync under
 *       STORE_SYNC_ALWAYS; 0: hand (topic id, seq, msg) to the topic's
 *          worker for live fan-out, in append order, and send every
 *          PubAck with its seq; 1 (bulk, or too large for the log):
 *          store_batch_commit() at once, then the same;
 *       when the batch is due (store_batch_commit_is_due(), its age, or a
 *          reader that asks): store_batch_commit(); readers see a batch
 *          from its commit, so a message may be routed before it is
 *          readable (writer.c says how readers wait for that);
 *       FERRY_ESTORAGEFULL: nack what was not logged yet and go on;
 *       FERRY_ESTORAGE: log store_stats().fail_reason, and exit non-zero
 *          (fail-stop: a restart replays what was logged).
 *     Under STORE_SYNC_INTERVAL the same thread calls store_sync() from a
 *     timer, with no batch open. A group commit costs one sequential sync
 *     whatever its size, which is what group commit buys; LMDB's own pages
 *     are made durable by checkpoints, off the writer's path.
 *   Catch-up readers (any thread): store_topic_info() for the start
 *     position (store_topic_seq_last_n(), store_seek_time(), first_seq),
 *     then store_read() chunks; see store_read() for the seam to live.
 *
 * ERRORS (negative ints; ferry.h's FERRY_E* codes or -errno)
 *   FERRY_EINVAL        bad argument (empty or too long topic, max_msgs 0,
 *                       bad options)
 *   FERRY_ENOTOPIC      the named topic has never been stored
 *   FERRY_ESTORAGEFULL  the map is at map_size_max, or the disk is full
 *                       (ENOSPC/EDQUOT). Only the failing append or batch is
 *                       refused; everything committed earlier is intact, and
 *                       writes work again once space is freed (purge,
 *                       retention, or a larger max on restart).
 *   FERRY_ELIMIT        one batch grew past LMDB's dirty page limit (about
 *                       512 MiB of changes): commit it and append again.
 *   FERRY_ESTORAGE      the store failed (EIO, a failed commit or sync, LMDB
 *                       panic or corruption) and is now FAIL-STOPPED: every
 *                       later write returns FERRY_ESTORAGE. The broker must
 *                       log it and exit non-zero: after a failed fsync Linux
 *                       may have dropped the dirty pages and marked them
 *                       clean, so a retry that "succeeds" loses data
 *                       silently. Reads keep working for what is committed.
 *                       Also returned by store_open() for a foreign, corrupt
 *                       or newer-format directory (err text says which).
 *   -EBUSY              store_open(): another process holds the directory
 *   -EAGAIN             too many concurrent readers (raise max_readers)
 *   -ENOMEM, -EACCES, -ENOENT, -ENOTDIR, ...  from the system, as is.
 *   Out-parameters are written only on success.
 */
#ifndef FERRY_STORE_H
#define FERRY_STORE_H

#include "ferry.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

struct store;
struct store_batch;

/* Bytes in a stored topic's name. It is an LMDB key (at most 511 bytes) and
 * part of the durable consumers' keys; longer topics (max_topic_len allows
 * up to 4096) can only be ephemeral. */
#define STORE_TOPIC_MAX 255
#define STORE_STR_(x) #x
#define STORE_STR(x) STORE_STR_(x)
#define STORE_TOPIC_MAX_TEXT STORE_STR(STORE_TOPIC_MAX) /* the same, for messages */
#define STORE_FORMAT_VERSION 1

enum store_sync_mode {
    /* Every batch's record in the write-ahead log is fsynced before
     * store_batch_log() or store_batch_commit() returns: one sequential
     * sync per group commit. Survives power loss. */
    STORE_SYNC_ALWAYS = 0,
    /* Log records are written, not synced; the caller calls store_sync()
     * (which fsyncs the log) every interval. A power cut may lose what
     * was committed since the last store_sync(). */
    STORE_SYNC_INTERVAL = 1,
    /* Like INTERVAL without store_sync(): a power cut may lose what was
     * committed since the last checkpoint, as far as the OS had not
     * written the log back. */
    STORE_SYNC_NONE = 2,
};

struct store_options {
    enum store_sync_mode sync_mode; /* default STORE_SYNC_ALWAYS */
    size_t map_size_initial;        /* bytes; default 64 MiB */
    size_t map_size_max;            /* bytes; default 64 GiB; >= initial */
    unsigned max_readers;           /* concurrent read txns; default 126 */
    unsigned file_mode;             /* for data.mdb/lock.mdb; default 0600 */
    /* The map doubles while small, then grows by at most this many bytes
     * (default 256 MiB). Each growth reserves disk blocks for the whole
     * map, so this bounds the disk held ahead of the data. */
    size_t map_grow_step_max;
    /* Bytes per half of the write-ahead log (default 16 MiB; rounded up to
     * a page). One batch's record must fit in a half: a larger batch is
     * committed with a checkpoint instead (two syncs). An existing log
     * smaller than this grows at open; it never shrinks. */
    size_t wal_half_size;
};

/* Fill o with the defaults above. */
void store_options_init(struct store_options *o);

/*
 * Open (creating if needed) the store in dir. dir is created (0700) when
 * missing. A directory that has no data.mdb but other entries (besides
 * lock.mdb, lost+found and dotfiles) is refused, so a mistyped --data-dir
 * never scatters files into a home directory. opts may be NULL (defaults).
 * Runs mdb_reader_check() to clear reader slots of dead processes.
 *
 * On failure, a one-line explanation is written to err (if err_len > 0),
 * e.g. "/var/ferry: data.mdb is not an LMDB file (foreign or corrupt)".
 *
 * Returns 0 and *out, or FERRY_ESTORAGE (foreign, corrupt, newer format),
 * FERRY_EINVAL (options), -EBUSY (in use by another process), -errno.
 * Thread: any, not concurrently with other calls on the same store.
 */
int store_open(const char *dir, const struct store_options *opts, struct store **out, char *err,
               size_t err_len);

/* Close: under INTERVAL/NONE first syncs (unless fail-stopped); call
 * store_sync() before if you need to know whether that sync worked. No
 * batch may be open and no reader may be inside a store call. NULL is a
 * no-op. */
void store_close(struct store *s);

/*
 * Messages.
 */
struct store_kv {
    const char *key; /* not NUL-terminated on read */
    size_t key_len;
    const char *value;
    size_t value_len;
};

/* A message to append. Every pointer is borrowed for the duration of the
 * store_batch_append() call only (the store copies the bytes). */
struct store_msg_in {
    int64_t publish_time; /* ns since the epoch, assigned by the broker */
    const void *payload;
    size_t payload_len;
    const void *key; /* optional (NULL, 0) */
    size_t key_len;
    const struct store_kv *headers; /* optional, n_headers entries */
    size_t n_headers;
    /* Idempotent publishing (store_batch_dedupe_find): a producer id other
     * than 0 records (producer_id, producer_seq) with the message, in the
     * same commit. */
    uint64_t producer_id;
    uint64_t producer_seq;
    /* A last-value topic's message (store_lastval_read): with a key, it
     * becomes that key's current value, or, with an empty payload (a
     * tombstone), removes the key; in the same commit. The key must then
     * be at most STORE_LASTVAL_KEY_MAX bytes. */
    bool is_last_value;
    /* Expiry (Publish.ttl_ms): ns since the epoch after which the message
     * is never delivered and retention may remove it; 0: never expires. */
    int64_t expire_time;
    /* A scheduled message being moved to its topic (store_batch_sched_pop):
     * the append deletes its schedule entry in the same commit. 0: none. */
    int64_t unsched_due;
    uint64_t unsched_id;
};

/* A message read back. Every pointer points into the LMDB map and is valid
 * only during the callback that receives it: copy what you keep. */
struct store_msg {
    uint32_t topic_id;
    uint64_t seq;
    int64_t publish_time;
    const void *payload;
    size_t payload_len;
    const void *key;
    size_t key_len;
    size_t n_headers;
    const void *headers_raw; /* iterate with store_msg_header_next() */
    size_t headers_raw_len;
    int64_t expire_time; /* ns since the epoch; 0: never expires */
};

/* Has m expired at now (ns since the epoch)? */
static inline bool store_msg_is_expired(const struct store_msg *m, int64_t now)
{
    return m->expire_time != 0 && m->expire_time <= now;
}

/* Iterate m's headers: *pos starts at 0. Returns 1 and fills kv, or 0 after
 * the last one. Safe on validated messages only (what callbacks get). */
int store_msg_header_next(const struct store_msg *m, size_t *pos, struct store_kv *kv);

/*
 * Writer path (group commit).
 *
 *     struct store_batch *b;
 *     store_batch_begin(s, &b);
 *     for each queued publish p:
 *         rc = store_batch_append(b, p->topic, p->topic_len, &p->msg, &ar);
 *         rc == 0 ? remember ar.seq for p : nack p with rc (batch goes on)
 *     rc = store_batch_commit(b);
 *     rc == 0 ? ack every appended p with its seq, then deliver them live
 *             : nack every appended p with rc (their seqs were not consumed)
 *
 * There is one batch object per store; its buffers are reused, so a steady
 * stream of batches allocates nothing per append.
 */
struct store_append_result {
    uint32_t topic_id; /* id of the topic (created on first append) */
    uint64_t seq;      /* sequence assigned; provisional until commit */
};

/*
 * Start a batch: take the writer mutex (blocking while another thread's
 * batch is open) and begin the LMDB write transaction.
 * Returns 0 and *out, FERRY_ESTORAGE (fail-stopped), -ENOMEM.
 * Thread: any; the batch then belongs to this thread.
 */
int store_batch_begin(struct store *s, struct store_batch **out);

/*
 * Append one message to topic (topic_len bytes, 1..STORE_TOPIC_MAX; the
 * store does not check wildcard syntax, the router does). Creates the topic
 * on first use. Assigns the topic's next sequence number.
 *
 * Sequences are final only when store_batch_commit() returns 0: if the
 * batch aborts or its commit fails, every sequence it assigned is handed out
 * again by the next batch (the topic's counters roll back).
 *
 * MDB_MAP_FULL is handled inside: the map grows (doubling, up to
 * map_size_max) and the batch is replayed into a fresh transaction from the
 * batch's own copy of its records, invisibly to the caller.
 *
 * Returns 0 and *res, or, leaving earlier appends of the batch intact:
 *   FERRY_EINVAL        topic empty or too long, a length over 4 GiB, a
 *                       last-value message's key over STORE_LASTVAL_KEY_MAX
 *   FERRY_ESTORAGEFULL  this message does not fit below map_size_max
 *   FERRY_ELIMIT        the batch is too large: commit, then append again
 *   -ENOMEM
 * or, with the batch lost (commit will return the same code):
 *   FERRY_ESTORAGE      fail-stop (see ERRORS)
 * res may be NULL.
 */
int store_batch_append(struct store_batch *b, const char *topic, size_t topic_len,
                       const struct store_msg_in *m, struct store_append_result *res);

/*
 * Scheduled messages (Publish.deliver_at). store_batch_schedule() stores m
 * for topic in the "sched" database under (due, a new schedule id), in the
 * batch's commit and log record like an append (it is durable when the
 * batch is), and creates the topic if it is new; no sequence is assigned,
 * nothing is appended to the topic, and readers do not see it. When it is
 * due the writer moves it: store_batch_sched_pop() reads the earliest entry
 * whose due time is at or before now, and appending what it returns (its
 * unsched_* set) to its topic deletes the entry in the same commit, so a
 * scheduled message reaches its topic exactly once, crash or not, with the
 * topic's next sequence at that moment. A producer id (m->producer_id) is
 * recorded as for an append, with topic sequence 0 (a duplicate of a
 * scheduled publish is answered as seen, sequence unknown).
 *   store_batch_schedule: 0 and *res (res->seq is the schedule id), or the
 *     codes of store_batch_append().
 *   store_batch_sched_pop: 1 and *out (pointing into *buf, a buffer the
 *     caller owns and frees, grown as needed; valid until the next call),
 *     0 when nothing is due (*next_due: the earliest due time, INT64_MAX if
 *     none), or a ferry code (FERRY_ESTORAGE: fail-stop; -ENOMEM).
 *   store_sched_next: the earliest due time (INT64_MAX: none) outside a
 *     batch, for a writer starting up; 0 or a ferry code. Any thread.
 * Thread: the batch's.
 */
#define STORE_SCHED_HEADERS_MAX 64 /* a scheduled message's headers, at most */
struct store_sched_item {
    const char *topic;
    size_t topic_len;
    struct store_msg msg;   /* seq: the schedule id */
    struct store_msg_in in; /* the same message, ready to append (unsched_* set) */
    struct store_kv headers[STORE_SCHED_HEADERS_MAX];
};
int store_batch_schedule(struct store_batch *b, const char *topic, size_t topic_len,
                         const struct store_msg_in *m, int64_t due,
                         struct store_append_result *res);
int store_batch_sched_pop(struct store_batch *b, int64_t now, void **buf, size_t *buf_cap,
                          struct store_sched_item *out, int64_t *next_due);
int store_sched_next(struct store *s, int64_t *next_due);

/*
 * Idempotent publishing. A message appended with a producer id records its
 * producer sequence with it ("dedupe" database, the same commit and log
 * record as the message). Before appending a producer's message, the
 * writer asks whether that sequence is stored on that topic already (what
 * the open batch appended included):
 *   0: not seen: append it.
 *   1: seen: *seq is the topic sequence it was stored under, or 0 when it
 *      is older than every sequence kept (see below) and so was seen
 *      before but its sequence is forgotten.
 *   or a ferry code (FERRY_ESTORAGE: fail-stop; FERRY_EINVAL).
 * Kept, per producer and topic: the sequences within STORE_DEDUPE_SPAN of
 * the producer's newest one there, and none older than what
 * store_dedupe_expire() last removed. Producer sequences must grow.
 * Thread: the batch's.
 */
#define STORE_DEDUPE_SPAN 65536u
int store_batch_dedupe_find(struct store_batch *b, const char *topic, size_t topic_len,
                            uint64_t producer, uint64_t pseq, uint64_t *seq);

/*
 * Forget producer sequences published before `before` (ns since the
 * epoch): the dedupe window. One bounded transaction per call, from *pos
 * (zeroed: from the start) on, which it advances; *is_done once a pass
 * reached the end (*pos is then zeroed again). On the writer path, with no
 * batch open on this thread; not in the log (a crash may bring some back
 * until the next pass). Returns 0 (*n_removed, may be NULL), or
 * FERRY_ESTORAGEFULL, -ENOMEM, FERRY_ESTORAGE.
 */
struct store_dedupe_pos {
    unsigned char key[20];
};
int store_dedupe_expire(struct store *s, int64_t before, struct store_dedupe_pos *pos,
                        uint64_t *n_removed, bool *is_done);

/*
 * Durable consumer records to write (value) or delete (value NULL) in the
 * batch, applied in order at its commit: they are stored exactly when its
 * messages are (a dead letter and the consumer state that lets it go). The
 * records are copied; a later call adds to the earlier ones (a later record
 * of a key wins). A batch with consumer records and no message still
 * commits. Returns 0, -ENOMEM, or FERRY_EINVAL (a key empty or above
 * STORE_CONSUMER_KEY_MAX).
 */
int store_batch_put_consumers(struct store_batch *b, const struct store_kv *recs, size_t n);

/*
 * Make everything appended and put so far durable without ending the batch:
 * its part of the write-ahead log is written (and synced under sync
 * always). After 0, those appends may be acknowledged: they are stored
 * whatever happens next (a commit that then fails fail-stops the store, and
 * the next open replays them). Readers do not see them before the commit.
 * Returns 0, 1 (not logged: nothing promised, the commit will make it
 * durable with a checkpoint), or FERRY_ESTORAGE (fail-stop). 1 comes for a
 * batch too large for the log, and, under STORE_SYNC_ALWAYS, for a bulk
 * one: nothing of it logged yet, 256 KiB or more of records averaging
 * 4 KiB or more, which is written to the disk once (LMDB's pages) instead
 * of twice (log, then LMDB). Until that checkpoint is durable, a reader
 * whose snapshot holds the batch waits for it.
 */
int store_batch_log(struct store_batch *b);

/* Messages appended so far in this batch (successful appends only). */
size_t store_batch_count(const struct store_batch *b);

/* For a writer that keeps a batch open over several store_batch_log()
 * calls (writer.c): should it commit now? 1 when it holds 1 MiB of
 * records; when a checkpoint is due (committed first, the batch need not
 * be logged again into the next generation); or when the store is near
 * the end of its room, where a batch of the largest size could fail to
 * commit (the map at its bound, or the disk too full to grow it):
 * committed at once, a full map refuses appends before they are acked,
 * never a commit of acked ones. Else 0. */
int store_batch_commit_is_due(struct store_batch *b);

/*
 * Commit the batch and release the writer. Under STORE_SYNC_ALWAYS returns
 * only after the data is on stable storage. The batch object is invalid
 * afterwards, whatever the result.
 *
 * Returns 0 (every append of the batch is stored), or, with NOTHING of the
 * batch stored and its sequences rolled back:
 *   FERRY_ESTORAGEFULL  map at max or disk full (store still usable)
 *   FERRY_ESTORAGE      commit or sync failed: fail-stop, exit the broker
 *   -ENOMEM
 * An empty batch (no message, no consumer record) commits as a no-op
 * returning 0.
 */
int store_batch_commit(struct store_batch *b);

/* Drop the batch: nothing stored, sequences rolled back, writer released.
 * The batch object is invalid afterwards. */
void store_batch_abort(struct store_batch *b);

/*
 * Flush commits to disk (mdb_env_sync, forced). For STORE_SYNC_INTERVAL the
 * caller runs it every interval (a timer on the writer thread is ideal). A
 * no-op returning 0 under STORE_SYNC_ALWAYS. Takes the writer mutex: must
 * not be called by a thread that holds an open batch.
 * Returns 0, or FERRY_ESTORAGE (the store is now fail-stopped).
 */
int store_sync(struct store *s);

/*
 * Readers.
 */
enum store_read_verdict {
    STORE_READ_CONTINUE = 0, /* consumed; give me the next one */
    STORE_READ_STOP = 1,     /* consumed; stop this call */
    STORE_READ_REFUSE = 2,   /* not consumed (no room); stop, next_seq stays */
};

/* Called once per message, in sequence order, inside a read transaction. */
typedef enum store_read_verdict (*store_read_cb)(void *ctx, const struct store_msg *m);

struct store_read_result {
    uint64_t next_seq;    /* where the next call should start */
    uint64_t last_seq;    /* topic's last committed seq in this snapshot (0: none) */
    size_t n_msgs;        /* messages consumed by the callback */
    size_t n_bytes;       /* their payload + key + headers bytes */
    size_t n_corrupt;     /* messages skipped because their CRC or layout was bad */
    uint64_t corrupt_seq; /* the last such seq, for the log (0: none) */
    bool is_end;          /* no stored message at or after next_seq in this snapshot */
};

/*
 * Read topic_id's messages from from_seq on (from the first stored one, if
 * from_seq is below it: a purge or, later, retention removed the rest), at
 * most max_msgs messages and about max_bytes bytes (the first message is
 * delivered even if larger, so a big message never stalls a reader), in one
 * short read-only transaction. Call again from res->next_seq for more.
 *
 * A message whose CRC or layout does not check out is never passed to cb:
 * it is skipped, counted (res->n_corrupt, store_stats().n_crc_errors), its
 * seq reported in res->corrupt_seq so the caller can log it, and reading
 * goes on past it. A skipped message counts against max_msgs.
 *
 * Catch-up to live seam (suggested integration): register the subscriber
 * for live deliveries first, buffering them; read chunks until
 * res->next_seq > res->last_seq; then drop buffered live messages with
 * seq < next_seq and go live. Live deliveries only happen after commit, so
 * the snapshot and the live stream overlap instead of leaving a gap.
 *
 * Returns 0 and *res (also for an unknown topic id: empty, is_end), or
 * FERRY_EINVAL (max_msgs 0, cb NULL), -EAGAIN (reader slots full), FERRY_ESTORAGE.
 * Thread: any.
 */
int store_read(struct store *s, uint32_t topic_id, uint64_t from_seq, size_t max_msgs,
               size_t max_bytes, store_read_cb cb, void *ctx, struct store_read_result *res);

/*
 * Last-value topics. A message appended with is_last_value and a key is
 * its key's current value until a newer one of that key (or a tombstone:
 * the key with an empty payload) is appended; the index of current values
 * is written in the same commit as the messages (store_lastval.c).
 *
 * store_lastval_read(): like store_read(), but only the messages that are
 * the current value of their key, with from_seq <= seq <= upto_seq
 * (UINT64_MAX: no bound), in sequence order. res->next_seq is where the
 * next call goes on: once res->is_end, every current value up to upto_seq
 * was passed (next_seq is then upto_seq + 1 when upto_seq is bounded).
 * Each call is one short transaction: a key whose value changes between
 * calls is passed as its value was at the call that reached it, or not at
 * all if the change moved it behind the position (its new value has a
 * higher seq: a caller that goes on with the messages after upto_seq sees
 * it there). res->last_seq is upto_seq. Returns 0, FERRY_EINVAL (max_msgs
 * 0, cb NULL), -EAGAIN, FERRY_ESTORAGE. Thread: any.
 */
#define STORE_LASTVAL_KEY_MAX 506
int store_lastval_read(struct store *s, uint32_t topic_id, uint64_t from_seq, uint64_t upto_seq,
                       size_t max_msgs, size_t max_bytes, store_read_cb cb, void *ctx,
                       struct store_read_result *res);

/*
 * First sequence whose publish time is >= time_ns, or last_seq + 1 when no
 * stored message is that recent (that is: start with new messages).
 * Times are taken as the running maximum per topic, so if the clock stepped
 * back, messages right after the step count as published at the previous
 * maximum. Cost: one index lookup plus a scan of at most one millisecond's
 * worth of the topic's messages. Returns 0 and *seq, FERRY_ENOTOPIC, -EAGAIN, FERRY_ESTORAGE.
 * Thread: any.
 */
int store_seek_time(struct store *s, uint32_t topic_id, int64_t time_ns, uint64_t *seq);

struct store_topic_info {
    uint32_t id;
    uint64_t first_seq; /* first stored; last_seq + 1 when the topic is empty */
    uint64_t last_seq;  /* last assigned and committed; 0 before the first */
    uint64_t n_msgs;    /* stored messages (last - first + 1) */
    uint64_t n_bytes;   /* stored payload + key + headers bytes */
    int64_t last_time;  /* newest (clamped) publish time, ns */
};

/* "Last N" start position: max(first_seq, last_seq - n + 1) (n = 0: new only). */
uint64_t store_topic_seq_last_n(const struct store_topic_info *info, uint64_t n);

/* Committed state of a topic. Returns 0 and *info, FERRY_ENOTOPIC,
 * FERRY_EINVAL, -EAGAIN, FERRY_ESTORAGE. Thread: any. */
int store_topic_info(struct store *s, const char *topic, size_t topic_len,
                     struct store_topic_info *info);

/* Same by id; name_buf (STORE_TOPIC_MAX + 1 bytes, may be NULL) receives
 * the NUL-terminated name. */
int store_topic_info_by_id(struct store *s, uint32_t id, struct store_topic_info *info,
                           char *name_buf);

/* Called per topic, in name order; return 0 to go on, non-zero to stop.
 * name is not NUL-terminated and valid only during the call. */
typedef int (*store_topic_cb)(void *ctx, const char *name, size_t name_len,
                              const struct store_topic_info *info);

/* List topics whose name starts with prefix (prefix_len 0: all), in short
 * transactions of at most 256 topics each. Returns the number of topics
 * passed to cb, or -EAGAIN, FERRY_ESTORAGE. Thread: any. */
int store_topic_list(struct store *s, const char *prefix, size_t prefix_len, store_topic_cb cb,
                     void *ctx);

/*
 * Remove every stored message of the topic (and its time and last-value
 * indexes), keeping
 * its sequence counter: the next append gets last_seq + 1, and afterwards
 * first_seq = last_seq + 1. Runs on the writer path in transactions of a
 * bounded number of deletions, each committed per the sync policy, so it
 * frees space even in a full map. Takes the writer mutex: must not be called
 * by a thread that holds an open batch. Readers see the removal chunk by
 * chunk from the oldest message up.
 * Returns 0 and *n_removed (may be NULL), FERRY_ENOTOPIC, FERRY_EINVAL,
 * FERRY_ESTORAGEFULL, FERRY_ESTORAGE (fail-stop).
 */
int store_topic_purge(struct store *s, const char *topic, size_t topic_len, uint64_t *n_removed);

/* Commit latency histogram: bucket i counts commits that took t
 * microseconds with floor(4 * log2(t)) == i (t < 1 counts in 0; the last
 * bucket takes the rest): quarter-octave buckets, each about 19% wide.
 * Bucket i's upper bound is 2^((i + 1) / 4) us. */
#define STORE_LAT_BUCKETS 128
/* Messages per group commit: bucket 0 counts commits of no message (only
 * consumer records), bucket i > 0 commits of n with floor(log2(n)) == i - 1:
 * bucket i's upper bound is 2^i - 1 messages; the last takes the rest. */
#define STORE_MSGS_BUCKETS 24

struct store_stats {
    uint64_t n_commits; /* group commits: log records written (and batches
                         * too large for the log, committed with a checkpoint) */
    /* Time to write each group commit's log record and, under sync always,
     * sync it: what a PubAck waits for in the store. */
    uint64_t commit_hist[STORE_LAT_BUCKETS];
    /* Time of each sync of the log (fdatasync), in the same buckets; under
     * sync always one per group commit, under interval one per interval. */
    uint64_t sync_hist[STORE_LAT_BUCKETS];
    uint64_t commit_msgs_hist[STORE_MSGS_BUCKETS]; /* messages per group commit */
    uint64_t commit_us, sync_us; /* the microseconds counted in commit_hist, sync_hist */
    uint64_t n_appends;          /* messages committed */
    uint64_t n_crc_errors;       /* corrupt messages met by readers */
    uint64_t n_map_grows;        /* map resizes */
    uint64_t n_batch_replays;    /* batches replayed after MDB_MAP_FULL */
    uint64_t n_full_errors;      /* appends/commits refused as storage full */
    uint64_t n_open_reads;       /* LMDB records read by store_open() */
    uint64_t n_replayed;         /* log records replayed by store_open() (after a crash) */
    uint64_t n_checkpoints;      /* checkpoints made durable since open */
    uint64_t n_scheduled;        /* delayed messages not yet in their topic */
    uint64_t n_topics;           /* topics known (committed) */
    int n_stale_readers;         /* reader slots cleared at open */
    size_t map_size;             /* current map size */
    size_t map_size_max;         /* configured maximum */
    size_t map_used;             /* bytes of the map in use (last page) */
    enum store_sync_mode sync_mode;
    bool is_failed;          /* fail-stopped */
    const char *fail_reason; /* static text of the failure, NULL if none */
};

/* Clear the reader slots of processes that died (mdb_reader_check): one
 * killed while reading (a backup's copying process) keeps its snapshot's
 * pages from reuse until then. Returns how many were cleared. Any thread. */
int store_readers_check(struct store *s);

/* Snapshot of counters; any thread. */
void store_stats(struct store *s, struct store_stats *st);

/* 1 when the store is fail-stopped (see FERRY_ESTORAGE), else 0. Any thread. */
int store_is_failed(const struct store *s);

/*
 * Offline verification (ferryd --verify DIR).
 *
 * Opens dir read-only (it can run next to a live broker: it checks one
 * snapshot), and walks everything: the meta record; every topic record (CRC,
 * name <-> id agreement); every message (key shape and strict ordering, CRC,
 * value layout, topic known, per-topic sequences gapless from first_seq to
 * last_seq, message and byte counts equal to the topic record); every time
 * index entry (topic known, seq in range, non-decreasing seq in time order);
 * every last-value index entry (its message stored, of its key, not a
 * tombstone; its by-sequence twin present, and the other way round);
 * every consumer record's key (see store_verify_ex() for the records).
 * Each finding is one line on report (NULL: silent), followed by a summary.
 *
 * Returns 0 when clean, FERRY_ESTORAGE when anything is wrong (including a
 * foreign or unreadable environment), -errno when dir cannot be opened at all.
 * res (may be NULL) is filled in every case where the walk ran.
 */
/*
 * Durable consumer records ("consumers" database). Keys are at most
 * STORE_CONSUMER_KEY_MAX bytes; values are opaque to the store.
 *
 * store_consumers_put(): write (value != NULL) or delete (value == NULL) n
 * records in one write transaction, committed per the sync policy. Writer
 * path: takes the writer mutex, so it must not be called by a thread that
 * holds an open batch. The map grows on MDB_MAP_FULL as for batches.
 * Returns 0, FERRY_EINVAL, FERRY_ESTORAGEFULL, -ENOMEM, FERRY_ESTORAGE
 * (fail-stop).
 *
 * store_consumer_get(): one record, copied into a malloc'd *value (the
 * caller frees it). Returns 0, FERRY_ENOTOPIC (no such record),
 * FERRY_EINVAL, -ENOMEM, -EAGAIN, FERRY_ESTORAGE. Thread: any.
 */
#define STORE_CONSUMER_KEY_MAX 511

/*
 * Retention: remove the topic's oldest messages, those with seq <= upto, in
 * ONE write transaction of at most about a thousand deletions (call again
 * while *is_done is false). The newest message is never removed (upto is
 * capped at last_seq - 1), nor one a last-value key's current value: upto
 * is capped below the lowest seq of the topic's last-value index (the
 * oldest current value holds back the trim). Time index entries pointing
 * at removed messages go too. Writer path (takes the writer mutex; not with an open batch).
 * Returns 0, *n_removed and *is_done (either may be NULL), FERRY_ENOTOPIC,
 * FERRY_EINVAL, FERRY_ESTORAGEFULL, -ENOMEM, FERRY_ESTORAGE (fail-stop).
 */
int store_topic_trim(struct store *s, const char *topic, size_t topic_len, uint64_t upto,
                     uint64_t *n_removed, bool *is_done);
int store_consumers_put(struct store *s, const struct store_kv *recs, size_t n);
int store_consumer_get(struct store *s, const char *key, size_t key_len, void **value,
                       size_t *value_len);

/* Called per consumer record, in key order; return 0 to go on, non-zero to
 * stop. key and value point into the map and are valid only during the
 * call: copy what you keep, and call no store function from it. */
typedef int (*store_consumer_cb)(void *ctx, const char *key, size_t key_len, const void *value,
                                 size_t value_len);

/* Walk the consumer records whose key starts with prefix (prefix_len 0:
 * all; a topic name plus its NUL: that topic's durables), in short read
 * transactions of at most 256 records each: a record written or deleted
 * meanwhile may or may not be seen. Returns the number of records passed
 * to cb, or FERRY_EINVAL, -EAGAIN, FERRY_ESTORAGE. Thread: any. */
int store_consumers_foreach(struct store *s, const char *prefix, size_t prefix_len,
                            store_consumer_cb cb, void *ctx);

/*
 * Offline access (store_offline.c): what ferryd --verify and --inspect, and
 * the copying process of a hot backup, use.
 *
 * store_recover(): if no broker holds dir, bring its store to the state a
 * start would (the last checkpoint put back, the write-ahead log replayed
 * onto it, a new checkpoint) and close it; *n_replayed (may be NULL)
 * receives the log records replayed: acknowledged batches that were not in
 * data.mdb yet (0 after a clean shutdown). dir must hold a store already
 * (nothing is created). Returns 0, -EBUSY (a live broker holds dir; its
 * committed snapshot is whole and there is nothing to do), -ENOENT (no
 * store there), or what store_open() returns; err says why.
 *
 * store_open_readonly(): open dir's store in a read-only LMDB environment
 * of this process: no lock on the directory, no log, no writer, nothing
 * recovered. It may run next to the live broker that owns dir (each reader
 * call then sees the broker's last committed snapshot when the call
 * begins; messages acknowledged in the last few hundred microseconds may
 * not be committed yet, see writer.h) or on a store no broker runs, after
 * store_recover() (without it, a store left by a crash is read as its last
 * LMDB commits left it, without what only the log holds, and after a power
 * cut that snapshot may be torn). The readers work on it (store_read,
 * store_seek_time, store_topic_*, store_consumer_get,
 * store_consumers_foreach, store_stats); every write path returns
 * FERRY_ESTORAGE (the store counts as fail-stopped, store_is_failed() is 1).
 * Close it with store_close(). Returns 0 and *out, -ENOENT (no data.mdb),
 * FERRY_ESTORAGE (not a ferry store, corrupt, another format), -errno; err
 * says why.
 *
 * store_copy(): write a compacted copy of a read-only store to fd: one
 * snapshot, taken as the call begins, as a complete data.mdb (LMDB's
 * mdb_env_copyfd2() with MDB_CP_COMPACT: free pages left out, written
 * sequentially, so fd may be a pipe). A directory holding only that file
 * is a store: store_open() makes the log anew, and nothing is lost (the
 * copy holds whole committed transactions only). The snapshot is pinned
 * (the broker cannot reuse its pages, data.mdb may grow meanwhile) until
 * the copy ends, which takes as long as fd takes the bytes. Read-only
 * stores only: inside the broker's process a reader that long would hold
 * off a map resize, and with it the writer, until the copy ends. Returns
 * 0, FERRY_EINVAL (not read-only, fd < 0), -EPIPE (fd's reader went away),
 * -errno (fd's other write errors), FERRY_ESTORAGE; err says why.
 *
 * Thread: any; not concurrently with other calls on the same store (each
 * opens its own environment).
 */
int store_recover(const char *dir, uint64_t *n_replayed, char *err, size_t err_len);
int store_open_readonly(const char *dir, struct store **out, char *err, size_t err_len);
int store_copy(struct store *s, int fd, char *err, size_t err_len);

struct store_verify_result {
    uint64_t n_topics;
    uint64_t n_msgs;
    uint64_t n_bytes;           /* stored value bytes (headers included) */
    uint64_t n_index;           /* time index entries */
    uint64_t n_crc_errors;      /* messages or topic records failing their CRC */
    uint64_t n_layout_errors;   /* values whose lengths do not add up */
    uint64_t n_order_errors;    /* keys out of order or malformed */
    uint64_t n_gaps;            /* missing sequence ranges inside a topic */
    uint64_t n_orphans;         /* messages or index entries of unknown topics */
    uint64_t n_meta_mismatch;   /* topic counters that disagree with the messages */
    uint64_t n_index_errors;    /* bad time or last-value index entries */
    uint64_t n_problems;        /* sum of the error counts above */
    uint64_t n_consumers;       /* durable consumer records */
    uint64_t n_consumer_errors; /* bad consumer keys, or records the check refused */
};

int store_verify(const char *dir, FILE *report, struct store_verify_result *res);

/*
 * The record check of store_verify_ex(): the store checks that a consumer
 * key is "topic NUL name" (topic at most STORE_TOPIC_MAX bytes) and looks
 * the topic up; the record's format belongs to its owner (consumer.c), so
 * this callback judges the name and the value. topic is the topic's
 * committed state in the verified snapshot, or NULL when the store has no
 * such topic. Return 0 when the record is sound, else non-zero with a
 * one-line reason in why (why_len bytes, NUL-terminated). Called inside the
 * read transaction: no store calls.
 */
typedef int (*store_consumer_check_cb)(void *ctx, const char *key, size_t key_len,
                                       const void *value, size_t value_len,
                                       const struct store_topic_info *topic, char *why,
                                       size_t why_len);

/* store_verify() plus the consumers table checked record by record with
 * check (NULL: keys only). Problems count in n_consumer_errors. */
int store_verify_ex(const char *dir, FILE *report, store_consumer_check_cb check, void *ctx,
                    struct store_verify_result *res);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_STORE_H */

/*
 * store_wal.h - the store's write-ahead log and checkpoint record.
 *
 * Private to the store (store_write.c, store_ckpt.c and store.c use it);
 * nothing here knows LMDB.
 *
 * WHY
 *   An LMDB commit that survives a power cut costs two syncs in two places
 *   (data pages, then the meta page). With a log, a group commit costs one
 *   sequential sync of one file: the batch is written here and synced, then
 *   committed to LMDB without any sync. LMDB's own pages reach the disk at
 *   checkpoints, in the background, many commits at a time. A batch of
 *   large messages skips the log (store_write.c, is_bulk): written twice,
 *   it would take twice the disk's bandwidth; its commit is checkpointed
 *   at once instead.
 *
 * FILES (in the data directory)
 *   wal          two halves of wal_half bytes each, written with zeros when
 *                the file is made (so a sync never has to change the file's
 *                size or extent map: one device flush, no journal commit).
 *                Generation g writes half g % 2 from offset 0, one record
 *                after the other; a new generation starts at each checkpoint.
 *   checkpoint   two slots; the slot of generation g (g % 2) holds LMDB's
 *                two meta pages as they were on disk when the snapshot that
 *                precedes generation g's records was made durable.
 *
 * RECORD
 *   32-byte header, little-endian: magic "FWAL" | crc32c | generation u64 |
 *   index u32 (0, 1, 2, ... within the generation) | payload length u32 |
 *   kind u32 | reserved u32; then the payload, padded to 8 bytes. The CRC
 *   covers header bytes 8..31 and the payload. A record counts only if its
 *   magic, CRC, generation and index are what the reader expects next, so
 *   neither a torn write nor a stale record of an earlier lap is ever read
 *   as a record. WAL_END closes a generation: replay goes on with the next
 *   one only past it.
 *
 * RECOVERY (store_ckpt.c)
 *   Write the checkpoint's meta pages back into data.mdb (LMDB then sees the
 *   checkpointed snapshot, whose pages a pinned read transaction kept from
 *   being reused), open LMDB, replay every record of the checkpoint's
 *   generation and, past its WAL_END, of the next one; checkpoint again.
 *
 * THREADS
 *   Not thread-safe: the store's writer path (wlock) appends and starts
 *   generations; wal_ckpt_write() runs on the store's checkpoint thread,
 *   which touches nothing else of struct wal (its fd is read-only shared).
 */
#ifndef FERRY_STORE_WAL_H
#define FERRY_STORE_WAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define WAL_BATCH 1u /* a store batch (store_write.c encodes it) */
#define WAL_END 2u   /* the generation ends here */

struct wal;

/* Open dir/wal and dir/checkpoint, making them (zero-filled, synced) when
 * missing. An existing wal keeps its size until wal_resize(). Returns 0, or
 * -errno with err filled. */
int wal_open(const char *dir, size_t half, unsigned mode, struct wal **out, char *err,
             size_t err_len);
void wal_close(struct wal *w);

/* Make the wal file 2 * half bytes (zero-filled). Only while no generation
 * holds records anyone needs (right after a checkpoint). */
int wal_resize(struct wal *w, size_t half);

/* The largest payload one record may carry. */
size_t wal_max_payload(const struct wal *w);

/* Bytes of the current half in use. */
size_t wal_used(const struct wal *w);

/*
 * The newest valid checkpoint slot: 0 with *gen and a malloc'd copy of its
 * meta pages (*metas, *len), -ENOENT when there is none (a new store, or one
 * made before the log existed), or -errno.
 */
int wal_ckpt_read(struct wal *w, uint64_t *gen, unsigned char **metas, size_t *len);

/* Write generation gen's checkpoint slot and sync it. 0 or -errno. */
int wal_ckpt_write(struct wal *w, uint64_t gen, const void *metas, size_t len);

/* Close the current generation (a WAL_END record, unless none is open) and
 * start gen at offset 0 of half gen % 2. 0 or -errno. */
int wal_start(struct wal *w, uint64_t gen);

/* Does a payload of len bytes fit in the current half (with room left for
 * the WAL_END)? */
int wal_fits(const struct wal *w, size_t len);

/* Append one record of the current generation, gathered from iov (total
 * payload at most wal_max_payload(), and wal_fits()). Written, not synced.
 * 0 or -errno. */
int wal_append(struct wal *w, uint32_t kind, const struct iovec *iov, int iovcnt);

/* Overwrite the last record's header with zeros (not synced): after its
 * sync failed, so that a restart does not replay what was never acked, as
 * far as the page cache still reaches the disk. */
void wal_void_last(struct wal *w);

/* fdatasync the log. 0 or -errno. */
int wal_sync(struct wal *w);

/*
 * Replay: call cb for every WAL_BATCH record of generation gen, in order,
 * and, if gen ended with WAL_END, of the generations after it. A non-zero
 * return of cb stops the replay and is returned. *n_records counts the
 * records given to cb; *last_gen is the last generation read. The payload
 * passed to cb is valid during the call only.
 */
typedef int (*wal_replay_cb)(void *ctx, const unsigned char *p, size_t len);
int wal_replay(struct wal *w, uint64_t gen, wal_replay_cb cb, void *ctx, uint64_t *n_records,
               uint64_t *last_gen);

#endif

/*
 * backup.h - hot backup (prefix backup_): a compacted copy of the store,
 * taken while ferryd goes on serving, streamed to the admin client that
 * asked for it (ferry.proto, BackupRequest).
 *
 * HOW. One backup runs at a time; struct backup is the server's one slot.
 *   1. IO thread (handle_backup.c): backup_claim() takes the slot for the
 *      connection and its request, then W_BACKUP goes to the store writer.
 *   2. Store writer: on W_BACKUP it first commits its open batch, as for a
 *      purge (writer.c). The writer sends a PubAck once the message's batch
 *      is in the log, possibly before the batch's LMDB commit; W_BACKUP
 *      comes after every publication the IO threads handed over before the
 *      request was read, so after this commit everything acknowledged
 *      before the request (messages, and the durable positions saved with
 *      them) is in LMDB. Then backup_begin() starts the backup thread.
 *   3. Backup thread: starts `ferryd --backup-child DIR` (this binary,
 *      /proc/self/exe), which opens the store read-only and writes a
 *      compacted copy to a pipe (store_copy()). Its snapshot begins after
 *      step 2, so it holds all of that. A process of its own rather than a
 *      thread: a read transaction inside ferryd must hold the store's
 *      map_lock for its whole life, and one that lasts the whole copy
 *      would make a map resize - and with it the writer, and every
 *      publish - wait until the copy ends; another process's reader only
 *      keeps pages from being reused. The thread (and so the child) runs at
 *      a lower CPU priority (nice +BACKUP_NICE): on a busy machine the copy
 *      yields to serving. It reads the pipe in chunks, keeps a CRC-32C of
 *      everything, and posts each chunk as an encoded
 *      AdminReply(backup_chunk) to the connection's IO thread (R_BACKUP);
 *      at the end AdminReply(backup_done) with the size and CRC, or an
 *      AdminReply with the error.
 *   4. IO thread: queues each chunk on the connection and gives the thread
 *      its credit back (backup_credit()) once the connection's output is
 *      down to a quarter of max_outbound_bytes. At most BACKUP_IN_FLIGHT
 *      chunks are on their way, so a backup holds a few MiB of ferryd's
 *      memory whatever the client's pace, and never makes the connection a
 *      slow consumer. A connection found closed cancels the backup
 *      (backup_cancel()): the thread closes the pipe, the child ends at its
 *      next write, and the slot is free again.
 *
 * THREADS. Every function takes b->mu; none blocks on IO. backup_begin()
 * may join the thread of the previous backup (which has finished). The
 * thread posts to IO threads' mailboxes and waits for credit; nothing
 * waits for it but backup_stop().
 */
#ifndef FERRY_BACKUP_H
#define FERRY_BACKUP_H

#include <stdint.h>

struct server;
struct backup;

#define BACKUP_CHUNK_DEFAULT (256u << 10) /* bytes of file per chunk, unless asked */
#define BACKUP_IN_FLIGHT 2u               /* chunks posted and not yet credited */
#define BACKUP_NICE 10                    /* the copy's niceness above ferryd's */

/* The slot of server srv (nothing runs yet). NULL: out of memory. Main. */
struct backup *backup_create(struct server *srv);

/* Free it; backup_stop() first. Main. */
void backup_destroy(struct backup *b);

/*
 * IO thread: take the slot for AdminRequest admin_id of connection
 * conn_ref, whose client reads frames of at most max_frame bytes; chunk is
 * the BackupRequest's chunk_size (0: default). who names the client in the
 * log ("client 12 127.0.0.1:5555"). Returns 0 and *gen (this backup's
 * number: R_BACKUP frames carry it), -EBUSY (one is running), -ESHUTDOWN
 * (ferryd is stopping).
 */
int backup_claim(struct backup *b, uint64_t conn_ref, uint64_t admin_id, uint32_t chunk,
                 uint32_t max_frame, const char *who, uint32_t *gen);

/* IO thread: W_BACKUP could not be posted; the slot is free again. */
void backup_unclaim(struct backup *b, uint32_t gen);

/* Store writer, W_BACKUP, with everything before it committed: start the
 * copy. If it cannot start, the client gets an error reply. */
void backup_begin(struct backup *b);

/* IO thread: n chunks of backup gen have left ferryd's queues (n > 0). A
 * stale gen is ignored. */
void backup_credit(struct backup *b, uint32_t gen, uint32_t n);

/* IO thread: the connection of backup gen is gone: stop it. */
void backup_cancel(struct backup *b, uint32_t gen);

/* Main, at shutdown, while the IO threads still run: refuse new backups,
 * end a running one (its client gets ERROR_SHUTTING_DOWN) and join it. */
void backup_stop(struct backup *b);

/* `ferryd --backup-child DIR`: write a compacted copy of DIR's store to
 * standard output (a pipe from the backup thread); errors go to standard
 * error in one line. Returns the exit status: 0, or 1. */
int backup_child_main(const char *dir);

#endif

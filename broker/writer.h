/*
 * writer.h - the store writer thread (prefix writer_): the single path by
 * which publications reach LMDB.
 *
 * IO threads post batches of publications for stored topics to the writer's
 * mailbox (W_PUB_BATCH, with mbox_try_post: a full writer pauses publishers).
 * The writer drains what is queued, appends it all in one store batch and
 * commits (group commit: batches grow with load; the writer never waits for
 * a batch to fill). Only after the commit returned does it
 *   - post each publisher's PubAck with the sequence the store assigned, and
 *   - patch that sequence into the shared Deliver body and hand the batch to
 *     the workers owning its topics (W_STORED), which route it live, in
 *     sequence order.
 * A refused append (storage full, topic too long for the store) refuses that
 * publication only; a refused commit refuses the batch. FERRY_ESTORAGE is
 * fail-stop: nothing of the batch is acknowledged, the reason is logged and
 * the process exits with status 1 (a retry after a failed fsync could lose
 * acknowledged data silently).
 *
 * Under `sync interval` the writer also calls store_sync() every interval.
 * Topic purges (admin) run here too, since they write; a hot backup
 * (backup.h) starts here, after the commit of everything queued before it.
 */
#ifndef FERRY_WRITER_H
#define FERRY_WRITER_H

#include "mailbox.h"
#include "server.h"

struct writer;

/* Create the writer of server s (not started); s->store must be open.
 * Returns NULL on failure. */
struct writer *writer_create(struct server *s);
int writer_start(struct writer *w);
/* Post W_STOP and join: everything queued before is committed, acked and
 * handed to the workers first. Call before stopping the workers. */
void writer_stop(struct writer *w);
void writer_destroy(struct writer *w);

/* The writer's inbound queue is server.writer_in (IO threads post with
 * mbox_try_post), set by writer_create. */

#endif

/*
 * retention.h - background trimming of stored topics (prefix retention_),
 * per the config's `retention PATTERN ...` rules (config.h).
 *
 * It runs on the store writer thread, between group commits: every
 * retention_interval_ms it lists the stored topics, and for each one that a
 * rule covers computes the highest sequence to remove (by message count,
 * by bytes - reading sizes from the oldest message on - and by age, through
 * the time index). Then each call removes one bounded chunk
 * (store_topic_trim(): one transaction of about a thousand deletions), so
 * publications queued meanwhile are committed between chunks: trimming
 * never holds up publishers for longer than one such transaction.
 *
 * Expired messages (Publish.ttl_ms) at the head of a topic are removed the
 * same way, rules or not: the writer notes each topic it appends an
 * expiring message to (retention_note_expiring), and a scan reads such a
 * topic's oldest messages up to the first one not expired. A topic whose
 * oldest message does not expire is forgotten until the next expiring
 * append (messages behind it wait for the rules). The newest message of a
 * topic is never removed (a topic keeps its last sequence that way).
 */
#ifndef FERRY_RETENTION_H
#define FERRY_RETENTION_H

#include "server.h"

#include <stdint.h>

struct retention;

/* NULL when s has no store, or out of memory. */
struct retention *retention_create(struct server *s);

/* Writer thread: topic_id got a message that expires (0, or -ENOMEM: then
 * it is not trimmed for expiry until a later note). */
int retention_note_expiring(struct retention *r, uint32_t topic_id);
void retention_destroy(struct retention *r);

/* Writer thread, with no batch open: do one step (a scan, or one trim
 * chunk). Returns how many ms may pass before the next step (0: more work
 * is waiting). Store failures are returned as negative codes through *err
 * (FERRY_ESTORAGE means fail-stop), else *err is 0. */
int retention_step(struct retention *r, uint64_t now_ms, int *err);

#endif

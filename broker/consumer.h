/*
 * consumer.h - durable consumers (prefix cons_): their position, the set of
 * delivered-but-unacked messages, redelivery deadlines, dead letters, and
 * their persistence in the store's "consumers" database.
 *
 * WHAT A DURABLE IS
 *   A durable consumer is named by (topic, durable name): one stored topic
 *   (no wildcards) and a name that is one token. Its state:
 *     next_seq  the next sequence never handed out yet;
 *     pending   delivered-but-unacked sequences below next_seq, each with its
 *               delivery count and a redelivery deadline (monotonic ms).
 *   Every sequence below next_seq that is not pending is done (acked,
 *   terminated, dead-lettered, or removed from the store before delivery).
 *   The ack floor (all done up to it) is min(pending) - 1, or next_seq - 1.
 *
 * WILDCARD DURABLES (what NATS calls a filtered consumer)
 *   A durable on a pattern ("orders.*.created") is a root, named by
 *   (pattern, name), plus one durable of the kind above per stored topic
 *   the pattern matches (a position), named by (pattern, name, topic), each
 *   with its own next_seq and pending set, created when the subscription
 *   first meets the topic (in the store, or live). The root holds no
 *   messages: it is what subscriptions bind and what `ferry consumers`
 *   and deletion name, and it keeps start_ns, where a topic it has no
 *   position on yet starts (its first message published at or after
 *   start_ns: the subscribe time for a new one, 0 for all). Options
 *   (max_in_flight, ack_wait, max_deliver) apply to each position. The
 *   subscription binds the root (cons_bind with the pattern, which may be
 *   refused -EBUSY like any durable) and then each position
 *   (cons_bind_member) with the same holder. Deleting the root deletes
 *   its positions.
 *
 * HOLDERS
 *   Subscriptions (connection ref + sub id) bind a durable. A durable held by
 *   one subscription without a queue group cannot be bound again until it is
 *   released (-EBUSY: ERROR_DURABLE_IN_USE). Subscriptions that all name the
 *   same queue group share it: each message goes to the member that claims it
 *   first (cons_claim()), so every message is handed to one member. When the
 *   first holder binds a durable nobody holds, every pending message becomes
 *   due at once (the previous holder is gone; redeliver without waiting).
 *
 * PERSISTENCE
 *   Every change (claim, ack, redelivery count, dead letter) marks the
 *   durable dirty and calls the registry's waker (the store writer's
 *   wake-up; mbox_wake, which is never lost). The writer calls
 *   cons_reg_flush() each round, after taking its mailbox and before it
 *   commits the publications it took, so an Ack that a connection sent
 *   before a Publish, or before a Ping (W_BARRIER, whose Pong the writer
 *   holds until a flush succeeded), is in the store's log (durable) before
 *   that PubAck or Pong leaves: the Ack confirmation rule of
 *   proto/README.md. After a crash the state stored last is loaded:
 *   messages acked after it are delivered again (at least once) with their
 *   delivery counts, never lost.
 *
 * OWNERS
 *   On a server with an auth file a durable (and a wildcard durable's root)
 *   belongs to the user who created it: cons_bind() records the binder's
 *   name (struct cons_user) in a new durable, stores it in the durable's
 *   record, and refuses (FERRY_EPERM) a binder who is not the owner unless
 *   the caller says the binder may take any durable it covers (admin, or
 *   an `allow USER consume PATTERN` rule: auth.h). A wildcard durable's
 *   positions belong to its root's owner. Acks, NAKs and TERMs name the
 *   acker's own subscription, so refusing the binding refuses them too.
 *   A record stored before owners existed (version 1), or a durable made
 *   on a server without an auth file, is owned by nobody: only admins and
 *   `consume` rules may bind it once an auth file is in use. Without an
 *   auth file (cons_user NULL) nothing is checked, as before.
 *
 * WITHOUT A DURABLE
 *   A subscription with explicit acks and no durable name binds a consumer
 *   that is never stored (is_anon): its own, or its queue group's (found
 *   by topic and group), freed with its last holder.
 *
 * THREADS
 *   Any thread. The registry's lock guards its table and each durable's
 *   holders; each durable's own lock guards its position and pending set.
 *   No store call is made while the registry's lock or a durable's lock is
 *   held (the store writer takes them inside its open write transaction:
 *   store locks come first, never the other way round).
 *   A durable lives while it is held; one nobody holds, whose state is
 *   stored, is freed by the store writer (cons_reg_release_idle(), the only
 *   place that frees one) and loaded again by the next cons_bind(). So a
 *   pointer to a durable is valid while its holder's binding lasts, and a
 *   lookup by id (dead letters) happens under the registry's lock.
 */
#ifndef FERRY_CONSUMER_H
#define FERRY_CONSUMER_H

#include "server.h"
#include "store.h"

#include <stddef.h>
#include <stdint.h>

struct cons_reg;
struct consumer;

#define CONS_DEFAULT_MAX_IN_FLIGHT 1024u
#define CONS_MAX_IN_FLIGHT_CAP 65536u
#define CONS_DEFAULT_ACK_WAIT_MS 30000u
#define CONS_DEFAULT_MAX_DELIVER 5u
#define CONS_NAME_MAX 200 /* bytes in a durable name */
#define CONS_WHO_MAX 64   /* bytes of a holder's description, NUL included */

/* Header names of a dead-lettered message (besides its own headers). */
#define CONS_DLQ_HDR_TOPIC "ferry-dlq-topic"
#define CONS_DLQ_HDR_SEQ "ferry-dlq-sequence"
#define CONS_DLQ_HDR_COUNT "ferry-dlq-deliveries"
#define CONS_DLQ_HDR_DURABLE "ferry-dlq-durable"
#define CONS_DLQ_HDR_PATTERN "ferry-dlq-pattern" /* a wildcard durable's */
#define CONS_DLQ_PREFIX "$DLQ."
#define CONS_OWNER_MAX 64 /* bytes of an owner's name (AUTH_NAME_MAX) */

/* The conn ref slot that marks a dead-letter publish's PubAck (no
 * connection has this slot): the generation field carries the durable's id
 * and the publish id its sequence. */
#define CONS_DLQ_SLOT 0xffffffu

/* Who binds (OWNERS): name, the binder's user name (1..CONS_OWNER_MAX
 * bytes); may_any: the binder may bind any durable it covers (an admin, or
 * a `consume` rule covering it). */
struct cons_user {
    const char *name;
    uint8_t may_any;
};

/* Per-subscription options; 0 fields take the defaults above. */
struct cons_opts {
    uint32_t max_in_flight;
    uint32_t ack_wait_ms;
    uint32_t max_deliver;
    /* No acks: a queue group's set of left messages (name NULL, see
     * cons_bind and cons_group_leave). */
    uint8_t is_auto_ack;
};

/* Create the registry over store st (kept, not owned). waker(ctx) is called
 * (any thread, no lock held) when a durable becomes dirty and the registry
 * was clean. Returns 0 and *out, or -ENOMEM. */
int cons_reg_create(struct store *st, void (*waker)(void *), void *ctx, struct cons_reg **out);
/* Free everything. Nothing may use the registry any more. NULL: no-op. */
void cons_reg_destroy(struct cons_reg *r);

/*
 * Bind subscription (holder_ref, sub_id) to the durable (topic, name),
 * loading it from the store or creating it (starting at first_seq) if it
 * does not exist. group may be empty. o applies to this binding (the last
 * binder's options win for the shared durable).
 * A topic with wildcards binds a wildcard durable's root (name required);
 * first_seq is then the new root's start_ns (see WILDCARD DURABLES).
 * name NULL: no durable, the subscription's own explicit acks: a consumer
 * that is never stored, shared by the members of queue group (if any) and
 * freed when its last holder unbinds (its unacked messages with it); after
 * max_deliver a message is dropped (logged), not dead-lettered.
 * With o->is_auto_ack (a queue group without acks on a stored topic): the
 * group's set of left messages (cons_group_leave), so that a member that
 * lags leaves what it cannot take to the others, each message still going
 * to one member. Such a group on a wildcard pattern binds a root (never
 * stored) whose positions (cons_bind_member) are the group's sets per
 * topic.
 * who (may be NULL): the holder as `ferry consumers` shows it ("client 12
 * 127.0.0.1:5555"; copied, cut at CONS_WHO_MAX - 1 bytes).
 * u (may be NULL: no auth file, nothing checked): the binding user, who
 * owns a durable it creates and may bind another's only with u->may_any
 * (OWNERS; ignored for name NULL).
 * Returns 0 and *out, -EBUSY (held by another subscription outside this
 * queue group), FERRY_EPERM (owned by another user), -ENOMEM,
 * FERRY_ESTORAGE (the stored record is corrupt, or the store failed),
 * -EAGAIN (reader slots full).
 */
int cons_bind(struct cons_reg *r, const char *topic, size_t topic_len, const char *name,
              size_t name_len, const char *group, size_t group_len, const struct cons_opts *o,
              uint64_t first_seq, uint64_t holder_ref, uint64_t sub_id, const char *who,
              const struct cons_user *u, struct consumer **out);
/*
 * Bind the same holder to root's position on topic (no wildcards; see
 * WILDCARD DURABLES), loading it or creating it at first_seq. The root's
 * queue group and options apply. Returns as cons_bind(), and FERRY_ENOTOPIC
 * once the root was deleted, FERRY_EINVAL when the key (pattern, name,
 * topic) would pass STORE_CONSUMER_KEY_MAX bytes.
 */
int cons_bind_member(struct cons_reg *r, struct consumer *root, const char *topic, size_t topic_len,
                     uint64_t first_seq, uint64_t holder_ref, uint64_t sub_id, const char *who,
                     struct consumer **out);
/* A root's start_ns: a new position starts at its topic's first message
 * published at or after it (0: at its first message). */
int64_t cons_root_start_ns(struct consumer *root);

/* Release a binding (unsubscribe, connection closed). Its unacked messages
 * stay pending and are redelivered to the next holder. */
void cons_unbind(struct cons_reg *r, struct consumer *k, uint64_t holder_ref, uint64_t sub_id);

/* A subscription's own acks (name NULL, no queue group): nobody else
 * moves its position. */
int cons_is_private(struct consumer *k);

/* The durable's id (for CONS_DLQ_SLOT refs) and its name. */
uint32_t cons_id(const struct consumer *k);
/* Its owner (OWNERS), or NULL: nobody. Valid while k is bound. */
const char *cons_owner(const struct consumer *k);
/* May u bind k (OWNERS)? 1 for u NULL (no auth file) and for a consumer
 * that is no durable (a subscription's own acks). Any thread. */
int cons_may_bind(const struct consumer *k, const struct cons_user *u);

enum cons_claim {
    CONS_CLAIM_OK = 0, /* yours: deliver it (it is pending now) */
    CONS_CLAIM_SKIP,   /* below next_seq: handed out already, drop it */
    CONS_CLAIM_GAP,    /* above next_seq (only when !allow_gap): read the store */
    CONS_CLAIM_FULL,   /* max_in_flight reached: wait for acks */
};

/* Claim seq for delivery. allow_gap: seq may be above next_seq (the store
 * no longer has the ones between: retention or purge); *missed (may be
 * NULL) receives how many were skipped that way. */
enum cons_claim cons_claim(struct consumer *k, uint64_t seq, int allow_gap, uint64_t now,
                           uint64_t *missed);

/* next_seq, and how many more may be in flight now. */
uint64_t cons_next_seq(struct consumer *k);
uint32_t cons_room(struct consumer *k);

/* An Ack of kind 0 (ACK), 1 (NAK: due now) or 2 (TERM). Returns 1 if seq
 * was pending, else 0 (an Ack for something not pending is ignored). */
int cons_ack(struct consumer *k, uint64_t seq, int kind);

/* Pending messages whose deadline passed: at most max of them, oldest
 * first. For each, is_dlq says whether it reached max_deliver (then it is
 * held for the dead-letter publish and no longer redelivered) or else
 * n_deliv is its delivery count including this redelivery (its deadline is
 * moved on by ack_wait). */
struct cons_due {
    uint64_t seq;
    uint32_t n_deliv;
    uint8_t is_dlq;
};
size_t cons_take_due(struct consumer *k, uint64_t now, struct cons_due *out, size_t max);
/* Forget seq (it is no longer in the store). */
void cons_forget(struct consumer *k, uint64_t seq);
/* A redelivery that could not be sent: undo its count and make it due. */
void cons_unsend(struct consumer *k, uint64_t seq);

/*
 * A queue group's shared set (o.is_auto_ack): a live message chosen for a
 * member that cannot take it now (its connection lags) is left here, and
 * whichever member has room takes it (cons_group_take) and reads it from
 * the store. Returns 0, or -ENOSPC when CONS_MAX_IN_FLIGHT_CAP messages are
 * left already (the member then takes it, bounded as ever), -ENOMEM.
 */
#define CONS_GROUP_LEFT_MAX CONS_MAX_IN_FLIGHT_CAP
int cons_group_leave(struct consumer *k, uint64_t seq);
/* Take up to max left messages, oldest first, into seqs[]; returns how
 * many. One taken and not sent goes back with cons_group_leave(). */
size_t cons_group_take(struct consumer *k, uint64_t *seqs, size_t max);

/* Store writer: the dead letter of durable id's seq is in the batch about
 * to commit; the durable's state saved with that batch leaves seq out. */
void cons_dlq_committing(struct cons_reg *r, uint32_t id, uint64_t seq);
/* The dead-letter publish of durable id's seq was committed (ok) or refused
 * (then it is retried). */
void cons_dlq_done(struct cons_reg *r, uint32_t id, uint64_t seq, int ok);

/* The durable's dead-letter topic, "$DLQ.<topic>.<name>" (a wildcard
 * durable's position: its topic, not its pattern), NUL-terminated in buf
 * (cap bytes; CONS_DLQ_TOPIC_MAX always fits). Returns its length.
 * A durable name is one token, so the last token is the name and the
 * tokens between "$DLQ" and it are the topic: durables of one name on two
 * topics, or of two names, never share one. (A wildcard durable and a
 * durable of the same name whose topic the pattern matches do share it;
 * both are the owners' durables: ferry-dlq-pattern tells them apart.) */
#define CONS_DLQ_TOPIC_MAX (sizeof(CONS_DLQ_PREFIX) + STORE_TOPIC_MAX + 1 + CONS_NAME_MAX)
size_t cons_dlq_topic(const struct consumer *k, char *buf, size_t cap);

/* A one-record publication batch for the writer: m's payload, key and
 * headers published to cons_dlq_topic(), with the CONS_DLQ_HDR_* headers
 * (original topic, sequence, delivery count, durable name, and a wildcard
 * durable's pattern); at most 60 of the original headers are kept. conn_ref is CONN_REF(iot,
 * CONS_DLQ_SLOT, id), pub_id the sequence, want_ack set. Returns NULL on -ENOMEM. */
struct pub_batch *cons_dlq_batch(struct consumer *k, const struct store_msg *m, uint32_t n_deliv,
                                 uint32_t iot_index, uint32_t n_workers, int64_t now_ns);

/* Store writer: the records of every dirty durable (marked clean), to be
 * stored with store_batch_put_consumers() in the writer's batch, then
 * cons_reg_save_end() with the commit's result (0: stored; else they are
 * dirty again). Returns 0, or -ENOMEM (nothing taken, the registry stays
 * dirty). When it fails or sv->n is 0, sv holds nothing and needs no end
 * (ending it anyway is harmless). */
struct cons_save {
    struct store_kv *recs;
    struct consumer **taken;
    size_t n;
};
int cons_reg_save_begin(struct cons_reg *r, struct cons_save *sv);
void cons_reg_save_end(struct cons_reg *r, struct cons_save *sv, int rc);

/* Store writer, after a commit: free the durables nobody has held for
 * grace_ms whose state is stored (at most 64 a call; the rest next time).
 * *has_waiting: some unheld durable stays for now (call again later; an
 * unbind that leaves a durable unheld also calls the waker). Returns how
 * many were freed. Only the writer calls it: cons_reg_save_begin() then
 * never meets a freed durable. */
size_t cons_reg_release_idle(struct cons_reg *r, uint64_t now_ms, uint64_t grace_ms,
                             int *has_waiting);

/* Write every dirty durable in a transaction of its own (at shutdown, after
 * the writer stopped). Returns 0 or the store's error (the durables stay
 * dirty). */
int cons_reg_flush(struct cons_reg *r);

/*
 * ADMINISTRATION
 */

/* A stored record, decoded. */
struct cons_rec {
    int is_root;                    /* a wildcard durable's root: only start_ns */
    char owner[CONS_OWNER_MAX + 1]; /* "" when owned by nobody (version 1) */
    int64_t start_ns;               /* a root's (see WILDCARD DURABLES) */
    uint64_t next_seq;              /* >= 1 */
    uint32_t n_pending;             /* delivered, not acked */
    uint64_t first_pending;         /* oldest pending sequence; 0 when none */
    uint32_t n_redelivered;         /* pending entries delivered more than once */
};

/* Decode and check one "consumers" record: magic, version, length agreeing
 * with its count, next_seq >= 1, pending sequences strictly increasing in
 * 1..next_seq-1, delivery counts >= 1; or a root's record ('W', its
 * length). Pure. Returns 0 and *out, or
 * FERRY_ESTORAGE with a one-line reason in why (why_len bytes). */
int cons_rec_decode(const void *value, size_t len, struct cons_rec *out, char *why, size_t why_len);

/* A store_consumer_check_cb for store_verify_ex(): the key is a valid topic,
 * NUL, a valid durable name (or a pattern, NUL, a name: a root; or a
 * pattern, NUL, a name, NUL, a topic the pattern matches: a position); the
 * record decodes (cons_rec_decode()) and is of the key's kind; and
 * next_seq <= the topic's last_seq + 1 (a topic the store does not have
 * counts as last_seq 0). The topic passed is the key's last part (a
 * position's topic). ctx is unused. Pure. */
int cons_rec_check(void *ctx, const char *key, size_t key_len, const void *value, size_t value_len,
                   const struct store_topic_info *topic, char *why, size_t why_len);

/* One durable, for `ferry consumers`. */
struct cons_info {
    char topic[STORE_TOPIC_MAX + 1]; /* a wildcard durable's root: its pattern */
    char name[CONS_NAME_MAX + 1];
    char pattern[STORE_TOPIC_MAX + 1]; /* a wildcard durable's position: its pattern */
    int is_root;                       /* a wildcard durable's root (no figures of its own) */
    char key[STORE_CONSUMER_KEY_MAX];  /* the record's key (the listing's order) */
    size_t key_len;
    char group[256];            /* the holders' queue group ("" when none or unheld) */
    char held_by[CONS_WHO_MAX]; /* the first holder's description ("" when unheld) */
    uint64_t next_seq;          /* the next sequence never handed out */
    uint64_t ack_floor;         /* every sequence up to it is done */
    uint32_t n_pending;         /* delivered, not acked */
    uint32_t n_redelivered;     /* pending entries delivered more than once */
    uint32_t n_holders;         /* subscriptions bound to it now */
    uint64_t n_redeliveries;    /* is_loaded: messages handed out again since loaded */
    uint64_t n_dead_letters;    /* is_loaded: messages dead-lettered since loaded */
    int is_loaded;              /* in memory (bound since start); else read from the store */
    int is_deleted;             /* cons_reg_list()'s own use: never set in what it returns */
    uint64_t idle_since_ms;     /* is_loaded and unheld: monotonic ms since when; else 0 */
};

/* A stored record and its key as one durable, the way cons_reg_list()
 * reports a durable that is only in the store (ferryd --inspect too): the
 * key's parts (topic, name, pattern, is_root, key) and the record's figures
 * (next_seq, ack_floor, n_pending, n_redelivered) into out, the rest of out
 * zero; the decoded record into rec (may be NULL: its owner, a root's
 * start). Pure. Returns 0, or FERRY_ESTORAGE (a key without NUL, or a
 * record cons_rec_decode() refuses) with a one-line reason in why. */
int cons_info_from_record(const char *key, size_t key_len, const void *value, size_t value_len,
                          struct cons_info *out, struct cons_rec *rec, char *why, size_t why_len);

/* The durables whose topic passes match (a pure function: it is called
 * under the registry's lock and inside a store read), both those in
 * memory and those only in the store, sorted by topic then name. A
 * durable in memory is reported from memory (fresher than its record).
 * Returns 0 and a malloc'd *out of *n_out entries (the caller frees it), or
 * -ENOMEM, -EAGAIN, FERRY_ESTORAGE. Any thread. */
int cons_reg_list(struct cons_reg *r, int (*match)(void *ctx, const char *topic, size_t len),
                  void *ctx, struct cons_info **out, size_t *n_out);

/* The lag of a durable whose ack floor on topic is ack_floor: *msgs above
 * it, and *ms since the oldest of them was published (now_ns: the
 * realtime clock). Both stay as they are when it is caught up or the topic
 * cannot be read. Reads the store; any thread. */
void cons_lag(struct store *st, const char *topic, uint64_t ack_floor, int64_t now_ns,
              uint64_t *msgs, uint64_t *ms);

/* A holder that cons_reg_delete() detached: its subscription must end. */
struct cons_detach {
    uint64_t holder_ref;
    uint64_t sub_id;
    uint32_t id; /* the deleted durable's cons_id(): a reused sub_id is not it */
};

/*
 * Delete the durable (topic, name), in memory or only in the store. Held
 * by a subscription: -EBUSY, unless force: then its holders are released
 * at once and returned in *holders (malloc'd, *n_holders entries, NULL when
 * none; the caller frees it) for the caller to end their subscriptions;
 * until then their acks and claims change nothing stored. The record is
 * removed from the store by the next cons_reg_flush() (the writer is
 * woken); a durable bound under the same name from now on starts afresh.
 * Returns 0, FERRY_ENOTOPIC (no such durable), -EBUSY, FERRY_EINVAL,
 * -ENOMEM, -EAGAIN, FERRY_ESTORAGE. Any thread.
 */
int cons_reg_delete(struct cons_reg *r, const char *topic, size_t topic_len, const char *name,
                    size_t name_len, int force, struct cons_detach **holders, uint32_t *n_holders);

/*
 * consumer_max_idle: remove durables nobody held for max_idle_ms.
 *
 * The time a durable was last held is kept in memory only (the stored
 * record has no room for it; a version 2 record could carry it): a durable
 * in memory is idle since its last holder left or since it was loaded; one
 * only in the store counts as idle since store_idle_since_ms (the reaper's
 * start, that is the broker's), so a restart gives every durable the full
 * max_idle_ms again.
 *
 * cons_reg_expire(): one pass at monotonic now_ms; removes (as
 * cons_reg_delete() without force, logged) every unheld durable idle for
 * max_idle_ms. Returns how many, or -ENOMEM, -EAGAIN, FERRY_ESTORAGE.
 * cons_reaper_start(): a thread running that pass every max_idle_ms / 4
 * (10 ms .. 1 s). Returns 0 and *out, FERRY_EINVAL (0), -ENOMEM, -errno.
 * cons_reaper_stop(): stop and free it (NULL: no-op); call it before the
 * registry is flushed for the last time and destroyed.
 */
struct cons_reaper;
int cons_reg_expire(struct cons_reg *r, uint64_t max_idle_ms, uint64_t now_ms,
                    uint64_t store_idle_since_ms);
int cons_reaper_start(struct cons_reg *r, uint64_t max_idle_ms, struct cons_reaper **out);
void cons_reaper_stop(struct cons_reaper *rp);

#endif

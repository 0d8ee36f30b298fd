/*
 * trie.h - the subscription index: patterns in a tree of tokens.
 *
 * How matching works. Every pattern is a path from the root, one node per
 * token; a node has literal children (a small open-addressing hash keyed by
 * the token), and at most one '*' child and one '>' child. Subscriptions hang
 * on the node where their pattern ends: plain ones in a list, queue-group
 * members grouped by name. To match a topic we walk it token by token with an
 * explicit stack instead of recursion: at depth d a node may continue through
 * its literal child for token d and through its '*' child, and its '>' child
 * matches everything that remains (one or more tokens). The stack holds at
 * most two entries per level, so the work is bounded by the depth limit
 * (TRIE_MAX_DEPTH) and never by the C stack. A queue group yields one member
 * per match, rotating.
 *
 * Subscriptions are shared records (struct trie_sub, reference counted): the
 * IO thread that owns the subscribing connection creates one and every worker
 * inserts the same pointer in its own trie. The record is immutable after
 * creation except for its reference count.
 *
 * A trie is owned by one thread (no locks). Pure module.
 */
#ifndef FERRY_TRIE_H
#define FERRY_TRIE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define TRIE_MAX_DEPTH 64

struct trie_sub {
    atomic_uint refs; /* atomic: shared by the owning IO thread and the workers */
    uint32_t pattern_len;
    uint32_t group_len; /* 0: not in a queue group */
    uint64_t owner;     /* opaque to the trie: who receives (connection ref) */
    uint64_t sub_id;    /* the client's subscription id */
    /* This subscription's identity, unique per owner over the owner's life
     * (a sub_id can be reused after Unsubscribe; a key never is). Set by
     * the owner before the record is shared; deliveries carry it. Owners
     * hand keys out in increasing order. */
    uint64_t key;
    const char *pattern; /* points into the record, NUL-terminated */
    const char *group;   /* likewise; "" when group_len == 0 */
};

/* Create a record with one reference. Returns NULL on allocation failure. */
struct trie_sub *trie_sub_create(uint64_t owner, uint64_t sub_id, const char *pattern,
                                 size_t pattern_len, const char *group, size_t group_len);
void trie_sub_ref(struct trie_sub *s);
void trie_sub_unref(struct trie_sub *s);

struct trie_node;

struct trie {
    struct trie_node *root;
    uint32_t n_subs;  /* subscriptions inserted */
    uint32_t n_nodes; /* nodes allocated, root included */
};

void trie_init(struct trie *t);
/* Free all nodes and drop the trie's reference on every record. */
void trie_deinit(struct trie *t);

/* Insert s (the pattern must be valid, see topic_validate). The trie takes
 * a reference. Returns 0, -ENOMEM, or -EINVAL if deeper than TRIE_MAX_DEPTH. */
int trie_add(struct trie *t, struct trie_sub *s);

/* Remove s (by pointer). Drops the trie's reference and prunes empty nodes.
 * Returns 0 or -ENOENT. */
int trie_remove(struct trie *t, struct trie_sub *s);

typedef void (*trie_match_fn)(void *ctx, struct trie_sub *s);

/* Call fn for every subscription matching the concrete topic s[0..len): every
 * plain one, and one member of each matching queue group. Order is
 * unspecified. Returns the number of calls, or -EINVAL if the topic has more
 * than TRIE_MAX_DEPTH tokens. */
int trie_match(struct trie *t, const char *s, size_t len, trie_match_fn fn, void *ctx);

/* How many subscriptions match the concrete topic s[0..len): every plain
 * one and every member of each matching queue group (trie_match yields one
 * member per group). Changes nothing (a group's rotation stays where it
 * was). Returns the count, or -EINVAL if the topic has more than
 * TRIE_MAX_DEPTH tokens. */
int trie_count(const struct trie *t, const char *s, size_t len);

#endif

/*
 * consumer_int.h - what consumer.c and consumer_admin.c share: the
 * registry's and a durable's layout, the stored record's, and a few
 * helpers (prefix cons__). Private to those two files; the module's API is
 * consumer.h.
 */
#ifndef FERRY_CONSUMER_INT_H
#define FERRY_CONSUMER_INT_H

#include "consumer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* The stored records (described at the top of consumer.c): a durable's
 * header and entry, and a wildcard durable's root record. */
#define REC_HDR 16
#define REC_ENT 12
#define REC_ROOT 12

struct pend {
    uint64_t seq;
    uint64_t deadline; /* monotonic ms; 0: due now */
    uint32_t n_deliv;
    uint8_t is_done;
    uint8_t is_dlq;        /* held for the dead-letter publish */
    uint8_t is_committing; /* its dead letter is in the writer's open batch */
};

struct holder {
    uint64_t ref;
    uint64_t sub_id;
    char who[CONS_WHO_MAX]; /* for `ferry consumers` */
};

struct consumer {
    struct cons_reg *reg; /* immutable */
    uint32_t id;          /* immutable */
    /* immutable: topic NUL name (a durable); pattern NUL name (a wildcard
     * durable's root); pattern NUL name NUL topic (one of its positions) */
    char *key;
    size_t key_len;
    const char *topic; /* into key; a root's is its pattern */
    size_t topic_len;
    const char *name; /* into key */
    size_t name_len;
    const char *pattern; /* into key: a wildcard durable's position; else NULL */
    size_t pattern_len;
    uint8_t is_root; /* immutable: a wildcard durable's root (no messages of its own) */
    /* immutable: the user who owns it (see OWNERS in consumer.h); NULL:
     * nobody (made without an auth file, or stored by a version before
     * owners). A position's is its root's. */
    char *owner;
    /* guarded by the registry's lock */
    struct holder *holders;
    uint32_t n_holders, holders_cap;
    char group[256];
    /* guarded by lock */
    pthread_mutex_t lock;
    uint64_t next_seq;
    int64_t start_ns; /* a root: where topics it has no position on start (publish
                       * time, ns since the epoch; 0: their first message) */
    struct pend *p;
    uint32_t head, n, cap; /* entries p[head .. n) are candidates */
    uint32_t n_live;       /* not done */
    uint64_t *left;        /* a queue group's left messages (cons_group_leave), sorted */
    uint32_t n_left, left_cap;
    struct cons_opts o;
    uint64_t n_redeliveries; /* messages handed out again since loaded (metrics) */
    uint64_t n_dead_letters; /* messages dead-lettered since loaded (metrics) */
    uint8_t is_dirty;
    uint8_t is_anon; /* immutable: a subscription's own acks, never stored */
    /* Deleted by an administrator (cons_reg_delete()): invisible to
     * lookups, never written again except for the one flush that deletes
     * its record. Set under the registry's lock and lock, then immutable. */
    uint8_t is_deleted;
    uint8_t is_detaching;   /* deleted with holders (force): they may still touch it */
    uint64_t idle_since_ms; /* guarded by the registry's lock: monotonic ms when
                             * last released (or loaded); for consumer_max_idle */
};

struct cons_reg {
    struct store *st;
    void (*waker)(void *);
    void *ctx;
    pthread_mutex_t lock;
    struct consumer **v; /* by id - 1; guarded by lock */
    uint32_t n, cap;
    /* Queue groups' shared acks without a durable (cons_bind, is_anon);
     * guarded by lock. Freed when their last member leaves. */
    struct consumer **anon;
    uint32_t n_anon, anon_cap;
    atomic_int is_dirty; /* some durable is dirty */
};

/* A key's parts (struct consumer, key), pointing into it. */
struct cons_key {
    const char *topic; /* a root's: its pattern */
    size_t topic_len;
    const char *name;
    size_t name_len;
    const char *pattern; /* a position of a wildcard durable; else NULL */
    size_t pattern_len;
    int is_root;
};
/* Split key (key_len bytes). Returns 0, or -1 when it has no NUL. */
int cons__key_split(const char *key, size_t key_len, struct cons_key *out);

/* The durable (not deleted) with that key, or NULL. r->lock held. */
struct consumer *cons__reg_find(struct cons_reg *r, const char *key, size_t key_len);
/* Is a deleted durable with that key still in the registry? r->lock held. */
int cons__reg_has_deleted(struct cons_reg *r, const char *key, size_t key_len);
/* A new durable of key (any of the three forms above, or an anonymous
 * consumer's, whose topic has no wildcard), not registered. NULL: no memory. */
struct consumer *cons__new(const char *key, size_t key_len);
/* Free k (not registered, or taken out of the registry). */
void cons__free(struct consumer *k);
/* Call the registry's waker if need (no lock held). */
void cons__wake(struct cons_reg *r, int need);
/* CLOCK_MONOTONIC in ms. */
uint64_t cons__mono_ms(void);
/* The layout of a stored record v (len bytes, its magic and version
 * checked by the caller: 'D' or 'W', version 1 or 2): its owner (NULL and 0
 * for version 1) and where its body starts (a durable's first pending
 * entry; a root's end). Returns 0, or -1 (why says what is wrong) when the
 * owner's length does not fit or the owner is no valid user name. Pure. */
int cons__rec_owner(const unsigned char *v, size_t len, const char **owner, size_t *owner_len,
                    size_t *body, char *why, size_t why_len);
/* Little-endian fields of the stored record. */
uint32_t cons__le32_get(const unsigned char *p);
uint64_t cons__le64_get(const unsigned char *p);

#endif

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

/* The stored record (described at the top of consumer.c): header and entry. */
#define REC_HDR 16
#define REC_ENT 12

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
    char *key;            /* immutable: topic, NUL, name */
    size_t key_len;
    const char *topic; /* into key */
    size_t topic_len;
    const char *name; /* into key */
    size_t name_len;
    /* guarded by the registry's lock */
    struct holder *holders;
    uint32_t n_holders, holders_cap;
    char group[256];
    /* guarded by lock */
    pthread_mutex_t lock;
    uint64_t next_seq;
    struct pend *p;
    uint32_t head, n, cap; /* entries p[head .. n) are candidates */
    uint32_t n_live;       /* not done */
    struct cons_opts o;
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

/* The durable (not deleted) with that key, or NULL. r->lock held. */
struct consumer *cons__reg_find(struct cons_reg *r, const char *key, size_t key_len);
/* Is a deleted durable with that key still in the registry? r->lock held. */
int cons__reg_has_deleted(struct cons_reg *r, const char *key, size_t key_len);
/* A new durable of key (topic, NUL, name), not registered. NULL: no memory. */
struct consumer *cons__new(const char *key, size_t key_len, size_t topic_len);
/* Call the registry's waker if need (no lock held). */
void cons__wake(struct cons_reg *r, int need);
/* CLOCK_MONOTONIC in ms. */
uint64_t cons__mono_ms(void);
/* Little-endian fields of the stored record. */
uint32_t cons__le32_get(const unsigned char *p);
uint64_t cons__le64_get(const unsigned char *p);

#endif

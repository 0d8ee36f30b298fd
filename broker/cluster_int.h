/*
 * cluster_int.h - what the cluster module's files share (private):
 *   cluster.c      the view (placements, brokers, controller) and what the
 *                  IO threads ask of it: clu_route, clu_metadata; start, stop
 *   cluster_ctl.c  the cluster thread: registration and the store's identity,
 *                  the controller election, placement, the lease (fencing)
 */
#ifndef FERRY_CLUSTER_INT_H
#define FERRY_CLUSTER_INT_H

#include "cluster.h"
#include "coord.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define CLU_WANTED_MAX 256u /* topics waiting for a placement, at most */
#define CLU_ADDR_MAX 128u
#define CLU_NAME_MAX 128u
#define CLU_ENC_MAX 800u /* a topic's znode name: 255 bytes escaped fit */

struct clu_topic {
    char *name; /* NULL: a free slot */
    uint32_t name_len;
    uint32_t owner;
    uint64_t epoch;
};

struct clu_bro {
    uint32_t id;
    char addr[CLU_ADDR_MAX];
    int is_live;
    uint32_t n_topics;
};

struct cluster {
    /* Immutable after clu_start. */
    char name[CLU_NAME_MAX];
    char zk[512];
    char advertise[CLU_ADDR_MAX];
    char data_dir[512];
    char base[CLU_NAME_MAX + 16]; /* "/ferry/<name>" */
    char store_id[40];            /* this store's identity (hex) */
    uint32_t self;                /* broker id */
    uint32_t session_ms;
    struct coord *co; /* its calls: the cluster thread (main before it starts);
                       * coord_wake: any thread */
    pthread_t thread;
    int is_started;
    atomic_int is_stopping; /* atomic: main sets it, the cluster thread reads it */
    /* CLOCK_MONOTONIC ms until which this broker may serve the topics it
     * owns: the last confirmation of its ZooKeeper session plus two thirds
     * of the session timeout (0: fenced). atomic: the cluster thread
     * writes, IO threads read. */
    atomic_ullong lease_until;
    /* view_lock guards the view: the placement table, the brokers, the
     * controller. The cluster thread writes; IO threads read. */
    pthread_rwlock_t view_lock;
    struct clu_topic *tab; /* open addressing, tab_cap a power of two */
    uint32_t tab_cap, n_topics;
    struct clu_bro *brokers; /* sorted by id */
    uint32_t n_brokers, brokers_cap;
    uint32_t controller_id;
    uint64_t controller_epoch;
    /* req_mu guards wanted[], placed_gen and the placed hook; placed_cv
     * (with req_mu) is broadcast when the view gained placements. */
    pthread_mutex_t req_mu;
    pthread_cond_t placed_cv;
    char *wanted[CLU_WANTED_MAX]; /* topics IO threads wait for (malloc'd) */
    uint32_t n_wanted;
    uint64_t placed_gen;
    void (*placed_fn)(void *); /* clu_set_placed_hook; called outside req_mu */
    void *placed_arg;
    /* The cluster thread only. */
    int is_registered;
    int is_controller;
    uint64_t my_epoch; /* the controller epoch this broker won */
    int dirty_brokers, dirty_controller, dirty_topics, dirty_pending;
    uint64_t next_refresh; /* ms: confirm the session (the lease) then */
};

/* cluster.c: the view (callers take view_lock). */
struct clu_topic *clu__find(struct cluster *cl, const char *name, size_t len);
int clu__insert(struct cluster *cl, const char *name, size_t len, uint32_t owner, uint64_t epoch);
struct clu_bro *clu__broker(struct cluster *cl, uint32_t id);
void clu__recount(struct cluster *cl);
uint64_t clu__now_ms(void);

/* Topic names in znode names: bytes outside [A-Za-z0-9._-] as %XX, so a
 * '/' in a topic cannot make a path; a name of only dots gets %2E. 0 or
 * -ENAMETOOLONG. */
int clu__enc(const char *topic, size_t len, char *out, size_t cap);
int clu__dec(const char *enc, char *out, size_t cap, size_t *out_len);

/* Free cl and everything it holds (its session closed, if any). */
void clu__free(struct cluster *cl);

/* cluster_ctl.c */
int clu__join(struct cluster *cl, uint32_t start_ms, char *err, size_t err_len);
void *clu__thread(void *arg);

#endif

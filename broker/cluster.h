/*
 * cluster.h - cluster mode, phase 1 (CLUSTER.md): this broker's membership
 * in a cluster coordinated through ZooKeeper (coord.h), the controller
 * election, topic placement, and the answer to "may I serve this topic?".
 *
 * One thread of its own (the cluster thread) talks to ZooKeeper; it keeps
 * a view of the cluster (brokers, controller, placements) that every IO
 * thread reads through clu_route() and clu_metadata(). Off (no struct
 * cluster at all, srv->cluster NULL) unless `cluster NAME` is configured.
 */
#ifndef FERRY_CLUSTER_H
#define FERRY_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

struct cluster;

struct clu_config {
    const char *name;      /* the cluster: znodes live under /ferry/<name> */
    const char *zookeeper; /* "host:port,host:port,..." */
    uint32_t broker_id;    /* unique in the cluster, >= 1 */
    const char *advertise; /* "host:port" clients reach this broker at */
    const char *data_dir;  /* the store's directory: its cluster identity file */
    uint32_t session_ms;   /* ZooKeeper session timeout asked for */
    uint32_t start_ms;     /* bound on reaching ZooKeeper and registering at start */
};

/* Join: connect, check that the store in data_dir is this broker's (its
 * identity file against /ferry/<name>/stores/<id>; a new store is
 * recorded), register, and start the cluster thread. Blocks up to
 * start_ms. 0, or a negative errno with a sentence for the log in err
 * (-EEXIST: the store or the broker id belongs to another; -ETIMEDOUT:
 * ZooKeeper not reached; -ENOTSUP: built without ZooKeeper). */
int clu_start(const struct clu_config *cfg, struct cluster **out, char *err, size_t err_len);

/* Leave (the registration goes at once) and free. Main, after the IO
 * threads stopped. NULL is fine. */
void clu_stop(struct cluster *cl);

/* What an IO thread does with a topic. */
enum clu_verdict {
    CLU_SERVE = 0,   /* this broker owns it, and its session is confirmed */
    CLU_NOT_OWNER,   /* another broker owns it: owner holds its address */
    CLU_UNAVAILABLE, /* nobody can serve it now (text says why); retry */
    CLU_PENDING,     /* wait_ms 0: not placed yet; its placement is asked for */
};

/*
 * May this broker serve topic[0..len) (a concrete name)? A topic not
 * placed yet is placed first (by the controller), waiting up to wait_ms
 * for it: the only wait, once per topic per broker. With wait_ms 0 there
 * is no wait: CLU_PENDING says the placement is asked for, and the placed
 * hook runs when it (or any other) is known. text (a sentence for the
 * client) and owner ("host:port", with CLU_NOT_OWNER) are filled unless
 * CLU_SERVE. Any thread.
 */
enum clu_verdict clu_route(struct cluster *cl, const char *topic, size_t len, uint32_t wait_ms,
                           char *text, size_t text_cap, char *owner, size_t owner_cap);

/* The placement generation: it grows whenever the view gains placements.
 * Any thread. */
uint64_t clu_placed_gen(struct cluster *cl);

/* fn(arg) runs on the cluster thread each time the placement generation
 * grows (it must not block: the IO threads' wake-up). Set once, by main,
 * once the IO threads exist. */
void clu_set_placed_hook(struct cluster *cl, void (*fn)(void *), void *arg);

/* A snapshot of the view, for Metadata. */
struct clu_meta_broker {
    uint32_t id;
    char addr[128];
    int is_live;       /* registered now */
    uint32_t n_topics; /* placed on it */
};
struct clu_meta_topic {
    char *name;
    uint32_t owner;
    uint64_t epoch; /* the controller epoch that placed it */
};
struct clu_meta {
    char name[128];
    uint32_t self_id;
    uint32_t controller_id; /* 0: none known now */
    uint64_t controller_epoch;
    int is_serving; /* this broker's session is confirmed (not fenced) */
    struct clu_meta_broker *brokers;
    uint32_t n_brokers;
    struct clu_meta_topic *topics;
    uint32_t n_topics;
    int is_truncated; /* more topics matched than max_topics */
};

/* Copy the view: every broker, and the placed topics matching pattern
 * (NULL or "": all), at most max_topics of them, sorted by name. 0 or
 * -ENOMEM. Free with clu_meta_free. Any thread. */
int clu_metadata(struct cluster *cl, const char *pattern, uint32_t max_topics,
                 struct clu_meta *out);
void clu_meta_free(struct clu_meta *m);

#endif

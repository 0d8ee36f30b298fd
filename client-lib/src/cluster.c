/*
 * cluster.c - cluster mode (cluster.h): the facade's brokers and their child
 * clients, the owner cache, the routing of publishes, flush, close and
 * destroy. Subscriptions are in cluster_sub.c.
 *
 * Each child is an ordinary client for one broker, in thread mode (its own
 * IO thread), made from the facade's options with that broker's address
 * alone, made when first needed, reconnecting for ever. Its callbacks come
 * back here (trampolines) and reach the program with the facade's pointer,
 * one at a time (the callback slot below).
 *
 * Owners are learned before the first send to a topic: from the Metadata
 * that turned the client into a facade, else by asking any broker to place
 * the topic (TopicCreate answers with its placement, placing it if new).
 * Knowing the owner before sending means that a publish is never refused
 * and re-sent behind later ones: the publishes of one topic all go, in the
 * caller's order, on the one connection to its owner, and that broker's
 * order and acks are the topic's, as on a single broker. ERROR_NOT_OWNER
 * (placements never move in phase 1, so only after a stale view) drops the
 * cached owner; a sync publish then asks again and resends.
 *
 * LOCKING. k->mu guards the brokers table (ids, addresses, child pointers)
 * and the owner cache; it is never held while calling a child's blocking
 * function, and only ever taken before a child's c->mu (never the other
 * way round). A child, once made, lives until ferry__clu_destroy(), so a
 * pointer read under k->mu may be used after it is released. The facade's
 * own c->mu guards its state, its subscriptions (cluster_sub.c) and the
 * callback slot: k->cb_busy and k->cb_thread, waited for on k->cb_cond.
 */
#include "cluster.h"

#include "ferry_int.h"
#include "owner_cache.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct clu_broker {
    uint32_t id;
    char addr[128];
    int is_live;         /* as the last Metadata said */
    ferry_client *child; /* NULL until first needed */
};

struct ferry__cluster {
    pthread_mutex_t mu; /* guards brokers, n_brokers, owners, next_any */
    struct clu_broker brokers[FERRY__CLU_MAX_BROKERS];
    size_t n_brokers;
    struct ferry__owner_cache owners; /* topic -> broker id */
    size_t next_any;                  /* round robin of ferry__clu_any */
    /* The callback slot: guarded by the facade's c->mu. */
    pthread_cond_t cb_cond; /* broadcast when the slot frees or a subscription closes */
    int cb_busy;            /* a user callback runs now */
    pthread_t cb_thread;    /* on this thread, while cb_busy */
    int is_loop;            /* the facade is in event-loop mode (fixed at the switch) */
    /* The Metadata refresher thread; stop_refresh guarded by c->mu (it
     * waits on c->cond). */
    pthread_t refresher;
    int has_refresher;
    int stop_refresh;
};

/* ---- callbacks ---------------------------------------------------------- */

int ferry__clu_cb_enter(ferry_client *c, const int *skip)
{
    struct ferry__cluster *k = ferry__clu(c);
    pthread_mutex_lock(&c->mu);
    while (k->cb_busy && (skip == NULL || !*skip)) {
        pthread_cond_wait(&k->cb_cond, &c->mu);
    }
    int run = skip == NULL || !*skip;
    if (run) {
        k->cb_busy = 1;
        k->cb_thread = pthread_self();
    }
    pthread_mutex_unlock(&c->mu);
    return run;
}

void ferry__clu_cb_leave(ferry_client *c)
{
    struct ferry__cluster *k = ferry__clu(c);
    pthread_mutex_lock(&c->mu);
    k->cb_busy = 0;
    pthread_cond_broadcast(&k->cb_cond);
    pthread_mutex_unlock(&c->mu);
}

pthread_cond_t *ferry__clu_cb_cond(ferry_client *c)
{
    return &ferry__clu(c)->cb_cond;
}

int ferry__clu_in_callback(ferry_client *c)
{
    struct ferry__cluster *k = ferry__clu(c);
    return (k->cb_busy && pthread_equal(k->cb_thread, pthread_self())) || ferry__in_callback(c);
}

static int in_callback(ferry_client *c)
{
    pthread_mutex_lock(&c->mu);
    int r = ferry__clu_in_callback(c);
    pthread_mutex_unlock(&c->mu);
    return r;
}

int ferry__clu_calling_back(ferry_client *c)
{
    return ferry__clu(c) != NULL && in_callback(c);
}

int ferry__clu_is_loop(ferry_client *c)
{
    return ferry__clu(c)->is_loop;
}

void ferry__clu_loop_push(ferry_client *c, struct ferry__cbitem *it)
{
    ferry__cb_push(c, it);
    uint64_t one = 1;
    ssize_t w = write(c->wake_fd, &one, sizeof(one));
    (void)w; /* EAGAIN: the counter is saturated, the loop wakes anyway */
}

/* A child's connection event, told as the facade's (its own CONNECTED and
 * CLOSED are the facade's to say). */
static void on_child_event(ferry_client *ch, const ferry_event *ev, void *ud)
{
    ferry_client *c = ud;
    (void)ch;
    if (c->opts.event_cb == NULL || ev->type == FERRY_EVENT_CONNECTED ||
        ev->type == FERRY_EVENT_CLOSED) {
        return;
    }
    if (ferry__clu_is_loop(c)) {
        /* Queued for ferry_client_process() (its server: the facade's). */
        pthread_mutex_lock(&c->mu);
        ferry__event(c, ev->type, ev->code, ev->text, ev->ref_id, ev->ref_kind, ev->is_fatal);
        uint64_t one = 1;
        ssize_t w = write(c->wake_fd, &one, sizeof(one));
        (void)w;
        pthread_mutex_unlock(&c->mu);
        return;
    }
    if (ferry__clu_cb_enter(c, NULL)) {
        c->opts.event_cb(c, ev, c->opts.event_ud);
        ferry__clu_cb_leave(c);
    }
}

/* An async publish's context, for its child's completion. */
struct pubctx {
    ferry_client *c;
    ferry_pub_cb cb;
    void *ud;
    char topic[]; /* NUL-terminated */
};

static void on_child_ack(ferry_client *ch, int status, uint64_t seq, void *ud)
{
    struct pubctx *x = ud;
    (void)ch;
    if (status == FERRY_ENOTOWNER) {
        ferry__clu_forget(x->c, x->topic);
    }
    if (ferry__clu_is_loop(x->c)) {
        struct ferry__cbitem *it = calloc(1, sizeof(*it));
        pthread_mutex_lock(&x->c->mu);
        if (it == NULL) {
            ferry__log(x->c, FERRY_LOG_ERROR, "out of memory: a publish completion (%d) lost",
                       status);
        } else {
            it->kind = FERRY__CB_PUB;
            it->pub_cb = x->cb;
            it->pub_ud = x->ud;
            it->status = status;
            it->seq = seq;
            x->c->n_pub_cb_queued++;
            ferry__clu_loop_push(x->c, it);
        }
        pthread_mutex_unlock(&x->c->mu);
    } else if (ferry__clu_cb_enter(x->c, NULL)) {
        x->cb(x->c, status, seq, x->ud);
        ferry__clu_cb_leave(x->c);
    }
    free(x);
}

/* ---- brokers and children ----------------------------------------------- */

void ferry__clu_backoff(int64_t deadline, int ms)
{
    int64_t left = deadline - ferry__now_ms();
    if (deadline >= 0 && left < ms) {
        ms = left > 0 ? (int)left : 0;
    }
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static int remaining_ms(int64_t deadline)
{
    int64_t left = deadline - ferry__now_ms();
    return left < 1 ? 1 : left > INT32_MAX ? INT32_MAX : (int)left;
}

/* Make b's child (k->mu held): thread mode, connecting in the background,
 * or within timeout_ms when it is > 0. */
static int child_make(ferry_client *c, struct clu_broker *b, int timeout_ms)
{
    struct ferry_options o;
    int rc = ferry__options_copy(&o, &c->opts);
    if (rc == 0) {
        rc = ferry_options_set_servers(&o, b->addr);
    }
    if (rc != 0) {
        ferry__options_deinit(&o);
        return rc;
    }
    o.window_blocks = 0;          /* the facade waits for room, never a callback */
    o.reconnect = 1;              /* an owner that goes away comes back: */
    o.reconnect_max_attempts = 0; /* wait for it */
    o.event_cb = on_child_event;
    o.event_ud = c;
    ferry_client *ch = NULL;
    rc = ferry_client_create(&o, &ch);
    ferry__options_deinit(&o);
    if (rc != 0) {
        return rc;
    }
    ch->clu_parent = c;
    ch->clu_broker_id = b->id;
    /* Its IO thread takes no signals: they are the program's threads'. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rc = ferry_client_start_thread(ch);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        ferry_client_destroy(ch);
        return rc;
    }
    rc = ferry_client_connect(ch, timeout_ms);
    if (rc != 0 && rc != -EINPROGRESS) {
        ferry__log(c, FERRY_LOG_WARN, "cluster: broker %u (%s) not reached yet: %s", b->id, b->addr,
                   ferry_strerror(rc));
    }
    b->child = ch; /* it keeps trying (a child never gives up) */
    return 0;
}

/* How long making a child may wait for its connection. */
static int connect_wait_ms(ferry_client *c)
{
    return c->opts.connect_timeout_ms > 0 ? (int)c->opts.connect_timeout_ms : 5000;
}

/* b's child, made if needed (k->mu held), connected within wait_ms if > 0
 * (a broker that refuses fails at once; its child goes on trying), else in
 * the background. NULL: out of memory. */
static ferry_client *child_of(ferry_client *c, struct clu_broker *b, int wait_ms)
{
    if (b->child == NULL && child_make(c, b, wait_ms) != 0) {
        return NULL;
    }
    return b->child;
}

static struct clu_broker *broker_find(struct ferry__cluster *k, uint32_t id)
{
    for (size_t i = 0; i < k->n_brokers; i++) {
        if (k->brokers[i].id == id) {
            return &k->brokers[i];
        }
    }
    return NULL;
}

/* Learn broker id at addr (k->mu held). NULL when the table is full. */
static struct clu_broker *broker_learn(struct ferry__cluster *k, uint32_t id, const char *addr,
                                       int is_live)
{
    struct clu_broker *b = broker_find(k, id);
    if (b == NULL) {
        if (k->n_brokers == FERRY__CLU_MAX_BROKERS || addr[0] == '\0') {
            return NULL;
        }
        b = &k->brokers[k->n_brokers++];
        b->id = id;
        snprintf(b->addr, sizeof(b->addr), "%s", addr);
    }
    b->is_live = is_live;
    return b;
}

ferry_client *ferry__clu_any(ferry_client *c)
{
    struct ferry__cluster *k = ferry__clu(c);
    if (k == NULL) {
        return c;
    }
    pthread_mutex_lock(&k->mu);
    ferry_client *pick = NULL;
    /* A child that is up, round robin; else connect one, live brokers
     * first (children are made when first needed). */
    for (size_t n = 0; n < k->n_brokers && pick == NULL; n++) {
        struct clu_broker *b = &k->brokers[(k->next_any + n) % k->n_brokers];
        if (b->child != NULL && ferry_client_state(b->child) == FERRY_STATE_CONNECTED) {
            pick = b->child;
        }
    }
    k->next_any++;
    for (int pass = 0; pass < 2 && pick == NULL; pass++) {
        for (size_t i = 0; i < k->n_brokers && pick == NULL; i++) {
            struct clu_broker *b = &k->brokers[i];
            if (b->child == NULL && (b->is_live || pass == 1) &&
                child_of(c, b, connect_wait_ms(c)) != NULL &&
                ferry_client_state(b->child) == FERRY_STATE_CONNECTED) {
                pick = b->child;
            }
        }
    }
    if (pick == NULL) {
        for (size_t i = 0; i < k->n_brokers && pick == NULL; i++) {
            pick = k->brokers[i].child;
        }
    }
    pthread_mutex_unlock(&k->mu);
    return pick != NULL ? pick : c;
}

ferry_client *ferry__clu_owner_or_any(ferry_client *c, const char *topic)
{
    struct ferry__cluster *k = ferry__clu(c);
    if (k == NULL) {
        return c;
    }
    pthread_mutex_lock(&k->mu);
    struct clu_broker *b = broker_find(k, ferry__ocache_get(&k->owners, topic));
    ferry_client *ch = b != NULL ? child_of(c, b, connect_wait_ms(c)) : NULL;
    pthread_mutex_unlock(&k->mu);
    return ch != NULL ? ch : ferry__clu_any(c);
}

size_t ferry__clu_children(ferry_client *c, ferry_client **out, size_t cap)
{
    struct ferry__cluster *k = ferry__clu(c);
    size_t n = 0;
    pthread_mutex_lock(&k->mu);
    for (size_t i = 0; i < k->n_brokers && n < cap; i++) {
        ferry_client *ch = child_of(c, &k->brokers[i], connect_wait_ms(c));
        if (ch != NULL) {
            out[n++] = ch;
        }
    }
    pthread_mutex_unlock(&k->mu);
    return n;
}

/* Every child made so far (for flush, close, counters). */
static size_t children_made(struct ferry__cluster *k, ferry_client **out)
{
    size_t n = 0;
    pthread_mutex_lock(&k->mu);
    for (size_t i = 0; i < k->n_brokers; i++) {
        if (k->brokers[i].child != NULL) {
            out[n++] = k->brokers[i].child;
        }
    }
    pthread_mutex_unlock(&k->mu);
    return n;
}

/* ---- owners -------------------------------------------------------------- */

void ferry__clu_forget(ferry_client *c, const char *topic)
{
    struct ferry__cluster *k = ferry__clu(c);
    pthread_mutex_lock(&k->mu);
    ferry__ocache_drop(&k->owners, topic);
    pthread_mutex_unlock(&k->mu);
}

/* Broker id was learned: its child subscribes the wildcard patterns. */
static void announce(ferry_client *c, uint32_t id)
{
    struct ferry__cluster *k = ferry__clu(c);
    pthread_mutex_lock(&k->mu);
    struct clu_broker *b = broker_find(k, id);
    ferry_client *ch = b != NULL ? child_of(c, b, 0) : NULL;
    pthread_mutex_unlock(&k->mu);
    if (ch != NULL) {
        ferry__log(c, FERRY_LOG_INFO, "cluster: broker %u (%s) learned", id, b->addr);
        ferry__clu_subs_extend(c, ch);
    }
}

/* Ask a broker where topic lives (placing it if new). 0, or a code. */
static int owner_lookup(ferry_client *c, const char *topic, int64_t deadline)
{
    struct ferry__cluster *k = ferry__clu(c);
    ferry_client *ch = ferry__clu_any(c);
    ferry_placement pl;
    int rc = ferry_admin_topic_create(ch, topic, remaining_ms(deadline), &pl);
    if (rc != 0) {
        return rc;
    }
    if (pl.owner == 0) {
        return FERRY_EUNAVAILABLE;
    }
    pthread_mutex_lock(&k->mu);
    struct clu_broker *b = broker_find(k, pl.owner);
    int is_new = b == NULL;
    if (is_new) {
        b = broker_learn(k, pl.owner, pl.address, 1); /* a broker that joined since */
    }
    rc = b == NULL ? -ENOMEM : ferry__ocache_put(&k->owners, topic, pl.owner);
    pthread_mutex_unlock(&k->mu);
    if (is_new && b != NULL) {
        announce(c, pl.owner);
    }
    return rc;
}

/* The child for a reply to inbox id ("B<broker id>_..." from a cluster
 * client's child, request.c): that broker's, else any (never NULL). */
static ferry_client *inbox_child(ferry_client *c, const char *id)
{
    char *end;
    unsigned long bid =
        id[0] == 'B' && id[1] >= '0' && id[1] <= '9' ? strtoul(id + 1, &end, 10) : 0;
    if (bid != 0 && bid <= UINT32_MAX && *end == '_') {
        struct ferry__cluster *k = ferry__clu(c);
        pthread_mutex_lock(&k->mu);
        struct clu_broker *b = broker_find(k, (uint32_t)bid);
        ferry_client *ch = b != NULL ? child_of(c, b, 0) : NULL;
        pthread_mutex_unlock(&k->mu);
        if (ch != NULL) {
            return ch;
        }
    }
    return ferry__clu_any(c);
}

int ferry__clu_route(ferry_client *c, const char *topic, int64_t deadline, int may_block,
                     ferry_client **out)
{
    struct ferry__cluster *k = ferry__clu(c);
    if (strncmp(topic, "_INBOX.", 7) == 0) {
        /* Never placed: each broker serves its own. A cluster client's
         * inbox names the broker it waits on. */
        *out = inbox_child(c, topic + 7);
        return 0;
    }
    for (;;) {
        pthread_mutex_lock(&k->mu);
        struct clu_broker *b = broker_find(k, ferry__ocache_get(&k->owners, topic));
        ferry_client *ch = b != NULL ? child_of(c, b, may_block ? connect_wait_ms(c) : 0) : NULL;
        pthread_mutex_unlock(&k->mu);
        if (ch != NULL) {
            *out = ch;
            return 0;
        }
        if (b != NULL) {
            return -ENOMEM;
        }
        if (!may_block) {
            return -EAGAIN; /* in a callback: the lookup would wait on other IO */
        }
        int rc = owner_lookup(c, topic, deadline);
        if (rc == 0) {
            continue;
        }
        if (rc != FERRY_EUNAVAILABLE && rc != FERRY_ENOTREADY && rc != -ETIMEDOUT &&
            rc != FERRY_EDISCONNECTED) {
            return rc;
        }
        if (ferry__now_ms() >= deadline) {
            return FERRY_EUNAVAILABLE;
        }
        ferry__clu_backoff(deadline, 100);
    }
}

/* ---- becoming a facade ----------------------------------------------------- */

static struct ferry__cluster *cluster_new(ferry_client *c, const ferry_metadata *md)
{
    struct ferry__cluster *k = calloc(1, sizeof(*k));
    if (k == NULL) {
        return NULL;
    }
    pthread_mutex_init(&k->mu, NULL);
    pthread_cond_init(&k->cb_cond, NULL);
    ferry__ocache_init(&k->owners);
    for (size_t i = 0; i < md->n_brokers; i++) {
        const ferry_broker_info *bi = &md->brokers[i];
        if (broker_learn(k, bi->id, bi->address, bi->is_live) == NULL) {
            ferry__log(c, FERRY_LOG_WARN, "cluster: broker %u (%s) left out: at most %d", bi->id,
                       bi->address, FERRY__CLU_MAX_BROKERS);
        }
    }
    for (size_t i = 0; i < md->n_topics; i++) {
        if (ferry__ocache_put(&k->owners, md->topics[i].topic, md->topics[i].owner) != 0) {
            break; /* out of memory: learned again when used */
        }
    }
    return k;
}

static void cluster_free(struct ferry__cluster *k)
{
    ferry__ocache_free(&k->owners);
    pthread_cond_destroy(&k->cb_cond);
    pthread_mutex_destroy(&k->mu);
    free(k);
}

/* Ask Metadata again: brokers that came are learned, and the liveness of
 * the others noted. */
static void refresh(ferry_client *c)
{
    struct ferry__cluster *k = ferry__clu(c);
    ferry_metadata md;
    memset(&md, 0, sizeof(md));
    if (ferry_admin_metadata(ferry__clu_any(c), "", 1, connect_wait_ms(c), &md) != 0) {
        return;
    }
    uint32_t fresh[FERRY__CLU_MAX_BROKERS];
    size_t n_fresh = 0;
    pthread_mutex_lock(&k->mu);
    for (size_t i = 0; i < md.n_brokers; i++) {
        const ferry_broker_info *bi = &md.brokers[i];
        struct clu_broker *b = broker_find(k, bi->id);
        if (b != NULL) {
            b->is_live = bi->is_live;
        } else if (broker_learn(k, bi->id, bi->address, bi->is_live) != NULL) {
            fresh[n_fresh++] = bi->id;
        }
    }
    pthread_mutex_unlock(&k->mu);
    ferry_free(md.brokers);
    ferry_free(md.topics);
    for (size_t i = 0; i < n_fresh; i++) {
        announce(c, fresh[i]);
    }
}

/* The refresher: refresh() every FERRY__CLU_REFRESH_MS until the close. */
static void *refresh_main(void *arg)
{
    ferry_client *c = arg;
    struct ferry__cluster *k = ferry__clu(c);
    pthread_mutex_lock(&c->mu);
    while (!k->stop_refresh) {
        int64_t at = ferry__now_ms() + FERRY__CLU_REFRESH_MS;
        while (!k->stop_refresh && ferry__now_ms() < at) {
            /* c->cond's clock is CLOCK_MONOTONIC, as ferry__now_ms(). */
            struct timespec ts = {.tv_sec = at / 1000, .tv_nsec = (long)(at % 1000) * 1000000};
            pthread_cond_timedwait(&c->cond, &c->mu, &ts);
        }
        if (!k->stop_refresh) {
            pthread_mutex_unlock(&c->mu);
            refresh(c);
            pthread_mutex_lock(&c->mu);
        }
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

int ferry__clu_detect(ferry_client *c, int64_t deadline)
{
    ferry_metadata md;
    memset(&md, 0, sizeof(md));
    int rc = ferry_admin_metadata(c, NULL, 0, remaining_ms(deadline), &md);
    if (rc != 0 || md.n_brokers == 0) {
        /* Not a cluster, or we cannot tell (an older broker, no admin
         * right): the list stays a failover list. */
        ferry__log(c, FERRY_LOG_DEBUG, "not in a cluster (%s)",
                   rc != 0 ? ferry_strerror(rc) : "no brokers");
        ferry_free(md.brokers);
        ferry_free(md.topics);
        return 0;
    }
    struct ferry__cluster *k = cluster_new(c, &md);
    ferry_free(md.brokers);
    ferry_free(md.topics);
    if (k == NULL) {
        ferry_client_close(c, 0);
        return -ENOMEM;
    }
    pthread_mutex_lock(&c->mu);
    k->is_loop = !c->has_thread;
    ferry__stop_io_thread(c);
    ferry__say_goodbye(c);
    __atomic_store_n(&c->clu, k, __ATOMIC_RELEASE);
    ferry__log(c, FERRY_LOG_INFO, "cluster: routing over %zu brokers", k->n_brokers);
    ferry__dispatch(c); /* what the facade's own connection queued (CONNECTED) */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    k->has_refresher = pthread_create(&k->refresher, NULL, refresh_main, c) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_mutex_unlock(&c->mu);
    return 0;
}

/* ---- publishing ------------------------------------------------------------- */

/* Wait a little for room in ch's window or outbound buffer. */
static void wait_room(ferry_client *ch)
{
    pthread_mutex_lock(&ch->mu);
    ferry__wait(ch, ferry__now_ms() + 20);
    pthread_mutex_unlock(&ch->mu);
}

/* A sync publish on ch: only on a connection that is up (else it would be
 * queued for the reconnect and outlive the call). */
static int publish_sync_on(ferry_client *ch, const ferry_pub *m, int64_t deadline,
                           uint64_t *seq_out)
{
    if (ferry_client_state(ch) != FERRY_STATE_CONNECTED) {
        return FERRY_ENOTREADY;
    }
    return ferry_publish_sync(ch, m, remaining_ms(deadline), seq_out);
}

static int publish_async_on(ferry_client *c, ferry_client *ch, const ferry_pub *m, ferry_pub_cb cb,
                            void *ud, uint64_t *id_out)
{
    if (cb == NULL) {
        return ferry_publish_async(ch, m, NULL, NULL, id_out);
    }
    size_t n = strlen(m->topic);
    struct pubctx *x = malloc(sizeof(*x) + n + 1);
    if (x == NULL) {
        return -ENOMEM;
    }
    x->c = c;
    x->cb = cb;
    x->ud = ud;
    memcpy(x->topic, m->topic, n + 1);
    int rc = ferry_publish_async(ch, m, on_child_ack, x, id_out);
    if (rc != 0) {
        free(x);
    }
    return rc;
}

int ferry__clu_publish(ferry_client *c, const ferry_pub *m, int mode, ferry_pub_cb cb, void *ud,
                       int timeout_ms, uint64_t *id_out)
{
    if (m == NULL || m->topic == NULL || !ferry__topic_valid(m->topic)) {
        return -EINVAL;
    }
    int in_cb = in_callback(c);
    if (mode == 2 && in_cb) {
        return -EDEADLK;
    }
    if (ferry_client_state(c) == FERRY_STATE_CLOSED) {
        return FERRY_ECLOSED;
    }
    /* A sync publish retries until its timeout; the others wait for an
     * owner lookup as long as a connect may take. */
    uint32_t wait_ms = c->opts.connect_timeout_ms > 0 ? c->opts.connect_timeout_ms : 5000;
    int64_t deadline = ferry__deadline(mode == 2 ? timeout_ms : (int)wait_ms);
    int rc;
    ferry_client *from = NULL; /* the child whose answer rc is */
    for (;;) {
        ferry_client *ch = NULL;
        from = NULL;
        rc = ferry__clu_route(c, m->topic, deadline, !in_cb, &ch);
        if (rc != 0) {
            break;
        }
        from = ch;
        rc = mode == 0   ? ferry_publish_msg(ch, m, id_out)
             : mode == 1 ? publish_async_on(c, ch, m, cb, ud, id_out)
                         : publish_sync_on(ch, m, deadline, id_out);
        if (rc == -EAGAIN && mode != 2 && !in_cb && c->opts.window_blocks &&
            ferry_client_state(c) != FERRY_STATE_CLOSED) {
            wait_room(ch);
            continue;
        }
        if (rc == FERRY_ENOTOWNER) {
            ferry__clu_forget(c, m->topic);
        }
        if (mode == 2 && ferry__now_ms() < deadline &&
            (rc == FERRY_ENOTOWNER || rc == FERRY_EUNAVAILABLE || rc == FERRY_ENOTREADY ||
             rc == FERRY_EDISCONNECTED)) {
            ferry__clu_backoff(deadline, rc == FERRY_ENOTOWNER ? 0 : 100);
            continue;
        }
        break;
    }
    if (rc == FERRY_ENOTREADY) {
        rc = FERRY_EUNAVAILABLE; /* the owner is not reachable now */
    }
    if (rc != 0 && rc != -EAGAIN) {
        char why[FERRY__ERRTEXT_CAP] = ""; /* the broker's own words, if any */
        if (from != NULL) {
            pthread_mutex_lock(&from->mu);
            if (from->err_code == rc) {
                snprintf(why, sizeof(why), "%s", from->err_text);
            }
            pthread_mutex_unlock(&from->mu);
        }
        pthread_mutex_lock(&c->mu);
        ferry__seterr(c, rc, "publish to %s: %s", m->topic, why[0] ? why : ferry_strerror(rc));
        pthread_mutex_unlock(&c->mu);
    }
    return rc;
}

size_t ferry__clu_inflight(ferry_client *c)
{
    ferry_client *kids[FERRY__CLU_MAX_BROKERS];
    size_t n = children_made(ferry__clu(c), kids), sum = 0;
    for (size_t i = 0; i < n; i++) {
        sum += ferry_client_inflight(kids[i]);
    }
    return sum;
}

uint64_t ferry__clu_duplicates(ferry_client *c)
{
    ferry_client *kids[FERRY__CLU_MAX_BROKERS];
    size_t n = children_made(ferry__clu(c), kids);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        sum += ferry_client_duplicates(kids[i]);
    }
    return sum;
}

/* ---- event-loop mode ---------------------------------------------------------- */

int ferry__clu_fd(ferry_client *c)
{
    return ferry__clu_is_loop(c) ? c->wake_fd : -EINVAL;
}

int ferry__clu_events(ferry_client *c)
{
    return ferry__clu_is_loop(c) ? POLLIN : -EINVAL;
}

int ferry__clu_timeout_ms(ferry_client *c)
{
    pthread_mutex_lock(&c->mu);
    int rc = ferry__clu_is_loop(c) && c->cb_head != NULL ? 0 : -1;
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int ferry__clu_process(ferry_client *c)
{
    if (!ferry__clu_is_loop(c)) {
        return -EINVAL;
    }
    pthread_mutex_lock(&c->mu);
    int rc = 0;
    if (ferry__in_callback(c)) {
        rc = -EDEADLK;
    } else {
        uint64_t n;
        ssize_t r = read(c->wake_fd, &n, sizeof(n)); /* before: a later push wakes again */
        (void)r;
        ferry__dispatch(c);
        rc = c->state == FERRY_STATE_CLOSED ? FERRY_ECLOSED : 0;
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* ---- flush, close, destroy ---------------------------------------------------- */

static int flush_all(ferry_client *c, int64_t deadline)
{
    ferry_client *kids[FERRY__CLU_MAX_BROKERS];
    size_t n = children_made(ferry__clu(c), kids);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        int r = ferry_flush(kids[i], remaining_ms(deadline));
        if (r != 0 && rc == 0) {
            rc = r;
        }
    }
    return rc;
}

int ferry__clu_flush(ferry_client *c, int timeout_ms)
{
    if (in_callback(c)) {
        return -EDEADLK;
    }
    if (ferry_client_state(c) == FERRY_STATE_CLOSED) {
        return FERRY_ECLOSED;
    }
    int rc = flush_all(c, ferry__deadline(timeout_ms));
    pthread_mutex_lock(&c->mu);
    if (ferry__clu_is_loop(c)) {
        ferry__dispatch(c); /* the completions of what was flushed, as a loop client's flush */
    }
    if (rc != 0) {
        ferry__seterr(c, rc, "flush: %s", ferry_strerror(rc));
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int ferry__clu_close(ferry_client *c, int timeout_ms)
{
    struct ferry__cluster *k = ferry__clu(c);
    pthread_mutex_lock(&c->mu);
    int rc = 0;
    if (ferry__clu_in_callback(c)) {
        rc = -EDEADLK;
    } else if (c->state == FERRY_STATE_CLOSED || c->is_closing) {
        rc = FERRY_ECLOSED;
    } else {
        c->is_closing = 1;
        k->stop_refresh = 1;
        pthread_cond_broadcast(&c->cond);
    }
    pthread_mutex_unlock(&c->mu);
    if (rc != 0) {
        return rc;
    }
    if (k->has_refresher) {
        pthread_join(k->refresher, NULL);
        k->has_refresher = 0;
    }
    rc = flush_all(c, ferry__deadline(timeout_ms));
    ferry_client *kids[FERRY__CLU_MAX_BROKERS];
    size_t n = children_made(k, kids);
    for (size_t i = 0; i < n; i++) {
        ferry_client_close(kids[i], 1);
    }
    pthread_mutex_lock(&c->mu);
    c->state = FERRY_STATE_CLOSED;
    ferry__clu_subs_closed(c);
    ferry__event(c, FERRY_EVENT_CLOSED, FERRY_ECLOSED, "client closed", 0, FERRY_REF_NONE, 0);
    pthread_cond_broadcast(&c->cond);
    ferry__dispatch(c);
    if (rc != 0) {
        ferry__seterr(c, rc, "close: %s", ferry_strerror(rc));
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void ferry__clu_destroy(ferry_client *c)
{
    struct ferry__cluster *k = ferry__clu(c);
    ferry__clu_close(c, 0);
    ferry_client *kids[FERRY__CLU_MAX_BROKERS];
    size_t n = children_made(k, kids);
    for (size_t i = 0; i < n; i++) {
        ferry_client_destroy(kids[i]);
    }
    __atomic_store_n(&c->clu, NULL, __ATOMIC_RELEASE);
    cluster_free(k);
}

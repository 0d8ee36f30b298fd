/*
 * cluster.c - the cluster view and the IO threads' questions to it
 * (cluster.h); the thread that keeps it is in cluster_ctl.c.
 *
 * The view maps each placed topic to its owner (a hash table, open
 * addressing) and knows the brokers and the controller. Placements never
 * change once made (phase 1 moves nothing), so an entry read once stays
 * true; the lease (lease_until) says whether this broker may act on its
 * own entries now.
 */
#include "cluster_int.h"
#include "log.h"
#include "topic.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t clu__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint32_t hash_name(const char *s, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    }
    return h;
}

struct clu_topic *clu__find(struct cluster *cl, const char *name, size_t len)
{
    if (cl->tab_cap == 0) {
        return NULL;
    }
    for (uint32_t i = hash_name(name, len) & (cl->tab_cap - 1);; i = (i + 1) & (cl->tab_cap - 1)) {
        struct clu_topic *e = &cl->tab[i];
        if (e->name == NULL) {
            return NULL;
        }
        if (e->name_len == len && memcmp(e->name, name, len) == 0) {
            return e;
        }
    }
}

static int grow(struct cluster *cl)
{
    uint32_t cap = cl->tab_cap ? cl->tab_cap * 2 : 64;
    struct clu_topic *t = calloc(cap, sizeof(*t));
    if (t == NULL) {
        return -ENOMEM;
    }
    for (uint32_t k = 0; k < cl->tab_cap; k++) {
        struct clu_topic *e = &cl->tab[k];
        if (e->name == NULL) {
            continue;
        }
        uint32_t i = hash_name(e->name, e->name_len) & (cap - 1);
        while (t[i].name != NULL) {
            i = (i + 1) & (cap - 1);
        }
        t[i] = *e;
    }
    free(cl->tab);
    cl->tab = t;
    cl->tab_cap = cap;
    return 0;
}

int clu__insert(struct cluster *cl, const char *name, size_t len, uint32_t owner, uint64_t epoch)
{
    if (clu__find(cl, name, len) != NULL) {
        return 0;
    }
    if ((cl->n_topics + 1) * 4 > cl->tab_cap * 3 && grow(cl) < 0) {
        return -ENOMEM;
    }
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        return -ENOMEM;
    }
    memcpy(copy, name, len);
    copy[len] = '\0';
    uint32_t i = hash_name(name, len) & (cl->tab_cap - 1);
    while (cl->tab[i].name != NULL) {
        i = (i + 1) & (cl->tab_cap - 1);
    }
    cl->tab[i] = (struct clu_topic){copy, (uint32_t)len, owner, epoch};
    cl->n_topics++;
    struct clu_bro *b = clu__broker(cl, owner);
    if (b != NULL) {
        b->n_topics++;
    }
    return 0;
}

struct clu_bro *clu__broker(struct cluster *cl, uint32_t id)
{
    for (uint32_t i = 0; i < cl->n_brokers; i++) {
        if (cl->brokers[i].id == id) {
            return &cl->brokers[i];
        }
    }
    return NULL;
}

void clu__recount(struct cluster *cl)
{
    for (uint32_t i = 0; i < cl->n_brokers; i++) {
        cl->brokers[i].n_topics = 0;
    }
    for (uint32_t k = 0; k < cl->tab_cap; k++) {
        struct clu_bro *b = cl->tab[k].name ? clu__broker(cl, cl->tab[k].owner) : NULL;
        if (b != NULL) {
            b->n_topics++;
        }
    }
}

static int is_plain(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

int clu__enc(const char *topic, size_t len, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    int all_dots = 1;
    for (size_t i = 0; i < len; i++) {
        all_dots &= topic[i] == '.';
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)topic[i];
        int keep = is_plain(c) && !(all_dots && c == '.') && c != '%';
        if (n + (keep ? 1 : 3) >= cap) {
            return -ENAMETOOLONG;
        }
        if (keep) {
            out[n++] = (char)c;
        } else {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    if (n >= cap) {
        return -ENAMETOOLONG;
    }
    out[n] = '\0';
    return 0;
}

static int unhex(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

int clu__dec(const char *enc, char *out, size_t cap, size_t *out_len)
{
    size_t n = 0;
    for (const char *p = enc; *p; p++) {
        if (n + 1 >= cap) {
            return -ENAMETOOLONG;
        }
        if (*p == '%') {
            int hi = unhex(p[1]), lo = hi < 0 ? -1 : unhex(p[2]);
            if (lo < 0) {
                return -EINVAL;
            }
            out[n++] = (char)(hi << 4 | lo);
            p += 2;
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
    *out_len = n;
    return 0;
}

/* ---- the IO threads' questions ------------------------------------------ */

static int is_leased(struct cluster *cl)
{
    return clu__now_ms() < atomic_load(&cl->lease_until);
}

/* Look topic up: 1 (and the verdict in *v) if placed, else 0. */
static int lookup(struct cluster *cl, const char *topic, size_t len, enum clu_verdict *v,
                  char *text, size_t text_cap, char *owner, size_t owner_cap)
{
    pthread_rwlock_rdlock(&cl->view_lock);
    struct clu_topic *e = clu__find(cl, topic, len);
    if (e == NULL) {
        pthread_rwlock_unlock(&cl->view_lock);
        return 0;
    }
    uint32_t id = e->owner;
    struct clu_bro *b = clu__broker(cl, id);
    char addr[CLU_ADDR_MAX];
    snprintf(addr, sizeof(addr), "%s", b ? b->addr : "");
    int is_live = b != NULL && b->is_live;
    pthread_rwlock_unlock(&cl->view_lock);
    int tl = len > 200 ? 200 : (int)len;
    if (id == cl->self) {
        if (is_leased(cl)) {
            *v = CLU_SERVE;
        } else {
            *v = CLU_UNAVAILABLE;
            snprintf(text, text_cap,
                     "topic %.*s: this broker (%u) owns it but its ZooKeeper session is not "
                     "confirmed (fenced until it has registered again); retry",
                     tl, topic, cl->self);
        }
    } else if (is_live) {
        *v = CLU_NOT_OWNER;
        snprintf(owner, owner_cap, "%s", addr);
        snprintf(text, text_cap, "not the owner of topic %.*s: broker %u at %s owns it", tl, topic,
                 id, addr);
    } else {
        *v = CLU_UNAVAILABLE;
        snprintf(owner, owner_cap, "%s", addr);
        snprintf(text, text_cap,
                 "topic %.*s is unavailable: its owner, broker %u (%s), is down; retry", tl, topic,
                 id, addr[0] ? addr : "address unknown");
    }
    return 1;
}

/* Add topic to the wanted list (once). 0, or -EBUSY when the list is full. */
static int want(struct cluster *cl, const char *topic, size_t len, uint64_t *gen)
{
    int rc = 0;
    pthread_mutex_lock(&cl->req_mu);
    *gen = cl->placed_gen;
    uint32_t i;
    for (i = 0; i < cl->n_wanted; i++) {
        if (strlen(cl->wanted[i]) == len && memcmp(cl->wanted[i], topic, len) == 0) {
            break;
        }
    }
    if (i == cl->n_wanted) {
        char *copy = cl->n_wanted < CLU_WANTED_MAX ? malloc(len + 1) : NULL;
        if (copy == NULL) {
            rc = -EBUSY;
        } else {
            memcpy(copy, topic, len);
            copy[len] = '\0';
            cl->wanted[cl->n_wanted++] = copy;
        }
    }
    pthread_mutex_unlock(&cl->req_mu);
    return rc;
}

/* Wait until the view gained placements since gen, or until deadline (ms).
 * 0 if it did, -ETIMEDOUT. */
static int wait_placed(struct cluster *cl, uint64_t *gen, uint64_t deadline)
{
    int rc = 0;
    pthread_mutex_lock(&cl->req_mu);
    while (cl->placed_gen == *gen) {
        uint64_t now = clu__now_ms();
        if (now >= deadline) {
            rc = -ETIMEDOUT;
            break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t left = deadline - now;
        ts.tv_sec += (time_t)(left / 1000);
        ts.tv_nsec += (long)(left % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&cl->placed_cv, &cl->req_mu, &ts);
    }
    *gen = cl->placed_gen;
    pthread_mutex_unlock(&cl->req_mu);
    return rc;
}

enum clu_verdict clu_route(struct cluster *cl, const char *topic, size_t len, uint32_t wait_ms,
                           char *text, size_t text_cap, char *owner, size_t owner_cap)
{
    enum clu_verdict v = CLU_UNAVAILABLE;
    owner[0] = '\0';
    text[0] = '\0';
    /* Request inboxes are this broker's own: a requester subscribes to
     * its inbox where it is connected (CLUSTER.md). */
    if (len >= 7 && memcmp(topic, "_INBOX.", 7) == 0) {
        return CLU_SERVE;
    }
    if (lookup(cl, topic, len, &v, text, text_cap, owner, owner_cap)) {
        return v;
    }
    int tl = len > 200 ? 200 : (int)len;
    if (!is_leased(cl)) {
        snprintf(text, text_cap,
                 "topic %.*s cannot be placed now: this broker's ZooKeeper session is not "
                 "confirmed; retry",
                 tl, topic);
        return CLU_UNAVAILABLE;
    }
    char enc[CLU_ENC_MAX];
    if (clu__enc(topic, len, enc, sizeof(enc)) < 0) {
        snprintf(text, text_cap,
                 "topic %.*s... is too long to be placed in the cluster (at most %u bytes once "
                 "bytes outside [A-Za-z0-9._-] are written %%XX)",
                 tl, topic, CLU_ENC_MAX - 1);
        return CLU_UNAVAILABLE;
    }
    uint64_t gen;
    if (want(cl, topic, len, &gen) < 0) {
        snprintf(text, text_cap, "too many topics waiting for a placement; retry");
        return CLU_UNAVAILABLE;
    }
    coord_wake(cl->co);
    if (wait_ms == 0) {
        snprintf(text, text_cap, "topic %.*s is not placed yet", tl, topic);
        return CLU_PENDING;
    }
    uint64_t deadline = clu__now_ms() + wait_ms;
    while (wait_placed(cl, &gen, deadline) == 0) {
        if (lookup(cl, topic, len, &v, text, text_cap, owner, owner_cap)) {
            return v;
        }
    }
    snprintf(text, text_cap,
             "topic %.*s is not placed yet (no controller, or ZooKeeper is slow); retry", tl,
             topic);
    return CLU_UNAVAILABLE;
}

uint64_t clu_placed_gen(struct cluster *cl)
{
    pthread_mutex_lock(&cl->req_mu);
    uint64_t gen = cl->placed_gen;
    pthread_mutex_unlock(&cl->req_mu);
    return gen;
}

void clu_set_placed_hook(struct cluster *cl, void (*fn)(void *), void *arg)
{
    pthread_mutex_lock(&cl->req_mu);
    cl->placed_fn = fn;
    cl->placed_arg = arg;
    pthread_mutex_unlock(&cl->req_mu);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct clu_meta_topic *)a)->name,
                  ((const struct clu_meta_topic *)b)->name);
}

int clu_metadata(struct cluster *cl, const char *pattern, uint32_t max_topics, struct clu_meta *out)
{
    memset(out, 0, sizeof(*out));
    size_t plen = pattern ? strlen(pattern) : 0;
    snprintf(out->name, sizeof(out->name), "%s", cl->name);
    out->self_id = cl->self;
    out->is_serving = is_leased(cl);
    pthread_rwlock_rdlock(&cl->view_lock);
    out->controller_id = cl->controller_id;
    out->controller_epoch = cl->controller_epoch;
    int rc = 0;
    out->brokers = calloc(cl->n_brokers + 1, sizeof(*out->brokers));
    out->topics =
        calloc((cl->n_topics < max_topics ? cl->n_topics : max_topics) + 1, sizeof(*out->topics));
    if (out->brokers == NULL || out->topics == NULL) {
        rc = -ENOMEM;
        goto done;
    }
    for (uint32_t i = 0; i < cl->n_brokers; i++) {
        struct clu_meta_broker *b = &out->brokers[out->n_brokers++];
        b->id = cl->brokers[i].id;
        snprintf(b->addr, sizeof(b->addr), "%s", cl->brokers[i].addr);
        b->is_live = cl->brokers[i].is_live;
        b->n_topics = cl->brokers[i].n_topics;
    }
    for (uint32_t k = 0; k < cl->tab_cap; k++) {
        const struct clu_topic *e = &cl->tab[k];
        if (e->name == NULL || (plen && !topic_match(pattern, plen, e->name, e->name_len))) {
            continue;
        }
        if (out->n_topics == max_topics) {
            out->is_truncated = 1;
            break;
        }
        struct clu_meta_topic *t = &out->topics[out->n_topics];
        if ((t->name = strdup(e->name)) == NULL) {
            rc = -ENOMEM;
            break;
        }
        t->owner = e->owner;
        t->epoch = e->epoch;
        out->n_topics++;
    }
done:
    pthread_rwlock_unlock(&cl->view_lock);
    if (rc < 0) {
        clu_meta_free(out);
        return rc;
    }
    qsort(out->topics, out->n_topics, sizeof(*out->topics), by_name);
    return 0;
}

void clu_meta_free(struct clu_meta *m)
{
    for (uint32_t i = 0; i < m->n_topics; i++) {
        free(m->topics[i].name);
    }
    free(m->topics);
    free(m->brokers);
    memset(m, 0, sizeof(*m));
}

/* ---- life cycle --------------------------------------------------------- */

void clu__free(struct cluster *cl)
{
    coord_close(cl->co);
    for (uint32_t k = 0; k < cl->tab_cap; k++) {
        free(cl->tab[k].name);
    }
    free(cl->tab);
    free(cl->brokers);
    for (uint32_t i = 0; i < cl->n_wanted; i++) {
        free(cl->wanted[i]);
    }
    pthread_rwlock_destroy(&cl->view_lock);
    pthread_mutex_destroy(&cl->req_mu);
    pthread_cond_destroy(&cl->placed_cv);
    free(cl);
}

int clu_start(const struct clu_config *cfg, struct cluster **out, char *err, size_t err_len)
{
    struct cluster *cl = calloc(1, sizeof(*cl));
    if (cl == NULL) {
        snprintf(err, err_len, "out of memory");
        return -ENOMEM;
    }
    pthread_rwlock_init(&cl->view_lock, NULL);
    pthread_mutex_init(&cl->req_mu, NULL);
    pthread_cond_init(&cl->placed_cv, NULL);
    atomic_init(&cl->lease_until, 0);
    atomic_init(&cl->is_stopping, 0);
    snprintf(cl->name, sizeof(cl->name), "%s", cfg->name);
    snprintf(cl->zk, sizeof(cl->zk), "%s", cfg->zookeeper);
    snprintf(cl->advertise, sizeof(cl->advertise), "%s", cfg->advertise);
    snprintf(cl->data_dir, sizeof(cl->data_dir), "%s", cfg->data_dir);
    snprintf(cl->base, sizeof(cl->base), "/ferry/%s", cfg->name);
    cl->self = cfg->broker_id;
    cl->session_ms = cfg->session_ms;
    int rc = coord_open(cl->zk, cl->session_ms, &cl->co);
    if (rc < 0) {
        if (rc == -ENOTSUP) {
            snprintf(err, err_len,
                     "ferryd was built without cluster mode (ZooKeeper's C client, Debian "
                     "libzookeeper-mt-dev, was not found): remove `cluster` or rebuild");
        } else {
            snprintf(err, err_len, "cannot start a ZooKeeper session with %s: %s", cl->zk,
                     strerror(-rc));
        }
        clu__free(cl);
        return rc;
    }
    if ((rc = clu__join(cl, cfg->start_ms, err, err_len)) < 0) {
        clu__free(cl);
        return rc;
    }
    if ((rc = pthread_create(&cl->thread, NULL, clu__thread, cl)) != 0) {
        snprintf(err, err_len, "cannot start the cluster thread: %s", strerror(rc));
        clu__free(cl);
        return -rc;
    }
    cl->is_started = 1;
    *out = cl;
    return 0;
}

void clu_stop(struct cluster *cl)
{
    if (cl == NULL) {
        return;
    }
    if (cl->is_started) {
        atomic_store(&cl->is_stopping, 1);
        coord_wake(cl->co);
        pthread_join(cl->thread, NULL);
    }
    clu__free(cl); /* closing the session removes the registration at once */
}

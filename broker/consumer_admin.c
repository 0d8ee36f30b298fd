/*
 * consumer_admin.c - durable consumers for administrators: the stored
 * record's checks (ferryd --verify), the listing (ferry consumers),
 * deletion (ferry consumer delete) and the idle reaper (consumer_max_idle).
 * The delivery paths are in consumer.c.
 */
#include "consumer.h"
#include "consumer_int.h"
#include "ferry.h"
#include "log.h"
#include "topic.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cons_rec_decode(const void *value, size_t len, struct cons_rec *out, char *why, size_t why_len)
{
    const unsigned char *v = value;
    if (len < 2 || (v[0] != 'D' && v[0] != 'W') || (v[0] == 'D' && len < REC_HDR)) {
        snprintf(why, why_len, "not a consumer record (%zu bytes, bad magic)", len);
        return FERRY_ESTORAGE;
    }
    if (v[1] != 1 && v[1] != 2) {
        snprintf(why, why_len, "record version %u is not known here", v[1]);
        return FERRY_ESTORAGE;
    }
    const char *owner;
    size_t olen, body;
    if (cons__rec_owner(v, len, &owner, &olen, &body, why, why_len) < 0) {
        return FERRY_ESTORAGE;
    }
    if (v[0] == 'W') {
        if (len != body) {
            snprintf(why, why_len, "wildcard durable record of %zu bytes, not %zu", len, body);
            return FERRY_ESTORAGE;
        }
        struct cons_rec r = {
            .is_root = 1, .start_ns = (int64_t)cons__le64_get(v + 4), .next_seq = 1};
        memcpy(r.owner, owner ? owner : "", olen);
        if (r.start_ns < 0) {
            snprintf(why, why_len, "wildcard durable starts before 1970 (%lld)",
                     (long long)r.start_ns);
            return FERRY_ESTORAGE;
        }
        *out = r;
        return 0;
    }
    struct cons_rec r = {.next_seq = cons__le64_get(v + 4), .n_pending = cons__le32_get(v + 12)};
    memcpy(r.owner, owner ? owner : "", olen);
    if ((len - body) % REC_ENT != 0 || (len - body) / REC_ENT != r.n_pending) {
        snprintf(why, why_len, "record of %zu bytes does not hold the %u entries it counts", len,
                 r.n_pending);
        return FERRY_ESTORAGE;
    }
    if (r.next_seq < 1) {
        snprintf(why, why_len, "next_seq is 0");
        return FERRY_ESTORAGE;
    }
    uint64_t prev = 0;
    for (uint32_t i = 0; i < r.n_pending; i++) {
        const unsigned char *e = v + body + (size_t)i * REC_ENT;
        uint64_t seq = cons__le64_get(e);
        uint32_t n_deliv = cons__le32_get(e + 8);
        if (seq <= prev || seq >= r.next_seq) {
            snprintf(why, why_len,
                     "pending entry %u: sequence %llu not strictly increasing in 1..%llu", i,
                     (unsigned long long)seq, (unsigned long long)(r.next_seq - 1));
            return FERRY_ESTORAGE;
        }
        if (n_deliv < 1) {
            snprintf(why, why_len, "pending sequence %llu: delivery count 0",
                     (unsigned long long)seq);
            return FERRY_ESTORAGE;
        }
        if (i == 0) {
            r.first_pending = seq;
        }
        if (n_deliv > 1) {
            r.n_redelivered++;
        }
        prev = seq;
    }
    *out = r;
    return 0;
}

int cons_rec_check(void *ctx, const char *key, size_t key_len, const void *value, size_t value_len,
                   const struct store_topic_info *topic, char *why, size_t why_len)
{
    (void)ctx;
    struct cons_key kp;
    const char *bad;
    if (cons__key_split(key, key_len, &kp) != 0) {
        snprintf(why, why_len, "key has no NUL between topic and name");
        return 1;
    }
    if (kp.is_root || kp.pattern != NULL) {
        const char *pat = kp.is_root ? kp.topic : kp.pattern;
        size_t pl = kp.is_root ? kp.topic_len : kp.pattern_len;
        if (topic_validate(pat, pl, 1, STORE_TOPIC_MAX, 255, &bad) != 0) {
            snprintf(why, why_len, "key's pattern is not a pattern: %s", bad);
            return 1;
        }
    }
    if (!kp.is_root && topic_validate(kp.topic, kp.topic_len, 0, STORE_TOPIC_MAX, 255, &bad) != 0) {
        snprintf(why, why_len, "key's topic is not a topic name: %s", bad);
        return 1;
    }
    if (kp.pattern != NULL && !topic_match(kp.pattern, kp.pattern_len, kp.topic, kp.topic_len)) {
        snprintf(why, why_len, "key's topic does not match its pattern");
        return 1;
    }
    if (topic_validate(kp.name, kp.name_len, 0, CONS_NAME_MAX, 1, &bad) != 0) {
        snprintf(why, why_len, "key's durable name is not one token of at most %d bytes: %s",
                 CONS_NAME_MAX, bad);
        return 1;
    }
    struct cons_rec r;
    if (cons_rec_decode(value, value_len, &r, why, why_len) != 0) {
        return 1;
    }
    if (r.is_root != kp.is_root) {
        snprintf(why, why_len, "%s",
                 kp.is_root ? "a wildcard durable's key holds a position"
                            : "a position's key holds a wildcard durable");
        return 1;
    }
    if (r.is_root) {
        return 0;
    }
    /* A topic that was never published has no record; a durable may wait on
     * it (at 1, nothing delivered). */
    uint64_t last = topic ? topic->last_seq : 0;
    if (r.next_seq > last + 1) {
        if (topic == NULL) {
            snprintf(why, why_len, "next_seq %llu but the topic is not in the store",
                     (unsigned long long)r.next_seq);
        } else {
            snprintf(why, why_len, "next_seq %llu beyond the topic's last sequence %llu + 1",
                     (unsigned long long)r.next_seq, (unsigned long long)last);
        }
        return 1;
    }
    return 0;
}

struct info_vec {
    struct cons_info *v;
    size_t n, cap;
    size_t n_mem; /* v[0 .. n_mem): in memory, sorted by key */
    int (*match)(void *, const char *, size_t);
    void *ctx;
    int rc;
};

static struct cons_info *info_push(struct info_vec *iv)
{
    if (iv->n == iv->cap) {
        size_t cap = iv->cap ? iv->cap * 2 : 16;
        struct cons_info *v = realloc(iv->v, cap * sizeof(*v));
        if (v == NULL) {
            iv->rc = -ENOMEM;
            return NULL;
        }
        iv->v = v;
        iv->cap = cap;
    }
    struct cons_info *ci = &iv->v[iv->n++];
    memset(ci, 0, sizeof(*ci));
    return ci;
}

static void info_key(struct cons_info *ci, const char *key, size_t key_len)
{
    struct cons_key kp;
    cons__key_split(key, key_len, &kp);
    snprintf(ci->topic, sizeof(ci->topic), "%.*s", (int)kp.topic_len, kp.topic);
    snprintf(ci->name, sizeof(ci->name), "%.*s", (int)kp.name_len, kp.name);
    snprintf(ci->pattern, sizeof(ci->pattern), "%.*s", (int)kp.pattern_len,
             kp.pattern ? kp.pattern : "");
    ci->is_root = kp.is_root;
    ci->key_len = key_len < sizeof(ci->key) ? key_len : sizeof(ci->key);
    memcpy(ci->key, key, ci->key_len);
}

/* By key bytes: topic then name, a wildcard durable's positions right after
 * it (its key is theirs up to a NUL). */
static int key_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    return c != 0 ? c : (al > bl) - (al < bl);
}

static int info_cmp(const void *a, const void *b)
{
    const struct cons_info *x = a, *y = b;
    return key_cmp(x->key, x->key_len, y->key, y->key_len);
}

/* Inside a store read: only records not in memory (those are fresher). */
static int list_store_cb(void *ctx, const char *key, size_t key_len, const void *value,
                         size_t value_len)
{
    struct info_vec *iv = ctx;
    struct cons_key kp;
    if (cons__key_split(key, key_len, &kp) != 0 || !iv->match(iv->ctx, kp.topic, kp.topic_len)) {
        return 0;
    }
    size_t lo = 0, hi = iv->n_mem;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(iv->v[mid].key, iv->v[mid].key_len, key, key_len);
        if (c == 0) {
            return 0;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    struct cons_info *ci = info_push(iv);
    if (ci == NULL) {
        return 1;
    }
    char why[160];
    if (cons_info_from_record(key, key_len, value, value_len, ci, NULL, why, sizeof(why)) != 0) {
        iv->n--; /* corrupt: ferryd --verify names it */
    }
    return 0;
}

int cons_info_from_record(const char *key, size_t key_len, const void *value, size_t value_len,
                          struct cons_info *out, struct cons_rec *rec, char *why, size_t why_len)
{
    struct cons_rec r;
    struct cons_key kp;
    if (cons__key_split(key, key_len, &kp) != 0) {
        snprintf(why, why_len, "key has no NUL between topic and name");
        return FERRY_ESTORAGE;
    }
    if (cons_rec_decode(value, value_len, &r, why, why_len) != 0) {
        return FERRY_ESTORAGE;
    }
    memset(out, 0, sizeof(*out));
    info_key(out, key, key_len);
    out->next_seq = r.next_seq;
    out->n_pending = r.n_pending;
    out->n_redelivered = r.n_redelivered;
    out->ack_floor = r.first_pending ? r.first_pending - 1 : r.next_seq - 1;
    if (rec != NULL) {
        *rec = r;
    }
    return 0;
}

int cons_reg_list(struct cons_reg *r, int (*match)(void *ctx, const char *topic, size_t len),
                  void *ctx, struct cons_info **out, size_t *n_out)
{
    struct info_vec iv = {.match = match, .ctx = ctx};
    /* Memory first: a snapshot under the registry's lock, then the store
     * without any lock held (no store call under the registry's lock:
     * consumer.h, THREADS). */
    pthread_mutex_lock(&r->lock);
    for (uint32_t i = 0; i < r->n && iv.rc == 0; i++) {
        struct consumer *k = r->v[i];
        if (k == NULL || !match(ctx, k->topic, k->topic_len)) {
            continue;
        }
        struct cons_info *ci = info_push(&iv);
        if (ci == NULL) {
            break;
        }
        info_key(ci, k->key, k->key_len);
        if (k->is_deleted) {
            /* Its record may still be in the store: the entry hides it. */
            ci->is_deleted = 1;
            continue;
        }
        ci->is_loaded = 1;
        ci->n_holders = k->n_holders;
        if (k->n_holders > 0) {
            snprintf(ci->held_by, sizeof(ci->held_by), "%s", k->holders[0].who);
        }
        ci->idle_since_ms = k->idle_since_ms;
        if (k->n_holders > 0) {
            snprintf(ci->group, sizeof(ci->group), "%s", k->group);
        }
        pthread_mutex_lock(&k->lock);
        ci->next_seq = k->next_seq;
        ci->n_pending = k->n_live;
        ci->n_redeliveries = k->n_redeliveries;
        ci->n_dead_letters = k->n_dead_letters;
        ci->ack_floor = k->next_seq - 1;
        int is_first = 1;
        for (uint32_t j = k->head; j < k->n; j++) {
            if (k->p[j].is_done) {
                continue;
            }
            if (is_first) {
                ci->ack_floor = k->p[j].seq - 1;
                is_first = 0;
            }
            if (k->p[j].n_deliv > 1) {
                ci->n_redelivered++;
            }
        }
        pthread_mutex_unlock(&k->lock);
    }
    pthread_mutex_unlock(&r->lock);
    if (iv.n > 0) { /* qsort(NULL, 0) is undefined */
        qsort(iv.v, iv.n, sizeof(*iv.v), info_cmp);
    }
    iv.n_mem = iv.n;
    if (iv.rc == 0 && r->st != NULL) {
        int rc = store_consumers_foreach(r->st, NULL, 0, list_store_cb, &iv);
        if (rc < 0 && iv.rc == 0) {
            iv.rc = rc;
        }
    }
    if (iv.rc != 0) {
        free(iv.v);
        return iv.rc;
    }
    size_t n = 0;
    for (size_t i = 0; i < iv.n; i++) {
        if (!iv.v[i].is_deleted) {
            iv.v[n++] = iv.v[i];
        }
    }
    if (n > 0) {
        qsort(iv.v, n, sizeof(*iv.v), info_cmp);
    }
    *out = iv.v;
    *n_out = n;
    return 0;
}

/* Room in r->v for more entries. r->lock held. */
static int reg_reserve(struct cons_reg *r, uint32_t more)
{
    if (r->cap - r->n >= more) {
        return 0;
    }
    uint32_t cap = r->cap ? r->cap : 16;
    while (cap - r->n < more) {
        cap *= 2;
    }
    struct consumer **nv = realloc(r->v, cap * sizeof(*nv));
    if (nv == NULL) {
        return -ENOMEM;
    }
    r->v = nv;
    r->cap = cap;
    return 0;
}

/* Register k, a tombstone for a durable only in the store: its deletion
 * goes to the writer like any other change. r->lock held, room reserved. */
static void tombstone_add(struct cons_reg *r, struct consumer *k)
{
    r->v[r->n++] = k;
    k->id = r->n;
    k->reg = r;
}

/* Mark k deleted (dirty: the writer removes its record). r->lock held. */
static void mark_deleted(struct consumer *k)
{
    pthread_mutex_lock(&k->lock);
    k->is_deleted = 1;
    k->is_dirty = 1;
    pthread_mutex_unlock(&k->lock);
}

/* The keys of a wildcard durable's positions in the store, and a
 * tombstone made ready for each (taken by delete_positions, or freed). */
struct key_list {
    char **v;
    size_t *len;
    struct consumer **tomb;
    size_t n, cap;
    size_t prefix_len;
    int rc;
};

static int key_list_cb(void *ctx, const char *key, size_t key_len, const void *value,
                       size_t value_len)
{
    (void)value;
    (void)value_len;
    struct key_list *kl = ctx;
    if (key_len <= kl->prefix_len) {
        return 0;
    }
    if (kl->n == kl->cap) {
        size_t cap = kl->cap ? kl->cap * 2 : 16;
        char **v = realloc(kl->v, cap * sizeof(*v));
        if (v != NULL) {
            kl->v = v;
        }
        size_t *len = v ? realloc(kl->len, cap * sizeof(*len)) : NULL;
        if (len != NULL) {
            kl->len = len;
        }
        struct consumer **tomb = len ? realloc(kl->tomb, cap * sizeof(*tomb)) : NULL;
        if (tomb == NULL) {
            kl->rc = -ENOMEM;
            return 1;
        }
        kl->tomb = tomb;
        kl->cap = cap;
    }
    char *copy = malloc(key_len);
    struct consumer *k = copy ? cons__new(key, key_len) : NULL;
    if (k == NULL) {
        free(copy);
        kl->rc = -ENOMEM;
        return 1;
    }
    memcpy(copy, key, key_len);
    kl->v[kl->n] = copy;
    kl->tomb[kl->n] = k;
    kl->len[kl->n++] = key_len;
    return 0;
}

static void key_list_free(struct key_list *kl)
{
    for (size_t i = 0; i < kl->n; i++) {
        free(kl->v[i]);
        if (kl->tomb[i] != NULL) {
            cons__free(kl->tomb[i]);
        }
    }
    free(kl->v);
    free(kl->len);
    free(kl->tomb);
}

/* A wildcard durable's positions (key: the root's key, NUL, a topic) go
 * with it: those in memory (their holders are the root's, detached with
 * it) and those only in the store (listed in kl). r->lock held, room
 * reserved for kl->n tombstones. */
static void delete_positions(struct cons_reg *r, const char *key, size_t key_len,
                             struct key_list *kl)
{
    for (uint32_t i = 0; i < r->n; i++) {
        struct consumer *k = r->v[i];
        if (k == NULL || k->is_deleted || k->pattern == NULL || k->key_len <= key_len ||
            k->key[key_len] != '\0' || memcmp(k->key, key, key_len) != 0) {
            continue;
        }
        k->is_detaching = k->n_holders > 0 || k->is_detaching;
        k->n_holders = 0;
        mark_deleted(k);
    }
    for (size_t i = 0; i < kl->n; i++) {
        if (cons__reg_find(r, kl->v[i], kl->len[i]) == NULL &&
            !cons__reg_has_deleted(r, kl->v[i], kl->len[i])) {
            tombstone_add(r, kl->tomb[i]);
            mark_deleted(kl->tomb[i]);
            kl->tomb[i] = NULL;
        }
    }
}

/* cons_reg_delete(), and the reaper's delete: with idle_min_ms > 0 a durable
 * in memory goes only if nobody held it for that long at now_ms (else
 * -EAGAIN), checked under the registry's lock so a bind racing the reaper
 * wins. A wildcard durable's positions go with it, in the same critical
 * section (a bind that comes after finds nothing of it). */
static int reg_delete(struct cons_reg *r, const char *topic, size_t topic_len, const char *name,
                      size_t name_len, int force, uint64_t idle_min_ms, uint64_t now_ms,
                      struct cons_detach **holders, uint32_t *n_holders)
{
    char key[STORE_CONSUMER_KEY_MAX + 1];
    size_t key_len = topic_len + 1 + name_len;
    if (topic_len == 0 || name_len == 0 || name_len > CONS_NAME_MAX ||
        key_len + 1 > STORE_CONSUMER_KEY_MAX) {
        return FERRY_EINVAL;
    }
    memcpy(key, topic, topic_len);
    key[topic_len] = '\0';
    memcpy(key + topic_len + 1, name, name_len);
    int is_root = topic_has_wildcard(topic, topic_len);
    struct cons_detach *hv = NULL;
    uint32_t nh = 0;
    int ret = 0, need_wake = 0;
    /* Is there a record? Asked before the registry lock is taken (no store
     * call under it, consumer.h THREADS); what it answers for is checked
     * again under the lock. */
    void *v = NULL;
    size_t vlen = 0;
    int in_store = r->st ? store_consumer_get(r->st, key, key_len, &v, &vlen) : FERRY_ENOTOPIC;
    free(v);
    struct key_list kl = {.prefix_len = key_len + 1};
    if (is_root && r->st != NULL) {
        key[key_len] = '\0';
        int rc = store_consumers_foreach(r->st, key, key_len + 1, key_list_cb, &kl);
        if (rc < 0 || kl.rc < 0) {
            key_list_free(&kl);
            return rc < 0 ? rc : kl.rc;
        }
    }
    struct consumer *root_tomb = cons__new(key, key_len);
    pthread_mutex_lock(&r->lock);
    if (root_tomb == NULL || reg_reserve(r, 1 + (uint32_t)kl.n) < 0) {
        ret = -ENOMEM;
        goto out_unlock;
    }
    struct consumer *k = cons__reg_find(r, key, key_len);
    if (k == NULL) {
        int rc = cons__reg_has_deleted(r, key, key_len) ? FERRY_ENOTOPIC : in_store;
        if (rc != 0) {
            ret = rc;
            goto out_unlock;
        }
        k = root_tomb;
        root_tomb = NULL;
        tombstone_add(r, k);
    } else if (idle_min_ms > 0 && k->n_holders == 0 && now_ms - k->idle_since_ms < idle_min_ms) {
        ret = -EAGAIN; /* used again since the reaper looked */
        goto out_unlock;
    } else if (k->n_holders > 0) {
        if (!force) {
            ret = -EBUSY;
            goto out_unlock;
        }
        hv = malloc(k->n_holders * sizeof(*hv));
        if (hv == NULL) {
            ret = -ENOMEM;
            goto out_unlock;
        }
        for (uint32_t i = 0; i < k->n_holders; i++) {
            hv[i].holder_ref = k->holders[i].ref;
            hv[i].sub_id = k->holders[i].sub_id;
            hv[i].id = k->id;
        }
        nh = k->n_holders;
        /* Their cons_unbind() finds nothing to remove: they are gone. */
        k->n_holders = 0;
        k->is_detaching = 1; /* never released: see cons_reg_release_idle() */
    }
    if (is_root) {
        delete_positions(r, key, key_len, &kl);
    }
    mark_deleted(k);
    need_wake = atomic_exchange(&r->is_dirty, 1) == 0;
    if (idle_min_ms > 0) {
        log_info("durable %s on %s removed: nobody held it for %llu ms (consumer_max_idle)",
                 k->name, k->topic, (unsigned long long)idle_min_ms);
    } else {
        log_info("durable %s on %s deleted by an administrator%s", k->name, k->topic,
                 nh ? " (its holders were detached)" : "");
    }
out_unlock:
    pthread_mutex_unlock(&r->lock);
    if (root_tomb != NULL) {
        cons__free(root_tomb);
    }
    key_list_free(&kl);
    cons__wake(r, need_wake);
    if (ret == 0) {
        *holders = hv;
        *n_holders = nh;
    }
    return ret;
}

int cons_reg_delete(struct cons_reg *r, const char *topic, size_t topic_len, const char *name,
                    size_t name_len, int force, struct cons_detach **holders, uint32_t *n_holders)
{
    return reg_delete(r, topic, topic_len, name, name_len, force, 0, 0, holders, n_holders);
}

static int match_all(void *ctx, const char *topic, size_t len)
{
    (void)ctx;
    (void)topic;
    (void)len;
    return 1;
}

int cons_reg_expire(struct cons_reg *r, uint64_t max_idle_ms, uint64_t now_ms,
                    uint64_t store_idle_since_ms)
{
    struct cons_info *v = NULL;
    size_t n = 0;
    int rc = cons_reg_list(r, match_all, NULL, &v, &n);
    if (rc < 0) {
        return rc;
    }
    int n_removed = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t since = v[i].is_loaded ? v[i].idle_since_ms : store_idle_since_ms;
        /* A wildcard durable's positions go with it (reg_delete). */
        if (v[i].pattern[0] != '\0' || v[i].n_holders > 0 || now_ms < since ||
            now_ms - since < max_idle_ms) {
            continue;
        }
        struct cons_detach *hv = NULL;
        uint32_t nh = 0;
        /* One only in the store was judged by store_idle_since_ms above; if
         * it was loaded meanwhile, reg_delete() judges its fresh idle time. */
        rc = reg_delete(r, v[i].topic, strlen(v[i].topic), v[i].name, strlen(v[i].name), 0,
                        max_idle_ms, now_ms, &hv, &nh);
        free(hv);
        if (rc == 0) {
            n_removed++;
        }
    }
    free(v);
    return n_removed;
}

struct cons_reaper {
    struct cons_reg *reg;
    uint64_t max_idle_ms;
    uint64_t started_ms; /* durables only in the store count as idle since */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int is_stopping; /* guarded by lock */
};

static void *reaper_main(void *arg)
{
    struct cons_reaper *rp = arg;
    log_thread_name_set("reaper");
    /* A quarter of the limit, within 10 ms .. 1 s: a durable goes at most
     * that much later than its limit. */
    uint64_t step = rp->max_idle_ms / 4;
    step = step < 10 ? 10 : step > 1000 ? 1000 : step;
    pthread_mutex_lock(&rp->lock);
    while (!rp->is_stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + step * 1000000u;
        ts.tv_sec += (time_t)(ns / 1000000000u);
        ts.tv_nsec = (long)(ns % 1000000000u);
        pthread_cond_timedwait(&rp->cond, &rp->lock, &ts);
        if (rp->is_stopping) {
            break;
        }
        pthread_mutex_unlock(&rp->lock);
        int rc = cons_reg_expire(rp->reg, rp->max_idle_ms, cons__mono_ms(), rp->started_ms);
        if (rc < 0 && rc != -EAGAIN) {
            log_warn("consumer_max_idle: cannot list durables: %s", server_strerror(rc));
        }
        pthread_mutex_lock(&rp->lock);
    }
    pthread_mutex_unlock(&rp->lock);
    return NULL;
}

int cons_reaper_start(struct cons_reg *r, uint64_t max_idle_ms, struct cons_reaper **out)
{
    if (max_idle_ms == 0) {
        return FERRY_EINVAL;
    }
    struct cons_reaper *rp = calloc(1, sizeof(*rp));
    if (rp == NULL) {
        return -ENOMEM;
    }
    rp->reg = r;
    rp->max_idle_ms = max_idle_ms;
    rp->started_ms = cons__mono_ms();
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rp->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&rp->lock, NULL);
    int rc = pthread_create(&rp->thread, NULL, reaper_main, rp);
    if (rc != 0) {
        pthread_cond_destroy(&rp->cond);
        pthread_mutex_destroy(&rp->lock);
        free(rp);
        return -rc;
    }
    *out = rp;
    return 0;
}

void cons_reaper_stop(struct cons_reaper *rp)
{
    if (rp == NULL) {
        return;
    }
    pthread_mutex_lock(&rp->lock);
    rp->is_stopping = 1;
    pthread_cond_signal(&rp->cond);
    pthread_mutex_unlock(&rp->lock);
    pthread_join(rp->thread, NULL);
    pthread_cond_destroy(&rp->cond);
    pthread_mutex_destroy(&rp->lock);
    free(rp);
}

static enum store_read_verdict first_time_cb(void *ctx, const struct store_msg *m)
{
    *(int64_t *)ctx = m->publish_time;
    return STORE_READ_STOP;
}

void cons_lag(struct store *st, const char *topic, uint64_t ack_floor, int64_t now_ns,
              uint64_t *msgs, uint64_t *ms)
{
    struct store_topic_info in;
    if (store_topic_info(st, topic, strlen(topic), &in) != 0 || in.last_seq <= ack_floor) {
        return;
    }
    *msgs = in.last_seq - ack_floor;
    int64_t when = INT64_MIN;
    struct store_read_result res;
    if (store_read(st, in.id, ack_floor + 1, 1, SIZE_MAX, first_time_cb, &when, &res) == 0 &&
        when != INT64_MIN && now_ns > when) {
        *ms = (uint64_t)(now_ns - when) / 1000000u;
    }
}

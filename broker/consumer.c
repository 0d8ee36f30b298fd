/*
 * consumer.c - durable consumers: see consumer.h.
 *
 * The pending set is an array sorted by sequence (claims only ever append:
 * next_seq grows), with a head index: acks mostly come for the oldest
 * entries, so a done entry is only marked, the head moves past done entries,
 * and the array is compacted when the dead prefix is large. Lookups are
 * binary searches; the deadline scan is linear over at most max_in_flight
 * entries and runs a few times a second.
 *
 * Stored records (little-endian), in the store's consumers table:
 *   a durable, and each position of a wildcard durable:
 *     u8 'D', u8 version, u16 owner_len, u64 next_seq, u32 n,
 *     owner_len bytes: the owner's name, n x (u64 seq, u32 n_deliv)
 *   a wildcard durable's root:
 *     u8 'W', u8 version, u16 owner_len, i64 start_ns,
 *     owner_len bytes: the owner's name
 *   Version 1: owner_len 0, owned by nobody (written for durables without
 *   an owner, so that a server without an auth file writes what versions
 *   before owners read). Version 2: owner_len 1..CONS_OWNER_MAX.
 * Keys: consumer_int.h, struct consumer.
 */
#include "consumer.h"

#include "codec.h"
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

static void le32_put(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

static void le64_put(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

uint32_t cons__le32_get(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        v |= (uint32_t)p[i] << (8 * i);
    }
    return v;
}

uint64_t cons__le64_get(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

int cons_reg_create(struct store *st, void (*waker)(void *), void *ctx, struct cons_reg **out)
{
    struct cons_reg *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return -ENOMEM;
    }
    r->st = st;
    r->waker = waker;
    r->ctx = ctx;
    pthread_mutex_init(&r->lock, NULL);
    atomic_init(&r->is_dirty, 0);
    *out = r;
    return 0;
}

void cons_reg_destroy(struct cons_reg *r)
{
    if (r == NULL) {
        return;
    }
    for (uint32_t i = 0; i < r->n; i++) {
        if (r->v[i] != NULL) {
            cons__free(r->v[i]);
        }
    }
    for (uint32_t i = 0; i < r->n_anon; i++) {
        cons__free(r->anon[i]);
    }
    free(r->v);
    free(r->anon);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

/* Mark k dirty (k->lock held) and remember to wake the writer. Returns 1 if
 * the registry was clean: the caller wakes the writer after unlocking. */
static int mark_dirty(struct cons_reg *r, struct consumer *k)
{
    if (k->is_anon) {
        return 0; /* lives and dies with its subscriptions: nothing to save */
    }
    if (k->is_deleted) {
        return 0; /* a record written now could overwrite a successor's */
    }
    k->is_dirty = 1;
    return atomic_exchange(&r->is_dirty, 1) == 0;
}

void cons__wake(struct cons_reg *r, int need)
{
    if (need && r->waker) {
        r->waker(r->ctx);
    }
}

static void opts_fill(struct cons_opts *d, const struct cons_opts *o)
{
    d->max_in_flight = o && o->max_in_flight ? o->max_in_flight : CONS_DEFAULT_MAX_IN_FLIGHT;
    if (d->max_in_flight > CONS_MAX_IN_FLIGHT_CAP) {
        d->max_in_flight = CONS_MAX_IN_FLIGHT_CAP;
    }
    d->ack_wait_ms = o && o->ack_wait_ms ? o->ack_wait_ms : CONS_DEFAULT_ACK_WAIT_MS;
    d->max_deliver = o && o->max_deliver ? o->max_deliver : CONS_DEFAULT_MAX_DELIVER;
    d->is_auto_ack = o ? o->is_auto_ack : 0;
}

static int pend_reserve(struct consumer *k, uint32_t more)
{
    if (k->head > 0 && (k->n + more > k->cap || k->head >= k->n / 2)) {
        memmove(k->p, k->p + k->head, (k->n - k->head) * sizeof(*k->p));
        k->n -= k->head;
        k->head = 0;
    }
    if (k->n + more <= k->cap) {
        return 0;
    }
    uint32_t cap = k->cap ? k->cap : 64;
    while (cap < k->n + more) {
        cap *= 2;
    }
    struct pend *v = realloc(k->p, cap * sizeof(*v));
    if (v == NULL) {
        return -ENOMEM;
    }
    k->p = v;
    k->cap = cap;
    return 0;
}

/* Index of seq among the candidates, or -1. */
static int64_t pend_find(const struct consumer *k, uint64_t seq)
{
    uint32_t lo = k->head, hi = k->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (k->p[mid].seq < seq) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < k->n && k->p[lo].seq == seq && !k->p[lo].is_done ? (int64_t)lo : -1;
}

static void pend_done(struct consumer *k, uint32_t i)
{
    k->p[i].is_done = 1;
    k->n_live--;
    while (k->head < k->n && k->p[k->head].is_done) {
        k->head++;
    }
    if (k->head == k->n) {
        k->head = k->n = 0;
    }
}

int cons__rec_owner(const unsigned char *v, size_t len, const char **owner, size_t *owner_len,
                    size_t *body, char *why, size_t why_len)
{
    size_t hdr = v[0] == 'W' ? REC_ROOT : REC_HDR;
    size_t olen = len >= 4 ? (size_t)v[2] | (size_t)v[3] << 8 : 0;
    if (len < hdr) {
        snprintf(why, why_len, "record of %zu bytes, shorter than its header", len);
        return -1;
    }
    if (v[1] == 1 ? olen != 0 : olen == 0 || olen > CONS_OWNER_MAX || len - hdr < olen) {
        snprintf(why, why_len, "owner of %zu bytes in a version %u record of %zu bytes", olen, v[1],
                 len);
        return -1;
    }
    for (size_t i = 0; i < olen; i++) {
        unsigned char ch = v[hdr + i];
        if (ch <= 0x20 || ch == 0x7f || ch == ':') {
            snprintf(why, why_len, "owner's name has a space, ':' or a control character");
            return -1;
        }
    }
    *owner = olen ? (const char *)v + hdr : NULL;
    *owner_len = olen;
    *body = hdr + olen;
    return 0;
}

static int state_decode(struct consumer *k, const unsigned char *v, size_t len)
{
    const char *owner;
    size_t olen, body;
    char why[128];
    if (len < 2 || v[0] != (k->is_root ? 'W' : 'D') || (v[1] != 1 && v[1] != 2) ||
        cons__rec_owner(v, len, &owner, &olen, &body, why, sizeof(why)) < 0) {
        return FERRY_ESTORAGE;
    }
    if (owner != NULL && k->owner == NULL && (k->owner = strndup(owner, olen)) == NULL) {
        return -ENOMEM;
    }
    if (k->is_root) {
        if (len != body) {
            return FERRY_ESTORAGE;
        }
        k->start_ns = (int64_t)cons__le64_get(v + 4);
        k->next_seq = 1;
        return 0;
    }
    uint64_t next = cons__le64_get(v + 4);
    uint32_t n = cons__le32_get(v + 12);
    if ((len - body) / REC_ENT != n || (len - body) % REC_ENT != 0) {
        return FERRY_ESTORAGE;
    }
    if (pend_reserve(k, n) < 0) {
        return -ENOMEM;
    }
    uint64_t prev = 0;
    for (uint32_t i = 0; i < n; i++) {
        const unsigned char *e = v + body + (size_t)i * REC_ENT;
        uint64_t seq = cons__le64_get(e);
        if (seq <= prev || seq >= next) {
            return FERRY_ESTORAGE;
        }
        prev = seq;
        struct pend *p = &k->p[k->n++];
        p->seq = seq;
        p->n_deliv = cons__le32_get(e + 8);
        p->deadline = 0; /* due at once for whoever binds */
        p->is_done = 0;
        p->is_dlq = 0;
        p->is_committing = 0;
        k->n_live++;
    }
    k->next_seq = next;
    return 0;
}

struct consumer *cons__reg_find(struct cons_reg *r, const char *key, size_t key_len)
{
    for (uint32_t i = 0; i < r->n; i++) {
        struct consumer *k = r->v[i];
        if (k != NULL && !k->is_deleted && k->key_len == key_len &&
            memcmp(k->key, key, key_len) == 0) {
            return k;
        }
    }
    return NULL;
}

uint64_t cons__mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int cons__reg_has_deleted(struct cons_reg *r, const char *key, size_t key_len)
{
    for (uint32_t i = 0; i < r->n; i++) {
        struct consumer *k = r->v[i];
        if (k != NULL && k->is_deleted && k->key_len == key_len &&
            memcmp(k->key, key, key_len) == 0) {
            return 1;
        }
    }
    return 0;
}

int cons__key_split(const char *key, size_t key_len, struct cons_key *out)
{
    const char *nul = memchr(key, '\0', key_len);
    size_t first = nul ? (size_t)(nul - key) : key_len;
    memset(out, 0, sizeof(*out));
    out->topic = key;
    out->topic_len = first;
    out->name = key + first + (nul != NULL);
    out->name_len = key_len - first - (nul != NULL);
    if (nul != NULL && topic_has_wildcard(key, first)) {
        /* A wildcard durable: its root, or (a second NUL) one position. An
         * anonymous consumer's name holds NULs, but its topic no wildcard. */
        const char *nul2 = memchr(out->name, '\0', out->name_len);
        out->is_root = nul2 == NULL;
        if (nul2 != NULL) {
            /* The topic follows the last NUL (a queue group's position:
             * pattern NUL NUL mode group NUL topic, see cons_bind()). */
            const char *last = key + key_len;
            while (last[-1] != '\0') {
                last--;
            }
            out->pattern = key;
            out->pattern_len = first;
            out->name_len = (size_t)(nul2 - out->name);
            out->topic = last;
            out->topic_len = key_len - (size_t)(last - key);
        }
    }
    return nul ? 0 : -1;
}

struct consumer *cons__new(const char *key, size_t key_len)
{
    struct consumer *k = calloc(1, sizeof(*k));
    if (k == NULL) {
        return NULL;
    }
    k->key = malloc(key_len + 1);
    if (k->key == NULL) {
        free(k);
        return NULL;
    }
    memcpy(k->key, key, key_len);
    k->key[key_len] = '\0';
    k->key_len = key_len;
    struct cons_key kp;
    cons__key_split(k->key, key_len, &kp);
    k->topic = kp.topic;
    k->topic_len = kp.topic_len;
    k->name = kp.name;
    k->name_len = kp.name_len;
    k->pattern = kp.pattern;
    k->pattern_len = kp.pattern_len;
    k->is_root = (uint8_t)kp.is_root;
    k->idle_since_ms = cons__mono_ms();
    pthread_mutex_init(&k->lock, NULL);
    return k;
}

void cons__free(struct consumer *k)
{
    pthread_mutex_destroy(&k->lock);
    free(k->left);
    free(k->p);
    free(k->holders);
    free(k->owner);
    free(k->key);
    free(k);
}

/* A subscription's own acks (cons_bind with name NULL): a consumer of its
 * own, or its queue group's shared one (key: topic, NUL, NUL, mode, group,
 * which no durable's key can be), starting at first_seq. r->lock held. */
static int anon_get(struct cons_reg *r, const char *key, size_t key_len, size_t group_len,
                    int is_root, uint64_t first_seq, struct consumer **out)
{
    struct consumer *k = NULL;
    for (uint32_t i = 0; group_len > 0 && i < r->n_anon; i++) {
        if (r->anon[i]->key_len == key_len && memcmp(r->anon[i]->key, key, key_len) == 0) {
            *out = r->anon[i];
            return 0;
        }
    }
    if (group_len > 0 && r->n_anon == r->anon_cap) {
        uint32_t cap = r->anon_cap ? r->anon_cap * 2 : 8;
        struct consumer **v = realloc(r->anon, cap * sizeof(*v));
        if (v == NULL) {
            return -ENOMEM;
        }
        r->anon = v;
        r->anon_cap = cap;
    }
    k = cons__new(key, key_len);
    if (k == NULL) {
        return -ENOMEM;
    }
    k->is_anon = 1;
    k->reg = r;
    k->next_seq = first_seq && !is_root ? first_seq : 1;
    if (is_root) {
        /* A queue group's root on a pattern (see cons_bind). */
        k->is_root = 1;
        k->pattern = NULL;
        k->topic_len = strnlen(key, key_len);
        k->start_ns = (int64_t)first_seq;
    }
    if (group_len > 0) {
        r->anon[r->n_anon++] = k;
    }
    *out = k;
    return 0;
}

/* A durable's state from the store (unless is_fresh), or a new one
 * starting at first_seq (a root: start_ns first_seq) (dirty: its start is
 * saved). owner: a new durable's owner (a position's: its root's owner,
 * which it keeps whatever it has stored). No lock held. */
static int cons_load(struct cons_reg *r, const char *key, size_t key_len, uint64_t first_seq,
                     int is_fresh, const char *owner, struct consumer **out)
{
    struct consumer *k = cons__new(key, key_len);
    if (k == NULL) {
        return -ENOMEM;
    }
    /* A position's owner is its root's, whatever its record says; a
     * stored durable's is its record's; a new one's is owner. */
    if (owner != NULL && k->pattern != NULL && (k->owner = strdup(owner)) == NULL) {
        cons__free(k);
        return -ENOMEM;
    }
    void *v = NULL;
    size_t vlen = 0;
    int rc =
        r->st && !is_fresh ? store_consumer_get(r->st, key, key_len, &v, &vlen) : FERRY_ENOTOPIC;
    if (rc == 0) {
        rc = state_decode(k, v, vlen);
        free(v);
        if (rc == FERRY_ESTORAGE) {
            log_error("durable %s on %s: stored state is corrupt", k->name, k->topic);
        }
    } else if (rc == FERRY_ENOTOPIC) {
        if (owner != NULL && k->owner == NULL && (k->owner = strdup(owner)) == NULL) {
            cons__free(k);
            return -ENOMEM;
        }
        k->next_seq = k->is_root || first_seq == 0 ? 1 : first_seq;
        k->start_ns = k->is_root ? (int64_t)first_seq : 0;
        k->is_dirty = 1;
        rc = 0;
    }
    if (rc != 0) {
        cons__free(k);
        return rc;
    }
    *out = k;
    return 0;
}

static int bind_key(struct cons_reg *r, const char *key, size_t key_len, int is_anon,
                    const char *group, size_t group_len, const struct cons_opts *o,
                    uint64_t first_seq, uint64_t holder_ref, uint64_t sub_id, const char *who,
                    const struct cons_user *u, struct consumer *root, struct consumer **out);

int cons_bind(struct cons_reg *r, const char *topic, size_t topic_len, const char *name,
              size_t name_len, const char *group, size_t group_len, const struct cons_opts *o,
              uint64_t first_seq, uint64_t holder_ref, uint64_t sub_id, const char *who,
              const struct cons_user *u, struct consumer **out)
{
    char key[STORE_CONSUMER_KEY_MAX + 1];
    int is_anon = name == NULL;
    size_t key_len = topic_len + 1 + (is_anon ? 2 + group_len : name_len);
    int is_wild = topic_has_wildcard(topic, topic_len);
    if (topic_len == 0 || (!is_anon && (name_len == 0 || name_len > CONS_NAME_MAX)) ||
        key_len > STORE_CONSUMER_KEY_MAX || group_len >= sizeof(((struct consumer *)0)->group) ||
        (u != NULL && (u->name == NULL || strlen(u->name) - 1 >= CONS_OWNER_MAX)) ||
        (is_anon && is_wild && (o == NULL || !o->is_auto_ack || group_len == 0))) {
        return FERRY_EINVAL;
    }
    memcpy(key, topic, topic_len);
    key[topic_len] = '\0';
    if (is_anon) {
        /* NUL (no durable name is empty), then the ack mode: a group with
         * explicit acks and one without never share a position. */
        key[topic_len + 1] = '\0';
        key[topic_len + 2] = o && o->is_auto_ack ? 'n' : 'e';
        memcpy(key + topic_len + 3, group, group_len);
    } else {
        memcpy(key + topic_len + 1, name, name_len);
    }
    return bind_key(r, key, key_len, is_anon, group, group_len, o, first_seq, holder_ref, sub_id,
                    who, is_anon ? NULL : u, NULL, out);
}

int cons_bind_member(struct cons_reg *r, struct consumer *root, const char *topic, size_t topic_len,
                     uint64_t first_seq, uint64_t holder_ref, uint64_t sub_id, const char *who,
                     struct consumer **out)
{
    char key[STORE_CONSUMER_KEY_MAX + 1];
    size_t key_len = root->key_len + 1 + topic_len;
    if (!root->is_root || topic_len == 0 || key_len > STORE_CONSUMER_KEY_MAX ||
        topic_has_wildcard(topic, topic_len)) {
        return FERRY_EINVAL;
    }
    memcpy(key, root->key, root->key_len);
    key[root->key_len] = '\0';
    memcpy(key + root->key_len + 1, topic, topic_len);
    /* The root's group and options (set by its holders' binds): read under
     * the registry's lock in bind_key. */
    return bind_key(r, key, key_len, root->is_anon, NULL, 0, NULL, first_seq, holder_ref, sub_id,
                    who, NULL, root, out);
}

int64_t cons_root_start_ns(struct consumer *root)
{
    pthread_mutex_lock(&root->lock);
    int64_t v = root->start_ns;
    pthread_mutex_unlock(&root->lock);
    return v;
}

/* cons_bind() and cons_bind_member() (root != NULL: its group and options
 * instead of group and o, its owner instead of u's; refused once it is
 * deleted). u NULL: no owner checked (no auth file, anonymous consumers,
 * positions). */
static int bind_key(struct cons_reg *r, const char *key, size_t key_len, int is_anon,
                    const char *group, size_t group_len, const struct cons_opts *o,
                    uint64_t first_seq, uint64_t holder_ref, uint64_t sub_id, const char *who,
                    const struct cons_user *u, struct consumer *root, struct consumer **out)
{
    int need_wake = 0;
    int ret = 0;
    char root_group[sizeof(root->group)];
    struct cons_opts root_o;
    pthread_mutex_lock(&r->lock);
    struct consumer *k = NULL;
    if (root != NULL) {
        if (root->is_deleted) {
            ret = FERRY_ENOTOPIC; /* deleted: its holders are being detached */
            goto out_unlock;
        }
        memcpy(root_group, root->group, sizeof(root_group));
        group = root_group;
        group_len = strlen(root_group);
        if (root->is_anon && group_len == 0) {
            ret = FERRY_EINVAL; /* only a queue group's root has positions */
            goto out_unlock;
        }
        pthread_mutex_lock(&root->lock);
        root_o = root->o;
        pthread_mutex_unlock(&root->lock);
        o = &root_o;
    }
    if (is_anon) {
        int is_root = root == NULL && topic_has_wildcard(key, strnlen(key, key_len));
        ret = anon_get(r, key, key_len, group_len, is_root, first_seq, &k);
        if (ret < 0) {
            goto out_unlock;
        }
    } else {
        k = cons__reg_find(r, key, key_len);
    }
    if (k == NULL) {
        /* Not in memory yet: load it, outside the registry lock (the store
         * writer takes the registry lock inside its open transaction, so a
         * store call must never wait under it), then look again: another
         * binder may have loaded it meanwhile. */
        /* A deleted predecessor's record may not be gone from the store
         * yet: the new durable starts fresh, not from it. */
        int is_fresh = cons__reg_has_deleted(r, key, key_len);
        pthread_mutex_unlock(&r->lock);
        struct consumer *nk = NULL;
        /* root->owner is immutable: read without its lock */
        const char *owner = root ? root->owner : u ? u->name : NULL;
        int rc = cons_load(r, key, key_len, first_seq, is_fresh, owner, &nk);
        pthread_mutex_lock(&r->lock);
        if (rc != 0) {
            ret = rc;
            goto out_unlock;
        }
        k = cons__reg_find(r, key, key_len);
        if (k != NULL) {
            cons__free(nk);
        } else {
            if (r->n == r->cap) {
                uint32_t cap = r->cap ? r->cap * 2 : 16;
                struct consumer **nv = realloc(r->v, cap * sizeof(*nv));
                if (nv == NULL) {
                    cons__free(nk);
                    ret = -ENOMEM;
                    goto out_unlock;
                }
                r->v = nv;
                r->cap = cap;
            }
            k = nk;
            r->v[r->n++] = k;
            k->id = r->n;
            k->reg = r;
            if (k->is_dirty) {
                need_wake = atomic_exchange(&r->is_dirty, 1) == 0;
            }
        }
    }
    /* OWNERS: checked before anything of k changes (its options, its
     * group, its deadlines), so a refused binder leaves no trace. */
    if (!cons_may_bind(k, u)) {
        ret = FERRY_EPERM;
        goto out_unlock;
    }
    if (k->n_holders > 0 &&
        (group_len == 0 || strlen(k->group) != group_len || memcmp(k->group, group, group_len))) {
        ret = -EBUSY;
        goto out_unlock;
    }
    if (k->n_holders == k->holders_cap) {
        uint32_t cap = k->holders_cap ? k->holders_cap * 2 : 2;
        struct holder *hv = realloc(k->holders, cap * sizeof(*hv));
        if (hv == NULL) {
            ret = -ENOMEM;
            goto out_unlock;
        }
        k->holders = hv;
        k->holders_cap = cap;
    }
    k->holders[k->n_holders].ref = holder_ref;
    k->holders[k->n_holders].sub_id = sub_id;
    snprintf(k->holders[k->n_holders].who, sizeof(k->holders[0].who), "%s", who ? who : "");
    pthread_mutex_lock(&k->lock);
    if (k->n_holders == 0) {
        memcpy(k->group, group, group_len);
        k->group[group_len] = '\0';
        /* Whoever held it before is gone: what it did not ack is due now. */
        for (uint32_t i = k->head; i < k->n; i++) {
            if (!k->p[i].is_dlq) {
                k->p[i].deadline = 0;
            }
        }
    }
    opts_fill(&k->o, o);
    pthread_mutex_unlock(&k->lock);
    k->n_holders++;
    *out = k;
out_unlock:
    if (ret < 0 && k != NULL && k->is_anon && k->n_holders == 0) {
        for (uint32_t i = 0; i < r->n_anon; i++) {
            if (r->anon[i] == k) {
                r->anon[i] = r->anon[--r->n_anon];
                break;
            }
        }
        cons__free(k);
    }
    pthread_mutex_unlock(&r->lock);
    cons__wake(r, need_wake);
    return ret;
}

void cons_unbind(struct cons_reg *r, struct consumer *k, uint64_t holder_ref, uint64_t sub_id)
{
    pthread_mutex_lock(&r->lock);
    for (uint32_t i = 0; i < k->n_holders; i++) {
        if (k->holders[i].ref == holder_ref && k->holders[i].sub_id == sub_id) {
            k->holders[i] = k->holders[--k->n_holders];
            if (k->n_holders == 0) {
                k->idle_since_ms = cons__mono_ms();
            }
            break;
        }
    }
    /* Unheld: the writer will free it once idle (cons_reg_release_idle);
     * wake it so that it starts looking. k may be freed once we unlock. */
    int is_unheld = !k->is_anon && k->n_holders == 0;
    int is_gone = k->is_anon && k->n_holders == 0;
    for (uint32_t i = 0; is_gone && i < r->n_anon; i++) {
        if (r->anon[i] == k) {
            r->anon[i] = r->anon[--r->n_anon];
            break;
        }
    }
    pthread_mutex_unlock(&r->lock);
    if (is_gone) {
        /* Its last subscription is gone: so are its unacked messages (a
         * subscription without a durable has no future to give them to). */
        cons__free(k);
    }
    cons__wake(r, is_unheld);
}

int cons_is_private(struct consumer *k)
{
    return k->is_anon && k->group[0] == '\0'; /* group: set at bind, never changed */
}

int cons_may_bind(const struct consumer *k, const struct cons_user *u)
{
    /* is_anon and owner are immutable */
    return u == NULL || k->is_anon || u->may_any || (k->owner && strcmp(k->owner, u->name) == 0);
}

const char *cons_owner(const struct consumer *k)
{
    return k->owner; /* immutable */
}

uint32_t cons_id(const struct consumer *k)
{
    return k->id;
}

enum cons_claim cons_claim(struct consumer *k, uint64_t seq, int allow_gap, uint64_t now,
                           uint64_t *missed)
{
    enum cons_claim res;
    int need_wake = 0;
    pthread_mutex_lock(&k->lock);
    if (seq < k->next_seq) {
        res = CONS_CLAIM_SKIP;
    } else if (seq > k->next_seq && !allow_gap) {
        res = CONS_CLAIM_GAP;
    } else if (k->n_live >= k->o.max_in_flight || pend_reserve(k, 1) < 0) {
        res = CONS_CLAIM_FULL;
    } else {
        if (missed) {
            *missed = seq - k->next_seq;
        }
        struct pend *p = &k->p[k->n++];
        p->seq = seq;
        p->deadline = now + k->o.ack_wait_ms;
        p->n_deliv = 1;
        p->is_done = 0;
        p->is_dlq = 0;
        p->is_committing = 0;
        k->n_live++;
        k->next_seq = seq + 1;
        /* Saved with the writer's next round: after a crash the message
         * comes again with its true attempt count. */
        need_wake = mark_dirty(k->reg, k);
        res = CONS_CLAIM_OK;
    }
    pthread_mutex_unlock(&k->lock);
    cons__wake(k->reg, need_wake);
    return res;
}

int cons_group_leave(struct consumer *k, uint64_t seq)
{
    int rc = 0;
    pthread_mutex_lock(&k->lock);
    if (k->n_left == CONS_GROUP_LEFT_MAX) {
        rc = -ENOSPC;
    } else if (k->n_left == k->left_cap) {
        uint32_t cap = k->left_cap ? k->left_cap * 2 : 64;
        uint64_t *v = realloc(k->left, cap * sizeof(*v));
        if (v == NULL) {
            rc = -ENOMEM;
        } else {
            k->left = v;
            k->left_cap = cap;
        }
    }
    if (rc == 0) {
        /* Members on several IO threads leave in nearly increasing order:
         * the insertion point is found from the end. */
        uint32_t i = k->n_left;
        while (i > 0 && k->left[i - 1] > seq) {
            i--;
        }
        memmove(&k->left[i + 1], &k->left[i], (k->n_left - i) * sizeof(*k->left));
        k->left[i] = seq;
        k->n_left++;
    }
    pthread_mutex_unlock(&k->lock);
    return rc;
}

size_t cons_group_take(struct consumer *k, uint64_t *seqs, size_t max)
{
    pthread_mutex_lock(&k->lock);
    size_t n = k->n_left < max ? k->n_left : max;
    if (n > 0) { /* k->left may be NULL: never pass it to memcpy then */
        memcpy(seqs, k->left, n * sizeof(*seqs));
        memmove(k->left, k->left + n, (k->n_left - n) * sizeof(*k->left));
        k->n_left -= (uint32_t)n;
    }
    pthread_mutex_unlock(&k->lock);
    return n;
}

uint64_t cons_next_seq(struct consumer *k)
{
    pthread_mutex_lock(&k->lock);
    uint64_t v = k->next_seq;
    pthread_mutex_unlock(&k->lock);
    return v;
}

uint32_t cons_room(struct consumer *k)
{
    pthread_mutex_lock(&k->lock);
    uint32_t v = k->n_live >= k->o.max_in_flight ? 0 : k->o.max_in_flight - k->n_live;
    pthread_mutex_unlock(&k->lock);
    return v;
}

int cons_ack(struct consumer *k, uint64_t seq, int kind)
{
    int hit = 0, need_wake = 0;
    struct cons_reg *r = k->reg;
    pthread_mutex_lock(&k->lock);
    int64_t i = pend_find(k, seq);
    if (i >= 0 && !k->p[i].is_dlq) {
        hit = 1;
        if (kind == 1) {
            k->p[i].deadline = 0;
        } else {
            pend_done(k, (uint32_t)i);
            need_wake = mark_dirty(r, k);
        }
    }
    pthread_mutex_unlock(&k->lock);
    cons__wake(r, need_wake);
    return hit;
}

size_t cons_take_due(struct consumer *k, uint64_t now, struct cons_due *out, size_t max)
{
    size_t n = 0;
    int need_wake = 0;
    pthread_mutex_lock(&k->lock);
    for (uint32_t i = k->head; i < k->n && n < max; i++) {
        struct pend *p = &k->p[i];
        if (p->is_done || p->is_dlq || p->deadline > now) {
            continue;
        }
        if (p->n_deliv >= k->o.max_deliver && k->is_anon) {
            /* No durable, no dead-letter topic: it is dropped, and said so. */
            log_info("subscription to %s: sequence %llu not acked after %u deliveries: dropped "
                     "(only durables have a dead-letter topic)",
                     k->topic, (unsigned long long)p->seq, p->n_deliv);
            pend_done(k, i);
            continue;
        }
        out[n].seq = p->seq;
        if (p->n_deliv >= k->o.max_deliver) {
            p->is_dlq = 1;
            out[n].is_dlq = 1;
            out[n].n_deliv = p->n_deliv;
        } else {
            p->n_deliv++;
            k->n_redeliveries += p->n_deliv > 1;
            p->deadline = now + k->o.ack_wait_ms;
            out[n].is_dlq = 0;
            out[n].n_deliv = p->n_deliv;
            need_wake |= mark_dirty(k->reg, k); /* the count survives a crash */
        }
        n++;
    }
    pthread_mutex_unlock(&k->lock);
    cons__wake(k->reg, need_wake);
    return n;
}

void cons_forget(struct consumer *k, uint64_t seq)
{
    struct cons_reg *r = k->reg;
    int need_wake = 0;
    pthread_mutex_lock(&k->lock);
    int64_t i = pend_find(k, seq);
    if (i >= 0) {
        pend_done(k, (uint32_t)i);
        need_wake = mark_dirty(r, k);
    }
    pthread_mutex_unlock(&k->lock);
    cons__wake(r, need_wake);
}

void cons_unsend(struct consumer *k, uint64_t seq)
{
    int need_wake = 0;
    pthread_mutex_lock(&k->lock);
    int64_t i = pend_find(k, seq);
    if (i >= 0) {
        if (k->p[i].is_dlq) {
            k->p[i].is_dlq = 0;
        } else if (k->p[i].n_deliv > 1) {
            k->p[i].n_deliv--;
            need_wake = mark_dirty(k->reg, k);
        }
        k->p[i].deadline = 0;
    }
    pthread_mutex_unlock(&k->lock);
    cons__wake(k->reg, need_wake);
}

static struct consumer *reg_by_id(struct cons_reg *r, uint32_t id)
{
    pthread_mutex_lock(&r->lock);
    struct consumer *k = id >= 1 && id <= r->n ? r->v[id - 1] : NULL;
    pthread_mutex_unlock(&r->lock);
    return k;
}

void cons_dlq_committing(struct cons_reg *r, uint32_t id, uint64_t seq)
{
    struct consumer *k = reg_by_id(r, id);
    if (k == NULL) {
        return;
    }
    pthread_mutex_lock(&k->lock);
    int64_t i = pend_find(k, seq);
    if (i >= 0 && k->p[i].is_dlq) {
        k->p[i].is_committing = 1;
        mark_dirty(r, k); /* the writer saves it with this batch: no wake-up needed */
    }
    pthread_mutex_unlock(&k->lock);
}

void cons_dlq_done(struct cons_reg *r, uint32_t id, uint64_t seq, int ok)
{
    struct consumer *k = reg_by_id(r, id);
    if (k == NULL) {
        return;
    }
    int need_wake = 0;
    pthread_mutex_lock(&k->lock);
    int64_t i = pend_find(k, seq);
    if (i >= 0 && k->p[i].is_dlq) {
        if (ok) {
            pend_done(k, (uint32_t)i);
            k->n_dead_letters++;
        } else {
            k->p[i].is_dlq = 0; /* retried (dead-lettered again) after ack_wait */
            k->p[i].is_committing = 0;
            k->p[i].deadline = 0;
        }
        need_wake = mark_dirty(r, k);
    }
    pthread_mutex_unlock(&k->lock);
    if (ok == 0) {
        log_warn("durable %s on %s: the dead-letter publish of sequence %llu was refused; "
                 "retrying",
                 k->name, k->topic, (unsigned long long)seq);
    }
    cons__wake(r, need_wake);
}

size_t cons_dlq_topic(const struct consumer *k, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s%.*s.%.*s", CONS_DLQ_PREFIX, (int)k->topic_len, k->topic,
                     (int)k->name_len, k->name);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

struct pub_batch *cons_dlq_batch(struct consumer *k, const struct store_msg *m, uint32_t n_deliv,
                                 uint32_t iot_index, uint32_t n_workers, int64_t now_ns)
{
    enum { KEEP = 60, EXTRA = 5 };
    char topic[CONS_DLQ_TOPIC_MAX];
    size_t tlen = cons_dlq_topic(k, topic, sizeof(topic));
    struct codec_hdr hdr[KEEP + EXTRA];
    char seqbuf[24], cntbuf[16];
    snprintf(seqbuf, sizeof(seqbuf), "%llu", (unsigned long long)m->seq);
    snprintf(cntbuf, sizeof(cntbuf), "%u", n_deliv);
    size_t nh = 0, pos = 0;
    struct store_kv kv;
    while (nh < KEEP && store_msg_header_next(m, &pos, &kv)) {
        hdr[nh++] = (struct codec_hdr){kv.key, kv.key_len, kv.value, kv.value_len};
    }
    const char *ek[EXTRA] = {CONS_DLQ_HDR_TOPIC, CONS_DLQ_HDR_SEQ, CONS_DLQ_HDR_COUNT,
                             CONS_DLQ_HDR_DURABLE, CONS_DLQ_HDR_PATTERN};
    /* k->topic and k->name point into k->key, NUL-terminated there; the
     * name is followed by the position's topic, hence its length */
    const char *ev[EXTRA] = {k->topic, seqbuf, cntbuf, k->name, k->pattern};
    size_t evl[EXTRA] = {k->topic_len, strlen(seqbuf), strlen(cntbuf), k->name_len, k->pattern_len};
    for (int i = 0; i < EXTRA && ev[i] != NULL; i++) {
        hdr[nh++] = (struct codec_hdr){ek[i], strlen(ek[i]), ev[i], evl[i]};
    }
    struct codec_deliver d = {.topic = topic,
                              .topic_len = tlen,
                              .publish_time = now_ns,
                              .payload = m->payload,
                              .payload_len = m->payload_len,
                              .headers = hdr,
                              .n_headers = nh,
                              .key = m->key,
                              .key_len = m->key_len,
                              .attempt = 1};
    size_t body_len = pub_rec_body_len(&d, 1);
    size_t rec_len = pub_rec_len(tlen, body_len, 1);
    struct pub_batch *b = malloc(sizeof(*b) + rec_len);
    if (b == NULL) {
        return NULL;
    }
    atomic_init(&b->refs, 1);
    b->len = (uint32_t)rec_len;
    b->cap = (uint32_t)rec_len;
    b->n_recs = 1;
    pub_rec_init((struct pub_rec *)b->data, CONN_REF(iot_index, CONS_DLQ_SLOT, k->id), m->seq, &d,
                 body_len, topic_hash(topic, tlen) % n_workers, 1, 1);
    return b;
}

/* Serialise k (k->lock held) into a malloc'd record. A message whose dead
 * letter is committed in the same transaction is left out: both are stored,
 * or neither (a dead letter exactly once, whatever crashes). */
static unsigned char *state_encode(struct consumer *k, size_t *len)
{
    size_t olen = k->owner ? strlen(k->owner) : 0; /* <= CONS_OWNER_MAX (cons_bind) */
    if (k->is_root) {
        unsigned char *v = malloc(REC_ROOT + olen);
        if (v != NULL) {
            v[0] = 'W';
            v[1] = olen ? 2 : 1;
            v[2] = (unsigned char)olen;
            v[3] = (unsigned char)(olen >> 8);
            le64_put(v + 4, (uint64_t)k->start_ns);
            memcpy(v + REC_ROOT, k->owner ? k->owner : "", olen);
            *len = REC_ROOT + olen;
        }
        return v;
    }
    size_t n = 0;
    for (uint32_t i = k->head; i < k->n; i++) {
        n += !k->p[i].is_done && !k->p[i].is_committing;
    }
    size_t body = REC_HDR + olen;
    unsigned char *v = malloc(body + n * REC_ENT);
    if (v == NULL) {
        return NULL;
    }
    v[0] = 'D';
    v[1] = olen ? 2 : 1;
    v[2] = (unsigned char)olen;
    v[3] = (unsigned char)(olen >> 8);
    le64_put(v + 4, k->next_seq);
    le32_put(v + 12, (uint32_t)n);
    memcpy(v + REC_HDR, k->owner ? k->owner : "", olen);
    size_t j = 0;
    for (uint32_t i = k->head; i < k->n; i++) {
        if (!k->p[i].is_done && !k->p[i].is_committing) {
            unsigned char *e = v + body + j * REC_ENT;
            le64_put(e, k->p[i].seq);
            le32_put(e + 8, k->p[i].n_deliv);
            j++;
        }
    }
    *len = body + n * REC_ENT;
    return v;
}

int cons_reg_save_begin(struct cons_reg *r, struct cons_save *sv)
{
    memset(sv, 0, sizeof(*sv));
    if (!atomic_exchange(&r->is_dirty, 0)) {
        return 0;
    }
    pthread_mutex_lock(&r->lock);
    uint32_t n = r->n;
    struct consumer **ks = n ? malloc(n * sizeof(*ks)) : NULL;
    if (ks) {
        memcpy(ks, r->v, n * sizeof(*ks));
    }
    pthread_mutex_unlock(&r->lock);
    sv->recs = n ? calloc(n, sizeof(*sv->recs)) : NULL;
    sv->taken = n ? calloc(n, sizeof(*sv->taken)) : NULL;
    int rc = 0;
    if (n && (ks == NULL || sv->recs == NULL || sv->taken == NULL)) {
        rc = -ENOMEM;
    }
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        struct consumer *k = ks[i];
        if (k == NULL) {
            continue; /* released (only this thread releases: no race) */
        }
        pthread_mutex_lock(&k->lock);
        if (k->is_dirty && k->is_deleted) {
            k->is_dirty = 0;
            sv->recs[sv->n].key = k->key;
            sv->recs[sv->n].key_len = k->key_len;
            sv->recs[sv->n].value = NULL; /* delete the record */
            sv->recs[sv->n].value_len = 0;
            sv->taken[sv->n++] = k;
        } else if (k->is_dirty) {
            size_t len;
            unsigned char *v = state_encode(k, &len);
            if (v != NULL) {
                k->is_dirty = 0;
                sv->recs[sv->n].key = k->key;
                sv->recs[sv->n].key_len = k->key_len;
                sv->recs[sv->n].value = (const char *)v;
                sv->recs[sv->n].value_len = len;
                sv->taken[sv->n++] = k;
            } else {
                rc = -ENOMEM;
            }
        }
        pthread_mutex_unlock(&k->lock);
    }
    free(ks);
    if (rc != 0 || sv->n == 0) {
        cons_reg_save_end(r, sv, rc); /* nothing taken: nothing for the caller to end */
    }
    return rc;
}

void cons_reg_save_end(struct cons_reg *r, struct cons_save *sv, int rc)
{
    if (rc != 0) {
        /* Not stored: they stay dirty and the next round retries. */
        for (size_t i = 0; i < sv->n; i++) {
            pthread_mutex_lock(&sv->taken[i]->lock);
            sv->taken[i]->is_dirty = 1;
            pthread_mutex_unlock(&sv->taken[i]->lock);
        }
        atomic_store(&r->is_dirty, 1);
    }
    for (size_t i = 0; i < sv->n; i++) {
        free((void *)sv->recs[i].value);
    }
    free(sv->recs);
    free(sv->taken);
    memset(sv, 0, sizeof(*sv));
}

/* Can k be freed? r->lock and k->lock held. Nobody holds it, its state is
 * stored, no dead letter of it is on its way, and it has been idle for
 * grace_ms. A tombstone (deleted) goes once its deletion is stored, unless
 * detached holders may still reach it. */
static int is_releasable(const struct consumer *k, uint64_t now_ms, uint64_t grace_ms)
{
    if (k->n_holders > 0 || k->is_dirty || k->is_detaching || now_ms < k->idle_since_ms ||
        now_ms - k->idle_since_ms < grace_ms) {
        return 0;
    }
    for (uint32_t i = k->head; i < k->n; i++) {
        if (!k->p[i].is_done && (k->p[i].is_dlq || k->p[i].is_committing)) {
            return 0;
        }
    }
    return 1;
}

size_t cons_reg_release_idle(struct cons_reg *r, uint64_t now_ms, uint64_t grace_ms,
                             int *has_waiting)
{
    struct consumer *gone[64];
    size_t n_gone = 0;
    *has_waiting = 0;
    pthread_mutex_lock(&r->lock);
    for (uint32_t i = 0; i < r->n && n_gone < sizeof(gone) / sizeof(gone[0]); i++) {
        struct consumer *k = r->v[i];
        if (k == NULL) {
            continue;
        }
        pthread_mutex_lock(&k->lock);
        int is_free = is_releasable(k, now_ms, grace_ms);
        pthread_mutex_unlock(&k->lock);
        if (is_free) {
            r->v[i] = NULL; /* its id is not reused: a late lookup finds nothing */
            gone[n_gone++] = k;
        } else if (k->n_holders == 0 && !k->is_detaching) {
            *has_waiting = 1;
        }
    }
    if (n_gone == sizeof(gone) / sizeof(gone[0])) {
        *has_waiting = 1;
    }
    pthread_mutex_unlock(&r->lock);
    for (size_t i = 0; i < n_gone; i++) {
        cons__free(gone[i]);
    }
    return n_gone;
}

int cons_reg_flush(struct cons_reg *r)
{
    struct cons_save sv;
    int rc = cons_reg_save_begin(r, &sv);
    if (rc < 0) {
        return rc;
    }
    if (sv.n > 0) {
        rc = store_consumers_put(r->st, sv.recs, sv.n);
    }
    cons_reg_save_end(r, &sv, rc);
    return rc;
}

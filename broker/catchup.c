/*
 * catchup.c - positions on stored topics: catch-up subscriptions, wildcard
 * durables, wildcard subscribers that lag, durable consumers and queue
 * groups reading the store (see struct catchup and struct wcu in io_int.h).
 */
#include "io_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int wcu_pump(struct iot *t, struct conn *c);
static int body_topic(const uint8_t *body, uint32_t len, const char **topic, size_t *tlen);

/* ---- catch-up (see struct catchup) -------------------------------------- */

/* The topic an entry reads. */
static const char *cu_topic(const struct catchup *e, size_t *len)
{
    *len = e->topic ? e->topic_len : e->sub->pattern_len;
    return e->topic ? e->topic : e->sub->pattern;
}

/* A wildcard durable's root entry (reads nothing itself). */
int cu_is_root(const struct catchup *e)
{
    return e->root != NULL && e->topic == NULL;
}

/* The first entry of sub_id (a wildcard durable's: its root entry). */
struct catchup *cu_find(struct conn *c, uint64_t sub_id)
{
    for (uint32_t i = 0; i < c->n_cu; i++) {
        if (c->cu[i].sub->sub_id == sub_id) {
            return &c->cu[i];
        }
    }
    return NULL;
}

/* The catch-up state of the subscription with that trie_sub.key (c->cu is
 * sorted by key), or NULL. */
static uint32_t cu_lower(const struct conn *c, uint64_t key)
{
    uint32_t lo = 0, hi = c->n_cu;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (c->cu[mid].sub->key < key) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

struct catchup *cu_find_key(struct conn *c, uint64_t key)
{
    uint32_t i = cu_lower(c, key);
    return i < c->n_cu && c->cu[i].sub->key == key ? &c->cu[i] : NULL;
}

/* Release the consumers bound by sub_id's entries (every entry's, sub_id
 * UINT64_MAX): positions before roots, so that a root nobody holds has no
 * held positions (consumer_admin.c, reg_delete). */
void cu_unbind(struct iot *t, struct conn *c, uint64_t sub_id)
{
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t i = 0; i < c->n_cu; i++) {
            struct catchup *e = &c->cu[i];
            struct consumer *k = pass == 0 ? e->cons : cu_is_root(e) ? e->root : NULL;
            if (k != NULL && (sub_id == UINT64_MAX || e->sub->sub_id == sub_id)) {
                cons_unbind(t->srv->consumers, k, conn_ref_of(t, c), e->sub->sub_id);
            }
        }
    }
}

/* Forget sub_id's entries (every entry, sub_id UINT64_MAX). */
void cu_remove(struct conn *c, uint64_t sub_id)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < c->n_cu; i++) { /* keeps the order (by key) */
        if (sub_id == UINT64_MAX || c->cu[i].sub->sub_id == sub_id) {
            free(c->cu[i].topic);
        } else {
            c->cu[k++] = c->cu[i];
        }
    }
    c->n_cu = k;
}

/* Make sure the round pumps c. */
void cu_list(struct iot *t, struct conn *c)
{
    if (!c->is_cu_listed && conn_list_push(&t->cu_conns, c) == 0) {
        c->is_cu_listed = 1;
    }
}

/* ---- wildcard durables (see struct catchup) ---------------------------- */

/* Where a new position of root on topic starts: the topic's first message
 * published at or after the root's start_ns (1 for a topic not stored). */
static int wd_first_seq(struct iot *t, struct consumer *root, const char *topic, size_t len,
                        uint64_t *out)
{
    struct store_topic_info info;
    int rc = store_topic_info(t->srv->store, topic, len, &info);
    if (rc == FERRY_ENOTOPIC) {
        *out = 1;
        return 0;
    }
    if (rc < 0) {
        return rc;
    }
    int64_t start_ns = cons_root_start_ns(root);
    if (start_ns <= 0) {
        *out = info.first_seq;
        return 0;
    }
    return store_seek_time(t->srv->store, info.id, start_ns, out);
}

/*
 * The position entry of wildcard durable subscription s on topic: found,
 * or (is_create, after its SubAck) bound and added among s's other
 * entries (in topic order), reading. NULL: none (s is not a wildcard
 * durable, not started, or the binding failed: logged). c->cu may move.
 */
struct catchup *cu_wd_position(struct iot *t, struct conn *c, struct trie_sub *s, const char *topic,
                               size_t len, int is_create)
{
    uint32_t i = cu_lower(c, s->key);
    if (i == c->n_cu || c->cu[i].sub != s || !cu_is_root(&c->cu[i])) {
        return NULL;
    }
    /* Positions are sorted by topic (bytes, then length). */
    uint32_t j = i + 1, hi = cu_lower(c, s->key + 1); /* s's entries end there */
    while (j < hi) {
        uint32_t mid = j + (hi - j) / 2;
        const struct catchup *e = &c->cu[mid];
        int cmp = memcmp(e->topic, topic, e->topic_len < len ? e->topic_len : len);
        if (cmp == 0) {
            cmp = (e->topic_len > len) - (e->topic_len < len);
        }
        if (cmp == 0) {
            return &c->cu[mid];
        }
        if (cmp < 0) {
            j = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (!is_create || !c->cu[i].is_started) {
        return NULL;
    }
    struct consumer *root = c->cu[i].root;
    uint64_t first = 1; /* a queue group's has no position, only what is left */
    int rc = c->cu[i].is_group ? 0 : wd_first_seq(t, root, topic, len, &first);
    if (rc == 0 && c->n_cu == c->cu_cap) {
        uint32_t cap = c->cu_cap * 2;
        struct catchup *v = realloc(c->cu, cap * sizeof(*v));
        if (v != NULL) {
            c->cu = v;
            c->cu_cap = cap;
        }
        rc = v != NULL ? 0 : -ENOMEM;
    }
    char *name = rc == 0 ? malloc(len + 1) : NULL;
    struct consumer *k = NULL;
    if (name != NULL) {
        memcpy(name, topic, len);
        name[len] = '\0';
        char who[CONS_WHO_MAX];
        snprintf(who, sizeof(who), "client %llu %s", (unsigned long long)c->client_id, c->peer);
        rc = cons_bind_member(t->srv->consumers, root, topic, len, first, conn_ref_of(t, c),
                              s->sub_id, who, &k);
    } else if (rc == 0) {
        rc = -ENOMEM;
    }
    if (rc < 0) {
        free(name);
        if (c->n_wd_fail++ < 10) {
            log_client_warn(c->client_id, c->peer, "wildcard durable %s: no position on %.*s: %s",
                            s->pattern, (int)len, topic,
                            rc == FERRY_EINVAL ? "pattern, name and topic pass 511 bytes"
                                               : server_strerror(rc));
        }
        return NULL;
    }
    memmove(&c->cu[j + 1], &c->cu[j], (c->n_cu - j) * sizeof(*c->cu));
    c->n_cu++;
    struct catchup *e = &c->cu[j];
    memset(e, 0, sizeof(*e));
    e->sub = s;
    e->cons = k;
    e->root = root;
    e->topic = name;
    e->topic_len = (uint32_t)len;
    e->is_group = c->cu[i].is_group;
    e->is_started = 1;
    e->is_reading = 1;
    cu_list(t, c);
    cu_dur_list(t, c);
    t->next_dur_scan = 0; /* what its last holder left unacked is due */
    return e;
}

struct wd_topics {
    const char *pattern;
    size_t pattern_len;
    char **v;
    size_t n, cap;
};

static int wd_topics_cb(void *ctx, const char *name, size_t len,
                        const struct store_topic_info *info)
{
    (void)info;
    struct wd_topics *l = ctx;
    if (!topic_match(l->pattern, l->pattern_len, name, len)) {
        return 0;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL) {
            return 1;
        }
        l->v = v;
        l->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        return 1;
    }
    memcpy(copy, name, len);
    copy[len] = '\0';
    l->v[l->n++] = copy;
    return 0;
}

/* Give wildcard durable subscription s a position on every stored topic
 * its pattern matches, and make each read the store (see struct catchup). */
void cu_wd_sync(struct iot *t, struct conn *c, struct trie_sub *s)
{
    struct wd_topics l = {.pattern = s->pattern, .pattern_len = s->pattern_len};
    /* The store lists by prefix: the pattern's tokens before its first
     * wildcard. */
    size_t prefix = 0;
    for (size_t i = 0, tok = 0; i <= s->pattern_len; i++) {
        if (i == s->pattern_len || s->pattern[i] == '.') {
            if (topic_has_wildcard(s->pattern + tok, i - tok)) {
                break;
            }
            prefix = i < s->pattern_len ? i + 1 : i;
            tok = i + 1;
        }
    }
    int rc = store_topic_list(t->srv->store, s->pattern, prefix, wd_topics_cb, &l);
    if (rc < 0) {
        log_client_warn(c->client_id, c->peer, "wildcard durable %s: cannot list its topics: %s",
                        s->pattern, server_strerror(rc));
    }
    for (size_t i = 0; i < l.n; i++) {
        struct catchup *e = cu_wd_position(t, c, s, l.v[i], strlen(l.v[i]), 1);
        if (e != NULL) {
            e->is_reading = 1;
        }
        free(l.v[i]);
    }
    free(l.v);
    cu_list(t, c);
}

void cu_start(struct iot *t, struct conn *c, uint64_t sub_id)
{
    struct catchup *e = cu_find(c, sub_id);
    if (e && cu_is_root(e)) {
        e->is_started = 1;
        if (!e->is_group) {
            cu_wd_sync(t, c, e->sub);
        }
    } else if (e) {
        e->is_started = 1;
        e->is_reading = !e->is_group; /* a group reads only what is left */
        cu_list(t, c);
    }
}

/* Live deliveries to catch-up subscriptions: keep the keys whose next_seq
 * this message is; returns how many of keys ids[0..n) remain. */
uint32_t cu_filter(struct iot *t, struct conn *c, uint64_t *ids, uint32_t n, const uint8_t *body,
                   uint32_t body_len)
{
    /* A subscriber this far behind reads the store instead: live messages
     * are dropped for it (they are stored) and catch-up resumes from
     * next_seq once its output has drained. No disconnect, no loss. */
    int is_lagging = conn_out_pending(c) + c->stage_bytes > t->srv->cfg.max_outbound / 2;
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct catchup *e = cu_find_key(c, ids[i]);
        if (e == NULL) {
            ids[k++] = ids[i];
            continue;
        }
        if (cu_is_root(e)) {
            /* A wildcard durable, or queue group: the position on the
             * message's topic. An ephemeral topic (no sequence trailer) is
             * not for a durable; a group gets it live, as it does a message
             * it has no position for (out of memory: bounded as ever). */
            const char *topic;
            size_t tlen;
            int is_group = e->is_group;
            if (!body_topic(body, body_len, &topic, &tlen) ||
                (e = cu_wd_position(t, c, e->sub, topic, tlen, 1)) == NULL) {
                if (is_group) {
                    ids[k++] = ids[i];
                }
                continue;
            }
        }
        /* Only stored topics have catch-up subscriptions: the body ends with
         * the sequence trailer. */
        uint64_t seq = pub_seq_get(body, body_len);
        if (e->is_group) {
            /* A queue group (see struct catchup): the workers chose this
             * member; one that lags (or whose SubAck is not out yet) leaves
             * the message to the group. */
            if (e->is_started && !is_lagging) {
                ids[k++] = ids[i];
            } else if (cons_group_leave(e->cons, seq) == 0) {
                t->next_dur_scan = 0; /* another member, or this one later, takes it */
            } else if (e->is_started) {
                ids[k++] = ids[i]; /* the group's set is full: live, bounded as ever */
            }
            continue;
        }
        if (e->cons != NULL) {
            if (!e->is_started) {
                continue;
            }
            enum cons_claim r =
                is_lagging ? CONS_CLAIM_GAP : cons_claim(e->cons, seq, 0, t->now, NULL);
            if (r == CONS_CLAIM_OK) {
                ids[k++] = ids[i];
            } else if (r != CONS_CLAIM_SKIP) {
                e->is_reading = 1; /* a full durable is listed again by an Ack or the scan */
                if (r == CONS_CLAIM_GAP) {
                    cu_list(t, c);
                }
            }
            continue;
        }
        if (e->is_started && seq == e->next_seq && !is_lagging && !e->is_lastval) {
            e->next_seq++;
            ids[k++] = ids[i];
        } else if (e->is_started && seq >= e->next_seq) {
            if (!e->is_reading && is_lagging) {
                log_client_debug(c->client_id, c->peer,
                                 "subscription %llu lags at sequence %llu of %s: "
                                 "reading the store",
                                 (unsigned long long)e->sub->sub_id,
                                 (unsigned long long)e->next_seq,
                                 e->sub->pattern); /* not a wildcard durable's (e->cons is NULL) */
            }
            e->is_reading = 1; /* the store has next_seq .. seq */
            cu_list(t, c);
        }
    }
    return k;
}

struct cu_ctx {
    struct iot *t;
    struct conn *c;
    struct catchup *e;
    size_t n;
    uint64_t want_seq; /* a durable's redelivery: only this sequence... */
    uint32_t attempt;  /* ...as this attempt; 0: catch-up */
    int is_gone;       /* the redelivered sequence is no longer stored */
    const char *topic; /* the Deliver's topic, if not the subscription's pattern */
};

/* One stored message (inside the read transaction): encode it into the
 * connection's buffer, or refuse when the buffer has had enough. */
static enum store_read_verdict cu_on_msg(void *ctx, const struct store_msg *m)
{
    struct cu_ctx *x = ctx;
    struct iot *t = x->t;
    struct conn *c = x->c;
    if (c->state != ST_OPEN) {
        return STORE_READ_REFUSE;
    }
    size_t size = m->payload_len + m->key_len + m->headers_raw_len + 128;
    if (x->n > 0 && conn_out_pending(c) + size > t->srv->cfg.max_outbound / 4) {
        return STORE_READ_REFUSE;
    }
    uint64_t missed = 0;
    int is_expired = store_msg_is_expired(m, t->now_ns);
    if (x->attempt > 0) {
        if (m->seq != x->want_seq || is_expired) {
            x->is_gone = 1; /* removed from the store, or expired: the caller forgets it */
            return STORE_READ_REFUSE;
        }
    } else if (is_expired) {
        /* Never delivered (Publish.ttl_ms): a durable counts it as done. */
        if (x->e->cons != NULL) {
            enum cons_claim r = cons_claim(x->e->cons, m->seq, 1, t->now, &missed);
            if (r == CONS_CLAIM_FULL || r == CONS_CLAIM_GAP) {
                return STORE_READ_REFUSE;
            }
            if (r == CONS_CLAIM_OK) {
                cons_forget(x->e->cons, m->seq);
            }
        }
        x->e->next_seq = m->seq + 1;
        return STORE_READ_CONTINUE;
    } else if (x->e->cons != NULL) {
        enum cons_claim r = cons_claim(x->e->cons, m->seq, 1, t->now, &missed);
        if (r == CONS_CLAIM_SKIP) {
            return STORE_READ_CONTINUE; /* another member of its queue group has it */
        }
        if (r != CONS_CLAIM_OK) {
            return STORE_READ_REFUSE;
        }
    }
    uint64_t sub_id = x->e->sub->sub_id;
    size_t nh = 0, pos = 0;
    struct store_kv kv;
    while (nh < CODEC_MAX_HEADERS && store_msg_header_next(m, &pos, &kv)) {
        t->cu_hdr[nh++] = (struct codec_hdr){kv.key, kv.key_len, kv.value, kv.value_len};
    }
    const char *topic = x->topic ? x->topic : x->e->sub->pattern;
    struct codec_deliver d = {.topic = topic,
                              .topic_len = strlen(topic),
                              .sequence = m->seq,
                              .publish_time = m->publish_time,
                              .payload = m->payload,
                              .payload_len = m->payload_len,
                              .headers = t->cu_hdr,
                              .n_headers = nh,
                              .key = m->key,
                              .key_len = m->key_len,
                              .attempt = x->attempt > 0 ? x->attempt : 1,
                              .missed = missed};
    size_t body_len = codec_deliver_body_len(&d);
    uint8_t pfx[CODEC_DELIVER_PREFIX_MAX(1)];
    size_t pl = codec_deliver_prefix(pfx, &sub_id, 1, body_len);
    size_t frame_len = pl - FRAME_HDR_LEN + body_len;
    if (deliver_too_large(t, c, &sub_id, 1, m->seq, frame_len)) {
        if (c->state != ST_OPEN) {
            return STORE_READ_REFUSE;
        }
        x->e->next_seq = m->seq + 1;
        x->n++;
        return STORE_READ_CONTINUE;
    }
    conn_send_deliver(t, c, pfx, pl, &d, body_len);
    if (c->state == ST_DEAD) {
        return STORE_READ_REFUSE;
    }
    stats_add(&t->stats.msgs_out, 1);
    x->e->next_seq = m->seq + 1;
    x->n++;
    return STORE_READ_CONTINUE;
}

/* A store read for e failed: busy (-EAGAIN) is tried again later; anything
 * else is logged and ends e's reading. */
static void cu_read_failed(const struct conn *c, struct catchup *e, const char *topic, int rc)
{
    if (rc != -EAGAIN) {
        log_client_error(c->client_id, c->peer, "catch-up of %s: %s", topic, server_strerror(rc));
        e->is_reading = 0;
    }
}

static int cu_has_room(const struct iot *t, const struct conn *c)
{
    return c->state == ST_OPEN && conn_out_pending(c) < t->srv->cfg.max_outbound / 8;
}

/* Read a few chunks for each reading subscription of c. Returns 1 if c
 * still has reading to do. */
static int cu_pump(struct iot *t, struct conn *c)
{
    struct store *st = t->srv->store;
    int more = 0;
    /* Wildcard roots whose workers all answered: list their topics once
     * what was routed is readable (this may add positions to c->cu, so no
     * entry pointer is kept over it). */
    for (uint32_t i = 0; i < c->n_cu && c->state == ST_OPEN; i++) {
        if (!c->cu[i].is_wd_sync_due) {
            continue;
        }
        if (!server_store_readable(t->srv)) {
            more = 1; /* the writer's commit wakes us */
            continue;
        }
        c->cu[i].is_wd_sync_due = 0;
        cu_wd_sync(t, c, c->cu[i].sub);
    }
    for (uint32_t i = 0; i < c->n_cu && c->state == ST_OPEN; i++) {
        struct catchup *e = &c->cu[i];
        size_t tlen;
        const char *topic = cu_topic(e, &tlen);
        for (int k = 0; k < CU_CHUNKS_PER_ROUND && e->is_started && e->is_reading; k++) {
            if (!cu_has_room(t, c) || cu_is_root(e) || e->is_group) {
                break;
            }
            uint32_t room = e->cons ? cons_room(e->cons) : CU_CHUNK_MSGS;
            if (room == 0) {
                break; /* a full durable: an Ack or the scan lists it again */
            }
            if (e->topic_id == 0) {
                struct store_topic_info info;
                int rc = store_topic_info(st, topic, tlen, &info);
                if (rc == FERRY_ENOTOPIC) {
                    e->is_reading = 0; /* nothing stored yet: live brings it */
                    break;
                }
                if (rc < 0) {
                    cu_read_failed(c, e, topic, rc);
                    break;
                }
                e->topic_id = info.id;
            }
            struct cu_ctx x = {.t = t, .c = c, .e = e, .topic = e->topic};
            struct store_read_result res;
            uint64_t from = e->cons ? cons_next_seq(e->cons) : e->next_seq;
            int rc =
                e->is_lastval
                    ? store_lastval_read(st, e->topic_id, from, e->lv_upto, CU_CHUNK_MSGS,
                                         CU_CHUNK_BYTES, cu_on_msg, &x, &res)
                    : store_read(st, e->topic_id, from, room < CU_CHUNK_MSGS ? room : CU_CHUNK_MSGS,
                                 CU_CHUNK_BYTES, cu_on_msg, &x, &res);
            if (c->state != ST_OPEN) {
                return 0; /* killed while queueing (c->cu is gone) */
            }
            if (rc < 0) {
                cu_read_failed(c, e, topic, rc);
                break; /* -EAGAIN: reader slots full, next round */
            }
            if (res.n_corrupt) {
                log_error("topic %s: %zu stored messages failed their CRC check (last: sequence "
                          "%llu); skipped, not delivered to client %llu",
                          topic, res.n_corrupt, (unsigned long long)res.corrupt_seq,
                          (unsigned long long)c->client_id);
            }
            if (res.next_seq > e->next_seq) {
                e->next_seq = res.next_seq;
            }
            if (res.is_end && e->is_lastval) {
                /* Every current value up to the snapshot is out: on with
                 * the messages after it (live ones were dropped meanwhile). */
                e->is_lastval = 0;
                e->next_seq = e->lv_upto + 1;
            } else if (res.is_end) {
                e->is_reading = 0;
            }
        }
        more |= e->is_started && e->is_reading && !cu_is_root(e) && !e->is_group &&
                (e->cons == NULL || cons_room(e->cons) > 0);
    }
    if (c->n_wcu > 0 && c->state == ST_OPEN) {
        more |= wcu_pump(t, c);
    }
    return more && c->state == ST_OPEN;
}

void cu_pump_all(struct iot *t)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < t->cu_conns.n; i++) {
        struct conn *c = t->cu_conns.v[i];
        if (c->state == ST_OPEN && cu_pump(t, c)) {
            t->cu_conns.v[k++] = c;
        } else {
            c->is_cu_listed = 0;
        }
    }
    t->cu_conns.n = k;
}

/* ---- wildcard catch-up (see struct wcu) -------------------------------- */

static struct wcu *wcu_find(struct conn *c, const struct trie_sub *sub, const char *topic,
                            size_t len)
{
    for (uint32_t i = 0; i < c->n_wcu; i++) {
        struct wcu *w = &c->wcu[i];
        if (w->sub == sub && w->topic_len == len && memcmp(w->topic, topic, len) == 0) {
            return &c->wcu[i];
        }
    }
    return NULL;
}

static void wcu_del_at(struct conn *c, uint32_t i)
{
    free(c->wcu[i].topic);
    c->wcu[i] = c->wcu[--c->n_wcu];
}

/* Forget every position of sub (NULL: all of them). */
void cu_wild_remove_sub(struct conn *c, const struct trie_sub *sub)
{
    for (uint32_t i = c->n_wcu; i-- > 0;) {
        if (sub == NULL || c->wcu[i].sub == sub) {
            wcu_del_at(c, i);
        }
    }
    if (c->n_wcu == 0) {
        free(c->wcu);
        c->wcu = NULL;
        c->wcu_cap = 0;
    }
}

static struct wcu *wcu_add(struct conn *c, struct trie_sub *sub, const char *topic, size_t len,
                           uint64_t seq)
{
    if (c->n_wcu == c->wcu_cap) {
        uint32_t cap = c->wcu_cap ? c->wcu_cap * 2 : 4;
        struct wcu *v = realloc(c->wcu, cap * sizeof(*v));
        if (v == NULL) {
            return NULL;
        }
        c->wcu = v;
        c->wcu_cap = cap;
    }
    char *name = malloc(len + 1);
    if (name == NULL) {
        return NULL;
    }
    memcpy(name, topic, len);
    name[len] = '\0';
    struct wcu *w = &c->wcu[c->n_wcu++];
    memset(w, 0, sizeof(*w));
    w->sub = sub;
    w->topic = name;
    w->topic_len = (uint32_t)len;
    w->next_seq = seq;
    w->is_reading = 1;
    return w;
}

/* A Deliver body encoded by handle_publish_enqueue() starts with its topic (field
 * 2) and, for a stored topic, ends with the sequence trailer; an ephemeral
 * one ends with the attempt field (0x40 0x01), whose first byte has no
 * continuation bit, unlike the trailer's next to last byte. */
static int body_topic(const uint8_t *body, uint32_t len, const char **topic, size_t *tlen)
{
    if (len < 2 + PUB_SEQ_TRAILER || body[0] != ((2 << 3) | 2)) {
        return 0;
    }
    size_t n = 0;
    uint32_t i = 1;
    for (int shift = 0; i < len && shift < 35; shift += 7) {
        uint8_t b = body[i++];
        n |= (size_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            break;
        }
    }
    if (n == 0 || n > len - i) {
        return 0;
    }
    *topic = (const char *)body + i;
    *tlen = n;
    return body[len - PUB_SEQ_TRAILER] == ((3 << 3) | 0) && (body[len - 2] & 0x80);
}

/* Live deliveries to wildcard subscriptions (after cu_filter): see struct
 * wcu. subs[] are the subscriptions of ids[], in the same order. */
uint32_t cu_wild_filter(struct iot *t, struct conn *c, uint64_t *ids, struct trie_sub **subs,
                        uint32_t n, const uint8_t *body, uint32_t body_len)
{
    /* Nothing to filter, the usual case: decided before the body is read
     * (its last bytes are often not in this core's cache yet). */
    int is_lagging = conn_out_pending(c) + c->stage_bytes > t->srv->cfg.max_outbound / 2;
    if (!is_lagging && c->n_wcu == 0) {
        return n;
    }
    const char *topic;
    size_t tlen;
    if (t->srv->store == NULL || !body_topic(body, body_len, &topic, &tlen)) {
        return n; /* an ephemeral topic */
    }
    uint64_t seq = pub_seq_get(body, body_len);
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct trie_sub *sb = subs[i];
        if (sb->group_len > 0 || !topic_has_wildcard(sb->pattern, sb->pattern_len) ||
            cu_find_key(c, sb->key) != NULL) { /* the last: a wildcard durable */
            subs[k] = sb;
            ids[k++] = ids[i];
            continue;
        }
        struct wcu *w = wcu_find(c, sb, topic, tlen);
        if (w == NULL) {
            if (!is_lagging) {
                subs[k] = sb;
                ids[k++] = ids[i];
            } else if (wcu_add(c, sb, topic, tlen, seq) != NULL) {
                log_client_debug(c->client_id, c->peer,
                                 "subscription %llu lags at sequence %llu of %.*s: "
                                 "reading the store",
                                 (unsigned long long)sb->sub_id, (unsigned long long)seq, (int)tlen,
                                 topic);
                cu_list(t, c);
            } else {
                subs[k] = sb; /* out of memory: live, bounded as ever */
                ids[k++] = ids[i];
            }
            continue;
        }
        if (seq == w->next_seq && !w->is_reading && !is_lagging) {
            wcu_del_at(c, (uint32_t)(w - c->wcu)); /* at the seam: live again */
            subs[k] = sb;
            ids[k++] = ids[i];
        } else if (seq >= w->next_seq) {
            w->is_reading = 1; /* the store has next_seq .. seq */
            cu_list(t, c);
        }
    }
    return k;
}

/* Read for c's wildcard positions; returns 1 if some still have reading to
 * do. */
static int wcu_pump(struct iot *t, struct conn *c)
{
    int more = 0;
    for (uint32_t i = 0; i < c->n_wcu && c->state == ST_OPEN; i++) {
        struct wcu *w = &c->wcu[i];
        for (int k = 0; k < CU_CHUNKS_PER_ROUND && w->is_reading; k++) {
            if (!cu_has_room(t, c)) {
                break;
            }
            if (w->topic_id == 0) {
                struct store_topic_info info;
                int rc = store_topic_info(t->srv->store, w->topic, w->topic_len, &info);
                if (rc < 0) {
                    break; /* -EAGAIN or worse: next round */
                }
                w->topic_id = info.id;
            }
            struct catchup tmp;
            memset(&tmp, 0, sizeof(tmp));
            tmp.sub = w->sub;
            tmp.next_seq = w->next_seq;
            struct cu_ctx x = {.t = t, .c = c, .e = &tmp, .topic = w->topic};
            struct store_read_result res;
            int rc = store_read(t->srv->store, w->topic_id, w->next_seq, CU_CHUNK_MSGS,
                                CU_CHUNK_BYTES, cu_on_msg, &x, &res);
            if (c->state != ST_OPEN) {
                return 0; /* killed while queueing (c->wcu is gone) */
            }
            if (rc < 0) {
                break;
            }
            w->next_seq = tmp.next_seq > res.next_seq ? tmp.next_seq : res.next_seq;
            if (res.is_end) {
                w->is_reading = 0;
            }
        }
        more |= w->is_reading;
    }
    return more;
}

/* ---- durable consumers (see struct catchup) ---------------------------- */

struct wq;

void cu_dur_list(struct iot *t, struct conn *c)
{
    if (!c->is_dur_listed && conn_list_push(&t->dur_conns, c) == 0) {
        c->is_dur_listed = 1;
    }
}

/* The stored topic's id, resolved once; 0 while the topic was never stored. */
static uint32_t dur_topic_id(struct iot *t, struct catchup *e)
{
    if (e->topic_id == 0) {
        struct store_topic_info info;
        size_t tlen;
        const char *topic = cu_topic(e, &tlen);
        if (store_topic_info(t->srv->store, topic, tlen, &info) == 0) {
            e->topic_id = info.id;
        }
    }
    return e->topic_id;
}

struct dlq_ctx {
    struct iot *t;
    struct consumer *k;
    uint64_t want_seq;
    uint32_t n_deliv;
    struct pub_batch *b;
    int is_found;
};

static enum store_read_verdict dlq_on_msg(void *ctx, const struct store_msg *m)
{
    struct dlq_ctx *x = ctx;
    if (m->seq != x->want_seq || store_msg_is_expired(m, x->t->now_ns)) {
        return STORE_READ_REFUSE; /* gone, or expired: no dead letter, forgotten */
    }
    x->is_found = 1;
    x->b = cons_dlq_batch(x->k, m, x->n_deliv, x->t->index, x->t->srv->n_workers, x->t->now_ns);
    return STORE_READ_STOP;
}

/* May the dead letters of durable k, held by c, go to dlq? The owner's
 * publish right decides, in the auth table c uses (see below). */
static int dlq_may_publish(const struct conn *c, struct consumer *k, const char *dlq,
                           size_t dlq_len)
{
    const char *owner = cons_owner(k);
    if (c->auth == NULL || owner == NULL) {
        return conn_may_publish(c, dlq, dlq_len);
    }
    const struct auth_principal *p = auth_principal_find(c->auth, owner);
    return p != NULL && acl_may_publish(&p->pub, dlq, dlq_len);
}

/*
 * A message that reached max_deliver: publish it to $DLQ.<topic>.<durable>
 * (cons_dlq_topic) through the store writer. The durable holds it until the
 * commit, which stores the dead letter and the durable's state without it
 * in one transaction (writer.c, commit): exactly one dead letter, whatever
 * crashes.
 * The rule for $DLQ.*: a dead letter is published by the broker with the
 * rights of the durable's owner (consumer.h, OWNERS), whoever holds it now:
 * only where the owner may publish (ACL publish right on
 * $DLQ.<topic>.<durable>; every user on a server without an auth file). A
 * durable owned by nobody (made before owners existed) uses its holder's
 * rights. Otherwise, or when the name passes max_topic_len or
 * max_topic_depth (it has two tokens more than the topic), the message is
 * dropped, and the log says so.
 */
void cu_dur_dead_letter(struct iot *t, struct conn *c, struct catchup *e, const struct cons_due *d)
{
    char dlq[CONS_DLQ_TOPIC_MAX];
    size_t dlq_len = cons_dlq_topic(e->cons, dlq, sizeof(dlq));
    size_t tlen;
    const char *topic = cu_topic(e, &tlen);
    const struct cfg *cfg = &t->srv->cfg;
    const char *why = NULL;
    if (dlq_len == 0 || dlq_len > STORE_TOPIC_MAX ||
        topic_validate(dlq, dlq_len, 0, cfg->max_topic_len, cfg->max_topic_depth, &why) != 0) {
        why = "its name would pass max_topic_len or max_topic_depth";
    } else if (!dlq_may_publish(c, e->cons, dlq, dlq_len)) {
        why = "the durable's owner may not publish there";
    }
    if (why) {
        log_client_warn(c->client_id, c->peer,
                        "durable on %s: sequence %llu not acked after %u deliveries: "
                        "dropped, not dead-lettered to %s (%s)",
                        topic, (unsigned long long)d->seq, d->n_deliv, dlq, why);
        cons_forget(e->cons, d->seq);
        return;
    }
    struct dlq_ctx x = {t, e->cons, d->seq, d->n_deliv, NULL, 0};
    struct store_read_result res;
    int rc = store_read(t->srv->store, e->topic_id, d->seq, 1, 1, dlq_on_msg, &x, &res);
    if (rc == 0 && !x.is_found) {
        cons_forget(e->cons, d->seq);
        return;
    }
    if (rc < 0 || x.b == NULL) {
        cons_unsend(e->cons, d->seq);
        return;
    }
    uint32_t w = t->srv->n_workers;
    iot_wq_seal(t, w);
    struct wmsg wm = {.kind = W_PUB_BATCH, .p = x.b};
    if (iot_wq_push(&t->wq[w], wm) < 0) {
        pub_batch_unref(x.b);
        cons_unsend(e->cons, d->seq);
        return;
    }
    log_info("durable on %s: sequence %llu not acked after %u deliveries: dead-lettered", topic,
             (unsigned long long)d->seq, d->n_deliv);
}

/* A queue group member with room takes what members that lagged left (see
 * struct catchup), read from the store one by one. */
static void group_take(struct iot *t, struct conn *c, struct catchup *e)
{
    uint64_t seqs[DUR_DUE_MAX];
    size_t n = cons_group_take(e->cons, seqs, DUR_DUE_MAX);
    for (size_t q = 0; q < n; q++) {
        if (c->state != ST_OPEN || !cu_has_room(t, c)) {
            if (cons_group_leave(e->cons, seqs[q]) < 0) {
                log_client_warn(c->client_id, c->peer, "queue group on %s: sequence %llu lost: %s",
                                e->sub->pattern, (unsigned long long)seqs[q],
                                "no room left to keep it");
            }
            continue;
        }
        struct cu_ctx x = {
            .t = t, .c = c, .e = e, .want_seq = seqs[q], .attempt = 1, .topic = e->topic};
        struct store_read_result res;
        int rc =
            store_read(t->srv->store, e->topic_id, seqs[q], 1, CU_CHUNK_BYTES, cu_on_msg, &x, &res);
        if (c->state == ST_OPEN && rc < 0 && cons_group_leave(e->cons, seqs[q]) < 0) {
            log_client_warn(c->client_id, c->peer, "queue group on %s: sequence %llu lost: %s",
                            e->sub->pattern, (unsigned long long)seqs[q], server_strerror(rc));
        }
        /* Read nothing (rc 0): it is no longer stored (retention). */
    }
}

/* Send again what passed its ack wait, dead-letter what reached
 * max_deliver, and restart reading for durables that have room again. */
void cu_dur_scan_all(struct iot *t)
{
    if (t->dur_conns.n == 0 || t->now < t->next_dur_scan || t->srv->store == NULL) {
        return;
    }
    t->next_dur_scan = t->now + DUR_SCAN_MS;
    uint32_t kept = 0;
    for (uint32_t i = 0; i < t->dur_conns.n; i++) {
        struct conn *c = t->dur_conns.v[i];
        int has_durable = 0;
        for (uint32_t j = 0; j < c->n_cu && c->state == ST_OPEN; j++) {
            struct catchup *e = &c->cu[j];
            if (e->cons == NULL) {
                continue;
            }
            has_durable = 1;
            if (!e->is_started || !cu_has_room(t, c) || dur_topic_id(t, e) == 0) {
                continue;
            }
            struct consumer *k = e->cons;
            if (e->is_group) {
                group_take(t, c, e);
                continue;
            }
            struct cons_due due[DUR_DUE_MAX];
            size_t n = cons_take_due(k, t->now, due, DUR_DUE_MAX);
            for (size_t q = 0; q < n; q++) {
                if (c->state != ST_OPEN || (!due[q].is_dlq && !cu_has_room(t, c))) {
                    cons_unsend(k, due[q].seq); /* e is gone, or no room: later */
                    continue;
                }
                if (due[q].is_dlq) {
                    cu_dur_dead_letter(t, c, e, &due[q]);
                    continue;
                }
                struct cu_ctx x = {.t = t,
                                   .c = c,
                                   .e = e,
                                   .want_seq = due[q].seq,
                                   .attempt = due[q].n_deliv,
                                   .topic = e->topic};
                struct store_read_result res;
                int rc = store_read(t->srv->store, e->topic_id, due[q].seq, 1, CU_CHUNK_BYTES,
                                    cu_on_msg, &x, &res);
                if (c->state != ST_OPEN) {
                    continue;
                }
                if (rc == 0 && x.n == 0 && (x.is_gone || res.is_end)) {
                    cons_forget(k, due[q].seq);
                } else if (rc < 0 || x.n == 0) {
                    cons_unsend(k, due[q].seq);
                }
            }
            if (c->state == ST_OPEN && e->is_reading && cons_room(k) > 0) {
                cu_list(t, c);
            }
        }
        if (has_durable && c->state == ST_OPEN) {
            t->dur_conns.v[kept++] = c;
        } else {
            c->is_dur_listed = 0;
        }
    }
    t->dur_conns.n = kept;
}

/* Does a listed connection have room for more catch-up now? */
int cu_has_work(const struct iot *t)
{
    for (uint32_t i = 0; i < t->cu_conns.n; i++) {
        if (cu_has_room(t, t->cu_conns.v[i])) {
            return 1;
        }
    }
    return 0;
}

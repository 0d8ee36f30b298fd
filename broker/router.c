/*
 * router.c - match, group per connection, hand off.
 *
 * For each publication the trie yields the matching subscriptions; those of
 * one connection are folded into a single delivery carrying all their ids.
 * Deliveries point into the publication batch (the Deliver body was encoded
 * once by the IO thread that read the Publish), so fan-out copies no payload.
 * Deliveries for each IO thread are collected over a whole batch of inbound
 * items and handed over together (router_flush): one mailbox post per IO
 * thread, or at once to the IO thread that runs this router in its own
 * loop (--reactor single). The same code routes in every reactor variant.
 */
#include "router.h"

#include "codec.h"
#include "log.h"
#include "store.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct router_hit {
    uint64_t owner;
    uint64_t key; /* trie_sub.key: the subscription's identity, not its reusable sub_id */
};

struct router_outbox {
    struct rmsg *m;
    uint32_t n, cap;
};

int router_init(struct router *rt, struct server *s, uint32_t index, struct stats *stats)
{
    memset(rt, 0, sizeof(*rt));
    rt->srv = s;
    rt->index = index;
    rt->stats = stats;
    trie_init(&rt->trie);
    rt->out = calloc(s->n_iot, sizeof(*rt->out));
    return rt->out == NULL ? -ENOMEM : 0;
}

void router_deinit(struct router *rt)
{
    trie_deinit(&rt->trie);
    if (rt->out != NULL) {
        for (uint32_t i = 0; i < rt->srv->n_iot; i++) {
            free(rt->out[i].m);
        }
    }
    free(rt->out);
    free(rt->hits);
}

static void on_hit(void *ctx, struct trie_sub *s)
{
    struct router *rt = ctx;
    if (rt->n_hits == rt->hits_cap) {
        uint32_t cap = rt->hits_cap ? rt->hits_cap * 2 : 64;
        struct router_hit *h = realloc(rt->hits, cap * sizeof(*h));
        if (h == NULL) {
            return; /* counted as not delivered; logged by the caller */
        }
        rt->hits = h;
        rt->hits_cap = cap;
    }
    rt->hits[rt->n_hits].owner = s->owner;
    rt->hits[rt->n_hits].key = s->key;
    rt->n_hits++;
}

static int hit_cmp(const void *a, const void *b)
{
    const struct router_hit *x = a, *y = b;
    if (x->owner != y->owner) {
        return x->owner < y->owner ? -1 : 1;
    }
    return (x->key > y->key) - (x->key < y->key);
}

static struct rmsg *out_slot(struct router *rt, uint32_t iot)
{
    struct router_outbox *o = &rt->out[iot];
    if (o->n == o->cap) {
        uint32_t cap = o->cap ? o->cap * 2 : 256;
        struct rmsg *m = realloc(o->m, cap * sizeof(*m));
        if (m == NULL) {
            return NULL;
        }
        o->m = m;
        o->cap = cap;
    }
    return &o->m[o->n++];
}

static void route(struct router *rt, struct pub_batch *b, struct pub_rec *r)
{
    const char *topic = pub_rec_topic(r);
    rt->n_hits = 0;
    /* An expired message (Publish.ttl_ms) goes to nobody; its publisher is
     * answered as usual. */
    int is_expired = r->expire_time != 0 && r->expire_time <= now_realtime_ns();
    int n_match = is_expired ? 0 : trie_match(&rt->trie, topic, r->topic_len, on_hit, rt);
    stats_add(&rt->stats->routed, 1);
    if (rt->n_hits > 1) {
        qsort(rt->hits, rt->n_hits, sizeof(*rt->hits), hit_cmp);
    }
    uint32_t body_off = (uint32_t)((unsigned char *)r - b->data) + r->body_off;
    for (uint32_t i = 0; i < rt->n_hits;) {
        uint32_t j = i + 1;
        while (j < rt->n_hits && rt->hits[j].owner == rt->hits[i].owner) {
            j++;
        }
        uint64_t owner = rt->hits[i].owner;
        struct rmsg *m = out_slot(rt, CONN_REF_IOT(owner));
        if (m == NULL) {
            log_error("worker %u: out of memory, delivery dropped", rt->index);
            i = j;
            continue;
        }
        m->kind = R_DELIVER;
        m->conn_ref = owner;
        m->batch = b;
        m->body_off = body_off;
        m->body_len = r->body_len;
        uint32_t n = 0;
        for (uint32_t k = i; k < j; k++) {
            /* Two patterns of one subscription cannot both match; skip
             * duplicate keys defensively anyway. */
            if (k > i && rt->hits[k].key == rt->hits[k - 1].key) {
                continue;
            }
            n++;
        }
        m->n_ids = n;
        uint64_t *ids = m->u.ids;
        if (n > RMSG_INLINE_IDS) {
            ids = malloc(n * sizeof(*ids));
            if (ids == NULL) {
                rt->out[CONN_REF_IOT(owner)].n--;
                log_error("worker %u: out of memory, delivery dropped", rt->index);
                i = j;
                continue;
            }
            m->u.ext_ids = ids;
        }
        n = 0;
        for (uint32_t k = i; k < j; k++) {
            if (k > i && rt->hits[k].key == rt->hits[k - 1].key) {
                continue;
            }
            ids[n++] = rt->hits[k].key; /* sorted: the IO thread relies on it */
        }
        atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
        stats_add(&rt->stats->deliveries, 1);
        i = j;
    }
    /* A request (reply_to) on an ephemeral topic that nobody subscribes
     * to cannot be answered: say so now rather than let the requester wait
     * for its timeout. n_match counts the matches even if on_hit ran out
     * of memory. (A stored request is stored and acked: the store always
     * takes it.) */
    uint32_t code = r->has_reply_to && !r->is_stored && n_match <= 0
                        ? (uint32_t)FERRY__ERROR_CODE__ERROR_NO_RESPONDERS
                        : 0;
    if ((r->want_ack || code != 0) && !r->is_stored) {
        /* Ephemeral topic: "routed" is the ack point. (A stored message was
         * acked by the writer after its commit.) */
        struct rmsg *m = out_slot(rt, CONN_REF_IOT(r->conn_ref));
        if (m) {
            memset(m, 0, sizeof(*m));
            m->kind = r->want_ack ? R_PUBACK : R_PUBERR;
            m->n_ids = code;
            m->conn_ref = r->conn_ref;
            m->u.ack.id = r->pub_id;
        } else {
            log_error("worker %u: out of memory, PubAck dropped", rt->index);
        }
    }
}

static void route_batch(struct router *rt, struct pub_batch *b)
{
    uint32_t off = 0;
    while (off < b->len) {
        struct pub_rec *r = (struct pub_rec *)(b->data + off);
        route(rt, b, r);
        off += r->rec_len;
    }
    pub_batch_unref(b);
}

/* A committed batch from the store writer: route the records this worker
 * owns, in order (their sequence order). Refused ones (seq 0) are skipped. */
static void route_stored(struct router *rt, struct pub_batch *b)
{
    uint32_t off = 0;
    while (off < b->len) {
        struct pub_rec *r = (struct pub_rec *)(b->data + off);
        if (r->worker == rt->index && r->seq != 0) {
            route(rt, b, r);
        }
        off += r->rec_len;
    }
    pub_batch_unref(b);
}

/* A catch-up subscription to a topic this worker owns is in the trie now:
 * every message routed after this point reaches it live. Tell its IO
 * thread, which reads the store up to its end for what was routed before
 * (see struct catchup; routed but not readable yet is waited for there). */
static void sub_ready(struct router *rt, struct trie_sub *s)
{
    struct rmsg *m = out_slot(rt, CONN_REF_IOT(s->owner));
    if (m == NULL) {
        log_error("worker %u: out of memory, catch-up of subscription %llu stalls", rt->index,
                  (unsigned long long)s->sub_id);
        return;
    }
    memset(m, 0, sizeof(*m));
    m->kind = R_SUB_READY;
    m->conn_ref = s->owner;
    m->u.ack.id = s->key;
}

/* An admin TopicInfoRequest for a topic this worker owns (see struct
 * topic_info_req): count the subscriptions matching it here, where the
 * trie is ours to read, and answer. Every worker holds every subscription,
 * so any could count; the owner's trie is the one that routes the topic, so
 * the count is what a message published now is matched against. A
 * subscription whose SubAck was sent is counted: its change was in every
 * worker's queue before the SubAck left (io_thread.c, handle_subscribe). */
static void topic_info(struct router *rt, struct topic_info_req *q)
{
    int n = trie_count(&rt->trie, q->topic, q->topic_len);
    Ferry__TopicInfo ti = FERRY__TOPIC_INFO__INIT;
    Ferry__TopicInfo *tip = &ti;
    ti.name = q->topic;
    ti.messages = q->messages;
    ti.bytes = q->bytes;
    ti.first_seq = q->first_seq;
    ti.last_seq = q->last_seq;
    ti.is_ephemeral = q->is_ephemeral;
    ti.subscribers = n > 0 ? (uint64_t)n : 0;
    Ferry__AdminReply r = FERRY__ADMIN_REPLY__INIT;
    r.id = q->admin_id;
    r.n_topics = 1;
    r.topics = &tip;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_ADMIN_REPLY;
    f.admin_reply = &r;
    uint32_t iot = CONN_REF_IOT(q->conn_ref);
    struct rmsg *m = out_slot(rt, iot);
    if (m == NULL) {
        log_error("worker %u: out of memory answering a topic info request", rt->index);
    } else {
        memset(m, 0, sizeof(*m));
        m->kind = R_RAW;
        m->conn_ref = q->conn_ref;
        if (codec_frame_encode_alloc(&f, &m->u.raw.buf, &m->u.raw.len) < 0) {
            rt->out[iot].n--;
            log_error("worker %u: out of memory answering a topic info request", rt->index);
        }
    }
    free(q);
}

int router_handle(struct router *rt, struct wmsg *m)
{
    switch (m->kind) {
    case W_SUB_ADD: {
        struct trie_sub *s = m->p;
        if (trie_add(&rt->trie, s) < 0) {
            log_error("worker %u: cannot index subscription %llu (%s): out of memory", rt->index,
                      (unsigned long long)s->sub_id, s->pattern);
        }
        trie_sub_unref(s);
        break;
    }
    case W_SUB_DEL: {
        struct trie_sub *s = m->p;
        trie_remove(&rt->trie, s);
        trie_sub_unref(s);
        break;
    }
    case W_PUB_BATCH:
        route_batch(rt, m->p);
        break;
    case W_STORED:
        route_stored(rt, m->p);
        break;
    case W_SUB_READY:
        sub_ready(rt, m->p);
        trie_sub_unref(m->p);
        break;
    case W_TOPIC_INFO:
        topic_info(rt, m->p);
        break;
    case W_STOP:
        return 1;
    default:
        break;
    }
    return 0;
}

/* Hand each IO thread its results: one mailbox post per thread, or, for
 * the IO thread running this worker inline (local), at once. */
void router_flush(struct router *rt, const struct rsink *local)
{
    for (uint32_t i = 0; i < rt->srv->n_iot; i++) {
        struct router_outbox *o = &rt->out[i];
        if (o->n == 0) {
            continue;
        }
        if (local != NULL && local->iot == i) {
            local->fn(local->arg, o->m, o->n);
        } else if (mbox_post(rt->srv->iot_in[i], o->m, o->n) < 0) {
            /* Blocking is safe: IO threads never wait for workers. */
            log_error("worker %u: IO thread %u closed its mailbox", rt->index, i);
        }
        o->n = 0;
    }
}

/*
 * worker.c - match, group per connection, hand off.
 *
 * For each publication the trie yields the matching subscriptions; those of
 * one connection are folded into a single delivery carrying all their ids.
 * Deliveries point into the publication batch (the Deliver body was encoded
 * once by the IO thread that read the Publish), so fan-out copies no payload.
 * Deliveries for each IO thread are collected over a whole batch of inbound
 * items and posted with one mailbox operation.
 */
#include "worker.h"

#include "codec.h"
#include "io_thread.h"
#include "log.h"
#include "store.h"
#include "trie.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define WORKER_TAKE 256

struct hit {
    uint64_t owner;
    uint64_t key; /* trie_sub.key: the subscription's identity, not its reusable sub_id */
};

struct outbox {
    struct rmsg *m;
    uint32_t n, cap;
};

struct worker {
    struct stats stats; /* this thread's counters */
    struct server *srv;
    uint32_t index;
    pthread_t thread;
    int is_started;
    struct mbox in;   /* IO threads -> this worker */
    struct trie trie; /* worker thread only */
    struct hit *hits; /* worker thread only: scratch for one match */
    uint32_t n_hits, hits_cap;
    struct outbox *out; /* worker thread only: per IO thread */
};

void pub_batch_unref(struct pub_batch *b)
{
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) {
        free(b);
    }
}

struct worker *worker_create(struct server *s, uint32_t index)
{
    struct worker *w = aligned_alloc(64, (sizeof(*w) + 63) & ~(size_t)63);
    if (w == NULL) {
        return NULL;
    }
    memset(w, 0, sizeof(*w));
    w->srv = s;
    w->index = index;
    trie_init(&w->trie);
    w->out = calloc(s->n_iot, sizeof(*w->out));
    /* An eventfd only when an IO thread runs this worker in its loop. */
    int use_fd = s->cfg.reactor_mode == REACTOR_SINGLE;
    if (w->out == NULL || mbox_init(&w->in, sizeof(struct wmsg), s->cfg.worker_queue, use_fd) < 0) {
        free(w->out);
        free(w);
        return NULL;
    }
    return w;
}

struct mbox *worker_mbox(struct worker *w)
{
    return &w->in;
}

struct stats *worker_stats(struct worker *w)
{
    return &w->stats;
}

static void on_hit(void *ctx, struct trie_sub *s)
{
    struct worker *w = ctx;
    if (w->n_hits == w->hits_cap) {
        uint32_t cap = w->hits_cap ? w->hits_cap * 2 : 64;
        struct hit *h = realloc(w->hits, cap * sizeof(*h));
        if (h == NULL) {
            return; /* counted as not delivered; logged by the caller */
        }
        w->hits = h;
        w->hits_cap = cap;
    }
    w->hits[w->n_hits].owner = s->owner;
    w->hits[w->n_hits].key = s->key;
    w->n_hits++;
}

static int hit_cmp(const void *a, const void *b)
{
    const struct hit *x = a, *y = b;
    if (x->owner != y->owner) {
        return x->owner < y->owner ? -1 : 1;
    }
    return (x->key > y->key) - (x->key < y->key);
}

static struct rmsg *out_slot(struct worker *w, uint32_t iot)
{
    struct outbox *o = &w->out[iot];
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

static void route(struct worker *w, struct pub_batch *b, struct pub_rec *r)
{
    const char *topic = (const char *)(r + 1);
    w->n_hits = 0;
    trie_match(&w->trie, topic, r->topic_len, on_hit, w);
    stats_add(&w->stats.routed, 1);
    if (w->n_hits > 1) {
        qsort(w->hits, w->n_hits, sizeof(*w->hits), hit_cmp);
    }
    uint32_t body_off = (uint32_t)((unsigned char *)r - b->data) + r->body_off;
    for (uint32_t i = 0; i < w->n_hits;) {
        uint32_t j = i + 1;
        while (j < w->n_hits && w->hits[j].owner == w->hits[i].owner) {
            j++;
        }
        uint64_t owner = w->hits[i].owner;
        struct rmsg *m = out_slot(w, CONN_REF_IOT(owner));
        if (m == NULL) {
            log_error("worker %u: out of memory, delivery dropped", w->index);
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
            if (k > i && w->hits[k].key == w->hits[k - 1].key) {
                continue;
            }
            n++;
        }
        m->n_ids = n;
        uint64_t *ids = m->u.ids;
        if (n > RMSG_INLINE_IDS) {
            ids = malloc(n * sizeof(*ids));
            if (ids == NULL) {
                w->out[CONN_REF_IOT(owner)].n--;
                log_error("worker %u: out of memory, delivery dropped", w->index);
                i = j;
                continue;
            }
            m->u.ext_ids = ids;
        }
        n = 0;
        for (uint32_t k = i; k < j; k++) {
            if (k > i && w->hits[k].key == w->hits[k - 1].key) {
                continue;
            }
            ids[n++] = w->hits[k].key; /* sorted: the IO thread relies on it */
        }
        atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
        stats_add(&w->stats.deliveries, 1);
        i = j;
    }
    if (r->want_ack && !r->is_stored) {
        /* Ephemeral topic: "routed" is the ack point. (A stored message was
         * acked by the writer after its commit.) */
        struct rmsg *m = out_slot(w, CONN_REF_IOT(r->conn_ref));
        if (m) {
            memset(m, 0, sizeof(*m));
            m->kind = R_PUBACK;
            m->conn_ref = r->conn_ref;
            m->u.pub_id = r->pub_id;
        } else {
            log_error("worker %u: out of memory, PubAck dropped", w->index);
        }
    }
}

static void route_batch(struct worker *w, struct pub_batch *b)
{
    uint32_t off = 0;
    while (off < b->len) {
        struct pub_rec *r = (struct pub_rec *)(b->data + off);
        route(w, b, r);
        off += r->rec_len;
    }
    pub_batch_unref(b);
}

/* A committed batch from the store writer: route the records this worker
 * owns, in order (their sequence order). Refused ones (seq 0) are skipped. */
static void route_stored(struct worker *w, struct pub_batch *b)
{
    uint32_t off = 0;
    while (off < b->len) {
        struct pub_rec *r = (struct pub_rec *)(b->data + off);
        if (r->worker == w->index && r->seq != 0) {
            route(w, b, r);
        }
        off += r->rec_len;
    }
    pub_batch_unref(b);
}

/* A catch-up subscription to a topic this worker owns is in the trie now:
 * every message committed after this point will be routed to it live. Tell
 * its IO thread the topic's last committed sequence, below which it must
 * read the store. (Committed but not yet routed messages come live too; the
 * IO thread drops what it already had from the store.) */
static void sub_ready(struct worker *w, struct trie_sub *s)
{
    struct store_topic_info info;
    uint64_t last = 0;
    int rc = store_topic_info(w->srv->store, s->pattern, s->pattern_len, &info);
    if (rc == 0) {
        last = info.last_seq;
    } else if (rc != FERRY_ENOTOPIC) {
        /* Unknown: make the IO thread read the store up to its end. */
        log_warn("worker %u: topic %s: %s", w->index, s->pattern, server_strerror(rc));
        last = UINT64_MAX;
    }
    struct rmsg *m = out_slot(w, CONN_REF_IOT(s->owner));
    if (m == NULL) {
        log_error("worker %u: out of memory, catch-up of subscription %llu stalls", w->index,
                  (unsigned long long)s->sub_id);
        return;
    }
    memset(m, 0, sizeof(*m));
    m->kind = R_SUB_READY;
    m->conn_ref = s->owner;
    m->u.ack.id = s->key;
    m->u.ack.seq = last;
}

/* An admin TopicInfoRequest for a topic this worker owns (see struct
 * topic_info_req): count the subscriptions matching it here, where the
 * trie is ours to read, and answer. Every worker holds every subscription,
 * so any could count; the owner's trie is the one that routes the topic, so
 * the count is what a message published now is matched against. A
 * subscription whose SubAck was sent is counted: its change was in every
 * worker's queue before the SubAck left (io_thread.c, handle_subscribe). */
static void topic_info(struct worker *w, struct topic_info_req *q)
{
    int n = trie_count(&w->trie, q->topic, q->topic_len);
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
    struct rmsg *m = out_slot(w, iot);
    if (m == NULL) {
        log_error("worker %u: out of memory answering a topic info request", w->index);
    } else {
        memset(m, 0, sizeof(*m));
        m->kind = R_RAW;
        m->conn_ref = q->conn_ref;
        if (codec_frame_encode_alloc(&f, &m->u.raw.buf, &m->u.raw.len) < 0) {
            w->out[iot].n--;
            log_error("worker %u: out of memory answering a topic info request", w->index);
        }
    }
    free(q);
}

/* Hand each IO thread its results: one mailbox post per thread, or, for
 * the IO thread running this worker inline (local), at once. */
static void flush_out(struct worker *w, struct iot *local)
{
    for (uint32_t i = 0; i < w->srv->n_iot; i++) {
        struct outbox *o = &w->out[i];
        if (o->n == 0) {
            continue;
        }
        if (local != NULL && w->srv->iots[i] == local) {
            iot_mail_handle(local, o->m, o->n);
        } else if (mbox_post(iot_mbox(w->srv->iots[i]), o->m, o->n) < 0) {
            /* Blocking is safe: IO threads never wait for workers. */
            log_error("worker %u: IO thread %u closed its mailbox", w->index, i);
        }
        o->n = 0;
    }
}

/* One round: take up to WORKER_TAKE items, handle them, hand over the
 * results (flush_out). Returns 0 once W_STOP was taken; *is_full: as many
 * items as allowed were taken (more may be queued). */
static int worker_round(struct worker *w, struct iot *local, int *is_full)
{
    struct wmsg batch[WORKER_TAKE];
    int running = 1;
    int was_refused = 0;
    uint32_t n = mbox_take(&w->in, batch, WORKER_TAKE, &was_refused);
    *is_full = n == WORKER_TAKE;
    for (uint32_t i = 0; i < n; i++) {
        struct wmsg *m = &batch[i];
        switch (m->kind) {
        case W_SUB_ADD: {
            struct trie_sub *s = m->p;
            if (trie_add(&w->trie, s) < 0) {
                log_error("worker %u: cannot index subscription %llu (%s): out of memory", w->index,
                          (unsigned long long)s->sub_id, s->pattern);
            }
            trie_sub_unref(s);
            break;
        }
        case W_SUB_DEL: {
            struct trie_sub *s = m->p;
            trie_remove(&w->trie, s);
            trie_sub_unref(s);
            break;
        }
        case W_PUB_BATCH:
            route_batch(w, m->p);
            break;
        case W_STORED:
            route_stored(w, m->p);
            break;
        case W_SUB_READY:
            sub_ready(w, m->p);
            trie_sub_unref(m->p);
            break;
        case W_TOPIC_INFO:
            topic_info(w, m->p);
            break;
        case W_STOP:
            running = 0;
            break;
        default:
            break;
        }
    }
    flush_out(w, local);
    if (was_refused) {
        /* Some IO thread stopped reading publishers because we were full:
         * there is room now. */
        for (uint32_t i = 0; i < w->srv->n_iot; i++) {
            mbox_wake(iot_mbox(w->srv->iots[i]));
        }
    }
    return running;
}

int worker_run_inline(struct worker *w, struct iot *t)
{
    int is_full = 0;
    (void)worker_round(w, t, &is_full);
    return is_full;
}

int worker_fd(struct worker *w)
{
    return mbox_fd(&w->in);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    int running = 1;
    while (running) {
        mbox_wait(&w->in, -1);
        int is_full;
        running = worker_round(w, NULL, &is_full);
    }
    return NULL;
}

int worker_start(struct worker *w)
{
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc != 0) {
        return -rc;
    }
    w->is_started = 1;
    return 0;
}

void worker_stop(struct worker *w)
{
    if (!w->is_started) {
        return;
    }
    struct wmsg stop = {.kind = W_STOP};
    mbox_post(&w->in, &stop, 1);
    pthread_join(w->thread, NULL);
    w->is_started = 0;
}

void worker_destroy(struct worker *w)
{
    if (w == NULL) {
        return;
    }
    /* Drop whatever is still queued (only after an aborted start). */
    struct wmsg m;
    while (mbox_take(&w->in, &m, 1, NULL) == 1) {
        if (m.kind == W_SUB_ADD || m.kind == W_SUB_DEL || m.kind == W_SUB_READY) {
            trie_sub_unref(m.p);
        } else if (m.kind == W_PUB_BATCH || m.kind == W_STORED) {
            pub_batch_unref(m.p);
        } else if (m.kind == W_TOPIC_INFO) {
            free(m.p);
        }
    }
    trie_deinit(&w->trie);
    for (uint32_t i = 0; i < w->srv->n_iot; i++) {
        free(w->out[i].m);
    }
    free(w->out);
    free(w->hits);
    mbox_deinit(&w->in);
    free(w);
}

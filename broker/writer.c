/*
 * writer.c - drain, append, commit, then ack and hand over.
 *
 * One round: take everything queued (up to WRITER_TAKE items), append every
 * stored publication of those batches to the open store batch, log it (the
 * store's write-ahead log: one sequential sync), then post the PubAcks (per
 * IO thread, one mailbox operation each). The size of a group commit is
 * whatever queued while the previous one was syncing, so one message alone
 * is acked at once and a busy broker pays one sync for thousands.
 *
 * The group's publications go to the workers for routing right after its
 * log record (one sequential sync), with its PubAcks: a subscriber gets a
 * message as soon as it is durable. The store batch itself (an LMDB
 * transaction, no sync) stays open over many groups and is committed
 * commit_interval_ms after it began (config.h), or at once when a reader
 * asks for it (server_store_readable: a catch-up at its seam, a
 * redelivery, a Subscribe or admin request): LMDB copies about ten pages
 * per commit, however small, and those copies were most of what the disk
 * wrote, and what the log's syncs waited behind. So a routed message may
 * not be readable yet; readers that need it wait for the commit (server.h,
 * struct store_gens). A group of large messages skips the log: it is
 * committed and checkpointed first, then routed and acked (store.h,
 * store_batch_log).
 *
 * Order: the writer appends in the order its mailbox delivers, which is each
 * IO thread's order of reading; a topic's sequence numbers follow that order,
 * and every committed batch goes to a worker in the same order, so a topic's
 * worker routes its messages in sequence order.
 */
#include "writer.h"

#include "backup.h"
#include "codec.h"
#include "consumer.h"
#include "ferry.h"
#include "log.h"
#include "retention.h"
#include "store.h"
#include "topic.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WRITER_TAKE 64              /* mailbox items (batches of up to 64 KiB) per commit */
#define CONS_RELEASE_GRACE_MS 2000  /* a durable nobody held this long leaves memory */
#define CONS_RELEASE_EVERY_MS 500   /* how often the registry is looked over for them */
#define DEDUPE_EVERY_MIN_MS 1000    /* expiry passes over producer sequences: at most this often */
#define DEDUPE_EVERY_MAX_MS 3600000 /* and at least this often */
#define SCHED_TAKE 256              /* scheduled messages moved to their topics per round */
#define SCHED_WAIT_MAX_MS 1000      /* the wall clock may jump: look again at least this often */

struct outbox {
    struct rmsg *m;
    uint32_t n, cap;
};

struct writer {
    struct server *srv;
    pthread_t thread;
    int is_started;
    struct mbox in; /* IO threads -> writer */
    /* Everything below: the writer thread only. */
    struct store_batch *b;     /* open store batch, or NULL */
    uint64_t b_began_us;       /* when b was opened (monotonic) */
    struct pub_rec **appended; /* records appended to b and not answered yet, in order */
    uint32_t n_appended, appended_cap;
    struct pub_batch **fwd; /* batches taken and not routed yet: routed once logged */
    uint32_t n_fwd, fwd_cap;
    struct outbox *out; /* per IO thread: acks */
    uint8_t *touched;   /* per worker: scratch for one batch */
    struct store_kv hdr[CODEC_MAX_HEADERS];
    uint64_t next_sync;     /* monotonic ms; sync interval only */
    struct retention *ret;  /* NULL: no retention rules */
    int ret_wait;           /* ms until retention wants to run, -1: never */
    int is_cons_unsaved;    /* the last save of consumer state failed: retry soon */
    uint64_t next_release;  /* monotonic ms: next cons_reg_release_idle() */
    int is_release_waiting; /* unheld durables wait for their grace to pass */
    uint32_t *serial;       /* per IO thread: its last stored publication taken */
    uint8_t *has_serial;    /* per IO thread: serial moved this round */
    struct rmsg *held;      /* R_PONGs waiting for consumer state to be saved */
    uint32_t n_held, held_cap;
    uint64_t next_dedupe;               /* monotonic ms: the next expiry pass (dedupe_window) */
    int is_dedupe_running;              /* a pass is under way: one chunk per round */
    struct store_dedupe_pos dedupe_pos; /* where it goes on */
    int64_t next_due;                   /* wall clock ns: the earliest scheduled message */
    void *sched_buf;                    /* store_batch_sched_pop()'s copy */
    size_t sched_buf_cap;
    int is_sched_stuck; /* the last move was refused (logged once) */
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int outbox_push(struct outbox *o, const struct rmsg *m)
{
    if (o->n == o->cap) {
        uint32_t cap = o->cap ? o->cap * 2 : 256;
        struct rmsg *v = realloc(o->m, cap * sizeof(*v));
        if (v == NULL) {
            return -ENOMEM;
        }
        o->m = v;
        o->cap = cap;
    }
    o->m[o->n++] = *m;
    return 0;
}

struct writer *writer_create(struct server *s)
{
    struct writer *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return NULL;
    }
    w->srv = s;
    w->ret = retention_create(s);
    if (w->ret == NULL && s->store != NULL) {
        free(w);
        return NULL;
    }
    w->ret_wait = w->ret ? 0 : -1;
    w->out = calloc(s->n_iot, sizeof(*w->out));
    w->touched = calloc(s->n_workers, 1);
    w->serial = calloc(s->n_iot, sizeof(*w->serial));
    w->has_serial = calloc(s->n_iot, 1);
    if (w->out == NULL || w->touched == NULL || w->serial == NULL || w->has_serial == NULL ||
        mbox_init(&w->in, sizeof(struct wmsg), s->cfg.worker_queue, 0) < 0) {
        free(w->out);
        free(w->touched);
        free(w->serial);
        free(w->has_serial);
        retention_destroy(w->ret);
        free(w);
        return NULL;
    }
    s->writer_in = &w->in;
    return w;
}

/* The store failed: log why and stop the process before anything of the
 * failed batch can be acknowledged. Acks of earlier, successful commits may
 * still be on their way out; they are true. */
static void fail_stop(struct writer *w, int rc, const char *what)
{
    struct store_stats st;
    store_stats(w->srv->store, &st);
    log_error("store failed during %s: %s (%s); fail-stop: the batch is not acknowledged and "
              "ferryd exits now. Check the disk, then restart (committed data is intact).",
              what, st.fail_reason ? st.fail_reason : "unknown reason", server_strerror(rc));
    _exit(1);
}

static uint32_t wire_code(int rc)
{
    switch (rc) {
    case FERRY_ESTORAGEFULL:
        return FERRY__ERROR_CODE__ERROR_STORAGE_FULL;
    case FERRY_EINVAL:
        return FERRY__ERROR_CODE__ERROR_INVALID_TOPIC;
    case -ENOMEM:
        return FERRY__ERROR_CODE__ERROR_SERVER_BUSY;
    default:
        return FERRY__ERROR_CODE__ERROR_STORAGE_FAILED;
    }
}

/* Queue the answer for r: its PubAck (want_ack), or an Error if refused. */
static void answer(struct writer *w, const struct pub_rec *r, uint32_t code)
{
    if ((!r->want_ack && code == 0) || pub_rec_st(r)->sched_id != 0) {
        return; /* a scheduled message's move has nobody to answer */
    }
    struct rmsg m;
    memset(&m, 0, sizeof(m));
    m.kind = r->want_ack ? R_PUBACK : R_PUBERR;
    m.n_ids = code | (code == 0 && r->is_duplicate ? R_PUBACK_DUPLICATE : 0) |
              (code == 0 && r->is_scheduled ? R_PUBACK_SCHEDULED : 0);
    m.conn_ref = r->conn_ref;
    m.u.ack.id = r->pub_id;
    m.u.ack.seq = code ? 0 : r->seq;
    if (outbox_push(&w->out[CONN_REF_IOT(r->conn_ref)], &m) < 0) {
        log_error("store writer: out of memory, a PubAck for publish %llu is lost",
                  (unsigned long long)r->pub_id);
    }
}

/* The message of a stored record, from the spans its builder recorded
 * (pub_rec_init): pointers into the body; only the headers are read, into
 * w->hdr. */
static int rec_message(struct writer *w, const struct pub_rec *r, struct store_msg_in *m)
{
    const uint8_t *body = (const uint8_t *)r + r->body_off;
    const struct pub_rec_st *st = pub_rec_st(r);
    memset(m, 0, sizeof(*m));
    m->publish_time = r->publish_time;
    m->expire_time = r->expire_time;
    m->unsched_due = st->sched_due;
    m->unsched_id = st->sched_id;
    m->payload = body + st->sp.payload_off;
    m->payload_len = st->sp.payload_len;
    m->key = body + st->sp.key_off;
    m->key_len = st->sp.key_len;
    m->headers = w->hdr;
    const uint8_t *h = body + st->sp.hdr_off, *end = h + st->sp.hdr_len;
    struct codec_hdr kv;
    int rc;
    while ((rc = codec_header_next(&h, end, &kv)) == 1) {
        if (m->n_headers == CODEC_MAX_HEADERS) {
            return -1;
        }
        w->hdr[m->n_headers++] = (struct store_kv){kv.key, kv.key_len, kv.value, kv.value_len};
    }
    return rc;
}

static int begin(struct writer *w);
static void forward(struct writer *w, struct pub_batch *b);

/* Note a failed save of durable consumer state once, and retry it soon. */
static void cons_unsaved(struct writer *w, int rc)
{
    if (!w->is_cons_unsaved) {
        log_warn("store: durable consumer state not saved yet (retrying): %s", server_strerror(rc));
    }
    w->is_cons_unsaved = 1;
}

/* Answer every record appended and not answered yet: stored (rc 0, each
 * with its sequence) or refused with rc. */
static void answer_appended(struct writer *w, int rc)
{
    struct cons_reg *reg = w->srv->consumers;
    for (uint32_t i = 0; i < w->n_appended; i++) {
        struct pub_rec *r = w->appended[i];
        if (CONN_REF_SLOT(r->conn_ref) == CONS_DLQ_SLOT && reg != NULL) {
            cons_dlq_done(reg, CONN_REF_GEN(r->conn_ref), r->pub_id, rc == 0);
        }
        if (rc == 0 && (r->is_duplicate || r->is_scheduled)) {
            answer(w, r, 0); /* duplicate: the first one's sequence, durable now */
            r->seq = 0;      /* not routed */
        } else if (rc == 0) {
            pub_seq_put((uint8_t *)r + r->body_off + r->body_len, r->seq);
            answer(w, r, 0);
        } else {
            r->seq = 0;
            answer(w, r, wire_code(rc));
        }
    }
    if (rc != 0 && w->n_appended > 0) {
        log_warn("store: a commit of %u messages was refused: %s", w->n_appended,
                 server_strerror(rc));
    }
    w->n_appended = 0;
}

/* Hand the batches taken so far to the workers: their records are in the
 * log, or committed, or refused. Records in the open store batch are not
 * readable yet: the routed generation moves first (struct store_gens), and
 * the batch's commit makes readable catch up. */
static void route_logged(struct writer *w)
{
    if (w->n_fwd == 0) {
        return;
    }
    if (w->b != NULL) {
        atomic_fetch_add_explicit(&w->srv->gens.routed, 1, memory_order_release);
    }
    for (uint32_t i = 0; i < w->n_fwd; i++) {
        forward(w, w->fwd[i]);
    }
    w->n_fwd = 0;
}

/* Commit the open store batch (LMDB): what is not answered yet is answered
 * with the commit's result, and what is not routed yet is routed. Then
 * readers may see everything routed, and the IO threads waiting for that
 * are woken. */
static int commit_store(struct writer *w)
{
    struct server *s = w->srv;
    int rc = 0;
    if (w->b != NULL) {
        rc = store_batch_commit(w->b);
        w->b = NULL;
        if (rc == FERRY_ESTORAGE) {
            fail_stop(w, rc, "a commit");
        }
    }
    answer_appended(w, rc);
    atomic_store(&s->gens.readable, atomic_load(&s->gens.routed));
    route_logged(w); /* (committed: no new generation) */
    int is_wanted = atomic_exchange(&s->gens.is_wanted, 0);
    /* Committed: a Subscribe waiting behind its own publications may go on
     * (conn.c, conn_wait_stored). */
    for (uint32_t i = 0; i < s->n_iot; i++) {
        if (w->has_serial[i]) {
            w->has_serial[i] = 0;
            server_committed(s, i, w->serial[i]);
        }
    }
    if (is_wanted) {
        server_wake_iots(s);
    }
    return rc;
}

/* Is the open store batch due for its LMDB commit: asked for by a reader
 * (or by an IO thread for its connection's Subscribe), or open long enough?
 * Sets *wait_ms to the time left when it is not. */
static int commit_is_due(struct writer *w, int *wait_ms)
{
    struct server *s = w->srv;
    if (w->b == NULL) {
        return 0;
    }
    if (atomic_load(&s->gens.is_wanted) || store_batch_commit_is_due(w->b)) {
        return 1;
    }
    for (uint32_t i = 0; i < s->n_iot; i++) {
        if (atomic_load(&s->commit[i].is_wanted)) {
            return 1;
        }
    }
    uint64_t every_us = (uint64_t)s->cfg.commit_interval_ms * 1000u;
    uint64_t open_us = now_us() - w->b_began_us;
    if (open_us >= every_us) {
        return 1;
    }
    *wait_ms = (int)((every_us - open_us + 999) / 1000);
    return 0;
}

/*
 * Group commit: put the state of every durable consumer changed since the
 * last one (consumer.h, PERSISTENCE) into the open batch, make the batch
 * durable (store_batch_log: one sync), and answer its publications. With no
 * message but dirty consumers, a batch is opened for them. A batch too
 * large for the log is committed here instead (commit_store).
 */
static void group_commit(struct writer *w)
{
    struct cons_reg *reg = w->srv->consumers;
    struct cons_save sv = {0};
    if (reg != NULL) {
        int rc = cons_reg_save_begin(reg, &sv);
        if (rc < 0) {
            cons_unsaved(w, rc);
        } else if (sv.n == 0) {
            w->is_cons_unsaved = 0; /* nothing changed that is not stored */
        }
    }
    if (w->b == NULL && sv.n > 0) {
        int rc = begin(w);
        if (rc < 0) {
            cons_reg_save_end(reg, &sv, rc);
            cons_unsaved(w, rc);
            return;
        }
    }
    if (w->b == NULL) {
        return;
    }
    int rc = sv.n > 0 ? store_batch_put_consumers(w->b, sv.recs, sv.n) : 0;
    if (rc < 0) {
        cons_reg_save_end(reg, &sv, rc);
        cons_unsaved(w, rc);
        sv.n = 0;
    }
    rc = store_batch_log(w->b);
    if (rc == FERRY_ESTORAGE) {
        fail_stop(w, rc, "a write to the log");
    }
    if (rc == 1) {
        /* Not logged (bulk, or too large for the log): a checkpointed
         * commit, visible before it is durable. Readers wait from here
         * until it is: at the generations' gate (no IO thread blocks), and
         * one that passed the gate just before, in store__rtxn_begin(). */
        atomic_fetch_add(&w->srv->gens.routed, 1);
        rc = commit_store(w);
    } else {
        answer_appended(w, 0);
    }
    if (sv.n > 0) {
        cons_reg_save_end(reg, &sv, rc);
        if (rc < 0) {
            cons_unsaved(w, rc);
        } else {
            w->is_cons_unsaved = 0;
        }
    }
}

/* Close the open batch: log what is new in it, then commit it. */
static void commit(struct writer *w)
{
    group_commit(w);
    commit_store(w);
}

static int begin(struct writer *w)
{
    if (w->b) {
        return 0;
    }
    int rc = store_batch_begin(w->srv->store, &w->b);
    if (rc == FERRY_ESTORAGE) {
        fail_stop(w, rc, "the start of a batch");
    }
    w->b_began_us = now_us();
    return rc;
}

/* Idempotent publishing: is r stored already? 1 (r marked a duplicate of
 * the sequence found, queued to be answered with the others), 0 (append
 * it), or -1 (answered with a refusal). The batch is open. */
static int dedupe(struct writer *w, struct pub_rec *r)
{
    uint64_t seq = 0;
    const struct pub_rec_st *st = pub_rec_st(r);
    int rc = store_batch_dedupe_find(w->b, pub_rec_topic(r), r->topic_len, st->producer_id,
                                     st->producer_seq, &seq);
    if (rc == FERRY_ESTORAGE) {
        fail_stop(w, rc, "a duplicate check");
    }
    if (rc < 0) {
        answer(w, r, wire_code(rc));
        return -1;
    }
    if (rc == 1) {
        /* Answered after this round's log, like the messages appended
         * before it, of which its first copy may be one. */
        r->is_duplicate = 1;
        r->seq = seq;
        w->appended[w->n_appended++] = r;
    }
    return rc;
}

static void append_one(struct writer *w, struct pub_rec *r)
{
    struct store_msg_in m;
    const char *topic = pub_rec_topic(r);
    const struct pub_rec_st *st = pub_rec_st(r);
    r->seq = 0;
    r->is_duplicate = 0;
    r->is_scheduled = 0;
    if (rec_message(w, r, &m) < 0) {
        log_error("store writer: publish %llu has a malformed body (a bug); refused",
                  (unsigned long long)r->pub_id);
        answer(w, r, FERRY__ERROR_CODE__ERROR_INTERNAL);
        return;
    }
    if (w->n_appended == w->appended_cap) {
        uint32_t cap = w->appended_cap ? w->appended_cap * 2 : 1024;
        struct pub_rec **v = realloc(w->appended, cap * sizeof(*v));
        if (v == NULL) {
            answer(w, r, FERRY__ERROR_CODE__ERROR_SERVER_BUSY);
            return;
        }
        w->appended = v;
        w->appended_cap = cap;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        int rc = begin(w);
        if (rc < 0) {
            answer(w, r, wire_code(rc));
            return;
        }
        if (st->producer_id != 0) {
            rc = dedupe(w, r);
            if (rc != 0) {
                return;
            }
            m.producer_id = st->producer_id;
            m.producer_seq = st->producer_seq;
        }
        /* A last-value topic's message updates its key's entry in the same
         * commit (store_lastval.c). A key too long for the index was
         * refused at publish; one in a dead letter is stored unindexed. */
        m.is_last_value = w->srv->cfg.n_last_value > 0 && m.key_len <= STORE_LASTVAL_KEY_MAX &&
                          cfg_is_last_value(&w->srv->cfg, topic, r->topic_len);
        struct store_append_result ar;
        rc = st->deliver_at != 0
                 ? store_batch_schedule(w->b, topic, r->topic_len, &m, st->deliver_at, &ar)
                 : store_batch_append(w->b, topic, r->topic_len, &m, &ar);
        if (rc == 0 && st->deliver_at != 0) {
            r->is_scheduled = 1; /* answered after the log; never routed */
            w->appended[w->n_appended++] = r;
            if (st->deliver_at < w->next_due) {
                w->next_due = st->deliver_at;
            }
            return;
        }
        if (rc == 0) {
            r->seq = ar.seq;
            w->appended[w->n_appended++] = r;
            if (m.expire_time != 0 && w->ret != NULL &&
                retention_note_expiring(w->ret, ar.topic_id) < 0) {
                log_warn("store writer: out of memory: expired messages of %.*s are kept",
                         (int)r->topic_len, topic);
            }
            if (CONN_REF_SLOT(r->conn_ref) == CONS_DLQ_SLOT && w->srv->consumers != NULL) {
                cons_dlq_committing(w->srv->consumers, CONN_REF_GEN(r->conn_ref), r->pub_id);
            }
            return;
        }
        if (rc == FERRY_ESTORAGE) {
            fail_stop(w, rc, "an append");
        }
        if (rc == FERRY_ELIMIT && attempt == 0 && store_batch_count(w->b) > 0) {
            commit(w); /* the batch is full: commit it, then append again */
            continue;
        }
        answer(w, r, wire_code(rc));
        return;
    }
}

/* Hand a committed batch to every worker owning one of its stored records. */
static void forward(struct writer *w, struct pub_batch *b)
{
    struct server *s = w->srv;
    uint32_t n_touched = 0;
    for (uint32_t off = 0; off < b->len;) {
        struct pub_rec *r = (struct pub_rec *)(b->data + off);
        if (r->seq && !w->touched[r->worker]) {
            w->touched[r->worker] = 1;
            n_touched++;
        }
        off += r->rec_len;
    }
    if (n_touched) {
        atomic_fetch_add_explicit(&b->refs, n_touched, memory_order_relaxed);
        for (uint32_t i = 0; i < s->n_workers; i++) {
            if (w->touched[i]) {
                w->touched[i] = 0;
                struct wmsg m = {.kind = W_STORED, .p = b};
                /* Blocking is safe: workers never wait for the writer. */
                if (mbox_post(s->worker_in[i], &m, 1) < 0) {
                    pub_batch_unref(b);
                }
            }
        }
    }
    pub_batch_unref(b);
}

/* A W_BARRIER: its Pong is held until the durable consumer state is saved
 * (at the latest by this round's last commit(), which runs after the take:
 * every Ack the connection sent before its Ping is in it). */
static void barrier_hold(struct writer *w, struct barrier *b)
{
    if (w->n_held == w->held_cap) {
        uint32_t cap = w->held_cap ? w->held_cap * 2 : 16;
        struct rmsg *v = realloc(w->held, cap * sizeof(*v));
        if (v == NULL) {
            /* No Pong: the client's flush times out rather than being
             * told something false. */
            log_error("store writer: out of memory: a Ping is not answered");
            free(b);
            return;
        }
        w->held = v;
        w->held_cap = cap;
    }
    struct rmsg *m = &w->held[w->n_held++];
    memset(m, 0, sizeof(*m));
    m->kind = R_PONG;
    m->conn_ref = b->conn_ref;
    m->u.ack.id = b->nonce;
    free(b);
}

/* Consumer state is saved: the held Pongs go out with this round's acks. */
static void barrier_release(struct writer *w)
{
    for (uint32_t i = 0; i < w->n_held; i++) {
        struct rmsg *m = &w->held[i];
        if (outbox_push(&w->out[CONN_REF_IOT(m->conn_ref)], m) < 0) {
            log_error("store writer: out of memory: a Ping is not answered");
        }
    }
    w->n_held = 0;
}

static void flush_answers(struct writer *w)
{
    for (uint32_t i = 0; i < w->srv->n_iot; i++) {
        struct outbox *o = &w->out[i];
        if (o->n) {
            if (mbox_post(w->srv->iot_in[i], o->m, o->n) < 0) {
                log_error("store writer: IO thread %u closed its mailbox", i);
            }
            o->n = 0;
        }
    }
}

static void purge(struct writer *w, struct purge_req *q)
{
    uint64_t n = 0;
    int rc = store_topic_purge(w->srv->store, q->topic, q->topic_len, &n);
    if (rc == FERRY_ESTORAGE) {
        fail_stop(w, rc, "a topic purge");
    }
    Ferry__AdminReply r = FERRY__ADMIN_REPLY__INIT;
    r.id = q->admin_id;
    r.purged = n;
    if (rc == FERRY_ENOTOPIC) {
        r.code = FERRY__ERROR_CODE__ERROR_UNKNOWN_TOPIC;
        r.text = (char *)"no such stored topic";
    } else if (rc < 0) {
        r.code = (Ferry__ErrorCode)wire_code(rc);
        r.text = (char *)server_strerror(rc);
    } else {
        log_info("purged topic %s: %llu messages", q->topic, (unsigned long long)n);
    }
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_ADMIN_REPLY;
    f.admin_reply = &r;
    struct rmsg m;
    memset(&m, 0, sizeof(m));
    m.kind = R_RAW;
    m.conn_ref = q->conn_ref;
    if (codec_frame_encode_alloc(&f, &m.u.raw.buf, &m.u.raw.len) < 0) {
        log_error("store writer: out of memory answering a purge");
    } else if (outbox_push(&w->out[CONN_REF_IOT(q->conn_ref)], &m) < 0) {
        free(m.u.raw.buf);
    }
    free(q);
}

/* Room for one more batch in w->fwd: 1, or 0 when memory is short. */
static int fwd_reserve(struct writer *w)
{
    if (w->n_fwd < w->fwd_cap) {
        return 1;
    }
    uint32_t cap = w->fwd_cap ? w->fwd_cap * 2 : 64;
    struct pub_batch **v = realloc(w->fwd, cap * sizeof(*v));
    if (v == NULL) {
        return 0;
    }
    w->fwd = v;
    w->fwd_cap = cap;
    return 1;
}

/* The dedupe window: every quarter of it, a pass forgets the producer
 * sequences published before it, one bounded transaction per round (between
 * group commits, like retention). Returns ms until it wants to run, or -1. */
static int dedupe_step(struct writer *w, int running)
{
    struct server *s = w->srv;
    uint64_t window = s->cfg.dedupe_window_ms;
    if (window == 0 || s->store == NULL || !running) {
        return -1;
    }
    uint64_t now = now_ms();
    if (!w->is_dedupe_running && now < w->next_dedupe) {
        return (int)(w->next_dedupe - now);
    }
    int64_t before = now_realtime_ns() - (int64_t)(window * 1000000u);
    uint64_t n = 0;
    bool is_done = true;
    int rc = store_dedupe_expire(s->store, before, &w->dedupe_pos, &n, &is_done);
    if (rc == FERRY_ESTORAGE) {
        fail_stop(w, rc, "an expiry of producer sequences");
    }
    if (rc < 0) {
        log_warn("store: producer sequences not expired (next pass later): %s",
                 server_strerror(rc));
        memset(&w->dedupe_pos, 0, sizeof(w->dedupe_pos));
        is_done = true;
    }
    w->is_dedupe_running = !is_done;
    if (is_done) {
        uint64_t every = window / 4 > DEDUPE_EVERY_MIN_MS ? window / 4 : DEDUPE_EVERY_MIN_MS;
        every = every < DEDUPE_EVERY_MAX_MS ? every : DEDUPE_EVERY_MAX_MS;
        w->next_dedupe = now + every;
        return (int)every;
    }
    return 0;
}

/* A record for scheduled message it in batch *bp (a new batch when full,
 * the full one kept for routing): NULL when memory is short. */
static struct pub_rec *sched_rec(struct writer *w, struct pub_batch **bp,
                                 const struct store_sched_item *it)
{
    struct store_kv kv;
    struct codec_hdr hv[STORE_SCHED_HEADERS_MAX];
    size_t nh = 0, pos = 0;
    while (nh < STORE_SCHED_HEADERS_MAX && store_msg_header_next(&it->msg, &pos, &kv)) {
        hv[nh++] = (struct codec_hdr){kv.key, kv.key_len, kv.value, kv.value_len};
    }
    struct codec_deliver d = {.topic = it->topic,
                              .topic_len = it->topic_len,
                              .publish_time = it->msg.publish_time,
                              .payload = it->msg.payload,
                              .payload_len = it->msg.payload_len,
                              .headers = hv,
                              .n_headers = nh,
                              .key = it->msg.key,
                              .key_len = it->msg.key_len,
                              .attempt = 1};
    size_t body_len = pub_rec_body_len(&d, 1);
    size_t rec_len = pub_rec_len(it->topic_len, body_len, 1);
    struct pub_batch *b = *bp;
    if (b != NULL && b->cap - b->len < rec_len) {
        if (!fwd_reserve(w)) {
            return NULL;
        }
        w->fwd[w->n_fwd++] = b;
        *bp = b = NULL;
    }
    if (b == NULL) {
        size_t cap = rec_len > 65536u ? rec_len : 65536u;
        b = malloc(sizeof(*b) + cap);
        if (b == NULL) {
            return NULL;
        }
        atomic_init(&b->refs, 1);
        b->len = 0;
        b->cap = (uint32_t)cap;
        b->n_recs = 0;
        *bp = b;
    }
    struct pub_rec *r = (struct pub_rec *)(b->data + b->len);
    uint32_t owner = topic_hash(it->topic, it->topic_len) % w->srv->n_workers;
    pub_rec_init(r, 0, 0, &d, body_len, owner, 0, 1);
    r->expire_time = it->in.expire_time;
    pub_rec_st(r)->sched_due = it->in.unsched_due;
    pub_rec_st(r)->sched_id = it->in.unsched_id;
    b->len += (uint32_t)rec_len;
    b->n_recs++;
    return r;
}

/* Move the scheduled messages that are due into their topics (at most
 * SCHED_TAKE a round): each append deletes its schedule entry in the same
 * commit, and the batches are routed after it like any publication's. */
static void sched_step(struct writer *w)
{
    if (w->srv->store == NULL || now_realtime_ns() < w->next_due) {
        return;
    }
    struct pub_batch *pb = NULL;
    for (int n = 0; n < SCHED_TAKE; n++) {
        if (begin(w) < 0) {
            break; /* the store is short of memory: next round */
        }
        struct store_sched_item it;
        int rc = store_batch_sched_pop(w->b, now_realtime_ns(), &w->sched_buf, &w->sched_buf_cap,
                                       &it, &w->next_due);
        if (rc == FERRY_ESTORAGE) {
            fail_stop(w, rc, "a read of the schedule");
        }
        if (rc <= 0) {
            if (rc < 0) {
                log_warn("store: scheduled messages wait: %s", server_strerror(rc));
            }
            break;
        }
        struct pub_rec *r = sched_rec(w, &pb, &it);
        if (r == NULL) {
            log_warn("store writer: out of memory: scheduled messages wait");
            break;
        }
        append_one(w, r); /* r->seq: its sequence, or 0 if refused */
        if (r->seq == 0) {
            /* Refused (storage full): it stays scheduled; try again soon. */
            if (!w->is_sched_stuck) {
                log_warn("store: a scheduled message for %.*s is due but cannot be stored "
                         "yet; retrying every %d ms",
                         (int)it.topic_len, it.topic, SCHED_WAIT_MAX_MS);
            }
            w->is_sched_stuck = 1;
            w->next_due = now_realtime_ns() + (int64_t)SCHED_WAIT_MAX_MS * 1000000;
            break;
        }
        w->is_sched_stuck = 0;
        if (n == SCHED_TAKE - 1) {
            w->next_due = 0; /* more may be due: the next round goes on */
        }
    }
    if (pb != NULL) {
        if (fwd_reserve(w)) {
            w->fwd[w->n_fwd++] = pb;
        } else {
            commit(w); /* out of memory: route it right after its commit */
            forward(w, pb);
        }
    }
}

/* ms until the next scheduled message is due, or -1 (none). */
static int sched_wait(const struct writer *w)
{
    if (w->next_due == INT64_MAX) {
        return -1;
    }
    int64_t now = now_realtime_ns();
    if (w->next_due <= now) {
        return 0;
    }
    int64_t ms = (w->next_due - now + 999999) / 1000000;
    return ms > SCHED_WAIT_MAX_MS ? SCHED_WAIT_MAX_MS : (int)ms;
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    struct server *s = w->srv;
    static _Thread_local struct wmsg items[WRITER_TAKE];
    log_thread_name_set("writer");
    int is_interval = s->cfg.sync_mode == STORE_SYNC_INTERVAL;
    int running = 1;
    w->next_sync = now_ms() + s->cfg.sync_interval_ms;
    w->next_dedupe = now_ms() + DEDUPE_EVERY_MIN_MS;
    int dedupe_wait = dedupe_step(w, running);
    w->next_due = INT64_MAX;
    if (s->store != NULL && store_sched_next(s->store, &w->next_due) < 0) {
        w->next_due = 0; /* look in the first round */
    }
    int commit_wait = -1; /* ms until the open store batch is due, -1: none open */
    while (running) {
        int timeout = commit_wait;
        commit_wait = -1;
        if (is_interval) {
            uint64_t now = now_ms();
            int sync_wait = now >= w->next_sync ? 0 : (int)(w->next_sync - now);
            timeout = timeout < 0 || sync_wait < timeout ? sync_wait : timeout;
        }
        if (w->ret_wait >= 0 && (timeout < 0 || w->ret_wait < timeout)) {
            timeout = w->ret_wait;
        }
        if (dedupe_wait >= 0 && (timeout < 0 || dedupe_wait < timeout)) {
            timeout = dedupe_wait;
        }
        int sched_ms = sched_wait(w);
        if (sched_ms >= 0 && (timeout < 0 || sched_ms < timeout)) {
            timeout = sched_ms;
        }
        if (w->is_cons_unsaved && (timeout < 0 || timeout > 100)) {
            timeout = 100; /* no wake-up comes for state that is dirty already */
        }
        if (w->is_release_waiting && (timeout < 0 || timeout > CONS_RELEASE_EVERY_MS)) {
            timeout = CONS_RELEASE_EVERY_MS;
        }
        mbox_wait(&w->in, timeout);
        if (is_interval && now_ms() >= w->next_sync) {
            commit(w); /* store_sync() takes the writer's lock: no batch open */
            int rc = store_sync(s->store);
            if (rc < 0) {
                fail_stop(w, rc, "a periodic sync");
            }
            w->next_sync = now_ms() + s->cfg.sync_interval_ms;
        }
        int was_refused = 0;
        uint32_t n = mbox_take(&w->in, items, WRITER_TAKE, &was_refused);
        /* Durable consumer state is saved by every group commit below, so
         * an Ack handled before the publications just taken were posted is
         * stored no later than they are, and before their PubAcks. */
        for (uint32_t i = 0; i < n; i++) {
            struct wmsg *m = &items[i];
            if (m->kind == W_PUB_BATCH) {
                struct pub_batch *b = m->p;
                int is_kept = fwd_reserve(w);
                for (uint32_t off = 0; off < b->len;) {
                    struct pub_rec *r = (struct pub_rec *)(b->data + off);
                    append_one(w, r);
                    if (r->serial != 0) { /* an IO thread's items come in its order */
                        w->serial[CONN_REF_IOT(r->conn_ref)] = r->serial;
                        w->has_serial[CONN_REF_IOT(r->conn_ref)] = 1;
                    }
                    off += r->rec_len;
                }
                if (is_kept) {
                    w->fwd[w->n_fwd++] = b;
                } else {
                    commit(w); /* out of memory: route it right after its commit */
                    forward(w, b);
                }
                continue;
            }
            if (m->kind == W_BARRIER) {
                barrier_hold(w, m->p);
                continue;
            }
            /* A purge, a backup or the stop: everything before it is
             * committed first (a backup's snapshot must hold every message
             * acked before it: backup.h). */
            commit(w);
            if (m->kind == W_PURGE) {
                purge(w, m->p);
            } else if (m->kind == W_BACKUP) {
                backup_begin(m->p);
            } else if (m->kind == W_STOP) {
                running = 0;
            }
        }
        if (running) {
            sched_step(w);
        }
        group_commit(w);
        if (!w->is_cons_unsaved) {
            barrier_release(w);
        }
        /* What was logged goes to the workers now, and its acks out; the
         * store batch is committed when it is due, and then first: a
         * commit due this round (a large batch, say) is CPU work best done
         * before the IO threads get the deliveries, not beside them. */
        if (!running || commit_is_due(w, &commit_wait)) {
            commit_store(w);
        } else {
            route_logged(w);
        }
        flush_answers(w);
        if (was_refused) {
            server_wake_iots(s);
        }
        if (w->b != NULL) {
            continue; /* the rest wants no batch open (it may take the store's lock) */
        }
        /* Durables nobody holds, whose state is stored, leave memory (this
         * thread is the only one that frees them: consumer.h, THREADS). */
        if (s->consumers != NULL && now_ms() >= w->next_release) {
            w->next_release = now_ms() + CONS_RELEASE_EVERY_MS;
            cons_reg_release_idle(s->consumers, now_ms(), CONS_RELEASE_GRACE_MS,
                                  &w->is_release_waiting);
        } else if (s->consumers != NULL) {
            w->is_release_waiting = 1; /* this round may have been an unbind's wake-up */
        }
        /* One bounded retention step between group commits (retention.h). */
        if (w->ret != NULL && running) {
            int err;
            w->ret_wait = retention_step(w->ret, now_ms(), &err);
            if (err == FERRY_ESTORAGE) {
                fail_stop(w, err, "a retention trim");
            }
        }
        dedupe_wait = dedupe_step(w, running);
    }
    return NULL;
}

int writer_start(struct writer *w)
{
    int rc = pthread_create(&w->thread, NULL, writer_main, w);
    if (rc != 0) {
        return -rc;
    }
    w->is_started = 1;
    return 0;
}

void writer_stop(struct writer *w)
{
    if (w == NULL || !w->is_started) {
        return;
    }
    struct wmsg stop = {.kind = W_STOP};
    mbox_post(&w->in, &stop, 1);
    pthread_join(w->thread, NULL);
    w->is_started = 0;
}

void writer_destroy(struct writer *w)
{
    if (w == NULL) {
        return;
    }
    struct wmsg m;
    while (mbox_take(&w->in, &m, 1, NULL) == 1) {
        if (m.kind == W_PUB_BATCH) {
            pub_batch_unref(m.p);
        } else if (m.kind == W_PURGE || m.kind == W_BARRIER) {
            free(m.p);
        }
    }
    free(w->held);
    for (uint32_t i = 0; i < w->srv->n_iot; i++) {
        free(w->out[i].m);
    }
    free(w->out);
    free(w->touched);
    free(w->serial);
    free(w->has_serial);
    free(w->appended);
    free(w->fwd);
    free(w->sched_buf);
    retention_destroy(w->ret);
    mbox_deinit(&w->in);
    free(w);
}

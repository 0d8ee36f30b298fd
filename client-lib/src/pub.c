/*
 * pub.c - publishing: fire-and-forget, sync, async with a bounded window.
 *
 * Every publish that asks for a PubAck becomes a struct ferry__pub, kept in
 * c->pubs_head..tail in id order (ids only grow, so the list is also in
 * creation order: the head is the oldest, whose ack timeout expires first)
 * and in a chained hash by id (PubAcks of different topics may overtake
 * each other). The record keeps its encoded frame so that it can be re-sent
 * after a reconnect. It leaves both structures exactly once: PubAck, Error
 * with its id, ack timeout, or failure; that is when its callback is queued
 * or its sync waiter woken. All of it is guarded by c->mu.
 */
#include "cluster.h"
#include "ferry_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int ferry__str_valid(const char *s, size_t max)
{
    size_t n = strlen(s);
    return n <= max && codec_utf8_valid((const uint8_t *)s, n);
}

/* A concrete topic: non-empty dot-separated tokens, no wildcards, no
 * whitespace, at most FERRY_MAX_TOPIC_LEN bytes. The server checks its own
 * limits too. */
int ferry__topic_valid(const char *topic)
{
    size_t n = strlen(topic);
    if (n == 0 || n > FERRY_MAX_TOPIC_LEN || !codec_utf8_valid((const uint8_t *)topic, n)) {
        return 0;
    }
    size_t tok = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)topic[i];
        if (ch == '.') {
            if (tok == 0) {
                return 0;
            }
            tok = 0;
            continue;
        }
        if (ch == '*' || ch == '>' || ch <= ' ' || ch == 0x7f) {
            return 0;
        }
        tok++;
    }
    return tok > 0;
}

int ferry__pubs_init(ferry_client *c)
{
    size_t cap = 64;
    while (cap < (size_t)c->opts.max_inflight * 2 && cap < (1u << 21)) {
        cap *= 2;
    }
    c->pub_hash = calloc(cap, sizeof(*c->pub_hash));
    if (c->pub_hash == NULL) {
        return -ENOMEM;
    }
    c->pub_hash_cap = cap;
    return 0;
}

void ferry__pubs_deinit(ferry_client *c)
{
    struct ferry__pub *p = c->pubs_head;
    while (p != NULL) {
        struct ferry__pub *next = p->next;
        free(p->frame);
        free(p);
        p = next;
    }
    c->pubs_head = c->pubs_tail = NULL;
    free(c->pub_hash);
    c->pub_hash = NULL;
}

static size_t hash_slot(ferry_client *c, uint64_t id)
{
    return (size_t)((id * 0x9e3779b97f4a7c15ull) >> 20) & (c->pub_hash_cap - 1);
}

static struct ferry__pub *pub_find(ferry_client *c, uint64_t id)
{
    for (struct ferry__pub *p = c->pub_hash[hash_slot(c, id)]; p != NULL; p = p->hnext) {
        if (p->id == id) {
            return p;
        }
    }
    return NULL;
}

static void pub_unlink(ferry_client *c, struct ferry__pub *p)
{
    struct ferry__pub **pp = &c->pub_hash[hash_slot(c, p->id)];
    while (*pp != p) {
        pp = &(*pp)->hnext;
    }
    *pp = p->hnext;
    if (p->prev != NULL) {
        p->prev->next = p->next;
    } else {
        c->pubs_head = p->next;
    }
    if (p->next != NULL) {
        p->next->prev = p->prev;
    } else {
        c->pubs_tail = p->prev;
    }
    c->n_pubs--;
}

/* Finish a publish: unlink it, tell its waiter or queue its callback. */
static void pub_complete(ferry_client *c, struct ferry__pub *p, int status, uint64_t seq)
{
    pub_unlink(c, p);
    if (p->waiter != NULL) {
        p->waiter->is_done = 1;
        p->waiter->status = status;
        p->waiter->seq = seq;
    }
    if (p->cb != NULL) {
        struct ferry__cbitem *it = calloc(1, sizeof(*it));
        if (it == NULL) {
            /* The one failure that cannot be reported through the callback;
             * say it loudly rather than lose it silently. */
            ferry__log(c, FERRY_LOG_ERROR,
                       "out of memory: completion of publish %llu (status %d) lost",
                       (unsigned long long)p->id, status);
        } else {
            it->kind = FERRY__CB_PUB;
            it->pub_cb = p->cb;
            it->pub_ud = p->ud;
            it->status = status;
            it->seq = seq;
            c->n_pub_cb_queued++;
            ferry__cb_push(c, it);
        }
    }
    free(p->frame);
    free(p);
    pthread_cond_broadcast(&c->cond);
}

void ferry__pub_on_ack(ferry_client *c, uint64_t id, int code, uint64_t seq)
{
    struct ferry__pub *p = pub_find(c, id);
    if (p == NULL) {
        return; /* timed out or fire-and-forget */
    }
    pub_complete(c, p, code, code == 0 ? seq : 0);
}

void ferry__pubs_on_connected(ferry_client *c)
{
    for (struct ferry__pub *p = c->pubs_head; p != NULL; p = p->next) {
        if (ferry__out_append(c, p->frame, p->frame_len) != 0) {
            ferry__log(c, FERRY_LOG_ERROR, "out of memory re-sending publish %llu",
                       (unsigned long long)p->id);
            pub_complete(c, p, -ENOMEM, 0);
            /* The list changed under us; start over (completed ones left). */
            ferry__pubs_on_connected(c);
            return;
        }
    }
}

void ferry__pubs_on_lost(ferry_client *c, int code, int resend)
{
    if (resend) {
        return; /* they stay, and go out again once connected */
    }
    ferry__pubs_fail_all(c, code);
}

void ferry__pubs_fail_all(ferry_client *c, int code)
{
    while (c->pubs_head != NULL) {
        pub_complete(c, c->pubs_head, code, 0);
    }
}

void ferry__pubs_timers(ferry_client *c, int64_t now)
{
    while (c->pubs_head != NULL && c->pubs_head->deadline > 0 && c->pubs_head->deadline <= now) {
        ferry__seterr(c, -ETIMEDOUT, "publish %llu: no PubAck within %u ms",
                      (unsigned long long)c->pubs_head->id, c->opts.ack_timeout_ms);
        pub_complete(c, c->pubs_head, -ETIMEDOUT, 0);
    }
}

int64_t ferry__pubs_next_deadline(ferry_client *c)
{
    return c->pubs_head != NULL ? c->pubs_head->deadline : 0;
}

FERRY_API uint64_t ferry_client_duplicates(ferry_client *c)
{
    if (c == NULL) {
        return 0;
    }
    if (ferry__clu(c) != NULL) {
        return ferry__clu_duplicates(c);
    }
    pthread_mutex_lock(&c->mu);
    uint64_t n = c->n_duplicates;
    pthread_mutex_unlock(&c->mu);
    return n;
}

FERRY_API size_t ferry_client_inflight(ferry_client *c)
{
    if (c == NULL) {
        return 0;
    }
    if (ferry__clu(c) != NULL) {
        return ferry__clu_inflight(c);
    }
    pthread_mutex_lock(&c->mu);
    size_t n = c->n_pubs;
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* Check m and fill the Publish message f/pm (pointers into m and hdrs). */
static int pub_prepare(const ferry_pub *m, Ferry__Publish *pm, Ferry__Header *hdrs,
                       Ferry__Header **hptrs)
{
    if (m == NULL || m->topic == NULL || (m->payload == NULL && m->payload_len > 0) ||
        (m->key == NULL && m->key_len > 0) || (m->headers == NULL && m->n_headers > 0) ||
        m->n_headers > FERRY__MAX_HEADERS || !ferry__topic_valid(m->topic) ||
        (m->reply_to != NULL && m->reply_to[0] != '\0' && !ferry__topic_valid(m->reply_to)) ||
        m->deliver_at < 0) {
        return -EINVAL;
    }
    for (size_t i = 0; i < m->n_headers; i++) {
        const ferry_header *h = &m->headers[i];
        if (h->key == NULL || h->value == NULL || h->key[0] == '\0' ||
            !ferry__str_valid(h->key, 65535) || !ferry__str_valid(h->value, 1u << 24)) {
            return -EINVAL;
        }
        ferry__header__init(&hdrs[i]);
        hdrs[i].key = (char *)h->key;
        hdrs[i].value = (char *)h->value;
        hptrs[i] = &hdrs[i];
    }
    pm->topic = (char *)m->topic;
    pm->payload.data = (uint8_t *)m->payload;
    pm->payload.len = m->payload_len;
    pm->key.data = (uint8_t *)m->key;
    pm->key.len = m->key_len;
    pm->headers = m->n_headers > 0 ? hptrs : NULL;
    pm->n_headers = m->n_headers;
    pm->reply_to = m->reply_to != NULL ? (char *)m->reply_to : "";
    pm->deliver_at = m->deliver_at;
    pm->ttl_ms = m->ttl_ms;
    return 0;
}

/* Fire-and-forget (lock held; may wait for room in the outbound buffer,
 * as ferry_publish_msg says). */
int ferry__publish_locked(ferry_client *c, const ferry_pub *m, uint64_t *id_out)
{
    Ferry__Publish pm = FERRY__PUBLISH__INIT;
    Ferry__Header hdrs[FERRY__MAX_HEADERS];
    Ferry__Header *hptrs[FERRY__MAX_HEADERS];
    int rc = pub_prepare(m, &pm, hdrs, hptrs);
    if (rc != 0) {
        return rc;
    }
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_PUBLISH;
    f.publish = &pm;
    for (;;) {
        if (c->state == FERRY_STATE_CLOSED || c->is_closing) {
            return FERRY_ECLOSED;
        }
        if (c->state != FERRY_STATE_CONNECTED || c->phase != FERRY__PH_UP) {
            return FERRY_ENOTREADY;
        }
        if (c->out.len - c->out.off <= FERRY_OUTBUF_HIGH) {
            break;
        }
        if (!c->opts.window_blocks || ferry__in_callback(c)) {
            return -EAGAIN;
        }
        ferry__wait(c, -1);
    }
    pm.id = c->next_pub_id++;
    pm.want_ack = 0;
    rc = ferry__send_frame(c, &f);
    if (rc != 0) {
        return rc;
    }
    if (id_out != NULL) {
        *id_out = pm.id;
    }
    ferry__kick(c);
    return 0;
}

FERRY_API int ferry_publish_msg(ferry_client *c, const ferry_pub *m, uint64_t *id_out)
{
    if (c == NULL) {
        return -EINVAL;
    }
    if (ferry__clu(c) != NULL) {
        return ferry__clu_publish(c, m, 0, NULL, NULL, 0, id_out);
    }
    pthread_mutex_lock(&c->mu);
    int rc = ferry__publish_locked(c, m, id_out);
    if (rc != 0 && rc != -EINVAL) {
        ferry__seterr(c, rc, "publish to %s: %s", m->topic, ferry_strerror(rc));
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

FERRY_API int ferry_publish(ferry_client *c, const char *topic, const void *data, size_t len)
{
    ferry_pub m = {.topic = topic, .payload = data, .payload_len = len};
    return ferry_publish_msg(c, &m, NULL);
}

/* Queue a publish that wants a PubAck. Lock held. On success the record is
 * listed (and written if connected: in event-loop mode that write may
 * already complete or fail it, so the record is not returned) and *id_out
 * set. */
static int pub_enqueue(ferry_client *c, const ferry_pub *m, ferry_pub_cb cb, void *ud,
                       struct ferry__pubwait *waiter, int64_t deadline, uint64_t *id_out)
{
    Ferry__Publish pm = FERRY__PUBLISH__INIT;
    Ferry__Header hdrs[FERRY__MAX_HEADERS];
    Ferry__Header *hptrs[FERRY__MAX_HEADERS];
    int rc = pub_prepare(m, &pm, hdrs, hptrs);
    if (rc != 0) {
        return rc;
    }
    for (;;) {
        if (c->state == FERRY_STATE_CLOSED || c->is_closing) {
            return FERRY_ECLOSED;
        }
        if (c->state == FERRY_STATE_IDLE) {
            return FERRY_ENOTREADY;
        }
        if (c->n_pubs < c->opts.max_inflight) {
            break;
        }
        if ((!c->opts.window_blocks && waiter == NULL) || ferry__in_callback(c)) {
            return -EAGAIN;
        }
        if (deadline >= 0 && ferry__now_ms() >= deadline) {
            return -ETIMEDOUT;
        }
        ferry__wait(c, deadline);
    }
    pm.id = c->next_pub_id++;
    pm.want_ack = 1;
    if (c->opts.resend_unacked && c->opts.idempotent) {
        pm.producer_id = c->producer_id;
        pm.producer_seq = pm.id; /* re-sent as encoded here: the same sequence */
    }
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_PUBLISH;
    f.publish = &pm;
    if (codec_frame_size(&f) - FRAME_HDR_LEN > c->max_frame_len) {
        return FERRY_EFRAMETOOLARGE;
    }
    struct ferry__pub *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return -ENOMEM;
    }
    rc = codec_frame_encode_alloc(&f, &p->frame, &p->frame_len);
    if (rc != 0) {
        free(p);
        return rc;
    }
    p->id = pm.id;
    p->cb = cb;
    p->ud = ud;
    p->waiter = waiter;
    if (c->opts.ack_timeout_ms > 0) {
        p->deadline = ferry__now_ms() + c->opts.ack_timeout_ms;
    }
    size_t slot = hash_slot(c, p->id);
    p->hnext = c->pub_hash[slot];
    c->pub_hash[slot] = p;
    p->prev = c->pubs_tail;
    if (c->pubs_tail != NULL) {
        c->pubs_tail->next = p;
    } else {
        c->pubs_head = p;
    }
    c->pubs_tail = p;
    c->n_pubs++;
    if (c->phase == FERRY__PH_UP) {
        rc = ferry__out_append(c, p->frame, p->frame_len);
        if (rc != 0) {
            pub_unlink(c, p);
            free(p->frame);
            free(p);
            return rc;
        }
        *id_out = pm.id;
        ferry__kick(c);
        return 0;
    }
    /* else: sent by ferry__pubs_on_connected() */
    *id_out = pm.id;
    return 0;
}

FERRY_API int ferry_publish_async(ferry_client *c, const ferry_pub *m, ferry_pub_cb cb,
                                  void *userdata, uint64_t *id_out)
{
    if (c == NULL) {
        return -EINVAL;
    }
    if (ferry__clu(c) != NULL) {
        return ferry__clu_publish(c, m, 1, cb, userdata, 0, id_out);
    }
    pthread_mutex_lock(&c->mu);
    uint64_t id = 0;
    int rc = pub_enqueue(c, m, cb, userdata, NULL, -1, &id);
    if (rc == 0) {
        if (id_out != NULL) {
            *id_out = id;
        }
    } else if (rc != -EAGAIN) {
        ferry__seterr(c, rc, "publish: %s", ferry_strerror(rc));
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

FERRY_API int ferry_publish_sync(ferry_client *c, const ferry_pub *m, int timeout_ms,
                                 uint64_t *seq_out)
{
    if (c == NULL || timeout_ms <= 0) {
        return -EINVAL;
    }
    if (ferry__clu(c) != NULL) {
        return ferry__clu_publish(c, m, 2, NULL, NULL, timeout_ms, seq_out);
    }
    pthread_mutex_lock(&c->mu);
    int rc;
    if (ferry__in_callback(c)) {
        rc = -EDEADLK;
        goto out_unlock;
    }
    int64_t deadline = ferry__deadline(timeout_ms);
    struct ferry__pubwait w = {0};
    uint64_t id = 0;
    rc = pub_enqueue(c, m, NULL, NULL, &w, deadline, &id);
    if (rc != 0) {
        goto out_seterr;
    }
    while (!w.is_done) {
        if (ferry__now_ms() >= deadline) {
            /* Detach: a later PubAck for this id completes nothing. */
            struct ferry__pub *still = pub_find(c, id);
            if (still != NULL) {
                still->waiter = NULL;
            }
            rc = -ETIMEDOUT;
            goto out_seterr;
        }
        ferry__wait(c, deadline);
    }
    rc = w.status;
    if (rc == 0 && seq_out != NULL) {
        *seq_out = w.seq;
    }
    if (rc == 0) {
        goto out_unlock;
    }
out_seterr:
    if (c->err_code != rc) {
        ferry__seterr(c, rc, "publish to %s: %s", m != NULL && m->topic ? m->topic : "(null)",
                      ferry_strerror(rc));
    }
out_unlock:
    pthread_mutex_unlock(&c->mu);
    return rc;
}

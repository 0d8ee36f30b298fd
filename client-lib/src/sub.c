/*
 * sub.c - subscriptions, deliveries, messages and acks.
 *
 * A subscription lives in c->subs while active (it is re-sent after every
 * reconnect). Its memory is reference counted: the user's handle holds one
 * reference, and so does every queued message callback for it, so that
 * ferry_unsubscribe() from any thread never frees a subscription that the
 * dispatcher is about to call. All fields are guarded by c->mu.
 *
 * Messages are built once per delivery and subscription as one malloc'd
 * block (struct ferry_msg, header array, strings), immutable afterwards.
 */
#include "cluster.h"
#include "ferry_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Messages                                                                 */

struct ferry_msg *ferry__msg_build(ferry_client *c, uint64_t sub_id, uint64_t seq, int64_t time,
                                   uint32_t attempt, uint64_t missed,
                                   const struct ferry__msg_src *src)
{
    size_t size = sizeof(struct ferry_msg) + src->n_headers * sizeof(ferry_header);
    size_t rl = src->reply_to != NULL ? src->reply_to_len : 0;
    size += src->topic_len + 1 + src->data_len + 1 + src->key_len + 1 + rl + 1;
    for (size_t i = 0; i < src->n_headers; i++) {
        size += strlen(src->hkeys[i]) + 1 + strlen(src->hvals[i]) + 1;
    }
    struct ferry_msg *m = malloc(size);
    if (m == NULL) {
        return NULL;
    }
    memset(m, 0, sizeof(*m));
    m->client = c;
    m->sub_id = sub_id;
    m->sequence = seq;
    m->time = time;
    m->attempt = attempt;
    m->missed = missed;
    m->headers = (ferry_header *)(m + 1);
    m->n_headers = src->n_headers;
    char *p = (char *)(m->headers + src->n_headers);
    /* Each part is NUL-terminated, binary ones too, for convenience. */
    memcpy(p, src->topic, src->topic_len);
    p[src->topic_len] = '\0';
    m->topic = p;
    p += src->topic_len + 1;
    if (src->data_len > 0) {
        memcpy(p, src->data, src->data_len);
    }
    p[src->data_len] = '\0';
    m->data = (const uint8_t *)p;
    m->data_len = src->data_len;
    p += src->data_len + 1;
    if (src->key_len > 0) {
        memcpy(p, src->key, src->key_len);
    }
    p[src->key_len] = '\0';
    m->key = (const uint8_t *)p;
    m->key_len = src->key_len;
    p += src->key_len + 1;
    if (rl > 0) {
        memcpy(p, src->reply_to, rl);
    }
    p[rl] = '\0';
    m->reply_to = p;
    p += rl + 1;
    for (size_t i = 0; i < src->n_headers; i++) {
        size_t kl = strlen(src->hkeys[i]) + 1;
        size_t vl = strlen(src->hvals[i]) + 1;
        memcpy(p, src->hkeys[i], kl);
        m->headers[i].key = p;
        p += kl;
        memcpy(p, src->hvals[i], vl);
        m->headers[i].value = p;
        p += vl;
    }
    return m;
}

FERRY_API const char *ferry_msg_topic(const ferry_msg *m)
{
    return m != NULL ? m->topic : NULL;
}

FERRY_API const void *ferry_msg_data(const ferry_msg *m, size_t *len)
{
    if (m == NULL) {
        return NULL;
    }
    if (len != NULL) {
        *len = m->data_len;
    }
    return m->data;
}

FERRY_API const void *ferry_msg_key(const ferry_msg *m, size_t *len)
{
    if (m == NULL) {
        return NULL;
    }
    if (len != NULL) {
        *len = m->key_len;
    }
    return m->key;
}

FERRY_API uint64_t ferry_msg_sequence(const ferry_msg *m)
{
    return m != NULL ? m->sequence : 0;
}

FERRY_API int64_t ferry_msg_time(const ferry_msg *m)
{
    return m != NULL ? m->time : 0;
}

FERRY_API uint32_t ferry_msg_attempt(const ferry_msg *m)
{
    return m != NULL ? m->attempt : 0;
}

FERRY_API uint64_t ferry_msg_missed(const ferry_msg *m)
{
    return m != NULL ? m->missed : 0;
}

FERRY_API uint64_t ferry_msg_sub_id(const ferry_msg *m)
{
    return m != NULL ? m->sub_id : 0;
}

FERRY_API const char *ferry_msg_reply_to(const ferry_msg *m)
{
    return m != NULL ? m->reply_to : "";
}

FERRY_API size_t ferry_msg_n_headers(const ferry_msg *m)
{
    return m != NULL ? m->n_headers : 0;
}

FERRY_API int ferry_msg_header_at(const ferry_msg *m, size_t i, const char **key,
                                  const char **value)
{
    if (m == NULL || i >= m->n_headers) {
        return -EINVAL;
    }
    if (key != NULL) {
        *key = m->headers[i].key;
    }
    if (value != NULL) {
        *value = m->headers[i].value;
    }
    return 0;
}

FERRY_API const char *ferry_msg_header(const ferry_msg *m, const char *key)
{
    if (m == NULL || key == NULL) {
        return NULL;
    }
    /* The last one wins, as ferry.proto says of repeated keys. */
    for (size_t i = m->n_headers; i-- > 0;) {
        if (strcmp(m->headers[i].key, key) == 0) {
            return m->headers[i].value;
        }
    }
    return NULL;
}

FERRY_API int ferry_msg_copy(const ferry_msg *m, ferry_msg **out)
{
    if (m == NULL || out == NULL) {
        return -EINVAL;
    }
    const char *hk[FERRY__MAX_HEADERS];
    const char *hv[FERRY__MAX_HEADERS];
    const char **keys = hk;
    const char **vals = hv;
    if (m->n_headers > FERRY__MAX_HEADERS) {
        keys = malloc(m->n_headers * sizeof(*keys));
        vals = malloc(m->n_headers * sizeof(*vals));
        if (keys == NULL || vals == NULL) {
            free(keys);
            free(vals);
            return -ENOMEM;
        }
    }
    for (size_t i = 0; i < m->n_headers; i++) {
        keys[i] = m->headers[i].key;
        vals[i] = m->headers[i].value;
    }
    struct ferry__msg_src src = {
        .topic = m->topic,
        .topic_len = strlen(m->topic),
        .data = m->data,
        .data_len = m->data_len,
        .key = m->key,
        .key_len = m->key_len,
        .n_headers = m->n_headers,
        .hkeys = keys,
        .hvals = vals,
        .reply_to = m->reply_to,
        .reply_to_len = strlen(m->reply_to),
    };
    struct ferry_msg *n =
        ferry__msg_build(m->client, m->sub_id, m->sequence, m->time, m->attempt, m->missed, &src);
    if (keys != hk) {
        free(keys);
        free(vals);
    }
    if (n == NULL) {
        return -ENOMEM;
    }
    *out = n;
    return 0;
}

FERRY_API void ferry_msg_destroy(ferry_msg *m)
{
    free(m);
}

FERRY_API int ferry_msg_ack(const ferry_msg *m, enum ferry_ack_kind kind)
{
    if (m == NULL || m->client == NULL || m->sequence == 0 ||
        (kind != FERRY_ACK && kind != FERRY_NAK && kind != FERRY_TERM)) {
        return -EINVAL;
    }
    ferry_client *c = m->client;
    pthread_mutex_lock(&c->mu);
    int rc;
    struct ferry_sub *s = ferry__sub_find(c, m->sub_id);
    if (c->state == FERRY_STATE_CLOSED) {
        rc = FERRY_ECLOSED;
    } else if (s == NULL) {
        rc = FERRY_ENOSUB;
    } else if (s->opts.ack_mode != FERRY_ACK_EXPLICIT) {
        rc = -EINVAL;
    } else if (c->phase != FERRY__PH_UP) {
        rc = FERRY_ENOTREADY;
    } else {
        Ferry__Ack a = FERRY__ACK__INIT;
        Ferry__Frame f = FERRY__FRAME__INIT;
        a.sub_id = m->sub_id;
        a.sequence = m->sequence;
        a.kind = (Ferry__Ack__Kind)kind;
        /* A wildcard subscription's sequences are per topic (a wildcard
         * durable needs the topic; others ignore it). */
        if (m->topic != NULL && (strchr(s->pattern, '*') || strchr(s->pattern, '>'))) {
            a.topic = (char *)m->topic;
        }
        f.body_case = FERRY__FRAME__BODY_ACK;
        f.ack = &a;
        rc = ferry__send_frame(c, &f);
        if (rc == 0) {
            c->n_acks_sent++;
            c->ack_gen = c->conn_gen; /* confirmed by a later flush (ferry_flush) */
            ferry__kick(c);
        }
    }
    if (rc != 0) {
        ferry__seterr(c, rc, "ack of %llu on subscription %llu: %s",
                      (unsigned long long)m->sequence, (unsigned long long)m->sub_id,
                      ferry_strerror(rc));
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Subscriptions                                                            */

struct ferry_sub *ferry__sub_find(ferry_client *c, uint64_t id)
{
    for (struct ferry_sub *s = c->subs; s != NULL; s = s->next) {
        if (s->id == id) {
            return s;
        }
    }
    return NULL;
}

static void sub_queue_clear(struct ferry_sub *s)
{
    struct ferry_msg *m = s->q_head;
    while (m != NULL) {
        struct ferry_msg *next = m->next;
        free(m);
        m = next;
    }
    s->q_head = s->q_tail = NULL;
    s->q_len = 0;
}

void ferry__sub_enqueue(struct ferry_sub *s, struct ferry_msg *m)
{
    m->next = NULL;
    if (s->q_tail != NULL) {
        s->q_tail->next = m;
    } else {
        s->q_head = m;
    }
    s->q_tail = m;
    s->q_len++;
}

struct ferry_msg *ferry__sub_dequeue(struct ferry_sub *s)
{
    struct ferry_msg *m = s->q_head;
    s->q_head = m->next;
    if (s->q_head == NULL) {
        s->q_tail = NULL;
    }
    s->q_len--;
    if (s->q_len < s->opts.queue_max / 2 + 1) {
        s->is_full = 0;
    }
    m->next = NULL;
    return m;
}

void ferry__sub_unref(struct ferry_sub *s)
{
    if (--s->refs > 0) {
        return;
    }
    sub_queue_clear(s);
    ferry__sub_options_deinit(&s->opts);
    free(s->pattern);
    free(s->clu_kids);
    free(s);
}

static void sub_unlist(ferry_client *c, struct ferry_sub *s)
{
    if (!s->is_listed) {
        return;
    }
    if (s->prev != NULL) {
        s->prev->next = s->next;
    } else {
        c->subs = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    }
    s->prev = s->next = NULL;
    s->is_listed = 0;
}

void ferry__sub_handle_list(ferry_client *c, struct ferry_sub *s)
{
    s->hprev = NULL;
    s->hnext = c->handles;
    if (c->handles != NULL) {
        c->handles->hprev = s;
    }
    c->handles = s;
}

void ferry__sub_handle_unlist(ferry_client *c, struct ferry_sub *s)
{
    if (s->hprev != NULL) {
        s->hprev->hnext = s->hnext;
    } else if (c->handles == s) {
        c->handles = s->hnext;
    }
    if (s->hnext != NULL) {
        s->hnext->hprev = s->hprev;
    }
    s->hprev = s->hnext = NULL;
}

/* ferry_client_destroy(): release the handles the user did not. */
void ferry__subs_free_handles(ferry_client *c)
{
    while (c->handles != NULL) {
        struct ferry_sub *s = c->handles;
        ferry__sub_handle_unlist(c, s);
        s->is_closed = 1;
        sub_unlist(c, s);
        ferry__sub_unref(s);
    }
}

/* Where a subscription that is sent again after a reconnect resumes: the
 * sequence after the last one it received, or, if it received nothing yet,
 * where the server said it started (SubAck.next_sequence). 0 when unknown
 * or not applicable: only a subscription to one stored topic without queue
 * group has one sequence space of its own (a group's members share the
 * messages, a wildcard spans topics), and a durable's position is kept by
 * the server. A message queued for ferry_sub_next() and not read yet, or
 * dropped because that queue was full, counts as received. */
static uint64_t sub_resume_seq(const struct ferry_sub *s)
{
    if (s->opts.durable != NULL || s->opts.queue_group != NULL ||
        strpbrk(s->pattern, "*>") != NULL) {
        return 0;
    }
    return s->last_seq > 0 ? s->last_seq + 1 : s->next_seq;
}

static int send_subscribe(ferry_client *c, struct ferry_sub *s)
{
    Ferry__Subscribe m = FERRY__SUBSCRIBE__INIT;
    Ferry__Frame f = FERRY__FRAME__INIT;
    m.sub_id = s->id;
    m.pattern = s->pattern;
    m.queue_group = s->opts.queue_group != NULL ? s->opts.queue_group : "";
    m.durable_name = s->opts.durable != NULL ? s->opts.durable : "";
    enum ferry_start start = s->opts.start;
    int64_t start_arg = s->opts.start_arg;
    uint64_t resume = sub_resume_seq(s);
    if (resume > 0) {
        /* Sent again after a reconnect: nothing published meanwhile is
         * lost, nothing received is repeated. */
        start = FERRY_START_SEQUENCE;
        start_arg = (int64_t)resume;
    } else if (s->has_received && s->opts.durable == NULL) {
        /* A wildcard or queue group subscription that already received
         * messages resumes with new ones: replaying its start position
         * would repeat them. A durable one resumes from its acked
         * position, kept by the server. */
        start = FERRY_START_NEW;
    }
    m.start = (Ferry__StartPosition)start;
    if (start == FERRY_START_SEQUENCE) {
        m.start_sequence = (uint64_t)start_arg;
    } else if (start == FERRY_START_TIME) {
        m.start_time = start_arg;
    } else if (start == FERRY_START_LAST) {
        m.start_last = (uint64_t)start_arg;
    }
    m.ack_mode = (Ferry__AckMode)s->opts.ack_mode;
    m.max_in_flight = s->opts.max_in_flight;
    m.ack_wait_ms = s->opts.ack_wait_ms;
    m.max_deliver = s->opts.max_deliver;
    f.body_case = FERRY__FRAME__BODY_SUBSCRIBE;
    f.subscribe = &m;
    int rc = ferry__send_frame(c, &f);
    if (rc == 0) {
        s->is_sent = 1;
        s->is_acked = 0;
    }
    return rc;
}

static void send_unsubscribe(ferry_client *c, uint64_t id)
{
    Ferry__Unsubscribe m = FERRY__UNSUBSCRIBE__INIT;
    Ferry__Frame f = FERRY__FRAME__INIT;
    m.sub_id = id;
    f.body_case = FERRY__FRAME__BODY_UNSUBSCRIBE;
    f.unsubscribe = &m;
    if (ferry__send_frame(c, &f) != 0) {
        ferry__log(c, FERRY_LOG_ERROR, "out of memory sending Unsubscribe %llu",
                   (unsigned long long)id);
    }
}

void ferry__subs_on_connected(ferry_client *c)
{
    for (struct ferry_sub *s = c->subs; s != NULL; s = s->next) {
        if (send_subscribe(c, s) != 0) {
            ferry__log(c, FERRY_LOG_ERROR, "cannot re-send subscription %llu (%s)",
                       (unsigned long long)s->id, s->pattern);
        }
    }
}

void ferry__subs_on_lost(ferry_client *c)
{
    for (struct ferry_sub *s = c->subs; s != NULL; s = s->next) {
        s->is_sent = 0;
        s->is_acked = 0;
    }
}

/* The client is closed: every subscription ends (handles stay valid). */
void ferry__subs_close_all(ferry_client *c)
{
    while (c->subs != NULL) {
        struct ferry_sub *s = c->subs;
        s->is_closed = 1;
        sub_unlist(c, s);
    }
    pthread_cond_broadcast(&c->cond);
}

void ferry__sub_on_suback(ferry_client *c, uint64_t id, int code, const char *text,
                          uint64_t next_seq, int is_error_frame)
{
    struct ferry_sub *s = ferry__sub_find(c, id);
    if (s == NULL) {
        return; /* the answer to an Unsubscribe, or to a cancelled one */
    }
    if (code == 0 && next_seq > s->next_seq) {
        s->next_seq = next_seq;
    }
    s->is_acked = code == 0;
    if (!s->has_suback) {
        s->has_suback = 1;
        s->suback_code = code;
    }
    if (code != 0) {
        /* Refused (perhaps only after a reconnect: a durable now in use):
         * the subscription ends; its handle reports the code. */
        s->suback_code = code;
        s->is_closed = 1;
        sub_unlist(c, s);
        ferry__log(c, FERRY_LOG_WARN, "subscription %llu (%s) refused: %s", (unsigned long long)id,
                   s->pattern, text != NULL && text[0] ? text : "");
        /* Nobody waits for this answer: tell the event callback (an Error
         * frame is reported by its caller already). */
        if (!s->is_waited && !is_error_frame) {
            ferry__event(c, FERRY_EVENT_ERROR, code, text, id, FERRY_REF_SUBSCRIPTION, 0);
        }
    }
    pthread_cond_broadcast(&c->cond);
}

void ferry__sub_on_deliver(ferry_client *c, const Ferry__Deliver *d)
{
    const char *hk[FERRY__MAX_HEADERS];
    const char *hv[FERRY__MAX_HEADERS];
    size_t nh = d->n_headers > FERRY__MAX_HEADERS ? FERRY__MAX_HEADERS : d->n_headers;
    if (d->n_headers > FERRY__MAX_HEADERS) {
        ferry__log(c, FERRY_LOG_WARN, "delivery on %s has %zu headers; keeping %d", d->topic,
                   d->n_headers, FERRY__MAX_HEADERS);
    }
    for (size_t i = 0; i < nh; i++) {
        hk[i] = d->headers[i]->key;
        hv[i] = d->headers[i]->value;
    }
    struct ferry__msg_src src = {
        .topic = d->topic,
        .topic_len = strlen(d->topic),
        .data = d->payload.data,
        .data_len = d->payload.len,
        .key = d->key.data,
        .key_len = d->key.len,
        .n_headers = nh,
        .hkeys = hk,
        .hvals = hv,
        .reply_to = d->reply_to,
        .reply_to_len = d->reply_to != NULL ? strlen(d->reply_to) : 0,
    };
    for (size_t i = 0; i < d->n_sub_ids; i++) {
        struct ferry_sub *s = ferry__sub_find(c, d->sub_ids[i]);
        if (s == NULL || s->is_closed) {
            continue;
        }
        s->has_received = 1;
        if (d->sequence > s->last_seq) {
            s->last_seq = d->sequence;
        }
        if (s->is_inbox) {
            /* An answer: to the request waiting for it, not to a queue. */
            struct ferry_msg *m = ferry__msg_build(c, s->id, d->sequence, d->publish_time,
                                                   d->attempt, d->missed, &src);
            if (m == NULL) {
                ferry__log(c, FERRY_LOG_ERROR, "out of memory: reply on %s dropped", d->topic);
            } else {
                ferry__req_on_reply(c, m);
            }
            continue;
        }
        if (s->cb == NULL && s->q_len >= s->opts.queue_max) {
            s->dropped++;
            if (!s->is_full) {
                s->is_full = 1;
                ferry__seterr(c, FERRY_EQUEUEFULL, "subscription %llu (%s): queue full",
                              (unsigned long long)s->id, s->pattern);
                ferry__log(c, FERRY_LOG_WARN, "%s", c->err_text);
                ferry__event(c, FERRY_EVENT_ERROR, FERRY_EQUEUEFULL, c->err_text, s->id,
                             FERRY_REF_SUBSCRIPTION, 0);
            }
            continue;
        }
        struct ferry_msg *m =
            ferry__msg_build(c, s->id, d->sequence, d->publish_time, d->attempt, d->missed, &src);
        struct ferry__cbitem *it = NULL;
        if (m != NULL && s->cb != NULL) {
            it = calloc(1, sizeof(*it));
            if (it == NULL) {
                free(m);
                m = NULL;
            }
        }
        if (m == NULL) {
            s->dropped++;
            ferry__log(c, FERRY_LOG_ERROR, "out of memory: delivery %llu on %s dropped",
                       (unsigned long long)d->sequence, d->topic);
            ferry__event(c, FERRY_EVENT_ERROR, -ENOMEM, "out of memory: delivery dropped", s->id,
                         FERRY_REF_SUBSCRIPTION, 0);
            continue;
        }
        if (s->cb != NULL) {
            it->kind = FERRY__CB_MSG;
            it->sub = s;
            it->msg = m;
            s->refs++;
            ferry__cb_push(c, it);
        } else {
            ferry__sub_enqueue(s, m);
        }
    }
}

FERRY_API int ferry_subscribe(ferry_client *c, const char *pattern, const ferry_sub_options *opts,
                              ferry_msg_cb cb, void *userdata, int timeout_ms, ferry_sub **out)
{
    if (c == NULL || pattern == NULL || out == NULL || timeout_ms < 0 || pattern[0] == '\0' ||
        !ferry__str_valid(pattern, FERRY_MAX_TOPIC_LEN)) {
        return -EINVAL;
    }
    if (opts != NULL && opts->durable != NULL && opts->ack_mode != FERRY_ACK_EXPLICIT) {
        return -EINVAL;
    }
    if (ferry__clu(c) != NULL) {
        return ferry__clu_subscribe(c, pattern, opts, cb, userdata, timeout_ms, out);
    }
    struct ferry_sub *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return -ENOMEM;
    }
    int rc;
    if (opts != NULL) {
        rc = ferry__sub_options_copy(&s->opts, opts);
    } else {
        ferry__sub_options_defaults(&s->opts);
        rc = 0;
    }
    s->pattern = strdup(pattern);
    if (rc != 0 || s->pattern == NULL) {
        ferry__sub_options_deinit(&s->opts);
        free(s->pattern);
        free(s);
        return -ENOMEM;
    }
    s->client = c;
    s->cb = cb;
    s->ud = userdata;
    s->refs = 1;

    pthread_mutex_lock(&c->mu);
    if (c->state == FERRY_STATE_CLOSED || c->is_closing) {
        rc = FERRY_ECLOSED;
        goto out_free;
    }
    if (timeout_ms > 0 && ferry__in_callback(c)) {
        rc = -EDEADLK;
        goto out_free;
    }
    if (timeout_ms > 0 && c->state == FERRY_STATE_IDLE) {
        rc = FERRY_ENOTREADY; /* nobody would answer before connect */
        goto out_free;
    }
    s->id = c->next_sub_id++;
    s->next = c->subs;
    if (c->subs != NULL) {
        c->subs->prev = s;
    }
    c->subs = s;
    s->is_listed = 1;
    if (c->phase == FERRY__PH_UP) {
        rc = send_subscribe(c, s);
        if (rc != 0) {
            sub_unlist(c, s);
            goto out_free;
        }
        ferry__kick(c);
    }
    if (timeout_ms > 0) {
        s->is_waited = 1;
        int64_t deadline = ferry__deadline(timeout_ms);
        while (!s->has_suback && !s->is_closed) {
            if (ferry__now_ms() >= deadline) {
                rc = -ETIMEDOUT;
                ferry__seterr(c, rc, "subscribe %s: no SubAck within %d ms", pattern, timeout_ms);
                break;
            }
            ferry__wait(c, deadline);
        }
        if (rc == 0 && s->is_closed) {
            rc = s->suback_code != 0              ? s->suback_code
                 : c->state == FERRY_STATE_CLOSED ? FERRY_ECLOSED
                                                  : FERRY_EDISCONNECTED;
        }
        if (rc != 0) {
            if (s->is_listed && s->is_sent && c->phase == FERRY__PH_UP) {
                send_unsubscribe(c, s->id);
                ferry__kick(c);
            }
            s->is_closed = 1;
            sub_unlist(c, s);
            goto out_unref;
        }
        s->is_waited = 0; /* later refusals (after a reconnect) are events */
    }
    ferry__sub_handle_list(c, s);
    *out = s;
    pthread_mutex_unlock(&c->mu);
    return 0;

out_unref:
    ferry__sub_unref(s);
    pthread_mutex_unlock(&c->mu);
    return rc;
out_free:
    pthread_mutex_unlock(&c->mu);
    ferry__sub_options_deinit(&s->opts);
    free(s->pattern);
    free(s);
    return rc;
}

FERRY_API int ferry_unsubscribe(ferry_sub *s)
{
    if (s == NULL) {
        return -EINVAL;
    }
    ferry_client *c = s->client;
    if (s->clu_kids != NULL) {
        return ferry__clu_unsubscribe(s);
    }
    pthread_mutex_lock(&c->mu);
    if (s->is_listed && s->is_sent && c->phase == FERRY__PH_UP) {
        send_unsubscribe(c, s->id);
        ferry__kick(c);
    }
    s->is_closed = 1;
    sub_unlist(c, s);
    sub_queue_clear(s);
    ferry__sub_handle_unlist(c, s);
    /* A callback for s running on another thread finishes before we
     * return (on this thread it is our caller, and the handle is freed
     * when the dispatcher drops its reference). */
    while (c->cb_sub == s && !pthread_equal(c->cb_thread, pthread_self())) {
        pthread_cond_wait(&c->cond, &c->mu);
    }
    ferry__sub_unref(s);
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    return 0;
}

FERRY_API int ferry_sub_next(ferry_sub *s, int timeout_ms, ferry_msg **out)
{
    if (s == NULL || out == NULL || s->cb != NULL) {
        return -EINVAL;
    }
    if (s->clu_kids != NULL) {
        return ferry__clu_sub_next(s, timeout_ms, out);
    }
    ferry_client *c = s->client;
    pthread_mutex_lock(&c->mu);
    int rc = 0;
    int64_t deadline = ferry__deadline(timeout_ms);
    while (s->q_head == NULL) {
        if (s->is_closed) {
            rc = s->suback_code != 0 ? s->suback_code : FERRY_ECLOSED;
            goto out_unlock;
        }
        if (timeout_ms == 0) {
            /* Nothing queued: do one round of non-blocking work first, so
             * that a loop of ferry_sub_next(s, 0) alone makes progress. */
            if (!c->has_thread && !ferry__in_callback(c)) {
                ferry__wait(c, ferry__now_ms());
                if (s->q_head != NULL) {
                    break;
                }
            }
            rc = -EAGAIN;
            goto out_unlock;
        }
        if (ferry__in_callback(c)) {
            rc = -EDEADLK;
            goto out_unlock;
        }
        if (deadline >= 0 && ferry__now_ms() >= deadline) {
            rc = -ETIMEDOUT;
            goto out_unlock;
        }
        ferry__wait(c, deadline);
    }
    *out = ferry__sub_dequeue(s);
out_unlock:
    pthread_mutex_unlock(&c->mu);
    return rc;
}

FERRY_API uint64_t ferry_sub_id(const ferry_sub *s)
{
    return s != NULL ? s->id : 0;
}

FERRY_API size_t ferry_sub_pending(ferry_sub *s)
{
    if (s == NULL) {
        return 0;
    }
    pthread_mutex_lock(&s->client->mu);
    size_t n = s->q_len;
    pthread_mutex_unlock(&s->client->mu);
    return n;
}

FERRY_API uint64_t ferry_sub_dropped(ferry_sub *s)
{
    if (s == NULL) {
        return 0;
    }
    pthread_mutex_lock(&s->client->mu);
    uint64_t n = s->dropped;
    pthread_mutex_unlock(&s->client->mu);
    return n;
}

/*
 * cluster_sub.c - cluster mode's subscriptions (cluster.h): a facade's
 * ferry_sub stands for one child subscription per broker that serves it:
 * the owner's for a topic, every broker's for a pattern with wildcards (each
 * broker delivers the matching topics it owns). Their deliveries merge into
 * the facade's subscription: its callback (through the callback slot, with
 * the facade's pointers), or its queue for ferry_sub_next(). Each topic
 * comes from one broker, so its order is that broker's; topics of different
 * brokers interleave as they arrive. A delivered message keeps its child
 * (ferry_msg_ack goes to the broker that sent it; ferry_msg_sub_id is that
 * broker's subscription id).
 *
 * A broker learned later (the facade's Metadata refresh, or an owner not
 * known yet) gets a child subscription for each pattern with wildcards
 * (ferry__clu_subs_extend); a wildcard durable started at ALL then misses
 * nothing that broker stored meanwhile.
 *
 * LOCKING. The facade subscription's fields (queue, is_closed, dropped,
 * handle list, clu_kids and n_clu_kids once the handle is listed) are
 * guarded by the facade's c->mu, as for any subscription; clu_kids has room
 * for FERRY__CLU_MAX_BROKERS, so it never moves.
 */
#include "cluster.h"
#include "ferry_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A child's delivery for the facade's subscription s (ud). */
static void on_kid_msg(ferry_client *ch, ferry_sub *ks, const ferry_msg *m, void *ud)
{
    struct ferry_sub *s = ud;
    ferry_client *c = s->client;
    (void)ch;
    (void)ks;
    if (s->cb != NULL && ferry__clu_is_loop(c)) {
        /* For ferry_client_process() on the loop's thread. */
        ferry_msg *copy = NULL;
        struct ferry__cbitem *it = calloc(1, sizeof(*it));
        int rc = it != NULL ? ferry_msg_copy(m, &copy) : -ENOMEM;
        pthread_mutex_lock(&c->mu);
        if (rc != 0 || s->is_closed) {
            s->dropped += s->is_closed ? 0 : 1;
            free(it);
            free(copy);
        } else {
            it->kind = FERRY__CB_MSG;
            it->sub = s;
            it->msg = copy;
            s->refs++;
            ferry__clu_loop_push(c, it);
        }
        pthread_mutex_unlock(&c->mu);
        return;
    }
    if (s->cb != NULL) {
        if (ferry__clu_cb_enter(c, &s->is_closed)) {
            s->cb(c, s, m, s->ud);
            ferry__clu_cb_leave(c);
        }
        return;
    }
    ferry_msg *copy = NULL;
    int rc = ferry_msg_copy(m, &copy);
    pthread_mutex_lock(&c->mu);
    if (rc != 0 || s->is_closed || (s->opts.queue_max > 0 && s->q_len >= s->opts.queue_max)) {
        s->dropped += s->is_closed ? 0 : 1;
        free(copy);
    } else {
        ferry__sub_enqueue(s, copy);
        pthread_cond_broadcast(&c->cond);
    }
    pthread_mutex_unlock(&c->mu);
}

static int has_wildcard(const char *pattern)
{
    return strchr(pattern, '*') != NULL || strchr(pattern, '>') != NULL;
}

/* Subscribe s's pattern on its topic's owner, finding it again after a
 * NOT_OWNER and retrying an unavailable topic until the deadline. */
static int subscribe_owner(struct ferry_sub *s, const ferry_sub_options *opts, int timeout_ms,
                           int in_cb)
{
    ferry_client *c = s->client;
    uint32_t wait_ms = c->opts.connect_timeout_ms > 0 ? c->opts.connect_timeout_ms : 5000;
    int64_t deadline = ferry__deadline(timeout_ms > 0 ? timeout_ms : (int)wait_ms);
    for (;;) {
        ferry_client *ch = NULL;
        int rc = ferry__clu_route(c, s->pattern, deadline, !in_cb, &ch);
        if (rc != 0) {
            return rc;
        }
        int tmo = 0;
        if (timeout_ms > 0) {
            int64_t left = deadline - ferry__now_ms();
            tmo = left < 1 ? 1 : (int)left;
        }
        /* Waiting for a SubAck: only from an owner that is up (else the
         * subscription would wait for its return, past the timeout). */
        if (tmo > 0 && ferry_client_state(ch) != FERRY_STATE_CONNECTED) {
            rc = FERRY_EUNAVAILABLE;
        } else {
            rc = ferry_subscribe(ch, s->pattern, opts, on_kid_msg, s, tmo, &s->clu_kids[0]);
        }
        if (rc == FERRY_ENOTOWNER) {
            ferry__clu_forget(c, s->pattern);
        }
        if (timeout_ms > 0 && ferry__now_ms() < deadline &&
            (rc == FERRY_ENOTOWNER || rc == FERRY_EUNAVAILABLE)) {
            ferry__clu_backoff(deadline, rc == FERRY_ENOTOWNER ? 0 : 100);
            continue;
        }
        return rc;
    }
}

/* Subscribe s's pattern on every broker: at once where connected (waiting
 * for the SubAck if timeout_ms > 0), else when the child connects. */
static int subscribe_everywhere(struct ferry_sub *s, const ferry_sub_options *opts, int timeout_ms,
                                ferry_client **kids, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int tmo = ferry_client_state(kids[i]) == FERRY_STATE_CONNECTED ? timeout_ms : 0;
        int rc = ferry_subscribe(kids[i], s->pattern, opts, on_kid_msg, s, tmo, &s->clu_kids[i]);
        if (rc != 0) {
            return rc;
        }
        s->n_clu_kids++;
    }
    return 0;
}

static void kids_unsubscribe(struct ferry_sub *s)
{
    ferry_client *c = s->client;
    struct ferry_sub *kids[FERRY__CLU_MAX_BROKERS];
    pthread_mutex_lock(&c->mu);
    size_t n = s->n_clu_kids;
    memcpy(kids, s->clu_kids, n * sizeof(*kids));
    s->n_clu_kids = 0;
    pthread_mutex_unlock(&c->mu);
    for (size_t i = 0; i < n; i++) {
        if (kids[i] != NULL) {
            ferry_unsubscribe(kids[i]); /* waits for its callback on another thread */
        }
    }
}

void ferry__clu_subs_extend(ferry_client *c, ferry_client *kid)
{
    struct ferry_sub *subs[256];
    size_t n = 0;
    pthread_mutex_lock(&c->mu);
    for (struct ferry_sub *s = c->handles; s != NULL && n < 256; s = s->hnext) {
        if (has_wildcard(s->pattern) && !s->is_closed) {
            s->refs++;
            subs[n++] = s;
        }
    }
    pthread_mutex_unlock(&c->mu);
    for (size_t i = 0; i < n; i++) {
        struct ferry_sub *s = subs[i], *ks = NULL, *drop = NULL;
        int rc = ferry_subscribe(kid, s->pattern, &s->opts, on_kid_msg, s, 0, &ks);
        pthread_mutex_lock(&c->mu);
        if (rc != 0) {
            ferry__log(c, FERRY_LOG_WARN, "cluster: cannot subscribe %s on a new broker: %s",
                       s->pattern, ferry_strerror(rc));
        } else if (s->is_closed || s->n_clu_kids == FERRY__CLU_MAX_BROKERS) {
            drop = ks;
        } else {
            s->clu_kids[s->n_clu_kids++] = ks;
        }
        pthread_mutex_unlock(&c->mu);
        if (drop != NULL) {
            ferry_unsubscribe(drop); /* before s may go: its deliveries point to s */
        }
        pthread_mutex_lock(&c->mu);
        ferry__sub_unref(s);
        pthread_mutex_unlock(&c->mu);
    }
}

static struct ferry_sub *sub_new(ferry_client *c, const char *pattern,
                                 const ferry_sub_options *opts, ferry_msg_cb cb, void *ud)
{
    struct ferry_sub *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    int rc = opts != NULL ? ferry__sub_options_copy(&s->opts, opts) : 0;
    if (opts == NULL) {
        ferry__sub_options_defaults(&s->opts);
    }
    s->pattern = strdup(pattern);
    s->clu_kids = calloc(FERRY__CLU_MAX_BROKERS, sizeof(*s->clu_kids));
    s->client = c;
    s->cb = cb;
    s->ud = ud;
    s->refs = 1;
    if (rc != 0 || s->pattern == NULL || s->clu_kids == NULL) {
        ferry__sub_unref(s);
        return NULL;
    }
    return s;
}

int ferry__clu_subscribe(ferry_client *c, const char *pattern, const ferry_sub_options *opts,
                         ferry_msg_cb cb, void *ud, int timeout_ms, ferry_sub **out)
{
    pthread_mutex_lock(&c->mu);
    int in_cb = ferry__clu_in_callback(c);
    int rc = c->state == FERRY_STATE_CLOSED || c->is_closing ? FERRY_ECLOSED
             : timeout_ms > 0 && in_cb                       ? -EDEADLK
                                                             : 0;
    pthread_mutex_unlock(&c->mu);
    if (rc != 0) {
        return rc;
    }
    ferry_client *kids[FERRY__CLU_MAX_BROKERS];
    size_t n = has_wildcard(pattern) ? ferry__clu_children(c, kids, FERRY__CLU_MAX_BROKERS) : 1;
    struct ferry_sub *s = sub_new(c, pattern, opts, cb, ud);
    if (s == NULL) {
        return -ENOMEM;
    }
    if (has_wildcard(pattern)) {
        rc = subscribe_everywhere(s, opts, timeout_ms, kids, n);
    } else {
        rc = subscribe_owner(s, opts, timeout_ms, in_cb);
        s->n_clu_kids = rc == 0 ? 1 : 0;
    }
    if (rc != 0) {
        pthread_mutex_lock(&c->mu);
        s->is_closed = 1;
        pthread_cond_broadcast(ferry__clu_cb_cond(c));
        pthread_mutex_unlock(&c->mu);
        kids_unsubscribe(s);
        ferry__sub_unref(s);
        pthread_mutex_lock(&c->mu);
        ferry__seterr(c, rc, "subscribe %s: %s", pattern, ferry_strerror(rc));
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    pthread_mutex_lock(&c->mu);
    s->id = c->next_sub_id++;
    ferry__sub_handle_list(c, s);
    *out = s;
    pthread_mutex_unlock(&c->mu);
    return 0;
}

int ferry__clu_unsubscribe(ferry_sub *s)
{
    ferry_client *c = s->client;
    pthread_mutex_lock(&c->mu);
    s->is_closed = 1;
    pthread_cond_broadcast(ferry__clu_cb_cond(c)); /* a delivery waiting for the slot drops */
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    /* Each waits for a callback of its own running on another thread. */
    kids_unsubscribe(s);
    pthread_mutex_lock(&c->mu);
    ferry__sub_handle_unlist(c, s);
    ferry__sub_unref(s);
    pthread_mutex_unlock(&c->mu);
    return 0;
}

void ferry__clu_subs_closed(ferry_client *c)
{
    for (struct ferry_sub *s = c->handles; s != NULL; s = s->hnext) {
        s->is_closed = 1;
    }
    pthread_cond_broadcast(ferry__clu_cb_cond(c));
    pthread_cond_broadcast(&c->cond);
}

int ferry__clu_sub_next(ferry_sub *s, int timeout_ms, ferry_msg **out)
{
    ferry_client *c = s->client;
    pthread_mutex_lock(&c->mu);
    int rc = 0;
    int64_t deadline = ferry__deadline(timeout_ms);
    while (s->q_head == NULL) {
        if (s->is_closed) {
            rc = FERRY_ECLOSED;
            goto out_unlock;
        }
        if (timeout_ms == 0) {
            rc = -EAGAIN;
            goto out_unlock;
        }
        if (ferry__clu_in_callback(c)) {
            rc = -EDEADLK;
            goto out_unlock;
        }
        if (deadline >= 0 && ferry__now_ms() >= deadline) {
            rc = -ETIMEDOUT;
            goto out_unlock;
        }
        /* c->cond's clock is CLOCK_MONOTONIC, as ferry__now_ms(). */
        if (deadline < 0) {
            pthread_cond_wait(&c->cond, &c->mu);
        } else {
            struct timespec ts = {.tv_sec = deadline / 1000,
                                  .tv_nsec = (long)(deadline % 1000) * 1000000};
            pthread_cond_timedwait(&c->cond, &c->mu, &ts);
        }
    }
    *out = ferry__sub_dequeue(s);
out_unlock:
    pthread_mutex_unlock(&c->mu);
    return rc;
}

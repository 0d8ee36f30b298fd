/*
 * request.c - request/reply: ferry_request() over a per-client inbox.
 *
 * A client makes one subscription, to "_INBOX.<random id>.>", the first
 * time it sends a request (c->inbox_sub, flagged is_inbox: its deliveries
 * skip the queue and come here). Each request takes the next n, publishes
 * with reply_to "_INBOX.<id>.<n>" and waits on its struct ferry__req, which
 * lives on the caller's stack and is listed in c->reqs while it waits. The
 * request is done when:
 *   - a message arrives on its reply topic (ferry__req_on_reply): the first
 *     one wins, later ones (or ones for requests that gave up) are freed;
 *   - the server answers its Publish with an Error (ferry__req_on_pub_error):
 *     ERROR_NO_RESPONDERS when nothing subscribes to an ephemeral topic, or
 *     a refusal (permission, bad topic);
 *   - the connection is lost or the client closed (ferry__reqs_fail_all):
 *     an answer sent to the old connection's inbox would be lost anyway.
 * The Publish is fire-and-forget (no PubAck): the server's only answers to
 * it are the reply and an Error. Everything is guarded by c->mu.
 */
#include "cluster.h"
#include "ferry_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

/* The prefix of every inbox; the server never stores topics under it. */
#define REQ_INBOX_PREFIX "_INBOX."

struct ferry__req {
    struct ferry__req *next;
    uint64_t n;      /* its reply topic is c->inbox + "." + n */
    uint64_t pub_id; /* its Publish's id, once is_sent */
    int is_sent;
    int is_done;
    int code;                /* 0: reply holds the answer */
    struct ferry_msg *reply; /* owned by the request until handed to the caller */
};

static void req_unlink(ferry_client *c, struct ferry__req *r)
{
    for (struct ferry__req **pp = &c->reqs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            return;
        }
    }
}

static void req_done(ferry_client *c, struct ferry__req *r, int code, struct ferry_msg *reply)
{
    r->is_done = 1;
    r->code = code;
    r->reply = reply;
    pthread_cond_broadcast(&c->cond);
}

void ferry__req_on_reply(ferry_client *c, struct ferry_msg *m)
{
    size_t il = strlen(c->inbox);
    const char *t = m->topic;
    if (il > 0 && strncmp(t, c->inbox, il) == 0 && t[il] == '.' && t[il + 1] >= '0' &&
        t[il + 1] <= '9') {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(t + il + 1, &end, 10);
        if (errno == 0 && *end == '\0') {
            for (struct ferry__req *r = c->reqs; r != NULL; r = r->next) {
                if (r->n == n && !r->is_done) {
                    req_done(c, r, 0, m);
                    return;
                }
            }
        }
    }
    ferry__log(c, FERRY_LOG_DEBUG, "reply on %s: no request waits for it; dropped", t);
    free(m);
}

int ferry__req_on_pub_error(ferry_client *c, uint64_t id, int code)
{
    for (struct ferry__req *r = c->reqs; r != NULL; r = r->next) {
        if (r->is_sent && r->pub_id == id && !r->is_done) {
            req_done(c, r, code, NULL);
            return 1;
        }
    }
    return 0;
}

void ferry__reqs_fail_all(ferry_client *c, int code)
{
    for (struct ferry__req *r = c->reqs; r != NULL; r = r->next) {
        if (!r->is_done) {
            req_done(c, r, code, NULL);
        }
    }
}

/* The random part of the inbox name: 22 characters of [0-9A-Za-z], about
 * 131 bits, so that no two clients ever share an inbox by chance. */
static void inbox_name(ferry_client *c)
{
    static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    uint8_t rnd[22];
    if (getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd)) {
        /* No entropy yet (early boot): the jitter generator, stirred with
         * the clock and the process id, is unique enough for a name. */
        uint64_t x = c->rng ^ (uint64_t)ferry__now_ms() ^ ((uint64_t)getpid() << 32) ^
                     (uint64_t)(uintptr_t)c;
        for (size_t i = 0; i < sizeof(rnd); i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            rnd[i] = (uint8_t)(x >> 24);
        }
    }
    /* A facade's child names its broker, where the inbox is subscribed:
     * a cluster client's reply goes there (ferry__clu_route). */
    char *p = c->inbox + (c->clu_broker_id != 0
                              ? snprintf(c->inbox, sizeof(c->inbox), "%sB%" PRIu32 "_",
                                         REQ_INBOX_PREFIX, c->clu_broker_id)
                              : snprintf(c->inbox, sizeof(c->inbox), "%s", REQ_INBOX_PREFIX));
    for (size_t i = 0; i < sizeof(rnd); i++) {
        *p++ = digits[rnd[i] % 62];
    }
    *p = '\0';
}

/* Make sure the inbox subscription is in place (SubAck received). Lock
 * held; released while subscribing or waiting for another thread that
 * subscribes. */
static int inbox_ready(ferry_client *c, int64_t deadline)
{
    for (;;) {
        if (c->state == FERRY_STATE_CLOSED || c->is_closing) {
            return FERRY_ECLOSED;
        }
        if (c->state == FERRY_STATE_IDLE) {
            return FERRY_ENOTREADY;
        }
        struct ferry_sub *s = c->inbox_sub;
        if (s != NULL && s->is_closed) {
            /* Refused after a reconnect (rights taken away): make it anew,
             * so that the caller learns why. */
            c->inbox_sub = NULL;
            pthread_mutex_unlock(&c->mu);
            ferry_unsubscribe(s);
            pthread_mutex_lock(&c->mu);
            continue;
        }
        if (s != NULL && s->is_acked) {
            return 0; /* in place on this connection: a reply can reach it */
        }
        int64_t now = ferry__now_ms();
        if (now >= deadline) {
            return -ETIMEDOUT;
        }
        if (s != NULL) {
            /* Re-sent after a reconnect and not answered yet: a reply
             * routed before the server has it would be lost. */
            ferry__wait(c, deadline);
            continue;
        }
        if (c->is_inbox_making) {
            ferry__wait(c, deadline); /* another request is making it */
            continue;
        }
        if (c->inbox[0] == '\0') {
            inbox_name(c);
        }
        char pattern[sizeof(c->inbox) + 2];
        snprintf(pattern, sizeof(pattern), "%s.>", c->inbox);
        c->is_inbox_making = 1;
        pthread_mutex_unlock(&c->mu);
        int rc = ferry_subscribe(c, pattern, NULL, NULL, NULL, (int)(deadline - now), &s);
        pthread_mutex_lock(&c->mu);
        c->is_inbox_making = 0;
        pthread_cond_broadcast(&c->cond);
        if (rc != 0) {
            char why[FERRY__ERRTEXT_CAP];
            snprintf(why, sizeof(why), "%s", c->err_code == rc ? c->err_text : ferry_strerror(rc));
            ferry__seterr(c, rc, "request: cannot subscribe to the inbox %s: %s%s", pattern, why,
                          rc == FERRY_EPERM ? " (a requester needs the right to subscribe to "
                                              "_INBOX.>)"
                                            : "");
            return rc;
        }
        s->is_inbox = 1;
        /* Anything that came before the flag was not an answer to us: no
         * request was out yet. */
        while (s->q_head != NULL) {
            struct ferry_msg *m = s->q_head;
            s->q_head = m->next;
            free(m);
        }
        s->q_tail = NULL;
        s->q_len = 0;
        c->inbox_sub = s;
        return 0;
    }
}

FERRY_API int ferry_request(ferry_client *c, const char *topic, const void *data, size_t len,
                            int timeout_ms, ferry_msg **reply)
{
    if (c == NULL || topic == NULL || reply == NULL || timeout_ms <= 0 ||
        (data == NULL && len > 0) || !ferry__topic_valid(topic)) {
        return -EINVAL;
    }
    int64_t deadline = ferry__deadline(timeout_ms);
    if (ferry__clu_calling_back(c)) {
        return -EDEADLK;
    }
    if (ferry__clu(c) != NULL) {
        /* A facade: the request goes to its topic's owner, and the
         * owner's child waits on its own inbox there (cluster.h). */
        ferry_client *ch;
        int rc = ferry__clu_route(c, topic, deadline, 1, &ch);
        if (rc != 0) {
            return rc;
        }
        c = ch;
    }
    pthread_mutex_lock(&c->mu);
    int rc;
    if (ferry__in_callback(c)) {
        rc = -EDEADLK;
        goto out_seterr;
    }
    rc = inbox_ready(c, deadline);
    if (rc != 0) {
        if (rc == -ETIMEDOUT || c->err_code != rc) {
            goto out_seterr;
        }
        goto out_unlock; /* inbox_ready said why */
    }
    struct ferry__req r = {.n = c->next_req++};
    char reply_to[sizeof(c->inbox) + 24];
    snprintf(reply_to, sizeof(reply_to), "%s.%" PRIu64, c->inbox, r.n);
    ferry_pub m = {.topic = topic, .payload = data, .payload_len = len, .reply_to = reply_to};
    /* Listed before it is sent: writing may already find the connection
     * lost, and that must fail it. */
    r.next = c->reqs;
    c->reqs = &r;
    uint64_t id = 0;
    rc = ferry__publish_locked(c, &m, &id);
    if (rc != 0) {
        req_unlink(c, &r);
        goto out_seterr;
    }
    r.pub_id = id;
    r.is_sent = 1;
    while (!r.is_done) {
        if (ferry__now_ms() >= deadline) {
            break;
        }
        ferry__wait(c, deadline);
    }
    req_unlink(c, &r);
    if (!r.is_done) {
        rc = -ETIMEDOUT;
        goto out_seterr;
    }
    rc = r.code;
    if (rc == 0) {
        *reply = r.reply;
        goto out_unlock;
    }
    if (rc == FERRY_ENORESPONDERS) {
        ferry__seterr(c, rc, "request to %s: no responders (nothing subscribes to it)", topic);
        goto out_unlock;
    }
    if (c->err_code == rc) {
        goto out_unlock; /* the server's Error text says more */
    }
out_seterr:
    ferry__seterr(c, rc, "request to %s: %s", topic, ferry_strerror(rc));
out_unlock:
    pthread_mutex_unlock(&c->mu);
    return rc;
}

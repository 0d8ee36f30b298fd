/*
 * client_api.c - the client's public life cycle: create, start the IO
 * thread, connect, flush, close, destroy, state and errors, and the
 * event-loop mode's calls (fd, events, timeout, process). The engine they
 * drive (ferry__work, ferry__dispatch) is in client.c.
 */
#include "cluster.h"
#include "ferry_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Public API: life of a client                                             */

FERRY_API int ferry_client_create(const ferry_options *o, ferry_client **out)
{
    if (out == NULL) {
        return -EINVAL;
    }
    ferry_client *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return -ENOMEM;
    }
    int rc;
    struct ferry_options defaults;
    if (o == NULL) {
        ferry__options_defaults(&defaults);
        o = &defaults;
    }
    rc = ferry__options_copy(&c->opts, o);
    if (rc != 0) {
        goto out_free;
    }
    c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (c->wake_fd < 0) {
        rc = -errno;
        goto out_opts;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    rc = -pthread_cond_init(&c->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0) {
        goto out_wake;
    }
    rc = -pthread_mutex_init(&c->mu, NULL);
    if (rc != 0) {
        goto out_cond;
    }
    rc = ferry__pubs_init(c);
    if (rc != 0) {
        goto out_mutex;
    }
    c->fd = -1;
    c->state = FERRY_STATE_IDLE;
    c->max_frame_len = FRAME_MAX_LEN_DEFAULT;
    c->next_pub_id = 1;
    c->next_sub_id = 1;
    c->next_admin_id = 1;
    codec_arena_init(&c->arena);
    frame_dec_init(&c->dec, FRAME_MAX_LEN_DEFAULT);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    c->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)c ^
             ((uint64_t)getpid() << 40);
    if (c->rng == 0) {
        c->rng = 0x9e3779b97f4a7c15ull;
    }
    /* The producer id must differ between clients everywhere: from the
     * kernel's generator, or else the time-seeded one stirred. */
    if (getrandom(&c->producer_id, sizeof(c->producer_id), GRND_NONBLOCK) !=
        (ssize_t)sizeof(c->producer_id)) {
        c->producer_id = c->rng * 0xd6e8feb86659fd93ull;
    }
    if (c->producer_id == 0) {
        c->producer_id = 1;
    }
    *out = c;
    return 0;

out_mutex:
    pthread_mutex_destroy(&c->mu);
out_cond:
    pthread_cond_destroy(&c->cond);
out_wake:
    close(c->wake_fd);
out_opts:
    ferry__options_deinit(&c->opts);
out_free:
    free(c);
    return rc;
}

FERRY_API int ferry_client_start_thread(ferry_client *c)
{
    if (c == NULL) {
        return -EINVAL;
    }
    pthread_mutex_lock(&c->mu);
    int rc = 0;
    if (c->state == FERRY_STATE_CLOSED || c->is_closing) {
        rc = FERRY_ECLOSED;
    } else if (c->has_thread || c->state != FERRY_STATE_IDLE) {
        rc = -EALREADY;
    } else {
        c->has_thread = 1;
        c->stop_thread = 0;
        rc = -pthread_create(&c->io_thread, NULL, ferry__io_thread_main, c);
        if (rc != 0) {
            c->has_thread = 0;
            ferry__seterr(c, rc, "cannot start the IO thread: %s", strerror(-rc));
        }
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

static int connect_one(ferry_client *c, int timeout_ms)
{
    pthread_mutex_lock(&c->mu);
    int rc;
    if (c->state == FERRY_STATE_CLOSED || c->is_closing) {
        rc = FERRY_ECLOSED;
        goto out_unlock;
    }
    if (c->state != FERRY_STATE_IDLE) {
        rc = -EALREADY;
        goto out_unlock;
    }
    if (timeout_ms > 0 && ferry__in_callback(c)) {
        rc = -EDEADLK;
        goto out_unlock;
    }
    c->state = FERRY_STATE_CONNECTING;
    c->n_tries = 0;
    c->server_idx = 0;
    c->connect_result = 0;
    c->next_attempt_at = ferry__now_ms();
    c->connect_async = timeout_ms == 0;
    if (timeout_ms == 0) {
        if (c->has_thread) {
            ferry__kick(c);
        } else {
            ferry__work(c);
        }
        rc = c->state == FERRY_STATE_CONNECTED ? 0
             : c->state == FERRY_STATE_IDLE    ? c->connect_result
                                               : -EINPROGRESS;
        goto out_unlock;
    }
    ferry__kick(c);
    int64_t deadline = ferry__deadline(timeout_ms);
    while (c->state == FERRY_STATE_CONNECTING) {
        if (ferry__now_ms() >= deadline) {
            ferry__conn_close_socket(c);
            c->state = FERRY_STATE_IDLE;
            ferry__seterr(c, -ETIMEDOUT, "connect: no server answered within %d ms", timeout_ms);
            ferry__pubs_fail_all(c, -ETIMEDOUT);
            rc = -ETIMEDOUT;
            goto out_unlock;
        }
        ferry__wait(c, deadline);
    }
    if (c->state == FERRY_STATE_CONNECTED) {
        rc = 0;
    } else if (c->state == FERRY_STATE_IDLE) {
        rc = c->connect_result != 0 ? c->connect_result : -ECONNREFUSED;
    } else if (c->state == FERRY_STATE_CLOSED) {
        rc = FERRY_ECLOSED;
    } else {
        rc = 0; /* connected and already lost again: reconnecting */
    }
out_unlock:
    pthread_mutex_unlock(&c->mu);
    return rc;
}

FERRY_API int ferry_client_connect(ferry_client *c, int timeout_ms)
{
    if (c == NULL || timeout_ms < 0) {
        return -EINVAL;
    }
    int64_t deadline = ferry__deadline(timeout_ms);
    int rc = connect_one(c, timeout_ms);
    /* A list of servers may be the brokers of a cluster (cluster.h). */
    if (rc == 0 && timeout_ms > 0 && c->opts.n_servers > 1 && c->clu_parent == NULL) {
        rc = ferry__clu_detect(c, deadline);
    }
    return rc;
}

/* Wait until every publish made so far is answered and a Ping sent after
 * them came back. Lock held. */
int ferry__flush_locked(ferry_client *c, int64_t deadline)
{
    /* With no time to wait, report only whether every acked publish is
     * done: a Ping round trip cannot complete within 0 ms. */
    int wait_pong = deadline < 0 || deadline > ferry__now_ms();
    uint64_t last_id = c->next_pub_id - 1;
    uint64_t gen = 0;
    uint64_t nonce = 0;
    uint64_t acks_at_ping = 0;
    int lost_acks = 0;
    uint64_t cb_target = 0; /* n_pub_cb_queued + 1 once answered, else 0 */
    for (;;) {
        if (c->state == FERRY_STATE_CLOSED) {
            return FERRY_ECLOSED;
        }
        int pubs_done = c->pubs_head == NULL || c->pubs_head->id > last_id;
        if (pubs_done && c->state == FERRY_STATE_IDLE) {
            return 0;
        }
        if (wait_pong && c->state == FERRY_STATE_CONNECTED && c->phase == FERRY__PH_UP &&
            gen != c->conn_gen) {
            int rc = ferry__send_ping(c);
            if (rc != 0) {
                return rc;
            }
            gen = c->conn_gen;
            nonce = c->ping_nonce;
            acks_at_ping = c->n_acks_sent;
            ferry__kick(c);
        }
        int answered = gen == c->conn_gen && c->pong_seen >= nonce && gen != 0;
        if (answered) {
            /* The Ack confirmation rule (proto/README.md): this Pong confirms
             * the Acks sent on this connection before its Ping - not those
             * of a connection lost meanwhile. */
            if (c->n_acks_sent == acks_at_ping) {
                c->ack_gen = 0;
            }
            if (c->has_lost_acks) {
                c->has_lost_acks = 0;
                lost_acks = 1;
            }
        }
        if (pubs_done && (answered || !wait_pong)) {
            /* Answered; now wait for their callbacks to have run. */
            if (cb_target == 0) {
                cb_target = c->n_pub_cb_queued + 1;
            }
            if (c->n_pub_cb_done + 1 >= cb_target) {
                return lost_acks ? FERRY_EDISCONNECTED : 0;
            }
        }
        if (deadline >= 0 && ferry__now_ms() >= deadline) {
            return -ETIMEDOUT;
        }
        ferry__wait(c, deadline);
    }
}

FERRY_API int ferry_flush(ferry_client *c, int timeout_ms)
{
    if (c == NULL) {
        return -EINVAL;
    }
    if (ferry__clu(c) != NULL) {
        return ferry__clu_flush(c, timeout_ms);
    }
    pthread_mutex_lock(&c->mu);
    int rc;
    if (c->state == FERRY_STATE_CLOSED) {
        rc = FERRY_ECLOSED;
    } else if (ferry__in_callback(c)) {
        rc = -EDEADLK;
    } else {
        rc = ferry__flush_locked(c, ferry__deadline(timeout_ms));
        if (rc == -ETIMEDOUT) {
            ferry__seterr(c, rc, "flush: not everything was acknowledged within %d ms", timeout_ms);
        }
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void ferry__stop_io_thread(ferry_client *c)
{
    if (!c->has_thread) {
        return;
    }
    c->stop_thread = 1;
    uint64_t one = 1;
    ssize_t w = write(c->wake_fd, &one, sizeof(one));
    (void)w;
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->io_thread, NULL);
    pthread_mutex_lock(&c->mu);
    c->has_thread = 0;
}

void ferry__say_goodbye(ferry_client *c)
{
    if (c->fd >= 0 && c->phase == FERRY__PH_UP) {
        Ferry__Disconnect d = FERRY__DISCONNECT__INIT;
        Ferry__Frame f = FERRY__FRAME__INIT;
        d.text = "client closed";
        f.body_case = FERRY__FRAME__BODY_DISCONNECT;
        f.disconnect = &d;
        if (ferry__send_frame(c, &f) == 0) {
            ferry__conn_write(c); /* best effort: the socket is non-blocking */
        }
        shutdown(c->fd, SHUT_WR);
    }
    ferry__conn_close_socket(c);
}

FERRY_API int ferry_client_close(ferry_client *c, int timeout_ms)
{
    if (c == NULL) {
        return -EINVAL;
    }
    if (ferry__clu(c) != NULL) {
        return ferry__clu_close(c, timeout_ms);
    }
    pthread_mutex_lock(&c->mu);
    if (c->state == FERRY_STATE_CLOSED && !c->has_thread) {
        pthread_mutex_unlock(&c->mu);
        return FERRY_ECLOSED;
    }
    if (c->is_closing) {
        pthread_mutex_unlock(&c->mu);
        return FERRY_ECLOSED;
    }
    if (ferry__in_callback(c)) {
        pthread_mutex_unlock(&c->mu);
        return -EDEADLK;
    }
    int was_closed = c->state == FERRY_STATE_CLOSED;
    c->is_closing = 1;
    int rc = 0;
    if (!was_closed && c->state != FERRY_STATE_IDLE) {
        rc = ferry__flush_locked(c, ferry__deadline(timeout_ms));
        if (rc == FERRY_ECLOSED) {
            /* The connection was lost for good meanwhile (reconnect off or
             * given up): the waiting publishes failed. */
            rc = FERRY_EDISCONNECTED;
        }
    }
    ferry__stop_io_thread(c);
    /* From here on, this thread is the only driver and the dispatcher. */
    ferry__say_goodbye(c);
    if (c->state != FERRY_STATE_CLOSED) { /* not already given up meanwhile */
        c->state = FERRY_STATE_CLOSED;
        ferry__pubs_fail_all(c, FERRY_ECLOSED);
        ferry__admin_fail_all(c, FERRY_ECLOSED);
        ferry__reqs_fail_all(c, FERRY_ECLOSED);
        ferry__subs_close_all(c);
        ferry__event(c, FERRY_EVENT_CLOSED, FERRY_ECLOSED, "client closed", 0, FERRY_REF_NONE, 0);
    }
    pthread_cond_broadcast(&c->cond);
    ferry__dispatch(c);
    if (rc != 0) {
        ferry__seterr(c, rc, "close: %s", ferry_strerror(rc));
    }
    pthread_mutex_unlock(&c->mu);
    return was_closed ? FERRY_ECLOSED : rc;
}

FERRY_API void ferry_client_destroy(ferry_client *c)
{
    if (c == NULL) {
        return;
    }
    if (ferry__clu(c) != NULL) {
        ferry__clu_destroy(c);
    }
    ferry_client_close(c, 0);
    pthread_mutex_lock(&c->mu);
    ferry__cbq_free(c);
    ferry__subs_close_all(c);
    ferry__subs_free_handles(c);
    pthread_mutex_unlock(&c->mu);
    ferry__pubs_deinit(c);
    frame_dec_deinit(&c->dec);
    codec_arena_deinit(&c->arena);
    free(c->out.data);
    ferry__tls_ctx_close(c->tls_ctx);
    close(c->wake_fd);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->mu);
    ferry__options_deinit(&c->opts);
    free(c);
}

FERRY_API enum ferry_state ferry_client_state(ferry_client *c)
{
    if (c == NULL) {
        return FERRY_STATE_CLOSED;
    }
    pthread_mutex_lock(&c->mu);
    enum ferry_state s = c->state;
    pthread_mutex_unlock(&c->mu);
    return s;
}

FERRY_API int ferry_client_last_error(ferry_client *c, char *buf, size_t cap)
{
    if (c == NULL) {
        return -EINVAL;
    }
    pthread_mutex_lock(&c->mu);
    int code = c->err_code;
    if (buf != NULL && cap > 0) {
        snprintf(buf, cap, "%s", c->err_text);
    }
    pthread_mutex_unlock(&c->mu);
    return code;
}

FERRY_API int ferry_client_server_info(ferry_client *c, ferry_server_info *out)
{
    if (c == NULL || out == NULL) {
        return -EINVAL;
    }
    c = ferry__clu_any(c); /* a facade: one of its brokers */
    pthread_mutex_lock(&c->mu);
    int rc = FERRY_ENOTREADY;
    if (c->has_info) {
        *out = c->info;
        rc = 0;
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Public API: event-loop mode                                              */

FERRY_API int ferry_client_fd(ferry_client *c)
{
    if (c == NULL) {
        return -EINVAL;
    }
    if (ferry__clu(c) != NULL) {
        return ferry__clu_fd(c);
    }
    pthread_mutex_lock(&c->mu);
    int fd = c->has_thread ? -EINVAL : c->fd;
    pthread_mutex_unlock(&c->mu);
    return fd;
}

FERRY_API int ferry_client_events(ferry_client *c)
{
    if (c == NULL) {
        return -EINVAL;
    }
    if (ferry__clu(c) != NULL) {
        return ferry__clu_events(c);
    }
    pthread_mutex_lock(&c->mu);
    int ev = c->has_thread ? -EINVAL : ferry__poll_events(c);
    pthread_mutex_unlock(&c->mu);
    return ev;
}

FERRY_API int ferry_client_timeout_ms(ferry_client *c)
{
    if (c == NULL) {
        return -1;
    }
    if (ferry__clu(c) != NULL) {
        return ferry__clu_timeout_ms(c);
    }
    pthread_mutex_lock(&c->mu);
    int rc = -1;
    if (c->cb_head != NULL) {
        rc = 0;
    } else {
        int64_t t = ferry__next_timer(c);
        if (t >= 0) {
            int64_t d = t - ferry__now_ms();
            rc = d <= 0 ? 0 : d > INT32_MAX ? INT32_MAX : (int)d;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

FERRY_API int ferry_client_process(ferry_client *c, int revents)
{
    (void)revents; /* we ask the socket itself: spurious calls are harmless */
    if (c == NULL) {
        return -EINVAL;
    }
    if (ferry__clu(c) != NULL) {
        return ferry__clu_process(c);
    }
    pthread_mutex_lock(&c->mu);
    int rc = 0;
    if (c->has_thread) {
        rc = -EINVAL;
    } else if (ferry__in_callback(c)) {
        rc = -EDEADLK;
    } else {
        if (c->state != FERRY_STATE_CLOSED) {
            ferry__work(c);
        }
        pthread_cond_broadcast(&c->cond);
        ferry__dispatch(c);
        rc = c->state == FERRY_STATE_CLOSED ? FERRY_ECLOSED : 0;
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

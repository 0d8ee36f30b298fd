/*
 * reactor.c - reactor.h's calls: the low layer passed to the backend the set
 * was opened on, and the loop (rx_run) with its timers and wake-ups.
 */
#include "reactor_int.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define RX_RUN_EVENTS 256

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int rx_open(struct rx **out, enum rx_backend b)
{
    int rc = -ENOSYS;
    if (b == RX_EPOLL) {
        rc = rx_epoll_open(out);
    }
#ifdef FERRY_HAVE_URING
    if (b == RX_URING) {
        rc = rx_uring_open(out);
    }
#endif
    if (rc == 0) {
        struct rx *r = *out;
        theap_init(&r->timers);
        r->asyncs = NULL;
        r->wake_fd = -1;
        r->is_stopped = 0;
        r->now = mono_ms();
        r->before_sleep = NULL;
        r->after_sleep = NULL;
        r->hook_arg = NULL;
    }
    return rc;
}

const char *rx_backend_name(enum rx_backend b)
{
    return b == RX_URING ? "uring" : "epoll";
}

void rx_close(struct rx *r)
{
    if (r != NULL) {
        theap_deinit(&r->timers);
        if (r->wake_fd >= 0) {
            close(r->wake_fd);
        }
        r->ops->close(r);
    }
}

int rx_watch(struct rx *r, int fd, int is_new, uint32_t events, void *data)
{
    return r->ops->watch(r, fd, is_new, events, data);
}

int rx_unwatch(struct rx *r, int fd)
{
    return r->ops->unwatch(r, fd);
}

int rx_wait(struct rx *r, struct rx_event *evs, int max, int timeout_ms)
{
    return r->ops->wait(r, evs, max, timeout_ms);
}

/* ---- timers ------------------------------------------------------------- */

uint64_t rx_now(const struct rx *r)
{
    return r->now;
}

void rx_timer_init(struct rx_timer *tm, rx_timer_fn *cb)
{
    tm->cb = cb;
    tm->pos = TIMER_NONE;
}

int rx_timer_set(struct rx *r, struct rx_timer *tm, uint64_t when)
{
    return theap_set(&r->timers, &tm->pos, when, tm);
}

void rx_timer_stop(struct rx *r, struct rx_timer *tm)
{
    theap_remove(&r->timers, &tm->pos);
}

int rx_timer_is_set(const struct rx_timer *tm)
{
    return tm->pos != TIMER_NONE;
}

int rx_timer_reserve(struct rx *r, uint32_t n)
{
    return theap_reserve(&r->timers, n);
}

/* Due timers, earliest first. A callback may set timers (its own too): one
 * due again already waits for the next round, so a timer that keeps
 * re-arming in the past cannot hold the loop here. */
static void fire_timers(struct rx *r)
{
    uint64_t now = r->now;
    const struct theap_ent *e;
    uint32_t budget = r->timers.n;
    while (budget-- > 0 && (e = theap_peek(&r->timers)) != NULL && e->when <= now) {
        struct rx_timer *tm = e->data;
        theap_remove(&r->timers, &tm->pos);
        tm->cb(r, tm);
    }
}

/* ms until the next timer is due: 0 if one is, -1 if there is none. */
static int timer_timeout(const struct rx *r)
{
    const struct theap_ent *e = theap_peek(&r->timers);
    if (e == NULL) {
        return -1;
    }
    uint64_t now = mono_ms();
    if (e->when <= now) {
        return 0;
    }
    return e->when - now > INT_MAX ? INT_MAX : (int)(e->when - now);
}

/* ---- wake-ups ------------------------------------------------------------ */

int rx_async_init(struct rx *r, struct rx_async *as, rx_async_fn *cb)
{
    if (r->wake_fd < 0) {
        int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (fd < 0) {
            return -errno;
        }
        int rc = rx_watch(r, fd, 1, RX_READ, r); /* data r: the wake-up, not an rx_io */
        if (rc < 0) {
            close(fd);
            return rc;
        }
        r->wake_fd = fd;
    }
    as->cb = cb;
    as->r = r;
    atomic_init(&as->is_pending, 0);
    as->next = r->asyncs;
    r->asyncs = as;
    return 0;
}

void rx_async_send(struct rx_async *as)
{
    /* Only the send that makes it pending writes: the loop clears the flag
     * after draining the eventfd, so a later send writes again. */
    if (atomic_exchange(&as->is_pending, 1) == 0) {
        uint64_t one = 1;
        ssize_t w = write(as->r->wake_fd, &one, sizeof(one));
        (void)w; /* EAGAIN: the counter is full, so the fd is readable anyway */
    }
}

static void take_wakeups(struct rx *r)
{
    uint64_t v;
    ssize_t n = read(r->wake_fd, &v, sizeof(v));
    (void)n;
    for (struct rx_async *as = r->asyncs; as != NULL; as = as->next) {
        if (atomic_exchange(&as->is_pending, 0)) {
            as->cb(r, as);
        }
    }
}

/* ---- the loop ------------------------------------------------------------ */

void rx_set_hooks(struct rx *r, rx_hook_fn *before_sleep, void (*after_sleep)(struct rx *, void *),
                  void *arg)
{
    r->before_sleep = before_sleep;
    r->after_sleep = after_sleep;
    r->hook_arg = arg;
}

void *rx_arg(const struct rx *r)
{
    return r->hook_arg;
}

void rx_stop(struct rx *r)
{
    r->is_stopped = 1;
}

int rx_run(struct rx *r)
{
    struct rx_event evs[RX_RUN_EVENTS];
    r->is_stopped = 0;
    for (;;) {
        int timeout = r->before_sleep ? r->before_sleep(r, r->hook_arg) : -1;
        if (r->is_stopped) {
            return 0;
        }
        int tt = timer_timeout(r);
        if (tt >= 0 && (timeout < 0 || tt < timeout)) {
            timeout = tt;
        }
        int n = rx_wait(r, evs, RX_RUN_EVENTS, timeout);
        if (n < 0 && n != -EINTR) {
            return n;
        }
        r->now = mono_ms();
        if (r->after_sleep) {
            r->after_sleep(r, r->hook_arg);
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data == r) {
                take_wakeups(r);
            } else {
                struct rx_io *io = evs[i].data;
                io->cb(r, io, evs[i].events);
            }
        }
        fire_timers(r);
        if (r->is_stopped) {
            return 0;
        }
    }
}

/*
 * reactor_uring.c - reactor.h on io_uring (liburing): readiness through the
 * ring.
 *
 * Each watched descriptor has at most one one-shot poll request in the
 * ring (IORING_OP_POLL_ADD). A request that completes reports the
 * descriptor once; it is armed again just before the next wait, after the
 * caller has read or written what it could. A poll armed on a descriptor
 * that is still ready completes at once, so a descriptor stays reported
 * while it is ready: level-triggered, like epoll without EPOLLET, which is
 * what the IO threads rely on (they read a bounded amount per event). The
 * re-arming costs no system call of its own: the requests are submitted by
 * the same io_uring_enter that waits.
 *
 * A request is named by (generation << 32 | fd) in its user_data. Changing
 * what a descriptor is watched for, or unwatching it, removes its request
 * (IORING_OP_POLL_REMOVE) and bumps the generation, so a completion of
 * the old request that is already in the completion queue is recognised as
 * stale and dropped. An unwatch submits the removal at once: the request
 * holds a reference to the file, which the caller is about to close.
 *
 * Poll requests always report errors and hang-ups (the kernel adds
 * POLLERR | POLLHUP to any mask), so events 0 behaves like epoll's: kept
 * in the set, asked for nothing, errors still reported.
 */
#include "reactor_int.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#define URING_ENTRIES 256u
#define UD_REMOVE UINT64_MAX /* the user_data of removal requests: no report */

struct uslot {
    void *data;
    uint32_t want; /* RX_READ | RX_WRITE */
    uint32_t gen;
    uint8_t is_used;
    uint8_t is_armed;  /* a poll request is in the ring */
    uint8_t is_queued; /* in arm[]: armed before the next wait */
};

struct rx_uring {
    struct rx base;
    struct io_uring ring;
    struct uslot *slots; /* by descriptor */
    uint32_t n_slots;
    int *arm; /* descriptors to arm before the next wait */
    uint32_t n_arm, arm_cap;
};

static const struct rx_ops uring_ops;

int rx_uring_open(struct rx **out)
{
    struct rx_uring *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return -ENOMEM;
    }
    int rc = io_uring_queue_init(URING_ENTRIES, &r->ring, 0);
    if (rc < 0) {
        free(r);
        return rc == -EPERM || rc == -ENOSYS ? -ENOSYS : rc;
    }
    r->base.ops = &uring_ops;
    *out = &r->base;
    return 0;
}

static void uring_close(struct rx *base)
{
    struct rx_uring *r = (struct rx_uring *)base;
    io_uring_queue_exit(&r->ring);
    free(r->slots);
    free(r->arm);
    free(r);
}

static uint64_t ud_of(int fd, uint32_t gen)
{
    return (uint64_t)gen << 32 | (uint32_t)fd;
}

/* An SQE, submitting what is queued first if the ring is full. */
static struct io_uring_sqe *sqe_get(struct rx_uring *r)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (sqe == NULL && io_uring_submit(&r->ring) >= 0) {
        sqe = io_uring_get_sqe(&r->ring);
    }
    return sqe;
}

/* Remove fd's poll request (if any) and retire its generation. */
static int disarm(struct rx_uring *r, int fd, struct uslot *s)
{
    if (s->is_armed) {
        struct io_uring_sqe *sqe = sqe_get(r);
        if (sqe == NULL) {
            return -EBUSY;
        }
        io_uring_prep_poll_remove(sqe, ud_of(fd, s->gen));
        io_uring_sqe_set_data64(sqe, UD_REMOVE);
        s->is_armed = 0;
    }
    s->gen++;
    return 0;
}

static int queue_arm(struct rx_uring *r, int fd, struct uslot *s)
{
    if (s->is_queued) {
        return 0;
    }
    if (r->n_arm == r->arm_cap) {
        uint32_t cap = r->arm_cap ? r->arm_cap * 2 : 64;
        int *v = realloc(r->arm, cap * sizeof(*v));
        if (v == NULL) {
            return -ENOMEM;
        }
        r->arm = v;
        r->arm_cap = cap;
    }
    r->arm[r->n_arm++] = fd;
    s->is_queued = 1;
    return 0;
}

static int uring_watch(struct rx *base, int fd, int is_new, uint32_t events, void *data)
{
    struct rx_uring *r = (struct rx_uring *)base;
    if (fd < 0) {
        return -EBADF;
    }
    if ((uint32_t)fd >= r->n_slots) {
        uint32_t n = r->n_slots ? r->n_slots : 64;
        while (n <= (uint32_t)fd) {
            n *= 2;
        }
        struct uslot *v = realloc(r->slots, n * sizeof(*v));
        if (v == NULL) {
            return -ENOMEM;
        }
        memset(v + r->n_slots, 0, (n - r->n_slots) * sizeof(*v));
        r->slots = v;
        r->n_slots = n;
    }
    struct uslot *s = &r->slots[fd];
    if (is_new && s->is_used) {
        return -EEXIST;
    }
    if (!is_new && !s->is_used) {
        return -ENOENT;
    }
    events &= RX_READ | RX_WRITE;
    if (s->is_used && s->is_armed && s->want != events) {
        int rc = disarm(r, fd, s);
        if (rc < 0) {
            return rc;
        }
    }
    if (!s->is_armed) {
        int rc = queue_arm(r, fd, s);
        if (rc < 0) {
            return rc;
        }
    }
    s->is_used = 1;
    s->want = events;
    s->data = data;
    return 0;
}

static int uring_unwatch(struct rx *base, int fd)
{
    struct rx_uring *r = (struct rx_uring *)base;
    if (fd < 0) {
        return -EBADF;
    }
    if ((uint32_t)fd >= r->n_slots || !r->slots[fd].is_used) {
        return -ENOENT;
    }
    struct uslot *s = &r->slots[fd];
    int was_armed = s->is_armed;
    int rc = disarm(r, fd, s);
    if (rc < 0) {
        return rc;
    }
    s->is_used = 0;
    if (was_armed) {
        io_uring_submit(&r->ring); /* the request holds the file: let it go now */
    }
    return 0;
}

/* Put a poll request in the ring for every queued descriptor still watched. */
static int arm_queued(struct rx_uring *r)
{
    uint32_t i = 0;
    for (; i < r->n_arm; i++) {
        int fd = r->arm[i];
        struct uslot *s = &r->slots[fd];
        if (!s->is_used || s->is_armed) {
            s->is_queued = 0;
            continue;
        }
        struct io_uring_sqe *sqe = sqe_get(r);
        if (sqe == NULL) {
            break; /* the rest next time */
        }
        unsigned mask = ((s->want & RX_READ) ? POLLIN : 0u) | ((s->want & RX_WRITE) ? POLLOUT : 0u);
        io_uring_prep_poll_add(sqe, fd, mask);
        io_uring_sqe_set_data64(sqe, ud_of(fd, s->gen));
        s->is_armed = 1;
        s->is_queued = 0;
    }
    if (i < r->n_arm) { /* (r->arm is NULL while nothing was ever queued) */
        memmove(r->arm, r->arm + i, (r->n_arm - i) * sizeof(*r->arm));
    }
    r->n_arm -= i;
    return 0;
}

/* Turn up to max completions into events; stale ones are dropped. */
static int harvest(struct rx_uring *r, struct rx_event *evs, int max)
{
    struct io_uring_cqe *cqes[64];
    int n = 0;
    while (n < max) {
        unsigned want = (unsigned)(max - n) < 64u ? (unsigned)(max - n) : 64u;
        unsigned got = io_uring_peek_batch_cqe(&r->ring, cqes, want);
        if (got == 0) {
            break;
        }
        for (unsigned i = 0; i < got; i++) {
            uint64_t ud = io_uring_cqe_get_data64(cqes[i]);
            int res = cqes[i]->res;
            if (ud == UD_REMOVE) {
                continue;
            }
            int fd = (int)(uint32_t)ud;
            struct uslot *s = (uint32_t)fd < r->n_slots ? &r->slots[fd] : NULL;
            if (s == NULL || !s->is_used || (uint32_t)(ud >> 32) != s->gen) {
                continue; /* removed or changed since */
            }
            s->is_armed = 0;
            (void)queue_arm(r, fd, s); /* on failure the next watch queues it */
            if (res == -ECANCELED) {
                continue;
            }
            uint32_t ev = 0;
            if (res < 0) {
                ev = RX_ERROR;
            } else {
                ev = ((res & POLLIN) ? RX_READ : 0u) | ((res & POLLOUT) ? RX_WRITE : 0u) |
                     ((res & (POLLERR | POLLHUP | POLLNVAL)) ? RX_ERROR : 0u);
            }
            evs[n].data = s->data;
            evs[n].events = ev;
            n++;
        }
        io_uring_cq_advance(&r->ring, got);
    }
    return n;
}

static int uring_wait(struct rx *base, struct rx_event *evs, int max, int timeout_ms)
{
    struct rx_uring *r = (struct rx_uring *)base;
    arm_queued(r);
    int n = harvest(r, evs, max);
    if (n > 0 || timeout_ms == 0) {
        int rc = io_uring_submit(&r->ring);
        if (rc < 0 && rc != -EINTR && rc != -EBUSY) {
            return rc;
        }
        return n > 0 ? n : harvest(r, evs, max);
    }
    for (;;) {
        struct io_uring_cqe *cqe;
        struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000,
                                       .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
        int rc =
            io_uring_submit_and_wait_timeout(&r->ring, &cqe, 1, timeout_ms < 0 ? NULL : &ts, NULL);
        if (rc < 0 && rc != -ETIME && rc != -EINTR) {
            return rc;
        }
        n = harvest(r, evs, max);
        if (n > 0 || rc == -ETIME || rc == -EINTR) {
            return rc == -EINTR && n == 0 ? -EINTR : n;
        }
        /* Only stale or removal completions: wait again (the deadline is
         * approximate then, which the callers' timers tolerate). */
        arm_queued(r);
    }
}

static const struct rx_ops uring_ops = {
    .watch = uring_watch,
    .unwatch = uring_unwatch,
    .wait = uring_wait,
    .close = uring_close,
};

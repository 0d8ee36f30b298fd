/*
 * reactor_int.h - what reactor.c asks of a backend (private to reactor*.c).
 *
 * A backend's set starts with struct rx, whose ops it points at its own
 * functions; reactor.c calls through them. The contract of each operation
 * is the public function's of the same name in reactor.h.
 */
#ifndef FERRY_REACTOR_INT_H
#define FERRY_REACTOR_INT_H

#include "reactor.h"
#include "timer_heap.h"

struct rx_ops {
    int (*watch)(struct rx *r, int fd, int is_new, uint32_t events, void *data);
    int (*unwatch)(struct rx *r, int fd);
    int (*wait)(struct rx *r, struct rx_event *evs, int max, int timeout_ms);
    void (*close)(struct rx *r);
};

/* The backend's set starts with this. ops is the backend's; the rest is
 * reactor.c's loop, set up by rx_open after the backend made the set. */
struct rx {
    const struct rx_ops *ops;
    struct theap timers;     /* struct rx_timer, by deadline */
    struct rx_async *asyncs; /* registered wake-ups */
    int wake_fd;             /* eventfd of rx_async_send, or -1 until the first */
    int is_stopped;          /* rx_stop was called */
    uint64_t now;            /* rx_now */
    rx_hook_fn *before_sleep;
    void (*after_sleep)(struct rx *, void *);
    void *hook_arg;
};

int rx_epoll_open(struct rx **out);
#ifdef FERRY_HAVE_URING
int rx_uring_open(struct rx **out);
#endif

#endif

/*
 * reactor_epoll.c - reactor.h on Linux epoll.
 *
 * rx_wait() reads into a buffer of RX_EPOLL_MAX epoll events that lives in
 * the set, then translates each into an rx_event; the translation is a few
 * bit tests per event, against a system call per round.
 */
#include "reactor_int.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#define RX_EPOLL_MAX 256

struct rx_epoll {
    struct rx base;
    int ep;
    struct epoll_event evs[RX_EPOLL_MAX];
};

static const struct rx_ops epoll_ops;

int rx_epoll_open(struct rx **out)
{
    struct rx_epoll *r = malloc(sizeof(*r));
    if (r == NULL) {
        return -ENOMEM;
    }
    r->ep = epoll_create1(EPOLL_CLOEXEC);
    if (r->ep < 0) {
        int err = errno;
        free(r);
        return -err;
    }
    r->base.ops = &epoll_ops;
    *out = &r->base;
    return 0;
}

static void epoll_close(struct rx *base)
{
    struct rx_epoll *r = (struct rx_epoll *)base;
    close(r->ep);
    free(r);
}

static int epoll_watch(struct rx *base, int fd, int is_new, uint32_t events, void *data)
{
    struct rx_epoll *r = (struct rx_epoll *)base;
    struct epoll_event ev = {.events = 0, .data.ptr = data};
    if (events & RX_READ) {
        ev.events |= EPOLLIN;
    }
    if (events & RX_WRITE) {
        ev.events |= EPOLLOUT;
    }
    if (epoll_ctl(r->ep, is_new ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev) < 0) {
        return -errno;
    }
    return 0;
}

static int epoll_unwatch(struct rx *base, int fd)
{
    struct rx_epoll *r = (struct rx_epoll *)base;
    if (epoll_ctl(r->ep, EPOLL_CTL_DEL, fd, NULL) < 0) {
        return -errno;
    }
    return 0;
}

static int epoll_wait_ready(struct rx *base, struct rx_event *evs, int max, int timeout_ms)
{
    struct rx_epoll *r = (struct rx_epoll *)base;
    if (max > RX_EPOLL_MAX) {
        max = RX_EPOLL_MAX;
    }
    int n = epoll_wait(r->ep, r->evs, max, timeout_ms);
    if (n < 0) {
        return -errno;
    }
    for (int i = 0; i < n; i++) {
        uint32_t e = r->evs[i].events;
        evs[i].data = r->evs[i].data.ptr;
        evs[i].events = ((e & EPOLLIN) ? RX_READ : 0u) | ((e & EPOLLOUT) ? RX_WRITE : 0u) |
                        ((e & (EPOLLERR | EPOLLHUP)) ? RX_ERROR : 0u);
    }
    return n;
}

static const struct rx_ops epoll_ops = {
    .watch = epoll_watch,
    .unwatch = epoll_unwatch,
    .wait = epoll_wait_ready,
    .close = epoll_close,
};

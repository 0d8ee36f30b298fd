/*
 * reactor_epoll.c - reactor.h on Linux epoll.
 *
 * rx_wait() reads into a buffer of RX_EPOLL_MAX epoll events that lives in
 * the set, then translates each into an rx_event; the translation is a few
 * bit tests per event, against a system call per round.
 */
#include "reactor.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#define RX_EPOLL_MAX 256

struct rx {
    int ep;
    struct epoll_event evs[RX_EPOLL_MAX];
};

int rx_open(struct rx **out)
{
    struct rx *r = malloc(sizeof(*r));
    if (r == NULL) {
        return -ENOMEM;
    }
    r->ep = epoll_create1(EPOLL_CLOEXEC);
    if (r->ep < 0) {
        int err = errno;
        free(r);
        return -err;
    }
    *out = r;
    return 0;
}

void rx_close(struct rx *r)
{
    if (r == NULL) {
        return;
    }
    close(r->ep);
    free(r);
}

int rx_watch(struct rx *r, int fd, int is_new, uint32_t events, void *data)
{
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

int rx_unwatch(struct rx *r, int fd)
{
    if (epoll_ctl(r->ep, EPOLL_CTL_DEL, fd, NULL) < 0) {
        return -errno;
    }
    return 0;
}

int rx_wait(struct rx *r, struct rx_event *evs, int max, int timeout_ms)
{
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

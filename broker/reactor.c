/*
 * reactor.c - reactor.h's calls, passed to the backend the set was opened on.
 */
#include "reactor_int.h"

#include <errno.h>
#include <stddef.h>

int rx_open(struct rx **out, enum rx_backend b)
{
    if (b == RX_EPOLL) {
        return rx_epoll_open(out);
    }
#ifdef FERRY_HAVE_URING
    if (b == RX_URING) {
        return rx_uring_open(out);
    }
#endif
    return -ENOSYS;
}

const char *rx_backend_name(enum rx_backend b)
{
    return b == RX_URING ? "uring" : "epoll";
}

void rx_close(struct rx *r)
{
    if (r != NULL) {
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

/*
 * reactor.h - readiness of file descriptors, one set per thread (prefix rx_).
 *
 * The IO threads and the acceptor wait on a struct rx: they say which of
 * their descriptors they want to read or write (rx_watch), then rx_wait()
 * reports the ready ones with the pointer each was watched with. A backend
 * file implements it, chosen when the set is opened (reactor.c dispatches):
 *   RX_EPOLL  reactor_epoll.c, the only file that includes <sys/epoll.h>;
 *   RX_URING  reactor_uring.c, readiness through an io_uring (one-shot
 *             poll requests, re-armed before each wait), where liburing was
 *             found at build time and the kernel allows io_uring.
 * Readiness is level-triggered in both: a descriptor stays reported while
 * it is readable (or writable) and watched for it.
 *
 * Threads: a struct rx belongs to the thread that waits on it; every call
 * below is made by that thread (the mailbox's eventfd is how other threads
 * wake it: mailbox.h).
 */
#ifndef FERRY_REACTOR_H
#define FERRY_REACTOR_H

#include <stdint.h>

#define RX_READ 1u  /* readable, or the peer closed (read() tells which) */
#define RX_WRITE 2u /* writable */
#define RX_ERROR 4u /* an error or a hang-up: reported whether asked for or not */

struct rx;

enum rx_backend { RX_EPOLL = 0, RX_URING = 1 };

struct rx_event {
    void *data;      /* as given to rx_watch */
    uint32_t events; /* RX_* that happened */
};

/* Make a descriptor set on backend b: 0, or -errno (*out untouched);
 * -ENOSYS: b was not built in, or the kernel refuses it (io_uring off). */
int rx_open(struct rx **out, enum rx_backend b);
/* "epoll" or "uring". */
const char *rx_backend_name(enum rx_backend b);
/* Close the set. The descriptors themselves are the caller's. NULL: nothing. */
void rx_close(struct rx *r);

/* Watch fd for events (RX_READ | RX_WRITE, or 0 to keep it in the set
 * without asking for anything), reported with data. is_new: fd is not in
 * the set yet. 0, or -errno. */
int rx_watch(struct rx *r, int fd, int is_new, uint32_t events, void *data);
/* Take fd out of the set (before closing it). 0, or -errno. */
int rx_unwatch(struct rx *r, int fd);

/* Wait up to timeout_ms (-1: no limit, 0: poll) for ready descriptors;
 * fills at most max of evs. Returns how many (0 on timeout), or -errno
 * (-EINTR when a signal came first). */
int rx_wait(struct rx *r, struct rx_event *evs, int max, int timeout_ms);

#endif

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
 * Two layers. The low one is rx_watch/rx_unwatch/rx_wait: a thread that
 * runs its own loop gets readiness and nothing else (the tests use it). The
 * loop itself is rx_run, modelled on redis ae.c's aeMain and libuv's
 * uv_run; one round is
 *   1. the before-sleep hook (the owner's deferred work: flush output, free
 *      what was closed; it says how long the loop may sleep);
 *   2. rx_wait, for at most that long and never past the next timer;
 *   3. the after-sleep hook (the owner reads its clocks);
 *   4. the callback of each ready descriptor (struct rx_io), and of each
 *      rx_async sent from another thread since the last round;
 *   5. the callbacks of the due timers (struct rx_timer), earliest first.
 * In a set driven by rx_run, every rx_watch's data is a struct rx_io.
 *
 * Threads: a struct rx belongs to the thread that runs it; every call below
 * is made by that thread, except rx_async_send (any thread).
 */
#ifndef FERRY_REACTOR_H
#define FERRY_REACTOR_H

#include <stdatomic.h>
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

/* ---- the loop: callbacks, timers, wake-ups, hooks ----------------------- */

struct rx_io;
struct rx_timer;
struct rx_async;
typedef void rx_io_fn(struct rx *r, struct rx_io *io, uint32_t events);
typedef void rx_timer_fn(struct rx *r, struct rx_timer *tm);
typedef void rx_async_fn(struct rx *r, struct rx_async *as);
/* Returns the longest the loop may sleep, in ms (-1: no limit, 0: not at
 * all, because work is left over). */
typedef int rx_hook_fn(struct rx *r, void *arg);

/* A watched descriptor: embed one in the owner (container_of finds it) and
 * pass its address as rx_watch's data. */
struct rx_io {
    rx_io_fn *cb;
};

/* A one-shot deadline on the loop's clock (rx_now). Embed, rx_timer_init,
 * then rx_timer_set: the callback runs once, in round phase 5, after the
 * deadline; set it again from there to repeat. */
struct rx_timer {
    rx_timer_fn *cb;
    uint32_t pos; /* the reactor's: place in its heap, or TIMER_NONE */
};

/* A wake-up from another thread (libuv's uv_async_t): rx_async_send makes
 * the loop call cb once, in the loop's thread, in round phase 4. Sends that
 * come before the loop gets to it are merged into one call. */
struct rx_async {
    rx_async_fn *cb;
    struct rx *r;
    struct rx_async *next; /* the set's list; loop thread */
    /* atomic: 1 from a send until the loop takes it; senders and the loop */
    atomic_int is_pending;
};

/* The loop's clock, ms, CLOCK_MONOTONIC: read after each wait. */
uint64_t rx_now(const struct rx *r);

void rx_timer_init(struct rx_timer *tm, rx_timer_fn *cb);
/* Run tm's callback once rx_now(r) >= when (re-setting moves it). 0, or
 * -ENOMEM: fails never if rx_timer_reserve made room. */
int rx_timer_set(struct rx *r, struct rx_timer *tm, uint64_t when);
void rx_timer_stop(struct rx *r, struct rx_timer *tm);
int rx_timer_is_set(const struct rx_timer *tm);
/* Make room for n timers in all. 0, or -ENOMEM. */
int rx_timer_reserve(struct rx *r, uint32_t n);

/* Register a wake-up with cb on r (its thread, or before the loop runs).
 * 0, or -errno (the set's eventfd could not be made). */
int rx_async_init(struct rx *r, struct rx_async *as, rx_async_fn *cb);
/* Any thread: wake r's loop to call as->cb. Never lost; cheap when the
 * loop has not yet taken the previous one (no system call). */
void rx_async_send(struct rx_async *as);

/* The before-sleep and after-sleep hooks, with their argument (either may
 * be NULL). */
void rx_set_hooks(struct rx *r, rx_hook_fn *before_sleep, void (*after_sleep)(struct rx *, void *),
                  void *arg);

/* The arg given to rx_set_hooks: the loop's owner, for callbacks. */
void *rx_arg(const struct rx *r);

/* Run rounds until rx_stop. 0, or -errno from the backend's wait. */
int rx_run(struct rx *r);
/* Make rx_run return before its next wait (loop thread: a callback or the
 * before-sleep hook). */
void rx_stop(struct rx *r);

#endif

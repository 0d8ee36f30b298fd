/*
 * mailbox.h - bounded multi-producer single-consumer queue of fixed-size items.
 *
 * Producers (any thread) copy items in; one consumer thread takes them out in
 * batches. A mailbox wakes its consumer either through an eventfd (for
 * threads that sleep in epoll: the IO reactors) or a condition variable (for
 * threads that sleep on the queue alone: the workers). A wake-up is sent only
 * when the queue goes from empty to non-empty, so a busy consumer costs its
 * producers no syscall.
 *
 * One lock guards the ring; producers and the consumer hold it only to copy
 * items, never across a callback.
 */
#ifndef FERRY_MAILBOX_H
#define FERRY_MAILBOX_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct mbox {
    pthread_mutex_t lock;
    pthread_cond_t not_empty; /* consumer waits here (condvar mode) */
    pthread_cond_t not_full;  /* blocking producers wait here */
    unsigned char *ring;      /* guarded by lock: cap items of item_size */
    size_t item_size;
    uint32_t cap;
    uint32_t head;  /* guarded by lock: oldest item */
    uint32_t n;     /* guarded by lock: items queued */
    int is_refused; /* guarded by lock: a try_post found it full */
    int is_closed;  /* guarded by lock: mbox_close() was called */
    int is_woken;   /* guarded by lock: mbox_wake() since the last mbox_wait() */
    int efd;        /* eventfd, or -1 in condvar mode; immutable */
};

/* Initialise with room for cap items of item_size bytes. use_eventfd: wake
 * the consumer through mbox_fd() rather than mbox_wait(). Returns 0 or
 * -errno. */
int mbox_init(struct mbox *m, size_t item_size, uint32_t cap, int use_eventfd);
void mbox_deinit(struct mbox *m);

/* The eventfd to poll for readability (eventfd mode), else -1. */
int mbox_fd(const struct mbox *m);

/* Post up to n items without blocking. Returns how many were queued (the
 * first k of items); fewer than n means full, and the refusal is remembered
 * until the consumer's next mbox_take() reports it. */
uint32_t mbox_try_post(struct mbox *m, const void *items, uint32_t n);

/* Post all n items, waiting for room as needed. Returns 0, or -EPIPE if the
 * mailbox was closed (the remaining items were not queued). */
int mbox_post(struct mbox *m, const void *items, uint32_t n);

/* Consumer: take up to max items into out. Returns the number taken; sets
 * *was_refused (if not NULL) when a producer was refused since the last take.
 * Clears the eventfd's counter first, so a post that races with the take
 * leaves the fd readable. */
uint32_t mbox_take(struct mbox *m, void *out, uint32_t max, int *was_refused);

/* Consumer in condvar mode: wait until an item is queued, mbox_wake() was
 * called (since the last mbox_wait() returned), the mailbox is closed, or
 * timeout_ms passes (-1: no timeout). Returns the items queued. */
uint32_t mbox_wait(struct mbox *m, int timeout_ms);

/* Wake the consumer without posting (eventfd or condvar). Any thread. A
 * wake-up is never lost: one sent while the consumer is busy makes its next
 * mbox_wait() return at once. */
void mbox_wake(struct mbox *m);

/* Refuse further posts; blocked producers return -EPIPE; wakes the consumer. */
void mbox_close(struct mbox *m);

/* Items queued now (a snapshot). */
uint32_t mbox_len(struct mbox *m);

#endif

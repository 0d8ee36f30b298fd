/*
 * mailbox.c - a ring under one mutex; the wake-up is an eventfd or a condvar.
 */
#include "mailbox.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

int mbox_init(struct mbox *m, size_t item_size, uint32_t cap, int use_eventfd)
{
    memset(m, 0, sizeof(*m));
    m->efd = -1;
    if (cap == 0 || item_size == 0) {
        return -EINVAL;
    }
    m->ring = calloc(cap, item_size);
    if (m->ring == NULL) {
        return -ENOMEM;
    }
    if (use_eventfd) {
        m->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (m->efd < 0) {
            int rc = -errno;
            free(m->ring);
            m->ring = NULL;
            return rc;
        }
    }
    pthread_mutex_init(&m->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->not_empty, &ca);
    pthread_cond_init(&m->not_full, &ca);
    pthread_condattr_destroy(&ca);
    m->item_size = item_size;
    m->cap = cap;
    return 0;
}

void mbox_deinit(struct mbox *m)
{
    if (m->ring == NULL) {
        return;
    }
    if (m->efd >= 0) {
        close(m->efd);
    }
    pthread_cond_destroy(&m->not_empty);
    pthread_cond_destroy(&m->not_full);
    pthread_mutex_destroy(&m->lock);
    free(m->ring);
    memset(m, 0, sizeof(*m));
    m->efd = -1;
}

int mbox_fd(const struct mbox *m)
{
    return m->efd;
}

static void signal_consumer(struct mbox *m)
{
    if (m->efd >= 0) {
        uint64_t one = 1;
        ssize_t w = write(m->efd, &one, sizeof(one));
        (void)w; /* EAGAIN: counter saturated, still readable */
    } else {
        pthread_cond_signal(&m->not_empty);
    }
}

/* Copy up to n items in; lock held. Returns the number copied. */
static uint32_t put_locked(struct mbox *m, const unsigned char *items, uint32_t n)
{
    uint32_t room = m->cap - m->n;
    uint32_t k = n < room ? n : room;
    for (uint32_t i = 0; i < k;) {
        uint32_t tail = (m->head + m->n) % m->cap;
        uint32_t run = m->cap - tail;
        if (run > k - i) {
            run = k - i;
        }
        memcpy(m->ring + (size_t)tail * m->item_size, items + (size_t)i * m->item_size,
               (size_t)run * m->item_size);
        m->n += run;
        i += run;
    }
    return k;
}

uint32_t mbox_try_post(struct mbox *m, const void *items, uint32_t n)
{
    pthread_mutex_lock(&m->lock);
    if (m->is_closed) {
        pthread_mutex_unlock(&m->lock);
        return 0;
    }
    int was_empty = m->n == 0;
    uint32_t k = put_locked(m, items, n);
    if (k < n) {
        m->is_refused = 1;
    }
    int wake = was_empty && k > 0;
    if (wake && m->efd < 0) {
        pthread_cond_signal(&m->not_empty);
        wake = 0;
    }
    pthread_mutex_unlock(&m->lock);
    if (wake) {
        signal_consumer(m);
    }
    return k;
}

int mbox_post(struct mbox *m, const void *items, uint32_t n)
{
    const unsigned char *p = items;
    pthread_mutex_lock(&m->lock);
    while (n > 0) {
        if (m->is_closed) {
            pthread_mutex_unlock(&m->lock);
            return -EPIPE;
        }
        if (m->n == m->cap) {
            pthread_cond_wait(&m->not_full, &m->lock);
            continue;
        }
        int was_empty = m->n == 0;
        uint32_t k = put_locked(m, p, n);
        p += (size_t)k * m->item_size;
        n -= k;
        if (was_empty) {
            if (m->efd >= 0) {
                /* Write outside the lock would be nicer, but a blocked
                 * producer must wake the consumer before it waits. The
                 * eventfd write does not block. */
                signal_consumer(m);
            } else {
                pthread_cond_signal(&m->not_empty);
            }
        }
    }
    pthread_mutex_unlock(&m->lock);
    return 0;
}

uint32_t mbox_take(struct mbox *m, void *out, uint32_t max, int *was_refused)
{
    if (m->efd >= 0) {
        uint64_t v;
        ssize_t r = read(m->efd, &v, sizeof(v));
        (void)r; /* EAGAIN: nothing signalled, fine */
    }
    unsigned char *o = out;
    pthread_mutex_lock(&m->lock);
    uint32_t k = m->n < max ? m->n : max;
    for (uint32_t i = 0; i < k;) {
        uint32_t run = m->cap - m->head;
        if (run > k - i) {
            run = k - i;
        }
        memcpy(o + (size_t)i * m->item_size, m->ring + (size_t)m->head * m->item_size,
               (size_t)run * m->item_size);
        m->head = (m->head + run) % m->cap;
        m->n -= run;
        i += run;
    }
    int refused = m->is_refused;
    m->is_refused = 0;
    if (k > 0) {
        pthread_cond_broadcast(&m->not_full);
    }
    pthread_mutex_unlock(&m->lock);
    if (was_refused) {
        *was_refused = refused;
    }
    return k;
}

uint32_t mbox_wait(struct mbox *m, int timeout_ms)
{
    struct timespec until;
    if (timeout_ms >= 0) {
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&m->lock);
    while (m->n == 0 && !m->is_closed && !m->is_woken) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&m->not_empty, &m->lock);
        } else if (pthread_cond_timedwait(&m->not_empty, &m->lock, &until) == ETIMEDOUT) {
            break;
        }
    }
    m->is_woken = 0;
    uint32_t n = m->n;
    pthread_mutex_unlock(&m->lock);
    return n;
}

void mbox_wake(struct mbox *m)
{
    if (m->efd >= 0) {
        signal_consumer(m);
        return;
    }
    pthread_mutex_lock(&m->lock);
    m->is_woken = 1; /* mbox_wait() must return even with nothing queued */
    pthread_cond_signal(&m->not_empty);
    pthread_mutex_unlock(&m->lock);
}

void mbox_close(struct mbox *m)
{
    pthread_mutex_lock(&m->lock);
    m->is_closed = 1;
    pthread_cond_broadcast(&m->not_full);
    pthread_cond_broadcast(&m->not_empty);
    pthread_mutex_unlock(&m->lock);
    if (m->efd >= 0) {
        signal_consumer(m);
    }
}

uint32_t mbox_len(struct mbox *m)
{
    pthread_mutex_lock(&m->lock);
    uint32_t n = m->n;
    pthread_mutex_unlock(&m->lock);
    return n;
}

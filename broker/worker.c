/*
 * worker.c - a routing thread: its mailbox and one router (router.h).
 *
 * A round takes a bounded batch from the mailbox, hands each item to the
 * router, and flushes the router's results to the IO threads. With
 * --reactor single the same round is run by IO thread 0 instead of a thread
 * of its own (worker_run_inline).
 */
#include "worker.h"

#include "log.h"
#include "router.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORKER_TAKE 256

struct worker {
    struct stats stats; /* this thread's counters */
    struct server *srv;
    uint32_t index;
    pthread_t thread;
    int is_started;
    struct mbox in;   /* IO threads and the writer -> this worker */
    struct router rt; /* the worker thread only (single: IO thread 0 only) */
};

void pub_batch_unref(struct pub_batch *b)
{
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) {
        free(b);
    }
}

struct worker *worker_create(struct server *s, uint32_t index)
{
    struct worker *w = aligned_alloc(64, (sizeof(*w) + 63) & ~(size_t)63);
    if (w == NULL) {
        return NULL;
    }
    memset(w, 0, sizeof(*w));
    w->srv = s;
    w->index = index;
    if (router_init(&w->rt, s, index, &w->stats) < 0) {
        router_deinit(&w->rt);
        free(w);
        return NULL;
    }
    /* An eventfd only when an IO thread runs this worker in its loop. */
    int use_fd = s->cfg.reactor_mode == REACTOR_SINGLE;
    if (mbox_init(&w->in, sizeof(struct wmsg), s->cfg.worker_queue, use_fd) < 0) {
        router_deinit(&w->rt);
        free(w);
        return NULL;
    }
    s->worker_in[index] = &w->in;
    s->worker_stats[index] = &w->stats;
    return w;
}

/* One round: take up to WORKER_TAKE items, handle them, hand over the
 * results (flush_out). Returns 0 once W_STOP was taken; *is_full: as many
 * items as allowed were taken (more may be queued). */
static int worker_round(struct worker *w, const struct rsink *local, int *is_full)
{
    struct wmsg batch[WORKER_TAKE];
    int running = 1;
    int was_refused = 0;
    uint32_t n = mbox_take(&w->in, batch, WORKER_TAKE, &was_refused);
    *is_full = n == WORKER_TAKE;
    for (uint32_t i = 0; i < n; i++) {
        if (router_handle(&w->rt, &batch[i])) {
            running = 0;
        }
    }
    router_flush(&w->rt, local);
    if (was_refused) {
        /* Some IO thread stopped reading publishers because we were full:
         * there is room now. */
        server_wake_iots(w->srv);
    }
    return running;
}

int worker_run_inline(struct worker *w, const struct rsink *local)
{
    int is_full = 0;
    (void)worker_round(w, local, &is_full);
    return is_full;
}

int worker_fd(struct worker *w)
{
    return mbox_fd(&w->in);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char name[16];
    snprintf(name, sizeof(name), "worker%u", w->index);
    log_thread_name_set(name);
    int running = 1;
    while (running) {
        mbox_wait(&w->in, -1);
        int is_full;
        running = worker_round(w, NULL, &is_full);
    }
    return NULL;
}

int worker_start(struct worker *w)
{
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc != 0) {
        return -rc;
    }
    w->is_started = 1;
    return 0;
}

void worker_stop(struct worker *w)
{
    if (!w->is_started) {
        return;
    }
    struct wmsg stop = {.kind = W_STOP};
    mbox_post(&w->in, &stop, 1);
    pthread_join(w->thread, NULL);
    w->is_started = 0;
}

void worker_destroy(struct worker *w)
{
    if (w == NULL) {
        return;
    }
    /* Drop whatever is still queued (only after an aborted start). */
    struct wmsg m;
    while (mbox_take(&w->in, &m, 1, NULL) == 1) {
        if (m.kind == W_SUB_ADD || m.kind == W_SUB_DEL || m.kind == W_SUB_READY) {
            trie_sub_unref(m.p);
        } else if (m.kind == W_PUB_BATCH || m.kind == W_STORED) {
            pub_batch_unref(m.p);
        } else if (m.kind == W_TOPIC_INFO) {
            free(m.p);
        }
    }
    router_deinit(&w->rt);
    mbox_deinit(&w->in);
    free(w);
}

/*
 * server.c - clocks and the stats sum, shared by every thread of ferryd.
 */
#include "server.h"

#include "ferry.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int64_t now_realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int server_tables_alloc(struct server *s)
{
    s->iots = calloc(s->n_iot, sizeof(*s->iots));
    s->workers = calloc(s->n_workers, sizeof(*s->workers));
    s->iot_in = calloc(s->n_iot, sizeof(*s->iot_in));
    s->iot_stats = calloc(s->n_iot, sizeof(*s->iot_stats));
    s->worker_in = calloc(s->n_workers, sizeof(*s->worker_in));
    s->worker_stats = calloc(s->n_workers, sizeof(*s->worker_stats));
    s->commit = aligned_alloc(64, s->n_iot * sizeof(*s->commit));
    if (s->commit != NULL) {
        memset(s->commit, 0, s->n_iot * sizeof(*s->commit)); /* serials 0, nothing wanted */
    }
    if (s->iots == NULL || s->workers == NULL || s->iot_in == NULL || s->iot_stats == NULL ||
        s->worker_in == NULL || s->worker_stats == NULL || s->commit == NULL) {
        server_tables_free(s);
        return -ENOMEM;
    }
    return 0;
}

void server_tables_free(struct server *s)
{
    free(s->iots);
    free(s->workers);
    free(s->iot_in);
    free(s->iot_stats);
    free(s->worker_in);
    free(s->worker_stats);
    free(s->commit);
    s->iots = NULL;
    s->workers = NULL;
    s->iot_in = s->worker_in = NULL;
    s->iot_stats = s->worker_stats = NULL;
    s->commit = NULL;
}

void server_stats(struct server *s, struct stats_snapshot *out)
{
    memset(out, 0, sizeof(*out));
    stats_sum(out, &s->acc_stats);
    for (uint32_t i = 0; i < s->n_iot; i++) {
        stats_sum(out, s->iot_stats[i]);
    }
    for (uint32_t i = 0; i < s->n_workers; i++) {
        stats_sum(out, s->worker_stats[i]);
    }
}

void server_committed(struct server *s, uint32_t k, uint32_t serial)
{
    atomic_store(&s->commit[k].serial, serial);
    if (atomic_exchange(&s->commit[k].is_wanted, 0)) {
        mbox_wake(s->iot_in[k]);
    }
}

int server_store_readable(struct server *s)
{
    uint64_t routed = atomic_load(&s->gens.routed);
    if (atomic_load(&s->gens.readable) >= routed) {
        return 1;
    }
    if (!atomic_exchange(&s->gens.is_wanted, 1) && s->writer_in != NULL) {
        mbox_wake(s->writer_in);
    }
    /* Committed meanwhile? Then the writer's wake-up may have come first. */
    return atomic_load(&s->gens.readable) >= routed;
}

void server_wake_iots(struct server *s)
{
    for (uint32_t i = 0; i < s->n_iot; i++) {
        mbox_wake(s->iot_in[i]);
    }
}

const char *server_strerror(int rc)
{
    switch (rc) {
#define SERVER_ERR_CASE(name, value, text)                                                         \
    case value:                                                                                    \
        return text;
        FERRY_ERRNO_MAP(SERVER_ERR_CASE)
#undef SERVER_ERR_CASE
    default:
        return strerror(-rc);
    }
}

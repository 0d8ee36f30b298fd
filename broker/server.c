/*
 * server.c - clocks and the stats sum, shared by every thread of ferryd.
 */
#include "server.h"

#include "ferry.h"
#include "io_thread.h"
#include "worker.h"

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

void server_stats(struct server *s, struct stats_snapshot *out)
{
    memset(out, 0, sizeof(*out));
    stats_sum(out, &s->acc_stats);
    for (uint32_t i = 0; i < s->n_iot; i++) {
        stats_sum(out, iot_stats(s->iots[i]));
    }
    for (uint32_t i = 0; i < s->n_workers; i++) {
        stats_sum(out, worker_stats(s->workers[i]));
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

/*
 * metrics.h - ferryd's HTTP endpoint for operators (prefix metrics_):
 *
 *   GET /metrics   Prometheus text format (version 0.0.4): the server's
 *                  counters, the store's commit and sync histograms, each
 *                  stored topic and each durable consumer (lag in messages
 *                  and in seconds)
 *   GET /healthz   200 while the process runs
 *   GET /readyz    200 when the store is open and healthy, the listeners
 *                  are up and ferryd is not stopping; else 503
 *
 * Served by libmicrohttpd on its own thread, never on a reactor. A scrape
 * reads the threads' counters (relaxed loads, no lock on the hot path), the
 * store through short read transactions, and the consumer registry as
 * `ferry consumers` does; it never stops publishing.
 */
#ifndef FERRY_METRICS_H
#define FERRY_METRICS_H

#include <stddef.h>

struct server;
struct metrics;

/* Listen on s->cfg.metrics_host:metrics_port and serve from now on; the
 * bound port in *port. 0 and *out, or -errno (the message is logged). Main
 * thread, after the server's threads and store exist. */
int metrics_start(struct server *s, struct metrics **out, int *port);

/* Stop serving and free m (NULL: nothing). Main thread, before the threads
 * whose counters it reads are destroyed. */
void metrics_stop(struct metrics *m);

/* The /metrics text of s, into a malloc'd *out of *len bytes (the caller
 * frees it). 0 or -ENOMEM. Any thread; the tests call it directly. */
int metrics_render(struct server *s, char **out, size_t *len);

#endif

/*
 * store_fill.c - fill a ferry store fast through the store API, to measure
 * ferryd's start-up time with many stored messages (issue 4, measurement).
 *
 *   ferry_store_fill DIR [--messages N] [--size BYTES] [--topics T] [--batch B]
 *
 * Appends N messages (default 10,000,000) of BYTES (default 128) spread
 * round-robin over T topics (default 10, named fill.0 ...), B per commit
 * (default 10000), with sync none (one sync at the end), and prints the rate.
 */
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: ferry_store_fill DIR [--messages N] [--size BYTES] [--topics T] "
                        "[--batch B]\n");
        return 2;
    }
    const char *dir = argv[1];
    long n = 10000000, size = 128, topics = 10, batch = 10000;
    for (int i = 2; i + 1 < argc; i += 2) {
        long v = atol(argv[i + 1]);
        if (strcmp(argv[i], "--messages") == 0) {
            n = v;
        } else if (strcmp(argv[i], "--size") == 0) {
            size = v;
        } else if (strcmp(argv[i], "--topics") == 0) {
            topics = v;
        } else if (strcmp(argv[i], "--batch") == 0) {
            batch = v;
        } else {
            fprintf(stderr, "ferry_store_fill: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (n < 0 || size < 0 || topics < 1 || batch < 1) {
        fprintf(stderr, "ferry_store_fill: bad numbers\n");
        return 2;
    }
    struct store_options o;
    store_options_init(&o);
    o.sync_mode = STORE_SYNC_NONE;
    o.map_size_initial = (size_t)1 << 30;
    struct store *s;
    char err[512];
    int rc = store_open(dir, &o, &s, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "ferry_store_fill: %s\n", err);
        return 1;
    }
    char *payload = malloc((size_t)size + 1);
    memset(payload, 'p', (size_t)size + 1);
    double t0 = now_s();
    long done = 0;
    while (done < n) {
        struct store_batch *b;
        if ((rc = store_batch_begin(s, &b)) < 0) {
            break;
        }
        for (long k = 0; k < batch && done < n; k++, done++) {
            char topic[32];
            int tl = snprintf(topic, sizeof(topic), "fill.%ld", done % topics);
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            struct store_msg_in m = {
                .publish_time = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec,
                .payload = payload,
                .payload_len = (size_t)size,
            };
            if ((rc = store_batch_append(b, topic, (size_t)tl, &m, NULL)) < 0) {
                break;
            }
        }
        if (rc < 0 || (rc = store_batch_commit(b)) < 0) {
            break;
        }
    }
    if (rc < 0) {
        fprintf(stderr, "ferry_store_fill: error %d after %ld messages\n", rc, done);
        store_close(s);
        return 1;
    }
    rc = store_sync(s);
    double t = now_s() - t0;
    store_close(s);
    printf("%ld messages of %ld bytes in %ld topics: %.1f s (%.0f msgs/s)\n", done, size, topics, t,
           (double)done / t);
    free(payload);
    return rc < 0;
}

/*
 * cluster_test.h - what cluster_test.c shares with its other cases'
 * files (cluster_route.c): the three brokers, starting the cluster, CHECK.
 */
#ifndef FERRY_CLUSTER_TEST_H
#define FERRY_CLUSTER_TEST_H

#include "ferryd_proc.h"

#define N_BROKERS 3
#define WAIT_MS 5000

struct broker {
    struct ferryd_proc p;
    int port;
    char dir[300];
    char id_arg[16], listen_arg[64];
    const char *args[20];
};

extern struct broker brokers[N_BROKERS];
/* More ferryd arguments for every broker (at most 4, NULL-terminated), set
 * before start_cluster. */
extern const char *cluster_extra_args[5];

/* Start the ensemble and the brokers (exit 77 without ZooKeeper); the
 * cleanup at exit kills them and removes their directories. */
void start_cluster(void);

/* Fail the test (exit 1, after a line on stderr) unless ok. */
#define CHECK(cond, ...) check((cond), __FILE__, __LINE__, #cond, __VA_ARGS__)
void check(int ok, const char *file, int line, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* cluster_route.c */
int test_routing(void);
int test_auth(void);
/* `cluster_test bench ARGS`: ferry bench ARGS on the cluster, then on one
 * standalone broker (manual). */
int bench_cluster_vs_one(const char *args);

#endif /* FERRY_CLUSTER_TEST_H */

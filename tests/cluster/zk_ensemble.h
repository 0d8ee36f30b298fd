/*
 * zk_ensemble.h - a three-server ZooKeeper ensemble on loopback for the
 * cluster tests: free ports, one JVM per server (-Xmx128m), and a wait for
 * its quorum (one leader, two followers, asked with the `srvr` command)
 * bounded by a timeout, never a fixed sleep.
 *
 * The servers run from Debian's `zookeeper` package (/usr/share/java) with
 * the java found on PATH or in $JAVA; zk_available() says whether they are
 * there (the tests exit 77 when not).
 */
#ifndef FERRY_TEST_ZK_ENSEMBLE_H
#define FERRY_TEST_ZK_ENSEMBLE_H

#include <sys/types.h>

#define ZK_SERVERS 3

struct zk_ensemble {
    char dir[256];               /* configs, data and logs (removed by zk_stop) */
    int client_port[ZK_SERVERS]; /* where clients connect */
    pid_t pid[ZK_SERVERS];       /* 0: not running */
    char connect[128];           /* "127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3" */
};

/* 1 if java and ZooKeeper's jars are installed, else 0 (why on stderr). */
int zk_available(void);

/* Start the ensemble and wait up to timeout_ms for its quorum. 0 or -errno
 * (-ETIMEDOUT: no quorum in time; what it is left running: zk_stop). */
int zk_start(struct zk_ensemble *z, int timeout_ms);

/* The mode server i reports ("leader", "follower", ...) into buf, or -errno
 * when it does not answer. */
int zk_mode(const struct zk_ensemble *z, int i, char *buf, size_t cap);

/* kill -9 server i and wait for it. */
void zk_kill(struct zk_ensemble *z, int i);

/* kill -9 every server, wait for them, remove the directory. */
void zk_stop(struct zk_ensemble *z);

/* A free TCP port on 127.0.0.1 (bound, then released). */
int zk_free_port(void);

/* Milliseconds on CLOCK_MONOTONIC. */
long long zk_now_ms(void);

#endif

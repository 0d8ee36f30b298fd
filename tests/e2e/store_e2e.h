/*
 * store_e2e.h - helpers of the store's end-to-end tests (70_store_*.c):
 * libferry clients against a real ferryd, polling with timeouts, never
 * sleeping to synchronise.
 */
#ifndef FERRY_STORE_E2E_H
#define FERRY_STORE_E2E_H

#include "ferry.h"
#include "ferryd_proc.h"

#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define S_WAIT 20000 /* ms: generous for a slow, shared 2-core machine */

static inline int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A thread-mode client of d; reconnect off, so a killed broker fails what
 * waits instead of re-sending it. */
static inline ferry_client *s_client(const struct ferryd_proc *d, uint32_t window)
{
    ferry_options *o;
    ck_assert_int_eq(ferry_options_create(&o), 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", d->port);
    ck_assert_int_eq(ferry_options_set_servers(o, addr), 0);
    ck_assert_int_eq(ferry_options_set_reconnect(o, 0, 1, 10, 10, 0), 0);
    ck_assert_int_eq(ferry_options_set_resend_unacked(o, 0), 0);
    if (window) {
        ck_assert_int_eq(ferry_options_set_max_inflight(o, window), 0);
    }
    ferry_client *c;
    ck_assert_int_eq(ferry_client_create(o, &c), 0);
    ferry_options_destroy(o);
    ck_assert_int_eq(ferry_client_start_thread(c), 0);
    int rc = ferry_client_connect(c, S_WAIT);
    ck_assert_msg(rc == 0, "connect: %s", ferry_strerror(rc));
    return c;
}

static inline void s_close(ferry_client *c)
{
    ferry_client_close(c, S_WAIT);
    ferry_client_destroy(c);
}

/* Publish text with an ack; returns the sequence, fails the test on error. */
static inline uint64_t s_pub(ferry_client *c, const char *topic, const char *text)
{
    ferry_pub m = {.topic = topic, .payload = text, .payload_len = strlen(text)};
    uint64_t seq = 0;
    int rc = ferry_publish_sync(c, &m, S_WAIT, &seq);
    ck_assert_msg(rc == 0, "publish to %s: %s", topic, ferry_strerror(rc));
    return seq;
}

/* Subscribe to topic from a start position (queue for ferry_sub_next). */
static inline ferry_sub *s_sub(ferry_client *c, const char *topic, enum ferry_start start,
                               int64_t arg)
{
    ferry_sub_options *so;
    ck_assert_int_eq(ferry_sub_options_create(&so), 0);
    ck_assert_int_eq(ferry_sub_options_set_start(so, start, arg), 0);
    ck_assert_int_eq(ferry_sub_options_set_queue_max(so, 1u << 22), 0);
    ferry_sub *s;
    int rc = ferry_subscribe(c, topic, so, NULL, NULL, S_WAIT, &s);
    ferry_sub_options_destroy(so);
    ck_assert_msg(rc == 0, "subscribe %s: %s", topic, ferry_strerror(rc));
    return s;
}

/* Next message or fail; *seq and the payload copied into buf (NUL-ended). */
static inline void s_next(ferry_sub *s, uint64_t *seq, char *buf, size_t cap)
{
    ferry_msg *m;
    int rc = ferry_sub_next(s, S_WAIT, &m);
    ck_assert_msg(rc == 0, "next message: %s", ferry_strerror(rc));
    *seq = ferry_msg_sequence(m);
    size_t len;
    const void *p = ferry_msg_data(m, &len);
    if (len >= cap) {
        len = cap - 1;
    }
    memcpy(buf, p, len);
    buf[len] = '\0';
    ferry_msg_destroy(m);
}

/* Nothing more arrives within ms (a bounded look for extras). */
static inline void s_no_more(ferry_sub *s, int ms)
{
    ferry_msg *m;
    int rc = ferry_sub_next(s, ms, &m);
    if (rc == 0) {
        uint64_t seq = ferry_msg_sequence(m);
        ferry_msg_destroy(m);
        ck_abort_msg("unexpected extra message, sequence %llu", (unsigned long long)seq);
    }
}

static inline void s_rm_rf(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot remove %s\n", dir);
    }
}

/* Add test as its own case t of suite s, with a 120 s timeout and the
 * fixture (setup, teardown) run around it in the case's process. */
static inline void s_add_case(Suite *s, TCase *t, const TTest *test, void (*setup)(void),
                              void (*teardown)(void))
{
    tcase_set_timeout(t, 120);
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test);
    suite_add_tcase(s, t);
}

/* Wait (bounded) for ferryd to exit on its own; returns its exit status, or
 * -ETIMEDOUT (then it is killed). Keeps the data dir. */
static inline int s_wait_exit(struct ferryd_proc *d, int ms)
{
    int64_t end = s_now_ms() + ms;
    for (;;) {
        int st;
        pid_t r = waitpid(d->pid, &st, WNOHANG);
        if (r == d->pid) {
            d->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        if (s_now_ms() >= end) {
            ferryd_kill9(d);
            return -ETIMEDOUT;
        }
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL); /* polling a child's exit, not synchronising */
    }
}

/* Run `ferryd --verify dir`, output into out (NUL-ended); returns its exit
 * status. */
static inline int s_verify(const char *dir, char *out, size_t cap)
{
    char cmd[800];
    snprintf(cmd, sizeof(cmd), "'%s' --verify '%s' 2>&1", FERRYD_PATH, dir);
    FILE *f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

#endif

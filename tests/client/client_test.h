/*
 * client_test.h - what libferry's test programs share (client_test.c): a
 * real ferryd per test case (g_broker), an event log filled by the
 * library's callbacks, and clients made with the options a case needs.
 */
#ifndef FERRY_CLIENT_TEST_H
#define FERRY_CLIENT_TEST_H

#include "ferry.h"
#include "ferryd_proc.h"

#include <check.h>
#include <pthread.h>
#include <stdint.h>

#define WAIT_MS 20000 /* generous: a slow, shared 2-core machine */

extern struct ferryd_proc g_broker;

/* Event log shared by callbacks and the test thread. */
struct evlog {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int n[8]; /* per ferry_event_type */
    int last_code[8];
    uint64_t last_ref[8];
    int last_ref_kind[8];
    int n_msgs;     /* message callbacks */
    int n_pub_ok;   /* publish callbacks with status 0 */
    int n_pub_fail; /* ... with an error */
    int last_pub_status;
    uint64_t last_seq;
    char last_payload[256];
    char last_header[64];
    char last_key[64];
    int order_ok;   /* per-publisher order kept */
    int n_err_refs; /* ref ids of error events, in order */
    uint64_t err_refs[64];
    int err_codes[64];
    long next_expected[4];
};

struct copts {
    int thread;
    uint32_t max_inflight;
    int window_blocks;
    int resend;
    int reconnect;
    uint32_t max_attempts;
    uint32_t keepalive_ms;
    uint32_t connect_timeout_ms;
    const char *servers; /* NULL: the test broker */
};

extern const struct copts DEFAULT_LOOP;
extern const struct copts DEFAULT_THREAD;

/* CLOCK_MONOTONIC in ms. */
int64_t now_ms(void);

/* g_broker: start (fails the test on error), stop if running, restart on
 * the port it had (after ferryd_kill9), freeze with SIGSTOP (returns once
 * every thread stopped). */
void broker_start(void);
void broker_stop(void);
void broker_restart_same_port(void);
void broker_freeze(void);

void evlog_init(struct evlog *l);
void evlog_deinit(struct evlog *l);
/* Callbacks that fill an evlog (ud). on_msg checks per-publisher order of
 * payloads "P<publisher>:<n>". */
void on_event(ferry_client *c, const ferry_event *ev, void *ud);
void on_pub_done(ferry_client *c, int status, uint64_t seq, void *ud);
void on_msg(ferry_client *c, ferry_sub *s, const ferry_msg *m, void *ud);
/* Thread mode: wait until *field >= want (1) or the timeout (0). */
int evlog_wait(struct evlog *l, const int *field, int want, int timeout_ms);
/* Thread mode: the code of the error event about ref id, or 0 if none came. */
int evlog_wait_ref(struct evlog *l, uint64_t ref, int timeout_ms);
int evlog_get(struct evlog *l, const int *field);
/* Event-loop mode: drive c as an application's poll loop does until
 * *field >= want. 1 when reached. */
int loop_until(ferry_client *c, struct evlog *l, const int *field, int want, int timeout_ms);

/* A client of g_broker (or co->servers) with co's options and l's event
 * callback (l may be NULL); client_connect also connects it. */
ferry_client *client_new(const struct copts *co, struct evlog *l);
ferry_client *client_connect(const struct copts *co, struct evlog *l);
ferry_pub text_pub(const char *topic, const char *text);
/* A loopback port on which nothing listens. */
int dead_port(void);

/* Fixture: ignore SIGPIPE and start g_broker; stop it. */
void setup(void);
void teardown(void);

/* Add t to s with a 120 s timeout; returns t. */
TCase *client_tcase(Suite *s, TCase *t);

#endif

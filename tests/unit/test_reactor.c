/*
 * test_reactor.c - reactor.h (rx_): readiness of pipes and socket pairs, and
 * the loop (rx_run: callbacks, timers, wake-ups, hooks), on each backend.
 */
#include "reactor.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

Suite *test_suite(void);

/* Each test runs once per backend (loop index = enum rx_backend). A build
 * without liburing, or a kernel that refuses io_uring, skips the uring
 * round, saying so; epoll must always open. */
static struct rx *open_or_skip(int backend)
{
    struct rx *r = NULL;
    int rc = rx_open(&r, (enum rx_backend)backend);
    if (rc == -ENOSYS && backend == RX_URING) {
        fprintf(stderr, "test_reactor: io_uring not available here: uring round skipped\n");
        return NULL;
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_ptr_nonnull(r);
    return r;
}

START_TEST(test_rx_reports_readable_with_its_pointer)
{
    struct rx *r = open_or_skip(_i);
    if (r == NULL) {
        return;
    }
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    int tag;
    ck_assert_int_eq(rx_watch(r, p[0], 1, RX_READ, &tag), 0);
    struct rx_event ev[4];
    ck_assert_int_eq(rx_wait(r, ev, 4, 0), 0); /* nothing yet: a poll returns 0 */
    ck_assert_int_eq(write(p[1], "x", 1), 1);
    ck_assert_int_eq(rx_wait(r, ev, 4, 1000), 1);
    ck_assert_ptr_eq(ev[0].data, &tag);
    ck_assert_uint_eq(ev[0].events, RX_READ);
    /* Level-triggered: still readable, still reported. */
    ck_assert_int_eq(rx_wait(r, ev, 4, 0), 1);
    /* Watched for nothing: kept in the set, not reported. */
    ck_assert_int_eq(rx_watch(r, p[0], 0, 0, &tag), 0);
    ck_assert_int_eq(rx_wait(r, ev, 4, 0), 0);
    ck_assert_int_eq(rx_unwatch(r, p[0]), 0);
    ck_assert_int_eq(rx_unwatch(r, p[0]), -ENOENT);
    close(p[0]);
    close(p[1]);
    rx_close(r);
}
END_TEST

START_TEST(test_rx_write_readiness_and_hangup)
{
    struct rx *r = open_or_skip(_i);
    if (r == NULL) {
        return;
    }
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    ck_assert_int_eq(rx_watch(r, sv[0], 1, RX_READ | RX_WRITE, NULL), 0);
    struct rx_event ev[4];
    ck_assert_int_eq(rx_wait(r, ev, 4, 1000), 1);
    ck_assert_uint_eq(ev[0].events, RX_WRITE); /* empty buffer: writable, not readable */
    ck_assert_ptr_null(ev[0].data);
    /* Fill the socket: no longer writable. */
    char buf[4096] = {0};
    while (write(sv[0], buf, sizeof(buf)) > 0) {
    }
    ck_assert_int_eq(rx_watch(r, sv[0], 0, RX_WRITE, NULL), 0);
    ck_assert_int_eq(rx_wait(r, ev, 4, 0), 0);
    /* The peer closes: readable (EOF) and a hang-up, whatever was asked. */
    close(sv[1]);
    ck_assert_int_eq(rx_watch(r, sv[0], 0, RX_READ, NULL), 0);
    ck_assert_int_eq(rx_wait(r, ev, 4, 1000), 1);
    ck_assert_uint_ne(ev[0].events & RX_READ, 0);
    ck_assert_uint_ne(ev[0].events & RX_ERROR, 0);
    close(sv[0]);
    rx_close(r);
}
END_TEST

START_TEST(test_rx_many_ready_fit_the_callers_array)
{
    struct rx *r = open_or_skip(_i);
    if (r == NULL) {
        return;
    }
    enum { N = 10 };
    int p[N][2];
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(pipe2(p[i], O_NONBLOCK), 0);
        ck_assert_int_eq(rx_watch(r, p[i][0], 1, RX_READ, p[i]), 0);
        ck_assert_int_eq(write(p[i][1], "x", 1), 1);
    }
    struct rx_event ev[4];
    ck_assert_int_eq(rx_wait(r, ev, 4, 1000), 4); /* never more than max */
    int seen = 0;
    for (int round = 0; round < 4 * N && seen < N; round++) {
        int n = rx_wait(r, ev, 4, 1000);
        ck_assert_int_gt(n, 0);
        for (int i = 0; i < n; i++) {
            int *fds = ev[i].data;
            ck_assert_uint_eq(ev[i].events, RX_READ);
            char c;
            if (read(fds[0], &c, 1) == 1) {
                seen++; /* drained: reported no more */
            }
        }
    }
    ck_assert_int_eq(seen, N);
    ck_assert_int_eq(rx_wait(r, ev, 4, 0), 0);
    for (int i = 0; i < N; i++) {
        close(p[i][0]);
        close(p[i][1]);
    }
    rx_close(r);
    rx_close(NULL);
}
END_TEST

START_TEST(test_rx_refuses_a_bad_descriptor)
{
    struct rx *r = open_or_skip(_i);
    if (r == NULL) {
        return;
    }
    ck_assert_int_eq(rx_watch(r, -1, 1, RX_READ, NULL), -EBADF);
    ck_assert_int_lt(rx_unwatch(r, 12345), 0); /* never watched */
    rx_close(r);
}
END_TEST

/* ---- the loop ------------------------------------------------------------ */

/* What the loop tests record; the hooks' argument. */
struct run_log {
    struct rx_io io;
    int fd;
    int n_reads;
    char got[8];
    int n_before, n_after, stop_after_rounds;
    int order[8];
    int n_fired;
    uint64_t fired_at[8];
    struct rx_timer tm[4];
    struct rx_async as;
    atomic_int n_async;
    uint32_t last_events;
};

static int before_count(struct rx *r, void *arg)
{
    struct run_log *l = arg;
    if (l->stop_after_rounds && ++l->n_before > l->stop_after_rounds) {
        rx_stop(r);
    }
    return -1;
}

static void after_count(struct rx *r, void *arg)
{
    (void)r;
    ((struct run_log *)arg)->n_after++;
}

static void on_pipe(struct rx *r, struct rx_io *io, uint32_t events)
{
    struct run_log *l = (struct run_log *)((char *)io - offsetof(struct run_log, io));
    ck_assert_ptr_eq(rx_arg(r), l);
    l->last_events = events;
    ssize_t n = read(l->fd, l->got + l->n_reads, 1);
    ck_assert_int_eq(n, 1);
    if (++l->n_reads == 3) {
        rx_stop(r);
    }
}

START_TEST(test_rx_run_calls_the_io_callback_until_stopped)
{
    struct rx *r = open_or_skip(_i);
    if (r == NULL) {
        return;
    }
    struct run_log l = {0};
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    l.fd = p[0];
    l.io.cb = on_pipe;
    rx_set_hooks(r, before_count, after_count, &l);
    ck_assert_int_eq(rx_watch(r, p[0], 1, RX_READ, &l.io), 0);
    ck_assert_int_eq(write(p[1], "abc", 3), 3);
    ck_assert_int_eq(rx_run(r), 0);
    /* Level-triggered: one byte per callback, three rounds, then stopped. */
    ck_assert_int_eq(l.n_reads, 3);
    ck_assert_mem_eq(l.got, "abc", 3);
    ck_assert_uint_eq(l.last_events & RX_READ, RX_READ);
    ck_assert_int_eq(l.n_after, 3);
    rx_close(r);
    close(p[0]);
    close(p[1]);
}
END_TEST

static void on_timer(struct rx *r, struct rx_timer *tm)
{
    struct run_log *l = rx_arg(r);
    int which = (int)(tm - l->tm);
    l->order[l->n_fired] = which;
    l->fired_at[l->n_fired++] = rx_now(r);
    ck_assert(!rx_timer_is_set(tm));
    if (which == 3) {
        rx_stop(r);
    }
}

START_TEST(test_rx_timers_fire_once_in_deadline_order)
{
    struct rx *r = open_or_skip(_i);
    if (r == NULL) {
        return;
    }
    struct run_log l = {0};
    rx_set_hooks(r, NULL, NULL, &l);
    ck_assert_int_eq(rx_timer_reserve(r, 4), 0);
    for (int k = 0; k < 4; k++) {
        rx_timer_init(&l.tm[k], on_timer);
        ck_assert(!rx_timer_is_set(&l.tm[k]));
    }
    uint64_t t0 = rx_now(r);
    ck_assert_int_eq(rx_timer_set(r, &l.tm[0], t0 + 40), 0);
    ck_assert_int_eq(rx_timer_set(r, &l.tm[1], t0 + 10), 0);
    ck_assert_int_eq(rx_timer_set(r, &l.tm[2], t0 + 20), 0);
    ck_assert_int_eq(rx_timer_set(r, &l.tm[3], t0 + 60), 0);
    ck_assert_int_eq(rx_timer_set(r, &l.tm[1], t0 + 30), 0); /* moved */
    rx_timer_stop(r, &l.tm[2]);                              /* never fires */
    ck_assert(rx_timer_is_set(&l.tm[1]) && !rx_timer_is_set(&l.tm[2]));
    ck_assert_int_eq(rx_run(r), 0);
    ck_assert_int_eq(l.n_fired, 3);
    ck_assert_int_eq(l.order[0], 1);
    ck_assert_int_eq(l.order[1], 0);
    ck_assert_int_eq(l.order[2], 3);
    ck_assert_uint_ge(l.fired_at[0], t0 + 30); /* never early */
    ck_assert_uint_ge(l.fired_at[1], t0 + 40);
    ck_assert_uint_ge(l.fired_at[2], t0 + 60);
    rx_close(r);
}
END_TEST

/* A timer re-set into the past from its own callback fires once a round,
 * not in a loop that never reaches the wait. */
static void rearm_past(struct rx *r, struct rx_timer *tm)
{
    struct run_log *l = rx_arg(r);
    l->n_fired++;
    ck_assert_int_eq(rx_timer_set(r, tm, 0), 0);
}

START_TEST(test_rx_a_timer_due_again_waits_for_the_next_round)
{
    struct rx *r = open_or_skip(_i);
    if (r == NULL) {
        return;
    }
    struct run_log l = {.stop_after_rounds = 5};
    rx_set_hooks(r, before_count, after_count, &l);
    rx_timer_init(&l.tm[0], rearm_past);
    ck_assert_int_eq(rx_timer_set(r, &l.tm[0], 0), 0);
    ck_assert_int_eq(rx_run(r), 0);
    ck_assert_int_eq(l.n_after, 5);
    ck_assert_int_eq(l.n_fired, 5);
    rx_close(r);
}
END_TEST

static void on_async(struct rx *r, struct rx_async *as)
{
    struct run_log *l = rx_arg(r);
    ck_assert_ptr_eq(as, &l->as);
    if (atomic_fetch_add(&l->n_async, 1) + 1 == 100) {
        rx_stop(r);
    }
}

/* Sends one wake-up, waits until the loop took it, 100 times. */
static void *sender(void *arg)
{
    struct run_log *l = arg;
    for (int k = 0; k < 100; k++) {
        rx_async_send(&l->as);
        while (atomic_load(&l->n_async) <= k) {
            sched_yield();
        }
    }
    return NULL;
}

START_TEST(test_rx_async_wakes_the_loop_from_another_thread)
{
    struct rx *r = open_or_skip(_i);
    if (r == NULL) {
        return;
    }
    struct run_log l = {0};
    rx_set_hooks(r, NULL, NULL, &l);
    ck_assert_int_eq(rx_async_init(r, &l.as, on_async), 0);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, sender, &l), 0);
    ck_assert_int_eq(rx_run(r), 0); /* no timeout: only the wake-ups end it */
    pthread_join(th, NULL);
    ck_assert_int_eq(atomic_load(&l.n_async), 100);
    rx_close(r);
}
END_TEST

START_TEST(test_rx_async_sends_before_the_loop_merge_into_one_call)
{
    struct rx *r = open_or_skip(_i);
    if (r == NULL) {
        return;
    }
    struct run_log l = {.stop_after_rounds = 1};
    rx_set_hooks(r, before_count, NULL, &l);
    ck_assert_int_eq(rx_async_init(r, &l.as, on_async), 0);
    for (int k = 0; k < 5; k++) {
        rx_async_send(&l.as);
    }
    ck_assert_int_eq(rx_run(r), 0);
    ck_assert_int_eq(atomic_load(&l.n_async), 1);
    rx_close(r);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("reactor");
    TCase *tc = tcase_create("reactor");
    tcase_add_loop_test(tc, test_rx_reports_readable_with_its_pointer, RX_EPOLL, RX_URING + 1);
    tcase_add_loop_test(tc, test_rx_write_readiness_and_hangup, RX_EPOLL, RX_URING + 1);
    tcase_add_loop_test(tc, test_rx_many_ready_fit_the_callers_array, RX_EPOLL, RX_URING + 1);
    tcase_add_loop_test(tc, test_rx_refuses_a_bad_descriptor, RX_EPOLL, RX_URING + 1);
    tcase_add_loop_test(tc, test_rx_run_calls_the_io_callback_until_stopped, RX_EPOLL,
                        RX_URING + 1);
    tcase_add_loop_test(tc, test_rx_timers_fire_once_in_deadline_order, RX_EPOLL, RX_URING + 1);
    tcase_add_loop_test(tc, test_rx_a_timer_due_again_waits_for_the_next_round, RX_EPOLL,
                        RX_URING + 1);
    tcase_add_loop_test(tc, test_rx_async_wakes_the_loop_from_another_thread, RX_EPOLL,
                        RX_URING + 1);
    tcase_add_loop_test(tc, test_rx_async_sends_before_the_loop_merge_into_one_call, RX_EPOLL,
                        RX_URING + 1);
    suite_add_tcase(s, tc);
    return s;
}

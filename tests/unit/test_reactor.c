/*
 * test_reactor.c - reactor.h (rx_): readiness of pipes and socket pairs.
 */
#include <check.h>
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "reactor.h"

Suite *test_suite(void);

START_TEST(test_rx_reports_readable_with_its_pointer)
{
    struct rx *r;
    ck_assert_int_eq(rx_open(&r), 0);
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
    struct rx *r;
    ck_assert_int_eq(rx_open(&r), 0);
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
    struct rx *r;
    ck_assert_int_eq(rx_open(&r), 0);
    enum { N = 10 };
    int p[N][2];
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(pipe(p[i]), 0);
        ck_assert_int_eq(rx_watch(r, p[i][0], 1, RX_READ, p[i]), 0);
        ck_assert_int_eq(write(p[i][1], "x", 1), 1);
    }
    struct rx_event ev[4];
    ck_assert_int_eq(rx_wait(r, ev, 4, 1000), 4); /* never more than max */
    int seen = 0;
    for (int round = 0; round < N && seen < N; round++) {
        int n = rx_wait(r, ev, 4, 0);
        ck_assert_int_gt(n, 0);
        for (int i = 0; i < n; i++) {
            int *fds = ev[i].data;
            char c;
            ck_assert_int_eq(read(fds[0], &c, 1), 1); /* drained: not reported again */
            seen++;
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
    struct rx *r;
    ck_assert_int_eq(rx_open(&r), 0);
    ck_assert_int_eq(rx_watch(r, -1, 1, RX_READ, NULL), -EBADF);
    ck_assert_int_eq(rx_unwatch(r, 12345), -EBADF);
    rx_close(r);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("reactor");
    TCase *tc = tcase_create("reactor");
    tcase_add_test(tc, test_rx_reports_readable_with_its_pointer);
    tcase_add_test(tc, test_rx_write_readiness_and_hangup);
    tcase_add_test(tc, test_rx_many_ready_fit_the_callers_array);
    tcase_add_test(tc, test_rx_refuses_a_bad_descriptor);
    suite_add_tcase(s, tc);
    return s;
}

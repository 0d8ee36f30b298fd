/*
 * 04_resources.c - running out of file descriptors: ferryd refuses what it
 * cannot hold without spinning, and recovers when descriptors free up.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "e2e_util.h"

Suite *test_suite(void);

/* CPU time (user + system) of pid, in clock ticks. */
static long cpu_ticks(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char buf[1024];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* comm may hold spaces */
    ck_assert_ptr_nonnull(p);
    long utime = 0, stime = 0;
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    ck_assert_int_eq(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &utime,
                            &stime),
                     2);
    return utime + stime;
}

START_TEST(test_emfile_refuses_without_spinning_and_recovers)
{
    struct ferryd_proc d;
    START(&d, NULL);
    struct rawc first;
    CONNECT(&first, d.port);
    /* Leave ferryd room for a handful of connections only. */
    struct rlimit rl;
    ck_assert_int_eq(prlimit(d.pid, RLIMIT_NOFILE, NULL, &rl), 0);
    struct rlimit low = {.rlim_cur = 64, .rlim_max = rl.rlim_max};
    ck_assert_int_eq(prlimit(d.pid, RLIMIT_NOFILE, &low, NULL), 0);

    enum { N = 120 };
    struct rawc c[N];
    int refused = 0, held = 0;
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(rawc_open(&c[i], d.port), 0);
    }
    /* Each socket either completes the handshake or is closed at once. */
    for (int i = 0; i < N; i++) {
        Ferry__Connect m = FERRY__CONNECT__INIT;
        m.protocol_version = 1;
        Ferry__Frame f = FERRY__FRAME__INIT;
        f.body_case = FERRY__FRAME__BODY_CONNECT;
        f.connect = &m;
        int rc = rawc_send(&c[i], &f);
        Ferry__Frame *r = NULL;
        if (rc == 0) {
            rc = rawc_recv(&c[i], T_WAIT, &r);
        }
        if (rc == 0 && r->body_case == FERRY__FRAME__BODY_CONNECTED) {
            held++;
        } else {
            ck_assert_int_ne(rc, -ETIMEDOUT); /* a refusal is prompt, never a hang */
            refused++;
        }
    }
    fprintf(stderr, "emfile: %d held, %d refused with a 64-descriptor limit\n", held, refused);
    ck_assert_int_gt(held, 0);
    ck_assert_int_gt(refused, 0);

    /* Idle while out of descriptors: no busy loop on the listener. */
    long t0 = cpu_ticks(d.pid);
    struct rawc extra;
    ck_assert_int_eq(rawc_open(&extra, d.port), 0); /* pending in the backlog */
    struct timespec ts = {1, 0};
    nanosleep(&ts, NULL);
    long spent = cpu_ticks(d.pid) - t0;
    long hz = sysconf(_SC_CLK_TCK);
    ck_assert_msg(spent < hz / 4, "ferryd used %ld ticks in 1 s while out of descriptors", spent);
    rawc_close(&extra);

    /* Free descriptors: new connections are served again. */
    for (int i = 0; i < N; i++) {
        rawc_close(&c[i]);
    }
    int ok = 0;
    for (int i = 0; i < 500 && !ok; i++) {
        struct rawc again;
        ok = rawc_connect(&again, d.port, 0) == 0;
        rawc_close(&again);
        if (!ok) {
            struct timespec w = {0, 20 * 1000 * 1000};
            nanosleep(&w, NULL);
        }
    }
    ck_assert(ok);
    ck_assert_int_eq(rawc_ping(&first, 1, T_WAIT), 0);
    rawc_close(&first);
    STOP(&d);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("e2e_resources");
    TCase *tc = tcase_create("emfile");
    tcase_add_test(tc, test_emfile_refuses_without_spinning_and_recovers);
    suite_add_tcase(s, tc);
    return s;
}

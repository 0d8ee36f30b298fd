/*
 * 88_service_notify.c - ferryd speaks systemd's notification protocol
 * (broker/service.h; issue 15, item 3).
 *
 * The test plays systemd: it binds a Unix datagram socket, points
 * NOTIFY_SOCKET (and WATCHDOG_USEC) at it before ferryd_start() forks, and
 * reads what ferryd sends, with the sender's credentials (SO_PASSCRED) as
 * systemd checks them for NotifyAccess=main: READY=1 once listening,
 * RELOADING=1 then READY=1 around a SIGHUP, STOPPING=1 on SIGTERM, and
 * WATCHDOG=1 at least every half of the watchdog interval.
 */
#include "e2e_util.h"
#include "tmpdir.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

Suite *test_suite(void);

struct fake_systemd {
    char dir[256];        /* holds the socket */
    int fd;               /* bound SOCK_DGRAM, SO_PASSCRED */
    struct ferryd_proc d; /* the ferryd it watches */
    pid_t pid;            /* its pid, kept after it stopped */
    char msg[512];        /* the last notification received, NUL-ended */
};

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The next notification (into f->msg) within timeout_ms, checking that
 * ferryd sent it; 0, or -1 on timeout. */
static int fake_recv(struct fake_systemd *f, int timeout_ms)
{
    struct pollfd p = {f->fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) != 1) {
        return -1;
    }
    union {
        char raw[CMSG_SPACE(sizeof(struct ucred))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {f->msg, sizeof(f->msg) - 1};
    struct msghdr m = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = ctl.raw,
                       .msg_controllen = sizeof(ctl.raw)};
    ssize_t n = recvmsg(f->fd, &m, 0);
    ck_assert_int_gt(n, 0);
    f->msg[n] = '\0';
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    ck_assert_msg(c != NULL && c->cmsg_type == SCM_CREDENTIALS, "no sender credentials");
    struct ucred cred;
    memcpy(&cred, CMSG_DATA(c), sizeof(cred));
    ck_assert_msg(cred.pid == f->pid, "\"%s\" from pid %d, not ferryd's %d", f->msg, (int)cred.pid,
                  (int)f->pid);
    return 0;
}

/* Does the notification msg hold the assignment line (e.g. "READY=1")? */
static int has_line(const char *msg, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = msg; p != NULL; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0')) {
            return 1;
        }
    }
    return 0;
}

/* Receive until a notification holds line, skipping WATCHDOG=1 only; the
 * one that matched stays in f->msg. Fails the test on anything else. */
static void expect(struct fake_systemd *f, const char *line)
{
    long long deadline = mono_ms() + T_WAIT;
    for (;;) {
        int left = (int)(deadline - mono_ms());
        ck_assert_msg(left > 0 && fake_recv(f, left) == 0, "no %s from ferryd", line);
        if (has_line(f->msg, line)) {
            return;
        }
        ck_assert_msg(has_line(f->msg, "WATCHDOG=1"), "expected %s, got \"%s\"", line, f->msg);
    }
}

/* Bind the socket, export NOTIFY_SOCKET (and WATCHDOG_USEC, unless NULL)
 * for the ferryd started next, start it and wait for its READY=1. */
static void fake_start(struct fake_systemd *f, const char *watchdog_usec)
{
    tmpdir_make(f->dir, sizeof(f->dir), "ferry-notify");
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int n = snprintf(a.sun_path, sizeof(a.sun_path), "%s/notify", f->dir);
    ck_assert(n > 0 && (size_t)n < sizeof(a.sun_path));
    f->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(f->fd, 0);
    ck_assert_int_eq(bind(f->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    int on = 1;
    ck_assert_int_eq(setsockopt(f->fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)), 0);
    ck_assert_int_eq(setenv("NOTIFY_SOCKET", a.sun_path, 1), 0);
    if (watchdog_usec != NULL) {
        ck_assert_int_eq(setenv("WATCHDOG_USEC", watchdog_usec, 1), 0);
    }
    START(&f->d, NULL);
    f->pid = f->d.pid;
    expect(f, "READY=1");
}

/* SIGTERM ferryd, which must exit 0 after STOPPING=1; then clean up. */
static void fake_stop(struct fake_systemd *f)
{
    STOP(&f->d);
    expect(f, "STOPPING=1");
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    close(f->fd);
    tmpdir_remove(f->dir);
}

START_TEST(ready_once_listening_stopping_on_term)
{
    struct fake_systemd f;
    fake_start(&f, NULL);
    /* Sent after the listening line, naming the port bound: clients
     * started after it (systemd's After=ferryd.service) get in. */
    char status[128];
    snprintf(status, sizeof(status), "STATUS=listening on 127.0.0.1:%d", f.d.port);
    ck_assert_msg(strstr(f.msg, status) != NULL, "\"%s\" lacks %s", f.msg, status);
    struct rawc c;
    CONNECT(&c, f.d.port);
    rawc_close(&c);
    fake_stop(&f);
}
END_TEST

START_TEST(reload_says_reloading_then_ready)
{
    struct fake_systemd f;
    fake_start(&f, NULL);
    ck_assert_int_eq(kill(f.pid, SIGHUP), 0);
    expect(&f, "RELOADING=1");
    ck_assert_ptr_nonnull(strstr(f.msg, "MONOTONIC_USEC="));
    expect(&f, "READY=1");
    fake_stop(&f);
}
END_TEST

/* WatchdogSec=200ms: a ping at least every 100 ms. On this shared machine
 * only a loose floor is checked: 4 pings within 2 s (about 20 are due). */
START_TEST(watchdog_pings_while_idle)
{
    struct fake_systemd f;
    fake_start(&f, "200000");
    int n_pings = 0;
    long long deadline = mono_ms() + 2000;
    while (n_pings < 4) {
        int left = (int)(deadline - mono_ms());
        ck_assert_msg(left > 0 && fake_recv(&f, left) == 0,
                      "%d WATCHDOG=1 in 2 s with WATCHDOG_USEC=200000", n_pings);
        ck_assert_msg(has_line(f.msg, "WATCHDOG=1"), "expected WATCHDOG=1, got \"%s\"", f.msg);
        n_pings++;
    }
    fake_stop(&f);
}
END_TEST

/* Without WATCHDOG_USEC ferryd sends nothing between READY and a signal. */
START_TEST(no_watchdog_unless_asked)
{
    struct fake_systemd f;
    fake_start(&f, NULL);
    ck_assert_int_eq(fake_recv(&f, 500), -1);
    fake_stop(&f);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("e2e_88_service_notify");
    TCase *t = tcase_create("ready_once_listening_stopping_on_term");
    tcase_add_test(t, ready_once_listening_stopping_on_term);
    suite_add_tcase(s, t);
    t = tcase_create("reload_says_reloading_then_ready");
    tcase_add_test(t, reload_says_reloading_then_ready);
    suite_add_tcase(s, t);
    t = tcase_create("watchdog_pings_while_idle");
    tcase_add_test(t, watchdog_pings_while_idle);
    suite_add_tcase(s, t);
    t = tcase_create("no_watchdog_unless_asked");
    tcase_add_test(t, no_watchdog_unless_asked);
    suite_add_tcase(s, t);
    return s;
}

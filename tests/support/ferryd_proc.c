/*
 * ferryd_proc.c - fork/exec ferryd and read its ready line.
 */
#include "ferryd_proc.h"

#ifdef FERRY_TEST_HAVE_TLS
#include "tls_certs.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef FERRYD_PATH
#error "FERRYD_PATH must name the ferryd binary"
#endif

#define START_TIMEOUT_MS 20000
#define STOP_TIMEOUT_MS 10000
#define READY_PREFIX "ferryd: listening on 127.0.0.1:"
#define TLS_PREFIX "ferryd: listening for TLS on 127.0.0.1:" /* printed before READY */
#define MQTT_PREFIX "ferryd: listening for MQTT on 127.0.0.1:" /* printed before READY */
#define MQTT_TLS_PREFIX "ferryd: listening for MQTT over TLS on 127.0.0.1:" /* before READY */
#define METRICS_PREFIX "ferryd: metrics on 127.0.0.1:"       /* printed before both */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* Non-blocking wait for pid; returns 1 and the status if it exited. */
static int reap(pid_t pid, int *status, int block)
{
    for (;;) {
        pid_t r = waitpid(pid, status, block ? 0 : WNOHANG);
        if (r == pid) {
            return 1;
        }
        if (r < 0 && errno == EINTR) {
            continue;
        }
        return 0;
    }
}

#ifdef FERRY_TEST_HAVE_TLS
static struct tls_certs test_certs; /* FERRY_TEST_TLS: made once per process */
static char test_cert[256], test_key[256];

static void test_certs_remove(void)
{
    tls_certs_remove(&test_certs);
}

int ferryd_test_tls(void)
{
    const char *e = getenv("FERRY_TEST_TLS");
    return e != NULL && *e != '\0' && strcmp(e, "0") != 0;
}

/* The certificate and key ferryd gets with FERRY_TEST_TLS; 0 or -1. */
static int test_certs_get(void)
{
    if (test_certs.dir[0] != '\0') {
        return 0;
    }
    if (tls_certs_make(&test_certs) < 0) {
        return -1;
    }
    atexit(test_certs_remove);
    tls_certs_path(&test_certs, "server.pem", test_cert, sizeof(test_cert));
    tls_certs_path(&test_certs, "server.key", test_key, sizeof(test_key));
    return 0;
}
#else
int ferryd_test_tls(void)
{
    return 0;
}
#endif

static int spawn(struct ferryd_proc *p, const char *const *extra_args)
{
    const char *argv[64];
    int n = 0;
    argv[n++] = FERRYD_PATH;
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
#ifdef FERRY_TEST_HAVE_TLS
    /* FERRY_TEST_TLS=1: the suites talk to the TLS listener. */
    if (ferryd_test_tls()) {
        if (test_certs_get() < 0) {
            return -EIO;
        }
        argv[n++] = "--tls-listen";
        argv[n++] = "127.0.0.1:0";
        argv[n++] = "--tls-cert";
        argv[n++] = test_cert;
        argv[n++] = "--tls-key";
        argv[n++] = test_key;
    }
#endif
    argv[n++] = "--data-dir";
    argv[n++] = p->data_dir;
    /* FERRY_TEST_IO_BACKEND=uring runs the suites on the io_uring reactors,
     * FERRY_TEST_REACTOR=single|single-pool on those thread layouts. */
    const char *backend = getenv("FERRY_TEST_IO_BACKEND");
    if (backend != NULL && *backend != '\0') {
        argv[n++] = "--io-backend";
        argv[n++] = backend;
    }
    const char *reactor = getenv("FERRY_TEST_REACTOR");
    if (reactor != NULL && *reactor != '\0') {
        argv[n++] = "--reactor";
        argv[n++] = reactor;
    }
    for (int i = 0; extra_args && extra_args[i] && n < 62; i++) {
        argv[n++] = extra_args[i];
    }
    argv[n] = NULL;
    /* `--listen off` (the last --listen wins): only the TLS line will come. */
    int is_plain_off = 0;
    for (int i = 1; i + 1 < n; i++) {
        if (strcmp(argv[i], "--listen") == 0) {
            is_plain_off = strcmp(argv[i + 1], "off") == 0;
        }
    }

    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) {
        return -errno;
    }
    pid_t pid = fork();
    if (pid < 0) {
        int err = -errno;
        close(fds[0]);
        close(fds[1]);
        return err;
    }
    if (pid == 0) {
        /* A test that dies must not leave its broker behind. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fds[1], STDOUT_FILENO);
        execv(FERRYD_PATH, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    p->pid = pid;
    p->port = 0;
    p->tls_port = 0;
    p->metrics_port = 0;
    p->mqtt_port = 0;
    p->mqtt_tls_port = 0;

    /* Read stdout until the ready line, bounded by the timeout. */
    char line[512];
    size_t len = 0;
    long long deadline = now_ms() + START_TIMEOUT_MS;
    int rc = -ETIMEDOUT;
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0) {
            break;
        }
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        int pr = poll(&pfd, 1, (int)left);
        if (pr < 0 && errno == EINTR) {
            continue;
        }
        if (pr <= 0) {
            break;
        }
        ssize_t r = read(fds[0], line + len, sizeof(line) - 1 - len);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            rc = -ECHILD; /* ferryd closed stdout: it exited */
            break;
        }
        len += (size_t)r;
        line[len] = '\0';
        /* Every complete line read so far (the TLS line and the ready line
         * may come in one read). */
        int is_ready = 0;
        char *nl;
        while (!is_ready && (nl = strchr(line, '\n')) != NULL) {
            *nl = '\0';
            char *at = strstr(line, READY_PREFIX);
            char *tls_at = strstr(line, TLS_PREFIX);
            char *metrics_at = strstr(line, METRICS_PREFIX);
            char *mqtt_at = strstr(line, MQTT_PREFIX);
            char *mqtt_tls_at = strstr(line, MQTT_TLS_PREFIX);
            if (mqtt_at) {
                p->mqtt_port = atoi(mqtt_at + strlen(MQTT_PREFIX));
            }
            if (mqtt_tls_at) {
                p->mqtt_tls_port = atoi(mqtt_tls_at + strlen(MQTT_TLS_PREFIX));
            }
            if (metrics_at) {
                p->metrics_port = atoi(metrics_at + strlen(METRICS_PREFIX));
            }
            if (tls_at) {
                p->tls_port = atoi(tls_at + strlen(TLS_PREFIX));
                if (is_plain_off) {
                    rc = p->tls_port > 0 ? 0 : -EPROTO; /* the only listener */
                    is_ready = 1;
                    break;
                }
            }
            if (at) {
                p->port = atoi(at + strlen(READY_PREFIX));
                rc = p->port > 0 ? 0 : -EPROTO;
                is_ready = 1;
                break;
            }
            /* Some other line: drop it. */
            size_t rest = len - (size_t)(nl + 1 - line);
            memmove(line, nl + 1, rest + 1);
            len = rest;
        }
        if (is_ready) {
            break;
        }
        if (len == sizeof(line) - 1) {
            len = 0;
        }
    }
    /* Keep nothing of ferryd's stdout: once it is ready it only writes logs
     * to stderr. Closing our end is harmless (it never writes again). */
    close(fds[0]);
    if (rc == 0 && ferryd_test_tls()) {
        p->port = p->tls_port > 0 ? p->tls_port : 0; /* the suites speak TLS */
        rc = p->port > 0 ? 0 : -EPROTO;
    }
    if (rc < 0) {
        kill(pid, SIGKILL);
        int st;
        reap(pid, &st, 1);
        p->pid = 0;
    }
    return rc;
}

int ferryd_start(struct ferryd_proc *p, const char *data_dir, const char *const *extra_args)
{
    memset(p, 0, sizeof(*p));
    if (data_dir) {
        if (strlen(data_dir) >= sizeof(p->data_dir)) {
            return -ENAMETOOLONG;
        }
        strcpy(p->data_dir, data_dir);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(p->data_dir, sizeof(p->data_dir), "%s/ferryd-test-XXXXXX",
                 tmp && *tmp ? tmp : "/tmp");
        if (mkdtemp(p->data_dir) == NULL) {
            return -errno;
        }
        p->owns_dir = 1;
    }
    int rc = spawn(p, extra_args);
    if (rc < 0 && p->owns_dir) {
        nftw(p->data_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        p->owns_dir = 0;
    }
    return rc;
}

int ferryd_restart(struct ferryd_proc *p, const char *const *extra_args)
{
    if (p->pid > 0) {
        return -EBUSY;
    }
    return spawn(p, extra_args);
}

int ferryd_restart_same_port(struct ferryd_proc *p, const char *const *extra_args)
{
    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", p->port);
    const char *args[32] = {ferryd_test_tls() ? "--tls-listen" : "--listen", listen};
    size_t n = 2;
    for (size_t i = 0; extra_args != NULL && extra_args[i] != NULL; i++) {
        if (n + 1 >= sizeof(args) / sizeof(args[0])) {
            return -E2BIG;
        }
        args[n++] = extra_args[i];
    }
    args[n] = NULL;
    int old = p->port;
    int rc = -1;
    /* The old port may linger a moment; ferryd sets SO_REUSEADDR, so a few
     * tries are enough. */
    for (int i = 0; i < 50 && rc != 0; i++) {
        rc = ferryd_restart(p, args);
        if (rc != 0) {
            struct timespec ts = {0, 100 * 1000 * 1000}; /* retry pacing */
            nanosleep(&ts, NULL);
        }
    }
    if (rc == 0 && p->port != old) {
        return -EADDRINUSE;
    }
    return rc;
}

static int exit_code(int st)
{
    if (WIFEXITED(st)) {
        return WEXITSTATUS(st);
    }
    if (WIFSIGNALED(st)) {
        return 128 + WTERMSIG(st);
    }
    return -ECHILD;
}

int ferryd_stop(struct ferryd_proc *p)
{
    int rc = 0;
    if (p->pid > 0) {
        int st = 0;
        kill(p->pid, SIGTERM);
        long long deadline = now_ms() + STOP_TIMEOUT_MS;
        int done = 0;
        while (!(done = reap(p->pid, &st, 0)) && now_ms() < deadline) {
            struct timespec ts = {0, 10 * 1000 * 1000}; /* polling a condition */
            nanosleep(&ts, NULL);
        }
        if (!done) {
            kill(p->pid, SIGKILL);
            reap(p->pid, &st, 1);
        }
        rc = exit_code(st);
        p->pid = 0;
    }
    if (p->owns_dir) {
        nftw(p->data_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        p->owns_dir = 0;
    }
    return rc;
}

int ferryd_kill9(struct ferryd_proc *p)
{
    if (p->pid <= 0) {
        return -ESRCH;
    }
    int st;
    kill(p->pid, SIGKILL);
    reap(p->pid, &st, 1);
    p->pid = 0;
    return 0;
}

long ferryd_rss_kb(const struct ferryd_proc *p)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)p->pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -errno;
    }
    char line[256];
    long kb = -ENOENT;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

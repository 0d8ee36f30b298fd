/*
 * ferryd_proc.h - run a real ferryd from a test.
 *
 * Every end-to-end, client and CLI test starts the ferryd of this build with
 * ferryd_start(): it listens on 127.0.0.1 port 0 and reports the port it bound
 * on stdout as "ferryd: listening on 127.0.0.1:PORT"; we wait for that line
 * (never for a fixed time). ferryd's stderr (its log) is left connected to the
 * test's stderr, so ctest --output-on-failure shows it.
 *
 * FERRY_TEST_TLS=1 (in a build with OpenSSL) runs the suites over TLS: ferryd
 * gets a TLS listener with a throwaway certificate (tls_certs.h, made once
 * per test process and removed at its exit), port is that listener's, and
 * rawclient speaks TLS to it (ferryd_test_tls() says whether this is on).
 *
 * Not thread-safe: one test thread drives one struct ferryd_proc.
 */
#ifndef FERRY_TEST_FERRYD_PROC_H
#define FERRY_TEST_FERRYD_PROC_H

#include <sys/types.h>

struct ferryd_proc {
    pid_t pid;          /* ferryd's pid, 0 when not running */
    int port;           /* the TCP port it listens on; 0 with `--listen off` */
    int tls_port;       /* its TLS port (--tls-listen), 0 when none */
    int metrics_port;   /* its HTTP metrics port (--metrics-listen 127.0.0.1:0), 0 when none */
    int mqtt_port;      /* its MQTT port (--mqtt-listen 127.0.0.1:0), 0 when none */
    int mqtt_tls_port;  /* its MQTT over TLS port (--mqtt-tls-listen), 0 when none */
    char data_dir[256]; /* its --data-dir */
    int owns_dir;       /* 1: made by ferryd_start, removed by ferryd_stop */
};

/* Start build's ferryd on 127.0.0.1 port 0 with a fresh mkdtemp data dir (or
 * the given dir if data_dir != NULL), extra argv appended (NULL-terminated, may
 * be NULL). Waits (timeout 20 s) for its ready line and parses the port.
 * Returns 0 or -errno (-ETIMEDOUT if the line never came, -ECHILD if ferryd
 * exited first). */
int ferryd_start(struct ferryd_proc *p, const char *data_dir, const char *const *extra_args);

/* SIGTERM, wait up to 10 s for exit, then SIGKILL. Returns the exit status
 * (0..255, or 128 + signal number if killed by a signal), or -errno. Removes
 * the data dir if owned. */
int ferryd_stop(struct ferryd_proc *p);

/* SIGKILL + waitpid; keeps the data dir (for ferryd_restart). Returns 0 or
 * -errno. */
int ferryd_kill9(struct ferryd_proc *p);

/* Start again on the same data dir (new port). The process must have exited
 * (ferryd_kill9) or be stopped first. Returns as ferryd_start. */
int ferryd_restart(struct ferryd_proc *p, const char *const *extra_args);

/* Restart (after ferryd_kill9 or a stop that kept the dir) listening on the
 * port it had, so clients reconnect to the address they know; extra args
 * as for ferryd_start. Retries while the port lingers. Returns 0,
 * -EADDRINUSE (it came up elsewhere), or as ferryd_start. */
int ferryd_restart_same_port(struct ferryd_proc *p, const char *const *extra_args);

/* 1 if FERRY_TEST_TLS asks for TLS (and this build has it), else 0. */
int ferryd_test_tls(void);

/* VmRSS of the running ferryd in KiB, from /proc/PID/status; -errno on error. */
long ferryd_rss_kb(const struct ferryd_proc *p);

#endif

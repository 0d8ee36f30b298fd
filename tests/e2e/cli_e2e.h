/*
 * cli_e2e.h - what the `ferry` tool's end-to-end tests share (cli_e2e.c):
 * a real ferryd per test case, the CLI run on pipes, and a small JSON
 * reader for its --json output.
 *
 * Synchronisation is by output, never by sleeping: a subscriber started
 * with --verbose reports "ferry: subscribed to PATTERN" on stderr once the
 * broker has acknowledged the subscription (after which every publish
 * reaches it); tests wait for that line, with a generous timeout.
 */
#ifndef FERRY_CLI_E2E_H
#define FERRY_CLI_E2E_H

#include "ferryd_proc.h"

#include <check.h>
#include <stdbool.h>
#include <stddef.h>

#ifndef FERRY_CLI_PATH
#error "FERRY_CLI_PATH must name the ferry binary"
#endif

#define WAIT_MS 30000 /* generous: a slow, noisy 2-core machine */

extern struct ferryd_proc broker; /* the case's broker (broker_up) */
extern char server[64];           /* its address, "127.0.0.1:PORT" */

/* A running `ferry`: its pipes and what it printed so far. */
struct proc {
    pid_t pid;
    int in;  /* its stdin (write end), -1 when closed */
    int out; /* its stdout (read end) */
    int err; /* its stderr (read end) */
    char *out_buf, *err_buf;
    size_t out_len, err_len;
    int status; /* exit code, 128 + signal, or -1 while running */
};

/* A parsed JSON value. */
struct jv {
    enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } type;
    double num;
    int boolean;
    char *str; /* J_STR: decoded bytes (NUL-terminated), str_len bytes */
    size_t str_len;
    struct jv *items; /* J_ARR / J_OBJ values */
    char **keys;      /* J_OBJ */
    size_t n;
};

long long now_ms(void);
/* Fixture: start broker (and fill server); stop it. */
void broker_up(void);
void broker_down(void);

/* Start `ferry ARGS...` (NULL-terminated) on pipes. */
void proc_start(struct proc *p, const char *const *args);
/* Read what is there (waiting up to wait_ms): 1 while a pipe is open. */
int proc_pump(struct proc *p, int wait_ms);
/* Wait until stderr (or stdout) contains needle: 0, -ETIMEDOUT, -EPIPE. */
int proc_wait_for(struct proc *p, bool on_stderr, const char *needle, int timeout_ms);
void proc_close_stdin(struct proc *p);
/* Collect all output and the exit status; kill after timeout_ms. */
int proc_wait(struct proc *p, int timeout_ms);
void proc_free(struct proc *p);
/* Run to completion with optional stdin text; returns the exit status. */
int run(struct proc *p, const char *input, const char *const *args);
/* Start `ferry sub --verbose ARGS...` and wait until it is subscribed. */
void sub_start(struct proc *p, const char *const *args);

/* Parse text or fail the test; free with jv_free. */
void json_parse(const char *text, struct jv *out);
void jv_free(struct jv *v);
/* Member key of object o (NULL if none), as a string or a number (fail
 * the test if missing or of another type). */
const struct jv *jget(const struct jv *o, const char *key);
const char *jstr(const struct jv *o, const char *key);
double jnum(const struct jv *o, const char *key);

/* Lines (newlines) in s (NULL: 0). */
size_t count_lines(const char *s);

/* Add a case running t with the broker fixture. */
void cli_add_case(Suite *s, TCase *tc, const TTest *t);

#endif

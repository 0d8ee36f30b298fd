/*
 * backup_e2e.h - what the hot backup and --inspect suites share (86_backup.c,
 * 87_inspect.c): messages whose payload follows from their sequence, a fast
 * preload, and running a command for its output and exit status.
 */
#ifndef FERRY_BACKUP_E2E_H
#define FERRY_BACKUP_E2E_H

#include "store_e2e.h"

#include <check.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define B_PAYLOAD 1024 /* bytes of every message of these suites */

/* The payload of sequence seq on a topic one publisher fills in order. */
static inline void b_payload(uint64_t seq, char out[B_PAYLOAD])
{
    int n = snprintf(out, B_PAYLOAD, "m-%llu-", (unsigned long long)seq);
    for (int i = n; i < B_PAYLOAD; i++) {
        out[i] = (char)('a' + (seq * 7 + (uint64_t)i) % 26);
    }
}

struct b_preload {
    atomic_uint n_done;
    atomic_int err;
};

static inline void b_preload_cb(ferry_client *c, int status, uint64_t seq, void *ud)
{
    (void)c;
    (void)seq;
    struct b_preload *p = ud;
    if (status != 0) {
        atomic_store(&p->err, status);
    }
    atomic_fetch_add(&p->n_done, 1);
}

/* Publish sequences first..first+n-1 of topic (a fresh topic, or one at
 * first - 1) with acks, pipelined; fails the test on any refusal. */
static inline void b_preload(ferry_client *c, const char *topic, uint64_t first, uint64_t n)
{
    struct b_preload p = {0};
    char buf[B_PAYLOAD];
    for (uint64_t s = first; s < first + n; s++) {
        b_payload(s, buf);
        ferry_pub m = {.topic = topic, .payload = buf, .payload_len = B_PAYLOAD};
        int rc = ferry_publish_async(c, &m, b_preload_cb, &p, NULL);
        ck_assert_msg(rc == 0, "publish: %s", ferry_strerror(rc));
    }
    ck_assert_int_eq(ferry_flush(c, S_WAIT * 3), 0);
    ck_assert_int_eq(atomic_load(&p.n_done), n);
    ck_assert_msg(atomic_load(&p.err) == 0, "a publish failed: %s",
                  ferry_strerror(atomic_load(&p.err)));
}

/* Run a shell command (quote its words), stdout and stderr into out
 * (NUL-ended, cut at cap); returns its exit status. */
static inline int b_run(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline int b_run(char *out, size_t cap, const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    FILE *f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = 0;
    char tmp[4096];
    size_t r;
    while ((r = fread(tmp, 1, sizeof(tmp), f)) > 0) {
        size_t take = cap - 1 - n < r ? cap - 1 - n : r; /* the rest is dropped */
        memcpy(out + n, tmp, take);
        n += take;
    }
    out[n] = '\0';
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

#endif

/*
 * auth_e2e.h - what the end-to-end suites with an auth file share: crypt(3)
 * hashes, a private directory for the file, a monotonic clock.
 */
#ifndef FERRY_AUTH_E2E_H
#define FERRY_AUTH_E2E_H

#include <check.h>
#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* pw hashed with method prefix ("$6$", "$y$", "$2b$" ...) at cost (0: the
 * method's default); "$6$" with 1000 rounds keeps tests fast. */
static inline char *e2e_hash(const char *pw, const char *prefix, unsigned long cost)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    ck_assert_ptr_nonnull(crypt_gensalt_rn(prefix, cost, NULL, 0, setting, sizeof(setting)));
    struct crypt_data cd;
    memset(&cd, 0, sizeof(cd));
    const char *h = crypt_rn(pw, setting, &cd, sizeof(cd));
    ck_assert_ptr_nonnull(h);
    ck_assert(h[0] != '*');
    return strdup(h);
}

static inline long long e2e_ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A private directory (/tmp/ferry-TAG-XXXXXX, a mkdtemp template) and the
 * auth file's path in it. */
struct e2e_auth_dir {
    char dir[64];
    char path[128];
};

static inline void e2e_auth_dir_make(struct e2e_auth_dir *a, const char *tag)
{
    snprintf(a->dir, sizeof(a->dir), "/tmp/ferry-%s-XXXXXX", tag);
    ck_assert_ptr_nonnull(mkdtemp(a->dir));
    snprintf(a->path, sizeof(a->path), "%s/auth", a->dir);
}

static inline void e2e_auth_dir_remove(struct e2e_auth_dir *a)
{
    unlink(a->path);
    rmdir(a->dir);
}

#endif

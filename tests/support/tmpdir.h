/*
 * tmpdir.h - a fresh directory under /tmp for one test case, and its
 * removal with everything in it. Part of every Check program
 * (ferry_check_main).
 */
#ifndef FERRY_TEST_TMPDIR_H
#define FERRY_TEST_TMPDIR_H

#include <stddef.h>

/* Make /tmp/PREFIX-XXXXXX (mkdtemp) and put its path in buf; the test
 * fails if it cannot. */
void tmpdir_make(char *buf, size_t len, const char *prefix);

/* Remove dir and everything below it (best effort). */
void tmpdir_remove(const char *dir);

#endif

/* tmpdir.c - see tmpdir.h. */
#define _XOPEN_SOURCE 700
#include "tmpdir.h"

#include <check.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void tmpdir_make(char *buf, size_t len, const char *prefix)
{
    int n = snprintf(buf, len, "/tmp/%s-XXXXXX", prefix);
    ck_assert(n > 0 && (size_t)n < len);
    ck_assert_ptr_nonnull(mkdtemp(buf));
}

void tmpdir_remove(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

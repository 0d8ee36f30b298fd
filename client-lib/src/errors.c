/*
 * errors.c - ferry_strerror() and ferry_version().
 *
 * The text of every FERRY_E* code comes from the one table in ferry.h
 * (FERRY_ERRNO_MAP); -errno values get strerror's text.
 */
#include "ferry_int.h"

#include <stdio.h>
#include <string.h>

FERRY_API const char *ferry_strerror(int err)
{
    if (err == 0) {
        return "success";
    }
    switch (err) {
#define FERRY__ERRNO_TEXT(name, value, text)                                                       \
    case (value):                                                                                  \
        return (text);
        FERRY_ERRNO_MAP(FERRY__ERRNO_TEXT)
#undef FERRY__ERRNO_TEXT
    default:
        break;
    }
    if (err < 0 && err > -FERRY_EBASE) {
        /* strerror() of glibc returns static strings for known codes and a
         * thread-local buffer for unknown ones; both outlive this call. */
        return strerror(-err);
    }
    return "unknown error";
}

FERRY_API const char *ferry_version(void)
{
#define FERRY__STR2(x) #x
#define FERRY__STR(x) FERRY__STR2(x)
    return FERRY__STR(FERRY_VERSION_MAJOR) "." FERRY__STR(FERRY_VERSION_MINOR) "." FERRY__STR(
        FERRY_VERSION_PATCH);
}

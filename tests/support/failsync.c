/*
 * failsync.c - an LD_PRELOAD shim that makes syncing fail, for fault tests.
 *
 * Linux reports a failed writeback once, through fsync/fdatasync/msync; after
 * that the dirty pages may be gone while the next fsync succeeds. ferry must
 * therefore treat the first EIO as final (fail-stop). This shim lets a test
 * produce that EIO on demand:
 *
 *   FERRY_FAILSYNC_AFTER=N   the first N sync calls succeed, every later one
 *                            fails with EIO (N = 0: all fail)
 *   FERRY_FAILSYNC_FLAG=F    alternatively: sync calls fail while file F exists
 *                            (lets a test arm the fault at a moment it chooses)
 *
 * Without either variable the shim passes every call through.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int fsync(int fd);
int fdatasync(int fd);
int msync(void *addr, size_t len, int flags);

/* Sync calls seen so far, from any thread. */
static atomic_long n_calls;

static int should_fail(void)
{
    const char *flag = getenv("FERRY_FAILSYNC_FLAG");
    if (flag && *flag) {
        return access(flag, F_OK) == 0;
    }
    const char *after = getenv("FERRY_FAILSYNC_AFTER");
    if (after && *after) {
        long n = atomic_fetch_add(&n_calls, 1);
        return n >= atol(after);
    }
    return 0;
}

int fsync(int fd)
{
    if (should_fail()) {
        errno = EIO;
        return -1;
    }
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}

int fdatasync(int fd)
{
    if (should_fail()) {
        errno = EIO;
        return -1;
    }
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}

int msync(void *addr, size_t len, int flags)
{
    if ((flags & MS_SYNC) && should_fail()) {
        errno = EIO;
        return -1;
    }
    int (*real)(void *, size_t, int) = (int (*)(void *, size_t, int))dlsym(RTLD_NEXT, "msync");
    return real(addr, len, flags);
}

/*
 * fsync_rate.c - the disk's own write + fdatasync rate, the yardstick for
 * acked publishes with 1 in flight (issue 4, measurement).
 *
 *   ferry_fsync_rate [--dir DIR] [--seconds S] [--size BYTES] [--overwrite]
 *
 * Appends BYTES (default 128) and calls fdatasync, in a loop for S seconds
 * (default 3), on a temporary file in DIR (default .), then prints
 * "write+fdatasync: N/s (...)". The file is removed. --overwrite rewrites
 * the same bytes at offset 0 instead (no file size change to journal; this
 * is closer to what LMDB does, which rewrites pages inside its file).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    const char *dir = ".";
    double seconds = 3;
    size_t size = 128;
    int overwrite = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = atof(argv[++i]);
        } else if (strcmp(argv[i], "--overwrite") == 0) {
            overwrite = 1;
        } else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) {
            size = (size_t)atol(argv[++i]);
        } else {
            fprintf(stderr, "usage: ferry_fsync_rate [--dir DIR] [--seconds S] [--size BYTES] "
                            "[--overwrite]\n");
            return 2;
        }
    }
    if (seconds <= 0 || size == 0 || size > (1u << 20)) {
        fprintf(stderr, "ferry_fsync_rate: bad --seconds or --size\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/fsync-rate-XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0) {
        fprintf(stderr, "ferry_fsync_rate: %s: %s\n", path, strerror(errno));
        return 1;
    }
    unlink(path);
    char *buf = malloc(size);
    if (buf == NULL) {
        return 1;
    }
    memset(buf, 'f', size);
    long n = 0;
    double t0 = now_s(), t;
    do {
        ssize_t w = overwrite ? pwrite(fd, buf, size, 0) : write(fd, buf, size);
        if (w != (ssize_t)size || fdatasync(fd) != 0) {
            fprintf(stderr, "ferry_fsync_rate: %s\n", strerror(errno));
            return 1;
        }
        n++;
        t = now_s();
    } while (t - t0 < seconds);
    printf("%s+fdatasync: %.0f/s (%ld in %.2f s, %zu bytes each, dir %s)\n",
           overwrite ? "overwrite" : "append", (double)n / (t - t0), n, t - t0, size, dir);
    close(fd);
    free(buf);
    return 0;
}

/*
 * store_wal.c - the store's write-ahead log and checkpoint record
 * (store_wal.h says what and why).
 */
#include "store_wal.h"

#include "crc32c.h"
#include "store_bytes.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define WAL_MAGIC 0x4c415746u  /* "FWAL" little-endian */
#define CKPT_MAGIC 0x504b4346u /* "FCKP" */
#define HDR_LEN 32u
#define CKPT_HDR_LEN 32u
#define CKPT_META_MAX (2u * 65536u) /* two meta pages of the largest page size */
#define ZERO_CHUNK ((size_t)1 << 20)
#define HALF_MIN ((size_t)256 << 10) /* the smallest half, on a small disk */
#define DISK_SHARE 16u               /* the log takes at most 1/this of the free space */

struct wal {
    int fd;           /* dir/wal */
    int ckpt_fd;      /* dir/checkpoint */
    size_t half;      /* bytes per half */
    size_t slot;      /* bytes per checkpoint slot */
    uint64_t gen;     /* the generation being written */
    size_t last_off;  /* offset of its last record */
    uint32_t idx;     /* its next record's index */
    size_t off;       /* its next record's offset within its half */
    int is_started;   /* a generation is open (wal_start ran) */
    unsigned char *z; /* ZERO_CHUNK zero bytes */
};

static size_t pad8(size_t n)
{
    return (n + 7u) & ~(size_t)7u;
}

static void say(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(char *err, size_t err_len, const char *fmt, ...)
{
    if (err_len == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

static int pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
    const unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, off);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        p += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

static int pread_all(int fd, void *buf, size_t len, off_t off)
{
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, off);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            return -ENODATA; /* past the end */
        }
        p += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

/* Write zeros over [from, to) of fd and sync: every block allocated, the
 * size final, so later syncs of writes inside never touch metadata. */
static int zero_fill(struct wal *w, int fd, size_t from, size_t to)
{
    for (size_t off = from; off < to;) {
        size_t n = to - off < ZERO_CHUNK ? to - off : ZERO_CHUNK;
        int rc = pwrite_all(fd, w->z, n, (off_t)off);
        if (rc < 0) {
            return rc;
        }
        off += n;
    }
    return fsync(fd) == 0 ? 0 : -errno;
}

/* The half size to use on fd's file system: want, but the whole log at
 * most 1/DISK_SHARE of the space free (plus have, what it holds already),
 * and no less than HALF_MIN; a multiple of page. */
static size_t half_fit(int fd, size_t want, size_t have, size_t page)
{
    struct statvfs sv;
    if (fstatvfs(fd, &sv) == 0) {
        unsigned long long room = (unsigned long long)sv.f_bavail * sv.f_frsize + have;
        if (room / DISK_SHARE / 2 < want) {
            want = (size_t)(room / DISK_SHARE / 2);
        }
    }
    if (want < HALF_MIN) {
        want = HALF_MIN;
    }
    return (want + page - 1) / page * page;
}

static int file_open(struct wal *w, const char *dir, const char *name, size_t size, unsigned mode,
                     int *out, char *err, size_t err_len)
{
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path)) {
        say(err, err_len, "%s: path too long", dir);
        return -ENAMETOOLONG;
    }
    int fd = open(path, O_RDWR | O_CLOEXEC);
    int rc = 0;
    if (fd < 0 && errno == ENOENT) {
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        if (fd >= 0) {
            if (size > 2 * HALF_MIN) { /* the log, not the checkpoint file */
                long ps = sysconf(_SC_PAGESIZE);
                size = 2 * half_fit(fd, size / 2, 0, ps > 0 ? (size_t)ps : 4096);
            }
            rc = zero_fill(w, fd, 0, size);
            if (rc == 0) {
                int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (dfd >= 0) {
                    rc = fsync(dfd) == 0 ? 0 : -errno; /* the new name too */
                    close(dfd);
                }
            }
        }
    }
    if (fd < 0) {
        rc = -errno;
    }
    if (rc < 0) {
        say(err, err_len, "%s: %s", path, strerror(-rc));
        if (fd >= 0) {
            close(fd);
        }
        return rc;
    }
    *out = fd;
    return 0;
}

int wal_open(const char *dir, size_t half, unsigned mode, struct wal **out, char *err,
             size_t err_len)
{
    long ps = sysconf(_SC_PAGESIZE);
    size_t page = ps > 0 ? (size_t)ps : 4096;
    half = (half + page - 1) / page * page;
    struct wal *w = calloc(1, sizeof(*w));
    unsigned char *z = calloc(1, ZERO_CHUNK);
    if (w == NULL || z == NULL) {
        free(w);
        free(z);
        say(err, err_len, "out of memory");
        return -ENOMEM;
    }
    w->z = z;
    w->fd = -1;
    w->ckpt_fd = -1;
    w->slot = (CKPT_HDR_LEN + CKPT_META_MAX + page - 1) / page * page;
    int rc = file_open(w, dir, "wal", 2 * half, mode, &w->fd, err, err_len);
    if (rc == 0) {
        rc = file_open(w, dir, "checkpoint", 2 * w->slot, mode, &w->ckpt_fd, err, err_len);
    }
    struct stat st;
    if (rc == 0 && fstat(w->fd, &st) != 0) {
        rc = -errno;
        say(err, err_len, "%s/wal: %s", dir, strerror(-rc));
    }
    if (rc == 0 && (st.st_size < (off_t)(2 * (HDR_LEN + page)) || st.st_size % 2 != 0)) {
        rc = -EINVAL;
        say(err, err_len, "%s/wal: unexpected size %lld (not a ferry log)", dir,
            (long long)st.st_size);
    }
    if (rc < 0) {
        wal_close(w);
        return rc;
    }
    w->half = (size_t)st.st_size / 2;
    *out = w;
    return 0;
}

void wal_close(struct wal *w)
{
    if (w == NULL) {
        return;
    }
    if (w->fd >= 0) {
        close(w->fd);
    }
    if (w->ckpt_fd >= 0) {
        close(w->ckpt_fd);
    }
    free(w->z);
    free(w);
}

int wal_resize(struct wal *w, size_t half)
{
    long ps = sysconf(_SC_PAGESIZE);
    size_t page = ps > 0 ? (size_t)ps : 4096;
    half = half_fit(w->fd, half, 2 * w->half, page);
    if (half <= w->half) {
        return 0; /* never shrinks */
    }
    if (ftruncate(w->fd, 0) != 0) {
        return -errno;
    }
    int rc = zero_fill(w, w->fd, 0, 2 * half);
    if (rc == 0) {
        w->half = half;
        w->off = 0;
        w->idx = 0;
    }
    return rc;
}

size_t wal_max_payload(const struct wal *w)
{
    /* the record, then room for the WAL_END that closes the half */
    return w->half - 2 * HDR_LEN;
}

size_t wal_used(const struct wal *w)
{
    return w->off;
}

int wal_fits(const struct wal *w, size_t len)
{
    return len <= wal_max_payload(w) && w->off + HDR_LEN + pad8(len) + HDR_LEN <= w->half;
}

static void hdr_make(unsigned char h[HDR_LEN], uint64_t gen, uint32_t idx, uint32_t len,
                     uint32_t kind)
{
    put_le32(h, WAL_MAGIC);
    put_le64(h + 8, gen);
    put_le32(h + 16, idx);
    put_le32(h + 20, len);
    put_le32(h + 24, kind);
    put_le32(h + 28, 0);
}

int wal_append(struct wal *w, uint32_t kind, const struct iovec *iov, int iovcnt)
{
    static const unsigned char zeros[8];
    struct iovec v[16];
    if (iovcnt < 0 || iovcnt > 14) {
        return -EINVAL;
    }
    size_t len = 0;
    for (int i = 0; i < iovcnt; i++) {
        len += iov[i].iov_len;
    }
    if (!wal_fits(w, len)) {
        return -EFBIG;
    }
    unsigned char h[HDR_LEN];
    hdr_make(h, w->gen, w->idx, (uint32_t)len, kind);
    uint32_t crc = crc32c(0, h + 8, HDR_LEN - 8);
    for (int i = 0; i < iovcnt; i++) {
        crc = crc32c(crc, iov[i].iov_base, iov[i].iov_len);
    }
    put_le32(h + 4, crc);
    v[0].iov_base = h;
    v[0].iov_len = HDR_LEN;
    if (iovcnt > 0) {
        memcpy(v + 1, iov, (size_t)iovcnt * sizeof(*iov));
    }
    int n = iovcnt + 1;
    if (pad8(len) != len) {
        v[n].iov_base = (void *)zeros;
        v[n].iov_len = pad8(len) - len;
        n++;
    }
    off_t at = (off_t)((w->gen % 2) * w->half + w->off);
    size_t total = HDR_LEN + pad8(len);
    /* One gathered write; a short one is finished piece by piece. */
    ssize_t done = pwritev(w->fd, v, n, at);
    if (done < 0 && errno != EINTR) {
        return -errno;
    }
    if (done < 0) {
        done = 0;
    }
    size_t skip = (size_t)done;
    for (int i = 0; i < n && skip < total; i++) {
        if (skip >= v[i].iov_len) {
            skip -= v[i].iov_len;
            continue;
        }
        const unsigned char *p = (const unsigned char *)v[i].iov_base + skip;
        size_t rest = v[i].iov_len - skip;
        int rc = pwrite_all(w->fd, p, rest, at + (off_t)((size_t)done));
        if (rc < 0) {
            return rc;
        }
        done += (ssize_t)rest;
        skip = 0;
    }
    w->last_off = w->off;
    w->off += total;
    w->idx++;
    return 0;
}

void wal_void_last(struct wal *w)
{
    if (w->idx > 0) {
        (void)pwrite_all(w->fd, w->z, HDR_LEN, (off_t)((w->gen % 2) * w->half + w->last_off));
    }
}

int wal_sync(struct wal *w)
{
    return fdatasync(w->fd) == 0 ? 0 : -errno;
}

int wal_start(struct wal *w, uint64_t gen)
{
    if (w->is_started) {
        int rc = wal_append(w, WAL_END, NULL, 0);
        if (rc < 0) {
            return rc;
        }
    }
    w->gen = gen;
    w->idx = 0;
    w->off = 0;
    w->is_started = 1;
    return 0;
}

/* ---- checkpoint record ------------------------------------------------- */

int wal_ckpt_write(struct wal *w, uint64_t gen, const void *metas, size_t len)
{
    if (len > CKPT_META_MAX) {
        return -EINVAL;
    }
    unsigned char h[CKPT_HDR_LEN] = {0};
    put_le32(h, CKPT_MAGIC);
    put_le64(h + 8, gen);
    put_le32(h + 16, (uint32_t)len);
    put_le32(h + 4, crc32c(crc32c(0, h + 8, CKPT_HDR_LEN - 8), metas, len));
    struct iovec v[2] = {{h, CKPT_HDR_LEN}, {(void *)metas, len}};
    off_t at = (off_t)((gen % 2) * w->slot);
    ssize_t n = pwritev(w->ckpt_fd, v, 2, at);
    if (n < 0) {
        return -errno;
    }
    if ((size_t)n != CKPT_HDR_LEN + len) {
        return -EIO; /* a short write to a preallocated file: give up */
    }
    return fdatasync(w->ckpt_fd) == 0 ? 0 : -errno;
}

/* Slot i: 0 with its generation and metas, or -ENOENT when it holds none. */
static int ckpt_slot(struct wal *w, int i, uint64_t *gen, unsigned char **metas, size_t *len)
{
    unsigned char h[CKPT_HDR_LEN];
    off_t at = (off_t)((size_t)i * w->slot);
    int rc = pread_all(w->ckpt_fd, h, sizeof(h), at);
    if (rc < 0) {
        return rc == -ENODATA ? -ENOENT : rc;
    }
    uint32_t n = get_le32(h + 16);
    if (get_le32(h) != CKPT_MAGIC || n == 0 || n > CKPT_META_MAX) {
        return -ENOENT;
    }
    unsigned char *m = malloc(n);
    if (m == NULL) {
        return -ENOMEM;
    }
    rc = pread_all(w->ckpt_fd, m, n, at + CKPT_HDR_LEN);
    if (rc < 0 || crc32c(crc32c(0, h + 8, CKPT_HDR_LEN - 8), m, n) != get_le32(h + 4) ||
        get_le64(h + 8) % 2 != (uint64_t)i) {
        free(m);
        return rc < 0 && rc != -ENODATA ? rc : -ENOENT;
    }
    *gen = get_le64(h + 8);
    *metas = m;
    *len = n;
    return 0;
}

int wal_ckpt_read(struct wal *w, uint64_t *gen, unsigned char **metas, size_t *len)
{
    uint64_t g[2] = {0, 0};
    unsigned char *m[2] = {NULL, NULL};
    size_t l[2] = {0, 0};
    int rc[2];
    for (int i = 0; i < 2; i++) {
        rc[i] = ckpt_slot(w, i, &g[i], &m[i], &l[i]);
        if (rc[i] < 0 && rc[i] != -ENOENT) {
            free(m[0]);
            return rc[i];
        }
    }
    if (rc[0] < 0 && rc[1] < 0) {
        return -ENOENT;
    }
    int best = rc[0] < 0 ? 1 : rc[1] < 0 ? 0 : g[1] > g[0] ? 1 : 0;
    free(m[1 - best]);
    *gen = g[best];
    *metas = m[best];
    *len = l[best];
    return 0;
}

/* ---- replay ------------------------------------------------------------ */

/* Read the record of generation gen with index idx at off of its half into
 * *buf (grown as needed). 1 with *kind and *len, 0 if there is none. */
static int rec_read(struct wal *w, uint64_t gen, uint32_t idx, size_t off, unsigned char **buf,
                    size_t *cap, uint32_t *kind, size_t *len)
{
    unsigned char h[HDR_LEN];
    if (off + HDR_LEN > w->half) {
        return 0;
    }
    off_t at = (off_t)((gen % 2) * w->half + off);
    int rc = pread_all(w->fd, h, HDR_LEN, at);
    if (rc < 0) {
        return rc == -ENODATA ? 0 : rc;
    }
    uint32_t n = get_le32(h + 20);
    if (get_le32(h) != WAL_MAGIC || get_le64(h + 8) != gen || get_le32(h + 16) != idx ||
        off + HDR_LEN + pad8(n) > w->half) {
        return 0;
    }
    if (n > *cap) {
        unsigned char *p = realloc(*buf, n);
        if (p == NULL) {
            return -ENOMEM;
        }
        *buf = p;
        *cap = n;
    }
    rc = pread_all(w->fd, *buf, n, at + HDR_LEN);
    if (rc < 0) {
        return rc == -ENODATA ? 0 : rc;
    }
    if (crc32c(crc32c(0, h + 8, HDR_LEN - 8), *buf, n) != get_le32(h + 4)) {
        return 0; /* torn */
    }
    *kind = get_le32(h + 24);
    *len = n;
    return 1;
}

int wal_replay(struct wal *w, uint64_t gen, wal_replay_cb cb, void *ctx, uint64_t *n_records,
               uint64_t *last_gen)
{
    unsigned char *buf = NULL;
    size_t cap = 0;
    uint64_t n = 0;
    int ret = 0;
    *last_gen = gen;
    for (uint64_t g = gen;; g++) {
        size_t off = 0;
        uint32_t idx = 0;
        int is_ended = 0;
        *last_gen = g;
        for (;;) {
            uint32_t kind = 0;
            size_t len = 0;
            int rc = rec_read(w, g, idx, off, &buf, &cap, &kind, &len);
            if (rc <= 0) {
                ret = rc;
                break;
            }
            off += HDR_LEN + pad8(len);
            idx++;
            if (kind == WAL_END) {
                is_ended = 1;
                break;
            }
            if (kind == WAL_BATCH) {
                ret = cb(ctx, buf, len);
                if (ret != 0) {
                    break;
                }
                n++;
            }
        }
        if (ret != 0 || !is_ended) {
            break;
        }
    }
    free(buf);
    *n_records = n;
    return ret;
}

/*
 * backup.c - hot backup: the slot, the backup thread and its copying
 * process (backup.h says how the pieces fit).
 */
#include "backup.h"

#include "codec.h"
#include "crc32c.h"
#include "log.h"
#include "server.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define PIPE_SIZE (1 << 20) /* asked of the kernel for the copy's pipe */
#define CANCEL_POLL_MS 100  /* a thread blocked on the pipe looks at is_cancelled */
#define FRAME_OVERHEAD 64u  /* an AdminReply's bytes around a chunk's data */
#define CHILD_ERR_MAX 400   /* bytes of the child's error line kept */

enum backup_state {
    B_IDLE = 0,    /* free */
    B_CLAIMED = 1, /* claimed; W_BACKUP on its way to the writer */
    B_RUNNING = 2, /* the thread copies */
};

struct backup {
    struct server *srv; /* immutable */
    pthread_mutex_t mu;
    pthread_cond_t cv; /* in_flight went down, is_cancelled or state changed */
    /* guarded by mu */
    enum backup_state state;
    uint32_t gen;       /* the current (or last) backup's number */
    uint32_t in_flight; /* chunks posted and not credited back */
    int is_cancelled;   /* its connection is gone, or ferryd stops */
    int is_stopping;    /* backup_stop() ran: no new backup */
    int has_thread;     /* thread is joinable (the last backup's, maybe finished) */
    pthread_t thread;
    /* guarded by mu; set by backup_claim() (backup_begin(): snapshot_ns),
     * read by the thread */
    uint64_t conn_ref;
    uint64_t admin_id;
    uint32_t chunk;      /* bytes of data per chunk */
    int64_t snapshot_ns; /* when the writer had committed all acked before */
    char who[80];
};

struct backup *backup_create(struct server *srv)
{
    struct backup *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        return NULL;
    }
    b->srv = srv;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    return b;
}

void backup_destroy(struct backup *b)
{
    if (b == NULL) {
        return;
    }
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

int backup_claim(struct backup *b, uint64_t conn_ref, uint64_t admin_id, uint32_t chunk,
                 uint32_t max_frame, const char *who, uint32_t *gen)
{
    /* A chunk fits the client's frames, and BACKUP_IN_FLIGHT of them on top
     * of a quarter of max_outbound_bytes stay below the half at which the
     * IO thread counts the connection as lagging (io_int.h, Stalls). */
    uint64_t cap = b->srv->cfg.max_outbound / 10;
    if (chunk == 0) {
        chunk = BACKUP_CHUNK_DEFAULT;
    }
    if (chunk > max_frame - FRAME_OVERHEAD) {
        chunk = max_frame - FRAME_OVERHEAD;
    }
    if (chunk > cap) {
        chunk = (uint32_t)cap;
    }
    if (chunk < 256) {
        chunk = 256; /* max_frame_len and max_outbound_bytes are at least 4 KiB */
    }
    pthread_mutex_lock(&b->mu);
    int rc = 0;
    if (b->is_stopping) {
        rc = -ESHUTDOWN;
    } else if (b->state != B_IDLE) {
        rc = -EBUSY;
    } else {
        b->state = B_CLAIMED;
        b->gen++;
        b->conn_ref = conn_ref;
        b->admin_id = admin_id;
        b->chunk = chunk;
        b->in_flight = 0;
        b->is_cancelled = 0;
        snprintf(b->who, sizeof(b->who), "%s", who);
        *gen = b->gen;
    }
    pthread_mutex_unlock(&b->mu);
    return rc;
}

void backup_unclaim(struct backup *b, uint32_t gen)
{
    pthread_mutex_lock(&b->mu);
    if (b->gen == gen && b->state == B_CLAIMED) {
        b->state = B_IDLE;
        pthread_cond_broadcast(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
}

void backup_credit(struct backup *b, uint32_t gen, uint32_t n)
{
    pthread_mutex_lock(&b->mu);
    if (b->gen == gen && b->state == B_RUNNING) {
        b->in_flight = n < b->in_flight ? b->in_flight - n : 0;
        pthread_cond_broadcast(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
}

void backup_cancel(struct backup *b, uint32_t gen)
{
    pthread_mutex_lock(&b->mu);
    if (b->gen == gen && b->state != B_IDLE) {
        b->is_cancelled = 1;
        pthread_cond_broadcast(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
}

/* ---- the backup thread ------------------------------------------------- */

/* What the thread needs of its request (copied under mu at its start). */
struct job {
    struct backup *b;
    uint32_t gen;
    uint64_t conn_ref;
    uint64_t admin_id;
    uint32_t chunk;
    int64_t snapshot_ns;
    char who[80];
};

/* Post AdminReply r (its id set) to the job's connection, as R_BACKUP;
 * is_last: no credit is owed for it. 0, -ENOMEM, or -EPIPE (the IO
 * thread's mailbox is closed). */
static int post_reply(const struct job *j, Ferry__AdminReply *r, int is_last)
{
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_ADMIN_REPLY;
    f.admin_reply = r;
    struct rmsg m;
    memset(&m, 0, sizeof(m));
    m.kind = R_BACKUP;
    m.conn_ref = j->conn_ref;
    m.body_off = j->gen;
    m.n_ids = is_last ? 1u : 0u;
    if (codec_frame_encode_alloc(&f, &m.u.raw.buf, &m.u.raw.len) < 0) {
        return -ENOMEM;
    }
    /* Blocking is safe: IO threads never wait for this thread. */
    if (mbox_post(j->b->srv->iot_in[CONN_REF_IOT(j->conn_ref)], &m, 1) < 0) {
        free(m.u.raw.buf);
        return -EPIPE;
    }
    return 0;
}

/* Free the slot of the job's backup if it still holds it. Done before its
 * last reply is posted, so that a client which has that reply may start
 * the next backup at once; the thread, still finishing, is joined by the
 * next backup_begin() or by backup_stop(). */
static void slot_free(const struct job *j)
{
    struct backup *b = j->b;
    pthread_mutex_lock(&b->mu);
    if (b->gen == j->gen && b->state == B_RUNNING) {
        b->state = B_IDLE;
        pthread_cond_broadcast(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
}

static void post_error(const struct job *j, Ferry__ErrorCode code, const char *text)
{
    slot_free(j);
    Ferry__AdminReply r = FERRY__ADMIN_REPLY__INIT;
    r.id = j->admin_id;
    r.code = code;
    r.text = (char *)text;
    if (post_reply(j, &r, 1) < 0) {
        log_warn("backup for %s: its error reply could not be queued (%s)", j->who, text);
    }
}

/* Start `ferryd --backup-child dir` with stdout and stderr on pipes (read
 * ends into *out_fd, *err_fd, close-on-exec). 0 or -errno. */
static int child_spawn(const char *dir, pid_t *pid, int *out_fd, int *err_fd)
{
    int out[2], errp[2];
    if (pipe2(out, O_CLOEXEC) < 0) {
        return -errno;
    }
    if (pipe2(errp, O_CLOEXEC) < 0) {
        int e = errno;
        close(out[0]);
        close(out[1]);
        return -e;
    }
    (void)fcntl(out[0], F_SETPIPE_SZ, PIPE_SIZE); /* fewer, larger reads; best effort */
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
    posix_spawnattr_init(&at);
    /* ferryd blocks SIGTERM, SIGINT and SIGHUP in every thread (main takes
     * them with sigwaitinfo): the child must not inherit that mask. */
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGTERM);
    sigaddset(&dfl, SIGINT);
    sigaddset(&dfl, SIGHUP);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dfl);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    char *argv[] = {(char *)"ferryd", (char *)"--backup-child", (char *)dir, NULL};
    /* /proc/self/exe: this very binary, even if the file was replaced. */
    int rc = posix_spawn(pid, "/proc/self/exe", &fa, &at, argv, environ);
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    close(errp[1]);
    if (rc != 0) {
        close(out[0]);
        close(errp[0]);
        return -rc;
    }
    *out_fd = out[0];
    *err_fd = errp[0];
    return 0;
}

/* Wait for a credit (fewer than BACKUP_IN_FLIGHT chunks out) and take it.
 * Returns 0, or 1 when the backup was cancelled. */
static int credit_take(const struct job *j)
{
    struct backup *b = j->b;
    pthread_mutex_lock(&b->mu);
    while (!b->is_cancelled && b->in_flight >= BACKUP_IN_FLIGHT) {
        pthread_cond_wait(&b->cv, &b->mu);
    }
    int is_cancelled = b->is_cancelled;
    if (!is_cancelled) {
        b->in_flight++;
    }
    pthread_mutex_unlock(&b->mu);
    return is_cancelled;
}

static int is_cancelled(struct backup *b)
{
    pthread_mutex_lock(&b->mu);
    int c = b->is_cancelled;
    pthread_mutex_unlock(&b->mu);
    return c;
}

/* Fill buf (cap bytes) from fd, until it is full or the end. Returns the
 * bytes read (0: the end), -ECANCELED, or -errno. */
static ssize_t pipe_fill(struct backup *b, int fd, uint8_t *buf, size_t cap)
{
    size_t got = 0;
    while (got < cap) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, CANCEL_POLL_MS);
        if (n < 0 && errno != EINTR) {
            return -errno;
        }
        if (n <= 0) {
            if (is_cancelled(b)) {
                return -ECANCELED;
            }
            continue;
        }
        ssize_t r = read(fd, buf + got, cap - got);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (r == 0) {
            break;
        }
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* The child's error line (without its newline), or "". */
static void child_error(int fd, char *out, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = read(fd, out + n, cap - 1 - n);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            break;
        }
        n += (size_t)r;
    }
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r')) {
        n--;
    }
    out[n] = '\0';
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)out[i] < 0x20 || (unsigned char)out[i] >= 0x7f) {
            out[i] = '?'; /* it becomes a protocol string: UTF-8, printable */
        }
    }
}

/* Stream the child's output as chunks. Returns 0 at its end, -ECANCELED,
 * or -errno; *size and *crc cover what was sent. */
static int stream(const struct job *j, int fd, uint64_t *size, uint32_t *crc)
{
    uint8_t *buf = malloc(j->chunk);
    if (buf == NULL) {
        return -ENOMEM;
    }
    int rc = 0;
    for (;;) {
        if (credit_take(j)) {
            rc = -ECANCELED;
            break;
        }
        ssize_t n = pipe_fill(j->b, fd, buf, j->chunk);
        if (n <= 0) {
            rc = (int)n;
            break;
        }
        Ferry__BackupChunk ch = FERRY__BACKUP_CHUNK__INIT;
        ch.offset = *size;
        ch.data.data = buf;
        ch.data.len = (size_t)n;
        Ferry__AdminReply r = FERRY__ADMIN_REPLY__INIT;
        r.id = j->admin_id;
        r.backup_chunk = &ch;
        rc = post_reply(j, &r, 0);
        if (rc < 0) {
            break;
        }
        *crc = crc32c(*crc, buf, (size_t)n);
        *size += (size_t)n;
    }
    free(buf);
    return rc;
}

static void run(const struct job *j)
{
    struct server *srv = j->b->srv;
    uint64_t t0 = now_ms();
    pid_t pid = 0;
    int out_fd = -1, err_fd = -1;
    int rc = child_spawn(srv->cfg.data_dir, &pid, &out_fd, &err_fd);
    if (rc < 0) {
        log_error("backup for %s: cannot start the copying process: %s", j->who, strerror(-rc));
        post_error(j, FERRY__ERROR_CODE__ERROR_INTERNAL, "cannot start the copying process");
        return;
    }
    uint64_t size = 0;
    uint32_t crc = 0;
    rc = stream(j, out_fd, &size, &crc);
    close(out_fd); /* a child still writing ends with EPIPE */
    char why[CHILD_ERR_MAX];
    child_error(err_fd, why, sizeof(why));
    close(err_fd);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    int is_clean = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (!WIFEXITED(st)) {
        store_readers_check(srv->store); /* its reader slot, if it died holding one */
    }
    if (rc == -ECANCELED) {
        pthread_mutex_lock(&j->b->mu);
        int is_stop = j->b->is_stopping;
        pthread_mutex_unlock(&j->b->mu);
        log_warn("backup for %s: cancelled after %llu bytes (%s)", j->who, (unsigned long long)size,
                 is_stop ? "ferryd stops" : "the connection closed");
        if (is_stop) { /* backup_stop() runs while the IO threads still do */
            post_error(j, FERRY__ERROR_CODE__ERROR_SHUTTING_DOWN, "backup cancelled: ferryd stops");
        }
        return;
    }
    if (rc < 0 || !is_clean || size == 0) {
        char text[CHILD_ERR_MAX + 80];
        snprintf(text, sizeof(text), "backup failed: %s",
                 why[0]   ? why
                 : rc < 0 ? strerror(-rc)
                          : "the copying process ended without a copy");
        log_error("backup for %s: %s", j->who, text);
        post_error(j, FERRY__ERROR_CODE__ERROR_STORAGE_FAILED, text);
        return;
    }
    Ferry__BackupDone d = FERRY__BACKUP_DONE__INIT;
    d.file = (char *)"data.mdb";
    d.size = size;
    d.crc32c = crc;
    d.snapshot_time = j->snapshot_ns;
    Ferry__AdminReply r = FERRY__ADMIN_REPLY__INIT;
    r.id = j->admin_id;
    r.backup_done = &d;
    slot_free(j);
    if (post_reply(j, &r, 1) < 0) {
        log_warn("backup for %s: its last reply could not be queued", j->who);
        return;
    }
    uint64_t ms = now_ms() - t0;
    log_info("backup for %s: %llu bytes in %llu ms (%.1f MB/s), CRC-32C %08x", j->who,
             (unsigned long long)size, (unsigned long long)ms,
             ms ? (double)size / 1e3 / (double)ms : 0.0, crc);
}

static void *backup_main(void *arg)
{
    struct backup *b = arg;
    struct job j = {.b = b};
    pthread_mutex_lock(&b->mu);
    j.gen = b->gen;
    j.conn_ref = b->conn_ref;
    j.admin_id = b->admin_id;
    j.chunk = b->chunk;
    j.snapshot_ns = b->snapshot_ns;
    memcpy(j.who, b->who, sizeof(j.who));
    pthread_mutex_unlock(&b->mu);
    /* This thread's niceness only (Linux: per thread); the child inherits it. */
    (void)setpriority(PRIO_PROCESS, (id_t)gettid(), BACKUP_NICE);
    log_info("backup for %s: copying the store", j.who);
    run(&j);
    slot_free(&j); /* a cancelled backup posts nothing */
    return NULL;
}

void backup_begin(struct backup *b)
{
    pthread_mutex_lock(&b->mu);
    if (b->state != B_CLAIMED) {
        pthread_mutex_unlock(&b->mu); /* not ours to start (cannot happen) */
        return;
    }
    /* The previous backup's thread has freed the slot: it has at most its
     * last reply to post, and IO threads, which take that post, never wait
     * for the writer, which runs this. */
    if (b->has_thread) {
        pthread_t prev = b->thread;
        b->has_thread = 0;
        pthread_mutex_unlock(&b->mu); /* its slot_free() takes mu */
        pthread_join(prev, NULL);
        pthread_mutex_lock(&b->mu); /* still B_CLAIMED: only this thread moves it on */
    }
    /* Every PubAck the writer sent so far is for a message now committed
     * (the writer acks from its own thread, and committed before this). */
    b->snapshot_ns = now_realtime_ns();
    struct job j = {.b = b, .gen = b->gen, .conn_ref = b->conn_ref, .admin_id = b->admin_id};
    memcpy(j.who, b->who, sizeof(j.who));
    const char *why = NULL;
    Ferry__ErrorCode code = FERRY__ERROR_CODE__ERROR_INTERNAL;
    if (b->is_stopping || b->is_cancelled) {
        why = b->is_stopping ? "backup cancelled: ferryd stops" : NULL;
        code = FERRY__ERROR_CODE__ERROR_SHUTTING_DOWN;
    } else {
        int rc = pthread_create(&b->thread, NULL, backup_main, b);
        if (rc == 0) {
            b->state = B_RUNNING;
            b->has_thread = 1;
            pthread_mutex_unlock(&b->mu);
            return;
        }
        why = "cannot start the backup thread";
        log_error("backup for %s: %s: %s", b->who, why, strerror(rc));
    }
    b->state = B_IDLE;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    if (why != NULL) {
        post_error(&j, code, why);
    }
}

void backup_stop(struct backup *b)
{
    if (b == NULL) {
        return;
    }
    pthread_mutex_lock(&b->mu);
    b->is_stopping = 1;
    b->is_cancelled = 1;
    pthread_cond_broadcast(&b->cv);
    while (b->state == B_RUNNING) {
        pthread_cond_wait(&b->cv, &b->mu);
    }
    int has_thread = b->has_thread;
    b->has_thread = 0;
    pthread_mutex_unlock(&b->mu);
    if (has_thread) {
        pthread_join(b->thread, NULL);
    }
}

/* ---- the copying process ----------------------------------------------- */

int backup_child_main(const char *dir)
{
    char err[512] = "";
    struct store *s;
    /* A reader that went away (the backup cancelled) is an error to
     * report, not a signal that kills us with our reader slot held. */
    signal(SIGPIPE, SIG_IGN);
    int rc = store_open_readonly(dir, &s, err, sizeof(err));
    if (rc == 0) {
        rc = store_copy(s, STDOUT_FILENO, err, sizeof(err));
        store_close(s);
    }
    if (rc != 0) {
        fprintf(stderr, "%s\n", err[0] ? err : server_strerror(rc));
        return 1;
    }
    return 0;
}

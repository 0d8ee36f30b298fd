/*
 * cmd_backup.c - `ferry backup DIR`: a hot backup of the broker's store
 * into a new directory, and `ferry backup --check DIR` to check one later.
 *
 * The copy comes through ferry_admin_backup() (event-loop mode: its
 * callback runs in this thread) into DIR/data.mdb.partial, which is synced,
 * read back and checked against the broker's size and CRC-32C, and only
 * then renamed to data.mdb; the manifest DIR/BACKUP (written the same way)
 * records the file's size and CRC-32C, the broker and the snapshot's time.
 * So a directory with data.mdb in it holds a complete, checked copy: start
 * a broker on it with `ferryd --data-dir DIR`.
 */
#include "cli.h"
#include "cli_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BACKUP_TIMEOUT_MS 60000 /* per answer of the broker, not the whole copy */
#define MANIFEST "BACKUP"
#define MANIFEST_FORMAT "ferry-backup 1"
#define READ_CHUNK (1u << 20)

static const char backup_help[] =
    "Usage: ferry backup [OPTIONS] DIR\n"
    "       ferry backup --check DIR\n"
    "\n"
    "Copy the broker's store into DIR (made in an existing directory, or empty)\n"
    "while the broker goes on serving. The copy holds every message and durable\n"
    "consumer position the broker acknowledged before the backup began; it is\n"
    "compacted (free space left out). DIR then holds data.mdb, the whole store,\n"
    "and BACKUP, a manifest with its size and CRC-32C: the file is synced, read\n"
    "back and checked against the broker's checksum before it gets its name.\n"
    "Start a broker on the copy with 'ferryd --data-dir DIR' (check it first\n"
    "with 'ferryd --verify DIR'). Needs the admin right; one backup runs at a\n"
    "time per broker.\n"
    "\n"
    "Options:\n"
    "      --check        do not copy: check DIR's files against its manifest\n"
    "                     (exit 0 when they match, 1 when not)\n"
    "  -t, --timeout DUR  give up when the broker sends nothing for DUR\n"
    "                     (default 60s); the whole copy may take longer\n"
    "\n"
    "Examples:\n"
    "  ferry backup /var/backups/ferry/$(date +%F)\n"
    "  ferry backup --check /var/backups/ferry/2026-11-29\n";

enum { OPT_CHECK = 0x100 };

struct backup_args {
    const char *cmd;
    bool check;
    uint64_t timeout_ns;
};

static int backup_opt(int opt, const char *arg, void *ctx)
{
    struct backup_args *a = ctx;
    switch (opt) {
    case OPT_CHECK:
        a->check = true;
        return -1;
    case 't':
        if (cli_parse_duration_ns(arg, &a->timeout_ns) < 0 || a->timeout_ns < 1000000 ||
            a->timeout_ns > 24ull * 3600 * 1000000000ull) {
            return cli_usage(a->cmd, "--timeout needs a duration from 1ms to 24h, not '%s'", arg);
        }
        return -1;
    default:
        return cli_usage(a->cmd, "unexpected option");
    }
}

/* Size and CRC-32C of the file at path: 0, or -errno. */
static int file_crc(const char *path, uint64_t *size, uint32_t *crc)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    uint8_t *buf = malloc(READ_CHUNK);
    if (buf == NULL) {
        close(fd);
        return -ENOMEM;
    }
    uint64_t n = 0;
    uint32_t c = 0;
    int rc = 0;
    for (;;) {
        ssize_t r = read(fd, buf, READ_CHUNK);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            rc = -errno;
            break;
        }
        if (r == 0) {
            break;
        }
        c = ferry_crc32c(c, buf, (size_t)r);
        n += (uint64_t)r;
    }
    free(buf);
    close(fd);
    if (rc == 0) {
        *size = n;
        *crc = c;
    }
    return rc;
}

/* ---- --check ----------------------------------------------------------- */

static int check_dir(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, MANIFEST);
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        cli_err("backup --check: %s: %s", path, strerror(errno));
        return CLI_EXIT_ERROR;
    }
    char line[1024];
    int n_files = 0, n_bad = 0, has_format = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (strcmp(line, MANIFEST_FORMAT) == 0) {
            has_format = 1;
            continue;
        }
        char name[256];
        unsigned long long want_size;
        unsigned want_crc;
        if (sscanf(line, "file %255s size %llu crc32c %x", name, &want_size, &want_crc) != 3) {
            continue; /* comments, and what this version does not check */
        }
        n_files++;
        if (strchr(name, '/') != NULL) {
            cli_err("backup --check: %s: file name '%s' is not a plain name", path, name);
            n_bad++;
            continue;
        }
        char fpath[4096 + 256];
        snprintf(fpath, sizeof(fpath), "%s/%s", dir, name);
        uint64_t size;
        uint32_t crc;
        int rc = file_crc(fpath, &size, &crc);
        if (rc < 0) {
            cli_err("backup --check: %s: %s", fpath, strerror(-rc));
            n_bad++;
        } else if (size != want_size || crc != want_crc) {
            cli_err("backup --check: %s: %" PRIu64 " bytes, CRC-32C %08x; the manifest says %llu "
                    "bytes, %08x",
                    fpath, size, crc, want_size, want_crc);
            n_bad++;
        } else {
            printf("%s: %" PRIu64 " bytes, CRC-32C %08x: OK\n", fpath, size, crc);
        }
    }
    fclose(f);
    if (!has_format || n_files == 0) {
        cli_err("backup --check: %s is not a ferry backup manifest", path);
        return CLI_EXIT_ERROR;
    }
    return n_bad == 0 && fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR;
}

/* ---- the copy ---------------------------------------------------------- */

struct sink {
    int fd;
    int err; /* -errno of a failed write */
};

static int on_piece(ferry_client *c, uint64_t offset, const void *data, size_t len, void *ud)
{
    (void)c;
    struct sink *s = ud;
    if (cli_interrupted) {
        return -EINTR;
    }
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = pwrite(s->fd, p, len, (off_t)offset);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            s->err = -errno;
            return s->err;
        }
        p += n;
        len -= (size_t)n;
        offset += (uint64_t)n;
    }
    return 0;
}

/* DIR made (0700) or found empty: 0 (*made: we made it), or an exit
 * status (printed). */
static int dir_prepare(const char *dir, bool *made)
{
    *made = false;
    if (mkdir(dir, 0700) == 0) {
        *made = true;
        return 0;
    }
    if (errno != EEXIST) {
        cli_err("backup: cannot create %s: %s", dir, strerror(errno));
        return CLI_EXIT_ERROR;
    }
    DIR *d = opendir(dir);
    if (d == NULL) {
        cli_err("backup: %s: %s", dir, strerror(errno));
        return CLI_EXIT_ERROR;
    }
    struct dirent *de;
    int is_empty = 1;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            is_empty = 0;
            break;
        }
    }
    closedir(d);
    if (!is_empty) {
        cli_err("backup: %s is not empty; give a new directory", dir);
        return CLI_EXIT_ERROR;
    }
    return 0;
}

static int dir_sync(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

/* The manifest, through a .partial file renamed into place. 0 or -errno. */
static int manifest_write(const char *dir, const ferry_backup_result *r, const char *server,
                          const ferry_server_info *si)
{
    struct cli_buf b = {0};
    cli_buf_adds(&b, "# A ferry backup: data.mdb is the whole store; start a broker on it with\n"
                     "# `ferryd --data-dir DIR`. Check the files with `ferry backup --check "
                     "DIR`.\n" MANIFEST_FORMAT "\n");
    cli_buf_addf(&b, "server %s\nserver_id %s\nserver_version %s\nsnapshot_time ", server,
                 si->server_id, si->server_version);
    cli_buf_time_rfc3339(&b, r->snapshot_time);
    cli_buf_addf(&b, "\nsnapshot_time_ns %lld\nfile %s size %" PRIu64 " crc32c %08x\n",
                 (long long)r->snapshot_time, r->file, r->size, r->crc32c);
    char tmp[4096], path[4096];
    snprintf(tmp, sizeof(tmp), "%s/%s.partial", dir, MANIFEST);
    snprintf(path, sizeof(path), "%s/%s", dir, MANIFEST);
    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
    } else {
        if (write(fd, b.data, b.len) != (ssize_t)b.len || fsync(fd) != 0) {
            rc = -(errno ? errno : EIO);
        }
        close(fd);
        if (rc == 0 && rename(tmp, path) != 0) {
            rc = -errno;
        }
        if (rc != 0) {
            unlink(tmp);
        }
    }
    cli_buf_free(&b);
    return rc;
}

/* Sync, read back and check the copy, then give it its name. 0, or an
 * exit status (printed). */
static int finish(const char *dir, const char *partial, int fd, const ferry_backup_result *r)
{
    if (fsync(fd) != 0) {
        cli_err("backup: %s: %s", partial, strerror(errno));
        return CLI_EXIT_ERROR;
    }
    uint64_t size;
    uint32_t crc;
    int rc = file_crc(partial, &size, &crc);
    if (rc < 0) {
        cli_err("backup: reading %s back: %s", partial, strerror(-rc));
        return CLI_EXIT_ERROR;
    }
    if (size != r->size || crc != r->crc32c) {
        cli_err("backup: %s holds %" PRIu64 " bytes with CRC-32C %08x, the broker sent %" PRIu64
                " with %08x",
                partial, size, crc, r->size, r->crc32c);
        return CLI_EXIT_ERROR;
    }
    if (strcmp(r->file, "data.mdb") != 0) {
        cli_err("backup: the broker names its file '%s'; this ferry knows data.mdb only", r->file);
        return CLI_EXIT_ERROR;
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, r->file);
    if (rename(partial, path) != 0) {
        cli_err("backup: %s: %s", path, strerror(errno));
        return CLI_EXIT_ERROR;
    }
    return 0;
}

int cmd_backup(struct cli_opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_COMMON_LONGOPTS,
        {"check", no_argument, NULL, OPT_CHECK},
        {"timeout", required_argument, NULL, 't'},
        {NULL, 0, NULL, 0},
    };
    struct backup_args a = {.cmd = o->cmd, .timeout_ns = BACKUP_TIMEOUT_MS * 1000000ull};
    int first;
    int rc = cli_getopt(o, argc, argv, "t:", longopts, backup_help, backup_opt, &a, &first);
    if (rc != -1) {
        return rc;
    }
    if (argc - first != 1) {
        return cli_usage(o->cmd, argc - first < 1 ? "missing DIR" : "too many arguments");
    }
    const char *dir = argv[first];
    if (strlen(dir) > 3000) {
        return cli_usage(o->cmd, "DIR is too long");
    }
    if (a.check) {
        return check_dir(dir);
    }
    static struct cli_conn_cfg cfg = {
        .name = "ferry backup",
        .thread_mode = false,
        .reconnect_attempts = -1,
        .quiet_events = true,
    };
    cli_opts_finish(o);
    bool made;
    int status = dir_prepare(dir, &made);
    if (status != 0) {
        return status;
    }
    char partial[4096];
    snprintf(partial, sizeof(partial), "%s/data.mdb.partial", dir);
    struct sink s = {.fd = open(partial, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)};
    ferry_client *c = NULL;
    if (s.fd < 0) {
        cli_err("backup: %s: %s", partial, strerror(errno));
        status = CLI_EXIT_ERROR;
        goto out_dir;
    }
    if (cli_connect(o, &cfg, &c) < 0) {
        status = CLI_EXIT_ERROR;
        goto out_file;
    }
    uint64_t t0 = cli_now_mono_ns();
    ferry_backup_result r;
    rc = ferry_admin_backup(c, on_piece, &s, (int)(a.timeout_ns / 1000000u), &r);
    if (rc == -EINTR && cli_interrupted) {
        cli_err("backup: interrupted; nothing kept");
        status = cli_interrupt_status();
        goto out_client;
    }
    if (rc < 0) {
        if (s.err < 0) {
            cli_err("backup: writing %s: %s", partial, strerror(-s.err));
        } else {
            cli_fail(c, rc, "backup from %s", o->server);
        }
        status = CLI_EXIT_ERROR;
        goto out_client;
    }
    status = finish(dir, partial, s.fd, &r);
    if (status != 0) {
        goto out_client;
    }
    ferry_server_info si;
    if (ferry_client_server_info(c, &si) != 0) {
        memset(&si, 0, sizeof(si));
    }
    rc = manifest_write(dir, &r, o->server, &si);
    if (rc == 0) {
        rc = dir_sync(dir);
    }
    if (rc < 0) {
        cli_err("backup: %s/%s: %s", dir, MANIFEST, strerror(-rc));
        status = CLI_EXIT_ERROR;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, r.file);
        unlink(path);
        goto out_client;
    }
    double secs = (double)(cli_now_mono_ns() - t0) / 1e9;
    struct cli_buf b = {0};
    cli_buf_addf(&b, "%s/%s: %" PRIu64 " bytes, CRC-32C %08x (checked), from %s in %.2f s", dir,
                 r.file, r.size, r.crc32c, o->server, secs);
    if (secs > 0) {
        cli_buf_addf(&b, " (%.1f MB/s)", (double)r.size / 1e6 / secs);
    }
    cli_buf_adds(&b, "; snapshot of ");
    cli_buf_time_rfc3339(&b, r.snapshot_time);
    cli_buf_adds(&b, "\n");
    fwrite(b.data, 1, b.len, stdout);
    cli_buf_free(&b);
    status = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR;
    ferry_client_close(c, 1000);
    ferry_client_destroy(c);
    close(s.fd);
    return status;

out_client:
    ferry_client_close(c, 0);
    ferry_client_destroy(c);
out_file:
    close(s.fd);
    unlink(partial);
out_dir:
    if (made) {
        rmdir(dir);
    }
    return status;
}

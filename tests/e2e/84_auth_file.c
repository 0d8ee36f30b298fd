/*
 * 84_auth_file.c - the auth file's strictness end to end (issue 14, item
 * 4): hashes of methods auth.h does not list ($gy$, $7$) and truncated ones
 * stop ferryd at start and are refused on SIGHUP (the current users stay);
 * a world-writable file likewise, at start and on SIGHUP; a bcrypt user's
 * 72-byte password plus a suffix does not log in; `ferry passwd` refuses
 * an empty password and a bcrypt one over 72 bytes.
 */
#include "cli_spawn.h"
#include "auth_e2e.h"
#include "e2e_util.h"

#include <crypt.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef FERRY_CLI_PATH
#error "FERRY_CLI_PATH must name the ferry binary"
#endif

Suite *test_suite(void);

static struct e2e_auth_dir ad;

/* alice (password "alice", SHA-512 crypt), then extra; mode 0600; written
 * atomically (rename). */
static void write_auth(const char *extra, mode_t mode)
{
    static char *h_alice;
    if (h_alice == NULL) {
        h_alice = e2e_hash("alice", "$6$", 1000);
    }
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.tmp", ad.path);
    FILE *f = fopen(tmp, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "user alice %s\nallow alice subscribe a.>\n%s", h_alice, extra);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(chmod(tmp, mode), 0);
    ck_assert_int_eq(rename(tmp, ad.path), 0);
}

static void setup(void)
{
    e2e_auth_dir_make(&ad, "authf");
    write_auth("", 0600);
}

static void teardown(void)
{
    e2e_auth_dir_remove(&ad);
}

/* Log in; returns 0 (Connected) or the Error's code. */
static int login(int port, const char *user, const char *pw)
{
    struct rawc c;
    ck_assert_int_eq(rawc_open(&c, port), 0);
    Ferry__Connect m = FERRY__CONNECT__INIT;
    m.protocol_version = 1;
    m.client_name = (char *)"e2e auth file";
    m.username = (char *)user;
    m.password = (char *)pw;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_CONNECT;
    f.connect = &m;
    ck_assert_int_eq(rawc_send(&c, &f), 0);
    Ferry__Frame *r;
    ck_assert_int_eq(rawc_recv(&c, T_WAIT, &r), 0);
    int code = r->body_case == FERRY__FRAME__BODY_CONNECTED ? 0 : (int)r->error->code;
    rawc_close(&c);
    return code;
}

/* Does ferryd refuse to start with the auth file as it is? */
static void start_refused(void)
{
    struct ferryd_proc d;
    const char *const args[] = {"--auth-file", ad.path, NULL};
    int rc = ferryd_start(&d, NULL, args);
    if (rc == 0) {
        ferryd_stop(&d);
    }
    ck_assert_int_eq(rc, -ECHILD);
}

/* SIGHUP ferryd and wait until it has read the auth file (closed it after
 * reading: inotify), so that what it decided is in force. */
static void sighup_read(pid_t pid)
{
    int fd = inotify_init1(IN_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_ge(inotify_add_watch(fd, ad.dir, IN_CLOSE_NOWRITE), 0);
    ck_assert_int_eq(kill(pid, SIGHUP), 0);
    long long deadline = e2e_ms_now() + T_WAIT;
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        int left = (int)(deadline - e2e_ms_now());
        ck_assert_msg(left > 0 && poll(&p, 1, left) == 1, "ferryd did not read the auth file");
        char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
        ssize_t n = read(fd, buf, sizeof(buf));
        ck_assert_int_gt(n, 0);
        for (char *q = buf; q < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)q;
            if (ev->len > 0 && strcmp(ev->name, "auth") == 0) {
                close(fd);
                return;
            }
            q += sizeof(*ev) + ev->len;
        }
    }
}

/* Log in as user until it works (a reload is applied by the IO threads a
 * moment after it is read); fail after T_WAIT. */
static void login_eventually(int port, const char *user, const char *pw)
{
    long long deadline = e2e_ms_now() + T_WAIT;
    int code;
    while ((code = login(port, user, pw)) != 0 && e2e_ms_now() < deadline) {
    }
    ck_assert_int_eq(code, 0);
}

/* Lines that load on the landed main but must not: a user with a hash of
 * an unlisted method, or one cut short. */
static char *bad_lines(void)
{
    char *gy = e2e_hash("eve", "$gy$", 0), *s7 = e2e_hash("eve", "$7$", 0);
    char *y = e2e_hash("eve", "$y$", 0);
    *strrchr(y, '$') = '\0'; /* the yescrypt salt, without the hash */
    static const char *const names[] = {"gy", "scrypt", "sha", "ysalt"};
    const char *hashes[] = {gy, s7, "$6$", y};
    char *out = NULL;
    ck_assert_int_ge(asprintf(&out, "user %s %s\n", names[0], hashes[0]), 0);
    for (int i = 1; i < 4; i++) {
        char *next = NULL;
        ck_assert_int_ge(asprintf(&next, "%suser %s %s\n", out, names[i], hashes[i]), 0);
        free(out);
        out = next;
    }
    free(gy);
    free(s7);
    free(y);
    return out;
}

START_TEST(test_start_refuses_unlisted_and_truncated_hashes)
{
    char *all = bad_lines();
    /* each line alone stops the start */
    for (char *line = all, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        char one[512];
        snprintf(one, sizeof(one), "%.*s\n", (int)(nl - line), line);
        write_auth(one, 0600);
        start_refused();
    }
    free(all);
    /* a world-writable file too */
    write_auth("", 0606);
    start_refused();
    /* the good file starts */
    write_auth("", 0600);
    struct ferryd_proc d;
    START(&d, "--auth-file", ad.path, NULL);
    ck_assert_int_eq(login(d.port, "alice", "alice"), 0);
    STOP(&d);
}
END_TEST

START_TEST(test_reload_refuses_bad_files_and_keeps_the_users)
{
    struct ferryd_proc d;
    START(&d, "--auth-file", ad.path, NULL);
    char *h_eve = e2e_hash("eve", "$6$", 1000), *extra = NULL;
    char *all = bad_lines();
    /* eve would be added by each bad file: she never gets in, and alice
     * (in every file) stays */
    ck_assert_int_ge(asprintf(&extra, "user eve %s\n%s", h_eve, all), 0);
    for (char *line = all, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        char one[1024];
        snprintf(one, sizeof(one), "user eve %s\n%.*s\n", h_eve, (int)(nl - line), line);
        write_auth(one, 0600);
        sighup_read(d.pid);
        ck_assert_int_eq(login(d.port, "eve", "eve"), FERRY__ERROR_CODE__ERROR_AUTH_FAILED);
        ck_assert_int_eq(login(d.port, "alice", "alice"), 0);
    }
    /* a good file with eve, but writable by every user: refused too */
    snprintf(extra, strlen(extra) + 1, "user eve %s\n", h_eve);
    write_auth(extra, 0666);
    sighup_read(d.pid);
    ck_assert_int_eq(login(d.port, "eve", "eve"), FERRY__ERROR_CODE__ERROR_AUTH_FAILED);
    /* the same file, chmod 600: eve gets in (the reloads did run) */
    write_auth(extra, 0600);
    sighup_read(d.pid);
    login_eventually(d.port, "eve", "eve");
    free(all);
    free(extra);
    free(h_eve);
    STOP(&d);
}
END_TEST

START_TEST(test_bcrypt_refuses_72_bytes_plus_suffix)
{
    char pw[96];
    memset(pw, 'k', 72);
    pw[72] = '\0';
    char *h = e2e_hash(pw, "$2b$", 4), *line = NULL;
    ck_assert_int_ge(asprintf(&line, "user bob %s\n", h), 0);
    write_auth(line, 0600);
    struct ferryd_proc d;
    START(&d, "--auth-file", ad.path, NULL);
    ck_assert_int_eq(login(d.port, "bob", pw), 0);
    strcat(pw, "anything");
    ck_assert_int_eq(login(d.port, "bob", pw), FERRY__ERROR_CODE__ERROR_AUTH_FAILED);
    STOP(&d);
    free(line);
    free(h);
}
END_TEST

/* Run `ferry passwd ARGS` with stdin in; returns its exit status, and its
 * standard output and error in out and err. */
static int passwd(const char *in, const char *const *args, char *out, char *err, size_t cap)
{
    const char *const env[] = {"FERRY_PASSWORD", "FERRY_TOKEN", "FERRY_SERVER", NULL};
    int fds[3];
    pid_t pid = cli_spawn(FERRY_CLI_PATH, NULL, args, env, fds);
    ck_assert_int_gt(pid, 0);
    ck_assert_int_eq(write(fds[0], in, strlen(in)), (ssize_t)strlen(in));
    close(fds[0]);
    char *bufs[2] = {out, err};
    for (int i = 0; i < 2; i++) {
        size_t len = 0;
        ssize_t n;
        while ((n = read(fds[1 + i], bufs[i] + len, cap - 1 - len)) > 0) {
            len += (size_t)n;
        }
        bufs[i][len] = '\0';
        close(fds[1 + i]);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

START_TEST(test_passwd_refuses_empty_and_long_bcrypt_passwords)
{
    char out[4096], err[4096];
    const char *const plain[] = {"passwd", NULL};
    const char *const bcrypt[] = {"passwd", "--method", "bcrypt", NULL};
    ck_assert_int_ne(passwd("\n", plain, out, err, sizeof(out)), 0);
    ck_assert_str_eq(out, "");
    ck_assert_msg(strstr(err, "empty password") != NULL, "stderr: %s", err);
    ck_assert_int_ne(passwd("\n", bcrypt, out, err, sizeof(out)), 0);
    char pw[100];
    memset(pw, 'k', 73);
    strcpy(pw + 73, "\n");
    ck_assert_int_ne(passwd(pw, bcrypt, out, err, sizeof(out)), 0);
    ck_assert_str_eq(out, "");
    ck_assert_msg(strstr(err, "72 bytes") != NULL, "stderr: %s", err);
    /* 72 bytes: a bcrypt hash that ferryd loads; 73 with yescrypt: fine */
    strcpy(pw + 72, "\n");
    ck_assert_int_eq(passwd(pw, bcrypt, out, err, sizeof(out)), 0);
    ck_assert_msg(strncmp(out, "$2b$", 4) == 0, "stdout: %s", out);
    memset(pw, 'k', 73);
    strcpy(pw + 73, "\n");
    ck_assert_int_eq(passwd(pw, plain, out, err, sizeof(out)), 0);
    ck_assert_msg(strncmp(out, "$y$", 3) == 0, "stdout: %s", out);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("auth_file");
    TCase *tc;
    tc = tcase_create("start_bad_hashes");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_start_refuses_unlisted_and_truncated_hashes);
    suite_add_tcase(s, tc);
    tc = tcase_create("reload_bad_files");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_reload_refuses_bad_files_and_keeps_the_users);
    suite_add_tcase(s, tc);
    tc = tcase_create("bcrypt_72");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_bcrypt_refuses_72_bytes_plus_suffix);
    suite_add_tcase(s, tc);
    tc = tcase_create("passwd_refusals");
    tcase_add_test(tc, test_passwd_refuses_empty_and_long_bcrypt_passwords);
    suite_add_tcase(s, tc);
    return s;
}

/*
 * 89_log_format.c - ferryd's log as text (the default) and as JSON
 * (--log-format json; issue 15, item 7).
 *
 * ferryd's log is its stderr. ferryd_start() leaves that connected to the
 * test's own stderr, so each case points its stderr at a file while ferryd
 * starts (the child inherits it) and restores it at once. Connections,
 * a protocol error and two SIGHUP reloads make lines from several threads,
 * one with quotes, a control character and invalid UTF-8 in it.
 * json_log_check.py (python3's json module: an independent parser) then
 * checks every JSON line; the text lines are matched with regex(3).
 */
#include "e2e_util.h"

#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PYTHON3_PATH
#error "PYTHON3_PATH must name python3"
#endif
#ifndef JSON_LOG_CHECK
#error "JSON_LOG_CHECK must name json_log_check.py"
#endif

Suite *test_suite(void);

struct logged {
    struct ferryd_proc d;
    char dir[64];  /* holds the log and the config file */
    char log[128]; /* ferryd's stderr */
    char conf[128];
};

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
}

/* The whole log so far, NUL-terminated and malloc'd. */
static char *read_log(const struct logged *l)
{
    FILE *f = fopen(l->log, "r");
    ck_assert_ptr_nonnull(f);
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* Start ferryd with the config file `conf_text` and args, its stderr in
 * l->log. */
static void start_logged(struct logged *l, const char *conf_text, const char *const *args)
{
    strcpy(l->dir, "/tmp/ferry-log-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(l->dir));
    snprintf(l->log, sizeof(l->log), "%s/stderr", l->dir);
    snprintf(l->conf, sizeof(l->conf), "%s/ferryd.conf", l->dir);
    write_text(l->conf, conf_text);
    const char *argv[16] = {"--config", l->conf};
    size_t n = 2;
    for (size_t i = 0; args[i] != NULL && n < 15; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    int fd = open(l->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    int saved = dup(STDERR_FILENO);
    ck_assert_int_ge(saved, 0);
    ck_assert_int_eq(dup2(fd, STDERR_FILENO), STDERR_FILENO); /* without O_CLOEXEC: inherited */
    int rc = ferryd_start(&l->d, NULL, argv);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fd);
    ck_assert_msg(rc == 0, "ferryd_start: %s", strerror(-rc));
}

static void remove_logged(struct logged *l)
{
    unlink(l->log);
    unlink(l->conf);
    rmdir(l->dir);
}

/* Wait until the log contains needle (ferryd writes each line at once). */
static void wait_for_line(const struct logged *l, const char *needle)
{
    for (int i = 0; i < T_WAIT / 10; i++) {
        char *text = read_log(l);
        int found = strstr(text, needle) != NULL;
        free(text);
        if (found) {
            return;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    char *text = read_log(l);
    ck_abort_msg("no log line with \"%s\" in:\n%s", needle, text);
}

/* Events on connections: a client that publishes, subscribes and leaves;
 * one that sends a frame that does not decode (closed with a protocol
 * error). */
static void make_connection_events(const struct ferryd_proc *d)
{
    struct rawc c;
    CONNECT(&c, d->port);
    ck_assert_int_eq(rawc_subscribe(&c, 1, "log.>", NULL), 0);
    ck_assert_int_eq(rawc_publish(&c, 1, "log.a", "x", 1, 1), 0);
    ck_assert_int_eq(rawc_ping(&c, 7, T_WAIT), 0);
    rawc_close(&c);
    struct rawc bad;
    CONNECT(&bad, d->port);
    const unsigned char junk[] = {0, 0, 0, 3, 0xff, 0xff, 0xff};
    ck_assert_int_eq(rawc_send_raw(&bad, junk, sizeof(junk)), 0);
    ck_assert_int_eq(rawc_wait_closed(&bad, T_WAIT, NULL), 0);
    rawc_close(&bad);
}

/* Two reloads: the first finds log_format changed (kept: start only), the
 * second an unknown key made of a quote, a control character and a byte
 * that is not UTF-8, which the error line quotes back. */
static void make_reload_events(struct logged *l, const char *other_format)
{
    char conf[128];
    snprintf(conf, sizeof(conf), "log_level debug\nlog_format %s\n", other_format);
    write_text(l->conf, conf);
    ck_assert_int_eq(kill(l->d.pid, SIGHUP), 0);
    wait_for_line(l, "is read at start only");
    write_text(l->conf, "log_level debug\nw\"eird\x01\xff value\n");
    ck_assert_int_eq(kill(l->d.pid, SIGHUP), 0);
    wait_for_line(l, "keeping the current settings");
}

START_TEST(json_lines_parse_with_the_expected_keys)
{
    struct logged l;
    const char *const args[] = {"--log-format", "json", "--io-threads", "1", NULL};
    start_logged(&l, "log_level debug\n", args);
    make_connection_events(&l.d);
    make_reload_events(&l, "text");
    STOP(&l.d);

    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "%s %s %s --client --thread main --thread io0 --msg 'shutting down' "
             "--msg 'closing: ' --msg 'unknown key \"w\"eird\x01\xef\xbf\xbd\"' 2>&1",
             PYTHON3_PATH, JSON_LOG_CHECK, l.log);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    char out[4096];
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    char *text = read_log(&l);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "json_log_check: %s\nthe log:\n%s", out,
                  text);
    fprintf(stderr, "json_log_check: %s", out);
    free(text);
    remove_logged(&l);
}
END_TEST

/* Every line of the default format: "TIME ferryd[PID] LEVEL text", and a
 * connection's event says "client ID HOST:PORT: " first, as ever. */
START_TEST(text_lines_keep_their_format)
{
    struct logged l;
    const char *const args[] = {"--io-threads", "1", NULL};
    start_logged(&l, "log_level debug\n", args);
    make_connection_events(&l.d);
    make_reload_events(&l, "json");
    STOP(&l.d);

    regex_t line, conn;
    ck_assert_int_eq(regcomp(&line,
                             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                             "ferryd\\[[0-9]+\\] (error|warn |info |debug) [^ ]",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    ck_assert_int_eq(regcomp(&conn, " client [0-9]+ 127\\.0\\.0\\.1:[0-9]+: (closing|accepted)",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    char *text = read_log(&l);
    int n_lines = 0, n_conn = 0;
    for (char *s = text, *nl; (nl = strchr(s, '\n')) != NULL; s = nl + 1) {
        *nl = '\0';
        ck_assert_msg(regexec(&line, s, 0, NULL, 0) == 0, "not a text log line: %s", s);
        ck_assert_msg(s[0] != '{', "a JSON line in the text log: %s", s);
        n_conn += regexec(&conn, s, 0, NULL, 0) == 0;
        n_lines++;
    }
    ck_assert_int_gt(n_lines, 5);
    ck_assert_int_ge(n_conn, 2); /* accepted (debug) and closing (protocol error) */
    regfree(&line);
    regfree(&conn);
    free(text);
    remove_logged(&l);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("e2e_log_format");
    TCase *t = tcase_create("json_lines_parse_with_the_expected_keys");
    tcase_add_test(t, json_lines_parse_with_the_expected_keys);
    tcase_set_timeout(t, 60);
    suite_add_tcase(s, t);
    t = tcase_create("text_lines_keep_their_format");
    tcase_add_test(t, text_lines_keep_their_format);
    tcase_set_timeout(t, 60);
    suite_add_tcase(s, t);
    return s;
}

/*
 * cli_e2e.c - the helpers of the `ferry` tool's end-to-end tests
 * (cli_e2e.h).
 */
#include "cli_e2e.h"

#include "cli_spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct ferryd_proc broker;
char server[64];

long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void broker_up(void)
{
    ck_assert_int_eq(ferryd_start(&broker, NULL, NULL), 0);
    snprintf(server, sizeof(server), "127.0.0.1:%d", broker.port);
}

void broker_down(void)
{
    if (broker.pid) {
        ferryd_stop(&broker);
    }
}

/* ---- running the CLI ---------------------------------------------------- */

/* Start ferry with argv (NULL-terminated, without argv[0]); -s is added. */
void proc_start(struct proc *p, const char *const *args)
{
    const char *const pre[] = {"-s", server, NULL};
    int fds[3];
    pid_t pid = cli_spawn(FERRY_CLI_PATH, pre, args, NULL, fds);
    ck_assert_int_gt(pid, 0);
    memset(p, 0, sizeof(*p));
    p->pid = pid;
    p->in = fds[0];
    p->out = fds[1];
    p->err = fds[2];
    p->status = -1;
    fcntl(p->out, F_SETFL, O_NONBLOCK);
    fcntl(p->err, F_SETFL, O_NONBLOCK);
}

static void append(char **buf, size_t *len, const char *p, size_t n)
{
    *buf = realloc(*buf, *len + n + 1);
    ck_assert_ptr_nonnull(*buf);
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = '\0';
}

/* Read what is available on stdout/stderr, waiting up to wait_ms for some.
 * Returns 0 when both are at EOF, 1 otherwise. */
int proc_pump(struct proc *p, int wait_ms)
{
    struct pollfd fds[2] = {{.fd = p->out, .events = POLLIN}, {.fd = p->err, .events = POLLIN}};
    if (p->out < 0 && p->err < 0) {
        return 0;
    }
    int n = poll(fds, 2, wait_ms);
    if (n < 0 && errno != EINTR) {
        ck_abort_msg("poll: %s", strerror(errno));
    }
    char tmp[4096];
    int *fdp[2] = {&p->out, &p->err};
    char **bufs[2] = {&p->out_buf, &p->err_buf};
    size_t *lens[2] = {&p->out_len, &p->err_len};
    for (int i = 0; i < 2; i++) {
        if (*fdp[i] < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) {
            continue;
        }
        ssize_t r = read(*fdp[i], tmp, sizeof(tmp));
        if (r > 0) {
            append(bufs[i], lens[i], tmp, (size_t)r);
        } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
            close(*fdp[i]);
            *fdp[i] = -1;
        }
    }
    return (p->out >= 0 || p->err >= 0) ? 1 : 0;
}

/* Wait until stderr (or stdout) contains needle. */
int proc_wait_for(struct proc *p, bool on_stderr, const char *needle, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    for (;;) {
        const char *buf = on_stderr ? p->err_buf : p->out_buf;
        if (buf && strstr(buf, needle)) {
            return 0;
        }
        long long left = end - now_ms();
        if (left <= 0) {
            return -ETIMEDOUT;
        }
        if (proc_pump(p, (int)(left > 200 ? 200 : left)) == 0) {
            buf = on_stderr ? p->err_buf : p->out_buf;
            return buf && strstr(buf, needle) ? 0 : -EPIPE;
        }
    }
}

void proc_close_stdin(struct proc *p)
{
    if (p->in >= 0) {
        close(p->in);
        p->in = -1;
    }
}

/* Collect all output and the exit status; kill after timeout_ms. */
int proc_wait(struct proc *p, int timeout_ms)
{
    proc_close_stdin(p);
    long long end = now_ms() + timeout_ms;
    int status;
    for (;;) {
        proc_pump(p, 100);
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid) {
            break;
        }
        if (now_ms() > end) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &status, 0);
            ck_abort_msg("ferry did not exit in %d ms; stderr: %s", timeout_ms,
                         p->err_buf ? p->err_buf : "");
        }
    }
    while (proc_pump(p, 1000)) {
    }
    p->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return p->status;
}

void proc_free(struct proc *p)
{
    if (p->in >= 0) {
        close(p->in);
    }
    if (p->out >= 0) {
        close(p->out);
    }
    if (p->err >= 0) {
        close(p->err);
    }
    free(p->out_buf);
    free(p->err_buf);
    memset(p, 0, sizeof(*p));
}

/* Run to completion with optional stdin text; returns the exit status. */
int run(struct proc *p, const char *input, const char *const *args)
{
    proc_start(p, args);
    if (input) {
        size_t n = strlen(input);
        ck_assert_int_eq(write(p->in, input, n), (ssize_t)n);
    }
    return proc_wait(p, WAIT_MS);
}

/* Start `ferry sub --verbose ARGS...` and wait until it is subscribed. */
void sub_start(struct proc *p, const char *const *args)
{
    const char *argv[32];
    int n = 0;
    argv[n++] = "sub";
    argv[n++] = "--verbose";
    for (int i = 0; args[i]; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    proc_start(p, argv);
    int rc = proc_wait_for(p, true, "ferry: subscribed to", WAIT_MS);
    ck_assert_msg(rc == 0, "sub never reported its subscription (%d); stderr: %s", rc,
                  p->err_buf ? p->err_buf : "");
}

/* ---- a minimal JSON reader (objects, arrays, strings, numbers, literals) -- */

void jv_free(struct jv *v)
{
    free(v->str);
    for (size_t i = 0; i < v->n; i++) {
        jv_free(&v->items[i]);
        if (v->keys) {
            free(v->keys[i]);
        }
    }
    free(v->items);
    free(v->keys);
}

static const char *j_ws(const char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') {
        s++;
    }
    return s;
}

static const char *j_parse(const char *s, struct jv *out);

static const char *j_string(const char *s, char **out, size_t *out_len)
{
    if (*s != '"') {
        return NULL;
    }
    s++;
    char *buf = NULL;
    size_t len = 0;
    while (*s && *s != '"') {
        char c = *s++;
        if ((unsigned char)c < 0x20) {
            free(buf);
            return NULL; /* raw control characters are not allowed */
        }
        if (c == '\\') {
            char e = *s++;
            switch (e) {
            case '"':
                c = '"';
                break;
            case '\\':
                c = '\\';
                break;
            case '/':
                c = '/';
                break;
            case 'n':
                c = '\n';
                break;
            case 't':
                c = '\t';
                break;
            case 'r':
                c = '\r';
                break;
            case 'b':
                c = '\b';
                break;
            case 'f':
                c = '\f';
                break;
            case 'u': {
                unsigned v = 0;
                for (int k = 0; k < 4; k++) {
                    char h = *s++;
                    v <<= 4;
                    if (h >= '0' && h <= '9') {
                        v |= (unsigned)(h - '0');
                    } else if (h >= 'a' && h <= 'f') {
                        v |= (unsigned)(h - 'a' + 10);
                    } else if (h >= 'A' && h <= 'F') {
                        v |= (unsigned)(h - 'A' + 10);
                    } else {
                        free(buf);
                        return NULL;
                    }
                }
                if (v > 0x7f) {
                    free(buf);
                    return NULL; /* our writer escapes only control bytes */
                }
                c = (char)v;
                break;
            }
            default:
                free(buf);
                return NULL;
            }
        }
        append(&buf, &len, &c, 1);
    }
    if (*s != '"') {
        free(buf);
        return NULL;
    }
    if (!buf) {
        append(&buf, &len, "", 0);
    }
    *out = buf;
    *out_len = len;
    return s + 1;
}

static const char *j_parse(const char *s, struct jv *out)
{
    memset(out, 0, sizeof(*out));
    s = j_ws(s);
    if (*s == '{' || *s == '[') {
        int is_obj = *s == '{';
        char close = is_obj ? '}' : ']';
        out->type = is_obj ? J_OBJ : J_ARR;
        s = j_ws(s + 1);
        if (*s == close) {
            return s + 1;
        }
        for (;;) {
            out->items = realloc(out->items, (out->n + 1) * sizeof(*out->items));
            if (is_obj) {
                out->keys = realloc(out->keys, (out->n + 1) * sizeof(*out->keys));
                size_t kl;
                s = j_string(j_ws(s), &out->keys[out->n], &kl);
                if (!s) {
                    return NULL;
                }
                s = j_ws(s);
                if (*s++ != ':') {
                    free(out->keys[out->n]);
                    return NULL;
                }
            }
            s = j_parse(s, &out->items[out->n]);
            out->n++;
            if (!s) {
                return NULL;
            }
            s = j_ws(s);
            if (*s == ',') {
                s++;
                continue;
            }
            if (*s == close) {
                return s + 1;
            }
            return NULL;
        }
    }
    if (*s == '"') {
        out->type = J_STR;
        return j_string(s, &out->str, &out->str_len);
    }
    if (strncmp(s, "true", 4) == 0 || strncmp(s, "false", 5) == 0) {
        out->type = J_BOOL;
        out->boolean = *s == 't';
        return s + (*s == 't' ? 4 : 5);
    }
    if (strncmp(s, "null", 4) == 0) {
        out->type = J_NULL;
        return s + 4;
    }
    char *end;
    out->type = J_NUM;
    out->num = strtod(s, &end);
    return end == s ? NULL : end;
}

/* Parse one complete JSON text (trailing whitespace allowed). */
void json_parse(const char *text, struct jv *out)
{
    const char *end = j_parse(text, out);
    ck_assert_msg(end != NULL, "not JSON: %s", text);
    ck_assert_msg(*j_ws(end) == '\0', "trailing text after JSON: %s", end);
}

const struct jv *jget(const struct jv *o, const char *key)
{
    ck_assert_int_eq(o->type, J_OBJ);
    for (size_t i = 0; i < o->n; i++) {
        if (strcmp(o->keys[i], key) == 0) {
            return &o->items[i];
        }
    }
    return NULL;
}

const char *jstr(const struct jv *o, const char *key)
{
    const struct jv *v = jget(o, key);
    ck_assert_msg(v && v->type == J_STR, "member '%s' missing or not a string", key);
    return v->str;
}

double jnum(const struct jv *o, const char *key)
{
    const struct jv *v = jget(o, key);
    ck_assert_msg(v && v->type == J_NUM, "member '%s' missing or not a number", key);
    return v->num;
}

void cli_add_case(Suite *s, TCase *tc, const TTest *t)
{
    tcase_add_checked_fixture(tc, broker_up, broker_down);
    tcase_add_test(tc, t);
    suite_add_tcase(s, tc);
}

size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; s && *s; s++) {
        n += *s == '\n';
    }
    return n;
}

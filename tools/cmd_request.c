/*
 * cmd_request.c - `ferry request TOPIC MSG` and `ferry reply TOPIC CMD`:
 * request/reply from the command line, as `nats request` and `nats reply`.
 *
 * request: one ferry_request() in event-loop mode (the call drives the IO
 * while it waits), the answer's payload on stdout.
 *
 * reply: thread mode, a subscription without callback in the queue group
 * named after the topic (several repliers share the requests); each request
 * runs CMD through /bin/sh with the request's payload on stdin, and CMD's
 * stdout is published to the request's reply topic.
 */
#include "cli.h"
#include "cli_util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- ferry request ------------------------------------------------------ */

static const char request_help[] =
    "Usage: ferry request [OPTIONS] TOPIC MESSAGE\n"
    "\n"
    "Send MESSAGE to TOPIC as a request and print the first reply's payload.\n"
    "The reply comes to an inbox of this client (_INBOX.<id>.<n>): whoever\n"
    "answers publishes to the request's reply topic ('ferry reply' does).\n"
    "With an auth file, the user needs the rights to publish to TOPIC and to\n"
    "subscribe to _INBOX.>.\n"
    "\n"
    "Options:\n"
    "  -t, --timeout DUR     wait at most DUR for the reply (default 5s)\n"
    "\n"
    "Exit status 1 with 'no responders on TOPIC' when TOPIC is ephemeral and\n"
    "nothing subscribes to it (known at once), or with 'timed out' when no\n"
    "reply came in time (a request to a stored topic is stored whether or not\n"
    "anyone listens, so there it is a time-out).\n"
    "\n"
    "Examples:\n"
    "  ferry reply time.now date &\n"
    "  ferry request time.now ''\n"
    "  ferry request --timeout 500ms svc.upper hello\n";

struct request_args {
    const char *cmd;
    uint64_t timeout_ns;
};

static int request_opt(int opt, const char *arg, void *ctx)
{
    struct request_args *a = ctx;
    switch (opt) {
    case 't':
        if (cli_parse_duration_ns(arg, &a->timeout_ns) < 0 || a->timeout_ns < 1000000u) {
            return cli_usage(a->cmd,
                             "--timeout needs a duration of at least 1ms (10, 1.5s, 500ms), "
                             "not '%s'",
                             arg);
        }
        return -1;
    default:
        return cli_usage(a->cmd, "unexpected option");
    }
}

int cmd_request(struct cli_opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_COMMON_LONGOPTS,
        {"timeout", required_argument, NULL, 't'},
        {NULL, 0, NULL, 0},
    };
    struct request_args a = {.cmd = o->cmd, .timeout_ns = 5000000000u};
    int first;
    int rc = cli_getopt(o, argc, argv, "t:", longopts, request_help, request_opt, &a, &first);
    if (rc != -1) {
        return rc;
    }
    if (argc - first != 2) {
        return cli_usage(o->cmd,
                         argc - first < 2 ? "needs TOPIC and MESSAGE" : "too many arguments");
    }
    const char *topic = argv[first];
    const char *msg = argv[first + 1];
    uint64_t ms = a.timeout_ns / 1000000u;
    int timeout_ms = ms > INT_MAX ? INT_MAX : (int)ms;
    char dur[32];
    cli_fmt_duration_ns(dur, sizeof(dur), a.timeout_ns);

    cli_opts_finish(o);
    struct cli_conn_cfg cfg = {
        .name = "ferry request",
        .thread_mode = false,
        .reconnect_attempts = -1,
        .quiet_events = true,
    };
    ferry_client *c;
    if (cli_connect(o, &cfg, &c) < 0) {
        return CLI_EXIT_ERROR;
    }
    int status = CLI_EXIT_OK;
    ferry_msg *reply = NULL;
    rc = ferry_request(c, topic, msg, strlen(msg), timeout_ms, &reply);
    if (rc == FERRY_ENORESPONDERS) {
        cli_err("no responders on %s", topic);
        status = CLI_EXIT_ERROR;
    } else if (rc == -ETIMEDOUT) {
        cli_err("request to %s timed out: no reply within %s", topic, dur);
        status = CLI_EXIT_ERROR;
    } else if (rc == -EINVAL) {
        status = cli_usage(o->cmd, "'%s' is not a valid topic", topic);
    } else if (rc < 0) {
        status = cli_fail(c, rc, "request to %s", topic);
    } else {
        size_t len;
        const char *data = ferry_msg_data(reply, &len);
        bool nl = len == 0 || data[len - 1] != '\n';
        if (fwrite(data, 1, len, stdout) != len || (nl && fputc('\n', stdout) == EOF) ||
            fflush(stdout) != 0) {
            cli_err("writing to standard output: %s", strerror(errno));
            status = CLI_EXIT_ERROR;
        }
        ferry_msg_destroy(reply);
    }
    cli_close(c, 1000, false);
    return status;
}

/* ---- ferry reply -------------------------------------------------------- */

static const char reply_help[] =
    "Usage: ferry reply [OPTIONS] TOPIC COMMAND\n"
    "\n"
    "Answer the requests sent to TOPIC: for each one, run COMMAND with /bin/sh,\n"
    "the request's payload on its standard input, and publish what it writes to\n"
    "standard output as the reply. The subscription is in a queue group named\n"
    "after TOPIC (its dots made '_'), so several 'ferry reply' on one topic share\n"
    "the requests (each request is answered by one of them). A message without a reply topic (a "
    "plain\n"
    "publish) is skipped. COMMAND's standard error passes through; when it\n"
    "exits non-zero its output is still the reply, and a warning is printed.\n"
    "With an auth file, the user needs the rights to subscribe to TOPIC and to\n"
    "publish to _INBOX.> (where requesters wait for replies).\n"
    "\n"
    "Options:\n"
    "  -n, --count N         exit (status 0) after answering N requests\n"
    "  -v, --verbose         report on stderr when the subscription is active\n"
    "                        ('ferry: subscribed to TOPIC')\n"
    "\n"
    "Examples:\n"
    "  ferry reply svc.upper 'tr a-z A-Z' &\n"
    "  ferry request svc.upper hello          # prints HELLO\n"
    "  ferry reply --count 1 time.now date\n";

struct reply_args {
    const char *cmd;
    uint64_t count; /* 0: no limit */
    bool verbose;
};

static int reply_opt(int opt, const char *arg, void *ctx)
{
    struct reply_args *a = ctx;
    switch (opt) {
    case 'n':
        if (cli_parse_u64(arg, &a->count) < 0 || a->count == 0) {
            return cli_usage(a->cmd, "--count needs a whole number of at least 1, not '%s'", arg);
        }
        return -1;
    case 'v':
        a->verbose = true;
        return -1;
    default:
        return cli_usage(a->cmd, "unexpected option");
    }
}

/* Run cmd with /bin/sh -c, in[0..in_len) on its stdin, its stdout into out.
 * Returns its exit status (0..255, 128 + signal), or -errno if it could
 * not be run. stdin and stdout are served together (poll), so that a
 * command that writes before it has read everything cannot deadlock us. */
static int run_command(const char *cmd, const void *in, size_t in_len, struct cli_buf *out)
{
    int to_child[2], from_child[2];
    if (pipe2(to_child, O_CLOEXEC) < 0) {
        return -errno;
    }
    if (pipe2(from_child, O_CLOEXEC) < 0) {
        int err = -errno;
        close(to_child[0]);
        close(to_child[1]);
        return err;
    }
    pid_t pid = fork();
    if (pid < 0) {
        int err = -errno;
        close(to_child[0]);
        close(to_child[1]);
        close(from_child[0]);
        close(from_child[1]);
        return err;
    }
    if (pid == 0) {
        /* We ignore SIGPIPE (ferry.c); the command should not. */
        signal(SIGPIPE, SIG_DFL);
        if (dup2(to_child[0], STDIN_FILENO) < 0 || dup2(from_child[1], STDOUT_FILENO) < 0) {
            _exit(127);
        }
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(to_child[0]);
    close(from_child[1]);
    int wfd = to_child[1], rfd = from_child[0];
    /* A write that blocked on a full pipe while the command blocks on its
     * full stdout would wait forever: write only what fits. */
    (void)fcntl(wfd, F_SETFL, fcntl(wfd, F_GETFL) | O_NONBLOCK);
    size_t off = 0;
    if (in_len == 0) {
        close(wfd);
        wfd = -1;
    }
    while (rfd >= 0) {
        struct pollfd p[2] = {{rfd, POLLIN, 0}, {wfd, POLLOUT, 0}};
        if (poll(p, wfd >= 0 ? 2 : 1, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        if (wfd >= 0 && p[1].revents) {
            ssize_t n = write(wfd, (const char *)in + off, in_len - off);
            if (n > 0) {
                off += (size_t)n;
            }
            if ((n < 0 && errno != EINTR && errno != EAGAIN) || off == in_len) {
                close(wfd); /* done, or the command does not read (EPIPE) */
                wfd = -1;
            }
        }
        if (p[0].revents) {
            char buf[4096];
            ssize_t n = read(rfd, buf, sizeof(buf));
            if (n > 0) {
                cli_buf_add(out, buf, (size_t)n);
            } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
                close(rfd);
                rfd = -1;
            }
        }
    }
    if (wfd >= 0) {
        close(wfd);
    }
    if (rfd >= 0) {
        close(rfd);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) {
            return -errno;
        }
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int cmd_reply(struct cli_opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_COMMON_LONGOPTS,
        {"count", required_argument, NULL, 'n'},
        {"verbose", no_argument, NULL, 'v'},
        {NULL, 0, NULL, 0},
    };
    struct reply_args a = {.cmd = o->cmd};
    int first;
    int rc = cli_getopt(o, argc, argv, "n:v", longopts, reply_help, reply_opt, &a, &first);
    if (rc != -1) {
        return rc;
    }
    if (argc - first != 2) {
        return cli_usage(o->cmd,
                         argc - first < 2 ? "needs TOPIC and COMMAND" : "too many arguments");
    }
    const char *topic = argv[first];
    const char *command = argv[first + 1];
    if (strpbrk(topic, "*>") != NULL) {
        /* The group is named after the topic: one name, one topic. */
        return cli_usage(o->cmd, "TOPIC must be a topic, not a pattern: '%s'", topic);
    }

    cli_opts_finish(o);
    ferry_sub_options *so = NULL;
    ferry_client *c = NULL;
    ferry_sub *s = NULL;
    struct cli_buf out = {0};
    int status = CLI_EXIT_OK;
    rc = ferry_sub_options_create(&so);
    if (rc < 0) {
        return cli_fail(NULL, rc, "cannot create subscription options");
    }
    /* A group name is one token: the topic with '_' for '.'. (Groups are
     * per pattern, so two topics whose names fold alike do not mix.) */
    char group[256];
    snprintf(group, sizeof(group), "%s", topic);
    for (char *p = group; *p; p++) {
        *p = *p == '.' ? '_' : *p;
    }
    ferry_sub_options_set_queue_group(so, group);
    struct cli_conn_cfg cfg = {
        .name = "ferry reply",
        .thread_mode = true,
        .reconnect_attempts = 0, /* a server keeps trying, as a subscriber does */
        .window_blocks = true,
    };
    if (cli_connect(o, &cfg, &c) < 0) {
        status = CLI_EXIT_ERROR;
        goto out;
    }
    rc = ferry_subscribe(c, topic, so, NULL, NULL, CLI_CONNECT_TIMEOUT_MS, &s);
    if (rc < 0) {
        status = cli_fail(c, rc, "cannot subscribe to '%s'", topic);
        goto out;
    }
    if (a.verbose) {
        cli_err("subscribed to %s", topic);
    }
    uint64_t answered = 0;
    while (a.count == 0 || answered < a.count) {
        if (cli_interrupted) {
            status = cli_interrupt_status();
            break;
        }
        ferry_msg *m = NULL;
        rc = ferry_sub_next(s, 200, &m);
        if (rc == -ETIMEDOUT || rc == -EAGAIN) {
            continue;
        }
        if (rc < 0) {
            status = cli_fail(c, rc, "subscription to '%s' ended", topic);
            break;
        }
        const char *reply_to = ferry_msg_reply_to(m);
        if (reply_to[0] == '\0') {
            cli_err("message %" PRIu64 " on %s has no reply topic: skipped", ferry_msg_sequence(m),
                    topic);
            ferry_msg_destroy(m);
            continue;
        }
        size_t len;
        const void *data = ferry_msg_data(m, &len);
        out.len = 0;
        int st = run_command(command, data, len, &out);
        if (st < 0) {
            cli_err("cannot run '%s': %s", command, strerror(-st));
        } else if (st != 0) {
            cli_err("'%s' exited with status %d; its output is the reply", command, st);
        }
        rc = ferry_publish(c, reply_to, out.data, out.len);
        if (rc < 0) {
            cli_fail(c, rc, "cannot publish the reply to %s", reply_to);
        }
        ferry_msg_destroy(m);
        answered++;
    }

out:
    if (s) {
        ferry_unsubscribe(s);
    }
    if (c) {
        /* The replies are fire-and-forget: flush them before leaving. */
        int wait_ms = ferry_client_state(c) == FERRY_STATE_CONNECTED ? 5000 : 0;
        if (cli_close(c, wait_ms, true) < 0 && status == CLI_EXIT_OK && wait_ms > 0) {
            status = CLI_EXIT_ERROR;
        }
    }
    ferry_sub_options_destroy(so);
    cli_buf_free(&out);
    return status;
}

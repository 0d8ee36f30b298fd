/*
 * cli.h - what ferry.c shares with the subcommands (cmd_*.c): the common
 * options, connecting through libferry, and the interrupt flag.
 */
#ifndef FERRY_TOOLS_CLI_H
#define FERRY_TOOLS_CLI_H

#include "ferry.h"

#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#define CLI_DEFAULT_SERVER "127.0.0.1:7373"

/* Options every subcommand accepts (before or after its name). */
struct cli_opts {
    const char *cmd;      /* subcommand name, for messages ("pub", "topic info") */
    const char *server;   /* -s HOST:PORT, else $FERRY_SERVER, else the default */
    const char *user;     /* --user */
    const char *password; /* --password, else $FERRY_PASSWORD */
    const char *token;    /* --token, else $FERRY_TOKEN */
    bool use_tls;         /* --tls (or a --tls-* file): TLS to every server */
    const char *tls_ca;   /* --tls-ca FILE: CA of the broker's certificate */
    const char *tls_cert; /* --tls-cert FILE: client certificate */
    const char *tls_key;  /* --tls-key FILE: its key */
};

/* getopt_long values of the common options; subcommands use their own
 * values below CLI_OPT_COMMON_BASE or printable short letters. */
enum {
    CLI_OPT_COMMON_BASE = 0x1000,
    CLI_OPT_USER,
    CLI_OPT_PASSWORD,
    CLI_OPT_TOKEN,
    CLI_OPT_TLS,
    CLI_OPT_TLS_CA,
    CLI_OPT_TLS_CERT,
    CLI_OPT_TLS_KEY,
};

/* The common entries of a struct option array (no terminator). */
#define CLI_COMMON_LONGOPTS                                                                        \
    {"server", required_argument, NULL, 's'}, {"help", no_argument, NULL, 'h'},                    \
        {"user", required_argument, NULL, CLI_OPT_USER},                                           \
        {"password", required_argument, NULL, CLI_OPT_PASSWORD},                                   \
        {"token", required_argument, NULL, CLI_OPT_TOKEN},                                         \
        {"tls", no_argument, NULL, CLI_OPT_TLS},                                                   \
        {"tls-ca", required_argument, NULL, CLI_OPT_TLS_CA},                                       \
        {"tls-cert", required_argument, NULL, CLI_OPT_TLS_CERT},                                   \
    {                                                                                              \
        "tls-key", required_argument, NULL, CLI_OPT_TLS_KEY                                        \
    }

/* The common short options, for the getopt string. */
#define CLI_COMMON_SHORTOPTS "s:h"

/* The help paragraph about common options and exit codes, shared by every
 * command's --help. */
extern const char cli_common_help[];

/* Handle one getopt_long result if it is a common option (not --help):
 * returns 1 when handled, 0 when it is not a common option. */
int cli_common_opt(struct cli_opts *o, int c, const char *arg);

/*
 * Run getopt_long over argv with the given options and call handle(opt, arg,
 * ctx) for every option that is not a common one. Reports unknown options
 * and missing arguments as usage errors. On return *first_arg is the index of
 * the first operand (getopt permutes operands to the end).
 *
 * Returns -1 when everything parsed, or the exit code to return now:
 * CLI_EXIT_OK after --help (help was printed to stdout), CLI_EXIT_USAGE
 * after an error (printed to stderr), or whatever handle() returned when it
 * returned something other than -1.
 */
typedef int (*cli_opt_fn)(int opt, const char *arg, void *ctx);
int cli_getopt(struct cli_opts *o, int argc, char **argv, const char *shortopts,
               const struct option *longopts, const char *help, cli_opt_fn handle, void *ctx,
               int *first_arg);

/* Fill in the defaults from the environment. */
void cli_opts_finish(struct cli_opts *o);

/* How a command wants its client set up. */
struct cli_conn_cfg {
    const char *name;        /* client name sent in Connect ("ferry sub") */
    bool thread_mode;        /* start the library's IO thread */
    int reconnect_attempts;  /* -1: no reconnect; 0: forever; N: give up after N */
    uint32_t max_inflight;   /* async publish window; 0: library default */
    uint32_t ack_timeout_ms; /* fail a publish unacked this long; 0: never */
    bool window_blocks;      /* ferry_publish_async waits for room (else -EAGAIN) */
    bool not_idempotent;     /* acked publishes without producer id (default: with) */
    bool quiet_events;       /* do not print disconnect/reconnect notices */
    bool silent;             /* print nothing at all, not even connect errors */
    int was_connected;       /* atomic, set by the event callback: a failed
                                first connect is reported by cli_connect,
                                not as a lost connection */
};

/* Connect as o and cfg say, waiting at most CLI_CONNECT_TIMEOUT_MS. On
 * failure prints "ferry: ..." (unless cfg->silent) and returns the error
 * (< 0) with *out unset. */
#define CLI_CONNECT_TIMEOUT_MS 10000
int cli_connect(const struct cli_opts *o, struct cli_conn_cfg *cfg, ferry_client **out);

/* Connect for one admin request or a few (no IO thread, no reconnect,
 * quiet), named name. As cli_connect. */
int cli_admin_connect(struct cli_opts *o, const char *name, ferry_client **c);

/* Asynchronous errors the event callback saw (Error frames, a full
 * subscription queue, reconnecting given up): each was printed to stderr
 * when it happened. Atomic counter. */
extern volatile int cli_async_errors;

/* Print "ferry: <what>: <reason>": the client's last error text when it
 * belongs to rc (often the broker's own words), else ferry_strerror(rc).
 * client may be NULL. Returns CLI_EXIT_ERROR. */
int cli_fail(ferry_client *client, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Close and destroy a client, waiting up to timeout_ms for outstanding
 * publishes, in slices so that a second Ctrl-C abandons the wait. Returns
 * 0 or the error of the close (already printed when print_error). */
int cli_close(ferry_client *c, int timeout_ms, bool print_error);

/* Number of SIGINT/SIGTERM received so far. */
extern volatile sig_atomic_t cli_n_signals;

/* The signal that interrupted us (SIGINT/SIGTERM), or 0. Set by the handler
 * installed in main(); commands poll it and shut down cleanly. */
extern volatile sig_atomic_t cli_interrupted;

/* The exit status of an interrupted command: 128 + signal. */
int cli_interrupt_status(void);

/* Subcommands: argv[0] is the subcommand name. Return the exit status. */
int cmd_pub(struct cli_opts *o, int argc, char **argv);
int cmd_sub(struct cli_opts *o, int argc, char **argv);
int cmd_request(struct cli_opts *o, int argc, char **argv);
int cmd_reply(struct cli_opts *o, int argc, char **argv);
int cmd_bench(struct cli_opts *o, int argc, char **argv);
int cmd_stats(struct cli_opts *o, int argc, char **argv);
int cmd_topics(struct cli_opts *o, int argc, char **argv);
int cmd_topic(struct cli_opts *o, int argc, char **argv);
int cmd_consumers(struct cli_opts *o, int argc, char **argv);
int cmd_consumer(struct cli_opts *o, int argc, char **argv);
int cmd_passwd(struct cli_opts *o, int argc, char **argv);
int cmd_backup(struct cli_opts *o, int argc, char **argv);
int cmd_top(struct cli_opts *o, int argc, char **argv);
int cmd_cluster(struct cli_opts *o, int argc, char **argv);

#endif /* FERRY_TOOLS_CLI_H */

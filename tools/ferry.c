/*
 * ferry.c - the `ferry` command-line tool: main(), the common options and
 * dispatch to one file per subcommand (cmd_pub.c, cmd_sub.c, cmd_bench.c,
 * cmd_admin.c, cmd_backup.c, cmd_request.c, cmd_cluster.c).
 *
 * The tool speaks to the broker only through libferry's public API
 * (ferry.h): it is the library's first user.
 */
#include "ferry.h"

#include "cli.h"
#include "cli_util.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

volatile sig_atomic_t cli_interrupted;
volatile sig_atomic_t cli_n_signals;
volatile int cli_async_errors;

static const char main_help[] =
    "Usage: ferry [-s HOST:PORT] COMMAND [OPTIONS] [ARGS]\n"
    "\n"
    "Publish, subscribe, benchmark and inspect a ferry broker (ferryd).\n"
    "\n"
    "Commands:\n"
    "  pub TOPIC [MESSAGE]   publish MESSAGE, or each line of standard input\n"
    "  sub PATTERN           subscribe and print messages as they arrive\n"
    "  request TOPIC MSG     send a request and print the reply\n"
    "  reply TOPIC CMD       answer requests: run CMD per request, reply with its output\n"
    "  bench                 measure throughput and end-to-end latency\n"
    "  stats                 show the broker's counters\n"
    "  top                   a live view: rates, connections, busiest topics, lagging durables\n"
    "  topics [PATTERN]      list topics: messages, bytes, first and last sequence\n"
    "  topic info TOPIC      show one topic\n"
    "  topic purge TOPIC     remove every stored message of a topic\n"
    "  consumers [PATTERN]   list durable consumers: ack floor, pending, lag, holders\n"
    "  consumer delete TOPIC NAME  delete a durable consumer (--force: even while held)\n"
    "  backup DIR            copy the broker's store into DIR while it serves\n"
    "  cluster [PATTERN]     a cluster's brokers, controller and topic placement\n"
    "  passwd                hash a password (or make a token) for ferryd's auth file\n"
    "  help [COMMAND]        show this help, or a command's help\n"
    "\n"
    "Run 'ferry COMMAND --help' for a command's options and examples.\n"
    "\n"
    "Examples:\n"
    "  ferryd &                                  # a broker on 127.0.0.1:7373\n"
    "  ferry sub 'orders.>' &                    # print everything under orders.\n"
    "  ferry pub orders.eu.created '{\"id\": 1}'   # publish one message\n"
    "  seq 1 5 | ferry pub --ack numbers         # five messages, each acknowledged\n"
    "  ferry reply svc.upper 'tr a-z A-Z' &      # answer requests on svc.upper\n"
    "  ferry request svc.upper hello             # prints HELLO\n"
    "  ferry bench --pubs 1 --subs 1 --count 1000000\n"
    "\n";

const char cli_common_help[] =
    "Common options (every command):\n"
    "  -s, --server HOST:PORT  broker address (default: $FERRY_SERVER, else " CLI_DEFAULT_SERVER
    ");\n"
    "                          tls://HOST:PORT speaks TLS to it\n"
    "      --user NAME         user name for password authentication\n"
    "      --password PASS     password (default: $FERRY_PASSWORD, which unlike\n"
    "                          this option is not shown to other users by ps)\n"
    "      --token TOKEN       bearer token (default: $FERRY_TOKEN)\n"
    "      --tls               TLS to the broker (its certificate is verified, and its\n"
    "                          name: the HOST of -s); implied by tls:// and --tls-*\n"
    "      --tls-ca FILE       CA (PEM) of the broker's certificate (default: the\n"
    "                          system's CAs)\n"
    "      --tls-cert FILE     client certificate (PEM), for a broker that asks for\n"
    "                          one (it may also name the user: no password)\n"
    "      --tls-key FILE      the client certificate's key (PEM)\n"
    "  -h, --help              show help and exit\n"
    "\n"
    "Exit status: 0 success; 1 failure (the broker refused, connection lost,\n"
    "timeout, IO error); 2 bad command line. Interrupted by Ctrl-C or SIGTERM,\n"
    "a command finishes cleanly (pending publishes are flushed) and exits with\n"
    "128 + the signal number (130 for Ctrl-C).\n";

static void print_main_help(FILE *f)
{
    fputs(main_help, f);
    fputs(cli_common_help, f);
}

int cli_interrupt_status(void)
{
    return 128 + (int)cli_interrupted;
}

int cli_common_opt(struct cli_opts *o, int c, const char *arg)
{
    switch (c) {
    case 's':
        o->server = arg;
        return 1;
    case CLI_OPT_USER:
        o->user = arg;
        return 1;
    case CLI_OPT_PASSWORD:
        o->password = arg;
        return 1;
    case CLI_OPT_TOKEN:
        o->token = arg;
        return 1;
    case CLI_OPT_TLS:
        o->use_tls = true;
        return 1;
    case CLI_OPT_TLS_CA:
        o->tls_ca = arg;
        o->use_tls = true;
        return 1;
    case CLI_OPT_TLS_CERT:
        o->tls_cert = arg;
        o->use_tls = true;
        return 1;
    case CLI_OPT_TLS_KEY:
        o->tls_key = arg;
        o->use_tls = true;
        return 1;
    default:
        return 0;
    }
}

int cli_getopt(struct cli_opts *o, int argc, char **argv, const char *shortopts,
               const struct option *longopts, const char *help, cli_opt_fn handle, void *ctx,
               int *first_arg)
{
    /* Leading ':' makes getopt report a missing argument as ':' and stay
     * quiet; we print our own messages in the "ferry CMD: ..." form. */
    char spec[128];
    snprintf(spec, sizeof(spec), ":%s%s", CLI_COMMON_SHORTOPTS, shortopts);
    optind = 0; /* 0, not 1: glibc re-initialises (main parsed in '+' mode) */
    opterr = 0;
    for (;;) {
        int prev = optind;
        int c = getopt_long(argc, argv, spec, longopts, NULL);
        if (c == -1) {
            break;
        }
        if (c == 'h') {
            fputs(help, stdout);
            fputs("\n", stdout);
            fputs(cli_common_help, stdout);
            return CLI_EXIT_OK;
        }
        if (c == '?' || c == ':') {
            /* argv[optind - 1] is the offending word for long options; for
             * short ones optopt is the letter. */
            const char *word = (optind - 1 >= prev && optind - 1 < argc) ? argv[optind - 1] : "";
            if (c == ':') {
                if (optopt && strncmp(word, "--", 2) != 0) {
                    return cli_usage(o->cmd, "option '-%c' needs a value", optopt);
                }
                return cli_usage(o->cmd, "option '%s' needs a value", word);
            }
            if (optopt && strncmp(word, "--", 2) != 0) {
                return cli_usage(o->cmd, "unknown option '-%c'", optopt);
            }
            return cli_usage(o->cmd, "unknown option '%s'", word);
        }
        if (cli_common_opt(o, c, optarg)) {
            continue;
        }
        int rc = handle ? handle(c, optarg, ctx) : cli_usage(o->cmd, "unexpected option");
        if (rc != -1) {
            return rc;
        }
    }
    *first_arg = optind;
    return -1;
}

void cli_opts_finish(struct cli_opts *o)
{
    const char *env;
    if (!o->server) {
        env = getenv("FERRY_SERVER");
        o->server = (env && *env) ? env : CLI_DEFAULT_SERVER;
    }
    if (!o->password) {
        env = getenv("FERRY_PASSWORD");
        o->password = (env && *env) ? env : NULL;
    }
    if (!o->token) {
        env = getenv("FERRY_TOKEN");
        o->token = (env && *env) ? env : NULL;
    }
}

int cli_fail(ferry_client *client, int rc, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    char text[512] = "";
    if (client && ferry_client_last_error(client, text, sizeof(text)) != rc) {
        text[0] = '\0';
    }
    cli_err("%s: %s", what, text[0] ? text : ferry_strerror(rc));
    return CLI_EXIT_ERROR;
}

/*
 * Connection events: runs on the library's IO thread (thread mode) or on
 * the thread driving the client. Async errors are printed where they
 * happen, counted, and decide the exit status at the end.
 */
static void on_client_event(ferry_client *c, const ferry_event *ev, void *userdata)
{
    (void)c;
    struct cli_conn_cfg *cfg = userdata;
    const char *text = (ev->text && *ev->text) ? ev->text : ferry_strerror(ev->code);
    switch (ev->type) {
    case FERRY_EVENT_CONNECTED:
        __atomic_store_n(&cfg->was_connected, 1, __ATOMIC_RELAXED);
        break;
    case FERRY_EVENT_DISCONNECTED:
        if (!cfg->quiet_events && __atomic_load_n(&cfg->was_connected, __ATOMIC_RELAXED)) {
            cli_err("connection to %s lost: %s%s", *ev->server ? ev->server : "server", text,
                    cfg->reconnect_attempts >= 0 ? "; reconnecting" : "");
        }
        break;
    case FERRY_EVENT_RECONNECTED:
        if (!cfg->quiet_events) {
            cli_err("reconnected to %s", *ev->server ? ev->server : "server");
        }
        break;
    case FERRY_EVENT_ERROR:
        __atomic_fetch_add(&cli_async_errors, 1, __ATOMIC_RELAXED);
        switch (ev->ref_kind) {
        case FERRY_REF_PUBLISH:
            cli_err("publish refused: %s", text);
            break;
        case FERRY_REF_SUBSCRIPTION:
            cli_err("subscription: %s", text);
            break;
        default:
            cli_err("%s", text);
            break;
        }
        break;
    case FERRY_EVENT_CLOSED:
        if (ev->code != 0 && ev->code != FERRY_ECLOSED) {
            __atomic_fetch_add(&cli_async_errors, 1, __ATOMIC_RELAXED);
            if (!cfg->quiet_events) {
                cli_err("connection closed: %s", text);
            }
        }
        break;
    default:
        break;
    }
}

/* Connection errors are printed unless the caller wants silence. */
#define CONNECT_ERR(call)                                                                          \
    do {                                                                                           \
        if (!cfg->silent) {                                                                        \
            call;                                                                                  \
        }                                                                                          \
    } while (0)

int cli_connect(const struct cli_opts *o, struct cli_conn_cfg *cfg, ferry_client **out)
{
    ferry_options *fo = NULL;
    ferry_client *c = NULL;
    int rc = ferry_options_create(&fo);
    if (rc < 0) {
        CONNECT_ERR(cli_fail(NULL, rc, "cannot create client options"));
        return rc;
    }
    rc = ferry_options_set_servers(fo, o->server);
    if (rc < 0) {
        CONNECT_ERR(cli_err("bad server address '%s': %s", o->server, ferry_strerror(rc)));
        goto out_options;
    }
    ferry_options_set_name(fo, cfg->name);
    if (o->use_tls) {
        if ((o->tls_cert == NULL) != (o->tls_key == NULL)) {
            CONNECT_ERR(cli_err("--tls-cert and --tls-key go together"));
            rc = -EINVAL;
            goto out_options;
        }
        rc = ferry_options_set_tls(fo, o->tls_ca, o->tls_cert, o->tls_key, 1);
        if (rc < 0) {
            CONNECT_ERR(cli_err("TLS: %s", rc == -ENOTSUP ? "this ferry was built without OpenSSL"
                                                          : ferry_strerror(rc)));
            goto out_options;
        }
    }
    if (o->token) {
        rc = ferry_options_set_token(fo, o->token);
    } else if (o->user) {
        rc = ferry_options_set_user_password(fo, o->user, o->password ? o->password : "");
    }
    if (rc < 0) {
        CONNECT_ERR(cli_err("bad credentials: %s", ferry_strerror(rc)));
        goto out_options;
    }
    if (cfg->reconnect_attempts < 0) {
        ferry_options_set_reconnect(fo, 0, 0, 100, 5000, 20);
    } else {
        ferry_options_set_reconnect(fo, 1, (uint32_t)cfg->reconnect_attempts, 100, 2000, 20);
    }
    if (cfg->max_inflight) {
        ferry_options_set_max_inflight(fo, cfg->max_inflight);
    }
    ferry_options_set_window_blocks(fo, cfg->window_blocks ? 1 : 0);
    ferry_options_set_idempotent(fo, cfg->not_idempotent ? 0 : 1);
    ferry_options_set_ack_timeout_ms(fo, cfg->ack_timeout_ms);
    /* cfg outlives the client: every command keeps it in its frame. */
    ferry_options_set_event_cb(fo, on_client_event, cfg);

    rc = ferry_client_create(fo, &c);
    if (rc < 0) {
        CONNECT_ERR(cli_fail(NULL, rc, "cannot create client"));
        goto out_options;
    }
    if (cfg->thread_mode) {
        /* The IO thread must not take SIGINT/SIGTERM: they belong to the
         * main thread, whose blocking reads they interrupt. The new thread
         * inherits this mask. */
        sigset_t block, old;
        sigemptyset(&block);
        sigaddset(&block, SIGINT);
        sigaddset(&block, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &block, &old);
        rc = ferry_client_start_thread(c);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc < 0) {
            CONNECT_ERR(cli_fail(c, rc, "cannot start the client thread"));
            goto out_client;
        }
    }
    rc = ferry_client_connect(c, CLI_CONNECT_TIMEOUT_MS);
    if (rc < 0) {
        CONNECT_ERR(cli_fail(c, rc, "cannot connect to %s", o->server));
        goto out_client;
    }
    ferry_options_destroy(fo);
    *out = c;
    return 0;

out_client:
    ferry_client_destroy(c);
out_options:
    ferry_options_destroy(fo);
    return rc;
}

int cli_close(ferry_client *c, int timeout_ms, bool print_error)
{
    uint64_t deadline = cli_now_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    int rc = 0;
    int signals_at_start = cli_n_signals;
    /* Flush in slices: a second Ctrl-C abandons what is still pending. */
    for (;;) {
        uint64_t now = cli_now_mono_ns();
        if (now >= deadline) {
            rc = -ETIMEDOUT;
            break;
        }
        if (cli_n_signals > signals_at_start && cli_n_signals >= 2) {
            rc = -EINTR;
            break;
        }
        int slice = (int)((deadline - now) / 1000000u);
        slice = slice > 200 ? 200 : (slice < 1 ? 1 : slice);
        rc = ferry_flush(c, slice);
        if (rc != -ETIMEDOUT) {
            break;
        }
    }
    if (rc == 0) {
        rc = ferry_client_close(c, 1000);
    } else {
        ferry_client_close(c, 0);
    }
    if (rc < 0 && print_error) {
        if (rc == -EINTR) {
            cli_err("interrupted: pending publishes abandoned");
        } else {
            cli_fail(c, rc, "flushing pending publishes");
        }
    }
    ferry_client_destroy(c);
    return rc;
}

int cli_admin_connect(struct cli_opts *o, const char *name, ferry_client **c)
{
    static struct cli_conn_cfg cfg = {
        .thread_mode = false,
        .reconnect_attempts = -1,
        .quiet_events = true,
    };
    cfg.name = name;
    cli_opts_finish(o);
    return cli_connect(o, &cfg, c);
}

static void on_signal(int sig)
{
    cli_interrupted = sig;
    cli_n_signals++;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: a blocking read of stdin returns EINTR on Ctrl-C. */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* A closed stdout (ferry sub | head) shows up as EPIPE from write. */
    signal(SIGPIPE, SIG_IGN);
}

struct command {
    const char *name;
    int (*run)(struct cli_opts *o, int argc, char **argv);
};

static const struct command commands[] = {
    {"pub", cmd_pub},           {"sub", cmd_sub},         {"request", cmd_request},
    {"reply", cmd_reply},       {"bench", cmd_bench},     {"stats", cmd_stats},
    {"topics", cmd_topics},     {"topic", cmd_topic},     {"consumers", cmd_consumers},
    {"consumer", cmd_consumer}, {"passwd", cmd_passwd},   {"backup", cmd_backup},
    {"top", cmd_top},           {"cluster", cmd_cluster},
};

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(commands[i].name, name) == 0) {
            return &commands[i];
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_COMMON_LONGOPTS,
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    struct cli_opts o = {0};

    /* Common options before the command name: stop at the first operand
     * ('+'), which is the command. */
    optind = 1;
    opterr = 0;
    for (;;) {
        int prev = optind;
        int c = getopt_long(argc, argv, "+:" CLI_COMMON_SHORTOPTS "V", longopts, NULL);
        if (c == -1) {
            break;
        }
        if (c == 'h') {
            print_main_help(stdout);
            return CLI_EXIT_OK;
        }
        if (c == 'V') {
            printf("ferry %s\n", FERRY_CLI_VERSION);
            return CLI_EXIT_OK;
        }
        if (c == '?' || c == ':') {
            const char *word = (optind - 1 >= prev && optind - 1 < argc) ? argv[optind - 1] : "";
            if (optopt && strncmp(word, "--", 2) != 0) {
                return cli_usage(
                    NULL, c == ':' ? "option '-%c' needs a value" : "unknown option '-%c'", optopt);
            }
            return cli_usage(NULL, c == ':' ? "option '%s' needs a value" : "unknown option '%s'",
                             word);
        }
        cli_common_opt(&o, c, optarg);
    }
    if (optind >= argc) {
        print_main_help(stderr);
        return CLI_EXIT_USAGE;
    }

    const char *name = argv[optind];
    if (strcmp(name, "help") == 0) {
        if (optind + 1 >= argc) {
            print_main_help(stdout);
            return CLI_EXIT_OK;
        }
        const struct command *cmd = find_command(argv[optind + 1]);
        if (!cmd) {
            return cli_usage(NULL, "unknown command '%s'", argv[optind + 1]);
        }
        char *help_argv[] = {argv[optind + 1], "--help", NULL};
        o.cmd = cmd->name;
        return cmd->run(&o, 2, help_argv);
    }
    const struct command *cmd = find_command(name);
    if (!cmd) {
        return cli_usage(NULL, "unknown command '%s'", name);
    }
    o.cmd = cmd->name;
    install_signals();
    return cmd->run(&o, argc - optind, argv + optind);
}

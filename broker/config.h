/*
 * config.h - ferryd's settings: defaults, config file, command line.
 *
 * The config file holds one "key value" per line; '#' starts a comment; blank
 * lines are ignored. Every key can also be given on the command line as
 * --key VALUE (dashes and underscores are the same), and the command line
 * wins over the file. Pure module: no IO besides reading the file, no logging.
 */
#ifndef FERRY_CONFIG_H
#define FERRY_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define CFG_DEFAULT_PORT 7373
#define CFG_MAX_EPHEMERAL 64
#define CFG_MAX_LAST_VALUE 64

/* `retention PATTERN [max-msgs N] [max-bytes SIZE] [max-age DURATION]`:
 * stored topics matching PATTERN keep at most N messages, SIZE bytes, and
 * nothing older than DURATION (0: no such limit). */
#define CFG_MAX_RETENTION 64
struct cfg_retention {
    char pattern[256];
    uint64_t max_msgs;
    uint64_t max_bytes;
    uint64_t max_age_ms;
};

/* How the broker's threads are laid out (--reactor). */
enum reactor_mode {
    REACTOR_MULTI = 0,   /* acceptor thread + N IO threads + N workers (default) */
    REACTOR_SINGLE_POOL, /* one IO thread that also accepts, + the workers */
    REACTOR_SINGLE,      /* one thread: accept, IO and routing */
};

struct cfg {
    char listen_host[64];      /* numeric IPv4 address or hostname; default 0.0.0.0 */
    int listen_port;           /* 0: any free port (reported on stdout); -1: `listen off` */
    char data_dir[512];        /* created if missing */
    int io_threads;            /* 0: one per core */
    int workers;               /* 0: one per core */
    int log_level;             /* enum log_level */
    int log_format;            /* enum log_format: set at start only */
    uint32_t max_connections;  /* beyond: Error LIMIT_EXCEEDED + close */
    uint32_t max_subs;         /* per connection */
    uint32_t max_frame_len;    /* after Connect */
    uint32_t max_topic_len;    /* bytes */
    uint32_t max_topic_depth;  /* tokens */
    uint64_t max_outbound;     /* bytes buffered per connection before slow consumer */
    uint32_t keepalive_ms;     /* default when Connect asks for 0 */
    uint32_t keepalive_min_ms; /* clamp range */
    uint32_t keepalive_max_ms;
    uint32_t connect_timeout_ms; /* Connect must arrive within this */
    uint32_t max_unauth;         /* connections not logged in yet; 0: max_connections / 8 */
    uint32_t login_delay_ms;     /* login.h: the first wait after repeated failures */
    uint32_t login_delay_max_ms; /* login.h: waits double up to this */
    uint32_t worker_queue;       /* publish batches queued per worker */
    uint32_t shutdown_ms;        /* bound on the graceful stop */
    int io_backend;              /* enum rx_backend (reactor.h): 0 epoll, 1 uring */
    int reactor_mode;            /* enum reactor_mode */
    char config_file[512];       /* "" if none */
    char auth_file[512];         /* "" if none: anonymous access (auth.h) */
    /* The store. */
    int sync_mode;               /* enum store_sync_mode: 0 always, 1 interval, 2 none */
    uint32_t sync_interval_ms;   /* with sync interval */
    uint32_t commit_interval_ms; /* LMDB commits of logged groups at least this often */
    uint64_t max_store_size;     /* bytes: the map's maximum */
    uint64_t initial_store_size; /* bytes: the map's size at creation */
    uint32_t n_ephemeral;        /* patterns of topics routed without storing */
    char ephemeral[CFG_MAX_EPHEMERAL][256];
    uint32_t n_last_value; /* patterns of last-value topics (store_lastval.c) */
    char last_value[CFG_MAX_LAST_VALUE][256];
    uint32_t n_retention; /* retention rules, in the order given */
    struct cfg_retention retention[CFG_MAX_RETENTION];
    uint32_t retention_interval_ms; /* how often topics are checked against them */
    uint64_t consumer_max_idle_ms;  /* durables unheld this long are removed; 0: never */
    uint64_t dedupe_window_ms;      /* producer sequences kept this long; 0: by span only */
    /* Metrics (broker/metrics.h). */
    char metrics_host[64];       /* the HTTP listener's address; default 127.0.0.1 */
    int metrics_port;            /* -1: no metrics listener (default); 0: any free port */
    uint32_t metrics_max_topics; /* topics (and durables) with their own labels */
    /* MQTT 3.1.1 (broker/mqtt_conn.c). */
    char mqtt_listen_host[64];     /* the MQTT listener's address */
    int mqtt_listen_port;          /* -1: no MQTT listener (default); 0: any free port */
    char mqtt_tls_listen_host[64]; /* MQTT over TLS (the tls_* certificate) */
    int mqtt_tls_listen_port;      /* -1: none (default); 0: any free port */
    uint32_t mqtt_sys_interval;    /* seconds between $SYS updates (mqtt_sys.h); 0: on
                                    * subscribe only */
    /* TLS (broker/tls.h). */
    char tls_listen_host[64]; /* the TLS listener's address */
    int tls_listen_port;      /* -1: no TLS listener (default); 0: any free port */
    char tls_cert[512];       /* PEM certificate chain; "" if none */
    char tls_key[512];        /* PEM private key */
    char tls_ca[512];         /* PEM CA(s) that sign client certificates */
    int tls_client_cert;      /* enum tls_client_cert: off, optional, required */
    int tls_identity;         /* enum tls_identity: off, cn, san-email */
    /* Cluster mode (broker/cluster.h, CLUSTER.md): off while cluster_name is "". */
    char cluster_name[128];        /* znodes under /ferry/<name> */
    char zookeeper[512];           /* "host:port,host:port,..." */
    uint32_t broker_id;            /* unique in the cluster, >= 1 */
    char advertise[128];           /* "host:port" clients reach this broker at; "": listen */
    uint32_t zookeeper_session_ms; /* ZooKeeper session timeout asked for */
};

/* The first rule whose pattern matches topic[0..len), or NULL. */
const struct cfg_retention *cfg_retention_find(const struct cfg *c, const char *topic, size_t len);

/* Topics under this prefix (request/reply inboxes) are always ephemeral. */
#define CFG_INBOX_PREFIX "_INBOX."
#define CFG_INBOX_PREFIX_LEN 7

/* Is topic[0..len) ephemeral (matches an `ephemeral` pattern, or is an
 * inbox: CFG_INBOX_PREFIX)? */
int cfg_is_ephemeral(const struct cfg *c, const char *topic, size_t len);

/* Is topic[0..len) a last-value topic (matches a `last_value` pattern)? */
int cfg_is_last_value(const struct cfg *c, const char *topic, size_t len);

void cfg_defaults(struct cfg *c);

/* Set one key. Returns 0, -ENOENT for an unknown key, -EINVAL for a bad
 * value. */
int cfg_set(struct cfg *c, const char *key, const char *value);

/* Read a config file into c. Returns 0 or a negative error; on error err
 * holds a message naming the file and line. */
int cfg_load_file(struct cfg *c, const char *path, char *err, size_t err_len);

/* Apply the command line: --config FILE first (read before the other flags,
 * whatever its position), then every --key VALUE / --key=VALUE. Returns 0,
 * 1 if --help or --version was given (*out_help tells which: 1 help, 2
 * version), or a negative error with a message in err. */
int cfg_parse_args(struct cfg *c, int argc, char **argv, int *out_help, char *err, size_t err_len);

/* Print the --help text. */
const char *cfg_usage(void);

#endif

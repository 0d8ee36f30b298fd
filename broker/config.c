/*
 * config.c - one table of keys serves the file, the flags and --help.
 */
#include "config.h"

#include "frame.h"
#include "log.h"
#include "topic.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kind {
    K_U32,
    K_U64,
    K_INT,
    K_STR,
    K_LISTEN,
    K_LEVEL,
    K_LOG_FORMAT,
    K_SYNC,
    K_BACKEND,
    K_REACTOR,
    K_EPHEMERAL,
    K_LAST_VALUE,
    K_RETENTION,
    K_DURATION, /* parse_duration_ms(), or "off" / "0": 0 */
    K_TLS_LISTEN,
    K_MQTT_LISTEN,
    K_MQTT_TLS_LISTEN,
    K_METRICS_LISTEN,
    K_TLS_CLIENT,
    K_TLS_IDENTITY,
};

struct key {
    const char *name;
    enum kind kind;
    size_t off;
    size_t size; /* for K_STR */
    uint64_t min, max;
};

#define F(field) offsetof(struct cfg, field)
static const struct key keys[] = {
    {"listen", K_LISTEN, 0, 0, 0, 0},
    {"data_dir", K_STR, F(data_dir), sizeof(((struct cfg *)0)->data_dir), 0, 0},
    {"auth_file", K_STR, F(auth_file), sizeof(((struct cfg *)0)->auth_file), 0, 0},
    {"io_threads", K_INT, F(io_threads), 0, 0, 256},
    {"workers", K_INT, F(workers), 0, 0, 256},
    {"io_backend", K_BACKEND, F(io_backend), 0, 0, 0},
    {"reactor", K_REACTOR, F(reactor_mode), 0, 0, 0},
    {"log_level", K_LEVEL, F(log_level), 0, 0, 0},
    {"log_format", K_LOG_FORMAT, F(log_format), 0, 0, 0},
    {"max_connections", K_U32, F(max_connections), 0, 1, 10000000},
    {"max_subscriptions", K_U32, F(max_subs), 0, 1, 10000000},
    {"max_frame_len", K_U32, F(max_frame_len), 0, 4096, FRAME_MAX_LEN_CEILING},
    {"max_topic_len", K_U32, F(max_topic_len), 0, 1, 4096},
    {"max_topic_depth", K_U32, F(max_topic_depth), 0, 1, 64},
    {"max_outbound_bytes", K_U64, F(max_outbound), 0, 4096, (uint64_t)1 << 40},
    {"keepalive_ms", K_U32, F(keepalive_ms), 0, 1, 86400000},
    {"keepalive_min_ms", K_U32, F(keepalive_min_ms), 0, 1, 86400000},
    {"keepalive_max_ms", K_U32, F(keepalive_max_ms), 0, 1, 86400000},
    {"connect_timeout_ms", K_U32, F(connect_timeout_ms), 0, 1, 86400000},
    {"max_unauthenticated", K_U32, F(max_unauth), 0, 0, 10000000},
    {"login_delay_ms", K_U32, F(login_delay_ms), 0, 1, 60000},
    {"login_delay_max_ms", K_U32, F(login_delay_max_ms), 0, 1, 3600000},
    {"worker_queue", K_U32, F(worker_queue), 0, 2, 1 << 24},
    {"shutdown_ms", K_U32, F(shutdown_ms), 0, 1, 3600000},
    {"sync", K_SYNC, 0, 0, 0, 0},
    {"sync_interval_ms", K_U32, F(sync_interval_ms), 0, 1, 3600000},
    {"commit_interval_ms", K_U32, F(commit_interval_ms), 0, 1, 60000},
    {"ephemeral", K_EPHEMERAL, 0, 0, 0, 0},
    {"last_value", K_LAST_VALUE, 0, 0, 0, 0},
    {"retention", K_RETENTION, 0, 0, 0, 0},
    {"retention_interval_ms", K_U32, F(retention_interval_ms), 0, 10, 3600000},
    {"consumer_max_idle", K_DURATION, F(consumer_max_idle_ms), 0, 0, 0},
    {"dedupe_window", K_DURATION, F(dedupe_window_ms), 0, 0, 0},
    {"max_store_size", K_U64, F(max_store_size), 0, (uint64_t)1 << 20, (uint64_t)1 << 46},
    {"initial_store_size", K_U64, F(initial_store_size), 0, (uint64_t)1 << 16, (uint64_t)1 << 46},
    {"tls_listen", K_TLS_LISTEN, 0, 0, 0, 0},
    {"mqtt_listen", K_MQTT_LISTEN, 0, 0, 0, 0},
    {"mqtt_tls_listen", K_MQTT_TLS_LISTEN, 0, 0, 0, 0},
    {"mqtt_sys_interval", K_U32, F(mqtt_sys_interval), 0, 0, 86400},
    {"metrics_listen", K_METRICS_LISTEN, 0, 0, 0, 0},
    {"metrics_max_topics", K_U32, F(metrics_max_topics), 0, 1, 1000000},
    {"tls_cert", K_STR, F(tls_cert), sizeof(((struct cfg *)0)->tls_cert), 0, 0},
    {"tls_key", K_STR, F(tls_key), sizeof(((struct cfg *)0)->tls_key), 0, 0},
    {"tls_ca", K_STR, F(tls_ca), sizeof(((struct cfg *)0)->tls_ca), 0, 0},
    {"tls_client_cert", K_TLS_CLIENT, F(tls_client_cert), 0, 0, 0},
    {"tls_identity", K_TLS_IDENTITY, F(tls_identity), 0, 0, 0},
    {"cluster", K_STR, F(cluster_name), sizeof(((struct cfg *)0)->cluster_name), 0, 0},
    {"zookeeper", K_STR, F(zookeeper), sizeof(((struct cfg *)0)->zookeeper), 0, 0},
    {"broker_id", K_U32, F(broker_id), 0, 1, 2147483647},
    {"advertise", K_STR, F(advertise), sizeof(((struct cfg *)0)->advertise), 0, 0},
    {"zookeeper_session_ms", K_U32, F(zookeeper_session_ms), 0, 2000, 600000},
};
#undef F

void cfg_defaults(struct cfg *c)
{
    memset(c, 0, sizeof(*c));
    strcpy(c->listen_host, "0.0.0.0");
    c->listen_port = CFG_DEFAULT_PORT;
    strcpy(c->data_dir, "./ferry-data");
    c->log_level = LOG_INFO;
    c->max_connections = 100000;
    c->max_subs = 4096;
    c->max_frame_len = FRAME_MAX_LEN_DEFAULT;
    c->max_topic_len = 255;
    c->max_topic_depth = 16;
    c->max_outbound = 8u * 1024 * 1024;
    c->keepalive_ms = 30000;
    c->keepalive_min_ms = 100;
    c->keepalive_max_ms = 600000;
    c->connect_timeout_ms = 10000;
    c->login_delay_ms = 200;
    c->login_delay_max_ms = 5000;
    c->worker_queue = 64; /* batches of up to 64 KiB: a few MiB per worker */
    c->shutdown_ms = 5000;
    c->sync_mode = 0; /* always */
    c->sync_interval_ms = 100;
    c->commit_interval_ms = 10;
    c->max_store_size = (uint64_t)64 << 30;
    c->initial_store_size = (uint64_t)64 << 20;
    c->retention_interval_ms = 1000;
    c->dedupe_window_ms = 120000;
    strcpy(c->tls_listen_host, "0.0.0.0");
    c->tls_listen_port = -1;
    strcpy(c->mqtt_listen_host, "0.0.0.0");
    c->mqtt_listen_port = -1;
    strcpy(c->mqtt_tls_listen_host, "0.0.0.0");
    c->mqtt_tls_listen_port = -1;
    c->mqtt_sys_interval = 10; /* mosquitto's sys_interval */
    strcpy(c->metrics_host, "127.0.0.1");
    c->metrics_port = -1;
    c->metrics_max_topics = 1000;
    c->zookeeper_session_ms = 6000;
}

/* "always", "none", "interval" or "interval MS". */
static int parse_sync(struct cfg *c, const char *v)
{
    if (strcmp(v, "always") == 0) {
        c->sync_mode = 0;
        return 0;
    }
    if (strcmp(v, "none") == 0) {
        c->sync_mode = 2;
        return 0;
    }
    if (strncmp(v, "interval", 8) != 0 || (v[8] != '\0' && v[8] != ' ' && v[8] != ':')) {
        return -EINVAL;
    }
    const char *ms = v + 8;
    while (*ms == ' ' || *ms == ':') {
        ms++;
    }
    if (*ms) {
        char *end;
        errno = 0;
        unsigned long x = strtoul(ms, &end, 10);
        if (errno || *end != '\0' || x < 1 || x > 3600000 || *ms == '-') {
            return -EINVAL;
        }
        c->sync_interval_ms = (uint32_t)x;
    }
    c->sync_mode = 1;
    return 0;
}

static int add_ephemeral(struct cfg *c, const char *v)
{
    size_t n = strlen(v);
    const char *why;
    if (n >= sizeof(c->ephemeral[0]) || c->n_ephemeral >= CFG_MAX_EPHEMERAL ||
        topic_validate(v, n, 1, 255, 64, &why) != 0) {
        return -EINVAL;
    }
    for (uint32_t i = 0; i < c->n_ephemeral; i++) {
        if (strcmp(c->ephemeral[i], v) == 0) {
            return 0;
        }
    }
    memcpy(c->ephemeral[c->n_ephemeral++], v, n + 1);
    return 0;
}

int cfg_is_ephemeral(const struct cfg *c, const char *topic, size_t len)
{
    /* Inboxes of request/reply (ferry.proto, Publish.reply_to) are never
     * stored: a reply is for one waiting requester, now or never. */
    if (len >= CFG_INBOX_PREFIX_LEN && memcmp(topic, CFG_INBOX_PREFIX, CFG_INBOX_PREFIX_LEN) == 0) {
        return 1;
    }
    for (uint32_t i = 0; i < c->n_ephemeral; i++) {
        if (topic_match(c->ephemeral[i], strlen(c->ephemeral[i]), topic, len)) {
            return 1;
        }
    }
    return 0;
}

static int add_last_value(struct cfg *c, const char *v)
{
    size_t n = strlen(v);
    const char *why;
    if (n >= sizeof(c->last_value[0]) || c->n_last_value >= CFG_MAX_LAST_VALUE ||
        topic_validate(v, n, 1, 255, 64, &why) != 0) {
        return -EINVAL;
    }
    for (uint32_t i = 0; i < c->n_last_value; i++) {
        if (strcmp(c->last_value[i], v) == 0) {
            return 0;
        }
    }
    memcpy(c->last_value[c->n_last_value++], v, n + 1);
    return 0;
}

int cfg_is_last_value(const struct cfg *c, const char *topic, size_t len)
{
    for (uint32_t i = 0; i < c->n_last_value; i++) {
        if (topic_match(c->last_value[i], strlen(c->last_value[i]), topic, len)) {
            return 1;
        }
    }
    return 0;
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (*s == '\0' || *s == '-') {
        return -EINVAL;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    uint64_t mul = 1;
    if (*end == 'k' || *end == 'K') {
        mul = 1024, end++;
    } else if (*end == 'm' || *end == 'M') {
        mul = 1024 * 1024, end++;
    } else if (*end == 'g' || *end == 'G') {
        mul = 1024 * 1024 * 1024, end++;
    }
    if (errno || *end != '\0' || v > max / mul || v * mul < min || v * mul > max) {
        return -EINVAL;
    }
    *out = v * mul;
    return 0;
}

/* "500ms", "30s", "10m", "2h", "7d"; a bare number is seconds. */
static int parse_duration_ms(const char *s, uint64_t *out)
{
    if (*s < '0' || *s > '9') {
        return -EINVAL;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    uint64_t mul;
    if (strcmp(end, "ms") == 0) {
        mul = 1;
    } else if (*end == '\0' || strcmp(end, "s") == 0) {
        mul = 1000;
    } else if (strcmp(end, "m") == 0) {
        mul = 60 * 1000;
    } else if (strcmp(end, "h") == 0) {
        mul = 3600 * 1000;
    } else if (strcmp(end, "d") == 0) {
        mul = 86400 * 1000;
    } else {
        return -EINVAL;
    }
    if (errno || v == 0 || v > UINT64_MAX / mul / 1000000) {
        return -EINVAL;
    }
    *out = v * mul;
    return 0;
}

/* "PATTERN [max-msgs N] [max-bytes SIZE] [max-age DURATION]" (at least one
 * limit; words separated by spaces). */
static int add_retention(struct cfg *c, const char *v)
{
    char buf[512];
    if (strlen(v) >= sizeof(buf) || c->n_retention >= CFG_MAX_RETENTION) {
        return -EINVAL;
    }
    strcpy(buf, v);
    char *save = NULL;
    char *pat = strtok_r(buf, " \t", &save);
    const char *why;
    if (pat == NULL || strlen(pat) >= sizeof(c->retention[0].pattern) ||
        topic_validate(pat, strlen(pat), 1, 255, 64, &why)) {
        return -EINVAL;
    }
    struct cfg_retention r;
    memset(&r, 0, sizeof(r));
    strcpy(r.pattern, pat);
    int n_limits = 0;
    char *k;
    while ((k = strtok_r(NULL, " \t", &save)) != NULL) {
        char *val = strtok_r(NULL, " \t", &save);
        if (val == NULL) {
            return -EINVAL;
        }
        int rc;
        if (strcmp(k, "max-msgs") == 0 || strcmp(k, "max_msgs") == 0) {
            rc = parse_u64(val, 1, UINT64_MAX, &r.max_msgs);
        } else if (strcmp(k, "max-bytes") == 0 || strcmp(k, "max_bytes") == 0) {
            rc = parse_u64(val, 1, (uint64_t)1 << 50, &r.max_bytes);
        } else if (strcmp(k, "max-age") == 0 || strcmp(k, "max_age") == 0) {
            rc = parse_duration_ms(val, &r.max_age_ms);
        } else {
            rc = -EINVAL;
        }
        if (rc < 0) {
            return -EINVAL;
        }
        n_limits++;
    }
    if (n_limits == 0) {
        return -EINVAL;
    }
    c->retention[c->n_retention++] = r;
    return 0;
}

const struct cfg_retention *cfg_retention_find(const struct cfg *c, const char *topic, size_t len)
{
    for (uint32_t i = 0; i < c->n_retention; i++) {
        const struct cfg_retention *r = &c->retention[i];
        if (topic_match(r->pattern, strlen(r->pattern), topic, len)) {
            return r;
        }
    }
    return NULL;
}

/* "HOST:PORT", ":PORT", "PORT", or "off" (port -1: no such listener). */
static int parse_listen(char *host, size_t host_cap, int *out_port, const char *v)
{
    const char *colon = strrchr(v, ':');
    uint64_t port;
    if (strcmp(v, "off") == 0) {
        *out_port = -1;
        return 0;
    }
    if (colon == NULL) { /* just a port */
        if (parse_u64(v, 0, 65535, &port) < 0) {
            return -EINVAL;
        }
        *out_port = (int)port;
        return 0;
    }
    size_t hl = (size_t)(colon - v);
    if (hl >= host_cap || parse_u64(colon + 1, 0, 65535, &port) < 0) {
        return -EINVAL;
    }
    if (hl > 0) {
        memcpy(host, v, hl);
        host[hl] = '\0';
    }
    *out_port = (int)port;
    return 0;
}

int cfg_set(struct cfg *c, const char *key, const char *value)
{
    char name[64];
    size_t n = strlen(key);
    if (n >= sizeof(name)) {
        return -ENOENT;
    }
    for (size_t i = 0; i <= n; i++) {
        name[i] = key[i] == '-' ? '_' : key[i];
    }
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const struct key *k = &keys[i];
        if (strcmp(k->name, name) != 0) {
            continue;
        }
        char *field = (char *)c + k->off;
        uint64_t v;
        switch (k->kind) {
        case K_LISTEN:
            return parse_listen(c->listen_host, sizeof(c->listen_host), &c->listen_port, value);
        case K_TLS_LISTEN:
            return parse_listen(c->tls_listen_host, sizeof(c->tls_listen_host), &c->tls_listen_port,
                                value);
        case K_MQTT_LISTEN:
            return parse_listen(c->mqtt_listen_host, sizeof(c->mqtt_listen_host),
                                &c->mqtt_listen_port, value);
        case K_MQTT_TLS_LISTEN:
            return parse_listen(c->mqtt_tls_listen_host, sizeof(c->mqtt_tls_listen_host),
                                &c->mqtt_tls_listen_port, value);
        case K_METRICS_LISTEN:
            return parse_listen(c->metrics_host, sizeof(c->metrics_host), &c->metrics_port, value);
        case K_TLS_CLIENT:
            if (strcmp(value, "off") == 0) {
                *(int *)field = 0; /* TLS_CLIENT_OFF */
            } else if (strcmp(value, "optional") == 0) {
                *(int *)field = 1; /* TLS_CLIENT_OPTIONAL */
            } else if (strcmp(value, "required") == 0) {
                *(int *)field = 2; /* TLS_CLIENT_REQUIRED */
            } else {
                return -EINVAL;
            }
            return 0;
        case K_TLS_IDENTITY:
            if (strcmp(value, "off") == 0) {
                *(int *)field = 0; /* TLS_ID_OFF */
            } else if (strcmp(value, "cn") == 0) {
                *(int *)field = 1; /* TLS_ID_CN */
            } else if (strcmp(value, "san-email") == 0) {
                *(int *)field = 2; /* TLS_ID_SAN_EMAIL */
            } else {
                return -EINVAL;
            }
            return 0;
        case K_SYNC:
            return parse_sync(c, value);
        case K_REACTOR:
            if (strcmp(value, "multi") == 0) {
                *(int *)field = REACTOR_MULTI;
            } else if (strcmp(value, "single-pool") == 0) {
                *(int *)field = REACTOR_SINGLE_POOL;
            } else if (strcmp(value, "single") == 0) {
                *(int *)field = REACTOR_SINGLE;
            } else {
                return -EINVAL;
            }
            return 0;
        case K_BACKEND:
            if (strcmp(value, "epoll") != 0 && strcmp(value, "uring") != 0) {
                return -EINVAL;
            }
            *(int *)field = value[0] == 'u'; /* RX_URING : RX_EPOLL */
            return 0;
        case K_EPHEMERAL:
            return add_ephemeral(c, value);
        case K_LAST_VALUE:
            return add_last_value(c, value);
        case K_RETENTION:
            return add_retention(c, value);
        case K_DURATION:
            if (strcmp(value, "off") == 0 || strcmp(value, "0") == 0) {
                *(uint64_t *)field = 0;
                return 0;
            }
            return parse_duration_ms(value, (uint64_t *)field);
        case K_STR:
            if (strlen(value) >= k->size || *value == '\0') {
                return -EINVAL;
            }
            strcpy(field, value);
            return 0;
        case K_LEVEL: {
            int lv = log_level_parse(value);
            if (lv < 0) {
                return -EINVAL;
            }
            *(int *)field = lv;
            return 0;
        }
        case K_LOG_FORMAT: {
            int f = log_format_parse(value);
            if (f < 0) {
                return -EINVAL;
            }
            *(int *)field = f;
            return 0;
        }
        case K_INT:
            if (parse_u64(value, k->min, k->max, &v) < 0) {
                return -EINVAL;
            }
            *(int *)field = (int)v;
            return 0;
        case K_U32:
            if (parse_u64(value, k->min, k->max, &v) < 0) {
                return -EINVAL;
            }
            *(uint32_t *)field = (uint32_t)v;
            return 0;
        case K_U64:
            if (parse_u64(value, k->min, k->max, &v) < 0) {
                return -EINVAL;
            }
            *(uint64_t *)field = v;
            return 0;
        }
    }
    return -ENOENT;
}

int cfg_load_file(struct cfg *c, const char *path, char *err, size_t err_len)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        int rc = -errno;
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return rc;
    }
    char line[1024];
    int lineno = 0;
    int rc = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) {
            *hash = '\0';
        }
        char *key = strtok(line, " \t\r\n");
        if (key == NULL) {
            continue;
        }
        char *value = strtok(NULL, " \t\r\n");
        char *extra = value ? strtok(NULL, " \t\r\n") : NULL;
        char joined[512];
        if (extra != NULL && strcmp(key, "retention") == 0) {
            /* "retention PATTERN max-msgs N ...": the rest of the line */
            size_t n = (size_t)snprintf(joined, sizeof(joined), "%s %s", value, extra);
            char *w;
            while ((w = strtok(NULL, " \t\r\n")) != NULL && n < sizeof(joined)) {
                n += (size_t)snprintf(joined + n, sizeof(joined) - n, " %s", w);
            }
            value = joined;
            extra = NULL;
        } else if (extra != NULL && strcmp(key, "sync") == 0 && strtok(NULL, " \t\r\n") == NULL) {
            /* "sync interval MS": the one key whose value has two words */
            snprintf(joined, sizeof(joined), "%s %s", value, extra);
            value = joined;
            extra = NULL;
        }
        if (value == NULL || extra != NULL) {
            snprintf(err, err_len, "%s:%d: expected \"key value\"", path, lineno);
            rc = -EINVAL;
            break;
        }
        rc = cfg_set(c, key, value);
        if (rc < 0) {
            snprintf(err, err_len, "%s:%d: %s \"%s\"", path, lineno,
                     rc == -ENOENT ? "unknown key" : "bad value for", key);
            break;
        }
    }
    fclose(f);
    return rc;
}

int cfg_parse_args(struct cfg *c, int argc, char **argv, int *out_help, char *err, size_t err_len)
{
    *out_help = 0;
    /* Pass 1: --help, --version, --config. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            *out_help = 1;
            return 1;
        }
        if (strcmp(argv[i], "--version") == 0) {
            *out_help = 2;
            return 1;
        }
        const char *file = NULL;
        if (strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "-c") == 0) {
            if (i + 1 >= argc) {
                snprintf(err, err_len, "%s needs a value", argv[i]);
                return -EINVAL;
            }
            file = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            file = argv[i] + 9;
        }
        if (file) {
            if (strlen(file) >= sizeof(c->config_file)) {
                snprintf(err, err_len, "config path too long");
                return -EINVAL;
            }
            strcpy(c->config_file, file);
            int rc = cfg_load_file(c, file, err, err_len);
            if (rc < 0) {
                return rc;
            }
        }
    }
    /* Pass 2: everything else; flags win over the file. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) {
            i++;
            continue;
        }
        if (strncmp(a, "--config=", 9) == 0) {
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            snprintf(err, err_len, "unexpected argument \"%s\"", a);
            return -EINVAL;
        }
        char key[64];
        const char *value;
        const char *eq = strchr(a, '=');
        if (eq) {
            size_t kl = (size_t)(eq - a - 2);
            if (kl >= sizeof(key)) {
                snprintf(err, err_len, "unknown option \"%s\"", a);
                return -EINVAL;
            }
            memcpy(key, a + 2, kl);
            key[kl] = '\0';
            value = eq + 1;
        } else {
            if (strlen(a + 2) >= sizeof(key)) {
                snprintf(err, err_len, "unknown option \"%s\"", a);
                return -EINVAL;
            }
            strcpy(key, a + 2);
            if (i + 1 >= argc) {
                snprintf(err, err_len, "%s needs a value", a);
                return -EINVAL;
            }
            value = argv[++i];
        }
        int rc = cfg_set(c, key, value);
        if (rc < 0) {
            snprintf(err, err_len, "%s \"--%s\"",
                     rc == -ENOENT ? "unknown option" : "bad value for", key);
            return rc;
        }
    }
    return 0;
}

const char *cfg_usage(void)
{
    return "usage: ferryd [--config FILE] [--listen HOST:PORT] [--data-dir DIR]\n"
           "              [--io-threads N] [--workers N] [--reactor MODE] [--io-backend B]\n"
           "              [--log-level LEVEL] [--log-format text|json] [--KEY VALUE ...]\n"
           "       ferryd --verify DIR\n"
           "       ferryd --inspect DIR [--topic TOPIC [--from-seq N] [--count K]] [--json]\n"
           "\n"
           "ferry's publish/subscribe broker.\n"
           "\n"
           "  --config FILE        read \"key value\" lines (# comments); flags override it\n"
           "  --listen HOST:PORT   listen address (default 0.0.0.0:7373; port 0 = any free port;\n"
           "                       off: no plain listener, TLS only)\n"
           "  --data-dir DIR       data directory, created if missing (default ./ferry-data)\n"
           "  --io-threads N       IO reactor threads (default: one per core)\n"
           "  --workers N          routing worker threads (default: one per core)\n"
           "  --reactor multi|single-pool|single  the threads: multi (default): an acceptor,\n"
           "                       --io-threads reactors and --workers routing threads;\n"
           "                       single-pool: one reactor that also accepts, and the\n"
           "                       workers; single: one thread accepts, reads and routes.\n"
           "                       The store writer is its own thread in all three\n"
           "  --io-backend epoll|uring  how the reactors wait for sockets (default epoll);\n"
           "                       uring: through io_uring, where the kernel allows it\n"
           "                       (else epoll, said in the log)\n"
           "  --log-level LEVEL    error, warn, info (default) or debug; SIGHUP re-reads it\n"
           "                       from the config file\n"
           "  --log-format text|json  text (default): \"TIME ferryd[PID] LEVEL message\";\n"
           "                       json: one JSON object per line with time, level, pid,\n"
           "                       thread, msg, and client and peer for a connection's\n"
           "                       events. Read at start only (SIGHUP keeps the format)\n"
           "  --auth-file FILE     users, tokens and their rights (`user NAME HASH`,\n"
           "                       `token NAME HASH`, `cert NAME` (a TLS client certificate\n"
           "                       login), `allow NAME publish|subscribe PATTERN`,\n"
           "                       `allow NAME admin`; hashes from `ferry passwd`); without\n"
           "                       one anyone may connect and do anything. SIGHUP re-reads it\n"
           "\n"
           "TLS (OpenSSL; TLS 1.2 or later):\n"
           "  --tls-listen HOST:PORT  a TLS listener beside the plain one (port 0 = any\n"
           "                       free port); needs --tls-cert and --tls-key\n"
           "  --tls-cert FILE      the server's certificate chain (PEM)\n"
           "  --tls-key FILE       its private key (PEM)\n"
           "  --tls-ca FILE        CA(s) (PEM) that sign client certificates\n"
           "  --tls-client-cert off|optional|required  ask clients for a certificate\n"
           "                       (default off; optional and required need --tls-ca)\n"
           "  --tls-identity cn|san-email|off  a verified client certificate's subject CN\n"
           "                       (or first SAN email) is the user, with no password, if\n"
           "                       the auth file has `cert NAME` for it (default off)\n"
           "                       SIGHUP re-reads the certificate, key and CA files; a\n"
           "                       file that does not load keeps the current ones\n"
           "\n"
           "MQTT 3.1.1 (mosquitto, Paho and other MQTT clients; README.md, \"MQTT\"):\n"
           "  --mqtt-listen HOST:PORT  an MQTT listener beside the ferry one (default off;\n"
           "                       PORT alone: 0.0.0.0:PORT; port 0 = any free port). Topic\n"
           "                       a/b/c is ferry's a.b.c, + is *, # is >; users, rights,\n"
           "                       stored topics and retention are ferry's\n"
           "  --mqtt-tls-listen HOST:PORT  MQTT over TLS (default off; 8883 is its port),\n"
           "                       with the --tls-cert and --tls-key of the TLS listener\n"
           "  --mqtt-sys-interval N  seconds between updates of the $SYS/broker/... topics\n"
           "                       (default 10; 0: their values only on subscribe). Only\n"
           "                       with an auth file, for users allowed to subscribe to\n"
           "                       their ferry form ($SYS.>)\n"
           "\n"
           "Operations:\n"
           "  --metrics-listen HOST:PORT  serve Prometheus metrics (GET /metrics), /healthz\n"
           "                       and /readyz over HTTP on its own thread (default off;\n"
           "                       PORT alone: 127.0.0.1:PORT; port 0 = any free port)\n"
           "  --metrics-max-topics N  topics (and durables) with their own label in the\n"
           "                       metrics (default 1000); the rest are summed under\n"
           "                       topic=\"_other\"\n"
           "\n"
           "Cluster mode (off unless --cluster; ZooKeeper coordinates: CLUSTER.md):\n"
           "  --cluster NAME       join the cluster NAME: topics are placed on its brokers\n"
           "                       by the controller; this broker serves the ones it owns\n"
           "                       and answers ERROR_NOT_OWNER (with the owner's address)\n"
           "                       for the others\n"
           "  --zookeeper HOST:PORT,...  the ZooKeeper ensemble (needed with --cluster)\n"
           "  --broker-id N        this broker's id in the cluster, 1 or more, unique; its\n"
           "                       store is recorded under it (another store is refused)\n"
           "  --advertise HOST:PORT  where clients reach this broker (default: the\n"
           "                       --listen address; needed when it is 0.0.0.0 or port 0)\n"
           "  --zookeeper-session-ms N  ZooKeeper session timeout (default 6000): a broker\n"
           "                       cut off from ZooKeeper stops serving within 2/3 of it\n"
           "\n"
           "Other keys (file or --key VALUE; sizes accept k/m/g):\n"
           "  max_connections 100000   max_subscriptions 4096 (per connection)\n"
           "  max_frame_len 1114112    max_topic_len 255   max_topic_depth 16\n"
           "  max_outbound_bytes 8m    (per connection; beyond it a subscriber is\n"
           "                            disconnected as a slow consumer)\n"
           "  keepalive_ms 30000   keepalive_min_ms 100   keepalive_max_ms 600000\n"
           "  connect_timeout_ms 10000   worker_queue 64 (publication batches)   shutdown_ms 5000\n"
           "  max_unauthenticated N    connections not logged in yet, in all (default\n"
           "                           max_connections / 8, at least 4); one address may\n"
           "                           hold half of them. Past half, new ones get a quarter\n"
           "                           of connect_timeout_ms (at least 1 s) to log in\n"
           "  login_delay_ms 200   login_delay_max_ms 5000   after 3 recent failed logins\n"
           "                           from an address (or for a user name), its next check\n"
           "                           waits login_delay_ms, doubling per failure up to the\n"
           "                           max; a wait over 1 s is refused at once with the time\n"
           "                           to retry. One check at a time per address\n"
           "\n"
           "Once listening, ferryd prints one line per listener to stdout and flushes:\n"
           "  ferryd: metrics on HOST:PORT             (with --metrics-listen; first)\n"
           "  ferryd: listening for MQTT over TLS on HOST:PORT  (with --mqtt-tls-listen)\n"
           "  ferryd: listening for MQTT on HOST:PORT  (with --mqtt-listen; before the next)\n"
           "  ferryd: listening for TLS on HOST:PORT   (with --tls-listen; before the next)\n"
           "  ferryd: listening on HOST:PORT           (unless --listen off)\n"
           "(the bound ports, useful with port 0). Logs go to stderr.\n"
           "Signals: SIGTERM/SIGINT stop gracefully (exit 0); SIGHUP reloads the log level,\n"
           "the auth file and the TLS certificate.\n"
           "\n"
           "Store (topics are persisted in LMDB in the data directory):\n"
           "  --sync always|none|interval[:MS]  in a file: sync always | sync none |\n"
           "                       sync interval MS. always (default): a PubAck means the\n"
           "                       message is in the write-ahead log and fsynced (one\n"
           "                       sequential sync per group commit; survives power loss).\n"
           "                       interval: the log is fsynced every MS (sync_interval_ms,\n"
           "                       default 100): a power cut may lose the acks of the last\n"
           "                       MS. none: never fsynced by ferryd: a power cut may lose\n"
           "                       the acks since the last checkpoint (at least one a second\n"
           "                       while publishing) that the OS had not written. All three\n"
           "                       survive kill -9 with nothing acked lost, and a power cut\n"
           "                       never damages the store. Connected tells clients which.\n"
           "  --ephemeral PATTERN  topics matching PATTERN are routed without storing\n"
           "                       (PubAck sequence 0); repeatable, in the file too\n"
           "  --last-value PATTERN stored topics matching PATTERN keep, per message key, its\n"
           "                       newest message: subscribers may start with the current\n"
           "                       value of every key (ferry sub's last-per-key), retention\n"
           "                       keeps them, and an empty payload deletes its key (a\n"
           "                       tombstone); keys at most 506 bytes; repeatable\n"
           "  --max-store-size N   most the store may grow to (default 64g; k/m/g); past\n"
           "                       it publishes get ERROR_STORAGE_FULL until space is freed\n"
           "  --initial-store-size N  map size of a new store (default 64m)\n"
           "  --retention \"PATTERN [max-msgs N] [max-bytes SIZE] [max-age DURATION]\"\n"
           "                       in a file: retention PATTERN max-msgs N ... (one line per\n"
           "                       rule; repeatable; the first matching rule applies).\n"
           "                       Stored topics matching PATTERN keep at most N messages,\n"
           "                       SIZE bytes (k/m/g) and nothing older than DURATION\n"
           "                       (500ms, 30s, 10m, 2h, 7d). Trimmed in the background every\n"
           "                       retention_interval_ms (default 1000), oldest first, in\n"
           "                       small transactions; the newest message is always kept.\n"
           "                       A durable consumer behind the trim resumes at the oldest\n"
           "                       kept message (Deliver.missed says how many it lost)\n"
           "  --consumer-max-idle DURATION  remove a durable consumer that no subscription\n"
           "                       held for DURATION (500ms, 30s, 10m, 2h, 7d; default off);\n"
           "                       logged. Idle time is counted in memory: since its last\n"
           "                       holder left, or since ferryd started for one not bound\n"
           "                       since (a restart restarts every durable's clock)\n"
           "  --dedupe-window DURATION  how long a producer's sequences are remembered for\n"
           "                       idempotent publishing (Publish.producer_id; default 2m;\n"
           "                       off: only the last 65536 sequences per producer and topic)\n"
           "  --verify DIR         check a store offline (CRCs, sequences, counters, index);\n"
           "                       prints a report, exits 0 if clean, 1 if not\n"
           "  --inspect DIR        print a store's topics (counts, sequence ranges) and\n"
           "                       durables (positions), offline or beside a running\n"
           "                       ferryd; --topic TOPIC [--from-seq N] [--count K] prints\n"
           "                       messages too; --json for one JSON document\n"
           "                       (ferryd --inspect --help says more)\n"
           "SIGTERM commits and acknowledges what is queued, then closes the store. A\n"
           "failed write or fsync (EIO) stops ferryd at once with status 1 (fail-stop).\n";
}

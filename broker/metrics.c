/*
 * metrics.c - /metrics, /healthz and /readyz over HTTP (metrics.h), with
 * libmicrohttpd on its own thread.
 *
 * Names follow Prometheus' conventions: the ferry_ prefix, base units
 * (seconds, bytes), _total on counters, histograms with cumulative le
 * buckets, _sum and _count. Per-topic and per-durable series are capped at
 * cfg.metrics_max_topics each (in name order); the rest are summed into one
 * series labelled "_other", so a broker with a million topics still answers
 * a scrape of bounded size.
 */
#include "metrics.h"

#include "acceptor.h"
#include "cluster.h"
#include "consumer.h"
#include "ferry.pb-c.h"
#include "log.h"
#include "server.h"
#include "store.h"

#include <errno.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct metrics {
    struct MHD_Daemon *d;
    struct server *s;
};

/* ---- the text being built -------------------------------------------- */

struct text {
    char *p;
    size_t len, cap;
    int is_nomem;
};

static void put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct text *t, const char *fmt, ...)
{
    for (int tries = 0; tries < 2 && !t->is_nomem; tries++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->is_nomem = 1;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap * 2 > t->len + (size_t)n + 1 ? t->cap * 2 : t->len + (size_t)n + 1;
        char *p = realloc(t->p, cap);
        if (p == NULL) {
            t->is_nomem = 1;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
}

/* A label value, escaped as the text format asks (\\, \", \n). */
static void put_label(struct text *t, const char *v)
{
    for (const char *c = v; *c; c++) {
        if (*c == '\\' || *c == '"') {
            put(t, "\\%c", *c);
        } else if (*c == '\n') {
            put(t, "\\n");
        } else {
            put(t, "%c", *c);
        }
    }
}

static void family(struct text *t, const char *name, const char *type, const char *help)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void one(struct text *t, const char *name, const char *type, const char *help, uint64_t v)
{
    family(t, name, type, help);
    put(t, "%s %llu\n", name, (unsigned long long)v);
}

/* A latency histogram from the store's quarter-octave buckets (store.h:
 * bucket i's upper bound is 2^((i + 1) / 4) us), with one le per octave
 * from 2 us to 2^25 us (33.5 s). sum_us: the sum of what was counted. */
static void lat_hist(struct text *t, const char *name, const char *help, const uint64_t *b,
                     uint64_t sum_us)
{
    family(t, name, "histogram", help);
    uint64_t acc = 0, total = 0;
    for (int i = 0; i < STORE_LAT_BUCKETS; i++) {
        total += b[i];
    }
    for (int k = 0; k < 25; k++) {
        for (int i = 4 * k; i < 4 * k + 4; i++) {
            acc += b[i];
        }
        put(t, "%s_bucket{le=\"%g\"} %llu\n", name, (double)(2ull << k) / 1e6,
            (unsigned long long)acc);
    }
    put(t, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
        (unsigned long long)total, name, (double)sum_us / 1e6, name, (unsigned long long)total);
}

/* ---- server, store ----------------------------------------------------- */

static void server_part(struct text *t, struct server *s)
{
    struct stats_snapshot st;
    server_stats(s, &st);
    family(t, "ferry_build_info", "gauge", "ferryd's version (the value is 1)");
    put(t, "ferry_build_info{version=\"%s\",server_id=\"%s\"} 1\n", FERRY_VERSION, s->server_id);
    family(t, "ferry_start_time_seconds", "gauge", "When ferryd started, seconds since the epoch");
    put(t, "ferry_start_time_seconds %.3f\n", (double)s->start_ms / 1e3);
    one(t, "ferry_connections", "gauge", "Client connections open now", st.conns);
    one(t, "ferry_connections_accepted_total", "counter", "Client connections accepted",
        st.conns_total);
    one(t, "ferry_subscriptions", "gauge", "Subscriptions open now", st.subs);
    one(t, "ferry_messages_in_total", "counter", "Publish frames accepted", st.msgs_in);
    one(t, "ferry_messages_out_total", "counter", "Deliver frames queued to subscribers",
        st.msgs_out);
    one(t, "ferry_bytes_in_total", "counter", "Bytes read from clients", st.bytes_in);
    one(t, "ferry_bytes_out_total", "counter", "Bytes written to clients", st.bytes_out);
    one(t, "ferry_slow_consumers_total", "counter", "Subscribers disconnected as too slow",
        st.slow_consumers);
    one(t, "ferry_protocol_errors_total", "counter", "Connections closed for protocol errors",
        st.protocol_errors);
    one(t, "ferry_auth_failures_total", "counter", "Logins refused", st.auth_failures);
    one(t, "ferry_permission_denials_total", "counter",
        "Publishes, subscriptions and admin requests refused by an ACL", st.permission_denials);
    one(t, "ferry_publish_duplicates_total", "counter",
        "Idempotent publishes found stored already, answered and not stored again",
        st.pub_duplicates);
    family(t, "ferry_publishes_refused_total", "counter",
           "Publishes refused, by the error code of the answer");
    const ProtobufCEnumDescriptor *codes = &ferry__error_code__descriptor;
    uint64_t other = st.pub_refused[STATS_CODES - 1];
    for (unsigned i = 0; i < codes->n_values; i++) {
        int v = codes->values[i].value;
        if (v <= 0 || v >= STATS_CODES - 1) {
            continue;
        }
        const char *name = codes->values[i].name;
        put(t, "ferry_publishes_refused_total{code=\"");
        for (const char *c = strncmp(name, "ERROR_", 6) == 0 ? name + 6 : name; *c; c++) {
            put(t, "%c", *c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
        }
        put(t, "\"} %llu\n", (unsigned long long)st.pub_refused[v]);
    }
    put(t, "ferry_publishes_refused_total{code=\"other\"} %llu\n", (unsigned long long)other);
}

/* Cluster mode: this broker's standing. 0, or -ENOMEM. */
static int cluster_part(struct text *t, struct cluster *cl)
{
    struct clu_meta m;
    if (clu_metadata(cl, NULL, 0, &m) < 0) {
        return -ENOMEM;
    }
    uint64_t live = 0, owned = 0;
    for (uint32_t i = 0; i < m.n_brokers; i++) {
        live += m.brokers[i].is_live != 0;
        owned += m.brokers[i].id == m.self_id ? m.brokers[i].n_topics : 0;
    }
    one(t, "ferry_cluster_serving", "gauge",
        "1 while this broker's ZooKeeper session is confirmed, 0 while it is fenced",
        (uint64_t)(m.is_serving != 0));
    one(t, "ferry_cluster_controller", "gauge", "1 if this broker is the cluster's controller",
        (uint64_t)(m.controller_id == m.self_id));
    one(t, "ferry_cluster_controller_epoch", "gauge", "The controller epoch this broker knows",
        m.controller_epoch);
    one(t, "ferry_cluster_brokers_live", "gauge", "Brokers of the cluster registered now", live);
    one(t, "ferry_cluster_topics_owned", "gauge", "Topics placed on this broker", owned);
    clu_meta_free(&m);
    return 0;
}

/* A scrape counts every acked message: it waits (up to 100 ms, off the IO
 * threads) for the writer to commit what it has routed (server.h, struct
 * store_gens). */
static void wait_store_readable(struct server *s)
{
    for (int i = 0; i < 500 && !server_store_readable(s); i++) {
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
}

static void store_part(struct text *t, struct store *st)
{
    struct store_stats ss;
    store_stats(st, &ss);
    one(t, "ferry_store_used_bytes", "gauge", "Bytes of the store's map in use", ss.map_used);
    one(t, "ferry_store_map_bytes", "gauge", "Size of the store's map now", ss.map_size);
    one(t, "ferry_store_map_max_bytes", "gauge", "Most the store's map may grow to",
        ss.map_size_max);
    one(t, "ferry_store_topics", "gauge", "Topics known to the store", ss.n_topics);
    one(t, "ferry_store_scheduled_messages", "gauge", "Delayed messages not yet due",
        ss.n_scheduled);
    one(t, "ferry_store_commits_total", "counter", "Group commits of the store writer",
        ss.n_commits);
    one(t, "ferry_store_messages_total", "counter", "Messages those commits stored", ss.n_appends);
    one(t, "ferry_store_checkpoints_total", "counter", "Checkpoints made durable",
        ss.n_checkpoints);
    one(t, "ferry_store_full_errors_total", "counter", "Writes refused as storage full",
        ss.n_full_errors);
    one(t, "ferry_crc_errors_total", "counter", "Stored messages that failed their check",
        ss.n_crc_errors);
    one(t, "ferry_store_failed", "gauge", "1 when the store has fail-stopped", ss.is_failed);
    lat_hist(t, "ferry_store_commit_duration_seconds",
             "Time to write (and under sync always, sync) each group commit", ss.commit_hist,
             ss.commit_us);
    lat_hist(t, "ferry_store_sync_duration_seconds", "Time of each fdatasync of the store's log",
             ss.sync_hist, ss.sync_us);
    family(t, "ferry_store_commit_messages", "histogram", "Messages per group commit");
    uint64_t acc = 0;
    for (int i = 0; i < STORE_MSGS_BUCKETS - 1; i++) {
        acc += ss.commit_msgs_hist[i];
        put(t, "ferry_store_commit_messages_bucket{le=\"%llu\"} %llu\n",
            (unsigned long long)((1ull << i) - 1), (unsigned long long)acc);
    }
    acc += ss.commit_msgs_hist[STORE_MSGS_BUCKETS - 1];
    put(t,
        "ferry_store_commit_messages_bucket{le=\"+Inf\"} %llu\n"
        "ferry_store_commit_messages_sum %llu\nferry_store_commit_messages_count %llu\n",
        (unsigned long long)acc, (unsigned long long)ss.n_appends, (unsigned long long)acc);
}

/* ---- topics -------------------------------------------------------------- */

struct topic_row {
    char *name; /* NULL: the "_other" row */
    uint64_t msgs, bytes, last_seq;
};

struct topic_rows {
    struct topic_row *v;
    size_t n, cap, max;
    struct topic_row other;
    int has_other, is_nomem;
};

static int topic_row_cb(void *ctx, const char *name, size_t name_len,
                        const struct store_topic_info *in)
{
    struct topic_rows *r = ctx;
    if (r->n == r->max) {
        r->has_other = 1;
        r->other.msgs += in->n_msgs;
        r->other.bytes += in->n_bytes;
        r->other.last_seq = in->last_seq > r->other.last_seq ? in->last_seq : r->other.last_seq;
        return 0;
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        struct topic_row *v = realloc(r->v, cap * sizeof(*v));
        if (v == NULL) {
            r->is_nomem = 1;
            return 1;
        }
        r->v = v;
        r->cap = cap;
    }
    struct topic_row *row = &r->v[r->n];
    if ((row->name = strndup(name, name_len)) == NULL) {
        r->is_nomem = 1;
        return 1;
    }
    row->msgs = in->n_msgs;
    row->bytes = in->n_bytes;
    row->last_seq = in->last_seq;
    r->n++;
    return 0;
}

static void topic_series(struct text *t, const struct topic_rows *r, const char *name, size_t off)
{
    for (size_t i = 0; i <= r->n; i++) {
        const struct topic_row *row = i < r->n ? &r->v[i] : r->has_other ? &r->other : NULL;
        if (row == NULL) {
            break;
        }
        put(t, "%s{topic=\"", name);
        put_label(t, row->name ? row->name : "_other");
        put(t, "\"} %llu\n", (unsigned long long)*(const uint64_t *)((const char *)row + off));
    }
}

static int topics_part(struct text *t, struct server *s)
{
    struct topic_rows r = {.max = s->cfg.metrics_max_topics};
    int rc = store_topic_list(s->store, "", 0, topic_row_cb, &r);
    if (rc >= 0 && !r.is_nomem) {
        family(t, "ferry_topic_messages", "gauge", "Messages stored now, per topic");
        topic_series(t, &r, "ferry_topic_messages", offsetof(struct topic_row, msgs));
        family(t, "ferry_topic_bytes", "gauge", "Payload, key and header bytes stored, per topic");
        topic_series(t, &r, "ferry_topic_bytes", offsetof(struct topic_row, bytes));
        family(t, "ferry_topic_last_sequence", "gauge",
               "The topic's newest sequence (the largest, for _other)");
        topic_series(t, &r, "ferry_topic_last_sequence", offsetof(struct topic_row, last_seq));
    }
    for (size_t i = 0; i < r.n; i++) {
        free(r.v[i].name);
    }
    free(r.v);
    return r.is_nomem ? -ENOMEM : 0;
}

/* ---- durable consumers ------------------------------------------------- */

struct dur_row {
    const char *topic, *name, *pattern; /* into the cons_info; NULL: "_other" */
    uint64_t v[7];
};

enum { D_PENDING, D_REDELIVERING, D_REDELIVERIES, D_DEAD, D_LAG, D_LAG_MS, D_HOLDERS, D_N };

static const struct {
    const char *name, *type, *help;
} dur_fam[D_N] = {
    {"ferry_durable_pending_messages", "gauge", "Delivered and not yet acked"},
    {"ferry_durable_redelivering_messages", "gauge", "Pending messages delivered more than once"},
    {"ferry_durable_redeliveries_total", "counter", "Messages handed out again since loaded"},
    {"ferry_durable_dead_letters_total", "counter", "Messages moved to the dead-letter topic"},
    {"ferry_durable_lag_messages", "gauge", "Messages above the ack floor"},
    {"ferry_durable_lag_seconds", "gauge",
     "Age of the oldest stored message above the ack floor (0 when caught up)"},
    {"ferry_durable_holders", "gauge", "Subscriptions bound to the durable now"},
};

static int match_all(void *ctx, const char *topic, size_t len)
{
    (void)ctx;
    (void)topic;
    (void)len;
    return 1;
}

static int durables_part(struct text *t, struct server *s)
{
    struct cons_info *v = NULL;
    size_t n = 0;
    int rc = cons_reg_list(s->consumers, match_all, NULL, &v, &n);
    if (rc < 0) {
        return rc == -ENOMEM ? rc : 0; /* a store that cannot be read: no series */
    }
    struct dur_row *rows = calloc(n + 1, sizeof(*rows));
    if (rows == NULL) {
        free(v);
        return -ENOMEM;
    }
    size_t nr = 0, max = s->cfg.metrics_max_topics;
    struct dur_row other = {0};
    int has_other = 0;
    int64_t now_ns = now_realtime_ns();
    for (size_t i = 0; i < n; i++) {
        if (v[i].is_root) {
            continue; /* its positions carry its figures */
        }
        uint64_t lag = 0, lag_ms = 0;
        cons_lag(s->store, v[i].topic, v[i].ack_floor, now_ns, &lag, &lag_ms);
        struct dur_row d = {v[i].topic,
                            v[i].name,
                            v[i].pattern,
                            {v[i].n_pending, v[i].n_redelivered, v[i].n_redeliveries,
                             v[i].n_dead_letters, lag, lag_ms, v[i].n_holders}};
        if (nr < max) {
            rows[nr++] = d;
            continue;
        }
        has_other = 1;
        for (int k = 0; k < D_N; k++) {
            other.v[k] =
                k == D_LAG_MS ? (d.v[k] > other.v[k] ? d.v[k] : other.v[k]) : other.v[k] + d.v[k];
        }
    }
    if (has_other) {
        rows[nr++] = other;
    }
    for (int k = 0; k < D_N; k++) {
        family(t, dur_fam[k].name, dur_fam[k].type, dur_fam[k].help);
        for (size_t i = 0; i < nr; i++) {
            put(t, "%s{topic=\"", dur_fam[k].name);
            put_label(t, rows[i].topic ? rows[i].topic : "_other");
            put(t, "\",durable=\"");
            put_label(t, rows[i].name ? rows[i].name : "_other");
            put(t, "\",pattern=\"");
            put_label(t, rows[i].pattern ? rows[i].pattern : "");
            if (k == D_LAG_MS) {
                put(t, "\"} %.3f\n", (double)rows[i].v[k] / 1e3);
            } else {
                put(t, "\"} %llu\n", (unsigned long long)rows[i].v[k]);
            }
        }
    }
    free(rows);
    free(v);
    return 0;
}

int metrics_render(struct server *s, char **out, size_t *len)
{
    struct text t = {.p = malloc(16384), .cap = 16384};
    if (t.p == NULL) {
        return -ENOMEM;
    }
    t.p[0] = '\0';
    server_part(&t, s);
    if (s->store != NULL) {
        wait_store_readable(s);
        store_part(&t, s->store);
        if (topics_part(&t, s) < 0) {
            t.is_nomem = 1;
        }
    }
    if (s->consumers != NULL && durables_part(&t, s) < 0) {
        t.is_nomem = 1;
    }
    if (s->cluster != NULL && cluster_part(&t, s->cluster) < 0) {
        t.is_nomem = 1;
    }
    if (t.is_nomem) {
        free(t.p);
        return -ENOMEM;
    }
    *out = t.p;
    *len = t.len;
    return 0;
}

/* ---- HTTP ------------------------------------------------------------------ */

static enum MHD_Result answer(struct MHD_Connection *conn, unsigned status, char *body, size_t len,
                              enum MHD_ResponseMemoryMode mode, const char *type)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    if (r == NULL) {
        if (mode == MHD_RESPMEM_MUST_FREE) {
            free(body);
        }
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result answer_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
    return answer(conn, status, (char *)text, strlen(text), MHD_RESPMEM_PERSISTENT,
                  "text/plain; charset=utf-8");
}

/* Ready: serving (phase run, is_ready set by main once listening) with a
 * healthy store. why: what is not. */
static int is_ready(struct server *s, const char **why)
{
    if (!atomic_load(&s->is_ready) || atomic_load(&s->phase) != PHASE_RUN) {
        *why = "not ready: starting or stopping\n";
        return 0;
    }
    if (s->store != NULL && store_is_failed(s->store)) {
        *why = "not ready: the store has failed (see the log)\n";
        return 0;
    }
    return 1;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct metrics *m = cls;
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        return answer_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    }
    if (strcmp(url, "/healthz") == 0) {
        return answer_text(conn, MHD_HTTP_OK, "ok\n");
    }
    if (strcmp(url, "/readyz") == 0) {
        const char *why;
        return is_ready(m->s, &why) ? answer_text(conn, MHD_HTTP_OK, "ready\n")
                                    : answer_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, why);
    }
    if (strcmp(url, "/metrics") == 0) {
        char *body;
        size_t len;
        if (metrics_render(m->s, &body, &len) < 0) {
            return answer_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory\n");
        }
        return answer(conn, MHD_HTTP_OK, body, len, MHD_RESPMEM_MUST_FREE,
                      "text/plain; version=0.0.4; charset=utf-8");
    }
    return answer_text(conn, MHD_HTTP_NOT_FOUND, "not found: try /metrics, /healthz, /readyz\n");
}

/* Runs on libmicrohttpd's thread as each connection starts: names that
 * thread "metrics" for the log before anything of the connection is logged
 * (one prctl per connection; scrapes are rare). */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode toe)
{
    (void)cls;
    (void)conn;
    (void)socket_ctx;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        log_thread_name_set("metrics");
    }
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[256];
    vsnprintf(line, sizeof(line), fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    log_warn("metrics: %s", line);
}

int metrics_start(struct server *s, struct metrics **out, int *port)
{
    int fd;
    int rc = acc_listen_socket(s->cfg.metrics_host, s->cfg.metrics_port, &fd, port);
    if (rc < 0) {
        return rc;
    }
    struct metrics *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        close(fd);
        return -ENOMEM;
    }
    m->s = s;
    /* One thread of its own; a few connections at a time (scrapers and
     * probes), each given 10 s. */
    /* The logger first: libmicrohttpd warns (on its own logger) otherwise. */
    m->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG, 0,
                            NULL, NULL, on_request, m, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                            MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT, 16u,
                            MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_NOTIFY_CONNECTION,
                            on_connection, NULL, MHD_OPTION_END);
    if (m->d == NULL) {
        log_error("metrics: cannot start the HTTP server on %s:%d", s->cfg.metrics_host, *port);
        close(fd);
        free(m);
        return -EIO;
    }
    *out = m;
    return 0;
}

void metrics_stop(struct metrics *m)
{
    if (m == NULL) {
        return;
    }
    MHD_stop_daemon(m->d); /* joins its thread; closes the listening socket too */
    free(m);
}

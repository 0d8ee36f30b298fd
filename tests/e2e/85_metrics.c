/*
 * 85_metrics.c - ferryd's HTTP endpoint (--metrics-listen): /metrics in
 * Prometheus' text format, /healthz, /readyz (issue 15, item 1).
 *
 * A real ferryd with the endpoint on a free loopback port, driven with
 * libferry; scrapes with a small HTTP/1.0 client. The figures that must
 * move do (messages in, commits, a stalled durable's lag), promtool accepts
 * a scrape, the label cap holds, and publishing goes on while scrapes run.
 */
#include "e2e_util.h"
#include "store_e2e.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#define BODY_MAX (4u << 20)

Suite *test_suite(void);

/* GET path from 127.0.0.1:port: the status, and the body into a malloc'd
 * *body (NUL-ended). Fails the test on a transport error. */
static int http_get(int port, const char *path, char **body)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    char req[256];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", path);
    ck_assert_int_eq(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
    char *buf = malloc(BODY_MAX + 1);
    ck_assert_ptr_nonnull(buf);
    size_t len = 0;
    int64_t deadline = s_now_ms() + T_WAIT;
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        int left = (int)(deadline - s_now_ms());
        ck_assert_msg(left > 0 && poll(&p, 1, left) == 1, "GET %s: no answer", path);
        ssize_t r = read(fd, buf + len, BODY_MAX - len);
        ck_assert_int_ge(r, 0);
        if (r == 0) {
            break;
        }
        len += (size_t)r;
        ck_assert_uint_lt(len, BODY_MAX);
    }
    close(fd);
    buf[len] = '\0';
    int status = 0;
    ck_assert_int_eq(sscanf(buf, "HTTP/1.%*d %d", &status), 1);
    char *start = strstr(buf, "\r\n\r\n");
    ck_assert_ptr_nonnull(start);
    memmove(buf, start + 4, len - (size_t)(start + 4 - buf) + 1);
    *body = buf;
    return status;
}

static char *scrape(const struct ferryd_proc *d)
{
    char *body;
    ck_assert_int_eq(http_get(d->metrics_port, "/metrics", &body), 200);
    return body;
}

/* The value of the series whose line starts with series (name and labels,
 * exactly), or -1 when there is none. */
static double value_of(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ') {
            return strtod(p + n + 1, NULL);
        }
    }
    return -1;
}

static void start_with_metrics(struct ferryd_proc *d, const char *extra)
{
    const char *const args[] = {"--metrics-listen", "127.0.0.1:0",
                                extra ? "--metrics-max-topics" : NULL, extra, NULL};
    ck_assert_int_eq(ferryd_start(d, NULL, args), 0);
    ck_assert_int_gt(d->metrics_port, 0);
}

/* A durable that takes messages and never acks them. */
static ferry_sub *stalled_durable(ferry_client *c, const char *topic, const char *name)
{
    ferry_sub_options *so;
    ck_assert_int_eq(ferry_sub_options_create(&so), 0);
    ck_assert_int_eq(ferry_sub_options_set_durable(so, name), 0);
    ck_assert_int_eq(ferry_sub_options_set_ack_wait_ms(so, 600000), 0);
    ferry_sub *s;
    int rc = ferry_subscribe(c, topic, so, NULL, NULL, S_WAIT, &s);
    ferry_sub_options_destroy(so);
    ck_assert_msg(rc == 0, "subscribe %s: %s", topic, ferry_strerror(rc));
    return s;
}

START_TEST(health_and_ready)
{
    struct ferryd_proc d;
    start_with_metrics(&d, NULL);
    char *body;
    ck_assert_int_eq(http_get(d.metrics_port, "/healthz", &body), 200);
    free(body);
    ck_assert_int_eq(http_get(d.metrics_port, "/readyz", &body), 200);
    free(body);
    ck_assert_int_eq(http_get(d.metrics_port, "/nope", &body), 404);
    free(body);
    STOP(&d);
}
END_TEST

/* Figures that must move: messages in, commits, the topic's count, and a
 * stalled durable's pending messages and lag (in messages and seconds). */
START_TEST(figures_move)
{
    struct ferryd_proc d;
    start_with_metrics(&d, NULL);
    char *before = scrape(&d);
    ck_assert_double_eq(value_of(before, "ferry_messages_in_total"), 0);
    ferry_client *c = s_client(&d, 0);
    ferry_sub *s = stalled_durable(c, "m.t", "stall");
    for (int i = 0; i < 50; i++) {
        s_pub(c, "m.t", "payload");
    }
    /* what the durable was handed is pending: all 50, once delivered */
    uint64_t seq;
    char buf[32];
    for (int i = 0; i < 50; i++) {
        s_next(s, &seq, buf, sizeof(buf));
    }
    char *after = scrape(&d);
    ck_assert_double_eq(value_of(after, "ferry_messages_in_total"), 50);
    ck_assert_double_ge(value_of(after, "ferry_store_commits_total"), 1);
    ck_assert_double_ge(value_of(after, "ferry_store_commit_messages_count"), 1);
    ck_assert_double_eq(value_of(after, "ferry_store_commit_messages_sum"), 50);
    ck_assert_double_eq(value_of(after, "ferry_topic_messages{topic=\"m.t\"}"), 50);
    ck_assert_double_eq(value_of(after, "ferry_topic_last_sequence{topic=\"m.t\"}"), 50);
    const char *lbl = "{topic=\"m.t\",durable=\"stall\",pattern=\"\"}";
    char series[160];
    snprintf(series, sizeof(series), "ferry_durable_lag_messages%s", lbl);
    ck_assert_double_eq(value_of(after, series), 50);
    snprintf(series, sizeof(series), "ferry_durable_pending_messages%s", lbl);
    ck_assert_double_eq(value_of(after, series), 50);
    snprintf(series, sizeof(series), "ferry_durable_holders%s", lbl);
    ck_assert_double_eq(value_of(after, series), 1);
    /* the lag in seconds grows while nothing is acked */
    snprintf(series, sizeof(series), "ferry_durable_lag_seconds%s", lbl);
    double lag0 = value_of(after, series);
    ck_assert_double_ge(lag0, 0);
    double lag1 = lag0;
    int64_t deadline = s_now_ms() + S_WAIT;
    while (lag1 <= lag0 + 0.05 && s_now_ms() < deadline) {
        char *again = scrape(&d);
        lag1 = value_of(again, series);
        free(again);
    }
    ck_assert_msg(lag1 > lag0 + 0.05, "lag_seconds did not grow: %g then %g", lag0, lag1);
    /* a refused publish is counted by its code */
    ferry_pub big = {.topic = "m.t", .payload = "x", .payload_len = 1};
    char topic[300];
    memset(topic, 'a', sizeof(topic) - 1);
    topic[sizeof(topic) - 1] = '\0';
    big.topic = topic; /* above max_topic_len 255 */
    ck_assert_int_ne(ferry_publish_sync(c, &big, S_WAIT, &seq), 0);
    char *refused = scrape(&d);
    ck_assert_double_eq(value_of(refused, "ferry_publishes_refused_total{code=\"invalid_topic\"}"),
                        1);
    free(refused);
    ferry_unsubscribe(s);
    s_close(c);
    free(before);
    free(after);
    STOP(&d);
}
END_TEST

/* promtool (Debian prometheus) accepts a scrape with topics, durables and
 * histograms in it; without promtool the case is skipped (77). */
START_TEST(promtool_accepts)
{
    if (system("command -v promtool >/dev/null 2>&1") != 0) {
        fprintf(stderr, "promtool not found (Debian: prometheus): skipped\n");
        exit(77);
    }
    struct ferryd_proc d;
    start_with_metrics(&d, NULL);
    ferry_client *c = s_client(&d, 0);
    ferry_sub *s = stalled_durable(c, "p.>", "wild");
    s_pub(c, "p.a", "1");
    s_pub(c, "p.b", "2");
    s_pub(c, "p.c", "3");
    char *body = scrape(&d);
    char path[300];
    snprintf(path, sizeof(path), "%s/scrape.txt", d.data_dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(body, f);
    fclose(f);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "promtool check metrics < %s", path);
    int rc = system(cmd);
    ck_assert_msg(rc == 0, "promtool check metrics failed (status %d) on:\n%s", rc, body);
    free(body);
    ferry_unsubscribe(s);
    s_close(c);
    STOP(&d);
}
END_TEST

/* metrics_max_topics: 3 topics get their own series, the rest one
 * topic="_other" that sums them. */
START_TEST(label_cap)
{
    struct ferryd_proc d;
    start_with_metrics(&d, "3");
    ferry_client *c = s_client(&d, 0);
    char topic[32];
    for (int i = 0; i < 10; i++) {
        snprintf(topic, sizeof(topic), "cap.t%d", i);
        for (int k = 0; k <= i; k++) {
            s_pub(c, topic, "x");
        }
    }
    char *body = scrape(&d);
    int n_series = 0;
    for (const char *p = body; (p = strstr(p, "\nferry_topic_messages{")) != NULL; p++) {
        n_series++;
    }
    ck_assert_int_eq(n_series, 4);
    /* t0..t2 (1 + 2 + 3 messages) by name, t3..t9 summed: 4 + ... + 10 */
    ck_assert_double_eq(value_of(body, "ferry_topic_messages{topic=\"cap.t2\"}"), 3);
    ck_assert_double_eq(value_of(body, "ferry_topic_messages{topic=\"_other\"}"), 49);
    ck_assert_double_eq(value_of(body, "ferry_topic_last_sequence{topic=\"_other\"}"), 10);
    free(body);
    s_close(c);
    STOP(&d);
}
END_TEST

/* ---- publishing while scrapes run ---------------------------------------- */

struct scraper {
    const struct ferryd_proc *d;
    atomic_int is_stopping; /* atomic: the test sets it, the scraper reads it */
    atomic_int n;           /* atomic: scrapes done (the scraper writes) */
};

static void *scrape_loop(void *arg)
{
    struct scraper *sc = arg;
    while (!atomic_load(&sc->is_stopping)) {
        char *body;
        if (http_get(sc->d->metrics_port, "/metrics", &body) == 200) {
            atomic_fetch_add(&sc->n, 1);
        }
        free(body);
    }
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* n acked publishes, one at a time; their latencies (us) sorted into v. */
static void timed_pubs(ferry_client *c, int64_t *v, int n)
{
    for (int i = 0; i < n; i++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        s_pub(c, "load.t", "payload");
        clock_gettime(CLOCK_MONOTONIC, &b);
        v[i] = (b.tv_sec - a.tv_sec) * 1000000 + (b.tv_nsec - a.tv_nsec) / 1000;
    }
    qsort(v, (size_t)n, sizeof(*v), cmp_i64);
}

/* A scrape of a broker with 500 topics and 50 durables, over and over,
 * while a publisher waits for each ack: the median publish takes about as
 * long as without scrapes (the scrape locks nothing on the publish path).
 * Bounds are generous (a shared 2-core machine); the figures are printed. */
START_TEST(scrape_does_not_stall)
{
    struct ferryd_proc d;
    start_with_metrics(&d, NULL);
    ferry_client *c = s_client(&d, 0);
    char topic[32], name[32];
    ferry_sub *subs[50];
    for (int i = 0; i < 500; i++) {
        snprintf(topic, sizeof(topic), "many.t%d", i);
        s_pub(c, topic, "x");
    }
    for (int i = 0; i < 50; i++) {
        snprintf(topic, sizeof(topic), "many.t%d", i);
        snprintf(name, sizeof(name), "d%d", i);
        subs[i] = stalled_durable(c, topic, name);
    }
    enum { N = 400 };
    static int64_t base[N], during[N];
    timed_pubs(c, base, N);
    struct scraper sc = {.d = &d};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, scrape_loop, &sc), 0);
    while (atomic_load(&sc.n) < 1) {
        sched_yield();
    }
    int n0 = atomic_load(&sc.n);
    timed_pubs(c, during, N);
    int scrapes = atomic_load(&sc.n) - n0;
    atomic_store(&sc.is_stopping, 1);
    pthread_join(th, NULL);
    fprintf(stderr,
            "publish latency without scrapes: p50 %lld us, p99 %lld us; with %d scrapes "
            "running: p50 %lld us, p99 %lld us\n",
            (long long)base[N / 2], (long long)base[N * 99 / 100], scrapes,
            (long long)during[N / 2], (long long)during[N * 99 / 100]);
    ck_assert_int_ge(scrapes, 2);
    ck_assert_msg(during[N / 2] <= 3 * base[N / 2] + 5000,
                  "median publish %lld us while scraping, %lld us without",
                  (long long)during[N / 2], (long long)base[N / 2]);
    for (int i = 0; i < 50; i++) {
        ferry_unsubscribe(subs[i]);
    }
    s_close(c);
    STOP(&d);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("e2e_85_metrics");
    TCase *t = tcase_create("health_and_ready");
    tcase_add_test(t, health_and_ready);
    suite_add_tcase(s, t);
    t = tcase_create("figures_move");
    tcase_add_test(t, figures_move);
    suite_add_tcase(s, t);
    t = tcase_create("promtool_accepts");
    tcase_add_test(t, promtool_accepts);
    suite_add_tcase(s, t);
    t = tcase_create("label_cap");
    tcase_add_test(t, label_cap);
    suite_add_tcase(s, t);
    t = tcase_create("scrape_does_not_stall");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, scrape_does_not_stall);
    suite_add_tcase(s, t);
    return s;
}

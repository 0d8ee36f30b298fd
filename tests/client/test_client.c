/*
 * test_client.c - libferry against a real ferryd on a free loopback port.
 *
 * Every test case starts its own broker (ferryd_start: port 0, fresh data
 * dir) so that cases are independent and can run in parallel. Nothing
 * waits for a fixed time: waits are for a condition, with generous
 * deadlines (the machine is small and busy).
 *
 * Test cases (each a ctest entry test_client.<case>):
 *   args, strerror          bad arguments, error texts
 *   connect_refused          server gone, failover to the next server
 *   connect_timeout          a listener that never answers Connect
 *   loop_pubsub              event-loop mode: fd/events/timeout/process
 *   thread_pubsub            thread mode, several publishing threads
 *   next_msg                 blocking "next message" with timeouts, bounded queue
 *   window_nonblocking       full async window returns -EAGAIN
 *   window_blocking          full async window blocks; never exceeded
 *   publish_errors           server-refused and locally refused publishes
 *   subscribe_errors         server-refused subscriptions, sync and async
 *   unsubscribe              no callback after unsubscribe (also from its own)
 *   callback_rules           blocking calls from a callback return -EDEADLK
 *   reconnect_resend         broker killed mid-stream and restarted on the
 *                            same port: re-subscribe, unacked re-sent
 *   reconnect_fail_unacked   same, with unacked publishes failed by option
 *   reconnect_loop           the same in event-loop mode, one client
 *   reconnect_stress         three kills under a continuous async stream:
 *                            every publish completes exactly once, all ok
 *   reconnect_gives_up       event-loop mode, broker gone for good
 *   keepalive                a frozen broker is detected by the keepalive
 *   timeouts                 ack timeout, and every blocking call's timeout
 *   close_flush              close waits for acks, then everything is ECLOSED
 *   ack                      explicit acks, message copies
 *   queue_group              a group shares the messages among its members
 *   admin                    server stats
 *   needs_store              sequences, start positions, topic admin; skipped
 *                            (exit 77) while the broker acks with sequence 0
 *   needs_durables           durable consumers; skipped (exit 77) while the
 *                            broker refuses them (they come after the store)
 */
#include "ferry.h"
#include "ferryd_proc.h"

#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 20000 /* generous: a slow, shared 2-core machine */

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct ferryd_proc g_broker;

static void broker_start(void)
{
    int rc = ferryd_start(&g_broker, NULL, NULL);
    ck_assert_msg(rc == 0, "ferryd_start: %s", strerror(-rc));
}

static void broker_stop(void)
{
    if (g_broker.pid != 0) {
        ferryd_stop(&g_broker);
    }
}

/* Restart the killed broker on the port it had, so clients reconnect to the
 * address they know. */
static void broker_restart_same_port(void)
{
    int rc = ferryd_restart_same_port(&g_broker, NULL);
    ck_assert_msg(rc == 0, "ferryd_restart_same_port: %s", strerror(-rc));
}

/* Stop the broker (SIGSTOP) and wait until it is stopped: kill() returns
 * before every thread of the process has stopped. */
static void broker_freeze(void)
{
    ck_assert_int_eq(kill(g_broker.pid, SIGSTOP), 0);
    int st = 0;
    pid_t r = waitpid(g_broker.pid, &st, WUNTRACED);
    ck_assert_int_eq(r, g_broker.pid);
    ck_assert(WIFSTOPPED(st));
}

/* Event log shared by callbacks and the test thread. */
struct evlog {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int n[8]; /* per ferry_event_type */
    int last_code[8];
    uint64_t last_ref[8];
    int last_ref_kind[8];
    int n_msgs;     /* message callbacks */
    int n_pub_ok;   /* publish callbacks with status 0 */
    int n_pub_fail; /* ... with an error */
    int last_pub_status;
    uint64_t last_seq;
    char last_payload[256];
    char last_header[64];
    char last_key[64];
    int order_ok;   /* per-publisher order kept */
    int n_err_refs; /* ref ids of error events, in order */
    uint64_t err_refs[64];
    int err_codes[64];
    long next_expected[4];
};

static void evlog_init(struct evlog *l)
{
    memset(l, 0, sizeof(*l));
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cond, NULL);
    l->order_ok = 1;
}

static void evlog_deinit(struct evlog *l)
{
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cond);
}

static void on_event(ferry_client *c, const ferry_event *ev, void *ud)
{
    (void)c;
    struct evlog *l = ud;
    ck_assert_ptr_nonnull(ev->text);
    ck_assert_ptr_nonnull(ev->server);
    pthread_mutex_lock(&l->mu);
    l->n[ev->type]++;
    l->last_code[ev->type] = ev->code;
    l->last_ref[ev->type] = ev->ref_id;
    l->last_ref_kind[ev->type] = (int)ev->ref_kind;
    if (ev->type == FERRY_EVENT_ERROR && l->n_err_refs < 64) {
        l->err_codes[l->n_err_refs] = ev->code;
        l->err_refs[l->n_err_refs++] = ev->ref_id;
    }
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->mu);
}

static void on_pub_done(ferry_client *c, int status, uint64_t seq, void *ud)
{
    (void)c;
    struct evlog *l = ud;
    pthread_mutex_lock(&l->mu);
    if (status == 0) {
        l->n_pub_ok++;
    } else {
        l->n_pub_fail++;
    }
    l->last_pub_status = status;
    l->last_seq = seq;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->mu);
}

/* Payloads "P<publisher>:<n>" are checked for per-publisher order. */
static void on_msg(ferry_client *c, ferry_sub *s, const ferry_msg *m, void *ud)
{
    (void)c;
    struct evlog *l = ud;
    size_t len = 0;
    const char *p = ferry_msg_data(m, &len);
    ck_assert_uint_eq(ferry_msg_sub_id(m), ferry_sub_id(s));
    pthread_mutex_lock(&l->mu);
    l->n_msgs++;
    snprintf(l->last_payload, sizeof(l->last_payload), "%.*s", (int)len, p);
    const char *h = ferry_msg_header(m, "h1");
    snprintf(l->last_header, sizeof(l->last_header), "%s", h != NULL ? h : "");
    size_t klen = 0;
    const char *k = ferry_msg_key(m, &klen);
    snprintf(l->last_key, sizeof(l->last_key), "%.*s", (int)klen, k);
    int pubr;
    long n;
    if (sscanf(l->last_payload, "P%d:%ld", &pubr, &n) == 2 && pubr >= 0 && pubr < 4) {
        if (n != l->next_expected[pubr]) {
            l->order_ok = 0;
        }
        l->next_expected[pubr] = n + 1;
    }
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->mu);
}

/* Wait (thread mode) until *field >= want. */
static int evlog_wait(struct evlog *l, const int *field, int want, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    pthread_mutex_lock(&l->mu);
    while (*field < want && now_ms() < deadline) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&l->cond, &l->mu, &ts);
    }
    int ok = *field >= want;
    pthread_mutex_unlock(&l->mu);
    return ok;
}

/* Wait (thread mode) for an error event about ref id; returns its code or 0
 * if none came. */
static int evlog_wait_ref(struct evlog *l, uint64_t ref, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        pthread_mutex_lock(&l->mu);
        int seen = l->n_err_refs;
        for (int i = 0; i < seen; i++) {
            if (l->err_refs[i] == ref) {
                int code = l->err_codes[i];
                pthread_mutex_unlock(&l->mu);
                return code;
            }
        }
        pthread_mutex_unlock(&l->mu);
        if (now_ms() >= deadline) {
            return 0;
        }
        evlog_wait(l, &l->n_err_refs, seen + 1, 100);
    }
}

static int evlog_get(struct evlog *l, const int *field)
{
    pthread_mutex_lock(&l->mu);
    int v = *field;
    pthread_mutex_unlock(&l->mu);
    return v;
}

/* Drive an event-loop-mode client the way an application's poll loop does,
 * until *field >= want. Returns 1 when reached. */
static int loop_until(ferry_client *c, struct evlog *l, const int *field, int want, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    while (evlog_get(l, field) < want) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            return 0;
        }
        int fd = ferry_client_fd(c);
        int events = ferry_client_events(c);
        int t = ferry_client_timeout_ms(c);
        ck_assert_int_ge(events, 0);
        if (t < 0 || t > left) {
            t = (int)left;
        }
        struct pollfd p = {.fd = fd, .events = (short)events};
        int n = poll(&p, fd >= 0 ? 1 : 0, t);
        ck_assert_int_ge(n, 0);
        int rc = ferry_client_process(c, p.revents);
        if (rc == FERRY_ECLOSED) {
            return evlog_get(l, field) >= want;
        }
        ck_assert_int_eq(rc, 0);
    }
    return 1;
}

struct copts {
    int thread;
    uint32_t max_inflight;
    int window_blocks;
    int resend;
    int reconnect;
    uint32_t max_attempts;
    uint32_t keepalive_ms;
    uint32_t connect_timeout_ms;
    const char *servers; /* NULL: the test broker */
};

static ferry_client *client_new(const struct copts *co, struct evlog *l)
{
    ferry_options *o;
    ck_assert_int_eq(ferry_options_create(&o), 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", g_broker.port);
    ck_assert_int_eq(ferry_options_set_servers(o, co->servers ? co->servers : addr), 0);
    ck_assert_int_eq(ferry_options_set_name(o, "test_client"), 0);
    if (co->max_inflight) {
        ck_assert_int_eq(ferry_options_set_max_inflight(o, co->max_inflight), 0);
    }
    ck_assert_int_eq(ferry_options_set_window_blocks(o, co->window_blocks), 0);
    ck_assert_int_eq(ferry_options_set_resend_unacked(o, co->resend), 0);
    ck_assert_int_eq(ferry_options_set_reconnect(o, co->reconnect, co->max_attempts, 20, 200, 20),
                     0);
    if (co->keepalive_ms) {
        ck_assert_int_eq(ferry_options_set_keepalive_ms(o, co->keepalive_ms), 0);
    }
    if (co->connect_timeout_ms) {
        ck_assert_int_eq(ferry_options_set_connect_timeout_ms(o, co->connect_timeout_ms), 0);
    }
    if (l != NULL) {
        ck_assert_int_eq(ferry_options_set_event_cb(o, on_event, l), 0);
    }
    ferry_client *c = NULL;
    ck_assert_int_eq(ferry_client_create(o, &c), 0);
    ferry_options_destroy(o);
    if (co->thread) {
        ck_assert_int_eq(ferry_client_start_thread(c), 0);
    }
    return c;
}

static ferry_client *client_connect(const struct copts *co, struct evlog *l)
{
    ferry_client *c = client_new(co, l);
    int rc = ferry_client_connect(c, WAIT_MS);
    ck_assert_msg(rc == 0, "connect: %s", ferry_strerror(rc));
    ck_assert_int_eq(ferry_client_state(c), FERRY_STATE_CONNECTED);
    return c;
}

static const struct copts DEFAULT_LOOP = {.window_blocks = 1, .resend = 1, .reconnect = 1};
static const struct copts DEFAULT_THREAD = {
    .thread = 1, .window_blocks = 1, .resend = 1, .reconnect = 1};

static ferry_pub text_pub(const char *topic, const char *text)
{
    ferry_pub m = {.topic = topic, .payload = text, .payload_len = strlen(text)};
    return m;
}

/* A port on which nothing listens: bind, read the port, close. */
static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    broker_start();
}

static void teardown(void)
{
    broker_stop();
}

/* ------------------------------------------------------------------------ */
/* args, strerror                                                           */

START_TEST(test_args_rejected_with_einval)
{
    ferry_options *o = NULL;
    ck_assert_int_eq(ferry_options_create(NULL), -EINVAL);
    ck_assert_int_eq(ferry_options_create(&o), 0);
    ck_assert_int_eq(ferry_options_set_servers(o, NULL), -EINVAL);
    ck_assert_int_eq(ferry_options_set_servers(o, ""), -EINVAL);
    ck_assert_int_eq(ferry_options_set_servers(o, "host:0"), -EINVAL);
    ck_assert_int_eq(ferry_options_set_servers(o, "host:65536"), -EINVAL);
    ck_assert_int_eq(ferry_options_set_servers(o, "host:12x"), -EINVAL);
    ck_assert_int_eq(ferry_options_set_servers(o, "::1:7373"), -EINVAL);
    ck_assert_int_eq(ferry_options_set_servers(o, "a:1,,b:2"), -EINVAL);
    ck_assert_int_eq(ferry_options_set_servers(o, "a:1, b:2,[::1]:3,c"), 0);
    ck_assert_int_eq(ferry_options_set_servers(o, "tls://"), -EINVAL);
    ck_assert_int_eq(ferry_options_set_servers(o, "tls://a:0"), -EINVAL);
    ck_assert_int_eq(ferry_options_set_servers(o, "tls://a:1,tls://[::1]:3,tcp://b:2"), 0);
    ck_assert_int_eq(ferry_options_set_tls(NULL, NULL, NULL, NULL, 1), -EINVAL);
    ck_assert_int_eq(ferry_options_set_tls(o, NULL, "cert.pem", NULL, 1), -EINVAL);
    ck_assert_int_eq(ferry_options_set_tls(o, NULL, NULL, "key.pem", 1), -EINVAL);
    ck_assert_int_eq(ferry_options_set_tls(o, "", NULL, NULL, 1), -EINVAL);
    int tls_rc = ferry_options_set_tls(o, "ca.pem", "cert.pem", "key.pem", 1);
    ck_assert(tls_rc == 0 || tls_rc == -ENOTSUP); /* -ENOTSUP: built without OpenSSL */
    ck_assert_int_eq(ferry_options_set_name(o, "bad\xff"), -EINVAL);
    ck_assert_int_eq(ferry_options_set_connect_timeout_ms(o, 0), -EINVAL);
    ck_assert_int_eq(ferry_options_set_max_inflight(o, 0), -EINVAL);
    ck_assert_int_eq(ferry_options_set_reconnect(o, 1, 0, 0, 10, 0), -EINVAL);
    ck_assert_int_eq(ferry_options_set_reconnect(o, 1, 0, 10, 5, 0), -EINVAL);
    ck_assert_int_eq(ferry_options_set_reconnect(o, 1, 0, 10, 50, 101), -EINVAL);
    ck_assert_int_eq(ferry_options_set_token(o, "tok"), 0);
    ck_assert_int_eq(ferry_options_set_user_password(o, "u", "p"), 0);
    ck_assert_int_eq(ferry_options_set_log_cb(o, NULL, NULL, (enum ferry_log_level)9), -EINVAL);

    ferry_sub_options *so = NULL;
    ck_assert_int_eq(ferry_sub_options_create(NULL), -EINVAL);
    ck_assert_int_eq(ferry_sub_options_create(&so), 0);
    ck_assert_int_eq(ferry_sub_options_set_start(so, FERRY_START_SEQUENCE, 0), -EINVAL);
    ck_assert_int_eq(ferry_sub_options_set_start(so, FERRY_START_LAST, -1), -EINVAL);
    ck_assert_int_eq(ferry_sub_options_set_start(so, (enum ferry_start)7, 1), -EINVAL);
    ck_assert_int_eq(ferry_sub_options_set_ack_mode(so, (enum ferry_ack_mode)5), -EINVAL);
    ck_assert_int_eq(ferry_sub_options_set_queue_max(so, 0), -EINVAL);

    ferry_client *c = NULL;
    ck_assert_int_eq(ferry_client_create(o, NULL), -EINVAL);
    ck_assert_int_eq(ferry_client_create(NULL, &c), 0); /* all defaults */
    ck_assert_int_eq(ferry_client_connect(NULL, 10), -EINVAL);
    ck_assert_int_eq(ferry_client_connect(c, -1), -EINVAL);
    ck_assert_int_eq(ferry_publish(NULL, "a", "x", 1), -EINVAL);
    ck_assert_int_eq(ferry_publish(c, NULL, "x", 1), -EINVAL);
    ck_assert_int_eq(ferry_publish(c, "a", NULL, 1), -EINVAL);
    ck_assert_int_eq(ferry_publish(c, "a.*", "x", 1), -EINVAL);
    ck_assert_int_eq(ferry_publish(c, "a..b", "x", 1), -EINVAL);
    ck_assert_int_eq(ferry_publish(c, "a b", "x", 1), -EINVAL);
    ck_assert_int_eq(ferry_publish(c, "a.", "x", 1), -EINVAL);
    ck_assert_int_eq(ferry_publish(c, "a", "x", 1), FERRY_ENOTREADY); /* valid, not connected */
    ferry_pub m = text_pub("a", "x");
    ck_assert_int_eq(ferry_publish_sync(c, &m, 0, NULL), -EINVAL);
    ck_assert_int_eq(ferry_publish_sync(c, NULL, 10, NULL), -EINVAL);
    ck_assert_int_eq(ferry_publish_async(c, NULL, NULL, NULL, NULL), -EINVAL);
    ck_assert_int_eq(ferry_publish_async(c, &m, NULL, NULL, NULL), FERRY_ENOTREADY);
    ferry_header bad_h = {"k", NULL};
    ferry_pub mh = {.topic = "a", .headers = &bad_h, .n_headers = 1};
    ck_assert_int_eq(ferry_publish_msg(c, &mh, NULL), -EINVAL);
    ferry_sub *s = NULL;
    ck_assert_int_eq(ferry_subscribe(c, NULL, NULL, NULL, NULL, 0, &s), -EINVAL);
    ck_assert_int_eq(ferry_subscribe(c, "", NULL, NULL, NULL, 0, &s), -EINVAL);
    ck_assert_int_eq(ferry_subscribe(c, "a", NULL, NULL, NULL, -1, &s), -EINVAL);
    ck_assert_int_eq(ferry_subscribe(c, "a", NULL, NULL, NULL, 0, NULL), -EINVAL);
    ck_assert_int_eq(ferry_subscribe(c, "a", NULL, NULL, NULL, 100, &s), FERRY_ENOTREADY);
    ck_assert_int_eq(ferry_sub_options_set_durable(so, "d"), 0); /* sets explicit acks */
    ck_assert_int_eq(ferry_sub_options_set_ack_mode(so, FERRY_ACK_NONE), 0);
    ck_assert_int_eq(ferry_subscribe(c, "a", so, NULL, NULL, 0, &s), -EINVAL);
    ck_assert_int_eq(ferry_unsubscribe(NULL), -EINVAL);
    ck_assert_int_eq(ferry_sub_next(NULL, 0, NULL), -EINVAL);
    ck_assert_int_eq(ferry_msg_ack(NULL, FERRY_ACK), -EINVAL);
    ck_assert_int_eq(ferry_msg_copy(NULL, NULL), -EINVAL);
    ck_assert_int_eq(ferry_flush(NULL, 10), -EINVAL);
    ck_assert_int_eq(ferry_client_close(NULL, 10), -EINVAL);
    ck_assert_int_eq(ferry_client_server_info(c, NULL), -EINVAL);
    ferry_server_info info;
    ck_assert_int_eq(ferry_client_server_info(c, &info), FERRY_ENOTREADY);
    ck_assert_int_eq(ferry_admin_stats(c, 10, NULL), -EINVAL);
    ferry_stats st;
    ck_assert_int_eq(ferry_admin_stats(c, 0, &st), -EINVAL);
    ck_assert_int_eq(ferry_admin_stats(c, 100, &st), FERRY_ENOTREADY);
    ck_assert_int_eq(ferry_client_fd(NULL), -EINVAL);
    ck_assert_int_eq(ferry_client_fd(c), -1);
    ck_assert_int_eq(ferry_client_events(c), 0);
    ck_assert_int_eq(ferry_client_timeout_ms(c), -1);
    ck_assert_int_eq(ferry_client_process(NULL, 0), -EINVAL);
    ck_assert_int_eq(ferry_client_process(c, 0), 0);
    ck_assert_int_eq(ferry_client_state(c), FERRY_STATE_IDLE);
    ck_assert_uint_eq(ferry_client_inflight(c), 0);
    ck_assert_int_eq(ferry_client_last_error(c, NULL, 0), FERRY_ENOTREADY);

    /* Thread mode: the event-loop calls are refused. */
    ck_assert_int_eq(ferry_client_start_thread(c), 0);
    ck_assert_int_eq(ferry_client_start_thread(c), -EALREADY);
    ck_assert_int_eq(ferry_client_fd(c), -EINVAL);
    ck_assert_int_eq(ferry_client_events(c), -EINVAL);
    ck_assert_int_eq(ferry_client_process(c, 0), -EINVAL);

    ck_assert_int_eq(ferry_client_close(c, 100), 0);
    ck_assert_int_eq(ferry_client_close(c, 100), FERRY_ECLOSED);
    ck_assert_int_eq(ferry_client_connect(c, 100), FERRY_ECLOSED);
    ck_assert_int_eq(ferry_client_state(c), FERRY_STATE_CLOSED);
    ferry_client_destroy(c);
    ferry_client_destroy(NULL);
    ferry_sub_options_destroy(so);
    ferry_options_destroy(o);
}
END_TEST

START_TEST(test_strerror_explains_every_code)
{
#define CHECK_TEXT(name, value, text)                                                              \
    ck_assert_str_eq(ferry_strerror(value), text);                                                 \
    ck_assert_int_eq(FERRY_##name, value);
    FERRY_ERRNO_MAP(CHECK_TEXT)
#undef CHECK_TEXT
    ck_assert_str_eq(ferry_strerror(-ECONNREFUSED), strerror(ECONNREFUSED));
    ck_assert_str_eq(ferry_strerror(-ETIMEDOUT), strerror(ETIMEDOUT));
    ck_assert_str_eq(ferry_strerror(0), "success");
    ck_assert_str_eq(ferry_strerror(-1099), "unknown error");
    ck_assert_str_eq(ferry_strerror(12345), "unknown error");
    ck_assert_int_eq(FERRY_ERR_FROM_WIRE(7), FERRY_EINVALIDTOPIC);
    char v[32];
    snprintf(v, sizeof(v), "%d.%d.%d", FERRY_VERSION_MAJOR, FERRY_VERSION_MINOR,
             FERRY_VERSION_PATCH);
    ck_assert_str_eq(ferry_version(), v);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* connect                                                                  */

struct logrec {
    int n;
    int n_warn;
    char last[512];
};

static void on_log(void *ud, enum ferry_log_level level, const char *msg)
{
    struct logrec *r = ud;
    r->n++;
    r->n_warn += level <= FERRY_LOG_WARN;
    snprintf(r->last, sizeof(r->last), "%s", msg);
}

START_TEST(test_connect_refused_then_failover)
{
    char servers[128];
    int dead = dead_port();
    snprintf(servers, sizeof(servers), "127.0.0.1:%d", dead);
    struct copts co = DEFAULT_LOOP;
    co.servers = servers;
    struct logrec lr = {0};
    ferry_options *o;
    ck_assert_int_eq(ferry_options_create(&o), 0);
    ck_assert_int_eq(ferry_options_set_servers(o, servers), 0);
    ck_assert_int_eq(ferry_options_set_log_cb(o, on_log, &lr, FERRY_LOG_WARN), 0);
    ferry_client *c;
    ck_assert_int_eq(ferry_client_create(o, &c), 0);
    ferry_options_destroy(o);
    ck_assert_int_eq(ferry_client_connect(c, WAIT_MS), -ECONNREFUSED);
    ck_assert_int_ge(lr.n_warn, 1);
    ck_assert_int_eq(lr.n, lr.n_warn); /* nothing above the level asked for */
    ck_assert_msg(strstr(lr.last, servers) != NULL, "log names the server: %s", lr.last);
    ferry_client_destroy(c);
    c = client_new(&co, NULL);
    ck_assert_int_eq(ferry_client_connect(c, WAIT_MS), -ECONNREFUSED);
    char why[256];
    ck_assert_int_eq(ferry_client_last_error(c, why, sizeof(why)), -ECONNREFUSED);
    ck_assert_msg(strstr(why, servers) != NULL, "last error names the server: %s", why);
    ck_assert_int_eq(ferry_client_state(c), FERRY_STATE_IDLE);
    ck_assert_int_eq(ferry_client_connect(c, WAIT_MS), -ECONNREFUSED); /* may retry */
    ferry_client_destroy(c);

    /* The first server is gone, the second one answers. Thread mode. */
    snprintf(servers, sizeof(servers), "127.0.0.1:%d,127.0.0.1:%d", dead, g_broker.port);
    co = DEFAULT_THREAD;
    co.servers = servers;
    c = client_new(&co, NULL);
    ck_assert_int_eq(ferry_client_connect(c, WAIT_MS), 0);
    ck_assert_int_eq(ferry_client_connect(c, WAIT_MS), -EALREADY);
    ferry_server_info info;
    ck_assert_int_eq(ferry_client_server_info(c, &info), 0);
    char want[64];
    snprintf(want, sizeof(want), "127.0.0.1:%d", g_broker.port);
    ck_assert_str_eq(info.address, want);
    ck_assert_uint_eq(info.protocol_version, 1);
    ck_assert_uint_gt(strlen(info.server_id), 0);
    ck_assert_uint_gt(info.max_frame_len, 0);
    ck_assert_uint_gt(info.keepalive_ms, 0);
    ck_assert_int_eq(ferry_client_close(c, WAIT_MS), 0);
    ferry_client_destroy(c);

    /* A name: every address it resolves to is tried ("localhost" may
     * give ::1 first, where ferryd does not listen). */
    snprintf(servers, sizeof(servers), "localhost:%d", g_broker.port);
    co = DEFAULT_LOOP;
    co.servers = servers;
    c = client_new(&co, NULL);
    ck_assert_int_eq(ferry_client_connect(c, WAIT_MS), 0);
    ferry_client_destroy(c);
}
END_TEST

START_TEST(test_connect_times_out_on_silent_server)
{
    /* A listener that never accepts: TCP completes in the backlog, Connect is
     * never answered. */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(lfd, 8), 0);
    socklen_t len = sizeof(a);
    getsockname(lfd, (struct sockaddr *)&a, &len);
    char servers[64];
    snprintf(servers, sizeof(servers), "127.0.0.1:%d", ntohs(a.sin_port));

    /* The per-server attempt times out. */
    struct copts co = DEFAULT_LOOP;
    co.servers = servers;
    co.connect_timeout_ms = 300;
    ferry_client *c = client_new(&co, NULL);
    int64_t t0 = now_ms();
    ck_assert_int_eq(ferry_client_connect(c, WAIT_MS), -ETIMEDOUT);
    ck_assert_int_ge(now_ms() - t0, 300);
    ferry_client_destroy(c);

    /* The overall timeout is shorter than the attempt's (thread mode). */
    co = DEFAULT_THREAD;
    co.servers = servers;
    c = client_new(&co, NULL);
    ck_assert_int_eq(ferry_client_connect(c, 200), -ETIMEDOUT);
    ck_assert_int_eq(ferry_client_state(c), FERRY_STATE_IDLE);
    ferry_client_destroy(c);

    /* timeout 0: starts, returns -EINPROGRESS; the outcome is an event. */
    struct evlog l;
    evlog_init(&l);
    co = DEFAULT_LOOP;
    co.servers = servers;
    co.connect_timeout_ms = 200;
    c = client_new(&co, &l);
    ck_assert_int_eq(ferry_client_connect(c, 0), -EINPROGRESS);
    ck_assert_int_eq(ferry_client_state(c), FERRY_STATE_CONNECTING);
    ck_assert(loop_until(c, &l, &l.n[FERRY_EVENT_DISCONNECTED], 1, WAIT_MS));
    ck_assert_int_eq(l.last_code[FERRY_EVENT_DISCONNECTED], -ETIMEDOUT);
    ck_assert_int_eq(ferry_client_state(c), FERRY_STATE_IDLE);
    ferry_client_destroy(c);
    evlog_deinit(&l);
    close(lfd);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Event-loop mode                                                          */

START_TEST(test_loop_pubsub_roundtrip)
{
    struct evlog l;
    evlog_init(&l);
    ferry_client *c = client_new(&DEFAULT_LOOP, &l);
    /* A subscription made before connecting, and a publish made while the
     * connect is in progress, are sent once connected. */
    ferry_sub *early;
    ck_assert_int_eq(ferry_subscribe(c, "early.>", NULL, NULL, NULL, 0, &early), 0);
    /* Non-blocking connect, completed by the application's loop. */
    int rc = ferry_client_connect(c, 0);
    ck_assert(rc == -EINPROGRESS || rc == 0);
    ferry_pub em = text_pub("early.a", "queued");
    ck_assert_int_eq(ferry_publish_async(c, &em, on_pub_done, &l, NULL), 0);
    ck_assert(loop_until(c, &l, &l.n[FERRY_EVENT_CONNECTED], 1, WAIT_MS));
    ck_assert(loop_until(c, &l, &l.n_pub_ok, 1, WAIT_MS));
    l.n_pub_ok = 0;
    /* The Subscribe went out before the Publish, so the message is ours. */
    ferry_msg *qm;
    ck_assert_int_eq(ferry_sub_next(early, WAIT_MS, &qm), 0);
    ck_assert_mem_eq(ferry_msg_data(qm, NULL), "queued", 6);
    ferry_msg_destroy(qm);
    ck_assert_int_eq(ferry_unsubscribe(early), 0);
    ck_assert_int_ge(ferry_client_fd(c), 0);
    ck_assert_int_ne(ferry_client_events(c) & FERRY_POLLIN, 0);
    ck_assert_int_ge(ferry_client_timeout_ms(c), 0); /* keepalive timer */

    ferry_sub *s;
    ck_assert_int_eq(ferry_subscribe(c, "loop.>", NULL, on_msg, &l, WAIT_MS, &s), 0);

    /* Fire-and-forget with headers and key. */
    ferry_header h[2] = {{"h1", "v1"}, {"h2", "v2"}};
    ferry_pub m = {.topic = "loop.a",
                   .payload = "P0:0",
                   .payload_len = 4,
                   .key = "K1",
                   .key_len = 2,
                   .headers = h,
                   .n_headers = 2};
    uint64_t id = 0;
    ck_assert_int_eq(ferry_publish_msg(c, &m, &id), 0);
    ck_assert_uint_gt(id, 0);
    ck_assert(loop_until(c, &l, &l.n_msgs, 1, WAIT_MS));
    ck_assert_str_eq(l.last_payload, "P0:0");
    ck_assert_str_eq(l.last_header, "v1");
    ck_assert_str_eq(l.last_key, "K1");

    /* Async with callback, then sync; the sync call drives the loop itself. */
    ferry_pub m2 = text_pub("loop.a", "P0:1"); /* order holds per topic */
    ck_assert_int_eq(ferry_publish_async(c, &m2, on_pub_done, &l, NULL), 0);
    ferry_pub m3 = text_pub("loop.a", "P0:2");
    uint64_t seq = 99;
    ck_assert_int_eq(ferry_publish_sync(c, &m3, WAIT_MS, &seq), 0);
    ck_assert(loop_until(c, &l, &l.n_msgs, 3, WAIT_MS));
    ck_assert(loop_until(c, &l, &l.n_pub_ok, 1, WAIT_MS));
    ck_assert(l.order_ok);
    ck_assert_int_eq(ferry_flush(c, WAIT_MS), 0);
    ck_assert_uint_eq(ferry_client_inflight(c), 0);

    ck_assert_int_eq(ferry_unsubscribe(s), 0);
    ck_assert_int_eq(ferry_client_close(c, WAIT_MS), 0);
    ck_assert_int_eq(ferry_client_process(c, 0), FERRY_ECLOSED);
    ck_assert_int_eq(l.n[FERRY_EVENT_CLOSED], 1);
    ferry_client_destroy(c);
    evlog_deinit(&l);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Thread mode                                                              */

#define THREAD_PUBS 3
#define THREAD_MSGS 500

struct pub_thread {
    ferry_client *c;
    struct evlog *l;
    int idx;
    int rc;
};

static void *publisher(void *arg)
{
    struct pub_thread *p = arg;
    char topic[32];
    snprintf(topic, sizeof(topic), "thr.%d", p->idx);
    for (int i = 0; i < THREAD_MSGS && p->rc == 0; i++) {
        char text[32];
        snprintf(text, sizeof(text), "P%d:%d", p->idx, i);
        ferry_pub m = text_pub(topic, text);
        if (i % 100 == 99) {
            p->rc = ferry_publish_sync(p->c, &m, WAIT_MS, NULL);
        } else if (i % 2 == 0) {
            p->rc = ferry_publish_async(p->c, &m, on_pub_done, p->l, NULL);
        } else {
            p->rc = ferry_publish(p->c, topic, text, strlen(text));
        }
    }
    return NULL;
}

START_TEST(test_thread_pubsub_from_many_threads)
{
    struct evlog l;
    evlog_init(&l);
    ferry_client *c = client_connect(&DEFAULT_THREAD, &l);
    ferry_client *sc = client_connect(&DEFAULT_THREAD, NULL);
    ferry_sub *s;
    ck_assert_int_eq(ferry_subscribe(sc, "thr.*", NULL, on_msg, &l, WAIT_MS, &s), 0);
    pthread_t th[THREAD_PUBS];
    struct pub_thread pt[THREAD_PUBS];
    for (int i = 0; i < THREAD_PUBS; i++) {
        pt[i] = (struct pub_thread){.c = c, .l = &l, .idx = i};
        ck_assert_int_eq(pthread_create(&th[i], NULL, publisher, &pt[i]), 0);
    }
    for (int i = 0; i < THREAD_PUBS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(pt[i].rc == 0, "publisher %d: %s", i, ferry_strerror(pt[i].rc));
    }
    ck_assert_int_eq(ferry_flush(c, WAIT_MS), 0);
    ck_assert_uint_eq(ferry_client_inflight(c), 0);
    int async_per_thread = 0;
    for (int i = 0; i < THREAD_MSGS; i++) {
        async_per_thread += i % 100 != 99 && i % 2 == 0;
    }
    ck_assert_int_eq(evlog_get(&l, &l.n_pub_ok), THREAD_PUBS * async_per_thread);
    ck_assert(evlog_wait(&l, &l.n_msgs, THREAD_PUBS * THREAD_MSGS, WAIT_MS));
    ck_assert_msg(l.order_ok, "messages of one publisher arrived out of order");
    ck_assert_int_eq(ferry_client_close(sc, WAIT_MS), 0);
    ck_assert_int_eq(ferry_client_close(c, WAIT_MS), 0);
    ferry_client_destroy(sc); /* s is released with its client */
    ferry_client_destroy(c);
    evlog_deinit(&l);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Blocking next message                                                    */

static void next_msg_case(const struct copts *co)
{
    struct evlog l;
    evlog_init(&l);
    ferry_client *c = client_connect(co, &l);
    ferry_sub_options *so;
    ck_assert_int_eq(ferry_sub_options_create(&so), 0);
    ck_assert_int_eq(ferry_sub_options_set_queue_max(so, 5), 0);
    ferry_sub *s;
    ck_assert_int_eq(ferry_subscribe(c, "nm.x", so, NULL, NULL, WAIT_MS, &s), 0);
    ferry_sub_options_destroy(so);
    ferry_msg *m = NULL;
    ck_assert_int_eq(ferry_sub_next(s, 0, &m), -EAGAIN);
    int64_t t0 = now_ms();
    ck_assert_int_eq(ferry_sub_next(s, 150, &m), -ETIMEDOUT);
    ck_assert_int_ge(now_ms() - t0, 150);
    ck_assert_ptr_null(m);

    ferry_pub p = text_pub("nm.x", "one");
    ck_assert_int_eq(ferry_publish_sync(c, &p, WAIT_MS, NULL), 0);
    ck_assert_int_eq(ferry_sub_next(s, WAIT_MS, &m), 0);
    size_t len;
    const char *d = ferry_msg_data(m, &len);
    ck_assert_uint_eq(len, 3);
    ck_assert_mem_eq(d, "one", 3);
    ck_assert_str_eq(ferry_msg_topic(m), "nm.x");
    ck_assert_uint_eq(ferry_msg_attempt(m), 1);
    ck_assert_int_gt(ferry_msg_time(m), 0);
    ck_assert_uint_eq(ferry_msg_n_headers(m), 0);
    ck_assert_int_eq(ferry_msg_header_at(m, 0, NULL, NULL), -EINVAL);
    ferry_msg_destroy(m);

    /* Bounded queue: 5 kept, the rest dropped, counted and reported. */
    for (int i = 0; i < 12; i++) {
        char t[16];
        snprintf(t, sizeof(t), "m%d", i);
        ck_assert_int_eq(ferry_publish(c, "nm.x", t, strlen(t)), 0);
    }
    ck_assert_int_eq(ferry_flush(c, WAIT_MS), 0);
    /* Deliveries are fanned out by the broker's workers and may trail the
     * flush's Pong: wait until all 12 are accounted for. */
    int64_t deadline = now_ms() + WAIT_MS;
    while (ferry_sub_pending(s) + ferry_sub_dropped(s) < 12 && now_ms() < deadline) {
        if (co->thread) {
            struct timespec ts = {0, 5 * 1000000};
            nanosleep(&ts, NULL); /* polling counters, bounded by the deadline */
        } else {
            struct pollfd pf = {.fd = ferry_client_fd(c), .events = POLLIN};
            poll(&pf, 1, 50);
            ck_assert_int_eq(ferry_client_process(c, pf.revents), 0);
        }
    }
    if (co->thread) {
        ck_assert(evlog_wait(&l, &l.n[FERRY_EVENT_ERROR], 1, WAIT_MS));
    } else {
        ck_assert(loop_until(c, &l, &l.n[FERRY_EVENT_ERROR], 1, WAIT_MS));
    }
    ck_assert_int_eq(l.last_code[FERRY_EVENT_ERROR], FERRY_EQUEUEFULL);
    ck_assert_uint_eq(l.last_ref[FERRY_EVENT_ERROR], ferry_sub_id(s));
    ck_assert_uint_eq(ferry_sub_pending(s), 5);
    ck_assert_uint_eq(ferry_sub_dropped(s), 7);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(ferry_sub_next(s, WAIT_MS, &m), 0);
        char t[16];
        snprintf(t, sizeof(t), "m%d", i);
        ck_assert_mem_eq(ferry_msg_data(m, NULL), t, strlen(t));
        ferry_msg_destroy(m);
    }
    ck_assert_int_eq(ferry_sub_next(s, 0, &m), -EAGAIN);
    ck_assert_int_eq(ferry_client_close(c, WAIT_MS), 0);
    ck_assert_int_eq(ferry_sub_next(s, 100, &m), FERRY_ECLOSED);
    ck_assert_int_eq(ferry_unsubscribe(s), 0);
    ferry_client_destroy(c);
    evlog_deinit(&l);
}

START_TEST(test_next_msg_loop_mode)
{
    next_msg_case(&DEFAULT_LOOP);
}
END_TEST

START_TEST(test_next_msg_thread_mode)
{
    next_msg_case(&DEFAULT_THREAD);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Async window                                                             */

START_TEST(test_window_full_returns_eagain)
{
    /* Event-loop mode: nothing reads the PubAcks until we process, so the
     * window fills deterministically. */
    struct copts co = DEFAULT_LOOP;
    co.max_inflight = 4;
    co.window_blocks = 0;
    struct evlog l;
    evlog_init(&l);
    ferry_client *c = client_connect(&co, &l);
    ferry_pub m = text_pub("win.a", "x");
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(ferry_publish_async(c, &m, on_pub_done, &l, NULL), 0);
    }
    ck_assert_uint_eq(ferry_client_inflight(c), 4);
    ck_assert_int_eq(ferry_publish_async(c, &m, on_pub_done, &l, NULL), -EAGAIN);
    ck_assert(loop_until(c, &l, &l.n_pub_ok, 4, WAIT_MS));
    ck_assert_uint_eq(ferry_client_inflight(c), 0);
    ck_assert_int_eq(ferry_publish_async(c, &m, on_pub_done, &l, NULL), 0);
    ck_assert(loop_until(c, &l, &l.n_pub_ok, 5, WAIT_MS));
    ck_assert_int_eq(ferry_client_close(c, WAIT_MS), 0);
    ferry_client_destroy(c);
    evlog_deinit(&l);
}
END_TEST

static void window_blocks_case(int thread)
{
    struct copts co = thread ? DEFAULT_THREAD : DEFAULT_LOOP;
    co.max_inflight = 8;
    co.window_blocks = 1;
    struct evlog l;
    evlog_init(&l);
    ferry_client *c = client_connect(&co, &l);
    ferry_pub m = text_pub("win.b", "y");
    const int n = 2000;
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(ferry_publish_async(c, &m, on_pub_done, &l, NULL), 0);
        ck_assert_uint_le(ferry_client_inflight(c), 8);
    }
    ck_assert_int_eq(ferry_flush(c, WAIT_MS), 0);
    ck_assert_int_eq(evlog_get(&l, &l.n_pub_ok), n);
    ck_assert_int_eq(evlog_get(&l, &l.n_pub_fail), 0);
    ck_assert_int_eq(ferry_client_close(c, WAIT_MS), 0);
    ferry_client_destroy(c);
    evlog_deinit(&l);
}

START_TEST(test_window_full_blocks_thread_mode)
{
    window_blocks_case(1);
}
END_TEST

START_TEST(test_window_full_blocks_loop_mode)
{
    window_blocks_case(0);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Errors from the server                                                   */

START_TEST(test_publish_errors)
{
    struct evlog l;
    evlog_init(&l);
    ferry_client *c = client_connect(&DEFAULT_THREAD, &l);
    /* 17 tokens: over the server's default depth of 16. */
    const char *deep = "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q";
    ferry_pub m = text_pub(deep, "x");
    ck_assert_int_eq(ferry_publish_sync(c, &m, WAIT_MS, NULL), FERRY_EINVALIDTOPIC);
    char why[256];
    ck_assert_int_eq(ferry_client_last_error(c, why, sizeof(why)), FERRY_EINVALIDTOPIC);
    ck_assert_int_eq(ferry_publish_async(c, &m, on_pub_done, &l, NULL), 0);
    ck_assert(evlog_wait(&l, &l.n_pub_fail, 1, WAIT_MS));
    ck_assert_int_eq(l.last_pub_status, FERRY_EINVALIDTOPIC);
    /* Fire-and-forget: the refusal is an error event naming the publish. */
    uint64_t id = 0;
    ck_assert_int_eq(ferry_publish_msg(c, &m, &id), 0);
    ck_assert_int_eq(evlog_wait_ref(&l, id, WAIT_MS), FERRY_EINVALIDTOPIC);
    ck_assert_int_eq(l.last_ref_kind[FERRY_EVENT_ERROR], FERRY_REF_PUBLISH);
    /* Too large for the negotiated frame size: refused locally. */
    ferry_server_info info;
    ck_assert_int_eq(ferry_client_server_info(c, &info), 0);
    size_t big_len = (size_t)info.max_frame_len + 1;
    char *big = calloc(1, big_len);
    ferry_pub mb = {.topic = "big", .payload = big, .payload_len = big_len};
    ck_assert_int_eq(ferry_publish_sync(c, &mb, WAIT_MS, NULL), FERRY_EFRAMETOOLARGE);
    ck_assert_int_eq(ferry_publish(c, "big", big, big_len), FERRY_EFRAMETOOLARGE);
    free(big);
    /* The connection survived all of it. */
    ferry_pub ok = text_pub("fine", "x");
    ck_assert_int_eq(ferry_publish_sync(c, &ok, WAIT_MS, NULL), 0);
    ck_assert_int_eq(ferry_client_state(c), FERRY_STATE_CONNECTED);
    ck_assert_int_eq(evlog_get(&l, &l.n[FERRY_EVENT_DISCONNECTED]), 0);
    ck_assert_int_eq(ferry_client_close(c, WAIT_MS), 0);
    ferry_client_destroy(c);
    evlog_deinit(&l);
}
END_TEST

START_TEST(test_subscribe_errors)
{
    struct evlog l;
    evlog_init(&l);
    ferry_client *c = client_connect(&DEFAULT_THREAD, &l);
    ferry_sub *s = NULL;
    ck_assert_int_eq(ferry_subscribe(c, "a.>.b", NULL, NULL, NULL, WAIT_MS, &s),
                     FERRY_EINVALIDPATTERN);
    ck_assert_ptr_null(s);
    /* Without waiting: the refusal arrives as an event, the handle reports
     * it. */
    ck_assert_int_eq(ferry_subscribe(c, "a..b", NULL, NULL, NULL, 0, &s), 0);
    ck_assert(evlog_wait(&l, &l.n[FERRY_EVENT_ERROR], 1, WAIT_MS));
    ck_assert_int_eq(l.last_code[FERRY_EVENT_ERROR], FERRY_EINVALIDPATTERN);
    ck_assert_uint_eq(l.last_ref[FERRY_EVENT_ERROR], ferry_sub_id(s));
    ck_assert_int_eq(l.last_ref_kind[FERRY_EVENT_ERROR], FERRY_REF_SUBSCRIPTION);
    ferry_msg *m;
    ck_assert_int_eq(ferry_sub_next(s, WAIT_MS, &m), FERRY_EINVALIDPATTERN);
    ck_assert_int_eq(ferry_unsubscribe(s), 0);
    /* Subscribing from a callback-free thread with a good pattern works. */
    ck_assert_int_eq(ferry_subscribe(c, "a.*.b", NULL, NULL, NULL, WAIT_MS, &s), 0);
    ck_assert_int_eq(ferry_unsubscribe(s), 0);
    ck_assert_int_eq(ferry_client_close(c, WAIT_MS), 0);
    ferry_client_destroy(c);
    evlog_deinit(&l);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Unsubscribe                                                              */

struct self_unsub {
    struct evlog *l;
    ferry_sub *s;
    int calls;
};

static void on_msg_unsub_self(ferry_client *c, ferry_sub *s, const ferry_msg *m, void *ud)
{
    (void)c;
    (void)m;
    struct self_unsub *u = ud;
    ck_assert_ptr_eq(s, u->s);
    u->calls++;
    ck_assert_int_eq(ferry_unsubscribe(s), 0); /* from its own callback */
}

START_TEST(test_unsubscribe_stops_callbacks)
{
    struct evlog l1, l2;
    evlog_init(&l1);
    evlog_init(&l2);
    ferry_client *c = client_connect(&DEFAULT_THREAD, NULL);
    ferry_sub *s1, *s2, *s3;
    ck_assert_int_eq(ferry_subscribe(c, "us.a", NULL, on_msg, &l1, WAIT_MS, &s1), 0);
    ck_assert_int_eq(ferry_subscribe(c, "us.*", NULL, on_msg, &l2, WAIT_MS, &s2), 0);
    struct self_unsub u = {.l = &l1};
    /* Publish u.s before the callback can run: subscribe waits the SubAck
     * and no message was published yet. */
    ck_assert_int_eq(ferry_subscribe(c, "us.a", NULL, on_msg_unsub_self, &u, WAIT_MS, &s3), 0);
    u.s = s3;
    ferry_pub m = text_pub("us.a", "1");
    ck_assert_int_eq(ferry_publish_sync(c, &m, WAIT_MS, NULL), 0);
    ck_assert(evlog_wait(&l1, &l1.n_msgs, 1, WAIT_MS));
    ck_assert(evlog_wait(&l2, &l2.n_msgs, 1, WAIT_MS));
    ck_assert_int_eq(ferry_unsubscribe(s1), 0);
    /* After unsubscribe returned, s1's callback never runs again. */
    for (int i = 0; i < 50; i++) {
        ck_assert_int_eq(ferry_publish(c, "us.a", "2", 1), 0);
    }
    ck_assert_int_eq(ferry_flush(c, WAIT_MS), 0);
    ck_assert(evlog_wait(&l2, &l2.n_msgs, 51, WAIT_MS));
    ck_assert_int_eq(evlog_get(&l1, &l1.n_msgs), 1);
    ck_assert_int_eq(ferry_client_close(c, WAIT_MS), 0);
    ck_assert_int_eq(u.calls, 1);
    ferry_client_destroy(c);
    evlog_deinit(&l1);
    evlog_deinit(&l2);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* What a callback may and may not do                                       */

struct cb_rules {
    int done;
    int rc_sync, rc_flush, rc_next, rc_sub_wait, rc_close, rc_process, rc_async_full;
    int rc_publish, rc_sub_nowait, rc_unsub, rc_connect;
    pthread_mutex_t mu;
};

static void on_msg_rules(ferry_client *c, ferry_sub *s, const ferry_msg *m, void *ud)
{
    (void)m;
    struct cb_rules *r = ud;
    if (r->done) {
        return;
    }
    ferry_pub p = text_pub("rules.other", "x");
    ferry_sub *s2 = NULL;
    ferry_msg *msg = NULL;
    /* Blocking calls refuse with -EDEADLK. */
    r->rc_sync = ferry_publish_sync(c, &p, 1000, NULL);
    r->rc_flush = ferry_flush(c, 1000);
    r->rc_next = ferry_sub_next(s, 1000, &msg); /* s has a callback: -EINVAL */
    r->rc_sub_wait = ferry_subscribe(c, "rules.x", NULL, NULL, NULL, 1000, &s2);
    r->rc_close = ferry_client_close(c, 1000);
    r->rc_process = ferry_client_process(c, 0);
    r->rc_connect = ferry_client_connect(c, 1000);
    /* Non-blocking calls work. */
    r->rc_publish = ferry_publish(c, "rules.other", "y", 1);
    r->rc_sub_nowait = ferry_subscribe(c, "rules.y", NULL, NULL, NULL, 0, &s2);
    r->rc_unsub = s2 != NULL ? ferry_unsubscribe(s2) : -1;
    pthread_mutex_lock(&r->mu);
    r->done = 1;
    pthread_mutex_unlock(&r->mu);
}

START_TEST(test_callbacks_cannot_block)
{
    ferry_client *c = client_connect(&DEFAULT_THREAD, NULL);
    struct cb_rules r;
    memset(&r, 0, sizeof(r));
    pthread_mutex_init(&r.mu, NULL);
    ferry_sub *s;
    ck_assert_int_eq(ferry_subscribe(c, "rules.a", NULL, on_msg_rules, &r, WAIT_MS, &s), 0);
    ferry_pub m = text_pub("rules.a", "go");
    ck_assert_int_eq(ferry_publish_sync(c, &m, WAIT_MS, NULL), 0);
    ck_assert_int_eq(ferry_flush(c, WAIT_MS), 0);
    int64_t deadline = now_ms() + WAIT_MS;
    int done = 0;
    while (!done && now_ms() < deadline) {
        pthread_mutex_lock(&r.mu);
        done = r.done;
        pthread_mutex_unlock(&r.mu);
        if (!done) {
            struct timespec ts = {0, 5 * 1000000};
            nanosleep(&ts, NULL); /* polling a flag, bounded by the deadline */
        }
    }
    ck_assert(done);
    ck_assert_int_eq(r.rc_sync, -EDEADLK);
    ck_assert_int_eq(r.rc_flush, -EDEADLK);
    ck_assert_int_eq(r.rc_next, -EINVAL);
    ck_assert_int_eq(r.rc_sub_wait, -EDEADLK);
    ck_assert_int_eq(r.rc_close, -EDEADLK);
    ck_assert_int_eq(r.rc_process, -EINVAL); /* thread mode */
    ck_assert_int_eq(r.rc_connect, -EALREADY);
    ck_assert_int_eq(r.rc_publish, 0);
    ck_assert_int_eq(r.rc_sub_nowait, 0);
    ck_assert_int_eq(r.rc_unsub, 0);
    ck_assert_int_eq(ferry_client_state(c), FERRY_STATE_CONNECTED);
    ck_assert_int_eq(ferry_client_close(c, WAIT_MS), 0);
    ferry_client_destroy(c);
    pthread_mutex_destroy(&r.mu);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Reconnect                                                                */

static void wait_state(ferry_client *c, enum ferry_state want)
{
    int64_t deadline = now_ms() + WAIT_MS;
    while (ferry_client_state(c) != want && now_ms() < deadline) {
        struct timespec ts = {0, 5 * 1000000};
        nanosleep(&ts, NULL); /* polling a state, bounded by the deadline */
    }
    ck_assert_int_eq(ferry_client_state(c), want);
}

static void reconnect_case(int resend)
{
    struct evlog pl, sl;
    evlog_init(&pl);
    evlog_init(&sl);
    struct copts co = DEFAULT_THREAD;
    co.resend = resend;
    ferry_client *pc = client_connect(&co, &pl);
    ferry_client *sc = client_connect(&co, &sl);
    ferry_sub *s;
    ck_assert_int_eq(ferry_subscribe(sc, "rc.>", NULL, on_msg, &sl, WAIT_MS, &s), 0);
    ferry_pub m = text_pub("rc.a", "before");
    ck_assert_int_eq(ferry_publish_sync(pc, &m, WAIT_MS, NULL), 0);
    ck_assert(evlog_wait(&sl, &sl.n_msgs, 1, WAIT_MS));

    /* Freeze the broker so that these publishes stay unacked, then kill
     * it mid-stream. */
    broker_freeze();
    for (int i = 0; i < 10; i++) {
        ferry_pub p = text_pub("rc.a", "inflight");
        ck_assert_int_eq(ferry_publish_async(pc, &p, on_pub_done, &pl, NULL), 0);
    }
    ck_assert_uint_eq(ferry_client_inflight(pc), 10);
    ck_assert_int_eq(ferryd_kill9(&g_broker), 0);
    ck_assert(evlog_wait(&pl, &pl.n[FERRY_EVENT_DISCONNECTED], 1, WAIT_MS));
    ck_assert(evlog_wait(&sl, &sl.n[FERRY_EVENT_DISCONNECTED], 1, WAIT_MS));
    if (!resend) {
        ck_assert(evlog_wait(&pl, &pl.n_pub_fail, 10, WAIT_MS));
        ck_assert_int_eq(pl.last_pub_status, FERRY_EDISCONNECTED);
        ck_assert_uint_eq(ferry_client_inflight(pc), 0);
    } else {
        ck_assert_uint_eq(ferry_client_inflight(pc), 10);
    }
    ck_assert_int_eq(ferry_client_state(pc), FERRY_STATE_RECONNECTING);
    /* A fire-and-forget publish while disconnected is refused, not lost. */
    ck_assert_int_eq(ferry_publish(pc, "rc.a", "x", 1), FERRY_ENOTREADY);

    broker_restart_same_port();
    ck_assert(evlog_wait(&pl, &pl.n[FERRY_EVENT_RECONNECTED], 1, WAIT_MS));
    ck_assert(evlog_wait(&sl, &sl.n[FERRY_EVENT_RECONNECTED], 1, WAIT_MS));
    wait_state(pc, FERRY_STATE_CONNECTED);
    if (resend) {
        ck_assert(evlog_wait(&pl, &pl.n_pub_ok, 10, WAIT_MS));
        ck_assert_int_eq(evlog_get(&pl, &pl.n_pub_fail), 0);
    }
    /* The subscription was re-sent: the subscriber's SubAck was processed
     * before its RECONNECTED event? Not necessarily, so flush the
     * subscriber (its Ping is answered after its Subscribe). */
    ck_assert_int_eq(ferry_flush(sc, WAIT_MS), 0);
    int before = evlog_get(&sl, &sl.n_msgs);
    ferry_pub m2 = text_pub("rc.b", "after");
    ck_assert_int_eq(ferry_publish_sync(pc, &m2, WAIT_MS, NULL), 0);
    ck_assert(evlog_wait(&sl, &sl.n_msgs, before + 1, WAIT_MS));
    ck_assert_int_eq(ferry_client_close(pc, WAIT_MS), 0);
    ck_assert_int_eq(ferry_client_close(sc, WAIT_MS), 0);
    ferry_client_destroy(pc);
    ferry_client_destroy(sc);
    evlog_deinit(&pl);
    evlog_deinit(&sl);
}

START_TEST(test_reconnect_resends_unacked)
{
    reconnect_case(1);
}
END_TEST

START_TEST(test_reconnect_fails_unacked_by_option)
{
    reconnect_case(0);
}
END_TEST

START_TEST(test_reconnect_loop_mode)
{
    struct evlog l;
    evlog_init(&l);
    ferry_client *c = client_connect(&DEFAULT_LOOP, &l);
    ferry_sub *s;
    ck_assert_int_eq(ferry_subscribe(c, "rl.>", NULL, on_msg, &l, WAIT_MS, &s), 0);
    ferry_pub m = text_pub("rl.a", "P0:0");
    ck_assert_int_eq(ferry_publish_sync(c, &m, WAIT_MS, NULL), 0);
    ck_assert(loop_until(c, &l, &l.n_msgs, 1, WAIT_MS));
    broker_freeze();
    for (int i = 1; i <= 5; i++) {
        char t[16];
        snprintf(t, sizeof(t), "P0:%d", i);
        ferry_pub p = text_pub("rl.a", t);
        ck_assert_int_eq(ferry_publish_async(c, &p, on_pub_done, &l, NULL), 0);
    }
    ck_assert_int_eq(ferryd_kill9(&g_broker), 0);
    ck_assert(loop_until(c, &l, &l.n[FERRY_EVENT_DISCONNECTED], 1, WAIT_MS));
    ck_assert_int_eq(ferry_client_state(c), FERRY_STATE_RECONNECTING);
    broker_restart_same_port();
    ck_assert(loop_until(c, &l, &l.n[FERRY_EVENT_RECONNECTED], 1, WAIT_MS));
    /* Re-subscribed first, then the 5 unacked publishes were re-sent. */
    ck_assert(loop_until(c, &l, &l.n_pub_ok, 5, WAIT_MS));
    ferry_pub m2 = text_pub("rl.a", "P0:6");
    ck_assert_int_eq(ferry_publish_sync(c, &m2, WAIT_MS, NULL), 0);
    ck_assert(loop_until(c, &l, &l.n_msgs, 7, WAIT_MS));
    ck_assert_str_eq(l.last_payload, "P0:6");
    ck_assert_msg(l.order_ok, "re-sent publishes arrived out of order");
    ck_assert_int_eq(ferry_client_close(c, WAIT_MS), 0);
    ferry_client_destroy(c);
    evlog_deinit(&l);
}
END_TEST

struct stress_pub {
    ferry_client *c;
    struct evlog *l;
    int stop; /* guarded by l->mu */
    int n;    /* publishes accepted */
    int rc;
};

static void *stress_publisher(void *arg)
{
    struct stress_pub *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->l->mu);
        int stop = p->stop;
        pthread_mutex_unlock(&p->l->mu);
        if (stop) {
            break;
        }
        ferry_pub m = text_pub("rs.a", "x");
        int rc = ferry_publish_async(p->c, &m, on_pub_done, p->l, NULL);
        if (rc != 0) {
            p->rc = rc;
            break;
        }
        p->n++;
    }
    return NULL;
}

START_TEST(test_reconnect_stress_no_publish_lost)
{
    struct evlog l;
    evlog_init(&l);
    struct copts co = DEFAULT_THREAD;
    co.max_inflight = 64;
    ferry_client *c = client_connect(&co, &l);
    struct stress_pub sp = {.c = c, .l = &l};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, stress_publisher, &sp), 0);
    for (int round = 1; round <= 3; round++) {
        /* Let some publishes through, then kill the broker mid-stream. */
        ck_assert(evlog_wait(&l, &l.n_pub_ok, round * 200, WAIT_MS));
        ck_assert_int_eq(ferryd_kill9(&g_broker), 0);
        ck_assert(evlog_wait(&l, &l.n[FERRY_EVENT_DISCONNECTED], round, WAIT_MS));
        broker_restart_same_port();
        ck_assert(evlog_wait(&l, &l.n[FERRY_EVENT_RECONNECTED], round, WAIT_MS));
    }
    pthread_mutex_lock(&l.mu);
    sp.stop = 1;
    pthread_mutex_unlock(&l.mu);
    pthread_join(th, NULL);
    ck_assert_msg(sp.rc == 0, "publisher: %s", ferry_strerror(sp.rc));
    ck_assert_int_eq(ferry_flush(c, WAIT_MS), 0);
    /* Every accepted publish completed exactly once, and with resend on,
     * successfully (at-least-once). */
    ck_assert_int_eq(evlog_get(&l, &l.n_pub_fail), 0);
    ck_assert_int_eq(evlog_get(&l, &l.n_pub_ok), sp.n);
    ck_assert_int_eq(ferry_client_close(c, WAIT_MS), 0);
    ferry_client_destroy(c);
    evlog_deinit(&l);
}
END_TEST

START_TEST(test_reconnect_gives_up)
{
    struct copts co = DEFAULT_LOOP;
    co.max_attempts = 3;
    struct evlog l;
    evlog_init(&l);
    ferry_client *c = client_connect(&co, &l);
    ck_assert_int_eq(ferryd_kill9(&g_broker), 0);
    ferry_pub m = text_pub("gu.a", "x");
    /* Queued while (re)connecting, failed when the client gives up. */
    ck_assert(loop_until(c, &l, &l.n[FERRY_EVENT_DISCONNECTED], 1, WAIT_MS));
    ck_assert_int_eq(ferry_publish_async(c, &m, on_pub_done, &l, NULL), 0);
    ck_assert(loop_until(c, &l, &l.n[FERRY_EVENT_CLOSED], 1, WAIT_MS));
    ck_assert_int_eq(l.last_code[FERRY_EVENT_CLOSED], FERRY_ERECONNECTFAILED);
    ck_assert_int_eq(l.n_pub_fail, 1);
    ck_assert_int_eq(l.last_pub_status, FERRY_EDISCONNECTED);
    ck_assert_int_eq(ferry_client_state(c), FERRY_STATE_CLOSED);
    ck_assert_int_eq(ferry_client_process(c, 0), FERRY_ECLOSED);
    ck_assert_int_eq(ferry_publish_async(c, &m, on_pub_done, &l, NULL), FERRY_ECLOSED);
    ferry_client_destroy(c);
    evlog_deinit(&l);
}
END_TEST

START_TEST(test_keepalive_detects_frozen_broker)
{
    struct copts co = DEFAULT_THREAD;
    co.keepalive_ms = 200;
    co.reconnect = 0;
    struct evlog l;
    evlog_init(&l);
    ferry_client *c = client_connect(&co, &l);
    ferry_server_info info;
    ck_assert_int_eq(ferry_client_server_info(c, &info), 0);
    ck_assert_uint_eq(info.keepalive_ms, 200);
    broker_freeze();
    ck_assert(evlog_wait(&l, &l.n[FERRY_EVENT_DISCONNECTED], 1, WAIT_MS));
    ck_assert_int_eq(l.last_code[FERRY_EVENT_DISCONNECTED], FERRY_EKEEPALIVE);
    ck_assert(evlog_wait(&l, &l.n[FERRY_EVENT_CLOSED], 1, WAIT_MS)); /* reconnect off */
    ck_assert_int_eq(ferry_client_state(c), FERRY_STATE_CLOSED);
    kill(g_broker.pid, SIGCONT);
    ferry_client_destroy(c);
    evlog_deinit(&l);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Timeouts against a frozen broker                                         */

START_TEST(test_timeouts_with_frozen_broker)
{
    struct evlog l;
    evlog_init(&l);
    ferry_options *o;
    ck_assert_int_eq(ferry_options_create(&o), 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", g_broker.port);
    ck_assert_int_eq(ferry_options_set_servers(o, addr), 0);
    ck_assert_int_eq(ferry_options_set_ack_timeout_ms(o, 200), 0);
    ferry_client *c;
    ck_assert_int_eq(ferry_client_create(o, &c), 0);
    ferry_options_destroy(o);
    ck_assert_int_eq(ferry_client_start_thread(c), 0);
    ck_assert_int_eq(ferry_client_connect(c, WAIT_MS), 0);
    broker_freeze();
    ferry_pub m = text_pub("to.a", "x");
    /* The ack timeout option fails an async publish... */
    ck_assert_int_eq(ferry_publish_async(c, &m, on_pub_done, &l, NULL), 0);
    ck_assert(evlog_wait(&l, &l.n_pub_fail, 1, WAIT_MS));
    ck_assert_int_eq(l.last_pub_status, -ETIMEDOUT);
    ck_assert_uint_eq(ferry_client_inflight(c), 0);
    /* ...and each blocking call has its own timeout. */
    int64_t t0 = now_ms();
    ck_assert_int_eq(ferry_publish_sync(c, &m, 150, NULL), -ETIMEDOUT);
    ck_assert_int_ge(now_ms() - t0, 150);
    ferry_sub *s = NULL;
    ck_assert_int_eq(ferry_subscribe(c, "to.>", NULL, NULL, NULL, 150, &s), -ETIMEDOUT);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(ferry_flush(c, 150), -ETIMEDOUT);
    ferry_stats st;
    ck_assert_int_eq(ferry_admin_stats(c, 150, &st), -ETIMEDOUT);
    char why[256];
    ck_assert_int_eq(ferry_client_last_error(c, why, sizeof(why)), -ETIMEDOUT);
    ck_assert_int_eq(ferry_client_state(c), FERRY_STATE_CONNECTED);
    kill(g_broker.pid, SIGCONT);
    /* Thawed, the connection works again; late answers are ignored. */
    ck_assert_int_eq(ferry_publish_sync(c, &m, WAIT_MS, NULL), 0);
    ck_assert_int_eq(ferry_client_close(c, WAIT_MS), 0);
    ferry_client_destroy(c);
    evlog_deinit(&l);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Close                                                                    */

static void close_case(int thread)
{
    struct evlog l;
    evlog_init(&l);
    ferry_client *c = client_connect(thread ? &DEFAULT_THREAD : &DEFAULT_LOOP, &l);
    ck_assert_int_eq(ferry_flush(c, 0), 0); /* nothing outstanding */
    for (int i = 0; i < 300; i++) {
        ferry_pub m = text_pub("cl.a", "x");
        ck_assert_int_eq(ferry_publish_async(c, &m, on_pub_done, &l, NULL), 0);
    }
    ck_assert_int_eq(ferry_client_close(c, WAIT_MS), 0);
    /* Every callback ran before close returned. */
    ck_assert_int_eq(l.n_pub_ok, 300);
    ck_assert_int_eq(l.n[FERRY_EVENT_CLOSED], 1);
    ferry_pub m = text_pub("cl.a", "x");
    ferry_sub *s;
    ck_assert_int_eq(ferry_publish(c, "cl.a", "x", 1), FERRY_ECLOSED);
    ck_assert_int_eq(ferry_publish_sync(c, &m, 100, NULL), FERRY_ECLOSED);
    ck_assert_int_eq(ferry_publish_async(c, &m, NULL, NULL, NULL), FERRY_ECLOSED);
    ck_assert_int_eq(ferry_subscribe(c, "cl.a", NULL, NULL, NULL, 0, &s), FERRY_ECLOSED);
    ck_assert_int_eq(ferry_flush(c, 100), FERRY_ECLOSED);
    ferry_stats st;
    ck_assert_int_eq(ferry_admin_stats(c, 100, &st), FERRY_ECLOSED);
    ferry_client_destroy(c);
    /* No callback after destroy: the counters are final. */
    ck_assert_int_eq(l.n_pub_ok + l.n_pub_fail, 300);
    evlog_deinit(&l);
}

struct blocked_next {
    ferry_sub *s;
    int rc;
};

static void *block_in_next(void *arg)
{
    struct blocked_next *b = arg;
    ferry_msg *m = NULL;
    b->rc = ferry_sub_next(b->s, -1, &m); /* forever, until close */
    return NULL;
}

START_TEST(test_close_wakes_blocked_callers)
{
    ferry_client *c = client_connect(&DEFAULT_THREAD, NULL);
    ferry_sub *s;
    ck_assert_int_eq(ferry_subscribe(c, "cw.a", NULL, NULL, NULL, WAIT_MS, &s), 0);
    struct blocked_next b = {.s = s, .rc = 1};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, block_in_next, &b), 0);
    /* Whether or not the thread is already waiting, close must end it. */
    ck_assert_int_eq(ferry_client_close(c, WAIT_MS), 0);
    pthread_join(th, NULL);
    ck_assert_int_eq(b.rc, FERRY_ECLOSED);
    ferry_client_destroy(c);
}
END_TEST

START_TEST(test_close_flushes_thread_mode)
{
    close_case(1);
}
END_TEST

START_TEST(test_close_flushes_loop_mode)
{
    close_case(0);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Acks, copies, admin                                                      */

START_TEST(test_ack_and_copy)
{
    ferry_client *c = client_connect(&DEFAULT_THREAD, NULL);
    ferry_sub_options *so;
    ck_assert_int_eq(ferry_sub_options_create(&so), 0);
    ck_assert_int_eq(ferry_sub_options_set_ack_mode(so, FERRY_ACK_EXPLICIT), 0);
    ck_assert_int_eq(ferry_sub_options_set_max_in_flight(so, 16), 0);
    ck_assert_int_eq(ferry_sub_options_set_ack_wait_ms(so, 60000), 0);
    ck_assert_int_eq(ferry_sub_options_set_max_deliver(so, 3), 0);
    ck_assert_int_eq(ferry_sub_options_set_queue_group(so, "workers"), 0);
    ferry_sub *se, *sn;
    ck_assert_int_eq(ferry_subscribe(c, "ack.a", so, NULL, NULL, WAIT_MS, &se), 0);
    ck_assert_int_eq(ferry_subscribe(c, "ack.a", NULL, NULL, NULL, WAIT_MS, &sn), 0);
    ferry_sub_options_destroy(so);
    ferry_header h = {"k", "v"};
    ferry_pub m = {.topic = "ack.a",
                   .payload = "p",
                   .payload_len = 1,
                   .key = "key",
                   .key_len = 3,
                   .headers = &h,
                   .n_headers = 1};
    uint64_t seq = 0;
    ck_assert_int_eq(ferry_publish_sync(c, &m, WAIT_MS, &seq), 0);
    ferry_msg *me, *mn, *copy;
    ck_assert_int_eq(ferry_sub_next(se, WAIT_MS, &me), 0);
    ck_assert_int_eq(ferry_sub_next(sn, WAIT_MS, &mn), 0);
    ck_assert_uint_eq(ferry_msg_sequence(me), seq);
    ck_assert_int_eq(ferry_msg_copy(me, &copy), 0);
    ck_assert_str_eq(ferry_msg_topic(copy), "ack.a");
    ck_assert_str_eq(ferry_msg_header(copy, "k"), "v");
    ck_assert_ptr_null(ferry_msg_header(copy, "nope"));
    const char *hk, *hv;
    ck_assert_int_eq(ferry_msg_header_at(copy, 0, &hk, &hv), 0);
    ck_assert_str_eq(hk, "k");
    ck_assert_str_eq(hv, "v");
    size_t kl;
    ck_assert_mem_eq(ferry_msg_key(copy, &kl), "key", 3);
    ck_assert_uint_eq(kl, 3);
    ck_assert_uint_eq(ferry_msg_sub_id(copy), ferry_sub_id(se));
    if (seq == 0) {
        /* Ephemeral topic (no store): nothing to ack by sequence. */
        ck_assert_int_eq(ferry_msg_ack(me, FERRY_ACK), -EINVAL);
    } else {
        ck_assert_int_eq(ferry_msg_ack(me, FERRY_ACK), 0);
        ck_assert_int_eq(ferry_msg_ack(copy, FERRY_NAK), 0);
        ck_assert_int_eq(ferry_msg_ack(mn, FERRY_ACK), -EINVAL); /* ACK_NONE sub */
        ck_assert_int_eq(ferry_msg_ack(me, (enum ferry_ack_kind)9), -EINVAL);
        ck_assert_int_eq(ferry_flush(c, WAIT_MS), 0);
        ck_assert_int_eq(ferry_client_state(c), FERRY_STATE_CONNECTED);
        ck_assert_int_eq(ferry_unsubscribe(se), 0);
        ck_assert_int_eq(ferry_msg_ack(copy, FERRY_ACK), FERRY_ENOSUB);
        se = NULL;
    }
    ferry_msg_destroy(me);
    ferry_msg_destroy(mn);
    ferry_msg_destroy(copy);
    ck_assert_int_eq(ferry_client_close(c, WAIT_MS), 0);
    ferry_client_destroy(c); /* frees se and sn if still held */
}
END_TEST

static ferry_sub *sub_group(ferry_client *c, const char *group)
{
    ferry_sub_options *so;
    ck_assert_int_eq(ferry_sub_options_create(&so), 0);
    if (group != NULL) {
        ck_assert_int_eq(ferry_sub_options_set_queue_group(so, group), 0);
    }
    ferry_sub *s;
    ck_assert_int_eq(ferry_subscribe(c, "qg.a", so, NULL, NULL, WAIT_MS, &s), 0);
    ferry_sub_options_destroy(so);
    return s;
}

static void wait_pending(ferry_sub *s, size_t n)
{
    int64_t deadline = now_ms() + WAIT_MS;
    while (ferry_sub_pending(s) < n && now_ms() < deadline) {
        struct timespec ts = {0, 5 * 1000000};
        nanosleep(&ts, NULL); /* polling a counter, bounded by the deadline */
    }
    ck_assert_uint_eq(ferry_sub_pending(s), n);
}

START_TEST(test_queue_group_shares_messages)
{
    ferry_client *a = client_connect(&DEFAULT_THREAD, NULL);
    ferry_client *b = client_connect(&DEFAULT_THREAD, NULL);
    ferry_sub *ga = sub_group(a, "grp");
    ferry_sub *gb = sub_group(b, "grp");
    ferry_sub *pa = sub_group(a, NULL); /* plain subscribers see everything */
    ferry_sub *pb = sub_group(b, NULL);
    for (int i = 0; i < 100; i++) {
        ferry_pub m = text_pub("qg.a", "x");
        ck_assert_int_eq(ferry_publish_async(a, &m, NULL, NULL, NULL), 0);
    }
    ck_assert_int_eq(ferry_flush(a, WAIT_MS), 0);
    /* Once each plain subscriber has all 100, every group delivery sent
     * before them on the same connection has arrived too. */
    wait_pending(pa, 100);
    wait_pending(pb, 100);
    ck_assert_uint_eq(ferry_sub_pending(ga) + ferry_sub_pending(gb), 100);
    ck_assert_int_eq(ferry_client_close(a, WAIT_MS), 0);
    ck_assert_int_eq(ferry_client_close(b, WAIT_MS), 0);
    ferry_client_destroy(a);
    ferry_client_destroy(b);
}
END_TEST

START_TEST(test_admin_stats)
{
    ferry_client *c = client_connect(&DEFAULT_THREAD, NULL);
    for (int i = 0; i < 5; i++) {
        ferry_pub m = text_pub("adm.a", "x");
        ck_assert_int_eq(ferry_publish_sync(c, &m, WAIT_MS, NULL), 0);
    }
    ferry_stats st;
    ck_assert_int_eq(ferry_admin_stats(c, WAIT_MS, &st), 0);
    ck_assert_uint_ge(st.msgs_in, 5);
    ck_assert_uint_ge(st.connections, 1);
    ck_assert_uint_gt(strlen(st.server_id), 0);
    ferry_server_info info;
    ck_assert_int_eq(ferry_client_server_info(c, &info), 0);
    ck_assert_str_eq(st.server_id, info.server_id);
    /* The store's commits: five acked publishes took one to five commits,
     * each counted once in the latency histogram. */
    if (st.topics > 0) {
        ck_assert_uint_ge(st.store_messages, 5);
        ck_assert_uint_ge(st.store_commits, 1);
        ck_assert_uint_le(st.store_commits, st.store_messages);
        uint64_t n = 0;
        for (int i = 0; i < FERRY_COMMIT_HIST_BUCKETS; i++) {
            n += st.commit_hist[i];
        }
        ck_assert_uint_eq(n, st.store_commits);
        ck_assert(ferry_stats_commit_percentile(st.commit_hist, 50) >= 1.0);
    }
    ck_assert_int_eq(ferry_client_close(c, WAIT_MS), 0);
    ferry_client_destroy(c);
}
END_TEST

/* Percentiles of a commit latency histogram: the upper bound of the
 * quarter-octave bucket where the rank falls. */
START_TEST(test_stats_commit_percentile)
{
    uint64_t h[FERRY_COMMIT_HIST_BUCKETS] = {0};
    ck_assert(ferry_stats_commit_percentile(h, 50) == 0);
    h[40] = 98; /* 1024 us <= t < 1218 us */
    h[60] = 2;  /* 32768 us <= t < 38968 us */
    double p50 = ferry_stats_commit_percentile(h, 50);
    ck_assert_msg(p50 > 1217 && p50 < 1218, "p50 %g", p50);
    ck_assert(ferry_stats_commit_percentile(h, 98) == p50);
    double p99 = ferry_stats_commit_percentile(h, 99);
    ck_assert_msg(p99 > 38967 && p99 < 38968, "p99 %g", p99);
    ck_assert(ferry_stats_commit_percentile(h, 0) == 0);
    ck_assert(ferry_stats_commit_percentile(h, 101) == 0);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Features that need the broker's store                                    */

/* Unchecked fixture (runs in the test program itself, before the case):
 * if the broker acks with sequence 0, it has no store yet, and the case is
 * skipped with exit code 77 (ctest SKIP_RETURN_CODE), saying why. */
static void needs_store_probe(void)
{
    signal(SIGPIPE, SIG_IGN);
    struct ferryd_proc p;
    if (ferryd_start(&p, NULL, NULL) != 0) {
        return; /* let the case fail on its own */
    }
    g_broker = p;
    ferry_client *c = client_new(&DEFAULT_THREAD, NULL);
    uint64_t seq = 0;
    ferry_server_info info = {0};
    int rc = ferry_client_connect(c, WAIT_MS);
    if (rc == 0) {
        ferry_pub m = text_pub("probe.store", "x");
        rc = ferry_publish_sync(c, &m, WAIT_MS, &seq);
        ferry_client_server_info(c, &info);
    }
    ferry_client_destroy(c);
    ferryd_stop(&g_broker);
    if (rc == 0 && seq == 0) {
        printf("SKIP needs_store: the broker acked a publish with sequence 0 (sync policy %d): "
               "it has no store yet, so start positions, durables and sequences cannot be "
               "tested\n",
               (int)info.sync_policy);
        fflush(stdout);
        exit(77);
    }
}

static void collect(ferry_sub *s, int n, uint64_t *seqs)
{
    for (int i = 0; i < n; i++) {
        ferry_msg *m;
        int rc = ferry_sub_next(s, WAIT_MS, &m);
        ck_assert_msg(rc == 0, "message %d: %s", i, ferry_strerror(rc));
        seqs[i] = ferry_msg_sequence(m);
        ferry_msg_destroy(m);
    }
}

static ferry_sub *sub_from(ferry_client *c, enum ferry_start start, int64_t arg,
                           const char *durable)
{
    ferry_sub_options *so;
    ck_assert_int_eq(ferry_sub_options_create(&so), 0);
    ck_assert_int_eq(ferry_sub_options_set_start(so, start, arg), 0);
    if (durable != NULL) {
        ck_assert_int_eq(ferry_sub_options_set_durable(so, durable), 0);
    }
    ferry_sub *s;
    int rc = ferry_subscribe(c, "st.a", so, NULL, NULL, WAIT_MS, &s);
    ck_assert_msg(rc == 0, "subscribe: %s", ferry_strerror(rc));
    ferry_sub_options_destroy(so);
    return s;
}

START_TEST(test_store_start_positions_and_admin)
{
    ferry_client *c = client_connect(&DEFAULT_THREAD, NULL);
    for (uint64_t i = 1; i <= 5; i++) {
        ferry_pub m = text_pub("st.a", "x");
        uint64_t seq = 0;
        ck_assert_int_eq(ferry_publish_sync(c, &m, WAIT_MS, &seq), 0);
        ck_assert_uint_eq(seq, i);
    }
    uint64_t got[5];
    ferry_sub *s = sub_from(c, FERRY_START_ALL, 0, NULL);
    collect(s, 5, got);
    for (int i = 0; i < 5; i++) {
        ck_assert_uint_eq(got[i], (uint64_t)i + 1);
    }
    ferry_unsubscribe(s);
    s = sub_from(c, FERRY_START_SEQUENCE, 3, NULL);
    collect(s, 3, got);
    ck_assert_uint_eq(got[0], 3);
    ck_assert_uint_eq(got[2], 5);
    ferry_unsubscribe(s);
    s = sub_from(c, FERRY_START_LAST, 2, NULL);
    collect(s, 2, got);
    ck_assert_uint_eq(got[0], 4);
    ck_assert_uint_eq(got[1], 5);
    ferry_unsubscribe(s);

    ferry_topic_info ti;
    ck_assert_int_eq(ferry_admin_topic_info(c, "st.a", WAIT_MS, &ti), 0);
    ck_assert_uint_eq(ti.last_seq, 5);
    ferry_topic_info *list = NULL;
    size_t n = 0;
    ck_assert_int_eq(ferry_admin_topics(c, "st.>", 0, WAIT_MS, &list, &n), 0);
    ck_assert_uint_ge(n, 1);
    ferry_free(list);
    uint64_t purged = 0;
    ck_assert_int_eq(ferry_admin_topic_purge(c, "st.a", WAIT_MS, &purged), 0);
    ck_assert_uint_eq(purged, 5);
    ck_assert_int_eq(ferry_client_close(c, WAIT_MS), 0);
    ferry_client_destroy(c);
}
END_TEST

/* Durable consumers (the issue after the store): skipped while the broker
 * refuses them. */
static void needs_durables_probe(void)
{
    signal(SIGPIPE, SIG_IGN);
    struct ferryd_proc p;
    if (ferryd_start(&p, NULL, NULL) != 0) {
        return; /* let the case fail on its own */
    }
    g_broker = p;
    ferry_client *c = client_new(&DEFAULT_THREAD, NULL);
    int rc = ferry_client_connect(c, WAIT_MS);
    char why[256] = "";
    if (rc == 0) {
        ferry_sub_options *so;
        ferry_sub *s;
        ferry_sub_options_create(&so);
        ferry_sub_options_set_durable(so, "probe");
        ferry_sub_options_set_ack_mode(so, FERRY_ACK_EXPLICIT);
        rc = ferry_subscribe(c, "probe.durable", so, NULL, NULL, WAIT_MS, &s);
        ferry_sub_options_destroy(so);
        if (rc == 0) {
            ferry_unsubscribe(s);
        } else {
            ferry_client_last_error(c, why, sizeof(why));
        }
    }
    ferry_client_destroy(c);
    ferryd_stop(&g_broker);
    if (rc == FERRY_EINVAL) {
        printf("SKIP needs_durables: the broker refuses durable consumers (%s)\n", why);
        fflush(stdout);
        exit(77);
    }
}

START_TEST(test_store_durable_resumes_after_ack)
{
    ferry_client *c = client_connect(&DEFAULT_THREAD, NULL);
    for (uint64_t i = 1; i <= 5; i++) {
        ferry_pub m = text_pub("st.a", "x");
        uint64_t seq = 0;
        ck_assert_int_eq(ferry_publish_sync(c, &m, WAIT_MS, &seq), 0);
        ck_assert_uint_eq(seq, i);
    }
    uint64_t got[5];
    /* Durable: ack 1..3, leave, come back: resumes at 4. */
    ferry_sub *s = sub_from(c, FERRY_START_ALL, 0, "dur1");
    for (int i = 0; i < 3; i++) {
        ferry_msg *m;
        ck_assert_int_eq(ferry_sub_next(s, WAIT_MS, &m), 0);
        ck_assert_int_eq(ferry_msg_ack(m, FERRY_ACK), 0);
        ferry_msg_destroy(m);
    }
    ck_assert_int_eq(ferry_flush(c, WAIT_MS), 0);
    ferry_unsubscribe(s);
    s = sub_from(c, FERRY_START_ALL, 0, "dur1");
    collect(s, 1, got);
    ck_assert_uint_eq(got[0], 4);
    ferry_unsubscribe(s);
    ck_assert_int_eq(ferry_client_close(c, WAIT_MS), 0);
    ferry_client_destroy(c);
}
END_TEST

Suite *test_suite(void);

static TCase *tc(Suite *s, TCase *t)
{
    tcase_set_timeout(t, 120);
    suite_add_tcase(s, t);
    return t;
}

Suite *test_suite(void)
{
    Suite *s = suite_create("client");
    TCase *t;
    t = tc(s, tcase_create("stats_percentile"));
    tcase_add_test(t, test_stats_commit_percentile);
    t = tc(s, tcase_create("args"));
    tcase_add_test(t, test_args_rejected_with_einval);
    t = tc(s, tcase_create("strerror"));
    tcase_add_test(t, test_strerror_explains_every_code);
    t = tc(s, tcase_create("connect_refused"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_connect_refused_then_failover);
    t = tc(s, tcase_create("connect_timeout"));
    tcase_add_test(t, test_connect_times_out_on_silent_server);
    t = tc(s, tcase_create("loop_pubsub"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_loop_pubsub_roundtrip);
    t = tc(s, tcase_create("thread_pubsub"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_thread_pubsub_from_many_threads);
    t = tc(s, tcase_create("next_msg"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_next_msg_loop_mode);
    tcase_add_test(t, test_next_msg_thread_mode);
    t = tc(s, tcase_create("window_nonblocking"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_window_full_returns_eagain);
    t = tc(s, tcase_create("window_blocking"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_window_full_blocks_thread_mode);
    tcase_add_test(t, test_window_full_blocks_loop_mode);
    t = tc(s, tcase_create("publish_errors"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_publish_errors);
    t = tc(s, tcase_create("subscribe_errors"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_subscribe_errors);
    t = tc(s, tcase_create("unsubscribe"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_unsubscribe_stops_callbacks);
    t = tc(s, tcase_create("callback_rules"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_callbacks_cannot_block);
    t = tc(s, tcase_create("reconnect_resend"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_reconnect_resends_unacked);
    t = tc(s, tcase_create("reconnect_fail_unacked"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_reconnect_fails_unacked_by_option);
    t = tc(s, tcase_create("reconnect_loop"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_reconnect_loop_mode);
    t = tc(s, tcase_create("reconnect_stress"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_reconnect_stress_no_publish_lost);
    t = tc(s, tcase_create("reconnect_gives_up"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_reconnect_gives_up);
    t = tc(s, tcase_create("keepalive"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_keepalive_detects_frozen_broker);
    t = tc(s, tcase_create("timeouts"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_timeouts_with_frozen_broker);
    t = tc(s, tcase_create("close_flush"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_close_flushes_thread_mode);
    tcase_add_test(t, test_close_flushes_loop_mode);
    tcase_add_test(t, test_close_wakes_blocked_callers);
    t = tc(s, tcase_create("ack"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_ack_and_copy);
    t = tc(s, tcase_create("queue_group"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_queue_group_shares_messages);
    t = tc(s, tcase_create("admin"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_admin_stats);
    t = tc(s, tcase_create("needs_store"));
    tcase_add_unchecked_fixture(t, needs_store_probe, NULL);
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_store_start_positions_and_admin);
    t = tc(s, tcase_create("needs_durables"));
    tcase_add_unchecked_fixture(t, needs_durables_probe, NULL);
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_store_durable_resumes_after_ack);
    return s;
}

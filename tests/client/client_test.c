/*
 * client_test.c - the helpers of libferry's test programs (client_test.h).
 */
#include "client_test.h"

#include <check.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct ferryd_proc g_broker;

void broker_start(void)
{
    int rc = ferryd_start(&g_broker, NULL, NULL);
    ck_assert_msg(rc == 0, "ferryd_start: %s", strerror(-rc));
}

void broker_stop(void)
{
    if (g_broker.pid != 0) {
        ferryd_stop(&g_broker);
    }
}

/* Restart the killed broker on the port it had, so clients reconnect to the
 * address they know. */
void broker_restart_same_port(void)
{
    int rc = ferryd_restart_same_port(&g_broker, NULL);
    ck_assert_msg(rc == 0, "ferryd_restart_same_port: %s", strerror(-rc));
}

/* Stop the broker (SIGSTOP) and wait until it is stopped: kill() returns
 * before every thread of the process has stopped. */
void broker_freeze(void)
{
    ck_assert_int_eq(kill(g_broker.pid, SIGSTOP), 0);
    int st = 0;
    pid_t r = waitpid(g_broker.pid, &st, WUNTRACED);
    ck_assert_int_eq(r, g_broker.pid);
    ck_assert(WIFSTOPPED(st));
}

void evlog_init(struct evlog *l)
{
    memset(l, 0, sizeof(*l));
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cond, NULL);
    l->order_ok = 1;
}

void evlog_deinit(struct evlog *l)
{
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cond);
}

void on_event(ferry_client *c, const ferry_event *ev, void *ud)
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

void on_pub_done(ferry_client *c, int status, uint64_t seq, void *ud)
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
void on_msg(ferry_client *c, ferry_sub *s, const ferry_msg *m, void *ud)
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
int evlog_wait(struct evlog *l, const int *field, int want, int timeout_ms)
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
int evlog_wait_ref(struct evlog *l, uint64_t ref, int timeout_ms)
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

int evlog_get(struct evlog *l, const int *field)
{
    pthread_mutex_lock(&l->mu);
    int v = *field;
    pthread_mutex_unlock(&l->mu);
    return v;
}

/* Drive an event-loop-mode client the way an application's poll loop does,
 * until *field >= want. Returns 1 when reached. */
int loop_until(ferry_client *c, struct evlog *l, const int *field, int want, int timeout_ms)
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

ferry_client *client_new(const struct copts *co, struct evlog *l)
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

ferry_client *client_connect(const struct copts *co, struct evlog *l)
{
    ferry_client *c = client_new(co, l);
    int rc = ferry_client_connect(c, WAIT_MS);
    ck_assert_msg(rc == 0, "connect: %s", ferry_strerror(rc));
    ck_assert_int_eq(ferry_client_state(c), FERRY_STATE_CONNECTED);
    return c;
}

const struct copts DEFAULT_LOOP = {.window_blocks = 1, .resend = 1, .reconnect = 1};
const struct copts DEFAULT_THREAD = {.thread = 1, .window_blocks = 1, .resend = 1, .reconnect = 1};

ferry_pub text_pub(const char *topic, const char *text)
{
    ferry_pub m = {.topic = topic, .payload = text, .payload_len = strlen(text)};
    return m;
}

/* A port on which nothing listens: bind, read the port, close. */
int dead_port(void)
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

void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    broker_start();
}

void teardown(void)
{
    broker_stop();
}

TCase *client_tcase(Suite *s, TCase *t)
{
    tcase_set_timeout(t, 120);
    suite_add_tcase(s, t);
    return t;
}

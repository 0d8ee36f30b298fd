/*
 * test_client.c - libferry against a real ferryd: arguments, connecting, publishing and
 * subscribing in both modes, windows, errors and callback rules.
 *
 * Every test case starts its own broker (ferryd_start: port 0, fresh data
 * dir) so that cases are independent and can run in parallel. Nothing
 * waits for a fixed time: waits are for a condition, with generous
 * deadlines (the machine is small and busy). Helpers: client_test.h.
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
 */
#include "client_test.h"

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

Suite *test_suite(void);

Suite *test_suite(void)
{
    Suite *s = suite_create("client");
    TCase *t;
    t = client_tcase(s, tcase_create("args"));
    tcase_add_test(t, test_args_rejected_with_einval);
    t = client_tcase(s, tcase_create("strerror"));
    tcase_add_test(t, test_strerror_explains_every_code);
    t = client_tcase(s, tcase_create("connect_refused"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_connect_refused_then_failover);
    t = client_tcase(s, tcase_create("connect_timeout"));
    tcase_add_test(t, test_connect_times_out_on_silent_server);
    t = client_tcase(s, tcase_create("loop_pubsub"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_loop_pubsub_roundtrip);
    t = client_tcase(s, tcase_create("thread_pubsub"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_thread_pubsub_from_many_threads);
    t = client_tcase(s, tcase_create("next_msg"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_next_msg_loop_mode);
    tcase_add_test(t, test_next_msg_thread_mode);
    t = client_tcase(s, tcase_create("window_nonblocking"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_window_full_returns_eagain);
    t = client_tcase(s, tcase_create("window_blocking"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_window_full_blocks_thread_mode);
    tcase_add_test(t, test_window_full_blocks_loop_mode);
    t = client_tcase(s, tcase_create("publish_errors"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_publish_errors);
    t = client_tcase(s, tcase_create("subscribe_errors"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_subscribe_errors);
    t = client_tcase(s, tcase_create("unsubscribe"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_unsubscribe_stops_callbacks);
    t = client_tcase(s, tcase_create("callback_rules"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_callbacks_cannot_block);
    return s;
}

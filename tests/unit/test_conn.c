/*
 * test_conn.c - the connection state machine, driven in-process.
 *
 * One IO thread and one worker run inside the test; each connection is one
 * end of a socketpair handed to the IO thread as the acceptor would, so the
 * states (awaiting Connect, open, closing) are exercised without TCP or a
 * ferryd process.
 */
#include "ferry.h"
#include "io_thread.h"
#include "rawclient.h"
#include "server.h"
#include "worker.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

Suite *test_suite(void);

static struct server srv;

/* worker_queue 0: the default. The worker is started unless is_stalled (the
 * test starts it: until then its queue fills and publishers are paused). */
static void setup_with(uint32_t worker_queue, int is_stalled)
{
    memset(&srv, 0, sizeof(srv));
    cfg_defaults(&srv.cfg);
    if (worker_queue) {
        srv.cfg.worker_queue = worker_queue;
    }
    srv.cfg.keepalive_min_ms = 20;
    srv.cfg.connect_timeout_ms = 300;
    srv.n_iot = 1;
    srv.n_workers = 1;
    strcpy(srv.server_id, "unit");
    atomic_init(&srv.next_client_id, 1);
    ck_assert_int_eq(server_tables_alloc(&srv), 0);
    srv.workers[0] = worker_create(&srv, 0);
    srv.iots[0] = iot_create(&srv, 0);
    ck_assert_ptr_nonnull(srv.workers[0]);
    ck_assert_ptr_nonnull(srv.iots[0]);
    if (!is_stalled) {
        ck_assert_int_eq(worker_start(srv.workers[0]), 0);
    }
    ck_assert_int_eq(iot_start(srv.iots[0]), 0);
}

static void setup(void)
{
    setup_with(0, 0);
}

static void setup_stalled(void)
{
    setup_with(2, 1);
}

static void teardown(void)
{
    atomic_store(&srv.phase, PHASE_DRAIN);
    mbox_wake(srv.iot_in[0]);
    while (!iot_is_drained(srv.iots[0])) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    worker_stop(srv.workers[0]);
    atomic_store(&srv.phase, PHASE_CLOSE);
    mbox_wake(srv.iot_in[0]);
    iot_join(srv.iots[0]);
    iot_destroy(srv.iots[0]);
    worker_destroy(srv.workers[0]);
    server_tables_free(&srv);
}

/* Hand one end of a socketpair to the IO thread; c gets the other end. */
static void conn_open(struct rawc *c)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    atomic_fetch_add(&srv.conns_now, 1);
    struct rmsg m = {.kind = R_NEW_CONN};
    m.u.fd = sv[0];
    ck_assert_uint_eq(mbox_try_post(srv.iot_in[0], &m, 1), 1);
    memset(c, 0, sizeof(*c));
    c->fd = sv[1];
    frame_dec_init(&c->dec, FRAME_MAX_LEN_CEILING);
    codec_arena_init(&c->arena);
}

static void send_connect(struct rawc *c, uint32_t keepalive_ms)
{
    Ferry__Connect m = FERRY__CONNECT__INIT;
    m.protocol_version = 1;
    m.keepalive_ms = keepalive_ms;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_CONNECT;
    f.connect = &m;
    ck_assert_int_eq(rawc_send(c, &f), 0);
}

static Ferry__Frame *recv1(struct rawc *c)
{
    Ferry__Frame *f;
    ck_assert_int_eq(rawc_recv(c, 10000, &f), 0);
    return f;
}

START_TEST(test_conn_awaiting_connect_refuses_other_frames)
{
    struct rawc c;
    conn_open(&c);
    ck_assert_int_ne(rawc_ping(&c, 1, 10000), 0); /* Pong never comes */
    rawc_close(&c);
    conn_open(&c);
    Ferry__Ping p = FERRY__PING__INIT;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_PING;
    f.ping = &p;
    ck_assert_int_eq(rawc_send(&c, &f), 0);
    Ferry__Frame *r = recv1(&c);
    ck_assert_int_eq(r->body_case, FERRY__FRAME__BODY_ERROR);
    ck_assert_int_eq(r->error->code, FERRY__ERROR_CODE__ERROR_NOT_CONNECTED);
    ck_assert(r->error->is_fatal);
    ck_assert_int_eq(rawc_wait_closed(&c, 10000, NULL), 0);
    rawc_close(&c);
}
END_TEST

START_TEST(test_conn_open_after_connect_answers_ping)
{
    struct rawc c;
    conn_open(&c);
    send_connect(&c, 100000000); /* clamped to keepalive_max_ms */
    Ferry__Frame *r = recv1(&c);
    ck_assert_int_eq(r->body_case, FERRY__FRAME__BODY_CONNECTED);
    ck_assert_int_eq(r->connected->keepalive_ms, srv.cfg.keepalive_max_ms);
    ck_assert_str_eq(r->connected->server_id, "unit");
    ck_assert_int_eq(rawc_ping(&c, 42, 10000), 0);
    rawc_close(&c);
}
END_TEST

START_TEST(test_conn_subscriber_receives_its_own_publish)
{
    struct rawc c;
    conn_open(&c);
    send_connect(&c, 0);
    ck_assert_int_eq(recv1(&c)->body_case, FERRY__FRAME__BODY_CONNECTED);
    ck_assert_int_eq(rawc_subscribe(&c, 5, "self.>", NULL), 0);
    ck_assert_int_eq(rawc_publish(&c, 9, "self.talk", "hi", 2, 1), 0);
    int got_ack = 0, got_deliver = 0;
    while (!(got_ack && got_deliver)) {
        Ferry__Frame *r = recv1(&c);
        if (r->body_case == FERRY__FRAME__BODY_PUB_ACK) {
            ck_assert_int_eq(r->pub_ack->id, 9);
            ck_assert_int_eq(r->pub_ack->sequence, 0);
            got_ack = 1;
        } else {
            ck_assert_int_eq(r->body_case, FERRY__FRAME__BODY_DELIVER);
            ck_assert_int_eq(r->deliver->sub_ids[0], 5);
            got_deliver = 1;
        }
    }
    struct stats_snapshot s;
    server_stats(&srv, &s);
    ck_assert_uint_eq(s.msgs_in, 1);
    ck_assert_uint_eq(s.subs, 1);
    rawc_close(&c);
}
END_TEST

START_TEST(test_conn_keepalive_closes_silent_connection)
{
    struct rawc c;
    conn_open(&c);
    send_connect(&c, 40);
    ck_assert_int_eq(recv1(&c)->body_case, FERRY__FRAME__BODY_CONNECTED);
    int code = -1;
    ck_assert_int_eq(rawc_wait_closed(&c, 10000, &code), 0);
    ck_assert_int_eq(code, FERRY__ERROR_CODE__ERROR_KEEPALIVE_TIMEOUT);
    rawc_close(&c);
}
END_TEST

START_TEST(test_conn_connect_deadline)
{
    struct rawc c;
    conn_open(&c);
    int code = -1;
    ck_assert_int_eq(rawc_wait_closed(&c, 10000, &code), 0);
    ck_assert_int_eq(code, FERRY__ERROR_CODE__ERROR_AUTH_TIMEOUT);
    rawc_close(&c);
}
END_TEST

START_TEST(test_conn_disconnect_flushes_then_closes)
{
    struct rawc c;
    conn_open(&c);
    send_connect(&c, 0);
    ck_assert_int_eq(recv1(&c)->body_case, FERRY__FRAME__BODY_CONNECTED);
    /* Ping then Disconnect in one write: the Pong still arrives. */
    Ferry__Ping p = FERRY__PING__INIT;
    p.nonce = 3;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_PING;
    f.ping = &p;
    ck_assert_int_eq(rawc_send(&c, &f), 0);
    Ferry__Disconnect dm = FERRY__DISCONNECT__INIT;
    Ferry__Frame df = FERRY__FRAME__INIT;
    df.body_case = FERRY__FRAME__BODY_DISCONNECT;
    df.disconnect = &dm;
    ck_assert_int_eq(rawc_send(&c, &df), 0);
    Ferry__Frame *r = recv1(&c);
    ck_assert_int_eq(r->body_case, FERRY__FRAME__BODY_PONG);
    ck_assert_int_eq(r->pong->nonce, 3);
    ck_assert_int_eq(rawc_wait_closed(&c, 10000, NULL), 0);
    rawc_close(&c);
}
END_TEST

/* A publisher the broker stopped reading (its worker's queue is full) is
 * not timed out by keepalive: it may well be sending; we are not reading.
 * Once reading resumes, it has a whole interval again. */
START_TEST(test_conn_keepalive_spares_paused_publisher)
{
    struct rawc c;
    conn_open(&c);
    send_connect(&c, 40); /* closed after 60 ms of silence */
    ck_assert_int_eq(recv1(&c)->body_case, FERRY__FRAME__BODY_CONNECTED);
    static uint8_t chunk[64 * 1024];
    static uint8_t payload[1000];
    Ferry__Publish m = FERRY__PUBLISH__INIT;
    m.topic = (char *)"p";
    m.payload.data = payload;
    m.payload.len = sizeof(payload);
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_PUBLISH;
    f.publish = &m;
    size_t len = 0, one;
    while (codec_frame_encode(&f, chunk + len, sizeof(chunk) - len, &one) == 0) {
        len += one;
    }
    /* Write until the broker stops reading: the socket stays full (not
     * writable for 200 ms). Each wait ends as soon as the broker reads, so
     * a slow machine only makes this slower, never wrong. */
    fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK);
    size_t off = 0;
    int is_full = 0;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        clock_gettime(CLOCK_MONOTONIC, &now);
        ssize_t w = send(c.fd, chunk + off, len - off, MSG_NOSIGNAL);
        ck_assert_msg(w > 0 || errno == EAGAIN, "publisher closed: %s", strerror(errno));
        if (w > 0) {
            off = (off + (size_t)w) % len;
            continue;
        }
        struct pollfd p = {.fd = c.fd, .events = POLLOUT};
        int n = poll(&p, 1, 200);
        ck_assert_int_ge(n, 0);
        is_full = n == 0;
    } while (!is_full && now.tv_sec - t0.tv_sec < 40);
    ck_assert_msg(is_full, "the broker kept reading for 40 s with its worker stopped");
    /* Paused for many keepalive intervals: no Error, no close. */
    Ferry__Frame *r;
    int rc = rawc_recv(&c, 600, &r);
    ck_assert_msg(rc == -ETIMEDOUT, "paused publisher got %s (rc %d)",
                  rc == 0 ? codec_frame_name(r) : "a close", rc);
    /* The worker starts: reading resumes, the rest of the chunk goes out,
     * and the connection answers a Ping. */
    ck_assert_int_eq(worker_start(srv.workers[0]), 0);
    fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) & ~O_NONBLOCK);
    if (off) {
        ck_assert_int_eq(rawc_send_raw(&c, chunk + off, len - off), 0);
    }
    ck_assert_int_eq(rawc_ping(&c, 9, 10000), 0);
    rawc_close(&c);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("conn");
    TCase *tc = tcase_create("conn");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_conn_awaiting_connect_refuses_other_frames);
    tcase_add_test(tc, test_conn_open_after_connect_answers_ping);
    tcase_add_test(tc, test_conn_subscriber_receives_its_own_publish);
    tcase_add_test(tc, test_conn_keepalive_closes_silent_connection);
    tcase_add_test(tc, test_conn_connect_deadline);
    tcase_add_test(tc, test_conn_disconnect_flushes_then_closes);
    suite_add_tcase(s, tc);
    tc = tcase_create("keepalive_paused");
    tcase_add_checked_fixture(tc, setup_stalled, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_conn_keepalive_spares_paused_publisher);
    suite_add_tcase(s, tc);
    return s;
}

/*
 * 02_protocol.c - the connection state machine and bad input: Connect first,
 * keepalive, garbage/oversized/truncated/zero-length frames. Every bad
 * client gets Error + close while a bystander keeps working.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "e2e_util.h"

Suite *test_suite(void);

/* A connected client with a subscription, and a publisher: proves the broker
 * still routes after each abuse. */
struct bystander {
    struct rawc sub, pub;
    uint64_t n;
};

static void bystander_init(struct bystander *b, int port)
{
    CONNECT(&b->sub, port);
    CONNECT(&b->pub, port);
    ck_assert_int_eq(rawc_subscribe(&b->sub, 1, "alive", NULL), 0);
    b->n = 0;
}

static void bystander_check(struct bystander *b)
{
    b->n++;
    ck_assert_int_eq(rawc_publish(&b->pub, b->n, "alive", "ok", 2, 1), 0);
    Ferry__Frame *f;
    ck_assert_int_eq(rawc_recv_kind(&b->pub, T_WAIT, FERRY__FRAME__BODY_PUB_ACK, &f, NULL), 0);
    ck_assert_int_eq(f->pub_ack->id, b->n);
    Ferry__Deliver *d = recv_deliver(&b->sub);
    ck_assert_str_eq(d->topic, "alive");
}

static void bystander_close(struct bystander *b)
{
    rawc_close(&b->sub);
    rawc_close(&b->pub);
}

/* Open a raw connection, send bytes, expect Error(code) and a close. */
static void expect_error_close(int port, int connect_first, const void *bytes, size_t n,
                               int code)
{
    struct rawc c;
    if (connect_first) {
        CONNECT(&c, port);
    } else {
        ck_assert_int_eq(rawc_open(&c, port), 0);
    }
    ck_assert_int_eq(rawc_send_raw(&c, bytes, n), 0);
    int got = -1;
    ck_assert_int_eq(rawc_wait_closed(&c, T_WAIT, &got), 0);
    ck_assert_int_eq(got, code);
    rawc_close(&c);
}

START_TEST(test_connect_must_come_first)
{
    struct ferryd_proc d;
    START(&d, NULL);
    struct bystander b;
    bystander_init(&b, d.port);

    /* A Publish before Connect. */
    Ferry__Publish p = FERRY__PUBLISH__INIT;
    p.topic = (char *)"a";
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_PUBLISH;
    f.publish = &p;
    uint8_t buf[256];
    size_t len;
    ck_assert_int_eq(codec_frame_encode(&f, buf, sizeof(buf), &len), 0);
    expect_error_close(d.port, 0, buf, len, FERRY__ERROR_CODE__ERROR_NOT_CONNECTED);
    bystander_check(&b);

    /* A frame over 4 KiB before Connect: refused from its header. */
    uint8_t hdr[4];
    frame_hdr_put(hdr, 5000);
    expect_error_close(d.port, 0, hdr, 4, FERRY__ERROR_CODE__ERROR_FRAME_TOO_LARGE);
    bystander_check(&b);

    /* Wrong protocol version. */
    Ferry__Connect cm = FERRY__CONNECT__INIT;
    cm.protocol_version = 99;
    Ferry__Frame cf = FERRY__FRAME__INIT;
    cf.body_case = FERRY__FRAME__BODY_CONNECT;
    cf.connect = &cm;
    ck_assert_int_eq(codec_frame_encode(&cf, buf, sizeof(buf), &len), 0);
    expect_error_close(d.port, 0, buf, len, FERRY__ERROR_CODE__ERROR_UNSUPPORTED_VERSION);
    bystander_check(&b);

    /* Connected fields. */
    struct rawc c;
    ck_assert_int_eq(rawc_open(&c, d.port), 0);
    cm.protocol_version = 1;
    cm.keepalive_ms = 5000;
    ck_assert_int_eq(rawc_send(&c, &cf), 0);
    Ferry__Frame *r;
    ck_assert_int_eq(rawc_recv(&c, T_WAIT, &r), 0);
    ck_assert_int_eq(r->body_case, FERRY__FRAME__BODY_CONNECTED);
    ck_assert_int_eq(r->connected->protocol_version, 1);
    ck_assert_int_eq(r->connected->keepalive_ms, 5000);
    ck_assert_int_eq(r->connected->max_frame_len, FRAME_MAX_LEN_DEFAULT);
    ck_assert_int_eq(r->connected->sync_policy, FERRY__SYNC_POLICY__SYNC_ALWAYS); /* default */
    ck_assert_int_gt(r->connected->client_id, 0);
    ck_assert_int_gt(strlen(r->connected->server_id), 0);
    ck_assert_int_gt(strlen(r->connected->server_version), 0);
    /* A second Connect is an error, but not fatal. */
    ck_assert_int_eq(rawc_send(&c, &cf), 0);
    ck_assert_int_eq(rawc_recv(&c, T_WAIT, &r), 0);
    ck_assert_int_eq(r->body_case, FERRY__FRAME__BODY_ERROR);
    ck_assert_int_eq(r->error->code, FERRY__ERROR_CODE__ERROR_PROTOCOL);
    ck_assert_int_eq(rawc_ping(&c, 5, T_WAIT), 0);
    rawc_close(&c);

    bystander_close(&b);
    STOP(&d);
}
END_TEST

START_TEST(test_bad_frames_get_error_and_close)
{
    struct ferryd_proc d;
    START(&d, NULL);
    struct bystander b;
    bystander_init(&b, d.port);

    /* Zero-length frame. */
    uint8_t zero[4] = {0, 0, 0, 0};
    expect_error_close(d.port, 1, zero, 4, FERRY__ERROR_CODE__ERROR_FRAME_TOO_LARGE);
    bystander_check(&b);

    /* Oversized: 100 MiB announced, only the header sent. */
    uint8_t big[4];
    frame_hdr_put(big, 100u * 1024 * 1024);
    expect_error_close(d.port, 1, big, 4, FERRY__ERROR_CODE__ERROR_FRAME_TOO_LARGE);
    bystander_check(&b);

    /* Garbage body of a valid length. */
    uint8_t garbage[4 + 64];
    frame_hdr_put(garbage, 64);
    srand(42);
    for (int i = 4; i < 68; i++) {
        garbage[i] = (uint8_t)(0xff - (rand() & 0x3f)); /* bad keys / runaway varints */
    }
    expect_error_close(d.port, 1, garbage, sizeof(garbage), FERRY__ERROR_CODE__ERROR_PROTOCOL);
    bystander_check(&b);

    /* Truncated frame then end of stream: closed, nobody else affected. */
    {
        struct rawc c;
        CONNECT(&c, d.port);
        uint8_t part[4 + 10] = {0};
        frame_hdr_put(part, 50);
        ck_assert_int_eq(rawc_send_raw(&c, part, sizeof(part)), 0);
        shutdown(c.fd, SHUT_WR);
        ck_assert_int_eq(rawc_wait_closed(&c, T_WAIT, NULL), 0);
        rawc_close(&c);
    }
    bystander_check(&b);

    /* A truncated frame that stays truncated: the keepalive closes it. */
    {
        struct rawc c;
        ck_assert_int_eq(rawc_connect(&c, d.port, 200), 0);
        uint8_t part[4 + 10] = {0};
        frame_hdr_put(part, 50);
        ck_assert_int_eq(rawc_send_raw(&c, part, sizeof(part)), 0);
        int code = -1;
        ck_assert_int_eq(rawc_wait_closed(&c, T_WAIT, &code), 0);
        ck_assert_int_eq(code, FERRY__ERROR_CODE__ERROR_KEEPALIVE_TIMEOUT);
        rawc_close(&c);
    }
    bystander_check(&b);

    /* Empty body oneof (only an unknown field, as a message type this
     * version does not know decodes): a protocol error, Error + close. */
    {
        struct rawc c;
        CONNECT(&c, d.port);
        uint8_t unk[4 + 3];
        frame_hdr_put(unk, 3);
        unk[4] = 0xa0;
        unk[5] = 0x06;
        unk[6] = 0x01;
        ck_assert_int_eq(rawc_send_raw(&c, unk, sizeof(unk)), 0);
        int code = -1;
        ck_assert_int_eq(rawc_wait_closed(&c, T_WAIT, &code), 0);
        ck_assert_int_eq(code, FERRY__ERROR_CODE__ERROR_UNKNOWN_MESSAGE);
        rawc_close(&c);
    }
    bystander_check(&b);

    /* A server-to-client message sent by a client: Error, connection stays. */
    {
        struct rawc c;
        CONNECT(&c, d.port);
        Ferry__Frame *f;
        Ferry__Pong pg = FERRY__PONG__INIT;
        Ferry__SubAck sa = FERRY__SUB_ACK__INIT;
        Ferry__Frame sf = FERRY__FRAME__INIT;
        sf.body_case = FERRY__FRAME__BODY_SUB_ACK;
        sf.sub_ack = &sa;
        (void)pg;
        ck_assert_int_eq(rawc_send(&c, &sf), 0);
        ck_assert_int_eq(rawc_recv(&c, T_WAIT, &f), 0);
        ck_assert_int_eq(f->body_case, FERRY__FRAME__BODY_ERROR);
        ck_assert_int_eq(f->error->code, FERRY__ERROR_CODE__ERROR_UNKNOWN_MESSAGE);
        ck_assert_int_eq(rawc_ping(&c, 77, T_WAIT), 0);
        rawc_close(&c);
    }
    bystander_check(&b);

    /* Many frames in one write, the last one garbage: the good ones are
     * answered, then Error + close. */
    {
        struct rawc c;
        CONNECT(&c, d.port);
        uint8_t buf[1024];
        size_t off = 0, len;
        for (int i = 0; i < 5; i++) {
            Ferry__Ping pm = FERRY__PING__INIT;
            pm.nonce = (uint64_t)i;
            Ferry__Frame pf = FERRY__FRAME__INIT;
            pf.body_case = FERRY__FRAME__BODY_PING;
            pf.ping = &pm;
            ck_assert_int_eq(codec_frame_encode(&pf, buf + off, sizeof(buf) - off, &len), 0);
            off += len;
        }
        memcpy(buf + off, garbage, sizeof(garbage));
        off += sizeof(garbage);
        ck_assert_int_eq(rawc_send_raw(&c, buf, off), 0);
        for (int i = 0; i < 5; i++) {
            Ferry__Frame *f;
            ck_assert_int_eq(rawc_recv(&c, T_WAIT, &f), 0);
            ck_assert_int_eq(f->body_case, FERRY__FRAME__BODY_PONG);
            ck_assert_int_eq(f->pong->nonce, i);
        }
        int code = -1;
        ck_assert_int_eq(rawc_wait_closed(&c, T_WAIT, &code), 0);
        ck_assert_int_eq(code, FERRY__ERROR_CODE__ERROR_PROTOCOL);
        rawc_close(&c);
    }
    bystander_check(&b);

    struct rawc admin;
    CONNECT(&admin, d.port);
    Ferry__Stats s = stats_get(&admin, 1);
    ck_assert_int_eq(s.protocol_errors, 5); /* zero, oversized, garbage x2, empty body */
    rawc_close(&admin);
    bystander_close(&b);
    STOP(&d);
}
END_TEST

START_TEST(test_keepalive_closes_silent_clients_only)
{
    struct ferryd_proc d;
    START(&d, NULL);
    struct rawc silent, chatty;
    ck_assert_int_eq(rawc_connect(&silent, d.port, 300), 0);
    ck_assert_int_eq(rawc_connect(&chatty, d.port, 300), 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* The chatty client pings every 100 ms; the silent one says nothing. */
    int silent_closed = 0, code = -1;
    for (int i = 0; i < 200 && !silent_closed; i++) {
        ck_assert_int_eq(rawc_ping(&chatty, (uint64_t)i, T_WAIT), 0);
        Ferry__Frame *f;
        int rc = rawc_recv(&silent, 100, &f);
        if (rc == 0) {
            ck_assert_int_eq(f->body_case, FERRY__FRAME__BODY_ERROR);
            code = (int)f->error->code;
        } else if (rc != -ETIMEDOUT) {
            silent_closed = 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    ck_assert_msg(silent_closed, "silent client not closed");
    ck_assert_int_eq(code, FERRY__ERROR_CODE__ERROR_KEEPALIVE_TIMEOUT);
    ck_assert_int_ge(ms, 400); /* not before 1.5 x 300 ms (minus clock slack) */
    ck_assert_int_eq(rawc_ping(&chatty, 1000, T_WAIT), 0);
    rawc_close(&silent);
    rawc_close(&chatty);
    STOP(&d);
}
END_TEST

START_TEST(test_connect_timeout)
{
    struct ferryd_proc d;
    START(&d, "--connect-timeout-ms", "200", NULL);
    struct rawc c;
    ck_assert_int_eq(rawc_open(&c, d.port), 0);
    int code = -1;
    ck_assert_int_eq(rawc_wait_closed(&c, T_WAIT, &code), 0);
    ck_assert_int_eq(code, FERRY__ERROR_CODE__ERROR_AUTH_TIMEOUT);
    rawc_close(&c);
    STOP(&d);
}
END_TEST

START_TEST(test_graceful_stop_flushes_and_says_goodbye)
{
    struct ferryd_proc d;
    START(&d, NULL);
    struct rawc sub, pub;
    CONNECT(&sub, d.port);
    CONNECT(&pub, d.port);
    ck_assert_int_eq(rawc_subscribe(&sub, 1, "s", NULL), 0);
    for (int i = 0; i < 1000; i++) {
        ck_assert_int_eq(rawc_publish(&pub, (uint64_t)i, "s", "x", 1, i == 999), 0);
    }
    Ferry__Frame *f;
    ck_assert_int_eq(rawc_recv_kind(&pub, T_WAIT, FERRY__FRAME__BODY_PUB_ACK, &f, NULL), 0);
    STOP(&d);
    /* Everything routed before the stop arrives, then ShuttingDown. */
    int n = 0, code = -1;
    for (;;) {
        int rc = rawc_recv(&sub, T_WAIT, &f);
        if (rc != 0) {
            break;
        }
        if (f->body_case == FERRY__FRAME__BODY_DELIVER) {
            n++;
        } else if (f->body_case == FERRY__FRAME__BODY_ERROR) {
            code = (int)f->error->code;
        }
    }
    ck_assert_int_eq(n, 1000);
    ck_assert_int_eq(code, FERRY__ERROR_CODE__ERROR_SHUTTING_DOWN);
    rawc_close(&sub);
    rawc_close(&pub);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("e2e_protocol");
    TCase *tc;
    tc = tcase_create("connect_first");
    tcase_add_test(tc, test_connect_must_come_first);
    suite_add_tcase(s, tc);
    tc = tcase_create("bad_frames");
    tcase_add_test(tc, test_bad_frames_get_error_and_close);
    suite_add_tcase(s, tc);
    tc = tcase_create("keepalive");
    tcase_add_test(tc, test_keepalive_closes_silent_clients_only);
    suite_add_tcase(s, tc);
    tc = tcase_create("connect_timeout");
    tcase_add_test(tc, test_connect_timeout);
    suite_add_tcase(s, tc);
    tc = tcase_create("graceful_stop");
    tcase_add_test(tc, test_graceful_stop_flushes_and_says_goodbye);
    suite_add_tcase(s, tc);
    return s;
}

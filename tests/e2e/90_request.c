/*
 * 90_request.c - request/reply end to end (issue 16, item 2): a real
 * ferryd (svc.> ephemeral, everything else stored), libferry's
 * ferry_request() in thread and event-loop mode against a responder that
 * answers to ferry_msg_reply_to(), "no responders" answered at once, a
 * time-out when the responder stays silent, reply_to on a stored topic
 * (live deliveries carry it, replays from the store do not), the wire
 * rules (a bad reply_to, PubAck and Error with ERROR_NO_RESPONDERS), the
 * `ferry reply` / `ferry request` pair, and the inbox under an auth file.
 *
 * No sleeps: every wait is for a condition, with a timeout.
 */
#include "auth_e2e.h"
#include "cli_e2e.h"
#include "e2e_util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

Suite *test_suite(void);

/* The broker of a case: svc.> is ephemeral (no responders applies there). */
static void up(void)
{
    const char *const args[] = {"--ephemeral", "svc.>", NULL};
    ck_assert_int_eq(ferryd_start(&broker, NULL, args), 0);
    snprintf(server, sizeof(server), "127.0.0.1:%d", broker.port);
}

static ferry_client *client_new(const char *user, const char *pw, int thread_mode)
{
    ferry_options *o;
    ferry_client *c;
    ck_assert_int_eq(ferry_options_create(&o), 0);
    ck_assert_int_eq(ferry_options_set_servers(o, server), 0);
    if (user != NULL) {
        ck_assert_int_eq(ferry_options_set_user_password(o, user, pw), 0);
    }
    ck_assert_int_eq(ferry_options_set_reconnect(o, 0, 0, 100, 1000, 0), 0);
    ck_assert_int_eq(ferry_client_create(o, &c), 0);
    ferry_options_destroy(o);
    if (thread_mode) {
        ck_assert_int_eq(ferry_client_start_thread(c), 0);
    }
    ck_assert_int_eq(ferry_client_connect(c, T_WAIT), 0);
    return c;
}

/* A responder: records what it got, and answers "re:<payload>" unless
 * silent. */
struct responder {
    pthread_mutex_t mu;
    int n;                 /* requests received */
    char reply_to[2][256]; /* the reply topics of the first two */
    int silent;
    ferry_client *c;
    ferry_sub *s;
};

static void on_request(ferry_client *c, ferry_sub *s, const ferry_msg *m, void *ud)
{
    (void)s;
    struct responder *r = ud;
    pthread_mutex_lock(&r->mu);
    if (r->n < 2) {
        snprintf(r->reply_to[r->n], sizeof(r->reply_to[0]), "%s", ferry_msg_reply_to(m));
    }
    r->n++;
    pthread_mutex_unlock(&r->mu);
    if (r->silent || ferry_msg_reply_to(m)[0] == '\0') {
        return;
    }
    size_t len;
    const char *d = ferry_msg_data(m, &len);
    char buf[300];
    int k = snprintf(buf, sizeof(buf), "re:%.*s", (int)len, d);
    ck_assert_int_eq(ferry_publish(c, ferry_msg_reply_to(m), buf, (size_t)k), 0);
}

/* Start a responder on topic (thread mode; subscribed once this returns:
 * the SubAck came, so every worker routes to it). */
static void responder_start(struct responder *r, const char *topic, const char *user,
                            const char *pw, int silent)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->mu, NULL);
    r->silent = silent;
    r->c = client_new(user, pw, 1);
    ck_assert_int_eq(ferry_subscribe(r->c, topic, NULL, on_request, r, T_WAIT, &r->s), 0);
}

static int responder_count(struct responder *r)
{
    pthread_mutex_lock(&r->mu);
    int n = r->n;
    pthread_mutex_unlock(&r->mu);
    return n;
}

static void responder_stop(struct responder *r)
{
    ferry_client_close(r->c, T_WAIT);
    ferry_client_destroy(r->c);
    pthread_mutex_destroy(&r->mu);
}

static void expect_reply(ferry_client *c, const char *topic, const char *payload, const char *want)
{
    ferry_msg *m = NULL;
    int rc = ferry_request(c, topic, payload, strlen(payload), T_WAIT, &m);
    ck_assert_msg(rc == 0, "request to %s: %s", topic, ferry_strerror(rc));
    size_t len;
    const char *d = ferry_msg_data(m, &len);
    ck_assert_uint_eq(len, strlen(want));
    ck_assert_mem_eq(d, want, len);
    ck_assert_str_eq(ferry_msg_reply_to(m), ""); /* the answer is no request */
    ck_assert_uint_eq(ferry_msg_sequence(m), 0); /* inboxes are never stored */
    ferry_msg_destroy(m);
}

/* Two requests through libferry in thread mode: the answers come back,
 * the responder saw two different reply topics in one inbox. */
START_TEST(test_request_reply_thread_mode)
{
    struct responder r;
    responder_start(&r, "svc.echo", NULL, NULL, 0);
    ferry_client *c = client_new(NULL, NULL, 1);
    expect_reply(c, "svc.echo", "ping", "re:ping");
    expect_reply(c, "svc.echo", "again", "re:again");
    ck_assert_int_eq(responder_count(&r), 2);
    ck_assert_msg(strncmp(r.reply_to[0], "_INBOX.", 7) == 0, "reply_to %s", r.reply_to[0]);
    ck_assert_str_ne(r.reply_to[0], r.reply_to[1]);
    /* One inbox per client: the same prefix up to the last token. */
    const char *dot0 = strrchr(r.reply_to[0], '.'), *dot1 = strrchr(r.reply_to[1], '.');
    ck_assert_int_eq(dot0 - r.reply_to[0], dot1 - r.reply_to[1]);
    ck_assert_mem_eq(r.reply_to[0], r.reply_to[1], (size_t)(dot0 - r.reply_to[0]));
    ferry_client_close(c, T_WAIT);
    ferry_client_destroy(c);
    responder_stop(&r);
}
END_TEST

/* The same in event-loop mode: ferry_request drives the IO itself. */
START_TEST(test_request_reply_event_loop)
{
    struct responder r;
    responder_start(&r, "svc.echo", NULL, NULL, 0);
    ferry_client *c = client_new(NULL, NULL, 0);
    expect_reply(c, "svc.echo", "loop", "re:loop");
    ferry_client_close(c, T_WAIT);
    ferry_client_destroy(c);
    responder_stop(&r);
}
END_TEST

/* Nobody subscribes to an ephemeral topic: FERRY_ENORESPONDERS, long
 * before the 10 s the caller was ready to wait. */
START_TEST(test_no_responders_at_once)
{
    ferry_client *c = client_new(NULL, NULL, 1);
    ferry_msg *m = NULL;
    long long t0 = now_ms();
    int rc = ferry_request(c, "svc.nobody", "x", 1, 10000, &m);
    long long took = now_ms() - t0;
    ck_assert_msg(rc == FERRY_ENORESPONDERS, "got %s", ferry_strerror(rc));
    ck_assert_msg(took < 5000, "no responders took %lld ms", took);
    ck_assert_ptr_null(m);
    char text[256];
    ck_assert_int_eq(ferry_client_last_error(c, text, sizeof(text)), FERRY_ENORESPONDERS);
    ck_assert_msg(strstr(text, "svc.nobody") != NULL, "last error: %s", text);
    /* The client is fine afterwards: a request that has a responder works. */
    struct responder r;
    responder_start(&r, "svc.late", NULL, NULL, 0);
    expect_reply(c, "svc.late", "y", "re:y");
    responder_stop(&r);
    ferry_client_close(c, T_WAIT);
    ferry_client_destroy(c);
}
END_TEST

/* A responder that never answers: -ETIMEDOUT after the timeout, not
 * before; the request did reach it. A stored topic nobody listens to
 * stores the request: a time-out too, not FERRY_ENORESPONDERS. */
START_TEST(test_request_times_out)
{
    struct responder r;
    responder_start(&r, "svc.silent", NULL, NULL, 1);
    ferry_client *c = client_new(NULL, NULL, 1);
    ferry_msg *m = NULL;
    long long t0 = now_ms();
    int rc = ferry_request(c, "svc.silent", "x", 1, 500, &m);
    long long took = now_ms() - t0;
    ck_assert_msg(rc == -ETIMEDOUT, "got %s", ferry_strerror(rc));
    ck_assert_msg(took >= 490, "timed out after only %lld ms", took);
    ck_assert_int_eq(responder_count(&r), 1);

    t0 = now_ms();
    rc = ferry_request(c, "stored.nobody", "x", 1, 300, &m);
    took = now_ms() - t0;
    ck_assert_msg(rc == -ETIMEDOUT, "stored topic: got %s", ferry_strerror(rc));
    ck_assert_msg(took >= 290, "timed out after only %lld ms", took);
    ferry_client_close(c, T_WAIT);
    ferry_client_destroy(c);
    responder_stop(&r);
}
END_TEST

/* reply_to on a stored topic: the live delivery carries it, a replay from
 * the store does not; a request through a stored topic is answered. */
START_TEST(test_stored_topic_reply_to_live_only)
{
    ferry_client *c = client_new(NULL, NULL, 1);
    ferry_sub *live;
    ck_assert_int_eq(ferry_subscribe(c, "jobs.run", NULL, NULL, NULL, T_WAIT, &live), 0);
    ferry_pub p = {
        .topic = "jobs.run", .payload = "j", .payload_len = 1, .reply_to = "answers.here"};
    uint64_t seq = 0;
    ck_assert_int_eq(ferry_publish_sync(c, &p, T_WAIT, &seq), 0);
    ck_assert_uint_gt(seq, 0);
    ferry_msg *m;
    ck_assert_int_eq(ferry_sub_next(live, T_WAIT, &m), 0);
    ck_assert_uint_eq(ferry_msg_sequence(m), seq);
    ck_assert_str_eq(ferry_msg_reply_to(m), "answers.here");
    ferry_msg *copy;
    ck_assert_int_eq(ferry_msg_copy(m, &copy), 0);
    ck_assert_str_eq(ferry_msg_reply_to(copy), "answers.here");
    ferry_msg_destroy(copy);
    ferry_msg_destroy(m);

    ferry_sub_options *so;
    ck_assert_int_eq(ferry_sub_options_create(&so), 0);
    ck_assert_int_eq(ferry_sub_options_set_start(so, FERRY_START_SEQUENCE, (int64_t)seq), 0);
    ferry_sub *replay;
    ck_assert_int_eq(ferry_subscribe(c, "jobs.run", so, NULL, NULL, T_WAIT, &replay), 0);
    ferry_sub_options_destroy(so);
    ck_assert_int_eq(ferry_sub_next(replay, T_WAIT, &m), 0);
    ck_assert_uint_eq(ferry_msg_sequence(m), seq);
    ck_assert_str_eq(ferry_msg_reply_to(m), "");
    ferry_msg_destroy(m);
    ferry_unsubscribe(replay);
    ferry_unsubscribe(live);

    struct responder r;
    responder_start(&r, "jobs.ask", NULL, NULL, 0);
    expect_reply(c, "jobs.ask", "q", "re:q");
    responder_stop(&r);
    ferry_client_close(c, T_WAIT);
    ferry_client_destroy(c);
}
END_TEST

static void publish_raw(struct rawc *c, uint64_t id, const char *topic, const char *reply_to,
                        int want_ack)
{
    Ferry__Publish p = FERRY__PUBLISH__INIT;
    p.id = id;
    p.topic = (char *)topic;
    p.reply_to = (char *)reply_to;
    p.want_ack = want_ack;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_PUBLISH;
    f.publish = &p;
    ck_assert_int_eq(rawc_send(c, &f), 0);
}

/* The wire: a bad reply_to is refused; ERROR_NO_RESPONDERS as PubAck and
 * as Error; a plain publish (the fast path) is unchanged; a raw Deliver
 * carries reply_to. */
START_TEST(test_wire_rules)
{
    struct rawc c, s;
    CONNECT(&c, broker.port);
    CONNECT(&s, broker.port);
    Ferry__Frame *f;

    publish_raw(&c, 1, "svc.x", "reply.*", 1);
    ck_assert_int_eq(rawc_recv_kind(&c, T_WAIT, FERRY__FRAME__BODY_ERROR, &f, NULL), 0);
    ck_assert_int_eq(f->error->code, FERRY__ERROR_CODE__ERROR_INVALID_TOPIC);
    ck_assert_uint_eq(f->error->ref_id, 1);

    publish_raw(&c, 2, "svc.none", "reply.x", 1);
    ck_assert_int_eq(rawc_recv_kind(&c, T_WAIT, FERRY__FRAME__BODY_PUB_ACK, &f, NULL), 0);
    ck_assert_uint_eq(f->pub_ack->id, 2);
    ck_assert_int_eq(f->pub_ack->code, FERRY__ERROR_CODE__ERROR_NO_RESPONDERS);

    publish_raw(&c, 3, "svc.none", "reply.x", 0);
    ck_assert_int_eq(rawc_recv_kind(&c, T_WAIT, FERRY__FRAME__BODY_ERROR, &f, NULL), 0);
    ck_assert_uint_eq(f->error->ref_id, 3);
    ck_assert_int_eq(f->error->ref_kind, FERRY__ERROR__REF_KIND__REF_PUBLISH);
    ck_assert_int_eq(f->error->code, FERRY__ERROR_CODE__ERROR_NO_RESPONDERS);

    /* Without reply_to nobody subscribing is fine (and the fast path reads
     * this one). */
    ck_assert_int_eq(rawc_publish(&c, 4, "svc.none", "p", 1, 1), 0);
    ck_assert_int_eq(rawc_recv_kind(&c, T_WAIT, FERRY__FRAME__BODY_PUB_ACK, &f, NULL), 0);
    ck_assert_uint_eq(f->pub_ack->id, 4);
    ck_assert_int_eq(f->pub_ack->code, 0);

    ck_assert_int_eq(rawc_subscribe(&s, 7, "svc.raw", NULL), 0);
    publish_raw(&c, 5, "svc.raw", "reply.raw", 1);
    ck_assert_int_eq(rawc_recv_kind(&c, T_WAIT, FERRY__FRAME__BODY_PUB_ACK, &f, NULL), 0);
    ck_assert_int_eq(f->pub_ack->code, 0);
    Ferry__Deliver *d = recv_deliver(&s);
    ck_assert_str_eq(d->topic, "svc.raw");
    ck_assert_str_eq(d->reply_to, "reply.raw");
    rawc_close(&c);
    rawc_close(&s);
}
END_TEST

/* `ferry reply T 'tr a-z A-Z' --count 1` answers `ferry request T hello`. */
START_TEST(test_cli_reply_request)
{
    struct proc r, q;
    const char *const rargs[] = {"reply", "svc.up",    "tr a-z A-Z", "--count",
                                 "1",     "--verbose", NULL};
    proc_start(&r, rargs);
    ck_assert_msg(proc_wait_for(&r, true, "subscribed to svc.up", WAIT_MS) == 0,
                  "reply never subscribed: %s", r.err_buf ? r.err_buf : "");
    const char *const qargs[] = {"request", "svc.up", "hello", NULL};
    int st = run(&q, NULL, qargs);
    ck_assert_msg(st == 0, "request exited %d: %s", st, q.err_buf ? q.err_buf : "");
    ck_assert_str_eq(q.out_buf ? q.out_buf : "", "HELLO\n");
    ck_assert_int_eq(proc_wait(&r, WAIT_MS), 0);
    proc_free(&q);
    proc_free(&r);
}
END_TEST

/* ferry reply with a request larger than a pipe holds, to a command that
 * writes as it reads (cat): both pipes are served, nothing deadlocks. */
START_TEST(test_cli_reply_large_request)
{
    struct proc r;
    const char *const rargs[] = {"reply", "svc.big", "cat", "--count", "1", "--verbose", NULL};
    proc_start(&r, rargs);
    ck_assert_msg(proc_wait_for(&r, true, "subscribed to svc.big", WAIT_MS) == 0,
                  "reply never subscribed: %s", r.err_buf ? r.err_buf : "");
    size_t len = 300 * 1024;
    char *big = malloc(len);
    ck_assert_ptr_nonnull(big);
    for (size_t i = 0; i < len; i++) {
        big[i] = (char)('a' + i % 26);
    }
    ferry_client *c = client_new(NULL, NULL, 1);
    ferry_msg *m = NULL;
    int rc = ferry_request(c, "svc.big", big, len, T_WAIT, &m);
    ck_assert_msg(rc == 0, "request: %s", ferry_strerror(rc));
    size_t n;
    const void *p = ferry_msg_data(m, &n);
    ck_assert_uint_eq(n, len);
    ck_assert(memcmp(p, big, len) == 0);
    ferry_msg_destroy(m);
    ferry_client_destroy(c);
    free(big);
    ck_assert_int_eq(proc_wait(&r, WAIT_MS), 0);
    proc_free(&r);
}
END_TEST

/* The CLI's two failures: no responders (at once) and a time-out. */
START_TEST(test_cli_no_responders_and_timeout)
{
    struct proc q;
    const char *const a1[] = {"request", "svc.none", "hi", "--timeout", "10s", NULL};
    long long t0 = now_ms();
    ck_assert_int_eq(run(&q, NULL, a1), 1);
    ck_assert_msg(now_ms() - t0 < 5000, "took %lld ms", now_ms() - t0);
    ck_assert_msg(q.err_buf && strstr(q.err_buf, "no responders on svc.none"), "stderr: %s",
                  q.err_buf ? q.err_buf : "");
    proc_free(&q);
    const char *const a2[] = {"request", "stored.none", "hi", "--timeout", "300ms", NULL};
    ck_assert_int_eq(run(&q, NULL, a2), 1);
    ck_assert_msg(q.err_buf && strstr(q.err_buf, "timed out"), "stderr: %s",
                  q.err_buf ? q.err_buf : "");
    proc_free(&q);
}
END_TEST

/* Under an auth file: the documented rights are enough (requester:
 * publish on the topic, subscribe on _INBOX.>; responder: subscribe on the
 * topic, publish on _INBOX.>), and a requester without subscribe on
 * _INBOX.> gets FERRY_EPERM naming the inbox, at once. */
START_TEST(test_inbox_acl)
{
    struct e2e_auth_dir ad;
    e2e_auth_dir_make(&ad, "req");
    char *h = e2e_hash("pw", "$6$", 1000);
    FILE *fp = fopen(ad.path, "w");
    ck_assert_ptr_nonnull(fp);
    fprintf(fp,
            "user asker %s\nuser helper %s\nuser noinbox %s\n"
            "allow asker publish svc.>\nallow asker subscribe _INBOX.>\n"
            "allow helper subscribe svc.>\nallow helper publish _INBOX.>\n"
            "allow noinbox publish svc.>\nallow noinbox subscribe svc.>\n",
            h, h, h);
    ck_assert_int_eq(fclose(fp), 0);
    ck_assert_int_eq(chmod(ad.path, 0600), 0);
    free(h);
    const char *const args[] = {"--ephemeral", "svc.>", "--auth-file", ad.path, NULL};
    ck_assert_int_eq(ferryd_start(&broker, NULL, args), 0);
    snprintf(server, sizeof(server), "127.0.0.1:%d", broker.port);

    struct responder r;
    responder_start(&r, "svc.help", "helper", "pw", 0);
    ferry_client *ok = client_new("asker", "pw", 1);
    expect_reply(ok, "svc.help", "please", "re:please");

    ferry_client *bad = client_new("noinbox", "pw", 1);
    ferry_msg *m = NULL;
    long long t0 = now_ms();
    int rc = ferry_request(bad, "svc.help", "x", 1, 10000, &m);
    ck_assert_msg(rc == FERRY_EPERM, "got %s", ferry_strerror(rc));
    ck_assert_msg(now_ms() - t0 < 5000, "took %lld ms", now_ms() - t0);
    char text[256];
    ck_assert_int_eq(ferry_client_last_error(bad, text, sizeof(text)), FERRY_EPERM);
    ck_assert_msg(strstr(text, "_INBOX.") != NULL && strstr(text, "subscribe") != NULL,
                  "last error: %s", text);
    ck_assert_int_eq(responder_count(&r), 1); /* the refused request was never sent */

    ferry_client_close(bad, T_WAIT);
    ferry_client_destroy(bad);
    ferry_client_close(ok, T_WAIT);
    ferry_client_destroy(ok);
    responder_stop(&r);
    broker_down();
    e2e_auth_dir_remove(&ad);
}
END_TEST

/* fixture: 1 the svc.> broker; 2 only stop what the test started. */
static void add(Suite *s, TCase *tc, const TTest *t, int fixture)
{
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, fixture == 1 ? up : NULL, broker_down);
    tcase_add_test(tc, t);
    suite_add_tcase(s, tc);
}

Suite *test_suite(void)
{
    Suite *s = suite_create("e2e_request");
    add(s, tcase_create("request_reply_thread_mode"), test_request_reply_thread_mode, 1);
    add(s, tcase_create("request_reply_event_loop"), test_request_reply_event_loop, 1);
    add(s, tcase_create("no_responders_at_once"), test_no_responders_at_once, 1);
    add(s, tcase_create("request_times_out"), test_request_times_out, 1);
    add(s, tcase_create("stored_topic_reply_to_live_only"), test_stored_topic_reply_to_live_only,
        1);
    add(s, tcase_create("wire_rules"), test_wire_rules, 1);
    add(s, tcase_create("cli_reply_request"), test_cli_reply_request, 1);
    add(s, tcase_create("cli_reply_large_request"), test_cli_reply_large_request, 1);
    add(s, tcase_create("cli_no_responders_and_timeout"), test_cli_no_responders_and_timeout, 1);
    add(s, tcase_create("inbox_acl"), test_inbox_acl, 2);
    return s;
}

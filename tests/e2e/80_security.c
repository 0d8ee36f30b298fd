/*
 * 80_security.c - authentication and authorization end to end, over the
 * wire: wrong password and unknown user get the same refusal, tokens, the
 * login gate against guessing, jamming and idle sockets, ACLs on publish and subscribe with
 * wildcard edge cases (live and replay), the admin right, and SIGHUP
 * reloading the auth file (a subscription no longer allowed is removed).
 */
#include "auth_e2e.h"
#include "e2e_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

Suite *test_suite(void);

static struct e2e_auth_dir ad;

/* alice: password "secret"; ops: password "opspw" (publish and subscribe
 * everything, admin); token ci:tok (subscribe metrics.>). extra: more
 * rules for alice. Written atomically (rename). */
static void write_auth(const char *alice_rules)
{
    static char *h_alice, *h_ops, *h_ci;
    if (h_alice == NULL) {
        h_alice = e2e_hash("secret", "$6$", 1000);
        h_ops = e2e_hash("opspw", "$6$", 1000);
        h_ci = e2e_hash("tok", "$6$", 1000);
    }
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.tmp", ad.path);
    FILE *f = fopen(tmp, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "# test users\n"
            "user alice %s\n"
            "user ops %s\n"
            "token ci %s\n"
            "allow ops publish >\n"
            "allow ops subscribe >\n"
            "allow ops admin\n"
            "allow ci subscribe metrics.>\n"
            "%s",
            h_alice, h_ops, h_ci, alice_rules);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(rename(tmp, ad.path), 0);
}

static const char alice_default[] = "allow alice publish orders.eu.*\n"
                                    "allow alice subscribe orders.eu.*\n"
                                    "allow alice subscribe logs.>\n";

static void setup(void)
{
    e2e_auth_dir_make(&ad, "auth");
    write_auth(alice_default);
}

static void teardown(void)
{
    e2e_auth_dir_remove(&ad);
}

static void start(struct ferryd_proc *d)
{
    START(d, "--auth-file", ad.path, NULL);
}

/* Failures are delayed per source address: tests that fail many logins on
 * purpose use a new loopback address (127.0.0.2, .3 ...) for each, so they
 * do not add up. 0: 127.0.0.1. */
static int src_host, src_next = 10;

static int open_conn(struct rawc *c, int port)
{
    if (src_host == 0) {
        return rawc_open(c, port);
    }
    memset(c, 0, sizeof(*c));
    frame_dec_init(&c->dec, FRAME_MAX_LEN_CEILING);
    codec_arena_init(&c->arena);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(c->fd, 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK + (uint32_t)src_host);
    ck_assert_int_eq(bind(c->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return 0;
}

/* Open and send Connect with credentials; wait for the answer. Returns 0
 * (Connected) or the wire code of the Error; *text gets a copy of its text
 * (if text != NULL), *fatal its is_fatal flag. */
static int login(struct rawc *c, int port, const char *user, const char *pw, const char *token,
                 char *text, size_t text_len, int *fatal)
{
    ck_assert_int_eq(open_conn(c, port), 0);
    Ferry__Connect m = FERRY__CONNECT__INIT;
    m.protocol_version = 1;
    m.client_name = (char *)"e2e security";
    m.username = (char *)(user ? user : "");
    m.password = (char *)(pw ? pw : "");
    m.token = (char *)(token ? token : "");
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_CONNECT;
    f.connect = &m;
    ck_assert_int_eq(rawc_send(c, &f), 0);
    Ferry__Frame *r;
    ck_assert_int_eq(rawc_recv(c, T_WAIT, &r), 0);
    if (r->body_case == FERRY__FRAME__BODY_CONNECTED) {
        return 0;
    }
    ck_assert_int_eq(r->body_case, FERRY__FRAME__BODY_ERROR);
    if (text) {
        snprintf(text, text_len, "%s", r->error->text);
    }
    if (fatal) {
        *fatal = r->error->is_fatal;
    }
    return (int)r->error->code;
}

static void login_ok(struct rawc *c, int port, const char *user, const char *pw)
{
    ck_assert_int_eq(login(c, port, user, pw, NULL, NULL, 0, NULL), 0);
}

/* The refusal is fatal and the server closes. */
static void expect_refused(struct rawc *c, int port, const char *user, const char *pw,
                           const char *token, char *text, size_t text_len)
{
    int fatal = 0;
    src_host = src_next++; /* a fresh address: the smallest delay */
    ck_assert_int_eq(login(c, port, user, pw, token, text, text_len, &fatal),
                     FERRY__ERROR_CODE__ERROR_AUTH_FAILED);
    ck_assert_int_eq(fatal, 1);
    ck_assert_int_eq(rawc_wait_closed(c, T_WAIT, NULL), 0);
    rawc_close(c);
    src_host = 0;
}

/* Publish with an ack; returns 0 (PubAck ok) or the refusal's wire code
 * (from an Error with our id as ref, or a PubAck's code). */
static int publish_acked(struct rawc *c, uint64_t id, const char *topic)
{
    ck_assert_int_eq(rawc_publish(c, id, topic, "x", 1, 1), 0);
    for (;;) {
        Ferry__Frame *f;
        ck_assert_int_eq(rawc_recv(c, T_WAIT, &f), 0);
        if (f->body_case == FERRY__FRAME__BODY_PUB_ACK && f->pub_ack->id == id) {
            return (int)f->pub_ack->code;
        }
        if (f->body_case == FERRY__FRAME__BODY_ERROR) {
            ck_assert_int_eq(f->error->ref_kind, FERRY__ERROR__REF_KIND__REF_PUBLISH);
            ck_assert_uint_eq(f->error->ref_id, id);
            ck_assert_int_eq(f->error->is_fatal, 0);
            return (int)f->error->code;
        }
    }
}

static Ferry__Stats admin_stats(int port)
{
    struct rawc c;
    login_ok(&c, port, "ops", "opspw");
    Ferry__Stats s = stats_get(&c, 77);
    rawc_close(&c);
    return s;
}

START_TEST(test_login_wrong_password_unknown_user_token)
{
    struct ferryd_proc d;
    start(&d);
    struct rawc c;
    char t1[256], t2[256], t3[256];
    expect_refused(&c, d.port, "alice", "wrong", NULL, t1, sizeof(t1));
    expect_refused(&c, d.port, "mallory", "secret", NULL, t2, sizeof(t2));
    expect_refused(&c, d.port, NULL, NULL, NULL, t3, sizeof(t3)); /* anonymous */
    /* no hint whether the user exists */
    ck_assert_str_eq(t1, t2);
    ck_assert_str_eq(t1, t3);
    expect_refused(&c, d.port, NULL, NULL, "ci:wrong", NULL, 0);
    expect_refused(&c, d.port, NULL, NULL, "tok", NULL, 0);          /* no name */
    expect_refused(&c, d.port, "ci", "tok", NULL, NULL, 0);          /* a token is no password */
    expect_refused(&c, d.port, NULL, NULL, "alice:secret", NULL, 0); /* a password is no token */
    login_ok(&c, d.port, "alice", "secret");
    ck_assert_int_eq(rawc_ping(&c, 1, T_WAIT), 0);
    rawc_close(&c);
    ck_assert_int_eq(login(&c, d.port, NULL, NULL, "ci:tok", NULL, 0, NULL), 0);
    ck_assert_int_eq(rawc_subscribe(&c, 1, "metrics.>", NULL), 0);
    ck_assert_int_eq(rawc_subscribe(&c, 2, "orders.eu.x", NULL),
                     FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED);
    rawc_close(&c);
    Ferry__Stats s = admin_stats(d.port);
    ck_assert_uint_eq(s.auth_failures, 7);
    ck_assert_uint_eq(s.protocol_errors, 0);
    STOP(&d);
}
END_TEST

/* Open a connection from the current src_host and send a Connect with a
 * wrong password for user, without waiting for the answer. */
static void connect_nowait(struct rawc *c, int port, const char *user, const char *pw)
{
    ck_assert_int_eq(open_conn(c, port), 0);
    Ferry__Connect m = FERRY__CONNECT__INIT;
    m.protocol_version = 1;
    m.username = (char *)user;
    m.password = (char *)pw;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_CONNECT;
    f.connect = &m;
    ck_assert_int_eq(rawc_send(c, &f), 0);
}

/* A login attempt from the current src_host: its wire result, and how long
 * the answer took (ms) in *took. */
static int timed_login(int port, const char *user, const char *pw, long long *took, char *text,
                       size_t text_len)
{
    struct rawc c;
    long long t0 = e2e_ms_now();
    int rc = login(&c, port, user, pw, NULL, text, text_len, NULL);
    *took = e2e_ms_now() - t0;
    rawc_close(&c);
    return rc;
}

/* Guessing is slowed where it hurts the guesser: after the free failures,
 * an address's next check waits before it runs, so even the right password
 * is answered only after the wait (the landed main answered a success at
 * once and only delayed failures). Another address is not slowed. */
START_TEST(test_guessing_waits_before_the_check)
{
    struct ferryd_proc d;
    START(&d, "--auth-file", ad.path, "--login-delay-ms", "300", "--login-delay-max-ms", "600",
          NULL);
    src_host = 2;
    long long took;
    for (int i = 0; i < 4; i++) { /* three free, the fourth sets the first wait */
        ck_assert_int_eq(timed_login(d.port, "alice", "wrong", &took, NULL, 0),
                         FERRY__ERROR_CODE__ERROR_AUTH_FAILED);
    }
    ck_assert_int_eq(timed_login(d.port, "alice", "secret", &took, NULL, 0), 0);
    ck_assert_msg(took >= 250, "the right password after 4 failures answered in %lld ms", took);
    /* The success does not clear the address: its next failure counts on. */
    ck_assert_int_eq(timed_login(d.port, "alice", "wrong", &took, NULL, 0),
                     FERRY__ERROR_CODE__ERROR_AUTH_FAILED);
    ck_assert_int_eq(timed_login(d.port, "ops", "wrong", &took, NULL, 0),
                     FERRY__ERROR_CODE__ERROR_AUTH_FAILED);
    ck_assert_msg(took >= 500, "the 6th failure's check waited only %lld ms", took);
    /* Another address, and the real alice, are not held back. */
    src_host = 3;
    ck_assert_int_eq(timed_login(d.port, "alice", "secret", &took, NULL, 0), 0);
    ck_assert_msg(took < 250, "a clean address waited %lld ms", took);
    src_host = 0;
    STOP(&d);
}
END_TEST

/* Past a wait of a second, a login is refused at once with the time to
 * retry, not held until the client times out; and parallel guesses from
 * one address are taken one at a time. */
START_TEST(test_over_budget_is_refused_at_once_with_the_retry_time)
{
    struct ferryd_proc d;
    START(&d, "--auth-file", ad.path, "--login-delay-ms", "400", NULL);
    src_host = 4;
    long long took;
    char text[256] = "";
    int refused_at = -1;
    for (int i = 0; i < 10 && refused_at < 0; i++) {
        timed_login(d.port, "alice", "wrong", &took, text, sizeof(text));
        if (strstr(text, "retry in") != NULL) {
            refused_at = i;
        }
    }
    /* 4 free, then waits of 400 and 800 ms; the next would be 1.6 s */
    ck_assert_msg(refused_at == 6, "refused with a retry time at attempt %d", refused_at);
    ck_assert_msg(took < 1000, "the refusal took %lld ms", took);
    ck_assert_msg(strstr(text, "too many failed logins") != NULL, "text: %s", text);
    /* Five at once from that address: none is checked before its turn, so
     * the last answer comes only after the others' waits. */
    src_host = 5;
    struct rawc c[5];
    long long t0 = e2e_ms_now();
    for (int i = 0; i < 5; i++) {
        connect_nowait(&c[i], d.port, "ops", "wrong");
    }
    for (int i = 0; i < 5; i++) {
        Ferry__Frame *f;
        ck_assert_int_eq(rawc_recv(&c[i], T_WAIT, &f), 0);
        ck_assert_int_eq(f->body_case, FERRY__FRAME__BODY_ERROR);
        ck_assert_int_eq(f->error->code, FERRY__ERROR_CODE__ERROR_AUTH_FAILED);
        rawc_close(&c[i]);
    }
    /* 4 free (one at a time), then the fifth waits 400 ms */
    ck_assert_msg(e2e_ms_now() - t0 >= 350, "5 parallel guesses answered in %lld ms",
                  e2e_ms_now() - t0);
    src_host = 0;
    STOP(&d);
}
END_TEST

/* CPU seconds ferryd has used (utime + stime from /proc). */
static double cpu_seconds(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    ck_assert_ptr_nonnull(p);
    unsigned long ut = 0, st = 0;
    /* after ") ": state and 10 more fields, then utime and stime */
    ck_assert_int_eq(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st),
                     2);
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* A realistic hash (yescrypt at its default cost, tens of ms) for "slow". */
static const char *slow_rule(void)
{
    static char rule[256];
    if (rule[0] == '\0') {
        char *h = e2e_hash("slowpw", "$y$", 0);
        snprintf(rule, sizeof(rule), "user slow %s\n", h);
        free(h);
    }
    return rule;
}

/* 300 Connects with a wrong password, closed at once, must not keep the
 * password checker busy: the landed main hashed every one of them (and
 * refused real logins with SERVER_BUSY meanwhile). */
START_TEST(test_closed_logins_cannot_jam_the_checker)
{
    char rules[512];
    snprintf(rules, sizeof(rules), "%s%s", alice_default, slow_rule());
    write_auth(rules);
    struct ferryd_proc d;
    start(&d);
    double cpu0 = cpu_seconds(d.pid);
    src_host = 6;
    for (int i = 0; i < 300; i++) {
        struct rawc c;
        connect_nowait(&c, d.port, "slow", "wrong");
        rawc_close(&c);
    }
    src_host = 0;
    long long took;
    ck_assert_int_eq(timed_login(d.port, "ops", "opspw", &took, NULL, 0), 0);
    ck_assert_msg(took < 2000, "a real login during the jam took %lld ms", took);
    /* Give whatever was queued time to run, then count the work done: a
     * few yescrypt checks, not 300 (about 15 CPU-seconds here). */
    struct rawc c;
    login_ok(&c, d.port, "alice", "secret");
    rawc_close(&c);
    double spent = cpu_seconds(d.pid) - cpu0;
    ck_assert_msg(spent < 3.0, "ferryd spent %.1f CPU-s on closed logins", spent);
    STOP(&d);
}
END_TEST

/* Idle sockets from one address take at most half of the pre-login bound
 * (max_connections 64: 8 in all, 4 per address); the landed main let 64 of
 * them lock everyone out until their Connect deadline. */
START_TEST(test_idle_sockets_cannot_take_every_slot)
{
    struct ferryd_proc d;
    START(&d, "--auth-file", ad.path, "--max-connections", "64", NULL);
    src_host = 7;
    struct rawc idle[64];
    int n_open = 0, n_refused = 0;
    for (int i = 0; i < 64; i++) {
        ck_assert_int_eq(open_conn(&idle[i], d.port), 0);
        n_open++;
    }
    /* Beyond 4, each is refused with an Error saying why, and closed. */
    for (int i = 0; i < n_open; i++) {
        Ferry__Frame *f;
        if (rawc_recv(&idle[i], 300, &f) == 0 && f->body_case == FERRY__FRAME__BODY_ERROR &&
            f->error->code == FERRY__ERROR_CODE__ERROR_LIMIT_EXCEEDED) {
            n_refused++;
        }
    }
    ck_assert_int_eq(n_refused, 60);
    src_host = 0;
    long long took;
    ck_assert_int_eq(timed_login(d.port, "alice", "secret", &took, NULL, 0), 0);
    ck_assert_msg(took < 1000, "a real login took %lld ms", took);
    for (int i = 0; i < n_open; i++) {
        rawc_close(&idle[i]);
    }
    STOP(&d);
}
END_TEST

START_TEST(test_acl_publish_concrete_topic)
{
    struct ferryd_proc d;
    start(&d);
    struct rawc c;
    login_ok(&c, d.port, "alice", "secret");
    ck_assert_int_eq(publish_acked(&c, 1, "orders.eu.new"), 0);
    const char *denied[] = {"orders.us.new",  "orders.eu", "orders.eu.new.x", "orders", "x",
                            "orders.eux.new", "logs.a"};
    for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
        ck_assert_msg(publish_acked(&c, 10 + i, denied[i]) ==
                          FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED,
                      "publish to %s allowed", denied[i]);
    }
    /* without an ack too: an Error with the id, and the connection stays */
    ck_assert_int_eq(rawc_publish(&c, 99, "orders.us.x", "x", 1, 0), 0);
    Ferry__Frame *f;
    ck_assert_int_eq(rawc_recv_kind(&c, T_WAIT, FERRY__FRAME__BODY_ERROR, &f, NULL), 0);
    ck_assert_int_eq(f->error->code, FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED);
    ck_assert_uint_eq(f->error->ref_id, 99);
    ck_assert_ptr_nonnull(strstr(f->error->text, "publish orders.us.x"));
    ck_assert_int_eq(rawc_ping(&c, 5, T_WAIT), 0);
    ck_assert_int_eq(publish_acked(&c, 100, "orders.eu.again"), 0);
    rawc_close(&c);
    Ferry__Stats s = admin_stats(d.port);
    ck_assert_uint_eq(s.permission_denials, 8);
    STOP(&d);
}
END_TEST

START_TEST(test_acl_subscribe_every_matching_topic_allowed)
{
    struct ferryd_proc d;
    start(&d);
    struct rawc c, ops;
    login_ok(&c, d.port, "alice", "secret");
    const char *ok[] = {"orders.eu.*", "orders.eu.new", "logs.>", "logs.a", "logs.*.b", "logs.a.>"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        ck_assert_msg(rawc_subscribe(&c, 1 + i, ok[i], NULL) == 0, "%s refused", ok[i]);
    }
    const char *denied[] = {"orders.*",    "orders.>",  ">",    "*",   "*.eu.new",
                            "orders.eu.>", "orders.eu", "logs", "*.>", "orders.eu.new.x"};
    for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
        ck_assert_msg(rawc_subscribe(&c, 100 + i, denied[i], NULL) ==
                          FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED,
                      "%s allowed", denied[i]);
    }
    /* queue groups are subscriptions like any other */
    ck_assert_int_eq(rawc_subscribe(&c, 200, "orders.*", "workers"),
                     FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED);
    ck_assert_int_eq(rawc_subscribe(&c, 201, "orders.eu.*", "workers"), 0);
    /* live fan-out: alice gets what she may read, nothing else */
    login_ok(&ops, d.port, "ops", "opspw");
    ck_assert_int_eq(publish_acked(&ops, 1, "orders.us.new"), 0);
    ck_assert_int_eq(publish_acked(&ops, 2, "orders.eu.new"), 0);
    Ferry__Deliver *m = recv_deliver(&c);
    ck_assert_str_eq(m->topic, "orders.eu.new");
    rawc_close(&ops);
    rawc_close(&c);
    STOP(&d);
}
END_TEST

START_TEST(test_acl_replay_from_store_checked)
{
    struct ferryd_proc d;
    start(&d);
    struct rawc c, ops;
    login_ok(&ops, d.port, "ops", "opspw");
    ck_assert_int_eq(publish_acked(&ops, 1, "orders.us.new"), 0);
    ck_assert_int_eq(publish_acked(&ops, 2, "orders.eu.new"), 0);
    rawc_close(&ops);
    login_ok(&c, d.port, "alice", "secret");
    Ferry__Subscribe s = FERRY__SUBSCRIBE__INIT;
    s.sub_id = 1;
    s.pattern = (char *)"orders.us.new";
    s.start = FERRY__START_POSITION__START_ALL;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_SUBSCRIBE;
    f.subscribe = &s;
    ck_assert_int_eq(rawc_send(&c, &f), 0);
    Ferry__Frame *r;
    ck_assert_int_eq(rawc_recv_kind(&c, T_WAIT, FERRY__FRAME__BODY_SUB_ACK, &r, NULL), 0);
    ck_assert_int_eq(r->sub_ack->code, FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED);
    s.sub_id = 2;
    s.pattern = (char *)"orders.eu.new";
    ck_assert_int_eq(rawc_send(&c, &f), 0);
    ck_assert_int_eq(rawc_recv_kind(&c, T_WAIT, FERRY__FRAME__BODY_SUB_ACK, &r, NULL), 0);
    ck_assert_int_eq(r->sub_ack->code, 0);
    Ferry__Deliver *m = recv_deliver(&c);
    ck_assert_str_eq(m->topic, "orders.eu.new");
    rawc_close(&c);
    STOP(&d);
}
END_TEST

START_TEST(test_admin_needs_the_admin_right)
{
    struct ferryd_proc d;
    start(&d);
    struct rawc c;
    login_ok(&c, d.port, "alice", "secret");
    Ferry__StatsRequest sr = FERRY__STATS_REQUEST__INIT;
    Ferry__AdminRequest ar = FERRY__ADMIN_REQUEST__INIT;
    ar.id = 5;
    ar.request_case = FERRY__ADMIN_REQUEST__REQUEST_STATS;
    ar.stats = &sr;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_ADMIN_REQUEST;
    f.admin_request = &ar;
    ck_assert_int_eq(rawc_send(&c, &f), 0);
    Ferry__Frame *r;
    ck_assert_int_eq(rawc_recv_kind(&c, T_WAIT, FERRY__FRAME__BODY_ADMIN_REPLY, &r, NULL), 0);
    ck_assert_uint_eq(r->admin_reply->id, 5);
    ck_assert_int_eq(r->admin_reply->code, FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED);
    ck_assert_ptr_null(r->admin_reply->stats);
    /* Durable consumer management needs it too (list, and delete). */
    Ferry__ConsumerListRequest cl = FERRY__CONSUMER_LIST_REQUEST__INIT;
    ar.id = 6;
    ar.request_case = FERRY__ADMIN_REQUEST__REQUEST_CONSUMERS;
    ar.consumers = &cl;
    ck_assert_int_eq(rawc_send(&c, &f), 0);
    ck_assert_int_eq(rawc_recv_kind(&c, T_WAIT, FERRY__FRAME__BODY_ADMIN_REPLY, &r, NULL), 0);
    ck_assert_uint_eq(r->admin_reply->id, 6);
    ck_assert_int_eq(r->admin_reply->code, FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED);
    ck_assert_uint_eq(r->admin_reply->n_consumers, 0);
    Ferry__ConsumerDeleteRequest cd = FERRY__CONSUMER_DELETE_REQUEST__INIT;
    cd.topic = "orders.eu.new";
    cd.name = "d";
    cd.force = 1;
    ar.id = 7;
    ar.request_case = FERRY__ADMIN_REQUEST__REQUEST_CONSUMER_DELETE;
    ar.consumer_delete = &cd;
    ck_assert_int_eq(rawc_send(&c, &f), 0);
    ck_assert_int_eq(rawc_recv_kind(&c, T_WAIT, FERRY__FRAME__BODY_ADMIN_REPLY, &r, NULL), 0);
    ck_assert_uint_eq(r->admin_reply->id, 7);
    ck_assert_int_eq(r->admin_reply->code, FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED);
    ck_assert_int_eq(rawc_ping(&c, 1, T_WAIT), 0); /* still connected */
    rawc_close(&c);
    Ferry__Stats s = admin_stats(d.port);
    ck_assert_uint_eq(s.permission_denials, 3);
    STOP(&d);
}
END_TEST

START_TEST(test_reload_shrinks_rights_and_removes_subscriptions)
{
    write_auth("allow alice subscribe orders.eu.*\n"
               "allow alice subscribe orders.us.*\n"
               "allow alice publish orders.us.*\n");
    struct ferryd_proc d;
    start(&d);
    struct rawc c, ops;
    login_ok(&c, d.port, "alice", "secret");
    ck_assert_int_eq(rawc_subscribe(&c, 1, "orders.eu.*", NULL), 0);
    ck_assert_int_eq(rawc_subscribe(&c, 2, "orders.us.*", NULL), 0);
    ck_assert_int_eq(publish_acked(&c, 1, "orders.us.a"), 0);
    /* a bad file is refused and the rights stay */
    FILE *bad = fopen(ad.path, "w");
    ck_assert_ptr_nonnull(bad);
    fputs("user broken\n", bad);
    fclose(bad);
    ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
    write_auth("allow alice subscribe orders.eu.*\n");
    ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
    /* the subscription no longer allowed is removed: an Error names it */
    Ferry__Frame *f;
    ck_assert_int_eq(rawc_recv_kind(&c, T_WAIT, FERRY__FRAME__BODY_ERROR, &f, NULL), 0);
    ck_assert_int_eq(f->error->code, FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED);
    ck_assert_int_eq(f->error->ref_kind, FERRY__ERROR__REF_KIND__REF_SUBSCRIPTION);
    ck_assert_uint_eq(f->error->ref_id, 2);
    ck_assert_int_eq(f->error->is_fatal, 0);
    /* publish rights shrank too; the other subscription still delivers */
    ck_assert_int_eq(publish_acked(&c, 2, "orders.us.b"),
                     FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED);
    ck_assert_int_eq(rawc_subscribe(&c, 3, "orders.us.*", NULL),
                     FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED);
    login_ok(&ops, d.port, "ops", "opspw");
    ck_assert_int_eq(publish_acked(&ops, 1, "orders.us.c"), 0);
    ck_assert_int_eq(publish_acked(&ops, 2, "orders.eu.c"), 0);
    Ferry__Deliver *m = recv_deliver(&c);
    ck_assert_str_eq(m->topic, "orders.eu.c");
    ck_assert_uint_eq(m->n_sub_ids, 1);
    ck_assert_uint_eq(m->sub_ids[0], 1);
    /* unsubscribing the removed one: unknown now */
    ck_assert_int_eq(rawc_unsubscribe(&c, 2), FERRY__ERROR_CODE__ERROR_UNKNOWN_SUBSCRIPTION);
    rawc_close(&ops);
    rawc_close(&c);
    /* a user removed from the file can no longer log in */
    FILE *g = fopen(ad.path, "w");
    ck_assert_ptr_nonnull(g);
    char *h = e2e_hash("opspw", "$6$", 1000);
    fprintf(g, "user ops %s\nallow ops admin\n", h);
    fclose(g);
    free(h);
    ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
    /* the reload is asynchronous: poll until alice is refused */
    long long deadline = e2e_ms_now() + T_WAIT;
    int code;
    do {
        code = login(&c, d.port, "alice", "secret", NULL, NULL, 0, NULL);
        rawc_close(&c);
    } while (code == 0 && e2e_ms_now() < deadline);
    ck_assert_int_eq(code, FERRY__ERROR_CODE__ERROR_AUTH_FAILED);
    STOP(&d);
}
END_TEST

START_TEST(test_before_connect_small_frames_and_timeout)
{
    struct ferryd_proc d;
    START(&d, "--auth-file", ad.path, "--connect-timeout-ms", "500", NULL);
    struct rawc c;
    /* nothing sent: the auth timeout closes the connection */
    ck_assert_int_eq(rawc_open(&c, d.port), 0);
    int code;
    ck_assert_int_eq(rawc_wait_closed(&c, T_WAIT, &code), 0);
    ck_assert_int_eq(code, FERRY__ERROR_CODE__ERROR_AUTH_TIMEOUT);
    rawc_close(&c);
    /* a frame above 4 KiB before Connect */
    ck_assert_int_eq(rawc_open(&c, d.port), 0);
    uint8_t hdr[4] = {0, 0, 0x20, 0}; /* 8 KiB, big endian */
    ck_assert_int_eq(rawc_send_raw(&c, hdr, sizeof(hdr)), 0);
    ck_assert_int_eq(rawc_wait_closed(&c, T_WAIT, &code), 0);
    ck_assert_int_eq(code, FERRY__ERROR_CODE__ERROR_FRAME_TOO_LARGE);
    rawc_close(&c);
    /* anything but Connect first */
    ck_assert_int_eq(rawc_open(&c, d.port), 0);
    ck_assert_int_eq(rawc_publish(&c, 1, "orders.eu.x", "x", 1, 1), 0);
    ck_assert_int_eq(rawc_wait_closed(&c, T_WAIT, &code), 0);
    ck_assert_int_eq(code, FERRY__ERROR_CODE__ERROR_NOT_CONNECTED);
    rawc_close(&c);
    STOP(&d);
}
END_TEST

START_TEST(test_pipelined_frames_wait_for_the_login)
{
    /* Connect and a Subscribe in one write: the Subscribe is handled only
     * after the credentials are checked, with the identity's rights. */
    struct ferryd_proc d;
    start(&d);
    struct rawc c;
    ck_assert_int_eq(rawc_open(&c, d.port), 0);
    Ferry__Connect m = FERRY__CONNECT__INIT;
    m.protocol_version = 1;
    m.username = (char *)"alice";
    m.password = (char *)"secret";
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_CONNECT;
    f.connect = &m;
    Ferry__Subscribe s = FERRY__SUBSCRIBE__INIT;
    s.sub_id = 1;
    s.pattern = (char *)"orders.>";
    Ferry__Frame g = FERRY__FRAME__INIT;
    g.body_case = FERRY__FRAME__BODY_SUBSCRIBE;
    g.subscribe = &s;
    ck_assert_int_eq(rawc_send(&c, &f), 0);
    ck_assert_int_eq(rawc_send(&c, &g), 0);
    s.sub_id = 2;
    s.pattern = (char *)"orders.eu.*";
    ck_assert_int_eq(rawc_send(&c, &g), 0);
    Ferry__Frame *r;
    ck_assert_int_eq(rawc_recv(&c, T_WAIT, &r), 0);
    ck_assert_int_eq(r->body_case, FERRY__FRAME__BODY_CONNECTED);
    ck_assert_int_eq(rawc_recv_kind(&c, T_WAIT, FERRY__FRAME__BODY_SUB_ACK, &r, NULL), 0);
    ck_assert_uint_eq(r->sub_ack->sub_id, 1);
    ck_assert_int_eq(r->sub_ack->code, FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED);
    ck_assert_int_eq(rawc_recv_kind(&c, T_WAIT, FERRY__FRAME__BODY_SUB_ACK, &r, NULL), 0);
    ck_assert_uint_eq(r->sub_ack->sub_id, 2);
    ck_assert_int_eq(r->sub_ack->code, 0);
    rawc_close(&c);
    /* the same with a wrong password: nothing after Connect is handled */
    ck_assert_int_eq(rawc_open(&c, d.port), 0);
    m.password = (char *)"wrong";
    ck_assert_int_eq(rawc_send(&c, &f), 0);
    ck_assert_int_eq(rawc_send(&c, &g), 0);
    int code;
    ck_assert_int_eq(rawc_wait_closed(&c, T_WAIT, &code), 0);
    ck_assert_int_eq(code, FERRY__ERROR_CODE__ERROR_AUTH_FAILED);
    rawc_close(&c);
    STOP(&d);
}
END_TEST

/* Subscribe/Unsubscribe churn with ACL checks, and deep wildcard patterns:
 * bounded, each refusal a clear code, nothing left behind. */
START_TEST(test_churn_and_deep_patterns_bounded)
{
    struct ferryd_proc d;
    start(&d);
    struct rawc c;
    login_ok(&c, d.port, "alice", "secret");
    long rss0 = ferryd_rss_kb(&d);
    for (uint64_t i = 1; i <= 20000; i++) {
        ck_assert_int_eq(rawc_subscribe_nowait(&c, i, (i & 1) ? "logs.a.b" : "orders.*", NULL), 0);
        Ferry__Unsubscribe u = FERRY__UNSUBSCRIBE__INIT;
        u.sub_id = i;
        Ferry__Frame f = FERRY__FRAME__INIT;
        f.body_case = FERRY__FRAME__BODY_UNSUBSCRIBE;
        f.unsubscribe = &u;
        ck_assert_int_eq(rawc_send(&c, &f), 0);
        if (i % 500 == 0) {
            ck_assert_int_eq(rawc_ping(&c, i, T_WAIT), 0); /* answers drained */
        }
    }
    /* 16 tokens (the configured depth): allowed under logs.>; 17: invalid */
    char deep[128] = "logs";
    for (int i = 1; i < 15; i++) {
        strcat(deep, ".*");
    }
    strcat(deep, ".>");
    ck_assert_int_eq(rawc_subscribe(&c, 1, deep, NULL), 0);
    deep[0] = '*';
    memmove(deep + 1, deep + 4, strlen(deep + 4) + 1); /* "*.*...>" */
    ck_assert_int_eq(rawc_subscribe(&c, 2, deep, NULL), FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED);
    strcat(deep, ".x"); /* '>' not last */
    ck_assert_int_eq(rawc_subscribe(&c, 3, deep, NULL), FERRY__ERROR_CODE__ERROR_INVALID_PATTERN);
    char deeper[160] = "logs";
    for (int i = 1; i < 17; i++) {
        strcat(deeper, ".*");
    }
    ck_assert_int_eq(rawc_subscribe(&c, 4, deeper, NULL), FERRY__ERROR_CODE__ERROR_INVALID_PATTERN);
    ck_assert_int_eq(rawc_unsubscribe(&c, 1), 0);
    rawc_close(&c);
    Ferry__Stats st = admin_stats(d.port);
    ck_assert_uint_eq(st.subscriptions, 0);
    ck_assert_uint_eq(st.permission_denials, 10000 + 1);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    long rss1 = ferryd_rss_kb(&d);
    ck_assert_msg(rss1 - rss0 < 16 * 1024, "RSS grew from %ld to %ld KiB", rss0, rss1);
#else
    (void)rss0;
#endif
    STOP(&d);
}
END_TEST

/* Reloads racing with logins, subscriptions and publishes: every answer is
 * one of the two right ones, and the broker stays consistent (it stops
 * cleanly; sanitizer builds check the threads). */
/* A reload that revokes a subscription also takes its deliveries out of
 * the connection's queue: after the Error naming it, nothing arrives for it
 * (the landed main sent its whole backlog after the Error). A delivery for
 * it and a subscription that stays keeps the other. */
START_TEST(test_reload_drops_queued_deliveries_of_a_revoked_subscription)
{
    write_auth("allow alice subscribe orders.us.*\n");
    struct ferryd_proc d;
    START(&d, "--auth-file", ad.path, "--max-outbound-bytes", "256m", "--ephemeral", "orders.>",
          NULL);
    struct rawc c, ops, probe;
    login_ok(&c, d.port, "alice", "secret");
    ck_assert_int_eq(rawc_subscribe(&c, 1, "orders.us.*", NULL), 0); /* to be revoked */
    ck_assert_int_eq(rawc_subscribe(&c, 2, "orders.us.a", NULL), 0); /* stays */
    /* A backlog far beyond the socket buffers, while alice reads nothing. */
    login_ok(&ops, d.port, "ops", "opspw");
    char payload[100];
    memset(payload, 'p', sizeof(payload));
    for (int i = 0; i < 50000; i++) {
        ck_assert_int_eq(rawc_publish(&ops, 10 + (uint64_t)i, i % 2 ? "orders.us.a" : "orders.us.b",
                                      payload, sizeof(payload), 0),
                         0);
    }
    ck_assert_int_eq(publish_acked(&ops, 1, "orders.us.a"), 0);
    write_auth("allow alice subscribe orders.us.a\n");
    ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
    /* The reload is asynchronous: wait until a new login sees it. */
    long long deadline = e2e_ms_now() + T_WAIT;
    int code;
    do {
        login_ok(&probe, d.port, "alice", "secret");
        code = rawc_subscribe(&probe, 1, "orders.us.b", NULL);
        rawc_close(&probe);
    } while (code == 0 && e2e_ms_now() < deadline);
    ck_assert_int_eq(code, FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED);
    ck_assert_int_eq(publish_acked(&ops, 2, "orders.us.a"), 0); /* the end marker */
    /* What was still queued when the rights changed is gone (orders.us.b)
     * or rewritten for subscription 2 alone (orders.us.a); only what the
     * socket buffers held by then still names subscription 1. */
    int seen_error = 0, seen_end = 0, n_sub1 = 0, n_only2 = 0;
    while (!seen_error || !seen_end) {
        Ferry__Frame *f;
        ck_assert_int_eq(rawc_recv(&c, T_WAIT, &f), 0);
        if (f->body_case == FERRY__FRAME__BODY_ERROR) {
            ck_assert_int_eq(f->error->code, FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED);
            ck_assert_uint_eq(f->error->ref_id, 1);
            seen_error = 1;
            continue;
        }
        ck_assert_int_eq(f->body_case, FERRY__FRAME__BODY_DELIVER);
        Ferry__Deliver *m = f->deliver;
        int names_1 = 0;
        for (size_t i = 0; i < m->n_sub_ids; i++) {
            names_1 |= m->sub_ids[i] == 1;
        }
        ck_assert_msg(!(seen_error && names_1), "a delivery for the revoked subscription after "
                                                "the Error");
        n_sub1 += names_1;
        n_only2 += !names_1 && m->n_sub_ids == 1 && !seen_error;
        seen_end |= m->payload.len == 1; /* the end marker ("x") */
    }
    /* Without the drop all 50000 would name it; the kernel's send buffer
     * alone (tcp_wmem's maximum, 4 MiB by default) holds about 31000. */
    ck_assert_msg(n_sub1 < 45000, "%d of 50000 deliveries named the revoked subscription", n_sub1);
    ck_assert_msg(n_only2 > 1000, "%d queued deliveries rewritten for subscription 2", n_only2);
    rawc_close(&ops);
    rawc_close(&c);
    STOP(&d);
}
END_TEST

START_TEST(test_reload_races_with_logins)
{
    struct ferryd_proc d;
    start(&d);
    struct rawc c;
    for (int i = 0; i < 40; i++) {
        write_auth((i & 1)
                       ? "allow alice subscribe orders.eu.*\n"
                       : "allow alice subscribe orders.eu.*\nallow alice publish orders.eu.*\n");
        ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
        login_ok(&c, d.port, "alice", "secret");
        ck_assert_int_eq(rawc_subscribe(&c, 1, "orders.eu.*", NULL), 0);
        int code = publish_acked(&c, 1, "orders.eu.x");
        ck_assert(code == 0 || code == FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED);
        ck_assert_int_eq(rawc_ping(&c, 1, T_WAIT), 0);
        rawc_close(&c);
    }
    STOP(&d);
}
END_TEST

/* A durable consumer is a subscription like any other: its backlog after a
 * reconnect is delivered only while the rights cover it, and a reload that
 * takes the right away detaches it. */
static int durable_sub(struct rawc *c, uint64_t id, const char *topic, const char *name)
{
    Ferry__Subscribe s = FERRY__SUBSCRIBE__INIT;
    s.sub_id = id;
    s.pattern = (char *)topic;
    s.durable_name = (char *)name;
    s.start = FERRY__START_POSITION__START_ALL;
    s.ack_mode = FERRY__ACK_MODE__ACK_EXPLICIT;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_SUBSCRIBE;
    f.subscribe = &s;
    ck_assert_int_eq(rawc_send(c, &f), 0);
    Ferry__Frame *r;
    ck_assert_int_eq(rawc_recv_kind(c, T_WAIT, FERRY__FRAME__BODY_SUB_ACK, &r, NULL), 0);
    ck_assert_uint_eq(r->sub_ack->sub_id, id);
    return (int)r->sub_ack->code;
}

START_TEST(test_durable_backlog_checked)
{
    struct ferryd_proc d;
    start(&d);
    struct rawc c, ops;
    login_ok(&ops, d.port, "ops", "opspw");
    ck_assert_int_eq(publish_acked(&ops, 1, "orders.us.x"), 0);
    ck_assert_int_eq(publish_acked(&ops, 2, "orders.eu.x"), 0);
    login_ok(&c, d.port, "alice", "secret");
    ck_assert_int_eq(durable_sub(&c, 1, "orders.us.x", "d1"),
                     FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED);
    ck_assert_int_eq(durable_sub(&c, 2, "orders.eu.x", "d2"), 0);
    Ferry__Deliver *m = recv_deliver(&c);
    ck_assert_str_eq(m->topic, "orders.eu.x");
    rawc_close(&c); /* not acked: the durable's backlog holds it */
    ck_assert_int_eq(publish_acked(&ops, 3, "orders.eu.x"), 0);
    /* the right goes away: the backlog is not delivered after reconnect */
    write_auth("allow alice subscribe logs.>\n");
    ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
    long long deadline = e2e_ms_now() + T_WAIT;
    int code;
    do {
        /* (DURABLE_IN_USE: the broker has not yet seen the previous
         * connection of this loop close, which releases the durable) */
        login_ok(&c, d.port, "alice", "secret");
        code = durable_sub(&c, 3, "orders.eu.x", "d2");
        rawc_close(&c);
    } while ((code == 0 || code == FERRY__ERROR_CODE__ERROR_DURABLE_IN_USE) &&
             e2e_ms_now() < deadline);
    ck_assert_int_eq(code, FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED);
    /* and while attached, a reload that shrinks the rights detaches it */
    write_auth(alice_default);
    ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
    deadline = e2e_ms_now() + T_WAIT;
    do {
        login_ok(&c, d.port, "alice", "secret");
        code = durable_sub(&c, 4, "orders.eu.x", "d2");
        if (code != 0) {
            rawc_close(&c);
        }
    } while (code != 0 && e2e_ms_now() < deadline);
    ck_assert_int_eq(code, 0);
    write_auth("allow alice subscribe logs.>\n");
    ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
    Ferry__Frame *f;
    ck_assert_int_eq(rawc_recv_kind(&c, T_WAIT, FERRY__FRAME__BODY_ERROR, &f, NULL), 0);
    ck_assert_int_eq(f->error->code, FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED);
    ck_assert_uint_eq(f->error->ref_id, 4);
    ck_assert_int_eq(rawc_ping(&c, 9, T_WAIT), 0);
    rawc_close(&c);
    rawc_close(&ops);
    STOP(&d);
}
END_TEST

/* A Ping round trip during which nothing but the Pong arrives: nothing
 * else was queued for c. */
static void ping_nothing_else(struct rawc *c, uint64_t nonce)
{
    int skipped = -1;
    ck_assert_int_eq(rawc_ping_alone(c, nonce, T_WAIT, &skipped), 0);
    ck_assert_int_eq(skipped, 0);
}

/* A durable subscription with one message in flight at a time, each
 * redelivered once (max_deliver 1) after a short ack wait. */
static int durable_sub_dlq(struct rawc *c, uint64_t id, const char *topic, const char *name)
{
    Ferry__Subscribe s = FERRY__SUBSCRIBE__INIT;
    s.sub_id = id;
    s.pattern = (char *)topic;
    s.durable_name = (char *)name;
    s.ack_mode = FERRY__ACK_MODE__ACK_EXPLICIT;
    s.max_in_flight = 1;
    s.ack_wait_ms = 100;
    s.max_deliver = 1;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_SUBSCRIBE;
    f.subscribe = &s;
    ck_assert_int_eq(rawc_send(c, &f), 0);
    Ferry__Frame *r;
    ck_assert_int_eq(rawc_recv_kind(c, T_WAIT, FERRY__FRAME__BODY_SUB_ACK, &r, NULL), 0);
    return (int)r->sub_ack->code;
}

/* The next Deliver's payload (one byte, as publish_acked sends "x" - the
 * sequence tells them apart). */
static uint64_t next_seq_of(struct rawc *c)
{
    Ferry__Frame *f;
    ck_assert_int_eq(rawc_recv_kind(c, T_WAIT, FERRY__FRAME__BODY_DELIVER, &f, NULL), 0);
    return f->deliver->sequence;
}

/* Dead letters are published for the durable's holder, so only where that
 * user may publish: without the right the message is dropped (the durable
 * goes on, nothing lands in $DLQ.<topic>.<name>); with it, it is dead-lettered. */
START_TEST(test_dead_letter_needs_publish_right)
{
    struct ferryd_proc d;
    start(&d);
    struct rawc c, ops;
    login_ok(&ops, d.port, "ops", "opspw");
    ck_assert_int_eq(rawc_subscribe(&ops, 1, "$DLQ.orders.eu.x.dq", NULL), 0);
    login_ok(&c, d.port, "alice", "secret");
    ck_assert_int_eq(durable_sub_dlq(&c, 1, "orders.eu.x", "dq"), 0);
    ck_assert_int_eq(publish_acked(&ops, 1, "orders.eu.x"), 0);
    ck_assert_int_eq(publish_acked(&ops, 2, "orders.eu.x"), 0);
    /* 1 comes, is not acked, and after its ack wait is dropped (alice may
     * not publish to $DLQ.orders.eu.x.dq): then 2 comes (one in flight at a time). */
    ck_assert_uint_eq(next_seq_of(&c), 1);
    ck_assert_uint_eq(next_seq_of(&c), 2);
    /* now alice may: 2 is dead-lettered into $DLQ.orders.eu.x.dq, where ops gets it */
    write_auth("allow alice publish orders.eu.*\n"
               "allow alice subscribe orders.eu.*\n"
               "allow alice publish $DLQ.orders.eu.x.dq\n");
    ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
    Ferry__Frame *f;
    ck_assert_int_eq(rawc_recv_kind(&ops, T_WAIT, FERRY__FRAME__BODY_DELIVER, &f, NULL), 0);
    ck_assert_str_eq(f->deliver->topic, "$DLQ.orders.eu.x.dq");
    int n_seq = 0;
    for (size_t i = 0; i < f->deliver->n_headers; i++) {
        if (strcmp(f->deliver->headers[i]->key, "ferry-dlq-sequence") == 0) {
            ck_assert_str_eq(f->deliver->headers[i]->value, "2");
            n_seq++;
        }
    }
    ck_assert_int_eq(n_seq, 1);
    /* only 2: 1 was dropped, not dead-lettered late */
    ping_nothing_else(&ops, 5);
    rawc_close(&c);
    rawc_close(&ops);
    STOP(&d);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("security");
    TCase *tc;
    tc = tcase_create("login");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_login_wrong_password_unknown_user_token);
    suite_add_tcase(s, tc);
    tc = tcase_create("login_waits");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_guessing_waits_before_the_check);
    suite_add_tcase(s, tc);
    tc = tcase_create("login_refused_at_once");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_over_budget_is_refused_at_once_with_the_retry_time);
    suite_add_tcase(s, tc);
    tc = tcase_create("login_jam");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_closed_logins_cannot_jam_the_checker);
    suite_add_tcase(s, tc);
    tc = tcase_create("login_slots");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_idle_sockets_cannot_take_every_slot);
    suite_add_tcase(s, tc);
    tc = tcase_create("acl_publish");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_acl_publish_concrete_topic);
    suite_add_tcase(s, tc);
    tc = tcase_create("acl_subscribe");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_acl_subscribe_every_matching_topic_allowed);
    suite_add_tcase(s, tc);
    tc = tcase_create("acl_replay");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_acl_replay_from_store_checked);
    suite_add_tcase(s, tc);
    tc = tcase_create("admin_right");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_admin_needs_the_admin_right);
    suite_add_tcase(s, tc);
    tc = tcase_create("reload");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_reload_shrinks_rights_and_removes_subscriptions);
    suite_add_tcase(s, tc);
    tc = tcase_create("before_connect");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_before_connect_small_frames_and_timeout);
    suite_add_tcase(s, tc);
    tc = tcase_create("pipelined_login");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_pipelined_frames_wait_for_the_login);
    suite_add_tcase(s, tc);
    tc = tcase_create("churn_deep_patterns");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_churn_and_deep_patterns_bounded);
    suite_add_tcase(s, tc);
    tc = tcase_create("reload_drops_queued");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_reload_drops_queued_deliveries_of_a_revoked_subscription);
    suite_add_tcase(s, tc);
    tc = tcase_create("reload_races");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_reload_races_with_logins);
    suite_add_tcase(s, tc);
    tc = tcase_create("dead_letter_right");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_dead_letter_needs_publish_right);
    suite_add_tcase(s, tc);
    tc = tcase_create("durable_backlog");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_durable_backlog_checked);
    suite_add_tcase(s, tc);
    return s;
}

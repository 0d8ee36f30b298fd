/*
 * cluster_route.c - `cluster_test routing`: libferry routes by itself
 * (broker/CLUSTER.md, "What the client does"). ONE libferry client given the
 * three brokers publishes to 30 topics (sync and async) that the cluster
 * spreads over the brokers; ONE pattern subscriber (a durable on rt.>, also
 * given the list) gets every message, in order per topic. Then the owner of
 * rt.0 is killed (-9) in the middle of a burst of async publishes: sync
 * publishes to its topics fail with FERRY_EUNAVAILABLE (or time out) while
 * it is down, the other topics go on, and after its restart on its store
 * every acked message is delivered, in order, and the async publishes that
 * were waiting complete. A subscription to one of its topics is refused
 * with FERRY_EUNAVAILABLE while it is down, and gets the whole topic, in
 * order, through ferry_sub_next() once it is back. Last, the CLI (`ferry -s h1,h2,h3 pub/sub`)
 * works against the cluster. A third client, in event-loop mode on a thread of its own, subscribes
 * rt.> too: its callbacks must run in ferry_client_process() on that thread, every topic in order.
 * Request/reply: requests to six topics spread over the brokers, each answered by a responder
 * that is a cluster client too (check_request).
 *
 * `cluster_test bench [ARGS]` (manual, not in ctest, needs the CLI): the same
 * `ferry bench ARGS` against the three brokers (-s h1,h2,h3) and against one
 * standalone ferryd, one after the other in the same run; prints both.
 *
 * No sleeping as synchronisation: each wait is for a condition, with a
 * timeout (the 50 ms polls of wait_delivered are its period).
 */
#include "cluster_test.h"
#include "ferry.h"
#include "zk_ensemble.h"

#include <crypt.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define R_TOPICS 30
#define R_MAX 256     /* sequences per topic at most */
#define R_ACKED 16384 /* acked publishes recorded at most */
#define LONG_MS 60000

/* What the pattern subscriber received, per topic. */
static struct {
    pthread_mutex_t mu;
    uint64_t last[R_TOPICS];        /* highest sequence received, in order */
    char *payload[R_TOPICS][R_MAX]; /* by sequence */
    uint64_t n_redelivered;         /* sequences received again */
    char error[256];                /* the first thing that went wrong */
} got = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* What the publisher had acked, and how its async publishes ended. */
static struct {
    pthread_mutex_t mu;
    int t[R_ACKED];
    uint64_t seq[R_ACKED];
    int i[R_ACKED];
    size_t n;
    size_t n_async_done, n_async_failed;
    int last_failure;
} acked = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int topic_index(const char *topic)
{
    int t = -1, n = 0;
    if (sscanf(topic, "rt.%d%n", &t, &n) != 1 || topic[n] != '\0' || t < 0 || t >= R_TOPICS) {
        return -1;
    }
    return t;
}

static void on_msg(ferry_client *c, ferry_sub *s, const ferry_msg *m, void *ud)
{
    (void)c;
    (void)s;
    (void)ud;
    int t = topic_index(ferry_msg_topic(m));
    uint64_t seq = ferry_msg_sequence(m);
    size_t n;
    const char *p = ferry_msg_data(m, &n);
    pthread_mutex_lock(&got.mu);
    if (t < 0 || seq == 0 || seq >= R_MAX) {
        snprintf(got.error, sizeof(got.error), "unexpected %s #%llu", ferry_msg_topic(m),
                 (unsigned long long)seq);
    } else if (seq <= got.last[t]) {
        got.n_redelivered++;
    } else if (seq != got.last[t] + 1 && got.error[0] == '\0') {
        snprintf(got.error, sizeof(got.error), "rt.%d: #%llu after #%llu", t,
                 (unsigned long long)seq, (unsigned long long)got.last[t]);
    } else {
        got.last[t] = seq;
        got.payload[t][seq] = strndup(p, n);
    }
    pthread_mutex_unlock(&got.mu);
    ferry_msg_ack(m, FERRY_ACK);
}

static void record_ack(int t, int i, uint64_t seq)
{
    pthread_mutex_lock(&acked.mu);
    CHECK(acked.n < R_ACKED, "room for acks");
    acked.t[acked.n] = t;
    acked.i[acked.n] = i;
    acked.seq[acked.n] = seq;
    acked.n++;
    pthread_mutex_unlock(&acked.mu);
}

static void on_ack(ferry_client *c, int status, uint64_t seq, void *ud)
{
    (void)c;
    uintptr_t v = (uintptr_t)ud;
    if (status == 0) {
        record_ack((int)(v % 1000), (int)(v / 1000), seq);
    }
    pthread_mutex_lock(&acked.mu);
    acked.n_async_done++;
    if (status != 0) {
        acked.n_async_failed++;
        acked.last_failure = status;
    }
    pthread_mutex_unlock(&acked.mu);
}

/* The clients' connection events and log, on stderr: what a failure needs. */
static void on_event(ferry_client *c, const ferry_event *ev, void *ud)
{
    (void)c;
    fprintf(stderr, "%s: event %d code %d (%s) %s %s\n", (const char *)ud, (int)ev->type, ev->code,
            ferry_strerror(ev->code), ev->server, ev->text);
}

static void on_log(void *ud, enum ferry_log_level level, const char *msg)
{
    fprintf(stderr, "%s: log %d %s\n", (const char *)ud, (int)level, msg);
}

/* A libferry client of servers (logged in as user with password pw unless
 * user is NULL), connected, in thread mode. */
static ferry_client *lib_client_as(const char *servers, const char *name, const char *user,
                                   const char *pw)
{
    ferry_options *o;
    ferry_client *c;
    CHECK(ferry_options_create(&o) == 0, "options");
    CHECK(ferry_options_set_servers(o, servers) == 0, "servers %s", servers);
    CHECK(user == NULL || ferry_options_set_user_password(o, user, pw) == 0, "user %s", user);
    ferry_options_set_event_cb(o, on_event, (void *)name);
    ferry_options_set_log_cb(o, on_log, (void *)name, FERRY_LOG_INFO);
    CHECK(ferry_client_create(o, &c) == 0, "client");
    ferry_options_destroy(o);
    CHECK(ferry_client_start_thread(c) == 0, "thread");
    int rc = ferry_client_connect(c, 2 * WAIT_MS);
    CHECK(rc == 0, "connect to %s: %s", servers, ferry_strerror(rc));
    return c;
}

static ferry_client *lib_client(const char *servers, const char *name)
{
    return lib_client_as(servers, name, NULL, NULL);
}

static int pub_sync(ferry_client *c, int t, int i, int timeout_ms)
{
    char topic[32], payload[32];
    snprintf(topic, sizeof(topic), "rt.%d", t);
    snprintf(payload, sizeof(payload), "%d/%d", t, i);
    ferry_pub m = {.topic = topic, .payload = payload, .payload_len = strlen(payload)};
    uint64_t seq = 0;
    int rc = ferry_publish_sync(c, &m, timeout_ms, &seq);
    if (rc == 0) {
        record_ack(t, i, seq);
    }
    return rc;
}

static void pub_async(ferry_client *c, int t, int i)
{
    char topic[32], payload[32];
    snprintf(topic, sizeof(topic), "rt.%d", t);
    snprintf(payload, sizeof(payload), "%d/%d", t, i);
    ferry_pub m = {.topic = topic, .payload = payload, .payload_len = strlen(payload)};
    int rc = ferry_publish_async(c, &m, on_ack, (void *)(uintptr_t)(i * 1000 + t), NULL);
    CHECK(rc == 0, "async publish rt.%d: %s", t, ferry_strerror(rc));
}

/* Wait until every acked publish was delivered with its payload. */
static void wait_delivered(const char *when)
{
    long long deadline = zk_now_ms() + LONG_MS;
    for (;;) {
        size_t missing = 0, first = 0;
        pthread_mutex_lock(&acked.mu);
        pthread_mutex_lock(&got.mu);
        CHECK(got.error[0] == '\0', "%s: %s", when, got.error);
        for (size_t k = 0; k < acked.n; k++) {
            int t = acked.t[k];
            uint64_t s = acked.seq[k];
            char want[32];
            snprintf(want, sizeof(want), "%d/%d", t, acked.i[k]);
            CHECK(s > 0 && s < R_MAX, "acked sequence %llu", (unsigned long long)s);
            if (got.payload[t][s] == NULL) {
                first = missing++ == 0 ? k : first;
                continue;
            }
            CHECK(strcmp(got.payload[t][s], want) == 0, "rt.%d #%llu is %s, acked as %s", t,
                  (unsigned long long)s, got.payload[t][s], want);
        }
        size_t n = acked.n;
        int ft = acked.t[first];
        uint64_t fs = acked.seq[first];
        pthread_mutex_unlock(&got.mu);
        pthread_mutex_unlock(&acked.mu);
        if (missing == 0) {
            fprintf(stderr, "%s: all %zu acked messages delivered in order\n", when, n);
            return;
        }
        CHECK(zk_now_ms() < deadline, "%s: %zu of %zu acked not delivered (first rt.%d #%llu)",
              when, missing, n, ft, (unsigned long long)fs);
        struct timespec ts = {0, 50 * 1000000L}; /* the poll's period */
        nanosleep(&ts, NULL);
    }
}

/* The event-loop subscriber: its thread, what it got. */
static struct {
    pthread_mutex_t mu;
    pthread_t thread;
    const char *servers;
    uint64_t last[R_TOPICS];
    size_t n;
    int ready, stop;
    char error[256];
} loopc = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void on_loop_msg(ferry_client *c, ferry_sub *s, const ferry_msg *m, void *ud)
{
    (void)c;
    (void)s;
    (void)ud;
    int t = topic_index(ferry_msg_topic(m));
    uint64_t seq = ferry_msg_sequence(m);
    pthread_mutex_lock(&loopc.mu);
    if (!pthread_equal(pthread_self(), loopc.thread) && loopc.error[0] == '\0') {
        snprintf(loopc.error, sizeof(loopc.error), "a callback off the loop's thread");
    } else if ((t < 0 || seq != loopc.last[t] + 1) && loopc.error[0] == '\0') {
        snprintf(loopc.error, sizeof(loopc.error), "%s #%llu after #%llu", ferry_msg_topic(m),
                 (unsigned long long)seq, (unsigned long long)(t >= 0 ? loopc.last[t] : 0));
    } else if (t >= 0) {
        loopc.last[t] = seq;
        loopc.n++;
    }
    pthread_mutex_unlock(&loopc.mu);
}

static void *loop_main(void *arg)
{
    (void)arg;
    ferry_options *o;
    ferry_client *c;
    ferry_sub *s;
    CHECK(ferry_options_create(&o) == 0 && ferry_options_set_servers(o, loopc.servers) == 0,
          "options");
    CHECK(ferry_client_create(o, &c) == 0, "loop client");
    ferry_options_destroy(o);
    int rc = ferry_client_connect(c, 2 * WAIT_MS);
    CHECK(rc == 0, "loop client connect: %s", ferry_strerror(rc));
    rc = ferry_subscribe(c, "rt.>", NULL, on_loop_msg, NULL, WAIT_MS, &s);
    CHECK(rc == 0, "loop client subscribe: %s", ferry_strerror(rc));
    CHECK(ferry_client_fd(c) >= 0 && ferry_client_events(c) > 0, "a descriptor to poll");
    pthread_mutex_lock(&loopc.mu);
    loopc.ready = 1;
    while (!loopc.stop) {
        pthread_mutex_unlock(&loopc.mu);
        int tmo = ferry_client_timeout_ms(c);
        struct pollfd p = {.fd = ferry_client_fd(c), .events = (short)ferry_client_events(c)};
        int n = poll(&p, 1, tmo < 0 || tmo > 100 ? 100 : tmo); /* 100: to see stop */
        CHECK(ferry_client_process(c, n > 0 ? p.revents : 0) == 0, "process");
        pthread_mutex_lock(&loopc.mu);
    }
    pthread_mutex_unlock(&loopc.mu);
    ferry_unsubscribe(s);
    ferry_client_close(c, WAIT_MS);
    ferry_client_destroy(c);
    return NULL;
}

/* The responder of check_request: answers "re:" + the request. */
static void on_request(ferry_client *c, ferry_sub *s, const ferry_msg *m, void *ud)
{
    (void)s;
    (void)ud;
    size_t n;
    const char *p = ferry_msg_data(m, &n);
    char buf[64];
    int k = snprintf(buf, sizeof(buf), "re:%.*s", (int)(n > 32 ? 32 : n), p);
    if (ferry_msg_reply_to(m)[0] != '\0') {
        (void)ferry_publish(c, ferry_msg_reply_to(m), buf, (size_t)k);
    }
}

/* Request/reply over the cluster: a responder (given the three brokers)
 * on rq.>, requests from another cluster client to six topics spread over
 * the brokers. Each request goes to its topic's owner, and the reply to
 * the broker where the requester's inbox is (its name says which). */
static void check_request(const char *servers, ferry_client *requester)
{
    ferry_client *resp = lib_client(servers, "responder");
    ferry_sub *sub;
    int rc = ferry_subscribe(resp, "rq.>", NULL, on_request, NULL, WAIT_MS, &sub);
    CHECK(rc == 0, "responder subscribes rq.>: %s", ferry_strerror(rc));
    for (int k = 0; k < 6; k++) {
        char topic[16], body[16], want[32];
        snprintf(topic, sizeof(topic), "rq.%d", k);
        snprintf(body, sizeof(body), "q%d", k);
        snprintf(want, sizeof(want), "re:q%d", k);
        ferry_msg *reply = NULL;
        rc = ferry_request(requester, topic, body, strlen(body), 2 * WAIT_MS, &reply);
        CHECK(rc == 0, "request to %s over the cluster: %s", topic, ferry_strerror(rc));
        size_t n;
        const char *p = ferry_msg_data(reply, &n);
        CHECK(n == strlen(want) && memcmp(p, want, n) == 0, "reply to %s: %.*s", topic, (int)n, p);
        ferry_msg_destroy(reply);
    }
    uint32_t owner_of[6] = {0}, seen = 0;
    ferry_metadata md;
    CHECK(ferry_admin_metadata(requester, "rq.>", 0, WAIT_MS, &md) == 0, "Metadata rq.>");
    for (size_t i = 0; i < md.n_topics && i < 6; i++) {
        owner_of[i] = md.topics[i].owner;
        seen |= 1u << owner_of[i];
    }
    ferry_free(md.brokers);
    ferry_free(md.topics);
    CHECK(__builtin_popcount(seen) >= 2, "rq.0..5 on more than one broker");
    fprintf(stderr, "request/reply: 6 topics on %d brokers answered\n", __builtin_popcount(seen));
    CHECK(ferry_unsubscribe(sub) == 0, "unsubscribe rq.>");
    ferry_client_close(resp, WAIT_MS);
    ferry_client_destroy(resp);
}

/* Wait until broker 1 lists the three brokers live: Metadata is the map a
 * client starts from (a broker learns of another's registration through a
 * watch, a moment later). */
static void wait_brokers_listed(const char *user, const char *pw)
{
    char one[64];
    snprintf(one, sizeof(one), "127.0.0.1:%d", brokers[0].port);
    ferry_options *o;
    ferry_client *c;
    CHECK(ferry_options_create(&o) == 0 && ferry_options_set_servers(o, one) == 0, "options");
    CHECK(user == NULL || ferry_options_set_user_password(o, user, pw) == 0, "user %s", user);
    CHECK(ferry_client_create(o, &c) == 0, "client");
    ferry_options_destroy(o);
    CHECK(ferry_client_connect(c, WAIT_MS) == 0, "connect to broker 1");
    long long deadline = zk_now_ms() + 30000;
    for (;;) {
        ferry_metadata md;
        int rc = ferry_admin_metadata(c, NULL, 1, WAIT_MS, &md);
        size_t live = 0;
        for (size_t i = 0; rc == 0 && i < md.n_brokers; i++) {
            live += md.brokers[i].is_live != 0;
        }
        if (rc == 0) {
            ferry_free(md.brokers);
            ferry_free(md.topics);
        }
        if (live == N_BROKERS) {
            break;
        }
        CHECK(zk_now_ms() < deadline, "broker 1 lists %zu live brokers", live);
        struct timespec ts = {0, 50 * 1000000L}; /* the poll's period */
        nanosleep(&ts, NULL);
    }
    ferry_client_close(c, WAIT_MS);
    ferry_client_destroy(c);
}

#ifdef FERRY_CLI_PATH
/* Run the CLI; its standard output (static buffer) and exit status. */
static const char *cli(const char *args, int *status)
{
    static char out[1 << 20];
    char cmd[2048];
    int len = snprintf(cmd, sizeof(cmd), "'%s' %s", FERRY_CLI_PATH, args);
    CHECK(len > 0 && (size_t)len < sizeof(cmd), "command too long: %s", args);
    FILE *f = popen(cmd, "r");
    CHECK(f != NULL, "run %s", cmd);
    size_t n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = '\0';
    *status = pclose(f);
    return out;
}

static void check_cli(const char *servers)
{
    char args[512];
    int st;
    snprintf(args, sizeof(args), "-s %s pub rtc.one hello-from-cli", servers);
    cli(args, &st);
    CHECK(st == 0, "ferry pub through the list: status %d", st);
    snprintf(args, sizeof(args), "-s %s sub rtc.one --all --count 1 --timeout 20s", servers);
    const char *out = cli(args, &st);
    CHECK(st == 0 && strstr(out, "hello-from-cli") != NULL, "ferry sub of one topic: %d %s", st,
          out);
    /* A pattern over the three brokers, from the start (a wildcard starts
     * at the oldest only as a durable): every stored message of rt.>, from
     * whichever broker owns each topic. */
    uint64_t total = 0;
    pthread_mutex_lock(&got.mu);
    for (int t = 0; t < R_TOPICS; t++) {
        total += got.last[t];
    }
    pthread_mutex_unlock(&got.mu);
    snprintf(args, sizeof(args),
             "-s %s sub 'rt.>' --durable cli --all --json --count %llu --timeout 30s", servers,
             (unsigned long long)total);
    out = cli(args, &st);
    size_t lines = 0;
    for (const char *p = out; (p = strchr(p, '\n')) != NULL; p++) {
        lines++;
    }
    CHECK(st == 0 && lines == total, "ferry sub 'rt.>': status %d, %zu of %llu lines", st, lines,
          (unsigned long long)total);
    fprintf(stderr, "CLI: pub, sub of a topic and of rt.> (%zu messages) through the list\n",
            lines);
}
#endif

/* The owner of each rt.N, from the facade's Metadata; the broker index
 * owning rt.0. */
static int owners(ferry_client *c, uint32_t *owner_of)
{
    ferry_metadata md;
    int rc = ferry_admin_metadata(c, "rt.>", 0, WAIT_MS, &md);
    CHECK(rc == 0 && md.n_brokers == N_BROKERS, "Metadata: %s, %zu brokers", ferry_strerror(rc),
          md.n_brokers);
    int per_broker[N_BROKERS + 1] = {0};
    for (size_t i = 0; i < md.n_topics; i++) {
        int t = topic_index(md.topics[i].topic);
        if (t >= 0 && md.topics[i].owner >= 1 && md.topics[i].owner <= N_BROKERS) {
            owner_of[t] = md.topics[i].owner;
            per_broker[md.topics[i].owner]++;
        }
    }
    ferry_free(md.brokers);
    ferry_free(md.topics);
    for (int b = 1; b <= N_BROKERS; b++) {
        CHECK(per_broker[b] > 0, "broker %d owns some of the 30 topics", b);
    }
    fprintf(stderr, "30 topics over the brokers: %d %d %d\n", per_broker[1], per_broker[2],
            per_broker[3]);
    return (int)owner_of[0] - 1;
}

int test_routing(void)
{
    start_cluster();
    char servers[256];
    snprintf(servers, sizeof(servers), "127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", brokers[0].port,
             brokers[1].port, brokers[2].port);
    wait_brokers_listed(NULL, NULL);
    loopc.servers = servers;
    CHECK(pthread_create(&loopc.thread, NULL, loop_main, NULL) == 0, "loop thread");
    for (long long deadline = zk_now_ms() + LONG_MS;;) {
        pthread_mutex_lock(&loopc.mu);
        int ready = loopc.ready;
        pthread_mutex_unlock(&loopc.mu);
        if (ready) {
            break;
        }
        CHECK(zk_now_ms() < deadline, "the loop client subscribed");
        struct timespec ts = {0, 10 * 1000000L}; /* the poll's period */
        nanosleep(&ts, NULL);
    }
    ferry_client *subc = lib_client(servers, "subscriber");
    ferry_client *pubc = lib_client(servers, "publisher");
    ferry_sub_options *so;
    ferry_sub *sub;
    CHECK(ferry_sub_options_create(&so) == 0, "sub options");
    CHECK(ferry_sub_options_set_durable(so, "rt") == 0, "durable");
    CHECK(ferry_sub_options_set_ack_mode(so, FERRY_ACK_EXPLICIT) == 0, "ack mode");
    CHECK(ferry_sub_options_set_start(so, FERRY_START_ALL, 0) == 0, "start");
    int rc = ferry_subscribe(subc, "rt.>", so, on_msg, NULL, WAIT_MS, &sub);
    CHECK(rc == 0, "subscribe rt.> on every broker: %s", ferry_strerror(rc));
    ferry_sub_options_destroy(so);

    /* 1. 30 topics, 5 sync then 5 async publishes each, one connection list. */
    for (int i = 0; i < 5; i++) {
        for (int t = 0; t < R_TOPICS; t++) {
            rc = pub_sync(pubc, t, i, WAIT_MS);
            CHECK(rc == 0, "publish rt.%d: %s", t, ferry_strerror(rc));
        }
    }
    for (int i = 5; i < 10; i++) {
        for (int t = 0; t < R_TOPICS; t++) {
            pub_async(pubc, t, i);
        }
    }
    rc = ferry_flush(pubc, LONG_MS);
    CHECK(rc == 0 && acked.n == 10 * R_TOPICS && acked.n_async_failed == 0, "flush: %s, %zu acked",
          ferry_strerror(rc), acked.n);
    uint32_t owner_of[R_TOPICS] = {0};
    int dead = owners(pubc, owner_of);
    wait_delivered("30 topics");
    for (long long deadline = zk_now_ms() + LONG_MS;;) {
        pthread_mutex_lock(&loopc.mu);
        size_t n = loopc.n;
        CHECK(loopc.error[0] == '\0', "event-loop subscriber: %s", loopc.error);
        loopc.stop = n == 10 * R_TOPICS;
        pthread_mutex_unlock(&loopc.mu);
        if (n == 10 * R_TOPICS) {
            break;
        }
        CHECK(zk_now_ms() < deadline, "event-loop subscriber: %zu of 300", n);
        struct timespec ts = {0, 50 * 1000000L}; /* the poll's period */
        nanosleep(&ts, NULL);
    }
    pthread_join(loopc.thread, NULL);
    fprintf(stderr, "event-loop subscriber: 300 messages in order, on its loop thread\n");
    check_request(servers, pubc);

    /* 2. kill -9 of rt.0's owner in the middle of a burst of async publishes. */
    for (int i = 10; i < 30; i++) {
        if (i == 15) {
            CHECK(ferryd_kill9(&brokers[dead].p) == 0, "kill -9 broker %d", dead + 1);
        }
        for (int t = 0; t < R_TOPICS; t++) {
            pub_async(pubc, t, i);
        }
    }
    /* While it is down: its topics unavailable, the others served. */
    int n_unavailable = 0, n_timedout = 0;
    for (int t = 0; t < R_TOPICS; t++) {
        rc = pub_sync(pubc, t, 30, 1500);
        if (owner_of[t] == (uint32_t)dead + 1) {
            CHECK(rc == FERRY_EUNAVAILABLE || rc == -ETIMEDOUT,
                  "publish to rt.%d while its owner is down: %s", t, ferry_strerror(rc));
            n_unavailable += rc == FERRY_EUNAVAILABLE;
            n_timedout += rc == -ETIMEDOUT;
        } else {
            CHECK(rc == 0, "publish rt.%d (owner up) while broker %d is down: %s", t, dead + 1,
                  ferry_strerror(rc));
        }
    }
    fprintf(stderr, "owner down: %d publishes FERRY_EUNAVAILABLE, %d timed out\n", n_unavailable,
            n_timedout);
    ferry_sub *one;
    rc = ferry_subscribe(subc, "rt.0", NULL, NULL, NULL, 1000, &one);
    CHECK(rc == FERRY_EUNAVAILABLE, "subscribe rt.0 while its owner is down: %s",
          ferry_strerror(rc));
    /* 3. Restarted on its store: the waiting publishes go out, every acked
     * message is delivered in order. */
    CHECK(ferryd_restart(&brokers[dead].p, brokers[dead].args) == 0, "restart broker %d", dead + 1);
    rc = ferry_flush(pubc, LONG_MS);
    CHECK(rc == 0, "flush after the restart: %s", ferry_strerror(rc));
    pthread_mutex_lock(&acked.mu);
    fprintf(stderr, "async publishes: %zu done, %zu failed (last: %s)\n", acked.n_async_done,
            acked.n_async_failed, ferry_strerror(acked.last_failure));
    CHECK(acked.n_async_done == 25 * R_TOPICS, "async completions %zu", acked.n_async_done);
    pthread_mutex_unlock(&acked.mu);
    wait_delivered("after kill -9 and restart");
    pthread_mutex_lock(&got.mu);
    fprintf(stderr, "redelivered after the restart: %llu\n", (unsigned long long)got.n_redelivered);
    uint64_t last0 = got.last[0];
    pthread_mutex_unlock(&got.mu);
    /* One topic on its owner, back: all of it, in order, through a queue. */
    ferry_sub_options *all;
    CHECK(ferry_sub_options_create(&all) == 0 &&
              ferry_sub_options_set_start(all, FERRY_START_ALL, 0) == 0,
          "options");
    rc = ferry_subscribe(subc, "rt.0", all, NULL, NULL, WAIT_MS, &one);
    ferry_sub_options_destroy(all);
    CHECK(rc == 0, "subscribe rt.0 after the restart: %s", ferry_strerror(rc));
    for (uint64_t seq = 1; seq <= last0; seq++) {
        ferry_msg *m;
        rc = ferry_sub_next(one, WAIT_MS, &m);
        CHECK(rc == 0 && ferry_msg_sequence(m) == seq, "rt.0 #%llu from the queue: %s",
              (unsigned long long)seq, ferry_strerror(rc));
        ferry_msg_destroy(m);
    }
    fprintf(stderr, "rt.0 on its owner through a queue: %llu messages in order\n",
            (unsigned long long)last0);
    CHECK(ferry_unsubscribe(one) == 0, "unsubscribe rt.0");
#ifdef FERRY_CLI_PATH
    check_cli(servers);
#endif
    CHECK(ferry_unsubscribe(sub) == 0, "unsubscribe");
    CHECK(ferry_client_close(pubc, WAIT_MS) == 0, "close the publisher");
    ferry_client_close(subc, WAIT_MS);
    ferry_client_destroy(pubc);
    ferry_client_destroy(subc);
    return 0;
}

#ifdef FERRY_CLI_PATH
static void bench_run(const char *servers, const char *args, const char *what)
{
    char cmd[1024];
    int st;
    snprintf(cmd, sizeof(cmd), "-s %s bench --no-progress %s", servers, args);
    fprintf(stderr, "%s: ferry %s\n", what, cmd);
    const char *out = cli(cmd, &st);
    printf("== %s (status %d): ferry %s\n%s\n", what, st, cmd, out);
    fflush(stdout);
}

int bench_cluster_vs_one(const char *args)
{
    start_cluster();
    char servers[256];
    snprintf(servers, sizeof(servers), "127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", brokers[0].port,
             brokers[1].port, brokers[2].port);
    bench_run(servers, args, "cluster of 3");
    struct ferryd_proc one;
    CHECK(ferryd_start(&one, NULL, NULL) == 0, "standalone ferryd");
    snprintf(servers, sizeof(servers), "127.0.0.1:%d", one.port);
    bench_run(servers, args, "one standalone broker");
    ferryd_stop(&one);
    return 0;
}
#else
int bench_cluster_vs_one(const char *args)
{
    (void)args;
    fprintf(stderr, "built without the CLI\n");
    return 77;
}
#endif

/* ---- cluster_test auth ---------------------------------------------------- */

/* pw hashed as the auth file takes it (SHA-512 crypt, 1000 rounds: fast). */
static char *hash_pw(const char *pw)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data cd;
    memset(&cd, 0, sizeof(cd));
    CHECK(crypt_gensalt_rn("$6$", 1000, NULL, 0, setting, sizeof(setting)) != NULL, "gensalt");
    const char *h = crypt_rn(pw, setting, &cd, sizeof(cd));
    CHECK(h != NULL && h[0] != '*', "crypt");
    return strdup(h);
}

/* The placed topics c's user is shown: their number, and in how many
 * brokers they lie; *other counts the names outside prefix. */
static size_t shown_topics(ferry_client *c, const char *prefix, size_t *n_owners, size_t *other)
{
    ferry_metadata md;
    int rc = ferry_admin_metadata(c, NULL, 0, WAIT_MS, &md);
    CHECK(rc == 0, "Metadata as a user without admin: %s", ferry_strerror(rc));
    uint32_t seen[N_BROKERS + 1] = {0};
    *n_owners = 0;
    *other = 0;
    for (size_t i = 0; i < md.n_topics; i++) {
        uint32_t o = md.topics[i].owner;
        if (o >= 1 && o <= N_BROKERS && seen[o]++ == 0) {
            (*n_owners)++;
        }
        *other += strncmp(md.topics[i].topic, prefix, strlen(prefix)) != 0;
    }
    size_t n = md.n_topics;
    ferry_free(md.brokers);
    ferry_free(md.topics);
    return n;
}

/*
 * `cluster_test auth`: the brokers have an auth file; alice may publish and
 * subscribe au.>, eve ev.>, neither is an admin. alice's client, given the
 * three brokers, still routes: Metadata and TopicCreate, the client's way
 * to an owner, are open to any logged-in user for the topics it may use.
 * Each user is shown only its own topics, may not place another's, and
 * the other admin requests stay refused.
 */
int test_auth(void)
{
    static char dir[] = "/tmp/ferry-cluster-auth-XXXXXX";
    static char path[sizeof(dir) + 8];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    snprintf(path, sizeof(path), "%s/auth", dir);
    char *h = hash_pw("secret");
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "write %s", path);
    fprintf(f,
            "user alice %s\nallow alice publish au.>\nallow alice subscribe au.>\n"
            "user eve %s\nallow eve publish ev.>\nallow eve subscribe ev.>\n",
            h, h);
    fclose(f);
    CHECK(chmod(path, 0600) == 0, "chmod %s", path);
    free(h);
    cluster_extra_args[0] = "--auth-file";
    cluster_extra_args[1] = path;
    start_cluster();
    char servers[256];
    snprintf(servers, sizeof(servers), "127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", brokers[0].port,
             brokers[1].port, brokers[2].port);
    wait_brokers_listed("alice", "secret");
    ferry_client *alice = lib_client_as(servers, "alice", "alice", "secret");
    ferry_client *eve = lib_client_as(servers, "eve", "eve", "secret");
    enum { N = 9 };
    for (int t = 0; t < N; t++) {
        char topic[16];
        snprintf(topic, sizeof(topic), "au.%d", t);
        uint64_t seq = 0;
        ferry_pub m = {.topic = topic, .payload = "x", .payload_len = 1};
        int rc = ferry_publish_sync(alice, &m, WAIT_MS, &seq);
        CHECK(rc == 0 && seq == 1, "alice publishes %s, routed to its owner: %s", topic,
              ferry_strerror(rc));
    }
    uint64_t seq = 0;
    ferry_pub m = {.topic = "ev.0", .payload = "y", .payload_len = 1};
    int rc = ferry_publish_sync(eve, &m, WAIT_MS, &seq);
    CHECK(rc == 0, "eve publishes ev.0: %s", ferry_strerror(rc));
    /* Only her own topics, spread over more than one broker. */
    size_t n_owners, other;
    size_t n = shown_topics(alice, "au.", &n_owners, &other);
    CHECK(n == N && other == 0 && n_owners >= 2,
          "alice is shown %zu topics (%zu not hers) on %zu brokers", n, other, n_owners);
    n = shown_topics(eve, "ev.", &n_owners, &other);
    CHECK(n == 1 && other == 0, "eve is shown %zu topics (%zu not hers)", n, other);
    ferry_placement pl;
    rc = ferry_admin_topic_create(eve, "au.0", WAIT_MS, &pl);
    CHECK(rc == FERRY_EPERM, "eve places alice's topic: %s", ferry_strerror(rc));
    rc = ferry_admin_topic_create(alice, "au.new", WAIT_MS, &pl);
    CHECK(rc == 0 && pl.owner >= 1 && pl.owner <= N_BROKERS, "alice places au.new: %s (owner %u)",
          ferry_strerror(rc), pl.owner);
    ferry_stats st;
    rc = ferry_admin_stats(alice, WAIT_MS, &st);
    CHECK(rc == FERRY_EPERM, "Stats without admin: %s", ferry_strerror(rc));
    fprintf(stderr, "auth: alice routed %d publishes over the brokers without admin\n", N);
    CHECK(ferry_client_close(alice, WAIT_MS) == 0, "close alice");
    ferry_client_close(eve, WAIT_MS);
    ferry_client_destroy(alice);
    ferry_client_destroy(eve);
    unlink(path);
    rmdir(dir);
    return 0;
}

/*
 * cluster_test.c - cluster mode, phase 1, end to end (broker/CLUSTER.md): a
 * three-server ZooKeeper ensemble and three ferryd on loopback, started here.
 *
 *   cluster_test placement   30 topics spread over the brokers; a publish or
 *                            subscribe to a non-owner gets ERROR_NOT_OWNER
 *                            with the owner's address; wildcard subscribers
 *                            get their broker's topics; Metadata lists every
 *                            broker and placement; a broker started on
 *                            another store is refused; one killed and
 *                            restarted at once waits for its old session
 *   cluster_test failover    kill -9 of the controller: another broker
 *                            becomes controller, no placement is lost, the
 *                            dead broker's topics are unavailable meanwhile,
 *                            and it serves them again (its sequences going
 *                            on) when restarted on its store; a broker
 *                            stopped (SIGSTOP) longer than its session
 *                            timeout does not serve its topics when it
 *                            runs again, until it has registered again
 *   cluster_test zkleader    kill -9 of the ZooKeeper leader while publishing
 *                            to a topic: publishes go on (retried while the
 *                            broker cannot confirm its session), and the
 *                            subscriber gets every acked message, in order
 *   cluster_test routing     libferry given the three brokers routes by itself
 *                            (cluster_route.c)
 *   cluster_test bench ARGS  manual, not in ctest: `ferry bench ARGS` on the
 *                            three brokers, then on one standalone ferryd
 *   cluster_test standalone  no ZooKeeper: a broker not in a cluster answers
 *                            Metadata empty and topic create as a no-op;
 *                            incomplete cluster settings are refused
 *
 * Exits 0 (passed), 1 (failed: what and where on stderr) or 77 (skipped:
 * java or ZooKeeper missing, or ferryd built without cluster mode).
 */
#include "cluster_test.h"

#include "ferryd_proc.h"
#include "rawclient.h"
#include "zk_ensemble.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define N_TOPICS 30
#define SESSION_MS "4000"
#define CLU_HOLD_MS 1000 /* a frame's wait for its topic's placement (CLU_PLACE_WAIT_MS) */

static struct zk_ensemble zk;
struct broker brokers[N_BROKERS];
const char *cluster_extra_args[5];
static char root[256];

static void cleanup(void)
{
    for (int i = 0; i < N_BROKERS; i++) {
        if (brokers[i].p.pid > 0) {
            ferryd_kill9(&brokers[i].p);
        }
    }
    zk_stop(&zk);
    if (root[0]) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
        if (system(cmd) != 0) {
            fprintf(stderr, "could not remove %s\n", root);
        }
    }
}

void check(int ok, const char *file, int line, const char *what, const char *fmt, ...)
{
    if (ok) {
        return;
    }
    va_list ap;
    fprintf(stderr, "%s:%d: FAILED: %s: ", file, line, what);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1); /* cleanup() runs */
}

static void broker_args(struct broker *b, int i, const char *data_dir)
{
    snprintf(b->id_arg, sizeof(b->id_arg), "%d", i + 1);
    snprintf(b->listen_arg, sizeof(b->listen_arg), "127.0.0.1:%d", b->port);
    snprintf(b->dir, sizeof(b->dir), "%s", data_dir);
    const char *a[] = {"--listen",    b->listen_arg,      "--cluster",
                       "t",           "--zookeeper",      zk.connect,
                       "--broker-id", b->id_arg,          "--zookeeper-session-ms",
                       SESSION_MS,    "--metrics-listen", "127.0.0.1:0",
                       NULL};
    memcpy(b->args, a, sizeof(a));
    size_t n = sizeof(a) / sizeof(a[0]) - 1;
    for (size_t k = 0; cluster_extra_args[k] != NULL; k++) {
        b->args[n++] = cluster_extra_args[k];
    }
    b->args[n] = NULL;
}

static int broker_start(int i, const char *data_dir)
{
    struct broker *b = &brokers[i];
    if (b->port == 0) {
        b->port = zk_free_port();
    }
    broker_args(b, i, data_dir);
    return ferryd_start(&b->p, b->dir, b->args);
}

void start_cluster(void)
{
    if (!zk_available()) {
        exit(77);
    }
    atexit(cleanup);
    snprintf(root, sizeof(root), "/tmp/ferry-cluster-XXXXXX");
    CHECK(mkdtemp(root) != NULL, "mkdtemp: %s", strerror(errno));
    long long t0 = zk_now_ms();
    int rc = zk_start(&zk, 60000);
    CHECK(rc == 0, "ZooKeeper ensemble: %s (logs in %s)", strerror(-rc), zk.dir);
    fprintf(stderr, "ZooKeeper quorum after %lld ms\n", zk_now_ms() - t0);
    for (int i = 0; i < N_BROKERS; i++) {
        char dir[300];
        snprintf(dir, sizeof(dir), "%s/b%d", root, i + 1);
        rc = broker_start(i, dir);
        if (rc == -ECHILD && i == 0) {
            fprintf(stderr, "skipped: ferryd refuses `cluster` (built without cluster mode?)\n");
            exit(77);
        }
        CHECK(rc == 0, "broker %d: %s", i + 1, strerror(-rc));
    }
}

/* GET /metrics from broker i: the body (a static buffer) or the test fails. */
static const char *metrics_of(int i)
{
    static char buf[1 << 16];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)brokers[i].p.metrics_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "metrics of broker %d",
          i + 1);
    const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
    CHECK(send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) == (ssize_t)sizeof(req) - 1, "send GET");
    size_t len = 0;
    long long deadline = zk_now_ms() + WAIT_MS;
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        CHECK(zk_now_ms() < deadline && poll(&p, 1, WAIT_MS) == 1, "GET /metrics answered");
        ssize_t r = read(fd, buf + len, sizeof(buf) - 1 - len);
        CHECK(r >= 0 && len + (size_t)r < sizeof(buf) - 1, "read /metrics");
        if (r == 0) {
            break;
        }
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    return buf;
}

static int port_of(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    return colon ? atoi(colon + 1) : -1;
}

static int broker_of_port(int port)
{
    for (int i = 0; i < N_BROKERS; i++) {
        if (brokers[i].port == port) {
            return i;
        }
    }
    return -1;
}

static void client(struct rawc *c, int i)
{
    int rc = rawc_connect(c, brokers[i].port, 30000);
    CHECK(rc == 0, "connect to broker %d: %s", i + 1, strerror(-rc));
}

/* Publish with an ack: the answer's code (0: acked, with *seq), and the
 * owner's address for ERROR_NOT_OWNER. */
static int publish_answer(struct rawc *c, uint64_t id, const char *topic, uint64_t *seq,
                          char *owner, size_t owner_cap);

static int publish(struct rawc *c, uint64_t id, const char *topic, uint64_t *seq, char *owner,
                   size_t owner_cap)
{
    CHECK(rawc_publish(c, id, topic, "m", 1, 1) == 0, "send publish %s", topic);
    return publish_answer(c, id, topic, seq, owner, owner_cap);
}

/* The answer to publish id: as publish(). */
static int publish_answer(struct rawc *c, uint64_t id, const char *topic, uint64_t *seq,
                          char *owner, size_t owner_cap)
{
    long long deadline = zk_now_ms() + WAIT_MS;
    while (zk_now_ms() < deadline) {
        Ferry__Frame *f;
        int rc = rawc_recv(c, WAIT_MS, &f);
        CHECK(rc == 0, "publish %s: no answer (%d)", topic, rc);
        if (f->body_case == FERRY__FRAME__BODY_PUB_ACK && f->pub_ack->id == id) {
            if (seq) {
                *seq = f->pub_ack->sequence;
            }
            return f->pub_ack->code;
        }
        if (f->body_case == FERRY__FRAME__BODY_ERROR && f->error->ref_id == id) {
            if (owner) {
                snprintf(owner, owner_cap, "%s", f->error->owner);
            }
            if (f->error->code == FERRY__ERROR_CODE__ERROR_NOT_OWNER) {
                CHECK(strstr(f->error->text, f->error->owner) != NULL,
                      "the text names the owner: %s", f->error->text);
            }
            return f->error->code;
        }
    }
    CHECK(0, "publish %s: no answer", topic);
    return -1;
}

/* Subscribe: the SubAck's code, and its owner for ERROR_NOT_OWNER. */
static int subscribe(struct rawc *c, uint64_t sub_id, const char *pattern, char *owner,
                     size_t owner_cap)
{
    CHECK(rawc_subscribe_nowait(c, sub_id, pattern, NULL) == 0, "send subscribe");
    Ferry__Frame *f;
    int rc = rawc_recv_kind(c, WAIT_MS, FERRY__FRAME__BODY_SUB_ACK, &f, NULL);
    CHECK(rc == 0, "SubAck for %s: %d", pattern, rc);
    snprintf(owner, owner_cap, "%s", f->sub_ack->owner);
    return f->sub_ack->code;
}

struct meta {
    uint32_t controller;
    uint32_t n_brokers, n_live;
    char topic[N_TOPICS * 2][64];
    uint32_t owner[N_TOPICS * 2];
    uint32_t n_topics;
};

static void metadata(struct rawc *c, struct meta *out)
{
    Ferry__MetadataRequest mr = FERRY__METADATA_REQUEST__INIT;
    Ferry__AdminRequest req = FERRY__ADMIN_REQUEST__INIT;
    req.id = 77;
    req.request_case = FERRY__ADMIN_REQUEST__REQUEST_METADATA;
    req.metadata = &mr;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_ADMIN_REQUEST;
    f.admin_request = &req;
    CHECK(rawc_send(c, &f) == 0, "send Metadata");
    Ferry__Frame *r;
    int rc = rawc_recv_kind(c, WAIT_MS, FERRY__FRAME__BODY_ADMIN_REPLY, &r, NULL);
    CHECK(rc == 0 && r->admin_reply->metadata != NULL, "Metadata answer (%d)", rc);
    const Ferry__Metadata *m = r->admin_reply->metadata;
    CHECK(strcmp(m->cluster, "t") == 0, "cluster name %s", m->cluster);
    memset(out, 0, sizeof(*out));
    out->controller = m->controller;
    out->n_brokers = (uint32_t)m->n_brokers;
    for (size_t i = 0; i < m->n_brokers; i++) {
        out->n_live += m->brokers[i]->is_live;
        int k = (int)m->brokers[i]->id - 1;
        CHECK(k >= 0 && k < N_BROKERS && port_of(m->brokers[i]->address) == brokers[k].port,
              "broker %u's address %s", m->brokers[i]->id, m->brokers[i]->address);
    }
    for (size_t i = 0; i < m->n_topics && i < N_TOPICS * 2; i++) {
        snprintf(out->topic[i], sizeof(out->topic[i]), "%s", m->topics[i]->topic);
        out->owner[i] = m->topics[i]->owner;
        out->n_topics++;
    }
}

/* One admin request on c, its reply (valid until the next receive). */
static Ferry__AdminReply *admin(struct rawc *c, Ferry__AdminRequest *req)
{
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_ADMIN_REQUEST;
    f.admin_request = req;
    CHECK(rawc_send(c, &f) == 0, "send an admin request");
    Ferry__Frame *r;
    int rc = rawc_recv_kind(c, WAIT_MS, FERRY__FRAME__BODY_ADMIN_REPLY, &r, NULL);
    CHECK(rc == 0 && r->admin_reply->id == req->id, "admin reply (%d)", rc);
    return r->admin_reply;
}

static Ferry__AdminReply *topic_create(struct rawc *c, const char *topic)
{
    Ferry__TopicCreateRequest tc = FERRY__TOPIC_CREATE_REQUEST__INIT;
    Ferry__AdminRequest req = FERRY__ADMIN_REQUEST__INIT;
    tc.topic = (char *)topic;
    req.id = 78;
    req.request_case = FERRY__ADMIN_REQUEST__REQUEST_TOPIC_CREATE;
    req.topic_create = &tc;
    return admin(c, &req);
}

/* Metadata from c once it lists n topics: a broker learns of a placement
 * made elsewhere through its watch, a moment later (bounded wait). */
static void metadata_n(struct rawc *c, uint32_t n, struct meta *out)
{
    long long deadline = zk_now_ms() + WAIT_MS;
    for (;;) {
        metadata(c, out);
        if (out->n_topics >= n) {
            return;
        }
        CHECK(zk_now_ms() < deadline, "Metadata lists %u of %u topics", out->n_topics, n);
        struct timespec ts = {0, 20 * 1000000L}; /* the poll's period */
        nanosleep(&ts, NULL);
    }
}

static uint32_t owner_in(const struct meta *m, const char *topic)
{
    for (uint32_t i = 0; i < m->n_topics; i++) {
        if (strcmp(m->topic[i], topic) == 0) {
            return m->owner[i];
        }
    }
    return 0;
}

/* Publish topic through broker `via`; on ERROR_NOT_OWNER follow to the
 * owner. Returns the owner's index. */
static int publish_routed(int via, struct rawc *conns, uint64_t id, const char *topic,
                          int *was_redirected)
{
    char owner[128] = "";
    uint64_t seq = 0;
    int code = publish(&conns[via], id, topic, &seq, owner, sizeof(owner));
    if (code == FERRY__ERROR_CODE__ERROR_NONE) {
        *was_redirected = 0;
        return via;
    }
    CHECK(code == FERRY__ERROR_CODE__ERROR_NOT_OWNER, "publish %s: code %d", topic, code);
    int k = broker_of_port(port_of(owner));
    CHECK(k >= 0, "owner address %s is one of the brokers", owner);
    code = publish(&conns[k], id, topic, &seq, NULL, 0);
    CHECK(code == 0 && seq >= 1, "publish %s on its owner %d: code %d", topic, k + 1, code);
    *was_redirected = 1;
    return k;
}

static int test_placement(void)
{
    start_cluster();
    struct rawc c[N_BROKERS];
    for (int i = 0; i < N_BROKERS; i++) {
        client(&c[i], i);
    }
    /* 30 topics through broker 1: the ones it does not own are redirected. */
    int owned_by[N_TOPICS], count[N_BROKERS] = {0}, redirected = 0;
    for (int t = 0; t < N_TOPICS; t++) {
        char topic[64];
        int was;
        snprintf(topic, sizeof(topic), "orders.t%02d", t);
        owned_by[t] = publish_routed(0, c, (uint64_t)t + 1, topic, &was);
        count[owned_by[t]]++;
        redirected += was;
    }
    for (int i = 0; i < N_BROKERS; i++) {
        CHECK(count[i] >= 8 && count[i] <= 12, "broker %d owns %d of %d topics (balanced)", i + 1,
              count[i], N_TOPICS);
    }
    CHECK(redirected == N_TOPICS - count[0], "%d redirections", redirected);
    /* Metadata, from each broker: three live brokers, every placement. */
    for (int i = 0; i < N_BROKERS; i++) {
        struct meta m;
        metadata_n(&c[i], N_TOPICS, &m);
        CHECK(m.n_brokers == N_BROKERS && m.n_live == N_BROKERS, "brokers %u live %u", m.n_brokers,
              m.n_live);
        CHECK(m.controller >= 1 && m.controller <= N_BROKERS, "controller %u", m.controller);
        CHECK(m.n_topics == N_TOPICS, "%u placements", m.n_topics);
        for (int t = 0; t < N_TOPICS; t++) {
            char topic[64];
            snprintf(topic, sizeof(topic), "orders.t%02d", t);
            CHECK(owner_in(&m, topic) == (uint32_t)owned_by[t] + 1, "owner of %s", topic);
        }
    }
    /* The metrics say who serves, who owns how many, who controls. */
    int n_controllers = 0;
    for (int i = 0; i < N_BROKERS; i++) {
        const char *body = metrics_of(i);
        char want[64];
        snprintf(want, sizeof(want), "\nferry_cluster_topics_owned %d\n", count[i]);
        CHECK(strstr(body, "\nferry_cluster_serving 1\n") && strstr(body, want) &&
                  strstr(body, "\nferry_cluster_brokers_live 3\n"),
              "broker %d's cluster metrics", i + 1);
        n_controllers += strstr(body, "\nferry_cluster_controller 1\n") != NULL;
    }
    CHECK(n_controllers == 1, "%d controllers in the metrics", n_controllers);
#ifdef FERRY_CLI_PATH
    /* `ferry cluster --json` prints the same map. */
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "'%s' -s 127.0.0.1:%d cluster --json 'orders.>'", FERRY_CLI_PATH,
             brokers[2].port);
    FILE *out = popen(cmd, "r");
    CHECK(out != NULL, "run %s", cmd);
    static char json[1 << 16];
    size_t jl = fread(json, 1, sizeof(json) - 1, out);
    json[jl] = '\0';
    CHECK(pclose(out) == 0, "ferry cluster's exit status");
    CHECK(strstr(json, "\"cluster\":\"t\"") && strstr(json, "\"broker_id\":3") &&
              strstr(json, "\"live\":false") == NULL,
          "ferry cluster --json: %s", json);
    int n_placed = 0;
    for (const char *p = json; (p = strstr(p, "\"topic\":\"orders.t")) != NULL; p++) {
        n_placed++;
    }
    CHECK(n_placed == N_TOPICS, "ferry cluster lists %d topics", n_placed);
#endif
    /* topic create places a topic without publishing. */
    Ferry__AdminReply *ar = topic_create(&c[1], "orders.created");
    CHECK(ar->code == 0 && ar->placement != NULL && ar->placement->owner >= 1 &&
              ar->placement->owner <= N_BROKERS &&
              port_of(ar->placement->address) == brokers[ar->placement->owner - 1].port,
          "topic create: code %d", ar->code);
    uint32_t created_owner = ar->placement->owner;
    struct meta m2;
    metadata_n(&c[0], N_TOPICS + 1, &m2);
    CHECK(m2.n_topics == N_TOPICS + 1 && owner_in(&m2, "orders.created") == created_owner,
          "the created topic in Metadata (%u topics)", m2.n_topics);
    ar = topic_create(&c[1], "orders.*");
    CHECK(ar->code == FERRY__ERROR_CODE__ERROR_INVALID_TOPIC, "topic create of a pattern: %d",
          ar->code);
    /* A subscription to a topic owned elsewhere is refused with the owner. */
    int t_other = 0;
    while (owned_by[t_other] == 1) {
        t_other++;
    }
    char topic[64], owner[128];
    snprintf(topic, sizeof(topic), "orders.t%02d", t_other);
    int code = subscribe(&c[1], 1, topic, owner, sizeof(owner));
    CHECK(code == FERRY__ERROR_CODE__ERROR_NOT_OWNER &&
              port_of(owner) == brokers[owned_by[t_other]].port,
          "subscribe %s on broker 2: code %d owner %s", topic, code, owner);
    /* A wildcard subscription on every broker gets that broker's topics. */
    struct rawc s[N_BROKERS];
    for (int i = 0; i < N_BROKERS; i++) {
        client(&s[i], i);
        code = subscribe(&s[i], 2, "orders.>", owner, sizeof(owner));
        CHECK(code == 0, "wildcard subscribe on broker %d: %d", i + 1, code);
    }
    for (int t = 0; t < N_TOPICS; t++) {
        snprintf(topic, sizeof(topic), "orders.t%02d", t);
        uint64_t seq;
        code = publish(&c[owned_by[t]], 1000 + (uint64_t)t, topic, &seq, NULL, 0);
        /* (orders.created, placed but never published, matches no t) */
        CHECK(code == 0 && seq == 2, "second publish to %s: code %d seq %llu", topic, code,
              (unsigned long long)seq);
    }
    for (int i = 0; i < N_BROKERS; i++) {
        int got = 0;
        while (got < count[i]) {
            Ferry__Frame *f;
            int rc = rawc_recv_kind(&s[i], WAIT_MS, FERRY__FRAME__BODY_DELIVER, &f, NULL);
            CHECK(rc == 0, "broker %d delivered %d of %d", i + 1, got, count[i]);
            int t = atoi(f->deliver->topic + strlen("orders.t"));
            CHECK(owned_by[t] == i && f->deliver->sequence == 2, "broker %d delivered %s seq %llu",
                  i + 1, f->deliver->topic, (unsigned long long)f->deliver->sequence);
            got++;
        }
        int skipped = -1;
        CHECK(rawc_ping_alone(&s[i], 9, WAIT_MS, &skipped) == 0 && skipped == 0,
              "nothing more on broker %d (%d)", i + 1, skipped);
    }
    for (int i = 0; i < N_BROKERS; i++) {
        rawc_close(&c[i]);
        rawc_close(&s[i]);
    }
    /* Broker 3 on another store than its own is refused; on its own, fine. */
    CHECK(ferryd_stop(&brokers[2].p) == 0, "stop broker 3");
    char other[300];
    snprintf(other, sizeof(other), "%s/b3-other", root);
    int rc = broker_start(2, other);
    CHECK(rc == -ECHILD, "broker 3 on a new store must be refused, got %d", rc);
    snprintf(other, sizeof(other), "%s/b3", root);
    rc = broker_start(2, other);
    CHECK(rc == 0, "broker 3 on its own store: %d", rc);
    client(&c[2], 2);
    for (int t = 0; t < N_TOPICS; t++) {
        if (owned_by[t] == 2) {
            uint64_t seq;
            snprintf(topic, sizeof(topic), "orders.t%02d", t);
            code = publish(&c[2], 5000 + (uint64_t)t, topic, &seq, NULL, 0);
            CHECK(code == 0 && seq == 3, "%s after the restart: code %d seq %llu", topic, code,
                  (unsigned long long)seq);
        }
    }
    rawc_close(&c[2]);
    /* Broker 2 killed and restarted at once: its previous session still
     * holds its registration; it waits for that to expire, then serves
     * its topics again on its store. */
    CHECK(ferryd_kill9(&brokers[1].p) == 0, "kill -9 broker 2");
    long long t0 = zk_now_ms();
    CHECK(ferryd_restart(&brokers[1].p, brokers[1].args) == 0, "restart broker 2");
    fprintf(stderr, "broker 2 back after %lld ms\n", zk_now_ms() - t0);
    client(&c[1], 1);
    for (int t = 0; t < N_TOPICS; t++) {
        if (owned_by[t] == 1) {
            uint64_t seq;
            snprintf(topic, sizeof(topic), "orders.t%02d", t);
            code = publish(&c[1], 6000 + (uint64_t)t, topic, &seq, NULL, 0);
            CHECK(code == 0 && seq == 3, "%s after kill -9 and restart: code %d seq %llu", topic,
                  code, (unsigned long long)seq);
        }
    }
    rawc_close(&c[1]);
    return 0;
}

/* Poll Metadata on broker i until cond holds (bounded). */
static void wait_meta(int i, int (*cond)(const struct meta *, uint32_t), uint32_t arg,
                      struct meta *m, const char *what)
{
    long long deadline = zk_now_ms() + 30000;
    for (;;) {
        struct rawc c;
        client(&c, i);
        metadata(&c, m);
        rawc_close(&c);
        if (cond(m, arg)) {
            return;
        }
        CHECK(zk_now_ms() < deadline, "%s within 30 s", what);
        struct timespec ts = {0, 100 * 1000000L}; /* the poll's period */
        nanosleep(&ts, NULL);
    }
}

/* A new controller, and the old one's broker seen as down (its session's
 * end fires two watches, handled in either order). */
static int new_controller(const struct meta *m, uint32_t old)
{
    return m->controller != 0 && m->controller != old && m->n_live == N_BROKERS - 1;
}

static int all_live(const struct meta *m, uint32_t n)
{
    return m->n_live == n;
}

/*
 * Right after the controller's kill -9 (its session lives on for
 * SESSION_MS) a new topic cannot be placed. Its first publish on broker i
 * waits for the placement without stalling its IO thread (conn_hold.c):
 * Pings on four more connections to broker i (one of them shares the
 * publisher's thread, whatever the acceptor's round robin) are answered
 * while it waits, well before its 1 s deadline. Then it is refused (UNAVAILABLE after 1 s), or
 * acked if a controller came meanwhile.
 */
static void held_publish(int i)
{
    struct rawc held, pinger[4];
    client(&held, i);
    for (int k = 0; k < 4; k++) {
        client(&pinger[k], i);
    }
    CHECK(rawc_publish(&held, 99, "f.held", "m", 1, 1) == 0, "send publish f.held");
    long long t0 = zk_now_ms();
    for (int k = 0; k < 4; k++) {
        CHECK(rawc_ping(&pinger[k], 1000 + (uint64_t)k, WAIT_MS) == 0, "ping %d", k);
    }
    long long pinged = zk_now_ms() - t0;
    Ferry__Frame *f;
    int rc = rawc_recv(&held, 0, &f);
    /* A thread blocked in the wait would answer the Pings only after it:
     * 1 s. Half of that is far more than four loopback round trips take. */
    CHECK((pinged < CLU_HOLD_MS / 2 && rc == -ETIMEDOUT) ||
              (rc == 0 && f->body_case == FERRY__FRAME__BODY_PUB_ACK),
          "four Pings answered in %lld ms while the publish of an unplaced topic waited (%d)",
          pinged, rc);
    uint64_t seq = 0;
    int code = rc == 0 ? (int)f->pub_ack->code : publish_answer(&held, 99, "f.held", &seq, NULL, 0);
    CHECK(code == FERRY__ERROR_CODE__ERROR_UNAVAILABLE || code == 0,
          "publish f.held without a controller: %d", code);
    fprintf(stderr, "no controller: pings answered in %lld ms while f.held waited; then %s\n",
            pinged, code == 0 ? "acked" : "UNAVAILABLE");
    rawc_close(&held);
    for (int k = 0; k < 4; k++) {
        rawc_close(&pinger[k]);
    }
}

static int test_failover(void)
{
    start_cluster();
    struct rawc c[N_BROKERS];
    for (int i = 0; i < N_BROKERS; i++) {
        client(&c[i], i);
    }
    int owned_by[6];
    for (int t = 0; t < 6; t++) {
        char topic[64];
        int was;
        snprintf(topic, sizeof(topic), "f.t%d", t);
        owned_by[t] = publish_routed(0, c, (uint64_t)t + 1, topic, &was);
    }
    struct meta before, after;
    metadata_n(&c[0], 6, &before);
    uint32_t old = before.controller;
    CHECK(old >= 1 && old <= N_BROKERS, "controller %u", old);
    int dead = (int)old - 1, other = (dead + 1) % N_BROKERS;
    int t_dead = -1;
    for (int t = 0; t < 6; t++) {
        t_dead = owned_by[t] == dead ? t : t_dead;
    }
    CHECK(t_dead >= 0, "broker %d owns a topic", dead + 1);
    char topic[64], owner[128];
    snprintf(topic, sizeof(topic), "f.t%d", t_dead);
    /* 20 more acked messages on the controller's topic, then kill -9. */
    uint64_t last = 1;
    for (int i = 0; i < 20; i++) {
        CHECK(publish(&c[dead], 50 + (uint64_t)i, topic, &last, NULL, 0) == 0, "publish");
    }
    CHECK(last == 21, "last sequence %llu", (unsigned long long)last);
    for (int i = 0; i < N_BROKERS; i++) {
        rawc_close(&c[i]);
    }
    long long t0 = zk_now_ms();
    CHECK(ferryd_kill9(&brokers[dead].p) == 0, "kill -9 broker %d", dead + 1);
    held_publish(other);
    wait_meta(other, new_controller, old, &after, "a new controller");
    fprintf(stderr, "controller %u -> %u after %lld ms\n", old, after.controller, zk_now_ms() - t0);
    /* f.held (held_publish) may be placed by now: the new controller
     * takes the placements asked for while there was none. */
    CHECK(after.n_topics == before.n_topics + (owner_in(&after, "f.held") != 0),
          "placements %u -> %u", before.n_topics, after.n_topics);
    for (uint32_t i = 0; i < before.n_topics; i++) {
        CHECK(owner_in(&after, before.topic[i]) == before.owner[i], "%s kept its owner",
              before.topic[i]);
    }
    /* The dead broker's topics: unavailable, not moved. */
    client(&c[other], other);
    int code = publish(&c[other], 100, topic, NULL, owner, sizeof(owner));
    CHECK(code == FERRY__ERROR_CODE__ERROR_UNAVAILABLE, "publish %s while its owner is down: %d",
          topic, code);
    /* New topics go to the live brokers. */
    int was;
    for (int i = 0; i < N_BROKERS; i++) {
        if (i != other && i != dead) {
            client(&c[i], i);
        }
    }
    int k = publish_routed(other, c, 101, "f.new", &was);
    CHECK(k != dead, "f.new placed on the dead broker");
    for (int i = 0; i < N_BROKERS; i++) {
        if (i != dead) {
            rawc_close(&c[i]);
        }
    }
    /* Restarted on its store, it serves its topics again, sequences going on. */
    CHECK(ferryd_restart(&brokers[dead].p, brokers[dead].args) == 0, "restart broker %d", dead + 1);
    wait_meta(other, all_live, N_BROKERS, &after, "all brokers live again");
    client(&c[dead], dead);
    uint64_t seq = 0;
    code = publish(&c[dead], 102, topic, &seq, NULL, 0);
    CHECK(code == 0 && seq == last + 1, "publish %s after the restart: code %d seq %llu", topic,
          code, (unsigned long long)seq);
    last = seq;
    /* Every acked message is there, in order, from the first. */
    Ferry__Subscribe sm = FERRY__SUBSCRIBE__INIT;
    sm.sub_id = 7;
    sm.pattern = topic;
    sm.start = FERRY__START_POSITION__START_ALL;
    Ferry__Frame sf = FERRY__FRAME__INIT;
    sf.body_case = FERRY__FRAME__BODY_SUBSCRIBE;
    sf.subscribe = &sm;
    CHECK(rawc_send(&c[dead], &sf) == 0, "subscribe from the first message");
    for (uint64_t s = 1; s <= last; s++) {
        Ferry__Frame *f;
        int rc = rawc_recv_kind(&c[dead], WAIT_MS, FERRY__FRAME__BODY_DELIVER, &f, NULL);
        CHECK(rc == 0 && f->deliver->sequence == s, "stored message %llu after kill -9 (%d)",
              (unsigned long long)s, rc);
    }
    rawc_close(&c[dead]);

    /* SIGSTOP a broker past its session timeout, with a publish to one of
     * its topics waiting in its socket: when it runs again, its lease has
     * lapsed, and it refuses rather than serve an ownership it can no
     * longer vouch for. (The publish is in the socket before SIGCONT, so
     * the IO thread answers it in its first round, while registering
     * again takes the cluster thread several ZooKeeper round trips.) */
    int stopped = dead, watcher = (dead + 1) % N_BROKERS;
    client(&c[stopped], stopped);
    CHECK(kill(brokers[stopped].p.pid, SIGSTOP) == 0, "SIGSTOP");
    wait_meta(watcher, all_live, N_BROKERS - 1, &after, "the stopped broker's session expired");
    CHECK(rawc_publish(&c[stopped], 200, topic, "m", 1, 1) == 0, "publish while stopped");
    CHECK(kill(brokers[stopped].p.pid, SIGCONT) == 0, "SIGCONT");
    for (;;) {
        Ferry__Frame *f;
        int rc = rawc_recv(&c[stopped], WAIT_MS, &f);
        CHECK(rc == 0, "an answer after SIGCONT (%d)", rc);
        if (f->body_case == FERRY__FRAME__BODY_PUB_ACK) {
            CHECK(0, "served right after SIGCONT: seq %llu",
                  (unsigned long long)f->pub_ack->sequence);
        }
        if (f->body_case == FERRY__FRAME__BODY_ERROR && f->error->ref_id == 200) {
            CHECK(f->error->code == FERRY__ERROR_CODE__ERROR_UNAVAILABLE,
                  "after SIGCONT: code %d (%s)", f->error->code, f->error->text);
            break;
        }
    }
    /* Registered again, it serves its topic again. */
    long long deadline = zk_now_ms() + 30000;
    for (uint64_t id = 201;; id++) {
        code = publish(&c[stopped], id, topic, &seq, NULL, 0);
        if (code == 0) {
            CHECK(seq == last + 1, "sequence after the pause: %llu", (unsigned long long)seq);
            break;
        }
        CHECK(code == FERRY__ERROR_CODE__ERROR_UNAVAILABLE && zk_now_ms() < deadline,
              "serving again after SIGCONT: code %d", code);
        struct timespec ts = {0, 100 * 1000000L}; /* the retry's period */
        nanosleep(&ts, NULL);
    }
    rawc_close(&c[stopped]);
    return 0;
}

static int test_zkleader(void)
{
    start_cluster();
    struct rawc c[N_BROKERS];
    for (int i = 0; i < N_BROKERS; i++) {
        client(&c[i], i);
    }
    int was;
    int k = publish_routed(0, c, 1, "z.t", &was); /* sequence 1 */
    struct rawc sub;
    client(&sub, k);
    char owner[128];
    CHECK(subscribe(&sub, 1, "z.t", owner, sizeof(owner)) == 0, "subscribe on the owner");
    int leader = -1;
    for (int i = 0; i < ZK_SERVERS; i++) {
        char mode[32];
        if (zk_mode(&zk, i, mode, sizeof(mode)) == 0 && strcmp(mode, "leader") == 0) {
            leader = i;
        }
    }
    CHECK(leader >= 0, "a ZooKeeper leader");
    /* Acked publishes, one at a time; the leader dies after the 50th, and
     * publishing goes on, every 10 ms, for 6 s (past the brokers' session
     * timeout) and until the ensemble has a new leader, then 50 more. A
     * publish refused as unavailable (the broker could not confirm its
     * session meanwhile) is sent again. */
    int retries = 0, n = 0, more = -1;
    long long deadline = zk_now_ms() + 60000, killed_at = 0;
    for (int i = 2; more != 0; i++, more -= more > 0) {
        n = i;
        if (i == 50) {
            zk_kill(&zk, leader);
            killed_at = zk_now_ms();
        }
        if (killed_at && more < 0 && zk_now_ms() - killed_at > 6000) {
            for (int s = 0; s < ZK_SERVERS; s++) {
                char mode[32];
                if (s != leader && zk_mode(&zk, s, mode, sizeof(mode)) == 0 &&
                    strcmp(mode, "leader") == 0) {
                    more = 50;
                }
            }
        }
        if (killed_at && more < 0) {
            struct timespec pace = {0, 10 * 1000000L}; /* the publishing rate, not a wait */
            nanosleep(&pace, NULL);
        }
        char payload[16];
        int len = snprintf(payload, sizeof(payload), "m%d", i);
        for (;;) {
            CHECK(rawc_publish(&c[k], (uint64_t)i, "z.t", payload, (size_t)len, 1) == 0, "send");
            Ferry__Frame *f;
            int rc = rawc_recv(&c[k], WAIT_MS, &f);
            CHECK(rc == 0, "answer to publish %d (%d)", i, rc);
            if (f->body_case == FERRY__FRAME__BODY_PUB_ACK) {
                CHECK(f->pub_ack->code == 0 && f->pub_ack->sequence == (uint64_t)i,
                      "publish %d: code %d seq %llu", i, f->pub_ack->code,
                      (unsigned long long)f->pub_ack->sequence);
                break;
            }
            CHECK(f->body_case == FERRY__FRAME__BODY_ERROR &&
                      f->error->code == FERRY__ERROR_CODE__ERROR_UNAVAILABLE,
                  "publish %d refused otherwise", i);
            CHECK(zk_now_ms() < deadline, "publishing again within 60 s");
            retries++;
            struct timespec ts = {0, 50 * 1000000L}; /* the retry's period */
            nanosleep(&ts, NULL);
        }
    }
    fprintf(stderr, "%d publishes, %d retried while ZooKeeper elected a new leader\n", n, retries);
    for (int i = 2; i <= n; i++) { /* subscribed after sequence 1: new messages only */
        Ferry__Frame *f;
        int rc = rawc_recv_kind(&sub, WAIT_MS, FERRY__FRAME__BODY_DELIVER, &f, NULL);
        CHECK(rc == 0, "delivery %d of %d (%d)", i, n, rc);
        CHECK(f->deliver->sequence == (uint64_t)i, "delivery %d has sequence %llu", i,
              (unsigned long long)f->deliver->sequence);
    }
    for (int i = 0; i < N_BROKERS; i++) {
        rawc_close(&c[i]);
    }
    rawc_close(&sub);
    return 0;
}

/* No ZooKeeper needed: cluster mode off is the single broker of before. */
static int test_standalone(void)
{
    struct ferryd_proc p;
    int rc = ferryd_start(&p, NULL, NULL);
    CHECK(rc == 0, "ferryd: %d", rc);
    struct rawc c;
    CHECK(rawc_connect(&c, p.port, 30000) == 0, "connect");
    Ferry__MetadataRequest mr = FERRY__METADATA_REQUEST__INIT;
    Ferry__AdminRequest req = FERRY__ADMIN_REQUEST__INIT;
    req.id = 5;
    req.request_case = FERRY__ADMIN_REQUEST__REQUEST_METADATA;
    req.metadata = &mr;
    Ferry__AdminReply *r = admin(&c, &req);
    CHECK(r->code == 0 && r->metadata != NULL && r->metadata->cluster[0] == '\0' &&
              r->metadata->n_brokers == 0 && r->metadata->n_topics == 0,
          "Metadata of a broker not in a cluster");
    r = topic_create(&c, "a.b");
    CHECK(r->code == 0 && r->placement == NULL, "topic create, not in a cluster: %d", r->code);
    uint64_t seq;
    CHECK(publish(&c, 1, "a.b", &seq, NULL, 0) == 0 && seq == 1, "publish");
    rawc_close(&c);
    CHECK(ferryd_stop(&p) == 0, "stop");
    /* Incomplete cluster settings are refused at start. */
    const char *no_zk[] = {"--cluster", "x", "--broker-id", "1", NULL};
    CHECK(ferryd_start(&p, NULL, no_zk) == -ECHILD, "--cluster without --zookeeper refused");
    const char *no_cluster[] = {"--broker-id", "1", NULL};
    CHECK(ferryd_start(&p, NULL, no_cluster) == -ECHILD, "--broker-id without --cluster refused");
    return 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc == 2 && strcmp(argv[1], "placement") == 0) {
        return test_placement();
    }
    if (argc == 2 && strcmp(argv[1], "failover") == 0) {
        return test_failover();
    }
    if (argc == 2 && strcmp(argv[1], "zkleader") == 0) {
        return test_zkleader();
    }
    if (argc == 2 && strcmp(argv[1], "standalone") == 0) {
        return test_standalone();
    }
    if (argc == 2 && strcmp(argv[1], "routing") == 0) {
        return test_routing();
    }
    if (argc == 2 && strcmp(argv[1], "auth") == 0) {
        return test_auth();
    }
    if (argc == 3 && strcmp(argv[1], "bench") == 0) {
        return bench_cluster_vs_one(argv[2]);
    }
    fprintf(stderr, "usage: cluster_test placement|failover|zkleader|routing|auth|standalone\n");
    return 2;
}

/*
 * 93_mqtt.c - the MQTT 3.1.1 listener end to end (issue 17): a real ferryd
 * with --mqtt-listen, the real clients of Debian's mosquitto-clients
 * (mosquitto_pub, mosquitto_sub) and python3-paho-mqtt against it, ferry's
 * own protocol on the other side (rawclient), and raw sockets for what no
 * well-behaved client sends (malformed packets, refused logins, silence).
 *
 * A case whose tool is missing exits 77 (skipped). No sleeps: every wait
 * is for a condition (a line, an exit, a packet, a closed socket, a stats
 * counter) with a timeout.
 */
#include "auth_e2e.h"
#include "cli_spawn.h"
#include "e2e_util.h"
#include "mqtt_e2e.h"

#ifdef E2E_MQTT_TLS
#include "tls_certs.h"
#endif

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

Suite *test_suite(void);

static struct ferryd_proc broker;
static char mqtt_port_s[16];

/* path of tool on PATH (one of 4 static buffers, used in turn), or exit
 * 77 (skip) if it is not there. */
static const char *tool(const char *name)
{
    static char found[4][512];
    static int k;
    const char *env = getenv("PATH");
    char dirs[2048], path[512];
    snprintf(dirs, sizeof(dirs), "%s", env ? env : "/usr/bin:/bin");
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(path, sizeof(path), "%s/%s", d, name);
        if (access(path, X_OK) == 0) {
            char *p = found[k++ % 4];
            memcpy(p, path, sizeof(path));
            return p;
        }
    }
    fprintf(stderr, "%s not found: skipped (Debian: mosquitto-clients, python3-paho-mqtt)\n", name);
    exit(77);
}

/* A python3 that has paho-mqtt (Debian's, whatever PATH says), or skip. */
static const char *paho_python(void)
{
    const char *const cands[] = {"/usr/bin/python3", tool("python3")};
    for (size_t i = 0; i < 2; i++) {
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "%s -c 'import paho.mqtt.client' 2>/dev/null", cands[i]);
        if (system(cmd) == 0) {
            return cands[i];
        }
    }
    fprintf(stderr, "python3 with paho-mqtt not found: skipped (Debian: python3-paho-mqtt)\n");
    exit(77);
}

static void up(const char *const *extra)
{
    const char *args[16] = {"--mqtt-listen", "127.0.0.1:0"};
    size_t n = 2;
    for (size_t i = 0; extra && extra[i] && n < 15; i++) {
        args[n++] = extra[i];
    }
    args[n] = NULL;
    ck_assert_int_eq(ferryd_start(&broker, NULL, args), 0);
    ck_assert_int_gt(broker.mqtt_port, 0);
    snprintf(mqtt_port_s, sizeof(mqtt_port_s), "%d", broker.mqtt_port);
}

/* ---- running the clients ------------------------------------------------ */

struct proc {
    pid_t pid;
    int fds[3];
};

static void spawn(struct proc *p, const char *path, const char *const *args)
{
    p->pid = cli_spawn(path, NULL, args, NULL, p->fds);
    ck_assert_int_gt(p->pid, 0);
    close(p->fds[0]);
}

/* Read fd to its end (or until the timeout): NUL-terminated in buf. */
static size_t read_all(int fd, char *buf, size_t cap, int timeout_ms)
{
    size_t len = 0;
    long long end = e2e_ms_now() + timeout_ms;
    while (len + 1 < cap) {
        long long left = end - e2e_ms_now();
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) {
            break;
        }
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r <= 0) {
            break;
        }
        len += (size_t)r;
    }
    buf[len] = '\0';
    return len;
}

/* Wait for the exit (killed after timeout_ms); its status, or -1 when it
 * had to be killed. out (may be NULL): its stdout. */
static int finish(struct proc *p, char *out, size_t cap, int timeout_ms)
{
    char sink[4096];
    read_all(p->fds[1], out ? out : sink, out ? cap : sizeof(sink), timeout_ms);
    char err[4096];
    read_all(p->fds[2], err, sizeof(err), 100);
    if (err[0] != '\0') {
        fprintf(stderr, "(client stderr) %s", err);
    }
    int st = 0;
    long long end = e2e_ms_now() + timeout_ms;
    pid_t w;
    while ((w = waitpid(p->pid, &st, WNOHANG)) == 0 && e2e_ms_now() < end) {
        struct pollfd none;
        poll(&none, 0, 10); /* polling an exit: there is no descriptor for it */
    }
    if (w == 0) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, &st, 0);
        st = -1;
    } else {
        st = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    close(p->fds[1]);
    close(p->fds[2]);
    return st;
}

static int run(const char *path, const char *const *args, char *out, size_t cap)
{
    struct proc p;
    spawn(&p, path, args);
    return finish(&p, out, cap, T_WAIT);
}

/* Wait until the broker counts n subscriptions in all. */
static void wait_subs(struct rawc *admin, uint64_t n)
{
    long long end = e2e_ms_now() + T_WAIT;
    uint64_t id = 1000;
    for (;;) {
        Ferry__Stats s = stats_get(admin, id++);
        if (s.subscriptions >= n) {
            return;
        }
        ck_assert_msg(e2e_ms_now() < end, "%llu subscriptions, waited for %llu",
                      (unsigned long long)s.subscriptions, (unsigned long long)n);
        ck_assert_int_eq(rawc_ping(admin, id, T_WAIT), 0); /* a round trip between looks */
    }
}

/* ---- a raw MQTT client --------------------------------------------------- */

static int mq_open(void)
{
    return mqe_open(broker.mqtt_port);
}

/* Exactly n bytes, or fail. */
static void mq_recv(int fd, uint8_t *b, size_t n)
{
    ck_assert_msg(mqe_read_until(fd, b, n, e2e_ms_now() + T_WAIT) == 0,
                  "no answer in time, or closed");
}

/* CONNECT (3.1.1, clean session) with a user and password unless NULL,
 * and a will (QoS 0) unless will_topic is NULL. */
static void mq_connect_will(int fd, const char *user, const char *pass, uint16_t keepalive,
                            const char *will_topic, const char *will_msg)
{
    mqe_connect(fd, "e2e93", user, pass, keepalive, will_topic, will_msg);
}

static void mq_connect(int fd, const char *user, const char *pass, uint16_t keepalive)
{
    mq_connect_will(fd, user, pass, keepalive, NULL, NULL);
}

static uint8_t mq_connack(int fd)
{
    uint8_t b[4];
    mq_recv(fd, b, 4);
    ck_assert_uint_eq(b[0], 0x20);
    ck_assert_uint_eq(b[1], 2);
    ck_assert_uint_eq(b[2], 0); /* no session kept */
    return b[3];
}

/* PUBLISH topic (short) at qos with packet id pid. */
static void mq_publish(int fd, const char *topic, const char *msg, uint8_t qos, uint16_t pid)
{
    uint8_t b[256];
    size_t tl = strlen(topic), ml = strlen(msg), k = 2;
    b[0] = (uint8_t)(0x30 | qos << 1);
    b[k++] = 0;
    b[k++] = (uint8_t)tl;
    memcpy(b + k, topic, tl);
    k += tl;
    if (qos) {
        b[k++] = (uint8_t)(pid >> 8);
        b[k++] = (uint8_t)pid;
    }
    memcpy(b + k, msg, ml);
    k += ml;
    b[1] = (uint8_t)(k - 2);
    mqe_send(fd, b, k);
}

/* ---- the cases ----------------------------------------------------------- */

/* mosquitto_pub -> ferry subscriber: QoS 1 acked (mosquitto_pub exits 0
 * only after the PUBACK), the topic mapped, QoS 0 marked by a header. */
START_TEST(test_mqtt_mosquitto_pub_to_ferry_sub)
{
    const char *pub = tool("mosquitto_pub");
    up(NULL);
    struct rawc c;
    CONNECT(&c, broker.port);
    ck_assert_int_eq(rawc_subscribe(&c, 1, "m.>", NULL), 0);
    const char *const q1[] = {"-h", "127.0.0.1", "-p", mqtt_port_s, "-q", "1",
                              "-t", "m/x/y",     "-m", "hello",     NULL};
    ck_assert_int_eq(run(pub, q1, NULL, 0), 0);
    Ferry__Deliver *d = recv_deliver(&c);
    ck_assert_str_eq(d->topic, "m.x.y");
    ck_assert_uint_eq(d->payload.len, 5);
    ck_assert(memcmp(d->payload.data, "hello", 5) == 0);
    ck_assert_uint_gt(d->sequence, 0); /* stored before the PUBACK */
    ck_assert_uint_eq(d->n_headers, 0);
    const char *const q0[] = {"-h", "127.0.0.1", "-p", mqtt_port_s, "-t", "m/z", "-m", "", NULL};
    ck_assert_int_eq(run(pub, q0, NULL, 0), 0);
    d = recv_deliver(&c);
    ck_assert_str_eq(d->topic, "m.z");
    ck_assert_uint_eq(d->payload.len, 0);
    ck_assert_uint_eq(d->n_headers, 1);
    ck_assert_str_eq(d->headers[0]->key, "mqtt-qos");
    ck_assert_str_eq(d->headers[0]->value, "0");
    rawc_close(&c);
    STOP(&broker);
}
END_TEST

/* ferry publisher -> mosquitto_sub, with both wildcards: + is one level,
 * a/# matches a itself, a message matching two filters comes once, and a
 * filter starting with a wildcard does not match a $ topic. */
START_TEST(test_mqtt_ferry_pub_to_mosquitto_sub_wildcards)
{
    const char *sub = tool("mosquitto_sub");
    up(NULL);
    struct rawc c;
    CONNECT(&c, broker.port);
    struct proc p;
    const char *const args[] = {"-h", "127.0.0.1", "-p",    mqtt_port_s, "-q",  "1",  "-v",  "-C",
                                "5",  "-t",        "f/+/t", "-t",        "f/#", "-t", "+/z", NULL};
    spawn(&p, sub, args);
    wait_subs(&c, 4); /* f.*.t, f.>, f and *.z */
    const char *topics[] = {"f.a.t", "g.a.t", "f", "$s.z", "f.a.b.t", "f.b", "h.z"};
    for (size_t i = 0; i < 7; i++) {
        ck_assert_int_eq(rawc_publish(&c, i + 1, topics[i], topics[i], strlen(topics[i]), 1), 0);
        Ferry__Frame *f;
        ck_assert_int_eq(rawc_recv_kind(&c, T_WAIT, FERRY__FRAME__BODY_PUB_ACK, &f, NULL), 0);
    }
    char out[1024];
    ck_assert_int_eq(finish(&p, out, sizeof(out), T_WAIT), 0);
    /* Five lines (-C 5), in the order of the topics' commits: compare as
     * a set, each once. ($s.z: +/z does not match a $ topic, 4.7.2.) */
    const char *want[] = {"f/a/t f.a.t\n", "f f\n", "f/a/b/t f.a.b.t\n", "f/b f.b\n", "h/z h.z\n"};
    size_t total = 0;
    for (size_t i = 0; i < 5; i++) {
        char *at = strstr(out, want[i]);
        ck_assert_msg(at != NULL, "missing %s in:\n%s", want[i], out);
        ck_assert_msg(strstr(at + 1, want[i]) == NULL, "twice: %s", want[i]);
        total += strlen(want[i]);
    }
    ck_assert_uint_eq(strlen(out), total); /* nothing else (g/a/t, $s/z) */
    rawc_close(&c);
    STOP(&broker);
}
END_TEST

/* Paho: SUBACK grants (QoS 2 as 1, an unmappable filter 0x80), deliveries
 * at the lower of the publisher's and the granted QoS, PUBACKs for QoS 1,
 * PUBREC/PUBCOMP for QoS 2, UNSUBSCRIBE. */
static const char paho_script[] =
    "import sys, threading, paho.mqtt.client as mqtt\n"
    "port = int(sys.argv[1])\n"
    "got = []; ev = threading.Event(); subd = threading.Event(); granted = []\n"
    "def on_subscribe(c, u, mid, q):\n"
    "    granted.extend(q); subd.set()\n"
    "def on_message(c, u, m):\n"
    "    got.append((m.topic, m.qos, m.payload.decode()))\n"
    "    if len(got) == 4: ev.set()\n"
    "c = mqtt.Client(client_id='paho93', protocol=mqtt.MQTTv311)\n"
    "c.on_subscribe = on_subscribe; c.on_message = on_message\n"
    "c.connect('127.0.0.1', port, 30)\n"
    "c.loop_start()\n"
    "c.subscribe([('q/a', 2), ('q/b', 0), ('bad//x', 1)])\n"
    "assert subd.wait(10), 'no SUBACK'\n"
    "assert granted == [1, 0, 128], granted\n"
    "for t, q, m in [('q/a', 1, 'a1'), ('q/a', 0, 'a0'), ('q/b', 1, 'b1'), ('q/a', 2, 'a2')]:\n"
    "    i = c.publish(t, m, qos=q); i.wait_for_publish(10)\n"
    "    assert i.is_published(), (t, q)\n"
    "assert ev.wait(10), got\n"
    "got.sort()\n"
    "assert got == [('q/a', 0, 'a0'), ('q/a', 1, 'a1'), ('q/a', 1, 'a2'), ('q/b', 0, 'b1')], got\n"
    "r, mid = c.unsubscribe('q/a'); assert r == 0\n"
    "c.disconnect(); c.loop_stop()\n"
    "print('OK')\n";

/* Retained messages with Paho: the newest per topic, an empty one clears,
 * a new subscription gets them after its SUBACK with the RETAIN flag (x/#
 * includes x), a live delivery has the flag clear. */
static const char paho_retained[] =
    "import sys, threading, paho.mqtt.client as mqtt\n"
    "port = int(sys.argv[1])\n"
    "p = mqtt.Client(client_id='pub93', protocol=mqtt.MQTTv311)\n"
    "p.connect('127.0.0.1', port, 30); p.loop_start()\n"
    "for t, m, q in [('r/a', 'old', 1), ('r/a', 'ra', 1), ('r/b/c', 'rbc', 0), ('r/gone', 'x', "
    "1),\n"
    "                ('r/gone', '', 1), ('r', 'root', 1), ('other', 'o', 1)]:\n"
    "    i = p.publish(t, m, qos=q, retain=True); i.wait_for_publish(10)\n"
    "    assert i.is_published(), t\n"
    "got = []; ev = threading.Event(); three = threading.Event()\n"
    "def on_message(c, u, m):\n"
    "    got.append((m.topic, m.qos, int(m.retain), m.payload.decode()))\n"
    "    if len(got) == 3: three.set()\n"
    "    if len(got) == 4: ev.set()\n"
    "s = mqtt.Client(client_id='sub93', protocol=mqtt.MQTTv311)\n"
    "s.on_message = on_message\n"
    "s.connect('127.0.0.1', port, 30); s.loop_start()\n"
    "s.subscribe('r/#', 1)\n"
    "assert three.wait(10), got\n"
    "i = p.publish('r/m', 'live', qos=1, retain=True); i.wait_for_publish(10)\n"
    "assert ev.wait(10), got\n"
    "want = sorted([('r/a', 1, 1, 'ra'), ('r/b/c', 0, 1, 'rbc'), ('r', 1, 1, 'root')])\n"
    "assert sorted(got[:3]) == want, got\n"
    "assert got[3] == ('r/m', 1, 0, 'live'), got\n"
    "s.disconnect(); p.disconnect(); s.loop_stop(); p.loop_stop()\n"
    "print('OK')\n";

START_TEST(test_mqtt_paho_retained)
{
    const char *py = paho_python();
    up(NULL);
    const char *const args[] = {"-c", paho_retained, mqtt_port_s, NULL};
    char out[512];
    ck_assert_int_eq(run(py, args, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "OK\n");
    STOP(&broker);
}
END_TEST

START_TEST(test_mqtt_paho_qos_grants_and_acks)
{
    const char *py = paho_python();
    up(NULL);
    const char *const args[] = {"-c", paho_script, mqtt_port_s, NULL};
    char out[256];
    ck_assert_int_eq(run(py, args, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "OK\n");
    STOP(&broker);
}
END_TEST

/* The auth file decides: CONNACK 0x04 for a wrong password, 0x05 without
 * credentials, 0 for the right one; its rights apply (SUBACK 0x80, and a
 * PUBLISH it refuses closes the connection, with no PUBACK). */
START_TEST(test_mqtt_auth_and_acl_refusals)
{
    const char *pub = tool("mosquitto_pub");
    struct e2e_auth_dir ad;
    e2e_auth_dir_make(&ad, "mqtt");
    char *h = e2e_hash("secret", "$6$", 1000);
    FILE *fp = fopen(ad.path, "w");
    ck_assert_ptr_nonnull(fp);
    fprintf(fp, "user alice %s\nallow alice publish ok.>\nallow alice subscribe ok.>\n", h);
    fclose(fp);
    free(h);
    const char *const extra[] = {"--auth-file", ad.path, NULL};
    up(extra);

    int fd = mq_open();
    mq_connect(fd, "alice", "wrong", 0);
    ck_assert_uint_eq(mq_connack(fd), 0x04);
    ck_assert(mqe_closed(fd, T_WAIT));
    close(fd);
    fd = mq_open();
    mq_connect(fd, NULL, NULL, 0);
    ck_assert_uint_eq(mq_connack(fd), 0x05);
    ck_assert(mqe_closed(fd, T_WAIT));
    close(fd);
    const char *const bad[] = {"-h",   "127.0.0.1", "-p",   mqtt_port_s, "-u", "alice", "-P",
                               "nope", "-t",        "ok/x", "-m",        "x",  NULL};
    ck_assert_int_ne(run(pub, bad, NULL, 0), 0);

    fd = mq_open();
    mq_connect(fd, "alice", "secret", 0);
    ck_assert_uint_eq(mq_connack(fd), 0);
    const uint8_t sub2[] = {0x82, 16, 0, 9, 0,   4,   'n', 'o', '/',
                            '#',  1,  0, 4, 'o', 'k', '/', 's', 1};
    mqe_send(fd, sub2, sizeof(sub2));
    uint8_t b[6];
    mq_recv(fd, b, 6);
    const uint8_t suback[] = {0x90, 4, 0, 9, 0x80, 1};
    ck_assert(memcmp(b, suback, 6) == 0);
    mq_publish(fd, "ok/x", "fine", 1, 7);
    mq_recv(fd, b, 4);
    const uint8_t puback[] = {0x40, 2, 0, 7};
    ck_assert(memcmp(b, puback, 4) == 0);
    mq_publish(fd, "no/x", "denied", 1, 8);
    ck_assert(mqe_closed(fd, T_WAIT)); /* closed, and no PUBACK for 8 came before */
    close(fd);
    STOP(&broker);
    e2e_auth_dir_remove(&ad);
}
END_TEST

/* What no client should send: each is closed, and nothing is allocated
 * for a declared length above the limit (the close comes without the
 * body). */
START_TEST(test_mqtt_malformed_packets_close)
{
    up(NULL);
    /* Not CONNECT first. */
    int fd = mq_open();
    const uint8_t ping[] = {0xc0, 0};
    mqe_send(fd, ping, sizeof(ping));
    ck_assert(mqe_closed(fd, T_WAIT));
    close(fd);
    /* A remaining length with a fifth byte. */
    fd = mq_open();
    const uint8_t five[] = {0x10, 0xff, 0xff, 0xff, 0xff, 0x01};
    mqe_send(fd, five, sizeof(five));
    ck_assert(mqe_closed(fd, T_WAIT));
    close(fd);
    /* 200 MB declared before CONNECT is through: closed at once. */
    fd = mq_open();
    const uint8_t big[] = {0x10, 0x80, 0xa8, 0xae, 0x5f};
    mqe_send(fd, big, sizeof(big));
    ck_assert(mqe_closed(fd, T_WAIT));
    close(fd);
    /* CONNECT with the reserved flag bit of the fixed header. */
    fd = mq_open();
    const uint8_t flags[] = {0x11, 0};
    mqe_send(fd, flags, sizeof(flags));
    ck_assert(mqe_closed(fd, T_WAIT));
    close(fd);
    /* Protocol level 5: CONNACK 0x01, then closed. */
    fd = mq_open();
    const uint8_t v5[] = {0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 0, 0, 1, 'x'};
    mqe_send(fd, v5, sizeof(v5));
    uint8_t b[4];
    mq_recv(fd, b, 4);
    ck_assert_uint_eq(b[3], 0x01);
    ck_assert(mqe_closed(fd, T_WAIT));
    close(fd);
    /* After CONNECT: a PUBLISH whose topic cannot map (a '.' in a level),
     * and a second CONNECT. */
    fd = mq_open();
    mq_connect(fd, NULL, NULL, 0);
    ck_assert_uint_eq(mq_connack(fd), 0);
    mq_publish(fd, "a/b.c", "x", 0, 0);
    ck_assert(mqe_closed(fd, T_WAIT));
    close(fd);
    fd = mq_open();
    mq_connect(fd, NULL, NULL, 0);
    ck_assert_uint_eq(mq_connack(fd), 0);
    mq_connect(fd, NULL, NULL, 0);
    ck_assert(mqe_closed(fd, T_WAIT));
    close(fd);
    /* The broker is still fine. */
    fd = mq_open();
    mq_connect(fd, NULL, NULL, 0);
    ck_assert_uint_eq(mq_connack(fd), 0);
    close(fd);
    STOP(&broker);
}
END_TEST

/* PINGREQ is answered; a client silent for 1.5 x its keepalive is closed,
 * not before. */
START_TEST(test_mqtt_keepalive_ping_and_silence)
{
    up(NULL);
    int fd = mq_open();
    mq_connect(fd, NULL, NULL, 1);
    ck_assert_uint_eq(mq_connack(fd), 0);
    const uint8_t ping[] = {0xc0, 0};
    mqe_send(fd, ping, sizeof(ping));
    uint8_t b[2];
    mq_recv(fd, b, 2);
    ck_assert_uint_eq(b[0], 0xd0);
    ck_assert_uint_eq(b[1], 0);
    long long t0 = e2e_ms_now();
    ck_assert(mqe_closed(fd, T_WAIT));
    long long waited = e2e_ms_now() - t0;
    ck_assert_msg(waited >= 1400, "closed after %lld ms of silence (keepalive 1 s)", waited);
    close(fd);
    /* keepalive 0: no timer at all; DISCONNECT closes. */
    fd = mq_open();
    mq_connect(fd, NULL, NULL, 0);
    ck_assert_uint_eq(mq_connack(fd), 0);
    ck_assert(!mqe_closed(fd, 1600));
    const uint8_t disc[] = {0xe0, 0};
    mqe_send(fd, disc, sizeof(disc));
    ck_assert(mqe_closed(fd, T_WAIT));
    close(fd);
    STOP(&broker);
}
END_TEST

/* The next Deliver, skipping PubAcks. */
static Ferry__Deliver *next_deliver(struct rawc *c)
{
    Ferry__Frame *f;
    ck_assert_int_eq(rawc_recv_kind(c, T_WAIT, FERRY__FRAME__BODY_DELIVER, &f, NULL), 0);
    return f->deliver;
}

/* A slow MQTT subscriber of a stored topic: past half its outbound bound
 * it reads the topic's log instead of taking live deliveries (catchup.c),
 * then comes back to live ones; it gets every message once, in order. */
START_TEST(test_mqtt_lagging_subscriber_gets_everything_in_order)
{
    const char *const extra[] = {"--max-outbound-bytes", "256k", NULL};
    up(extra);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    int small = 4096; /* the kernel must not absorb the backlog */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)broker.mqtt_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    mq_connect(fd, NULL, NULL, 0);
    ck_assert_uint_eq(mq_connack(fd), 0);
    const uint8_t sub[] = {0x82, 10, 0, 1, 0, 5, 'l', 'a', 'g', '/', 't', 0};
    mqe_send(fd, sub, sizeof(sub));
    uint8_t b[1100];
    mq_recv(fd, b, 5);
    const uint8_t suback[] = {0x90, 3, 0, 1, 0};
    ck_assert(memcmp(b, suback, 5) == 0);
    struct rawc c;
    CONNECT(&c, broker.port);
    enum { N = 10000, LEN = 1000 };
    char msg[LEN];
    memset(msg, 'x', sizeof(msg));
    for (int i = 0; i < N; i++) {
        snprintf(msg, 12, "%010d", i);
        ck_assert_int_eq(rawc_publish(&c, (uint64_t)i + 1, "lag.t", msg, LEN, i == N - 1), 0);
    }
    Ferry__Frame *f;
    ck_assert_int_eq(rawc_recv_kind(&c, T_WAIT, FERRY__FRAME__BODY_PUB_ACK, &f, NULL), 0);
    ck_assert_uint_eq(f->pub_ack->sequence, N);
    /* QoS 0 PUBLISH: 0x30, remaining length 2 + 5 + LEN (2 bytes), topic. */
    for (int i = 0; i < N; i++) {
        mq_recv(fd, b, 3 + 2 + 5 + LEN);
        ck_assert_uint_eq(b[0], 0x30);
        ck_assert(memcmp(b + 5, "lag/t", 5) == 0);
        char want[12];
        snprintf(want, sizeof(want), "%010d", i);
        ck_assert_msg(memcmp(b + 10, want, 10) == 0, "message %d: got %.10s", i, b + 10);
    }
    close(fd);
    rawc_close(&c);
    STOP(&broker);
}
END_TEST

/* Small PUBLISHes are copied into the connection's buffer, large ones
 * written from the routed batch (MQTT_STAGE_MIN): interleaved, at QoS 0
 * and 1, they arrive whole and in order. */
START_TEST(test_mqtt_mixed_sizes_keep_their_order)
{
    up(NULL);
    int fd = mq_open();
    mq_connect(fd, NULL, NULL, 0);
    ck_assert_uint_eq(mq_connack(fd), 0);
    const uint8_t sub[] = {0x82, 10, 0, 1, 0, 5, 'm', 'i', 'x', '/', 't', 1};
    mqe_send(fd, sub, sizeof(sub));
    uint8_t b[8192];
    mq_recv(fd, b, 5);
    const uint8_t suback[] = {0x90, 3, 0, 1, 1};
    ck_assert(memcmp(b, suback, 5) == 0);
    struct rawc c;
    CONNECT(&c, broker.port);
    enum { N = 600 };
    static char msg[5000];
    for (int i = 0; i < N; i++) {
        size_t len = i % 3 == 0 ? 5000 : i % 3 == 1 ? 12 : 700;
        memset(msg, 'a' + i % 26, len);
        snprintf(msg, 12, "%010d", i);
        ck_assert_int_eq(rawc_publish(&c, (uint64_t)i + 1, "mix.t", msg, len, i == N - 1), 0);
    }
    Ferry__Frame *f;
    ck_assert_int_eq(rawc_recv_kind(&c, T_WAIT, FERRY__FRAME__BODY_PUB_ACK, &f, NULL), 0);
    for (int i = 0; i < N; i++) {
        size_t len = i % 3 == 0 ? 5000 : i % 3 == 1 ? 12 : 700;
        /* QoS 1: first byte, remaining length, topic, packet id */
        mq_recv(fd, b, 1);
        ck_assert_uint_eq(b[0] & 0xf6, 0x32);
        uint32_t rem = 0, mult = 1;
        do {
            mq_recv(fd, b, 1);
            rem += (b[0] & 127u) * mult;
            mult *= 128;
        } while (b[0] & 128);
        ck_assert_uint_eq(rem, 2 + 5 + 2 + len);
        mq_recv(fd, b, rem);
        ck_assert(memcmp(b + 2, "mix/t", 5) == 0);
        char want[12];
        snprintf(want, sizeof(want), "%010d", i);
        ck_assert_msg(memcmp(b + 9, want, 10) == 0, "message %d: got %.10s", i, b + 9);
        ck_assert_uint_eq(b[9 + len - 1], (uint8_t)('a' + i % 26));
        uint8_t ack[4] = {0x40, 2, b[7], b[8]};
        mqe_send(fd, ack, sizeof(ack));
    }
    close(fd);
    rawc_close(&c);
    STOP(&broker);
}
END_TEST

/* MQTT over TLS (--mqtt-tls-listen, the TLS listener's certificate):
 * mosquitto_sub and mosquitto_pub verify it against the test CA. */
START_TEST(test_mqtt_over_tls_with_mosquitto)
{
#ifdef E2E_MQTT_TLS
    const char *sub = tool("mosquitto_sub");
    const char *pub = tool("mosquitto_pub");
    struct tls_certs certs;
    ck_assert_int_eq(tls_certs_make(&certs), 0);
    char cert[256], key[256], ca[256];
    tls_certs_path(&certs, "server.pem", cert, sizeof(cert));
    tls_certs_path(&certs, "server.key", key, sizeof(key));
    tls_certs_path(&certs, "ca.pem", ca, sizeof(ca));
    const char *const extra[] = {"--mqtt-tls-listen", "127.0.0.1:0", "--tls-cert", cert,
                                 "--tls-key",         key,           NULL};
    up(extra);
    ck_assert_int_gt(broker.mqtt_tls_port, 0);
    char tport[16];
    snprintf(tport, sizeof(tport), "%d", broker.mqtt_tls_port);
    struct rawc c;
    CONNECT(&c, broker.port);
    struct proc p;
    const char *const sargs[] = {"-h", "127.0.0.1", "-p", tport, "--cafile", ca,    "-q",
                                 "1",  "-v",        "-C", "1",   "-t",       "s/#", NULL};
    spawn(&p, sub, sargs);
    wait_subs(&c, 2); /* s.> and s */
    ck_assert_int_eq(rawc_publish(&c, 1, "s.x", "secure", 6, 0), 0);
    char out[256];
    ck_assert_int_eq(finish(&p, out, sizeof(out), T_WAIT), 0);
    ck_assert_str_eq(out, "s/x secure\n");
    ck_assert_int_eq(rawc_subscribe(&c, 9, "t.>", NULL), 0);
    const char *const pargs[] = {"-h", "127.0.0.1", "-p",  tport, "--cafile", ca,  "-q",
                                 "1",  "-t",        "t/y", "-m",  "over tls", NULL};
    ck_assert_int_eq(run(pub, pargs, NULL, 0), 0);
    Ferry__Deliver *d = recv_deliver(&c);
    ck_assert_str_eq(d->topic, "t.y");
    ck_assert_uint_eq(d->payload.len, 8);
    /* A plain MQTT client on the TLS port is closed. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)broker.mqtt_tls_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    mq_connect(fd, NULL, NULL, 0);
    ck_assert(mqe_closed(fd, T_WAIT));
    close(fd);
    rawc_close(&c);
    STOP(&broker);
    tls_certs_remove(&certs);
#else
    exit(77); /* built without OpenSSL */
#endif
}
END_TEST

/* A PUBLISH then a SUBSCRIBE to its topic, in one write: the new
 * subscription does not get the message sent before it (the SUBSCRIBE
 * waits for the commit, as ferry's Subscribe does). */
START_TEST(test_mqtt_subscribe_after_own_publish_misses_it)
{
    up(NULL);
    int fd = mq_open();
    mq_connect(fd, NULL, NULL, 0);
    ck_assert_uint_eq(mq_connack(fd), 0);
    const uint8_t both[] = {0x30, 11, 0, 5, 'o', 'w', 'n', '/', 't', 'm', 'i', 'n', 'e', /* */
                            0x82, 10, 0, 1, 0,   5,   'o', 'w', 'n', '/', 't', 0};
    mqe_send(fd, both, sizeof(both));
    uint8_t b[64];
    mq_recv(fd, b, 5);
    const uint8_t suback[] = {0x90, 3, 0, 1, 0};
    ck_assert(memcmp(b, suback, 5) == 0);
    struct rawc c;
    CONNECT(&c, broker.port);
    ck_assert_int_eq(rawc_publish(&c, 1, "own.t", "marker", 6, 1), 0);
    Ferry__Frame *f;
    ck_assert_int_eq(rawc_recv_kind(&c, T_WAIT, FERRY__FRAME__BODY_PUB_ACK, &f, NULL), 0);
    ck_assert_uint_eq(f->pub_ack->sequence, 2); /* "mine" is 1 */
    mq_recv(fd, b, 2 + 2 + 5 + 6);
    ck_assert_uint_eq(b[0], 0x30);
    ck_assert_msg(memcmp(b + 9, "marker", 6) == 0, "got %.6s", b + 9);
    close(fd);
    rawc_close(&c);
    STOP(&broker);
}
END_TEST

/* PUBACK means stored: 400 QoS 1 PUBLISHes pipelined, ferryd killed (-9)
 * once 100 are acknowledged; after a restart every acknowledged message
 * is there (replayed from the log, sequences without a gap). */
START_TEST(test_mqtt_qos1_acked_survive_kill9)
{
    up(NULL);
    int fd = mq_open();
    mq_connect(fd, NULL, NULL, 0);
    ck_assert_uint_eq(mq_connack(fd), 0);
    enum { N = 400 };
    static uint8_t acked[N + 1], seen[N + 1];
    memset(acked, 0, sizeof(acked));
    memset(seen, 0, sizeof(seen));
    char msg[16];
    for (int i = 1; i <= N; i++) {
        snprintf(msg, sizeof(msg), "m%05d", i);
        mq_publish(fd, "dur/t", msg, 1, (uint16_t)i);
    }
    uint8_t b[4];
    int n_acked = 0;
    while (n_acked < 100) {
        mq_recv(fd, b, 4);
        ck_assert_uint_eq(b[0], 0x40);
        int pid = b[2] << 8 | b[3];
        ck_assert(pid >= 1 && pid <= N && !acked[pid]);
        acked[pid] = 1;
        n_acked++;
    }
    ck_assert_int_eq(ferryd_kill9(&broker), 0);
    /* PUBACKs that reached us before the kill count too. */
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 0) != 1 || read(fd, b, 1) != 1 || b[0] != 0x40) {
            break;
        }
        if (read(fd, b + 1, 3) != 3) {
            break;
        }
        int pid = b[2] << 8 | b[3];
        ck_assert(pid >= 1 && pid <= N && !acked[pid]);
        acked[pid] = 1;
        n_acked++;
    }
    close(fd);
    ck_assert_int_eq(ferryd_restart(&broker, NULL), 0);
    struct rawc c;
    CONNECT(&c, broker.port);
    Ferry__Subscribe sm = FERRY__SUBSCRIBE__INIT;
    sm.sub_id = 1;
    sm.pattern = (char *)"dur.t";
    sm.start = FERRY__START_POSITION__START_ALL;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_SUBSCRIBE;
    f.subscribe = &sm;
    ck_assert_int_eq(rawc_send(&c, &f), 0);
    Ferry__Frame *r;
    ck_assert_int_eq(rawc_recv_kind(&c, T_WAIT, FERRY__FRAME__BODY_SUB_ACK, &r, NULL), 0);
    ck_assert_int_eq(r->sub_ack->code, 0);
    int n_seen = 0;
    uint64_t seq = 0;
    while (n_seen < n_acked) {
        Ferry__Deliver *d = recv_deliver(&c);
        ck_assert_uint_eq(d->sequence, ++seq);
        ck_assert_uint_eq(d->payload.len, 6);
        char num[8];
        memcpy(num, d->payload.data + 1, 5);
        num[5] = '\0';
        int i = atoi(num);
        ck_assert(i >= 1 && i <= N && !seen[i]);
        seen[i] = 1;
        n_seen += acked[i];
    }
    rawc_close(&c);
    STOP(&broker);
}
END_TEST

/* Wait until the broker has n connections open. */
static void wait_conns(struct rawc *admin, uint64_t n)
{
    long long end = e2e_ms_now() + T_WAIT;
    uint64_t id = 2000;
    for (;;) {
        Ferry__Stats s = stats_get(admin, id++);
        if (s.connections == n) {
            return;
        }
        ck_assert_msg(e2e_ms_now() < end, "%llu connections, waited for %llu",
                      (unsigned long long)s.connections, (unsigned long long)n);
        ck_assert_int_eq(rawc_ping(admin, id, T_WAIT), 0);
    }
}

/* The will: published when a client vanishes without DISCONNECT, not
 * after a DISCONNECT. */
START_TEST(test_mqtt_will_on_lost_connection_only)
{
    up(NULL);
    struct rawc c;
    CONNECT(&c, broker.port);
    ck_assert_int_eq(rawc_subscribe(&c, 1, "w.>", NULL), 0);
    /* A DISCONNECT first: its will must never come. */
    int fd = mq_open();
    mq_connect_will(fd, NULL, NULL, 0, "w/t", "wrong");
    ck_assert_uint_eq(mq_connack(fd), 0);
    const uint8_t disc[] = {0xe0, 0};
    mqe_send(fd, disc, sizeof(disc));
    ck_assert(mqe_closed(fd, T_WAIT));
    close(fd);
    wait_conns(&c, 1);
    ck_assert_int_eq(rawc_publish(&c, 1, "w.t", "marker", 6, 1), 0);
    Ferry__Deliver *d = next_deliver(&c);
    ck_assert_str_eq(d->topic, "w.t");
    ck_assert_uint_eq(d->sequence, 1); /* nothing before it on w.t */
    ck_assert(memcmp(d->payload.data, "marker", 6) == 0);
    /* Gone without a word: its will is published. */
    fd = mq_open();
    mq_connect_will(fd, NULL, NULL, 0, "w/gone", "bye");
    ck_assert_uint_eq(mq_connack(fd), 0);
    close(fd);
    for (;;) {
        d = next_deliver(&c);
        if (strcmp(d->topic, "w.gone") == 0) {
            break;
        }
    }
    ck_assert_uint_eq(d->payload.len, 3);
    ck_assert(memcmp(d->payload.data, "bye", 3) == 0);
    rawc_close(&c);
    STOP(&broker);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("e2e_mqtt");
    TCase *tc;
    tc = tcase_create("mosquitto_pub_to_ferry_sub");
    tcase_add_test(tc, test_mqtt_mosquitto_pub_to_ferry_sub);
    suite_add_tcase(s, tc);
    tc = tcase_create("ferry_pub_to_mosquitto_sub");
    tcase_add_test(tc, test_mqtt_ferry_pub_to_mosquitto_sub_wildcards);
    suite_add_tcase(s, tc);
    tc = tcase_create("paho_qos");
    tcase_add_test(tc, test_mqtt_paho_qos_grants_and_acks);
    suite_add_tcase(s, tc);
    tc = tcase_create("paho_retained");
    tcase_add_test(tc, test_mqtt_paho_retained);
    suite_add_tcase(s, tc);
    tc = tcase_create("auth_acl");
    tcase_add_test(tc, test_mqtt_auth_and_acl_refusals);
    suite_add_tcase(s, tc);
    tc = tcase_create("malformed");
    tcase_add_test(tc, test_mqtt_malformed_packets_close);
    suite_add_tcase(s, tc);
    tc = tcase_create("lagging_subscriber");
    tcase_add_test(tc, test_mqtt_lagging_subscriber_gets_everything_in_order);
    suite_add_tcase(s, tc);
    tc = tcase_create("mixed_sizes");
    tcase_add_test(tc, test_mqtt_mixed_sizes_keep_their_order);
    suite_add_tcase(s, tc);
    tc = tcase_create("tls");
    tcase_add_test(tc, test_mqtt_over_tls_with_mosquitto);
    suite_add_tcase(s, tc);
    tc = tcase_create("subscribe_after_publish");
    tcase_add_test(tc, test_mqtt_subscribe_after_own_publish_misses_it);
    suite_add_tcase(s, tc);
    tc = tcase_create("qos1_kill9");
    tcase_add_test(tc, test_mqtt_qos1_acked_survive_kill9);
    suite_add_tcase(s, tc);
    tc = tcase_create("will");
    tcase_add_test(tc, test_mqtt_will_on_lost_connection_only);
    suite_add_tcase(s, tc);
    tc = tcase_create("keepalive");
    tcase_add_test(tc, test_mqtt_keepalive_ping_and_silence);
    suite_add_tcase(s, tc);
    return s;
}

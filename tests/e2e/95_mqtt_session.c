/*
 * 95_mqtt_session.c - MQTT persistent sessions (clean session 0) and
 * retained messages kept in the store, end to end (issue 17;
 * broker/mqtt_session.c, mqtt_retain_store.c): a real ferryd with
 * --mqtt-listen, MQTT clients written with raw sockets in python3 (a phase
 * per run: the client must leave without PUBACKs and without DISCONNECT,
 * which Paho does not do), retained messages with Paho, ferryd killed with
 * -9 between phases.
 *
 * Skipped (77) without python3 (or paho, for retained messages). No
 * sleeps: between phases the test waits for the broker to count the
 * client's subscriptions gone (so that each phase finds the session at
 * rest, not taken over); "nothing more" is a client's silence of a few
 * hundred ms, the only way to see an absence.
 */
#include "cli_spawn.h"
#include "e2e_util.h"

#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

Suite *test_suite(void);

static struct ferryd_proc broker;
static char port_s[16];

/* The phases (argv: port, phase, client id, ...):
 *   sub ID F1,F2   clean session 0, session present 0, SUBSCRIBE at QoS 1,
 *                  granted 1 each, DISCONNECT; prints OK
 *   pub ID T N     clean session, N QoS 1 PUBLISHes "m000".. to T, all
 *                  PUBACKed; prints OK
 *   drain ID keep|clean N_ACK QUIET_MS
 *                  prints "SP 0|1", then "topic payload dup qos" per
 *                  PUBLISH until QUIET_MS of silence, PUBACKing the first
 *                  N_ACK (-1: all); leaves with DISCONNECT only if it
 *                  acked all. */
static const char phase_py[] =
    "import sys, socket, struct, time\n"
    "port = int(sys.argv[1]); cmd = sys.argv[2]; cid = sys.argv[3].encode()\n"
    "def s16(b): return struct.pack('>H', len(b)) + b\n"
    "def rd(s, n):\n"
    "    b = b''\n"
    "    while len(b) < n:\n"
    "        x = s.recv(n - len(b))\n"
    "        if not x: raise EOFError('closed')\n"
    "        b += x\n"
    "    return b\n"
    "def pkt(s):\n"
    "    h = rd(s, 1)[0]; mult = 1; rl = 0\n"
    "    while True:\n"
    "        b = rd(s, 1)[0]; rl += (b & 127) * mult; mult *= 128\n"
    "        if not b & 128: break\n"
    "    return h, rd(s, rl)\n"
    "def conn(clean, want=0):\n"
    "    s = socket.create_connection(('127.0.0.1', port)); s.settimeout(10)\n"
    "    vh = s16(b'MQTT') + bytes([4, 2 if clean else 0]) + struct.pack('>H', 60) + s16(cid)\n"
    "    s.sendall(bytes([0x10, len(vh)]) + vh)\n"
    "    h, b = pkt(s); assert h == 0x20 and b[1] == want, (h, b)\n"
    "    return s, b[0]\n"
    "def bye(s):\n"
    "    s.sendall(b'\\xe0\\x00')\n"
    "    try:\n"
    "        while s.recv(64): pass\n"
    "    except OSError: pass\n"
    "    s.close()\n"
    "if cmd == 'sub':\n"
    "    s, sp = conn(False); assert sp == 0, sp\n"
    "    fs = sys.argv[4].split(',')\n"
    "    body = struct.pack('>H', 7) + b''.join(s16(f.encode()) + b'\\x01' for f in fs)\n"
    "    s.sendall(bytes([0x82, len(body)]) + body)\n"
    "    h, b = pkt(s); assert h == 0x90 and b == struct.pack('>H', 7) + b'\\x01' * len(fs), (h, "
    "b)\n"
    "    bye(s); print('OK')\n"
    "elif cmd == 'pub':\n"
    "    s, sp = conn(True)\n"
    "    topic = sys.argv[4].encode(); n = int(sys.argv[5])\n"
    "    for i in range(n):\n"
    "        body = s16(topic) + struct.pack('>H', i + 1) + b'm%03d' % i\n"
    "        s.sendall(bytes([0x32, len(body)]) + body)\n"
    "    acked = set()\n"
    "    while len(acked) < n:\n"
    "        h, b = pkt(s); assert h == 0x40, h; acked.add(struct.unpack('>H', b)[0])\n"
    "    bye(s); print('OK')\n"
    "elif cmd == 'drain':\n"
    "    # drain CID N_ACK QUIET_MS: print SP, then 'topic payload dup' lines;\n"
    "    # PUBACK the first N_ACK (-1: all); end at QUIET_MS of silence, without\n"
    "    # DISCONNECT when some were left unacked.\n"
    "    s, sp = conn(sys.argv[4] == 'clean')\n"
    "    n_ack = int(sys.argv[5]); quiet = int(sys.argv[6]) / 1000.0\n"
    "    print('SP', sp); k = 0\n"
    "    s.settimeout(quiet)\n"
    "    while True:\n"
    "        try: h, b = pkt(s)\n"
    "        except socket.timeout: break\n"
    "        assert h & 0xf0 == 0x30, h\n"
    "        tl = struct.unpack('>H', b[:2])[0]; t = b[2:2 + tl]\n"
    "        q = (h >> 1) & 3; pid = struct.unpack('>H', b[2 + tl:4 + tl])[0] if q else 0\n"
    "        print(t.decode(), b[2 + tl + (2 if q else 0):].decode(), (h >> 3) & 1, q)\n"
    "        if q and (n_ack < 0 or k < n_ack):\n"
    "            s.sendall(b'\\x40\\x02' + struct.pack('>H', pid))\n"
    "        k += 1\n"
    "    if n_ack < 0 or k <= n_ack: bye(s)\n"
    "    else: s.close()\n"
    "sys.stdout.flush()\n";

/* Retained messages with Paho (argv: port, set|clear|get [N]): set
 * publishes retained ones (a newer one replaces, an empty one clears),
 * clear clears rt/d, get subscribes rt/# and prints the N retained ones it
 * gets, then checks there is no other before a live message; each prints
 * OK last. */
static const char retained_py[] =
    "import sys, threading, paho.mqtt.client as mqtt\n"
    "port = int(sys.argv[1]); cmd = sys.argv[2]\n"
    "p = mqtt.Client(client_id='ret94', protocol=mqtt.MQTTv311)\n"
    "p.connect('127.0.0.1', port, 30); p.loop_start()\n"
    "def pub(t, m, retain=True):\n"
    "    i = p.publish(t, m, qos=1, retain=retain); i.wait_for_publish(10)\n"
    "    assert i.is_published(), t\n"
    "if cmd == 'set':\n"
    "    for t, m in [('rt/a', 'A1'), ('rt/a', 'A2'), ('rt/b', 'B'), ('rt/c', 'C'), ('rt/c', ''), "
    "('rt/d', 'D')]:\n"
    "        pub(t, m)\n"
    "elif cmd == 'clear':\n"
    "    pub('rt/d', '')\n"
    "else:\n"
    "    got = []; retained = threading.Event(); done = threading.Event()\n"
    "    def on_message(c, u, m):\n"
    "        if m.topic == 'rt/end': done.set(); return\n"
    "        got.append((m.topic, m.payload.decode(), int(m.retain)))\n"
    "        if len(got) == int(sys.argv[3]): retained.set()\n"
    "    s = mqtt.Client(client_id='get94', protocol=mqtt.MQTTv311)\n"
    "    s.on_message = on_message; s.connect('127.0.0.1', port, 30); s.loop_start()\n"
    "    s.subscribe('rt/#', 1)\n"
    "    assert retained.wait(10), got\n"
    "    pub('rt/end', 'x', retain=False)\n"
    "    assert done.wait(10), got\n"
    "    print(sorted(got)); s.disconnect(); s.loop_stop()\n"
    "p.disconnect(); p.loop_stop()\n"
    "print('OK')\n";

static long long ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *python(void)
{
    if (access("/usr/bin/python3", X_OK) != 0) {
        fprintf(stderr, "/usr/bin/python3 not found: skipped\n");
        exit(77);
    }
    return "/usr/bin/python3";
}

static void up(void)
{
    const char *const args[] = {"--mqtt-listen", "127.0.0.1:0", NULL};
    ck_assert_int_eq(ferryd_start(&broker, NULL, args), 0);
    snprintf(port_s, sizeof(port_s), "%d", broker.mqtt_port);
}

static void restart_after_kill9(void)
{
    const char *const args[] = {"--mqtt-listen", "127.0.0.1:0", NULL};
    ck_assert_int_eq(ferryd_kill9(&broker), 0);
    ck_assert_int_eq(ferryd_restart(&broker, args), 0);
    snprintf(port_s, sizeof(port_s), "%d", broker.mqtt_port);
}

/* Read fd to its end (or until the timeout): NUL-terminated in buf. */
static void read_all(int fd, char *buf, size_t cap, int timeout_ms)
{
    size_t len = 0;
    long long end = ms_now() + timeout_ms;
    while (len + 1 < cap) {
        long long left = end - ms_now();
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
}

static void run_py(const char *script, char *out, size_t cap, const char *const *args);

/* Run one phase (args after the port); its stdout in out. Fails unless it
 * exits 0. */
static void phase(char *out, size_t cap, const char *const *args)
{
    run_py(phase_py, out, cap, args);
}

static void run_py(const char *script, char *out, size_t cap, const char *const *args)
{
    const char *argv[12] = {"-c", script, port_s};
    size_t n = 3;
    for (size_t i = 0; args[i] != NULL && n < 11; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    int fds[3];
    pid_t pid = cli_spawn(python(), NULL, argv, NULL, fds);
    ck_assert_int_gt(pid, 0);
    close(fds[0]);
    read_all(fds[1], out, cap, T_WAIT);
    char err[4096];
    read_all(fds[2], err, sizeof(err), 100);
    if (err[0] != '\0') {
        fprintf(stderr, "(phase stderr) %s", err);
    }
    int st = 0;
    long long end = ms_now() + T_WAIT;
    pid_t w;
    while ((w = waitpid(pid, &st, WNOHANG)) == 0 && ms_now() < end) {
        struct pollfd none;
        poll(&none, 0, 10); /* polling an exit: there is no descriptor for it */
    }
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    close(fds[1]);
    close(fds[2]);
    ck_assert_msg(w == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "phase %s failed: %s", args[0],
                  out);
}

/* Wait until the broker counts no subscription (the last client's are
 * gone: its session can be resumed). */
static void wait_no_subs(void)
{
    struct rawc a;
    CONNECT(&a, broker.port);
    long long end = ms_now() + T_WAIT;
    for (uint64_t id = 1;; id++) {
        Ferry__Stats s = stats_get(&a, id);
        if (s.subscriptions == 0) {
            break;
        }
        ck_assert_msg(ms_now() < end, "%llu subscriptions stay",
                      (unsigned long long)s.subscriptions);
        ck_assert_int_eq(rawc_ping(&a, 100000 + id, T_WAIT), 0); /* a round trip between looks */
    }
    rawc_close(&a);
}

static int count_lines(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)) != NULL; p++) {
        n++;
    }
    return n;
}

/* Subscribed with clean session 0, away while messages are published: on
 * reconnect session present 1 and every one of them, for a wildcard filter
 * and for "x/#" (x itself too); then nothing more (all were acked). */
START_TEST(test_mqtt_session_resume_gets_what_was_published_meanwhile)
{
    char out[8192];
    up();
    phase(out, sizeof(out), (const char *const[]){"sub", "s1", "w/+/t,x/#", NULL});
    ck_assert_str_eq(out, "OK\n");
    wait_no_subs();
    phase(out, sizeof(out), (const char *const[]){"pub", "p1", "w/a/t", "20", NULL});
    phase(out, sizeof(out), (const char *const[]){"pub", "p1", "x", "2", NULL});
    phase(out, sizeof(out), (const char *const[]){"pub", "p1", "x/y", "2", NULL});
    phase(out, sizeof(out), (const char *const[]){"drain", "s1", "keep", "-1", "500", NULL});
    ck_assert_msg(strncmp(out, "SP 1\n", 5) == 0, "%s", out);
    for (int i = 0; i < 20; i++) {
        char line[64];
        snprintf(line, sizeof(line), "w/a/t m%03d 0 1\n", i);
        ck_assert_msg(strstr(out, line) != NULL, "missing %s in %s", line, out);
    }
    ck_assert_ptr_nonnull(strstr(out, "x m000 0 1\nx m001 0 1\n"));
    ck_assert_ptr_nonnull(strstr(out, "x/y m000 0 1\nx/y m001 0 1\n"));
    ck_assert_int_eq(count_lines(out, "\n"), 1 + 24);
    wait_no_subs();
    phase(out, sizeof(out), (const char *const[]){"drain", "s1", "keep", "-1", "300", NULL});
    ck_assert_str_eq(out, "SP 1\n");
    STOP(&broker);
}
END_TEST

/* Delivered, not PUBACKed, the connection dropped: on reconnect the
 * unacked ones come again with DUP, the acked one does not. */
START_TEST(test_mqtt_session_unacked_redelivered_with_dup)
{
    char out[8192];
    up();
    phase(out, sizeof(out), (const char *const[]){"sub", "s2", "r/t", NULL});
    wait_no_subs();
    phase(out, sizeof(out), (const char *const[]){"pub", "p2", "r/t", "4", NULL});
    phase(out, sizeof(out), (const char *const[]){"drain", "s2", "keep", "1", "500", NULL});
    ck_assert_str_eq(out, "SP 1\nr/t m000 0 1\nr/t m001 0 1\nr/t m002 0 1\nr/t m003 0 1\n");
    wait_no_subs();
    phase(out, sizeof(out), (const char *const[]){"drain", "s2", "keep", "-1", "500", NULL});
    ck_assert_str_eq(out, "SP 1\nr/t m001 1 1\nr/t m002 1 1\nr/t m003 1 1\n");
    STOP(&broker);
}
END_TEST

/* ferryd killed (-9) with a session's messages delivered and partly
 * acked, and more published (PUBACKed) while the client was away: after
 * the restart, every message not acked arrives (the unacked ones with
 * DUP), the session's filter is still there, nothing PUBACKed to the
 * publisher is lost. */
START_TEST(test_mqtt_session_survives_kill9)
{
    char out[8192];
    up();
    phase(out, sizeof(out), (const char *const[]){"sub", "s3", "k/#", NULL});
    wait_no_subs();
    phase(out, sizeof(out), (const char *const[]){"pub", "p3", "k/a", "10", NULL});
    phase(out, sizeof(out), (const char *const[]){"drain", "s3", "keep", "4", "500", NULL});
    ck_assert_int_eq(count_lines(out, "k/a m"), 10);
    wait_no_subs();
    phase(out, sizeof(out), (const char *const[]){"pub", "p3", "k/b", "5", NULL});
    restart_after_kill9();
    phase(out, sizeof(out), (const char *const[]){"drain", "s3", "keep", "-1", "800", NULL});
    ck_assert_msg(strncmp(out, "SP 1\n", 5) == 0, "%s", out);
    for (int i = 4; i < 10; i++) {
        char line[64];
        snprintf(line, sizeof(line), "k/a m%03d 1 1\n", i); /* delivered before: DUP */
        ck_assert_msg(strstr(out, line) != NULL, "missing %s in %s", line, out);
    }
    for (int i = 0; i < 5; i++) {
        char line[64];
        snprintf(line, sizeof(line), "k/b m%03d 0 1\n", i);
        ck_assert_msg(strstr(out, line) != NULL, "missing %s in %s", line, out);
    }
    STOP(&broker);
}
END_TEST

/* Clean session 1 ends the session: its durables are deleted, a clean
 * session 0 after it starts afresh (session present 0, nothing queued). */
START_TEST(test_mqtt_clean_session_deletes_the_session)
{
    char out[8192];
    up();
    phase(out, sizeof(out), (const char *const[]){"sub", "s4", "c/t", NULL});
    wait_no_subs();
    phase(out, sizeof(out), (const char *const[]){"pub", "p4", "c/t", "3", NULL});
    phase(out, sizeof(out), (const char *const[]){"drain", "s4", "clean", "-1", "300", NULL});
    ck_assert_str_eq(out, "SP 0\n");
    wait_no_subs();
    phase(out, sizeof(out), (const char *const[]){"pub", "p4", "c/t", "2", NULL});
    phase(out, sizeof(out), (const char *const[]){"drain", "s4", "keep", "-1", "300", NULL});
    ck_assert_str_eq(out, "SP 0\n");
    STOP(&broker);
}
END_TEST

/* Read n bytes of fd within T_WAIT. */
static void read_n(int fd, uint8_t *b, size_t n)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        ck_assert_int_eq(poll(&pfd, 1, T_WAIT), 1);
        ssize_t r = read(fd, b + got, n - got);
        ck_assert_int_gt(r, 0);
        got += (size_t)r;
    }
}

/* A connection of client id "s5" with clean session 0, its CONNACK read:
 * accepted, session present. */
static int s5_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)broker.mqtt_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    /* CONNECT, 3.1.1, clean session 0, keepalive 60, client id "s5" */
    const uint8_t cn[] = {0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 4, 0, 0, 60, 0, 2, 's', '5'};
    ck_assert_int_eq(send(fd, cn, sizeof(cn), MSG_NOSIGNAL), (ssize_t)sizeof(cn));
    uint8_t b[4];
    read_n(fd, b, 4);
    ck_assert_uint_eq(b[0], 0x20);
    ck_assert_uint_eq(b[2], 1); /* session present */
    ck_assert_uint_eq(b[3], 0);
    return fd;
}

/* Until fd's end: the broker closed it (within T_WAIT). */
static void assert_closed_by_broker(int fd)
{
    char b[256];
    long long end = ms_now() + T_WAIT;
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        long long left = end - ms_now();
        ck_assert_msg(left > 0 && poll(&pfd, 1, (int)left) == 1, "the old connection stays open");
        ssize_t r = read(fd, b, sizeof(b));
        if (r <= 0) {
            break;
        }
    }
    close(fd);
}

/* MQTT 3.1.4-2: a CONNECT with the client id of a connected client takes
 * its session over. The old connection is closed; what it had not
 * PUBACKed is redelivered to the new one with DUP, and the session goes
 * on. A clean-session CONNECT takes over too, and the session is gone. */
START_TEST(test_mqtt_session_takeover)
{
    char out[4096];
    up();
    phase(out, sizeof(out), (const char *const[]){"sub", "s5", "h/t", NULL});
    wait_no_subs();
    int fd = s5_connect();
    phase(out, sizeof(out), (const char *const[]){"pub", "p5", "h/t", "1", NULL});
    ck_assert_str_eq(out, "OK\n");
    uint8_t b[2];
    read_n(fd, b, 2); /* its PUBLISH, QoS 1, not PUBACKed */
    ck_assert_uint_eq(b[0] & 0xf6, 0x32);
    phase(out, sizeof(out), (const char *const[]){"drain", "s5", "keep", "-1", "300", NULL});
    ck_assert_str_eq(out, "SP 1\nh/t m000 1 1\n");
    assert_closed_by_broker(fd);

    fd = s5_connect();
    phase(out, sizeof(out), (const char *const[]){"drain", "s5", "clean", "-1", "300", NULL});
    ck_assert_str_eq(out, "SP 0\n");
    assert_closed_by_broker(fd);
    phase(out, sizeof(out), (const char *const[]){"drain", "s5", "keep", "-1", "300", NULL});
    ck_assert_str_eq(out, "SP 0\n");
    STOP(&broker);
}
END_TEST

/* Retained messages are kept in the store: after a kill -9 and a restart
 * a new subscriber gets the newest of each topic, not one cleared (by an
 * empty retained message) before the kill, nor one cleared after the first
 * restart. */
START_TEST(test_mqtt_retained_survive_kill9)
{
    char out[4096];
    if (system("/usr/bin/python3 -c 'import paho.mqtt.client' 2>/dev/null") != 0) {
        fprintf(stderr, "python3-paho-mqtt not found: skipped\n");
        exit(77);
    }
    up();
    run_py(retained_py, out, sizeof(out), (const char *const[]){"set", NULL});
    ck_assert_str_eq(out, "OK\n");
    restart_after_kill9();
    run_py(retained_py, out, sizeof(out), (const char *const[]){"get", "3", NULL});
    ck_assert_str_eq(out, "[('rt/a', 'A2', 1), ('rt/b', 'B', 1), ('rt/d', 'D', 1)]\nOK\n");
    run_py(retained_py, out, sizeof(out), (const char *const[]){"clear", NULL});
    restart_after_kill9();
    run_py(retained_py, out, sizeof(out), (const char *const[]){"get", "2", NULL});
    ck_assert_str_eq(out, "[('rt/a', 'A2', 1), ('rt/b', 'B', 1)]\nOK\n");
    STOP(&broker);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("e2e_mqtt_session");
    TCase *tc;
    tc = tcase_create("resume");
    tcase_add_test(tc, test_mqtt_session_resume_gets_what_was_published_meanwhile);
    suite_add_tcase(s, tc);
    tc = tcase_create("redeliver_dup");
    tcase_add_test(tc, test_mqtt_session_unacked_redelivered_with_dup);
    suite_add_tcase(s, tc);
    tc = tcase_create("kill9");
    tcase_add_test(tc, test_mqtt_session_survives_kill9);
    suite_add_tcase(s, tc);
    tc = tcase_create("clean");
    tcase_add_test(tc, test_mqtt_clean_session_deletes_the_session);
    suite_add_tcase(s, tc);
    tc = tcase_create("takeover");
    tcase_add_test(tc, test_mqtt_session_takeover);
    suite_add_tcase(s, tc);
    tc = tcase_create("retained_kill9");
    tcase_add_test(tc, test_mqtt_retained_survive_kill9);
    suite_add_tcase(s, tc);
    return s;
}

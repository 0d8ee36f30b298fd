/*
 * 96_mqtt_sys.c - the broker's $SYS topics for MQTT clients, end to end
 * (broker/mqtt_sys_out.c): a real ferryd with --mqtt-listen, an auth file
 * and --mqtt-sys-interval 1, raw MQTT clients (mqtt_e2e.h) and the real
 * mosquitto_sub (that case skips, 77, without it).
 *
 * What is checked: a user whose rules allow "$SYS.>" gets the values after
 * its SUBACK (RETAIN set), then every second (RETAIN clear), and
 * $SYS/broker/clients/connected follows a second client's coming and
 * going; a user without the right, and anyone without an auth file, gets
 * 0x80; "#" and "+/..." never bring a $SYS topic; a PUBLISH or a will on
 * $SYS is refused. No sleeps: every wait is for a packet, with a timeout.
 */
#include "cli_spawn.h"
#include "mqtt_e2e.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

Suite *test_suite(void);

static struct ferryd_proc broker;
static struct e2e_auth_dir ad;

/* ferryd with MQTT, $SYS updates every interval seconds and (with_auth)
 * an auth file: "ops" may subscribe to $SYS.>, "app" to a.>, "root" to >.
 * Every password is "pw". */
static void up_every(int with_auth, const char *interval)
{
    const char *args[8] = {"--mqtt-listen", "127.0.0.1:0", "--mqtt-sys-interval", interval, NULL};
    if (with_auth) {
        e2e_auth_dir_make(&ad, "mqtt-sys");
        char *h = e2e_hash("pw", "$6$", 1000);
        FILE *fp = fopen(ad.path, "w");
        ck_assert_ptr_nonnull(fp);
        fprintf(fp,
                "user ops %s\nuser app %s\nuser root %s\n"
                "allow ops subscribe $SYS.>\nallow app subscribe a.>\n"
                "allow app publish >\nallow root subscribe >\n",
                h, h, h);
        fclose(fp);
        free(h);
        args[4] = "--auth-file";
        args[5] = ad.path;
    }
    ck_assert_int_eq(ferryd_start(&broker, NULL, args), 0);
    ck_assert_int_gt(broker.mqtt_port, 0);
}

static void up(int with_auth)
{
    up_every(with_auth, "1");
}

static void down(int with_auth)
{
    STOP(&broker);
    if (with_auth) {
        e2e_auth_dir_remove(&ad);
    }
}

/* A logged-in raw client (keepalive 0: only the $SYS updates use its
 * timer). */
static int login(const char *user)
{
    int fd = mqe_open(broker.mqtt_port);
    mqe_connect(fd, user ? user : "anon", user, user ? "pw" : NULL, 0, NULL, NULL);
    ck_assert_uint_eq(mqe_connack(fd), 0);
    return fd;
}

/* SUBSCRIBE filters[0..n) at QoS 1 and check the SUBACK's codes. */
static void subscribe(int fd, uint16_t pid, const char *const *filters, size_t n,
                      const uint8_t *codes)
{
    mqe_subscribe(fd, pid, filters, n, 1);
    uint8_t b[64];
    size_t len;
    ck_assert_int_eq(mqe_packet(fd, b, sizeof(b), &len, e2e_ms_now() + T_WAIT), 0x90);
    ck_assert_uint_eq(len, 2 + n);
    ck_assert_uint_eq(b[0] << 8 | b[1], pid);
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(b[2 + i] == codes[i], "%s: SUBACK 0x%02x, not 0x%02x", filters[i], b[2 + i],
                      codes[i]);
    }
}

struct pub {
    int is_retain;
    char topic[128];
    char payload[128];
};

/* The next PUBLISH (QoS 0) before the deadline: 0, or -1 when none came. */
static int next_pub(int fd, struct pub *p, long long deadline)
{
    uint8_t b[300];
    size_t len;
    int first = mqe_packet(fd, b, sizeof(b), &len, deadline);
    if (first < 0) {
        return -1;
    }
    ck_assert_msg((first & 0xf6) == 0x30, "packet 0x%02x, not a QoS 0 PUBLISH", first);
    size_t tl = (size_t)(b[0] << 8 | b[1]);
    ck_assert_uint_lt(tl, sizeof(p->topic));
    ck_assert_uint_lt(len - 2 - tl, sizeof(p->payload));
    memcpy(p->topic, b + 2, tl);
    p->topic[tl] = '\0';
    memcpy(p->payload, b + 2 + tl, len - 2 - tl);
    p->payload[len - 2 - tl] = '\0';
    p->is_retain = first & 1;
    return 0;
}

/* Read connected's updates (RETAIN clear) until one satisfies want (as
 * compared by cmp: >= or <=); fail after T_WAIT. */
static long long wait_connected(int fd, long long want, int at_least)
{
    long long end = e2e_ms_now() + T_WAIT;
    struct pub p;
    for (;;) {
        ck_assert_msg(next_pub(fd, &p, end) == 0, "clients/connected never reached %lld", want);
        ck_assert_str_eq(p.topic, "$SYS/broker/clients/connected");
        ck_assert_int_eq(p.is_retain, 0);
        long long v = atoll(p.payload);
        if (at_least ? v >= want : v <= want) {
            return v;
        }
    }
}

/* The broker up with its auth file, and "ops" subscribed to filter
 * (granted, QoS 0). */
static int ops_subscribed(const char *filter)
{
    up(1);
    int ops = login("ops");
    const char *const f[] = {filter};
    const uint8_t granted[] = {0};
    subscribe(ops, 1, f, 1, granted);
    return ops;
}

START_TEST(test_mqtt_sys_permitted_user_sees_clients_come_and_go)
{
    int ops = ops_subscribed("$SYS/broker/clients/connected");
    struct pub p;
    ck_assert_int_eq(next_pub(ops, &p, e2e_ms_now() + T_WAIT), 0);
    ck_assert_str_eq(p.topic, "$SYS/broker/clients/connected");
    ck_assert_int_eq(p.is_retain, 1); /* the current value, as retained */
    long long n0 = atoll(p.payload);
    ck_assert_int_ge(n0, 1); /* ops itself */
    int app = login("app");
    ck_assert_int_ge(wait_connected(ops, n0 + 1, 1), n0 + 1);
    close(app);
    ck_assert_int_le(wait_connected(ops, n0, 0), n0);
    close(ops);
    down(1);
}
END_TEST

/* "$SYS/#": every topic, mosquitto's names, decimal values; the version
 * and the uptime as mosquitto writes them. */
START_TEST(test_mqtt_sys_tree_after_suback)
{
    int ops = ops_subscribed("$SYS/#");
    struct pub p;
    int n = 0, has_uptime = 0, has_version = 0, has_bytes = 0;
    long long end = e2e_ms_now() + T_WAIT;
    while (!(has_uptime && has_version && has_bytes)) {
        ck_assert_int_eq(next_pub(ops, &p, end), 0);
        ck_assert_int_eq(p.is_retain, 1);
        ck_assert(strncmp(p.topic, "$SYS/broker/", 12) == 0);
        has_version |= strcmp(p.topic, "$SYS/broker/version") == 0 &&
                       strncmp(p.payload, "ferryd version ", 15) == 0;
        has_uptime |=
            strcmp(p.topic, "$SYS/broker/uptime") == 0 && strstr(p.payload, " seconds") != NULL;
        has_bytes |= strcmp(p.topic, "$SYS/broker/bytes/received") == 0 && atoll(p.payload) > 0;
        n++;
    }
    ck_assert_int_ge(n, 3);
    close(ops);
    down(1);
}
END_TEST

/* Without the right: 0x80 (the connection goes on). "#" and "+/..." of a
 * user allowed everything never bring a $SYS topic, while its $SYS filter
 * does. PUBLISH and will on $SYS: refused. */
START_TEST(test_mqtt_sys_refused_without_right_and_to_wildcards)
{
    up(1);
    int app = login("app");
    const char *const f1[] = {"$SYS/#", "a/x"};
    const uint8_t c1[] = {0x80, 1};
    subscribe(app, 1, f1, 2, c1);
    const char *const f2[] = {"$SYS/broker/uptime"};
    const uint8_t c2[] = {0x80};
    subscribe(app, 2, f2, 1, c2);
    /* The broker's own topics take no PUBLISH, whatever the rights say. */
    mqe_publish(app, "$SYS/broker/uptime", "0 seconds");
    ck_assert(mqe_closed(app, T_WAIT));
    close(app);
    int w = mqe_open(broker.mqtt_port);
    mqe_connect(w, "w96", "app", "pw", 0, "$SYS/broker/x", "will");
    ck_assert_uint_eq(mqe_connack(w), 0x05);
    ck_assert(mqe_closed(w, T_WAIT));
    close(w);

    int root = login("root");
    const char *const f3[] = {"#", "+/broker/uptime"};
    const uint8_t c3[] = {1, 1};
    subscribe(root, 3, f3, 2, c3);
    const char *const f4[] = {"$SYS/broker/version"};
    const uint8_t c4[] = {0};
    subscribe(root, 4, f4, 1, c4);
    /* The retained value, then two updates: only ever the version. */
    struct pub p;
    long long end = e2e_ms_now() + T_WAIT;
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(next_pub(root, &p, end), 0);
        ck_assert_str_eq(p.topic, "$SYS/broker/version");
        ck_assert_int_eq(p.is_retain, i == 0);
    }
    close(root);
    down(1);
}
END_TEST

/* No auth file: $SYS is not served (0x80), the rest is as usual. */
START_TEST(test_mqtt_sys_refused_without_auth_file)
{
    up(0);
    int fd = login(NULL);
    const char *const f[] = {"$SYS/#", "$SYS/broker/uptime", "a/b"};
    const uint8_t codes[] = {0x80, 0x80, 1};
    subscribe(fd, 1, f, 3, codes);
    const uint8_t ping[] = {0xc0, 0};
    mqe_send(fd, ping, sizeof(ping));
    uint8_t b[4];
    size_t len;
    ck_assert_int_eq(mqe_packet(fd, b, sizeof(b), &len, e2e_ms_now() + T_WAIT), 0xd0);
    close(fd);
    down(0);
}
END_TEST

/* mqtt_sys_interval 0: the values after the SUBACK, then no more (the
 * only way to see an absence is a silence: 1.5 s, where updates would
 * come every second with the interval on). */
START_TEST(test_mqtt_sys_interval_off_only_on_subscribe)
{
    up_every(1, "0");
    int ops = login("ops");
    const char *const f[] = {"$SYS/broker/uptime"};
    const uint8_t granted[] = {0};
    subscribe(ops, 1, f, 1, granted);
    struct pub p;
    ck_assert_int_eq(next_pub(ops, &p, e2e_ms_now() + T_WAIT), 0);
    ck_assert_str_eq(p.topic, "$SYS/broker/uptime");
    ck_assert_int_eq(p.is_retain, 1);
    ck_assert_int_eq(next_pub(ops, &p, e2e_ms_now() + 1500), -1);
    close(ops);
    down(1);
}
END_TEST

/* mosquitto_sub -t '$SYS/broker/uptime' -C 2: the retained value, then
 * the next update, both "N seconds". */
START_TEST(test_mqtt_sys_mosquitto_sub)
{
    const char *sub = "/usr/bin/mosquitto_sub";
    if (access(sub, X_OK) != 0) {
        fprintf(stderr, "mosquitto_sub not found: skipped (Debian: mosquitto-clients)\n");
        exit(77);
    }
    up(1);
    char port[16];
    snprintf(port, sizeof(port), "%d", broker.mqtt_port);
    const char *const args[] = {"-h",  "127.0.0.1", "-p", port, "-u",
                                "ops", "-P",        "pw", "-v", "-C",
                                "2",   "-W",        "10", "-t", "$SYS/broker/uptime",
                                NULL};
    int fds[3];
    pid_t pid = cli_spawn(sub, NULL, args, NULL, fds);
    ck_assert_int_gt(pid, 0);
    close(fds[0]);
    char out[512];
    size_t n = 0;
    long long end = e2e_ms_now() + T_WAIT + 2000;
    for (;;) {
        struct pollfd pfd = {.fd = fds[1], .events = POLLIN};
        long long left = end - e2e_ms_now();
        ck_assert_msg(left > 0 && poll(&pfd, 1, (int)left) == 1, "mosquitto_sub: %.*s", (int)n,
                      out);
        ssize_t r = read(fds[1], out + n, sizeof(out) - 1 - n);
        if (r <= 0) {
            break;
        }
        n += (size_t)r;
    }
    out[n] = '\0';
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "mosquitto_sub failed: %s", out);
    close(fds[1]);
    close(fds[2]);
    long long a, b;
    ck_assert_msg(sscanf(out, "$SYS/broker/uptime %lld seconds\n$SYS/broker/uptime %lld seconds",
                         &a, &b) == 2,
                  "%s", out);
    ck_assert_int_le(a, b);
    down(1);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("e2e_mqtt_sys");
    TCase *tc;
    tc = tcase_create("permitted");
    tcase_add_test(tc, test_mqtt_sys_permitted_user_sees_clients_come_and_go);
    suite_add_tcase(s, tc);
    tc = tcase_create("tree");
    tcase_add_test(tc, test_mqtt_sys_tree_after_suback);
    suite_add_tcase(s, tc);
    tc = tcase_create("refused");
    tcase_add_test(tc, test_mqtt_sys_refused_without_right_and_to_wildcards);
    suite_add_tcase(s, tc);
    tc = tcase_create("no_auth_file");
    tcase_add_test(tc, test_mqtt_sys_refused_without_auth_file);
    suite_add_tcase(s, tc);
    tc = tcase_create("interval_off");
    tcase_add_test(tc, test_mqtt_sys_interval_off_only_on_subscribe);
    suite_add_tcase(s, tc);
    tc = tcase_create("mosquitto_sub");
    tcase_add_test(tc, test_mqtt_sys_mosquitto_sub);
    suite_add_tcase(s, tc);
    return s;
}

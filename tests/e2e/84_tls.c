/*
 * 84_tls.c - TLS end to end: a real ferryd with a TLS listener beside the
 * plain one, libferry and the `ferry` tool over it. The certificates are
 * made at test time (tls_certs.h). Covers: pub/sub through libferry (small
 * messages and ones larger than a TLS record), the server name check,
 * client certificates required and missing, a certificate's CN or SAN email
 * as the user that the auth file's allow rules apply to, a plain client on
 * the TLS port (closed at once with an Error it can read), a silent one
 * (closed at the Connect deadline), a wrong CA (a certificate error), SIGHUP
 * reloading the certificate (and a broken one kept out), and the CLI.
 */
#include "cli_spawn.h"
#include "ferry.h"
#include "ferryd_proc.h"
#include "tls_certs.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
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

#define WAIT_MS 20000 /* generous: a slow, shared 2-core machine */

static struct tls_certs certs;
static struct ferryd_proc broker;
static char p_ca[256], p_ca2[256], p_srv[256], p_srv_key[256];

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *path(const char *name)
{
    static char buf[8][256];
    static int k;
    k = (k + 1) % 8;
    return tls_certs_path(&certs, name, buf[k], sizeof(buf[k]));
}

static void setup(void)
{
    unsetenv("FERRY_TEST_TLS"); /* these tests choose their listeners themselves */
    ck_assert_int_eq(tls_certs_make(&certs), 0);
    /* The broker's own copies: the reload test overwrites them. */
    ck_assert_int_eq(tls_certs_copy(&certs, "server.pem", "live.pem"), 0);
    ck_assert_int_eq(tls_certs_copy(&certs, "server.key", "live.key"), 0);
    snprintf(p_ca, sizeof(p_ca), "%s", path("ca.pem"));
    snprintf(p_ca2, sizeof(p_ca2), "%s", path("ca2.pem"));
    snprintf(p_srv, sizeof(p_srv), "%s", path("live.pem"));
    snprintf(p_srv_key, sizeof(p_srv_key), "%s", path("live.key"));
    memset(&broker, 0, sizeof(broker));
}

static void teardown(void)
{
    if (broker.pid > 0) {
        ferryd_stop(&broker);
    }
    tls_certs_remove(&certs);
}

/* ferryd with a TLS listener on a free port and extra args (NULL-ended). */
static void start_tls(const char *const *extra)
{
    const char *args[32] = {"--tls-listen", "127.0.0.1:0", "--tls-cert",
                            p_srv,          "--tls-key",   p_srv_key};
    int n = 6;
    for (int i = 0; extra && extra[i]; i++) {
        ck_assert_int_lt(n, 31);
        args[n++] = extra[i];
    }
    args[n] = NULL;
    ck_assert_int_eq(ferryd_start(&broker, NULL, args), 0);
    ck_assert_int_gt(broker.tls_port, 0);
    ck_assert_int_ne(broker.tls_port, broker.port);
}

#define START_TLS(...)                                                                             \
    do {                                                                                           \
        const char *const x_[] = {__VA_ARGS__, NULL};                                              \
        start_tls(x_);                                                                             \
    } while (0)

struct opened {
    ferry_client *c; /* NULL when the connect failed */
    int rc;          /* ferry_client_connect's result */
    char err[512];   /* the client's last error text */
};

/* Connect to server (a ferry server string) with TLS from these files
 * (NULLs allowed; use_tls 0: no ferry_options_set_tls, the server string
 * decides). No reconnects. */
static struct opened open_client(const char *server, int use_tls, const char *ca, const char *cert,
                                 const char *key, int verify_name)
{
    struct opened r = {0};
    ferry_options *o;
    ck_assert_int_eq(ferry_options_create(&o), 0);
    ck_assert_int_eq(ferry_options_set_servers(o, server), 0);
    ck_assert_int_eq(ferry_options_set_reconnect(o, 0, 0, 100, 100, 0), 0);
    if (use_tls) {
        ck_assert_int_eq(ferry_options_set_tls(o, ca, cert, key, verify_name), 0);
    }
    ferry_client *c;
    ck_assert_int_eq(ferry_client_create(o, &c), 0);
    ferry_options_destroy(o);
    ck_assert_int_eq(ferry_client_start_thread(c), 0);
    r.rc = ferry_client_connect(c, WAIT_MS);
    ferry_client_last_error(c, r.err, sizeof(r.err));
    if (r.rc != 0) {
        ferry_client_destroy(c);
    } else {
        r.c = c;
    }
    return r;
}

static const char *tls_server(void)
{
    static char s[64];
    snprintf(s, sizeof(s), "tls://127.0.0.1:%d", broker.tls_port);
    return s;
}

/* A TLS client trusting ca.pem, with an optional client certificate (base
 * name: "alice" uses alice.pem and alice.key), that must connect. */
static ferry_client *must_open(const char *cert_base)
{
    char cert[64], key[64];
    snprintf(cert, sizeof(cert), "%s.pem", cert_base ? cert_base : "");
    snprintf(key, sizeof(key), "%s.key", cert_base ? cert_base : "");
    struct opened o = open_client(tls_server(), 1, p_ca, cert_base ? path(cert) : NULL,
                                  cert_base ? path(key) : NULL, 1);
    ck_assert_msg(o.rc == 0, "TLS connect: %s (%s)", ferry_strerror(o.rc), o.err);
    return o.c;
}

static int pub_sync(ferry_client *c, const char *topic, const void *data, size_t len, uint64_t *seq)
{
    ferry_pub m = {0};
    m.topic = topic;
    m.payload = data;
    m.payload_len = len;
    return ferry_publish_sync(c, &m, WAIT_MS, seq);
}

/* ---- pub/sub over TLS --------------------------------------------------- */

START_TEST(test_tls_pubsub_through_libferry)
{
    START_TLS("--tls-client-cert", "off");
    ferry_client *pub = must_open(NULL);
    ferry_client *sub = must_open(NULL);
    ferry_sub *s;
    ck_assert_int_eq(ferry_subscribe(sub, "tls.>", NULL, NULL, NULL, WAIT_MS, &s), 0);
    /* Many small messages (gathered into records) and some larger than a
     * TLS record (split over several), acked: every byte arrives, in order. */
    enum { N = 300, BIG = 200000 };
    char *big = malloc(BIG);
    ck_assert_ptr_nonnull(big);
    for (int i = 0; i < BIG; i++) {
        big[i] = (char)('a' + i % 26);
    }
    for (int i = 0; i < N; i++) {
        char msg[32];
        int len = snprintf(msg, sizeof(msg), "m%d", i);
        if (i % 50 == 49) {
            big[0] = (char)('0' + i / 50);
            ck_assert_int_eq(pub_sync(pub, "tls.big", big, BIG, NULL), 0);
        } else {
            ck_assert_int_eq(ferry_publish(pub, "tls.small", msg, (size_t)len), 0);
        }
    }
    ck_assert_int_eq(ferry_flush(pub, WAIT_MS), 0);
    /* Each topic's messages in their order (topics interleave freely). */
    int next_small = 0, next_big = 49;
    for (int i = 0; i < N; i++) {
        ferry_msg *m;
        int rc = ferry_sub_next(s, WAIT_MS, &m);
        ck_assert_msg(rc == 0, "message %d: %s", i, ferry_strerror(rc));
        size_t len;
        const char *p = ferry_msg_data(m, &len);
        if (strcmp(ferry_msg_topic(m), "tls.big") == 0) {
            ck_assert_int_lt(next_big, N);
            ck_assert_uint_eq(len, BIG);
            big[0] = (char)('0' + next_big / 50);
            ck_assert_int_eq(memcmp(p, big, BIG), 0);
            next_big += 50;
        } else {
            if (next_small % 50 == 49) {
                next_small++;
            }
            char msg[32];
            int n = snprintf(msg, sizeof(msg), "m%d", next_small);
            ck_assert_str_eq(ferry_msg_topic(m), "tls.small");
            ck_assert_uint_eq(len, (size_t)n);
            ck_assert_int_eq(memcmp(p, msg, len), 0);
            next_small++;
        }
        ferry_msg_destroy(m);
    }
    ck_assert_int_eq(next_big, N + 49);
    free(big);
    ferry_unsubscribe(s);
    ferry_client_destroy(pub);
    ferry_client_destroy(sub);
    /* The plain listener still serves plain clients. */
    char plain[64];
    snprintf(plain, sizeof(plain), "127.0.0.1:%d", broker.port);
    struct opened o = open_client(plain, 0, NULL, NULL, NULL, 0);
    ck_assert_msg(o.rc == 0, "plain connect: %s", o.err);
    ferry_client_destroy(o.c);
    ck_assert_int_eq(ferryd_stop(&broker), 0);
}
END_TEST

/* The certificate names 127.0.0.1 and localhost: both pass the name check;
 * one naming another host fails it, and passes with the check off. */
START_TEST(test_tls_server_name_is_checked)
{
    START_TLS("--tls-client-cert", "off");
    char s[64];
    snprintf(s, sizeof(s), "tls://localhost:%d", broker.tls_port);
    struct opened o = open_client(s, 1, p_ca, NULL, NULL, 1);
    ck_assert_msg(o.rc == 0, "localhost: %s", o.err);
    ferry_client_destroy(o.c);
    ck_assert_int_eq(ferryd_stop(&broker), 0);

    snprintf(p_srv, sizeof(p_srv), "%s", path("noname.pem"));
    snprintf(p_srv_key, sizeof(p_srv_key), "%s", path("noname.key"));
    START_TLS("--tls-client-cert", "off");
    o = open_client(tls_server(), 1, p_ca, NULL, NULL, 1);
    ck_assert_int_eq(o.rc, FERRY_ETLS);
    ck_assert_msg(strstr(o.err, "certificate") != NULL, "error: %s", o.err);
    o = open_client(tls_server(), 1, p_ca, NULL, NULL, 0);
    ck_assert_msg(o.rc == 0, "no name check: %s", o.err);
    ferry_client_destroy(o.c);
}
END_TEST

/* ---- client certificates ------------------------------------------------ */

START_TEST(test_tls_client_cert_required_and_missing_is_refused)
{
    START_TLS("--tls-ca", p_ca, "--tls-client-cert", "required");
    struct opened o = open_client(tls_server(), 1, p_ca, NULL, NULL, 1);
    ck_assert_msg(o.rc != 0, "connected without a client certificate");
    ck_assert_ptr_null(o.c);
    /* One from another CA is refused too. */
    o = open_client(tls_server(), 1, p_ca, path("mallory.pem"), path("mallory.key"), 1);
    ck_assert_msg(o.rc != 0, "connected with a certificate from an unknown CA");
    /* With one from the CA: in, and it works. */
    ferry_client *c = must_open("alice");
    ck_assert_int_eq(pub_sync(c, "any.topic", "x", 1, NULL), 0);
    ferry_client_destroy(c);
}
END_TEST

static void write_auth(const char *text, char *out, size_t cap)
{
    tls_certs_path(&certs, "auth", out, cap);
    FILE *f = fopen(out, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

START_TEST(test_tls_identity_cn_is_the_user_of_allow_rules)
{
    char auth[256];
    write_auth("cert alice\n"
               "allow alice publish x.>\n"
               "allow alice subscribe x.>\n",
               auth, sizeof(auth));
    START_TLS("--tls-ca", p_ca, "--tls-client-cert", "required", "--tls-identity", "cn",
              "--auth-file", auth);
    /* alice by her certificate, no password: her rules apply. */
    ferry_client *c = must_open("alice");
    uint64_t seq = 0;
    ck_assert_int_eq(pub_sync(c, "x.a", "hello", 5, &seq), 0);
    ck_assert_uint_eq(seq, 1);
    ck_assert_int_eq(pub_sync(c, "y.a", "nope", 4, NULL), FERRY_EPERM);
    ferry_sub *s;
    ck_assert_int_eq(ferry_subscribe(c, "y.>", NULL, NULL, NULL, WAIT_MS, &s), FERRY_EPERM);
    ferry_client_destroy(c);
    /* carol's certificate names no user of the auth file (CN someone):
     * refused as failed authentication. */
    struct opened o = open_client(tls_server(), 1, p_ca, path("carol.pem"), path("carol.key"), 1);
    ck_assert_int_eq(o.rc, FERRY_EAUTH);
    /* The plain port still wants a password: anonymous is refused. */
    char plain[64];
    snprintf(plain, sizeof(plain), "127.0.0.1:%d", broker.port);
    o = open_client(plain, 0, NULL, NULL, NULL, 0);
    ck_assert_int_eq(o.rc, FERRY_EAUTH);
}
END_TEST

START_TEST(test_tls_identity_san_email)
{
    char auth[256];
    write_auth("cert carol@example.com\nallow carol@example.com publish z.>\n", auth, sizeof(auth));
    START_TLS("--tls-ca", p_ca, "--tls-client-cert", "optional", "--tls-identity", "san-email",
              "--auth-file", auth);
    ferry_client *c = must_open("carol");
    ck_assert_int_eq(pub_sync(c, "z.a", "hi", 2, NULL), 0);
    ck_assert_int_eq(pub_sync(c, "x.a", "hi", 2, NULL), FERRY_EPERM);
    ferry_client_destroy(c);
    /* alice's certificate has no SAN email: no identity, no credentials. */
    struct opened o = open_client(tls_server(), 1, p_ca, path("alice.pem"), path("alice.key"), 1);
    ck_assert_int_eq(o.rc, FERRY_EAUTH);
    /* Optional: no certificate at all still gets through TLS (then auth). */
    o = open_client(tls_server(), 1, p_ca, NULL, NULL, 1);
    ck_assert_int_eq(o.rc, FERRY_EAUTH);
}
END_TEST

/* ---- wrong peers on the TLS port ---------------------------------------- */

/* Read from fd until EOF, up to ms; returns the bytes read (>= 0) at EOF,
 * or -ETIMEDOUT. */
static long read_to_eof(int fd, int ms, unsigned char *buf, size_t cap)
{
    long long deadline = now_ms() + ms;
    size_t got = 0;
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0) {
            return -ETIMEDOUT;
        }
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, (int)left) <= 0) {
            continue;
        }
        ssize_t r = read(fd, buf + got, cap - got);
        if (r == 0 || (r < 0 && errno == ECONNRESET)) {
            return (long)got;
        }
        if (r > 0) {
            got += (size_t)r;
            if (got == cap) {
                return (long)got;
            }
        }
    }
}

static int tcp_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

START_TEST(test_tls_plain_client_on_tls_port_is_closed)
{
    START_TLS("--tls-client-cert", "off", "--connect-timeout-ms", "1000");
    /* libferry without TLS: the broker's Error, quickly, not a timeout. */
    char s[64];
    snprintf(s, sizeof(s), "127.0.0.1:%d", broker.tls_port);
    long long t0 = now_ms();
    struct opened o = open_client(s, 0, NULL, NULL, NULL, 0);
    long long took = now_ms() - t0;
    ck_assert_int_eq(o.rc, FERRY_EPROTOCOL);
    ck_assert_msg(strstr(o.err, "TLS") != NULL, "error: %s", o.err);
    ck_assert_msg(took < 4000, "took %lld ms", took);
    /* A raw socket sending a frame: an Error frame, then EOF. */
    int fd = tcp_to(broker.tls_port);
    const unsigned char frame[] = {0, 0, 0, 2, 0x0a, 0x00};
    ck_assert_int_eq(write(fd, frame, sizeof(frame)), (ssize_t)sizeof(frame));
    unsigned char buf[512];
    long n = read_to_eof(fd, 5000, buf, sizeof(buf));
    ck_assert_msg(n >= 4, "read %ld", n);
    ck_assert_int_eq(buf[0], 0); /* a frame length, in plain */
    close(fd);
    /* A socket that says nothing: closed at the Connect deadline. */
    fd = tcp_to(broker.tls_port);
    n = read_to_eof(fd, 8000, buf, sizeof(buf));
    ck_assert_int_eq(n, 0);
    close(fd);
    /* A client that starts a handshake and stalls: closed likewise. */
    fd = tcp_to(broker.tls_port);
    const unsigned char half[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01};
    ck_assert_int_eq(write(fd, half, sizeof(half)), (ssize_t)sizeof(half));
    n = read_to_eof(fd, 8000, buf, sizeof(buf));
    ck_assert_int_ge(n, 0);
    close(fd);
    /* And the broker still serves TLS. */
    ferry_client *c = must_open(NULL);
    ferry_client_destroy(c);
    ck_assert_int_eq(ferryd_stop(&broker), 0);
}
END_TEST

START_TEST(test_tls_wrong_ca_reports_a_certificate_error)
{
    START_TLS("--tls-client-cert", "off");
    struct opened o = open_client(tls_server(), 1, p_ca2, NULL, NULL, 1);
    ck_assert_int_eq(o.rc, FERRY_ETLS);
    ck_assert_msg(strstr(o.err, "certificate verify failed") != NULL, "error: %s", o.err);
    /* tls:// alone trusts only the system's CAs: the test CA is not one. */
    o = open_client(tls_server(), 0, NULL, NULL, NULL, 1);
    ck_assert_int_eq(o.rc, FERRY_ETLS);
    /* TLS to the plain port fails as TLS, not as a hang. */
    char s[64];
    snprintf(s, sizeof(s), "tls://127.0.0.1:%d", broker.port);
    long long t0 = now_ms();
    o = open_client(s, 1, p_ca, NULL, NULL, 1);
    ck_assert_int_eq(o.rc, FERRY_ETLS);
    ck_assert_int_lt(now_ms() - t0, 4000);
}
END_TEST

/* `listen off`: TLS only. Without any listener ferryd refuses to start. */
START_TEST(test_tls_only_with_listen_off)
{
    START_TLS("--listen", "off");
    ck_assert_int_eq(broker.port, 0);
    ferry_client *c = must_open(NULL);
    ck_assert_int_eq(pub_sync(c, "only.tls", "x", 1, NULL), 0);
    ferry_client_destroy(c);
    ck_assert_int_eq(ferryd_stop(&broker), 0);
    const char *const none[] = {"--listen", "off", NULL};
    ck_assert_int_eq(ferryd_start(&broker, NULL, none), -ECHILD);
    /* A TLS listener without a certificate: refused at start too. */
    const char *const nocert[] = {"--tls-listen", "127.0.0.1:0", NULL};
    ck_assert_int_eq(ferryd_start(&broker, NULL, nocert), -ECHILD);
}
END_TEST

/* ---- SIGHUP -------------------------------------------------------------- */

/* Connect with TLS trusting ca until it works, up to WAIT_MS: 0 or the
 * last error. */
static int wait_trusted_by(const char *ca)
{
    long long deadline = now_ms() + WAIT_MS;
    int rc;
    do {
        struct opened o = open_client(tls_server(), 1, ca, NULL, NULL, 1);
        rc = o.rc;
        if (o.c) {
            ferry_client_destroy(o.c);
        }
    } while (rc != 0 && now_ms() < deadline);
    return rc;
}

START_TEST(test_tls_sighup_reloads_the_certificate)
{
    START_TLS("--tls-client-cert", "off");
    ferry_client *old = must_open(NULL); /* a session made before the reload */
    /* A broken certificate: the reload fails and the current one stays. */
    FILE *f = fopen(p_srv, "w");
    ck_assert_ptr_nonnull(f);
    fputs("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n", f);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(kill(broker.pid, SIGHUP), 0);
    for (int i = 0; i < 5; i++) {
        struct opened o = open_client(tls_server(), 1, p_ca, NULL, NULL, 1);
        ck_assert_msg(o.rc == 0, "after a failed reload: %s", o.err);
        ferry_client_destroy(o.c);
    }
    /* A new certificate (from ca2): new connections get it. */
    ck_assert_int_eq(tls_certs_copy(&certs, "server2.key", "live.key"), 0);
    ck_assert_int_eq(tls_certs_copy(&certs, "server2.pem", "live.pem"), 0);
    ck_assert_int_eq(kill(broker.pid, SIGHUP), 0);
    ck_assert_int_eq(wait_trusted_by(p_ca2), 0);
    struct opened o = open_client(tls_server(), 1, p_ca, NULL, NULL, 1);
    ck_assert_int_eq(o.rc, FERRY_ETLS);
    /* The session from before goes on with the old one. */
    ck_assert_int_eq(pub_sync(old, "still.here", "y", 1, NULL), 0);
    ferry_client_destroy(old);
    ck_assert_int_eq(ferryd_stop(&broker), 0);
}
END_TEST

/* ---- the CLI ------------------------------------------------------------ */

#ifdef FERRY_CLI_PATH
struct run {
    int status;
    char out[8192];
    char err[8192];
};

static void run(struct run *r, const char *in, const char *const *args)
{
    const char *const env[] = {"FERRY_PASSWORD", "FERRY_TOKEN", "FERRY_SERVER", NULL};
    int fds[3];
    pid_t pid = cli_spawn(FERRY_CLI_PATH, NULL, args, env, fds);
    ck_assert_int_gt(pid, 0);
    if (in) {
        ck_assert_int_eq(write(fds[0], in, strlen(in)), (ssize_t)strlen(in));
    }
    close(fds[0]);
    memset(r, 0, sizeof(*r));
    size_t lo = 0, le = 0;
    long long deadline = now_ms() + WAIT_MS;
    while (fds[1] >= 0 || fds[2] >= 0) {
        struct pollfd p[2] = {{fds[1], POLLIN, 0}, {fds[2], POLLIN, 0}};
        long long left = deadline - now_ms();
        if (left <= 0) {
            kill(pid, SIGKILL);
            ck_abort_msg("ferry %s did not finish", args[0]);
        }
        ck_assert_int_ge(poll(p, 2, (int)left), 0);
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) {
                continue;
            }
            char *buf = i == 0 ? r->out : r->err;
            size_t *len = i == 0 ? &lo : &le;
            ssize_t got = read(p[i].fd, buf + *len, sizeof(r->out) - 1 - *len);
            if (got <= 0) {
                close(fds[1 + i]);
                fds[1 + i] = -1;
                continue;
            }
            *len += (size_t)got;
            buf[*len] = '\0';
        }
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

#define RUN(r, in, ...)                                                                            \
    do {                                                                                           \
        const char *const a_[] = {__VA_ARGS__, NULL};                                              \
        run((r), (in), a_);                                                                        \
    } while (0)

START_TEST(test_tls_cli_pub_sub)
{
    char auth[256];
    write_auth("cert alice\nallow alice publish cli.>\nallow alice subscribe cli.>\n", auth,
               sizeof(auth));
    START_TLS("--tls-ca", p_ca, "--tls-client-cert", "optional", "--tls-identity", "cn",
              "--auth-file", auth);
    static struct run r;
    char s[64], hs[64];
    snprintf(s, sizeof(s), "tls://127.0.0.1:%d", broker.tls_port);
    snprintf(hs, sizeof(hs), "127.0.0.1:%d", broker.tls_port);
    /* tls:// and the client certificate: alice, no password. */
    RUN(&r, "one\ntwo\n", "pub", "-s", s, "--tls-ca", p_ca, "--tls-cert", path("alice.pem"),
        "--tls-key", path("alice.key"), "--ack", "cli.t");
    ck_assert_msg(r.status == 0, "pub: %s", r.err);
    /* --tls with a plain HOST:PORT, reading back from the start. */
    RUN(&r, NULL, "sub", "-s", hs, "--tls", "--tls-ca", p_ca, "--tls-cert", path("alice.pem"),
        "--tls-key", path("alice.key"), "--from-seq", "1", "--count", "2", "cli.t");
    ck_assert_msg(r.status == 0, "sub: %s", r.err);
    ck_assert_str_eq(r.out, "one\ntwo\n");
    /* alice may not publish elsewhere. */
    RUN(&r, NULL, "pub", "-s", s, "--tls-ca", p_ca, "--tls-cert", path("alice.pem"), "--tls-key",
        path("alice.key"), "--ack", "other.t", "x");
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "permission denied") != NULL, "stderr: %s", r.err);
    /* The wrong CA: a certificate error, exit 1. */
    RUN(&r, NULL, "pub", "-s", s, "--tls-ca", p_ca2, "cli.t", "x");
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "certificate verify failed") != NULL, "stderr: %s", r.err);
    /* A certificate without its key is a usage error of the tool. */
    RUN(&r, NULL, "pub", "-s", s, "--tls-cert", path("alice.pem"), "cli.t", "x");
    ck_assert_int_ne(r.status, 0);
}
END_TEST
#endif

static void add_case(Suite *s, TCase *tc, const TTest *test)
{
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test);
    suite_add_tcase(s, tc);
}

Suite *test_suite(void)
{
    Suite *s = suite_create("tls");
    add_case(s, tcase_create("tls_pubsub"), test_tls_pubsub_through_libferry);
    add_case(s, tcase_create("tls_server_name"), test_tls_server_name_is_checked);
    add_case(s, tcase_create("tls_client_cert_required"),
             test_tls_client_cert_required_and_missing_is_refused);
    add_case(s, tcase_create("tls_identity_cn"), test_tls_identity_cn_is_the_user_of_allow_rules);
    add_case(s, tcase_create("tls_identity_san_email"), test_tls_identity_san_email);
    add_case(s, tcase_create("tls_plain_client_closed"),
             test_tls_plain_client_on_tls_port_is_closed);
    add_case(s, tcase_create("tls_wrong_ca"), test_tls_wrong_ca_reports_a_certificate_error);
    add_case(s, tcase_create("tls_sighup_reload"), test_tls_sighup_reloads_the_certificate);
    add_case(s, tcase_create("tls_only"), test_tls_only_with_listen_off);
#ifdef FERRY_CLI_PATH
    add_case(s, tcase_create("tls_cli"), test_tls_cli_pub_sub);
#endif
    return s;
}

/*
 * 72_consumers_durable.c - durable consumers end to end: resume after a
 * client reconnect and after kill -9 of the broker, redelivery after the ack
 * wait with attempt counts, dead letters after max_deliver, NAK and TERM,
 * queue groups sharing a durable, a durable in use refused, max_in_flight,
 * and a randomized kill loop (at least once; acked never again).
 *
 * No sleep synchronises anything: every wait polls with a timeout. An Ack
 * has no answer; a PubAck on the same connection after it means the Ack is
 * committed (consumer.h, PERSISTENCE), which the kill -9 cases rely on.
 */
#include "rawclient.h"
#include "store_e2e.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/types.h>

static struct ferryd_proc d;

/* ASan's quarantine and TSan's shadow memory make RSS say little about the
 * broker's own bounds under a sanitizer: those are checked in plain builds
 * (as in 03_limits.c). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define RSS_GROWTH_KB (2048L * 1024L)
#else
/* With the defaults, what ferryd may buffer for a stalled reader is bounded
 * by its queues (writer and worker queues of 64 batches of 64 KiB, the IO
 * mailbox) and the subscriber's 8 MiB outbound limit: about 30 MiB,
 * whatever the volume; the tests push 100 MB through. */
#define RSS_GROWTH_KB (48L * 1024L)
#endif

/* The broker's own memory: VmRSS minus file-backed pages. VmRSS (what
 * ferryd_rss_kb() reports) also counts the LMDB map's pages that readers
 * touched - the page cache of the data file, which the kernel reclaims at
 * will - and that grows with the data read, not with what ferryd holds. */
static long rss_anon_kb(const struct ferryd_proc *p)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)p->pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "RssAnon: %ld kB", &kb) == 1) {
            break;
        }
    }
    fclose(f);
    return kb >= 0 ? kb : ferryd_rss_kb(p);
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    ck_assert_int_eq(ferryd_start(&d, NULL, NULL), 0);
}

static void teardown(void)
{
    ferryd_stop(&d);
}

struct dopts {
    const char *group;
    uint32_t max_in_flight, ack_wait_ms, max_deliver;
    enum ferry_start start;
};

static int dsub_rc(ferry_client *c, const char *topic, const char *name, const struct dopts *o,
                   ferry_sub **out)
{
    ferry_sub_options *so;
    ck_assert_int_eq(ferry_sub_options_create(&so), 0);
    ck_assert_int_eq(ferry_sub_options_set_durable(so, name), 0);
    ck_assert_int_eq(ferry_sub_options_set_ack_mode(so, FERRY_ACK_EXPLICIT), 0);
    ck_assert_int_eq(ferry_sub_options_set_queue_max(so, 1u << 22), 0);
    if (o && o->group) {
        ck_assert_int_eq(ferry_sub_options_set_queue_group(so, o->group), 0);
    }
    if (o && o->max_in_flight) {
        ck_assert_int_eq(ferry_sub_options_set_max_in_flight(so, o->max_in_flight), 0);
    }
    if (o && o->ack_wait_ms) {
        ck_assert_int_eq(ferry_sub_options_set_ack_wait_ms(so, o->ack_wait_ms), 0);
    }
    if (o && o->max_deliver) {
        ck_assert_int_eq(ferry_sub_options_set_max_deliver(so, o->max_deliver), 0);
    }
    if (o && o->start) {
        ck_assert_int_eq(ferry_sub_options_set_start(so, o->start, 0), 0);
    }
    int rc = ferry_subscribe(c, topic, so, NULL, NULL, S_WAIT, out);
    ferry_sub_options_destroy(so);
    return rc;
}

static ferry_sub *dsub(ferry_client *c, const char *topic, const char *name, const struct dopts *o)
{
    ferry_sub *s = NULL;
    int rc = dsub_rc(c, topic, name, o, &s);
    ck_assert_msg(rc == 0, "durable subscribe %s/%s: %s", topic, name, ferry_strerror(rc));
    return s;
}

/* Bind, retrying while the broker has not yet seen the previous holder's
 * connection close (bounded). */
static ferry_sub *dsub_retry(ferry_client *c, const char *topic, const char *name,
                             const struct dopts *o)
{
    int64_t end = s_now_ms() + S_WAIT;
    for (;;) {
        ferry_sub *s = NULL;
        int rc = dsub_rc(c, topic, name, o, &s);
        if (rc == 0) {
            return s;
        }
        ck_assert_msg(rc == FERRY_EDURABLEINUSE && s_now_ms() < end, "durable subscribe: %s",
                      ferry_strerror(rc));
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL); /* poll interval, not a synchronisation */
    }
}

static ferry_msg *next(ferry_sub *s)
{
    ferry_msg *m;
    int rc = ferry_sub_next(s, S_WAIT, &m);
    ck_assert_msg(rc == 0, "next message: %s", ferry_strerror(rc));
    return m;
}

static void ack(ferry_msg *m, enum ferry_ack_kind kind)
{
    int rc = ferry_msg_ack(m, kind);
    ck_assert_msg(rc == 0, "ack: %s", ferry_strerror(rc));
}

static void pub_n(ferry_client *c, const char *topic, int n)
{
    for (int i = 0; i < n; i++) {
        char text[32];
        snprintf(text, sizeof(text), "m%d", i);
        s_pub(c, topic, text);
    }
}

START_TEST(test_durable_resumes_after_reconnect)
{
    ferry_client *p = s_client(&d, 0);
    pub_n(p, "dur.a", 10);
    ferry_client *c = s_client(&d, 0);
    struct dopts o = {.start = FERRY_START_ALL};
    ferry_sub *s = dsub(c, "dur.a", "d1", &o);
    for (uint64_t i = 1; i <= 10; i++) {
        ferry_msg *m = next(s);
        ck_assert_uint_eq(ferry_msg_sequence(m), i);
        ck_assert_uint_eq(ferry_msg_attempt(m), 1);
        if (i <= 5) {
            ack(m, FERRY_ACK);
        }
        ferry_msg_destroy(m);
    }
    ck_assert_int_eq(ferry_flush(c, S_WAIT), 0);
    s_close(c);
    /* 1..5 acked: never again; 6..10 again (second attempt), then live. */
    c = s_client(&d, 0);
    s = dsub_retry(c, "dur.a", "d1", &o);
    for (uint64_t i = 6; i <= 10; i++) {
        ferry_msg *m = next(s);
        ck_assert_uint_eq(ferry_msg_sequence(m), i);
        ck_assert_uint_eq(ferry_msg_attempt(m), 2);
        ack(m, FERRY_ACK);
        ferry_msg_destroy(m);
    }
    s_pub(p, "dur.a", "live");
    ferry_msg *m = next(s);
    ck_assert_uint_eq(ferry_msg_sequence(m), 11);
    ck_assert_uint_eq(ferry_msg_attempt(m), 1);
    ack(m, FERRY_ACK);
    ferry_msg_destroy(m);
    s_no_more(s, 300);
    s_close(c);
    s_close(p);
}
END_TEST

START_TEST(test_durable_resumes_after_broker_kill9)
{
    ferry_client *c = s_client(&d, 0);
    pub_n(c, "dur.k", 10);
    struct dopts o = {.start = FERRY_START_ALL};
    ferry_sub *s = dsub(c, "dur.k", "dk", &o);
    for (uint64_t i = 1; i <= 10; i++) {
        ferry_msg *m = next(s);
        ck_assert_uint_eq(ferry_msg_sequence(m), i);
        if (i <= 6) {
            ack(m, FERRY_ACK);
        }
        ferry_msg_destroy(m);
    }
    /* A PubAck after the Acks: they are committed. */
    s_pub(c, "dur.barrier", "b");
    ferry_client_destroy(c);
    ck_assert_int_eq(ferryd_kill9(&d), 0);
    ck_assert_int_eq(ferryd_restart(&d, NULL), 0);
    c = s_client(&d, 0);
    s = dsub(c, "dur.k", "dk", &o);
    for (uint64_t i = 7; i <= 10; i++) {
        ferry_msg *m = next(s);
        ck_assert_uint_eq(ferry_msg_sequence(m), i);
        ck_assert_uint_ge(ferry_msg_attempt(m), 2);
        ack(m, FERRY_ACK);
        ferry_msg_destroy(m);
    }
    s_pub(c, "dur.k", "after");
    ferry_msg *m = next(s);
    ck_assert_uint_eq(ferry_msg_sequence(m), 11);
    ack(m, FERRY_ACK);
    ferry_msg_destroy(m);
    s_no_more(s, 300);
    s_close(c);
}
END_TEST

START_TEST(test_redelivery_attempts_then_dead_letter)
{
    ferry_client *c = s_client(&d, 0);
    /* The dead-letter topic is an ordinary stored topic. */
    ferry_sub *dlq = s_sub(c, "$DLQ.dur.r.dr", FERRY_START_NEW, 0);
    struct dopts o = {.ack_wait_ms = 200, .max_deliver = 3};
    ferry_sub *s = dsub(c, "dur.r", "dr", &o);
    ferry_pub p = {.topic = "dur.r", .payload = "poison", .payload_len = 6};
    ferry_header h = {.key = "trace", .value = "t-1"};
    p.headers = &h;
    p.n_headers = 1;
    uint64_t seq = 0;
    ck_assert_int_eq(ferry_publish_sync(c, &p, S_WAIT, &seq), 0);
    for (uint32_t a = 1; a <= 3; a++) {
        ferry_msg *m = next(s);
        ck_assert_uint_eq(ferry_msg_sequence(m), seq);
        ck_assert_uint_eq(ferry_msg_attempt(m), a);
        ferry_msg_destroy(m); /* not acked */
    }
    ferry_msg *m = next(dlq);
    size_t len;
    const char *data = ferry_msg_data(m, &len);
    ck_assert_uint_eq(len, 6);
    ck_assert_int_eq(memcmp(data, "poison", 6), 0);
    ck_assert_str_eq(ferry_msg_topic(m), "$DLQ.dur.r.dr");
    ck_assert_ptr_nonnull(ferry_msg_header(m, "trace"));
    ck_assert_str_eq(ferry_msg_header(m, "trace"), "t-1");
    ck_assert_str_eq(ferry_msg_header(m, "ferry-dlq-topic"), "dur.r");
    char want[24];
    snprintf(want, sizeof(want), "%llu", (unsigned long long)seq);
    ck_assert_str_eq(ferry_msg_header(m, "ferry-dlq-sequence"), want);
    ck_assert_str_eq(ferry_msg_header(m, "ferry-dlq-deliveries"), "3");
    ck_assert_str_eq(ferry_msg_header(m, "ferry-dlq-durable"), "dr");
    ferry_msg_destroy(m);
    /* Dead-lettered: the durable does not get it again, and goes on. */
    s_no_more(s, 600);
    s_pub(c, "dur.r", "next");
    m = next(s);
    ck_assert_uint_eq(ferry_msg_sequence(m), seq + 1);
    ack(m, FERRY_ACK);
    ferry_msg_destroy(m);
    s_close(c);
}
END_TEST

/* A redelivery reads the store: a message delivered live right after its
 * log sync may not be readable yet when its ack wait passes (the writer
 * commits LMDB later: here within 5 s). The redelivery waits for the
 * commit; it must not take the message for removed and forget it. */
START_TEST(test_redelivery_before_the_commit)
{
    ferryd_stop(&d);
    ck_assert_int_eq(
        ferryd_start(&d, NULL, (const char *const[]){"--commit-interval-ms", "5000", NULL}), 0);
    ferry_client *c = s_client(&d, 0);
    struct dopts o = {.ack_wait_ms = 100};
    ferry_sub *s = dsub(c, "dur.early", "de", &o);
    /* The topic is in the store first (an admin request waits for it). */
    s_pub(c, "dur.early", "first");
    ferry_msg *m = next(s);
    ack(m, FERRY_ACK);
    ferry_msg_destroy(m);
    ferry_topic_info ti;
    ck_assert_int_eq(ferry_admin_topic_info(c, "dur.early", S_WAIT, &ti), 0);
    ck_assert_uint_eq(ti.last_seq, 1);
    uint64_t seq = s_pub(c, "dur.early", "soon");
    m = next(s);
    ck_assert_uint_eq(ferry_msg_sequence(m), seq);
    ck_assert_uint_eq(ferry_msg_attempt(m), 1);
    ferry_msg_destroy(m); /* not acked */
    int64_t t0 = s_now_ms();
    m = next(s);
    ck_assert_uint_eq(ferry_msg_sequence(m), seq);
    ck_assert_uint_eq(ferry_msg_attempt(m), 2);
    ck_assert_int_lt(s_now_ms() - t0, 4000); /* not after the interval's commit */
    ack(m, FERRY_ACK);
    ferry_msg_destroy(m);
    s_close(c);
}
END_TEST

START_TEST(test_nak_redelivers_now_term_drops)
{
    ferry_client *c = s_client(&d, 0);
    ferry_sub *dlq = s_sub(c, "$DLQ.dur.n.dn", FERRY_START_NEW, 0);
    /* A long ack wait: only the NAK can bring it back quickly. */
    struct dopts o = {.ack_wait_ms = 60000, .max_deliver = 2};
    ferry_sub *s = dsub(c, "dur.n", "dn", &o);
    uint64_t s1 = s_pub(c, "dur.n", "one");
    ferry_msg *m = next(s);
    ck_assert_uint_eq(ferry_msg_sequence(m), s1);
    ack(m, FERRY_NAK);
    ferry_msg_destroy(m);
    m = next(s);
    ck_assert_uint_eq(ferry_msg_sequence(m), s1);
    ck_assert_uint_eq(ferry_msg_attempt(m), 2);
    /* At max_deliver: TERM drops it without a dead letter. */
    ack(m, FERRY_TERM);
    ferry_msg_destroy(m);
    uint64_t s2 = s_pub(c, "dur.n", "two");
    m = next(s);
    ck_assert_uint_eq(ferry_msg_sequence(m), s2);
    ack(m, FERRY_ACK);
    ferry_msg_destroy(m);
    s_no_more(s, 400);
    s_no_more(dlq, 100);
    s_close(c);
}
END_TEST

START_TEST(test_queue_group_shares_a_durable_others_refused)
{
    ferry_client *a = s_client(&d, 0);
    ferry_client *b = s_client(&d, 0);
    ferry_client *x = s_client(&d, 0);
    struct dopts o = {.group = "g"};
    ferry_sub *sa = dsub(a, "dur.q", "dq", &o);
    ferry_sub *sb = dsub(b, "dur.q", "dq", &o);
    ferry_sub *sx = NULL;
    ck_assert_int_eq(dsub_rc(x, "dur.q", "dq", NULL, &sx), FERRY_EDURABLEINUSE);
    struct dopts other = {.group = "h"};
    ck_assert_int_eq(dsub_rc(x, "dur.q", "dq", &other, &sx), FERRY_EDURABLEINUSE);
    /* Not durable without explicit acks. */
    ferry_sub_options *so;
    ck_assert_int_eq(ferry_sub_options_create(&so), 0);
    ck_assert_int_eq(ferry_sub_options_set_durable(so, "dz"), 0);
    ck_assert_int_eq(ferry_sub_options_set_ack_mode(so, FERRY_ACK_NONE), 0);
    int rc = ferry_subscribe(x, "dur.q", so, NULL, NULL, S_WAIT, &sx);
    ferry_sub_options_destroy(so);
    ck_assert_int_ne(rc, 0);

    enum { N = 200 };
    static int seen[N + 1];
    memset(seen, 0, sizeof(seen));
    pub_n(x, "dur.q", N);
    int got = 0, got_a = 0, got_b = 0;
    int64_t end = s_now_ms() + S_WAIT;
    while (got < N && s_now_ms() < end) {
        ferry_sub *subs[2] = {sa, sb};
        for (int k = 0; k < 2; k++) {
            ferry_msg *m;
            while (ferry_sub_next(subs[k], 0, &m) == 0) {
                uint64_t q = ferry_msg_sequence(m);
                ck_assert_uint_ge(q, 1);
                ck_assert_uint_le(q, N);
                ck_assert_msg(seen[q] == 0, "sequence %llu delivered twice", (unsigned long long)q);
                seen[q] = 1;
                got++;
                *(k == 0 ? &got_a : &got_b) += 1;
                ack(m, FERRY_ACK);
                ferry_msg_destroy(m);
            }
        }
        ferry_msg *m;
        if (ferry_sub_next(sa, 10, &m) == 0) {
            uint64_t q = ferry_msg_sequence(m);
            ck_assert_msg(q >= 1 && q <= N && seen[q] == 0, "sequence %llu twice",
                          (unsigned long long)q);
            seen[q] = 1;
            got++;
            got_a++;
            ack(m, FERRY_ACK);
            ferry_msg_destroy(m);
        }
    }
    ck_assert_int_eq(got, N);
    ck_assert_int_eq(got_a + got_b, N);
    s_no_more(sa, 200);
    s_no_more(sb, 100);
    /* When every holder left, anyone may bind it. */
    s_close(a);
    s_close(b);
    sx = dsub_retry(x, "dur.q", "dq", NULL);
    s_no_more(sx, 200);
    s_close(x);
}
END_TEST

START_TEST(test_durable_in_use_until_released)
{
    ferry_client *a = s_client(&d, 0);
    ferry_client *b = s_client(&d, 0);
    ferry_sub *sa = dsub(a, "dur.u", "du", NULL);
    ferry_sub *sb = NULL;
    ck_assert_int_eq(dsub_rc(b, "dur.u", "du", NULL, &sb), FERRY_EDURABLEINUSE);
    /* Another name, or another topic with the same name, is another durable. */
    ferry_sub *s2 = dsub(b, "dur.u", "du2", NULL);
    ferry_sub *s3 = dsub(b, "dur.u2", "du", NULL);
    ferry_unsubscribe(s2);
    ferry_unsubscribe(s3);
    ferry_unsubscribe(sa);
    sb = dsub_retry(b, "dur.u", "du", NULL);
    ferry_unsubscribe(sb);
    s_close(a);
    s_close(b);
}
END_TEST

START_TEST(test_max_in_flight_bounds_deliveries)
{
    ferry_client *c = s_client(&d, 0);
    struct dopts o = {.max_in_flight = 5};
    ferry_sub *s = dsub(c, "dur.f", "df", &o);
    pub_n(c, "dur.f", 20);
    ferry_msg *held[5];
    for (int i = 0; i < 5; i++) {
        held[i] = next(s);
        ck_assert_uint_eq(ferry_msg_sequence(held[i]), (uint64_t)i + 1);
    }
    s_no_more(s, 400); /* five in flight: nothing more until an ack */
    ack(held[0], FERRY_ACK);
    ferry_msg *m = next(s);
    ck_assert_uint_eq(ferry_msg_sequence(m), 6);
    s_no_more(s, 200);
    ferry_msg_destroy(m);
    for (int i = 0; i < 5; i++) {
        ferry_msg_destroy(held[i]);
    }
    s_close(c);
}
END_TEST

/* A subscriber that stops reading: the broker keeps at most max_in_flight
 * deliveries in memory for it, never disconnects it, and it gets everything
 * once it reads again. */
START_TEST(test_stalled_durable_bounded_memory_catches_up)
{
    ferry_client *p = s_client(&d, 256);
    ferry_client *c = s_client(&d, 0);
    /* The reader reads nothing until 100 MB went through: under a sanitizer
     * on a loaded machine that can take longer than the default ack wait,
     * and a redelivery is not what this test is about. */
    struct dopts o = {.max_in_flight = 256, .ack_wait_ms = 600000};
    ferry_sub *s = dsub(c, "dur.slow", "ds", &o);
    long rss0 = rss_anon_kb(&d);
    enum { N = 50000, SIZE = 2048 };
    static char payload[SIZE];
    memset(payload, 'x', sizeof(payload));
    for (int i = 0; i < N; i++) {
        int rc = ferry_publish(p, "dur.slow", payload, SIZE);
        ck_assert_msg(rc == 0, "publish: %s", ferry_strerror(rc));
    }
    ck_assert_int_eq(ferry_flush(p, S_WAIT), 0);
    uint64_t last = s_pub(p, "dur.slow", "end");
    long rss1 = rss_anon_kb(&d);
    /* 100 MB went through; the broker holds 256 deliveries for the reader. */
    ck_assert_msg(rss1 - rss0 < RSS_GROWTH_KB,
                  "ferryd's anonymous memory grew from %ld to %ld kB (VmRSS %ld kB)", rss0, rss1,
                  ferryd_rss_kb(&d));
    for (uint64_t i = 1; i <= last; i++) {
        ferry_msg *m = next(s);
        ck_assert_uint_eq(ferry_msg_sequence(m), i);
        ack(m, FERRY_ACK);
        ferry_msg_destroy(m);
    }
    s_close(c);
    s_close(p);
}
END_TEST

/* A live (not durable) subscriber of a stored topic that stops reading its
 * socket: the broker switches it to reading the log instead of buffering
 * (or disconnecting) it; memory stays bounded, and once it reads again it
 * gets every message once, in order. */
START_TEST(test_stalled_live_subscriber_bounded_memory_no_loss)
{
    struct rawc sub;
    ck_assert_int_eq(rawc_connect(&sub, d.port, 600000),
                     0); /* silent for long: no keepalive close */
    ck_assert_int_eq(rawc_subscribe(&sub, 9, "live.slow", NULL), 0);
    ferry_client *p = s_client(&d, 256);
    long rss0 = rss_anon_kb(&d);
    enum { N = 50000, SIZE = 2048 };
    static char payload[SIZE];
    memset(payload, 'y', sizeof(payload));
    for (int i = 0; i < N; i++) {
        int rc = ferry_publish(p, "live.slow", payload, SIZE);
        ck_assert_msg(rc == 0, "publish: %s", ferry_strerror(rc));
    }
    uint64_t last = s_pub(p, "live.slow", "end");
    long rss1 = rss_anon_kb(&d);
    ck_assert_msg(rss1 - rss0 < RSS_GROWTH_KB,
                  "ferryd's anonymous memory grew from %ld to %ld kB (VmRSS %ld kB)", rss0, rss1,
                  ferryd_rss_kb(&d));
    for (uint64_t want = 1; want <= last; want++) {
        Ferry__Frame *f;
        int rc = rawc_recv_kind(&sub, S_WAIT, FERRY__FRAME__BODY_DELIVER, &f, NULL);
        ck_assert_msg(rc == 0, "waiting for sequence %llu: %d", (unsigned long long)want, rc);
        ck_assert_uint_eq(f->deliver->sequence, want);
    }
    ck_assert_int_eq(rawc_ping(&sub, 1, S_WAIT), 0); /* never disconnected */
    rawc_close(&sub);
    s_close(p);
}
END_TEST

/* The same with a wildcard subscription over two stored topics: each topic
 * arrives complete and in order, with no disconnect. */
START_TEST(test_stalled_wildcard_subscriber_no_loss)
{
    struct rawc sub;
    ck_assert_int_eq(rawc_connect(&sub, d.port, 600000),
                     0); /* silent for long: no keepalive close */
    ck_assert_int_eq(rawc_subscribe(&sub, 5, "wild.*", NULL), 0);
    ferry_client *p = s_client(&d, 256);
    long rss0 = rss_anon_kb(&d);
    enum { N = 25000, SIZE = 2048 };
    static char payload[SIZE];
    memset(payload, 'w', sizeof(payload));
    for (int i = 0; i < N; i++) {
        int rc = ferry_publish(p, i % 2 ? "wild.b" : "wild.a", payload, SIZE);
        ck_assert_msg(rc == 0, "publish: %s", ferry_strerror(rc));
    }
    uint64_t last_a = s_pub(p, "wild.a", "end");
    uint64_t last_b = s_pub(p, "wild.b", "end");
    long rss1 = rss_anon_kb(&d);
    ck_assert_msg(rss1 - rss0 < RSS_GROWTH_KB,
                  "ferryd's anonymous memory grew from %ld to %ld kB (VmRSS %ld kB)", rss0, rss1,
                  ferryd_rss_kb(&d));
    uint64_t next_a = 1, next_b = 1;
    while (next_a <= last_a || next_b <= last_b) {
        Ferry__Frame *f;
        int rc = rawc_recv_kind(&sub, S_WAIT, FERRY__FRAME__BODY_DELIVER, &f, NULL);
        ck_assert_msg(rc == 0, "waiting for a %llu, b %llu: %d", (unsigned long long)next_a,
                      (unsigned long long)next_b, rc);
        uint64_t *next = strcmp(f->deliver->topic, "wild.a") == 0 ? &next_a : &next_b;
        ck_assert_msg(f->deliver->sequence == *next, "%s: got %llu, want %llu", f->deliver->topic,
                      (unsigned long long)f->deliver->sequence, (unsigned long long)*next);
        (*next)++;
    }
    ck_assert_int_eq(rawc_ping(&sub, 1, S_WAIT), 0); /* never disconnected */
    rawc_close(&sub);
    s_close(p);
}
END_TEST

/*
 * The kill loop: a consumer process killed -9 at a random point, restarted;
 * in some rounds the broker is killed -9 too. The consumer reports "R seq"
 * when it receives a message, acks most of them, and after a few acks
 * publishes with an ack on the same connection: that PubAck means the Acks
 * before it are committed, and only then does it report "A seq" for them.
 * Every message must be received at least once, and one reported as acked
 * must never be received again. (The ack wait is long, so no redelivery can
 * race with an ack in flight.)
 */
enum { KL_ROUNDS = 10, KL_PER_ROUND = 60 };
#define KL_MAX (KL_ROUNDS * KL_PER_ROUND)

static void kl_write(int fd, char kind, uint64_t seq)
{
    char line[40];
    int n = snprintf(line, sizeof(line), "%c %llu\n", kind, (unsigned long long)seq);
    if (write(fd, line, (size_t)n) != n) {
        _exit(3);
    }
}

static void kl_child(int fd, int port)
{
    struct ferryd_proc dd = d;
    dd.port = port;
    ferry_client *c = s_client(&dd, 0);
    struct dopts o = {.start = FERRY_START_ALL, .max_deliver = 1000};
    ferry_sub *s = dsub_retry(c, "kl.t", "kl", &o);
    unsigned seed = (unsigned)getpid();
    uint64_t acked[16];
    size_t n_acked = 0;
    size_t batch = 1 + rand_r(&seed) % 8;
    for (;;) {
        ferry_msg *m;
        if (ferry_sub_next(s, 60000, &m) != 0) {
            _exit(2);
        }
        uint64_t seq = ferry_msg_sequence(m);
        kl_write(fd, 'R', seq);
        if (rand_r(&seed) % 8 != 0 && ferry_msg_ack(m, FERRY_ACK) == 0) {
            acked[n_acked++] = seq;
        }
        ferry_msg_destroy(m);
        if (n_acked >= batch) {
            ferry_pub b = {.topic = "kl.barrier", .payload = "b", .payload_len = 1};
            if (ferry_publish_sync(c, &b, S_WAIT, NULL) != 0) {
                _exit(4);
            }
            for (size_t i = 0; i < n_acked; i++) {
                kl_write(fd, 'A', acked[i]);
            }
            n_acked = 0;
            batch = 1 + rand_r(&seed) % 8;
        }
    }
}

struct kl_state {
    int recv[KL_MAX + 1];
    int acked[KL_MAX + 1]; /* acked, and the ack committed */
    int round;
    int n_records;
    char buf[4096];
    size_t len;
};

static void kl_record(struct kl_state *k, char kind, unsigned long long seq)
{
    ck_assert_msg(seq >= 1 && seq <= KL_MAX, "sequence %llu out of range", seq);
    if (kind == 'R') {
        ck_assert_msg(!k->acked[seq], "round %d: sequence %llu delivered again after its ack",
                      k->round, seq);
        k->recv[seq]++;
        k->n_records++;
    } else if (kind == 'A') {
        k->acked[seq] = 1;
    }
}

/* Read what the child wrote; returns 0 at EOF. */
static int kl_read(struct kl_state *k, int fd, int timeout_ms)
{
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    if (poll(&pf, 1, timeout_ms) <= 0) {
        return 1;
    }
    ssize_t n = read(fd, k->buf + k->len, sizeof(k->buf) - 1 - k->len);
    if (n <= 0) {
        return 0;
    }
    k->len += (size_t)n;
    char *p = k->buf;
    char *nl;
    while ((nl = memchr(p, '\n', k->len - (size_t)(p - k->buf))) != NULL) {
        *nl = '\0';
        char kind;
        unsigned long long seq;
        if (sscanf(p, "%c %llu", &kind, &seq) == 2) {
            kl_record(k, kind, seq);
        }
        p = nl + 1;
    }
    k->len -= (size_t)(p - k->buf);
    memmove(k->buf, p, k->len);
    return 1;
}

START_TEST(test_kill_loop_at_least_once_acked_never_again)
{
    static struct kl_state k;
    memset(&k, 0, sizeof(k));
    srand((unsigned)time(NULL));
    int published = 0;
    for (k.round = 0; k.round < KL_ROUNDS; k.round++) {
        ferry_client *p = s_client(&d, 0);
        pub_n(p, "kl.t", KL_PER_ROUND);
        published += KL_PER_ROUND;
        s_close(p);
        int fds[2];
        ck_assert_int_eq(pipe(fds), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            close(fds[0]);
            kl_child(fds[1], d.port);
            _exit(0);
        }
        close(fds[1]);
        /* Kill it after a random number of receipts (or once it is idle). */
        int target = k.n_records + 1 + rand() % (KL_PER_ROUND + 20);
        int64_t end = s_now_ms() + S_WAIT;
        int is_open = 1;
        while (is_open && k.n_records < target && s_now_ms() < end) {
            is_open = kl_read(&k, fds[0], 200);
            int st;
            if (waitpid(pid, &st, WNOHANG) == pid) {
                ck_abort_msg("round %d: consumer exited with %d", k.round, st);
            }
            if (k.n_records >= published * 2) {
                break;
            }
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        while (kl_read(&k, fds[0], 0) && k.len < sizeof(k.buf) - 1) {
        }
        close(fds[0]);
        if (k.round % 3 == 1) {
            ck_assert_int_eq(ferryd_kill9(&d), 0);
            ck_assert_int_eq(ferryd_restart(&d, NULL), 0);
        }
    }
    /* Drain in-process: every message arrives at least once. */
    ferry_client *c = s_client(&d, 0);
    struct dopts o = {.start = FERRY_START_ALL, .max_deliver = 1000};
    ferry_sub *s = dsub_retry(c, "kl.t", "kl", &o);
    int missing = 0;
    for (int i = 1; i <= published; i++) {
        missing += k.recv[i] == 0;
    }
    while (missing > 0) {
        ferry_msg *m = next(s);
        uint64_t q = ferry_msg_sequence(m);
        kl_record(&k, 'R', q);
        if (k.recv[q] == 1) {
            missing--;
        }
        ack(m, FERRY_ACK);
        ferry_msg_destroy(m);
    }
    s_close(c);
}
END_TEST

Suite *test_suite(void);

static void add(Suite *s, TCase *t, const TTest *test)
{
    s_add_case(s, t, test, setup, teardown);
}

Suite *test_suite(void)
{
    Suite *s = suite_create("e2e_consumers");
    add(s, tcase_create("resume_reconnect"), test_durable_resumes_after_reconnect);
    add(s, tcase_create("resume_kill9"), test_durable_resumes_after_broker_kill9);
    add(s, tcase_create("redelivery_dlq"), test_redelivery_attempts_then_dead_letter);
    add(s, tcase_create("redelivery_before_commit"), test_redelivery_before_the_commit);
    add(s, tcase_create("nak_term"), test_nak_redelivers_now_term_drops);
    add(s, tcase_create("queue_group"), test_queue_group_shares_a_durable_others_refused);
    add(s, tcase_create("in_use"), test_durable_in_use_until_released);
    add(s, tcase_create("max_in_flight"), test_max_in_flight_bounds_deliveries);
    add(s, tcase_create("stalled_bounded"), test_stalled_durable_bounded_memory_catches_up);
    add(s, tcase_create("stalled_live"), test_stalled_live_subscriber_bounded_memory_no_loss);
    add(s, tcase_create("stalled_wildcard"), test_stalled_wildcard_subscriber_no_loss);
    add(s, tcase_create("kill_loop"), test_kill_loop_at_least_once_acked_never_again);
    return s;
}

/*
 * 91_idempotent.c - idempotent publishing end to end: a re-sent Publish
 * with the same producer id and sequence is answered with the first one's
 * sequence and marked duplicate, across connections and a kill -9; and
 * libferry, re-sending what was unacked after every one of twenty kill -9s
 * of the broker, stores every message exactly once.
 */
#include "e2e_util.h"
#include "store_e2e.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

static struct ferryd_proc d;

static void teardown(void)
{
    ferryd_stop(&d);
}

/* Publish (producer, pseq) with an ack on a fresh raw connection; the
 * PubAck's sequence, and its duplicate flag in *dup. */
static uint64_t raw_pub(uint64_t producer, uint64_t pseq, const char *text, int *dup)
{
    struct rawc c;
    ck_assert_int_eq(rawc_connect(&c, d.port, 0), 0);
    Ferry__Publish p = FERRY__PUBLISH__INIT;
    p.id = 100 + pseq;
    p.topic = (char *)"idem.raw";
    p.payload.data = (uint8_t *)text;
    p.payload.len = strlen(text);
    p.want_ack = 1;
    p.producer_id = producer;
    p.producer_seq = pseq;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_PUBLISH;
    f.publish = &p;
    ck_assert_int_eq(rawc_send(&c, &f), 0);
    Ferry__Frame *r;
    ck_assert_int_eq(rawc_recv_kind(&c, S_WAIT, FERRY__FRAME__BODY_PUB_ACK, &r, NULL), 0);
    ck_assert_uint_eq(r->pub_ack->id, p.id);
    ck_assert_int_eq(r->pub_ack->code, 0);
    uint64_t seq = r->pub_ack->sequence;
    *dup = r->pub_ack->duplicate;
    rawc_close(&c);
    return seq;
}

static uint64_t topic_messages(const char *topic)
{
    ferry_client *c = s_client(&d, 0);
    ferry_topic_info ti;
    ck_assert_int_eq(ferry_admin_topic_info(c, topic, S_WAIT, &ti), 0);
    s_close(c);
    return ti.messages;
}

START_TEST(test_resend_is_answered_with_the_first_sequence)
{
    ck_assert_int_eq(ferryd_start(&d, NULL, NULL), 0);
    int dup;
    ck_assert_uint_eq(raw_pub(77, 5, "a", &dup), 1);
    ck_assert_int_eq(dup, 0);
    ck_assert_uint_eq(raw_pub(77, 6, "b", &dup), 2);
    ck_assert_int_eq(dup, 0);
    /* The same sequence from another producer is another message. */
    ck_assert_uint_eq(raw_pub(78, 5, "c", &dup), 3);
    ck_assert_int_eq(dup, 0);
    /* Re-sent on new connections: the first answers, nothing stored. */
    ck_assert_uint_eq(raw_pub(77, 5, "a", &dup), 1);
    ck_assert_int_eq(dup, 1);
    ck_assert_uint_eq(raw_pub(78, 5, "c", &dup), 3);
    ck_assert_int_eq(dup, 1);
    ck_assert_uint_eq(topic_messages("idem.raw"), 3);
    /* What the store remembers survives kill -9 with the messages. */
    ck_assert_int_eq(ferryd_kill9(&d), 0);
    ck_assert_int_eq(ferryd_restart(&d, NULL), 0);
    ck_assert_uint_eq(raw_pub(77, 6, "b", &dup), 2);
    ck_assert_int_eq(dup, 1);
    ck_assert_uint_eq(raw_pub(77, 7, "d", &dup), 4);
    ck_assert_int_eq(dup, 0);
    ck_assert_uint_eq(topic_messages("idem.raw"), 4);
    /* A Deliver of a stored message carries no trace of it. */
    ferry_client *c = s_client(&d, 0);
    ferry_sub *s = s_sub(c, "idem.raw", FERRY_START_ALL, 0);
    const char *want[] = {"a", "b", "c", "d"};
    for (uint64_t i = 1; i <= 4; i++) {
        uint64_t seq;
        char buf[16];
        s_next(s, &seq, buf, sizeof(buf));
        ck_assert_uint_eq(seq, i);
        ck_assert_str_eq(buf, want[i - 1]);
    }
    s_no_more(s, 100);
    ferry_unsubscribe(s);
    s_close(c);
}
END_TEST

/* Past dedupe_window the producer is forgotten: a re-send is stored anew.
 * Until then each re-send is answered as the duplicate it is. */
START_TEST(test_dedupe_window_forgets_the_producer)
{
    const char *const args[] = {"--dedupe-window", "1s", NULL};
    ck_assert_int_eq(ferryd_start(&d, NULL, args), 0);
    int dup;
    ck_assert_uint_eq(raw_pub(91, 1, "w", &dup), 1);
    ck_assert_int_eq(dup, 0);
    int64_t end = s_now_ms() + S_WAIT;
    uint64_t seq;
    int n_dups = 0;
    while ((seq = raw_pub(91, 1, "w", &dup)) == 1 && dup && s_now_ms() < end) {
        n_dups++;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL); /* polling pace */
    }
    ck_assert_uint_eq(seq, 2);
    ck_assert_int_eq(dup, 0);
    ck_assert_int_gt(n_dups, 0); /* it was remembered for a while */
    ck_assert_uint_eq(topic_messages("idem.raw"), 2);
}
END_TEST

/* ---- the kill loop ------------------------------------------------------ */

#define ROUNDS 20
#define MAX_MSGS 200000

struct loop {
    ferry_client *c;
    atomic_int stop;
    atomic_long n_sent;
    atomic_long n_acked;
    atomic_long n_failed;
    _Atomic uint64_t seq[MAX_MSGS]; /* by message number: the sequence acked */
};

static struct loop g_loop;

static void loop_acked(ferry_client *c, int status, uint64_t seq, void *ud)
{
    (void)c;
    long i = (long)(uintptr_t)ud;
    if (status == 0) {
        atomic_store(&g_loop.seq[i], seq);
        atomic_fetch_add(&g_loop.n_acked, 1);
    } else {
        fprintf(stderr, "kill loop: message %ld failed: %s\n", i, ferry_strerror(status));
        atomic_fetch_add(&g_loop.n_failed, 1);
    }
}

/* Publishes "n<i>" for i = 0, 1, ... until told to stop; the window
 * blocks it while the broker is down. */
static void *loop_pub(void *arg)
{
    (void)arg;
    for (long i = 0; i < MAX_MSGS && !atomic_load(&g_loop.stop); i++) {
        char text[32];
        int len = snprintf(text, sizeof(text), "n%ld", i);
        ferry_pub m = {.topic = "idem.loop", .payload = text, .payload_len = (size_t)len};
        int rc = ferry_publish_async(g_loop.c, &m, loop_acked, (void *)(uintptr_t)i, NULL);
        if (rc != 0) {
            fprintf(stderr, "kill loop: publish %ld: %s\n", i, ferry_strerror(rc));
            atomic_fetch_add(&g_loop.n_failed, 1);
            break;
        }
        atomic_store(&g_loop.n_sent, i + 1);
    }
    return NULL;
}

START_TEST(test_kill_loop_stores_every_message_once)
{
    ck_assert_int_eq(ferryd_start(&d, NULL, NULL), 0);
    memset(&g_loop, 0, sizeof(g_loop));
    /* One client for the whole loop: reconnecting to the same port, and
     * re-sending what was not acked, idempotently (libferry's defaults). */
    ferry_options *o;
    ck_assert_int_eq(ferry_options_create(&o), 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", d.port);
    ck_assert_int_eq(ferry_options_set_servers(o, addr), 0);
    ck_assert_int_eq(ferry_options_set_reconnect(o, 1, 0, 10, 100, 20), 0);
    ck_assert_int_eq(ferry_options_set_max_inflight(o, 256), 0);
    ck_assert_int_eq(ferry_client_create(o, &g_loop.c), 0);
    ferry_options_destroy(o);
    ck_assert_int_eq(ferry_client_start_thread(g_loop.c), 0);
    ck_assert_int_eq(ferry_client_connect(g_loop.c, S_WAIT), 0);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, loop_pub, NULL), 0);
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    fprintf(stderr, "kill loop: seed %u\n", seed);
    srand(seed);
    for (int r = 0; r < ROUNDS; r++) {
        /* Acks flow again (the client is back), then a random moment. */
        long base = atomic_load(&g_loop.n_acked);
        int64_t end = s_now_ms() + S_WAIT;
        while (atomic_load(&g_loop.n_acked) < base + 50 && s_now_ms() < end) {
            struct timespec ts = {0, 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        ck_assert_msg(atomic_load(&g_loop.n_acked) >= base + 50, "round %d: no acks", r);
        struct timespec ts = {0, (long)(rand() % 40) * 1000 * 1000};
        nanosleep(&ts, NULL); /* the random kill moment, not a synchronisation */
        ck_assert_int_eq(ferryd_kill9(&d), 0);
        ck_assert_int_eq(ferryd_restart_same_port(&d, NULL), 0);
    }
    atomic_store(&g_loop.stop, 1);
    pthread_join(th, NULL);
    ck_assert_int_eq(ferry_flush(g_loop.c, 3 * S_WAIT), 0);
    long n = atomic_load(&g_loop.n_sent);
    uint64_t dups = ferry_client_duplicates(g_loop.c);
    fprintf(stderr, "kill loop: %d kills, %ld messages, %llu answered as duplicates\n", ROUNDS, n,
            (unsigned long long)dups);
    ck_assert_int_eq(atomic_load(&g_loop.n_failed), 0);
    /* With 256 in flight, some kill lands between a commit and its acks
     * (a run: 2,255 re-sends answered over 20 kills): the case this is for. */
    ck_assert_uint_gt(dups, 0);
    ck_assert_int_eq(atomic_load(&g_loop.n_acked), n);
    s_close(g_loop.c);

    /* Every message once, at the sequence it was acked with, in order. */
    ferry_client *c = s_client(&d, 0);
    ferry_topic_info ti;
    ck_assert_int_eq(ferry_admin_topic_info(c, "idem.loop", S_WAIT, &ti), 0);
    ck_assert_uint_eq(ti.messages, (uint64_t)n);
    ck_assert_uint_eq(ti.last_seq, (uint64_t)n);
    ferry_sub *s = s_sub(c, "idem.loop", FERRY_START_ALL, 0);
    static uint8_t seen[MAX_MSGS];
    memset(seen, 0, sizeof(seen));
    for (uint64_t want = 1; want <= (uint64_t)n; want++) {
        uint64_t seq;
        char buf[32];
        long i;
        s_next(s, &seq, buf, sizeof(buf));
        ck_assert_uint_eq(seq, want);
        ck_assert_int_eq(sscanf(buf, "n%ld", &i), 1);
        ck_assert(i >= 0 && i < n);
        ck_assert_msg(!seen[i], "%s stored twice", buf);
        seen[i] = 1;
        ck_assert_msg(atomic_load(&g_loop.seq[i]) == seq, "%s acked as %llu, stored as %llu", buf,
                      (unsigned long long)atomic_load(&g_loop.seq[i]), (unsigned long long)seq);
    }
    s_no_more(s, 100);
    ferry_unsubscribe(s);
    s_close(c);
}
END_TEST

Suite *test_suite(void);

Suite *test_suite(void)
{
    Suite *s = suite_create("idempotent");
    TCase *tc = tcase_create("resend_answered");
    tcase_set_timeout(tc, 240);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_resend_is_answered_with_the_first_sequence);
    suite_add_tcase(s, tc);
    tc = tcase_create("window_expires");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_dedupe_window_forgets_the_producer);
    suite_add_tcase(s, tc);
    tc = tcase_create("kill_loop");
    tcase_set_timeout(tc, 280);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_kill_loop_stores_every_message_once);
    suite_add_tcase(s, tc);
    return s;
}

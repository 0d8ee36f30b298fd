/*
 * test_client_store.c - libferry with the store: acks, queue groups, admin requests, start
 * positions and durables.
 *
 * Every test case starts its own broker (ferryd_start: port 0, fresh data
 * dir) so that cases are independent and can run in parallel. Nothing
 * waits for a fixed time: waits are for a condition, with generous
 * deadlines (the machine is small and busy). Helpers: client_test.h.
 *
 * Test cases (each a ctest entry test_client_store.<case>):
 *   callback_rules           blocking calls from a callback return -EDEADLK
 *   reconnect_fail_unacked   same, with unacked publishes failed by option
 *   stats_percentile         commit latency percentiles from a histogram
 *   ack                      explicit acks, message copies
 *   queue_group              a group shares the messages among its members
 *   admin                    server stats
 *   needs_store              sequences, start positions, topic admin; skipped
 *   needs_durables           durable consumers; skipped (exit 77) while the
 */
#include "client_test.h"

#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

START_TEST(test_ack_and_copy)
{
    ferry_client *c = client_connect(&DEFAULT_THREAD, NULL);
    ferry_sub_options *so;
    ck_assert_int_eq(ferry_sub_options_create(&so), 0);
    ck_assert_int_eq(ferry_sub_options_set_ack_mode(so, FERRY_ACK_EXPLICIT), 0);
    ck_assert_int_eq(ferry_sub_options_set_max_in_flight(so, 16), 0);
    ck_assert_int_eq(ferry_sub_options_set_ack_wait_ms(so, 60000), 0);
    ck_assert_int_eq(ferry_sub_options_set_max_deliver(so, 3), 0);
    ck_assert_int_eq(ferry_sub_options_set_queue_group(so, "workers"), 0);
    ferry_sub *se, *sn;
    ck_assert_int_eq(ferry_subscribe(c, "ack.a", so, NULL, NULL, WAIT_MS, &se), 0);
    ck_assert_int_eq(ferry_subscribe(c, "ack.a", NULL, NULL, NULL, WAIT_MS, &sn), 0);
    ferry_sub_options_destroy(so);
    ferry_header h = {"k", "v"};
    ferry_pub m = {.topic = "ack.a",
                   .payload = "p",
                   .payload_len = 1,
                   .key = "key",
                   .key_len = 3,
                   .headers = &h,
                   .n_headers = 1};
    uint64_t seq = 0;
    ck_assert_int_eq(ferry_publish_sync(c, &m, WAIT_MS, &seq), 0);
    ferry_msg *me, *mn, *copy;
    ck_assert_int_eq(ferry_sub_next(se, WAIT_MS, &me), 0);
    ck_assert_int_eq(ferry_sub_next(sn, WAIT_MS, &mn), 0);
    ck_assert_uint_eq(ferry_msg_sequence(me), seq);
    ck_assert_int_eq(ferry_msg_copy(me, &copy), 0);
    ck_assert_str_eq(ferry_msg_topic(copy), "ack.a");
    ck_assert_str_eq(ferry_msg_header(copy, "k"), "v");
    ck_assert_ptr_null(ferry_msg_header(copy, "nope"));
    const char *hk, *hv;
    ck_assert_int_eq(ferry_msg_header_at(copy, 0, &hk, &hv), 0);
    ck_assert_str_eq(hk, "k");
    ck_assert_str_eq(hv, "v");
    size_t kl;
    ck_assert_mem_eq(ferry_msg_key(copy, &kl), "key", 3);
    ck_assert_uint_eq(kl, 3);
    ck_assert_uint_eq(ferry_msg_sub_id(copy), ferry_sub_id(se));
    if (seq == 0) {
        /* Ephemeral topic (no store): nothing to ack by sequence. */
        ck_assert_int_eq(ferry_msg_ack(me, FERRY_ACK), -EINVAL);
    } else {
        ck_assert_int_eq(ferry_msg_ack(me, FERRY_ACK), 0);
        ck_assert_int_eq(ferry_msg_ack(copy, FERRY_NAK), 0);
        ck_assert_int_eq(ferry_msg_ack(mn, FERRY_ACK), -EINVAL); /* ACK_NONE sub */
        ck_assert_int_eq(ferry_msg_ack(me, (enum ferry_ack_kind)9), -EINVAL);
        ck_assert_int_eq(ferry_flush(c, WAIT_MS), 0);
        ck_assert_int_eq(ferry_client_state(c), FERRY_STATE_CONNECTED);
        ck_assert_int_eq(ferry_unsubscribe(se), 0);
        ck_assert_int_eq(ferry_msg_ack(copy, FERRY_ACK), FERRY_ENOSUB);
        se = NULL;
    }
    ferry_msg_destroy(me);
    ferry_msg_destroy(mn);
    ferry_msg_destroy(copy);
    ck_assert_int_eq(ferry_client_close(c, WAIT_MS), 0);
    ferry_client_destroy(c); /* frees se and sn if still held */
}
END_TEST

static ferry_sub *sub_group(ferry_client *c, const char *group)
{
    ferry_sub_options *so;
    ck_assert_int_eq(ferry_sub_options_create(&so), 0);
    if (group != NULL) {
        ck_assert_int_eq(ferry_sub_options_set_queue_group(so, group), 0);
    }
    ferry_sub *s;
    ck_assert_int_eq(ferry_subscribe(c, "qg.a", so, NULL, NULL, WAIT_MS, &s), 0);
    ferry_sub_options_destroy(so);
    return s;
}

static void wait_pending(ferry_sub *s, size_t n)
{
    int64_t deadline = now_ms() + WAIT_MS;
    while (ferry_sub_pending(s) < n && now_ms() < deadline) {
        struct timespec ts = {0, 5 * 1000000};
        nanosleep(&ts, NULL); /* polling a counter, bounded by the deadline */
    }
    ck_assert_uint_eq(ferry_sub_pending(s), n);
}

START_TEST(test_queue_group_shares_messages)
{
    ferry_client *a = client_connect(&DEFAULT_THREAD, NULL);
    ferry_client *b = client_connect(&DEFAULT_THREAD, NULL);
    ferry_sub *ga = sub_group(a, "grp");
    ferry_sub *gb = sub_group(b, "grp");
    ferry_sub *pa = sub_group(a, NULL); /* plain subscribers see everything */
    ferry_sub *pb = sub_group(b, NULL);
    for (int i = 0; i < 100; i++) {
        ferry_pub m = text_pub("qg.a", "x");
        ck_assert_int_eq(ferry_publish_async(a, &m, NULL, NULL, NULL), 0);
    }
    ck_assert_int_eq(ferry_flush(a, WAIT_MS), 0);
    /* Once each plain subscriber has all 100, every group delivery sent
     * before them on the same connection has arrived too. */
    wait_pending(pa, 100);
    wait_pending(pb, 100);
    ck_assert_uint_eq(ferry_sub_pending(ga) + ferry_sub_pending(gb), 100);
    ck_assert_int_eq(ferry_client_close(a, WAIT_MS), 0);
    ck_assert_int_eq(ferry_client_close(b, WAIT_MS), 0);
    ferry_client_destroy(a);
    ferry_client_destroy(b);
}
END_TEST

START_TEST(test_admin_stats)
{
    ferry_client *c = client_connect(&DEFAULT_THREAD, NULL);
    for (int i = 0; i < 5; i++) {
        ferry_pub m = text_pub("adm.a", "x");
        ck_assert_int_eq(ferry_publish_sync(c, &m, WAIT_MS, NULL), 0);
    }
    ferry_stats st;
    ck_assert_int_eq(ferry_admin_stats(c, WAIT_MS, &st), 0);
    ck_assert_uint_ge(st.msgs_in, 5);
    ck_assert_uint_ge(st.connections, 1);
    ck_assert_uint_gt(strlen(st.server_id), 0);
    ferry_server_info info;
    ck_assert_int_eq(ferry_client_server_info(c, &info), 0);
    ck_assert_str_eq(st.server_id, info.server_id);
    /* The store's commits: five acked publishes took one to five commits,
     * each counted once in the latency histogram. */
    if (st.topics > 0) {
        ck_assert_uint_ge(st.store_messages, 5);
        ck_assert_uint_ge(st.store_commits, 1);
        ck_assert_uint_le(st.store_commits, st.store_messages);
        uint64_t n = 0;
        for (int i = 0; i < FERRY_COMMIT_HIST_BUCKETS; i++) {
            n += st.commit_hist[i];
        }
        ck_assert_uint_eq(n, st.store_commits);
        ck_assert(ferry_stats_commit_percentile(st.commit_hist, 50) >= 1.0);
    }
    ck_assert_int_eq(ferry_client_close(c, WAIT_MS), 0);
    ferry_client_destroy(c);
}
END_TEST

/* Percentiles of a commit latency histogram: the upper bound of the
 * quarter-octave bucket where the rank falls. */
START_TEST(test_stats_commit_percentile)
{
    uint64_t h[FERRY_COMMIT_HIST_BUCKETS] = {0};
    ck_assert(ferry_stats_commit_percentile(h, 50) == 0);
    h[40] = 98; /* 1024 us <= t < 1218 us */
    h[60] = 2;  /* 32768 us <= t < 38968 us */
    double p50 = ferry_stats_commit_percentile(h, 50);
    ck_assert_msg(p50 > 1217 && p50 < 1218, "p50 %g", p50);
    ck_assert(ferry_stats_commit_percentile(h, 98) == p50);
    double p99 = ferry_stats_commit_percentile(h, 99);
    ck_assert_msg(p99 > 38967 && p99 < 38968, "p99 %g", p99);
    ck_assert(ferry_stats_commit_percentile(h, 0) == 0);
    ck_assert(ferry_stats_commit_percentile(h, 101) == 0);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Features that need the broker's store                                    */

/* Unchecked fixture (runs in the test program itself, before the case):
 * if the broker acks with sequence 0, it has no store yet, and the case is
 * skipped with exit code 77 (ctest SKIP_RETURN_CODE), saying why. */
static void needs_store_probe(void)
{
    signal(SIGPIPE, SIG_IGN);
    struct ferryd_proc p;
    if (ferryd_start(&p, NULL, NULL) != 0) {
        return; /* let the case fail on its own */
    }
    g_broker = p;
    ferry_client *c = client_new(&DEFAULT_THREAD, NULL);
    uint64_t seq = 0;
    ferry_server_info info = {0};
    int rc = ferry_client_connect(c, WAIT_MS);
    if (rc == 0) {
        ferry_pub m = text_pub("probe.store", "x");
        rc = ferry_publish_sync(c, &m, WAIT_MS, &seq);
        ferry_client_server_info(c, &info);
    }
    ferry_client_destroy(c);
    ferryd_stop(&g_broker);
    if (rc == 0 && seq == 0) {
        printf("SKIP needs_store: the broker acked a publish with sequence 0 (sync policy %d): "
               "it has no store yet, so start positions, durables and sequences cannot be "
               "tested\n",
               (int)info.sync_policy);
        fflush(stdout);
        exit(77);
    }
}

static void collect(ferry_sub *s, int n, uint64_t *seqs)
{
    for (int i = 0; i < n; i++) {
        ferry_msg *m;
        int rc = ferry_sub_next(s, WAIT_MS, &m);
        ck_assert_msg(rc == 0, "message %d: %s", i, ferry_strerror(rc));
        seqs[i] = ferry_msg_sequence(m);
        ferry_msg_destroy(m);
    }
}

static ferry_sub *sub_from(ferry_client *c, enum ferry_start start, int64_t arg,
                           const char *durable)
{
    ferry_sub_options *so;
    ck_assert_int_eq(ferry_sub_options_create(&so), 0);
    ck_assert_int_eq(ferry_sub_options_set_start(so, start, arg), 0);
    if (durable != NULL) {
        ck_assert_int_eq(ferry_sub_options_set_durable(so, durable), 0);
    }
    ferry_sub *s;
    int rc = ferry_subscribe(c, "st.a", so, NULL, NULL, WAIT_MS, &s);
    ck_assert_msg(rc == 0, "subscribe: %s", ferry_strerror(rc));
    ferry_sub_options_destroy(so);
    return s;
}

START_TEST(test_store_start_positions_and_admin)
{
    ferry_client *c = client_connect(&DEFAULT_THREAD, NULL);
    for (uint64_t i = 1; i <= 5; i++) {
        ferry_pub m = text_pub("st.a", "x");
        uint64_t seq = 0;
        ck_assert_int_eq(ferry_publish_sync(c, &m, WAIT_MS, &seq), 0);
        ck_assert_uint_eq(seq, i);
    }
    uint64_t got[5];
    ferry_sub *s = sub_from(c, FERRY_START_ALL, 0, NULL);
    collect(s, 5, got);
    for (int i = 0; i < 5; i++) {
        ck_assert_uint_eq(got[i], (uint64_t)i + 1);
    }
    ferry_unsubscribe(s);
    s = sub_from(c, FERRY_START_SEQUENCE, 3, NULL);
    collect(s, 3, got);
    ck_assert_uint_eq(got[0], 3);
    ck_assert_uint_eq(got[2], 5);
    ferry_unsubscribe(s);
    s = sub_from(c, FERRY_START_LAST, 2, NULL);
    collect(s, 2, got);
    ck_assert_uint_eq(got[0], 4);
    ck_assert_uint_eq(got[1], 5);
    ferry_unsubscribe(s);

    ferry_topic_info ti;
    ck_assert_int_eq(ferry_admin_topic_info(c, "st.a", WAIT_MS, &ti), 0);
    ck_assert_uint_eq(ti.last_seq, 5);
    ferry_topic_info *list = NULL;
    size_t n = 0;
    ck_assert_int_eq(ferry_admin_topics(c, "st.>", 0, WAIT_MS, &list, &n), 0);
    ck_assert_uint_ge(n, 1);
    ferry_free(list);
    uint64_t purged = 0;
    ck_assert_int_eq(ferry_admin_topic_purge(c, "st.a", WAIT_MS, &purged), 0);
    ck_assert_uint_eq(purged, 5);
    ck_assert_int_eq(ferry_client_close(c, WAIT_MS), 0);
    ferry_client_destroy(c);
}
END_TEST

/* Durable consumers (the issue after the store): skipped while the broker
 * refuses them. */
static void needs_durables_probe(void)
{
    signal(SIGPIPE, SIG_IGN);
    struct ferryd_proc p;
    if (ferryd_start(&p, NULL, NULL) != 0) {
        return; /* let the case fail on its own */
    }
    g_broker = p;
    ferry_client *c = client_new(&DEFAULT_THREAD, NULL);
    int rc = ferry_client_connect(c, WAIT_MS);
    char why[256] = "";
    if (rc == 0) {
        ferry_sub_options *so;
        ferry_sub *s;
        ferry_sub_options_create(&so);
        ferry_sub_options_set_durable(so, "probe");
        ferry_sub_options_set_ack_mode(so, FERRY_ACK_EXPLICIT);
        rc = ferry_subscribe(c, "probe.durable", so, NULL, NULL, WAIT_MS, &s);
        ferry_sub_options_destroy(so);
        if (rc == 0) {
            ferry_unsubscribe(s);
        } else {
            ferry_client_last_error(c, why, sizeof(why));
        }
    }
    ferry_client_destroy(c);
    ferryd_stop(&g_broker);
    if (rc == FERRY_EINVAL) {
        printf("SKIP needs_durables: the broker refuses durable consumers (%s)\n", why);
        fflush(stdout);
        exit(77);
    }
}

START_TEST(test_store_durable_resumes_after_ack)
{
    ferry_client *c = client_connect(&DEFAULT_THREAD, NULL);
    for (uint64_t i = 1; i <= 5; i++) {
        ferry_pub m = text_pub("st.a", "x");
        uint64_t seq = 0;
        ck_assert_int_eq(ferry_publish_sync(c, &m, WAIT_MS, &seq), 0);
        ck_assert_uint_eq(seq, i);
    }
    uint64_t got[5];
    /* Durable: ack 1..3, leave, come back: resumes at 4. */
    ferry_sub *s = sub_from(c, FERRY_START_ALL, 0, "dur1");
    for (int i = 0; i < 3; i++) {
        ferry_msg *m;
        ck_assert_int_eq(ferry_sub_next(s, WAIT_MS, &m), 0);
        ck_assert_int_eq(ferry_msg_ack(m, FERRY_ACK), 0);
        ferry_msg_destroy(m);
    }
    ck_assert_int_eq(ferry_flush(c, WAIT_MS), 0);
    ferry_unsubscribe(s);
    s = sub_from(c, FERRY_START_ALL, 0, "dur1");
    collect(s, 1, got);
    ck_assert_uint_eq(got[0], 4);
    ferry_unsubscribe(s);
    ck_assert_int_eq(ferry_client_close(c, WAIT_MS), 0);
    ferry_client_destroy(c);
}
END_TEST

Suite *test_suite(void);

Suite *test_suite(void)
{
    Suite *s = suite_create("client_store");
    TCase *t;
    t = client_tcase(s, tcase_create("stats_percentile"));
    tcase_add_test(t, test_stats_commit_percentile);
    t = client_tcase(s, tcase_create("ack"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_ack_and_copy);
    t = client_tcase(s, tcase_create("queue_group"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_queue_group_shares_messages);
    t = client_tcase(s, tcase_create("admin"));
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_admin_stats);
    t = client_tcase(s, tcase_create("needs_store"));
    tcase_add_unchecked_fixture(t, needs_store_probe, NULL);
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_store_start_positions_and_admin);
    t = client_tcase(s, tcase_create("needs_durables"));
    tcase_add_unchecked_fixture(t, needs_durables_probe, NULL);
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_store_durable_resumes_after_ack);
    return s;
}

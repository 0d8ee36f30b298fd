/*
 * 79_consumers_admin.c - managing durable consumers end to end, through
 * libferry against a real ferryd: the list (position, pending, lag, holders,
 * durables only in the store after a restart), delete (refused while held,
 * forced, unknown, a fresh start afterwards, only-in-store), and
 * `ferryd --verify` on the consumers table (a corrupt record named, a
 * healthy store passing).
 *
 * No sleep synchronises anything. An Ack has no answer, but the admin
 * request that follows it on the same connection is handled after it; a
 * PubAck received after an admin delete means the deletion is committed
 * (the store writer saves durables before the publications of its round).
 */
#include "store.h"
#include "store_e2e.h"

static struct ferryd_proc d;

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    ck_assert_int_eq(ferryd_start(&d, NULL, NULL), 0);
}

static void teardown(void)
{
    ferryd_stop(&d);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static ferry_sub *dsub_rc(ferry_client *c, const char *topic, const char *name, const char *group,
                          uint32_t max_in_flight, int *rc_out)
{
    ferry_sub_options *so;
    ck_assert_int_eq(ferry_sub_options_create(&so), 0);
    ck_assert_int_eq(ferry_sub_options_set_durable(so, name), 0);
    ck_assert_int_eq(ferry_sub_options_set_ack_mode(so, FERRY_ACK_EXPLICIT), 0);
    ck_assert_int_eq(ferry_sub_options_set_start(so, FERRY_START_ALL, 0), 0);
    ck_assert_int_eq(ferry_sub_options_set_queue_max(so, 1u << 20), 0);
    if (group) {
        ck_assert_int_eq(ferry_sub_options_set_queue_group(so, group), 0);
    }
    if (max_in_flight) {
        ck_assert_int_eq(ferry_sub_options_set_max_in_flight(so, max_in_flight), 0);
    }
    ferry_sub *s = NULL;
    *rc_out = ferry_subscribe(c, topic, so, NULL, NULL, S_WAIT, &s);
    ferry_sub_options_destroy(so);
    return s;
}

static ferry_sub *dsub(ferry_client *c, const char *topic, const char *name, const char *group,
                       uint32_t max_in_flight)
{
    int rc;
    ferry_sub *s = dsub_rc(c, topic, name, group, max_in_flight, &rc);
    ck_assert_msg(rc == 0, "durable subscribe %s/%s: %s", topic, name, ferry_strerror(rc));
    return s;
}

static ferry_msg *next(ferry_sub *s)
{
    ferry_msg *m;
    int rc = ferry_sub_next(s, S_WAIT, &m);
    ck_assert_msg(rc == 0, "next message: %s", ferry_strerror(rc));
    return m;
}

static void pub_n(ferry_client *c, const char *topic, int n)
{
    for (int i = 0; i < n; i++) {
        char text[32];
        snprintf(text, sizeof(text), "m%d", i);
        s_pub(c, topic, text);
    }
}

/* The listed durable (topic, name), copied into *out; 0 if not listed. */
static int find(ferry_client *c, const char *pattern, const char *topic, const char *name,
                ferry_consumer_info *out)
{
    ferry_consumer_info *v = NULL;
    size_t n = 0;
    int rc = ferry_admin_consumers(c, pattern, 0, S_WAIT, &v, &n);
    ck_assert_msg(rc == 0, "list consumers: %s", ferry_strerror(rc));
    int hit = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i].topic, topic) == 0 && strcmp(v[i].name, name) == 0) {
            *out = v[i];
            hit = 1;
        }
    }
    ferry_free(v);
    return hit;
}

START_TEST(test_consumers_list_shows_position_pending_and_lag)
{
    ferry_client *c = s_client(&d, 0);
    pub_n(c, "adm.a", 4);
    int64_t t_before5 = wall_ms(); /* seq 5 is published after this */
    s_pub(c, "adm.a", "five");
    int64_t t_after5 = wall_ms(); /* ... and before this */
    pub_n(c, "adm.a", 5);
    ferry_sub *s = dsub(c, "adm.a", "w", NULL, 0);
    for (uint64_t i = 1; i <= 10; i++) {
        ferry_msg *m = next(s);
        ck_assert_uint_eq(ferry_msg_sequence(m), i);
        if (i != 5 && i <= 6) {
            ck_assert_int_eq(ferry_msg_ack(m, FERRY_ACK), 0);
        }
        ferry_msg_destroy(m);
    }
    /* Another durable that acks everything: caught up. */
    ferry_sub *z = dsub(c, "adm.a", "z", NULL, 0);
    for (uint64_t i = 1; i <= 10; i++) {
        ferry_msg *m = next(z);
        ck_assert_int_eq(ferry_msg_ack(m, FERRY_ACK), 0);
        ferry_msg_destroy(m);
    }
    int64_t t_list = wall_ms();
    ferry_consumer_info k;
    ck_assert(find(c, "adm.*", "adm.a", "w", &k));
    int64_t t_end = wall_ms();
    /* 1..4 and 6 acked; 5, 7..10 pending. */
    ck_assert_uint_eq(k.ack_floor, 4);
    ck_assert_uint_eq(k.next_seq, 11);
    ck_assert_uint_eq(k.pending, 5);
    ck_assert_uint_eq(k.redelivered, 0);
    ck_assert_uint_eq(k.lag_messages, 6);
    /* The oldest message above the floor (5) was published between
     * t_before5 and t_after5, and listed between t_list and t_end (5 ms
     * of slack for the two clocks' rounding). */
    ck_assert_int_ge((int64_t)k.lag_ms, t_list - t_after5 - 5);
    ck_assert_int_le((int64_t)k.lag_ms, t_end - t_before5 + 5);
    ck_assert_uint_eq(k.holders, 1);
    /* the holding connection: "client N 127.0.0.1:PORT" */
    ck_assert_msg(strncmp(k.held_by, "client ", 7) == 0 && strstr(k.held_by, " 127.0.0.1:") &&
                      strstr(k.held_by, " more") == NULL,
                  "held_by '%s'", k.held_by);
    ck_assert_str_eq(k.queue_group, "");
    ck_assert_int_eq(k.is_loaded, 1);

    ck_assert(find(c, NULL, "adm.a", "z", &k));
    ck_assert_uint_eq(k.ack_floor, 10);
    ck_assert_uint_eq(k.pending, 0);
    ck_assert_uint_eq(k.lag_messages, 0);
    ck_assert_uint_eq(k.lag_ms, 0);

    /* The pattern filters by topic. */
    ck_assert(!find(c, "other.>", "adm.a", "w", &k));
    ferry_consumer_info *v = NULL;
    size_t n = 9;
    ck_assert_int_eq(ferry_admin_consumers(c, "bad..pattern", 0, S_WAIT, &v, &n),
                     FERRY_EINVALIDPATTERN);
    s_close(c);
}
END_TEST

START_TEST(test_consumers_lag_ms_grows_with_the_oldest_unacked)
{
    ferry_client *c = s_client(&d, 0);
    int64_t t0 = wall_ms();
    s_pub(c, "adm.t", "old");
    int64_t t_pub = wall_ms(); /* "old" was published before this */
    ferry_sub *s = dsub(c, "adm.t", "slow", NULL, 0);
    ferry_msg *m = next(s); /* delivered, never acked */
    ferry_msg_destroy(m);
    /* Poll (bounded) until the clock moved on by 100 ms: the lag in time is
     * then at least that old, whatever the machine's speed. */
    while (wall_ms() - t_pub < 100) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL); /* letting time pass, not synchronising */
    }
    ferry_consumer_info k;
    ck_assert(find(c, NULL, "adm.t", "slow", &k));
    int64_t t2 = wall_ms();
    ck_assert_uint_eq(k.lag_messages, 1);
    ck_assert_uint_eq(k.pending, 1);
    ck_assert_int_ge((int64_t)k.lag_ms, 95); /* 100 ms, less the clocks' rounding */
    ck_assert_int_le((int64_t)k.lag_ms, t2 - t0 + 5);
    s_close(c);
}
END_TEST

START_TEST(test_consumer_delete_refused_while_held_forced_then_fresh)
{
    ferry_client *c = s_client(&d, 0);
    pub_n(c, "adm.d", 3);
    ferry_sub *s = dsub(c, "adm.d", "h", "grp", 0);
    for (uint64_t i = 1; i <= 3; i++) {
        ferry_msg *m = next(s);
        ck_assert_int_eq(ferry_msg_ack(m, FERRY_ACK), 0);
        ferry_msg_destroy(m);
    }
    ferry_client *a = s_client(&d, 0);
    ferry_consumer_info k;
    ck_assert(find(a, NULL, "adm.d", "h", &k));
    ck_assert_uint_eq(k.holders, 1);
    ck_assert_str_eq(k.queue_group, "grp");
    ck_assert_int_eq(ferry_admin_consumer_delete(a, "adm.d", "h", 0, S_WAIT), FERRY_EDURABLEINUSE);
    ck_assert(find(a, NULL, "adm.d", "h", &k)); /* still there */
    ck_assert_int_eq(ferry_admin_consumer_delete(a, "adm.d", "nope", 0, S_WAIT), FERRY_ENOCONSUMER);
    ck_assert_int_eq(ferry_admin_consumer_delete(a, "adm.d", "h", 1, S_WAIT), 0);
    /* The holder's subscription ends with the code that says why. */
    ferry_msg *m = NULL;
    int rc = ferry_sub_next(s, S_WAIT, &m);
    ck_assert_msg(rc == FERRY_ECONSUMERDELETED, "holder's next: %s", ferry_strerror(rc));
    ck_assert(!find(a, NULL, "adm.d", "h", &k));
    ck_assert_int_eq(ferry_admin_consumer_delete(a, "adm.d", "h", 1, S_WAIT), FERRY_ENOCONSUMER);
    /* A new durable of that name starts afresh: from 1 (START_ALL), not
     * after the 3 the deleted one acked. */
    ferry_sub *s2 = dsub(c, "adm.d", "h", NULL, 0);
    m = next(s2);
    ck_assert_uint_eq(ferry_msg_sequence(m), 1);
    ck_assert_uint_eq(ferry_msg_attempt(m), 1);
    ferry_msg_destroy(m);
    ck_assert(find(a, NULL, "adm.d", "h", &k));
    ck_assert_uint_eq(k.ack_floor, 0);
    s_close(a);
    s_close(c);
}
END_TEST

START_TEST(test_consumers_lists_and_deletes_a_durable_only_in_the_store)
{
    ferry_client *c = s_client(&d, 0);
    pub_n(c, "adm.r", 3);
    ferry_sub *s = dsub(c, "adm.r", "r", NULL, 0);
    for (uint64_t i = 1; i <= 3; i++) {
        ferry_msg *m = next(s);
        if (i <= 2) {
            ck_assert_int_eq(ferry_msg_ack(m, FERRY_ACK), 0);
        }
        ferry_msg_destroy(m);
    }
    s_pub(c, "adm.barrier", "b"); /* the acks are committed */
    ferry_client_destroy(c);
    ck_assert_int_eq(ferryd_kill9(&d), 0);
    ck_assert_int_eq(ferryd_restart(&d, NULL), 0);

    c = s_client(&d, 0);
    ferry_consumer_info k;
    ck_assert(find(c, "adm.r", "adm.r", "r", &k));
    ck_assert_int_eq(k.is_loaded, 0);
    ck_assert_uint_eq(k.ack_floor, 2);
    ck_assert_uint_eq(k.next_seq, 4);
    ck_assert_uint_eq(k.pending, 1);
    ck_assert_uint_eq(k.lag_messages, 1);
    ck_assert_uint_eq(k.holders, 0);
    ck_assert_str_eq(k.held_by, "");
    ck_assert_int_eq(ferry_admin_consumer_delete(c, "adm.r", "r", 0, S_WAIT), 0);
    ck_assert(!find(c, NULL, "adm.r", "r", &k));
    s_pub(c, "adm.barrier", "b"); /* the deletion is committed */
    ferry_client_destroy(c);
    ck_assert_int_eq(ferryd_kill9(&d), 0);
    ck_assert_int_eq(ferryd_restart(&d, NULL), 0);
    c = s_client(&d, 0);
    ck_assert(!find(c, NULL, "adm.r", "r", &k));
    s_close(c);
}
END_TEST

START_TEST(test_verify_names_a_corrupt_consumer_record)
{
    ferry_client *c = s_client(&d, 0);
    pub_n(c, "adm.v", 2);
    ferry_sub *s = dsub(c, "adm.v", "ok", NULL, 0);
    ferry_msg *m = next(s);
    ck_assert_int_eq(ferry_msg_ack(m, FERRY_ACK), 0);
    ferry_msg_destroy(m);
    s_pub(c, "adm.barrier", "b");
    ferry_client_destroy(c);
    ck_assert_int_eq(ferryd_kill9(&d), 0);

    char report[8192];
    int st = s_verify(d.data_dir, report, sizeof(report));
    ck_assert_msg(st == 0, "verify of a healthy store exited %d: %s", st, report);
    ck_assert_ptr_nonnull(strstr(report, " 1 consumers;"));

    /* Two bad records, written through the store as the broker would. */
    struct store *so;
    char err[256];
    ck_assert_int_eq(store_open(d.data_dir, NULL, &so, err, sizeof(err)), 0);
    unsigned char beyond[16] = {'D', 1, 0, 0, 99}; /* next_seq 99 > last_seq 3 + 1 */
    struct store_kv recs[] = {
        {"adm.v\0garbage", 13, "not a record", 12},
        {"adm.v\0ahead", 11, (const char *)beyond, sizeof(beyond)},
    };
    ck_assert_int_eq(store_consumers_put(so, recs, 2), 0);
    store_close(so);
    st = s_verify(d.data_dir, report, sizeof(report));
    ck_assert_msg(st == 1, "verify exited %d: %s", st, report);
    ck_assert_ptr_nonnull(strstr(report, "consumer 'garbage' on 'adm.v': not a consumer record"));
    ck_assert_ptr_nonnull(strstr(report, "consumer 'ahead' on 'adm.v': next_seq 99 beyond"));
    ck_assert_ptr_null(strstr(report, "consumer 'ok'"));
    ck_assert_ptr_nonnull(strstr(report, " 2 consumers)"));
    ck_assert_int_eq(ferryd_restart(&d, NULL), 0); /* teardown stops it */
}
END_TEST

/* Poll (bounded) until (topic, name) is no longer listed. */
static void wait_unlisted(ferry_client *c, const char *topic, const char *name)
{
    int64_t end = s_now_ms() + S_WAIT;
    ferry_consumer_info k;
    while (find(c, NULL, topic, name, &k)) {
        ck_assert_msg(s_now_ms() < end, "durable %s never expired", name);
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL); /* poll interval, not a synchronisation */
    }
}

START_TEST(test_consumer_max_idle_removes_unheld_durables)
{
    static const char *const args[] = {"--consumer-max-idle", "300ms", NULL};
    ferryd_stop(&d);
    ck_assert_int_eq(ferryd_start(&d, NULL, args), 0);
    ferry_client *c = s_client(&d, 0);
    pub_n(c, "adm.i", 2);
    ferry_client *h = s_client(&d, 0);
    ferry_sub *kept = dsub(h, "adm.i", "kept", NULL, 0);
    ferry_msg *m = next(kept);
    ck_assert_int_eq(ferry_msg_ack(m, FERRY_ACK), 0);
    ferry_msg_destroy(m);
    ferry_client *g = s_client(&d, 0);
    dsub(g, "adm.i", "gone", NULL, 0);
    int64_t t_release = s_now_ms();
    s_close(g); /* released: idle from now on */
    wait_unlisted(c, "adm.i", "gone");
    ck_assert_int_ge(s_now_ms() - t_release, 300 - 5);
    ferry_consumer_info k;
    ck_assert(find(c, NULL, "adm.i", "kept", &k)); /* held: stays */
    ck_assert_uint_eq(k.holders, 1);

    /* After a restart "kept" is only in the store; idle since the start. */
    s_pub(h, "adm.barrier", "b"); /* its ack is committed */
    ferry_client_destroy(h);
    ferry_client_destroy(c);
    ck_assert_int_eq(ferryd_kill9(&d), 0);
    ck_assert_int_eq(ferryd_restart(&d, args), 0);
    c = s_client(&d, 0);
    wait_unlisted(c, "adm.i", "kept");
    /* Gone for good: a new durable of that name starts afresh. */
    ferry_sub *s2 = dsub(c, "adm.i", "kept", NULL, 0);
    m = next(s2);
    ck_assert_uint_eq(ferry_msg_sequence(m), 1);
    ferry_msg_destroy(m);
    s_close(c);
}
END_TEST

/* A durable nobody holds leaves the broker's memory (its state is stored)
 * and comes back as it was at the next subscription. */
START_TEST(test_unheld_durable_released_from_memory_and_reloaded)
{
    ferry_client *c = s_client(&d, 0);
    pub_n(c, "adm.rel", 3);
    ferry_client *k = s_client(&d, 0);
    ferry_sub_options *so;
    ck_assert_int_eq(ferry_sub_options_create(&so), 0);
    ck_assert_int_eq(ferry_sub_options_set_durable(so, "rel"), 0);
    ck_assert_int_eq(ferry_sub_options_set_start(so, FERRY_START_ALL, 0), 0);
    ferry_sub *s;
    ck_assert_int_eq(ferry_subscribe(k, "adm.rel", so, NULL, NULL, S_WAIT, &s), 0);
    ferry_msg *m;
    ck_assert_int_eq(ferry_sub_next(s, S_WAIT, &m), 0);
    ck_assert_uint_eq(ferry_msg_sequence(m), 1);
    ck_assert_int_eq(ferry_msg_ack(m, FERRY_ACK), 0);
    ferry_msg_destroy(m);
    ck_assert_int_eq(ferry_flush(k, S_WAIT), 0); /* the ack is stored */
    s_close(k);
    ferry_consumer_info ci;
    ck_assert(find(c, "adm.rel", "adm.rel", "rel", &ci));
    int64_t end = s_now_ms() + S_WAIT;
    while (ci.is_loaded && s_now_ms() < end) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL); /* poll interval */
        ck_assert(find(c, "adm.rel", "adm.rel", "rel", &ci));
    }
    ck_assert_msg(!ci.is_loaded, "the unheld durable stayed in memory");
    ck_assert_uint_eq(ci.ack_floor, 1);
    k = s_client(&d, 0);
    ck_assert_int_eq(ferry_subscribe(k, "adm.rel", so, NULL, NULL, S_WAIT, &s), 0);
    ferry_sub_options_destroy(so);
    ck_assert_int_eq(ferry_sub_next(s, S_WAIT, &m), 0);
    ck_assert_uint_eq(ferry_msg_sequence(m), 2); /* 2 and 3 were delivered, not acked */
    ferry_msg_destroy(m);
    s_close(k);
    s_close(c);
}
END_TEST

static void add_case(Suite *s, TCase *tc, const TTest *t)
{
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, t);
    suite_add_tcase(s, tc);
}

Suite *test_suite(void);

Suite *test_suite(void)
{
    Suite *s = suite_create("consumers_admin");
    add_case(s, tcase_create("list_position_pending_lag"),
             test_consumers_list_shows_position_pending_and_lag);
    add_case(s, tcase_create("list_lag_ms"), test_consumers_lag_ms_grows_with_the_oldest_unacked);
    add_case(s, tcase_create("delete_held_forced_fresh"),
             test_consumer_delete_refused_while_held_forced_then_fresh);
    add_case(s, tcase_create("store_only_list_delete"),
             test_consumers_lists_and_deletes_a_durable_only_in_the_store);
    add_case(s, tcase_create("verify_corrupt_record"), test_verify_names_a_corrupt_consumer_record);
    add_case(s, tcase_create("max_idle"), test_consumer_max_idle_removes_unheld_durables);
    add_case(s, tcase_create("release_reload"),
             test_unheld_durable_released_from_memory_and_reloaded);
    return s;
}

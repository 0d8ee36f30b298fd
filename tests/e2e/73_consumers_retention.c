/*
 * 73_consumers_retention.c - retention rules end to end: by message count,
 * by bytes and by age; a durable consumer behind the trim resumes at the
 * oldest kept message and is told how many it missed; trimming under
 * publish load never stops acknowledgements (progress, not timing).
 * Every wait polls with a timeout.
 */
#include "store_e2e.h"

#include <pthread.h>
#include <stdatomic.h>

static struct ferryd_proc d;

static const char *const RULES[] = {
    "--retention",
    "ret.count max-msgs 10",
    "--retention",
    "ret.bytes max-bytes 1000",
    "--retention",
    "ret.age max-age 300ms",
    "--retention",
    "ret.dur max-msgs 5",
    "--retention",
    "ret.load.* max-msgs 100",
    "--retention-interval-ms",
    "20",
    NULL,
};

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    ck_assert_int_eq(ferryd_start(&d, NULL, RULES), 0);
}

static void teardown(void)
{
    ferryd_stop(&d);
}

/* Poll the topic's info until pred holds (bounded). */
static ferry_topic_info wait_info(ferry_client *c, const char *topic, uint64_t max_msgs)
{
    int64_t end = s_now_ms() + S_WAIT;
    for (;;) {
        ferry_topic_info ti;
        int rc = ferry_admin_topic_info(c, topic, S_WAIT, &ti);
        ck_assert_msg(rc == 0, "topic info %s: %s", topic, ferry_strerror(rc));
        if (ti.messages <= max_msgs) {
            return ti;
        }
        ck_assert_msg(s_now_ms() < end, "%s still holds %llu messages", topic,
                      (unsigned long long)ti.messages);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL); /* poll interval */
    }
}

static void pub_sized(ferry_client *c, const char *topic, int n, size_t size)
{
    char buf[256];
    memset(buf, 'r', sizeof(buf));
    for (int i = 0; i < n; i++) {
        ferry_pub m = {.topic = topic, .payload = buf, .payload_len = size};
        uint64_t seq;
        int rc = ferry_publish_sync(c, &m, S_WAIT, &seq);
        ck_assert_msg(rc == 0, "publish: %s", ferry_strerror(rc));
    }
}

START_TEST(test_retention_by_count)
{
    ferry_client *c = s_client(&d, 0);
    pub_sized(c, "ret.count", 50, 8);
    ferry_topic_info ti = wait_info(c, "ret.count", 10);
    ck_assert_uint_eq(ti.messages, 10);
    ck_assert_uint_eq(ti.first_seq, 41);
    ck_assert_uint_eq(ti.last_seq, 50);
    ferry_sub *s = s_sub(c, "ret.count", FERRY_START_ALL, 0);
    for (uint64_t i = 41; i <= 50; i++) {
        uint64_t seq;
        char buf[16];
        s_next(s, &seq, buf, sizeof(buf));
        ck_assert_uint_eq(seq, i);
    }
    s_close(c);
}
END_TEST

START_TEST(test_retention_by_bytes)
{
    ferry_client *c = s_client(&d, 0);
    pub_sized(c, "ret.bytes", 20, 100);
    ferry_topic_info ti = wait_info(c, "ret.bytes", 10);
    ck_assert_uint_le(ti.bytes, 1000);
    ck_assert_uint_eq(ti.messages, 10);
    ck_assert_uint_eq(ti.first_seq, 11);
    s_close(c);
}
END_TEST

START_TEST(test_retention_by_age_keeps_the_newest)
{
    ferry_client *c = s_client(&d, 0);
    pub_sized(c, "ret.age", 5, 10);
    /* Older than 300 ms goes; the newest message always stays. */
    ferry_topic_info ti = wait_info(c, "ret.age", 1);
    ck_assert_uint_eq(ti.first_seq, 5);
    ck_assert_uint_eq(ti.last_seq, 5);
    s_close(c);
}
END_TEST

START_TEST(test_durable_behind_the_trim_is_told_what_it_missed)
{
    ferry_client *c = s_client(&d, 0);
    ferry_sub_options *so;
    ck_assert_int_eq(ferry_sub_options_create(&so), 0);
    ck_assert_int_eq(ferry_sub_options_set_durable(so, "rd"), 0);
    ck_assert_int_eq(ferry_sub_options_set_ack_mode(so, FERRY_ACK_EXPLICIT), 0);
    ferry_sub *s;
    ck_assert_int_eq(ferry_subscribe(c, "ret.dur", so, NULL, NULL, S_WAIT, &s), 0);
    ferry_unsubscribe(s);
    pub_sized(c, "ret.dur", 20, 8);
    wait_info(c, "ret.dur", 5);
    ck_assert_int_eq(ferry_subscribe(c, "ret.dur", so, NULL, NULL, S_WAIT, &s), 0);
    ferry_sub_options_destroy(so);
    for (uint64_t i = 16; i <= 20; i++) {
        ferry_msg *m;
        ck_assert_int_eq(ferry_sub_next(s, S_WAIT, &m), 0);
        ck_assert_uint_eq(ferry_msg_sequence(m), i);
        ck_assert_uint_eq(ferry_msg_missed(m), i == 16 ? 15 : 0);
        ck_assert_int_eq(ferry_msg_ack(m, FERRY_ACK), 0);
        ferry_msg_destroy(m);
    }
    s_close(c);
}
END_TEST

struct loader {
    const struct ferryd_proc *d;
    const char *topic;
    int n;
    atomic_int done;
    int rc;
};

static void *load(void *arg)
{
    struct loader *l = arg;
    ferry_client *c = s_client(l->d, 0);
    for (int i = 0; i < l->n && l->rc == 0; i++) {
        ferry_pub m = {.topic = l->topic, .payload = "0123456789abcdef", .payload_len = 16};
        uint64_t seq;
        l->rc = ferry_publish_sync(c, &m, S_WAIT, &seq);
        atomic_store(&l->done, i + 1);
    }
    s_close(c);
    return NULL;
}

/* Publishers keep getting PubAcks while their topics are trimmed: the
 * trim is seen to happen (first_seq moves) while publishing goes on. */
START_TEST(test_trim_under_load_keeps_acks_flowing)
{
    enum { N = 1000 };
    struct loader l[2] = {{&d, "ret.load.a", N, 0, 0}, {&d, "ret.load.b", N, 0, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(pthread_create(&th[i], NULL, load, &l[i]), 0);
    }
    ferry_client *c = s_client(&d, 0);
    int saw_trim_during_load = 0;
    int64_t end = s_now_ms() + 4 * S_WAIT;
    while ((atomic_load(&l[0].done) < N || atomic_load(&l[1].done) < N) && s_now_ms() < end) {
        ferry_topic_info ti;
        if (ferry_admin_topic_info(c, "ret.load.a", S_WAIT, &ti) == 0 && ti.first_seq > 1 &&
            atomic_load(&l[0].done) < N) {
            saw_trim_during_load = 1;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL); /* poll interval */
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(l[i].rc == 0, "publisher %d: %s", i, ferry_strerror(l[i].rc));
        ck_assert_int_eq(atomic_load(&l[i].done), N);
    }
    ck_assert_msg(saw_trim_during_load, "no trim was seen while publishing");
    ferry_topic_info ti = wait_info(c, "ret.load.a", 100);
    ck_assert_uint_eq(ti.last_seq, N);
    ti = wait_info(c, "ret.load.b", 100);
    ck_assert_uint_eq(ti.last_seq, N);
    s_close(c);
    /* The trimmed store is consistent (counters, sequences, time index). */
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "'%s' --verify '%s' > /dev/null", FERRYD_PATH, d.data_dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* The same rules from a config file: one line per rule, several words. */
START_TEST(test_retention_from_config_file)
{
    ferryd_stop(&d);
    char path[] = "/tmp/ferry-ret-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    const char *text = "# retention rules\n"
                       "retention ret.cf max-msgs 3 max-age 1h   # trailing comment\n"
                       "retention_interval_ms 20\n";
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    const char *const args[] = {"--config", path, NULL};
    ck_assert_int_eq(ferryd_start(&d, NULL, args), 0);
    unlink(path);
    ferry_client *c = s_client(&d, 0);
    pub_sized(c, "ret.cf", 10, 8);
    ferry_topic_info ti = wait_info(c, "ret.cf", 3);
    ck_assert_uint_eq(ti.first_seq, 8);
    s_close(c);
}
END_TEST

static void add(Suite *s, TCase *t, const TTest *test)
{
    tcase_set_timeout(t, 120);
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test);
    suite_add_tcase(s, t);
}

Suite *test_suite(void);

Suite *test_suite(void)
{
    Suite *s = suite_create("e2e_retention");
    add(s, tcase_create("retention_count"), test_retention_by_count);
    add(s, tcase_create("retention_bytes"), test_retention_by_bytes);
    add(s, tcase_create("retention_age"), test_retention_by_age_keeps_the_newest);
    add(s, tcase_create("retention_durable_missed"),
        test_durable_behind_the_trim_is_told_what_it_missed);
    add(s, tcase_create("retention_under_load"), test_trim_under_load_keeps_acks_flowing);
    add(s, tcase_create("retention_config_file"), test_retention_from_config_file);
    return s;
}

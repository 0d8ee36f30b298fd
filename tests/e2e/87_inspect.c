/*
 * 87_inspect.c - `ferryd --inspect DIR` end to end (issue 15, item 5):
 * beside a live broker and after a kill -9 (recovered first, like
 * --verify), as text and as one JSON document (checked by a strict JSON
 * parser): topics with counts and sequence ranges, durables with their
 * positions (a wildcard durable too), and messages with headers, key and
 * payload, binary ones escaped (text) or in base64 (JSON).
 */
#include "backup_e2e.h"
#include "json_check.h"

#include <signal.h>
#include <time.h>

Suite *test_suite(void);

static struct ferryd_proc d;
static char out[1 << 20];

static void setup(void)
{
    ck_assert_int_eq(ferryd_start(&d, NULL, NULL), 0);
}

static void teardown(void)
{
    if (d.pid) {
        ck_assert_int_eq(ferryd_stop(&d), 0); /* a clean exit: no sanitizer report either */
    }
}

/* ferryd --inspect DIR ARGS (a shell fragment), output into out. */
#define INSPECT(...) b_run(out, sizeof(out), "'%s' --inspect " __VA_ARGS__)

static void has(const char *needle)
{
    ck_assert_msg(strstr(out, needle) != NULL, "no «%s» in:\n%s", needle, out);
}

/* A live broker's store is read at its last LMDB commit, which may trail
 * what is acknowledged (durable in the log) by up to commit_interval_ms:
 * inspect as JSON until the output holds needle, for at most S_WAIT ms. */
static void inspect_live_until(const char *needle)
{
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        ck_assert_int_eq(INSPECT("'%s' --json", FERRYD_PATH, d.data_dir), 0);
        if (strstr(out, needle) != NULL) {
            return;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
        ck_assert_msg(ms < S_WAIT, "no «%s» after %ld ms in:\n%s", needle, ms, out);
        struct timespec ts = {0, 5 * 1000000L}; /* the poll's period */
        nanosleep(&ts, NULL);
    }
}

static void json_ok(void)
{
    size_t at = 0;
    ck_assert_msg(json_check(out, strlen(out), &at) == 0, "not JSON at byte %zu:\n%s", at, out);
}

static ferry_msg *next(ferry_sub *s)
{
    ferry_msg *m;
    ck_assert_int_eq(ferry_sub_next(s, S_WAIT, &m), 0);
    return m;
}

static ferry_sub *durable(ferry_client *c, const char *pattern, const char *name)
{
    ferry_sub_options *so;
    ck_assert_int_eq(ferry_sub_options_create(&so), 0);
    ck_assert_int_eq(ferry_sub_options_set_durable(so, name), 0);
    ck_assert_int_eq(ferry_sub_options_set_start(so, FERRY_START_ALL, 0), 0);
    ferry_sub *s;
    ck_assert_int_eq(ferry_subscribe(c, pattern, so, NULL, NULL, S_WAIT, &s), 0);
    ferry_sub_options_destroy(so);
    return s;
}

START_TEST(test_inspect_beside_a_live_broker)
{
    ferry_client *c = s_client(&d, 0);
    for (int i = 1; i <= 4; i++) {
        char text[16];
        snprintf(text, sizeof(text), "order %d", i);
        s_pub(c, "orders.eu", text);
    }
    ferry_header h[] = {{"region", "eu"}, {"q", "say \"hi\""}};
    const char quoted[] = "line one\nhe said \"hi\"\t\\";
    ferry_pub m = {.topic = "orders.eu",
                   .payload = quoted,
                   .payload_len = sizeof(quoted) - 1,
                   .key = "k-5",
                   .key_len = 3,
                   .headers = h,
                   .n_headers = 2};
    uint64_t seq;
    ck_assert_int_eq(ferry_publish_sync(c, &m, S_WAIT, &seq), 0);
    ck_assert_uint_eq(seq, 5);
    const unsigned char bin[] = {'a', 0x00, 0xff, 0xfe, '\n', 'z'};
    ferry_pub mb = {.topic = "bin.t", .payload = bin, .payload_len = sizeof(bin)};
    ck_assert_int_eq(ferry_publish_sync(c, &mb, S_WAIT, &seq), 0);
    s_pub(c, "w.a", "wild");
    /* billing: 3 read, 2 acked; wd (wildcard): its one message acked */
    ferry_sub *bs = durable(c, "orders.eu", "billing");
    for (int i = 0; i < 3; i++) {
        ferry_msg *x = next(bs);
        if (i < 2) {
            ck_assert_int_eq(ferry_msg_ack(x, FERRY_ACK), 0);
        }
        ferry_msg_destroy(x);
    }
    ferry_sub *ws = durable(c, "w.*", "wd");
    ferry_msg *x = next(ws);
    ck_assert_int_eq(ferry_msg_ack(x, FERRY_ACK), 0);
    ferry_msg_destroy(x);
    ck_assert_int_eq(ferry_flush(c, S_WAIT), 0); /* the positions are stored */
    /* wd's position, the last change: committed to LMDB too */
    inspect_live_until("\"name\":\"wd\",\"pattern\":\"w.*\",\"owner\":\"\",\"next_seq\":2,"
                       "\"ack_floor\":1,");

    ck_assert_int_eq(INSPECT("'%s' 2>&1", FERRYD_PATH, d.data_dir), 0);
    has("a running ferryd holds it");
    has("topics: 3");
    has("orders.eu");
    has("durables: 3");
    has("billing");
    has("(wildcard durable, from");
    has("(a position of w.*)");

    ck_assert_int_eq(INSPECT("'%s' --json", FERRYD_PATH, d.data_dir), 0);
    json_ok();
    has("\"state\":\"live\"");
    has("{\"name\":\"orders.eu\",\"id\":1,\"messages\":5,");
    has("\"first_seq\":1,\"last_seq\":5,\"last_time\":\"");
    /* all 5 handed out (the default in-flight window), 2 acked */
    has("{\"topic\":\"orders.eu\",\"name\":\"billing\",\"owner\":\"\",\"next_seq\":6,"
        "\"ack_floor\":2,\"pending\":3,\"redelivered\":0}");
    has("{\"topic\":\"w.*\",\"name\":\"wd\",\"owner\":\"\",\"is_wildcard\":true");
    has("{\"topic\":\"w.a\",\"name\":\"wd\",\"pattern\":\"w.*\",\"owner\":\"\",\"next_seq\":2,"
        "\"ack_floor\":1,");

    /* Messages: a range, escaped text; JSON with headers, key and base64. */
    ck_assert_int_eq(
        INSPECT("'%s' --topic orders.eu --from-seq 4 --count 2", FERRYD_PATH, d.data_dir), 0);
    has("messages of orders.eu from sequence 4:");
    has("seq 4  ");
    has("  payload: \"order 4\"");
    has("seq 5  ");
    has("  key: \"k-5\"");
    has("  header \"q\": \"say \\\"hi\\\"\"");
    has("  payload: \"line one\\nhe said \\\"hi\\\"\\t\\\\\"");
    has("2 messages shown");
    ck_assert_ptr_null(strstr(out, "seq 3 "));
    ck_assert_int_eq(INSPECT("'%s' --topic orders.eu --from-seq 5 --json", FERRYD_PATH, d.data_dir),
                     0);
    json_ok();
    has("\"topic\":\"orders.eu\",\"messages\":[{\"seq\":5,\"time\":\"");
    has("\"headers\":{\"region\":\"eu\",\"q\":\"say \\\"hi\\\"\"},\"key\":\"k-5\","
        "\"payload\":\"line one\\nhe said \\\"hi\\\"\\t\\\\\"}]");
    ck_assert_int_eq(INSPECT("'%s' --topic bin.t", FERRYD_PATH, d.data_dir), 0);
    has("  payload: \"a\\x00\\xff\\xfe\\nz\"");
    ck_assert_int_eq(INSPECT("'%s' --topic bin.t --json", FERRYD_PATH, d.data_dir), 0);
    json_ok();
    has("\"payload\":\"YQD//gp6\",\"encoding\":\"base64\"}");

    /* Mistakes: exit 1 for what cannot be read, 2 for the command line. */
    ck_assert_int_eq(INSPECT("'%s' --topic no.such 2>&1", FERRYD_PATH, d.data_dir), 1);
    has("no such stored topic");
    ck_assert_int_eq(INSPECT("/nonexistent/dir 2>&1", FERRYD_PATH), 1);
    ck_assert_int_eq(INSPECT("'%s' --count 3 2>&1", FERRYD_PATH, d.data_dir), 2);
    ck_assert_int_eq(INSPECT("2>&1", FERRYD_PATH), 2);
    ck_assert_int_eq(INSPECT("--help", FERRYD_PATH), 0);
    has("usage: ferryd --inspect DIR");
    s_close(c);
}
END_TEST

START_TEST(test_inspect_recovers_a_crashed_store_first)
{
    ferry_client *c = s_client(&d, 256);
    b_preload(c, "crash", 1, 500);
    s_close(c);
    ck_assert_int_eq(ferryd_kill9(&d), 0);
    ck_assert_int_eq(INSPECT("'%s' --json", FERRYD_PATH, d.data_dir), 0);
    json_ok();
    ck_assert_msg(strstr(out, "\"state\":\"recovered\"") || strstr(out, "\"state\":\"clean\""),
                  "%s", out);
    has("{\"name\":\"crash\",\"id\":1,\"messages\":500,");
    has("\"first_seq\":1,\"last_seq\":500,");
    /* Recovered once: a second look finds nothing left in the log. */
    ck_assert_int_eq(INSPECT("'%s'", FERRYD_PATH, d.data_dir), 0);
    has("nothing in the write-ahead log past the last checkpoint");
    ck_assert_int_eq(INSPECT("'%s' --topic crash --from-seq 500", FERRYD_PATH, d.data_dir), 0);
    char want[B_PAYLOAD + 1];
    b_payload(500, want);
    want[B_PAYLOAD] = '\0';
    has(want);
    /* The store still serves, from where it was. */
    ck_assert_int_eq(ferryd_restart(&d, NULL), 0);
    c = s_client(&d, 0);
    ck_assert_uint_eq(s_pub(c, "crash", "after"), 501);
    s_close(c);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("inspect");
    s_add_case(s, tcase_create("live"), test_inspect_beside_a_live_broker, setup, teardown);
    s_add_case(s, tcase_create("after_kill9"), test_inspect_recovers_a_crashed_store_first, setup,
               teardown);
    return s;
}

/*
 * 62_cli_admin.c - end-to-end tests of the `ferry` command-line tool (the real
 * binary, FERRY_CLI_PATH, run with pipes against a real ferryd): stats, topics, start positions and
 * durables. Helpers and how tests synchronise: cli_e2e.h.
 */
#include "cli_e2e.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

Suite *test_suite(void);

START_TEST(test_cli_stats_json_reports_counters)
{
    struct proc p, pub;
    ck_assert_int_eq(run(&pub, NULL, (const char *const[]){"pub", "cli.stats", "x", NULL}), 0);
    proc_free(&pub);
    /* The publish (not acked: `ferry pub` without --ack only flushes) is
     * logged, then committed to LMDB within commit_interval_ms: polled,
     * bounded, until both are counted. */
    struct jv r;
    long long end = now_ms() + WAIT_MS;
    for (;;) {
        ck_assert_int_eq(run(&p, NULL, (const char *const[]){"stats", "--json", NULL}), 0);
        json_parse(p.out_buf, &r);
        if (jnum(&r, "store_commits") >= 1 && jnum(&r, "store_syncs") >= 1) {
            break;
        }
        ck_assert_msg(now_ms() < end, "the publish was never committed: %s", p.out_buf);
        jv_free(&r);
        proc_free(&p);
    }
    ck_assert(jnum(&r, "connections") >= 1); /* ours */
    ck_assert(jnum(&r, "connections_total") >= 2);
    ck_assert(jnum(&r, "msgs_in") >= 1);
    ck_assert(jnum(&r, "bytes_in") > 0);
    ck_assert(jnum(&r, "uptime_ms") >= 0);
    ck_assert(jnum(&r, "slow_consumers") >= 0);
    ck_assert(strlen(jstr(&r, "server_version")) > 0);
    /* the stored publish was committed with one sync of the log */
    ck_assert(jnum(&r, "store_commits") >= 1);
    ck_assert(jnum(&r, "store_syncs") >= 1);
    ck_assert(jnum(&r, "sync_p50_us") > 0);
    ck_assert(jnum(&r, "store_map_size_max") >= jnum(&r, "store_map_size"));
    const struct jv *refused = jget(&r, "publish_refused");
    ck_assert(refused != NULL && refused->type == J_ARR && refused->n == 0);
    jv_free(&r);
    proc_free(&p);
    /* a refused publish is counted under its code: a topic above the
     * broker's max_topic_len (255), which libferry lets through */
    char long_topic[301];
    memset(long_topic, 'a', 300);
    long_topic[300] = '\0';
    ck_assert_int_eq(run(&pub, NULL, (const char *const[]){"pub", "--ack", long_topic, "x", NULL}),
                     1);
    proc_free(&pub);
    ck_assert_int_eq(run(&p, NULL, (const char *const[]){"stats", "--json", NULL}), 0);
    json_parse(p.out_buf, &r);
    refused = jget(&r, "publish_refused");
    ck_assert_msg(refused != NULL && refused->n == 1, "publish_refused: %s", p.out_buf);
    ck_assert(jnum(&refused->items[0], "count") == 1);
    ck_assert(jnum(&refused->items[0], "code") == -1007); /* FERRY_EINVALIDTOPIC */
    jv_free(&r);
    proc_free(&p);
    ck_assert_int_eq(run(&p, NULL, (const char *const[]){"stats", NULL}), 0);
    ck_assert_ptr_nonnull(strstr(p.out_buf, "connections"));
    ck_assert_ptr_nonnull(strstr(p.out_buf, "slow consumers"));
    proc_free(&p);
}
END_TEST

/*
 * Topic administration: with a broker that stores topics, a topic published
 * with acks is listed with its sequence range, shown by `topic info`, and
 * emptied by `topic purge`. A broker that cannot (no store) refuses: then
 * the CLI must exit 1 and pass the broker's reason on.
 */
START_TEST(test_cli_topics_info_purge)
{
    struct proc p, pub;
    ck_assert_int_eq(run(&pub, "a\nb\nc\n", (const char *const[]){"pub", "--ack", "cli.adm", NULL}),
                     0);
    proc_free(&pub);
    int rc = run(&p, NULL, (const char *const[]){"topics", "--json", NULL});
    if (rc == 1) {
        ck_assert_msg(p.err_buf && strncmp(p.err_buf, "ferry: topics: ", 15) == 0 &&
                          strlen(p.err_buf) > 16,
                      "refusal without a reason: %s", p.err_buf ? p.err_buf : "");
        proc_free(&p);
        ck_assert_int_eq(run(&p, NULL, (const char *const[]){"topic", "info", "cli.adm", NULL}), 1);
        ck_assert_ptr_nonnull(strstr(p.err_buf, "ferry: topic info cli.adm: "));
        proc_free(&p);
        return;
    }
    ck_assert_int_eq(rc, 0);
    struct jv r;
    json_parse(p.out_buf, &r);
    ck_assert_int_eq(r.type, J_ARR);
    const struct jv *t = NULL;
    for (size_t i = 0; i < r.n; i++) {
        if (strcmp(jstr(&r.items[i], "name"), "cli.adm") == 0) {
            t = &r.items[i];
        }
    }
    ck_assert_msg(t != NULL, "cli.adm not listed: %s", p.out_buf);
    ck_assert_int_eq((long)jnum(t, "messages"), 3);
    ck_assert_int_eq((long)jnum(t, "first_seq"), 1);
    ck_assert_int_eq((long)jnum(t, "last_seq"), 3);
    jv_free(&r);
    proc_free(&p);

    ck_assert_int_eq(
        run(&p, NULL, (const char *const[]){"topic", "info", "--json", "cli.adm", NULL}), 0);
    json_parse(p.out_buf, &r);
    ck_assert_str_eq(jstr(&r, "name"), "cli.adm");
    ck_assert_int_eq((long)jnum(&r, "last_seq"), 3);
    jv_free(&r);
    proc_free(&p);

    ck_assert_int_eq(run(&p, NULL, (const char *const[]){"topic", "purge", "cli.adm", NULL}), 0);
    ck_assert_ptr_nonnull(strstr(p.out_buf, "purged 3 messages"));
    proc_free(&p);
    ck_assert_int_eq(
        run(&p, NULL, (const char *const[]){"topic", "info", "--json", "cli.adm", NULL}), 0);
    json_parse(p.out_buf, &r);
    ck_assert_int_eq((long)jnum(&r, "messages"), 0);
    ck_assert_int_eq((long)jnum(&r, "last_seq"), 3);
    jv_free(&r);
    proc_free(&p);
}
END_TEST

static void expect_sub_output(const char *const *args, const char *want)
{
    struct proc p;
    int rc = run(&p, NULL, args);
    ck_assert_msg(rc == 0, "sub %s %s exited %d: %s", args[1], args[2], rc,
                  p.err_buf ? p.err_buf : "");
    ck_assert_str_eq(p.out_buf ? p.out_buf : "", want);
    proc_free(&p);
}

/*
 * Start positions and durable consumers need a broker that stores topics.
 * A store-less broker (PubAck sequence 0) must refuse a durable consumer
 * with its reason; a storing one replays from every start position and
 * resumes a durable consumer after its last ack.
 */
START_TEST(test_cli_sub_start_positions_and_durable_resume)
{
    struct proc sub, pub;
    sub_start(&sub, (const char *const[]){"--json", "--count", "1", "cli.replay", NULL});
    ck_assert_int_eq(
        run(&pub, NULL, (const char *const[]){"pub", "--ack", "cli.replay", "a", NULL}), 0);
    proc_free(&pub);
    ck_assert_int_eq(proc_wait(&sub, WAIT_MS), 0);
    struct jv first;
    json_parse(sub.out_buf, &first);
    double seq = jnum(&first, "seq");
    char from_time[64];
    snprintf(from_time, sizeof(from_time), "%s", jstr(&first, "time"));
    jv_free(&first);
    proc_free(&sub);

    if (seq == 0) {
        /* Ephemeral: nothing to replay, and no durable consumers. */
        ck_assert_int_eq(
            run(&sub, NULL, (const char *const[]){"sub", "--durable", "d1", "cli.replay", NULL}),
            1);
        ck_assert_msg(sub.err_buf &&
                          strstr(sub.err_buf, "ferry: cannot subscribe to 'cli.replay': "),
                      "stderr: %s", sub.err_buf ? sub.err_buf : "");
        proc_free(&sub);
        return;
    }
    ck_assert(seq == 1);
    ck_assert_int_eq(run(&pub, "b\nc\n", (const char *const[]){"pub", "--ack", "cli.replay", NULL}),
                     0);
    proc_free(&pub);

    expect_sub_output((const char *const[]){"sub", "--all", "--count", "3", "cli.replay", NULL},
                      "a\nb\nc\n");
    expect_sub_output(
        (const char *const[]){"sub", "--from-seq", "2", "--count", "2", "cli.replay", NULL},
        "b\nc\n");
    expect_sub_output(
        (const char *const[]){"sub", "--last", "1", "--count", "1", "cli.replay", NULL}, "c\n");
    expect_sub_output(
        (const char *const[]){"sub", "--from-time", from_time, "--count", "3", "cli.replay", NULL},
        "a\nb\nc\n");
    expect_sub_output((const char *const[]){"sub", "--ack", "--max-in-flight", "1", "--all",
                                            "--count", "3", "cli.replay", NULL},
                      "a\nb\nc\n");
    /* A durable consumer acks a and b, leaves, and comes back: the first
     * message it gets is c (what it acked is not sent again). */
    const char *const durable1[] = {"sub",     "--durable", "d1",         "--all",
                                    "--count", "2",         "cli.replay", NULL};
    int rc = run(&sub, NULL, durable1);
    ck_assert_msg(rc == 0, "durable sub exited %d: %s", rc, sub.err_buf ? sub.err_buf : "");
    ck_assert_str_eq(sub.out_buf ? sub.out_buf : "", "a\nb\n");
    proc_free(&sub);
    expect_sub_output(
        (const char *const[]){"sub", "--durable", "d1", "--count", "1", "cli.replay", NULL}, "c\n");
}
END_TEST

/* The durable w of cli.cons as `ferry consumers --json` lists it, polled
 * (bounded) until its ack floor is want_floor: the acks of a `ferry sub` that
 * just exited may still be on their way through the broker. */
static void consumer_listed(struct jv *r, const struct jv **w, double want_floor)
{
    long long end = now_ms() + WAIT_MS;
    for (;;) {
        struct proc p;
        int rc = run(&p, NULL, (const char *const[]){"consumers", "--json", "cli.cons", NULL});
        ck_assert_msg(rc == 0, "consumers exited %d: %s", rc, p.err_buf ? p.err_buf : "");
        json_parse(p.out_buf, r);
        proc_free(&p);
        ck_assert_int_eq(r->type, J_ARR);
        *w = NULL;
        for (size_t i = 0; i < r->n; i++) {
            if (strcmp(jstr(&r->items[i], "name"), "w") == 0) {
                *w = &r->items[i];
            }
        }
        if (*w != NULL && jnum(*w, "ack_floor") == want_floor) {
            return;
        }
        ck_assert_msg(now_ms() < end, "durable w never reached ack floor %g", want_floor);
        jv_free(r);
    }
}

START_TEST(test_cli_consumers_list_and_delete)
{
    struct proc p, sub;
    ck_assert_int_eq(run(&p, "a\nb\nc\n", (const char *const[]){"pub", "--ack", "cli.cons", NULL}),
                     0);
    proc_free(&p);
    /* A durable that acks a and b, then leaves. */
    expect_sub_output(
        (const char *const[]){"sub", "--durable", "w", "--all", "--count", "2", "cli.cons", NULL},
        "a\nb\n");
    struct jv r;
    const struct jv *w;
    consumer_listed(&r, &w, 2);
    ck_assert_str_eq(jstr(w, "topic"), "cli.cons");
    ck_assert_int_eq((long)jnum(w, "next_seq"), 4);
    ck_assert_int_eq((long)jnum(w, "pending"), 1);
    ck_assert_int_eq((long)jnum(w, "lag_messages"), 1);
    ck_assert_int_eq((long)jnum(w, "holders"), 0);
    jv_free(&r);

    /* The table: a header and one row with topic, name, floor, next. */
    ck_assert_int_eq(run(&p, NULL, (const char *const[]){"consumers", "cli.>", NULL}), 0);
    ck_assert_msg(strstr(p.out_buf, "ACK FLOOR") && strstr(p.out_buf, "HELD BY"), "table: %s",
                  p.out_buf);
    ck_assert_int_eq(count_lines(p.out_buf), 2);
    char *row = strchr(p.out_buf, '\n') + 1;
    char topic[64], name[64];
    unsigned long floor_, next;
    ck_assert_int_eq(sscanf(row, "%63s %63s %lu %lu", topic, name, &floor_, &next), 4);
    ck_assert_str_eq(topic, "cli.cons");
    ck_assert_str_eq(name, "w");
    ck_assert_uint_eq(floor_, 2);
    ck_assert_uint_eq(next, 4);
    proc_free(&p);

    /* Held: refused (exit 1, with the reason); --force ends the holder. */
    sub_start(&sub, (const char *const[]){"--durable", "w", "--count", "100", "cli.cons", NULL});
    ck_assert_int_eq(
        run(&p, NULL, (const char *const[]){"consumer", "delete", "cli.cons", "w", NULL}), 1);
    ck_assert_msg(p.err_buf && strstr(p.err_buf, "held"), "stderr: %s", p.err_buf ? p.err_buf : "");
    proc_free(&p);
    ck_assert_int_eq(
        run(&p, NULL,
            (const char *const[]){"consumer", "delete", "--force", "cli.cons", "w", NULL}),
        0);
    ck_assert_ptr_nonnull(strstr(p.out_buf, "deleted durable consumer w on cli.cons"));
    proc_free(&p);
    ck_assert_int_eq(proc_wait(&sub, WAIT_MS), 1);
    ck_assert_msg(sub.err_buf && strstr(sub.err_buf, "deleted"), "holder's stderr: %s",
                  sub.err_buf ? sub.err_buf : "");
    proc_free(&sub);

    ck_assert_int_eq(run(&p, NULL, (const char *const[]){"consumers", "--json", "cli.cons", NULL}),
                     0);
    ck_assert_str_eq(p.out_buf, "[]\n");
    proc_free(&p);
    ck_assert_int_eq(
        run(&p, NULL, (const char *const[]){"consumer", "delete", "cli.cons", "w", NULL}), 1);
    ck_assert_ptr_nonnull(strstr(p.err_buf, "no such durable consumer"));
    proc_free(&p);
    ck_assert_int_eq(run(&p, NULL, (const char *const[]){"consumer", "delete", "cli.cons", NULL}),
                     2);
    proc_free(&p);
    /* A new durable of that name starts afresh (from a, not after b). */
    expect_sub_output(
        (const char *const[]){"sub", "--durable", "w", "--all", "--count", "1", "cli.cons", NULL},
        "a\n");
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("cli_admin");
    cli_add_case(s, tcase_create("cli_stats"), test_cli_stats_json_reports_counters);
    cli_add_case(s, tcase_create("cli_topics"), test_cli_topics_info_purge);
    cli_add_case(s, tcase_create("cli_replay"), test_cli_sub_start_positions_and_durable_resume);
    cli_add_case(s, tcase_create("cli_consumers"), test_cli_consumers_list_and_delete);
    return s;
}

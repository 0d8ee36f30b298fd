/*
 * 01_pubsub.c - routing end to end: pub/sub, wildcards, queue groups,
 * unsubscribe, disconnect cleanup.
 */
#include "e2e_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

Suite *test_suite(void);

START_TEST(test_pubsub_delivers_in_order_with_ack)
{
    struct ferryd_proc d;
    START(&d, NULL);
    struct rawc sub, pub;
    CONNECT(&sub, d.port);
    CONNECT(&pub, d.port);
    ck_assert_int_eq(rawc_subscribe(&sub, 7, "orders.eu.created", NULL), 0);
    enum { N = 2000 };
    char msg[64];
    for (int i = 0; i < N; i++) {
        int n = snprintf(msg, sizeof(msg), "m%d", i);
        ck_assert_int_eq(
            rawc_publish(&pub, (uint64_t)i + 1, "orders.eu.created", msg, (size_t)n, i == N - 1),
            0);
    }
    Ferry__Frame *f;
    ck_assert_int_eq(rawc_recv_kind(&pub, T_WAIT, FERRY__FRAME__BODY_PUB_ACK, &f, NULL), 0);
    ck_assert_int_eq(f->pub_ack->id, N);
    ck_assert_int_eq(f->pub_ack->code, 0);
    for (int i = 0; i < N; i++) {
        Ferry__Deliver *dl = recv_deliver(&sub);
        int n = snprintf(msg, sizeof(msg), "m%d", i);
        ck_assert_int_eq(dl->n_sub_ids, 1);
        ck_assert_int_eq(dl->sub_ids[0], 7);
        ck_assert_str_eq(dl->topic, "orders.eu.created");
        ck_assert_int_eq(dl->payload.len, n);
        ck_assert_mem_eq(dl->payload.data, msg, (size_t)n);
        ck_assert_int_eq(dl->attempt, 1);
        ck_assert_int_gt(dl->publish_time, 0);
    }
    /* The publisher gets no deliveries: it has no subscription. */
    ck_assert_int_eq(rawc_ping(&pub, 99, T_WAIT), 0);
    rawc_close(&sub);
    rawc_close(&pub);
    STOP(&d);
}
END_TEST

START_TEST(test_wildcards_one_deliver_per_connection_with_all_ids)
{
    struct ferryd_proc d;
    START(&d, NULL);
    struct rawc sub, pub;
    CONNECT(&sub, d.port);
    CONNECT(&pub, d.port);
    ck_assert_int_eq(rawc_subscribe(&sub, 1, "a.*", NULL), 0);
    ck_assert_int_eq(rawc_subscribe(&sub, 2, "a.>", NULL), 0);
    ck_assert_int_eq(rawc_subscribe(&sub, 3, "*.b.c", NULL), 0);
    ck_assert_int_eq(rawc_subscribe(&sub, 4, "z", NULL), 0);
    const char *topics[] = {"a.b.c", "a.b", "x.b.c", "a", "a.b.c.d", "z"};
    /* expected id bitmasks */
    const unsigned want[] = {
        (1u << 2) | (1u << 3), (1u << 1) | (1u << 2), 1u << 3, 0, 1u << 2, 1u << 4};
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(rawc_publish(&pub, (uint64_t)i, topics[i], "x", 1, 0), 0);
    }
    unsigned got[6] = {0};
    int n_got = 0;
    for (int k = 0; k < 5; k++) { /* "a" matches nothing */
        Ferry__Deliver *dl = recv_deliver(&sub);
        int idx = -1;
        for (int i = 0; i < 6; i++) {
            if (strcmp(dl->topic, topics[i]) == 0) {
                idx = i;
            }
        }
        ck_assert_int_ge(idx, 0);
        ck_assert_msg(got[idx] == 0, "topic %s delivered twice", dl->topic);
        for (size_t j = 0; j < dl->n_sub_ids; j++) {
            got[idx] |= 1u << dl->sub_ids[j];
        }
        n_got++;
    }
    for (int i = 0; i < 6; i++) {
        ck_assert_msg(got[i] == want[i], "topic %s: ids 0x%x, want 0x%x", topics[i], got[i],
                      want[i]);
    }
    /* Nothing more: publish a marker on "z" (same worker order as itself). */
    ck_assert_int_eq(rawc_publish(&pub, 50, "z", "end", 3, 0), 0);
    Ferry__Deliver *dl = recv_deliver(&sub);
    ck_assert_str_eq(dl->topic, "z");
    ck_assert_int_eq(n_got, 5);
    rawc_close(&sub);
    rawc_close(&pub);
    STOP(&d);
}
END_TEST

START_TEST(test_queue_group_members_share_messages)
{
    struct ferryd_proc d;
    START(&d, NULL);
    enum { M = 3, N = 300 };
    struct rawc mem[M], plain, pub;
    for (int i = 0; i < M; i++) {
        CONNECT(&mem[i], d.port);
        ck_assert_int_eq(rawc_subscribe(&mem[i], 10, "jobs.>", "workers"), 0);
    }
    CONNECT(&plain, d.port);
    ck_assert_int_eq(rawc_subscribe(&plain, 20, "jobs.>", NULL), 0);
    CONNECT(&pub, d.port);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(rawc_publish(&pub, (uint64_t)i, "jobs.run", "j", 1, 0), 0);
    }
    /* The plain subscriber sees all of them. */
    for (int i = 0; i < N; i++) {
        Ferry__Deliver *dl = recv_deliver(&plain);
        ck_assert_int_eq(dl->sub_ids[0], 20);
    }
    /* Group members: each message exactly once across the group. Poll each
     * member in turn until all N are seen. */
    int count[M] = {0};
    int total = 0;
    while (total < N) {
        int progressed = 0;
        for (int i = 0; i < M; i++) {
            Ferry__Frame *f;
            int rc = rawc_recv(&mem[i], total == 0 ? T_WAIT : 200, &f);
            if (rc == 0) {
                ck_assert_int_eq(f->body_case, FERRY__FRAME__BODY_DELIVER);
                count[i]++;
                total++;
                progressed = 1;
            }
        }
        ck_assert_msg(progressed, "group stalled at %d of %d", total, N);
    }
    for (int i = 0; i < M; i++) {
        /* The workers spread a group's messages over its members; none may
         * take the others' share (a stored topic: each member also has
         * the group's shared set, for what a lagging member leaves). */
        ck_assert_msg(count[i] >= N / (4 * M), "member %d got %d of %d", i, count[i], N);
        ck_assert_int_eq(rawc_ping(&mem[i], 1, T_WAIT), 0); /* no extra delivery pending */
    }
    ck_assert_int_eq(total, N);
    for (int i = 0; i < M; i++) {
        rawc_close(&mem[i]);
    }
    rawc_close(&plain);
    rawc_close(&pub);
    STOP(&d);
}
END_TEST

START_TEST(test_unsubscribe_stops_deliveries_after_suback)
{
    struct ferryd_proc d;
    START(&d, NULL);
    struct rawc sub, pub;
    CONNECT(&sub, d.port);
    CONNECT(&pub, d.port);
    ck_assert_int_eq(rawc_subscribe(&sub, 1, "u.x", NULL), 0);
    ck_assert_int_eq(rawc_subscribe(&sub, 2, "u.>", NULL), 0);
    ck_assert_int_eq(rawc_publish(&pub, 1, "u.x", "a", 1, 0), 0);
    Ferry__Deliver *dl = recv_deliver(&sub);
    ck_assert_int_eq(dl->n_sub_ids, 2);
    /* Publish continuously while unsubscribing: after the SubAck, no
     * delivery may carry id 1. */
    for (int i = 0; i < 200; i++) {
        ck_assert_int_eq(rawc_publish(&pub, 2, "u.x", "b", 1, 0), 0);
    }
    Ferry__Unsubscribe um = FERRY__UNSUBSCRIBE__INIT;
    um.sub_id = 1;
    Ferry__Frame uf = FERRY__FRAME__INIT;
    uf.body_case = FERRY__FRAME__BODY_UNSUBSCRIBE;
    uf.unsubscribe = &um;
    ck_assert_int_eq(rawc_send(&sub, &uf), 0);
    for (int i = 0; i < 200; i++) {
        ck_assert_int_eq(rawc_publish(&pub, 3, "u.x", "c", 1, 0), 0);
    }
    ck_assert_int_eq(rawc_publish(&pub, 4, "u.x", "end", 3, 0), 0);
    int seen_suback = 0, n = 0;
    for (;;) {
        Ferry__Frame *f;
        ck_assert_int_eq(rawc_recv(&sub, T_WAIT, &f), 0);
        if (f->body_case == FERRY__FRAME__BODY_SUB_ACK) {
            ck_assert_int_eq(f->sub_ack->sub_id, 1);
            ck_assert_int_eq(f->sub_ack->code, 0);
            seen_suback = 1;
            continue;
        }
        ck_assert_int_eq(f->body_case, FERRY__FRAME__BODY_DELIVER);
        n++;
        if (seen_suback) {
            ck_assert_int_eq(f->deliver->n_sub_ids, 1);
            ck_assert_int_eq(f->deliver->sub_ids[0], 2);
        }
        if (f->deliver->payload.len == 3) {
            break;
        }
    }
    ck_assert(seen_suback);
    ck_assert_int_eq(n, 401);
    /* Unknown id. */
    ck_assert_int_eq(rawc_unsubscribe(&sub, 1), FERRY__ERROR_CODE__ERROR_UNKNOWN_SUBSCRIPTION);
    rawc_close(&sub);
    rawc_close(&pub);
    STOP(&d);
}
END_TEST

START_TEST(test_disconnect_removes_subscriptions)
{
    struct ferryd_proc d;
    START(&d, NULL);
    struct rawc admin, gone, stay, pub;
    CONNECT(&admin, d.port);
    CONNECT(&gone, d.port);
    CONNECT(&stay, d.port);
    CONNECT(&pub, d.port);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(rawc_subscribe(&gone, (uint64_t)i, "c.>", NULL), 0);
    }
    ck_assert_int_eq(rawc_subscribe(&stay, 1, "c.>", NULL), 0);
    Ferry__Stats s = stats_get(&admin, 1);
    ck_assert_int_eq(s.subscriptions, 6);
    ck_assert_int_eq(s.connections, 4);
    rawc_close(&gone);
    /* Poll until the broker has noticed. */
    struct timespec ts = {0, 20 * 1000 * 1000};
    int ok = 0;
    for (int i = 0; i < 500 && !ok; i++) {
        s = stats_get(&admin, 2);
        ok = s.subscriptions == 1 && s.connections == 3;
        if (!ok) {
            nanosleep(&ts, NULL);
        }
    }
    ck_assert_msg(ok, "subscriptions %llu connections %llu", (unsigned long long)s.subscriptions,
                  (unsigned long long)s.connections);
    for (int i = 0; i < 100; i++) {
        ck_assert_int_eq(rawc_publish(&pub, (uint64_t)i, "c.d", "p", 1, 0), 0);
    }
    for (int i = 0; i < 100; i++) {
        recv_deliver(&stay);
    }
    s = stats_get(&admin, 3);
    ck_assert_int_eq(s.msgs_in, 100);
    ck_assert_int_eq(s.msgs_out, 100);
    rawc_close(&admin);
    rawc_close(&stay);
    rawc_close(&pub);
    STOP(&d);
}
END_TEST

/* Publishes without headers take the in-place fast path, with headers the
 * full decoder: subscribers see the same fields either way. */
START_TEST(test_headers_key_and_empty_payload_survive_both_paths)
{
    struct ferryd_proc d;
    START(&d, NULL);
    struct rawc sub, pub;
    CONNECT(&sub, d.port);
    CONNECT(&pub, d.port);
    ck_assert_int_eq(rawc_subscribe(&sub, 3, "h.*", NULL), 0);

    Ferry__Header h1 = FERRY__HEADER__INIT, h2 = FERRY__HEADER__INIT;
    h1.key = (char *)"content-type";
    h1.value = (char *)"text/plain";
    h2.key = (char *)"trace";
    h2.value = (char *)"abc";
    Ferry__Header *hs[] = {&h1, &h2};
    Ferry__Publish m = FERRY__PUBLISH__INIT;
    m.id = 1;
    m.topic = (char *)"h.with";
    m.payload.data = (uint8_t *)"body";
    m.payload.len = 4;
    m.key.data = (uint8_t *)"k1";
    m.key.len = 2;
    m.n_headers = 2;
    m.headers = hs;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_PUBLISH;
    f.publish = &m;
    ck_assert_int_eq(rawc_send(&pub, &f), 0);
    /* Same topic (same worker, so order holds): no headers, a key, no payload. */
    m.id = 2;
    m.topic = (char *)"h.with";
    m.payload.len = 0;
    m.n_headers = 0;
    m.headers = NULL;
    ck_assert_int_eq(rawc_send(&pub, &f), 0);

    Ferry__Deliver *dl = recv_deliver(&sub);
    ck_assert_str_eq(dl->topic, "h.with");
    ck_assert_int_eq(dl->n_headers, 2);
    ck_assert_str_eq(dl->headers[0]->key, "content-type");
    ck_assert_str_eq(dl->headers[1]->value, "abc");
    ck_assert_int_eq(dl->key.len, 2);
    ck_assert_mem_eq(dl->key.data, "k1", 2);
    ck_assert_int_eq(dl->payload.len, 4);
    dl = recv_deliver(&sub);
    ck_assert_int_eq(dl->n_headers, 0);
    ck_assert_int_eq(dl->payload.len, 0);
    ck_assert_int_eq(dl->key.len, 2);
    ck_assert_int_eq(dl->attempt, 1);
    ck_assert_int_eq(dl->sequence, 2); /* a stored topic: its second message */
    ck_assert_int_eq(dl->n_sub_ids, 1);
    ck_assert_int_eq(dl->sub_ids[0], 3);
    rawc_close(&sub);
    rawc_close(&pub);
    STOP(&d);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("e2e_pubsub");
    TCase *tc;
    tc = tcase_create("pubsub_order_ack");
    tcase_add_test(tc, test_pubsub_delivers_in_order_with_ack);
    suite_add_tcase(s, tc);
    tc = tcase_create("headers_and_key");
    tcase_add_test(tc, test_headers_key_and_empty_payload_survive_both_paths);
    suite_add_tcase(s, tc);
    tc = tcase_create("wildcards");
    tcase_add_test(tc, test_wildcards_one_deliver_per_connection_with_all_ids);
    suite_add_tcase(s, tc);
    tc = tcase_create("queue_groups");
    tcase_add_test(tc, test_queue_group_members_share_messages);
    suite_add_tcase(s, tc);
    tc = tcase_create("unsubscribe");
    tcase_add_test(tc, test_unsubscribe_stops_deliveries_after_suback);
    suite_add_tcase(s, tc);
    tc = tcase_create("disconnect_cleanup");
    tcase_add_test(tc, test_disconnect_removes_subscriptions);
    suite_add_tcase(s, tc);
    return s;
}

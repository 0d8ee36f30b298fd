/*
 * 83_owned_consumers.c - durable consumers belong to their creator, end to
 * end: another user may not attach to a durable (and so cannot take or TERM
 * its messages), unless a `consume` rule or the admin right says so; the
 * owner is stored and survives a restart; dead letters go to
 * $DLQ.<topic>.<durable>, so two durables of one name never share one and
 * nobody writes into another's by naming a durable after it; and they are
 * published with the owner's rights, whoever holds the durable. Queue
 * groups belong to their first member's user while they have members.
 */
#include "auth_e2e.h"
#include "e2e_util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

Suite *test_suite(void);

static struct e2e_auth_dir ad;

/* alice, bob: may read orders.> and dead-letter into $DLQ.orders.>;
 * carol: may read orders.> and take over anyone's durable there (consume),
 * and join anyone's queue group g1, but not dead-letter; ops: everything,
 * admin. Passwords: the names. */
static const char carol_default[] = "allow carol consume orders.>\n"
                                    "allow carol group g1\n";

/* The file, with carol's extra rights carol_rules; written atomically. */
static void write_auth(const char *carol_rules)
{
    static char *hashes[4];
    static const char *const users[] = {"alice", "bob", "carol", "ops"};
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.tmp", ad.path);
    FILE *f = fopen(tmp, "w");
    ck_assert_ptr_nonnull(f);
    for (size_t i = 0; i < 4; i++) {
        if (hashes[i] == NULL) {
            hashes[i] = e2e_hash(users[i], "$6$", 1000);
        }
        fprintf(f, "user %s %s\n", users[i], hashes[i]);
    }
    fputs("allow alice subscribe orders.>\n"
          "allow alice publish $DLQ.orders.>\n"
          "allow bob subscribe orders.>\n"
          "allow bob publish $DLQ.orders.>\n"
          "allow carol subscribe orders.>\n"
          "allow ops publish >\n"
          "allow ops subscribe >\n"
          "allow ops admin\n",
          f);
    fputs(carol_rules, f);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(chmod(tmp, 0600), 0);
    ck_assert_int_eq(rename(tmp, ad.path), 0);
}

static void setup(void)
{
    e2e_auth_dir_make(&ad, "owned");
    write_auth(carol_default);
}

static void teardown(void)
{
    e2e_auth_dir_remove(&ad);
}

static void start(struct ferryd_proc *d)
{
    START(d, "--auth-file", ad.path, NULL);
}

/* Log in as user (password: the name) or fail. */
static void login(struct rawc *c, int port, const char *user)
{
    ck_assert_int_eq(rawc_open(c, port), 0);
    Ferry__Connect m = FERRY__CONNECT__INIT;
    m.protocol_version = 1;
    m.client_name = (char *)"e2e owned";
    m.username = (char *)user;
    m.password = (char *)user;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_CONNECT;
    f.connect = &m;
    ck_assert_int_eq(rawc_send(c, &f), 0);
    Ferry__Frame *r;
    ck_assert_int_eq(rawc_recv(c, T_WAIT, &r), 0);
    ck_assert_msg(r->body_case == FERRY__FRAME__BODY_CONNECTED, "%s: login refused", user);
}

/* Subscribe to durable name on topic with explicit acks; max_deliver > 0
 * sets one in flight, that max_deliver and a 100 ms ack wait. Returns the
 * SubAck's code. */
static int dsub(struct rawc *c, uint64_t id, const char *topic, const char *name,
                uint32_t max_deliver)
{
    Ferry__Subscribe s = FERRY__SUBSCRIBE__INIT;
    s.sub_id = id;
    s.pattern = (char *)topic;
    s.durable_name = (char *)name;
    s.start = FERRY__START_POSITION__START_ALL;
    s.ack_mode = FERRY__ACK_MODE__ACK_EXPLICIT;
    if (max_deliver) {
        s.max_in_flight = 1;
        s.ack_wait_ms = 100;
        s.max_deliver = max_deliver;
    }
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_SUBSCRIBE;
    f.subscribe = &s;
    ck_assert_int_eq(rawc_send(c, &f), 0);
    Ferry__Frame *r;
    ck_assert_int_eq(rawc_recv_kind(c, T_WAIT, FERRY__FRAME__BODY_SUB_ACK, &r, NULL), 0);
    ck_assert_uint_eq(r->sub_ack->sub_id, id);
    return (int)r->sub_ack->code;
}

/* Log in as user and attach to the durable: returns the SubAck's code,
 * after waiting (bounded) while a previous holder's close is not yet seen
 * (DURABLE_IN_USE). c stays open when the code is 0. */
static int attach(struct rawc *c, int port, const char *user, const char *topic, const char *name)
{
    long long deadline = e2e_ms_now() + T_WAIT;
    int code;
    for (;;) {
        login(c, port, user);
        code = dsub(c, 1, topic, name, 0);
        if (code != FERRY__ERROR_CODE__ERROR_DURABLE_IN_USE || e2e_ms_now() > deadline) {
            break;
        }
        rawc_close(c);
    }
    if (code != 0) {
        rawc_close(c);
    }
    return code;
}

static void send_ack(struct rawc *c, uint64_t sub_id, uint64_t seq, Ferry__Ack__Kind kind)
{
    Ferry__Ack a = FERRY__ACK__INIT;
    a.sub_id = sub_id;
    a.sequence = seq;
    a.kind = kind;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_ACK;
    f.ack = &a;
    ck_assert_int_eq(rawc_send(c, &f), 0);
}

static void publish(struct rawc *c, uint64_t id, const char *topic)
{
    ck_assert_int_eq(rawc_publish(c, id, topic, "x", 1, 1), 0);
    Ferry__Frame *f;
    ck_assert_int_eq(rawc_recv_kind(c, T_WAIT, FERRY__FRAME__BODY_PUB_ACK, &f, NULL), 0);
    ck_assert_uint_eq(f->pub_ack->id, id);
    ck_assert_int_eq(f->pub_ack->code, 0);
}

/* Nothing but the Pong arrives on c. */
static void nothing_else(struct rawc *c, uint64_t nonce)
{
    int skipped = -1;
    ck_assert_int_eq(rawc_ping_alone(c, nonce, T_WAIT, &skipped), 0);
    ck_assert_int_eq(skipped, 0);
}

static const char *header(const Ferry__Deliver *d, const char *key)
{
    for (size_t i = 0; i < d->n_headers; i++) {
        if (strcmp(d->headers[i]->key, key) == 0) {
            return d->headers[i]->value;
        }
    }
    return NULL;
}

/* The attack: bob, who may read the topic, attaches to alice's durable,
 * takes its unacked message and TERMs it away from her. Refused now. */
START_TEST(test_other_user_cannot_attach_or_term)
{
    struct ferryd_proc d;
    start(&d);
    struct rawc ops, a, b;
    login(&ops, d.port, "ops");
    publish(&ops, 1, "orders.x");
    ck_assert_int_eq(attach(&a, d.port, "alice", "orders.x", "work"), 0);
    ck_assert_uint_eq(recv_deliver(&a)->sequence, 1);
    rawc_close(&a); /* not acked: it stays alice's, pending */

    ck_assert_int_eq(attach(&b, d.port, "bob", "orders.x", "work"),
                     FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED);
    /* a TERM for it from bob's connection, without the subscription, is
     * an ack for nothing */
    login(&b, d.port, "bob");
    send_ack(&b, 1, 1, FERRY__ACK__KIND__TERM);
    ck_assert_int_eq(rawc_ping(&b, 2, T_WAIT), 0);
    /* bob may still have a durable of his own on the topic */
    ck_assert_int_eq(dsub(&b, 3, "orders.x", "bobs", 0), 0);
    ck_assert_uint_eq(recv_deliver(&b)->sequence, 1);
    rawc_close(&b);

    /* alice gets her message again: nobody took it */
    ck_assert_int_eq(attach(&a, d.port, "alice", "orders.x", "work"), 0);
    Ferry__Deliver *m = recv_deliver(&a);
    ck_assert_uint_eq(m->sequence, 1);
    ck_assert_uint_ge(m->attempt, 2);
    rawc_close(&a);

    /* carol's consume rule covers it: she may take it over and TERM it */
    ck_assert_int_eq(attach(&b, d.port, "carol", "orders.x", "work"), 0);
    ck_assert_uint_eq(recv_deliver(&b)->sequence, 1);
    send_ack(&b, 1, 1, FERRY__ACK__KIND__TERM);
    nothing_else(&b, 4);
    rawc_close(&b);
    /* and so may an admin; the TERM held: nothing is left */
    ck_assert_int_eq(attach(&b, d.port, "ops", "orders.x", "work"), 0);
    nothing_else(&b, 5);
    rawc_close(&b);
    /* bob still may not, whoever held it last */
    ck_assert_int_eq(attach(&b, d.port, "bob", "orders.x", "work"),
                     FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED);
    rawc_close(&ops);
    STOP(&d);
}
END_TEST

/* The owner is stored with the durable: after a restart bob is still
 * refused and alice resumes. */
START_TEST(test_owner_survives_restart)
{
    struct ferryd_proc d;
    start(&d);
    struct rawc c;
    ck_assert_int_eq(attach(&c, d.port, "alice", "orders.y", "keep"), 0);
    /* the Pong leaves after the durable's state is committed */
    ck_assert_int_eq(rawc_ping(&c, 1, T_WAIT), 0);
    rawc_close(&c);
    d.owns_dir = 0; /* keep the data for the restart */
    STOP(&d);
    const char *const args[] = {"--auth-file", ad.path, NULL};
    ck_assert_int_eq(ferryd_restart(&d, args), 0);
    d.owns_dir = 1;
    ck_assert_int_eq(attach(&c, d.port, "bob", "orders.y", "keep"),
                     FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED);
    ck_assert_int_eq(attach(&c, d.port, "alice", "orders.y", "keep"), 0);
    rawc_close(&c);
    STOP(&d);
}
END_TEST

/* Dead letters are named by topic and durable: two durables "dq" on two
 * topics no longer share $DLQ.dq, and bob naming his durable "opsq" writes
 * to $DLQ.orders.c.opsq, not into ops's $DLQ.ops.jobs.opsq. */
START_TEST(test_dead_letters_named_by_topic_and_durable)
{
    struct ferryd_proc d;
    start(&d);
    struct rawc ops, a, b;
    login(&ops, d.port, "ops");
    ck_assert_int_eq(rawc_subscribe(&ops, 1, "$DLQ.>", NULL), 0);
    ck_assert_int_eq(dsub(&ops, 2, "ops.jobs", "opsq", 0), 0);
    login(&a, d.port, "alice");
    ck_assert_int_eq(dsub(&a, 1, "orders.a", "dq", 1), 0);
    ck_assert_int_eq(dsub(&a, 2, "orders.b", "dq", 1), 0);
    login(&b, d.port, "bob");
    ck_assert_int_eq(dsub(&b, 1, "orders.c", "opsq", 1), 0);
    publish(&ops, 10, "orders.a");
    publish(&ops, 11, "orders.b");
    publish(&ops, 12, "orders.c");
    /* nobody acks: after one delivery each is dead-lettered */
    int seen_a = 0, seen_b = 0, seen_c = 0;
    for (int i = 0; i < 3; i++) {
        Ferry__Frame *f;
        ck_assert_int_eq(rawc_recv_kind(&ops, T_WAIT, FERRY__FRAME__BODY_DELIVER, &f, NULL), 0);
        const Ferry__Deliver *m = f->deliver;
        ck_assert_uint_eq(m->n_sub_ids, 1);
        ck_assert_uint_eq(m->sub_ids[0], 1);
        const char *orig = header(m, "ferry-dlq-topic");
        ck_assert_ptr_nonnull(orig);
        if (strcmp(m->topic, "$DLQ.orders.a.dq") == 0) {
            ck_assert_str_eq(orig, "orders.a");
            seen_a++;
        } else if (strcmp(m->topic, "$DLQ.orders.b.dq") == 0) {
            ck_assert_str_eq(orig, "orders.b");
            seen_b++;
        } else if (strcmp(m->topic, "$DLQ.orders.c.opsq") == 0) {
            ck_assert_str_eq(orig, "orders.c");
            ck_assert_str_eq(header(m, "ferry-dlq-durable"), "opsq");
            seen_c++;
        } else {
            ck_abort_msg("dead letter on %s (from %s)", m->topic, orig);
        }
    }
    ck_assert_int_eq(seen_a, 1);
    ck_assert_int_eq(seen_b, 1);
    ck_assert_int_eq(seen_c, 1);
    /* nothing reached ops's own durable or its dead-letter topic */
    nothing_else(&ops, 20);
    rawc_close(&a);
    rawc_close(&b);
    rawc_close(&ops);
    STOP(&d);
}
END_TEST

/* Dead letters are published with the owner's rights: carol (consume, no
 * right on $DLQ) holding alice's durable dead-letters into alice's
 * $DLQ.orders.z.dz, as alice may. */
START_TEST(test_dead_letters_use_the_owners_rights)
{
    struct ferryd_proc d;
    start(&d);
    struct rawc ops, a, c;
    login(&ops, d.port, "ops");
    ck_assert_int_eq(rawc_subscribe(&ops, 1, "$DLQ.orders.z.dz", NULL), 0);
    login(&a, d.port, "alice");
    ck_assert_int_eq(dsub(&a, 1, "orders.z", "dz", 1), 0);
    ck_assert_int_eq(rawc_ping(&a, 1, T_WAIT), 0);
    rawc_close(&a);
    long long deadline = e2e_ms_now() + T_WAIT;
    int code;
    do {
        login(&c, d.port, "carol");
        code = dsub(&c, 1, "orders.z", "dz", 1);
        if (code != 0) {
            rawc_close(&c);
        }
    } while (code == FERRY__ERROR_CODE__ERROR_DURABLE_IN_USE && e2e_ms_now() < deadline);
    ck_assert_int_eq(code, 0);
    publish(&ops, 2, "orders.z");
    ck_assert_uint_eq(recv_deliver(&c)->sequence, 1);
    Ferry__Frame *f;
    ck_assert_int_eq(rawc_recv_kind(&ops, T_WAIT, FERRY__FRAME__BODY_DELIVER, &f, NULL), 0);
    ck_assert_str_eq(f->deliver->topic, "$DLQ.orders.z.dz");
    ck_assert_str_eq(header(f->deliver, "ferry-dlq-sequence"), "1");
    rawc_close(&c);
    rawc_close(&ops);
    STOP(&d);
}
END_TEST

/* The attack on queue groups: bob joins alice's group and takes a share of
 * her messages. Refused now, unless a group rule or admin allows it; the
 * group is forgotten with its last member. */
START_TEST(test_queue_group_belongs_to_its_creator)
{
    struct ferryd_proc d;
    start(&d);
    struct rawc a, b, c, ops;
    login(&a, d.port, "alice");
    ck_assert_int_eq(rawc_subscribe(&a, 1, "orders.q", "g1"), 0);
    login(&b, d.port, "bob");
    ck_assert_int_eq(rawc_subscribe(&b, 1, "orders.q", "g1"),
                     FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED);
    /* his own group, or the same name on another pattern, are his */
    ck_assert_int_eq(rawc_subscribe(&b, 2, "orders.q", "g2"), 0);
    ck_assert_int_eq(rawc_subscribe(&b, 3, "orders.*", "g1"), 0);
    login(&c, d.port, "carol"); /* allow carol group g1 */
    ck_assert_int_eq(rawc_subscribe(&c, 1, "orders.q", "g1"), 0);
    login(&ops, d.port, "ops"); /* admin */
    ck_assert_int_eq(rawc_subscribe(&ops, 1, "orders.q", "g1"), 0);
    /* alice's own second subscription joins */
    ck_assert_int_eq(rawc_subscribe(&a, 2, "orders.q", "g1"), 0);
    /* an unsubscribe and a close each leave; while ops is in, it is alice's */
    ck_assert_int_eq(rawc_unsubscribe(&a, 2), 0);
    rawc_close(&a);
    rawc_close(&c);
    ck_assert_int_eq(rawc_subscribe(&b, 4, "orders.q", "g1"),
                     FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED);
    ck_assert_int_eq(rawc_unsubscribe(&ops, 1), 0);
    /* nobody in it: bob may create it (once the broker saw alice's and
     * carol's connections close) */
    long long deadline = e2e_ms_now() + T_WAIT;
    uint64_t id = 10;
    int code;
    while ((code = rawc_subscribe(&b, id++, "orders.q", "g1")) != 0 && e2e_ms_now() < deadline) {
        ck_assert_int_eq(code, FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED);
    }
    ck_assert_int_eq(code, 0);
    rawc_close(&b);
    rawc_close(&ops);
    STOP(&d);
}
END_TEST

/* A reload that takes carol's consume right away detaches her from
 * alice's durable (an Error names her subscription); her own stays. */
START_TEST(test_reload_revokes_consume_right)
{
    struct ferryd_proc d;
    start(&d);
    struct rawc c;
    ck_assert_int_eq(attach(&c, d.port, "alice", "orders.r", "rv"), 0);
    ck_assert_int_eq(rawc_ping(&c, 1, T_WAIT), 0);
    rawc_close(&c);
    ck_assert_int_eq(attach(&c, d.port, "carol", "orders.r", "rv"), 0);
    ck_assert_int_eq(dsub(&c, 2, "orders.r", "carols", 0), 0);
    write_auth("");
    ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
    Ferry__Frame *f;
    ck_assert_int_eq(rawc_recv_kind(&c, T_WAIT, FERRY__FRAME__BODY_ERROR, &f, NULL), 0);
    ck_assert_int_eq(f->error->code, FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED);
    ck_assert_int_eq(f->error->ref_kind, FERRY__ERROR__REF_KIND__REF_SUBSCRIPTION);
    ck_assert_uint_eq(f->error->ref_id, 1);
    ck_assert_int_eq(f->error->is_fatal, 0);
    ck_assert_int_eq(rawc_unsubscribe(&c, 2), 0); /* still there */
    rawc_close(&c);
    STOP(&d);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("owned_consumers");
    TCase *tc;
    tc = tcase_create("attach_term");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_other_user_cannot_attach_or_term);
    suite_add_tcase(s, tc);
    tc = tcase_create("owner_restart");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_owner_survives_restart);
    suite_add_tcase(s, tc);
    tc = tcase_create("dlq_names");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_dead_letters_named_by_topic_and_durable);
    suite_add_tcase(s, tc);
    tc = tcase_create("queue_group_owner");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_queue_group_belongs_to_its_creator);
    suite_add_tcase(s, tc);
    tc = tcase_create("reload_revokes");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_reload_revokes_consume_right);
    suite_add_tcase(s, tc);
    tc = tcase_create("dlq_owner_rights");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_dead_letters_use_the_owners_rights);
    suite_add_tcase(s, tc);
    return s;
}

/*
 * test_consumer.c - durable consumer state (broker/consumer.c) over a real
 * store in a temporary directory: what is saved survives a reopen (the
 * position, the unacked set and delivery counts), and a dead letter and the
 * state that lets its message go are stored in one transaction - both or
 * neither. A "crash" here is closing the store without saving anything more.
 */
#include "consumer.h"
#include "ferry.h"
#include "store.h"
#include "tmpdir.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Suite *test_suite(void);

static char g_dir[64];

static void setup(void)
{
    tmpdir_make(g_dir, sizeof(g_dir), "ferry-cons");
}

static void teardown(void)
{
    tmpdir_remove(g_dir);
}

static struct store *open_store(void)
{
    struct store *s = NULL;
    char err[256] = "";
    int rc = store_open(g_dir, NULL, &s, err, sizeof(err));
    ck_assert_msg(rc == 0, "store_open: %d %s", rc, err);
    return s;
}

/* Append n messages to topic in one batch. */
static void put_n(struct store *s, const char *topic, int n)
{
    struct store_batch *b;
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    for (int i = 0; i < n; i++) {
        struct store_msg_in m = {.publish_time = 1, .payload = "x", .payload_len = 1};
        ck_assert_int_eq(store_batch_append(b, topic, strlen(topic), &m, NULL), 0);
    }
    ck_assert_int_eq(store_batch_commit(b), 0);
}

static struct consumer *dbind(struct cons_reg *r, const char *topic, const struct cons_opts *o,
                              uint64_t holder)
{
    struct consumer *k = NULL;
    int rc = cons_bind(r, topic, strlen(topic), "d", 1, "", 0, o, 1, holder, 1, NULL, NULL, &k);
    ck_assert_int_eq(rc, 0);
    return k;
}

/* Save dirty state in a batch of its own, as the store writer does. */
static void save(struct cons_reg *r, struct store *s)
{
    struct cons_save sv;
    ck_assert_int_eq(cons_reg_save_begin(r, &sv), 0);
    struct store_batch *b;
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    ck_assert_int_eq(store_batch_put_consumers(b, sv.recs, sv.n), 0);
    int rc = store_batch_commit(b);
    cons_reg_save_end(r, &sv, rc);
    ck_assert_int_eq(rc, 0);
}

START_TEST(test_cons_state_survives_reopen)
{
    struct store *s = open_store();
    put_n(s, "t", 5);
    struct cons_reg *r;
    ck_assert_int_eq(cons_reg_create(s, NULL, NULL, &r), 0);
    struct cons_opts o = {.max_in_flight = 10, .ack_wait_ms = 1000, .max_deliver = 5};
    struct consumer *k = dbind(r, "t", &o, 7);
    for (uint64_t q = 1; q <= 3; q++) {
        ck_assert_int_eq(cons_claim(k, q, 0, 0, NULL), CONS_CLAIM_OK);
    }
    ck_assert_int_eq(cons_ack(k, 2, 0), 1);
    struct cons_due due[8];
    ck_assert_uint_eq(cons_take_due(k, 5000, due, 8), 2); /* 1 and 3: attempt 2 */
    save(r, s);
    cons_reg_destroy(r); /* crash: nothing else is saved */
    store_close(s);

    s = open_store();
    ck_assert_int_eq(cons_reg_create(s, NULL, NULL, &r), 0);
    k = dbind(r, "t", &o, 8);
    ck_assert_uint_eq(cons_next_seq(k), 4);
    /* A new holder: what was not acked is due at once, with its count. */
    size_t n = cons_take_due(k, 0, due, 8);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(due[0].seq, 1);
    ck_assert_uint_eq(due[0].n_deliv, 3);
    ck_assert_uint_eq(due[1].seq, 3);
    ck_assert_uint_eq(due[1].n_deliv, 3);
    cons_reg_destroy(r);
    store_close(s);
}
END_TEST

/* Claim seq 1 and let it reach max_deliver: it is held for its dead letter. */
static struct consumer *poisoned(struct cons_reg *r)
{
    struct cons_opts o = {.max_in_flight = 10, .ack_wait_ms = 10, .max_deliver = 1};
    struct consumer *k = dbind(r, "t", &o, 7);
    ck_assert_int_eq(cons_claim(k, 1, 0, 0, NULL), CONS_CLAIM_OK);
    struct cons_due due[4];
    ck_assert_uint_eq(cons_take_due(k, 100, due, 4), 1);
    ck_assert_int_eq(due[0].is_dlq, 1);
    return k;
}

/* The writer's commit of a dead letter: the message to $DLQ.d and the
 * durable's state in one batch; commit or abort. */
static int commit_dead_letter(struct cons_reg *r, struct store *s, struct consumer *k, int abort)
{
    struct store_batch *b;
    ck_assert_int_eq(store_batch_begin(s, &b), 0);
    struct store_msg_in m = {.publish_time = 1, .payload = "x", .payload_len = 1};
    ck_assert_int_eq(store_batch_append(b, "$DLQ.d", 6, &m, NULL), 0);
    cons_dlq_committing(r, cons_id(k), 1);
    struct cons_save sv;
    ck_assert_int_eq(cons_reg_save_begin(r, &sv), 0);
    ck_assert_uint_eq(sv.n, 1);
    ck_assert_int_eq(store_batch_put_consumers(b, sv.recs, sv.n), 0);
    int rc = 0;
    if (abort) {
        store_batch_abort(b);
        rc = FERRY_ESTORAGEFULL; /* as a refused commit */
    } else {
        rc = store_batch_commit(b);
    }
    cons_reg_save_end(r, &sv, rc);
    cons_dlq_done(r, cons_id(k), 1, rc == 0);
    return rc;
}

START_TEST(test_cons_dead_letter_and_state_in_one_commit)
{
    struct store *s = open_store();
    put_n(s, "t", 2);
    struct cons_reg *r;
    ck_assert_int_eq(cons_reg_create(s, NULL, NULL, &r), 0);
    struct consumer *k = poisoned(r);
    ck_assert_int_eq(commit_dead_letter(r, s, k, 0), 0);
    cons_reg_destroy(r); /* crash right after the commit: nothing more saved */
    store_close(s);

    s = open_store();
    struct store_topic_info ti;
    ck_assert_int_eq(store_topic_info(s, "$DLQ.d", 6, &ti), 0);
    ck_assert_uint_eq(ti.last_seq, 1); /* the dead letter, once */
    ck_assert_int_eq(cons_reg_create(s, NULL, NULL, &r), 0);
    struct cons_opts o = {.max_in_flight = 10, .ack_wait_ms = 10, .max_deliver = 1};
    k = dbind(r, "t", &o, 8);
    struct cons_due due[4];
    ck_assert_uint_eq(cons_take_due(k, 1000, due, 4), 0); /* not dead-lettered again */
    ck_assert_uint_eq(cons_next_seq(k), 2);
    cons_reg_destroy(r);
    store_close(s);
}
END_TEST

START_TEST(test_cons_dead_letter_refused_keeps_message)
{
    struct store *s = open_store();
    put_n(s, "t", 2);
    struct cons_reg *r;
    ck_assert_int_eq(cons_reg_create(s, NULL, NULL, &r), 0);
    struct consumer *k = poisoned(r);
    save(r, s); /* the claim is stored */
    ck_assert_int_ne(commit_dead_letter(r, s, k, 1), 0);
    /* Refused: neither stored; the message is due again (for another try). */
    struct cons_due due[4];
    ck_assert_uint_eq(cons_take_due(k, 1000, due, 4), 1);
    ck_assert_uint_eq(due[0].seq, 1);
    ck_assert_int_eq(due[0].is_dlq, 1);
    cons_reg_destroy(r);
    store_close(s);

    s = open_store();
    struct store_topic_info ti;
    ck_assert_int_eq(store_topic_info(s, "$DLQ.d", 6, &ti), FERRY_ENOTOPIC);
    ck_assert_int_eq(cons_reg_create(s, NULL, NULL, &r), 0);
    struct cons_opts o = {.max_in_flight = 10, .ack_wait_ms = 10, .max_deliver = 1};
    k = dbind(r, "t", &o, 8);
    ck_assert_uint_eq(cons_take_due(k, 1000, due, 4), 1); /* still pending */
    ck_assert_uint_eq(due[0].seq, 1);
    cons_reg_destroy(r);
    store_close(s);
}
END_TEST

/* A subscription's own acks (no durable): never stored, freed with it. */
START_TEST(test_cons_without_durable_not_stored)
{
    struct store *s = open_store();
    put_n(s, "t", 3);
    struct cons_reg *r;
    ck_assert_int_eq(cons_reg_create(s, NULL, NULL, &r), 0);
    struct cons_opts o = {.max_in_flight = 2, .ack_wait_ms = 10, .max_deliver = 2};
    struct consumer *k = NULL;
    ck_assert_int_eq(cons_bind(r, "t", 1, NULL, 0, "", 0, &o, 1, 7, 1, NULL, NULL, &k), 0);
    ck_assert_int_eq(cons_claim(k, 1, 0, 0, NULL), CONS_CLAIM_OK);
    ck_assert_int_eq(cons_claim(k, 2, 0, 0, NULL), CONS_CLAIM_OK);
    ck_assert_int_eq(cons_claim(k, 3, 0, 0, NULL), CONS_CLAIM_FULL);
    struct cons_save sv;
    ck_assert_int_eq(cons_reg_save_begin(r, &sv), 0);
    ck_assert_uint_eq(sv.n, 0); /* nothing to store */
    cons_reg_save_end(r, &sv, 0);
    struct cons_due due[4];
    ck_assert_uint_eq(cons_take_due(k, 100, due, 4), 2); /* attempt 2 */
    /* max_deliver reached: dropped, not held for a dead letter */
    ck_assert_uint_eq(cons_take_due(k, 1000, due, 4), 0);
    ck_assert_uint_eq(cons_room(k), 2);
    cons_unbind(r, k, 7, 1); /* freed (LeakSanitizer would say otherwise) */
    void *v = NULL;
    size_t vlen = 0;
    ck_assert_int_eq(store_consumer_get(s, "t\0", 2, &v, &vlen), FERRY_ENOTOPIC);
    cons_reg_destroy(r);
    store_close(s);
}
END_TEST

/* A durable nobody holds leaves memory once its state is stored, and the
 * next bind loads it again as it was; a held or unsaved one stays. */
START_TEST(test_cons_idle_released_and_reloaded)
{
    struct store *s = open_store();
    put_n(s, "t", 4);
    struct cons_reg *r;
    ck_assert_int_eq(cons_reg_create(s, NULL, NULL, &r), 0);
    struct cons_opts o = {.max_in_flight = 10, .ack_wait_ms = 1000, .max_deliver = 5};
    struct consumer *k = dbind(r, "t", &o, 7);
    ck_assert_int_eq(cons_claim(k, 1, 0, 0, NULL), CONS_CLAIM_OK);
    ck_assert_int_eq(cons_claim(k, 2, 0, 0, NULL), CONS_CLAIM_OK);
    ck_assert_int_eq(cons_ack(k, 1, 0), 1);
    uint64_t far = UINT64_MAX / 2; /* later than any grace */
    int waiting = -1;
    ck_assert_uint_eq(cons_reg_release_idle(r, far, 0, &waiting), 0); /* held */
    cons_unbind(r, k, 7, 1);
    ck_assert_uint_eq(cons_reg_release_idle(r, far, 0, &waiting), 0); /* not stored yet */
    ck_assert_int_eq(waiting, 1);
    save(r, s);
    ck_assert_uint_eq(cons_reg_release_idle(r, 0, 1000, &waiting), 0); /* not idle long enough */
    ck_assert_uint_eq(cons_reg_release_idle(r, far, 1000, &waiting), 1);
    ck_assert_int_eq(waiting, 0);
    k = dbind(r, "t", &o, 8); /* loaded again */
    ck_assert_uint_eq(cons_next_seq(k), 3);
    struct cons_due due[4];
    ck_assert_uint_eq(cons_take_due(k, 0, due, 4), 1); /* 2, unacked, due for the new holder */
    ck_assert_uint_eq(due[0].seq, 2);
    ck_assert_uint_eq(due[0].n_deliv, 2);
    cons_reg_destroy(r);
    store_close(s);
}
END_TEST

/* A wildcard durable: a root (its start) and a position per topic, each
 * saved and loaded like a durable; the positions are named by the root. */
START_TEST(test_cons_wildcard_root_and_positions)
{
    struct store *s = open_store();
    put_n(s, "w.a.x", 3);
    put_n(s, "w.b.x", 2);
    struct cons_reg *r;
    ck_assert_int_eq(cons_reg_create(s, NULL, NULL, &r), 0);
    struct cons_opts o = {.max_in_flight = 10, .ack_wait_ms = 1000, .max_deliver = 5};
    struct consumer *root = NULL, *a = NULL, *b = NULL;
    ck_assert_int_eq(cons_bind(r, "w.*.x", 5, "d", 1, "", 0, &o, 12345, 7, 1, NULL, NULL, &root),
                     0);
    ck_assert_int_eq(cons_root_start_ns(root), 12345);
    ck_assert_int_eq(cons_bind_member(r, root, "w.a.x", 5, 1, 7, 1, NULL, &a), 0);
    ck_assert_int_eq(cons_bind_member(r, root, "w.b.x", 5, 2, 7, 1, NULL, &b), 0);
    ck_assert_int_eq(cons_bind_member(r, root, "w.*.x", 5, 1, 7, 1, NULL, &b), FERRY_EINVAL);
    /* Sequences are per position: 1 of each is a different message. */
    ck_assert_int_eq(cons_claim(a, 1, 0, 0, NULL), CONS_CLAIM_OK);
    ck_assert_int_eq(cons_claim(a, 2, 0, 0, NULL), CONS_CLAIM_OK);
    ck_assert_int_eq(cons_claim(b, 2, 0, 0, NULL), CONS_CLAIM_OK);
    ck_assert_int_eq(cons_ack(a, 1, 0), 1);
    ck_assert_int_eq(cons_ack(b, 1, 0), 0); /* b never had 1: it started at 2 */
    /* Another subscription cannot hold the root. */
    struct consumer *other = NULL;
    ck_assert_int_eq(cons_bind(r, "w.*.x", 5, "d", 1, "", 0, &o, 1, 8, 1, NULL, NULL, &other),
                     -EBUSY);
    save(r, s);
    cons_reg_destroy(r);
    store_close(s);

    s = open_store();
    ck_assert_int_eq(cons_reg_create(s, NULL, NULL, &r), 0);
    ck_assert_int_eq(cons_bind(r, "w.*.x", 5, "d", 1, "", 0, &o, 99, 9, 1, NULL, NULL, &root), 0);
    ck_assert_int_eq(cons_root_start_ns(root), 12345); /* kept, not the new start */
    ck_assert_int_eq(cons_bind_member(r, root, "w.a.x", 5, 1, 9, 1, NULL, &a), 0);
    ck_assert_int_eq(cons_bind_member(r, root, "w.b.x", 5, 1, 9, 1, NULL, &b), 0);
    ck_assert_uint_eq(cons_next_seq(a), 3);
    ck_assert_uint_eq(cons_next_seq(b), 3);
    struct cons_due due[4];
    ck_assert_uint_eq(cons_take_due(a, 0, due, 4), 1);
    ck_assert_uint_eq(due[0].seq, 2);
    ck_assert_uint_eq(cons_take_due(b, 0, due, 4), 1);
    ck_assert_uint_eq(due[0].seq, 2);
    /* Deleted with its positions (held: force), in memory and store. */
    struct cons_detach *hv = NULL;
    uint32_t nh = 0;
    ck_assert_int_eq(cons_reg_delete(r, "w.*.x", 5, "d", 1, 0, &hv, &nh), -EBUSY);
    ck_assert_int_eq(cons_reg_delete(r, "w.*.x", 5, "d", 1, 1, &hv, &nh), 0);
    ck_assert_uint_eq(nh, 1);
    free(hv);
    ck_assert_int_eq(cons_bind_member(r, root, "w.c.x", 5, 1, 9, 1, NULL, &a), FERRY_ENOTOPIC);
    save(r, s);
    void *v = NULL;
    size_t vlen = 0;
    ck_assert_int_eq(store_consumer_get(s, "w.*.x\0d\0w.a.x", 13, &v, &vlen), FERRY_ENOTOPIC);
    ck_assert_int_eq(store_consumer_get(s, "w.*.x\0d", 7, &v, &vlen), FERRY_ENOTOPIC);
    cons_reg_destroy(r);
    store_close(s);
}
END_TEST

/* A queue group's set of left messages: shared by the group's members,
 * taken oldest first, bounded. */
START_TEST(test_cons_group_left_messages)
{
    struct cons_reg *r;
    ck_assert_int_eq(cons_reg_create(NULL, NULL, NULL, &r), 0);
    struct cons_opts o = {.is_auto_ack = 1};
    struct consumer *k1 = NULL, *k2 = NULL;
    ck_assert_int_eq(cons_bind(r, "t", 1, NULL, 0, "g", 1, &o, 1, 7, 1, NULL, NULL, &k1), 0);
    ck_assert_int_eq(cons_bind(r, "t", 1, NULL, 0, "g", 1, &o, 1, 8, 1, NULL, NULL, &k2), 0);
    ck_assert_ptr_eq(k1, k2);
    ck_assert_int_eq(cons_group_leave(k1, 9), 0);
    ck_assert_int_eq(cons_group_leave(k1, 4), 0);
    ck_assert_int_eq(cons_group_leave(k1, 6), 0);
    uint64_t seqs[8];
    ck_assert_uint_eq(cons_group_take(k2, seqs, 2), 2);
    ck_assert_uint_eq(seqs[0], 4);
    ck_assert_uint_eq(seqs[1], 6);
    ck_assert_uint_eq(cons_group_take(k2, seqs, 8), 1);
    ck_assert_uint_eq(seqs[0], 9);
    ck_assert_uint_eq(cons_group_take(k2, seqs, 8), 0);
    for (uint64_t q = 1; q <= CONS_GROUP_LEFT_MAX; q++) {
        ck_assert_int_eq(cons_group_leave(k1, q), 0);
    }
    ck_assert_int_eq(cons_group_leave(k1, 0), -ENOSPC);
    /* A wildcard group: a root in memory whose positions are the sets. */
    struct consumer *root = NULL, *p = NULL;
    ck_assert_int_eq(cons_bind(r, "a.*", 3, NULL, 0, "g", 1, &o, 0, 7, 2, NULL, NULL, &root), 0);
    ck_assert_int_eq(cons_bind_member(r, root, "a.b", 3, 1, 7, 2, NULL, &p), 0);
    ck_assert_ptr_ne(p, k1);
    ck_assert_int_eq(cons_group_leave(p, 5), 0);
    /* Without a group, a pattern takes no anonymous consumer. */
    struct consumer *x = NULL;
    ck_assert_int_eq(cons_bind(r, "a.*", 3, NULL, 0, "", 0, &o, 0, 7, 3, NULL, NULL, &x),
                     FERRY_EINVAL);
    cons_unbind(r, p, 7, 2);
    cons_unbind(r, root, 7, 2);
    cons_unbind(r, k1, 7, 1);
    cons_unbind(r, k2, 8, 1); /* the last holder: freed (LeakSanitizer checks) */
    cons_reg_destroy(r);
}
END_TEST

/* Bind durable name on topic as user u (NULL: no auth file); returns
 * cons_bind's code. */
static int ubind(struct cons_reg *r, const char *topic, const char *name, uint64_t holder,
                 const struct cons_user *u, struct consumer **k)
{
    struct cons_opts o = {.max_in_flight = 10, .ack_wait_ms = 1000, .max_deliver = 5};
    return cons_bind(r, topic, strlen(topic), name, strlen(name), "", 0, &o, 1, holder, 1, NULL, u,
                     k);
}

/* The record stored under topic NUL name, decoded. */
static struct cons_rec stored_rec(struct store *s, const char *topic, const char *name,
                                  uint8_t *version)
{
    char key[64];
    size_t tl = strlen(topic), nl = strlen(name);
    memcpy(key, topic, tl + 1);
    memcpy(key + tl + 1, name, nl);
    void *v = NULL;
    size_t vlen = 0;
    ck_assert_int_eq(store_consumer_get(s, key, tl + 1 + nl, &v, &vlen), 0);
    struct cons_rec rec;
    char why[200] = "";
    ck_assert_msg(cons_rec_decode(v, vlen, &rec, why, sizeof(why)) == 0, "%s", why);
    *version = ((unsigned char *)v)[1];
    free(v);
    return rec;
}

/* A durable belongs to its creator: stored with it (a version 2 record),
 * checked at every bind; others bind it only with may_any. One made
 * without an auth file is stored as version 1 and belongs to nobody. */
START_TEST(test_cons_owner_stored_and_checked)
{
    struct store *s = open_store();
    put_n(s, "t", 2);
    struct cons_reg *r;
    ck_assert_int_eq(cons_reg_create(s, NULL, NULL, &r), 0);
    const struct cons_user alice = {"alice", 0}, bob = {"bob", 0}, carol = {"carol", 1};
    struct consumer *k = NULL, *x = NULL;
    ck_assert_int_eq(ubind(r, "t", "d", 7, &alice, &k), 0);
    ck_assert_str_eq(cons_owner(k), "alice");
    ck_assert_int_eq(ubind(r, "t", "d", 8, &bob, &x), FERRY_EPERM);
    ck_assert_int_eq(ubind(r, "t", "d", 9, &carol, &x), -EBUSY); /* allowed, but held */
    char dlq[CONS_DLQ_TOPIC_MAX];
    ck_assert_uint_eq(cons_dlq_topic(k, dlq, sizeof(dlq)), strlen("$DLQ.t.d"));
    ck_assert_str_eq(dlq, "$DLQ.t.d");
    cons_unbind(r, k, 7, 1);
    ck_assert_int_eq(ubind(r, "t", "d", 9, &carol, &x), 0);
    ck_assert_str_eq(cons_owner(x), "alice"); /* carol holds it, alice owns it */
    cons_unbind(r, x, 9, 1);
    /* made without an auth file: nobody's */
    ck_assert_int_eq(ubind(r, "t", "anon", 7, NULL, &k), 0);
    ck_assert_ptr_null(cons_owner(k));
    cons_unbind(r, k, 7, 1);
    save(r, s);
    cons_reg_destroy(r);
    store_close(s);

    s = open_store();
    uint8_t version;
    struct cons_rec rec = stored_rec(s, "t", "d", &version);
    ck_assert_uint_eq(version, 2);
    ck_assert_str_eq(rec.owner, "alice");
    rec = stored_rec(s, "t", "anon", &version);
    ck_assert_uint_eq(version, 1); /* what servers before owners read */
    ck_assert_str_eq(rec.owner, "");
    ck_assert_int_eq(cons_reg_create(s, NULL, NULL, &r), 0);
    ck_assert_int_eq(ubind(r, "t", "d", 8, &bob, &x), FERRY_EPERM);
    ck_assert_int_eq(ubind(r, "t", "d", 7, &alice, &k), 0);
    cons_unbind(r, k, 7, 1);
    ck_assert_int_eq(ubind(r, "t", "anon", 7, &alice, &k), FERRY_EPERM);
    ck_assert_int_eq(ubind(r, "t", "anon", 9, &carol, &k), 0);
    ck_assert_ptr_null(cons_owner(k));
    cons_unbind(r, k, 9, 1);
    cons_reg_destroy(r);
    store_close(s);
}
END_TEST

/* A wildcard durable's root is its creator's, and so are its positions;
 * their dead letters are named by the position's topic. */
START_TEST(test_cons_wildcard_owner_and_dlq_topic)
{
    struct store *s = open_store();
    struct cons_reg *r;
    ck_assert_int_eq(cons_reg_create(s, NULL, NULL, &r), 0);
    const struct cons_user alice = {"alice", 0}, bob = {"bob", 0};
    struct consumer *root = NULL, *x = NULL, *p = NULL;
    ck_assert_int_eq(ubind(r, "w.*.x", "d", 7, &alice, &root), 0);
    ck_assert_int_eq(ubind(r, "w.*.x", "d", 8, &bob, &x), FERRY_EPERM);
    ck_assert_int_eq(cons_bind_member(r, root, "w.a.x", 5, 1, 7, 1, NULL, &p), 0);
    ck_assert_str_eq(cons_owner(p), "alice");
    char dlq[CONS_DLQ_TOPIC_MAX];
    cons_dlq_topic(p, dlq, sizeof(dlq));
    ck_assert_str_eq(dlq, "$DLQ.w.a.x.d");
    cons_unbind(r, p, 7, 1);
    cons_unbind(r, root, 7, 1);
    cons_reg_destroy(r);
    store_close(s);
}
END_TEST

static void add(Suite *s, TCase *tc, const TTest *t)
{
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, t);
    suite_add_tcase(s, tc);
}

Suite *test_suite(void)
{
    Suite *s = suite_create("consumer");
    add(s, tcase_create("state_reopen"), test_cons_state_survives_reopen);
    add(s, tcase_create("dlq_one_commit"), test_cons_dead_letter_and_state_in_one_commit);
    add(s, tcase_create("dlq_refused"), test_cons_dead_letter_refused_keeps_message);
    add(s, tcase_create("no_durable"), test_cons_without_durable_not_stored);
    add(s, tcase_create("idle_release"), test_cons_idle_released_and_reloaded);
    add(s, tcase_create("wildcard"), test_cons_wildcard_root_and_positions);
    add(s, tcase_create("group_left"), test_cons_group_left_messages);
    add(s, tcase_create("owner"), test_cons_owner_stored_and_checked);
    add(s, tcase_create("wildcard_owner"), test_cons_wildcard_owner_and_dlq_topic);
    return s;
}

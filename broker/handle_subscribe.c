/*
 * handle_subscribe.c - Subscribe and Unsubscribe: ACL, start position,
 * durable binding, the trie change posted to every worker, the SubAck.
 */
#include "io_int.h"
#include "qgroup.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void send_suback_seq(struct iot *t, struct conn *c, uint64_t sub_id, int code,
                            const char *text, uint64_t next_seq)
{
    Ferry__SubAck a = FERRY__SUB_ACK__INIT;
    a.sub_id = sub_id;
    a.code = (Ferry__ErrorCode)code;
    a.text = (char *)(text ? text : "");
    a.next_sequence = next_seq;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_SUB_ACK;
    f.sub_ack = &a;
    conn_send(t, c, &f);
}

/* Cluster mode: does this broker serve the subscription's topic (a pattern
 * without wildcards; a wildcard one is served by every broker for the
 * topics it owns)? If not, 0: the SubAck says why and where the owner is,
 * or the frame waits for the topic's placement. */
static int sub_is_served(struct iot *t, struct conn *c, const Ferry__Subscribe *m, size_t plen)
{
    char text[400], owner[128];
    enum clu_verdict v =
        conn_clu_route(t, c, m->pattern, plen, text, sizeof(text), owner, sizeof(owner));
    if (v == CLU_SERVE || v == CLU_PENDING) {
        return v == CLU_SERVE; /* pending: the frame waits (conn_hold.c) */
    }
    Ferry__SubAck a = FERRY__SUB_ACK__INIT;
    a.sub_id = m->sub_id;
    a.code = v == CLU_NOT_OWNER ? FERRY__ERROR_CODE__ERROR_NOT_OWNER
                                : FERRY__ERROR_CODE__ERROR_UNAVAILABLE;
    a.text = text;
    a.owner = owner;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_SUB_ACK;
    f.sub_ack = &a;
    conn_send(t, c, &f);
    return 0;
}

/* A SubAck without a position: refusals, Unsubscribe answers. */
static void send_suback(struct iot *t, struct conn *c, uint64_t sub_id, int code, const char *text)
{
    send_suback_seq(t, c, sub_id, code, text, 0);
}

/* The SubAck accepting sub_id. SubAck.next_sequence is the catch-up
 * position of a subscription that has one of its own (one stored topic, no
 * queue group, not durable: a durable's position is the consumer's). Nothing
 * is delivered before the SubAck, so next_seq is still where it starts. */
static void send_suback_ok(struct iot *t, struct conn *c, uint64_t sub_id)
{
    struct catchup *e = cu_find(c, sub_id);
    /* Where this subscription alone decides its position (not a durable,
     * not a queue group's shared one). */
    uint64_t next_seq = 0;
    if (e != NULL && e->is_lastval) {
        next_seq = 0; /* current values first: not one sequence range */
    } else if (e != NULL && e->cons == NULL) {
        next_seq = e->next_seq;
    } else if (e != NULL && cons_is_private(e->cons)) {
        next_seq = cons_next_seq(e->cons);
    }
    send_suback_seq(t, c, sub_id, FERRY__ERROR_CODE__ERROR_NONE, NULL, next_seq);
}

int handle_subscribe_find(const struct conn *c, uint64_t sub_id)
{
    for (uint32_t i = 0; i < c->n_subs; i++) {
        if (c->subs[i]->sub_id == sub_id) {
            return (int)i;
        }
    }
    return -1;
}

static int wq_backlog(const struct iot *t)
{
    for (uint32_t w = 0; w < iot_n_queues(t); w++) {
        if (t->wq[w].n) {
            return 1;
        }
    }
    return 0;
}

static int defer_suback(struct iot *t, struct conn *c, uint64_t sub_id)
{
    if (t->n_deferred == t->deferred_cap) {
        uint32_t cap = t->deferred_cap ? t->deferred_cap * 2 : 16;
        struct deferred_ack *v = realloc(t->deferred, cap * sizeof(*v));
        if (v == NULL) {
            return -ENOMEM;
        }
        t->deferred = v;
        t->deferred_cap = cap;
    }
    t->deferred[t->n_deferred].conn_ref = conn_ref_of(t, c);
    t->deferred[t->n_deferred++].sub_id = sub_id;
    return 0;
}

/* Send held SubAcks once every subscription change is in a worker queue. */
void handle_subscribe_send_deferred(struct iot *t)
{
    if (t->n_deferred == 0 || wq_backlog(t)) {
        return;
    }
    for (uint32_t i = 0; i < t->n_deferred; i++) {
        struct conn *c = conn_by_ref(t, t->deferred[i].conn_ref);
        if (c && c->state == ST_OPEN) {
            c->unacked_key = 0;
            send_suback_ok(t, c, t->deferred[i].sub_id);
            cu_start(t, c, t->deferred[i].sub_id);
        }
    }
    t->n_deferred = 0;
}

/* The first sequence a subscription with a start position gets. */
static int cu_first_seq(struct iot *t, const Ferry__Subscribe *m, size_t plen, uint64_t *out)
{
    struct store_topic_info info;
    int rc = store_topic_info(t->srv->store, m->pattern, plen, &info);
    if (rc == FERRY_ENOTOPIC) {
        /* Nothing stored yet: everything from the first message on (for a
         * start sequence, from that one). */
        *out = m->start == FERRY__START_POSITION__START_SEQUENCE && m->start_sequence > 1
                   ? m->start_sequence
                   : 1;
        return 0;
    }
    if (rc < 0) {
        return rc;
    }
    switch (m->start) {
    case FERRY__START_POSITION__START_ALL:
        *out = info.first_seq;
        return 0;
    case FERRY__START_POSITION__START_SEQUENCE:
        *out = m->start_sequence > 1 ? m->start_sequence : 1;
        return 0;
    case FERRY__START_POSITION__START_TIME:
        return store_seek_time(t->srv->store, info.id, m->start_time, out);
    case FERRY__START_POSITION__START_LAST_PER_KEY:
        *out = 1; /* the current values' walk starts there (sub_add_position) */
        return 0;
    default:
        *out = store_topic_seq_last_n(&info, m->start_last);
        return 0;
    }
}

/*
 * Is the Subscribe acceptable (its id, pattern, rights, queue group,
 * durable options, the connection's limit)? If not, the SubAck says why
 * and -1 is returned.
 */
static int sub_check(struct iot *t, struct conn *c, Ferry__Subscribe *m, size_t plen, size_t glen)
{
    const struct cfg *cfg = &t->srv->cfg;
    const char *why;
    int is_durable = m->durable_name[0] != '\0';
    int is_wild = topic_has_wildcard(m->pattern, plen);
    if (handle_subscribe_find(c, m->sub_id) >= 0) {
        send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_DUPLICATE_ID,
                    "sub_id already in use on this connection");
        return -1;
    }
    if (topic_validate(m->pattern, plen, 1, cfg->max_topic_len, cfg->max_topic_depth, &why)) {
        send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_INVALID_PATTERN, why);
        return -1;
    }
    /* Every delivery path (live fan-out, queue groups, replay from the
     * store) serves a subscription, so checking it here covers them all;
     * a reload that shrinks the rights removes it (auth_reload_conn). */
    if (!conn_may_subscribe(c, m->pattern, plen)) {
        char text[320];
        snprintf(text, sizeof(text), "permission denied: subscribe %.*s",
                 (int)(plen > 256 ? 256 : plen), m->pattern);
        conn_acl_denied(t, c, "subscribe", m->pattern, plen);
        send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED, text);
        return -1;
    }
    if (t->srv->cluster != NULL && !is_wild && !sub_is_served(t, c, m, plen)) {
        return -1;
    }
    if (glen > 0 && topic_validate(m->queue_group, glen, 0, cfg->max_topic_len, 1, &why)) {
        send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_INVALID_ARGUMENT,
                    "queue group must be one token of printable characters");
        return -1;
    }
    if (is_durable) {
        const char *refusal = NULL;
        size_t nlen = strlen(m->durable_name);
        if (m->ack_mode != FERRY__ACK_MODE__ACK_EXPLICIT) {
            refusal = "a durable consumer needs explicit acks (ack_mode ACK_EXPLICIT)";
        } else if (t->srv->consumers == NULL || t->srv->store == NULL) {
            refusal = "durable consumers need the store";
        } else if (nlen > CONS_NAME_MAX ||
                   topic_validate(m->durable_name, nlen, 0, CONS_NAME_MAX, 1, &why)) {
            refusal = "durable name must be one token of printable characters, at most 200 bytes";
        } else if (!is_wild && cfg_is_ephemeral(cfg, m->pattern, plen)) {
            refusal = "the topic is ephemeral (not stored): durable consumers need a stored topic";
        } else if (m->start == FERRY__START_POSITION__START_LAST_PER_KEY) {
            refusal = "START_LAST_PER_KEY is for subscriptions without a durable name";
        } else if (m->start > FERRY__START_POSITION__START_LAST) {
            refusal = "unknown start position";
        } else if (is_wild && (m->start == FERRY__START_POSITION__START_SEQUENCE ||
                               m->start == FERRY__START_POSITION__START_LAST)) {
            refusal = "a wildcard durable starts at new messages, all, or a time (sequences "
                      "are per topic)";
        }
        if (refusal) {
            send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_INVALID_ARGUMENT, refusal);
            return -1;
        }
    }
    /* Explicit acks without a durable: the subscription gets a consumer of
     * its own (its queue group's, shared), kept in memory for its life. */
    int is_acked = !is_durable && m->ack_mode == FERRY__ACK_MODE__ACK_EXPLICIT;
    if (is_acked) {
        const char *refusal = NULL;
        if (t->srv->consumers == NULL || t->srv->store == NULL) {
            refusal = "explicit acks need the store";
        } else if (is_wild) {
            refusal = "explicit acks without a durable need a topic name without wildcards (one "
                      "stored topic)";
        } else if (cfg_is_ephemeral(cfg, m->pattern, plen)) {
            refusal = "the topic is ephemeral (not stored): explicit acks need a stored topic";
        } else if (m->start == FERRY__START_POSITION__START_LAST_PER_KEY) {
            refusal = "START_LAST_PER_KEY cannot be combined with explicit acks";
        }
        if (refusal) {
            send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_INVALID_ARGUMENT, refusal);
            return -1;
        }
    }
    if (c->n_subs >= cfg->max_subs) {
        send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_LIMIT_EXCEEDED,
                    "too many subscriptions on this connection");
        return -1;
    }
    return 0;
}

/*
 * Who binds a durable (consumer.h, OWNERS): NULL on a server without an
 * auth file (nothing is checked), else c's user, who may take any durable
 * on pattern as an admin or with a consume rule covering it.
 */
static const struct cons_user *sub_cons_user(const struct conn *c, const char *pattern, size_t plen,
                                             struct cons_user *u)
{
    if (c->auth == NULL) {
        return NULL;
    }
    u->name = c->who ? c->who->name : "";
    u->may_any = (uint8_t)(c->who && (c->who->is_admin ||
                                      acl_may_subscribe(&c->who->consume, pattern, plen)));
    return u;
}

/*
 * The start position of a new subscription: *start_seq, and *has_start when
 * a catch-up position is wanted. A wildcard durable's start_seq is a time
 * (ns); a durable's is where it starts if it does not exist yet. With
 * START_LAST_PER_KEY, *lv_upto is the snapshot's last sequence (0: none).
 * Refusals are answered here (-1).
 */
static int sub_start_seq(struct iot *t, struct conn *c, Ferry__Subscribe *m, size_t plen,
                         size_t glen, uint64_t *start_seq_out, int *has_start_out,
                         uint64_t *lv_upto_out)
{
    const struct cfg *cfg = &t->srv->cfg;
    int is_durable = m->durable_name[0] != '\0';
    int is_wild = topic_has_wildcard(m->pattern, plen);
    uint64_t start_seq = 0;
    int has_start = m->start != FERRY__START_POSITION__START_NEW;
    if (is_durable && is_wild) {
        /* A new wildcard durable's start_ns (its topics' positions start at
         * their first message published from then on); one that exists
         * keeps its own. */
        int64_t now_ns = now_realtime_ns();
        start_seq = m->start == FERRY__START_POSITION__START_ALL ? 0
                    : m->start == FERRY__START_POSITION__START_TIME
                        ? (uint64_t)(m->start_time > 0 ? m->start_time : 0)
                        : (uint64_t)now_ns;
        has_start = 0;
    }
    /* A durable's: where it starts if new (one that exists resumes). */
    int is_first_wanted = is_durable && !is_wild;
    if (is_durable) {
        has_start = 0;
    }
    if (has_start) {
        const char *refusal = NULL;
        if (m->start > FERRY__START_POSITION__START_LAST_PER_KEY) {
            refusal = "unknown start position";
        } else if (t->srv->store == NULL) {
            refusal = "start positions need the store";
        } else if (is_wild) {
            refusal = "start positions need a topic name without wildcards (one stored topic)";
        } else if (glen > 0) {
            refusal = "start positions cannot be combined with a queue group";
        } else if (cfg_is_ephemeral(cfg, m->pattern, plen)) {
            refusal = "the topic is ephemeral (not stored): only new messages can be delivered";
        } else if (m->start == FERRY__START_POSITION__START_LAST_PER_KEY &&
                   !cfg_is_last_value(cfg, m->pattern, plen)) {
            refusal = "START_LAST_PER_KEY: the topic is not a last-value topic (config: "
                      "last_value PATTERN)";
        }
        if (refusal) {
            send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_INVALID_ARGUMENT, refusal);
            return -1;
        }
        is_first_wanted = 1;
    }
    int rc = is_first_wanted ? cu_first_seq(t, m, plen, &start_seq) : 0;
    *lv_upto_out = 0;
    if (rc == 0 && has_start && m->start == FERRY__START_POSITION__START_LAST_PER_KEY) {
        /* The snapshot: current values up to the last sequence now, then
         * everything after it (struct catchup, is_lastval). */
        struct store_topic_info info;
        rc = store_topic_info(t->srv->store, m->pattern, plen, &info);
        if (rc == 0) {
            *lv_upto_out = info.last_seq;
        } else if (rc == FERRY_ENOTOPIC) {
            rc = 0; /* nothing stored: everything from 1 on */
        }
    }
    if (rc < 0) {
        send_suback(t, c, m->sub_id,
                    rc == -EAGAIN ? FERRY__ERROR_CODE__ERROR_SERVER_BUSY
                                  : FERRY__ERROR_CODE__ERROR_STORAGE_FAILED,
                    server_strerror(rc));
        return -1;
    }
    *start_seq_out = start_seq;
    *has_start_out = has_start;
    return 0;
}

/*
 * The position of a new subscription s (struct catchup): the workers are
 * asked to say when s is in their tries (W_SUB_READY), and the entry is
 * added; a durable's connection joins the durable scan.
 */
static void sub_add_position(struct iot *t, struct conn *c, Ferry__Subscribe *m, size_t plen,
                             struct trie_sub *s, struct consumer *cons, uint64_t start_seq,
                             int is_group_pos, uint64_t lv_upto)
{
    int is_wild = topic_has_wildcard(m->pattern, plen);
    /* After the W_SUB_ADD in the same queue: the owner answers when the
     * subscription is in its trie (a wildcard durable's: every worker). */
    uint32_t owner = topic_hash(m->pattern, plen) % t->srv->n_workers;
    uint32_t w_end = is_wild ? (is_group_pos ? 0 : t->srv->n_workers) : owner + 1;
    for (uint32_t w = is_wild ? 0 : owner; w < w_end; w++) {
        trie_sub_ref(s);
        struct wmsg rm = {.kind = W_SUB_READY, .p = s};
        if (iot_wq_push(&t->wq[w], rm) < 0) {
            trie_sub_unref(s);
            log_client_error(c->client_id, c->peer,
                             "out of memory: subscription %llu reads the store only",
                             (unsigned long long)m->sub_id);
        }
    }
    struct catchup *e = &c->cu[c->n_cu++];
    memset(e, 0, sizeof(*e));
    e->sub = s;
    if (is_wild) {
        e->root = cons; /* a durable's positions come with the SubAck (cu_start) */
        e->is_group = (uint8_t)is_group_pos;
    } else {
        e->next_seq = start_seq;
        e->cons = cons;
        e->is_group = (uint8_t)is_group_pos;
        e->is_lastval = lv_upto > 0;
        e->lv_upto = lv_upto;
    }
    if (cons != NULL && !is_wild) {
        cu_dur_list(t, c);
        t->next_dur_scan = 0; /* what the last holder left unacked is due */
    }
}

/* handle_subscribe() once the Subscribe was checked: 0 when the
 * subscription was added (its SubAck sent or held), -1 when it was
 * refused (answered). */
static int sub_add(struct iot *t, struct conn *c, Ferry__Subscribe *m, size_t plen, size_t glen)
{
    const struct cfg *cfg = &t->srv->cfg;
    int is_durable = m->durable_name[0] != '\0';
    int is_wild = topic_has_wildcard(m->pattern, plen);
    int is_acked = !is_durable && m->ack_mode == FERRY__ACK_MODE__ACK_EXPLICIT;
    uint64_t start_seq, lv_upto;
    int has_start;
    if (sub_start_seq(t, c, m, plen, glen, &start_seq, &has_start, &lv_upto) < 0) {
        return -1;
    }
    int use_cu = has_start || is_durable;
    /* A queue group without acks on stored topics shares what its lagging
     * members leave, so that none is disconnected (struct catchup). */
    int is_group_pos =
        !is_durable && !is_acked && glen > 0 && !has_start && t->srv->consumers != NULL;
    if (!use_cu && t->srv->store != NULL && (glen == 0 || is_acked || is_group_pos) && !is_wild &&
        !cfg_is_ephemeral(cfg, m->pattern, plen)) {
        /* New only, on one stored topic: it gets a position too, so that
         * when it lags it falls back to reading the store (see struct
         * catchup) instead of being disconnected. */
        struct store_topic_info info;
        int rc = store_topic_info(t->srv->store, m->pattern, plen, &info);
        if (rc == 0 || rc == FERRY_ENOTOPIC) {
            start_seq = rc == 0 ? info.last_seq + 1 : 1;
            use_cu = 1;
        }
    } else if (!use_cu && is_group_pos && is_wild && t->srv->store != NULL) {
        /* A queue group on a pattern: a shared set per topic (see struct
         * catchup). */
        use_cu = 1;
    }
    if (use_cu && c->n_cu == c->cu_cap) {
        uint32_t cap = c->cu_cap ? c->cu_cap * 2 : 1;
        struct catchup *v = realloc(c->cu, cap * sizeof(*v));
        if (v == NULL) {
            goto out_nomem;
        }
        c->cu = v;
        c->cu_cap = cap;
    }
    if (c->n_subs == c->subs_cap) {
        uint32_t cap = c->subs_cap ? c->subs_cap * 2 : 1;
        struct trie_sub **v = realloc(c->subs, cap * sizeof(*v));
        if (v == NULL) {
            goto out_nomem;
        }
        c->subs = v;
        c->subs_cap = cap;
    }
    struct consumer *cons = NULL;
    is_group_pos = is_group_pos && use_cu;
    if (is_durable || ((is_acked || is_group_pos) && use_cu)) {
        struct cons_opts o = {m->max_in_flight, m->ack_wait_ms, m->max_deliver,
                              (uint8_t)is_group_pos};
        char who[CONS_WHO_MAX];
        snprintf(who, sizeof(who), "client %llu %s", (unsigned long long)c->client_id, c->peer);
        struct cons_user ub;
        const struct cons_user *u = sub_cons_user(c, m->pattern, plen, &ub);
        int rc = cons_bind(t->srv->consumers, m->pattern, plen, is_durable ? m->durable_name : NULL,
                           strlen(m->durable_name), m->queue_group, glen, &o, start_seq,
                           conn_ref_of(t, c), m->sub_id, who, u, &cons);
        if (rc == FERRY_EPERM) {
            char text[320];
            snprintf(text, sizeof(text),
                     "permission denied: durable %.100s on %.150s belongs to another user",
                     m->durable_name, m->pattern);
            conn_acl_denied(t, c, "attach to the durable of another user on", m->pattern, plen);
            send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED, text);
            return -1;
        }
        if (rc == -EBUSY) {
            char text[320];
            snprintf(text, sizeof(text),
                     "durable %s on %s is held by another subscription (only members of its "
                     "queue group may share it)",
                     m->durable_name, m->pattern);
            send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_DURABLE_IN_USE, text);
            return -1;
        }
        if (rc < 0) {
            send_suback(t, c, m->sub_id,
                        rc == -ENOMEM   ? FERRY__ERROR_CODE__ERROR_INTERNAL
                        : rc == -EAGAIN ? FERRY__ERROR_CODE__ERROR_SERVER_BUSY
                                        : FERRY__ERROR_CODE__ERROR_STORAGE_FAILED,
                        server_strerror(rc));
            return -1;
        }
    }
    /* A durable's queue group members all get live copies; the durable's
     * claim gives each message to one of them (see struct catchup). */
    /* A group without acks keeps the workers' choice of member (load
     * spread); a member that cannot take its message leaves it to the
     * others (struct catchup, is_group). */
    int has_trie_group = cons == NULL || is_group_pos;
    struct trie_sub *s =
        trie_sub_create(conn_ref_of(t, c), m->sub_id, m->pattern, plen,
                        has_trie_group ? m->queue_group : "", has_trie_group ? glen : 0);
    if (s == NULL) {
        goto out_unbind;
    }
    s->key = ++t->next_sub_key; /* before the workers see it */
    if (iot_post_sub_change(t, W_SUB_ADD, s) < 0) {
        trie_sub_unref(s);
        goto out_unbind;
    }
    c->subs[c->n_subs++] = s;
    stats_add(&t->stats.subs, 1);
    if (use_cu) {
        sub_add_position(t, c, m, plen, s, cons, start_seq, is_group_pos, lv_upto);
    }
    /* The SubAck promises that anything published after it is matched, by
     * whichever connection. Normally the change reaches the workers at the
     * end of this round, before the SubAck is written. If a worker's queue
     * is full, hold the SubAck (and this connection's later frames) until
     * the change is queued there. */
    for (uint32_t w = 0; w < iot_n_queues(t); w++) {
        iot_wq_flush(t, w);
    }
    if (wq_backlog(t) && defer_suback(t, c, m->sub_id) == 0) {
        c->unacked_key = s->key; /* deliver_routed() holds nothing for it until then */
        log_client_debug(c->client_id, c->peer, "SubAck %llu held: a worker queue is full",
                         (unsigned long long)m->sub_id);
        conn_pause(t, c);
        return 0;
    }
    send_suback_ok(t, c, m->sub_id);
    cu_start(t, c, m->sub_id);
    return 0;

out_unbind:
    if (cons != NULL) {
        cons_unbind(t->srv->consumers, cons, conn_ref_of(t, c), m->sub_id);
    }
out_nomem:
    send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_INTERNAL, "out of memory");
    return -1;
}

/* A queue group without a durable belongs to its first member's user
 * (qgroup.h); joining another's needs a group rule or admin. Returns 0
 * (joined, or nothing to check), or -1 (refused and answered). */
static int sub_group_join(struct iot *t, struct conn *c, Ferry__Subscribe *m, size_t plen,
                          size_t glen)
{
    if (t->srv->qgroups == NULL || c->auth == NULL || glen == 0 || m->durable_name[0] != '\0') {
        return 0;
    }
    const char *user = c->who ? c->who->name : "";
    int may_any =
        c->who && (c->who->is_admin || acl_may_publish(&c->who->group, m->queue_group, glen));
    int rc = qgroup_join(t->srv->qgroups, conn_ref_of(t, c), m->sub_id, m->pattern, plen,
                         m->queue_group, glen, user, may_any);
    if (rc == 0) {
        return 0;
    }
    if (rc == FERRY_EPERM) {
        char text[320];
        snprintf(text, sizeof(text),
                 "permission denied: queue group %.100s on %.150s belongs to another user",
                 m->queue_group, m->pattern);
        conn_acl_denied(t, c, "join the queue group of another user on", m->pattern, plen);
        send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED, text);
    } else {
        send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_INTERNAL, server_strerror(rc));
    }
    return -1;
}

void handle_subscribe(struct iot *t, struct conn *c, Ferry__Subscribe *m)
{
    size_t plen = strlen(m->pattern);
    size_t glen = strlen(m->queue_group);
    if (sub_check(t, c, m, plen, glen) < 0 || sub_group_join(t, c, m, plen, glen) < 0) {
        return;
    }
    if (sub_add(t, c, m, plen, glen) < 0 && t->srv->qgroups != NULL) {
        qgroup_leave(t->srv->qgroups, conn_ref_of(t, c), m->sub_id);
    }
}

int handle_subscribe_may_keep(const struct conn *c, const struct trie_sub *sb)
{
    if (!conn_may_subscribe(c, sb->pattern, sb->pattern_len)) {
        return 0;
    }
    struct cons_user ub;
    const struct cons_user *u = sub_cons_user(c, sb->pattern, sb->pattern_len, &ub);
    for (uint32_t i = 0; u != NULL && i < c->n_cu; i++) {
        const struct catchup *e = &c->cu[i];
        struct consumer *k = e->root ? e->root : e->cons;
        if (e->sub == sb && k != NULL && !cons_may_bind(k, u)) {
            return 0;
        }
    }
    return 1;
}

/* Remove c->subs[i] from the workers and the connection. Returns 0 or
 * -ENOMEM (nothing changed). */
int handle_subscribe_remove_at(struct iot *t, struct conn *c, uint32_t i)
{
    struct trie_sub *s = c->subs[i];
    if (iot_post_sub_change(t, W_SUB_DEL, s) < 0) {
        return -ENOMEM;
    }
    if (t->srv->qgroups != NULL) {
        qgroup_leave(t->srv->qgroups, conn_ref_of(t, c), s->sub_id);
    }
    cu_unbind(t, c, s->sub_id);
    cu_remove(c, s->sub_id);
    cu_wild_remove_sub(c, s);
    /* c->subs stays sorted by key (deliver_routed() searches it) */
    memmove(&c->subs[i], &c->subs[i + 1], (c->n_subs - i - 1) * sizeof(*c->subs));
    c->n_subs--;
    trie_sub_unref(s);
    stats_sub(&t->stats.subs, 1);
    return 0;
}

void handle_unsubscribe(struct iot *t, struct conn *c, Ferry__Unsubscribe *m)
{
    int i = handle_subscribe_find(c, m->sub_id);
    if (i < 0) {
        send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_UNKNOWN_SUBSCRIPTION,
                    "no subscription with that sub_id");
        return;
    }
    if (handle_subscribe_remove_at(t, c, (uint32_t)i) < 0) {
        send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        return;
    }
    /* Deliveries staged before now were matched while the subscription was
     * live; conn_send() writes them ahead of the SubAck, and every later one
     * is filtered out in deliver_routed(). */
    send_suback(t, c, m->sub_id, FERRY__ERROR_CODE__ERROR_NONE, NULL);
}

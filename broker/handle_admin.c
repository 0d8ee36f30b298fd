/*
 * handle_admin.c - AdminRequest: topics, topic info, purge, consumers, cluster
 * metadata and topic create (a backup: handle_backup.c).
 */
#include "io_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ADMIN_TOPICS_DEFAULT 1000u
#define ADMIN_TOPICS_MAX 10000u

static void admin_reply_send(struct iot *t, struct conn *c, Ferry__AdminReply *r)
{
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_ADMIN_REPLY;
    f.admin_reply = r;
    if (codec_frame_size(&f) - FRAME_HDR_LEN > c->max_frame_len) {
        /* never a frame above the negotiated limit */
        Ferry__AdminReply e = FERRY__ADMIN_REPLY__INIT;
        e.id = r->id;
        e.code = FERRY__ERROR_CODE__ERROR_LIMIT_EXCEEDED;
        e.text = (char *)"reply larger than the negotiated max_frame_len";
        f.admin_reply = &e;
    }
    conn_send(t, c, &f);
}

struct topic_list {
    const char *pattern;
    size_t pattern_len;
    uint32_t limit;
    size_t budget, used; /* encoded bytes: the reply must fit max_frame_len */
    int is_truncated;    /* more topics match than the reply holds */
    Ferry__TopicInfo *v;
    Ferry__TopicInfo **pv;
    uint32_t n, cap;
    int is_nomem;
};

static void topic_info_fill(Ferry__TopicInfo *ti, char *name, const struct store_topic_info *in)
{
    ferry__topic_info__init(ti);
    ti->name = name;
    ti->messages = in->n_msgs;
    ti->bytes = in->n_bytes;
    ti->first_seq = in->n_msgs ? in->first_seq : 0;
    ti->last_seq = in->last_seq;
}

/* Inside a store read: copy what we keep. */
static int topic_list_cb(void *ctx, const char *name, size_t name_len,
                         const struct store_topic_info *info)
{
    struct topic_list *l = ctx;
    if (l->pattern_len && !topic_match(l->pattern, l->pattern_len, name, name_len)) {
        return 0;
    }
    /* a TopicInfo: the name and six varints, with tags and lengths */
    size_t size = name_len + 80;
    if (l->n == l->limit || l->used + size > l->budget) {
        l->is_truncated = 1;
        return 1;
    }
    l->used += size;
    if (l->n == l->cap) {
        uint32_t cap = l->cap ? l->cap * 2 : 64;
        Ferry__TopicInfo *v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL) {
            l->is_nomem = 1;
            return 1;
        }
        l->v = v;
        l->cap = cap;
    }
    char *copy = malloc(name_len + 1);
    if (copy == NULL) {
        l->is_nomem = 1;
        return 1;
    }
    memcpy(copy, name, name_len);
    copy[name_len] = '\0';
    topic_info_fill(&l->v[l->n++], copy, info);
    return 0;
}

/* TopicListRequest: a bounded list (limit), read in short transactions. */
static void admin_topics(struct iot *t, struct conn *c, Ferry__AdminRequest *m)
{
    Ferry__AdminReply r = FERRY__ADMIN_REPLY__INIT;
    r.id = m->id;
    const char *pat = m->topics->pattern;
    size_t plen = strlen(pat);
    const char *why;
    if (plen && topic_validate(pat, plen, 1, t->srv->cfg.max_topic_len, t->srv->cfg.max_topic_depth,
                               &why)) {
        r.code = FERRY__ERROR_CODE__ERROR_INVALID_PATTERN;
        r.text = (char *)why;
        admin_reply_send(t, c, &r);
        return;
    }
    /* The literal tokens before the first wildcard narrow the scan. */
    size_t prefix = 0;
    for (size_t i = 0; i <= plen; i++) {
        if (i == plen || pat[i] == '.') {
            size_t tok = prefix;
            if (i - tok == 1 && (pat[tok] == '*' || pat[tok] == '>')) {
                break;
            }
            prefix = i < plen ? i + 1 : i;
        }
    }
    uint32_t limit = m->topics->limit ? m->topics->limit : ADMIN_TOPICS_DEFAULT;
    if (limit > ADMIN_TOPICS_MAX) {
        limit = ADMIN_TOPICS_MAX;
    }
    /* The reply fits the client's frame limit (room kept for the rest of
     * AdminReply); a list cut short says so in its text. */
    struct topic_list l = {.pattern = pat, .pattern_len = plen, .limit = limit};
    l.budget = c->max_frame_len > 1024 ? c->max_frame_len - 1024 : 0;
    char text[200];
    int rc = store_topic_list(t->srv->store, pat, prefix, topic_list_cb, &l);
    if (rc < 0 || l.is_nomem) {
        r.code = rc == -EAGAIN || l.is_nomem ? FERRY__ERROR_CODE__ERROR_SERVER_BUSY
                                             : FERRY__ERROR_CODE__ERROR_STORAGE_FAILED;
        r.text = (char *)(l.is_nomem ? "out of memory" : server_strerror(rc));
    } else if (l.n) {
        l.pv = malloc(l.n * sizeof(*l.pv));
        if (l.pv == NULL) {
            r.code = FERRY__ERROR_CODE__ERROR_SERVER_BUSY;
            r.text = (char *)"out of memory";
        } else {
            for (uint32_t i = 0; i < l.n; i++) {
                l.pv[i] = &l.v[i];
            }
            r.n_topics = l.n;
            r.topics = l.pv;
        }
    }
    if (r.code == FERRY__ERROR_CODE__ERROR_NONE && l.is_truncated) {
        snprintf(text, sizeof(text),
                 "truncated: more topics match; %u shown (limit %u, server default %u, "
                 "at most %u, and the negotiated max_frame_len %u)",
                 l.n, limit, ADMIN_TOPICS_DEFAULT, ADMIN_TOPICS_MAX, c->max_frame_len);
        r.text = text;
    }
    admin_reply_send(t, c, &r);
    for (uint32_t i = 0; i < l.n; i++) {
        free(l.v[i].name);
    }
    free(l.v);
    free(l.pv);
}

static void admin_topic_info(struct iot *t, struct conn *c, Ferry__AdminRequest *m)
{
    Ferry__AdminReply r = FERRY__ADMIN_REPLY__INIT;
    Ferry__TopicInfo ti;
    r.id = m->id;
    const char *name = m->topic_info->topic;
    size_t len = strlen(name);
    struct store_topic_info in;
    const char *why;
    int rc = store_topic_info(t->srv->store, name, len, &in);
    int is_ephemeral = rc == FERRY_ENOTOPIC && len &&
                       !topic_validate(name, len, 0, t->srv->cfg.max_topic_len,
                                       t->srv->cfg.max_topic_depth, &why) &&
                       cfg_is_ephemeral(&t->srv->cfg, name, len);
    if (rc == 0 || is_ephemeral) {
        /* The subscriptions are in the workers' tries, which only their
         * workers read: the topic's owner counts them and answers. */
        struct topic_info_req *q = malloc(sizeof(*q) + len + 1);
        if (q != NULL) {
            memset(q, 0, sizeof(*q));
            q->conn_ref = conn_ref_of(t, c);
            q->admin_id = m->id;
            if (rc == 0) {
                topic_info_fill(&ti, (char *)name, &in);
                q->messages = ti.messages;
                q->bytes = ti.bytes;
                q->first_seq = ti.first_seq;
                q->last_seq = ti.last_seq;
            }
            q->is_ephemeral = is_ephemeral;
            q->topic_len = len;
            memcpy(q->topic, name, len + 1);
            /* Queued like a publication: a worker that is behind delays
             * the answer and stops reading this connection (backpressure)
             * rather than failing the request. */
            uint32_t owner = topic_hash(name, len) % t->srv->n_workers;
            struct wmsg w = {.kind = W_TOPIC_INFO, .p = q};
            if (iot_wq_push(&t->wq[owner], w) == 0) {
                if (t->wq[owner].n >= WQ_PAUSE) {
                    conn_pause(t, c);
                }
                return; /* the worker answers */
            }
            free(q);
        }
        r.code = FERRY__ERROR_CODE__ERROR_SERVER_BUSY;
        r.text = (char *)"out of memory; retry";
    } else if (rc == FERRY_ENOTOPIC || rc == FERRY_EINVAL) {
        r.code = FERRY__ERROR_CODE__ERROR_UNKNOWN_TOPIC;
        r.text = (char *)"no such stored topic";
    } else {
        r.code = rc == -EAGAIN ? FERRY__ERROR_CODE__ERROR_SERVER_BUSY
                               : FERRY__ERROR_CODE__ERROR_STORAGE_FAILED;
        r.text = (char *)server_strerror(rc);
    }
    admin_reply_send(t, c, &r);
}

/* A purge writes (in many small commits): the writer runs it and answers. */
static int admin_purge(struct iot *t, struct conn *c, Ferry__AdminRequest *m)
{
    const char *name = m->topic_purge->topic;
    size_t len = strlen(name);
    struct purge_req *q = malloc(sizeof(*q) + len + 1);
    if (q == NULL) {
        return -ENOMEM;
    }
    q->conn_ref = conn_ref_of(t, c);
    q->admin_id = m->id;
    q->topic_len = len;
    memcpy(q->topic, name, len + 1);
    struct wmsg w = {.kind = W_PURGE, .p = q};
    if (mbox_try_post(t->srv->writer_in, &w, 1) != 1) {
        free(q);
        return -EAGAIN;
    }
    return 0;
}

#define ADMIN_CONSUMERS_DEFAULT 1000u
#define ADMIN_CONSUMERS_MAX 10000u

struct admin_match {
    const char *pattern;
    size_t pattern_len;
};

static int admin_consumer_match(void *ctx, const char *topic, size_t len)
{
    const struct admin_match *am = ctx;
    return am->pattern_len == 0 || topic_match(am->pattern, am->pattern_len, topic, len);
}

/* ConsumerListRequest: durables in memory and only in the store. */
static void admin_consumers(struct iot *t, struct conn *c, Ferry__AdminRequest *m)
{
    Ferry__AdminReply r = FERRY__ADMIN_REPLY__INIT;
    r.id = m->id;
    struct admin_match am = {m->consumers->pattern, strlen(m->consumers->pattern)};
    const char *why;
    if (am.pattern_len && topic_validate(am.pattern, am.pattern_len, 1, t->srv->cfg.max_topic_len,
                                         t->srv->cfg.max_topic_depth, &why)) {
        r.code = FERRY__ERROR_CODE__ERROR_INVALID_PATTERN;
        r.text = (char *)why;
        admin_reply_send(t, c, &r);
        return;
    }
    uint32_t limit = m->consumers->limit ? m->consumers->limit : ADMIN_CONSUMERS_DEFAULT;
    if (limit > ADMIN_CONSUMERS_MAX) {
        limit = ADMIN_CONSUMERS_MAX;
    }
    struct cons_info *v = NULL;
    size_t n = 0;
    int rc = cons_reg_list(t->srv->consumers, admin_consumer_match, &am, &v, &n);
    Ferry__ConsumerInfo *cv = NULL;
    Ferry__ConsumerInfo **pv = NULL;
    char(*held)[CONS_WHO_MAX + 32] = NULL; /* "<who> and N more" */
    char text[200];
    if (rc == 0 && n > 0) {
        cv = calloc(n, sizeof(*cv));
        pv = calloc(n, sizeof(*pv));
        held = calloc(n, sizeof(*held));
        if (cv == NULL || pv == NULL || held == NULL) {
            rc = -ENOMEM;
        }
    }
    if (rc != 0) {
        r.code = rc == -ENOMEM || rc == -EAGAIN ? FERRY__ERROR_CODE__ERROR_SERVER_BUSY
                                                : FERRY__ERROR_CODE__ERROR_STORAGE_FAILED;
        r.text = (char *)server_strerror(rc);
        n = 0;
    }
    /* The reply fits the client's frame limit, as for topics. */
    size_t budget = c->max_frame_len > 1024 ? c->max_frame_len - 1024 : 0;
    size_t used = 0, shown = 0;
    Ferry__ConsumerInfo *root = NULL; /* the last wildcard durable listed */
    for (size_t i = 0; i < n; i++) {
        size_t size = strlen(v[i].topic) + strlen(v[i].name) + strlen(v[i].group) +
                      strlen(v[i].pattern) + 160;
        if (shown == limit || used + size > budget) {
            break;
        }
        used += size;
        Ferry__ConsumerInfo *ci = &cv[shown];
        ferry__consumer_info__init(ci);
        ci->topic = v[i].topic;
        ci->name = v[i].name;
        ci->ack_floor = v[i].ack_floor;
        ci->next_seq = v[i].next_seq;
        ci->pending = v[i].n_pending;
        ci->redelivered = v[i].n_redelivered;
        ci->holders = v[i].n_holders;
        ci->queue_group = v[i].group;
        ci->is_loaded = v[i].is_loaded != 0;
        ci->pattern = v[i].pattern;
        ci->redeliveries = v[i].n_redeliveries;
        ci->dead_letters = v[i].n_dead_letters;
        if (v[i].n_holders == 0) {
            ci->held_by = (char *)"";
        } else if (v[i].n_holders == 1) {
            snprintf(held[shown], sizeof(held[shown]), "%s", v[i].held_by);
            ci->held_by = held[shown];
        } else {
            /* the group's name is in queue_group */
            snprintf(held[shown], sizeof(held[shown]), "%s and %u more", v[i].held_by,
                     v[i].n_holders - 1);
            ci->held_by = held[shown];
        }
        if (v[i].is_root) {
            ci->ack_floor = ci->next_seq = 0; /* the sums of its positions, below */
            root = ci;
        } else {
            cons_lag(t->srv->store, ci->topic, ci->ack_floor, t->now_ns, &ci->lag_messages,
                     &ci->lag_ms);
        }
        /* A wildcard durable's positions follow it (sorted by key). */
        if (root != NULL && ci != root && strcmp(ci->pattern, root->topic) == 0 &&
            strcmp(ci->name, root->name) == 0) {
            root->pending += ci->pending;
            root->redelivered += ci->redelivered;
            root->redeliveries += ci->redeliveries;
            root->dead_letters += ci->dead_letters;
            root->lag_messages += ci->lag_messages;
            root->lag_ms = ci->lag_ms > root->lag_ms ? ci->lag_ms : root->lag_ms;
        }
        pv[shown] = ci;
        shown++;
    }
    if (rc == 0 && shown < n) {
        snprintf(text, sizeof(text),
                 "truncated: %zu durables match; %zu shown (limit %u, server default %u, at most "
                 "%u, and the negotiated max_frame_len %u)",
                 n, shown, limit, ADMIN_CONSUMERS_DEFAULT, ADMIN_CONSUMERS_MAX, c->max_frame_len);
        r.text = text;
    }
    r.n_consumers = shown;
    r.consumers = pv;
    admin_reply_send(t, c, &r);
    free(held);
    free(pv);
    free(cv);
    free(v);
}

/* ConsumerDeleteRequest. A forced delete's holders may live on any IO
 * thread: each is told through its thread's mailbox (handle_admin_detach). */
static void admin_consumer_delete(struct iot *t, struct conn *c, Ferry__AdminRequest *m)
{
    Ferry__AdminReply r = FERRY__ADMIN_REPLY__INIT;
    r.id = m->id;
    const Ferry__ConsumerDeleteRequest *q = m->consumer_delete;
    struct cons_detach *hv = NULL;
    uint32_t nh = 0;
    int rc = cons_reg_delete(t->srv->consumers, q->topic, strlen(q->topic), q->name,
                             strlen(q->name), q->force, &hv, &nh);
    char text[400];
    if (rc == -EBUSY) {
        snprintf(text, sizeof(text),
                 "durable %.200s on %.100s is held by a subscription (delete it with force)",
                 q->name, q->topic);
        r.code = FERRY__ERROR_CODE__ERROR_DURABLE_IN_USE;
        r.text = text;
    } else if (rc == FERRY_ENOTOPIC || rc == FERRY_EINVAL) {
        r.code = FERRY__ERROR_CODE__ERROR_UNKNOWN_CONSUMER;
        r.text = (char *)"no such durable consumer";
    } else if (rc != 0) {
        r.code = rc == -ENOMEM || rc == -EAGAIN ? FERRY__ERROR_CODE__ERROR_SERVER_BUSY
                                                : FERRY__ERROR_CODE__ERROR_STORAGE_FAILED;
        r.text = (char *)server_strerror(rc);
    } else {
        log_client_info(c->client_id, c->peer, "deleted durable %s on %s%s", q->name, q->topic,
                        nh ? " (force: holders detached)" : "");
    }
    for (uint32_t i = 0; i < nh; i++) {
        struct rmsg d = {.kind = R_DETACH, .conn_ref = hv[i].holder_ref};
        d.u.ack.id = hv[i].sub_id;
        d.u.ack.seq = hv[i].id;
        uint32_t k = CONN_REF_IOT(hv[i].holder_ref);
        if (k >= t->srv->n_iot || mbox_post(t->srv->iot_in[k], &d, 1) < 0) {
            log_warn("durable %s on %s: could not tell subscription %llu that it was deleted",
                     q->name, q->topic, (unsigned long long)hv[i].sub_id);
        }
    }
    free(hv);
    admin_reply_send(t, c, &r);
}

/* R_DETACH: the durable this subscription held was deleted with force. The
 * sub_id may have been reused since: only a subscription still bound to
 * that durable ends. */
void handle_admin_detach(struct iot *t, const struct rmsg *m)
{
    struct conn *c = conn_by_ref(t, m->conn_ref);
    if (c == NULL || c->state != ST_OPEN) {
        return;
    }
    uint64_t sub_id = m->u.ack.id;
    struct catchup *e = cu_find(c, sub_id);
    int i = handle_subscribe_find(c, sub_id);
    struct consumer *k = e == NULL ? NULL : cu_is_root(e) ? e->root : e->cons;
    if (k == NULL || cons_id(k) != (uint32_t)m->u.ack.seq || i < 0) {
        return;
    }
    char text[352];
    snprintf(text, sizeof(text),
             "subscription %llu: its durable consumer on %.*s was deleted by an administrator",
             (unsigned long long)sub_id,
             (int)(c->subs[i]->pattern_len > 256 ? 256 : c->subs[i]->pattern_len),
             c->subs[i]->pattern);
    if (handle_subscribe_remove_at(t, c, (uint32_t)i) < 0) {
        conn_fail(t, c, FERRY__ERROR_CODE__ERROR_INTERNAL,
                  "out of memory removing a subscription whose durable was deleted");
        return;
    }
    conn_send_error(t, c, FERRY__ERROR_CODE__ERROR_CONSUMER_DELETED, text, sub_id,
                    FERRY__ERROR__REF_KIND__REF_SUBSCRIPTION, 0);
}

/* Copy the n counters of in to out without their trailing zeros; returns
 * how many are left. */
static size_t trimmed(uint64_t *out, const uint64_t *in, size_t n)
{
    while (n > 0 && in[n - 1] == 0) {
        n--;
    }
    memcpy(out, in, n * sizeof(*out));
    return n;
}

/* Cluster mode's two questions, Metadata and TopicCreate, are a client's
 * way to a topic's owner (libferry asks them before its first publish or
 * subscription): any logged-in user may ask them, and learns of the topics
 * it may publish or subscribe to. Every other admin request needs `admin`. */
static int admin_is_cluster_ask(const Ferry__AdminRequest *m)
{
    return m->request_case == FERRY__ADMIN_REQUEST__REQUEST_METADATA ||
           m->request_case == FERRY__ADMIN_REQUEST__REQUEST_TOPIC_CREATE;
}

/* May c learn where topic lives (and place it)? An admin may; anyone else
 * with the right to publish to it or to subscribe to it. */
static int admin_may_see(const struct conn *c, const char *topic, size_t len)
{
    return c->auth == NULL || (c->who != NULL && c->who->is_admin) ||
           conn_may_publish(c, topic, len) || conn_may_subscribe(c, topic, len);
}

/* Metadata (cluster mode): the cluster view of this broker (cluster.h). A
 * server not in a cluster answers with an empty Metadata. */
static void admin_metadata(struct iot *t, struct conn *c, Ferry__AdminRequest *m)
{
    Ferry__AdminReply r = FERRY__ADMIN_REPLY__INIT;
    Ferry__Metadata md = FERRY__METADATA__INIT;
    struct clu_meta cm = {0};
    r.id = m->id;
    r.metadata = &md;
    md.cluster = (char *)"";
    if (t->srv->cluster == NULL) {
        admin_reply_send(t, c, &r);
        return;
    }
    const Ferry__MetadataRequest *q = m->metadata;
    uint32_t limit = q->limit ? q->limit : ADMIN_TOPICS_DEFAULT;
    limit = limit > ADMIN_TOPICS_MAX ? ADMIN_TOPICS_MAX : limit;
    /* What fits the connection's frame limit: a placement is its name
     * plus an address and three varints. */
    size_t budget = c->max_frame_len > 65536 ? c->max_frame_len - 65536 : c->max_frame_len / 2;
    Ferry__BrokerInfo *bv = NULL, **bp = NULL;
    Ferry__TopicPlacement *tv = NULL, **tp = NULL;
    if (clu_metadata(t->srv->cluster, q->pattern, limit, &cm) < 0 ||
        (bv = calloc(cm.n_brokers + 1, sizeof(*bv))) == NULL ||
        (bp = calloc(cm.n_brokers + 1, sizeof(*bp))) == NULL ||
        (tv = calloc(cm.n_topics + 1, sizeof(*tv))) == NULL ||
        (tp = calloc(cm.n_topics + 1, sizeof(*tp))) == NULL) {
        r.code = FERRY__ERROR_CODE__ERROR_SERVER_BUSY;
        r.text = (char *)"out of memory";
        r.metadata = NULL;
        admin_reply_send(t, c, &r);
        goto out;
    }
    md.cluster = cm.name;
    md.broker_id = cm.self_id;
    md.controller = cm.controller_id;
    md.controller_epoch = cm.controller_epoch;
    md.is_serving = cm.is_serving;
    for (uint32_t i = 0; i < cm.n_brokers; i++) {
        ferry__broker_info__init(&bv[i]);
        bv[i].id = cm.brokers[i].id;
        bv[i].address = cm.brokers[i].addr;
        bv[i].is_live = cm.brokers[i].is_live;
        bv[i].topics = cm.brokers[i].n_topics;
        bp[i] = &bv[i];
    }
    md.n_brokers = cm.n_brokers;
    md.brokers = bp;
    size_t used = 0;
    for (uint32_t i = 0; i < cm.n_topics; i++) {
        if (!admin_may_see(c, cm.topics[i].name, strlen(cm.topics[i].name))) {
            continue;
        }
        const char *addr = "";
        for (uint32_t k = 0; k < cm.n_brokers; k++) {
            addr = cm.brokers[k].id == cm.topics[i].owner ? cm.brokers[k].addr : addr;
        }
        used += strlen(cm.topics[i].name) + strlen(addr) + 40;
        if (used > budget) {
            cm.is_truncated = 1;
            break;
        }
        Ferry__TopicPlacement *pl = &tv[md.n_topics];
        ferry__topic_placement__init(pl);
        pl->topic = cm.topics[i].name;
        pl->owner = cm.topics[i].owner;
        pl->address = (char *)addr;
        pl->epoch = cm.topics[i].epoch;
        tp[md.n_topics++] = pl;
    }
    md.topics = tp;
    if (cm.is_truncated) {
        r.text = (char *)"truncated";
    }
    admin_reply_send(t, c, &r);
out:
    free(bv);
    free(bp);
    free(tv);
    free(tp);
    clu_meta_free(&cm);
}

/* Topic create: in cluster mode, place the topic (the frame waits for the
 * controller, as a first publish does) and say where. */
static void admin_topic_create(struct iot *t, struct conn *c, Ferry__AdminRequest *m)
{
    Ferry__AdminReply r = FERRY__ADMIN_REPLY__INIT;
    Ferry__TopicPlacement pl = FERRY__TOPIC_PLACEMENT__INIT;
    const struct cfg *cfg = &t->srv->cfg;
    const char *topic = m->topic_create->topic, *why;
    size_t len = strlen(topic);
    char text[400], owner[128];
    struct clu_meta cm = {0};
    enum clu_verdict v = CLU_SERVE;
    r.id = m->id;
    if (topic_validate(topic, len, 0, cfg->max_topic_len, cfg->max_topic_depth, &why) != 0) {
        r.code = FERRY__ERROR_CODE__ERROR_INVALID_TOPIC;
        r.text = (char *)why;
    } else if (!admin_may_see(c, topic, len)) {
        conn_acl_denied(t, c, "place", topic, len);
        r.code = FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED;
        r.text = (char *)"permission denied: placing a topic needs the right to publish or "
                         "subscribe to it";
    } else if (t->srv->cluster == NULL) {
        r.text = (char *)"not in a cluster: a topic comes to be with its first publish";
    } else if ((v = conn_clu_route(t, c, topic, len, text, sizeof(text), owner, sizeof(owner))) ==
               CLU_PENDING) {
        return; /* the frame waits for the placement (conn_hold.c) */
    } else if (v == CLU_UNAVAILABLE && owner[0] == '\0') {
        r.code = FERRY__ERROR_CODE__ERROR_UNAVAILABLE;
        r.text = text;
    } else if (clu_metadata(t->srv->cluster, topic, 1, &cm) < 0 || cm.n_topics != 1) {
        r.code = FERRY__ERROR_CODE__ERROR_INTERNAL;
        r.text = (char *)"placed, but not in this broker's view";
    } else {
        pl.topic = (char *)topic;
        pl.owner = cm.topics[0].owner;
        pl.epoch = cm.topics[0].epoch;
        pl.address = (char *)"";
        for (uint32_t k = 0; k < cm.n_brokers; k++) {
            pl.address = cm.brokers[k].id == pl.owner ? cm.brokers[k].addr : pl.address;
        }
        r.placement = &pl;
    }
    admin_reply_send(t, c, &r);
    clu_meta_free(&cm);
}

void handle_admin(struct iot *t, struct conn *c, Ferry__AdminRequest *m)
{
    Ferry__AdminReply r = FERRY__ADMIN_REPLY__INIT;
    Ferry__Stats st = FERRY__STATS__INIT;
    uint64_t commit_hist[STORE_LAT_BUCKETS], sync_hist[STORE_LAT_BUCKETS];
    uint64_t msgs_hist[STORE_MSGS_BUCKETS], refused[STATS_CODES];
    r.id = m->id;
    if (c->auth != NULL && (c->who == NULL || !c->who->is_admin) && !admin_is_cluster_ask(m)) {
        conn_acl_denied(t, c, "admin", "request", 7);
        r.code = FERRY__ERROR_CODE__ERROR_PERMISSION_DENIED;
        r.text = (char *)"permission denied: admin requests need `allow NAME admin`";
        admin_reply_send(t, c, &r);
        return;
    }
    if (m->request_case == FERRY__ADMIN_REQUEST__REQUEST_STATS) {
        struct stats_snapshot s;
        server_stats(t->srv, &s);
        st.server_id = t->srv->server_id;
        st.server_version = (char *)FERRY_VERSION;
        st.uptime_ms = (uint64_t)(now_realtime_ns() / 1000000) - t->srv->start_ms;
        st.connections = s.conns;
        st.connections_total = s.conns_total;
        st.subscriptions = s.subs;
        st.msgs_in = s.msgs_in;
        st.msgs_out = s.msgs_out;
        st.bytes_in = s.bytes_in;
        st.bytes_out = s.bytes_out;
        st.slow_consumers = s.slow_consumers;
        st.protocol_errors = s.protocol_errors;
        st.auth_failures = s.auth_failures;
        st.permission_denials = s.permission_denials;
        st.n_publish_refused = trimmed(refused, s.pub_refused, STATS_CODES);
        st.publish_refused = refused;
        if (t->srv->store) {
            struct store_stats ss;
            store_stats(t->srv->store, &ss);
            st.store_bytes = ss.map_used;
            st.topics = ss.n_topics;
            st.store_scheduled = ss.n_scheduled;
            st.crc_errors = ss.n_crc_errors;
            st.store_commits = ss.n_commits;
            st.store_messages = ss.n_appends;
            st.store_syncs = 0;
            for (int i = 0; i < STORE_LAT_BUCKETS; i++) {
                st.store_syncs += ss.sync_hist[i];
            }
            st.store_map_size = ss.map_size;
            st.store_map_size_max = ss.map_size_max;
            st.n_commit_latency_hist = trimmed(commit_hist, ss.commit_hist, STORE_LAT_BUCKETS);
            st.commit_latency_hist = commit_hist;
            st.n_sync_latency_hist = trimmed(sync_hist, ss.sync_hist, STORE_LAT_BUCKETS);
            st.sync_latency_hist = sync_hist;
            st.n_commit_messages_hist = trimmed(msgs_hist, ss.commit_msgs_hist, STORE_MSGS_BUCKETS);
            st.commit_messages_hist = msgs_hist;
        }
        r.stats = &st;
    } else if (m->request_case == FERRY__ADMIN_REQUEST__REQUEST__NOT_SET) {
        r.code = FERRY__ERROR_CODE__ERROR_INVALID_ARGUMENT;
        r.text = (char *)"empty admin request";
    } else if (m->request_case == FERRY__ADMIN_REQUEST__REQUEST_METADATA) {
        admin_metadata(t, c, m);
        return;
    } else if (m->request_case == FERRY__ADMIN_REQUEST__REQUEST_TOPIC_CREATE) {
        admin_topic_create(t, c, m);
        return;
    } else if (t->srv->store == NULL) {
        r.code = FERRY__ERROR_CODE__ERROR_INTERNAL;
        r.text = (char *)"topic administration needs the store";
    } else if (m->request_case == FERRY__ADMIN_REQUEST__REQUEST_TOPICS) {
        admin_topics(t, c, m);
        return;
    } else if (m->request_case == FERRY__ADMIN_REQUEST__REQUEST_TOPIC_INFO) {
        admin_topic_info(t, c, m);
        return;
    } else if (m->request_case == FERRY__ADMIN_REQUEST__REQUEST_TOPIC_PURGE) {
        if (admin_purge(t, c, m) == 0) {
            return; /* the writer answers */
        }
        r.code = FERRY__ERROR_CODE__ERROR_SERVER_BUSY;
        r.text = (char *)"the store writer is busy; retry";
    } else if (m->request_case == FERRY__ADMIN_REQUEST__REQUEST_CONSUMERS &&
               t->srv->consumers != NULL) {
        admin_consumers(t, c, m);
        return;
    } else if (m->request_case == FERRY__ADMIN_REQUEST__REQUEST_CONSUMER_DELETE &&
               t->srv->consumers != NULL) {
        admin_consumer_delete(t, c, m);
        return;
    } else if (m->request_case == FERRY__ADMIN_REQUEST__REQUEST_BACKUP) {
        handle_backup_request(t, c, m);
        return;
    } else {
        r.code = FERRY__ERROR_CODE__ERROR_UNKNOWN_MESSAGE;
        r.text = (char *)"unknown admin request";
    }
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_ADMIN_REPLY;
    f.admin_reply = &r;
    conn_send(t, c, &f);
}

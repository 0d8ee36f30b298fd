/*
 * admin.c - AdminRequest / AdminReply: stats, topic list, topic info, purge,
 * durable consumer list and delete, cluster metadata (a backup, answered by many replies:
 * backup.c).
 *
 * Each call is synchronous: the request record lives on the caller's stack
 * in c->admins (guarded by c->mu) until the reply, a lost connection, close,
 * or the caller's timeout takes it out.
 */
#include "cluster.h"
#include "ferry_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ferry__admin_unlink(ferry_client *c, struct ferry__admin *a)
{
    for (struct ferry__admin **pp = &c->admins; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == a) {
            *pp = a->next;
            return;
        }
    }
}

static void topic_copy(ferry_topic_info *dst, const Ferry__TopicInfo *src)
{
    memset(dst, 0, sizeof(*dst));
    snprintf(dst->name, sizeof(dst->name), "%s", src->name);
    dst->messages = src->messages;
    dst->bytes = src->bytes;
    dst->first_seq = src->first_seq;
    dst->last_seq = src->last_seq;
    dst->is_ephemeral = src->is_ephemeral != 0;
    dst->subscribers = src->subscribers;
}

static void consumer_copy(ferry_consumer_info *dst, const Ferry__ConsumerInfo *src)
{
    memset(dst, 0, sizeof(*dst));
    snprintf(dst->topic, sizeof(dst->topic), "%s", src->topic);
    snprintf(dst->name, sizeof(dst->name), "%s", src->name);
    dst->ack_floor = src->ack_floor;
    dst->next_seq = src->next_seq;
    dst->pending = src->pending;
    dst->redelivered = src->redelivered;
    dst->lag_messages = src->lag_messages;
    dst->lag_ms = src->lag_ms;
    snprintf(dst->held_by, sizeof(dst->held_by), "%s", src->held_by);
    dst->holders = src->holders;
    snprintf(dst->queue_group, sizeof(dst->queue_group), "%s", src->queue_group);
    snprintf(dst->pattern, sizeof(dst->pattern), "%s", src->pattern);
    dst->is_loaded = src->is_loaded != 0;
    dst->redeliveries = src->redeliveries;
    dst->dead_letters = src->dead_letters;
}

/* dst (cap counters) = the n of src, zero-filled; what does not fit is dropped. */
static void copy_counts(uint64_t *dst, size_t cap, const uint64_t *src, size_t n)
{
    memset(dst, 0, cap * sizeof(*dst));
    if (n > 0) { /* src is NULL when the field is empty */
        memcpy(dst, src, (n < cap ? n : cap) * sizeof(*dst));
    }
}

/* Metadata into a->meta (its arrays malloc'd): 0 or -ENOMEM. */
static int metadata_copy(struct ferry__admin *a, const Ferry__AdminReply *r)
{
    ferry_metadata *o = a->meta;
    const Ferry__Metadata *m = r->metadata;
    memset(o, 0, sizeof(*o));
    if (m == NULL) {
        return 0; /* a server before cluster mode: not in a cluster */
    }
    snprintf(o->cluster, sizeof(o->cluster), "%s", m->cluster);
    o->broker_id = m->broker_id;
    o->controller = m->controller;
    o->controller_epoch = m->controller_epoch;
    o->is_serving = m->is_serving != 0;
    o->is_truncated = strcmp(r->text, "truncated") == 0;
    if ((m->n_brokers && (o->brokers = calloc(m->n_brokers, sizeof(*o->brokers))) == NULL) ||
        (m->n_topics && (o->topics = calloc(m->n_topics, sizeof(*o->topics))) == NULL)) {
        free(o->brokers);
        o->brokers = NULL;
        return -ENOMEM;
    }
    for (size_t i = 0; i < m->n_brokers; i++) {
        ferry_broker_info *b = &o->brokers[i];
        b->id = m->brokers[i]->id;
        snprintf(b->address, sizeof(b->address), "%s", m->brokers[i]->address);
        b->is_live = m->brokers[i]->is_live != 0;
        b->topics = m->brokers[i]->topics;
    }
    o->n_brokers = m->n_brokers;
    for (size_t i = 0; i < m->n_topics; i++) {
        ferry_placement *t = &o->topics[i];
        snprintf(t->topic, sizeof(t->topic), "%s", m->topics[i]->topic);
        t->owner = m->topics[i]->owner;
        snprintf(t->address, sizeof(t->address), "%s", m->topics[i]->address);
        t->epoch = m->topics[i]->epoch;
    }
    o->n_topics = m->n_topics;
    return 0;
}

void ferry__admin_on_reply(ferry_client *c, const Ferry__AdminReply *r)
{
    struct ferry__admin *a = c->admins;
    while (a != NULL && a->id != r->id) {
        a = a->next;
    }
    if (a == NULL) {
        return; /* its caller timed out */
    }
    if (a->kind == FERRY__ADMIN_BACKUP) {
        ferry__backup_on_reply(c, a, r); /* many replies */
        return;
    }
    ferry__admin_unlink(c, a);
    a->is_done = 1;
    a->code = r->code == FERRY__ERROR_CODE__ERROR_NONE ? 0 : FERRY_ERR_FROM_WIRE(r->code);
    snprintf(a->text, sizeof(a->text), "%s", r->text);
    if (a->code == 0) {
        switch (a->kind) {
        case FERRY__ADMIN_STATS:
            if (r->stats != NULL) {
                const Ferry__Stats *s = r->stats;
                ferry_stats *o = a->stats;
                memset(o, 0, sizeof(*o));
                snprintf(o->server_id, sizeof(o->server_id), "%s", s->server_id);
                snprintf(o->server_version, sizeof(o->server_version), "%s", s->server_version);
                o->uptime_ms = s->uptime_ms;
                o->connections = s->connections;
                o->connections_total = s->connections_total;
                o->subscriptions = s->subscriptions;
                o->msgs_in = s->msgs_in;
                o->msgs_out = s->msgs_out;
                o->bytes_in = s->bytes_in;
                o->bytes_out = s->bytes_out;
                o->slow_consumers = s->slow_consumers;
                o->store_bytes = s->store_bytes;
                o->topics = s->topics;
                o->protocol_errors = s->protocol_errors;
                o->auth_failures = s->auth_failures;
                o->permission_denials = s->permission_denials;
                o->crc_errors = s->crc_errors;
                o->store_commits = s->store_commits;
                o->store_messages = s->store_messages;
                o->store_syncs = s->store_syncs;
                o->store_map_size = s->store_map_size;
                o->store_map_size_max = s->store_map_size_max;
                o->store_scheduled = s->store_scheduled;
                copy_counts(o->commit_hist, FERRY_COMMIT_HIST_BUCKETS, s->commit_latency_hist,
                            s->n_commit_latency_hist);
                copy_counts(o->sync_hist, FERRY_COMMIT_HIST_BUCKETS, s->sync_latency_hist,
                            s->n_sync_latency_hist);
                copy_counts(o->commit_msgs_hist, FERRY_COMMIT_MSGS_BUCKETS, s->commit_messages_hist,
                            s->n_commit_messages_hist);
                copy_counts(o->publish_refused, FERRY_REFUSED_CODES, s->publish_refused,
                            s->n_publish_refused);
            } else {
                a->code = FERRY_EPROTOCOL;
            }
            break;
        case FERRY__ADMIN_TOPICS:
        case FERRY__ADMIN_TOPIC_INFO:
            if (r->n_topics > 0) {
                a->topics = calloc(r->n_topics, sizeof(*a->topics));
                if (a->topics == NULL) {
                    a->code = -ENOMEM;
                    break;
                }
                for (size_t i = 0; i < r->n_topics; i++) {
                    topic_copy(&a->topics[i], r->topics[i]);
                }
                a->n_topics = r->n_topics;
            } else if (a->kind == FERRY__ADMIN_TOPIC_INFO) {
                a->code = FERRY_ENOTOPIC;
            }
            break;
        case FERRY__ADMIN_PURGE:
            a->purged = r->purged;
            break;
        case FERRY__ADMIN_METADATA:
            a->code = metadata_copy(a, r);
            break;
        case FERRY__ADMIN_TOPIC_CREATE:
            memset(a->placement, 0, sizeof(*a->placement));
            if (r->placement != NULL) {
                snprintf(a->placement->topic, sizeof(a->placement->topic), "%s",
                         r->placement->topic);
                a->placement->owner = r->placement->owner;
                snprintf(a->placement->address, sizeof(a->placement->address), "%s",
                         r->placement->address);
                a->placement->epoch = r->placement->epoch;
            }
            break;
        case FERRY__ADMIN_CONSUMERS:
            if (r->n_consumers > 0) {
                a->consumers = calloc(r->n_consumers, sizeof(*a->consumers));
                if (a->consumers == NULL) {
                    a->code = -ENOMEM;
                    break;
                }
                for (size_t i = 0; i < r->n_consumers; i++) {
                    consumer_copy(&a->consumers[i], r->consumers[i]);
                }
                a->n_consumers = r->n_consumers;
            }
            break;
        default:
            break;
        }
    }
    pthread_cond_broadcast(&c->cond);
}

void ferry__admin_fail_all(ferry_client *c, int code)
{
    while (c->admins != NULL) {
        struct ferry__admin *a = c->admins;
        c->admins = a->next;
        a->is_done = 1;
        a->code = code;
        snprintf(a->text, sizeof(a->text), "%s", ferry_strerror(code));
    }
    pthread_cond_broadcast(&c->cond);
}

int ferry__admin_send(ferry_client *c, Ferry__AdminRequest *req, struct ferry__admin *a)
{
    if (c->state == FERRY_STATE_CLOSED || c->is_closing) {
        return FERRY_ECLOSED;
    }
    if (ferry__in_callback(c)) {
        return -EDEADLK;
    }
    if (c->phase != FERRY__PH_UP) {
        return FERRY_ENOTREADY;
    }
    a->id = req->id = c->next_admin_id++;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_ADMIN_REQUEST;
    f.admin_request = req;
    int rc = ferry__send_frame(c, &f);
    if (rc != 0) {
        return rc;
    }
    a->next = c->admins;
    c->admins = a;
    ferry__kick(c);
    return 0;
}

/* Send req (a filled AdminRequest without id) and wait for the answer into
 * a. Returns a->code, or a local error. */
static int admin_call(ferry_client *c, Ferry__AdminRequest *req, struct ferry__admin *a,
                      int timeout_ms)
{
    if (timeout_ms <= 0) {
        return -EINVAL;
    }
    if (ferry__clu_calling_back(c)) {
        return -EDEADLK;
    }
    c = ferry__clu_any(c); /* a facade: any of its brokers answers */
    pthread_mutex_lock(&c->mu);
    int rc = ferry__admin_send(c, req, a);
    if (rc != 0) {
        goto out_unlock;
    }
    int64_t deadline = ferry__deadline(timeout_ms);
    while (!a->is_done) {
        if (ferry__now_ms() >= deadline) {
            ferry__admin_unlink(c, a);
            rc = -ETIMEDOUT;
            ferry__seterr(c, rc, "admin request: no answer within %d ms", timeout_ms);
            goto out_unlock;
        }
        ferry__wait(c, deadline);
    }
    rc = a->code;
    if (rc != 0) {
        ferry__seterr(c, rc, "admin request: %s", a->text[0] ? a->text : ferry_strerror(rc));
    }
out_unlock:
    pthread_mutex_unlock(&c->mu);
    if (rc != 0) {
        free(a->topics);
        a->topics = NULL;
        free(a->consumers);
        a->consumers = NULL;
    }
    return rc;
}

FERRY_API int ferry_admin_stats(ferry_client *c, int timeout_ms, ferry_stats *out)
{
    if (c == NULL || out == NULL) {
        return -EINVAL;
    }
    ferry_stats tmp;
    Ferry__StatsRequest sr = FERRY__STATS_REQUEST__INIT;
    Ferry__AdminRequest req = FERRY__ADMIN_REQUEST__INIT;
    req.request_case = FERRY__ADMIN_REQUEST__REQUEST_STATS;
    req.stats = &sr;
    struct ferry__admin a = {.kind = FERRY__ADMIN_STATS, .stats = &tmp};
    int rc = admin_call(c, &req, &a, timeout_ms);
    if (rc == 0) {
        *out = tmp;
    }
    return rc;
}

FERRY_API int ferry_admin_topics(ferry_client *c, const char *pattern, uint32_t limit,
                                 int timeout_ms, ferry_topic_info **out, size_t *n_out)
{
    if (c == NULL || out == NULL || n_out == NULL ||
        (pattern != NULL && !ferry__str_valid(pattern, 255))) {
        return -EINVAL;
    }
    Ferry__TopicListRequest tr = FERRY__TOPIC_LIST_REQUEST__INIT;
    tr.pattern = pattern != NULL ? (char *)pattern : "";
    tr.limit = limit;
    Ferry__AdminRequest req = FERRY__ADMIN_REQUEST__INIT;
    req.request_case = FERRY__ADMIN_REQUEST__REQUEST_TOPICS;
    req.topics = &tr;
    struct ferry__admin a = {.kind = FERRY__ADMIN_TOPICS};
    int rc = admin_call(c, &req, &a, timeout_ms);
    if (rc == 0) {
        *out = a.topics;
        *n_out = a.n_topics;
    }
    return rc;
}

FERRY_API int ferry_admin_metadata(ferry_client *c, const char *pattern, uint32_t limit,
                                   int timeout_ms, ferry_metadata *out)
{
    if (c == NULL || out == NULL || (pattern != NULL && !ferry__str_valid(pattern, 255))) {
        return -EINVAL;
    }
    Ferry__MetadataRequest mr = FERRY__METADATA_REQUEST__INIT;
    mr.pattern = pattern != NULL ? (char *)pattern : "";
    mr.limit = limit;
    Ferry__AdminRequest req = FERRY__ADMIN_REQUEST__INIT;
    req.request_case = FERRY__ADMIN_REQUEST__REQUEST_METADATA;
    req.metadata = &mr;
    ferry_metadata tmp;
    memset(&tmp, 0, sizeof(tmp));
    struct ferry__admin a = {.kind = FERRY__ADMIN_METADATA, .meta = &tmp};
    int rc = admin_call(c, &req, &a, timeout_ms);
    if (rc == 0) {
        *out = tmp;
    }
    return rc;
}

FERRY_API int ferry_admin_topic_create(ferry_client *c, const char *topic, int timeout_ms,
                                       ferry_placement *out)
{
    if (c == NULL || topic == NULL || !ferry__topic_valid(topic)) {
        return -EINVAL;
    }
    Ferry__TopicCreateRequest tr = FERRY__TOPIC_CREATE_REQUEST__INIT;
    tr.topic = (char *)topic;
    Ferry__AdminRequest req = FERRY__ADMIN_REQUEST__INIT;
    req.request_case = FERRY__ADMIN_REQUEST__REQUEST_TOPIC_CREATE;
    req.topic_create = &tr;
    ferry_placement tmp;
    struct ferry__admin a = {.kind = FERRY__ADMIN_TOPIC_CREATE, .placement = &tmp};
    int rc = admin_call(c, &req, &a, timeout_ms);
    if (rc == 0 && out != NULL) {
        *out = tmp;
    }
    return rc;
}

FERRY_API int ferry_admin_topic_info(ferry_client *c, const char *topic, int timeout_ms,
                                     ferry_topic_info *out)
{
    /* ferry_topic_info.name holds 255 bytes: the longest stored topic. */
    if (c == NULL || topic == NULL || out == NULL || !ferry__topic_valid(topic) ||
        strlen(topic) >= sizeof(out->name)) {
        return -EINVAL;
    }
    Ferry__TopicInfoRequest tr = FERRY__TOPIC_INFO_REQUEST__INIT;
    tr.topic = (char *)topic;
    Ferry__AdminRequest req = FERRY__ADMIN_REQUEST__INIT;
    req.request_case = FERRY__ADMIN_REQUEST__REQUEST_TOPIC_INFO;
    req.topic_info = &tr;
    struct ferry__admin a = {.kind = FERRY__ADMIN_TOPIC_INFO};
    int rc = ferry__clu_calling_back(c)
                 ? -EDEADLK
                 : admin_call(ferry__clu_owner_or_any(c, topic), &req, &a, timeout_ms);
    if (rc == 0) {
        *out = a.topics[0];
        free(a.topics);
    }
    return rc;
}

FERRY_API int ferry_admin_topic_purge(ferry_client *c, const char *topic, int timeout_ms,
                                      uint64_t *purged_out)
{
    if (c == NULL || topic == NULL || !ferry__topic_valid(topic)) {
        return -EINVAL;
    }
    Ferry__TopicPurgeRequest tr = FERRY__TOPIC_PURGE_REQUEST__INIT;
    tr.topic = (char *)topic;
    Ferry__AdminRequest req = FERRY__ADMIN_REQUEST__INIT;
    req.request_case = FERRY__ADMIN_REQUEST__REQUEST_TOPIC_PURGE;
    req.topic_purge = &tr;
    struct ferry__admin a = {.kind = FERRY__ADMIN_PURGE};
    int rc = ferry__clu_calling_back(c)
                 ? -EDEADLK
                 : admin_call(ferry__clu_owner_or_any(c, topic), &req, &a, timeout_ms);
    if (rc == 0 && purged_out != NULL) {
        *purged_out = a.purged;
    }
    return rc;
}

FERRY_API int ferry_admin_consumers(ferry_client *c, const char *pattern, uint32_t limit,
                                    int timeout_ms, ferry_consumer_info **out, size_t *n_out)
{
    if (c == NULL || out == NULL || n_out == NULL ||
        (pattern != NULL && !ferry__str_valid(pattern, 255))) {
        return -EINVAL;
    }
    Ferry__ConsumerListRequest lr = FERRY__CONSUMER_LIST_REQUEST__INIT;
    lr.pattern = pattern != NULL ? (char *)pattern : "";
    lr.limit = limit;
    Ferry__AdminRequest req = FERRY__ADMIN_REQUEST__INIT;
    req.request_case = FERRY__ADMIN_REQUEST__REQUEST_CONSUMERS;
    req.consumers = &lr;
    struct ferry__admin a = {.kind = FERRY__ADMIN_CONSUMERS};
    int rc = admin_call(c, &req, &a, timeout_ms);
    if (rc == 0) {
        *out = a.consumers;
        *n_out = a.n_consumers;
    }
    return rc;
}

FERRY_API int ferry_admin_consumer_delete(ferry_client *c, const char *topic, const char *name,
                                          int force, int timeout_ms)
{
    /* topic: a topic, or a wildcard durable's pattern (the server checks) */
    if (c == NULL || topic == NULL || name == NULL || !ferry__str_valid(topic, 255) ||
        topic[0] == '\0' || !ferry__str_valid(name, 200) || name[0] == '\0') {
        return -EINVAL;
    }
    Ferry__ConsumerDeleteRequest dr = FERRY__CONSUMER_DELETE_REQUEST__INIT;
    dr.topic = (char *)topic;
    dr.name = (char *)name;
    dr.force = force != 0;
    Ferry__AdminRequest req = FERRY__ADMIN_REQUEST__INIT;
    req.request_case = FERRY__ADMIN_REQUEST__REQUEST_CONSUMER_DELETE;
    req.consumer_delete = &dr;
    struct ferry__admin a = {.kind = FERRY__ADMIN_CONSUMER_DELETE};
    return admin_call(c, &req, &a, timeout_ms);
}

/* 2^(q / 4) for q >= 0, without libm. */
static double quarter_pow2(int q)
{
    static const double frac[4] = {1.0, 1.1892071150027210, 1.4142135623730951, 1.6817928305074290};
    double v = frac[q % 4];
    for (int e = q / 4; e > 0; e--) {
        v *= 2.0;
    }
    return v;
}

FERRY_API double ferry_stats_commit_percentile(const uint64_t *hist, double p)
{
    uint64_t total = 0;
    for (int i = 0; i < FERRY_COMMIT_HIST_BUCKETS; i++) {
        total += hist[i];
    }
    if (total == 0 || p <= 0 || p > 100) {
        return 0;
    }
    double want = (double)total * p / 100.0;
    uint64_t seen = 0;
    int i = 0;
    for (; i < FERRY_COMMIT_HIST_BUCKETS - 1; i++) {
        seen += hist[i];
        if ((double)seen >= want) {
            break;
        }
    }
    return quarter_pow2(i + 1);
}

FERRY_API void ferry_free(void *p)
{
    free(p);
}

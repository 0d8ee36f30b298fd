/*
 * retention.c - see retention.h.
 */
#include "retention.h"

#include "config.h"
#include "ferry.h"
#include "log.h"
#include "store.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define BYTES_CHUNKS 16   /* store reads per topic and scan for a max-bytes rule */
#define EXPIRED_READ 1024 /* messages read per topic and scan for expired ones */

struct trim_job {
    char topic[STORE_TOPIC_MAX + 1];
    size_t topic_len;
    uint64_t upto;
};

struct retention {
    struct server *srv;
    struct trim_job *jobs; /* to do, in order */
    size_t n_jobs, cap_jobs, next_job;
    uint64_t next_scan; /* monotonic ms */
    uint64_t n_removed; /* this scan's total, for the log */
    /* Topic ids (+1; 0 is a free slot) with expiring messages: an open-
     * addressing set, linear probing, at most half full. */
    uint32_t *ttl_ids;
    size_t ttl_cap, n_ttl;
};

struct retention *retention_create(struct server *s)
{
    if (s->store == NULL) {
        return NULL;
    }
    struct retention *r = calloc(1, sizeof(*r));
    if (r != NULL) {
        r->srv = s;
    }
    return r;
}

void retention_destroy(struct retention *r)
{
    if (r != NULL) {
        free(r->jobs);
        free(r->ttl_ids);
        free(r);
    }
}

static size_t ttl_slot(const uint32_t *v, size_t cap, uint32_t key)
{
    size_t i = (key * 2654435761u) & (cap - 1);
    while (v[i] != 0 && v[i] != key) {
        i = (i + 1) & (cap - 1);
    }
    return i;
}

int retention_note_expiring(struct retention *r, uint32_t topic_id)
{
    uint32_t key = topic_id + 1;
    if (key == 0) {
        return 0;
    }
    if (r->ttl_cap != 0 && r->ttl_ids[ttl_slot(r->ttl_ids, r->ttl_cap, key)] == key) {
        return 0;
    }
    if ((r->n_ttl + 1) * 2 > r->ttl_cap) {
        size_t cap = r->ttl_cap ? r->ttl_cap * 2 : 64;
        uint32_t *v = calloc(cap, sizeof(*v));
        if (v == NULL) {
            return -ENOMEM;
        }
        for (size_t i = 0; i < r->ttl_cap; i++) {
            if (r->ttl_ids[i] != 0) {
                v[ttl_slot(v, cap, r->ttl_ids[i])] = r->ttl_ids[i];
            }
        }
        free(r->ttl_ids);
        r->ttl_ids = v;
        r->ttl_cap = cap;
    }
    r->ttl_ids[ttl_slot(r->ttl_ids, r->ttl_cap, key)] = key;
    r->n_ttl++;
    return 0;
}

/* Forget the set's slot i, keeping every other key findable. */
static void ttl_remove_at(struct retention *r, size_t i)
{
    size_t cap = r->ttl_cap;
    r->ttl_ids[i] = 0;
    r->n_ttl--;
    for (size_t j = (i + 1) & (cap - 1); r->ttl_ids[j] != 0; j = (j + 1) & (cap - 1)) {
        uint32_t k = r->ttl_ids[j];
        r->ttl_ids[j] = 0;
        r->ttl_ids[ttl_slot(r->ttl_ids, cap, k)] = k;
    }
}

struct scan_ctx {
    struct retention *r;
    int rc;
};

static int job_add(struct retention *r, const char *name, size_t len, uint64_t upto)
{
    if (r->n_jobs == r->cap_jobs) {
        size_t cap = r->cap_jobs ? r->cap_jobs * 2 : 16;
        struct trim_job *v = realloc(r->jobs, cap * sizeof(*v));
        if (v == NULL) {
            return -ENOMEM;
        }
        r->jobs = v;
        r->cap_jobs = cap;
    }
    struct trim_job *j = &r->jobs[r->n_jobs++];
    memcpy(j->topic, name, len);
    j->topic[len] = '\0';
    j->topic_len = len;
    j->upto = upto;
    return 0;
}

/* Collect the covered topics (the callback may not call the store: the
 * limits are computed after the listing). */
static int on_topic(void *ctx, const char *name, size_t name_len,
                    const struct store_topic_info *info)
{
    struct scan_ctx *x = ctx;
    if (info->n_msgs <= 1 || cfg_retention_find(&x->r->srv->cfg, name, name_len) == NULL) {
        return 0;
    }
    if (job_add(x->r, name, name_len, 0) < 0) {
        x->rc = -ENOMEM;
        return 1;
    }
    return 0;
}

struct bytes_ctx {
    uint64_t excess; /* bytes still to remove */
    uint64_t upto;
};

static enum store_read_verdict on_msg_size(void *ctx, const struct store_msg *m)
{
    struct bytes_ctx *x = ctx;
    uint64_t size = m->payload_len + m->key_len + m->headers_raw_len;
    x->upto = m->seq;
    x->excess = size >= x->excess ? 0 : x->excess - size;
    return x->excess == 0 ? STORE_READ_STOP : STORE_READ_CONTINUE;
}

/* The highest sequence rule rl wants removed from the topic (0: none). */
static uint64_t trim_point(struct retention *r, const struct trim_job *j,
                           const struct cfg_retention *rl)
{
    struct store *st = r->srv->store;
    struct store_topic_info info;
    if (store_topic_info(st, j->topic, j->topic_len, &info) < 0 || info.n_msgs <= 1) {
        return 0;
    }
    uint64_t upto = 0;
    if (rl->max_msgs && info.n_msgs > rl->max_msgs) {
        upto = info.last_seq - rl->max_msgs;
    }
    if (rl->max_age_ms) {
        uint64_t keep = 0;
        int64_t cutoff = now_realtime_ns() - (int64_t)rl->max_age_ms * 1000000;
        if (store_seek_time(st, info.id, cutoff, &keep) == 0 && keep > 0 && keep - 1 > upto) {
            upto = keep - 1;
        }
    }
    if (rl->max_bytes && info.n_bytes > rl->max_bytes) {
        struct bytes_ctx x = {info.n_bytes - rl->max_bytes, 0};
        uint64_t from = info.first_seq;
        for (int i = 0; i < BYTES_CHUNKS && x.excess > 0; i++) {
            struct store_read_result res;
            if (store_read(st, info.id, from, 1024, 4u << 20, on_msg_size, &x, &res) < 0 ||
                res.n_msgs == 0) {
                break;
            }
            from = res.next_seq;
        }
        if (x.upto > upto) {
            upto = x.upto;
        }
    }
    return upto >= info.first_seq ? upto : 0;
}

struct expired_ctx {
    int64_t now;
    uint64_t upto;   /* the last expired one of the prefix */
    int is_expiring; /* the first one read expires */
};

static enum store_read_verdict on_msg_expired(void *ctx, const struct store_msg *m)
{
    struct expired_ctx *x = ctx;
    if (x->upto == 0 && m->expire_time != 0) {
        x->is_expiring = 1;
    }
    if (!store_msg_is_expired(m, x->now)) {
        return STORE_READ_STOP;
    }
    x->upto = m->seq;
    return STORE_READ_CONTINUE;
}

/* Jobs for the expired prefixes of the noted topics; a topic whose oldest
 * message does not expire leaves the set. */
static int scan_expired(struct retention *r)
{
    struct store *st = r->srv->store;
    for (size_t i = 0; i < r->ttl_cap;) {
        uint32_t key = r->ttl_ids[i];
        if (key == 0) {
            i++;
            continue;
        }
        struct store_topic_info info;
        char name[STORE_TOPIC_MAX + 1];
        int rc = store_topic_info_by_id(st, key - 1, &info, name);
        struct expired_ctx x = {now_realtime_ns(), 0, 0};
        if (rc == 0 && info.n_msgs > 1) {
            struct store_read_result res;
            rc = store_read(st, info.id, info.first_seq, EXPIRED_READ, 4u << 20, on_msg_expired, &x,
                            &res);
        }
        if (rc == FERRY_ESTORAGE) {
            return rc;
        }
        if (x.upto != 0 && x.upto >= info.last_seq) {
            x.upto = info.last_seq - 1; /* the newest stays */
        }
        if (rc == 0 && x.upto >= info.first_seq &&
            job_add(r, name, strnlen(name, STORE_TOPIC_MAX), x.upto) < 0) {
            return -ENOMEM;
        }
        if (rc == FERRY_ENOTOPIC || (rc == 0 && !x.is_expiring && x.upto == 0)) {
            ttl_remove_at(r, i); /* slot i now holds another key, or 0 */
            continue;
        }
        i++;
    }
    return 0;
}

static int scan(struct retention *r)
{
    r->n_jobs = r->next_job = 0;
    if (r->srv->cfg.n_retention > 0) {
        struct scan_ctx x = {r, 0};
        int n = store_topic_list(r->srv->store, NULL, 0, on_topic, &x);
        if (n < 0) {
            return n;
        }
        if (x.rc < 0) {
            return x.rc;
        }
    }
    /* Keep the jobs with something to remove. */
    size_t k = 0;
    for (size_t i = 0; i < r->n_jobs; i++) {
        struct trim_job *j = &r->jobs[i];
        const struct cfg_retention *rl = cfg_retention_find(&r->srv->cfg, j->topic, j->topic_len);
        j->upto = rl ? trim_point(r, j, rl) : 0;
        if (j->upto > 0) {
            r->jobs[k++] = *j;
        }
    }
    r->n_jobs = k;
    return r->n_ttl > 0 ? scan_expired(r) : 0;
}

int retention_step(struct retention *r, uint64_t now_ms, int *err)
{
    *err = 0;
    if (r->next_job < r->n_jobs) {
        struct trim_job *j = &r->jobs[r->next_job];
        uint64_t n = 0;
        bool is_done = true;
        int rc = store_topic_trim(r->srv->store, j->topic, j->topic_len, j->upto, &n, &is_done);
        if (rc < 0 && rc != FERRY_ENOTOPIC) {
            *err = rc;
            if (rc == FERRY_ESTORAGE) {
                return -1;
            }
            log_warn("retention of %s: %s", j->topic, server_strerror(rc));
            is_done = true;
        }
        r->n_removed += n;
        if (is_done) {
            r->next_job++;
        }
        if (r->next_job < r->n_jobs) {
            return 0;
        }
        if (r->n_removed) {
            log_debug("retention: removed %llu messages", (unsigned long long)r->n_removed);
        }
    }
    if (now_ms >= r->next_scan) {
        r->next_scan = now_ms + r->srv->cfg.retention_interval_ms;
        r->n_removed = 0;
        int rc = scan(r);
        if (rc < 0) {
            *err = rc;
            if (rc == FERRY_ESTORAGE) {
                return -1;
            }
            log_warn("retention: cannot list the topics: %s", server_strerror(rc));
        }
        if (r->next_job < r->n_jobs) {
            return 0;
        }
    }
    return (int)(r->next_scan > now_ms ? r->next_scan - now_ms : 0);
}

/*
 * qgroup.c - who owns a queue group: see qgroup.h.
 *
 * Two sorted arrays under one lock: the groups by key (pattern, NUL,
 * group), each a heap record so that members can point at it while the
 * array moves; and the members by (ref, sub_id). Joins and leaves are a
 * binary search and a memmove: subscribing is rare next to delivering.
 */
#include "qgroup.h"

#include "ferry.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct qgroup {
    char *key; /* pattern NUL group */
    size_t key_len;
    char *owner;
    uint32_t n_members;
};

struct qmember {
    uint64_t ref;
    uint64_t sub_id;
    struct qgroup *group;
};

struct qgroup_reg {
    pthread_mutex_t lock; /* guards everything below */
    struct qgroup **groups;
    uint32_t n_groups, groups_cap;
    struct qmember *members;
    uint32_t n_members, members_cap;
};

struct qgroup_reg *qgroup_reg_create(void)
{
    struct qgroup_reg *g = calloc(1, sizeof(*g));
    if (g != NULL) {
        pthread_mutex_init(&g->lock, NULL);
    }
    return g;
}

static void group_free(struct qgroup *q)
{
    free(q->key);
    free(q->owner);
    free(q);
}

void qgroup_reg_destroy(struct qgroup_reg *g)
{
    if (g == NULL) {
        return;
    }
    for (uint32_t i = 0; i < g->n_groups; i++) {
        group_free(g->groups[i]);
    }
    free(g->groups);
    free(g->members);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

static int key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c != 0 ? c : alen < blen ? -1 : alen > blen;
}

/* The index of key in g->groups, or where it would go (*found 0). */
static uint32_t group_find(const struct qgroup_reg *g, const char *key, size_t key_len, int *found)
{
    uint32_t lo = 0, hi = g->n_groups;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(g->groups[mid]->key, g->groups[mid]->key_len, key, key_len);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *found = 0;
    return lo;
}

static int member_cmp(const struct qmember *m, uint64_t ref, uint64_t sub_id)
{
    if (m->ref != ref) {
        return m->ref < ref ? -1 : 1;
    }
    return m->sub_id < sub_id ? -1 : m->sub_id > sub_id;
}

/* The first member >= (ref, sub_id). */
static uint32_t member_lower(const struct qgroup_reg *g, uint64_t ref, uint64_t sub_id)
{
    uint32_t lo = 0, hi = g->n_members;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (member_cmp(&g->members[mid], ref, sub_id) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static int grow(void **p, uint32_t *cap, uint32_t n, size_t size)
{
    if (n < *cap) {
        return 0;
    }
    uint32_t c = *cap ? *cap * 2 : 8;
    void *np = realloc(*p, (size_t)c * size);
    if (np == NULL) {
        return -ENOMEM;
    }
    *p = np;
    *cap = c;
    return 0;
}

/* A new group record for key, owned by user; NULL: no memory. */
static struct qgroup *group_new(const char *key, size_t key_len, const char *user)
{
    struct qgroup *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        return NULL;
    }
    q->key = malloc(key_len);
    q->owner = strdup(user);
    if (q->key == NULL || q->owner == NULL) {
        group_free(q);
        return NULL;
    }
    memcpy(q->key, key, key_len);
    q->key_len = key_len;
    return q;
}

/* Take member index i out (g->lock held); its group goes with its last
 * member. */
static void member_remove_at(struct qgroup_reg *g, uint32_t i)
{
    struct qgroup *q = g->members[i].group;
    memmove(&g->members[i], &g->members[i + 1], (g->n_members - i - 1) * sizeof(*g->members));
    g->n_members--;
    if (--q->n_members > 0) {
        return;
    }
    int found;
    uint32_t gi = group_find(g, q->key, q->key_len, &found);
    if (found) {
        memmove(&g->groups[gi], &g->groups[gi + 1], (g->n_groups - gi - 1) * sizeof(*g->groups));
        g->n_groups--;
    }
    group_free(q);
}

static char *make_key(const char *pattern, size_t plen, const char *group, size_t glen,
                      size_t *key_len)
{
    char *key = malloc(plen + 1 + glen);
    if (key != NULL) {
        memcpy(key, pattern, plen);
        key[plen] = '\0';
        memcpy(key + plen + 1, group, glen);
        *key_len = plen + 1 + glen;
    }
    return key;
}

int qgroup_join(struct qgroup_reg *g, uint64_t ref, uint64_t sub_id, const char *pattern,
                size_t plen, const char *group, size_t glen, const char *user, int may_any)
{
    if (plen == 0 || glen == 0 || user == NULL) {
        return FERRY_EINVAL;
    }
    size_t key_len;
    char *key = make_key(pattern, plen, group, glen, &key_len);
    if (key == NULL) {
        return -ENOMEM;
    }
    int ret = 0;
    pthread_mutex_lock(&g->lock);
    uint32_t mi = member_lower(g, ref, sub_id);
    if (mi < g->n_members && member_cmp(&g->members[mi], ref, sub_id) == 0) {
        ret = FERRY_EINVAL;
        goto out_unlock;
    }
    int found;
    uint32_t gi = group_find(g, key, key_len, &found);
    struct qgroup *q = found ? g->groups[gi] : NULL;
    if (q != NULL && !may_any && strcmp(q->owner, user) != 0) {
        ret = FERRY_EPERM;
        goto out_unlock;
    }
    if (grow((void **)&g->members, &g->members_cap, g->n_members, sizeof(*g->members)) < 0 ||
        (q == NULL &&
         grow((void **)&g->groups, &g->groups_cap, g->n_groups, sizeof(*g->groups)) < 0)) {
        ret = -ENOMEM;
        goto out_unlock;
    }
    if (q == NULL) {
        if ((q = group_new(key, key_len, user)) == NULL) {
            ret = -ENOMEM;
            goto out_unlock;
        }
        memmove(&g->groups[gi + 1], &g->groups[gi], (g->n_groups - gi) * sizeof(*g->groups));
        g->groups[gi] = q;
        g->n_groups++;
    }
    memmove(&g->members[mi + 1], &g->members[mi], (g->n_members - mi) * sizeof(*g->members));
    g->members[mi] = (struct qmember){ref, sub_id, q};
    g->n_members++;
    q->n_members++;
out_unlock:
    pthread_mutex_unlock(&g->lock);
    free(key);
    return ret;
}

void qgroup_leave(struct qgroup_reg *g, uint64_t ref, uint64_t sub_id)
{
    pthread_mutex_lock(&g->lock);
    uint32_t mi = member_lower(g, ref, sub_id);
    if (mi < g->n_members && member_cmp(&g->members[mi], ref, sub_id) == 0) {
        member_remove_at(g, mi);
    }
    pthread_mutex_unlock(&g->lock);
}

void qgroup_leave_all(struct qgroup_reg *g, uint64_t ref)
{
    pthread_mutex_lock(&g->lock);
    uint32_t mi = member_lower(g, ref, 0);
    while (mi < g->n_members && g->members[mi].ref == ref) {
        member_remove_at(g, mi);
    }
    pthread_mutex_unlock(&g->lock);
}

void qgroup_owner(struct qgroup_reg *g, const char *pattern, size_t plen, const char *group,
                  size_t glen, char *buf, size_t cap)
{
    size_t key_len;
    char *key = make_key(pattern, plen, group, glen, &key_len);
    pthread_mutex_lock(&g->lock);
    int found = 0;
    uint32_t gi = key ? group_find(g, key, key_len, &found) : 0;
    snprintf(buf, cap, "%s", found ? g->groups[gi]->owner : "");
    pthread_mutex_unlock(&g->lock);
    free(key);
}

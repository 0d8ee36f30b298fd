/*
 * trie.c - see trie.h for how matching works.
 */
#include "trie.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct trie_group {
    char *name;
    uint32_t name_len;
    uint32_t n, cap;
    uint32_t next; /* rotation: member to use next */
    struct trie_sub **members;
};

struct trie_node {
    struct trie_node *parent;
    struct trie_node **kids; /* open addressing, kids_cap is 0 or a power of 2 */
    uint32_t n_kids, kids_cap;
    struct trie_node *star; /* '*' child */
    struct trie_node *gt;   /* '>' child */
    struct trie_sub **subs; /* plain subscriptions ending here */
    uint32_t n_subs, subs_cap;
    struct trie_group *groups;
    uint32_t n_groups, groups_cap;
    uint32_t tok_len;
    char tok[]; /* this node's token (not for root, '*', '>') */
};

/* ---- records ----------------------------------------------------------- */

struct trie_sub *trie_sub_create(uint64_t owner, uint64_t sub_id, const char *pattern,
                                 size_t pattern_len, const char *group, size_t group_len)
{
    struct trie_sub *s = malloc(sizeof(*s) + pattern_len + 1 + group_len + 1);
    if (s == NULL) {
        return NULL;
    }
    char *p = (char *)(s + 1);
    memcpy(p, pattern, pattern_len);
    p[pattern_len] = '\0';
    char *g = p + pattern_len + 1;
    if (group_len) {
        memcpy(g, group, group_len);
    }
    g[group_len] = '\0';
    atomic_init(&s->refs, 1);
    s->pattern_len = (uint32_t)pattern_len;
    s->group_len = (uint32_t)group_len;
    s->owner = owner;
    s->sub_id = sub_id;
    s->pattern = p;
    s->group = g;
    return s;
}

void trie_sub_ref(struct trie_sub *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void trie_sub_unref(struct trie_sub *s)
{
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1) {
        free(s);
    }
}

/* ---- nodes ------------------------------------------------------------- */

static uint32_t tok_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    }
    return h;
}

static struct trie_node *node_new(struct trie_node *parent, const char *tok, size_t len)
{
    struct trie_node *n = calloc(1, sizeof(*n) + len);
    if (n) {
        n->parent = parent;
        n->tok_len = (uint32_t)len;
        if (len) {
            memcpy(n->tok, tok, len);
        }
    }
    return n;
}

static struct trie_node *kid_find(const struct trie_node *n, const char *tok, size_t len)
{
    if (n->n_kids == 0) {
        return NULL;
    }
    uint32_t mask = n->kids_cap - 1;
    for (uint32_t i = tok_hash(tok, len) & mask;; i = (i + 1) & mask) {
        struct trie_node *k = n->kids[i];
        if (k == NULL) {
            return NULL;
        }
        if (k->tok_len == len && memcmp(k->tok, tok, len) == 0) {
            return k;
        }
    }
}

static void kid_place(struct trie_node **kids, uint32_t cap, struct trie_node *k)
{
    uint32_t mask = cap - 1;
    uint32_t i = tok_hash(k->tok, k->tok_len) & mask;
    while (kids[i]) {
        i = (i + 1) & mask;
    }
    kids[i] = k;
}

static int kid_insert(struct trie_node *n, struct trie_node *k)
{
    /* Keep the load at most 1/2 so probes stay short. */
    if ((n->n_kids + 1) * 2 > n->kids_cap) {
        uint32_t cap = n->kids_cap ? n->kids_cap * 2 : 4;
        struct trie_node **kids = calloc(cap, sizeof(*kids));
        if (kids == NULL) {
            return -ENOMEM;
        }
        for (uint32_t i = 0; i < n->kids_cap; i++) {
            if (n->kids[i]) {
                kid_place(kids, cap, n->kids[i]);
            }
        }
        free(n->kids);
        n->kids = kids;
        n->kids_cap = cap;
    }
    kid_place(n->kids, n->kids_cap, k);
    n->n_kids++;
    return 0;
}

static void kid_delete(struct trie_node *n, struct trie_node *k)
{
    uint32_t mask = n->kids_cap - 1;
    uint32_t i = tok_hash(k->tok, k->tok_len) & mask;
    while (n->kids[i] != k) {
        i = (i + 1) & mask;
    }
    n->kids[i] = NULL;
    n->n_kids--;
    /* Re-place the rest of the cluster so lookups never stop early. */
    for (uint32_t j = (i + 1) & mask; n->kids[j]; j = (j + 1) & mask) {
        struct trie_node *m = n->kids[j];
        n->kids[j] = NULL;
        kid_place(n->kids, n->kids_cap, m);
    }
    if (n->n_kids == 0) {
        free(n->kids);
        n->kids = NULL;
        n->kids_cap = 0;
    }
}

static int node_is_empty(const struct trie_node *n)
{
    return n->n_kids == 0 && !n->star && !n->gt && n->n_subs == 0 && n->n_groups == 0;
}

static void node_free(struct trie_node *n)
{
    free(n->kids);
    free(n->subs);
    free(n->groups);
    free(n);
}

static int grow(void **arr, uint32_t *cap, size_t elem)
{
    uint32_t nc = *cap ? *cap * 2 : 1;
    void *p = realloc(*arr, (size_t)nc * elem);
    if (p == NULL) {
        return -ENOMEM;
    }
    *arr = p;
    *cap = nc;
    return 0;
}

/* ---- the trie ---------------------------------------------------------- */

void trie_init(struct trie *t)
{
    t->root = NULL;
    t->n_subs = 0;
    t->n_nodes = 0;
}

void trie_deinit(struct trie *t)
{
    /* Iterative post-order: detach children one by one. */
    struct trie_node *n = t->root;
    while (n) {
        struct trie_node *next = NULL;
        if (n->star) {
            next = n->star, n->star = NULL;
        } else if (n->gt) {
            next = n->gt, n->gt = NULL;
        } else if (n->n_kids) {
            for (uint32_t i = 0; i < n->kids_cap; i++) {
                if (n->kids[i]) {
                    next = n->kids[i];
                    n->kids[i] = NULL;
                    n->n_kids--;
                    break;
                }
            }
        }
        if (next) {
            n = next;
            continue;
        }
        for (uint32_t i = 0; i < n->n_subs; i++) {
            trie_sub_unref(n->subs[i]);
        }
        for (uint32_t g = 0; g < n->n_groups; g++) {
            for (uint32_t i = 0; i < n->groups[g].n; i++) {
                trie_sub_unref(n->groups[g].members[i]);
            }
            free(n->groups[g].members);
            free(n->groups[g].name);
        }
        struct trie_node *parent = n->parent;
        node_free(n);
        n = parent;
    }
    trie_init(t);
}

/* Walk (creating if asked) the node where pattern p ends. */
static struct trie_node *walk(struct trie *t, const char *p, size_t len, int create, int *err)
{
    *err = 0;
    if (t->root == NULL) {
        if (!create) {
            return NULL;
        }
        t->root = node_new(NULL, NULL, 0);
        if (t->root == NULL) {
            *err = -ENOMEM;
            return NULL;
        }
        t->n_nodes++;
    }
    struct trie_node *n = t->root;
    size_t depth = 0;
    size_t i = 0;
    while (i <= len) {
        size_t j = i;
        while (j < len && p[j] != '.') {
            j++;
        }
        if (++depth > TRIE_MAX_DEPTH) {
            *err = -EINVAL;
            return NULL;
        }
        const char *tok = p + i;
        size_t tl = j - i;
        struct trie_node **slot = NULL;
        struct trie_node *next;
        if (tl == 1 && tok[0] == '*') {
            slot = &n->star;
            next = n->star;
        } else if (tl == 1 && tok[0] == '>') {
            slot = &n->gt;
            next = n->gt;
        } else {
            next = kid_find(n, tok, tl);
        }
        if (next == NULL) {
            if (!create) {
                return NULL;
            }
            next = slot ? node_new(n, NULL, 0) : node_new(n, tok, tl);
            if (next == NULL) {
                *err = -ENOMEM;
                return NULL;
            }
            if (slot) {
                *slot = next;
            } else if (kid_insert(n, next) < 0) {
                free(next);
                *err = -ENOMEM;
                return NULL;
            }
            t->n_nodes++;
        }
        n = next;
        i = j + 1;
    }
    return n;
}

/* Free n and its now-empty ancestors. */
static void prune(struct trie *t, struct trie_node *n)
{
    while (n && node_is_empty(n)) {
        struct trie_node *parent = n->parent;
        if (parent == NULL) {
            t->root = NULL;
        } else if (parent->star == n) {
            parent->star = NULL;
        } else if (parent->gt == n) {
            parent->gt = NULL;
        } else {
            kid_delete(parent, n);
        }
        node_free(n);
        t->n_nodes--;
        n = parent;
    }
}

int trie_add(struct trie *t, struct trie_sub *s)
{
    int err;
    struct trie_node *n = walk(t, s->pattern, s->pattern_len, 1, &err);
    if (n == NULL) {
        return err;
    }
    if (s->group_len == 0) {
        if (n->n_subs == n->subs_cap &&
            grow((void **)&n->subs, &n->subs_cap, sizeof(*n->subs)) < 0) {
            goto out_prune;
        }
        n->subs[n->n_subs++] = s;
    } else {
        struct trie_group *g = NULL;
        for (uint32_t i = 0; i < n->n_groups; i++) {
            if (n->groups[i].name_len == s->group_len &&
                memcmp(n->groups[i].name, s->group, s->group_len) == 0) {
                g = &n->groups[i];
                break;
            }
        }
        if (g == NULL) {
            if (n->n_groups == n->groups_cap &&
                grow((void **)&n->groups, &n->groups_cap, sizeof(*n->groups)) < 0) {
                goto out_prune;
            }
            char *name = malloc(s->group_len);
            if (name == NULL) {
                goto out_prune;
            }
            memcpy(name, s->group, s->group_len);
            g = &n->groups[n->n_groups++];
            memset(g, 0, sizeof(*g));
            g->name = name;
            g->name_len = s->group_len;
        }
        if (g->n == g->cap && grow((void **)&g->members, &g->cap, sizeof(*g->members)) < 0) {
            if (g->n == 0) {
                free(g->name);
                *g = n->groups[--n->n_groups];
            }
            goto out_prune;
        }
        g->members[g->n++] = s;
    }
    trie_sub_ref(s);
    t->n_subs++;
    return 0;

out_prune:
    prune(t, n);
    return -ENOMEM;
}

int trie_remove(struct trie *t, struct trie_sub *s)
{
    int err;
    struct trie_node *n = walk(t, s->pattern, s->pattern_len, 0, &err);
    if (n == NULL) {
        return -ENOENT;
    }
    int found = 0;
    if (s->group_len == 0) {
        for (uint32_t i = 0; i < n->n_subs; i++) {
            if (n->subs[i] == s) {
                n->subs[i] = n->subs[--n->n_subs];
                found = 1;
                break;
            }
        }
        if (n->n_subs == 0) {
            free(n->subs);
            n->subs = NULL;
            n->subs_cap = 0;
        }
    } else {
        for (uint32_t gi = 0; gi < n->n_groups && !found; gi++) {
            struct trie_group *g = &n->groups[gi];
            for (uint32_t i = 0; i < g->n; i++) {
                if (g->members[i] == s) {
                    /* Keep member order so rotation stays fair. */
                    memmove(&g->members[i], &g->members[i + 1],
                            (g->n - i - 1) * sizeof(*g->members));
                    g->n--;
                    found = 1;
                    break;
                }
            }
            if (found && g->n == 0) {
                free(g->members);
                free(g->name);
                n->groups[gi] = n->groups[--n->n_groups];
                if (n->n_groups == 0) {
                    free(n->groups);
                    n->groups = NULL;
                    n->groups_cap = 0;
                }
            }
        }
    }
    if (!found) {
        return -ENOENT;
    }
    t->n_subs--;
    trie_sub_unref(s);
    prune(t, n);
    return 0;
}

static int emit(struct trie_node *n, trie_match_fn fn, void *ctx)
{
    for (uint32_t i = 0; i < n->n_subs; i++) {
        fn(ctx, n->subs[i]);
    }
    for (uint32_t i = 0; i < n->n_groups; i++) {
        struct trie_group *g = &n->groups[i];
        if (g->next >= g->n) {
            g->next = 0;
        }
        fn(ctx, g->members[g->next++]);
    }
    return (int)(n->n_subs + n->n_groups);
}

/* What to do at a node where a matching pattern ends; returns how many
 * subscriptions it counted or called back for. */
typedef int (*node_fn)(struct trie_node *n, trie_match_fn fn, void *ctx);

static int count(struct trie_node *n, trie_match_fn fn, void *ctx)
{
    (void)fn;
    (void)ctx;
    int k = (int)n->n_subs;
    for (uint32_t i = 0; i < n->n_groups; i++) {
        k += (int)n->groups[i].n;
    }
    return k;
}

/* Visit every node where a pattern matching topic s[0..len) ends. Inlined
 * into both callers, so that visit is a direct call: trie_match is the
 * routing hot path. */
static inline __attribute__((always_inline)) int match_nodes(const struct trie *t, const char *s,
                                                             size_t len, node_fn visit,
                                                             trie_match_fn fn, void *ctx)
{
    if (t->root == NULL) {
        return 0;
    }
    /* Split the topic once. */
    uint32_t off[TRIE_MAX_DEPTH + 1];
    uint32_t n_tok = 0;
    size_t i = 0;
    for (;;) {
        if (n_tok == TRIE_MAX_DEPTH) {
            return -EINVAL;
        }
        off[n_tok++] = (uint32_t)i;
        while (i < len && s[i] != '.') {
            i++;
        }
        if (i >= len) {
            break;
        }
        i++;
    }
    off[n_tok] = (uint32_t)len + 1; /* token k is [off[k], off[k+1]-1) */

    struct {
        struct trie_node *n;
        uint32_t depth;
    } stack[2 * TRIE_MAX_DEPTH + 2];
    uint32_t sp = 0;
    int calls = 0;
    stack[sp].n = t->root;
    stack[sp++].depth = 0;
    while (sp > 0) {
        sp--;
        struct trie_node *n = stack[sp].n;
        uint32_t d = stack[sp].depth;
        if (d == n_tok) {
            calls += visit(n, fn, ctx);
            continue;
        }
        if (n->gt) {
            calls += visit(n->gt, fn, ctx);
        }
        if (n->star) {
            stack[sp].n = n->star;
            stack[sp++].depth = d + 1;
        }
        struct trie_node *k = kid_find(n, s + off[d], off[d + 1] - 1 - off[d]);
        if (k) {
            stack[sp].n = k;
            stack[sp++].depth = d + 1;
        }
    }
    return calls;
}

int trie_match(struct trie *t, const char *s, size_t len, trie_match_fn fn, void *ctx)
{
    return match_nodes(t, s, len, emit, fn, ctx);
}

int trie_count(const struct trie *t, const char *s, size_t len)
{
    return match_nodes(t, s, len, count, NULL, NULL);
}

/*
 * acl.c - pattern coverage for ACLs (see acl.h for the rules).
 */
#include "acl.h"

#include "topic.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Deeper patterns are never allowed (the trie refuses them anyway). */
#define ACL_MAX_TOKENS 128u

struct tok {
    const char *s;
    size_t len;
};

static int tok_is(const struct tok *t, char c)
{
    return t->len == 1 && t->s[0] == c;
}

/* Split p[0..len) at dots into out (room for cap + 1 tokens). Returns the
 * number of tokens, or -1 when there are more than cap. */
static int tokenize(const char *p, size_t len, struct tok *out, uint32_t cap)
{
    uint32_t n = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || p[i] == '.') {
            if (n >= cap) {
                return -1;
            }
            out[n].s = p + start;
            out[n].len = i - start;
            n++;
            start = i + 1;
        }
    }
    return (int)n;
}

/* Does allowed pattern a (n_a tokens) cover request r (n_r tokens)? */
static int covers_toks(const struct tok *a, uint32_t n_a, const struct tok *r, uint32_t n_r)
{
    for (uint32_t i = 0; i < n_a; i++) {
        if (tok_is(&a[i], '>')) {
            return n_r > i; /* '>' takes one token or more, whatever they are */
        }
        if (i >= n_r || tok_is(&r[i], '>')) {
            return 0; /* r matches fewer tokens, or more than one token here */
        }
        if (tok_is(&a[i], '*')) {
            continue; /* covers a literal or '*' */
        }
        if (tok_is(&r[i], '*') || a[i].len != r[i].len || memcmp(a[i].s, r[i].s, a[i].len) != 0) {
            return 0;
        }
    }
    return n_r == n_a;
}

int acl_pattern_covers(const char *allowed, size_t alen, const char *pat, size_t plen)
{
    struct tok a[ACL_MAX_TOKENS], r[ACL_MAX_TOKENS];
    int n_a = tokenize(allowed, alen, a, ACL_MAX_TOKENS);
    int n_r = tokenize(pat, plen, r, ACL_MAX_TOKENS);
    if (n_a < 0 || n_r < 0) {
        return 0;
    }
    return covers_toks(a, (uint32_t)n_a, r, (uint32_t)n_r);
}

int acl_list_add(struct acl_list *l, const char *p, size_t len)
{
    if (len > UINT32_MAX) {
        return -EINVAL;
    }
    if (l->n_pats == l->pats_cap) {
        uint32_t cap = l->pats_cap ? l->pats_cap * 2 : 4;
        char **np = realloc(l->pats, cap * sizeof(*np));
        if (np == NULL) {
            return -ENOMEM;
        }
        l->pats = np;
        uint32_t *nl = realloc(l->lens, cap * sizeof(*nl));
        if (nl == NULL) {
            return -ENOMEM;
        }
        l->lens = nl;
        l->pats_cap = cap;
    }
    char *s = malloc(len + 1);
    if (s == NULL) {
        return -ENOMEM;
    }
    memcpy(s, p, len);
    s[len] = '\0';
    l->pats[l->n_pats] = s;
    l->lens[l->n_pats] = (uint32_t)len;
    l->n_pats++;
    return 0;
}

void acl_list_deinit(struct acl_list *l)
{
    for (uint32_t i = 0; i < l->n_pats; i++) {
        free(l->pats[i]);
    }
    free(l->pats);
    free(l->lens);
    memset(l, 0, sizeof(*l));
}

int acl_may_publish(const struct acl_list *l, const char *t, size_t len)
{
    for (uint32_t i = 0; i < l->n_pats; i++) {
        if (topic_match(l->pats[i], l->lens[i], t, len)) {
            return 1;
        }
    }
    return 0;
}

static int any_covers(const struct acl_list *l, const struct tok *r, uint32_t n_r,
                      uint32_t *max_n_a)
{
    struct tok a[ACL_MAX_TOKENS];
    *max_n_a = 0;
    for (uint32_t i = 0; i < l->n_pats; i++) {
        int n_a = tokenize(l->pats[i], l->lens[i], a, ACL_MAX_TOKENS);
        if (n_a < 0) {
            continue;
        }
        if ((uint32_t)n_a > *max_n_a) {
            *max_n_a = (uint32_t)n_a;
        }
        if (covers_toks(a, (uint32_t)n_a, r, n_r)) {
            return 1;
        }
    }
    return 0;
}

int acl_may_subscribe(const struct acl_list *l, const char *p, size_t len)
{
    static const struct tok star = {"*", 1}, gt = {">", 1};
    struct tok r[ACL_MAX_TOKENS + 1];
    int n = tokenize(p, len, r, ACL_MAX_TOKENS);
    if (n < 0) {
        return 0;
    }
    uint32_t n_r = (uint32_t)n, max_n_a;
    /* r ending in '>' is r ending in '*' plus r ending in '*.>': when no
     * single pattern covers r, try the two halves. The '*' half has no '>'
     * left; the other is split again, until it is longer than every allowed
     * pattern (then only a '>' could cover it, and that would have covered
     * the unsplit r already). */
    for (;;) {
        if (any_covers(l, r, n_r, &max_n_a)) {
            return 1;
        }
        if (n_r == 0 || !tok_is(&r[n_r - 1], '>') || n_r > max_n_a || n_r >= ACL_MAX_TOKENS) {
            return 0;
        }
        r[n_r - 1] = star;
        if (!any_covers(l, r, n_r, &max_n_a)) {
            return 0;
        }
        r[n_r++] = gt;
    }
}

/*
 * fuzz_auth.c - libFuzzer target for the auth file parser (auth.c) and the
 * rights it builds (acl.c).
 *
 * The input is an auth file. It is parsed; a file that loads must give a
 * table in which every principal is found by its name, and whose rights
 * answer consistently: a principal may subscribe to each of its own
 * subscribe patterns, publish to each of its publish patterns that names
 * one topic, and a pattern covers itself. No password is checked (a hash
 * in the input may ask for any cost).
 */
#include "acl.h"
#include "auth.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int has_wildcard(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if ((p[i] == '*' || p[i] == '>') && (i == 0 || p[i - 1] == '.') &&
            (i + 1 == n || p[i + 1] == '.')) {
            return 1;
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct auth_table *t = NULL;
    char err[256];
    if (auth_table_parse((const char *)data, size, "fuzz", &t, err, sizeof(err)) != 0) {
        if (t != NULL || err[0] == '\0') {
            abort(); /* a refusal says why and gives no table */
        }
        return 0;
    }
    for (uint32_t i = 0; i < t->n_princ; i++) {
        const struct auth_principal *p = &t->princ[i];
        if (auth_principal_find(t, p->name) != p) {
            abort();
        }
        for (uint32_t k = 0; k < p->sub.n_pats; k++) {
            const char *pat = p->sub.pats[k];
            size_t n = p->sub.lens[k];
            if (!acl_may_subscribe(&p->sub, pat, n) || !acl_pattern_covers(pat, n, pat, n)) {
                abort();
            }
        }
        for (uint32_t k = 0; k < p->pub.n_pats; k++) {
            const char *pat = p->pub.pats[k];
            size_t n = p->pub.lens[k];
            if (!has_wildcard(pat, n) && !acl_may_publish(&p->pub, pat, n)) {
                abort();
            }
        }
    }
    auth_table_unref(t);
    return 0;
}

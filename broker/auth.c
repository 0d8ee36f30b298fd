/*
 * auth.c - the auth file, credential checks, failure delays, the auth pool.
 */
#include "auth.h"

#include "ferry.h"
#include "log.h"
#include "topic.h"
#include "trie.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define AUTH_FILE_MAX (16u << 20) /* bytes: a sanity bound on the file */
#define AUTH_PATTERN_MAX 65535u

struct auth_cred {
    char *name;
    char *hash;
    uint32_t princ; /* index in t->princ */
};

/* ---- the table ---------------------------------------------------------- */

static void table_free(struct auth_table *t)
{
    for (uint32_t i = 0; i < t->n_princ; i++) {
        free(t->princ[i].name);
        acl_list_deinit(&t->princ[i].pub);
        acl_list_deinit(&t->princ[i].sub);
        acl_list_deinit(&t->princ[i].consume);
        acl_list_deinit(&t->princ[i].group);
    }
    free(t->princ);
    for (uint32_t i = 0; i < t->n_users; i++) {
        free(t->users[i].name);
        free(t->users[i].hash);
    }
    free(t->users);
    for (uint32_t i = 0; i < t->n_tokens; i++) {
        free(t->tokens[i].name);
        free(t->tokens[i].hash);
    }
    free(t->tokens);
    free(t->dummy_hash);
    free(t);
}

void auth_table_ref(struct auth_table *t)
{
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
}

void auth_table_unref(struct auth_table *t)
{
    if (t && atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1) {
        table_free(t);
    }
}

const char *auth_table_mode_warning(const struct auth_table *t)
{
    if (t->file_mode & S_IWGRP) {
        return "writable by its group: its members could grant themselves rights";
    }
    if (t->file_mode & S_IROTH) {
        return "readable by every user: the hashes could be attacked offline";
    }
    return NULL;
}

static int princ_index(const struct auth_table *t, const char *name)
{
    for (uint32_t i = 0; i < t->n_princ; i++) {
        if (strcmp(t->princ[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

const struct auth_principal *auth_principal_find(const struct auth_table *t, const char *name)
{
    int i = princ_index(t, name);
    return i < 0 ? NULL : &t->princ[i];
}

/* ---- parsing ------------------------------------------------------------ */

struct parse {
    struct auth_table *t;
    uint32_t princ_cap, users_cap, tokens_cap;
    const char *name;
    char *err;
    size_t err_len;
    /* allow lines are resolved at the end (names may be declared later) */
    uint32_t *allow_lines; /* by principal: the line that first named it */
    uint32_t lines_cap;
};

__attribute__((format(printf, 4, 5))) static int perr(struct parse *ps, unsigned line, int rc,
                                                      const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (ps->err && ps->err_len) {
        snprintf(ps->err, ps->err_len, "%s:%u: %s", ps->name, line, msg);
    }
    return rc;
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

/* The principal named name, created if new. Returns its index or -ENOMEM. */
static int princ_get(struct parse *ps, const char *name, unsigned line)
{
    struct auth_table *t = ps->t;
    int i = princ_index(t, name);
    if (i >= 0) {
        return i;
    }
    if (grow((void **)&t->princ, &ps->princ_cap, t->n_princ, sizeof(*t->princ)) < 0 ||
        grow((void **)&ps->allow_lines, &ps->lines_cap, t->n_princ, sizeof(*ps->allow_lines)) < 0) {
        return -ENOMEM;
    }
    struct auth_principal *p = &t->princ[t->n_princ];
    memset(p, 0, sizeof(*p));
    p->name = strdup(name);
    if (p->name == NULL) {
        return -ENOMEM;
    }
    ps->allow_lines[t->n_princ] = line;
    return (int)t->n_princ++;
}

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > AUTH_NAME_MAX) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch == 0x7f || ch == ':') {
            return 0;
        }
    }
    return 1;
}

/*
 * Hash shapes. crypt(3) reads only the setting (method, parameters, salt)
 * from a hash and ignores what follows, so a hash whose checksum is missing
 * or cut short loads as a "valid setting" and nobody can ever log in as
 * that user. Each method we accept is checked for its full shape here:
 *
 *   $y$PARAMS$SALT$HASH          yescrypt: HASH 43 characters
 *   $2b$NN$SALTHASH              bcrypt ($2a$, $2y$ alike): NN 04..31,
 *                                SALT 22 and HASH 31 characters
 *   $6$[rounds=N$]SALT$HASH      SHA-512 crypt: SALT 1..16, HASH 86
 *
 * HASH and SALT characters are crypt's base64 ("./0-9A-Za-z").
 */
static int is_b64(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '/')) {
            return 0;
        }
    }
    return 1;
}

/* Split h (after its method prefix) at '$' into at most max fields. */
static size_t split_dollar(const char *s, const char **f, size_t *len, size_t max)
{
    size_t n = 0;
    while (n < max) {
        const char *d = strchr(s, '$');
        f[n] = s;
        len[n] = d ? (size_t)(d - s) : strlen(s);
        n++;
        if (d == NULL) {
            return n;
        }
        s = d + 1;
    }
    return max + 1; /* more fields than the method has */
}

static const char *shape_yescrypt(const char *h)
{
    const char *f[3];
    size_t len[3];
    if (split_dollar(h + 3, f, len, 3) != 3) {
        return "malformed yescrypt hash (want $y$PARAMS$SALT$HASH)";
    }
    if (len[0] == 0 || !is_b64(f[0], len[0]) || len[1] == 0 || !is_b64(f[1], len[1])) {
        return "malformed yescrypt parameters or salt";
    }
    if (len[2] != 43 || !is_b64(f[2], len[2])) {
        return "yescrypt hash missing or truncated (want 43 characters after the salt)";
    }
    return NULL;
}

static const char *shape_bcrypt(const char *h)
{
    /* "$2b$" "NN" "$" then 53 characters */
    if (strlen(h) != 60 || h[6] != '$' || h[4] < '0' || h[4] > '3' || h[5] < '0' || h[5] > '9') {
        return "malformed or truncated bcrypt hash (want $2b$NN$ and 53 characters)";
    }
    int cost = (h[4] - '0') * 10 + (h[5] - '0');
    if (cost < 4 || cost > 31) {
        return "bcrypt cost out of range (04..31)";
    }
    if (!is_b64(h + 7, 53)) {
        return "malformed bcrypt salt or hash";
    }
    return NULL;
}

static const char *shape_sha512(const char *h)
{
    const char *f[3];
    size_t len[3];
    size_t n = split_dollar(h + 3, f, len, 3);
    if (n == 3 && (len[0] < 7 || strncmp(f[0], "rounds=", 7) != 0)) {
        return "malformed SHA-512 crypt hash (want $6$[rounds=N$]SALT$HASH)";
    }
    if (n == 3) { /* skip rounds=N: crypt_checksalt judges its value */
        f[0] = f[1], len[0] = len[1];
        f[1] = f[2], len[1] = len[2];
    } else if (n == 1 && len[0] > 0) {
        return "SHA-512 crypt hash missing or truncated (want $6$[rounds=N$]SALT$HASH)";
    } else if (n != 2) {
        return "malformed SHA-512 crypt hash (want $6$[rounds=N$]SALT$HASH)";
    }
    if (len[0] == 0 || len[0] > 16) {
        return "malformed SHA-512 crypt salt (1..16 characters)";
    }
    if (len[1] != 86 || !is_b64(f[1], len[1])) {
        return "SHA-512 crypt hash missing or truncated (want 86 characters after the salt)";
    }
    return NULL;
}

static const struct hash_method {
    const char *prefix;
    const char *(*shape)(const char *h);
} hash_methods[] = {
    {"$y$", shape_yescrypt}, {"$2b$", shape_bcrypt}, {"$2a$", shape_bcrypt},
    {"$2y$", shape_bcrypt},  {"$6$", shape_sha512},
};

static const struct hash_method *hash_method_of(const char *h)
{
    for (size_t i = 0; i < sizeof(hash_methods) / sizeof(hash_methods[0]); i++) {
        if (strncmp(h, hash_methods[i].prefix, strlen(hash_methods[i].prefix)) == 0) {
            return &hash_methods[i];
        }
    }
    return NULL;
}

static int is_bcrypt(const char *h)
{
    const struct hash_method *m = hash_method_of(h);
    return m && m->shape == shape_bcrypt;
}

static const char *hash_method_ok(const char *h)
{
    const struct hash_method *m = hash_method_of(h);
    if (m == NULL) {
        return "not a yescrypt ($y$), bcrypt ($2b$) or SHA-512 crypt ($6$) hash "
               "(make one with `ferry passwd`)";
    }
    const char *why = m->shape(h);
    if (why) {
        return why;
    }
    if (auth_hash_cost(h) > AUTH_HASH_COST_MAX) {
        /* A check this costly would stall logins, and loading the file
         * (the dummy hash is made with the median credential's cost). */
        return "hash parameters too costly (a check would take over 10 s): make one with "
               "`ferry passwd`";
    }
    int c = crypt_checksalt(h);
    if (c == CRYPT_SALT_INVALID) {
        return "malformed hash";
    }
    if (c == CRYPT_SALT_METHOD_DISABLED) {
        return "hash method disabled in this libcrypt";
    }
    if (c == CRYPT_SALT_METHOD_LEGACY) {
        return "legacy hash method; use yescrypt, bcrypt or SHA-512 crypt";
    }
    return NULL;
}

/*
 * What one check of hash h costs, in estimated nanoseconds on one core of
 * an x86 machine of 2026 (measured: SHA-512 crypt ~0.6 us a round, bcrypt
 * ~137 us per 2^cost, yescrypt ~0.9 us per N*r). Only the order matters:
 * it picks the median credential for the dummy hash, without timing
 * anything at load.
 */
static unsigned yc_index(char ch)
{
    static const char itoa64[] = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    const char *p = ch ? strchr(itoa64, ch) : NULL;
    return p ? (unsigned)(p - itoa64) : 64u;
}

/* One of yescrypt's variable-length numbers; *s moves past it. -1 if bad. */
static int64_t yc_number(const char **s, uint32_t min)
{
    uint32_t start = 0, end = 47, chars = 1, bits = 0;
    unsigned c = yc_index(*(*s)++);
    if (c > 63) {
        return -1;
    }
    uint64_t v = min;
    while (c > end) {
        v += (uint64_t)(end + 1 - start) << bits;
        start = end + 1;
        end = start + (62 - end) / 2;
        chars++;
        bits += 6;
    }
    v += (uint64_t)(c - start) << bits;
    while (--chars) {
        c = yc_index(*(*s)++);
        if (c > 63) {
            return -1;
        }
        bits -= 6;
        v += (uint64_t)c << bits;
    }
    return (int64_t)v;
}

uint64_t auth_hash_cost(const char *h)
{
    const struct hash_method *m = hash_method_of(h);
    if (m == NULL) {
        return 0;
    }
    if (m->shape == shape_bcrypt) {
        int cost = (h[4] - '0') * 10 + (h[5] - '0');
        return cost >= 4 && cost <= 31 ? ((uint64_t)1 << cost) * 137000u : 0;
    }
    if (m->shape == shape_sha512) {
        uint64_t rounds = 5000; /* crypt's default when rounds= is absent */
        if (strncmp(h + 3, "rounds=", 7) == 0) {
            rounds = strtoull(h + 10, NULL, 10);
        }
        return rounds * 600u;
    }
    /* yescrypt: flavor, log2(N), r, then optionally a mask saying which of
     * p, t, g (and a ROM, left out) follow: each multiplies the work. */
    const char *s = h + 3;
    int64_t flavor = yc_number(&s, 0);
    int64_t n_log2 = flavor < 0 ? -1 : yc_number(&s, 1);
    int64_t r = n_log2 < 0 ? -1 : yc_number(&s, 1);
    int64_t have = 0, p = 1, t = 0, g = 0;
    if (r >= 1 && *s != '$' && *s != '\0') {
        have = yc_number(&s, 1);
        p = have >= 0 && (have & 1) ? yc_number(&s, 2) : 1;
        t = have >= 0 && (have & 2) && p >= 0 ? yc_number(&s, 1) : 0;
        g = have >= 0 && (have & 4) && t >= 0 ? yc_number(&s, 1) : 0;
    }
    if (r < 1 || n_log2 < 1 || have < 0 || p < 1 || t < 0 || g < 0) {
        return ((uint64_t)4096 * 32) * 900u; /* libxcrypt's default: crypt judges it */
    }
    if (n_log2 > 40 || r > (1 << 20) || p > (1 << 20) || t > 1000 || g > 20) {
        return UINT64_MAX; /* far beyond any cap */
    }
    uint64_t cost = ((uint64_t)1 << n_log2) * (uint64_t)r * 900u;
    uint64_t mult = (uint64_t)p * (uint64_t)(t + 1) << g;
    return cost > UINT64_MAX / mult ? UINT64_MAX : cost * mult;
}

struct cost_ent {
    uint64_t cost;
    uint32_t idx;
};

static int cost_cmp(const void *a, const void *b)
{
    const struct cost_ent *x = a, *y = b;
    if (x->cost != y->cost) {
        return x->cost < y->cost ? -1 : 1;
    }
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static const char *cred_hash_at(const struct auth_table *t, uint32_t i)
{
    return i < t->n_users ? t->users[i].hash : t->tokens[i - t->n_users].hash;
}

/* The hash whose check costs the median of all credentials' (users and
 * tokens; the lower middle one of an even count, ties in file order), or
 * NULL if there is none or no memory. */
static const char *median_hash(const struct auth_table *t)
{
    uint32_t n = t->n_users + t->n_tokens;
    struct cost_ent *e = n ? malloc((size_t)n * sizeof(*e)) : NULL;
    if (e == NULL) {
        return NULL;
    }
    for (uint32_t i = 0; i < n; i++) {
        e[i].cost = auth_hash_cost(cred_hash_at(t, i));
        e[i].idx = i;
    }
    qsort(e, n, sizeof(*e), cost_cmp);
    const char *m = cred_hash_at(t, e[(n - 1) / 2].idx);
    free(e);
    return m;
}

static int add_cred(struct parse *ps, int is_token, char **f, unsigned line)
{
    struct auth_table *t = ps->t;
    struct auth_cred **arr = is_token ? &t->tokens : &t->users;
    uint32_t *n = is_token ? &t->n_tokens : &t->n_users;
    uint32_t *cap = is_token ? &ps->tokens_cap : &ps->users_cap;
    const char *kind = is_token ? "token" : "user";
    if (!name_ok(f[1])) {
        return perr(ps, line, -EINVAL, "bad %s name (1..%d printable bytes, no spaces or ':')",
                    kind, AUTH_NAME_MAX);
    }
    for (uint32_t i = 0; i < *n; i++) {
        if (strcmp((*arr)[i].name, f[1]) == 0) {
            return perr(ps, line, -EINVAL, "%s \"%s\" declared twice", kind, f[1]);
        }
    }
    const char *why = hash_method_ok(f[2]);
    if (why) {
        return perr(ps, line, -EINVAL, "%s \"%s\": %s", kind, f[1], why);
    }
    int pi = princ_get(ps, f[1], line);
    if (pi < 0 || grow((void **)arr, cap, *n, sizeof(**arr)) < 0) {
        return perr(ps, line, -ENOMEM, "out of memory");
    }
    struct auth_cred *c = &(*arr)[*n];
    c->name = strdup(f[1]);
    c->hash = strdup(f[2]);
    c->princ = (uint32_t)pi;
    if (c->name == NULL || c->hash == NULL) {
        free(c->name);
        free(c->hash);
        return perr(ps, line, -ENOMEM, "out of memory");
    }
    (*n)++;
    return 0;
}

static int add_allow(struct parse *ps, char **f, int nf, unsigned line)
{
    if (!name_ok(f[1])) {
        return perr(ps, line, -EINVAL, "bad name \"%s\"", f[1]);
    }
    int is_admin = strcmp(f[2], "admin") == 0;
    int is_pub = strcmp(f[2], "publish") == 0;
    int is_sub = strcmp(f[2], "subscribe") == 0;
    int is_consume = strcmp(f[2], "consume") == 0;
    int is_group = strcmp(f[2], "group") == 0;
    if (!is_admin && !is_pub && !is_sub && !is_consume && !is_group) {
        return perr(ps, line, -EINVAL,
                    "unknown right \"%s\" (publish PATTERN, subscribe PATTERN, consume PATTERN, "
                    "group NAME or admin)",
                    f[2]);
    }
    if (is_admin ? nf != 3 : nf != 4) {
        return perr(ps, line, -EINVAL,
                    is_admin ? "usage: allow NAME admin"
                             : "usage: allow NAME publish|subscribe|consume PATTERN, or allow "
                               "NAME group GROUP");
    }
    int pi = princ_get(ps, f[1], line);
    if (pi < 0) {
        return perr(ps, line, -ENOMEM, "out of memory");
    }
    struct auth_principal *p = &ps->t->princ[pi];
    if (is_admin) {
        p->is_admin = 1;
        return 0;
    }
    const char *why = NULL;
    size_t plen = strlen(f[3]);
    /* a group rule names one queue group, or "*" (or ">"): every group */
    if (topic_validate(f[3], plen, 1, AUTH_PATTERN_MAX, is_group ? 1 : TRIE_MAX_DEPTH, &why) != 0) {
        return perr(ps, line, -EINVAL, "bad %s \"%s\": %s",
                    is_group ? "queue group (one token, or *)" : "pattern", f[3],
                    why ? why : "invalid");
    }
    struct acl_list *l = is_pub ? &p->pub : is_sub ? &p->sub : is_consume ? &p->consume : &p->group;
    if (acl_list_add(l, f[3], plen) < 0) {
        return perr(ps, line, -ENOMEM, "out of memory");
    }
    return 0;
}

static int parse_line(struct parse *ps, char *s, unsigned line)
{
    char *hash = strchr(s, '#');
    if (hash) {
        *hash = '\0';
    }
    char *f[5];
    int nf = 0;
    char *save = NULL;
    for (char *tok = strtok_r(s, " \t\r", &save); tok; tok = strtok_r(NULL, " \t\r", &save)) {
        if (nf == 5) {
            return perr(ps, line, -EINVAL, "too many fields");
        }
        f[nf++] = tok;
    }
    if (nf == 0) {
        return 0;
    }
    if (strcmp(f[0], "user") == 0 || strcmp(f[0], "token") == 0) {
        if (nf != 3) {
            return perr(ps, line, -EINVAL, "usage: %s NAME HASH", f[0]);
        }
        return add_cred(ps, f[0][0] == 't', f, line);
    }
    if (strcmp(f[0], "cert") == 0) {
        /* A user who logs in by a TLS client certificate (tls_identity). */
        if (nf != 2 || !name_ok(f[1])) {
            return perr(ps, line, -EINVAL, "usage: cert NAME");
        }
        int pi = princ_get(ps, f[1], line);
        if (pi < 0) {
            return perr(ps, line, -ENOMEM, "out of memory");
        }
        ps->t->princ[pi].is_cert = 1;
        return 0;
    }
    if (strcmp(f[0], "allow") == 0) {
        if (nf < 3) {
            return perr(ps, line, -EINVAL,
                        "usage: allow NAME publish|subscribe|consume PATTERN, "
                        "allow NAME group GROUP, or allow NAME admin");
        }
        return add_allow(ps, f, nf, line);
    }
    return perr(ps, line, -EINVAL, "unknown rule \"%s\" (user, token, cert or allow)", f[0]);
}

int auth_table_parse(const char *text, size_t len, const char *name, struct auth_table **out,
                     char *err, size_t err_len)
{
    struct parse ps = {.name = name, .err = err, .err_len = err_len};
    int rc = 0;
    unsigned line = 0;
    char *buf = malloc(len + 1);
    ps.t = calloc(1, sizeof(*ps.t));
    if (buf == NULL || ps.t == NULL) {
        rc = perr(&ps, 0, -ENOMEM, "out of memory");
        goto out;
    }
    atomic_init(&ps.t->refs, 1);
    memcpy(buf, text, len);
    buf[len] = '\0';
    if (memchr(text, '\0', len) != NULL) {
        rc = perr(&ps, 0, -EINVAL, "NUL byte in the file");
        goto out;
    }
    char *p = buf;
    while (*p) {
        char *nl = strchr(p, '\n');
        if (nl) {
            *nl = '\0';
        }
        rc = parse_line(&ps, p, ++line);
        if (rc < 0) {
            goto out;
        }
        if (!nl) {
            break;
        }
        p = nl + 1;
    }
    /* Every allow rule must name a user, token or cert: a typo otherwise
     * grants nothing, silently. */
    for (uint32_t i = 0; i < ps.t->n_princ; i++) {
        int found = ps.t->princ[i].is_cert;
        for (uint32_t j = 0; j < ps.t->n_users && !found; j++) {
            found = ps.t->users[j].princ == i;
        }
        for (uint32_t j = 0; j < ps.t->n_tokens && !found; j++) {
            found = ps.t->tokens[j].princ == i;
        }
        if (!found) {
            rc = perr(&ps, ps.allow_lines[i], -EINVAL,
                      "allow names \"%s\", which is no user, token or cert", ps.t->princ[i].name);
            goto out;
        }
    }
    /* The dummy hash for unknown names: hashed with the settings (method,
     * cost, salt) of the credential whose check costs the median, so an
     * unknown name costs what a typical known one does (the first one's
     * method would tell, by its time, which names exist when methods or
     * costs differ). */
    const char *model = NULL;
    if (ps.t->n_users + ps.t->n_tokens > 0 && (model = median_hash(ps.t)) == NULL) {
        rc = perr(&ps, 0, -ENOMEM, "out of memory");
        goto out;
    }
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    if (model == NULL) {
        model = crypt_gensalt_rn("$y$", 0, NULL, 0, setting, sizeof(setting));
    }
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    const char *dh = model && cd ? crypt_rn("ferry dummy password", model, cd, sizeof(*cd)) : NULL;
    ps.t->dummy_hash = dh && dh[0] != '*' ? strdup(dh) : NULL;
    free(cd);
    if (ps.t->dummy_hash == NULL) {
        rc = perr(&ps, 0, -ENOMEM, "cannot make the dummy hash (out of memory?)");
        goto out;
    }
    *out = ps.t;
    ps.t = NULL;
out:
    free(buf);
    free(ps.allow_lines);
    if (ps.t) {
        table_free(ps.t);
    }
    return rc;
}

int auth_table_load(const char *path, struct auth_table **out, char *err, size_t err_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int rc = -errno;
        snprintf(err, err_len, "%s: %s", path, strerror(-rc));
        return rc;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)AUTH_FILE_MAX) {
        close(fd);
        snprintf(err, err_len, "%s: not a regular file of at most %u bytes", path, AUTH_FILE_MAX);
        return -EINVAL;
    }
    /* Checked on the file opened, at every load (start and SIGHUP): a file
     * every user may write grants rights to whoever writes it. */
    if (st.st_mode & S_IWOTH) {
        close(fd);
        snprintf(err, err_len, "%s: writable by every user (mode %03o); chmod 600 it", path,
                 (unsigned)(st.st_mode & 0777));
        return -EPERM;
    }
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = malloc(cap);
    if (buf == NULL) {
        close(fd);
        snprintf(err, err_len, "%s: out of memory", path);
        return -ENOMEM;
    }
    for (;;) {
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            int rc = -errno;
            free(buf);
            close(fd);
            snprintf(err, err_len, "%s: %s", path, strerror(-rc));
            return rc;
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
        if (len == cap) { /* grew since fstat */
            free(buf);
            close(fd);
            snprintf(err, err_len, "%s: changed while being read", path);
            return -EAGAIN;
        }
    }
    close(fd);
    int rc = auth_table_parse(buf, len, path, out, err, err_len);
    explicit_bzero(buf, len);
    free(buf);
    if (rc == 0) {
        (*out)->file_mode = (uint32_t)(st.st_mode & 07777);
    }
    return rc;
}

/* ---- checking ----------------------------------------------------------- */

/* Equal strings, in time that depends on the lengths only. */
static int ct_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t n = la < lb ? la : lb;
    unsigned char d = (unsigned char)(la != lb);
    for (size_t i = 0; i < n; i++) {
        d |= (unsigned char)(a[i] ^ b[i]);
    }
    return d == 0;
}

static const struct auth_cred *cred_find(const struct auth_cred *arr, uint32_t n, const char *name,
                                         size_t name_len)
{
    for (uint32_t i = 0; i < n; i++) {
        if (strlen(arr[i].name) == name_len && memcmp(arr[i].name, name, name_len) == 0) {
            return &arr[i];
        }
    }
    return NULL;
}

int auth_check(const struct auth_table *t, const char *username, const char *password,
               const char *token, const struct auth_principal **out)
{
    const struct auth_cred *c = NULL;
    const char *secret;
    int is_wellformed = 1;
    if (token && *token) {
        const char *colon = strchr(token, ':');
        if (colon == NULL) {
            is_wellformed = 0;
            secret = token;
        } else {
            c = cred_find(t->tokens, t->n_tokens, token, (size_t)(colon - token));
            secret = colon + 1;
        }
    } else {
        if (username == NULL || *username == '\0') {
            is_wellformed = 0;
        } else {
            c = cred_find(t->users, t->n_users, username, strlen(username));
        }
        secret = password ? password : "";
    }
    /* Hash even when the name is unknown or malformed: the answer takes as
     * long either way and says nothing about which names exist. */
    const char *hash = c ? c->hash : t->dummy_hash;
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    if (cd == NULL) {
        return FERRY_EAUTH;
    }
    const char *r = crypt_rn(secret, hash, cd, sizeof(*cd));
    int ok = r != NULL && r[0] != '*' && ct_equal(r, hash);
    explicit_bzero(cd, sizeof(*cd));
    free(cd);
    /* bcrypt reads only the first 72 bytes: a longer password would let
     * that prefix plus any suffix in. Refused after the hash, so the time
     * taken says nothing either. */
    if (is_bcrypt(hash) && strlen(secret) > AUTH_BCRYPT_PASS_MAX) {
        ok = 0;
    }
    if (!ok || c == NULL || !is_wellformed) {
        return FERRY_EAUTH;
    }
    *out = &t->princ[c->princ];
    return 0;
}

/* ---- the holder --------------------------------------------------------- */

void auth_holder_init(struct auth_holder *h)
{
    pthread_mutex_init(&h->lock, NULL);
    h->t = NULL;
    atomic_init(&h->gen, 0);
}

void auth_holder_deinit(struct auth_holder *h)
{
    auth_table_unref(h->t);
    h->t = NULL;
    pthread_mutex_destroy(&h->lock);
}

struct auth_table *auth_holder_get(struct auth_holder *h)
{
    pthread_mutex_lock(&h->lock);
    struct auth_table *t = h->t;
    if (t) {
        auth_table_ref(t);
    }
    pthread_mutex_unlock(&h->lock);
    return t;
}

void auth_holder_set(struct auth_holder *h, struct auth_table *t)
{
    pthread_mutex_lock(&h->lock);
    struct auth_table *old = h->t;
    h->t = t;
    atomic_fetch_add_explicit(&h->gen, 1, memory_order_release);
    pthread_mutex_unlock(&h->lock);
    auth_table_unref(old);
}

/* ---- the pool ----------------------------------------------------------- */

struct auth_req {
    uint64_t conn_ref;
    struct auth_table *t;
    char *username, *password, *token;
    const atomic_int *cancel; /* the submitter's; NULL: never cancelled */
    void *tag;
};

struct auth_pool {
    struct mbox q; /* of struct auth_req * */
    pthread_t *threads;
    uint32_t n_threads;
    atomic_int is_stopping; /* atomic */
    auth_done_fn done;
    void *ctx;
};

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void req_finish(struct auth_pool *p, struct auth_req *r, int do_check)
{
    const struct auth_principal *who = NULL;
    int rc = FERRY_EAUTH;
    if (r->cancel != NULL && atomic_load(r->cancel)) {
        rc = -ECANCELED;
    } else if (do_check) {
        rc = auth_check(r->t, r->username, r->password, r->token, &who);
    }
    wipe_free(r->username);
    wipe_free(r->password);
    wipe_free(r->token);
    p->done(p->ctx, r->conn_ref, rc, r->t, rc == 0 ? who : NULL, r->tag);
    free(r);
}

static void *pool_main(void *arg)
{
    struct auth_pool *p = arg;
    log_thread_name_set("auth");
    for (;;) {
        struct auth_req *r;
        if (mbox_take(&p->q, &r, 1, NULL) == 1) {
            req_finish(p, r, !atomic_load(&p->is_stopping));
            continue;
        }
        if (atomic_load(&p->is_stopping)) {
            return NULL;
        }
        mbox_wait(&p->q, 1000);
    }
}

struct auth_pool *auth_pool_create(uint32_t n_threads, uint32_t queue_cap, auth_done_fn done,
                                   void *ctx)
{
    struct auth_pool *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return NULL;
    }
    p->done = done;
    p->ctx = ctx;
    atomic_init(&p->is_stopping, 0);
    if (n_threads == 0) {
        n_threads = 1;
    }
    int rc = mbox_init(&p->q, sizeof(struct auth_req *), queue_cap ? queue_cap : 64, 0);
    if (rc < 0) {
        free(p);
        errno = -rc;
        return NULL;
    }
    p->threads = calloc(n_threads, sizeof(*p->threads));
    if (p->threads == NULL) {
        goto out_mbox;
    }
    for (; p->n_threads < n_threads; p->n_threads++) {
        rc = pthread_create(&p->threads[p->n_threads], NULL, pool_main, p);
        if (rc != 0) {
            errno = rc;
            goto out_threads;
        }
    }
    return p;

out_threads:
    atomic_store(&p->is_stopping, 1);
    mbox_close(&p->q);
    for (uint32_t i = 0; i < p->n_threads; i++) {
        pthread_join(p->threads[i], NULL);
    }
    free(p->threads);
out_mbox:
    mbox_deinit(&p->q);
    free(p);
    return NULL;
}

void auth_pool_destroy(struct auth_pool *p)
{
    if (p == NULL) {
        return;
    }
    atomic_store(&p->is_stopping, 1);
    mbox_close(&p->q);
    for (uint32_t i = 0; i < p->n_threads; i++) {
        pthread_join(p->threads[i], NULL);
    }
    struct auth_req *r;
    while (mbox_take(&p->q, &r, 1, NULL) == 1) {
        req_finish(p, r, 0);
    }
    free(p->threads);
    mbox_deinit(&p->q);
    free(p);
}

static char *dup_or_null(const char *s)
{
    return s && *s ? strdup(s) : NULL;
}

int auth_pool_submit(struct auth_pool *p, uint64_t conn_ref, struct auth_table *t,
                     const char *username, const char *password, const char *token,
                     const atomic_int *cancel, void *tag)
{
    struct auth_req *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return -ENOMEM;
    }
    r->conn_ref = conn_ref;
    r->cancel = cancel;
    r->tag = tag;
    r->username = dup_or_null(username);
    r->password = dup_or_null(password);
    r->token = dup_or_null(token);
    if ((username && *username && !r->username) || (password && *password && !r->password) ||
        (token && *token && !r->token)) {
        goto out_nomem;
    }
    auth_table_ref(t);
    r->t = t;
    if (mbox_try_post(&p->q, &r, 1) != 1) {
        auth_table_unref(t);
        wipe_free(r->username);
        wipe_free(r->password);
        wipe_free(r->token);
        free(r);
        return -EAGAIN;
    }
    return 0;

out_nomem:
    wipe_free(r->username);
    wipe_free(r->password);
    wipe_free(r->token);
    free(r);
    return -ENOMEM;
}

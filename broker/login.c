/*
 * login.c - the login gate (login.h): failure counts, turns and pre-login
 * connections per address, failure counts per user name.
 *
 * Both tables are open-addressed with a fixed probe window: a lookup scans
 * all LOGIN_PROBE slots from the key's hash (it does not stop at an empty
 * one), so any entry may be dropped without breaking another's chain.
 */
#include "login.h"

#include "auth.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define LOGIN_PROBE 16u

struct login_addr {
    uint8_t key[16];
    uint8_t is_used;
    uint8_t is_busy;   /* a check of this address waits or runs (its turn) */
    uint32_t fails;    /* recent failed checks */
    uint32_t n_unauth; /* its pre-login connections */
    uint64_t last_ms;  /* the last failure, or the entry's creation */
    uint64_t next_ms;  /* no check of this address before */
};

struct login_name {
    char name[AUTH_NAME_MAX + 1];
    uint8_t is_used;
    uint32_t fails;
    uint64_t last_ms;
    uint64_t next_ms;
};

void login_addr_key(const struct sockaddr *sa, uint8_t key[16])
{
    memset(key, 0, 16);
    if (sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    } else if (sa->sa_family == AF_INET) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    }
}

int login_gate_init(struct login_gate *g, const struct login_limits *lim, uint32_t cap)
{
    uint32_t n = LOGIN_PROBE;
    while (n < cap) {
        n *= 2;
    }
    g->addrs = calloc(n, sizeof(*g->addrs));
    g->names = calloc(n, sizeof(*g->names));
    if (g->addrs == NULL || g->names == NULL) {
        free(g->addrs);
        free(g->names);
        return -ENOMEM;
    }
    g->cap = n;
    g->lim = *lim;
    g->n_unauth = 0;
    pthread_mutex_init(&g->lock, NULL);
    return 0;
}

void login_gate_deinit(struct login_gate *g)
{
    free(g->addrs);
    free(g->names);
    g->addrs = NULL;
    g->names = NULL;
    pthread_mutex_destroy(&g->lock);
}

static uint32_t hash_bytes(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ b[i]) * 16777619u;
    }
    return h;
}

/* The wait after `fails` recent failures. */
static uint64_t fail_wait(const struct login_gate *g, uint32_t fails)
{
    if (fails <= LOGIN_FREE_FAILS) {
        return 0;
    }
    uint32_t shift = fails - LOGIN_FREE_FAILS - 1;
    uint64_t w = (uint64_t)g->lim.delay_ms << (shift < 20 ? shift : 20);
    return w < g->lim.delay_max_ms ? w : g->lim.delay_max_ms;
}

/* Quiet since last for LOGIN_FORGET_MS? (Threads' clocks are read at
 * different moments: now may be a little behind last.) */
static int is_forgotten(uint64_t last, uint64_t now)
{
    return now > last && now - last > LOGIN_FORGET_MS;
}

/* An address entry that nothing depends on may be dropped or reused. */
static int addr_is_idle(const struct login_addr *a, uint64_t now)
{
    return !a->is_busy && a->n_unauth == 0 && (a->fails == 0 || is_forgotten(a->last_ms, now));
}

/* g->lock held. The entry of key; create: make one if missing (reusing an
 * idle one when the window is full). NULL: missing, or no room. */
static struct login_addr *addr_get(struct login_gate *g, const uint8_t key[16], int create,
                                   uint64_t now)
{
    uint32_t h = hash_bytes(key, 16);
    struct login_addr *free_slot = NULL, *victim = NULL;
    for (uint32_t i = 0; i < LOGIN_PROBE; i++) {
        struct login_addr *a = &g->addrs[(h + i) & (g->cap - 1)];
        if (!a->is_used) {
            free_slot = free_slot ? free_slot : a;
        } else if (memcmp(a->key, key, 16) == 0) {
            if (a->fails > 0 && is_forgotten(a->last_ms, now)) {
                a->fails = 0; /* quiet long enough: starts over */
                a->next_ms = 0;
            }
            return a;
        } else if (addr_is_idle(a, now) && (victim == NULL || a->last_ms < victim->last_ms)) {
            victim = a;
        }
    }
    struct login_addr *a = free_slot ? free_slot : victim;
    if (!create || a == NULL) {
        return NULL;
    }
    memset(a, 0, sizeof(*a));
    memcpy(a->key, key, 16);
    a->is_used = 1;
    a->last_ms = now;
    return a;
}

/* g->lock held. As addr_get, for a user name. */
static struct login_name *name_get(struct login_gate *g, const char *name, int create, uint64_t now)
{
    size_t len = strnlen(name, AUTH_NAME_MAX + 1);
    if (len == 0 || len > AUTH_NAME_MAX) {
        return NULL;
    }
    uint32_t h = hash_bytes(name, len);
    struct login_name *free_slot = NULL, *victim = NULL;
    for (uint32_t i = 0; i < LOGIN_PROBE; i++) {
        struct login_name *n = &g->names[(h + i) & (g->cap - 1)];
        if (!n->is_used) {
            free_slot = free_slot ? free_slot : n;
        } else if (strcmp(n->name, name) == 0) {
            if (n->fails > 0 && is_forgotten(n->last_ms, now)) {
                n->fails = 0;
                n->next_ms = 0;
            }
            return n;
        } else if (victim == NULL || n->last_ms < victim->last_ms) {
            victim = n;
        }
    }
    struct login_name *n = free_slot ? free_slot : victim;
    if (!create || n == NULL) {
        return NULL;
    }
    memset(n, 0, sizeof(*n));
    memcpy(n->name, name, len);
    n->is_used = 1;
    n->last_ms = now;
    return n;
}

int login_unauth_enter(struct login_gate *g, const uint8_t addr[16], uint64_t now)
{
    int rc = -EBUSY;
    pthread_mutex_lock(&g->lock);
    if (g->n_unauth < g->lim.max_unauth) {
        struct login_addr *a = addr_get(g, addr, 1, now);
        if (a != NULL && a->n_unauth < g->lim.max_unauth_per_addr) {
            a->n_unauth++;
            g->n_unauth++;
            rc = 0;
        }
    }
    pthread_mutex_unlock(&g->lock);
    return rc;
}

void login_unauth_leave(struct login_gate *g, const uint8_t addr[16], uint64_t now)
{
    pthread_mutex_lock(&g->lock);
    struct login_addr *a = addr_get(g, addr, 0, now);
    if (a != NULL && a->n_unauth > 0) { /* (counted entries are never dropped) */
        a->n_unauth--;
        g->n_unauth--;
    }
    pthread_mutex_unlock(&g->lock);
}

uint32_t login_unauth_count(struct login_gate *g)
{
    pthread_mutex_lock(&g->lock);
    uint32_t n = g->n_unauth;
    pthread_mutex_unlock(&g->lock);
    return n;
}

enum login_verdict login_begin(struct login_gate *g, const uint8_t addr[16], const char *name,
                               uint64_t now, uint64_t *at)
{
    enum login_verdict v;
    pthread_mutex_lock(&g->lock);
    struct login_addr *a = addr_get(g, addr, 1, now);
    if (a == NULL || a->is_busy) {
        *at = now + LOGIN_RETRY_MS; /* its turn comes when the other check ends */
        v = LOGIN_QUEUED;
        goto out;
    }
    uint64_t t = a->next_ms;
    struct login_name *n = name ? name_get(g, name, 0, now) : NULL;
    if (n != NULL && n->next_ms > now) {
        uint64_t nt = n->next_ms;
        if (a->fails == 0 && nt > now + LOGIN_CLEAN_WAIT_MS) {
            nt = now + LOGIN_CLEAN_WAIT_MS; /* see login.h: the real user elsewhere */
        }
        t = nt > t ? nt : t;
    }
    if (t > now + LOGIN_HOLD_MAX_MS) {
        *at = t;
        v = LOGIN_REFUSE;
        goto out;
    }
    a->is_busy = 1;
    *at = t > now ? t : now;
    v = t > now ? LOGIN_AT : LOGIN_RUN;
out:
    pthread_mutex_unlock(&g->lock);
    return v;
}

void login_end(struct login_gate *g, const uint8_t addr[16], const char *name, int is_checked,
               int ok, uint64_t now)
{
    pthread_mutex_lock(&g->lock);
    struct login_addr *a = addr_get(g, addr, 1, now);
    if (a != NULL) {
        a->is_busy = 0;
        if (is_checked && !ok) {
            a->fails++;
            a->last_ms = now;
            a->next_ms = now + fail_wait(g, a->fails);
        }
    }
    if (is_checked && name != NULL) {
        struct login_name *n = name_get(g, name, !ok, now);
        if (n != NULL && ok) {
            n->fails = 0; /* the real user got in: its name starts over */
            n->next_ms = 0;
        } else if (n != NULL) {
            n->fails++;
            n->last_ms = now;
            n->next_ms = now + fail_wait(g, n->fails);
        }
    }
    pthread_mutex_unlock(&g->lock);
}

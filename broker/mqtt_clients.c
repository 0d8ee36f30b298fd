/*
 * mqtt_clients.c - who holds each MQTT client id now (mqtt_clients.h): a
 * chained hash table of session keys to connection references, grown by
 * doubling when it holds as many keys as buckets.
 */
#include "mqtt_clients.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct entry {
    struct entry *next;
    uint64_t hash;
    uint64_t ref;
    char key[]; /* NUL-terminated */
};

struct mqtt_clients {
    pthread_mutex_t lock; /* guards everything below */
    struct entry **b;     /* [n_b], n_b a power of two */
    uint32_t n_b;
    uint32_t n;
};

#define INITIAL_BUCKETS 64u

static uint64_t hash_of(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) {
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    }
    return h;
}

struct mqtt_clients *mqtt_clients_create(void)
{
    struct mqtt_clients *r = calloc(1, sizeof(*r));
    if (r == NULL || (r->b = calloc(INITIAL_BUCKETS, sizeof(*r->b))) == NULL) {
        free(r);
        return NULL;
    }
    r->n_b = INITIAL_BUCKETS;
    pthread_mutex_init(&r->lock, NULL);
    return r;
}

void mqtt_clients_destroy(struct mqtt_clients *r)
{
    if (r == NULL) {
        return;
    }
    for (uint32_t i = 0; i < r->n_b; i++) {
        for (struct entry *e = r->b[i], *nx; e != NULL; e = nx) {
            nx = e->next;
            free(e);
        }
    }
    free(r->b);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

/* The link that points at key's entry (*link NULL: none). Locked. */
static struct entry **find(struct mqtt_clients *r, const char *key, uint64_t h)
{
    struct entry **link = &r->b[h & (r->n_b - 1)];
    while (*link != NULL && ((*link)->hash != h || strcmp((*link)->key, key) != 0)) {
        link = &(*link)->next;
    }
    return link;
}

/* Twice the buckets; on no memory the chains just grow longer. Locked. */
static void grow(struct mqtt_clients *r)
{
    uint32_t n_b = r->n_b * 2;
    struct entry **b = calloc(n_b, sizeof(*b));
    if (b == NULL) {
        return;
    }
    for (uint32_t i = 0; i < r->n_b; i++) {
        for (struct entry *e = r->b[i], *nx; e != NULL; e = nx) {
            nx = e->next;
            e->next = b[e->hash & (n_b - 1)];
            b[e->hash & (n_b - 1)] = e;
        }
    }
    free(r->b);
    r->b = b;
    r->n_b = n_b;
}

int mqtt_clients_claim(struct mqtt_clients *r, const char *key, uint64_t ref, uint64_t *prev)
{
    uint64_t h = hash_of(key);
    int ret = 0;
    pthread_mutex_lock(&r->lock);
    struct entry **link = find(r, key, h);
    if (*link != NULL) {
        *prev = (*link)->ref;
        (*link)->ref = ref;
        ret = 1;
    } else {
        size_t len = strlen(key);
        struct entry *e = malloc(sizeof(*e) + len + 1);
        if (e == NULL) {
            ret = -ENOMEM;
        } else {
            e->hash = h;
            e->ref = ref;
            memcpy(e->key, key, len + 1);
            e->next = NULL;
            *link = e;
            if (++r->n > r->n_b) {
                grow(r);
            }
        }
    }
    pthread_mutex_unlock(&r->lock);
    return ret;
}

int mqtt_clients_release(struct mqtt_clients *r, const char *key, uint64_t ref, uint64_t *next)
{
    uint64_t h = hash_of(key);
    int ret = 0;
    pthread_mutex_lock(&r->lock);
    struct entry **link = find(r, key, h);
    struct entry *e = *link;
    if (e != NULL && e->ref == ref) {
        *link = e->next;
        r->n--;
        free(e);
    } else if (e != NULL) {
        *next = e->ref;
        ret = 1;
    }
    pthread_mutex_unlock(&r->lock);
    return ret;
}

uint32_t mqtt_clients_count(struct mqtt_clients *r)
{
    pthread_mutex_lock(&r->lock);
    uint32_t n = r->n;
    pthread_mutex_unlock(&r->lock);
    return n;
}

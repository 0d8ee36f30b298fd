/*
 * mqtt_retain.c - the retained messages' table (mqtt_retain.h): a hash
 * table of topics, chained, doubled when it holds as many entries as
 * buckets.
 */
#include "mqtt_retain.h"

#include "topic.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct rentry {
    struct rentry *next;
    uint32_t hash;
    uint8_t qos;
    size_t topic_len, payload_len;
    char data[]; /* topic, then payload */
};

struct mqtt_retain {
    pthread_mutex_t lock; /* guards everything below */
    struct rentry **b;
    size_t n_b; /* a power of two, or 0 */
    size_t n;
    size_t bytes, max_bytes;
};

struct mqtt_retain *mqtt_retain_create(size_t max_bytes)
{
    struct mqtt_retain *r = calloc(1, sizeof(*r));
    if (r != NULL) {
        pthread_mutex_init(&r->lock, NULL);
        r->max_bytes = max_bytes;
    }
    return r;
}

void mqtt_retain_destroy(struct mqtt_retain *r)
{
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < r->n_b; i++) {
        for (struct rentry *e = r->b[i], *next; e != NULL; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(r->b);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static int grow(struct mqtt_retain *r)
{
    size_t n_b = r->n_b ? r->n_b * 2 : 64;
    struct rentry **b = calloc(n_b, sizeof(*b));
    if (b == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < r->n_b; i++) {
        for (struct rentry *e = r->b[i], *next; e != NULL; e = next) {
            next = e->next;
            e->next = b[e->hash & (n_b - 1)];
            b[e->hash & (n_b - 1)] = e;
        }
    }
    free(r->b);
    r->b = b;
    r->n_b = n_b;
    return 0;
}

int mqtt_retain_put(struct mqtt_retain *r, const char *topic, size_t topic_len, const void *payload,
                    size_t payload_len, uint8_t qos)
{
    uint32_t h = topic_hash(topic, topic_len);
    struct rentry *ne = NULL;
    if (payload_len > 0) {
        if (topic_len + payload_len > r->max_bytes) {
            return -ENOSPC;
        }
        ne = malloc(sizeof(*ne) + topic_len + payload_len);
        if (ne == NULL) {
            return -ENOMEM;
        }
        ne->hash = h;
        ne->qos = qos;
        ne->topic_len = topic_len;
        ne->payload_len = payload_len;
        memcpy(ne->data, topic, topic_len);
        memcpy(ne->data + topic_len, payload, payload_len);
    }
    int rc = 0;
    pthread_mutex_lock(&r->lock);
    struct rentry **pp = NULL;
    if (r->n_b > 0) {
        pp = &r->b[h & (r->n_b - 1)];
        while (*pp != NULL && !((*pp)->hash == h && (*pp)->topic_len == topic_len &&
                                memcmp((*pp)->data, topic, topic_len) == 0)) {
            pp = &(*pp)->next;
        }
    }
    struct rentry *old = pp != NULL ? *pp : NULL;
    size_t old_bytes = old ? old->topic_len + old->payload_len : 0;
    if (ne != NULL && r->bytes - old_bytes + topic_len + payload_len > r->max_bytes) {
        rc = -ENOSPC;
    } else if (ne != NULL && old == NULL && r->n >= r->n_b && grow(r) < 0) {
        rc = -ENOMEM;
    } else if (old != NULL) {
        r->bytes -= old_bytes;
        if (ne != NULL) {
            ne->next = old->next;
            *pp = ne;
            r->bytes += topic_len + payload_len;
            ne = NULL;
        } else {
            *pp = old->next;
            r->n--;
        }
        free(old);
    } else if (ne != NULL) {
        struct rentry **head = &r->b[h & (r->n_b - 1)];
        ne->next = *head;
        *head = ne;
        r->n++;
        r->bytes += topic_len + payload_len;
        ne = NULL;
    }
    pthread_mutex_unlock(&r->lock);
    free(ne); /* not taken: refused */
    return rc;
}

void mqtt_retain_each(struct mqtt_retain *r, const char *a, size_t a_len, const char *b,
                      size_t b_len, mqtt_retain_fn *fn, void *arg)
{
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->n_b; i++) {
        for (const struct rentry *e = r->b[i]; e != NULL; e = e->next) {
            if (topic_match(a, a_len, e->data, e->topic_len) ||
                (b != NULL && topic_match(b, b_len, e->data, e->topic_len))) {
                fn(arg, e->data, e->topic_len, e->data + e->topic_len, e->payload_len, e->qos);
            }
        }
    }
    pthread_mutex_unlock(&r->lock);
}

size_t mqtt_retain_count(struct mqtt_retain *r)
{
    pthread_mutex_lock(&r->lock);
    size_t n = r->n;
    pthread_mutex_unlock(&r->lock);
    return n;
}

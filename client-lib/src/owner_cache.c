/*
 * owner_cache.c - topic -> owner broker id: a chained hash table (FNV-1a)
 * that doubles when its load passes 1. See owner_cache.h.
 */
#include "owner_cache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct ferry__owner_ent {
    struct ferry__owner_ent *next;
    uint32_t id;
    char topic[]; /* NUL-terminated */
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s != '\0'; s++) {
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    }
    return h;
}

void ferry__ocache_init(struct ferry__owner_cache *oc)
{
    memset(oc, 0, sizeof(*oc));
}

void ferry__ocache_free(struct ferry__owner_cache *oc)
{
    for (size_t i = 0; i < oc->cap; i++) {
        struct ferry__owner_ent *e = oc->slots[i];
        while (e != NULL) {
            struct ferry__owner_ent *next = e->next;
            free(e);
            e = next;
        }
    }
    free(oc->slots);
    ferry__ocache_init(oc);
}

static struct ferry__owner_ent **find(const struct ferry__owner_cache *oc, const char *topic)
{
    if (oc->cap == 0) {
        return NULL;
    }
    struct ferry__owner_ent **pp = &oc->slots[hash_str(topic) & (oc->cap - 1)];
    while (*pp != NULL && strcmp((*pp)->topic, topic) != 0) {
        pp = &(*pp)->next;
    }
    return pp;
}

uint32_t ferry__ocache_get(const struct ferry__owner_cache *oc, const char *topic)
{
    struct ferry__owner_ent **pp = find(oc, topic);
    return pp != NULL && *pp != NULL ? (*pp)->id : 0;
}

static int grow(struct ferry__owner_cache *oc)
{
    size_t cap = oc->cap == 0 ? 64 : oc->cap * 2;
    struct ferry__owner_ent **slots = calloc(cap, sizeof(*slots));
    if (slots == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < oc->cap; i++) {
        struct ferry__owner_ent *e = oc->slots[i];
        while (e != NULL) {
            struct ferry__owner_ent *next = e->next;
            size_t k = hash_str(e->topic) & (cap - 1);
            e->next = slots[k];
            slots[k] = e;
            e = next;
        }
    }
    free(oc->slots);
    oc->slots = slots;
    oc->cap = cap;
    return 0;
}

int ferry__ocache_put(struct ferry__owner_cache *oc, const char *topic, uint32_t id)
{
    if (id == 0) {
        return -EINVAL;
    }
    struct ferry__owner_ent **pp = find(oc, topic);
    if (pp != NULL && *pp != NULL) {
        (*pp)->id = id;
        return 0;
    }
    if (oc->n >= oc->cap && grow(oc) != 0) {
        return -ENOMEM;
    }
    size_t len = strlen(topic);
    struct ferry__owner_ent *e = malloc(sizeof(*e) + len + 1);
    if (e == NULL) {
        return -ENOMEM;
    }
    memcpy(e->topic, topic, len + 1);
    e->id = id;
    size_t k = hash_str(topic) & (oc->cap - 1);
    e->next = oc->slots[k];
    oc->slots[k] = e;
    oc->n++;
    return 0;
}

int ferry__ocache_drop(struct ferry__owner_cache *oc, const char *topic)
{
    struct ferry__owner_ent **pp = find(oc, topic);
    if (pp == NULL || *pp == NULL) {
        return 0;
    }
    struct ferry__owner_ent *e = *pp;
    *pp = e->next;
    free(e);
    oc->n--;
    return 1;
}

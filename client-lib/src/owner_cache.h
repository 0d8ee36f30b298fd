/*
 * owner_cache.h - cluster mode: which broker owns each topic, as the client
 * learned it (Metadata, TopicCreate). Pure data, no locking: the caller
 * (cluster.c) guards it. Placements never move in phase 1
 * (broker/CLUSTER.md), so an entry is only dropped when a broker says it is
 * wrong (ERROR_NOT_OWNER).
 */
#ifndef FERRY_OWNER_CACHE_H
#define FERRY_OWNER_CACHE_H

#include <stddef.h>
#include <stdint.h>

struct ferry__owner_ent;

struct ferry__owner_cache {
    struct ferry__owner_ent **slots;
    size_t cap; /* power of two, or 0 before the first put */
    size_t n;
};

void ferry__ocache_init(struct ferry__owner_cache *oc);
void ferry__ocache_free(struct ferry__owner_cache *oc);
/* The owner's broker id, or 0 when unknown (broker ids start at 1). */
uint32_t ferry__ocache_get(const struct ferry__owner_cache *oc, const char *topic);
/* Set topic's owner (id > 0), replacing any. 0 or -ENOMEM (nothing changed). */
int ferry__ocache_put(struct ferry__owner_cache *oc, const char *topic, uint32_t id);
/* Forget topic; 1 if it was known, else 0. */
int ferry__ocache_drop(struct ferry__owner_cache *oc, const char *topic);

#endif /* FERRY_OWNER_CACHE_H */

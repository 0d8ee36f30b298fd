/*
 * timer_heap.h - a binary min-heap of deadlines, for the IO threads' timers.
 *
 * Each entry carries a pointer to a uint32_t that the heap keeps equal to the
 * entry's position (TIMER_NONE when not in the heap), so the owner can remove
 * or move its entry in O(log n). Owned by one thread. Pure module.
 */
#ifndef FERRY_TIMER_HEAP_H
#define FERRY_TIMER_HEAP_H

#include <stdint.h>

#define TIMER_NONE UINT32_MAX

struct theap_ent {
    uint64_t when; /* deadline, ms on the caller's clock */
    uint32_t *pos; /* kept equal to this entry's index */
    void *data;
};

struct theap {
    struct theap_ent *e;
    uint32_t n, cap;
};

void theap_init(struct theap *h);
void theap_deinit(struct theap *h);

/* Insert or move the entry whose position is *pos. Returns 0 or -ENOMEM. */
int theap_set(struct theap *h, uint32_t *pos, uint64_t when, void *data);

/* Make room for n entries in all, so that inserting up to n never fails.
 * Returns 0 or -ENOMEM. */
int theap_reserve(struct theap *h, uint32_t n);

/* Remove the entry at *pos if it is in the heap. */
void theap_remove(struct theap *h, uint32_t *pos);

/* The earliest entry, or NULL when empty. */
const struct theap_ent *theap_peek(const struct theap *h);

#endif

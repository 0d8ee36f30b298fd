/*
 * timer_heap.c - sift up, sift down, and keep the owners' positions current.
 */
#include "timer_heap.h"

#include <errno.h>
#include <stdlib.h>

void theap_init(struct theap *h)
{
    h->e = NULL;
    h->n = h->cap = 0;
}

void theap_deinit(struct theap *h)
{
    for (uint32_t i = 0; i < h->n; i++) {
        *h->e[i].pos = TIMER_NONE;
    }
    free(h->e);
    theap_init(h);
}

static void place(struct theap *h, uint32_t i, struct theap_ent ent)
{
    h->e[i] = ent;
    *ent.pos = i;
}

static void sift_up(struct theap *h, uint32_t i)
{
    struct theap_ent ent = h->e[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (h->e[parent].when <= ent.when) {
            break;
        }
        place(h, i, h->e[parent]);
        i = parent;
    }
    place(h, i, ent);
}

static void sift_down(struct theap *h, uint32_t i)
{
    struct theap_ent ent = h->e[i];
    for (;;) {
        uint32_t l = 2 * i + 1;
        if (l >= h->n) {
            break;
        }
        uint32_t c = (l + 1 < h->n && h->e[l + 1].when < h->e[l].when) ? l + 1 : l;
        if (h->e[c].when >= ent.when) {
            break;
        }
        place(h, i, h->e[c]);
        i = c;
    }
    place(h, i, ent);
}

int theap_reserve(struct theap *h, uint32_t n)
{
    if (h->cap >= n) {
        return 0;
    }
    uint32_t cap = h->cap ? h->cap : 64;
    while (cap < n) {
        cap *= 2;
    }
    struct theap_ent *e = realloc(h->e, (size_t)cap * sizeof(*e));
    if (e == NULL) {
        return -ENOMEM;
    }
    h->e = e;
    h->cap = cap;
    return 0;
}

int theap_set(struct theap *h, uint32_t *pos, uint64_t when, void *data)
{
    if (*pos != TIMER_NONE) {
        uint32_t i = *pos;
        uint64_t old = h->e[i].when;
        h->e[i].when = when;
        h->e[i].data = data;
        if (when < old) {
            sift_up(h, i);
        } else {
            sift_down(h, i);
        }
        return 0;
    }
    if (h->n == h->cap) {
        uint32_t cap = h->cap ? h->cap * 2 : 64;
        struct theap_ent *e = realloc(h->e, (size_t)cap * sizeof(*e));
        if (e == NULL) {
            return -ENOMEM;
        }
        h->e = e;
        h->cap = cap;
    }
    uint32_t i = h->n++;
    place(h, i, (struct theap_ent){.when = when, .pos = pos, .data = data});
    sift_up(h, i);
    return 0;
}

void theap_remove(struct theap *h, uint32_t *pos)
{
    uint32_t i = *pos;
    if (i == TIMER_NONE) {
        return;
    }
    *pos = TIMER_NONE;
    h->n--;
    if (i == h->n) {
        return;
    }
    uint64_t old = h->e[i].when;
    place(h, i, h->e[h->n]);
    if (h->e[i].when < old) {
        sift_up(h, i);
    } else {
        sift_down(h, i);
    }
}

const struct theap_ent *theap_peek(const struct theap *h)
{
    return h->n ? &h->e[0] : NULL;
}

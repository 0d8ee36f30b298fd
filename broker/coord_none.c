/*
 * coord_none.c - coord.h where ferryd is built without ZooKeeper
 * (libzookeeper-mt-dev missing, or -DFERRY_CLUSTER=OFF): every session
 * fails to start with -ENOTSUP, so `cluster` is refused at start.
 */
#include "coord.h"

#include <errno.h>

int coord_open(const char *hosts, uint32_t session_ms, struct coord **out)
{
    (void)hosts;
    (void)session_ms;
    *out = NULL;
    return -ENOTSUP;
}

void coord_close(struct coord *co)
{
    (void)co;
}

int coord_reopen(struct coord *co)
{
    (void)co;
    return -ENOTSUP;
}

int coord_next_event(struct coord *co, uint32_t timeout_ms, struct coord_event *ev)
{
    (void)co;
    (void)timeout_ms;
    (void)ev;
    return 0;
}

void coord_wake(struct coord *co)
{
    (void)co;
}

int coord_is_connected(const struct coord *co)
{
    (void)co;
    return 0;
}

uint32_t coord_session_ms(const struct coord *co)
{
    (void)co;
    return 0;
}

int coord_create(struct coord *co, const char *path, const void *data, size_t len, unsigned flags)
{
    (void)co, (void)path, (void)data, (void)len, (void)flags;
    return -ENOTSUP;
}

int coord_create_all(struct coord *co, const char *path)
{
    (void)co, (void)path;
    return -ENOTSUP;
}

int coord_get(struct coord *co, const char *path, int watch, void *buf, size_t cap, size_t *len,
              int32_t *version)
{
    (void)co, (void)path, (void)watch, (void)buf, (void)cap, (void)len, (void)version;
    return -ENOTSUP;
}

int coord_exists(struct coord *co, const char *path, int watch, int32_t *version)
{
    (void)co, (void)path, (void)watch, (void)version;
    return -ENOTSUP;
}

int coord_is_mine(struct coord *co, const char *path)
{
    (void)co, (void)path;
    return -ENOTSUP;
}

int coord_set(struct coord *co, const char *path, const void *data, size_t len, int32_t version)
{
    (void)co, (void)path, (void)data, (void)len, (void)version;
    return -ENOTSUP;
}

int coord_delete(struct coord *co, const char *path, int32_t version)
{
    (void)co, (void)path, (void)version;
    return -ENOTSUP;
}

int coord_children(struct coord *co, const char *path, int watch, struct coord_list *out)
{
    (void)co, (void)path, (void)watch;
    out->names = NULL;
    out->n = 0;
    return -ENOTSUP;
}

void coord_list_free(struct coord_list *l)
{
    (void)l;
}

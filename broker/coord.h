/*
 * coord.h - one session with the coordination service (ZooKeeper), as the
 * cluster module needs it: a tree of small versioned nodes, some of them
 * ephemeral (they vanish when the session that made them ends), one-shot
 * watches and session states. coord_zk.c implements it with the ZooKeeper
 * C library; it is the only file that includes zookeeper.h.
 *
 * THREADS. The calls below are synchronous (one round trip each) and may
 * be made from one thread at a time: the cluster thread (cluster.c). The
 * ZooKeeper library runs its own threads; whatever they report (session
 * states, fired watches) is queued in the session's mailbox and taken by
 * the owner with coord_next_event(), so no callback ever runs the
 * cluster's code on the library's thread.
 *
 * ERRORS. Every call returns 0 or a negative errno:
 *   -ENOENT     the node (or, for a create, its parent) does not exist
 *   -EEXIST     create: the node exists already
 *   -EAGAIN     compare-and-set lost: the node's version is not the one given
 *   -ENOTEMPTY  delete: the node has children
 *   -EMSGSIZE   get: the node's data is larger than the buffer
 *   -ETIMEDOUT  the connection was lost during the call: it may or may not
 *               have taken effect (the caller reads back)
 *   -ENOTCONN   the session has expired (or was closed): coord_reopen()
 *   -EINVAL     a bad path or argument
 *   -EIO        anything else the service reported (logged)
 */
#ifndef FERRY_COORD_H
#define FERRY_COORD_H

#include <stddef.h>
#include <stdint.h>

struct coord;

/* What the library reported, in the order it did. */
enum coord_event_kind {
    COORD_EV_CONNECTED = 1, /* the session is (again) connected */
    COORD_EV_CONNECTING,    /* the connection was lost; the library retries */
    COORD_EV_EXPIRED,       /* the session is gone, with its ephemeral nodes */
    COORD_EV_WATCH,         /* a watch fired: path says which node */
    COORD_EV_WAKE,          /* coord_wake(): the owner has other work */
};

#define COORD_PATH_MAX 1024

struct coord_event {
    enum coord_event_kind kind;
    char path[COORD_PATH_MAX]; /* COORD_EV_WATCH: the watched node */
};

/* A node's children (names, not paths). Free with coord_list_free. */
struct coord_list {
    char **names;
    uint32_t n;
};

/* Flags of coord_create. */
#define COORD_EPHEMERAL 1u /* removed when this session ends */

/* Start a session with the ensemble "host:port,host:port,..." asking for a
 * session timeout of session_ms. Returns at once (the connection is made by
 * the library's threads: COORD_EV_CONNECTED tells when); 0 or -errno. */
int coord_open(const char *hosts, uint32_t session_ms, struct coord **out);

/* End the session (its ephemeral nodes go at once) and free everything.
 * No event is queued after it returns. NULL is fine. */
void coord_close(struct coord *co);

/* After COORD_EV_EXPIRED: drop the dead session and start a new one (same
 * ensemble and timeout). Events of the old session still queued are
 * discarded. 0 or -errno. */
int coord_reopen(struct coord *co);

/* Take the next event, waiting up to timeout_ms (0: do not wait). Returns
 * 1 with *ev filled, 0 when none came in time. */
int coord_next_event(struct coord *co, uint32_t timeout_ms, struct coord_event *ev);

/* Queue a COORD_EV_WAKE (any thread): wakes the owner from
 * coord_next_event, e.g. when another thread left it work elsewhere. */
void coord_wake(struct coord *co);

/* Is the session connected now (per the last state the library reported)? */
int coord_is_connected(const struct coord *co);

/* The session timeout the ensemble granted, ms (the asked one before the
 * first connection). */
uint32_t coord_session_ms(const struct coord *co);

/* Create path holding data[0..len) (flags: COORD_EPHEMERAL or 0). */
int coord_create(struct coord *co, const char *path, const void *data, size_t len, unsigned flags);

/* Create every missing persistent node on the way to path, path included
 * (empty data); nodes that exist are left alone. */
int coord_create_all(struct coord *co, const char *path);

/* Read a node: its data into buf (cap bytes; *len its length, not
 * NUL-terminated) and its version into *version (either may be NULL).
 * With watch, a COORD_EV_WATCH for path is queued at the node's next
 * change or deletion (once: the caller reads again to re-arm it). */
int coord_get(struct coord *co, const char *path, int watch, void *buf, size_t cap, size_t *len,
              int32_t *version);

/* Does path exist? 0 (and *version) or -ENOENT. With watch, a
 * COORD_EV_WATCH at its creation, change or deletion (once). */
int coord_exists(struct coord *co, const char *path, int watch, int32_t *version);

/* Is path an ephemeral node of this very session? 1 yes, 0 no (another
 * session's, or persistent), or -errno (-ENOENT). After a create that
 * failed with -ETIMEDOUT, this tells whether it took effect. */
int coord_is_mine(struct coord *co, const char *path);

/* Compare-and-set: replace path's data if its version is still version
 * (-1: whatever it is). -EAGAIN when someone else changed it first. */
int coord_set(struct coord *co, const char *path, const void *data, size_t len, int32_t version);

/* Delete path if its version is still version (-1: any). */
int coord_delete(struct coord *co, const char *path, int32_t version);

/* The names of path's children, in no order. With watch, a COORD_EV_WATCH
 * for path when a child is added or removed (once). */
int coord_children(struct coord *co, const char *path, int watch, struct coord_list *out);
void coord_list_free(struct coord_list *l);

#endif

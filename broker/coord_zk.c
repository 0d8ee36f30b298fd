/*
 * coord_zk.c - coord.h on the ZooKeeper C library (libzookeeper_mt, built
 * with -DTHREADED: the synchronous API, the library's own IO and
 * completion threads). The only file that includes zookeeper.h.
 *
 * The library calls our watcher functions on its completion thread. They
 * only copy what happened into the session's mailbox (a bounded ring under
 * a mutex, with a condition variable the owner waits on); the owner takes
 * the events with coord_next_event() on its own thread.
 */
#include "coord.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zookeeper/zookeeper.h>

#define COORD_QUEUE 256u

struct coord {
    char *hosts;
    uint32_t session_ms;
    zhandle_t *zh; /* the owner's thread only (the library's calls take it as an argument) */
    /* mu guards everything below it: the mailbox ring and which handle is
     * current (the watcher runs on the library's thread). */
    pthread_mutex_t mu;
    pthread_cond_t cv;        /* signalled when an event is queued */
    const zhandle_t *current; /* the handle whose events are queued; others are dropped */
    struct coord_event *ring; /* [COORD_QUEUE] */
    uint32_t head, n;         /* events ring[head .. head + n) */
    int is_overflow;          /* events were dropped: the owner resyncs */
    int is_woken;             /* coord_wake() since the last COORD_EV_WAKE */
    atomic_int is_connected;  /* atomic: the watcher writes, the owner reads */
    atomic_uint granted_ms;   /* atomic: the watcher writes, the owner reads */
};

static int zerr(int rc)
{
    switch (rc) {
    case ZOK:
        return 0;
    case ZNONODE:
        return -ENOENT;
    case ZNODEEXISTS:
        return -EEXIST;
    case ZBADVERSION:
        return -EAGAIN;
    case ZNOTEMPTY:
        return -ENOTEMPTY;
    case ZCONNECTIONLOSS:
    case ZOPERATIONTIMEOUT:
        return -ETIMEDOUT;
    case ZSESSIONEXPIRED:
    case ZINVALIDSTATE:
    case ZCLOSING:
        return -ENOTCONN;
    case ZBADARGUMENTS:
        return -EINVAL;
    default:
        log_warn("zookeeper: %s", zerror(rc));
        return -EIO;
    }
}

/* On the library's thread. */
static void push(struct coord *co, const zhandle_t *zh, enum coord_event_kind kind,
                 const char *path)
{
    pthread_mutex_lock(&co->mu);
    if (zh != co->current) {
        pthread_mutex_unlock(&co->mu); /* a closed session's last words */
        return;
    }
    if (co->n == COORD_QUEUE) {
        co->is_overflow = 1;
    } else {
        struct coord_event *e = &co->ring[(co->head + co->n) % COORD_QUEUE];
        e->kind = kind;
        snprintf(e->path, sizeof(e->path), "%s", path ? path : "");
        co->n++;
    }
    pthread_cond_signal(&co->cv);
    pthread_mutex_unlock(&co->mu);
}

/* The session's watcher and every node watch: on the library's thread. */
static void on_zk_event(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
    struct coord *co = ctx;
    if (type == ZOO_SESSION_EVENT) {
        if (state == ZOO_CONNECTED_STATE) {
            atomic_store(&co->is_connected, 1);
            atomic_store(&co->granted_ms, (unsigned)zoo_recv_timeout(zh));
            push(co, zh, COORD_EV_CONNECTED, NULL);
        } else if (state == ZOO_EXPIRED_SESSION_STATE || state == ZOO_AUTH_FAILED_STATE) {
            atomic_store(&co->is_connected, 0);
            push(co, zh, COORD_EV_EXPIRED, NULL);
        } else if (state == ZOO_CONNECTING_STATE) {
            atomic_store(&co->is_connected, 0);
            push(co, zh, COORD_EV_CONNECTING, NULL);
        }
        return;
    }
    if (type != ZOO_NOTWATCHING_EVENT) {
        push(co, zh, COORD_EV_WATCH, path);
    }
}

static int start_session(struct coord *co)
{
    /* The handle is not known before zookeeper_init returns, and the
     * library may report the connection before that: hold the mailbox
     * while it starts, so that push() sees the new handle. */
    pthread_mutex_lock(&co->mu);
    co->zh = zookeeper_init(co->hosts, on_zk_event, (int)co->session_ms, NULL, co, 0);
    co->current = co->zh;
    pthread_mutex_unlock(&co->mu);
    if (co->zh == NULL) {
        return errno ? -errno : -EINVAL;
    }
    return 0;
}

int coord_open(const char *hosts, uint32_t session_ms, struct coord **out)
{
    struct coord *co = calloc(1, sizeof(*co));
    if (co == NULL || (co->hosts = strdup(hosts)) == NULL ||
        (co->ring = calloc(COORD_QUEUE, sizeof(*co->ring))) == NULL) {
        if (co) {
            free(co->hosts);
        }
        free(co);
        return -ENOMEM;
    }
    co->session_ms = session_ms;
    atomic_init(&co->is_connected, 0);
    atomic_init(&co->granted_ms, session_ms);
    pthread_mutex_init(&co->mu, NULL);
    pthread_cond_init(&co->cv, NULL);
    /* The library's own log goes to stderr too, errors only. */
    zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);
    int rc = start_session(co);
    if (rc < 0) {
        coord_close(co);
        return rc;
    }
    *out = co;
    return 0;
}

static void end_session(struct coord *co)
{
    pthread_mutex_lock(&co->mu);
    co->current = NULL; /* nothing more from it */
    co->n = 0;
    co->is_overflow = 0;
    pthread_mutex_unlock(&co->mu);
    if (co->zh != NULL) {
        zookeeper_close(co->zh);
        co->zh = NULL;
    }
    atomic_store(&co->is_connected, 0);
}

void coord_close(struct coord *co)
{
    if (co == NULL) {
        return;
    }
    end_session(co);
    pthread_cond_destroy(&co->cv);
    pthread_mutex_destroy(&co->mu);
    free(co->ring);
    free(co->hosts);
    free(co);
}

int coord_reopen(struct coord *co)
{
    end_session(co);
    return start_session(co);
}

int coord_next_event(struct coord *co, uint32_t timeout_ms, struct coord_event *ev)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&co->mu);
    while (co->n == 0 && !co->is_overflow && !co->is_woken && timeout_ms > 0) {
        if (pthread_cond_timedwait(&co->cv, &co->mu, &until) == ETIMEDOUT) {
            break;
        }
    }
    int got = 0;
    if (co->n > 0) {
        *ev = co->ring[co->head];
        co->head = (co->head + 1) % COORD_QUEUE;
        co->n--;
        got = 1;
    } else if (co->is_overflow) {
        /* Events were lost: an empty watch path tells the owner to read
         * everything again (and re-arm its watches). */
        co->is_overflow = 0;
        ev->kind = COORD_EV_WATCH;
        ev->path[0] = '\0';
        got = 1;
    } else if (co->is_woken) {
        co->is_woken = 0;
        ev->kind = COORD_EV_WAKE;
        ev->path[0] = '\0';
        got = 1;
    }
    pthread_mutex_unlock(&co->mu);
    return got;
}

void coord_wake(struct coord *co)
{
    pthread_mutex_lock(&co->mu);
    co->is_woken = 1;
    pthread_cond_signal(&co->cv);
    pthread_mutex_unlock(&co->mu);
}

int coord_is_connected(const struct coord *co)
{
    return atomic_load(&((struct coord *)co)->is_connected);
}

uint32_t coord_session_ms(const struct coord *co)
{
    return atomic_load(&((struct coord *)co)->granted_ms);
}

int coord_create(struct coord *co, const char *path, const void *data, size_t len, unsigned flags)
{
    if (co->zh == NULL) {
        return -ENOTCONN;
    }
    if (len > 1024 * 1024) {
        return -EINVAL;
    }
    int mode = (flags & COORD_EPHEMERAL) ? ZOO_EPHEMERAL : ZOO_PERSISTENT;
    return zerr(
        zoo_create(co->zh, path, data, data ? (int)len : -1, &ZOO_OPEN_ACL_UNSAFE, mode, NULL, 0));
}

int coord_create_all(struct coord *co, const char *path)
{
    char buf[COORD_PATH_MAX];
    size_t n = strlen(path);
    if (n >= sizeof(buf) || path[0] != '/') {
        return -EINVAL;
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') {
            continue;
        }
        char c = buf[i];
        buf[i] = '\0';
        int rc = coord_create(co, buf, NULL, 0, 0);
        if (rc < 0 && rc != -EEXIST) {
            return rc;
        }
        buf[i] = c;
    }
    return 0;
}

int coord_get(struct coord *co, const char *path, int watch, void *buf, size_t cap, size_t *len,
              int32_t *version)
{
    if (co->zh == NULL) {
        return -ENOTCONN;
    }
    struct Stat st;
    int n = cap > INT32_MAX ? INT32_MAX : (int)cap;
    int rc =
        zerr(zoo_wget(co->zh, path, watch ? on_zk_event : NULL, watch ? co : NULL, buf, &n, &st));
    if (rc < 0) {
        return rc;
    }
    if (st.dataLength > (int32_t)cap) {
        return -EMSGSIZE;
    }
    if (len) {
        *len = n < 0 ? 0 : (size_t)n;
    }
    if (version) {
        *version = st.version;
    }
    return 0;
}

int coord_exists(struct coord *co, const char *path, int watch, int32_t *version)
{
    if (co->zh == NULL) {
        return -ENOTCONN;
    }
    struct Stat st;
    int rc = zerr(zoo_wexists(co->zh, path, watch ? on_zk_event : NULL, watch ? co : NULL, &st));
    if (rc == 0 && version) {
        *version = st.version;
    }
    return rc;
}

int coord_is_mine(struct coord *co, const char *path)
{
    if (co->zh == NULL) {
        return -ENOTCONN;
    }
    struct Stat st;
    int rc = zerr(zoo_exists(co->zh, path, 0, &st));
    if (rc < 0) {
        return rc;
    }
    const clientid_t *id = zoo_client_id(co->zh);
    return id != NULL && st.ephemeralOwner != 0 && st.ephemeralOwner == id->client_id;
}

int coord_set(struct coord *co, const char *path, const void *data, size_t len, int32_t version)
{
    if (co->zh == NULL) {
        return -ENOTCONN;
    }
    if (len > 1024 * 1024) {
        return -EINVAL;
    }
    return zerr(zoo_set(co->zh, path, data, (int)len, version));
}

int coord_delete(struct coord *co, const char *path, int32_t version)
{
    if (co->zh == NULL) {
        return -ENOTCONN;
    }
    return zerr(zoo_delete(co->zh, path, version));
}

int coord_children(struct coord *co, const char *path, int watch, struct coord_list *out)
{
    if (co->zh == NULL) {
        return -ENOTCONN;
    }
    struct String_vector sv = {0, NULL};
    int rc =
        zerr(zoo_wget_children(co->zh, path, watch ? on_zk_event : NULL, watch ? co : NULL, &sv));
    out->names = NULL;
    out->n = 0;
    if (rc < 0) {
        return rc;
    }
    if (sv.count > 0) {
        out->names = calloc((size_t)sv.count, sizeof(char *));
        if (out->names == NULL) {
            deallocate_String_vector(&sv);
            return -ENOMEM;
        }
        for (int32_t i = 0; i < sv.count; i++) {
            if ((out->names[i] = strdup(sv.data[i])) == NULL) {
                out->n = (uint32_t)i;
                coord_list_free(out);
                deallocate_String_vector(&sv);
                return -ENOMEM;
            }
        }
        out->n = (uint32_t)sv.count;
    }
    deallocate_String_vector(&sv);
    return 0;
}

void coord_list_free(struct coord_list *l)
{
    for (uint32_t i = 0; i < l->n; i++) {
        free(l->names[i]);
    }
    free(l->names);
    l->names = NULL;
    l->n = 0;
}

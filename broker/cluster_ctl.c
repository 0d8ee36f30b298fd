/*
 * cluster_ctl.c - the cluster thread: everything this broker says to and
 * hears from ZooKeeper (CLUSTER.md has the znode layout and the states).
 *
 * The thread waits on the session's mailbox (coord_next_event): session
 * states, fired watches (one-shot: reading a node again re-arms its
 * watch), and wake-ups from IO threads that wait for a placement. Each
 * turn it does what is due, in order: register (again), confirm the
 * session (the lease), the controller, the brokers, the placements, the
 * wanted topics and, on the controller, the pending placement requests.
 * A step that fails for a lost connection stays due and is retried.
 */
#include "cluster_int.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define RETRY_MS 200u /* a step that failed is retried this soon */

static void path_of(const struct cluster *cl, char *out, size_t cap, const char *sub,
                    const char *leaf)
{
    snprintf(out, cap, "%s/%s%s%s", cl->base, sub, leaf ? "/" : "", leaf ? leaf : "");
}

/* ---- the store's identity ----------------------------------------------- */

#define ID_FILE "cluster.id"

/* Read data_dir/cluster.id: 1 (fields filled), 0 when there is none, or
 * -errno. */
static int id_file_read(const struct cluster *cl, char *name, size_t name_cap, uint32_t *broker,
                        char *store_id, size_t id_cap)
{
    char path[600], buf[512];
    snprintf(path, sizeof(path), "%s/%s", cl->data_dir, ID_FILE);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT ? 0 : -errno;
    }
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return -EINVAL;
    }
    buf[n] = '\0';
    char nm[CLU_NAME_MAX], id[40];
    unsigned b;
    if (sscanf(buf, "ferry-cluster-store 1\ncluster %127s\nbroker %u\nstore %39s", nm, &b, id) !=
        3) {
        return -EINVAL;
    }
    snprintf(name, name_cap, "%s", nm);
    snprintf(store_id, id_cap, "%s", id);
    *broker = b;
    return 1;
}

static int id_file_write(const struct cluster *cl)
{
    char path[600], tmp[610], buf[512];
    snprintf(path, sizeof(path), "%s/%s", cl->data_dir, ID_FILE);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int n = snprintf(buf, sizeof(buf), "ferry-cluster-store 1\ncluster %s\nbroker %u\nstore %s\n",
                     cl->name, cl->self, cl->store_id);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return -errno;
    }
    int rc = write(fd, buf, (size_t)n) == n && fsync(fd) == 0 ? 0 : -EIO;
    close(fd);
    if (rc == 0 && rename(tmp, path) < 0) {
        rc = -errno;
    }
    if (rc == 0 && (fd = open(cl->data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
        fsync(fd);
        close(fd);
    }
    return rc;
}

/*
 * Is the store in data_dir this broker's? Its identity file against
 * /stores/<id> (which holds "STORE_ID ADDRESS"); a store new to both is
 * given an identity and recorded. 0, -EEXIST (err says whose it is), or
 * a ZooKeeper error.
 */
static int check_store(struct cluster *cl, char *err, size_t err_len)
{
    char name[CLU_NAME_MAX], file_id[40] = "", path[COORD_PATH_MAX], leaf[16], zdata[256];
    uint32_t file_broker = 0;
    int has_file = id_file_read(cl, name, sizeof(name), &file_broker, file_id, sizeof(file_id));
    if (has_file < 0) {
        snprintf(err, err_len, "%s/%s cannot be read: %s", cl->data_dir, ID_FILE,
                 strerror(-has_file));
        return -EEXIST;
    }
    if (has_file && (strcmp(name, cl->name) != 0 || file_broker != cl->self)) {
        snprintf(err, err_len,
                 "the store in %s belongs to broker %u of cluster %s, not broker %u of cluster "
                 "%s: refusing to start on it",
                 cl->data_dir, file_broker, name, cl->self, cl->name);
        return -EEXIST;
    }
    snprintf(leaf, sizeof(leaf), "%u", cl->self);
    path_of(cl, path, sizeof(path), "stores", leaf);
    for (int attempt = 0; attempt < 3; attempt++) {
        size_t len = 0;
        int32_t version;
        int rc = coord_get(cl->co, path, 0, zdata, sizeof(zdata) - 1, &len, &version);
        if (rc == 0) {
            zdata[len] = '\0';
            char zid[40] = "";
            sscanf(zdata, "%39s", zid);
            if (!has_file || strcmp(zid, file_id) != 0) {
                snprintf(err, err_len,
                         "broker %u's store is %s (ZooKeeper %s) but the store in %s is %s: "
                         "refusing to start on another store than the one its topics were "
                         "placed with (start it on its own data directory, or delete that znode "
                         "to start broker %u afresh, losing its topics' messages)",
                         cl->self, zid, path, cl->data_dir, has_file ? file_id : "new", cl->self);
                return -EEXIST;
            }
            snprintf(cl->store_id, sizeof(cl->store_id), "%s", file_id);
            int n = snprintf(zdata, sizeof(zdata), "%s %s", cl->store_id, cl->advertise);
            return coord_set(cl->co, path, zdata, (size_t)n, version); /* the address, updated */
        }
        if (rc != -ENOENT) {
            return rc;
        }
        if (!has_file) {
            uint8_t r[16];
            if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
                return -EIO;
            }
            for (int i = 0; i < 16; i++) {
                snprintf(file_id + 2 * i, 3, "%02x", r[i]);
            }
            snprintf(cl->store_id, sizeof(cl->store_id), "%s", file_id);
            if ((rc = id_file_write(cl)) < 0) {
                snprintf(err, err_len, "%s/%s cannot be written: %s", cl->data_dir, ID_FILE,
                         strerror(-rc));
                return -EEXIST;
            }
            has_file = 1;
        }
        snprintf(cl->store_id, sizeof(cl->store_id), "%s", file_id);
        int n = snprintf(zdata, sizeof(zdata), "%s %s", cl->store_id, cl->advertise);
        rc = coord_create(cl->co, path, zdata, (size_t)n, 0);
        if (rc == 0) {
            log_info("cluster %s: store %s recorded for broker %u", cl->name, cl->store_id,
                     cl->self);
            return 0;
        }
        if (rc != -EEXIST) {
            return rc;
        }
    }
    return -EAGAIN;
}

/* ---- registration ------------------------------------------------------- */

static void lease_renew(struct cluster *cl, uint64_t confirmed_at)
{
    atomic_store(&cl->lease_until, confirmed_at + (uint64_t)coord_session_ms(cl->co) * 2 / 3);
    cl->next_refresh = confirmed_at + coord_session_ms(cl->co) / 3;
}

/*
 * Register: the ephemeral /brokers/<id> = "ADDRESS\nSTORE_ID". -EBUSY when
 * this broker's previous incarnation (same store) still holds it (its
 * session has not expired yet: wait for the node to go); -EEXIST when
 * another store holds the id.
 */
static int register_broker(struct cluster *cl, char *err, size_t err_len)
{
    char path[COORD_PATH_MAX], leaf[16], data[256];
    snprintf(leaf, sizeof(leaf), "%u", cl->self);
    path_of(cl, path, sizeof(path), "brokers", leaf);
    int n = snprintf(data, sizeof(data), "%s\n%s", cl->advertise, cl->store_id);
    uint64_t t0 = clu__now_ms();
    int rc = coord_create(cl->co, path, data, (size_t)n, COORD_EPHEMERAL);
    if (rc == -EEXIST && coord_is_mine(cl->co, path) == 1) {
        rc = 0; /* made by a create whose answer was lost */
    }
    if (rc == 0) {
        cl->is_registered = 1;
        lease_renew(cl, t0);
        log_info("cluster %s: registered as broker %u at %s", cl->name, cl->self, cl->advertise);
        return 0;
    }
    if (rc != -EEXIST) {
        return rc;
    }
    char held[256];
    size_t len = 0;
    rc = coord_get(cl->co, path, 0, held, sizeof(held) - 1, &len, NULL);
    if (rc < 0) {
        return rc == -ENOENT ? -EAGAIN : rc;
    }
    held[len] = '\0';
    char *nl = strchr(held, '\n');
    if (nl != NULL && strcmp(nl + 1, cl->store_id) == 0) {
        return -EBUSY;
    }
    if (nl != NULL) {
        *nl = '\0';
    }
    snprintf(err, err_len, "broker id %u is registered by another live broker (at %s)", cl->self,
             held);
    return -EEXIST;
}

static int make_tree(struct cluster *cl)
{
    static const char *const dirs[] = {"brokers", "topics", "pending", "stores"};
    char path[COORD_PATH_MAX];
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        path_of(cl, path, sizeof(path), dirs[i], NULL);
        int rc = coord_create_all(cl->co, path);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

static int refresh_all(struct cluster *cl);

int clu__join(struct cluster *cl, uint32_t start_ms, char *err, size_t err_len)
{
    uint64_t deadline = clu__now_ms() + start_ms;
    struct coord_event ev;
    int rc = -ETIMEDOUT;
    err[0] = '\0';
    while (!coord_is_connected(cl->co)) {
        uint64_t now = clu__now_ms();
        if (now >= deadline) {
            snprintf(err, err_len, "ZooKeeper (%s) not reached in %u ms", cl->zk, start_ms);
            return -ETIMEDOUT;
        }
        coord_next_event(cl->co, (uint32_t)(deadline - now), &ev);
    }
    while (clu__now_ms() < deadline) {
        if ((rc = make_tree(cl)) == 0 && (rc = check_store(cl, err, err_len)) == 0) {
            rc = register_broker(cl, err, err_len);
        }
        if (rc == 0 || rc == -EEXIST) {
            break;
        }
        uint32_t wait = RETRY_MS; /* a step failed: retry soon */
        if (rc == -EBUSY) {
            char path[COORD_PATH_MAX], leaf[16];
            snprintf(leaf, sizeof(leaf), "%u", cl->self);
            path_of(cl, path, sizeof(path), "brokers", leaf);
            if (coord_exists(cl->co, path, 1, NULL) == 0) {
                log_info("cluster %s: broker %u's previous registration is still held (its "
                         "session has not expired yet); waiting for it to go",
                         cl->name, cl->self);
                uint64_t now = clu__now_ms();
                wait = now < deadline ? (uint32_t)(deadline - now) : 0; /* its deletion wakes us */
            } else {
                wait = 0; /* gone already */
            }
        }
        coord_next_event(cl->co, wait, &ev);
    }
    if (rc == 0) {
        cl->dirty_brokers = cl->dirty_controller = cl->dirty_topics = 1;
        refresh_all(cl);
        return 0;
    }
    if (err[0] == '\0') {
        snprintf(err, err_len, "cannot register broker %u in ZooKeeper (%s): %s", cl->self, cl->zk,
                 rc == -EBUSY ? "its previous registration is still held" : strerror(-rc));
    }
    return rc;
}

/* ---- the view ------------------------------------------------------------ */

static void placed_broadcast(struct cluster *cl)
{
    pthread_mutex_lock(&cl->req_mu);
    cl->placed_gen++;
    pthread_cond_broadcast(&cl->placed_cv);
    void (*fn)(void *) = cl->placed_fn;
    void *arg = cl->placed_arg;
    pthread_mutex_unlock(&cl->req_mu);
    if (fn != NULL) {
        fn(arg);
    }
}

/* "owner=N epoch=E" */
static int parse_placement(const char *data, size_t len, uint32_t *owner, uint64_t *epoch)
{
    char buf[128];
    if (len >= sizeof(buf)) {
        return -EINVAL;
    }
    memcpy(buf, data, len);
    buf[len] = '\0';
    unsigned o;
    unsigned long long e;
    if (sscanf(buf, "owner=%u epoch=%llu", &o, &e) != 2) {
        return -EINVAL;
    }
    *owner = o;
    *epoch = e;
    return 0;
}

static int refresh_topics(struct cluster *cl)
{
    char path[COORD_PATH_MAX];
    path_of(cl, path, sizeof(path), "topics", NULL);
    struct coord_list l;
    int rc = coord_children(cl->co, path, 1, &l);
    if (rc < 0) {
        return rc;
    }
    int added = 0;
    for (uint32_t i = 0; i < l.n && rc == 0; i++) {
        char name[1024], data[128];
        size_t nlen, dlen;
        uint32_t owner;
        uint64_t epoch;
        if (clu__dec(l.names[i], name, sizeof(name), &nlen) < 0) {
            continue;
        }
        pthread_rwlock_rdlock(&cl->view_lock);
        int known = clu__find(cl, name, nlen) != NULL;
        pthread_rwlock_unlock(&cl->view_lock);
        if (known) {
            continue;
        }
        path_of(cl, path, sizeof(path), "topics", l.names[i]);
        rc = coord_get(cl->co, path, 0, data, sizeof(data), &dlen, NULL);
        if (rc == -ENOENT) {
            rc = 0;
            continue;
        }
        if (rc == 0 && parse_placement(data, dlen, &owner, &epoch) == 0) {
            pthread_rwlock_wrlock(&cl->view_lock);
            rc = clu__insert(cl, name, nlen, owner, epoch);
            pthread_rwlock_unlock(&cl->view_lock);
            added = 1;
        }
    }
    coord_list_free(&l);
    if (added) {
        placed_broadcast(cl);
    }
    return rc;
}

static int cmp_bro(const void *a, const void *b)
{
    uint32_t x = ((const struct clu_bro *)a)->id, y = ((const struct clu_bro *)b)->id;
    return x < y ? -1 : x > y;
}

/* The brokers: every one with a store recorded (/stores), live if
 * registered (/brokers, watched), with its advertised address. */
static int refresh_brokers(struct cluster *cl)
{
    char path[COORD_PATH_MAX], data[256];
    struct coord_list live, known;
    path_of(cl, path, sizeof(path), "brokers", NULL);
    int rc = coord_children(cl->co, path, 1, &live);
    if (rc < 0) {
        return rc;
    }
    path_of(cl, path, sizeof(path), "stores", NULL);
    if ((rc = coord_children(cl->co, path, 0, &known)) < 0) {
        coord_list_free(&live);
        return rc;
    }
    struct clu_bro *v = calloc(known.n + live.n + 1, sizeof(*v));
    uint32_t n = 0;
    for (uint32_t i = 0; v != NULL && i < known.n + live.n && rc == 0; i++) {
        int is_live = i >= known.n;
        const char *leaf = is_live ? live.names[i - known.n] : known.names[i];
        uint32_t id = (uint32_t)strtoul(leaf, NULL, 10);
        struct clu_bro *b = NULL;
        for (uint32_t k = 0; k < n; k++) {
            b = v[k].id == id ? &v[k] : b;
        }
        if (b == NULL) {
            b = &v[n++];
            b->id = id;
        }
        size_t len = 0;
        path_of(cl, path, sizeof(path), is_live ? "brokers" : "stores", leaf);
        rc = coord_get(cl->co, path, 0, data, sizeof(data) - 1, &len, NULL);
        if (rc == -ENOENT) {
            rc = 0;
            continue;
        }
        data[rc == 0 ? len : 0] = '\0';
        if (is_live) {
            b->is_live = 1;
            data[strcspn(data, "\n")] = '\0'; /* "ADDRESS\nSTORE_ID" */
            snprintf(b->addr, sizeof(b->addr), "%.127s", data);
        } else {
            const char *sp = strchr(data, ' '); /* "STORE_ID ADDRESS" */
            snprintf(b->addr, sizeof(b->addr), "%.127s", sp ? sp + 1 : "");
        }
    }
    coord_list_free(&live);
    coord_list_free(&known);
    if (v == NULL) {
        return -ENOMEM;
    }
    if (rc < 0) {
        free(v);
        return rc;
    }
    qsort(v, n, sizeof(*v), cmp_bro);
    pthread_rwlock_wrlock(&cl->view_lock);
    free(cl->brokers);
    cl->brokers = v;
    cl->n_brokers = n;
    clu__recount(cl);
    pthread_rwlock_unlock(&cl->view_lock);
    placed_broadcast(cl); /* an owner came or went: waiters look again */
    return 0;
}

/* ---- the controller ------------------------------------------------------ */

/* Won the election: bump the controller epoch (compare-and-set). */
static int take_epoch(struct cluster *cl)
{
    char path[COORD_PATH_MAX], data[32];
    path_of(cl, path, sizeof(path), "controller_epoch", NULL);
    for (int attempt = 0; attempt < 16; attempt++) {
        size_t len = 0;
        int32_t version;
        int rc = coord_get(cl->co, path, 0, data, sizeof(data) - 1, &len, &version);
        if (rc == -ENOENT) {
            rc = coord_create(cl->co, path, "0", 1, 0);
            if (rc < 0 && rc != -EEXIST) {
                return rc;
            }
            continue;
        }
        if (rc < 0) {
            return rc;
        }
        data[len] = '\0';
        uint64_t epoch = strtoull(data, NULL, 10) + 1;
        int n = snprintf(data, sizeof(data), "%" PRIu64, epoch);
        rc = coord_set(cl->co, path, data, (size_t)n, version);
        if (rc == 0) {
            cl->my_epoch = epoch;
            return 0;
        }
        if (rc != -EAGAIN) {
            return rc;
        }
    }
    return -EAGAIN;
}

static int refresh_controller(struct cluster *cl)
{
    char path[COORD_PATH_MAX], data[64], epath[COORD_PATH_MAX];
    path_of(cl, path, sizeof(path), "controller", NULL);
    path_of(cl, epath, sizeof(epath), "controller_epoch", NULL);
    size_t len = 0;
    int rc = coord_get(cl->co, path, 1, data, sizeof(data) - 1, &len, NULL);
    if (rc == -ENOENT) {
        int n = snprintf(data, sizeof(data), "%u", cl->self);
        rc = coord_create(cl->co, path, data, (size_t)n, COORD_EPHEMERAL);
        if (rc == 0 && (rc = take_epoch(cl)) == 0) {
            cl->is_controller = 1;
            cl->dirty_pending = 1;
            log_info("cluster %s: broker %u is the controller (epoch %" PRIu64 ")", cl->name,
                     cl->self, cl->my_epoch);
        }
        if (rc < 0 && rc != -EEXIST) {
            return rc;
        }
        /* Read it back (and watch it), whoever won. */
        rc = coord_get(cl->co, path, 1, data, sizeof(data) - 1, &len, NULL);
    }
    if (rc < 0) {
        return rc == -ENOENT ? -EAGAIN : rc;
    }
    data[len] = '\0';
    uint32_t id = (uint32_t)strtoul(data, NULL, 10);
    if (id == cl->self && !cl->is_controller && coord_is_mine(cl->co, path) == 1) {
        /* We won, but an answer was lost on the way (a create or the
         * epoch's set): finish taking over. */
        if ((rc = take_epoch(cl)) < 0) {
            return rc;
        }
        cl->is_controller = 1;
        cl->dirty_pending = 1;
        log_info("cluster %s: broker %u is the controller (epoch %" PRIu64 ")", cl->name, cl->self,
                 cl->my_epoch);
    }
    if (id != cl->self && cl->is_controller) {
        log_warn("cluster %s: broker %u is no longer the controller", cl->name, cl->self);
        cl->is_controller = 0;
    }
    char ebuf[32];
    size_t elen = 0;
    uint64_t epoch = 0;
    if (coord_get(cl->co, epath, 0, ebuf, sizeof(ebuf) - 1, &elen, NULL) == 0) {
        ebuf[elen] = '\0';
        epoch = strtoull(ebuf, NULL, 10);
    }
    pthread_rwlock_wrlock(&cl->view_lock);
    cl->controller_id = id;
    cl->controller_epoch = epoch;
    pthread_rwlock_unlock(&cl->view_lock);
    return 0;
}

/* The controller places topic (decoded name, enc its znode name) on the
 * live broker with the fewest topics (the lowest id among equals). */
static int place(struct cluster *cl, const char *topic, size_t len, const char *enc)
{
    char path[COORD_PATH_MAX], data[64];
    uint32_t owner = 0, best = UINT32_MAX;
    pthread_rwlock_rdlock(&cl->view_lock);
    int known = clu__find(cl, topic, len) != NULL;
    for (uint32_t i = 0; i < cl->n_brokers; i++) {
        if (cl->brokers[i].is_live && cl->brokers[i].n_topics < best) {
            best = cl->brokers[i].n_topics;
            owner = cl->brokers[i].id;
        }
    }
    pthread_rwlock_unlock(&cl->view_lock);
    if (known) {
        return 0;
    }
    if (owner == 0) {
        return -EAGAIN; /* no live broker known yet */
    }
    int n = snprintf(data, sizeof(data), "owner=%u epoch=%" PRIu64, owner, cl->my_epoch);
    path_of(cl, path, sizeof(path), "topics", enc);
    int rc = coord_create(cl->co, path, data, (size_t)n, 0);
    if (rc == 0) {
        log_info("cluster %s: topic %.*s placed on broker %u", cl->name, (int)len, topic, owner);
        pthread_rwlock_wrlock(&cl->view_lock);
        rc = clu__insert(cl, topic, len, owner, cl->my_epoch);
        pthread_rwlock_unlock(&cl->view_lock);
        placed_broadcast(cl);
        return rc;
    }
    if (rc == -EEXIST) {
        cl->dirty_topics = 1; /* placed meanwhile: read it */
        return 0;
    }
    return rc;
}

/* The controller: the placement requests of the other brokers. */
static int serve_pending(struct cluster *cl)
{
    char path[COORD_PATH_MAX];
    path_of(cl, path, sizeof(path), "pending", NULL);
    struct coord_list l;
    int rc = coord_children(cl->co, path, 1, &l);
    for (uint32_t i = 0; rc == 0 && i < l.n; i++) {
        char name[1024];
        size_t nlen;
        if (clu__dec(l.names[i], name, sizeof(name), &nlen) == 0 &&
            (rc = place(cl, name, nlen, l.names[i])) < 0) {
            break;
        }
        path_of(cl, path, sizeof(path), "pending", l.names[i]);
        rc = coord_delete(cl->co, path, -1);
        rc = rc == -ENOENT ? 0 : rc;
    }
    coord_list_free(&l);
    return rc;
}

/* What IO threads wait for: placed by us (the controller) or asked for
 * under /pending. */
static int serve_wanted(struct cluster *cl)
{
    char *w[CLU_WANTED_MAX];
    pthread_mutex_lock(&cl->req_mu);
    uint32_t n = cl->n_wanted;
    memcpy(w, cl->wanted, n * sizeof(w[0]));
    cl->n_wanted = 0;
    pthread_mutex_unlock(&cl->req_mu);
    int rc = 0;
    uint32_t i;
    for (i = 0; i < n; i++) {
        char enc[CLU_ENC_MAX], path[COORD_PATH_MAX];
        size_t len = strlen(w[i]);
        if (clu__enc(w[i], len, enc, sizeof(enc)) < 0) {
            free(w[i]);
            continue;
        }
        if (cl->is_controller) {
            rc = place(cl, w[i], len, enc);
        } else {
            path_of(cl, path, sizeof(path), "pending", enc);
            rc = coord_create(cl->co, path, NULL, 0, 0);
            rc = rc == -EEXIST ? 0 : rc;
        }
        if (rc < 0) {
            break;
        }
        free(w[i]);
    }
    if (i < n) { /* put the rest back for the next turn */
        pthread_mutex_lock(&cl->req_mu);
        for (; i < n; i++) {
            if (cl->n_wanted < CLU_WANTED_MAX) {
                cl->wanted[cl->n_wanted++] = w[i];
            } else {
                free(w[i]);
            }
        }
        pthread_mutex_unlock(&cl->req_mu);
    }
    return rc;
}

static int refresh_all(struct cluster *cl)
{
    int rc = 0;
    if (cl->dirty_brokers && (rc = refresh_brokers(cl)) == 0) {
        cl->dirty_brokers = 0;
    }
    if (rc == 0 && cl->dirty_controller && (rc = refresh_controller(cl)) == 0) {
        cl->dirty_controller = 0;
    }
    if (rc == 0 && cl->dirty_topics && (rc = refresh_topics(cl)) == 0) {
        cl->dirty_topics = 0;
    }
    if (rc == 0 && cl->is_controller && cl->dirty_pending && (rc = serve_pending(cl)) == 0) {
        cl->dirty_pending = 0;
    }
    if (rc == 0) {
        rc = serve_wanted(cl);
    }
    return rc;
}

/* ---- the thread ---------------------------------------------------------- */

static void fence(struct cluster *cl, const char *why)
{
    if (atomic_exchange(&cl->lease_until, 0) != 0 || cl->is_registered) {
        log_error("cluster %s: %s: broker %u stops serving its topics until it has registered "
                  "again",
                  cl->name, why, cl->self);
    }
    cl->is_registered = 0;
    cl->is_controller = 0;
}

static void on_event(struct cluster *cl, const struct coord_event *ev)
{
    char p[COORD_PATH_MAX];
    switch (ev->kind) {
    case COORD_EV_CONNECTED:
        log_info("cluster %s: connected to ZooKeeper", cl->name);
        cl->dirty_brokers = cl->dirty_controller = cl->dirty_topics = cl->dirty_pending = 1;
        cl->next_refresh = 0;
        break;
    case COORD_EV_CONNECTING:
        log_warn("cluster %s: lost the connection to ZooKeeper; serving owned topics at most "
                 "until the session's lease ends, reconnecting",
                 cl->name);
        break;
    case COORD_EV_EXPIRED:
        fence(cl, "the ZooKeeper session expired");
        if (coord_reopen(cl->co) < 0) {
            log_error("cluster %s: cannot start a new ZooKeeper session", cl->name);
        }
        break;
    case COORD_EV_WATCH:
        if (ev->path[0] == '\0') {
            cl->dirty_brokers = cl->dirty_controller = cl->dirty_topics = cl->dirty_pending = 1;
            break;
        }
        path_of(cl, p, sizeof(p), "brokers", NULL);
        cl->dirty_brokers |= strcmp(ev->path, p) == 0;
        path_of(cl, p, sizeof(p), "controller", NULL);
        cl->dirty_controller |= strcmp(ev->path, p) == 0;
        path_of(cl, p, sizeof(p), "topics", NULL);
        cl->dirty_topics |= strcmp(ev->path, p) == 0;
        path_of(cl, p, sizeof(p), "pending", NULL);
        cl->dirty_pending |= strcmp(ev->path, p) == 0;
        break;
    case COORD_EV_WAKE:
        break;
    }
}

/* Confirm the session (and that the registration is still there): the
 * lease. */
static void confirm(struct cluster *cl)
{
    char path[COORD_PATH_MAX], leaf[16], err[512];
    uint64_t t0 = clu__now_ms();
    if (!cl->is_registered) {
        int rc = make_tree(cl);
        if (rc == 0 && (rc = check_store(cl, err, sizeof(err))) == -EEXIST) {
            log_error("cluster %s: %s", cl->name, err);
        }
        if (rc == 0 && (rc = register_broker(cl, err, sizeof(err))) == -EEXIST) {
            log_error("cluster %s: %s", cl->name, err);
        }
        if (rc == 0) {
            cl->dirty_brokers = cl->dirty_controller = cl->dirty_topics = 1;
        } else {
            cl->next_refresh = t0 + RETRY_MS;
        }
        return;
    }
    snprintf(leaf, sizeof(leaf), "%u", cl->self);
    path_of(cl, path, sizeof(path), "brokers", leaf);
    int rc = coord_exists(cl->co, path, 0, NULL);
    if (rc == 0) {
        lease_renew(cl, t0);
    } else if (rc == -ENOENT) {
        fence(cl, "its registration is gone from ZooKeeper");
        cl->next_refresh = 0;
    } else {
        cl->next_refresh = t0 + RETRY_MS;
    }
}

void *clu__thread(void *arg)
{
    struct cluster *cl = arg;
    log_thread_name_set("cluster");
    while (!atomic_load(&cl->is_stopping)) {
        uint64_t now = clu__now_ms();
        if (coord_is_connected(cl->co) && now >= cl->next_refresh) {
            confirm(cl);
        }
        int rc = 0;
        if (cl->is_registered && coord_is_connected(cl->co)) {
            rc = refresh_all(cl);
        }
        now = clu__now_ms();
        uint32_t wait = cl->next_refresh > now ? (uint32_t)(cl->next_refresh - now) : 0;
        if (rc < 0 && wait > RETRY_MS) {
            wait = RETRY_MS;
        }
        if (!coord_is_connected(cl->co) && wait < RETRY_MS) {
            wait = RETRY_MS; /* the library reconnects; its event wakes us */
        }
        struct coord_event ev;
        if (coord_next_event(cl->co, wait, &ev)) {
            on_event(cl, &ev);
            while (coord_next_event(cl->co, 0, &ev)) {
                on_event(cl, &ev);
            }
        }
    }
    return NULL;
}

/*
 * main.c - ferryd: start-up and shutdown order, signals.
 *
 * Start: config, log level, file descriptor limit, data directory, workers,
 * IO threads, then the listener (printing the ready line, then telling
 * systemd: service.h). The main thread then only waits for signals (blocked
 * in every thread, taken here; meanwhile it feeds systemd's watchdog).
 *
 * The store is opened before any thread starts (nothing is replayed: LMDB is
 * the index, so start-up time does not grow with the stored messages). A
 * foreign or corrupt data directory is refused with exit status 1.
 *
 * Stop (SIGTERM/SIGINT), each step bounded by shutdown_ms:
 *   1. close the listener;
 *   2. PHASE_DRAIN: IO threads stop reading and hand queued publications to
 *      the workers and the store writer;
 *   3. stop the writer (it commits what is queued and posts its PubAcks and
 *      deliveries), then the workers (they finish what is queued);
 *   4. PHASE_CLOSE: IO threads send what is queued (acks included), Error
 *      SHUTTING_DOWN, flush, close;
 *   5. close the store; exit 0.
 *
 * `ferryd --verify DIR` checks a store offline and exits 0 (clean) or 1;
 * `ferryd --inspect DIR ...` prints what it holds (inspect.h). `ferryd
 * --backup-child DIR` is ferryd's own: the process a hot backup copies the
 * store with (backup.h), not for users.
 */
#include "acceptor.h"
#include "backup.h"
#include "cluster.h"
#include "config.h"
#include "consumer.h"
#include "inspect.h"
#include "io_thread.h"
#include "log.h"
#include "metrics.h"
#include "mqtt_clients.h"
#include "mqtt_retain.h"
#include "qgroup.h"
#include "reactor.h"
#include "server.h"
#include "service.h"
#include "store.h"
#include "worker.h"
#include "writer.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef FERRY_VERSION
#define FERRY_VERSION "0.0.0"
#endif

static int mkdir_p(const char *path)
{
    char buf[512];
    size_t n = strlen(path);
    if (n >= sizeof(buf)) {
        return -ENAMETOOLONG;
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0755) < 0 && errno != EEXIST) {
                return -errno;
            }
            buf[i] = c;
        }
    }
    return 0;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
            log_warn("cannot raise the open file limit: %s", strerror(errno));
        }
    }
}

/* Loose modes that still load (a world-writable file is refused by
 * auth_table_load itself, at start and on SIGHUP alike). */
static void warn_auth_mode(struct server *s, const struct auth_table *t)
{
    const char *why = auth_table_mode_warning(t);
    if (why) {
        log_warn("auth file %s is %s (mode %03o); chmod 600 it", s->cfg.auth_file, why,
                 (unsigned)(t->file_mode & 0777));
    }
}

/* Re-read the auth file and swap the new table in; every IO thread moves
 * its connections to it (and drops subscriptions no longer allowed). A bad
 * file keeps the current table. */
static void reload_auth(struct server *s)
{
    if (s->cfg.auth_file[0] == '\0') {
        return;
    }
    struct auth_table *t;
    char err[512];
    if (auth_table_load(s->cfg.auth_file, &t, err, sizeof(err)) < 0) {
        log_error("SIGHUP: %s; keeping the current users and rights", err);
        return;
    }
    warn_auth_mode(s, t);
    auth_holder_set(&s->auth, t);
    for (uint32_t i = 0; i < s->n_iot; i++) {
        mbox_wake(s->iot_in[i]);
    }
    log_info("SIGHUP: reloaded %s (users, tokens and rights)", s->cfg.auth_file);
}

/* Is host a loopback address (then anonymous access is expected)? */
static int is_loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "localhost") == 0;
}

static void reload_tls(struct server *s);

static void reload(struct server *s)
{
    reload_auth(s);
    reload_tls(s);
    if (s->cfg.config_file[0] == '\0') {
        log_info("SIGHUP: no config file to reload");
        return;
    }
    struct cfg c;
    char err[256];
    cfg_defaults(&c);
    c.log_level = s->cfg.log_level;
    c.log_format = s->cfg.log_format;
    if (cfg_load_file(&c, s->cfg.config_file, err, sizeof(err)) < 0) {
        log_error("SIGHUP: %s; keeping the current settings", err);
        return;
    }
    log_level_set((enum log_level)c.log_level);
    log_info("SIGHUP: reloaded %s (log level)", s->cfg.config_file);
    if (c.log_format != s->cfg.log_format) {
        log_warn("SIGHUP: log_format %s in %s is read at start only: the log stays %s until "
                 "ferryd restarts",
                 c.log_format == LOG_FORMAT_JSON ? "json" : "text", s->cfg.config_file,
                 s->cfg.log_format == LOG_FORMAT_JSON ? "json" : "text");
    }
}

static int wait_drained(struct server *s, uint64_t deadline)
{
    for (;;) {
        uint32_t done = 0;
        for (uint32_t i = 0; i < s->n_iot; i++) {
            done += iot_is_drained(s->iots[i]) ? 1u : 0u;
        }
        if (done == s->n_iot) {
            return 0;
        }
        if (now_ms() >= deadline) {
            return -ETIMEDOUT;
        }
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static void set_phase(struct server *s, int phase)
{
    atomic_store(&s->phase, phase);
    for (uint32_t i = 0; i < s->n_iot; i++) {
        mbox_wake(s->iot_in[i]);
    }
}

static int verify(const char *dir)
{
    struct store_verify_result res;
    memset(&res, 0, sizeof(res));
    /* The consumers table is checked with consumer.c's own record rules. */
    int rc = store_verify_ex(dir, stdout, cons_rec_check, NULL, &res);
    fflush(stdout);
    if (rc == 0) {
        return 0;
    }
    if (rc != FERRY_ESTORAGE) {
        fprintf(stderr, "ferryd: --verify %s: %s\n", dir, server_strerror(rc));
    }
    return 1;
}

static const char *sync_name(const struct cfg *c)
{
    static char buf[48];
    if (c->sync_mode == STORE_SYNC_INTERVAL) {
        snprintf(buf, sizeof(buf), "interval %u ms", c->sync_interval_ms);
        return buf;
    }
    return c->sync_mode == STORE_SYNC_ALWAYS ? "always" : "none";
}

/* consumer.h: a durable became dirty; the writer saves it. */
static void wake_writer(void *ctx)
{
    struct server *s = ctx;
    mbox_wake(s->writer_in);
}

static int open_store(struct server *s)
{
    struct store_options o;
    store_options_init(&o);
    o.sync_mode = (enum store_sync_mode)s->cfg.sync_mode;
    o.map_size_max = (size_t)s->cfg.max_store_size;
    o.map_size_initial = (size_t)s->cfg.initial_store_size;
    if (o.map_size_initial > o.map_size_max) {
        o.map_size_initial = o.map_size_max;
    }
    /* Catch-up readers on every IO thread and worker, plus admin reads. */
    unsigned readers = 2 * (s->n_iot + s->n_workers) + 16;
    if (readers > o.max_readers) {
        o.max_readers = readers;
    }
    char err[512] = "";
    uint64_t t0 = now_ms();
    int rc = store_open(s->cfg.data_dir, &o, &s->store, err, sizeof(err));
    if (rc < 0) {
        log_error("cannot open the store in %s: %s", s->cfg.data_dir,
                  err[0] ? err : server_strerror(rc));
        if (rc == -EBUSY) {
            log_error("another ferryd uses %s", s->cfg.data_dir);
        }
        return rc;
    }
    if (s->cfg.max_topic_len > STORE_TOPIC_MAX) {
        log_warn("max_topic_len %u: topics longer than %d bytes cannot be stored; publishes to "
                 "them are refused unless they match an `ephemeral` pattern",
                 s->cfg.max_topic_len, STORE_TOPIC_MAX);
    }
    struct store_stats st;
    store_stats(s->store, &st);
    char replayed[64] = "";
    if (st.n_replayed > 0) {
        snprintf(replayed, sizeof(replayed), " (replayed %llu log records)",
                 (unsigned long long)st.n_replayed);
    }
    log_info("store %s: %llu topics, map %zu of at most %zu bytes, sync %s, opened in %llu ms%s%s",
             s->cfg.data_dir, (unsigned long long)st.n_topics, st.map_size, st.map_size_max,
             sync_name(&s->cfg), (unsigned long long)(now_ms() - t0), replayed,
             st.n_stale_readers ? " (cleared stale reader slots)" : "");
    return 0;
}

/*
 * LMDB copies every dirty page of a transaction into malloc'd memory and
 * frees it at the commit (a 16 KiB message: one 20 KiB block). With glibc's
 * defaults the writer's arena gives that memory back to the kernel after
 * every commit once a large block has gone through it, and takes it again,
 * page fault by page fault, in the next one: after a run of small messages,
 * 16 KiB stored publishing fell from 213 to 85 MB/s, with the writer's time
 * in page faults, madvise and sysmalloc. Keeping up to TRIM_KEEP of free
 * memory per arena, and serving blocks below MMAP_FROM from the heap (a
 * frame is at most 1 MiB by default), holds it at 230+ MB/s either way.
 */
#define MALLOC_TRIM_KEEP (32u << 20)
#define MALLOC_MMAP_FROM (4u << 20)

static void tune_malloc(void)
{
    if (mallopt(M_TRIM_THRESHOLD, (int)MALLOC_TRIM_KEEP) != 1 ||
        mallopt(M_MMAP_THRESHOLD, (int)MALLOC_MMAP_FROM) != 1) {
        log_warn("mallopt failed: the allocator keeps its defaults");
    }
}

static const char *reactor_name(int mode)
{
    return mode == REACTOR_SINGLE        ? "single"
           : mode == REACTOR_SINGLE_POOL ? "single-pool"
                                         : "multi";
}

/* The reactors' backend: io_uring if asked for and the kernel allows it
 * (a set is opened to find out), else epoll, with a log line saying why. */
static void choose_io_backend(struct cfg *cfg)
{
    if (cfg->io_backend != RX_URING) {
        return;
    }
    struct rx *r;
    int rc = rx_open(&r, RX_URING);
    if (rc < 0) {
        log_warn("io_backend uring: %s; using epoll",
                 rc == -ENOSYS
                     ? "io_uring is not available (not built in, or refused by the kernel)"
                     : strerror(-rc));
        cfg->io_backend = RX_EPOLL;
        return;
    }
    rx_close(r);
}

/* The auth file, if any: load it, start the password-check threads, and
 * warn about loose file modes or an open listener. -1 (logged) if it
 * cannot be used. */
static int setup_auth(struct server *s, long ncpu)
{
    char err[600];
    auth_holder_init(&s->auth);
    if (s->cfg.auth_file[0] != '\0') {
        struct auth_table *at;
        if (auth_table_load(s->cfg.auth_file, &at, err, sizeof(err)) < 0) {
            log_error("auth file: %s", err);
            return -1;
        }
        auth_holder_set(&s->auth, at);
        if ((s->qgroups = qgroup_reg_create()) == NULL) {
            log_error("out of memory");
            return -1;
        }
        uint32_t n_auth = ncpu > 4 ? 4 : (uint32_t)ncpu;
        if ((s->auth_pool = auth_pool_create(n_auth, 256, iot_auth_done, s)) == NULL) {
            log_error("cannot start the auth threads: %s", strerror(errno));
            return -1;
        }
        log_info("auth file %s: %u users, %u tokens; everything not allowed is denied",
                 s->cfg.auth_file, at->n_users, at->n_tokens);
        warn_auth_mode(s, at);
    } else if (!is_loopback(s->cfg.listen_host)) {
        log_warn("no auth file: anyone who can reach %s may publish, subscribe and administer "
                 "(set auth_file / --auth-file)",
                 s->cfg.listen_host);
    }
    return 0;
}

/* TLS: check the tls_* settings and load the certificate. -1 (logged) if
 * they cannot be used: a TLS listener without certificate, tls_* keys in a
 * build without OpenSSL, no listener at all. */
static int setup_tls(struct server *s)
{
    const struct cfg *c = &s->cfg;
    char err[800];
    int has_keys = c->tls_cert[0] || c->tls_key[0] || c->tls_ca[0] || c->tls_client_cert ||
                   c->tls_identity || c->tls_listen_port >= 0 || c->mqtt_tls_listen_port >= 0;
    if (c->listen_port < 0 && c->tls_listen_port < 0 && c->mqtt_listen_port < 0 &&
        c->mqtt_tls_listen_port < 0) {
        log_error("listen off and no other listener: nothing to listen on");
        return -1;
    }
    if (!has_keys) {
        return 0;
    }
    if (!tls_available()) {
        log_error("tls_* settings given, but this ferryd was built without OpenSSL "
                  "(install libssl-dev and rebuild): no TLS");
        return -1;
    }
    if (c->tls_listen_port < 0 && c->mqtt_tls_listen_port < 0) {
        log_warn("tls_cert/tls_key given but no tls_listen: TLS is not used");
        return 0;
    }
    if (tls_holder_open(&s->tls, c, err, sizeof(err)) < 0) {
        log_error("TLS: %s", err);
        tls_holder_close(&s->tls);
        return -1;
    }
    s->has_tls = 1;
    if (c->tls_identity != TLS_ID_OFF && c->tls_client_cert == TLS_CLIENT_OFF) {
        log_warn("tls_identity is set but tls_client_cert is off: no certificate is asked for");
    }
    log_info("TLS: certificate %s%s%s, client certificates %s, identity %s", c->tls_cert,
             c->tls_ca[0] ? ", client CA " : "", c->tls_ca,
             c->tls_client_cert == TLS_CLIENT_REQUIRED   ? "required"
             : c->tls_client_cert == TLS_CLIENT_OPTIONAL ? "optional"
                                                         : "off",
             c->tls_identity == TLS_ID_CN          ? "subject CN"
             : c->tls_identity == TLS_ID_SAN_EMAIL ? "SAN email"
                                                   : "off");
    return 0;
}

/* SIGHUP: the certificate, key and CA files again; a failure keeps the
 * current ones. */
static void reload_tls(struct server *s)
{
    if (!s->has_tls) {
        return;
    }
    char err[800];
    if (tls_holder_reload(&s->tls, &s->cfg, err, sizeof(err)) < 0) {
        log_error("SIGHUP: TLS: %s; keeping the current certificate", err);
        return;
    }
    log_info("SIGHUP: reloaded the TLS certificate %s (new connections use it)", s->cfg.tls_cert);
}

/* Create the workers and IO threads, start them, the writer, and open the
 * listener (started later, in main, once everything else runs). Logs what
 * failed; -1 then. */
static int start_threads(struct server *s, struct acc_ports *ports)
{
    int rc;
    for (uint32_t i = 0; i < s->n_workers; i++) {
        if ((s->workers[i] = worker_create(s, i)) == NULL) {
            log_error("cannot create worker %u", i);
            return -1;
        }
    }
    for (uint32_t i = 0; i < s->n_iot; i++) {
        if ((s->iots[i] = iot_create(s, i)) == NULL) {
            log_error("cannot create IO thread %u", i);
            return -1;
        }
    }
    for (uint32_t i = 0; i < s->n_workers && s->cfg.reactor_mode != REACTOR_SINGLE; i++) {
        if ((rc = worker_start(s->workers[i])) < 0) {
            log_error("cannot start worker %u: %s", i, strerror(-rc));
            return -1;
        }
    }
    if ((rc = writer_start(s->writer)) < 0) {
        log_error("cannot start the store writer: %s", strerror(-rc));
        return -1;
    }
    /* The listener exists before the IO threads start: with --reactor
     * single-pool or single, IO thread 0 watches it itself. */
    if ((rc = acc_open(s, &s->acc, ports)) < 0) {
        return -1;
    }
    if (s->cfg.reactor_mode != REACTOR_MULTI) {
        struct worker *inline_worker = s->cfg.reactor_mode == REACTOR_SINGLE ? s->workers[0] : NULL;
        if (iot_embed(s->iots[0], s->acc, inline_worker) < 0) {
            log_error("cannot run the acceptor%s in the IO thread",
                      inline_worker ? " and the router" : "");
            return -1;
        }
    }
    for (uint32_t i = 0; i < s->n_iot; i++) {
        if ((rc = iot_start(s->iots[i])) < 0) {
            log_error("cannot start IO thread %u: %s", i, strerror(-rc));
            return -1;
        }
    }
    return 0;
}

/* The cluster's placed hook: IO threads holding frames for a placement
 * look again (conn_hold.c). */
static void wake_iots(void *arg)
{
    server_wake_iots(arg);
}

/* Cluster mode (cluster.h): join before serving anything. The store must
 * be this broker's (else exit 1); clients are told to reach us at
 * `advertise`. */
static int setup_cluster(struct server *s)
{
    const struct cfg *c = &s->cfg;
    char advertise[200], err[1024];
    if (c->cluster_name[0] == '\0') {
        if (c->zookeeper[0] || c->broker_id || c->advertise[0]) {
            log_error("zookeeper, broker_id and advertise need `cluster NAME`");
            return -1;
        }
        return 0;
    }
    if (c->zookeeper[0] == '\0' || c->broker_id == 0) {
        log_error("cluster %s needs `zookeeper HOST:PORT,...` and `broker_id N`", c->cluster_name);
        return -1;
    }
    if (c->advertise[0]) {
        snprintf(advertise, sizeof(advertise), "%s", c->advertise);
    } else if (c->listen_port > 0 && strcmp(c->listen_host, "0.0.0.0") != 0 &&
               c->listen_host[0] != '\0') {
        snprintf(advertise, sizeof(advertise), "%.64s:%d", c->listen_host, c->listen_port);
    } else {
        log_error("cluster %s needs `advertise HOST:PORT` (where clients reach this broker) when "
                  "listening on %s:%d",
                  c->cluster_name, c->listen_host, c->listen_port);
        return -1;
    }
    struct clu_config cc = {.name = c->cluster_name,
                            .zookeeper = c->zookeeper,
                            .broker_id = c->broker_id,
                            .advertise = advertise,
                            .data_dir = c->data_dir,
                            .session_ms = c->zookeeper_session_ms,
                            .start_ms = 30000 + 2 * c->zookeeper_session_ms};
    int rc = clu_start(&cc, &s->cluster, err, sizeof(err));
    if (rc < 0) {
        log_error("cluster %s: %s", c->cluster_name, err);
        return -1;
    }
    log_info("cluster %s: broker %u joined (ZooKeeper %s), clients reach it at %s", c->cluster_name,
             c->broker_id, c->zookeeper, advertise);
    return 0;
}

/* The graceful stop, in order: stop accepting, drain the IO threads' input,
 * let the writer commit and ack what is queued, stop routing, say goodbye
 * to the clients, then free everything. */
static void stop_all(struct server *s, struct cons_reaper *reaper)
{
    int rc;
    uint64_t deadline = now_ms() + s->cfg.shutdown_ms;
    if (s->cluster != NULL) {
        clu_set_placed_hook(s->cluster, NULL, NULL);
    }
    acc_stop(s->acc);
    backup_stop(s->backup);   /* its client is told while the IO threads run */
    cons_reaper_stop(reaper); /* before the last flush of the registry */
    set_phase(s, PHASE_DRAIN);
    if (wait_drained(s, deadline) < 0) {
        log_warn("shutdown: IO threads did not drain in time; queued publications may be lost");
    }
    writer_stop(s->writer); /* commits and acks what is queued */
    for (uint32_t i = 0; i < s->n_workers; i++) {
        worker_stop(s->workers[i]);
    }
    set_phase(s, PHASE_CLOSE);
    for (uint32_t i = 0; i < s->n_iot; i++) {
        iot_join(s->iots[i]);
    }
    metrics_stop(s->metrics); /* it reads the threads' counters and the store */
    s->metrics = NULL;
    clu_stop(s->cluster); /* after the IO threads and metrics, which ask it; leaves the cluster */
    s->cluster = NULL;
    /* The auth threads may be waiting to post to an IO thread's mailbox:
     * closing those releases them, and their answers are dropped. */
    for (uint32_t i = 0; i < s->n_iot; i++) {
        mbox_close(s->iot_in[i]);
    }
    auth_pool_destroy(s->auth_pool);
    acc_close(s->acc);
    for (uint32_t i = 0; i < s->n_iot; i++) {
        iot_destroy(s->iots[i]);
    }
    for (uint32_t i = 0; i < s->n_workers; i++) {
        worker_destroy(s->workers[i]);
    }
    writer_destroy(s->writer);
    backup_destroy(s->backup);
    /* Acks taken by the IO threads after the writer stopped. */
    if ((rc = cons_reg_flush(s->consumers)) < 0) {
        log_warn("shutdown: durable consumer state not saved: %s", server_strerror(rc));
    }
    cons_reg_destroy(s->consumers);
    store_close(s->store); /* every thread that reads it has exited */
    login_gate_deinit(&s->login);
    auth_holder_deinit(&s->auth);
    qgroup_reg_destroy(s->qgroups);
    s->qgroups = NULL;
    mqtt_retain_destroy(s->mqtt_retained);
    s->mqtt_retained = NULL;
    mqtt_clients_destroy(s->mqtt_clients);
    s->mqtt_clients = NULL;
    if (s->has_tls) {
        tls_holder_close(&s->tls);
    }
    server_tables_free(s);
}

int main(int argc, char **argv)
{
    static struct server srv; /* large, and shared with every thread */
    struct server *s = &srv;
    char err[600];
    int help = 0;
    int rc;

    if (argc >= 2 && (strcmp(argv[1], "--verify") == 0 || strncmp(argv[1], "--verify=", 9) == 0)) {
        const char *dir = argv[1][8] == '=' ? argv[1] + 9 : argc == 3 ? argv[2] : NULL;
        if (dir == NULL || *dir == '\0' || (argv[1][8] == '=' && argc != 2)) {
            fprintf(stderr, "usage: ferryd --verify DIR\n");
            return 2;
        }
        return verify(dir);
    }
    if (argc >= 2 && strcmp(argv[1], "--inspect") == 0) {
        return inspect_main(argc - 1, argv + 1);
    }
    if (argc == 3 && strcmp(argv[1], "--backup-child") == 0) {
        return backup_child_main(argv[2]);
    }

    cfg_defaults(&s->cfg);
    rc = cfg_parse_args(&s->cfg, argc, argv, &help, err, sizeof(err));
    if (rc == 1) {
        fputs(help == 1 ? cfg_usage() : "ferryd " FERRY_VERSION "\n", stdout);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "ferryd: %s\n%s", err, cfg_usage());
        return 2;
    }
    log_level_set((enum log_level)s->cfg.log_level);
    log_format_set((enum log_format)s->cfg.log_format); /* before any thread starts */
    signal(SIGPIPE, SIG_IGN);
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* inherited by every thread */
    raise_nofile();
    tune_malloc();
    choose_io_backend(&s->cfg);

    if ((rc = mkdir_p(s->cfg.data_dir)) < 0) {
        log_error("data directory %s: %s", s->cfg.data_dir, strerror(-rc));
        return 1;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 1) {
        ncpu = 1;
    }
    s->n_iot = (uint32_t)(s->cfg.io_threads > 0 ? s->cfg.io_threads : ncpu);
    s->n_workers = (uint32_t)(s->cfg.workers > 0 ? s->cfg.workers : ncpu);
    if (s->cfg.reactor_mode != REACTOR_MULTI) {
        s->n_iot = 1; /* one reactor, which accepts too */
    }
    if (s->cfg.reactor_mode == REACTOR_SINGLE) {
        s->n_workers = 1; /* routed inline by that reactor */
    }
    uint8_t rnd[8] = {0};
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        uint64_t t = (uint64_t)now_realtime_ns() ^ (uint64_t)getpid();
        memcpy(rnd, &t, sizeof(rnd));
    }
    for (int i = 0; i < 8; i++) {
        snprintf(s->server_id + 2 * i, 3, "%02x", rnd[i]);
    }
    s->start_ms = (uint64_t)(now_realtime_ns() / 1000000);
    atomic_init(&s->next_client_id, 1);

    if (setup_auth(s, ncpu) < 0 || setup_tls(s) < 0) {
        return 1;
    }

    struct login_limits lim = {.max_unauth = s->cfg.max_unauth,
                               .delay_ms = s->cfg.login_delay_ms,
                               .delay_max_ms = s->cfg.login_delay_max_ms};
    if (lim.max_unauth == 0) {
        lim.max_unauth = s->cfg.max_connections / 8 > 4 ? s->cfg.max_connections / 8 : 4;
    }
    lim.max_unauth_per_addr = lim.max_unauth / 2 > 1 ? lim.max_unauth / 2 : 1;
    if (server_tables_alloc(s) < 0 || login_gate_init(&s->login, &lim, 4096) < 0) {
        log_error("out of memory");
        return 1;
    }
    /* MQTT retained messages live in a last-value topic (mqtt_retain.h). */
    struct cfg *cf = &s->cfg;
    if ((cf->mqtt_listen_port >= 0 || cf->mqtt_tls_listen_port >= 0) &&
        !cfg_is_last_value(cf, MQTT_RETAIN_TOPIC, sizeof(MQTT_RETAIN_TOPIC) - 1)) {
        if (cf->n_last_value >= CFG_MAX_LAST_VALUE) {
            log_error("too many last_value patterns: MQTT needs one for %s", MQTT_RETAIN_TOPIC);
            return 1;
        }
        memcpy(cf->last_value[cf->n_last_value++], MQTT_RETAIN_TOPIC, sizeof(MQTT_RETAIN_TOPIC));
    }
    if (open_store(s) < 0) {
        return 1;
    }
    if (setup_cluster(s) < 0) {
        return 1;
    }
    if ((s->writer = writer_create(s)) == NULL) {
        log_error("cannot create the store writer");
        return 1;
    }
    if ((s->backup = backup_create(s)) == NULL ||
        cons_reg_create(s->store, wake_writer, s, &s->consumers) < 0) {
        log_error("out of memory");
        return 1;
    }
    /* MQTT retained messages: in the store, cached in memory, bounded
     * (mqtt_retain.h). */
    if ((s->cfg.mqtt_listen_port >= 0 || s->cfg.mqtt_tls_listen_port >= 0) &&
        ((s->mqtt_retained = mqtt_retain_create(MQTT_RETAIN_MAX_BYTES)) == NULL ||
         (s->mqtt_clients = mqtt_clients_create()) == NULL)) {
        log_error("out of memory");
        return 1;
    }
    if (s->mqtt_retained != NULL && s->store != NULL) {
        size_t n_loaded, n_skipped;
        rc = mqtt_retain_load(s->mqtt_retained, s->store, &n_loaded, &n_skipped);
        if (rc < 0) {
            log_error("cannot read the MQTT retained messages (%s): %s", MQTT_RETAIN_TOPIC,
                      server_strerror(rc));
            return 1;
        }
        if (n_loaded + n_skipped > 0) {
            log_info("MQTT retained messages: %zu loaded%s", n_loaded,
                     n_skipped ? " (some did not fit the 64 MiB bound: not retained)" : "");
        }
    }
    struct acc_ports ports;
    if (start_threads(s, &ports) < 0) {
        return 1;
    }
    if (s->cluster != NULL) {
        clu_set_placed_hook(s->cluster, wake_iots, s); /* held frames (conn_hold.c) */
    }
    int port = ports.plain;
    int tls_port = ports.tls;
    int mqtt_port = ports.mqtt;
    /* Durables nobody held for consumer_max_idle are removed (consumer.h). */
    struct cons_reaper *reaper = NULL;
    if (s->cfg.consumer_max_idle_ms > 0 && s->store != NULL &&
        (rc = cons_reaper_start(s->consumers, s->cfg.consumer_max_idle_ms, &reaper)) < 0) {
        log_error("cannot start the consumer_max_idle reaper: %s", server_strerror(rc));
        return 1;
    }
    if (s->cfg.reactor_mode == REACTOR_MULTI && (rc = acc_start(s->acc)) < 0) {
        log_error("cannot start the acceptor: %s", strerror(-rc));
        return 1;
    }
    int metrics_port = -1;
    if (s->cfg.metrics_port >= 0 && metrics_start(s, &s->metrics, &metrics_port) < 0) {
        return 1;
    }
    char where[200];
    if (port >= 0 && tls_port >= 0) {
        snprintf(where, sizeof(where), "%.64s:%d and %.64s:%d (TLS)", s->cfg.listen_host, port,
                 s->cfg.tls_listen_host, tls_port);
    } else if (port >= 0) {
        snprintf(where, sizeof(where), "%.64s:%d", s->cfg.listen_host, port);
    } else if (tls_port >= 0) {
        snprintf(where, sizeof(where), "%.64s:%d (TLS only)", s->cfg.tls_listen_host, tls_port);
    } else {
        snprintf(where, sizeof(where), "MQTT only");
    }
    log_info("ferryd %s (server id %s) on %s, reactor %s: %u IO threads (%s), %u workers%s, "
             "data dir %s, sync %s, %u ephemeral patterns",
             FERRY_VERSION, s->server_id, where, reactor_name(s->cfg.reactor_mode), s->n_iot,
             rx_backend_name((enum rx_backend)s->cfg.io_backend), s->n_workers,
             s->cfg.reactor_mode == REACTOR_SINGLE ? " (inline)" : "", s->cfg.data_dir,
             sync_name(&s->cfg), s->cfg.n_ephemeral);
    /* Ready before it is announced: whoever reads the lines below may ask
     * /readyz at once. */
    atomic_store(&s->is_ready, 1);
    /* The plain line last: whoever waits for it has all of them. */
    if (metrics_port >= 0) {
        printf("ferryd: metrics on %s:%d\n", s->cfg.metrics_host, metrics_port);
    }
    if (ports.mqtt_tls >= 0) {
        log_info("MQTT 3.1.1 over TLS on %.64s:%d", s->cfg.mqtt_tls_listen_host, ports.mqtt_tls);
        printf("ferryd: listening for MQTT over TLS on %s:%d\n", s->cfg.mqtt_tls_listen_host,
               ports.mqtt_tls);
    }
    if (mqtt_port >= 0) {
        log_info("MQTT 3.1.1 on %.64s:%d", s->cfg.mqtt_listen_host, mqtt_port);
        printf("ferryd: listening for MQTT on %s:%d\n", s->cfg.mqtt_listen_host, mqtt_port);
    }
    if (tls_port >= 0) {
        printf("ferryd: listening for TLS on %s:%d\n", s->cfg.tls_listen_host, tls_port);
    }
    if (port >= 0) {
        printf("ferryd: listening on %s:%d\n", s->cfg.listen_host, port);
    }
    fflush(stdout);
    char status[240];
    snprintf(status, sizeof(status), "listening on %s", where);
    svc_ready(status); /* systemd (Type=notify): started */

    for (;;) {
        int sig = svc_sigwait(&sigs); /* and the systemd watchdog, if asked for */
        if (sig == SIGHUP) {
            svc_reloading();
            reload(s);
            svc_ready(status);
            continue;
        }
        if (sig == SIGTERM || sig == SIGINT) {
            svc_stopping();
            log_info("%s: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            atomic_store(&s->is_ready, 0);
            break;
        }
    }

    stop_all(s, reaper);
    log_info("stopped");
    return 0;
}

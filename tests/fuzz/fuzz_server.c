/*
 * fuzz_server.c - the in-process broker of the connection fuzz targets
 * (fuzz_server.h).
 */
#include "fuzz_server.h"

#include "auth.h"
#include "codec.h"
#include "frame.h"
#include "io_thread.h"
#include "log.h"
#include "worker.h"

#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

long long fuzz_ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A cheap sha512-crypt hash of pw (1000 rounds): fuzzing stays fast. */
static char *hash_of(const char *pw)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data cd;
    memset(&cd, 0, sizeof(cd));
    if (crypt_gensalt_rn("$6$", 1000, NULL, 0, setting, sizeof(setting)) == NULL) {
        abort();
    }
    const char *h = crypt_rn(pw, setting, &cd, sizeof(cd));
    if (h == NULL || h[0] == '*') {
        abort();
    }
    return strdup(h);
}

static void load_auth(struct server *s)
{
    char *ha = hash_of("secret"), *ht = hash_of("tok");
    char text[1024];
    snprintf(text, sizeof(text),
             "user alice %s\ntoken ci %s\ncert alice\n"
             "allow alice publish a.*\nallow alice subscribe a.>\n"
             "allow alice subscribe b.*.c\nallow ci admin\nallow ci publish >\n",
             ha, ht);
    free(ha);
    free(ht);
    struct auth_table *t;
    char err[256];
    if (auth_table_parse(text, strlen(text), "fuzz", &t, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz: %s\n", err);
        abort();
    }
    auth_holder_set(&s->auth, t);
    /* No waits after failures: fuzzing stays fast. */
    struct login_limits lim = {.max_unauth = 1u << 20, .max_unauth_per_addr = 1u << 20};
    if (login_gate_init(&s->login, &lim, 64) != 0) {
        abort();
    }
    s->auth_pool = auth_pool_create(1, 64, iot_auth_done, s);
    if (s->auth_pool == NULL) {
        abort();
    }
}

static void load_tls(struct server *s, const char *dir)
{
    snprintf(s->cfg.tls_cert, sizeof(s->cfg.tls_cert), "%s/server.pem", dir);
    snprintf(s->cfg.tls_key, sizeof(s->cfg.tls_key), "%s/server.key", dir);
    snprintf(s->cfg.tls_ca, sizeof(s->cfg.tls_ca), "%s/ca.pem", dir);
    s->cfg.tls_client_cert = TLS_CLIENT_OPTIONAL;
    s->cfg.tls_identity = TLS_ID_CN;
    char err[256];
    if (tls_holder_open(&s->tls, &s->cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "fuzz: %s\n", err);
        abort();
    }
}

void fuzz_server_start(struct server *s, int with_auth, const char *tls_dir)
{
    log_level_set(LOG_ERROR); /* refusals are the normal case here */
    memset(s, 0, sizeof(*s));
    cfg_defaults(&s->cfg);
    s->cfg.keepalive_min_ms = 20;
    s->cfg.connect_timeout_ms = 300;
    s->cfg.max_subs = 64;
    s->n_iot = 1;
    s->n_workers = 1;
    strcpy(s->server_id, "fuzz");
    atomic_init(&s->next_client_id, 1);
    auth_holder_init(&s->auth);
    if (with_auth) {
        load_auth(s);
    }
    if (tls_dir != NULL) {
        load_tls(s, tls_dir);
    }
    if (server_tables_alloc(s) < 0) {
        abort();
    }
    s->workers[0] = worker_create(s, 0);
    s->iots[0] = iot_create(s, 0);
    if (!s->workers[0] || !s->iots[0] || worker_start(s->workers[0]) != 0 ||
        iot_start(s->iots[0]) != 0) {
        abort();
    }
}

size_t fuzz_connect_frame(uint8_t *buf, size_t cap, enum fuzz_login how, int wrong)
{
    Ferry__Connect m = FERRY__CONNECT__INIT;
    m.protocol_version = 1;
    m.client_name = (char *)"fuzz";
    m.keepalive_ms = 60000;
    if (how == FUZZ_LOGIN_TOKEN) {
        m.token = (char *)(wrong ? "ci:nope" : "ci:tok");
    } else if (how == FUZZ_LOGIN_PASSWORD) {
        m.username = (char *)"alice";
        m.password = (char *)(wrong ? "nope" : "secret");
    }
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_CONNECT;
    f.connect = &m;
    uint8_t *wire = NULL;
    size_t n = 0;
    if (codec_frame_encode_alloc(&f, &wire, &n) != 0 || n > cap) {
        abort();
    }
    memcpy(buf, wire, n);
    free(wire);
    return n;
}

void fuzz_conn_post_flags(struct server *s, int fd, uint32_t flags)
{
    atomic_fetch_add(&s->conns_now, 1);
    struct rmsg m = {.kind = R_NEW_CONN};
    m.u.fd = fd;
    m.n_ids = flags;
    if (mbox_post(s->iot_in[0], &m, 1) != 0) {
        abort();
    }
}

void fuzz_conn_post(struct server *s, int fd, int tls)
{
    fuzz_conn_post_flags(s, fd, tls ? R_NEW_CONN_TLS : 0u);
}

void fuzz_wait_released(struct server *s, long long deadline_ms)
{
    while (atomic_load(&s->conns_now) != 0) {
        if (fuzz_ms_now() > deadline_ms) {
            fprintf(stderr, "fuzz: a connection was never released\n");
            abort();
        }
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
}

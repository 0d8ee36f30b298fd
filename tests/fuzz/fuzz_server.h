/*
 * fuzz_server.h - an in-process broker for the connection fuzz targets
 * (fuzz_conn, fuzz_tls): one IO thread and one worker, as in
 * tests/unit/test_conn.c, and the pieces every input needs (a valid
 * Connect, a connection handed over as the acceptor would, the wait until
 * the server has forgotten it).
 */
#ifndef FERRY_FUZZ_SERVER_H
#define FERRY_FUZZ_SERVER_H

#include "server.h"

#include <stddef.h>
#include <stdint.h>

#define FUZZ_DRAIN_MS 10000 /* the server must close within this: else a hang */

/* How the Connect of fuzz_connect_frame logs in. */
enum fuzz_login {
    FUZZ_LOGIN_PASSWORD, /* alice / secret */
    FUZZ_LOGIN_TOKEN,    /* the token ci:tok */
    FUZZ_LOGIN_NONE      /* no credentials: a certificate or no auth file */
};

/* Start s. with_auth: an auth file with users alice (password "secret",
 * also a `cert`), a token ci and ACLs, no login delays. tls_dir: a
 * tls_certs directory whose server.pem/.key and ca.pem the server uses
 * (client certificates optional, identity by CN), or NULL. Aborts on
 * failure: a harness that cannot start is a finding of its own. */
void fuzz_server_start(struct server *s, int with_auth, const char *tls_dir);

/* A valid Connect frame into buf (cap bytes); wrong: a wrong secret.
 * Returns its length. */
size_t fuzz_connect_frame(uint8_t *buf, size_t cap, enum fuzz_login how, int wrong);

/* Hand fd (non-blocking, one end of a socketpair) to s's IO thread as the
 * acceptor would: counted, and from the TLS listener if tls. */
void fuzz_conn_post(struct server *s, int fd, int tls);
/* As fuzz_conn_post, with R_NEW_CONN_* flags (R_NEW_CONN_MQTT: the MQTT
 * listener's). */
void fuzz_conn_post_flags(struct server *s, int fd, uint32_t flags);

/* Wait until s has no connection left; abort after deadline_ms (of
 * fuzz_ms_now): a connection the server never released. */
void fuzz_wait_released(struct server *s, long long deadline_ms);

long long fuzz_ms_now(void);

#endif

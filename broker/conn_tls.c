/*
 * conn_tls.c - a TLS connection before its handshake finished (conn_).
 *
 * From the TLS listener a connection starts with a session (c->tls) and
 * c->tls_hs set; conn_on_io sends its events here until the handshake is
 * done. After that it is an ordinary connection whose reads and writes go
 * through the session (sock_read in conn.c, sock_writev in conn_out.c).
 */
#include "io_int.h"

#include <errno.h>

/* A TLS connection before its handshake finished: is it TLS at all (a plain
 * ferry client's first byte is a frame length's, never 0x16), then one step
 * of the handshake. Never blocks; the reactor brings us back. */
void conn_tls_step(struct iot *t, struct conn *c)
{
    if (c->tls_hs == 2) {
        int rc = tls_peek_is_tls(c->fd);
        if (rc == -EAGAIN) {
            return;
        }
        if (rc < 0) {
            conn_kill(t, c);
            return;
        }
        if (rc == 0) {
            /* A plain client: it gets a plain Error it can read, then the close. */
            tls_conn_destroy(c->tls);
            c->tls = NULL;
            c->tls_hs = 0;
            conn_fail(t, c, FERRY__ERROR_CODE__ERROR_PROTOCOL,
                      "this port speaks TLS: connect with TLS (tls://HOST:PORT)");
            return;
        }
        c->tls_hs = 1;
    }
    int rc = tls_conn_handshake(c->tls);
    if (rc < 0) {
        log_client_info(c->client_id, c->peer, "%s; closing", tls_conn_error(c->tls));
        stats_add(&t->stats.protocol_errors, 1);
        conn_kill(t, c);
        return;
    }
    if (rc > 0) {
        uint32_t want = tls_conn_wants(c->tls) & TLS_WANT_WRITE ? RX_WRITE : RX_READ;
        conn_set_events(t, c, want);
        return;
    }
    c->tls_hs = 0;
    conn_set_events(t, c, RX_READ);
    /* The handshake's public-key work may have taken a while this round:
     * what arrives now (the Connect) is stamped with the clock's time, not
     * the round's start, so its keepalive interval is not cut short. */
    uint64_t now = now_ms();
    if (now > t->now) {
        t->now = now;
    }
    log_client_debug(c->client_id, c->peer, "TLS handshake done");
    conn_on_readable(t, c); /* the Connect may have come with the last handshake record */
}

/*
 * acceptor.h - the listening socket and its thread (prefix acc_).
 *
 * The acceptor owns the listening sockets (plain, TLS, MQTT) and nothing else: it accepts, sets
 * TCP_NODELAY, enforces max_connections, and hands each socket to an IO
 * thread (round robin) through that thread's mailbox. It never reads client
 * data.
 */
#ifndef FERRY_ACCEPTOR_H
#define FERRY_ACCEPTOR_H

#include "reactor.h"
#include "server.h"

struct acceptor;

/* The ports the listeners bound (-1: no such listener). */
struct acc_ports {
    int plain, tls, mqtt, mqtt_tls;
};

/* Bind and listen on s->cfg.listen_host:listen_port (unless the port is -1,
 * `listen off`), on tls_listen_host:tls_listen_port (unless -1): the
 * connections of the second speak TLS (R_NEW_CONN_TLS), on
 * mqtt_listen_host:mqtt_listen_port (unless -1): those speak MQTT
 * (R_NEW_CONN_MQTT), and on mqtt_tls_listen_host:mqtt_tls_listen_port
 * (unless -1): MQTT over TLS (both flags). On success *out is the acceptor
 * and *ports the bound ports. Returns 0 or -errno (the message is
 * logged). */
int acc_open(struct server *s, struct acceptor **out, struct acc_ports *ports);
/* A non-blocking listening socket on host:port_in (port 0: any free one),
 * its bound port in *port. 0 or -errno (the message is logged). Also the
 * metrics listener's (metrics.c). */
int acc_listen_socket(const char *host, int port_in, int *fd_out, int *port);
int acc_start(struct acceptor *a);
/* Stop accepting: close the listener and join the thread (embedded: ask the
 * host IO thread to close it, through an rx_async). Main thread. */
void acc_stop(struct acceptor *a);
void acc_close(struct acceptor *a);

/*
 * Embedded (--reactor single-pool and single): no acceptor thread; the one
 * IO thread watches the listener in its own set and accepts in its loop.
 * The new sockets still reach it through its mailbox (a non-blocking post,
 * so a full mailbox refuses the connection instead of stalling the loop).
 * acc_embed() is called by main before that IO thread starts.
 */
/* Watch the listener in rx, the host IO thread's set (instead of
 * acc_start()); its loop (rx_run) then accepts, resumes after a pause, and
 * closes the listener when acc_stop() asks. 0, or -errno. */
int acc_embed(struct acceptor *a, struct rx *rx);

#endif

/*
 * acceptor.h - the listening socket and its thread (prefix acc_).
 *
 * The acceptor owns the listening socket and nothing else: it accepts, sets
 * TCP_NODELAY, enforces max_connections, and hands each socket to an IO
 * thread (round robin) through that thread's mailbox. It never reads client
 * data.
 */
#ifndef FERRY_ACCEPTOR_H
#define FERRY_ACCEPTOR_H

#include "server.h"

struct acceptor;

/* Bind and listen on s->cfg.listen_host:listen_port. On success *out is the
 * acceptor and *port the bound port. Returns 0 or -errno (the message is
 * logged). */
int acc_open(struct server *s, struct acceptor **out, int *port);
int acc_start(struct acceptor *a);
/* Stop accepting: close the listener and join the thread. */
void acc_stop(struct acceptor *a);
void acc_close(struct acceptor *a);

#endif

/*
 * mqtt_clients.h - who holds each MQTT client id now (prefix mqtt_clients_):
 * the table behind session takeover (MQTT 3.1.1, 3.1.4-2: a CONNECT with the
 * client id of a connected client disconnects that one).
 *
 * A key is a session key (mqtt_int.h: hex(user) "-" hex(client id)), so a
 * client id taken over is one of the same user: another user cannot close
 * someone's connection by naming its client id. The value is a connection
 * reference (messages.h CONN_REF), the connection that logged in last with
 * that key.
 *
 * THE HAND-OVER
 *   1. The new connection claims the key; it learns the old holder, if any,
 *      and tells that one's IO thread to close it (R_MQTT_KICK).
 *   2. The new connection waits (it reads nothing more, CONNACK not sent).
 *   3. When a connection ends (its durables released), it releases its key:
 *      if somebody claimed it meanwhile, release returns that claimant, and
 *      the ending connection tells it to go on (R_MQTT_RESUME).
 *   The table decides each step under its lock, so whichever order the two
 *   threads run in, the claimant hears exactly when the old holder is gone:
 *   a holder that ended before the claim left no entry (nothing to wait
 *   for), one that ends after it finds the claimant in the entry.
 *
 * Thread-safe: any IO thread calls any function; one mutex guards the table.
 */
#ifndef FERRY_MQTT_CLIENTS_H
#define FERRY_MQTT_CLIENTS_H

#include <stdint.h>

struct mqtt_clients;

/* An empty table, or NULL (no memory). */
struct mqtt_clients *mqtt_clients_create(void);
void mqtt_clients_destroy(struct mqtt_clients *r);

/* Connection ref takes key. Returns 1 with the previous holder in *prev
 * (who must be closed; ref waits for its release), 0 when nobody held it,
 * or -ENOMEM (nothing changed). */
int mqtt_clients_claim(struct mqtt_clients *r, const char *key, uint64_t ref, uint64_t *prev);

/* Connection ref, which had claimed key, ends. Returns 1 with the
 * connection that claimed key after ref in *next (waiting for this call: it
 * must be told to go on), else 0 (the entry was ref's, and is removed; or
 * there is none). */
int mqtt_clients_release(struct mqtt_clients *r, const char *key, uint64_t ref, uint64_t *next);

/* How many keys are held (tests, stats). */
uint32_t mqtt_clients_count(struct mqtt_clients *r);

#endif

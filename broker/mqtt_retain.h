/*
 * mqtt_retain.h - MQTT retained messages (prefix mqtt_retain_): the newest
 * retained message of each topic, shared by the IO threads.
 *
 * A PUBLISH with the retain flag sets its topic's retained message (an
 * empty payload clears it); a new subscription gets the retained messages
 * of the topics its pattern matches. The table is in memory, bounded by
 * bytes; a message that does not fit is refused (mqtt_retain_put says
 * so).
 *
 * IN THE STORE
 *   The table is the cache of the internal last-value topic
 *   MQTT_RETAIN_TOPIC (config: last_value, added by ferryd when MQTT is
 *   on): a retained PUBLISH is also published there (mqtt_conn.c), before
 *   the message itself, with the message's ferry topic as its key, its
 *   payload, and the header MQTT_RETAIN_QOS_HEADER ("0" or "1"); an empty
 *   payload is the key's tombstone, which clears it. So a retained message
 *   whose PUBLISH was PUBACKed is committed, and at start ferryd loads the
 *   topic's current values into the table (mqtt_retain_load). Topics
 *   longer than a last-value key (STORE_LASTVAL_KEY_MAX bytes) stay in
 *   memory only. The topic obeys the ACLs of ferry clients: only those
 *   allowed to subscribe to it read it (MQTT clients never publish to it:
 *   a "$" topic, and the publish is the broker's, made without the
 *   client's rights).
 *
 * Thread-safe: every function may be called from any thread; one mutex
 * guards the table. Topics are ferry topics (mqtt_topic.h).
 */
#ifndef FERRY_MQTT_RETAIN_H
#define FERRY_MQTT_RETAIN_H

#include <stddef.h>
#include <stdint.h>

struct mqtt_retain;

/* ferryd's bound on the retained messages' bytes (topics and payloads). */
#define MQTT_RETAIN_MAX_BYTES ((size_t)64 << 20)

/* A table holding at most max_bytes of topics and payloads. NULL: no
 * memory. */
struct mqtt_retain *mqtt_retain_create(size_t max_bytes);
void mqtt_retain_destroy(struct mqtt_retain *r);

/* Set topic's retained message (a copy of payload, at qos), or clear it
 * when payload_len is 0. 0, -ENOSPC (over max_bytes: nothing changed), or
 * -ENOMEM (nothing changed). */
int mqtt_retain_put(struct mqtt_retain *r, const char *topic, size_t topic_len, const void *payload,
                    size_t payload_len, uint8_t qos);

/* Call fn for each retained message whose topic a matches (pattern a, or
 * pattern b unless b is NULL), with the table locked: fn copies what it
 * needs and returns, and calls nothing of this module. */
typedef void mqtt_retain_fn(void *arg, const char *topic, size_t topic_len, const void *payload,
                            size_t payload_len, uint8_t qos);
void mqtt_retain_each(struct mqtt_retain *r, const char *a, size_t a_len, const char *b,
                      size_t b_len, mqtt_retain_fn *fn, void *arg);

#define MQTT_RETAIN_TOPIC "$MQTT.retained"
#define MQTT_RETAIN_QOS_HEADER "mqtt-qos"

struct store;
/* Load MQTT_RETAIN_TOPIC's current values into r (at start, before any
 * connection). Returns 0 with how many were loaded and how many did not
 * fit (or were not valid), or the store's error. */
int mqtt_retain_load(struct mqtt_retain *r, struct store *st, size_t *n_loaded, size_t *n_skipped);

/* Retained messages held now. */
size_t mqtt_retain_count(struct mqtt_retain *r);

#endif

/*
 * mqtt_topic.h - MQTT topic names and filters as ferry topics and patterns
 * (prefix mqtt_topic_), pure.
 *
 * The one rule, both ways: an MQTT level is a ferry token, '/' is '.',
 * '+' is '*' and '#' is '>':
 *
 *     MQTT                 ferry
 *     sensors/eu/temp      sensors.eu.temp
 *     sensors/+/temp       sensors.*.temp
 *     sensors/#            sensors.>   and   sensors   (see below)
 *     #                    >
 *
 * MQTT's '#' also matches the level before it ("sensors/#" matches
 * "sensors"), ferry's '>' needs one token or more: such a filter becomes
 * two ferry patterns, the one with '>' and its parent without it. A bare
 * "#" needs no parent (every ferry topic has a token).
 *
 * What cannot map is refused: an empty level ("a//b", "/a", "a/"), a level
 * holding '.', '*' or '>' (a ferry separator or wildcard), and in filters
 * a '+' or '#' that is not a whole level, or a '#' that is not last. Other
 * characters pass unchanged; the broker's own topic rules (length, depth,
 * no whitespace or control characters) are checked afterwards, as for any
 * ferry topic. Going back, a ferry topic's '.' become '/'; a ferry token
 * holding '/' (legal in ferry) reaches MQTT subscribers as two levels.
 * (MQTT's rule that a filter starting with a wildcard does not match a
 * topic starting with '$' is applied at delivery, mqtt_out.c.)
 *
 * Pure module: no IO, no threads, no logging.
 */
#ifndef FERRY_MQTT_TOPIC_H
#define FERRY_MQTT_TOPIC_H

#include <stddef.h>

/* Map an MQTT topic name (is_filter 0) or topic filter (1) of len bytes
 * to ferry. out has room for len + 1 bytes; the result is NUL-terminated
 * and *out_len bytes long. For a filter ending in "/#", *parent_len is
 * the length of the parent pattern (a prefix of out: out[0..*parent_len)),
 * else 0. Returns 0, or -1 if the topic cannot map (out untouched). */
int mqtt_topic_to_ferry(const char *s, size_t len, int is_filter, char *out, size_t *out_len,
                        size_t *parent_len);

/* Does the MQTT topic filter f[0..flen) match the topic name t[0..tlen),
 * as MQTT says (4.7): '+' is one level (an empty one too), '#' as the
 * last level the rest (none or more: "a/#" matches "a"), and a filter
 * that starts with '+' or '#' does not match a name that starts with '$'
 * (4.7.2). For the broker's own $SYS topics, which are not ferry topics.
 * Returns 1 or 0. */
int mqtt_topic_match(const char *f, size_t flen, const char *t, size_t tlen);

#endif

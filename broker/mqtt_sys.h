/*
 * mqtt_sys.h - the broker's $SYS topics for MQTT clients (prefix
 * mqtt_sys_): their names and payloads, pure.
 *
 * ferryd answers a subscription to "$SYS/..." itself, from its counters:
 * nothing is routed through ferry topics or stored. The names are
 * mosquitto's where ferry has the same figure, ferry's own ones under
 * "$SYS/broker/ferry/"; each payload is plain text, a decimal number
 * (uptime: "N seconds", version: "ferryd version X"). A figure ferry does
 * not have (the store's, without a store; the retained messages', without
 * MQTT's table) has no topic. Who may subscribe, and when the values go
 * out, is the connection's business (mqtt_sys_out.c).
 *
 * Pure module: no IO, no threads, no logging.
 */
#ifndef FERRY_MQTT_SYS_H
#define FERRY_MQTT_SYS_H

#include <stddef.h>
#include <stdint.h>

/* The first level of every topic served here. */
#define MQTT_SYS_PREFIX "$SYS"

/* A snapshot of the figures the topics report (has_*: the figure exists). */
struct mqtt_sys_figures {
    const char *version;        /* ferryd's version */
    uint64_t uptime_s;          /* seconds since ferryd started */
    uint64_t clients_connected; /* connections open now, ferry and MQTT */
    uint64_t conns_accepted;    /* connections accepted since start */
    uint64_t packets_in;        /* frames and MQTT packets received */
    uint64_t packets_out;       /* frames and MQTT packets sent */
    uint64_t publish_in;        /* publications accepted (ferry Publish, MQTT PUBLISH) */
    uint64_t publish_out;       /* deliveries sent */
    uint64_t bytes_in, bytes_out;
    uint64_t subscriptions; /* ferry subscriptions open now (MQTT "x/#" makes two) */
    uint64_t slow_consumers;
    int has_retained;
    uint64_t retained; /* MQTT retained messages held now */
    int has_store;
    uint64_t store_messages; /* messages committed since start */
    uint64_t store_commits;  /* group commits since start */
    uint64_t store_topics;   /* topics in the store now */
    uint64_t store_bytes;    /* bytes of the store's map in use */
};

/* Longest payload mqtt_sys_each hands over (bytes, without a NUL). */
#define MQTT_SYS_PAYLOAD_MAX 64

/* Is the MQTT topic name or filter s[0..len) one of the $SYS tree (its
 * first level is exactly "$SYS")? Returns 1 or 0. */
int mqtt_sys_is_sys(const char *s, size_t len);

/* Call fn for each topic f has a figure for, in a fixed order: its MQTT
 * name (NUL-terminated, static, no '.') and its payload (text, not
 * NUL-terminated, valid during the call). */
typedef void mqtt_sys_fn(void *arg, const char *name, size_t name_len, const char *payload,
                         size_t payload_len);
void mqtt_sys_each(const struct mqtt_sys_figures *f, mqtt_sys_fn *fn, void *arg);

#endif

/*
 * mqtt_sys.c - the $SYS topics' names and payloads (mqtt_sys.h).
 */
#include "mqtt_sys.h"

#include <stdio.h>
#include <string.h>

enum sys_kind {
    SYS_NUMBER,  /* a decimal number */
    SYS_SECONDS, /* "N seconds" (mosquitto's uptime) */
    SYS_VERSION, /* "ferryd version X" */
};

enum sys_need { NEED_NONE, NEED_STORE, NEED_RETAINED };

struct sys_topic {
    const char *name;
    enum sys_kind kind;
    enum sys_need need;
    size_t off; /* the uint64_t figure in struct mqtt_sys_figures */
};

#define F(field) offsetof(struct mqtt_sys_figures, field)
static const struct sys_topic topics[] = {
    {"$SYS/broker/version", SYS_VERSION, NEED_NONE, 0},
    {"$SYS/broker/uptime", SYS_SECONDS, NEED_NONE, F(uptime_s)},
    {"$SYS/broker/clients/connected", SYS_NUMBER, NEED_NONE, F(clients_connected)},
    {"$SYS/broker/messages/received", SYS_NUMBER, NEED_NONE, F(packets_in)},
    {"$SYS/broker/messages/sent", SYS_NUMBER, NEED_NONE, F(packets_out)},
    {"$SYS/broker/publish/messages/received", SYS_NUMBER, NEED_NONE, F(publish_in)},
    {"$SYS/broker/publish/messages/sent", SYS_NUMBER, NEED_NONE, F(publish_out)},
    {"$SYS/broker/bytes/received", SYS_NUMBER, NEED_NONE, F(bytes_in)},
    {"$SYS/broker/bytes/sent", SYS_NUMBER, NEED_NONE, F(bytes_out)},
    {"$SYS/broker/subscriptions/count", SYS_NUMBER, NEED_NONE, F(subscriptions)},
    {"$SYS/broker/retained messages/count", SYS_NUMBER, NEED_RETAINED, F(retained)},
    {"$SYS/broker/ferry/connections/accepted", SYS_NUMBER, NEED_NONE, F(conns_accepted)},
    {"$SYS/broker/ferry/slow_consumers", SYS_NUMBER, NEED_NONE, F(slow_consumers)},
    {"$SYS/broker/ferry/store/messages", SYS_NUMBER, NEED_STORE, F(store_messages)},
    {"$SYS/broker/ferry/store/commits", SYS_NUMBER, NEED_STORE, F(store_commits)},
    {"$SYS/broker/ferry/store/topics", SYS_NUMBER, NEED_STORE, F(store_topics)},
    {"$SYS/broker/ferry/store/bytes", SYS_NUMBER, NEED_STORE, F(store_bytes)},
};
#undef F

int mqtt_sys_is_sys(const char *s, size_t len)
{
    size_t n = sizeof(MQTT_SYS_PREFIX) - 1;
    return len >= n && memcmp(s, MQTT_SYS_PREFIX, n) == 0 && (len == n || s[n] == '/');
}

void mqtt_sys_each(const struct mqtt_sys_figures *f, mqtt_sys_fn *fn, void *arg)
{
    for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
        const struct sys_topic *t = &topics[i];
        if ((t->need == NEED_STORE && !f->has_store) ||
            (t->need == NEED_RETAINED && !f->has_retained)) {
            continue;
        }
        char p[MQTT_SYS_PAYLOAD_MAX + 1];
        uint64_t v = 0;
        if (t->kind != SYS_VERSION) {
            memcpy(&v, (const char *)f + t->off, sizeof(v));
        }
        int n = t->kind == SYS_VERSION
                    ? snprintf(p, sizeof(p), "ferryd version %s", f->version ? f->version : "")
                : t->kind == SYS_SECONDS
                    ? snprintf(p, sizeof(p), "%llu seconds", (unsigned long long)v)
                    : snprintf(p, sizeof(p), "%llu", (unsigned long long)v);
        if (n < 0) {
            continue;
        }
        size_t len = (size_t)n < sizeof(p) ? (size_t)n : sizeof(p) - 1;
        fn(arg, t->name, strlen(t->name), p, len);
    }
}

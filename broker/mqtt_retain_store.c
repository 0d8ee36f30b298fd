/*
 * mqtt_retain_store.c - MQTT retained messages kept in the store
 * (mqtt_retain.h, "IN THE STORE"): the internal last-value topic
 * MQTT_RETAIN_TOPIC, read back into the table at start.
 */
#include "ferry.h"
#include "mqtt_retain.h"
#include "store.h"

#include <errno.h>
#include <string.h>

struct load {
    struct mqtt_retain *r;
    size_t n, n_skipped;
};

static enum store_read_verdict load_one(void *ctx, const struct store_msg *m)
{
    struct load *l = ctx;
    uint8_t qos = 1;
    size_t pos = 0;
    struct store_kv kv;
    while (store_msg_header_next(m, &pos, &kv) == 1) {
        if (kv.key_len == sizeof(MQTT_RETAIN_QOS_HEADER) - 1 &&
            memcmp(kv.key, MQTT_RETAIN_QOS_HEADER, kv.key_len) == 0 && kv.value_len == 1 &&
            kv.value[0] == '0') {
            qos = 0;
        }
    }
    /* A tombstone (empty payload) is not a current value: never here. */
    if (m->key_len == 0 || m->payload_len == 0 ||
        mqtt_retain_put(l->r, m->key, m->key_len, m->payload, m->payload_len, qos) < 0) {
        l->n_skipped++;
    } else {
        l->n++;
    }
    return STORE_READ_CONTINUE;
}

int mqtt_retain_load(struct mqtt_retain *r, struct store *st, size_t *n_loaded, size_t *n_skipped)
{
    struct store_topic_info info;
    struct load l = {r, 0, 0};
    int rc = store_topic_info(st, MQTT_RETAIN_TOPIC, strlen(MQTT_RETAIN_TOPIC), &info);
    if (rc == FERRY_ENOTOPIC) {
        *n_loaded = *n_skipped = 0;
        return 0; /* never had one */
    }
    if (rc < 0) {
        return rc;
    }
    uint64_t from = 1;
    for (;;) {
        struct store_read_result res;
        rc = store_lastval_read(st, info.id, from, info.last_seq, 1024, (size_t)1 << 20, load_one,
                                &l, &res);
        if (rc < 0) {
            return rc;
        }
        if (res.is_end || res.next_seq <= from) {
            break;
        }
        from = res.next_seq;
    }
    *n_loaded = l.n;
    *n_skipped = l.n_skipped;
    return 0;
}

/*
 * fuzz_mqtt.c - libFuzzer target for the MQTT 3.1.1 codec and the topic
 * mapping (broker/mqtt_codec.c, broker/mqtt_topic.c).
 *
 * The input is a byte stream as an MQTT client would send it. The first
 * byte picks the limit (16 KiB as before CONNECT, or 1 MiB); the rest is
 * cut into packets by mqtt_hdr_parse as the broker cuts it, and each
 * packet goes to the decoder of its type. What decodes is checked: every
 * string lies inside the packet, a PUBLISH re-encodes to the same packet,
 * topic names and filters go through the mapping, whose output keeps the
 * length and never holds a '/'. Stops at the first packet the broker
 * would close the connection for.
 */
#include "mqtt_codec.h"
#include "mqtt_topic.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void inside(struct mqtt_str s, const uint8_t *body, size_t len)
{
    if (s.len > 0 && (s.p < body || s.p + s.len > body + len)) {
        abort();
    }
}

static void map(struct mqtt_str s, int is_filter)
{
    char out[70000];
    size_t n, parent;
    if (mqtt_topic_to_ferry((const char *)s.p, s.len, is_filter, out, &n, &parent) == 0) {
        if (n != s.len || memchr(out, '/', n) != NULL || parent >= n + (n == 0)) {
            abort();
        }
    }
}

static void publish_roundtrip(uint8_t first, const uint8_t *pkt, size_t pkt_len,
                              const struct mqtt_publish *m)
{
    size_t n = mqtt_publish_len(m->topic.len, m->payload.len, m->qos);
    if (n != pkt_len && (first & 0x08) == 0) {
        /* the same bytes but for DUP, which the encoder never sets; a
         * non-minimal remaining length is the only other difference */
        if (n > pkt_len) {
            abort();
        }
        return;
    }
    uint8_t *b = malloc(n);
    if (b == NULL) {
        return;
    }
    mqtt_publish_put(b, (const char *)m->topic.p, m->topic.len, 0, 0, m->payload.p, m->payload.len,
                     m->qos, m->packet_id, m->is_retain);
    if ((first & 0x08) == 0 && memcmp(b, pkt, n) != 0) {
        abort();
    }
    free(b);
}

/* One packet; 0 to go on, -1 where the broker would close. */
static int packet(uint8_t first, const uint8_t *pkt, size_t pkt_len, const uint8_t *body,
                  size_t len)
{
    if (!mqtt_flags_valid(first)) {
        return -1;
    }
    uint16_t pid;
    uint32_t n;
    switch (first >> 4) {
    case MQTT_CONNECT: {
        struct mqtt_connect m;
        if (mqtt_connect_decode(body, len, &m) < 0) {
            return -1;
        }
        inside(m.client_id, body, len);
        inside(m.username, body, len);
        inside(m.password, body, len);
        inside(m.will_topic, body, len);
        inside(m.will_msg, body, len);
        if (m.has_will) {
            map(m.will_topic, 0);
        }
        return 0;
    }
    case MQTT_PUBLISH: {
        struct mqtt_publish m;
        if (mqtt_publish_decode(first, body, len, &m) < 0) {
            return -1;
        }
        inside(m.topic, body, len);
        inside(m.payload, body, len);
        map(m.topic, 0);
        publish_roundtrip(first, pkt, pkt_len, &m);
        return 0;
    }
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE: {
        int has_qos = (first >> 4) == MQTT_SUBSCRIBE;
        if (mqtt_sub_decode(body, len, has_qos, &pid, &n) < 0) {
            return -1;
        }
        const uint8_t *p = body + 2;
        for (uint32_t i = 0; i < n; i++) {
            struct mqtt_str f;
            uint8_t qos = 0;
            mqtt_filter_next(&p, has_qos, &f, &qos);
            inside(f, body, len);
            if (qos > 2) {
                abort();
            }
            map(f, 1);
        }
        if (p != body + len) {
            abort();
        }
        return 0;
    }
    case MQTT_PUBACK:
    case MQTT_PUBREL:
        return mqtt_ack_decode(body, len, &pid) < 0 ? -1 : 0;
    case MQTT_PINGREQ:
    case MQTT_DISCONNECT:
        return len == 0 ? 0 : -1;
    default:
        return -1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    uint32_t limit = (data[0] & 1) ? 16384 : 1024 * 1024;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    while (n > 0) {
        uint8_t first;
        uint32_t rem;
        size_t hl;
        int rc = mqtt_hdr_parse(p, n, limit, &first, &rem, &hl);
        if (rc <= 0 || n - hl < rem) {
            break; /* closed, or waiting for more */
        }
        if (hl < 2 || hl > MQTT_HDR_MAX || rem > limit) {
            abort();
        }
        if (packet(first, p, hl + rem, p + hl, rem) < 0) {
            break;
        }
        p += hl + rem;
        n -= hl + rem;
    }
    return 0;
}

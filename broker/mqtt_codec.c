/*
 * mqtt_codec.c - MQTT 3.1.1 packets: fixed headers, the decoders of what
 * clients send and the encoders of what the server sends (mqtt_codec.h).
 */
#include "mqtt_codec.h"

#include "codec.h"

#include <string.h>

int mqtt_hdr_parse(const uint8_t *p, size_t n, uint32_t max_len, uint8_t *first, uint32_t *rem_len,
                   size_t *hdr_len)
{
    if (n < 2) {
        return 0;
    }
    uint32_t v = 0;
    for (size_t i = 1; i < MQTT_HDR_MAX; i++) {
        if (i >= n) {
            return 0;
        }
        v |= (uint32_t)(p[i] & 0x7f) << (7 * (i - 1));
        if (!(p[i] & 0x80)) {
            if (v > max_len) {
                return MQTT_ETOOBIG;
            }
            *first = p[0];
            *rem_len = v;
            *hdr_len = i + 1;
            return 1;
        }
    }
    return MQTT_EMALFORMED; /* a fifth length byte */
}

int mqtt_flags_valid(uint8_t first)
{
    uint8_t flags = first & 0x0f;
    switch (first >> 4) {
    case MQTT_PUBLISH:
        return ((flags >> 1) & 3) != 3;
    case MQTT_PUBREL:
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        return flags == 0x2;
    case MQTT_CONNECT:
    case MQTT_CONNACK:
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBCOMP:
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
    case MQTT_PINGREQ:
    case MQTT_PINGRESP:
    case MQTT_DISCONNECT:
        return flags == 0;
    default:
        return 0;
    }
}

/* ---- reading ------------------------------------------------------------ */

/* A cursor over one packet's body. */
struct rd {
    const uint8_t *p, *end;
};

static int rd_u8(struct rd *r, uint8_t *v)
{
    if (r->p == r->end) {
        return -1;
    }
    *v = *r->p++;
    return 0;
}

static int rd_u16(struct rd *r, uint16_t *v)
{
    if (r->end - r->p < 2) {
        return -1;
    }
    *v = (uint16_t)((r->p[0] << 8) | r->p[1]);
    r->p += 2;
    return 0;
}

/* Length-prefixed bytes (binary data: any bytes). */
static int rd_bytes(struct rd *r, struct mqtt_str *s)
{
    uint16_t n;
    if (rd_u16(r, &n) < 0 || (size_t)(r->end - r->p) < n) {
        return -1;
    }
    s->p = r->p;
    s->len = n;
    r->p += n;
    return 0;
}

/* A UTF-8 encoded string (1.5.3): valid UTF-8 without U+0000. */
static int rd_str(struct rd *r, struct mqtt_str *s)
{
    if (rd_bytes(r, s) < 0 || (s->len > 0 && !codec_utf8_valid(s->p, s->len))) {
        return -1;
    }
    return 0;
}

int mqtt_connect_decode(const uint8_t *body, size_t len, struct mqtt_connect *out)
{
    struct rd r = {body, body + len};
    struct mqtt_str name;
    uint8_t level, flags;
    struct mqtt_connect m;
    memset(&m, 0, sizeof(m));
    if (rd_bytes(&r, &name) < 0 || rd_u8(&r, &level) < 0) {
        return MQTT_EMALFORMED;
    }
    if (name.len == 6 && memcmp(name.p, "MQIsdp", 6) == 0) {
        return MQTT_EPROTOCOL; /* MQTT 3.1: answered with 0x01 as mosquitto does */
    }
    if (name.len != 4 || memcmp(name.p, "MQTT", 4) != 0) {
        return MQTT_EMALFORMED; /* 3.1.2.1: may close without CONNACK */
    }
    if (level != 4) {
        return MQTT_EPROTOCOL;
    }
    if (rd_u8(&r, &flags) < 0 || rd_u16(&r, &m.keepalive) < 0) {
        return MQTT_EMALFORMED;
    }
    m.level = level;
    m.is_clean = (flags >> 1) & 1;
    m.has_will = (flags >> 2) & 1;
    m.will_qos = (flags >> 3) & 3;
    m.will_retain = (flags >> 5) & 1;
    m.has_pass = (flags >> 6) & 1;
    m.has_user = (flags >> 7) & 1;
    /* 3.1.2.3: the reserved bit is 0; 3.1.2.4-6: no will, no will QoS or
     * retain; 3.1.2.9: no password without a user name. */
    if ((flags & 1) || m.will_qos == 3 || (!m.has_will && (m.will_qos || m.will_retain)) ||
        (m.has_pass && !m.has_user)) {
        return MQTT_EMALFORMED;
    }
    if (rd_str(&r, &m.client_id) < 0) {
        return MQTT_EMALFORMED;
    }
    if (m.has_will && (rd_str(&r, &m.will_topic) < 0 || rd_bytes(&r, &m.will_msg) < 0)) {
        return MQTT_EMALFORMED;
    }
    if (m.has_user && rd_str(&r, &m.username) < 0) {
        return MQTT_EMALFORMED;
    }
    if (m.has_pass && rd_bytes(&r, &m.password) < 0) {
        return MQTT_EMALFORMED;
    }
    if (r.p != r.end) {
        return MQTT_EMALFORMED;
    }
    *out = m;
    return 0;
}

int mqtt_publish_decode(uint8_t first, const uint8_t *body, size_t len, struct mqtt_publish *out)
{
    struct rd r = {body, body + len};
    struct mqtt_publish m;
    memset(&m, 0, sizeof(m));
    m.qos = (first >> 1) & 3;
    m.is_dup = (first >> 3) & 1;
    m.is_retain = first & 1;
    if (m.qos == 3 || (m.qos == 0 && m.is_dup)) {
        return MQTT_EMALFORMED; /* 3.3.1.2; 3.3.1-2: DUP 0 for QoS 0 */
    }
    if (rd_str(&r, &m.topic) < 0 || m.topic.len == 0) {
        return MQTT_EMALFORMED;
    }
    if (memchr(m.topic.p, '+', m.topic.len) || memchr(m.topic.p, '#', m.topic.len)) {
        return MQTT_EMALFORMED; /* 3.3.2-2 */
    }
    if (m.qos > 0 && (rd_u16(&r, &m.packet_id) < 0 || m.packet_id == 0)) {
        return MQTT_EMALFORMED;
    }
    m.payload.p = r.p;
    m.payload.len = (size_t)(r.end - r.p);
    *out = m;
    return 0;
}

int mqtt_ack_decode(const uint8_t *body, size_t len, uint16_t *packet_id)
{
    if (len != 2) {
        return MQTT_EMALFORMED;
    }
    uint16_t id = (uint16_t)((body[0] << 8) | body[1]);
    if (id == 0) {
        return MQTT_EMALFORMED;
    }
    *packet_id = id;
    return 0;
}

int mqtt_sub_decode(const uint8_t *body, size_t len, int has_qos, uint16_t *packet_id,
                    uint32_t *n_filters)
{
    struct rd r = {body, body + len};
    uint16_t id;
    uint32_t n = 0;
    if (rd_u16(&r, &id) < 0 || id == 0) {
        return MQTT_EMALFORMED;
    }
    while (r.p < r.end) {
        struct mqtt_str f;
        uint8_t q = 0;
        if (rd_str(&r, &f) < 0 || f.len == 0 || (has_qos && (rd_u8(&r, &q) < 0 || q > 2))) {
            return MQTT_EMALFORMED; /* 3.8.3-4: reserved bits of the QoS byte are 0 */
        }
        n++;
    }
    if (n == 0) {
        return MQTT_EMALFORMED; /* 3.8.3-3, 3.10.3-2 */
    }
    *packet_id = id;
    *n_filters = n;
    return 0;
}

void mqtt_filter_next(const uint8_t **p, int has_qos, struct mqtt_str *filter, uint8_t *qos)
{
    const uint8_t *q = *p;
    size_t n = (size_t)((q[0] << 8) | q[1]);
    filter->p = q + 2;
    filter->len = n;
    q += 2 + n;
    if (has_qos) {
        *qos = *q++;
    }
    *p = q;
}

/* ---- writing ------------------------------------------------------------ */

size_t mqtt_rem_len_size(uint32_t rem_len)
{
    return rem_len < 128 ? 1 : rem_len < 16384 ? 2 : rem_len < 2097152 ? 3 : 4;
}

size_t mqtt_hdr_put(uint8_t *out, uint8_t first, uint32_t rem_len)
{
    size_t n = 0;
    out[n++] = first;
    do {
        uint8_t b = rem_len & 0x7f;
        rem_len >>= 7;
        out[n++] = rem_len ? (uint8_t)(b | 0x80) : b;
    } while (rem_len);
    return n;
}

size_t mqtt_connack_put(uint8_t *out, int session_present, uint8_t code)
{
    out[0] = MQTT_CONNACK << 4;
    out[1] = 2;
    out[2] = session_present ? 1 : 0;
    out[3] = code;
    return 4;
}

size_t mqtt_ack_put(uint8_t *out, enum mqtt_type type, uint16_t packet_id)
{
    out[0] = (uint8_t)((unsigned)type << 4 | (type == MQTT_PUBREL ? 0x2u : 0u));
    out[1] = 2;
    out[2] = (uint8_t)(packet_id >> 8);
    out[3] = (uint8_t)packet_id;
    return 4;
}

size_t mqtt_suback_len(uint32_t n)
{
    return 1 + mqtt_rem_len_size(2 + n) + 2 + n;
}

size_t mqtt_suback_put(uint8_t *out, uint16_t packet_id, const uint8_t *codes, uint32_t n)
{
    size_t k = mqtt_hdr_put(out, MQTT_SUBACK << 4, 2 + n);
    out[k++] = (uint8_t)(packet_id >> 8);
    out[k++] = (uint8_t)packet_id;
    memcpy(out + k, codes, n);
    return k + n;
}

size_t mqtt_pingresp_put(uint8_t *out)
{
    out[0] = MQTT_PINGRESP << 4;
    out[1] = 0;
    return 2;
}

size_t mqtt_publish_len(size_t topic_len, size_t payload_len, uint8_t qos)
{
    if (topic_len > 65535) {
        return 0;
    }
    size_t rem = 2 + topic_len + (qos ? 2u : 0u);
    if (payload_len > MQTT_REM_LEN_MAX - rem) {
        return 0;
    }
    rem += payload_len;
    return 1 + mqtt_rem_len_size((uint32_t)rem) + rem;
}

size_t mqtt_publish_head_put(uint8_t *out, const char *topic, size_t topic_len, char from, char to,
                             size_t payload_len, uint8_t qos, uint16_t packet_id, int is_retain)
{
    uint32_t rem = (uint32_t)(2 + topic_len + (qos ? 2u : 0u) + payload_len);
    uint8_t first = (uint8_t)(MQTT_PUBLISH << 4 | (unsigned)(qos & 3) << 1 | (is_retain ? 1u : 0u));
    size_t k = mqtt_hdr_put(out, first, rem);
    out[k++] = (uint8_t)(topic_len >> 8);
    out[k++] = (uint8_t)topic_len;
    for (size_t i = 0; i < topic_len; i++) {
        char ch = topic[i];
        out[k++] = (uint8_t)(from != 0 && ch == from ? to : ch);
    }
    if (qos) {
        out[k++] = (uint8_t)(packet_id >> 8);
        out[k++] = (uint8_t)packet_id;
    }
    return k;
}

size_t mqtt_publish_put(uint8_t *out, const char *topic, size_t topic_len, char from, char to,
                        const void *payload, size_t payload_len, uint8_t qos, uint16_t packet_id,
                        int is_retain)
{
    size_t k = mqtt_publish_head_put(out, topic, topic_len, from, to, payload_len, qos, packet_id,
                                     is_retain);
    if (payload_len > 0) {
        memcpy(out + k, payload, payload_len);
    }
    return k + payload_len;
}

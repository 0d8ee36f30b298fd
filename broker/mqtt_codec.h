/*
 * mqtt_codec.h - MQTT 3.1.1 packets on the wire (prefix mqtt_), pure.
 *
 * A packet is a fixed header (one byte: type in the high nibble, flags in
 * the low one; then the remaining length, a base-128 varint of 1 to 4
 * bytes) and that many bytes of variable header and payload. The decoders
 * here read from the caller's bytes and point into them (struct mqtt_str:
 * not NUL-terminated); nothing is allocated and nothing is copied. Every
 * length is checked against the bytes that are there before it is used,
 * and mqtt_hdr_parse() refuses a remaining length above the caller's limit
 * before the caller allocates anything for the packet. The encoders write
 * into a buffer the caller sized with the matching *_len function.
 *
 * What the decoders refuse is what MQTT 3.1.1 calls malformed: reserved
 * flag bits that are not as the spec fixes them, strings running past the
 * packet, strings that are not UTF-8 or hold U+0000, QoS 3, a packet id 0,
 * a SUBSCRIBE or UNSUBSCRIBE without topic filters, bytes left over. The
 * server answers a malformed packet by closing the connection.
 *
 * Pure module: no IO, no threads, no logging, no broker headers.
 */
#ifndef FERRY_MQTT_CODEC_H
#define FERRY_MQTT_CODEC_H

#include <stddef.h>
#include <stdint.h>

/* Packet types (the fixed header's high nibble). */
enum mqtt_type {
    MQTT_CONNECT = 1,
    MQTT_CONNACK = 2,
    MQTT_PUBLISH = 3,
    MQTT_PUBACK = 4,
    MQTT_PUBREC = 5,
    MQTT_PUBREL = 6,
    MQTT_PUBCOMP = 7,
    MQTT_SUBSCRIBE = 8,
    MQTT_SUBACK = 9,
    MQTT_UNSUBSCRIBE = 10,
    MQTT_UNSUBACK = 11,
    MQTT_PINGREQ = 12,
    MQTT_PINGRESP = 13,
    MQTT_DISCONNECT = 14,
};

/* Errors (negative, as everywhere in ferry). */
#define MQTT_EMALFORMED (-1) /* not a valid packet: close the connection */
#define MQTT_ETOOBIG (-2)    /* remaining length above the limit: close */
#define MQTT_EPROTOCOL (-3)  /* CONNECT: not "MQTT" level 4 (CONNACK 0x01) */

/* CONNACK return codes (3.2.2.3). */
#define MQTT_CONNACK_ACCEPTED 0x00
#define MQTT_CONNACK_BAD_PROTOCOL 0x01
#define MQTT_CONNACK_BAD_CLIENT_ID 0x02
#define MQTT_CONNACK_UNAVAILABLE 0x03
#define MQTT_CONNACK_BAD_LOGIN 0x04
#define MQTT_CONNACK_NOT_AUTHORIZED 0x05

#define MQTT_SUBACK_FAILURE 0x80
#define MQTT_REM_LEN_MAX 268435455u /* 4 varint bytes */
#define MQTT_HDR_MAX 5u             /* fixed header: 1 + at most 4 */

/* Bytes of a packet; p is NULL only when len is 0. */
struct mqtt_str {
    const uint8_t *p;
    size_t len;
};

/*
 * Parse a fixed header at p[0..n). Returns 1 and fills *first (type and
 * flags), *rem_len and *hdr_len when the header is complete; 0 when more
 * bytes are needed (n < 5 and the varint goes on); MQTT_EMALFORMED when the
 * varint runs to a fifth byte; MQTT_ETOOBIG when rem_len > max_len. The
 * body itself need not be there yet.
 */
int mqtt_hdr_parse(const uint8_t *p, size_t n, uint32_t max_len, uint8_t *first, uint32_t *rem_len,
                   size_t *hdr_len);

/* Are flags (the low nibble) what the spec fixes for this packet type?
 * PUBLISH: any but QoS 3. PUBREL, SUBSCRIBE, UNSUBSCRIBE: 0x2. Others: 0.
 * Unknown types (0, 15): never. */
int mqtt_flags_valid(uint8_t first);

struct mqtt_connect {
    uint8_t level;    /* protocol level: 4 for 3.1.1 */
    uint8_t is_clean; /* clean session */
    uint8_t has_will; /* will_topic, will_msg, will_qos, will_retain */
    uint8_t will_qos; /* 0..2 */
    uint8_t will_retain;
    uint8_t has_user;   /* username present */
    uint8_t has_pass;   /* password present (only with a username) */
    uint16_t keepalive; /* seconds; 0: none */
    struct mqtt_str client_id, will_topic, will_msg, username, password;
};

/* CONNECT's variable header and payload (body, len: the remaining length).
 * 0 and *out filled; MQTT_EPROTOCOL when the protocol name is "MQTT" but
 * the level is not 4 (answer CONNACK 0x01), or the name is "MQIsdp" (3.1);
 * MQTT_EMALFORMED otherwise. */
int mqtt_connect_decode(const uint8_t *body, size_t len, struct mqtt_connect *out);

struct mqtt_publish {
    uint8_t qos; /* 0..2 */
    uint8_t is_dup;
    uint8_t is_retain;
    uint16_t packet_id; /* QoS 1 and 2: not 0; QoS 0: 0 */
    struct mqtt_str topic;
    struct mqtt_str payload;
};

/* PUBLISH (first: its fixed header's first byte). The topic name must be
 * non-empty UTF-8 without U+0000 and without the wildcards + and #. */
int mqtt_publish_decode(uint8_t first, const uint8_t *body, size_t len, struct mqtt_publish *out);

/* PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK: exactly a packet id (not 0). */
int mqtt_ack_decode(const uint8_t *body, size_t len, uint16_t *packet_id);

/* SUBSCRIBE (has_qos 1) or UNSUBSCRIBE (0): the packet id and how many
 * topic filters follow, all checked (non-empty UTF-8, and for SUBSCRIBE a
 * requested QoS byte of 0..2). Then read them with mqtt_filter_next from
 * body + 2. */
int mqtt_sub_decode(const uint8_t *body, size_t len, int has_qos, uint16_t *packet_id,
                    uint32_t *n_filters);
/* The next topic filter of a checked (UN)SUBSCRIBE: *p moves past it;
 * *qos (if has_qos) is its requested QoS. */
void mqtt_filter_next(const uint8_t **p, int has_qos, struct mqtt_str *filter, uint8_t *qos);

/* Bytes of a remaining length's varint (1..4). */
size_t mqtt_rem_len_size(uint32_t rem_len);
/* Write a fixed header; returns its length (1 + mqtt_rem_len_size). */
size_t mqtt_hdr_put(uint8_t *out, uint8_t first, uint32_t rem_len);

/* CONNACK: 4 bytes. */
size_t mqtt_connack_put(uint8_t *out, int session_present, uint8_t code);
/* PUBACK, PUBREC, PUBCOMP, UNSUBACK (flags 0) or PUBREL (0x2): 4 bytes. */
size_t mqtt_ack_put(uint8_t *out, enum mqtt_type type, uint16_t packet_id);
/* SUBACK with n return codes: 4 + n bytes when n < 126 (mqtt_suback_len). */
size_t mqtt_suback_len(uint32_t n);
size_t mqtt_suback_put(uint8_t *out, uint16_t packet_id, const uint8_t *codes, uint32_t n);
/* PINGRESP: 2 bytes. */
size_t mqtt_pingresp_put(uint8_t *out);

/* The whole PUBLISH for a topic of topic_len bytes and a payload of
 * payload_len bytes at qos; 0 if its remaining length would exceed
 * MQTT_REM_LEN_MAX or the topic 65535 bytes. */
size_t mqtt_publish_len(size_t topic_len, size_t payload_len, uint8_t qos);
/* Write it (mqtt_publish_len bytes). The topic is written as given, with
 * every byte equal to from replaced by to (from 0: as is), so that a ferry
 * topic becomes an MQTT one in the same pass. packet_id: QoS > 0 only. */
size_t mqtt_publish_put(uint8_t *out, const char *topic, size_t topic_len, char from, char to,
                        const void *payload, size_t payload_len, uint8_t qos, uint16_t packet_id,
                        int is_retain);
/* Its head only: all of it but the payload (mqtt_publish_len - payload_len
 * bytes), so that the payload can be written from where it is. */
size_t mqtt_publish_head_put(uint8_t *out, const char *topic, size_t topic_len, char from, char to,
                             size_t payload_len, uint8_t qos, uint16_t packet_id, int is_retain);

#endif

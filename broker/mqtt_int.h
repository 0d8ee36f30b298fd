/*
 * mqtt_int.h - what the MQTT connection's files share (private to broker/):
 *   mqtt_conn.c  its life, the packets it reads, their framing (mqtt_conn_)
 *   mqtt_out.c   what it is sent: ferry's answers as MQTT packets,
 *                deliveries as PUBLISH, retained messages
 * Everything here belongs to the IO thread that owns the connection.
 */
#ifndef FERRY_MQTT_INT_H
#define FERRY_MQTT_INT_H

#include "io_int.h"
#include "mqtt_codec.h"

#include <stddef.h>
#include <stdint.h>

/* The header a message published over MQTT at QoS 0 carries (value "0"):
 * it is delivered to MQTT subscribers at QoS 0. */
#define MQTT_QOS_HEADER "mqtt-qos"

/* One SUBSCRIBE topic filter in force. */
struct mqtt_filter {
    char *text; /* the MQTT filter as subscribed (malloc'd, not NUL-terminated) */
    size_t len;
    uint8_t qos;           /* granted: 0 or 1 */
    uint8_t n_ids;         /* ferry subscriptions made: "x/#" needs two (x.> and x) */
    uint8_t n_wait;        /* of those, SubAcks still to come */
    uint8_t is_issuing;    /* its Subscribes are being handed to handle_subscribe */
    uint8_t is_failed;     /* one was refused: SUBACK 0x80, the others removed */
    uint8_t want_retained; /* accepted: its retained messages follow the SUBACK */
    uint32_t ack_idx;      /* its place in the SUBACK being gathered */
    uint64_t sub_ids[2];   /* the ferry sub_ids */
};

/* The SUBACK of the SUBSCRIBE being answered: one code per filter. SubAcks
 * of ferry come synchronously or, when a worker queue is full, later (the
 * connection is then paused, so there is never more than one of these). */
struct mqtt_suback {
    uint16_t packet_id;
    uint8_t is_issuing;
    uint32_t n, left;
    uint8_t codes[];
};

struct mqtt_sess {
    uint8_t *in; /* a packet not complete yet (and what follows a pause) */
    size_t in_len, in_cap;
    struct mqtt_filter *f;
    uint32_t n_f, f_cap;
    struct mqtt_suback *sa; /* NULL: none being gathered */
    uint64_t next_sub_id;
    uint64_t *pid_used; /* 65536 bits: QoS 1 packet ids awaiting PUBACK; NULL until needed */
    uint32_t n_inflight;
    uint16_t next_pid;
    uint16_t keepalive_s;
    uint8_t has_user;     /* CONNECT named a user: a refusal is 0x04, else 0x05 */
    uint8_t is_connected; /* CONNACK 0 went out */
    /* The will (CONNECT), published if the connection ends without a
     * DISCONNECT: its ferry topic (NUL-terminated) and message (malloc'd). */
    char *will_topic;
    size_t will_topic_len;
    uint8_t *will_msg;
    size_t will_len;
    uint8_t will_qos;
};

/* A malformed packet or a protocol violation: closed without an answer. */
void mqtt__close(struct iot *t, struct conn *c, const char *why);
void mqtt__send_connack(struct iot *t, struct conn *c, uint8_t code);
/* PUBACK, PUBREC, PUBCOMP, UNSUBACK for packet id pid. */
void mqtt__send_ack(struct iot *t, struct conn *c, enum mqtt_type type, uint16_t pid);
/* The client's PUBACK for a QoS 1 delivery: its packet id is free again. */
void mqtt__pid_release(struct mqtt_sess *mq, uint16_t p);
/* Remove filter k and the ferry subscriptions it made. */
void mqtt__filter_remove(struct iot *t, struct conn *c, uint32_t k);
/* Filter k has all its SubAcks (or none to wait for): its SUBACK code. */
void mqtt__filter_settle(struct iot *t, struct conn *c, uint32_t k);
/* The SUBACK being gathered, once complete; then the retained messages. */
void mqtt__suback_maybe_send(struct iot *t, struct conn *c);

#endif

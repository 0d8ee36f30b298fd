/*
 * mqtt_int.h - what the MQTT connection's files share (private to broker/):
 *   mqtt_conn.c  its life, the packets it reads, their framing (mqtt_conn_)
 *   mqtt_out.c   what it is sent: ferry's answers as MQTT packets,
 *                deliveries as PUBLISH, retained messages
 *   mqtt_session.c  clean session 0: subscriptions as durable consumers,
 *                QoS 1 deliveries acked to them on PUBACK
 *   mqtt_sys_out.c  the $SYS topics (mqtt_sys.h): who may subscribe, their
 *                values after the SUBACK and every mqtt_sys_interval
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
    uint8_t is_restored;   /* restored from the session (no SUBACK, no retained) */
    uint8_t is_durable;    /* its ferry subscriptions are the session's durables */
    uint8_t is_sys;        /* a $SYS filter: served by mqtt_sys_out.c, no ferry subscription */
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

/* A QoS 1 delivery of a durable (a session's filter) awaiting its PUBACK:
 * the PUBACK acks seq to subscription sub_id (topic: the message's ferry
 * topic, NUL-terminated, malloc'd; a wildcard durable's Ack names it). */
struct mqtt_inflight {
    uint16_t pid;
    uint64_t sub_id;
    uint64_t seq;
    char *topic;
};

/* The longest session key (mqtt_session.c): "mqtt-QK-" + hex(user) + "-" +
 * hex(client id) must be a durable name (CONS_NAME_MAX bytes). */
#define MQTT_SESS_KEY_MAX 192

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
    /* The session (mqtt_session.c): its key, hex(user) "-" hex(client id)
     * (NUL-terminated; "" when the client id is empty), whether it is kept
     * (clean session 0), and the durables' deliveries awaiting PUBACK. */
    char sess_key[MQTT_SESS_KEY_MAX + 1];
    uint8_t is_persistent;
    /* Takeover (mqtt_clients.h): the key is claimed in srv->mqtt_clients;
     * the connection waits for the previous holder to end. */
    uint8_t is_claimed;
    uint8_t is_waiting;
    struct mqtt_inflight *ifl;
    uint32_t n_ifl, ifl_cap;
    /* $SYS (mqtt_sys_out.c): when its values go out next (t->now's clock,
     * ms; 0: no $SYS filter, or mqtt_sys_interval 0). */
    uint64_t sys_next_ms;
};

/* How long a CONNECT taking a client id over waits for the connection that
 * held it to end before it is refused (CONNACK 0x03). */
#define MQTT_TAKEOVER_WAIT_MS 5000u

/* Payloads from this size are written to the socket from the routed batch
 * (staged) rather than copied into the connection's buffer. */
#define MQTT_STAGE_MIN 512u

/* Arm the connection's timer for MQTT's keepalive (none for 0). */
void mqtt__keepalive_arm(struct iot *t, struct conn *c);
/* A malformed packet or a protocol violation: closed without an answer. */
void mqtt__close(struct iot *t, struct conn *c, const char *why);
void mqtt__send_connack(struct iot *t, struct conn *c, uint8_t code);
/* CONNACK with its session present flag. */
void mqtt__send_connack_sp(struct iot *t, struct conn *c, int session_present, uint8_t code);
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

/* Write one PUBLISH of a ferry topic at qos (DUP flag: is_dup) into c's
 * buffer; with batch (payload lying in batch->data), a payload of
 * MQTT_STAGE_MIN bytes or more is staged by reference instead (written
 * from the batch, as ferry's Deliver bodies are). Returns its packet id (0 for QoS 0), or -1 when
 * it was not written (the connection is closing or was failed). */
int mqtt__publish_out(struct iot *t, struct conn *c, const char *topic, size_t tlen,
                      const void *payload, size_t plen, int qos, int is_retain, int is_dup,
                      struct pub_batch *batch);
/* Subscribe filter s (granted qos) for the SUBACK slot idx of the SUBSCRIBE
 * being answered, or (is_restore) for the session being resumed. */
void mqtt__subscribe_one(struct iot *t, struct conn *c, struct mqtt_str s, uint8_t qos,
                         uint32_t idx, int is_restore);

/* Add filter s (granted qos) for SUBACK slot ack_idx: its index, or -1
 * (no memory). */
int mqtt__filter_add(struct conn *c, struct mqtt_str s, uint8_t qos, uint32_t ack_idx);

/* ---- mqtt_sys_out.c ---- */

/* A SUBSCRIBE's filter s of the $SYS tree (mqtt_sys_is_sys), ferry form
 * pat[0..plen), for SUBACK slot idx: granted at QoS 0 when an auth file is
 * in force and the user may subscribe to pat; it makes no ferry
 * subscription and is not kept in a session. 0 (the filter added and
 * settled), or -1 when refused (logged; the caller answers 0x80). */
int mqtt__sys_subscribe(struct iot *t, struct conn *c, struct mqtt_str s, const char *pat,
                        size_t plen, uint32_t idx);
/* Filter k (a $SYS one) was granted and its SUBACK sent: the current
 * values of the topics it matches, with the RETAIN flag. */
void mqtt__sys_send_filter(struct iot *t, struct conn *c, uint32_t k);
/* The connection's timer in ST_OPEN, no takeover waiting: the $SYS values
 * if they are due. 1 when the timer is armed again (no keepalive), 0 for
 * the keepalive check. */
int mqtt__sys_on_timer(struct iot *t, struct conn *c);

/* ---- mqtt_session.c ---- */

/* CONNECT: keep the client id (hex) and the clean flag. Returns 0, or -1
 * when a kept session cannot have this client id (too long: CONNACK 0x02
 * sent, the connection closed). */
int mqtt__session_prepare(struct iot *t, struct conn *c, const struct mqtt_connect *m);
/* Logged in: the session's key (the user, the client id); a clean session
 * deletes the durables of the key's session, a kept one finds its filters.
 * Sends CONNACK (session present or not), then restores the kept filters.
 * A key too long: CONNACK 0x02 and closed. */
void mqtt__session_connected(struct iot *t, struct conn *c);
/* The durable name of filter f's ferry subscription i (0: the filter, 1:
 * "x" of "x/#") at granted qos, NUL-terminated into name (CONS_NAME_MAX + 1
 * bytes). */
void mqtt__session_name(const struct mqtt_sess *mq, uint8_t qos, int i, char *name);
/* Make fs a subscription to the session's durable (as mqtt__session_name
 * says; name is its storage): explicit acks, no dead letters. */
void mqtt__session_sub_opts(const struct mqtt_sess *mq, uint8_t qos, int i, char *name,
                            Ferry__Subscribe *fs);
/* The session's filter text (MQTT) at pattern pat was subscribed again or
 * unsubscribed: delete its durables (for a new subscription: those of the
 * other QoS, keep_qos; -1: all). */
void mqtt__session_forget(struct iot *t, struct conn *c, const char *pat, size_t plen,
                          size_t parent, int keep_qos);
/* A durable delivery: ack it now (QoS 0: pid 0) or on PUBACK pid. */
void mqtt__session_track(struct iot *t, struct conn *c, uint16_t pid, uint64_t sub_id, uint64_t seq,
                         const char *topic, size_t tlen);
/* The client's PUBACK pid: its durable's Ack. */
void mqtt__session_puback(struct iot *t, struct conn *c, uint16_t pid);
/* Free what the session holds in memory (the connection ends). */
void mqtt__session_free(struct mqtt_sess *mq);

#endif

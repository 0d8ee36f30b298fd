/*
 * mqtt_sys_out.c - the $SYS topics (mqtt_sys.h) on an MQTT connection
 * (mqtt_int.h): who may subscribe, and their values as PUBLISH packets.
 *
 * "Only if ACL-protected": a $SYS filter is granted when an auth file is in
 * force and the user's rules let it subscribe to the filter's ferry form
 * ("$SYS/#" is "$SYS.>": `allow NAME subscribe $SYS.>`); without an auth
 * file every $SYS filter gets 0x80. Granted at QoS 0, it makes no ferry
 * subscription: the values come from the server's counters, read with
 * relaxed loads (stats.h, store_stats) and the retained table's count,
 * never through a topic. Right after the SUBACK the filter gets the
 * values of the topics it matches with the RETAIN flag, as if they were
 * retained (mosquitto keeps them so); then, every mqtt_sys_interval
 * seconds while the connection has a $SYS filter, each topic one of them
 * matches once, RETAIN clear (an established subscription, 3.3.1.3).
 *
 * The updates use the connection's one timer, on its own IO thread: it
 * fires at the earlier of the keepalive check and sys_next_ms
 * (mqtt_conn_timer_due). A $SYS filter is not kept in a session (clean
 * session 0): it is not a durable, and a client subscribes to it again
 * after a reconnect.
 */
#include "mqtt_int.h"
#include "mqtt_retain.h"
#include "mqtt_sys.h"
#include "mqtt_topic.h"

#include <string.h>

/* Now's figures. Any IO thread: every source is safe to read from it. */
static void sys_gather(struct server *s, struct mqtt_sys_figures *f)
{
    struct stats_snapshot st;
    server_stats(s, &st);
    uint64_t now = (uint64_t)(now_realtime_ns() / 1000000);
    memset(f, 0, sizeof(*f));
    f->version = FERRY_VERSION;
    f->uptime_s = now > s->start_ms ? (now - s->start_ms) / 1000 : 0;
    f->clients_connected = st.conns;
    f->conns_accepted = st.conns_total;
    f->packets_in = st.frames_in;
    f->packets_out = st.frames_out;
    f->publish_in = st.msgs_in;
    f->publish_out = st.msgs_out;
    f->bytes_in = st.bytes_in;
    f->bytes_out = st.bytes_out;
    f->subscriptions = st.subs;
    f->slow_consumers = st.slow_consumers;
    if (s->mqtt_retained != NULL) {
        f->has_retained = 1;
        f->retained = mqtt_retain_count(s->mqtt_retained);
    }
    if (s->store != NULL) {
        struct store_stats ss;
        store_stats(s->store, &ss);
        f->has_store = 1;
        f->store_messages = ss.n_appends;
        f->store_commits = ss.n_commits;
        f->store_topics = ss.n_topics;
        f->store_bytes = ss.map_used;
    }
}

/* mqtt_sys_each's fn: one topic to the connection, if filter k or (k ==
 * UINT32_MAX) one of its $SYS filters matches it. */
struct sys_to {
    struct iot *t;
    struct conn *c;
    uint32_t k;
};

static int sys_wanted(const struct mqtt_sess *mq, uint32_t k, const char *name, size_t len)
{
    if (k != UINT32_MAX) {
        return mqtt_topic_match(mq->f[k].text, mq->f[k].len, name, len);
    }
    for (uint32_t i = 0; i < mq->n_f; i++) {
        if (mq->f[i].is_sys && mqtt_topic_match(mq->f[i].text, mq->f[i].len, name, len)) {
            return 1;
        }
    }
    return 0;
}

static void sys_one(void *arg, const char *name, size_t name_len, const char *payload,
                    size_t payload_len)
{
    struct sys_to *a = arg;
    if (a->c->state == ST_OPEN && sys_wanted(a->c->mq, a->k, name, name_len)) {
        /* QoS 0; RETAIN for a new subscription's values (3.3.1-6) */
        mqtt__publish_out(a->t, a->c, name, name_len, payload, payload_len, 0, a->k != UINT32_MAX,
                          0, NULL);
    }
}

static void sys_send(struct iot *t, struct conn *c, uint32_t k)
{
    struct mqtt_sys_figures f;
    sys_gather(t->srv, &f);
    struct sys_to a = {t, c, k};
    mqtt_sys_each(&f, sys_one, &a);
}

void mqtt__sys_send_filter(struct iot *t, struct conn *c, uint32_t k)
{
    sys_send(t, c, k);
}

int mqtt__sys_subscribe(struct iot *t, struct conn *c, struct mqtt_str s, const char *pat,
                        size_t plen, uint32_t idx)
{
    struct mqtt_sess *mq = c->mq;
    if (c->auth == NULL) {
        log_client_info(c->client_id, c->peer,
                        "MQTT SUBSCRIBE %.*s refused: $SYS topics are served only under an "
                        "auth file that allows them",
                        (int)(s.len > 256 ? 256 : s.len), (const char *)s.p);
        return -1;
    }
    if (!conn_may_subscribe(c, pat, plen)) {
        conn_acl_denied(t, c, "subscribe", pat, plen);
        return -1;
    }
    int k = mqtt__filter_add(c, s, 0, idx);
    if (k < 0) {
        return -1;
    }
    mq->f[k].is_sys = 1;
    mqtt__filter_settle(t, c, (uint32_t)k);
    uint32_t interval = t->srv->cfg.mqtt_sys_interval;
    if (interval > 0 && mq->sys_next_ms == 0) {
        mq->sys_next_ms = t->now + (uint64_t)interval * 1000u;
        mqtt__keepalive_arm(t, c); /* arms the timer for the earlier of the two */
    }
    return 0;
}

uint64_t mqtt_conn_timer_due(const struct conn *c, uint64_t when)
{
    uint64_t sys = c->mq->sys_next_ms;
    return sys != 0 && sys < when ? sys : when;
}

int mqtt__sys_on_timer(struct iot *t, struct conn *c)
{
    struct mqtt_sess *mq = c->mq;
    if (mq->sys_next_ms != 0 && t->now >= mq->sys_next_ms) {
        int any = 0;
        for (uint32_t i = 0; i < mq->n_f && !any; i++) {
            any = mq->f[i].is_sys;
        }
        /* Unsubscribed from all: no more updates until the next one. */
        mq->sys_next_ms = any ? t->now + (uint64_t)t->srv->cfg.mqtt_sys_interval * 1000u : 0;
        if (any) {
            sys_send(t, c, UINT32_MAX);
        }
    }
    if (c->state != ST_OPEN) {
        return 1; /* closed by a full output: its own timer is set */
    }
    if (c->keepalive_ms == 0) {
        if (mq->sys_next_ms != 0) {
            conn_timer_arm(t, c, mq->sys_next_ms);
        } else {
            rx_timer_stop(t->rx, &c->timer);
        }
        return 1;
    }
    return 0; /* conn_on_timer checks the keepalive and arms the timer again */
}

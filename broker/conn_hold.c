/*
 * conn_hold.c - cluster mode: a frame whose topic is not placed yet.
 *
 * The first Publish, Subscribe or TopicCreate of a topic this broker has
 * not seen placed asks the controller to place it (cluster.h). Instead of
 * waiting for the answer on the IO thread, which would stall every other
 * connection of the thread, the frame is held:
 *   - a copy of it goes to c->hold_frame, and c is not read any further
 *     (is_auth_pending), so the frames behind it keep their order;
 *   - c's one timer is set to the deadline (CLU_PLACE_WAIT_MS after the
 *     frame first came);
 *   - the cluster's placed hook wakes every IO thread when the view gains
 *     placements; before sleeping, a thread with held frames compares the
 *     placement generation with the one it last acted on and, if it grew,
 *     hands each held frame to iot_handle_frame() again.
 * A frame handled again finds its topic placed (served, or NOT_OWNER), or
 * is held again with the same deadline; at the deadline it is refused with
 * ERROR_UNAVAILABLE, as the blocking wait did. Then c is read again.
 *
 * MQTT connections keep the bounded wait inside clu_route(): their packets
 * are not frames to hand back (a rare cost: once per topic per broker).
 */
#include "io_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int held_add(struct iot *t, uint64_t ref)
{
    if (t->n_held == t->held_cap) {
        uint32_t cap = t->held_cap ? t->held_cap * 2 : 16;
        uint64_t *v = realloc(t->held, cap * sizeof(*v));
        if (v == NULL) {
            return -ENOMEM;
        }
        t->held = v;
        t->held_cap = cap;
    }
    t->held[t->n_held++] = ref;
    return 0;
}

static void held_remove(struct iot *t, uint64_t ref)
{
    for (uint32_t i = 0; i < t->n_held; i++) {
        if (t->held[i] == ref) {
            t->held[i] = t->held[--t->n_held];
            return;
        }
    }
}

/* Keep the frame being handled; c waits, unread, until the deadline. */
static int hold(struct iot *t, struct conn *c, uint64_t deadline)
{
    uint8_t *f = malloc(t->frame_len ? t->frame_len : 1);
    if (f == NULL || held_add(t, conn_ref_of(t, c)) < 0) {
        free(f);
        return -ENOMEM;
    }
    memcpy(f, t->frame, t->frame_len);
    c->hold_frame = f;
    c->hold_len = (uint32_t)t->frame_len;
    c->hold_deadline = deadline;
    c->is_auth_pending = 1;
    conn_read_stop(t, c);
    conn_timer_arm(t, c, deadline);
    return 0;
}

enum clu_verdict conn_clu_route(struct iot *t, struct conn *c, const char *topic, size_t len,
                                char *text, size_t text_cap, char *owner, size_t owner_cap)
{
    int may_hold = t->frame_conn == c && c->mq == NULL;
    enum clu_verdict v = clu_route(t->srv->cluster, topic, len, may_hold ? 0 : CLU_PLACE_WAIT_MS,
                                   text, text_cap, owner, owner_cap);
    if (v != CLU_PENDING) {
        return v;
    }
    uint64_t deadline = t->replaying == c ? c->hold_deadline : t->now + CLU_PLACE_WAIT_MS;
    if (t->now < deadline && hold(t, c, deadline) == 0) {
        return CLU_PENDING;
    }
    int tl = len > 200 ? 200 : (int)len;
    snprintf(text, text_cap,
             "topic %.*s is not placed yet (no controller, or ZooKeeper is slow); retry", tl,
             topic);
    return CLU_UNAVAILABLE;
}

/* Handle c's held frame again; unless it is held again (or c closed), read
 * c again from where it stopped. */
static void replay(struct iot *t, struct conn *c)
{
    uint8_t *f = c->hold_frame;
    size_t n = c->hold_len;
    c->hold_frame = NULL;
    c->is_auth_pending = 0;
    t->replaying = c;
    iot_handle_frame(t, c, f, n);
    t->replaying = NULL;
    free(f);
    if (c->state != ST_OPEN || c->hold_frame != NULL) {
        return;
    }
    c->last_rx_ms = t->now; /* not read while it waited: a new interval */
    conn_timer_arm(t, c, c->last_rx_ms + (uint64_t)c->keepalive_ms * 3 / 2);
    conn_process_frames(t, c); /* what had come behind it */
    if (!c->is_paused && !c->is_auth_pending && c->state == ST_OPEN) {
        conn_read_start(t, c); /* (paused: iot_resume_paused reads it again) */
    }
    conn_out_check(t, c);
}

void conn_held_poll(struct iot *t)
{
    uint64_t gen = clu_placed_gen(t->srv->cluster);
    if (gen == t->held_gen) {
        return;
    }
    t->held_gen = gen;
    /* Take the list: a frame held again adds itself to a new one. */
    uint64_t *v = t->held;
    uint32_t n = t->n_held;
    t->held = NULL;
    t->n_held = t->held_cap = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct conn *c = conn_by_ref(t, v[i]);
        if (c != NULL && c->state == ST_OPEN && c->hold_frame != NULL) {
            replay(t, c);
        }
    }
    free(v);
}

void conn_held_expire(struct iot *t, struct conn *c)
{
    held_remove(t, conn_ref_of(t, c));
    replay(t, c); /* past its deadline: refused unless placed meanwhile */
}

void conn_held_drop(struct iot *t, struct conn *c)
{
    if (c->hold_frame != NULL) {
        held_remove(t, conn_ref_of(t, c));
        free(c->hold_frame);
        c->hold_frame = NULL;
    }
}

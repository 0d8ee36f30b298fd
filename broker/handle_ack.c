/*
 * handle_ack.c - Ack: a durable consumer's acknowledgement (consumer.h).
 */
#include "io_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void handle_ack(struct iot *t, struct conn *c, Ferry__Ack *m)
{
    struct catchup *e = cu_find(c, m->sub_id);
    if (e != NULL && e->is_group) {
        return; /* a queue group without acks */
    }
    if (e != NULL && cu_is_root(e)) {
        /* A wildcard durable: sequences are per topic. */
        size_t tlen = m->topic ? strlen(m->topic) : 0;
        if (tlen == 0) {
            conn_send_error(
                t, c, FERRY__ERROR_CODE__ERROR_INVALID_ARGUMENT,
                "an Ack to a wildcard durable must name the message's topic (Ack.topic)", m->sub_id,
                FERRY__ERROR__REF_KIND__REF_SUBSCRIPTION, 0);
            return;
        }
        e = cu_wd_position(t, c, e->sub, m->topic, tlen, 0);
    }
    if (e == NULL || e->cons == NULL) {
        return; /* a subscription without explicit acks */
    }
    int kind = m->kind == FERRY__ACK__KIND__NAK ? 1 : m->kind == FERRY__ACK__KIND__TERM ? 2 : 0;
    c->has_dur_acks = 1; /* the next Ping confirms it (handle_ping) */
    if (cons_ack(e->cons, m->sequence, kind) && kind == 1) {
        t->next_dur_scan = 0; /* redeliver it this round */
    }
    if (e->is_started && e->is_reading) {
        cu_list(t, c); /* it may have been full */
    }
}

/*
 * handle_backup.c - the IO thread's part of a hot backup (backup.h): the
 * BackupRequest, the backup thread's frames (R_BACKUP), and the credit
 * that paces the thread by what the connection has written.
 *
 * An IO thread holds at most one backup's credit (t->backup_*): one backup
 * runs per server, on one connection. Credit for the chunks queued on the
 * connection goes back once its output is down to BACKUP_LOW_DIV-th of
 * max_outbound_bytes; a connection found closed (a chunk for it, or the
 * credit check after a round) cancels the backup.
 */
#include "backup.h"
#include "io_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKUP_LOW_DIV 4u /* credit back at a quarter of max_outbound_bytes */

static void reply_error(struct iot *t, struct conn *c, uint64_t id, Ferry__ErrorCode code,
                        const char *text)
{
    Ferry__AdminReply r = FERRY__ADMIN_REPLY__INIT;
    r.id = id;
    r.code = code;
    r.text = (char *)text;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_ADMIN_REPLY;
    f.admin_reply = &r;
    conn_send(t, c, &f);
}

void handle_backup_request(struct iot *t, struct conn *c, Ferry__AdminRequest *m)
{
    struct backup *b = t->srv->backup;
    if (b == NULL) {
        reply_error(t, c, m->id, FERRY__ERROR_CODE__ERROR_INTERNAL, "backups need the store");
        return;
    }
    char who[80];
    snprintf(who, sizeof(who), "client %llu %s", (unsigned long long)c->client_id, c->peer);
    uint32_t gen;
    int rc = backup_claim(b, conn_ref_of(t, c), m->id, m->backup->chunk_size, c->max_frame_len, who,
                          &gen);
    if (rc == -EBUSY) {
        reply_error(t, c, m->id, FERRY__ERROR_CODE__ERROR_SERVER_BUSY,
                    "a backup is running already (one at a time); retry when it is done");
        return;
    }
    if (rc < 0) {
        reply_error(t, c, m->id, FERRY__ERROR_CODE__ERROR_SHUTTING_DOWN, "server shutting down");
        return;
    }
    /* To the writer: it commits what it holds, then starts the copy. */
    struct wmsg w = {.kind = W_BACKUP, .p = b};
    if (mbox_try_post(t->srv->writer_in, &w, 1) != 1) {
        backup_unclaim(b, gen);
        reply_error(t, c, m->id, FERRY__ERROR_CODE__ERROR_SERVER_BUSY,
                    "the store writer is busy; retry");
        return;
    }
    log_info("%s: backup requested", who);
}

/* The connection of the backup this thread holds credit for is gone. */
static void backup_lost(struct iot *t, uint32_t gen)
{
    backup_cancel(t->srv->backup, gen);
    if (t->backup_gen == gen) {
        t->backup_owed = 0;
    }
}

void handle_backup_frame(struct iot *t, const struct rmsg *m)
{
    uint32_t gen = m->body_off;
    struct conn *c = conn_by_ref(t, m->conn_ref);
    if (c == NULL || c->state != ST_OPEN) {
        if (!m->n_ids) {
            backup_lost(t, gen);
        }
        free(m->u.raw.buf);
        return;
    }
    conn_send_raw(t, c, m->u.raw.buf, m->u.raw.len);
    free(m->u.raw.buf);
    if (m->n_ids) {
        return; /* its last frame */
    }
    if (t->backup_owed > 0 && t->backup_gen != gen) {
        backup_credit(t->srv->backup, t->backup_gen, t->backup_owed); /* a stale one */
        t->backup_owed = 0;
    }
    t->backup_gen = gen;
    t->backup_ref = m->conn_ref;
    t->backup_owed++;
}

void handle_backup_pump(struct iot *t)
{
    if (t->backup_owed == 0) {
        return;
    }
    struct conn *c = conn_by_ref(t, t->backup_ref);
    if (c == NULL || c->state != ST_OPEN) {
        backup_lost(t, t->backup_gen);
        return;
    }
    if (conn_out_pending(c) <= t->srv->cfg.max_outbound / BACKUP_LOW_DIV) {
        backup_credit(t->srv->backup, t->backup_gen, t->backup_owed);
        t->backup_owed = 0;
    }
}

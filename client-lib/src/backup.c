/*
 * backup.c - ferry_admin_backup(): a store copy streamed in many AdminReply
 * messages (ferry.proto BackupRequest), and ferry_crc32c().
 *
 * The request record (struct ferry__admin, kind FERRY__ADMIN_BACKUP) lives
 * on the caller's stack in c->admins, as for every admin call, but takes
 * many replies: each chunk is checked (its offset), counted into the CRC
 * and queued as a callback item (FERRY__CB_BACKUP) that names the record;
 * BackupDone, an error, or a lost connection ends it. The caller returns
 * only once no item of its record is queued or running: items still queued
 * when it gives up are dropped, and one that runs on the IO thread is
 * waited for, so that no callback runs after the call returned.
 */
#include "cluster.h"
#include "crc32c.h"
#include "ferry_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

FERRY_API uint32_t ferry_crc32c(uint32_t crc, const void *data, size_t len)
{
    return crc32c(crc, data, len);
}

/* The backup ends with code (0: complete); the caller wakes. Lock held. */
static void backup_end(ferry_client *c, struct ferry__admin *a, int code, const char *text)
{
    ferry__admin_unlink(c, a);
    a->is_done = 1;
    a->code = code;
    snprintf(a->text, sizeof(a->text), "%s", text);
    pthread_cond_broadcast(&c->cond);
}

void ferry__backup_on_reply(ferry_client *c, struct ferry__admin *a, const Ferry__AdminReply *r)
{
    a->backup_last_ms = ferry__now_ms();
    if (r->code != FERRY__ERROR_CODE__ERROR_NONE) {
        backup_end(c, a, FERRY_ERR_FROM_WIRE(r->code), r->text);
        return;
    }
    if (r->backup_chunk != NULL) {
        const Ferry__BackupChunk *ch = r->backup_chunk;
        if (ch->offset != a->backup_next || ch->data.len == 0) {
            backup_end(c, a, FERRY_EPROTOCOL, "backup: a piece out of order");
            return;
        }
        struct ferry__cbitem *it = calloc(1, sizeof(*it) + ch->data.len);
        if (it == NULL) {
            backup_end(c, a, -ENOMEM, "backup: out of memory");
            return;
        }
        it->kind = FERRY__CB_BACKUP;
        it->admin = a;
        it->offset = ch->offset;
        it->len = ch->data.len;
        memcpy(it + 1, ch->data.data, ch->data.len);
        a->backup_crc = crc32c(a->backup_crc, ch->data.data, ch->data.len);
        a->backup_next += ch->data.len;
        a->n_backup_cbs++;
        ferry__cb_push(c, it);
        return;
    }
    if (r->backup_done == NULL) {
        backup_end(c, a, FERRY_EPROTOCOL, "backup: an answer with neither data nor end");
        return;
    }
    const Ferry__BackupDone *d = r->backup_done;
    if (d->size != a->backup_next || d->crc32c != a->backup_crc) {
        char text[160];
        snprintf(text, sizeof(text),
                 "backup: the server sent %llu bytes with CRC-32C %08x, %llu with %08x arrived",
                 (unsigned long long)d->size, (unsigned)d->crc32c,
                 (unsigned long long)a->backup_next, (unsigned)a->backup_crc);
        backup_end(c, a, FERRY_ECHECKSUM, text);
        return;
    }
    ferry_backup_result *o = &a->backup_res;
    memset(o, 0, sizeof(*o));
    snprintf(o->file, sizeof(o->file), "%s", d->file);
    o->size = d->size;
    o->crc32c = d->crc32c;
    o->snapshot_time = d->snapshot_time;
    backup_end(c, a, 0, "");
}

void ferry__backup_dispatch(ferry_client *c, struct ferry__cbitem *it)
{
    struct ferry__admin *a = it->admin;
    if (a->backup_cb_rc == 0) {
        pthread_mutex_unlock(&c->mu);
        int rc = a->backup_cb(c, it->offset, it + 1, it->len, a->backup_ud);
        pthread_mutex_lock(&c->mu);
        if (rc != 0) {
            a->backup_cb_rc = rc < 0 ? rc : -ECANCELED;
        }
    }
    a->n_backup_cbs--;
}

/* Drop a's callback items still queued (lock held). */
static void backup_drop_queued(ferry_client *c, struct ferry__admin *a)
{
    struct ferry__cbitem *prev = NULL;
    struct ferry__cbitem *it = c->cb_head;
    while (it != NULL) {
        struct ferry__cbitem *next = it->next;
        if (it->kind == FERRY__CB_BACKUP && it->admin == a) {
            if (prev != NULL) {
                prev->next = next;
            } else {
                c->cb_head = next;
            }
            if (c->cb_tail == it) {
                c->cb_tail = prev;
            }
            a->n_backup_cbs--;
            free(it);
        } else {
            prev = it;
        }
        it = next;
    }
}

FERRY_API int ferry_admin_backup(ferry_client *c, ferry_backup_cb cb, void *userdata,
                                 int timeout_ms, ferry_backup_result *result)
{
    if (c == NULL || cb == NULL || timeout_ms <= 0) {
        return -EINVAL;
    }
    Ferry__BackupRequest br = FERRY__BACKUP_REQUEST__INIT;
    Ferry__AdminRequest req = FERRY__ADMIN_REQUEST__INIT;
    req.request_case = FERRY__ADMIN_REQUEST__REQUEST_BACKUP;
    req.backup = &br;
    struct ferry__admin a = {.kind = FERRY__ADMIN_BACKUP, .backup_cb = cb, .backup_ud = userdata};
    if (ferry__clu_calling_back(c)) {
        return -EDEADLK;
    }
    c = ferry__clu_any(c); /* a facade: one broker's store (cluster.h) */
    pthread_mutex_lock(&c->mu);
    int rc = ferry__admin_send(c, &req, &a);
    if (rc != 0) {
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    a.backup_last_ms = ferry__now_ms();
    /* Until the end and every callback of a complete copy has run; a
     * failure (the server's, the connection's, a callback's) stops it. */
    while (a.backup_cb_rc == 0 && !(a.is_done && (a.code != 0 || a.n_backup_cbs == 0))) {
        int64_t deadline = a.backup_last_ms + timeout_ms;
        if (!a.is_done && ferry__now_ms() >= deadline) {
            ferry__admin_unlink(c, &a);
            a.is_done = 1;
            a.code = -ETIMEDOUT;
            snprintf(a.text, sizeof(a.text), "backup: no answer within %d ms", timeout_ms);
            break;
        }
        ferry__wait(c, a.is_done ? -1 : deadline);
    }
    if (!a.is_done) {
        ferry__admin_unlink(c, &a); /* a callback failed: the rest is not wanted */
    }
    backup_drop_queued(c, &a);
    while (a.n_backup_cbs > 0) {
        ferry__wait(c, -1); /* the IO thread runs one of ours: it broadcasts after */
    }
    rc = a.backup_cb_rc != 0 ? a.backup_cb_rc : a.is_done ? a.code : 0;
    if (rc != 0) {
        ferry__seterr(c, rc, "%s", a.text[0] ? a.text : ferry_strerror(rc));
    } else if (result != NULL) {
        *result = a.backup_res;
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

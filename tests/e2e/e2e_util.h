/*
 * e2e_util.h - shared bits of the broker's end-to-end tests.
 */
#ifndef FERRY_E2E_UTIL_H
#define FERRY_E2E_UTIL_H

#include <check.h>
#include <string.h>

#include "ferry.h"
#include "ferryd_proc.h"
#include "rawclient.h"

#define T_WAIT 10000 /* ms: generous for a slow, shared machine */

/* Start ferryd (extra args, NULL-terminated) or fail the test. */
#define START(d, ...)                                                                          \
    do {                                                                                       \
        const char *const args_[] = {__VA_ARGS__};                                             \
        ck_assert_int_eq(ferryd_start((d), NULL, args_), 0);                                   \
    } while (0)

/* Stop ferryd and check that it exited 0 (graceful shutdown works). */
#define STOP(d) ck_assert_int_eq(ferryd_stop(d), 0)

#define CONNECT(c, port) ck_assert_int_eq(rawc_connect((c), (port), 0), 0)

/* Receive a Deliver or fail. */
static inline Ferry__Deliver *recv_deliver(struct rawc *c)
{
    Ferry__Frame *f;
    int rc = rawc_recv(c, T_WAIT, &f);
    ck_assert_int_eq(rc, 0);
    ck_assert_msg(f->body_case == FERRY__FRAME__BODY_DELIVER, "expected Deliver, got %s",
                  codec_frame_name(f));
    return f->deliver;
}

/* Admin stats, or fail. */
static inline Ferry__Stats stats_get(struct rawc *c, uint64_t id)
{
    Ferry__StatsRequest sr = FERRY__STATS_REQUEST__INIT;
    Ferry__AdminRequest ar = FERRY__ADMIN_REQUEST__INIT;
    ar.id = id;
    ar.request_case = FERRY__ADMIN_REQUEST__REQUEST_STATS;
    ar.stats = &sr;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_ADMIN_REQUEST;
    f.admin_request = &ar;
    ck_assert_int_eq(rawc_send(c, &f), 0);
    Ferry__Frame *r;
    ck_assert_int_eq(rawc_recv_kind(c, T_WAIT, FERRY__FRAME__BODY_ADMIN_REPLY, &r, NULL), 0);
    ck_assert_int_eq(r->admin_reply->id, id);
    ck_assert_int_eq(r->admin_reply->code, 0);
    ck_assert_ptr_nonnull(r->admin_reply->stats);
    Ferry__Stats s = *r->admin_reply->stats;
    s.server_id = NULL;
    s.server_version = NULL;
    return s;
}

#endif

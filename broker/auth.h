/*
 * auth.h - who may connect, and what each identity may do (prefix auth_).
 *
 * The auth file. One rule a line; '#' starts a comment; blank lines are
 * ignored; fields are separated by spaces or tabs:
 *
 *     user NAME HASH                   password login; HASH from crypt(3)
 *     token NAME HASH                  bearer token; the client sends
 *                                      "NAME:SECRET", HASH is SECRET's hash
 *     cert NAME                        logs in by a TLS client certificate
 *                                      that names NAME (tls_identity cn or
 *                                      san-email), with no password
 *     allow NAME publish PATTERN       may publish to topics PATTERN matches
 *     allow NAME subscribe PATTERN     may subscribe to PATTERN or narrower
 *     allow NAME admin                 may send admin requests
 *
 * HASH is a crypt(3) hash as in /etc/shadow: yescrypt ($y$), bcrypt ($2b$,
 * $2a$, $2y$) or SHA-512 crypt ($6$); `ferry passwd` prints one. Legacy and
 * unknown methods are refused at load. A NAME is 1..64 printable bytes
 * without spaces or ':'; a user and a token may share a NAME, and then share
 * its allow rules (so may a cert). An allow rule must name a declared user,
 * token or cert. A certificate's name logs in only if a cert line declares
 * it: a password user is never reached by a certificate of the same name
 * unless the file says so. With an
 * auth file every identity is denied whatever no allow rule grants.
 *
 * A loaded file is an immutable table, reference counted: a reload builds a
 * new one and swaps it in (struct auth_holder); connections that hold the
 * old one keep it valid until they move to the new one.
 *
 * Credential checks (auth_check) are slow on purpose (a crypt(3) hash) and
 * run on the auth pool's threads, never on an IO thread. They take the same
 * time whether the user exists or not (an unknown name is checked against a
 * dummy hash of the same method) and compare hashes in constant time.
 *
 * Failures are remembered per source address (struct auth_delay, a bounded
 * table) so that the answer to the next failure from the same address comes
 * later and later.
 */
#ifndef FERRY_AUTH_H
#define FERRY_AUTH_H

#include "acl.h"
#include "mailbox.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_NAME_MAX 64

/* What one identity (a user or token name) may do. Immutable. */
struct auth_principal {
    char *name;
    struct acl_list pub;
    struct acl_list sub;
    uint8_t is_admin;
    uint8_t is_cert; /* a `cert NAME` line: may log in by a client certificate */
};

struct auth_cred;

/* A loaded auth file. Immutable except refs. */
struct auth_table {
    atomic_uint refs;             /* atomic */
    struct auth_principal *princ; /* every name a user, token or allow line gives */
    uint32_t n_princ;
    struct auth_cred *users;
    uint32_t n_users;
    struct auth_cred *tokens;
    uint32_t n_tokens;
    char *dummy_hash; /* checked when the name is unknown */
};

/* Read and check an auth file. Returns 0 with *out holding one reference,
 * or a negative error (-errno for IO, -EINVAL for a bad rule) with err
 * holding "PATH:LINE: what is wrong". */
int auth_table_load(const char *path, struct auth_table **out, char *err, size_t err_len);

/* Parse from memory (name is used in messages). As auth_table_load. */
int auth_table_parse(const char *text, size_t len, const char *name, struct auth_table **out,
                     char *err, size_t err_len);

void auth_table_ref(struct auth_table *t);
void auth_table_unref(struct auth_table *t);

/* The rights of name, or NULL if the table does not know it. */
const struct auth_principal *auth_principal_find(const struct auth_table *t, const char *name);

/* Check credentials against t (slow: one crypt(3) hash). token non-empty:
 * a bearer token "NAME:SECRET"; else username and password. Returns 0 with
 * *out set (valid while t is), or FERRY_EAUTH for anything wrong: unknown
 * name, wrong secret, no credentials. Any thread. */
int auth_check(const struct auth_table *t, const char *username, const char *password,
               const char *token, const struct auth_principal **out);

/* The current table, swapped atomically on reload. */
struct auth_holder {
    pthread_mutex_t lock;
    struct auth_table *t; /* guarded by lock; NULL: anonymous access */
    atomic_uint gen;      /* atomic: bumped by every set */
};

void auth_holder_init(struct auth_holder *h);
void auth_holder_deinit(struct auth_holder *h);
/* A new reference on the current table (NULL: no auth file). Any thread. */
struct auth_table *auth_holder_get(struct auth_holder *h);
/* Install t (the holder takes the caller's reference; NULL allowed) and drop
 * the holder's reference on the old table. Any thread. */
void auth_holder_set(struct auth_holder *h, struct auth_table *t);
static inline unsigned auth_holder_gen(struct auth_holder *h)
{
    return atomic_load_explicit(&h->gen, memory_order_acquire);
}

/* Failures per source address. Any thread (one lock). */
#define AUTH_DELAY_SLOTS 1024u
#define AUTH_DELAY_BASE_MS 200u /* the first failure's delay */
#define AUTH_DELAY_MAX_MS 5000u
#define AUTH_DELAY_FORGET_MS 600000u /* a quiet address starts over */

struct auth_delay_ent {
    char addr[48];
    uint32_t fails;
    uint64_t last_ms;
};

struct auth_delay {
    pthread_mutex_t lock;
    struct auth_delay_ent *ents; /* guarded by lock */
    uint32_t n, cap;
    uint32_t base_ms, max_ms; /* AUTH_DELAY_BASE_MS/MAX_MS by init; tests may lower */
};

int auth_delay_init(struct auth_delay *d, uint32_t cap);
void auth_delay_deinit(struct auth_delay *d);
/* Record a failure from addr at now_ms; returns how long to wait before
 * answering it: AUTH_DELAY_BASE_MS doubled per earlier recent failure, at
 * most AUTH_DELAY_MAX_MS. When the table is full the address that failed
 * longest ago is forgotten. */
uint32_t auth_delay_fail(struct auth_delay *d, const char *addr, uint64_t now_ms);

/*
 * The auth pool: threads that run auth_check. A request is copied in (the
 * secrets are wiped when done); done() runs on a pool thread with the
 * result and must not block for long (it posts to an IO thread's mailbox).
 */
struct auth_req;
typedef void (*auth_done_fn)(void *ctx, uint64_t conn_ref, int rc, struct auth_table *t,
                             const struct auth_principal *p);

struct auth_pool;

/* Start n threads (>= 1) with room for queue_cap waiting requests. Returns
 * the pool or NULL (errno set). */
struct auth_pool *auth_pool_create(uint32_t n_threads, uint32_t queue_cap, auth_done_fn done,
                                   void *ctx);
/* Stop the threads (queued requests are answered with FERRY_EAUTH first)
 * and free the pool. */
void auth_pool_destroy(struct auth_pool *p);

/* Queue a check of the credentials against t (the request takes a reference
 * on t, which done() receives and must release with auth_table_unref).
 * Returns 0, -EAGAIN when the queue is full, or -ENOMEM. Any thread. */
int auth_pool_submit(struct auth_pool *p, uint64_t conn_ref, struct auth_table *t,
                     const char *username, const char *password, const char *token);

#endif

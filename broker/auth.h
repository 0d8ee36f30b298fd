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
 *     allow NAME consume PATTERN       may take over any user's durable
 *                                      consumer on PATTERN or narrower
 *     allow NAME group GROUP           may join queue group GROUP ("*":
 *                                      any) whoever created it
 *     allow NAME admin                 may send admin requests (and, as
 *                                      consume > and group *, take over
 *                                      any durable or queue group)
 *
 * Owned consumers. A durable consumer belongs to the user who created it
 * (stored with it, so across restarts); attaching to it, and so acking,
 * NAKing or TERMing its messages, needs that user, a consume rule covering
 * the durable's topic (a wildcard durable: its pattern), or admin. A queue
 * group belongs, while it has members, to the user of its first member;
 * joining it needs that user, a group rule naming it, or admin. Every
 * subscription still needs its subscribe right. A durable stored before
 * owners existed, or made while ferryd ran without an auth file, belongs
 * to nobody: only consume rules and admins may attach to it. A reload that
 * takes away the right a holder attached by ends that subscription (an
 * Error names it), as for subscribe rights; members of a queue group are
 * not checked again. Without an auth file nothing of this is checked.
 *
 * HASH is a crypt(3) hash as in /etc/shadow: yescrypt ($y$), bcrypt ($2b$,
 * $2a$, $2y$) or SHA-512 crypt ($6$); `ferry passwd` prints one. Every
 * other method ($gy$, $7$, $5$, $1$, DES ...) is refused at load, and so is
 * a hash that is malformed or cut short (a salt without its hash, a hash of
 * the wrong length or alphabet): such a user could never log in, and the
 * file is refused rather than half loaded. A bcrypt user's password is at
 * most AUTH_BCRYPT_PASS_MAX (72) bytes: bcrypt ignores the rest, so a longer
 * one is refused at login (and by `ferry passwd`).
 *
 * The file's mode is checked at every load (start and SIGHUP): a file that
 * every user may write is refused (at start ferryd does not start; on
 * SIGHUP it keeps the current table), as anyone could grant themselves
 * rights; a file that the group may write or every user may read loads
 * with a warning (the hashes could be attacked offline). A NAME is 1..64 printable bytes
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
 * time whether the user exists or not: an unknown name is checked against a
 * dummy hash made with the settings (method and cost) of the credential
 * whose check costs the median of all the file's users and tokens
 * (auth_hash_cost), and hashes are compared in constant time.
 *
 * Who may try a check, and when, is the login gate's business (login.h).
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
#define AUTH_BCRYPT_PASS_MAX 72 /* bytes bcrypt reads of a password */

/* What one identity (a user or token name) may do. Immutable. */
struct auth_principal {
    char *name;
    struct acl_list pub;
    struct acl_list sub;
    struct acl_list consume; /* durables of other users (see Owned consumers) */
    struct acl_list group;   /* queue groups of other users: one-token patterns */
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
    char *dummy_hash;   /* checked when the name is unknown */
    uint32_t file_mode; /* the file's mode bits (auth_table_load); 0 when parsed */
};

/* Read and check an auth file. Returns 0 with *out holding one reference,
 * or a negative error (-errno for IO, -EINVAL for a bad rule, -EPERM for a
 * file every user may write) with err holding "PATH:LINE: what is wrong". */
int auth_table_load(const char *path, struct auth_table **out, char *err, size_t err_len);

/* Parse from memory (name is used in messages). As auth_table_load. */
int auth_table_parse(const char *text, size_t len, const char *name, struct auth_table **out,
                     char *err, size_t err_len);

/* What checking a password against crypt(3) hash h costs, as an estimate in
 * nanoseconds from its method and parameters (no hashing: pure); 0 for a
 * method auth.h does not list. Used to choose the dummy hash. */
uint64_t auth_hash_cost(const char *h);
/* The most a hash may cost (auth_hash_cost, ns): costlier ones are refused
 * at load. 10 s: bcrypt up to cost 16, SHA-512 crypt up to about 16 M
 * rounds, yescrypt up to N*r*p*(t+1)*2^g of about 11 M. */
#define AUTH_HASH_COST_MAX 10000000000ull

/* A warning about t's file mode (group-writable, or readable by every
 * user), or NULL when there is none. */
const char *auth_table_mode_warning(const struct auth_table *t);

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

/*
 * The auth pool: threads that run auth_check. A request is copied in (the
 * secrets are wiped when done); done() runs on a pool thread with the
 * result and must not block for long (it posts to an IO thread's mailbox).
 * Every submitted request gets exactly one done(), also when the pool is
 * destroyed first. A request whose *cancel is set by the time a pool thread
 * takes it is not checked: done() gets -ECANCELED (its connection closed;
 * hashing for it would only serve whoever jams the pool).
 */
struct auth_req;
typedef void (*auth_done_fn)(void *ctx, uint64_t conn_ref, int rc, struct auth_table *t,
                             const struct auth_principal *p, void *tag);

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
 * cancel (may be NULL) must stay valid until done(); tag is given back to
 * done(). Returns 0, -EAGAIN when the queue is full, or -ENOMEM. Any
 * thread. */
int auth_pool_submit(struct auth_pool *p, uint64_t conn_ref, struct auth_table *t,
                     const char *username, const char *password, const char *token,
                     const atomic_int *cancel, void *tag);

#endif

/*
 * login.h - the login gate: who may try a password, and when (prefix login_).
 *
 * Password checks are slow on purpose (auth.h), so a guesser is slowed by
 * making it wait for its checks, not by delaying its answers: a check whose
 * address or user name has failed recently runs only after a wait that
 * doubles with each recent failure, and an answer, refusal or success,
 * comes at once after its check. An address has at most one check waiting
 * or running at a time; its other logins wait their turn. A wait longer
 * than LOGIN_HOLD_MAX_MS is not served at all: the login is refused at
 * once, saying when to retry, so no client times out on a silent server.
 *
 * An address with no recent failure waits at most LOGIN_CLEAN_WAIT_MS for
 * its user name's failures: a guesser elsewhere cannot lock the real user
 * out, only slow each fresh address it uses (and each address that fails
 * is then held back by its own count).
 *
 * The gate also bounds connections that have not logged in yet, over the
 * whole server and per address (login_unauth_enter), so idle sockets from
 * one address cannot take every connection slot.
 *
 * Addresses are 16-byte keys (IPv4 mapped into IPv6: login_addr_key).
 * Entries are forgotten after LOGIN_FORGET_MS without a failure; the tables
 * are bounded, and when full an entry that holds nothing (no check, no
 * pre-login connection) and was used longest ago makes room.
 *
 * Threads: every call takes the gate's one lock (any thread: the acceptor
 * and the IO threads).
 */
#ifndef FERRY_LOGIN_H
#define FERRY_LOGIN_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct sockaddr;

#define LOGIN_FREE_FAILS 3u      /* recent failures that cost no wait */
#define LOGIN_HOLD_MAX_MS 1000u  /* longer waits are refused at once */
#define LOGIN_CLEAN_WAIT_MS 800u /* the most a clean address waits for a name */
#define LOGIN_FORGET_MS 600000u  /* a quiet address or name starts over */
#define LOGIN_RETRY_MS 20u       /* an address's next login looks again after */

struct login_limits {
    uint32_t max_unauth;          /* pre-login connections, whole server */
    uint32_t max_unauth_per_addr; /* pre-login connections from one address */
    uint32_t delay_ms;            /* the first wait past LOGIN_FREE_FAILS */
    uint32_t delay_max_ms;        /* waits double up to this */
};

struct login_addr;
struct login_name;

struct login_gate {
    pthread_mutex_t lock;
    struct login_limits lim;  /* immutable after init */
    struct login_addr *addrs; /* guarded by lock: open addressing, cap entries */
    struct login_name *names; /* guarded by lock: likewise */
    uint32_t cap;
    uint32_t n_unauth; /* guarded by lock: pre-login connections counted */
};

/* The 16-byte key of a peer address (IPv4 as ::ffff:a.b.c.d); zeros for
 * anything else (a Unix socket in tests: one shared key). */
void login_addr_key(const struct sockaddr *sa, uint8_t key[16]);

/* cap entries per table (rounded up to a power of two). 0, or -ENOMEM. */
int login_gate_init(struct login_gate *g, const struct login_limits *lim, uint32_t cap);
void login_gate_deinit(struct login_gate *g);

/* A new connection from addr, before its Connect: 0 (counted), or -EBUSY
 * (over max_unauth or max_unauth_per_addr, or the table is full of
 * addresses that hold connections: refuse it). */
int login_unauth_enter(struct login_gate *g, const uint8_t addr[16], uint64_t now);
/* A counted connection logged in or closed. */
void login_unauth_leave(struct login_gate *g, const uint8_t addr[16], uint64_t now);
/* Pre-login connections counted now. */
uint32_t login_unauth_count(struct login_gate *g);

enum login_verdict {
    LOGIN_RUN,    /* check now: the address's turn is taken (login_end) */
    LOGIN_AT,     /* check at *at: the turn is taken already (login_end) */
    LOGIN_QUEUED, /* another check of this address waits or runs: ask again at *at */
    LOGIN_REFUSE, /* over budget: refuse now; *at is when a retry may be served */
};

/* A login from addr as name (NULL or "": none given) at now (monotonic ms). */
enum login_verdict login_begin(struct login_gate *g, const uint8_t addr[16], const char *name,
                               uint64_t now, uint64_t *at);
/* The check of a LOGIN_RUN/LOGIN_AT turn ended: ok, or a failure that
 * counts against addr and name. is_checked 0: it never ran (the connection
 * closed first): the turn ends and nothing is counted. */
void login_end(struct login_gate *g, const uint8_t addr[16], const char *name, int is_checked,
               int ok, uint64_t now);

#endif

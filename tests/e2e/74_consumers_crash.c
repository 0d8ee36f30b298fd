/*
 * 74_consumers_crash.c - a durable consumer under kill -9 (issue 11, item 4).
 *
 * Three processes besides ferryd, so that the test process itself never
 * forks while it has threads:
 *   - a publisher (a child, libferry thread mode) publishes "m<id>" to one
 *     topic in random bursts, with acks, and logs "A <seq> <id>" for every
 *     PubAck;
 *   - a durable consumer (a child, libferry thread mode) logs
 *     "S <pid> <n>" at the start of every connection (a session), then for
 *     each message "P <seq> <attempt> <payload>" before it acks it; every
 *     FLUSH_EVERY messages, and when idle, it calls ferry_flush() and then
 *     logs "C <m>", m the highest sequence it acked before the flush;
 *   - the test process: each round, at a random moment, it kills -9 the
 *     broker, the consumer or both, and restarts what it killed (the broker
 *     on the same data dir; the new port goes to the children through their
 *     control pipes). In a quarter of the rounds the kill waits, after the
 *     random delay, for the consumer's next C line, and follows it at once.
 *
 * The Ack confirmation rule: an Ack is confirmed once the client received
 * the Pong of a Ping sent after it on the same connection (ferry_flush()).
 * So a "C m" line confirms every P line of its session written before it
 * (each was acked before the flush, and m is at least its sequence).
 *
 * Checked online, as the logs grow, and at the end:
 *   - a confirmed sequence is never processed again (in any later session);
 *   - in a session, first deliveries (attempt 1) come in sequence order;
 *   - a sequence always carries the same payload, the one its PubAck named
 *     (no acked message lost and its sequence reused);
 *   - every PubAck names a different sequence;
 *   - after the publisher stops, the consumer drains: every stored sequence
 *     (1..last) is processed at least once, every acked one among them, and
 *     its last session confirms all it processed;
 *   - then, after one more kill -9 of the broker, no confirmed sequence is
 *     delivered again to the durable (nearly every one is confirmed then);
 *   - `ferryd --verify` passes on the data dir.
 *
 * FERRY_CRASH_ROUNDS changes the round count (default 50), FERRY_CRASH_SEED
 * fixes the seed (printed either way).
 */
#include "store_e2e.h"

#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>

#define CC_TOPIC "cc.t"
#define CC_DURABLE "cc"
/* What the durable subscribes to: CC_TOPIC, or in the wildcard round a
 * pattern matching it (a wildcard durable's position on CC_TOPIC). Set by
 * the test before its children are forked. */
static const char *cc_pattern = CC_TOPIC;
#define FLUSH_EVERY 20
#define MAX_IN_FLIGHT 128
#define KILL_DELAY_MAX_MS 400
#define DEFAULT_ROUNDS 50

static void ms_sleep(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* ---- the children ------------------------------------------------------ */

/* One line, one write(2), on an O_APPEND descriptor; a failure ends the
 * child (the parent reports it). */
static void log_line(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_line(int fd, const char *fmt, ...)
{
    char line[160];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n <= 0 || (size_t)n >= sizeof(line) || write(fd, line, (size_t)n) != n) {
        _exit(3);
    }
}

/* What the parent tells a child: "p PORT" (the broker now listens there),
 * "q" (stop). */
struct ctl {
    int fd;
    int port;
    int quit;
    char buf[256];
    size_t len;
};

/* Read what the parent wrote, waiting up to ms for it. */
static void ctl_poll(struct ctl *k, int ms)
{
    struct pollfd pf = {.fd = k->fd, .events = POLLIN};
    if (poll(&pf, 1, ms) <= 0) {
        return;
    }
    ssize_t n = read(k->fd, k->buf + k->len, sizeof(k->buf) - 1 - k->len);
    if (n == 0) {
        k->quit = 1; /* the parent is gone */
        return;
    }
    if (n < 0) {
        return;
    }
    k->len += (size_t)n;
    char *p = k->buf;
    char *nl;
    while ((nl = memchr(p, '\n', k->len - (size_t)(p - k->buf))) != NULL) {
        *nl = '\0';
        int port;
        if (sscanf(p, "p %d", &port) == 1) {
            k->port = port;
        } else if (p[0] == 'q') {
            k->quit = 1;
        }
        p = nl + 1;
    }
    k->len -= (size_t)(p - k->buf);
    memmove(k->buf, p, k->len);
}

/* A thread-mode client without reconnect (a lost connection ends the
 * session, and an Ack is confirmed only on its own connection); NULL when
 * the broker is not there. */
static ferry_client *child_connect(int port, uint32_t window)
{
    ferry_options *o;
    if (ferry_options_create(&o) != 0) {
        _exit(4);
    }
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    ferry_options_set_servers(o, addr);
    ferry_options_set_reconnect(o, 0, 1, 10, 10, 0);
    ferry_options_set_resend_unacked(o, 0);
    if (window) {
        ferry_options_set_max_inflight(o, window);
    }
    ferry_client *c = NULL;
    int rc = ferry_client_create(o, &c);
    ferry_options_destroy(o);
    if (rc != 0) {
        _exit(4);
    }
    if (ferry_client_start_thread(c) != 0 || ferry_client_connect(c, 5000) != 0) {
        ferry_client_destroy(c);
        return NULL;
    }
    return c;
}

/* The publisher's log (in the publisher process), set before its client
 * exists; the client's IO thread writes to it. */
static int pub_log_fd = -1;

static void on_puback(ferry_client *c, int status, uint64_t sequence, void *userdata)
{
    (void)c;
    if (status == 0) {
        log_line(pub_log_fd, "A %llu %llu\n", (unsigned long long)sequence,
                 (unsigned long long)(uintptr_t)userdata);
    }
}

static void pub_child(int ctl_fd, const char *log_path, int port, unsigned seed)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    pub_log_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT, 0600);
    if (pub_log_fd < 0) {
        _exit(3);
    }
    struct ctl k = {.fd = ctl_fd, .port = port};
    uint64_t id = 0;
    while (!k.quit) {
        int used = k.port;
        ferry_client *c = child_connect(used, 64);
        if (c == NULL) {
            ctl_poll(&k, 50); /* wait for the restarted broker's port */
            continue;
        }
        int is_up = 1;
        while (is_up && !k.quit && k.port == used) {
            int burst = 1 + (int)(rand_r(&seed) % 80);
            for (int i = 0; i < burst; i++) {
                char text[32];
                snprintf(text, sizeof(text), "m%llu", (unsigned long long)id);
                ferry_pub m = {.topic = CC_TOPIC, .payload = text, .payload_len = strlen(text)};
                if (ferry_publish_async(c, &m, on_puback, (void *)(uintptr_t)id, NULL) != 0) {
                    is_up = 0; /* the broker is gone */
                    break;
                }
                id++;
            }
            ctl_poll(&k, 1 + (int)(rand_r(&seed) % 40)); /* the pause between bursts */
        }
        if (k.quit && is_up && k.port == used) {
            /* Stop on a live broker: every PubAck comes (and is logged). */
            if (ferry_flush(c, S_WAIT) != 0) {
                _exit(5);
            }
        }
        ferry_client_destroy(c); /* fails what still waits for a PubAck */
    }
    log_line(pub_log_fd, "N %llu\n", (unsigned long long)id);
    _exit(0);
}

/* Confirm the acks sent so far on this connection: ferry_flush(), then the
 * C line. Returns 0, or the flush's error (the session is over). */
static int cons_confirm(ferry_client *c, int fd, uint64_t top)
{
    int rc = ferry_flush(c, S_WAIT);
    if (rc == 0) {
        log_line(fd, "C %llu\n", (unsigned long long)top);
    }
    return rc;
}

/* One session: process, ack, confirm, until the connection is lost. */
static void cons_session(ferry_client *c, ferry_sub *s, int fd)
{
    uint64_t top = 0; /* the highest sequence acked on this connection */
    int n_unconfirmed = 0;
    for (;;) {
        ferry_msg *m;
        int rc = ferry_sub_next(s, 50, &m);
        if (rc == -ETIMEDOUT || rc == -EAGAIN) {
            if (n_unconfirmed > 0) {
                if (cons_confirm(c, fd, top) != 0) {
                    return;
                }
                n_unconfirmed = 0;
            }
            continue;
        }
        if (rc != 0) {
            return; /* the connection is gone */
        }
        uint64_t seq = ferry_msg_sequence(m);
        size_t len;
        const char *data = ferry_msg_data(m, &len);
        log_line(fd, "P %llu %u %.*s\n", (unsigned long long)seq, ferry_msg_attempt(m),
                 (int)(len < 40 ? len : 40), data);
        rc = ferry_msg_ack(m, FERRY_ACK);
        ferry_msg_destroy(m);
        if (rc != 0) {
            return; /* not sent: the session ends without confirming it */
        }
        top = seq > top ? seq : top;
        if (++n_unconfirmed >= FLUSH_EVERY) {
            if (cons_confirm(c, fd, top) != 0) {
                return;
            }
            n_unconfirmed = 0;
        }
    }
}

static void cons_child(int ctl_fd, const char *log_path, int port)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT, 0600);
    if (fd < 0) {
        _exit(3);
    }
    struct ctl k = {.fd = ctl_fd, .port = port};
    unsigned n_sessions = 0;
    while (!k.quit) {
        ferry_client *c = child_connect(k.port, 0);
        if (c == NULL) {
            ctl_poll(&k, 50);
            continue;
        }
        ferry_sub_options *so;
        if (ferry_sub_options_create(&so) != 0) {
            _exit(4);
        }
        ferry_sub_options_set_durable(so, CC_DURABLE);
        ferry_sub_options_set_ack_mode(so, FERRY_ACK_EXPLICIT);
        ferry_sub_options_set_start(so, FERRY_START_ALL, 0);
        ferry_sub_options_set_max_in_flight(so, MAX_IN_FLIGHT);
        /* No redelivery may race with an Ack in flight: only a new holder
         * (after a kill) gets what was not acked. */
        ferry_sub_options_set_ack_wait_ms(so, 600000);
        ferry_sub_options_set_max_deliver(so, 100000);
        ferry_sub *s = NULL;
        int rc = ferry_subscribe(c, cc_pattern, so, NULL, NULL, 5000, &s);
        ferry_sub_options_destroy(so);
        if (rc != 0) {
            /* In use: the broker has not yet seen the killed consumer's
             * connection close. Anything else: the broker went away. */
            if (rc != FERRY_EDURABLEINUSE && rc != FERRY_ECLOSED && rc != FERRY_EDISCONNECTED) {
                fprintf(stderr, "consumer %d: subscribe: %s\n", (int)getpid(), ferry_strerror(rc));
            }
            ferry_client_destroy(c);
            ctl_poll(&k, 10);
            continue;
        }
        log_line(fd, "S %d %u\n", (int)getpid(), ++n_sessions);
        cons_session(c, s, fd);
        ferry_client_destroy(c);
    }
    _exit(0);
}

/* ---- the parent: reading the logs -------------------------------------- */

/* A log read as it grows; whole lines only. */
struct tail {
    int fd;
    char buf[8192];
    size_t len;
};

static void tail_open(struct tail *t, const char *path)
{
    t->fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0600);
    ck_assert_int_ge(t->fd, 0);
    t->len = 0;
}

/* Per-sequence facts, grown as sequences appear. */
struct seqinfo {
    int64_t acked_id;   /* the publisher's id its PubAck named, -1: none */
    int64_t payload_id; /* the id its payload carried when processed, -1 */
    uint32_t n_proc;    /* P lines */
    uint32_t confirmed; /* the session that confirmed it, 0: not yet */
    uint64_t mark;      /* the C line that confirmed it */
};

struct check {
    struct seqinfo *seq;
    uint64_t seq_cap;
    /* the consumer log */
    uint32_t session;      /* current session number (S lines), 0 before */
    uint64_t last_first;   /* last attempt-1 sequence in this session */
    uint64_t *unconfirmed; /* P'd in this session since its last C */
    size_t n_unconf, unconf_cap;
    uint64_t n_p, n_c;      /* P and C lines */
    uint64_t n_redelivered; /* P lines with attempt > 1 */
    uint64_t n_distinct;    /* sequences processed at least once */
    uint64_t n_confirmed;   /* sequences confirmed */
    uint64_t max_processed;
    /* the publisher log */
    uint64_t n_acked, max_acked, n_sent;
};

static struct seqinfo *seq_at(struct check *k, uint64_t s)
{
    ck_assert_msg(s >= 1 && s < (1u << 26), "sequence %llu out of range", (unsigned long long)s);
    if (s >= k->seq_cap) {
        uint64_t cap = k->seq_cap ? k->seq_cap : 4096;
        while (cap <= s) {
            cap *= 2;
        }
        k->seq = realloc(k->seq, cap * sizeof(*k->seq));
        ck_assert_ptr_nonnull(k->seq);
        for (uint64_t i = k->seq_cap; i < cap; i++) {
            k->seq[i] = (struct seqinfo){.acked_id = -1, .payload_id = -1};
        }
        k->seq_cap = cap;
    }
    return &k->seq[s];
}

static void check_line(struct check *k, const char *line)
{
    unsigned long long a, b, c;
    unsigned attempt;
    if (line[0] == 'S') {
        k->session++;
        k->last_first = 0;
        k->n_unconf = 0; /* a new connection: the old one's acks are not confirmable */
    } else if (sscanf(line, "P %llu %u m%llu", &a, &attempt, &c) == 3) {
        ck_assert_msg(k->session > 0, "P line before any session: %s", line);
        struct seqinfo *si = seq_at(k, a);
        ck_assert_msg(!si->confirmed,
                      "sequence %llu processed again (session %u, attempt %u) after its ack was "
                      "confirmed in session %u (by C %llu)",
                      a, k->session, attempt, si->confirmed, (unsigned long long)si->mark);
        ck_assert_msg(attempt >= 1, "sequence %llu: attempt 0", a);
        if (attempt > 1) {
            k->n_redelivered++;
        } else {
            ck_assert_msg(a > k->last_first,
                          "session %u: sequence %llu delivered for the first time after %llu",
                          k->session, a, (unsigned long long)k->last_first);
            k->last_first = a;
        }
        ck_assert_msg(si->payload_id < 0 || si->payload_id == (int64_t)c,
                      "sequence %llu carried m%lld, now m%llu", a, (long long)si->payload_id, c);
        ck_assert_msg(si->acked_id < 0 || si->acked_id == (int64_t)c,
                      "sequence %llu was acked for m%lld but carries m%llu", a,
                      (long long)si->acked_id, c);
        si->payload_id = (int64_t)c;
        if (si->n_proc++ == 0) {
            k->n_distinct++;
        }
        k->n_p++;
        k->max_processed = a > k->max_processed ? a : k->max_processed;
        if (k->n_unconf == k->unconf_cap) {
            k->unconf_cap = k->unconf_cap ? 2 * k->unconf_cap : 256;
            k->unconfirmed = realloc(k->unconfirmed, k->unconf_cap * sizeof(uint64_t));
            ck_assert_ptr_nonnull(k->unconfirmed);
        }
        k->unconfirmed[k->n_unconf++] = a;
    } else if (sscanf(line, "C %llu", &a) == 1) {
        ck_assert_msg(k->session > 0, "C line before any session");
        for (size_t i = 0; i < k->n_unconf; i++) {
            uint64_t s = k->unconfirmed[i];
            ck_assert_msg(s <= a, "session %u: C %llu after P %llu (the consumer's own rule)",
                          k->session, a, (unsigned long long)s);
            struct seqinfo *si = seq_at(k, s);
            if (!si->confirmed) {
                si->confirmed = k->session;
                si->mark = a;
                k->n_confirmed++;
            }
        }
        k->n_unconf = 0;
        k->n_c++;
    } else if (sscanf(line, "A %llu %llu", &a, &b) == 2) {
        struct seqinfo *si = seq_at(k, a);
        ck_assert_msg(si->acked_id < 0, "sequence %llu acked twice: for m%lld and m%llu", a,
                      (long long)si->acked_id, b);
        ck_assert_msg(si->payload_id < 0 || si->payload_id == (int64_t)b,
                      "sequence %llu was processed as m%lld but acked for m%llu", a,
                      (long long)si->payload_id, b);
        si->acked_id = (int64_t)b;
        k->n_acked++;
        k->max_acked = a > k->max_acked ? a : k->max_acked;
    } else if (sscanf(line, "N %llu", &a) == 1) {
        k->n_sent = a;
    } else {
        ck_abort_msg("bad log line: '%s'", line);
    }
}

/* Take in whatever the log has now. */
static void tail_read(struct tail *t, struct check *k)
{
    for (;;) {
        ssize_t n = read(t->fd, t->buf + t->len, sizeof(t->buf) - 1 - t->len);
        ck_assert_int_ge(n, 0);
        if (n == 0) {
            return;
        }
        t->len += (size_t)n;
        char *p = t->buf;
        char *nl;
        while ((nl = memchr(p, '\n', t->len - (size_t)(p - t->buf))) != NULL) {
            *nl = '\0';
            check_line(k, p);
            p = nl + 1;
        }
        t->len -= (size_t)(p - t->buf);
        memmove(t->buf, p, t->len);
        ck_assert_msg(t->len < sizeof(t->buf) - 1, "a log line without end");
    }
}

/* ---- the parent: the processes ----------------------------------------- */

struct child {
    pid_t pid;
    int ctl; /* write end of its control pipe */
};

/* Tell a child the broker's port (port > 0), or to stop (0). */
static void child_tell(struct child *ch, int port)
{
    char line[32];
    int n = port > 0 ? snprintf(line, sizeof(line), "p %d\n", port)
                     : snprintf(line, sizeof(line), "q\n");
    ck_assert_int_eq(write(ch->ctl, line, (size_t)n), n);
}

static void child_check_alive(struct child *ch, const char *what)
{
    int st;
    pid_t r = waitpid(ch->pid, &st, WNOHANG);
    ck_assert_msg(r == 0, "the %s (pid %d) exited by itself: status %d", what, (int)ch->pid,
                  WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

static void child_kill(struct child *ch)
{
    kill(ch->pid, SIGKILL);
    waitpid(ch->pid, NULL, 0);
    close(ch->ctl);
    ch->pid = 0;
}

static char g_clog[300], g_plog[300];

static void start_consumer(struct child *ch, int port)
{
    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(p[1]);
        cons_child(p[0], g_clog, port);
    }
    close(p[0]);
    ch->pid = pid;
    ch->ctl = p[1];
}

static void start_publisher(struct child *ch, int port, unsigned seed)
{
    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(p[1]);
        pub_child(p[0], g_plog, port, seed);
    }
    close(p[0]);
    ch->pid = pid;
    ch->ctl = p[1];
}

enum { KILL_BROKER, KILL_CONSUMER, KILL_BOTH };
static const char *const kill_names[] = {"broker", "consumer", "broker and consumer"};

static void crash_loop(void)
{
    signal(SIGPIPE, SIG_IGN);
    int rounds = DEFAULT_ROUNDS;
    const char *env = getenv("FERRY_CRASH_ROUNDS");
    if (env && *env) {
        rounds = atoi(env);
        ck_assert_int_ge(rounds, 1);
    }
    unsigned seed = (unsigned)time(NULL) ^ ((unsigned)getpid() << 16);
    env = getenv("FERRY_CRASH_SEED");
    if (env && *env) {
        seed = (unsigned)strtoul(env, NULL, 0);
    }
    const unsigned seed0 = seed;
    char dir[] = "/tmp/ferry-cc-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    fprintf(stderr,
            "consumer crash loop: seed %u (FERRY_CRASH_SEED), %d rounds, logs in %s (kept on "
            "failure)\n",
            seed, rounds, dir);
    snprintf(g_clog, sizeof(g_clog), "%s/consumer.log", dir);
    snprintf(g_plog, sizeof(g_plog), "%s/publisher.log", dir);
    static struct check k;
    memset(&k, 0, sizeof(k));
    struct tail ct, pt;
    tail_open(&ct, g_clog);
    tail_open(&pt, g_plog);

    struct ferryd_proc d;
    ck_assert_int_eq(ferryd_start(&d, NULL, NULL), 0);
    struct child pub, cons;
    start_publisher(&pub, d.port, seed + 1);
    start_consumer(&cons, d.port);
    int n_kills[3] = {0, 0, 0};
    int64_t t0 = s_now_ms();

    for (int r = 0; r < rounds; r++) {
        /* Traffic flows: the publisher gets acks, the consumer processes. */
        uint64_t p0 = k.n_p, a0 = k.n_acked;
        int64_t end = s_now_ms() + S_WAIT;
        while (k.n_p == p0 || k.n_acked == a0) {
            ck_assert_msg(s_now_ms() < end,
                          "round %d: no progress in %d ms (processed %llu -> %llu, acked %llu -> "
                          "%llu)",
                          r, S_WAIT, (unsigned long long)p0, (unsigned long long)k.n_p,
                          (unsigned long long)a0, (unsigned long long)k.n_acked);
            child_check_alive(&pub, "publisher");
            child_check_alive(&cons, "consumer");
            ms_sleep(5); /* polling the logs */
            tail_read(&ct, &k);
            tail_read(&pt, &k);
        }
        int delay = (int)(rand_r(&seed) % KILL_DELAY_MAX_MS);
        int what = (int)(rand_r(&seed) % 3);
        int after_mark = rand_r(&seed) % 4 == 0;
        ms_sleep(delay); /* the random moment of the kill */
        if (after_mark) {
            /* Or at the worst moment for the broker: just after the
             * consumer learnt that its acks are confirmed. */
            uint64_t c0 = k.n_c;
            end = s_now_ms() + S_WAIT;
            while (k.n_c == c0 && s_now_ms() < end) {
                tail_read(&ct, &k);
                ms_sleep(1); /* polling the log */
            }
            ck_assert_msg(k.n_c > c0, "round %d: no C line in %d ms", r, S_WAIT);
        }
        fprintf(stderr, "round %d: kill -9 %s after %d ms%s\n", r, kill_names[what], delay,
                after_mark ? " and the next C line" : "");
        child_check_alive(&pub, "publisher");
        child_check_alive(&cons, "consumer");
        if (what != KILL_BROKER) {
            child_kill(&cons);
        }
        if (what != KILL_CONSUMER) {
            ck_assert_int_eq(ferryd_kill9(&d), 0);
            ck_assert_int_eq(ferryd_restart(&d, NULL), 0);
            child_tell(&pub, d.port);
            if (cons.pid) {
                child_tell(&cons, d.port);
            }
        }
        if (!cons.pid) {
            start_consumer(&cons, d.port);
        }
        n_kills[what]++;
        tail_read(&ct, &k);
        tail_read(&pt, &k);
    }
    int64_t t_loop = s_now_ms() - t0;

    /* Stop publishing: the publisher waits for its last acks and exits. */
    child_tell(&pub, 0);
    int64_t end = s_now_ms() + S_WAIT;
    int st = -1;
    while (waitpid(pub.pid, &st, WNOHANG) == 0) {
        ck_assert_msg(s_now_ms() < end, "the publisher did not stop");
        ms_sleep(5);
    }
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "publisher exit status %d", st);
    close(pub.ctl);
    tail_read(&pt, &k);
    ck_assert_uint_gt(k.n_sent, 0);
    ck_assert_uint_gt(k.n_acked, 0);

    /* The consumer drains: every stored message processed at least once,
     * and all its current session processed confirmed. (A message whose
     * ack was committed but whose session was killed before its C line is
     * rightly never redelivered, so not every sequence is confirmed.) */
    ferry_client *c = s_client(&d, 0);
    ferry_topic_info ti;
    ck_assert_int_eq(ferry_admin_topic_info(c, CC_TOPIC, S_WAIT, &ti), 0);
    ck_assert_uint_eq(ti.first_seq, 1);
    ck_assert_uint_eq(ti.messages, ti.last_seq); /* gapless */
    ck_assert_uint_ge(ti.last_seq, k.max_acked);
    s_close(c);
    end = s_now_ms() + 3 * S_WAIT;
    for (;;) {
        tail_read(&ct, &k);
        if (k.n_distinct >= ti.last_seq && k.n_unconf == 0) {
            break;
        }
        if (s_now_ms() >= end) {
            uint64_t first = 0;
            for (uint64_t s = 1; s <= ti.last_seq && !first; s++) {
                if (s >= k.seq_cap || !k.seq[s].n_proc) {
                    first = s;
                }
            }
            ck_abort_msg("drain: %llu of %llu sequences processed (first missing %llu), %zu "
                         "not confirmed in the current session",
                         (unsigned long long)k.n_distinct, (unsigned long long)ti.last_seq,
                         (unsigned long long)first, k.n_unconf);
        }
        child_check_alive(&cons, "consumer");
        ms_sleep(10);
    }
    child_kill(&cons);
    tail_read(&ct, &k);
    ck_assert_uint_eq(k.n_distinct, ti.last_seq);
    ck_assert_uint_eq(k.max_processed, ti.last_seq);
    uint64_t n_acked_processed = 0;
    for (uint64_t s = 1; s < k.seq_cap; s++) {
        if (k.seq[s].acked_id >= 0) {
            ck_assert_msg(k.seq[s].n_proc > 0, "sequence %llu was acked but never processed",
                          (unsigned long long)s);
            n_acked_processed++;
        }
    }
    ck_assert_uint_eq(n_acked_processed, k.n_acked);

    /* One more kill -9, then the durable bound here: what comes again must
     * not be confirmed (the same rule, checked on a last session). */
    ck_assert_int_eq(ferryd_kill9(&d), 0);
    ck_assert_int_eq(ferryd_restart(&d, NULL), 0);
    c = s_client(&d, 0);
    ferry_sub_options *so;
    ck_assert_int_eq(ferry_sub_options_create(&so), 0);
    ck_assert_int_eq(ferry_sub_options_set_durable(so, CC_DURABLE), 0);
    ck_assert_int_eq(ferry_sub_options_set_ack_mode(so, FERRY_ACK_EXPLICIT), 0);
    ferry_sub *s = NULL;
    int rc = ferry_subscribe(c, cc_pattern, so, NULL, NULL, S_WAIT, &s);
    ferry_sub_options_destroy(so);
    ck_assert_msg(rc == 0, "durable subscribe: %s", ferry_strerror(rc));
    check_line(&k, "S test 0");
    uint64_t n_final = 0;
    ferry_msg *m;
    while (ferry_sub_next(s, 1000, &m) == 0) {
        size_t len;
        const char *data = ferry_msg_data(m, &len);
        char line[96];
        snprintf(line, sizeof(line), "P %llu %u %.*s", (unsigned long long)ferry_msg_sequence(m),
                 ferry_msg_attempt(m), (int)(len < 40 ? len : 40), data);
        ferry_msg_destroy(m);
        check_line(&k, line);
        n_final++;
    }
    s_close(c);

    fprintf(stderr,
            "consumer crash loop (%s): %d rounds in %lld ms (seed %u); kills: broker %d, "
            "consumer %d, "
            "both %d; published %llu, acked %llu, stored %llu; processed %llu lines, %llu "
            "sequences (%llu processed again), %llu redeliveries (attempt > 1); %llu sessions, "
            "%llu C marks, %llu sequences "
            "confirmed; %llu unconfirmed delivered again after the last kill\n",
            cc_pattern, rounds, (long long)t_loop, seed0, n_kills[KILL_BROKER],
            n_kills[KILL_CONSUMER], n_kills[KILL_BOTH], (unsigned long long)k.n_sent,
            (unsigned long long)k.n_acked, (unsigned long long)ti.last_seq,
            (unsigned long long)k.n_p, (unsigned long long)k.n_distinct,
            (unsigned long long)(k.n_p - k.n_distinct), (unsigned long long)k.n_redelivered,
            (unsigned long long)k.session, (unsigned long long)k.n_c,
            (unsigned long long)k.n_confirmed, (unsigned long long)n_final);

    char data_dir[256];
    snprintf(data_dir, sizeof(data_dir), "%s", d.data_dir);
    ck_assert_int_eq(ferryd_kill9(&d), 0);
    char report[8192];
    st = s_verify(data_dir, report, sizeof(report));
    ck_assert_msg(st == 0, "verify after the consumer crash loop: %s", report);
    s_rm_rf(data_dir);
    close(ct.fd);
    close(pt.fd);
    s_rm_rf(dir);
    free(k.seq);
    free(k.unconfirmed);
}

START_TEST(test_durable_consumer_crash_loop)
{
    crash_loop();
}
END_TEST

/* The same with a wildcard durable ("cc.*", whose position on cc.t is the
 * one that must survive). */
START_TEST(test_wildcard_durable_crash_loop)
{
    cc_pattern = "cc.*";
    crash_loop();
}
END_TEST

Suite *test_suite(void);

Suite *test_suite(void)
{
    Suite *s = suite_create("e2e_consumers_crash");
    TCase *tc = tcase_create("consumer_crash_loop");
    tcase_set_timeout(tc, 290);
    tcase_add_test(tc, test_durable_consumer_crash_loop);
    suite_add_tcase(s, tc);
    tc = tcase_create("wildcard_crash_loop");
    tcase_set_timeout(tc, 290);
    tcase_add_test(tc, test_wildcard_durable_crash_loop);
    suite_add_tcase(s, tc);
    return s;
}

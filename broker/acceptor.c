/*
 * acceptor.c - accept4 loop with its own reactor set (reactor.h).
 *
 * Out of file descriptors (EMFILE/ENFILE), a listener stays readable and a
 * naive loop spins. We keep one spare descriptor: give it up, accept the
 * pending connection, close it at once (the client sees a close rather than a
 * hang), and take the spare back.
 *
 * When every IO thread's mailbox is full (they are busy), the accepted
 * connection is held and accepting pauses until it could be handed over:
 * new clients wait in the kernel's backlog instead of being refused.
 */
#include "acceptor.h"

#include "codec.h"
#include "log.h"
#include "reactor.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* One listening socket: the plain one, the TLS one, or the MQTT one. */
struct acc_listener {
    int fd;             /* listening socket, or -1 (none, or closed) */
    uint32_t flags;     /* R_NEW_CONN_TLS, R_NEW_CONN_MQTT: what its connections speak */
    struct rx_io io;    /* fd's watcher: accept_ready */
    struct acceptor *a; /* back pointer */
};

#define ACC_MAX_LISTENERS 4 /* [0] plain, [1] TLS, [2] MQTT, [3] MQTT over TLS */

struct acceptor {
    struct server *srv;
    struct acc_listener l[ACC_MAX_LISTENERS];
    /* The fields below: the thread that accepts (the acceptor thread, or
     * the host IO thread when embedded) only, unless said otherwise. */
    struct rx *rx;             /* the set the listeners are watched in: own_rx, or the host's */
    struct rx *own_rx;         /* the acceptor thread's set */
    struct rx_timer resume;    /* ends a pause: acc_resume */
    struct rx_async stop;      /* acc_stop() wakes the accepting thread: close_listener */
    int spare_fd;              /* see the file comment */
    uint32_t next;             /* round robin */
    uint64_t n_emfile;         /* refused in this shortage */
    uint64_t n_unauth_refused; /* refused by the login gate's bounds */
    struct rmsg held;          /* R_NEW_CONN no IO thread had room for (is_held) */
    uint8_t held_key[16];      /* its address's key (login_addr_key) */
    int is_held;
    uint64_t n_held; /* connections held so far (logged once per 1000) */
    int is_paused;   /* listeners not watched */
    int is_embedded; /* set by main before the host starts, then read-only */
    pthread_t thread;
    int is_started;
};

static void accept_ready(struct rx *r, struct rx_io *io, uint32_t events);
static void acc_resume(struct rx *r, struct rx_timer *tm);

int acc_listen_socket(const char *host, int port_in, int *fd_out, int *port)
{
    char service[16];
    snprintf(service, sizeof(service), "%d", port_in);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int grc = getaddrinfo(host, service, &hints, &res);
    if (grc != 0) {
        log_error("listen %s:%d: %s", host, port_in, gai_strerror(grc));
        return -EINVAL;
    }
    int rc = -EADDRNOTAVAIL;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 4096) < 0) {
            rc = -errno;
            close(fd);
            continue;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        getsockname(fd, (struct sockaddr *)&ss, &sl);
        *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
        *fd_out = fd;
        rc = 0;
        break;
    }
    freeaddrinfo(res);
    if (rc < 0) {
        log_error("listen %s:%d: %s", host, port_in, strerror(-rc));
    }
    return rc;
}

/* Watch every open listener in r. 0, or -errno. */
static int watch_all(struct acceptor *a, struct rx *r)
{
    for (int i = 0; i < ACC_MAX_LISTENERS; i++) {
        if (a->l[i].fd >= 0) {
            int rc = rx_watch(r, a->l[i].fd, 1, RX_READ, &a->l[i].io);
            if (rc < 0) {
                return rc;
            }
        }
    }
    return 0;
}

static void unwatch_all(struct acceptor *a, struct rx *r)
{
    for (int i = 0; i < ACC_MAX_LISTENERS; i++) {
        if (a->l[i].fd >= 0) {
            (void)rx_unwatch(r, a->l[i].fd);
        }
    }
}

static void close_all(struct acceptor *a)
{
    for (int i = 0; i < ACC_MAX_LISTENERS; i++) {
        if (a->l[i].fd >= 0) {
            close(a->l[i].fd);
            a->l[i].fd = -1;
        }
    }
}

int acc_open(struct server *s, struct acceptor **out, struct acc_ports *ports)
{
    struct acceptor *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        return -ENOMEM;
    }
    a->srv = s;
    a->spare_fd = -1;
    for (int i = 0; i < ACC_MAX_LISTENERS; i++) {
        a->l[i].fd = -1;
        a->l[i].flags = (i == 1 || i == 3 ? R_NEW_CONN_TLS : 0u) | (i >= 2 ? R_NEW_CONN_MQTT : 0u);
        a->l[i].io.cb = accept_ready;
        a->l[i].a = a;
    }
    rx_timer_init(&a->resume, acc_resume);
    ports->plain = ports->tls = ports->mqtt = ports->mqtt_tls = -1;
    int rc = 0;
    if (s->cfg.listen_port >= 0) {
        rc = acc_listen_socket(s->cfg.listen_host, s->cfg.listen_port, &a->l[0].fd, &ports->plain);
    }
    if (rc == 0 && s->cfg.tls_listen_port >= 0) {
        rc = acc_listen_socket(s->cfg.tls_listen_host, s->cfg.tls_listen_port, &a->l[1].fd,
                               &ports->tls);
    }
    if (rc == 0 && s->cfg.mqtt_listen_port >= 0) {
        rc = acc_listen_socket(s->cfg.mqtt_listen_host, s->cfg.mqtt_listen_port, &a->l[2].fd,
                               &ports->mqtt);
    }
    if (rc == 0 && s->cfg.mqtt_tls_listen_port >= 0) {
        rc = acc_listen_socket(s->cfg.mqtt_tls_listen_host, s->cfg.mqtt_tls_listen_port,
                               &a->l[3].fd, &ports->mqtt_tls);
    }
    if (rc < 0) {
        close_all(a);
        free(a);
        return rc;
    }
    a->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    rc = rx_open(&a->own_rx, (enum rx_backend)s->cfg.io_backend);
    a->rx = a->own_rx;
    if (rc == 0) {
        rc = watch_all(a, a->rx);
    }
    if (rc < 0) {
        log_error("acceptor: %s", strerror(-rc));
        acc_close(a);
        return rc;
    }
    *out = a;
    return 0;
}

/* Refuse a connection over a limit with a fatal Error saying which. */
static void refuse_plain(int fd, const char *why)
{
    Ferry__Error e = FERRY__ERROR__INIT;
    e.code = FERRY__ERROR_CODE__ERROR_LIMIT_EXCEEDED;
    e.text = (char *)why;
    e.is_fatal = 1;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_ERROR;
    f.error = &e;
    uint8_t buf[128];
    size_t len;
    if (codec_frame_encode(&f, buf, sizeof(buf), &len) == 0) {
        ssize_t w = send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        (void)w;
    }
    shutdown(fd, SHUT_WR);
    close(fd);
}

/* As refuse_plain; on the TLS and MQTT listeners just close (a plain
 * Error frame means nothing to their clients). */
static void refuse(const struct acc_listener *l, int fd, const char *why)
{
    if (l->flags != 0) {
        close(fd);
    } else {
        refuse_plain(fd, why);
    }
}

/* Pause accepting for ms (a level-triggered reactor would report the
 * listener again at once), then resume: the accepting thread only. */
#define ACC_PAUSE_MS 100 /* out of descriptors */
#define ACC_HOLD_MS 2    /* a held connection tries the IO threads again */

static void acc_pause(struct acceptor *a, uint64_t ms)
{
    if (!a->is_paused) {
        unwatch_all(a, a->rx);
        a->is_paused = 1;
        (void)rx_timer_set(a->rx, &a->resume, rx_now(a->rx) + ms);
    }
}

/* Hand m (R_NEW_CONN) to an IO thread with room, starting with the next in
 * turn. 0, or -1 when every mailbox is full. */
static int post_conn(struct acceptor *a, struct rmsg *m)
{
    struct server *s = a->srv;
    for (uint32_t i = 0; i < s->n_iot; i++) {
        uint32_t k = a->next++ % s->n_iot;
        if (mbox_try_post(s->iot_in[k], m, 1) == 1) {
            return 0;
        }
    }
    return -1;
}

/* Let go of the held connection: closed, uncounted. */
static void drop_held(struct acceptor *a)
{
    if (a->is_held) {
        login_unauth_leave(&a->srv->login, a->held_key, now_ms());
        atomic_fetch_sub(&a->srv->conns_now, 1);
        close(a->held.u.fd);
        a->is_held = 0;
    }
}

static void acc_resume(struct rx *r, struct rx_timer *tm)
{
    struct acceptor *a = (struct acceptor *)((char *)tm - offsetof(struct acceptor, resume));
    if (a->is_held) {
        if (post_conn(a, &a->held) < 0) {
            (void)rx_timer_set(r, tm, rx_now(r) + ACC_HOLD_MS);
            return; /* still busy: the backlog keeps the others waiting */
        }
        a->is_held = 0;
    }
    if (a->spare_fd < 0) {
        a->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    if (watch_all(a, r) == 0) {
        a->is_paused = 0;
    } else {
        unwatch_all(a, r);
        (void)rx_timer_set(r, tm, rx_now(r) + ACC_PAUSE_MS);
    }
}

/* The stop wake-up: close the listeners; on its own thread, end the loop. */
static void close_listener(struct rx *r, struct rx_async *as)
{
    struct acceptor *a = (struct acceptor *)((char *)as - offsetof(struct acceptor, stop));
    if (!a->is_paused) {
        unwatch_all(a, r);
    }
    rx_timer_stop(r, &a->resume);
    drop_held(a);
    close_all(a);
    if (!a->is_embedded) {
        rx_stop(r);
    }
}

static void accept_all(struct acc_listener *l)
{
    struct acceptor *a = l->a;
    struct server *s = a->srv;
    for (int i = 0; i < 256 && l->fd >= 0; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if ((errno == EMFILE || errno == ENFILE) && a->spare_fd < 0) {
                /* No spare to trade: the listener would stay readable and
                 * the loop spin. Stop watching it for a moment. */
                if (a->n_emfile++ == 0) {
                    log_warn("accept: %s and no spare descriptor: pausing accepts",
                             strerror(errno));
                }
                acc_pause(a, ACC_PAUSE_MS);
                return;
            }
            if (errno == EMFILE || errno == ENFILE) {
                if (a->n_emfile++ == 0) { /* once per shortage, not per client */
                    log_warn("accept: %s: refusing connections until descriptors free up",
                             strerror(errno));
                }
                close(a->spare_fd);
                fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd >= 0) {
                    close(fd);
                }
                a->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                continue;
            }
            if (errno != EAGAIN) {
                log_warn("accept: %s", strerror(errno));
            }
            return;
        }
        if (a->n_emfile > 0) {
            log_warn("accept: descriptors available again; %llu connections were refused",
                     (unsigned long long)a->n_emfile);
            a->n_emfile = 0;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (atomic_load(&s->conns_now) >= s->cfg.max_connections) {
            log_warn("refusing a connection: max_connections (%u) reached", s->cfg.max_connections);
            refuse(l, fd, "too many connections");
            continue;
        }
        uint8_t key[16];
        login_addr_key((struct sockaddr *)&ss, key);
        if (login_unauth_enter(&s->login, key, now_ms()) < 0) {
            if (a->n_unauth_refused++ % 1000 == 0) { /* an attack would flood the log */
                log_warn("refusing a connection: too many connections not logged in yet "
                         "(max_unauthenticated %u, %u per address); %llu refused so far",
                         s->login.lim.max_unauth, s->login.lim.max_unauth_per_addr,
                         (unsigned long long)a->n_unauth_refused);
            }
            refuse(l, fd, "too many connections waiting to log in; retry later");
            continue;
        }
        atomic_fetch_add(&s->conns_now, 1);
        struct rmsg m = {.kind = R_NEW_CONN};
        m.u.fd = fd;
        m.n_ids = R_NEW_CONN_COUNTED | l->flags;
        if (post_conn(a, &m) < 0) {
            /* Every IO thread is busy: hold it, and the rest in the backlog. */
            if (a->n_held++ % 1000 == 0) {
                log_info("the IO threads' mailboxes are full: accepting pauses until they "
                         "take the next connection (%llu such pauses so far)",
                         (unsigned long long)a->n_held);
            }
            a->held = m;
            memcpy(a->held_key, key, sizeof(a->held_key));
            a->is_held = 1;
            acc_pause(a, ACC_HOLD_MS);
            return;
        }
    }
}

static void accept_ready(struct rx *r, struct rx_io *io, uint32_t events)
{
    (void)r;
    (void)events;
    accept_all((struct acc_listener *)((char *)io - offsetof(struct acc_listener, io)));
}

static void *acc_main(void *arg)
{
    struct acceptor *a = arg;
    log_thread_name_set("acceptor");
    int rc = rx_run(a->rx);
    if (rc < 0) {
        log_error("acceptor: %s", strerror(-rc));
    }
    return NULL;
}

int acc_start(struct acceptor *a)
{
    int rc = rx_async_init(a->own_rx, &a->stop, close_listener);
    if (rc < 0) {
        return rc;
    }
    rc = pthread_create(&a->thread, NULL, acc_main, a);
    if (rc != 0) {
        return -rc;
    }
    a->is_started = 1;
    return 0;
}

void acc_stop(struct acceptor *a)
{
    if (a->is_embedded) {
        rx_async_send(&a->stop); /* the host closes the listener in its loop */
        return;
    }
    if (a->is_started) {
        rx_async_send(&a->stop);
        pthread_join(a->thread, NULL);
        a->is_started = 0;
    }
    close_all(a); /* never started: still open */
}

int acc_embed(struct acceptor *a, struct rx *rx)
{
    a->is_embedded = 1;
    unwatch_all(a, a->own_rx);
    a->rx = rx;
    int rc = rx_async_init(rx, &a->stop, close_listener);
    return rc < 0 ? rc : watch_all(a, rx);
}

void acc_close(struct acceptor *a)
{
    if (a == NULL) {
        return;
    }
    if (!a->is_embedded) {
        acc_stop(a);
    } else {
        close_all(a); /* the host has exited (main joined it) */
    }
    rx_close(a->own_rx);
    if (a->spare_fd >= 0) {
        close(a->spare_fd);
    }
    free(a);
}

/*
 * acceptor.c - accept4 loop with its own reactor set (reactor.h).
 *
 * Out of file descriptors (EMFILE/ENFILE), a listener stays readable and a
 * naive loop spins. We keep one spare descriptor: give it up, accept the
 * pending connection, close it at once (the client sees a close rather than a
 * hang), and take the spare back.
 */
#include "acceptor.h"

#include "codec.h"
#include "io_thread.h"
#include "log.h"
#include "reactor.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

struct acceptor {
    struct server *srv;
    int lfd; /* listening socket */
    /* The fields below: the thread that accepts (the acceptor thread, or
     * the host IO thread when embedded) only, unless said otherwise. */
    struct rx *rx;      /* the set lfd is watched in: own_rx, or the host's */
    struct rx *own_rx;  /* the acceptor thread's set: lfd and stop_fd */
    void *tag;          /* lfd's pointer in rx */
    int stop_fd;        /* eventfd: acc_stop() wakes the thread */
    int spare_fd;       /* see the file comment */
    uint32_t next;      /* round robin */
    uint64_t n_emfile;  /* refused in this shortage */
    int is_paused;      /* listener not watched */
    uint64_t paused_at; /* monotonic ms of acc_pause (embedded: acc_tick resumes) */
    int is_embedded;    /* set by main before the host starts, then read-only */
    /* atomic: main asks an embedded acceptor's host to close the listener */
    atomic_int is_stop_wanted;
    pthread_t thread;
    int is_started;
};

int acc_open(struct server *s, struct acceptor **out, int *port)
{
    struct acceptor *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        return -ENOMEM;
    }
    a->srv = s;
    a->lfd = a->stop_fd = a->spare_fd = -1;

    char service[16];
    snprintf(service, sizeof(service), "%d", s->cfg.listen_port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int grc = getaddrinfo(s->cfg.listen_host, service, &hints, &res);
    if (grc != 0) {
        log_error("listen %s:%d: %s", s->cfg.listen_host, s->cfg.listen_port, gai_strerror(grc));
        free(a);
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
        a->lfd = fd;
        rc = 0;
        break;
    }
    freeaddrinfo(res);
    if (rc < 0) {
        log_error("listen %s:%d: %s", s->cfg.listen_host, s->cfg.listen_port, strerror(-rc));
        free(a);
        return rc;
    }
    a->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    a->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    rc = a->stop_fd < 0 ? -errno : rx_open(&a->own_rx, (enum rx_backend)s->cfg.io_backend);
    a->rx = a->own_rx;
    a->tag = &a->lfd;
    if (rc == 0) {
        rc = rx_watch(a->rx, a->lfd, 1, RX_READ, a->tag);
    }
    if (rc == 0) {
        rc = rx_watch(a->rx, a->stop_fd, 1, RX_READ, &a->stop_fd);
    }
    if (rc < 0) {
        log_error("acceptor: %s", strerror(-rc));
        acc_close(a);
        return rc;
    }
    *out = a;
    return 0;
}

/* Refuse a connection over max_connections with a fatal Error. */
static void refuse(int fd)
{
    Ferry__Error e = FERRY__ERROR__INIT;
    e.code = FERRY__ERROR_CODE__ERROR_LIMIT_EXCEEDED;
    e.text = (char *)"too many connections";
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

/* Pause accepting for ACC_PAUSE_MS (a level-triggered reactor would report the
 * listener again at once), and resume: acceptor thread only. */
#define ACC_PAUSE_MS 100

static void acc_pause(struct acceptor *a)
{
    if (!a->is_paused && rx_unwatch(a->rx, a->lfd) == 0) {
        a->is_paused = 1;
        a->paused_at = now_ms();
    }
}

static void acc_resume(struct acceptor *a)
{
    if (a->spare_fd < 0) {
        a->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    if (rx_watch(a->rx, a->lfd, 1, RX_READ, a->tag) == 0) {
        a->is_paused = 0;
    }
}

static void accept_all(struct acceptor *a)
{
    struct server *s = a->srv;
    for (int i = 0; i < 256; i++) {
        int fd = accept4(a->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
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
                acc_pause(a);
                return;
            }
            if (errno == EMFILE || errno == ENFILE) {
                if (a->n_emfile++ == 0) { /* once per shortage, not per client */
                    log_warn("accept: %s: refusing connections until descriptors free up",
                             strerror(errno));
                }
                close(a->spare_fd);
                fd = accept4(a->lfd, NULL, NULL, SOCK_CLOEXEC);
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
            refuse(fd);
            continue;
        }
        atomic_fetch_add(&s->conns_now, 1);
        struct rmsg m = {.kind = R_NEW_CONN};
        m.u.fd = fd;
        uint32_t k = a->next++ % s->n_iot;
        if (mbox_try_post(iot_mbox(s->iots[k]), &m, 1) != 1) {
            log_warn("IO thread %u is full: connection refused", k);
            atomic_fetch_sub(&s->conns_now, 1);
            close(fd);
        }
    }
}

static void *acc_main(void *arg)
{
    struct acceptor *a = arg;
    for (;;) {
        struct rx_event evs[4];
        int n = rx_wait(a->rx, evs, 4, a->is_paused ? ACC_PAUSE_MS : -1);
        if (n == 0 && a->is_paused) {
            acc_resume(a);
            continue;
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data == &a->stop_fd) {
                return NULL;
            }
            accept_all(a);
        }
    }
}

int acc_start(struct acceptor *a)
{
    int rc = pthread_create(&a->thread, NULL, acc_main, a);
    if (rc != 0) {
        return -rc;
    }
    a->is_started = 1;
    return 0;
}

void acc_stop(struct acceptor *a)
{
    if (a->is_embedded) {
        /* The host closes the listener in its own loop (acc_tick). */
        atomic_store(&a->is_stop_wanted, 1);
        mbox_wake(iot_mbox(a->srv->iots[0]));
        return;
    }
    if (a->is_started) {
        uint64_t one = 1;
        ssize_t w = write(a->stop_fd, &one, sizeof(one));
        (void)w;
        pthread_join(a->thread, NULL);
        a->is_started = 0;
    }
    if (a->lfd >= 0) {
        close(a->lfd);
        a->lfd = -1;
    }
}

void acc_embed(struct acceptor *a)
{
    a->is_embedded = 1;
}

int acc_attach(struct acceptor *a, struct rx *rx, void *tag)
{
    (void)rx_unwatch(a->own_rx, a->lfd);
    a->rx = rx;
    a->tag = tag;
    return rx_watch(rx, a->lfd, 1, RX_READ, tag);
}

void acc_on_ready(struct acceptor *a)
{
    accept_all(a);
}

int acc_tick(struct acceptor *a, uint64_t now)
{
    if (atomic_load(&a->is_stop_wanted) && a->lfd >= 0) {
        if (!a->is_paused) {
            (void)rx_unwatch(a->rx, a->lfd);
        }
        close(a->lfd);
        a->lfd = -1;
        return -1;
    }
    if (!a->is_paused) {
        return -1;
    }
    if (now >= a->paused_at + ACC_PAUSE_MS) {
        acc_resume(a);
        return a->is_paused ? ACC_PAUSE_MS : -1;
    }
    return (int)(a->paused_at + ACC_PAUSE_MS - now);
}

void acc_close(struct acceptor *a)
{
    if (a == NULL) {
        return;
    }
    if (!a->is_embedded) {
        acc_stop(a);
    } else if (a->lfd >= 0) {
        close(a->lfd); /* the host has exited (main joined it) */
        a->lfd = -1;
    }
    rx_close(a->own_rx);
    if (a->stop_fd >= 0) {
        close(a->stop_fd);
    }
    if (a->spare_fd >= 0) {
        close(a->spare_fd);
    }
    free(a);
}

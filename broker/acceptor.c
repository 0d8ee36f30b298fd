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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

struct acceptor {
    struct server *srv;
    int lfd;           /* listening socket */
    struct rx *rx;     /* the listener and stop_fd (acceptor thread, once started) */
    int stop_fd;       /* eventfd: acc_stop() wakes the thread */
    int spare_fd;      /* acceptor thread only: see the file comment */
    uint32_t next;     /* acceptor thread only: round robin */
    uint64_t n_emfile; /* acceptor thread only: refused in this shortage */
    int is_paused;     /* acceptor thread only: listener not watched */
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
    rc = a->stop_fd < 0 ? -errno : rx_open(&a->rx, (enum rx_backend)s->cfg.io_backend);
    if (rc == 0) {
        rc = rx_watch(a->rx, a->lfd, 1, RX_READ, &a->lfd);
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
    }
}

static void acc_resume(struct acceptor *a)
{
    if (a->spare_fd < 0) {
        a->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    if (rx_watch(a->rx, a->lfd, 1, RX_READ, &a->lfd) == 0) {
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

void acc_close(struct acceptor *a)
{
    if (a == NULL) {
        return;
    }
    acc_stop(a);
    rx_close(a->rx);
    if (a->stop_fd >= 0) {
        close(a->stop_fd);
    }
    if (a->spare_fd >= 0) {
        close(a->spare_fd);
    }
    free(a);
}

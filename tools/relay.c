/*
 * relay.c - the zero-logic baseline for `make bench`: copy bytes from one
 * socket to N sockets, nothing else.
 *
 *   ferry_relay --subs N
 *
 * Listens on 127.0.0.1 (port 0), prints "relay: listening on 127.0.0.1:PORT",
 * then takes N + 1 connections. Each client's first byte says what it is:
 * 'P' (the publisher, exactly one) or 'S' (a subscriber). Everything the
 * publisher sends after that byte is written to every subscriber, in big
 * blocking writes; when the publisher closes, the relay closes all and exits.
 * This is the ceiling a broker can reach on this machine: one read and N
 * writes per chunk, no framing, no routing.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK (256 * 1024)

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int n_subs = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--subs") == 0 && i + 1 < argc) {
            n_subs = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: ferry_relay [--subs N]\n");
            return 2;
        }
    }
    if (n_subs < 1 || n_subs > 1024) {
        fprintf(stderr, "relay: --subs must be 1..1024\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof(a);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 64) < 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &al) < 0) {
        perror("relay: listen");
        return 1;
    }
    printf("relay: listening on 127.0.0.1:%d\n", ntohs(a.sin_port));
    fflush(stdout);

    int pub = -1;
    int *subs = calloc((size_t)n_subs, sizeof(int));
    int n = 0;
    while (pub < 0 || n < n_subs) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR) {
                continue;
            }
            perror("relay: accept");
            return 1;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        char role;
        if (read(fd, &role, 1) != 1) {
            close(fd);
            continue;
        }
        if (role == 'P' && pub < 0) {
            pub = fd;
        } else if (role == 'S' && n < n_subs) {
            subs[n++] = fd;
        } else {
            close(fd);
        }
    }
    close(lfd);
    char *buf = malloc(CHUNK);
    for (;;) {
        ssize_t r = read(pub, buf, CHUNK);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            break;
        }
        for (int i = 0; i < n_subs; i++) {
            if (write_all(subs[i], buf, (size_t)r) < 0) {
                return 1;
            }
        }
    }
    for (int i = 0; i < n_subs; i++) {
        close(subs[i]);
    }
    close(pub);
    free(buf);
    free(subs);
    return 0;
}

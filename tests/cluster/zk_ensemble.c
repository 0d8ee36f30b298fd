/*
 * zk_ensemble.c - see zk_ensemble.h.
 */
#include "zk_ensemble.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define JAR_DIR "/usr/share/java"

/* What QuorumPeerMain needs, and slf4j-nop to keep it quiet. */
static const char *const jars[] = {
    "zookeeper.jar",
    "zookeeper-jute.jar",
    "slf4j-api.jar",
    "slf4j-nop.jar",
    "netty-handler.jar",
    "netty-common.jar",
    "netty-transport.jar",
    "netty-buffer.jar",
    "netty-resolver.jar",
    "netty-codec.jar",
    "netty-transport-native-epoll.jar",
    "netty-transport-native-unix-common.jar",
    "metrics-core.jar",
    "commons-cli.jar",
    "snappy-java.jar",
};

long long zk_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *java_path(void)
{
    const char *j = getenv("JAVA");
    if (j != NULL && *j) {
        return j;
    }
    return access("/usr/bin/java", X_OK) == 0 ? "/usr/bin/java" : NULL;
}

int zk_available(void)
{
    if (java_path() == NULL) {
        fprintf(stderr, "skipped: no java (Debian: zookeeper, which brings a JRE)\n");
        return 0;
    }
    for (size_t i = 0; i < 2; i++) { /* the jars that must exist; the rest are optional */
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", JAR_DIR, jars[i]);
        if (access(p, R_OK) != 0) {
            fprintf(stderr, "skipped: %s missing (Debian: zookeeper)\n", p);
            return 0;
        }
    }
    return 1;
}

int zk_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        return -errno;
    }
    fputs(text, f);
    return fclose(f) == 0 ? 0 : -EIO;
}

static int spawn(struct zk_ensemble *z, int i)
{
    char cp[4096] = "", cfg[300], log[300];
    for (size_t k = 0; k < sizeof(jars) / sizeof(jars[0]); k++) {
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", JAR_DIR, jars[k]);
        if (access(p, R_OK) == 0) {
            strncat(cp, cp[0] ? ":" : "", sizeof(cp) - strlen(cp) - 1);
            strncat(cp, p, sizeof(cp) - strlen(cp) - 1);
        }
    }
    snprintf(cfg, sizeof(cfg), "%s/zoo%d.cfg", z->dir, i + 1);
    snprintf(log, sizeof(log), "%s/zoo%d.log", z->dir, i + 1);
    pid_t pid = fork();
    if (pid < 0) {
        return -errno;
    }
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(java_path(), "java", "-Xmx128m", "-XX:+UseSerialGC", "-cp", cp,
              "org.apache.zookeeper.server.quorum.QuorumPeerMain", cfg, (char *)NULL);
        _exit(127);
    }
    z->pid[i] = pid;
    return 0;
}

int zk_mode(const struct zk_ensemble *z, int i, char *buf, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)z->client_port[i])};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || write(fd, "srvr", 4) != 4) {
        int rc = -errno;
        if (fd >= 0) {
            close(fd);
        }
        return rc ? rc : -EIO;
    }
    char reply[2048];
    size_t n = 0;
    long long deadline = zk_now_ms() + 1000;
    while (n < sizeof(reply) - 1 && zk_now_ms() < deadline) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 200) <= 0) {
            continue;
        }
        ssize_t r = read(fd, reply + n, sizeof(reply) - 1 - n);
        if (r <= 0) {
            break;
        }
        n += (size_t)r;
    }
    close(fd);
    reply[n] = '\0';
    const char *m = strstr(reply, "Mode: ");
    if (m == NULL) {
        return -EAGAIN;
    }
    m += 6;
    size_t l = strcspn(m, "\r\n");
    snprintf(buf, cap, "%.*s", (int)l, m);
    return 0;
}

int zk_start(struct zk_ensemble *z, int timeout_ms)
{
    memset(z, 0, sizeof(*z));
    snprintf(z->dir, sizeof(z->dir), "/tmp/ferry-zk-XXXXXX");
    if (mkdtemp(z->dir) == NULL) {
        return -errno;
    }
    int quorum[ZK_SERVERS], election[ZK_SERVERS];
    for (int i = 0; i < ZK_SERVERS; i++) {
        z->client_port[i] = zk_free_port();
        quorum[i] = zk_free_port();
        election[i] = zk_free_port();
        if (z->client_port[i] < 0 || quorum[i] < 0 || election[i] < 0) {
            return -EADDRNOTAVAIL;
        }
    }
    snprintf(z->connect, sizeof(z->connect), "127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d",
             z->client_port[0], z->client_port[1], z->client_port[2]);
    for (int i = 0; i < ZK_SERVERS; i++) {
        char path[300], text[1200];
        snprintf(path, sizeof(path), "%s/data%d", z->dir, i + 1);
        mkdir(path, 0755);
        snprintf(path, sizeof(path), "%s/data%d/myid", z->dir, i + 1);
        snprintf(text, sizeof(text), "%d\n", i + 1);
        int rc = write_file(path, text);
        snprintf(path, sizeof(path), "%s/zoo%d.cfg", z->dir, i + 1);
        /* A short tick: sessions of 4 s are allowed (2 to 20 ticks). */
        snprintf(text, sizeof(text),
                 "tickTime=500\ninitLimit=20\nsyncLimit=10\ndataDir=%s/data%d\nclientPort=%d\n"
                 "clientPortAddress=127.0.0.1\nadmin.enableServer=false\n"
                 "4lw.commands.whitelist=srvr\nmaxSessionTimeout=20000\n"
                 "server.1=127.0.0.1:%d:%d\nserver.2=127.0.0.1:%d:%d\nserver.3=127.0.0.1:%d:%d\n",
                 z->dir, i + 1, z->client_port[i], quorum[0], election[0], quorum[1], election[1],
                 quorum[2], election[2]);
        if (rc < 0 || (rc = write_file(path, text)) < 0 || (rc = spawn(z, i)) < 0) {
            return rc;
        }
    }
    long long deadline = zk_now_ms() + timeout_ms;
    while (zk_now_ms() < deadline) {
        int leaders = 0, followers = 0;
        for (int i = 0; i < ZK_SERVERS; i++) {
            char mode[32];
            if (zk_mode(z, i, mode, sizeof(mode)) == 0) {
                leaders += strcmp(mode, "leader") == 0;
                followers += strcmp(mode, "follower") == 0;
            }
        }
        if (leaders == 1 && followers == ZK_SERVERS - 1) {
            return 0;
        }
        struct timespec ts = {0, 100 * 1000000L}; /* the poll's period, not a synchronisation */
        nanosleep(&ts, NULL);
    }
    return -ETIMEDOUT;
}

void zk_kill(struct zk_ensemble *z, int i)
{
    if (z->pid[i] > 0) {
        kill(z->pid[i], SIGKILL);
        waitpid(z->pid[i], NULL, 0);
        z->pid[i] = 0;
    }
}

void zk_stop(struct zk_ensemble *z)
{
    for (int i = 0; i < ZK_SERVERS; i++) {
        if (z->pid[i] > 0) {
            kill(z->pid[i], SIGKILL);
            waitpid(z->pid[i], NULL, 0);
            z->pid[i] = 0;
        }
    }
    if (z->dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", z->dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "zk_stop: could not remove %s\n", z->dir);
        }
        z->dir[0] = '\0';
    }
}

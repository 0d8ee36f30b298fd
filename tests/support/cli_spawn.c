/* cli_spawn.c - see cli_spawn.h. */
#include "cli_spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ARGV_MAX 64

pid_t cli_spawn(const char *path, const char *const *pre, const char *const *args,
                const char *const *env, int fds[3])
{
    const char *argv[ARGV_MAX];
    int n = 0;
    argv[n++] = path;
    const char *const *lists[2] = {pre, args};
    for (int l = 0; l < 2; l++) {
        for (int i = 0; lists[l] && lists[l][i]; i++) {
            if (n == ARGV_MAX - 1) {
                return -E2BIG;
            }
            argv[n++] = lists[l][i];
        }
    }
    argv[n] = NULL;

    int p[3][2];
    for (int i = 0; i < 3; i++) {
        if (pipe2(p[i], O_CLOEXEC) != 0) {
            int err = -errno;
            while (i-- > 0) {
                close(p[i][0]);
                close(p[i][1]);
            }
            return err;
        }
    }
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[0][0], 0);
        dup2(p[1][1], 1);
        dup2(p[2][1], 2);
        for (int i = 0; env && env[i]; i++) {
            if (strchr(env[i], '=')) {
                putenv((char *)env[i]);
            } else {
                unsetenv(env[i]);
            }
        }
        execv(path, (char *const *)argv);
        _exit(127);
    }
    int err = pid < 0 ? -errno : 0;
    close(p[0][0]);
    close(p[1][1]);
    close(p[2][1]);
    if (err) {
        close(p[0][1]);
        close(p[1][0]);
        close(p[2][0]);
        return err;
    }
    fds[0] = p[0][1];
    fds[1] = p[1][0];
    fds[2] = p[2][0];
    return pid;
}

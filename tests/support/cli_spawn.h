/*
 * cli_spawn.h - run a program (the ferry CLI) with its three standard
 * streams on pipes, for end-to-end tests.
 */
#ifndef FERRY_TEST_CLI_SPAWN_H
#define FERRY_TEST_CLI_SPAWN_H

#include <sys/types.h>

/* Start path with argv[0] = path, then the NULL-terminated lists pre and args
 * (either may be NULL). env (NULL-terminated, may be NULL) changes the
 * child's environment: "K=V" sets K, a bare "K" unsets it. On success the
 * child's pid is returned and fds[0] (its stdin, write end), fds[1] (stdout,
 * read end) and fds[2] (stderr, read end) are set, all close-on-exec in the
 * parent; returns -errno on failure. */
pid_t cli_spawn(const char *path, const char *const *pre, const char *const *args,
                const char *const *env, int fds[3]);

#endif /* FERRY_TEST_CLI_SPAWN_H */

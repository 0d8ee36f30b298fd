/*
 * cmd_passwd.c - `ferry passwd`: hash a password (or make a bearer token)
 * for ferryd's auth file.
 *
 * The password is read from the terminal without echo (twice, to catch
 * typos), or as the first line of standard input when that is not a
 * terminal. Nothing is sent anywhere: the hash goes to standard output.
 */
#include "cli.h"
#include "cli_util.h"

#include <crypt.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <termios.h>
#include <unistd.h>

#define PASS_MAX 1024
#define PASS_BCRYPT_MAX 72 /* ferryd's AUTH_BCRYPT_PASS_MAX */

static const char passwd_help[] =
    "Usage: ferry passwd [OPTIONS]\n"
    "\n"
    "Print a crypt(3) hash of a password for ferryd's auth file\n"
    "(`user NAME HASH`). The password is read from the terminal without echo,\n"
    "or as the first line of standard input when that is not a terminal.\n"
    "With --token NAME, make a new random bearer token instead: print the\n"
    "auth file line `token NAME HASH` on standard output and the token that\n"
    "clients pass (--token NAME:SECRET, or $FERRY_TOKEN) on standard error.\n"
    "\n"
    "Options:\n"
    "  -m, --method M   yescrypt (default), bcrypt or sha512 (bcrypt reads at\n"
    "                   most 72 bytes of a password: longer ones are refused)\n"
    "  -t, --token NAME make a bearer token named NAME\n"
    "\n"
    "Examples:\n"
    "  echo \"user alice $(ferry passwd)\" >> /etc/ferry/auth\n"
    "  ferry passwd --token ci >> /etc/ferry/auth   # note the token printed\n";

struct passwd_args {
    const char *prefix;
    const char *token_name;
};

static int passwd_opt(int opt, const char *arg, void *ctx)
{
    struct passwd_args *a = ctx;
    switch (opt) {
    case 'm':
        if (strcmp(arg, "yescrypt") == 0) {
            a->prefix = "$y$";
        } else if (strcmp(arg, "sha512") == 0) {
            a->prefix = "$6$";
        } else if (strcmp(arg, "bcrypt") == 0) {
            a->prefix = "$2b$";
        } else {
            return cli_usage("passwd", "unknown method '%s' (yescrypt, bcrypt or sha512)", arg);
        }
        return -1;
    case 't':
        a->token_name = arg;
        return -1;
    default:
        return CLI_EXIT_USAGE;
    }
}

/* Read one line into buf (without its newline). Returns 0, or -1 at EOF or
 * on an error (errno set; EINTR after Ctrl-C). */
static int read_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        char ch;
        ssize_t r = read(fd, &ch, 1);
        if (r < 0) {
            return -1;
        }
        if (r == 0) {
            if (n == 0) {
                errno = 0;
                return -1;
            }
            break;
        }
        if (ch == '\n') {
            break;
        }
        if (n + 1 >= cap) {
            errno = E2BIG;
            return -1;
        }
        buf[n++] = ch;
    }
    if (n > 0 && buf[n - 1] == '\r') {
        n--;
    }
    buf[n] = '\0';
    return 0;
}

/* Prompt on the terminal with echo off. Returns 0 or -1 (errno). */
static int read_hidden(const char *prompt, char *buf, size_t cap)
{
    struct termios old, quiet;
    if (tcgetattr(0, &old) < 0) {
        return -1;
    }
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    quiet.c_lflag |= ECHONL;
    fputs(prompt, stderr);
    fflush(stderr);
    if (tcsetattr(0, TCSAFLUSH, &quiet) < 0) {
        return -1;
    }
    int rc = read_line(0, buf, cap);
    int saved = errno;
    tcsetattr(0, TCSAFLUSH, &old);
    errno = saved;
    return rc;
}

static int get_password(char *pw, size_t cap)
{
    if (!isatty(0)) {
        if (read_line(0, pw, cap) < 0) {
            cli_err("passwd: %s", errno == E2BIG ? "password too long"
                                  : errno        ? strerror(errno)
                                                 : "no password on standard input");
            return -1;
        }
        return 0;
    }
    char again[PASS_MAX];
    int rc = -1;
    if (read_hidden("Password: ", pw, cap) < 0 ||
        read_hidden("Again: ", again, sizeof(again)) < 0) {
        if (errno != EINTR) {
            cli_err("passwd: %s", errno == E2BIG ? "password too long"
                                  : errno        ? strerror(errno)
                                                 : "no password");
        }
    } else if (strcmp(pw, again) != 0) {
        cli_err("passwd: the passwords differ");
    } else {
        rc = 0;
    }
    explicit_bzero(again, sizeof(again));
    return rc;
}

/* A random secret: 32 bytes as URL-safe base64 without padding. */
static int make_secret(char *out, size_t cap)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char rnd[33];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd) || cap < 45) {
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i < sizeof(rnd); i += 3) {
        uint32_t v = (uint32_t)rnd[i] << 16 | (uint32_t)rnd[i + 1] << 8 | rnd[i + 2];
        for (int k = 3; k >= 0; k--) {
            out[n++] = b64[(v >> (6 * k)) & 63];
        }
    }
    out[n] = '\0';
    explicit_bzero(rnd, sizeof(rnd));
    return 0;
}

int cmd_passwd(struct cli_opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_COMMON_LONGOPTS,
        {"method", required_argument, NULL, 'm'},
        {"token", required_argument, NULL, 't'},
        {NULL, 0, NULL, 0},
    };
    struct passwd_args a = {.prefix = "$y$"};
    int first;
    /* --token here is this command's (a name), not the common option. */
    struct option opts[sizeof(longopts) / sizeof(longopts[0])];
    size_t n = 0;
    for (size_t i = 0; i < sizeof(longopts) / sizeof(longopts[0]); i++) {
        if (longopts[i].name && strcmp(longopts[i].name, "token") == 0 && longopts[i].val != 't') {
            continue;
        }
        opts[n++] = longopts[i];
    }
    int rc = cli_getopt(o, argc, argv, "m:t:", opts, passwd_help, passwd_opt, &a, &first);
    if (rc != -1) {
        return rc;
    }
    if (first < argc) {
        return cli_usage("passwd", "unexpected argument '%s'", argv[first]);
    }
    if (a.token_name) {
        size_t nl = strlen(a.token_name);
        if (nl == 0 || nl > 64 || strpbrk(a.token_name, ": \t\r\n#") != NULL) {
            return cli_usage("passwd", "bad token name '%s' (1..64 bytes, no spaces, ':' or '#')",
                             a.token_name);
        }
    }
    char pw[PASS_MAX];
    if (a.token_name ? make_secret(pw, sizeof(pw)) < 0 : get_password(pw, sizeof(pw)) < 0) {
        explicit_bzero(pw, sizeof(pw));
        if (cli_interrupted) {
            return cli_interrupt_status();
        }
        if (a.token_name) {
            cli_err("passwd: no random bytes: %s", strerror(errno));
        }
        return CLI_EXIT_ERROR;
    }
    /* An empty password is no password; bcrypt ignores what follows its
     * 72nd byte, so ferryd refuses longer ones at login: refuse them here. */
    const char *bad = pw[0] == '\0' ? "empty password refused"
                      : strcmp(a.prefix, "$2b$") == 0 && strlen(pw) > PASS_BCRYPT_MAX
                          ? "password longer than 72 bytes, which bcrypt cannot check "
                            "(use yescrypt, or a shorter password)"
                          : NULL;
    if (bad) {
        explicit_bzero(pw, sizeof(pw));
        cli_err("passwd: %s", bad);
        return CLI_EXIT_ERROR;
    }
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    const char *h = NULL;
    if (cd && crypt_gensalt_rn(a.prefix, 0, NULL, 0, setting, sizeof(setting)) != NULL) {
        h = crypt_rn(pw, setting, cd, sizeof(*cd));
    }
    rc = CLI_EXIT_ERROR;
    if (h == NULL || h[0] == '*') {
        cli_err("passwd: crypt failed: %s", strerror(errno ? errno : EINVAL));
    } else if (a.token_name) {
        printf("token %s %s\n", a.token_name, h);
        fprintf(stderr, "ferry: the token for clients (shown once): %s:%s\n", a.token_name, pw);
        rc = CLI_EXIT_OK;
    } else {
        printf("%s\n", h);
        rc = CLI_EXIT_OK;
    }
    if (cd) {
        explicit_bzero(cd, sizeof(*cd));
        free(cd);
    }
    explicit_bzero(pw, sizeof(pw));
    if (fflush(stdout) != 0) {
        cli_err("passwd: writing the hash: %s", strerror(errno));
        return CLI_EXIT_ERROR;
    }
    return rc;
}

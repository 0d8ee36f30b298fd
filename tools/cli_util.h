/*
 * cli_util.h - the pieces every `ferry` subcommand shares: exit codes, error
 * reporting, number/duration/size/time parsing, a growable output buffer
 * with JSON string escaping, UTF-8 validation and base64.
 *
 * Everything except cli_err()/cli_usage() and cli_now_*() is pure: no IO,
 * no global state, so tests/unit/test_cli_util.c checks it directly.
 */
#ifndef FERRY_TOOLS_CLI_UTIL_H
#define FERRY_TOOLS_CLI_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exit codes of `ferry` (documented in `ferry --help`). An interrupted
 * command (SIGINT/SIGTERM) shuts down cleanly and exits 128 + signal. */
enum {
    CLI_EXIT_OK = 0,    /* success */
    CLI_EXIT_ERROR = 1, /* the command ran and failed (server, IO, timeout) */
    CLI_EXIT_USAGE = 2, /* bad command line: nothing was attempted */
};

/* Print "ferry: <message>\n" to stderr. */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Print "ferry CMD: <message>\nTry 'ferry CMD --help' for more information.\n"
 * to stderr and return CLI_EXIT_USAGE. cmd may be NULL (top level). */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Parsers. Each returns 0 and writes *out on success, -EINVAL (out
 * untouched) when s is not entirely a valid value, -ERANGE when it is too
 * large.
 *
 * cli_parse_u64: decimal digits only (no sign, no spaces).
 * cli_parse_duration_ns: a number with an optional fraction and a unit
 *   ns, us, ms, s, m, h (e.g. "250ms", "1.5s", "2m"); a bare number means
 *   seconds. Negative durations are refused.
 * cli_parse_size: a number with an optional unit: B, k/K/KB/KiB (1024),
 *   M/MB/MiB, G/GB/GiB (e.g. "128", "16k", "1MiB").
 * cli_parse_time_ns: an absolute time as RFC 3339
 *   ("2026-11-29T20:15:00Z", "2026-11-29T21:15:00.5+01:00"), or Unix
 *   seconds with an optional fraction ("1795980000.25"), or a duration
 *   with a unit meaning that long before now_ns ("10m" = ten minutes ago).
 */
int cli_parse_u64(const char *s, uint64_t *out);
int cli_parse_duration_ns(const char *s, uint64_t *out);
int cli_parse_size(const char *s, uint64_t *out);
int cli_parse_time_ns(const char *s, int64_t now_ns, int64_t *out);

/* Clocks, in nanoseconds. */
int64_t cli_now_realtime_ns(void);
uint64_t cli_now_mono_ns(void);

/*
 * A growable byte buffer. Initialise with {0}; release with cli_buf_free().
 * Appends abort the program with "ferry: out of memory" when allocation
 * fails: a CLI has nothing better to do, and it keeps every caller simple.
 */
struct cli_buf {
    char *data;
    size_t len;
    size_t cap;
};

void cli_buf_reserve(struct cli_buf *b, size_t extra);
void cli_buf_add(struct cli_buf *b, const void *p, size_t n);
void cli_buf_adds(struct cli_buf *b, const char *s);
void cli_buf_addf(struct cli_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cli_buf_free(struct cli_buf *b);

/* Append p[0..n) as a JSON string literal, quotes included: control
 * characters, '"' and '\\' are escaped, well-formed UTF-8 is copied, and
 * each byte that is not part of well-formed UTF-8 becomes U+FFFD (so the
 * result is always valid JSON; use base64 for bytes that must survive). */
void cli_buf_json_str(struct cli_buf *b, const void *p, size_t n);

/* Append `,"name":` and p[0..n) as a JSON value: a string when it is valid
 * UTF-8 (cli_utf8_valid), else its base64 followed by the member
 * `"enc_name":"base64"` (the form of `ferry sub --json`'s key and payload). */
void cli_buf_json_bytes(struct cli_buf *b, const char *name, const char *enc_name, const void *p,
                        size_t n);

/* Append p[0..n) as a double-quoted C-style literal for a terminal: printable
 * ASCII and well-formed UTF-8 (other than control characters) as they are,
 * \" \\ \n \r \t escaped, every other byte (controls, DEL, bytes not
 * part of well-formed UTF-8) as \xNN. */
void cli_buf_quoted(struct cli_buf *b, const void *p, size_t n);

/* Append base64 (RFC 4648, with padding) of p[0..n). */
void cli_buf_base64(struct cli_buf *b, const void *p, size_t n);

/* Append t (ns since the epoch) as RFC 3339 UTC with nanoseconds:
 * 2026-11-29T20:15:00.123456789Z. */
void cli_buf_time_rfc3339(struct cli_buf *b, int64_t t_ns);

/* True when p[0..n) is well-formed UTF-8 (no overlongs, no surrogates,
 * nothing above U+10FFFF) and contains no NUL byte. */
bool cli_utf8_valid(const void *p, size_t n);

/* Decode base64 (for tests and symmetry); returns the decoded length, or -1
 * when s is not valid padded base64. out needs room for 3 * (n / 4). */
long cli_base64_decode(const char *s, size_t n, void *out);

/* Split "HOST:PORT" (or "[v6]:PORT", or "HOST" alone = default port).
 * host_out gets a NUL-terminated copy; 0 on success, -EINVAL otherwise. */
int cli_split_hostport(const char *s, char *host_out, size_t host_cap, uint16_t default_port,
                       uint16_t *port_out);

/* Human-readable rate and size: "1.23M", "456k", "12.3 MB"... into out. */
void cli_fmt_count(char *out, size_t cap, double v);
/* "1d 2h 3m 4s" (or "4.567s" under a minute) from milliseconds. */
void cli_fmt_uptime(char *out, size_t cap, uint64_t ms);
/* "123 B", "12.3 MiB". */
void cli_fmt_bytes(char *out, size_t cap, uint64_t n);
void cli_fmt_duration_ns(char *out, size_t cap, uint64_t ns);

#endif /* FERRY_TOOLS_CLI_UTIL_H */

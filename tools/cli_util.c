/*
 * cli_util.c - shared helpers of the `ferry` tool; see cli_util.h.
 */
#include "cli_util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void cli_err(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "ferry: %s\n", msg);
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (cmd) {
        fprintf(stderr, "ferry %s: %s\nTry 'ferry %s --help' for more information.\n", cmd, msg,
                cmd);
    } else {
        fprintf(stderr, "ferry: %s\nTry 'ferry --help' for more information.\n", msg);
    }
    return CLI_EXIT_USAGE;
}

/* ---- parsing ------------------------------------------------------------ */

int cli_parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s) {
        return -EINVAL;
    }
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') {
            return -EINVAL;
        }
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return -ERANGE;
        }
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/*
 * Parse "digits[.digits]" at *sp into an integer part and a fraction scaled
 * to 1e9 (nanoseconds of a unit). Advances *sp past the number.
 */
static int parse_decimal(const char **sp, uint64_t *ip, uint64_t *frac_e9)
{
    const char *p = *sp;
    uint64_t v = 0, f = 0, scale = 100000000;
    bool any = false;
    while (*p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return -ERANGE;
        }
        v = v * 10 + d;
        p++;
        any = true;
    }
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            f += (uint64_t)(*p - '0') * scale;
            scale /= 10;
            p++;
            any = true;
        }
    }
    if (!any) {
        return -EINVAL;
    }
    *sp = p;
    *ip = v;
    *frac_e9 = f;
    return 0;
}

/* v * mult + frac_e9 * mult / 1e9, with overflow checks. */
static int scale_value(uint64_t v, uint64_t frac_e9, uint64_t mult, uint64_t *out)
{
    if (mult != 0 && v > UINT64_MAX / mult) {
        return -ERANGE;
    }
    uint64_t r = v * mult;
    /* frac_e9 < 1e9; mult <= 3.6e12: do it in long double to avoid overflow. */
    long double extra = (long double)frac_e9 * (long double)mult / 1e9L;
    if ((long double)(UINT64_MAX - r) < extra) {
        return -ERANGE;
    }
    *out = r + (uint64_t)(extra + 0.5L);
    return 0;
}

struct unit {
    const char *name;
    uint64_t mult;
};

static int parse_with_units(const char *s, const struct unit *units, uint64_t bare_mult,
                            bool bare_frac_ok, uint64_t *out)
{
    if (!s) {
        return -EINVAL;
    }
    const char *p = s;
    uint64_t ip, fr;
    int rc = parse_decimal(&p, &ip, &fr);
    if (rc < 0) {
        return rc;
    }
    uint64_t mult = 0;
    if (*p == '\0') {
        if (fr && !bare_frac_ok) {
            return -EINVAL;
        }
        mult = bare_mult;
    } else {
        for (const struct unit *u = units; u->name; u++) {
            if (strcmp(p, u->name) == 0) {
                mult = u->mult;
                break;
            }
        }
        if (mult == 0) {
            return -EINVAL;
        }
    }
    return scale_value(ip, fr, mult, out);
}

static const struct unit duration_units[] = {
    {"ns", 1},
    {"us", 1000},
    {"\xc2\xb5s", 1000}, /* µs */
    {"ms", 1000000},
    {"s", 1000000000ull},
    {"m", 60ull * 1000000000ull},
    {"h", 3600ull * 1000000000ull},
    {NULL, 0},
};

int cli_parse_duration_ns(const char *s, uint64_t *out)
{
    return parse_with_units(s, duration_units, 1000000000ull, true, out);
}

static const struct unit size_units[] = {
    {"B", 1},
    {"k", 1024},
    {"K", 1024},
    {"KB", 1024},
    {"KiB", 1024},
    {"kB", 1024},
    {"M", 1024 * 1024},
    {"MB", 1024 * 1024},
    {"MiB", 1024 * 1024},
    {"G", 1024ull * 1024 * 1024},
    {"GB", 1024ull * 1024 * 1024},
    {"GiB", 1024ull * 1024 * 1024},
    {NULL, 0},
};

int cli_parse_size(const char *s, uint64_t *out)
{
    return parse_with_units(s, size_units, 1, false, out);
}

static int parse_fixed_digits(const char **sp, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*sp)[i];
        if (c < '0' || c > '9') {
            return -EINVAL;
        }
        v = v * 10 + (c - '0');
    }
    *sp += n;
    *out = v;
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int parse_rfc3339(const char *s, int64_t *out)
{
    const char *p = s;
    int y, mo, d, h, mi, sec;
    if (parse_fixed_digits(&p, 4, &y) || *p++ != '-' || parse_fixed_digits(&p, 2, &mo) ||
        *p++ != '-' || parse_fixed_digits(&p, 2, &d)) {
        return -EINVAL;
    }
    if (*p != 'T' && *p != 't' && *p != ' ') {
        return -EINVAL;
    }
    p++;
    if (parse_fixed_digits(&p, 2, &h) || *p++ != ':' || parse_fixed_digits(&p, 2, &mi) ||
        *p++ != ':' || parse_fixed_digits(&p, 2, &sec)) {
        return -EINVAL;
    }
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) {
        return -EINVAL;
    }
    int64_t frac = 0;
    if (*p == '.') {
        p++;
        int64_t scale = 100000000;
        if (*p < '0' || *p > '9') {
            return -EINVAL;
        }
        while (*p >= '0' && *p <= '9') {
            frac += (*p - '0') * scale;
            scale /= 10;
            p++;
        }
    }
    int64_t offset_s = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1;
        int oh, om;
        p++;
        if (parse_fixed_digits(&p, 2, &oh) || *p++ != ':' || parse_fixed_digits(&p, 2, &om) ||
            oh > 23 || om > 59) {
            return -EINVAL;
        }
        offset_s = sign * (oh * 3600 + om * 60);
    } else {
        return -EINVAL;
    }
    if (*p != '\0') {
        return -EINVAL;
    }
    int64_t days = days_from_civil(y, (unsigned)mo, (unsigned)d);
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - offset_s;
    *out = secs * 1000000000 + frac;
    return 0;
}

int cli_parse_time_ns(const char *s, int64_t now_ns, int64_t *out)
{
    if (!s || !*s) {
        return -EINVAL;
    }
    if (strchr(s, '-') && strchr(s, ':')) {
        return parse_rfc3339(s, out);
    }
    /* Unix seconds: digits with an optional fraction and nothing else. */
    const char *p = s;
    uint64_t ip, fr;
    int rc = parse_decimal(&p, &ip, &fr);
    if (rc < 0) {
        return rc;
    }
    if (*p == '\0') {
        if (ip > (uint64_t)INT64_MAX / 1000000000u - 1) {
            return -ERANGE;
        }
        *out = (int64_t)(ip * 1000000000u + fr);
        return 0;
    }
    /* Otherwise a duration before now. */
    uint64_t ago;
    rc = cli_parse_duration_ns(s, &ago);
    if (rc < 0) {
        return rc;
    }
    if (ago > (uint64_t)now_ns) {
        return -ERANGE;
    }
    *out = now_ns - (int64_t)ago;
    return 0;
}

int64_t cli_now_realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

uint64_t cli_now_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- buffers ------------------------------------------------------------ */

void cli_buf_reserve(struct cli_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra + 1) { /* keep room for a NUL */
        return;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra + 1) {
        cap *= 2;
    }
    char *d = realloc(b->data, cap);
    if (!d) {
        cli_err("out of memory");
        exit(CLI_EXIT_ERROR);
    }
    b->data = d;
    b->cap = cap;
}

void cli_buf_add(struct cli_buf *b, const void *p, size_t n)
{
    cli_buf_reserve(b, n);
    if (n) {
        memcpy(b->data + b->len, p, n);
    }
    b->len += n;
    b->data[b->len] = '\0';
}

void cli_buf_adds(struct cli_buf *b, const char *s)
{
    cli_buf_add(b, s, strlen(s));
}

void cli_buf_addf(struct cli_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    cli_buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void cli_buf_free(struct cli_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static size_t utf8_seq_len(const unsigned char *s, size_t n);

void cli_buf_json_str(struct cli_buf *b, const void *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = p;
    cli_buf_reserve(b, n + 2);
    b->data[b->len++] = '"';
    size_t run = 0; /* start of the pending unescaped run */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c >= 0x80) {
            size_t len = utf8_seq_len(s + i, n - i);
            if (len > 0) {
                i += len - 1; /* copied with the run */
                continue;
            }
            /* Not UTF-8: the replacement character keeps the JSON valid. */
            cli_buf_add(b, s + run, i - run);
            run = i + 1;
            cli_buf_add(b, "\\ufffd", 6);
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f) {
            continue;
        }
        cli_buf_add(b, s + run, i - run);
        run = i + 1;
        char esc[7];
        switch (c) {
        case '"':
            cli_buf_add(b, "\\\"", 2);
            break;
        case '\\':
            cli_buf_add(b, "\\\\", 2);
            break;
        case '\n':
            cli_buf_add(b, "\\n", 2);
            break;
        case '\r':
            cli_buf_add(b, "\\r", 2);
            break;
        case '\t':
            cli_buf_add(b, "\\t", 2);
            break;
        case '\b':
            cli_buf_add(b, "\\b", 2);
            break;
        case '\f':
            cli_buf_add(b, "\\f", 2);
            break;
        default:
            esc[0] = '\\';
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            cli_buf_add(b, esc, 6);
            break;
        }
    }
    cli_buf_add(b, s + run, n - run);
    cli_buf_add(b, "\"", 1);
}

void cli_buf_json_bytes(struct cli_buf *b, const char *name, const char *enc_name, const void *p,
                        size_t n)
{
    cli_buf_addf(b, ",\"%s\":", name);
    if (cli_utf8_valid(p, n)) {
        cli_buf_json_str(b, p, n);
    } else {
        cli_buf_add(b, "\"", 1);
        cli_buf_base64(b, p, n);
        cli_buf_addf(b, "\",\"%s\":\"base64\"", enc_name);
    }
}

void cli_buf_quoted(struct cli_buf *b, const void *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = p;
    cli_buf_reserve(b, n + 2);
    b->data[b->len++] = '"';
    size_t run = 0; /* start of the pending unescaped run */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        size_t len = c >= 0x80 ? utf8_seq_len(s + i, n - i) : 1;
        /* U+0080..U+009F are controls too (C1): escaped like C0 */
        if (c >= 0x80 && len > 0 && !(c == 0xc2 && s[i + 1] < 0xa0)) {
            i += len - 1; /* copied with the run */
            continue;
        }
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            continue;
        }
        cli_buf_add(b, s + run, i - run);
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            cli_buf_add(b, esc, 2);
        } else if (c == '\n' || c == '\r' || c == '\t') {
            cli_buf_add(b, c == '\n' ? "\\n" : c == '\r' ? "\\r" : "\\t", 2);
        } else {
            for (size_t k = 0; k < (len > 0 ? len : 1); k++) {
                char esc[4] = {'\\', 'x', hex[s[i + k] >> 4], hex[s[i + k] & 15]};
                cli_buf_add(b, esc, 4);
            }
            i += (len > 0 ? len : 1) - 1;
        }
        run = i + 1;
    }
    cli_buf_add(b, s + run, n - run);
    cli_buf_add(b, "\"", 1);
}

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void cli_buf_base64(struct cli_buf *b, const void *p, size_t n)
{
    const unsigned char *s = p;
    size_t out_len = (n + 2) / 3 * 4;
    cli_buf_reserve(b, out_len);
    char *o = b->data + b->len;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *o++ = b64_alphabet[v >> 18];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = b64_alphabet[(v >> 6) & 63];
        *o++ = b64_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        *o++ = b64_alphabet[v >> 18];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = '=';
        *o++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
        *o++ = b64_alphabet[v >> 18];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = b64_alphabet[(v >> 6) & 63];
        *o++ = '=';
    }
    b->len += out_len;
    b->data[b->len] = '\0';
}

static int b64_value(char c)
{
    const char *p = c ? strchr(b64_alphabet, c) : NULL;
    return p ? (int)(p - b64_alphabet) : -1;
}

long cli_base64_decode(const char *s, size_t n, void *out)
{
    unsigned char *o = out;
    if (n % 4 != 0) {
        return -1;
    }
    long len = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            if (s[i + k] == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
            } else {
                if (pad) {
                    return -1; /* data after padding */
                }
                v[k] = b64_value(s[i + k]);
                if (v[k] < 0) {
                    return -1;
                }
            }
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        o[len++] = (unsigned char)(w >> 16);
        if (pad < 2) {
            o[len++] = (unsigned char)(w >> 8);
        }
        if (pad < 1) {
            o[len++] = (unsigned char)w;
        }
    }
    return len;
}

void cli_buf_time_rfc3339(struct cli_buf *b, int64_t t_ns)
{
    int64_t secs = t_ns / 1000000000;
    int64_t frac = t_ns % 1000000000;
    if (frac < 0) {
        frac += 1000000000;
        secs--;
    }
    time_t tt = (time_t)secs;
    struct tm tm;
    if (!gmtime_r(&tt, &tm)) {
        cli_buf_addf(b, "%lld", (long long)t_ns);
        return;
    }
    cli_buf_addf(b, "%04d-%02d-%02dT%02d:%02d:%02d.%09lldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long long)frac);
}

/* Length of the well-formed UTF-8 sequence at s[0..n) (1 for any ASCII
 * byte, NUL included), or 0 when it is not well-formed: overlong forms,
 * surrogates and code points above U+10FFFF are refused. n > 0. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        return 1;
    }
    size_t need;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        need = 1;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 2;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 3;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n - 1 < need) {
        return 0;
    }
    for (size_t k = 1; k <= need; k++) {
        unsigned char cc = s[k];
        if ((cc & 0xc0) != 0x80) {
            return 0;
        }
        cp = cp << 6 | (cc & 0x3f);
    }
    if ((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    return need + 1;
}

bool cli_utf8_valid(const void *p, size_t n)
{
    const unsigned char *s = p;
    size_t i = 0;
    while (i < n) {
        size_t len = s[i] ? utf8_seq_len(s + i, n - i) : 0;
        if (len == 0) {
            return false;
        }
        i += len;
    }
    return true;
}

int cli_split_hostport(const char *s, char *host_out, size_t host_cap, uint16_t default_port,
                       uint16_t *port_out)
{
    if (!s || !*s) {
        return -EINVAL;
    }
    const char *host = s, *host_end, *port = NULL;
    if (*s == '[') {
        host = s + 1;
        host_end = strchr(host, ']');
        if (!host_end) {
            return -EINVAL;
        }
        if (host_end[1] == ':') {
            port = host_end + 2;
        } else if (host_end[1] != '\0') {
            return -EINVAL;
        }
    } else {
        const char *colon = strrchr(s, ':');
        if (colon && strchr(s, ':') != colon) {
            return -EINVAL; /* bare IPv6 needs brackets */
        }
        host_end = colon ? colon : s + strlen(s);
        port = colon ? colon + 1 : NULL;
    }
    size_t hlen = (size_t)(host_end - host);
    if (hlen == 0 || hlen >= host_cap) {
        return -EINVAL;
    }
    uint16_t p = default_port;
    if (port) {
        uint64_t v;
        if (cli_parse_u64(port, &v) < 0 || v == 0 || v > 65535) {
            return -EINVAL;
        }
        p = (uint16_t)v;
    }
    memcpy(host_out, host, hlen);
    host_out[hlen] = '\0';
    *port_out = p;
    return 0;
}

void cli_fmt_count(char *out, size_t cap, double v)
{
    if (v >= 1e9) {
        snprintf(out, cap, "%.2fG", v / 1e9);
    } else if (v >= 1e6) {
        snprintf(out, cap, "%.2fM", v / 1e6);
    } else if (v >= 1e4) {
        snprintf(out, cap, "%.1fk", v / 1e3);
    } else {
        snprintf(out, cap, "%.0f", v);
    }
}

void cli_fmt_duration_ns(char *out, size_t cap, uint64_t ns)
{
    if (ns < 1000) {
        snprintf(out, cap, "%lluns", (unsigned long long)ns);
    } else if (ns < 1000000) {
        snprintf(out, cap, "%.1fus", (double)ns / 1e3);
    } else if (ns < 1000000000) {
        snprintf(out, cap, "%.2fms", (double)ns / 1e6);
    } else {
        snprintf(out, cap, "%.2fs", (double)ns / 1e9);
    }
}

/* "1d 2h 3m 4s" from milliseconds. */
void cli_fmt_uptime(char *out, size_t cap, uint64_t ms)
{
    uint64_t s = ms / 1000;
    uint64_t d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60;
    s %= 60;
    if (d) {
        snprintf(out, cap, "%" PRIu64 "d %" PRIu64 "h %" PRIu64 "m %" PRIu64 "s", d, h, m, s);
    } else if (h) {
        snprintf(out, cap, "%" PRIu64 "h %" PRIu64 "m %" PRIu64 "s", h, m, s);
    } else if (m) {
        snprintf(out, cap, "%" PRIu64 "m %" PRIu64 "s", m, s);
    } else {
        snprintf(out, cap, "%" PRIu64 ".%03" PRIu64 "s", s, ms % 1000);
    }
}

/* "12.3 MiB" */
void cli_fmt_bytes(char *out, size_t cap, uint64_t n)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)n;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024;
        u++;
    }
    if (u == 0) {
        snprintf(out, cap, "%" PRIu64 " B", n);
    } else {
        snprintf(out, cap, "%.1f %s", v, units[u]);
    }
}

/*
 * log_line.c - one log event as a line of text or of JSON (pure).
 */
#include "log_line.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

static const char *const level_names[] = {"error", "warn", "info", "debug"};

const char *log_level_name(enum log_level lv)
{
    return (unsigned)lv <= LOG_DEBUG ? level_names[lv] : "?";
}

/* RFC 3339 in UTC with milliseconds: "2026-11-29T20:40:01.123Z". */
static void time_format(char *buf, size_t cap, const struct timespec *ts)
{
    struct tm tm;
    gmtime_r(&ts->tv_sec, &tm);
    snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts->tv_nsec / 1000000);
}

size_t log_line_text(char *buf, size_t cap, const struct log_event *e)
{
    assert(cap >= 64);
    char t[64];
    time_format(t, sizeof(t), &e->time);
    int n;
    if (e->peer != NULL) {
        n = snprintf(buf, cap, "%s ferryd[%d] %-5s client %llu %s: %s", t, e->pid,
                     log_level_name(e->level), (unsigned long long)e->client, e->peer, e->msg);
    } else {
        n = snprintf(buf, cap, "%s ferryd[%d] %-5s %s", t, e->pid, log_level_name(e->level),
                     e->msg);
    }
    size_t len = n < 0 ? 0 : (size_t)n;
    if (len > cap - 2) {
        len = cap - 2;
    }
    buf[len++] = '\n';
    buf[len] = '\0';
    return len;
}

/* The length of the valid UTF-8 sequence that starts s[0..n) (s[0] >=
 * 0x80), or 0 if none does. The second byte's range rules out overlong
 * forms (E0, F0), surrogates (ED) and code points past U+10FFFF (F4). */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char lo = 0x80, hi = 0xBF;
    size_t len;
    if (s[0] >= 0xC2 && s[0] <= 0xDF) {
        len = 2;
    } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        len = 3;
        lo = s[0] == 0xE0 ? 0xA0 : lo;
        hi = s[0] == 0xED ? 0x9F : hi;
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        len = 4;
        lo = s[0] == 0xF0 ? 0x90 : lo;
        hi = s[0] == 0xF4 ? 0x8F : hi;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
    }
    return len;
}

size_t log_json_escape(char *out, size_t cap, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    size_t i = 0;
    while (i < len) {
        char esc[8];
        const char *piece = esc;
        size_t n = 2;    /* bytes of piece */
        size_t used = 1; /* bytes of s it stands for */
        unsigned char c = p[i];
        esc[0] = '\\';
        if (c >= 0x80) {
            used = utf8_seq_len(p + i, len - i);
            piece = used ? s + i : "\\ufffd";
            n = used ? used : 6;
            used = used ? used : 1;
        } else if (c == '"' || c == '\\') {
            esc[1] = (char)c;
        } else if (c == '\n' || c == '\t' || c == '\r' || c == '\b' || c == '\f') {
            esc[1] = c == '\n' ? 'n' : c == '\t' ? 't' : c == '\r' ? 'r' : c == '\b' ? 'b' : 'f';
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        } else {
            piece = s + i;
            n = 1;
        }
        if (n > cap - o) {
            break;
        }
        memcpy(out + o, piece, n);
        o += n;
        i += used;
    }
    return o;
}

size_t log_line_json(char *buf, size_t cap, const struct log_event *e)
{
    /* The fields before "msg" take at most about 300 bytes: the thread
     * and peer are escaped into bounded room. */
    assert(cap >= 512);
    char t[64];
    time_format(t, sizeof(t), &e->time);
    int n = snprintf(buf, cap, "{\"time\":\"%s\",\"level\":\"%s\",\"pid\":%d,\"thread\":\"", t,
                     log_level_name(e->level), e->pid);
    size_t len = (size_t)n;
    len += log_json_escape(buf + len, 64, e->thread, strlen(e->thread));
    if (e->peer != NULL) {
        len += (size_t)snprintf(buf + len, cap - len, "\",\"client\":%llu,\"peer\":\"",
                                (unsigned long long)e->client);
        len += log_json_escape(buf + len, 128, e->peer, strlen(e->peer));
    }
    memcpy(buf + len, "\",\"msg\":\"", 9);
    len += 9;
    /* Room for the message, then "}, the newline and the NUL. */
    len += log_json_escape(buf + len, cap - len - 4, e->msg, strlen(e->msg));
    memcpy(buf + len, "\"}\n", 4);
    return len + 3;
}

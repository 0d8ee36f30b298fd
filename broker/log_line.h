/*
 * log_line.h - how one log event becomes one line of text or of JSON.
 *
 * Pure: no IO, no clock, no global state; log.c gathers the event (time,
 * pid, thread name) and writes what these functions return. Kept apart so
 * that the unit tests can check the exact bytes of both formats.
 *
 * text: "2026-11-29T20:40:01.123Z ferryd[PID] LEVEL client ID PEER: MSG\n"
 *       ("client ID PEER: " only for a connection's event)
 * json: {"time":"2026-11-29T20:40:01.123Z","level":"info","pid":PID,
 *        "thread":"io0","client":ID,"peer":"PEER","msg":"MSG"}\n
 *       on one line ("client" and "peer" only for a connection's event);
 *       "msg" comes last, so a line cut at its maximum length loses only the
 *       end of the message and is still a JSON object.
 */
#ifndef FERRY_LOG_LINE_H
#define FERRY_LOG_LINE_H

#include "log.h"

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* The longest line either function writes, newline included. */
#define LOG_LINE_MAX 8192

struct log_event {
    struct timespec time; /* CLOCK_REALTIME; printed in UTC with milliseconds */
    enum log_level level;
    int pid;
    const char *thread; /* short thread name ("main", "io0"); not NULL */
    uint64_t client;    /* the connection's client id, with peer */
    const char *peer;   /* "HOST:PORT" of a connection's event; NULL: none */
    const char *msg;    /* NUL-terminated, any bytes (JSON escapes them) */
};

/* "error", "warn", "info", "debug". */
const char *log_level_name(enum log_level lv);

/* Write e as one line ending in '\n' into buf (cap >= 64), cut to fit.
 * Returns the line's length (at most cap - 1; buf is NUL-terminated). */
size_t log_line_text(char *buf, size_t cap, const struct log_event *e);
size_t log_line_json(char *buf, size_t cap, const struct log_event *e);

/* Write s[0..len) as the inside of a JSON string (RFC 8259) into out:
 * '"' and '\\' escaped, control characters as \n, \t, \r, \b, \f or
 * \u00XX (DEL too), valid UTF-8 as it is, and each byte that does not
 * belong to a valid UTF-8 sequence (stray continuation bytes, overlong
 * forms, surrogates, beyond U+10FFFF, a sequence cut short) as \ufffd.
 * Stops before an escape or character that would not fit in cap bytes
 * (never half of one). Returns the bytes written (no NUL is added). */
size_t log_json_escape(char *out, size_t cap, const char *s, size_t len);

#endif

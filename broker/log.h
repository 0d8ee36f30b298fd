/*
 * log.h - ferryd's log: one line per event on stderr, as text (default) or
 * as JSON for log shippers (--log-format; log_line.h shows both formats).
 *
 *   text: "2026-11-29T20:40:01.123Z ferryd[pid] LEVEL text"
 *   json: {"time":"...","level":"info","pid":N,"thread":"io0","msg":"text"}
 *
 * Any thread may log. The level is one atomic, changed by log_level_set()
 * (start-up, SIGHUP reload); the format is set once at start-up, before
 * other threads start. Each line is written with one write(2), so lines of
 * different threads never interleave.
 *
 * A connection's events go through log_client_*(), which take its client
 * id and peer address apart from the text: the text format prints them as
 * before ("client 12 127.0.0.1:5555: closing: ..."), the JSON format as the
 * fields "client" and "peer".
 */
#ifndef FERRY_LOG_H
#define FERRY_LOG_H

#include <stdint.h>

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };
enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON };

/* Parse "error", "warn", "info", "debug". Returns the level or -EINVAL. */
int log_level_parse(const char *s);
void log_level_set(enum log_level lv);
int log_enabled(enum log_level lv);

/* Parse "text", "json". Returns the format or -EINVAL. */
int log_format_parse(const char *s);
/* Start-up only: before any other thread logs. */
void log_format_set(enum log_format f);

/* Name the calling thread ("io0", "writer"; at most 15 bytes are kept): its
 * "thread" in JSON lines, and its name in ps -L and top -H
 * (pthread_setname_np). Called where each thread starts. The main thread
 * is "main" without calling it (and keeps the process name for ps); a
 * thread never named shows its kernel name (a library's thread). */
void log_thread_name_set(const char *name);

void log_write(enum log_level lv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A connection's event: client id and "HOST:PORT". */
void log_client_write(enum log_level lv, uint64_t client, const char *peer, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_write(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_write(LOG_INFO, __VA_ARGS__)
#define log_debug(...) (log_enabled(LOG_DEBUG) ? log_write(LOG_DEBUG, __VA_ARGS__) : (void)0)

#define log_client_error(id, peer, ...) log_client_write(LOG_ERROR, (id), (peer), __VA_ARGS__)
#define log_client_warn(id, peer, ...) log_client_write(LOG_WARN, (id), (peer), __VA_ARGS__)
#define log_client_info(id, peer, ...) log_client_write(LOG_INFO, (id), (peer), __VA_ARGS__)
#define log_client_debug(id, peer, ...)                                                            \
    (log_enabled(LOG_DEBUG) ? log_client_write(LOG_DEBUG, (id), (peer), __VA_ARGS__) : (void)0)

#endif

/*
 * log.h - log lines to stderr: "2026-11-29T20:40:01.123Z ferryd[pid] LEVEL text".
 *
 * Any thread may log. The level is one atomic, changed by log_level_set()
 * (start-up, SIGHUP reload). Each line is written with one write(2), so lines
 * of different threads never interleave.
 */
#ifndef FERRY_LOG_H
#define FERRY_LOG_H

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Parse "error", "warn", "info", "debug". Returns the level or -EINVAL. */
int log_level_parse(const char *s);
void log_level_set(enum log_level lv);
int log_enabled(enum log_level lv);

void log_write(enum log_level lv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_write(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_write(LOG_INFO, __VA_ARGS__)
#define log_debug(...) (log_enabled(LOG_DEBUG) ? log_write(LOG_DEBUG, __VA_ARGS__) : (void)0)

#endif

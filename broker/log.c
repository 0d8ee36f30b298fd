/*
 * log.c - levelled lines on stderr, as text or JSON (log_line.c formats).
 */
#include "log.h"

#include "log_line.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = LOG_INFO; /* atomic: any thread reads, main writes */
/* Written once by main before the other threads start (pthread_create
 * orders it before their reads); relaxed atomic all the same. */
static atomic_int log_format = LOG_FORMAT_TEXT;
static _Thread_local char thread_name[16]; /* this thread only; "" until named */

int log_level_parse(const char *s)
{
    for (int i = 0; i <= LOG_DEBUG; i++) {
        if (strcasecmp(s, log_level_name((enum log_level)i)) == 0) {
            return i;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        return LOG_WARN;
    }
    return -EINVAL;
}

void log_level_set(enum log_level lv)
{
    atomic_store_explicit(&log_level, (int)lv, memory_order_relaxed);
}

int log_enabled(enum log_level lv)
{
    return (int)lv <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

int log_format_parse(const char *s)
{
    if (strcmp(s, "text") == 0) {
        return LOG_FORMAT_TEXT;
    }
    if (strcmp(s, "json") == 0) {
        return LOG_FORMAT_JSON;
    }
    return -EINVAL;
}

void log_format_set(enum log_format f)
{
    atomic_store_explicit(&log_format, (int)f, memory_order_relaxed);
}

void log_thread_name_set(const char *name)
{
    snprintf(thread_name, sizeof(thread_name), "%s", name);
    pthread_setname_np(pthread_self(), thread_name); /* ps and top only: failure is harmless */
}

/* The calling thread's name for a log line, in buf (16 bytes). */
static const char *thread_name_get(char *buf)
{
    if (thread_name[0] != '\0') {
        return thread_name;
    }
    if (gettid() == getpid()) {
        return "main";
    }
    if (prctl(PR_GET_NAME, buf) < 0) {
        return "?";
    }
    buf[15] = '\0';
    return buf;
}

__attribute__((format(printf, 4, 0))) static void
log_vwrite(enum log_level lv, uint64_t client, const char *peer, const char *fmt, va_list ap)
{
    int saved = errno;
    char msg[1024];
    char name[16];
    char line[LOG_LINE_MAX];
    struct log_event e = {.level = lv, .pid = (int)getpid(), .client = client, .peer = peer};
    clock_gettime(CLOCK_REALTIME, &e.time);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    e.msg = msg;
    e.thread = thread_name_get(name);
    size_t len = atomic_load_explicit(&log_format, memory_order_relaxed) == LOG_FORMAT_JSON
                     ? log_line_json(line, sizeof(line), &e)
                     : log_line_text(line, 1024, &e); /* text lines as they always were */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
    errno = saved;
}

void log_write(enum log_level lv, const char *fmt, ...)
{
    if (!log_enabled(lv)) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(lv, 0, NULL, fmt, ap);
    va_end(ap);
}

void log_client_write(enum log_level lv, uint64_t client, const char *peer, const char *fmt, ...)
{
    if (!log_enabled(lv)) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(lv, client, peer, fmt, ap);
    va_end(ap);
}

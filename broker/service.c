/*
 * service.c - systemd's notification protocol for ferryd (service.h).
 *
 * The only file that includes sd-daemon.h. Without libsystemd (no
 * FERRY_HAVE_SYSTEMD) notify() sends nothing and there is no watchdog.
 */
#include "service.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#ifdef FERRY_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "log.h"

/* Main thread only (service.h). */
static int wd_is_known;       /* wd_half_usec has been read from the environment */
static uint64_t wd_half_usec; /* half of WatchdogSec, in µs; 0: no watchdog */
static uint64_t wd_next_usec; /* CLOCK_MONOTONIC µs at which WATCHDOG=1 is due */

static uint64_t mono_usec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* sd_notify(3): > 0 sent, 0 not under systemd, -errno. */
static int notify(const char *msg)
{
#ifdef FERRY_HAVE_SYSTEMD
    return sd_notify(0, msg);
#else
    (void)msg;
    return 0;
#endif
}

/* Half the watchdog interval systemd set (WATCHDOG_USEC, for this pid when
 * WATCHDOG_PID is given), or 0. */
static uint64_t watchdog_half_usec(void)
{
#ifdef FERRY_HAVE_SYSTEMD
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        return usec >= 2 ? usec / 2 : 1;
    }
#endif
    return 0;
}

void svc_ready(const char *status)
{
    char msg[320];
    snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", status);
    int rc = notify(msg);
    if (rc < 0) {
        log_warn("cannot tell systemd that ferryd is ready (NOTIFY_SOCKET): %s", strerror(-rc));
    }
}

void svc_reloading(void)
{
    char msg[64];
    snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)mono_usec());
    notify(msg);
}

void svc_stopping(void)
{
    notify("STOPPING=1\nSTATUS=stopping");
}

int svc_sigwait(const sigset_t *sigs)
{
    if (!wd_is_known) {
        wd_half_usec = watchdog_half_usec();
        wd_next_usec = mono_usec() + wd_half_usec;
        wd_is_known = 1;
    }
    for (;;) {
        siginfo_t si;
        int sig;
        if (wd_half_usec == 0) {
            sig = sigwaitinfo(sigs, &si);
        } else {
            /* A deadline rather than a fixed timeout: signals arriving
             * faster than the interval must not starve the watchdog. */
            uint64_t now = mono_usec();
            if (now >= wd_next_usec) {
                notify("WATCHDOG=1");
                wd_next_usec = now + wd_half_usec;
            }
            uint64_t left = wd_next_usec - now;
            struct timespec ts = {(time_t)(left / 1000000u), (long)(left % 1000000u) * 1000};
            sig = sigtimedwait(sigs, &si, &ts);
        }
        if (sig > 0) {
            return sig;
        }
        if (errno != EAGAIN && errno != EINTR) {
            return -errno;
        }
    }
}

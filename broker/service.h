/*
 * service.h - ferryd under a service manager (prefix svc_): systemd's
 * notification protocol (sd_notify(3)), through libsystemd.
 *
 * With `Type=notify` (packaging/ferryd.service) systemd waits for READY=1
 * before it counts ferryd as started, so units ordered after ferryd.service
 * find it listening. STOPPING=1 says the graceful stop has begun; with
 * `WatchdogSec=` set, ferryd's main thread sends WATCHDOG=1 at least every
 * half of that interval while it waits for signals, and systemd restarts a
 * ferryd whose main thread stopped doing so.
 *
 * Outside systemd (NOTIFY_SOCKET and WATCHDOG_USEC unset) every call is a
 * no-op besides waiting for signals; so is a build without libsystemd (CMake
 * says so at configure time). The environment is kept: later notifications
 * need NOTIFY_SOCKET, and ferryd starts no programs that could inherit it.
 *
 * Main thread only: the watchdog's deadline is the main thread's.
 */
#ifndef FERRY_SERVICE_H
#define FERRY_SERVICE_H

#include <signal.h>

/* READY=1 with STATUS=status (one line, e.g. "listening on 0.0.0.0:7373").
 * Once the listeners are up and their lines printed; again after a reload.
 * A failure to notify is logged (systemd would then time the start out). */
void svc_ready(const char *status);

/* RELOADING=1 (with MONOTONIC_USEC): SIGHUP was taken; svc_ready() follows
 * once the reload is done. */
void svc_reloading(void);

/* STOPPING=1: the graceful stop (SIGTERM/SIGINT) has begun. */
void svc_stopping(void);

/* Wait for one of sigs (blocked in every thread) and return its number;
 * when systemd asked for a watchdog, send WATCHDOG=1 meanwhile, at least
 * every half of its interval. -errno if the wait itself fails. */
int svc_sigwait(const sigset_t *sigs);

#endif

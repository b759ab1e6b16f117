/* SPDX-License-Identifier: MIT */
/*
 * fusefs/log.h -- where the daemon's messages go.
 *
 * Every message of pmem/, lease/ and fusefs/ is a line written to stderr;
 * libfuse's own go through its log function. Until the daemon forks they
 * reach the caller's terminal. After fuse_daemonize() (which points the
 * standard streams at /dev/null) they go, one record per line, to:
 *
 *  1. the file -o logfile names, if any (also the daemon's fd 2);
 *  2. else syslog, over /dev/log, as libfuse file systems log; if syslog
 *     stops answering later, the lines go to the fallback file (3.) until
 *     it answers again, so that they are not silently dropped as glibc's
 *     syslog(3) drops them;
 *  3. else, when no syslog daemon listens at mount (a container, a rescue
 *     system), the fallback file: /var/log/pinfs.log for root, else
 *     $XDG_STATE_HOME/pinfs.log (default ~/.local/state/pinfs.log). The
 *     mount says so in one line on stderr: the one case where a user must
 *     be told where the log is. If that file cannot be opened either, that
 *     line says nothing will be logged.
 *
 * With -f (and no -o logfile) stderr stays the terminal.
 *
 * A fatal signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT) is logged, with
 * async-signal-safe calls only, before the daemon dies of it; handlers
 * someone else installed first (a sanitizer's) are left alone.
 */
#ifndef PINFS_FUSEFS_LOG_H
#define PINFS_FUSEFS_LOG_H

#include <stdbool.h>
#include <stdint.h>

/* With the options, while stderr is the caller's: decides where the log of
 * the daemon serving @pool goes, opens -o @logfile or connects to syslog.
 * Returns 0, or -errno when -o logfile cannot be opened (said on stderr):
 * a start failure. Creates nothing else: a start refused later leaves no
 * trace. */
int ffs_log_prepare(const char *logfile, bool foreground, const char *pool);

/* Once the mount is up, right before fuse_daemonize(): with no syslog,
 * opens the fallback file and says on stderr, in the one line a successful
 * background mount prints, where the log goes (or that it goes nowhere). */
void ffs_log_fallback(void);

/* After fuse_daemonize(): stderr (and libfuse's log) become the log, and
 * fatal signals are logged. Before any thread starts. */
void ffs_log_start(void);

/* After ffs_log_start(), once the pool is mapped: a SIGBUS (from a
 * hardware fault, si_code > 0) is first offered to @catch, which is
 * async-signal-safe: true, it recovered the fault at pool offset *off
 * (pm_fault_catch); one line is logged and the daemon lives on. Else the
 * handler found in place (a sanitizer's), if any, is called; else the
 * daemon dies as before, logged. */
void ffs_log_sigbus(bool (*catch)(void *addr, uint64_t *off));

/* At exit: closes what ffs_log_prepare() opened and ffs_log_start() did
 * not take over. */
void ffs_log_close(void);

#endif

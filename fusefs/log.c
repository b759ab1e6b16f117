/* SPDX-License-Identifier: MIT */
/*
 * fusefs/log.c -- the daemon's log: -o logfile, syslog over /dev/log, or the
 * fallback file when no syslog daemon listens (the rules are in log.h).
 *
 * syslog is spoken here rather than through syslog(3), for two reasons:
 * glibc drops a message it cannot send and tells nobody, so a daemon whose
 * syslog went away would lose every line, the reason it died included; and
 * that reason is written from a signal handler, where syslog(3) (locks,
 * localtime, malloc) must not be called. The protocol is what glibc sends
 * with openlog("pinfs", LOG_PID, LOG_DAEMON): "<PRI>Mmm dd hh:mm:ss
 * pinfs[PID]: MESSAGE", one datagram per message, or NUL-terminated on a
 * stream socket. Everything on the way from a message to a write() or
 * send() is async-signal-safe (no stdio, no locale, no malloc), so the
 * fatal-signal handler uses the same code as everyone else.
 */
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "fusefs/log.h"

#define LINE_MAX_LEN 1024 /* a longer message is cut */

enum log_to {
	LOG_TO_TERMINAL, /* -f: stderr as it is */
	LOG_TO_FILE,	 /* -o logfile, or the fallback file when there was no syslog at mount */
	LOG_TO_SYSLOG,	 /* /dev/log; the fallback file while it does not answer */
};

/*
 * Locking:
 *  1. Everything below is set before the daemon's threads start
 *     (ffs_log_prepare, ffs_log_fallback, ffs_log_start) and only read
 *     afterwards, except
 *     what is marked "protected by L.lock".
 *  2. L.lock is held across one whole message, so that records do not
 *     interleave and a reconnect happens once. Lock order: the stderr
 *     stream's own lock (log_write runs under it), then L.lock.
 *  3. The fatal-signal handler takes no lock: the thread that crashed may
 *     hold it. It may race a message of another thread; the daemon is
 *     dying, and a torn record is better than a hang.
 */
static struct {
	pthread_mutex_t lock;
	enum log_to to;
	int fd;		     /* FILE: fd 2, the file. SYSLOG: the fallback file once
				opened, else -1 (protected by L.lock) */
	int sock;	     /* SYSLOG: connected to /dev/log, -1 while it does not
				answer (protected by L.lock) */
	int sock_type;	     /* SOCK_DGRAM or SOCK_STREAM (protected by L.lock) */
	bool outage;	     /* SYSLOG: lines go to the fallback file (protected by L.lock) */
	bool started;	     /* ffs_log_start() ran */
	int no_syslog;	     /* errno of /dev/log at mount: no syslog daemon */
	bool say_fallback;   /* the fallback file's first line says why */
	int no_fallback;     /* errno of the fallback file, when it could not be had */
	char fallback[PATH_MAX]; /* "" when there is no place for one */
	char pool[PATH_MAX];
	long gmtoff;	     /* of local time, refreshed outside signal handlers */
	char line[LINE_MAX_LEN]; /* stderr's partial line: protected by the stream's lock */
	size_t len;
} L = { .lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1, .sock = -1 };

/* ---- async-signal-safe formatting --------------------------------------- */

struct out {
	char *p;
	size_t n, cap;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (n > o->cap - o->n)
		n = o->cap - o->n;
	memcpy(o->p + o->n, s, n);
	o->n += n;
}

static void puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

/* @v in decimal, at least @width digits (zero-padded), or space-padded to
 * @width with @space */
static void put_uint(struct out *o, unsigned long long v, int width, bool space)
{
	char d[24];
	int i = sizeof(d);

	do {
		d[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (i > (int)sizeof(d) - width)
		d[--i] = space ? ' ' : '0';
	put(o, d + i, sizeof(d) - (size_t)i);
}

static void put_hex(struct out *o, unsigned long long v)
{
	char d[20];
	int i = sizeof(d);

	do {
		d[--i] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	puts_(o, "0x");
	put(o, d + i, sizeof(d) - (size_t)i);
}

/* The local time of @t, from the UTC offset last seen by localtime_r (which
 * takes locks: not in a signal handler). Days to civil date: H. Hinnant's
 * algorithm. */
struct civil {
	unsigned year, mon, mday, hour, min, sec;
};

static void local_civil(time_t t, bool in_handler, struct civil *c)
{
	long long s, z, era;
	unsigned doe, yoe, doy, mp;

	if (!in_handler) {
		struct tm tm;
		if (localtime_r(&t, &tm))
			L.gmtoff = tm.tm_gmtoff;
	}
	s = (long long)t + L.gmtoff;
	z = s / 86400;
	s %= 86400;
	if (s < 0) {
		s += 86400;
		z--;
	}
	c->hour = (unsigned)(s / 3600);
	c->min = (unsigned)(s / 60 % 60);
	c->sec = (unsigned)(s % 60);
	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = (unsigned)(z - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	c->mday = doy - (153 * mp + 2) / 5 + 1;
	c->mon = mp < 10 ? mp + 3 : mp - 9;
	c->year = (unsigned)(yoe + era * 400 + (c->mon <= 2));
}

/* One record of @msg (@n bytes, no newline) as @to wants it, in @o. */
static void format(struct out *o, enum log_to to, int level, const char *msg, size_t n,
		   bool in_handler)
{
	static const char mon[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct timespec ts;
	struct civil c;

	if (to != LOG_TO_TERMINAL) {
		clock_gettime(CLOCK_REALTIME, &ts);
		local_civil(ts.tv_sec, in_handler, &c);
	}
	if (to == LOG_TO_SYSLOG) {
		/* RFC 3164, as glibc's syslog(3) writes it */
		puts_(o, "<");
		put_uint(o, (unsigned)(LOG_DAEMON | level), 1, false);
		puts_(o, ">");
		puts_(o, mon[c.mon - 1]);
		puts_(o, " ");
		put_uint(o, c.mday, 2, true);
	} else if (to == LOG_TO_FILE) {
		put_uint(o, c.year, 4, false);
		puts_(o, "-");
		put_uint(o, c.mon, 2, false);
		puts_(o, "-");
		put_uint(o, c.mday, 2, false);
	}
	if (to != LOG_TO_TERMINAL) {
		puts_(o, " ");
		put_uint(o, c.hour, 2, false);
		puts_(o, ":");
		put_uint(o, c.min, 2, false);
		puts_(o, ":");
		put_uint(o, c.sec, 2, false);
	}
	if (to == LOG_TO_SYSLOG) {
		puts_(o, " pinfs[");
		put_uint(o, (unsigned)getpid(), 1, false);
		puts_(o, "]: ");
	} else if (to == LOG_TO_FILE) {
		/* the line itself says "pinfs: " */
		puts_(o, ".");
		put_uint(o, (unsigned long long)ts.tv_nsec / 1000000, 3, false);
		puts_(o, " [");
		put_uint(o, (unsigned)getpid(), 1, false);
		puts_(o, "] ");
	}
	put(o, msg, n);
	if (o->n == o->cap) /* room for the terminator */
		o->n--;
	if (to == LOG_TO_SYSLOG)
		o->p[o->n++] = '\0'; /* sent only on a stream socket */
	else
		o->p[o->n++] = '\n';
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t k = write(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return; /* nowhere left to say it */
		p += k;
		n -= (size_t)k;
	}
}

/* ---- the sinks ------------------------------------------------------------ */

/* A socket connected to /dev/log, as glibc's openlog connects it: a
 * datagram socket, or a stream one if that is what listens. Returns the fd
 * or -errno (ENOENT: no /dev/log; ECONNREFUSED: nobody listening). */
static int syslog_connect(int *type)
{
	static const int types[] = { SOCK_DGRAM, SOCK_STREAM };
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int err = EPROTOTYPE;

	memcpy(sun.sun_path, _PATH_LOG, sizeof(_PATH_LOG));
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		int fd = socket(AF_UNIX, types[i] | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
			*type = types[i];
			return fd;
		}
		err = errno;
		close(fd);
		if (err != EPROTOTYPE)
			break;
	}
	return -err;
}

/* Sends one record; 0 or -errno. Called with L.lock held, or dying
 * (@in_handler): then a syslog daemon too slow to take it (a full socket
 * queue) counts as one that does not answer, rather than hang the death. */
static int syslog_send(const char *p, size_t n, bool in_handler)
{
	int flags = MSG_NOSIGNAL | (in_handler ? MSG_DONTWAIT : 0);

	if (L.sock_type == SOCK_DGRAM)
		n--; /* no NUL in a datagram */
	while (n) {
		ssize_t k = send(L.sock, p, n, flags);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (L.sock_type == SOCK_DGRAM)
			return 0;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* mkdir -p of @path's directory, missing components mode 0700 (as the XDG
 * base directory spec asks); best effort: the open says what failed */
static void mkdirs(const char *path)
{
	char dir[PATH_MAX];
	size_t n = strlen(path);

	if (n >= sizeof(dir))
		return;
	memcpy(dir, path, n + 1);
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		mkdir(dir, 0700);
		*p = '/';
	}
}

/* Opens the fallback file (async-signal-safe): the fd or -1 (errno set). */
static int fallback_open(void)
{
	mkdirs(L.fallback);
	/* O_NOFOLLOW: a directory such as /var/log may be writable by a
	 * group; private: the log names users' files */
	return open(L.fallback, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW,
		    0600);
}

/* Sends one record (@rec, @n bytes: format()'s) to syslog, connecting
 * first if need be, and once more if the send fails (the syslog daemon
 * restarted). After an outage, syslog is first told where its lines went.
 * 0 or -errno. Called with L.lock held (or dying). */
static int syslog_emit(const char *rec, size_t n, bool in_handler)
{
	int rc = 0;

	for (int tries = 0; tries < 2; tries++) {
		if (L.sock < 0) {
			rc = syslog_connect(&L.sock_type);
			if (rc < 0)
				return rc;
			L.sock = rc;
		}
		if (L.outage && !in_handler) {
			char note[PATH_MAX + 128], buf[sizeof(note) + 128];
			struct out m = { note, 0, sizeof(note) }, o = { buf, 0, sizeof(buf) };

			puts_(&m, "pinfs: syslog answers again; what was logged while it did not is in ");
			puts_(&m, L.fallback);
			format(&o, LOG_TO_SYSLOG, LOG_NOTICE, note, m.n, false);
			if (syslog_send(buf, o.n, false) == 0)
				L.outage = false;
		}
		rc = syslog_send(rec, n, in_handler);
		if (!rc)
			return 0;
		close(L.sock);
		L.sock = -1;
	}
	return rc;
}

/* Logs one message (@n bytes, no newline). Called with L.lock held, or
 * from the fatal-signal handler (@in_handler). */
static void emit(int level, const char *msg, size_t n, bool in_handler)
{
	char buf[LINE_MAX_LEN + 128];
	struct out o = { buf, 0, sizeof(buf) };
	int err;

	switch (L.to) {
	case LOG_TO_TERMINAL:
		format(&o, LOG_TO_TERMINAL, level, msg, n, in_handler);
		write_all(STDERR_FILENO, buf, o.n);
		return;
	case LOG_TO_FILE:
		format(&o, LOG_TO_FILE, level, msg, n, in_handler);
		write_all(L.fd, buf, o.n);
		return;
	case LOG_TO_SYSLOG:
		break;
	}
	format(&o, LOG_TO_SYSLOG, level, msg, n, in_handler);
	err = -syslog_emit(buf, o.n, in_handler);
	if (!err)
		return;

	/* syslog does not answer: the fallback file, until it does */
	if (L.fd < 0 && L.fallback[0])
		L.fd = fallback_open();
	if (L.fd < 0)
		return; /* nowhere (said at mount if it was so then) */
	if (!L.outage) {
		/* strerror() may translate (locale, malloc): not when dying */
		const char *why = in_handler ? strerrorname_np(err) : strerror(err);
		char note[256];
		struct out m = { note, 0, sizeof(note) };

		L.outage = true;
		puts_(&m, "pinfs: syslog (" _PATH_LOG ") does not answer (");
		puts_(&m, why ? why : "?");
		puts_(&m, "): logging here until it does");
		o.n = 0;
		format(&o, LOG_TO_FILE, LOG_NOTICE, note, m.n, in_handler);
		write_all(L.fd, buf, o.n);
	}
	o.n = 0;
	format(&o, LOG_TO_FILE, level, msg, n, in_handler);
	write_all(L.fd, buf, o.n);
}

/* ---- stderr and libfuse's log ------------------------------------------- */

static void emit_locked(int level, const char *msg, size_t n)
{
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		n--;
	if (!n)
		return;
	pthread_mutex_lock(&L.lock);
	emit(level, msg, n, false);
	pthread_mutex_unlock(&L.lock);
}

/* called with the stream's lock held (stdio locks the FILE) */
static ssize_t log_write(void *cookie, const char *buf, size_t len)
{
	(void)cookie;
	for (size_t i = 0; i < len; i++) {
		L.line[L.len++] = buf[i];
		if (buf[i] == '\n' || L.len == sizeof(L.line)) {
			emit_locked(LOG_ERR, L.line, L.len);
			L.len = 0;
		}
	}
	return (ssize_t)len;
}

static int log_close(void *cookie)
{
	(void)cookie;
	emit_locked(LOG_ERR, L.line, L.len);
	L.len = 0;
	return 0;
}

static void fuse_log_to(enum fuse_log_level level, const char *fmt, va_list ap)
{
	char msg[LINE_MAX_LEN];
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	char *p = msg, *nl;

	if (n < 0)
		return;
	if ((size_t)n >= sizeof(msg))
		n = sizeof(msg) - 1;
	msg[n] = '\0';
	while ((nl = strchr(p, '\n'))) { /* one record per line */
		emit_locked((int)level, p, (size_t)(nl - p));
		p = nl + 1;
	}
	emit_locked((int)level, p, strlen(p));
}

/* ---- fatal signals ------------------------------------------------------- */

static const int fatal_signals[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };

/* ffs_log_sigbus(): set before the daemon's threads start */
static bool (*sigbus_catch)(void *addr, uint64_t *off);
static struct sigaction sigbus_old; /* what ffs_log_sigbus() replaced */
static unsigned sigbus_said;	     /* pool faults logged (atomic) */

static const char *bus_code(int code)
{
	switch (code) {
	case BUS_ADRALN: return "BUS_ADRALN";
	case BUS_ADRERR: return "BUS_ADRERR";
	case BUS_OBJERR: return "BUS_OBJERR";
	case BUS_MCEERR_AR: return "BUS_MCEERR_AR";
	case BUS_MCEERR_AO: return "BUS_MCEERR_AO";
	default: return "?";
	}
}

/* A SIGBUS in the pool mapping that pm_fault_catch() recovered: one line. */
static void log_pool_fault(const siginfo_t *si, uint64_t off, bool last)
{
	char msg[PATH_MAX + 512];
	struct out o = { msg, 0, sizeof(msg) };

	puts_(&o, "pinfs: ");
	puts_(&o, L.pool);
	puts_(&o, ": SIGBUS (");
	puts_(&o, bus_code(si->si_code));
	puts_(&o, ") at pool offset ");
	put_hex(&o, off);
	puts_(&o, " (block ");
	put_uint(&o, off >> 12, 1, false);
	puts_(&o, ") in thread ");
	put_uint(&o, (unsigned)gettid(), 1, false);
	puts_(&o, si->si_code == BUS_MCEERR_AR || si->si_code == BUS_MCEERR_AO
			  ? ": a poisoned line of the pool"
			  : ": the pool file lost that page (truncated underneath the daemon, or its "
			    "file system full)");
	puts_(&o, "; the request gets EIO and the file system is read-only (EROFS) until "
		  "fsck.pinfs --repair");
	if (last)
		puts_(&o, " (further faults are not logged)");
	emit(LOG_CRIT, msg, o.n, true);
}

/* Logs why the daemon dies, then lets it die of @sig as it would have. */
static void on_fatal(int sig, siginfo_t *si, void *uc)
{
	int saved = errno;
	char msg[PATH_MAX + 256];
	struct out o = { msg, 0, sizeof(msg) };
	const char *name = sigabbrev_np(sig);
	struct sigaction dfl = { .sa_handler = SIG_DFL };

	if (sig == SIGBUS && si->si_code > 0 && sigbus_catch) {
		uint64_t off;

		if (sigbus_catch(si->si_addr, &off)) {
			/* the first few: a lost range is met page by page */
			unsigned said = __atomic_add_fetch(&sigbus_said, 1, __ATOMIC_RELAXED);
			if (said <= 8)
				log_pool_fault(si, off, said == 8);
			errno = saved;
			return; /* the faulting access runs again, on a zero page */
		}
		/* not the pool's: a crash, for the handler we replaced */
		if ((sigbus_old.sa_flags & SA_SIGINFO) && sigbus_old.sa_sigaction &&
		    sigbus_old.sa_sigaction != on_fatal) {
			sigbus_old.sa_sigaction(sig, si, uc);
			return;
		}
		if (!(sigbus_old.sa_flags & SA_SIGINFO) && sigbus_old.sa_handler != SIG_DFL &&
		    sigbus_old.sa_handler != SIG_IGN) {
			sigbus_old.sa_handler(sig);
			return;
		}
	}
	(void)uc;
	puts_(&o, "pinfs: ");
	puts_(&o, L.pool);
	puts_(&o, ": fatal signal SIG");
	puts_(&o, name ? name : "?");
	if (si->si_code <= 0) { /* kill(), raise(), abort() */
		puts_(&o, " from process ");
		put_uint(&o, (unsigned)si->si_pid, 1, false);
	} else if (sig != SIGABRT) {
		puts_(&o, " at address ");
		put_hex(&o, (unsigned long long)(uintptr_t)si->si_addr);
	}
	puts_(&o, " in thread ");
	put_uint(&o, (unsigned)gettid(), 1, false);
	puts_(&o, ": the daemon dies; the mount fails with ENOTCONN until it is unmounted");
	emit(LOG_CRIT, msg, o.n, true);

	/* handlers were only installed over SIG_DFL: back to it, and die. A
	 * fault returns to the faulting instruction; a sent signal (abort()'s
	 * among them) is raised again, pending until this handler returns. */
	sigaction(sig, &dfl, NULL);
	if (si->si_code <= 0)
		raise(sig);
	errno = saved;
}

static void fatal_handlers_install(void)
{
	struct sigaction sa = { .sa_sigaction = on_fatal, .sa_flags = SA_SIGINFO };

	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(fatal_signals) / sizeof(fatal_signals[0]); i++) {
		struct sigaction old;

		/* leave a handler someone installed first (a sanitizer's) */
		if (sigaction(fatal_signals[i], NULL, &old) == 0 && !(old.sa_flags & SA_SIGINFO) &&
		    old.sa_handler == SIG_DFL)
			sigaction(fatal_signals[i], &sa, NULL);
	}
}

void ffs_log_sigbus(bool (*catch)(void *addr, uint64_t *off))
{
	struct sigaction sa = { .sa_sigaction = on_fatal, .sa_flags = SA_SIGINFO }, old;

	sigemptyset(&sa.sa_mask);
	sigbus_catch = catch;
	/* installed even over a sanitizer's handler, which is chained to for
	 * a SIGBUS outside the pool */
	if (sigaction(SIGBUS, NULL, &old) == 0 &&
	    !((old.sa_flags & SA_SIGINFO) && old.sa_sigaction == on_fatal))
		sigbus_old = old;
	sigaction(SIGBUS, &sa, NULL);
}

/* ---- set-up -------------------------------------------------------------- */

/* Where a daemon with no syslog logs: /var/log/pinfs.log for root, else
 * $XDG_STATE_HOME/pinfs.log (default ~/.local/state). 0 or -errno. */
static int fallback_path(char *buf, size_t len)
{
	const char *state = getenv("XDG_STATE_HOME");
	char dir[PATH_MAX];
	int rc;

	if (geteuid() == 0) {
		snprintf(buf, len, "/var/log/pinfs.log");
		return 0;
	}
	if (state && state[0] == '/') {
		rc = snprintf(dir, sizeof(dir), "%s", state);
	} else {
		const char *home = getenv("HOME");
		struct passwd *pw;

		if (!home || home[0] != '/') {
			pw = getpwuid(getuid());
			home = pw ? pw->pw_dir : NULL;
		}
		if (!home || home[0] != '/')
			return -ENOENT;
		rc = snprintf(dir, sizeof(dir), "%s/.local/state", home);
	}
	if (rc < 0 || (size_t)rc >= sizeof(dir))
		return -ENAMETOOLONG;
	rc = snprintf(buf, len, "%s/pinfs.log", dir);
	if (rc < 0 || (size_t)rc >= len)
		return -ENAMETOOLONG;
	return 0;
}

int ffs_log_prepare(const char *logfile, bool foreground, const char *pool)
{
	int rc;

	snprintf(L.pool, sizeof(L.pool), "%s", pool);
	if (logfile) {
		/* opened now, in the caller's directory and with its terminal
		 * to say why not; private: the log names users' files */
		L.fd = open(logfile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0600);
		if (L.fd < 0) {
			rc = -errno;
			fprintf(stderr, "pinfs: -o logfile=%s: %s\n", logfile, strerror(-rc));
			return rc;
		}
		L.to = LOG_TO_FILE;
		return 0;
	}
	if (foreground) {
		L.to = LOG_TO_TERMINAL;
		return 0;
	}
	L.to = LOG_TO_SYSLOG;
	rc = syslog_connect(&L.sock_type);
	if (rc >= 0)
		L.sock = rc;
	else
		L.no_syslog = -rc; /* the fallback file, once the mount is up */
	return 0;
}

void ffs_log_fallback(void)
{
	int rc;

	if (L.to != LOG_TO_SYSLOG)
		return;
	/* where it would go if syslog stopped answering later, too */
	rc = fallback_path(L.fallback, sizeof(L.fallback));
	if (rc) {
		L.fallback[0] = '\0';
		L.no_fallback = -rc;
	}
	if (!L.no_syslog)
		return;
	/* No syslog daemon: the fallback file from the start, silently on
	 * the terminal (a successful mount prints nothing: mount helpers
	 * don't, and scripts compare their output), and the file's first
	 * line says why (ffs_log_start). Only a mount that will log nowhere
	 * says so. Without a file, the log keeps trying syslog, which may
	 * start later. */
	if (L.fallback[0]) {
		L.fd = fallback_open();
		if (L.fd >= 0) {
			L.to = LOG_TO_FILE;
			L.say_fallback = true;
			return;
		}
		L.no_fallback = errno;
		fprintf(stderr, "pinfs: no syslog (%s: %s) and %s: %s: nothing will be logged "
				"(-o logfile=PATH names a file)\n",
			_PATH_LOG, strerror(L.no_syslog), L.fallback, strerror(L.no_fallback));
	} else {
		fprintf(stderr, "pinfs: no syslog (%s: %s) and no directory for a log file (%s): "
				"nothing will be logged (-o logfile=PATH names a file)\n",
			_PATH_LOG, strerror(L.no_syslog), strerror(L.no_fallback));
	}
}

void ffs_log_start(void)
{
	static const cookie_io_functions_t fns = { .write = log_write, .close = log_close };
	FILE *f;

	L.started = true;
	fatal_handlers_install();
	if (L.to == LOG_TO_TERMINAL)
		return; /* -f: stderr stays what it is */
	if (L.to == LOG_TO_FILE) {
		/* the file becomes fd 2, so whatever writes to fd 2 itself (a
		 * sanitizer's report, libfuse's perror) lands there too */
		if (L.fd != STDERR_FILENO) {
			if (dup2(L.fd, STDERR_FILENO) < 0)
				return;
			close(L.fd);
			L.fd = STDERR_FILENO;
		}
	}
	fuse_set_log_func(fuse_log_to);
	f = fopencookie(NULL, "w", fns);
	if (!f)
		return;
	setvbuf(f, NULL, _IOLBF, 0);
	stderr = f;
	if (L.say_fallback)
		fprintf(stderr, "pinfs: no syslog (%s: %s): logging to %s\n", _PATH_LOG,
			strerror(L.no_syslog), L.fallback);
}

void ffs_log_close(void)
{
	if (L.started)
		return; /* the log lasts until exit */
	if (L.fd >= 0)
		close(L.fd);
	if (L.sock >= 0)
		close(L.sock);
	L.fd = L.sock = -1;
}

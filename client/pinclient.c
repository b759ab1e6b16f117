/* SPDX-License-Identifier: MIT */
/*
 * client/pinclient.c -- an RDMA-like pinfs client. It pins part of a file,
 * maps the pinned blocks straight from the pool (include/pinfs/client.h), registers
 * that mapping with io_uring as fixed buffers -- a real kernel long-term pin,
 * as an RDMA NIC would take -- and keeps "DMA-ing" into it with READ_FIXED
 * from a source file at a given rate. After every transfer it checks that
 * the landed bytes equal the source, and every so often that read() of the
 * file through the mount returns them too (the coherence promise).
 *
 * It is the holder in the truncate-policy experiments: it reports a
 * revocation (SIGBUS) and its time, and with --cooperative gives the lease
 * back on a lease-break notice (SIGIO). The signal handlers only record what
 * arrived; the main loop acts on it. Break notices come only to holders
 * that ask (include/pinfs/abi.h, "Lease notices"): pinclient asks for
 * SIGIO (PINFS_PIN_NOTIFY_SIGNAL) since it handles it, except with
 * --unasked, which plays a holder written from client.h alone: no SIGIO
 * handler (its default action would kill), no notices asked for.
 *
 * --stale-ring plays a careless RDMA user, on purpose: when its lease ends
 * it unpins as usual but keeps the io_uring fixed-buffer registration (the
 * kernel's pin on the pages), and on SIGUSR2 transfers once more through it.
 * Whatever the pool now keeps in those pages is what that store hits; it
 * exists so that scripts/compare-policies can show where it lands.
 *
 * Exit: 0 after a clean unpin, 3 when the lease was revoked, 1 on error
 * (with --stale-ring also a failed stale transfer), 2 on a usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <liburing.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "pinfs/client.h"

#define EXIT_OK 0
#define EXIT_ERR 1
#define EXIT_USAGE 2
#define EXIT_REVOKED 3

/* io_uring refuses to register one buffer larger than 1 GiB. */
#define REG_BUF_MAX (1ull << 30)
/* How often read() through the mount is compared with the mapping. */
#define COHERENCE_NS 200000000ull

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free in a handler");

/* Written only by the signal handlers (each field once per signal, the
 * flag last), read by the main loop. */
static volatile sig_atomic_t g_revoked, g_break, g_stop, g_stale_go;
static _Atomic unsigned long long g_revoke_id, g_break_id, g_revoke_ns;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void on_signal(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	switch (sig) {
	case SIGBUS:
		if (si->si_code != SI_QUEUE) {
			/* A real fault on a mapping: let it kill us as it would
			 * have (the faulting access is retried on return). */
			signal(SIGBUS, SIG_DFL);
			return;
		}
		atomic_store(&g_revoke_id, (uintptr_t)si->si_value.sival_ptr);
		atomic_store(&g_revoke_ns, now_ns());
		g_revoked = 1;
		break;
	case SIGIO:
		if (si->si_code != SI_QUEUE)
			return;
		atomic_store(&g_break_id, (uintptr_t)si->si_value.sival_ptr);
		g_break = 1;
		break;
	case SIGUSR2: /* installed with --stale-ring only */
		g_stale_go = 1;
		break;
	default:
		g_stop = 1;
		break;
	}
}

/* SIGUSR2 only with @stale_ring: otherwise it keeps its default action. */
/* Without @sigio (--unasked) SIGIO keeps its default action too. */
static int signals_install(bool stale_ring, bool sigio)
{
	static const int sigs[] = { SIGBUS, SIGINT, SIGTERM, SIGIO, SIGUSR2 };
	const int *sv = sigs;
	int only[4] = { SIGBUS, SIGINT, SIGTERM, SIGUSR2 };
	size_t n = sizeof(sigs) / sizeof(sigs[0]) - (stale_ring ? 0 : 1);

	if (!sigio) { /* the same list without SIGIO */
		sv = only;
		n--;
	}
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < n; i++)
		sigaddset(&sa.sa_mask, sv[i]);
	for (size_t i = 0; i < n; i++)
		if (sigaction(sv[i], &sa, NULL) < 0)
			return -errno;
	return 0;
}

static int parse_nonneg(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v) || v < 0)
		return -EINVAL;
	*out = v;
	return 0;
}

/* One line saying what is wrong, then where to look; the usage exit status. */
static int usage_error(const char *fmt, const char *arg)
{
	fputs("pinclient: ", stderr);
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'pinclient --help'.\n");
	return 2;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pinclient [--revocable] [--cooperative] [--short] [--unasked] [--rate MBPS]\n"
		"                 [--duration SECONDS]\n"
		"                 [--source FILE] [--chunk BYTES] [--stale-ring] FILE OFFSET LENGTH\n"
		"\n"
		"Pins [OFFSET, OFFSET+LENGTH) of FILE (on a pinfs mount) for writing, maps it\n"
		"from the pool, registers the mapping as io_uring fixed buffers and keeps\n"
		"transferring data into it with READ_FIXED, verifying every transfer.\n"
		"\n"
		"  --revocable       accept revocation (SIGBUS) instead of blocking truncates\n"
		"  --cooperative     unpin and exit 0 on a lease-break notice (SIGIO)\n"
		"  --short           a short-term pin (PINFS_PIN_SHORT, O_DIRECT style): allowed\n"
		"                    under policy refuse_longterm, waited for by truncate under\n"
		"                    every policy, revoked by the daemon after -o short_pin_max\n"
		"                    (keep --duration below it; with --revocable exit 3 then)\n"
		"  --unasked         ask for no break notices and install no SIGIO handler (a\n"
		"                    holder written from client.h alone); without it pinclient\n"
		"                    asks for SIGIO (PINFS_PIN_NOTIFY_SIGNAL) and reports it\n"
		"  --rate MBPS       transfer rate in MB/s (10^6 bytes); 0 = unlimited (default 100)\n"
		"  --duration SECS   stop after SECS seconds (default: until signalled)\n"
		"  --source FILE     regular file to read from (default: a pattern file in /dev/shm)\n"
		"  --chunk BYTES     bytes per transfer (default 256k)\n"
		"  --stale-ring      DEMONSTRATION ONLY, a careless RDMA user: when the lease ends\n"
		"                    (revoked, a cooperative break, --duration over) unpin but keep\n"
		"                    the io_uring fixed buffers registered, wait for SIGUSR2, then\n"
		"                    READ_FIXED the whole buffer once more from the source into\n"
		"                    pages that may now hold another file's data; prints\n"
		"                    'pinclient: stale dma: N bytes'\n"
		"  --help            print this help and exit\n"
		"  --version         print the version and exit\n"
		"Sizes take a k/m/g/t suffix (powers of 1024).\n"
		"\n"
		"Exit status: 0 clean unpin (duration over, SIGINT/SIGTERM, or a cooperative\n"
		"break), 3 the lease was revoked, 1 error (with --stale-ring also: the stale\n"
		"transfer failed), 2 usage error.\n");
}

/* Everything held between pinning and the end. */
struct client {
	int fd, src_fd;
	struct pinfs_map map;
	bool mapped;
	struct io_uring ring;
	bool ring_up, registered;
	char *buf_base; /* where the registered buffers start (the mapping, while mapped) */
	size_t buf_len;
	uint64_t src_size, chunk;
	uint64_t win, win_len; /* where transfers land: the requested range, in the mapping */
	uint64_t pin_ns;
	uint64_t bytes, transfers;
	char *vbuf, *fbuf; /* source bytes, file bytes read back */
};

/* Creates the default source: pseudo-random bytes in /dev/shm, unlinked at
 * once so that nothing is left behind however we exit. */
static int pattern_create(uint64_t size, int *out)
{
	char path[] = "/dev/shm/pinclient.XXXXXX";
	uint64_t x = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
	char buf[65536];
	int fd = mkstemp(path);

	if (fd < 0)
		return -errno;
	unlink(path);
	for (uint64_t at = 0; at < size;) {
		size_t n = size - at < sizeof(buf) ? (size_t)(size - at) : sizeof(buf);

		for (size_t i = 0; i < n; i += 8) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			memcpy(buf + i, &x, n - i < 8 ? n - i : 8);
		}
		ssize_t w = pwrite(fd, buf, n, (off_t)at);
		if (w <= 0) {
			int rc = w < 0 ? -errno : -EIO;
			close(fd);
			return rc;
		}
		at += (uint64_t)w;
	}
	*out = fd;
	return 0;
}

/* Registers the mapping as fixed buffers of at most REG_BUF_MAX each. */
static int buffers_register(struct client *c)
{
	size_t n = (c->map.len + REG_BUF_MAX - 1) / REG_BUF_MAX;
	struct iovec *iov = calloc(n, sizeof(*iov));
	int rc;

	if (!iov)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		iov[i].iov_base = (char *)c->map.addr + i * REG_BUF_MAX;
		iov[i].iov_len = i + 1 < n ? REG_BUF_MAX : c->map.len - i * REG_BUF_MAX;
	}
	rc = io_uring_register_buffers(&c->ring, iov, (unsigned)n);
	free(iov);
	if (rc == 0) {
		c->registered = true;
		c->buf_base = c->map.addr;
		c->buf_len = c->map.len;
	}
	return rc;
}

/* Ends the kernel's long-term pin on the pages (fixed buffers) and the ring. */
static void ring_release(struct client *c)
{
	if (c->registered) {
		int r = io_uring_unregister_buffers(&c->ring);
		if (r < 0)
			fprintf(stderr, "pinclient: io_uring_unregister_buffers: %s\n", strerror(-r));
		c->registered = false;
	}
	if (c->ring_up) {
		io_uring_queue_exit(&c->ring);
		c->ring_up = false;
	}
}

/*
 * Releases in the sensible order: the kernel's long-term pin on the pages
 * (fixed buffers) first, then our mapping, then the lease. The daemon cuts
 * freed blocks out of the pool before reuse, so a pin kept past the lease
 * only writes into orphaned pages. With @keep_ring (--stale-ring) the first
 * step is skipped on purpose: that is the careless user's mistake.
 * Returns the unpin's result.
 */
static int client_release(struct client *c, bool keep_ring)
{
	int rc = 0;

	if (!keep_ring)
		ring_release(c);
	if (c->mapped) {
		rc = pinfs_map_unpin(&c->map);
		c->mapped = false;
	}
	return rc;
}

/* One READ_FIXED of @n source bytes at @src_off into the registered buffers
 * at offset @dst (the mapping's offset, while mapped). Returns the bytes read
 * or -errno. Waits for the completion whatever signals arrive: the buffer
 * must not be released under a pending read. */
static long transfer(struct client *c, uint64_t dst, uint64_t n, uint64_t src_off)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&c->ring);
	struct io_uring_cqe *cqe;
	int rc;

	if (!sqe)
		return -EBUSY;
	io_uring_prep_read_fixed(sqe, c->src_fd, c->buf_base + dst, (unsigned)n, src_off,
				 (int)(dst / REG_BUF_MAX));
	rc = io_uring_submit(&c->ring);
	if (rc < 0)
		return rc;
	do
		rc = io_uring_wait_cqe(&c->ring, &cqe);
	while (rc == -EINTR);
	if (rc < 0)
		return rc;
	rc = cqe->res;
	io_uring_cqe_seen(&c->ring, cqe);
	return rc;
}

/* pread() all of [off, off + n) unless EOF comes first; bytes or -errno. */
static long pread_full(int fd, char *buf, uint64_t n, uint64_t off)
{
	uint64_t got = 0;

	while (got < n) {
		ssize_t r = pread(fd, buf + got, n - got, (off_t)(off + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		got += (uint64_t)r;
	}
	return (long)got;
}

/*
 * --stale-ring, after the unpin: waits for SIGUSR2 (returns true) or
 * SIGINT/SIGTERM (false). The signals are blocked between the check and the
 * sleep, so one that arrives in between is not slept through.
 */
static bool stale_wait(void)
{
	sigset_t block, old;
	bool go;

	sigemptyset(&block);
	sigaddset(&block, SIGUSR2);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, &old);
	while (!g_stale_go && !g_stop)
		sigsuspend(&old);
	go = g_stale_go && !g_stop;
	sigprocmask(SIG_SETMASK, &old, NULL);
	return go;
}

/*
 * --stale-ring: one READ_FIXED pass over the whole registered buffer from
 * the source (from its start, wrapping), through a registration whose lease
 * has ended. Nothing is verified: the pages are no longer ours to read.
 * Returns the bytes transferred or -errno.
 */
static long stale_dma(struct client *c)
{
	uint64_t done = 0;

	while (done < c->buf_len) {
		uint64_t src_off = done % c->src_size, n = c->buf_len - done;
		long got;

		if (n > c->src_size - src_off)
			n = c->src_size - src_off;
		if (n > REG_BUF_MAX - done % REG_BUF_MAX)
			n = REG_BUF_MAX - done % REG_BUF_MAX; /* one transfer, one buffer */
		got = transfer(c, done, n, src_off);
		if (got < 0)
			return got;
		if (got == 0)
			return -ENODATA; /* the source shrank */
		done += (uint64_t)got;
	}
	return (long)done;
}

enum verdict { GO_ON, STOP_CLEAN, STOP_REVOKED };

/* Acts on what the signal handlers recorded. */
static enum verdict check_signals(struct client *c, bool cooperative)
{
	uint64_t id = c->map.lease_id;

	if (g_revoked) {
		g_revoked = 0;
		if (atomic_load(&g_revoke_id) == id) {
			double t = (double)(atomic_load(&g_revoke_ns) - c->pin_ns) / 1e9;
			printf("pinclient: lease %" PRIu64 " revoked after %.3f s\n", id, t);
			return STOP_REVOKED;
		}
		fprintf(stderr, "pinclient: SIGBUS for lease %llu, not ours (%" PRIu64 "); ignored\n",
			atomic_load(&g_revoke_id), id);
	}
	if (g_break) {
		g_break = 0;
		if (atomic_load(&g_break_id) != id) {
			fprintf(stderr, "pinclient: SIGIO for lease %llu, not ours (%" PRIu64 "); ignored\n",
				atomic_load(&g_break_id), id);
		} else if (cooperative) {
			printf("pinclient: lease %" PRIu64 " break notice, unpinning\n", id);
			return STOP_CLEAN;
		} else {
			printf("pinclient: lease %" PRIu64 " break notice, ignored\n", id);
		}
	}
	if (g_stop)
		return STOP_CLEAN;
	return GO_ON;
}

/* Sleeps until @until (CLOCK_MONOTONIC ns) or until a signal needs action. */
static enum verdict sleep_until(struct client *c, bool cooperative, uint64_t until)
{
	for (;;) {
		enum verdict v = check_signals(c, cooperative);
		struct timespec ts;

		if (v != GO_ON || now_ns() >= until)
			return v;
		ts.tv_sec = (time_t)(until / 1000000000ull);
		ts.tv_nsec = (long)(until % 1000000000ull);
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "revocable", no_argument, NULL, 'r' },
		{ "cooperative", no_argument, NULL, 'c' },
		{ "short", no_argument, NULL, 'T' },
		{ "rate", required_argument, NULL, 'R' },
		{ "duration", required_argument, NULL, 'd' },
		{ "source", required_argument, NULL, 's' },
		{ "chunk", required_argument, NULL, 'C' },
		{ "stale-ring", no_argument, NULL, 'S' },
		{ "unasked", no_argument, NULL, 'u' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	bool revocable = false, cooperative = false, stale_ring = false, stale = false;
	bool shortterm = false;
	bool unasked = false;
	double rate = 100, duration = 0;
	const char *source = NULL, *path;
	uint64_t chunk = 256 << 10, off, len, next_check = 0, deadline = UINT64_MAX, lease;
	struct client c = { .fd = -1, .src_fd = -1 };
	enum verdict v = GO_ON;
	int opt, rc, status = EXIT_OK;
	struct stat st;

	setvbuf(stdout, NULL, _IOLBF, 0);
	opterr = 0; /* our messages, in our format */
	while ((opt = getopt_long(argc, argv, ":hV", opts, NULL)) != -1) {
		switch (opt) {
		case 'r': revocable = true; break;
		case 'c': cooperative = true; break;
		case 'T': shortterm = true; break;
		case 'R':
			if (parse_nonneg(optarg, &rate) < 0) {
				return usage_error("--rate '%s' is not a rate in MB/s", optarg);
			}
			break;
		case 'd':
			if (parse_nonneg(optarg, &duration) < 0) {
				return usage_error("--duration '%s' is not a number of seconds", optarg);
			}
			break;
		case 's': source = optarg; break;
		case 'S': stale_ring = true; break;
		case 'u': unasked = true; break;
		case 'C':
			if (pinfs_parse_size(optarg, &chunk) < 0 || chunk == 0 || chunk > (1u << 30)) {
				return usage_error("--chunk '%s' is not a size of 1 byte .. 1 GiB", optarg);
			}
			break;
		case 'h': usage(stdout); return EXIT_OK;
		case 'V': printf("pinclient (pinfs) " PINFS_VERSION "\n"); return EXIT_OK;
		case ':': return usage_error("option '%s' needs an argument", argv[optind - 1]);
		default: return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (argc - optind < 3)
		return usage_error("missing FILE OFFSET LENGTH%s", "");
	if (argc - optind > 3)
		return usage_error("unexpected argument '%s'", argv[optind + 3]);
	path = argv[optind];
	if (pinfs_parse_size(argv[optind + 1], &off) < 0)
		return usage_error("'%s' is not a size (OFFSET)", argv[optind + 1]);
	if (pinfs_parse_size(argv[optind + 2], &len) < 0)
		return usage_error("'%s' is not a size (LENGTH)", argv[optind + 2]);

	if (unasked && cooperative)
		return usage_error("%s and --cooperative: a holder that asks for no notice "
				   "cannot act on one", "--unasked");
	rc = signals_install(stale_ring, !unasked);
	if (rc < 0) {
		fprintf(stderr, "pinclient: sigaction: %s\n", strerror(-rc));
		return EXIT_ERR;
	}
	c.fd = open(path, O_RDWR | O_CLOEXEC);
	if (c.fd < 0) {
		fprintf(stderr, "pinclient: open %s: %s\n", path, strerror(errno));
		return EXIT_ERR;
	}

	/* The source first: nothing to undo if it fails. */
	if (source) {
		c.src_fd = open(source, O_RDONLY | O_CLOEXEC);
		if (c.src_fd < 0 || fstat(c.src_fd, &st) < 0) {
			fprintf(stderr, "pinclient: source %s: %s\n", source, strerror(errno));
			return EXIT_ERR;
		}
		if (!S_ISREG(st.st_mode) || st.st_size == 0) {
			fprintf(stderr, "pinclient: source %s: not a non-empty regular file\n", source);
			return EXIT_ERR;
		}
		c.src_size = (uint64_t)st.st_size;
	}

	c.pin_ns = now_ns(); /* before: a revocation may arrive while we map */
	rc = pinfs_map_pin_ex(c.fd, off, len,
			      PINFS_PIN_WRITE | (revocable ? PINFS_PIN_REVOCABLE : 0) |
				      (shortterm ? PINFS_PIN_SHORT : 0) |
				      (unasked ? 0 : PINFS_PIN_NOTIFY_SIGNAL),
			      unasked ? 0 : SIGIO, 0, &c.map);
	if (rc < 0) {
		char why[8192];
		fprintf(stderr, "pinclient: pin %s [%" PRIu64 ", +%" PRIu64 "): %s\n", path, off, len,
			pinfs_pin_strerror(c.fd, rc, why, sizeof(why)));
		return EXIT_ERR;
	}
	c.mapped = true;
	printf("pinclient: lease %" PRIu64 " pinned %zu bytes at %" PRIu64 " (%u segments)\n",
	       c.map.lease_id, c.map.len, c.map.offset, c.map.nsegs);

	/* Transfers stay inside the requested range: the rest of the
	 * rounded-out blocks holds file data that is not ours to overwrite. */
	c.win = off - c.map.offset;
	c.win_len = len;
	if (chunk > c.win_len)
		chunk = c.win_len;
	if (!source) {
		c.src_size = 2 * chunk + 65537; /* odd: successive passes differ */
		rc = pattern_create(c.src_size, &c.src_fd);
		if (rc < 0) {
			fprintf(stderr, "pinclient: pattern file in /dev/shm: %s\n", strerror(-rc));
			goto fail;
		}
	}
	if (chunk > c.src_size)
		chunk = c.src_size;
	c.chunk = chunk;
	c.vbuf = malloc(chunk);
	c.fbuf = malloc(chunk);
	if (!c.vbuf || !c.fbuf) {
		fprintf(stderr, "pinclient: out of memory\n");
		goto fail;
	}
	rc = io_uring_queue_init(8, &c.ring, 0);
	if (rc < 0) {
		fprintf(stderr, "pinclient: io_uring_queue_init: %s\n", strerror(-rc));
		goto fail;
	}
	c.ring_up = true;
	rc = buffers_register(&c);
	if (rc < 0) {
		fprintf(stderr, "pinclient: io_uring_register_buffers (%zu bytes): %s%s\n", c.map.len,
			strerror(-rc),
			rc == -ENOMEM ? " (RLIMIT_MEMLOCK?)"
			: rc == -EOPNOTSUPP
				? ": the pool is on DAX, and the kernel refuses long-term pins "
				  "(FOLL_LONGTERM) of DAX pages: no fixed buffers there"
			: rc == -EFAULT
				? ": the kernel refuses long-term pins of this pool's pages (a file "
				  "system with writeback, not tmpfs or hugetlbfs?)"
				: "");
		goto fail;
	}

	if (duration > 0)
		deadline = c.pin_ns + (uint64_t)(duration * 1e9);
	for (uint64_t i = 0;; i++) {
		uint64_t dst = c.win + (i * chunk) % c.win_len, n, src_off;
		long got;

		v = check_signals(&c, cooperative);
		if (v != GO_ON || now_ns() >= deadline)
			break;
		n = chunk;
		if (n > c.win + c.win_len - dst)
			n = c.win + c.win_len - dst;
		if (dst / REG_BUF_MAX != (dst + n - 1) / REG_BUF_MAX)
			n = REG_BUF_MAX - dst % REG_BUF_MAX; /* one transfer, one buffer */
		src_off = (i * 4099) % (c.src_size - n + 1);

		got = transfer(&c, dst, n, src_off);
		if (got <= 0) {
			fprintf(stderr, "pinclient: READ_FIXED from source at %" PRIu64 ": %s\n",
				src_off, got < 0 ? strerror((int)-got) : "unexpected EOF");
			goto fail;
		}
		n = (uint64_t)got;
		if (pread_full(c.src_fd, c.vbuf, n, src_off) != (long)n) {
			fprintf(stderr, "pinclient: source changed size under us\n");
			goto fail;
		}
		/* The blocks stay ours (quarantined) after a revocation, so
		 * what landed must match whatever happened meanwhile. */
		if (memcmp((char *)c.map.addr + dst, c.vbuf, n) != 0) {
			fprintf(stderr, "pinclient: verify failed: mapping at file offset %" PRIu64
				" differs from the source after transfer %" PRIu64 "\n",
				c.map.offset + dst, i + 1);
			goto fail;
		}
		c.bytes += n;
		c.transfers++;

		if (now_ns() >= next_check) {
			long r = pread_full(c.fd, c.fbuf, n, c.map.offset + dst);

			/* A revoke/truncate may have raced with this read; its
			 * signal was queued before the truncate could change
			 * what read() sees, so it is pending now. */
			v = check_signals(&c, cooperative);
			if (v != GO_ON)
				break;
			if (r < 0) {
				fprintf(stderr, "pinclient: pread %s at %" PRIu64 ": %s\n", path,
					c.map.offset + dst, strerror((int)-r));
				goto fail;
			}
			if ((uint64_t)r != n || memcmp(c.fbuf, c.vbuf, n) != 0) {
				fprintf(stderr, "pinclient: coherence check failed: read() of %s at %"
					PRIu64 " (%ld of %" PRIu64 " bytes) differs from the mapping\n",
					path, c.map.offset + dst, r, n);
				goto fail;
			}
			next_check = now_ns() + COHERENCE_NS;
		}

		if (rate > 0) {
			uint64_t due = c.pin_ns + (uint64_t)((double)c.bytes / (rate * 1e6) * 1e9);
			v = sleep_until(&c, cooperative, due < deadline ? due : deadline);
			if (v != GO_ON)
				break;
		}
	}

	/* --stale-ring: a lease that ended by itself or by the file system's
	 * action (not SIGINT/SIGTERM, not an error) keeps the ring. */
	stale = stale_ring && !g_stop;
	lease = c.map.lease_id; /* the release clears c.map */
	rc = client_release(&c, stale);
	if (v == STOP_REVOKED) {
		/* The unpin acknowledged the revocation. */
		if (rc < 0 && rc != -EINVAL && rc != -ENOENT)
			fprintf(stderr, "pinclient: unpin of revoked lease: %s\n", strerror(-rc));
		status = EXIT_REVOKED;
	} else if (rc < 0) {
		fprintf(stderr, "pinclient: unpin: %s\n", strerror(-rc));
		status = EXIT_ERR;
	}
	if (stale && status != EXIT_ERR) {
		long got;

		printf("pinclient: lease %" PRIu64 " ended; %zu bytes of io_uring fixed buffers "
		       "still registered (--stale-ring): stale dma on SIGUSR2\n", lease,
		       c.buf_len);
		if (stale_wait()) {
			got = stale_dma(&c);
			if (got < 0) {
				fprintf(stderr, "pinclient: stale READ_FIXED: %s\n",
					strerror((int)-got));
				status = EXIT_ERR;
			} else {
				printf("pinclient: stale dma: %ld bytes\n", got);
			}
		} else {
			printf("pinclient: stale dma: not done (SIGINT/SIGTERM)\n");
		}
	}
	ring_release(&c);
	goto out;
fail:
	client_release(&c, false);
	status = EXIT_ERR;
out:
	printf("pinclient: transferred %" PRIu64 " bytes in %" PRIu64 " transfers\n", c.bytes,
	       c.transfers);
	free(c.vbuf);
	free(c.fbuf);
	if (c.src_fd >= 0)
		close(c.src_fd);
	close(c.fd);
	return status;
}

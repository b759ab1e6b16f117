/* SPDX-License-Identifier: MIT */
/*
 * tests/mount/pinhold.c -- a scriptable lease holder for the pin tests
 * (test_pins.py). It is the *holder*: the pins it takes belong to its
 * process, and the signals the daemon sends about them (SIGBUS = revoked,
 * SIGIO = lease-break notice, include/pinfs/abi.h) are reported with their exact
 * siginfo: both are blocked and read from a signalfd, so nothing is lost and
 * nothing kills it.
 *
 *   pinhold FILE ro|rw          commands on stdin, one answer line each
 *   pinhold --op OP FILE ARGS   do one freeing operation and report
 *
 * Commands (answer "ok ..." or "err errno=N NAME"):
 *   pin OFF LEN FLAGS     FLAGS: letters w (write) r (revocable) c (on
 *                         close), u (unasked: no PINFS_PIN_NOTIFY_SIGNAL;
 *                         without it every pin asks for break notices as
 *                         SIGIO), or "-": "ok lease=ID off=O len=L
 *                         nsegs=N segs=FOFF:POFF:LEN,..."
 *   map ID                map the lease's blocks from the pool file (its
 *                         path from the user.pinfs.pool xattr), contiguously
 *   fill ID FOFF LEN BYTE store BYTE (decimal) through the mapping
 *   read ID FOFF LEN      "ok HEX" of the mapping
 *   count ID BYTE         "ok N": bytes of the mapping equal to BYTE
 *   unpin ID              PINFS_IOC_UNPIN
 *   unpin_after ID MS     unpin MS ms from now ("auto unpin lease=ID rc=R")
 *   coop ID               unpin as soon as a SIGIO about ID arrives
 *   scribble ID BYTE      store BYTE over the whole mapping every ~1 ms until
 *                         "scribble ID -1"
 *   ioctl CMD             a raw ioctl (hex or decimal number) with a 4 KiB
 *                         zeroed buffer: the errno
 *   pid                   "ok PID"
 *   reopen PATH           close FILE and issue the ioctls on PATH (another file
 *                         of the mount) from now on: the pins stay
 *   exit                  exit 0 (pins end with the process)
 * Unsolicited lines:
 *   sig signo=N code=C value=V pid=P uid=U
 *   auto unpin lease=ID rc=R
 *
 * --op modes (a SIGUSR1 handler without SA_RESTART is installed, so a
 * signal interrupts a blocked call and the errno shows it):
 *   truncate FILE LEN | ftruncate FILE LEN | otrunc FILE |
 *   punch FILE OFF LEN
 * print "ready" before the call and "result errno=N ms=T" after it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "pinfs/abi.h"

#define MAXL 64

struct lease {
	uint64_t id, off, len;
	char *addr;
	bool coop, scribble;
	int byte;
	uint64_t unpin_at; /* CLOCK_MONOTONIC ns, 0 = none */
	struct pinfs_seg *segs;
	uint32_t nsegs;
};

static struct lease leases[MAXL];
static int fd = -1;
static bool writable;
static char path[4096];

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void say_err(int e)
{
	const char *n = strerrorname_np(e);

	printf("err errno=%d %s\n", e, n ? n : "?");
}

static struct lease *find(uint64_t id)
{
	for (int i = 0; i < MAXL; i++)
		if (leases[i].id == id)
			return &leases[i];
	return NULL;
}

static void forget(struct lease *l)
{
	if (l->addr)
		munmap(l->addr, l->len);
	free(l->segs);
	memset(l, 0, sizeof(*l));
}

static int do_unpin(struct lease *l)
{
	struct pinfs_unpin u = { .lease_id = l->id };
	int rc;

	/* the mapping goes first: once the lease ends the blocks may belong
	 * to another file (and the daemon keeps them while it sees a mapping) */
	if (l->addr) {
		munmap(l->addr, l->len);
		l->addr = NULL;
	}
	rc = ioctl(fd, PINFS_IOC_UNPIN, &u) < 0 ? errno : 0;
	if (!rc || rc == ENOENT)
		forget(l);
	return rc;
}

static void cmd_pin(uint64_t off, uint64_t len, const char *fl)
{
	struct pinfs_pin *p = calloc(1, sizeof(*p));
	struct lease *l = find(0);
	uint32_t flags = 0;

	for (const char *c = fl; *c; c++)
		flags |= *c == 'w' ? PINFS_PIN_WRITE : *c == 'r' ? PINFS_PIN_REVOCABLE
			 : *c == 'c' ? PINFS_PIN_ON_CLOSE : *c == 's' ? PINFS_PIN_SHORT : 0;
	if (!p || !l) {
		say_err(ENOMEM);
		free(p);
		return;
	}
	p->offset = off;
	p->length = len;
	p->flags = flags;
	if (!strchr(fl, 'u')) { /* the holder of these tests reads SIGIO */
		p->flags |= PINFS_PIN_NOTIFY_SIGNAL;
		p->notify_sig = SIGIO;
	}
	if (ioctl(fd, PINFS_IOC_PIN, p) < 0) {
		say_err(errno);
		free(p);
		return;
	}
	l->id = p->lease_id;
	l->off = p->pin_offset;
	l->len = p->pin_length;
	l->nsegs = p->nsegs_total;
	l->segs = calloc(p->nsegs_total ? p->nsegs_total : 1, sizeof(*l->segs));
	memcpy(l->segs, p->segs, p->nsegs * sizeof(*l->segs));
	for (uint32_t got = p->nsegs; got < p->nsegs_total;) {
		struct pinfs_segs *s = calloc(1, sizeof(*s));
		s->lease_id = l->id;
		s->first = got;
		if (ioctl(fd, PINFS_IOC_SEGS, s) < 0 || !s->nsegs) {
			say_err(errno ? errno : EPROTO);
			free(s);
			free(p);
			return;
		}
		memcpy(l->segs + got, s->segs, s->nsegs * sizeof(*l->segs));
		got += s->nsegs;
		free(s);
	}
	printf("ok lease=%" PRIu64 " off=%" PRIu64 " len=%" PRIu64 " nsegs=%u segs=", l->id, l->off,
	       l->len, l->nsegs);
	for (uint32_t i = 0; i < l->nsegs; i++)
		printf("%s%" PRIu64 ":%" PRIu64 ":%" PRIu64, i ? "," : "", l->segs[i].file_off,
		       l->segs[i].pool_off, l->segs[i].len);
	printf("\n");
	free(p);
}

static void cmd_map(struct lease *l)
{
	char pool[4096];
	ssize_t n = getxattr(path, PINFS_XATTR_POOL, pool, sizeof(pool) - 1);
	int pfd;
	char *base;

	if (n < 0) {
		say_err(errno);
		return;
	}
	pool[n] = 0;
	pfd = open(pool, writable ? O_RDWR : O_RDONLY);
	if (pfd < 0) {
		say_err(errno);
		return;
	}
	base = mmap(NULL, l->len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED) {
		say_err(errno);
		close(pfd);
		return;
	}
	for (uint32_t i = 0; i < l->nsegs; i++) {
		void *a = mmap(base + (l->segs[i].file_off - l->off), l->segs[i].len,
			       PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED | MAP_FIXED, pfd,
			       (off_t)l->segs[i].pool_off);
		if (a == MAP_FAILED) {
			say_err(errno);
			munmap(base, l->len);
			close(pfd);
			return;
		}
	}
	close(pfd);
	l->addr = base;
	printf("ok\n");
}

static void handle_sig(int sfd)
{
	struct signalfd_siginfo si;

	while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
		printf("sig signo=%u code=%d value=%" PRIu64 " pid=%u uid=%u\n", si.ssi_signo,
		       si.ssi_code, (uint64_t)si.ssi_ptr, si.ssi_pid, si.ssi_uid);
		if (si.ssi_signo == SIGIO) {
			struct lease *l = find(si.ssi_ptr);
			if (l && l->id && l->coop) {
				uint64_t id = l->id;
				int rc = do_unpin(l);
				printf("auto unpin lease=%" PRIu64 " rc=%d\n", id, rc);
			}
		}
	}
}

static void timers(void)
{
	uint64_t t = now_ns();

	for (int i = 0; i < MAXL; i++) {
		struct lease *l = &leases[i];
		if (!l->id)
			continue;
		if (l->unpin_at && t >= l->unpin_at) {
			uint64_t id = l->id;
			int rc;
			l->unpin_at = 0;
			rc = do_unpin(l);
			printf("auto unpin lease=%" PRIu64 " rc=%d\n", id, rc);
			continue;
		}
		if (l->scribble && l->addr)
			memset(l->addr, l->byte, l->len);
	}
}

static bool busy(void)
{
	for (int i = 0; i < MAXL; i++)
		if (leases[i].id && (leases[i].unpin_at || leases[i].scribble))
			return true;
	return false;
}

static int command(char *line)
{
	char op[32] = "", a[64] = "", b[64] = "", c[64] = "", d[64] = "";
	struct lease *l = NULL;
	uint64_t id;

	if (sscanf(line, "%31s %63s %63s %63s %63s", op, a, b, c, d) < 1)
		return 0;
	if (!strcmp(op, "exit"))
		return 1;
	if (!strcmp(op, "pid")) {
		printf("ok %d\n", getpid());
		return 0;
	}
	if (!strcmp(op, "pin")) {
		cmd_pin(strtoull(a, NULL, 0), strtoull(b, NULL, 0), c);
		return 0;
	}
	if (!strcmp(op, "reopen")) {
		int nfd = open(a, writable ? O_RDWR : O_RDONLY);
		if (nfd < 0) {
			say_err(errno);
			return 0;
		}
		close(fd);
		fd = nfd;
		printf("ok\n");
		return 0;
	}
	if (!strcmp(op, "ioctl")) {
		static char buf[4096];
		memset(buf, 0, sizeof(buf));
		if (ioctl(fd, (unsigned long)strtoull(a, NULL, 0), buf) < 0)
			say_err(errno);
		else
			printf("ok\n");
		return 0;
	}
	id = strtoull(a, NULL, 0);
	if (!strcmp(op, "unpin") && !find(id)) {
		/* someone else's (or an unknown) lease: just issue the ioctl */
		struct pinfs_unpin u = { .lease_id = id };
		if (ioctl(fd, PINFS_IOC_UNPIN, &u) < 0)
			say_err(errno);
		else
			printf("ok\n");
		return 0;
	}
	l = id ? find(id) : NULL;
	if (!l) {
		say_err(ENOENT);
		return 0;
	}
	if (!strcmp(op, "map")) {
		cmd_map(l);
	} else if (!strcmp(op, "unpin")) {
		int rc = do_unpin(l);
		if (rc)
			say_err(rc);
		else
			printf("ok\n");
	} else if (!strcmp(op, "unpin_after")) {
		l->unpin_at = now_ns() + strtoull(b, NULL, 0) * 1000000ull;
		printf("ok\n");
	} else if (!strcmp(op, "coop")) {
		l->coop = true;
		printf("ok\n");
	} else if (!strcmp(op, "scribble")) {
		int v = atoi(b);
		l->scribble = v >= 0;
		l->byte = v;
		if (l->scribble && !l->addr)
			say_err(EFAULT);
		else
			printf("ok\n");
	} else if (!l->addr) {
		say_err(EFAULT);
	} else if (!strcmp(op, "fill")) {
		uint64_t off = strtoull(b, NULL, 0), len = strtoull(c, NULL, 0);
		if (off < l->off || off + len > l->off + l->len)
			say_err(ERANGE);
		else {
			memset(l->addr + (off - l->off), atoi(d), len);
			printf("ok\n");
		}
	} else if (!strcmp(op, "read")) {
		uint64_t off = strtoull(b, NULL, 0), len = strtoull(c, NULL, 0);
		if (off < l->off || off + len > l->off + l->len) {
			say_err(ERANGE);
		} else {
			printf("ok ");
			for (uint64_t i = 0; i < len; i++)
				printf("%02x", (unsigned char)l->addr[off - l->off + i]);
			printf("\n");
		}
	} else if (!strcmp(op, "count")) {
		int v = atoi(b);
		uint64_t n = 0;
		for (uint64_t i = 0; i < l->len; i++)
			n += (unsigned char)l->addr[i] == v;
		printf("ok %" PRIu64 "\n", n);
	} else {
		say_err(EINVAL);
	}
	return 0;
}

static void on_usr1(int sig)
{
	(void)sig;
}

static int op_mode(int argc, char **argv)
{
	struct sigaction sa;
	uint64_t t0;
	int rc = 0, f;

	if (argc < 4)
		return 2;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1; /* no SA_RESTART */
	sigaction(SIGUSR1, &sa, NULL);
	printf("ready\n");
	t0 = now_ns();
	if (!strcmp(argv[2], "truncate") && argc == 5) {
		rc = truncate(argv[3], (off_t)strtoull(argv[4], NULL, 0));
	} else if (!strcmp(argv[2], "ftruncate") && argc == 5) {
		f = open(argv[3], O_WRONLY);
		rc = f < 0 ? -1 : ftruncate(f, (off_t)strtoull(argv[4], NULL, 0));
	} else if (!strcmp(argv[2], "otrunc") && argc == 4) {
		f = open(argv[3], O_WRONLY | O_TRUNC);
		rc = f < 0 ? -1 : 0;
	} else if (!strcmp(argv[2], "punch") && argc == 6) {
		f = open(argv[3], O_WRONLY);
		rc = f < 0 ? -1
			   : fallocate(f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				       (off_t)strtoull(argv[4], NULL, 0),
				       (off_t)strtoull(argv[5], NULL, 0));
	} else {
		return 2;
	}
	printf("result errno=%d ms=%.1f\n", rc < 0 ? errno : 0, (double)(now_ns() - t0) / 1e6);
	return 0;
}

int main(int argc, char **argv)
{
	char line[512];
	size_t used = 0;
	sigset_t set;
	int sfd;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 2 && !strcmp(argv[1], "--op"))
		return op_mode(argc, argv);
	if (argc != 3 || (strcmp(argv[2], "ro") && strcmp(argv[2], "rw"))) {
		fprintf(stderr, "usage: pinhold FILE ro|rw | pinhold --op OP FILE ARGS\n");
		return 2;
	}
	snprintf(path, sizeof(path), "%s", argv[1]);
	writable = !strcmp(argv[2], "rw");
	fd = open(path, writable ? O_RDWR : O_RDONLY);
	if (fd < 0) {
		fprintf(stderr, "pinhold: open %s: %s\n", path, strerror(errno));
		return 1;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGBUS);
	sigaddset(&set, SIGIO);
	sigprocmask(SIG_BLOCK, &set, NULL);
	sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0) {
		perror("pinhold: signalfd");
		return 1;
	}
	printf("ready pid=%d\n", getpid());
	for (;;) {
		struct pollfd p[2] = { { 0, POLLIN, 0 }, { sfd, POLLIN, 0 } };
		int n = poll(p, 2, busy() ? 1 : 50);

		if (n < 0 && errno != EINTR)
			return 1;
		if (p[1].revents & POLLIN)
			handle_sig(sfd);
		timers();
		if (p[0].revents & (POLLIN | POLLHUP)) {
			ssize_t r = read(0, line + used, sizeof(line) - 1 - used);
			if (r <= 0)
				return 0; /* stdin closed: exit, pins end */
			used += (size_t)r;
			line[used] = 0;
			for (char *nl; (nl = strchr(line, '\n'));) {
				*nl = 0;
				if (command(line))
					return 0;
				memmove(line, nl + 1, used - (size_t)(nl + 1 - line) + 1);
				used -= (size_t)(nl + 1 - line);
			}
			if (used == sizeof(line) - 1)
				used = 0; /* overlong line: drop it */
		}
	}
}

/* SPDX-License-Identifier: MIT */
/*
 * tests/mount/daxhostile.c -- ordinary programs (no pinfs header, no
 * libpinfs) doing what real programs do to files and mappings behind the
 * back of an LD_PRELOAD library: mremap, MAP_FIXED over a mapping, fork
 * and exit, freopen, raw close, shared descriptions. tests/mount/
 * test_dax_hostile.py runs them under pinfs-dax (some plainly too).
 * One subcommand per run; the last stdout line is the result, which the
 * test asserts on; exit 0 unless the set-up itself failed (exit 2).
 *
 *   mremap DIR             A (64 KiB 'A', the mount's first file), B (4 MiB
 *                          'B'), L0..L63 (64 KiB 'L'); A mapped MAP_SHARED
 *                          and grown with mremap(MREMAP_MAYMOVE) to 16 MiB;
 *                          a load from each page past EOF, and a store
 *                          where it gave SIGBUS: "pages N loadbus N
 *                          storebus N nonzero N head OK|BAD"
 *   fixed DIR MODE         A and B (1 MiB of 'A' / 'B'); A mapped at X, then
 *                          MODE: anon-all | file-all | anon-part | file-part |
 *                          unmap-part (anonymous memory, or B, MAP_FIXED over
 *                          all of X or its first 256 KiB; unmap-part: munmap
 *                          of those first, then anonymous memory there).
 *                          Says "ready", waits for a line (the test truncates
 *                          A to 512 KiB), waits until a second mapping of A
 *                          (and what is left of the first) gives SIGBUS
 *                          past 512 KiB, then: "replaced BAD rest_a N
 *                          rest_bus N rest_other N" (BAD: pages of the
 *                          replaced part not wholly 'M' / 'B')
 *   mmaploop DIR N         N times: map DIR/A (1 MiB) MAP_SHARED PROT_READ,
 *                          2 passes of loads ('A', 0 or SIGBUS), look for a
 *                          PROT_NONE piece of it in /proc/self/maps, unmap:
 *                          "ok maps N" or "FAIL ..."
 *   mutator DIR            (plain) says "ready", then until SIGTERM: cut
 *                          DIR/A to 512 KiB and write its second half
 *                          again: "cycles N"
 *   reopen DIR HOW         A and B (64 KiB 'A' / 'B'); A opened, read and
 *                          written (served), then B reaches the same fd
 *                          number by HOW: freopen (the FILE of A's fd
 *                          freopen()ed on B), fopen / open2 (__open_2) /
 *                          scm (received by SCM_RIGHTS) after A's fd was
 *                          closed with syscall(SYS_close); pread of byte
 *                          100 then pwrite "W" at 100 through the new fd:
 *                          "samefd 0|1 pread C wrote N"
 *   forkmap DIR HOW        A (1 MiB 'A') mapped MAP_SHARED; a child that
 *                          exit()s (HOW exit) or execv()s /bin/true (exec);
 *                          "ready", waits for a line (the test rewrites A
 *                          with 'N'), then loads until the mapping shows
 *                          'N' everywhere (10 s at most), stores 'S' at
 *                          4096 and msyncs: "N n A n zero n bus n"
 *   mmapgrow FILE          4 KiB of 'a', 1 MiB mapped, ftruncate to 1 MiB,
 *                          store 'z' at 512 KiB, pread it: "ok" | "SIGBUS" |
 *                          "pread C"
 *   forkshare FILE         8 MiB of '.', one O_WRONLY fd shared by fork;
 *                          parent and child write() 1024 blocks of 4 KiB
 *                          ('P' / 'C') at once: "P n C n dot n"
 *   forkappend FILE        64 KiB of 'a'; O_WRONLY fd shared with a child
 *                          that sets O_APPEND on it; the parent write()s
 *                          4 KiB of 'b': "size N"
 *   mixmap FILE            maps FILE (64 KiB) MAP_SHARED; commands on
 *                          stdin, one answer line each: "s C OFF" store,
 *                          "l OFF" load, "r OFF" pread, "m" msync(MS_SYNC)
 *   mtime FILE HOW         pwrite 4 MiB, then set the times to 2020-01-01
 *                          with futimens (HOW futimens) or utimensat by
 *                          path (utimensat), then close: "ok"; HOW atime:
 *                          the 4 MiB, then its first 2 MiB written again,
 *                          then futimens of the atime alone (mtime
 *                          UTIME_OMIT), close: "ok NS", NS the realtime
 *                          clock before the second pwrite
 *   lockmap FILE           fcntl write lock on FILE; 20 shared mappings of
 *                          it made and unmapped, then one unmapped in
 *                          part, "ready", a line, the rest unmapped,
 *                          "ready", a line, "ok"
 *   trimleak FILE          writer and reader fds; 1 MiB written through
 *                          the writer, which is closed first: "ok"
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MIB (1L << 20)
#define PG 4096L

static sigjmp_buf jb;
static volatile sig_atomic_t nbus;

static void on_bus(int s)
{
	(void)s;
	nbus++;
	siglongjmp(jb, 1);
}

static void catch_bus(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_bus;
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGBUS, &sa, NULL);
}

/* 1 if a load of @p gives SIGBUS, else 0 with the byte in *c */
static int load(volatile const char *p, char *c)
{
	if (sigsetjmp(jb, 1))
		return 1;
	*c = *p;
	return 0;
}

static int store(volatile char *p, char c)
{
	if (sigsetjmp(jb, 1))
		return 1;
	*p = c;
	return 0;
}

static void die(const char *what)
{
	printf("SETUP %s: %s\n", what, strerror(errno));
	exit(2);
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* @path made of @n bytes @c, in one write() */
static void mk(const char *path, char c, size_t n)
{
	char *b = malloc(n);
	int fd;

	if (!b)
		die("malloc");
	memset(b, c, n);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, b, n) != (ssize_t)n || close(fd))
		die(path);
	free(b);
}

static int open_or_die(const char *path, int flags)
{
	int fd = open(path, flags, 0644);

	if (fd < 0)
		die(path);
	return fd;
}

static char *join(const char *dir, const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s", dir, name) < 0)
		die("asprintf");
	return p;
}

/* "ready", then wait for the test's line on stdin */
static void handshake(void)
{
	char line[64];

	printf("ready\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		die("stdin");
}

/* ------------------------------------------------------------------ mremap */

static int cmd_mremap(const char *dir)
{
	char *a = join(dir, "A");
	long pages = 0, loadbus = 0, storebus = 0, nonzero = 0;
	int head_ok = 1;
	char name[16];

	mk(a, 'A', 64 << 10);   /* one write under 256 KiB: no preallocation */
	mk(join(dir, "B"), 'B', 4 * MIB);
	for (int i = 0; i < 64; i++) {
		snprintf(name, sizeof(name), "L%d", i);
		mk(join(dir, name), 'L', 64 << 10);
	}
	int fd = open_or_die(a, O_RDWR);
	char *p = mmap(NULL, 64 << 10, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die("mmap");
	for (long i = 0; i < (64 << 10); i++)
		head_ok &= p[i] == 'A';
	volatile char *q = mremap(p, 64 << 10, 16 * MIB, MREMAP_MAYMOVE);
	if (q == MAP_FAILED)
		die("mremap");
	catch_bus();
	for (long i = 64 << 10; i < 16 * MIB; i += PG) {
		char c = 0;
		pages++;
		if (load(q + i, &c)) {
			loadbus++;
			/* a store where the load found the pool (past the
			 * file's blocks: other files, the pool's metadata)
			 * would wreck it: only where the load failed */
			storebus += store(q + i + 17, 'Z');
		} else {
			int nz = 0;
			for (long k = 0; k < PG; k++)
				nz |= q[i + k] != 0;
			nonzero += nz;
		}
	}
	for (long i = 0; i < (64 << 10); i++)
		head_ok &= q[i] == 'A';
	printf("pages %ld loadbus %ld storebus %ld nonzero %ld head %s\n", pages, loadbus,
	       storebus, nonzero, head_ok ? "OK" : "BAD");
	return 0;
}

/* ------------------------------------------------------------------- fixed */

/* Whether a load at @p gives SIGBUS within 10 s (a truncate's revocation
 * is handled by the library's thread, after the truncate returned) */
static int wait_bus(volatile const char *p)
{
	double end = now() + 10;
	char c;

	do {
		if (load(p, &c))
			return 1;
		usleep(1000);
	} while (now() < end);
	return 0;
}

static int cmd_fixed(const char *dir, const char *mode)
{
	char *a = join(dir, "A"), *b = join(dir, "B");
	int part = strstr(mode, "-part") != NULL, file = !strncmp(mode, "file", 4);
	long rlen = part ? 256 << 10 : MIB, bad = 0, rest_a = 0, rest_bus = 0, rest_other = 0;
	char want = file ? 'B' : 'M', c;

	mk(a, 'A', MIB);
	mk(b, 'B', MIB);
	int fa = open_or_die(a, O_RDWR), fb = open_or_die(b, O_RDWR);
	char *x = mmap(NULL, MIB, PROT_READ | PROT_WRITE, MAP_SHARED, fa, 0);
	/* the witness: it gives SIGBUS past the new EOF once the library
	 * has handled the truncate */
	volatile char *w = mmap(NULL, MIB, PROT_READ, MAP_SHARED, fa, 0);
	if (x == MAP_FAILED || w == MAP_FAILED)
		die("mmap A");
	if (x[0] != 'A' || x[MIB - 1] != 'A' || w[0] != 'A')
		die("A's bytes");
	if (!strcmp(mode, "unmap-part") && munmap(x, rlen))
		die("munmap");
	void *y = file ? mmap(x, rlen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fb, 0)
		       : mmap(x, rlen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
			      -1, 0);
	if (y != x)
		die("mmap MAP_FIXED");
	if (!file)
		memset(y, 'M', rlen);
	handshake();
	catch_bus();
	if (!wait_bus(w + 768 * 1024) || (part && !wait_bus(x + 768 * 1024))) {
		printf("FAIL no SIGBUS past the new EOF of A's mappings within 10 s\n");
		return 0;
	}
	munmap((void *)w, MIB);
	usleep(20000);   /* the library's revocation pass may still run */
	for (long i = 0; i < rlen; i += PG) {
		if (load(x + i, &c)) {
			bad++;
			continue;
		}
		for (long k = 0; k < PG; k++)
			if (x[i + k] != want) {
				bad++;
				break;
			}
	}
	for (long i = rlen; i < MIB; i += PG) {
		if (load(x + i, &c))
			rest_bus++;
		else if (c == 'A' && i < 512 * 1024)
			rest_a++;
		else
			rest_other++;
	}
	printf("replaced %ld rest_a %ld rest_bus %ld rest_other %ld\n", bad, rest_a, rest_bus,
	       rest_other);
	return 0;
}

/* ---------------------------------------------------------------- mmaploop */

static volatile const unsigned char *seg_base;
static volatile long seg_maps;

static void on_segv(int s, siginfo_t *si, void *u)
{
	char line[512];
	FILE *f;

	(void)s;
	(void)u;
	printf("FAIL SIGSEGV at offset %ld of the mapping after %ld maps",
	       (long)((const char *)si->si_addr - (const char *)seg_base), (long)seg_maps);
	f = fopen("/proc/self/maps", "r");
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && hi > (unsigned long)seg_base &&
		    lo < (unsigned long)seg_base + MIB) {
			line[strcspn(line, "\n")] = 0;
			printf("; %s", line);
		}
	}
	printf("\n");
	fflush(stdout);
	_exit(0);
}

/* a PROT_NONE piece of [p, p + len) in /proc/self/maps */
static int prot_none(const volatile void *p, size_t len)
{
	char line[512], perms[8];
	FILE *f = fopen("/proc/self/maps", "r");
	int found = 0;

	while (f && fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && hi > (unsigned long)p &&
		    lo < (unsigned long)p + len && !strncmp(perms, "---", 3))
			found = 1;
	}
	if (f)
		fclose(f);
	return found;
}

static int cmd_mmaploop(const char *dir, long n)
{
	char *a = join(dir, "A");
	int fd = open_or_die(a, O_RDONLY);
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGSEGV, &sa, NULL);
	catch_bus();
	for (long m = 0; m < n; m++) {
		volatile const unsigned char *p = mmap(NULL, MIB, PROT_READ, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			die("mmap");
		seg_base = p;
		seg_maps = m;
		for (volatile int k = 0; k < 2; k++) {
			if (sigsetjmp(jb, 1))
				continue;
			for (long i = 0; i < MIB; i += 512) {
				unsigned char c = p[i];
				if (c != 'A' && c != 0) {
					printf("FAIL byte %#x at %ld\n", c, i);
					return 0;
				}
			}
		}
		if (prot_none(p, MIB)) {
			printf("FAIL a PROT_NONE piece of the mapping after %ld maps\n", m);
			return 0;
		}
		munmap((void *)p, MIB);
	}
	printf("ok maps %ld\n", n);
	return 0;
}

static volatile sig_atomic_t stop;

static void on_term(int s)
{
	(void)s;
	stop = 1;
}

static void catch_term(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
}

static int cmd_mutator(const char *dir)
{
	static char buf[MIB];
	int fd = open_or_die(join(dir, "A"), O_RDWR);
	long cycles = 0;

	catch_term();
	memset(buf, 'A', MIB);
	printf("ready\n");
	fflush(stdout);
	while (!stop) {
		if (ftruncate(fd, MIB / 2))
			die("ftruncate");
		if (pwrite(fd, buf, MIB / 2, MIB / 2) != MIB / 2)
			die("pwrite");
		cycles++;
	}
	printf("cycles %ld\n", cycles);
	return 0;
}

/* ------------------------------------------------------------------ reopen */

extern int __open_2(const char *, int);

static int cmd_reopen(const char *dir, const char *how)
{
	char *a = join(dir, "A"), *b = join(dir, "B"), c = 0;
	int sv[2] = { -1, -1 }, sent = -1, fb = -1;
	FILE *fp = NULL;

	mk(a, 'A', 64 << 10);
	mk(b, 'B', 64 << 10);
	if (!strcmp(how, "scm") && socketpair(AF_UNIX, SOCK_DGRAM, 0, sv))
		die("socketpair");
	int fa = open_or_die(a, O_RDWR);
	/* served from the pool, for reading and writing */
	if (pread(fa, &c, 1, 100) != 1 || c != 'A' || pwrite(fa, "A", 1, 0) != 1)
		die("A's first I/O");
	if (!strcmp(how, "scm"))
		sent = open_or_die(b, O_RDWR);
	if (!strcmp(how, "freopen")) {
		/* glibc closes A's fd and opens B on it with its own calls */
		FILE *fa_fp = fdopen(fa, "r+");
		if (!fa_fp || !(fp = freopen(b, "r+", fa_fp)))
			die("freopen");
		fb = fileno(fp);
	} else {
		if (syscall(SYS_close, fa))
			die("SYS_close");
		if (!strcmp(how, "fopen")) {
			if (!(fp = fopen(b, "r+")))
				die("fopen");
			fb = fileno(fp);
		} else if (!strcmp(how, "open2")) {
			fb = __open_2(b, O_RDWR); /* the fortified open() */
		} else if (!strcmp(how, "scm")) {
			char cb[CMSG_SPACE(sizeof(int))], d = 0;
			struct iovec v = { &d, 1 };
			struct msghdr m = { .msg_iov = &v, .msg_iovlen = 1, .msg_control = cb,
					    .msg_controllen = sizeof(cb) };
			struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &sent, sizeof(int));
			if (sendmsg(sv[0], &m, 0) != 1)
				die("sendmsg");
			close(sent);
			struct msghdr r = { .msg_iov = &v, .msg_iovlen = 1, .msg_control = cb,
					    .msg_controllen = sizeof(cb) };
			if (recvmsg(sv[1], &r, 0) != 1 || !CMSG_FIRSTHDR(&r))
				die("recvmsg");
			memcpy(&fb, CMSG_DATA(CMSG_FIRSTHDR(&r)), sizeof(int));
		} else {
			errno = EINVAL;
			die(how);
		}
	}
	if (fb < 0)
		die("B's fd");
	c = 0;
	if (pread(fb, &c, 1, 100) != 1)
		die("pread");
	ssize_t n = pwrite(fb, "W", 1, 100);
	printf("samefd %d pread %c wrote %zd\n", fb == fa, c, n);
	return 0;
}

/* ----------------------------------------------------------------- forkmap */

static int cmd_forkmap(const char *dir, const char *how)
{
	char *a = join(dir, "A");
	long n[256] = { 0 }, bus = 0;
	char c;
	int st;

	mk(a, 'A', MIB);
	int fd = open_or_die(a, O_RDWR);
	volatile char *p = mmap(NULL, MIB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die("mmap");
	if (p[0] != 'A')
		die("A's bytes");
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		if (!strcmp(how, "exec")) {
			char *av[] = { "true", NULL };
			execv("/bin/true", av);
			_exit(127);
		}
		exit(0);
	}
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
		die("child");
	handshake();
	catch_bus();
	double end = now() + 10;
	do {
		memset(n, 0, sizeof(n));
		bus = 0;
		for (long i = 0; i < MIB; i += PG) {
			if (load(p + i, &c))
				bus++;
			else
				n[(unsigned char)c]++;
		}
		if (n['N'] == MIB / PG)
			break;
		usleep(10000);
	} while (now() < end);
	if (n['N'] == MIB / PG && (store(p + 4096, 'S') || msync((void *)p, MIB, MS_SYNC)))
		die("store");
	printf("N %ld A %ld zero %ld bus %ld\n", n['N'], n['A'], n[0], bus);
	return 0;
}

/* ---------------------------------------------------------------- mmapgrow */

static int cmd_mmapgrow(const char *path)
{
	char buf[4096], c = 0;
	int fd = open_or_die(path, O_RDWR | O_CREAT | O_TRUNC);

	memset(buf, 'a', sizeof(buf));
	if (write(fd, buf, sizeof(buf)) != sizeof(buf))
		die("write");
	volatile char *p = mmap(NULL, MIB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die("mmap");
	if (ftruncate(fd, MIB))
		die("ftruncate");
	catch_bus();
	if (store(p + 512 * 1024, 'z')) {
		printf("SIGBUS\n");
		return 0;
	}
	if (pread(fd, &c, 1, 512 * 1024) != 1 || c != 'z') {
		printf("pread %c\n", c);
		return 0;
	}
	printf("ok\n");
	return 0;
}

/* --------------------------------------------------------------- forkshare */

static int cmd_forkshare(const char *path)
{
	enum { NB = 1024 };
	static char buf[2 * NB * 4096];
	char blk[4096], go;
	int n[256] = { 0 }, st, pfd[2];

	mk(path, '.', sizeof(buf));
	int fd = open_or_die(path, O_WRONLY);
	if (pipe(pfd))
		die("pipe");
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	memset(blk, pid == 0 ? 'C' : 'P', sizeof(blk));
	/* both at once: the child starts when the parent does */
	if (pid == 0 ? read(pfd[0], &go, 1) != 1 : write(pfd[1], "g", 1) != 1)
		die("pipe");
	for (int i = 0; i < NB; i++)
		if (write(fd, blk, sizeof(blk)) != sizeof(blk)) {
			if (pid == 0)
				_exit(1);
			die("write");
		}
	if (pid == 0)
		_exit(0);
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
		die("child");
	int rfd = open_or_die(path, O_RDONLY);
	if (pread(rfd, buf, sizeof(buf), 0) != sizeof(buf))
		die("pread");
	for (int i = 0; i < 2 * NB; i++)
		n[(unsigned char)buf[i * 4096]]++;
	printf("P %d C %d dot %d\n", n['P'], n['C'], n['.']);
	return 0;
}

/* -------------------------------------------------------------- forkappend */

static int cmd_forkappend(const char *path)
{
	char buf[4096];
	struct stat sb;
	int st;

	mk(path, 'a', 64 << 10);
	int fd = open_or_die(path, O_WRONLY);
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_APPEND);
		_exit(0);
	}
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
		die("child");
	memset(buf, 'b', sizeof(buf));
	if (write(fd, buf, sizeof(buf)) != sizeof(buf))
		die("write");
	if (fstat(fd, &sb))
		die("fstat");
	printf("size %lld\n", (long long)sb.st_size);
	return 0;
}

/* ------------------------------------------------------------------ mixmap */

static int cmd_mixmap(const char *path)
{
	char line[64];
	int fd = open_or_die(path, O_RDWR);
	volatile char *p = mmap(NULL, 64 << 10, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	if (p == MAP_FAILED)
		die("mmap");
	printf("mapped\n");
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin)) {
		char c = 0;
		long off;
		if (sscanf(line, "s %c %ld", &c, &off) == 2) {
			p[off] = c;
			printf("ok\n");
		} else if (sscanf(line, "l %ld", &off) == 1) {
			printf("%c\n", p[off]);
		} else if (sscanf(line, "r %ld", &off) == 1) {
			if (pread(fd, &c, 1, off) != 1)
				die("pread");
			printf("%c\n", c);
		} else if (line[0] == 'm') {
			printf("%d\n", msync((void *)p, 64 << 10, MS_SYNC));
		} else {
			printf("?\n");
		}
		fflush(stdout);
	}
	munmap((void *)p, 64 << 10);
	close(fd);
	return 0;
}

/* ------------------------------------------------------------------- mtime */

static int cmd_mtime(const char *path, const char *how)
{
	static char buf[4 * MIB];
	/* 2020-01-01 00:00:00 UTC */
	struct timespec ts[2] = { { 1577836800, 0 }, { 1577836800, 0 } };
	int fd = open_or_die(path, O_RDWR | O_CREAT | O_TRUNC);

	struct timespec wrote;

	memset(buf, 't', sizeof(buf));
	if (pwrite(fd, buf, sizeof(buf), 0) != sizeof(buf))
		die("pwrite");
	/* then an overwrite inside the size: no size change tells the daemon
	 * (an append's does), and pinfs-dax stamps at most every 100 ms, so
	 * this one is owed a stamp at close */
	clock_gettime(CLOCK_REALTIME, &wrote);
	if (!strcmp(how, "atime") && pwrite(fd, buf, sizeof(buf) / 2, 0) != sizeof(buf) / 2)
		die("pwrite");
	if (!strcmp(how, "atime")) /* the atime only: mtime stays to be set */
		ts[1].tv_nsec = UTIME_OMIT;
	if (!strcmp(how, "utimensat") ? utimensat(AT_FDCWD, path, ts, 0) : futimens(fd, ts))
		die(how);
	if (close(fd))
		die("close");
	if (!strcmp(how, "atime"))
		printf("ok %lld\n", (long long)wrote.tv_sec * 1000000000ll + wrote.tv_nsec);
	else
		printf("ok\n");
	return 0;
}

/* ---------------------------------------------------------------- lockmap */

/* An fcntl write lock on all of FILE (1 MiB), then a shared mapping of it
 * that is unmapped in part, then in whole: "ready" after each (the test
 * checks the lock is still held), "ok" at the end. */
static int cmd_lockmap(const char *path)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	char line[64];
	int fd = open_or_die(path, O_RDWR);
	char *p;

	if (fcntl(fd, F_SETLK, &fl))
		die("F_SETLK");
	for (int i = 0; i < 20; i++) { /* map, store, unmap: more than it parks */
		p = mmap(NULL, MIB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			die("mmap");
		p[4096] = 'y';
		if (munmap(p, MIB))
			die("munmap");
	}
	p = mmap(NULL, MIB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die("mmap");
	p[0] = 'x';
	if (munmap(p, (256 << 10)))
		die("munmap part");
	printf("ready\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		die("stdin");
	if (munmap(p + (256 << 10), MIB - (256 << 10)))
		die("munmap rest");
	printf("ready\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		die("stdin");
	printf("ok\n");
	return 0;
}

/* ---------------------------------------------------------------- trimleak */

static int cmd_trimleak(const char *path)
{
	static char b[MIB];
	int w = open_or_die(path, O_RDWR | O_CREAT | O_TRUNC);
	int r = open_or_die(path, O_RDONLY);

	memset(b, 'x', sizeof(b));
	if (write(w, b, sizeof(b)) != sizeof(b))
		die("write");
	if (close(w) || close(r))
		die("close");
	printf("ok\n");
	return 0;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "";

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(cmd, "mremap") && argc == 3)
		return cmd_mremap(argv[2]);
	if (!strcmp(cmd, "fixed") && argc == 4)
		return cmd_fixed(argv[2], argv[3]);
	if (!strcmp(cmd, "mmaploop") && argc == 4)
		return cmd_mmaploop(argv[2], atol(argv[3]));
	if (!strcmp(cmd, "mutator") && argc == 3)
		return cmd_mutator(argv[2]);
	if (!strcmp(cmd, "reopen") && argc == 4)
		return cmd_reopen(argv[2], argv[3]);
	if (!strcmp(cmd, "forkmap") && argc == 4)
		return cmd_forkmap(argv[2], argv[3]);
	if (!strcmp(cmd, "mmapgrow") && argc == 3)
		return cmd_mmapgrow(argv[2]);
	if (!strcmp(cmd, "forkshare") && argc == 3)
		return cmd_forkshare(argv[2]);
	if (!strcmp(cmd, "forkappend") && argc == 3)
		return cmd_forkappend(argv[2]);
	if (!strcmp(cmd, "mixmap") && argc == 3)
		return cmd_mixmap(argv[2]);
	if (!strcmp(cmd, "mtime") && argc == 4)
		return cmd_mtime(argv[2], argv[3]);
	if (!strcmp(cmd, "lockmap") && argc == 3)
		return cmd_lockmap(argv[2]);
	if (!strcmp(cmd, "trimleak") && argc == 3)
		return cmd_trimleak(argv[2]);
	fprintf(stderr, "usage: daxhostile COMMAND ARGS (see the source)\n");
	return 2;
}

/* SPDX-License-Identifier: MIT */
/*
 * tests/fsx/fsx.c -- random-operation exerciser for a mounted file system.
 *
 * In the spirit of the classic fsx from xfstests, written from scratch for
 * pinfs. It drives nfiles files, DIR/fsx.0 ... fsx.N-1, through plain POSIX
 * calls and keeps an in-memory model of each (maxlen bytes and a size).
 * Every operation is applied to the file and to the model: pwrite (also past
 * EOF, leaving holes), pread, ftruncate up and down, fallocate (mode 0,
 * KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE with and without KEEP_SIZE), mmap
 * (MAP_SHARED) read and write, rename over another file, RENAME_EXCHANGE,
 * fsync/fdatasync, close+reopen, open(O_TRUNC) and SEEK_DATA/SEEK_HOLE.
 * After each operation fstat and stat must agree with the model; reads,
 * mappings and holes are compared with it. Optional features the file
 * system lacks (fallocate modes, RENAME_EXCHANGE, mmap) are switched off
 * with a note; any other error or difference prints the last 50 operations
 * and fails.
 *
 * With -R K, every K operations all files are fsynced and closed, the -c
 * command runs (say, unmount and mount pinfs again), and the files are
 * reopened and compared in full with the model, as they are at the end.
 * A run depends only on the seed (private splitmix64 PRNG) and on which
 * optional features the file system has, so -S replays a failure. The files
 * are left in DIR. Exit status: 0 ok, 1 mismatch or error, 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/falloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

#define LOG_SIZE 50 /* operations kept for the failure report */
#define MAX_FILES 64
#define MAX_MAXLEN (1LL << 30) /* the model lives in memory */
#define BLK 4096 /* alignment used to bias offsets and lengths */
#define LL(x) ((long long)(x))
#define MIN(a, b) ((a) < (b) ? (a) : (b)) /* no side effects in a, b */
#define set_note(...) snprintf(cur->note, sizeof(cur->note), __VA_ARGS__)

enum op {
	OP_WRITE, OP_READ, OP_TRUNCATE, OP_PUNCH, OP_ZERO, OP_ZERO_KEEP,
	OP_ALLOC, OP_ALLOC_KEEP, OP_MAPREAD, OP_MAPWRITE, OP_RENAME,
	OP_EXCHANGE, OP_FSYNC, OP_REOPEN, OP_OPEN_TRUNC, OP_SEEK,
	OP_REMOUNT, /* not drawn at random; logged by remount() */
	OP_COUNT
};

static const struct {
	const char *name;
	int weight; /* relative frequency; 0 = never drawn */
	bool pure; /* leaves contents and sizes alone: not flagged on failure */
	int mode; /* fallocate mode of the fallocate operations */
} op_info[OP_COUNT] = {
	[OP_WRITE] = { "write", 20 },
	[OP_READ] = { "read", 15, true },
	[OP_TRUNCATE] = { "truncate", 8 },
	[OP_PUNCH] = { "punch_hole", 5, false,
		       FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE },
	[OP_ZERO] = { "zero_range", 3, false, FALLOC_FL_ZERO_RANGE },
	[OP_ZERO_KEEP] = { "zero_range_keep", 2, false,
			   FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE },
	[OP_ALLOC] = { "falloc", 2, false, 0 },
	[OP_ALLOC_KEEP] = { "falloc_keep", 2, false, FALLOC_FL_KEEP_SIZE },
	[OP_MAPREAD] = { "mapread", 5, true },
	[OP_MAPWRITE] = { "mapwrite", 5 },
	[OP_RENAME] = { "rename", 1 },
	[OP_EXCHANGE] = { "exchange", 1 },
	[OP_FSYNC] = { "fsync", 2, true },
	[OP_REOPEN] = { "reopen", 2, true },
	[OP_OPEN_TRUNC] = { "open_trunc", 1 },
	[OP_SEEK] = { "seek", 5, true },
	[OP_REMOUNT] = { "remount", 0, true },
};

/* One test file: the descriptor and what its contents must be. */
struct tfile {
	int fd;
	unsigned char *model; /* maxlen bytes; bytes at and past size are 0 */
	off_t size; /* expected st_size */
};

/* One entry of the operation log printed on failure. */
struct logent {
	unsigned long n; /* operation number, from 1 */
	enum op op;
	int f, f2; /* file index; second file for rename/exchange, or -1 */
	off_t off, len; /* range (truncate: off is the new size) */
	off_t size_before, size_after; /* size of f; after is -1 if unfinished */
	char note[64];
};

static struct {
	const char *dir;
	unsigned long numops;
	uint64_t seed;
	off_t maxlen;
	unsigned long remount_every;
	const char *remount_cmd;
	int nfiles;
	bool verbose;
} cfg = { .numops = 10000, .maxlen = 4LL << 20, .nfiles = 4 };

static int dir_fd = -1;
static struct tfile files[MAX_FILES];
static uint64_t rng_state;
static unsigned long opnum, remounts;
static bool disabled[OP_COUNT];
static struct logent oplog[LOG_SIZE];
static unsigned long nlogged;
static struct logent *cur; /* entry of the operation in progress */
static unsigned char *wbuf, *rbuf; /* maxlen bytes each */
static long pagesz;
static const unsigned char zeroes[65536];

/* ---- PRNG: splitmix64, so that a seed means the same run everywhere ---- */

static uint64_t rnd(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* A number in [0, n), or 0 if n <= 0. */
static off_t rnd_below(off_t n)
{
	return n > 0 ? (off_t)(rnd() % (uint64_t)n) : 0;
}

/* ---- failure reporting ---- */

static const char *fname(int i)
{
	static char names[MAX_FILES][16];

	snprintf(names[i], sizeof(names[i]), "fsx.%d", i);
	return names[i];
}

static void print_logent(FILE *fp, const struct logent *e, int mark_f,
			 off_t mark)
{
	off_t lo = e->size_before, hi = e->size_after;
	bool hit = false;

	if (lo > hi) {
		lo = e->size_after;
		hi = e->size_before;
	}
	if (mark_f >= 0 && !op_info[e->op].pure &&
	    (e->f == mark_f || e->f2 == mark_f))
		hit = (e->len > 0 && mark >= e->off && mark < e->off + e->len) ||
		      (lo >= 0 && mark >= lo && mark < hi) ||
		      e->op == OP_RENAME || e->op == OP_EXCHANGE;
	fprintf(fp, "%c%7lu %-15s %s", hit ? '*' : ' ', e->n,
		op_info[e->op].name, e->f >= 0 ? fname(e->f) : "all");
	if (e->f2 >= 0)
		fprintf(fp, " %s %s", e->op == OP_EXCHANGE ? "<->" : "->",
			fname(e->f2));
	if (e->op == OP_TRUNCATE || e->op == OP_SEEK)
		fprintf(fp, " %s 0x%llx", e->op == OP_SEEK ? "from" : "to",
			LL(e->off));
	else if (e->len > 0)
		fprintf(fp, " 0x%llx..0x%llx (len 0x%llx)", LL(e->off),
			LL(e->off + e->len), LL(e->len));
	if (e->f >= 0 && e->size_after >= 0) /* unfinished: no size after */
		fprintf(fp, " size 0x%llx -> 0x%llx", LL(e->size_before),
			LL(e->size_after));
	if (e->note[0])
		fprintf(fp, " [%s]", e->note);
	fputc('\n', fp);
}

/*
 * Print the operation log and how to replay. With mark_f >= 0, operations
 * on that file that touched byte mark are flagged with '*'.
 */
static void fail_report(int mark_f, off_t mark)
{
	unsigned long n = nlogged < LOG_SIZE ? nlogged : LOG_SIZE;
	unsigned long i;

	fprintf(stderr, "fsx: last %lu operations, oldest first", n);
	if (mark_f >= 0)
		fprintf(stderr, " ('*': changed %s at 0x%llx or moved it)",
			fname(mark_f), LL(mark));
	fputs(":\n", stderr);
	for (i = nlogged - n; i < nlogged; i++)
		print_logent(stderr, &oplog[i % LOG_SIZE], mark_f, mark);
	fprintf(stderr, "fsx: seed %" PRIu64 "; replay with -S and the same options\n",
		cfg.seed);
}

__attribute__((noreturn, format(printf, 1, 2))) static void
die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "fsx: FAIL at op %lu: ", opnum);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fail_report(-1, 0);
	exit(1);
}

/* Fail on a call on file @f (or none: -1) that returned -errno @err. */
__attribute__((noreturn)) static void die_err(int err, const char *call,
					      int f)
{
	die("%s%s%s: %s", call, f >= 0 ? " on " : "", f >= 0 ? fname(f) : "",
	    strerror(-err));
}

/*
 * Compare @len bytes of file @f starting at offset @off; on a difference,
 * report the first differing offset with expected and actual bytes, and fail.
 */
static void check_bytes(int f, off_t off, const unsigned char *want,
			const unsigned char *got, size_t len, const char *what)
{
	size_t i, j, ndiff = 0;

	if (!memcmp(want, got, len))
		return;
	for (i = 0; want[i] == got[i]; i++)
		;
	for (j = i; j < len; j++)
		ndiff += want[j] != got[j];
	fflush(stdout);
	fprintf(stderr, "fsx: FAIL at op %lu: %s: %s differs at offset 0x%llx\n",
		opnum, what, fname(f), LL(off + (off_t)i));
	fprintf(stderr, "fsx: compared 0x%llx..0x%llx, %zu bytes differ\n",
		LL(off), LL(off + (off_t)len), ndiff);
	fputs("fsx: expected:", stderr);
	for (j = i; j < len && j < i + 16; j++)
		fprintf(stderr, " %02x", want[j]);
	fputs("\nfsx: actual:  ", stderr);
	for (j = i; j < len && j < i + 16; j++)
		fprintf(stderr, " %02x", got[j]);
	fputc('\n', stderr);
	fail_report(f, off + (off_t)i);
	exit(1);
}

static void on_sigbus(int sig)
{
	fprintf(stderr, "fsx: FAIL at op %lu: signal %d (%s)\n", opnum, sig,
		strsignal(sig));
	fail_report(-1, 0);
	_exit(1);
}

/* ---- I/O helpers ---- */

/* pread or pwrite all of @len bytes unless EOF; count or -errno. */
static ssize_t io_full(bool wr, int fd, void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		char *p = (char *)buf + done;
		off_t o = off + (off_t)done;
		ssize_t r = wr ? pwrite(fd, p, len - done, o) :
				 pread(fd, p, len - done, o);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return wr ? -EIO : (ssize_t)done;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

#define pread_full(fd, buf, len, off) io_full(false, fd, buf, len, off)
#define pwrite_full(fd, buf, len, off) io_full(true, fd, buf, len, off)

static int open_file(int f, int flags)
{
	int fd = openat(dir_fd, fname(f), O_RDWR | O_CLOEXEC | flags, 0644);

	if (fd < 0)
		die_err(-errno, "open", f);
	return fd;
}

static void close_file(int fd, int f)
{
	if (close(fd) < 0)
		die_err(-errno, "close", f);
}

#define note(fmt, ...) printf("fsx: note: " fmt "\n", __VA_ARGS__)

/* The file system lacks an optional feature: stop drawing @op (and @op2). */
static void disable(enum op op, enum op op2, const char *what, int err)
{
	note("%s fails with %s; disabling %s%s%s", what, strerror(-err),
	     op_info[op].name, op2 != op ? " and " : "",
	     op2 != op ? op_info[op2].name : "");
	disabled[op] = disabled[op2] = true;
	set_note("unsupported");
}

/* ---- the model ---- */

static void model_set_size(struct tfile *t, off_t size)
{
	if (size < t->size)
		memset(t->model + size, 0, (size_t)(t->size - size));
	t->size = size;
}

/* Zero [off, off + len) clipped to the current size. */
static void model_zero_within(struct tfile *t, off_t off, off_t len)
{
	off_t end = MIN(off + len, t->size);

	if (off < end)
		memset(t->model + off, 0, (size_t)(end - off));
}

static void model_grow(struct tfile *t, off_t end)
{
	if (end > t->size)
		t->size = end; /* the model is already zero there */
}

/* First offset in [off, end) where the model is nonzero, or -1. */
static off_t model_first_nonzero(const struct tfile *t, off_t off, off_t end)
{
	while (off < end) {
		size_t n = MIN((size_t)(end - off), sizeof(zeroes));

		if (memcmp(t->model + off, zeroes, n)) {
			while (!t->model[off])
				off++;
			return off;
		}
		off += (off_t)n;
	}
	return -1;
}

/* Fill @len bytes of wbuf with fresh data: random, or now and then zeroes. */
static void fill(size_t len)
{
	size_t i;

	if (rnd_below(20) == 0) {
		memset(wbuf, 0, len);
		set_note("zeroes");
		return;
	}
	for (i = 0; i < len; i += 8) {
		uint64_t v = rnd();

		memcpy(wbuf + i, &v, MIN(len - i, 8));
	}
}

/* ---- choosing offsets and lengths ---- */

/* A length in [1, cap], log-uniform so that most are short; some aligned. */
static off_t rand_len(off_t cap)
{
	int bits = 0;
	off_t lim, len;

	while ((1LL << bits) < cap)
		bits++;
	lim = 1LL << rnd_below(bits + 1);
	lim = MIN(lim, cap);
	len = 1 + rnd_below(lim);
	if (rnd_below(4) == 0)
		len = MIN((len + BLK - 1) & ~(off_t)(BLK - 1), cap);
	return len;
}

static off_t clamp(off_t v, off_t lo, off_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* An offset in [0, limit): anywhere, near EOF or inside; some aligned. */
static off_t rand_off(off_t size, off_t limit)
{
	off_t r = rnd_below(3), off;

	if (r == 0)
		off = rnd_below(limit);
	else if (r == 1)
		off = size + rnd_below(4 * BLK) - 2 * BLK;
	else
		off = rnd_below(size);
	if (rnd_below(4) == 0)
		off &= ~(off_t)(BLK - 1);
	return clamp(off, 0, limit - 1);
}

/*
 * A nonempty range below @limit: maxlen for anywhere (past EOF too), or the
 * size of a nonempty file for inside it. Recorded in the log.
 */
static void pick_range(const struct tfile *t, off_t limit, off_t *off,
		       off_t *len)
{
	*off = cur->off = rand_off(t->size, limit);
	*len = cur->len = rand_len(limit - *off);
	if (*off < 0 || *len < 1 || *off + *len > limit)
		die("internal error: bad range below 0x%llx", LL(limit));
}

/* ---- checks ---- */

/* The file's size and contents through its descriptor equal the model. */
static void verify_file(int f, const char *what)
{
	struct tfile *t = &files[f];
	struct stat st;
	ssize_t r;

	if (fstat(t->fd, &st) < 0)
		die_err(-errno, "fstat", f);
	if (st.st_size != t->size)
		die("%s: %s has size 0x%llx, expected 0x%llx", what, fname(f),
		    LL(st.st_size), LL(t->size));
	r = pread_full(t->fd, rbuf, (size_t)t->size, 0);
	if (r < 0)
		die_err((int)r, "pread", f);
	check_bytes(f, 0, t->model, rbuf, (size_t)r, what);
	if (r != t->size)
		die("%s: short read of %s: 0x%zx of 0x%llx bytes", what,
		    fname(f), r, LL(t->size));
	r = pread_full(t->fd, rbuf, 1, t->size);
	if (r != 0)
		die("%s: %s: read at EOF 0x%llx returned %zd", what, fname(f),
		    LL(t->size), r);
}

static void verify_all(const char *what)
{
	int f;

	for (f = 0; f < cfg.nfiles; f++)
		verify_file(f, what);
}

/*
 * After every operation: each name refers to the inode open in its slot,
 * and both report the model's size.
 */
static void check_stats(void)
{
	struct stat st, nst;
	int f;

	for (f = 0; f < cfg.nfiles; f++) {
		if (fstat(files[f].fd, &st) < 0)
			die_err(-errno, "fstat", f);
		if (fstatat(dir_fd, fname(f), &nst, 0) < 0)
			die_err(-errno, "stat", f);
		if (st.st_ino != nst.st_ino || st.st_dev != nst.st_dev)
			die("%s names inode %llu, but the open file is inode %llu",
			    fname(f), (unsigned long long)nst.st_ino,
			    (unsigned long long)st.st_ino);
		if (st.st_size != files[f].size || nst.st_size != files[f].size)
			die("%s: fstat size 0x%llx, stat size 0x%llx, expected 0x%llx",
			    fname(f), LL(st.st_size), LL(nst.st_size),
			    LL(files[f].size));
	}
}

/* ---- operations; each records its arguments in *cur before acting ---- */

static void do_write(int f)
{
	struct tfile *t = &files[f];
	off_t off, len;
	ssize_t r;

	pick_range(t, cfg.maxlen, &off, &len);
	fill((size_t)len);
	r = pwrite_full(t->fd, wbuf, (size_t)len, off);
	if (r < 0)
		die_err((int)r, "pwrite", f);
	memcpy(t->model + off, wbuf, (size_t)len);
	model_grow(t, off + len);
}

static void do_read(int f)
{
	struct tfile *t = &files[f];
	off_t off, len, want;
	ssize_t r;

	pick_range(t, cfg.maxlen, &off, &len);
	want = off >= t->size ? 0 : MIN(len, t->size - off);
	r = pread_full(t->fd, rbuf, (size_t)len, off);
	if (r < 0)
		die_err((int)r, "pread", f);
	check_bytes(f, off, t->model + off, rbuf, (size_t)MIN(r, want), "pread");
	if (r != want)
		die("pread of %s at 0x%llx len 0x%llx returned 0x%zx, expected 0x%llx",
		    fname(f), LL(off), LL(len), r, LL(want));
}

static void do_truncate(int f)
{
	struct tfile *t = &files[f];
	off_t r = rnd_below(8), size;

	if (r == 0)
		size = 0;
	else if (r < 4) /* a little up or down, mostly not block aligned */
		size = t->size + rnd_below(6 * BLK) - 3 * BLK;
	else
		size = rnd_below(cfg.maxlen + 1);
	if (rnd_below(4) == 0)
		size &= ~(off_t)(BLK - 1);
	size = clamp(size, 0, cfg.maxlen);
	cur->off = size;
	if (ftruncate(t->fd, size) < 0)
		die_err(-errno, "ftruncate", f);
	model_set_size(t, size);
}

static void do_fallocate(int f, enum op op)
{
	struct tfile *t = &files[f];
	off_t off, len;

	pick_range(t, cfg.maxlen, &off, &len);
	if (fallocate(t->fd, op_info[op].mode, off, len) < 0) {
		if (errno != EOPNOTSUPP)
			die_err(-errno, "fallocate", f);
		disable(op, op, "fallocate", -errno);
		return;
	}
	/* KEEP_SIZE modes change nothing past EOF; mode 0 adds zeroes */
	if (op == OP_ZERO)
		memset(t->model + off, 0, (size_t)len);
	if (op == OP_PUNCH || op == OP_ZERO_KEEP)
		model_zero_within(t, off, len);
	if (op == OP_ZERO || op == OP_ALLOC)
		model_grow(t, off + len);
}

/*
 * Read or write a range through a shared mapping. A write first extends the
 * file with ftruncate if needed, since a mapping cannot grow a file.
 */
static void do_mmap(int f, bool wr)
{
	struct tfile *t = &files[f];
	off_t off, len, pgoff;
	size_t maplen;
	unsigned char *p;

	if (!wr && t->size == 0) {
		set_note("skipped: empty");
		return;
	}
	pick_range(t, wr ? cfg.maxlen : t->size, &off, &len);
	if (off + len > t->size) {
		if (ftruncate(t->fd, off + len) < 0)
			die_err(-errno, "ftruncate (mapwrite)", f);
		model_set_size(t, off + len);
	}
	pgoff = off & ~(off_t)(pagesz - 1);
	maplen = (size_t)(off + len - pgoff);
	p = mmap(NULL, maplen, PROT_READ | (wr ? PROT_WRITE : 0), MAP_SHARED,
		 t->fd, pgoff);
	if (p == MAP_FAILED && errno != ENODEV)
		die_err(-errno, "mmap", f);
	if (p == MAP_FAILED) {
		disable(OP_MAPREAD, OP_MAPWRITE, "mmap", -errno);
		return;
	}
	if (wr) {
		fill((size_t)len);
		memcpy(p + (off - pgoff), wbuf, (size_t)len);
		memcpy(t->model + off, wbuf, (size_t)len);
		if (msync(p, maplen, MS_SYNC) < 0)
			die_err(-errno, "msync", f);
	} else {
		check_bytes(f, off, t->model + off, p + (off - pgoff),
			    (size_t)len, "mmap read");
	}
	if (munmap(p, maplen) < 0)
		die_err(-errno, "munmap", f);
}

static int other_file(int f)
{
	int g = (int)rnd_below(cfg.nfiles - 1);

	return g >= f ? g + 1 : g;
}

static void swap_slots(int a, int b)
{
	struct tfile tmp = files[a];

	files[a] = files[b];
	files[b] = tmp;
}

/*
 * rename fsx.f over fsx.g. The replaced file stays readable through its
 * open descriptor until closed; fsx.f is then created anew, empty.
 */
static void do_rename(int f)
{
	int g = other_file(f);

	cur->f2 = g;
	if (renameat(dir_fd, fname(f), dir_fd, fname(g)) < 0)
		die_err(-errno, "rename", f);
	verify_file(g, "replaced file, still open after rename");
	close_file(files[g].fd, g);
	swap_slots(f, g);
	files[f].fd = open_file(f, O_CREAT | O_EXCL);
	model_set_size(&files[f], 0);
}

static void do_exchange(int f)
{
	int g = other_file(f);

	cur->f2 = g;
	if (renameat2(dir_fd, fname(f), dir_fd, fname(g), RENAME_EXCHANGE) < 0) {
		if (errno != EINVAL && errno != EOPNOTSUPP && errno != ENOSYS)
			die_err(-errno, "renameat2(RENAME_EXCHANGE)", f);
		disable(OP_EXCHANGE, OP_EXCHANGE, "RENAME_EXCHANGE", -errno);
		return;
	}
	swap_slots(f, g);
}

static void do_fsync(int f)
{
	bool data = rnd_below(2);

	set_note(data ? "fdatasync" : "fsync");
	if ((data ? fdatasync(files[f].fd) : fsync(files[f].fd)) < 0)
		die_err(-errno, data ? "fdatasync" : "fsync", f);
}

static void do_reopen(int f)
{
	close_file(files[f].fd, f);
	files[f].fd = open_file(f, 0);
}

/* open(O_TRUNC) while the old descriptor is still open, then switch. */
static void do_open_trunc(int f)
{
	int fd = open_file(f, O_TRUNC);

	close_file(files[f].fd, f);
	files[f].fd = fd;
	model_set_size(&files[f], 0);
}

/*
 * SEEK_DATA/SEEK_HOLE sanity, conservative: a file system may report more
 * data than the model has (it need not find every hole), but whatever it
 * calls a hole must be zero in the model and read back as zero, and its
 * answers must agree with each other.
 */
static void do_seek(int f)
{
	struct tfile *t = &files[f];
	off_t off, d, h, e, bad, n;
	ssize_t r;

	if (t->size == 0) {
		if (lseek(t->fd, 0, SEEK_DATA) != -1 || errno != ENXIO)
			die("SEEK_DATA on empty %s did not fail with ENXIO",
			    fname(f));
		return;
	}
	off = rand_off(t->size, t->size);
	cur->off = off;
	d = lseek(t->fd, off, SEEK_DATA);
	if (d < 0 && (errno == EINVAL || errno == EOPNOTSUPP)) {
		disable(OP_SEEK, OP_SEEK, "SEEK_DATA", -errno);
		return;
	}
	if (d < 0 && errno != ENXIO)
		die_err(-errno, "lseek(SEEK_DATA)", f);
	if (d < 0)
		d = t->size; /* no data from off to EOF */
	else if (d < off || d >= t->size)
		die("SEEK_DATA on %s from 0x%llx returned 0x%llx, size 0x%llx",
		    fname(f), LL(off), LL(d), LL(t->size));
	bad = model_first_nonzero(t, off, d);
	if (bad >= 0)
		die("SEEK_DATA on %s from 0x%llx skipped to 0x%llx, but 0x%llx holds data",
		    fname(f), LL(off), LL(d), LL(bad));

	h = lseek(t->fd, off, SEEK_HOLE);
	if (h < 0)
		die_err(-errno, "lseek(SEEK_HOLE)", f);
	set_note("data 0x%llx hole 0x%llx", LL(d), LL(h));
	if (h < off || h > t->size)
		die("SEEK_HOLE on %s from 0x%llx returned 0x%llx, size 0x%llx",
		    fname(f), LL(off), LL(h), LL(t->size));
	if (d > off && h != off)
		die("%s: 0x%llx is in a hole by SEEK_DATA (0x%llx) but SEEK_HOLE says 0x%llx",
		    fname(f), LL(off), LL(d), LL(h));
	if (h == t->size)
		return;

	/* the hole [h, e) must be zero in the model and on reading */
	e = lseek(t->fd, h, SEEK_DATA);
	if (e < 0 && errno != ENXIO)
		die_err(-errno, "lseek(SEEK_DATA)", f);
	if (e < 0)
		e = t->size;
	if (e <= h || e > t->size)
		die("%s: hole at 0x%llx, but SEEK_DATA from there returned 0x%llx",
		    fname(f), LL(h), LL(e));
	bad = model_first_nonzero(t, h, e);
	if (bad >= 0)
		die("%s: SEEK_HOLE reports a hole 0x%llx..0x%llx, but 0x%llx holds data",
		    fname(f), LL(h), LL(e), LL(bad));
	n = MIN(e - h, (off_t)sizeof(zeroes));
	r = pread_full(t->fd, rbuf, (size_t)n, h);
	if (r != n)
		die("pread of hole in %s at 0x%llx returned %zd", fname(f),
		    LL(h), r);
	check_bytes(f, h, zeroes, rbuf, (size_t)n, "hole read");
}

/* ---- driver ---- */

static void log_begin(enum op op, int f)
{
	cur = &oplog[nlogged++ % LOG_SIZE];
	*cur = (struct logent){ .n = opnum, .op = op, .f = f, .f2 = -1,
				.size_before = f >= 0 ? files[f].size : 0,
				.size_after = -1 };
}

static void log_end(void)
{
	if (cur->f >= 0)
		cur->size_after = files[cur->f].size;
	if (cfg.verbose)
		print_logent(stdout, cur, -1, 0);
}

static enum op pick_op(void)
{
	int total = 0, r, o;

	for (o = 0; o < OP_COUNT; o++)
		if (!disabled[o])
			total += op_info[o].weight;
	r = (int)rnd_below(total);
	for (o = 0; o < OP_COUNT; o++) {
		if (disabled[o])
			continue;
		if (r < op_info[o].weight)
			break;
		r -= op_info[o].weight;
	}
	return (enum op)o;
}

static void do_op(void)
{
	int f = (int)rnd_below(cfg.nfiles);
	enum op op = pick_op();

	log_begin(op, f);
	switch (op) {
	case OP_WRITE: do_write(f); break;
	case OP_READ: do_read(f); break;
	case OP_TRUNCATE: do_truncate(f); break;
	case OP_PUNCH:
	case OP_ZERO:
	case OP_ZERO_KEEP:
	case OP_ALLOC:
	case OP_ALLOC_KEEP: do_fallocate(f, op); break;
	case OP_MAPREAD: do_mmap(f, false); break;
	case OP_MAPWRITE: do_mmap(f, true); break;
	case OP_RENAME: do_rename(f); break;
	case OP_EXCHANGE: do_exchange(f); break;
	case OP_FSYNC: do_fsync(f); break;
	case OP_REOPEN: do_reopen(f); break;
	case OP_OPEN_TRUNC: do_open_trunc(f); break;
	case OP_SEEK: do_seek(f); break;
	default: die("internal error: op %d", op);
	}
	log_end();
}

static void open_dir(void)
{
	dir_fd = open(cfg.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir_fd < 0)
		die("open %s: %s", cfg.dir, strerror(errno));
}

/* fsync and close everything, run the remount command, reopen, verify. */
static void remount(void)
{
	int f, st;

	log_begin(OP_REMOUNT, -1);
	for (f = 0; f < cfg.nfiles; f++) {
		if (fsync(files[f].fd) < 0)
			die_err(-errno, "fsync", f);
		close_file(files[f].fd, f);
		files[f].fd = -1;
	}
	if (close(dir_fd) < 0)
		die_err(-errno, "close dir", -1);
	dir_fd = -1;
	if (cfg.remount_cmd) {
		fflush(NULL);
		st = system(cfg.remount_cmd);
		if (st == -1)
			die_err(-errno, "system", -1);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			die("remount command '%s' failed (wait status 0x%x)",
			    cfg.remount_cmd, st);
	}
	open_dir();
	for (f = 0; f < cfg.nfiles; f++)
		files[f].fd = open_file(f, 0);
	remounts++;
	log_end();
	verify_all("after remount");
}

static void usage(void)
{
	fprintf(stderr,
		"usage: fsx [-N numops] [-S seed] [-l maxlen] [-R remount_every]\n"
		"           [-c remount_cmd] [-n nfiles] [-v] DIR\n"
		"  -N  operations to run (default 10000)\n"
		"  -S  PRNG seed (default: from the clock; always printed)\n"
		"  -l  maximum file size, k/m/g suffixes allowed (default 4m)\n"
		"  -R  every this many operations: fsync, close, run -c, reopen\n"
		"      and verify all files (default 0: never)\n"
		"  -c  shell command run for each -R cycle; must exit 0\n"
		"  -n  number of files, 1..%d (default 4)\n"
		"  -v  print every operation\n",
		MAX_FILES);
	exit(2);
}

/* Parse a number in [min, max], with k/m/g suffixes if @suffix; or usage. */
static uint64_t num_arg(const char *s, bool suffix, uint64_t min, uint64_t max)
{
	const char *units = "kmg", *u;
	char *end;
	unsigned long long v;
	int shift = 0;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (suffix && *end && (u = strchr(units, *end | 0x20))) {
		shift = 10 * (int)(u - units + 1);
		end++;
	}
	if (*s == '-' || errno || end == s || *end || v > (max >> shift) ||
	    v << shift < min)
		usage();
	return (uint64_t)v << shift;
}

static void parse_args(int argc, char **argv)
{
	int c;

	while ((c = getopt(argc, argv, "N:S:l:R:c:n:vh")) != -1) {
		switch (c) {
		case 'N':
			cfg.numops = num_arg(optarg, false, 0, ULONG_MAX);
			break;
		case 'S':
			cfg.seed = num_arg(optarg, false, 0, UINT64_MAX);
			break;
		case 'l':
			cfg.maxlen = (off_t)num_arg(optarg, true, 1, MAX_MAXLEN);
			break;
		case 'R':
			cfg.remount_every = num_arg(optarg, false, 0, ULONG_MAX);
			break;
		case 'c':
			cfg.remount_cmd = optarg;
			break;
		case 'n':
			cfg.nfiles = (int)num_arg(optarg, false, 1, MAX_FILES);
			break;
		case 'v':
			cfg.verbose = true;
			break;
		default:
			usage();
		}
	}
	if (optind != argc - 1)
		usage();
	cfg.dir = argv[optind];
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_sigbus };
	struct timespec ts;
	int f;

	clock_gettime(CLOCK_REALTIME, &ts);
	cfg.seed = (uint64_t)ts.tv_sec * 1000000007ULL ^
		   (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
	parse_args(argc, argv);
	rng_state = cfg.seed;
	pagesz = sysconf(_SC_PAGESIZE);
	if (cfg.nfiles < 2)
		disabled[OP_RENAME] = disabled[OP_EXCHANGE] = true;
	sigaction(SIGBUS, &sa, NULL);

	printf("fsx: seed %" PRIu64 ", %lu ops, maxlen %lld, %d files in %s\n",
	       cfg.seed, cfg.numops, LL(cfg.maxlen), cfg.nfiles, cfg.dir);
	fflush(stdout);

	wbuf = malloc((size_t)cfg.maxlen);
	rbuf = malloc((size_t)cfg.maxlen);
	if (!wbuf || !rbuf)
		die("out of memory for %lld-byte buffers", LL(cfg.maxlen));
	open_dir();
	for (f = 0; f < cfg.nfiles; f++) {
		files[f].model = calloc(1, (size_t)cfg.maxlen);
		if (!files[f].model)
			die("out of memory for the model");
		files[f].fd = open_file(f, O_CREAT | O_TRUNC);
	}

	for (opnum = 1; opnum <= cfg.numops; opnum++) {
		do_op();
		check_stats();
		if (cfg.remount_every && opnum % cfg.remount_every == 0)
			remount();
	}
	opnum = cfg.numops;
	verify_all("final check");

	for (f = 0; f < cfg.nfiles; f++) {
		close_file(files[f].fd, f);
		free(files[f].model);
	}
	close(dir_fd);
	free(wbuf);
	free(rbuf);
	printf("fsx: %lu ops, seed %" PRIu64 ", %lu remounts: ok\n",
	       cfg.numops, cfg.seed, remounts);
	return 0;
}

/*
 * iobench - small, controlled I/O and metadata micro-benchmarks for
 * scripts/bench (pinfs vs. passthrough_hp vs. tmpfs) and scripts/bench-writes
 * (pinfs before and after a change, same workloads).
 *
 * Every sub-command prints one or more "KEY VALUE" lines on stdout, where
 * VALUE is a number or "n/a".  Diagnostics go to stderr.  KEY is the
 * sub-command and the mode ("seqwrite_buf"); a caller takes the keys it
 * wants and ignores the others.
 *
 * Exit status: 0 ok, 2 not applicable (e.g. O_DIRECT refused with EINVAL),
 * 1 failure.
 *
 * Sub-commands (MODE is "buf" or "direct"):
 *   seqwrite  FILE MIB MODE      write MIB MiB in 1 MiB writes to a new FILE,
 *                                then fsync + close (all timed)     -> MiB/s
 *                                also KEY_nofsync: the rate up to the return
 *                                of the last write                  -> MiB/s
 *   seqrewrite FILE MODE         overwrite the existing FILE in place in 1 MiB
 *                                writes, then fsync + close (timed) -> MiB/s
 *   seqread   FILE MODE          drop FILE's cached pages (fadvise), then
 *                                read it in 1 MiB reads              -> MiB/s
 *   randwrite FILE NOPS MODE     NOPS 4 KiB pwrites at distinct random
 *                                4 KiB-aligned offsets, then fsync   -> IOPS
 *                                also KEY_nofsync (up to the last pwrite)
 *   append    FILE NOPS MODE     NOPS 4 KiB writes appended to a new FILE
 *                                (each one allocates), then fsync + close
 *                                                                    -> IOPS
 *                                also KEY_nofsync (up to the last write)
 *   randread  FILE NOPS MODE     drop cache, NOPS 4 KiB preads at distinct
 *                                random offsets (FADV_RANDOM)        -> IOPS
 *   meta      DIR N              in new dir DIR: create N empty files,
 *                                stat them, open+close them, unlink them
 *                                                                    -> ops/s
 *   populate  DIR N              mkdir DIR and create N empty files  -> ops/s
 *   lookup    DIR N NOPS hit|warm|miss
 *                                stat NOPS names of DIR in random order:
 *                                hit:  distinct existing names (from
 *                                      populate), each looked up once
 *                                warm: stat a set of W existing names once
 *                                      (untimed), then NOPS stats cycling
 *                                      over that set
 *                                miss: distinct names that do not exist
 *                                                                    -> ops/s
 *
 * A phase stops early when it exceeds IOBENCH_MAX_SECONDS (default 20);
 * the rate is then computed over the operations actually done.
 *
 * IOBENCH_WARMUP=1 (seqread, seqrewrite, randread, randwrite): one untimed 4 KiB pread
 * at offset 0 on the fd just before the clock starts, and "_warm" after
 * each KEY: what a program that already did one I/O on the file sees (under
 * pinfs-dax the first I/O takes the file's layout lease).
 *
 * IOBENCH_DROP_EVERY=K (populate, lookup hit/warm): every K operations,
 * with the clock stopped, write 2 to /proc/sys/vm/drop_caches so the
 * kernel forgets the FUSE inodes it caches.  Needed when a daemon holds
 * an fd per cached inode (passthrough_hp) and RLIMIT_NOFILE is below the
 * directory size.  For "warm" W = min(NOPS, K).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define BENCH_NAME "iobench"
#include "samples.h"

#define MIB (1024L * 1024L)
#define BLK 4096L

static double max_seconds = 20.0;
static long drop_every;

/*
 * Drop the dentry/inode caches.  Returns the seconds spent, which the
 * caller adds to its start time so that the pause is not measured.
 */
static double drop_caches(void)
{
	static int warned;
	double t0 = now();
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);

	if (fd < 0 || write(fd, "2", 1) != 1) {
		if (!warned++)
			fprintf(stderr, "iobench: cannot drop caches: %s\n",
				strerror(errno));
	}
	if (fd >= 0)
		close(fd);
	/* let the daemon process the FORGETs that this queued */
	usleep(20000);
	return now() - t0;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t rng(void)
{
	/* xorshift64*: deterministic, same sequence on every file system */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1DULL;
}

/* Fisher-Yates permutation of 0..n-1 */
static long *permutation(long n)
{
	long *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(*p));
	long i;

	if (!p) {
		perror("malloc");
		exit(1);
	}
	for (i = 0; i < n; i++)
		p[i] = i;
	for (i = n - 1; i > 0; i--) {
		long j = (long)(rng() % (uint64_t)(i + 1));
		long t = p[i];

		p[i] = p[j];
		p[j] = t;
	}
	return p;
}

static void *aligned_buf(size_t size)
{
	void *p = NULL;
	size_t i;

	if (posix_memalign(&p, BLK, size) != 0) {
		fprintf(stderr, "iobench: posix_memalign failed\n");
		exit(1);
	}
	/* incompressible, non-zero content */
	for (i = 0; i < size; i += 8) {
		uint64_t v = rng();

		memcpy((char *)p + i, &v, 8);
	}
	return p;
}

static int parse_mode(const char *s)
{
	if (strcmp(s, "buf") == 0)
		return 0;
	if (strcmp(s, "direct") == 0)
		return O_DIRECT;
	fprintf(stderr, "iobench: mode must be buf or direct, not '%s'\n", s);
	exit(1);
}

/* O_DIRECT refused: report n/a (exit 2); anything else is a failure. */
static int open_or_na(const char *key, const char *path, int flags,
		      mode_t mode)
{
	int fd = open(path, flags, mode);

	if (fd < 0) {
		int e = errno;

		fprintf(stderr, "iobench: open %s: %s\n", path, strerror(e));
		if ((flags & O_DIRECT) && (e == EINVAL || e == EOPNOTSUPP)) {
			printf("%s n/a\n", key);
			exit(2);
		}
		exit(1);
	}
	return fd;
}

static void io_fail(const char *key, const char *what, int flags)
{
	int e = errno;

	fprintf(stderr, "iobench: %s: %s\n", what, strerror(e));
	if ((flags & O_DIRECT) && (e == EINVAL || e == EOPNOTSUPP)) {
		printf("%s n/a\n", key);
		exit(2);
	}
	exit(1);
}

static int warmup;

/* IOBENCH_WARMUP: one untimed pread on @fd */
static void warm(int fd)
{
	char *b;

	if (!warmup)
		return;
	b = aligned_buf(BLK);
	if (pread(fd, b, BLK, 0) < 0)
		fprintf(stderr, "iobench: warm-up pread: %s\n", strerror(errno));
	free(b);
}

static void report(const char *key, double ops, double secs)
{
	if (secs <= 0)
		secs = 1e-9;
	printf("%s%s %.3f\n", key, warmup ? "_warm" : "", ops / secs);
	fflush(stdout);
}

/* KEY_nofsync: the rate up to the return of the last write, before fsync */
static void report_nofsync(const char *key, double ops, double secs)
{
	char k[64];

	snprintf(k, sizeof(k), "%s_nofsync", key);
	report(k, ops, secs);
}

static int cmd_seqwrite(const char *path, long mib, int dflag)
{
	const char *key = dflag ? "seqwrite_direct" : "seqwrite_buf";
	char *buf = aligned_buf(MIB);
	long done = 0;
	double t0, tw, t;
	int fd;

	unlink(path);
	fd = open_or_na(key, path, O_WRONLY | O_CREAT | O_TRUNC | dflag, 0644);
	t0 = now();
	for (done = 0; done < mib; done++) {
		ssize_t n = write(fd, buf, MIB);

		if (n != MIB) {
			if (n >= 0)
				errno = EIO;
			io_fail(key, "write", dflag);
		}
		if (now() - t0 > max_seconds) {
			done++;
			break;
		}
	}
	tw = now() - t0;
	if (fsync(fd) != 0)
		io_fail(key, "fsync", dflag);
	if (close(fd) != 0)
		io_fail(key, "close", dflag);
	t = now() - t0;
	report_nofsync(key, (double)done, tw);
	report(key, (double)done, t);
	free(buf);
	return 0;
}

static int cmd_seqrewrite(const char *path, int dflag)
{
	const char *key = dflag ? "seqrewrite_direct" : "seqrewrite_buf";
	char *buf = aligned_buf(MIB);
	double done = 0, t0, t;
	struct stat st;
	int fd;

	fd = open_or_na(key, path, O_RDWR | dflag, 0); /* RDWR: the warm-up preads */
	if (fstat(fd, &st) != 0 || st.st_size < MIB) {
		fprintf(stderr, "iobench: %s: seqrewrite needs a file of 1 MiB or more\n", path);
		return 1;
	}
	memset(buf, 0x5a, MIB);
	warm(fd);
	t0 = now();
	for (off_t off = 0; off + MIB <= st.st_size; off += MIB) {
		if (pwrite(fd, buf, MIB, off) != MIB) {
			if (errno == 0)
				errno = EIO;
			io_fail(key, "pwrite", dflag);
		}
		done++;
		if (now() - t0 > max_seconds)
			break;
	}
	if (fsync(fd) != 0)
		io_fail(key, "fsync", dflag);
	if (close(fd) != 0)
		io_fail(key, "close", dflag);
	t = now() - t0;
	report(key, done, t);
	free(buf);
	return 0;
}

static int cmd_seqread(const char *path, int dflag)
{
	const char *key = dflag ? "seqread_direct" : "seqread_buf";
	char *buf = aligned_buf(MIB);
	double bytes = 0, t0, t;
	int fd;

	fd = open_or_na(key, path, O_RDONLY | dflag, 0);
	/* cold read: drop this file's page cache (FUSE side for FUSE fs) */
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	warm(fd);
	t0 = now();
	for (;;) {
		ssize_t n = read(fd, buf, MIB);

		if (n < 0)
			io_fail(key, "read", dflag);
		if (n == 0)
			break;
		bytes += (double)n;
		if (now() - t0 > max_seconds)
			break;
	}
	t = now() - t0;
	close(fd);
	if (bytes == 0) {
		fprintf(stderr, "iobench: %s is empty\n", path);
		return 1;
	}
	report(key, bytes / MIB, t);
	free(buf);
	return 0;
}

static int cmd_rand(const char *path, long nops, int dflag, int wr)
{
	const char *key = wr ? (dflag ? "randwrite_direct" : "randwrite_buf")
			     : (dflag ? "randread_direct" : "randread_buf");
	char *buf = aligned_buf(BLK);
	struct stat st;
	long nblocks, i, *perm;
	double t0, tw, t;
	int fd;

	fd = open_or_na(key, path, (wr ? O_RDWR : O_RDONLY) | dflag, 0);
	if (fstat(fd, &st) != 0)
		io_fail(key, "fstat", 0);
	nblocks = (long)(st.st_size / BLK);
	if (nblocks < 1) {
		fprintf(stderr, "iobench: %s too small\n", path);
		return 1;
	}
	if (nops > nblocks)
		nops = nblocks;
	perm = permutation(nblocks);
	if (!wr)
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
	warm(fd);
	t0 = now();
	for (i = 0; i < nops; i++) {
		off_t off = (off_t)perm[i] * BLK;
		ssize_t n = wr ? pwrite(fd, buf, BLK, off)
			       : pread(fd, buf, BLK, off);

		if (n != BLK) {
			if (n >= 0)
				errno = EIO;
			io_fail(key, wr ? "pwrite" : "pread", dflag);
		}
		if ((i & 255) == 255 && now() - t0 > max_seconds) {
			i++;
			break;
		}
	}
	tw = now() - t0;
	if (wr && fsync(fd) != 0)
		io_fail(key, "fsync", dflag);
	t = now() - t0;
	close(fd);
	if (wr)
		report_nofsync(key, (double)i, tw);
	report(key, (double)i, t);
	free(perm);
	free(buf);
	return 0;
}

/* NOPS 4 KiB appends to a new file: every write allocates a block */
static int cmd_append(const char *path, long nops, int dflag)
{
	const char *key = dflag ? "append_direct" : "append_buf";
	char *buf = aligned_buf(BLK);
	double t0, tw, t;
	long i;
	int fd;

	unlink(path);
	fd = open_or_na(key, path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | dflag,
			0644);
	t0 = now();
	for (i = 0; i < nops; i++) {
		ssize_t n = write(fd, buf, BLK);

		if (n != BLK) {
			if (n >= 0)
				errno = EIO;
			io_fail(key, "write", dflag);
		}
		if ((i & 255) == 255 && now() - t0 > max_seconds) {
			i++;
			break;
		}
	}
	tw = now() - t0;
	if (fsync(fd) != 0)
		io_fail(key, "fsync", dflag);
	if (close(fd) != 0)
		io_fail(key, "close", dflag);
	t = now() - t0;
	report_nofsync(key, (double)i, tw);
	report(key, (double)i, t);
	free(buf);
	return 0;
}

static void name_of(char *buf, size_t len, char prefix, long i)
{
	snprintf(buf, len, "%c%07ld", prefix, i);
}

static int open_dir(const char *dir)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);

	if (dfd < 0) {
		fprintf(stderr, "iobench: open %s: %s\n", dir, strerror(errno));
		exit(1);
	}
	return dfd;
}

/* create N files "f0000000".. in dfd; returns how many were created */
static long create_files(int dfd, char prefix, long n, long drop,
			 double *secs)
{
	char name[32];
	double t0 = now();
	long i;

	for (i = 0; i < n; i++) {
		int fd;

		if (drop > 0 && i > 0 && i % drop == 0)
			t0 += drop_caches();

		name_of(name, sizeof(name), prefix, i);
		fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL, 0644);
		if (fd < 0) {
			fprintf(stderr, "iobench: create %s: %s\n", name,
				strerror(errno));
			exit(1);
		}
		close(fd);
		if ((i & 255) == 255 && now() - t0 > max_seconds) {
			i++;
			break;
		}
	}
	*secs = now() - t0;
	return i;
}

static int cmd_meta(const char *dir, long n)
{
	char name[32];
	struct stat st;
	double t0, t;
	long i, made;
	int dfd;

	if (mkdir(dir, 0755) != 0) {
		fprintf(stderr, "iobench: mkdir %s: %s\n", dir, strerror(errno));
		return 1;
	}
	dfd = open_dir(dir);

	made = create_files(dfd, 'f', n, 0, &t);
	report("meta_create", (double)made, t);

	t0 = now();
	for (i = 0; i < made; i++) {
		name_of(name, sizeof(name), 'f', i);
		if (fstatat(dfd, name, &st, 0) != 0) {
			fprintf(stderr, "iobench: stat %s: %s\n", name,
				strerror(errno));
			return 1;
		}
	}
	report("meta_stat", (double)made, now() - t0);

	t0 = now();
	for (i = 0; i < made; i++) {
		int fd;

		name_of(name, sizeof(name), 'f', i);
		fd = openat(dfd, name, O_RDONLY);
		if (fd < 0) {
			fprintf(stderr, "iobench: open %s: %s\n", name,
				strerror(errno));
			return 1;
		}
		close(fd);
	}
	report("meta_openclose", (double)made, now() - t0);

	t0 = now();
	for (i = 0; i < made; i++) {
		name_of(name, sizeof(name), 'f', i);
		if (unlinkat(dfd, name, 0) != 0) {
			fprintf(stderr, "iobench: unlink %s: %s\n", name,
				strerror(errno));
			return 1;
		}
	}
	report("meta_unlink", (double)made, now() - t0);
	close(dfd);
	if (rmdir(dir) != 0)
		fprintf(stderr, "iobench: rmdir %s: %s\n", dir, strerror(errno));
	return 0;
}

static int cmd_populate(const char *dir, long n)
{
	double t;
	long made;
	int dfd;

	if (mkdir(dir, 0755) != 0) {
		fprintf(stderr, "iobench: mkdir %s: %s\n", dir, strerror(errno));
		return 1;
	}
	dfd = open_dir(dir);
	made = create_files(dfd, 'e', n, drop_every, &t);
	if (fsync(dfd) != 0 && errno != EINVAL && errno != ENOSYS)
		fprintf(stderr, "iobench: fsync dir: %s\n", strerror(errno));
	close(dfd);
	if (made < n) {
		fprintf(stderr, "iobench: only %ld of %ld entries created in "
			"time\n", made, n);
		printf("populate_entries %ld\n", made);
	}
	report("populate", (double)made, t);
	return 0;
}

/* mode: 0 miss, 1 hit (cold, each name once), 2 warm */
static int cmd_lookup(const char *dir, long n, long nops, int mode)
{
	static const char *const keys[] = { "lookup_miss", "lookup_hit",
					    "lookup_warm" };
	const char *key = keys[mode];
	char name[32];
	struct stat st;
	long i, w = n, *perm;
	double t0;
	int dfd;

	if (mode != 2 && nops > n)
		nops = n;
	perm = permutation(n);
	dfd = open_dir(dir);
	if (mode == 2) {
		if (w > nops)
			w = nops;
		if (drop_every > 0 && w > drop_every)
			w = drop_every;
		if (drop_every > 0)
			drop_caches();
		for (i = 0; i < w; i++) {
			name_of(name, sizeof(name), 'e', perm[i]);
			if (fstatat(dfd, name, &st, 0) != 0) {
				fprintf(stderr, "iobench: stat %s: %s\n", name,
					strerror(errno));
				return 1;
			}
		}
	}
	t0 = now();
	for (i = 0; i < nops; i++) {
		int r;

		if (mode == 1 && drop_every > 0 && i > 0 && i % drop_every == 0)
			t0 += drop_caches();
		name_of(name, sizeof(name), mode ? 'e' : 'x',
			perm[mode == 2 ? i % w : i]);
		r = fstatat(dfd, name, &st, 0);
		if (mode ? r != 0 : (r == 0 || errno != ENOENT)) {
			fprintf(stderr, "iobench: stat %s: %s\n", name,
				r == 0 ? "unexpectedly exists" : strerror(errno));
			return 1;
		}
		if ((i & 255) == 255 && now() - t0 > max_seconds) {
			i++;
			break;
		}
	}
	report(key, (double)i, now() - t0);
	close(dfd);
	free(perm);
	return 0;
}

static void usage(void) __attribute__((noreturn));
static void usage(void)
{
	fprintf(stderr,
		"usage: iobench seqwrite FILE MIB buf|direct\n"
		"       iobench seqread FILE buf|direct\n"
		"       iobench seqrewrite FILE buf|direct\n"
		"       iobench randwrite|randread FILE NOPS buf|direct\n"
		"       iobench append FILE NOPS buf|direct\n"
		"       iobench meta DIR N\n"
		"       iobench populate DIR N\n"
		"       iobench lookup DIR N NOPS hit|warm|miss\n"
		"env: IOBENCH_MAX_SECONDS (per phase, default 20)\n"
		"     IOBENCH_WARMUP=1 (one untimed pread first; keys get _warm)\n"
		"     IOBENCH_DROP_EVERY (populate/lookup, default 0: never)\n");
	exit(1);
}

int main(int argc, char **argv)
{
	const char *cmd;
	const char *env = getenv("IOBENCH_MAX_SECONDS");
	const char *wenv = getenv("IOBENCH_WARMUP");

	warmup = wenv && *wenv && strcmp(wenv, "0");

	if (env && atof(env) > 0)
		max_seconds = atof(env);
	env = getenv("IOBENCH_DROP_EVERY");
	if (env && *env)
		drop_every = parse_long(env);
	if (argc < 2)
		usage();
	cmd = argv[1];
	if (strcmp(cmd, "seqwrite") == 0 && argc == 5)
		return cmd_seqwrite(argv[2], parse_long(argv[3]),
				    parse_mode(argv[4]));
	if (strcmp(cmd, "seqrewrite") == 0 && argc == 4)
		return cmd_seqrewrite(argv[2], parse_mode(argv[3]));
	if (strcmp(cmd, "seqread") == 0 && argc == 4)
		return cmd_seqread(argv[2], parse_mode(argv[3]));
	if (strcmp(cmd, "randwrite") == 0 && argc == 5)
		return cmd_rand(argv[2], parse_long(argv[3]),
				parse_mode(argv[4]), 1);
	if (strcmp(cmd, "randread") == 0 && argc == 5)
		return cmd_rand(argv[2], parse_long(argv[3]),
				parse_mode(argv[4]), 0);
	if (strcmp(cmd, "append") == 0 && argc == 5)
		return cmd_append(argv[2], parse_long(argv[3]),
				  parse_mode(argv[4]));
	if (strcmp(cmd, "meta") == 0 && argc == 4)
		return cmd_meta(argv[2], parse_long(argv[3]));
	if (strcmp(cmd, "populate") == 0 && argc == 4)
		return cmd_populate(argv[2], parse_long(argv[3]));
	if (strcmp(cmd, "lookup") == 0 && argc == 6) {
		int mode;

		if (strcmp(argv[5], "miss") == 0)
			mode = 0;
		else if (strcmp(argv[5], "hit") == 0)
			mode = 1;
		else if (strcmp(argv[5], "warm") == 0)
			mode = 2;
		else
			usage();
		return cmd_lookup(argv[2], parse_long(argv[3]),
				  parse_long(argv[4]), mode);
	}
	usage();
}

/*
 * severbench - what freeing space and ending leases cost, for
 * scripts/bench-sever: the daemon may cut every freed block out of the pool
 * file (fallocate PUNCH_HOLE, which severs kernel pins and gives tmpfs
 * memory back) and read /proc/PID/maps of every process at every lease
 * end. The script runs these steps on two daemons (a base and a new build)
 * on the same backings and puts the figures side by side.
 *
 * It pins through the client library (include/pinfs/client.h, linked from
 * client/client.c), frees space with plain system calls, and reads how much
 * of the pool file is allocated (st_blocks) through the pool path in the
 * user.pinfs.pool xattr.
 *
 * Every sub-command prints "KEY VALUE" lines on stdout (times in
 * microseconds unless the key ends in _ms, rates in MiB/s, sizes in MiB);
 * diagnostics go to stderr. Exit status: 0 ok, 1 failure. DIR is a
 * directory on a pinfs mount; the files made there are removed at the end.
 *
 *   space DIR MIB          on a fresh pool: the pool file's allocated size;
 *                          write a new MIB MiB file (1 MiB writes + fsync,
 *                          timed: never-used pool space); the size again;
 *                          unlink it and wait until statfs counts its
 *                          blocks free; the size again
 *                          -> pool_fresh, fresh_mibs, pool_written,
 *                             pool_deleted (MiB), space_back_ms
 *   reuse DIR MIB ITERS [DELAY_MS PREFIX]
 *                          ITERS times: write a MIB MiB file, unlink it,
 *                          wait until its blocks are free, and DELAY_MS
 *                          more (untimed); then write MIB MiB to a new
 *                          file (timed, + fsync): the allocator hands out
 *                          the lowest free blocks first, i.e. the ones just
 *                          freed; unlink it
 *                          -> PREFIX_mibs (median; PREFIX: reuse),
 *                             PREFIX_grow (MiB the pool file grew by
 *                             during the timed write)
 *   unlink DIR MIB ITERS   ITERS times: write and close a MIB MiB file
 *                          (untimed), unlink it: the call, and the call
 *                          until statfs counts the blocks free (the
 *                          blocks go when the kernel's FORGET arrives)
 *                          -> unlink_call_ms, unlink_free_ms (p50, p99)
 *   trunc DIR MIB ITERS    ITERS times: write MIB MiB into an open file
 *                          (untimed), ftruncate it to 0 (timed)
 *                          -> trunc_ms (p50, p99)
 *   punch DIR MIB ITERS    a MIB MiB file; ITERS times: punch 1 MiB at a
 *                          1 MiB-aligned offset that moves through the
 *                          file (timed), write it back (untimed)
 *                          -> punch (p50, p99)
 *   unpin DIR ITERS NPROCS [PREFIX]
 *                          on a sparse 16 MiB file whose extents the first
 *                          pins allocate (2 MiB-aligned in the pool),
 *                          with NPROCS extra idle processes on the machine
 *                          (not children of this one: the daemon reads
 *                          every process's maps at an unpin when the
 *                          holder has children), ITERS cycles of:
 *                          pinfs_map_pin of a 2 MiB write lease (timed), a
 *                          store to each 4 KiB page, then the unpin. Even
 *                          cycles: pinfs_map_unpin() (timed: munmap, close
 *                          of the pool, the UNPIN ioctl); odd cycles: the
 *                          same three steps by hand, the ioctl timed alone
 *                          -> PREFIX_pinmap, PREFIX_lib, PREFIX_ioctl
 *                             (p50, p99), procs (processes in /proc)
 *   exit DIR ITERS         ITERS times: a child pins and maps 2 MiB,
 *                          stores to it, and exits without unpinning; time
 *                          from its exit to the mount's STATS showing no
 *                          pin (polled every 100 us)
 *                          -> exit_ms (p50, p99), exit_procs
 *   warm FILE MIB          (not on a mount: in a backing file system)
 *                          touch MIB MiB of a new file through a shared
 *                          mapping, then remove it
 *
 * Env: SEVERBENCH_MAX_SECONDS caps each timed loop (default 60): a loop
 * that runs longer stops early and says so on stderr.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "pinfs/abi.h"
#include "pinfs/client.h"

#define BENCH_NAME "severbench"
#include "samples.h"

#define MIB (1024L * 1024L)
#define BLK 4096L
#define EXT (2 * MIB) /* a pinnable extent */

static double max_seconds = 60.0;

static bool over_time(double t0)
{
	if (now() - t0 <= max_seconds)
		return false;
	fprintf(stderr, "severbench: loop stopped after %.0f s (SEVERBENCH_MAX_SECONDS)\n",
		max_seconds);
	return true;
}

/* KEY_p50, KEY_p99, KEY_n; "n/a" when there are no samples */
static void put_p(const char *key, struct samples *s)
{
	if (!s->n) {
		printf("%s_p50 n/a\n%s_p99 n/a\n%s_n 0\n", key, key, key);
		return;
	}
	printf("%s_p50 %.3f\n", key, samples_pct(s, 50));
	printf("%s_p99 %.3f\n", key, samples_pct(s, 99));
	printf("%s_n %zu\n", key, s->n);
}

static char path_buf[4096];

static const char *at(const char *dir, const char *name)
{
	snprintf(path_buf, sizeof(path_buf), "%s/%s", dir, name);
	return path_buf;
}

static char *data_buf(void)
{
	static char *buf;
	uint64_t x = 0x9E3779B97F4A7C15ULL;
	long i;

	if (buf)
		return buf;
	if (posix_memalign((void **)&buf, BLK, MIB))
		die("posix_memalign");
	for (i = 0; i < MIB; i += 8) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		memcpy(buf + i, &x, 8);
	}
	return buf;
}

/* Writes @mib MiB from offset 0 of @fd in 1 MiB writes, then fsync. */
static void fill(int fd, long mib)
{
	char *buf = data_buf();
	long i;

	for (i = 0; i < mib; i++)
		if (pwrite(fd, buf, MIB, (off_t)(i * MIB)) != MIB)
			die("pwrite");
	if (fsync(fd))
		die("fsync");
}

static int create(const char *dir, const char *name)
{
	int fd;

	unlink(at(dir, name));
	fd = open(at(dir, name), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		die(path_buf);
	return fd;
}

/* ------------------------------------------------------ pool and space -- */

static char pool_path[4096];

/* The pool file behind the mount of @dir (its user.pinfs.pool xattr). */
static void find_pool(const char *dir)
{
	ssize_t n = getxattr(dir, PINFS_XATTR_POOL, pool_path, sizeof(pool_path) - 1);

	if (n <= 0)
		die("getxattr " PINFS_XATTR_POOL);
	pool_path[n] = 0;
}

/* MiB of the pool file that are allocated (st_blocks) */
static double pool_mib(void)
{
	struct stat st;

	if (stat(pool_path, &st))
		die(pool_path);
	return (double)st.st_blocks * 512.0 / (double)MIB;
}

/* Free blocks of the mount, in 4 KiB blocks (statfs: quarantined blocks
 * are not free). */
static long long free_blocks(const char *dir)
{
	struct statvfs sv;

	if (statvfs(dir, &sv))
		die("statvfs");
	return (long long)sv.f_bfree * (long long)sv.f_frsize / BLK;
}

/* Waits until statfs counts at least @want free blocks; seconds since
 * @t0, or -1 after 30 s. */
static double wait_free(const char *dir, long long want, double t0)
{
	for (;;) {
		if (free_blocks(dir) >= want)
			return now() - t0;
		if (now() - t0 > 30) {
			fprintf(stderr, "severbench: the freed blocks did not come back in 30 s\n");
			return -1;
		}
		usleep(100);
	}
}

/* The free count a file's blocks must bring back: what was free before it
 * was made, less a little for metadata that stays (a directory block). */
#define SLACK_BLOCKS 64

static int cmd_space(const char *dir, long mib)
{
	long long free0;
	double t0, t1, back;
	int fd;

	find_pool(dir);
	printf("pool_fresh %.1f\n", pool_mib());
	free0 = free_blocks(dir);
	fd = create(dir, "sever.space");
	t0 = now();
	fill(fd, mib);
	t1 = now();
	close(fd);
	printf("fresh_mibs %.1f\n", (double)mib / (t1 - t0));
	printf("pool_written %.1f\n", pool_mib());
	t0 = now();
	if (unlink(at(dir, "sever.space")))
		die("unlink");
	back = wait_free(dir, free0 - SLACK_BLOCKS, t0);
	if (back < 0)
		return 1;
	printf("space_back_ms %.3f\n", back * 1e3);
	printf("pool_deleted %.1f\n", pool_mib());
	return 0;
}

static int cmd_reuse(const char *dir, long mib, long iters, long delay_ms, const char *prefix)
{
	struct samples rate = { 0 }, grow = { 0 };
	double start = now();
	long i;

	find_pool(dir);
	for (i = 0; i < iters; i++) {
		long long free0 = free_blocks(dir);
		double t0, t1, p0;
		int fd = create(dir, "sever.reuse-a");

		fill(fd, mib);
		close(fd);
		if (unlink(at(dir, "sever.reuse-a")))
			die("unlink");
		if (wait_free(dir, free0 - SLACK_BLOCKS, now()) < 0)
			return 1;
		if (delay_ms)
			usleep((useconds_t)delay_ms * 1000);
		p0 = pool_mib();
		fd = create(dir, "sever.reuse-b");
		t0 = now();
		fill(fd, mib);
		t1 = now();
		close(fd);
		samples_add(&rate, (double)mib / (t1 - t0));
		samples_add(&grow, pool_mib() - p0);
		if (unlink(at(dir, "sever.reuse-b")))
			die("unlink");
		if (wait_free(dir, free0 - SLACK_BLOCKS, now()) < 0)
			return 1;
		if (over_time(start))
			break;
	}
	printf("%s_mibs %.1f\n", prefix, samples_pct(&rate, 50));
	printf("%s_grow %.1f\n", prefix, samples_pct(&grow, 50));
	printf("%s_n %zu\n", prefix, rate.n);
	return 0;
}

static int cmd_unlink(const char *dir, long mib, long iters)
{
	struct samples call = { 0 }, freed = { 0 };
	double start = now();
	long i;

	for (i = 0; i < iters; i++) {
		long long free0 = free_blocks(dir);
		double t0, t1, back;
		int fd = create(dir, "sever.unlink");

		fill(fd, mib);
		close(fd);
		t0 = now();
		if (unlink(at(dir, "sever.unlink")))
			die("unlink");
		t1 = now();
		back = wait_free(dir, free0 - SLACK_BLOCKS, t0);
		if (back < 0)
			return 1;
		samples_add(&call, (t1 - t0) * 1e3);
		samples_add(&freed, back * 1e3);
		if (over_time(start))
			break;
	}
	put_p("unlink_call_ms", &call);
	put_p("unlink_free_ms", &freed);
	return 0;
}

static int cmd_trunc(const char *dir, long mib, long iters)
{
	struct samples s = { 0 };
	double start = now();
	int fd = create(dir, "sever.trunc");
	long i;

	for (i = 0; i < iters; i++) {
		double t0;

		fill(fd, mib);
		t0 = now();
		if (ftruncate(fd, 0))
			die("ftruncate");
		samples_add(&s, (now() - t0) * 1e3);
		if (over_time(start))
			break;
	}
	put_p("trunc_ms", &s);
	close(fd);
	unlink(at(dir, "sever.trunc"));
	return 0;
}

static int cmd_punch(const char *dir, long mib, long iters)
{
	struct samples s = { 0 };
	double start = now();
	char *buf = data_buf();
	int fd = create(dir, "sever.punch");
	long i;

	if (mib < 2) {
		fprintf(stderr, "severbench: punch needs a file of at least 2 MiB\n");
		return 1;
	}
	fill(fd, mib);
	for (i = 0; i < iters; i++) {
		/* 37 is prime to every power of two: the offsets walk the
		 * whole file, 2 MiB-aligned and not alike */
		off_t off = (off_t)(((i * 37) % mib) * MIB);
		double t0 = now();

		if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, MIB))
			die("fallocate PUNCH_HOLE");
		samples_add(&s, (now() - t0) * 1e6);
		if (pwrite(fd, buf, MIB, off) != MIB)
			die("pwrite (refill)");
		if (over_time(start))
			break;
	}
	put_p("punch", &s);
	close(fd);
	unlink(at(dir, "sever.punch"));
	return 0;
}

/* ------------------------------------------------------------ leases --- */

/* Idle processes that are not our children (the daemon reads every
 * process's maps at an unpin when the holder has children): a child forks
 * a reaper and exits, so the reaper is reparented; the reaper forks them
 * and reaps them. Each waits for EOF on a pipe whose only writer is this
 * process, so they all exit when it closes it or ends, however it ends. */
struct idle {
	int hold; /* our write end: closing it ends them */
	int done; /* read end: EOF once the reaper has reaped them all */
};

static void to_dev_null(void)
{
	int nul = open("/dev/null", O_RDWR);

	if (nul < 0)
		return;
	dup2(nul, 0);
	dup2(nul, 1);
	dup2(nul, 2);
	if (nul > 2)
		close(nul);
}

/* Starts @n of them; returns once all run. */
static void idle_start(long n, struct idle *id)
{
	int hold[2], ready[2], done[2];
	long i, got = 0;
	pid_t mid;
	int st;

	id->hold = id->done = -1;
	if (!n)
		return;
	if (pipe2(hold, O_CLOEXEC) || pipe2(ready, O_CLOEXEC) || pipe2(done, O_CLOEXEC))
		die("pipe");
	fflush(stdout);
	mid = fork();
	if (mid < 0)
		die("fork");
	if (mid == 0) {
		pid_t reaper = fork();

		if (reaper != 0)
			_exit(reaper < 0 ? 1 : 0);
		/* the reaper: an orphan now */
		close(hold[1]);
		close(ready[0]);
		close(done[0]);
		to_dev_null();
		for (i = 0; i < n; i++) {
			pid_t p = fork();
			char c;

			if (p < 0)
				break;
			if (p)
				continue;
			close(done[1]);
			if (write(ready[1], "r", 1) != 1)
				_exit(1);
			close(ready[1]);
			while (read(hold[0], &c, 1) < 0 && errno == EINTR)
				;
			_exit(0);
		}
		close(ready[1]);
		close(hold[0]);
		while (wait(&st) > 0 || errno == EINTR)
			;
		_exit(0); /* done[1] closes: all reaped */
	}
	close(hold[0]);
	close(ready[1]);
	close(done[1]);
	if (waitpid(mid, &st, 0) != mid || !WIFEXITED(st) || WEXITSTATUS(st))
		fprintf(stderr, "severbench: the idle processes' reaper did not start\n");
	for (;;) {
		char b[256];
		ssize_t k = read(ready[0], b, sizeof(b));

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		got += k;
	}
	close(ready[0]);
	id->hold = hold[1];
	id->done = done[0];
	if (got < n) {
		fprintf(stderr, "severbench: only %ld of %ld idle processes started\n", got, n);
		exit(1);
	}
}

/* Ends them; returns once they are reaped (or after 30 s). */
static void idle_stop(struct idle *id)
{
	struct pollfd pf = { id->done, POLLIN, 0 };
	char c;

	if (id->hold < 0)
		return;
	close(id->hold);
	if (poll(&pf, 1, 30000) == 1)
		(void)!read(id->done, &c, 1);
	else
		fprintf(stderr, "severbench: the idle processes did not all exit in 30 s\n");
	close(id->done);
	id->hold = id->done = -1;
}

static long count_procs(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	long n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] >= '1' && e->d_name[0] <= '9';
	closedir(d);
	return n;
}

static void touch(char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i += BLK)
		((volatile char *)p)[i] = (char)(i >> 12);
}

static void map_pin(int fd, uint64_t off, struct pinfs_map *m)
{
	char why[512];
	int rc = pinfs_map_pin(fd, off, EXT, PINFS_PIN_WRITE, m);

	if (rc) {
		fprintf(stderr, "severbench: pinfs_map_pin: %s\n",
			pinfs_pin_strerror(fd, rc, why, sizeof(why)));
		exit(1);
	}
}

static const char *transport_name(uint64_t t)
{
	if (t == PINFS_TRANSPORT_IO_URING)
		return "io_uring";
	if (t == PINFS_TRANSPORT_DEV_FUSE)
		return "/dev/fuse";
	return "unknown";
}

#define UNPIN_FILE_EXTENTS 8

/* A sparse file of UNPIN_FILE_EXTENTS extents: the first pin of each
 * extent allocates it, 2 MiB-aligned in the pool as pinnable extents are.
 * (Blocks that write() allocated need not be: the client library cannot
 * map them from a hugetlbfs pool, whose mmap wants 2 MiB-aligned offsets.)
 * The warm-up cycles of each loop pin every extent once. */
static int pin_file(const char *dir, const char *name)
{
	int fd = create(dir, name);

	if (ftruncate(fd, UNPIN_FILE_EXTENTS * EXT))
		die("ftruncate");
	return fd;
}

static int cmd_unpin(const char *dir, long iters, long nprocs, const char *prefix)
{
	struct samples spin = { 0 }, slib = { 0 }, sioc = { 0 };
	struct pinfs_stats st;
	struct idle idle;
	char key[96];
	double start;
	long i, warm = 10;
	int fd;

	idle_start(nprocs, &idle);
	fd = pin_file(dir, "sever.unpin");
	start = now();
	for (i = -warm; i < iters; i++) {
		struct pinfs_map m;
		struct pinfs_unpin u;
		double t0, t1, t2;

		t0 = now();
		map_pin(fd, (uint64_t)((i + warm) % UNPIN_FILE_EXTENTS) * EXT, &m);
		t1 = now();
		touch(m.addr, m.len);
		if (i & 1) {
			/* what pinfs_map_unpin() does, with the ioctl apart */
			if (munmap(m.addr, m.len))
				die("munmap");
			close(m.pool_fd);
			memset(&u, 0, sizeof(u));
			u.lease_id = m.lease_id;
			t2 = now();
			if (ioctl(fd, PINFS_IOC_UNPIN, &u))
				die("PINFS_IOC_UNPIN");
			if (i >= 0)
				samples_add(&sioc, (now() - t2) * 1e6);
		} else {
			int rc;

			t2 = now();
			rc = pinfs_map_unpin(&m);
			if (rc) {
				errno = -rc;
				die("pinfs_map_unpin");
			}
			if (i >= 0)
				samples_add(&slib, (now() - t2) * 1e6);
		}
		if (i >= 0)
			samples_add(&spin, (t1 - t0) * 1e6);
		if (i >= 0 && (i & 15) == 15 && over_time(start))
			break;
	}
	snprintf(key, sizeof(key), "%s_pinmap", prefix);
	put_p(key, &spin);
	snprintf(key, sizeof(key), "%s_lib", prefix);
	put_p(key, &slib);
	snprintf(key, sizeof(key), "%s_ioctl", prefix);
	put_p(key, &sioc);
	printf("%s_procs %ld\n", prefix, count_procs());
	idle_stop(&idle);
	memset(&st, 0, sizeof(st));
	if (ioctl(fd, PINFS_IOC_STATS, &st) == 0)
		printf("transport %s\n", transport_name(st.mount.transport));
	close(fd);
	unlink(at(dir, "sever.unpin"));
	return 0;
}

static uint64_t mount_pins(int fd)
{
	struct pinfs_stats st;

	memset(&st, 0, sizeof(st));
	if (ioctl(fd, PINFS_IOC_STATS, &st))
		die("PINFS_IOC_STATS");
	return st.mount.pins;
}

static int cmd_exit(const char *dir, long iters)
{
	struct samples s = { 0 };
	double start;
	long i, warm = UNPIN_FILE_EXTENTS;
	int fd = pin_file(dir, "sever.exit");

	if (mount_pins(fd)) {
		fprintf(stderr, "severbench: exit: the mount has pins already\n");
		return 1;
	}
	start = now();
	for (i = -warm; i < iters; i++) {
		int go[2], ready[2], st;
		double t0, t1;
		pid_t pid;
		char c;

		if (pipe2(go, O_CLOEXEC) || pipe2(ready, O_CLOEXEC))
			die("pipe");
		fflush(stdout);
		pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0) {
			struct pinfs_map m;

			close(go[1]);
			close(ready[0]);
			map_pin(fd, (uint64_t)((i + warm) % UNPIN_FILE_EXTENTS) * EXT, &m);
			touch(m.addr, m.len);
			if (write(ready[1], "r", 1) != 1)
				_exit(1);
			while (read(go[0], &c, 1) < 0 && errno == EINTR)
				;
			_exit(0); /* no unpin: the lease ends with the process */
		}
		close(go[0]);
		close(ready[1]);
		if (read(ready[0], &c, 1) != 1) {
			fprintf(stderr, "severbench: exit: the holder failed to pin\n");
			waitpid(pid, &st, 0);
			return 1;
		}
		close(ready[0]);
		t0 = now();
		close(go[1]); /* EOF: the holder exits */
		if (waitpid(pid, &st, 0) != pid)
			die("waitpid");
		while (mount_pins(fd)) {
			if (now() - t0 > 30) {
				fprintf(stderr, "severbench: exit: lease not gone in 30 s\n");
				return 1;
			}
			usleep(100);
		}
		t1 = now();
		if (i >= 0)
			samples_add(&s, (t1 - t0) * 1e3);
		if (i >= 0 && over_time(start))
			break;
	}
	put_p("exit_ms", &s);
	printf("exit_procs %ld\n", count_procs());
	close(fd);
	unlink(at(dir, "sever.exit"));
	return 0;
}

/* ------------------------------------------------------------- warm --- */

/* Touches @mib MiB of a new file @path through a shared mapping (hugetlbfs
 * has no write()), then removes it: the backing's pages have been used
 * once before any run is timed, so that the first run does not pay alone
 * for memory the machine (or its hypervisor) never handed out before. */
static int cmd_warm(const char *path, long mib)
{
	size_t len = (size_t)mib * MIB;
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	char *p;

	if (fd < 0)
		die(path);
	if (ftruncate(fd, (off_t)len))
		die("ftruncate");
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		unlink(path);
		die("mmap");
	}
	touch(p, len);
	munmap(p, len);
	close(fd);
	if (unlink(path))
		die("unlink");
	printf("warm_mib %ld\n", mib);
	return 0;
}

static void usage(void) __attribute__((noreturn));
static void usage(void)
{
	fprintf(stderr, "usage: severbench space DIR MIB\n"
			"       severbench reuse DIR MIB ITERS [DELAY_MS PREFIX]\n"
			"       severbench unlink DIR MIB ITERS\n"
			"       severbench trunc DIR MIB ITERS\n"
			"       severbench punch DIR MIB ITERS\n"
			"       severbench unpin DIR ITERS NPROCS [PREFIX]\n"
			"       severbench exit DIR ITERS\n"
			"       severbench warm FILE MIB\n"
			"env: SEVERBENCH_MAX_SECONDS (per timed loop, default 60)\n");
	exit(1);
}

int main(int argc, char **argv)
{
	const char *env = getenv("SEVERBENCH_MAX_SECONDS");
	const char *cmd;

	if (env && atof(env) > 0)
		max_seconds = atof(env);
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (argc < 3)
		usage();
	cmd = argv[1];
	if (!strcmp(cmd, "space") && argc == 4)
		return cmd_space(argv[2], parse_long(argv[3]));
	if (!strcmp(cmd, "reuse") && (argc == 5 || argc == 7))
		return cmd_reuse(argv[2], parse_long(argv[3]), parse_long(argv[4]),
				 argc == 7 ? parse_long(argv[5]) : 0,
				 argc == 7 ? argv[6] : "reuse");
	if (!strcmp(cmd, "unlink") && argc == 5)
		return cmd_unlink(argv[2], parse_long(argv[3]), parse_long(argv[4]));
	if (!strcmp(cmd, "trunc") && argc == 5)
		return cmd_trunc(argv[2], parse_long(argv[3]), parse_long(argv[4]));
	if (!strcmp(cmd, "punch") && argc == 5)
		return cmd_punch(argv[2], parse_long(argv[3]), parse_long(argv[4]));
	if (!strcmp(cmd, "unpin") && (argc == 5 || argc == 6))
		return cmd_unpin(argv[2], parse_long(argv[3]), parse_long(argv[4]),
				 argc == 6 ? argv[5] : "unpin");
	if (!strcmp(cmd, "exit") && argc == 4)
		return cmd_exit(argv[2], parse_long(argv[3]));
	if (!strcmp(cmd, "warm") && argc == 4)
		return cmd_warm(argv[2], parse_long(argv[3]));
	usage();
}

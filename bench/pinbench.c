/*
 * pinbench - micro-benchmarks of pins, leases and direct mapping for
 * scripts/bench-pins. Each measurement runs beside its baseline in the same
 * process, so that both see the same CPU placement and machine state.
 *
 * It talks to pinfs only through the raw ioctls of include/pinfs/abi.h, the
 * user.pinfs.pool xattr and mmap of the pool file (no client library), and
 * to the kernel's own long-term pin through io_uring_register_buffers().
 *
 * Every sub-command prints "KEY VALUE" lines on stdout (times in
 * microseconds unless the key says otherwise, rates in MiB/s); diagnostics
 * go to stderr. Exit status: 0 ok, 1 failure.
 *
 * Sub-commands (DIR is a directory on a pinfs mount; the files it creates
 * there are removed at the end):
 *   rtt DIR N            N rounds of: a null ioctl (unknown command, no
 *                        argument: the daemon answers ENOTTY = a bare FUSE
 *                        ioctl round trip), GET_POLICY (x1 and x2 back to
 *                        back), STATS, PIN + UNPIN of one allocated 4 KiB
 *                        block (read pin) and the same as a write|revocable
 *                        pin                     -> <op>_p50, <op>_p99
 *   uring DIR BASEDIR MIB   io_uring_register_buffers() + unregister of a
 *                        pinned+mapped range of the pool (4 KiB, 2 MiB,
 *                        MIB MiB) and of a plain MAP_SHARED file in BASEDIR
 *                        (a tmpfs with the pool's page size)
 *                                                -> reg_<size>_{pool,base}
 *   copy DIR BASEDIR MIB PASSES   memcpy into / out of a pinned+mapped MIB
 *                        MiB range vs a plain MAP_SHARED file of BASEDIR,
 *                        passes alternating      -> MiB/s, PMD-mapped share
 *   mapsetup DIR N       for N 2 MiB extents of an allocated file: PIN +
 *                        mmap of the segments + a store to every 4 KiB page,
 *                        then (apart) the io_uring registration of the
 *                        extent; alignment and PMD mapping checked
 *   trunc DIR ITERS CYCLES N1 [N2 ...]   CYCLES times: a holder child
 *                        takes N1, then N2, ... pins (one per 4 KiB block,
 *                        half on the head of the truncated file, half on
 *                        another file); for each count, ITERS rounds of:
 *                        extend by 1 MiB (untimed), ftruncate back (timed);
 *                        then the holder exits and ITERS more rounds run
 *                        with no pins (a control)
 *   revoke DIR ITERS     (mount policy revoke) a holder child pins the last
 *                        block revocably; the parent truncates it away; the
 *                        holder's SIGBUS handler sends CLOCK_MONOTONIC back
 *                        through a pipe         -> truncate-call-to-handler
 *   fsync DIR MIB ROUNDS   per round and for 0, 1 and all blocks
 *                        write-pinned: rewrite the whole file (untimed),
 *                        fsync (timed), fsync again with no write between
 *   seqwrite DIR MIB     a new file in 1 MiB writes: MiB/s until the last
 *                        write returns, and including a final fsync
 *
 * Env: PINBENCH_MAX_SECONDS caps each timed loop (default 60).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
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
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "pinfs/abi.h"

#define BENCH_NAME "pinbench"
#include "samples.h"

#define KIB 1024UL
#define MIB (1024UL * 1024UL)
#define BLK 4096UL
#define EXT (2 * MIB) /* a pinnable extent / a PMD page */

/* a FUSE ioctl round trip that does no work: unknown command, no argument */
#define NULL_IOC _IO(PINFS_IOC_MAGIC, 0x7f)

static double max_seconds = 60.0;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static double us(uint64_t ns)
{
	return (double)ns / 1e3;
}

/* ------------------------------------------------------------ samples -- */

static double mean(const struct samples *s)
{
	double t = 0;
	size_t i;

	for (i = 0; i < s->n; i++)
		t += s->v[i];
	return s->n ? t / (double)s->n : -1;
}

static void put(const char *key, double v)
{
	printf("%s %.3f\n", key, v);
}

/* KEY_p50 and KEY_p99 */
static void put_p(const char *key, struct samples *s)
{
	char k[96];

	snprintf(k, sizeof(k), "%s_p50", key);
	put(k, samples_pct(s, 50));
	snprintf(k, sizeof(k), "%s_p99", key);
	put(k, samples_pct(s, 99));
	snprintf(k, sizeof(k), "%s_n", key);
	printf("%s %zu\n", k, s->n);
}

/* --------------------------------------------------------------- files -- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1DULL;
}

static void *alloc_filled(size_t size)
{
	char *p;
	size_t i;

	if (posix_memalign((void **)&p, BLK, size))
		die("posix_memalign");
	for (i = 0; i < size; i += 8) {
		uint64_t v = rng();
		memcpy(p + i, &v, 8);
	}
	return p;
}

static char path_buf[4096];

static const char *at(const char *dir, const char *name)
{
	snprintf(path_buf, sizeof(path_buf), "%s/%s", dir, name);
	return path_buf;
}

/* A new file of @mib MiB written in 1 MiB writes (allocated, not sparse). */
static int make_file(const char *dir, const char *name, size_t bytes)
{
	static char *buf;
	size_t done;
	int fd;

	if (!buf)
		buf = alloc_filled(MIB);
	unlink(at(dir, name));
	fd = open(at(dir, name), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		die(path_buf);
	for (done = 0; done < bytes; done += MIB) {
		size_t n = bytes - done < MIB ? bytes - done : MIB;
		if (pwrite(fd, buf, n, (off_t)done) != (ssize_t)n)
			die("pwrite");
	}
	if (fsync(fd))
		die("fsync");
	return fd;
}

/* ------------------------------------------------------------ ioctls --- */

static int pin(int fd, uint64_t off, uint64_t len, uint32_t flags, struct pinfs_pin *p)
{
	memset(p, 0, sizeof(*p));
	p->offset = off;
	p->length = len;
	p->flags = flags;
	return ioctl(fd, PINFS_IOC_PIN, p) ? -errno : 0;
}

static int unpin(int fd, uint64_t id)
{
	struct pinfs_unpin u = { .lease_id = id };

	return ioctl(fd, PINFS_IOC_UNPIN, &u) ? -errno : 0;
}

static int get_stats(int fd, struct pinfs_stats *st)
{
	memset(st, 0, sizeof(*st));
	return ioctl(fd, PINFS_IOC_STATS, st) ? -errno : 0;
}

/* All segments of a lease (PINFS_IOC_SEGS past the first reply). */
static struct pinfs_seg *all_segs(int fd, const struct pinfs_pin *p, uint32_t *n)
{
	struct pinfs_seg *s = malloc((p->nsegs_total ? p->nsegs_total : 1) * sizeof(*s));
	struct pinfs_segs more;
	uint32_t have = p->nsegs;

	if (!s)
		die("malloc");
	memcpy(s, p->segs, p->nsegs * sizeof(*s));
	while (have < p->nsegs_total) {
		memset(&more, 0, sizeof(more));
		more.lease_id = p->lease_id;
		more.first = have;
		if (ioctl(fd, PINFS_IOC_SEGS, &more))
			die("PINFS_IOC_SEGS");
		if (!more.nsegs)
			break;
		memcpy(s + have, more.segs, more.nsegs * sizeof(*s));
		have += more.nsegs;
	}
	*n = have;
	return s;
}

static int open_pool(int fd)
{
	char path[4096];
	ssize_t n = fgetxattr(fd, PINFS_XATTR_POOL, path, sizeof(path) - 1);
	int pfd;

	if (n <= 0)
		die("getxattr " PINFS_XATTR_POOL);
	path[n] = 0;
	pfd = open(path, O_RDWR | O_CLOEXEC);
	if (pfd < 0)
		die(path);
	return pfd;
}

/* A PROT_NONE reservation of @len bytes whose address is @phase modulo
 * 2 MiB; munmap *base (*span bytes) to release it. */
static char *reserve(size_t len, uint64_t phase, char **base, size_t *span)
{
	char *p;
	uintptr_t a;

	*span = len + EXT;
	p = mmap(NULL, *span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		die("mmap reserve");
	a = ((uintptr_t)p + EXT - 1) & ~(uintptr_t)(EXT - 1);
	a += phase % EXT;
	if (a >= (uintptr_t)p + EXT)
		a -= EXT;
	*base = p;
	return (char *)a;
}

/* A lease mapped from the pool into one contiguous range. */
struct lmap {
	char *addr, *base;
	size_t len, span;
	uint32_t nsegs, aligned; /* segments; those with pool_off = file_off mod 2 MiB */
};

static void map_lease(int fd, int pfd, const struct pinfs_pin *p, struct lmap *m)
{
	uint32_t n, i;
	struct pinfs_seg *s = all_segs(fd, p, &n);

	memset(m, 0, sizeof(*m));
	m->len = p->pin_length;
	m->addr = reserve(m->len, n ? s[0].pool_off - (s[0].file_off - p->pin_offset) : 0, &m->base,
			  &m->span);
	for (i = 0; i < n; i++) {
		char *want = m->addr + (s[i].file_off - p->pin_offset);
		void *q = mmap(want, s[i].len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, pfd,
			       (off_t)s[i].pool_off);
		if (q == MAP_FAILED)
			die("mmap pool segment");
		m->aligned += (s[i].pool_off % EXT) == (s[i].file_off % EXT);
	}
	m->nsegs = n;
	free(s);
}

static void unmap_lease(struct lmap *m)
{
	munmap(m->base, m->span);
	memset(m, 0, sizeof(*m));
}

/* A plain MAP_SHARED file of @len bytes in @dir (a tmpfs), prefaulted. */
static char *plain_map(const char *dir, size_t len, char **base, size_t *span, char *name_out)
{
	char *a;
	int fd;

	snprintf(name_out, 4096, "%s/pinbench-base.XXXXXX", dir);
	fd = mkostemp(name_out, O_CLOEXEC);
	if (fd < 0)
		die(name_out);
	if (ftruncate(fd, (off_t)len))
		die("ftruncate base");
	a = reserve(len, 0, base, span);
	if (mmap(a, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED)
		die("mmap base");
	close(fd);
	return a;
}

static void touch(char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i += BLK)
		((volatile char *)p)[i] = (char)i;
}

/* kB of [a, a + len) that are mapped by PMDs, and resident, per smaps */
static void smaps_of(const void *a, size_t len, long *pmd_kb, long *rss_kb)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	uintptr_t lo = (uintptr_t)a, hi = lo + len;
	bool in = false;

	*pmd_kb = *rss_kb = 0;
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		long v;

		if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = s < hi && e > lo;
			continue;
		}
		if (!in)
			continue;
		if (sscanf(line, "ShmemPmdMapped: %ld kB", &v) == 1 ||
		    sscanf(line, "FilePmdMapped: %ld kB", &v) == 1)
			*pmd_kb += v;
		else if (sscanf(line, "Rss: %ld kB", &v) == 1)
			*rss_kb += v;
	}
	fclose(f);
}

static bool over_time(uint64_t t0)
{
	return (double)(now_ns() - t0) / 1e9 > max_seconds;
}

/* ---------------------------------------------------------------- rtt -- */

static int cmd_rtt(const char *dir, long n)
{
	struct samples snull = { 0 }, sget = { 0 }, sget2 = { 0 }, sstats = { 0 };
	struct samples spin = { 0 }, sunpin = { 0 }, spair = { 0 };
	struct samples swpin = { 0 }, swunpin = { 0 }, swpair = { 0 };
	static struct pinfs_pin p;
	struct pinfs_policy pol;
	struct pinfs_stats st;
	int fd = make_file(dir, "pinbench.rtt", 64 * KIB);
	uint64_t t0, t1, t2, start;
	long i, warm = n / 10 < 200 ? 200 : n / 10;
	int rc;

	errno = 0;
	if (ioctl(fd, NULL_IOC) == 0 || errno != ENOTTY) {
		fprintf(stderr, "pinbench: the null ioctl gave %s, not ENOTTY\n", strerror(errno));
		return 1;
	}
	start = now_ns();
	for (i = -warm; i < n; i++) {
		bool rec = i >= 0;

		t0 = now_ns();
		(void)ioctl(fd, NULL_IOC);
		t1 = now_ns();
		if (rec)
			samples_add(&snull, us(t1 - t0));

		memset(&pol, 0, sizeof(pol));
		t0 = now_ns();
		if (ioctl(fd, PINFS_IOC_GET_POLICY, &pol))
			die("PINFS_IOC_GET_POLICY");
		t1 = now_ns();
		if (ioctl(fd, PINFS_IOC_GET_POLICY, &pol))
			die("PINFS_IOC_GET_POLICY");
		t2 = now_ns();
		if (rec) {
			samples_add(&sget, us(t1 - t0));
			samples_add(&sget2, us(t2 - t0));
		}

		t0 = now_ns();
		if (get_stats(fd, &st))
			die("PINFS_IOC_STATS");
		t1 = now_ns();
		if (rec)
			samples_add(&sstats, us(t1 - t0));

		/* the block pinned moves over the 16 blocks of the file */
		memset(&p, 0, sizeof(p));
		p.offset = (uint64_t)((i + warm) % 16) * BLK;
		p.length = BLK;
		t0 = now_ns();
		rc = ioctl(fd, PINFS_IOC_PIN, &p);
		t1 = now_ns();
		if (rc)
			die("PINFS_IOC_PIN");
		if (unpin(fd, p.lease_id))
			die("PINFS_IOC_UNPIN");
		t2 = now_ns();
		if (rec) {
			samples_add(&spin, us(t1 - t0));
			samples_add(&sunpin, us(t2 - t1));
			samples_add(&spair, us(t2 - t0));
		}

		memset(&p, 0, sizeof(p));
		p.offset = (uint64_t)((i + warm) % 16) * BLK;
		p.length = BLK;
		p.flags = PINFS_PIN_WRITE | PINFS_PIN_REVOCABLE;
		t0 = now_ns();
		rc = ioctl(fd, PINFS_IOC_PIN, &p);
		t1 = now_ns();
		if (rc)
			die("PINFS_IOC_PIN (write)");
		if (unpin(fd, p.lease_id))
			die("PINFS_IOC_UNPIN");
		t2 = now_ns();
		if (rec) {
			samples_add(&swpin, us(t1 - t0));
			samples_add(&swunpin, us(t2 - t1));
			samples_add(&swpair, us(t2 - t0));
		}
		if (rec && (i & 63) == 63 && over_time(start)) {
			fprintf(stderr, "pinbench: rtt stopped after %ld rounds (time cap)\n", i + 1);
			break;
		}
	}
	put_p("null", &snull);
	put_p("getpol", &sget);
	put_p("getpol2", &sget2);
	put_p("stats", &sstats);
	put_p("pin", &spin);
	put_p("unpin", &sunpin);
	put_p("pinunpin", &spair);
	put_p("wpin", &swpin);
	put_p("wunpin", &swunpin);
	put_p("wpinunpin", &swpair);
	close(fd);
	unlink(at(dir, "pinbench.rtt"));
	return 0;
}

/* -------------------------------------------------------------- uring -- */

/* median µs of register + (apart) unregister of [a, a + len), reps times */
static void time_register(struct io_uring *ring, void *a, size_t len, int reps, double *reg,
			  double *unreg)
{
	struct samples r = { 0 }, u = { 0 };
	struct iovec iov = { a, len };
	int i, rc;

	for (i = -1; i < reps; i++) { /* one warm-up */
		uint64_t t0 = now_ns(), t1, t2;
		rc = io_uring_register_buffers(ring, &iov, 1);
		t1 = now_ns();
		if (rc) {
			errno = -rc;
			die("io_uring_register_buffers");
		}
		rc = io_uring_unregister_buffers(ring);
		t2 = now_ns();
		if (rc) {
			errno = -rc;
			die("io_uring_unregister_buffers");
		}
		if (i >= 0) {
			samples_add(&r, us(t1 - t0));
			samples_add(&u, us(t2 - t1));
		}
	}
	*reg = samples_pct(&r, 50);
	*unreg = samples_pct(&u, 50);
	free(r.v);
	free(u.v);
}

static int cmd_uring(const char *dir, const char *basedir, long mib)
{
	static const struct {
		const char *name;
		size_t len;
		int reps;
	} sz[] = { { "4k", 4 * KIB, 400 }, { "2m", 2 * MIB, 100 }, { "big", 0, 20 } };
	static struct pinfs_pin p;
	size_t len = (size_t)mib * MIB, span;
	char basename[4096], *bbase, *b;
	struct io_uring ring;
	struct lmap m;
	long pmd, rss;
	unsigned i;
	int fd, pfd, rc;

	rc = io_uring_queue_init(4, &ring, 0);
	if (rc) {
		errno = -rc;
		die("io_uring_queue_init");
	}
	/* sparse: the pin allocates pinnable (2 MiB-aligned) extents */
	unlink(at(dir, "pinbench.uring"));
	fd = open(at(dir, "pinbench.uring"), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || ftruncate(fd, (off_t)len))
		die(path_buf);
	pfd = open_pool(fd);
	if (pin(fd, 0, len, PINFS_PIN_WRITE, &p))
		die("PINFS_IOC_PIN");
	map_lease(fd, pfd, &p, &m);
	touch(m.addr, m.len);
	b = plain_map(basedir, len, &bbase, &span, basename);
	touch(b, len);
	for (i = 0; i < 3; i++) {
		size_t l = sz[i].len ? sz[i].len : len;
		double r, u;
		char k[64];

		time_register(&ring, m.addr, l, sz[i].reps, &r, &u);
		snprintf(k, sizeof(k), "reg_%s_pool", sz[i].name);
		put(k, r);
		snprintf(k, sizeof(k), "unreg_%s_pool", sz[i].name);
		put(k, u);
		time_register(&ring, b, l, sz[i].reps, &r, &u);
		snprintf(k, sizeof(k), "reg_%s_base", sz[i].name);
		put(k, r);
		snprintf(k, sizeof(k), "unreg_%s_base", sz[i].name);
		put(k, u);
	}
	smaps_of(m.addr, m.len, &pmd, &rss);
	printf("pool_pmd_pct %.1f\n", rss ? 100.0 * (double)pmd / (double)rss : 0.0);
	smaps_of(b, len, &pmd, &rss);
	printf("base_pmd_pct %.1f\n", rss ? 100.0 * (double)pmd / (double)rss : 0.0);
	printf("uring_mib %ld\nuring_segs %u\nuring_aligned_segs %u\n", mib, m.nsegs, m.aligned);
	io_uring_queue_exit(&ring);
	unmap_lease(&m);
	if (unpin(fd, p.lease_id))
		die("PINFS_IOC_UNPIN");
	munmap(bbase, span);
	unlink(basename);
	close(pfd);
	close(fd);
	unlink(at(dir, "pinbench.uring"));
	return 0;
}

/* --------------------------------------------------------------- copy -- */

static int cmd_copy(const char *dir, const char *basedir, long mib, long passes)
{
	static struct pinfs_pin p;
	size_t len = (size_t)mib * MIB, span;
	struct samples win = { 0 }, wbase = { 0 }, rin = { 0 }, rbase = { 0 };
	char basename[4096], *bbase, *b, *src, *dst, chk[BLK];
	struct lmap m;
	long i, pmd, rss;
	int fd, pfd, bad = 0;

	/* sparse file: the pin allocates its blocks (2 MiB-aligned, zeroed) */
	unlink(at(dir, "pinbench.copy"));
	fd = open(at(dir, "pinbench.copy"), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || ftruncate(fd, (off_t)len))
		die(path_buf);
	pfd = open_pool(fd);
	if (pin(fd, 0, len, PINFS_PIN_WRITE, &p))
		die("PINFS_IOC_PIN");
	map_lease(fd, pfd, &p, &m);
	b = plain_map(basedir, len, &bbase, &span, basename);
	src = alloc_filled(len);
	dst = alloc_filled(len);
	touch(m.addr, len);
	touch(b, len);
	for (i = -1; i < passes; i++) { /* one warm-up pass */
		uint64_t t0, t1, t2, t3, t4;

		t0 = now_ns();
		memcpy(m.addr, src, len);
		t1 = now_ns();
		memcpy(b, src, len);
		t2 = now_ns();
		memcpy(dst, m.addr, len);
		t3 = now_ns();
		memcpy(dst, b, len);
		t4 = now_ns();
		if (i < 0)
			continue;
		samples_add(&win, (double)len / MIB / ((double)(t1 - t0) / 1e9));
		samples_add(&wbase, (double)len / MIB / ((double)(t2 - t1) / 1e9));
		samples_add(&rin, (double)len / MIB / ((double)(t3 - t2) / 1e9));
		samples_add(&rbase, (double)len / MIB / ((double)(t4 - t3) / 1e9));
	}
	/* stores through the mapping are what read() returns */
	for (i = 0; i < 16; i++) {
		off_t off = (off_t)((rng() % (len / BLK)) * BLK);
		if (pread(fd, chk, BLK, off) != (ssize_t)BLK || memcmp(chk, src + off, BLK))
			bad++;
	}
	put("copy_in_map", samples_pct(&win, 50));
	put("copy_in_base", samples_pct(&wbase, 50));
	put("copy_out_map", samples_pct(&rin, 50));
	put("copy_out_base", samples_pct(&rbase, 50));
	smaps_of(m.addr, m.len, &pmd, &rss);
	printf("copy_map_pmd_pct %.1f\n", rss ? 100.0 * (double)pmd / (double)rss : 0.0);
	smaps_of(b, len, &pmd, &rss);
	printf("copy_base_pmd_pct %.1f\n", rss ? 100.0 * (double)pmd / (double)rss : 0.0);
	printf("copy_segs %u\ncopy_aligned_segs %u\n", m.nsegs, m.aligned);
	printf("copy_read_mismatch %d\n", bad);
	printf("copy_mib %ld\ncopy_passes %ld\n", mib, passes);
	unmap_lease(&m);
	if (unpin(fd, p.lease_id))
		die("PINFS_IOC_UNPIN");
	munmap(bbase, span);
	unlink(basename);
	close(pfd);
	close(fd);
	unlink(at(dir, "pinbench.copy"));
	return bad ? 1 : 0;
}

/* ----------------------------------------------------------- mapsetup -- */

static int cmd_mapsetup(const char *dir, long n)
{
	struct samples spin = { 0 }, smap = { 0 }, stouch = { 0 }, stotal = { 0 }, sreg = { 0 };
	static struct pinfs_pin p;
	size_t len = (size_t)n * EXT;
	long i, pmd_full = 0, aligned = 0, onepiece = 0;
	struct io_uring ring;
	struct lmap m;
	int fd, pfd, rc;

	rc = io_uring_queue_init(4, &ring, 0);
	if (rc) {
		errno = -rc;
		die("io_uring_queue_init");
	}
	/* sparse, then one untimed pin of it all: the pin allocates the
	 * blocks as pinnable (2 MiB-aligned) extents and zeroes them, so the
	 * pool pages exist before the timed part, as for any written file */
	unlink(at(dir, "pinbench.maps"));
	fd = open(at(dir, "pinbench.maps"), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || ftruncate(fd, (off_t)len))
		die(path_buf);
	pfd = open_pool(fd);
	if (pin(fd, 0, len, PINFS_PIN_WRITE, &p) || unpin(fd, p.lease_id))
		die("PINFS_IOC_PIN/UNPIN (allocation)");
	for (i = 0; i < n; i++) {
		uint64_t t0, t1, t2, t3, t4;
		struct iovec iov;
		long pmd, rss;

		t0 = now_ns();
		if (pin(fd, (uint64_t)i * EXT, EXT, PINFS_PIN_WRITE, &p))
			die("PINFS_IOC_PIN");
		t1 = now_ns();
		map_lease(fd, pfd, &p, &m);
		t2 = now_ns();
		touch(m.addr, m.len);
		t3 = now_ns();
		iov.iov_base = m.addr;
		iov.iov_len = m.len;
		rc = io_uring_register_buffers(&ring, &iov, 1);
		t4 = now_ns();
		if (rc) {
			errno = -rc;
			die("io_uring_register_buffers");
		}
		io_uring_unregister_buffers(&ring);
		samples_add(&spin, us(t1 - t0));
		samples_add(&smap, us(t2 - t1));
		samples_add(&stouch, us(t3 - t2));
		samples_add(&stotal, us(t3 - t0));
		samples_add(&sreg, us(t4 - t3));
		smaps_of(m.addr, m.len, &pmd, &rss);
		pmd_full += pmd == (long)(EXT / KIB);
		aligned += m.aligned == m.nsegs;
		onepiece += m.nsegs == 1;
		unmap_lease(&m);
		if (unpin(fd, p.lease_id))
			die("PINFS_IOC_UNPIN");
	}
	put("ms_pin", samples_pct(&spin, 50));
	put("ms_mmap", samples_pct(&smap, 50));
	put("ms_touch", samples_pct(&stouch, 50));
	put("ms_total", samples_pct(&stotal, 50));
	put("ms_total_p99", samples_pct(&stotal, 99));
	put("ms_reg", samples_pct(&sreg, 50));
	printf("ms_extents %ld\nms_aligned %ld\nms_onepiece %ld\nms_pmd %ld\n", n, aligned, onepiece,
	       pmd_full);
	io_uring_queue_exit(&ring);
	close(pfd);
	close(fd);
	unlink(at(dir, "pinbench.maps"));
	return 0;
}

/* ------------------------------------------------------------- holder -- */

/* A child process that holds pins: the pins belong to *its* process. It
 * obeys binary commands from a pipe and answers each one. */
enum { H_PIN_MANY = 1, H_PIN = 2, H_UNPIN = 3, H_EXIT = 4 };
struct hcmd {
	int op;
	uint32_t flags;
	uint64_t a, b;
};
struct hrep {
	int64_t rc;
	uint64_t v;
};
struct sigmsg { /* from the SIGBUS handler */
	uint64_t t_ns, lease;
	int32_t code, signo;
};

struct holder {
	pid_t pid;
	int cmd, rep; /* parent's ends */
};

static int sig_wfd = -1;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	struct sigmsg m;
	struct timespec ts;
	int e = errno;

	(void)uc;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	m.t_ns = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
	m.lease = (uint64_t)(uintptr_t)si->si_value.sival_ptr;
	m.code = si->si_code;
	m.signo = sig;
	if (sig_wfd >= 0 && write(sig_wfd, &m, sizeof(m)) < 0) {
		/* nothing to do in a handler */
	}
	errno = e;
}

static void rd_all(int fd, void *p, size_t n)
{
	char *c = p;

	while (n) {
		ssize_t k = read(fd, c, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			_exit(k < 0 ? 1 : 0); /* parent gone: exit (the pins end with us) */
		c += k;
		n -= (size_t)k;
	}
}

/* the holder's main loop; @fds: files it may pin (index = cmd.b for H_PIN) */
static void holder_main(int cin, int rout, const int *fds, int nfds)
{
	static struct pinfs_pin p;
	uint64_t count = 0;
	struct hcmd c;
	struct hrep r;

	for (;;) {
		rd_all(cin, &c, sizeof(c));
		memset(&r, 0, sizeof(r));
		switch (c.op) {
		case H_PIN_MANY: /* reach c.a pins: block k of file k % nfds, block k / nfds */
			while (count < c.a) {
				int f = fds[count % (uint64_t)nfds];
				uint64_t blk = count / (uint64_t)nfds;
				int rc = pin(f, blk * BLK, BLK, c.flags, &p);
				if (rc) {
					r.rc = rc;
					break;
				}
				count++;
			}
			r.v = count;
			break;
		case H_PIN:
			r.rc = pin(fds[c.b], c.a, BLK, c.flags, &p);
			r.v = p.lease_id;
			break;
		case H_UNPIN:
			r.rc = unpin(fds[c.b], c.a);
			break;
		case H_EXIT:
		default:
			_exit(0);
		}
		if (write(rout, &r, sizeof(r)) != sizeof(r))
			_exit(1);
	}
}

static void holder_start(struct holder *h, const int *fds, int nfds, bool sigbus, int sig_w)
{
	int c[2], r[2];

	if (pipe2(c, O_CLOEXEC) || pipe2(r, O_CLOEXEC))
		die("pipe");
	h->pid = fork();
	if (h->pid < 0)
		die("fork");
	if (h->pid == 0) {
		close(c[1]);
		close(r[0]);
		if (sigbus) {
			struct sigaction sa;
			memset(&sa, 0, sizeof(sa));
			sa.sa_sigaction = on_sigbus;
			sa.sa_flags = SA_SIGINFO | SA_RESTART;
			sigemptyset(&sa.sa_mask);
			sigaction(SIGBUS, &sa, NULL);
			sig_wfd = sig_w;
		}
		holder_main(c[0], r[1], fds, nfds);
	}
	close(c[0]);
	close(r[1]);
	h->cmd = c[1];
	h->rep = r[0];
}

static struct hrep holder_do(struct holder *h, int op, uint64_t a, uint64_t b, uint32_t flags)
{
	struct hcmd c = { op, flags, a, b };
	struct hrep r;
	size_t got = 0;

	if (write(h->cmd, &c, sizeof(c)) != sizeof(c))
		die("write to holder");
	while (got < sizeof(r)) {
		ssize_t k = read(h->rep, (char *)&r + got, sizeof(r) - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			fprintf(stderr, "pinbench: the holder died\n");
			exit(1);
		}
		got += (size_t)k;
	}
	return r;
}

static void holder_stop(struct holder *h)
{
	struct hcmd c = { H_EXIT, 0, 0, 0 };
	int st;

	if (write(h->cmd, &c, sizeof(c)) < 0) {
		/* it is gone already */
	}
	close(h->cmd);
	close(h->rep);
	waitpid(h->pid, &st, 0);
}

/* mount-wide pins, asked on a file that holds none (the per-file part of
 * the reply walks the file's leases) */
static uint64_t mount_pins(int probe)
{
	struct pinfs_stats st;

	if (get_stats(probe, &st))
		die("PINFS_IOC_STATS");
	return st.mount.pins;
}

/* -------------------------------------------------------------- trunc -- */

/* ITERS rounds (after 5 warm-up ones) of: extend @fd from @s0 by 1 MiB
 * (untimed), ftruncate it back to @s0 (timed, added to @s) */
static void trunc_rounds(int fd, uint64_t s0, const char *buf, long iters, struct samples *s)
{
	uint64_t t0 = now_ns();
	long i;

	for (i = -5; i < iters; i++) {
		uint64_t a, b;

		if (pwrite(fd, buf, MIB, (off_t)s0) != (ssize_t)MIB)
			die("pwrite (extend)");
		a = now_ns();
		if (ftruncate(fd, (off_t)s0))
			die("ftruncate");
		b = now_ns();
		if (i >= 0)
			samples_add(s, us(b - a));
		if (i > 10 && over_time(t0))
			break;
	}
}

static void put_trunc(const char *key, struct samples *s)
{
	char k[64];

	put_p(key, s);
	snprintf(k, sizeof(k), "%s_mean", key);
	put(k, mean(s));
}

/* Cycles of: a fresh holder; for each count N1 < N2 < ...: the holder takes
 * pins up to that count, ITERS truncates; the holder exits (its pins end),
 * then ITERS truncates with no pins as a control. Cycling spreads slow
 * phases of the machine over all counts instead of one. */
static int cmd_trunc(const char *dir, long iters, long cycles, long nc, char **counts)
{
	struct samples *s = calloc((size_t)nc + 1, sizeof(*s));
	double *setup = calloc((size_t)nc, sizeof(*setup)), release = 0;
	uint64_t *mpins = calloc((size_t)nc, sizeof(*mpins));
	long maxn = 0, k, c;
	size_t head;
	uint64_t s0, t0, left = 0;
	int fds[2], probe;
	char *buf = alloc_filled(MIB), key[64];

	if (!s || !setup || !mpins)
		die("calloc");
	for (k = 0; k < nc; k++)
		if (parse_long(counts[k]) > maxn)
			maxn = parse_long(counts[k]);
	/* pins alternate between the head of T and file O: each needs
	 * maxn / 2 blocks, rounded up to whole MiB; T's tail (4 MiB and the
	 * extension) is never pinned */
	head = (((size_t)(maxn + 1) / 2 * BLK + MIB - 1) / MIB) * MIB;
	if (!head)
		head = MIB;
	fds[0] = make_file(dir, "pinbench.T", head + 4 * MIB);
	fds[1] = make_file(dir, "pinbench.O", head);
	probe = make_file(dir, "pinbench.probe", BLK);
	s0 = head + 4 * MIB;
	for (c = 0; c < cycles; c++) {
		struct holder h;

		holder_start(&h, fds, 2, false, -1);
		for (k = 0; k < nc; k++) {
			long want = parse_long(counts[k]);
			struct hrep r;

			t0 = now_ns();
			r = holder_do(&h, H_PIN_MANY, (uint64_t)want, 0, 0);
			if (r.rc) {
				fprintf(stderr, "pinbench: holder stopped at %" PRIu64 " pins: %s\n",
					r.v, strerror((int)-r.rc));
				return 1;
			}
			setup[k] += (double)(now_ns() - t0) / 1e9 / (double)cycles;
			mpins[k] = mount_pins(probe);
			trunc_rounds(fds[0], s0, buf, iters, &s[k]);
		}
		/* the holder exits: its pins end through the daemon's pidfd watcher */
		t0 = now_ns();
		holder_stop(&h);
		while ((left = mount_pins(probe)) && (double)(now_ns() - t0) / 1e9 < 60)
			usleep(1000);
		release += (double)(now_ns() - t0) / 1e6 / (double)cycles;
		trunc_rounds(fds[0], s0, buf, iters, &s[nc]);
	}
	for (k = 0; k < nc; k++) {
		long want = parse_long(counts[k]);

		snprintf(key, sizeof(key), "trunc_%ld", want);
		put_trunc(key, &s[k]);
		snprintf(key, sizeof(key), "trunc_%ld_pinsetup_s", want);
		put(key, setup[k]);
		snprintf(key, sizeof(key), "trunc_%ld_mount_pins", want);
		printf("%s %" PRIu64 "\n", key, mpins[k]);
		free(s[k].v);
	}
	put_trunc("trunc_0after", &s[nc]);
	put("trunc_exit_release_ms", release);
	printf("trunc_exit_left %" PRIu64 "\ntrunc_cycles %ld\n", left, cycles);
	close(fds[0]);
	close(fds[1]);
	close(probe);
	unlink(at(dir, "pinbench.T"));
	unlink(at(dir, "pinbench.O"));
	unlink(at(dir, "pinbench.probe"));
	free(s[nc].v);
	free(s);
	free(setup);
	free(mpins);
	free(buf);
	return 0;
}

/* ------------------------------------------------------------- revoke -- */

static int cmd_revoke(const char *dir, long iters)
{
	struct samples ssig = { 0 }, sret = { 0 }, snopin = { 0 };
	const size_t size = 2 * MIB;
	char *blk = alloc_filled(BLK);
	long i, missed = 0, wrong = 0, before = 0;
	struct pinfs_policy pol = { 0 };
	struct holder h;
	int fds[1], sp[2];
	uint64_t start;

	fds[0] = make_file(dir, "pinbench.R", size);
	if (ioctl(fds[0], PINFS_IOC_GET_POLICY, &pol))
		die("PINFS_IOC_GET_POLICY");
	if (pol.effective != PINFS_POLICY_REVOKE) {
		fprintf(stderr, "pinbench: the file's policy is %u, not revoke\n", pol.effective);
		return 1;
	}
	if (pipe2(sp, O_CLOEXEC))
		die("pipe");
	holder_start(&h, fds, 1, true, sp[1]);
	close(sp[1]);
	start = now_ns();
	for (i = -5; i < iters; i++) { /* 5 warm-up rounds */
		struct hrep r = holder_do(&h, H_PIN, size - BLK, 0, PINFS_PIN_REVOCABLE);
		struct pollfd pf = { sp[0], POLLIN, 0 };
		struct sigmsg m;
		uint64_t t0, t1;

		if (r.rc) {
			errno = (int)-r.rc;
			die("holder PINFS_IOC_PIN");
		}
		t0 = now_ns();
		if (ftruncate(fds[0], (off_t)(size - BLK)))
			die("ftruncate (revoke)");
		t1 = now_ns();
		if (poll(&pf, 1, 2000) != 1 || read(sp[0], &m, sizeof(m)) != sizeof(m)) {
			missed++;
		} else if (m.signo != SIGBUS || m.code != SI_QUEUE || m.lease != r.v) {
			wrong++;
		} else if (i >= 0) {
			samples_add(&ssig, us(m.t_ns - t0));
			samples_add(&sret, us(t1 - t0));
			before += m.t_ns <= t1;
		}
		/* acknowledge: the quarantined block is freed */
		r = holder_do(&h, H_UNPIN, r.v, 0, 0);
		if (r.rc) {
			errno = (int)-r.rc;
			die("holder PINFS_IOC_UNPIN");
		}
		if (pwrite(fds[0], blk, BLK, (off_t)(size - BLK)) != (ssize_t)BLK)
			die("pwrite (re-extend)");
		/* baseline: the same 4 KiB truncate, nothing pinned */
		t0 = now_ns();
		if (ftruncate(fds[0], (off_t)(size - BLK)))
			die("ftruncate (baseline)");
		t1 = now_ns();
		if (i >= 0)
			samples_add(&snopin, us(t1 - t0));
		if (pwrite(fds[0], blk, BLK, (off_t)(size - BLK)) != (ssize_t)BLK)
			die("pwrite (re-extend)");
		if (i > 10 && over_time(start))
			break;
	}
	holder_stop(&h);
	put_p("revoke_sig", &ssig);
	put("revoke_sig_max", samples_pct(&ssig, 100));
	put_p("revoke_ret", &sret);
	put_p("revoke_nopin", &snopin);
	printf("revoke_missed %ld\nrevoke_wrong %ld\nrevoke_sig_before_return %ld\n", missed, wrong,
	       before);
	close(sp[0]);
	close(fds[0]);
	unlink(at(dir, "pinbench.R"));
	free(blk);
	return missed || wrong ? 1 : 0;
}

/* -------------------------------------------------------------- fsync -- */

static int cmd_fsync(const char *dir, long mib, long rounds)
{
	static const char *const name[] = { "0", "1", "all" };
	struct samples sf[3] = { { 0 } }, sr[3] = { { 0 } };
	uint64_t flushed[3] = { 0 }, reflushed[3] = { 0 };
	size_t len = (size_t)mib * MIB, off;
	char *buf = alloc_filled(MIB);
	static struct pinfs_pin p;
	struct pinfs_stats st;
	long r;
	int fd = make_file(dir, "pinbench.F", len), mode;

	for (r = -1; r < rounds; r++) { /* one warm-up round */
		for (mode = 0; mode < 3; mode++) {
			uint64_t t0, t1, t2, f0, f1, f2;
			bool pinned = mode > 0;

			if (pinned && pin(fd, 0, mode == 1 ? BLK : len, PINFS_PIN_WRITE, &p))
				die("PINFS_IOC_PIN");
			for (off = 0; off < len; off += MIB)
				if (pwrite(fd, buf, MIB, (off_t)off) != (ssize_t)MIB)
					die("pwrite");
			if (get_stats(fd, &st))
				die("PINFS_IOC_STATS");
			f0 = st.file.flushed_integrity;
			t0 = now_ns();
			if (fsync(fd))
				die("fsync");
			t1 = now_ns();
			if (get_stats(fd, &st))
				die("PINFS_IOC_STATS");
			f1 = st.file.flushed_integrity;
			t2 = now_ns();
			if (fsync(fd)) /* nothing written since */
				die("fsync");
			t2 = now_ns() - t2;
			if (get_stats(fd, &st))
				die("PINFS_IOC_STATS");
			f2 = st.file.flushed_integrity;
			if (pinned && unpin(fd, p.lease_id))
				die("PINFS_IOC_UNPIN");
			if (r < 0)
				continue;
			samples_add(&sf[mode], us(t1 - t0));
			samples_add(&sr[mode], us(t2));
			flushed[mode] = f1 - f0;
			reflushed[mode] = f2 - f1;
		}
	}
	for (mode = 0; mode < 3; mode++) {
		char k[64];

		snprintf(k, sizeof(k), "fsync_%s", name[mode]);
		put(k, samples_pct(&sf[mode], 50));
		snprintf(k, sizeof(k), "refsync_%s", name[mode]);
		put(k, samples_pct(&sr[mode], 50));
		snprintf(k, sizeof(k), "fsync_%s_blocks", name[mode]);
		printf("%s %" PRIu64 "\n", k, flushed[mode]);
		snprintf(k, sizeof(k), "refsync_%s_blocks", name[mode]);
		printf("%s %" PRIu64 "\n", k, reflushed[mode]);
	}
	printf("fsync_mib %ld\nfsync_rounds %ld\n", mib, rounds);
	close(fd);
	unlink(at(dir, "pinbench.F"));
	free(buf);
	return 0;
}

/* ----------------------------------------------------------- seqwrite -- */

static int cmd_seqwrite(const char *dir, long mib)
{
	char *buf = alloc_filled(MIB);
	struct pinfs_stats st;
	uint64_t t0, t1, t2, bg0;
	long i;
	int fd;

	unlink(at(dir, "pinbench.W"));
	fd = open(at(dir, "pinbench.W"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		die(path_buf);
	if (get_stats(fd, &st))
		die("PINFS_IOC_STATS");
	bg0 = st.mount.flushed_background;
	t0 = now_ns();
	for (i = 0; i < mib; i++)
		if (write(fd, buf, MIB) != (ssize_t)MIB)
			die("write");
	t1 = now_ns();
	if (fsync(fd))
		die("fsync");
	t2 = now_ns();
	if (get_stats(fd, &st))
		die("PINFS_IOC_STATS");
	put("sw_write", (double)mib / ((double)(t1 - t0) / 1e9));
	put("sw_fsync", (double)mib / ((double)(t2 - t0) / 1e9));
	printf("sw_bg_blocks %" PRIu64 "\n", st.mount.flushed_background - bg0);
	close(fd);
	unlink(at(dir, "pinbench.W"));
	free(buf);
	return 0;
}

static void usage(void) __attribute__((noreturn));
static void usage(void)
{
	fprintf(stderr, "usage: pinbench rtt DIR N\n"
			"       pinbench uring DIR BASEDIR MIB\n"
			"       pinbench copy DIR BASEDIR MIB PASSES\n"
			"       pinbench mapsetup DIR EXTENTS\n"
			"       pinbench trunc DIR ITERS CYCLES N1 [N2 ...]\n"
			"       pinbench revoke DIR ITERS\n"
			"       pinbench fsync DIR MIB ROUNDS\n"
			"       pinbench seqwrite DIR MIB\n"
			"env: PINBENCH_MAX_SECONDS (per timed loop, default 60)\n");
	exit(1);
}

int main(int argc, char **argv)
{
	const char *env = getenv("PINBENCH_MAX_SECONDS");
	const char *cmd;

	if (env && atof(env) > 0)
		max_seconds = atof(env);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 3)
		usage();
	cmd = argv[1];
	if (!strcmp(cmd, "rtt") && argc == 4)
		return cmd_rtt(argv[2], parse_long(argv[3]));
	if (!strcmp(cmd, "uring") && argc == 5)
		return cmd_uring(argv[2], argv[3], parse_long(argv[4]));
	if (!strcmp(cmd, "copy") && argc == 6)
		return cmd_copy(argv[2], argv[3], parse_long(argv[4]), parse_long(argv[5]));
	if (!strcmp(cmd, "mapsetup") && argc == 4)
		return cmd_mapsetup(argv[2], parse_long(argv[3]));
	if (!strcmp(cmd, "trunc") && argc >= 6)
		return cmd_trunc(argv[2], parse_long(argv[3]), parse_long(argv[4]), argc - 5, argv + 5);
	if (!strcmp(cmd, "revoke") && argc == 4)
		return cmd_revoke(argv[2], parse_long(argv[3]));
	if (!strcmp(cmd, "fsync") && argc == 5)
		return cmd_fsync(argv[2], parse_long(argv[3]), parse_long(argv[4]));
	if (!strcmp(cmd, "seqwrite") && argc == 4)
		return cmd_seqwrite(argv[2], parse_long(argv[3]));
	usage();
}

/* SPDX-License-Identifier: MIT */
/*
 * pmem/sever.c -- freed blocks leave the pool file before they are reused.
 *
 * A kernel pin outlives every intention: io_uring fixed buffers (and RDMA
 * memory regions) hold the *pages* a holder registered, not its mapping, and
 * keep them through UNPIN, revocation, munmap, fork and exit of the process
 * that registered them. If such a page is still the pool file's page when
 * its block goes to another file, the stale pin writes into that file. So
 * a block is cut out of the pool file (fallocate PUNCH_HOLE) between its
 * free and its reuse. On a page-cache backing (tmpfs, hugetlbfs) that does
 * what page-cache truncate does: the pinned page leaves the file and lives
 * on, orphaned, with its pin; the pool gets a fresh zero page at the next
 * touch. It also gives a tmpfs pool's memory back (du of the pool falls).
 *
 * Not every punch severs. A 4 KiB punch inside a huge page zeroes the range
 * but leaves the page in the file when the huge page cannot be split, which
 * is exactly the case when a pin holds it (tmpfs huge=always), and
 * hugetlbfs never splits. So a block that a lease may have exposed --
 * one quarantined until its lease ended, or one a lease ended on while a
 * file still owned it ("tainted") -- is checked after the punch with
 * mincore() on the daemon's own mapping: the punch unmapped every PTE of the
 * range, so a page still counted is still in the file. Such a block is
 * punched again with its whole huge page when every other block of that
 * page is free; otherwise it stays out of the free list ("unsevered") and
 * pm_sever_retry() tries again (the flusher calls it every interval).
 *
 * Cutting a block out does nothing to a process that maps the pool file:
 * its next store faults a fresh page back in, at the same offset. The
 * lease manager reads the holder's maps when a lease ends (and everyone's
 * when the holder has children or exits), but a grandchild reparented by
 * a double fork escapes that. So before a block a lease covered is given
 * back, every process's maps are read (pm_pin_hooks.mappings, once per
 * batch, by the severer thread with no lock held): a block some process
 * still maps stays held back ("unsevered") and is retried.
 *
 * Blocks no lease ever covered are punched only where that returns memory
 * without splitting a huge page: their page can hold no kernel pin through
 * pinfs, and a process that maps the pool file itself is trusted like the
 * daemon (README: the trust boundary).
 *
 * What cannot be cut out: a device (devdax, or a file system without
 * PUNCH_HOLE). The kernel lets devdax pages be pinned long-term, and
 * nothing here can take them back; the mount log says so once. On an fsdax
 * file system the kernel refuses long-term pins (FOLL_LONGTERM) outright,
 * and the punch waits for short-term ones (dax_layout_busy_page).
 *
 * Dense pools (-o dense, backing.c): a run punched and given back is
 * queued (fs->zpend), and the severer backs it again with zeroed pages
 * once the pool is idle, still free and off every lock, marking it in
 * fs->zmap only if no block was taken meanwhile (zero_some).
 *
 * Locking: the taint bitmap, the unsevered runs and the counters are
 * protected by fs->lock; the severer's queues by fs->sv_lock (see the
 * severer below, and pmem/fs_int.h for the order). A block is taken in
 * fs->bmap from its free until it is given back, so nobody is handed it
 * between its punch and the check.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "pmem/fs_int.h"

#ifndef HUGETLBFS_MAGIC
#define HUGETLBFS_MAGIC 0x958458f6
#endif
#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif

/* Is the tmpfs behind @st_dev mounted with huge pages (huge=always,
 * within_size or advise), or does the machine force them on all tmpfs? */
static bool tmpfs_huge(dev_t st_dev)
{
	char *line = NULL, want[32], force[64] = "";
	size_t cap = 0;
	bool huge = false;
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "re");

	if (f) {
		/* "always within_size advise [never] deny force": [x] is set */
		if (fgets(force, sizeof(force), f) && strstr(force, "[force]"))
			huge = true;
		fclose(f);
	}
	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return huge;
	snprintf(want, sizeof(want), " %u:%u ", major(st_dev), minor(st_dev));
	while (!huge && getline(&line, &cap, f) > 0) {
		char *opts;

		if (!strstr(line, want))
			continue;
		/* super options follow " - tmpfs SOURCE " */
		opts = strstr(line, " - ");
		if (opts && strstr(opts, "huge=") && !strstr(opts, "huge=never"))
			huge = true;
	}
	free(line);
	fclose(f);
	return huge;
}

void pm_sever_init(struct pm_fs *fs)
{
	struct pm_pool *p = fs->pool;
	struct statfs sfs;
	struct stat st;

	fs->sever_gran = 1;
	fs->sever_how = PM_SEVER_NONE;
	if (p->fd < 0 || p->rdonly || fstat(p->fd, &st) < 0)
		return;
	if (!S_ISREG(st.st_mode)) {
		fs->sever_how = PM_SEVER_DEVICE;
		return;
	}
	fs->sever_how = PM_SEVER_PUNCH;
	if (fstatfs(p->fd, &sfs) == 0 && (uint64_t)sfs.f_type == HUGETLBFS_MAGIC &&
	    sfs.f_bsize > PM_BLOCK_SIZE) {
		fs->sever_how = PM_SEVER_HUGETLB;
		fs->sever_gran = (uint64_t)sfs.f_bsize / PM_BLOCK_SIZE;
	} else if (fstatfs(p->fd, &sfs) == 0 && (uint64_t)sfs.f_type == TMPFS_MAGIC &&
		   tmpfs_huge(st.st_dev)) {
		fs->sever_gran = PM_ALIGN_BLOCKS;
	}
	if (p->is_pmem)
		fs->sever_how = PM_SEVER_DAX;
}

const char *pm_sever_describe(struct pm_fs *fs)
{
	switch (fs->sever_how) {
	case PM_SEVER_PUNCH:
		return fs->sever_gran > 1
			       ? "freed blocks are cut out of the pool file before reuse "
				 "(huge pages: a block whose pinned huge page cannot split "
				 "waits until it can)"
			       : "freed blocks are cut out of the pool file before reuse "
				 "(a stale kernel pin keeps an orphaned page)";
	case PM_SEVER_HUGETLB:
		return "hugetlbfs: a freed block that a lease covered is reused once its "
		       "whole huge page can be cut out of the pool file";
	case PM_SEVER_DAX:
		return "DAX: the kernel refuses long-term pins of the pool (FOLL_LONGTERM); "
		       "freed blocks are cut out before reuse";
	case PM_SEVER_DEVICE:
		return "a device cannot cut freed blocks out: a kernel pin (RDMA, io_uring "
		       "fixed buffers) that outlives its lease could reach a reused block";
	default:
		return "freed blocks are not cut out of the pool";
	}
}

/* Blocks cut out per fallocate call. A punch holds the pool file's inode
 * lock, and so does every fallocate that backs an allocation (backing.c):
 * one call for a 256 MiB unlink held that lock for ~80 ms on tmpfs, and a
 * writer's allocation waited that long. 2 MiB at a time (~0.6 ms) lets it
 * in between. A huge-page backing punches in one call: two calls that
 * each cover part of a huge page zero it where one call frees it. */
#define PUNCH_STEP 512u

/* Cuts blocks [b, b+n) out of the pool file. 0 or -errno; the first
 * failure of each kind is logged, and a backing that cannot punch at all
 * is not asked again. */
static int punch(struct pm_fs *fs, uint64_t b, uint64_t n)
{
	static int said;
	uint64_t step = fs->sever_gran > 1 ? n : PUNCH_STEP, k;

	if (fs->sever_how == PM_SEVER_NONE || fs->sever_how == PM_SEVER_DEVICE || !n)
		return -EOPNOTSUPP;
	for (; n; b += k, n -= k) {
		k = n < step ? n : step;
		if (fallocate(fs->pool->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)(b << PM_BLOCK_SHIFT), (off_t)(k << PM_BLOCK_SHIFT)) != 0)
			break;
	}
	if (!n)
		return 0;
	if (errno == EOPNOTSUPP || errno == ENODEV) {
		fs->sever_how = PM_SEVER_DEVICE;
		fprintf(stderr, "pinfs: the pool cannot punch holes (%s): %s\n", strerror(errno),
			pm_sever_describe(fs));
		return -EOPNOTSUPP;
	}
	if (!__atomic_exchange_n(&said, 1, __ATOMIC_RELAXED))
		fprintf(stderr, "pinfs: fallocate(PUNCH_HOLE) of pool blocks %" PRIu64 "+%" PRIu64
				" failed: %s\n", b, n, strerror(errno));
	return -errno;
}

/* Does the pool file still hold a page under any block of [b, b+n)? The
 * first such block in *@first. Unknown (mincore failed): yes. */
static bool resident(struct pm_fs *fs, uint64_t b, uint64_t n, uint64_t *first)
{
	unsigned char vec[512];
	uint64_t done = 0;

	while (done < n) {
		uint64_t k = n - done < sizeof(vec) ? n - done : sizeof(vec), i;

		if (mincore(pm_block_ptr(fs->pool, b + done), k << PM_BLOCK_SHIFT, vec) < 0) {
			*first = b + done;
			return true;
		}
		for (i = 0; i < k; i++)
			if (vec[i] & 1) {
				*first = b + done + i;
				return true;
			}
		done += k;
	}
	return false;
}

/* Must block @b be severed before reuse (a lease ended on it while a file
 * owned it)? Every block, when the bitmap could not be had. */
static bool tainted(const struct pm_fs *fs, uint64_t b)
{
	if (!fs->taint)
		return fs->taint_lost;
	return (fs->taint[b >> 6] >> (b & 63)) & 1;
}

/* Is any block of [b, e) tainted? */
static bool any_tainted(const struct pm_fs *fs, uint64_t b, uint64_t e)
{
	if (!fs->taint && !fs->taint_lost)
		return false; /* no lease has ended on a file's block yet */
	for (; b < e; b++)
		if (tainted(fs, b))
			return true;
	return false;
}

static void untaint(struct pm_fs *fs, uint64_t b, uint64_t n)
{
	uint64_t i;

	for (i = b; fs->taint && i < b + n; i++)
		fs->taint[i >> 6] &= ~(1ull << (i & 63));
}

void pm_sever_taint(struct pm_fs *fs, uint64_t b, uint64_t n)
{
	uint64_t i;

	if (!fs->taint) {
		fs->taint = calloc(PM_DIV_UP(fs->nblocks, 64), sizeof(uint64_t));
		if (!fs->taint) {
			fs->taint_lost = true; /* every block is checked then */
			return;
		}
	}
	for (i = b; i < b + n && i < fs->nblocks; i++)
		fs->taint[i >> 6] |= 1ull << (i & 63);
}

/* Is block @b in an unsevered run? */
static bool unsevered(const struct pm_fs *fs, uint64_t b)
{
	size_t i;

	for (i = 0; i < fs->nunsev; i++)
		if (b >= fs->unsev[i].start && b < fs->unsev[i].start + fs->unsev[i].n)
			return true;
	return false;
}

/* Are all blocks of [lo, hi) but those in [b, e) allocatable, or waiting
 * to be severed themselves? Then the whole range may be punched. */
static bool others_free(const struct pm_fs *fs, uint64_t lo, uint64_t hi, uint64_t b, uint64_t e)
{
	uint64_t i;

	if (lo < fs->data_start || hi > fs->nblocks)
		return false;
	for (i = lo; i < hi; i++) {
		if (i >= b && i < e)
			continue;
		if ((fs->bmap[i >> 6] >> (i & 63)) & 1 && !unsevered(fs, i))
			return false;
	}
	return true;
}

static void keep_unsevered(struct pm_fs *fs, uint64_t b, uint64_t n)
{
	if (fs->nunsev == fs->capunsev) {
		size_t ncap = fs->capunsev ? 2 * fs->capunsev : 16;
		struct pm_run *nv = realloc(fs->unsev, ncap * sizeof(*nv));
		if (!nv) {
			/* cannot remember them: they stay in use until the
			 * next mount (leaking is safe, reusing is not) */
			fs->unsev_lost += n;
			return;
		}
		fs->unsev = nv;
		fs->capunsev = ncap;
	}
	fs->unsev[fs->nunsev].start = b;
	fs->unsev[fs->nunsev++].n = n;
	fs->unsev_blocks += n;
}

/*
 * Blocks [b, e), inside one page of the backing (sever_gran blocks; with
 * 4 KiB pages any run), must
 * leave the pool file before reuse. Returns how many of them, from @b on,
 * are severed (the rest stay out of the free list).
 */
static uint64_t sever_piece(struct pm_fs *fs, uint64_t b, uint64_t e)
{
	uint64_t g = fs->sever_gran, lo = b / g * g, hi = lo + g, first;

	if (punch(fs, b, e - b) < 0) {
		/* nothing can cut it out: a device (the log said so) */
		return e - b;
	}
	if (!resident(fs, b, e - b, &first))
		return e - b;
	/* a huge page that could not split (a pin holds it, or hugetlbfs):
	 * the whole page goes, if nothing else lives in it */
	if (g > 1 && others_free(fs, lo, hi, b, e) && punch(fs, lo, hi - lo) == 0 &&
	    !resident(fs, b, e - b, &first))
		return e - b;
	return first - b;
}

/* Makes [b, e) allocatable, after sever or not; counted as severed when
 * @sev. */
static void zq_add(struct pm_fs *fs, uint64_t b, uint64_t n);

static void give_back(struct pm_fs *fs, uint64_t b, uint64_t e, bool sev)
{
	if (b >= e)
		return;
	untaint(fs, b, e - b);
	if (sev)
		fs->severed += e - b;
	if (sev && fs->zmap) { /* a dense pool backs it again once idle */
		pthread_mutex_lock(&fs->sv_lock);
		zq_add(fs, b, e - b);
		pthread_mutex_unlock(&fs->sv_lock);
	}
	pm_bavail_add(fs, b, e - b);
}

/* Who maps the pool file: read once (pm_pin_hooks.mappings), then asked
 * for many runs. */
struct maps {
	struct pm_run *v;
	size_t n;
	int state; /* 0 not read yet, 1 read, -1 unknown: all counts as mapped */
};

/* Does any process map a block of [b, e)? */
static bool maps_reach(struct pm_fs *fs, struct maps *m, uint64_t b, uint64_t e)
{
	size_t i;

	if (!m->state)
		m->state = !fs->hooks.mappings ? 1
			   : fs->hooks.mappings(fs->hooks.ctx, &m->v, &m->n) == 0 ? 1 : -1;
	if (m->state < 0)
		return true;
	for (i = 0; i < m->n; i++)
		if (m->v[i].start < e && b < m->v[i].start + m->v[i].n)
			return true;
	return false;
}

/*
 * pm_sever_release(), done here and now (fs->lock held). A run a lease
 * covered is given back only once it has left the pool file and no
 * process maps it (@m: who maps the pool, read when first needed): a
 * mapping the lease's end missed (a reparented grandchild) holds it back.
 */
static void release_now(struct pm_fs *fs, uint64_t b, uint64_t n, bool must, struct maps *m)
{
	uint64_t g = fs->sever_gran, e = b + n;

	while (b < e) {
		/* one page of the backing at a time; 4 KiB pages: the run */
		uint64_t pe = g > 1 ? (b / g + 1) * g : e, ok;

		if (pe > e)
			pe = e;
		if (must || any_tainted(fs, b, pe)) {
			ok = sever_piece(fs, b, pe);
			if (maps_reach(fs, m, b, pe)) {
				keep_unsevered(fs, b, pe - b);
			} else if (fs->sever_how == PM_SEVER_DEVICE) {
				give_back(fs, b, pe, false);
			} else {
				give_back(fs, b, b + ok, true);
				if (b + ok < pe)
					keep_unsevered(fs, b + ok, pe - (b + ok));
			}
		} else {
			/* nobody can reach it: punch for the memory, but never
			 * split a huge page for it */
			uint64_t lo = b / g * g;
			bool cut = false;
			if (g == 1)
				cut = punch(fs, b, pe - b) == 0;
			else if (others_free(fs, lo, lo + g, b, pe))
				cut = punch(fs, lo, g) == 0;
			give_back(fs, b, pe, cut);
		}
		b = pe;
	}
}

static bool enqueue(struct pm_fs *fs, const struct pm_svrun *r);

void pm_sever_retry(struct pm_fs *fs)
{
	struct pm_run *v;
	size_t n, i;

	pthread_mutex_lock(&fs->lock);
	n = fs->nunsev;
	v = fs->unsev;
	if (!n) {
		pthread_mutex_unlock(&fs->lock);
		return;
	}
	fs->unsev = NULL;
	fs->nunsev = fs->capunsev = 0;
	/* to the severer, which reads who maps them off fs->lock; they stay
	 * counted as unsevered until it has decided */
	for (i = 0; i < n; i++) {
		struct pm_svrun r = { v[i].start, v[i].n, true, 0, true };
		if (!enqueue(fs, &r)) {
			struct maps m = { 0 };
			fs->unsev_blocks -= r.n;
			release_now(fs, r.start, r.n, true, &m);
			free(m.v);
		}
	}
	pthread_mutex_unlock(&fs->lock);
	free(v);
}

static bool q_push(struct pm_svrun **v, size_t *n, size_t *cap, const struct pm_svrun *r);

/*
 * Dense: backs up to 2 MiB of the free space not backed yet with zeroed
 * pages, off every lock (sv_lock held on entry and exit, dropped inside).
 * The blocks stay allocatable meanwhile, so a full pool never waits for
 * it: they are marked in fs->zmap only if they were free holes before the
 * populate and no block at all was taken during it (fs->zgen); otherwise
 * they stay unmarked, which only costs a fill its fallocate.
 */
static void zero_some(struct pm_fs *fs)
{
	struct pm_svrun *r = &fs->zpend[fs->nzpend - 1];
	uint64_t b = r->start, n = r->n < PM_ALIGN_BLOCKS ? r->n : PM_ALIGN_BLOCKS, gen;
	bool ok;

	if (__atomic_load_n(&fs->zfull, __ATOMIC_RELAXED)) {
		fs->nzpend = 0; /* the backing refused pages: the rest stays sparse */
		fs->zrescan = false;
		return;
	}
	r->start += n;
	r->n -= n;
	if (!r->n)
		fs->nzpend--;
	pthread_mutex_unlock(&fs->sv_lock);
	pthread_mutex_lock(&fs->lock);
	ok = pm_run_free(fs, b, n);
	if (ok) {
		/* only its first part not backed yet (a run freed again while
		 * queued is queued twice, and a second fallocate clears the
		 * pages the first allocated); the rest goes back in the queue */
		uint64_t s = pm_zfind(fs, b, b + n, true);
		uint64_t e = s < b + n ? pm_zfind(fs, s, b + n, false) : s;

		if (e < b + n) {
			pthread_mutex_lock(&fs->sv_lock);
			zq_add(fs, e, b + n - e);
			pthread_mutex_unlock(&fs->sv_lock);
		}
		b = s;
		n = e - s;
		ok = n > 0;
	}
	gen = fs->zgen;
	pthread_mutex_unlock(&fs->lock);
	/* a hole (SEEK_DATA) off the lock: a block taken from here on
	 * changes fs->zgen, and the run is not marked */
	if (ok && pm_pool_zeros(fs, b, n) && pm_zero_back(fs, b, n)) {
		pthread_mutex_lock(&fs->lock);
		if (fs->zgen == gen && pm_run_free(fs, b, n))
			pm_zmap_set(fs, b, n);
		pthread_mutex_unlock(&fs->lock);
	}
	pthread_mutex_lock(&fs->sv_lock);
}

/* Dense: queues free run [@b, @b + @n), a hole of the pool file, to be
 * backed when the pool is idle (sv_lock held). A run next to the last one
 * queued joins it. The queue holds at most ZQ_MAX runs (a pool never idle
 * while files come and go would grow it without end): past that, the
 * severer finds the free blocks not backed yet in the bitmaps instead
 * (zq_rescan), from the start of the pool. */
#define ZQ_MAX 4096
static void zq_add(struct pm_fs *fs, uint64_t b, uint64_t n)
{
	struct pm_svrun r = { b, n, false, 0, false }, *last;

	if (!fs->zmap || __atomic_load_n(&fs->zfull, __ATOMIC_RELAXED))
		return;
	last = fs->nzpend ? &fs->zpend[fs->nzpend - 1] : NULL;
	if (last && last->start + last->n == b) {
		last->n += n;
	} else if (last && b + n == last->start) {
		last->start = b;
		last->n += n;
	} else if (fs->nzpend >= ZQ_MAX || !q_push(&fs->zpend, &fs->nzpend, &fs->capzpend, &r)) {
		fs->zrescan = true;
		fs->zscan_at = fs->data_start;
		fs->zrestart = true; /* for a rescan under way (zq_rescan) */
	}
	pthread_cond_broadcast(&fs->sv_cv);
}

/* Dense: queues up to ZQ_MAX runs of free blocks not backed yet, from
 * fs->zscan_at on (sv_lock held on entry and exit, dropped inside); where
 * more are left, the next rescan goes on from there. */
static void zq_rescan(struct pm_fs *fs)
{
	struct pm_svrun *v = NULL;
	size_t n = 0, cap = 0;
	uint64_t b = fs->zscan_at;

	if (__atomic_load_n(&fs->zfull, __ATOMIC_RELAXED)) {
		fs->zrescan = false;
		return;
	}
	fs->zrestart = false;
	pthread_mutex_unlock(&fs->sv_lock);
	pthread_mutex_lock(&fs->lock);
	while (n < ZQ_MAX) {
		struct pm_svrun r = { 0, 0, false, 0, false };

		r.start = pm_zfind(fs, b, fs->nblocks, true);
		b = pm_zfind(fs, r.start, fs->nblocks, false);
		r.n = b - r.start;
		if (!r.n || !q_push(&v, &n, &cap, &r))
			break;
	}
	pthread_mutex_unlock(&fs->lock);
	pthread_mutex_lock(&fs->sv_lock);
	/* runs freed meanwhile were queued too; the scan goes on from the
	 * first run that found no room (or from the start, if the queue
	 * overflowed again meanwhile) */
	for (size_t i = 0; i < n; i++)
		if (fs->nzpend >= ZQ_MAX || !q_push(&fs->zpend, &fs->nzpend, &fs->capzpend, &v[i])) {
			b = v[i].start;
			break;
		}
	if (fs->zrestart) {
		fs->zscan_at = fs->data_start;
		fs->zrescan = true;
	} else {
		fs->zscan_at = b;
		fs->zrescan = b < fs->nblocks && n;
	}
	fs->zrestart = false;
	free(v);
}

/*
 * Dense: may the severer back free space now (sv_lock held)? Only once no
 * block has been taken for ZIDLE_NS: a writer filling new blocks would
 * otherwise race the backing for CPU time and the pool file's inode lock
 * (a 256 MiB file written right after a 256 MiB unlink ran at 0.36-0.47x
 * tmpfs with freed blocks backed at once, below a sparse pool's
 * 0.55-0.64x), and take the very blocks being backed (fs->zgen), wasting
 * it. Otherwise waits until the pool may be idle, or for other work.
 */
#define ZIDLE_NS 100000000ull
static bool zero_now(struct pm_fs *fs)
{
	uint64_t gen = __atomic_load_n(&fs->zgen, __ATOMIC_RELAXED), t = pm_mono_ns(), end;
	struct timespec ts;

	if (gen != fs->zseen) {
		fs->zseen = gen;
		fs->zseen_ns = t;
	}
	if (t - fs->zseen_ns >= ZIDLE_NS)
		return true;
	end = fs->zseen_ns + ZIDLE_NS;
	ts.tv_sec = (time_t)(end / 1000000000ull);
	ts.tv_nsec = (long)(end % 1000000000ull);
	(void)pthread_cond_timedwait(&fs->sv_cv, &fs->sv_lock, &ts);
	return false;
}

void pm_sever_free_space(struct pm_fs *fs)
{
	uint64_t b = fs->data_start, g = fs->sever_gran;

	if (fs->sever_how == PM_SEVER_NONE || fs->sever_how == PM_SEVER_DEVICE)
		return;
	pthread_mutex_lock(&fs->lock);
	while (b < fs->nblocks) {
		uint64_t s = pm_bmap_find(fs, b, fs->nblocks, false);
		uint64_t e = pm_bmap_find(fs, s, fs->nblocks, true);

		b = e;
		/* whole pages of the backing only */
		s = PM_DIV_UP(s, g) * g;
		e = e / g * g;
		if (s >= e)
			continue;
		if (punch(fs, s, e - s) < 0) {
			if (fs->sever_how == PM_SEVER_DEVICE)
				break;
		} else if (fs->zmap) {
			/* dense: backed by the severer, after the mount */
			pthread_mutex_lock(&fs->sv_lock);
			zq_add(fs, s, e - s);
			pthread_mutex_unlock(&fs->sv_lock);
		}
	}
	pthread_mutex_unlock(&fs->lock);
}

/* ---- the severer: punching off fs->lock -----------------------------------
 *
 * Cutting a freed run out of a tmpfs pool costs about 0.3 ms per MiB (the
 * kernel frees every page and unmaps it from the daemon); under fs->lock a
 * 1 GiB unlink would stall every other client for a third of a second. So
 * on a 4 KiB-page backing a freed run is queued, still taken in fs->bmap,
 * and the severer thread punches it with no lock held, checks it with
 * mincore() where a lease covered it, and gives it back under fs->lock.
 * Queued blocks count as free in statfs; an allocation that finds no free
 * block cuts the queued ones out itself and waits for the batch in flight
 * (pm_sever_wait), so a pool is never full for want of a punch. Huge-page
 * backings stay synchronous: whether a whole huge page may go depends on
 * its neighbours in fs->bmap.
 */

static bool q_push(struct pm_svrun **v, size_t *n, size_t *cap, const struct pm_svrun *r)
{
	if (*n == *cap || !*v) { /* (!*v: then *n is 0, which clang-tidy cannot tell) */
		size_t ncap = *cap ? 2 * *cap : 64;
		struct pm_svrun *nv = realloc(*v, ncap * sizeof(*nv));
		if (!nv)
			return false;
		*v = nv;
		*cap = ncap;
	}
	(*v)[(*n)++] = *r;
	return true;
}

/* Queues run @r for the severer; false if it does not run (or no memory). */
static bool enqueue(struct pm_fs *fs, const struct pm_svrun *r)
{
	bool queued;

	pthread_mutex_lock(&fs->sv_lock);
	queued = fs->sv_on && q_push(&fs->sv_pend, &fs->sv_npend, &fs->sv_cappend, r);
	if (queued) {
		if (!r->held)
			fs->sv_blocks += r->n;
		pthread_cond_broadcast(&fs->sv_cv);
	}
	pthread_mutex_unlock(&fs->sv_lock);
	return queued;
}

void pm_sever_release(struct pm_fs *fs, uint64_t b, uint64_t n, bool must)
{
	struct pm_svrun r = { b, n, must || any_tainted(fs, b, b + n), 0, false };
	struct maps m = { 0 };

	/* a huge-page backing decides about blocks no lease covered from
	 * their neighbours in fs->bmap, at once; nothing else is slow */
	if (fs->sever_how == PM_SEVER_NONE || (fs->sever_gran > 1 && !r.must)) {
		release_now(fs, b, n, r.must, &m);
		free(m.v);
		return;
	}
	if (!enqueue(fs, &r)) {
		release_now(fs, b, n, r.must, &m);
		free(m.v);
	}
}

/* Punches run @r (no lock needed: its blocks are taken in fs->bmap and
 * nobody touches them) and, if a lease covered it, asks whether the pages
 * left the pool file and whether a process maps them (@m). */
static void punch_run(struct pm_fs *fs, struct pm_svrun *r, struct maps *m)
{
	uint64_t first;

	r->punched = punch(fs, r->start, r->n);
	if (!r->punched && r->must && resident(fs, r->start, r->n, &first))
		r->punched = 1;
	if (!r->punched && r->must && maps_reach(fs, m, r->start, r->start + r->n))
		r->punched = 2;
}

/* Gives back what the severer has done (fs->lock held); @m: who maps the
 * pool, for the runs that need the careful way. */
static void drain_done(struct pm_fs *fs, struct maps *m)
{
	struct pm_svrun *v;
	uint64_t blocks = 0;
	size_t n, i;

	pthread_mutex_lock(&fs->sv_lock);
	v = fs->sv_done;
	n = fs->sv_ndone;
	fs->sv_done = NULL;
	fs->sv_ndone = fs->sv_capdone = 0;
	for (i = 0; i < n; i++)
		if (!v[i].held)
			blocks += v[i].n;
	fs->sv_blocks -= blocks;
	pthread_mutex_unlock(&fs->sv_lock);
	for (i = 0; i < n; i++) {
		if (v[i].held) /* decided now: counted again if kept */
			fs->unsev_blocks -= v[i].n;
		if (v[i].punched == 0)
			give_back(fs, v[i].start, v[i].start + v[i].n, true);
		else if (v[i].punched == 2) /* still mapped: held back */
			keep_unsevered(fs, v[i].start, v[i].n);
		else /* not gone, or the punch failed: the careful way */
			release_now(fs, v[i].start, v[i].n, v[i].must, m);
	}
	free(v);
}

/* Takes every queued run (sv_lock held); the caller owns the array. */
static struct pm_svrun *take_pending(struct pm_fs *fs, size_t *n)
{
	struct pm_svrun *v = fs->sv_pend;

	*n = fs->sv_npend;
	fs->sv_pend = NULL;
	fs->sv_npend = fs->sv_cappend = 0;
	return v;
}

static void *severer_main(void *arg)
{
	struct pm_fs *fs = arg;

	pthread_mutex_lock(&fs->sv_lock);
	for (;;) {
		struct maps m = { 0 };
		struct pm_svrun *v;
		size_t n, i, j;

		while (!fs->sv_npend && !fs->sv_stop && !fs->nzpend && !fs->zrescan)
			pthread_cond_wait(&fs->sv_cv, &fs->sv_lock);
		if (!fs->sv_npend && fs->sv_stop)
			break;
		/* dense: freed blocks are cut out once the pool is idle too,
		 * while as many blocks are free as wait: a writer's pwrites
		 * into the pool file would otherwise wait for the punches'
		 * inode lock. It only delays their reuse (they stay taken
		 * until then), and the pool file never grows past the size
		 * its store had room for at the mount (a sparse pool's freed
		 * pages go back at once). With less free, they are cut out
		 * now rather than by an allocation that finds no free block
		 * (pm_sever_wait, under fs->lock) */
		if (fs->sv_npend && fs->zmap && !fs->sv_stop &&
		    !__atomic_load_n(&fs->zfull, __ATOMIC_RELAXED) &&
		    __atomic_load_n(&fs->avail, __ATOMIC_RELAXED) >= fs->sv_blocks && !zero_now(fs))
			continue;
		if (!fs->sv_npend) { /* idle: back some free space (dense) */
			if (!zero_now(fs))
				continue;
			if (fs->nzpend)
				zero_some(fs);
			else
				zq_rescan(fs);
			continue;
		}
		v = take_pending(fs, &n);
		fs->sv_inflight = n;
		pthread_mutex_unlock(&fs->sv_lock);
		for (i = 0; i < n; i++) /* one read of every process's maps */
			punch_run(fs, &v[i], &m);
		pthread_mutex_lock(&fs->sv_lock);
		for (i = 0; i < n; i++)
			if (!q_push(&fs->sv_done, &fs->sv_ndone, &fs->sv_capdone, &v[i]))
				break;
		for (j = i; j < n; j++) /* no memory: these stay taken until
					 * the unmount (leaking is safe) */
			if (!v[j].held)
				fs->sv_blocks -= v[j].n;
		fs->sv_inflight = 0;
		pthread_cond_broadcast(&fs->sv_cv);
		pthread_mutex_unlock(&fs->sv_lock);
		free(v);
		/* give them back; an allocator that waited may have already */
		pthread_mutex_lock(&fs->lock);
		drain_done(fs, &m);
		pthread_mutex_unlock(&fs->lock);
		free(m.v);
		pthread_mutex_lock(&fs->sv_lock);
	}
	pthread_mutex_unlock(&fs->sv_lock);
	return NULL;
}

bool pm_sever_wait(struct pm_fs *fs)
{
	struct maps m = { 0 };
	struct pm_svrun *v;
	uint64_t before = fs->avail;
	size_t n, i;

	pthread_mutex_lock(&fs->sv_lock);
	if (!fs->sv_blocks) {
		pthread_mutex_unlock(&fs->sv_lock);
		return false;
	}
	v = take_pending(fs, &n);
	for (i = 0; i < n; i++)
		if (!v[i].held)
			fs->sv_blocks -= v[i].n;
	/* the severer never takes fs->lock while it holds sv_lock */
	while (fs->sv_inflight)
		pthread_cond_wait(&fs->sv_cv, &fs->sv_lock);
	pthread_mutex_unlock(&fs->sv_lock);
	for (i = 0; i < n; i++) {
		if (v[i].held)
			fs->unsev_blocks -= v[i].n;
		release_now(fs, v[i].start, v[i].n, v[i].must, &m);
	}
	free(v);
	drain_done(fs, &m);
	free(m.v);
	return fs->avail > before;
}

uint64_t pm_avail_for(struct pm_fs *fs, uint64_t need)
{
	if (fs->avail < need)
		pm_sever_wait(fs);
	return fs->avail;
}

uint64_t pm_sever_pending(struct pm_fs *fs)
{
	uint64_t n;

	pthread_mutex_lock(&fs->sv_lock);
	n = fs->sv_blocks;
	pthread_mutex_unlock(&fs->sv_lock);
	return n;
}

void pm_sever_start(struct pm_fs *fs)
{
	if (fs->sever_how == PM_SEVER_NONE)
		return;
	pthread_mutex_lock(&fs->sv_lock);
	fs->sv_stop = false;
	if (!fs->sv_on && pthread_create(&fs->sv_thr, NULL, severer_main, fs) == 0)
		fs->sv_on = true;
	pthread_mutex_unlock(&fs->sv_lock);
}

void pm_sever_stop(struct pm_fs *fs)
{
	struct maps m = { 0 };
	bool on;

	pthread_mutex_lock(&fs->sv_lock);
	on = fs->sv_on;
	fs->sv_on = false; /* frees from now on are done at once */
	fs->sv_stop = true;
	pthread_cond_broadcast(&fs->sv_cv);
	pthread_mutex_unlock(&fs->sv_lock);
	if (on)
		pthread_join(fs->sv_thr, NULL); /* it empties the queue first */
	pthread_mutex_lock(&fs->lock);
	drain_done(fs, &m);
	pthread_mutex_unlock(&fs->lock);
	free(m.v);
}

void pm_sever_counts(struct pm_fs *fs, uint64_t *severed, uint64_t *unsev)
{
	pthread_mutex_lock(&fs->lock);
	*severed = fs->severed;
	*unsev = fs->unsev_blocks + fs->unsev_lost;
	pthread_mutex_unlock(&fs->lock);
}

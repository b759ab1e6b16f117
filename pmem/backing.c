/* SPDX-License-Identifier: MIT */
/*
 * pmem/backing.c -- the pool file's backing: allocated before the engine
 * stores, and SIGBUS when it is lost all the same.
 *
 * A sparse pool (mkfs writes only its first metadata; freed blocks are
 * punched out, sever.c) is mostly holes of its file. The first store into a
 * hole makes the backing file system allocate a page, and a tmpfs with no
 * page left answers with SIGBUS, which used to kill the daemon. So every
 * block the engine hands out is backed first (pm_back_run: one
 * fallocate(KEEP_SIZE) per run, with the bitmap and checksum pages its
 * allocation writes; from the allocator under fs->lock, or, for a fill's
 * reservation, by the fill without it), and so are an inode table page
 * before an inode slot in it is read or written (pm_ialloc) and the journal
 * pages a record takes (pm_tx_commit). A full backing store fails the
 * allocation: the request gets ENOSPC and nothing was written. Metadata
 * blocks once backed are remembered in fs->mback (they are never punched);
 * data blocks are not (a freed one is punched), and fallocate over pages
 * already allocated costs a page-cache lookup each (README, "A full backing
 * store").
 *
 * What allocation cannot prevent -- the pool file truncated underneath the
 * daemon, a poisoned line of persistent memory (BUS_MCEERR_AR) -- still
 * raises SIGBUS: pm_fault_catch() turns it into EIO for the request and a
 * read-only file system (see fs.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "pmem/fs_int.h"
#include "pmem/pool.h"

void pm_back_init(struct pm_fs *fs)
{
	/* a device has no holes; an in-memory or read-only pool is not
	 * stored into through a file */
	fs->back_on = fs->sever_how == PM_SEVER_PUNCH || fs->sever_how == PM_SEVER_HUGETLB ||
		      fs->sever_how == PM_SEVER_DAX;
	if (fs->back_on)
		fs->mback = calloc(PM_DIV_UP(fs->data_start, 64), 8); /* NULL: no cache */
}

/* fallocate(KEEP_SIZE) of pool blocks [b, b + n): 0 or the errno. */
static int falloc_blocks(struct pm_fs *fs, uint64_t b, uint64_t n)
{
	while (fallocate(fs->pool->fd, FALLOC_FL_KEEP_SIZE, (off_t)(b << PM_BLOCK_SHIFT),
			 (off_t)(n << PM_BLOCK_SHIFT)) != 0)
		if (errno != EINTR)
			return errno;
	return 0;
}

static int falloc(struct pm_fs *fs, uint64_t b, uint64_t n)
{
	int e;

	if (!fs->back_on || !n)
		return 0;
	e = falloc_blocks(fs, b, n);
	if (!e)
		return 0;
	if (e == EOPNOTSUPP || e == ENOSYS) {
		fs->back_on = false;
		fprintf(stderr, "pinfs: %s: the pool file cannot allocate its backing ahead (%s): "
				"a full backing store may fail a store with EIO\n",
			fs->pool->path, strerror(e));
		return 0;
	}
	if (fs->back_said < 8) {
		fs->back_said++;
		fprintf(stderr, "pinfs: %s: cannot allocate the backing of pool blocks %" PRIu64
				"-%" PRIu64 ": %s: the request fails with %s%s\n",
			fs->pool->path, b, b + n - 1, strerror(e),
			e == ENOSPC || e == EDQUOT ? "ENOSPC" : "EIO",
			fs->back_said == 8 ? " (further failures are not logged)" : "");
	}
	return e == ENOSPC || e == EDQUOT ? -ENOSPC : -EIO;
}

/* mback is read and set with and without fs->lock (a fill backs its
 * reservations without it): atomically; a bit is only ever set */
static bool mbit(const struct pm_fs *fs, uint64_t b)
{
	return (__atomic_load_n(&fs->mback[b >> 6], __ATOMIC_RELAXED) >> (b & 63)) & 1;
}

int pm_back(struct pm_fs *fs, uint64_t b, uint64_t n)
{
	uint64_t e = b + n, s;
	int rc;

	if (!fs->back_on || !n)
		return 0;
	if (!fs->mback || b >= fs->data_start)
		return falloc(fs, b, n);
	/* metadata: only the stretches not known backed */
	while (b < e && b < fs->data_start) {
		for (; b < e && b < fs->data_start && mbit(fs, b); b++)
			;
		for (s = b; b < e && b < fs->data_start && !mbit(fs, b); b++)
			;
		if (s == b)
			break;
		rc = falloc(fs, s, b - s);
		if (rc)
			return rc;
		for (; s < b; s++)
			__atomic_fetch_or(&fs->mback[s >> 6], 1ull << (s & 63), __ATOMIC_RELAXED);
	}
	return b < e ? falloc(fs, b, e - b) : 0;
}

int pm_back_bytes(struct pm_fs *fs, uint64_t off, uint64_t len)
{
	if (!len)
		return 0;
	return pm_back(fs, off >> PM_BLOCK_SHIFT,
		       ((off + len - 1) >> PM_BLOCK_SHIFT) - (off >> PM_BLOCK_SHIFT) + 1);
}

int pm_back_run(struct pm_fs *fs, uint64_t b, uint64_t n, bool data_backed)
{
	const uint64_t per = PM_BLOCK_SIZE * 8ull; /* blocks per bitmap block */
	const struct pm_super *sb = fs->pool->sb;
	int rc = 0;

	if (!fs->back_on || !n)
		return 0;
	if (!data_backed)
		rc = pm_back(fs, b, n);
	if (!rc)
		rc = pm_back(fs, sb->bitmap_start + b / per, (b + n - 1) / per - b / per + 1);
	if (!rc && fs->csum)
		rc = pm_back_bytes(fs, (uint64_t)((char *)&fs->csum[b] - (char *)fs->pool->base),
				   n * sizeof(*fs->csum));
	return rc;
}

/* SEEK_DATA (tmpfs counts pages that fallocate allocated and nothing wrote
 * as a hole, and clears them at first use). Only with PM_SEVER_PUNCH:
 * freed data blocks are punched, and a caller's blocks are reserved or
 * checked free under fs->lock, so nothing writes them meanwhile. lseek
 * moves the pool fd's position, which nothing uses (pread/pwrite, mmap). */
bool pm_pool_zeros(struct pm_fs *fs, uint64_t b, uint64_t n)
{
	off_t d;

	if (fs->sever_how != PM_SEVER_PUNCH || !fs->back_on)
		return false;
	d = lseek(fs->pool->fd, (off_t)(b << PM_BLOCK_SHIFT), SEEK_DATA);
	if (d < 0)
		return errno == ENXIO;
	return (uint64_t)d >= (b + n) << PM_BLOCK_SHIFT;
}

/* ---- dense pools ----------------------------------------------------------
 *
 * A sparse pool pays the backing's page allocation when a block is handed
 * out (a fill's fallocate: on tmpfs about 80 ms per 256 MiB, most of what
 * tmpfs's own write of a new file costs), because every freed block is
 * punched out (sever.c) and comes back as a hole. With -o dense the
 * severer thread backs all free space after the mount, and every freed
 * block again after its punch (which already severed any kernel pin of the
 * old page), with fresh pages that read as zeros: fallocate(KEEP_SIZE),
 * which on tmpfs allocates a page, maps it nowhere and leaves it to be
 * cleared at first use, which a whole-page pwrite skips (populating them
 * through the daemon's mapping instead cleared each page ahead and mapped
 * it, so the punch of a freed file had to unmap it again: appends ran at
 * 0.80-0.91x tmpfs, against 1.03-1.07x so). 2 MiB at a time, once no block
 * has been taken for 0.1 s (sever.c, zero_now, zero_some): a writer taking
 * new blocks meanwhile is not slowed by it, and takes unbacked ones as on
 * a sparse pool; the punches themselves wait so too while the pool has
 * room (severer_main).
 * fs->zmap remembers which free blocks are so backed, and
 * a fill takes them with neither a fallocate nor a zeroing. The price is a
 * pool file that stays allocated, as a persistent-memory device is: du of
 * the pool no longer falls when files are deleted. Page-size backings
 * only: a huge-page backing frees what it punches in whole pages.
 */

const char *pm_dense_init(struct pm_fs *fs)
{
	struct statfs sfs;

	if (fs->sever_how != PM_SEVER_PUNCH || !fs->back_on)
		return "the pool is not a file of a file system that punches holes";
	if (fs->sever_gran != 1)
		return "a huge-page backing frees what it punches in whole pages";
	/* never a backing store filled by the pool's free space */
	if (fstatfs(fs->pool->fd, &sfs) < 0 ||
	    (uint64_t)sfs.f_bavail * (uint64_t)sfs.f_bsize < fs->avail << PM_BLOCK_SHIFT)
		return "the backing store has less room than the pool's free space";
	fs->zmap = calloc(PM_DIV_UP(fs->nblocks, 64), 8);
	return fs->zmap ? NULL : "out of memory";
}

bool pm_zero_back(struct pm_fs *fs, uint64_t b, uint64_t n)
{
	static int said;
	int e;

	if (!fs->zmap || __atomic_load_n(&fs->zfull, __ATOMIC_RELAXED) || !n)
		return false;
	e = falloc_blocks(fs, b, n);
	if (!e)
		return true;
	/* a full backing store (ENOSPC): the rest of the free space stays
	 * sparse */
	__atomic_store_n(&fs->zfull, true, __ATOMIC_RELAXED);
	if (!__atomic_exchange_n(&said, 1, __ATOMIC_RELAXED))
		fprintf(stderr, "pinfs: %s: dense: the backing refused zeroed pages (%s): free space "
				"freed from now on stays unbacked\n",
			fs->pool->path, strerror(e));
	return false;
}

void pm_zmap_set(struct pm_fs *fs, uint64_t b, uint64_t n)
{
	if (!fs->zmap)
		return;
	for (; n; b++, n--)
		fs->zmap[b >> 6] |= 1ull << (b & 63);
}

uint64_t pm_zmap_count(struct pm_fs *fs)
{
	uint64_t n = 0;

	for (uint64_t i = 0; fs->zmap && i < PM_DIV_UP(fs->nblocks, 64); i++)
		n += (uint64_t)__builtin_popcountll(fs->zmap[i]);
	return n;
}

/* ---- SIGBUS -------------------------------------------------------------- */

/* Set by pm_fault_watch() before the daemon's threads start, read by the
 * signal handler: no lock. */
static struct {
	char *base;
	uint64_t size, page;
	struct pm_fs *fs;
} W;
static uint64_t g_faults;  /* atomic */
/* The pages replaced by zero pages (pool offsets): a later read of one
 * must not return those zeros as the file's bytes (pm_fault_lost). Slots
 * are claimed by an atomic counter and published with a release store;
 * past FAULT_PAGES, every page of the pool counts as lost. */
#define FAULT_PAGES 256
static uint64_t g_lost[FAULT_PAGES]; /* offset + 1; 0: not yet published */
static unsigned g_nlost;	     /* atomic: slots claimed */
static int g_recorded;	   /* atomic: the superblock has the errors flag */
/* initial-exec: a handler must not make the first access of a dynamic TLS
 * block (which may allocate) */
static __thread unsigned t_faults __attribute__((tls_model("initial-exec")));

void pm_fault_watch(struct pm_fs *fs)
{
	long pg = sysconf(_SC_PAGESIZE);

	W.page = pg > 0 ? (uint64_t)pg : 4096;
	/* a hugetlbfs mapping is unmapped (and replaced) whole pages only */
	if (fs->sever_how == PM_SEVER_HUGETLB)
		W.page = fs->sever_gran << PM_BLOCK_SHIFT;
	W.size = fs->pool->size;
	W.fs = fs;
	__atomic_store_n(&W.base, (char *)fs->pool->base, __ATOMIC_RELEASE);
}

bool pm_fault_in_pool(const void *p)
{
	const char *base = __atomic_load_n(&W.base, __ATOMIC_ACQUIRE);

	return base && (const char *)p >= base && (uint64_t)((const char *)p - base) < W.size;
}

bool pm_fault_catch(void *addr, uint64_t *off)
{
	char *base = __atomic_load_n(&W.base, __ATOMIC_ACQUIRE), *pg;

	if (!pm_fault_in_pool(addr))
		return false;
	*off = (uint64_t)((char *)addr - base);
	pg = base + (*off & ~(W.page - 1));
	/* the page is gone from the file (or poisoned): a private zero page
	 * in its place lets the access complete; nothing reaches the file
	 * through it */
	if (mmap(pg, W.page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
		 0) == MAP_FAILED)
		return false;
	{
		unsigned i = __atomic_fetch_add(&g_nlost, 1, __ATOMIC_RELAXED);
		if (i < FAULT_PAGES)
			__atomic_store_n(&g_lost[i], (uint64_t)(pg - base) + 1, __ATOMIC_RELEASE);
	}
	__atomic_store_n(&W.fs->errors, true, __ATOMIC_RELAXED); /* pm_fs_writable: EROFS */
	__atomic_add_fetch(&g_faults, 1, __ATOMIC_RELAXED);
	t_faults++;
	return true;
}

/* The errors flag to the superblock too (fs->lock held): fsck must look at
 * the pool before it is mounted for writing again. */
static void record(struct pm_fs *fs)
{
	if (!(fs->sbc.errors & PM_SB_ERR_CORRUPT)) {
		fs->sbc.errors |= PM_SB_ERR_CORRUPT;
		pm_super_set_errors(fs->pool, PM_SB_ERR_CORRUPT);
	}
}

unsigned pm_fault_take(void)
{
	unsigned n = t_faults;
	struct pm_fs *fs = W.fs;

	if (!n)
		return 0;
	t_faults = 0;
	/* a reply may be sent with fs->lock held (a lease callback): never
	 * wait for it here; pm_fault_unmount() records it then */
	if (fs && !__atomic_load_n(&g_recorded, __ATOMIC_RELAXED) &&
	    !pthread_mutex_trylock(&fs->lock)) {
		record(fs);
		__atomic_store_n(&g_recorded, 1, __ATOMIC_RELAXED);
		pthread_mutex_unlock(&fs->lock);
	}
	return n;
}

bool pm_fault_lost(const void *p, size_t len)
{
	const char *base = __atomic_load_n(&W.base, __ATOMIC_ACQUIRE);
	unsigned i, n = __atomic_load_n(&g_nlost, __ATOMIC_ACQUIRE);
	uint64_t off, end;

	if (!n || !len || !pm_fault_in_pool(p))
		return false;
	if (n > FAULT_PAGES)
		return true;
	off = (uint64_t)((const char *)p - base);
	end = off + len;
	for (i = 0; i < n; i++) {
		uint64_t l = __atomic_load_n(&g_lost[i], __ATOMIC_ACQUIRE);
		if (l && l - 1 < end && off < l - 1 + W.page)
			return true;
	}
	return false;
}

unsigned pm_fault_pending(void)
{
	return t_faults;
}

uint64_t pm_fault_count(void)
{
	return __atomic_load_n(&g_faults, __ATOMIC_RELAXED);
}

void pm_fault_unmount(struct pm_fs *fs)
{
	if (W.fs != fs)
		return;
	if (__atomic_load_n(&g_faults, __ATOMIC_RELAXED) &&
	    !__atomic_load_n(&g_recorded, __ATOMIC_RELAXED))
		record(fs);
	__atomic_store_n(&W.base, NULL, __ATOMIC_RELEASE);
}

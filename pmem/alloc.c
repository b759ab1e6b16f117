/* SPDX-License-Identifier: MIT */
/*
 * pmem/alloc.c -- the block allocator and inode slot allocator.
 *
 * The pool's bitmap (1 bit per block, 1 = in use) is the persistent truth and
 * changes only inside transactions. The allocator searches a DRAM copy,
 * fs->bmap, in which a block is "in use" from the moment it is allocated
 * until the transaction that frees it has committed *and* the block has been
 * released (pm_release_freed): a block freed by an open transaction cannot be
 * handed out again by the same transaction, so a crash never finds one block
 * in two places.
 *
 * Reservations split an allocation in two, so that a big fill or copy into
 * new blocks runs without fs->lock: pm_breserve() takes blocks in fs->bmap
 * and fs->avail only (no transaction; the pool's bitmap still calls them
 * free, so a crash simply forgets them), and pm_bclaim(), later, in the
 * transaction that maps them, sets their bits in the pool's bitmap. Nobody
 * else can be handed a reserved block, and nobody can see one: no map points
 * at it, and a block freed while pinned is quarantined, never reserved.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pmem/fs_int.h"

static bool dbit(const struct pm_fs *fs, uint64_t b)
{
	return (fs->bmap[b >> 6] >> (b & 63)) & 1;
}

/*
 * The DRAM copy is read with pm_pool_read(): the bitmap of a new pool is
 * mostly a hole (only the bits of the metadata are set), which it neither
 * reads nor allocates, and the pages of fs->bmap it does not write stay
 * untouched (calloc): a 1 TiB pool's 32 MiB bitmap costs the daemon's
 * memory only where blocks were ever allocated.
 */
int pm_alloc_init(struct pm_fs *fs)
{
	struct pm_super *sb = fs->pool->sb;
	uint64_t words = PM_DIV_UP(sb->bitmap_blocks * PM_BLOCK_SIZE * 8, 64);
	uint64_t b, n = 0;
	int rc;

	fs->bmap = calloc(words, 8);
	if (!fs->bmap)
		return -ENOMEM;
	rc = pm_pool_read(fs->pool, sb->bitmap_start << PM_BLOCK_SHIFT, fs->bmap, words * 8);
	if (rc) {
		fprintf(stderr, "pinfs: cannot read the allocation bitmap: %s\n", strerror(-rc));
		return rc;
	}
	for (b = sb->data_start; b < sb->nblocks && (b & 63); b++)
		n += !dbit(fs, b);
	for (; b + 64 <= sb->nblocks; b += 64)
		n += 64 - (uint64_t)__builtin_popcountll(fs->bmap[b >> 6]);
	for (; b < sb->nblocks; b++)
		n += !dbit(fs, b);
	fs->avail = n;
	fs->alloc_hint = sb->data_start;
	fs->ino_hint = PM_ROOT_INO + 1;
	return 0;
}

/* Remembers an allocation so pm_tx_abort() can give it back. */
static void note_alloc(struct pm_fs *fs, uint64_t start, uint64_t n)
{
	struct pm_tx *tx = &fs->tx;

	if (tx->nalloced == tx->capalloced) {
		tx->capalloced = tx->capalloced ? tx->capalloced * 2 : 16;
		tx->alloced = realloc(tx->alloced, 2 * tx->capalloced * sizeof(*tx->alloced));
		if (!tx->alloced)
			abort();
	}
	tx->alloced[2 * tx->nalloced] = start;
	tx->alloced[2 * tx->nalloced++ + 1] = n;
}

bool pm_blk_ok(struct pm_fs *fs, uint64_t b)
{
	static int said;

	if (b >= fs->data_start && b < fs->nblocks)
		return true;
	if (!__atomic_exchange_n(&said, 1, __ATOMIC_RELAXED))
		fprintf(stderr, "pinfs: a block map points outside the data area (block %llu): "
				"the pool is corrupt, run fsck.pinfs\n",
			(unsigned long long)b);
	return false;
}

/* Sets or clears bits [b, b+n) of the pool bitmap through the transaction. */
static void media_bits(struct pm_fs *fs, uint64_t b, uint64_t n, bool set)
{
	const uint64_t per = PM_BLOCK_SIZE * 8ull;
	struct pm_super *sb = fs->pool->sb;

	while (n) {
		uint64_t bb = b / per, off = b % per, k = per - off;
		uint8_t *blk = pm_tx_block(fs, sb->bitmap_start + bb);
		uint64_t i;

		if (k > n)
			k = n;
		for (i = off; i < off + k; i++) {
			if (set)
				blk[i >> 3] |= (uint8_t)(1u << (i & 7));
			else
				blk[i >> 3] &= (uint8_t)~(1u << (i & 7));
		}
		pm_tx_dirty(fs, blk + (off >> 3), ((off + k - 1) >> 3) - (off >> 3) + 1);
		b += k;
		n -= k;
	}
}

/* The first bit in [b, end) set (@set) or clear in @x | @y (@y may be NULL). */
static uint64_t bits_find(const uint64_t *x, const uint64_t *y, uint64_t b, uint64_t end,
			  bool set)
{
	while (b < end) {
		uint64_t v = x[b >> 6] | (y ? y[b >> 6] : 0);
		uint64_t w = (set ? v : ~v) & (~0ull << (b & 63));
		if (w) {
			uint64_t r = (b & ~63ull) + (uint64_t)__builtin_ctzll(w);
			return r < end ? r : end;
		}
		b = (b | 63) + 1;
	}
	return end;
}

uint64_t pm_bmap_find(const struct pm_fs *fs, uint64_t b, uint64_t end, bool used)
{
	return bits_find(fs->bmap, NULL, b, end, used);
}

uint64_t pm_zfind(const struct pm_fs *fs, uint64_t b, uint64_t end, bool want)
{
	return bits_find(fs->bmap, fs->zmap, b, end, !want);
}

/* Takes free blocks [start, start + n) in DRAM: nobody else gets them.
 * Returns whether all of them were backed by zeroed pages (dense), which
 * fs->zmap forgets: the taker is about to store into them. */
static bool reserve_run(struct pm_fs *fs, uint64_t start, uint64_t n)
{
	bool zero = fs->zmap != NULL;
	uint64_t b;

	for (b = start; b < start + n; b++) {
		uint64_t bit = 1ull << (b & 63);
		fs->bmap[b >> 6] |= bit;
		if (fs->zmap) {
			zero = zero && (fs->zmap[b >> 6] & bit);
			fs->zmap[b >> 6] &= ~bit;
		}
	}
	fs->avail -= n;
	__atomic_store_n(&fs->zgen, fs->zgen + n, __ATOMIC_RELAXED);
	return zero;
}

void pm_bclaim(struct pm_fs *fs, uint64_t start, uint64_t n)
{
	media_bits(fs, start, n, true);
	note_alloc(fs, start, n);
	fs->sbc.free_blocks -= n;
	pm_sb_dirty(fs);
}

void pm_bunreserve(struct pm_fs *fs, uint64_t start, uint64_t n)
{
	uint64_t b;

	for (b = start; b < start + n; b++)
		if (!dbit(fs, b))
			abort(); /* not reserved: a bookkeeping bug */
	pm_bavail_add(fs, start, n);
}

/* Takes free blocks [start, start + n): in DRAM, on media (in the
 * transaction, unless @reserve_only) and in the counters. */
static bool take_run(struct pm_fs *fs, uint64_t start, uint64_t n, bool reserve_only)
{
	bool zero = reserve_run(fs, start, n);

	if (!reserve_only)
		pm_bclaim(fs, start, n);
	return zero;
}

static int balloc(struct pm_fs *fs, uint64_t goal, uint64_t want, uint64_t *out,
		  bool reserve_only, bool *zero)
{
	bool z;

	struct pm_super *sb = fs->pool->sb;
	uint64_t start, n;
	int rc;

	if (!want)
		return -ENOSPC;
	/* nothing free but what the severer is cutting out: take it now */
	if (!fs->avail && !pm_sever_wait(fs))
		return -ENOSPC;
	if (goal < sb->data_start || goal >= sb->nblocks)
		goal = fs->alloc_hint;
	start = pm_bmap_find(fs, goal, sb->nblocks, false);
	if (start == sb->nblocks)
		start = pm_bmap_find(fs, sb->data_start, goal, false);
	if (start >= sb->nblocks || dbit(fs, start)) {
		pm_fs_corrupt(fs, "the free block count says %llu, the bitmap none",
			      (unsigned long long)fs->avail);
		return -ENOSPC;
	}
	for (n = 0; n < want && start + n < sb->nblocks && !dbit(fs, start + n); n++)
		;
	/* its backing first: a full backing store fails the request here,
	 * before anything is taken or written (backing.c); a reservation's
	 * is its caller's, made without fs->lock */
	if (!reserve_only) {
		rc = pm_back_run(fs, start, n, false);
		if (rc)
			return rc;
	}
	z = take_run(fs, start, n, reserve_only);
	if (zero)
		*zero = z;
	fs->alloc_hint = start + n;
	*out = start;
	return (int)n;
}

int pm_balloc(struct pm_fs *fs, uint64_t goal, uint64_t want, uint64_t *out)
{
	return balloc(fs, goal, want, out, false, NULL);
}

int pm_breserve(struct pm_fs *fs, uint64_t goal, uint64_t want, uint64_t *out, bool *zero)
{
	return balloc(fs, goal, want, out, true, zero);
}

void pm_bfree(struct pm_fs *fs, uint64_t blk)
{
	struct pm_tx *tx = &fs->tx;

	/* freeing metadata or a free block: a map is corrupt. Leave the block
	 * as it is: leaking it is safe, handing it out twice is not. */
	if (blk < fs->data_start || blk >= fs->nblocks) {
		pm_fs_corrupt(fs, "freeing block %llu, outside the data area",
			      (unsigned long long)blk);
		return;
	}
	if (!dbit(fs, blk)) {
		pm_fs_corrupt(fs, "freeing block %llu, which is free", (unsigned long long)blk);
		return;
	}
	media_bits(fs, blk, 1, false);
	fs->sbc.free_blocks++;
	pm_sb_dirty(fs);
	if (tx->nfreed == tx->capfreed) {
		tx->capfreed = tx->capfreed ? tx->capfreed * 2 : 64;
		tx->freed = realloc(tx->freed, tx->capfreed * sizeof(*tx->freed));
		if (!tx->freed)
			abort();
	}
	tx->freed[tx->nfreed++] = blk;
}

/*
 * Quarantine: blocks the pool calls free but that a (revoked) lease still
 * pins, because its holder may still store into them through its mapping or
 * its io_uring fixed buffers. They stay "in use" in fs->bmap until
 * pm_unquarantine(). A hash set (linear probing, backward-shift deletion);
 * protected by fs->lock. DRAM only: after a crash there are no holders.
 */
static size_t qslot(const struct pm_fs *fs, uint64_t b)
{
	return (size_t)((b * 0x9e3779b97f4a7c15ull) >> 24) & (fs->qcap - 1);
}

static bool q_add(struct pm_fs *fs, uint64_t b)
{
	size_t i;

	if ((fs->qcount + 1) * 2 > fs->qcap) {
		size_t ocap = fs->qcap, ncap = ocap ? ocap * 2 : 1024, j;
		uint64_t *old = fs->qset, *nq = calloc(ncap, sizeof(*nq));
		if (!nq)
			return false;
		fs->qset = nq;
		fs->qcap = ncap;
		for (j = 0; j < ocap; j++)
			if (old[j]) {
				for (i = qslot(fs, old[j]); nq[i]; i = (i + 1) & (ncap - 1))
					;
				nq[i] = old[j];
			}
		free(old);
	}
	for (i = qslot(fs, b); fs->qset[i]; i = (i + 1) & (fs->qcap - 1))
		if (fs->qset[i] == b)
			return true;
	fs->qset[i] = b;
	fs->qcount++;
	return true;
}

static bool q_del(struct pm_fs *fs, uint64_t b)
{
	size_t i, j, k;

	if (!fs->qcount)
		return false;
	for (i = qslot(fs, b); fs->qset[i] != b; i = (i + 1) & (fs->qcap - 1))
		if (!fs->qset[i])
			return false;
	/* backward-shift: keep every later entry reachable */
	for (j = i;;) {
		fs->qset[i] = 0;
		for (;;) {
			j = (j + 1) & (fs->qcap - 1);
			if (!fs->qset[j])
				goto done;
			k = qslot(fs, fs->qset[j]);
			if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
				continue;
			break;
		}
		fs->qset[i] = fs->qset[j];
		i = j;
	}
done:
	fs->qcount--;
	return true;
}

void pm_bavail_add(struct pm_fs *fs, uint64_t b, uint64_t n)
{
	uint64_t i;

	for (i = b; i < b + n; i++)
		fs->bmap[i >> 6] &= ~(1ull << (i & 63));
	if (b < fs->alloc_hint)
		fs->alloc_hint = b;
	fs->avail += n;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Adds block @b to run *@r (blocks given back together: pm_sever_release
 * with @must), handing the run over first when @b does not extend it.
 * Blocks come in increasing order; finish with run_flush(). */
static void run_add(struct pm_fs *fs, struct pm_run *r, uint64_t b, bool must)
{
	if (r->n && b == r->start + r->n) {
		r->n++;
		return;
	}
	if (r->n)
		pm_sever_release(fs, r->start, r->n, must);
	r->start = b;
	r->n = 1;
}

static void run_flush(struct pm_fs *fs, struct pm_run *r, bool must)
{
	if (r->n)
		pm_sever_release(fs, r->start, r->n, must);
	r->n = 0;
}

/* Called after the transaction that freed tx->freed committed: pinned
 * blocks go to quarantine, the others leave the pool file (sever.c) and
 * become allocatable, in runs. */
void pm_release_freed(struct pm_fs *fs)
{
	struct pm_tx *tx = &fs->tx;
	struct pm_run r = { 0, 0 };
	size_t i;

	for (i = 1; i < tx->nfreed; i++)
		if (tx->freed[i] < tx->freed[i - 1]) {
			qsort(tx->freed, tx->nfreed, sizeof(*tx->freed), cmp_u64);
			break;
		}
	if (fs->unsafe & PM_UNSAFE_NO_QUARANTINE) {
		/* the demonstration switch: every freed block, pinned or a
		 * lease's once, is allocatable at once and stays in the pool
		 * file -- a kernel pin on it now reaches the next owner */
		for (i = 0; i < tx->nfreed; i++)
			pm_bavail_add(fs, tx->freed[i], 1);
		tx->nfreed = 0;
		return;
	}
	for (i = 0; i < tx->nfreed;) {
		uint64_t b = tx->freed[i], n = 1, k, j, sp;
		bool pinned;

		/* a run of adjacent freed blocks asks the pin table once per
		 * stretch in one state (a 1 GiB truncate: 262 144 blocks) */
		while (i + n < tx->nfreed && tx->freed[i + n] == b + n)
			n++;
		for (k = 0; k < n; k += sp) {
			sp = pm_pinned_span(fs, b + k, n - k, &pinned);
			/* a block that cannot be remembered as quarantined stays
			 * in use until the next mount: leaking is safe, reusing
			 * is not */
			for (j = 0; j < sp; j++)
				if (pinned)
					q_add(fs, b + k + j);
				else
					run_add(fs, &r, b + k + j, false);
		}
		i += n;
	}
	run_flush(fs, &r, false);
	tx->nfreed = 0;
}

/* The lease of blocks [pblk, pblk+n) ended: the quarantined ones leave the
 * pool file and become allocatable; the others, still a file's, are
 * tainted (a kernel pin taken through the lease may still reach them), so
 * that they leave the pool file too when they are freed. */
void pm_unquarantine(struct pm_fs *fs, uint64_t pblk, uint64_t n)
{
	struct pm_run r = { 0, 0 };
	uint64_t b;

	pthread_mutex_lock(&fs->lock);
	for (b = pblk; b < pblk + n; b++) {
		if (fs->unsafe & PM_UNSAFE_NO_QUARANTINE) {
			/* nothing was quarantined; taint nothing either */
			if (q_del(fs, b))
				pm_bavail_add(fs, b, 1);
			continue;
		}
		if (q_del(fs, b))
			run_add(fs, &r, b, true);
		else
			pm_sever_taint(fs, b, 1);
	}
	run_flush(fs, &r, true);
	pthread_mutex_unlock(&fs->lock);
}

uint64_t pm_quarantined(struct pm_fs *fs)
{
	uint64_t n;

	pthread_mutex_lock(&fs->lock);
	n = fs->qcount + fs->unsev_blocks + fs->unsev_lost;
	pthread_mutex_unlock(&fs->lock);
	return n;
}

bool pm_run_free(const struct pm_fs *fs, uint64_t b, uint64_t n)
{
	while (n) {
		uint64_t bit = b & 63, k = 64 - bit < n ? 64 - bit : n;
		uint64_t mask = (k == 64 ? ~0ull : ((1ull << k) - 1)) << bit;
		if (fs->bmap[b >> 6] & mask)
			return false;
		b += k;
		n -= k;
	}
	return true;
}

int pm_breserve_aligned(struct pm_fs *fs, unsigned phase, uint64_t want, uint64_t *out,
			bool *zero)
{
	struct pm_super *sb = fs->pool->sb;
	uint64_t c, start;

	if (want > PM_ALIGN_BLOCKS - phase)
		want = PM_ALIGN_BLOCKS - phase;
	if (!want || pm_avail_for(fs, want) < want)
		return -ENOSPC;
	for (c = PM_DIV_UP(sb->data_start, PM_ALIGN_BLOCKS); (c + 1) * PM_ALIGN_BLOCKS <= sb->nblocks;
	     c++) {
		start = c * PM_ALIGN_BLOCKS + phase;
		if (!pm_run_free(fs, start, want))
			continue;
		*zero = reserve_run(fs, start, want);
		*out = start;
		return (int)want;
	}
	return -ENOSPC;
}

int pm_ialloc(struct pm_fs *fs, uint64_t *ino)
{
	struct pm_super *sb = fs->pool->sb;
	uint64_t n = sb->ninodes, i, cand = fs->ino_hint;

	if (!fs->sbc.free_inodes)
		return -ENOSPC;
	for (i = 0; i < n; i++, cand++) {
		const struct pm_dinode *d;
		int rc;

		if (cand >= n)
			cand = PM_ROOT_INO + 1;
		/* an inode table page that is a hole is read (a read fault on
		 * a tmpfs hole allocates a page too) and written: backed
		 * first, and a full backing store fails the create here */
		rc = pm_back(fs, sb->itable_start + cand / PM_INODES_PER_BLOCK, 1);
		if (rc)
			return rc;
		d = (const struct pm_dinode *)pm_tx_peek(fs, sb->itable_start +
								 cand / PM_INODES_PER_BLOCK) +
		    cand % PM_INODES_PER_BLOCK;
		if (d->mode == 0 && !pm_icache_find(fs, cand)) {
			fs->ino_hint = cand + 1;
			fs->sbc.free_inodes--;
			pm_sb_dirty(fs);
			*ino = cand;
			return 0;
		}
	}
	/* free_inodes says there is one */
	pm_fs_corrupt(fs, "the superblock counts %llu free inodes, the table has none",
		      (unsigned long long)fs->sbc.free_inodes);
	return -ENOSPC;
}

/* ---- the mount-time walk (pm_alloc_check) -------------------------------- */

struct ck {
	struct pm_fs *fs;
	uint64_t *used;	 /* blocks claimed so far */
	uint64_t *dups;	 /* blocks claimed more than once (pass 1) */
	size_t ndups, capdups;
	bool pass2;	 /* pass 2: find the owners of dups */
	bool hit;	 /* pass 2: the current inode names a dup */
	bool nomem;
	uint64_t badinodes; /* pass 1: inodes pm_dinode_check refuses */
	uint64_t badptrs;   /* pass 1: map entries outside the data area */
	uint64_t badcount;  /* pass 1: inodes whose map disagrees with d.blocks */
	uint64_t claims;    /* the current inode's blocks, as its map says */
	bool wild;	    /* the current inode's map points outside the data area */
};

static bool ck_in_data(const struct pm_fs *fs, uint64_t b)
{
	return b >= fs->data_start && b < fs->nblocks;
}

/* Claims @b; true the first time. */
static bool ck_claim(struct ck *c, uint64_t b)
{
	uint64_t *w = &c->used[b >> 6], m = 1ull << (b & 63);

	if (c->pass2 && bsearch(&b, c->dups, c->ndups, sizeof(*c->dups), cmp_u64))
		c->hit = true;
	if (!(*w & m)) {
		*w |= m;
		return true;
	}
	if (!c->pass2) {
		if (c->ndups == c->capdups) {
			size_t ncap = c->capdups ? c->capdups * 2 : 64;
			uint64_t *d = realloc(c->dups, ncap * sizeof(*d));
			if (!d) {
				c->nomem = true;
				return false;
			}
			c->dups = d;
			c->capdups = ncap;
		}
		c->dups[c->ndups++] = b;
	}
	return false;
}

/* Claims block @b at @level (0: data or xattr, else a map node) and, the
 * first time only, what it points at: a map that names one node many times
 * costs one visit, so the walk is linear in the pool's size. Pointers
 * outside the data area are skipped: the engine reads them as holes. */
static void ck_walk(struct ck *c, uint64_t b, unsigned level)
{
	const uint64_t *node;
	unsigned i;

	c->claims++;
	if (!ck_claim(c, b) || level == 0)
		return;
	node = pm_block_ptr(c->fs->pool, b);
	for (i = 0; i < PM_MAP_FANOUT; i++) {
		if (!node[i])
			continue;
		if (ck_in_data(c->fs, node[i])) {
			ck_walk(c, node[i], level - 1);
		} else {
			c->badptrs += !c->pass2;
			c->wild = true;
		}
	}
}

static int ck_pass(struct ck *c)
{
	struct pm_fs *fs = c->fs;
	uint64_t ino, lo, next = PM_ROOT_INO, hi = PM_ROOT_INO;

	memset(c->used, 0, PM_DIV_UP(fs->nblocks, 64) * 8);
	for (ino = PM_ROOT_INO;; ino++) {
		const struct pm_dinode *d;

		if (ino >= hi) { /* the next stretch that is not a hole */
			if (!pm_islots_next(fs->pool, next, UINT64_MAX, &lo, &hi))
				break;
			ino = lo;
			next = hi;
		}
		d = pm_dinode_ptr(fs->pool, ino);
		if (!d->mode)
			continue;
		if (pm_dinode_check(fs, d)) {
			c->badinodes += !c->pass2;
			continue; /* pm_iget refuses it */
		}
		c->hit = c->wild = false;
		c->claims = 0;
		if (d->map_root)
			ck_walk(c, d->map_root, d->map_height);
		if (d->xattr_block)
			ck_walk(c, d->xattr_block, 0);
		if (c->nomem)
			return -ENOMEM;
		/* A map that does not hold the blocks the inode counts (a
		 * wrong height reads map nodes as data, or data as map
		 * nodes) or that points outside the data area is not trusted
		 * either: the inode's reads would return what is not its
		 * data. */
		if (!c->pass2 && (c->wild || c->claims != d->blocks)) {
			c->badcount += !c->wild;
			c->hit = true;
		}
		if (c->hit) {
			uint64_t *nb = realloc(fs->bad, (fs->nbad + 1) * sizeof(*nb));
			if (!nb)
				return -ENOMEM;
			fs->bad = nb;
			fs->bad[fs->nbad++] = ino;
		}
	}
	return 0;
}

/*
 * Blocks a map names that a leaked block (in use, named by no map) that
 * reads as a map node names too go on c->dups: the pointer to that node
 * may be what was overwritten, and the map that names the block now may
 * have got it by a pointer moved from its own block, which counts the
 * same. Their owners are suspect like those of a block named twice.
 * Returns how many.
 */
static size_t ck_ghosts(struct ck *c)
{
	struct pm_fs *fs = c->fs;
	size_t n = 0;
	uint64_t b;

	for (b = fs->data_start; b < fs->nblocks && !c->nomem; b++) {
		const uint64_t *node;
		uint64_t s, e;
		bool any = false;
		unsigned i;

		/* 64 at a time where none is leaked: most of a big pool */
		if (!(b & 63) && b + 64 <= fs->nblocks && !(fs->bmap[b >> 6] & ~c->used[b >> 6])) {
			b += 63;
			continue;
		}
		if (b == pm_backup_sb_block(fs->pool->sb) || !dbit(fs, b) ||
		    ((c->used[b >> 6] >> (b & 63)) & 1))
			continue;
		/* a hole reads as zeros, not a map node: not read (a read
		 * fault on a hole of a tmpfs pool file allocates it) */
		if (!pm_pool_data(fs->pool, b << PM_BLOCK_SHIFT, (b + 1) << PM_BLOCK_SHIFT, &s, &e))
			continue;
		node = pm_block_ptr(fs->pool, b);
		for (i = 0; i < PM_MAP_FANOUT; i++) {
			if (!node[i])
				continue;
			if (node[i] == b || !ck_in_data(fs, node[i]))
				break;
			any = true;
		}
		if (i < PM_MAP_FANOUT || !any)
			continue; /* not a map node */
		for (i = 0; i < PM_MAP_FANOUT && !c->nomem; i++)
			if (node[i] && ((c->used[node[i] >> 6] >> (node[i] & 63)) & 1)) {
				c->pass2 = false;
				ck_claim(c, node[i]); /* named already: goes on c.dups */
				n++;
			}
	}
	return n;
}

int pm_alloc_check(struct pm_fs *fs)
{
	struct ck c = { .fs = fs };
	uint64_t b, taken = 0;
	size_t i, n, ndup, ghosts = 0;
	int rc;

	c.used = malloc(PM_DIV_UP(fs->nblocks, 64) * 8);
	if (!c.used)
		return -ENOMEM;
	rc = ck_pass(&c);
	ndup = c.ndups;
	if (!rc) {
		/* the bitmap must have every named block: take the ones it
		 * lacks, so the allocator never hands them out. Their owners
		 * are suspect like those of a block named twice (the block
		 * may hold a deleted file's bytes): pass 2 finds them. */
		for (b = fs->data_start; b < fs->nblocks && !c.nomem; b++)
			if (((c.used[b >> 6] >> (b & 63)) & 1) && !dbit(fs, b)) {
				fs->bmap[b >> 6] |= 1ull << (b & 63);
				fs->avail--;
				taken++;
				c.pass2 = false;
				ck_claim(&c, b); /* named already: goes on c.dups */
			}
		if (!c.nomem)
			ghosts = ck_ghosts(&c);
		if (c.nomem)
			rc = -ENOMEM;
	}
	if (!rc && c.ndups) {
		qsort(c.dups, c.ndups, sizeof(*c.dups), cmp_u64);
		for (i = n = 0; i < c.ndups; i++)
			if (!n || c.dups[n - 1] != c.dups[i])
				c.dups[n++] = c.dups[i];
		c.ndups = n;
		c.pass2 = true;
		rc = ck_pass(&c);
	}
	if (!rc && fs->nbad) { /* pass 1 and 2 each added in ascending order */
		qsort(fs->bad, fs->nbad, sizeof(*fs->bad), cmp_u64);
		for (i = n = 0; i < fs->nbad; i++)
			if (!n || fs->bad[n - 1] != fs->bad[i])
				fs->bad[n++] = fs->bad[i];
		fs->nbad = n;
	}
	if (!rc && c.badcount)
		pm_fs_corrupt(fs, "%llu inodes count other blocks than their maps hold",
			      (unsigned long long)c.badcount);
	if (!rc && c.badinodes)
		pm_fs_corrupt(fs, "%llu inodes have fields out of range",
			      (unsigned long long)c.badinodes);
	if (!rc && c.badptrs)
		pm_fs_corrupt(fs, "%llu block map entries point outside the data area",
			      (unsigned long long)c.badptrs);
	if (!rc && taken)
		pm_fs_corrupt(fs, "%llu blocks that files use are free in the bitmap",
			      (unsigned long long)taken);
	if (!rc && ndup)
		pm_fs_corrupt(fs, "%zu blocks are named twice", ndup);
	if (!rc && ghosts)
		pm_fs_corrupt(fs, "%zu blocks a map names are named by a leaked map node too",
			      ghosts);
	if (!rc && fs->nbad)
		pm_fs_corrupt(fs, "%zu inodes are refused: their maps are not to be trusted "
				  "(first: inode %llu)",
			      fs->nbad, (unsigned long long)fs->bad[0]);
	free(c.used);
	free(c.dups);
	return rc;
}

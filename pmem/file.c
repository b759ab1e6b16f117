/* SPDX-License-Identifier: MIT */
/*
 * pmem/file.c -- the data path: read (as iovecs into the pool), write,
 * truncate, fallocate, fsync, SEEK_DATA/SEEK_HOLE, and the per-file set of
 * dirty blocks that fsync flushes.
 *
 * Data blocks are written in place, never journaled. Ordering rules that
 * keep a crash from exposing stale bytes:
 *  - a newly allocated block is zeroed where the write does not cover it,
 *    written, and made durable before the transaction that maps it commits,
 *    so a file never maps a block holding someone else's old data;
 *  - bytes past EOF in the last block are garbage until the file grows over
 *    them: growing (write past EOF, truncate up) zeroes them first, durable
 *    before the new size commits.
 *
 * No data moves under fs->lock (fs_int.h, "Locking"): new blocks are
 * reserved under it, zeroed and written without it (ip->rw held exclusive
 * keeps the file's readers and pins away; the pool's bitmap still calls the
 * blocks free, so a crash forgets them), flushed, and mapped by a
 * transaction under it again. See "filling holes" below.
 */

#include <errno.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pmem/fs_int.h"

#define PM_MAX_FILE_SIZE (1ull << 50)
#define ZERO_LEN (64u << 10)
static const uint8_t zeros[ZERO_LEN] __attribute__((aligned(4096)));

/* ---- read ---------------------------------------------------------------- */

int pm_read_begin(struct pm_fs *fs, struct pm_inode *ip, uint64_t off, size_t len,
		  struct iovec *iov, int maxiov, size_t *bytes)
{
	struct pm_time now;
	uint64_t size, end, pos;
	int n = 0;

	*bytes = 0;
	pthread_rwlock_rdlock(&ip->rw);
	if (S_ISDIR(ip->ftype)) {
		pthread_rwlock_unlock(&ip->rw);
		return -EISDIR;
	}
	/*
	 * A reference for the reply: the caller replies before pm_read_end(),
	 * and the reply lets the reader close the file, so release and forget
	 * may drop every other reference before pm_read_end() runs.
	 * relatime: atime moves when older than mtime/ctime or a day old.
	 */
	pm_now(&now);
	pthread_mutex_lock(&fs->lock);
	ip->refs++;
	if (ip->d.atime.sec <= ip->d.mtime.sec || ip->d.atime.sec <= ip->d.ctime.sec ||
	    ip->d.atime.sec + 86400 <= now.sec) {
		ip->d.atime = now;
		ip->times_dirty = true;
	}
	pthread_mutex_unlock(&fs->lock);
	size = ip->d.size;
	if (off >= size || !len)
		return 0;
	end = len > size - off ? size : off + len;
	if (fs->csum) {
		uint64_t f0 = off >> PM_BLOCK_SHIFT;
		int rc = pm_csum_verify(fs, ip, f0, PM_DIV_UP(end, PM_BLOCK_SIZE) - f0);
		if (rc) {
			pm_read_end(fs, ip);
			return rc;
		}
	}
	for (pos = off; pos < end && n < maxiov;) {
		uint64_t fblk = pos >> PM_BLOCK_SHIFT, pblk;
		uint64_t nb = pm_bmap_run(fs, &ip->d, fblk, PM_DIV_UP(end, PM_BLOCK_SIZE) - fblk,
					  &pblk, false);
		uint64_t run_end = (fblk + nb) << PM_BLOCK_SHIFT, take;

		if (run_end > end)
			run_end = end;
		take = run_end - pos;
		/* after a SIGBUS (backing.c): a page replaced with zeros, a map
		 * node or data, is never passed off as the file's bytes */
		if (pm_fault_count() &&
		    (pm_bmap_lost(fs, &ip->d, fblk) ||
		     (pblk && pm_fault_lost((uint8_t *)pm_block_ptr(fs->pool, pblk) +
						    (pos & (PM_BLOCK_SIZE - 1)),
					    take)))) {
			pm_read_end(fs, ip);
			return -EIO;
		}
		if (pblk) {
			iov[n].iov_base = (uint8_t *)pm_block_ptr(fs->pool, pblk) + (pos & (PM_BLOCK_SIZE - 1));
			iov[n++].iov_len = take;
			pos += take;
		} else {
			while (take && n < maxiov) {
				uint64_t t = take > ZERO_LEN ? ZERO_LEN : take;
				iov[n].iov_base = (void *)zeros;
				iov[n++].iov_len = t;
				take -= t;
				pos += t;
			}
		}
	}
	*bytes = pos - off;
	return n;
}

void pm_read_end(struct pm_fs *fs, struct pm_inode *ip)
{
	pthread_rwlock_unlock(&ip->rw);
	pm_iput(fs, ip);
}

/* ---- write --------------------------------------------------------------- */

struct cursor {
	const struct iovec *iov;
	int n, i;
	size_t off;
};

static void copy_in(struct cursor *c, uint8_t *dst, size_t len)
{
	while (len) {
		size_t avail = c->iov[c->i].iov_len - c->off, t = len < avail ? len : avail;
		memcpy(dst, (const uint8_t *)c->iov[c->i].iov_base + c->off, t);
		dst += t;
		len -= t;
		c->off += t;
		if (c->off == c->iov[c->i].iov_len) {
			c->i++;
			c->off = 0;
		}
	}
}

/* Holes in file blocks [first, last]: how many blocks must be allocated. */
static uint64_t count_holes(struct pm_fs *fs, struct pm_inode *ip, uint64_t first, uint64_t last,
			    bool tx)
{
	uint64_t f = first, holes = 0;

	while (f <= last) {
		uint64_t pblk, n = pm_bmap_run(fs, &ip->d, f, last - f + 1, &pblk, tx);
		if (!pblk)
			holes += n;
		f += n;
	}
	return holes;
}

/*
 * Zeroes the garbage past EOF in the last block before the file grows over
 * it. @tx: in a transaction, the zeroes ordered before its commit; else
 * without fs->lock (ip->rw held exclusive), flushed, and the caller drains
 * before the commit that grows the file.
 */
static void zero_tail(struct pm_fs *fs, struct pm_inode *ip, uint64_t new_end, bool tx)
{
	uint64_t size = ip->d.size, pblk, stop;
	uint8_t *p;

	if (!(size & (PM_BLOCK_SIZE - 1)) || new_end <= size)
		return;
	pblk = pm_bmap_get(fs, &ip->d, size >> PM_BLOCK_SHIFT, tx);
	if (!pblk)
		return;
	stop = (size | (PM_BLOCK_SIZE - 1)) + 1;
	pm_dirty_mark_written(fs, ip, size >> PM_BLOCK_SHIFT, 1, tx);
	p = (uint8_t *)pm_block_ptr(fs->pool, pblk) + (size & (PM_BLOCK_SIZE - 1));
	memset(p, 0, stop - size);
	if (tx)
		pm_tx_order(fs, p, stop - size);
	else
		pm_flush(&fs->pool->ops, p, stop - size);
}

/* ---- filling holes ------------------------------------------------------- */

/*
 * A fill gives the holes of file blocks [first, last] new blocks, in
 * batches. A batch is reserved under fs->lock (pm_breserve: taken in DRAM
 * only), backed, zeroed -- and, for a write, written -- and made durable
 * without it, then claimed and mapped by a transaction under it again. The
 * caller holds ip->rw exclusive from start to end, so no read or pin of the
 * file runs in between; until the commit the pool's bitmap still calls the
 * blocks free and no map points at them, so a crash forgets them whatever
 * they hold. Space: the start takes all the fill can need (its holes and,
 * at worst, their map nodes) out of fs->avail, so that another client
 * cannot make a later batch fail with ENOSPC; reserving and mapping turn
 * that held space into blocks.
 */
struct fill_ext {
	uint64_t fblk, pblk, n;
	bool zero; /* backed by zeroed pages already (dense) */
};

struct fill {
	struct fill_ext *e; /* reserved runs, ascending file blocks */
	size_t n, cap;
	size_t i;	    /* first run not wholly claimed yet */
	uint64_t j;	    /* blocks of e[i] claimed */
	uint64_t next, last; /* holes of [next, last] are not reserved yet */
	uint64_t left;	    /* ... this many */
	uint64_t pending;   /* reserved, not claimed */
	uint64_t held;	    /* kept out of fs->avail for the rest */
	uint64_t goal;	    /* where the next run should start in the pool */
	bool align;
};

/* The most the rest of the fill can take: its holes not reserved yet, and
 * map nodes for every block not mapped yet. */
static uint64_t fill_need(const struct pm_inode *ip, const struct fill *fl)
{
	return fl->left + pm_bmap_worst(&ip->d, fl->left + fl->pending);
}

/* Keeps the rest's space from other clients while fs->lock is dropped. */
static void fill_hold(struct pm_fs *fs, const struct pm_inode *ip, struct fill *fl)
{
	uint64_t need = fill_need(ip, fl), avail = pm_avail_for(fs, need);

	fl->held = need < avail ? need : avail;
	fs->avail -= fl->held;
}

static void fill_unhold(struct pm_fs *fs, struct fill *fl)
{
	fs->avail += fl->held;
	fl->held = 0;
}

/* Starts a fill of @holes holes in [first, last]; -ENOSPC if the pool
 * cannot take it. fs->lock held; pair with fill_end(). */
static int fill_start(struct pm_fs *fs, struct pm_inode *ip, struct fill *fl, uint64_t first,
		      uint64_t last, uint64_t holes, bool align)
{
	memset(fl, 0, sizeof(*fl));
	fl->next = first;
	fl->last = last;
	fl->left = holes;
	fl->align = align;
	if (pm_avail_for(fs, fill_need(ip, fl)) < fill_need(ip, fl))
		return -ENOSPC;
	fill_hold(fs, ip, fl);
	return 0;
}

static int fill_push(struct fill *fl, uint64_t fblk, uint64_t pblk, uint64_t n, bool zero)
{
	struct fill_ext *last = fl->n ? &fl->e[fl->n - 1] : NULL;

	if (last && last->fblk + last->n == fblk && last->pblk + last->n == pblk &&
	    last->zero == zero) {
		last->n += n;
		return 0;
	}
	if (fl->n == fl->cap) {
		size_t ncap = fl->cap ? fl->cap * 2 : 16;
		struct fill_ext *ne = realloc(fl->e, ncap * sizeof(*ne));
		if (!ne)
			return -ENOMEM;
		fl->e = ne;
		fl->cap = ncap;
	}
	fl->e[fl->n].fblk = fblk;
	fl->e[fl->n].pblk = pblk;
	fl->e[fl->n].zero = zero;
	fl->e[fl->n++].n = n;
	return 0;
}

static uint64_t fill_step(const struct pm_fs *fs)
{
	/* at most a 2 MiB chunk at a time: mapping it touches at most
	 * FILL_STEP_BLOCKS metadata blocks (two map leaves, the nodes above
	 * them, two bitmap blocks, the superblock and the inode) */
	return fs->debug & PM_DEBUG_SMALL_TX ? 64 : PM_ALIGN_BLOCKS;
}

#define FILL_STEP_BLOCKS 24

/* A batch: what is zeroed in one go without fs->lock, and mapped in one
 * visit under it: 2 048 map updates and a commit, a few hundred
 * microseconds, the longest a fill holds fs->lock. Small for the crash
 * tests, which then see several batches. */
static uint64_t fill_batch(const struct pm_fs *fs)
{
	return fs->debug & PM_DEBUG_SMALL_TX ? 128 : 2048; /* 8 MiB */
}

/*
 * Reserves blocks for the next holes, at most @max of them, and backs them.
 * Called with fs->lock held, every run reserved before already mapped;
 * drops it while it backs the batch (ip->rw held exclusive). Pinnable
 * extents (@align) and whole 2 MiB chunks get the same offset inside a
 * 2 MiB chunk in the file and in the pool, so mappings can use huge pages.
 */
static int fill_reserve(struct pm_fs *fs, struct pm_inode *ip, struct fill *fl, uint64_t max)
{
	uint64_t f = fl->next, taken = 0;
	int rc = 0;

	fill_unhold(fs, fl);
	fl->n = fl->i = 0;
	fl->j = 0;
	while (f <= fl->last && taken < max) {
		uint64_t pblk, n = pm_bmap_run(fs, &ip->d, f, fl->last - f + 1, &pblk, false);
		bool ends_batch = false;

		if (pblk) {
			fl->goal = pblk + n;
			f += n;
			continue;
		}
		if (!fl->goal && f)
			fl->goal = pm_bmap_get(fs, &ip->d, f - 1, false) + 1;
		if (n > max - taken) {
			ends_batch = true;
			n = max - taken;
			/* end the batch at a 2 MiB boundary of the file: a
			 * chunk reserved in two batches could land in two pool
			 * chunks, and lose its huge-page mapping */
			if (n > (f + n) % PM_ALIGN_BLOCKS)
				n -= (f + n) % PM_ALIGN_BLOCKS;
		}
		while (n) {
			uint64_t step = fill_step(fs), start, want = n < step ? n : step;
			int got = -ENOSPC;
			bool zero = false;

			if (fl->align || want >= PM_ALIGN_BLOCKS)
				got = pm_breserve_aligned(fs, (unsigned)(f % PM_ALIGN_BLOCKS), want, &start,
							  &zero);
			if (got < 0)
				got = pm_breserve(fs, fl->goal, want, &start, &zero);
			if (got < 0) {
				rc = got; /* the space was held: cannot happen */
				goto out;
			}
			rc = fill_push(fl, f, start, (uint64_t)got, zero);
			if (rc) {
				pm_bunreserve(fs, start, (uint64_t)got);
				goto out;
			}
			f += (uint64_t)got;
			n -= (uint64_t)got;
			taken += (uint64_t)got;
			fl->goal = start + (uint64_t)got;
			fl->left = fl->left > (uint64_t)got ? fl->left - (uint64_t)got : 0;
			fl->pending += (uint64_t)got;
		}
		if (ends_batch)
			break;
	}
	if (f > fl->last)
		fl->left = 0;
	fl->next = f;
out:
	fill_hold(fs, ip, fl);
	if (rc || !fs->back_on)
		return rc;
	/* the batch's backing (a fallocate of the pool file: page allocation,
	 * the longest part of a fill on tmpfs) without fs->lock: the blocks
	 * are reserved and the rest's space is held. A full backing store
	 * fails the fill here, before anything is written (fill_end gives
	 * the batch back). */
	pthread_mutex_unlock(&fs->lock);
	for (size_t k = 0; k < fl->n && !rc; k++)
		rc = pm_back_run(fs, fl->e[k].pblk, fl->e[k].n, fl->e[k].zero);
	pthread_mutex_lock(&fs->lock);
	return rc;
}

/*
 * Zeroes the reserved blocks except file bytes [cover_lo, cover_hi), which
 * the caller writes, forgets their checksums, and flushes both; the caller
 * drains before the commit that maps them. Called without fs->lock, ip->rw
 * held exclusive: the blocks are this fill's alone.
 */
static void fill_zero(struct pm_fs *fs, const struct fill *fl, uint64_t cover_lo, uint64_t cover_hi)
{
	const struct pm_persist_ops *ops = &fs->pool->ops;
	size_t k;

	for (k = fl->i; k < fl->n; k++) {
		const struct fill_ext *e = &fl->e[k];
		uint64_t lo = e->fblk << PM_BLOCK_SHIFT, hi = (e->fblk + e->n) << PM_BLOCK_SHIFT;
		uint64_t a = cover_lo > lo ? cover_lo : lo, b = cover_hi < hi ? cover_hi : hi, i;
		bool stale;
		uint8_t *p = pm_block_ptr(fs->pool, e->pblk);

		if (a >= b && (e->zero || pm_pool_zeros(fs, e->pblk, e->n))) {
			; /* zeros already: a fresh block of a sparse pool, or
			   * one a dense pool backed again when it was freed */
		} else if (a >= b) {
			/* the pages in one call, not one fault each (a fresh
			 * block of a sparse pool is a hole of its file) */
			(void)madvise(p, hi - lo, MADV_POPULATE_WRITE);
			memset(p, 0, hi - lo);
			pm_flush(ops, p, hi - lo);
		} else {
			memset(p, 0, a - lo);
			pm_flush(ops, p, a - lo);
			memset(p + (b - lo), 0, hi - b);
			pm_flush(ops, p + (b - lo), hi - b);
		}
		/* a new block has no valid checksum: a former owner's must not
		 * survive into the commit that maps it (one flush a batch) */
		for (i = 0, stale = false; fs->csum && i < e->n; i++) {
			uint32_t *cs = &fs->csum[e->pblk + i];
			if (*cs != PM_CSUM_NONE) {
				*cs = PM_CSUM_NONE;
				stale = true;
			}
		}
		if (stale)
			pm_flush(ops, &fs->csum[e->pblk], e->n * sizeof(*fs->csum));
	}
}

/*
 * Claims and maps the reserved blocks, in the open transaction, with
 * fs->lock held. With @roll, a batch the journal cannot hold in one
 * transaction commits in parts: each part leaves the file with some more of
 * its holes filled with zeroes and nothing else changed, a state as
 * consistent as the final one (a crash between parts shows a partial
 * preallocation, as on ext4 and XFS); fs->lock is dropped between parts, so
 * that other clients' operations get in. Without @roll the caller
 * guarantees the fill is small (a write: at most max_write).
 */
static int fill_map(struct pm_fs *fs, struct pm_inode *ip, struct fill *fl, bool roll)
{
	int rc = 0;

	fill_unhold(fs, fl);
	for (; fl->i < fl->n; fl->i++, fl->j = 0) {
		const struct fill_ext *e = &fl->e[fl->i];

		while (fl->j < e->n) {
			uint64_t k = e->n - fl->j, at = fl->j, b;

			if (k > fill_step(fs))
				k = fill_step(fs);
			if (roll && !pm_tx_room(fs, FILL_STEP_BLOCKS)) {
				pm_inode_write(fs, ip);
				fill_hold(fs, ip, fl);
				pm_tx_commit(fs);
				pthread_mutex_unlock(&fs->lock); /* give way */
				pthread_mutex_lock(&fs->lock);
				pm_tx_begin(fs);
				fill_unhold(fs, fl);
			}
			/* claimed: from here an abort of the transaction gives
			 * them back, not fill_end() */
			pm_bclaim(fs, e->pblk + at, k);
			fl->j += k;
			fl->pending -= k;
			for (b = 0; b < k; b++) {
				rc = pm_bmap_set(fs, ip, e->fblk + at + b, e->pblk + at + b);
				if (rc)
					goto out;
				ip->d.blocks++;
			}
			/* durable before the commit; on a checksummed pool dirty
			 * until checksummed. (Without checksums only pinned
			 * blocks are marked, and a block just reserved is never
			 * pinned: a pinned block freed is quarantined.) */
			if (fs->csum)
				pm_dirty_mark_written(fs, ip, e->fblk + at, k, true);
		}
	}
out:
	fill_hold(fs, ip, fl);
	return rc;
}

/* Ends a fill: what it holds and has not claimed goes back. fs->lock held,
 * no transaction open. */
static void fill_end(struct pm_fs *fs, struct fill *fl)
{
	fill_unhold(fs, fl);
	for (; fl->i < fl->n; fl->i++, fl->j = 0)
		if (fl->e[fl->i].n > fl->j)
			pm_bunreserve(fs, fl->e[fl->i].pblk + fl->j, fl->e[fl->i].n - fl->j);
	free(fl->e);
	memset(fl, 0, sizeof(*fl));
}

/*
 * Fills every hole of a started fill with zeroed blocks, a batch at a time,
 * dropping fs->lock while it zeroes and between parts. Called with ip->rw
 * held exclusive and fs->lock held, no transaction open. Returns 0 with
 * fs->lock held and a transaction open that maps the last part (the caller
 * adds its inode changes and commits), or -errno with fs->lock held and no
 * transaction (parts committed before stay: a partial preallocation, as
 * after a crash). Ends the fill either way.
 */
static int fill_run(struct pm_fs *fs, struct pm_inode *ip, struct fill *fl)
{
	int rc;

	for (;;) {
		rc = fill_reserve(fs, ip, fl, fill_batch(fs));
		if (rc)
			break;
		pthread_mutex_unlock(&fs->lock);
		fill_zero(fs, fl, 0, 0);
		pm_drain(&fs->pool->ops);
		pthread_mutex_lock(&fs->lock);
		rc = pm_fs_writable(fs); /* found corrupt meanwhile: no more parts */
		if (rc)
			break;
		pm_tx_begin(fs);
		rc = fill_map(fs, ip, fl, true);
		if (rc) {
			pm_tx_abort(fs);
			pm_inode_reload(fs, ip);
			/* a map node's backing could not be had (backing.c);
			 * else the space was held: a corrupt map */
			rc = rc == -ENOSPC ? -ENOSPC : -EIO;
			break;
		}
		if (!fl->left)
			break;
		pm_inode_write(fs, ip);
		pm_tx_commit(fs);
	}
	fill_end(fs, fl);
	return rc;
}


/*
 * Copies the caller's bytes to file bytes [off, off+len): into the mapped
 * blocks, and into the blocks @fl reserved for holes (NULL: none). @flush:
 * flushes what it copied (the caller drains before the commit that maps
 * new blocks: a crash never shows a block's former owner's bytes where we
 * wrote). -EIO if a block is missing (only a corrupt map does that). Called
 * with ip->rw held exclusive, fs->lock not needed.
 */
static int copy_to_file(struct pm_fs *fs, struct pm_inode *ip, const struct fill *fl,
			struct cursor *c, uint64_t off, uint64_t len, bool flush)
{
	size_t k = fl ? fl->i : 0;

	while (len) {
		uint64_t fblk = off >> PM_BLOCK_SHIFT, pblk;
		uint64_t nb = pm_bmap_run(fs, &ip->d, fblk, PM_DIV_UP(off + len, PM_BLOCK_SIZE) - fblk,
					  &pblk, false);
		uint64_t run_end, t;
		uint8_t *dst;

		if (!pblk && fl) {
			/* a hole: the block reserved for it */
			while (k < fl->n && fl->e[k].fblk + fl->e[k].n <= fblk)
				k++;
			if (k < fl->n && fl->e[k].fblk <= fblk) {
				pblk = fl->e[k].pblk + (fblk - fl->e[k].fblk);
				if (nb > fl->e[k].fblk + fl->e[k].n - fblk)
					nb = fl->e[k].fblk + fl->e[k].n - fblk;
			}
		}
		if (!pblk)
			return -EIO;
		run_end = (fblk + nb) << PM_BLOCK_SHIFT;
		t = (run_end < off + len ? run_end : off + len) - off;
		dst = (uint8_t *)pm_block_ptr(fs->pool, pblk) + (off & (PM_BLOCK_SIZE - 1));
		copy_in(c, dst, t);
		if (flush)
			pm_flush(&fs->pool->ops, dst, t);
		off += t;
		len -= t;
	}
	return 0;
}

/*
 * Order of writes for a write that allocates or grows the file: (1) without
 * fs->lock: the tail past the old EOF and the new blocks' uncovered parts
 * are zeroed, the caller's bytes copied, all of it and the new blocks'
 * invalidated checksums flushed, and drained; (2) under fs->lock, one
 * transaction maps the new blocks and sets the size, and commits. The
 * blocks were reserved under fs->lock before (1); ip->rw is held exclusive
 * throughout. A write that does neither copies without fs->lock and keeps
 * its timestamps lazily; both then make the bytes durable before returning
 * (pm_write_settle).
 */
ssize_t pm_write(struct pm_fs *fs, const struct pm_cred *cr, struct pm_inode *ip, uint64_t off,
		 const struct iovec *src, int n)
{
	bool killed;

	return pm_write_kill(fs, cr, ip, off, src, n, &killed);
}

/* FUSE_HANDLE_KILLPRIV_V2 (fusefs/main.c) leaves a write's privilege drop
 * to the file system: besides setuid/setgid (pm_write_kill), the file's
 * capabilities go, whoever writes, before the bytes do (the order of
 * file_remove_privs()). A relaxed look at the xattr block first, so a file
 * without xattrs -- nearly every one -- takes no lock for it; a setxattr
 * racing the write is unordered with it anyway. True if they were dropped. */
static bool write_kill_caps(struct pm_fs *fs, struct pm_inode *ip)
{
	static const char caps[] = "security.capability";

	if (!__atomic_load_n(&ip->d.xattr_block, __ATOMIC_RELAXED) ||
	    pm_getxattr(fs, ip, caps, NULL, 0) < 0)
		return false;
	return pm_removexattr(fs, ip, caps) == 0;
}

ssize_t pm_write_kill(struct pm_fs *fs, const struct pm_cred *cr, struct pm_inode *ip,
		      uint64_t off, const struct iovec *src, int n, bool *killed)
{
	struct cursor c = { .iov = src, .n = n };
	uint64_t len = 0, end, first, last, holes;
	bool ordered = false;
	int i, rc = 0;

	*killed = false;

	for (i = 0; i < n; i++)
		len += src[i].iov_len;
	if (!S_ISREG(ip->ftype))
		return S_ISDIR(ip->ftype) ? -EISDIR : -EINVAL;
	if (!len)
		return 0;
	if (pm_fs_writable(fs)) /* the pool was found corrupt */
		return -EROFS;
	if (off >= PM_MAX_FILE_SIZE || len > PM_MAX_FILE_SIZE - off)
		return -EFBIG;
	*killed = write_kill_caps(fs, ip);
	end = off + len;
	first = off >> PM_BLOCK_SHIFT;
	last = (end - 1) >> PM_BLOCK_SHIFT;

	pthread_rwlock_wrlock(&ip->rw);
	holes = count_holes(fs, ip, first, last, false);
	pthread_mutex_lock(&fs->lock);
	if (holes || end > ip->d.size || pm_kill_priv_needed(cr, &ip->d)) {
		struct fill fl;

		memset(&fl, 0, sizeof(fl));
		if (holes) {
			rc = fill_start(fs, ip, &fl, first, last, holes, false);
			if (rc)
				goto out;
			rc = fill_reserve(fs, ip, &fl, holes);
			if (rc) {
				fill_end(fs, &fl);
				goto out;
			}
		}
		pthread_mutex_unlock(&fs->lock);
		/* (1): other clients' operations go on meanwhile */
		zero_tail(fs, ip, end, false);
		fill_zero(fs, &fl, off, end);
		/* the mapped blocks: a clean one's checksum goes first */
		pm_dirty_mark_written(fs, ip, first, last - first + 1, false);
		rc = copy_to_file(fs, ip, &fl, &c, off, len, true);
		pm_drain(&fs->pool->ops);
		pthread_mutex_lock(&fs->lock);
		/* (2); the pool may have been found corrupt meanwhile */
		if (!rc)
			rc = pm_fs_writable(fs);
		if (!rc) {
			pm_tx_begin(fs);
			rc = holes ? fill_map(fs, ip, &fl, false) : 0;
			if (rc) {
				pm_tx_abort(fs);
				pm_inode_reload(fs, ip);
				/* a map node's backing could not be had
				 * (backing.c); else the space was held: a
				 * corrupt map */
				rc = rc == -ENOSPC ? -ENOSPC : -EIO;
			}
		}
		if (rc) {
			fill_end(fs, &fl);
			goto out;
		}
		if (end > ip->d.size)
			ip->d.size = end;
		if (pm_kill_priv_needed(cr, &ip->d)) {
			pm_kill_priv(&ip->d);
			*killed = true;
		}
		pm_touch(ip, true, true);
		pm_inode_write(fs, ip);
		pm_tx_commit(fs);
		fill_end(fs, &fl);
		ordered = true;
	} else {
		pthread_mutex_unlock(&fs->lock);
		pm_dirty_mark_written(fs, ip, first, last - first + 1, false);
		rc = copy_to_file(fs, ip, NULL, &c, off, len, false);
		pthread_mutex_lock(&fs->lock);
		if (rc)
			goto out;
		pm_touch(ip, true, true);
		ip->times_dirty = true;
	}
out:
	pthread_mutex_unlock(&fs->lock);
	/* write() returns with its bytes durable (see pm_write_settle) */
	if (!rc)
		pm_write_settle(fs, ip, off, len, ordered);
	pthread_rwlock_unlock(&ip->rw);
	return rc ? rc : (ssize_t)len;
}

/* ---- truncate, fallocate ------------------------------------------------- */

/* Sets the size; in a transaction with ip->rw held exclusive. */
int pm_truncate_locked(struct pm_fs *fs, struct pm_inode *ip, uint64_t size)
{
	if (size > PM_MAX_FILE_SIZE)
		return -EFBIG;
	if (size > ip->d.size)
		zero_tail(fs, ip, size, true);
	else
		pm_bmap_punch(fs, ip, PM_DIV_UP(size, PM_BLOCK_SIZE), ~0ull);
	ip->d.size = size;
	return 0;
}

/* Grows the size to @size, never shrinks it: the old last block's tail is
 * zeroed in the transaction that sets the size (as a truncate up does);
 * blocks past the old EOF are not touched (they hold zeros or are holes).
 * Takes ip->rw exclusive and fs->lock. */
int pm_grow(struct pm_fs *fs, struct pm_inode *ip, uint64_t size)
{
	int rc;

	if (!S_ISREG(ip->ftype))
		return S_ISDIR(ip->ftype) ? -EISDIR : -EINVAL;
	if (size > PM_MAX_FILE_SIZE)
		return -EFBIG;
	pthread_rwlock_wrlock(&ip->rw);
	pthread_mutex_lock(&fs->lock);
	rc = pm_fs_writable(fs); /* the pool was found corrupt */
	if (!rc && size > ip->d.size) {
		pm_tx_begin(fs);
		zero_tail(fs, ip, size, true);
		ip->d.size = size;
		pm_touch(ip, true, true);
		pm_inode_write(fs, ip);
		pm_tx_commit(fs);
	}
	pthread_mutex_unlock(&fs->lock);
	pthread_rwlock_unlock(&ip->rw);
	return rc;
}

int pm_trim_eof(struct pm_fs *fs, struct pm_inode *ip, uint64_t end)
{
	uint64_t from, to;
	int rc;

	if (!S_ISREG(ip->ftype))
		return S_ISDIR(ip->ftype) ? -EISDIR : -EINVAL;
	if (end > PM_MAX_FILE_SIZE)
		end = PM_MAX_FILE_SIZE;
	rc = pm_fs_writable(fs); /* the pool was found corrupt */
	if (rc)
		return rc;
	pthread_rwlock_wrlock(&ip->rw); /* the size holds still under it */
	from = PM_DIV_UP(ip->d.size, PM_BLOCK_SIZE);
	to = PM_DIV_UP(end, PM_BLOCK_SIZE);
	if (from >= to || count_holes(fs, ip, from, to - 1, false) == to - from)
		goto out; /* nothing allocated there */
	if (fs->hooks.may_free) {
		rc = fs->hooks.may_free(fs->hooks.ctx, ip, from, to - from);
		if (rc)
			goto out;
	}
	pthread_mutex_lock(&fs->lock);
	pm_tx_begin(fs);
	pm_bmap_punch(fs, ip, from, to);
	pm_inode_write(fs, ip);
	pm_tx_commit(fs);
	pthread_mutex_unlock(&fs->lock);
out:
	pthread_rwlock_unlock(&ip->rw);
	return rc;
}

/* Zeroes bytes [lo, hi) of the file where blocks are mapped. @tx: in a
 * transaction, durable at its commit; else without fs->lock (ip->rw held
 * exclusive), flushed, and the caller drains. */
static void zero_mapped(struct pm_fs *fs, struct pm_inode *ip, uint64_t lo, uint64_t hi, bool tx)
{
	while (lo < hi) {
		uint64_t fblk = lo >> PM_BLOCK_SHIFT, pblk;
		uint64_t nb = pm_bmap_run(fs, &ip->d, fblk, PM_DIV_UP(hi, PM_BLOCK_SIZE) - fblk, &pblk,
					  tx);
		uint64_t run_end = (fblk + nb) << PM_BLOCK_SHIFT, t;

		t = (run_end < hi ? run_end : hi) - lo;
		if (pblk) {
			uint8_t *p = (uint8_t *)pm_block_ptr(fs->pool, pblk) + (lo & (PM_BLOCK_SIZE - 1));
			pm_dirty_mark_written(fs, ip, fblk, PM_DIV_UP(lo + t, PM_BLOCK_SIZE) - fblk, tx);
			memset(p, 0, t);
			if (tx)
				pm_tx_order(fs, p, t); /* durable with the punch */
			else
				pm_flush(&fs->pool->ops, p, t);
		}
		lo += t;
	}
}

/*
 * A fill (no PUNCH_HOLE) zeroes a ZERO_RANGE's mapped bytes and fills the
 * holes without fs->lock, and commits a huge fill in parts with fs->lock
 * dropped between them (fill_run): one 8 GiB fallocate must not stall
 * every other client for the seconds it takes to zero 8 GiB. The size
 * changes with the last part.
 */
int pm_fallocate(struct pm_fs *fs, struct pm_inode *ip, int mode, uint64_t off, uint64_t len)
{
	bool keep = mode & FALLOC_FL_KEEP_SIZE;
	uint64_t end, first, last, holes = 0;
	struct fill fl;
	int rc = 0;

	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
		return -EOPNOTSUPP;
	if ((mode & FALLOC_FL_PUNCH_HOLE) && (!keep || (mode & FALLOC_FL_ZERO_RANGE)))
		return -EOPNOTSUPP;
	if (!S_ISREG(ip->ftype))
		return S_ISDIR(ip->ftype) ? -EISDIR : -ENODEV;
	if (!len)
		return -EINVAL;
	if (pm_fs_writable(fs)) /* the pool was found corrupt */
		return -EROFS;
	if (off >= PM_MAX_FILE_SIZE || len > PM_MAX_FILE_SIZE - off)
		return -EFBIG;
	end = off + len;
	first = off >> PM_BLOCK_SHIFT;
	last = (end - 1) >> PM_BLOCK_SHIFT;

	pthread_rwlock_wrlock(&ip->rw);
	if (mode & FALLOC_FL_PUNCH_HOLE) {
		uint64_t from = PM_DIV_UP(off, PM_BLOCK_SIZE), to = end >> PM_BLOCK_SHIFT;
		if (from < to && fs->hooks.may_free) {
			rc = fs->hooks.may_free(fs->hooks.ctx, ip, from, to - from);
			if (rc) {
				pthread_rwlock_unlock(&ip->rw);
				return rc;
			}
		}
		pthread_mutex_lock(&fs->lock);
		pm_tx_begin(fs);
		if (from < to) {
			zero_mapped(fs, ip, off, from << PM_BLOCK_SHIFT, true);
			zero_mapped(fs, ip, to << PM_BLOCK_SHIFT, end, true);
			pm_bmap_punch(fs, ip, from, to);
		} else {
			zero_mapped(fs, ip, off, end, true);
		}
		pm_touch(ip, true, true);
		goto commit;
	}

	holes = count_holes(fs, ip, first, last, false);
	pthread_mutex_lock(&fs->lock);
	if (holes) {
		rc = fill_start(fs, ip, &fl, first, last, holes, false);
		if (rc)
			goto out;
	}
	if (mode & FALLOC_FL_ZERO_RANGE) {
		/* the space is held: nothing fails after this */
		pthread_mutex_unlock(&fs->lock);
		zero_mapped(fs, ip, off, end, false);
		pm_drain(&fs->pool->ops);
		pthread_mutex_lock(&fs->lock);
	}
	if (holes) {
		rc = fill_run(fs, ip, &fl);
		if (rc)
			goto out;
	} else {
		pm_tx_begin(fs);
	}
	if (mode & FALLOC_FL_ZERO_RANGE)
		pm_touch(ip, true, true);
	if (!keep && end > ip->d.size) {
		zero_tail(fs, ip, end, true);
		ip->d.size = end;
		pm_touch(ip, true, true);
	} else {
		pm_touch(ip, false, true);
	}
commit:
	pm_inode_write(fs, ip);
	pm_tx_commit(fs);
out:
	pthread_mutex_unlock(&fs->lock);
	pthread_rwlock_unlock(&ip->rw);
	return rc;
}

/* ---- sync, seek ---------------------------------------------------------- */

int pm_fsync(struct pm_fs *fs, struct pm_inode *ip, bool datasync)
{
	pthread_rwlock_rdlock(&ip->rw);
	pm_writeback_inode(fs, ip, true, 0);
	pm_bounce_pinned(fs, ip); /* a failure is logged; the rule's fsync stands */
	pthread_mutex_lock(&fs->lock);
	/* every metadata change is already durable; only lazily kept
	 * timestamps may be pending (fdatasync may skip them, as POSIX says) */
	if (ip->times_dirty && !datasync && !fs->errors) {
		pm_tx_begin(fs);
		pm_inode_write(fs, ip);
		pm_tx_commit(fs);
	}
	pthread_mutex_unlock(&fs->lock);
	pthread_rwlock_unlock(&ip->rw);
	return 0;
}

int64_t pm_lseek(struct pm_fs *fs, struct pm_inode *ip, uint64_t off, int whence)
{
	uint64_t size, f;
	int64_t rc = -ENXIO;

	if (whence != SEEK_DATA && whence != SEEK_HOLE)
		return -EINVAL;
	pthread_rwlock_rdlock(&ip->rw);
	size = ip->d.size;
	if (off >= size)
		goto out;
	f = off >> PM_BLOCK_SHIFT;
	while ((f << PM_BLOCK_SHIFT) < size) {
		uint64_t pblk, n = pm_bmap_run(fs, &ip->d, f, ~0ull - f, &pblk, false);
		if ((whence == SEEK_DATA) == (pblk != 0)) {
			uint64_t at = f << PM_BLOCK_SHIFT;
			rc = (int64_t)(at > off ? at : off);
			if ((uint64_t)rc > size)
				rc = whence == SEEK_HOLE ? (int64_t)size : -ENXIO;
			goto out;
		}
		f += n;
	}
	rc = whence == SEEK_HOLE ? (int64_t)size : -ENXIO;
out:
	pthread_rwlock_unlock(&ip->rw);
	return rc;
}

/* ---- pins ------------------------------------------------------------------ */

void pm_data_unlock(struct pm_inode *ip)
{
	pthread_rwlock_unlock(&ip->rw);
}

void pm_data_relock(struct pm_inode *ip)
{
	pthread_rwlock_wrlock(&ip->rw);
}

int pm_pin_blocks(struct pm_fs *fs, struct pm_inode *ip, uint64_t first, uint64_t n,
		  unsigned flags, pm_pin_cb cb, void *ctx)
{
	struct pm_seg *segs = NULL;
	size_t nsegs = 0, cap = 0;
	uint64_t holes, f, last = first + n - 1;
	int rc = 0;

	if (!S_ISREG(ip->ftype))
		return S_ISDIR(ip->ftype) ? -EISDIR : -EINVAL;
	if (!n || first + n < first)
		return -EINVAL;
	if ((flags & PM_PIN_WRITE) && pm_fs_writable(fs)) /* the pool was found corrupt */
		return -EROFS;
	pthread_rwlock_wrlock(&ip->rw);
	if (last >= PM_DIV_UP(ip->d.size, PM_BLOCK_SIZE) &&
	    (flags & (PM_PIN_PASTEOF | PM_PIN_NOALLOC)) != (PM_PIN_PASTEOF | PM_PIN_NOALLOC)) {
		rc = -EINVAL; /* pinning past EOF */
		goto out;
	}
	holes = count_holes(fs, ip, first, last, false);
	if (holes && (flags & PM_PIN_NOALLOC)) {
		rc = -EACCES; /* checked under ip->rw: no hole can appear after it */
		goto out;
	}
	if (holes) {
		/* as a write fault would: allocate, zeroed (without fs->lock
		 * but for the map updates: fill_run) */
		struct fill fl;

		pthread_mutex_lock(&fs->lock);
		rc = pm_fs_writable(fs); /* the pool was found corrupt: EROFS */
		if (!rc)
			rc = fill_start(fs, ip, &fl, first, last, holes, true);
		if (!rc)
			rc = fill_run(fs, ip, &fl);
		if (rc) {
			pthread_mutex_unlock(&fs->lock);
			goto out;
		}
		pm_touch(ip, false, true);
		pm_inode_write(fs, ip);
		pm_tx_commit(fs);
		pthread_mutex_unlock(&fs->lock);
	}
	for (f = first; f <= last;) {
		uint64_t pblk, k = pm_bmap_run(fs, &ip->d, f, last - f + 1, &pblk, false);
		if (!pblk) {
			rc = -EIO; /* just filled: only a corrupt map has holes here */
			goto out;
		}
		if (nsegs && segs[nsegs - 1].pblk + segs[nsegs - 1].n == pblk) {
			segs[nsegs - 1].n += k;
		} else {
			if (nsegs == cap) {
				struct pm_seg *ns;
				cap = cap ? cap * 2 : 16;
				ns = realloc(segs, cap * sizeof(*ns));
				if (!ns) {
					rc = -ENOMEM;
					goto out;
				}
				segs = ns;
			}
			segs[nsegs].fblk = f;
			segs[nsegs].pblk = pblk;
			segs[nsegs++].n = k;
		}
		f += k;
	}
	rc = cb(ctx, segs, nsegs);
	/* a block under a write pin is always dirty: its checksum goes now,
	 * before the holder learns where the block is (the reply). Only now:
	 * writeback does not take ip->rw, and until cb has made the pin
	 * effective it may still flush and clean the block. */
	if (!rc && (flags & PM_PIN_WRITE))
		pm_dirty_mark(fs, ip, first, n, false);
out:
	pthread_rwlock_unlock(&ip->rw);
	free(segs);
	return rc;
}

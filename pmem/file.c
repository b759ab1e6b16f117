/* SPDX-License-Identifier: MIT */
/*
 * pmem/file.c -- the data path: read (as iovecs into the pool), write,
 * truncate, fallocate, fsync, SEEK_DATA/SEEK_HOLE, and the per-file set of
 * dirty blocks that fsync flushes.
 *
 * Data blocks are written in place, never journaled. Ordering rules that
 * keep a crash from exposing stale bytes:
 *  - a newly allocated block is zeroed where the write does not cover it and
 *    is made durable before the transaction that maps it commits
 *    (pm_tx_order), so a file never maps a block holding someone else's old
 *    data;
 *  - bytes past EOF in the last block are garbage until the file grows over
 *    them: growing (write past EOF, truncate up) zeroes them first, ordered
 *    before the new size commits.
 */

#include <errno.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
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
 * it; in a transaction (the zeroes are ordered before its commit).
 */
static void zero_tail(struct pm_fs *fs, struct pm_inode *ip, uint64_t new_end)
{
	uint64_t size = ip->d.size, pblk, stop;

	if (!(size & (PM_BLOCK_SIZE - 1)) || new_end <= size)
		return;
	pblk = pm_bmap_get(fs, &ip->d, size >> PM_BLOCK_SHIFT, true);
	if (!pblk)
		return;
	stop = (size | (PM_BLOCK_SIZE - 1)) + 1;
	pm_dirty_mark_written(fs, ip, size >> PM_BLOCK_SHIFT, 1, true);
	{
		uint8_t *p = (uint8_t *)pm_block_ptr(fs->pool, pblk) + (size & (PM_BLOCK_SIZE - 1));
		memset(p, 0, stop - size);
		pm_tx_order(fs, p, stop - size);
	}
}

/*
 * Allocates every hole in file blocks [first, last] as zeroed blocks except
 * where [cover_lo, cover_hi) (bytes) will be written; in a transaction, with
 * space reserved. With @roll, a fill bigger than one transaction can hold
 * (pm_tx_room) is committed in parts: each part leaves the file
 * with some more of its holes filled with zeroes and nothing else changed,
 * a state as consistent as the final one (a crash between parts shows a
 * partial preallocation, as on ext4 and XFS). Without @roll the caller
 * guarantees the fill is small (a write: at most max_write).
 */
#define FILL_STEP_BLOCKS 24

static int fill_holes(struct pm_fs *fs, struct pm_inode *ip, uint64_t first, uint64_t last,
		      uint64_t cover_lo, uint64_t cover_hi, bool align, bool roll)
{
	uint64_t f = first, goal = 0;

	while (f <= last) {
		uint64_t pblk, n = pm_bmap_run(fs, &ip->d, f, last - f + 1, &pblk, true), i;
		if (pblk) {
			goal = pblk + n;
			f += n;
			continue;
		}
		if (!goal && f)
			goal = pm_bmap_get(fs, &ip->d, f - 1, true) + 1;
		while (n) {
			/* at most a 2 MiB chunk at a time: it touches at most
			 * FILL_STEP_BLOCKS metadata blocks (two map leaves, the
			 * nodes above them, two bitmap blocks, the superblock and
			 * the inode) */
			uint64_t step = fs->debug & PM_DEBUG_SMALL_TX ? 64 : PM_ALIGN_BLOCKS;
			uint64_t start, want = n < step ? n : step;
			int got = -ENOSPC;

			if (roll && !pm_tx_room(fs, FILL_STEP_BLOCKS)) {
				pm_inode_write(fs, ip);
				pm_tx_roll(fs);
			}
			/* pinnable extents: the same offset inside a 2 MiB chunk in
			 * the file and in the pool, so mappings can use huge pages */
			if (align || want >= PM_ALIGN_BLOCKS)
				got = pm_balloc_aligned(fs, (unsigned)(f % PM_ALIGN_BLOCKS), want, &start);
			if (got < 0)
				got = pm_balloc(fs, goal, want, &start);
			if (got < 0)
				return got;
			for (i = 0; i < (uint64_t)got; i++) {
				uint64_t lo = (f + i) << PM_BLOCK_SHIFT, hi = lo + PM_BLOCK_SIZE;
				uint8_t *p = pm_block_ptr(fs->pool, start + i);
				int rc;
				/* zero what the caller will not overwrite (and
				 * orders itself: copy_to_blocks) */
				if (cover_hi <= lo || cover_lo >= hi) {
					memset(p, 0, PM_BLOCK_SIZE);
					pm_tx_order(fs, p, PM_BLOCK_SIZE);
				} else {
					if (cover_lo > lo) {
						memset(p, 0, cover_lo - lo);
						pm_tx_order(fs, p, cover_lo - lo);
					}
					if (cover_hi < hi) {
						memset(p + (cover_hi - lo), 0, hi - cover_hi);
						pm_tx_order(fs, p + (cover_hi - lo), hi - cover_hi);
					}
				}
				pm_csum_forget(fs, start + i);
				rc = pm_bmap_set(fs, ip, f + i, start + i);
				if (rc)
					return rc;
				ip->d.blocks++;
			}
			/* durable at commit; on a checksummed pool dirty until
			 * checksummed */
			pm_dirty_mark_written(fs, ip, f, (uint64_t)got, true);
			f += (uint64_t)got;
			n -= (uint64_t)got;
			goal = start + (uint64_t)got;
		}
	}
	return 0;
}

static bool needs_kill_priv(const struct pm_cred *cr, const struct pm_inode *ip)
{
	if (cr->uid == 0)
		return false;
	return (ip->d.mode & S_ISUID) || ((ip->d.mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP));
}

/* Copies the caller's bytes into the mapped blocks of [off, off+len), in a
 * transaction (@tx) ordered before its commit; -EIO if a block is missing
 * (only a corrupt map does that). */
static int copy_to_blocks(struct pm_fs *fs, struct pm_inode *ip, struct cursor *c, uint64_t off,
			  uint64_t len, bool tx)
{
	while (len) {
		uint64_t fblk = off >> PM_BLOCK_SHIFT, pblk;
		uint64_t nb = pm_bmap_run(fs, &ip->d, fblk, PM_DIV_UP(off + len, PM_BLOCK_SIZE) - fblk,
					  &pblk, tx);
		uint64_t run_end = (fblk + nb) << PM_BLOCK_SHIFT, t;
		uint8_t *dst;

		if (!pblk)
			return -EIO;
		t = (run_end < off + len ? run_end : off + len) - off;
		dst = (uint8_t *)pm_block_ptr(fs->pool, pblk) + (off & (PM_BLOCK_SIZE - 1));
		copy_in(c, dst, t);
		/* durable before the commit that maps new blocks: a crash
		 * never shows a block's former owner's bytes where we wrote */
		if (tx)
			pm_tx_order(fs, dst, t);
		off += t;
		len -= t;
	}
	return 0;
}

ssize_t pm_write(struct pm_fs *fs, const struct pm_cred *cr, struct pm_inode *ip, uint64_t off,
		 const struct iovec *src, int n)
{
	struct cursor c = { .iov = src, .n = n };
	uint64_t len = 0, end, first, last, holes;
	bool ordered = false;
	int i, rc = 0;

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
	end = off + len;
	first = off >> PM_BLOCK_SHIFT;
	last = (end - 1) >> PM_BLOCK_SHIFT;

	pthread_rwlock_wrlock(&ip->rw);
	holes = count_holes(fs, ip, first, last, false);
	pthread_mutex_lock(&fs->lock);
	if (holes || end > ip->d.size || needs_kill_priv(cr, ip)) {
		if (holes && fs->avail < holes + pm_bmap_worst(&ip->d, holes)) {
			rc = -ENOSPC;
			goto out;
		}
		pm_tx_begin(fs);
		zero_tail(fs, ip, end);
		/* space was reserved: only a corrupt map fails here */
		rc = holes ? fill_holes(fs, ip, first, last, off, end, false, false) : 0;
		if (!rc) {
			pm_dirty_mark_written(fs, ip, first, last - first + 1, true);
			rc = copy_to_blocks(fs, ip, &c, off, len, true);
		}
		if (rc) {
			pm_tx_abort(fs);
			pm_inode_reload(fs, ip);
			rc = -EIO;
			goto out;
		}
		if (end > ip->d.size)
			ip->d.size = end;
		if (needs_kill_priv(cr, ip)) {
			ip->d.mode &= ~(uint32_t)S_ISUID;
			if (ip->d.mode & S_IXGRP)
				ip->d.mode &= ~(uint32_t)S_ISGID;
		}
		pm_touch(ip, true, true);
		pm_inode_write(fs, ip);
		pm_tx_commit(fs);
		ordered = true;
	} else {
		pthread_mutex_unlock(&fs->lock);
		pm_dirty_mark_written(fs, ip, first, last - first + 1, false);
		rc = copy_to_blocks(fs, ip, &c, off, len, false);
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
		zero_tail(fs, ip, size);
	else
		pm_bmap_punch(fs, ip, PM_DIV_UP(size, PM_BLOCK_SIZE), ~0ull);
	ip->d.size = size;
	return 0;
}

/* Zeroes bytes [lo, hi) of the file where blocks are mapped, in a
 * transaction: durable at its commit. */
static void zero_mapped(struct pm_fs *fs, struct pm_inode *ip, uint64_t lo, uint64_t hi)
{
	while (lo < hi) {
		uint64_t fblk = lo >> PM_BLOCK_SHIFT, pblk;
		uint64_t nb = pm_bmap_run(fs, &ip->d, fblk, PM_DIV_UP(hi, PM_BLOCK_SIZE) - fblk, &pblk,
					  true);
		uint64_t run_end = (fblk + nb) << PM_BLOCK_SHIFT, t;

		t = (run_end < hi ? run_end : hi) - lo;
		if (pblk) {
			uint8_t *p = (uint8_t *)pm_block_ptr(fs->pool, pblk) + (lo & (PM_BLOCK_SIZE - 1));
			pm_dirty_mark_written(fs, ip, fblk, PM_DIV_UP(lo + t, PM_BLOCK_SIZE) - fblk, true);
			memset(p, 0, t);
			pm_tx_order(fs, p, t); /* durable with the punch */
		}
		lo += t;
	}
}

int pm_fallocate(struct pm_fs *fs, struct pm_inode *ip, int mode, uint64_t off, uint64_t len)
{
	bool keep = mode & FALLOC_FL_KEEP_SIZE;
	uint64_t end, first, last, holes = 0;
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
	} else {
		holes = count_holes(fs, ip, first, last, false);
	}
	pthread_mutex_lock(&fs->lock);
	if (holes && fs->avail < holes + pm_bmap_worst(&ip->d, holes)) {
		rc = -ENOSPC;
		goto out;
	}
	pm_tx_begin(fs);
	if (mode & FALLOC_FL_PUNCH_HOLE) {
		uint64_t from = PM_DIV_UP(off, PM_BLOCK_SIZE), to = end >> PM_BLOCK_SHIFT;
		if (from < to) {
			zero_mapped(fs, ip, off, from << PM_BLOCK_SHIFT);
			zero_mapped(fs, ip, to << PM_BLOCK_SHIFT, end);
			pm_bmap_punch(fs, ip, from, to);
		} else {
			zero_mapped(fs, ip, off, end);
		}
		pm_touch(ip, true, true);
	} else {
		if (!keep && end > ip->d.size)
			zero_tail(fs, ip, end);
		if (mode & FALLOC_FL_ZERO_RANGE) {
			zero_mapped(fs, ip, off, end);
			pm_touch(ip, true, true);
		}
		if (holes && fill_holes(fs, ip, first, last, 0, 0, false, true)) {
			pm_tx_abort(fs);
			pm_inode_reload(fs, ip);
			rc = -EIO; /* space was reserved: a corrupt map */
			goto out;
		}
		if (!keep && end > ip->d.size) {
			ip->d.size = end;
			pm_touch(ip, true, true);
		} else {
			pm_touch(ip, false, true);
		}
	}
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
	if (last >= PM_DIV_UP(ip->d.size, PM_BLOCK_SIZE)) {
		rc = -EINVAL; /* pinning past EOF */
		goto out;
	}
	holes = count_holes(fs, ip, first, last, false);
	if (holes && (flags & PM_PIN_NOALLOC)) {
		rc = -EACCES; /* checked under ip->rw: no hole can appear after it */
		goto out;
	}
	if (holes) {
		/* as a write fault would: allocate, zeroed */
		pthread_mutex_lock(&fs->lock);
		if (fs->avail < holes + pm_bmap_worst(&ip->d, holes) || pm_fs_writable(fs)) {
			rc = pm_fs_writable(fs) ? -EROFS : -ENOSPC;
			pthread_mutex_unlock(&fs->lock);
			goto out;
		}
		pm_tx_begin(fs);
		if (fill_holes(fs, ip, first, last, 0, 0, true, true)) {
			pm_tx_abort(fs); /* space was reserved: a corrupt map */
			pm_inode_reload(fs, ip);
			pthread_mutex_unlock(&fs->lock);
			rc = -EIO;
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

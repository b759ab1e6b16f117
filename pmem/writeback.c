/* SPDX-License-Identifier: MIT */
/*
 * pmem/writeback.c -- dirty tracking, the background flusher, integrity
 * writeback and block checksums.
 *
 * Jan Kara's rule for pinned pages, made concrete for a persistent-memory
 * pool where "clean" means "known durable": background writeback may skip a
 * pinned block; integrity writeback (fsync, syncfs, unmount) must still make
 * it durable, because the caller expects something to be saved; but a
 * pinned block is never marked clean, because the holder can redirty it at
 * any moment without telling anyone. A block under a write pin is dirty from
 * the moment it is pinned.
 *
 * Checksums follow from that: a checksum is only valid for a clean block.
 * Before a clean block is written in place its checksum is invalidated and
 * that is made durable (pm_dirty_mark), so a crash never leaves a valid
 * checksum over changed bytes; a checksum is recorded only after the block's
 * bytes are durable, computed on a bounce copy (as Kara's 2023 RFC bounces
 * pinned pages for stable writes), so it always matches bytes that really
 * were in the block. Pinned and dirty blocks are never verified.
 *
 * Memory: the dirty set costs 80 bytes per 2 MiB chunk that has a dirty
 * block (40 KiB per GiB of dirty data at worst); nothing for clean data.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pmem/crc32c.h"
#include "pmem/fs_int.h"

uint64_t pm_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The chunk of @fblk, created if missing (NULL when out of memory).
 * Called with ip->dlock held. */
static struct pm_dchunk *chunk_of(struct pm_dirty *ds, uint64_t chunk, bool create)
{
	size_t lo = 0, hi = ds->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (ds->c[mid].chunk < chunk)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < ds->n && ds->c[lo].chunk == chunk)
		return &ds->c[lo];
	if (!create)
		return NULL;
	if (ds->n == ds->cap) {
		size_t ncap = ds->cap ? ds->cap * 2 : 8;
		struct pm_dchunk *nc = realloc(ds->c, ncap * sizeof(*nc));
		if (!nc)
			return NULL;
		ds->c = nc;
		ds->cap = ncap;
	}
	memmove(&ds->c[lo + 1], &ds->c[lo], (ds->n - lo) * sizeof(*ds->c));
	memset(&ds->c[lo], 0, sizeof(ds->c[lo]));
	ds->c[lo].chunk = chunk;
	ds->c[lo].since_ns = pm_mono_ns();
	ds->n++;
	return &ds->c[lo];
}

static bool bit(const struct pm_dchunk *c, unsigned i)
{
	return (c->bits[i / 64] >> (i % 64)) & 1;
}

/* Drops chunks with no dirty block left. Called with ip->dlock held. */
static void drop_clean_chunks(struct pm_dirty *ds)
{
	size_t k, j = 0;

	for (k = 0; k < ds->n; k++) {
		unsigned w;
		bool any = false;
		for (w = 0; w < PM_ALIGN_BLOCKS / 64; w++)
			any |= ds->c[k].bits[w] != 0;
		if (any)
			ds->c[j++] = ds->c[k];
	}
	ds->n = j;
}

void pm_dirty_free(struct pm_dirty *ds)
{
	free(ds->c);
	memset(ds, 0, sizeof(*ds));
}

void pm_dirty_forget(struct pm_inode *ip, uint64_t from, uint64_t to)
{
	size_t k;

	pthread_mutex_lock(&ip->dlock);
	for (k = 0; k < ip->dirty.n; k++) {
		struct pm_dchunk *c = &ip->dirty.c[k];
		uint64_t base = c->chunk * PM_ALIGN_BLOCKS;
		unsigned i;

		if (base + PM_ALIGN_BLOCKS > from && base < to)
			for (i = 0; i < PM_ALIGN_BLOCKS; i++)
				if (base + i >= from && base + i < to)
					c->bits[i / 64] &= ~(1ull << (i % 64));
	}
	drop_clean_chunks(&ip->dirty);
	pthread_mutex_unlock(&ip->dlock);
}

void pm_dirty_mark(struct pm_fs *fs, struct pm_inode *ip, uint64_t fblk, uint64_t n, bool tx)
{
	const struct pm_persist_ops *ops = &fs->pool->ops;
	bool invalidated = false;

	pthread_mutex_lock(&ip->dlock);
	while (n) {
		struct pm_dchunk *c = chunk_of(&ip->dirty, fblk / PM_ALIGN_BLOCKS, true);
		unsigned i = (unsigned)(fblk % PM_ALIGN_BLOCKS);

		if (!c)
			abort(); /* untracked dirty data could never be made durable */
		for (; n && i < PM_ALIGN_BLOCKS; i++, n--, fblk++) {
			if (bit(c, i))
				continue;
			if (fs->csum) {
				uint64_t pblk = pm_bmap_get(fs, &ip->d, fblk, tx);
				if (pblk && fs->csum[pblk] != PM_CSUM_NONE) {
					fs->csum[pblk] = PM_CSUM_NONE;
					pm_flush(ops, &fs->csum[pblk], sizeof(fs->csum[pblk]));
					invalidated = true;
				}
			}
			c->bits[i / 64] |= 1ull << (i % 64);
		}
	}
	pthread_mutex_unlock(&ip->dlock);
	if (invalidated)
		pm_drain(ops);
}

static void chunk_bits(struct pm_dchunk *c, unsigned i, unsigned n, bool set);

/* Marks file blocks [f, f + n) dirty. Called with ip->dlock held. */
static void dirty_set(struct pm_dirty *ds, uint64_t f, uint64_t n)
{
	uint64_t end = f + n;

	while (f < end) {
		uint64_t chunk = f / PM_ALIGN_BLOCKS, cend = (chunk + 1) * PM_ALIGN_BLOCKS;
		struct pm_dchunk *c = chunk_of(ds, chunk, true);

		if (!c)
			abort(); /* untracked dirty data could never be made durable */
		if (cend > end)
			cend = end;
		chunk_bits(c, (unsigned)(f % PM_ALIGN_BLOCKS), (unsigned)(cend - f), true);
		f = cend;
	}
}

void pm_dirty_mark_written(struct pm_fs *fs, struct pm_inode *ip, uint64_t fblk, uint64_t n,
			   bool tx)
{
	uint64_t end = fblk + n;

	if (fs->csum) {
		pm_dirty_mark(fs, ip, fblk, n, tx);
		return;
	}
	pthread_mutex_lock(&ip->dlock);
	while (fblk < end) {
		uint64_t pblk, nb = pm_bmap_run(fs, &ip->d, fblk, end - fblk, &pblk, tx), p, sp;
		bool pinned;

		for (p = 0; pblk && p < nb; p += sp) {
			sp = pm_pinned_span(fs, pblk + p, nb - p, &pinned);
			if (pinned)
				dirty_set(&ip->dirty, fblk + p, sp);
		}
		fblk += nb;
	}
	pthread_mutex_unlock(&ip->dlock);
}

/* A run to write back: file blocks [fblk, fblk + n) in pool blocks
 * [pblk, pblk + n), all pinned or none. Integrity writeback of a file a
 * holder write-pinned whole lists every block of it: per block, the
 * lookups (map, pin table under its lock, dirty set) cost 4 ms per fsync of
 * a 256 MiB file; per run, a few per 2 MiB chunk. */
struct wb_run {
	uint64_t fblk, pblk, n;
	bool pinned;
};

struct wb_runs {
	struct wb_run *r;
	size_t n, cap;
	uint64_t blocks;
};

static void runs_push(struct wb_runs *l, uint64_t fblk, uint64_t pblk, uint64_t n, bool pinned)
{
	struct wb_run *last = l->n ? &l->r[l->n - 1] : NULL;

	l->blocks += n;
	if (last && last->pinned == pinned && last->fblk + last->n == fblk &&
	    last->pblk + last->n == pblk) {
		last->n += n;
		return;
	}
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 64;
		struct wb_run *nr = realloc(l->r, ncap * sizeof(*nr));
		if (!nr)
			abort(); /* cannot make data durable: do not pretend */
		l->r = nr;
		l->cap = ncap;
	}
	l->r[l->n].fblk = fblk;
	l->r[l->n].pblk = pblk;
	l->r[l->n].n = n;
	l->r[l->n++].pinned = pinned;
}

static bool is_pinned(struct pm_fs *fs, uint64_t pblk)
{
	return fs->hooks.pinned && fs->hooks.pinned(fs->hooks.ctx, pblk);
}

uint64_t pm_pinned_span(struct pm_fs *fs, uint64_t pblk, uint64_t n, bool *pinned)
{
	if (fs->hooks.pinned_span)
		return fs->hooks.pinned_span(fs->hooks.ctx, pblk, n, pinned);
	*pinned = is_pinned(fs, pblk);
	return fs->hooks.pinned ? 1 : n;
}

/* The first bit of @c at or after @i that is @set, or PM_ALIGN_BLOCKS. */
static unsigned next_bit(const struct pm_dchunk *c, unsigned i, bool set)
{
	while (i < PM_ALIGN_BLOCKS) {
		uint64_t w = set ? c->bits[i / 64] : ~c->bits[i / 64];
		w &= ~0ull << (i % 64);
		if (w)
			return (i & ~63u) + (unsigned)__builtin_ctzll(w);
		i = (i & ~63u) + 64;
	}
	return PM_ALIGN_BLOCKS;
}

/* Sets or clears bits [i, i + n) of @c. */
static void chunk_bits(struct pm_dchunk *c, unsigned i, unsigned n, bool set)
{
	while (n) {
		unsigned k = 64 - i % 64 < n ? 64 - i % 64 : n;
		uint64_t mask = (k == 64 ? ~0ull : ((1ull << k) - 1)) << (i % 64);
		if (set)
			c->bits[i / 64] |= mask;
		else
			c->bits[i / 64] &= ~mask;
		i += k;
		n -= k;
	}
}

/* Adds file blocks [f, f + n) to @l, split where the map or the pin state
 * changes: @pinned_all (a write-pinned range) says pinned without asking;
 * else pinned runs are skipped and counted in *@nskipped unless
 * @integrity. Holes are left out; with @c (the blocks' dirty chunk) their
 * bits are cleared (truncated or punched since). */
static void runs_add(struct pm_fs *fs, struct pm_inode *ip, struct wb_runs *l, uint64_t f,
		     uint64_t n, bool pinned_all, bool integrity, uint64_t *nskipped,
		     struct pm_dchunk *c)
{
	uint64_t end = f + n;

	while (f < end) {
		uint64_t pblk, nb = pm_bmap_run(fs, &ip->d, f, end - f, &pblk, false), p, sp;
		bool pinned = true;

		if (!pblk) {
			if (c)
				chunk_bits(c, (unsigned)(f % PM_ALIGN_BLOCKS), (unsigned)nb, false);
			f += nb;
			continue;
		}
		for (p = 0; p < nb; p += sp) {
			sp = pinned_all ? nb - p : pm_pinned_span(fs, pblk + p, nb - p, &pinned);
			if (pinned && !integrity)
				*nskipped += sp; /* background writeback skips pinned blocks */
			else
				runs_push(l, f + p, pblk + p, sp, pinned);
		}
		f += nb;
	}
}

struct pinned_ctx {
	struct pm_fs *fs;
	struct pm_inode *ip;
	struct wb_runs *l;
};

/* A write-pinned range: its blocks that the dirty set did not already list
 * (a write-pinned block is dirty from the pin on, so normally none). */
static void add_pinned(void *arg, uint64_t first, uint64_t n)
{
	struct pinned_ctx *pc = arg;
	uint64_t f = first, end = first + n, skipped = 0;

	pthread_mutex_lock(&pc->ip->dlock);
	while (f < end) {
		uint64_t chunk = f / PM_ALIGN_BLOCKS, base = chunk * PM_ALIGN_BLOCKS;
		uint64_t cend = base + PM_ALIGN_BLOCKS < end ? base + PM_ALIGN_BLOCKS : end;
		struct pm_dchunk *c = chunk_of(&pc->ip->dirty, chunk, false);

		while (f < cend) {
			uint64_t g = cend;
			if (c) {
				f = base + next_bit(c, (unsigned)(f - base), false);
				if (f >= cend)
					break;
				g = base + next_bit(c, (unsigned)(f - base), true);
				if (g > cend)
					g = cend;
			}
			runs_add(pc->fs, pc->ip, pc->l, f, g - f, true, true, &skipped, NULL);
			f = g;
		}
		f = cend;
	}
	pthread_mutex_unlock(&pc->ip->dlock);
}

void pm_writeback_inode(struct pm_fs *fs, struct pm_inode *ip, bool integrity,
			uint64_t older_than_ns)
{
	const struct pm_persist_ops *ops = &fs->pool->ops;
	struct wb_runs l = { 0 };
	uint64_t run_start = 0, run_len = 0, nkept = 0, nskipped = 0;
	uint8_t bounce[PM_BLOCK_SIZE];
	size_t k;

	if (!S_ISREG(ip->d.mode) && !S_ISDIR(ip->d.mode))
		return;
	pthread_mutex_lock(&ip->dlock);
	for (k = 0; k < ip->dirty.n; k++) {
		struct pm_dchunk *c = &ip->dirty.c[k];
		uint64_t base = c->chunk * PM_ALIGN_BLOCKS;
		unsigned i = 0, j;

		if (!integrity && c->since_ns > older_than_ns)
			continue;
		while ((i = next_bit(c, i, true)) < PM_ALIGN_BLOCKS) {
			j = next_bit(c, i, false);
			runs_add(fs, ip, &l, base + i, j - i, false, integrity, &nskipped, c);
			i = j;
		}
	}
	pthread_mutex_unlock(&ip->dlock);
	if (integrity && fs->hooks.write_pinned) {
		/* the holder may have stored through its mapping without telling
		 * anyone: every write-pinned block is flushed, dirty or not */
		struct pinned_ctx pc = { fs, ip, &l };
		fs->hooks.write_pinned(fs->hooks.ctx, ip->ino, add_pinned, &pc);
	}
	if (!l.n && !nskipped)
		return;
	if (integrity && (fs->unsafe & PM_UNSAFE_MARK_PINNED_CLEAN))
		for (k = 0; k < l.n; k++)
			l.r[k].pinned = false; /* the demonstration switch: as if stable */

	for (k = 0; k < l.n; k++) {
		if (run_len && run_start + run_len == l.r[k].pblk) {
			run_len += l.r[k].n;
			continue;
		}
		if (run_len)
			pm_flush(ops, pm_block_ptr(fs->pool, run_start), run_len << PM_BLOCK_SHIFT);
		run_start = l.r[k].pblk;
		run_len = l.r[k].n;
	}
	if (run_len)
		pm_flush(ops, pm_block_ptr(fs->pool, run_start), run_len << PM_BLOCK_SHIFT);
	if (l.n)
		pm_drain(ops);

	/* the bytes are durable: unpinned blocks become clean, with a checksum
	 * of what is durable (a bounce copy: the bytes it describes were
	 * really in the block) */
	if (fs->csum) {
		bool any = false;
		for (k = 0; k < l.n; k++) {
			if (l.r[k].pinned)
				continue;
			for (uint64_t pblk = l.r[k].pblk; pblk < l.r[k].pblk + l.r[k].n; pblk++) {
				memcpy(bounce, pm_block_ptr(fs->pool, pblk), PM_BLOCK_SIZE);
				fs->csum[pblk] = pm_csum_encode(pm_crc32c(0, bounce, PM_BLOCK_SIZE));
			}
			pm_flush(ops, &fs->csum[l.r[k].pblk], l.r[k].n * sizeof(*fs->csum));
			any = true;
		}
		if (any)
			pm_drain(ops);
	}
	pthread_mutex_lock(&ip->dlock);
	for (k = 0; k < l.n; k++) {
		const struct wb_run *r = &l.r[k];
		uint64_t f = r->fblk, end = r->fblk + r->n;

		if (r->pinned)
			nkept += r->n;
		while (f < end) {
			uint64_t chunk = f / PM_ALIGN_BLOCKS, cend = (chunk + 1) * PM_ALIGN_BLOCKS;
			/* pinned: flushed, but never clean while pinned */
			struct pm_dchunk *c = chunk_of(&ip->dirty, chunk, r->pinned);

			if (cend > end)
				cend = end;
			if (c)
				chunk_bits(c, (unsigned)(f % PM_ALIGN_BLOCKS), (unsigned)(cend - f),
					   r->pinned);
			f = cend;
		}
	}
	drop_clean_chunks(&ip->dirty);
	if (integrity)
		ip->wb.flushed_integrity += l.blocks;
	else
		ip->wb.flushed_background += l.blocks;
	ip->wb.pinned_kept_dirty += nkept;
	ip->wb.pinned_skipped += nskipped;
	pthread_mutex_unlock(&ip->dlock);

	pthread_mutex_lock(&fs->wblock);
	if (integrity)
		fs->wb.flushed_integrity += l.blocks;
	else
		fs->wb.flushed_background += l.blocks;
	fs->wb.pinned_kept_dirty += nkept;
	fs->wb.pinned_skipped += nskipped;
	pthread_mutex_unlock(&fs->wblock);
	free(l.r);
}

static void csum_failed(struct pm_fs *fs, struct pm_inode *ip, uint64_t fblk, uint64_t pblk)
{
	fprintf(stderr, "pinfs: checksum mismatch: inode %llu, file block %llu (pool block %llu)\n",
		(unsigned long long)ip->ino, (unsigned long long)fblk, (unsigned long long)pblk);
	pthread_mutex_lock(&ip->dlock);
	ip->wb.csum_failures++;
	pthread_mutex_unlock(&ip->dlock);
	pthread_mutex_lock(&fs->wblock);
	fs->wb.csum_failures++;
	pthread_mutex_unlock(&fs->wblock);
}

/* Is file block @fblk dirty? Called with ip->dlock held. */
static bool is_dirty(struct pm_inode *ip, uint64_t fblk)
{
	struct pm_dchunk *c = chunk_of(&ip->dirty, fblk / PM_ALIGN_BLOCKS, false);

	return c && bit(c, (unsigned)(fblk % PM_ALIGN_BLOCKS));
}

/* 1: verified, 0: skipped (dirty or no checksum), -EIO: mismatch */
static int verify_block(struct pm_fs *fs, struct pm_inode *ip, uint64_t fblk, uint64_t pblk,
			bool *dirty)
{
	uint32_t want = fs->csum[pblk];
	bool d;

	pthread_mutex_lock(&ip->dlock);
	d = is_dirty(ip, fblk);
	pthread_mutex_unlock(&ip->dlock);
	if (dirty)
		*dirty = d;
	if (d || want == PM_CSUM_NONE)
		return 0;
	if (pm_csum_encode(pm_crc32c(0, pm_block_ptr(fs->pool, pblk), PM_BLOCK_SIZE)) != want) {
		csum_failed(fs, ip, fblk, pblk);
		return -EIO;
	}
	return 1;
}

int pm_csum_verify(struct pm_fs *fs, struct pm_inode *ip, uint64_t fblk, uint64_t n)
{
	uint64_t f;

	if (!fs->csum)
		return 0;
	for (f = fblk; f < fblk + n; f++) {
		uint64_t pblk = pm_bmap_get(fs, &ip->d, f, false);
		if (pblk && verify_block(fs, ip, f, pblk, NULL) < 0)
			return -EIO;
	}
	return 0;
}

/* ---- bounce writeback of pinned blocks (-o pinned_writeback=bounce) --------
 *
 * Kara's 2019 plan for stable pages under a long-term pin: writeback copies
 * the pinned page to a bounce buffer and writes that. Here "durable and
 * checksummed" cannot mean the live block: the holder's DMA may change it
 * between any two instructions, so no checksum of it can be trusted (the
 * rule: it stays dirty, PM_CSUM_NONE). What can be made durable is a
 * snapshot: fsync copies each write-pinned block to a bounce buffer and
 * writes the copy, as an ordinary write, into the same file offset of the
 * file's shadow -- an unnamed file (pm_tmpfile: on the orphan list) made at
 * the first such fsync. The ordinary write path makes the shadow block
 * durable and then records its checksum (pm_write_settle), so a valid
 * checksum always covers the bytes the block held when fsync copied it.
 *
 * Who can verify it: scrub of the file verifies each pinned block's shadow
 * (counted in checked / bad); fsck.pinfs --checksums of a crash image
 * verifies the shadow like any file's blocks (an orphan is a file). The next
 * mount frees orphans, shadows with them: after a crash there is no holder,
 * and the live block is again an ordinary block. The shadow goes when the
 * file leaves the inode cache (pm_iput_locked).
 *
 * Order of writes per run of pinned blocks: (1) the snapshot is taken
 * (memcpy, no pool write); (2) pm_write invalidates the shadow blocks'
 * checksums durably, stores the snapshot, flushes and drains it, then
 * stores and persists the new checksums. A crash within (2) leaves a
 * shadow block without a checksum (not covered), never a wrong one.
 *
 * Locking: fs->bounce_lock, taken with the file's ip->rw held shared and no
 * other pmem lock, serializes making the shadow and writing it (pm_write
 * takes the shadow's ip->rw and fs->lock inside).
 */
#define BOUNCE_RUN 64u /* blocks per bounce buffer (256 KiB) */

struct bounce_list {
	uint64_t *f;
	size_t n, cap;
};

static void bounce_add(void *arg, uint64_t first, uint64_t n)
{
	struct bounce_list *b = arg;
	uint64_t f;

	for (f = first; f < first + n; f++) {
		if (b->n == b->cap) {
			size_t ncap = b->cap ? b->cap * 2 : 64;
			uint64_t *nf = realloc(b->f, ncap * sizeof(*nf));
			if (!nf)
				return; /* the rest is not bounced: counted as not covered */
			b->f = nf;
			b->cap = ncap;
		}
		b->f[b->n++] = f;
	}
}

static int cmp_fblk(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Makes @ip's shadow. Called with fs->bounce_lock held. */
static int shadow_new(struct pm_fs *fs, struct pm_inode *ip)
{
	static const struct pm_cred root = { 0, 0, 0, NULL, 077 };
	struct pm_inode *dir, *sh;
	uint8_t of[8];
	int rc;

	rc = pm_iget(fs, PM_ROOT_INO, &dir);
	if (rc)
		return rc;
	rc = pm_tmpfile(fs, &root, dir, 0600, &sh);
	pm_iput(fs, dir);
	if (rc)
		return rc;
	/* which file it shadows, for whoever reads the pool (little endian) */
	for (rc = 0; rc < 8; rc++)
		of[rc] = (uint8_t)(ip->ino >> (8 * rc));
	rc = pm_setxattr(fs, sh, "trusted.pinfs.bounce_of", of, sizeof(of), 0);
	if (rc) {
		pm_iput(fs, sh);
		return rc;
	}
	ip->shadow = sh;
	return 0;
}

int pm_bounce_pinned(struct pm_fs *fs, struct pm_inode *ip)
{
	static const struct pm_cred root = { 0, 0, 0, NULL, 077 };
	struct bounce_list bl = { 0 };
	uint64_t nblk, done = 0;
	uint8_t *buf;
	size_t i, j;
	int rc = 0;

	if (fs->pinned_wb != PM_PINNED_WB_BOUNCE || !fs->csum || !S_ISREG(ip->ftype) ||
	    !fs->hooks.write_pinned)
		return 0;
	fs->hooks.write_pinned(fs->hooks.ctx, ip->ino, bounce_add, &bl);
	if (!bl.n)
		return 0;
	qsort(bl.f, bl.n, sizeof(*bl.f), cmp_fblk);
	buf = malloc((size_t)BOUNCE_RUN * PM_BLOCK_SIZE);
	if (!buf) {
		free(bl.f);
		return -ENOMEM;
	}
	nblk = PM_DIV_UP(ip->d.size, PM_BLOCK_SIZE);
	pthread_mutex_lock(&fs->bounce_lock);
	if (!ip->shadow)
		rc = shadow_new(fs, ip);
	for (i = 0; !rc && i < bl.n; i = j) {
		struct iovec v;
		ssize_t n;

		/* a run of adjacent pinned blocks, each mapped: one bounce copy
		 * (the snapshot), one write */
		for (j = i; j < bl.n && j - i < BOUNCE_RUN && bl.f[j] == bl.f[i] + (j - i) &&
			    bl.f[j] < nblk;
		     j++) {
			uint64_t pblk = pm_bmap_get(fs, &ip->d, bl.f[j], false);
			if (!pblk)
				break;
			memcpy(buf + (j - i) * PM_BLOCK_SIZE, pm_block_ptr(fs->pool, pblk),
			       PM_BLOCK_SIZE);
		}
		if (j == i) { /* a hole or past the end: nothing to snapshot */
			j = i + 1;
			continue;
		}
		v.iov_base = buf;
		v.iov_len = (j - i) * PM_BLOCK_SIZE;
		n = pm_write(fs, &root, ip->shadow, bl.f[i] << PM_BLOCK_SHIFT, &v, 1);
		if (n < 0)
			rc = (int)n;
		else
			done += (uint64_t)n / PM_BLOCK_SIZE;
	}
	pthread_mutex_unlock(&fs->bounce_lock);
	if (rc)
		fprintf(stderr, "pinfs: inode %llu: bounce writeback of pinned blocks failed (%s): "
				"%llu of %zu snapshotted\n",
			(unsigned long long)ip->ino, strerror(-rc), (unsigned long long)done, bl.n);
	free(buf);
	free(bl.f);
	return rc ? rc : (int)done;
}

/* Scrub of a write-pinned block @fblk of @ip: verifies its snapshot in the
 * shadow, if it has one. 1 verified, 0 none, -EIO mismatch. Called with
 * ip->rw held shared. */
static int verify_shadow(struct pm_fs *fs, struct pm_inode *ip, uint64_t fblk)
{
	struct pm_inode *sh;
	uint64_t spblk;
	int rc = 0;

	pthread_mutex_lock(&fs->bounce_lock);
	sh = ip->shadow;
	if (sh) {
		pthread_rwlock_rdlock(&sh->rw);
		spblk = fblk < PM_DIV_UP(sh->d.size, PM_BLOCK_SIZE) ?
				pm_bmap_get(fs, &sh->d, fblk, false) : 0;
		if (spblk)
			rc = verify_block(fs, sh, fblk, spblk, NULL);
		pthread_rwlock_unlock(&sh->rw);
	}
	pthread_mutex_unlock(&fs->bounce_lock);
	return rc;
}

static void scrub_inode(struct pm_fs *fs, struct pm_inode *ip, struct pm_scrub *res)
{
	uint64_t f, nblk;

	pthread_rwlock_rdlock(&ip->rw);
	nblk = PM_DIV_UP(ip->d.size, PM_BLOCK_SIZE);
	res->files++;
	for (f = 0; f < nblk;) {
		uint64_t pblk, n = pm_bmap_run(fs, &ip->d, f, nblk - f, &pblk, false), i;
		for (i = 0; pblk && i < n; i++) {
			bool dirty;
			int rc;

			if (!(fs->unsafe & PM_UNSAFE_MARK_PINNED_CLEAN) && is_pinned(fs, pblk + i)) {
				res->skipped_pinned++;
				/* bounce mode: its fsync snapshot is checked instead */
				rc = verify_shadow(fs, ip, f + i);
				if (rc > 0)
					res->checked++;
				else if (rc < 0 && !res->bad++) {
					res->first_bad_ino = ip->ino;
					res->first_bad_off = (f + i) << PM_BLOCK_SHIFT;
				}
				continue;
			}
			rc = verify_block(fs, ip, f + i, pblk + i, &dirty);
			if (rc > 0)
				res->checked++;
			else if (rc < 0) {
				if (!res->bad++) {
					res->first_bad_ino = ip->ino;
					res->first_bad_off = (f + i) << PM_BLOCK_SHIFT;
				}
			} else if (dirty)
				res->skipped_dirty++;
			else
				res->skipped_nocsum++;
		}
		f += n;
	}
	pthread_rwlock_unlock(&ip->rw);
}

int pm_scrub(struct pm_fs *fs, struct pm_inode *ip, struct pm_scrub *res)
{
	uint64_t ino, lo, next;

	memset(res, 0, sizeof(*res));
	if (!fs->csum)
		return -EOPNOTSUPP;
	if (ip) {
		if (S_ISREG(ip->d.mode))
			scrub_inode(fs, ip, res);
		return 0;
	}
	/* holes of the inode table hold no file: skipped unread */
	for (next = PM_ROOT_INO + 1; pm_islots_next(fs->pool, next, UINT64_MAX, &lo, &next);) {
		for (ino = lo; ino < next; ino++) {
			struct pm_inode *f;
			if (!S_ISREG(pm_dinode_ptr(fs->pool, ino)->mode) || pm_iget(fs, ino, &f))
				continue;
			if (S_ISREG(f->d.mode))
				scrub_inode(fs, f, res);
			pm_iput(fs, f);
		}
	}
	return 0;
}

/* ---- statistics ------------------------------------------------------------ */

static uint64_t dirty_count(struct pm_inode *ip)
{
	uint64_t n = 0;
	size_t k;
	unsigned w;

	for (k = 0; k < ip->dirty.n; k++)
		for (w = 0; w < PM_ALIGN_BLOCKS / 64; w++)
			n += (uint64_t)__builtin_popcountll(ip->dirty.c[k].bits[w]);
	return n;
}

static void count_data(void *ctx, uint64_t fblk, uint64_t pblk, unsigned level)
{
	(void)fblk;
	(void)pblk;
	if (level == 0)
		(*(uint64_t *)ctx)++;
}

void pm_inode_wb_stats(struct pm_fs *fs, struct pm_inode *ip, struct pm_wb_stats *st)
{
	uint64_t data = 0;

	pthread_rwlock_rdlock(&ip->rw);
	if (S_ISREG(ip->d.mode))
		pm_bmap_walk(fs->pool, &ip->d, count_data, &data);
	pthread_mutex_lock(&ip->dlock);
	*st = ip->wb;
	st->dirty = dirty_count(ip);
	st->clean = data > st->dirty ? data - st->dirty : 0;
	pthread_mutex_unlock(&ip->dlock);
	pthread_rwlock_unlock(&ip->rw);
}

void pm_fs_wb_stats(struct pm_fs *fs, struct pm_wb_stats *st)
{
	const struct pm_super *sb = fs->pool->sb;
	uint64_t dirty = 0, used;
	size_t i;

	pthread_mutex_lock(&fs->lock);
	for (i = 0; i < fs->icap; i++) {
		struct pm_inode *ip;
		for (ip = fs->itab[i]; ip; ip = ip->hnext) {
			pthread_mutex_lock(&ip->dlock);
			dirty += dirty_count(ip);
			pthread_mutex_unlock(&ip->dlock);
		}
	}
	used = sb->nblocks - sb->data_start - fs->avail - pm_sever_pending(fs) - fs->qcount -
	       fs->unsev_blocks;
	pthread_mutex_unlock(&fs->lock);
	pthread_mutex_lock(&fs->wblock);
	*st = fs->wb;
	pthread_mutex_unlock(&fs->wblock);
	st->dirty = dirty;
	st->clean = used > dirty ? used - dirty : 0;
}

/* Flushes pool bytes in runs: adjacent ranges become one flush (one msync
 * on a pool that is not persistent memory). */
struct flush_run {
	const struct pm_persist_ops *ops;
	uint8_t *start;
	size_t len;
	bool any;
};

static void run_add(struct flush_run *r, uint8_t *p, size_t len)
{
	if (!len)
		return;
	if (r->len && r->start + r->len == p) {
		r->len += len;
		return;
	}
	if (r->len)
		pm_flush(r->ops, r->start, r->len);
	r->start = p;
	r->len = len;
	r->any = true;
}

static void run_end(struct flush_run *r)
{
	if (r->len)
		pm_flush(r->ops, r->start, r->len);
	r->len = 0;
	if (r->any)
		pm_drain(r->ops);
	r->any = false;
}

/*
 * Order of writes: (1) the written bytes, and every block dirty from before
 * whole, are flushed and drained; (2) on a checksummed pool, each unpinned
 * block's checksum is computed from the now durable bytes (no bounce copy
 * needed: ip->rw is held exclusive, no writer but a pin holder can touch the
 * block, and unpinned blocks have none), stored, flushed and drained; (3)
 * unpinned blocks leave the dirty set. A crash before (2) leaves their
 * checksums invalid (pm_dirty_mark_written made that durable before the
 * copy), never stale.
 */
void pm_write_settle(struct pm_fs *fs, struct pm_inode *ip, uint64_t off, uint64_t len,
		     bool ordered)
{
	struct flush_run r = { .ops = &fs->pool->ops };
	uint64_t first = off >> PM_BLOCK_SHIFT, last = (off + len - 1) >> PM_BLOCK_SHIFT, f;
	struct wb_runs l = { 0 };
	uint64_t nclean = 0, unused = 0, cno = UINT64_MAX, b;
	struct pm_dchunk *c = NULL;
	size_t k;

	if (!len)
		return;
	pthread_mutex_lock(&ip->dlock);
	/* the map and the pin table once per run (write() maps every block
	 * first: no holes), the dirty set once per chunk */
	runs_add(fs, ip, &l, first, last - first + 1, false, true, &unused, NULL);
	for (k = 0; k < l.n; k++) {
		for (b = 0; b < l.r[k].n; b++) {
			uint64_t pblk = l.r[k].pblk + b;
			uint64_t lo = (l.r[k].fblk + b) << PM_BLOCK_SHIFT, hi = lo + PM_BLOCK_SIZE;
			unsigned i = (unsigned)((l.r[k].fblk + b) % PM_ALIGN_BLOCKS);

			if (cno != (l.r[k].fblk + b) / PM_ALIGN_BLOCKS) {
				cno = (l.r[k].fblk + b) / PM_ALIGN_BLOCKS;
				c = chunk_of(&ip->dirty, cno, false);
			}
			if (c && bit(c, i) && !l.r[k].pinned) {
				/* dirty from before (a former pin holder's
				 * stores, a fill not yet checksummed): all of
				 * it, or writeback would never see the rest
				 * once it is clean */
				run_add(&r, pm_block_ptr(fs->pool, pblk), PM_BLOCK_SIZE);
				continue;
			}
			if (ordered)
				continue;
			if (lo < off)
				lo = off;
			if (hi > off + len)
				hi = off + len;
			run_add(&r,
				(uint8_t *)pm_block_ptr(fs->pool, pblk) + (lo & (PM_BLOCK_SIZE - 1)),
				hi - lo);
		}
	}
	pthread_mutex_unlock(&ip->dlock);
	run_end(&r);

	if (fs->csum) {
		for (k = 0; k < l.n; k++) {
			if (l.r[k].pinned)
				continue;
			for (uint64_t pblk = l.r[k].pblk; pblk < l.r[k].pblk + l.r[k].n; pblk++)
				fs->csum[pblk] = pm_csum_encode(
					pm_crc32c(0, pm_block_ptr(fs->pool, pblk), PM_BLOCK_SIZE));
			run_add(&r, (uint8_t *)&fs->csum[l.r[k].pblk],
				l.r[k].n * sizeof(*fs->csum));
		}
		run_end(&r);
	}

	pthread_mutex_lock(&ip->dlock);
	cno = UINT64_MAX; /* the set may have changed while unlocked */
	for (k = 0; k < l.n; k++) {
		if (l.r[k].pinned)
			continue; /* flushed, but never clean while pinned */
		for (f = l.r[k].fblk; f < l.r[k].fblk + l.r[k].n; f++) {
			unsigned i = (unsigned)(f % PM_ALIGN_BLOCKS);
			if (cno != f / PM_ALIGN_BLOCKS) {
				cno = f / PM_ALIGN_BLOCKS;
				c = chunk_of(&ip->dirty, cno, false);
			}
			if (c && bit(c, i)) {
				c->bits[i / 64] &= ~(1ull << (i % 64));
				nclean++;
			}
		}
	}
	if (nclean)
		drop_clean_chunks(&ip->dirty);
	ip->wb.flushed_write += l.blocks;
	pthread_mutex_unlock(&ip->dlock);
	pthread_mutex_lock(&fs->wblock);
	fs->wb.flushed_write += l.blocks;
	pthread_mutex_unlock(&fs->wblock);
	free(l.r);
}

/* ---- the background flusher ------------------------------------------------- */

void pm_writeback_pass(struct pm_fs *fs, double expire_s)
{
	uint64_t now = pm_mono_ns(), older = now - (uint64_t)(expire_s * 1e9);
	struct pm_inode **v;
	size_t i, n = 0;

	pthread_mutex_lock(&fs->lock);
	v = malloc((fs->icount + 1) * sizeof(*v));
	for (i = 0; v && i < fs->icap; i++) {
		struct pm_inode *ip;
		for (ip = fs->itab[i]; ip; ip = ip->hnext) {
			bool dirty;
			pthread_mutex_lock(&ip->dlock);
			dirty = ip->dirty.n != 0;
			pthread_mutex_unlock(&ip->dlock);
			if (dirty) {
				ip->refs++;
				v[n++] = ip;
			}
		}
	}
	pthread_mutex_unlock(&fs->lock);
	for (i = 0; i < n; i++) {
		pthread_rwlock_rdlock(&v[i]->rw);
		pm_writeback_inode(fs, v[i], false, older);
		pthread_rwlock_unlock(&v[i]->rw);
		pm_iput(fs, v[i]);
	}
	free(v);
}

static void *flusher_main(void *arg)
{
	struct pm_fs *fs = arg;

	pthread_mutex_lock(&fs->wblock);
	while (!fs->flusher_stop) {
		struct timespec ts;
		uint64_t until = pm_mono_ns() + (uint64_t)(fs->wb_interval * 1e9);
		ts.tv_sec = (time_t)(until / 1000000000ull);
		ts.tv_nsec = (long)(until % 1000000000ull);
		while (!fs->flusher_stop &&
		       pthread_cond_timedwait(&fs->wbcv, &fs->wblock, &ts) != ETIMEDOUT)
			;
		if (fs->flusher_stop)
			break;
		pthread_mutex_unlock(&fs->wblock);
		pm_writeback_pass(fs, fs->wb_expire);
		pm_sever_retry(fs);
		pthread_mutex_lock(&fs->wblock);
	}
	pthread_mutex_unlock(&fs->wblock);
	return NULL;
}

void pm_fs_start_flusher(struct pm_fs *fs, double interval_s, double expire_s)
{
	pthread_mutex_lock(&fs->wblock);
	fs->wb_interval = interval_s > 0.01 ? interval_s : 0.01;
	fs->wb_expire = expire_s;
	if (!fs->flusher_on && pthread_create(&fs->flusher, NULL, flusher_main, fs) == 0)
		fs->flusher_on = true;
	pthread_mutex_unlock(&fs->wblock);
	pm_sever_start(fs);
}

void pm_flusher_stop(struct pm_fs *fs)
{
	bool on;

	pthread_mutex_lock(&fs->wblock);
	fs->flusher_stop = true;
	on = fs->flusher_on;
	fs->flusher_on = false;
	pthread_cond_broadcast(&fs->wbcv);
	pthread_mutex_unlock(&fs->wblock);
	if (on)
		pthread_join(fs->flusher, NULL);
	pm_sever_stop(fs);
}

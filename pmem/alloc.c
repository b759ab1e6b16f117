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
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pmem/fs_int.h"

static bool dbit(const struct pm_fs *fs, uint64_t b)
{
	return (fs->bmap[b >> 6] >> (b & 63)) & 1;
}

bool pm_block_in_use(struct pm_fs *fs, uint64_t blk)
{
	return dbit(fs, blk);
}

int pm_alloc_init(struct pm_fs *fs)
{
	struct pm_super *sb = fs->pool->sb;
	uint64_t words = PM_DIV_UP(sb->bitmap_blocks * PM_BLOCK_SIZE * 8, 64);
	uint64_t b, n = 0;

	fs->bmap = malloc(words * 8);
	if (!fs->bmap)
		return -ENOMEM;
	memcpy(fs->bmap, pm_block_ptr(fs->pool, sb->bitmap_start), words * 8);
	for (b = sb->data_start; b < sb->nblocks; b++)
		if (!dbit(fs, b))
			n++;
	fs->avail = n;
	fs->alloc_hint = sb->data_start;
	fs->ino_hint = PM_ROOT_INO + 1;
	return 0;
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

/* First clear bit at or after @b, below @end, or @end. */
static uint64_t find_free(const struct pm_fs *fs, uint64_t b, uint64_t end)
{
	while (b < end) {
		uint64_t w = ~fs->bmap[b >> 6] & (~0ull << (b & 63));
		if (w) {
			uint64_t r = (b & ~63ull) + (uint64_t)__builtin_ctzll(w);
			return r < end ? r : end;
		}
		b = (b | 63) + 1;
	}
	return end;
}

int pm_balloc(struct pm_fs *fs, uint64_t goal, uint64_t want, uint64_t *out)
{
	struct pm_super *sb = fs->pool->sb;
	uint64_t start, n, b;

	if (!fs->avail || !want)
		return -ENOSPC;
	if (goal < sb->data_start || goal >= sb->nblocks)
		goal = fs->alloc_hint;
	start = find_free(fs, goal, sb->nblocks);
	if (start == sb->nblocks)
		start = find_free(fs, sb->data_start, goal);
	if (start >= sb->nblocks || dbit(fs, start))
		abort(); /* avail says there is a free block */
	for (n = 0; n < want && start + n < sb->nblocks && !dbit(fs, start + n); n++)
		;
	for (b = start; b < start + n; b++)
		fs->bmap[b >> 6] |= 1ull << (b & 63);
	media_bits(fs, start, n, true);
	fs->avail -= n;
	fs->sbc.free_blocks -= n;
	pm_sb_dirty(fs);
	fs->alloc_hint = start + n;
	*out = start;
	return (int)n;
}

void pm_bfree(struct pm_fs *fs, uint64_t blk)
{
	struct pm_tx *tx = &fs->tx;

	if (blk < fs->pool->sb->data_start || blk >= fs->pool->sb->nblocks || !dbit(fs, blk))
		abort(); /* freeing metadata or a free block: the map is corrupt */
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

/* Called after the transaction that freed tx->freed committed. */
void pm_release_freed(struct pm_fs *fs)
{
	struct pm_tx *tx = &fs->tx;
	size_t i;

	for (i = 0; i < tx->nfreed; i++) {
		uint64_t b = tx->freed[i];
		fs->bmap[b >> 6] &= ~(1ull << (b & 63));
		if (b < fs->alloc_hint)
			fs->alloc_hint = b;
	}
	fs->avail += tx->nfreed;
	tx->nfreed = 0;
}

int pm_ialloc(struct pm_fs *fs, uint64_t *ino)
{
	struct pm_super *sb = fs->pool->sb;
	uint64_t n = sb->ninodes, i, cand = fs->ino_hint;

	if (!fs->sbc.free_inodes)
		return -ENOSPC;
	for (i = 0; i < n; i++, cand++) {
		const struct pm_dinode *d;
		if (cand >= n)
			cand = PM_ROOT_INO + 1;
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
	abort(); /* free_inodes says there is one */
}

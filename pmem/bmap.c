/* SPDX-License-Identifier: MIT */
/*
 * pmem/bmap.c -- per-file block maps: a radix tree of 4 KiB map nodes with
 * 512 u64 block numbers each (see struct pm_dinode in layout.h).
 *
 * Lookups without a transaction read the pool directly; they are only made
 * with the file's data lock held, so the map cannot change under them.
 * Changes happen inside a transaction, through shadows.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pmem/fs_int.h"

static const uint64_t *node_ro(struct pm_fs *fs, uint64_t blk, bool tx)
{
	return (const uint64_t *)(tx ? pm_tx_peek(fs, blk) : pm_block_ptr(fs->pool, blk));
}

static unsigned shift_of(unsigned level)
{
	return PM_MAP_SHIFT * (level - 1);
}

static uint64_t span_of(unsigned level) /* file blocks under one entry of a node at @level */
{
	return 1ull << shift_of(level);
}

static bool fits(unsigned height, uint64_t fblk)
{
	return height >= PM_MAP_MAX_HEIGHT || (fblk >> (PM_MAP_SHIFT * height)) == 0;
}

uint64_t pm_bmap_get(struct pm_fs *fs, const struct pm_dinode *d, uint64_t fblk, bool tx)
{
	uint64_t blk = d->map_root;
	unsigned level;

	if (!blk || !fits(d->map_height, fblk))
		return 0;
	if (!pm_blk_ok(fs, blk))
		return 0;
	for (level = d->map_height; level >= 1; level--) {
		blk = node_ro(fs, blk, tx)[(fblk >> shift_of(level)) & (PM_MAP_FANOUT - 1)];
		if (!blk || !pm_blk_ok(fs, blk))
			return 0; /* a corrupt pointer reads as a hole, never a wild access */
	}
	return blk;
}

bool pm_bmap_lost(struct pm_fs *fs, const struct pm_dinode *d, uint64_t fblk)
{
	uint64_t blk = d->map_root;
	unsigned level;

	if (!blk || !fits(d->map_height, fblk) || !pm_blk_ok(fs, blk))
		return false;
	for (level = d->map_height; level >= 1; level--) {
		const uint64_t *node = node_ro(fs, blk, false);

		if (pm_fault_lost(node, PM_BLOCK_SIZE))
			return true;
		blk = node[(fblk >> shift_of(level)) & (PM_MAP_FANOUT - 1)];
		if (!blk || !pm_blk_ok(fs, blk))
			return false;
	}
	return false;
}

uint64_t pm_bmap_run(struct pm_fs *fs, const struct pm_dinode *d, uint64_t fblk, uint64_t max,
		     uint64_t *pblk, bool tx)
{
	uint64_t blk = d->map_root, n;
	const uint64_t *node;
	unsigned level, idx;

	*pblk = 0;
	if (!max)
		return 0;
	if (!blk || !fits(d->map_height, fblk) || !pm_blk_ok(fs, blk))
		return max; /* beyond the map: all hole */
	for (level = d->map_height; level > 1; level--) {
		uint64_t child = node_ro(fs, blk, tx)[(fblk >> shift_of(level)) & (PM_MAP_FANOUT - 1)];
		if (!child || !pm_blk_ok(fs, child)) {
			/* a hole to the end of this entry's span */
			n = span_of(level) - (fblk & (span_of(level) - 1));
			return n < max ? n : max;
		}
		blk = child;
	}
	node = node_ro(fs, blk, tx);
	idx = fblk & (PM_MAP_FANOUT - 1);
	*pblk = node[idx];
	if (*pblk && !pm_blk_ok(fs, *pblk)) {
		*pblk = 0;
		return 1;
	}
	for (n = 1; n < max && idx + n < PM_MAP_FANOUT; n++) {
		uint64_t e = node[idx + n];
		if (*pblk ? e != *pblk + n : e != 0)
			break;
	}
	return n;
}

/* Nodes @n new blocks in a row can need: at each level the nodes their
 * span crosses, plus a new root per level the tree may grow by. */
static uint64_t worst_nodes(uint64_t n)
{
	uint64_t w = PM_MAP_MAX_HEIGHT + 2;
	unsigned l;

	for (l = 1; l <= PM_MAP_MAX_HEIGHT; l++)
		w += (n >> (PM_MAP_SHIFT * l)) + 2;
	return w;
}

uint64_t pm_bmap_worst(const struct pm_dinode *d, uint64_t n)
{
	(void)d;
	return worst_nodes(n);
}

/*
 * A fill of c holes starts only when c + worst_nodes(c) blocks are free
 * (pmem/file.c: fill_start). So a file can be given n = @nfree -
 * worst_nodes(@nfree) - PM_MAP_MAX_HEIGHT data blocks: one fallocate of n
 * asks for n + worst_nodes(n) <= @nfree. Writes in pieces ask again for
 * each piece; the last piece, c blocks after n - c written, finds
 *   c + worst_nodes(@nfree) + PM_MAP_MAX_HEIGHT - nodes(n - c)
 * blocks free, which is at least c + worst_nodes(c): a dense file of x
 * blocks holds sum over its levels l of ceil(x / 512^l) nodes, at most its
 * height (<= PM_MAP_MAX_HEIGHT) more than sum (x >> 9l), and
 * (@nfree >> k) >= ((n - c) >> k) + (c >> k).
 */
uint64_t pm_bmap_room(uint64_t nfree)
{
	uint64_t keep = worst_nodes(nfree) + PM_MAP_MAX_HEIGHT;

	return nfree > keep ? nfree - keep : 0;
}

static int node_alloc(struct pm_fs *fs, struct pm_inode *ip, uint64_t *out)
{
	int rc = pm_balloc(fs, fs->alloc_hint, 1, out);

	if (rc < 0)
		return rc;
	pm_tx_block_new(fs, *out);
	ip->d.blocks++;
	return 0;
}

int pm_bmap_set(struct pm_fs *fs, struct pm_inode *ip, uint64_t fblk, uint64_t pblk)
{
	struct pm_dinode *d = &ip->d;
	uint64_t blk, nb;
	unsigned level;
	int rc;

	if (!d->map_root) {
		unsigned h = 1;
		while (!fits(h, fblk))
			h++;
		rc = node_alloc(fs, ip, &d->map_root);
		if (rc)
			return rc;
		d->map_height = h;
	}
	while (!fits(d->map_height, fblk)) {
		uint64_t *root;
		rc = node_alloc(fs, ip, &nb);
		if (rc)
			return rc;
		root = (uint64_t *)pm_tx_block(fs, nb);
		root[0] = d->map_root;
		pm_tx_dirty(fs, root, sizeof(*root));
		d->map_root = nb;
		d->map_height++;
	}
	blk = d->map_root;
	for (level = d->map_height; level >= 1; level--) {
		uint64_t *node = (uint64_t *)pm_tx_block(fs, blk);
		unsigned idx = (fblk >> shift_of(level)) & (PM_MAP_FANOUT - 1);

		if (level == 1) {
			node[idx] = pblk;
			pm_tx_dirty(fs, &node[idx], sizeof(node[idx]));
			return 0;
		}
		if (node[idx] && !pm_blk_ok(fs, node[idx]))
			return -EUCLEAN;
		if (!node[idx]) {
			rc = node_alloc(fs, ip, &nb);
			if (rc)
				return rc;
			node = (uint64_t *)pm_tx_block(fs, blk); /* shadows may move */
			node[idx] = nb;
			pm_tx_dirty(fs, &node[idx], sizeof(node[idx]));
		}
		blk = node[idx];
	}
	return 0;
}

/* Frees runs of blocks, coalescing neighbours. */
struct freer {
	struct pm_fs *fs;
	uint64_t start, n, total;
};

static void freer_flush(struct freer *f)
{
	uint64_t i;

	for (i = 0; i < f->n; i++)
		pm_bfree(f->fs, f->start + i);
	f->total += f->n;
	f->n = 0;
}

static void freer_add(struct freer *f, uint64_t b)
{
	if (f->n && f->start + f->n == b) {
		f->n++;
		return;
	}
	freer_flush(f);
	f->start = b;
	f->n = 1;
}

/* Frees a whole subtree without shadowing it. Returns data blocks freed. */
static uint64_t free_subtree(struct pm_fs *fs, struct freer *fr, uint64_t blk, unsigned level)
{
	const uint64_t *node = node_ro(fs, blk, true);
	uint64_t data = 0;
	unsigned i;

	for (i = 0; i < PM_MAP_FANOUT; i++) {
		if (!node[i] || !pm_blk_ok(fs, node[i]))
			continue;
		if (level == 1) {
			freer_add(fr, node[i]);
			data++;
		} else {
			data += free_subtree(fs, fr, node[i], level - 1);
		}
	}
	freer_add(fr, blk);
	return data;
}

static bool node_empty(const uint64_t *node)
{
	unsigned i;

	for (i = 0; i < PM_MAP_FANOUT; i++)
		if (node[i])
			return false;
	return true;
}

/* Punches file blocks [from, to) relative to this node's @base. Returns data
 * blocks freed; *empty says the node has no entries left. */
static uint64_t punch_node(struct pm_fs *fs, struct freer *fr, uint64_t blk, unsigned level,
			   uint64_t base, uint64_t from, uint64_t to, bool *empty)
{
	const uint64_t *ro = node_ro(fs, blk, true);
	uint64_t span = span_of(level), data = 0;
	uint64_t first = from > base ? (from - base) / span : 0;
	/* to > base here; (to - base + span - 1) would overflow when the
	 * punch runs to the end of a height-5 map (to = ~0) */
	uint64_t last = (to - base - 1) / span + 1;
	unsigned i;

	if (last > PM_MAP_FANOUT)
		last = PM_MAP_FANOUT;
	for (i = (unsigned)first; i < last; i++) {
		uint64_t cbase = base + i * span, child = ro[i];
		bool cleared = false;
		uint64_t *node;

		if (!child)
			continue;
		if (!pm_blk_ok(fs, child)) {
			cleared = true; /* drop the bad pointer, free nothing */
		} else if (level == 1) {
			freer_add(fr, child);
			data++;
			cleared = true;
		} else if (from <= cbase && cbase + span <= to) {
			data += free_subtree(fs, fr, child, level - 1);
			cleared = true;
		} else {
			bool cempty;
			data += punch_node(fs, fr, child, level - 1, cbase, from, to, &cempty);
			if (cempty) {
				freer_add(fr, child);
				cleared = true;
			}
		}
		if (cleared) {
			node = (uint64_t *)pm_tx_block(fs, blk);
			node[i] = 0;
			pm_tx_dirty(fs, &node[i], sizeof(node[i]));
			ro = node;
		}
	}
	*empty = node_empty(node_ro(fs, blk, true));
	return data;
}

uint64_t pm_bmap_punch(struct pm_fs *fs, struct pm_inode *ip, uint64_t from, uint64_t to)
{
	struct pm_dinode *d = &ip->d;
	struct freer fr = { .fs = fs };
	uint64_t data, cap;
	bool empty;

	if (from >= to)
		return 0;
	/* blocks that leave the file are neither dirty nor clean any more
	 * (writeback would only drop them at its next pass) */
	pm_dirty_forget(ip, from, to);
	if (!d->map_root)
		return 0;
	cap = d->map_height >= PM_MAP_MAX_HEIGHT ? ~0ull : 1ull << (PM_MAP_SHIFT * d->map_height);
	if (from >= cap)
		return 0;
	if (to > cap)
		to = cap;
	if (!pm_blk_ok(fs, d->map_root)) {
		d->map_root = 0; /* a corrupt root: forget it, free nothing */
		d->map_height = 0;
		return 0;
	}
	data = punch_node(fs, &fr, d->map_root, d->map_height, 0, from, to, &empty);
	if (empty) {
		freer_add(&fr, d->map_root);
		d->map_root = 0;
		d->map_height = 0;
	}
	freer_flush(&fr);
	d->blocks -= fr.total;
	return data;
}

static int walk(struct pm_pool *p, uint64_t blk, unsigned level, uint64_t base,
		pm_bmap_visit_t fn, void *ctx)
{
	const uint64_t *node = pm_block_ptr(p, blk);
	unsigned i;
	int rc = 0;

	for (i = 0; i < PM_MAP_FANOUT; i++) {
		uint64_t e = node[i];
		if (!e)
			continue;
		fn(ctx, base + i * span_of(level), e, level - 1);
		if (level > 1) {
			if (e >= p->sb->nblocks) {
				rc = -EUCLEAN;
				continue;
			}
			if (walk(p, e, level - 1, base + i * span_of(level), fn, ctx))
				rc = -EUCLEAN;
		}
	}
	return rc;
}

int pm_bmap_walk(struct pm_pool *p, const struct pm_dinode *d, pm_bmap_visit_t fn, void *ctx)
{
	if (!d->map_root)
		return d->map_height ? -EUCLEAN : 0;
	if (d->map_height < 1 || d->map_height > PM_MAP_MAX_HEIGHT)
		return -EUCLEAN;
	/* the root itself: a map node at level map_height */
	fn(ctx, 0, d->map_root, d->map_height);
	if (d->map_root >= p->sb->nblocks)
		return -EUCLEAN;
	return walk(p, d->map_root, d->map_height, 0, fn, ctx);
}

/* SPDX-License-Identifier: MIT */
/*
 * pmem/dir.c -- directory blocks and their in-core index.
 *
 * On media a directory is an array of 32-byte slots (layout.h). In DRAM each
 * directory in use gets an open-addressing hash table from name hash to slot
 * position, built once by scanning its blocks (as NOVA rebuilds its DRAM
 * indexes from the log): lookups, inserts and removals cost O(1) whatever
 * the directory size, and the media format stays a simple, checkable array.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pmem/fs_int.h"

#define HDEL (~0ull)

uint32_t pm_name_hash(const char *name, size_t len)
{
	uint32_t h = 2166136261u;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= (uint8_t)name[i];
		h *= 16777619u;
	}
	return h ? h : 1;
}

/*
 * The slots taken by the entry at slot @s of directory block @b: 0 for a
 * free slot, -1 for an entry the format forbids (a slot count that does not
 * match its name length or runs past the block, an empty name or one with
 * '/' or NUL, "." or "..", an inode number past the table). Every walk of a
 * block goes through here, so a bad entry can neither stall it (nslots 0)
 * nor make it read past the block; a bad entry is skipped as one slot.
 */
int pm_dirent_len(const struct pm_fs *fs, const uint8_t *b, unsigned s)
{
	const struct pm_dirent *de = (const void *)(b + s * PM_DIR_SLOT);

	if (!de->ino)
		return 0;
	if (!de->name_len || de->nslots != pm_dirent_slots(de->name_len) ||
	    s + de->nslots > PM_DIR_SLOTS || de->ino >= fs->pool->sb->ninodes)
		return -1;
	if (memchr(de->name, '/', de->name_len) || memchr(de->name, 0, de->name_len))
		return -1;
	if (de->name[0] == '.' && (de->name_len == 1 || (de->name_len == 2 && de->name[1] == '.')))
		return -1;
	return de->nslots;
}

static const struct pm_dirent *dirent_at(struct pm_fs *fs, struct pm_dir *dd, uint32_t pos)
{
	const uint8_t *b = pm_tx_peek(fs, dd->pblk[pos / PM_DIR_SLOTS]);

	return (const struct pm_dirent *)(b + (pos % PM_DIR_SLOTS) * PM_DIR_SLOT);
}

static int h_resize(struct pm_dir *dd, uint32_t ncap)
{
	uint64_t *old = dd->h, *nh = calloc(ncap, sizeof(*nh));
	uint32_t ocap = dd->hcap, i;

	if (!nh)
		return -ENOMEM;
	dd->h = nh;
	dd->hcap = ncap;
	dd->hused = 0;
	for (i = 0; i < ocap; i++) {
		uint64_t e = old[i];
		uint32_t j;
		if (!e || e == HDEL)
			continue;
		for (j = (uint32_t)(e >> 32) & (ncap - 1); nh[j]; j = (j + 1) & (ncap - 1))
			;
		nh[j] = e;
		dd->hused++;
	}
	free(old);
	return 0;
}

static void h_insert(struct pm_dir *dd, uint32_t hash, uint32_t pos)
{
	uint32_t j;

	for (j = hash & (dd->hcap - 1); dd->h[j] && dd->h[j] != HDEL; j = (j + 1) & (dd->hcap - 1))
		;
	if (!dd->h[j])
		dd->hused++;
	dd->h[j] = ((uint64_t)hash << 32) | (pos + 1u);
}

/* Room for one more entry; -ENOMEM if the table cannot grow. */
static int h_reserve(struct pm_dir *dd, uint64_t live)
{
	uint32_t cap = dd->hcap ? dd->hcap : 64;

	if ((uint64_t)(dd->hused + 1) * 10 < (uint64_t)dd->hcap * 7)
		return 0;
	while ((live + 1) * 10 >= (uint64_t)cap * 5)
		cap *= 2;
	return h_resize(dd, cap);
}

static int blocks_reserve(struct pm_dir *dd, uint64_t n)
{
	uint64_t *p = realloc(dd->pblk, n * sizeof(*p));
	uint8_t *f;

	if (!p)
		return -ENOMEM;
	dd->pblk = p;
	f = realloc(dd->nfree, n);
	if (!f)
		return -ENOMEM;
	dd->nfree = f;
	return 0;
}

int pm_dir_load(struct pm_fs *fs, struct pm_inode *dir)
{
	struct pm_dir *dd;
	uint64_t bi, live = 0, bad = 0;
	int rc;

	if (dir->dir)
		return 0;
	dd = calloc(1, sizeof(*dd));
	if (!dd)
		return -ENOMEM;
	dd->nblocks = dir->d.size / PM_BLOCK_SIZE;
	rc = blocks_reserve(dd, dd->nblocks ? dd->nblocks : 1);
	if (!rc)
		rc = h_resize(dd, 64);
	for (bi = 0; !rc && bi < dd->nblocks; bi++) {
		const uint8_t *b;
		unsigned s = 0, nfree = 0;

		dd->pblk[bi] = pm_bmap_get(fs, &dir->d, bi, true);
		if (!dd->pblk[bi]) {
			/* directories have no holes */
			rc = pm_fs_corrupt(fs, "directory %llu has a hole at block %llu",
					   (unsigned long long)dir->ino, (unsigned long long)bi);
			break;
		}
		b = pm_tx_peek(fs, dd->pblk[bi]);
		while (s < PM_DIR_SLOTS) {
			const struct pm_dirent *de = (const void *)(b + s * PM_DIR_SLOT);
			int n = pm_dirent_len(fs, b, s);
			if (n <= 0) {
				nfree += n == 0;
				bad += n < 0;
				s++;
				continue;
			}
			rc = h_reserve(dd, live);
			if (rc)
				break;
			h_insert(dd, de->hash, (uint32_t)(bi * PM_DIR_SLOTS + s));
			live++;
			s += (unsigned)n;
		}
		dd->nfree[bi] = (uint8_t)(nfree > 255 ? 255 : nfree);
	}
	if (rc) {
		pm_dir_free(&dd);
		return rc;
	}
	/* the bad entries are left out; a count that disagrees would let
	 * rmdir drop a directory that still has entries */
	if (bad || live != dir->d.nentries)
		pm_fs_corrupt(fs, "directory %llu has %llu bad entries, %llu live of %llu counted",
			      (unsigned long long)dir->ino, (unsigned long long)bad,
			      (unsigned long long)live, (unsigned long long)dir->d.nentries);
	dir->dir = dd;
	return 0;
}

void pm_dir_free(struct pm_dir **dp)
{
	struct pm_dir *dd = *dp;

	if (!dd)
		return;
	free(dd->h);
	free(dd->pblk);
	free(dd->nfree);
	free(dd);
	*dp = NULL;
}

static bool name_eq(const struct pm_dirent *de, const char *name, size_t len)
{
	return de->name_len == len && memcmp(de->name, name, len) == 0;
}

/* Probe for @name; returns the table index or -1. */
static int64_t h_find(struct pm_fs *fs, struct pm_dir *dd, const char *name, size_t len,
		      uint32_t hash)
{
	uint32_t j;

	for (j = hash & (dd->hcap - 1); dd->h[j]; j = (j + 1) & (dd->hcap - 1)) {
		uint64_t e = dd->h[j];
		if (e == HDEL || (uint32_t)(e >> 32) != hash)
			continue;
		if (name_eq(dirent_at(fs, dd, (uint32_t)e - 1), name, len))
			return j;
	}
	return -1;
}

int pm_dir_find(struct pm_fs *fs, struct pm_inode *dir, const char *name, uint64_t *ino,
		uint32_t *pos)
{
	size_t len = strlen(name);
	int64_t j;
	int rc = pm_dir_load(fs, dir);

	if (rc)
		return rc;
	j = h_find(fs, dir->dir, name, len, pm_name_hash(name, len));
	if (j < 0)
		return -ENOENT;
	*pos = (uint32_t)dir->dir->h[j] - 1;
	if (ino)
		*ino = dirent_at(fs, dir->dir, *pos)->ino;
	return 0;
}

/* A run of @need free slots in block @bi, or -1. */
static int find_run(struct pm_fs *fs, struct pm_dir *dd, uint64_t bi, unsigned need)
{
	const uint8_t *b = pm_tx_peek(fs, dd->pblk[bi]);
	unsigned s = 0, run = 0;

	while (s < PM_DIR_SLOTS) {
		int n = pm_dirent_len(fs, b, s);
		if (n) {
			run = 0;
			s += n > 0 ? (unsigned)n : 1;
			continue;
		}
		if (++run == need)
			return (int)(s + 1 - need);
		s++;
	}
	return -1;
}

/*
 * Adds an entry; in a transaction. The caller has checked the name does not
 * exist and has reserved a block plus map nodes.
 */
int pm_dir_add(struct pm_fs *fs, struct pm_inode *dir, const char *name, uint64_t ino,
	       unsigned type)
{
	struct pm_dir *dd;
	size_t len = strlen(name);
	unsigned need = pm_dirent_slots((unsigned)len);
	uint64_t bi;
	int slot = -1, rc;
	uint8_t *b;
	struct pm_dirent *de;

	rc = pm_dir_load(fs, dir);
	if (rc)
		return rc;
	dd = dir->dir;
	rc = h_reserve(dd, dir->d.nentries);
	if (rc)
		return rc;
	for (bi = dd->hint; bi < dd->nblocks; bi++) {
		if (dd->nfree[bi] < need)
			continue;
		slot = find_run(fs, dd, bi, need);
		if (slot >= 0)
			break;
	}
	if (slot < 0) {
		uint64_t pblk, goal = dd->nblocks ? dd->pblk[dd->nblocks - 1] + 1 : 0;
		rc = blocks_reserve(dd, dd->nblocks + 1);
		if (rc)
			return rc;
		rc = pm_balloc(fs, goal, 1, &pblk);
		if (rc < 0)
			return rc;
		pm_tx_block_new(fs, pblk);
		dir->d.blocks++;
		rc = pm_bmap_set(fs, dir, dd->nblocks, pblk);
		if (rc)
			return rc;
		bi = dd->nblocks++;
		dd->pblk[bi] = pblk;
		dd->nfree[bi] = PM_DIR_SLOTS;
		dir->d.size = dd->nblocks * PM_BLOCK_SIZE;
		slot = 0;
	}
	b = pm_tx_block(fs, dd->pblk[bi]);
	de = (struct pm_dirent *)(b + slot * PM_DIR_SLOT);
	memset(de, 0, need * PM_DIR_SLOT);
	de->ino = ino;
	de->hash = pm_name_hash(name, len);
	de->name_len = (uint8_t)len;
	de->type = (uint8_t)type;
	de->nslots = (uint8_t)need;
	memcpy(de->name, name, len);
	pm_tx_dirty(fs, de, need * PM_DIR_SLOT);
	dd->nfree[bi] = (uint8_t)(dd->nfree[bi] - need);
	if (dd->nfree[bi] < 9)
		dd->hint = bi + 1 < dd->nblocks ? bi + 1 : bi;
	h_insert(dd, de->hash, (uint32_t)(bi * PM_DIR_SLOTS + (unsigned)slot));
	dir->d.nentries++;
	return 0;
}

void pm_dir_del(struct pm_fs *fs, struct pm_inode *dir, uint32_t pos)
{
	struct pm_dir *dd = dir->dir;
	uint64_t bi = pos / PM_DIR_SLOTS;
	uint8_t *b = pm_tx_block(fs, dd->pblk[bi]);
	struct pm_dirent *de = (struct pm_dirent *)(b + (pos % PM_DIR_SLOTS) * PM_DIR_SLOT);
	unsigned n = de->nslots;
	uint32_t j;

	for (j = de->hash & (dd->hcap - 1); dd->h[j]; j = (j + 1) & (dd->hcap - 1))
		if (dd->h[j] != HDEL && (uint32_t)dd->h[j] == pos + 1u) {
			dd->h[j] = HDEL;
			break;
		}
	memset(de, 0, n * PM_DIR_SLOT);
	pm_tx_dirty(fs, de, n * PM_DIR_SLOT);
	dd->nfree[bi] = (uint8_t)(dd->nfree[bi] + n > 255 ? 255 : dd->nfree[bi] + n);
	if (bi < dd->hint)
		dd->hint = bi;
	dir->d.nentries--;
}

void pm_dir_set(struct pm_fs *fs, struct pm_inode *dir, uint32_t pos, uint64_t ino, unsigned type)
{
	struct pm_dir *dd = dir->dir;
	uint8_t *b = pm_tx_block(fs, dd->pblk[pos / PM_DIR_SLOTS]);
	struct pm_dirent *de = (struct pm_dirent *)(b + (pos % PM_DIR_SLOTS) * PM_DIR_SLOT);

	de->ino = ino;
	de->type = (uint8_t)type;
	pm_tx_dirty(fs, de, 16);
}

/* SPDX-License-Identifier: MIT */
/*
 * pmem/fsck.c -- the checker: every invariant of pmem/layout.h, verified by
 * reading the pool directly (no struct pm_fs: the engine trusts what fsck
 * checks, so fsck must not use the engine's views of it).
 *
 * Passes, in order:
 *  0. the superblock (again: journal replay may have rewritten it) and the
 *     journal header;
 *  1. the inode table: the fields of every in-use inode, its block map and
 *     xattr block. Every block pointer is claimed in a "referenced" bitmap;
 *     a block claimed twice is a duplicate;
 *  1b. only if there were duplicates: a second, silent walk finds who held
 *     each duplicated block first, so both owners can be named;
 *  2. directories: the entries of every directory, breadth first from the
 *     root, then of any directory the root does not reach. Counts the
 *     entries naming each inode and where each directory was found;
 *  3. the orphan list and link counts;
 *  4. the allocation bitmap against the referenced bitmap, and the
 *     superblock's counters.
 *
 * The bytes may be anything. Every block number is checked against
 * [data_start, nblocks) before it is followed; every loop is bounded by the
 * geometry pm_super_check() has vouched for; a map node is descended into
 * only the first time it is claimed, so a map that points at itself (or at
 * another file's map) costs one visit and one report, and the orphan list
 * walk stops at the first inode it has already seen.
 *
 * Repairs are plain stores into the mapping, each made durable at once with
 * pm_persist() through pool->ops, and only where no judgement is needed:
 *  - a leaked block's bitmap bit is cleared, unless some block pointer was
 *    invalid or duplicated (the blocks it used to name would look leaked,
 *    and may be wanted back);
 *  - an inode's block counter is set to what its map and xattr block hold,
 *    if the walk saw the whole map;
 *  - a directory's nentries and a non-directory's link count are set from
 *    the entries found, if no block is referenced twice (a directory block
 *    shared by two directories would be counted twice) and, for a link
 *    count, the inode is not an orphan;
 *  - the superblock's free counters, written last, with a new checksum.
 * Each store is one aligned field or bitmap byte, so a crash during repair
 * leaves each field old or new. The superblock is the exception: its
 * counters and checksum are persisted together but not atomically, so a
 * crash in that one persist can leave a checksum mismatch.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pmem/fs_int.h"
#include "pmem/fsck.h"

#define SHOW_PER_SUBJECT 16u /* problem lines printed per inode or directory */
#define DUPS_LISTED 65536u   /* duplicate references kept to name their owners */
#define NSEC_PER_SEC 1000000000u
/* The engine's largest file (PM_MAX_FILE_SIZE in pmem/file.c; it belongs in
 * layout.h). Past it the data path's block arithmetic overflows. */
#define FSCK_MAX_FILE_SIZE (1ull << 50)

/* What the passes learn about each inode slot. */
struct ino_state {
	uint32_t nref;	   /* directory entries naming it */
	uint32_t nsub;	   /* directories: entries naming a directory */
	uint32_t nlive;	   /* directories: live entries in its blocks */
	uint32_t found_in; /* directories: the first directory naming it */
	uint8_t flags;	   /* IS_* */
};
#define IS_USED 0x01u	 /* mode != 0 */
#define IS_DIR 0x02u	 /* S_IFDIR */
#define IS_ORPHAN 0x04u	 /* reached walking the orphan list */
#define IS_QUEUED 0x08u	 /* directory queued for pass 2 */
#define IS_REACHED 0x10u /* directory reached from the root */
#define IS_BADDIR 0x20u	 /* directory with holes or blocks past its size */

enum bkind { BK_MAP, BK_DATA, BK_XATTR };

/* One block pointer that found its block already claimed. */
struct dup {
	uint64_t blk, ino, fblk;
	enum bkind kind;
};

/* Pass 1b: the first claimant of a duplicated block. */
struct owner {
	uint64_t blk, ino, fblk;
	enum bkind kind;
	bool set;
};

/* A directory's blocks below its size, in file order: dblk[first, first + n) */
struct dirblocks {
	uint64_t ino, first, n;
};

struct fsck {
	struct pm_pool *pool;
	struct pm_super *sb;
	bool repair;
	FILE *out;
	struct pm_fsck_result *res;
	uint64_t nblocks, data_start, ninodes;
	uint8_t *bitmap;       /* the pool's allocation bitmap */
	uint64_t *ref;	       /* blocks claimed by some inode */
	struct ino_state *is;  /* per inode slot */
	bool nomem;
	bool pass1b;	       /* silent re-walk naming first owners */
	bool unsure_leaks;     /* a pointer was invalid or duplicated: blocks it held look leaked */

	struct dup *dups;
	size_t ndups, capdups;
	unsigned long dups_unlisted; /* past DUPS_LISTED: counted only */
	struct owner *owners; /* pass 1b, sorted by blk */
	size_t nowners;

	/* data blocks found by the current walk (directories, symlinks) */
	uint64_t *wfb, *wpb;
	bool *wfirst; /* the walk's inode claimed the block first */
	size_t capw;

	uint64_t *dblk; /* pass 1 -> 2: directory blocks */
	size_t ndblk, capdblk;
	struct dirblocks *dirs; /* sorted by ino (pass 1 goes in ino order) */
	size_t ndirs, capdirs;

	const struct pm_dirent **names; /* pass 2: the current directory's names */
	size_t capnames, nnames;

	/* lines about one inode or directory are capped; the rest are counted */
	const char *subj_what;
	uint64_t subj;
	unsigned shown;
	unsigned long hidden;
};

/* ---- reporting ----------------------------------------------------------- */

static void line(struct fsck *f, const char *msg, const char *suffix)
{
	if (f->out)
		fprintf(f->out, "fsck.pinfs: %s%s\n", msg, suffix);
}

/* Counts one problem (and its repair when @fixed) and prints it. */
static void __attribute__((format(printf, 3, 4)))
problem(struct fsck *f, bool fixed, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (f->pass1b)
		return;
	f->res->errors++;
	if (fixed)
		f->res->repaired++;
	if (f->subj_what && f->shown >= SHOW_PER_SUBJECT) {
		f->hidden++;
		return;
	}
	f->shown++;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	line(f, msg, fixed ? ": fixed" : "");
}

/* A remark that is not a problem. */
static void __attribute__((format(printf, 2, 3))) note(struct fsck *f, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	line(f, msg, "");
}

static void subject_begin(struct fsck *f, const char *what, uint64_t id)
{
	f->subj_what = what;
	f->subj = id;
	f->shown = 0;
	f->hidden = 0;
}

static void subject_end(struct fsck *f)
{
	if (f->hidden && !f->pass1b)
		note(f, "%s %llu: %lu more problems not shown", f->subj_what,
		     (unsigned long long)f->subj, f->hidden);
	f->subj_what = NULL;
}

/* A name from the pool, printable: quotes, backslashes and bytes outside
 * printable ASCII become \xNN; long names are cut. */
static const char *printable(char *buf, size_t size, const char *s, size_t len)
{
	size_t o = 0, i;

	for (i = 0; i < len && o + 8 < size; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
			buf[o++] = (char)c;
		else
			o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
	}
	if (i < len)
		o += (size_t)snprintf(buf + o, size - o, "...");
	buf[o] = 0;
	return buf;
}

static void persist(struct fsck *f, const void *p, size_t len)
{
	pm_persist(&f->pool->ops, p, len);
}

/* ---- bitmaps ------------------------------------------------------------- */

static bool bm_get(const uint8_t *bm, uint64_t b)
{
	return (bm[b >> 3] >> (b & 7)) & 1;
}

static bool ref_get(const struct fsck *f, uint64_t b)
{
	return (f->ref[b >> 6] >> (b & 63)) & 1;
}

static bool in_data(const struct fsck *f, uint64_t b)
{
	return b >= f->data_start && b < f->nblocks;
}

static bool all_zero(const void *p, size_t n)
{
	const uint8_t *b = p;
	size_t i;

	for (i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

static void *grow(void *p, size_t *cap, size_t need, size_t elem, bool *nomem)
{
	size_t ncap = *cap ? *cap : 16;
	void *q;

	if (need <= *cap)
		return p;
	while (ncap < need)
		ncap *= 2;
	q = realloc(p, ncap * elem);
	if (!q) {
		*nomem = true;
		return p;
	}
	*cap = ncap;
	return q;
}

/* ---- pass 0: superblock and journal -------------------------------------- */

static int check_super(struct fsck *f)
{
	struct pm_super *sb = f->sb;
	const struct pm_jhdr *h;
	char msg[256];

	if (pm_super_check(sb, f->pool->size, msg, sizeof(msg))) {
		problem(f, false, "superblock: %s", msg);
		return -1;
	}
	if (!all_zero(sb->reserved, sizeof(sb->reserved)))
		problem(f, false, "superblock: reserved bytes are not zero");
	if (sb->errors)
		problem(f, false, "superblock: errors flag 0x%x is set: pinfs found the pool corrupt",
			sb->errors);
	if (sb->clean > 1)
		problem(f, false, "superblock: clean flag is %u, not 0 or 1", sb->clean);
	if (sb->next_generation == 0)
		problem(f, false, "superblock: next generation is 0");

	h = pm_block_ptr(f->pool, sb->journal_start);
	if (h->magic != 0 && h->magic != PM_JOURNAL_MAGIC)
		problem(f, false, "journal: bad header magic 0x%016llx", (unsigned long long)h->magic);
	if (h->state != PM_JSTATE_EMPTY)
		problem(f, false, "journal: header state is %u, not EMPTY after recovery", h->state);
	if (h->pad)
		problem(f, false, "journal: header padding is not zero");
	return 0;
}

/* ---- pass 1: inodes and block maps --------------------------------------- */

/* One inode's walk over its map and xattr block. */
struct walk {
	struct fsck *f;
	uint64_t ino;
	uint64_t counted; /* valid pointers: map nodes, data blocks, xattr block */
	uint64_t ndata;	  /* data block pointers */
	bool partial;	  /* part of the map was not walked: counted is a guess */
	size_t max;	  /* data blocks to keep in f->wfb/wpb (0: none) */
	size_t n;	  /* kept so far */
	bool overflow;	  /* more than max */
};

static void note_dup(struct fsck *f, uint64_t blk, uint64_t ino, enum bkind kind, uint64_t fblk)
{
	/* a pointer that should say something else: whatever it said looks leaked */
	f->unsure_leaks = true;
	if (f->ndups >= DUPS_LISTED) {
		f->dups_unlisted++;
		return;
	}
	f->dups = grow(f->dups, &f->capdups, f->ndups + 1, sizeof(*f->dups), &f->nomem);
	if (f->ndups < f->capdups)
		f->dups[f->ndups++] = (struct dup){ blk, ino, fblk, kind };
}

static struct owner *owner_of(struct fsck *f, uint64_t blk)
{
	size_t lo = 0, hi = f->nowners;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (f->owners[mid].blk < blk)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < f->nowners && f->owners[lo].blk == blk ? &f->owners[lo] : NULL;
}

static const char *use_of(char *buf, size_t size, enum bkind kind, uint64_t ino, uint64_t fblk)
{
	if (kind == BK_DATA)
		snprintf(buf, size, "file block %llu of inode %llu", (unsigned long long)fblk,
			 (unsigned long long)ino);
	else if (kind == BK_MAP)
		snprintf(buf, size, "a map node of inode %llu", (unsigned long long)ino);
	else
		snprintf(buf, size, "the xattr block of inode %llu", (unsigned long long)ino);
	return buf;
}

/*
 * Claims @blk (already known to be in the data region) for the walk's inode.
 * Returns true the first time; false if it was already claimed, which pass 1
 * records as a duplicate.
 */
static bool claim(struct walk *w, uint64_t blk, enum bkind kind, uint64_t fblk)
{
	struct fsck *f = w->f;
	uint64_t *word = &f->ref[blk >> 6], bit = 1ull << (blk & 63);
	char use[96];

	if (*word & bit) {
		if (!f->pass1b)
			note_dup(f, blk, w->ino, kind, fblk);
		return false;
	}
	*word |= bit;
	if (f->pass1b) {
		struct owner *o = owner_of(f, blk);
		if (o && !o->set)
			*o = (struct owner){ blk, w->ino, fblk, kind, true };
		return true;
	}
	if (!bm_get(f->bitmap, blk))
		problem(f, false, "block %llu, %s, is marked free in the allocation bitmap",
			(unsigned long long)blk, use_of(use, sizeof(use), kind, w->ino, fblk));
	return true;
}

static void keep(struct walk *w, uint64_t fblk, uint64_t pblk, bool first)
{
	struct fsck *f = w->f;

	if (!w->max)
		return;
	if (w->n >= w->max) {
		w->overflow = true;
		return;
	}
	if (w->n >= f->capw) {
		size_t ncap = f->capw ? f->capw * 2 : 64;
		uint64_t *a = realloc(f->wfb, ncap * sizeof(*a)), *b;
		bool *c;
		if (!a) {
			f->nomem = true;
			return;
		}
		f->wfb = a;
		b = realloc(f->wpb, ncap * sizeof(*b));
		if (!b) {
			f->nomem = true;
			return;
		}
		f->wpb = b;
		c = realloc(f->wfirst, ncap * sizeof(*c));
		if (!c) {
			f->nomem = true;
			return;
		}
		f->wfirst = c;
		f->capw = ncap;
	}
	f->wfb[w->n] = fblk;
	f->wfirst[w->n] = first;
	f->wpb[w->n++] = pblk;
}

/* Walks the map node @blk at @level (1: points at data) covering file blocks
 * from @base. Depth is bounded by PM_MAP_MAX_HEIGHT, and only first claims
 * are descended into, so the walk ends whatever the pointers say. */
static void walk_node(struct walk *w, uint64_t blk, unsigned level, uint64_t base)
{
	struct fsck *f = w->f;
	const uint64_t *node = pm_block_ptr(f->pool, blk);
	unsigned shift = PM_MAP_SHIFT * (level - 1), i;

	for (i = 0; i < PM_MAP_FANOUT; i++) {
		uint64_t e = node[i], fb = base + ((uint64_t)i << shift);

		if (!e)
			continue;
		if (!in_data(f, e)) {
			problem(f, false,
				"inode %llu: %s for file block %llu is %llu, outside the data region [%llu, %llu)",
				(unsigned long long)w->ino, level > 1 ? "map pointer" : "block pointer",
				(unsigned long long)fb, (unsigned long long)e,
				(unsigned long long)f->data_start, (unsigned long long)f->nblocks);
			w->partial = true;
			f->unsure_leaks = true;
			continue;
		}
		w->counted++;
		if (level > 1) {
			if (claim(w, e, BK_MAP, fb))
				walk_node(w, e, level - 1, fb);
			else
				w->partial = true; /* its subtree belongs to the first claimant */
		} else {
			bool first = claim(w, e, BK_DATA, fb);
			w->ndata++;
			keep(w, fb, e, first);
		}
	}
}

static void check_xattr(struct fsck *f, uint64_t ino, uint64_t blk)
{
	const uint8_t *b = pm_block_ptr(f->pool, blk);
	const struct pm_xattr_hdr *h = (const void *)b;
	const uint8_t *p = b + sizeof(*h);
	unsigned long long in = (unsigned long long)ino;
	uint32_t pos = 0, i, j, prev;

	if (h->magic != PM_XATTR_MAGIC) {
		problem(f, false, "inode %llu: xattr block %llu has bad magic 0x%08x", in,
			(unsigned long long)blk, h->magic);
		return;
	}
	if (h->pad)
		problem(f, false, "inode %llu: xattr header padding is not zero", in);
	if (h->used > PM_XATTR_SPACE) {
		problem(f, false, "inode %llu: xattr block claims %u bytes used, more than %zu", in,
			h->used, PM_XATTR_SPACE);
		return;
	}
	if (h->count == 0)
		problem(f, false, "inode %llu: xattr block holds no attributes (an empty set has no block)",
			in);
	/* each entry takes at least 4 bytes of at most PM_XATTR_SPACE */
	for (i = 0; i < h->count; i++) {
		const struct pm_xattr_ent *e = (const void *)(p + pos);
		unsigned sz;

		if (pos + sizeof(*e) > h->used) {
			problem(f, false, "inode %llu: xattr entry %u of %u starts past the %u used bytes",
				in, i, h->count, h->used);
			return;
		}
		sz = pm_xattr_ent_size(e->name_len, e->value_len);
		if (pos + sz > h->used) {
			problem(f, false, "inode %llu: xattr entry %u (%u bytes) runs past the %u used bytes",
				in, i, sz, h->used);
			return;
		}
		if (e->name_len == 0)
			problem(f, false, "inode %llu: xattr entry %u has an empty name", in, i);
		else if (memchr(e + 1, 0, e->name_len))
			/* listxattr would split it into names that do not exist */
			problem(f, false, "inode %llu: xattr entry %u: name contains NUL", in, i);
		if (e->pad)
			problem(f, false, "inode %llu: xattr entry %u padding is not zero", in, i);
		/* a duplicate name: compare with every earlier entry */
		for (j = 0, prev = 0; e->name_len && j < i; j++) {
			const struct pm_xattr_ent *o = (const void *)(p + prev);
			if (o->name_len == e->name_len && !memcmp(o + 1, e + 1, e->name_len)) {
				char nm[80];
				problem(f, false, "inode %llu: xattr \"%s\" is stored twice", in,
					printable(nm, sizeof(nm), (const char *)(e + 1), e->name_len));
				break;
			}
			prev += pm_xattr_ent_size(o->name_len, o->value_len);
		}
		pos += sz;
	}
	if (pos != h->used)
		problem(f, false, "inode %llu: xattr entries end at byte %u, the header says %u", in, pos,
			h->used);
}

/*
 * Claims every block of inode @w->ino: map root, nodes, data, xattr block.
 * Pass 1 and pass 1b both call it, in the same inode order, so claims are
 * made in the same order and the first claimant of a duplicate is the same.
 */
static void walk_blocks(struct walk *w, const struct pm_dinode *d)
{
	struct fsck *f = w->f;
	unsigned long long in = (unsigned long long)w->ino;

	if (d->map_height > PM_MAP_MAX_HEIGHT) {
		problem(f, false, "inode %llu: map height %u exceeds %u", in, d->map_height,
			PM_MAP_MAX_HEIGHT);
		w->partial = true;
		if (d->map_root)
			f->unsure_leaks = true;
	} else if (!d->map_root != !d->map_height) {
		problem(f, false, "inode %llu: map root %llu with map height %u", in,
			(unsigned long long)d->map_root, d->map_height);
		w->partial = true;
		if (d->map_root)
			f->unsure_leaks = true;
	} else if (d->map_root && !in_data(f, d->map_root)) {
		problem(f, false, "inode %llu: map root %llu is outside the data region [%llu, %llu)", in,
			(unsigned long long)d->map_root, (unsigned long long)f->data_start,
			(unsigned long long)f->nblocks);
		w->partial = true;
		f->unsure_leaks = true;
	} else if (d->map_root) {
		w->counted++;
		if (claim(w, d->map_root, BK_MAP, 0))
			walk_node(w, d->map_root, d->map_height, 0);
		else
			w->partial = true;
	}

	if (!d->xattr_block)
		return;
	if (!in_data(f, d->xattr_block)) {
		problem(f, false, "inode %llu: xattr block %llu is outside the data region [%llu, %llu)",
			in, (unsigned long long)d->xattr_block, (unsigned long long)f->data_start,
			(unsigned long long)f->nblocks);
		w->partial = true;
		f->unsure_leaks = true;
		return;
	}
	w->counted++;
	if (claim(w, d->xattr_block, BK_XATTR, 0) && !f->pass1b)
		check_xattr(f, w->ino, d->xattr_block);
}

static void check_time(struct fsck *f, uint64_t ino, const char *which, const struct pm_time *t)
{
	if (t->nsec >= NSEC_PER_SEC)
		problem(f, false, "inode %llu: %s nanoseconds %u are not below 1e9",
			(unsigned long long)ino, which, t->nsec);
	if (t->pad)
		problem(f, false, "inode %llu: %s padding is not zero", (unsigned long long)ino, which);
}

static const char *type_name(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: return "regular file";
	case S_IFDIR: return "directory";
	case S_IFLNK: return "symlink";
	case S_IFCHR: return "character device";
	case S_IFBLK: return "block device";
	case S_IFIFO: return "fifo";
	case S_IFSOCK: return "socket";
	default: return NULL;
	}
}

/* A directory's blocks: holes and blocks past its size are errors; the
 * blocks below its size are kept for pass 2. */
static void check_dir_shape(struct fsck *f, uint64_t ino, const struct pm_dinode *d,
			    const struct walk *w)
{
	unsigned long long in = (unsigned long long)ino;
	uint64_t want = d->size / PM_BLOCK_SIZE, below = 0, i;
	struct ino_state *st = &f->is[ino];
	struct dirblocks *db;

	if (d->size % PM_BLOCK_SIZE) {
		problem(f, false, "directory %llu: size %llu is not a multiple of %u", in,
			(unsigned long long)d->size, PM_BLOCK_SIZE);
		st->flags |= IS_BADDIR;
	}
	if (w->overflow) {
		problem(f, false, "directory %llu: maps more blocks than the pool holds", in);
		st->flags |= IS_BADDIR;
	}
	/* file blocks come in increasing order */
	while (below < w->n && f->wfb[below] < want)
		below++;
	for (i = 0; i < below && f->wfb[i] == i; i++)
		;
	if (i < want && !w->overflow) {
		problem(f, false, "directory %llu: hole at file block %llu (its size says %llu blocks)",
			in, (unsigned long long)i, (unsigned long long)want);
		st->flags |= IS_BADDIR;
	}
	if (below < w->n) {
		problem(f, false, "directory %llu: file block %llu lies past its size (%llu blocks)", in,
			(unsigned long long)f->wfb[below], (unsigned long long)want);
		st->flags |= IS_BADDIR;
	}

	/* a block some other inode claimed first is scanned as that inode's (or
	 * not at all): the duplicate is reported, and pass 2 reads each block
	 * once, so all directories together keep at most nblocks */
	f->dirs = grow(f->dirs, &f->capdirs, f->ndirs + 1, sizeof(*f->dirs), &f->nomem);
	f->dblk = grow(f->dblk, &f->capdblk, f->ndblk + below + 1, sizeof(*f->dblk), &f->nomem);
	if (f->nomem)
		return;
	db = &f->dirs[f->ndirs++];
	db->ino = ino;
	db->first = f->ndblk;
	for (i = 0; i < below; i++)
		if (f->wfirst[i])
			f->dblk[f->ndblk++] = f->wpb[i];
	db->n = f->ndblk - db->first;
}

static void check_symlink(struct fsck *f, uint64_t ino, const struct pm_dinode *d,
			  const struct walk *w)
{
	unsigned long long in = (unsigned long long)ino;
	bool size_ok = d->size >= 1 && d->size <= PM_SYMLINK_MAX;

	if (!size_ok)
		problem(f, false, "inode %llu: symlink size %llu is not 1..%u", in,
			(unsigned long long)d->size, PM_SYMLINK_MAX);
	if (w->ndata != 1 || w->n != 1 || f->wfb[0] != 0) {
		problem(f, false, "inode %llu: a symlink has exactly one data block, at file block 0 (it has %llu)",
			in, (unsigned long long)w->ndata);
		return;
	}
	if (size_ok && memchr(pm_block_ptr(f->pool, f->wpb[0]), 0, d->size))
		problem(f, false, "inode %llu: symlink target contains a NUL byte", in);
}

static void check_inode(struct fsck *f, uint64_t ino)
{
	struct pm_dinode *d = pm_dinode_ptr(f->pool, ino);
	struct ino_state *st = &f->is[ino];
	unsigned long long in = (unsigned long long)ino;
	uint32_t type = d->mode & S_IFMT;
	struct walk w = { .f = f, .ino = ino };

	st->flags |= IS_USED;
	if (type == S_IFDIR)
		st->flags |= IS_DIR;
	subject_begin(f, "inode", ino);

	if (!type_name(d->mode))
		problem(f, false, "inode %llu: unknown file type in mode 0%o", in, d->mode);
	if (d->mode & ~(uint32_t)(S_IFMT | 07777))
		problem(f, false, "inode %llu: unknown bits in mode 0%o", in, d->mode);
	if (!all_zero(d->reserved, sizeof(d->reserved)))
		problem(f, false, "inode %llu: reserved bytes are not zero", in);
	check_time(f, ino, "atime", &d->atime);
	check_time(f, ino, "mtime", &d->mtime);
	check_time(f, ino, "ctime", &d->ctime);
	check_time(f, ino, "btime", &d->btime);
	if (d->flags & ~PM_IFL_ORPHAN)
		problem(f, false, "inode %llu: unknown flags 0x%x", in, d->flags);
	if (!(d->flags & PM_IFL_ORPHAN) && (d->orphan_next || d->orphan_prev))
		problem(f, false, "inode %llu: orphan links %llu/%llu set, but it is not an orphan", in,
			(unsigned long long)d->orphan_next, (unsigned long long)d->orphan_prev);
	if (type != S_IFDIR && (d->parent || d->nentries))
		problem(f, false, "inode %llu: a %s with a parent (%llu) or entry count (%llu)", in,
			type_name(d->mode) ? type_name(d->mode) : "non-directory",
			(unsigned long long)d->parent, (unsigned long long)d->nentries);
	if (type != S_IFCHR && type != S_IFBLK && d->rdev)
		problem(f, false, "inode %llu: device number set on a non-device", in);
	/* else the next inode made could repeat it: stale NFS handles would work */
	if (d->generation >= f->sb->next_generation)
		problem(f, false, "inode %llu: generation %llu is not below the superblock's next generation %llu",
			in, (unsigned long long)d->generation,
			(unsigned long long)f->sb->next_generation);

	if (type == S_IFDIR)
		w.max = (size_t)(f->nblocks - f->data_start);
	else if (type == S_IFLNK)
		w.max = 2;
	walk_blocks(&w, d);
	if (f->nomem)
		goto out;

	if (d->blocks != w.counted) {
		bool fix = f->repair && !w.partial;
		uint64_t old = d->blocks;
		if (fix) {
			d->blocks = w.counted;
			persist(f, &d->blocks, sizeof(d->blocks));
		}
		problem(f, fix, "inode %llu: block count %llu, but its map and xattr block hold %llu", in,
			(unsigned long long)old, (unsigned long long)w.counted);
	}

	switch (type) {
	case S_IFDIR:
		check_dir_shape(f, ino, d, &w);
		break;
	case S_IFLNK:
		check_symlink(f, ino, d, &w);
		break;
	case S_IFCHR: case S_IFBLK: case S_IFIFO: case S_IFSOCK:
		if (d->size || d->map_root)
			problem(f, false, "inode %llu: a %s with size %llu and map root %llu", in,
				type_name(d->mode), (unsigned long long)d->size,
				(unsigned long long)d->map_root);
		break;
	case S_IFREG:
		if (d->size > FSCK_MAX_FILE_SIZE)
			problem(f, false, "inode %llu: size %llu exceeds the largest file, %llu", in,
				(unsigned long long)d->size, FSCK_MAX_FILE_SIZE);
		break;
	default:
		break;
	}
out:
	subject_end(f);
}

static int cmp_dup(const void *a, const void *b)
{
	const struct dup *x = a, *y = b;

	return x->blk < y->blk ? -1 : x->blk > y->blk;
}

/* Pass 1b: names the first holder of every duplicated block. */
static void report_dups(struct fsck *f)
{
	struct pm_super *sb = f->sb;
	size_t i, words = (size_t)PM_DIV_UP(f->nblocks, 64);
	uint64_t ino;

	qsort(f->dups, f->ndups, sizeof(*f->dups), cmp_dup);
	f->owners = calloc(f->ndups ? f->ndups : 1, sizeof(*f->owners)); /* none listed: dups_unlisted */
	if (!f->owners) {
		f->nomem = true;
		return;
	}
	for (i = 0; i < f->ndups; i++)
		if (!f->nowners || f->owners[f->nowners - 1].blk != f->dups[i].blk)
			f->owners[f->nowners++].blk = f->dups[i].blk;

	memset(f->ref, 0, words * sizeof(*f->ref));
	f->pass1b = true;
	for (ino = PM_ROOT_INO; ino < sb->ninodes; ino++) {
		const struct pm_dinode *d = pm_dinode_ptr(f->pool, ino);
		struct walk w = { .f = f, .ino = ino };
		if (d->mode)
			walk_blocks(&w, d);
	}
	f->pass1b = false;

	/* one problem per extra reference, lines capped per block */
	for (i = 0; i < f->ndups; i++) {
		const struct dup *u = &f->dups[i];
		const struct owner *o = owner_of(f, u->blk);
		char a[96], b[96];
		if (!i || f->dups[i - 1].blk != u->blk) {
			if (i)
				subject_end(f);
			subject_begin(f, "block", u->blk);
		}
		problem(f, false, "block %llu is used twice: as %s and as %s", (unsigned long long)u->blk,
			o && o->set ? use_of(a, sizeof(a), o->kind, o->ino, o->fblk) : "something",
			use_of(b, sizeof(b), u->kind, u->ino, u->fblk));
	}
	subject_end(f);
	if (f->dups_unlisted) {
		f->res->errors += f->dups_unlisted;
		note(f, "%lu more references to blocks already in use, not listed", f->dups_unlisted);
	}
}

static void pass1(struct fsck *f)
{
	const struct pm_dinode *slot0 = pm_dinode_ptr(f->pool, 0);
	const struct pm_dinode *root = pm_dinode_ptr(f->pool, PM_ROOT_INO);
	uint64_t ino;

	if (!all_zero(slot0, sizeof(*slot0)))
		problem(f, false, "inode slot 0 is not zero");
	if (!S_ISDIR(root->mode))
		problem(f, false, "root inode %llu is not a directory (mode 0%o)",
			(unsigned long long)PM_ROOT_INO, root->mode);
	for (ino = PM_ROOT_INO; ino < f->ninodes && !f->nomem; ino++)
		if (pm_dinode_ptr(f->pool, ino)->mode)
			check_inode(f, ino);
	if ((f->ndups || f->dups_unlisted) && !f->nomem)
		report_dups(f);
}

/* ---- pass 2: directories ------------------------------------------------- */

static const struct dirblocks *dir_blocks(const struct fsck *f, uint64_t ino)
{
	size_t lo = 0, hi = f->ndirs;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (f->dirs[mid].ino < ino)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < f->ndirs && f->dirs[lo].ino == ino ? &f->dirs[lo] : NULL;
}

static const char *dname(const struct pm_dirent *de)
{
	return (const char *)de + offsetof(struct pm_dirent, name);
}

/* Adds @de to the current directory's names; false if the name is there. */
static bool names_add(struct fsck *f, const struct pm_dirent *de)
{
	size_t mask, i;

	if ((f->nnames + 1) * 2 > f->capnames) {
		size_t ncap = f->capnames ? f->capnames * 2 : 256, j;
		const struct pm_dirent **old = f->names, **nt = calloc(ncap, sizeof(*nt));
		if (!nt) {
			f->nomem = true;
			return true;
		}
		for (j = 0; j < f->capnames; j++) {
			if (!old[j])
				continue;
			for (i = old[j]->hash & (ncap - 1); nt[i]; i = (i + 1) & (ncap - 1))
				;
			nt[i] = old[j];
		}
		free(old);
		f->names = nt;
		f->capnames = ncap;
	}
	mask = f->capnames - 1;
	for (i = de->hash & mask; f->names[i]; i = (i + 1) & mask) {
		const struct pm_dirent *o = f->names[i];
		if (o->hash == de->hash && o->name_len == de->name_len &&
		    !memcmp(dname(o), dname(de), de->name_len))
			return false;
	}
	f->names[i] = de;
	f->nnames++;
	return true;
}

static void names_reset(struct fsck *f)
{
	if (f->nnames)
		memset(f->names, 0, f->capnames * sizeof(*f->names));
	f->nnames = 0;
}

struct queue {
	uint32_t *q;
	size_t head, tail;
};

static void enqueue(struct fsck *f, struct queue *q, uint64_t ino)
{
	if (f->is[ino].flags & IS_QUEUED)
		return;
	f->is[ino].flags |= IS_QUEUED;
	q->q[q->tail++] = (uint32_t)ino;
}

/* One live entry (ino != 0, nslots sane) at slot @s of pool block @blk of
 * directory @dino. */
static void check_dirent(struct fsck *f, uint64_t dino, const struct pm_dirent *de, uint64_t blk,
			 unsigned s, struct queue *q)
{
	unsigned long long dn = (unsigned long long)dino;
	struct ino_state *xs;
	const struct pm_dinode *xd;
	char nm[96], where[128];
	const char *name = dname(de);

	if (de->name_len == 0) {
		problem(f, false, "directory %llu: entry in block %llu slot %u has an empty name", dn,
			(unsigned long long)blk, s);
		snprintf(where, sizeof(where), "entry in block %llu slot %u", (unsigned long long)blk, s);
	} else if (pm_dirent_slots(de->name_len) > de->nslots) {
		problem(f, false, "directory %llu: entry in block %llu slot %u: a %u-byte name needs %u slots, it has %u",
			dn, (unsigned long long)blk, s, de->name_len, pm_dirent_slots(de->name_len),
			de->nslots);
		snprintf(where, sizeof(where), "entry in block %llu slot %u", (unsigned long long)blk, s);
	} else {
		printable(nm, sizeof(nm), name, de->name_len);
		snprintf(where, sizeof(where), "entry \"%s\"", nm);
		if (de->nslots != pm_dirent_slots(de->name_len))
			problem(f, false, "directory %llu: %s takes %u slots, a %u-byte name needs %u", dn,
				where, de->nslots, de->name_len, pm_dirent_slots(de->name_len));
		if (memchr(name, '/', de->name_len) || memchr(name, 0, de->name_len))
			problem(f, false, "directory %llu: %s: name contains '/' or NUL", dn, where);
		if ((de->name_len == 1 && name[0] == '.') ||
		    (de->name_len == 2 && name[0] == '.' && name[1] == '.'))
			problem(f, false, "directory %llu: %s: . and .. are never stored", dn, where);
		if (de->hash != pm_name_hash(name, de->name_len))
			problem(f, false, "directory %llu: %s: hash 0x%08x, expected 0x%08x", dn, where,
				de->hash, pm_name_hash(name, de->name_len));
		if (!names_add(f, de))
			problem(f, false, "directory %llu: %s appears twice", dn, where);
	}
	if (de->pad)
		problem(f, false, "directory %llu: %s: padding is not zero", dn, where);

	if (de->ino >= f->ninodes) {
		problem(f, false, "directory %llu: %s names inode %llu, past the inode table (%llu slots)",
			dn, where, (unsigned long long)de->ino, (unsigned long long)f->ninodes);
		return;
	}
	xs = &f->is[de->ino];
	if (!(xs->flags & IS_USED)) {
		problem(f, false, "directory %llu: %s names free inode %llu", dn, where,
			(unsigned long long)de->ino);
		return;
	}
	xd = pm_dinode_ptr(f->pool, de->ino);
	if (de->type != pm_dtype(xd->mode))
		problem(f, false, "directory %llu: %s has type %u, but inode %llu has type %u", dn, where,
			de->type, (unsigned long long)de->ino, pm_dtype(xd->mode));
	if (xs->nref < UINT32_MAX)
		xs->nref++;
	if (de->ino == PM_ROOT_INO) {
		problem(f, false, "directory %llu: %s names the root directory", dn, where);
		return;
	}
	if (!(xs->flags & IS_DIR))
		return;
	if (f->is[dino].nsub < UINT32_MAX)
		f->is[dino].nsub++;
	if (xs->found_in) {
		problem(f, false, "directory %llu: %s names directory %llu, which already has an entry in directory %u (a hard link or a cycle)",
			dn, where, (unsigned long long)de->ino, xs->found_in);
		return;
	}
	xs->found_in = (uint32_t)dino;
	if (xd->parent != dino)
		problem(f, false, "directory %llu: its parent is %llu, but its entry is in directory %llu",
			(unsigned long long)de->ino, (unsigned long long)xd->parent, dn);
	enqueue(f, q, de->ino);
}

static void scan_dir(struct fsck *f, uint64_t dino, struct queue *q, bool safe_counts)
{
	const struct dirblocks *db = dir_blocks(f, dino);
	struct pm_dinode *d = pm_dinode_ptr(f->pool, dino);
	struct ino_state *st = &f->is[dino];
	uint64_t bi, live = 0;

	if (!db)
		return;
	subject_begin(f, "directory", dino);
	names_reset(f);
	for (bi = 0; bi < db->n && !f->nomem; bi++) {
		uint64_t blk = f->dblk[db->first + bi];
		const uint8_t *b = pm_block_ptr(f->pool, blk);
		unsigned s = 0;

		while (s < PM_DIR_SLOTS) {
			const struct pm_dirent *de = (const void *)(b + s * PM_DIR_SLOT);
			if (!de->ino) {
				s++;
				continue;
			}
			if (!de->nslots || s + de->nslots > PM_DIR_SLOTS) {
				/* the engine takes it for a free slot (pm_dir_load) */
				problem(f, false, "directory %llu: entry in block %llu slot %u claims %u slots",
					(unsigned long long)dino, (unsigned long long)blk, s, de->nslots);
				s++;
				continue;
			}
			live++;
			check_dirent(f, dino, de, blk, s, q);
			s += de->nslots;
		}
	}
	st->nlive = live > UINT32_MAX ? UINT32_MAX : (uint32_t)live;
	if (d->nentries != live && !f->nomem) {
		bool fix = f->repair && safe_counts && !(st->flags & IS_BADDIR);
		uint64_t old = d->nentries;
		if (fix) {
			d->nentries = live;
			persist(f, &d->nentries, sizeof(d->nentries));
		}
		problem(f, fix, "directory %llu: entry count %llu, but it holds %llu entries",
			(unsigned long long)dino, (unsigned long long)old, (unsigned long long)live);
	}
	subject_end(f);
}

/* Scans the tree from the root, breadth first, then every directory the
 * root did not reach (their entries still count as links). */
static void pass2(struct fsck *f)
{
	struct queue q = { .q = malloc(f->ninodes * sizeof(*q.q)) };
	bool safe_counts = f->ndups == 0 && !f->dups_unlisted;
	bool reached = true;
	uint64_t next = PM_ROOT_INO;

	if (!q.q) {
		f->nomem = true;
		return;
	}
	if ((f->is[PM_ROOT_INO].flags & (IS_USED | IS_DIR)) == (IS_USED | IS_DIR))
		enqueue(f, &q, PM_ROOT_INO);
	for (;;) {
		while (q.head < q.tail && !f->nomem) {
			uint64_t ino = q.q[q.head++];
			if (reached)
				f->is[ino].flags |= IS_REACHED;
			scan_dir(f, ino, &q, safe_counts);
		}
		if (f->nomem)
			break;
		reached = false;
		while (next < f->ninodes &&
		       ((f->is[next].flags & (IS_DIR | IS_QUEUED)) != IS_DIR))
			next++;
		if (next == f->ninodes)
			break;
		enqueue(f, &q, next);
	}
	free(q.q);
}

/* ---- pass 3: orphan list and link counts --------------------------------- */

static void check_orphans(struct fsck *f)
{
	uint64_t prev = 0, ino = f->sb->orphan_head;

	/* each inode is entered once: the walk ends within ninodes steps */
	while (ino) {
		struct ino_state *st;
		const struct pm_dinode *d;

		if (ino >= f->ninodes) {
			problem(f, false, "orphan list: inode %llu (after %llu) is past the inode table",
				(unsigned long long)ino, (unsigned long long)prev);
			break;
		}
		st = &f->is[ino];
		if (st->flags & IS_ORPHAN) {
			problem(f, false, "orphan list: loops back to inode %llu (after %llu)",
				(unsigned long long)ino, (unsigned long long)prev);
			break;
		}
		if (!(st->flags & IS_USED)) {
			problem(f, false, "orphan list: names free inode %llu (after %llu)",
				(unsigned long long)ino, (unsigned long long)prev);
			break;
		}
		st->flags |= IS_ORPHAN;
		d = pm_dinode_ptr(f->pool, ino);
		if (ino == PM_ROOT_INO)
			problem(f, false, "orphan list: holds the root directory");
		if (!(d->flags & PM_IFL_ORPHAN))
			problem(f, false, "inode %llu: on the orphan list without the orphan flag",
				(unsigned long long)ino);
		if (d->orphan_prev != prev)
			problem(f, false, "inode %llu: orphan_prev is %llu, but it follows %llu on the orphan list",
				(unsigned long long)ino, (unsigned long long)d->orphan_prev,
				(unsigned long long)prev);
		if (d->nlink)
			problem(f, false, "inode %llu: on the orphan list with link count %u",
				(unsigned long long)ino, d->nlink);
		prev = ino;
		ino = d->orphan_next;
	}
	for (ino = PM_ROOT_INO; ino < f->ninodes; ino++)
		if ((f->is[ino].flags & (IS_USED | IS_ORPHAN)) == IS_USED &&
		    (pm_dinode_ptr(f->pool, ino)->flags & PM_IFL_ORPHAN))
			problem(f, false, "inode %llu: has the orphan flag but is not on the orphan list",
				(unsigned long long)ino);
}

static void check_dir_links(struct fsck *f, uint64_t ino, const struct pm_dinode *d,
			    const struct ino_state *st)
{
	unsigned long long in = (unsigned long long)ino;
	uint64_t want = 2 + (uint64_t)st->nsub;

	if (ino == PM_ROOT_INO) {
		if (d->parent != PM_ROOT_INO)
			problem(f, false, "root directory: parent is %llu, not %llu",
				(unsigned long long)d->parent, (unsigned long long)PM_ROOT_INO);
	} else if (!st->nref) {
		if (!(st->flags & IS_ORPHAN))
			problem(f, false, "directory %llu: no entry names it and it is not on the orphan list (orphan left behind)",
				in);
		else if (st->nlive)
			problem(f, false, "directory %llu: removed (on the orphan list) but still holds %u entries",
				in, st->nlive);
		return;
	} else if (!(st->flags & IS_REACHED)) {
		problem(f, false, "directory %llu: not reachable from the root (its entry is in a directory cycle or a lost directory)",
			in);
	}
	if (d->nlink != want)
		problem(f, false, "directory %llu: link count %u, but it has %u subdirectories (expected %llu)",
			in, d->nlink, st->nsub, (unsigned long long)want);
}

static void pass3(struct fsck *f)
{
	bool safe_counts = f->ndups == 0 && !f->dups_unlisted;
	uint64_t ino;

	check_orphans(f);
	for (ino = PM_ROOT_INO; ino < f->ninodes; ino++) {
		struct ino_state *st = &f->is[ino];
		struct pm_dinode *d;

		if (!(st->flags & IS_USED))
			continue;
		d = pm_dinode_ptr(f->pool, ino);
		if (st->flags & IS_DIR) {
			check_dir_links(f, ino, d, st);
			continue;
		}
		if (!st->nref) {
			/* on the orphan list: its link count was checked there */
			if (!(st->flags & IS_ORPHAN))
				problem(f, false, "inode %llu: link count %u, but no directory entry names it and it is not on the orphan list (orphan left behind)",
					(unsigned long long)ino, d->nlink);
			continue;
		}
		if (d->nlink != st->nref) {
			/* an orphan that entries name: is the entry or the
			 * unlink stale? Not ours to guess. */
			bool fix = f->repair && safe_counts && !(st->flags & IS_ORPHAN) &&
				   !(d->flags & PM_IFL_ORPHAN);
			uint32_t old = d->nlink;
			if (fix) {
				d->nlink = st->nref;
				persist(f, &d->nlink, sizeof(d->nlink));
			}
			problem(f, fix, "inode %llu: link count %u, but %u directory entries name it",
				(unsigned long long)ino, old, st->nref);
		}
	}
}

/* ---- pass 4: bitmap and counters ----------------------------------------- */

/* "block 7" or "blocks 7-9" */
static const char *run_name(char *buf, size_t size, uint64_t first, uint64_t last)
{
	if (first == last)
		snprintf(buf, size, "block %llu", (unsigned long long)first);
	else
		snprintf(buf, size, "blocks %llu-%llu", (unsigned long long)first,
			 (unsigned long long)last);
	return buf;
}

/* Reports runs in [from, to) whose bitmap bit is @bit but should not be. */
static void bitmap_runs(struct fsck *f, uint64_t from, uint64_t to, bool bit, const char *what)
{
	uint64_t b = from;

	while (b < to) {
		uint64_t start;
		char rn[64];
		if (bm_get(f->bitmap, b) != bit) {
			b++;
			continue;
		}
		for (start = b; b < to && bm_get(f->bitmap, b) == bit; b++)
			;
		problem(f, false, "%s: %s", run_name(rn, sizeof(rn), start, b - 1), what);
	}
}

/* Blocks marked in use that nothing references. */
static void leaked_runs(struct fsck *f)
{
	bool fix = f->repair && !f->unsure_leaks, any = false;
	uint64_t b = f->data_start, i;

	while (b < f->nblocks) {
		uint64_t start;
		char rn[64];
		if (!bm_get(f->bitmap, b) || ref_get(f, b)) {
			b++;
			continue;
		}
		for (start = b; b < f->nblocks && bm_get(f->bitmap, b) && !ref_get(f, b); b++)
			;
		if (fix) {
			for (i = start; i < b; i++)
				f->bitmap[i >> 3] &= (uint8_t)~(1u << (i & 7));
			persist(f, f->bitmap + (start >> 3), ((b - 1) >> 3) - (start >> 3) + 1);
		}
		problem(f, fix, "%s: marked in use, but nothing references %s (leaked)",
			run_name(rn, sizeof(rn), start, b - 1), b - start > 1 ? "them" : "it");
		any = true;
	}
	if (any && f->repair && !fix)
		note(f, "leaked blocks left allocated: some block maps are damaged and may have owned them");
}

static void pass4(struct fsck *f)
{
	struct pm_super *sb = f->sb;
	uint64_t free_blocks = 0, free_inodes = 0, b, ino;
	bool sb_dirty = false;

	bitmap_runs(f, 0, f->data_start, false, "metadata, but marked free in the allocation bitmap");
	leaked_runs(f);
	bitmap_runs(f, f->nblocks, sb->bitmap_blocks * PM_BLOCK_SIZE * 8ull, false,
		    "past the end of the pool, but marked free in the allocation bitmap");

	for (b = f->data_start; b < f->nblocks; b++)
		if (!bm_get(f->bitmap, b))
			free_blocks++;
	for (ino = PM_ROOT_INO; ino < f->ninodes; ino++)
		if (!(f->is[ino].flags & IS_USED))
			free_inodes++;

	if (sb->free_blocks != free_blocks) {
		uint64_t old = sb->free_blocks;
		if (f->repair) {
			sb->free_blocks = free_blocks;
			sb_dirty = true;
		}
		problem(f, f->repair, "superblock: %llu free blocks, but the bitmap has %llu",
			(unsigned long long)old, (unsigned long long)free_blocks);
	}
	if (sb->free_inodes != free_inodes) {
		uint64_t old = sb->free_inodes;
		if (f->repair) {
			sb->free_inodes = free_inodes;
			sb_dirty = true;
		}
		problem(f, f->repair, "superblock: %llu free inodes, but %llu slots are free",
			(unsigned long long)old, (unsigned long long)free_inodes);
	}
	if (sb_dirty) {
		sb->sb_csum = pm_super_csum(sb);
		persist(f, sb, sizeof(*sb));
	}
}

/* ---- entry point --------------------------------------------------------- */

/*
 * Order of writes (with @repair): block counters (pass 1), entry counters
 * (pass 2), link counts (pass 3), bitmap bytes, then the superblock with its
 * checksum (pass 4); each persisted as it is made. See the top of this file.
 */
int pm_fsck(struct pm_pool *pool, bool repair, FILE *out, struct pm_fsck_result *res)
{
	struct fsck f = { .pool = pool, .sb = pool->sb, .repair = repair, .out = out, .res = res };
	int rc = 0;

	res->errors = 0;
	res->repaired = 0;
	if (check_super(&f))
		return 0; /* nothing else can be located safely */
	f.nblocks = f.sb->nblocks;
	f.data_start = f.sb->data_start;
	f.ninodes = f.sb->ninodes;
	f.bitmap = pm_block_ptr(pool, f.sb->bitmap_start);
	f.ref = calloc((size_t)PM_DIV_UP(f.nblocks, 64), sizeof(*f.ref));
	f.is = calloc((size_t)f.ninodes, sizeof(*f.is));
	if (!f.ref || !f.is) {
		rc = -ENOMEM;
		goto out;
	}
	pass1(&f);
	if (!f.nomem)
		pass2(&f);
	if (!f.nomem)
		pass3(&f);
	if (!f.nomem)
		pass4(&f);
	if (f.nomem)
		rc = -ENOMEM;
out:
	free(f.ref);
	free(f.is);
	free(f.dups);
	free(f.owners);
	free(f.wfb);
	free(f.wpb);
	free(f.wfirst);
	free(f.dblk);
	free(f.dirs);
	free(f.names);
	return rc;
}

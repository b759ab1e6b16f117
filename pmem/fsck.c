/* SPDX-License-Identifier: MIT */
/*
 * pmem/fsck.c -- the checker: every invariant of pmem/layout.h, verified by
 * reading the pool directly (no struct pm_fs: the engine trusts what fsck
 * checks, so fsck must not use the engine's views of it).
 *
 * Passes, in order:
 *  0. the superblock (again: journal replay may have rewritten it) and the
 *     journal header;
 *  (with repair) a silent walk of every map first finds the blocks two
 *     inodes name, "contested": no repair writes into one before it is
 *     settled (it may be one file's data that another's corrupt pointer
 *     reads as a map node or a directory block);
 *  1. the inode table: the fields of every in-use inode, its block map and
 *     xattr block. Every block pointer is claimed in a "referenced" bitmap;
 *     a block claimed twice is a duplicate;
 *  1b. only if there were duplicates (or, with repair, ghost claims): a
 *     second, silent walk finds who held each such block first;
 *  1c. with repair, the claims are settled: whose is a block two inodes
 *     name, or a block the bitmap calls free (see "pass 1c" below);
 *  2. directories: the entries of every directory, breadth first from the
 *     root, then of any directory the root does not reach. Counts the
 *     entries naming each inode and where each directory was found;
 *  3. the orphan list and link counts;
 *  4. the allocation bitmap against the referenced bitmap, and the
 *     superblock's counters.
 *
 * The bytes may be anything. Every block number is checked against
 * [data_start, nblocks) before it is followed; every loop is bounded by the
 * geometry pm_super_check_layout() has vouched for, and the judging of
 * claims by a budget of map entries per round; a map node is descended into
 * only the first time it is claimed, so a map that points at itself (or at
 * another file's map) costs one visit and one report, and the orphan list
 * walk stops at the first inode it has already seen.
 *
 * Repairs (@repair) are plain stores into the mapping, each made durable at
 * once with pm_persist() through pool->ops. A repair can uncover more work
 * (a dropped pointer leaves its block leaked, a dropped entry leaves its
 * inode unreachable), so with @repair the passes run again, up to
 * MAX_ROUNDS times, until a round repairs nothing: that last round's
 * unrepaired problems are what is left (and the only unrepaired lines
 * printed); every repair of every round is printed as it is made. What is
 * repaired, and how (the line says which):
 *  - the superblock: a corrupt primary is rewritten from the backup (the
 *    caller opened the pool with PM_POOL_BACKUP_SB); reserved bytes, the
 *    clean flag, the next generation, the free counters and the orphan
 *    head (out of range too: pm_super_check_layout() leaves them to fsck);
 *    a damaged, stale or unusable backup is rewritten from the primary. A
 *    committed journal the replay refused is discarded (its header reset);
 *  - inodes: reserved bytes, padding, nanoseconds, unknown mode bits and
 *    flags, stray orphan links, parent, device number, sizes; an inode of
 *    unknown type, or a symlink without its one block, is cleared (its
 *    entries are dropped, its blocks freed);
 *  - block maps: a pointer outside the data region, or a map root or height
 *    that cannot be, is dropped (the file gets a hole there). A block that
 *    two inodes claim (e2fsck's "multiply-claimed blocks") stays with the
 *    one whose structure vouches for it, or with neither: the others lose
 *    the pointer (a hole; a map node's file blocks become holes), never
 *    does one file get to read another's bytes. A block one inode names
 *    twice stays with its first pointer; the second gets a copy of it in
 *    a free block (data, directory and xattr blocks) or is dropped (a map
 *    node). A pointer to a block the bitmap calls free is kept (the block
 *    marked in use) only if its inode vouches for it: else it may hold a
 *    deleted file's bytes, and the pointer is dropped. A directory's size
 *    is set to the blocks it has from block 0 on, and blocks past a hole
 *    are dropped;
 *  - xattr blocks that do not parse are dropped (the inode loses its
 *    extended attributes);
 *  - directory entries: a bad slot count, an empty or illegal name, . or ..,
 *    a duplicate name, an entry naming a free inode, the root, or a second
 *    entry for a directory is dropped; a wrong hash or type is corrected;
 *    entry counts and a directory's parent are set from what is found;
 *  - link counts of files and directories, from the entries found;
 *  - an inode no entry names and that is no orphan is reconnected to the
 *    root directory as "#INO", like e2fsck's lost+found (a directory keeps
 *    its subtree); if the root has no free slot it goes on the orphan list
 *    instead, and the next mount frees it (both are said);
 *  - the orphan list is rebuilt from the inodes that are orphans (no entry,
 *    orphan flag or on the old list), when anything about it is wrong; a
 *    removed directory's stale entries are dropped;
 *  - the allocation bitmap: metadata marked free is marked in use (blocks
 *    in use: above), leaked blocks freed (in a round where no pointer was
 *    invalid or duplicated, so no block can be wanted back).
 * Left alone (reported, exit 4): a root inode that is not a directory, a
 * primary superblock with no intact backup, and data blocks whose checksum
 * fails (--checksums): fsck cannot know the right bytes.
 *
 * Each store is one aligned field, one slot or bitmap byte, so a crash
 * during repair leaves each field old or new, and running fsck again
 * finishes the job. The superblock is the exception: its fields and
 * checksum are persisted together but not atomically.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pmem/crc32c.h"
#include "pmem/fs_int.h"
#include "pmem/fsck.h"

#define SHOW_PER_SUBJECT 16u /* problem lines printed per inode or directory */
#define DUPS_LISTED 65536u   /* duplicate references kept to name their owners */
#define LEAKS_LISTED 65536u  /* leaked blocks kept to weigh claims by (find_leaks) */
#define NSEC_PER_SEC 1000000000u
/* The engine's largest file (PM_MAX_FILE_SIZE in pmem/file.c; it belongs in
 * layout.h). Past it the data path's block arithmetic overflows. */
#define FSCK_MAX_FILE_SIZE (1ull << 50)
#define MAX_ROUNDS 16u /* repair rounds before fsck gives up converging */

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
#define IS_DROP 0x40u	 /* unreachable, no room to reconnect: orphan it */
#define IS_SHARED 0x80u	 /* names a contested or free-marked block: settled this round */

enum bkind { BK_MAP, BK_DATA, BK_XATTR };

/* What a walk of the block maps is for (walk_blocks). */
enum walkmode {
	WM_CHECK,   /* pass 1: report, repair, record duplicates */
	WM_PRESCAN, /* before pass 1, repair only, silent: finds blocks named twice */
	WM_WHOSE,   /* then, if there are any: which of them two inodes name */
	WM_OWNERS,  /* pass 1b, silent: finds the first claimant of each duplicate */
};

/* One block pointer that found its block already claimed. */
struct dup {
	uint64_t blk, ino, fblk;
	enum bkind kind;
	unsigned level; /* a map node's level as this pointer sees it; 0 else */
	uint64_t *slot; /* the pointer in the pool */
	bool deferred;	/* the pointer is in a contested node: settled later */
};

/* Pass 1b: the first claimant of a duplicated block. */
struct owner {
	uint64_t blk, ino, fblk;
	enum bkind kind;
	unsigned level;
	uint64_t *slot; /* its pointer in the pool */
	bool deferred;	/* as in struct dup */
	bool set;
};

/* Repair: a pointer to a block the bitmap calls free (settle_frees). */
struct freeref {
	uint64_t blk, ino, fblk;
	enum bkind kind;
	unsigned level;
	uint64_t *slot;
};

/* An inode's block count that its map disagrees with; fixed once the
 * round's claims are settled (settle_counts), since census() reads it. */
struct countfix {
	uint64_t ino, counted;
	bool partial; /* the walk skipped part of the map: counted is a guess */
};

/* Prescan: a block named twice, and whether by two inodes. */
struct twice {
	uint64_t blk, ino; /* ino: the first to name it */
	bool contested;	   /* another inode names it too */
};

/* A block an inode's map names that a leaked map node names too: a pointer
 * may have moved onto it from there (find_leaks). */
struct ghost {
	uint64_t blk, node;
	uint64_t root; /* the leaked root @node lies under */
};

/* A leaked block no leaked map node names, and the blocks under it */
struct leakroot {
	uint64_t size, blk; /* size 0: too costly to count */
};

/* Does inode @ino's structure vouch for the blocks it names? (census()) */
struct verdict {
	uint64_t ino;
	bool ok;
	char why[120]; /* if not, what is wrong */
};

/* A directory's blocks below its size, in file order: dblk[first, first + n) */
struct dirblocks {
	uint64_t ino, first, n;
};

struct fsck {
	struct pm_pool *pool;
	struct pm_super *sb;
	bool repair, checksums;
	FILE *out;
	FILE *held;	       /* repair rounds: unrepaired lines, printed if last */
	struct pm_fsck_result *res;
	unsigned long nerr, nfix; /* this round */
	uint64_t nblocks, data_start, ninodes;
	uint64_t backup;       /* the backup superblock's block, 0 if none */
	uint8_t *bitmap;       /* the pool's allocation bitmap, copied to DRAM
				* (pm_pool_read: its holes stay unread) */
	uint8_t *pbitmap;      /* the bitmap in the pool: repairs store there */
	uint32_t *csum;	       /* the checksum table, NULL without */
	uint64_t *ref;	       /* blocks claimed by some inode */
	struct ino_state *is;  /* per inode slot below nis (ist()) */
	uint64_t nis;	       /* 1 + the highest slot in use: every slot from
				* it on is free (see used_end()) */
	struct ino_state none; /* what ist() says of a slot from nis on */
	bool nomem;
	enum walkmode mode;    /* what the map walks are for */
	uint64_t *contested;   /* repair: blocks two inodes name (prescan), else NULL */
	struct twice *twice;   /* prescan: blocks named twice, sorted */
	size_t ntwice;
	bool withheld;	       /* a repair was put off to the next round (a contested block) */
	bool unsure_leaks;     /* a pointer was invalid or duplicated: blocks it held look leaked */
	bool sb_dirty;	       /* the superblock was changed: write it at the end */
	uint32_t errors_flag;   /* the errors flag found set (and cleared) by --repair */
	bool orphans_bad;      /* the orphan list needs rebuilding */
	uint64_t root_extra;   /* a block grow_root() added this round, or 0 */
	uint64_t max_gen;      /* highest inode generation */
	uint64_t alloc_next;   /* where the search for a free block goes on */

	struct dup *dups;
	size_t ndups, capdups;
	unsigned long dups_unlisted; /* past DUPS_LISTED: counted only */
	struct owner *owners; /* pass 1b, sorted by blk */
	size_t nowners;

	/* repair: pointers to blocks marked free, block counts, verdicts */
	struct freeref *frees;
	size_t nfrees, capfrees;
	struct countfix *counts;
	size_t ncounts, capcounts;
	struct verdict *verdicts; /* sorted by ino */
	size_t nverdicts;
	uint64_t census_budget;	  /* map entries the judging may still read this round */
	uint64_t *leaked;	  /* blocks in use that nothing names, sorted (find_leaks) */
	size_t nleaked, capleaked;
	bool leaks_unknown;	  /* more than LEAKS_LISTED, or too costly to weigh */
	struct leakroot *roots;	  /* the leaked roots, sorted by size */
	size_t nroots;
	struct ghost *ghosts;	  /* sorted by blk */
	size_t nghosts, capghosts;

	/* data blocks found by the current walk (directories, symlinks) */
	uint64_t *wfb, *wpb;
	uint64_t **wslot; /* where each pointer is */
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

/* What the passes learn about inode slot @ino (< ninodes). Slots from
 * f->nis on are free, all zeros, and not kept: a pool's inode table can
 * have a billion slots, of which a few are used. Only a slot in use is
 * ever written through what this returns. */
static struct ino_state *ist(struct fsck *f, uint64_t ino)
{
	if (ino < f->nis)
		return &f->is[ino];
	memset(&f->none, 0, sizeof(f->none));
	return &f->none;
}

/* ---- reporting ----------------------------------------------------------- */

/* Repaired lines go out at once; the others, in a repair round, wait for
 * the round's end (only the last round's are printed). */
static void line(struct fsck *f, bool fixed, const char *msg, const char *suffix)
{
	FILE *to = !fixed && f->held ? f->held : f->out;

	if (to)
		fprintf(to, "fsck.pinfs: %s%s%s\n", msg, suffix ? ": " : "", suffix ? suffix : "");
}

/* Counts one problem (and its repair when @fixed: @action says what was
 * done, "fixed" if NULL) and prints it. */
static void vproblem(struct fsck *f, bool fixed, const char *action, const char *fmt, va_list ap)
{
	char msg[512];

	if (f->mode != WM_CHECK)
		return;
	f->nerr++;
	if (fixed)
		f->nfix++;
	if (f->subj_what && f->shown >= SHOW_PER_SUBJECT && !fixed) {
		f->hidden++;
		return;
	}
	f->shown++;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	line(f, fixed, msg, fixed ? (action ? action : "fixed") : NULL);
}

static void __attribute__((format(printf, 3, 4)))
problem(struct fsck *f, bool fixed, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vproblem(f, fixed, NULL, fmt, ap);
	va_end(ap);
}

static void __attribute__((format(printf, 4, 5)))
problem_as(struct fsck *f, bool fixed, const char *action, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vproblem(f, fixed, action, fmt, ap);
	va_end(ap);
}

/* A remark that is not a problem. */
static void __attribute__((format(printf, 2, 3))) note(struct fsck *f, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	line(f, false, msg, NULL);
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
	if (f->hidden && f->mode == WM_CHECK)
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

/* Stores @len bytes at @dst in the pool, durably. */
static void put(struct fsck *f, void *dst, const void *src, size_t len)
{
	memmove(dst, src, len);
	persist(f, dst, len);
}

#define SET(f, field, val)                                \
	do {                                              \
		__typeof__(field) v_ = (val);             \
		put((f), &(field), &v_, sizeof(v_));      \
	} while (0)

static void zero(struct fsck *f, void *dst, size_t len)
{
	memset(dst, 0, len);
	persist(f, dst, len);
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

/* Stores bytes [from, to) of the DRAM copy of the bitmap into the pool. */
static void bm_store(struct fsck *f, uint64_t from, uint64_t to)
{
	put(f, f->pbitmap + from, f->bitmap + from, to - from);
}

static void bm_set(struct fsck *f, uint64_t b, bool on)
{
	uint8_t *p = &f->bitmap[b >> 3];

	if (on)
		*p |= (uint8_t)(1u << (b & 7));
	else
		*p &= (uint8_t)~(1u << (b & 7));
	bm_store(f, b >> 3, (b >> 3) + 1);
}

/* The 64 bits of @bm from @b (a multiple of 64) on. */
static uint64_t bm_word(const uint8_t *bm, uint64_t b)
{
	uint64_t w;

	memcpy(&w, bm + (b >> 3), sizeof(w));
	return w;
}

/* How many bits of @bm in [from, to) are clear. */
static uint64_t bm_zeros(const uint8_t *bm, uint64_t from, uint64_t to)
{
	uint64_t b = from, n = 0;

	for (; b < to && (b & 63); b++)
		n += !bm_get(bm, b);
	for (; b + 64 <= to; b += 64)
		n += 64 - (uint64_t)__builtin_popcountll(bm_word(bm, b));
	for (; b < to; b++)
		n += !bm_get(bm, b);
	return n;
}

/* Repair: do two pointers name @b (found by prescan())? A contested block
 * is not written by any repair until a decision settles whose it is: it
 * may be one file's data that another's corrupt pointer reads as a map
 * node or a directory block. */
static bool contested(const struct fsck *f, uint64_t b)
{
	return f->contested && ((f->contested[b >> 6] >> (b & 63)) & 1);
}

/* A block a pointer may name: the data region, but the backup superblock */
static bool in_data(const struct fsck *f, uint64_t b)
{
	return b >= f->data_start && b < f->nblocks && b != f->backup;
}

/* A block that is free in the bitmap and that no inode claims, now marked
 * in use (and claimed); 0 if the pool has none. */
static uint64_t alloc_block(struct fsck *f)
{
	uint64_t n = f->nblocks - f->data_start, i, b;

	for (i = 0; i < n; i++) {
		b = f->data_start + (f->alloc_next - f->data_start + i) % n;
		if (b == f->backup || bm_get(f->bitmap, b) || ref_get(f, b))
			continue;
		bm_set(f, b, true);
		f->ref[b >> 6] |= 1ull << (b & 63);
		if (f->csum && f->csum[b] != PM_CSUM_NONE)
			SET(f, f->csum[b], PM_CSUM_NONE);
		f->alloc_next = b + 1;
		return b;
	}
	return 0;
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

/* Do @a and @b agree on everything mkfs wrote and nothing changes after? */
static bool same_static(const struct pm_super *a, const struct pm_super *b)
{
	return a->magic == b->magic && a->version == b->version &&
	       a->block_size == b->block_size && a->feat_compat == b->feat_compat &&
	       a->feat_incompat == b->feat_incompat && a->feat_ro_compat == b->feat_ro_compat &&
	       !memcmp(a->uuid, b->uuid, sizeof(a->uuid)) && a->pool_size == b->pool_size &&
	       a->nblocks == b->nblocks && a->journal_start == b->journal_start &&
	       a->journal_blocks == b->journal_blocks && a->itable_start == b->itable_start &&
	       a->itable_blocks == b->itable_blocks && a->ninodes == b->ninodes &&
	       a->bitmap_start == b->bitmap_start && a->bitmap_blocks == b->bitmap_blocks &&
	       a->data_start == b->data_start && a->csum_start == b->csum_start &&
	       a->csum_blocks == b->csum_blocks && a->mkfs_time == b->mkfs_time;
}

/* Checks the superblock and the journal header, and reads the bitmap.
 * 0; 1 if the superblock is unusable (nothing else can be located); or
 * -errno (no memory for the bitmap, or it cannot be read). */
static int check_super(struct fsck *f)
{
	struct pm_super *sb = f->sb;
	struct pm_jhdr *h;
	char msg[256];
	int rc;

	/* the free counters and the orphan head are not needed to find
	 * anything: out of range, they are recomputed (pass 4) and rebuilt
	 * (pass 3) like any other wrong value */
	if (pm_super_check_layout(sb, f->pool->size, msg, sizeof(msg))) {
		problem(f, false, "superblock: %s", msg);
		return 1;
	}
	f->nblocks = sb->nblocks;
	f->data_start = sb->data_start;
	f->ninodes = sb->ninodes;
	f->pbitmap = pm_block_ptr(f->pool, sb->bitmap_start);
	/* a DRAM copy: scanning a sparse pool's bitmap through the mapping
	 * would allocate its holes (32 MiB per TiB of pool on tmpfs) */
	f->bitmap = calloc((size_t)sb->bitmap_blocks, PM_BLOCK_SIZE);
	if (!f->bitmap)
		return -ENOMEM;
	rc = pm_pool_read(f->pool, sb->bitmap_start << PM_BLOCK_SHIFT, f->bitmap,
			  sb->bitmap_blocks << PM_BLOCK_SHIFT);
	if (rc)
		return rc;
	f->backup = pm_backup_sb_block(sb);
	f->csum = (sb->feat_incompat & PM_FEAT_INCOMPAT_CSUM) ? pm_block_ptr(f->pool, sb->csum_start)
							      : NULL;
	if (sb != f->pool->base) {
		/* the caller found the primary corrupt and gave us the backup */
		pm_super_check(f->pool->base, f->pool->size, msg, sizeof(msg));
		problem_as(f, f->repair, "rewritten from the backup superblock",
			   "superblock: %s; the backup superblock (block %llu) is intact", msg,
			   (unsigned long long)pm_backup_sb_block(sb));
		if (f->repair)
			f->sb_dirty = true;
	}
	if (sb->errors) {
		uint32_t old = sb->errors;
		if (f->repair) {
			/* the checks below decide what is wrong; if they leave
			 * something, pm_fsck_ex sets the flag again */
			f->errors_flag |= old;
			sb->errors = 0;
			f->sb_dirty = true;
		}
		problem_as(f, f->repair, "cleared", "superblock: errors flag 0x%x is set: pinfs found the pool corrupt",
			   old);
	}
	if (sb->reserved1 || !all_zero(sb->reserved, sizeof(sb->reserved))) {
		if (f->repair) {
			sb->reserved1 = 0;
			memset(sb->reserved, 0, sizeof(sb->reserved));
			f->sb_dirty = true;
		}
		problem_as(f, f->repair, "zeroed", "superblock: reserved bytes are not zero");
	}
	if (sb->clean > 1) {
		uint32_t old = sb->clean;
		if (f->repair) {
			sb->clean = 0;
			f->sb_dirty = true;
		}
		problem_as(f, f->repair, "set to 0 (not clean)",
			   "superblock: clean flag is %u, not 0 or 1", old);
	}
	/* next_generation is checked against the inodes in pass 1 */

	h = pm_block_ptr(f->pool, sb->journal_start);
	if ((h->magic != 0 && h->magic != PM_JOURNAL_MAGIC) || h->state != PM_JSTATE_EMPTY ||
	    h->pad) {
		if (h->magic != 0 && h->magic != PM_JOURNAL_MAGIC)
			problem_as(f, f->repair, "the journal header is reset",
				   "journal: bad header magic 0x%016llx", (unsigned long long)h->magic);
		if (h->state != PM_JSTATE_EMPTY)
			problem_as(f, f->repair, "the journal header is reset (the transaction is discarded)",
				   "journal: header state is %u, not EMPTY after recovery", h->state);
		if (h->pad)
			problem_as(f, f->repair, "the journal header is reset",
				   "journal: header padding is not zero");
		if (f->repair)
			zero(f, h, sizeof(*h));
	}

	if (f->backup) {
		struct pm_super *bk = pm_block_ptr(f->pool, f->backup);
		bool unsound = pm_super_check(bk, f->pool->size, NULL, 0) != 0;

		if (bk->sb_csum != pm_super_csum(bk) || !same_static(bk, sb) || unsound ||
		    !bm_get(f->bitmap, f->backup)) {
			if (!bm_get(f->bitmap, f->backup))
				problem(f, f->repair,
					"block %llu, the backup superblock, is marked free in the allocation bitmap",
					(unsigned long long)f->backup);
			else
				problem_as(f, f->repair, "rewritten from the superblock",
					   "backup superblock (block %llu) is %s",
					   (unsigned long long)f->backup,
					   bk->sb_csum != pm_super_csum(bk) ? "corrupt (checksum mismatch)"
					   : !same_static(bk, sb)	    ? "not a copy of the superblock"
									    : "unusable (its counters are out of range)");
			if (f->repair) {
				if (!bm_get(f->bitmap, f->backup))
					bm_set(f, f->backup, true);
				f->sb_dirty = true; /* written with the primary, at the end */
			}
		}
	}
	return 0;
}

/* Writes the superblock if this round changed it, with its checksum; then
 * the backup, a copy of it, if the pool has one and it differs in what
 * matters. */
static void write_super(struct fsck *f)
{
	struct pm_super *sb = f->sb, *bk;

	if (!f->sb_dirty)
		return;
	sb->sb_csum = pm_super_csum(sb);
	if ((void *)sb != f->pool->base) {
		put(f, f->pool->base, sb, sizeof(*sb));
		f->pool->sb = f->pool->base;
		f->sb = f->pool->sb;
		sb = f->sb;
	} else {
		persist(f, sb, sizeof(*sb));
	}
	if (f->backup) {
		bk = pm_block_ptr(f->pool, f->backup);
		if (bk->sb_csum != pm_super_csum(bk) || !same_static(bk, sb) ||
		    pm_super_check(bk, f->pool->size, NULL, 0))
			put(f, bk, sb, sizeof(*sb));
	}
	f->sb_dirty = false;
}

/* ---- pass 1: inodes and block maps --------------------------------------- */

/* One inode's walk over its map and xattr block. */
struct walk {
	struct fsck *f;
	uint64_t ino;
	uint64_t counted; /* valid pointers: map nodes, data blocks, xattr block */
	uint64_t ndata;	  /* data block pointers */
	uint64_t end;	  /* 1 + the last file block mapped, 0 if none */
	bool partial;	  /* part of the map was not walked: counted is a guess */
	bool shared;	  /* it names a contested block (repair) */
	bool in_shared;	  /* the node being walked, or one above it, is contested */
	bool verify;	  /* --checksums: verify the data blocks' checksums */
	size_t max;	  /* data blocks to keep in f->wfb/wpb (0: none) */
	size_t n;	  /* kept so far */
	bool overflow;	  /* more than max */
};

static void note_dup(struct fsck *f, uint64_t blk, uint64_t ino, enum bkind kind, unsigned level,
		     uint64_t fblk, uint64_t *slot, bool deferred)
{
	/* a pointer that should say something else: whatever it said looks leaked */
	f->unsure_leaks = true;
	if (f->ndups >= DUPS_LISTED) {
		f->dups_unlisted++;
		return;
	}
	f->dups = grow(f->dups, &f->capdups, f->ndups + 1, sizeof(*f->dups), &f->nomem);
	if (f->ndups < f->capdups)
		f->dups[f->ndups++] = (struct dup){ blk, ino, fblk, kind, level, slot, deferred };
}

static void note_free(struct fsck *f, uint64_t blk, uint64_t ino, enum bkind kind, unsigned level,
		      uint64_t fblk, uint64_t *slot)
{
	f->frees = grow(f->frees, &f->capfrees, f->nfrees + 1, sizeof(*f->frees), &f->nomem);
	if (f->nfrees < f->capfrees)
		f->frees[f->nfrees++] = (struct freeref){ blk, ino, fblk, kind, level, slot };
}

/* The element of @base (@n of @size bytes, sorted by the uint64_t each
 * starts with: a block or an inode number) that starts with @key, or NULL. */
static void *find_sorted(const void *base, size_t n, size_t size, uint64_t key)
{
	size_t lo = 0, hi = n;
	uint64_t k;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		memcpy(&k, (const char *)base + mid * size, sizeof(k));
		if (k < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == n)
		return NULL;
	memcpy(&k, (const char *)base + lo * size, sizeof(k));
	return k == key ? (char *)base + lo * size : NULL;
}

static struct twice *twice_of(struct fsck *f, uint64_t blk)
{
	return find_sorted(f->twice, f->ntwice, sizeof(*f->twice), blk);
}

static struct owner *owner_of(struct fsck *f, uint64_t blk)
{
	return find_sorted(f->owners, f->nowners, sizeof(*f->owners), blk);
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
 * records as a duplicate and the prescan as contested.
 */
static bool claim(struct walk *w, uint64_t blk, enum bkind kind, unsigned level, uint64_t fblk,
		  uint64_t *slot)
{
	struct fsck *f = w->f;
	uint64_t *word = &f->ref[blk >> 6], bit = 1ull << (blk & 63);
	char use[96];

	if (f->mode == WM_WHOSE) {
		struct twice *t = twice_of(f, blk);
		if (t && !t->ino)
			t->ino = w->ino;
		else if (t && t->ino != w->ino)
			t->contested = true;
		if (*word & bit)
			return false;
		*word |= bit;
		return true;
	}
	if (f->mode == WM_CHECK && contested(f, blk))
		w->shared = true;
	if (*word & bit) {
		if (f->mode == WM_CHECK)
			note_dup(f, blk, w->ino, kind, level, fblk, slot, w->in_shared);
		else if (f->mode == WM_PRESCAN)
			f->contested[blk >> 6] |= bit;
		return false;
	}
	*word |= bit;
	if (f->mode == WM_OWNERS) {
		struct owner *o = owner_of(f, blk);
		if (o && !o->set)
			*o = (struct owner){ blk, w->ino, fblk, kind, level, slot, w->in_shared, true };
		return true;
	}
	if (f->mode != WM_CHECK || bm_get(f->bitmap, blk))
		return true;
	/* named, but marked free: the bitmap is wrong, or the pointer is and
	 * the block may hold a deleted file's bytes. A repair decides when
	 * every claim is known (settle_frees); not while the pointer is in a
	 * node whose owner is not settled yet */
	if (f->repair && f->nfrees < DUPS_LISTED && !w->in_shared) {
		note_free(f, blk, w->ino, kind, level, fblk, slot);
		return true;
	}
	if (f->repair)
		f->withheld = true; /* the next round */
	problem(f, false, "block %llu, %s, is marked free in the allocation bitmap",
		(unsigned long long)blk, use_of(use, sizeof(use), kind, w->ino, fblk));
	return true;
}

static void keep(struct walk *w, uint64_t fblk, uint64_t pblk, bool first, uint64_t *slot)
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
		uint64_t *a = realloc(f->wfb, ncap * sizeof(*a)), *b, **d;
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
		d = realloc(f->wslot, ncap * sizeof(*d));
		if (!d) {
			f->nomem = true;
			return;
		}
		f->wslot = d;
		f->capw = ncap;
	}
	f->wfb[w->n] = fblk;
	f->wfirst[w->n] = first;
	f->wslot[w->n] = slot;
	f->wpb[w->n++] = pblk;
}

/* --checksums: a clean data block's CRC must match its table entry */
static void verify_csum(struct walk *w, uint64_t blk, uint64_t fblk)
{
	struct fsck *f = w->f;
	uint32_t want = f->csum[blk], got;

	if (want == PM_CSUM_NONE)
		return;
	got = pm_csum_encode(pm_crc32c(0, pm_block_ptr(f->pool, blk), PM_BLOCK_SIZE));
	if (got != want)
		problem(f, false,
			"inode %llu: file block %llu (block %llu): checksum mismatch (0x%08x, the table says 0x%08x): the data is damaged; reads of it fail with EIO",
			(unsigned long long)w->ino, (unsigned long long)fblk, (unsigned long long)blk,
			got, want);
}

/* Walks the map node @blk at @level (1: points at data) covering file blocks
 * from @base. Depth is bounded by PM_MAP_MAX_HEIGHT, and only first claims
 * are descended into, so the walk ends whatever the pointers say. @shared:
 * @blk or a node above it is contested, so the node is not repaired this
 * round (it may be another file's data, read as a map node). */
static void walk_node(struct walk *w, uint64_t blk, unsigned level, uint64_t base, bool shared)
{
	struct fsck *f = w->f;
	uint64_t *node = pm_block_ptr(f->pool, blk);
	unsigned shift = PM_MAP_SHIFT * (level - 1), i;
	bool fix = f->repair && f->mode == WM_CHECK && !shared;

	for (i = 0; i < PM_MAP_FANOUT; i++) {
		uint64_t e = node[i], fb = base + ((uint64_t)i << shift);

		if (!e)
			continue;
		w->in_shared = shared; /* a deeper walk changed it */
		if (!in_data(f, e)) {
			if (f->repair && f->mode == WM_CHECK && shared)
				f->withheld = true;
			problem_as(f, fix, "dropped (a hole)",
				   "inode %llu: %s for file block %llu is %llu, outside the data region [%llu, %llu)%s",
				   (unsigned long long)w->ino, level > 1 ? "map pointer" : "block pointer",
				   (unsigned long long)fb, (unsigned long long)e,
				   (unsigned long long)f->data_start, (unsigned long long)f->nblocks,
				   e == f->backup && e ? " (it is the backup superblock)" : "");
			if (fix)
				SET(f, node[i], 0);
			w->partial = true;
			f->unsure_leaks = true;
			continue;
		}
		w->counted++;
		if (level > 1) {
			if (claim(w, e, BK_MAP, level - 1, fb, &node[i]))
				walk_node(w, e, level - 1, fb, shared || contested(f, e));
			else
				w->partial = true; /* its subtree belongs to the first claimant */
		} else {
			bool first = claim(w, e, BK_DATA, 0, fb, &node[i]);
			w->ndata++;
			w->end = fb + 1;
			if (first && w->verify && f->mode == WM_CHECK)
				verify_csum(w, e, fb);
			keep(w, fb, e, first, &node[i]);
		}
	}
}

/* Checks inode @ino's xattr block @blk; false if it does not parse (the
 * caller drops it with @fix). Padding is zeroed in place with @fix. */
static bool check_xattr(struct fsck *f, uint64_t ino, uint64_t blk, bool fix)
{
	static const char drop[] = "the inode's extended attributes are dropped";
	uint8_t *b = pm_block_ptr(f->pool, blk);
	struct pm_xattr_hdr *h = (void *)b;
	uint8_t *p = b + sizeof(*h);
	unsigned long long in = (unsigned long long)ino;
	uint32_t pos = 0, i, j, prev;
	bool ok = true;

	if (h->magic != PM_XATTR_MAGIC) {
		problem_as(f, fix, drop, "inode %llu: xattr block %llu has bad magic 0x%08x", in,
			   (unsigned long long)blk, h->magic);
		return false;
	}
	if (h->used > PM_XATTR_SPACE) {
		problem_as(f, fix, drop, "inode %llu: xattr block claims %u bytes used, more than %zu",
			   in, h->used, PM_XATTR_SPACE);
		return false;
	}
	if (h->count == 0) {
		problem_as(f, fix, drop,
			   "inode %llu: xattr block holds no attributes (an empty set has no block)", in);
		return false;
	}
	/* each entry takes at least 4 bytes of at most PM_XATTR_SPACE */
	for (i = 0; i < h->count; i++) {
		struct pm_xattr_ent *e = (void *)(p + pos);
		unsigned sz;

		if (pos + sizeof(*e) > h->used) {
			problem_as(f, fix, drop,
				   "inode %llu: xattr entry %u of %u starts past the %u used bytes", in, i,
				   h->count, h->used);
			return false;
		}
		sz = pm_xattr_ent_size(e->name_len, e->value_len);
		if (pos + sz > h->used) {
			problem_as(f, fix, drop,
				   "inode %llu: xattr entry %u (%u bytes) runs past the %u used bytes", in,
				   i, sz, h->used);
			return false;
		}
		if (e->name_len == 0) {
			problem_as(f, fix, drop, "inode %llu: xattr entry %u has an empty name", in, i);
			ok = false;
		} else if (memchr(e + 1, 0, e->name_len)) {
			/* listxattr would split it into names that do not exist */
			problem_as(f, fix, drop, "inode %llu: xattr entry %u: name contains NUL", in, i);
			ok = false;
		}
		/* a duplicate name: compare with every earlier entry */
		for (j = 0, prev = 0; e->name_len && j < i; j++) {
			const struct pm_xattr_ent *o = (const void *)(p + prev);
			if (o->name_len == e->name_len && !memcmp(o + 1, e + 1, e->name_len)) {
				char nm[80];
				problem_as(f, fix, drop, "inode %llu: xattr \"%s\" is stored twice", in,
					   printable(nm, sizeof(nm), (const char *)(e + 1), e->name_len));
				ok = false;
				break;
			}
			prev += pm_xattr_ent_size(o->name_len, o->value_len);
		}
		pos += sz;
	}
	if (pos != h->used) {
		problem_as(f, fix, drop, "inode %llu: xattr entries end at byte %u, the header says %u",
			   in, pos, h->used);
		ok = false;
	}
	if (!ok)
		return false;
	/* only padding is wrong: zero it, keep the attributes */
	if (h->pad) {
		problem_as(f, fix, "zeroed", "inode %llu: xattr header padding is not zero", in);
		if (fix)
			SET(f, h->pad, 0);
	}
	for (i = 0, pos = 0; i < h->count; i++) {
		struct pm_xattr_ent *e = (void *)(p + pos);
		if (e->pad) {
			problem_as(f, fix, "zeroed", "inode %llu: xattr entry %u padding is not zero", in, i);
			if (fix)
				SET(f, e->pad, 0);
		}
		pos += pm_xattr_ent_size(e->name_len, e->value_len);
	}
	return true;
}

/* Drops inode @d's block map: the file keeps its size and reads as zeros. */
static void drop_map(struct fsck *f, struct pm_dinode *d)
{
	SET(f, d->map_root, 0);
	SET(f, d->map_height, 0);
}

/*
 * Claims every block of inode @w->ino: map root, nodes, data, xattr block.
 * Pass 1 and pass 1b both call it, in the same inode order, so claims are
 * made in the same order and the first claimant of a duplicate is the same.
 */
static void walk_blocks(struct walk *w, struct pm_dinode *d)
{
	struct fsck *f = w->f;
	unsigned long long in = (unsigned long long)w->ino;
	bool fix = f->repair && f->mode == WM_CHECK;
	static const char dropped[] = "the map is dropped (the file's blocks are lost: it reads as zeros)";

	if (d->map_height > PM_MAP_MAX_HEIGHT) {
		problem_as(f, fix, dropped, "inode %llu: map height %u exceeds %u", in, d->map_height,
			   PM_MAP_MAX_HEIGHT);
		w->partial = true;
		if (d->map_root)
			f->unsure_leaks = true;
		if (fix)
			drop_map(f, d);
	} else if (!d->map_root != !d->map_height) {
		problem_as(f, fix, dropped, "inode %llu: map root %llu with map height %u", in,
			   (unsigned long long)d->map_root, d->map_height);
		w->partial = true;
		if (d->map_root)
			f->unsure_leaks = true;
		if (fix)
			drop_map(f, d);
	} else if (d->map_root && !in_data(f, d->map_root)) {
		problem_as(f, fix, dropped,
			   "inode %llu: map root %llu is outside the data region [%llu, %llu)", in,
			   (unsigned long long)d->map_root, (unsigned long long)f->data_start,
			   (unsigned long long)f->nblocks);
		w->partial = true;
		f->unsure_leaks = true;
		if (fix)
			drop_map(f, d);
	} else if (d->map_root) {
		w->counted++;
		w->in_shared = false; /* the pointer is in the inode */
		if (claim(w, d->map_root, BK_MAP, d->map_height, 0, &d->map_root))
			walk_node(w, d->map_root, d->map_height, 0, contested(f, d->map_root));
		else
			w->partial = true;
	}

	if (!d->xattr_block)
		return;
	if (!in_data(f, d->xattr_block)) {
		problem_as(f, fix, "dropped (the inode loses its extended attributes)",
			   "inode %llu: xattr block %llu is outside the data region [%llu, %llu)", in,
			   (unsigned long long)d->xattr_block, (unsigned long long)f->data_start,
			   (unsigned long long)f->nblocks);
		w->partial = true;
		f->unsure_leaks = true;
		if (fix)
			SET(f, d->xattr_block, 0);
		return;
	}
	w->counted++;
	w->in_shared = false;
	/* a contested block is left as it is: the settling judges the claim */
	fix = fix && !contested(f, d->xattr_block);
	if (claim(w, d->xattr_block, BK_XATTR, 0, 0, &d->xattr_block) && f->mode == WM_CHECK &&
	    !check_xattr(f, w->ino, d->xattr_block, fix)) {
		if (fix) {
			SET(f, d->xattr_block, 0);
			w->partial = true; /* the block count is right next round */
		} else if (f->repair) {
			f->withheld = true;
		}
	}
}

static void check_time(struct fsck *f, uint64_t ino, const char *which, struct pm_time *t)
{
	if (t->nsec >= NSEC_PER_SEC) {
		problem_as(f, f->repair, "set to 0", "inode %llu: %s nanoseconds %u are not below 1e9",
			   (unsigned long long)ino, which, t->nsec);
		if (f->repair)
			SET(f, t->nsec, 0);
	}
	if (t->pad) {
		problem_as(f, f->repair, "zeroed", "inode %llu: %s padding is not zero",
			   (unsigned long long)ino, which);
		if (f->repair)
			SET(f, t->pad, 0);
	}
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

/* Clears inode @ino's slot: entries naming it are dropped and its blocks
 * freed by later rounds. Only for inodes that cannot be mended. */
static void clear_inode(struct fsck *f, uint64_t ino)
{
	zero(f, pm_dinode_ptr(f->pool, ino), sizeof(struct pm_dinode));
	ist(f, ino)->flags = 0;
}

/* A directory's blocks: holes and blocks past its size are errors; the
 * blocks below its size are kept for pass 2. With repair, the size becomes
 * the blocks it has from block 0 on, and blocks past a hole are dropped (the
 * entries in them are lost; their inodes are reconnected later). */
static void check_dir_shape(struct fsck *f, uint64_t ino, struct pm_dinode *d, struct walk *w)
{
	unsigned long long in = (unsigned long long)ino;
	uint64_t want = d->size / PM_BLOCK_SIZE, below = 0, i, contig;
	struct ino_state *st = ist(f, ino);
	struct dirblocks *db;
	bool bad = false;

	if (d->size % PM_BLOCK_SIZE) {
		problem(f, false, "directory %llu: size %llu is not a multiple of %u", in,
			(unsigned long long)d->size, PM_BLOCK_SIZE);
		bad = true;
	}
	if (w->overflow) {
		problem(f, false, "directory %llu: maps more blocks than the pool holds", in);
		st->flags |= IS_BADDIR;
	}
	/* file blocks come in increasing order */
	for (contig = 0; contig < w->n && f->wfb[contig] == contig; contig++)
		;
	while (below < w->n && f->wfb[below] < want)
		below++;
	for (i = 0; i < below && f->wfb[i] == i; i++)
		;
	if (i < want && !w->overflow) {
		problem(f, false, "directory %llu: hole at file block %llu (its size says %llu blocks)",
			in, (unsigned long long)i, (unsigned long long)want);
		bad = true;
	}
	if (below < w->n) {
		problem(f, false, "directory %llu: file block %llu lies past its size (%llu blocks)", in,
			(unsigned long long)f->wfb[below], (unsigned long long)want);
		bad = true;
	}
	/* a directory that names a contested block is mended once it is
	 * settled: its slots may be in another file's map node */
	if (bad && f->repair && w->shared)
		f->withheld = true;
	if (bad && f->repair && !w->overflow && !w->shared) {
		/* the problems above are counted unrepaired: this is their fix */
		for (i = contig; i < w->n; i++)
			SET(f, *f->wslot[i], 0);
		SET(f, d->size, contig * PM_BLOCK_SIZE);
		problem_as(f, true, "size set, blocks past the first hole dropped",
			   "directory %llu: its size becomes %llu blocks, the blocks it has from block 0 on",
			   in, (unsigned long long)contig);
		want = contig;
		below = contig;
		f->unsure_leaks = true;
		w->partial = true; /* the block count is right next round */
	} else if (bad) {
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

/* false: the symlink cannot be mended (the caller clears it) */
static bool check_symlink(struct fsck *f, uint64_t ino, struct pm_dinode *d, const struct walk *w)
{
	unsigned long long in = (unsigned long long)ino;
	bool size_ok = d->size >= 1 && d->size <= PM_SYMLINK_MAX;
	const char *target;
	size_t len;

	if (w->ndata != 1 || w->n != 1 || f->wfb[0] != 0) {
		problem_as(f, f->repair, "the symlink is cleared",
			   "inode %llu: a symlink has exactly one data block, at file block 0 (it has %llu)",
			   in, (unsigned long long)w->ndata);
		return false;
	}
	target = pm_block_ptr(f->pool, f->wpb[0]);
	len = strnlen(target, PM_SYMLINK_MAX);
	if (size_ok && !memchr(target, 0, d->size))
		return true;
	if (!len) {
		problem_as(f, f->repair, "the symlink is cleared",
			   "inode %llu: symlink target is empty (size %llu)", in,
			   (unsigned long long)d->size);
		return false;
	}
	if (!size_ok)
		problem_as(f, f->repair, "size set to the target's length",
			   "inode %llu: symlink size %llu is not 1..%u", in, (unsigned long long)d->size,
			   PM_SYMLINK_MAX);
	else
		problem_as(f, f->repair, "cut at the NUL",
			   "inode %llu: symlink target contains a NUL byte", in);
	if (f->repair)
		SET(f, d->size, len);
	return true;
}

static void check_inode(struct fsck *f, uint64_t ino)
{
	struct pm_dinode *d = pm_dinode_ptr(f->pool, ino);
	struct ino_state *st = ist(f, ino);
	unsigned long long in = (unsigned long long)ino;
	uint32_t type = d->mode & S_IFMT;
	struct walk w = { .f = f, .ino = ino };
	bool fix = f->repair;

	st->flags |= IS_USED;
	if (type == S_IFDIR)
		st->flags |= IS_DIR;
	subject_begin(f, "inode", ino);

	if (!type_name(d->mode)) {
		problem_as(f, fix, "the inode is cleared", "inode %llu: unknown file type in mode 0%o",
			   in, d->mode);
		if (fix) {
			f->unsure_leaks = true; /* its blocks: freed next round */
			clear_inode(f, ino);
			goto out;
		}
	}
	if (d->mode & ~(uint32_t)(S_IFMT | 07777)) {
		problem_as(f, fix, "cleared", "inode %llu: unknown bits in mode 0%o", in, d->mode);
		if (fix)
			SET(f, d->mode, d->mode & (uint32_t)(S_IFMT | 07777));
	}
	if (!all_zero(d->reserved, sizeof(d->reserved))) {
		problem_as(f, fix, "zeroed", "inode %llu: reserved bytes are not zero", in);
		if (fix)
			zero(f, d->reserved, sizeof(d->reserved));
	}
	check_time(f, ino, "atime", &d->atime);
	check_time(f, ino, "mtime", &d->mtime);
	check_time(f, ino, "ctime", &d->ctime);
	check_time(f, ino, "btime", &d->btime);
	if (d->flags & ~PM_IFL_ORPHAN) {
		problem_as(f, fix, "cleared", "inode %llu: unknown flags 0x%x", in, d->flags);
		if (fix)
			SET(f, d->flags, d->flags & PM_IFL_ORPHAN);
	}
	if (!(d->flags & PM_IFL_ORPHAN) && (d->orphan_next || d->orphan_prev)) {
		problem_as(f, fix, "zeroed", "inode %llu: orphan links %llu/%llu set, but it is not an orphan",
			   in, (unsigned long long)d->orphan_next, (unsigned long long)d->orphan_prev);
		if (fix) {
			SET(f, d->orphan_next, 0);
			SET(f, d->orphan_prev, 0);
		}
	}
	if (type != S_IFDIR && (d->parent || d->nentries)) {
		problem_as(f, fix, "zeroed", "inode %llu: a %s with a parent (%llu) or entry count (%llu)",
			   in, type_name(d->mode) ? type_name(d->mode) : "non-directory",
			   (unsigned long long)d->parent, (unsigned long long)d->nentries);
		if (fix) {
			SET(f, d->parent, 0);
			SET(f, d->nentries, 0);
		}
	}
	if (type != S_IFCHR && type != S_IFBLK && d->rdev) {
		problem_as(f, fix, "zeroed", "inode %llu: device number set on a non-device", in);
		if (fix)
			SET(f, d->rdev, 0);
	}
	/* else the next inode made could repeat it: stale NFS handles would work */
	if (d->generation >= f->sb->next_generation)
		problem_as(f, fix, "the superblock's next generation is raised",
			   "inode %llu: generation %llu is not below the superblock's next generation %llu",
			   in, (unsigned long long)d->generation,
			   (unsigned long long)f->sb->next_generation);
	if (d->generation > f->max_gen)
		f->max_gen = d->generation;

	if (type == S_IFDIR)
		w.max = (size_t)(f->nblocks - f->data_start);
	else if (type == S_IFLNK)
		w.max = 2;
	w.verify = f->checksums && f->csum && type == S_IFREG;
	walk_blocks(&w, d);
	if (f->nomem)
		goto out;

	switch (type) {
	case S_IFDIR:
		check_dir_shape(f, ino, d, &w);
		break;
	case S_IFLNK:
		if (!check_symlink(f, ino, d, &w) && fix) {
			f->unsure_leaks = true;
			clear_inode(f, ino);
			goto out;
		}
		break;
	case S_IFCHR: case S_IFBLK: case S_IFIFO: case S_IFSOCK:
		if (d->size || d->map_root) {
			problem_as(f, fix, "size zeroed, map dropped",
				   "inode %llu: a %s with size %llu and map root %llu", in,
				   type_name(d->mode), (unsigned long long)d->size,
				   (unsigned long long)d->map_root);
			if (fix) {
				SET(f, d->size, 0);
				if (d->map_root || d->map_height)
					drop_map(f, d);
				w.partial = true;
			}
		}
		break;
	case S_IFREG:
		if (d->size > FSCK_MAX_FILE_SIZE) {
			problem_as(f, fix, "set to the end of its last mapped block",
				   "inode %llu: size %llu exceeds the largest file, %llu", in,
				   (unsigned long long)d->size, FSCK_MAX_FILE_SIZE);
			if (fix)
				SET(f, d->size, w.end * PM_BLOCK_SIZE);
		}
		break;
	default:
		break;
	}

	if (d->blocks != w.counted) {
		/* settle_counts reports (and mends) it once the claims are
		 * settled: census() judges claims by the count as found */
		f->counts = grow(f->counts, &f->capcounts, f->ncounts + 1, sizeof(*f->counts),
				 &f->nomem);
		if (f->ncounts < f->capcounts)
			f->counts[f->ncounts++] = (struct countfix){ ino, w.counted, w.partial };
	}
out:
	subject_end(f);
}

static int cmp_dup(const void *a, const void *b)
{
	const struct dup *x = a, *y = b;

	return x->blk < y->blk ? -1 : x->blk > y->blk;
}

/* 1 + the highest inode slot in use (the root's at least): fsck keeps
 * what it learns of slots below it only. */
static uint64_t used_end(struct fsck *f)
{
	uint64_t lo, next, ino, end = PM_ROOT_INO + 1;

	for (next = PM_ROOT_INO; pm_islots_next(f->pool, next, f->ninodes, &lo, &next);)
		for (ino = lo; ino < next; ino++)
			if (pm_dinode_ptr(f->pool, ino)->mode && ino >= end)
				end = ino + 1;
	return end;
}

/* Walks the map of every inode in use in the current f->mode: the slots
 * below nis, the table's holes not read. */
static void walk_inodes(struct fsck *f)
{
	uint64_t lo, next, ino;

	for (next = PM_ROOT_INO; pm_islots_next(f->pool, next, f->nis, &lo, &next);) {
		for (ino = lo; ino < next; ino++) {
			struct pm_dinode *d = pm_dinode_ptr(f->pool, ino);
			struct walk w = { .f = f, .ino = ino };
			if (d->mode)
				walk_blocks(&w, d);
		}
	}
}

/* Pass 1b: finds the first holder of every duplicated block and of every
 * block a ghost claims (and the pointer through which it holds it). */
static void find_owners(struct fsck *f)
{
	size_t i, j = 0, words = (size_t)PM_DIV_UP(f->nblocks, 64);

	if (f->ndups)
		qsort(f->dups, f->ndups, sizeof(*f->dups), cmp_dup);
	/* none listed: dups_unlisted */
	f->owners = calloc(f->ndups + f->nghosts ? f->ndups + f->nghosts : 1, sizeof(*f->owners));
	if (!f->owners) {
		f->nomem = true;
		return;
	}
	/* the blocks of both sorted lists, once each, in order */
	for (i = 0; i < f->ndups || j < f->nghosts;) {
		uint64_t b;
		if (j == f->nghosts || (i < f->ndups && f->dups[i].blk <= f->ghosts[j].blk))
			b = f->dups[i++].blk;
		else
			b = f->ghosts[j++].blk;
		if (!f->nowners || f->owners[f->nowners - 1].blk != b)
			f->owners[f->nowners++].blk = b;
	}

	memset(f->ref, 0, words * sizeof(*f->ref));
	if (f->backup)
		f->ref[f->backup >> 6] |= 1ull << (f->backup & 63);
	f->mode = WM_OWNERS;
	walk_inodes(f);
	f->mode = WM_CHECK;
}

/* ---- pass 1c: whose is a block two pointers name? ------------------------ */

/*
 * A block two inodes name belongs to the one whose structure vouches for
 * it, or to neither: never to the first in inode order, which made a
 * corrupt pointer of a low inode read a high inode's bytes. The format has
 * no owner in a map node (see fsck.pinfs(8), NOTES), so what vouches is
 * consistency: census() walks the inode's whole map, shared nodes
 * included, and the inode is consistent if every pointer is in the data
 * region, the blocks it names are the blocks it counts (a pointer put into
 * a hole adds to them), a directory maps exactly the blocks below its size
 * and a symlink its one block, and its xattr block is one. A pointer that
 * replaced another keeps the count; what it leaves behind is weighed
 * below (may_have_moved). The same rule settles a pointer to a block the
 * bitmap calls free.
 */

struct census {
	struct fsck *f;
	uint32_t type;	   /* S_IFMT of the inode */
	uint64_t count;	   /* map nodes, data blocks, xattr block so far */
	uint64_t limit;	   /* what the inode counts: more is inconsistent */
	uint64_t ndata;	   /* data blocks */
	uint64_t dblocks;  /* directories: blocks below the size */
	bool bad;
	char *why;
	size_t whylen;
};

static void __attribute__((format(printf, 2, 3))) census_bad(struct census *c, const char *fmt, ...)
{
	va_list ap;

	if (c->bad)
		return;
	c->bad = true;
	va_start(ap, fmt);
	vsnprintf(c->why, c->whylen, fmt, ap);
	va_end(ap);
}

/* The subtree of map node @blk at @level. Bounded: every pointer counts,
 * and more than c->limit ends the walk (an inode counts at most the data
 * region), as does the round's budget. */
static void census_node(struct census *c, uint64_t blk, unsigned level, uint64_t base)
{
	struct fsck *f = c->f;
	const uint64_t *node = pm_block_ptr(f->pool, blk);
	unsigned shift = PM_MAP_SHIFT * (level - 1), i;

	if (f->census_budget < PM_MAP_FANOUT) {
		census_bad(c, "its map is too damaged to judge");
		return;
	}
	f->census_budget -= PM_MAP_FANOUT;
	for (i = 0; i < PM_MAP_FANOUT && !c->bad; i++) {
		uint64_t e = node[i], fb = base + ((uint64_t)i << shift);

		if (!e)
			continue;
		if (!in_data(f, e)) {
			census_bad(c, "its map points outside the data region");
			return;
		}
		if (++c->count > c->limit) {
			census_bad(c, "its map holds more than the %llu blocks it counts",
				   (unsigned long long)c->limit);
			return;
		}
		if (level > 1) {
			census_node(c, e, level - 1, fb);
			continue;
		}
		c->ndata++;
		if (c->type == S_IFDIR && fb >= c->dblocks)
			census_bad(c, "a directory of %llu blocks that maps file block %llu",
				   (unsigned long long)c->dblocks, (unsigned long long)fb);
		else if (c->type == S_IFLNK && fb)
			census_bad(c, "a symlink that maps file block %llu", (unsigned long long)fb);
	}
}

/* Is inode @ino consistent (see above)? If not, @why says why. */
static bool census(struct fsck *f, uint64_t ino, char *why, size_t whylen)
{
	const struct pm_dinode *d = pm_dinode_ptr(f->pool, ino);
	struct census c = { .f = f, .type = d->mode & S_IFMT, .limit = d->blocks, .why = why,
			    .whylen = whylen };

	why[0] = 0;
	if (!d->mode) {
		census_bad(&c, "it was cleared");
		return false;
	}
	if (d->blocks > f->nblocks - f->data_start)
		census_bad(&c, "it counts %llu blocks, more than the pool has",
			   (unsigned long long)d->blocks);
	if (c.type == S_IFDIR) {
		if (d->size % PM_BLOCK_SIZE)
			census_bad(&c, "a directory whose size is not whole blocks");
		c.dblocks = d->size / PM_BLOCK_SIZE;
	}
	if (d->map_height > PM_MAP_MAX_HEIGHT || !d->map_root != !d->map_height ||
	    (d->map_root && !in_data(f, d->map_root)))
		census_bad(&c, "its map root or height cannot be");
	if (d->map_root && !c.bad) {
		c.count = 1;
		if (c.count > c.limit)
			census_bad(&c, "its map holds more than the %llu blocks it counts",
				   (unsigned long long)c.limit);
		else
			census_node(&c, d->map_root, d->map_height, 0);
	}
	if (d->xattr_block && !c.bad) {
		if (!in_data(f, d->xattr_block))
			census_bad(&c, "its xattr block is outside the data region");
		else if (((const struct pm_xattr_hdr *)pm_block_ptr(f->pool, d->xattr_block))->magic !=
			 PM_XATTR_MAGIC)
			census_bad(&c, "its xattr block holds no attributes");
		else
			c.count++;
	}
	if (!c.bad && c.count != d->blocks)
		census_bad(&c, "it counts %llu blocks, its map and xattr block hold %llu",
			   (unsigned long long)d->blocks, (unsigned long long)c.count);
	if (!c.bad && c.type == S_IFDIR && c.ndata != c.dblocks)
		census_bad(&c, "a directory of %llu blocks with %llu mapped",
			   (unsigned long long)c.dblocks, (unsigned long long)c.ndata);
	if (!c.bad && c.type == S_IFLNK && c.ndata != 1)
		census_bad(&c, "a symlink with %llu blocks", (unsigned long long)c.ndata);
	if (!c.bad && c.type != S_IFREG && c.type != S_IFDIR && c.type != S_IFLNK && d->map_root)
		census_bad(&c, "a %s with a block map",
			   type_name(d->mode) ? type_name(d->mode) : "special file");
	return !c.bad;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int cmp_verdict(const void *a, const void *b)
{
	return cmp_u64(&((const struct verdict *)a)->ino, &((const struct verdict *)b)->ino);
}

static const struct verdict *verdict_of(const struct fsck *f, uint64_t ino)
{
	struct verdict key = { .ino = ino };

	return f->nverdicts ? bsearch(&key, f->verdicts, f->nverdicts, sizeof(key), cmp_verdict)
			    : NULL;
}

/* Judges, before any claim is settled, every inode that names a contested
 * block or one marked free. */
static void judge(struct fsck *f)
{
	size_t n = f->ndups + f->nowners + f->nfrees, i, k = 0;
	uint64_t *inos;

	if (!n)
		return;
	inos = malloc(n * sizeof(*inos));
	f->verdicts = calloc(n, sizeof(*f->verdicts));
	if (!inos || !f->verdicts) {
		free(inos);
		f->nomem = true;
		return;
	}
	for (i = 0; i < f->ndups; i++)
		inos[k++] = f->dups[i].ino;
	for (i = 0; i < f->nowners; i++)
		if (f->owners[i].set)
			inos[k++] = f->owners[i].ino;
	for (i = 0; i < f->nfrees; i++)
		inos[k++] = f->frees[i].ino;
	qsort(inos, k, sizeof(*inos), cmp_u64);
	for (i = 0; i < k; i++) {
		struct verdict *v;
		if (i && inos[i] == inos[i - 1])
			continue;
		v = &f->verdicts[f->nverdicts++];
		v->ino = inos[i];
		v->ok = census(f, v->ino, v->why, sizeof(v->why));
	}
	free(inos);
}

/*
 * A moved pointer: a pointer overwritten with the number of another file's
 * block (or of a free one) keeps its inode's counts, so census() finds
 * nothing wrong with it; but the block it named before is left leaked (in
 * use, named by nothing), and is a leaked root (no leaked map node names
 * it), with as many blocks under it as the pointer now reaches. So a
 * consistent inode vouches for a block only if no leaked root is as large
 * as what its pointer reaches there (may_have_moved()). A pointer that
 * went into a hole changes its inode's count, and census() sees it.
 *
 * The other way round, a leaked map node that names a block some map
 * names too is a ghost claim on it: the pointer to the node may be the one
 * that moved, and the block its owner's, reached now only through another
 * file's moved pointer. Such a block stays with its one claimant only if
 * that one vouches for it (the ghost's own root aside).
 */

static bool is_leaked(const struct fsck *f, uint64_t b)
{
	return f->nleaked && bsearch(&b, f->leaked, f->nleaked, sizeof(b), cmp_u64);
}

static size_t leak_index(const struct fsck *f, uint64_t b)
{
	const uint64_t *hit = bsearch(&b, f->leaked, f->nleaked, sizeof(b), cmp_u64);

	return hit ? (size_t)(hit - f->leaked) : SIZE_MAX;
}

static bool spend(struct fsck *f, uint64_t n)
{
	if (f->census_budget < n)
		return false;
	f->census_budget -= n;
	return true;
}

/* Is block @b a hole of the pool file? It reads as zeros and is not read:
 * a read fault on a hole allocates it (tmpfs), and a block marked in use
 * that nothing names may never have been written (pm_pool_data). */
static bool blk_hole(const struct fsck *f, uint64_t b)
{
	uint64_t s, e;

	return !pm_pool_data(f->pool, b << PM_BLOCK_SHIFT, (b + 1) << PM_BLOCK_SHIFT, &s, &e);
}

/* Could block @b be a map node? Each entry 0 or in the data region, one
 * at least not 0, none itself; with @all_leaked, each names a leaked block. */
static bool node_like(struct fsck *f, uint64_t b, bool all_leaked)
{
	const uint64_t *n = pm_block_ptr(f->pool, b);
	bool any = false;
	unsigned i;

	if (blk_hole(f, b))
		return false; /* all zeros */
	for (i = 0; i < PM_MAP_FANOUT; i++) {
		if (!n[i])
			continue;
		if (n[i] == b || !in_data(f, n[i]) || (all_leaked && !is_leaked(f, n[i])))
			return false;
		any = true;
	}
	return any;
}

/* Blocks under leaked block @b read as a map node of leaked blocks (itself
 * included); 0 if the budget ran out. */
static uint64_t leaked_size(struct fsck *f, uint64_t b, unsigned depth)
{
	const uint64_t *n = pm_block_ptr(f->pool, b);
	uint64_t sum = 1, k;
	unsigned i;

	if (!spend(f, PM_MAP_FANOUT))
		return 0;
	if (!depth || !node_like(f, b, true))
		return 1;
	for (i = 0; i < PM_MAP_FANOUT; i++) {
		if (!n[i])
			continue;
		k = leaked_size(f, n[i], depth - 1);
		if (!k)
			return 0;
		sum += k;
	}
	return sum;
}

static int cmp_root(const void *a, const void *b)
{
	const struct leakroot *x = a, *y = b;

	return x->size != y->size ? (x->size < y->size ? -1 : 1) : cmp_u64(&x->blk, &y->blk);
}

static int cmp_ghost(const void *a, const void *b)
{
	return cmp_u64(&((const struct ghost *)a)->blk, &((const struct ghost *)b)->blk);
}

/* Lists the leaked blocks, the leaked roots and their sizes, and the ghost
 * claims. Before pass 1b, which walks the maps again; only when there are
 * claims to settle. */
static void find_leaks(struct fsck *f)
{
	uint64_t b;
	size_t *parent, i, k;
	unsigned e;

	for (b = f->data_start; b < f->nblocks; b++) {
		/* 64 at a time where none is leaked: most of a big pool */
		if (!(b & 63) && b + 64 <= f->nblocks && !(bm_word(f->bitmap, b) & ~f->ref[b >> 6])) {
			b += 63;
			continue;
		}
		if (b == f->backup || !bm_get(f->bitmap, b) || ref_get(f, b))
			continue;
		if (f->nleaked == LEAKS_LISTED) {
			f->leaks_unknown = true;
			return;
		}
		f->leaked = grow(f->leaked, &f->capleaked, f->nleaked + 1, sizeof(*f->leaked), &f->nomem);
		if (f->nleaked < f->capleaked)
			f->leaked[f->nleaked++] = b;
	}
	if (!f->nleaked || f->nomem)
		return;
	parent = malloc(f->nleaked * sizeof(*parent));
	f->roots = calloc(f->nleaked, sizeof(*f->roots));
	if (!parent || !f->roots) {
		free(parent);
		f->nomem = true;
		return;
	}
	for (i = 0; i < f->nleaked; i++)
		parent[i] = SIZE_MAX;
	for (i = 0; i < f->nleaked && !f->leaks_unknown && !f->nomem; i++) {
		const uint64_t *n = pm_block_ptr(f->pool, f->leaked[i]);

		if (!spend(f, 2 * PM_MAP_FANOUT)) {
			f->leaks_unknown = true;
			break;
		}
		if (!node_like(f, f->leaked[i], false))
			continue;
		for (e = 0; e < PM_MAP_FANOUT; e++) {
			if (!n[e])
				continue;
			k = leak_index(f, n[e]);
			if (k != SIZE_MAX) {
				parent[k] = i; /* a leaked block under a leaked node */
			} else if (ref_get(f, n[e]) && f->nghosts < DUPS_LISTED) {
				f->ghosts = grow(f->ghosts, &f->capghosts, f->nghosts + 1,
						 sizeof(*f->ghosts), &f->nomem);
				if (f->nghosts < f->capghosts)
					f->ghosts[f->nghosts++] = (struct ghost){ n[e], f->leaked[i], 0 };
			} else if (ref_get(f, n[e])) {
				f->leaks_unknown = true;
			}
		}
	}
	for (i = 0; i < f->nleaked && !f->leaks_unknown; i++) {
		if (parent[i] != SIZE_MAX)
			continue;
		f->roots[f->nroots].blk = f->leaked[i];
		f->roots[f->nroots++].size = leaked_size(f, f->leaked[i], PM_MAP_MAX_HEIGHT);
	}
	/* each ghost's root: up the parents, as far as a map is deep */
	for (i = 0; i < f->nghosts; i++) {
		unsigned d;
		k = leak_index(f, f->ghosts[i].node);
		for (d = 0; d < PM_MAP_MAX_HEIGHT && parent[k] != SIZE_MAX; d++)
			k = parent[k];
		f->ghosts[i].root = f->leaked[k];
	}
	free(parent);
	qsort(f->roots, f->nroots, sizeof(*f->roots), cmp_root);
	if (f->nghosts)
		qsort(f->ghosts, f->nghosts, sizeof(*f->ghosts), cmp_ghost);
}

/* Blocks a pointer to @blk at @level reaches (itself included), as
 * census() counts them; 0 if the budget ran out. */
static uint64_t claim_size(struct fsck *f, uint64_t blk, unsigned level)
{
	const uint64_t *n = pm_block_ptr(f->pool, blk);
	uint64_t sum = 1, k;
	unsigned i;

	if (!level)
		return 1;
	if (!spend(f, PM_MAP_FANOUT))
		return 0;
	for (i = 0; i < PM_MAP_FANOUT; i++) {
		if (!n[i] || !in_data(f, n[i]))
			continue;
		k = claim_size(f, n[i], level - 1);
		if (!k)
			return 0;
		sum += k;
	}
	return sum;
}

/* Could a pointer reaching @size blocks have moved here (see above), from
 * a leaked root other than @except? */
static bool may_have_moved(const struct fsck *f, uint64_t size, uint64_t except)
{
	size_t i;

	if (f->leaks_unknown || !size)
		return true;
	for (i = 0; i < f->nroots; i++) /* sorted by size: unknown ones first */
		if ((!f->roots[i].size || f->roots[i].size == size) && f->roots[i].blk != except)
			return true;
		else if (f->roots[i].size > size)
			break;
	return false;
}

/* Does inode @ino's pointer to @blk at @level vouch for it (a ghost under
 * leaked root @except aside)? */
static bool vouches(struct fsck *f, uint64_t ino, uint64_t blk, unsigned level, uint64_t except)
{
	const struct verdict *v = verdict_of(f, ino);

	return v && v->ok && !may_have_moved(f, claim_size(f, blk, level), except);
}

/* Drops inode @ino's pointer at @slot: the map root (the whole map), a map
 * or data pointer (a hole), or the xattr block. */
static void drop_claim(struct fsck *f, uint64_t ino, uint64_t *slot)
{
	struct pm_dinode *d = pm_dinode_ptr(f->pool, ino);

	if (slot == &d->map_root)
		drop_map(f, d);
	else
		SET(f, *slot, 0);
	f->unsure_leaks = true; /* the block may look leaked now: freed next round */
}

/* One pointer to a contested block. */
struct claimref {
	uint64_t ino, fblk;
	enum bkind kind;
	unsigned level;
	uint64_t *slot;
	bool live;    /* its inode is in use and the pointer still names the block */
	bool vouched; /* its inode vouches for the block (vouches()) */
};

static const char *loss_of(enum bkind kind)
{
	return kind == BK_MAP ? "the file blocks it mapped become holes"
	       : kind == BK_DATA ? "a hole there" : "it loses its extended attributes";
}

static const char moved[] = "its structure is consistent, but its pointer may have moved there: a leaked block as large is left";

/* Why inode @ino's pointer does not vouch for the block (@vouched: it does) */
static const char *reason_of(const struct fsck *f, uint64_t ino, bool vouched)
{
	const struct verdict *v = verdict_of(f, ino);

	if (v && !v->ok)
		return v->why;
	return vouched ? "its structure is consistent" : moved;
}

/* "inode 12: it counts ..." */
static const char *why_of(const struct fsck *f, char *buf, size_t size, uint64_t ino, bool vouched)
{
	snprintf(buf, size, "inode %llu: %s", (unsigned long long)ino, reason_of(f, ino, vouched));
	return buf;
}

/* The claims on block @blk: its first claimant's (@o, if pass 1b found
 * it), the later ones (@u[0..n)), and the ghost claims of leaked map nodes
 * (@g[0..ng)). Reports each extra claim and, with repair, settles whose the
 * block is. */
static void settle_block(struct fsck *f, uint64_t blk, const struct owner *o, const struct dup *u,
			 size_t n, const struct ghost *g, size_t ng)
{
	uint64_t winner = 0, except = ng ? g[0].root : 0;
	struct claimref *c;
	size_t nc = 0, i, kept = SIZE_MAX;
	bool one = true, ambiguous = false, deferred = false;
	char a[96], b[96], act[512], w1[160], w2[160];

	c = calloc(n + 1, sizeof(*c));
	if (!c) {
		f->nomem = true;
		return;
	}
	if (o && o->set) {
		c[nc++] = (struct claimref){ o->ino, o->fblk, o->kind, o->level, o->slot, false, false };
		deferred = o->deferred;
	}
	for (i = 0; i < n; i++)
		if (!nc || u[i].slot != c[0].slot) {
			c[nc++] = (struct claimref){ u[i].ino, u[i].fblk, u[i].kind, u[i].level,
						     u[i].slot, false, false };
			deferred = deferred || u[i].deferred;
		}
	for (i = 0; i < nc; i++) {
		c[i].live = c[i].slot && *c[i].slot == blk && pm_dinode_ptr(f->pool, c[i].ino)->mode;
		if (c[i].ino != c[0].ino)
			one = false;
	}

	if (f->repair && deferred) {
		/* a pointer to it is in a node whose owner this round
		 * settles: once that is done, the next round settles this */
		for (i = 0; i < n; i++)
			problem(f, false, "block %llu is used twice: as %s and as %s",
				(unsigned long long)blk,
				o && o->set ? use_of(a, sizeof(a), o->kind, o->ino, o->fblk) : "something",
				use_of(b, sizeof(b), u[i].kind, u[i].ino, u[i].fblk));
		f->withheld = true;
		free(c);
		return;
	}
	if (!nc) { /* a ghost claim on a block no map names any more */
		free(c);
		return;
	}
	if (f->repair && nc < 2 && !ng) {
		/* the other pointer went between pass 1 and 1b (a repair
		 * dropped it): nothing is left to settle */
		for (i = 0; i < n; i++)
			problem_as(f, true, "the other pointer is gone", "block %llu is used twice: as %s",
				   (unsigned long long)blk,
				   use_of(b, sizeof(b), u[i].kind, u[i].ino, u[i].fblk));
		free(c);
		return;
	}
	if (!f->repair || (one && !ng)) {
		/* report only, or one inode naming the block twice: the first
		 * pointer keeps it, a later one gets a copy (data, directory,
		 * xattr block) or is dropped (a map node: a copy would share
		 * its children in turn). No other file's bytes are involved */
		for (i = 0; i < n; i++) {
			struct pm_dinode *d = pm_dinode_ptr(f->pool, u[i].ino);
			bool fix = f->repair && u[i].slot;
			uint64_t nb = 0;

			if (fix && u[i].kind != BK_MAP)
				nb = alloc_block(f);
			if (nb)
				snprintf(act, sizeof(act), "inode %llu gets a copy, block %llu (multiply-claimed block cloned)",
					 (unsigned long long)u[i].ino, (unsigned long long)nb);
			else if (u[i].kind == BK_MAP)
				snprintf(act, sizeof(act), "dropped from inode %llu: the file blocks it mapped become holes",
					 (unsigned long long)u[i].ino);
			else
				snprintf(act, sizeof(act), "dropped from inode %llu (no free block for a copy)",
					 (unsigned long long)u[i].ino);
			problem_as(f, fix, act, "block %llu is used twice: as %s and as %s",
				   (unsigned long long)blk,
				   o && o->set ? use_of(a, sizeof(a), o->kind, o->ino, o->fblk) : "something",
				   use_of(b, sizeof(b), u[i].kind, u[i].ino, u[i].fblk));
			if (!fix)
				continue;
			if (nb) {
				put(f, pm_block_ptr(f->pool, nb), pm_block_ptr(f->pool, blk), PM_BLOCK_SIZE);
				SET(f, *u[i].slot, nb);
			} else if (u[i].slot == &d->map_root) {
				drop_map(f, d);
			} else {
				SET(f, *u[i].slot, 0);
			}
		}
		free(c);
		return;
	}

	/* two inodes or more (a ghost counts): the one inode whose structure
	 * vouches for the block keeps it (its first pointer to it), or no one
	 * does */
	for (i = 0; i < nc; i++) {
		c[i].vouched = c[i].live && vouches(f, c[i].ino, blk, c[i].level, except);
		if (!c[i].vouched)
			continue;
		if (winner && winner != c[i].ino)
			ambiguous = true;
		winner = c[i].ino;
	}
	if (ambiguous)
		winner = 0;
	for (i = 0; i < nc && winner; i++)
		if (c[i].live && c[i].ino == winner) {
			kept = i;
			break;
		}

	/* one line per extra claim, against the first one */
	for (i = 1; i < nc; i++) {
		const struct claimref *x = &c[0], *y = &c[i], *lost;
		bool xd = x->live && kept != 0, yd = y->live && kept != i; /* dropped */

		if (!xd && !yd) {
			snprintf(act, sizeof(act), "%s", x->live || y->live ? "the other pointer is gone"
							: "neither pointer names it any more");
		} else if (xd != yd) {
			lost = xd ? x : y;
			if (winner)
				snprintf(act, sizeof(act), "inode %llu keeps it, its structure is consistent; dropped from inode %llu (%s): %s",
					 (unsigned long long)winner, (unsigned long long)lost->ino,
					 reason_of(f, lost->ino, lost->vouched), loss_of(lost->kind));
			else
				snprintf(act, sizeof(act), "dropped from inode %llu (%s): %s",
					 (unsigned long long)lost->ino,
					 reason_of(f, lost->ino, lost->vouched), loss_of(lost->kind));
		} else if (winner) {
			snprintf(act, sizeof(act), "inode %llu keeps it, its structure is consistent; dropped from inodes %llu and %llu (%s; %s)",
				 (unsigned long long)winner, (unsigned long long)x->ino,
				 (unsigned long long)y->ino, why_of(f, w1, sizeof(w1), x->ino, x->vouched),
				 why_of(f, w2, sizeof(w2), y->ino, y->vouched));
		} else if (x->vouched && y->vouched) {
			snprintf(act, sizeof(act), "dropped from both: both structures vouch for it, so whose it is cannot be told; neither file keeps it (a hole, or the blocks it mapped become holes)");
		} else {
			snprintf(act, sizeof(act), "dropped from both: no structure vouches for it (%s; %s); neither file keeps it (a hole, or the blocks it mapped become holes)",
				 why_of(f, w1, sizeof(w1), x->ino, x->vouched),
				 why_of(f, w2, sizeof(w2), y->ino, y->vouched));
		}
		problem_as(f, true, act, "block %llu is used twice: as %s and as %s",
			   (unsigned long long)blk, use_of(a, sizeof(a), x->kind, x->ino, x->fblk),
			   use_of(b, sizeof(b), y->kind, y->ino, y->fblk));
	}

	if (nc == 1 && c[0].live && kept != 0)
		snprintf(act, sizeof(act), "dropped from inode %llu (%s): %s",
			 (unsigned long long)c[0].ino, reason_of(f, c[0].ino, c[0].vouched),
			 loss_of(c[0].kind));
	if (nc == 1 && c[0].live && kept != 0)
		problem_as(f, true, act, "block %llu, %s, is named by block %llu too, a leaked map node (the pointer to it may be what moved)",
			   (unsigned long long)blk, use_of(a, sizeof(a), c[0].kind, c[0].ino, c[0].fblk),
			   (unsigned long long)g[0].node);
	for (i = 0; i < nc; i++) {
		if (nc > 1 || kept != i)
			ist(f, c[i].ino)->flags |= IS_SHARED;
		if (c[i].live && i != kept)
			drop_claim(f, c[i].ino, c[i].slot);
	}
	free(c);
}

/* Reports every duplicated block and, with repair, settles it and every
 * block a ghost claims. */
static void settle_dups(struct fsck *f)
{
	size_t k, i = 0, j, gi = 0, gj;

	for (k = 0; k < f->nowners && !f->nomem; k++) {
		uint64_t blk = f->owners[k].blk;

		for (j = i; j < f->ndups && f->dups[j].blk == blk; j++)
			;
		for (gj = gi; gj < f->nghosts && f->ghosts[gj].blk == blk; gj++)
			;
		subject_begin(f, "block", blk);
		settle_block(f, blk, &f->owners[k], j > i ? &f->dups[i] : NULL, j - i,
			     gj > gi ? &f->ghosts[gi] : NULL, gj - gi);
		subject_end(f);
		i = j;
		gi = gj;
	}
	if (f->dups_unlisted) {
		f->nerr += f->dups_unlisted;
		if (f->repair)
			f->withheld = true;
		note(f, "%lu more references to blocks already in use, not listed", f->dups_unlisted);
	}
}

/*
 * Repair: each pointer to a block the bitmap calls free. Either the bitmap
 * lost a bit (the block is in use), or the pointer is wrong and the block
 * is free, holding what a deleted file left there. The bitmap is trusted
 * less only if the inode vouches for the block (vouches(): its structure
 * is consistent and no pointer can have moved there unseen). Otherwise the
 * pointer is dropped: no file gets a free block's old bytes on a guess.
 */
static void settle_frees(struct fsck *f)
{
	size_t i;

	for (i = 0; i < f->nfrees && !f->nomem; i++) {
		const struct freeref *r = &f->frees[i];
		char use[96], act[400], w[160];

		use_of(use, sizeof(use), r->kind, r->ino, r->fblk);
		if (*r->slot != r->blk || !pm_dinode_ptr(f->pool, r->ino)->mode) {
			/* settle_dups dropped it: the block stays free */
			problem_as(f, true, "its pointer is dropped", "block %llu, %s, is marked free in the allocation bitmap",
				   (unsigned long long)r->blk, use);
			continue;
		}
		if (vouches(f, r->ino, r->blk, r->level, 0)) {
			bm_set(f, r->blk, true);
			problem_as(f, true, "marked in use", "block %llu, %s, is marked free in the allocation bitmap",
				   (unsigned long long)r->blk, use);
			continue;
		}
		snprintf(act, sizeof(act), "the pointer is dropped (%s): a free block may hold a deleted file's bytes",
			 why_of(f, w, sizeof(w), r->ino, false));
		problem_as(f, true, act, "block %llu, %s, is marked free in the allocation bitmap",
			   (unsigned long long)r->blk, use);
		ist(f, r->ino)->flags |= IS_SHARED;
		drop_claim(f, r->ino, r->slot);
	}
}

/* Block counts that disagree with the maps (check_inode), now that no
 * claim moves any more this round. An inode a settling touched is mended
 * next round, when its map is walked as it now is. */
static void settle_counts(struct fsck *f)
{
	size_t i;

	for (i = 0; i < f->ncounts; i++) {
		const struct countfix *c = &f->counts[i];
		struct pm_dinode *d = pm_dinode_ptr(f->pool, c->ino);
		bool later = ist(f, c->ino)->flags & IS_SHARED;
		bool fix = f->repair && !c->partial && !later;
		uint64_t old = d->blocks;

		if (!d->mode || old == c->counted)
			continue;
		if (f->repair && later)
			f->withheld = true;
		if (fix)
			SET(f, d->blocks, c->counted);
		problem(f, fix, "inode %llu: block count %llu, but its map and xattr block hold %llu",
			(unsigned long long)c->ino, (unsigned long long)old,
			(unsigned long long)c->counted);
	}
}

/* Walks every map in @mode, from a clean slate. */
static void walk_all(struct fsck *f, enum walkmode mode)
{
	size_t words = (size_t)PM_DIV_UP(f->nblocks, 64);

	memset(f->ref, 0, words * sizeof(*f->ref));
	if (f->backup)
		f->ref[f->backup >> 6] |= 1ull << (f->backup & 63);
	f->mode = mode;
	walk_inodes(f);
	f->mode = WM_CHECK;
	memset(f->ref, 0, words * sizeof(*f->ref));
	if (f->backup)
		f->ref[f->backup >> 6] |= 1ull << (f->backup & 63);
}

/* Repair, before pass 1: silent walks of every map mark the blocks two
 * inodes name (contested), so that pass 1 writes into none of them before
 * they are settled. The first walk finds the blocks named twice; only if
 * there are any, a second one tells those one inode names twice (its own
 * business, a map pointing at itself) from those two inodes name. */
static void prescan(struct fsck *f)
{
	size_t words = (size_t)PM_DIV_UP(f->nblocks, 64), i, n = 0;
	uint64_t w;

	f->contested = calloc(words, sizeof(*f->contested));
	if (!f->contested) {
		f->nomem = true;
		return;
	}
	walk_all(f, WM_PRESCAN);
	for (i = 0; i < words; i++)
		n += (size_t)__builtin_popcountll(f->contested[i]);
	if (!n)
		return;
	f->twice = calloc(n, sizeof(*f->twice));
	if (!f->twice) {
		f->nomem = true;
		return;
	}
	for (i = 0; i < words; i++) /* in order, a word at a time */
		for (w = f->contested[i]; w; w &= w - 1)
			f->twice[f->ntwice++].blk = (uint64_t)i * 64 + (uint64_t)__builtin_ctzll(w);
	walk_all(f, WM_WHOSE);
	memset(f->contested, 0, words * sizeof(*f->contested));
	for (i = 0; i < f->ntwice; i++)
		if (f->twice[i].contested)
			f->contested[f->twice[i].blk >> 6] |= 1ull << (f->twice[i].blk & 63);
	free(f->twice);
	f->twice = NULL;
	f->ntwice = 0;
}

static void pass1(struct fsck *f)
{
	struct pm_dinode *slot0 = pm_dinode_ptr(f->pool, 0);
	struct pm_dinode *root = pm_dinode_ptr(f->pool, PM_ROOT_INO);
	uint64_t ino, lo, next;

	if (!all_zero(slot0, sizeof(*slot0))) {
		problem_as(f, f->repair, "zeroed", "inode slot 0 is not zero");
		if (f->repair)
			zero(f, slot0, sizeof(*slot0));
	}
	if (!S_ISDIR(root->mode)) {
		problem_as(f, f->repair, root->mode ? "made a directory again" : "made an empty directory again",
			   "root inode %llu is not a directory (mode 0%o)", (unsigned long long)PM_ROOT_INO,
			   root->mode);
		if (f->repair) {
			if (!root->mode)
				zero(f, root, sizeof(*root));
			SET(f, root->mode, S_IFDIR | (root->mode ? root->mode & 07777 : 0755));
			SET(f, root->parent, PM_ROOT_INO);
			if (root->nlink < 2)
				SET(f, root->nlink, 2);
		}
	}
	if (f->repair)
		prescan(f);
	for (next = PM_ROOT_INO; !f->nomem && pm_islots_next(f->pool, next, f->nis, &lo, &next);)
		for (ino = lo; ino < next && !f->nomem; ino++)
			if (pm_dinode_ptr(f->pool, ino)->mode)
				check_inode(f, ino);
	/* the judging reads the maps again: a few times the pool's pointers */
	f->census_budget = 8 * f->nblocks + (1ull << 20);
	if (f->repair && !f->nomem)
		find_leaks(f); /* before pass 1b walks the maps again */
	if ((f->ndups || f->dups_unlisted || f->nghosts) && !f->nomem)
		find_owners(f);
	if (f->repair && !f->nomem)
		judge(f);
	if (!f->nomem)
		settle_dups(f);
	if (!f->nomem)
		settle_frees(f);
	if (!f->nomem)
		settle_counts(f);
	if (f->repair && f->max_gen >= f->sb->next_generation) {
		f->sb->next_generation = f->max_gen + 1;
		f->sb_dirty = true;
	}
}

/* ---- pass 2: directories ------------------------------------------------- */

static const struct dirblocks *dir_blocks(const struct fsck *f, uint64_t ino)
{
	return find_sorted(f->dirs, f->ndirs, sizeof(*f->dirs), ino);
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
	if (ist(f, ino)->flags & IS_QUEUED)
		return;
	ist(f, ino)->flags |= IS_QUEUED;
	q->q[q->tail++] = (uint32_t)ino;
}

/* Zeroes the @n slots of the entry at @de: a free slot has ino 0, and its
 * name slots must not be read as entries. */
static void drop_entry(struct fsck *f, struct pm_dirent *de, unsigned n)
{
	zero(f, de, (size_t)n * PM_DIR_SLOT);
}

/* One live entry (ino != 0, nslots sane) at slot @s of pool block @blk of
 * directory @dino. Returns false if repair (@fix) dropped it. */
static bool check_dirent(struct fsck *f, uint64_t dino, struct pm_dirent *de, uint64_t blk,
			 unsigned s, struct queue *q, bool fix)
{
	static const char dropped[] = "the entry is dropped";
	unsigned long long dn = (unsigned long long)dino;
	struct ino_state *xs;
	struct pm_dinode *xd;
	char nm[96], where[128];
	const char *name = dname(de);
	bool bad = false;

	if (de->name_len == 0) {
		problem_as(f, fix, dropped, "directory %llu: entry in block %llu slot %u has an empty name",
			   dn, (unsigned long long)blk, s);
		snprintf(where, sizeof(where), "entry in block %llu slot %u", (unsigned long long)blk, s);
		bad = true;
	} else if (pm_dirent_slots(de->name_len) > de->nslots) {
		problem_as(f, fix, dropped,
			   "directory %llu: entry in block %llu slot %u: a %u-byte name needs %u slots, it has %u",
			   dn, (unsigned long long)blk, s, de->name_len, pm_dirent_slots(de->name_len),
			   de->nslots);
		snprintf(where, sizeof(where), "entry in block %llu slot %u", (unsigned long long)blk, s);
		bad = true;
	} else {
		printable(nm, sizeof(nm), name, de->name_len);
		snprintf(where, sizeof(where), "entry \"%s\"", nm);
		if (memchr(name, '/', de->name_len) || memchr(name, 0, de->name_len)) {
			problem_as(f, fix, dropped, "directory %llu: %s: name contains '/' or NUL", dn,
				   where);
			bad = true;
		} else if ((de->name_len == 1 && name[0] == '.') ||
			   (de->name_len == 2 && name[0] == '.' && name[1] == '.')) {
			problem_as(f, fix, dropped, "directory %llu: %s: . and .. are never stored", dn,
				   where);
			bad = true;
		}
	}
	if (!bad && de->ino >= f->ninodes) {
		problem_as(f, fix, dropped,
			   "directory %llu: %s names inode %llu, past the inode table (%llu slots)", dn,
			   where, (unsigned long long)de->ino, (unsigned long long)f->ninodes);
		bad = true;
	}
	if (!bad && !(ist(f, de->ino)->flags & IS_USED)) {
		problem_as(f, fix, dropped, "directory %llu: %s names free inode %llu", dn, where,
			   (unsigned long long)de->ino);
		bad = true;
	}
	if (!bad && de->ino == PM_ROOT_INO) {
		problem_as(f, fix, dropped, "directory %llu: %s names the root directory", dn, where);
		bad = true;
	}
	if (!bad && (ist(f, de->ino)->flags & IS_DIR) && ist(f, de->ino)->found_in) {
		problem_as(f, fix, dropped,
			   "directory %llu: %s names directory %llu, which already has an entry in directory %u (a hard link or a cycle)",
			   dn, where, (unsigned long long)de->ino, ist(f, de->ino)->found_in);
		bad = true;
	}
	if (!bad && !names_add(f, de)) {
		problem_as(f, fix, dropped, "directory %llu: %s appears twice", dn, where);
		bad = true;
	}
	if (bad) {
		if (fix) {
			drop_entry(f, de, de->nslots);
			return false;
		}
		/* as before repair: a bad entry still names what it names */
		if (de->ino < f->ninodes && (ist(f, de->ino)->flags & IS_USED) &&
		    ist(f, de->ino)->nref < UINT32_MAX) {
			ist(f, de->ino)->nref++;
			if ((ist(f, de->ino)->flags & IS_DIR) && de->ino != PM_ROOT_INO &&
			    ist(f, dino)->nsub < UINT32_MAX)
				ist(f, dino)->nsub++;
		}
		return true;
	}

	if (de->nslots != pm_dirent_slots(de->name_len)) {
		unsigned need = pm_dirent_slots(de->name_len), extra = de->nslots - need;
		problem_as(f, fix, "the spare slots are freed",
			   "directory %llu: %s takes %u slots, a %u-byte name needs %u", dn, where,
			   de->nslots, de->name_len, need);
		if (fix) {
			SET(f, de->nslots, (uint8_t)need);
			zero(f, (uint8_t *)de + need * PM_DIR_SLOT, extra * PM_DIR_SLOT);
		}
	}
	if (de->hash != pm_name_hash(name, de->name_len)) {
		problem_as(f, fix, "corrected", "directory %llu: %s: hash 0x%08x, expected 0x%08x", dn,
			   where, de->hash, pm_name_hash(name, de->name_len));
		if (fix)
			SET(f, de->hash, pm_name_hash(name, de->name_len));
	}
	if (de->pad) {
		problem_as(f, fix, "zeroed", "directory %llu: %s: padding is not zero", dn, where);
		if (fix)
			SET(f, de->pad, 0);
	}
	xs = ist(f, de->ino);
	xd = pm_dinode_ptr(f->pool, de->ino);
	if (de->type != pm_dtype(xd->mode)) {
		problem_as(f, fix, "corrected", "directory %llu: %s has type %u, but inode %llu has type %u",
			   dn, where, de->type, (unsigned long long)de->ino, pm_dtype(xd->mode));
		if (fix)
			SET(f, de->type, (uint8_t)pm_dtype(xd->mode));
	}
	if (xs->nref < UINT32_MAX)
		xs->nref++;
	if (!(xs->flags & IS_DIR))
		return true;
	if (ist(f, dino)->nsub < UINT32_MAX)
		ist(f, dino)->nsub++;
	xs->found_in = (uint32_t)dino;
	if (xd->parent != dino) {
		problem_as(f, fix, "set to the directory holding its entry",
			   "directory %llu: its parent is %llu, but its entry is in directory %llu",
			   (unsigned long long)de->ino, (unsigned long long)xd->parent, dn);
		if (fix)
			SET(f, xd->parent, dino);
	}
	enqueue(f, q, de->ino);
	return true;
}

static void scan_dir(struct fsck *f, uint64_t dino, struct queue *q, bool safe_counts)
{
	const struct dirblocks *db = dir_blocks(f, dino);
	struct pm_dinode *d = pm_dinode_ptr(f->pool, dino);
	struct ino_state *st = ist(f, dino);
	uint64_t bi, live = 0;

	if (!db)
		return;
	subject_begin(f, "directory", dino);
	names_reset(f);
	for (bi = 0; bi < db->n && !f->nomem; bi++) {
		uint64_t blk = f->dblk[db->first + bi];
		uint8_t *b = pm_block_ptr(f->pool, blk);
		/* a contested block may be a file's data: read, not mended */
		bool fix = f->repair && !contested(f, blk);
		unsigned s = 0;

		if (f->repair && !fix)
			f->withheld = true;
		while (s < PM_DIR_SLOTS) {
			struct pm_dirent *de = (void *)(b + s * PM_DIR_SLOT);
			if (!de->ino) {
				s++;
				continue;
			}
			if (!de->nslots || s + de->nslots > PM_DIR_SLOTS) {
				/* the engine takes it for a free slot (pm_dir_load) */
				problem_as(f, fix, "the slot is freed",
					   "directory %llu: entry in block %llu slot %u claims %u slots",
					   (unsigned long long)dino, (unsigned long long)blk, s, de->nslots);
				if (fix)
					drop_entry(f, de, 1);
				s++;
				continue;
			}
			{
				unsigned n = de->nslots;
				if (check_dirent(f, dino, de, blk, s, q, fix))
					live++;
				s += n;
			}
		}
	}
	st->nlive = live > UINT32_MAX ? UINT32_MAX : (uint32_t)live;
	if (d->nentries != live && !f->nomem) {
		bool fix = f->repair && safe_counts && !(st->flags & IS_BADDIR);
		uint64_t old = d->nentries;
		if (fix)
			SET(f, d->nentries, live);
		problem(f, fix, "directory %llu: entry count %llu, but it holds %llu entries",
			(unsigned long long)dino, (unsigned long long)old, (unsigned long long)live);
	}
	subject_end(f);
}

/* Scans the tree from the root, breadth first, then every directory the
 * root did not reach (their entries still count as links). */
static void pass2(struct fsck *f)
{
	/* each directory is queued once; every one is below nis */
	struct queue q = { .q = malloc(f->nis * sizeof(*q.q)) };
	bool safe_counts = f->ndups == 0 && !f->dups_unlisted;
	bool reached = true;
	uint64_t next = PM_ROOT_INO;

	if (!q.q) {
		f->nomem = true;
		return;
	}
	if ((ist(f, PM_ROOT_INO)->flags & (IS_USED | IS_DIR)) == (IS_USED | IS_DIR))
		enqueue(f, &q, PM_ROOT_INO);
	for (;;) {
		while (q.head < q.tail && !f->nomem) {
			uint64_t ino = q.q[q.head++];
			if (reached)
				ist(f, ino)->flags |= IS_REACHED;
			scan_dir(f, ino, &q, safe_counts);
		}
		if (f->nomem)
			break;
		reached = false;
		while (next < f->nis && ((ist(f, next)->flags & (IS_DIR | IS_QUEUED)) != IS_DIR))
			next++;
		if (next >= f->nis)
			break;
		enqueue(f, &q, next);
	}
	free(q.q);
}

/* ---- pass 3: orphan list and link counts --------------------------------- */

static const char rebuilt[] = "the orphan list is rebuilt";

/* An orphan-list problem: the list is rebuilt at the end of pass 3. */
static void __attribute__((format(printf, 2, 3))) orphan_problem(struct fsck *f, const char *fmt, ...)
{
	va_list ap;

	f->orphans_bad = true;
	va_start(ap, fmt);
	vproblem(f, f->repair, rebuilt, fmt, ap);
	va_end(ap);
}

static void check_orphans(struct fsck *f)
{
	uint64_t prev = 0, ino = f->sb->orphan_head;

	/* each inode is entered once: the walk ends within ninodes steps */
	while (ino) {
		struct ino_state *st;
		const struct pm_dinode *d;

		if (ino >= f->ninodes) {
			orphan_problem(f, "orphan list: inode %llu (after %llu) is past the inode table",
				       (unsigned long long)ino, (unsigned long long)prev);
			break;
		}
		st = ist(f, ino);
		if (st->flags & IS_ORPHAN) {
			orphan_problem(f, "orphan list: loops back to inode %llu (after %llu)",
				       (unsigned long long)ino, (unsigned long long)prev);
			break;
		}
		if (!(st->flags & IS_USED)) {
			orphan_problem(f, "orphan list: names free inode %llu (after %llu)",
				       (unsigned long long)ino, (unsigned long long)prev);
			break;
		}
		st->flags |= IS_ORPHAN;
		d = pm_dinode_ptr(f->pool, ino);
		if (ino == PM_ROOT_INO)
			orphan_problem(f, "orphan list: holds the root directory");
		if (!(d->flags & PM_IFL_ORPHAN))
			orphan_problem(f, "inode %llu: on the orphan list without the orphan flag",
				       (unsigned long long)ino);
		if (d->orphan_prev != prev)
			orphan_problem(f, "inode %llu: orphan_prev is %llu, but it follows %llu on the orphan list",
				       (unsigned long long)ino, (unsigned long long)d->orphan_prev,
				       (unsigned long long)prev);
		if (d->nlink && !st->nref)
			orphan_problem(f, "inode %llu: on the orphan list with link count %u",
				       (unsigned long long)ino, d->nlink);
		prev = ino;
		ino = d->orphan_next;
	}
	for (ino = PM_ROOT_INO; ino < f->nis; ino++)
		if ((ist(f, ino)->flags & (IS_USED | IS_ORPHAN)) == IS_USED &&
		    (pm_dinode_ptr(f->pool, ino)->flags & PM_IFL_ORPHAN))
			orphan_problem(f, "inode %llu: has the orphan flag but is not on the orphan list",
				       (unsigned long long)ino);
}

/* Is @ino to be an orphan after the rebuild? */
static bool wants_orphan(struct fsck *f, uint64_t ino)
{
	const struct ino_state *st = ist(f, ino);

	return ino != PM_ROOT_INO && (st->flags & IS_USED) && !st->nref &&
	       ((st->flags & (IS_ORPHAN | IS_DROP)) ||
		(pm_dinode_ptr(f->pool, ino)->flags & PM_IFL_ORPHAN));
}

/* Links every inode that wants_orphan() in inode order, from the head in
 * the superblock; takes every other inode off it. An inode that entries
 * name leaves the list (the entries win) with its link count set. */
static void rebuild_orphans(struct fsck *f)
{
	uint64_t ino, prev = 0, head = 0;

	for (ino = PM_ROOT_INO; ino < f->nis; ino++) {
		struct pm_dinode *d = pm_dinode_ptr(f->pool, ino);
		const struct ino_state *st = ist(f, ino);

		if (!(st->flags & IS_USED))
			continue;
		if (wants_orphan(f, ino)) {
			if (!(d->flags & PM_IFL_ORPHAN))
				SET(f, d->flags, d->flags | PM_IFL_ORPHAN);
			if (d->nlink)
				SET(f, d->nlink, 0);
			if (d->orphan_prev != prev)
				SET(f, d->orphan_prev, prev);
			if (prev)
				SET(f, pm_dinode_ptr(f->pool, prev)->orphan_next, ino);
			else
				head = ino;
			prev = ino;
			continue;
		}
		if (d->flags & PM_IFL_ORPHAN)
			SET(f, d->flags, d->flags & ~PM_IFL_ORPHAN);
		if (d->orphan_next)
			SET(f, d->orphan_next, 0);
		if (d->orphan_prev)
			SET(f, d->orphan_prev, 0);
		if (!(st->flags & IS_DIR) && st->nref && d->nlink != st->nref)
			SET(f, d->nlink, st->nref);
	}
	if (prev && pm_dinode_ptr(f->pool, prev)->orphan_next)
		SET(f, pm_dinode_ptr(f->pool, prev)->orphan_next, 0);
	if (f->sb->orphan_head != head) {
		f->sb->orphan_head = head;
		f->sb_dirty = true;
	}
}

/*
 * Adds an empty block to the root directory, for reconnected inodes, when
 * its blocks are full (or it has none, a root made again): file block
 * size / 4096, mapped by a root leaf of height 1 (made if the map is empty).
 * Returns the block, 0 if the map has another shape or the pool is full.
 */
static uint64_t grow_root(struct fsck *f)
{
	struct pm_dinode *d = pm_dinode_ptr(f->pool, PM_ROOT_INO);
	uint64_t n = d->size / PM_BLOCK_SIZE, leaf = 0, data;

	if (d->size % PM_BLOCK_SIZE || (d->map_height == 0 && n) ||
	    (d->map_height == 1 && n >= PM_MAP_FANOUT) || d->map_height > 1 ||
	    (d->map_height == 1 && contested(f, d->map_root)) ||
	    (d->map_height == 1 && ((uint64_t *)pm_block_ptr(f->pool, d->map_root))[n]))
		return 0;
	if (d->map_height == 0) {
		leaf = alloc_block(f);
		if (!leaf)
			return 0;
		zero(f, pm_block_ptr(f->pool, leaf), PM_BLOCK_SIZE);
	}
	data = alloc_block(f);
	if (!data)
		return 0; /* the leaf stays allocated, unreferenced: freed next round */
	zero(f, pm_block_ptr(f->pool, data), PM_BLOCK_SIZE);
	if (leaf) {
		SET(f, ((uint64_t *)pm_block_ptr(f->pool, leaf))[0], data);
		SET(f, d->map_height, 1);
		SET(f, d->map_root, leaf);
	} else {
		SET(f, ((uint64_t *)pm_block_ptr(f->pool, d->map_root))[n], data);
	}
	SET(f, d->size, d->size + PM_BLOCK_SIZE);
	SET(f, d->blocks, d->blocks + (leaf ? 2 : 1));
	return data;
}

/*
 * Gives inode @ino, which no entry names, an entry "#INO" in the root
 * directory (e2fsck puts such inodes in lost+found under that name), in a
 * free slot of its blocks or of one grow_root() adds. False if there is
 * none or the name is taken: the caller orphans it instead.
 */
static bool reconnect(struct fsck *f, uint64_t ino)
{
	const struct dirblocks *db = dir_blocks(f, PM_ROOT_INO);
	struct pm_dinode *d = pm_dinode_ptr(f->pool, ino);
	struct pm_dirent *free_de = NULL, de;
	char name[24];
	unsigned len;
	uint64_t bi;

	if ((ist(f, PM_ROOT_INO)->flags & IS_BADDIR) ||
	    !S_ISDIR(pm_dinode_ptr(f->pool, PM_ROOT_INO)->mode))
		return false;
	len = (unsigned)snprintf(name, sizeof(name), "#%llu", (unsigned long long)ino);
	for (bi = 0; db && bi < db->n; bi++) {
		uint8_t *b = pm_block_ptr(f->pool, f->dblk[db->first + bi]);
		unsigned s = 0;
		if (contested(f, f->dblk[db->first + bi]))
			continue; /* not written before it is settled */
		while (s < PM_DIR_SLOTS) {
			struct pm_dirent *e = (void *)(b + s * PM_DIR_SLOT);
			if (!e->ino || !e->nslots || s + e->nslots > PM_DIR_SLOTS) {
				if (!e->ino && !free_de)
					free_de = e;
				s++;
				continue;
			}
			if (e->name_len == len && !memcmp(dname(e), name, len))
				return false;
			s += e->nslots;
		}
	}
	if (!free_de && f->root_extra) {
		/* the block grow_root() added this round: slots in order */
		struct pm_dirent *e = pm_block_ptr(f->pool, f->root_extra);
		unsigned k;
		for (k = 0; k < PM_DIR_SLOTS && !free_de; k++)
			if (!e[k].ino)
				free_de = &e[k];
	}
	if (!free_de && !(f->root_extra = grow_root(f)))
		return false;
	if (!free_de)
		free_de = pm_block_ptr(f->pool, f->root_extra);
	memset(&de, 0, sizeof(de));
	de.ino = ino;
	de.name_len = (uint8_t)len;
	de.hash = pm_name_hash(name, len);
	de.type = (uint8_t)pm_dtype(d->mode);
	de.nslots = 1;
	memcpy(de.name, name, len);
	put(f, free_de, &de, sizeof(de));
	if (S_ISDIR(d->mode) && d->parent != PM_ROOT_INO)
		SET(f, d->parent, PM_ROOT_INO);
	return true;
}

/* Inode @ino: no entry names it and it is on no orphan list (@what says
 * that). Reconnected to the root, or orphaned, with repair. Returns true
 * for a reconnected directory. */
static bool lost(struct fsck *f, uint64_t ino, const char *what)
{
	char act[96];

	if (!f->repair) {
		problem(f, false, "%s %llu: %s", S_ISDIR(pm_dinode_ptr(f->pool, ino)->mode) ? "directory" : "inode",
			(unsigned long long)ino, what);
		return false;
	}
	if (reconnect(f, ino)) {
		snprintf(act, sizeof(act), "reconnected to the root directory as \"#%llu\"",
			 (unsigned long long)ino);
		problem_as(f, true, act, "%s %llu: %s",
			   S_ISDIR(pm_dinode_ptr(f->pool, ino)->mode) ? "directory" : "inode",
			   (unsigned long long)ino, what);
		return S_ISDIR(pm_dinode_ptr(f->pool, ino)->mode);
	}
	ist(f, ino)->flags |= IS_DROP;
	f->orphans_bad = true;
	problem_as(f, true, "no free slot in the root directory: put on the orphan list, the next mount frees it (dropped)",
		   "%s %llu: %s", S_ISDIR(pm_dinode_ptr(f->pool, ino)->mode) ? "directory" : "inode",
		   (unsigned long long)ino, what);
	return false;
}

/* Drops every entry of directory @ino (removed, on the orphan list, but
 * not empty): the inodes they named are reconnected next round. */
static void clear_dir_entries(struct fsck *f, uint64_t ino)
{
	const struct dirblocks *db = dir_blocks(f, ino);
	uint64_t bi;

	if (!db)
		return;
	for (bi = 0; bi < db->n; bi++) {
		uint8_t *b = pm_block_ptr(f->pool, f->dblk[db->first + bi]);
		if (contested(f, f->dblk[db->first + bi]))
			f->withheld = true; /* not written before it is settled */
		else if (!all_zero(b, PM_BLOCK_SIZE))
			zero(f, b, PM_BLOCK_SIZE);
	}
	SET(f, pm_dinode_ptr(f->pool, ino)->nentries, 0);
}

/* Returns true if it reconnected the directory. */
static bool check_dir_links(struct fsck *f, uint64_t ino, struct pm_dinode *d,
			    const struct ino_state *st, bool safe_counts, uint64_t *cycle)
{
	unsigned long long in = (unsigned long long)ino;
	uint64_t want = 2 + (uint64_t)st->nsub;
	bool fix = f->repair && safe_counts && !(st->flags & IS_BADDIR);

	if (ino == PM_ROOT_INO) {
		if (d->parent != PM_ROOT_INO) {
			problem_as(f, f->repair, "set to itself", "root directory: parent is %llu, not %llu",
				   (unsigned long long)d->parent, (unsigned long long)PM_ROOT_INO);
			if (f->repair)
				SET(f, d->parent, PM_ROOT_INO);
		}
	} else if (!st->nref) {
		if (!(st->flags & IS_ORPHAN)) {
			if (d->flags & PM_IFL_ORPHAN) {
				problem_as(f, f->repair, "kept as an orphan: the next mount frees it",
					   "directory %llu: no entry names it and it is not on the orphan list (orphan left behind)",
					   in);
				return false;
			}
			return lost(f, ino, "no entry names it and it is not on the orphan list (orphan left behind)");
		}
		if (st->nlive) {
			problem_as(f, f->repair, "its entries are dropped",
				   "directory %llu: removed (on the orphan list) but still holds %u entries",
				   in, st->nlive);
			if (f->repair)
				clear_dir_entries(f, ino);
		}
		return false;
	} else if (!(st->flags & IS_REACHED)) {
		/* in a cycle or under a lost directory: the lost one is
		 * reconnected this round, a cycle is broken after the loop */
		problem(f, false, "directory %llu: not reachable from the root (its entry is in a directory cycle or a lost directory)",
			in);
		if (!*cycle)
			*cycle = ino;
		return false;
	}
	if (d->nlink != want) {
		uint32_t old = d->nlink;
		if (fix)
			SET(f, d->nlink, (uint32_t)want);
		problem(f, fix, "directory %llu: link count %u, but it has %u subdirectories (expected %llu)",
			in, old, st->nsub, (unsigned long long)want);
	}
	return false;
}

static void pass3(struct fsck *f)
{
	bool safe_counts = f->ndups == 0 && !f->dups_unlisted;
	uint64_t ino, cycle = 0;
	unsigned long dirs_back = 0;

	check_orphans(f);
	for (ino = PM_ROOT_INO; ino < f->nis; ino++) {
		struct ino_state *st = ist(f, ino);
		struct pm_dinode *d;

		if (!(st->flags & IS_USED))
			continue;
		d = pm_dinode_ptr(f->pool, ino);
		if (st->flags & IS_DIR) {
			dirs_back += check_dir_links(f, ino, d, st, safe_counts, &cycle);
			continue;
		}
		if (!st->nref) {
			/* on the orphan list: its link count was checked there */
			if (st->flags & IS_ORPHAN)
				continue;
			if (d->flags & PM_IFL_ORPHAN)
				problem_as(f, f->repair, "kept as an orphan: the next mount frees it",
					   "inode %llu: link count %u, but no directory entry names it and it is not on the orphan list (orphan left behind)",
					   (unsigned long long)ino, d->nlink);
			else
				lost(f, ino, "no directory entry names it and it is not on the orphan list (orphan left behind)");
			continue;
		}
		if (d->nlink != st->nref) {
			bool orphan = (st->flags & IS_ORPHAN) || (d->flags & PM_IFL_ORPHAN);
			/* an orphan that entries name: the entries win, it
			 * leaves the list (rebuild_orphans sets the count) */
			bool fix = f->repair && safe_counts;
			uint32_t old = d->nlink;
			if (fix && orphan)
				f->orphans_bad = true;
			else if (fix)
				SET(f, d->nlink, st->nref);
			problem_as(f, fix, orphan ? "the entries win: it leaves the orphan list" : NULL,
				   "inode %llu: link count %u, but %u directory entries name it",
				   (unsigned long long)ino, old, st->nref);
		}
	}
	/* unreachable directories that all have entries: a cycle. Break the
	 * first by giving it an entry in the root; the entry that made the
	 * cycle is dropped next round as a second name */
	if (f->repair && !dirs_back && cycle) {
		if (reconnect(f, cycle))
			problem_as(f, true, "reconnected to the root directory",
				   "directory %llu: heads a cycle of directories no path from the root reaches",
				   (unsigned long long)cycle);
	}
	if (f->repair && f->orphans_bad)
		rebuild_orphans(f);
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
		if (!(b & 63) && b + 64 <= to && bm_word(f->bitmap, b) == (bit ? 0 : ~0ull)) {
			b += 64;
			continue;
		}
		if (bm_get(f->bitmap, b) != bit) {
			b++;
			continue;
		}
		for (start = b; b < to && bm_get(f->bitmap, b) == bit; b++)
			;
		if (f->repair) {
			uint64_t i;
			for (i = start; i < b; i++)
				bm_set(f, i, !bit);
		}
		problem_as(f, f->repair, bit ? "marked free" : "marked in use", "%s: %s",
			   run_name(rn, sizeof(rn), start, b - 1), what);
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
		/* 64 at a time where none is leaked: most of a big pool */
		if (!(b & 63) && b + 64 <= f->nblocks && !(bm_word(f->bitmap, b) & ~f->ref[b >> 6])) {
			b += 64;
			continue;
		}
		if (!bm_get(f->bitmap, b) || ref_get(f, b)) {
			b++;
			continue;
		}
		for (start = b; b < f->nblocks && bm_get(f->bitmap, b) && !ref_get(f, b); b++)
			;
		if (fix) {
			for (i = start; i < b; i++)
				f->bitmap[i >> 3] &= (uint8_t)~(1u << (i & 7));
			bm_store(f, start >> 3, ((b - 1) >> 3) + 1);
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
	uint64_t free_blocks, free_inodes = 0, ino;

	bitmap_runs(f, 0, f->data_start, false, "metadata, but marked free in the allocation bitmap");
	leaked_runs(f);
	bitmap_runs(f, f->nblocks, sb->bitmap_blocks * PM_BLOCK_SIZE * 8ull, false,
		    "past the end of the pool, but marked free in the allocation bitmap");

	free_blocks = bm_zeros(f->bitmap, f->data_start, f->nblocks);
	for (ino = PM_ROOT_INO; ino < f->nis; ino++)
		if (!(ist(f, ino)->flags & IS_USED))
			free_inodes++;
	free_inodes += f->ninodes - f->nis; /* never in use */

	if (sb->free_blocks != free_blocks) {
		uint64_t old = sb->free_blocks;
		if (f->repair) {
			sb->free_blocks = free_blocks;
			f->sb_dirty = true;
		}
		problem(f, f->repair, "superblock: %llu free blocks, but the bitmap has %llu",
			(unsigned long long)old, (unsigned long long)free_blocks);
	}
	if (sb->free_inodes != free_inodes) {
		uint64_t old = sb->free_inodes;
		if (f->repair) {
			sb->free_inodes = free_inodes;
			f->sb_dirty = true;
		}
		problem(f, f->repair, "superblock: %llu free inodes, but %llu slots are free",
			(unsigned long long)old, (unsigned long long)free_inodes);
	}
}

/* ---- entry point --------------------------------------------------------- */

/* Frees what one round allocated, for the next. */
static void round_free(struct fsck *f)
{
	free(f->bitmap);
	f->bitmap = NULL;
	free(f->ref);
	free(f->is);
	free(f->dups);
	free(f->owners);
	free(f->wfb);
	free(f->wpb);
	free(f->wslot);
	free(f->wfirst);
	free(f->dblk);
	free(f->dirs);
	free(f->names);
	free(f->contested);
	free(f->frees);
	free(f->counts);
	free(f->verdicts);
	free(f->leaked);
	free(f->roots);
	free(f->ghosts);
	f->leaked = NULL;
	f->roots = NULL;
	f->ghosts = NULL;
	f->nleaked = f->capleaked = f->nroots = f->nghosts = f->capghosts = 0;
	f->leaks_unknown = false;
	f->contested = NULL;
	f->frees = NULL;
	f->counts = NULL;
	f->verdicts = NULL;
	f->nfrees = f->capfrees = f->ncounts = f->capcounts = f->nverdicts = 0;
	f->ref = NULL;
	f->is = NULL;
	f->dups = NULL;
	f->owners = NULL;
	f->wfb = f->wpb = NULL;
	f->wslot = NULL;
	f->wfirst = NULL;
	f->dblk = NULL;
	f->dirs = NULL;
	f->names = NULL;
	f->ndups = f->capdups = f->nowners = f->capw = 0;
	f->ndblk = f->capdblk = f->ndirs = f->capdirs = f->capnames = f->nnames = 0;
	f->dups_unlisted = 0;
}

/* One round of every pass. 0, or -ENOMEM. */
static int fsck_round(struct fsck *f)
{
	int rc = 0;

	f->nerr = f->nfix = 0;
	f->unsure_leaks = f->sb_dirty = f->orphans_bad = f->nomem = f->withheld = false;
	f->mode = WM_CHECK;
	f->root_extra = 0;
	f->max_gen = 0;
	f->sb = f->pool->sb;
	rc = check_super(f);
	if (rc < 0)
		goto out;
	if (rc) {
		write_super(f);
		rc = 0;
		goto out; /* nothing else can be located safely */
	}
	f->alloc_next = f->data_start;
	f->ref = calloc((size_t)PM_DIV_UP(f->nblocks, 64), sizeof(*f->ref));
	f->nis = used_end(f);
	f->is = calloc((size_t)f->nis, sizeof(*f->is));
	if (!f->ref || !f->is) {
		rc = -ENOMEM;
		goto out;
	}
	if (f->backup) /* never a leak, never free */
		f->ref[f->backup >> 6] |= 1ull << (f->backup & 63);
	pass1(f);
	if (!f->nomem)
		pass2(f);
	if (!f->nomem)
		pass3(f);
	if (!f->nomem)
		pass4(f);
	if (f->nomem)
		rc = -ENOMEM;
	write_super(f);
out:
	round_free(f);
	return rc;
}

/*
 * Order of writes (with @repair): each repair as it is made, the
 * superblock (and its backup) at the end of each round. See the top of
 * this file.
 */
int pm_fsck_ex(struct pm_pool *pool, const struct pm_fsck_opts *o, FILE *out,
	       struct pm_fsck_result *res)
{
	struct fsck f = { .pool = pool, .repair = o->repair, .checksums = o->checksums,
			  .out = out, .res = res };
	unsigned long fixed = 0;
	unsigned round;
	int rc = 0;

	res->errors = 0;
	res->repaired = 0;
	if (pool->sb != pool->base && !pm_super_check(pool->base, pool->size, NULL, 0))
		pool->sb = pool->base; /* a journal replay mended the primary */
	for (round = 0; round < (o->repair ? MAX_ROUNDS : 1u); round++) {
		char *buf = NULL;
		size_t len = 0;
		bool last;

		f.held = NULL;
		if (o->repair && out) {
			f.held = open_memstream(&buf, &len);
			if (!f.held)
				return -ENOMEM;
		}
		rc = fsck_round(&f);
		fixed += f.nfix;
		/* a round that put a repair off (a contested block) is never
		 * the last one that could run */
		last = rc || (!f.nfix && !f.withheld) || round + 1 == (o->repair ? MAX_ROUNDS : 1u);
		if (f.held) {
			fclose(f.held);
			if (last && len)
				fwrite(buf, 1, len, out);
			free(buf);
			f.held = NULL;
		}
		if (last) {
			res->errors = fixed + (f.nerr - f.nfix);
			res->repaired = fixed;
			break;
		}
	}
	/* problems are left: the errors flag a repair cleared is set again */
	if (!rc && o->repair && f.errors_flag && res->errors != res->repaired)
		pm_super_set_errors(pool, f.errors_flag);
	/* checked and mended, nothing left: the pool is consistent. Mark it
	 * clean, as e2fsck does (the next mount needs no recovery to trust it) */
	if (!rc && o->repair && res->errors == res->repaired && pool->sb == pool->base) {
		bool dirty = false;
		if (!pool->sb->clean) {
			pool->sb->clean = 1;
			dirty = true;
			if (out)
				fprintf(out, "fsck.pinfs: superblock: marked clean\n");
		}
		if (dirty) {
			pool->sb->sb_csum = pm_super_csum(pool->sb);
			pm_persist(&pool->ops, pool->sb, sizeof(*pool->sb));
		}
	}
	return rc;
}

int pm_fsck(struct pm_pool *pool, bool repair, FILE *out, struct pm_fsck_result *res)
{
	struct pm_fsck_opts o = { .repair = repair };

	return pm_fsck_ex(pool, &o, out, res);
}

/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_fsck.c -- the checker (pmem/fsck.c) against images built by
 * the engine: a tree made through the engine API must check clean; each
 * deliberately broken copy of it must be reported (and, where fsck promises
 * it, repaired so that a second run is clean); and a few hundred randomly
 * mutated copies must never crash it, its repairs must never create new
 * problems, and any copy it passes must mount and work.
 *
 * Environment: FSCK_FUZZ_ITERS (default 400), FSCK_SEED (default: time),
 * CHECK_VERBOSE (print fsck's reports).
 */
#include <errno.h>
#include <linux/falloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "pmem/fs.h"
#include "pmem/fs_int.h"
#include "pmem/fsck.h"
#include "tests/unit/check.h"
#include "tests/unit/names.h"
#include "tests/unit/record.h"

#define POOL_SIZE (16ull << 20)

static uint8_t *clean_img;  /* the tree, cleanly unmounted */
static uint8_t *orphan_img; /* the tree while mounted, two unlinked files open */

/* inode numbers in the tree */
static struct {
	uint64_t d1, d2, d3, f1, f2, sl, sparse, chr, fifo, moved, o1, o2;
} ino;

static bool verbose;

/* ---- image helpers (trusted images only) --------------------------------- */

static uint8_t *img_copy(const uint8_t *src)
{
	uint8_t *p = aligned_alloc(PM_BLOCK_SIZE, POOL_SIZE);

	if (!p) {
		perror("aligned_alloc");
		exit(T_EXIT_FAIL);
	}
	if (src)
		memcpy(p, src, POOL_SIZE);
	return p;
}

static struct pm_super *sb_of(uint8_t *img)
{
	return (struct pm_super *)img;
}

static void *blk_of(uint8_t *img, uint64_t b)
{
	return img + b * PM_BLOCK_SIZE;
}

static struct pm_dinode *dino(uint8_t *img, uint64_t i)
{
	struct pm_super *sb = sb_of(img);

	return (struct pm_dinode *)blk_of(img, sb->itable_start + i / PM_INODES_PER_BLOCK) +
	       i % PM_INODES_PER_BLOCK;
}

static void resum(uint8_t *img)
{
	sb_of(img)->sb_csum = pm_super_csum(sb_of(img));
}

static bool bit_get(uint8_t *img, uint64_t b)
{
	uint8_t *bm = blk_of(img, sb_of(img)->bitmap_start);

	return (bm[b >> 3] >> (b & 7)) & 1;
}

static void bit_set(uint8_t *img, uint64_t b)
{
	uint8_t *bm = blk_of(img, sb_of(img)->bitmap_start);

	bm[b >> 3] |= (uint8_t)(1u << (b & 7));
}

/* The map node at @level on the path to file block @fblk (level == height:
 * the root); 0 if absent. */
static uint64_t map_node(uint8_t *img, const struct pm_dinode *d, uint64_t fblk, unsigned level)
{
	uint64_t blk = d->map_root;
	unsigned l;

	for (l = d->map_height; blk && l > level; l--)
		blk = ((uint64_t *)blk_of(img, blk))[(fblk >> (PM_MAP_SHIFT * (l - 1))) & 511];
	return blk;
}

static uint64_t map_get(uint8_t *img, const struct pm_dinode *d, uint64_t fblk)
{
	uint64_t leaf = map_node(img, d, fblk, 1);

	return leaf ? ((uint64_t *)blk_of(img, leaf))[fblk & 511] : 0;
}

static struct pm_dirent *find_dirent(uint8_t *img, uint64_t dir, const char *name)
{
	struct pm_dinode *d = dino(img, dir);
	uint64_t bi;

	for (bi = 0; bi < d->size / PM_BLOCK_SIZE; bi++) {
		uint8_t *b = blk_of(img, map_get(img, d, bi));
		unsigned s = 0;
		while (s < PM_DIR_SLOTS) {
			struct pm_dirent *de = (struct pm_dirent *)(b + s * PM_DIR_SLOT);
			if (!de->ino) {
				s++;
				continue;
			}
			if (de->name_len == strlen(name) && !memcmp(de->name, name, de->name_len))
				return de;
			s += de->nslots;
		}
	}
	return NULL;
}

/* A free slot in directory @dir's first block. */
static struct pm_dirent *free_dirent(uint8_t *img, uint64_t dir)
{
	uint8_t *b = blk_of(img, map_get(img, dino(img, dir), 0));
	unsigned s = 0;

	while (s < PM_DIR_SLOTS) {
		struct pm_dirent *de = (struct pm_dirent *)(b + s * PM_DIR_SLOT);
		if (!de->ino)
			return de;
		s += de->nslots;
	}
	return NULL;
}

static void put_dirent(struct pm_dirent *de, uint64_t target, const char *name, unsigned type)
{
	memset(de, 0, sizeof(*de));
	de->ino = target;
	de->name_len = (uint8_t)strlen(name);
	de->hash = pm_name_hash(name, de->name_len);
	de->type = (uint8_t)type;
	de->nslots = 1;
	memcpy(de->name, name, de->name_len);
}

/* ---- running fsck -------------------------------------------------------- */

/* fsck on @img as fsck.pinfs runs it (journal replay first, unless
 * @no_replay); the report goes to *text (caller frees). */
static bool verify_checksums; /* fsck --checksums */
static int exercise(uint8_t *img);

static int fsck_img_opt(uint8_t *img, bool repair, bool no_replay, struct pm_fsck_result *res,
			char **text)
{
	struct pm_fsck_opts o = { .repair = repair, .checksums = verify_checksums };
	struct pm_pool *pool;
	char err[512];
	size_t len;
	FILE *out;
	/* as fsck.pinfs: a corrupt primary superblock is replaced by the backup */
	int rc = pm_pool_open_mem_flags(img, POOL_SIZE, &noop_ops, PM_POOL_BACKUP_SB, &pool, err,
					sizeof(err));

	*text = NULL;
	if (rc) {
		if (verbose)
			fprintf(stderr, "pm_pool_open_mem: %s\n", err);
		return rc;
	}
	if (!no_replay && (pm_journal_recover(pool, NULL, 0) < 0 ||
			   pm_pool_reload_super(pool, NULL, 0))) {
		pm_pool_close(&pool);
		return -EUCLEAN;
	}
	out = open_memstream(text, &len);
	if (!out) {
		pm_pool_close(&pool);
		return -errno;
	}
	rc = pm_fsck_ex(pool, &o, out, res);
	fclose(out);
	pm_pool_close(&pool);
	if (verbose)
		fprintf(stderr, "--- fsck%s: %lu errors, %lu repaired\n%s", repair ? " --repair" : "",
			res->errors, res->repaired, *text);
	return rc;
}

static int fsck_img(uint8_t *img, bool repair, struct pm_fsck_result *res, char **text)
{
	return fsck_img_opt(img, repair, false, res, text);
}

static int expect_clean(uint8_t *img)
{
	struct pm_fsck_result r;
	char *text;

	CHECK_OK(fsck_img(img, false, &r, &text));
	if (r.errors)
		fprintf(stderr, "%s", text);
	CHECK_EQ(r.errors, 0);
	free(text);
	return T_EXIT_PASS;
}

/*
 * fsck must report problems on @img, one of them mentioning @what. With
 * @fixable a repair run fixes every one and the next run is clean; without,
 * problems remain after the repair run.
 */
static int expect_problem(uint8_t *img, const char *what, bool fixable)
{
	struct pm_fsck_result r, r2;
	char *text;

	CHECK_OK(fsck_img(img, false, &r, &text));
	CHECK_GT(r.errors, 0);
	CHECK_EQ(r.repaired, 0);
	CHECK_CONTAINS(text, what);
	free(text);

	CHECK_OK(fsck_img(img, true, &r2, &text));
	free(text);
	if (fixable)
		CHECK_EQ(r2.repaired, r2.errors);
	else
		CHECK_LT(r2.repaired, r2.errors);

	CHECK_OK(fsck_img(img, false, &r, &text));
	CHECK_EQ(r.errors, r2.errors - r2.repaired);
	if (!fixable)
		CHECK_CONTAINS(text, what);
	free(text);
	if (fixable) {
		/* repaired: the engine mounts it and works (on a copy: callers
		 * look at the repaired image) */
		uint8_t *copy = img_copy(img);
		int bad = exercise(copy);
		free(copy);
		CHECK_EQ(bad, 0);
	}
	return T_EXIT_PASS;
}

static const uint8_t *f1_pattern(void); /* the bytes of /f1 */

/* File @i of @img holds @len bytes @want from offset 0 (block aligned). */
static int file_holds(uint8_t *img, uint64_t i, const void *want, size_t len)
{
	struct pm_dinode *d = dino(img, i);
	size_t off;

	CHECK_UEQ(d->size, len);
	for (off = 0; off < len; off += PM_BLOCK_SIZE) {
		uint64_t b = map_get(img, d, off / PM_BLOCK_SIZE);
		size_t n = len - off < PM_BLOCK_SIZE ? len - off : PM_BLOCK_SIZE;
		CHECK_NE(b, 0);
		if (memcmp(blk_of(img, b), (const uint8_t *)want + off, n)) {
			fprintf(stderr, "inode %llu: file block %zu differs\n", (unsigned long long)i,
				off / PM_BLOCK_SIZE);
			return T_EXIT_FAIL;
		}
	}
	return T_EXIT_PASS;
}

/* The files a test did not break still hold their bytes. */
static int others_intact(uint8_t *img, bool f1_too)
{
	if (f1_too)
		CHECK_OK(file_holds(img, ino.f1, f1_pattern(), 100 * 1024));
	CHECK_OK(file_holds(img, ino.f2, "hello", 5));
	CHECK_EQ(dino(img, ino.f2)->nlink, 2);
	return T_EXIT_PASS;
}

/* ---- building the tree --------------------------------------------------- */

static ssize_t write_str(struct pm_fs *fs, const struct pm_cred *cr, struct pm_inode *ip,
			 uint64_t off, const void *buf, size_t len)
{
	struct iovec iov = { (void *)buf, len };

	return pm_write(fs, cr, ip, off, &iov, 1);
}

static int mk(struct pm_fs *fs, const struct pm_cred *cr, struct pm_inode *dir, const char *name,
	      mode_t mode, struct pm_inode **out)
{
	return pm_mknod(fs, cr, dir, name, mode, S_ISCHR(mode) ? makedev(1, 3) : 0, out);
}

static uint8_t f1_buf[100 * 1024]; /* what /f1 holds */

static const uint8_t *f1_pattern(void)
{
	return f1_buf;
}

/*
 * The tree (inode numbers in `ino`):
 *	/f1            100 KiB, xattr user.test
 *	/hard          second link to /d1/f2
 *	/sl            symlink -> d1/f2
 *	/null          character device 1:3
 *	/d1/           xattr user.dir
 *	/d1/f2         "hello"
 *	/d1/sparse     bytes at 0 and at 8 GiB: a map of height 3
 *	/d1/d2/fifo
 *	/d3/           300 long names, every 7th unlinked: several blocks
 *	/d3/moved/     made in /d1, renamed here
 * plus, in orphan_img only, two unlinked files still open (/o1, /d1/d2/o2).
 */
static int build_images(void)
{
	struct pm_cred cr = { getuid(), getgid(), 0, NULL, 0 };
	struct pm_mkfs_opts o = { .size = POOL_SIZE };
	struct pm_inode *root, *d1, *d2, *d3, *f1, *f2, *sl, *sp, *chr, *fifo, *mv, *o1, *o2, *ip;
	struct pm_pool *pool;
	struct pm_fs *fs;
	uint8_t *buf = f1_buf;
	char err[256], name[64];
	uint8_t *img = img_copy(NULL);
	int i;

	for (i = 0; i < (int)sizeof(f1_buf); i++)
		buf[i] = (uint8_t)(i * 7 + 1);
	CHECK_OK(pm_mkfs_mem(img, POOL_SIZE, &o, &noop_ops));
	CHECK_OK(pm_pool_open_mem(img, POOL_SIZE, &noop_ops, &pool, err, sizeof(err)));
	CHECK_OK(pm_fs_mount(pool, &fs, err, sizeof(err)));
	CHECK_OK(pm_iget(fs, PM_ROOT_INO, &root));

	CHECK_OK(mk(fs, &cr, root, "d1", S_IFDIR | 0755, &d1));
	CHECK_OK(mk(fs, &cr, d1, "d2", S_IFDIR | 0755, &d2));
	CHECK_OK(mk(fs, &cr, root, "d3", S_IFDIR | 0755, &d3));
	CHECK_OK(mk(fs, &cr, root, "f1", S_IFREG | 0644, &f1));
	CHECK_EQ(write_str(fs, &cr, f1, 0, buf, sizeof(f1_buf)), sizeof(f1_buf));
	CHECK_OK(pm_setxattr(fs, f1, "user.test", "value", 5, 0));
	CHECK_OK(pm_setxattr(fs, d1, "user.dir", "x", 1, XATTR_CREATE));
	CHECK_OK(mk(fs, &cr, d1, "f2", S_IFREG | 0644, &f2));
	CHECK_EQ(write_str(fs, &cr, f2, 0, "hello", 5), 5);
	CHECK_OK(pm_link(fs, f2, root, "hard"));
	CHECK_OK(pm_symlink(fs, &cr, root, "sl", "d1/f2", &sl));
	CHECK_OK(mk(fs, &cr, d1, "sparse", S_IFREG | 0600, &sp));
	CHECK_EQ(write_str(fs, &cr, sp, 0, buf, 100), 100);
	CHECK_EQ(write_str(fs, &cr, sp, 8ull << 30, buf, 4096), 4096);
	CHECK_OK(mk(fs, &cr, root, "null", S_IFCHR | 0600, &chr));
	CHECK_OK(mk(fs, &cr, d2, "fifo", S_IFIFO | 0600, &fifo));
	for (i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "a-rather-long-file-name-number-%04d", i);
		CHECK_OK(mk(fs, &cr, d3, name, S_IFREG | 0644, &ip));
		pm_iput(fs, ip);
	}
	for (i = 0; i < 300; i += 7) {
		snprintf(name, sizeof(name), "a-rather-long-file-name-number-%04d", i);
		CHECK_OK(pm_unlink(fs, d3, name));
	}
	CHECK_OK(mk(fs, &cr, d1, "tomove", S_IFDIR | 0700, &mv));
	CHECK_OK(pm_rename(fs, d1, "tomove", d3, "moved", 0));
	CHECK_OK(mk(fs, &cr, root, "gone", S_IFDIR | 0700, &ip));
	pm_iput(fs, ip);
	CHECK_OK(pm_rmdir(fs, root, "gone"));

	CHECK_OK(mk(fs, &cr, root, "o1", S_IFREG | 0644, &o1));
	CHECK_EQ(write_str(fs, &cr, o1, 0, buf, 3 * 4096), 3 * 4096);
	CHECK_OK(mk(fs, &cr, d2, "o2", S_IFREG | 0644, &o2));
	CHECK_OK(pm_unlink(fs, root, "o1"));
	CHECK_OK(pm_unlink(fs, d2, "o2"));

	ino.d1 = pm_ino(d1);
	ino.d2 = pm_ino(d2);
	ino.d3 = pm_ino(d3);
	ino.f1 = pm_ino(f1);
	ino.f2 = pm_ino(f2);
	ino.sl = pm_ino(sl);
	ino.sparse = pm_ino(sp);
	ino.chr = pm_ino(chr);
	ino.fifo = pm_ino(fifo);
	ino.moved = pm_ino(mv);
	ino.o1 = pm_ino(o1);
	ino.o2 = pm_ino(o2);

	/* a crash image: the pool as it is while the files are open */
	orphan_img = img_copy(img);

	pm_iput(fs, o1);
	pm_iput(fs, o2);
	pm_iput(fs, d1);
	pm_iput(fs, d2);
	pm_iput(fs, d3);
	pm_iput(fs, f1);
	pm_iput(fs, f2);
	pm_iput(fs, sl);
	pm_iput(fs, sp);
	pm_iput(fs, chr);
	pm_iput(fs, fifo);
	pm_iput(fs, mv);
	pm_iput(fs, root);
	pm_fs_unmount(&fs);
	CHECK(fs == NULL);
	pm_pool_close(&pool);
	clean_img = img;

	/* the tree is what the corruption tests assume */
	CHECK_EQ(dino(clean_img, ino.f2)->nlink, 2);
	CHECK_EQ(dino(clean_img, ino.sparse)->map_height, 3);
	CHECK_GE(dino(clean_img, ino.d3)->size, 4 * PM_BLOCK_SIZE);
	CHECK_EQ(dino(clean_img, ino.o1)->mode, 0);
	CHECK_NE(sb_of(orphan_img)->orphan_head, 0);
	return T_EXIT_PASS;
}

/* ---- the engine on a pool fsck passed ------------------------------------ */

static int read_some(struct pm_fs *fs, struct pm_inode *ip, uint64_t off, size_t len)
{
	struct iovec iov[16];
	size_t bytes;
	int n = pm_read_begin(fs, ip, off, len, iov, 16, &bytes);

	CHECK_GE(n, 0);
	if (n > 0) {
		volatile uint8_t sum = 0;
		int i;
		size_t j;
		for (i = 0; i < n; i++)
			for (j = 0; j < iov[i].iov_len; j += 512)
				sum += ((uint8_t *)iov[i].iov_base)[j];
		(void)sum;
	}
	/* pm_read_begin keeps the data lock at EOF too (see the report) */
	pm_read_end(fs, ip);
	return T_EXIT_PASS;
}

/* Reads everything reachable from @dir through the engine. */
static int walk_tree(struct pm_fs *fs, struct pm_inode *dir, int depth)
{
	struct names ns = { 0 };
	size_t k;

	CHECK_OK(pm_readdir(fs, dir, 0, names_collect, &ns));
	for (k = 0; k < ns.count; k++) {
		struct pm_inode *ip;
		struct stat st;
		char buf[PM_SYMLINK_MAX + 1];
		ssize_t xl;

		CHECK_OK(pm_lookup(fs, dir, ns.n[k], &ip));
		pm_stat(fs, ip, &st);
		if (S_ISDIR(st.st_mode) && depth < 16 && walk_tree(fs, ip, depth + 1))
			return T_EXIT_FAIL;
		if (S_ISREG(st.st_mode)) {
			if (read_some(fs, ip, 0, 256 << 10))
				return T_EXIT_FAIL;
			if (st.st_size > 65536 && read_some(fs, ip, (uint64_t)st.st_size - 65536, 65536))
				return T_EXIT_FAIL;
		}
		if (S_ISLNK(st.st_mode))
			CHECK_GE(pm_readlink(fs, ip, buf, sizeof(buf)), 1);
		xl = pm_listxattr(fs, ip, NULL, 0);
		CHECK_GE(xl, 0);
		if (xl > 0) {
			char *list = malloc((size_t)xl), *p;
			CHECK(list);
			CHECK_EQ(pm_listxattr(fs, ip, list, (size_t)xl), xl);
			for (p = list; p < list + xl; p += strlen(p) + 1)
				CHECK_GE(pm_getxattr(fs, ip, p, NULL, 0), 0);
			free(list);
		}
		pm_iput(fs, ip);
	}
	names_free(&ns);
	return T_EXIT_PASS;
}

/* Mounts @img, reads the whole tree, makes and removes a few things,
 * unmounts: fsck must find it clean again. */
static int exercise(uint8_t *img)
{
	struct pm_cred cr = { getuid(), getgid(), 0, NULL, 0 };
	struct pm_inode *root, *f, *d;
	struct pm_pool *pool;
	struct pm_fs *fs;
	char err[256], buf[10000];

	memset(buf, 'x', sizeof(buf));
	CHECK_OK(pm_pool_open_mem(img, POOL_SIZE, &noop_ops, &pool, err, sizeof(err)));
	if (pm_fs_mount(pool, &fs, err, sizeof(err))) {
		fprintf(stderr, "mount of a pool fsck passed failed: %s\n", err);
		return T_EXIT_FAIL;
	}
	CHECK_OK(pm_iget(fs, PM_ROOT_INO, &root));
	if (walk_tree(fs, root, 0))
		return T_EXIT_FAIL;
	CHECK_OK(pm_mknod(fs, &cr, root, "exercise-file", S_IFREG | 0644, 0, &f));
	CHECK_EQ(write_str(fs, &cr, f, 0, buf, sizeof(buf)), sizeof(buf));
	CHECK_OK(pm_mknod(fs, &cr, root, "exercise-dir", S_IFDIR | 0755, 0, &d));
	CHECK_OK(pm_rename(fs, root, "exercise-file", d, "inside", 0));
	CHECK_OK(pm_unlink(fs, d, "inside"));
	CHECK_OK(pm_rmdir(fs, root, "exercise-dir"));
	pm_iput(fs, f);
	pm_iput(fs, d);
	pm_iput(fs, root);
	pm_fs_unmount(&fs);
	pm_pool_close(&pool);
	return expect_clean(img);
}

/* ---- cases --------------------------------------------------------------- */

static int test_fresh_pool_is_clean(void)
{
	struct pm_mkfs_opts o = { .size = POOL_SIZE };
	uint8_t *img = img_copy(NULL);

	CHECK_OK(pm_mkfs_mem(img, POOL_SIZE, &o, &noop_ops));
	if (expect_clean(img))
		return T_EXIT_FAIL;
	free(img);
	return T_EXIT_PASS;
}

static int test_engine_built_tree_is_clean(void)
{
	struct pm_fsck_result r;
	uint8_t *img = img_copy(clean_img);
	char *text;

	if (expect_clean(img))
		return T_EXIT_FAIL;
	CHECK_OK(fsck_img(img, true, &r, &text));
	CHECK_EQ(r.errors, 0);
	CHECK_EQ(r.repaired, 0);
	CHECK(memcmp(img, clean_img, POOL_SIZE) == 0); /* nothing to repair: nothing written */
	free(text);
	if (exercise(img))
		return T_EXIT_FAIL;
	free(img);
	return T_EXIT_PASS;
}

static int test_open_unlinked_files_are_clean_orphans(void)
{
	uint8_t *img = img_copy(orphan_img);

	CHECK(dino(img, ino.o1)->flags & PM_IFL_ORPHAN);
	CHECK(dino(img, ino.o2)->flags & PM_IFL_ORPHAN);
	if (expect_clean(img))
		return T_EXIT_FAIL;
	/* the next mount frees them; the result is clean too */
	if (exercise(img))
		return T_EXIT_FAIL;
	CHECK_EQ(dino(img, ino.o1)->mode, 0);
	CHECK_EQ(dino(img, ino.o2)->mode, 0);
	free(img);
	return T_EXIT_PASS;
}

static int test_leaked_block_is_repaired(void)
{
	uint8_t *img = img_copy(clean_img);
	uint64_t b = sb_of(img)->nblocks - 1;

	while (bit_get(img, b))
		b--;
	bit_set(img, b);
	if (expect_problem(img, "leaked", true))
		return T_EXIT_FAIL;
	CHECK(!bit_get(img, b));
	CHECK_EQ(sb_of(img)->sb_csum, pm_super_csum(sb_of(img)));
	if (exercise(img))
		return T_EXIT_FAIL;
	free(img);
	return T_EXIT_PASS;
}

/* ---- a block two files name, a free block, a named orphan (issue 16) ----- */

/*
 * users_img: two files of different owners whose every 8-byte word says
 * whose block it is and which (never a valid block number), and a deleted
 * third file whose bytes are still in its free blocks:
 *	/a   uid 1001, A_BLOCKS blocks with a hole at A_HOLE: a map of height 2
 *	/b   uid 1002, B_BLOCKS blocks: a map of height 2
 *	/c   uid 1003, C_BLOCKS blocks, unlinked: free, its bytes left there
 * /a is made first: it has the lower inode number, which the old rule gave
 * every block two files name.
 */
#define A_BLOCKS 600u
#define A_HOLE 100u
#define B_BLOCKS 530u
#define C_BLOCKS 3u
#define WORDS (PM_BLOCK_SIZE / 8)

static uint8_t *users_img;
static uint64_t ua, ub;		    /* inode numbers of /a and /b */
static uint64_t c_blocks[C_BLOCKS]; /* where /c's bytes are */

static uint64_t word_of(char who, uint64_t fblk)
{
	return 0xfeed000000000000ull | ((uint64_t)(unsigned char)who << 32) | fblk;
}

static char owner_of_word(uint64_t w)
{
	return (w >> 48) == 0xfeed ? (char)((w >> 32) & 0xff) : 0;
}

static int write_words(struct pm_fs *fs, const struct pm_cred *cr, struct pm_inode *ip, char who,
		       uint64_t from, uint64_t to)
{
	static uint64_t blk[WORDS];
	uint64_t fb;
	unsigned i;

	for (fb = from; fb < to; fb++) {
		for (i = 0; i < WORDS; i++)
			blk[i] = word_of(who, fb);
		CHECK_EQ(write_str(fs, cr, ip, fb * PM_BLOCK_SIZE, blk, PM_BLOCK_SIZE), PM_BLOCK_SIZE);
	}
	return T_EXIT_PASS;
}

static int build_users_image(void)
{
	struct pm_cred cr = { getuid(), getgid(), 0, NULL, 0 };
	struct pm_mkfs_opts o = { .size = POOL_SIZE };
	struct pm_inode *root, *a, *b, *c;
	struct pm_pool *pool;
	struct pm_fs *fs;
	uint8_t *img = img_copy(NULL);
	char err[256];
	unsigned i;

	CHECK_OK(pm_mkfs_mem(img, POOL_SIZE, &o, &noop_ops));
	CHECK_OK(pm_pool_open_mem(img, POOL_SIZE, &noop_ops, &pool, err, sizeof(err)));
	CHECK_OK(pm_fs_mount(pool, &fs, err, sizeof(err)));
	CHECK_OK(pm_iget(fs, PM_ROOT_INO, &root));
	CHECK_OK(mk(fs, &cr, root, "a", S_IFREG | 0600, &a));
	CHECK_OK(mk(fs, &cr, root, "b", S_IFREG | 0600, &b));
	CHECK_OK(mk(fs, &cr, root, "c", S_IFREG | 0600, &c));
	if (write_words(fs, &cr, a, 'A', 0, A_HOLE) ||
	    write_words(fs, &cr, a, 'A', A_HOLE + 1, A_BLOCKS) ||
	    write_words(fs, &cr, b, 'B', 0, B_BLOCKS) || write_words(fs, &cr, c, 'C', 0, C_BLOCKS))
		return T_EXIT_FAIL;
	for (i = 0; i < C_BLOCKS; i++)
		c_blocks[i] = pm_bmap_get(fs, &c->d, i, false);
	ua = pm_ino(a);
	ub = pm_ino(b);
	CHECK_OK(pm_unlink(fs, root, "c"));
	pm_iput(fs, c);
	pm_iput(fs, a);
	pm_iput(fs, b);
	pm_iput(fs, root);
	pm_fs_unmount(&fs);
	pm_pool_close(&pool);
	dino(img, ua)->uid = 1001;
	dino(img, ub)->uid = 1002;
	users_img = img;

	CHECK_LT(ua, ub);
	CHECK_EQ(dino(img, ua)->map_height, 2);
	CHECK_EQ(dino(img, ub)->map_height, 2);
	CHECK_EQ(map_get(img, dino(img, ua), A_HOLE), 0);
	for (i = 0; i < C_BLOCKS; i++) {
		CHECK(!bit_get(img, c_blocks[i]));
		CHECK_UEQ(((uint64_t *)blk_of(img, c_blocks[i]))[0], word_of('C', i));
	}
	return expect_clean(img);
}

/* Runs fsck --repair on @img: everything must be repaired; the report goes
 * to *text (caller frees). A second run must be clean. */
static int repair_all(uint8_t *img, char **text)
{
	struct pm_fsck_result r;
	char *t2;

	CHECK_OK(fsck_img(img, true, &r, text));
	CHECK_GT(r.errors, 0);
	if (r.repaired != r.errors)
		fprintf(stderr, "%s", *text);
	CHECK_UEQ(r.repaired, r.errors);
	CHECK_OK(fsck_img(img, false, &r, &t2));
	if (r.errors)
		fprintf(stderr, "%s", t2);
	CHECK_EQ(r.errors, 0);
	free(t2);
	return T_EXIT_PASS;
}

/* Reads @nblk blocks of file @i of @img through the engine (a checked
 * mount, as users get it) into @out. */
static int engine_read(uint8_t *img, uint64_t i, uint64_t nblk, uint64_t *out)
{
	struct pm_pool *pool;
	struct pm_inode *ip;
	struct pm_fs *fs;
	char err[256];
	uint64_t off = 0, len = nblk * PM_BLOCK_SIZE;

	memset(out, 0x55, len);
	CHECK_OK(pm_pool_open_mem(img, POOL_SIZE, &noop_ops, &pool, err, sizeof(err)));
	if (pm_fs_mount(pool, &fs, err, sizeof(err))) {
		fprintf(stderr, "mount of a repaired pool failed: %s\n", err);
		return T_EXIT_FAIL;
	}
	CHECK_OK(pm_iget(fs, i, &ip));
	while (off < len) {
		struct iovec iov[16];
		size_t bytes, k;
		int n = pm_read_begin(fs, ip, off, len - off, iov, 16, &bytes);

		CHECK_GT(n, 0);
		for (k = 0; k < (size_t)n; k++) {
			memcpy((uint8_t *)out + off, iov[k].iov_base, iov[k].iov_len);
			off += iov[k].iov_len;
		}
		pm_read_end(fs, ip);
	}
	pm_iput(fs, ip);
	pm_fs_unmount(&fs);
	pm_pool_close(&pool);
	return T_EXIT_PASS;
}

/* File block @fb as read (@w): its owner's own words, or zeros if @hole_ok */
static int block_reads(const uint64_t *w, char who, uint64_t fb, bool hole_ok)
{
	unsigned i;
	bool own = true, zero = true;

	for (i = 0; i < WORDS; i++) {
		own = own && w[i] == word_of(who, fb);
		zero = zero && !w[i];
	}
	if (own || (hole_ok && zero))
		return T_EXIT_PASS;
	fprintf(stderr, "file %c, block %llu: reads 0x%016llx, not %s\n", who,
		(unsigned long long)fb, (unsigned long long)w[0], hole_ok ? "its own or zeros" : "its own");
	return T_EXIT_FAIL;
}

/* No word of @nblk blocks read by file @who belongs to another file. */
static int reads_only_own(const uint64_t *w, uint64_t nblk, char who)
{
	uint64_t i;

	for (i = 0; i < nblk * WORDS; i++)
		if (owner_of_word(w[i]) && owner_of_word(w[i]) != who) {
			fprintf(stderr, "file %c reads file %c's bytes (0x%016llx) at block %llu\n", who,
				owner_of_word(w[i]), (unsigned long long)w[i],
				(unsigned long long)(i / WORDS));
			return T_EXIT_FAIL;
		}
	return T_EXIT_PASS;
}

/* /b reads all its bytes, except the blocks in [lost_from, lost_to), which
 * read zeros; /a reads its own bytes or zeros, and zeros in [hole_from,
 * hole_to) (besides its hole); neither reads another file's bytes. */
static int users_after_repair(uint8_t *img, uint64_t lost_from, uint64_t lost_to,
			      uint64_t hole_from, uint64_t hole_to)
{
	uint64_t *buf = malloc((size_t)A_BLOCKS * PM_BLOCK_SIZE), fb;
	int bad = T_EXIT_PASS;

	CHECK(buf);
	if (engine_read(img, ub, B_BLOCKS, buf))
		return T_EXIT_FAIL;
	for (fb = 0; fb < B_BLOCKS && !bad; fb++) {
		bool lost = fb >= lost_from && fb < lost_to;
		bad = block_reads(buf + fb * WORDS, lost ? 0 : 'B', fb, lost);
	}
	if (!bad)
		bad = reads_only_own(buf, B_BLOCKS, 'B');
	if (!bad)
		bad = engine_read(img, ua, A_BLOCKS, buf);
	for (fb = 0; fb < A_BLOCKS && !bad; fb++) {
		bool hole = fb == A_HOLE || (fb >= hole_from && fb < hole_to);
		bad = block_reads(buf + fb * WORDS, hole ? 0 : 'A', fb, hole);
	}
	if (!bad)
		bad = reads_only_own(buf, A_BLOCKS, 'A');
	free(buf);
	return bad;
}

/* /a's level-2 pointer names /b's second leaf: /a's map no longer holds
 * the blocks it counts, /b's does. /b keeps its node; /a loses the file
 * blocks of that pointer (holes), and reads none of /b's bytes. */
static int test_shared_map_node_goes_to_the_consistent_owner(void)
{
	uint8_t *img = img_copy(users_img);
	uint64_t *aroot = blk_of(img, dino(img, ua)->map_root);
	uint64_t bleaf = ((uint64_t *)blk_of(img, dino(img, ub)->map_root))[1];
	char *text, want[96];

	CHECK_NE(bleaf, 0);
	aroot[1] = bleaf;
	if (repair_all(img, &text))
		return T_EXIT_FAIL;
	snprintf(want, sizeof(want), "inode %llu keeps it", (unsigned long long)ub);
	CHECK_CONTAINS(text, want);
	snprintf(want, sizeof(want), "dropped from inode %llu (it counts", (unsigned long long)ua);
	CHECK_CONTAINS(text, want);
	free(text);
	CHECK_UEQ(((uint64_t *)blk_of(img, dino(img, ub)->map_root))[1], bleaf);
	CHECK_EQ(aroot[1], 0);
	if (users_after_repair(img, 0, 0, PM_MAP_FANOUT, A_BLOCKS))
		return T_EXIT_FAIL;
	if (exercise(img))
		return T_EXIT_FAIL;
	free(img);
	return T_EXIT_PASS;
}

/* /a's pointer at its hole names /b's block 7: /a now holds one block more
 * than it counts. /b keeps it; /a's hole stays a hole. */
static int test_shared_data_block_goes_to_the_consistent_owner(void)
{
	uint8_t *img = img_copy(users_img);
	uint64_t *leaf = blk_of(img, map_node(img, dino(img, ua), A_HOLE, 1));
	uint64_t b7 = map_get(img, dino(img, ub), 7);
	char *text, want[64];

	CHECK_EQ(leaf[A_HOLE], 0);
	leaf[A_HOLE] = b7;
	if (repair_all(img, &text))
		return T_EXIT_FAIL;
	snprintf(want, sizeof(want), "inode %llu keeps it", (unsigned long long)ub);
	CHECK_CONTAINS(text, want);
	free(text);
	CHECK_EQ(leaf[A_HOLE], 0);
	CHECK_UEQ(map_get(img, dino(img, ub), 7), b7);
	if (users_after_repair(img, 0, 0, 0, 0))
		return T_EXIT_FAIL;
	free(img);
	return T_EXIT_PASS;
}

/* /a's pointer to its block 5 names /b's block 7 instead: both maps hold
 * what they count, so nothing says whose the block is. Neither keeps it
 * (both read zeros there), and the report says so. The old rule gave it
 * to /a, the lower inode, which then read /b's bytes. */
static int test_block_no_structure_vouches_for_goes_to_neither(void)
{
	uint8_t *img = img_copy(users_img);
	uint64_t *leaf = blk_of(img, map_node(img, dino(img, ua), 5, 1));
	uint64_t b7 = map_get(img, dino(img, ub), 7);
	char *text;

	leaf[5] = b7;
	if (repair_all(img, &text))
		return T_EXIT_FAIL;
	CHECK_CONTAINS(text, "dropped from both: no structure vouches for it");
	CHECK_CONTAINS(text, "its pointer may have moved there");
	free(text);
	CHECK_EQ(leaf[5], 0);
	CHECK_EQ(map_get(img, dino(img, ub), 7), 0);
	if (users_after_repair(img, 7, 8, 5, 6))
		return T_EXIT_FAIL;
	free(img);

	/* the engine-built tree: /f1's block 1 names /d1/f2's only block */
	img = img_copy(clean_img);
	leaf = blk_of(img, map_node(img, dino(img, ino.f1), 1, 1));
	b7 = map_get(img, dino(img, ino.f2), 0);
	leaf[1] = b7;
	if (expect_problem(img, "is used twice", true))
		return T_EXIT_FAIL;
	CHECK_EQ(leaf[1], 0);
	CHECK_EQ(map_get(img, dino(img, ino.f2), 0), 0);
	CHECK(memcmp(blk_of(img, leaf[2]), f1_pattern() + 2 * PM_BLOCK_SIZE, PM_BLOCK_SIZE) == 0);
	free(img);
	return T_EXIT_PASS;
}

/* /a's level-2 pointer names /b's data block 3, which /a's walk reads as a
 * map node full of pointers outside the pool. The old repair "mended" that
 * node, zeroing /b's block, before anyone asked whose it was. */
static int test_repair_never_writes_into_a_block_another_file_owns(void)
{
	uint8_t *img = img_copy(users_img);
	uint64_t *aroot = blk_of(img, dino(img, ua)->map_root);
	uint64_t b3 = map_get(img, dino(img, ub), 3);
	char *text;

	aroot[1] = b3;
	if (repair_all(img, &text))
		return T_EXIT_FAIL;
	free(text);
	CHECK_EQ(aroot[1], 0);
	CHECK_UEQ(map_get(img, dino(img, ub), 3), b3);
	if (users_after_repair(img, 0, 0, PM_MAP_FANOUT, A_BLOCKS))
		return T_EXIT_FAIL;
	free(img);
	return T_EXIT_PASS;
}

/* A pointer to a free block that still holds a deleted file's bytes (/c's):
 * moved there from /a's block 5 (which is left leaked), or put into /a's
 * hole (a block more than /a counts). Either way the pointer is dropped:
 * the old repair marked the block in use and /a read /c's bytes. */
static int test_pointer_into_a_deleted_files_block_is_dropped(void)
{
	uint8_t *img = img_copy(users_img);
	uint64_t *leaf = blk_of(img, map_node(img, dino(img, ua), 0, 1));
	char *text;

	leaf[5] = c_blocks[0];
	if (repair_all(img, &text))
		return T_EXIT_FAIL;
	CHECK_CONTAINS(text, "its pointer may have moved there");
	free(text);
	CHECK_EQ(leaf[5], 0);
	CHECK(!bit_get(img, c_blocks[0]));
	if (users_after_repair(img, 0, 0, 5, 6))
		return T_EXIT_FAIL;
	free(img);

	img = img_copy(users_img);
	leaf = blk_of(img, map_node(img, dino(img, ua), 0, 1));
	leaf[A_HOLE] = c_blocks[1];
	if (repair_all(img, &text))
		return T_EXIT_FAIL;
	CHECK_CONTAINS(text, "the pointer is dropped (inode");
	free(text);
	CHECK_EQ(leaf[A_HOLE], 0);
	if (users_after_repair(img, 0, 0, 0, 0))
		return T_EXIT_FAIL;
	free(img);
	return T_EXIT_PASS;
}

/* /b's pointer to its second leaf is lost (that leaf is leaked now, still
 * naming /b's blocks), and /a's pointer to its block 5 names /b's block
 * 520 instead: /a's counts are right and no block is named twice. The
 * leaked leaf and /a's own leaked block 5 say that /a's pointer may have
 * moved: a forced mount refuses /a (it served /b's bytes as /a's), and
 * --repair drops the pointer (it left it to /a). */
static int test_a_pointer_moved_onto_a_block_its_owner_lost(void)
{
	uint8_t *img = img_copy(users_img);
	uint64_t *broot = blk_of(img, dino(img, ub)->map_root);
	uint64_t *aleaf = blk_of(img, map_node(img, dino(img, ua), 5, 1));
	uint64_t b520 = map_get(img, dino(img, ub), 520), bytes = 0;
	struct pm_pool *pool;
	struct pm_inode *ip;
	struct pm_fs *fs;
	char err[512], *text;
	int rc;

	broot[1] = 0;
	aleaf[5] = b520;
	CHECK_OK(pm_pool_open_mem(img, POOL_SIZE, &noop_ops, &pool, err, sizeof(err)));
	CHECK_OK(pm_fs_mount_flags(pool, PM_MOUNT_FORCE, &fs, err, sizeof(err)));
	rc = pm_iget(fs, ua, &ip);
	if (!rc) {
		struct iovec iov[2];
		size_t n;
		int k = pm_read_begin(fs, ip, 5 * PM_BLOCK_SIZE, PM_BLOCK_SIZE, iov, 2, &n);
		if (k > 0)
			memcpy(&bytes, iov[0].iov_base, sizeof(bytes));
		if (k >= 0)
			pm_read_end(fs, ip);
		pm_iput(fs, ip);
	}
	pm_fs_unmount(&fs);
	pm_pool_close(&pool);
	if (bytes == word_of('B', 520)) {
		fprintf(stderr, "a forced mount serves /b's block 520 as /a's block 5\n");
		return T_EXIT_FAIL;
	}
	CHECK_EQ(rc, -EUCLEAN);

	memcpy(img, users_img, POOL_SIZE);
	broot[1] = 0;
	aleaf[5] = b520;
	if (repair_all(img, &text))
		return T_EXIT_FAIL;
	CHECK_CONTAINS(text, "a leaked map node");
	free(text);
	CHECK_EQ(aleaf[5], 0);
	if (users_after_repair(img, PM_MAP_FANOUT, B_BLOCKS, 5, 6))
		return T_EXIT_FAIL;
	free(img);
	return T_EXIT_PASS;
}

/* A counter out of range in both superblock copies, both checksums valid:
 * the mount refuses the pool naming the repair, and --repair recomputes
 * the counter (and rewrites the backup) instead of giving up. */
static int test_out_of_range_counters_in_both_superblocks_are_recomputed(void)
{
	static const struct {
		size_t off;
		const char *what;
	} cases[] = {
		{ offsetof(struct pm_super, free_inodes), "free inodes, but" },
		{ offsetof(struct pm_super, free_blocks), "free blocks, but the bitmap has" },
		{ offsetof(struct pm_super, orphan_head), "past the inode table" },
	};
	unsigned k;

	for (k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		uint8_t *img = img_copy(clean_img);
		struct pm_super *sb = sb_of(img), *bk = pm_backup_ptr(img, sb);
		uint64_t v = cases[k].off == offsetof(struct pm_super, free_blocks) ? sb->nblocks
										       : sb->ninodes + 5;
		struct pm_pool *pool;
		char err[512];

		memcpy((uint8_t *)sb + cases[k].off, &v, sizeof(v));
		memcpy((uint8_t *)bk + cases[k].off, &v, sizeof(v));
		resum(img);
		bk->sb_csum = pm_super_csum(bk);
		CHECK(pm_pool_open_mem(img, POOL_SIZE, &noop_ops, &pool, err, sizeof(err)) == -EUCLEAN);
		CHECK_CONTAINS(err, "fsck.pinfs --repair recomputes them");
		if (expect_problem(img, cases[k].what, true))
			return T_EXIT_FAIL;
		CHECK_OK(pm_super_check(sb, POOL_SIZE, err, sizeof(err)));
		CHECK_OK(pm_super_check(bk, POOL_SIZE, err, sizeof(err)));
		CHECK(memcmp((uint8_t *)bk + cases[k].off, (uint8_t *)sb + cases[k].off, 8) == 0);
		free(img);
	}
	return T_EXIT_PASS;
}

/* /o1 is on the orphan list (unlinked while open) but a directory entry
 * names it again. A forced mount must not free it: the old one did, and the
 * next create took its inode and blocks, under the old name. The mount
 * keeps it with the link count its entries give; its name reads its bytes
 * however many files are made after. */
static int test_forced_mount_keeps_an_orphan_a_directory_names(void)
{
	struct pm_cred cr = { getuid(), getgid(), 0, NULL, 0 };
	uint8_t *img = img_copy(orphan_img), buf[10000];
	struct pm_dirent *de = free_dirent(img, PM_ROOT_INO);
	struct pm_inode *root, *ip, *nf;
	struct pm_pool *pool;
	struct pm_fs *fs;
	struct stat st;
	char err[512], name[32];
	int k, pass;

	CHECK(de);
	CHECK(dino(img, ino.o1)->flags & PM_IFL_ORPHAN);
	CHECK_EQ(dino(img, ino.o1)->nlink, 0);
	put_dirent(de, ino.o1, "o1-again", pm_dtype(S_IFREG));
	dino(img, PM_ROOT_INO)->nentries++;
	memset(buf, 'n', sizeof(buf));

	CHECK_OK(pm_pool_open_mem(img, POOL_SIZE, &noop_ops, &pool, err, sizeof(err)));
	CHECK(pm_fs_mount(pool, &fs, err, sizeof(err)) == -EUCLEAN); /* the check refuses it */
	CHECK_OK(pm_fs_mount_flags(pool, PM_MOUNT_FORCE, &fs, err, sizeof(err)));
	CHECK_OK(pm_iget(fs, PM_ROOT_INO, &root));
	CHECK_OK(pm_lookup(fs, root, "o1-again", &ip));
	CHECK_UEQ(pm_ino(ip), ino.o1);
	for (pass = 0; pass < 2; pass++) {
		struct iovec iov[8];
		size_t bytes, off = 0;
		int n, i;

		pm_stat(fs, ip, &st);
		CHECK_EQ(st.st_nlink, 1);
		CHECK_EQ(st.st_size, 3 * PM_BLOCK_SIZE);
		n = pm_read_begin(fs, ip, 0, 3 * PM_BLOCK_SIZE, iov, 8, &bytes);
		CHECK_GT(n, 0);
		CHECK_UEQ(bytes, 3 * PM_BLOCK_SIZE);
		for (i = 0; i < n; i++) {
			if (memcmp(iov[i].iov_base, f1_pattern() + off, iov[i].iov_len)) {
				fprintf(stderr, "o1-again, pass %d: not o1's bytes at %zu\n", pass, off);
				pm_read_end(fs, ip);
				return T_EXIT_FAIL;
			}
			off += iov[i].iov_len;
		}
		pm_read_end(fs, ip);
		/* new files take what is free: never o1's inode or blocks */
		for (k = 0; pass == 0 && k < 4; k++) {
			snprintf(name, sizeof(name), "new-%d", k);
			CHECK_OK(mk(fs, &cr, root, name, S_IFREG | 0644, &nf));
			CHECK_NE(pm_ino(nf), ino.o1);
			CHECK_EQ(write_str(fs, &cr, nf, 0, buf, sizeof(buf)), sizeof(buf));
			pm_iput(fs, nf);
		}
	}
	pm_iput(fs, ip);
	pm_iput(fs, root);
	pm_fs_unmount(&fs);
	pm_pool_close(&pool);
	/* what the mount did is what fsck --repair does: the pool is clean */
	if (expect_clean(img))
		return T_EXIT_FAIL;
	free(img);
	return T_EXIT_PASS;
}

static int test_wrong_link_count_is_repaired(void)
{
	uint8_t *img = img_copy(clean_img);

	dino(img, ino.f2)->nlink = 5;
	if (expect_problem(img, "link count 5, but 2 directory entries name it", true))
		return T_EXIT_FAIL;
	CHECK_EQ(dino(img, ino.f2)->nlink, 2);
	free(img);
	return T_EXIT_PASS;
}

static int test_entry_naming_free_inode_is_reported(void)
{
	uint8_t *img = img_copy(clean_img);
	struct pm_dirent *de = find_dirent(img, PM_ROOT_INO, "f1");

	CHECK(de);
	de->ino = sb_of(img)->ninodes - 1;
	if (expect_problem(img, "names free inode", true))
		return T_EXIT_FAIL;
	free(img);

	img = img_copy(clean_img);
	find_dirent(img, PM_ROOT_INO, "f1")->ino = sb_of(img)->ninodes + 7;
	if (expect_problem(img, "past the inode table", true))
		return T_EXIT_FAIL;
	free(img);
	return T_EXIT_PASS;
}

static int test_bad_entry_hash_is_reported(void)
{
	uint8_t *img = img_copy(clean_img);
	struct pm_dirent *de = find_dirent(img, ino.d1, "f2");
	char what[64];

	CHECK(de);
	de->hash ^= 0x100;
	snprintf(what, sizeof(what), "directory %llu: entry \"f2\": hash", (unsigned long long)ino.d1);
	if (expect_problem(img, what, true))
		return T_EXIT_FAIL;
	free(img);
	return T_EXIT_PASS;
}

static int test_bad_entries_are_reported(void)
{
	uint8_t *img = img_copy(clean_img);
	struct pm_dirent *de = find_dirent(img, ino.d3, "a-rather-long-file-name-number-0001");

	CHECK(de);
	CHECK_EQ(de->nslots, 2);
	de->nslots = 0;
	if (expect_problem(img, "claims 0 slots", true))
		return T_EXIT_FAIL;
	free(img);

	img = img_copy(clean_img);
	de = find_dirent(img, ino.d1, "f2");
	de->type = 4; /* DT_DIR */
	if (expect_problem(img, "has type 4, but inode", true))
		return T_EXIT_FAIL;
	free(img);

	/* a second "f2" in /d1 */
	img = img_copy(clean_img);
	put_dirent(free_dirent(img, ino.d1), ino.f2, "f2", pm_dtype(S_IFREG));
	dino(img, ino.d1)->nentries++;
	dino(img, ino.f2)->nlink++;
	if (expect_problem(img, "appears twice", true))
		return T_EXIT_FAIL;
	free(img);

	img = img_copy(clean_img);
	de = find_dirent(img, ino.d1, "f2");
	de->name[1] = '/';
	de->hash = pm_name_hash(de->name, 2);
	if (expect_problem(img, "contains '/' or NUL", true))
		return T_EXIT_FAIL;
	free(img);
	return T_EXIT_PASS;
}

static int test_parent_mismatch_is_reported(void)
{
	uint8_t *img = img_copy(clean_img);

	dino(img, ino.d2)->parent = PM_ROOT_INO;
	if (expect_problem(img, "its parent is 1, but its entry is in directory", true))
		return T_EXIT_FAIL;
	free(img);

	img = img_copy(clean_img);
	dino(img, PM_ROOT_INO)->parent = ino.d1;
	if (expect_problem(img, "root directory: parent is", true))
		return T_EXIT_FAIL;
	free(img);
	return T_EXIT_PASS;
}

static int test_directory_cycles_are_reported(void)
{
	uint8_t *img = img_copy(clean_img);
	struct pm_dirent *de;

	/* /d1/d2/loop -> /d1: a second name for a directory */
	put_dirent(free_dirent(img, ino.d2), ino.d1, "loop", pm_dtype(S_IFDIR));
	dino(img, ino.d2)->nentries++;
	dino(img, ino.d2)->nlink++;
	if (expect_problem(img, "already has an entry in directory", true))
		return T_EXIT_FAIL;

	/* and cut /d1 from the root: d1 and d2 now only name each other */
	de = find_dirent(img, PM_ROOT_INO, "d1");
	memset(de, 0, sizeof(*de));
	dino(img, PM_ROOT_INO)->nentries--;
	dino(img, PM_ROOT_INO)->nlink--;
	if (expect_problem(img, "not reachable from the root", true))
		return T_EXIT_FAIL;
	free(img);

	/* an entry naming the root */
	img = img_copy(clean_img);
	put_dirent(free_dirent(img, ino.d2), PM_ROOT_INO, "up", pm_dtype(S_IFDIR));
	dino(img, ino.d2)->nentries++;
	if (expect_problem(img, "names the root directory", true))
		return T_EXIT_FAIL;
	free(img);
	return T_EXIT_PASS;
}

static int test_bad_map_pointers_are_reported(void)
{
	uint8_t *img = img_copy(clean_img);
	struct pm_dinode *f1 = dino(img, ino.f1);
	uint64_t *leaf = blk_of(img, f1->map_root);

	CHECK_EQ(f1->map_height, 1);
	leaf[3] = sb_of(img)->nblocks + 5;
	if (expect_problem(img, "outside the data region", true))
		return T_EXIT_FAIL;
	/* the pointer is dropped: file block 3 is a hole, the rest is kept */
	CHECK_EQ(leaf[3], 0);
	CHECK_UEQ(dino(img, ino.f1)->size, 100 * 1024);
	CHECK(memcmp(blk_of(img, leaf[2]), f1_pattern() + 2 * PM_BLOCK_SIZE, PM_BLOCK_SIZE) == 0);
	CHECK(memcmp(blk_of(img, leaf[4]), f1_pattern() + 4 * PM_BLOCK_SIZE, PM_BLOCK_SIZE) == 0);
	if (others_intact(img, false))
		return T_EXIT_FAIL;
	free(img);

	/* a pointer to the backup superblock is no data block either */
	img = img_copy(clean_img);
	leaf = blk_of(img, dino(img, ino.f1)->map_root);
	leaf[5] = pm_backup_sb_block(sb_of(img));
	if (expect_problem(img, "it is the backup superblock", true))
		return T_EXIT_FAIL;
	CHECK_EQ(leaf[5], 0);
	free(img);

	img = img_copy(clean_img);
	dino(img, ino.sparse)->map_root = 2; /* the journal */
	if (expect_problem(img, "map root 2 is outside the data region", true))
		return T_EXIT_FAIL;
	free(img);

	img = img_copy(clean_img);
	dino(img, ino.sparse)->map_height = PM_MAP_MAX_HEIGHT + 1;
	if (expect_problem(img, "map height 6 exceeds 5", true))
		return T_EXIT_FAIL;
	free(img);

	img = img_copy(clean_img);
	dino(img, ino.f1)->xattr_block = sb_of(img)->itable_start;
	if (expect_problem(img, "xattr block", true))
		return T_EXIT_FAIL;
	free(img);
	return T_EXIT_PASS;
}

static int test_map_pointing_at_itself_is_reported(void)
{
	uint8_t *img = img_copy(clean_img);
	struct pm_dinode *sp = dino(img, ino.sparse);
	uint64_t *root = blk_of(img, sp->map_root);
	uint64_t mid = map_node(img, sp, 0, 2);
	uint64_t i;

	CHECK_NE(mid, 0);
	/* every entry of the root names the root; the level-2 node names itself */
	for (i = 0; i < PM_MAP_FANOUT; i++)
		root[i] = sp->map_root;
	((uint64_t *)blk_of(img, mid))[7] = mid;
	if (expect_problem(img, "is used twice", true))
		return T_EXIT_FAIL;
	free(img);
	return T_EXIT_PASS;
}

static int test_wrong_superblock_counters_are_repaired(void)
{
	uint8_t *img = img_copy(clean_img);

	sb_of(img)->free_blocks -= 3;
	resum(img);
	if (expect_problem(img, "free blocks, but the bitmap has", true))
		return T_EXIT_FAIL;
	free(img);

	img = img_copy(clean_img);
	sb_of(img)->free_inodes += 1;
	resum(img);
	if (expect_problem(img, "free inodes, but", true))
		return T_EXIT_FAIL;
	if (exercise(img))
		return T_EXIT_FAIL;
	free(img);
	return T_EXIT_PASS;
}

static int test_wrong_block_and_entry_counts_are_repaired(void)
{
	uint8_t *img = img_copy(clean_img);

	dino(img, ino.f1)->blocks += 2;
	dino(img, ino.sparse)->blocks = 0;
	dino(img, ino.d3)->nentries -= 1;
	if (expect_problem(img, "entry count", true))
		return T_EXIT_FAIL;
	CHECK_EQ(memcmp(img, clean_img, POOL_SIZE), 0);
	free(img);

	img = img_copy(clean_img);
	dino(img, ino.d3)->blocks += 1;
	if (expect_problem(img, "block count", true))
		return T_EXIT_FAIL;
	free(img);
	return T_EXIT_PASS;
}

static int test_orphan_list_damage_is_reported(void)
{
	uint8_t *img = img_copy(orphan_img);
	uint64_t head = sb_of(img)->orphan_head, second = dino(img, head)->orphan_next;

	CHECK_NE(second, 0);
	dino(img, second)->orphan_next = head; /* a cycle */
	CHECK_EQ(sb_of(img)->clean, 0); /* a crash image */
	if (expect_problem(img, "loops back", true))
		return T_EXIT_FAIL;
	/* mended, nothing left: marked clean; both orphans still listed (the
	 * rebuilt list goes in inode order) */
	CHECK_EQ(sb_of(img)->clean, 1);
	{
		uint64_t lo = head < second ? head : second, hi = head ^ second ^ lo;
		CHECK_UEQ(sb_of(img)->orphan_head, lo);
		CHECK_UEQ(dino(img, lo)->orphan_next, hi);
		CHECK_UEQ(dino(img, hi)->orphan_prev, lo);
		CHECK_UEQ(dino(img, hi)->orphan_next, 0);
	}
	free(img);

	img = img_copy(orphan_img);
	dino(img, second)->orphan_prev = 0;
	if (expect_problem(img, "orphan_prev is 0", true))
		return T_EXIT_FAIL;
	free(img);

	img = img_copy(orphan_img);
	sb_of(img)->orphan_head = second; /* the head is now lost */
	dino(img, second)->orphan_prev = 0;
	resum(img);
	if (expect_problem(img, "not on the orphan list", true))
		return T_EXIT_FAIL;
	free(img);

	img = img_copy(orphan_img);
	dino(img, head)->nlink = 1;
	if (expect_problem(img, "on the orphan list with link count 1", true))
		return T_EXIT_FAIL;
	free(img);

	/* an entry dropped without the inode going on the list: the file is
	 * reconnected to the root as "#INO", with its data */
	img = img_copy(clean_img);
	memset(find_dirent(img, PM_ROOT_INO, "f1"), 0, PM_DIR_SLOT);
	dino(img, PM_ROOT_INO)->nentries--;
	if (expect_problem(img, "orphan left behind", true))
		return T_EXIT_FAIL;
	{
		char name[32];
		struct pm_dirent *de;
		snprintf(name, sizeof(name), "#%llu", (unsigned long long)ino.f1);
		de = find_dirent(img, PM_ROOT_INO, name);
		CHECK(de);
		CHECK_UEQ(de->ino, ino.f1);
		CHECK_EQ(dino(img, ino.f1)->nlink, 1);
	}
	if (others_intact(img, true))
		return T_EXIT_FAIL;
	free(img);

	/* a directory cut from the tree keeps its subtree under "#INO" */
	img = img_copy(clean_img);
	memset(find_dirent(img, PM_ROOT_INO, "d1"), 0, PM_DIR_SLOT);
	dino(img, PM_ROOT_INO)->nentries--;
	dino(img, PM_ROOT_INO)->nlink--;
	if (expect_problem(img, "orphan left behind", true))
		return T_EXIT_FAIL;
	{
		char name[32];
		snprintf(name, sizeof(name), "#%llu", (unsigned long long)ino.d1);
		CHECK(find_dirent(img, PM_ROOT_INO, name));
		CHECK(find_dirent(img, ino.d1, "f2"));
		CHECK_UEQ(dino(img, ino.d1)->parent, PM_ROOT_INO);
	}
	if (others_intact(img, true))
		return T_EXIT_FAIL;
	free(img);

	/* the root inode wiped: made again, everything in it reconnected as
	 * "#INO" in a block fsck adds to it */
	img = img_copy(clean_img);
	memset(dino(img, PM_ROOT_INO), 0, sizeof(struct pm_dinode));
	if (expect_problem(img, "root inode 1 is not a directory", true))
		return T_EXIT_FAIL;
	{
		char name[32];
		snprintf(name, sizeof(name), "#%llu", (unsigned long long)ino.d1);
		CHECK(find_dirent(img, PM_ROOT_INO, name));
		snprintf(name, sizeof(name), "#%llu", (unsigned long long)ino.f1);
		CHECK(find_dirent(img, PM_ROOT_INO, name));
		CHECK(find_dirent(img, ino.d1, "f2"));
	}
	/* /hard went with the root's blocks: f2 keeps one link, and its bytes */
	CHECK_EQ(dino(img, ino.f2)->nlink, 1);
	CHECK_OK(file_holds(img, ino.f2, "hello", 5));
	CHECK_OK(file_holds(img, ino.f1, f1_pattern(), 100 * 1024));
	free(img);
	return T_EXIT_PASS;
}

static int test_bad_inodes_are_reported(void)
{
	uint8_t *img = img_copy(clean_img);

	((char *)blk_of(img, map_get(img, dino(img, ino.sl), 0)))[2] = 0;
	if (expect_problem(img, "NUL", true))
		return T_EXIT_FAIL;
	free(img);

	img = img_copy(clean_img);
	dino(img, ino.chr)->mode = 0170600;
	if (expect_problem(img, "unknown file type", true))
		return T_EXIT_FAIL;
	free(img);

	img = img_copy(clean_img);
	dino(img, ino.f1)->mtime.nsec = 1000000000u;
	dino(img, ino.f1)->reserved[40] = 1;
	if (expect_problem(img, "reserved bytes are not zero", true))
		return T_EXIT_FAIL;
	free(img);

	img = img_copy(clean_img);
	((struct pm_xattr_hdr *)blk_of(img, dino(img, ino.f1)->xattr_block))->magic ^= 1;
	if (expect_problem(img, "bad magic", true))
		return T_EXIT_FAIL;
	free(img);

	img = img_copy(clean_img); /* "user.test" -> "user\0test" */
	((char *)blk_of(img, dino(img, ino.f1)->xattr_block))[sizeof(struct pm_xattr_hdr) +
							      sizeof(struct pm_xattr_ent) + 4] = 0;
	if (expect_problem(img, "name contains NUL", true))
		return T_EXIT_FAIL;
	free(img);

	img = img_copy(clean_img);
	((struct pm_xattr_hdr *)blk_of(img, dino(img, ino.f1)->xattr_block))->used += 4;
	if (expect_problem(img, "xattr entries end at byte", true))
		return T_EXIT_FAIL;
	free(img);

	/* a hole in a directory */
	img = img_copy(clean_img);
	((uint64_t *)blk_of(img, dino(img, ino.d3)->map_root))[1] = 0;
	if (expect_problem(img, "hole at file block 1", true))
		return T_EXIT_FAIL;
	free(img);

	img = img_copy(clean_img);
	dino(img, ino.f1)->size = ~0ull - 5;
	if (expect_problem(img, "exceeds the largest file", true))
		return T_EXIT_FAIL;
	free(img);

	img = img_copy(clean_img);
	memset(dino(img, 0), 0xff, 8);
	if (expect_problem(img, "inode slot 0 is not zero", true))
		return T_EXIT_FAIL;
	free(img);
	return T_EXIT_PASS;
}

static int test_journal_state_is_checked(void)
{
	uint8_t *img = img_copy(clean_img);
	struct pm_jhdr *h = blk_of(img, sb_of(img)->journal_start);
	struct pm_fsck_result r;
	char *text;

	/* a "committed" header whose checksum fails: replay discards it */
	h->magic = PM_JOURNAL_MAGIC;
	h->state = PM_JSTATE_COMMITTED;
	h->csum ^= 1;
	CHECK_OK(fsck_img_opt(img, false, true, &r, &text));
	CHECK_CONTAINS(text, "journal: header state is 1");
	free(text);
	if (expect_clean(img)) /* replays first */
		return T_EXIT_FAIL;
	CHECK_EQ(h->state, PM_JSTATE_EMPTY);
	free(img);
	return T_EXIT_PASS;
}

static int test_bitmap_damage_is_reported(void)
{
	uint8_t *img = img_copy(clean_img);
	uint8_t *bm = blk_of(img, sb_of(img)->bitmap_start);
	uint64_t b = map_get(img, dino(img, ino.f1), 0);

	bm[b >> 3] &= (uint8_t)~(1u << (b & 7));
	if (expect_problem(img, "is marked free in the allocation bitmap", true))
		return T_EXIT_FAIL;
	free(img);

	img = img_copy(clean_img);
	bm = blk_of(img, sb_of(img)->bitmap_start);
	bm[0] &= (uint8_t)~2u; /* block 1: the journal */
	if (expect_problem(img, "metadata, but marked free", true))
		return T_EXIT_FAIL;
	free(img);
	return T_EXIT_PASS;
}

/* The bytes mkfs wrote and nothing changes: geometry, features, uuid. */
static int same_geometry(const struct pm_super *a, const struct pm_super *b)
{
	CHECK_UEQ(a->magic, b->magic);
	CHECK_UEQ(a->feat_compat, b->feat_compat);
	CHECK_UEQ(a->feat_incompat, b->feat_incompat);
	CHECK(memcmp(a->uuid, b->uuid, sizeof(a->uuid)) == 0);
	CHECK_UEQ(a->nblocks, b->nblocks);
	CHECK_UEQ(a->ninodes, b->ninodes);
	CHECK_UEQ(a->data_start, b->data_start);
	CHECK_UEQ(a->free_blocks, b->free_blocks);
	CHECK_UEQ(a->free_inodes, b->free_inodes);
	CHECK_UEQ(a->orphan_head, b->orphan_head);
	return T_EXIT_PASS;
}

static int test_superblock_bit_flips_are_repaired_from_backup(void)
{
	const char *s = getenv("FSCK_SEED");
	uint64_t seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL);
	struct pm_pool *pool;
	char err[512];
	unsigned k;

	fprintf(stderr, "superblock bit flips: FSCK_SEED=%llu\n", (unsigned long long)seed);
	CHECK(sb_of(clean_img)->feat_compat & PM_FEAT_COMPAT_BACKUP_SB);
	for (k = 0; k < 24; k++) {
		uint8_t *img = img_copy(clean_img);
		/* 8 bits of the fields every open reads, then anywhere */
		uint64_t bit = k < 8 ? (seed + k * 37) % (8 * 16) : (seed * 2654435761u + k * 977) % (8 * PM_BLOCK_SIZE);

		img[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		/* a mount refuses it, and says the backup can mend it */
		CHECK_NE(pm_pool_open_mem(img, POOL_SIZE, &noop_ops, &pool, err, sizeof(err)), 0);
		CHECK_CONTAINS(err, "the backup superblock (block 4095) is intact");
		if (expect_problem(img, "the backup superblock (block 4095) is intact", true)) {
			fprintf(stderr, "flipped bit %llu\n", (unsigned long long)bit);
			return T_EXIT_FAIL;
		}
		CHECK_OK(pm_pool_open_mem(img, POOL_SIZE, &noop_ops, &pool, err, sizeof(err)));
		pm_pool_close(&pool);
		if (same_geometry(sb_of(img), sb_of(clean_img)) || others_intact(img, true))
			return T_EXIT_FAIL;
		free(img);
	}
	return T_EXIT_PASS;
}

static int test_backup_superblock_damage_is_repaired(void)
{
	uint8_t *img = img_copy(clean_img);
	struct pm_super *bk = pm_backup_ptr(img, sb_of(img));

	memset((uint8_t *)bk + 200, 0x5a, 64);
	if (expect_problem(img, "backup superblock (block 4095) is corrupt", true))
		return T_EXIT_FAIL;
	CHECK_EQ(bk->sb_csum, pm_super_csum(bk));
	CHECK(memcmp(bk->uuid, sb_of(img)->uuid, sizeof(bk->uuid)) == 0);
	free(img);

	/* both copies bad: nothing to restore from, exit 4 as before */
	img = img_copy(clean_img);
	sb_of(img)->nblocks ^= 1;
	pm_backup_ptr(img, sb_of(clean_img))->uuid[0] ^= 1;
	{
		struct pm_fsck_result r;
		char *text;
		CHECK_EQ(fsck_img(img, true, &r, &text), -EUCLEAN);
		free(text);
	}
	free(img);
	return T_EXIT_PASS;
}

/* A pool smaller than what holds it (a device): its backup is found where
 * the primary's pool size puts it. */
static int test_backup_of_a_pool_smaller_than_its_device(void)
{
	struct pm_mkfs_opts o = { .size = POOL_SIZE - (4u << 20) };
	uint8_t *img = img_copy(NULL);
	struct pm_pool *pool;
	char err[512];

	memset(img, 0, POOL_SIZE);
	CHECK_OK(pm_mkfs_mem(img, o.size, &o, &noop_ops));
	CHECK_UEQ(pm_backup_sb_block(sb_of(img)), (POOL_SIZE - (4u << 20)) / PM_BLOCK_SIZE - 1);
	sb_of(img)->uuid[5] ^= 0x20;
	CHECK_NE(pm_pool_open_mem(img, POOL_SIZE, &noop_ops, &pool, err, sizeof(err)), 0);
	CHECK_CONTAINS(err, "backup superblock (block 3071) is intact");
	CHECK_OK(pm_pool_open_mem_flags(img, POOL_SIZE, &noop_ops, PM_POOL_BACKUP_SB, &pool, err,
					sizeof(err)));
	CHECK(pool->sb != pool->base);
	pm_pool_close(&pool);
	free(img);
	return T_EXIT_PASS;
}

/* Pools made before the backup (feat_compat 0) are still accepted, and
 * without a backup a corrupt superblock stays unrepairable. */
static int test_pool_without_backup_is_accepted(void)
{
	uint8_t *img = img_copy(clean_img);
	struct pm_super *sb = sb_of(img);
	uint64_t b = pm_backup_sb_block(sb);
	uint8_t *bm = blk_of(img, sb->bitmap_start);
	struct pm_fsck_result r;
	char *text;

	memset(blk_of(img, b), 0, PM_BLOCK_SIZE);
	bm[b >> 3] &= (uint8_t)~(1u << (b & 7));
	sb->feat_compat = 0;
	sb->free_blocks++;
	resum(img);
	if (expect_clean(img) || exercise(img))
		return T_EXIT_FAIL;
	sb->nblocks ^= 2;
	CHECK_EQ(fsck_img(img, true, &r, &text), -EUCLEAN);
	free(text);
	free(img);
	return T_EXIT_PASS;
}

/* --checksums: a clean block whose bytes no longer match its CRC is
 * reported (and left: fsck cannot know the right bytes); without the option
 * it is not looked at. */
static int test_checksums_are_verified(void)
{
	struct pm_cred cr = { getuid(), getgid(), 0, NULL, 0 };
	struct pm_mkfs_opts o = { .size = POOL_SIZE, .features = PM_FEAT_INCOMPAT_CSUM };
	static uint8_t buf[3 * PM_BLOCK_SIZE];
	struct pm_inode *root, *f;
	struct pm_fsck_result r;
	uint8_t *img = img_copy(NULL);
	struct pm_pool *pool;
	struct pm_fs *fs;
	uint32_t *csum;
	uint64_t fino, b;
	char err[256], *text;
	size_t i;

	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 3 + 11);
	CHECK_OK(pm_mkfs_mem(img, POOL_SIZE, &o, &noop_ops));
	CHECK_OK(pm_pool_open_mem(img, POOL_SIZE, &noop_ops, &pool, err, sizeof(err)));
	CHECK_OK(pm_fs_mount(pool, &fs, err, sizeof(err)));
	CHECK_OK(pm_iget(fs, PM_ROOT_INO, &root));
	CHECK_OK(pm_mknod(fs, &cr, root, "data", S_IFREG | 0644, 0, &f));
	CHECK_EQ(write_str(fs, &cr, f, 0, buf, sizeof(buf)), sizeof(buf));
	CHECK_OK(pm_fsync(fs, f, false));
	fino = pm_ino(f);
	pm_iput(fs, f);
	pm_iput(fs, root);
	pm_fs_unmount(&fs);
	pm_pool_close(&pool);

	csum = blk_of(img, sb_of(img)->csum_start);
	b = map_get(img, dino(img, fino), 1);
	CHECK_NE(csum[b], PM_CSUM_NONE); /* clean, checksummed */
	verify_checksums = true;
	if (expect_clean(img))
		return T_EXIT_FAIL;
	((uint8_t *)blk_of(img, b))[100] ^= 0x40; /* bit rot */
	verify_checksums = false;
	if (expect_clean(img)) /* not looked at without --checksums */
		return T_EXIT_FAIL;
	verify_checksums = true;
	if (expect_problem(img, "file block 1 (block", false))
		return T_EXIT_FAIL;
	CHECK_OK(fsck_img(img, false, &r, &text));
	CHECK_EQ(r.errors, 1);
	CHECK_CONTAINS(text, "checksum mismatch");
	free(text);
	verify_checksums = false;
	free(img);
	return T_EXIT_PASS;
}

struct fuzz {
	uint64_t *meta; /* map nodes, directory and xattr blocks of clean_img */
	size_t nmeta, capmeta;
	uint64_t maxino; /* highest inode in use */
	uint64_t seed;
	struct pm_super geo; /* clean_img's superblock: mutations may change the image's */
};

static uint64_t rnd(struct fuzz *z)
{
	/* xorshift64* */
	z->seed ^= z->seed >> 12;
	z->seed ^= z->seed << 25;
	z->seed ^= z->seed >> 27;
	return z->seed * 2685821657736338717ull;
}

/* ---- random engine operations --------------------------------------------- */

/*
 * Random operations through the engine, with the pool snapshot every few
 * operations (a crash image of committed state) and after unmount: fsck must
 * find every snapshot clean. Errors the operations return (ENOENT, EEXIST,
 * ENOSPC, ...) are part of the game; crashes and dirty snapshots are not.
 */
static int test_random_engine_operations_stay_clean(void)
{
	const char *s = getenv("FSCK_SEED"), *e = getenv("FSCK_OPS");
	struct fuzz z = { .seed = s ? strtoull(s, NULL, 0) + 7 : (uint64_t)time(NULL) + 7 };
	unsigned long nops = e ? strtoul(e, NULL, 0) : 3000, op, ok = 0;
	struct pm_cred cr = { getuid(), getgid(), 0, NULL, 0 };
	struct pm_mkfs_opts o = { .size = POOL_SIZE };
	struct pm_inode *dirs[4], *held[6] = { 0 };
	static uint8_t data[64 << 10];
	uint8_t *img = img_copy(NULL), *snap = img_copy(NULL);
	struct pm_pool *pool;
	struct pm_fs *fs;
	char err[256];
	size_t i;

	for (i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 13 + 5);
	fprintf(stderr, "engine ops: FSCK_SEED=%llu, %lu operations\n",
		(unsigned long long)(z.seed - 7), nops);
	CHECK_OK(pm_mkfs_mem(img, POOL_SIZE, &o, &noop_ops));
	CHECK_OK(pm_pool_open_mem(img, POOL_SIZE, &noop_ops, &pool, err, sizeof(err)));
	CHECK_OK(pm_fs_mount(pool, &fs, err, sizeof(err)));
	CHECK_OK(pm_iget(fs, PM_ROOT_INO, &dirs[0]));
	CHECK_OK(pm_mknod(fs, &cr, dirs[0], "a", S_IFDIR | 0755, 0, &dirs[1]));
	CHECK_OK(pm_mknod(fs, &cr, dirs[1], "b", S_IFDIR | 0755, 0, &dirs[2]));
	CHECK_OK(pm_mknod(fs, &cr, dirs[0], "c", S_IFDIR | 0755, 0, &dirs[3]));

	for (op = 0; op < nops; op++) {
		struct pm_inode *dir = dirs[rnd(&z) % 4], *dir2 = dirs[rnd(&z) % 4], *ip = NULL;
		char name[64], name2[64];
		uint64_t off = rnd(&z) % (2u << 20), len = 1 + rnd(&z) % sizeof(data);
		unsigned k = (unsigned)(rnd(&z) % 16);
		int rc = -1;

		/* long names now and then: entries of several slots */
		snprintf(name, sizeof(name), rnd(&z) % 4 ? "n%u" : "a-long-name-of-several-slots-%u",
			 (unsigned)(rnd(&z) % 24));
		snprintf(name2, sizeof(name2), "n%u", (unsigned)(rnd(&z) % 24));
		switch (rnd(&z) % 15) {
		case 0: case 1:
			rc = pm_mknod(fs, &cr, dir, name, S_IFREG | 0644, 0, &ip);
			if (!rc)
				pm_iput(fs, ip);
			break;
		case 2:
			rc = pm_mknod(fs, &cr, dir, name, S_IFDIR | 0755, 0, &ip);
			if (!rc)
				pm_iput(fs, ip);
			break;
		case 3: case 4:
			if (!pm_lookup(fs, dir, name, &ip)) {
				struct iovec iov = { data, (size_t)len };
				rc = pm_write(fs, &cr, ip, off, &iov, 1) > 0 ? 0 : -1;
				pm_iput(fs, ip);
			}
			break;
		case 5:
			if (!pm_lookup(fs, dir, name, &ip)) {
				struct pm_setattr sa = { .valid = PM_SET_SIZE, .size = off };
				rc = pm_setattr(fs, &cr, ip, &sa);
				pm_iput(fs, ip);
			}
			break;
		case 6:
			if (!pm_lookup(fs, dir, name, &ip)) {
				static const int modes[] = { 0, FALLOC_FL_KEEP_SIZE,
							     FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
							     FALLOC_FL_ZERO_RANGE };
				rc = pm_fallocate(fs, ip, modes[k % 4], off, len * (1 + k));
				pm_iput(fs, ip);
			}
			break;
		case 7:
			if (!pm_lookup(fs, dir, name, &ip)) {
				rc = pm_link(fs, ip, dir2, name2);
				pm_iput(fs, ip);
			}
			break;
		case 8:
			rc = pm_unlink(fs, dir, name);
			if (rc == -EISDIR)
				rc = pm_rmdir(fs, dir, name);
			break;
		case 9:
			rc = pm_rename(fs, dir, name, dir2, name2,
				  k < 10 ? 0 : k < 13 ? RENAME_NOREPLACE : RENAME_EXCHANGE);
			break;
		case 10:
			if (!pm_lookup(fs, dir, name, &ip)) {
				char xn[32];
				snprintf(xn, sizeof(xn), "user.x%u", k % 5);
				if (k & 8)
					rc = pm_removexattr(fs, ip, xn);
				else
					rc = pm_setxattr(fs, ip, xn, data, (size_t)(len % 700), 0);
				pm_iput(fs, ip);
			}
			break;
		case 11:
			rc = pm_symlink(fs, &cr, dir, name, k & 1 ? "n1" : "../some/longer/target", &ip);
			if (!rc)
				pm_iput(fs, ip);
			break;
		case 12: /* hold a file open, then unlink it */
			if (!pm_lookup(fs, dir, name, &ip)) {
				struct pm_inode **h = &held[k % 6];
				pm_iput(fs, *h);
				*h = ip;
				rc = pm_unlink(fs, dir, name);
				if (rc == -EISDIR)
					rc = pm_rmdir(fs, dir, name);
			}
			break;
		case 13: /* drop a held one */
			pm_iput(fs, held[k % 6]);
			held[k % 6] = NULL;
			break;
		default:
			if (!pm_lookup(fs, dir, name, &ip)) {
				struct stat st;
				pm_stat(fs, ip, &st);
				if (S_ISREG(st.st_mode) && read_some(fs, ip, off, (size_t)len))
					return T_EXIT_FAIL;
				pm_iput(fs, ip);
			}
			break;
		}
		if (rc == 0)
			ok++;
		if (op % 50 == 49) {
			memcpy(snap, img, POOL_SIZE);
			if (expect_clean(snap)) {
				fprintf(stderr, "after operation %lu\n", op);
				return T_EXIT_FAIL;
			}
		}
	}
	for (i = 0; i < 6; i++)
		pm_iput(fs, held[i]);
	for (i = 0; i < 4; i++)
		pm_iput(fs, dirs[i]);
	pm_fs_unmount(&fs);
	pm_pool_close(&pool);
	fprintf(stderr, "engine ops: %lu of %lu changed something; %llu inodes and %llu blocks in use at the end\n",
		ok, nops,
		(unsigned long long)(sb_of(img)->ninodes - 1 - sb_of(img)->free_inodes),
		(unsigned long long)(sb_of(img)->nblocks - sb_of(img)->data_start -
				     sb_of(img)->free_blocks));
	if (expect_clean(img) || exercise(img))
		return T_EXIT_FAIL;
	free(img);
	free(snap);
	return T_EXIT_PASS;
}

/* ---- random mutations ---------------------------------------------------- */

static void add_meta(struct fuzz *z, uint64_t b)
{
	if (z->nmeta == z->capmeta) {
		z->capmeta = z->capmeta ? z->capmeta * 2 : 256;
		z->meta = realloc(z->meta, z->capmeta * sizeof(*z->meta));
		if (!z->meta)
			abort();
	}
	z->meta[z->nmeta++] = b;
}

static void meta_visit(void *ctx, uint64_t fblk, uint64_t pblk, unsigned level)
{
	(void)fblk;
	if (level > 0)
		add_meta(ctx, pblk);
}

/* Collects the clean image's metadata blocks in the data region. */
static int fuzz_init(struct fuzz *z, struct pm_pool *pool)
{
	uint64_t i;

	for (i = PM_ROOT_INO; i < pool->sb->ninodes; i++) {
		const struct pm_dinode *d = dino(clean_img, i);
		uint64_t fb;
		if (!d->mode)
			continue;
		z->maxino = i;
		CHECK_OK(pm_bmap_walk(pool, d, meta_visit, z));
		if (d->xattr_block)
			add_meta(z, d->xattr_block);
		if (S_ISDIR(d->mode))
			for (fb = 0; fb < d->size / PM_BLOCK_SIZE; fb++)
				add_meta(z, map_get(clean_img, d, fb));
	}
	CHECK_GT(z->nmeta, 10);
	z->geo = *pool->sb;
	return T_EXIT_PASS;
}

/* A value likely to be followed: a block or inode number, small or not. */
static uint64_t plausible(struct fuzz *z, uint64_t nblocks)
{
	switch (rnd(z) % 4) {
	case 0: return rnd(z) % (nblocks + 8);
	case 1: return rnd(z) % (z->maxino + 4);
	case 2: return rnd(z) % 8;
	default: return rnd(z);
	}
}

static void mutate(struct fuzz *z, uint8_t *img)
{
	struct pm_super *sb = sb_of(img);
	const struct pm_super *geo = &z->geo;
	uint64_t nblocks = geo->nblocks;
	unsigned k, n = 1 + (unsigned)(rnd(z) % 6);

	for (k = 0; k < n; k++) {
		uint64_t i = rnd(z) % (z->maxino + 3);
		uint8_t *d = (uint8_t *)((struct pm_dinode *)blk_of(img, geo->itable_start +
								      i / PM_INODES_PER_BLOCK) +
					 i % PM_INODES_PER_BLOCK);
		uint8_t *m = blk_of(img, z->meta[rnd(z) % z->nmeta]);

		switch (rnd(z) % 10) {
		case 0: case 1: case 2: /* a byte of an inode */
			d[rnd(z) % sizeof(struct pm_dinode)] ^= (uint8_t)(1 + rnd(z) % 255);
			break;
		case 3: { /* a pointer-like field of an inode */
			static const size_t fields[] = {
				offsetof(struct pm_dinode, map_root), offsetof(struct pm_dinode, xattr_block),
				offsetof(struct pm_dinode, parent), offsetof(struct pm_dinode, orphan_next),
				offsetof(struct pm_dinode, orphan_prev), offsetof(struct pm_dinode, nentries),
				offsetof(struct pm_dinode, size), offsetof(struct pm_dinode, blocks),
			};
			uint64_t v = plausible(z, nblocks);
			memcpy(d + fields[rnd(z) % (sizeof(fields) / sizeof(fields[0]))], &v, 8);
			break;
		}
		case 4: { /* height, link count, mode */
			struct pm_dinode *di = (struct pm_dinode *)d;
			switch (rnd(z) % 3) {
			case 0: di->map_height = (uint32_t)(rnd(z) % 7); break;
			case 1: di->nlink = (uint32_t)(rnd(z) % 4); break;
			default: di->mode ^= (uint32_t)(1u << (rnd(z) % 16)); break;
			}
			break;
		}
		case 5: /* a byte of a map node, directory or xattr block */
			m[rnd(z) % PM_BLOCK_SIZE] ^= (uint8_t)(1 + rnd(z) % 255);
			break;
		case 6: { /* a word of one, set to something followable */
			uint64_t v = plausible(z, nblocks);
			memcpy(m + (rnd(z) % (PM_BLOCK_SIZE / 8)) * 8, &v, 8);
			break;
		}
		case 7: { /* a bitmap byte covering blocks in use */
			uint8_t *bm = blk_of(img, geo->bitmap_start);
			bm[rnd(z) % PM_DIV_UP(nblocks, 8)] ^= (uint8_t)(1 + rnd(z) % 255);
			break;
		}
		case 8: { /* a superblock field, checksum kept valid */
			static const size_t fields[] = {
				offsetof(struct pm_super, free_blocks), offsetof(struct pm_super, free_inodes),
				offsetof(struct pm_super, orphan_head), offsetof(struct pm_super, next_generation),
				offsetof(struct pm_super, clean), offsetof(struct pm_super, errors),
				offsetof(struct pm_super, ninodes), offsetof(struct pm_super, data_start),
			};
			size_t off = fields[rnd(z) % (sizeof(fields) / sizeof(fields[0]))];
			if (rnd(z) % 5 == 0) { /* a bit flip, checksum stale: the backup */
				((uint8_t *)sb)[rnd(z) % PM_BLOCK_SIZE] ^= (uint8_t)(1u << (rnd(z) % 8));
				break;
			}
			if (rnd(z) % 2) {
				uint64_t v = plausible(z, nblocks);
				memcpy((uint8_t *)sb + off, &v, off == offsetof(struct pm_super, clean) ? 4 : 8);
			} else {
				((uint8_t *)sb)[off + rnd(z) % 4] ^= (uint8_t)(1 + rnd(z) % 255);
			}
			resum(img);
			break;
		}
		default: { /* the journal header, or any byte of the metadata region */
			uint8_t *j = blk_of(img, geo->journal_start);
			if (rnd(z) % 2)
				j[rnd(z) % sizeof(struct pm_jhdr)] ^= (uint8_t)(1 + rnd(z) % 255);
			else
				img[PM_BLOCK_SIZE + rnd(z) % ((geo->data_start - 1) * PM_BLOCK_SIZE)] ^=
					(uint8_t)(1 + rnd(z) % 255);
			break;
		}
		}
	}
}

static int test_random_mutations_never_crash_and_repairs_converge(void)
{
	const char *e = getenv("FSCK_FUZZ_ITERS"), *s = getenv("FSCK_SEED");
	unsigned long iters = e ? strtoul(e, NULL, 0) : 400, it;
	unsigned long refused = 0, clean = 0, exercised = 0, repaired = 0;
	struct fuzz z = { .seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) };
	uint8_t *img = img_copy(NULL), *before = img_copy(NULL);
	unsigned long left = 0;
	struct pm_pool *pool;
	char err[512];

	if (!z.seed)
		z.seed = 1;
	fprintf(stderr, "fuzz: FSCK_SEED=%llu, %lu iterations\n", (unsigned long long)z.seed, iters);
	memcpy(img, clean_img, POOL_SIZE);
	CHECK_OK(pm_pool_open_mem(img, POOL_SIZE, &noop_ops, &pool, err, sizeof(err)));
	if (fuzz_init(&z, pool))
		return T_EXIT_FAIL;
	pm_pool_close(&pool);

	for (it = 0; it < iters; it++) {
		struct pm_fsck_result r1, r2, r3;
		uint64_t seed = z.seed;
		char *text;
		int rc;

		memcpy(img, rnd(&z) % 4 ? clean_img : orphan_img, POOL_SIZE);
		mutate(&z, img);
		/* as fsck.pinfs opens it: a corrupt primary, the backup */
		if (pm_pool_open_mem_flags(img, POOL_SIZE, &noop_ops, PM_POOL_BACKUP_SB, &pool, err,
					   sizeof(err))) {
			refused++;
			continue;
		}
		pm_pool_close(&pool);

		/* -n: nothing written, whatever the image */
		memcpy(before, img, POOL_SIZE);
		rc = fsck_img_opt(img, false, true, &r1, &text);
		free(text);
		CHECK_OK(rc);
		if (memcmp(before, img, POOL_SIZE)) {
			fprintf(stderr, "iteration %lu: fsck without repair wrote to the pool\n", it);
			return T_EXIT_FAIL;
		}

		rc = fsck_img(img, false, &r1, &text);
		free(text);
		if (rc == -EUCLEAN || rc == -EPROTONOSUPPORT) {
			refused++; /* the replayed journal broke the superblock */
			continue;
		}
		if (rc) {
			fprintf(stderr, "iteration %lu (state seed %llu): fsck returned %d\n", it,
				(unsigned long long)seed, rc);
			return T_EXIT_FAIL;
		}
		CHECK_OK(fsck_img(img, true, &r2, &text));
		free(text);
		CHECK_OK(fsck_img(img, false, &r3, &text));
		if (r3.errors != r2.errors - r2.repaired) {
			fprintf(stderr, "iteration %lu: repair fixed %lu of %lu, but then %lu remain:\n%s",
				it, r2.repaired, r2.errors, r3.errors, text);
			return T_EXIT_FAIL;
		}
		if (r1.errors == 0)
			clean++;
		else if (r3.errors == 0)
			repaired++;
		else
			left++;
		if (r3.errors && verbose)
			fprintf(stderr, "iteration %lu: problems left after --repair:\n%s", it, text);
		free(text);
		if (r3.errors == 0) {
			exercised++;
			if (exercise(img)) {
				fprintf(stderr, "iteration %lu: the engine failed on a pool fsck passed\n", it);
				return T_EXIT_FAIL;
			}
		}
	}
	fprintf(stderr, "fuzz: %lu refused at open, %lu clean, %lu repaired to clean, %lu with problems left after --repair, %lu exercised\n",
		refused, clean, repaired, left, exercised);
	/* before the repairs of issue 8 (seed 1, 428 images): 65 refused,
	 * 307 with problems left. Now a pool fsck cannot mend is rare */
	CHECK_LE(left * 20, iters - refused);
	CHECK_LE(refused * 20, iters);
	free(z.meta);
	free(img);
	free(before);
	return T_EXIT_PASS;
}

int main(void)
{
	verbose = getenv("CHECK_VERBOSE") != NULL;
	RUN(build_images);
	RUN(test_fresh_pool_is_clean);
	RUN(test_engine_built_tree_is_clean);
	RUN(test_open_unlinked_files_are_clean_orphans);
	RUN(test_leaked_block_is_repaired);
	RUN(build_users_image);
	RUN(test_shared_map_node_goes_to_the_consistent_owner);
	RUN(test_shared_data_block_goes_to_the_consistent_owner);
	RUN(test_block_no_structure_vouches_for_goes_to_neither);
	RUN(test_repair_never_writes_into_a_block_another_file_owns);
	RUN(test_pointer_into_a_deleted_files_block_is_dropped);
	RUN(test_a_pointer_moved_onto_a_block_its_owner_lost);
	RUN(test_out_of_range_counters_in_both_superblocks_are_recomputed);
	RUN(test_forced_mount_keeps_an_orphan_a_directory_names);
	RUN(test_wrong_link_count_is_repaired);
	RUN(test_entry_naming_free_inode_is_reported);
	RUN(test_bad_entry_hash_is_reported);
	RUN(test_bad_entries_are_reported);
	RUN(test_parent_mismatch_is_reported);
	RUN(test_directory_cycles_are_reported);
	RUN(test_bad_map_pointers_are_reported);
	RUN(test_map_pointing_at_itself_is_reported);
	RUN(test_wrong_superblock_counters_are_repaired);
	RUN(test_wrong_block_and_entry_counts_are_repaired);
	RUN(test_orphan_list_damage_is_reported);
	RUN(test_bad_inodes_are_reported);
	RUN(test_journal_state_is_checked);
	RUN(test_bitmap_damage_is_reported);
	RUN(test_superblock_bit_flips_are_repaired_from_backup);
	RUN(test_backup_superblock_damage_is_repaired);
	RUN(test_pool_without_backup_is_accepted);
	RUN(test_backup_of_a_pool_smaller_than_its_device);
	RUN(test_checksums_are_verified);
	RUN(test_random_engine_operations_stay_clean);
	RUN(test_random_mutations_never_crash_and_repairs_converge);
	free(clean_img);
	free(orphan_img);
	return T_EXIT_PASS;
}

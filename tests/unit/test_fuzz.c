/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_fuzz.c -- a corrupt pool is refused or served safely:
 * never a crash, a hang, an abort() or a cross-link.
 *
 * A small tree (files of every kind, directories of several blocks, xattrs,
 * maps of height 1 to 3) is built through the engine, in three images: as
 * cleanly unmounted, as while mounted with two unlinked files open (an
 * orphan list), and with a committed transaction not yet applied (a journal
 * to replay). Each file's data is one 8-byte word repeated, TAG(its inode
 * number), so a read that returns another file's bytes is seen at once.
 *
 * Each run mutates a few hundred copies from a fixed seed (FUZZ_SEED, or a
 * default; printed) with bit flips and field-aware changes of the
 * superblock, inodes, map nodes, directory entries, xattr blocks, the
 * bitmap and journal records. Every image is then mounted as the daemon
 * mounts it, through the same pmem API the FUSE operations call:
 *   - refused (the checked mount says why), or mounted; a refused image is
 *     mounted again with PM_MOUNT_FORCE, so the engine's own checks are
 *     exercised on corrupt pools too;
 *   - a mounted image must survive: list everything recursively with stat,
 *     list and read every xattr, read every file, write a new file, list
 *     and read everything again, delete everything, unmount.
 * A read word that is another file's tag, or in a regular file of the
 * original tree neither zero nor its own tag (a map node, a directory
 * block), fails the test; so does an alarm (a hang), a crash, an abort or,
 * under ASan/UBSan, any report. Errors from the operations are fine:
 * EUCLEAN, EROFS, ESTALE, ... are what a corrupt pool should give.
 *
 * One image in four gets, alone, one of the shapes of issue 16 instead: a
 * map pointer of one file naming another file's map node, a data pointer
 * naming another file's data block, an orphan a directory names, a counter
 * out of range in both superblocks. Then every image goes through fsck
 * --repair as fsck.pinfs runs it (a shape must be mended entirely); a
 * second check must find only what the repair said it left, and the
 * result is mounted (forced if problems are left) and walked as above: no
 * file may read another file's tag, a deleted file's included, and a name
 * a shape made must keep naming its inode (not ESTALE, not another file).
 *
 * FUZZ_IMAGES sets the number of images (default 300), FUZZ_ONLY=N runs
 * image N alone, FUZZ_VERBOSE=1 names each image before it runs. With
 * FUZZ_WRITE=PATH and FUZZ_ONLY=N the program only writes mutated image N
 * to PATH (tests/mount/test_fuzz_mount.py mounts it for real) and prints
 * which tree it holds.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "pmem/crc32c.h"
#include "pmem/fs.h"
#include "pmem/fs_int.h"
#include "pmem/fsck.h"
#include "tests/unit/check.h"
#include "tests/unit/names.h"
#include "tests/unit/record.h"

#define POOL_SIZE (16ull << 20)
#define GUARD (1ull << 20)
#define TAG_BASE 0xf1f1000000000000ull
#define TAG_MASK 0xffff000000000000ull
#define TAG(ino) (TAG_BASE | (uint64_t)(ino))
#define MAX_READ (8u << 20) /* bytes of data read per file and walk */
#define IMAGE_SECONDS 60u   /* an image that takes longer hangs */

enum { B_CLEAN, B_ORPHAN, B_JOURNAL, NBASE };
static const char *const base_name[NBASE] = { "clean", "orphan", "journal" };

static uint8_t *base[NBASE];
static uint8_t *orig_reg[NBASE]; /* per inode: a regular file of the tree */
static uint64_t ninodes_geo;
static struct pm_super geo;

/* blocks of the clean image, for mutations that point somewhere likely */
struct blist {
	uint64_t *b;
	size_t n, cap;
};
static struct blist used_blocks, map_nodes, dir_blocks, xattr_blocks;
static uint64_t maxino;

/* The regular files' maps in the clean image, for the shapes that make
 * one file name another's blocks: every map node (with its level) and
 * every data block. */
struct fblock {
	uint64_t ino, blk;
	unsigned level; /* 0: a data block */
};
static struct fblock *fblocks;
static size_t nfblocks, capfblocks;

/* Files of the tree by name, for the named-orphan shape. */
struct named {
	uint64_t dir, ino, size;
	const char *name;
};
static struct named names_known[8];
static unsigned nnames_known;

/* Set by the shapes: what the image must still show. */
static struct {
	bool on;
	struct named n;	 /* this name must keep naming this inode and size */
} expect_name;
static bool must_repair; /* fsck --repair must mend the image entirely */

static uint8_t *region, *img; /* GUARD | image | GUARD */
static uint8_t *saved;	      /* the mutated image, before a mount replays it */

static volatile sig_atomic_t cur_image = -1;
static uint64_t run_seed;

/* Takes a copy of the image at the first drain that finds the journal
 * header COMMITTED: step 3 of pm_tx_commit done, step 4 not begun. */
struct snap {
	uint8_t *img;
	bool armed;
	uint8_t *shot;
};

static void snap_drain(void *ctx)
{
	struct snap *s = ctx;
	const struct pm_jhdr *h;

	if (!s || !s->armed || s->shot)
		return;
	h = (const void *)(s->img + ((const struct pm_super *)s->img)->journal_start * PM_BLOCK_SIZE);
	if (h->state != PM_JSTATE_COMMITTED)
		return;
	s->shot = malloc(POOL_SIZE);
	if (s->shot)
		memcpy(s->shot, s->img, POOL_SIZE);
}

/* no flushes; a drain may take a snapshot (ctx: a struct snap, or NULL) */
static const struct pm_persist_ops snap_ops = { noop_flush, snap_drain, NULL };

static void on_alarm(int sig)
{
	char msg[160];
	int n;

	(void)sig;
	n = snprintf(msg, sizeof(msg), "fuzz: image %d (FUZZ_SEED=%llu FUZZ_ONLY=%d) hangs\n",
		     (int)cur_image, (unsigned long long)run_seed, (int)cur_image);
	if (write(2, msg, (size_t)n) < 0)
		_exit(2);
	_exit(1);
}

/* ---- random numbers: splitmix64 ------------------------------------------ */

static uint64_t rnd_state;

static uint64_t rnd(void)
{
	uint64_t z = (rnd_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t pick(const struct blist *l)
{
	return l->n ? l->b[rnd() % l->n] : rnd() % geo.nblocks;
}

static void badd(struct blist *l, uint64_t b)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 256;
		l->b = realloc(l->b, l->cap * sizeof(*l->b));
		if (!l->b)
			abort();
	}
	l->b[l->n++] = b;
}

/* ---- the tree ------------------------------------------------------------- */

static ssize_t write_tag(struct pm_fs *fs, const struct pm_cred *cr, struct pm_inode *ip,
			 uint64_t off, size_t len)
{
	uint64_t *buf = malloc(len);
	struct iovec iov = { buf, len };
	ssize_t n;
	size_t i;

	if (!buf)
		return -ENOMEM;
	for (i = 0; i < len / 8; i++)
		buf[i] = TAG(pm_ino(ip));
	n = pm_write(fs, cr, ip, off, &iov, 1);
	free(buf);
	return n;
}

static int mkfile(struct pm_fs *fs, const struct pm_cred *cr, struct pm_inode *dir,
		  const char *name, size_t len, struct pm_inode **out)
{
	struct pm_inode *ip;

	CHECK_OK(pm_mknod(fs, cr, dir, name, S_IFREG | 0644, 0, &ip));
	if (len)
		CHECK_EQ(write_tag(fs, cr, ip, 0, len), len);
	if (out)
		*out = ip;
	else
		pm_iput(fs, ip);
	return T_EXIT_PASS;
}

/* The same bytes whenever the tree is built, so a seed replays the same
 * run: timestamps are fixed (the journal image's records keep the build's
 * times; they only reach inodes the mutations rarely touch), and so are
 * the uuid and mkfs time (fix_super, right after mkfs). */
static void fix_times(uint8_t *im)
{
	struct pm_super *sb = (void *)im;
	struct pm_time t = { 1700000000, 0, 0 };
	uint64_t i;

	for (i = PM_ROOT_INO; i < sb->ninodes; i++) {
		struct pm_dinode *d = (struct pm_dinode *)(im + (sb->itable_start +
								 i / PM_INODES_PER_BLOCK) *
								PM_BLOCK_SIZE) +
				      i % PM_INODES_PER_BLOCK;
		if (d->mode)
			d->atime = d->mtime = d->ctime = d->btime = t;
	}
}

/* The uuid and mkfs time, in the superblock and its backup (a copy of it
 * as mkfs wrote it), before anything else is written: every later copy of
 * the superblock, journal records included, has them. */
static void fix_super(uint8_t *im)
{
	struct pm_super *sb = (void *)im;

	memset(sb->uuid, 0x5a, sizeof(sb->uuid));
	sb->mkfs_time = 1700000000;
	sb->sb_csum = pm_super_csum(sb);
	*pm_backup_ptr(im, sb) = *sb;
}

/*
 *	/small        5000 bytes, xattrs user.a and user.b; /hard links it
 *	/sl           symlink -> d1/deep
 *	/fifo, /null  a FIFO, a character device
 *	/d1/          xattr user.dir
 *	/d1/tall      600 blocks: a map of height 2
 *	/d1/deep      8 KiB at 0 and 4 KiB at 1 GiB: a map of height 3
 *	/d1/d2/x      4 KiB
 *	/d3/          200 long names (every 4th a 4 KiB file): several blocks
 * orphan image: /o1 and /d1/d2/o2, unlinked while open, with data;
 * journal image: /d1/j created by a committed transaction not yet applied.
 */
static int build(void)
{
	struct pm_cred cr = { getuid(), getgid(), 0, NULL, 0 };
	struct pm_mkfs_opts o = { .size = POOL_SIZE };
	struct snap sn = { 0 };
	struct pm_persist_ops ops = snap_ops;
	struct pm_inode *root, *d1, *d2, *d3, *small, *sl, *ip, *o1, *o2;
	struct pm_pool *pool;
	struct pm_fs *fs;
	char err[256], name[64];
	uint8_t *im = malloc(POOL_SIZE);
	char val[300];
	int i;

	CHECK(im);
	memset(im, 0, POOL_SIZE);
	memset(val, 'v', sizeof(val));
	sn.img = im;
	ops.ctx = &sn;
	CHECK_OK(pm_mkfs_mem(im, POOL_SIZE, &o, &ops));
	fix_super(im);
	CHECK_OK(pm_pool_open_mem(im, POOL_SIZE, &ops, &pool, err, sizeof(err)));
	CHECK_OK(pm_fs_mount(pool, &fs, err, sizeof(err)));
	CHECK_OK(pm_iget(fs, PM_ROOT_INO, &root));
	CHECK_OK(pm_mknod(fs, &cr, root, "d1", S_IFDIR | 0755, 0, &d1));
	CHECK_OK(pm_mknod(fs, &cr, d1, "d2", S_IFDIR | 0755, 0, &d2));
	CHECK_OK(pm_mknod(fs, &cr, root, "d3", S_IFDIR | 0755, 0, &d3));
	if (mkfile(fs, &cr, root, "small", 5000 & ~7u, &small))
		return T_EXIT_FAIL;
	CHECK_OK(pm_setxattr(fs, small, "user.a", val, 10, 0));
	CHECK_OK(pm_setxattr(fs, small, "user.b", val, sizeof(val), 0));
	CHECK_OK(pm_setxattr(fs, d1, "user.dir", "x", 1, 0));
	CHECK_OK(pm_link(fs, small, root, "hard"));
	CHECK_OK(pm_symlink(fs, &cr, root, "sl", "d1/deep", &sl));
	pm_iput(fs, sl);
	CHECK_OK(pm_mknod(fs, &cr, root, "fifo", S_IFIFO | 0644, 0, &ip));
	pm_iput(fs, ip);
	CHECK_OK(pm_mknod(fs, &cr, root, "null", S_IFCHR | 0644, makedev(1, 3), &ip));
	pm_iput(fs, ip);
	if (mkfile(fs, &cr, d1, "tall", 600 * PM_BLOCK_SIZE, NULL))
		return T_EXIT_FAIL;
	if (mkfile(fs, &cr, d1, "deep", 8192, &ip))
		return T_EXIT_FAIL;
	CHECK_EQ(write_tag(fs, &cr, ip, 1ull << 30, 4096), 4096);
	pm_iput(fs, ip);
	if (mkfile(fs, &cr, d2, "x", 4096, NULL))
		return T_EXIT_FAIL;
	for (i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "a-long-name-to-take-two-slots-%04d", i);
		if (mkfile(fs, &cr, d3, name, i % 4 ? 0 : 4096, NULL))
			return T_EXIT_FAIL;
	}
	if (mkfile(fs, &cr, root, "o1", 3 * PM_BLOCK_SIZE, &o1) ||
	    mkfile(fs, &cr, d2, "o2", PM_BLOCK_SIZE, &o2))
		return T_EXIT_FAIL;
	CHECK_OK(pm_unlink(fs, root, "o1"));
	CHECK_OK(pm_unlink(fs, d2, "o2"));
	base[B_ORPHAN] = malloc(POOL_SIZE);
	CHECK(base[B_ORPHAN]);
	memcpy(base[B_ORPHAN], im, POOL_SIZE);
	pm_iput(fs, o1);
	pm_iput(fs, o2);

	/* the journal image: the commit of the next change, not applied */
	sn.armed = true;
	if (mkfile(fs, &cr, d1, "j", 4096, NULL))
		return T_EXIT_FAIL;
	CHECK(sn.shot);
	base[B_JOURNAL] = sn.shot;
	sn.armed = false;
	CHECK_OK(pm_unlink(fs, d1, "j"));

	pm_iput(fs, small);
	pm_iput(fs, d1);
	pm_iput(fs, d2);
	pm_iput(fs, d3);
	pm_iput(fs, root);
	pm_fs_unmount(&fs);
	pm_pool_close(&pool);
	base[B_CLEAN] = im;
	for (i = 0; i < NBASE; i++)
		fix_times(base[i]);
	geo = *(struct pm_super *)im;
	ninodes_geo = geo.ninodes;
	return T_EXIT_PASS;
}

struct visit_ctx {
	const struct pm_dinode *d;
	uint64_t ino;
};

static void visit(void *ctx, uint64_t fblk, uint64_t pblk, unsigned level)
{
	const struct visit_ctx *v = ctx;

	(void)fblk;
	if (level > 0)
		badd(&map_nodes, pblk);
	else if (S_ISDIR(v->d->mode))
		badd(&dir_blocks, pblk);
	if (S_ISREG(v->d->mode)) {
		if (nfblocks == capfblocks) {
			capfblocks = capfblocks ? capfblocks * 2 : 256;
			fblocks = realloc(fblocks, capfblocks * sizeof(*fblocks));
			if (!fblocks)
				abort();
		}
		fblocks[nfblocks++] = (struct fblock){ v->ino, pblk, level };
	}
}

/* The inode @path names in @fs, with its directory; 0 if none. */
static int learn_name(struct pm_fs *fs, const char *dir, const char *name)
{
	struct pm_inode *root, *d, *ip;
	struct stat st;

	CHECK_OK(pm_iget(fs, PM_ROOT_INO, &root));
	if (dir)
		CHECK_OK(pm_lookup(fs, root, dir, &d));
	else
		d = root;
	CHECK_OK(pm_lookup(fs, d, name, &ip));
	pm_stat(fs, ip, &st);
	names_known[nnames_known++] = (struct named){ pm_ino(d), pm_ino(ip), (uint64_t)st.st_size,
						       name };
	pm_iput(fs, ip);
	if (d != root)
		pm_iput(fs, d);
	pm_iput(fs, root);
	return T_EXIT_PASS;
}

/* Learns the tree from each base image, its journal replayed on a copy:
 * which inodes are regular files, which blocks hold what. */
static int learn(void)
{
	struct pm_pool *pool;
	char err[256];
	uint64_t i, b;
	int k;

	for (k = 0; k < NBASE; k++) {
		memcpy(img, base[k], POOL_SIZE);
		CHECK_OK(pm_pool_open_mem(img, POOL_SIZE, &snap_ops, &pool, err, sizeof(err)));
		CHECK_GE(pm_journal_recover(pool, err, sizeof(err)), 0);
		orig_reg[k] = calloc(ninodes_geo, 1);
		CHECK(orig_reg[k]);
		for (i = PM_ROOT_INO; i < ninodes_geo; i++) {
			const struct pm_dinode *d = pm_dinode_ptr(pool, i);
			if (!d->mode)
				continue;
			orig_reg[k][i] = S_ISREG(d->mode);
			if (k != B_CLEAN)
				continue;
			if (i > maxino)
				maxino = i;
			{
				struct visit_ctx v = { d, i };
				CHECK_OK(pm_bmap_walk(pool, d, visit, &v));
			}
			if (d->xattr_block)
				badd(&xattr_blocks, d->xattr_block);
		}
		if (k == B_CLEAN)
			for (b = geo.data_start; b < geo.nblocks; b++)
				if (img[geo.bitmap_start * PM_BLOCK_SIZE + b / 8] & (1u << (b % 8)))
					badd(&used_blocks, b);
		pm_pool_close(&pool);
	}
	/* names of regular files, through the engine (on a copy) */
	{
		struct pm_fs *fs;
		memcpy(img, base[B_CLEAN], POOL_SIZE);
		CHECK_OK(pm_pool_open_mem(img, POOL_SIZE, &snap_ops, &pool, err, sizeof(err)));
		if (pm_fs_mount(pool, &fs, err, sizeof(err))) {
			fprintf(stderr, "mount: %s\n", err);
			return T_EXIT_FAIL;
		}
		if (learn_name(fs, NULL, "small") || learn_name(fs, "d1", "tall") ||
		    learn_name(fs, "d1", "deep"))
			return T_EXIT_FAIL;
		pm_fs_unmount(&fs);
		pm_pool_close(&pool);
	}
	CHECK_GT(map_nodes.n, 3);
	CHECK_GE(dir_blocks.n, 5);
	CHECK_EQ(xattr_blocks.n, 2);
	return T_EXIT_PASS;
}

/* ---- mutations ------------------------------------------------------------ */

static void *blk(uint64_t b)
{
	return img + b * PM_BLOCK_SIZE;
}

static struct pm_dinode *inode_at(uint64_t i)
{
	return (struct pm_dinode *)blk(geo.itable_start + i / PM_INODES_PER_BLOCK) +
	       i % PM_INODES_PER_BLOCK;
}

static void resum(void)
{
	struct pm_super *sb = (void *)img;

	sb->sb_csum = pm_super_csum(sb);
}

/* A block number likely to be followed, or a wild one. */
static uint64_t any_block(void)
{
	switch (rnd() % 6) {
	case 0: return pick(&used_blocks);
	case 1: return pick(&map_nodes);
	case 2: return pick(&dir_blocks);
	case 3: return rnd() % (geo.nblocks + 8);
	case 4: return rnd() % 8;
	default: return rnd();
	}
}

static uint64_t any_ino(void)
{
	switch (rnd() % 3) {
	case 0: return rnd() % (maxino + 4);
	case 1: return rnd() % (ninodes_geo + 4);
	default: return rnd();
	}
}

static uint32_t jcsum(const struct pm_jhdr *h, const uint8_t *body)
{
	struct pm_jhdr t = *h;

	t.csum = 0;
	return pm_crc32c(pm_crc32c(0, &t, sizeof(t)), body, h->body_len);
}

/* A journal record: the image's own one changed, or a crafted one; the
 * CRC is made right so that replay believes it. */
static void mutate_journal(void)
{
	struct pm_jhdr *h = blk(geo.journal_start);
	uint8_t *body = blk(geo.journal_start + 1);
	struct pm_jrec r;
	const uint64_t cap = (geo.journal_blocks - 1) * PM_BLOCK_SIZE - sizeof(r) - 8;
	static const uint64_t offs[] = { 0, 4096, ~0ull - 4095, ~0ull, 1ull << 63 };

	if (h->magic != PM_JOURNAL_MAGIC || h->state != PM_JSTATE_COMMITTED || rnd() % 3 == 0) {
		/* a fresh one-record transaction */
		memset(h, 0, sizeof(*h));
		h->magic = PM_JOURNAL_MAGIC;
		h->seq = 1000;
		h->state = PM_JSTATE_COMMITTED;
		h->nrecs = 1;
		r.len = (uint32_t)(1 + rnd() % 64);
		r.off = rnd() % 2 ? offs[rnd() % 5] : rnd() % POOL_SIZE;
		r.pad = 0;
		memset(body + sizeof(r), (int)(rnd() & 0xff), (r.len + 7u) & ~7u);
		h->body_len = sizeof(r) + ((r.len + 7u) & ~7u);
	} else {
		memcpy(&r, body, sizeof(r));
		switch (rnd() % 5) {
		case 0: r.off = offs[rnd() % 5]; break;
		case 1: r.off = rnd() % (POOL_SIZE + 8192); break;
		case 2: r.len = (uint32_t)rnd(); break;
		case 3: h->nrecs = (uint32_t)(rnd() % 100); break;
		default: h->body_len = rnd() % 2 ? rnd() : rnd() % 100000; break;
		}
	}
	/* A CRC-valid journal may say anything, and replay obeys it: what it
	 * writes into a file's data is that file's data. So a record that
	 * reaches the data area writes whole zero words, which the read
	 * check accepts; its range checks are still exercised. */
	if (r.len < cap && pm_range_ok(r.off, r.len, POOL_SIZE) &&
	    r.off + r.len > geo.data_start * PM_BLOCK_SIZE) {
		r.off &= ~7ull;
		r.len = (r.len + 7u) & ~7u;
		memset(body + sizeof(r), 0, r.len);
	}
	memcpy(body, &r, sizeof(r));
	if (h->body_len <= (geo.journal_blocks - 1) * PM_BLOCK_SIZE)
		h->csum = jcsum(h, body);
}

/* An entry of map node @m: one in use, or any (a hole, mostly) */
static unsigned some_entry(const uint64_t *m)
{
	unsigned i, start = (unsigned)(rnd() % PM_MAP_FANOUT);

	if (rnd() % 2)
		for (i = 0; i < PM_MAP_FANOUT; i++)
			if (m[(start + i) % PM_MAP_FANOUT])
				return (start + i) % PM_MAP_FANOUT;
	return start;
}

/* A pointer in one regular file's map names a block of another file: a map
 * node one level down (@data false), or a data block. The repair must give
 * the block to the file whose structure vouches for it, or to neither. */
static void share_block(bool data)
{
	unsigned tries;

	for (tries = 0; tries < 256; tries++) {
		const struct fblock *p = &fblocks[rnd() % nfblocks];
		size_t i, start = (size_t)(rnd() % nfblocks);

		if (p->level < (data ? 1u : 2u))
			continue;
		for (i = 0; i < nfblocks; i++) {
			const struct fblock *x = &fblocks[(start + i) % nfblocks];
			if (x->ino != p->ino && x->level == p->level - 1) {
				uint64_t *m = blk(p->blk);
				m[some_entry(m)] = x->blk;
				return;
			}
		}
	}
}

/* An inode on the orphan list that a directory entry names: /o1 or /o2 of
 * the orphan image named again in the root, or a named file of the tree put
 * on the list with link count 0. A forced mount must not free it. */
static void named_orphan(int b)
{
	struct pm_super *sb = (void *)img;
	struct pm_dinode *root = inode_at(PM_ROOT_INO), *d;

	if (b == B_ORPHAN && sb->orphan_head && rnd() % 2 && root->map_height == 1) {
		uint64_t o = sb->orphan_head;
		uint8_t *dirb = blk(((uint64_t *)blk(root->map_root))[0]);
		static const char name[] = "orphan-named";
		unsigned s = 0;

		while (s < PM_DIR_SLOTS) {
			struct pm_dirent *de = (void *)(dirb + s * PM_DIR_SLOT);
			if (de->ino) {
				s += de->nslots ? de->nslots : 1;
				continue;
			}
			memset(de, 0, sizeof(*de));
			de->ino = o;
			de->name_len = sizeof(name) - 1;
			de->hash = pm_name_hash(name, de->name_len);
			de->type = (uint8_t)pm_dtype(S_IFREG);
			de->nslots = 1;
			memcpy(de->name, name, de->name_len);
			root->nentries++;
			expect_name.n = (struct named){ PM_ROOT_INO, o, inode_at(o)->size, name };
			expect_name.on = true;
			return;
		}
	}
	expect_name.n = names_known[rnd() % nnames_known];
	expect_name.on = true;
	d = inode_at(expect_name.n.ino);
	d->nlink = 0;
	d->flags |= PM_IFL_ORPHAN;
	d->orphan_prev = 0;
	d->orphan_next = sb->orphan_head < ninodes_geo ? sb->orphan_head : 0;
	if (d->orphan_next)
		inode_at(d->orphan_next)->orphan_prev = expect_name.n.ino;
	sb->orphan_head = expect_name.n.ino;
	resum();
}

/* A counter out of range in both superblock copies, both checksums valid:
 * fsck recomputes it. */
static void counters_out_of_range(void)
{
	struct pm_super *sb = (void *)img, *bk = pm_backup_ptr(img, sb);
	uint64_t v = rnd() % 100;

	switch (rnd() % 3) {
	case 0: sb->free_inodes = bk->free_inodes = geo.ninodes + v; break;
	case 1: sb->free_blocks = bk->free_blocks = geo.nblocks + v; break;
	default: sb->orphan_head = bk->orphan_head = geo.ninodes + v; break;
	}
	resum();
	bk->sb_csum = pm_super_csum(bk);
}

/*
 * One image in four gets one of the shapes of issue 16, alone; the others
 * one to four of the mutations before them. Alone, because two pointers
 * swapped (each file's pointer overwritten with the other's block) leave
 * no trace fsck can see: no block named twice, none leaked, every count
 * right; only an owner recorded with each block would tell (fsck.pinfs(8),
 * NOTES). Alone, each shape is one fsck must mend entirely (must_repair).
 */
static void mutate(int b)
{
	unsigned k, n = 1 + (unsigned)(rnd() % 4);
	bool shape = rnd() % 4 == 0;

	expect_name.on = false;
	must_repair = false;
	if (shape)
		n = 1;
	for (k = 0; k < n; k++) {
		uint64_t ino = PM_ROOT_INO + rnd() % maxino;
		struct pm_dinode *d = inode_at(ino);
		uint8_t *db = (uint8_t *)d;
		unsigned kind = shape ? 12 + (unsigned)(rnd() % 4) : (unsigned)(rnd() % 12);

		if (getenv("FUZZ_VERBOSE"))
			fprintf(stderr, "fuzz:   mutation %u, inode %llu\n", kind,
				(unsigned long long)ino);
		switch (kind) {
		case 0: /* a bit anywhere before the data area */
			img[rnd() % (geo.data_start * PM_BLOCK_SIZE)] ^= (uint8_t)(1u << (rnd() % 8));
			break;
		case 1: /* a byte of an inode */
			db[rnd() % sizeof(*d)] ^= (uint8_t)(1 + rnd() % 255);
			break;
		case 2: /* a field of an inode */
			switch (rnd() % 10) {
			case 0: d->map_root = any_block(); break;
			case 1: d->xattr_block = any_block(); break;
			case 2: d->map_height = (uint32_t)(rnd() % 8); break;
			case 3: d->size = rnd() % 2 ? rnd() : rnd() % (64u << 20); break;
			case 4: d->nlink = (uint32_t)(rnd() % 3); break;
			case 5: d->mode ^= 1u << (12 + rnd() % 4); break;
			case 6: d->flags ^= PM_IFL_ORPHAN; break;
			case 7: d->parent = any_ino(); break;
			case 8: d->orphan_next = any_ino(); break;
			default: d->nentries = rnd() % 2 ? rnd() % 300 : rnd(); break;
			}
			break;
		case 3: { /* a map node entry */
			uint64_t *m = blk(pick(&map_nodes));
			m[rnd() % PM_MAP_FANOUT] = any_block();
			break;
		}
		case 4: /* a bit of a map node, directory block or xattr block */
			((uint8_t *)blk(rnd() % 3 == 0	 ? pick(&map_nodes)
					: rnd() % 2 ? pick(&dir_blocks)
						    : pick(&xattr_blocks)))[rnd() % PM_BLOCK_SIZE] ^=
				(uint8_t)(1u << (rnd() % 8));
			break;
		case 5: case 6: { /* a field of a directory entry */
			uint8_t *b = blk(pick(&dir_blocks));
			struct pm_dirent *de = (void *)(b + (rnd() % PM_DIR_SLOTS) * PM_DIR_SLOT);
			unsigned s;
			for (s = 0; s < 8 && !de->ino; s++)
				de = (void *)(b + (rnd() % PM_DIR_SLOTS) * PM_DIR_SLOT);
			switch (rnd() % 7) {
			case 0: de->nslots = (uint8_t)(rnd() % 12); break;
			case 1: de->name_len = (uint8_t)rnd(); break;
			case 2: de->ino = any_ino(); break;
			case 3: de->hash ^= 1u << (rnd() % 32); break;
			case 4: de->name[rnd() % 16] = rnd() % 2 ? '/' : 0; break;
			case 5: de->name_len = 1 + (uint8_t)(rnd() % 2); memset(de->name, '.', 2); break;
			default: de->type = (uint8_t)rnd(); break;
			}
			break;
		}
		case 7: { /* a field of an xattr block */
			uint8_t *b = blk(pick(&xattr_blocks));
			struct pm_xattr_hdr *h = (void *)b;
			struct pm_xattr_ent *e = (void *)(h + 1);
			switch (rnd() % 5) {
			case 0: h->count = (uint32_t)(rnd() % 2 ? rnd() : rnd() % 10); break;
			case 1: h->used = (uint32_t)(rnd() % 2 ? rnd() : rnd() % 5000); break;
			case 2: e->name_len = (uint8_t)rnd(); break;
			case 3: e->value_len = (uint16_t)rnd(); break;
			default: h->magic ^= 1u << (rnd() % 32); break;
			}
			break;
		}
		case 8: { /* the bitmap: an in-use block freed, or a free one taken */
			uint64_t b = rnd() % 2 ? pick(&used_blocks)
					       : geo.data_start + rnd() % (geo.nblocks - geo.data_start);
			((uint8_t *)blk(geo.bitmap_start))[b / 8] ^= (uint8_t)(1u << (b % 8));
			break;
		}
		case 9: { /* a superblock field, checksum kept valid */
			struct pm_super *sb = (void *)img;
			switch (rnd() % 6) {
			case 0: sb->free_blocks = rnd() % 2 ? rnd() % geo.nblocks : sb->free_blocks + 1; break;
			case 1: sb->free_inodes = rnd() % 3 == 0 ? 0 : rnd() % ninodes_geo; break;
			case 2: sb->orphan_head = any_ino(); break;
			case 3: sb->clean = (uint32_t)(rnd() % 3); break;
			case 4: sb->errors = (uint32_t)(rnd() % 2); break;
			default: sb->next_generation = rnd(); break;
			}
			resum();
			break;
		}
		case 12: /* a map node of another file (issue 16) */
			share_block(false);
			must_repair = true;
			break;
		case 13: /* a data block of another file */
			share_block(true);
			must_repair = true;
			break;
		case 14: /* an orphan a directory names */
			named_orphan(b);
			must_repair = true;
			break;
		case 15: /* counters out of range in both superblocks */
			counters_out_of_range();
			must_repair = true;
			break;
		default: /* journal records */
			mutate_journal();
			break;
		}
	}
}

/* ---- exercising a mounted image ------------------------------------------ */

struct ctx {
	struct pm_fs *fs;
	int base;
	uint64_t *seen; /* directories listed in this walk */
	size_t nseen, capseen;
	uint64_t bytes;
	const char *phase;
	bool repaired; /* the image went through fsck --repair */
};

static bool seen(struct ctx *c, uint64_t ino)
{
	size_t i;

	for (i = 0; i < c->nseen; i++)
		if (c->seen[i] == ino)
			return true;
	if (c->nseen == c->capseen) {
		c->capseen = c->capseen ? c->capseen * 2 : 64;
		c->seen = realloc(c->seen, c->capseen * sizeof(*c->seen));
		if (!c->seen)
			abort();
	}
	c->seen[c->nseen++] = ino;
	return false;
}

/* Every word a file returns is zero or its own tag; another file's tag
 * anywhere is a cross-link, and a regular file of the tree returns nothing
 * else (no map node, no directory block). After fsck --repair only the
 * first holds: a repair may leave a file what its own map made of its own
 * blocks (a map node it named as data), never another file's bytes, nor a
 * deleted file's. */
static int check_bytes(struct ctx *c, uint64_t ino, uint64_t off, const uint8_t *p, size_t len)
{
	bool reg = !c->repaired && ino < ninodes_geo && orig_reg[c->base][ino];
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		if (((w & TAG_MASK) == TAG_BASE && w != TAG(ino)) || (reg && w && w != TAG(ino))) {
			fprintf(stderr, "%s: inode %llu returns 0x%016llx at offset %llu: not its own bytes\n",
				c->phase, (unsigned long long)ino, (unsigned long long)w,
				(unsigned long long)(off + i));
			return T_EXIT_FAIL;
		}
	}
	return T_EXIT_PASS;
}

static int read_file(struct ctx *c, struct pm_inode *ip, uint64_t size)
{
	uint64_t off = 0, done = 0;

	while (off < size && done < MAX_READ) {
		int64_t d = pm_lseek(c->fs, ip, off, SEEK_DATA);
		struct iovec iov[32];
		size_t bytes;
		int n, i;
		uint64_t o;

		if (d < 0)
			break; /* only a hole is left (or an error) */
		off = (uint64_t)d;
		n = pm_read_begin(c->fs, ip, off, 256 << 10, iov, 32, &bytes);
		if (n < 0)
			break;
		for (i = 0, o = off; i < n; i++) {
			if (check_bytes(c, pm_ino(ip), o, iov[i].iov_base, iov[i].iov_len)) {
				pm_read_end(c->fs, ip);
				return T_EXIT_FAIL;
			}
			o += iov[i].iov_len;
		}
		pm_read_end(c->fs, ip);
		if (!bytes)
			break;
		off += bytes;
		done += bytes;
	}
	c->bytes += done;
	return T_EXIT_PASS;
}

static void read_xattrs(struct ctx *c, struct pm_inode *ip)
{
	ssize_t n = pm_listxattr(c->fs, ip, NULL, 0);
	char *list, *p, val[PM_BLOCK_SIZE];

	if (n <= 0)
		return;
	list = malloc((size_t)n);
	if (!list)
		abort();
	if (pm_listxattr(c->fs, ip, list, (size_t)n) == n)
		for (p = list; p < list + n; p += strlen(p) + 1)
			(void)pm_getxattr(c->fs, ip, p, val, sizeof(val));
	free(list);
}

/* ls -lR, getfattr -d and cat of everything below @dir. */
static int walk(struct ctx *c, struct pm_inode *dir, int depth)
{
	struct names ns = { 0 };
	size_t k;
	int rc = T_EXIT_PASS;

	if (depth > 12 || seen(c, pm_ino(dir)))
		return T_EXIT_PASS;
	read_xattrs(c, dir);
	(void)pm_readdir(c->fs, dir, 0, names_collect, &ns);
	for (k = 0; k < ns.count && rc == T_EXIT_PASS; k++) {
		struct pm_inode *ip;
		struct stat st;
		char buf[PM_SYMLINK_MAX + 1];

		if (pm_lookup(c->fs, dir, ns.n[k], &ip))
			continue;
		pm_stat(c->fs, ip, &st);
		read_xattrs(c, ip);
		if (S_ISDIR(st.st_mode))
			rc = walk(c, ip, depth + 1);
		else if (S_ISREG(st.st_mode))
			rc = read_file(c, ip, (uint64_t)st.st_size);
		else if (S_ISLNK(st.st_mode))
			(void)pm_readlink(c->fs, ip, buf, sizeof(buf));
		pm_iput(c->fs, ip);
	}
	names_free(&ns);
	return rc;
}

/* rm -rf of everything below @dir. */
static void delete_all(struct ctx *c, struct pm_inode *dir, int depth)
{
	struct names ns = { 0 };
	size_t k;

	if (depth > 12 || seen(c, pm_ino(dir)))
		return;
	(void)pm_readdir(c->fs, dir, 0, names_collect, &ns);
	for (k = 0; k < ns.count; k++) {
		struct pm_inode *ip;
		bool isdir;

		if (pm_lookup(c->fs, dir, ns.n[k], &ip))
			continue;
		{
			struct stat st;
			pm_stat(c->fs, ip, &st);
			isdir = S_ISDIR(st.st_mode);
		}
		if (isdir)
			delete_all(c, ip, depth + 1);
		pm_iput(c->fs, ip);
		if (isdir)
			(void)pm_rmdir(c->fs, dir, ns.n[k]);
		else
			(void)pm_unlink(c->fs, dir, ns.n[k]);
	}
	names_free(&ns);
}

/* A new file in a pool that may be corrupt: if it can be written, it reads
 * back as written (its blocks were nobody's). */
static int write_new(struct ctx *c, struct pm_inode *root)
{
	struct pm_cred cr = { getuid(), getgid(), 0, NULL, 0 };
	struct pm_inode *ip;
	ssize_t n;

	if (pm_mknod(c->fs, &cr, root, "fuzz-new", S_IFREG | 0644, 0, &ip))
		return T_EXIT_PASS;
	n = write_tag(c->fs, &cr, ip, 0, 64 * PM_BLOCK_SIZE);
	(void)pm_setxattr(c->fs, ip, "user.new", "v", 1, 0);
	if (n > 0) {
		bool was = false;
		int rc;
		/* judged as a regular file of the tree: only its own tag */
		if (pm_ino(ip) < ninodes_geo) {
			was = orig_reg[c->base][pm_ino(ip)];
			orig_reg[c->base][pm_ino(ip)] = 1;
		}
		rc = read_file(c, ip, (uint64_t)n);
		if (pm_ino(ip) < ninodes_geo)
			orig_reg[c->base][pm_ino(ip)] = was;
		if (rc) {
			pm_iput(c->fs, ip);
			return T_EXIT_FAIL;
		}
	}
	pm_iput(c->fs, ip);
	return T_EXIT_PASS;
}

/* The name a shape made must still name its inode (expect_name), or be
 * refused as corrupt: a forced mount or a repair that freed an inode a
 * directory names would let the name read whatever took the inode next
 * (or ESTALE until something does). */
static int check_name(struct ctx *c)
{
	const struct named *n = &expect_name.n;
	struct pm_inode *d, *ip;
	struct stat st;
	int rc;

	if (!expect_name.on)
		return T_EXIT_PASS;
	CHECK_OK(pm_iget(c->fs, n->dir, &d));
	rc = pm_lookup(c->fs, d, n->name, &ip);
	pm_iput(c->fs, d);
	if (rc == -EUCLEAN)
		return T_EXIT_PASS; /* refused: the engine found it corrupt */
	if (rc) {
		fprintf(stderr, "%s: \"%s\" no longer names inode %llu: %s\n", c->phase, n->name,
			(unsigned long long)n->ino, strerror(-rc));
		return T_EXIT_FAIL;
	}
	pm_stat(c->fs, ip, &st);
	pm_iput(c->fs, ip);
	if (st.st_ino != n->ino || (uint64_t)st.st_size != n->size) {
		fprintf(stderr, "%s: \"%s\" names inode %llu of %lld bytes, not inode %llu of %llu\n",
			c->phase, n->name, (unsigned long long)st.st_ino, (long long)st.st_size,
			(unsigned long long)n->ino, (unsigned long long)n->size);
		return T_EXIT_FAIL;
	}
	return T_EXIT_PASS;
}

/* Mounts the image; 1 if refused, 0 if it mounted and survived. */
static int run_mount(int b, unsigned flags, bool repaired, int *refused, char *why, size_t whylen)
{
	struct ctx c = { .base = b, .repaired = repaired };
	struct pm_pool *pool;
	struct pm_inode *root;
	int rc;

	*refused = 1;
	if (pm_pool_open_mem(img, POOL_SIZE, &snap_ops, &pool, why, whylen))
		return T_EXIT_PASS;
	rc = pm_fs_mount_flags(pool, flags, &c.fs, why, whylen);
	if (rc) {
		CHECK(rc < 0);
		CHECK(why[0]);
		pm_pool_close(&pool);
		return T_EXIT_PASS;
	}
	*refused = 0;
	if (pm_iget(c.fs, PM_ROOT_INO, &root) == 0) {
		c.phase = repaired ? "first walk after fsck --repair" : "first walk";
		rc = check_name(&c);
		if (!rc)
			rc = walk(&c, root, 0);
		if (!rc)
			rc = write_new(&c, root);
		c.nseen = 0;
		c.phase = repaired ? "walk after a write, after fsck --repair" : "walk after a write";
		if (!rc)
			rc = check_name(&c);
		if (!rc)
			rc = walk(&c, root, 0);
		c.nseen = 0;
		if (!rc)
			delete_all(&c, root, 0);
		pm_iput(c.fs, root);
	}
	free(c.seen);
	pm_fs_unmount(&c.fs);
	pm_pool_close(&pool);
	return rc;
}

struct counts {
	unsigned long images, refused, mounted, forced, forced_refused, survived, roots[NBASE];
	unsigned long fsck_refused, repaired_all, repaired_part;
};

/* fsck --repair on the mutated image, as fsck.pinfs runs it (the backup
 * superblock if the primary is corrupt, the journal replayed), a second
 * check that finds only what the repair said it left, then a mount of the
 * result (forced if problems are left) that must survive as above: no
 * file reads another file's bytes, no name a shape made loses its inode. */
static int run_repair(int b, struct counts *n)
{
	struct pm_fsck_opts ro = { .repair = false }, rw = { .repair = true };
	struct pm_fsck_result r, r2;
	struct pm_pool *pool;
	char why[512] = "";
	int refused, rc;

	memcpy(img, saved, POOL_SIZE);
	if (pm_pool_open_mem_flags(img, POOL_SIZE, &snap_ops, PM_POOL_BACKUP_SB, &pool, why,
				   sizeof(why))) {
		if (getenv("FUZZ_VERBOSE"))
			fprintf(stderr, "fuzz:   fsck refuses it: %s\n", why);
		if (must_repair) {
			fprintf(stderr, "fsck cannot open the pool: %s\n", why);
			return T_EXIT_FAIL;
		}
		n->fsck_refused++;
		return T_EXIT_PASS;
	}
	/* as fsck.pinfs: a journal the replay refuses is left for the check
	 * (--repair discards it) */
	(void)pm_journal_recover(pool, NULL, 0);
	if (pm_pool_reload_super(pool, why, sizeof(why))) {
		pm_pool_close(&pool);
		if (must_repair) {
			fprintf(stderr, "fsck cannot check the pool after the replay: %s\n", why);
			return T_EXIT_FAIL;
		}
		n->fsck_refused++;
		return T_EXIT_PASS;
	}
	rc = pm_fsck_ex(pool, &rw, getenv("FUZZ_VERBOSE") ? stderr : NULL, &r);
	pm_pool_close(&pool);
	CHECK_OK(rc);
	CHECK_OK(pm_pool_open_mem_flags(img, POOL_SIZE, &snap_ops, PM_POOL_BACKUP_SB, &pool, why,
					sizeof(why)));
	rc = pm_fsck_ex(pool, &ro, NULL, &r2);
	pm_pool_close(&pool);
	CHECK_OK(rc);
	CHECK_UEQ(r2.errors, r.errors - r.repaired);
	if (must_repair)
		CHECK_UEQ(r.repaired, r.errors);
	if (r.repaired == r.errors)
		n->repaired_all++;
	else
		n->repaired_part++;
	rc = run_mount(b, r.repaired == r.errors ? 0 : PM_MOUNT_FORCE, true, &refused, why,
		       sizeof(why));
	if (rc)
		return rc;
	if (refused && r.repaired == r.errors) {
		fprintf(stderr, "a pool fsck --repair left clean is refused: %s\n", why);
		return T_EXIT_FAIL;
	}
	return T_EXIT_PASS;
}

static int one_image(unsigned long i, struct counts *n)
{
	char why[512] = "";
	int b, refused, rc;

	rnd_state = run_seed * 0x100000001b3ull + i;
	b = (int)(rnd() % NBASE);
	memcpy(img, base[b], POOL_SIZE);
	mutate(b);
	memcpy(saved, img, POOL_SIZE);
	cur_image = (int)i;
	alarm(IMAGE_SECONDS);
	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "fuzz: image %lu (%s)\n", i, base_name[b]);
	n->images++;
	n->roots[b]++;
	rc = run_mount(b, 0, false, &refused, why, sizeof(why));
	if (rc)
		goto fail;
	if (!refused) {
		n->mounted++;
		n->survived++;
	} else {
		n->refused++;
		if (getenv("FUZZ_VERBOSE"))
			fprintf(stderr, "fuzz:   refused: %s\n", why);
		/* the engine's own checks, on the pool the check refused */
		memcpy(img, saved, POOL_SIZE);
		rc = run_mount(b, PM_MOUNT_FORCE, false, &refused, why, sizeof(why));
		if (rc)
			goto fail;
		if (refused) {
			n->forced_refused++;
		} else {
			n->forced++;
			n->survived++;
		}
	}
	/* and what fsck --repair makes of it */
	rc = run_repair(b, n);
	if (rc)
		goto fail;
	alarm(0);
	return T_EXIT_PASS;
fail:
	fprintf(stderr, "fuzz: image %lu (%s) failed: FUZZ_SEED=%llu FUZZ_ONLY=%lu reproduces it\n",
		i, base_name[b], (unsigned long long)run_seed, i);
	return T_EXIT_FAIL;
}

/* FUZZ_WRITE: image @i, mutated, into the file @path. */
static int write_image(unsigned long i, const char *path)
{
	FILE *f;
	int b;

	rnd_state = run_seed * 0x100000001b3ull + i;
	b = (int)(rnd() % NBASE);
	memcpy(img, base[b], POOL_SIZE);
	mutate(b);
	f = fopen(path, "wbx");
	CHECK(f);
	CHECK_EQ(fwrite(img, 1, POOL_SIZE, f), POOL_SIZE);
	CHECK_OK(fclose(f));
	printf("%s\n", base_name[b]);
	return T_EXIT_PASS;
}

static int test_mutated_pools_are_refused_or_served_safely(void)
{
	const char *s = getenv("FUZZ_SEED"), *e = getenv("FUZZ_IMAGES"), *only = getenv("FUZZ_ONLY");
	unsigned long nimg = e ? strtoul(e, NULL, 0) : 300, i;
	struct counts n = { 0 };

	run_seed = s ? strtoull(s, NULL, 0) : 20261202;
	fprintf(stderr, "fuzz: FUZZ_SEED=%llu, %lu images\n", (unsigned long long)run_seed, nimg);
	signal(SIGALRM, on_alarm);
	if (only && getenv("FUZZ_WRITE"))
		return write_image(strtoul(only, NULL, 0), getenv("FUZZ_WRITE"));
	if (only)
		return one_image(strtoul(only, NULL, 0), &n);
	for (i = 0; i < nimg; i++)
		if (one_image(i, &n))
			return T_EXIT_FAIL;
	fprintf(stderr,
		"fuzz: %lu images (%lu clean, %lu orphan, %lu journal): %lu refused by the mount "
		"check, %lu mounted; of the refused, %lu mounted forced, %lu refused even forced; "
		"%lu mounts survived; fsck --repair: %lu refused, %lu repaired entirely, %lu in part\n",
		n.images, n.roots[B_CLEAN], n.roots[B_ORPHAN], n.roots[B_JOURNAL], n.refused,
		n.mounted, n.forced, n.forced_refused, n.survived, n.fsck_refused, n.repaired_all,
		n.repaired_part);
	CHECK_UEQ(n.survived, n.mounted + n.forced);
	CHECK_GT(n.refused, 0);
	CHECK_GT(n.mounted, 0);
	CHECK_GT(n.forced, 0);
	return T_EXIT_PASS;
}

static int setup(void)
{
	region = mmap(NULL, POOL_SIZE + 2 * GUARD, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(region != MAP_FAILED);
	img = region + GUARD;
	CHECK_OK(mprotect(img, POOL_SIZE, PROT_READ | PROT_WRITE));
	saved = malloc(POOL_SIZE);
	CHECK(saved);
	if (build() || learn())
		return T_EXIT_FAIL;
	return T_EXIT_PASS;
}

int main(void)
{
	int k;

	RUN(setup);
	RUN(test_mutated_pools_are_refused_or_served_safely);
	for (k = 0; k < NBASE; k++) {
		free(base[k]);
		free(orig_reg[k]);
	}
	free(used_blocks.b);
	free(map_nodes.b);
	free(dir_blocks.b);
	free(xattr_blocks.b);
	free(fblocks);
	free(saved);
	munmap(region, POOL_SIZE + 2 * GUARD);
	return T_EXIT_PASS;
}

/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_crash.c -- crash consistency of every metadata operation.
 *
 * The engine runs on an in-memory pool whose persistence ops table records
 * each flush (with the bytes flushed, as they were at that moment) and each
 * drain. For every operation, every prefix of that record is a possible
 * crash image: the pool as it was before the operation plus the flushes that
 * reached the media before the crash. Stores never flushed are lost, which
 * is the worst case the protocol must survive.
 *
 * For each crash image the test replays the journal, runs the checker (no
 * problem allowed), mounts, and compares the logical contents of the file
 * system with the state before and after the operation: it must be one of
 * the two. The image after the last event must be the "after" state: what
 * returned success is durable.
 *
 * A deliberately wrong writer (PM_DEBUG_SKIP_APPLY_PERSIST: the journal is
 * marked empty before the in-place updates were flushed) must be caught.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "pmem/fs.h"
#include "pmem/fsck.h"
#include "pmem/pool.h"
#include "tests/unit/check.h"
#include "tests/unit/crashlib.h"
#include "tests/unit/names.h"
#include "tests/unit/record.h"

#define POOL_SIZE (8u << 20)

/* ---- the operations ------------------------------------------------------ */

static const struct pm_cred root_cred = { 0, 0, 0, NULL, 0 };

struct ctx {
	struct pm_fs *fs;
	struct pm_inode *root, *held; /* held: an open, unlinked file */
};

static struct pm_inode *get(struct ctx *c, const char *name)
{
	struct pm_inode *ip = NULL;

	if (pm_lookup(c->fs, c->root, name, &ip))
		return NULL;
	return ip;
}

static int mk(struct ctx *c, struct pm_inode *dir, const char *name, mode_t mode)
{
	struct pm_inode *ip;
	int rc = pm_mknod(c->fs, &root_cred, dir, name, mode, 0, &ip);

	if (!rc)
		pm_iput(c->fs, ip);
	return rc;
}

static int wr(struct ctx *c, const char *name, uint64_t off, size_t len, int seed)
{
	struct pm_inode *ip = get(c, name);
	ssize_t rc = crash_write(c->fs, ip, off, len, seed);

	/* data written in place is durable only after fsync */
	if (rc >= 0)
		rc = pm_fsync(c->fs, ip, false);
	pm_iput(c->fs, ip);
	return rc < 0 ? (int)rc : 0;
}

static int op_create(struct ctx *c) { return mk(c, c->root, "new", S_IFREG | 0644); }
static int op_mkdir(struct ctx *c) { return mk(c, c->root, "newdir", S_IFDIR | 0755); }
static int op_mkfifo(struct ctx *c) { return mk(c, c->root, "fifo", S_IFIFO | 0600); }
static int op_mknod_chr(struct ctx *c)
{
	struct pm_inode *ip;
	int rc = pm_mknod(c->fs, &root_cred, c->root, "chr", S_IFCHR | 0600, 0x0501, &ip);
	if (!rc)
		pm_iput(c->fs, ip);
	return rc;
}
static int op_symlink(struct ctx *c)
{
	struct pm_inode *ip;
	int rc = pm_symlink(c->fs, &root_cred, c->root, "sym", "some/target/path", &ip);
	if (!rc)
		pm_iput(c->fs, ip);
	return rc;
}
static int op_link(struct ctx *c)
{
	struct pm_inode *ip = get(c, "f1");
	int rc = ip ? pm_link(c->fs, ip, c->root, "f1-link") : -ENOENT;
	pm_iput(c->fs, ip);
	return rc;
}
static int op_unlink(struct ctx *c) { return pm_unlink(c->fs, c->root, "f1-link"); }
static int op_unlink_last(struct ctx *c) { return pm_unlink(c->fs, c->root, "big"); }
static int op_unlink_open(struct ctx *c)
{
	c->held = get(c, "f2");
	return pm_unlink(c->fs, c->root, "f2");
}
static int op_release_open(struct ctx *c)
{
	pm_iput(c->fs, c->held);
	c->held = NULL;
	return 0;
}
static int op_rmdir(struct ctx *c) { return pm_rmdir(c->fs, c->root, "newdir"); }
static int op_rename(struct ctx *c) { return pm_rename(c->fs, c->root, "new", c->root, "renamed", 0); }
static int op_rename_over(struct ctx *c)
{
	return pm_rename(c->fs, c->root, "renamed", c->root, "f1", 0);
}
static int op_rename_noreplace(struct ctx *c)
{
	int rc = pm_rename(c->fs, c->root, "f1", c->root, "fifo", RENAME_NOREPLACE);
	return rc == -EEXIST ? 0 : -1;
}
static int op_exchange(struct ctx *c)
{
	return pm_rename(c->fs, c->root, "f1", c->root, "sym", RENAME_EXCHANGE);
}
static int op_rename_dir_across(struct ctx *c)
{
	struct pm_inode *d1 = get(c, "d1"), *d2 = get(c, "d2");
	int rc = pm_rename(c->fs, d1, "sub", d2, "moved", 0);
	pm_iput(c->fs, d1);
	pm_iput(c->fs, d2);
	return rc;
}
static int op_exchange_dirs(struct ctx *c)
{
	struct pm_inode *d2 = get(c, "d2");
	int rc = pm_rename(c->fs, d2, "moved", c->root, "d1", RENAME_EXCHANGE);
	pm_iput(c->fs, d2);
	return rc;
}
static int op_chmod(struct ctx *c)
{
	struct pm_inode *ip = get(c, "f1");
	struct pm_setattr sa = { .valid = PM_SET_MODE | PM_SET_UID | PM_SET_GID, .mode = 0600,
				 .uid = 1000, .gid = 100 };
	int rc = ip ? pm_setattr(c->fs, &root_cred, ip, &sa) : -ENOENT;
	pm_iput(c->fs, ip);
	return rc;
}
static int do_trunc(struct ctx *c, const char *name, uint64_t size)
{
	struct pm_inode *ip = get(c, name);
	struct pm_setattr sa = { .valid = PM_SET_SIZE, .size = size };
	int rc = ip ? pm_setattr(c->fs, &root_cred, ip, &sa) : -ENOENT;
	pm_iput(c->fs, ip);
	return rc;
}
static int op_truncate_down(struct ctx *c) { return do_trunc(c, "big", 5000); }
static int op_truncate_up(struct ctx *c) { return do_trunc(c, "big", 3u << 20); }
static int op_write_alloc(struct ctx *c) { return wr(c, "big", 1u << 20, 200000, 3); }
static int op_write_grow(struct ctx *c) { return wr(c, "f1", 10, 9000, 5); }
static int falloc(struct ctx *c, int mode, uint64_t off, uint64_t len)
{
	struct pm_inode *ip = get(c, "big");
	int rc = ip ? pm_fallocate(c->fs, ip, mode, off, len) : -ENOENT;
	if (!rc)
		rc = pm_fsync(c->fs, ip, false); /* partial blocks are zeroed in place */
	pm_iput(c->fs, ip);
	return rc;
}
static int op_fallocate(struct ctx *c) { return falloc(c, 0, 4u << 20, 300000); }
/* A fill bigger than one transaction (made small here) commits in parts:
 * every crash image between them must be fsck-clean and show the old size
 * and contents; the last, the new ones. */
static int op_fallocate_parts(struct ctx *c)
{
	unsigned old = pm_fs_debug(c->fs);
	int rc;

	pm_fs_set_debug(c->fs, old | PM_DEBUG_SMALL_TX);
	rc = falloc(c, 0, 0, (1u << 20) + 5000);
	pm_fs_set_debug(c->fs, old);
	return rc;
}
static int op_punch(struct ctx *c)
{
	return falloc(c, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 8192, 1u << 20);
}
static int op_setxattr(struct ctx *c)
{
	struct pm_inode *ip = get(c, "f1");
	int rc = ip ? pm_setxattr(c->fs, ip, "user.k", "value", 5, 0) : -ENOENT;
	pm_iput(c->fs, ip);
	return rc;
}
static int op_removexattr(struct ctx *c)
{
	struct pm_inode *ip = get(c, "f1");
	int rc = ip ? pm_removexattr(c->fs, ip, "user.k") : -ENOENT;
	pm_iput(c->fs, ip);
	return rc;
}
/* POSIX ACL xattrs (pmem/acl.h): owner, user 1000, group, mask, other */
static size_t acl_value(uint8_t *v, unsigned o, unsigned u, unsigned g, unsigned m, unsigned ot)
{
	const uint16_t ent[5][2] = { { 0x01, o }, { 0x02, u }, { 0x04, g }, { 0x10, m },
				     { 0x20, ot } };
	uint32_t ver = 2, id;
	int i;

	memcpy(v, &ver, 4);
	for (i = 0; i < 5; i++) {
		id = ent[i][0] == 0x02 ? 1000 : 0xffffffffu;
		memcpy(v + 4 + 8 * i, ent[i], 4);
		memcpy(v + 8 + 8 * i, &id, 4);
	}
	return 4 + 5 * 8;
}
static int op_set_access_acl(struct ctx *c)
{
	struct pm_inode *ip = get(c, "f2");
	uint8_t v[64];
	size_t n = acl_value(v, 6, 4, 4, 6, 0); /* the mode becomes 0660 with it */
	int rc = ip ? pm_setxattr(c->fs, ip, "system.posix_acl_access", v, n, 0) : -ENOENT;
	pm_iput(c->fs, ip);
	return rc;
}
static int op_chmod_with_acl(struct ctx *c)
{
	struct pm_inode *ip = get(c, "f2");
	struct pm_setattr sa = { .valid = PM_SET_MODE, .mode = 0604 }; /* and the mask --- */
	int rc = ip ? pm_setattr(c->fs, &root_cred, ip, &sa) : -ENOENT;
	pm_iput(c->fs, ip);
	return rc;
}
static int op_set_default_acl(struct ctx *c)
{
	struct pm_inode *ip = get(c, "d2");
	uint8_t v[64];
	size_t n = acl_value(v, 7, 7, 5, 7, 0);
	int rc = ip ? pm_setxattr(c->fs, ip, "system.posix_acl_default", v, n, 0) : -ENOENT;
	pm_iput(c->fs, ip);
	return rc;
}
static int op_create_inheriting_acl(struct ctx *c)
{
	struct pm_inode *d = get(c, "d2");
	int rc = d ? mk(c, d, "inherits", S_IFDIR | 0777) : -ENOENT;
	pm_iput(c->fs, d);
	return rc;
}
static int op_tmpfile(struct ctx *c)
{
	return pm_tmpfile(c->fs, &root_cred, c->root, 0600, &c->held);
}
static int op_link_tmpfile(struct ctx *c)
{
	int rc = pm_link(c->fs, c->held, c->root, "was-tmpfile");
	pm_iput(c->fs, c->held);
	c->held = NULL;
	return rc;
}
static int op_rename_whiteout(struct ctx *c)
{
	struct pm_inode *d = get(c, "d2");
	int rc = d ? pm_rename_as(c->fs, &root_cred, c->root, "was-tmpfile", d, "moved-out",
				  RENAME_WHITEOUT) : -ENOENT;
	pm_iput(c->fs, d);
	return rc;
}
static int op_many_entries(struct ctx *c)
{
	struct pm_inode *d = get(c, "d2");
	char name[64];
	int i, rc = 0;

	/* one operation here is one create: check the last of many, which
	 * needs a new directory block */
	for (i = 0; i < 140 && !rc; i++) {
		snprintf(name, sizeof(name), "entry-with-a-longer-name-%03d", i);
		rc = mk(c, d, name, S_IFREG | 0644);
	}
	pm_iput(c->fs, d);
	return rc;
}

struct op {
	const char *name;
	int (*fn)(struct ctx *c);
	bool setup; /* run before recording: not checked itself */
};

static const struct op ops[] = {
	{ "create", op_create, false },
	{ "mkdir", op_mkdir, false },
	{ "mkfifo", op_mkfifo, false },
	{ "mknod_chr", op_mknod_chr, false },
	{ "symlink", op_symlink, false },
	{ "link", op_link, false },
	{ "unlink", op_unlink, false },
	{ "write_allocating", op_write_alloc, false },
	{ "write_growing", op_write_grow, false },
	{ "truncate_up", op_truncate_up, false },
	{ "fallocate", op_fallocate, false },
	{ "punch_hole", op_punch, false },
	{ "truncate_down", op_truncate_down, false },
	{ "fallocate_in_parts", op_fallocate_parts, false },
	{ "setxattr", op_setxattr, false },
	{ "removexattr", op_removexattr, false },
	{ "set_access_acl", op_set_access_acl, false },
	{ "chmod_with_acl", op_chmod_with_acl, false },
	{ "set_default_acl", op_set_default_acl, false },
	{ "create_inheriting_acl", op_create_inheriting_acl, false },
	{ "chmod_chown", op_chmod, false },
	{ "rmdir", op_rmdir, false },
	{ "rename", op_rename, false },
	{ "rename_over_existing", op_rename_over, false },
	{ "rename_noreplace", op_rename_noreplace, false },
	{ "rename_exchange", op_exchange, false },
	{ "rename_dir_across", op_rename_dir_across, false },
	{ "rename_exchange_dirs", op_exchange_dirs, false },
	{ "unlink_open_file", op_unlink_open, false },
	{ "release_unlinked", op_release_open, false },
	{ "many_entries", op_many_entries, true },
	{ "create_in_big_dir", NULL, false },
	{ "unlink_file_with_blocks", op_unlink_last, false },
	{ "tmpfile", op_tmpfile, false },
	{ "link_tmpfile", op_link_tmpfile, false },
	{ "rename_whiteout", op_rename_whiteout, false },
};

static int op_create_in_big_dir(struct ctx *c)
{
	struct pm_inode *d = get(c, "d2");
	int rc = mk(c, d, "the-one-after", S_IFREG | 0644);
	pm_iput(c->fs, d);
	return rc;
}

/* ---- the check ----------------------------------------------------------- */

struct world {
	uint8_t *img;
	struct recorder rec;
	struct pm_persist_ops ops;
	struct pm_pool *pool;
	struct ctx c;
};

static int setup(struct world *w)
{
	struct pm_mkfs_opts o = { .size = POOL_SIZE };
	char err[256];
	struct pm_inode *d1;

	w->img = aligned_alloc(4096, POOL_SIZE);
	memset(w->img, 0, POOL_SIZE);
	CHECK_EQ(pm_mkfs_mem(w->img, POOL_SIZE, &o, &noop_ops), 0);
	w->rec.base = w->img;
	w->ops.flush = rec_flush;
	w->ops.drain = rec_drain;
	w->ops.ctx = &w->rec;
	CHECK_EQ(pm_pool_open_mem(w->img, POOL_SIZE, &w->ops, &w->pool, err, sizeof(err)), 0);
	CHECK_EQ(pm_fs_mount(w->pool, &w->c.fs, err, sizeof(err)), 0);
	CHECK_EQ(pm_iget(w->c.fs, 1, &w->c.root), 0);
	/* the starting tree */
	CHECK_EQ(mk(&w->c, w->c.root, "f1", S_IFREG | 0644), 0);
	CHECK_EQ(mk(&w->c, w->c.root, "f2", S_IFREG | 0644), 0);
	CHECK_EQ(mk(&w->c, w->c.root, "big", S_IFREG | 0644), 0);
	CHECK_EQ(mk(&w->c, w->c.root, "d1", S_IFDIR | 0755), 0);
	CHECK_EQ(mk(&w->c, w->c.root, "d2", S_IFDIR | 0755), 0);
	d1 = get(&w->c, "d1");
	CHECK_EQ(mk(&w->c, d1, "sub", S_IFDIR | 0755), 0);
	pm_iput(w->c.fs, d1);
	CHECK_EQ(wr(&w->c, "f1", 0, 100, 1), 0);
	CHECK_EQ(wr(&w->c, "f2", 0, 70000, 2), 0);
	CHECK_EQ(wr(&w->c, "big", 0, 2u << 20, 9), 0);
	return 0;
}

static void teardown(struct world *w)
{
	pm_iput(w->c.fs, w->c.held);
	pm_iput(w->c.fs, w->c.root);
	pm_fs_unmount(&w->c.fs);
	pm_pool_close(&w->pool);
	rec_reset(&w->rec);
	free(w->rec.ev);
	free(w->img);
}

/* Builds crash image @k (events [0, k) applied to @before). */
static void build_image(uint8_t *dst, const uint8_t *before, const struct recorder *r, size_t k)
{
	size_t i;

	memcpy(dst, before, POOL_SIZE);
	for (i = 0; i < k; i++)
		if (r->ev[i].len)
			memcpy(dst + r->ev[i].off, r->ev[i].data, r->ev[i].len);
}

/* Runs every operation with crash images; returns the number of failures. */
static int run_all(unsigned debug, bool quiet)
{
	struct world w;
	uint8_t *before = aligned_alloc(4096, POOL_SIZE);
	uint8_t *img = aligned_alloc(4096, POOL_SIZE);
	size_t i, k, points = 0;
	int failures = 0;

	crash_quiet = quiet;
	memset(&w, 0, sizeof(w));
	if (setup(&w))
		return 1000;
	pm_fs_set_debug(w.c.fs, debug);
	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		int (*fn)(struct ctx *) = ops[i].fn ? ops[i].fn : op_create_in_big_dir;
		char *sbefore, *safter, *sfinal;
		int rc;

		if (ops[i].setup) {
			if (fn(&w.c)) {
				fprintf(stderr, "%s: setup step failed\n", ops[i].name);
				failures++;
			}
			continue;
		}
		sbefore = dump(w.c.fs, false);
		memcpy(before, w.img, POOL_SIZE);
		rec_reset(&w.rec);
		w.rec.on = true;
		rc = fn(&w.c);
		w.rec.on = false;
		if (rc) {
			fprintf(stderr, "%s: failed with %d\n", ops[i].name, rc);
			failures++;
			free(sbefore);
			continue;
		}
		safter = dump(w.c.fs, false);
		sfinal = dump(w.c.fs, true);
		for (k = 0; k <= w.rec.n; k++) {
			char *s;
			/* only points at a drain or at the end, plus every flush
			 * point of small records (flush order matters there) */
			if (k < w.rec.n && w.rec.ev[k].len && w.rec.n > 64)
				continue;
			build_image(img, before, &w.rec, k);
			points++;
			s = recover_and_dump(img, POOL_SIZE, ops[i].name, k, k == w.rec.n);
			if (!s) {
				failures++;
				break;
			}
			if (k == w.rec.n) {
				/* durable: everything, file contents included */
				if (strcmp(s, sfinal)) {
					if (!quiet)
						fprintf(stderr, "%s: the final image lost the operation\n--- want\n%s--- got\n%s",
							ops[i].name, sfinal, s);
					failures++;
				}
				free(s);
				break;
			}
			if (strcmp(s, sbefore) && strcmp(s, safter)) {
				if (!quiet)
					fprintf(stderr, "%s: crash point %zu/%zu is neither before nor after\n--- before\n%s--- after\n%s--- got\n%s",
						ops[i].name, k, w.rec.n, sbefore, safter, s);
				failures++;
				free(s);
				break;
			}
			free(s);
		}
		free(sbefore);
		free(safter);
		free(sfinal);
	}
	if (!quiet)
		printf("test_crash: %zu crash images checked, %d failures\n", points, failures);
	teardown(&w);
	free(before);
	free(img);
	return failures;
}

static int test_every_crash_point_is_before_or_after(void)
{
	CHECK_EQ(run_all(0, false), 0);
	return 0;
}

static int test_wrong_writer_is_caught(void)
{
	/* the in-place updates are never flushed: the final image must miss
	 * operations, and the test above must notice */
	CHECK(run_all(PM_DEBUG_SKIP_APPLY_PERSIST, true) > 0);
	return 0;
}

/*
 * Found by scripts/crash-states: the superblock spans several cache lines.
 * A crash while a committed transaction that changed it is applied can
 * leave it torn (some 8-byte words new, the rest old): the checksum fails,
 * and the pool was refused although the journal held the whole new
 * superblock. This is that image: the record up to the commit point, and
 * the new superblock's words but the one holding its checksum. It must replay to "after".
 */
static int test_torn_superblock_is_replayed(void)
{
	struct world w;
	uint8_t *before = aligned_alloc(4096, POOL_SIZE), *img = aligned_alloc(4096, POOL_SIZE);
	size_t k, k2, drains = 0, torn = 0;
	char *safter, *s;

	memset(&w, 0, sizeof(w));
	CHECK_EQ(setup(&w), 0);
	memcpy(before, w.img, POOL_SIZE);
	rec_reset(&w.rec);
	w.rec.on = true;
	CHECK_EQ(mk(&w.c, w.c.root, "torn", S_IFREG | 0644), 0); /* free_inodes changes */
	w.rec.on = false;
	safter = dump(w.c.fs, false);
	/* the commit point: the second drain (records, then the header) */
	for (k = 0; k < w.rec.n && drains < 2; k++)
		drains += !w.rec.ev[k].len;
	CHECK_EQ(drains, 2);
	build_image(img, before, &w.rec, k);
	/* the new superblock's changed 8-byte words but the one with its
	 * checksum (a line torn at 8-byte granularity) */
	for (k2 = 0; k2 < PM_BLOCK_SIZE; k2 += 8) {
		size_t cs = offsetof(struct pm_super, sb_csum);
		if (memcmp(img + k2, w.img + k2, 8) && !(cs >= k2 && cs < k2 + 8)) {
			memcpy(img + k2, w.img + k2, 8);
			torn++;
		}
	}
	CHECK(torn > 0);
	CHECK(pm_super_check((const struct pm_super *)img, POOL_SIZE, NULL, 0) != 0);
	s = recover_and_dump(img, POOL_SIZE, "torn superblock", k, false);
	CHECK(s != NULL);
	CHECK(strcmp(s, safter) == 0);
	free(s);
	free(safter);
	teardown(&w);
	free(before);
	free(img);
	return 0;
}

int main(void)
{
	RUN(test_every_crash_point_is_before_or_after);
	RUN(test_wrong_writer_is_caught);
	RUN(test_torn_superblock_is_replayed);
	return T_EXIT_PASS;
}

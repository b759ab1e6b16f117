/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_ranges.c -- a crafted pool cannot make pinfs write (or
 * read) outside the pool. Each case crafts an on-media number that becomes
 * an address or a length -- a journal record's offset and length, ... -- so
 * that a naive `off + len > size` check wraps, and expects recovery, mount
 * and fsck to refuse the pool with -EUCLEAN instead.
 *
 * The image is mapped between two PROT_NONE guard regions, as the daemon's
 * pmem mapping has unmapped memory around it: a stray write below or above
 * the image is a SIGSEGV in every build (and an ASan report under ASan),
 * not a silent heap corruption.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "pmem/crc32c.h"
#include "pmem/fs.h"
#include "pmem/fs_int.h"
#include "pmem/fsck.h"
#include "tests/unit/check.h"
#include "tests/unit/record.h"

#define POOL_SIZE (16ull << 20)
#define GUARD (1ull << 20)

static uint8_t *region; /* GUARD | image | GUARD */
static uint8_t *img;	/* the image, POOL_SIZE bytes */
static uint8_t *fresh;	/* a freshly formatted image, to compare against */

static int map_image(void)
{
	struct pm_mkfs_opts o = { .size = POOL_SIZE };

	region = mmap(NULL, POOL_SIZE + 2 * GUARD, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(region != MAP_FAILED);
	img = region + GUARD;
	CHECK_OK(mprotect(img, POOL_SIZE, PROT_READ | PROT_WRITE));
	CHECK_OK(pm_mkfs_mem(img, POOL_SIZE, &o, &noop_ops));
	fresh = malloc(POOL_SIZE);
	CHECK(fresh != NULL);
	memcpy(fresh, img, POOL_SIZE);
	return T_EXIT_PASS;
}

static struct pm_super *sb(void)
{
	return (struct pm_super *)img;
}

/* Writes a committed, CRC-valid journal transaction of one record that
 * copies @len bytes of 0xa5 to pool offset @off. */
static void journal_write(uint64_t off, uint32_t len)
{
	struct pm_jhdr *h = (struct pm_jhdr *)(img + sb()->journal_start * PM_BLOCK_SIZE);
	uint8_t *body = img + (sb()->journal_start + 1) * PM_BLOCK_SIZE;
	struct pm_jrec r = { .off = off, .len = len, .pad = 0 };
	struct pm_jhdr t;
	uint64_t blen = sizeof(r) + ((len + 7ull) & ~7ull);

	memcpy(body, &r, sizeof(r));
	memset(body + sizeof(r), 0xa5, len);
	memset(h, 0, sizeof(*h));
	h->magic = PM_JOURNAL_MAGIC;
	h->seq = 7;
	h->state = PM_JSTATE_COMMITTED;
	h->nrecs = 1;
	h->body_len = blen;
	t = *h;
	h->csum = pm_crc32c(pm_crc32c(0, &t, sizeof(t)), body, blen);
}

/* Recovery, mount and fsck must all refuse a pool whose committed journal
 * record is [off, off + len), and the image must be left as it was. */
static int expect_refused(uint64_t off, uint32_t len)
{
	struct pm_pool *pool;
	struct pm_fs *fs = NULL;
	struct pm_fsck_result res;
	uint8_t *before;
	char err[256] = "";
	FILE *devnull = fopen("/dev/null", "w");

	CHECK(devnull != NULL);
	memcpy(img, fresh, POOL_SIZE);
	journal_write(off, len);
	before = malloc(POOL_SIZE);
	CHECK(before != NULL);
	memcpy(before, img, POOL_SIZE);

	CHECK_OK(pm_pool_open_mem(img, POOL_SIZE, &noop_ops, &pool, err, sizeof(err)));
	CHECK_EQ(pm_journal_recover(pool, err, sizeof(err)), -EUCLEAN);
	CHECK_CONTAINS(err, "journal record 0 out of range");
	CHECK(memcmp(img, before, POOL_SIZE) == 0);

	err[0] = '\0';
	CHECK_EQ(pm_fs_mount(pool, &fs, err, sizeof(err)), -EUCLEAN);
	CHECK(fs == NULL);
	CHECK_CONTAINS(err, "out of range");
	CHECK(memcmp(img, before, POOL_SIZE) == 0);

	/* fsck without replay: the committed header is a problem it reports;
	 * --repair discards the transaction (resets the header, as e2fsck
	 * clears a corrupt journal) and writes nowhere else */
	CHECK_OK(pm_fsck(pool, false, devnull, &res));
	CHECK_GT(res.errors, 0);
	CHECK(memcmp(img, before, POOL_SIZE) == 0);
	CHECK_OK(pm_fsck(pool, true, devnull, &res));
	CHECK_GT(res.errors, 0);
	CHECK_EQ(((struct pm_jhdr *)(img + PM_BLOCK_SIZE))->state, PM_JSTATE_EMPTY);
	CHECK(memcmp(img + 2 * PM_BLOCK_SIZE, before + 2 * PM_BLOCK_SIZE,
		     POOL_SIZE - 2 * PM_BLOCK_SIZE) == 0);

	pm_pool_close(&pool);
	fclose(devnull);
	free(before);
	return T_EXIT_PASS;
}

static int test_journal_record_below_the_pool_is_refused(void)
{
	/* off + len == 0 (mod 2^64): the old check passed it and the replay
	 * wrote the 4 KiB below the mapping */
	return expect_refused(UINT64_MAX - 4095, 4096);
}

static int test_journal_record_wrapping_past_the_pool_is_refused(void)
{
	/* off + len wraps to just above 0: it "ends" inside the pool */
	return expect_refused(UINT64_MAX - 7, 64);
}

static int test_journal_record_ending_past_the_pool_is_refused(void)
{
	return expect_refused(POOL_SIZE - 8, 16);
}

static int test_journal_record_starting_at_the_end_is_refused(void)
{
	return expect_refused(POOL_SIZE, 8);
}

static int test_journal_record_inside_the_pool_is_replayed(void)
{
	struct pm_pool *pool;
	char err[256] = "";
	uint64_t off = (sb()->nblocks - 1) * PM_BLOCK_SIZE; /* last block: data */

	memcpy(img, fresh, POOL_SIZE);
	journal_write(off, PM_BLOCK_SIZE);
	CHECK_OK(pm_pool_open_mem(img, POOL_SIZE, &noop_ops, &pool, err, sizeof(err)));
	CHECK_EQ(pm_journal_recover(pool, err, sizeof(err)), 1);
	CHECK_EQ(img[off], 0xa5);
	CHECK_EQ(img[POOL_SIZE - 1], 0xa5);
	pm_pool_close(&pool);
	return T_EXIT_PASS;
}

static int test_journal_record_count_past_the_body_is_refused(void)
{
	struct pm_pool *pool;
	struct pm_jhdr *h;
	struct pm_jhdr t;
	char err[256] = "";

	memcpy(img, fresh, POOL_SIZE);
	journal_write((sb()->nblocks - 1) * PM_BLOCK_SIZE, 8);
	h = (struct pm_jhdr *)(img + sb()->journal_start * PM_BLOCK_SIZE);
	h->nrecs = UINT32_MAX;
	h->csum = 0;
	t = *h;
	h->csum = pm_crc32c(pm_crc32c(0, &t, sizeof(t)),
			    img + (sb()->journal_start + 1) * PM_BLOCK_SIZE, h->body_len);
	CHECK_OK(pm_pool_open_mem(img, POOL_SIZE, &noop_ops, &pool, err, sizeof(err)));
	CHECK_EQ(pm_journal_recover(pool, err, sizeof(err)), -EUCLEAN);
	CHECK_CONTAINS(err, "journal record 1 ");
	/* nothing applied (the last block is the backup superblock) */
	CHECK(memcmp(img + POOL_SIZE - PM_BLOCK_SIZE, fresh + POOL_SIZE - PM_BLOCK_SIZE, 8) == 0);
	pm_pool_close(&pool);
	return T_EXIT_PASS;
}

/* Mounts a fresh image whose inode 2 is a regular file with @field set to
 * @val, and expects pm_iget() to refuse it rather than hand out an inode
 * whose xattr block, map or orphan links point outside the pool. */
static int expect_inode_refused(size_t field, uint64_t val, size_t width)
{
	struct pm_pool *pool;
	struct pm_fs *fs;
	struct pm_inode *ip = NULL;
	struct pm_dinode *d;
	char err[256] = "", buf[64];
	int rc;

	memcpy(img, fresh, POOL_SIZE);
	d = (struct pm_dinode *)(img + sb()->itable_start * PM_BLOCK_SIZE) + 2;
	d->mode = S_IFREG | 0644;
	d->nlink = 1;
	memcpy((uint8_t *)d + field, &val, width);
	CHECK_OK(pm_pool_open_mem(img, POOL_SIZE, &noop_ops, &pool, err, sizeof(err)));
	/* refused at mount (fsck's check); forced, refused at pm_iget() */
	CHECK_EQ(pm_fs_mount(pool, &fs, err, sizeof(err)), -EUCLEAN);
	CHECK_CONTAINS(err, "fsck.pinfs --repair");
	CHECK_OK(pm_fs_mount_flags(pool, PM_MOUNT_FORCE, &fs, err, sizeof(err)));
	rc = pm_iget(fs, 2, &ip);
	if (rc == 0) {
		/* the unfixed engine: these read through the bad numbers */
		(void)pm_getxattr(fs, ip, "user.x", buf, sizeof(buf));
		pm_iput(fs, ip);
	}
	CHECK_EQ(rc, -EUCLEAN);
	CHECK(pm_fs_errors(fs)); /* and the mount stops writing */
	pm_fs_unmount(&fs);
	CHECK_UEQ(sb()->errors, PM_SB_ERR_CORRUPT);
	pm_pool_close(&pool);
	return T_EXIT_PASS;
}

static int test_inode_with_xattr_block_outside_the_pool_is_refused(void)
{
	return expect_inode_refused(offsetof(struct pm_dinode, xattr_block), 1ull << 40, 8);
}

static int test_inode_with_xattr_block_in_metadata_is_refused(void)
{
	return expect_inode_refused(offsetof(struct pm_dinode, xattr_block), 1, 8);
}

static int test_inode_with_map_root_outside_the_pool_is_refused(void)
{
	return expect_inode_refused(offsetof(struct pm_dinode, map_root), UINT64_MAX, 8);
}

static int test_inode_with_map_taller_than_the_format_is_refused(void)
{
	return expect_inode_refused(offsetof(struct pm_dinode, map_height), 1000, 4);
}

static int test_inode_with_orphan_link_past_the_table_is_refused(void)
{
	return expect_inode_refused(offsetof(struct pm_dinode, orphan_next), UINT64_MAX / 16, 8);
}

/* The errors flag: set by the engine (here: pm_super_set_errors, as
 * pm_fs_corrupt does), it refuses the mount until cleared; forced, the
 * mount serves reads and refuses changes. */
static int test_pool_marked_corrupt_is_refused_until_the_flag_is_cleared(void)
{
	struct pm_cred cr = { 0, 0, 0, NULL, 0 };
	struct pm_pool *pool;
	struct pm_fs *fs;
	struct pm_inode *root, *ip = NULL;
	char err[256] = "";

	memcpy(img, fresh, POOL_SIZE);
	CHECK_OK(pm_pool_open_mem(img, POOL_SIZE, &noop_ops, &pool, err, sizeof(err)));
	pm_super_set_errors(pool, PM_SB_ERR_CORRUPT);
	CHECK_OK(pm_super_check(pool->sb, POOL_SIZE, err, sizeof(err))); /* checksum kept */
	CHECK_EQ(pm_fs_mount(pool, &fs, err, sizeof(err)), -EUCLEAN);
	CHECK_CONTAINS(err, "marked corrupt");
	CHECK_CONTAINS(err, "fsck.pinfs --repair");

	CHECK_OK(pm_fs_mount_flags(pool, PM_MOUNT_FORCE, &fs, err, sizeof(err)));
	CHECK(pm_fs_errors(fs));
	CHECK_OK(pm_iget(fs, PM_ROOT_INO, &root));
	CHECK_EQ(pm_mknod(fs, &cr, root, "f", S_IFREG | 0644, 0, &ip), -EROFS);
	CHECK_EQ(pm_setxattr(fs, root, "user.x", "1", 1, 0), -EROFS);
	pm_iput(fs, root);
	pm_fs_unmount(&fs);
	CHECK_UEQ(sb()->errors, PM_SB_ERR_CORRUPT); /* the unmount keeps it */

	pm_super_clear_errors(pool);
	CHECK_OK(pm_super_check(pool->sb, POOL_SIZE, err, sizeof(err)));
	CHECK_OK(pm_fs_mount(pool, &fs, err, sizeof(err)));
	CHECK(!pm_fs_errors(fs));
	pm_fs_unmount(&fs);
	pm_pool_close(&pool);
	return T_EXIT_PASS;
}

/* ---- corrupt pools served forced (issue 8.3) ----------------------------- */

struct two {
	struct pm_pool *pool;
	struct pm_fs *fs;
	struct pm_inode *root;
	uint64_t a, d; /* inode numbers of /a (4 blocks of 'A') and /d (a directory) */
};

/* Builds /a and /d with two entries in a fresh image, unmounts it. */
static int two_build(struct two *t)
{
	struct pm_cred cr = { 0, 0, 0, NULL, 0 };
	struct pm_inode *a, *d, *x;
	char err[256], buf[4 * PM_BLOCK_SIZE];
	struct iovec iov = { buf, sizeof(buf) };

	memset(buf, 'A', sizeof(buf));
	memcpy(img, fresh, POOL_SIZE);
	CHECK_OK(pm_pool_open_mem(img, POOL_SIZE, &noop_ops, &t->pool, err, sizeof(err)));
	CHECK_OK(pm_fs_mount(t->pool, &t->fs, err, sizeof(err)));
	CHECK_OK(pm_iget(t->fs, PM_ROOT_INO, &t->root));
	CHECK_OK(pm_mknod(t->fs, &cr, t->root, "a", S_IFREG | 0644, 0, &a));
	CHECK_EQ(pm_write(t->fs, &cr, a, 0, &iov, 1), sizeof(buf));
	CHECK_OK(pm_mknod(t->fs, &cr, t->root, "d", S_IFDIR | 0755, 0, &d));
	CHECK_OK(pm_mknod(t->fs, &cr, d, "x1", S_IFREG | 0644, 0, &x));
	pm_iput(t->fs, x);
	CHECK_OK(pm_mknod(t->fs, &cr, d, "x2", S_IFREG | 0644, 0, &x));
	pm_iput(t->fs, x);
	t->a = pm_ino(a);
	t->d = pm_ino(d);
	pm_iput(t->fs, a);
	pm_iput(t->fs, d);
	pm_iput(t->fs, t->root);
	pm_fs_unmount(&t->fs);
	return T_EXIT_PASS;
}

static int two_mount_forced(struct two *t)
{
	char err[256] = "";

	CHECK_EQ(pm_fs_mount(t->pool, &t->fs, err, sizeof(err)), -EUCLEAN);
	CHECK_CONTAINS(err, "fsck.pinfs --repair");
	CHECK_OK(pm_fs_mount_flags(t->pool, PM_MOUNT_FORCE, &t->fs, err, sizeof(err)));
	CHECK_OK(pm_iget(t->fs, PM_ROOT_INO, &t->root));
	return T_EXIT_PASS;
}

static void two_done(struct two *t)
{
	pm_iput(t->fs, t->root);
	pm_fs_unmount(&t->fs);
	pm_pool_close(&t->pool);
}

static struct pm_dinode *dinode(uint64_t ino)
{
	return (struct pm_dinode *)(img + (sb()->itable_start + ino / PM_INODES_PER_BLOCK) *
					  PM_BLOCK_SIZE) +
	       ino % PM_INODES_PER_BLOCK;
}

static int count_entry(void *ctx, const char *name, uint64_t ino, unsigned type, uint64_t next)
{
	(void)name;
	(void)ino;
	(void)type;
	(void)next;
	return ++*(int *)ctx > 1000; /* an endless listing stops here, and fails */
}

static int test_dirent_with_zero_slots_does_not_stall_readdir(void)
{
	struct two t;
	struct pm_inode *d;
	struct pm_dirent *de;
	int n = 0;

	if (two_build(&t))
		return T_EXIT_FAIL;
	/* the first entry of /d's first block */
	de = (struct pm_dirent *)(img + ((const uint64_t *)(img + dinode(t.d)->map_root *
								       PM_BLOCK_SIZE))[0] *
					      PM_BLOCK_SIZE);
	CHECK_NE(de->ino, 0);
	de->nslots = 0;
	if (two_mount_forced(&t))
		return T_EXIT_FAIL;
	CHECK_OK(pm_lookup(t.fs, t.root, "d", &d));
	CHECK_OK(pm_readdir(t.fs, d, 0, count_entry, &n));
	CHECK_EQ(n, 3); /* ".", "..", the good entry */
	CHECK(pm_fs_errors(t.fs));
	pm_iput(t.fs, d);
	two_done(&t);
	return T_EXIT_PASS;
}

static int test_block_free_in_the_bitmap_is_never_given_to_a_new_file(void)
{
	struct pm_cred cr = { 0, 0, 0, NULL, 0 };
	struct two t;
	struct pm_inode *a, *b;
	uint64_t blk;
	uint8_t *bm;

	if (two_build(&t))
		return T_EXIT_FAIL;
	/* the first data block of /a: free in the bitmap, still /a's */
	blk = ((const uint64_t *)(img + dinode(t.a)->map_root * PM_BLOCK_SIZE))[0];
	CHECK_GE(blk, sb()->data_start);
	bm = img + sb()->bitmap_start * PM_BLOCK_SIZE;
	bm[blk / 8] &= (uint8_t)~(1u << (blk % 8));
	if (two_mount_forced(&t))
		return T_EXIT_FAIL;
	CHECK(pm_fs_errors(t.fs)); /* no new file: EROFS */
	CHECK_EQ(pm_mknod(t.fs, &cr, t.root, "b", S_IFREG | 0644, 0, &b), -EROFS);
	/* /a names a block the bitmap calls free: it is not served */
	CHECK_EQ(pm_lookup(t.fs, t.root, "a", &a), -EUCLEAN);
	CHECK_EQ(pm_unlink(t.fs, t.root, "a"), -EUCLEAN); /* no abort() in pm_bfree */
	two_done(&t);
	CHECK_EQ(img[blk * PM_BLOCK_SIZE], 'A'); /* nobody wrote over it */
	return T_EXIT_PASS;
}

static int test_wrong_map_height_never_reads_map_nodes_as_data(void)
{
	struct two t;
	struct pm_inode *a;

	if (two_build(&t))
		return T_EXIT_FAIL;
	dinode(t.a)->map_height = 2; /* its root's entries are data blocks */
	if (two_mount_forced(&t))
		return T_EXIT_FAIL;
	CHECK_EQ(pm_lookup(t.fs, t.root, "a", &a), -EUCLEAN);
	CHECK(pm_fs_errors(t.fs));
	two_done(&t);
	return T_EXIT_PASS;
}

int main(void)
{
	RUN(map_image);
	RUN(test_journal_record_inside_the_pool_is_replayed);
	RUN(test_journal_record_below_the_pool_is_refused);
	RUN(test_journal_record_wrapping_past_the_pool_is_refused);
	RUN(test_journal_record_ending_past_the_pool_is_refused);
	RUN(test_journal_record_starting_at_the_end_is_refused);
	RUN(test_journal_record_count_past_the_body_is_refused);
	RUN(test_inode_with_xattr_block_outside_the_pool_is_refused);
	RUN(test_inode_with_xattr_block_in_metadata_is_refused);
	RUN(test_inode_with_map_root_outside_the_pool_is_refused);
	RUN(test_inode_with_map_taller_than_the_format_is_refused);
	RUN(test_inode_with_orphan_link_past_the_table_is_refused);
	RUN(test_pool_marked_corrupt_is_refused_until_the_flag_is_cleared);
	RUN(test_dirent_with_zero_slots_does_not_stall_readdir);
	RUN(test_block_free_in_the_bitmap_is_never_given_to_a_new_file);
	RUN(test_wrong_map_height_never_reads_map_nodes_as_data);
	munmap(region, POOL_SIZE + 2 * GUARD);
	free(fresh);
	return T_EXIT_PASS;
}

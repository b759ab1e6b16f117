/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_writeback.c -- Kara's rule for pinned blocks, checked with
 * a recording persistence ops table: fsync makes written data and data
 * stored through a pinned mapping durable, pinned blocks stay dirty, the
 * background flusher never flushes a pinned block, and checksums are only
 * ever verified on clean blocks.
 *
 * The pin hooks are a test double: a set of pinned pool blocks and one write
 * pin range, which is all the engine asks the lease manager.
 */
#include <errno.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pmem/fs.h"
#include "pmem/fsck.h"
#include "pmem/pool.h"
#include "tests/unit/check.h"
#include "tests/unit/record.h"

#define POOL_SIZE (16u << 20)

static const struct pm_cred root_cred = { 0, 0, 0, NULL, 0 };

/* the pin double: pool blocks pinned, and the file range write-pinned */
static uint64_t pinned_pblk[64];
static size_t npinned;
static uint64_t wp_ino, wp_first, wp_n;

static bool t_pinned(void *ctx, uint64_t pblk)
{
	size_t i;

	(void)ctx;
	for (i = 0; i < npinned; i++)
		if (pinned_pblk[i] == pblk)
			return true;
	return false;
}

/* as the daemon's lease table answers: the run of blocks from @pblk that
 * share its state (writeback then works in runs, not blocks) */
static uint64_t t_pinned_span(void *ctx, uint64_t pblk, uint64_t n, bool *pinned)
{
	uint64_t k = 1;

	*pinned = t_pinned(ctx, pblk);
	while (k < n && t_pinned(ctx, pblk + k) == *pinned)
		k++;
	return k;
}

static void t_write_pinned(void *ctx, uint64_t ino, void (*fn)(void *, uint64_t, uint64_t),
			   void *arg)
{
	(void)ctx;
	if (wp_n && ino == wp_ino)
		fn(arg, wp_first, wp_n);
}

struct world {
	uint8_t *img;
	struct recorder rec;
	struct pm_persist_ops ops;
	struct pm_pool *pool;
	struct pm_fs *fs;
	struct pm_inode *root, *f;
};

static int setup_ex(struct world *w, bool csum, uint64_t compat);

static int setup(struct world *w, bool csum)
{
	return setup_ex(w, csum, 0);
}

static int setup_ex(struct world *w, bool csum, uint64_t compat)
{
	struct pm_mkfs_opts o = { .size = POOL_SIZE, .features = csum ? PM_FEAT_INCOMPAT_CSUM : 0,
				  .compat = compat };
	struct pm_pin_hooks h = { .pinned = t_pinned, .pinned_span = t_pinned_span,
				  .write_pinned = t_write_pinned };
	char err[256];

	memset(w, 0, sizeof(*w));
	npinned = 0;
	wp_n = 0;
	w->img = aligned_alloc(4096, POOL_SIZE);
	CHECK(w->img);
	memset(w->img, 0, POOL_SIZE);
	CHECK_OK(pm_mkfs_mem(w->img, POOL_SIZE, &o, &noop_ops));
	w->rec.base = w->img;
	w->ops.flush = rec_flush;
	w->ops.drain = rec_drain;
	w->ops.ctx = &w->rec;
	CHECK_OK(pm_pool_open_mem(w->img, POOL_SIZE, &w->ops, &w->pool, err, sizeof(err)));
	CHECK_OK(pm_fs_mount(w->pool, &w->fs, err, sizeof(err)));
	pm_fs_set_pin_hooks(w->fs, &h);
	CHECK_OK(pm_iget(w->fs, 1, &w->root));
	CHECK_OK(pm_mknod(w->fs, &root_cred, w->root, "f", S_IFREG | 0644, 0, &w->f));
	return 0;
}

static void teardown(struct world *w)
{
	pm_iput(w->fs, w->f);
	pm_iput(w->fs, w->root);
	pm_fs_unmount(&w->fs);
	pm_pool_close(&w->pool);
	rec_reset(&w->rec);
	free(w->rec.ev);
	free(w->img);
}

static int wr(struct world *w, uint64_t off, size_t len, int c)
{
	char *buf = malloc(len);
	struct iovec iov = { buf, len };
	ssize_t n;

	memset(buf, c, len);
	n = pm_write(w->fs, &root_cred, w->f, off, &iov, 1);
	free(buf);
	return n == (ssize_t)len ? 0 : -1;
}

/* The pool as the recorder says it is durable: the image before recording
 * started (@base) plus every flush up to the last drain. */
static uint8_t *durable_image(struct world *w, const uint8_t *base)
{
	uint8_t *img = malloc(POOL_SIZE);
	size_t i, last = 0;

	memcpy(img, base, POOL_SIZE);
	for (i = 0; i < w->rec.n; i++)
		if (!w->rec.ev[i].len)
			last = i;
	for (i = 0; i < last; i++)
		if (w->rec.ev[i].len)
			memcpy(img + w->rec.ev[i].off, w->rec.ev[i].data, w->rec.ev[i].len);
	return img;
}

/* Was any byte of pool block @pblk flushed while recording? */
static bool flushed(struct world *w, uint64_t pblk)
{
	size_t i, lo = pblk << 12, hi = lo + 4096;

	for (i = 0; i < w->rec.n; i++)
		if (w->rec.ev[i].len && w->rec.ev[i].off < hi && w->rec.ev[i].off + w->rec.ev[i].len > lo)
			return true;
	return false;
}

struct segs {
	struct pm_seg s[16];
	size_t n;
};

static int keep_segs(void *ctx, const struct pm_seg *s, size_t n)
{
	struct segs *out = ctx;

	out->n = n < 16 ? n : 16;
	memcpy(out->s, s, out->n * sizeof(*s));
	return 0;
}

static int pin(struct world *w, uint64_t first, uint64_t n, struct segs *sg)
{
	size_t i;
	uint64_t b;

	CHECK_OK(pm_pin_blocks(w->fs, w->f, first, n, PM_PIN_WRITE, keep_segs, sg));
	for (i = 0; i < sg->n; i++)
		for (b = 0; b < sg->s[i].n; b++)
			pinned_pblk[npinned++] = sg->s[i].pblk + b;
	wp_ino = pm_ino(w->f);
	wp_first = first;
	wp_n = n;
	return 0;
}

static void unpin_all(void)
{
	npinned = 0;
	wp_n = 0;
}

/* The durable image at the @k-th drain of the recording (what a crash just
 * after it leaves): @base plus every flush before that drain. */
static uint8_t *image_at_drain(struct world *w, const uint8_t *base, size_t k)
{
	uint8_t *img = aligned_alloc(4096, POOL_SIZE);
	size_t i, seen = 0;

	memcpy(img, base, POOL_SIZE);
	for (i = 0; i < w->rec.n && seen <= k; i++) {
		if (!w->rec.ev[i].len)
			seen++;
		else if (seen < k + 1)
			memcpy(img + w->rec.ev[i].off, w->rec.ev[i].data, w->rec.ev[i].len);
	}
	return img;
}

static size_t drains_recorded(struct world *w)
{
	size_t i, n = 0;

	for (i = 0; i < w->rec.n; i++)
		n += !w->rec.ev[i].len;
	return n;
}

/* Recovers @img (a crash image) and reads file "f" into @buf (up to @cap
 * bytes); its size, or -1 if the image does not mount. */
static long read_f_from_image(uint8_t *img, uint8_t *buf, size_t cap)
{
	struct pm_pool *p;
	struct pm_fs *fs;
	struct pm_inode *root, *f;
	struct stat st;
	char err[256];
	size_t got = 0;
	long size = -1;

	if (pm_pool_open_mem(img, POOL_SIZE, &noop_ops, &p, err, sizeof(err)))
		return -1;
	if (pm_journal_recover(p, NULL, 0) < 0 || pm_fs_mount(p, &fs, err, sizeof(err))) {
		pm_pool_close(&p);
		return -1;
	}
	if (pm_iget(fs, 1, &root) == 0) {
		if (pm_lookup(fs, root, "f", &f) == 0) {
			pm_stat(fs, f, &st);
			size = (long)st.st_size;
			while (got < cap && got < (size_t)size) {
				struct iovec iov[64];
				size_t bytes = 0, j, at = got;
				int n = pm_read_begin(fs, f, got, cap - got, iov, 64, &bytes);
				if (n <= 0)
					break;
				for (j = 0; j < (size_t)n; j++) {
					memcpy(buf + at, iov[j].iov_base, iov[j].iov_len);
					at += iov[j].iov_len;
				}
				pm_read_end(fs, f);
				got += bytes;
			}
			pm_iput(fs, f);
		}
		pm_iput(fs, root);
	}
	pm_fs_unmount(&fs);
	pm_pool_close(&p);
	return size;
}

/* sync(2) never reaches a FUSE daemon, so write() itself must leave its
 * bytes durable: in place, partial, and in a block dirty from before. */
static int write_is_durable_when_it_returns(bool csum)
{
	struct world w;
	struct pm_wb_stats st;
	struct pm_scrub sr;
	uint8_t *before, *img;
	uint64_t pblk;
	struct segs sg;

	CHECK_OK(setup(&w, csum));
	CHECK_OK(wr(&w, 0, 8 * 4096, 'a'));
	CHECK_OK(pm_fsync(w.fs, w.f, false));
	before = malloc(POOL_SIZE);
	memcpy(before, w.img, POOL_SIZE);
	w.rec.on = true;
	CHECK_OK(wr(&w, 4096, 4096, 'b')); /* in place, a whole block */
	CHECK_OK(wr(&w, 2 * 4096 + 100, 10, 'c')); /* in place, a few bytes */
	w.rec.on = false;
	CHECK_OK(pm_pin_blocks(w.fs, w.f, 1, 2, 0, keep_segs, &sg));
	pblk = sg.s[0].pblk;
	img = durable_image(&w, before);
	CHECK_EQ(img[pblk << 12], 'b');
	CHECK_EQ(img[(pblk << 12) + 4095], 'b');
	CHECK_EQ(img[((pblk + 1) << 12) + 100], 'c');
	CHECK_EQ(img[((pblk + 1) << 12) + 109], 'c');
	CHECK_EQ(img[((pblk + 1) << 12) + 110], 'a');
	free(img);
	free(before);
	/* durable means clean: nothing left for writeback or fsync */
	pm_inode_wb_stats(w.fs, w.f, &st);
	CHECK_EQ(st.dirty, 0);
	CHECK_EQ(st.clean, 8);
	rec_reset(&w.rec);
	w.rec.on = true;
	CHECK_OK(pm_fsync(w.fs, w.f, false)); /* only the lazily kept mtime */
	w.rec.on = false;
	CHECK(!flushed(&w, pblk));
	CHECK(!flushed(&w, pblk + 1));
	if (csum) { /* and checksummed at once */
		CHECK_OK(pm_scrub(w.fs, w.f, &sr));
		CHECK_EQ(sr.checked, 8);
		CHECK_EQ(sr.bad, 0);
	}
	teardown(&w);
	return 0;
}

static int test_write_is_durable_when_it_returns(void)
{
	return write_is_durable_when_it_returns(false);
}

static int test_write_is_durable_and_checksummed_when_it_returns(void)
{
	return write_is_durable_when_it_returns(true);
}

/* A write into a pinned block is durable too, but the block stays dirty
 * (never clean while pinned); a block dirty from a former pin is flushed
 * whole by the next write() to it, then clean. */
static int test_write_into_pinned_and_formerly_pinned_blocks(void)
{
	struct world w;
	struct pm_wb_stats st;
	uint8_t *before, *img;
	struct segs sg;

	CHECK_OK(setup(&w, false));
	CHECK_OK(wr(&w, 0, 4 * 4096, 'a'));
	CHECK_OK(pin(&w, 0, 2, &sg));
	before = malloc(POOL_SIZE);
	memcpy(before, w.img, POOL_SIZE);
	w.rec.on = true;
	CHECK_OK(wr(&w, 0, 16, 'p'));
	img = durable_image(&w, before);
	CHECK_EQ(img[sg.s[0].pblk << 12], 'p');
	free(img);
	pm_inode_wb_stats(w.fs, w.f, &st);
	CHECK_EQ(st.dirty, 2);
	/* the "device" stores into block 1, then the pin ends */
	memset(w.img + ((sg.s[0].pblk + 1) << 12) + 2048, 'D', 2048);
	unpin_all();
	rec_reset(&w.rec);
	memcpy(before, w.img, POOL_SIZE);
	memset(before + ((sg.s[0].pblk + 1) << 12) + 2048, 'a', 2048); /* not durable yet */
	CHECK_OK(wr(&w, 4096, 16, 'q'));
	w.rec.on = false;
	img = durable_image(&w, before);
	CHECK_EQ(img[(sg.s[0].pblk + 1) << 12], 'q');
	CHECK_EQ(img[((sg.s[0].pblk + 1) << 12) + 4095], 'D');
	free(img);
	free(before);
	pm_inode_wb_stats(w.fs, w.f, &st);
	CHECK_EQ(st.dirty, 1); /* block 0: unpinned, still dirty until writeback */
	teardown(&w);
	return 0;
}

/* An allocating write may get blocks that held a deleted file's bytes: at
 * no crash point may the file show those bytes where it wrote its own. */
static int test_allocating_write_never_shows_a_former_owners_bytes(void)
{
	enum { NB = 64 };
	struct world w;
	struct pm_inode *g;
	struct segs sg_old, sg_new;
	uint8_t *before, *img, *buf = malloc(NB * 4096);
	struct iovec iov;
	size_t k, nd, mounted_full = 0, reused = 0, i, j;

	CHECK_OK(setup(&w, false));
	CHECK_OK(pm_mknod(w.fs, &root_cred, w.root, "g", S_IFREG | 0644, 0, &g));
	memset(buf, 'X', NB * 4096);
	iov.iov_base = buf;
	iov.iov_len = NB * 4096;
	CHECK_EQ(pm_write(w.fs, &root_cred, g, 0, &iov, 1), NB * 4096);
	CHECK_OK(pm_fsync(w.fs, g, false));
	CHECK_OK(pm_pin_blocks(w.fs, g, 0, NB, 0, keep_segs, &sg_old));
	pm_iput(w.fs, g);
	CHECK_OK(pm_unlink(w.fs, w.root, "g"));
	before = aligned_alloc(4096, POOL_SIZE);
	memcpy(before, w.img, POOL_SIZE);
	w.rec.on = true;
	CHECK_OK(wr(&w, 0, NB * 4096, 'N'));
	w.rec.on = false;
	CHECK_OK(pm_pin_blocks(w.fs, w.f, 0, NB, 0, keep_segs, &sg_new));
	for (i = 0; i < sg_new.n; i++)
		for (j = 0; j < sg_old.n; j++)
			if (sg_new.s[i].pblk < sg_old.s[j].pblk + sg_old.s[j].n &&
			    sg_old.s[j].pblk < sg_new.s[i].pblk + sg_new.s[i].n)
				reused++;
	CHECK(reused > 0); /* else the test proves nothing */
	nd = drains_recorded(&w);
	for (k = 0; k < nd; k++) {
		long size;
		img = image_at_drain(&w, before, k);
		memset(buf, 0, NB * 4096);
		size = read_f_from_image(img, buf, NB * 4096);
		free(img);
		CHECK(size == 0 || size == NB * 4096);
		if (size == NB * 4096) {
			for (i = 0; i < NB * 4096; i++)
				if (buf[i] != 'N') {
					fprintf(stderr, "crash at drain %zu of %zu: byte %zu is '%c'\n", k,
						nd, i, buf[i]);
					CHECK(buf[i] == 'N');
				}
			mounted_full++;
		}
	}
	CHECK(mounted_full > 0); /* the last image has the write */
	free(before);
	free(buf);
	teardown(&w);
	return 0;
}

/* Like read_f_from_image, after fsck finds @img consistent (else -1); also
 * gives the file's allocated blocks. */
static long read_f_checked(uint8_t *img, uint8_t *buf, size_t cap, uint64_t *blocks)
{
	struct pm_fsck_result res = { 0, 0 };
	struct pm_pool *p;
	struct pm_fs *fs;
	struct pm_inode *root, *f;
	struct stat st;
	FILE *devnull = fopen("/dev/null", "w");
	char err[256];
	int rc;

	*blocks = 0;
	if (pm_pool_open_mem(img, POOL_SIZE, &noop_ops, &p, err, sizeof(err)))
		return -1;
	rc = pm_journal_recover(p, NULL, 0) < 0 || pm_fsck(p, false, devnull, &res) || res.errors;
	fclose(devnull);
	if (rc) {
		fprintf(stderr, "fsck found %lu problems:\n", res.errors);
		pm_fsck(p, false, stderr, &res);
	}
	pm_pool_close(&p);
	if (rc)
		return -1;
	if (pm_pool_open_mem(img, POOL_SIZE, &noop_ops, &p, err, sizeof(err)))
		return -1;
	if (pm_fs_mount(p, &fs, err, sizeof(err)) == 0) {
		if (pm_iget(fs, 1, &root) == 0) {
			if (pm_lookup(fs, root, "f", &f) == 0) {
				pm_stat(fs, f, &st);
				*blocks = (uint64_t)st.st_blocks / 8;
				pm_iput(fs, f);
			}
			pm_iput(fs, root);
		}
		pm_fs_unmount(&fs);
	}
	pm_pool_close(&p);
	return read_f_from_image(img, buf, cap);
}

/* A big fill (fallocate, a pin's holes) zeroes its new blocks without
 * fs->lock, in batches, and maps each batch in its own transaction: at no
 * crash point may the file map a block that still holds a deleted file's
 * bytes, and every crash image between the parts is consistent. Made to
 * take many batches and parts (PM_DEBUG_SMALL_TX). */
static int test_fill_in_parts_never_shows_a_former_owners_bytes(void)
{
	enum { NB = 1024 }; /* 4 MiB: eight batches of 128 blocks */
	struct world w;
	struct pm_inode *g;
	struct pm_setattr sa = { .valid = PM_SET_SIZE, .size = NB * 4096 };
	uint8_t *before, *img, *buf = malloc(NB * 4096);
	struct iovec iov;
	size_t k, nd, i, partial = 0, full = 0;

	CHECK_OK(setup(&w, false));
	CHECK_OK(pm_mknod(w.fs, &root_cred, w.root, "g", S_IFREG | 0644, 0, &g));
	memset(buf, 'X', NB * 4096);
	iov.iov_base = buf;
	iov.iov_len = NB * 4096;
	/* a file of 'X' over most of the pool's free blocks, then gone: the
	 * fill must get blocks that held its bytes */
	CHECK_EQ(pm_write(w.fs, &root_cred, g, 0, &iov, 1), NB * 4096);
	CHECK_OK(pm_write(w.fs, &root_cred, g, NB * 4096, &iov, 1) == NB * 4096 ? 0 : -1);
	CHECK_OK(pm_fsync(w.fs, g, false));
	pm_iput(w.fs, g);
	CHECK_OK(pm_unlink(w.fs, w.root, "g"));
	/* sparse: every block a hole, the size already there (KEEP_SIZE), so
	 * a crash image between parts shows the filled blocks' bytes */
	CHECK_OK(pm_setattr(w.fs, &root_cred, w.f, &sa));
	before = aligned_alloc(4096, POOL_SIZE);
	memcpy(before, w.img, POOL_SIZE);
	pm_fs_set_debug(w.fs, PM_DEBUG_SMALL_TX);
	w.rec.on = true;
	CHECK_OK(pm_fallocate(w.fs, w.f, FALLOC_FL_KEEP_SIZE, 0, NB * 4096));
	w.rec.on = false;
	pm_fs_set_debug(w.fs, 0);
	nd = drains_recorded(&w);
	for (k = 0; k <= nd; k++) {
		uint64_t blocks;
		long size;
		img = k < nd ? image_at_drain(&w, before, k) : durable_image(&w, before);
		memset(buf, 'U', NB * 4096);
		size = read_f_checked(img, buf, NB * 4096, &blocks);
		free(img);
		CHECK_EQ(size, NB * 4096);
		for (i = 0; i < NB * 4096; i++)
			if (buf[i] != 0) {
				fprintf(stderr, "crash at drain %zu of %zu (%llu blocks mapped): byte %zu is '%c'\n",
					k, nd, (unsigned long long)blocks, i, buf[i]);
				CHECK_EQ(buf[i], 0);
			}
		if (blocks >= NB)
			full++;
		else if (blocks > 0)
			partial++;
	}
	CHECK(partial >= 7); /* the parts committed one by one */
	CHECK(full > 0);     /* and the last image has them all */
	free(before);
	free(buf);
	teardown(&w);
	return 0;
}

static int test_stores_through_a_pinned_mapping_are_durable_after_fsync(void)
{
	struct world w;
	struct pm_wb_stats st;
	uint8_t *before, *img;
	struct segs sg;

	CHECK_OK(setup(&w, false));
	CHECK_OK(wr(&w, 0, 16 * 4096, 'a'));
	CHECK_OK(pm_fsync(w.fs, w.f, false));
	CHECK_OK(pin(&w, 4, 4, &sg));
	pm_inode_wb_stats(w.fs, w.f, &st);
	CHECK_EQ(st.dirty, 4); /* write-pinned blocks are dirty at once */
	CHECK_EQ(st.clean, 12);
	before = malloc(POOL_SIZE);
	memcpy(before, w.img, POOL_SIZE);
	w.rec.on = true;
	/* the "device" stores behind the file system's back */
	memset(w.img + (sg.s[0].pblk << 12), 'Z', 4096);
	CHECK_OK(pm_fsync(w.fs, w.f, false));
	w.rec.on = false;
	img = durable_image(&w, before);
	CHECK_EQ(img[sg.s[0].pblk << 12], 'Z');
	free(img);
	free(before);
	pm_inode_wb_stats(w.fs, w.f, &st);
	CHECK_EQ(st.dirty, 4);		  /* pinned blocks stay dirty */
	CHECK_EQ(st.clean, 12);		  /* the others are clean */
	CHECK_EQ(st.pinned_kept_dirty, 4); /* flushed, kept dirty */
	/* after unpin the next writeback cleans them */
	unpin_all();
	pm_writeback_pass(w.fs, 0);
	pm_inode_wb_stats(w.fs, w.f, &st);
	CHECK_EQ(st.dirty, 0);
	CHECK_EQ(st.clean, 16);
	teardown(&w);
	return 0;
}

static int test_fsync_of_a_clean_unpinned_file_flushes_nothing(void)
{
	struct world w;

	CHECK_OK(setup(&w, false));
	CHECK_OK(wr(&w, 0, 8 * 4096, 'a'));
	CHECK_OK(pm_fsync(w.fs, w.f, false));
	w.rec.flushes = 0;
	CHECK_OK(pm_fsync(w.fs, w.f, false));
	CHECK_EQ(w.rec.flushes, 0);
	teardown(&w);
	return 0;
}

static int test_background_flusher_never_flushes_pinned_blocks(void)
{
	struct world w;
	struct pm_wb_stats st;
	struct segs sg;
	size_t i;

	CHECK_OK(setup(&w, false));
	CHECK_OK(wr(&w, 0, 16 * 4096, 'a'));
	CHECK_OK(pm_fsync(w.fs, w.f, false));
	/* write-pin all 16 blocks (dirty from the pin on), then end the pin
	 * of blocks 8-15: they stay dirty (the holder may have stored) */
	CHECK_OK(pin(&w, 8, 8, &sg));
	CHECK_OK(pin(&w, 0, 8, &sg));
	memmove(pinned_pblk, pinned_pblk + 8, 8 * sizeof(pinned_pblk[0]));
	npinned = 8;
	pm_inode_wb_stats(w.fs, w.f, &st);
	CHECK_EQ(st.dirty, 16);
	rec_reset(&w.rec);
	w.rec.on = true;
	pm_writeback_pass(w.fs, 0);
	w.rec.on = false;
	for (i = 0; i < npinned; i++)
		CHECK(!flushed(&w, pinned_pblk[i])); /* recorder agrees */
	pm_inode_wb_stats(w.fs, w.f, &st);
	CHECK_EQ(st.flushed_background, 8); /* and the counters */
	CHECK_EQ(st.pinned_skipped, 8);
	CHECK_EQ(st.dirty, 8);
	teardown(&w);
	return 0;
}

static int read_byte(struct world *w, uint64_t off, int *c)
{
	struct iovec iov[4];
	size_t bytes;
	int n = pm_read_begin(w->fs, w->f, off, 1, iov, 4, &bytes);

	if (n < 0)
		return n;
	*c = n ? *(uint8_t *)iov[0].iov_base : -1;
	pm_read_end(w->fs, w->f);
	return 0;
}

static int test_flipped_bit_in_a_clean_block_gives_eio_but_not_in_a_pinned_one(void)
{
	struct world w;
	struct pm_scrub r;
	struct segs sg, all;
	int c;

	CHECK_OK(setup(&w, true));
	CHECK_OK(wr(&w, 0, 16 * 4096, 'a'));
	CHECK_OK(pm_fsync(w.fs, w.f, false));
	CHECK_OK(pm_pin_blocks(w.fs, w.f, 0, 16, 0, keep_segs, &all));
	CHECK_EQ(all.n, 1);
	CHECK_OK(read_byte(&w, 5 * 4096, &c));
	CHECK_EQ(c, 'a');
	/* a flipped bit in clean block 5 */
	w.img[((all.s[0].pblk + 5) << 12) + 100] ^= 1;
	CHECK_EQ(read_byte(&w, 5 * 4096, &c), -EIO);
	CHECK_OK(read_byte(&w, 6 * 4096, &c)); /* the neighbours are fine */
	CHECK_OK(pm_scrub(w.fs, w.f, &r));
	CHECK_EQ(r.bad, 1);
	CHECK_EQ(r.checked, 15);
	CHECK_EQ(r.first_bad_off, 5 * 4096);
	/* the same flip in a pinned block is no corruption: it is dirty */
	CHECK_OK(pin(&w, 8, 2, &sg));
	w.img[(sg.s[0].pblk << 12) + 100] ^= 1;
	CHECK_OK(read_byte(&w, 8 * 4096, &c));
	CHECK_OK(pm_scrub(w.fs, w.f, &r));
	CHECK_EQ(r.bad, 1); /* still only block 5 */
	CHECK_EQ(r.skipped_pinned, 2);
	/* rewriting block 5 makes it clean again, with a new checksum */
	CHECK_OK(wr(&w, 5 * 4096, 4096, 'c'));
	unpin_all();
	CHECK_OK(pm_fsync(w.fs, w.f, false));
	CHECK_OK(read_byte(&w, 5 * 4096, &c));
	CHECK_EQ(c, 'c');
	CHECK_OK(pm_scrub(w.fs, w.f, &r));
	CHECK_EQ(r.bad, 0);
	teardown(&w);
	return 0;
}

/* A pin that may not allocate (PM_PIN_NOALLOC: a read pin by a caller who
 * could not write the file) fails on a hole and allocates nothing, but pins
 * allocated blocks. */
static int test_noalloc_pin_of_a_hole_is_eacces_and_allocates_nothing(void)
{
	struct world w;
	struct statvfs before, after;
	struct segs sg;

	CHECK_OK(setup(&w, false));
	CHECK_OK(wr(&w, 0, 4096, 'a'));
	CHECK_OK(wr(&w, 3 * 4096, 4096, 'd')); /* blocks 1 and 2: holes */
	pm_statfs(w.fs, &before);
	CHECK_EQ(pm_pin_blocks(w.fs, w.f, 0, 4, PM_PIN_NOALLOC, keep_segs, &sg), -EACCES);
	CHECK_EQ(pm_pin_blocks(w.fs, w.f, 2, 1, PM_PIN_NOALLOC, keep_segs, &sg), -EACCES);
	pm_statfs(w.fs, &after);
	CHECK_EQ(after.f_bfree, before.f_bfree);
	CHECK_OK(pm_pin_blocks(w.fs, w.f, 3, 1, PM_PIN_NOALLOC, keep_segs, &sg));
	CHECK_EQ(sg.n, 1);
	CHECK_OK(pm_pin_blocks(w.fs, w.f, 0, 4, 0, keep_segs, &sg)); /* may allocate */
	pm_statfs(w.fs, &after);
	CHECK_EQ(after.f_bfree < before.f_bfree, 1);
	teardown(&w);
	return 0;
}

/* ---- issue 17, item 4: the unsafe switches and bounce writeback ---------- */

static int test_unsafe_switches_need_a_pool_made_for_experiments(void)
{
	struct world w;
	char err[256] = "";

	CHECK_OK(setup(&w, true));
	CHECK_EQ(pm_fs_set_unsafe(w.fs, PM_UNSAFE_NO_QUARANTINE, err, sizeof(err)), -EPERM);
	CHECK(strstr(err, "mkfs.pinfs --experimental"));
	CHECK_EQ(pm_fs_set_unsafe(w.fs, PM_UNSAFE_MARK_PINNED_CLEAN, err, sizeof(err)), -EPERM);
	CHECK_EQ(pm_fs_unsafe(w.fs), 0);
	teardown(&w);
	CHECK_OK(setup_ex(&w, true, PM_FEAT_COMPAT_EXPERIMENTAL));
	CHECK_EQ(pm_fs_set_unsafe(w.fs, 0x80, err, sizeof(err)), -EINVAL);
	CHECK_OK(pm_fs_set_unsafe(w.fs, PM_UNSAFE_ALL, err, sizeof(err)));
	CHECK_EQ(pm_fs_unsafe(w.fs), PM_UNSAFE_ALL);
	teardown(&w);
	return 0;
}

/* Blocks freed while pinned: quarantined by the rule, free at once without it. */
static int no_quarantine(bool unsafe, uint64_t *quarantined, uint64_t *freed_now)
{
	struct world w;
	struct statvfs before, after;
	struct segs sg;
	char err[256];

	CHECK_OK(setup_ex(&w, false, PM_FEAT_COMPAT_EXPERIMENTAL));
	if (unsafe)
		CHECK_OK(pm_fs_set_unsafe(w.fs, PM_UNSAFE_NO_QUARANTINE, err, sizeof(err)));
	CHECK_OK(wr(&w, 0, 16 * 4096, 'a'));
	CHECK_OK(pin(&w, 0, 16, &sg));
	pm_statfs(w.fs, &before);
	CHECK_OK(pm_fallocate(w.fs, w.f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
			      16 * 4096));
	pm_statfs(w.fs, &after);
	*quarantined = pm_quarantined(w.fs);
	*freed_now = after.f_bfree - before.f_bfree;
	unpin_all();
	pm_unquarantine(w.fs, sg.s[0].pblk, 16);
	teardown(&w);
	return 0;
}

static int test_no_quarantine_makes_pinned_blocks_free_at_once(void)
{
	uint64_t q, freed, map_freed;

	CHECK_OK(no_quarantine(false, &q, &map_freed));
	CHECK_EQ(q, 16); /* the rule: out of the free list while pinned */
	CHECK(map_freed <= 1); /* the map node, never pinned, may go */
	CHECK_OK(no_quarantine(true, &q, &freed));
	CHECK_EQ(q, 0); /* the switch: allocatable at once */
	CHECK_EQ(freed, map_freed + 16);
	return 0;
}

static int test_mark_pinned_clean_checksums_pinned_blocks_and_a_store_breaks_them(void)
{
	struct world w;
	struct pm_wb_stats st;
	struct pm_scrub r;
	struct segs sg;
	char err[256];

	CHECK_OK(setup_ex(&w, true, PM_FEAT_COMPAT_EXPERIMENTAL));
	CHECK_OK(pm_fs_set_unsafe(w.fs, PM_UNSAFE_MARK_PINNED_CLEAN, err, sizeof(err)));
	CHECK_OK(wr(&w, 0, 16 * 4096, 'a'));
	CHECK_OK(pin(&w, 4, 4, &sg));
	memset(w.img + (sg.s[0].pblk << 12), 'Z', 4096); /* the holder stores */
	CHECK_OK(pm_fsync(w.fs, w.f, false));
	pm_inode_wb_stats(w.fs, w.f, &st);
	CHECK_EQ(st.dirty, 0); /* clean while pinned: the rule is off */
	CHECK_OK(pm_scrub(w.fs, w.f, &r));
	CHECK_EQ(r.checked, 16);
	CHECK_EQ(r.bad, 0);
	w.img[(sg.s[0].pblk << 12) + 7] = 'Y'; /* and stores again */
	CHECK_OK(pm_scrub(w.fs, w.f, &r));
	CHECK_EQ(r.bad, 1);
	CHECK_EQ(r.first_bad_off, 4 * 4096);
	unpin_all();
	teardown(&w);
	return 0;
}

/* Pool block holding 4096 bytes of @c other than @not, or 0 */
static uint64_t find_block(const uint8_t *img, int c, uint64_t not)
{
	uint64_t b;
	size_t i;

	for (b = 1; b < POOL_SIZE / 4096; b++) {
		const uint8_t *p = img + (b << 12);
		if (b == not)
			continue;
		for (i = 0; i < 4096 && p[i] == c; i++)
			;
		if (i == 4096)
			return b;
	}
	return 0;
}

/* fsck --checksums of a crash image: its problem count (-1: no mount) */
static long fsck_image(const uint8_t *src)
{
	uint8_t *img = aligned_alloc(4096, POOL_SIZE);
	struct pm_fsck_opts o = { .repair = false, .checksums = true };
	struct pm_fsck_result res;
	struct pm_pool *p;
	char err[256];
	long n = -1;

	memcpy(img, src, POOL_SIZE);
	if (!pm_pool_open_mem(img, POOL_SIZE, &noop_ops, &p, err, sizeof(err))) {
		if (pm_journal_recover(p, NULL, 0) >= 0 && pm_fsck_ex(p, &o, NULL, &res) == 0)
			n = (long)res.errors;
		pm_pool_close(&p);
	}
	free(img);
	return n;
}

static int test_bounce_fsync_leaves_a_checksummed_snapshot_at_every_crash_point(void)
{
	struct world w;
	struct pm_wb_stats st;
	struct pm_scrub r;
	struct segs sg;
	uint8_t *before, *img;
	uint64_t shadow;
	size_t k, nd;
	char err[256];

	CHECK_OK(setup(&w, false));
	CHECK_EQ(pm_fs_set_pinned_writeback(w.fs, PM_PINNED_WB_BOUNCE, err, sizeof(err)),
		 -EINVAL); /* no checksums: nothing to bounce for */
	teardown(&w);
	CHECK_OK(setup(&w, true));
	CHECK_OK(pm_fs_set_pinned_writeback(w.fs, PM_PINNED_WB_BOUNCE, err, sizeof(err)));
	CHECK_OK(wr(&w, 0, 8 * 4096, 'a'));
	CHECK_OK(pm_fsync(w.fs, w.f, false));
	CHECK_OK(pin(&w, 2, 2, &sg));
	memset(w.img + (sg.s[0].pblk << 12), 'Z', 4096); /* the holder stores */
	before = malloc(POOL_SIZE);
	memcpy(before, w.img, POOL_SIZE);
	rec_reset(&w.rec);
	w.rec.on = true;
	CHECK_OK(pm_fsync(w.fs, w.f, false));
	w.rec.on = false;
	/* after the fsync: a durable copy of the snapshot, checksummed */
	img = durable_image(&w, before);
	shadow = find_block(img, 'Z', sg.s[0].pblk);
	CHECK(shadow != 0);
	CHECK_EQ(fsck_image(img), 0);
	img[(shadow << 12) + 5] ^= 1; /* the checksum covers it */
	CHECK_EQ(fsck_image(img), 1);
	free(img);
	/* at every drain of the fsync a crash leaves no wrong checksum */
	nd = drains_recorded(&w);
	CHECK(nd > 2);
	for (k = 0; k < nd; k++) {
		img = image_at_drain(&w, before, k);
		CHECK_EQ(fsck_image(img), 0);
		free(img);
	}
	free(before);
	pm_inode_wb_stats(w.fs, w.f, &st);
	CHECK_EQ(st.dirty, 2); /* the live blocks stay dirty */
	CHECK_OK(pm_scrub(w.fs, w.f, &r));
	CHECK_EQ(r.skipped_pinned, 2);
	CHECK_EQ(r.checked, 8); /* 6 clean blocks, 2 snapshots */
	w.img[(sg.s[0].pblk << 12) + 9] = 'Y'; /* the live block changes: */
	CHECK_OK(pm_scrub(w.fs, w.f, &r));
	CHECK_EQ(r.bad, 0); /* the snapshot does not */
	w.img[(shadow << 12) + 9] ^= 1; /* a damaged snapshot is caught */
	CHECK_OK(pm_scrub(w.fs, w.f, &r));
	CHECK_EQ(r.bad, 1);
	CHECK_EQ(r.first_bad_off, 2 * 4096);
	w.img[(shadow << 12) + 9] ^= 1;
	unpin_all();
	teardown(&w);
	return 0;
}

int main(void)
{
	RUN(test_write_is_durable_when_it_returns);
	RUN(test_write_is_durable_and_checksummed_when_it_returns);
	RUN(test_write_into_pinned_and_formerly_pinned_blocks);
	RUN(test_allocating_write_never_shows_a_former_owners_bytes);
	RUN(test_fill_in_parts_never_shows_a_former_owners_bytes);
	RUN(test_stores_through_a_pinned_mapping_are_durable_after_fsync);
	RUN(test_fsync_of_a_clean_unpinned_file_flushes_nothing);
	RUN(test_background_flusher_never_flushes_pinned_blocks);
	RUN(test_flipped_bit_in_a_clean_block_gives_eio_but_not_in_a_pinned_one);
	RUN(test_noalloc_pin_of_a_hole_is_eacces_and_allocates_nothing);
	RUN(test_unsafe_switches_need_a_pool_made_for_experiments);
	RUN(test_no_quarantine_makes_pinned_blocks_free_at_once);
	RUN(test_mark_pinned_clean_checksums_pinned_blocks_and_a_store_breaks_them);
	RUN(test_bounce_fsync_leaves_a_checksummed_snapshot_at_every_crash_point);
	return T_EXIT_PASS;
}

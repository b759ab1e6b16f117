/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/crash_states.c -- crash states under the persistent-memory
 * model (scripts/crash-states drives it).
 *
 * test_crash.c replays prefixes of the recorded flushes. Real persistent
 * memory behind a CPU cache promises less: a store may reach the media at
 * any moment after it is made (eviction), lines flushed between two fences
 * land in any order, and a line can be half old, half new at 8-byte
 * granularity. So this program keeps `durable`, the pool as of the last
 * drain, and at every drain closes an epoch whose in-flight lines are the
 * 64-byte lines flushed since the last drain plus every line that changed
 * in the epoch. Stores are plain stores into the mapping and cannot be
 * intercepted, so at every flush and every drain the whole pool is compared
 * with what was seen last: each line keeps every value it held at one of
 * those points (up to MAXV: the first ones and the latest), so a line stored
 * several times in an epoch can reach the media with an intermediate value,
 * not only its flushed or final one. A crash inside the epoch leaves
 * `durable` plus any choice, per in-flight line, of its old contents or one
 * of its values: every choice when there are at most 2^K of them, a seeded
 * random sample beyond, and torn variants of lines (each 8-byte word old or
 * one value's). After the operation returns, one more epoch holds the
 * stores never flushed: they too may or may not have reached the media.
 *
 * Each image is recovered (journal replay, fsck with no problem allowed and
 * the data checksums verified, mount) and its tree dumped; during operation
 * i of a workload it must be the tree before or after operation i, and
 * after it returned, the tree after it. At each operation's end the durable
 * image must also hold the data of every file whose data an fsync or
 * fdatasync has covered since it was last written.
 *
 * Recovery crashes too. For a few images per epoch whose journal holds a
 * committed transaction, the recovery (the open, with its replay under a
 * torn superblock, the journal replay, the mount and the unmount) runs under
 * the same model, and each of its crash images (replay_lim) must recover to
 * the tree the uncrashed recovery gave: recovery is idempotent.
 *
 * Workloads are CrashMonkey ACE's: every operation alone and every pair, on
 * a small prepared tree, and seeded random sequences; then, on a --checksums
 * pool, every operation alone and every pair whose first writes data. Pins
 * go through the engine's pin hooks as the lease manager's do: a live pin
 * keeps its block dirty through writeback, and the unpin does what a
 * lease's end does (the hooks stop naming the block, pm_unquarantine()), so
 * an unpin then an fsync makes the block clean with its checksum recorded.
 * Two lease lives run whole on both pools: a pinned block freed while pinned
 * (quarantined) then unpinned, and pinned data fsynced before and after the
 * unpin.
 * Limitations: values are those seen at flushes and fences, not at every
 * store; file contents are compared only at operation ends.
 *
 * Usage: crash_states [--quick | --full] [--self-test] [--seed N] [--keep DIR]
 *	  [--only WORKLOAD (e.g. create+fsync_dir)] [--plant PM_DEBUG_* bits]
 *	  [--plant-replay PM_REPLAY_DEBUG_* bits] [--no-values (the model
 *	  without values per epoch nor recovery crashes: what the last two
 *	  planted bugs need)]
 * Last line: "crash states: N checked, F failed, W workloads".
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pmem/fs.h"
#include "pmem/fsck.h"
#include "pmem/pool.h"
#include "tests/unit/crashlib.h"
#include "tests/unit/record.h"

#define POOL_SIZE (8u << 20) /* PM_POOL_MIN_SIZE */
#define LINE 64u
#define NLINES (POOL_SIZE / LINE)

/* ---- the model: epochs of in-flight lines ------------------------------- */

/* Values one line may hold at a crash besides its durable one: every value
 * seen at a flush or fence of the epoch (the first MAXV - 1 and the last). */
#define MAXV 4

struct iline {
	uint32_t line;
	uint8_t nval;		  /* new contents: 1..MAXV */
	bool flushed;		  /* flval is what the last flush took: durable after */
	uint8_t old[LINE], flval[LINE], vals[MAXV][LINE];
};

struct epoch {
	struct iline *l;
	size_t n;
	int op;	    /* index of the workload operation it belongs to */
	bool after; /* the operation had returned: only its "after" is legal */
};

/* per-line values seen during the current epoch */
struct seenv {
	uint8_t n;
	uint8_t v[MAXV][LINE];
};

struct pmrec {
	uint8_t *live, *durable;
	uint8_t *seen; /* the pool as last looked at (a flush or a fence) */
	bool on;
	/* this epoch's flushed lines, in order, with their contents */
	uint32_t *fl;
	uint8_t *fldata; /* NLINES * LINE, indexed by line */
	uint8_t *flmark; /* per line: flushed in this epoch */
	size_t nfl;
	/* this epoch's lines with values seen (index into sv, + 1; 0: none) */
	uint32_t *svidx;
	struct seenv *sv;
	size_t nsv, capsv;
	struct epoch *ep;
	size_t nep, capep;
	int op;
};

/* Pool-sized buffers, kept for reuse: fresh 8 MiB allocations are mapped
 * and faulted in again each time, which cost more than the checks. */
static uint8_t *bufs[32];
static size_t nbufs;

static uint8_t *buf_get(void)
{
	uint8_t *b = nbufs ? bufs[--nbufs] : aligned_alloc(4096, POOL_SIZE);

	if (!b)
		abort();
	return b;
}

static void buf_put(void *b)
{
	if (!b)
		return;
	if (nbufs < sizeof(bufs) / sizeof(bufs[0]))
		bufs[nbufs++] = b;
	else
		free(b);
}

static void pmrec_init(struct pmrec *r, uint8_t *live)
{
	memset(r, 0, sizeof(*r));
	r->live = live;
	r->durable = buf_get();
	r->seen = buf_get();
	r->fl = malloc(NLINES * sizeof(*r->fl));
	r->fldata = buf_get();
	r->flmark = calloc(NLINES, 1);
	r->svidx = calloc(NLINES, sizeof(*r->svidx));
	if (!r->durable || !r->seen || !r->fl || !r->fldata || !r->flmark || !r->svidx)
		abort();
	memcpy(r->durable, live, POOL_SIZE);
	memcpy(r->seen, live, POOL_SIZE);
}

static void pmrec_free(struct pmrec *r)
{
	free(r->ep);
	free(r->fl);
	buf_put(r->fldata);
	free(r->flmark);
	buf_put(r->durable);
	buf_put(r->seen);
	free(r->svidx);
	free(r->sv);
}

/* Adds @v to the values line @ln held in this epoch (if new). */
static void seen_add(struct pmrec *r, size_t ln, const uint8_t *v)
{
	struct seenv *s;
	unsigned i;

	if (!r->svidx[ln]) {
		if (r->nsv == r->capsv) {
			r->capsv = r->capsv ? r->capsv * 2 : 256;
			r->sv = realloc(r->sv, r->capsv * sizeof(*r->sv));
			if (!r->sv)
				abort();
		}
		r->sv[r->nsv].n = 0;
		r->svidx[ln] = (uint32_t)++r->nsv;
	}
	s = &r->sv[r->svidx[ln] - 1];
	for (i = 0; i < s->n; i++)
		if (!memcmp(s->v[i], v, LINE))
			return;
	if (s->n == MAXV)
		s->n--; /* keep the first ones and the latest */
	memcpy(s->v[s->n++], v, LINE);
}

/* The stores cannot be intercepted (they are plain stores into the
 * mapping), so every flush and fence looks at the whole pool: each line
 * that changed since the last look adds its value to the epoch's. */
static bool no_values; /* --no-values: the model before values per epoch */

static void scan(struct pmrec *r)
{
	size_t pg, ln;

	if (no_values)
		return;
	for (pg = 0; pg < POOL_SIZE; pg += 4096) {
		if (!memcmp(r->live + pg, r->seen + pg, 4096))
			continue;
		for (ln = pg / LINE; ln < (pg + 4096) / LINE; ln++) {
			if (!memcmp(r->live + ln * LINE, r->seen + ln * LINE, LINE))
				continue;
			memcpy(r->seen + ln * LINE, r->live + ln * LINE, LINE);
			if (memcmp(r->live + ln * LINE, r->durable + ln * LINE, LINE))
				seen_add(r, ln, r->live + ln * LINE);
		}
	}
}

static struct iline *ep_add(struct epoch *e, size_t *cap)
{
	if (e->n == *cap) {
		*cap = *cap ? *cap * 2 : 64;
		e->l = realloc(e->l, *cap * sizeof(*e->l));
		if (!e->l)
			abort();
	}
	return &e->l[e->n++];
}

/* Adds @v to @l's values unless it is the old contents or already there. */
static void iline_val(struct iline *l, const uint8_t *v)
{
	unsigned i;

	if (!memcmp(v, l->old, LINE))
		return;
	for (i = 0; i < l->nval; i++)
		if (!memcmp(l->vals[i], v, LINE))
			return;
	if (l->nval == MAXV)
		l->nval--;
	memcpy(l->vals[l->nval++], v, LINE);
}

/* Closes an epoch: every flushed line, every line with a value seen in the
 * epoch and every line that differs from the durable image is in flight,
 * with each of those values; the flushed ones are durable afterwards (with
 * what their last flush took). */
static void close_epoch(struct pmrec *r, bool after)
{
	struct epoch e = { NULL, 0, r->op, after };
	size_t cap = 0, i;

	scan(r);
	for (i = 0; i < NLINES; i++) {
		const uint8_t *lv = r->live + i * LINE, *du = r->durable + i * LINE;
		bool fl = r->flmark[i], differs = memcmp(lv, du, LINE) != 0;
		struct iline *l;
		unsigned v;

		if (!fl && !differs && !r->svidx[i])
			continue;
		l = ep_add(&e, &cap);
		l->line = (uint32_t)i;
		l->flushed = fl;
		l->nval = 0;
		memcpy(l->old, du, LINE);
		if (r->svidx[i]) {
			const struct seenv *s = &r->sv[r->svidx[i] - 1];
			for (v = 0; v < s->n; v++)
				iline_val(l, s->v[v]);
			r->svidx[i] = 0;
		}
		if (fl) {
			memcpy(l->flval, r->fldata + i * LINE, LINE);
			iline_val(l, l->flval);
		}
		iline_val(l, lv);
		if (!l->nval)
			e.n--; /* it only ever held its durable contents */
	}
	r->nsv = 0;
	for (i = 0; i < r->nfl; i++) {
		uint32_t ln = r->fl[i];
		memcpy(r->durable + (size_t)ln * LINE, r->fldata + (size_t)ln * LINE, LINE);
		r->flmark[ln] = 0;
	}
	r->nfl = 0;
	if (!e.n) {
		free(e.l);
		return;
	}
	if (r->nep == r->capep) {
		r->capep = r->capep ? r->capep * 2 : 16;
		r->ep = realloc(r->ep, r->capep * sizeof(*r->ep));
		if (!r->ep)
			abort();
	}
	r->ep[r->nep++] = e;
}

static void pm_rec_flush(void *ctx, const void *addr, size_t len)
{
	struct pmrec *r = ctx;
	size_t off = (size_t)((const uint8_t *)addr - r->live), ln;

	if (!r->on || !len)
		return;
	scan(r);
	for (ln = off / LINE; ln <= (off + len - 1) / LINE && ln < NLINES; ln++) {
		if (!r->flmark[ln]) {
			r->flmark[ln] = 1;
			r->fl[r->nfl++] = (uint32_t)ln;
		}
		memcpy(r->fldata + ln * LINE, r->live + ln * LINE, LINE);
	}
}

static void pm_rec_drain(void *ctx)
{
	struct pmrec *r = ctx;

	if (r->on)
		close_epoch(r, false);
}

static void epochs_free(struct pmrec *r)
{
	size_t i;

	for (i = 0; i < r->nep; i++)
		free(r->ep[i].l);
	r->nep = 0;
}

/* ---- random numbers ------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

/* ---- the prepared tree and the operations ------------------------------- */

static const struct pm_cred root_cred = { 0, 0, 0, NULL, 0 };

struct ctx {
	struct pm_fs *fs;
	struct pm_inode *root;
	struct pm_pool *pool;
	uint64_t unsynced[64]; /* inodes whose data an fsync has not covered */
	size_t nunsynced;
};

static struct pm_inode *get(struct ctx *c, const char *path)
{
	struct pm_inode *dir = c->root, *ip = NULL;
	char buf[256], *s, *save = NULL;

	snprintf(buf, sizeof(buf), "%s", path);
	if (pm_iget(c->fs, 1, &dir))
		return NULL;
	for (s = strtok_r(buf, "/", &save); s; s = strtok_r(NULL, "/", &save)) {
		int rc = pm_lookup(c->fs, dir, s, &ip);
		pm_iput(c->fs, dir);
		if (rc)
			return NULL;
		dir = ip;
	}
	return dir;
}

static void mark_unsynced(struct ctx *c, struct pm_inode *ip)
{
	struct stat st;
	size_t i;

	pm_stat(c->fs, ip, &st);
	for (i = 0; i < c->nunsynced; i++)
		if (c->unsynced[i] == st.st_ino)
			return;
	if (c->nunsynced < 64)
		c->unsynced[c->nunsynced++] = st.st_ino;
}

static void mark_synced(struct ctx *c, struct pm_inode *ip)
{
	struct stat st;
	size_t i;

	pm_stat(c->fs, ip, &st);
	for (i = 0; i < c->nunsynced; i++)
		if (c->unsynced[i] == st.st_ino)
			c->unsynced[i] = c->unsynced[--c->nunsynced];
}

static int mk(struct ctx *c, const char *dirpath, const char *name, mode_t mode)
{
	struct pm_inode *d = get(c, dirpath), *ip;
	int rc = d ? pm_mknod(c->fs, &root_cred, d, name, mode, 0, &ip) : -ENOENT;

	if (!rc)
		pm_iput(c->fs, ip);
	pm_iput(c->fs, d);
	return rc;
}

static int wr(struct ctx *c, const char *path, uint64_t off, size_t len, int seed)
{
	struct pm_inode *ip = get(c, path);
	ssize_t rc = crash_write(c->fs, ip, off, len, seed);

	if (rc >= 0)
		mark_unsynced(c, ip);
	pm_iput(c->fs, ip);
	return rc < 0 ? (int)rc : 0;
}

static int do_sync(struct ctx *c, const char *path, bool datasync)
{
	struct pm_inode *ip = get(c, path);
	int rc = ip ? pm_fsync(c->fs, ip, datasync) : -ENOENT;

	if (!rc)
		mark_synced(c, ip);
	pm_iput(c->fs, ip);
	return rc;
}

static int falloc(struct ctx *c, const char *path, int mode, uint64_t off, uint64_t len)
{
	struct pm_inode *ip = get(c, path);
	int rc = ip ? pm_fallocate(c->fs, ip, mode, off, len) : -ENOENT;

	if (!rc)
		mark_unsynced(c, ip); /* partial blocks are zeroed in place */
	pm_iput(c->fs, ip);
	return rc;
}

static int setattr(struct ctx *c, const char *path, const struct pm_setattr *sa)
{
	struct pm_inode *ip = get(c, path);
	int rc = ip ? pm_setattr(c->fs, &root_cred, ip, sa) : -ENOENT;

	pm_iput(c->fs, ip);
	return rc;
}

static int op_create(struct ctx *c) { return mk(c, "", "new", S_IFREG | 0644); }
static int op_mkdir(struct ctx *c) { return mk(c, "d2", "newdir", S_IFDIR | 0755); }
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
	struct pm_inode *ip = get(c, "f1"), *d = get(c, "d1");
	int rc = ip && d ? pm_link(c->fs, ip, d, "f1-link") : -ENOENT;
	pm_iput(c->fs, ip);
	pm_iput(c->fs, d);
	return rc;
}
static int op_unlink(struct ctx *c) { return pm_unlink(c->fs, c->root, "f2"); }
static int op_write_inplace(struct ctx *c) { return wr(c, "f1", 10, 3000, 5); }
static int op_write_extend(struct ctx *c) { return wr(c, "f1", 4000, 9000, 6); }
static int op_write_hole(struct ctx *c) { return wr(c, "big", 100000, 20000, 7); }
static int op_fallocate(struct ctx *c) { return falloc(c, "big", 0, 250000, 100000); }
static int op_punch(struct ctx *c)
{
	return falloc(c, "big", FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 8000, 40000);
}
/* PINFS_IOC_GROW: the size up over holes, the old tail zeroed (pm_grow) */
static int op_grow(struct ctx *c)
{
	struct pm_inode *ip = get(c, "f2");
	int rc = ip ? pm_grow(c->fs, ip, 150000) : -ENOENT;

	pm_iput(c->fs, ip);
	return rc;
}
/* what pinfs-dax does to an append: preallocate past EOF, then, at the
 * last close, PINFS_IOC_TRIM frees what it did not write (pm_trim_eof) */
static int op_prealloc_trim(struct ctx *c)
{
	struct pm_inode *ip = get(c, "f2");
	int rc = ip ? pm_fallocate(c->fs, ip, FALLOC_FL_KEEP_SIZE, 70000, 200000) : -ENOENT;

	/* nothing inside the size changes: its bytes are checked on every
	 * image (not marked unsynced) */
	if (!rc)
		rc = pm_trim_eof(c->fs, ip, 170000);
	pm_iput(c->fs, ip);
	return rc;
}
static int op_zero_range(struct ctx *c)
{
	return falloc(c, "big", FALLOC_FL_ZERO_RANGE, 30000, 180000);
}
static int op_truncate_up(struct ctx *c)
{
	struct pm_setattr sa = { .valid = PM_SET_SIZE, .size = 300000 };
	return setattr(c, "f2", &sa);
}
static int op_truncate_down(struct ctx *c)
{
	struct pm_setattr sa = { .valid = PM_SET_SIZE, .size = 5000 };
	return setattr(c, "big", &sa);
}
static int op_rename_file(struct ctx *c)
{
	struct pm_inode *d = get(c, "d2");
	int rc = d ? pm_rename(c->fs, c->root, "f1", d, "f1-moved", 0) : -ENOENT;
	pm_iput(c->fs, d);
	return rc;
}
static int op_rename_dir(struct ctx *c)
{
	struct pm_inode *d1 = get(c, "d1"), *d2 = get(c, "d2");
	int rc = d1 && d2 ? pm_rename(c->fs, d1, "sub", d2, "sub-moved", 0) : -ENOENT;
	pm_iput(c->fs, d1);
	pm_iput(c->fs, d2);
	return rc;
}
static int op_rename_over(struct ctx *c) { return pm_rename(c->fs, c->root, "f2", c->root, "f1", 0); }
/* sets @name to @value on @path, or removes it (@value NULL) */
static int xattr(struct ctx *c, const char *path, const char *name, const char *value)
{
	struct pm_inode *ip = get(c, path);
	int rc = -ENOENT;

	if (ip && value)
		rc = pm_setxattr(c->fs, ip, name, value, strlen(value), 0);
	else if (ip)
		rc = pm_removexattr(c->fs, ip, name);
	pm_iput(c->fs, ip);
	return rc;
}
static int op_setxattr(struct ctx *c) { return xattr(c, "f1", "user.a", "a-value"); }
static int op_removexattr(struct ctx *c) { return xattr(c, "f2", "user.k", NULL); }
static int op_chmod(struct ctx *c)
{
	struct pm_setattr sa = { .valid = PM_SET_MODE | PM_SET_UID, .mode = 0600, .uid = 1000 };
	return setattr(c, "f1", &sa);
}
static int op_utimes(struct ctx *c)
{
	struct pm_setattr sa = { .valid = PM_SET_ATIME | PM_SET_MTIME,
				 .atime = { 1000, 5 }, .mtime = { 2000, 7 } };
	return setattr(c, "big", &sa);
}
static int op_fsync_f1(struct ctx *c) { return do_sync(c, "f1", false); }
static int op_fdatasync_big(struct ctx *c) { return do_sync(c, "big", true); }
static int op_fsync_f2(struct ctx *c) { return do_sync(c, "f2", false); }
static int op_fsync_dir(struct ctx *c) { return do_sync(c, "d1", false); }

/*
 * Pins, as the lease manager keeps them for the engine (fusefs/ioctl.c's
 * hooks): a table of live pins the engine's pin hooks read. Ending one does
 * what a lease's end does at the engine level: the hooks stop naming its
 * blocks (pinned, write_pinned: writeback may now clean them and record
 * their checksums) and pm_unquarantine() releases those freed meanwhile.
 * One workload at a time: the table is reset when a workload mounts.
 */
struct pin {
	uint64_t ino, first, n, pblk;
	bool write;
};
static struct pin pins[8];
static size_t npins;

static bool hook_pinned(void *ctx, uint64_t pblk)
{
	size_t i;

	(void)ctx;
	for (i = 0; i < npins; i++)
		if (pblk >= pins[i].pblk && pblk < pins[i].pblk + pins[i].n)
			return true;
	return false;
}

static void hook_write_pinned(void *ctx, uint64_t ino, void (*fn)(void *arg, uint64_t first, uint64_t n),
			      void *arg)
{
	size_t i;

	(void)ctx;
	for (i = 0; i < npins; i++)
		if (pins[i].ino == ino && pins[i].write)
			fn(arg, pins[i].first, pins[i].n);
}

static int hook_may_free(void *ctx, struct pm_inode *ip, uint64_t first, uint64_t n)
{
	(void)ctx;
	(void)ip;
	(void)first;
	(void)n;
	return 0; /* freeing goes ahead: a pinned block is quarantined */
}

static void hook_ino_gone(void *ctx, uint64_t ino)
{
	size_t i;

	(void)ctx;
	for (i = 0; i < npins; i++)
		if (pins[i].ino == ino)
			pins[i].ino = 0; /* the blocks stay pinned, the file is gone */
}

static int hook_mappings(void *ctx, struct pm_run **out, size_t *n)
{
	(void)ctx;
	*out = NULL;
	*n = 0; /* nobody maps the pool: the test stores through its own view */
	return 0;
}

static const struct pm_pin_hooks pin_hooks = { .may_free = hook_may_free, .pinned = hook_pinned,
					       .write_pinned = hook_write_pinned,
					       .ino_gone = hook_ino_gone, .mappings = hook_mappings };

struct store_arg {
	struct ctx *c;
	uint64_t ino, first;
	bool write;
	int seed;
};

/* the pin takes effect: the lease is granted (fusefs/ioctl.c pin_cb); the
 * holder learns where the block is from the reply, after pm_pin_blocks() */
static int pin_cb(void *arg, const struct pm_seg *segs, size_t nsegs)
{
	struct store_arg *a = arg;

	if (!nsegs || npins == sizeof(pins) / sizeof(pins[0]))
		return -EIO;
	pins[npins++] = (struct pin){ a->ino, a->first, segs[0].n, segs[0].pblk, a->write };
	return 0;
}

/* pin block 1 of f2 for writing and store through the mapping */
static int pin_store(struct ctx *c, int seed)
{
	struct pm_inode *ip = get(c, "f2");
	struct store_arg a = { c, 0, 1, true, seed };
	int rc = -ENOENT;

	if (ip) {
		a.ino = pm_ino(ip);
		rc = pm_pin_blocks(c->fs, ip, 1, 1, PM_PIN_WRITE, pin_cb, &a);
	}
	if (!rc) {
		/* a store through the mapping: into the pool, no flush */
		uint8_t *p = pm_block_ptr(c->pool, pins[npins - 1].pblk);
		size_t i;

		for (i = 0; i < 1000; i++)
			p[100 + i] = (uint8_t)(seed + i * 3);
		mark_unsynced(c, ip);
	}
	pm_iput(c->fs, ip);
	return rc;
}

/* the oldest pin ends, as a lease does (lease_mgr_unpinned) */
static int unpin(struct ctx *c)
{
	struct pin p;

	if (!npins)
		return -ENOENT;
	p = pins[0];
	memmove(pins, pins + 1, --npins * sizeof(*pins));
	pm_unquarantine(c->fs, p.pblk, p.n);
	return 0;
}

static int op_pin_store_unpin(struct ctx *c)
{
	int rc = pin_store(c, 11);

	return rc ? rc : unpin(c);
}
static int op_pin_store(struct ctx *c) { return pin_store(c, 13); }
static int op_unpin(struct ctx *c) { return unpin(c); }

struct op {
	const char *name;
	int (*fn)(struct ctx *c);
	bool data; /* writes file data (pairs on the --checksums pool) */
};

static const struct op ops[] = {
	{ "create", op_create, false },
	{ "mkdir", op_mkdir, false },
	{ "symlink", op_symlink, false },
	{ "link", op_link, false },
	{ "unlink", op_unlink, false },
	{ "write_inplace", op_write_inplace, true },
	{ "write_extend", op_write_extend, true },
	{ "write_hole", op_write_hole, true },
	{ "fallocate", op_fallocate, true },
	{ "punch", op_punch, true },
	{ "zero_range", op_zero_range, true },
	{ "grow", op_grow, false },
	{ "prealloc_trim", op_prealloc_trim, false },
	{ "truncate_up", op_truncate_up, false },
	{ "truncate_down", op_truncate_down, false },
	{ "rename_file", op_rename_file, false },
	{ "rename_dir", op_rename_dir, false },
	{ "rename_over", op_rename_over, false },
	{ "setxattr", op_setxattr, false },
	{ "removexattr", op_removexattr, false },
	{ "chmod", op_chmod, false },
	{ "utimes", op_utimes, false },
	{ "fsync_file", op_fsync_f1, false },
	{ "fdatasync_file", op_fdatasync_big, false },
	{ "fsync_f2", op_fsync_f2, false },
	{ "fsync_dir", op_fsync_dir, false },
	{ "pin_store_unpin", op_pin_store_unpin, true },
	/* the pin left live across the next operation, then ended alone */
	{ "pin_store", op_pin_store, true },
	{ "unpin", op_unpin, false },
};
#define NOPS (sizeof(ops) / sizeof(ops[0]))

/* ---- running a workload and checking its crash images ------------------- */

struct limits {
	unsigned k;	  /* enumerate every choice up to 2^k of them */
	unsigned sample;  /* else this many random ones */
	unsigned torn;	  /* torn variants per epoch */
	unsigned replay;  /* images per epoch whose recovery is crashed too */
};

/* the limits of the crash images of a recovery (no further nesting) */
static const struct limits replay_lim = { 4, 8, 2, 0 };
static int replay_override = -1; /* --replay N: images per epoch, for every run */

/* the prepared tree, durable: on a plain pool and on a --checksums pool */
static uint8_t *prepared_pool[2], *prepared;
static const char *const variant_name[2] = { "", "csum:" };
static int variant; /* which of them the workloads run on */
static unsigned debug_flags;
static const char *keep_dir;
static const char *only; /* --only NAME: just the workloads so named */
static unsigned long checked, failed, rchecked, rexplored;
static unsigned nworkloads;
static size_t jhdr_off; /* the journal header's offset in the prepared pool */

static int prepare(int v)
{
	struct pm_mkfs_opts o = { .size = POOL_SIZE, .features = v ? PM_FEAT_INCOMPAT_CSUM : 0 };
	struct pm_pool *pool;
	struct ctx c = { 0 };
	char err[256];

	prepared = prepared_pool[v] = aligned_alloc(4096, POOL_SIZE);
	memset(prepared, 0, POOL_SIZE);
	if (pm_mkfs_mem(prepared, POOL_SIZE, &o, &noop_ops) ||
	    pm_pool_open_mem(prepared, POOL_SIZE, &noop_ops, &pool, err, sizeof(err)) ||
	    pm_fs_mount(pool, &c.fs, err, sizeof(err)) || pm_iget(c.fs, 1, &c.root)) {
		fprintf(stderr, "prepare: %s\n", err);
		return -1;
	}
	if (mk(&c, "", "f1", S_IFREG | 0644) || mk(&c, "", "f2", S_IFREG | 0644) ||
	    mk(&c, "", "big", S_IFREG | 0644) || mk(&c, "", "d1", S_IFDIR | 0755) ||
	    mk(&c, "", "d2", S_IFDIR | 0755) || mk(&c, "d1", "sub", S_IFDIR | 0755) ||
	    mk(&c, "d1/sub", "leaf", S_IFREG | 0644) || wr(&c, "f1", 0, 5000, 1) ||
	    wr(&c, "f2", 0, 70000, 2) || wr(&c, "big", 0, 65536, 3) ||
	    wr(&c, "big", 196608, 65536, 4)) /* a hole in between */
		return -1;
	if (xattr(&c, "f2", "user.k", "value"))
		return -1;
	if (pm_syncfs(c.fs))
		return -1;
	pm_iput(c.fs, c.root);
	pm_fs_unmount(&c.fs);
	pm_pool_close(&pool);
	jhdr_off = (size_t)((const struct pm_super *)prepared)->journal_start * PM_BLOCK_SIZE;
	return 0;
}

static void keep_image(const uint8_t *img, const char *wl, size_t ep)
{
	char path[512];
	FILE *f;

	if (!keep_dir)
		return;
	snprintf(path, sizeof(path), "%s/%s-ep%zu-%lu.img", keep_dir, wl, ep, failed);
	f = fopen(path, "w");
	if (f) {
		fwrite(img, 1, POOL_SIZE, f);
		fclose(f);
		fprintf(stderr, "  kept %s\n", path);
	}
}

static void check_epoch(const uint8_t *base, const struct epoch *e, const struct limits *lim,
			const char *wl, size_t ei, char *const *legal, int nlegal,
			unsigned long *wfail, bool nested);

/* Does the image hold a committed transaction (its recovery replays it)? */
static bool jcommitted(const uint8_t *img)
{
	struct pm_jhdr h;

	memcpy(&h, img + jhdr_off, sizeof(h));
	return h.magic == PM_JOURNAL_MAGIC && h.state == PM_JSTATE_COMMITTED;
}

/*
 * Crashes the recovery of @img: its opening (a replay under a torn
 * superblock), journal replay, mount and unmount run under the same model,
 * and every crash image of them (within replay_lim) must recover to @want,
 * the tree the uncrashed recovery gave: recovery must be idempotent.
 */
static void explore_recovery(const uint8_t *img, const char *want, const char *wl, size_t ei,
			     unsigned long *wfail)
{
	uint8_t *work = buf_get(), *base = buf_get();
	struct pmrec r;
	struct pm_persist_ops pops = { pm_rec_flush, pm_rec_drain, &r };
	char name[600], *legal[1] = { (char *)want }, err[256];
	struct pm_pool *p;
	struct pm_fs *fs;
	size_t k, j;

	rexplored++;
	memcpy(work, img, POOL_SIZE);
	memcpy(base, img, POOL_SIZE);
	pmrec_init(&r, work);
	r.on = true;
	if (!pm_pool_open_mem(work, POOL_SIZE, &pops, &p, err, sizeof(err))) {
		if (pm_journal_recover(p, NULL, 0) >= 0 && !pm_fs_mount(p, &fs, err, sizeof(err)))
			pm_fs_unmount(&fs);
		pm_pool_close(&p);
	}
	close_epoch(&r, true);
	r.on = false;
	snprintf(name, sizeof(name), "%s (its recovery crashed)", wl);
	for (k = 0; k < r.nep; k++) {
		const struct epoch *e = &r.ep[k];
		check_epoch(base, e, &replay_lim, name, ei, legal, 1, wfail, true);
		for (j = 0; j < e->n; j++)
			if (e->l[j].flushed)
				memcpy(base + (size_t)e->l[j].line * LINE, e->l[j].flval, LINE);
	}
	epochs_free(&r);
	pmrec_free(&r);
	buf_put(work);
	buf_put(base);
}

/*
 * The images of an epoch whose recovery is crashed: a uniform sample
 * (reservoir) of the images that passed and whose journal holds a committed
 * transaction, kept as their choices (an image is rebuilt from them), with
 * the tree their recovery gave.
 */
#define RES_MAX 8
struct reservoir {
	unsigned cap, seen, n;
	uint8_t *choice[RES_MAX];
	long tl[RES_MAX];
	uint8_t mask[RES_MAX];
	char *want[RES_MAX];
};

/* Checks one image against the legal trees; counts it. With @res, an image
 * that passed and whose recovery replays the journal is offered to it (its
 * recovered tree in *@want, which the caller then owns). */
static bool check_image(uint8_t *img, const char *wl, size_t ep, char *const *legal, int nlegal,
			unsigned long *wfail, const struct reservoir *res, char **want)
{
	uint8_t *copy = NULL;
	bool rec = res && res->cap && !no_values && jcommitted(img);
	char *s;
	int i;

	if (!res)
		rchecked++;
	checked++;
	if (keep_dir) {
		copy = buf_get();
		memcpy(copy, img, POOL_SIZE);
	}
	s = recover_and_dump(img, POOL_SIZE, wl, ep, false);
	for (i = 0; s && i < nlegal; i++)
		if (!strcmp(s, legal[i]))
			break;
	if (s && i < nlegal) {
		if (rec)
			*want = s;
		else
			free(s);
		buf_put(copy);
		return true;
	}
	failed++;
	if (!crash_quiet && (*wfail)++ < 1) {
		if (s)
			fprintf(stderr, "%s: epoch %zu: a crash image is none of the legal trees\n--- legal\n%s--- got\n%s",
				wl, ep, legal[0], s);
		if (copy)
			keep_image(copy, wl, ep);
	}
	free(s);
	buf_put(copy);
	return false;
}

/* Offers the image of @choice (@tl, @mask) whose recovery gave @want. */
static void res_offer(struct reservoir *r, const uint8_t *choice, size_t n, long tl, uint8_t mask,
		      char *want)
{
	unsigned k;

	r->seen++;
	if (r->n < r->cap) {
		k = r->n++;
		r->choice[k] = malloc(n ? n : 1);
	} else {
		k = (unsigned)(rnd() % r->seen);
		if (k >= r->cap) {
			free(want);
			return;
		}
		free(r->want[k]);
	}
	if (!r->choice[k])
		abort();
	memcpy(r->choice[k], choice, n);
	r->tl[k] = tl;
	r->mask[k] = mask;
	r->want[k] = want;
}

/* img = base + choice per line (0 old, 1.. new), then torn line @tl (word
 * mask @mask: set words new) */
static void build(uint8_t *img, const uint8_t *base, const struct epoch *e, const uint8_t *choice,
		  long tl, uint8_t mask)
{
	size_t i;

	memcpy(img, base, POOL_SIZE);
	for (i = 0; i < e->n; i++) {
		uint8_t *dst = img + (size_t)e->l[i].line * LINE;
		if ((long)i == tl) {
			const uint8_t *nv = e->l[i].vals[choice[i] ? choice[i] - 1 : e->l[i].nval - 1];
			unsigned w;
			for (w = 0; w < LINE / 8; w++)
				memcpy(dst + w * 8, (mask >> w & 1) ? nv + w * 8 : e->l[i].old + w * 8, 8);
		} else if (choice[i]) {
			memcpy(dst, e->l[i].vals[choice[i] - 1], LINE);
		}
	}
}

/* Enumerates the crash images of epoch @e over @base. */
static void check_epoch(const uint8_t *base, const struct epoch *e, const struct limits *lim,
			const char *wl, size_t ei, char *const *legal, int nlegal,
			unsigned long *wfail, bool nested)
{
	struct reservoir res = { 0 }, *rs = nested ? NULL : &res;
	char *want;
	unsigned k;

	res.cap = replay_override >= 0 ? (unsigned)replay_override : lim->replay;
	if (res.cap > RES_MAX)
		res.cap = RES_MAX;
	uint8_t *img = buf_get(), *choice = calloc(e->n, 1);
	double combos = 1;
	size_t i, t;
	long torn[4096];
	size_t ntorn = 0;

	for (i = 0; i < e->n; i++)
		combos *= 1 + e->l[i].nval;
	if (combos <= (double)(1u << lim->k)) {
		for (;;) {
			build(img, base, e, choice, -1, 0);
			want = NULL;
			check_image(img, wl, ei, legal, nlegal, wfail, rs, &want);
			if (want)
				res_offer(&res, choice, e->n, -1, 0, want);
			for (i = 0; i < e->n; i++) {
				if (++choice[i] <= e->l[i].nval)
					break;
				choice[i] = 0;
			}
			if (i == e->n)
				break;
		}
	} else {
		for (t = 0; t < lim->sample; t++) {
			for (i = 0; i < e->n; i++)
				choice[i] = (uint8_t)(rnd() % (1u + e->l[i].nval));
			build(img, base, e, choice, -1, 0);
			want = NULL;
			check_image(img, wl, ei, legal, nlegal, wfail, rs, &want);
			if (want)
				res_offer(&res, choice, e->n, -1, 0, want);
		}
	}
	/* torn lines: ones whose old and new contents differ in some words
	 * but not all */
	for (i = 0; i < e->n && ntorn < 4096; i++) {
		unsigned w, v, diff = 0;
		for (v = 0; v < e->l[i].nval && diff < 2; v++)
			for (w = 0, diff = 0; w < LINE / 8; w++)
				diff += memcmp(e->l[i].vals[v] + w * 8, e->l[i].old + w * 8, 8) != 0;
		if (diff >= 2)
			torn[ntorn++] = (long)i;
	}
	for (t = 0; ntorn && t < lim->torn; t++) {
		long tl = torn[rnd() % ntorn];
		uint8_t mask = (uint8_t)rnd();
		for (i = 0; i < e->n; i++)
			choice[i] = (uint8_t)(rnd() % (1u + e->l[i].nval));
		/* the torn line: between its old contents and one of its values */
		choice[tl] = (uint8_t)(1 + rnd() % e->l[tl].nval);
		build(img, base, e, choice, tl, mask);
		want = NULL;
		check_image(img, wl, ei, legal, nlegal, wfail, rs, &want);
		if (want)
			res_offer(&res, choice, e->n, tl, mask, want);
	}
	/* the recoveries of the sampled images, crashed */
	for (k = 0; k < res.n; k++) {
		build(img, base, e, res.choice[k], res.tl[k], res.mask[k]);
		explore_recovery(img, res.want[k], wl, ei, wfail);
		free(res.choice[k]);
		free(res.want[k]);
	}
	buf_put(img);
	free(choice);
}

/* Compares a data dump of the durable image with the live one: every file's
 * line must match, its data hash too unless its inode is unsynced. */
static bool data_matches(const char *got, const char *want, const struct ctx *c)
{
	const char *g = got, *w = want;

	while (*g && *w) {
		const char *ge = strchr(g, '\n'), *we = strchr(w, '\n');
		const char *gd, *wd;
		unsigned long long ino = 0;
		size_t i;
		bool skip = false;

		if (!ge || !we)
			return false;
		sscanf(strstr(w, " ino=") ? strstr(w, " ino=") + 5 : "0", "%llu", &ino);
		for (i = 0; i < c->nunsynced; i++)
			skip |= c->unsynced[i] == ino;
		gd = memmem(g, (size_t)(ge - g), " data=", 6);
		wd = memmem(w, (size_t)(we - w), " data=", 6);
		if (skip && gd && wd) {
			if (gd - g != wd - w || memcmp(g, w, (size_t)(gd - g)))
				return false;
		} else if (ge - g != we - w || memcmp(g, w, (size_t)(ge - g))) {
			return false;
		}
		g = ge + 1;
		w = we + 1;
	}
	return !*g && !*w;
}

/* Runs workload @seq (@n operation indices); returns its failures. */
static unsigned long run_workload(const int *seq, int n, const struct limits *lim)
{
	struct pmrec r = { 0 };
	struct pm_persist_ops pops = { pm_rec_flush, pm_rec_drain, &r };
	uint8_t *live, *base;
	struct pm_pool *pool;
	struct ctx c = { 0 };
	char err[256], wl[512] = "", *states[2];
	unsigned long wfail = 0;
	size_t ei = 0;
	int i;

	snprintf(wl, sizeof(wl), "%s", variant_name[variant]);
	for (i = 0; i < n; i++)
		snprintf(wl + strlen(wl), sizeof(wl) - strlen(wl), "%s%s", i ? "+" : "",
			 ops[seq[i]].name);
	if (only && strcmp(only, wl))
		return 0;
	nworkloads++;
	live = buf_get();
	base = buf_get();
	memcpy(live, prepared_pool[variant], POOL_SIZE);
	pmrec_init(&r, live);
	if (pm_pool_open_mem(live, POOL_SIZE, &pops, &pool, err, sizeof(err)) ||
	    !(c.pool = pool) ||
	    pm_fs_mount(pool, &c.fs, err, sizeof(err)) || pm_iget(c.fs, 1, &c.root)) {
		fprintf(stderr, "%s: cannot mount the prepared tree: %s\n", wl, err);
		failed++;
		return 1;
	}
	pm_fs_set_debug(c.fs, debug_flags);
	npins = 0;
	pm_fs_set_pin_hooks(c.fs, &pin_hooks);
	/* the mount persisted what it changed (not recorded): durable */
	memcpy(r.durable, live, POOL_SIZE);
	memcpy(r.seen, live, POOL_SIZE);
	states[1] = dump(c.fs, false);
	for (i = 0; i < n; i++) {
		char *fin, *want;
		size_t k;
		int rc;

		states[0] = states[1];
		memcpy(base, r.durable, POOL_SIZE);
		r.op = i;
		r.on = true;
		rc = ops[seq[i]].fn(&c);
		(void)rc; /* an error (ENOENT after an unlink) leaves the tree as it was */
		close_epoch(&r, true); /* stores never flushed */
		r.on = false;
		states[1] = dump(c.fs, false);
		for (k = 0; k < r.nep; k++, ei++) {
			const struct epoch *e = &r.ep[k];
			check_epoch(base, e, lim, wl, ei, e->after ? states + 1 : states,
				    e->after ? 1 : 2, &wfail, false);
			for (size_t j = 0; j < e->n; j++)
				if (e->l[j].flushed)
					memcpy(base + (size_t)e->l[j].line * LINE, e->l[j].flval, LINE);
		}
		epochs_free(&r);
		/* what returned is durable: the tree, and the data of files an
		 * fsync covered */
		memcpy(base, r.durable, POOL_SIZE);
		checked++;
		fin = recover_and_dump(base, POOL_SIZE, wl, ei, true);
		want = dump(c.fs, true);
		if (!fin || !data_matches(fin, want, &c)) {
			failed++;
			if (!crash_quiet && wfail++ < 1)
				fprintf(stderr, "%s: after %s returned, the durable image lost it\n--- want\n%s--- got\n%s",
					wl, ops[seq[i]].name, want, fin ? fin : "(not recoverable)\n");
		}
		free(fin);
		free(want);
		free(states[0]);
	}
	free(states[1]);
	pm_iput(c.fs, c.root);
	pm_fs_unmount(&c.fs);
	pm_pool_close(&pool);
	pmrec_free(&r);
	buf_put(live);
	buf_put(base);
	return wfail;
}

/* ---- the workloads -------------------------------------------------------- */

static int op_index(const char *name)
{
	size_t i;

	for (i = 0; i < NOPS; i++)
		if (!strcmp(ops[i].name, name))
			return (int)i;
	abort();
}

static unsigned long run_all(const struct limits *single, const struct limits *pair,
			     unsigned nrandom, unsigned randlen, bool csum)
{
	unsigned long f0 = failed;
	size_t a, b;
	unsigned t;
	int seq[64];

	variant = 0;
	for (a = 0; a < NOPS; a++) {
		seq[0] = (int)a;
		run_workload(seq, 1, single);
	}
	/* a lease's whole life: the pinned block freed while pinned
	 * (quarantined) then unpinned (released); pinned data made durable
	 * while pinned (kept dirty), then after the unpin (clean, and on a
	 * --checksums pool checksummed) */
	for (variant = 0; variant < (csum ? 2 : 1); variant++) {
		static const char *const lives[][5] = {
			{ "pin_store", "unlink", "unpin", "create", NULL },
			{ "pin_store", "fsync_f2", "unpin", "fsync_f2", NULL },
		};
		struct limits rl = *(pair ? pair : single);

		rl.replay = single->replay;
		for (t = 0; t < sizeof(lives) / sizeof(lives[0]); t++) {
			int n = 0;
			for (; lives[t][n]; n++)
				seq[n] = op_index(lives[t][n]);
			run_workload(seq, n, &rl);
		}
	}
	variant = 0;
	if (pair) {
		for (a = 0; a < NOPS; a++)
			for (b = 0; b < NOPS; b++) {
				seq[0] = (int)a;
				seq[1] = (int)b;
				run_workload(seq, 2, pair);
			}
	}
	/* on a --checksums pool: every operation alone, and every pair whose
	 * first writes data (a checksum is invalidated, and recorded again
	 * only over durable bytes: after an fsync, an unpin then an fsync) */
	variant = 1;
	for (a = 0; csum && a < NOPS; a++) {
		seq[0] = (int)a;
		run_workload(seq, 1, single);
	}
	for (a = 0; csum && pair && a < NOPS; a++) {
		if (!ops[a].data)
			continue;
		for (b = 0; b < NOPS; b++) {
			seq[0] = (int)a;
			seq[1] = (int)b;
			run_workload(seq, 2, pair);
		}
	}
	variant = 0;
	for (t = 0; t < nrandom; t++) {
		/* pair limits, but recoveries crashed as for single operations */
		struct limits rl = *(pair ? pair : single);
		unsigned j;

		rl.replay = single->replay;
		for (j = 0; j < randlen && j < 64; j++)
			seq[j] = (int)(rnd() % NOPS);
		run_workload(seq, (int)j, &rl);
	}
	return failed - f0;
}

static const struct {
	unsigned flag, replay_flag;
	const char *bug;
} planted[] = {
	{ PM_DEBUG_SKIP_APPLY_PERSIST, 0, "a missing flush (in-place updates)" },
	{ PM_DEBUG_SKIP_APPLY_FENCE, 0, "a missing fence (before the journal is marked empty)" },
	{ PM_DEBUG_COMMIT_FIRST, 0, "a commit record written before its body" },
	{ PM_DEBUG_APPLY_EARLY, 0, "an in-place update outside the journal" },
	/* these two only the values within an epoch / crashes of the
	 * recovery show */
	{ PM_DEBUG_COMMIT_GROWS, 0, "a commit record grown in place (an intermediate value)" },
	{ 0, PM_REPLAY_DEBUG_EMPTY_FIRST, "a replay that marks the journal empty first (not idempotent)" },
};

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "quick", no_argument, NULL, 'q' }, { "full", no_argument, NULL, 'f' },
		{ "self-test", no_argument, NULL, 's' }, { "seed", required_argument, NULL, 'S' },
		{ "keep", required_argument, NULL, 'k' }, { "only", required_argument, NULL, 'o' },
		{ "plant", required_argument, NULL, 'p' },
		{ "plant-replay", required_argument, NULL, 'r' },
		{ "no-values", no_argument, NULL, 'V' },
		{ "replay", required_argument, NULL, 'R' }, { NULL, 0, NULL, 0 },
	};
	bool full = false, self = false;
	uint64_t seed = 1;
	int o;

	while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (o) {
		case 'q': full = false; break;
		case 'f': full = true; break;
		case 's': self = true; break;
		case 'S': seed = strtoull(optarg, NULL, 0); break;
		case 'k': keep_dir = optarg; break;
		case 'o': only = optarg; break;
		case 'p': debug_flags = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'r': pm_replay_debug = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'V': no_values = true; break;
		case 'R': replay_override = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: %s [--quick|--full] [--self-test] [--seed N] [--keep DIR] [--only WORKLOAD] [--plant BITS] [--plant-replay BITS] [--no-values] [--replay N]\n",
				argv[0]);
			return 2;
		}
	}
	rng_state = seed ? seed : 1;
	dump_times = true;
	crash_checksums = true;
	if (prepare(1) || prepare(0)) {
		fprintf(stderr, "crash states: cannot prepare the tree\n");
		return 1;
	}
	if (self) {
		struct limits lim = { 8, 32, 8, 0 };
		int missed = 0;
		size_t i;

		crash_quiet = true;
		for (i = 0; i < sizeof(planted) / sizeof(planted[0]); i++) {
			unsigned long f;
			unsigned w = nworkloads;
			debug_flags = planted[i].flag;
			pm_replay_debug = planted[i].replay_flag;
			/* recoveries crashed only where the planted bug is */
			lim.replay = planted[i].replay_flag ? 1 : 0;
			f = run_all(&lim, NULL, 0, 0, false);
			w = nworkloads - w;
			printf("self-test: %s: %lu failing images in %u workloads%s\n", planted[i].bug, f,
			       w, f ? "" : " -- NOT CAUGHT");
			missed += !f;
		}
		printf("crash states self-test: %d of %zu planted bugs caught\n",
		       (int)(sizeof(planted) / sizeof(planted[0])) - missed,
		       sizeof(planted) / sizeof(planted[0]));
		return missed ? 1 : 0;
	}
	if (full) {
		struct limits single = { 12, 1024, 256, 4 }, pair = { 8, 64, 16, 1 };
		run_all(&single, &pair, 100, 8, true);
	} else {
		struct limits single = { 10, 256, 64, 1 }, pair = { 4, 8, 4, 0 };
		run_all(&single, &pair, 20, 6, true);
	}
	printf("crash states: %lu recoveries crashed, %lu images of them (in the count below)\n",
	       rexplored, rchecked);
	printf("crash states: %lu checked, %lu failed, %u workloads\n", checked, failed, nworkloads);
	return failed ? 1 : 0;
}

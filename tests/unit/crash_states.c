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
 * 64-byte lines flushed since the last drain (with their contents at the
 * flush) plus every line of the live pool that differs from `durable`
 * (stored, flushed or not). A crash inside the epoch leaves `durable` plus
 * any choice, per in-flight line, of its old or one of its new contents:
 * every choice when there are at most 2^K of them, a seeded random sample
 * beyond, and torn variants of lines an epoch wrote in part (each 8-byte
 * word old or new). After the operation returns, one more epoch holds the
 * stores never flushed: they too may or may not have reached the media.
 *
 * Each image is recovered (journal replay, fsck with no problem allowed,
 * mount) and its tree dumped; during operation i of a workload it must be
 * the tree before or after operation i, and after it returned, the tree
 * after it. At each operation's end the durable image must also hold the
 * data of every file whose data an fsync or fdatasync has covered since it
 * was last written.
 *
 * Workloads are CrashMonkey ACE's: every operation alone and every pair, on
 * a small prepared tree, and seeded random sequences. Limitations: a line
 * stored several times in one epoch is modelled with its flushed and its
 * final contents only; file contents are compared only at operation ends.
 *
 * Usage: crash_states [--quick | --full] [--self-test] [--seed N] [--keep DIR]
 *	  [--only WORKLOAD (e.g. create+fsync_dir)] [--plant PM_DEBUG_* bits]
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

struct iline {
	uint32_t line;
	uint8_t nval;		  /* new contents: 1 or 2 */
	bool flushed;		  /* vals[0] is what the flush took: durable after */
	uint8_t old[LINE], vals[2][LINE];
};

struct epoch {
	struct iline *l;
	size_t n;
	int op;	    /* index of the workload operation it belongs to */
	bool after; /* the operation had returned: only its "after" is legal */
};

struct pmrec {
	uint8_t *live, *durable;
	bool on;
	/* this epoch's flushed lines, in order, with their contents */
	uint32_t *fl;
	uint8_t *fldata; /* NLINES * LINE, indexed by line */
	uint8_t *flmark; /* per line: flushed in this epoch */
	size_t nfl;
	struct epoch *ep;
	size_t nep, capep;
	int op;
};

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

/* Closes an epoch: every flushed line and every line that differs from the
 * durable image is in flight; the flushed ones are durable afterwards. */
static void close_epoch(struct pmrec *r, bool after)
{
	struct epoch e = { NULL, 0, r->op, after };
	size_t cap = 0, i;

	for (i = 0; i < NLINES; i++) {
		const uint8_t *lv = r->live + i * LINE, *du = r->durable + i * LINE;
		bool fl = r->flmark[i], differs = memcmp(lv, du, LINE) != 0;
		struct iline *l;

		if (!fl && !differs)
			continue;
		if (fl && !memcmp(r->fldata + i * LINE, du, LINE) && !differs)
			continue;
		l = ep_add(&e, &cap);
		l->line = (uint32_t)i;
		l->flushed = fl;
		memcpy(l->old, du, LINE);
		l->nval = 1;
		memcpy(l->vals[0], fl ? r->fldata + i * LINE : lv, LINE);
		if (fl && memcmp(lv, l->vals[0], LINE) && differs) {
			memcpy(l->vals[1], lv, LINE);
			l->nval = 2;
		}
	}
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

struct store_arg {
	struct ctx *c;
	int seed;
};

static int store_cb(void *arg, const struct pm_seg *segs, size_t nsegs)
{
	struct store_arg *a = arg;
	uint8_t *p;
	size_t i;

	if (!nsegs)
		return -EIO;
	/* a store through the mapping: into the pool, no flush */
	p = pm_block_ptr(a->c->pool, segs[0].pblk);
	for (i = 0; i < 1000; i++)
		p[100 + i] = (uint8_t)(a->seed + i * 3);
	return 0;
}

/* pin a block of f2 for writing, store through the mapping, unpin (the
 * engine holds no pin state: the lease manager does) */
static int op_pin_store(struct ctx *c)
{
	struct pm_inode *ip = get(c, "f2");
	struct store_arg a = { c, 11 };
	int rc = ip ? pm_pin_blocks(c->fs, ip, 1, 1, PM_PIN_WRITE, store_cb, &a) : -ENOENT;

	if (!rc)
		mark_unsynced(c, ip);
	pm_iput(c->fs, ip);
	return rc;
}

struct op {
	const char *name;
	int (*fn)(struct ctx *c);
};

static const struct op ops[] = {
	{ "create", op_create },
	{ "mkdir", op_mkdir },
	{ "symlink", op_symlink },
	{ "link", op_link },
	{ "unlink", op_unlink },
	{ "write_inplace", op_write_inplace },
	{ "write_extend", op_write_extend },
	{ "write_hole", op_write_hole },
	{ "fallocate", op_fallocate },
	{ "punch", op_punch },
	{ "zero_range", op_zero_range },
	{ "truncate_up", op_truncate_up },
	{ "truncate_down", op_truncate_down },
	{ "rename_file", op_rename_file },
	{ "rename_dir", op_rename_dir },
	{ "rename_over", op_rename_over },
	{ "setxattr", op_setxattr },
	{ "removexattr", op_removexattr },
	{ "chmod", op_chmod },
	{ "utimes", op_utimes },
	{ "fsync_file", op_fsync_f1 },
	{ "fdatasync_file", op_fdatasync_big },
	{ "fsync_f2", op_fsync_f2 },
	{ "fsync_dir", op_fsync_dir },
	{ "pin_store_unpin", op_pin_store },
};
#define NOPS (sizeof(ops) / sizeof(ops[0]))

/* ---- running a workload and checking its crash images ------------------- */

struct limits {
	unsigned k;	  /* enumerate every choice up to 2^k of them */
	unsigned sample;  /* else this many random ones */
	unsigned torn;	  /* torn variants per epoch */
};

static uint8_t *prepared; /* the prepared tree, durable */
static unsigned debug_flags;
static const char *keep_dir;
static const char *only; /* --only NAME: just the workloads so named */
static unsigned long checked, failed;
static unsigned nworkloads;

static int prepare(void)
{
	struct pm_mkfs_opts o = { .size = POOL_SIZE };
	struct pm_pool *pool;
	struct ctx c = { 0 };
	char err[256];

	prepared = aligned_alloc(4096, POOL_SIZE);
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

/* Checks one image against the legal trees; counts it. */
static bool check_image(uint8_t *img, const char *wl, size_t ep, char *const *legal, int nlegal,
			unsigned long *wfail)
{
	uint8_t *copy = NULL;
	char *s;
	int i;

	checked++;
	if (keep_dir) {
		copy = malloc(POOL_SIZE);
		memcpy(copy, img, POOL_SIZE);
	}
	s = recover_and_dump(img, POOL_SIZE, wl, ep, false);
	for (i = 0; s && i < nlegal; i++)
		if (!strcmp(s, legal[i]))
			break;
	if (s && i < nlegal) {
		free(s);
		free(copy);
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
	free(copy);
	return false;
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
			const uint8_t *nv = e->l[i].vals[e->l[i].nval - 1];
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
			unsigned long *wfail)
{
	uint8_t *img = aligned_alloc(4096, POOL_SIZE), *choice = calloc(e->n, 1);
	double combos = 1;
	size_t i, t;
	long torn[4096];
	size_t ntorn = 0;

	for (i = 0; i < e->n; i++)
		combos *= 1 + e->l[i].nval;
	if (combos <= (double)(1u << lim->k)) {
		for (;;) {
			build(img, base, e, choice, -1, 0);
			check_image(img, wl, ei, legal, nlegal, wfail);
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
			check_image(img, wl, ei, legal, nlegal, wfail);
		}
	}
	/* torn lines: ones whose old and new contents differ in some words
	 * but not all */
	for (i = 0; i < e->n && ntorn < 4096; i++) {
		const uint8_t *nv = e->l[i].vals[e->l[i].nval - 1];
		unsigned w, diff = 0;
		for (w = 0; w < LINE / 8; w++)
			diff += memcmp(nv + w * 8, e->l[i].old + w * 8, 8) != 0;
		if (diff >= 2)
			torn[ntorn++] = (long)i;
	}
	for (t = 0; ntorn && t < lim->torn; t++) {
		long tl = torn[rnd() % ntorn];
		uint8_t mask = (uint8_t)rnd();
		for (i = 0; i < e->n; i++)
			choice[i] = (uint8_t)(rnd() % (1u + e->l[i].nval));
		build(img, base, e, choice, tl, mask);
		check_image(img, wl, ei, legal, nlegal, wfail);
	}
	free(img);
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

	for (i = 0; i < n; i++)
		snprintf(wl + strlen(wl), sizeof(wl) - strlen(wl), "%s%s", i ? "+" : "",
			 ops[seq[i]].name);
	if (only && strcmp(only, wl))
		return 0;
	nworkloads++;
	live = aligned_alloc(4096, POOL_SIZE);
	base = aligned_alloc(4096, POOL_SIZE);
	memcpy(live, prepared, POOL_SIZE);
	r.live = live;
	r.durable = malloc(POOL_SIZE);
	r.fl = malloc(NLINES * sizeof(*r.fl));
	r.fldata = malloc(POOL_SIZE);
	r.flmark = calloc(NLINES, 1);
	if (pm_pool_open_mem(live, POOL_SIZE, &pops, &pool, err, sizeof(err)) ||
	    !(c.pool = pool) ||
	    pm_fs_mount(pool, &c.fs, err, sizeof(err)) || pm_iget(c.fs, 1, &c.root)) {
		fprintf(stderr, "%s: cannot mount the prepared tree: %s\n", wl, err);
		failed++;
		return 1;
	}
	pm_fs_set_debug(c.fs, debug_flags);
	/* the mount persisted what it changed (not recorded): durable */
	memcpy(r.durable, live, POOL_SIZE);
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
				    e->after ? 1 : 2, &wfail);
			for (size_t j = 0; j < e->n; j++)
				if (e->l[j].flushed)
					memcpy(base + (size_t)e->l[j].line * LINE, e->l[j].vals[0], LINE);
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
	free(r.ep);
	free(r.fl);
	free(r.fldata);
	free(r.flmark);
	free(r.durable);
	free(live);
	free(base);
	return wfail;
}

/* ---- the workloads -------------------------------------------------------- */

static unsigned long run_all(const struct limits *single, const struct limits *pair,
			     unsigned nrandom, unsigned randlen)
{
	unsigned long f0 = failed;
	size_t a, b;
	unsigned t;
	int seq[64];

	for (a = 0; a < NOPS; a++) {
		seq[0] = (int)a;
		run_workload(seq, 1, single);
	}
	if (pair) {
		for (a = 0; a < NOPS; a++)
			for (b = 0; b < NOPS; b++) {
				seq[0] = (int)a;
				seq[1] = (int)b;
				run_workload(seq, 2, pair);
			}
	}
	for (t = 0; t < nrandom; t++) {
		unsigned j;
		for (j = 0; j < randlen && j < 64; j++)
			seq[j] = (int)(rnd() % NOPS);
		run_workload(seq, (int)j, pair ? pair : single);
	}
	return failed - f0;
}

static const struct {
	unsigned flag;
	const char *bug;
} planted[] = {
	{ PM_DEBUG_SKIP_APPLY_PERSIST, "a missing flush (in-place updates)" },
	{ PM_DEBUG_SKIP_APPLY_FENCE, "a missing fence (before the journal is marked empty)" },
	{ PM_DEBUG_COMMIT_FIRST, "a commit record written before its body" },
	{ PM_DEBUG_APPLY_EARLY, "an in-place update outside the journal" },
};

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "quick", no_argument, NULL, 'q' }, { "full", no_argument, NULL, 'f' },
		{ "self-test", no_argument, NULL, 's' }, { "seed", required_argument, NULL, 'S' },
		{ "keep", required_argument, NULL, 'k' }, { "only", required_argument, NULL, 'o' },
		{ "plant", required_argument, NULL, 'p' }, { NULL, 0, NULL, 0 },
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
		default:
			fprintf(stderr, "usage: %s [--quick|--full] [--self-test] [--seed N] [--keep DIR] [--only WORKLOAD] [--plant BITS]\n",
				argv[0]);
			return 2;
		}
	}
	rng_state = seed ? seed : 1;
	dump_times = true;
	if (prepare()) {
		fprintf(stderr, "crash states: cannot prepare the tree\n");
		return 1;
	}
	if (self) {
		struct limits lim = { 8, 32, 8 };
		int missed = 0;
		size_t i;

		crash_quiet = true;
		for (i = 0; i < sizeof(planted) / sizeof(planted[0]); i++) {
			unsigned long f;
			unsigned w = nworkloads;
			debug_flags = planted[i].flag;
			f = run_all(&lim, NULL, 0, 0);
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
		struct limits single = { 12, 1024, 256 }, pair = { 8, 64, 16 };
		run_all(&single, &pair, 100, 8);
	} else {
		struct limits single = { 10, 256, 64 }, pair = { 4, 8, 4 };
		run_all(&single, &pair, 20, 6);
	}
	printf("crash states: %lu checked, %lu failed, %u workloads\n", checked, failed, nworkloads);
	return failed ? 1 : 0;
}

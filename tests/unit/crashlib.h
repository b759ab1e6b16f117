/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/crashlib.h -- what the crash tests share: a logical dump of the
 * whole tree (names, attributes, xattrs, link targets and, on request, a
 * hash of file contents) and the recovery of a crash image (journal replay,
 * fsck with no problem allowed, mount, dump). Used by test_crash.c (every
 * prefix of the flushes) and crash_states.c (the persistent-memory model).
 */
#ifndef PINFS_TESTS_UNIT_CRASHLIB_H
#define PINFS_TESTS_UNIT_CRASHLIB_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "pmem/fs.h"
#include "pmem/fsck.h"
#include "pmem/pool.h"
#include "tests/unit/names.h"
#include "tests/unit/record.h"

/* ---- a logical dump of the whole tree ----------------------------------- */

struct sbuf {
	char *s;
	size_t len, cap;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		size_t room = b->cap - b->len;
		va_start(ap, fmt);
		n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? room : 0, fmt, ap);
		va_end(ap);
		if (b->s && (size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		b->cap = (b->cap + (size_t)n + 1) * 2;
		b->s = realloc(b->s, b->cap);
		if (!b->s)
			abort();
	}
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(a, b);
}

static uint64_t fnv(const void *p, size_t n, uint64_t h)
{
	const uint8_t *c = p;

	while (n--)
		h = (h ^ *c++) * 1099511628211ull;
	return h;
}

static bool dump_data;	 /* include file contents */
static bool dump_times; /* include mtime (crash_states: utimes is an operation) */
static void dump_inode(struct pm_fs *fs, struct pm_inode *ip, const char *path, struct sbuf *b);

static void dump_dir(struct pm_fs *fs, struct pm_inode *dir, const char *path, struct sbuf *b)
{
	struct names nm = { 0 };
	size_t i;

	pm_readdir(fs, dir, 0, names_collect, &nm);
	/* sort by name: readdir order depends on slot reuse (each name is
	 * looked up again below) */
	{
		char (*sorted)[PM_NAME_MAX + 1] = nm.n;
		if (nm.count)
			qsort(sorted, nm.count, sizeof(*sorted), cmp_names);
		for (i = 0; i < nm.count; i++) {
			struct pm_inode *ip;
			char sub[4096];
			snprintf(sub, sizeof(sub), "%s/%s", path, sorted[i]);
			if (pm_lookup(fs, dir, sorted[i], &ip)) {
				sb_printf(b, "%s: lookup failed\n", sub);
				continue;
			}
			dump_inode(fs, ip, sub, b);
			pm_iput(fs, ip);
		}
	}
	names_free(&nm);
}

static void dump_inode(struct pm_fs *fs, struct pm_inode *ip, const char *path, struct sbuf *b)
{
	struct stat st;
	char xl[4096];
	ssize_t xn;

	pm_stat(fs, ip, &st);
	sb_printf(b, "%s ino=%llu mode=%o uid=%u gid=%u nlink=%lu size=%lld rdev=%llu",
		  path, (unsigned long long)st.st_ino, st.st_mode, st.st_uid, st.st_gid,
		  (unsigned long)st.st_nlink, (long long)st.st_size, (unsigned long long)st.st_rdev);
	if (dump_times)
		sb_printf(b, " mtime=%lld.%09ld", (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
	xn = pm_listxattr(fs, ip, xl, sizeof(xl));
	if (xn > 0) {
		char *p;
		for (p = xl; p < xl + xn; p += strlen(p) + 1) {
			char v[4096];
			ssize_t vn = pm_getxattr(fs, ip, p, v, sizeof(v));
			sb_printf(b, " x:%s=%.*s", p, (int)(vn > 0 ? vn : 0), v);
		}
	}
	if (S_ISLNK(st.st_mode)) {
		char t[4096];
		pm_readlink(fs, ip, t, sizeof(t));
		sb_printf(b, " -> %s", t);
	} else if (S_ISREG(st.st_mode) && dump_data) {
		struct iovec iov[1024];
		size_t bytes;
		uint64_t h = 1469598103934665603ull, off = 0;
		for (;;) {
			int n = pm_read_begin(fs, ip, off, 1u << 20, iov, 1024, &bytes), i;
			if (n <= 0) {
				if (n == 0)
					pm_read_end(fs, ip);
				break;
			}
			for (i = 0; i < n; i++)
				h = fnv(iov[i].iov_base, iov[i].iov_len, h);
			pm_read_end(fs, ip);
			off += bytes;
		}
		sb_printf(b, " data=%016llx", (unsigned long long)h);
	}
	sb_printf(b, "\n");
	if (S_ISDIR(st.st_mode))
		dump_dir(fs, ip, path, b);
}

/* The logical contents of the tree. Counters are left to fsck: a crash
 * image legitimately differs from the live file system there (recovery frees
 * orphans that the live one still holds open). */
static char *dump(struct pm_fs *fs, bool data)
{
	struct sbuf b = { 0 };
	struct pm_inode *root;

	if (pm_iget(fs, 1, &root))
		abort();
	dump_data = data;
	dump_inode(fs, root, "", &b);
	pm_iput(fs, root);
	return b.s;
}

/* Writes @len bytes of a pattern that @seed sets at @off of @ip (NULL:
 * -ENOENT) as root; returns pm_write()'s result. */
static ssize_t crash_write(struct pm_fs *fs, struct pm_inode *ip, uint64_t off, size_t len, int seed)
{
	static const struct pm_cred cr = { 0, 0, 0, NULL, 0 };
	char *buf = malloc(len);
	struct iovec iov = { buf, len };
	ssize_t rc;
	size_t i;

	if (!buf)
		abort();
	for (i = 0; i < len; i++)
		buf[i] = (char)(seed + i * 7);
	rc = ip ? pm_write(fs, &cr, ip, off, &iov, 1) : -ENOENT;
	free(buf);
	return rc;
}

/* Recovers a crash image of @size bytes and dumps it (file contents too
 * with @data); NULL (with a message unless crash_quiet) if the image is not
 * consistent: the journal does not replay, fsck finds a problem, or the
 * mount fails. @op and @k name the image in messages. */
static bool crash_quiet;
static bool crash_checksums; /* fsck verifies the data blocks' checksums too */
static char *recover_and_dump(uint8_t *img, size_t size, const char *op, size_t k, bool data)
{
	struct pm_fsck_result res = { 0, 0 };
	struct pm_fsck_opts fo = { .repair = false, .checksums = crash_checksums };
	struct pm_pool *p;
	struct pm_fs *fs;
	char err[256];
	char *d;
	FILE *devnull = fopen("/dev/null", "w");

	if (pm_pool_open_mem(img, size, &noop_ops, &p, err, sizeof(err))) {
		if (!crash_quiet)
			fprintf(stderr, "%s: crash point %zu: pool refused: %s\n", op, k, err);
		fclose(devnull);
		return NULL;
	}
	if (pm_journal_recover(p, NULL, 0) < 0 || pm_fsck_ex(p, &fo, devnull, &res) || res.errors) {
		if (!crash_quiet) {
			fprintf(stderr, "%s: crash point %zu: fsck found %lu problems:\n", op, k, res.errors);
			pm_fsck_ex(p, &fo, stderr, &res);
		}
		pm_pool_close(&p);
		fclose(devnull);
		return NULL;
	}
	fclose(devnull);
	if (pm_fs_mount(p, &fs, err, sizeof(err))) {
		if (!crash_quiet)
			fprintf(stderr, "%s: crash point %zu: mount failed: %s\n", op, k, err);
		pm_pool_close(&p);
		return NULL;
	}
	d = dump(fs, data);
	pm_fs_unmount(&fs);
	pm_pool_close(&p);
	return d;
}

#endif

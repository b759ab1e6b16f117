/* SPDX-License-Identifier: MIT */
/*
 * pmem/pool.c -- mapping, formatting and validating pools.
 *
 * A pool is refused with one clear line and never crashes the caller,
 * whatever bytes it holds: every field used to compute an address is checked
 * against the size of the mapping before anything is dereferenced.
 */
#include <errno.h>
#include <fcntl.h>
#include <libpmem.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "pmem/crc32c.h"
#include "pmem/pool.h"

void pm_errmsg(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

uint32_t pm_super_csum(const struct pm_super *sb)
{
	struct pm_super tmp;

	memcpy(&tmp, sb, sizeof(tmp));
	tmp.sb_csum = 0;
	return pm_crc32c(0, &tmp, sizeof(tmp));
}

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return (a + b - 1) / b;
}

/*
 * The journal must hold the largest single transaction. The largest is a
 * truncate or unlink of a file covering the whole pool: every bitmap block,
 * plus a handful of map nodes, inodes and directory slots. So it is sized
 * as the bitmap twice over plus a fixed part for everything else.
 */
int pm_geometry(struct pm_super *sb, uint64_t size, uint64_t ninodes, uint64_t incompat)
{
	uint64_t nblocks = size >> PM_BLOCK_SHIFT;
	uint64_t bitmap_blocks = div_up(nblocks, PM_BLOCK_SIZE * 8ull);
	uint64_t fixed = size / 64;

	if (size < PM_POOL_MIN_SIZE || size > PM_POOL_MAX_SIZE)
		return -EINVAL;
	if (fixed < (256u << 10))
		fixed = 256u << 10;
	if (fixed > (4u << 20))
		fixed = 4u << 20;
	if (!ninodes)
		ninodes = size / 8192;
	if (ninodes < 64)
		ninodes = 64;
	ninodes = div_up(ninodes + 1, PM_INODES_PER_BLOCK) * PM_INODES_PER_BLOCK;
	if (ninodes > (1ull << 32))
		return -EINVAL;

	sb->nblocks = nblocks;
	sb->pool_size = nblocks << PM_BLOCK_SHIFT;
	sb->journal_start = 1;
	sb->journal_blocks = 1 + (fixed >> PM_BLOCK_SHIFT) + 2 * bitmap_blocks;
	sb->itable_start = sb->journal_start + sb->journal_blocks;
	sb->itable_blocks = ninodes / PM_INODES_PER_BLOCK;
	sb->ninodes = ninodes;
	sb->bitmap_start = sb->itable_start + sb->itable_blocks;
	sb->bitmap_blocks = bitmap_blocks;
	sb->csum_start = 0;
	sb->csum_blocks = 0;
	sb->data_start = sb->bitmap_start + bitmap_blocks;
	if (incompat & PM_FEAT_INCOMPAT_CSUM) {
		sb->csum_start = sb->data_start;
		sb->csum_blocks = div_up(nblocks * 4, PM_BLOCK_SIZE);
		sb->data_start += sb->csum_blocks;
	}
	/* at least a quarter of the pool must be left for data */
	if (sb->data_start + nblocks / 4 > nblocks)
		return -EINVAL;
	return 0;
}

int pm_super_check(const struct pm_super *sb, uint64_t avail, char *err, size_t errlen)
{
	struct pm_super g;

	if (avail < PM_BLOCK_SIZE) {
		pm_errmsg(err, errlen, "too small to hold a pinfs superblock (%llu bytes)",
		    (unsigned long long)avail);
		return -EUCLEAN;
	}
	if (sb->magic != PM_SUPER_MAGIC) {
		pm_errmsg(err, errlen, "not a pinfs pool (bad magic)");
		return -EUCLEAN;
	}
	if (sb->version > PM_VERSION) {
		pm_errmsg(err, errlen, "pool version %u is newer than this pinfs (%u)", sb->version,
		    PM_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (sb->sb_csum != pm_super_csum(sb)) {
		pm_errmsg(err, errlen, "superblock checksum mismatch: the superblock is corrupt");
		return -EUCLEAN;
	}
	if (sb->version != PM_VERSION || sb->block_size != PM_BLOCK_SIZE) {
		pm_errmsg(err, errlen, "unsupported pool version %u or block size %u", sb->version,
		    sb->block_size);
		return -EUCLEAN;
	}
	if (sb->feat_incompat & ~PM_FEAT_INCOMPAT_SUPP) {
		pm_errmsg(err, errlen, "pool uses unknown incompatible features 0x%llx",
		    (unsigned long long)(sb->feat_incompat & ~PM_FEAT_INCOMPAT_SUPP));
		return -EPROTONOSUPPORT;
	}
	if (sb->feat_ro_compat & ~PM_FEAT_RO_COMPAT_SUPP) {
		pm_errmsg(err, errlen, "pool uses unknown read-only-compatible features 0x%llx",
		    (unsigned long long)(sb->feat_ro_compat & ~PM_FEAT_RO_COMPAT_SUPP));
		return -EPROTONOSUPPORT;
	}
	if (sb->pool_size > avail || sb->pool_size != sb->nblocks << PM_BLOCK_SHIFT) {
		pm_errmsg(err, errlen, "pool is truncated: superblock says %llu bytes, only %llu present",
		    (unsigned long long)sb->pool_size, (unsigned long long)avail);
		return -EUCLEAN;
	}
	memset(&g, 0, sizeof(g));
	if (pm_geometry(&g, sb->pool_size, sb->ninodes - 1, sb->feat_incompat) ||
	    g.journal_start != sb->journal_start || g.csum_start != sb->csum_start ||
	    g.csum_blocks != sb->csum_blocks ||
	    g.journal_blocks != sb->journal_blocks || g.itable_start != sb->itable_start ||
	    g.itable_blocks != sb->itable_blocks || g.bitmap_start != sb->bitmap_start ||
	    g.bitmap_blocks != sb->bitmap_blocks || g.data_start != sb->data_start ||
	    g.ninodes != sb->ninodes) {
		pm_errmsg(err, errlen, "superblock geometry is inconsistent: the superblock is corrupt");
		return -EUCLEAN;
	}
	if (sb->free_blocks > sb->nblocks - sb->data_start || sb->free_inodes >= sb->ninodes ||
	    sb->orphan_head >= sb->ninodes || sb->npinholders > PM_PINHOLDERS_MAX) {
		pm_errmsg(err, errlen, "superblock counters out of range: the superblock is corrupt");
		return -EUCLEAN;
	}
	return 0;
}

/* Writes a fresh file system into the image at @base. Order: everything but
 * the superblock is written and persisted first, the superblock (with its
 * magic) last, so a crash during mkfs never leaves something that looks like
 * a valid pool. */
static int format_image(void *base, uint64_t size, const struct pm_mkfs_opts *o,
			const struct pm_persist_ops *ops)
{
	struct pm_super sb;
	struct pm_dinode *root;
	struct timespec now;
	int rc;

	memset(&sb, 0, sizeof(sb));
	rc = pm_geometry(&sb, size, o->ninodes, o->features);
	if (rc)
		return rc;
	sb.magic = PM_SUPER_MAGIC;
	sb.version = PM_VERSION;
	sb.block_size = PM_BLOCK_SIZE;
	sb.feat_incompat = o->features;
	clock_gettime(CLOCK_REALTIME, &now);
	sb.mkfs_time = (uint64_t)now.tv_sec;
	{
		int ufd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
		ssize_t n = ufd >= 0 ? read(ufd, sb.uuid, sizeof(sb.uuid)) : -1;
		if (ufd >= 0)
			close(ufd);
		if (n != (ssize_t)sizeof(sb.uuid)) {
			uint64_t x = (uint64_t)now.tv_nsec ^ ((uint64_t)getpid() << 32);
			memcpy(sb.uuid, &x, sizeof(x));
		}
	}

	/* journal header, inode table and bitmap start zeroed */
	memset((char *)base + PM_BLOCK_SIZE, 0, (sb.data_start - 1) << PM_BLOCK_SHIFT);
	/* metadata blocks are never free: mark [0, data_start) in the bitmap
	 * so the allocator and fsck need no special case for them */
	{
		uint8_t *bm = (uint8_t *)base + (sb.bitmap_start << PM_BLOCK_SHIFT);
		uint64_t b;
		for (b = 0; b < sb.data_start; b++)
			bm[b >> 3] |= (uint8_t)(1u << (b & 7));
		/* bits past nblocks are "in use" so they are never handed out */
		for (b = sb.nblocks; b < sb.bitmap_blocks * PM_BLOCK_SIZE * 8; b++)
			bm[b >> 3] |= (uint8_t)(1u << (b & 7));
	}
	root = (struct pm_dinode *)((char *)base + (sb.itable_start << PM_BLOCK_SHIFT)) + PM_ROOT_INO;
	root->mode = 040755;
	root->nlink = 2;
	root->uid = getuid();
	root->gid = getgid();
	root->atime.sec = root->mtime.sec = root->ctime.sec = root->btime.sec = now.tv_sec;
	root->atime.nsec = root->mtime.nsec = root->ctime.nsec = root->btime.nsec =
		(uint32_t)now.tv_nsec;
	root->parent = PM_ROOT_INO;
	root->generation = 1;
	sb.next_generation = 2;
	sb.free_blocks = sb.nblocks - sb.data_start;
	sb.free_inodes = sb.ninodes - 2; /* slot 0 and the root */
	sb.clean = 1;
	pm_flush(ops, (char *)base + PM_BLOCK_SIZE, (sb.data_start - 1) << PM_BLOCK_SHIFT);
	pm_drain(ops);

	sb.sb_csum = pm_super_csum(&sb);
	memcpy(base, &sb, sizeof(sb));
	pm_persist(ops, base, sizeof(sb));
	return 0;
}

int pm_mkfs_mem(void *base, uint64_t size, const struct pm_mkfs_opts *o,
		const struct pm_persist_ops *ops)
{
	memset(base, 0, PM_BLOCK_SIZE);
	return format_image(base, size, o, ops);
}

int pm_mkfs(const char *path, const struct pm_mkfs_opts *o, char *err, size_t errlen)
{
	struct pm_super old;
	struct pm_persist_ops ops;
	struct stat st;
	uint64_t size = o->size & ~(uint64_t)(PM_BLOCK_SIZE - 1);
	size_t mapped;
	int is_pmem, fd, rc;
	void *base;
	ssize_t n;

	if (size < PM_POOL_MIN_SIZE || size > PM_POOL_MAX_SIZE) {
		pm_errmsg(err, errlen, "pool size must be between 8 MiB and 64 TiB");
		return -EINVAL;
	}
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		pm_errmsg(err, errlen, "cannot open %s: %s", path, strerror(-rc));
		return rc;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		close(fd);
		pm_errmsg(err, errlen, "%s is in use by a pinfs process", path);
		return -EBUSY;
	}
	n = pread(fd, &old, sizeof(old), 0);
	if (n == (ssize_t)sizeof(old) && old.magic == PM_SUPER_MAGIC && !o->force) {
		close(fd);
		pm_errmsg(err, errlen, "%s already holds a pinfs pool (use --force to overwrite)", path);
		return -EEXIST;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		close(fd);
		pm_errmsg(err, errlen, "cannot stat %s: %s", path, strerror(-rc));
		return rc;
	}
	if (S_ISREG(st.st_mode)) {
		/* drop old contents so a sparse pool stays sparse */
		if (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)size) < 0) {
			rc = -errno;
			close(fd);
			pm_errmsg(err, errlen, "cannot size %s: %s", path, strerror(-rc));
			return rc;
		}
	}
	close(fd);
	base = pmem_map_file(path, 0, 0, 0, &mapped, &is_pmem);
	if (!base) {
		rc = -(errno ? errno : EIO);
		pm_errmsg(err, errlen, "cannot map %s: %s", path, pmem_errormsg());
		return rc;
	}
	if (mapped < size) {
		pmem_unmap(base, mapped);
		pm_errmsg(err, errlen, "%s holds only %zu bytes, %llu asked for", path, mapped,
		    (unsigned long long)size);
		return -ENOSPC;
	}
	pm_persist_ops_libpmem(&ops, is_pmem);
	memset(base, 0, PM_BLOCK_SIZE);
	pm_persist(&ops, base, PM_BLOCK_SIZE);
	rc = format_image(base, size, o, &ops);
	pmem_unmap(base, mapped);
	if (rc)
		pm_errmsg(err, errlen, "cannot lay out a pool of %llu bytes", (unsigned long long)size);
	return rc;
}

int pm_pid_start_ticks(uint32_t pid, uint64_t *ticks)
{
	char path[64], buf[1024], *p;
	unsigned long long st = 0;
	int fd, i;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%u/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = 0;
	/* field 22, counting after the ")" that ends the command name */
	p = strrchr(buf, ')');
	if (!p)
		return -EIO;
	for (i = 0; i < 20 && p; i++)
		p = strchr(p + 1, ' ');
	if (!p || sscanf(p + 1, "%llu", &st) != 1)
		return -EIO;
	*ticks = st;
	return 0;
}

uint32_t pm_super_live_holder(const struct pm_super *sb)
{
	uint32_t i;
	uint64_t t;

	for (i = 0; i < sb->npinholders && i < PM_PINHOLDERS_MAX; i++)
		if (pm_pid_start_ticks(sb->pinholders[i].pid, &t) == 0 &&
		    t == sb->pinholders[i].start_ticks)
			return sb->pinholders[i].pid;
	return 0;
}

static int pool_new(void *base, uint64_t size, struct pm_pool **out, char *err, size_t errlen)
{
	struct pm_pool *p;
	int rc = pm_super_check(base, size, err, errlen);

	if (rc)
		return rc;
	p = calloc(1, sizeof(*p));
	if (!p) {
		pm_errmsg(err, errlen, "out of memory");
		return -ENOMEM;
	}
	p->base = base;
	p->size = ((struct pm_super *)base)->pool_size;
	p->sb = base;
	p->fd = -1;
	*out = p;
	return 0;
}

int pm_pool_open_mem(void *base, uint64_t size, const struct pm_persist_ops *ops,
		     struct pm_pool **out, char *err, size_t errlen)
{
	int rc = pool_new(base, size, out, err, errlen);

	if (!rc)
		(*out)->ops = *ops;
	return rc;
}

int pm_pool_open(const char *path, struct pm_pool **out, char *err, size_t errlen)
{
	size_t mapped;
	int is_pmem, rc;
	void *base;
	struct stat st;
	int fd = open(path, O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		rc = -errno;
		pm_errmsg(err, errlen, "cannot open pool %s: %s", path, strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) < 0 || (S_ISREG(st.st_mode) && st.st_size < PM_BLOCK_SIZE)) {
		close(fd);
		pm_errmsg(err, errlen, "%s: too small to be a pinfs pool", path);
		return -EUCLEAN;
	}
	/* one user at a time: two daemons (or a daemon and fsck) on one pool
	 * would corrupt it. The lock goes away with the process, even on
	 * SIGKILL. */
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		rc = -errno;
		close(fd);
		if (rc == -EWOULDBLOCK)
			rc = -EBUSY;
		if (rc == -EBUSY)
			pm_errmsg(err, errlen, "pool is in use by another pinfs process");
		else
			pm_errmsg(err, errlen, "cannot lock pool: %s", strerror(-rc));
		return rc;
	}
	base = pmem_map_file(path, 0, 0, 0, &mapped, &is_pmem);
	if (!base) {
		rc = -(errno ? errno : EIO);
		close(fd);
		pm_errmsg(err, errlen, "cannot map pool %s: %s", path, pmem_errormsg());
		return rc;
	}
	rc = pool_new(base, mapped, out, err, errlen);
	if (rc) {
		close(fd);
		pmem_unmap(base, mapped);
		return rc;
	}
	(*out)->size = mapped;
	(*out)->is_pmem = is_pmem;
	(*out)->owns_mapping = true;
	(*out)->fd = fd;
	snprintf((*out)->path, sizeof((*out)->path), "%s", path);
	pm_persist_ops_libpmem(&(*out)->ops, is_pmem);
	return 0;
}

void pm_pool_close(struct pm_pool **pp)
{
	struct pm_pool *p = *pp;

	if (!p)
		return;
	if (p->owns_mapping)
		pmem_unmap(p->base, p->size);
	if (p->fd >= 0)
		close(p->fd);
	free(p);
	*pp = NULL;
}

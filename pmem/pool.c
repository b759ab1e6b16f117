/* SPDX-License-Identifier: MIT */
/*
 * pmem/pool.c -- mapping, formatting and validating pools.
 *
 * A pool is refused with one clear line and never crashes the caller,
 * whatever bytes it holds: every field used to compute an address is checked
 * against the size of the mapping before anything is dereferenced.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libpmem.h>
#include <linux/fs.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "pmem/crc32c.h"
#include "pmem/fs.h"
#include "pmem/pool.h"
#include "common/mountinfo.h"

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

void pm_super_set_errors(struct pm_pool *pool, uint32_t flags)
{
	struct pm_super *sb = pool->sb;

	if ((sb->errors & flags) == flags)
		return;
	sb->errors |= flags;
	sb->sb_csum = pm_super_csum(sb);
	pm_persist(&pool->ops, sb, sizeof(*sb));
}

void pm_super_clear_errors(struct pm_pool *pool)
{
	struct pm_super *sb = pool->sb;

	if (!sb->errors)
		return;
	sb->errors = 0;
	sb->sb_csum = pm_super_csum(sb);
	pm_persist(&pool->ops, sb, sizeof(*sb));
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

int pm_super_check_layout(const struct pm_super *sb, uint64_t avail, char *err, size_t errlen)
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
	/* the checksum first: a flipped bit in the version or the feature
	 * masks is corruption (the backup may help), not a newer pool */
	if (sb->sb_csum != pm_super_csum(sb)) {
		if (sb->version > PM_VERSION)
			pm_errmsg(err, errlen, "superblock checksum mismatch, and it says pool version "
			    "%u, newer than this pinfs (%u): the superblock is corrupt (or from a pinfs "
			    "that checksums it differently)", sb->version, PM_VERSION);
		else
			pm_errmsg(err, errlen, "superblock checksum mismatch: the superblock is corrupt");
		return -EUCLEAN;
	}
	if (sb->version > PM_VERSION) {
		pm_errmsg(err, errlen, "pool version %u is newer than this pinfs (%u)", sb->version,
		    PM_VERSION);
		return -EPROTONOSUPPORT;
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
	if (sb->npinholders > PM_PINHOLDERS_MAX) {
		pm_errmsg(err, errlen, "superblock holder record out of range: the superblock is corrupt");
		return -EUCLEAN;
	}
	return 0;
}

int pm_super_check(const struct pm_super *sb, uint64_t avail, char *err, size_t errlen)
{
	int rc = pm_super_check_layout(sb, avail, err, errlen);

	if (rc)
		return rc;
	if (sb->free_blocks > sb->nblocks - sb->data_start || sb->free_inodes >= sb->ninodes ||
	    sb->orphan_head >= sb->ninodes) {
		pm_errmsg(err, errlen, "superblock counters out of range: the superblock is corrupt");
		return -EUCLEAN;
	}
	return 0;
}

/* A stretch of pool blocks: [start, start + n). */
struct blkext {
	uint64_t start, n;
};

/*
 * The journal blocks the first mount's transaction writes: the header and
 * the records of one superblock (4 KiB and a record head: two blocks). The
 * mount needs them at once; everything else it writes is file data and
 * metadata that clients create later, which a full backing refuses with
 * ENOSPC at the time.
 */
#define MKFS_MOUNT_JOURNAL_BLOCKS 3u
#define MKFS_MAX_EXT 6u

/* Bits that mark the metadata [0, data_start) in use fill these bitmap
 * blocks from bitmap_start on. */
static uint64_t meta_bitmap_blocks(const struct pm_super *sb)
{
	return div_up(sb->data_start, PM_BLOCK_SIZE * 8ull);
}

/*
 * The blocks of a new pool that are not zeros, and the journal blocks its
 * first mount writes: what the pool takes of its backing at once (everything
 * else is a hole). Ascending, disjoint. Returns how many stretches are in
 * @e (MKFS_MAX_EXT at most).
 */
static unsigned mkfs_extents(const struct pm_super *sb, struct blkext *e)
{
	uint64_t last_bm = sb->bitmap_start + sb->bitmap_blocks - 1;
	struct blkext want[MKFS_MAX_EXT] = {
		{ 0, 1 },						/* superblock */
		{ sb->journal_start, MKFS_MOUNT_JOURNAL_BLOCKS },	/* header, records */
		{ sb->itable_start, 1 },				/* slot 0, root */
		{ sb->bitmap_start, meta_bitmap_blocks(sb) },		/* metadata bits */
		{ last_bm, 1 },						/* bits past nblocks */
		{ pm_backup_sb_block(sb), pm_backup_sb_block(sb) ? 1 : 0 },
	};
	unsigned i, n = 0;

	for (i = 0; i < MKFS_MAX_EXT; i++) {
		struct blkext w = want[i];

		if (!w.n)
			continue;
		if (n && w.start <= e[n - 1].start + e[n - 1].n) {
			uint64_t end = w.start + w.n;

			if (end > e[n - 1].start + e[n - 1].n)
				e[n - 1].n = end - e[n - 1].start;
			continue;
		}
		e[n++] = w;
	}
	return n;
}

/* Bytes of backing a new pool of @sb's geometry takes at once (the blocks
 * of mkfs_extents), counted in allocation units of @unit bytes (the backing
 * file system's block: 4 KiB on tmpfs, 2 MiB on hugetlbfs). */
static uint64_t mkfs_need(const struct pm_super *sb, uint64_t unit)
{
	struct blkext e[MKFS_MAX_EXT];
	uint64_t units = 0, next = 0; /* first unit not yet counted */
	unsigned i, n = mkfs_extents(sb, e);

	if (unit < PM_BLOCK_SIZE)
		unit = PM_BLOCK_SIZE;
	for (i = 0; i < n; i++) {
		uint64_t first = (e[i].start << PM_BLOCK_SHIFT) / unit;
		uint64_t last = (((e[i].start + e[i].n) << PM_BLOCK_SHIFT) - 1) / unit;

		if (first < next)
			first = next;
		if (first <= last)
			units += last - first + 1;
		if (last + 1 > next)
			next = last + 1;
	}
	return units * unit;
}

/* Stores zeros over [off, off + len) of the image at @base and persists
 * them, MKFS_ZERO_CHUNK at a time: a device's old metadata can be
 * gigabytes, and what is written back can be dropped as it goes. */
#define MKFS_ZERO_CHUNK (64ull << 20)
static void zero_range(void *base, uint64_t off, uint64_t len, const struct pm_persist_ops *ops)
{
	while (len) {
		uint64_t n = len < MKFS_ZERO_CHUNK ? len : MKFS_ZERO_CHUNK;

		memset((char *)base + off, 0, n);
		pm_persist(ops, (char *)base + off, n);
		off += n;
		len -= n;
	}
}

/*
 * Writes a new file system into the image at @base, @size bytes. @fresh:
 * the image reads as zeros already (a file just truncated to its size: all
 * hole), so only the blocks mkfs_extents() names are written and flushed;
 * else the metadata [block 1, data_start) is zeroed first, in chunks.
 *
 * Order of writes and persists: the metadata (zeroed if not @fresh; the
 * bitmap bits of the metadata, the root inode) is written and persisted
 * first; then the backup superblock, persisted; the primary superblock, with
 * its magic, last, persisted. A crash during mkfs never leaves something
 * that looks like a valid pool, and a pool with a valid primary always has
 * its backup.
 */
static int format_image(void *base, uint64_t size, const struct pm_mkfs_opts *o,
			const struct pm_persist_ops *ops, bool fresh)
{
	const uint64_t per = PM_BLOCK_SIZE * 8ull;
	struct pm_super sb;
	struct pm_dinode *root;
	struct timespec now;
	uint8_t *bm;
	uint64_t b, end, low;
	int rc;

	memset(&sb, 0, sizeof(sb));
	rc = pm_geometry(&sb, size, o->ninodes, o->features);
	if (rc)
		return rc;
	sb.magic = PM_SUPER_MAGIC;
	sb.version = PM_VERSION;
	sb.block_size = PM_BLOCK_SIZE;
	sb.feat_incompat = o->features;
	sb.feat_compat = PM_FEAT_COMPAT_BACKUP_SB | o->compat;
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

	/* the journal header (zeros: EMPTY), the inode table (zeros: free
	 * slots), the bitmap and the checksum table start zeroed */
	if (!fresh)
		zero_range(base, PM_BLOCK_SIZE, (sb.data_start - 1) << PM_BLOCK_SHIFT, ops);
	/* metadata blocks are never free: mark [0, data_start) in the bitmap
	 * so the allocator and fsck need no special case for them */
	bm = (uint8_t *)base + (sb.bitmap_start << PM_BLOCK_SHIFT);
	memset(bm, 0xff, sb.data_start >> 3);
	for (b = sb.data_start & ~7ull; b < sb.data_start; b++)
		bm[b >> 3] |= (uint8_t)(1u << (b & 7));
	pm_flush(ops, bm, div_up(sb.data_start, 8));
	/* bits past nblocks are "in use" so they are never handed out; the
	 * backup superblock's block is never allocated */
	end = sb.bitmap_blocks * per;
	for (b = sb.nblocks; b < end && (b & 7); b++)
		bm[b >> 3] |= (uint8_t)(1u << (b & 7));
	memset(bm + (b >> 3), 0xff, (end - b) >> 3);
	low = sb.nblocks; /* the lowest bit written since the metadata's */
	b = pm_backup_sb_block(&sb);
	if (b) {
		bm[b >> 3] |= (uint8_t)(1u << (b & 7));
		low = b;
	}
	pm_flush(ops, bm + (low >> 3), (end >> 3) - (low >> 3));

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
	pm_flush(ops, root, sizeof(*root));
	sb.next_generation = 2;
	sb.free_blocks = sb.nblocks - sb.data_start - 1; /* - the backup superblock */
	sb.free_inodes = sb.ninodes - 2; /* slot 0 and the root */
	sb.clean = 1;
	pm_drain(ops);

	sb.sb_csum = pm_super_csum(&sb);
	/* the backup before the primary: a pool with a valid primary always
	 * has its backup */
	memcpy(pm_backup_ptr(base, &sb), &sb, sizeof(sb));
	pm_persist(ops, pm_backup_ptr(base, &sb), sizeof(sb));
	memcpy(base, &sb, sizeof(sb));
	pm_persist(ops, base, sizeof(sb));
	return 0;
}

int pm_mkfs_mem(void *base, uint64_t size, const struct pm_mkfs_opts *o,
		const struct pm_persist_ops *ops)
{
	memset(base, 0, PM_BLOCK_SIZE);
	return format_image(base, size, o, ops, false);
}

/* ---- mkfs: what is there before it is formatted --------------------------
 *
 * mkfs destroys whatever its target holds, so it looks first, and writes
 * nothing (no O_TRUNC, no ftruncate) until every check has passed:
 *
 *   1. open without truncating and without following a symbolic link;
 *      refuse outright what cannot hold a pool (a symbolic link, a
 *      directory, a FIFO, a character device that is not device DAX, which
 *      is never even opened for writing: some drivers act on open) and a
 *      regular file another user owns (--force or not);
 *   2. check what is there (mkfs_check): without --force only an empty (or
 *      all-hole) file is formatted; a pool whose holder record names a live
 *      process is refused even with --force;
 *   3. take the pool lock without waiting: a daemon, fsck.pinfs or another
 *      mkfs.pinfs holds it while it uses the pool, --force or not;
 *   4. check again under the lock (what was read in 2 may have changed
 *      until then), make a regular file mode 0600, then format.
 *
 * Whoever can open the pool file can map all of it, so a pool is private to
 * its owner: mkfs never formats through a symbolic link (whoever controls
 * the link chooses what is destroyed), nor a file someone else owns (its
 * owner could chmod it open, or rewrite it under the daemon, at any time),
 * and leaves what it formats readable by its owner only. Devices keep
 * their owner and mode: who may open /dev/pmemX is the system's business.
 */

/* A name for what the first @n bytes of a file or device, @b, are, from a
 * few well-known signatures; "" if none. It only tells the user what --force
 * would destroy: no decision depends on it. */
static const char *mkfs_signature(const unsigned char *b, size_t n)
{
	size_t i;

	if (n >= 4 && !memcmp(b, "\177ELF", 4))
		return "an ELF binary";
	if (n >= 4 && !memcmp(b, "XFSB", 4))
		return "an XFS file system";
	if (n >= 6 && !memcmp(b, "LUKS\272\276", 6))
		return "a LUKS volume";
	if (n >= 4 && !memcmp(b, "PK\003\004", 4))
		return "a ZIP archive";
	if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b)
		return "gzip data";
	/* text: no NUL and no control byte but the usual white space and ESC */
	for (i = 0; i < n; i++)
		if ((b[i] < 0x20 && (b[i] < '\a' || b[i] > '\r') && b[i] != 033) || b[i] == 0x7f)
			break;
	if (n && i == n)
		return "text";
	if (n >= 1082 && b[1080] == 0x53 && b[1081] == 0xef)
		return "an ext2/3/4 file system";
	if (n >= PM_BLOCK_SIZE && !memcmp(b + PM_BLOCK_SIZE - 10, "SWAPSPACE2", 10))
		return "Linux swap space";
	return "";
}

/* "9 bytes", "64 MiB", "2 GiB": a size for a message. */
static void mkfs_size_str(char *buf, size_t len, uint64_t n)
{
	if (n >= (1ull << 30) && !(n & ((1ull << 30) - 1)))
		snprintf(buf, len, "%llu GiB", (unsigned long long)(n >> 30));
	else if (n >= (1ull << 20) && !(n & ((1ull << 20) - 1)))
		snprintf(buf, len, "%llu MiB", (unsigned long long)(n >> 20));
	else
		snprintf(buf, len, "%llu byte%s", (unsigned long long)n, n == 1 ? "" : "s");
}

/* Is the character device @st device DAX (/dev/daxX.Y), the only kind of
 * character device libpmem maps? Asked of sysfs, without opening it. */
static bool mkfs_is_devdax(const struct stat *st)
{
	char link[96], target[256];
	ssize_t n;

	snprintf(link, sizeof(link), "/sys/dev/char/%u:%u/subsystem", major(st->st_rdev),
		 minor(st->st_rdev));
	n = readlink(link, target, sizeof(target) - 1);
	if (n <= 0)
		return false;
	target[n] = 0;
	return !strcmp(strrchr(target, '/') ? strrchr(target, '/') + 1 : target, "dax");
}

/* Bytes the block or DAX device @st (open as @fd) holds; 0 if unknown. */
static uint64_t mkfs_device_size(int fd, const struct stat *st)
{
	char path[96];
	unsigned long long n = 0;
	uint64_t b = 0;
	FILE *f;

	if (S_ISBLK(st->st_mode))
		return ioctl(fd, BLKGETSIZE64, &b) == 0 ? b : 0;
	snprintf(path, sizeof(path), "/sys/dev/char/%u:%u/size", major(st->st_rdev),
		 minor(st->st_rdev));
	f = fopen(path, "re");
	if (!f)
		return 0;
	if (fscanf(f, "%llu", &n) != 1)
		n = 0;
	fclose(f);
	return n;
}

/*
 * Opens @path read-write for mkfs into *@out, creating it (0600) if missing,
 * never truncating and never following a symbolic link in its last
 * component (-ELOOP). What cannot hold a pool is refused before it is opened
 * for writing: the path is looked at through an O_PATH descriptor, which no
 * driver sees, and reopened through /proc/self/fd, so both are one inode.
 * A regular file owned by another user than the caller (euid) is refused
 * (-EPERM), root included: chown it first. A block device is opened O_EXCL:
 * the kernel refuses it while mounted. *@created says whether this call made
 * the file. 0 or -errno, with a message in @err.
 */
static int mkfs_open(const char *path, int *out, bool *created, char *err, size_t errlen)
{
	int flags = O_RDWR | O_CLOEXEC, pfd, fd, rc;
	char proc[64];
	struct stat st;

	/* O_PATH | O_NOFOLLOW opens a symbolic link itself, dangling or not */
	pfd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (pfd < 0 && errno == ENOENT) {
		/* O_EXCL never follows a symbolic link either */
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0) {
			*out = fd;
			*created = true;
			return 0;
		}
		if (errno == EEXIST) /* created meanwhile: look at it */
			pfd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		else
			pfd = -1;
	}
	if (pfd < 0 || fstat(pfd, &st) < 0) {
		rc = -errno;
		if (pfd >= 0)
			close(pfd);
		pm_errmsg(err, errlen, "cannot open %s: %s", path, strerror(-rc));
		return rc;
	}
	rc = 0;
	if (S_ISLNK(st.st_mode)) {
		char target[256];
		ssize_t n = readlinkat(pfd, "", target, sizeof(target) - 1);

		target[n > 0 ? n : 0] = 0;
		pm_errmsg(err, errlen, "%s is a symbolic link%s%s%s: mkfs.pinfs formats only the file "
		    "itself, never through a link (--force does not override this); give the target's "
		    "path", path, n > 0 ? " (to " : "", target, n > 0 ? ")" : "");
		rc = -ELOOP;
	} else if (S_ISREG(st.st_mode) && st.st_uid != geteuid()) {
		struct passwd pw, *pwp = NULL;
		char buf[1024], who[96];

		if (!getpwuid_r(st.st_uid, &pw, buf, sizeof(buf), &pwp) && pwp)
			snprintf(who, sizeof(who), "user %s (uid %u)", pwp->pw_name,
				 (unsigned)st.st_uid);
		else
			snprintf(who, sizeof(who), "uid %u", (unsigned)st.st_uid);
		pm_errmsg(err, errlen, "%s: owned by %s, not by the caller (uid %u): its owner could "
		    "open the new pool to anyone; mkfs.pinfs formats only its caller's own files "
		    "(--force does not override this): chown it first, or remove it", path, who,
		    (unsigned)geteuid());
		rc = -EPERM;
	} else if (S_ISBLK(st.st_mode)) {
		flags |= O_EXCL;
	} else if (S_ISCHR(st.st_mode) && !mkfs_is_devdax(&st)) {
		pm_errmsg(err, errlen, "%s: a character device (%u:%u) that is not a DAX device: it cannot "
		    "hold a pool", path, major(st.st_rdev), minor(st.st_rdev));
		rc = -ENODEV;
	} else if (S_ISDIR(st.st_mode)) {
		pm_errmsg(err, errlen, "%s: a directory: a pool is a file or a device", path);
		rc = -EISDIR;
	} else if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode)) {
		pm_errmsg(err, errlen, "%s: a FIFO or socket: a pool is a file or a device", path);
		rc = -EINVAL;
	}
	if (rc) {
		close(pfd);
		return rc;
	}
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pfd);
	fd = open(proc, flags);
	rc = fd < 0 ? -errno : 0;
	close(pfd);
	if (rc == -EBUSY)
		pm_errmsg(err, errlen, "%s: the device is in use (mounted, or opened exclusively)", path);
	else if (rc)
		pm_errmsg(err, errlen, "cannot open %s: %s", path, strerror(-rc));
	else
		*out = fd;
	return rc;
}

/*
 * May mkfs write over what @fd (@path) holds? 0 if so. Without @force,
 * -EEXIST for anything but an empty or all-hole regular file: a foreign
 * file or device, or a pinfs pool (naming its uuid and size). Even with
 * @force, -EBUSY for a pinfs pool whose holder record names a live process:
 * it may still store into the pool through its mapping, and its stores would
 * land in the new file system. Reads only; one line for the user in @err.
 */
static int mkfs_check(int fd, const char *path, bool force, char *err, size_t errlen)
{
	union {
		struct pm_super sb;
		unsigned char b[PM_BLOCK_SIZE];
	} head;
	char what[64], size_str[32], why[200];
	const char *sig;
	struct stat st;
	uint64_t size;
	uint32_t pid;
	ssize_t n;
	int rc;

	if (fstat(fd, &st) < 0) {
		rc = -errno;
		pm_errmsg(err, errlen, "cannot stat %s: %s", path, strerror(-rc));
		return rc;
	}
	if (S_ISREG(st.st_mode)) {
		size = (uint64_t)st.st_size;
		/* nothing to lose: empty, or nothing but a hole (truncate -s) */
		if (!size || (lseek(fd, 0, SEEK_DATA) < 0 && errno == ENXIO))
			return 0;
	} else {
		size = mkfs_device_size(fd, &st);
	}
	memset(&head, 0, sizeof(head));
	n = pread(fd, head.b, sizeof(head.b), 0);
	if (n < 0) {
		rc = -errno;
		pm_errmsg(err, errlen, "cannot read %s: %s", path, strerror(-rc));
		return rc;
	}
	mkfs_size_str(size_str, sizeof(size_str), size);

	if (n >= (ssize_t)sizeof(head.sb.magic) && head.sb.magic == PM_SUPER_MAGIC) {
		/* the holder record is trusted only in a superblock that checks out
		 * (pm_super_check_layout bounds npinholders; a free counter out
		 * of range does not make the record less true) */
		if (pm_super_check_layout(&head.sb, size ? size : UINT64_MAX, why, sizeof(why))) {
			if (force)
				return 0;
			pm_errmsg(err, errlen, "%s: holds a pinfs pool that does not validate (%s); use "
			    "--force to overwrite it", path, why);
			return -EEXIST;
		}
		pid = pm_super_live_holder(&head.sb);
		if (pid) {
			char comm[32] = "", cpath[48];
			FILE *f;

			snprintf(cpath, sizeof(cpath), "/proc/%u/comm", pid);
			f = fopen(cpath, "re");
			if (f) {
				if (!fgets(comm, sizeof(comm), f))
					comm[0] = 0;
				comm[strcspn(comm, "\n")] = 0;
				fclose(f);
			}
			pm_errmsg(err, errlen, "%s: process %u%s%s%s held pins in this pool and may still "
			    "store into it through its mapping: end it first (--force does not override "
			    "this)", path, pid, comm[0] ? " (" : "", comm, comm[0] ? ")" : "");
			return -EBUSY;
		}
		if (force)
			return 0;
		mkfs_size_str(size_str, sizeof(size_str), head.sb.pool_size);
		snprintf(why, sizeof(why),
			 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
			 head.sb.uuid[0], head.sb.uuid[1], head.sb.uuid[2], head.sb.uuid[3],
			 head.sb.uuid[4], head.sb.uuid[5], head.sb.uuid[6], head.sb.uuid[7],
			 head.sb.uuid[8], head.sb.uuid[9], head.sb.uuid[10], head.sb.uuid[11],
			 head.sb.uuid[12], head.sb.uuid[13], head.sb.uuid[14], head.sb.uuid[15]);
		pm_errmsg(err, errlen, "%s: holds a pinfs pool (uuid %s, %s): formatting destroys every "
		    "file in it; use --force to overwrite it", path, why, size_str);
		return -EEXIST;
	}
	if (force)
		return 0;
	sig = mkfs_signature(head.b, (size_t)n);
	if (S_ISREG(st.st_mode))
		snprintf(what, sizeof(what), "a regular file of %s", size_str);
	else if (S_ISBLK(st.st_mode))
		snprintf(what, sizeof(what), "a block device (%u:%u%s%s)", major(st.st_rdev),
			 minor(st.st_rdev), size ? ", " : "", size ? size_str : "");
	else
		snprintf(what, sizeof(what), "a DAX device (%u:%u%s%s)", major(st.st_rdev),
			 minor(st.st_rdev), size ? ", " : "", size ? size_str : "");
	pm_errmsg(err, errlen, "%s: %s%s%s%s that is not a pinfs pool; use --force to overwrite it",
	    path, what, *sig ? " (" : "", sig, *sig ? ")" : "");
	return -EEXIST;
}

/* "1056 KiB", "1 TiB", "5000 bytes": a size for a message, exact, in the
 * largest unit that divides it. */
static void human_size(char *buf, size_t len, uint64_t n)
{
	static const char *const unit[] = { "bytes", "KiB", "MiB", "GiB", "TiB", "PiB" };
	unsigned u = 0;

	while (n && !(n & 1023) && u + 1 < sizeof(unit) / sizeof(unit[0])) {
		n >>= 10;
		u++;
	}
	snprintf(buf, len, "%llu %s", (unsigned long long)n, unit[u]);
}

/*
 * Has the file system holding the regular file @fd (@path, @st) room for
 * what a new pool of geometry @g takes at once (mkfs_need, in units of
 * its block size)? 0 if so, or if it cannot tell; else -ENOSPC with one
 * line naming both figures. What the file holds now counts as free:
 * formatting truncates it first. A pool larger than the free space is
 * legitimate (it is sparse: thin provisioning), but its writes fail with
 * ENOSPC once the file system is full, so o->warn gets one line saying so.
 * Called before anything is written.
 */
static int mkfs_space(int fd, const char *path, const struct stat *st, const struct pm_super *g,
		      const struct pm_mkfs_opts *o, char *err, size_t errlen)
{
	char s_need[32], s_free[32], s_size[32];
	struct statvfs v;
	uint64_t avail, need, unit;

	if (!S_ISREG(st->st_mode) || fstatvfs(fd, &v) < 0 || !v.f_frsize)
		return 0;
	unit = v.f_frsize;
	avail = (uint64_t)v.f_bavail * v.f_frsize + (uint64_t)st->st_blocks * 512;
	need = mkfs_need(g, unit);
	human_size(s_need, sizeof(s_need), need);
	human_size(s_free, sizeof(s_free), avail);
	human_size(s_size, sizeof(s_size), g->pool_size);
	if (need > avail) {
		pm_errmsg(err, errlen, "%s: a pool of %s takes %s (%llu bytes) of its file system at "
		    "once (superblocks, bitmap of the metadata, root inode, journal head), but only %s "
		    "(%llu bytes) is free there: nothing was formatted", path, s_size, s_need,
		    (unsigned long long)need, s_free, (unsigned long long)avail);
		return -ENOSPC;
	}
	if (g->pool_size > avail && o->warn)
		fprintf(o->warn, "mkfs.pinfs: warning: %s: the pool (%s) is larger than the free space "
			"of its file system (%s): it is sparse and works until that fills up, then "
			"writes fail with ENOSPC\n", path, s_size, s_free);
	return 0;
}

/*
 * Allocates the backing of the blocks a new pool of geometry @g in the
 * regular file @fd takes at once (mkfs_extents), before anything is stored
 * through the mapping: a file system that fills meanwhile fails this with
 * ENOSPC instead of killing mkfs (or the first mount) with SIGBUS. A file
 * system that cannot (EOPNOTSUPP) is left to mkfs_space's check.
 */
static int mkfs_reserve(int fd, const char *path, const struct pm_super *g, char *err,
			size_t errlen)
{
	struct blkext e[MKFS_MAX_EXT];
	unsigned i, n = mkfs_extents(g, e);
	int rc;

	for (i = 0; i < n; i++) {
		if (!fallocate(fd, 0, (off_t)(e[i].start << PM_BLOCK_SHIFT),
			       (off_t)(e[i].n << PM_BLOCK_SHIFT)))
			continue;
		if (errno == EOPNOTSUPP)
			return 0;
		rc = -errno;
		pm_errmsg(err, errlen, "cannot allocate blocks %llu-%llu of %s: %s",
		    (unsigned long long)e[i].start, (unsigned long long)(e[i].start + e[i].n - 1),
		    path, strerror(-rc));
		return rc;
	}
	return 0;
}

/*
 * Formats what @fd (@path, locked, checked) holds as a pool of geometry @g.
 * A regular file is truncated to nothing and then to the pool's size: its
 * old contents (an old pool's inode table, bitmap, journal) are gone and
 * every byte reads as zero, a hole, so format_image() writes only what is
 * not zero, into blocks reserved first (mkfs_reserve). A device keeps its
 * bytes: its superblock is zeroed and persisted first (the old pool is no
 * longer one), then format_image() zeroes the whole metadata area in chunks,
 * and the last block of a device larger than the pool (where an old pool's
 * backup superblock may be) is zeroed too.
 *
 * The mapping touches nothing by itself (no MAP_POPULATE): a 10 TiB pool
 * file is mapped whole and only the pages written are allocated.
 */
static int mkfs_format(int fd, const char *path, const struct pm_super *g,
		       const struct pm_mkfs_opts *o, char *err, size_t errlen)
{
	uint64_t size = g->pool_size;
	struct pm_persist_ops ops;
	char proc[64];
	struct stat st;
	size_t mapped;
	int is_pmem, rc;
	bool fresh;
	void *base;

	if (fstat(fd, &st) < 0) {
		rc = -errno;
		pm_errmsg(err, errlen, "cannot stat %s: %s", path, strerror(-rc));
		return rc;
	}
	fresh = S_ISREG(st.st_mode);
	if (fresh && (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)size) < 0)) {
		rc = -errno;
		pm_errmsg(err, errlen, "cannot size %s: %s", path, strerror(-rc));
		return rc;
	}
	if (fresh) {
		rc = mkfs_reserve(fd, path, g, err, errlen);
		if (rc)
			return rc;
	}
	/* map the very file that was checked and locked, not whatever @path
	 * names by now */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	base = pmem_map_file(proc, 0, 0, 0, &mapped, &is_pmem);
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
	if (!fresh) {
		memset(base, 0, PM_BLOCK_SIZE);
		pm_persist(&ops, base, PM_BLOCK_SIZE);
		if (mapped / PM_BLOCK_SIZE > size / PM_BLOCK_SIZE)
			zero_range(base, (mapped / PM_BLOCK_SIZE - 1) * PM_BLOCK_SIZE, PM_BLOCK_SIZE,
				   &ops);
	}
	rc = format_image(base, size, o, &ops, fresh);
	pmem_unmap(base, mapped);
	if (rc)
		pm_errmsg(err, errlen, "cannot lay out a pool of %llu bytes", (unsigned long long)size);
	return rc;
}

/* Removes @path, which mkfs created as @fd and could not format, if it
 * still names that file: nothing is left behind. */
static void mkfs_remove(int fd, const char *path)
{
	struct stat a, b;

	if (!fstat(fd, &a) && !lstat(path, &b) && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
		unlink(path);
}

/* Makes the regular file @fd (@path) mode 0600 before anything is written
 * into it: whoever can open the pool file can map all of it. A device keeps
 * its mode. 0 or -errno, with a message in @err. */
static int mkfs_private(int fd, const char *path, char *err, size_t errlen)
{
	struct stat st;
	int rc;

	if (fstat(fd, &st) < 0) {
		rc = -errno;
		pm_errmsg(err, errlen, "cannot stat %s: %s", path, strerror(-rc));
		return rc;
	}
	if (!S_ISREG(st.st_mode) || (st.st_mode & 07777) == 0600)
		return 0;
	if (fchmod(fd, 0600) < 0) {
		rc = -errno;
		pm_errmsg(err, errlen, "cannot make %s mode 0600: %s", path, strerror(-rc));
		return rc;
	}
	return 0;
}

int pm_mkfs(const char *path, const struct pm_mkfs_opts *o, char *err, size_t errlen)
{
	uint64_t size = o->size & ~(uint64_t)(PM_BLOCK_SIZE - 1);
	struct pm_super g;
	bool created = false;
	struct stat st;
	int fd = -1, rc;

	memset(&g, 0, sizeof(g));
	if (size < PM_POOL_MIN_SIZE || size > PM_POOL_MAX_SIZE) {
		pm_errmsg(err, errlen, "pool size must be between 8 MiB and 64 TiB");
		return -EINVAL;
	}
	if (pm_geometry(&g, size, o->ninodes, o->features)) {
		pm_errmsg(err, errlen, "cannot lay out a pool of %llu bytes with these options: its "
		    "metadata would leave less than a quarter of it for data (or --inodes is above "
		    "2^32)", (unsigned long long)size);
		return -EINVAL;
	}
	g.feat_compat = PM_FEAT_COMPAT_BACKUP_SB | o->compat;
	rc = mkfs_open(path, &fd, &created, err, errlen);
	if (rc)
		return rc;
	rc = mkfs_check(fd, path, o->force, err, errlen);
	if (rc)
		goto out;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		if (rc == -EBUSY)
			pm_errmsg(err, errlen, "%s: in use by a pinfs daemon, fsck.pinfs or mkfs.pinfs "
			    "(it holds the pool lock; --force does not override this)", path);
		else
			pm_errmsg(err, errlen, "cannot lock %s: %s", path, strerror(-rc));
		goto out;
	}
	/* under the lock nobody else mounts, repairs or formats it: look again */
	rc = mkfs_check(fd, path, o->force, err, errlen);
	if (!rc && fstat(fd, &st) < 0) {
		rc = -errno;
		pm_errmsg(err, errlen, "cannot stat %s: %s", path, strerror(-rc));
	}
	if (!rc)
		rc = mkfs_space(fd, path, &st, &g, o, err, errlen);
	if (!rc)
		rc = mkfs_private(fd, path, err, errlen);
	if (!rc)
		rc = mkfs_format(fd, path, &g, o, err, errlen);
	/* a file this mkfs made and could not format goes, under the lock */
	if (rc && created)
		mkfs_remove(fd, path);
out:
	close(fd); /* drops the lock, after the pool is unmapped */
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

/* The superblock at block @blk of the mapping at @base, @size bytes, if it
 * is a sound backup superblock that names @blk as its place; else NULL. */
static const struct pm_super *backup_at(const void *base, uint64_t size, uint64_t blk)
{
	const struct pm_super *bk;

	if (blk < 1 || blk >= size / PM_BLOCK_SIZE)
		return NULL;
	bk = (const struct pm_super *)((const char *)base + blk * PM_BLOCK_SIZE);
	if (bk->magic != PM_SUPER_MAGIC || pm_super_check(bk, size, NULL, 0) ||
	    pm_backup_sb_block(bk) != blk)
		return NULL;
	return bk;
}

/*
 * The backup superblock of a pool mapped at @base, @size bytes, whose primary
 * superblock is unusable: in the last block of the mapping (a pool file, a
 * device the pool fills), or where the primary's pool size, if it is still
 * readable, puts it (a pool smaller than its device). NULL if none is sound.
 */
static const struct pm_super *find_backup(const void *base, uint64_t size)
{
	const struct pm_super *sb = base, *bk;

	if (size < 2 * PM_BLOCK_SIZE)
		return NULL;
	bk = backup_at(base, size, size / PM_BLOCK_SIZE - 1);
	if (!bk && sb->pool_size <= size && !(sb->pool_size % PM_BLOCK_SIZE))
		bk = backup_at(base, size, sb->pool_size / PM_BLOCK_SIZE - 1);
	return bk;
}

/*
 * The superblock spans several cache lines, and persistent memory makes each
 * durable on its own: a crash while a committed transaction is applied can
 * leave the primary superblock half old, half new, failing its checksum,
 * while the journal holds it whole. So before the primary is judged, a
 * committed journal is replayed, found through a sound backup's layout (the
 * regions never move). With @ops NULL (read-only) nothing is written; fsck
 * -n gives a private view's ops (PM_POOL_PRIVATE). Says whether it replayed
 * a transaction, and its size in @nrecs and @len.
 * Found by scripts/crash-states (tests/unit/test_crash.c keeps the image).
 */
static bool replay_under_torn_super(void *base, uint64_t size, const struct pm_persist_ops *ops,
				    uint32_t *nrecs, uint64_t *len)
{
	const struct pm_super *bk;
	const struct pm_jhdr *h;
	struct pm_super copy;
	struct pm_pool p;

	if (!ops || size < 2 * PM_BLOCK_SIZE || !pm_super_check(base, size, NULL, 0))
		return false;
	bk = find_backup(base, size);
	if (!bk)
		return false;
	copy = *bk;
	memset(&p, 0, sizeof(p));
	p.base = base;
	p.sb = &copy;
	p.size = copy.pool_size;
	p.fd = -1;
	p.ops = *ops;
	h = pm_block_ptr(&p, copy.journal_start);
	*nrecs = h->nrecs;
	*len = h->body_len;
	return pm_journal_recover(&p, NULL, 0) == 1;
}

/* The persistence ops of a private view (PM_POOL_PRIVATE): nothing to make
 * durable, nothing may reach the pool. */
static void private_flush(void *ctx, const void *addr, size_t len)
{
	(void)ctx;
	(void)addr;
	(void)len;
}

static void private_drain(void *ctx)
{
	(void)ctx;
}

static const struct pm_persist_ops private_ops = { private_flush, private_drain, NULL };

static int pool_new(void *base, uint64_t size, unsigned flags, const struct pm_persist_ops *ops,
		    struct pm_pool **out, char *err, size_t errlen)
{
	struct pm_pool *p;
	const struct pm_super *bk = NULL;
	struct pm_super *copy = NULL;
	bool torn = false;
	uint32_t tnrecs = 0;
	uint64_t tlen = 0;
	int rc;

	if (!(flags & PM_POOL_RDONLY) || (flags & PM_POOL_PRIVATE))
		torn = replay_under_torn_super(base, size, ops, &tnrecs, &tlen);
	rc = pm_super_check(base, size, err, errlen);

	if (rc == -EUCLEAN && !pm_super_check_layout(base, size, NULL, 0)) {
		/* only what fsck recomputes is wrong (the free counters, the
		 * orphan head): fsck takes the primary as it is, which keeps
		 * its holder record and orphan list, rather than the backup */
		if (!(flags & PM_POOL_BACKUP_SB)) {
			size_t n = err ? strlen(err) : 0;
			pm_errmsg(err + n, errlen - n, "; fsck.pinfs --repair recomputes them");
			return rc;
		}
		rc = 0;
	} else if (rc == -EUCLEAN && size >= PM_BLOCK_SIZE) {
		/* corruption only (-EUCLEAN): a newer pool with a sound
		 * superblock is not to be "restored" from a backup */
		bk = find_backup(base, size);
		if (bk && !(flags & PM_POOL_BACKUP_SB)) {
			size_t n = err ? strlen(err) : 0;
			pm_errmsg(err + n, errlen - n, "; the backup superblock (block %llu) is intact: "
			    "fsck.pinfs --repair restores the primary from it",
			    (unsigned long long)pm_backup_sb_block(bk));
		}
		if (!bk || !(flags & PM_POOL_BACKUP_SB))
			return rc;
		copy = malloc(sizeof(*copy));
		if (!copy) {
			pm_errmsg(err, errlen, "out of memory");
			return -ENOMEM;
		}
		memcpy(copy, bk, sizeof(*copy));
	} else if (rc) {
		return rc;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		free(copy);
		pm_errmsg(err, errlen, "out of memory");
		return -ENOMEM;
	}
	p->base = base;
	p->sb = copy ? copy : base;
	p->sb_copy = copy;
	p->size = p->sb->pool_size;
	p->fd = -1;
	p->torn_replayed = torn;
	p->torn_nrecs = tnrecs;
	p->torn_len = tlen;
	*out = p;
	return 0;
}

int pm_pool_reload_super(struct pm_pool *p, char *err, size_t errlen)
{
	const struct pm_super *bk;
	int rc = pm_super_check(p->base, p->size, err, errlen);

	/* a primary whose only fault is a counter fsck recomputes is kept,
	 * as pool_new() keeps it */
	if (!rc || (rc == -EUCLEAN && !pm_super_check_layout(p->base, p->size, NULL, 0))) {
		p->sb = p->base;
		return 0;
	}
	bk = find_backup(p->base, p->size);
	if (!bk)
		return rc;
	if (!p->sb_copy) {
		p->sb_copy = malloc(sizeof(*p->sb_copy));
		if (!p->sb_copy) {
			pm_errmsg(err, errlen, "out of memory");
			return -ENOMEM;
		}
	}
	memcpy(p->sb_copy, bk, sizeof(*p->sb_copy));
	p->sb = p->sb_copy;
	return 0;
}

int pm_pool_open_mem_flags(void *base, uint64_t size, const struct pm_persist_ops *ops,
			   unsigned flags, struct pm_pool **out, char *err, size_t errlen)
{
	int rc = pool_new(base, size, flags, ops, out, err, errlen);

	if (!rc)
		(*out)->ops = *ops;
	return rc;
}

int pm_pool_open_mem(void *base, uint64_t size, const struct pm_persist_ops *ops,
		     struct pm_pool **out, char *err, size_t errlen)
{
	return pm_pool_open_mem_flags(base, size, ops, 0, out, err, errlen);
}

/* Maps @fd (@path) read-only: a store through it faults, so a checker that
 * opened it so provably writes nothing. */
static void *map_rdonly(int fd, const char *path, bool priv, size_t *mapped, char *err,
			size_t errlen)
{
	struct stat st;
	uint64_t size;
	void *base;

	if (fstat(fd, &st) < 0) {
		pm_errmsg(err, errlen, "cannot stat pool %s: %s", path, strerror(errno));
		return NULL;
	}
	size = S_ISREG(st.st_mode) ? (uint64_t)st.st_size : mkfs_device_size(fd, &st);
	if (!size || size > SIZE_MAX) {
		pm_errmsg(err, errlen, "cannot tell the size of pool %s", path);
		errno = EINVAL;
		return NULL;
	}
	/* private: stores copy the page, the file (opened O_RDONLY) is never
	 * written */
	base = priv ? mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0)
		    : mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		pm_errmsg(err, errlen, "cannot map pool %s: %s", path, strerror(errno));
		return NULL;
	}
	*mapped = (size_t)size;
	return base;
}

int pm_pool_open(const char *path, struct pm_pool **out, char *err, size_t errlen)
{
	return pm_pool_open_flags(path, 0, out, err, errlen);
}

/* The command name of process @pid in @comm ("" if gone). */
static void pid_comm(uint32_t pid, char *comm, size_t len)
{
	char path[64];
	FILE *f;

	comm[0] = 0;
	snprintf(path, sizeof(path), "/proc/%u/comm", pid);
	f = fopen(path, "re");
	if (!f)
		return;
	if (fgets(comm, (int)len, f))
		comm[strcspn(comm, "\n")] = 0;
	fclose(f);
}

/* A process (not this one) with the file @st names open, a pinfs program
 * (the daemon, fsck, mkfs: the pool lock's holders) preferred over a
 * client that has it mapped; 0 if none is seen. /proc/locks would name the
 * process that took the lock, which for a daemon is the parent it left at
 * fuse_daemonize(). Only on the refusal path: it reads every process's
 * fds. */
static uint32_t pool_user(const struct stat *st, char *comm, size_t len)
{
	uint32_t self = (uint32_t)getpid(), any = 0, found = 0;
	struct dirent *d;
	DIR *proc = opendir("/proc");

	if (!proc)
		return 0;
	while (!found && (d = readdir(proc))) {
		char path[64], *end;
		unsigned long pid = strtoul(d->d_name, &end, 10);
		struct dirent *e;
		DIR *fds;

		if (*end || !pid || pid > UINT32_MAX || (uint32_t)pid == self)
			continue;
		snprintf(path, sizeof(path), "/proc/%lu/fd", pid);
		fds = opendir(path);
		if (!fds)
			continue;
		while ((e = readdir(fds))) {
			struct stat fst;

			if (e->d_name[0] == '.' ||
			    fstatat(dirfd(fds), e->d_name, &fst, 0) < 0 ||
			    fst.st_dev != st->st_dev || fst.st_ino != st->st_ino)
				continue;
			pid_comm((uint32_t)pid, comm, len);
			if (!strcmp(comm, "pinfs") || !strcmp(comm, "fsck.pinfs") ||
			    !strcmp(comm, "mkfs.pinfs"))
				found = (uint32_t)pid;
			else if (!any)
				any = (uint32_t)pid;
			break;
		}
		closedir(fds);
	}
	closedir(proc);
	if (!found && any)
		pid_comm(any, comm, len);
	return found ? found : any;
}

uint32_t pm_pool_user_of(const char *path, char *comm, size_t len)
{
	struct stat st;

	if (len)
		comm[0] = '\0';
	if (stat(path, &st) < 0)
		return 0;
	return pool_user(&st, comm, len);
}

/*
 * The mount points (", "-separated, into @out) of pool @path as this
 * process sees them: /proc/self/mountinfo entries of type fuse.pinfs whose
 * source is "pinfs:" and the pool's real path (what the daemon names it).
 * Reads no file of the mount: a hung daemon cannot hang fsck (or a
 * mount). How many.
 */
int pm_pool_mounts(const char *path, char *out, size_t size)
{
	char real[PATH_MAX], *line = NULL;
	size_t cap = 0, used = 0;
	int n = 0;
	FILE *f;

	out[0] = '\0';
	if (!realpath(path, real) || !(f = fopen("/proc/self/mountinfo", "re")))
		return 0;
	while (getline(&line, &cap, f) > 0) {
		char *mp, *sep, *fstype, *src, *save = NULL;
		int field = 0;

		mp = NULL;
		for (char *t = strtok_r(line, " \n", &save); t && field < 5;
		     t = strtok_r(NULL, " \n", &save))
			if (++field == 5)
				mp = t;
		sep = mp ? strtok_r(NULL, " \n", &save) : NULL;
		while (sep && strcmp(sep, "-"))
			sep = strtok_r(NULL, " \n", &save); /* optional fields */
		fstype = sep ? strtok_r(NULL, " \n", &save) : NULL;
		src = fstype ? strtok_r(NULL, " \n", &save) : NULL;
		if (!src || strcmp(fstype, "fuse.pinfs") || strncmp(src, "pinfs:", 6))
			continue;
		mountinfo_unescape(src);
		if (strcmp(src + 6, real))
			continue;
		mountinfo_unescape(mp);
		if (used + strlen(mp) + 3 < size) {
			used += (size_t)snprintf(out + used, size - used, "%s%s", n ? ", " : "", mp);
			n++;
		}
	}
	free(line);
	fclose(f);
	return n;
}

/*
 * One user at a time: two daemons (or a daemon and fsck) on one pool would
 * corrupt it. The lock goes away with the process, even on SIGKILL. With
 * @wait, a lock still held is waited for up to PM_POOL_LOCK_WAIT_MS: a
 * daemon whose mount was just unmounted is still writing its clean
 * superblock (tens of ms after umount returns), and a script that remounts
 * at once must not fail for it. 0, -EBUSY or -errno, with a message.
 */
static int pool_lock(const char *path, int fd, const struct stat *st, bool wait, char *err,
		     size_t errlen)
{
	unsigned waited = 0;
	uint32_t pid;
	char comm[32] = "", mps[1024];
	int n;

	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int rc = -errno;

		if (rc != -EWOULDBLOCK && rc != -EINTR) {
			pm_errmsg(err, errlen, "cannot lock pool: %s", strerror(-rc));
			return rc;
		}
		/* a daemon that still serves the pool in a mount: waiting for
		 * it is pointless, say where it is at once (as fsck.pinfs) */
		if (wait && !waited && (pid = pool_user(st, comm, sizeof(comm))) &&
		    !strcmp(comm, "pinfs") && (n = pm_pool_mounts(path, mps, sizeof(mps))) > 0) {
			pm_errmsg(err, errlen, "pool is already mounted at %s by the pinfs daemon "
				  "(pid %u): unmount it first (fusermount3 -u %s)", mps, pid,
				  n == 1 ? mps : "MOUNTPOINT");
			return -EBUSY;
		}
		if (wait && waited < PM_POOL_LOCK_WAIT_MS) {
			usleep(10000);
			waited += 10;
			continue;
		}
		pid = pool_user(st, comm, sizeof(comm));
		if (pid && waited)
			pm_errmsg(err, errlen, "pool is in use by another pinfs process (pid %u, %s): "
				  "it still held the pool %u ms later", pid, comm, waited);
		else if (pid)
			pm_errmsg(err, errlen, "pool is in use by another pinfs process (pid %u, %s)",
				  pid, comm);
		else
			pm_errmsg(err, errlen, "pool is in use by another pinfs process");
		return -EBUSY;
	}
	return 0;
}

int pm_pool_open_flags(const char *path, unsigned flags, struct pm_pool **out, char *err,
		       size_t errlen)
{
	struct pm_persist_ops ops;
	bool rdonly = flags & PM_POOL_RDONLY;
	size_t mapped;
	int is_pmem = 0, rc;
	void *base;
	struct stat st;
	int fd = open(path, (rdonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);

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
	rc = pool_lock(path, fd, &st, flags & PM_POOL_WAIT_LOCK, err, errlen);
	if (rc) {
		close(fd);
		return rc;
	}
	if (rdonly) {
		base = map_rdonly(fd, path, flags & PM_POOL_PRIVATE, &mapped, err, errlen);
	} else {
		base = pmem_map_file(path, 0, 0, 0, &mapped, &is_pmem);
		if (!base)
			pm_errmsg(err, errlen, "cannot map pool %s: %s", path, pmem_errormsg());
	}
	if (!base) {
		rc = -(errno ? errno : EIO);
		close(fd);
		return rc;
	}
	if (!rdonly)
		pm_persist_ops_libpmem(&ops, is_pmem);
	if (!rdonly)
		flags &= ~PM_POOL_PRIVATE;
	rc = pool_new(base, mapped, flags,
		      (flags & PM_POOL_PRIVATE) ? &private_ops : rdonly ? NULL : &ops, out, err,
		      errlen);
	if (rc) {
		close(fd);
		if (rdonly)
			munmap(base, mapped);
		else
			pmem_unmap(base, mapped);
		return rc;
	}
	(*out)->size = mapped;
	(*out)->is_pmem = is_pmem;
	(*out)->owns_mapping = true;
	(*out)->rdonly = rdonly;
	(*out)->fd = fd;
	(*out)->sparse = S_ISREG(st.st_mode);
	snprintf((*out)->path, sizeof((*out)->path), "%s", path);
	pm_persist_ops_libpmem(&(*out)->ops, is_pmem);
	if (flags & PM_POOL_PRIVATE) {
		/* the replay, if any, is done: from now on a stray store
		 * faults, as in any read-only open */
		(*out)->ops = private_ops;
		if (mprotect(base, mapped, PROT_READ) != 0) {
			rc = -errno;
			pm_errmsg(err, errlen, "cannot protect the mapping of pool %s: %s", path,
				  strerror(-rc));
			pm_pool_close(out);
			return rc;
		}
	}
	return 0;
}

bool pm_pool_data(const struct pm_pool *p, uint64_t off, uint64_t end, uint64_t *dstart,
		  uint64_t *dend)
{
	off_t d, h;

	if (off >= end)
		return false;
	*dstart = off;
	*dend = end;
	if (p->fd < 0 || !p->sparse)
		return true;
	d = lseek(p->fd, (off_t)off, SEEK_DATA);
	if (d < 0)
		return errno != ENXIO; /* ENXIO: nothing but hole from @off on */
	if ((uint64_t)d >= end)
		return false;
	h = lseek(p->fd, d, SEEK_HOLE);
	*dstart = (uint64_t)d;
	if (h >= 0 && (uint64_t)h < end)
		*dend = (uint64_t)h;
	return true;
}

int pm_pool_read(const struct pm_pool *p, uint64_t off, void *buf, uint64_t len)
{
	uint64_t end = off + len, s, e;

	if (!pm_range_ok(off, len, p->size))
		return -EINVAL;
	while (pm_pool_data(p, off, end, &s, &e)) {
		char *dst = (char *)buf + (s - (end - len));

		if (p->fd < 0 || !p->sparse) {
			memcpy(dst, (const char *)p->base + s, e - s);
		} else {
			uint64_t done = 0;

			while (done < e - s) {
				ssize_t n = pread(p->fd, dst + done, e - s - done, (off_t)(s + done));

				if (n < 0 && errno == EINTR)
					continue;
				if (n <= 0)
					return n < 0 ? -errno : -EIO;
				done += (uint64_t)n;
			}
		}
		off = e;
	}
	return 0;
}

void pm_pool_close(struct pm_pool **pp)
{
	struct pm_pool *p = *pp;

	if (!p)
		return;
	if (p->owns_mapping && p->rdonly)
		munmap(p->base, p->size);
	else if (p->owns_mapping)
		pmem_unmap(p->base, p->size);
	free(p->sb_copy);
	if (p->fd >= 0)
		close(p->fd);
	free(p);
	*pp = NULL;
}

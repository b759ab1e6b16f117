/* SPDX-License-Identifier: MIT */
/*
 * pmem/pool.h -- a mapped pinfs pool: geometry, mkfs, open and validation.
 * Knows nothing of files or directories; pmem/fs.h builds on it.
 */
#ifndef PINFS_PMEM_POOL_H
#define PINFS_PMEM_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "pmem/layout.h"
#include "pmem/persist.h"

#define PM_POOL_MIN_SIZE (8ull << 20)
#define PM_POOL_MAX_SIZE (1ull << 46) /* 64 TiB */
#define PM_POOL_DEFAULT_SIZE (256ull << 20)

/* A mapped pool. Immutable after open, except through the journal. */
struct pm_pool {
	void *base;		   /* mapping of the whole pool */
	uint64_t size;		   /* bytes mapped */
	bool is_pmem;		   /* pmem_is_pmem() said yes */
	bool owns_mapping;	   /* unmap at close (false for test images) */
	int fd;			   /* the pool file, -1 for in-memory images */
	struct pm_persist_ops ops; /* the persistence seam */
	struct pm_super *sb;	   /* == base, or sb_copy (PM_POOL_BACKUP_SB) */
	struct pm_super *sb_copy;  /* the backup superblock, in DRAM, while the
				    * primary is corrupt; NULL otherwise */
	bool rdonly;		   /* mapped PROT_READ (PM_POOL_RDONLY) */
	bool sparse;		   /* a regular file: its holes read as zeros and
				    * lseek(SEEK_DATA) finds them (pm_pool_data) */
	char path[4096];	   /* as given at open */
	/* the open found the primary superblock torn and replayed the
	 * committed journal transaction that rewrites it (in a private view
	 * with PM_POOL_PRIVATE): its record count and bytes of records */
	bool torn_replayed;
	uint32_t torn_nrecs;
	uint64_t torn_len;
};

struct pm_mkfs_opts {
	uint64_t size;	   /* bytes, rounded down to a block multiple */
	uint64_t ninodes;  /* 0: one per 8 KiB of pool */
	uint64_t features; /* PM_FEAT_INCOMPAT_* */
	bool force;	   /* overwrite what the target holds (see pm_mkfs) */
	FILE *warn;	   /* where a warning line goes (a pool larger than the
			    * free space of its file system); NULL: nowhere */
	uint64_t compat;   /* extra PM_FEAT_COMPAT_* (PM_FEAT_COMPAT_EXPERIMENTAL);
			    * the backup superblock is always set */
};

/* Computes the region layout of a pool of @size bytes, @ninodes inodes
 * (0: default) and incompat features @incompat into @sb. */
int pm_geometry(struct pm_super *sb, uint64_t size, uint64_t ninodes, uint64_t incompat);

/* Formats @path (created if missing) and writes an empty root directory.
 * Writes nothing until every check has passed. Into a regular file it
 * writes only the blocks that are not zeros (about 1 MiB per TiB of pool;
 * the rest is a hole), once its file system is known to have room for them
 * and for the first mount's journal blocks (else -ENOSPC, the message naming
 * both figures; a file mkfs created is removed). Returns 0; -EEXIST, unless
 * o->force, if it holds anything (a pinfs pool, another file's data, a
 * device), an empty or all-hole file being the exception; even with
 * o->force, -EBUSY while a pinfs process holds the pool lock or the pool's
 * holder record names a live process, -ENODEV/-EISDIR/-EINVAL for what
 * cannot hold a pool (a character device that is not DAX, a directory, a
 * FIFO); or -errno. One line for the user, starting with @path where it is
 * about what is there, is left in @err. */
int pm_mkfs(const char *path, const struct pm_mkfs_opts *o, char *err, size_t errlen);

/* Formats an in-memory image (tests). Whatever it held is cleared. */
int pm_mkfs_mem(void *base, uint64_t size, const struct pm_mkfs_opts *o,
		const struct pm_persist_ops *ops);

/* pm_pool_open_flags() flags */
#define PM_POOL_RDONLY 0x1u    /* open and map read-only: nothing can be written */
#define PM_POOL_BACKUP_SB 0x2u /* fsck: a corrupt primary superblock: use the
				* backup (a DRAM copy in pool->sb_copy) if it is
				* intact; a primary whose only fault is a counter
				* out of range (pm_super_check_layout) is used as
				* it is, for fsck to recompute */
#define PM_POOL_PRIVATE 0x8u   /* with PM_POOL_RDONLY (fsck -n): the mapping is
				* private copy-on-write over a read-only file
				* descriptor, so a journal replay can be
				* simulated in it (what would it leave?) while
				* nothing reaches the pool; flushes are no-ops */
#define PM_POOL_WAIT_LOCK 0x4u /* a pool in use: wait up to PM_POOL_LOCK_WAIT_MS
				* for its user to let go (a daemon exiting) */
#define PM_POOL_LOCK_WAIT_MS 5000u

/*
 * The first stretch at or after @off, below @end, of pool bytes that may be
 * anything but zeros, as [*dstart, *dend); false if [off, end) reads as
 * zeros. A hole of a pool file reads as zeros without being touched: a
 * reader that skips it never allocates its backing (a read fault on a hole
 * of a tmpfs file allocates a page, so scanning a 1 TiB pool's 32 GiB
 * inode table through the mapping would fill the memory holding it).
 * A device or an in-memory image is all data, and so is the rest of a file
 * whose holes lseek(SEEK_DATA) cannot find.
 */
bool pm_pool_data(const struct pm_pool *p, uint64_t off, uint64_t end, uint64_t *dstart,
		  uint64_t *dend);

/* Copies pool bytes [off, off + len) to @buf, which the caller has zeroed
 * (calloc): the parts that are holes are left alone and nothing of the
 * backing is allocated (pread on a file, which reads a hole without
 * filling it). 0 or -errno. */
int pm_pool_read(const struct pm_pool *p, uint64_t off, void *buf, uint64_t len);

/* Maps and validates @path. On failure returns -errno (-EUCLEAN for a corrupt
 * or foreign pool, -EPROTONOSUPPORT for a newer version) and leaves one line
 * for the user in @err. */
int pm_pool_open(const char *path, struct pm_pool **out, char *err, size_t errlen);
/* The same with PM_POOL_* @flags (fsck). Without PM_POOL_BACKUP_SB a pool
 * whose primary is corrupt is refused, and the message says whether the
 * backup is intact (or that fsck recomputes the counters at fault). */
int pm_pool_open_flags(const char *path, unsigned flags, struct pm_pool **out, char *err,
		       size_t errlen);
/* Validates the superblock again (after a journal replay rewrote it): the
 * primary if it checks out (or only its counters are out of range, which
 * fsck recomputes), else an intact backup as PM_POOL_BACKUP_SB. 0 or -errno
 * with a message. */
int pm_pool_reload_super(struct pm_pool *p, char *err, size_t errlen);

/* Wraps an in-memory image with the given ops (tests, crash images). */
int pm_pool_open_mem(void *base, uint64_t size, const struct pm_persist_ops *ops,
		     struct pm_pool **out, char *err, size_t errlen);

int pm_pool_open_mem_flags(void *base, uint64_t size, const struct pm_persist_ops *ops,
			   unsigned flags, struct pm_pool **out, char *err, size_t errlen);

void pm_pool_close(struct pm_pool **pp);
/* The process that has pool @path open (a pinfs daemon, fsck.pinfs or
 * mkfs.pinfs before any other), with its command name in @comm; 0 if none
 * is found (reads /proc: another user's processes may be invisible). */
uint32_t pm_pool_user_of(const char *path, char *comm, size_t len);
/* The mount points (", "-separated, into @out) of pool @path as this
 * process sees them in /proc/self/mountinfo (fuse.pinfs, source "pinfs:"
 * and the pool's real path); how many. Reads no file of the mounts. */
int pm_pool_mounts(const char *path, char *out, size_t size);

/* Where @sb's backup superblock lies in the image at @base. */
static inline struct pm_super *pm_backup_ptr(void *base, const struct pm_super *sb)
{
	return (struct pm_super *)((char *)base + (pm_backup_sb_block(sb) << PM_BLOCK_SHIFT));
}

/* Checks a superblock against the size of what holds it; 0 or -errno with a
 * message, as pm_pool_open(). */
int pm_super_check(const struct pm_super *sb, uint64_t avail, char *err, size_t errlen);
/* pm_super_check() but for the fields fsck recomputes from the rest of the
 * pool: the free counters and the orphan head. A superblock that passes
 * this is one fsck can check and repair in place; the engine mounts only
 * one that passes pm_super_check(). */
int pm_super_check_layout(const struct pm_super *sb, uint64_t avail, char *err, size_t errlen);

uint32_t pm_super_csum(const struct pm_super *sb);

/*
 * The superblock's errors flag (pm_super.errors, PM_SB_ERR_*). The engine
 * sets it when it meets a state the format forbids; a pool with it set is
 * refused at mount (read-only when forced) until fsck.pinfs --repair has
 * checked the pool and cleared it. Both store the field, recompute the
 * checksum and persist the superblock at once, outside the journal: the
 * engine's next commit writes its copy, which has the flag too.
 */
void pm_super_set_errors(struct pm_pool *pool, uint32_t flags);
void pm_super_clear_errors(struct pm_pool *pool);

/* Does [off, off + len) lie inside [0, limit)? Written so that nothing
 * wraps: use it for every offset and length read from the pool. */
static inline bool pm_range_ok(uint64_t off, uint64_t len, uint64_t limit)
{
	return off <= limit && len <= limit - off;
}

static inline void *pm_block_ptr(const struct pm_pool *p, uint64_t blk)
{
	return (char *)p->base + (blk << PM_BLOCK_SHIFT);
}

/* /proc/PID/stat starttime of process @pid in *ticks: 0, or -errno when it
 * is gone (or /proc cannot say). With the pid, it names one process for as
 * long as the machine runs: a reused pid has a later start time. */
int pm_pid_start_ticks(uint32_t pid, uint64_t *ticks);

/* The pid of the first process in @sb's holder record that is still alive
 * (same pid, same start time), or 0 if none is. Such a process may still
 * store into the pool through its mapping. @sb must have passed
 * pm_super_check_layout() (or pm_super_check()), which bounds npinholders. */
uint32_t pm_super_live_holder(const struct pm_super *sb);

/* Leaves a one-line message for the user in @err (may be NULL). */
void pm_errmsg(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));


#endif

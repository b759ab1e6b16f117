/* SPDX-License-Identifier: MIT */
/*
 * pmem/fs.h -- the pinfs file system engine: POSIX objects (inodes,
 * directories, block maps, xattrs) on a pool, every metadata change a journal
 * transaction. It knows nothing of FUSE or leases: fusefs/ calls it, and
 * fsck and the crash tests drive it directly.
 *
 * Errors: every fallible function returns 0 (or a count) or -errno.
 * Inode references: pm_iget() and every function that hands out a
 * struct pm_inode * take a reference, pm_iput() drops it. An inode whose link
 * count dropped to 0 is freed at its last pm_iput() (or, after a crash, at the
 * next mount).
 */
#ifndef PINFS_PMEM_FS_H
#define PINFS_PMEM_FS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "pmem/pool.h"

struct pm_fs;
struct pm_inode;

/* Who is asking: used for ownership of new inodes and POSIX checks the
 * kernel cannot make for us (chown to a supplementary group, suid clearing).
 * @umask: taken out of a new object's mode, unless its directory has a
 * default ACL (POSIX.1e); 0 when the caller's kernel has already applied
 * it. */
struct pm_cred {
	uid_t uid;
	gid_t gid;
	int ngroups;
	const gid_t *groups;
	mode_t umask;
};

/* Mounts the file system on @pool: replays the journal, frees orphans,
 * marks the pool not-clean. Returns 0 or -errno with a message in @err. */
int pm_fs_mount(struct pm_pool *pool, struct pm_fs **out, char *err, size_t errlen);
/*
 * pm_fs_mount() with @flags. Without PM_MOUNT_FORCE a pool is refused with
 * -EUCLEAN and one line naming the problem and the fsck.pinfs command when
 * its errors flag is set, or when the read-only check of pmem/fsck.c finds
 * any problem after recovery. PM_MOUNT_FORCE serves such a pool anyway,
 * read-only if its errors flag is set, after walking every block map: a
 * block that two owners claim (or that the bitmap calls free, or a map that
 * points outside the data area or holds other than the inode's block count)
 * makes its owners unreadable (-EUCLEAN), and no block a map names is ever
 * handed out, whatever the bitmap says. Without it, the check has compared
 * the bitmap with every map already.
 */
#define PM_MOUNT_FORCE 0x1u
/* PM_MOUNT_DENSE: keep free space backed by zeroed pages (backing.c, "dense
 * pools"), when the backing allows. */
#define PM_MOUNT_DENSE 0x2u
int pm_fs_mount_flags(struct pm_pool *pool, unsigned flags, struct pm_fs **out, char *err,
		      size_t errlen);
/* Is the pool dense (PM_MOUNT_DENSE taken up)? If asked and not, *@why
 * says why (NULL: not asked); *@zeroed: free blocks backed by zeroed pages;
 * *@pending: free blocks to be, once the pool is idle (the mount's free
 * space, blocks freed since, whether cut out of the pool file yet or not). */
bool pm_fs_dense(struct pm_fs *fs, const char **why, uint64_t *zeroed, uint64_t *pending);
/* Has the engine found the pool corrupt (errors flag)? Then every change
 * fails with -EROFS: the mount serves reads only. */
bool pm_fs_errors(struct pm_fs *fs);
/*
 * SIGBUS from the pool mapping (backing.c): what the allocation of the
 * backing before each store (ENOSPC) cannot prevent, a pool file truncated
 * underneath the daemon or a poisoned line of persistent memory. The
 * daemon's SIGBUS handler asks pm_fault_catch(), which is async-signal-safe:
 * for an address inside the mapping of the watched mount it maps a zero
 * page over the faulting page (the access completes: loads read zeros,
 * stores are lost), stops every change of the file system (-EROFS, like a
 * corrupt pool) and counts the fault on the calling thread, whose request
 * then answers EIO (pm_fault_take). Returns false for any other address: a
 * real crash.
 */
void pm_fault_watch(struct pm_fs *fs);
bool pm_fault_catch(void *addr, uint64_t *off);
/* Faults the calling thread met since its last call (0 almost always). The
 * first time a fault is seen, the errors flag also goes to the superblock
 * (if fs->lock can be had without waiting; else at unmount). */
unsigned pm_fault_take(void);
/* Does [p, p + len) overlap a pool page a fault replaced (its bytes are
 * lost: zeros now)? A reply must not pass them off as a file's data. */
bool pm_fault_lost(const void *p, size_t len);
/* Faults the calling thread met and has not taken yet. */
unsigned pm_fault_pending(void);
/* Faults met since the mount (all threads). */
uint64_t pm_fault_count(void);
/* Is @p inside the watched pool mapping? */
bool pm_fault_in_pool(const void *p);

/* Persists pending timestamps, marks the pool clean and frees @*fsp. The
 * pool stays open; the caller closes it. */
void pm_fs_unmount(struct pm_fs **fsp);
/* Recovery only (fsck, tests): replays a committed journal transaction.
 * Returns 1 if one was replayed, 0 if none, -EUCLEAN if a committed record
 * is malformed or lies outside the pool (nothing is written then; one line
 * for the user is left in @err, which may be NULL). */
int pm_journal_recover(struct pm_pool *pool, char *err, size_t errlen);

/* Inode references */
int pm_iget(struct pm_fs *fs, uint64_t ino, struct pm_inode **out);
void pm_iput(struct pm_fs *fs, struct pm_inode *ip);
uint64_t pm_ino(const struct pm_inode *ip);
/* FUSE lookup counting: one reference is held while nlookup > 0 */
void pm_lookup_ref(struct pm_fs *fs, struct pm_inode *ip);
void pm_forget(struct pm_fs *fs, uint64_t ino, uint64_t nlookup);
void pm_forget_all(struct pm_fs *fs);

void pm_stat(struct pm_fs *fs, struct pm_inode *ip, struct stat *st);
uint64_t pm_generation(struct pm_fs *fs, struct pm_inode *ip);

/* Namespace. @out receives a referenced inode. */
int pm_lookup(struct pm_fs *fs, struct pm_inode *dir, const char *name, struct pm_inode **out);
int pm_mknod(struct pm_fs *fs, const struct pm_cred *cr, struct pm_inode *dir, const char *name,
	     mode_t mode, dev_t rdev, struct pm_inode **out);
int pm_symlink(struct pm_fs *fs, const struct pm_cred *cr, struct pm_inode *dir, const char *name,
	       const char *target, struct pm_inode **out);
/* An anonymous regular file (O_TMPFILE) for @dir: no name and no link, an
 * orphan from the start (freed at its last pm_iput, or at the next mount
 * after a crash) until pm_link() gives it its first name. */
int pm_tmpfile(struct pm_fs *fs, const struct pm_cred *cr, struct pm_inode *dir, mode_t mode,
	       struct pm_inode **out);
int pm_link(struct pm_fs *fs, struct pm_inode *ip, struct pm_inode *dir, const char *name);
int pm_unlink(struct pm_fs *fs, struct pm_inode *dir, const char *name);
int pm_rmdir(struct pm_fs *fs, struct pm_inode *dir, const char *name);
#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#define RENAME_EXCHANGE (1 << 1)
#endif
#ifndef RENAME_WHITEOUT
#define RENAME_WHITEOUT (1 << 2)
#endif
int pm_rename(struct pm_fs *fs, struct pm_inode *odir, const char *oname, struct pm_inode *ndir,
	      const char *nname, unsigned flags);
/* pm_rename() for caller @cr, which may ask for RENAME_WHITEOUT (with
 * RENAME_NOREPLACE or alone): in the same transaction the old name is
 * given to a new whiteout, the character device 0:0 of mode 0 that
 * overlayfs reads as "deleted here", owned by @cr. */
int pm_rename_as(struct pm_fs *fs, const struct pm_cred *cr, struct pm_inode *odir,
		 const char *oname, struct pm_inode *ndir, const char *nname, unsigned flags);
int pm_readlink(struct pm_fs *fs, struct pm_inode *ip, char *buf, size_t size);

/* Directory listing: calls @fill for each entry from cookie @off on (0
 * starts with "." and ".."); @fill returns non-zero to stop (buffer full),
 * in which case that entry is not consumed. Returns 0 or -errno. */
typedef int (*pm_filldir_t)(void *ctx, const char *name, uint64_t ino, unsigned type,
			    uint64_t next_off);
int pm_readdir(struct pm_fs *fs, struct pm_inode *dir, uint64_t off, pm_filldir_t fill, void *ctx);

/* setattr */
#define PM_SET_MODE 0x01u
#define PM_SET_UID 0x02u
#define PM_SET_GID 0x04u
#define PM_SET_SIZE 0x08u
#define PM_SET_ATIME 0x10u
#define PM_SET_MTIME 0x20u
#define PM_SET_ATIME_NOW 0x40u
#define PM_SET_MTIME_NOW 0x80u
#define PM_SET_CTIME 0x100u
/* clears setuid, and setgid with group execute, unless the caller is root:
 * what a truncate by an unprivileged caller does (the kernel asks for it
 * with a mode change, except on an O_TRUNC open, which it leaves to us) */
#define PM_SET_KILL_PRIV 0x200u
/* clears setuid, and setgid with group execute, whoever the caller (not on
 * a directory): the kernel decided (a chown, or FUSE_HANDLE_KILLPRIV_V2's
 * FATTR_KILL_SUIDGID: it checked CAP_FSETID itself) */
#define PM_SET_KILL_SUIDGID 0x400u
struct pm_setattr {
	unsigned valid; /* PM_SET_* */
	mode_t mode;
	uid_t uid;
	gid_t gid;
	uint64_t size;
	struct timespec atime, mtime, ctime;
};
int pm_setattr(struct pm_fs *fs, const struct pm_cred *cr, struct pm_inode *ip,
	       const struct pm_setattr *sa);

/* Data. pm_read_begin() takes the inode's data lock shared and a reference,
 * and describes [off, off+len) as iovecs pointing into the pool (holes point
 * at a shared zero buffer); the bytes stay valid and the blocks cannot be
 * freed until pm_read_end(), which must follow every non-negative return
 * (and may be the last reference: @ip is gone after it). Returns the number
 * of iovecs (0 at or past EOF) or -errno; *bytes gets the length covered. */
int pm_read_begin(struct pm_fs *fs, struct pm_inode *ip, uint64_t off, size_t len,
		  struct iovec *iov, int maxiov, size_t *bytes);
void pm_read_end(struct pm_fs *fs, struct pm_inode *ip);
/* Copies @n iovecs of source data to the file at @off. Returns bytes written
 * or -errno (-ENOSPC, -EFBIG). A write by anyone but root clears the
 * setuid bit, and setgid with group execute, as the kernel's
 * file_remove_privs() would. */
ssize_t pm_write(struct pm_fs *fs, const struct pm_cred *cr, struct pm_inode *ip, uint64_t off,
		 const struct iovec *src, int n);
/* pm_write() that also says, in *@killed, whether it cleared those bits or
 * dropped the file's capabilities (security.capability, before the bytes):
 * the one attribute a write changes that the kernel does not mark stale in
 * its cache by itself (it does size, mtime, ctime and blocks). */
ssize_t pm_write_kill(struct pm_fs *fs, const struct pm_cred *cr, struct pm_inode *ip,
		      uint64_t off, const struct iovec *src, int n, bool *killed);
/* fallocate modes as in <linux/falloc.h> */
int pm_fallocate(struct pm_fs *fs, struct pm_inode *ip, int mode, uint64_t off, uint64_t len);
/* The size to @size if that is larger (PINFS_IOC_GROW); 0 or -errno. */
int pm_grow(struct pm_fs *fs, struct pm_inode *ip, uint64_t size);
/* Frees the file's blocks from its EOF (rounded up to a block) to byte
 * @end: preallocation its writer no longer needs. Never a byte inside the
 * size; the blocks are asked of the pins as a hole punch's are (may_free);
 * timestamps are left alone. Takes ip->rw exclusive and fs->lock. */
int pm_trim_eof(struct pm_fs *fs, struct pm_inode *ip, uint64_t end);
/* Makes the file's data and metadata durable. */
int pm_fsync(struct pm_fs *fs, struct pm_inode *ip, bool datasync);
/* Makes everything durable. */
int pm_syncfs(struct pm_fs *fs);
/* SEEK_DATA / SEEK_HOLE; returns the offset or -ENXIO */
int64_t pm_lseek(struct pm_fs *fs, struct pm_inode *ip, uint64_t off, int whence);

/* Extended attributes; get/list return the size (or -ERANGE when @size is
 * too small and non-zero). */
ssize_t pm_getxattr(struct pm_fs *fs, struct pm_inode *ip, const char *name, void *buf,
		    size_t size);
ssize_t pm_listxattr(struct pm_fs *fs, struct pm_inode *ip, char *buf, size_t size);
int pm_setxattr(struct pm_fs *fs, struct pm_inode *ip, const char *name, const void *value,
		size_t size, int flags);
int pm_removexattr(struct pm_fs *fs, struct pm_inode *ip, const char *name);
/*
 * POSIX ACLs are the xattrs of pmem/acl.h. Setting one keeps the mode in
 * step, in the same transaction: an access ACL sets the permission bits
 * (and is not stored when they say all of it), and a caller @cr that is
 * neither root nor in the file's group loses its set-group-ID bit; a
 * default ACL is for directories only (-EACCES). pm_setxattr() and
 * pm_removexattr() on these names do the same without the group check.
 * chmod (pm_setattr) rewrites the access ACL; pm_mknod() applies the
 * directory's default ACL. -EINVAL: not a valid ACL.
 */
int pm_set_acl(struct pm_fs *fs, const struct pm_cred *cr, struct pm_inode *ip, const char *name,
	       const void *value, size_t size, int flags);

void pm_statfs(struct pm_fs *fs, struct statvfs *st);

/*
 * Pins: the engine asks, the lease manager decides (lease/lease.h).
 *  may_free   called with the file's data lock held exclusive (and no other
 *             engine lock) before file blocks [first, first+n) of @ip are
 *             freed by truncate or hole punch; 0 lets it go ahead, -errno
 *             fails the operation unchanged. May sleep.
 *  pinned     called under the engine's metadata lock when a freed block is
 *             about to become allocatable: if it is still pinned it is
 *             quarantined instead, until pm_unquarantine().
 */
/* A run of pool blocks [start, start + n). */
struct pm_run {
	uint64_t start, n;
};

struct pm_pin_hooks {
	int (*may_free)(void *ctx, struct pm_inode *ip, uint64_t first, uint64_t n);
	bool (*pinned)(void *ctx, uint64_t pblk);
	/* optional: whether @pblk is pinned (*@pinned), and how many blocks
	 * from it, at most @n (>= 1), are the same; one lookup for a run */
	uint64_t (*pinned_span)(void *ctx, uint64_t pblk, uint64_t n, bool *pinned);
	/* calls @fn for each file block range of @ino under a live write pin */
	void (*write_pinned)(void *ctx, uint64_t ino,
			     void (*fn)(void *arg, uint64_t first, uint64_t n), void *arg);
	/* inode @ino is destroyed and its number free for reuse */
	void (*ino_gone)(void *ctx, uint64_t ino);
	/* every run of pool blocks that a process other than the daemon maps
	 * now (malloc'd into *@out): 0, or -errno when that cannot be known
	 * (every block then counts as mapped). Reads every process's maps:
	 * the severer calls it once per batch of freed blocks a lease
	 * covered, with no lock held (with fs->lock only when the pool is
	 * full: pm_sever_wait). */
	int (*mappings)(void *ctx, struct pm_run **out, size_t *n);
	void *ctx;
};
void pm_fs_set_pin_hooks(struct pm_fs *fs, const struct pm_pin_hooks *h);
/* For may_free only: drop and retake the data lock it was called with. */
void pm_data_unlock(struct pm_inode *ip);
void pm_data_relock(struct pm_inode *ip);
/* Pool blocks [pblk, pblk+n) are no longer pinned: release the quarantined
 * ones. */
void pm_unquarantine(struct pm_fs *fs, uint64_t pblk, uint64_t n);
/* Blocks held out of use for former holders: freed while pinned, or freed
 * after their lease ended but not yet cut out of the pool file or still
 * mapped by some process (the unsevered ones, pm_sever_counts). */
uint64_t pm_quarantined(struct pm_fs *fs);

/*
 * Severing (pmem/sever.c): a freed block leaves the pool file (PUNCH_HOLE)
 * before it is reused, so a kernel pin that outlived its lease (io_uring
 * fixed buffers, RDMA) keeps an orphaned page, never another file's block.
 */
/* One line for the mount log: what protects a reused block on this backing. */
const char *pm_sever_describe(struct pm_fs *fs);
/* Retries the freed blocks that could not be severed yet (a pinned huge
 * page); takes fs->lock. The flusher calls it every interval. */
void pm_sever_retry(struct pm_fs *fs);
/* At mount: cuts every free block out of the pool file (memory of a sparse
 * pool comes back; pins from before the mount are severed). Takes fs->lock. */
void pm_sever_free_space(struct pm_fs *fs);
/* Blocks cut out before reuse since mount, and freed blocks held back now
 * because they could not be cut out yet or a process still maps them. */
void pm_sever_counts(struct pm_fs *fs, uint64_t *severed, uint64_t *unsevered);

/* Records in the superblock, durably (one transaction), the processes that
 * hold pins: they map the pool file itself and may go on storing into it
 * after the daemon is gone, so the next mount must wait for them. Cleared
 * by pm_fs_mount(). */
void pm_fs_persist_pinholders(struct pm_fs *fs, const struct pm_pinholder *h, unsigned n);

/* One physically contiguous run of a pinned range (file and pool blocks). */
struct pm_seg {
	uint64_t fblk, pblk, n;
};
/*
 * Pins file blocks [first, first+n): allocates holes (zeroed, 2 MiB aligned
 * where possible), then calls @cb with the runs while holding the file's
 * data lock, so no truncate can come between. @flags: PM_PIN_WRITE (the
 * blocks become dirty), PM_PIN_NOALLOC (the caller may not allocate in this
 * file: a hole in the range is -EACCES, and nothing is allocated). Returns
 * @cb's result or -errno (-EINVAL past EOF, -ENOSPC, -EACCES).
 */
#define PM_PIN_WRITE 0x1u
#define PM_PIN_NOALLOC 0x2u
/* with PM_PIN_NOALLOC: blocks past EOF may be pinned too (allocated ones,
 * fallocate KEEP_SIZE: a hole there is EACCES as anywhere) */
#define PM_PIN_PASTEOF 0x4u
typedef int (*pm_pin_cb)(void *ctx, const struct pm_seg *segs, size_t nsegs);
int pm_pin_blocks(struct pm_fs *fs, struct pm_inode *ip, uint64_t first, uint64_t n,
		  unsigned flags, pm_pin_cb cb, void *ctx);

/*
 * Writeback (pmem/writeback.c). A data block is dirty from the moment it is
 * written (or write-pinned) until writeback has made it durable and, on a
 * checksummed pool, recorded its CRC32C: then it is clean. The background
 * flusher makes dirty blocks older than dirty_expire durable every
 * interval seconds, skipping pinned blocks; fsync/syncfs/unmount make every
 * dirty block and every write-pinned block of the file durable, and leave the
 * pinned ones dirty (the holder may store again at any moment).
 */
struct pm_wb_stats {
	uint64_t dirty;		    /* blocks dirty now */
	uint64_t clean;		    /* allocated data blocks not dirty */
	uint64_t flushed_background; /* blocks made durable by the flusher */
	uint64_t flushed_integrity;  /* ... by fsync, syncfs, unmount, eviction */
	uint64_t flushed_write;	    /* ... by write() itself, before it returned */
	uint64_t pinned_kept_dirty;  /* pinned blocks flushed but kept dirty */
	uint64_t pinned_skipped;     /* pinned blocks the flusher skipped */
	uint64_t csum_failures;	    /* reads or scrubs that found a bad CRC */
};
void pm_fs_start_flusher(struct pm_fs *fs, double interval_s, double expire_s);
/* Stops the flusher (idempotent); unmount does it too. */
void pm_flusher_stop(struct pm_fs *fs);
/* One background pass now (tests): flushes blocks dirty for >= expire_s. */
void pm_writeback_pass(struct pm_fs *fs, double expire_s);
void pm_inode_wb_stats(struct pm_fs *fs, struct pm_inode *ip, struct pm_wb_stats *st);
void pm_fs_wb_stats(struct pm_fs *fs, struct pm_wb_stats *st);

struct pm_scrub {
	uint64_t files, checked, bad, skipped_dirty, skipped_pinned, skipped_nocsum;
	uint64_t first_bad_ino, first_bad_off;
};
/* Verifies every clean block of @ip (or, with @ip NULL, of every file) against
 * its checksum; -EOPNOTSUPP on a pool without checksums. */
int pm_scrub(struct pm_fs *fs, struct pm_inode *ip, struct pm_scrub *res);

/* Test hooks: deliberately wrong writers for the crash-consistency test */
#define PM_DEBUG_SKIP_BODY_PERSIST 0x1u	 /* journal body never flushed */
#define PM_DEBUG_SKIP_APPLY_PERSIST 0x2u /* in-place updates never flushed */
#define PM_DEBUG_SMALL_TX 0x4u		 /* hole fills commit in small parts */
/* planted ordering bugs (scripts/crash-states --self-test must catch each) */
#define PM_DEBUG_SKIP_APPLY_FENCE 0x8u	 /* no fence between apply and "empty" */
#define PM_DEBUG_COMMIT_FIRST 0x10u	 /* commit record (checksummed as the body
					  * is then) durable before the body */
#define PM_DEBUG_APPLY_EARLY 0x20u	 /* in-place updates stored before the
					  * commit point, outside the journal */
#define PM_DEBUG_COMMIT_GROWS 0x40u	 /* the commit record grown in place record
					  * by record, each step flushed, one fence
					  * (a valid partial commit is an
					  * intermediate value: crash-states' per
					  * flush values catch it) */
/* Planted recovery bug (tests only; pool-wide, so it is a global): the
 * journal marked EMPTY before its records are applied, so a crash during
 * the replay loses a half-applied transaction (not idempotent). */
#define PM_REPLAY_DEBUG_EMPTY_FIRST 0x1u
extern unsigned pm_replay_debug;
void pm_fs_set_debug(struct pm_fs *fs, unsigned flags);
unsigned pm_fs_debug(const struct pm_fs *fs);

/*
 * Demonstration switches (pinfs -o unsafe=..., pinfs(8)): each turns off one
 * safety rule so that scripts/compare-policies can show what the rule
 * prevents. Allowed only on a pool made with mkfs.pinfs --experimental
 * (PM_FEAT_COMPAT_EXPERIMENTAL); never for data anyone wants to keep.
 */
#define PM_UNSAFE_NO_QUARANTINE 0x1u	 /* freed pinned blocks and blocks a lease
					  * ended on go straight back to the free
					  * list: no quarantine, no taint, never
					  * cut out of the pool file (sever.c) */
#define PM_UNSAFE_MARK_PINNED_CLEAN 0x2u /* integrity writeback marks pinned
					  * blocks clean and checksums them, as
					  * if they were stable (Kara's rule off);
					  * scrub verifies them too */
#define PM_UNSAFE_ALL (PM_UNSAFE_NO_QUARANTINE | PM_UNSAFE_MARK_PINNED_CLEAN)

/* Sets the unsafe switches @flags (PM_UNSAFE_*), before the file system is
 * used (no lock: read without one afterwards). -EPERM, with a message in
 * @err, unless the pool is marked for experiments; -EINVAL for an unknown
 * bit. */
int pm_fs_set_unsafe(struct pm_fs *fs, unsigned flags, char *err, size_t errlen);
unsigned pm_fs_unsafe(const struct pm_fs *fs);
/* "no_quarantine" / "mark_pinned_clean" for one PM_UNSAFE_* bit, NULL else */
const char *pm_unsafe_name(unsigned bit);

/*
 * Integrity writeback of write-pinned blocks (pinfs -o pinned_writeback=,
 * pinfs(8)). SKIP, the default, is Kara's rule as it stands: fsync flushes
 * them but they stay dirty, with no checksum. BOUNCE (checksummed pools
 * only) is Kara's 2019 plan, bounce buffers: fsync also copies each one to
 * a bounce buffer and writes that snapshot to the file's shadow, an unnamed
 * file (an orphan: fsck checks it, the next mount frees it) whose blocks get
 * checksums the ordinary way; the live block stays dirty.
 */
#define PM_PINNED_WB_SKIP 0u
#define PM_PINNED_WB_BOUNCE 1u
/* Before use. -EINVAL (message in @err) for BOUNCE on a pool without
 * checksums. */
int pm_fs_set_pinned_writeback(struct pm_fs *fs, unsigned mode, char *err, size_t errlen);
/* Bounce writeback of @ip's write-pinned blocks (nothing unless BOUNCE);
 * called by pm_fsync with ip->rw held shared and fs->lock not held.
 * Returns the blocks snapshotted, or -errno. */
int pm_bounce_pinned(struct pm_fs *fs, struct pm_inode *ip);

#endif

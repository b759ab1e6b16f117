/* SPDX-License-Identifier: MIT */
/*
 * fusefs/fusefs.h -- the FUSE daemon's shared state.
 *
 * Global lock order (also in README.md), outermost first:
 *
 *	ip->rw  (pmem: a file's data lock)
 *	  fs->lock  (pmem: metadata, journal, allocator, inode cache)
 *	    ip->dlock  (pmem: a file's dirty-block set)
 *	  fs->bounce_lock  (pmem, -o pinned_writeback=bounce: a file's shadow;
 *	    then the shadow's ip->rw, then fs->lock: see pmem/fs_int.h)
 *
 * The event channel's lock (fusefs/evchan.c) is a leaf taken under any of
 * them (a notice is sent from inside a truncate's decision): nothing is
 * done under it but non-blocking send() and close().
 *
 * No lock is held across fuse_reply_*() except ip->rw (shared) while a read
 * reply copies out of the pool: that is what keeps the blocks from being
 * freed mid-copy. It cannot deadlock: the kernel copies into the reader's
 * pages, which a direct-I/O read pinned before sending the request, so the
 * reply never waits on another request of this file system.
 *
 * Not every reply comes from the worker that took the request: a truncate
 * waiting on pins and an EVENTS read waiting for events are parked (ops.c,
 * ioctl.c) and answered later from the lease manager's completion thread,
 * so that no worker sleeps (lease/policy.c).
 */
#ifndef PINFS_FUSEFS_H
#define PINFS_FUSEFS_H

#include <fuse_lowlevel.h>

#include "pmem/fs.h"

struct lease_mgr;
struct lease_cfg;
struct lease_wait;

/* One open file (fi->fh): what the ioctls need to know about it. */
struct ffs_file {
	struct pm_inode *ip; /* holds a reference */
	int flags;	     /* open flags: O_ACCMODE decides write pins */
};

struct ffs {
	struct pm_fs *fs;
	struct pm_pool *pool;
	struct lease_mgr *lm;
	char pool_path[4096]; /* realpath, served as PINFS_XATTR_POOL */
	double timeout; /* entry and attribute cache timeout, seconds */
	int pin_writer; /* -o pin_access=writer: whoever may write a file may pin it */
	int posix_acl;	/* the kernel enforces POSIX ACLs (FUSE_CAP_POSIX_ACL, at INIT) */
	int debug;
	int init_unique_valid;
	uint64_t init_unique; /* the INIT request, for the reply patch */
	/* for notifications (libfuse 3.14 has no fuse_req_session); set once
	 * by main() before the loop starts */
	struct fuse_session *se;
	uint64_t mmap_lost_bytes; /* atomic: see struct pinfs_counters */
	/* the event channel (fusefs/evchan.c), NULL if it could not start; set
	 * by ffs_leases_start(), gone after ffs_leases_stop() */
	struct ffs_evchan *evchan;
	/* PINFS_IOC_STATUS: set once by main() before the loop starts, only
	 * read after that, so no lock. The options in effect but the mount
	 * policy (which PINFS_IOC_SET_POLICY changes: read at each ioctl). */
	char options[2048];
	uint64_t start_mono_ns, start_real_ns; /* when the mount came up */
};

/* -o max_parked default: requests of one user parked at once (lease/policy.c) */
#define FFS_MAX_PARKED 16

extern const struct fuse_lowlevel_ops ffs_ops;
/* Each request as a transport read it (@len bytes from fuse_in_header on),
 * before libfuse sees it: FUSE_TMPFILE becomes the FUSE_CREATE that
 * ffs_create serves as O_TMPFILE (ops.c). */
void ffs_request_fixup(void *buf, size_t len);
/* Requests served per FUSE opcode since the mount (PINFS_IOC_OPS; opcodes
 * from PINFS_OPS_MAX - 1 up share the last slot). ffs_request_fixup counts
 * each request once, whichever transport read it. Locking: none, each slot
 * is a relaxed atomic counter (a snapshot is not one instant). */
extern uint64_t ffs_op_count[];

/* fusefs/ioctl.c */
void ffs_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
	       struct fuse_file_info *fi, unsigned flags, const void *in_buf, size_t in_bufsz,
	       size_t out_bufsz);
int ffs_leases_start(struct ffs *f, const struct lease_cfg *cfg);
void ffs_leases_stop(struct ffs *f);
/* While set (non-NULL), an engine call of this thread that would wait on
 * pins answers -EINPROGRESS instead and keeps its wait in *@wp, for the
 * handler to park the request (ops.c), one of user @uid's parked requests
 * (or, past their bound, refuses); NULL again after the call. */
void ffs_set_wait(struct lease_wait **wp, uint32_t uid);
uint32_t ffs_file_policy(struct ffs *f, struct pm_inode *ip);
/* The file's PINFS_XATTR_WAIT_TIMEOUT in seconds (INFINITY), -1: none. */
double ffs_file_wait_timeout(struct ffs *f, struct pm_inode *ip);
/* fusefs/ops.c: open files (FUSE handles) of @ip in *@file, of the mount
 * in *@mount. Takes the open-files lock. */
void ffs_open_counts(struct pm_inode *ip, uint64_t *file, uint64_t *mount);
/* Tells the kernel to drop its cached attributes of @ino (what stat shows
 * changed behind its back). Touches no page cache, so a request handler may
 * call it; must not hold a pmem or lease lock (it writes to /dev/fuse). */
void ffs_inval_attr(struct ffs *f, uint64_t ino);

/* fusefs/coherent.c: shared mappings coherent with write() (the rules
 * are there). A fill READ (no lock owner) calls ffs_coh_filled() before it
 * reads the pool, then ffs_coh_read(): true when it replied (the range
 * overlaps a pending write). A write to a range ffs_coh_cached() says the
 * kernel may cache a page of goes to ffs_coh_write(), which replies later
 * (@len 0: any page of the file). ffs_coh_released():
 * the inode's last open file is gone. ffs_coh_stop(): after the loop,
 * before the engine is unmounted; ends the connection on @fuse_fd if a
 * worker still waits on the kernel after 2 s. */
void ffs_coh_filled(uint64_t ino, uint64_t off, size_t size);
bool ffs_coh_cached(uint64_t ino, uint64_t off, size_t len);
/* How many files the kernel may cache pages of (plain shared mappings). */
uint64_t ffs_coh_files(void);
bool ffs_coh_read(struct ffs *f, fuse_req_t req, struct pm_inode *ip, uint64_t off, size_t size);
void ffs_coh_write(struct ffs *f, fuse_req_t req, struct pm_inode *ip, const struct pm_cred *cr,
		   uint64_t off, const struct iovec *iov, int n);
void ffs_coh_released(uint64_t ino);
void ffs_coh_stop(int fuse_fd);

/* fusefs/access.c: who may pin and map the pool (the rules are there) */
#define FFS_GROUPS_MAX 1024 /* supplementary groups looked at per caller */
/* May the caller pin file @ip? 0, -EACCES (the pin rule), -EPERM (it could
 * not open the pool for a @write_pin's access). On 0, *may_alloc says
 * whether the pin may fill holes (@fd_writable: the caller's fd is open for
 * writing). */
int ffs_pin_access(fuse_req_t req, struct ffs *f, struct pm_inode *ip, bool write_pin,
		   bool fd_writable, bool *may_alloc);
/* May the caller set @ip's truncate policy (ioctl or xattr)? 0 or -EACCES. */
int ffs_may_set_policy(fuse_req_t req, struct ffs *f, struct pm_inode *ip);
/* the bare suid/sgid kill of a SETATTR that sets nothing: 0 or -EPERM */
int ffs_may_kill_privs(fuse_req_t req, struct ffs *f, struct pm_inode *ip);
/* -o pin_group=GROUP (@group as given, @gid as main.c resolved it before the
 * pool was opened): makes the pool file group @gid, mode 0660. 0, or -errno
 * after one line on stderr saying why not. */
int ffs_pool_share(struct ffs *f, const char *group, gid_t gid);

/* fusefs/dax.c: the dax state file of layout leases (the rules are
 * there). ffs_dax_start: 0 or -errno (then layout pins are EOPNOTSUPP);
 * ffs_dax_path: its path, NULL without one; ffs_dax_slot_new: a slot for
 * new layout lease @id of @ino (0, -EOPNOTSUPP, -ENOMEM); ffs_dax_revoked:
 * lease_ops.layout_revoked; ffs_dax_mapped: @ino's pages may (@on) or may
 * no longer be cached by the kernel (fusefs/coherent.c). */
int ffs_dax_start(struct ffs *f);
void ffs_dax_stop(void);
const char *ffs_dax_path(void);
int ffs_dax_slot_new(uint64_t id, uint64_t ino, bool mmap, uint32_t *slot);
void ffs_dax_unmap_wait(uint64_t ino);
void ffs_dax_revoked(void *ctx, uint64_t id);
void ffs_dax_mapped(uint64_t ino, bool on);
/* fusefs/access.c: may the caller open the pool (for writing too, with
 * @write)? 0 or -EPERM: what a layout pin needs (no pin rule). */
int ffs_pool_access(fuse_req_t req, struct ffs *f, bool write);

/* Custom /dev/fuse I/O (see main.c) */
extern const struct fuse_custom_io ffs_io;

#endif

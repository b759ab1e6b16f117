/* SPDX-License-Identifier: MIT */
/*
 * fusefs/ops.c -- the one fuse_lowlevel_ops table. Each handler turns the
 * request into an engine call (pmem/fs.h) and replies exactly once; this is
 * the only place where an engine -errno becomes a positive FUSE error.
 *
 * Caching: entries and attributes are cached by the kernel for
 * ffs->timeout seconds (every change goes through this daemon, which the
 * kernel sees; what the daemon changes on its own is told: "attributes
 * changed behind the kernel's back" below). File data is never cached by
 * the kernel: every open is
 * FOPEN_DIRECT_IO, so a read() always reaches the pool, including bytes
 * stored through a direct mapping of the pool behind FUSE's back. Shared
 * mmap of such a file still works because main.c negotiates
 * FUSE_DIRECT_IO_ALLOW_MMAP with the kernel.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/fuse.h>

#include "fusefs/fusefs.h"
#include "fusefs/evchan.h"
#include "pinfs/abi.h"
#include "lease/lease.h"
#include "pmem/acl.h"

#define MAX_IOV 1024

static struct ffs *ffs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* The caller's credentials; groups are only fetched when @groups is set. */
struct cred_buf {
	struct pm_cred cr;
	gid_t g[64];
};

static const struct pm_cred *cred_get(fuse_req_t req, struct cred_buf *cb, bool groups)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);

	cb->cr.uid = ctx->uid;
	cb->cr.gid = ctx->gid;
	cb->cr.ngroups = 0;
	cb->cr.groups = cb->g;
	/* FUSE_CAP_DONT_MASK (with ACLs): the engine applies the umask of a
	 * create, unless a default ACL replaces it; else the kernel has */
	cb->cr.umask = ffs_of(req)->posix_acl ? ctx->umask : 0;
	if (groups && ctx->uid != 0) {
		int n = fuse_req_getgroups(req, 64, cb->g);
		cb->cr.ngroups = n < 0 ? 0 : (n > 64 ? 64 : n);
	}
	return &cb->cr;
}

static int iget(fuse_req_t req, fuse_ino_t ino, struct pm_inode **ip)
{
	return pm_iget(ffs_of(req)->fs, ino, ip);
}

static struct ffs_file *file_of(struct fuse_file_info *fi)
{
	return (struct ffs_file *)(uintptr_t)fi->fh;
}

/*
 * Every open file, so that those still open when the daemon stops (a
 * process had one open at SIGTERM: no RELEASE comes once the connection is
 * gone) are freed by ffs_destroy.
 *
 * Locking: open_lock guards the list (links only); a leaf lock.
 */
struct open_file {
	struct ffs_file file; /* first: fi->fh points here */
	struct open_file *prev, *next; /* open_lock */
};
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static struct open_file open_files = { .prev = &open_files, .next = &open_files };

/* Wraps the caller's inode reference in a new open file, in fi->fh. */
static int file_new(struct pm_inode *ip, struct fuse_file_info *fi)
{
	struct open_file *o = malloc(sizeof(*o));

	if (!o)
		return -ENOMEM;
	o->file.ip = ip;
	o->file.flags = fi->flags;
	pthread_mutex_lock(&open_lock);
	o->next = &open_files;
	o->prev = open_files.prev;
	o->prev->next = o;
	open_files.prev = o;
	pthread_mutex_unlock(&open_lock);
	fi->fh = (uintptr_t)&o->file;
	return 0;
}

static void file_free(struct open_file *o)
{
	pthread_mutex_lock(&open_lock);
	o->prev->next = o->next;
	o->next->prev = o->prev;
	pthread_mutex_unlock(&open_lock);
	free(o);
}

/* Drops an open file: its on-close pins, its inode reference. Takes @f,
 * not the request: it also runs after a failed reply, which freed that. */
static void file_put(struct ffs *f, struct fuse_file_info *fi)
{
	struct ffs_file *file = file_of(fi);

	if (f->lm)
		lease_release_fh(f->lm, (uint64_t)(uintptr_t)file);
	if (ffs_coh_cached(pm_ino(file->ip), 0, 0)) {
		/* the last open file of a mapped inode: no mapping is left */
		struct open_file *o;
		bool other = false;
		pthread_mutex_lock(&open_lock);
		for (o = open_files.next; o != &open_files && !other; o = o->next)
			other = &o->file != file && o->file.ip == file->ip;
		pthread_mutex_unlock(&open_lock);
		if (!other)
			ffs_coh_released(pm_ino(file->ip));
	}
	pm_iput(f->fs, file->ip);
	file_free((struct open_file *)file);
}

void ffs_open_counts(struct pm_inode *ip, uint64_t *file, uint64_t *mount)
{
	struct open_file *o;

	*file = *mount = 0;
	pthread_mutex_lock(&open_lock);
	for (o = open_files.next; o != &open_files; o = o->next) {
		++*mount;
		*file += o->file.ip == ip;
	}
	pthread_mutex_unlock(&open_lock);
}

/* The session ends (after the engine is unmounted: the inodes are gone,
 * so only the memory of files still open is freed). */
static void ffs_destroy(void *userdata)
{
	(void)userdata;
	while (open_files.next != &open_files)
		file_free(open_files.next);
}

/* Replies with an entry for @ip and takes the lookup reference the kernel
 * now holds. Consumes the caller's reference. */
static void reply_entry(fuse_req_t req, struct pm_inode *ip, struct fuse_file_info *fi)
{
	struct ffs *f = ffs_of(req);
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	e.ino = pm_ino(ip);
	e.generation = pm_generation(f->fs, ip);
	pm_stat(f->fs, ip, &e.attr);
	e.attr_timeout = f->timeout;
	e.entry_timeout = f->timeout;
	pm_lookup_ref(f->fs, ip);
	if (fi) {
		/* create: the open file keeps the caller's reference */
		if (file_new(ip, fi)) {
			pm_forget(f->fs, e.ino, 1);
			pm_iput(f->fs, ip);
			fuse_reply_err(req, ENOMEM);
			return;
		}
		fi->direct_io = 1;
		if (fuse_reply_create(req, &e, fi) == -ENOENT) {
			/* interrupted: the kernel will not release it */
			pm_forget(f->fs, e.ino, 1);
			file_put(f, fi);
		}
		return;
	}
	pm_iput(f->fs, ip);
	if (fuse_reply_entry(req, &e) == -ENOENT)
		pm_forget(f->fs, e.ino, 1);
}

/*
 * Attributes changed behind the kernel's back. The kernel keeps its cache
 * right by itself for what it knows an operation changes: after a WRITE,
 * a FALLOCATE or an O_TRUNC open it marks size, mtime, ctime and blocks
 * stale (fs/fuse/file.c: fuse_write_update_attr, FUSE_STATX_MODSIZE), after
 * SETXATTR/REMOVEXATTR ctime; SETATTR, CREATE, LINK and LOOKUP replies carry
 * the attributes. What it cannot know, the daemon tells it
 * (ffs_inval_attr: the cached attributes are dropped, before the reply, so
 * whatever the caller does next asks again):
 *  - the setuid/setgid kill of a write by an unprivileged caller (the
 *    kernel leaves it to us on direct I/O) and of its O_TRUNC open (with
 *    FUSE_CAP_ATOMIC_O_TRUNC the kernel drops the mode change it computed).
 *    exec() and permission checks use the cached mode without asking:
 *    a stale S_ISUID would let exec() run the rewritten file as its owner
 *    for up to -o timeout seconds;
 *  - st_blocks when an extended attribute takes or frees a block;
 *  - the holes a pin fills, and a policy's ctime (ioctl.c).
 * A notification is one write to /dev/fuse (with the io_uring transport
 * too): it is sent only when such an attribute changed, never per write.
 */

static void reply_attr(fuse_req_t req, struct pm_inode *ip)
{
	struct ffs *f = ffs_of(req);
	struct stat st;

	pm_stat(f->fs, ip, &st);
	pm_iput(f->fs, ip);
	fuse_reply_attr(req, &st, f->timeout);
}

/* ---- truncates that wait on pins ------------------------------------------ */

/*
 * A truncate, O_TRUNC open or hole punch that the policy (wait, break) makes
 * wait for pins is parked, not slept on: the engine call answers
 * -EINPROGRESS (it changed nothing and dropped its locks), the handler
 * returns without replying, and the lease manager's completion thread calls
 * async_resume() when a pin ended, the deadline passed or the kernel sent an
 * INTERRUPT. That runs the whole engine call again -- it retakes the data
 * lock and asks the lease manager again, so nothing is freed that a pin
 * still holds -- and replies, or parks the request once more. Setattr and
 * fallocate are idempotent, so running them again is safe.
 *
 * Locking: no lock is held while parking, resuming or replying; the
 * interruption callback runs inside libfuse's request lock and only sets a
 * flag in the lease manager.
 */
enum { ASYNC_SETATTR, ASYNC_OPEN, ASYNC_FALLOCATE };

struct ffs_async {
	fuse_req_t req;
	struct ffs *f;
	int kind;
	struct lease_wait *w;	  /* the lease manager's side of the wait */
	struct pm_inode *ip;	  /* a reference of its own */
	struct cred_buf cb;	  /* SETATTR, OPEN: the caller */
	struct pm_setattr sa;	  /* SETATTR */
	struct fuse_file_info fi; /* OPEN */
	int mode;		  /* FALLOCATE */
	uint64_t off, len;
};

/*
 * The truncate of an O_TRUNC open (FUSE_CAP_ATOMIC_O_TRUNC: it arrives here,
 * not as SETATTR), with the setuid/setgid kill the kernel then leaves to us
 * (see "attributes changed behind the kernel's back"). 0, -errno, or
 * -EINPROGRESS from a wait on pins (ffs_set_wait).
 */
static int open_trunc(struct ffs *f, const struct cred_buf *cb, struct pm_inode *ip)
{
	struct pm_setattr sa = { .valid = PM_SET_SIZE | PM_SET_KILL_PRIV, .size = 0 };
	mode_t priv = S_ISUID | S_ISGID;
	struct stat st;
	int rc;

	pm_stat(f->fs, ip, &st);
	if (!S_ISREG(st.st_mode) || (st.st_size == 0 && !(st.st_mode & priv)))
		return 0;
	rc = pm_setattr(f->fs, &cb->cr, ip, &sa);
	if (!rc && (st.st_mode & priv)) {
		mode_t before = st.st_mode;
		pm_stat(f->fs, ip, &st);
		if (st.st_mode != before)
			ffs_inval_attr(f, pm_ino(ip));
	}
	return rc;
}

/* Runs the engine call of @a; -EINPROGRESS: it waits on pins (a->w). */
static int async_run(struct ffs_async *a)
{
	struct ffs *f = a->f;
	int rc = 0;

	ffs_set_wait(&a->w, 0); /* a wait of its own already: no new one */
	switch (a->kind) {
	case ASYNC_SETATTR:
		rc = pm_setattr(f->fs, &a->cb.cr, a->ip, &a->sa);
		break;
	case ASYNC_OPEN:
		rc = open_trunc(f, &a->cb, a->ip);
		break;
	default:
		rc = pm_fallocate(f->fs, a->ip, a->mode, a->off, a->len);
		break;
	}
	ffs_set_wait(NULL, 0);
	return rc;
}

/* Replies @rc (or the operation's answer) and frees @a; consumes a->ip. */
static void async_reply(struct ffs_async *a, int rc)
{
	struct ffs *f = a->f;
	fuse_req_t req = a->req;

	lease_wait_end(f->lm, &a->w);
	if (rc) {
		if (a->kind == ASYNC_FALLOCATE)
			ffs_inval_attr(f, pm_ino(a->ip)); /* see ffs_fallocate */
		pm_iput(f->fs, a->ip);
		fuse_reply_err(req, -rc);
	} else if (a->kind == ASYNC_SETATTR) {
		reply_attr(req, a->ip);
	} else if (a->kind == ASYNC_FALLOCATE) {
		pm_iput(f->fs, a->ip);
		fuse_reply_err(req, 0);
	} else {
		struct fuse_file_info *fi = &a->fi;
		rc = file_new(a->ip, fi);
		if (rc) {
			pm_iput(f->fs, a->ip);
			fuse_reply_err(req, -rc);
		} else {
			fi->direct_io = 1;
			if (fuse_reply_open(req, fi) == -ENOENT)
				file_put(f, fi); /* interrupted: no release will come */
		}
	}
	free(a);
}

/* libfuse calls this with the request's lock held: only a flag is set */
static void async_interrupted(fuse_req_t req, void *arg)
{
	struct ffs_async *a = arg;

	(void)req;
	lease_wait_interrupt(a->f->lm, a->w);
}

static void async_resume(void *arg, int status)
{
	struct ffs_async *a = arg;
	/* unmounting: the request is answered, not run again */
	int rc = status ? -EINTR : async_run(a);

	if (rc == -EINPROGRESS) {
		lease_wait_arm(a->f->lm, a->w, async_resume, a);
		return;
	}
	/* waits for a running async_interrupted, and no other comes */
	fuse_req_interrupt_func(a->req, NULL, NULL);
	async_reply(a, rc);
}

/*
 * Parks request @req whose engine call answered -EINPROGRESS, leaving the
 * wait in *@wp: takes over *@wp and the caller's inode reference @ip and
 * replies later. @kind's operands: @cb for SETATTR and OPEN, @sa for
 * SETATTR, @fi for OPEN, @mode/@off/@len for FALLOCATE.
 */
static void async_park(fuse_req_t req, int kind, struct lease_wait **wp, struct pm_inode *ip,
		       const struct cred_buf *cb, const struct pm_setattr *sa,
		       const struct fuse_file_info *fi, int mode, uint64_t off, uint64_t len)
{
	struct ffs *f = ffs_of(req);
	struct ffs_async *a = calloc(1, sizeof(*a));

	if (!a) {
		lease_wait_end(f->lm, wp);
		pm_iput(f->fs, ip);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	a->req = req;
	a->f = f;
	a->kind = kind;
	a->w = *wp;
	*wp = NULL;
	a->ip = ip;
	if (cb) {
		a->cb = *cb;
		a->cb.cr.groups = a->cb.g;
	}
	if (sa)
		a->sa = *sa;
	if (fi)
		a->fi = *fi;
	a->mode = mode;
	a->off = off;
	a->len = len;
	fuse_req_interrupt_func(req, async_interrupted, a);
	lease_wait_arm(f->lm, a->w, async_resume, a);
}

/* ---- lifetime ------------------------------------------------------------ */

/*
 * POSIX ACLs (FUSE_CAP_POSIX_ACL): the kernel checks every access against
 * the ACL xattrs itself (the mount has default_permissions anyway) and
 * caches them; the engine keeps the mode and the ACLs in step (pmem/xattr.c)
 * and applies default ACLs to new objects, so the kernel must leave the
 * umask to it (FUSE_CAP_DONT_MASK): POSIX ignores the umask under a
 * default ACL.
 */
static void ffs_init(void *userdata, struct fuse_conn_info *conn)
{
	struct ffs *f = userdata;

	if ((conn->capable & FUSE_CAP_POSIX_ACL) && (conn->capable & FUSE_CAP_DONT_MASK)) {
		conn->want |= FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK;
		f->posix_acl = 1;
	}
	/* file handles (name_to_handle_at, NFS export) that outlive the
	 * kernel's inode cache and the mount: see ffs_lookup */
	if (conn->capable & FUSE_CAP_EXPORT_SUPPORT)
		conn->want |= FUSE_CAP_EXPORT_SUPPORT;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	if (conn->capable & FUSE_CAP_ASYNC_DIO)
		conn->want |= FUSE_CAP_ASYNC_DIO;
	/* no writeback cache: writes must reach the pool at once */
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	conn->want &= ~(unsigned)(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
	conn->time_gran = 1;
	conn->max_write = 1u << 20;
	conn->max_readahead = 1u << 20;
}

/*
 * Export support (FUSE_CAP_EXPORT_SUPPORT): a file handle is the node id,
 * which is the inode number, and the generation, both persistent, so a
 * handle opens the same file after the kernel forgot the inode or the pool
 * was mounted again. To find such an inode the kernel looks up "." in it,
 * whatever its type (and ".." in a directory, for its parent): "." names
 * the inode itself. A freed inode is -ESTALE (pm_iget), and one whose slot
 * was reused has another generation, which the kernel refuses (ESTALE).
 */
static void ffs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct ffs *f = ffs_of(req);
	struct pm_inode *dir, *ip;
	int rc = iget(req, parent, &dir);

	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (!strcmp(name, ".")) {
		reply_entry(req, dir, NULL);
		return;
	}
	rc = pm_lookup(f->fs, dir, name, &ip);
	pm_iput(f->fs, dir);
	if (rc == -ENOENT) {
		/* a negative entry the kernel may cache */
		struct fuse_entry_param e;
		memset(&e, 0, sizeof(e));
		e.entry_timeout = f->timeout;
		fuse_reply_entry(req, &e);
		return;
	}
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	reply_entry(req, ip, NULL);
}

static void ffs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	pm_forget(ffs_of(req)->fs, ino, nlookup);
	fuse_reply_none(req);
}

static void ffs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	size_t i;

	for (i = 0; i < count; i++)
		pm_forget(ffs_of(req)->fs, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

/* ---- attributes ---------------------------------------------------------- */

static void ffs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct pm_inode *ip;
	int rc;

	(void)fi;
	rc = iget(req, ino, &ip);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		reply_attr(req, ip);
}

/*
 * The suid/sgid kill. main.c answers the kernel's FUSE_HANDLE_KILLPRIV_V2
 * at INIT (issue 18: fewer round trips): the daemon, not the kernel, clears
 * setuid, and setgid with group execute, when a file is written, truncated
 * or given away, so that a chown no longer costs a GETATTR first (without
 * it fs/fuse/dir.c fuse_setattr refreshes the mode to compute the cleared
 * one and sends it). The reply of the request that killed carries the new
 * mode, except a write's (see "attributes changed behind the kernel's
 * back"). Who decides:
 *  - chown/chgrp of a non-directory: the kernel sends FATTR_KILL_SUIDGID
 *    with the ids (it kills whoever the caller, root too); pm_setattr
 *    kills on any id change anyway;
 *  - truncate: FATTR_KILL_SUIDGID when the caller lacks CAP_FSETID;
 *  - chown(f, -1, -1) and the kernel's own file_remove_privs (fallocate,
 *    copy_file_range): the kernel drops its mode change and sends a
 *    SETATTR that sets nothing, which only such a kill sends (utimensat
 *    with both times UTIME_OMIT returns before the file system): it
 *    kills;
 *  - write and O_TRUNC open: by the caller's uid, as before
 *    (pm_write_kill, open_trunc; the kernel's FUSE_WRITE_KILL_SUIDGID and
 *    FUSE_OPEN_KILL_SUIDGID do not reach a libfuse 3.14 handler).
 * security.capability is still the kernel's: notify_change() looks it up
 * (the GETXATTR a chown costs) and removes it on chown and truncate; on a
 * direct-I/O write it never did (fs/fuse/file.c calls no
 * file_remove_privs there), with or without this flag.
 */
#define SETATTR_ANY                                                                           \
	(FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID | FUSE_SET_ATTR_SIZE |      \
	 FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |                 \
	 FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME)

static void ffs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
			struct fuse_file_info *fi)
{
	struct ffs *f = ffs_of(req);
	struct cred_buf cb;
	struct pm_setattr sa;
	struct pm_inode *ip = NULL;
	struct lease_wait *w = NULL;
	int rc;

	(void)fi;
	memset(&sa, 0, sizeof(sa));
	if (to_set & FUSE_SET_ATTR_MODE) {
		sa.valid |= PM_SET_MODE;
		sa.mode = attr->st_mode;
	}
	if (to_set & FUSE_SET_ATTR_UID) {
		sa.valid |= PM_SET_UID;
		sa.uid = attr->st_uid;
	}
	if (to_set & FUSE_SET_ATTR_GID) {
		sa.valid |= PM_SET_GID;
		sa.gid = attr->st_gid;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		sa.valid |= PM_SET_SIZE;
		sa.size = (uint64_t)attr->st_size;
	}
	if (to_set & FUSE_SET_ATTR_ATIME_NOW)
		sa.valid |= PM_SET_ATIME_NOW;
	else if (to_set & FUSE_SET_ATTR_ATIME) {
		sa.valid |= PM_SET_ATIME;
		sa.atime = attr->st_atim;
	}
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		sa.valid |= PM_SET_MTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_MTIME) {
		sa.valid |= PM_SET_MTIME;
		sa.mtime = attr->st_mtim;
	}
	if (to_set & FUSE_SET_ATTR_CTIME) {
		sa.valid |= PM_SET_CTIME;
		sa.ctime = attr->st_ctim;
	}
	/* the suid/sgid kill (above): the kernel's FATTR_KILL_SUIDGID, or a
	 * SETATTR that sets nothing */
	if ((to_set & FUSE_SET_ATTR_KILL_SUID) || !(to_set & SETATTR_ANY))
		sa.valid |= PM_SET_KILL_SUIDGID;
	rc = iget(req, ino, &ip);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	cred_get(req, &cb, to_set & (FUSE_SET_ATTR_GID | FUSE_SET_ATTR_MODE));
	/* a kill alone may be a stranger's chown(f, -1, -1): the kernel
	 * refuses that when there is something to kill (access.c) */
	if (!(to_set & (SETATTR_ANY | FUSE_SET_ATTR_KILL_SUID))) {
		struct stat st;

		pm_stat(f->fs, ip, &st);
		if (!S_ISDIR(st.st_mode) &&
		    ((st.st_mode & S_ISUID) ||
		     (st.st_mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP)))
			rc = ffs_may_kill_privs(req, f, ip);
		if (rc) {
			pm_iput(f->fs, ip);
			fuse_reply_err(req, -rc);
			return;
		}
	}
	ffs_set_wait(&w, fuse_req_ctx(req)->uid);
	rc = pm_setattr(f->fs, &cb.cr, ip, &sa);
	ffs_set_wait(NULL, 0);
	if (rc == -EINPROGRESS) {
		/* waits on pins: parked, replied later (async_park) */
		async_park(req, ASYNC_SETATTR, &w, ip, &cb, &sa, NULL, 0, 0, 0);
		return;
	}
	lease_wait_end(f->lm, &w);
	if (rc) {
		pm_iput(f->fs, ip);
		fuse_reply_err(req, -rc);
		return;
	}
	reply_attr(req, ip);
}

/* ---- namespace ----------------------------------------------------------- */

static void make_node(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev,
		      const char *link, struct fuse_file_info *fi)
{
	struct ffs *f = ffs_of(req);
	struct cred_buf cb;
	struct pm_inode *dir, *ip = NULL;
	int rc = iget(req, parent, &dir);

	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (link)
		rc = pm_symlink(f->fs, cred_get(req, &cb, false), dir, name, link, &ip);
	else
		rc = pm_mknod(f->fs, cred_get(req, &cb, mode & S_ISGID), dir, name, mode, rdev, &ip);
	pm_iput(f->fs, dir);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	reply_entry(req, ip, fi);
}

static void ffs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	make_node(req, parent, name, mode, rdev, NULL, NULL);
}

static void ffs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	make_node(req, parent, name, (mode & 07777) | S_IFDIR, 0, NULL, NULL);
}

static void ffs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	make_node(req, parent, name, S_IFLNK | 0777, 0, link, NULL);
}

/*
 * O_TMPFILE. The kernel sends FUSE_TMPFILE, which libfuse 3.14 has no
 * handler for (its .tmpfile came in 3.16): it would answer ENOSYS, and the
 * kernel would answer EOPNOTSUPP to every O_TMPFILE from then on. The
 * request is a FUSE_CREATE in all but the opcode -- fuse_create_in, then
 * the name of the anonymous dentry, "/", which no create can have -- and
 * takes the same reply, so both transports hand it to libfuse as a CREATE
 * (ffs_request_fixup) and ffs_create tells it by its name.
 */
#define TMPFILE_NAME "/"

uint64_t ffs_op_count[PINFS_OPS_MAX];

void ffs_request_fixup(void *buf, size_t len)
{
	struct fuse_in_header *in = buf;
	const size_t name_at = sizeof(*in) + sizeof(struct fuse_create_in);

	if (len >= sizeof(*in))
		__atomic_add_fetch(&ffs_op_count[in->opcode < PINFS_OPS_MAX ? in->opcode : PINFS_OPS_MAX - 1],
				   1, __ATOMIC_RELAXED);
	if (len >= name_at + sizeof(TMPFILE_NAME) && in->len == len && in->opcode == FUSE_TMPFILE &&
	    !memcmp((char *)buf + name_at, TMPFILE_NAME, sizeof(TMPFILE_NAME)))
		in->opcode = FUSE_CREATE;
}

static void ffs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		       struct fuse_file_info *fi)
{
	struct ffs *f = ffs_of(req);
	struct cred_buf cb;
	struct pm_inode *dir, *ip = NULL;
	int rc;

	if (strcmp(name, TMPFILE_NAME)) {
		make_node(req, parent, name, (mode & 07777) | S_IFREG, 0, NULL, fi);
		return;
	}
	rc = iget(req, parent, &dir);
	if (!rc) {
		rc = pm_tmpfile(f->fs, cred_get(req, &cb, mode & S_ISGID), dir, mode, &ip);
		pm_iput(f->fs, dir);
	}
	if (rc)
		fuse_reply_err(req, -rc);
	else
		reply_entry(req, ip, fi);
}

static void ffs_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct ffs *f = ffs_of(req);
	char buf[PM_SYMLINK_MAX + 1];
	struct pm_inode *ip;
	int rc = iget(req, ino, &ip);

	if (!rc) {
		rc = pm_readlink(f->fs, ip, buf, sizeof(buf));
		pm_iput(f->fs, ip);
	}
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_readlink(req, buf);
}

static void remove_name(fuse_req_t req, fuse_ino_t parent, const char *name, bool isdir)
{
	struct ffs *f = ffs_of(req);
	struct pm_inode *dir;
	int rc = iget(req, parent, &dir);

	if (!rc) {
		rc = isdir ? pm_rmdir(f->fs, dir, name) : pm_unlink(f->fs, dir, name);
		pm_iput(f->fs, dir);
	}
	fuse_reply_err(req, -rc);
}

static void ffs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_name(req, parent, name, false);
}

static void ffs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_name(req, parent, name, true);
}

static void ffs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		       const char *newname, unsigned int flags)
{
	struct ffs *f = ffs_of(req);
	struct pm_inode *od = NULL, *nd = NULL;
	struct cred_buf cb;
	int rc = iget(req, parent, &od);

	if (!rc)
		rc = iget(req, newparent, &nd);
	/* RENAME_WHITEOUT (overlayfs upper layers): the kernel has checked
	 * CAP_MKNOD; the whiteout is the caller's */
	if (!rc)
		rc = pm_rename_as(f->fs, cred_get(req, &cb, false), od, name, nd, newname, flags);
	pm_iput(f->fs, nd);
	pm_iput(f->fs, od);
	fuse_reply_err(req, -rc);
}

static void ffs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct ffs *f = ffs_of(req);
	struct pm_inode *ip = NULL, *dir = NULL;
	int rc = iget(req, ino, &ip);

	if (!rc)
		rc = iget(req, newparent, &dir);
	if (!rc)
		rc = pm_link(f->fs, ip, dir, newname);
	pm_iput(f->fs, dir);
	if (rc) {
		pm_iput(f->fs, ip);
		fuse_reply_err(req, -rc);
		return;
	}
	reply_entry(req, ip, NULL);
}

/* ---- files --------------------------------------------------------------- */

static void ffs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ffs *f = ffs_of(req);
	struct pm_inode *ip;
	int rc = iget(req, ino, &ip);

	if (!rc && (fi->flags & O_TRUNC)) {
		struct cred_buf cb;
		struct lease_wait *w = NULL;
		cred_get(req, &cb, false);
		ffs_set_wait(&w, fuse_req_ctx(req)->uid);
		rc = open_trunc(f, &cb, ip);
		ffs_set_wait(NULL, 0);
		if (rc == -EINPROGRESS) {
			/* waits on pins: parked, replied later (async_park) */
			async_park(req, ASYNC_OPEN, &w, ip, &cb, NULL, fi, 0, 0, 0);
			return;
		}
		lease_wait_end(f->lm, &w);
		if (rc)
			pm_iput(f->fs, ip);
	}
	if (!rc) {
		rc = file_new(ip, fi);
		if (rc)
			pm_iput(f->fs, ip);
	}
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	fi->direct_io = 1;
	if (fuse_reply_open(req, fi) == -ENOENT)
		file_put(f, fi); /* interrupted: no release will come */
}

static void ffs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	file_put(ffs_of(req), fi);
	fuse_reply_err(req, 0);
}

static void ffs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct ffs *f = ffs_of(req);
	struct pm_inode *ip = file_of(fi)->ip;
	struct iovec iov[MAX_IOV];
	size_t bytes;
	int n;

	(void)ino;
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (!fi->lock_owner) {
		/* the kernel filling a page of a mapping (a direct read
		 * always carries a lock owner): coherent.c */
		ffs_coh_filled(pm_ino(ip), (uint64_t)off, size);
		if (ffs_coh_read(f, req, ip, (uint64_t)off, size))
			return;
	}
	n = pm_read_begin(f->fs, ip, (uint64_t)off, size, iov, MAX_IOV, &bytes);
	if (n < 0) {
		fuse_reply_err(req, -n);
		return;
	}
	/* the kernel copies straight out of the pool; ip->rw (shared) keeps the
	 * blocks from being freed until the copy is done (fusefs.h) */
	fuse_reply_iov(req, iov, n);
	pm_read_end(f->fs, ip);
}

static void ffs_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *bufv, off_t off,
			  struct fuse_file_info *fi)
{
	struct ffs *f = ffs_of(req);
	struct pm_inode *ip = file_of(fi)->ip;
	struct iovec iov[64];
	struct cred_buf cb;
	bool killed;
	size_t i, len = 0;
	int n = 0;
	ssize_t rc;

	(void)ino;
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	for (i = bufv->idx; i < bufv->count && n < 64; i++) {
		const struct fuse_buf *b = &bufv->buf[i];
		size_t skip = i == bufv->idx ? bufv->off : 0;
		if (b->flags & FUSE_BUF_IS_FD) {
			fuse_reply_err(req, EIO); /* splice is never negotiated */
			return;
		}
		iov[n].iov_base = (char *)b->mem + skip;
		iov[n++].iov_len = b->size - skip;
	}
	for (i = 0; i < (size_t)n; i++)
		len += iov[i].iov_len;
	cred_get(req, &cb, false);
	if (!fi->writepage && ffs_coh_cached(pm_ino(ip), (uint64_t)off, len)) {
		/* the kernel may cache pages of this file: coherent.c */
		ffs_coh_write(f, req, ip, &cb.cr, (uint64_t)off, iov, n);
		return;
	}
	rc = pm_write_kill(f->fs, &cb.cr, ip, (uint64_t)off, iov, n, &killed);
	if (killed)
		ffs_inval_attr(f, pm_ino(ip)); /* before the reply: exec looks next */
	if (rc >= 0 && !fi->writepage && ffs_coh_cached(pm_ino(ip), (uint64_t)off, len)) {
		/* a first page fill read the pool while this write was
		 * applied: done again the coherent way (coherent.c) */
		ffs_coh_write(f, req, ip, &cb.cr, (uint64_t)off, iov, n);
		return;
	}
	if (rc < 0 && fi->writepage) {
		/* the kernel writing back a shared mapping's page: nobody waits
		 * for this reply but the kernel, which keeps the errno for the
		 * next fsync/msync and drops the page's bytes. Say so, once.
		 * (Why the space cannot be reserved earlier: README, "A store
		 * through a shared mapping on a full pool".) */
		fprintf(stderr, "pinfs: inode %llu: bytes %lld-%lld stored through a shared mapping are lost: "
				"page writeback failed: %s\n",
			(unsigned long long)pm_ino(ip), (long long)off, (long long)(off + len - 1),
			strerror((int)-rc));
		__atomic_add_fetch(&f->mmap_lost_bytes, len, __ATOMIC_RELAXED);
	}
	if (rc < 0)
		fuse_reply_err(req, (int)-rc);
	else
		fuse_reply_write(req, (size_t)rc);
}

static void ffs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct ffs *f = ffs_of(req);
	struct pm_inode *ip;
	int rc;

	(void)fi;
	rc = iget(req, ino, &ip);
	if (!rc) {
		rc = pm_fsync(f->fs, ip, datasync);
		pm_iput(f->fs, ip);
	}
	fuse_reply_err(req, -rc);
}

/* A fill that fails part way (ENOSPC of the pool or of its backing store)
 * keeps the parts it committed (pm_fallocate), but the kernel drops its
 * cached attributes only after a fallocate that succeeded: a failed one
 * drops them here, before the reply, so that stat shows the blocks the file
 * holds (here and in async_reply). */
static void ffs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			  struct fuse_file_info *fi)
{
	struct ffs *f = ffs_of(req);
	int rc;

	(void)ino;
	if (off < 0 || len <= 0)
		rc = -EINVAL;
	else {
		struct pm_inode *ip = file_of(fi)->ip;
		struct lease_wait *w = NULL;
		ffs_set_wait(&w, fuse_req_ctx(req)->uid);
		rc = pm_fallocate(f->fs, ip, mode, (uint64_t)off, (uint64_t)len);
		ffs_set_wait(NULL, 0);
		if (rc == -EINPROGRESS) {
			/* waits on pins: parked with an inode reference of its
			 * own, replied later (async_park) */
			rc = pm_iget(f->fs, pm_ino(ip), &ip);
			if (!rc) {
				async_park(req, ASYNC_FALLOCATE, &w, ip, NULL, NULL, NULL, mode,
					   (uint64_t)off, (uint64_t)len);
				return;
			}
		}
		lease_wait_end(f->lm, &w);
		if (rc)
			ffs_inval_attr(f, pm_ino(ip));
	}
	fuse_reply_err(req, -rc);
}

static void ffs_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		      struct fuse_file_info *fi)
{
	struct ffs *f = ffs_of(req);
	int64_t rc;

	(void)ino;
	if (off < 0) {
		fuse_reply_err(req, ENXIO);
		return;
	}
	rc = pm_lseek(f->fs, file_of(fi)->ip, (uint64_t)off, whence);
	if (rc < 0)
		fuse_reply_err(req, (int)-rc);
	else
		fuse_reply_lseek(req, rc);
}

/* ---- directories --------------------------------------------------------- */

static void ffs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ffs *f = ffs_of(req);
	struct pm_inode *ip;
	int rc = iget(req, ino, &ip);

	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	rc = file_new(ip, fi);
	if (rc) {
		pm_iput(f->fs, ip);
		fuse_reply_err(req, -rc);
		return;
	}
	if (fuse_reply_open(req, fi) == -ENOENT)
		file_put(f, fi); /* interrupted: no releasedir will come */
}

struct rd_ctx {
	fuse_req_t req;
	struct ffs *f;
	char *buf;
	size_t size, used;
	bool plus;
};

static int rd_fill(void *p, const char *name, uint64_t ino, unsigned type, uint64_t next)
{
	struct rd_ctx *c = p;
	size_t need;

	if (!c->plus) {
		struct stat st;
		memset(&st, 0, sizeof(st));
		st.st_ino = ino;
		st.st_mode = type << 12;
		need = fuse_add_direntry(c->req, c->buf + c->used, c->size - c->used, name, &st,
					 (off_t)next);
		if (need > c->size - c->used)
			return 1;
	} else {
		struct fuse_entry_param e;
		struct pm_inode *ip = NULL;
		bool dot = !strcmp(name, ".") || !strcmp(name, "..");

		memset(&e, 0, sizeof(e));
		if (!dot && pm_iget(c->f->fs, ino, &ip) == 0) {
			e.ino = ino;
			e.generation = pm_generation(c->f->fs, ip);
			pm_stat(c->f->fs, ip, &e.attr);
			e.attr_timeout = e.entry_timeout = c->f->timeout;
		} else {
			e.attr.st_ino = ino;
			e.attr.st_mode = type << 12;
		}
		need = fuse_add_direntry_plus(c->req, c->buf + c->used, c->size - c->used, name, &e,
					      (off_t)next);
		if (need > c->size - c->used) {
			pm_iput(c->f->fs, ip);
			return 1;
		}
		if (ip) {
			pm_lookup_ref(c->f->fs, ip); /* the kernel holds it now */
			pm_iput(c->f->fs, ip);
		}
	}
	c->used += need;
	return 0;
}

static void do_readdir(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi,
		       bool plus)
{
	struct rd_ctx c = { .req = req, .f = ffs_of(req), .size = size, .plus = plus };
	int rc;

	c.buf = malloc(size);
	if (!c.buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = pm_readdir(c.f->fs, file_of(fi)->ip, (uint64_t)off, rd_fill, &c);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_buf(req, c.buf, c.used);
	free(c.buf);
}

static void ffs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	(void)ino;
	do_readdir(req, size, off, fi, false);
}

static void ffs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			    struct fuse_file_info *fi)
{
	(void)ino;
	do_readdir(req, size, off, fi, true);
}

static void ffs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	file_put(ffs_of(req), fi);
	fuse_reply_err(req, 0);
}

static void ffs_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	ffs_fsync(req, ino, datasync, fi);
}

static void ffs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs st;

	(void)ino;
	pm_statfs(ffs_of(req)->fs, &st);
	fuse_reply_statfs(req, &st);
}

/* ---- extended attributes ------------------------------------------------- */

static blkcnt_t blocks_of(struct ffs *f, struct pm_inode *ip)
{
	struct stat st;

	pm_stat(f->fs, ip, &st);
	return st.st_blocks;
}

/* The read-only xattrs every file of the mount shows, computed by the
 * daemon: the pool (where to map leases from: the trust boundary), the
 * event channel's socket name (fusefs/evchan.c) and the dax state file
 * (pinfs-dax: where layout leases learn of revocations). */
static bool computed_xattr(const char *name)
{
	return !strcmp(name, PINFS_XATTR_POOL) || !strcmp(name, PINFS_XATTR_EVENTS) ||
	       !strcmp(name, PINFS_XATTR_DAXSTATE);
}

/* Its value, or NULL (ENODATA) when that part of the daemon did not start. */
static const char *computed_xattr_value(struct ffs *f, const char *name)
{
	if (!strcmp(name, PINFS_XATTR_POOL))
		return f->pool_path;
	if (!strcmp(name, PINFS_XATTR_EVENTS))
		return f->evchan ? ffs_evchan_name(f->evchan) : NULL;
	return ffs_dax_path();
}

static void ffs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			 size_t size, int flags)
{
	struct ffs *f = ffs_of(req);
	struct cred_buf cb;
	struct pm_inode *ip;
	int rc;

	if (computed_xattr(name)) {
		fuse_reply_err(req, EPERM); /* read-only, computed */
		return;
	}
	if (!strcmp(name, PINFS_XATTR_POLICY)) {
		char v[16];
		uint32_t p;
		if (size == 0 || size >= sizeof(v)) {
			fuse_reply_err(req, EINVAL);
			return;
		}
		memcpy(v, value, size);
		v[size] = 0;
		if (lease_policy_parse(v, &p)) {
			fuse_reply_err(req, EINVAL);
			return;
		}
	}
	if (!strcmp(name, PINFS_XATTR_WAIT_TIMEOUT)) {
		char v[32];
		double t;
		if (size == 0 || size >= sizeof(v)) {
			fuse_reply_err(req, EINVAL);
			return;
		}
		memcpy(v, value, size);
		v[size] = 0;
		if (lease_timeout_parse(v, &t)) {
			fuse_reply_err(req, EINVAL);
			return;
		}
	}
	rc = iget(req, ino, &ip);
	if (!rc) {
		blkcnt_t blocks = blocks_of(f, ip);
		/* the policy needs what a pin needs (fusefs/access.c) */
		if (!strcmp(name, PINFS_XATTR_POLICY) || !strcmp(name, PINFS_XATTR_WAIT_TIMEOUT))
			rc = ffs_may_set_policy(req, f, ip);
		if (rc)
			;
		else if (pm_acl_name(name)) /* the mode follows (groups: setgid) */
			rc = pm_set_acl(f->fs, cred_get(req, &cb, true), ip, name, value, size,
					flags);
		else
			rc = pm_setxattr(f->fs, ip, name, value, size, flags);
		/* the kernel marks only ctime stale */
		if (!rc && blocks_of(f, ip) != blocks)
			ffs_inval_attr(f, pm_ino(ip));
		pm_iput(f->fs, ip);
	}
	fuse_reply_err(req, -rc);
}

/* Replies to getxattr/listxattr: the size when the caller asked for it
 * (@size 0), else the bytes. */
static void reply_xattr(fuse_req_t req, ssize_t rc, size_t size, const char *buf)
{
	if (rc < 0)
		fuse_reply_err(req, (int)-rc);
	else if (!size)
		fuse_reply_xattr(req, (size_t)rc);
	else
		fuse_reply_buf(req, buf, (size_t)rc);
}

static void ffs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct ffs *f = ffs_of(req);
	struct pm_inode *ip;
	char *buf = NULL;
	ssize_t rc;

	if (computed_xattr(name)) {
		const char *v = computed_xattr_value(f, name);
		size_t n = v ? strlen(v) : 0;
		reply_xattr(req, !v ? -ENODATA : size && size < n ? -ERANGE : (ssize_t)n, size, v);
		return;
	}
	rc = iget(req, ino, &ip);
	if (!rc) {
		buf = size ? malloc(size) : NULL;
		rc = size && !buf ? -ENOMEM : pm_getxattr(f->fs, ip, name, buf, size);
		pm_iput(f->fs, ip);
	}
	reply_xattr(req, rc, size, buf);
	free(buf);
}

static void ffs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct ffs *f = ffs_of(req);
	struct pm_inode *ip;
	char *buf = NULL;
	ssize_t rc = iget(req, ino, &ip);

	if (!rc) {
		buf = size ? malloc(size) : NULL;
		rc = size && !buf ? -ENOMEM : pm_listxattr(f->fs, ip, buf, size);
		pm_iput(f->fs, ip);
	}
	reply_xattr(req, rc, size, buf);
	free(buf);
}

static void ffs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct ffs *f = ffs_of(req);
	struct pm_inode *ip;
	int rc = iget(req, ino, &ip);

	if (!rc) {
		blkcnt_t blocks = blocks_of(f, ip);
		if (!strcmp(name, PINFS_XATTR_POLICY) || !strcmp(name, PINFS_XATTR_WAIT_TIMEOUT))
			rc = ffs_may_set_policy(req, f, ip);
		if (!rc)
			rc = pm_removexattr(f->fs, ip, name);
		if (!rc && blocks_of(f, ip) != blocks)
			ffs_inval_attr(f, pm_ino(ip));
		pm_iput(f->fs, ip);
	}
	fuse_reply_err(req, -rc);
}

const struct fuse_lowlevel_ops ffs_ops = {
	.init = ffs_init,
	.destroy = ffs_destroy,
	.lookup = ffs_lookup,
	.forget = ffs_forget,
	.forget_multi = ffs_forget_multi,
	.getattr = ffs_getattr,
	.setattr = ffs_setattr,
	.readlink = ffs_readlink,
	.mknod = ffs_mknod,
	.mkdir = ffs_mkdir,
	.unlink = ffs_unlink,
	.rmdir = ffs_rmdir,
	.symlink = ffs_symlink,
	.rename = ffs_rename,
	.link = ffs_link,
	.open = ffs_open,
	.read = ffs_read,
	.write_buf = ffs_write_buf,
	/* no .flush: every write is synchronous (all opens are direct_io) and
	 * close() has no state to settle or error to report, so the kernel's
	 * first FLUSH gets libfuse's ENOSYS, which it takes as "not needed"
	 * (fc->no_flush), and every later close() costs no round trip */
	.release = ffs_release,
	.fsync = ffs_fsync,
	.opendir = ffs_opendir,
	.readdir = ffs_readdir,
	.readdirplus = ffs_readdirplus,
	.releasedir = ffs_releasedir,
	.fsyncdir = ffs_fsyncdir,
	.statfs = ffs_statfs,
	.setxattr = ffs_setxattr,
	.getxattr = ffs_getxattr,
	.listxattr = ffs_listxattr,
	.removexattr = ffs_removexattr,
	.create = ffs_create,
	.fallocate = ffs_fallocate,
	.lseek = ffs_lseek,
	.ioctl = ffs_ioctl,
};

/* SPDX-License-Identifier: MIT */
/*
 * fusefs/access.c -- who may pin, and who may map the pool.
 *
 * A pin can refuse, delay or revoke another process's truncate of the file,
 * and a pin of a hole allocates space in it; the holder then maps the pool
 * file itself. So three questions are asked of every PINFS_IOC_PIN, in this
 * order and before anything is allocated or pinned (include/pinfs/abi.h has the
 * errnos):
 *
 *  1. The pin rule (-o pin_access): may this caller hold a lease on the
 *     file at all? By default what Linux asks of F_SETLEASE: the file's
 *     owner (fsuid == i_uid) or CAP_LEASE in the effective set; with
 *     pin_access=writer also whoever may write the file. EACCES otherwise.
 *     Setting a file's truncate policy (ioctl or xattr) asks the same: it
 *     decides what truncates do to other people's pins.
 *  2. The pool: could the caller open the pool file for the access the pin
 *     needs (read, or read and write for a write pin)? Holders map the pool
 *     directly, so a pin that could never be mapped is refused: EPERM.
 *  3. Space: a read pin of a hole would allocate blocks, as a write would;
 *     it is refused (EACCES, nothing allocated) unless the caller could
 *     write the file (its fd is open for writing, or the mode bits let it).
 *
 * The caller's credentials are what FUSE reports (fsuid, fsgid, the thread
 * id) plus, from /proc, the supplementary groups (fuse_req_getgroups) and
 * the effective capabilities. Access is decided as the kernel's
 * generic_permission() does: by the access ACL when there is one
 * (pmem/acl.c; the file's when the kernel enforces ACLs on this mount, the
 * pool file's always, as its kernel enforces it when a holder opens the
 * pool), else by the mode bits; uid 0 passes, like CAP_DAC_OVERRIDE. An
 * ACL that cannot be read refuses. A caller whose /proc entry cannot be
 * read (it exited, or lives in another pid namespace: pid 0) has no
 * supplementary groups and no capabilities.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "fusefs/fusefs.h"
#include "pmem/acl.h"
#include "pmem/pool.h"

#define CAP_LEASE_BIT 28 /* linux/capability.h CAP_LEASE */

/* The credentials of one request's caller. The supplementary groups cost a
 * read of /proc, so they are fetched only when a check needs them (never for
 * the common owner or root pin). */
struct cred {
	fuse_req_t req;
	uid_t uid; /* fsuid */
	gid_t gid; /* fsgid */
	int ngroups;			/* -1: not fetched yet */
	gid_t groups[FFS_GROUPS_MAX]; /* supplementary; the rest ignored */
	pid_t pid;		      /* thread id, 0 if unknown */
};

static void cred_get(fuse_req_t req, struct cred *c)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);

	c->req = req;
	c->uid = ctx->uid;
	c->gid = ctx->gid;
	c->pid = ctx->pid;
	c->ngroups = -1;
}

static bool cred_in_group(struct cred *c, gid_t g)
{
	int i;

	if (c->gid == g)
		return true;
	if (c->ngroups < 0) {
		int n = c->pid > 0 ? fuse_req_getgroups(c->req, FFS_GROUPS_MAX, c->groups) : -ESRCH;
		/* more than FFS_GROUPS_MAX: only the first count (a refusal,
		 * never a wrong grant) */
		c->ngroups = n < 0 ? 0 : n > FFS_GROUPS_MAX ? FFS_GROUPS_MAX : n;
	}
	for (i = 0; i < c->ngroups; i++)
		if (c->groups[i] == g)
			return true;
	return false;
}

/* Does CapEff in /proc/<tid>/status hold CAP_LEASE? */
static bool cred_has_cap_lease(const struct cred *c)
{
	char path[64], line[256];
	unsigned long long eff = 0;
	bool found = false;
	FILE *fp;

	if (c->pid <= 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)c->pid);
	fp = fopen(path, "re");
	if (!fp)
		return false;
	while (fgets(line, sizeof(line), fp))
		if (sscanf(line, "CapEff: %llx", &eff) == 1) {
			found = true;
			break;
		}
	fclose(fp);
	return found && (eff >> CAP_LEASE_BIT & 1);
}

static bool cred_in_group_fn(void *c, gid_t g)
{
	return cred_in_group(c, g);
}

/* An object's access ACL, as pm_acl_permission() takes it: len 0 for none,
 * -1 for one that cannot be read or is malformed (refuses). */
struct acl_buf {
	ssize_t len;
	uint8_t v[PM_ACL_MAX_SIZE];
};

static void acl_take(struct acl_buf *a, ssize_t n)
{
	if (n == -ENODATA || n == -EOPNOTSUPP)
		a->len = 0;
	else if (n < 0 || pm_acl_valid(a->v, (size_t)n) < 0)
		a->len = -1;
	else
		a->len = n;
}

/* May @c access an object of attributes @st and access ACL @a for @want
 * (a mask of R_OK, W_OK)? */
static bool cred_may(struct cred *c, const struct stat *st, const struct acl_buf *a, int want)
{
	if (c->uid == 0)
		return true;
	if (a->len < 0)
		return false;
	return pm_acl_permission(a->len ? a->v : NULL, (size_t)a->len, st->st_uid, st->st_gid,
				 st->st_mode, c->uid, cred_in_group_fn, c, want) == 0;
}

/* The pin rule (1. above): 0 or -EACCES. */
static int cred_may_lease(const struct ffs *f, struct cred *c, const struct stat *st,
			  const struct acl_buf *a)
{
	if (c->uid == st->st_uid)
		return 0;
	if (f->pin_writer && cred_may(c, st, a, W_OK))
		return 0;
	return cred_has_cap_lease(c) ? 0 : -EACCES;
}

/* @ip's attributes and, when the kernel enforces ACLs here, its access
 * ACL (else the mode bits are what the kernel checks). */
static void file_attrs(struct ffs *f, struct pm_inode *ip, struct stat *st, struct acl_buf *a)
{
	pm_stat(f->fs, ip, st);
	a->len = 0;
	if (f->posix_acl)
		acl_take(a, pm_getxattr(f->fs, ip, PM_ACL_ACCESS, a->v, sizeof(a->v)));
}

int ffs_pin_access(fuse_req_t req, struct ffs *f, struct pm_inode *ip, bool write_pin,
		   bool fd_writable, bool *may_alloc)
{
	struct acl_buf *a = malloc(sizeof(*a));
	struct stat st, ps;
	struct cred c;
	ssize_t n;
	int rc;

	if (!a)
		return -ENOMEM;
	cred_get(req, &c);
	file_attrs(f, ip, &st, a);
	rc = cred_may_lease(f, &c, &st, a);
	if (rc)
		goto out;
	*may_alloc = write_pin || fd_writable || cred_may(&c, &st, a, W_OK);
	/* the pool as it is now: its mode, group or ACL may have been changed */
	if (fstat(f->pool->fd, &ps) < 0) {
		rc = -errno;
		goto out;
	}
	n = fgetxattr(f->pool->fd, PM_ACL_ACCESS, a->v, sizeof(a->v));
	acl_take(a, n < 0 ? -errno : n);
	if (!cred_may(&c, &ps, a, R_OK | (write_pin ? W_OK : 0)))
		rc = -EPERM;
out:
	free(a);
	return rc;
}

int ffs_may_set_policy(fuse_req_t req, struct ffs *f, struct pm_inode *ip)
{
	struct acl_buf *a = malloc(sizeof(*a));
	struct cred c;
	struct stat st;
	int rc;

	if (!a)
		return -ENOMEM;
	file_attrs(f, ip, &st, a);
	cred_get(req, &c);
	rc = cred_may_lease(f, &c, &st, a);
	free(a);
	return rc;
}

int ffs_pool_share(struct ffs *f, const char *group, gid_t gid)
{
	int rc;

	/* group first, then the mode: the pool is never open to a group it
	 * was not meant for */
	if (fchown(f->pool->fd, (uid_t)-1, gid) < 0) {
		rc = -errno;
		fprintf(stderr, "pinfs: %s: -o pin_group=%s: cannot give the pool to group %u: %s "
				"(the daemon must be root, or own the pool and be a member of the group)\n",
			f->pool_path, group, (unsigned)gid, strerror(-rc));
		return rc;
	}
	if (fchmod(f->pool->fd, 0660) < 0) {
		rc = -errno;
		fprintf(stderr, "pinfs: %s: -o pin_group=%s: cannot make the pool mode 0660: %s\n",
			f->pool_path, group, strerror(-rc));
		return rc;
	}
	return 0;
}

int ffs_pool_access(fuse_req_t req, struct ffs *f, bool write)
{
	struct acl_buf *a = malloc(sizeof(*a));
	struct stat ps;
	struct cred c;
	ssize_t n;
	int rc = 0;

	if (!a)
		return -ENOMEM;
	cred_get(req, &c);
	if (fstat(f->pool->fd, &ps) < 0) {
		rc = -errno;
		goto out;
	}
	n = fgetxattr(f->pool->fd, PM_ACL_ACCESS, a->v, sizeof(a->v));
	acl_take(a, n < 0 ? -errno : n);
	if (!cred_may(&c, &ps, a, R_OK | (write ? W_OK : 0)))
		rc = -EPERM;
out:
	free(a);
	return rc;
}

/*
 * A SETATTR that sets nothing: the suid/sgid kill of chown(f, -1, -1) or of
 * the kernel's file_remove_privs (ops.c, "suid/sgid kill"), which FUSE does
 * not tell apart. The kernel lets a chown kill only for the owner (the kill
 * is a mode change: setattr_prepare), file_remove_privs for whoever opened
 * the file for writing. So: root, the owner, or a user who may write the
 * file (who could kill by writing anyway); else -EPERM. Called only when
 * there is something to kill.
 */
int ffs_may_kill_privs(fuse_req_t req, struct ffs *f, struct pm_inode *ip)
{
	struct acl_buf *a = malloc(sizeof(*a));
	struct cred c;
	struct stat st;
	int rc = 0;

	if (!a)
		return -ENOMEM;
	file_attrs(f, ip, &st, a);
	cred_get(req, &c);
	if (c.uid != 0 && c.uid != st.st_uid && !cred_may(&c, &st, a, W_OK))
		rc = -EPERM;
	free(a);
	return rc;
}

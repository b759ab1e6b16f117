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
 * the effective capabilities. Mode bits are checked as the kernel's
 * generic_permission() does without ACLs (pinfs has none); uid 0 passes
 * them, like CAP_DAC_OVERRIDE. A caller whose /proc entry cannot be read (it
 * exited, or lives in another pid namespace: pid 0) has no supplementary
 * groups and no capabilities.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fusefs/fusefs.h"
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

/* May @c access an object of owner @uid, group @gid and @mode for @want
 * (a mask of R_OK, W_OK)? */
static bool cred_may(struct cred *c, uid_t uid, gid_t gid, mode_t mode, int want)
{
	unsigned bits;

	if (c->uid == 0)
		return true;
	if (c->uid == uid)
		bits = (mode >> 6) & 7;
	else if (cred_in_group(c, gid))
		bits = (mode >> 3) & 7;
	else
		bits = mode & 7;
	return ((int)bits & want) == want;
}

/* The pin rule (1. above): 0 or -EACCES. */
static int cred_may_lease(const struct ffs *f, struct cred *c, const struct stat *st)
{
	if (c->uid == st->st_uid)
		return 0;
	if (f->pin_writer && cred_may(c, st->st_uid, st->st_gid, st->st_mode, W_OK))
		return 0;
	return cred_has_cap_lease(c) ? 0 : -EACCES;
}

int ffs_pin_access(fuse_req_t req, struct ffs *f, const struct stat *st, bool write_pin,
		   bool fd_writable, bool *may_alloc)
{
	struct cred c;
	struct stat ps;
	int rc;

	cred_get(req, &c);
	rc = cred_may_lease(f, &c, st);
	if (rc)
		return rc;
	/* the pool as it is now: its mode or group may have been changed */
	if (fstat(f->pool->fd, &ps) < 0)
		return -errno;
	if (!cred_may(&c, ps.st_uid, ps.st_gid, ps.st_mode, R_OK | (write_pin ? W_OK : 0)))
		return -EPERM;
	*may_alloc = write_pin || fd_writable ||
		     cred_may(&c, st->st_uid, st->st_gid, st->st_mode, W_OK);
	return 0;
}

int ffs_may_set_policy(fuse_req_t req, struct ffs *f, struct pm_inode *ip)
{
	struct cred c;
	struct stat st;

	pm_stat(f->fs, ip, &st);
	cred_get(req, &c);
	return cred_may_lease(f, &c, &st);
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

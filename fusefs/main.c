/* SPDX-License-Identifier: MIT */
/*
 * fusefs/main.c -- the pinfs daemon: options, pool, session, loop and the
 * cleanup ladder.
 *
 *   pinfs [-f] [-d] [-s] [-o OPTIONS] POOL MOUNTPOINT
 *
 * Without -f the daemon forks into the background once the mount is up
 * (fuse_daemonize) and logs to syslog, or to the file -o logfile= names,
 * or, with no syslog daemon, to a fallback file (fusefs/log.h); every
 * thread (holder watcher, flusher, FUSE workers) starts after that fork.
 *
 * Exit: 0 after a clean unmount (fusermount3 -u, umount, SIGTERM, SIGINT), 1
 * on any failure to start, with one line on stderr saying why; a usage error
 * is such a failure too. Every option is checked before the pool is opened:
 * a bad command line never touches (or recovers) a pool.
 */
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <grp.h>
#include <inttypes.h>
#include <linux/fuse.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "fusefs/fusefs.h"
#include "fusefs/log.h"
#include "fusefs/uring.h"
#include "pinfs/client.h"
#include "lease/lease.h"

/* Kernel 6.6+ lets FOPEN_DIRECT_IO files be mmapped MAP_SHARED when the
 * daemon says so at INIT; libfuse 3.14 does not know the flag yet. */
#ifndef FUSE_DIRECT_IO_ALLOW_MMAP
#define FUSE_DIRECT_IO_ALLOW_MMAP (1ull << 36)
#endif

static struct ffs g_ffs;

/*
 * Custom /dev/fuse I/O: plain read() and writev(), plus the INIT patches
 * and the reply routing of FUSE over io_uring (fusefs/uring.c):
 *  - the INIT reply gets FUSE_DIRECT_IO_ALLOW_MMAP when the kernel offered
 *    it, so that shared mmap keeps working on direct-I/O files (our
 *    coherence model, see ops.c), and FUSE_OVER_IO_URING when the rings
 *    can serve (uring.c decides and logs the transport);
 *  - and FUSE_HANDLE_KILLPRIV_V2 (libfuse 3.14 does not know it either)
 *    when offered: the daemon clears setuid/setgid itself (ops.c, "suid/sgid
 *    kill"), which saves chown a GETATTR;
 *  - a reply to a request that came in on a ring entry is committed to
 *    that entry instead of being written to /dev/fuse.
 */
static uint64_t init_flags; /* what the kernel offered at INIT */

static ssize_t io_read(int fd, void *buf, size_t len, void *userdata)
{
	ssize_t n = read(fd, buf, len);
	struct ffs *f = userdata;

	if (n > 0)
		ffs_request_fixup(buf, (size_t)n);

	if (n >= (ssize_t)(sizeof(struct fuse_in_header) + sizeof(struct fuse_init_in))) {
		const struct fuse_in_header *in = buf;
		if (in->opcode == FUSE_INIT) {
			const struct fuse_init_in *ii = (const void *)(in + 1);
			uint64_t flags = ii->flags;
			if (flags & FUSE_INIT_EXT)
				flags |= (uint64_t)ii->flags2 << 32;
			init_flags = flags;
			f->init_unique = in->unique;
			f->init_unique_valid = 1;
			ffs_uring_init_request(in->unique, flags);
		}
	}
	return n;
}

/*
 * A reply whose payload points into the pool (a read) is touched here, a
 * load per page, in user space: a page the pool file lost faults into
 * pm_fault_catch() (fs.h) instead of failing the kernel's copy with EFAULT,
 * after which the request would never be answered. A request whose thread
 * met such a fault, here or in the engine, is answered EIO, and so is a
 * later one whose payload holds a page a fault replaced with zeros.
 * Returns the iovec count to send.
 */
static int reply_fault_check(struct iovec *iov, int count)
{
	struct fuse_out_header *oh = iov[0].iov_base;
	bool lost = false;
	int k;

	if (iov[0].iov_len != sizeof(*oh) || !oh->unique)
		return count; /* a notification: no request waits */
	if (pm_fault_count())
		for (k = 1; k < count && !lost; k++)
			lost = pm_fault_lost(iov[k].iov_base, iov[k].iov_len);
	for (k = 1; k < count && !lost; k++) {
		const volatile char *p = iov[k].iov_base, *end = p + iov[k].iov_len;

		if (!iov[k].iov_len || !pm_fault_in_pool(iov[k].iov_base))
			continue;
		/* the first page lost is enough: the reply becomes EIO */
		for (; p < end && !pm_fault_pending();
		     p = (const volatile char *)(((uintptr_t)p | 4095) + 1))
			(void)*p;
	}
	if (!pm_fault_take() && !lost)
		return count;
	oh->error = -EIO;
	oh->len = sizeof(*oh);
	return 1;
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	struct ffs *f = userdata;
	const struct fuse_out_header *oh = iov[0].iov_base;
	bool init = false;
	ssize_t n;

	count = reply_fault_check(iov, count);
	n = ffs_uring_reply(iov, count); /* the bytes committed, or -ENOENT */
	if (n >= 0)
		return n;
	if (f->init_unique_valid && count >= 2 && iov[0].iov_len == sizeof(struct fuse_out_header) &&
	    iov[1].iov_len >= offsetof(struct fuse_init_out, flags2) + sizeof(uint32_t) &&
	    oh->unique == f->init_unique && oh->error == 0) {
		struct fuse_init_out *io = iov[1].iov_base;
		if (io->flags & FUSE_INIT_EXT && init_flags & FUSE_DIRECT_IO_ALLOW_MMAP)
			io->flags2 |= (uint32_t)(FUSE_DIRECT_IO_ALLOW_MMAP >> 32);
		/* fewer round trips (issue 18): ops.c, "suid/sgid kill" */
		if (init_flags & FUSE_HANDLE_KILLPRIV_V2)
			io->flags |= FUSE_HANDLE_KILLPRIV_V2;
		ffs_uring_init_reply(oh->unique, io);
		f->init_unique_valid = 0;
		init = true;
	}
	n = writev(fd, iov, count);
	if (init)
		ffs_uring_init_done(oh->unique, n >= 0);
	return n;
}

const struct fuse_custom_io ffs_io = {
	.read = io_read,
	.writev = io_writev,
};

struct opts {
	char *pool;
	double timeout;
	char *policy;
	char *busy_errno;
	double wait_timeout;
	double lease_break_time;
	double short_pin_max;
	char *max_pins;
	char *max_pinned;
	char *max_pins_per_user;
	char *max_pinned_per_user;
	char *max_parked;
	double writeback_interval;
	double dirty_expire;
	char *pin_access;
	char *pin_group;
	int pool_shared;
	int force;
	int dense;
	int io_uring; /* -1: not given (the default: io_uring, see main) */
	char *logfile;
	char *pinned_writeback; /* skip (default) or bounce */
	unsigned unsafe; /* PM_UNSAFE_*: the demonstration switches, -o unsafe=... */
	bool unsafe_bad; /* an unknown unsafe= value (said on stderr) */
};

enum { KEY_UNSAFE = 1 };

static const struct fuse_opt opt_spec[] = {
	{ "timeout=%lf", offsetof(struct opts, timeout), 0 },
	{ "policy=%s", offsetof(struct opts, policy), 0 },
	{ "busy_errno=%s", offsetof(struct opts, busy_errno), 0 },
	{ "wait_timeout=%lf", offsetof(struct opts, wait_timeout), 0 },
	{ "lease_break_time=%lf", offsetof(struct opts, lease_break_time), 0 },
	{ "short_pin_max=%lf", offsetof(struct opts, short_pin_max), 0 },
	{ "max_pins=%s", offsetof(struct opts, max_pins), 0 },
	{ "max_pinned=%s", offsetof(struct opts, max_pinned), 0 },
	{ "max_pins_per_user=%s", offsetof(struct opts, max_pins_per_user), 0 },
	{ "max_pinned_per_user=%s", offsetof(struct opts, max_pinned_per_user), 0 },
	{ "max_parked=%s", offsetof(struct opts, max_parked), 0 },
	{ "writeback_interval=%lf", offsetof(struct opts, writeback_interval), 0 },
	{ "dirty_expire=%lf", offsetof(struct opts, dirty_expire), 0 },
	{ "pin_access=%s", offsetof(struct opts, pin_access), 0 },
	{ "pin_group=%s", offsetof(struct opts, pin_group), 0 },
	{ "pool_shared", offsetof(struct opts, pool_shared), 1 },
	{ "force", offsetof(struct opts, force), 1 },
	{ "dense", offsetof(struct opts, dense), 1 },
	{ "io_uring", offsetof(struct opts, io_uring), 1 },
	{ "no_io_uring", offsetof(struct opts, io_uring), 0 },
	{ "logfile=%s", offsetof(struct opts, logfile), 0 },
	{ "pinned_writeback=%s", offsetof(struct opts, pinned_writeback), 0 },
	FUSE_OPT_KEY("unsafe=%s", KEY_UNSAFE),
	FUSE_OPT_END,
};

/* -o NAME=@s, a count: decimal digits only (sscanf's %lu would take "-5"
 * as 2^64 - 5, no limit at all); a message and -EINVAL if not. */
static int parse_count(const char *name, const char *s, unsigned long *out)
{
	char *end;

	errno = 0;
	if (s[0] >= '0' && s[0] <= '9') {
		*out = strtoul(s, &end, 10);
		if (!*end && !errno)
			return 0;
	}
	fprintf(stderr, "pinfs: -o %s=%s: '%s' is not a count\n", name, s, s);
	return -EINVAL;
}

/* Turns the pin options into the lease manager's configuration; a message
 * and -EINVAL for bad values. */
static int lease_config(const struct opts *o, struct lease_cfg *c)
{
	unsigned long max_pins = 4096, max_pins_per_user = 0, max_parked = FFS_MAX_PARKED;

	memset(c, 0, sizeof(*c));
	c->policy = PINFS_POLICY_FAIL;
	c->busy_errno = EBUSY;
	c->wait_timeout = o->wait_timeout;
	c->lease_break_time = o->lease_break_time;
	c->short_pin_max = o->short_pin_max;
	if ((o->max_pins && parse_count("max_pins", o->max_pins, &max_pins)) ||
	    (o->max_pins_per_user &&
	     parse_count("max_pins_per_user", o->max_pins_per_user, &max_pins_per_user)) ||
	    (o->max_parked && parse_count("max_parked", o->max_parked, &max_parked)))
		return -EINVAL;
	if (max_parked > UINT32_MAX) {
		fprintf(stderr, "pinfs: -o max_parked=%s: at most %u\n", o->max_parked, UINT32_MAX);
		return -EINVAL;
	}
	c->max_parked_per_user = (uint32_t)max_parked;
	c->max_pins = max_pins;
	c->max_pinned_bytes = 1ull << 30;
	c->max_pins_per_user = max_pins_per_user;
	/* the pool records every live holder (see ffs_leases_start) */
	c->max_holders = PM_PINHOLDERS_MAX;
	if (o->policy && (lease_policy_parse(o->policy, &c->policy) ||
			  c->policy == PINFS_POLICY_DEFAULT)) {
		fprintf(stderr, "pinfs: -o policy=%s: unknown policy (fail, revoke, wait, break, "
				"refuse_longterm)\n",
			o->policy);
		return -EINVAL;
	}
	if (o->busy_errno) {
		if (!strcmp(o->busy_errno, "EBUSY"))
			c->busy_errno = EBUSY;
		else if (!strcmp(o->busy_errno, "ETXTBSY"))
			c->busy_errno = ETXTBSY;
		else {
			fprintf(stderr, "pinfs: -o busy_errno=%s: must be EBUSY or ETXTBSY\n",
				o->busy_errno);
			return -EINVAL;
		}
	}
	if (o->max_pinned && pinfs_parse_size(o->max_pinned, &c->max_pinned_bytes)) {
		fprintf(stderr, "pinfs: -o max_pinned=%s: '%s' is not a size\n", o->max_pinned,
			o->max_pinned);
		return -EINVAL;
	}
	if (o->max_pinned_per_user &&
	    pinfs_parse_size(o->max_pinned_per_user, &c->max_pinned_bytes_per_user)) {
		fprintf(stderr, "pinfs: -o max_pinned_per_user=%s: '%s' is not a size\n",
			o->max_pinned_per_user, o->max_pinned_per_user);
		return -EINVAL;
	}
	if (!(c->wait_timeout >= 0)) { /* inf is a wait without bound */
		fprintf(stderr, "pinfs: -o wait_timeout=%g: must not be negative\n", c->wait_timeout);
		return -EINVAL;
	}
	/* a short-term pin is short: a day at most (also keeps the deadline
	 * arithmetic in range) */
	if (!(c->short_pin_max > 0) || !(c->short_pin_max <= 86400)) {
		fprintf(stderr,
			"pinfs: -o short_pin_max=%g: must be a positive number of seconds, at most "
			"86400\n",
			c->short_pin_max);
		return -EINVAL;
	}
	if (!(c->lease_break_time >= 0) || c->lease_break_time > 1e9) {
		fprintf(stderr, "pinfs: -o lease_break_time=%g: must be 0 to 1e9 seconds\n",
			c->lease_break_time);
		return -EINVAL;
	}
	return 0;
}

/* The options in effect, "name=value,..." into g_ffs.options, for
 * PINFS_IOC_STATUS (the mount policy is added there: it may change). */
static void status_options(const struct opts *o, const struct lease_cfg *c, const char *fuse_opts)
{
	char *p = g_ffs.options, *end = g_ffs.options + sizeof(g_ffs.options);
	int n;

#define ADD(...)                                                                      \
	do {                                                                          \
		n = snprintf(p, (size_t)(end - p), __VA_ARGS__);                      \
		if (n > 0)                                                            \
			p += (size_t)n < (size_t)(end - p) ? (size_t)n : (size_t)(end - p - 1); \
	} while (0)
	ADD("busy_errno=%s", c->busy_errno == ETXTBSY ? "ETXTBSY" : "EBUSY");
	ADD(",wait_timeout=%g,lease_break_time=%g", c->wait_timeout, c->lease_break_time);
	ADD(",max_pins=%" PRIu64 ",max_pinned=%" PRIu64, c->max_pins, c->max_pinned_bytes);
	ADD(",max_pins_per_user=%" PRIu64 ",max_pinned_per_user=%" PRIu64, c->max_pins_per_user,
	    c->max_pinned_bytes_per_user);
	ADD(",max_parked=%u,timeout=%g", c->max_parked_per_user, o->timeout);
	ADD(",writeback_interval=%g,dirty_expire=%g", o->writeback_interval, o->dirty_expire);
	ADD(",pin_access=%s", g_ffs.pin_writer ? "writer" : "owner");
	ADD(",short_pin_max=%g", c->short_pin_max);
	ADD(",pinned_writeback=%s", o->pinned_writeback ? o->pinned_writeback : "skip");
	if (o->unsafe & PM_UNSAFE_NO_QUARANTINE)
		ADD(",unsafe=no_quarantine");
	if (o->unsafe & PM_UNSAFE_MARK_PINNED_CLEAN)
		ADD(",unsafe=mark_pinned_clean");
	if (o->pin_group)
		ADD(",pin_group=%s", o->pin_group);
	if (o->pool_shared)
		ADD(",pool_shared");
	if (o->force)
		ADD(",force");
	if (o->dense)
		ADD(",dense");
	ADD(",%s", o->io_uring != 0 ? "io_uring" : "no_io_uring");
	if (o->logfile)
		ADD(",logfile=%s", o->logfile);
	if (fuse_opts && *fuse_opts)
		ADD(",%s", fuse_opts);
#undef ADD
}

/* Does group @group (a name or a number) exist? Its gid in *@gid if so; a
 * message and -EINVAL if not. ffs_pool_share() applies it once the pool is
 * open. */
static int pin_group_check(const char *group, gid_t *gid)
{
	struct group gr, *g = NULL;
	char *end, buf[4096];
	unsigned long v;
	int rc;

	errno = 0;
	v = strtoul(group, &end, 10);
	if (*group && !*end && !errno && v < (gid_t)-1) {
		*gid = (gid_t)v;
		return 0;
	}
	rc = getgrnam_r(group, &gr, buf, sizeof(buf), &g);
	if (!g) {
		fprintf(stderr, "pinfs: -o pin_group=%s: %s\n", group,
			rc ? strerror(rc) : "no such group");
		return -EINVAL;
	}
	*gid = g->gr_gid;
	return 0;
}

/* "user NAME (uid N)" or "group NAME (gid N)", or just the number. */
static void id_name(char *out, size_t len, bool group, unsigned id)
{
	char buf[1024];
	struct passwd pw, *pwp = NULL;
	struct group gr, *grp = NULL;
	const char *n = NULL;

	if (group ? !getgrgid_r(id, &gr, buf, sizeof(buf), &grp) && grp
		  : !getpwuid_r(id, &pw, buf, sizeof(buf), &pwp) && pwp)
		n = group ? grp->gr_name : pwp->pw_name;
	if (n)
		snprintf(out, len, "%s %s (%s %u)", group ? "group" : "user", n,
			 group ? "gid" : "uid", id);
	else
		snprintf(out, len, "%s %u", group ? "gid" : "uid", id);
}

/*
 * Is the open pool @fd (@pool as given) private enough to serve? Whoever can
 * open the pool file can map all of it, and so read and write every file
 * and the metadata under the daemon's feet. So, unless -o pool_shared:
 *
 *  - the pool must be owned by the daemon's euid (its owner can chmod it
 *    open, or rewrite it, at any time); root serving a user's pool is
 *    refused too;
 *  - no "other" permission bit may be set;
 *  - no group bit either, on a regular file, unless -o pin_group=GROUP
 *    names the pool's present group (@share_gid, @share set): the daemon
 *    then makes it GROUP's, 0660, itself (ffs_pool_share). A device's group
 *    bits are the system's (disk), whose members read every disk anyway.
 *
 * Checked before the pool is recovered or anything is written; one line on
 * stderr and -EPERM on a refusal.
 */
static int pool_private_check(int fd, const char *pool, bool share, gid_t share_gid)
{
	char name[300], mode[8];
	struct stat st;

	if (fstat(fd, &st) < 0) {
		fprintf(stderr, "pinfs: %s: cannot stat the pool: %s\n", pool, strerror(errno));
		return -errno;
	}
	snprintf(mode, sizeof(mode), "%04o", (unsigned)(st.st_mode & 07777));
	if (st.st_uid != geteuid()) {
		id_name(name, sizeof(name), false, st.st_uid);
		fprintf(stderr, "pinfs: %s: owned by %s, who can rewrite the pool under the daemon "
				"(uid %u): chown it to uid %u (or use -o pool_shared)\n",
			pool, name, (unsigned)geteuid(), (unsigned)geteuid());
		return -EPERM;
	}
	if (st.st_mode & 0007) {
		fprintf(stderr, "pinfs: %s: mode %s lets other users map the whole pool: chmod 600 "
				"it%s (or -o pool_shared)\n",
			pool, mode, share ? "" : ", or use -o pin_group=GROUP");
		return -EPERM;
	}
	if ((st.st_mode & 0070) && S_ISREG(st.st_mode) && !(share && st.st_gid == share_gid)) {
		struct group *gr = getgrgid(st.st_gid);
		char gname[64];

		/* name the pool's own group: -o pin_group=GROUP left it so (it
		 * outlives the mount), and only that group is accepted */
		if (gr && strlen(gr->gr_name) < sizeof(gname))
			snprintf(gname, sizeof(gname), "%s", gr->gr_name);
		else
			snprintf(gname, sizeof(gname), "%u", (unsigned)st.st_gid);
		id_name(name, sizeof(name), true, st.st_gid);
		fprintf(stderr, "pinfs: %s: mode %s lets %s map the whole pool: chmod 600 it, or use "
				"-o pin_group=%s (or -o pool_shared)\n",
			pool, mode, name, gname);
		return -EPERM;
	}
	return 0;
}

/* "pinfs: POOL: ERR", unless ERR already names POOL (pmem/ messages often
 * do): a path is said once. */
static void say_pool_error(const char *pool, const char *err)
{
	if (strstr(err, pool))
		fprintf(stderr, "pinfs: %s\n", err);
	else
		fprintf(stderr, "pinfs: %s: %s\n", pool, err);
}

/* The demonstration switches are loud: one line each in the log, at every
 * mount, saying what the switch breaks. */
static void log_unsafe(const char *pool, unsigned unsafe)
{
	if (unsafe & PM_UNSAFE_NO_QUARANTINE)
		fprintf(stderr, "pinfs: %s: WARNING: UNSAFE -o unsafe=no_quarantine is on: freed "
				"pinned blocks are reused at once and never cut out of the pool file; "
				"a stale kernel pin stores into other files (demonstration only)\n",
			pool);
	if (unsafe & PM_UNSAFE_MARK_PINNED_CLEAN)
		fprintf(stderr, "pinfs: %s: WARNING: UNSAFE -o unsafe=mark_pinned_clean is on: fsync "
				"marks pinned blocks clean and checksums them; a later store through "
				"the pin leaves a stale checksum (demonstration only)\n",
			pool);
}

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct opts *o = data;

	(void)outargs;
	if (key == KEY_UNSAFE) {
		/* -o unsafe=NAME[+NAME...], repeatable: the switches add up */
		char *v = strdup(arg + strlen("unsafe=")), *save = NULL, *name;

		if (!v)
			return -1;
		for (name = strtok_r(v, "+", &save); name; name = strtok_r(NULL, "+", &save)) {
			if (!strcmp(name, "no_quarantine"))
				o->unsafe |= PM_UNSAFE_NO_QUARANTINE;
			else if (!strcmp(name, "mark_pinned_clean"))
				o->unsafe |= PM_UNSAFE_MARK_PINNED_CLEAN;
			else {
				fprintf(stderr, "pinfs: -o unsafe=%s: unknown switch (no_quarantine, "
						"mark_pinned_clean)\n", name);
				o->unsafe_bad = true;
			}
		}
		if (!arg[strlen("unsafe=")]) {
			fprintf(stderr, "pinfs: -o unsafe=: name a switch (no_quarantine, "
					"mark_pinned_clean)\n");
			o->unsafe_bad = true;
		}
		free(v);
		return 0;
	}
	if (key == FUSE_OPT_KEY_NONOPT && !o->pool) {
		o->pool = strdup(arg);
		return 0;
	}
	return 1;
}

/* The usage error convention of the tools: one line saying what is wrong,
 * then where to look. */
static void usage_error(void)
{
	fprintf(stderr, "Try 'pinfs --help'.\n");
}

/* pinfs's own options; libfuse's (allow_other, -f, -d ...) follow, printed
 * by libfuse, so none of them is listed here again. */
static void usage(void)
{
	printf("usage: pinfs [-f] [-d] [-s] [-o OPTIONS] POOL MOUNTPOINT\n\n"
	       "Serves the pinfs pool POOL (made by mkfs.pinfs) at MOUNTPOINT.\n"
	       "Exit status: 0 after a clean unmount, 1 on any failure (usage errors included).\n\n"
	       "pinfs options:\n"
	       "    -o timeout=SECONDS     entry/attribute cache timeout (default 86400)\n"
	       "    -o policy=POLICY       truncate of pinned blocks: fail (default), revoke,\n"
	       "                           wait, break, refuse_longterm (long-term pins are\n"
	       "                           refused with EOPNOTSUPP, short ones waited for)\n"
	       "    -o busy_errno=ERRNO    EBUSY (default) or ETXTBSY for refusals\n"
	       "    -o wait_timeout=S      policy wait: give up after S seconds (default 30;\n"
	       "                           inf: wait as long as the pin lives; per file: the\n"
	       "                           user.pinfs.wait_timeout xattr)\n"
	       "    -o lease_break_time=S  policy break: grace before revoking (default 45)\n"
	       "    -o short_pin_max=S     short-term pins (PINFS_PIN_SHORT) are revoked S\n"
	       "                           seconds after they were taken (default 5);\n"
	       "                           truncate waits for them under every policy\n"
	       "    -o max_pins=N          pins per process (default 4096)\n"
	       "    -o max_pinned=SIZE     pinned bytes per process (default 1G)\n"
	       "    -o max_pins_per_user=N pins per user (default: no limit)\n"
	       "    -o max_pinned_per_user=SIZE  pinned bytes per user (default: no limit)\n"
	       "    -o max_parked=N        requests of one user left waiting at once (EVENTS\n"
	       "                           reads, truncates waiting on pins; default 16, 0: no\n"
	       "                           limit); beyond, EVENTS answers EAGAIN and such a\n"
	       "                           truncate is refused (busy_errno)\n"
	       "    -o writeback_interval=S  background flusher period (default 5)\n"
	       "    -o dirty_expire=S      flush blocks dirty for this long (default 30)\n"
	       "    -o pin_access=WHO      who may pin a file: owner (default; or CAP_LEASE),\n"
	       "                           writer (also whoever may write it)\n"
	       "    -o pin_group=GROUP     make the pool file GROUP's, mode 0660: members can\n"
	       "                           map the whole pool (trust them like the daemon's\n"
	       "                           owner) and so may pin\n"
	       "    -o pool_shared         serve a pool that another user owns or may open:\n"
	       "                           trust everyone who can open the pool\n"
	       "    -o force               serve a pool fsck calls corrupt (read-only if it\n"
	       "                           is marked corrupt)\n"
	       "    -o dense               keep free space backed by zeroed pages, like a\n"
	       "                           persistent-memory device: new blocks need no page\n"
	       "                           allocation, and the pool's memory stays in use\n"
	       "    -o io_uring            serve requests through FUSE over io_uring when the\n"
	       "                           kernel offers it (the default; /dev/fuse otherwise)\n"
	       "    -o no_io_uring         serve requests through /dev/fuse only\n"
	       "    -o logfile=PATH        once mounted, append the log (and anything else\n"
	       "                           written to stderr) to PATH, not syslog (or the\n"
	       "                           terminal with -f)\n"
	       "    -o pinned_writeback=MODE  fsync of write-pinned blocks: skip (default:\n"
	       "                           flushed, left dirty, no checksum) or bounce\n"
	       "                           (--checksums pools: also a checksummed snapshot)\n"
	       "    -o unsafe=SWITCH[+SWITCH]  DEMONSTRATION ONLY, on a pool made with\n"
	       "                           mkfs.pinfs --experimental: turn off a safety rule\n"
	       "                           to show what it prevents: no_quarantine (freed\n"
	       "                           pinned blocks are reused at once), mark_pinned_clean\n"
	       "                           (fsync marks pinned blocks clean); see pinfs(8)\n\n");
	fuse_cmdline_help();
	fuse_lowlevel_help();
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts cl = { 0 };
	struct fuse_loop_config *lc = NULL;
	struct opts o = { .timeout = 86400, .wait_timeout = 30, .lease_break_time = 45,
			  .short_pin_max = LEASE_SHORT_PIN_MAX,
			  .writeback_interval = 5, .dirty_expire = 30,
			  .io_uring = -1 };
	struct lease_cfg lcfg;
	struct fuse_session *se = NULL;
	char err[512] = "", fsname[4200];
	const char *dense_why = NULL;
	uint64_t dense_blocks = 0, dense_pend = 0;
	bool dense = false;
	gid_t share_gid = 0;
	int rc = 1;

	if (fuse_opt_parse(&args, &o, opt_spec, opt_proc) == -1) {
		usage_error(); /* libfuse said which option */
		goto out_args_early;
	}
	if (o.pinned_writeback && strcmp(o.pinned_writeback, "skip") &&
	    strcmp(o.pinned_writeback, "bounce")) {
		fprintf(stderr, "pinfs: -o pinned_writeback=%s: skip or bounce\n",
			o.pinned_writeback);
		usage_error();
		goto out_args_early;
	}
	if (o.unsafe_bad) {
		usage_error();
		goto out_args_early;
	}
	if (fuse_parse_cmdline(&args, &cl) != 0) {
		usage_error();
		goto out_args_early;
	}
	if (cl.show_help) {
		usage();
		rc = 0;
		goto out_args;
	}
	if (cl.show_version) {
		printf("pinfs (pinfs) " PINFS_VERSION "\nFUSE library version %s\n",
		       fuse_pkgversion());
		rc = 0;
		goto out_args;
	}
	if (!o.pool || !cl.mountpoint) {
		fprintf(stderr, "pinfs: %s\n", o.pool ? "no mount point given" : "no pool given");
		usage_error();
		goto out_args;
	}

	/* A mount point whose FUSE daemon died answers ENOTCONN (or, once the
	 * kernel aborted the connection, ECONNABORTED) to everything until it
	 * is unmounted; libfuse would only say "bad mount point". */
	{
		struct stat mst;
		struct statfs msf;
		int e = 0;
		/* stat may answer from the attribute cache: statfs always asks */
		if (stat(cl.mountpoint, &mst) < 0)
			e = errno;
		if (e != ENOTCONN && e != ECONNABORTED && statfs(cl.mountpoint, &msf) < 0)
			e = errno;
		if (e == ENOTCONN || e == ECONNABORTED) {
			fprintf(stderr, "pinfs: %s: %s: the daemon that served it is gone; unmount "
					"it first: fusermount3 -u %s\n",
				cl.mountpoint, strerror(e), cl.mountpoint);
			goto out_args;
		}
	}

	/* Every option is checked here, before the pool is opened: a typo
	 * must not cost a journal replay, nor leave a pool half-shared. */
	if (o.timeout < 0) {
		fprintf(stderr, "pinfs: -o timeout=%g: must not be negative\n", o.timeout);
		goto out_usage;
	}
	g_ffs.timeout = o.timeout;
	g_ffs.debug = cl.debug;
	if (o.pin_access && strcmp(o.pin_access, "owner")) {
		if (strcmp(o.pin_access, "writer")) {
			fprintf(stderr, "pinfs: -o pin_access=%s: must be owner or writer\n",
				o.pin_access);
			goto out_usage;
		}
		g_ffs.pin_writer = 1;
	}
	if (lease_config(&o, &lcfg))
		goto out_usage;
	if (o.writeback_interval <= 0) {
		fprintf(stderr, "pinfs: -o writeback_interval=%g: must be positive\n",
			o.writeback_interval);
		goto out_usage;
	}
	if (o.dirty_expire < 0) {
		fprintf(stderr, "pinfs: -o dirty_expire=%g: must not be negative\n", o.dirty_expire);
		goto out_usage;
	}
	if (o.pin_group && pin_group_check(o.pin_group, &share_gid))
		goto out_usage;
	/* -o logfile is opened now, in the caller's directory and with its
	 * terminal to say why not; /dev/log is tried now too (fusefs/log.h) */
	if (ffs_log_prepare(o.logfile, cl.foreground, o.pool))
		goto out_args;
	if (!realpath(o.pool, g_ffs.pool_path))
		snprintf(g_ffs.pool_path, sizeof(g_ffs.pool_path), "%s", o.pool);

	/* libfuse's -o options left for the session (allow_other ...), as
	 * given, then ours: what PINFS_IOC_STATUS shows */
	{
		char fo[1024] = "";
		size_t k = 0;
		for (int i = 1; i < args.argc; i++) {
			const char *v = !strcmp(args.argv[i], "-o") && i + 1 < args.argc
						? args.argv[++i]
						: !strncmp(args.argv[i], "-o", 2) ? args.argv[i] + 2 : NULL;
			/* libfuse's own default (subtype= from the program name)
			 * is no option the user gave */
			if (v && !strncmp(v, "subtype=", 8))
				continue;
			if (v && k < sizeof(fo))
				k += (size_t)snprintf(fo + k, sizeof(fo) - k, "%s%s", k ? "," : "", v);
		}
		status_options(&o, &lcfg, fo);
	}
	/* the kernel checks permissions against the attributes we report */
	fuse_opt_add_arg(&args, "-odefault_permissions");
	/* the pool's real path: what fsck.pinfs looks for in mountinfo */
	snprintf(fsname, sizeof(fsname), "-ofsname=pinfs:%s,subtype=pinfs", g_ffs.pool_path);
	fuse_opt_add_arg(&args, fsname);

	/* The session checks libfuse's options (an unknown -o among them);
	 * it is only data until it is mounted, so it comes before the pool. */
	se = fuse_session_new(&args, &ffs_ops, sizeof(ffs_ops), &g_ffs);
	g_ffs.se = se;
	if (!se) { /* libfuse said why (e.g. an unknown option) */
		usage_error();
		goto out_args;
	}

	/* a daemon just unmounted may still be writing its clean superblock */
	if (pm_pool_open_flags(o.pool, PM_POOL_WAIT_LOCK, &g_ffs.pool, err, sizeof(err))) {
		say_pool_error(o.pool, err);
		goto out_session;
	}
	/* nothing is written until the pool is known to be private */
	if (!o.pool_shared &&
	    pool_private_check(g_ffs.pool->fd, o.pool, o.pin_group != NULL, share_gid))
		goto out_pool;
	if (o.pin_group && ffs_pool_share(&g_ffs, o.pin_group, share_gid))
		goto out_pool;
	/* processes that held pins at the last unmount still map the pool:
	 * reusing their blocks would put their stores into other files */
	{
		uint32_t pid = pm_super_live_holder(g_ffs.pool->sb);
		if (pid) {
			fprintf(stderr, "pinfs: %s: process %u held pins when the pool was last mounted and "
					"may still store into the pool: end it first\n",
				o.pool, pid);
			goto out_pool;
		}
	}
	if (pm_fs_mount_flags(g_ffs.pool,
			      (o.force ? PM_MOUNT_FORCE : 0) | (o.dense ? PM_MOUNT_DENSE : 0),
			      &g_ffs.fs, err, sizeof(err))) {
		say_pool_error(o.pool, err);
		goto out_pool;
	}
	if (o.pinned_writeback &&
	    pm_fs_set_pinned_writeback(g_ffs.fs, !strcmp(o.pinned_writeback, "bounce") ?
							  PM_PINNED_WB_BOUNCE : PM_PINNED_WB_SKIP,
				       err, sizeof(err))) {
		fprintf(stderr, "pinfs: %s: %s\n", o.pool, err);
		goto out_fs;
	}
	if (pm_fs_set_unsafe(g_ffs.fs, o.unsafe, err, sizeof(err))) {
		fprintf(stderr, "pinfs: %s: %s\n", o.pool, err);
		goto out_fs;
	}
	dense = o.dense && pm_fs_dense(g_ffs.fs, &dense_why, &dense_blocks, &dense_pend);
	dense_blocks += dense_pend;
	if (o.dense && !dense) /* on the terminal */
		fprintf(stderr, "pinfs: %s: -o dense not taken up: %s; the pool stays sparse\n",
			o.pool, dense_why ? dense_why : "a forced mount or a corrupt pool");
	if (pm_fs_errors(g_ffs.fs))
		fprintf(stderr, "pinfs: %s: the pool is corrupt: serving it read-only (EROFS) until "
				"fsck.pinfs --repair\n", o.pool);
	if (fuse_set_signal_handlers(se) != 0)
		goto out_fs;
	if (fuse_session_mount(se, cl.mountpoint) != 0)
		goto out_signals;
	if (fuse_session_custom_io(se, &ffs_io, fuse_session_fd(se)) != 0)
		goto out_unmount;
	/* Everything that can fail for a reason the user should see on the
	 * terminal is done; from here on a background daemon logs to syslog.
	 * fuse_daemonize() forks: a thread started before it would not exist
	 * in the daemon, so every thread starts after it. The one thing a
	 * successful mount may say on the terminal: that there is no syslog
	 * for its log, and where it goes instead. */
	ffs_log_fallback();
	if (fuse_daemonize(cl.foreground) != 0)
		goto out_unmount;
	ffs_log_start();
	/* a SIGBUS from the pool mapping (its file truncated, its backing
	 * store full, a poisoned line) fails a request, not the daemon */
	pm_fault_watch(g_ffs.fs);
	ffs_log_sigbus(pm_fault_catch);
	/* a successful mount is silent on the terminal, as mount helpers
	 * are: what the pool is goes to the log */
	fprintf(stderr, "pinfs: %s: %s; %s\n", o.pool,
		g_ffs.pool->is_pmem ? "real persistent memory: durability by CPU cache flushes"
				    : "not persistent memory: durability by msync",
		pm_sever_describe(g_ffs.fs));
	log_unsafe(o.pool, o.unsafe);
	if (dense)
		fprintf(stderr, "pinfs: %s: dense: free space is kept backed by zeroed pages "
				"(%" PRIu64 " MiB, from now on, in the background): new blocks need "
				"no page allocation, and deleting files gives no memory back\n",
			o.pool, dense_blocks >> 8);
	if (o.pinned_writeback && !strcmp(o.pinned_writeback, "bounce"))
		fprintf(stderr, "pinfs: %s: pinned_writeback=bounce: fsync writes a checksummed "
				"snapshot of each write-pinned block to the file's shadow\n", o.pool);
	if (ffs_leases_start(&g_ffs, &lcfg)) {
		fprintf(stderr, "pinfs: cannot start the lease manager\n");
		goto out_unmount;
	}
	pm_fs_start_flusher(g_ffs.fs, o.writeback_interval, o.dirty_expire);
	/* The transport: FUSE over io_uring unless -o no_io_uring (0); -1,
	 * the default, is io_uring (measured faster on every small-request
	 * row of scripts/bench, see README "Measured"). Whatever the kernel
	 * says, the mount works: uring.c falls back to /dev/fuse and logs one
	 * line why. After fuse_daemonize(): it starts threads. */
	ffs_uring_setup(se, o.io_uring != 0);
	{
		struct timespec m, r;
		clock_gettime(CLOCK_MONOTONIC, &m);
		clock_gettime(CLOCK_REALTIME, &r);
		g_ffs.start_mono_ns = (uint64_t)m.tv_sec * 1000000000ull + (uint64_t)m.tv_nsec;
		g_ffs.start_real_ns = (uint64_t)r.tv_sec * 1000000000ull + (uint64_t)r.tv_nsec;
	}

	if (cl.singlethread) {
		rc = fuse_session_loop(se);
	} else {
		lc = fuse_loop_cfg_create();
		fuse_loop_cfg_set_clone_fd(lc, 0);
		fuse_loop_cfg_set_max_threads(lc, cl.max_threads && cl.max_threads <= 100000 ? cl.max_threads : 10);
		if (cl.max_idle_threads <= 100000) /* UINT_MAX: not given */
			fuse_loop_cfg_set_idle_threads(lc, cl.max_idle_threads);
		rc = fuse_session_loop_mt(se, lc);
		fuse_loop_cfg_destroy(lc);
	}
	/* the loop returns the signal number after SIGTERM/SIGINT/SIGHUP: a
	 * clean unmount; only a negative value is a failure. The log says why
	 * the daemon ends (a plain unmount says nothing: the user did it). */
	if (rc < 0)
		fprintf(stderr, "pinfs: %s: the FUSE session failed (%s): unmounting\n", o.pool,
			strerror(-rc));
	else if (rc > 0)
		fprintf(stderr, "pinfs: %s: SIG%s: unmounting\n", o.pool,
			sigabbrev_np(rc) ? sigabbrev_np(rc) : "?");
	rc = rc < 0 ? 1 : 0;
out_unmount:
	fuse_session_unmount(se);
	/* after the unmount: the kernel has cancelled the rings' commands */
	ffs_uring_stop();
	/* the workers answer into a gone session; they must end before the
	 * engine does */
	ffs_coh_stop(fuse_session_fd(se));
out_signals:
	fuse_remove_signal_handlers(se);
out_fs:
	/* the flusher and the holder watcher call into each other's halves:
	 * stop the flusher first, then the leases, then the engine */
	if (g_ffs.fs)
		pm_flusher_stop(g_ffs.fs);
	ffs_leases_stop(&g_ffs);
	pm_fs_unmount(&g_ffs.fs);
out_pool:
	pm_pool_close(&g_ffs.pool);
out_session:
	fuse_session_destroy(se);
	goto out_args;
out_usage:
	usage_error();
out_args:
	ffs_log_close();
	free(cl.mountpoint);
	free(o.logfile);
	free(o.pool);
	free(o.policy);
	free(o.pinned_writeback);
	free(o.busy_errno);
	free(o.max_pins);
	free(o.max_pins_per_user);
	free(o.max_parked);
	free(o.max_pinned);
	free(o.max_pinned_per_user);
	free(o.pin_access);
	free(o.pin_group);
out_args_early:
	fuse_opt_free_args(&args);
	return rc;
}

/* SPDX-License-Identifier: MIT */
/*
 * fusefs/ioctl.c -- the pin/lease ioctls (include/pinfs/abi.h) and the glue between
 * the engine's pin hooks and the lease manager.
 *
 * FUSE hands us only restricted ioctls on regular files and directories: the
 * kernel copies exactly _IOC_SIZE(cmd) bytes in and out and follows no
 * pointer, so every argument is checked for size and reserved fields here
 * and nothing else can reach the lease manager.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "fusefs/fusefs.h"
#include "fusefs/evchan.h"
#include "fusefs/uring.h"
#include "pinfs/abi.h"
#include "lease/lease.h"

/* Where the engine call this thread is running for a request keeps its
 * wait on pins (fusefs/ops.c): set, the may_free hook never sleeps. The
 * request's user, whose parked requests are counted (lease/policy.c). */
static __thread struct lease_wait **cur_wait;
static __thread uint32_t cur_uid;

void ffs_set_wait(struct lease_wait **wp, uint32_t uid)
{
	cur_wait = wp;
	cur_uid = uid;
}

uint32_t ffs_file_policy(struct ffs *f, struct pm_inode *ip)
{
	char v[16];
	ssize_t n = pm_getxattr(f->fs, ip, PINFS_XATTR_POLICY, v, sizeof(v) - 1);
	uint32_t p;

	if (n <= 0)
		return PINFS_POLICY_DEFAULT;
	v[n] = 0;
	return lease_policy_parse(v, &p) ? PINFS_POLICY_DEFAULT : p;
}

/* The file's own wait timeout (PINFS_XATTR_WAIT_TIMEOUT): seconds, INFINITY,
 * or -1 when it has none (or an unreadable one): the mount's. */
double ffs_file_wait_timeout(struct ffs *f, struct pm_inode *ip)
{
	char v[32];
	ssize_t n = pm_getxattr(f->fs, ip, PINFS_XATTR_WAIT_TIMEOUT, v, sizeof(v) - 1);
	double t;

	if (n <= 0)
		return -1;
	v[n] = 0;
	return lease_timeout_parse(v, &t) ? -1 : t;
}

void ffs_inval_attr(struct ffs *f, uint64_t ino)
{
	/* a negative offset: attributes only, no page cache; -ENOENT (the
	 * kernel holds no inode for it) needs nothing */
	if (f->se)
		fuse_lowlevel_notify_inval_inode(f->se, (fuse_ino_t)ino, -1, 0);
}

/* What stat shows of a file that an ioctl may change behind the kernel's
 * back: a pin that fills holes (st_blocks, ctime), a policy set through the
 * xattr (ctime). */
struct attr_sig {
	blkcnt_t blocks;
	off_t size;
	struct timespec mtime, ctime;
};

static void attr_sig(struct ffs *f, struct pm_inode *ip, struct attr_sig *a)
{
	struct stat st;

	pm_stat(f->fs, ip, &st);
	memset(a, 0, sizeof(*a));
	a->blocks = st.st_blocks;
	a->size = st.st_size;
	a->mtime = st.st_mtim;
	a->ctime = st.st_ctim;
}

static void w_unlock(void *arg)
{
	pm_data_unlock(arg);
}

static void w_relock(void *arg)
{
	pm_data_relock(arg);
}

/* A request handler's engine call answers -EINPROGRESS (nothing changed)
 * where the policy says wait: the handler parks the request (ops.c). Only a
 * caller that is no request handler (none today) would sleep here. */
static int hook_may_free(void *ctx, struct pm_inode *ip, uint64_t first, uint64_t n)
{
	struct ffs *f = ctx;
	struct lease_waiter w = { NULL, w_unlock, w_relock, ip };

	if (cur_wait)
		return lease_may_free_nowait_timeout(f->lm, pm_ino(ip), first, n,
						     ffs_file_policy(f, ip),
						     ffs_file_wait_timeout(f, ip), cur_uid, cur_wait);
	return lease_may_free_timeout(f->lm, pm_ino(ip), first, n, ffs_file_policy(f, ip),
				      ffs_file_wait_timeout(f, ip), &w);
}

/* lease_ops.may_park: over io_uring, a parked request keeps its ring entry,
 * and some entries are kept for requests answered at once */
static bool may_park(void *ctx)
{
	(void)ctx;
	return ffs_uring_may_park();
}

static bool hook_pinned(void *ctx, uint64_t pblk)
{
	return lease_mgr_block_pinned(((struct ffs *)ctx)->lm, pblk);
}

static uint64_t hook_pinned_span(void *ctx, uint64_t pblk, uint64_t n, bool *pinned)
{
	return lease_pinned_span(lease_mgr_table(((struct ffs *)ctx)->lm), pblk, n, pinned);
}

/* Write-pinned ranges of a file, for integrity writeback. */
static void hook_write_pinned(void *ctx, uint64_t ino,
			      void (*fn)(void *arg, uint64_t first, uint64_t n), void *arg)
{
	struct lease_table *t = lease_mgr_table(((struct ffs *)ctx)->lm);
	struct lease l[64];
	size_t total, i, first = 0;

	do {
		total = lease_list(t, ino, first, l, 64);
		for (i = 0; i < 64 && first + i < total; i++)
			if ((l[i].flags & PINFS_PIN_WRITE) && l[i].state != PINFS_LEASE_REVOKED)
				fn(arg, l[i].first, l[i].nblocks);
		first += 64;
	} while (first < total);
}

/* The pool's record of live holders (read by the next mount, see main.c):
 * kept current as holders come and go, so even a daemon killed with SIGKILL
 * leaves the right record behind. */
static void persist_holders(struct ffs *f, const uint32_t *tg, size_t n)
{
	struct pm_pinholder h[PM_PINHOLDERS_MAX];
	size_t i, k = 0;

	for (i = 0; i < n && k < PM_PINHOLDERS_MAX; i++) {
		memset(&h[k], 0, sizeof(h[k]));
		h[k].pid = tg[i];
		if (pm_pid_start_ticks(tg[i], &h[k].start_ticks) == 0)
			k++;
	}
	pm_fs_persist_pinholders(f->fs, h, (unsigned)k);
}

static void holders_changed(void *ctx)
{
	struct ffs *f = ctx;
	uint32_t tg[PM_PINHOLDERS_MAX];
	size_t n = lease_mgr_holder_list(f->lm, tg, PM_PINHOLDERS_MAX);

	persist_holders(f, tg, n < PM_PINHOLDERS_MAX ? n : PM_PINHOLDERS_MAX);
}

static void hook_ino_gone(void *ctx, uint64_t ino)
{
	lease_mgr_forget_ino(((struct ffs *)ctx)->lm, ino);
}

/* pm_pin_hooks.mappings: who maps the pool file, in pool blocks. */
static int hook_mappings(void *ctx, struct pm_run **out, size_t *n)
{
	struct ffs *f = ctx;
	struct lease_mapping *mp = NULL;
	struct pm_run *v;
	uint64_t dev, ino;
	size_t nmp = 0, i;
	int rc;

	*out = NULL;
	*n = 0;
	lease_mgr_pool(f->lm, &dev, &ino);
	rc = lease_maps_all(dev, ino, &mp, &nmp);
	if (rc || !nmp) {
		free(mp);
		return rc;
	}
	v = malloc(nmp * sizeof(*v));
	if (!v) {
		free(mp);
		return -ENOMEM;
	}
	for (i = 0; i < nmp; i++) {
		v[i].start = mp[i].off >> 12;
		v[i].n = ((mp[i].end + 4095) >> 12) - v[i].start;
	}
	free(mp);
	*out = v;
	*n = nmp;
	return 0;
}

static void lease_unpinned(void *ctx, uint64_t pblk, uint64_t n)
{
	pm_unquarantine(((struct ffs *)ctx)->fs, pblk, n);
}

/* lease_ops.notify: a notice for a PINFS_PIN_NOTIFY_EVENTS lease, to its
 * holder's event channel (never blocks: fusefs/evchan.c). */
static void lease_notify(void *ctx, const struct lease *l, uint32_t event, uint32_t policy,
			 uint32_t break_ms)
{
	struct ffs *f = ctx;
	struct pinfs_lease_event ev;

	if (!f->evchan || l->holder == LEASE_HOLDER_NONE)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.lease_id = l->id;
	ev.cookie = l->cookie;
	ev.ino = lease_file_ino(l);
	ev.offset = l->first << 12;
	ev.length = l->nblocks << 12;
	ev.event = event;
	ev.reason = policy;
	ev.break_ms = break_ms;
	ev.holder_pid = l->holder;
	ffs_evchan_send(f->evchan, l->holder, l->uid, &ev);
}

int ffs_leases_start(struct ffs *f, const struct lease_cfg *cfg)
{
	struct lease_ops ops = { .unpinned = lease_unpinned, .holders_changed = holders_changed,
				 .ctx = f, .may_park = may_park, .notify = lease_notify,
				 .layout_revoked = ffs_dax_revoked };
	struct pm_pin_hooks h = { .may_free = hook_may_free, .pinned = hook_pinned,
				  .pinned_span = hook_pinned_span,
				  .write_pinned = hook_write_pinned, .ino_gone = hook_ino_gone,
				  .mappings = hook_mappings, .ctx = f };
	struct lease_cfg c = *cfg;
	struct stat st;
	int rc;

	/* holders map this file: the manager reads who still does */
	if (fstat(f->pool->fd, &st) < 0)
		return -errno;
	c.pool_dev = st.st_dev;
	c.pool_ino = st.st_ino;
	/* the event channel first: the manager's notices go there. Without
	 * it the mount works; PINFS_PIN_NOTIFY_EVENTS pins get ENOTCONN. */
	rc = ffs_evchan_start(&f->evchan);
	if (rc)
		fprintf(stderr, "pinfs: no event channel (%s): PINFS_PIN_NOTIFY_EVENTS is refused\n",
			strerror(-rc));
	rc = lease_mgr_new(&c, &ops, &f->lm);

	if (rc) {
		ffs_evchan_stop(&f->evchan);
		return rc;
	}
	pm_fs_set_pin_hooks(f->fs, &h);
	/* without it pinfs-dax goes through FUSE: not a reason to fail */
	(void)ffs_dax_start(f);
	return 0;
}

void ffs_leases_stop(struct ffs *f)
{
	struct pm_pin_hooks none = { 0 };
	uint64_t nleases = 0, nblocks = 0;

	ffs_dax_stop();
	if (f->lm) {
		/* parked requests are answered (and no completion is running an
		 * engine call) before the hooks go */
		lease_mgr_stop(f->lm);
		lease_table_counts(lease_mgr_table(f->lm), &nleases, &nblocks);
	}
	if (f->fs) {
		/* the holders map the pool file itself: nothing here can stop
		 * them storing into blocks a later mount would reuse, so the
		 * pool remembers those still holding leases, and the next mount
		 * waits for them */
		uint32_t tg[PM_PINHOLDERS_MAX];
		size_t n = 0;

		/* the watch: processes with leases, and those still mapping the
		 * pool (blocks of leases that ended); not the idle ones */
		if (f->lm) {
			lease_watch_settle(lease_mgr_watch(f->lm));
			n = lease_mgr_holder_list(f->lm, tg, PM_PINHOLDERS_MAX);
		}

		if (n > PM_PINHOLDERS_MAX)
			n = PM_PINHOLDERS_MAX;
		persist_holders(f, tg, n);
		if (nleases)
			fprintf(stderr, "pinfs: unmounting with %llu leases on %llu blocks still held by "
					"%zu processes: the pool will not mount again until they are gone\n",
				(unsigned long long)nleases, (unsigned long long)nblocks, n);
	}

	if (f->fs)
		pm_fs_set_pin_hooks(f->fs, &none);
	lease_mgr_delete(&f->lm);
	/* after the manager: no thread of it sends notices any more */
	ffs_evchan_stop(&f->evchan);
}

/* ---- the ioctls ---------------------------------------------------------- */

/* An EVENTS read waiting for events, parked (lease/policy.c): no worker
 * sleeps for it. The completion thread replies. */
struct ev_park {
	fuse_req_t req;
	struct lease_mgr *lm;
	struct lease_wait *w;
	struct pinfs_events *out; /* malloc'd: the reply */
};

/* libfuse calls this with the request's lock held: only a flag is set */
static void ev_interrupted(fuse_req_t req, void *arg)
{
	struct ev_park *p = arg;

	(void)req;
	lease_wait_interrupt(p->lm, p->w);
}

static void ev_done(void *arg, int status)
{
	struct ev_park *p = arg;

	/* waits for a running ev_interrupted, and no other comes: p may go */
	fuse_req_interrupt_func(p->req, NULL, NULL);
	/* before the reply: the reader's next call must find its place free
	 * (its user's parked requests are counted until the wait ends) */
	lease_wait_end(p->lm, &p->w);
	if (status)
		fuse_reply_err(p->req, EINTR); /* interrupted, or unmounting */
	else
		fuse_reply_ioctl(p->req, 0, p->out, sizeof(*p->out));
	free(p->out);
	free(p);
}

/* PINFS_IOC_EVENTS: 0 with @out filled at once, -EINPROGRESS when the
 * request was parked (it owns @out then; replied later), -errno. A user
 * sees the events of their own holders' leases only; root sees all. */
static int do_events(fuse_req_t req, struct ffs *f, const struct pinfs_events *in,
		     struct pinfs_events *out)
{
	struct lease_wait *w = NULL;
	struct ev_park *p;
	int rc;

	rc = lease_mgr_events_nowait(f->lm, in->after_seq, in->timeout_ms, fuse_req_ctx(req)->uid,
				     out, &w);
	if (rc != -EINPROGRESS)
		return rc;
	p = malloc(sizeof(*p));
	if (!p) {
		lease_wait_end(f->lm, &w);
		return -ENOMEM;
	}
	p->req = req;
	p->lm = f->lm;
	p->w = w;
	p->out = out;
	fuse_req_interrupt_func(req, ev_interrupted, p);
	lease_wait_arm(f->lm, w, ev_done, p);
	return -EINPROGRESS;
}

struct pin_ctx {
	struct ffs *f;
	uint64_t ino, first, n, fh, gen;
	uint32_t holder, uid, flags, sig;
	uint64_t cookie;
	struct pinfs_pin *out;
};

static int pin_cb(void *p, const struct pm_seg *segs, size_t nsegs)
{
	struct pin_ctx *c = p;
	uint64_t *a = malloc(3 * nsegs * sizeof(*a));
	size_t i;
	int rc;

	if (!a)
		return -ENOMEM;
	for (i = 0; i < nsegs; i++) {
		a[i] = segs[i].fblk;
		a[nsegs + i] = segs[i].pblk;
		a[2 * nsegs + i] = segs[i].n;
	}
	rc = lease_pin_gen(c->f->lm, c->ino, c->first, c->n, c->holder, c->gen, c->uid, c->flags,
			   c->fh, a, a + nsegs, a + 2 * nsegs, nsegs, &c->out->lease_id);
	free(a);
	if (rc)
		return rc;
	/* with the file's data lock still held: no truncate can break the
	 * lease before its holder's choice of notices is on it */
	if (c->sig || c->cookie)
		lease_set_notify(lease_mgr_table(c->f->lm), c->out->lease_id, c->sig, c->cookie);
	c->out->nsegs_total = (uint32_t)nsegs;
	for (i = 0; i < nsegs && i < PINFS_SEGS_MAX; i++) {
		c->out->segs[i].file_off = segs[i].fblk << 12;
		c->out->segs[i].pool_off = segs[i].pblk << 12;
		c->out->segs[i].len = segs[i].n << 12;
	}
	c->out->nsegs = (uint32_t)i;
	return 0;
}

static int do_pin(fuse_req_t req, struct ffs_file *file, const struct pinfs_pin *in,
		  uint64_t cookie, struct pinfs_pin *out)
{
	struct ffs *f = fuse_req_userdata(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct pin_ctx c;
	struct stat st;
	bool may_alloc;
	uint64_t end;
	int rc;

	if ((in->flags & ~(PINFS_PIN_FLAGS | PINFS_PIN_NOTIFY_FLAGS | PINFS_PIN_SHORT |
			   PINFS_PIN_LAYOUT | PINFS_PIN_MMAP)) ||
	    ((in->flags & PINFS_PIN_MMAP) && !(in->flags & PINFS_PIN_LAYOUT)) ||
	    /* a layout lease is never waited for and never told: no notices,
	     * and it is no transfer (short) either */
	    ((in->flags & PINFS_PIN_LAYOUT) &&
	     (in->flags & (PINFS_PIN_NOTIFY_FLAGS | PINFS_PIN_SHORT))) ||
	    !in->length ||
	    __builtin_add_overflow(in->offset, in->length, &end))
		return -EINVAL;
	/* the signal a holder names is its choice (F_SETSIG), whatever its
	 * default action; only a number that is no signal is refused */
	if ((in->flags & PINFS_PIN_NOTIFY_SIGNAL)
		    ? in->notify_sig < 1 || in->notify_sig > (uint32_t)SIGRTMAX
		    : in->reserved != 0)
		return -EINVAL;
	if ((in->flags & PINFS_PIN_WRITE) && (file->flags & O_ACCMODE) == O_RDONLY)
		return -EBADF;
	pm_stat(f->fs, file->ip, &st);
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	/* a layout lease may cover allocated blocks past EOF (fallocate
	 * KEEP_SIZE: pinfs-dax preallocates ahead of its appends); it fills
	 * no hole there either, and a truncate or punch revokes it */
	if (end > (uint64_t)st.st_size && !(in->flags & PINFS_PIN_LAYOUT))
		return -EINVAL; /* pinning past EOF */
	/* who may pin (fusefs/access.c), before anything is allocated; a
	 * layout lease holds up nobody: mapping the pool is all it needs, and
	 * it never fills a hole (pinfs-dax writes holes through FUSE) */
	if (in->flags & PINFS_PIN_LAYOUT) {
		if (!ffs_dax_path())
			return -EOPNOTSUPP;
		rc = ffs_pool_access(req, f, in->flags & PINFS_PIN_WRITE);
		may_alloc = false;
	} else {
		rc = ffs_pin_access(req, f, file->ip, in->flags & PINFS_PIN_WRITE,
				    (file->flags & O_ACCMODE) != O_RDONLY, &may_alloc);
	}
	if (rc)
		return rc;
	/* refuse_longterm: a long-term pin is refused before anything is
	 * allocated, as FOLL_LONGTERM is on fs-dax */
	rc = lease_pin_allowed(f->lm, pm_ino(file->ip), ffs_file_policy(f, file->ip), in->flags,
			       lease_mgr_holder_of(f->lm, (uint32_t)ctx->pid), (uint32_t)ctx->uid);
	if (rc)
		return rc;
	/* notices on the channel need the channel open, by this process as
	 * this user, before the pin: else no notice could reach it */
	if ((in->flags & PINFS_PIN_NOTIFY_EVENTS) &&
	    (!f->evchan ||
	     !ffs_evchan_connected(f->evchan, lease_mgr_holder_of(f->lm, (uint32_t)ctx->pid),
				   (uint32_t)ctx->uid)))
		return -ENOTCONN;
	memset(out, 0, sizeof(*out));
	out->offset = in->offset;
	out->length = in->length;
	out->flags = in->flags & ~PINFS_PIN_MMAP; /* the dax slot's note only */
	out->notify_sig = in->flags & PINFS_PIN_NOTIFY_SIGNAL ? in->notify_sig : 0;
	c.f = f;
	c.ino = pm_ino(file->ip);
	c.first = in->offset >> 12;
	c.n = ((end - 1) >> 12) - c.first + 1;
	c.fh = (uint64_t)(uintptr_t)file;
	c.holder = lease_mgr_holder_of(f->lm, (uint32_t)ctx->pid);
	c.uid = (uint32_t)ctx->uid;
	c.flags = in->flags & ~PINFS_PIN_MMAP;
	c.sig = (in->flags & PINFS_PIN_NOTIFY_SIGNAL) ? in->notify_sig : 0;
	c.cookie = cookie;
	c.out = out;
	out->pin_offset = c.first << 12;
	out->pin_length = c.n << 12;
	/* a holder slot and room under the limits before any hole is
	 * filled: a refused pin allocates nothing */
	rc = lease_pin_begin(f->lm, c.ino, c.first, c.n, c.holder, c.uid, &c.gen);
	if (rc)
		return rc;
	rc = pm_pin_blocks(f->fs, file->ip, c.first, c.n,
			   ((in->flags & PINFS_PIN_WRITE) ? PM_PIN_WRITE : 0) |
				   (may_alloc ? 0 : PM_PIN_NOALLOC) |
				   ((in->flags & PINFS_PIN_LAYOUT) ? PM_PIN_PASTEOF : 0),
			   pin_cb, &c);
	lease_pin_end(f->lm, c.gen, rc == 0);
	if (!rc && (in->flags & PINFS_PIN_LAYOUT)) {
		uint32_t slot;
		rc = ffs_dax_slot_new(out->lease_id, c.ino, (in->flags & PINFS_PIN_MMAP) != 0, &slot);
		if (rc)
			(void)lease_unpin(f->lm, out->lease_id, c.holder, c.uid);
		else
			out->reserved = slot + 1;
	}
	return rc;
}

/* Where a lease's blocks sit in the pool: the holder's (or root's) to know,
 * as for PINFS_IOC_UNPIN; anyone else gets EPERM. */
static int do_segs(fuse_req_t req, const struct pinfs_segs *in, struct pinfs_segs *out)
{
	struct ffs *f = fuse_req_userdata(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	uint64_t fb[PINFS_SEGS_MAX], pb[PINFS_SEGS_MAX], len[PINFS_SEGS_MAX];
	struct lease l;
	long total;
	uint32_t i;
	int rc;

	if (in->reserved)
		return -EINVAL;
	rc = lease_get(lease_mgr_table(f->lm), in->lease_id, &l);
	if (rc)
		return rc;
	if (l.holder != lease_mgr_holder_of(f->lm, (uint32_t)ctx->pid) && ctx->uid != 0)
		return -EPERM;
	total = lease_segments(lease_mgr_table(f->lm), in->lease_id, in->first, fb, pb, len,
			       PINFS_SEGS_MAX);
	if (total < 0)
		return (int)total;
	memset(out, 0, sizeof(*out));
	out->lease_id = in->lease_id;
	out->first = in->first;
	out->nsegs_total = (uint32_t)total;
	for (i = 0; i < PINFS_SEGS_MAX && in->first + i < (uint64_t)total; i++) {
		out->segs[i].file_off = fb[i] << 12;
		out->segs[i].pool_off = pb[i] << 12;
		out->segs[i].len = len[i] << 12;
	}
	out->nsegs = i;
	return 0;
}

/* What PINFS_IOC_LIST and PINFS_IOC_LEASE say of lease @l. */
static void info_fill(struct ffs *f, const struct lease *l, const struct timespec *now,
		      struct pinfs_lease_info *o)
{
	uint64_t t = (uint64_t)now->tv_sec * 1000000000ull + (uint64_t)now->tv_nsec;

	o->lease_id = l->id;
	o->ino = lease_file_ino(l);
	o->offset = l->first << 12;
	o->length = l->nblocks << 12;
	/* an orphan (its holder gone, a mapping left) has no pid */
	o->holder_pid = l->holder == LEASE_HOLDER_NONE ? 0 : l->holder;
	o->flags = l->flags & (PINFS_PIN_FLAGS | PINFS_PIN_NOTIFY_FLAGS | PINFS_PIN_SHORT | PINFS_PIN_LAYOUT);
	o->state = l->state;
	o->age_ns = t > l->start_ns ? t - l->start_ns : 0;
	if (l->holder == LEASE_HOLDER_NONE)
		strcpy(o->comm, "?");
	else
		lease_mgr_comm(f->lm, l->holder, o->comm);
}

/* The whole mount's leases are root's to see; any other user sees only
 * their own (a file's leases: whoever may open the file). */
static int do_list(fuse_req_t req, uint64_t ino, const struct pinfs_list *in,
		   struct pinfs_list *out)
{
	struct ffs *f = fuse_req_userdata(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct lease l[PINFS_LIST_MAX];
	struct timespec now;
	size_t total, i;

	clock_gettime(CLOCK_MONOTONIC, &now);
	memset(out, 0, sizeof(*out));
	if (in->all && ctx->uid != 0)
		total = lease_list_user(lease_mgr_table(f->lm), (uint32_t)ctx->uid, in->first, l,
					PINFS_LIST_MAX);
	else
		total = lease_list(lease_mgr_table(f->lm), in->all ? 0 : ino, in->first, l,
				   PINFS_LIST_MAX);
	out->first = in->first;
	out->all = in->all;
	out->total = (uint32_t)total;
	for (i = 0; i < PINFS_LIST_MAX && in->first + i < total; i++)
		info_fill(f, &l[i], &now, &out->l[i]);
	out->n = (uint32_t)i;
	return 0;
}

/* Who may read a lease's cookie and notice signal: its holder, the user
 * who pinned it, or root (PINFS_IOC_LEASE, PINFS_IOC_LIST_EX). */
static bool may_see_lease(struct ffs *f, const struct fuse_ctx *ctx, const struct lease *l)
{
	return ctx->uid == 0 || l->uid == (uint32_t)ctx->uid ||
	       l->holder == lease_mgr_holder_of(f->lm, (uint32_t)ctx->pid);
}

/* PINFS_IOC_LIST_EX: as do_list, with the cookies. */
static int do_list_ex(fuse_req_t req, uint64_t ino, const struct pinfs_list_ex *in,
		      struct pinfs_list_ex *out)
{
	struct pinfs_list *plain = malloc(sizeof(*plain)), pin;
	struct ffs *f = fuse_req_userdata(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct lease l;
	uint32_t i;
	int rc;

	if (!plain)
		return -ENOMEM;
	memset(&pin, 0, sizeof(pin));
	pin.first = in->first;
	pin.all = in->all;
	rc = do_list(req, ino, &pin, plain);
	memset(out, 0, sizeof(*out));
	out->first = plain->first;
	out->all = plain->all;
	out->n = plain->n;
	out->total = plain->total;
	for (i = 0; !rc && i < plain->n; i++) {
		out->l[i].info = plain->l[i];
		/* a lease that ended between the two looks keeps cookie 0; a
		 * lease of another user's keeps it too, as PINFS_IOC_LEASE
		 * tells it only to the holder, its user or root */
		if (!lease_get(lease_mgr_table(f->lm), plain->l[i].lease_id, &l) &&
		    may_see_lease(f, ctx, &l)) {
			out->l[i].cookie = l.cookie;
			out->l[i].notify_sig = l.notify_sig;
		}
	}
	free(plain);
	return rc;
}

/* PINFS_IOC_LEASE: the holder, its user, or root. */
static int do_lease(fuse_req_t req, const struct pinfs_lease_query *in,
		    struct pinfs_lease_query *out)
{
	struct ffs *f = fuse_req_userdata(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct timespec now;
	struct lease l;
	int rc;

	if (in->reserved)
		return -EINVAL;
	rc = lease_get(lease_mgr_table(f->lm), in->lease_id, &l);
	if (rc)
		return rc;
	if (!may_see_lease(f, ctx, &l))
		return -EPERM;
	clock_gettime(CLOCK_MONOTONIC, &now);
	memset(out, 0, sizeof(*out));
	out->lease_id = l.id;
	out->cookie = l.cookie;
	out->notify_sig = l.notify_sig;
	info_fill(f, &l, &now, &out->info);
	return 0;
}

static int do_policy(fuse_req_t req, struct ffs_file *file, bool set, const struct pinfs_policy *in,
		     struct pinfs_policy *out)
{
	struct ffs *f = fuse_req_userdata(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	int rc;

	if (in->reserved || in->mount > 1 ||
	    (set && in->policy > PINFS_POLICY_BREAK && in->policy != PINFS_POLICY_NOLONGTERM))
		return -EINVAL;
	if (set && in->mount && in->policy == PINFS_POLICY_DEFAULT)
		return -EINVAL;
	if (set) {
		const char *name = lease_policy_name(in->policy);
		if (in->mount) {
			if (ctx->uid != 0)
				return -EPERM;
			lease_mgr_set_policy(f->lm, in->policy);
			return 0;
		}
		rc = ffs_may_set_policy(req, f, file->ip);
		if (rc)
			return rc;
		if (in->policy == PINFS_POLICY_DEFAULT) {
			rc = pm_removexattr(f->fs, file->ip, PINFS_XATTR_POLICY);
			return rc == -ENODATA ? 0 : rc;
		}
		return pm_setxattr(f->fs, file->ip, PINFS_XATTR_POLICY, name, strlen(name), 0);
	}
	memset(out, 0, sizeof(*out));
	out->mount = in->mount;
	out->policy = in->mount ? lease_mgr_policy(f->lm) : ffs_file_policy(f, file->ip);
	out->effective = out->policy == PINFS_POLICY_DEFAULT ? lease_mgr_policy(f->lm) : out->policy;
	return 0;
}

static void wb_fill(struct pinfs_counters *c, const struct pm_wb_stats *w)
{
	c->dirty_blocks = w->dirty;
	c->clean_blocks = w->clean;
	c->flushed_background = w->flushed_background;
	c->flushed_integrity = w->flushed_integrity;
	c->flushed_write = w->flushed_write;
	c->pinned_kept_dirty = w->pinned_kept_dirty;
	c->csum_failures = w->csum_failures;
}

static void do_stats(struct ffs *f, uint32_t uid, struct ffs_file *file, struct pinfs_stats *out)
{
	struct pm_wb_stats w;

	memset(out, 0, sizeof(*out));
	lease_mgr_counters(f->lm, pm_ino(file->ip), &out->file);
	lease_mgr_counters(f->lm, 0, &out->mount);
	if (uid != 0) {
		/* the mount's leases are root's to see: a user sees their own */
		uint64_t nbytes;
		lease_user_counts(lease_mgr_table(f->lm), uid, &out->mount.pins, &nbytes);
		out->mount.pinned_blocks = nbytes >> 12;
		out->mount.parked = lease_mgr_parked(f->lm, uid);
	}
	out->mount.quarantined_blocks = pm_quarantined(f->fs);
	pm_sever_counts(f->fs, &out->mount.severed_blocks, &out->mount.unsevered_blocks);
	(void)pm_fs_dense(f->fs, NULL, &out->mount.zeroed_blocks, &out->mount.zeroing_blocks);
	out->mount.mmap_lost_bytes = __atomic_load_n(&f->mmap_lost_bytes, __ATOMIC_RELAXED);
	out->mount.transport = ffs_uring_transport();
	out->mount.ring_requests = ffs_uring_requests();
	/* pins beside ordinary references (open files, plain mappings) */
	ffs_open_counts(file->ip, &out->file.open_handles, &out->mount.open_handles);
	out->file.mapped_files = ffs_coh_cached(pm_ino(file->ip), 0, 0);
	out->mount.mapped_files = ffs_coh_files();
	pm_inode_wb_stats(f->fs, file->ip, &w);
	wb_fill(&out->file, &w);
	/* a pinned block is always dirty: the pinned share of the dirty set */
	out->file.pinned_dirty_blocks = out->file.pinned_blocks < w.dirty ? out->file.pinned_blocks
									   : w.dirty;
	pm_fs_wb_stats(f->fs, &w);
	wb_fill(&out->mount, &w);
	out->mount.pinned_dirty_blocks = out->mount.pinned_blocks < w.dirty ? out->mount.pinned_blocks
									     : w.dirty;
}

static int do_scrub(struct ffs *f, struct ffs_file *file, const struct pinfs_scrub *in,
		    struct pinfs_scrub *out)
{
	struct pm_scrub r;
	int rc;

	if (in->reserved || in->all > 1)
		return -EINVAL;
	rc = pm_scrub(f->fs, in->all ? NULL : file->ip, &r);
	if (rc)
		return rc;
	memset(out, 0, sizeof(*out));
	out->all = in->all;
	out->files = r.files;
	out->checked = r.checked;
	out->bad = r.bad;
	out->skipped_dirty = r.skipped_dirty;
	out->skipped_pinned = r.skipped_pinned;
	out->skipped_nocsum = r.skipped_nocsum;
	out->first_bad_ino = r.first_bad_ino;
	out->first_bad_off = r.first_bad_off;
	return 0;
}

/* The real uid of process @pid (the owner of /proc/PID/status), or @dflt. */
static uint32_t proc_uid(uint32_t pid, uint32_t dflt)
{
	char path[64], line[256];
	unsigned ruid;
	FILE *fp;

	snprintf(path, sizeof(path), "/proc/%u/status", pid);
	fp = fopen(path, "re");
	if (!fp)
		return dflt;
	while (fgets(line, sizeof(line), fp))
		if (sscanf(line, "Uid: %u", &ruid) == 1) {
			dflt = ruid;
			break;
		}
	fclose(fp);
	return dflt;
}

/*
 * PINFS_IOC_STATUS: who serves the mount, how, since when, and who holds
 * pins. Every holder is listed for root; for another user only their own
 * (the uid that pinned, or the process's real uid for a holder with no
 * lease left), the others counted in holders_hidden. Takes the lease table
 * lock per lease_list() call only: a holder that comes or goes meanwhile
 * may be missed or listed without leases, as /proc readers expect.
 */
static int do_status(struct ffs *f, uint32_t uid, const struct pinfs_status *in,
		     struct pinfs_status *out)
{
	struct lease_table *t = lease_mgr_table(f->lm);
	uint32_t pids[PM_PINHOLDERS_MAX];
	/* one record per holder, its uid from /proc until a lease says */
	struct pinfs_status_holder h[PM_PINHOLDERS_MAX];
	bool uid_known[PM_PINHOLDERS_MAX];
	struct lease l[64];
	struct timespec now;
	size_t nh, total, first = 0, i, k;
	uint64_t mono;
	int n;

	for (i = 0; i < sizeof(in->reserved) / sizeof(in->reserved[0]); i++)
		if (in->reserved[i])
			return -EINVAL;
	memset(out, 0, sizeof(*out));
	clock_gettime(CLOCK_MONOTONIC, &now);
	mono = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
	out->daemon_pid = (uint32_t)getpid();
	out->transport = ffs_uring_transport();
	out->start_time_ns = f->start_real_ns;
	out->uptime_ns = mono > f->start_mono_ns ? mono - f->start_mono_ns : 0;
	if (f->pool->is_pmem)
		out->flags |= PINFS_STATUS_PMEM;
	if (pm_fs_errors(f->fs))
		out->flags |= PINFS_STATUS_READONLY;
	snprintf(out->pool, sizeof(out->pool), "%s", f->pool_path);
	n = snprintf(out->options, sizeof(out->options), "policy=%s,",
		     lease_policy_name(lease_mgr_policy(f->lm)));
	/* the rest as much as fits (main.c keeps it far shorter) */
	i = strnlen(f->options, sizeof(f->options));
	if (i > sizeof(out->options) - 1 - (size_t)n)
		i = sizeof(out->options) - 1 - (size_t)n;
	memcpy(out->options + n, f->options, i);
	out->options[n + i] = '\0';

	nh = lease_mgr_holder_list(f->lm, pids, PM_PINHOLDERS_MAX);
	if (nh > PM_PINHOLDERS_MAX)
		nh = PM_PINHOLDERS_MAX;
	memset(h, 0, sizeof(h));
	for (k = 0; k < nh; k++) {
		h[k].pid = pids[k];
		uid_known[k] = false;
	}
	do {
		total = lease_list(t, 0, first, l, 64);
		for (i = 0; i < 64 && first + i < total; i++) {
			if (uid == 0 || l[i].uid == uid)
				out->leases++;
			for (k = 0; k < nh && h[k].pid != l[i].holder; k++)
				;
			if (k == nh)
				continue; /* an orphan, or a holder that came meanwhile */
			h[k].uid = l[i].uid;
			uid_known[k] = true;
			h[k].leases++;
			if (l[i].state != PINFS_LEASE_ACTIVE && l[i].state != PINFS_LEASE_BREAKING)
				h[k].revoked++;
			h[k].pinned_bytes += l[i].nblocks << 12;
		}
		first += 64;
	} while (first < total);
	for (k = 0; k < nh; k++) {
		if (!uid_known[k])
			h[k].uid = proc_uid(h[k].pid, UINT32_MAX);
		if (uid != 0 && h[k].uid != uid) {
			out->holders_hidden++;
			continue;
		}
		out->holders_total++;
		if (out->nholders < PINFS_STATUS_HOLDERS_MAX) {
			lease_mgr_comm(f->lm, h[k].pid, h[k].comm);
			out->holders[out->nholders++] = h[k];
		}
	}
	return 0;
}

/* PINFS_IOC_GROW: the size up to @in->size, never down (pm_grow); the
 * kernel's cached size is dropped before the reply, so that a stat after
 * the ioctl returns sees the new one. */
/* GROW and TRIM change the file's blocks or size: a writer's fd, and a
 * reserved field of 0. */
static int writer_args(const struct ffs_file *file, uint64_t reserved)
{
	if (reserved)
		return -EINVAL;
	return (file->flags & O_ACCMODE) == O_RDONLY ? -EBADF : 0;
}

static int do_grow(struct ffs *f, struct ffs_file *file, const struct pinfs_grow *in)
{
	struct stat a, b;
	int rc = writer_args(file, in->reserved);

	if (rc)
		return rc;
	pm_stat(f->fs, file->ip, &a);
	rc = pm_grow(f->fs, file->ip, in->size);
	pm_stat(f->fs, file->ip, &b);
	if (!rc && b.st_size != a.st_size)
		ffs_inval_attr(f, pm_ino(file->ip));
	return rc;
}

/* PINFS_IOC_TRIM: the blocks past EOF up to @in->end (pm_trim_eof). Only
 * layout leases cover blocks past EOF, and they never make a punch wait;
 * were one to, the trim (best effort) fails with EBUSY, unparked. */
static int do_trim(struct ffs *f, struct ffs_file *file, const struct pinfs_trim *in, uint32_t uid)
{
	struct lease_wait *w = NULL;
	int rc = writer_args(file, in->reserved);

	if (rc)
		return rc;
	ffs_set_wait(&w, uid);
	rc = pm_trim_eof(f->fs, file->ip, in->end);
	ffs_set_wait(NULL, 0);
	lease_wait_end(f->lm, &w);
	return rc == -EINPROGRESS ? -EBUSY : rc;
}

void ffs_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
	       struct fuse_file_info *fi, unsigned flags, const void *in_buf, size_t in_bufsz,
	       size_t out_bufsz)
{
	struct ffs *f = fuse_req_userdata(req);
	struct ffs_file *file = (struct ffs_file *)(uintptr_t)fi->fh;
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	union {
		struct pinfs_pin pin;
		struct pinfs_segs segs;
		struct pinfs_list list;
		struct pinfs_policy policy;
		struct pinfs_stats stats;
		struct pinfs_events events;
		struct pinfs_scrub scrub;
		struct pinfs_ops ops;
		struct pinfs_pin_ex pin_ex;
		struct pinfs_lease_query lease;
		struct pinfs_list_ex list_ex;
		struct pinfs_status status;
	} *out = NULL;
	size_t in_need = 0, out_len = 0;
	struct attr_sig before, after;
	bool may_change;
	int rc;

	size_t stats_len = 0;

	(void)arg;
	if (flags & (FUSE_IOCTL_COMPAT | FUSE_IOCTL_UNRESTRICTED)) {
		fuse_reply_err(req, ENOTTY);
		return;
	}
	/* PINFS_IOC_STATS of a client built before struct pinfs_counters
	 * grew: its size (in the command) says how many counters it knows,
	 * and it gets those of the file and of the mount */
	if (_IOC_TYPE(cmd) == PINFS_IOC_MAGIC && _IOC_NR(cmd) == _IOC_NR(PINFS_IOC_STATS) &&
	    _IOC_DIR(cmd) == _IOC_READ && _IOC_SIZE(cmd) < sizeof(struct pinfs_stats) &&
	    _IOC_SIZE(cmd) >= 2 * 13 * sizeof(uint64_t) && _IOC_SIZE(cmd) % 16 == 0) {
		stats_len = _IOC_SIZE(cmd);
		cmd = PINFS_IOC_STATS;
	}
	switch (cmd) {
	case PINFS_IOC_PIN: in_need = sizeof(struct pinfs_pin); out_len = in_need; break;
	case PINFS_IOC_SEGS: in_need = sizeof(struct pinfs_segs); out_len = in_need; break;
	case PINFS_IOC_UNPIN: in_need = sizeof(struct pinfs_unpin); break;
	case PINFS_IOC_LIST: in_need = sizeof(struct pinfs_list); out_len = in_need; break;
	case PINFS_IOC_GET_POLICY: in_need = sizeof(struct pinfs_policy); out_len = in_need; break;
	case PINFS_IOC_SET_POLICY: in_need = sizeof(struct pinfs_policy); break;
	case PINFS_IOC_STATS: out_len = stats_len ? stats_len : sizeof(struct pinfs_stats); break;
	case PINFS_IOC_EVENTS: in_need = sizeof(struct pinfs_events); out_len = in_need; break;
	case PINFS_IOC_SCRUB: in_need = sizeof(struct pinfs_scrub); out_len = in_need; break;
	case PINFS_IOC_OPS: out_len = sizeof(struct pinfs_ops); break;
	case PINFS_IOC_PIN_EX: in_need = sizeof(struct pinfs_pin_ex); out_len = in_need; break;
	case PINFS_IOC_LEASE: in_need = sizeof(struct pinfs_lease_query); out_len = in_need; break;
	case PINFS_IOC_LIST_EX: in_need = sizeof(struct pinfs_list_ex); out_len = in_need; break;
	case PINFS_IOC_STATUS: in_need = sizeof(struct pinfs_status); out_len = in_need; break;
	case PINFS_IOC_GROW: in_need = sizeof(struct pinfs_grow); break;
	case PINFS_IOC_TRIM: in_need = sizeof(struct pinfs_trim); break;
	default:
		fuse_reply_err(req, ENOTTY);
		return;
	}
	if (in_bufsz < in_need || out_bufsz < out_len || !file) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (out_len && !(out = calloc(1, sizeof(*out)))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	(void)ino;
	may_change = cmd == PINFS_IOC_PIN || cmd == PINFS_IOC_PIN_EX || cmd == PINFS_IOC_SET_POLICY ||
		     cmd == PINFS_IOC_TRIM;
	if (may_change)
		attr_sig(f, file->ip, &before);
	switch (cmd) {
	case PINFS_IOC_PIN:
		rc = do_pin(req, file, in_buf, 0, &out->pin);
		break;
	case PINFS_IOC_PIN_EX: {
		const struct pinfs_pin_ex *x = in_buf;
		rc = x->reserved[0] || x->reserved[1] || x->reserved[2]
			     ? -EINVAL
			     : do_pin(req, file, &x->pin, x->cookie, &out->pin_ex.pin);
		if (!rc)
			out->pin_ex.cookie = x->cookie;
		break;
	}
	case PINFS_IOC_LEASE:
		rc = do_lease(req, in_buf, &out->lease);
		break;
	case PINFS_IOC_LIST_EX:
		rc = do_list_ex(req, pm_ino(file->ip), in_buf, &out->list_ex);
		break;
	case PINFS_IOC_SEGS:
		rc = do_segs(req, in_buf, &out->segs);
		break;
	case PINFS_IOC_UNPIN: {
		const struct pinfs_unpin *u = in_buf;
		rc = u->reserved ? -EINVAL
				 : lease_unpin(f->lm, u->lease_id,
					       lease_mgr_holder_of(f->lm, (uint32_t)ctx->pid), ctx->uid);
		break;
	}
	case PINFS_IOC_LIST:
		rc = do_list(req, pm_ino(file->ip), in_buf, &out->list);
		break;
	case PINFS_IOC_GET_POLICY:
		rc = do_policy(req, file, false, in_buf, &out->policy);
		break;
	case PINFS_IOC_SET_POLICY:
		rc = do_policy(req, file, true, in_buf, NULL);
		break;
	case PINFS_IOC_STATS:
		do_stats(f, (uint32_t)ctx->uid, file, &out->stats);
		if (stats_len) /* the old layout: the first counters of each */
			memmove((char *)&out->stats + stats_len / 2, &out->stats.mount,
				stats_len / 2);
		rc = 0;
		break;
	case PINFS_IOC_SCRUB:
		rc = do_scrub(f, file, in_buf, &out->scrub);
		break;
	case PINFS_IOC_OPS:
		for (int i = 0; i < PINFS_OPS_MAX; i++)
			out->ops.count[i] = __atomic_load_n(&ffs_op_count[i], __ATOMIC_RELAXED);
		rc = 0;
		break;
	case PINFS_IOC_STATUS:
		rc = do_status(f, (uint32_t)ctx->uid, in_buf, &out->status);
		break;
	case PINFS_IOC_GROW:
		rc = do_grow(f, file, in_buf);
		break;
	case PINFS_IOC_TRIM:
		rc = do_trim(f, file, in_buf, (uint32_t)ctx->uid);
		break;
	default: /* PINFS_IOC_EVENTS */
		rc = do_events(req, f, in_buf, &out->events);
		if (rc == -EINPROGRESS)
			return; /* parked: replied later, @out with it */
		break;
	}
	/* before the reply, so that a stat after the ioctl returns sees it; a
	 * failed pin may have filled holes too (a refusal after the fill) */
	if (may_change) {
		attr_sig(f, file->ip, &after);
		if (memcmp(&before, &after, sizeof(before)))
			ffs_inval_attr(f, pm_ino(file->ip));
	}
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_ioctl(req, 0, out, out_len);
	free(out);
}

/* SPDX-License-Identifier: MIT */
/*
 * lease/policy.c -- the lease manager and the truncate policies.
 *
 * What to do when a truncate or hole punch would free pinned blocks is the
 * question Linux argued about for years. The kernel's answer today
 * (dax_layout_busy_page() / xfs_break_layouts()) is to wait for the pins to
 * go, possibly forever; Harrosh argued for failing the operation (EBUSY);
 * Weiny's lease prototype revoked the holder's lease with SIGBUS when the
 * pinning call site said it could take it (ETXTBSY otherwise); NFS
 * delegations break with a grace period first. pinfs implements all four,
 * per file, and lease_may_free() is where they differ:
 *
 *   fail    refuse at once with busy_errno; nothing changes
 *   revoke  every affected lease must be revocable, else refuse as "fail";
 *           each is marked revoked and its holder gets SIGBUS (si_value =
 *           lease id); the operation goes ahead at once
 *   wait    sleep until the affected pins are gone, at most wait_timeout
 *           seconds (then refuse); an interrupted caller gets EINTR
 *   break   mark each lease breaking and tell the holders that asked (the
 *           signal a PINFS_PIN_NOTIFY_SIGNAL holder named, si_value = lease
 *           id; a record on a PINFS_PIN_NOTIFY_EVENTS holder's channel);
 *           wait up to lease_break_time for them to unpin; then revoke what
 *           is left, as "revoke" does. A holder that asked for nothing is
 *           sent nothing (F_SETLEASE tells only who asked): its break time
 *           passes, then it is revoked or the truncate refused
 *
 * A revoked lease no longer owns its file range -- the range may be
 * truncated and written again -- but its blocks stay pinned: the file system
 * quarantines them when it frees them, and gets them back through
 * lease_ops.unpinned when the former holder unpins (acknowledging the
 * revocation) or exits. So no one ever reads another file's data through a
 * stale mapping, and a holder's late stores never land in another file.
 * A PINFS_PIN_ON_CLOSE lease ends at release the same way (lease_release_fh).
 *
 * The caller holds the file's data lock across lease_may_free() and the
 * freeing, and pinning takes the same lock, so no new pin can slip in
 * between the decision and the act (xfs_break_layouts() relies on the same
 * property of the MMAPLOCK).
 *
 * Nobody sleeps in a FUSE worker. libfuse serves a mount with a handful of
 * worker threads; a truncate waiting out a pin (wait, break) or an EVENTS
 * read waiting for an event would hold one each, and a user with a few
 * threads could leave none for anybody else's stat. So those requests are
 * parked (struct lease_wait): lease_may_free_nowait() makes the same
 * decisions as lease_may_free() but, where the latter would sleep, answers
 * -EINPROGRESS; the caller drops its locks, returns from its handler without
 * replying and arms the wait. The manager's completion thread ("completer")
 * calls the wait back when it is worth looking again -- a pin ended, the
 * deadline passed, the request was interrupted -- and the caller runs the
 * operation again from the start (retaking its locks and asking again, so
 * every decision is made under the data lock, as before) and replies from
 * there. EVENTS waits are answered by the completer itself once an event the
 * reader may see is recorded or its timeout passes.
 *
 * A parked request is cheap here (a struct lease_wait) but not in the
 * transport: over io_uring it keeps a ring entry until it is answered
 * (fusefs/uring.c), and one user's thousands of EVENTS reads once took
 * every entry, so that other users' requests waited seconds for one. So
 * each user may have cfg.max_parked_per_user waits at once (park_take),
 * and a wait is made only when the transport says it has room
 * (ops.may_park). Past either bound the request is answered at once: an
 * EVENTS read with EAGAIN (pinfsctl then polls), a truncate that would wait
 * with the refusal, as under policy fail.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lease/lease.h"

#define EV_RING 4096u
#define COMM_CACHE 256u
#define UID_NONE UINT32_MAX /* an event nobody but root may see */

struct fcount { /* per-file counters */
	uint64_t ino, revoked, broken, refused;
	uint64_t short_expired, longterm_refused; /* issue 17 */
};

/* A live short-term pin (PINFS_PIN_SHORT) and when it expires
 * (CLOCK_MONOTONIC ns): the completer revokes it then (short_expire). */
struct short_pin {
	uint64_t id, expires;
};

/* A truncate or punch waiting on pins (wait/break): new pins on its range
 * are refused meanwhile, as Linux refuses a new lease while one is being
 * broken (generic_add_lease: EAGAIN), so the waiter cannot be starved and no
 * late pin is revoked without its own notice. */
struct pending {
	uint64_t ino, first, n;
};
#define MAX_PENDING 64

/*
 * A parked request (see the top of this file): a truncate or punch waiting
 * on pins (W_FREE) or an EVENTS read waiting for events (W_EVENTS). Its
 * owner (the file system) makes it, arms it, and ends it with
 * lease_wait_end(); while it is armed it is on m->parked and the completer
 * calls @fn once, unlinking it first.
 */
enum { W_FREE, W_EVENTS };
struct lease_wait {
	struct lease_wait *next, *prev; /* on m->parked while armed; m->lock */
	int kind;
	bool armed;		  /* m->lock */
	bool interrupted;	  /* m->lock */
	int status;		  /* for @fn; the completer's */
	uint64_t deadline;	  /* CLOCK_MONOTONIC ns; fixed before it is armed */
	lease_wait_fn fn;	  /* set by lease_wait_arm */
	void *arg;
	/* W_FREE: the range asked for; only the owner's thread touches these */
	uint64_t ino, first, n;
	uint32_t policy;	  /* any but DEFAULT: WAIT, BREAK, or one that
				   * waits only for short pins */
	double timeout;		  /* policy wait: seconds (INFINITY), < 0: the mount's */
	bool pending;		  /* on m->pend */
	bool decided;		  /* the last step decided (no unbreak at the end) */
	uint64_t gen;		  /* m->gen when last found pinned; m->lock */
	/* W_EVENTS */
	uint64_t after;		  /* the reader's after_seq */
	uint64_t scanned;	  /* events up to here hold nothing for @uid; m->lock */
	uint32_t uid;		  /* the reader: sees its holders' events, root all */
	struct pinfs_events *out; /* filled by the completer before @fn */
	/* both: one of user @park_uid's parked requests (park_take) */
	bool counted;
	uint32_t park_uid;
};

/* Parked waits of one user (m->park, for cfg.max_parked_per_user). */
struct park_user {
	uint32_t uid, n;
};

/*
 * Locking
 *  1. m->lock guards the event ring, the counters, the comm cache, gen and
 *     the policy. It is a leaf lock except that it is taken inside the
 *     lease table's callbacks' callers, never the other way round.
 *  2. m->cv is signalled (broadcast) with m->lock held whenever a pin ends
 *     (gen changes), an event is recorded, a wait is armed or interrupted,
 *     or the manager stops: the completer and the blocking callers of
 *     lease_may_free() (no FUSE worker; tests) sleep on it.
 *  3. The lease table has its own lock (lease/pin.c); the table never calls
 *     back with it held.
 *  4. The completer calls a wait's fn without m->lock (fn runs the file
 *     system's operation again, which takes its own locks and this one);
 *     the file system's interruption callback takes m->lock inside libfuse's
 *     request lock, so nothing here calls into libfuse with m->lock held.
 */
struct lease_mgr {
	struct lease_cfg cfg;	 /* cfg.policy protected by lock */
	struct lease_ops ops;
	struct lease_table *t;
	struct lease_watch *w;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	uint64_t gen;		 /* pins ended so far; lock */
	struct pinfs_event *ring; /* lock */
	uint64_t seq;		 /* last event; lock */
	struct pinfs_counters mc; /* mount counters; lock */
	struct pending pend[MAX_PENDING]; /* lock */
	unsigned npend;		 /* lock */
	struct fcount *fc;	 /* per-file counters; lock */
	size_t nfc, capfc;
	uint32_t *ring_uid;	 /* whose event ring[i] is (UID_NONE: root's); lock */
	struct lease_wait parked; /* armed waits (list head); lock */
	struct park_user *park;	 /* users with counted waits (n > 0); lock */
	size_t npark, cappark;	 /* lock */
	uint64_t nparked;	 /* counted waits, all users; lock */
	pthread_t completer;
	bool stop;		 /* lease_mgr_stop began; lock */
	struct short_pin *shorts; /* short pins by expiry (see short_add); lock */
	size_t nshort, capshort; /* lock */
	struct {
		uint32_t tgid;
		char comm[16];
	} comm[COMM_CACHE];	 /* lock */
};

static uint64_t now_ns(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint32_t lease_tgid_of(uint32_t tid)
{
	char path[64], line[128];
	uint32_t tgid = tid;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%u/status", tid);
	f = fopen(path, "re");
	if (!f)
		return tid;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Tgid: %u", &tgid) == 1)
			break;
	fclose(f);
	return tgid;
}

uint32_t lease_mgr_holder_of(struct lease_mgr *m, uint32_t tid)
{
	return lease_watch_has(m->w, tid) ? tid : lease_tgid_of(tid);
}

/* Called with m->lock held. */
static const char *comm_of(struct lease_mgr *m, uint32_t tgid)
{
	unsigned slot = tgid % COMM_CACHE;

	if (m->comm[slot].tgid != tgid) {
		char path[64];
		int fd;
		ssize_t n;

		m->comm[slot].tgid = tgid;
		memset(m->comm[slot].comm, 0, sizeof(m->comm[slot].comm));
		snprintf(path, sizeof(path), "/proc/%u/comm", tgid);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		n = fd >= 0 ? read(fd, m->comm[slot].comm, 15) : -1;
		if (fd >= 0)
			close(fd);
		if (n > 0 && m->comm[slot].comm[n - 1] == '\n')
			m->comm[slot].comm[n - 1] = 0;
		if (n <= 0)
			strcpy(m->comm[slot].comm, "?");
	}
	return m->comm[slot].comm;
}

/* The counters of file @ino, or NULL; m->lock held. */
static struct fcount *fcount_find(struct lease_mgr *m, uint64_t ino)
{
	size_t i;

	for (i = 0; i < m->nfc; i++)
		if (m->fc[i].ino == ino)
			return &m->fc[i];
	return NULL;
}

/* The same, made when missing (an event to count); NULL without memory.
 * Entries exist only for files that had an event, until the file is
 * destroyed (lease_mgr_forget_ino). */
static struct fcount *fcount(struct lease_mgr *m, uint64_t ino)
{
	struct fcount *f = fcount_find(m, ino);

	if (f)
		return f;
	if (m->nfc == m->capfc) {
		size_t ncap = m->capfc ? m->capfc * 2 : 16;
		struct fcount *n = realloc(m->fc, ncap * sizeof(*n));
		if (!n)
			return NULL;
		m->fc = n;
		m->capfc = ncap;
	}
	memset(&m->fc[m->nfc], 0, sizeof(m->fc[0]));
	m->fc[m->nfc].ino = ino;
	return &m->fc[m->nfc++];
}

/* May the reader @uid see event @seq? Its holders' events, root all;
 * m->lock held. */
static bool ev_visible(const struct lease_mgr *m, uint64_t seq, uint32_t uid)
{
	return uid == 0 || m->ring_uid[seq % EV_RING] == uid;
}

/* Records an event; called with m->lock held. It is @l's holder's (root
 * sees all): lease-less events set ring_uid themselves. */
static void ev_push(struct lease_mgr *m, uint32_t type, const struct lease *l, uint64_t ino,
		    uint64_t first, uint64_t n, int err, uint32_t policy)
{
	struct pinfs_event *e = &m->ring[++m->seq % EV_RING];

	m->ring_uid[m->seq % EV_RING] = l ? l->uid : UID_NONE;

	memset(e, 0, sizeof(*e));
	e->seq = m->seq;
	e->time_ns = now_ns(CLOCK_REALTIME);
	e->type = type;
	e->err = err;
	e->policy = policy;
	e->ino = ino;
	e->offset = first << 12;
	e->length = n == UINT64_MAX ? UINT64_MAX : n << 12;
	if (l) {
		e->lease_id = l->id;
		e->holder_pid = l->holder;
		e->ino = lease_file_ino(l);
		e->offset = l->first << 12;
		e->length = l->nblocks << 12;
		memcpy(e->comm, comm_of(m, l->holder), sizeof(e->comm));
	}
	pthread_cond_broadcast(&m->cv);
}

/* Tells @l's holder of @event on its event channel, if it asked for that;
 * no lease lock held. */
static void notify(struct lease_mgr *m, const struct lease *l, uint32_t event, uint32_t policy,
		   uint32_t break_ms)
{
	if ((l->flags & PINFS_PIN_NOTIFY_EVENTS) && m->ops.notify)
		m->ops.notify(m->ops.ctx, l, event, policy, break_ms);
}

static void unpinned(void *ctx, uint64_t pblk, uint64_t n)
{
	struct lease_mgr *m = ctx;

	if (m->ops.unpinned)
		m->ops.unpinned(m->ops.ctx, pblk, n);
}

static void holder_gone(void *ctx, uint32_t tgid, uint64_t gen)
{
	struct lease_mgr *m = ctx;
	uint32_t uid = UID_NONE;
	int n;

	if (!gen) { /* mappers left the watch */
		lease_mgr_holders_changed(m);
		return;
	}
	n = lease_end_holder(m, tgid, gen, &uid); /* lease/holder.c */
	pthread_mutex_lock(&m->lock);
	if (n > 0) {
		struct lease l;
		memset(&l, 0, sizeof(l));
		l.holder = tgid;
		l.uid = uid; /* its leases' user's event (and root's) */
		ev_push(m, PINFS_EV_EXIT, &l, 0, 0, 0, 0, 0);
		m->ring[m->seq % EV_RING].nleases = (uint64_t)n;
	}
	m->gen++;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->lock);
	lease_mgr_holders_changed(m);
}

size_t lease_mgr_holder_list(struct lease_mgr *m, uint32_t *out, size_t max)
{
	return lease_watch_list(m->w, out, max);
}

static void *completer_main(void *arg);

int lease_mgr_new(const struct lease_cfg *cfg, const struct lease_ops *ops,
		  struct lease_mgr **out)
{
	struct lease_mgr *m = calloc(1, sizeof(*m));
	pthread_condattr_t ca;
	int rc;

	if (!m)
		return -ENOMEM;
	m->cfg = *cfg;
	if (!(m->cfg.short_pin_max > 0))
		m->cfg.short_pin_max = LEASE_SHORT_PIN_MAX;
	m->ops = *ops;
	m->ring = calloc(EV_RING, sizeof(*m->ring));
	m->ring_uid = calloc(EV_RING, sizeof(*m->ring_uid));
	if (!m->ring || !m->ring_uid) {
		free(m->ring);
		free(m->ring_uid);
		free(m);
		return -ENOMEM;
	}
	m->parked.next = m->parked.prev = &m->parked;
	pthread_mutex_init(&m->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m->cv, &ca);
	pthread_condattr_destroy(&ca);
	rc = lease_table_new(&m->t);
	if (!rc) {
		lease_table_set_limits(m->t, cfg->max_pins, cfg->max_pinned_bytes);
		lease_table_set_user_limits(m->t, cfg->max_pins_per_user,
					    cfg->max_pinned_bytes_per_user);
		rc = lease_watch_new(holder_gone, lease_sweep_orphans, m, cfg->max_holders,
				     cfg->pool_dev, cfg->pool_ino, &m->w);
	}
	if (!rc) {
		rc = -pthread_create(&m->completer, NULL, completer_main, m);
		if (rc)
			lease_watch_delete(&m->w);
	}
	if (rc) {
		lease_table_delete(&m->t);
		pthread_cond_destroy(&m->cv);
		pthread_mutex_destroy(&m->lock);
		free(m->ring);
		free(m->ring_uid);
		free(m);
		return rc;
	}
	*out = m;
	return 0;
}

void lease_mgr_stop(struct lease_mgr *m)
{
	bool was;

	/* the completer first: it may be running a wait's fn, which runs an
	 * engine call; then every wait still parked is told, so that its
	 * owner replies and ends it (nothing may stay parked) */
	pthread_mutex_lock(&m->lock);
	was = m->stop;
	m->stop = true;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->lock);
	if (!was)
		pthread_join(m->completer, NULL);
	for (;;) {
		struct lease_wait *w;

		pthread_mutex_lock(&m->lock);
		w = m->parked.next;
		if (w == &m->parked) {
			pthread_mutex_unlock(&m->lock);
			break;
		}
		w->prev->next = w->next;
		w->next->prev = w->prev;
		w->armed = false;
		pthread_mutex_unlock(&m->lock);
		w->fn(w->arg, -ESHUTDOWN);
	}
}

void lease_mgr_delete(struct lease_mgr **mp)
{
	struct lease_mgr *m = *mp;

	if (!m)
		return;
	lease_mgr_stop(m);
	lease_watch_delete(&m->w);
	lease_table_delete(&m->t);
	pthread_cond_destroy(&m->cv);
	pthread_mutex_destroy(&m->lock);
	free(m->ring);
	free(m->ring_uid);
	free(m->fc);
	free(m->park);
	free(m->shorts);
	free(m);
	*mp = NULL;
}

uint32_t lease_mgr_policy(struct lease_mgr *m)
{
	uint32_t p;

	pthread_mutex_lock(&m->lock);
	p = m->cfg.policy;
	pthread_mutex_unlock(&m->lock);
	return p;
}

void lease_mgr_set_policy(struct lease_mgr *m, uint32_t policy)
{
	pthread_mutex_lock(&m->lock);
	m->cfg.policy = policy;
	pthread_mutex_unlock(&m->lock);
}

struct lease_table *lease_mgr_table(struct lease_mgr *m)
{
	return m->t;
}

struct lease_watch *lease_mgr_watch(struct lease_mgr *m)
{
	return m->w;
}

void lease_mgr_unpinned(void *ctx, uint64_t pblk, uint64_t n)
{
	unpinned(ctx, pblk, n);
}

void lease_mgr_holders_changed(struct lease_mgr *m)
{
	if (m->ops.holders_changed)
		m->ops.holders_changed(m->ops.ctx);
}

void lease_mgr_pool(struct lease_mgr *m, uint64_t *dev, uint64_t *ino)
{
	*dev = m->cfg.pool_dev;
	*ino = m->cfg.pool_ino;
}

bool lease_mgr_block_pinned(struct lease_mgr *m, uint64_t pblk)
{
	return lease_block_pinned(m->t, pblk);
}

/*
 * Short-term pins (see lease.h). m->shorts holds the live ones in the order
 * they were pinned, which is the order they expire in (the bound is one
 * for the mount and the expiry is taken under m->lock), so the completer
 * pops expired ones off the front. An entry whose lease ended some other
 * way than unpin (its holder exited) stays until its expiry and is then
 * found gone.
 */
static int short_add(struct lease_mgr *m, uint64_t id)
{
	int rc = 0;

	pthread_mutex_lock(&m->lock);
	if (m->nshort == m->capshort) {
		size_t cap = m->capshort ? 2 * m->capshort : 16;
		struct short_pin *v = realloc(m->shorts, cap * sizeof(*v));
		if (!v) {
			rc = -ENOMEM;
			goto out;
		}
		m->shorts = v;
		m->capshort = cap;
	}
	m->shorts[m->nshort].id = id;
	m->shorts[m->nshort++].expires =
		now_ns(CLOCK_MONOTONIC) + (uint64_t)(m->cfg.short_pin_max * 1e9);
	pthread_cond_broadcast(&m->cv); /* the completer's next wake-up */
out:
	pthread_mutex_unlock(&m->lock);
	return rc;
}

/* Forgets short pin @id (unpinned); m->lock held. Ids grow, so the array
 * is sorted by id too -- but for two pins racing between lease_add and
 * short_add, which may land swapped: an entry this misses stays until its
 * expiry, when its lease is found gone. */
static void short_del(struct lease_mgr *m, uint64_t id)
{
	size_t lo = 0, hi = m->nshort;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->shorts[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < m->nshort && m->shorts[lo].id == id) {
		memmove(&m->shorts[lo], &m->shorts[lo + 1],
			(m->nshort - lo - 1) * sizeof(m->shorts[0]));
		m->nshort--;
	}
}

/* Takes up to @max short pins expired at @now off m->shorts into @ids;
 * lowers *@next to the next expiry. m->lock held. */
static size_t short_take_expired(struct lease_mgr *m, uint64_t now, uint64_t *next,
				 uint64_t *ids, size_t max)
{
	size_t k = 0;

	while (k < max && k < m->nshort && m->shorts[k].expires <= now) {
		ids[k] = m->shorts[k].id;
		k++;
	}
	if (k) {
		memmove(m->shorts, m->shorts + k, (m->nshort - k) * sizeof(m->shorts[0]));
		m->nshort -= k;
	}
	if (m->nshort && m->shorts[0].expires < *next)
		*next = m->shorts[0].expires;
	return k;
}

/* Tells the holder of revoked lease @l, on the channel it chose: a holder
 * that asked for the event channel (PINFS_PIN_NOTIFY_EVENTS) gets the
 * revoke record there and no signal; any other revocable lease's holder
 * gets SIGBUS (si_value = lease id), as PINFS_PIN_REVOCABLE promises. No
 * lease lock held. */
static void revoke_tell(struct lease_mgr *m, const struct lease *l, uint32_t policy)
{
	if (l->flags & PINFS_PIN_NOTIFY_EVENTS)
		notify(m, l, PINFS_EV_REVOKE, policy, 0);
	else if (l->flags & PINFS_PIN_REVOCABLE)
		/* the signal may fail if the holder just died: the watcher
		 * then ends its pins anyway */
		lease_watch_signal(m->w, l->holder_gen, SIGBUS, l->id);
}

/* Short pin @id outlived short_pin_max: revoked, as policy revoke does,
 * but signalled (SIGBUS) only if its holder accepted revocation, or told
 * on its event channel (revoke_tell). Must not hold m->lock. */
static void short_expire(struct lease_mgr *m, uint64_t id)
{
	struct lease l;
	struct fcount *f;
	uint64_t ino;

	if (lease_get(m->t, id, &l) || l.state == PINFS_LEASE_REVOKED)
		return; /* ended, or revoked already */
	if (lease_set_state(m->t, id, PINFS_LEASE_REVOKED))
		return;
	revoke_tell(m, &l, 0);
	ino = lease_file_ino(&l);
	pthread_mutex_lock(&m->lock);
	m->gen++; /* its range is free: a truncate waiting on it may go */
	m->mc.leases_revoked++;
	m->mc.short_pins_expired++;
	f = ino ? fcount(m, ino) : NULL;
	if (f) {
		f->revoked++;
		f->short_expired++;
	}
	ev_push(m, PINFS_EV_REVOKE, &l, 0, 0, 0, 0, 0);
	pthread_mutex_unlock(&m->lock);
}

int lease_pin_allowed(struct lease_mgr *m, uint64_t ino, uint32_t policy, uint32_t flags,
		      uint32_t holder, uint32_t uid)
{
	struct fcount *f;

	if (policy == PINFS_POLICY_DEFAULT)
		policy = lease_mgr_policy(m);
	if (policy != PINFS_POLICY_NOLONGTERM || (flags & (PINFS_PIN_SHORT | PINFS_PIN_LAYOUT)))
		return 0;
	pthread_mutex_lock(&m->lock);
	m->mc.longterm_refused++;
	f = fcount(m, ino);
	if (f)
		f->longterm_refused++;
	ev_push(m, PINFS_EV_REFUSE, NULL, ino, 0, 0, EOPNOTSUPP, policy);
	m->ring_uid[m->seq % EV_RING] = uid; /* the pinner's event */
	m->ring[m->seq % EV_RING].holder_pid = holder;
	memcpy(m->ring[m->seq % EV_RING].comm, comm_of(m, holder), 16);
	pthread_mutex_unlock(&m->lock);
	return -EOPNOTSUPP;
}

int lease_timeout_parse(const char *s, double *out)
{
	char *end;
	double v;

	if (!strcmp(s, "inf") || !strcmp(s, "infinity")) {
		*out = INFINITY;
		return 0;
	}
	if (!(*s >= '0' && *s <= '9') && *s != '.')
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (*end || errno || !(v >= 0) || isinf(v))
		return -EINVAL;
	*out = v;
	return 0;
}

/* -EAGAIN if a truncate is waiting for [first, first + n) of @ino. */
static int pending_check(struct lease_mgr *m, uint64_t ino, uint64_t first, uint64_t n)
{
	unsigned i;

	pthread_mutex_lock(&m->lock);
	for (i = 0; i < m->npend; i++)
		if (m->pend[i].ino == ino &&
		    (first >= m->pend[i].first ? first - m->pend[i].first < m->pend[i].n
					       : m->pend[i].first - first < n)) {
			/* overlap, written so that n = UINT64_MAX (to the end
			 * of the file) cannot wrap around */
			pthread_mutex_unlock(&m->lock);
			return -EAGAIN; /* a truncate is waiting for this range */
		}
	pthread_mutex_unlock(&m->lock);
	return 0;
}

int lease_pin_begin(struct lease_mgr *m, uint64_t ino, uint64_t first, uint64_t n,
		    uint32_t holder, uint32_t uid, uint64_t *gen)
{
	int rc = pending_check(m, ino, first, n);

	if (rc)
		return rc;
	/* before the watch: a refused pin must not add its process to the
	 * pool's holder record (and rewrite it, twice) */
	rc = lease_check_limits(m->t, holder, uid, n);
	if (rc)
		return rc;
	rc = lease_watch_add(m->w, holder, gen);
	if (rc < 0)
		return rc == -ENOMEM || rc == -EUSERS ? rc : -ESRCH;
	if (rc == 1)
		lease_mgr_holders_changed(m);
	return 0;
}

void lease_pin_end(struct lease_mgr *m, uint64_t gen, bool pinned)
{
	if (!pinned)
		lease_watch_put(m->w, gen);
}

int lease_pin(struct lease_mgr *m, uint64_t ino, uint64_t first, uint64_t n, uint32_t holder,
	      uint32_t flags, uint64_t fh, const uint64_t *seg_fblk, const uint64_t *seg_pblk,
	      const uint64_t *seg_len, uint64_t nseg, uint64_t *id)
{
	uint64_t gen;
	int rc = lease_pin_begin(m, ino, first, n, holder, 0, &gen);

	if (rc)
		return rc;
	rc = lease_pin_gen(m, ino, first, n, holder, gen, 0, flags, fh, seg_fblk, seg_pblk, seg_len,
			   nseg, id);
	lease_pin_end(m, gen, rc == 0);
	return rc;
}

int lease_pin_gen(struct lease_mgr *m, uint64_t ino, uint64_t first, uint64_t n,
		  uint32_t holder, uint64_t gen, uint32_t uid, uint32_t flags, uint64_t fh,
		  const uint64_t *seg_fblk, const uint64_t *seg_pblk, const uint64_t *seg_len,
		  uint64_t nseg, uint64_t *id)
{
	struct lease l;
	int rc = pending_check(m, ino, first, n);

	if (rc)
		return rc;
	rc = lease_add_gen(m->t, ino, first, n, holder, gen, uid, flags, fh, seg_fblk, seg_pblk,
			   seg_len, nseg, id);
	if (rc)
		return rc;
	/* if the holder's exit was handled between the watch and the add, no
	 * one else will remove this lease: the exit handler drops the watch
	 * entry before it removes the generation's leases, so checking after
	 * the add catches every order */
	if (!lease_watch_alive(m->w, gen)) {
		lease_remove(m->t, *id, unpinned, m);
		return -ESRCH;
	}
	if ((flags & PINFS_PIN_SHORT) && (rc = short_add(m, *id))) {
		lease_remove(m->t, *id, unpinned, m);
		return rc;
	}
	pthread_mutex_lock(&m->lock);
	m->mc.pins++;
	if (lease_get(m->t, *id, &l) == 0)
		ev_push(m, PINFS_EV_PIN, &l, 0, 0, 0, 0, 0);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

int lease_unpin(struct lease_mgr *m, uint64_t id, uint32_t caller_tgid, uint32_t uid)
{
	struct lease l;
	int rc = lease_get(m->t, id, &l);

	if (rc)
		return rc;
	if (l.holder != caller_tgid && uid != 0)
		return -EPERM;
	rc = lease_end_one(m, &l); /* lease/holder.c: the maps decide */
	if (rc)
		return rc;
	pthread_mutex_lock(&m->lock);
	if (l.flags & PINFS_PIN_SHORT)
		short_del(m, l.id);
	ev_push(m, PINFS_EV_UNPIN, &l, 0, 0, 0, 0, 0);
	m->gen++;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

/*
 * An on-close lease ends at release, but the holder's mapping of its blocks
 * does not: munmap is the holder's, and nothing makes it unmap before
 * close(). So the lease ends as a revoked one does -- the file range is
 * free again, the blocks stay pinned and are quarantined if freed -- and
 * they come back only when the holder unpins (it has unmapped) or exits.
 */
void lease_release_fh(struct lease_mgr *m, uint64_t fh)
{
	int n = lease_end_fh(m->t, fh);

	if (n <= 0)
		return;
	pthread_mutex_lock(&m->lock);
	m->gen++;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->lock);
}

/* The live (not revoked) leases on [first, first+n) of @ino: a malloc'd
 * array in *out (free it), count returned; -ENOMEM. */
static long live_overlap(struct lease_mgr *m, uint64_t ino, uint64_t first, uint64_t n,
			 struct lease **out)
{
	size_t max = 16, total, i, k = 0;
	struct lease *v = NULL;

	for (;;) {
		struct lease *nv = realloc(v, max * sizeof(*v));
		if (!nv) {
			free(v);
			return -ENOMEM;
		}
		v = nv;
		total = lease_find_overlap(m->t, ino, first, n, v, max);
		if (total <= max)
			break;
		max = total + 16;
	}
	for (i = 0; i < total; i++)
		if (v[i].state != PINFS_LEASE_REVOKED)
			v[k++] = v[i];
	*out = v;
	return (long)k;
}

/* Refuses: counts and records it. */
static int refuse(struct lease_mgr *m, const struct lease *l, uint64_t ino, uint64_t first,
		  uint64_t n, uint32_t policy)
{
	struct fcount *f;
	int err = m->cfg.busy_errno;

	pthread_mutex_lock(&m->lock);
	m->mc.refusals++;
	f = fcount(m, ino);
	if (f)
		f->refused++;
	ev_push(m, PINFS_EV_REFUSE, NULL, ino, first, n, err, policy);
	if (l) {
		struct pinfs_event *e = &m->ring[m->seq % EV_RING];
		m->ring_uid[m->seq % EV_RING] = l->uid;
		e->lease_id = l->id;
		e->holder_pid = l->holder;
		memcpy(e->comm, comm_of(m, l->holder), sizeof(e->comm));
	}
	pthread_mutex_unlock(&m->lock);
	return -err;
}

/* Revokes every lease in v[0..k) if all are revocable; 0 or the refusal. */
static int revoke_all(struct lease_mgr *m, struct lease *v, long k, uint64_t ino, uint64_t first,
		      uint64_t n, uint32_t policy)
{
	long i;

	for (i = 0; i < k; i++)
		if (!(v[i].flags & PINFS_PIN_REVOCABLE))
			return refuse(m, &v[i], ino, first, n, policy);
	for (i = 0; i < k; i++) {
		struct fcount *f;
		if (lease_set_state(m->t, v[i].id, PINFS_LEASE_REVOKED))
			continue; /* ended meanwhile */
		v[i].state = PINFS_LEASE_REVOKED;
		revoke_tell(m, &v[i], policy);
		pthread_mutex_lock(&m->lock);
		m->gen++; /* its range is free: a truncate waiting on it may go */
		m->mc.leases_revoked++;
		f = fcount(m, ino);
		if (f)
			f->revoked++;
		ev_push(m, PINFS_EV_REVOKE, &v[i], 0, 0, 0, 0, policy);
		pthread_mutex_unlock(&m->lock);
	}
	return 0;
}

/*
 * Layout leases (PINFS_PIN_LAYOUT, pinfs-dax) in v[0..*k): revoked at once
 * under every policy, with no signal and no wait (their holder is an
 * unmodified program that cannot be asked, and falls back to FUSE on its
 * own once the state file says so), and taken out of v. Their blocks stay
 * pinned, so they are quarantined as any revoked lease's are.
 */
static void revoke_layout(struct lease_mgr *m, struct lease *v, long *k, uint64_t ino,
			  uint32_t policy)
{
	long i, j = 0;

	for (i = 0; i < *k; i++) {
		struct fcount *f;

		if (!(v[i].flags & PINFS_PIN_LAYOUT)) {
			v[j++] = v[i];
			continue;
		}
		if (lease_set_state(m->t, v[i].id, PINFS_LEASE_REVOKED))
			continue; /* ended meanwhile */
		if (m->ops.layout_revoked)
			m->ops.layout_revoked(m->ops.ctx, v[i].id);
		pthread_mutex_lock(&m->lock);
		m->gen++;
		m->mc.leases_revoked++;
		f = fcount(m, ino);
		if (f)
			f->revoked++;
		ev_push(m, PINFS_EV_REVOKE, &v[i], 0, 0, 0, 0, policy);
		pthread_mutex_unlock(&m->lock);
	}
	*k = j;
}

/*
 * Before any policy looks at the pins of [first, first + n) of @ino: the
 * layout leases in the way are revoked (revoke_layout), under every policy
 * and whatever the other pins say -- a revoked layout lease costs its
 * holder one new pin, never a wrong byte. A shrink (n == UINT64_MAX) also
 * revokes those on the block before @first: the new last block, whose
 * tail it zeroes and whose bytes past the new size a holder must no
 * longer serve. 0 or -ENOMEM.
 */
static long layout_first(struct lease_mgr *m, uint64_t ino, uint64_t first, uint64_t n,
			 uint32_t policy)
{
	struct lease *v = NULL;
	long k;

	if (policy == PINFS_POLICY_DEFAULT)
		policy = lease_mgr_policy(m);
	if (n == UINT64_MAX && first > 0)
		first--;
	k = live_overlap(m, ino, first, n, &v);
	if (k > 0)
		revoke_layout(m, v, &k, ino, policy);
	free(v);
	return k < 0 ? k : 0;
}

/* Sleeps until a pin ends after generation @gen, until @deadline_ns
 * (CLOCK_MONOTONIC), or for at most 50 ms (to poll an interruption). */
static void wait_gen(struct lease_mgr *m, uint64_t gen, uint64_t deadline_ns)
{
	uint64_t now = now_ns(CLOCK_MONOTONIC), until = now + 50000000ull;
	struct timespec ts;

	if (deadline_ns < until)
		until = deadline_ns;
	ts.tv_sec = (time_t)(until / 1000000000ull);
	ts.tv_nsec = (long)(until % 1000000000ull);
	pthread_mutex_lock(&m->lock);
	while (m->gen == gen && now_ns(CLOCK_MONOTONIC) < until)
		if (pthread_cond_timedwait(&m->cv, &m->lock, &ts) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&m->lock);
}

static uint64_t gen_of(struct lease_mgr *m)
{
	uint64_t g;

	pthread_mutex_lock(&m->lock);
	g = m->gen;
	pthread_mutex_unlock(&m->lock);
	return g;
}

static void pend_add(struct lease_mgr *m, uint64_t ino, uint64_t first, uint64_t n, bool *added)
{
	pthread_mutex_lock(&m->lock);
	if (m->npend < MAX_PENDING) {
		m->pend[m->npend].ino = ino;
		m->pend[m->npend].first = first;
		m->pend[m->npend++].n = n;
		*added = true;
	}
	pthread_mutex_unlock(&m->lock);
}

static void pend_del(struct lease_mgr *m, uint64_t ino, uint64_t first, uint64_t n)
{
	unsigned i;

	pthread_mutex_lock(&m->lock);
	for (i = 0; i < m->npend; i++)
		if (m->pend[i].ino == ino && m->pend[i].first == first && m->pend[i].n == n) {
			m->pend[i] = m->pend[--m->npend];
			break;
		}
	pthread_mutex_unlock(&m->lock);
}

/* A break that ends in a refusal hands the leases back: they are active
 * again, and the next break notices them afresh. */
static void unbreak(struct lease_mgr *m, struct lease *v, long k)
{
	long i;

	for (i = 0; i < k; i++)
		if (v[i].state == PINFS_LEASE_BREAKING)
			lease_set_state(m->t, v[i].id, PINFS_LEASE_ACTIVE);
}

/* User @uid's entry in m->park, or NULL; m->lock held. */
static struct park_user *park_find(struct lease_mgr *m, uint32_t uid)
{
	size_t i;

	for (i = 0; i < m->npark; i++)
		if (m->park[i].uid == uid)
			return &m->park[i];
	return NULL;
}

/*
 * Counts @w as one of user @uid's parked requests: 0, or -EAGAIN when the
 * transport has no room (ops.may_park) or @uid has max_parked_per_user
 * already, -ENOMEM. Must not hold m->lock (may_park is the file system's).
 * Users with parked waits are few (each has at most the bound), so the
 * table is a plain array.
 */
static int park_take(struct lease_mgr *m, struct lease_wait *w, uint32_t uid)
{
	struct park_user *u;
	int rc = 0;

	if (m->ops.may_park && !m->ops.may_park(m->ops.ctx))
		return -EAGAIN;
	pthread_mutex_lock(&m->lock);
	u = park_find(m, uid);
	if (!u) {
		if (m->npark == m->cappark) {
			size_t cap = m->cappark ? 2 * m->cappark : 8;
			struct park_user *p = realloc(m->park, cap * sizeof(*p));
			if (!p) {
				rc = -ENOMEM;
				goto out;
			}
			m->park = p;
			m->cappark = cap;
		}
		u = &m->park[m->npark++];
		u->uid = uid;
		u->n = 0;
	}
	if (m->cfg.max_parked_per_user && u->n >= m->cfg.max_parked_per_user) {
		if (!u->n)
			*u = m->park[--m->npark];
		rc = -EAGAIN;
		goto out;
	}
	u->n++;
	m->nparked++;
	w->counted = true;
	w->park_uid = uid;
out:
	pthread_mutex_unlock(&m->lock);
	return rc;
}

/* Ends what park_take() counted for @w, if anything. */
static void park_drop(struct lease_mgr *m, struct lease_wait *w)
{
	struct park_user *u;

	if (!w->counted)
		return;
	pthread_mutex_lock(&m->lock);
	u = park_find(m, w->park_uid);
	if (!u || !u->n)
		abort(); /* counted, so it is there */
	if (!--u->n)
		*u = m->park[--m->npark];
	m->nparked--;
	pthread_mutex_unlock(&m->lock);
	w->counted = false;
}

uint64_t lease_mgr_parked(struct lease_mgr *m, uint32_t uid)
{
	struct park_user *u;
	uint64_t n;

	pthread_mutex_lock(&m->lock);
	u = uid ? park_find(m, uid) : NULL;
	n = !uid ? m->nparked : u ? u->n : 0;
	pthread_mutex_unlock(&m->lock);
	return n;
}

/* Moves the long-term leases of v[0..k) to the front (short ones, which
 * every policy waits for, behind them); returns how many are long-term. */
static long long_first(struct lease *v, long k)
{
	long i, nlong = 0;

	for (i = 0; i < k; i++)
		if (!(v[i].flags & PINFS_PIN_SHORT)) {
			struct lease t = v[nlong];
			v[nlong++] = v[i];
			v[i] = t;
		}
	return nlong;
}

/* The deadline of a wait of @s seconds from now (UINT64_MAX: none). */
static uint64_t deadline_in(double s)
{
	if (!(s < 1e9)) /* inf (or absurdly long): no bound */
		return UINT64_MAX;
	return now_ns(CLOCK_MONOTONIC) + (uint64_t)(s * 1e9); /* never 0 */
}

/*
 * One look at the pins in the way of a waiting truncate, with the file's
 * data lock held: 0 (no pin left, or break revoked them at the deadline),
 * the refusal, -EINTR, or -EINPROGRESS (look again after a pin ends, at the
 * deadline or when interrupted; w->gen says which pins were seen). The
 * first look records the wait (event, pending range) and, for break, every
 * look notices the leases not yet told.
 *
 * Policies wait and break wait for every live pin of the range, the others
 * (fail, revoke, refuse_longterm) only for short-term pins, which end by
 * themselves within short_pin_max (short_expire); when they are gone,
 * revoke revokes the long-term ones, and fail or refuse_longterm refuse if
 * a long-term pin is there. At the deadline of wait or break (their
 * timeouts bound long-term pins only) the long-term pins are refused or
 * revoked, and the short ones still waited for, without a deadline.
 */
static int free_step(struct lease_mgr *m, struct lease_wait *w)
{
	bool waitpol = w->policy == PINFS_POLICY_WAIT || w->policy == PINFS_POLICY_BREAK;
	uint64_t gen = gen_of(m);
	struct lease *v = NULL;
	long k, i, nlong;
	int rc;

	k = layout_first(m, w->ino, w->first, w->n, w->policy);
	if (k >= 0)
		k = live_overlap(m, w->ino, w->first, w->n, &v);
	if (k < 0)
		return (int)k;
	if (k == 0) {
		free(v);
		return 0;
	}
	nlong = long_first(v, k);
	if (!waitpol && nlong) {
		/* short pins gone (or a long-term pin slipped in) */
		if (nlong == k && w->policy == PINFS_POLICY_REVOKE)
			rc = revoke_all(m, v, k, w->ino, w->first, w->n, w->policy);
		else if (nlong == k || w->policy != PINFS_POLICY_REVOKE)
			rc = refuse(m, &v[0], w->ino, w->first, w->n, w->policy);
		else
			rc = 1; /* revoke: the short ones first */
		if (rc != 1) {
			free(v);
			return rc;
		}
	}
	if (!w->deadline) {
		double s = w->policy == PINFS_POLICY_BREAK ? m->cfg.lease_break_time
			   : w->timeout >= 0		   ? w->timeout
							   : m->cfg.wait_timeout;
		w->deadline = waitpol && nlong ? deadline_in(s) : UINT64_MAX;
		pend_add(m, w->ino, w->first, w->n, &w->pending);
		pthread_mutex_lock(&m->lock);
		ev_push(m, PINFS_EV_WAIT, &v[0], 0, 0, 0, 0, w->policy);
		pthread_mutex_unlock(&m->lock);
		for (i = 0; i < k; i++)
			notify(m, &v[i], PINFS_EV_WAIT, w->policy, 0);
	}
	if (w->policy == PINFS_POLICY_BREAK) {
		for (i = 0; i < nlong; i++) {
			struct fcount *f;
			if (v[i].state == PINFS_LEASE_BREAKING)
				continue;
			lease_set_state(m->t, v[i].id, PINFS_LEASE_BREAKING);
			/* only to a holder that asked, by the means it chose: an
			 * unasked one is sent nothing (never a signal that would
			 * kill it) and waits out the break time */
			if (v[i].flags & PINFS_PIN_NOTIFY_SIGNAL)
				lease_watch_signal(m->w, v[i].holder_gen, (int)v[i].notify_sig,
						   v[i].id);
			{
				uint64_t now = now_ns(CLOCK_MONOTONIC);
				notify(m, &v[i], PINFS_EV_BREAK, w->policy,
				       w->deadline > now ? (uint32_t)((w->deadline - now) / 1000000u)
							 : 0);
			}
			pthread_mutex_lock(&m->lock);
			m->mc.leases_broken++;
			f = fcount(m, w->ino);
			if (f)
				f->broken++;
			ev_push(m, PINFS_EV_BREAK, &v[i], 0, 0, 0, 0, w->policy);
			pthread_mutex_unlock(&m->lock);
			v[i].state = PINFS_LEASE_BREAKING;
		}
	}
	pthread_mutex_lock(&m->lock);
	w->gen = gen;
	rc = w->interrupted ? -EINTR : -EINPROGRESS;
	pthread_mutex_unlock(&m->lock);
	if (now_ns(CLOCK_MONOTONIC) >= w->deadline) {
		if (!nlong)
			rc = -EINPROGRESS; /* only short pins left */
		else if (w->policy == PINFS_POLICY_BREAK)
			rc = revoke_all(m, v, nlong, w->ino, w->first, w->n, w->policy);
		else
			rc = refuse(m, &v[0], w->ino, w->first, w->n, w->policy);
		if (rc == -EINPROGRESS || (!rc && nlong < k)) {
			/* the short ones end by themselves: wait on, and
			 * be called back when they do, not at once again */
			w->deadline = UINT64_MAX;
			rc = w->interrupted ? -EINTR : -EINPROGRESS;
		} else if (rc) {
			unbreak(m, v, k);
		}
	} else if (rc == -EINTR) {
		unbreak(m, v, k);
	}
	free(v);
	return rc;
}

/* lease_may_free_nowait(); @counted: the wait is a parked request of user
 * @uid, bounded (the blocking lease_may_free() parks nothing). @timeout:
 * policy wait's, in seconds (< 0: the mount's). */
static int may_free_nowait(struct lease_mgr *m, uint64_t ino, uint64_t first, uint64_t n,
			   uint32_t policy, double timeout, bool counted, uint32_t uid,
			   struct lease_wait **wp)
{
	struct lease_wait *w = *wp;
	struct lease *v = NULL;
	long k, nlong;
	int rc;

	if (!w) {
		if (policy == PINFS_POLICY_DEFAULT)
			policy = lease_mgr_policy(m);
		k = layout_first(m, ino, first, n, policy);
		if (k >= 0)
			k = live_overlap(m, ino, first, n, &v);
		if (k <= 0) {
			free(v);
			return (int)k;
		}
		nlong = long_first(v, k);
		rc = -EINPROGRESS; /* a wait to make */
		if ((policy == PINFS_POLICY_FAIL || policy == PINFS_POLICY_NOLONGTERM) && nlong) {
			rc = refuse(m, &v[0], ino, first, n, policy);
		} else if (policy == PINFS_POLICY_REVOKE && nlong == k) {
			rc = revoke_all(m, v, k, ino, first, n, policy);
		} else if (policy == PINFS_POLICY_REVOKE && nlong) {
			long i;
			for (i = 0; i < nlong && rc == -EINPROGRESS; i++)
				if (!(v[i].flags & PINFS_PIN_REVOCABLE))
					rc = refuse(m, &v[i], ino, first, n, policy);
		}
		if (rc != -EINPROGRESS) {
			;
		} else if (!(w = calloc(1, sizeof(*w)))) {
			rc = -ENOMEM;
		} else {
			rc = counted ? park_take(m, w, uid) : 0;
			if (rc == -EAGAIN) /* no room to wait: as policy fail */
				rc = refuse(m, &v[0], ino, first, n, policy);
			if (!rc)
				rc = -EINPROGRESS;
		}
		free(v);
		if (rc != -EINPROGRESS) {
			free(w);
			return rc;
		}
		w->kind = W_FREE;
		w->ino = ino;
		w->first = first;
		w->n = n;
		w->policy = policy;
		w->timeout = timeout;
		*wp = w;
	}
	rc = free_step(m, w);
	w->decided = rc != -EINPROGRESS;
	return rc;
}

int lease_may_free_nowait(struct lease_mgr *m, uint64_t ino, uint64_t first, uint64_t n,
			  uint32_t policy, uint32_t uid, struct lease_wait **wp)
{
	return may_free_nowait(m, ino, first, n, policy, -1, true, uid, wp);
}

int lease_may_free_nowait_timeout(struct lease_mgr *m, uint64_t ino, uint64_t first, uint64_t n,
				  uint32_t policy, double timeout, uint32_t uid,
				  struct lease_wait **wp)
{
	return may_free_nowait(m, ino, first, n, policy, timeout, true, uid, wp);
}

void lease_wait_arm(struct lease_mgr *m, struct lease_wait *w, lease_wait_fn fn, void *arg)
{
	bool stopped;

	w->fn = fn;
	w->arg = arg;
	pthread_mutex_lock(&m->lock);
	stopped = m->stop;
	if (!stopped) {
		w->next = &m->parked;
		w->prev = m->parked.prev;
		w->prev->next = w;
		m->parked.prev = w;
		w->armed = true;
		pthread_cond_broadcast(&m->cv);
	}
	pthread_mutex_unlock(&m->lock);
	if (stopped)
		fn(arg, -ESHUTDOWN);
}

void lease_wait_interrupt(struct lease_mgr *m, struct lease_wait *w)
{
	pthread_mutex_lock(&m->lock);
	w->interrupted = true;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->lock);
}

void lease_wait_end(struct lease_mgr *m, struct lease_wait **wp)
{
	struct lease_wait *w = *wp;

	if (!w)
		return;
	pthread_mutex_lock(&m->lock);
	if (w->armed) {
		w->prev->next = w->next;
		w->next->prev = w->prev;
		w->armed = false;
	}
	pthread_mutex_unlock(&m->lock);
	if (w->kind == W_FREE && !w->decided && w->deadline) {
		/* given up before a decision: the leases it put into breaking
		 * are handed back, as after a refusal */
		struct lease *v = NULL;
		long k = live_overlap(m, w->ino, w->first, w->n, &v);
		if (k > 0)
			unbreak(m, v, k);
		free(v);
	}
	if (w->pending)
		pend_del(m, w->ino, w->first, w->n);
	park_drop(m, w);
	free(w);
	*wp = NULL;
}

int lease_may_free(struct lease_mgr *m, uint64_t ino, uint64_t first, uint64_t n,
		   uint32_t policy, const struct lease_waiter *wt)
{
	return lease_may_free_timeout(m, ino, first, n, policy, -1, wt);
}

int lease_may_free_timeout(struct lease_mgr *m, uint64_t ino, uint64_t first, uint64_t n,
			   uint32_t policy, double timeout, const struct lease_waiter *wt)
{
	struct lease_wait *w = NULL;
	int rc;

	for (;;) {
		rc = may_free_nowait(m, ino, first, n, policy, timeout, false, 0, &w);
		if (rc != -EINPROGRESS)
			break;
		if (wt && wt->interrupted && wt->interrupted(wt->arg)) {
			lease_wait_interrupt(m, w);
			continue; /* the next look answers -EINTR, or 0 if the pins went */
		}
		if (wt && wt->unlock)
			wt->unlock(wt->arg);
		wait_gen(m, w->gen, w->deadline);
		if (wt && wt->relock)
			wt->relock(wt->arg);
	}
	lease_wait_end(m, &w);
	return rc;
}

void lease_mgr_comm(struct lease_mgr *m, uint32_t tgid, char comm[16])
{
	pthread_mutex_lock(&m->lock);
	memcpy(comm, comm_of(m, tgid), 16);
	pthread_mutex_unlock(&m->lock);
}

void lease_mgr_forget_ino(struct lease_mgr *m, uint64_t ino)
{
	struct fcount *f;

	lease_forget_ino(m->t, ino);
	pthread_mutex_lock(&m->lock);
	f = fcount_find(m, ino);
	if (f)
		*f = m->fc[--m->nfc];
	pthread_mutex_unlock(&m->lock);
}

void lease_mgr_counters(struct lease_mgr *m, uint64_t ino, struct pinfs_counters *c)
{
	uint64_t nleases, nblocks;

	memset(c, 0, sizeof(*c));
	pthread_mutex_lock(&m->lock);
	if (ino) {
		struct fcount *f = fcount_find(m, ino);
		if (f) {
			c->leases_revoked = f->revoked;
			c->leases_broken = f->broken;
			c->refusals = f->refused;
			c->short_pins_expired = f->short_expired;
			c->longterm_refused = f->longterm_refused;
		}
	} else {
		*c = m->mc;
		c->parked = m->nparked;
	}
	pthread_mutex_unlock(&m->lock);
	if (ino) {
		struct lease l[64];
		size_t total, i, first = 0;
		c->pins = lease_count_ino(m->t, ino);
		do {
			total = lease_list(m->t, ino, first, l, 64);
			for (i = 0; i < 64 && first + i < total; i++) {
				c->pinned_blocks += l[i].nblocks;
				c->short_pins += !!(l[i].flags & PINFS_PIN_SHORT);
			}
			first += 64;
		} while (first < total);
	} else {
		struct lease l[64];
		size_t total, i, first = 0;
		bool any;
		lease_table_counts(m->t, &nleases, &nblocks);
		c->pins = nleases;
		c->pinned_blocks = nblocks;
		/* no short pin pinned within short_pin_max: none to count */
		pthread_mutex_lock(&m->lock);
		any = m->nshort != 0;
		pthread_mutex_unlock(&m->lock);
		for (total = any; first < total; first += 64) {
			total = lease_list(m->t, 0, first, l, 64);
			for (i = 0; i < 64 && first + i < total; i++)
				c->short_pins += !!(l[i].flags & PINFS_PIN_SHORT);
		}
	}
}

/* Fills @out with the events after @after that reader @uid may see;
 * m->lock held. next_seq is the last event looked at (seen or not), lost
 * counts those that fell out of the ring unread. */
static void events_fill(struct lease_mgr *m, uint64_t after, uint32_t uid,
			struct pinfs_events *out)
{
	uint64_t oldest = m->seq >= EV_RING ? m->seq - EV_RING + 1 : 1, s = after + 1;

	out->n = 0;
	out->lost = 0;
	if (s < oldest) {
		out->lost = oldest - s;
		s = oldest;
	}
	for (; s <= m->seq && out->n < PINFS_EVENTS_MAX; s++)
		if (ev_visible(m, s, uid))
			out->ev[out->n++] = m->ring[s % EV_RING];
	out->next_seq = s - 1;
}

/* Is there an event for the parked reader @w yet? m->lock held. */
static bool events_ready(struct lease_mgr *m, struct lease_wait *w)
{
	uint64_t oldest = m->seq >= EV_RING ? m->seq - EV_RING + 1 : 1;

	if (w->scanned + 1 < oldest)
		return true; /* some fell out of the ring: say so */
	for (; w->scanned < m->seq; w->scanned++)
		if (ev_visible(m, w->scanned + 1, w->uid))
			return true;
	return false;
}

static uint64_t events_deadline(unsigned timeout_ms)
{
	return now_ns(CLOCK_MONOTONIC) +
	       (uint64_t)(timeout_ms > 1000 ? 1000 : timeout_ms) * 1000000ull;
}

void lease_mgr_events(struct lease_mgr *m, uint64_t after, unsigned timeout_ms,
		      struct pinfs_events *out)
{
	uint64_t until = events_deadline(timeout_ms);
	struct timespec ts = { (time_t)(until / 1000000000ull), (long)(until % 1000000000ull) };

	pthread_mutex_lock(&m->lock);
	while (m->seq <= after && now_ns(CLOCK_MONOTONIC) < until)
		if (pthread_cond_timedwait(&m->cv, &m->lock, &ts) == ETIMEDOUT)
			break;
	events_fill(m, after, 0, out);
	pthread_mutex_unlock(&m->lock);
}

int lease_mgr_events_nowait(struct lease_mgr *m, uint64_t after, unsigned timeout_ms, uint32_t uid,
			    struct pinfs_events *out, struct lease_wait **wp)
{
	struct lease_wait *w;
	int rc;

	pthread_mutex_lock(&m->lock);
	events_fill(m, after, uid, out);
	if (out->n || out->lost || !timeout_ms) {
		pthread_mutex_unlock(&m->lock);
		return 0;
	}
	pthread_mutex_unlock(&m->lock);
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	rc = park_take(m, w, uid);
	if (rc) {
		free(w);
		return rc;
	}
	w->kind = W_EVENTS;
	w->deadline = events_deadline(timeout_ms);
	w->after = after;
	w->scanned = after;
	w->uid = uid;
	w->out = out;
	*wp = w;
	return -EINPROGRESS;
}

/*
 * The completion thread: calls back every armed wait that is worth another
 * look (its pins changed, its deadline passed, it was interrupted) or, for
 * an EVENTS read, that has its answer (filled in here, under the lock). It
 * sleeps until the earliest deadline or the next broadcast of m->cv.
 */
static void *completer_main(void *arg)
{
	struct lease_mgr *m = arg;

	pthread_mutex_lock(&m->lock);
	while (!m->stop) {
		uint64_t now = now_ns(CLOCK_MONOTONIC), next = now + 1000000000ull;
		struct lease_wait *w, *nx, *ready = NULL;
		struct timespec ts;
		uint64_t expired[64];
		size_t nexp = short_take_expired(m, now, &next, expired, 64), i;

		if (nexp) { /* short pins past short_pin_max: revoked */
			pthread_mutex_unlock(&m->lock);
			for (i = 0; i < nexp; i++)
				short_expire(m, expired[i]);
			pthread_mutex_lock(&m->lock);
			continue;
		}

		for (w = m->parked.next; w != &m->parked; w = nx) {
			bool go;

			nx = w->next;
			if (w->kind == W_FREE) {
				go = w->interrupted || m->gen != w->gen || now >= w->deadline;
				w->status = 0;
			} else if (w->interrupted) {
				go = true;
				w->status = -EINTR;
			} else {
				go = events_ready(m, w) || now >= w->deadline;
				if (go)
					events_fill(m, w->after, w->uid, w->out);
				w->status = 0;
			}
			if (!go) {
				if (w->deadline < next)
					next = w->deadline;
				continue;
			}
			w->prev->next = w->next;
			w->next->prev = w->prev;
			w->armed = false;
			w->next = ready; /* a private list now */
			ready = w;
		}
		if (ready) {
			pthread_mutex_unlock(&m->lock);
			for (w = ready; w; w = nx) {
				nx = w->next; /* fn may re-arm or free it */
				w->fn(w->arg, w->status);
			}
			pthread_mutex_lock(&m->lock);
			continue;
		}
		ts.tv_sec = (time_t)(next / 1000000000ull);
		ts.tv_nsec = (long)(next % 1000000000ull);
		pthread_cond_timedwait(&m->cv, &m->lock, &ts);
	}
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

static const char *const names[] = { "default", "fail", "revoke", "wait", "break",
				      "refuse_longterm" };

int lease_policy_parse(const char *name, uint32_t *policy)
{
	uint32_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(name, names[i])) {
			*policy = i;
			return 0;
		}
	return -EINVAL;
}

const char *lease_policy_name(uint32_t policy)
{
	return policy < sizeof(names) / sizeof(names[0]) ? names[policy] : "?";
}

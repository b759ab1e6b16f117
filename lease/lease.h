/* SPDX-License-Identifier: MIT */
/*
 * lease/lease.h -- the lease manager: pins and leases of one mount, the four
 * truncate policies, holder tracking (pidfd), revocation signals, the event
 * ring and the counters. No FUSE here: fusefs/ioctl.c turns requests into
 * these calls, and tests drive them directly.
 *
 * The manager decides; the file system acts. Before freeing blocks of a file
 * (truncate, O_TRUNC, hole punch) the file system calls lease_may_free() with
 * the file's data lock held: it returns 0 when the blocks may go (no pins,
 * or the pins were revoked), or an errno. Blocks that are freed while still
 * pinned by a revoked lease are quarantined by the file system (it asks
 * lease_block_pinned()) and handed back through lease_ops.unpinned once the
 * last pin on them ends.
 */
#ifndef PINFS_LEASE_LEASE_H
#define PINFS_LEASE_LEASE_H

#include <stdbool.h>
#include <stdint.h>

#include "pinfs/abi.h"
#include "lease/pin.h"

struct lease_mgr;

struct lease_cfg {
	uint32_t policy;	   /* mount default, PINFS_POLICY_* (not DEFAULT) */
	int busy_errno;		   /* EBUSY, or ETXTBSY (Weiny's proposal) */
	double wait_timeout;	   /* policy wait: seconds before busy_errno */
	double lease_break_time;   /* policy break: grace seconds */
	uint64_t max_pins;	   /* per process, 0 = no limit */
	uint64_t max_pinned_bytes; /* per process, 0 = no limit */
	uint32_t max_holders;	   /* processes holding pins at once, 0 = no
				    * limit; one more gets EUSERS */
	uint64_t max_pins_per_user;	     /* per user, 0 = no limit */
	uint64_t max_pinned_bytes_per_user; /* per user, 0 = no limit */
	uint32_t max_parked_per_user;	     /* parked requests (waits) per user,
					      * 0 = no limit; see "Parked requests" */
	/* the pool file (st_dev, st_ino), whose mappings in /proc/PID/maps
	 * keep ended leases' blocks quarantined; both 0: not checked */
	uint64_t pool_dev, pool_ino;
	/* short-term pins (PINFS_PIN_SHORT): seconds one may live; past it
	 * it is revoked (lease_mgr_new: 0 = LEASE_SHORT_PIN_MAX) */
	double short_pin_max;
};
#define LEASE_SHORT_PIN_MAX 5.0 /* seconds: -o short_pin_max default */

struct lease_ops {
	/* pool blocks [pblk, pblk + n) are no longer pinned by anyone */
	void (*unpinned)(void *ctx, uint64_t pblk, uint64_t n);
	/* the set of watched holders changed (lease_mgr_holder_list()) */
	void (*holders_changed)(void *ctx);
	void *ctx;
	/* may the request the calling thread is handling be parked now? (the
	 * transport has room for one more: fusefs/uring.c keeps ring entries
	 * for requests answered at once). Called in the thread that makes the
	 * wait, no lease lock held. NULL: always. */
	bool (*may_park)(void *ctx);
	/* lease @l (a snapshot), pinned with PINFS_PIN_NOTIFY_EVENTS, has
	 * notice @event (PINFS_EV_WAIT, BREAK or REVOKE) decided by @policy;
	 * @break_ms: BREAK's grace left. For the holder's event channel
	 * (fusefs/evchan.c): must not block or call back into the manager.
	 * Called without any lease lock held. NULL: none. */
	void (*notify)(void *ctx, const struct lease *l, uint32_t event, uint32_t policy,
		       uint32_t break_ms);
	/* layout lease @id (PINFS_PIN_LAYOUT) was just revoked: publish it to
	 * its holder (the dax state file). Called before the truncate or punch
	 * that revoked it frees anything, no lease lock held. NULL: nothing. */
	void (*layout_revoked)(void *ctx, uint64_t id);
};

int lease_mgr_new(const struct lease_cfg *cfg, const struct lease_ops *ops,
		  struct lease_mgr **out);
/* Stops the completion thread and answers every parked wait (its fn gets
 * -ESHUTDOWN); a wait armed later is answered so at once. Call it before
 * the file system stops asking the manager (its fn may be running an
 * engine call). Idempotent. */
void lease_mgr_stop(struct lease_mgr *m);
/* Stops (lease_mgr_stop), stops the holder watcher and frees everything
 * (leases included). */
void lease_mgr_delete(struct lease_mgr **mp);

/* The mount default; set on a live mount. */
uint32_t lease_mgr_policy(struct lease_mgr *m);
void lease_mgr_set_policy(struct lease_mgr *m, uint32_t policy);

/* Thread-group id of thread @tid (FUSE reports the calling thread); the
 * tid itself if /proc does not say. */
uint32_t lease_tgid_of(uint32_t tid);
/* The same, without reading /proc when @tid is a holder the manager already
 * watches (its pidfd proves it is a live thread-group leader). */
uint32_t lease_mgr_holder_of(struct lease_mgr *m, uint32_t tid);

/*
 * Before anything is allocated for a pin of @n blocks of @ino at @first by
 * @holder (user @uid): watches the holder and takes a reference on it
 * (*gen: its generation), and checks the per-process and per-user limits
 * and the range's pending truncates. 0, -EUSERS (no holder slot), -ENOMEM
 * (over a limit), -EAGAIN (a truncate waits for the range) or -ESRCH. On
 * 0, call lease_pin_end() whatever happens next.
 */
int lease_pin_begin(struct lease_mgr *m, uint64_t ino, uint64_t first, uint64_t n,
		    uint32_t holder, uint32_t uid, uint64_t *gen);
/*
 * Registers a lease on blocks already allocated and mapped by the caller
 * (see lease_add() for the segment arrays), for the holder generation
 * @gen of lease_pin_begin(). Returns 0 and the id, -ENOMEM over the
 * limits, -ESRCH if the holder is gone.
 */
int lease_pin_gen(struct lease_mgr *m, uint64_t ino, uint64_t first, uint64_t n,
		  uint32_t holder, uint64_t gen, uint32_t uid, uint32_t flags, uint64_t fh,
		  const uint64_t *seg_fblk, const uint64_t *seg_pblk, const uint64_t *seg_len,
		  uint64_t nseg, uint64_t *id);
/* lease_pin_begin, lease_pin_gen and lease_pin_end in one, as uid 0. */
int lease_pin(struct lease_mgr *m, uint64_t ino, uint64_t first, uint64_t n, uint32_t holder,
	      uint32_t flags, uint64_t fh, const uint64_t *seg_fblk, const uint64_t *seg_pblk,
	      const uint64_t *seg_len, uint64_t nseg, uint64_t *id);
/* Ends what lease_pin_begin() started: @pinned, the reference now belongs
 * to the lease; otherwise it is dropped (the holder may leave the watch). */
void lease_pin_end(struct lease_mgr *m, uint64_t gen, bool pinned);
/* The holder record: live processes that hold a lease, or map the pool
 * file (their last lease ended while they mapped it, or they map blocks
 * of a lease that outlived its holder): fills up to @max, returns how many. */
size_t lease_mgr_holder_list(struct lease_mgr *m, uint32_t *out, size_t max);
/* Ends a lease: its holder or root (@uid 0) only (-EPERM); -ENOENT. If
 * the holder (or, when it has children, any process) still maps the
 * lease's blocks, the lease becomes LEASE_ENDED and keeps them until none
 * does. A mapping this misses (a reparented grandchild) is found before
 * the blocks are reused: the file system reads every process's maps then
 * (lease_maps_all; pmem/sever.c). */
int lease_unpin(struct lease_mgr *m, uint64_t id, uint32_t caller_tgid, uint32_t uid);
/* Ends the PINFS_PIN_ON_CLOSE leases taken through open file @fh: they
 * become revoked (the holder may still map their blocks, which stay pinned
 * until it unpins or exits). */
void lease_release_fh(struct lease_mgr *m, uint64_t fh);

/* How lease_may_free() sleeps: it drops the caller's data lock while it
 * waits (as xfs_break_layouts() drops the MMAPLOCK), so a holder can go on
 * using the file and unpin; it polls @interrupted. Any member may be NULL. */
struct lease_waiter {
	bool (*interrupted)(void *arg);
	void (*unlock)(void *arg);
	void (*relock)(void *arg);
	void *arg;
};
/* Called with the file's data lock held, before blocks [first, first+n) of
 * @ino are freed. Applies @policy (PINFS_POLICY_*, DEFAULT = the mount's).
 * Returns, with the lock held again, 0 (go ahead: the decision holds as
 * long as the lock is held), -busy_errno, or -EINTR. */
int lease_may_free(struct lease_mgr *m, uint64_t ino, uint64_t first, uint64_t n,
		   uint32_t policy, const struct lease_waiter *w);

/*
 * Parked requests: what a FUSE worker must not sleep for (lease/policy.c
 * says why). A wait is made by lease_may_free_nowait() or
 * lease_mgr_events_nowait() (which answer -EINPROGRESS then), armed by its
 * owner once it holds no lock, called back once per arming from the
 * manager's completion thread, and ended by its owner with lease_wait_end().
 *
 * A parked request holds what its transport needs to answer it later (over
 * io_uring: a ring entry, see fusefs/uring.c), so a user may have at most
 * cfg.max_parked_per_user waits at once, and a wait is made only when
 * ops.may_park says the transport has room. Past either bound the request
 * is answered at once: an EVENTS read with -EAGAIN, a truncate that would
 * wait is refused as under policy fail (-busy_errno, a REFUSE event).
 */
struct lease_wait;
/* @status: 0 (look again / the events are in), -EINTR (an EVENTS read was
 * interrupted), -ESHUTDOWN (the manager is being deleted: reply, end the
 * wait, do not arm it again). Called without any lease lock held. */
typedef void (*lease_wait_fn)(void *arg, int status);

/*
 * lease_may_free() that never sleeps. With *@wp NULL it decides as
 * lease_may_free() does, except where that would wait (policy wait or break
 * with live pins in the range): then it makes a wait, records the waiting
 * (event, SIGIO for break, new pins in the range refused) and returns
 * -EINPROGRESS with the wait in *@wp, counted as one of user @uid's parked
 * requests -- unless that is over a bound (see above): then it refuses as
 * policy fail does. The caller gives up its locks (the
 * operation fails unchanged), arms the wait, and when called back runs the
 * operation again with the same *@wp: this call then looks again (the
 * range and policy are the wait's) and answers 0, -busy_errno, -EINTR
 * (interrupted) or -EINPROGRESS (arm it again). Same locking as
 * lease_may_free(); the deadline is fixed at the first look.
 */
int lease_may_free_nowait(struct lease_mgr *m, uint64_t ino, uint64_t first, uint64_t n,
			  uint32_t policy, uint32_t uid, struct lease_wait **wp);
/* Parks @w: calls @fn(@arg, status) once, from the completion thread (or at
 * once with -ESHUTDOWN if the manager is stopping). Must not hold a lock
 * that @fn takes. */
void lease_wait_arm(struct lease_mgr *m, struct lease_wait *w, lease_wait_fn fn, void *arg);
/* The request of @w was interrupted: a parked truncate's next look answers
 * -EINTR (unless the pins are gone or the deadline passed), a parked EVENTS
 * read is called back with -EINTR. Any thread, any time until the owner
 * ends @w. */
void lease_wait_interrupt(struct lease_mgr *m, struct lease_wait *w);
/* Parked requests (counted waits) of user @uid now; with @uid 0, of every
 * user. */
uint64_t lease_mgr_parked(struct lease_mgr *m, uint32_t uid);
/* Ends and frees *@wp (NULL: nothing), disarming it; a truncate's wait that
 * never decided hands its breaking leases back (as a refusal does). */
void lease_wait_end(struct lease_mgr *m, struct lease_wait **wp);

/* Is pool block @pblk pinned (by any lease, revoked ones included)? */
bool lease_mgr_block_pinned(struct lease_mgr *m, uint64_t pblk);

struct lease_table *lease_mgr_table(struct lease_mgr *m);

/* Counters of one file (@ino) or, with @ino 0, of the mount; the file
 * system fills in what it counts itself (quarantine, writeback). */
void lease_mgr_counters(struct lease_mgr *m, uint64_t ino, struct pinfs_counters *c);
/* File @ino was destroyed and its number may be reused: its leases move
 * aside (lease_forget_ino) and its counters go. */
void lease_mgr_forget_ino(struct lease_mgr *m, uint64_t ino);
/* The command name of holder @tgid (cached), "?" when unknown. */
void lease_mgr_comm(struct lease_mgr *m, uint32_t tgid, char comm[16]);

/* Events with seq > @after, waiting up to @timeout_ms (at most 1000) for
 * the first; every event (root's view). */
void lease_mgr_events(struct lease_mgr *m, uint64_t after, unsigned timeout_ms,
		      struct pinfs_events *out);
/* The events with seq > @after that reader @uid may see: those about its
 * own holders' leases (the holder's uid when it pinned), every event for
 * root (0). Fills @out and returns 0 when there are some (or some were
 * lost, or @timeout_ms is 0); else makes a wait in *@wp, one of @uid's
 * parked requests, and returns -EINPROGRESS: once armed it is called back
 * with @out filled when such an event is recorded or after @timeout_ms (at
 * most 1000; then n is 0). -EAGAIN: no wait made, over a bound on parked
 * requests (see above); -ENOMEM. */
int lease_mgr_events_nowait(struct lease_mgr *m, uint64_t after, unsigned timeout_ms, uint32_t uid,
			    struct pinfs_events *out, struct lease_wait **wp);

/* Name <-> number of a policy ("fail", ...); -EINVAL for unknown names. */
int lease_policy_parse(const char *name, uint32_t *policy);
const char *lease_policy_name(uint32_t policy);

/* lease/holder.c: the exit watcher (one epoll thread, one pidfd per
 * holder). Internal to the manager. @gone(ctx, tgid, gen) is called on its
 * thread when a watched process exits, and with tgid 0, gen 0 when mappers
 * left the watch; @sweep(ctx) every 200 ms while lease_watch_kick() asked
 * for it and it returns true. */
struct lease_watch;
int lease_watch_new(void (*gone)(void *ctx, uint32_t tgid, uint64_t gen),
		    bool (*sweep)(void *ctx), void *ctx, size_t max, uint64_t pool_dev,
		    uint64_t pool_ino, struct lease_watch **out);
/* 1 if the process with pid @tgid is newly watched, 0 if it already was, or
 * -errno: -EUSERS when @max (of lease_watch_new, 0 = no limit) holders are
 * watched already. Takes one reference on it (a lease, or a pin under way).
 * *gen: that process's generation, for its leases. */
int lease_watch_add(struct lease_watch *w, uint32_t tgid, uint64_t *gen);
/* Watches @tgid without a reference: it maps the pool (blocks of ended
 * leases); it leaves when it unmaps. As lease_watch_add. */
int lease_watch_add_mapper(struct lease_watch *w, uint32_t tgid);
/* Drops a reference of generation @gen. At 0 the process leaves the watch
 * (1 s later, or at once when a new holder needs its place) unless it
 * still maps the pool file; the watch then says so through gone(ctx, 0, 0). */
void lease_watch_put(struct lease_watch *w, uint64_t gen);
/* Lets every process without a lease that maps nothing of the pool go now
 * (the record written at unmount). */
void lease_watch_settle(struct lease_watch *w);
/* Asks the watch thread to sweep (mappers and the sweep callback). */
void lease_watch_kick(struct lease_watch *w);

/* Mappings of the pool file: process @pid maps file range [off, end). */
struct lease_mapping {
	uint32_t pid;
	uint64_t off, end;
};
/* Does @pid map file @dev:@ino at all? From /proc/PID/maps; false when it
 * cannot be read or dev and ino are 0. */
bool lease_maps_pool(uint32_t pid, uint64_t dev, uint64_t ino);
/* Every mapping of file @dev:@ino by every process but this one whose maps
 * this process may read: a malloc'd array. 0 or -errno. */
int lease_maps_all(uint64_t dev, uint64_t ino, struct lease_mapping **out, size_t *n);
/* The same for process @pid alone; -errno also when its maps exist but
 * cannot be read (a process that is gone maps nothing: 0). */
int lease_maps_pid(uint32_t pid, uint64_t dev, uint64_t ino, struct lease_mapping **out,
		   size_t *n);

/* lease/holder.c, for lease/policy.c: how leases end while a mapping may
 * live (see there). Lease @l (a snapshot) ends by UNPIN: 0 or -ENOENT. */
int lease_end_one(struct lease_mgr *m, const struct lease *l);
/* Generation @gen of @tgid exited: its leases end; returns how many, and
 * in *@uid the user who pinned them. */
int lease_end_holder(struct lease_mgr *m, uint32_t tgid, uint64_t gen, uint32_t *uid);
/* The watch thread's sweep: true while orphans are left. */
bool lease_sweep_orphans(void *ctx);
/* lease/policy.c, for lease/holder.c. */
struct lease_watch *lease_mgr_watch(struct lease_mgr *m);
void lease_mgr_unpinned(void *ctx, uint64_t pblk, uint64_t n);
void lease_mgr_holders_changed(struct lease_mgr *m);
void lease_mgr_pool(struct lease_mgr *m, uint64_t *dev, uint64_t *ino);
/* The watched holders (alive, pinned since they were added): fills up to
 * @max, returns how many there are. */
size_t lease_watch_list(struct lease_watch *w, uint32_t *out, size_t max);
/* Is generation @gen still watched (its exit not handled yet)? */
bool lease_watch_alive(struct lease_watch *w, uint64_t gen);
/* Is @tgid a live watched holder (a thread-group leader)? */
bool lease_watch_has(struct lease_watch *w, uint32_t tgid);
/* Sends @sig with si_code SI_QUEUE and @id as si_value to the process of
 * generation @gen; -ESRCH once it is gone. */
int lease_watch_signal(struct lease_watch *w, uint64_t gen, int sig, uint64_t id);
void lease_watch_delete(struct lease_watch **wp);

/*
 * The positions the kernel shipped (issue 17), beside the 2019 ones:
 *
 * Unbounded wait: a wait timeout (mount cfg.wait_timeout or per file) of
 * INFINITY waits for as long as the pins live, as dax_layout_busy_page()
 * does; the request stays interruptible (-EINTR, nothing changed), one of
 * its user's parked requests (max_parked), and new pins of its range are
 * refused (-EAGAIN) meanwhile, so it cannot be starved.
 *
 * Short-term pins (PINFS_PIN_SHORT), O_DIRECT style: a truncate or punch
 * waits for them under every policy -- the policy decides only about
 * long-term pins -- and they are bounded: cfg.short_pin_max seconds after
 * the pin the manager revokes a short pin that is still there (SIGBUS only
 * if it was also PINFS_PIN_REVOCABLE: no holder gets a signal it did not
 * ask for), so such a wait ends by then.
 *
 * Policy refuse_longterm (PINFS_POLICY_NOLONGTERM), as the kernel refuses
 * FOLL_LONGTERM on fs-dax: long-term pins are refused at pin time
 * (-EOPNOTSUPP, lease_pin_allowed), short ones are allowed; a truncate
 * waits for the short pins and refuses (busy_errno) if a long-term pin
 * taken before the policy was set is in the way.
 */

/* lease_may_free_nowait() and lease_may_free() with the file's own wait
 * timeout @timeout in seconds (INFINITY: no bound; < 0: the mount's
 * cfg.wait_timeout). Policy wait only. */
int lease_may_free_nowait_timeout(struct lease_mgr *m, uint64_t ino, uint64_t first, uint64_t n,
				  uint32_t policy, double timeout, uint32_t uid,
				  struct lease_wait **wp);
int lease_may_free_timeout(struct lease_mgr *m, uint64_t ino, uint64_t first, uint64_t n,
			   uint32_t policy, double timeout, const struct lease_waiter *w);
/* May a pin with @flags be taken of file @ino whose policy is @policy
 * (DEFAULT: the mount's)? 0, or -EOPNOTSUPP for a long-term pin (no
 * PINFS_PIN_SHORT) under refuse_longterm, counted and recorded (a REFUSE
 * event with err EOPNOTSUPP) for holder @holder of user @uid. */
int lease_pin_allowed(struct lease_mgr *m, uint64_t ino, uint32_t policy, uint32_t flags,
		      uint32_t holder, uint32_t uid);
/* Parses a wait timeout: seconds (a decimal >= 0) or "inf"; -EINVAL. */
int lease_timeout_parse(const char *s, double *out);

#endif

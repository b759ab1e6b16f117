/* SPDX-License-Identifier: MIT */
/*
 * include/pinfs/abi.h -- the public ioctl ABI of pinfs: the one header clients
 * include. FUSE passes only "restricted" ioctls on regular files: the
 * argument is a fixed-size struct whose size is encoded in the command
 * number, copied in and/or out by the kernel (at most 16 KiB each way); no
 * pointer inside it is ever followed. So every struct here is flat.
 *
 * All integers are little-endian host order, fixed width; reserved fields
 * must be zero (EINVAL otherwise) so they can be given meaning later.
 *
 * Issue the ioctls on an open file of a pinfs mount (any file for
 * PINFS_IOC_STATS / PINFS_IOC_POLICY on the root sets mount-wide state).
 */
#ifndef PINFS_LEASE_ABI_H
#define PINFS_LEASE_ABI_H

#include <linux/ioctl.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PINFS_IOC_MAGIC 0xb7

/* pin flags */
#define PINFS_PIN_WRITE 0x1u	 /* the holder will store: needs an fd open for writing */
#define PINFS_PIN_REVOCABLE 0x2u /* the holder accepts revocation (SIGBUS) */
#define PINFS_PIN_ON_CLOSE 0x4u	 /* the pin ends when this open file is released */
#define PINFS_PIN_FLAGS (PINFS_PIN_WRITE | PINFS_PIN_REVOCABLE | PINFS_PIN_ON_CLOSE)

/* One physically contiguous piece of a pinned range. */
struct pinfs_seg {
	uint64_t file_off; /* byte offset in the file */
	uint64_t pool_off; /* byte offset in the pool file */
	uint64_t len;	   /* bytes, a multiple of 4096 */
};

#define PINFS_SEGS_MAX 64 /* segments in one reply; fetch more with PINFS_IOC_SEGS */

/*
 * PINFS_IOC_PIN: pins [offset, offset + length) of the file, rounded out to
 * 4 KiB blocks; holes are allocated (as a write fault would). Pinning past
 * EOF is EINVAL, a zero length EINVAL, PINFS_PIN_WRITE on an fd not open for
 * writing EBADF. Over the per-process limits: ENOMEM. A process that has not
 * pinned yet while 128 others that have are alive: EUSERS (the pool records
 * every process that pinned, until it exits, also after its last unpin, so
 * that it is not mounted again while one lives). While a truncate or
 * hole punch waits for pins on an overlapping range (policies wait, break):
 * EAGAIN, so the waiter cannot be starved by new pins.
 *
 * Who may pin, checked in this order before anything is allocated or pinned
 * (a pin can refuse, delay or revoke another process's truncate):
 *  - EACCES: the pin rule. As F_SETLEASE: only the file's owner (fsuid ==
 *    the file's uid) or a caller with CAP_LEASE in its effective set; a
 *    mount with -o pin_access=writer also lets whoever may write the file
 *    (its mode bits against the caller's uid, gid and groups).
 *  - EPERM: the caller could not open the pool file (PINFS_XATTR_POOL) for
 *    reading, or for reading and writing with PINFS_PIN_WRITE (uid 0, the
 *    pool's owner, its group with the group bits, or the other bits):
 *    holders map the pool, so such a pin would be useless. See pinfs
 *    -o pin_group=GROUP and pinfs_pin_strerror() in include/pinfs/client.h.
 *  - EACCES: a pin of a range with holes (which it would allocate) by a
 *    caller who could not write the file: the fd is read-only and the mode
 *    bits do not let the caller write (uid 0 passes them). Nothing is
 *    allocated; pinning blocks that are already allocated stays allowed.
 * Out: the lease id, the rounded range, and its first segments.
 */
struct pinfs_pin {
	/* in */
	uint64_t offset;
	uint64_t length;
	uint32_t flags;	   /* PINFS_PIN_* */
	union {
		uint32_t reserved;   /* must be zero without PINFS_PIN_NOTIFY_SIGNAL */
		uint32_t notify_sig; /* with PINFS_PIN_NOTIFY_SIGNAL: the break signal */
	};
	/* out */
	uint64_t lease_id;
	uint64_t pin_offset; /* rounded down to a block */
	uint64_t pin_length; /* rounded up to blocks */
	uint32_t nsegs_total;
	uint32_t nsegs; /* valid entries in segs[] */
	struct pinfs_seg segs[PINFS_SEGS_MAX];
};

/* PINFS_IOC_SEGS: more segments of a lease, from segment index @first. Only
 * the holder (or root) may ask: EPERM for anyone else, ENOENT for no such
 * lease. */
struct pinfs_segs {
	uint64_t lease_id; /* in */
	uint32_t first;	   /* in */
	uint32_t nsegs;	   /* out */
	uint32_t nsegs_total; /* out */
	uint32_t reserved;
	struct pinfs_seg segs[PINFS_SEGS_MAX]; /* out */
};

/* PINFS_IOC_UNPIN: ends a lease (the holder or root). Unpinning a revoked
 * lease acknowledges the revocation: its quarantined blocks are freed. */
struct pinfs_unpin {
	uint64_t lease_id;
	uint64_t reserved;
};

/* lease states */
#define PINFS_LEASE_ACTIVE 1u
#define PINFS_LEASE_BREAKING 2u /* a break notice was sent; grace running */
#define PINFS_LEASE_REVOKED 3u	/* revoked: blocks quarantined until unpin/exit */

struct pinfs_lease_info {
	uint64_t lease_id;
	uint64_t ino;		 /* 0: the file is gone (unlinked and closed); its
				  * pinned blocks stay out of use until the unpin */
	uint64_t offset, length; /* bytes */
	uint32_t holder_pid;	 /* thread-group id */
	uint32_t flags;		 /* PINFS_PIN_* */
	uint32_t state;		 /* PINFS_LEASE_* */
	uint32_t reserved;
	uint64_t age_ns;
	char comm[16];		 /* holder's command name */
};

#define PINFS_LIST_MAX 64
/* PINFS_IOC_LIST: leases of this file (or of the whole mount when
 * @all is set), from index @first. */
struct pinfs_list {
	uint32_t first; /* in */
	uint32_t all;	/* in: 1 = every lease of the mount */
	uint32_t n;	/* out: valid entries */
	uint32_t total; /* out */
	struct pinfs_lease_info l[PINFS_LIST_MAX];
};

/* truncate policies */
#define PINFS_POLICY_DEFAULT 0u /* per file: follow the mount's */
#define PINFS_POLICY_FAIL 1u
#define PINFS_POLICY_REVOKE 2u
#define PINFS_POLICY_WAIT 3u
#define PINFS_POLICY_BREAK 4u

/* PINFS_IOC_GET_POLICY / PINFS_IOC_SET_POLICY: the file's policy; with
 * @mount set, the mount's default (setting it needs root: EPERM). Setting a
 * file's policy, here or through PINFS_XATTR_POLICY, needs what pinning it
 * needs (the pin rule of PINFS_IOC_PIN: owner or CAP_LEASE, or a writer
 * under pin_access=writer): EACCES otherwise. */
struct pinfs_policy {
	uint32_t policy; /* PINFS_POLICY_* */
	uint32_t mount;	 /* 1 = the mount default */
	uint32_t effective; /* out (get): what applies to this file */
	uint32_t reserved;
};

/* PINFS_IOC_STATS: per file and per mount counters. */
struct pinfs_counters {
	uint64_t pins, pinned_blocks, leases_revoked, leases_broken, refusals;
	uint64_t quarantined_blocks;
	uint64_t dirty_blocks, clean_blocks, pinned_dirty_blocks;
	uint64_t flushed_background, flushed_integrity, pinned_kept_dirty;
	uint64_t csum_failures;
	/* mount only: bytes the kernel wrote back from shared mappings
	 * (mmap MAP_SHARED of a file of the mount) that could not be stored,
	 * e.g. ENOSPC for a store into a hole on a full pool: they are not in
	 * the files (the first fsync/msync of such a file reported the errno) */
	uint64_t mmap_lost_bytes;
	/* blocks write() made durable before returning (every write() is:
	 * sync(2) never reaches a FUSE daemon) */
	uint64_t flushed_write;
	/* mount only: freed blocks cut out of the pool file before reuse, so
	 * that a kernel pin which outlived its lease (io_uring fixed buffers,
	 * RDMA) keeps an orphaned page, never another file's block */
	uint64_t severed_blocks;
	/* mount only: freed blocks held out of the free list now because they
	 * could not be cut out yet (a huge page a pin keeps from splitting) */
	uint64_t unsevered_blocks;
	/* mount only: requests parked now (EVENTS reads waiting for events,
	 * truncates waiting on pins); a user other than root sees their own.
	 * (A reserved field, always 0, in daemons before it.) */
	uint64_t parked;
	/* mount only: requests that came in through FUSE over io_uring */
	uint64_t ring_requests;
	/* mount only: PINFS_TRANSPORT_*, what serves requests now (0: a
	 * daemon older than the field) */
	uint64_t transport;
	/*
	 * Pins beside ordinary references (Kara's pin counting; pinfs_stats
	 * of a daemon before these fields: size the ioctl without them, the
	 * daemon fills what the size holds). A pin (above: pins) is what
	 * holds truncate back; an open file or a plain mapping never is.
	 */
	/* open files (FUSE handles, one per open(2); for the mount open
	 * directories too), the one the ioctl came through included */
	uint64_t open_handles;
	/* file: 1 while the kernel caches pages of the file for a plain
	 * shared mapping (the daemon served a page fill for it, since its
	 * last open file was released), else 0; mount: such files */
	uint64_t mapped_files;
	/* pins with PINFS_PIN_SHORT now (counted in pins too) */
	uint64_t short_pins;
	/* short pins revoked because they outlived -o short_pin_max */
	uint64_t short_pins_expired;
	/* long-term pins refused with EOPNOTSUPP (policy refuse_longterm) */
	uint64_t longterm_refused;
	/* mount only, -o dense: free blocks backed by zeroed pages now (a
	 * new block there needs no page allocation), and free blocks the
	 * daemon backs so once the pool is idle (no block taken for 0.1 s):
	 * the mount's free space, and blocks freed since */
	uint64_t zeroed_blocks;
	uint64_t zeroing_blocks;
};
#define PINFS_TRANSPORT_DEV_FUSE 1u /* read()/writev() on /dev/fuse */
#define PINFS_TRANSPORT_IO_URING 2u /* FUSE over io_uring (pinfs -o io_uring) */
struct pinfs_stats {
	struct pinfs_counters file;
	struct pinfs_counters mount;
};

/* events (pinfsctl events) */
#define PINFS_EV_PIN 1u
#define PINFS_EV_UNPIN 2u
#define PINFS_EV_BREAK 3u	/* a lease-break notice was sent */
#define PINFS_EV_REVOKE 4u
#define PINFS_EV_REFUSE 5u	/* truncate/punch refused: err says why */
#define PINFS_EV_EXIT 6u	/* a holder exited: its pins ended (nleases of them) */
#define PINFS_EV_WAIT 7u	/* truncate/punch waits for pins (policy wait/break) */
struct pinfs_event {
	uint64_t seq;	   /* 1, 2, ... per mount */
	uint64_t time_ns;  /* CLOCK_REALTIME */
	uint32_t type;	   /* PINFS_EV_* */
	uint32_t holder_pid;
	uint64_t lease_id;
	uint64_t ino;
	union {
		uint64_t offset;  /* bytes */
		uint64_t nleases; /* EXIT: how many leases ended with the
				   * holder (lease_id, ino, length are 0) */
	};
	uint64_t length;   /* bytes */
	int32_t err;	   /* REFUSE: the errno returned; 0 otherwise */
	uint32_t policy;   /* the policy that decided, PINFS_POLICY_*; 0 where
			    * none did (PIN, UNPIN, EXIT) */
	char comm[16];	   /* holder's command name */
};
#define PINFS_EVENTS_MAX 128
/* PINFS_IOC_EVENTS: events with seq > after_seq; waits up to timeout_ms
 * (at most 1000) for the first one. */
struct pinfs_events {
	uint64_t after_seq;  /* in */
	uint32_t timeout_ms; /* in */
	uint32_t n;	     /* out */
	uint64_t next_seq;   /* out: pass as after_seq next time */
	uint64_t lost;	     /* out: events that fell out of the ring */
	struct pinfs_event ev[PINFS_EVENTS_MAX];
};

#define PINFS_IOC_PIN _IOWR(PINFS_IOC_MAGIC, 1, struct pinfs_pin)
#define PINFS_IOC_SEGS _IOWR(PINFS_IOC_MAGIC, 2, struct pinfs_segs)
#define PINFS_IOC_UNPIN _IOW(PINFS_IOC_MAGIC, 3, struct pinfs_unpin)
#define PINFS_IOC_LIST _IOWR(PINFS_IOC_MAGIC, 4, struct pinfs_list)
#define PINFS_IOC_GET_POLICY _IOWR(PINFS_IOC_MAGIC, 5, struct pinfs_policy)
#define PINFS_IOC_SET_POLICY _IOW(PINFS_IOC_MAGIC, 6, struct pinfs_policy)
#define PINFS_IOC_STATS _IOR(PINFS_IOC_MAGIC, 7, struct pinfs_stats)
#define PINFS_IOC_EVENTS _IOWR(PINFS_IOC_MAGIC, 8, struct pinfs_events)

/* PINFS_IOC_SCRUB: verifies the checksum of every clean block of this file
 * (or, with @all, of every file of the mount). A pinned or dirty block has
 * no valid checksum and is skipped, counted by reason. EOPNOTSUPP on a pool
 * made without mkfs.pinfs --checksums. */
struct pinfs_scrub {
	uint32_t all;	   /* in */
	uint32_t reserved; /* in, must be zero */
	uint64_t files, checked, bad;			      /* out */
	uint64_t skipped_dirty, skipped_pinned, skipped_nocsum; /* out */
	uint64_t first_bad_ino, first_bad_off;		      /* out */
};
#define PINFS_IOC_SCRUB _IOWR(PINFS_IOC_MAGIC, 9, struct pinfs_scrub)

/*
 * Signals to holders, sent with pidfd_send_signal() and si_code SI_QUEUE;
 * si_value.sival_ptr carries the lease id (as uintptr_t):
 *   SIG     lease-break notice (policy "break"), only to a holder that pinned
 *           with PINFS_PIN_NOTIFY_SIGNAL: the signal it named (below);
 *           unpin within the grace time
 *   SIGBUS  the lease was revoked: stop using the mapping and unpin to
 *           acknowledge (its blocks stay quarantined until then or exit);
 *           not sent to a lease pinned with PINFS_PIN_NOTIFY_EVENTS, whose
 *           revoke record on the event channel is the notice
 */

/* The pool's path, for clients that map leases: a read-only xattr of every
 * file of the mount. Whoever can open the pool file can map all of it: the
 * pool file's permissions are the trust boundary (pinfs -o pin_group=GROUP
 * makes it GROUP's, mode 0660: trust GROUP's members like the daemon's
 * owner). */
#define PINFS_XATTR_POOL "user.pinfs.pool"
/* A file's policy as an xattr: "fail", "revoke", "wait", "break", "default" */
#define PINFS_XATTR_POLICY "user.pinfs.policy"

/* PINFS_IOC_OPS (on any file or directory of the mount, anyone): how many
 * requests the kernel sent the daemon since the mount, per FUSE opcode
 * (<linux/fuse.h>: count[FUSE_LOOKUP] ...; opcodes from PINFS_OPS_MAX - 1
 * up, e.g. CUSE_INIT, are summed in the last slot). The ioctl's own OPEN,
 * IOCTL and RELEASE are counted too. pinfsctl stats --ops prints them. */
#define PINFS_OPS_MAX 64
struct pinfs_ops {
	uint64_t count[PINFS_OPS_MAX];
};
#define PINFS_IOC_OPS _IOR(PINFS_IOC_MAGIC, 0x40, struct pinfs_ops)
/*
 * The positions the kernel shipped, beside those of 2019:
 *
 * PINFS_PIN_SHORT: a short-term pin, as O_DIRECT's pin_user_pages() without
 * FOLL_LONGTERM: held for one transfer, bounded. A truncate or hole punch
 * waits for short pins of its range under every policy (the policy decides
 * only about long-term pins); the wait is interruptible (EINTR) and ends
 * at the latest when the pins expire: a short pin still there
 * -o short_pin_max seconds (default 5) after it was taken is revoked --
 * PINFS_LEASE_REVOKED, its blocks quarantined if freed, until unpin or
 * exit, as any revoked lease -- and its holder gets SIGBUS only if the pin
 * was also PINFS_PIN_REVOCABLE.
 *
 * PINFS_POLICY_NOLONGTERM ("refuse_longterm"): as the kernel refuses
 * FOLL_LONGTERM on fs-dax files (EOPNOTSUPP) and on page-cache files
 * (EFAULT), a pin without PINFS_PIN_SHORT of such a file is refused with
 * EOPNOTSUPP at PINFS_IOC_PIN; short pins are allowed and waited for. A
 * long-term pin taken before the policy was set makes truncate fail
 * (busy_errno), as policy fail.
 *
 * PINFS_XATTR_WAIT_TIMEOUT: a file's own wait timeout for policy wait,
 * seconds or "inf" (-o wait_timeout=inf is the mount's): with inf a
 * truncate waits for as long as the pin lives, as today's kernel waits in
 * dax_layout_busy_page(); it stays interruptible (EINTR, file unchanged),
 * counts as one of its user's parked requests (-o max_parked: past it the
 * truncate is refused, not parked), and new pins of its range get EAGAIN
 * meanwhile. Setting it needs what setting the policy needs.
 */
#define PINFS_PIN_SHORT 0x20u
#define PINFS_POLICY_NOLONGTERM 5u /* also in PINFS_XATTR_POLICY: "refuse_longterm" */
#define PINFS_XATTR_WAIT_TIMEOUT "user.pinfs.wait_timeout"

/* Checked by every C build (C++ spells it static_assert). */
#ifndef __cplusplus
_Static_assert(sizeof(struct pinfs_pin) <= 16384, "restricted ioctl limit");
_Static_assert(sizeof(struct pinfs_segs) <= 16384, "restricted ioctl limit");
_Static_assert(sizeof(struct pinfs_list) <= 16384, "restricted ioctl limit");
_Static_assert(sizeof(struct pinfs_events) < 16384, "restricted ioctl limit");
_Static_assert(sizeof(struct pinfs_event) == 80, "the event ABI is 80 bytes");
#endif

/*
 * ---- Lease notices: who is told, and how (issue 17) -----------------------
 *
 * As with F_SETLEASE/F_SETSIG, notices go only to holders that asked for
 * them, at pin time, on the channel they chose:
 *
 *  - PINFS_PIN_NOTIFY_SIGNAL: a lease break (policy break) sends signal
 *    pinfs_pin.notify_sig (1..SIGRTMAX; anything else is EINVAL) with
 *    si_code SI_QUEUE and the lease id in si_value.sival_ptr. The holder
 *    named it: whatever its default action is, it is the holder's choice.
 *  - PINFS_PIN_NOTIFY_EVENTS: break, revoke and wait notices are records
 *    (struct pinfs_lease_event) on the event channel of the holder process
 *    (see PINFS_XATTR_EVENTS). The process must have the channel open when
 *    it pins: ENOTCONN otherwise.
 *  Both may be set. A holder that set neither asked for nothing and is
 *  treated as non-cooperative: under policy break no signal is sent, the
 *  break time passes (its lease shows PINFS_LEASE_BREAKING meanwhile),
 *  then the truncate fails with EBUSY or, with PINFS_PIN_REVOCABLE, the
 *  lease is revoked.
 *
 * Revocation is told on the channel the holder chose: a lease pinned with
 * PINFS_PIN_NOTIFY_EVENTS gets its revoke record on the event channel and
 * no signal; any other PINFS_PIN_REVOCABLE lease gets SIGBUS (si_code
 * SI_QUEUE, si_value the lease id) when revoked: by pinning revocable it
 * accepted it. So a holder never receives a signal whose default action is
 * fatal unless it named that signal or accepted revocation by signal. (Before these
 * flags, every break sent SIGIO, whose default action kills: a holder that
 * pinned from client.h alone died of a truncate.)
 */
#define PINFS_PIN_NOTIFY_SIGNAL 0x8u /* break notice: the signal notify_sig */
#define PINFS_PIN_NOTIFY_EVENTS 0x10u /* notices on the event channel */
#define PINFS_PIN_NOTIFY_FLAGS (PINFS_PIN_NOTIFY_SIGNAL | PINFS_PIN_NOTIFY_EVENTS)

/* The event channel: a unix socket (SOCK_SEQPACKET) the daemon listens on,
 * named by this read-only xattr of every file of the mount: "@NAME", an
 * abstract socket name (connect to "\0NAME"). Any user may connect; the
 * daemon knows a connection by its SO_PEERCRED (pid, uid) and sends it the
 * notices of the leases that process pinned with PINFS_PIN_NOTIFY_EVENTS
 * as the same uid, and nothing else: no one reads another process's
 * notices. Each read() is one struct pinfs_lease_event; the first one on a
 * new connection has event 0 (the greeting: the daemon knows the
 * connection now, pins may name it). The daemon never waits for a reader:
 * what does not fit the connection's socket buffer is dropped and counted
 * in the next record's @lost. A connection ends at close() or at the
 * process's exit; the daemon's end is EOF (read() 0). The socket lives in
 * the daemon's network namespace. See pinfs_event_open(3). */
#define PINFS_XATTR_EVENTS "user.pinfs.events"

#define PINFS_EV_GREETING 0u /* event channel only: the first record */
struct pinfs_lease_event {
	uint64_t lease_id;
	uint64_t cookie;   /* the holder's, from PINFS_IOC_PIN_EX (0: none) */
	uint64_t ino;	   /* the file (0: it is gone) */
	uint64_t offset;   /* the lease's range, bytes */
	uint64_t length;
	uint64_t time_ns;  /* CLOCK_REALTIME */
	uint64_t lost;	   /* records this connection dropped before this one */
	uint32_t event;	   /* PINFS_EV_WAIT, PINFS_EV_BREAK, PINFS_EV_REVOKE
			    * (or PINFS_EV_GREETING) */
	uint32_t reason;   /* PINFS_POLICY_* that decided: WAIT (a truncate or
			    * punch waits for this lease), BREAK, REVOKE */
	uint32_t break_ms; /* BREAK: grace left, ms; unpin before it ends */
	uint32_t holder_pid; /* the holder (GREETING: the connection's pid) */
	uint64_t reserved[3];
};

/* PINFS_IOC_PIN_EX: PINFS_IOC_PIN with a cookie: an opaque u64 of the
 * holder's, returned in its lease's events and by PINFS_IOC_LEASE and
 * PINFS_IOC_LIST_EX. Everything else as PINFS_IOC_PIN (@pin in and out). */
struct pinfs_pin_ex {
	uint64_t cookie;      /* in */
	uint64_t reserved[3]; /* in: must be zero */
	struct pinfs_pin pin;
};

/* PINFS_IOC_LEASE: one lease's state. The holder, the user who pinned it
 * or root may ask: EPERM for anyone else, ENOENT for no such lease (it was
 * unpinned, or its holder exited). */
struct pinfs_lease_query {
	uint64_t lease_id;    /* in */
	uint64_t cookie;      /* out */
	uint32_t notify_sig;  /* out: with PINFS_PIN_NOTIFY_SIGNAL */
	uint32_t reserved;    /* in: must be zero */
	struct pinfs_lease_info info; /* out: info.state says ACTIVE,
				       * BREAKING or REVOKED */
};

/* PINFS_IOC_LIST_EX: PINFS_IOC_LIST, each lease with its cookie. */
struct pinfs_lease_info_ex {
	struct pinfs_lease_info info;
	uint64_t cookie;
	uint32_t notify_sig;
	uint32_t reserved;
};
struct pinfs_list_ex {
	uint32_t first; /* in */
	uint32_t all;	/* in */
	uint32_t n;	/* out */
	uint32_t total; /* out */
	struct pinfs_lease_info_ex l[PINFS_LIST_MAX];
};

#define PINFS_IOC_PIN_EX _IOWR(PINFS_IOC_MAGIC, 10, struct pinfs_pin_ex)
#define PINFS_IOC_LEASE _IOWR(PINFS_IOC_MAGIC, 11, struct pinfs_lease_query)
#define PINFS_IOC_LIST_EX _IOWR(PINFS_IOC_MAGIC, 12, struct pinfs_list_ex)

#ifndef __cplusplus
_Static_assert(sizeof(struct pinfs_lease_event) == 96, "the channel record is 96 bytes");
_Static_assert(sizeof(struct pinfs_pin_ex) <= 16384, "restricted ioctl limit");
_Static_assert(sizeof(struct pinfs_list_ex) <= 16384, "restricted ioctl limit");
#endif

/*
 * PINFS_IOC_STATUS: the daemon serving the mount (pinfsctl status), on any
 * open file of the mount. Anyone who may open a file of the mount sees the
 * daemon, the pool's path and the options (as PINFS_XATTR_POOL shows the
 * path already); root sees every holder, another user their own holders
 * only, and how many of other users' there are (holders_hidden), without
 * their pids or commands. A daemon older than the ioctl answers ENOTTY.
 */
#define PINFS_STATUS_HOLDERS_MAX 64
#define PINFS_STATUS_PMEM 0x1u	   /* the pool is real persistent memory */
#define PINFS_STATUS_READONLY 0x2u /* the pool is corrupt: served read-only */
struct pinfs_status_holder {
	uint32_t pid;		/* thread-group id */
	uint32_t uid;		/* its real uid (/proc), or the uid that pinned */
	uint32_t leases;	/* its leases now (0: it maps the pool, unpinned) */
	uint32_t revoked;	/* of them revoked or ended, still held */
	uint64_t pinned_bytes;	/* the length of its leases */
	char comm[16];		/* its command name */
};
struct pinfs_status {
	uint32_t daemon_pid;	  /* out: the daemon's pid */
	uint32_t transport;	  /* out: PINFS_TRANSPORT_* */
	uint64_t start_time_ns;	  /* out: CLOCK_REALTIME when the mount came up */
	uint64_t uptime_ns;	  /* out: since then (CLOCK_MONOTONIC) */
	uint32_t flags;		  /* out: PINFS_STATUS_* */
	uint32_t nholders;	  /* out: valid entries of holders[] */
	uint32_t holders_total;	  /* out: holders the caller may see listed */
	uint32_t holders_hidden;  /* out: other users' holders (not root) */
	uint64_t leases;	  /* out: leases of the mount (not root: the caller's) */
	uint64_t reserved[4];	  /* must be zero */
	char pool[4096];	  /* out: the pool file's real path */
	char options[2048];	  /* out: the options in effect, "name=value,..." */
	struct pinfs_status_holder holders[PINFS_STATUS_HOLDERS_MAX]; /* out */
};
#define PINFS_IOC_STATUS _IOWR(PINFS_IOC_MAGIC, 16, struct pinfs_status)
#ifndef __cplusplus
_Static_assert(sizeof(struct pinfs_status) <= 16384, "restricted ioctl limit");
_Static_assert(sizeof(struct pinfs_status_holder) == 40, "the holder record is 40 bytes");
#endif

/*
 * Layout leases (pinfs-dax, dax/): PINFS_PIN_LAYOUT marks a cooperative
 * lease taken by a library on behalf of an unmodified program. The daemon
 * never waits for one and never signals its holder: a truncate, O_TRUNC or
 * hole punch over it revokes it at once under every policy (even when
 * the operation is then refused or waits for the other pins of the range;
 * a shrink also revokes the one on the new last block), its blocks quarantined
 * until the holder unpins or exits, and says so through the holder's slot
 * in the dax state file (PINFS_XATTR_DAXSTATE), with no round trip. A
 * layout pin needs only what mapping the pool needs (no pin rule: it can
 * hold up nobody) and never fills holes (EACCES for a range with holes).
 * With PINFS_PIN_LAYOUT, the reply's @reserved carries the lease's slot
 * index + 1. EOPNOTSUPP: the daemon has no state file.
 */
#define PINFS_PIN_LAYOUT 0x40u
/* With PINFS_PIN_LAYOUT: the lease backs a shared mapping of the pool that
 * the holder gave a program (pinfs-dax mmap). Stores through it cannot be
 * done again through FUSE, as a copy's can, so a plain mapping's first
 * page-cache fill of the file (PINFS_DAX_MAPPED) waits, up to a second,
 * until the holder has given the lease up: its mapping replaced by the
 * kernel's, which shares the page cache, and unpinned. */
#define PINFS_PIN_MMAP 0x80u
/* the dax state file's path: a read-only xattr of every file of the mount */
#define PINFS_XATTR_DAXSTATE "user.pinfs.daxstate"
#define PINFS_DAX_MAGIC 0x5844534e4950ull /* "PINSDX" */
#define PINFS_DAX_SLOTS 4096u
/* The state file: this header, then PINFS_DAX_SLOTS slots of 64 bytes.
 * The daemon writes, holders map it read-only. @revokes counts every
 * revocation (a FUTEX_WAKE follows each bump, so a holder thread may wait
 * on it, FUTEX_WAIT without FUTEX_PRIVATE_FLAG). */
struct pinfs_dax_hdr {
	uint64_t magic;
	uint32_t version; /* 1 */
	uint32_t nslots;
	uint32_t revokes;
	uint32_t reserved0;
	uint64_t reserved[5];
};
/* Slot flags: PINFS_DAX_MAPPED -- the kernel may cache pages of the file
 * for plain mmap users (fusefs/coherent.c): stores must go through FUSE. */
#define PINFS_DAX_MAPPED 0x1u
/* PINFS_DAX_MMAP -- the lease was taken with PINFS_PIN_MMAP (daemon's own
 * note; holders need not read it). */
#define PINFS_DAX_MMAP 0x2u
/* One layout lease. The daemon changes @state/@flags, then bumps @seq
 * (release); a holder reads @seq (acquire), checks @lease_id, @state and
 * @flags, copies, and reads @seq again: unchanged means nothing was revoked
 * during the copy (a seqlock). */
struct pinfs_dax_slot {
	uint64_t seq;
	uint64_t lease_id; /* 0: free */
	uint64_t ino;
	uint32_t state;	   /* PINFS_LEASE_ACTIVE / PINFS_LEASE_REVOKED */
	uint32_t flags;	   /* PINFS_DAX_* */
	uint64_t reserved[4];
};
#ifndef __cplusplus
_Static_assert(sizeof(struct pinfs_dax_hdr) == 64, "dax header ABI");
_Static_assert(sizeof(struct pinfs_dax_slot) == 64, "dax slot ABI");
#endif

/*
 * PINFS_IOC_GROW: sets the file's size to @size if it is larger, never
 * smaller (concurrent growers race safely: the largest wins), as a write
 * ending there would: the stale tail of the old last block is zeroed, the
 * blocks between are left as they are (allocated ones past EOF hold zeros:
 * a truncate or a write past them keeps them so), mtime and ctime are set.
 * Nothing is allocated. The fd must be open for writing (else EBADF); a
 * regular file (else EINVAL); EFBIG past the largest file size. pinfs-dax
 * grows a file by it before its direct stores past the old EOF, into blocks
 * preallocated with fallocate(FALLOC_FL_KEEP_SIZE). The kernel's cached
 * attributes are invalidated before the reply.
 */
struct pinfs_grow {
	uint64_t size;
	uint64_t reserved; /* 0 */
};
#define PINFS_IOC_GROW _IOW(PINFS_IOC_MAGIC, 0x21, struct pinfs_grow)

/*
 * PINFS_IOC_TRIM: frees the file's blocks from its EOF (rounded up to a
 * block) to byte @end: preallocation past EOF that its writer no longer
 * needs, as XFS trims its speculative preallocation at close. Nothing
 * inside the size is touched, whatever @end says (the size is read under
 * the file's data lock), and the timestamps are left alone. Pins are asked
 * as for a hole punch: a layout lease over those blocks is revoked; where
 * the policy would wait, EBUSY and nothing changes. The fd must be open for
 * writing (else EBADF); a regular file (else EINVAL). pinfs-dax trims what
 * it preallocated when it closes a file's last fd.
 */
struct pinfs_trim {
	uint64_t end;
	uint64_t reserved; /* 0 */
};
#define PINFS_IOC_TRIM _IOW(PINFS_IOC_MAGIC, 0x22, struct pinfs_trim)

#ifdef __cplusplus
}
#endif

#endif

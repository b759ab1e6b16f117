/* SPDX-License-Identifier: MIT */
/*
 * include/pinfs/client.h -- the pinfs client library: pin a byte range of a file on
 * a pinfs mount and map its blocks straight from the pool file (DAX-style),
 * into one contiguous range of the caller's address space.
 *
 *	struct pinfs_map m;
 *	int rc = pinfs_map_pin(fd, off, len, PINFS_PIN_WRITE, &m);
 *	... stores to pinfs_map_ptr(&m, off) are visible to read() at once ...
 *	rc = pinfs_map_unpin(&m);
 *
 * The pool is found through the PINFS_XATTR_POOL xattr of the file and
 * opened by the caller's credentials: whoever can open the pool file can map
 * all of it (the pool file's permissions are the trust boundary).
 *
 * Revocation: the daemon may revoke a PINFS_PIN_REVOCABLE lease (SIGBUS with
 * si_code SI_QUEUE, see include/pinfs/abi.h -- or, for a lease pinned with
 * PINFS_PIN_NOTIFY_EVENTS, a revoke record on the event channel and no
 * signal; a lease that is not revocable
 * is never revoked, and by default is sent no signal at all: see "Notices"
 * below). The mapping stays valid -- its blocks
 * are quarantined, no longer part of the file -- until pinfs_map_unpin(),
 * which acknowledges the revocation.
 *
 * Kernel pins: release anything else that pins the mapping (io_uring fixed
 * buffers, RDMA MRs) before pinfs_map_unpin(). That is advice for speed and
 * sense, not a condition of safety: a kernel pin holds the pages, not the
 * mapping, and outlives the lease; the daemon cuts a freed block out of the
 * pool file before it hands the block to another file (on tmpfs and
 * hugetlbfs), so a store through a stale pin lands in an orphaned page that
 * no file reads -- and is lost. On a DAX pool (a file on an fsdax mount) the
 * kernel refuses long-term pins of the mapping: io_uring_register_buffers()
 * fails with EOPNOTSUPP; use ordinary (short-term) I/O there. On a devdax
 * device nothing can be cut out: there the rule is one of safety again.
 *
 * fork(): the mapping is MADV_DONTFORK, as libibverbs' ibv_fork_init()
 * makes RDMA memory: a child of the caller has nothing mapped there, and a
 * load or store at m->addr in the child is SIGSEGV. The daemon keeps a
 * lease's blocks from other files only while the process that pinned them
 * lives, and a child could outlive it. Do not pass the range to a child;
 * let it pin for itself.
 *
 * PINFS_PIN_ON_CLOSE: the lease ends when its file is closed; the mapping
 * does not. The ended lease shows as revoked and its blocks stay out of the
 * free list (quarantined once the file lets them go) until it is unpinned
 * -- PINFS_IOC_UNPIN of m->lease_id, after munmap, through any open file of
 * the mount -- or the caller exits. pinfs_map_unpin() after the close
 * unmaps, and its unpin fails (m->fd is closed).
 *
 * PINFS_PIN_SHORT: a short-term pin, held for one transfer (as O_DIRECT
 * pins pages): truncate and hole punch wait for it under every policy, a
 * file under policy refuse_longterm allows only these (a long-term pin,
 * without the flag, fails with -EOPNOTSUPP there), and the daemon revokes
 * it -o short_pin_max seconds (default 5) after it was taken -- the lease
 * shows as revoked, its blocks are kept from other files until the unpin,
 * and SIGBUS comes only if the pin was also PINFS_PIN_REVOCABLE. So pin,
 * transfer, pinfs_map_unpin() well within that time.
 *
 * Errors: 0 or -errno, as the rest of pinfs. Not async-signal-safe.
 */
#ifndef PINFS_LEASE_CLIENT_H
#define PINFS_LEASE_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "pinfs/abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A pinned and mapped range. Treat as read-only; all fields are valid
 * between a successful pinfs_map_pin() and pinfs_map_unpin(). */
struct pinfs_map {
	void *addr;	     /* file offset @offset is mapped here */
	size_t len;	     /* bytes mapped: the pinned range, rounded out to blocks */
	uint64_t lease_id;
	uint64_t offset;     /* pinned range start in the file (rounded down to a block) */
	int pool_fd;	     /* the pool file, open while mapped */
	int fd;		     /* the pinned file (the caller's; not owned) */
	uint32_t flags;	     /* PINFS_PIN_* as pinned */
	uint32_t nsegs;	     /* physically contiguous pieces mapped */
};

/*
 * Pins [off, off + len) of the open pinfs file @fd (rounded out to 4 KiB
 * blocks) with PINFS_PIN_* @flags, and maps the pinned blocks from the pool
 * into one contiguous range: readable, and writable with PINFS_PIN_WRITE
 * (which needs @fd open for writing). The range's start is placed at the
 * same offset modulo 2 MiB as its first block in the pool, so that a pool on
 * 2 MiB pages is mapped with huge pages.
 *
 * @fd must stay open until pinfs_map_unpin(): the lease is ended through it.
 *
 * Returns 0 and fills *m; or -errno with *m cleared (pool_fd -1) and nothing
 * left pinned or mapped: the PINFS_IOC_PIN errors (EINVAL for a zero length
 * or a range past EOF, EBADF for a write pin on a read-only fd, ENOMEM over
 * the per-process limits, ENOTTY if @fd is not on a pinfs mount, EACCES
 * when the pin rule refuses it, EPERM when the caller may not map the pool),
 * the getxattr/open/mmap errors of the pool (its open's EACCES is returned
 * as EPERM: the same "you may not map the pool"), or EPROTO if the daemon's
 * answer does not describe the range (segments that do not tile it, a
 * relative or short pool file). pinfs_pin_strerror() says what they mean.
 */
int pinfs_map_pin(int fd, uint64_t off, uint64_t len, uint32_t flags, struct pinfs_map *m);

/*
 * Unmaps the range and ends the lease (PINFS_IOC_UNPIN through m->fd), also
 * acknowledging a revocation; closes the pool. Everything is released even
 * when the unpin fails, and *m is cleared. Returns 0, or the unpin's -errno
 * (-ENOENT/-EINVAL: the lease had already ended, e.g. PINFS_PIN_ON_CLOSE).
 */
int pinfs_map_unpin(struct pinfs_map *m);

/*
 * What an error of pinfs_map_pin() or PINFS_IOC_PIN on @fd (-errno or errno)
 * means, in one line for a person, into @buf; returns @buf. EPERM names the
 * pool (its path, mode, owner and group) and the rule: pinning needs root or
 * membership of the pool's group (pinfs -o pin_group=GROUP). EACCES names
 * the pin rule. ENOMEM names the mount's pin limits with their values
 * (max_pins, max_pinned and the per-user ones, from PINFS_IOC_STATUS).
 * ENOTTY says "not a pinfs mount" when @fd is on another file system.
 * Anything else is strerror().
 */
const char *pinfs_pin_strerror(int fd, int err, char *buf, size_t size);

/* The address of file offset @file_off inside the mapping, or NULL when it
 * lies outside the pinned range. */
void *pinfs_map_ptr(const struct pinfs_map *m, uint64_t file_off);

/* Parses a byte count: decimal or 0x hex, with an optional binary suffix k,
 * m, g or t (powers of 1024; "M", "MiB" and "MB" alike). 0 or -EINVAL. */
int pinfs_parse_size(const char *s, uint64_t *out);

/*
 * ---- Notices, cookies, lease state, re-pin (since PINFS_0.2) -------------
 *
 * Who is told when a truncate needs a pinned range back (include/pinfs/abi.h,
 * "Lease notices"): only a holder that asked, when it pinned.
 *
 *  - pinfs_map_pin() with neither PINFS_PIN_NOTIFY_* flag asks for nothing.
 *    Under policy break such a holder is sent no signal: the break time
 *    passes, then the truncate fails (EBUSY), or with PINFS_PIN_REVOCABLE
 *    the lease is revoked (SIGBUS, see "Revocation" above). It is never
 *    killed by a signal it did not name or accept.
 *  - PINFS_PIN_NOTIFY_SIGNAL: the break notice is the signal @sig of
 *    pinfs_map_pin_ex(), as F_SETSIG names a lease's signal; si_code
 *    SI_QUEUE, si_value.sival_ptr the lease id. Install a handler (or block
 *    it and read it with sigwaitinfo/signalfd) first.
 *  - PINFS_PIN_NOTIFY_EVENTS: wait, break and revoke notices are records on
 *    the process's event channel: pinfs_event_open() before the pin (else
 *    the pin fails with ENOTCONN), then poll/epoll the fd and
 *    pinfs_event_read() the records.
 *
 * Handling a revocation without giving up the address (as RDMA peers that
 * know it would need): stop the I/O, release kernel pins of the range
 * (io_uring buffers, RDMA MRs), then pinfs_map_repin(), then register
 * again. examples/pinfs-example.c does exactly this.
 */

/*
 * pinfs_map_pin() with the notices a holder asks for: @flags may add
 * PINFS_PIN_NOTIFY_SIGNAL (then @sig, 1..SIGRTMAX, is the break signal;
 * @sig must be 0 otherwise: EINVAL) and PINFS_PIN_NOTIFY_EVENTS (the
 * caller's event channel must be open: ENOTCONN). @cookie, an opaque
 * value of the caller's, comes back in the lease's events,
 * pinfs_lease_state() and PINFS_IOC_LIST_EX; 0 is "none" (and works with a
 * daemon older than cookies). Errors as pinfs_map_pin().
 */
int pinfs_map_pin_ex(int fd, uint64_t off, uint64_t len, uint32_t flags, int sig,
		     uint64_t cookie, struct pinfs_map *m);

/*
 * Pins *@m's range again (the same file, offset, length, flags, notices and
 * cookie) and maps the new lease's blocks at the same address, m->addr,
 * with MAP_FIXED -- the address is never free in between -- then ends the
 * old lease (acknowledging its revocation). For a revoked lease: release
 * the kernel's pins of the range first. On success *@m describes the new
 * lease (m->lease_id changed). On failure *@m still describes the old
 * lease, which still stands; the range may be partly remapped:
 * pinfs_map_unpin() it. Errors: those of pinfs_map_pin(), ENOENT (the old
 * lease is gone already: pin anew), EINVAL (the file is now shorter than
 * the range, or *@m is not mapped).
 */
int pinfs_map_repin(struct pinfs_map *m);

/* The state of lease @lease_id (PINFS_IOC_LEASE through open pinfs file
 * @fd) into *@q: q->info.state is PINFS_LEASE_ACTIVE, BREAKING or REVOKED;
 * q->cookie and q->notify_sig as pinned. 0, -ENOENT (no such lease: it was
 * unpinned), -EPERM (another user's), -ENOTTY (not pinfs, or a daemon
 * older than the ioctl). */
int pinfs_lease_state(int fd, uint64_t lease_id, struct pinfs_lease_query *q);

/*
 * Opens the calling process's event channel on the mount of open file @fd
 * (PINFS_XATTR_EVENTS): a socket that is readable when a notice about one
 * of the process's PINFS_PIN_NOTIFY_EVENTS leases is waiting. Returns the
 * fd (close-on-exec, non-blocking; close() it when done), or -ENOTSUP (not
 * pinfs, or a daemon without the channel), -ETIMEDOUT (no greeting within
 * 10 s), -ECONNREFUSED (the daemon is at its connection limit), or a
 * socket/connect -errno. One per process is enough; it serves every mount
 * file of that daemon. A child does not inherit the parent's notices: it
 * opens its own channel.
 */
int pinfs_event_open(int fd);

/*
 * Reads one record from event channel @evfd into *@ev: 0; -EAGAIN when
 * none is waiting (poll for POLLIN); -ENOTCONN when the daemon closed the
 * channel (unmounted). ev->lost counts the records the daemon dropped
 * before this one because the channel was full: it never waits for a
 * reader, so read promptly, and after a loss look at the leases
 * (pinfs_lease_state) rather than trust the stream.
 */
int pinfs_event_read(int evfd, struct pinfs_lease_event *ev);

#ifdef __cplusplus
}
#endif

#endif

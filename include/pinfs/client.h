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
 * si_code SI_QUEUE, see include/pinfs/abi.h). The mapping stays valid -- its blocks
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

#ifdef __cplusplus
}
#endif

#endif

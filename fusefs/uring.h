/* SPDX-License-Identifier: MIT */
/*
 * fusefs/uring.h -- FUSE over io_uring (Linux 6.14+) beside /dev/fuse, on
 * libfuse 3.14's session and the same fuse_lowlevel_ops table.
 *
 * How it fits (fusefs/uring.c has the details):
 *  - main.c calls ffs_uring_setup() after fuse_daemonize() and before the
 *    /dev/fuse loop: it creates one io_uring per ring thread, so that the
 *    INIT reply only offers FUSE_OVER_IO_URING when the rings exist (once
 *    the kernel is told "io_uring", every request waits until the ring is
 *    registered).
 *  - The custom /dev/fuse I/O of main.c reports the INIT request
 *    (ffs_uring_init_request), lets this file patch the INIT reply
 *    (ffs_uring_init_reply) and says when it was written
 *    (ffs_uring_init_done): then the threads REGISTER their entries.
 *  - Every reply libfuse sends goes through main.c's writev, which first
 *    offers it to ffs_uring_reply(): a reply to a request that came in on
 *    a ring entry is committed there; anything else (notifications,
 *    replies to /dev/fuse requests, interrupt replies) goes to /dev/fuse.
 *  - FORGET, INTERRUPT and INIT always come through /dev/fuse: libfuse's
 *    normal loop keeps running for them.
 */
#ifndef PINFS_FUSEFS_URING_H
#define PINFS_FUSEFS_URING_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <fuse_lowlevel.h>
#include <linux/fuse.h>

/*
 * The kernel's uAPI for FUSE over io_uring (include/uapi/linux/fuse.h,
 * protocol 7.42). Debian 12's <linux/fuse.h> is 7.38 and lacks it, so the
 * structs are spelled out here, checked by size.
 */
#define FFS_FUSE_OVER_IO_URING (1ull << 41) /* INIT flags2 bit 9 */
#define FFS_URING_IN_OUT_HEADER_SZ 128
#define FFS_URING_OP_IN_OUT_SZ 128
#define FFS_URING_CMD_REGISTER 1u	  /* register an entry, fetch a request */
#define FFS_URING_CMD_COMMIT_AND_FETCH 2u /* commit a reply, fetch the next */

/* trailer of the header buffer: written by the kernel on fetch, by us on commit */
struct ffs_uring_ent_in_out {
	uint64_t flags;
	uint64_t commit_id; /* the request's unique: echoed in the commit */
	uint32_t payload_sz; /* bytes valid in the payload buffer */
	uint32_t padding;
	uint64_t reserved;
};

/* iov[0] of a REGISTER: one per ring entry */
struct ffs_uring_req_header {
	char in_out[FFS_URING_IN_OUT_HEADER_SZ]; /* fuse_in_header / fuse_out_header */
	char op_in[FFS_URING_OP_IN_OUT_SZ];	 /* the opcode's fixed in-struct */
	struct ffs_uring_ent_in_out ring_ent_in_out;
};

/* the 80-byte command area of a 128-byte SQE */
struct ffs_uring_cmd_req {
	uint64_t flags;
	uint64_t commit_id;
	uint16_t qid;
	uint8_t padding[6];
};

_Static_assert(sizeof(struct ffs_uring_ent_in_out) == 32, "fuse_uring_ent_in_out");
_Static_assert(sizeof(struct ffs_uring_req_header) == 288, "fuse_uring_req_header");
_Static_assert(sizeof(struct ffs_uring_cmd_req) == 24, "fuse_uring_cmd_req");

/*
 * -o io_uring (@want = 1), -o no_io_uring (0): creates the rings and their
 * threads (which wait for INIT) for @se. Never fails the mount: when
 * io_uring cannot be used, the daemon serves /dev/fuse and says why in one
 * line when INIT arrives. Called once, after fuse_daemonize().
 */
void ffs_uring_setup(struct fuse_session *se, bool want);
/* Stops the ring threads and frees the rings; after the session was
 * unmounted (their entries are cancelled then). Idempotent. */
void ffs_uring_stop(void);

/* INIT came in through /dev/fuse, with the kernel's 64-bit @flags. */
void ffs_uring_init_request(uint64_t unique, uint64_t flags);
/* Is @out the reply to that INIT? Then adds FUSE_OVER_IO_URING to it when
 * the kernel offered it and the rings are ready. */
void ffs_uring_init_reply(uint64_t unique, struct fuse_init_out *out);
/* The INIT reply was written (@ok: the kernel took it): rings register. */
void ffs_uring_init_done(uint64_t unique, bool ok);

/* A reply (iov[0] is the fuse_out_header): committed to the ring entry
 * that holds its request, returning the bytes taken; else -ENOENT, the
 * only error: no ring entry holds it (the caller writes it to /dev/fuse).
 * Any thread. */
ssize_t ffs_uring_reply(const struct iovec *iov, int count);

/* May the request the calling thread is handling be parked (left
 * unanswered when its handler returns)? Over io_uring it keeps its ring
 * entry until answered, and each queue parks at most 32, so that entries
 * are left for the requests answered at once; false then (true: the place
 * is taken for it). Always true for a request that came through
 * /dev/fuse. */
bool ffs_uring_may_park(void);

/* What serves requests now: PINFS_TRANSPORT_IO_URING once every queue has
 * a registered entry, PINFS_TRANSPORT_DEV_FUSE otherwise; and how many
 * requests came in through the rings. */
uint32_t ffs_uring_transport(void);
uint64_t ffs_uring_requests(void);

#endif

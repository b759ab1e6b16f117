/* SPDX-License-Identifier: MIT */
/*
 * lease/pin.h -- the pin table: every lease (one pin of a block range of one
 * file by one holder process) the daemon has handed out, indexed for the
 * questions the file system asks on its hot paths:
 *
 *   - is this pool block pinned?                (writeback, free, O(1))
 *   - which leases overlap these file blocks?   (truncate / punch, O(log N + k))
 *   - which leases does this process / open file hold?   (exit, release)
 *
 * It is pure bookkeeping: it never frees a block, sends a signal or sleeps.
 * When the last lease on a pool block ends, the table reports the block
 * through a callback so that the caller can free it if it was quarantined
 * (lease/policy.c decides that). Units are blocks of PM_BLOCK_SIZE bytes.
 *
 * Errors: 0 (or a count) or -errno. Every function may be called from any
 * thread; the table has one internal mutex (see the Locking block in
 * lease/pin.c) which is never held while a callback runs, so a callback may
 * call back into the table.
 *
 * Snapshots: every struct lease the table copies out (lease_get,
 * lease_find_overlap, lease_list) carries nseg but NULL seg_* pointers: the
 * segments belong to the table; fetch them with lease_segments().
 */
#ifndef PINFS_LEASE_PIN_H
#define PINFS_LEASE_PIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pinfs/abi.h"

struct lease_table; /* opaque */

/* A lease as the table stores it and copies it out. */
struct lease {
	uint64_t id;		/* unique, never reused, starts at 1 */
	uint64_t ino;		/* file (never 0) */
	uint64_t first, nblocks; /* file blocks [first, first + nblocks) */
	uint32_t holder;	/* thread-group id */
	uint32_t flags;		/* PINFS_PIN_* */
	uint64_t holder_gen;	/* which process of that pid (lease_watch_add), 0: any */
	uint32_t state;		/* PINFS_LEASE_ACTIVE / BREAKING / REVOKED */
	uint32_t uid;		/* the user who pinned (per-user limits, LIST) */
	uint64_t start_ns;	/* CLOCK_MONOTONIC at pin */
	uint64_t fh;		/* opaque: the open file it came from (PINFS_PIN_ON_CLOSE) */
	uint64_t nseg;		/* physical segments */
	uint64_t *seg_pblk, *seg_fblk, *seg_len; /* owned by the table; NULL in snapshots */
	uint64_t cookie;	/* the holder's (PINFS_IOC_PIN_EX), 0: none */
	uint32_t notify_sig;	/* with PINFS_PIN_NOTIFY_SIGNAL: the break signal */
};

/* A run of pool blocks [pblk, pblk + n) whose pin count just reached 0.
 * Called without the table lock held. */
typedef void (*lease_unpinned_fn)(void *ctx, uint64_t pblk, uint64_t n);

/* The holder of leases whose process is gone (or unpinned) while some
 * process may still map their blocks: see lease_orphan(). No pid is ever
 * this value. */
#define LEASE_HOLDER_NONE UINT32_MAX

/* Creates an empty table without limits. 0 or -ENOMEM. */
int lease_table_new(struct lease_table **out);

/* Frees the table and every lease still in it, and NULLs *tp. No other
 * thread may be using it. Blocks still pinned are not reported: remove the
 * leases first if that matters. */
void lease_table_delete(struct lease_table **tp);

/* Per-holder limits checked by lease_add: at most @max_leases_per_holder
 * leases and @max_bytes_per_holder pinned bytes (nblocks * PM_BLOCK_SIZE,
 * summed over the holder's leases, overlaps counted twice, as
 * RLIMIT_MEMLOCK does). 0 means no limit. Existing leases are kept. */
void lease_table_set_limits(struct lease_table *t, uint64_t max_leases_per_holder,
			    uint64_t max_bytes_per_holder);

/* Per-user limits checked by lease_add_gen, as lease_table_set_limits but
 * summed over every lease of a user (orphaned ones included: a user cannot
 * shed them by forking). 0 means no limit. */
void lease_table_set_user_limits(struct lease_table *t, uint64_t max_leases_per_user,
				 uint64_t max_bytes_per_user);

/* Would one more lease of @nblocks blocks by @holder of user @uid fit the
 * limits? 0 or -ENOMEM. Lets the caller refuse before it allocates. */
int lease_check_limits(struct lease_table *t, uint32_t holder, uint32_t uid, uint64_t nblocks);

/*
 * Adds a lease of @holder on file blocks [first, first + n) of @ino, whose
 * pool blocks are given as @nseg segments: segment i maps file blocks
 * [seg_fblk[i], + seg_len[i]) to pool blocks [seg_pblk[i], + seg_len[i]).
 * The segments must tile the range in order (seg_fblk[0] == first, each
 * starting where the previous one ended, lengths > 0, summing to n), and no
 * pool block may be UINT64_MAX or wrap. The table copies them.
 * Increments the pin count of every pool block.
 * Returns 0 and the new lease's id in *id; -EINVAL for a bad range or
 * segments (ino 0, n 0, wrap), -ENOMEM over the holder's limits or out of
 * memory (the table is then unchanged).
 */
int lease_add(struct lease_table *t, uint64_t ino, uint64_t first, uint64_t n, uint32_t holder,
	      uint32_t flags, uint64_t fh, const uint64_t *seg_fblk, const uint64_t *seg_pblk,
	      const uint64_t *seg_len, uint64_t nseg, uint64_t *id);
/* The same for the process generation @holder_gen of pid @holder (see
 * lease_remove_holder_gen), pinned by user @uid. */
int lease_add_gen(struct lease_table *t, uint64_t ino, uint64_t first, uint64_t n,
		  uint32_t holder, uint64_t holder_gen, uint32_t uid, uint32_t flags, uint64_t fh,
		  const uint64_t *seg_fblk, const uint64_t *seg_pblk, const uint64_t *seg_len,
		  uint64_t nseg, uint64_t *id);

/*
 * Removes lease @id and decrements the pin count of its blocks. Every run of
 * pool blocks whose count reached 0 is passed to @fn (may be NULL) after the
 * table lock is dropped. Never fails otherwise: 0 or -ENOENT.
 */
int lease_remove(struct lease_table *t, uint64_t id, lease_unpinned_fn fn, void *ctx);

/* Removes every lease of @holder (it exited), reporting as lease_remove.
 * Returns how many. */
int lease_remove_holder(struct lease_table *t, uint32_t holder, lease_unpinned_fn fn, void *ctx);
/* The same for only the leases of generation @gen of @holder: a pid the
 * kernel reused may already hold new leases when the old process's exit is
 * handled, and those must stay. */
int lease_remove_holder_gen(struct lease_table *t, uint32_t holder, uint64_t gen,
			    lease_unpinned_fn fn, void *ctx);

/* Leases whose file is gone carry an ino with this bit (see
 * lease_forget_ino); no file ever matches them. */
#define LEASE_INO_GONE (1ull << 63)

/* The file of a lease as the ABI reports it: 0 once the file is gone. */
static inline uint64_t lease_file_ino(const struct lease *l)
{
	return l->ino & LEASE_INO_GONE ? 0 : l->ino;
}

/* The file @ino was destroyed (its last link and last open ended) and its
 * number may be given to a new file: its leases, which still pin the old
 * blocks (quarantined), are moved to a key of their own, so that the new
 * file neither sees nor is held by them. Returns how many. */
uint64_t lease_forget_ino(struct lease_table *t, uint64_t ino);

/* Removes every PINFS_PIN_ON_CLOSE lease taken through open file @fh (it
 * was released), reporting as lease_remove. Returns how many. O(1) when
 * there are none. */
int lease_remove_fh(struct lease_table *t, uint64_t fh, lease_unpinned_fn fn, void *ctx);

/* Ends every PINFS_PIN_ON_CLOSE lease taken through open file @fh (it was
 * released) without unpinning its blocks: each becomes PINFS_LEASE_REVOKED
 * (no longer holds its file range; drops PINFS_PIN_ON_CLOSE) and stays on
 * its holder until lease_remove or the holder's exit, as a revoked lease
 * does. Returns how many. O(1) when there are none. */
int lease_end_fh(struct lease_table *t, uint64_t fh);

/* In struct lease.flags, beside PINFS_PIN_*: the lease ended (UNPIN, or
 * its holder exited) while a process still mapped its blocks; it is revoked
 * and keeps its blocks pinned until no process maps them (lease/holder.c). */
#define LEASE_ENDED (1u << 31)

/* Lease @id was unpinned while its holder still maps its blocks: it
 * becomes revoked and LEASE_ENDED, drops PINFS_PIN_ON_CLOSE, and stays on
 * its holder (counted against its limits) until lease_remove. 0, -EALREADY
 * (ended already) or -ENOENT. */
int lease_mark_ended(struct lease_table *t, uint64_t id);

/* Lease @id ended (its holder unpinned or exited) while a process may
 * still map its blocks: it moves to LEASE_HOLDER_NONE, generation 0, as a
 * revoked, LEASE_ENDED lease (no longer holds its file range, drops
 * PINFS_PIN_ON_CLOSE),
 * and keeps its blocks pinned until lease_remove. Never fails for a lease
 * that exists: 0, -EALREADY (an orphan already) or -ENOENT. */
int lease_orphan(struct lease_table *t, uint64_t id);

/* Copies the leases of @holder, in id order, from index @first, into
 * out[0..max); returns how many it has in total. O(first + max). */
size_t lease_list_holder(struct lease_table *t, uint32_t holder, size_t first,
			 struct lease *out, size_t max);

/* As lease_list(t, 0, ...) restricted to the leases of user @uid. O(N). */
size_t lease_list_user(struct lease_table *t, uint32_t uid, size_t first, struct lease *out,
		       size_t max);

/* Leases and pinned bytes of user @uid. Either pointer may be NULL. */
void lease_user_counts(struct lease_table *t, uint32_t uid, uint64_t *nleases, uint64_t *nbytes);

/* Is pool block @pblk pinned by any lease? Exact (never false for a pinned
 * block, never true for an unpinned one at the moment of the call). O(1). */
bool lease_block_pinned(struct lease_table *t, uint64_t pblk);
/* Whether pool block @pblk is pinned (*@pinned), and how many blocks from
 * it, at most @n (>= 1), are the same: one lock for a run. */
uint64_t lease_pinned_span(struct lease_table *t, uint64_t pblk, uint64_t n, bool *pinned);

/*
 * Copies the leases of @ino overlapping file blocks [first, first + n)
 * (n == UINT64_MAX: to the end of the file) into out[0..max), in order of
 * (first, id), and returns how many there are in total (may exceed @max;
 * @out may be NULL when @max is 0). O(log N + k) in the N leases of @ino.
 */
size_t lease_find_overlap(struct lease_table *t, uint64_t ino, uint64_t first, uint64_t n,
			  struct lease *out, size_t max);

/* Copies lease @id into *out (a snapshot). 0 or -ENOENT. */
int lease_get(struct lease_table *t, uint64_t id, struct lease *out);

/* Sets the state of lease @id to PINFS_LEASE_*: 0, -ENOENT, or -EINVAL for
 * an unknown state. */
int lease_set_state(struct lease_table *t, uint64_t id, uint32_t state);

/* Sets how lease @id's holder is told (PINFS_PIN_NOTIFY_SIGNAL's signal
 * @sig) and its @cookie: 0 or -ENOENT. Call it before anyone may break the
 * lease (with the file's data lock held since the pin). */
int lease_set_notify(struct lease_table *t, uint64_t id, uint32_t sig, uint64_t cookie);

/* Copies the leases of @ino (0: every lease), ordered by id, from index
 * @first, into out[0..max); returns how many there are in total. Paging
 * forward through the list costs O(max) per call while the table does not
 * change in between. */
size_t lease_list(struct lease_table *t, uint64_t ino, size_t first, struct lease *out, size_t max);

/* Copies the segments of lease @id from index @first, up to @max of them,
 * into fblk/pblk/len (any of which may be NULL); returns the lease's total
 * number of segments, or -ENOENT. */
long lease_segments(struct lease_table *t, uint64_t id, size_t first, uint64_t *fblk,
		    uint64_t *pblk, uint64_t *len, size_t max);

/* Leases in the table, and distinct pool blocks with a pin count > 0. Either
 * pointer may be NULL. */
void lease_table_counts(struct lease_table *t, uint64_t *nleases, uint64_t *npinned_blocks);

/* Leases on file @ino. O(1). */
uint64_t lease_count_ino(struct lease_table *t, uint64_t ino);

/* Leases and pinned bytes (as the limits count them) of @holder. Either
 * pointer may be NULL. */
void lease_holder_counts(struct lease_table *t, uint32_t holder, uint64_t *nleases,
			 uint64_t *nbytes);

/* Holders with at least one lease (for the exit watcher), in no particular
 * order, LEASE_HOLDER_NONE left out: fills out[0..max), returns how many
 * there are in total. */
size_t lease_holders(struct lease_table *t, uint32_t *out, size_t max);

/* For tests: verifies every internal invariant (indexes agree, interval
 * trees ordered, balanced and correctly augmented, pin counts equal to what
 * the leases add up to). O(N + pinned blocks). 0, -EUCLEAN (logged on
 * stderr) or -ENOMEM. */
int lease_table_check(struct lease_table *t);

#endif

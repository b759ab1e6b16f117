/* SPDX-License-Identifier: MIT */
/*
 * pmem/fsck.h -- the pinfs checker: verifies every invariant of the on-media
 * format (pmem/layout.h) on an open pool and repairs the few problems that
 * can be fixed without guessing. tools/fsck.c is its command line; the unit
 * and crash-consistency tests call it directly on in-memory images.
 */
#ifndef PINFS_PMEM_FSCK_H
#define PINFS_PMEM_FSCK_H

#include <stdbool.h>
#include <stdio.h>

#include "pmem/pool.h"

struct pm_fsck_result {
	unsigned long errors;	/* problems found, repaired ones included */
	unsigned long repaired; /* problems fixed in the pool (0 without repair) */
};

/*
 * Checks every invariant of an open pool whose journal the caller has already
 * replayed (pm_journal_recover()). Never crashes or reads outside the pool,
 * whatever bytes it holds. Prints one line per problem to @out (NULL: silent):
 *
 *	fsck.pinfs: inode 12: link count 1, but 2 directory entries name it
 *
 * With @repair it fixes what is safe to fix: leaked bitmap bits, the
 * superblock's free block and free inode counters, link counts of
 * non-directories that directory entries name, inodes' block counters and
 * directories' entry counters. Everything else is reported and left alone.
 *
 * Returns 0 (problems are counted in @res, not returned) or -errno for an
 * operational failure (-ENOMEM).
 */
int pm_fsck(struct pm_pool *pool, bool repair, FILE *out, struct pm_fsck_result *res);

#endif

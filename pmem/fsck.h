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

struct pm_fsck_opts {
	bool repair;	/* mend what can be mended (see pmem/fsck.c) */
	bool checksums; /* verify the CRC32C of every clean data block */
};

/*
 * Checks every invariant of an open pool whose journal the caller has already
 * replayed (pm_journal_recover()). Never crashes or reads outside the pool,
 * whatever bytes it holds. Prints one line per problem to @out (NULL: silent):
 *
 *	fsck.pinfs: inode 12: link count 1, but 2 directory entries name it
 *
 * With @repair it mends everything that has a safe repair (the list, and
 * what each repair does, is at the top of pmem/fsck.c), round after round
 * until a round finds nothing more to mend; each repair is printed as
 *
 *	fsck.pinfs: inode 12: link count 1, but 2 directory entries name it: fixed
 *
 * and what is left is printed once, from the last round. A pool opened
 * with PM_POOL_BACKUP_SB whose primary superblock is corrupt gets its
 * primary back from the backup. With everything repaired, a pool that was
 * not cleanly unmounted is marked clean. Without @repair nothing is
 * written: the pool may be mapped read-only (PM_POOL_RDONLY).
 *
 * Returns 0 (problems are counted in @res, not returned) or -errno for an
 * operational failure (-ENOMEM).
 */
int pm_fsck_ex(struct pm_pool *pool, const struct pm_fsck_opts *o, FILE *out,
	       struct pm_fsck_result *res);

/* pm_fsck_ex() with only @repair. */
int pm_fsck(struct pm_pool *pool, bool repair, FILE *out, struct pm_fsck_result *res);

#endif

/* SPDX-License-Identifier: MIT */
/*
 * pmem/persist.c -- the production persistence ops, backed by libpmem.
 *
 * On real persistent memory (pmem_is_pmem() true) a flush is a CPU cache
 * line write-back and drain is the store fence. Everywhere else (tmpfs
 * standing in for pmem, a file on a block device) a flush is msync() of the
 * page range, which is synchronous, so drain has nothing left to wait for.
 */
#include <libpmem.h>
#include <stdio.h>
#include <stdlib.h>

#include "pmem/persist.h"

static void flush_cpu(void *ctx, const void *addr, size_t len)
{
	(void)ctx;
	pmem_flush(addr, len);
}

static void drain_cpu(void *ctx)
{
	(void)ctx;
	pmem_drain();
}

static void flush_msync(void *ctx, const void *addr, size_t len)
{
	(void)ctx;
	/* msync of a live shared mapping of our own pool cannot fail short of
	 * a bug (bad range): that is an invariant, not an I/O error. */
	if (pmem_msync(addr, len) != 0) {
		perror("pinfs: pmem_msync");
		abort();
	}
}

static void drain_msync(void *ctx)
{
	(void)ctx;
}

void pm_persist_ops_libpmem(struct pm_persist_ops *ops, bool is_pmem)
{
	ops->flush = is_pmem ? flush_cpu : flush_msync;
	ops->drain = is_pmem ? drain_cpu : drain_msync;
	ops->ctx = NULL;
}

/* SPDX-License-Identifier: MIT */
/*
 * pmem/persist.h -- the one seam through which pinfs makes pool bytes
 * durable. Production fills it from libpmem (CPU cache flushes on real
 * persistent memory, msync elsewhere); tests fill it with a recording double
 * that turns every flush and fence into crash images (tests/unit).
 *
 * Contract: bytes stored to the pool mapping are durable once a flush()
 * covering them has been followed by a drain(). Nothing else is promised:
 * a store that was never flushed may or may not survive a crash.
 */
#ifndef PINFS_PMEM_PERSIST_H
#define PINFS_PMEM_PERSIST_H

#include <stdbool.h>
#include <stddef.h>

struct pm_persist_ops {
	/* start writing back [addr, addr + len); may return before it is done */
	void (*flush)(void *ctx, const void *addr, size_t len);
	/* wait until every earlier flush is durable */
	void (*drain)(void *ctx);
	void *ctx;
};

/* Fills @ops for a mapping; @is_pmem selects cache flushing or msync. */
void pm_persist_ops_libpmem(struct pm_persist_ops *ops, bool is_pmem);

static inline void pm_flush(const struct pm_persist_ops *ops, const void *addr, size_t len)
{
	if (len)
		ops->flush(ops->ctx, addr, len);
}

static inline void pm_drain(const struct pm_persist_ops *ops)
{
	ops->drain(ops->ctx);
}

static inline void pm_persist(const struct pm_persist_ops *ops, const void *addr, size_t len)
{
	pm_flush(ops, addr, len);
	pm_drain(ops);
}

#endif

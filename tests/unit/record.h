/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/record.h -- a recording persistence ops table (pmem/persist.h)
 * for tests: every flush is kept with the bytes it flushed, as they were at
 * that moment, and every drain as a marker, so a test can rebuild the pool
 * as it would be after a crash at any point, or ask what was flushed.
 */
#ifndef PINFS_TESTS_UNIT_RECORD_H
#define PINFS_TESTS_UNIT_RECORD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pmem/persist.h"

struct event {
	size_t off, len; /* len 0: a drain */
	uint8_t *data;
};

struct recorder {
	uint8_t *base;
	bool on;
	struct event *ev;
	size_t n, cap;
	size_t flushes, drains;
};

static inline void rec_push(struct recorder *r, size_t off, size_t len, const void *src)
{
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 256;
		r->ev = realloc(r->ev, r->cap * sizeof(*r->ev));
		if (!r->ev)
			abort();
	}
	r->ev[r->n].off = off;
	r->ev[r->n].len = len;
	r->ev[r->n].data = NULL;
	if (len) {
		r->ev[r->n].data = malloc(len);
		if (!r->ev[r->n].data)
			abort();
		memcpy(r->ev[r->n].data, src, len);
	}
	r->n++;
}

static inline void rec_flush(void *ctx, const void *addr, size_t len)
{
	struct recorder *r = ctx;

	r->flushes++;
	if (r->on)
		rec_push(r, (size_t)((const uint8_t *)addr - r->base), len, addr);
}

static inline void rec_drain(void *ctx)
{
	struct recorder *r = ctx;

	r->drains++;
	if (r->on)
		rec_push(r, 0, 0, NULL);
}

static inline void rec_reset(struct recorder *r)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		free(r->ev[i].data);
	r->n = 0;
}

static inline void noop_flush(void *ctx, const void *addr, size_t len)
{
	(void)ctx;
	(void)addr;
	(void)len;
}

static inline void noop_drain(void *ctx)
{
	(void)ctx;
}

static const struct pm_persist_ops noop_ops __attribute__((unused)) = { noop_flush, noop_drain, NULL };


#endif

/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/names.h -- collects a directory's entry names through
 * pm_readdir (pmem/fs.h), so a test can walk a tree and look each name up
 * again without holding the directory across the calls it makes.
 *
 *	struct names ns = { 0 };
 *	pm_readdir(fs, dir, 0, names_collect, &ns);
 *	for (k = 0; k < ns.count; k++) ... ns.n[k] ...
 *	names_free(&ns);
 */
#ifndef PINFS_TESTS_UNIT_NAMES_H
#define PINFS_TESTS_UNIT_NAMES_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pmem/fs.h"
#include "pmem/layout.h"

struct names {
	char (*n)[PM_NAME_MAX + 1]; /* count names, in readdir order */
	size_t count, cap;
};

/* A pm_filldir_t: appends @name, except "." and "..". Stops the listing
 * (returns 1) if memory runs out, so a short list is possible then. */
static inline int names_collect(void *ctx, const char *name, uint64_t ino, unsigned type,
				uint64_t next)
{
	struct names *ns = ctx;

	(void)ino;
	(void)type;
	(void)next;
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return 0;
	if (ns->count == ns->cap) {
		size_t ncap = ns->cap ? ns->cap * 2 : 64;
		void *p = realloc(ns->n, ncap * sizeof(*ns->n));
		if (!p)
			return 1;
		ns->n = p;
		ns->cap = ncap;
	}
	snprintf(ns->n[ns->count++], PM_NAME_MAX + 1, "%s", name);
	return 0;
}

/* Frees the names and leaves @ns empty, ready for another listing. */
static inline void names_free(struct names *ns)
{
	free(ns->n);
	ns->n = NULL;
	ns->count = ns->cap = 0;
}

#endif

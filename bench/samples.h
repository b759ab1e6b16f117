/*
 * samples.h - the timing and percentile helpers the benchmark clients share
 * (iobench.c, pinbench.c, stallbench.c): a monotonic clock in seconds and a
 * growing array of samples with its nearest-rank percentile; and, for a
 * client that defines BENCH_NAME (its name in messages) before including
 * this file, die() and parse_long().
 *
 * The scripts compile each client alone with cc, some without -I, so the
 * clients include this file by its bare name ("samples.h"), which cc finds
 * next to the including file. Everything here is static inline: a client
 * that uses part of it gets no unused-function warning.
 */
#ifndef PINFS_BENCH_SAMPLES_H
#define PINFS_BENCH_SAMPLES_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* CLOCK_MONOTONIC in seconds */
static inline double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct samples {
	double *v; /* n values, in the caller's unit; sorted after samples_sort/_pct */
	size_t n, cap;
};

/* Appends @x. Out of memory: says "<program>: realloc: <error>" on stderr
 * and exits 1. The first allocation holds 4096 samples, so that most runs
 * never reallocate while they measure. */
static inline void samples_add(struct samples *s, double x)
{
	if (s->n == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 4096;
		double *p = realloc(s->v, ncap * sizeof(*s->v));

		if (!p) {
			fprintf(stderr, "%s: realloc: %s\n", program_invocation_short_name,
				strerror(errno));
			exit(1);
		}
		s->v = p;
		s->cap = ncap;
	}
	s->v[s->n++] = x;
}

/* qsort comparator of doubles, ascending */
static inline int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Sorts the samples ascending. */
static inline void samples_sort(struct samples *s)
{
	if (s->n)
		qsort(s->v, s->n, sizeof(*s->v), cmp_double);
}

/* The @p-th percentile, nearest rank (p 100: the maximum); sorts the
 * samples. -1 if there are none. */
static inline double samples_pct(struct samples *s, double p)
{
	size_t k;

	if (!s->n)
		return -1;
	samples_sort(s);
	k = (size_t)(p / 100.0 * (double)s->n + 0.999999);
	if (k < 1)
		k = 1;
	if (k > s->n)
		k = s->n;
	return s->v[k - 1];
}

#ifdef BENCH_NAME
/* "BENCH_NAME: @what: strerror(errno)" on stderr, exit 1. */
static inline __attribute__((noreturn)) void die(const char *what)
{
	fprintf(stderr, BENCH_NAME ": %s: %s\n", what, strerror(errno));
	exit(1);
}

/* A decimal count >= 0, or exit 1 with "BENCH_NAME: bad number 'S'". */
static inline long parse_long(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < 0) {
		fprintf(stderr, BENCH_NAME ": bad number '%s'\n", s);
		exit(1);
	}
	return v;
}
#endif

#endif

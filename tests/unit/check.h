/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/check.h -- what every unit test program shares: exit codes as
 * meson reads them (liburing test/helpers.h) and assertion macros that print
 * the file, the line and both values (libuv test/task.h).
 *
 * A test case is `static int test_x(void)` returning T_EXIT_PASS, or
 * T_EXIT_FAIL through a failed CHECK*; main() runs the cases in order and
 * exits with the first failure. Cases may leak on failure: the program ends.
 */
#ifndef PINFS_TESTS_UNIT_CHECK_H
#define PINFS_TESTS_UNIT_CHECK_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T_EXIT_PASS 0
#define T_EXIT_FAIL 1
#define T_EXIT_SKIP 77

#define CHECK(cond)                                                                     \
	do {                                                                            \
		if (!(cond)) {                                                          \
			fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, \
				#cond);                                                 \
			return T_EXIT_FAIL;                                             \
		}                                                                       \
	} while (0)

/* Compares two integers of any type as intmax_t / uintmax_t. */
#define CHECK_CMP_(a, op, b, type, fmt)                                                    \
	do {                                                                               \
		type a_ = (type)(a), b_ = (type)(b);                                       \
		if (!(a_ op b_)) {                                                         \
			fprintf(stderr, "%s:%d: CHECK(%s %s %s) failed: %" fmt " vs %" fmt "\n", \
				__FILE__, __LINE__, #a, #op, #b, a_, b_);                  \
			return T_EXIT_FAIL;                                                \
		}                                                                          \
	} while (0)

#define CHECK_EQ(a, b) CHECK_CMP_(a, ==, b, intmax_t, PRIdMAX)
#define CHECK_NE(a, b) CHECK_CMP_(a, !=, b, intmax_t, PRIdMAX)
#define CHECK_LT(a, b) CHECK_CMP_(a, <, b, intmax_t, PRIdMAX)
#define CHECK_LE(a, b) CHECK_CMP_(a, <=, b, intmax_t, PRIdMAX)
#define CHECK_GT(a, b) CHECK_CMP_(a, >, b, intmax_t, PRIdMAX)
#define CHECK_GE(a, b) CHECK_CMP_(a, >=, b, intmax_t, PRIdMAX)
#define CHECK_UEQ(a, b) CHECK_CMP_(a, ==, b, uintmax_t, PRIuMAX)
#define CHECK_UGE(a, b) CHECK_CMP_(a, >=, b, uintmax_t, PRIuMAX)

/* @rc is 0; otherwise prints it as an errno. */
#define CHECK_OK(rc)                                                                        \
	do {                                                                                \
		long long rc_ = (long long)(rc);                                            \
		if (rc_ != 0) {                                                             \
			fprintf(stderr, "%s:%d: %s returned %lld (%s)\n", __FILE__, __LINE__, #rc, \
				rc_, rc_ < 0 ? strerror((int)-rc_) : "not an errno");       \
			return T_EXIT_FAIL;                                                 \
		}                                                                           \
	} while (0)

#define CHECK_STR_EQ(a, b)                                                                   \
	do {                                                                                 \
		const char *a_ = (a), *b_ = (b);                                             \
		if (strcmp(a_, b_)) {                                                        \
			fprintf(stderr, "%s:%d: CHECK(%s == %s) failed: \"%s\" vs \"%s\"\n", \
				__FILE__, __LINE__, #a, #b, a_, b_);                         \
			return T_EXIT_FAIL;                                                  \
		}                                                                            \
	} while (0)

/* @hay contains @needle; prints @hay otherwise. */
#define CHECK_CONTAINS(hay, needle)                                                         \
	do {                                                                                \
		const char *h_ = (hay), *n_ = (needle);                                     \
		if (!strstr(h_, n_)) {                                                      \
			fprintf(stderr, "%s:%d: \"%s\" not found in %s:\n%s\n", __FILE__,   \
				__LINE__, n_, #hay, h_);                                    \
			return T_EXIT_FAIL;                                                 \
		}                                                                           \
	} while (0)

/* Runs one case; a failure ends the program with the case's status. */
#define RUN(test)                                                          \
	do {                                                               \
		int r_ = test();                                           \
		if (r_ == T_EXIT_SKIP) {                                   \
			fprintf(stderr, "%s: skipped\n", #test);           \
		} else if (r_ != T_EXIT_PASS) {                            \
			fprintf(stderr, "%s: FAILED\n", #test);            \
			return r_;                                         \
		} else if (getenv("CHECK_VERBOSE")) {                      \
			fprintf(stderr, "%s: ok\n", #test);                \
		}                                                          \
	} while (0)

#endif

/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_pin.c -- the pin table (lease/pin.c) on its own: pin
 * counts of overlapping leases and which removal reports a block, removal by
 * holder and by open file, limits, argument checks, snapshots and listing,
 * a randomized comparison of every query against a brute-force model, a few
 * threads at once, and a timing report for 100 000 leases (printed, never
 * asserted: machines differ).
 *
 * Environment: PIN_SEED (model test seed, default fixed), CHECK_VERBOSE.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lease/pin.h"
#include "tests/unit/check.h"

/* ---- helpers ----------------------------------------------------------------- */

/* Pool blocks reported by the unpinned callback, counted per block. */
#define REP_BLOCKS 4096
struct reports {
	uint32_t count[REP_BLOCKS];
	uint64_t calls, blocks;
	bool out_of_range;
};

static void on_unpinned(void *ctx, uint64_t pblk, uint64_t n)
{
	struct reports *r = ctx;
	r->calls++;
	r->blocks += n;
	for (uint64_t i = 0; i < n; i++) {
		if (pblk + i >= REP_BLOCKS)
			r->out_of_range = true;
		else
			r->count[pblk + i]++;
	}
}

static void reports_clear(struct reports *r)
{
	memset(r, 0, sizeof(*r));
}

/* Adds a lease whose file blocks [first, first + n) map to the single pool
 * run [pblk, pblk + n). */
static int add1(struct lease_table *t, uint64_t ino, uint64_t first, uint64_t n, uint64_t pblk,
		uint32_t holder, uint32_t flags, uint64_t fh, uint64_t *id)
{
	return lease_add(t, ino, first, n, holder, flags, fh, &first, &pblk, &n, 1, id);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t pinned_blocks(struct lease_table *t)
{
	uint64_t n;
	lease_table_counts(t, NULL, &n);
	return n;
}

static uint64_t nleases(struct lease_table *t)
{
	uint64_t n;
	lease_table_counts(t, &n, NULL);
	return n;
}

/* xorshift64*: fixed sequences for a given seed. */
static uint64_t rng_state;
static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}
static uint64_t rnd_below(uint64_t n)
{
	return rnd() % n;
}

/* ---- cases ------------------------------------------------------------------- */

static int test_overlapping_pins_add_up_and_only_last_unpin_reports(void)
{
	struct lease_table *t = NULL;
	static struct reports r;
	uint64_t a, b, c;

	CHECK_OK(lease_table_new(&t));
	/* a: pool [100, 110); b: pool [105, 115) (another file); c: same as a */
	CHECK_OK(add1(t, 7, 0, 10, 100, 1, 0, 0, &a));
	CHECK_OK(add1(t, 8, 20, 10, 105, 2, 0, 0, &b));
	CHECK_OK(add1(t, 7, 0, 10, 100, 3, 0, 0, &c));
	CHECK_UEQ(a, 1);
	CHECK(b > a && c > b);
	CHECK_UEQ(pinned_blocks(t), 15);
	CHECK(!lease_block_pinned(t, 99));
	CHECK(lease_block_pinned(t, 100));
	CHECK(lease_block_pinned(t, 114));
	CHECK(!lease_block_pinned(t, 115));

	/* a still has c on top: nothing reaches 0 */
	reports_clear(&r);
	CHECK_OK(lease_remove(t, a, on_unpinned, &r));
	CHECK_UEQ(r.calls, 0);
	CHECK_UEQ(pinned_blocks(t), 15);
	CHECK_EQ(lease_remove(t, a, on_unpinned, &r), -ENOENT);

	/* c goes: [100, 105) reaches 0 as one run, [105, 110) is still b's */
	CHECK_OK(lease_remove(t, c, on_unpinned, &r));
	CHECK_UEQ(r.calls, 1);
	CHECK_UEQ(r.blocks, 5);
	for (uint64_t p = 100; p < 105; p++)
		CHECK_UEQ(r.count[p], 1);
	CHECK(!lease_block_pinned(t, 104));
	CHECK(lease_block_pinned(t, 105));
	CHECK_UEQ(pinned_blocks(t), 10);

	reports_clear(&r);
	CHECK_OK(lease_remove(t, b, on_unpinned, &r));
	CHECK_UEQ(r.calls, 1);
	CHECK_UEQ(r.blocks, 10);
	for (uint64_t p = 105; p < 115; p++)
		CHECK_UEQ(r.count[p], 1);
	CHECK_UEQ(pinned_blocks(t), 0);
	CHECK_UEQ(nleases(t), 0);

	/* ids are never reused */
	uint64_t d;
	CHECK_OK(add1(t, 7, 0, 1, 100, 1, 0, 0, &d));
	CHECK(d > c);
	CHECK_OK(lease_remove(t, d, NULL, NULL));
	CHECK_OK(lease_table_check(t));
	lease_table_delete(&t);
	CHECK(t == NULL);
	return T_EXIT_PASS;
}

static int test_unpin_reports_maximal_runs_across_segments(void)
{
	struct lease_table *t = NULL;
	static struct reports r;
	/* file [10, 18) -> pool [200, 203) [203, 205) [300, 303); the first two
	 * are physically adjacent, so one run [200, 205) and one [300, 303) */
	uint64_t fblk[] = { 10, 13, 15 }, pblk[] = { 200, 203, 300 }, len[] = { 3, 2, 3 };
	uint64_t id, other;

	CHECK_OK(lease_table_new(&t));
	CHECK_OK(lease_add(t, 1, 10, 8, 5, 0, 0, fblk, pblk, len, 3, &id));
	/* another lease keeps pool block 301 pinned: [300, 303) splits */
	CHECK_OK(add1(t, 2, 0, 1, 301, 6, 0, 0, &other));
	CHECK_UEQ(pinned_blocks(t), 8);

	uint64_t f[4], p[4], l[4];
	CHECK_EQ(lease_segments(t, id, 0, f, p, l, 4), 3);
	CHECK_UEQ(f[2], 15);
	CHECK_UEQ(p[2], 300);
	CHECK_UEQ(l[2], 3);
	CHECK_EQ(lease_segments(t, id, 1, f, p, l, 1), 3);
	CHECK_UEQ(p[0], 203);
	CHECK_EQ(lease_segments(t, id, 5, f, p, l, 4), 3);
	CHECK_EQ(lease_segments(t, id, 0, NULL, NULL, NULL, 4), 3);
	CHECK_EQ(lease_segments(t, 999, 0, f, p, l, 4), -ENOENT);

	reports_clear(&r);
	CHECK_OK(lease_remove(t, id, on_unpinned, &r));
	CHECK_UEQ(r.calls, 3); /* [200, 205), [300, 301), [302, 303) */
	CHECK_UEQ(r.blocks, 7);
	CHECK_UEQ(r.count[301], 0);
	CHECK_UEQ(r.count[204], 1);
	CHECK_UEQ(pinned_blocks(t), 1);
	CHECK_OK(lease_table_check(t));
	lease_table_delete(&t);
	return T_EXIT_PASS;
}

/* The callback runs without the table lock: it may use the table. */
struct reenter {
	struct lease_table *t;
	int calls;
	bool pinned_seen;
};
static void on_unpinned_reenter(void *ctx, uint64_t pblk, uint64_t n)
{
	struct reenter *re = ctx;
	re->calls++;
	for (uint64_t i = 0; i < n; i++)
		re->pinned_seen |= lease_block_pinned(re->t, pblk + i);
	(void)nleases(re->t);
}

static int test_unpinned_callback_may_call_into_the_table(void)
{
	struct reenter re = { 0 };
	uint64_t id;

	CHECK_OK(lease_table_new(&re.t));
	CHECK_OK(add1(re.t, 1, 0, 4, 40, 9, 0, 0, &id));
	CHECK_OK(lease_remove(re.t, id, on_unpinned_reenter, &re));
	CHECK_EQ(re.calls, 1);
	CHECK(!re.pinned_seen);
	CHECK_OK(lease_table_check(re.t));
	lease_table_delete(&re.t);
	return T_EXIT_PASS;
}

static int test_remove_holder_removes_all_of_its_leases(void)
{
	struct lease_table *t = NULL;
	static struct reports r;
	uint64_t ids[8], keep1, keep2;
	uint32_t holders[4];

	CHECK_OK(lease_table_new(&t));
	for (int i = 0; i < 5; i++) /* holder 10: pool [10i, 10i + 4) on files 1 and 2 */
		CHECK_OK(add1(t, 1 + i % 2, 100 * i, 4, 10 * i, 10, 0, 0, &ids[i]));
	CHECK_OK(add1(t, 1, 0, 2, 0, 20, 0, 0, &keep1)); /* shares pool 0, 1 */
	CHECK_OK(add1(t, 3, 0, 2, 500, 20, 0, 0, &keep2));
	CHECK_UEQ(nleases(t), 7);
	CHECK_UEQ(lease_holders(t, holders, 4), 2);

	uint64_t hn, hb;
	lease_holder_counts(t, 10, &hn, &hb);
	CHECK_UEQ(hn, 5);
	CHECK_UEQ(hb, 5 * 4 * 4096);

	reports_clear(&r);
	CHECK_EQ(lease_remove_holder(t, 10, on_unpinned, &r), 5);
	CHECK(!r.out_of_range);
	for (int i = 0; i < 5; i++) {
		struct lease l;
		CHECK_EQ(lease_get(t, ids[i], &l), -ENOENT);
		for (uint64_t p = 10 * i; p < 10 * (uint64_t)i + 4; p++)
			CHECK_UEQ(r.count[p], p < 2 ? 0 : 1); /* 0, 1 stay: keep1 */
	}
	CHECK_UEQ(r.blocks, 18);
	CHECK(lease_block_pinned(t, 0));
	CHECK(!lease_block_pinned(t, 2));
	CHECK_UEQ(nleases(t), 2);
	CHECK_UEQ(pinned_blocks(t), 4);
	CHECK_UEQ(lease_count_ino(t, 1), 1);
	CHECK_UEQ(lease_count_ino(t, 2), 0);
	lease_holder_counts(t, 10, &hn, &hb);
	CHECK_UEQ(hn, 0);
	CHECK_UEQ(hb, 0);

	CHECK_UEQ(lease_holders(t, holders, 4), 1);
	CHECK_UEQ(holders[0], 20);
	CHECK_EQ(lease_remove_holder(t, 10, on_unpinned, &r), 0);
	CHECK_EQ(lease_remove_holder(t, 12345, NULL, NULL), 0);
	CHECK_EQ(lease_remove_holder(t, 20, NULL, NULL), 2);
	CHECK_UEQ(lease_holders(t, holders, 4), 0);
	CHECK_UEQ(pinned_blocks(t), 0);
	CHECK_OK(lease_table_check(t));
	lease_table_delete(&t);
	return T_EXIT_PASS;
}

static int test_release_removes_only_on_close_leases_of_that_file(void)
{
	struct lease_table *t = NULL;
	static struct reports r;
	uint64_t oc1, plain1, oc2, oc1b;
	struct lease l;

	CHECK_OK(lease_table_new(&t));
	CHECK_OK(add1(t, 1, 0, 2, 10, 7, PINFS_PIN_ON_CLOSE, 0xf1, &oc1));
	CHECK_OK(add1(t, 1, 2, 2, 12, 7, 0, 0xf1, &plain1));
	CHECK_OK(add1(t, 1, 4, 2, 14, 7, PINFS_PIN_ON_CLOSE | PINFS_PIN_WRITE, 0xf2, &oc2));
	CHECK_OK(add1(t, 2, 0, 1, 20, 8, PINFS_PIN_ON_CLOSE, 0xf1, &oc1b));

	reports_clear(&r);
	CHECK_EQ(lease_remove_fh(t, 0xf1, on_unpinned, &r), 2);
	CHECK_UEQ(r.blocks, 3);
	CHECK_UEQ(r.count[10], 1);
	CHECK_UEQ(r.count[20], 1);
	CHECK_EQ(lease_get(t, oc1, &l), -ENOENT);
	CHECK_EQ(lease_get(t, oc1b, &l), -ENOENT);
	CHECK_OK(lease_get(t, plain1, &l)); /* not ON_CLOSE: survives its fh */
	CHECK_OK(lease_get(t, oc2, &l));
	CHECK_EQ(lease_remove_fh(t, 0xf1, on_unpinned, &r), 0);

	/* a lease removed by id first is not removed again at release */
	CHECK_OK(lease_remove(t, oc2, NULL, NULL));
	CHECK_EQ(lease_remove_fh(t, 0xf2, NULL, NULL), 0);
	CHECK_UEQ(nleases(t), 1);
	CHECK_OK(lease_table_check(t));
	lease_table_delete(&t); /* frees plain1 */
	return T_EXIT_PASS;
}

static int test_limits_give_enomem_and_change_nothing(void)
{
	struct lease_table *t = NULL;
	uint64_t id, ids[3];

	CHECK_OK(lease_table_new(&t));
	lease_table_set_limits(t, 3, 10 * 4096);
	for (int i = 0; i < 3; i++)
		CHECK_OK(add1(t, 1, 10 * i, 2, 10 * i, 1, 0, 0, &ids[i]));
	CHECK_EQ(add1(t, 1, 100, 1, 100, 1, 0, 0, &id), -ENOMEM);
	CHECK_EQ(add1(t, 1, 100, 1, 100, 1, PINFS_PIN_ON_CLOSE, 5, &id), -ENOMEM);
	CHECK(!lease_block_pinned(t, 100));
	CHECK_UEQ(nleases(t), 3);
	CHECK_UEQ(pinned_blocks(t), 6);
	CHECK_EQ(lease_remove_fh(t, 5, NULL, NULL), 0);

	/* bytes: holder 2 has 8 blocks of 10; 3 more is too many, 2 fit */
	CHECK_OK(add1(t, 2, 0, 8, 1000, 2, 0, 0, &id));
	CHECK_EQ(add1(t, 2, 8, 3, 1008, 2, 0, 0, &id), -ENOMEM);
	CHECK_EQ(add1(t, 3, 0, 11, 2000, 3, 0, 0, &id), -ENOMEM); /* alone over it */
	CHECK(!lease_block_pinned(t, 1008));
	CHECK(!lease_block_pinned(t, 2000));
	CHECK_OK(add1(t, 2, 8, 2, 1008, 2, 0, 0, &id));

	uint64_t hn, hb;
	lease_holder_counts(t, 2, &hn, &hb);
	CHECK_UEQ(hn, 2);
	CHECK_UEQ(hb, 10 * 4096);
	uint32_t holders[4];
	CHECK_UEQ(lease_holders(t, holders, 4), 2); /* holder 3 was never added */

	/* room again after an unpin; raising the limits keeps existing leases */
	CHECK_OK(lease_remove(t, ids[0], NULL, NULL));
	CHECK_OK(add1(t, 1, 100, 1, 100, 1, 0, 0, &id));
	lease_table_set_limits(t, 0, 0);
	CHECK_OK(add1(t, 1, 200, 1, 200, 1, 0, 0, &id));
	CHECK_UEQ(nleases(t), 6);
	CHECK_OK(lease_table_check(t));
	lease_table_delete(&t);
	return T_EXIT_PASS;
}

static int test_add_rejects_bad_ranges_and_segments(void)
{
	struct lease_table *t = NULL;
	uint64_t id;

	CHECK_OK(lease_table_new(&t));
	CHECK_EQ(add1(t, 0, 0, 1, 10, 1, 0, 0, &id), -EINVAL);	       /* ino 0 */
	CHECK_EQ(add1(t, 1, 0, 0, 10, 1, 0, 0, &id), -EINVAL);	       /* empty */
	CHECK_EQ(add1(t, 1, UINT64_MAX, 2, 10, 1, 0, 0, &id), -EINVAL); /* file wrap */
	CHECK_EQ(add1(t, 1, 0, 2, UINT64_MAX - 1, 1, 0, 0, &id), -EINVAL); /* pool wrap */
	CHECK_EQ(add1(t, 1, 0, 1, 10, 1, 0x100, 0, &id), -EINVAL);      /* unknown flag */
	CHECK_EQ(add1(t, 1, 0, UINT64_MAX >> 2, 10, 1, 0, 0, &id), -EINVAL); /* bytes wrap */

	uint64_t f[] = { 0, 2 }, p[] = { 10, 20 }, l[] = { 2, 2 };
	CHECK_EQ(lease_add(t, 1, 0, 5, 1, 0, 0, f, p, l, 2, &id), -EINVAL); /* short */
	CHECK_EQ(lease_add(t, 1, 0, 3, 1, 0, 0, f, p, l, 2, &id), -EINVAL); /* long */
	CHECK_EQ(lease_add(t, 1, 1, 4, 1, 0, 0, f, p, l, 2, &id), -EINVAL); /* misplaced */
	f[1] = 3;
	CHECK_EQ(lease_add(t, 1, 0, 4, 1, 0, 0, f, p, l, 2, &id), -EINVAL); /* gap */
	f[1] = 2;
	l[1] = 0;
	CHECK_EQ(lease_add(t, 1, 0, 2, 1, 0, 0, f, p, l, 2, &id), -EINVAL); /* empty seg */
	CHECK_EQ(lease_add(t, 1, 0, 2, 1, 0, 0, f, p, l, 0, &id), -EINVAL); /* no segs */
	l[1] = 2;
	CHECK_OK(lease_add(t, 1, 0, 4, 1, 0, 0, f, p, l, 2, &id));
	CHECK_UEQ(id, 1); /* failures use no ids */
	CHECK_UEQ(nleases(t), 1);
	CHECK_UEQ(pinned_blocks(t), 4);
	/* the last block number a file can have */
	CHECK_OK(add1(t, 1, UINT64_MAX - 1, 1, 30, 1, 0, 0, &id));
	CHECK_UEQ(lease_find_overlap(t, 1, UINT64_MAX - 1, 1, NULL, 0), 1);
	CHECK_UEQ(lease_find_overlap(t, 1, 4, UINT64_MAX, NULL, 0), 1);
	CHECK_OK(lease_table_check(t));
	lease_table_delete(&t);
	return T_EXIT_PASS;
}

static int test_snapshots_states_and_listing(void)
{
	struct lease_table *t = NULL;
	struct lease l, out[8];
	uint64_t ids[6];
	uint64_t before = now_ns();

	CHECK_OK(lease_table_new(&t));
	for (int i = 0; i < 6; i++) /* files 1 2 1 2 1 2 */
		CHECK_OK(add1(t, 1 + i % 2, 10 * i, 3, 100 + 10 * i, 40 + i, PINFS_PIN_REVOCABLE,
			      77, &ids[i]));

	CHECK_OK(lease_get(t, ids[2], &l));
	CHECK_UEQ(l.id, ids[2]);
	CHECK_UEQ(l.ino, 1);
	CHECK_UEQ(l.first, 20);
	CHECK_UEQ(l.nblocks, 3);
	CHECK_UEQ(l.holder, 42);
	CHECK_UEQ(l.flags, PINFS_PIN_REVOCABLE);
	CHECK_UEQ(l.state, PINFS_LEASE_ACTIVE);
	CHECK_UEQ(l.fh, 77);
	CHECK_UEQ(l.nseg, 1);
	CHECK(l.seg_pblk == NULL && l.seg_fblk == NULL && l.seg_len == NULL);
	CHECK(l.start_ns >= before && l.start_ns <= now_ns());
	CHECK_EQ(lease_get(t, 12345, &l), -ENOENT);

	CHECK_OK(lease_set_state(t, ids[2], PINFS_LEASE_BREAKING));
	CHECK_OK(lease_get(t, ids[2], &l));
	CHECK_UEQ(l.state, PINFS_LEASE_BREAKING);
	CHECK_OK(lease_set_state(t, ids[2], PINFS_LEASE_REVOKED));
	CHECK_EQ(lease_set_state(t, ids[2], 0), -EINVAL);
	CHECK_EQ(lease_set_state(t, ids[2], 99), -EINVAL);
	CHECK_EQ(lease_set_state(t, 12345, PINFS_LEASE_ACTIVE), -ENOENT);
	CHECK_UEQ(lease_find_overlap(t, 1, 20, 1, out, 8), 1);
	CHECK_UEQ(out[0].state, PINFS_LEASE_REVOKED);
	CHECK(out[0].seg_pblk == NULL);

	/* every lease, by id, paged two at a time */
	for (size_t first = 0; first < 6; first += 2) {
		CHECK_UEQ(lease_list(t, 0, first, out, 2), 6);
		CHECK_UEQ(out[0].id, ids[first]);
		CHECK_UEQ(out[1].id, ids[first + 1]);
	}
	CHECK_UEQ(lease_list(t, 0, 6, out, 2), 6);
	CHECK_UEQ(lease_list(t, 0, 100, out, 2), 6);
	/* one file; paging backwards and after a change */
	CHECK_UEQ(lease_list(t, 2, 1, out, 8), 3);
	CHECK_UEQ(out[0].id, ids[3]);
	CHECK_UEQ(out[1].id, ids[5]);
	CHECK_UEQ(lease_list(t, 2, 0, out, 1), 3);
	CHECK_UEQ(out[0].id, ids[1]);
	CHECK_OK(lease_remove(t, ids[3], NULL, NULL));
	CHECK_UEQ(lease_list(t, 2, 1, out, 8), 2);
	CHECK_UEQ(out[0].id, ids[5]);
	CHECK_UEQ(lease_list(t, 0, 3, out, 8), 5);
	CHECK_UEQ(out[0].id, ids[4]);
	CHECK_UEQ(out[1].id, ids[5]);
	CHECK_UEQ(lease_list(t, 9, 0, out, 8), 0);
	CHECK_UEQ(lease_count_ino(t, 1), 3);
	CHECK_UEQ(lease_count_ino(t, 2), 2);
	CHECK_UEQ(lease_count_ino(t, 9), 0);
	CHECK_OK(lease_table_check(t));
	lease_table_delete(&t);
	return T_EXIT_PASS;
}

/* ---- randomized comparison against a brute-force model ------------------- */

#define M_OPS 6000
#define M_INOS 4	  /* files 1..4; 5 never has a lease */
#define M_FILE_BLOCKS 600
#define M_POOL 2048	  /* pool blocks drawn from [0, M_POOL) */
#define M_HOLDERS 5
#define M_FHS 6
#define M_LIMIT 180	  /* leases per holder */

struct mlease {
	uint64_t id, ino, first, n, fh;
	uint32_t holder, flags;
	uint64_t nseg, *fblk, *pblk, *len;
	bool alive;
};

struct model {
	struct mlease l[M_OPS];
	size_t nl;
	uint32_t count[M_POOL];
	uint64_t pinned; /* blocks with count > 0 */
	uint64_t alive;
};

static void model_unpin(struct model *m, struct mlease *ml, uint32_t *expect)
{
	for (uint64_t s = 0; s < ml->nseg; s++)
		for (uint64_t j = 0; j < ml->len[s]; j++)
			if (--m->count[ml->pblk[s] + j] == 0) {
				m->pinned--;
				expect[ml->pblk[s] + j]++;
			}
	ml->alive = false;
	m->alive--;
}

static int cmp_key(const void *a, const void *b)
{
	const struct lease *x = a, *y = b;
	if (x->first != y->first)
		return x->first < y->first ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* Everything the table says agrees with the model. */
static int model_check_all(struct lease_table *t, struct model *m, struct lease *buf)
{
	uint64_t nl, np;
	CHECK_OK(lease_table_check(t));
	lease_table_counts(t, &nl, &np);
	CHECK_UEQ(nl, m->alive);
	CHECK_UEQ(np, m->pinned);
	for (uint64_t p = 0; p < M_POOL; p++)
		CHECK_EQ(lease_block_pinned(t, p), m->count[p] > 0);
	for (uint64_t ino = 1; ino <= M_INOS + 1; ino++) {
		uint64_t want = 0;
		for (size_t i = 0; i < m->nl; i++)
			want += m->l[i].alive && m->l[i].ino == ino;
		CHECK_UEQ(lease_count_ino(t, ino), want);
	}
	/* listing in pages of 7: ids ascending, exactly the live leases */
	size_t k = 0, got = 0;
	for (size_t first = 0;; first += 7) {
		size_t total = lease_list(t, 0, first, buf, 7);
		CHECK_UEQ(total, m->alive);
		size_t n = total > first ? total - first : 0;
		if (n > 7)
			n = 7;
		for (size_t i = 0; i < n; i++, got++) {
			while (k < m->nl && !m->l[k].alive)
				k++;
			CHECK(k < m->nl);
			CHECK_UEQ(buf[i].id, m->l[k].id);
			CHECK_UEQ(buf[i].first, m->l[k].first);
			k++;
		}
		if (first + 7 >= total)
			break;
	}
	CHECK_UEQ(got, m->alive);
	uint64_t hn, hb;
	for (uint32_t h = 1; h <= M_HOLDERS; h++) {
		uint64_t wn = 0, wb = 0;
		for (size_t i = 0; i < m->nl; i++)
			if (m->l[i].alive && m->l[i].holder == h) {
				wn++;
				wb += m->l[i].n * 4096;
			}
		lease_holder_counts(t, h, &hn, &hb);
		CHECK_UEQ(hn, wn);
		CHECK_UEQ(hb, wb);
	}
	return T_EXIT_PASS;
}

static int model_query(struct lease_table *t, struct model *m, struct lease *buf,
		       struct lease *want)
{
	uint64_t ino = 1 + rnd_below(M_INOS + 1);
	uint64_t qf = rnd_below(M_FILE_BLOCKS + 50);
	uint64_t n = rnd_below(10) == 0 ? UINT64_MAX : rnd_below(80);
	uint64_t qe = n == UINT64_MAX ? UINT64_MAX : qf + n;
	size_t nw = 0;

	for (size_t i = 0; i < m->nl; i++) {
		struct mlease *ml = &m->l[i];
		if (n && ml->alive && ml->ino == ino && ml->first < qe && ml->first + ml->n > qf) {
			want[nw].id = ml->id;
			want[nw].first = ml->first;
			nw++;
		}
	}
	qsort(want, nw, sizeof(*want), cmp_key);

	/* sometimes a buffer too small: the total still counts everything */
	size_t max = rnd_below(4) == 0 ? rnd_below(nw + 1) : M_OPS;
	size_t total = lease_find_overlap(t, ino, qf, n, buf, max);
	CHECK_UEQ(total, nw);
	for (size_t i = 0; i < nw && i < max; i++) {
		CHECK_UEQ(buf[i].id, want[i].id);
		CHECK_UEQ(buf[i].first, want[i].first);
		CHECK_UEQ(buf[i].ino, ino);
	}
	return T_EXIT_PASS;
}

static int test_find_overlap_and_counts_match_brute_force_model(void)
{
	struct lease_table *t = NULL;
	struct model *m = calloc(1, sizeof(*m));
	struct lease *buf = calloc(M_OPS, sizeof(*buf)), *want = calloc(M_OPS, sizeof(*want));
	static struct reports r;
	static uint32_t expect[REP_BLOCKS];
	size_t adds = 0, removes = 0, queries = 0, enomem = 0, peak = 0;
	const char *env = getenv("PIN_SEED");
	uint64_t seed = env ? strtoull(env, NULL, 0) : 0x9e3779b97f4a7c15ull;

	CHECK(m && buf && want);
	rng_state = seed ? seed : 1;
	if (getenv("CHECK_VERBOSE"))
		fprintf(stderr, "model seed %#" PRIx64 "\n", seed);
	CHECK_OK(lease_table_new(&t));
	lease_table_set_limits(t, M_LIMIT, 0);

	for (int op = 0; op < M_OPS; op++) {
		/* the first half grows the table (hundreds of leases per file,
		 * up to the holders' limits), the second half shrinks it */
		uint64_t dice = rnd_below(100), add_pct = op < M_OPS / 2 ? 65 : 30;
		if (dice < add_pct || m->alive == 0) {
			/* add: a random range split into random pool runs */
			struct mlease *ml = &m->l[m->nl];
			ml->ino = 1 + rnd_below(M_INOS);
			ml->first = rnd_below(M_FILE_BLOCKS);
			ml->n = rnd_below(20) == 0 ? 1 + rnd_below(150) : 1 + rnd_below(24);
			ml->holder = 1 + (uint32_t)rnd_below(M_HOLDERS);
			ml->fh = 1 + rnd_below(M_FHS);
			ml->flags = rnd_below(3) == 0 ? PINFS_PIN_ON_CLOSE : 0;
			ml->fblk = calloc(ml->n, sizeof(uint64_t));
			ml->pblk = calloc(ml->n, sizeof(uint64_t));
			ml->len = calloc(ml->n, sizeof(uint64_t));
			CHECK(ml->fblk && ml->pblk && ml->len);
			ml->nseg = 0;
			for (uint64_t at = 0; at < ml->n; ml->nseg++) {
				uint64_t len = 1 + rnd_below(8);
				if (len > ml->n - at)
					len = ml->n - at;
				ml->fblk[ml->nseg] = ml->first + at;
				ml->pblk[ml->nseg] = rnd_below(M_POOL - len + 1);
				ml->len[ml->nseg] = len;
				at += len;
			}
			uint64_t hn;
			lease_holder_counts(t, ml->holder, &hn, NULL);
			int rc = lease_add(t, ml->ino, ml->first, ml->n, ml->holder, ml->flags, ml->fh,
					   ml->fblk, ml->pblk, ml->len, ml->nseg, &ml->id);
			if (hn >= M_LIMIT) {
				CHECK_EQ(rc, -ENOMEM);
				enomem++;
				free(ml->fblk);
				free(ml->pblk);
				free(ml->len);
				continue;
			}
			CHECK_OK(rc);
			CHECK(m->nl == 0 || ml->id > m->l[m->nl - 1].id);
			for (uint64_t s = 0; s < ml->nseg; s++)
				for (uint64_t j = 0; j < ml->len[s]; j++)
					if (m->count[ml->pblk[s] + j]++ == 0)
						m->pinned++;
			ml->alive = true;
			m->alive++;
			m->nl++;
			adds++;
			if (m->alive > peak)
				peak = m->alive;
		} else if (dice < add_pct + 20 + (op >= M_OPS / 2) * 20) {
			/* remove one, by holder, or by open file; reports must be
			 * exactly the blocks whose model count reached 0 */
			reports_clear(&r);
			memset(expect, 0, sizeof(expect));
			uint64_t sub = rnd_below(1000);
			if (sub < 992) {
				size_t i;
				do
					i = rnd_below(m->nl);
				while (!m->l[i].alive);
				CHECK_OK(lease_remove(t, m->l[i].id, on_unpinned, &r));
				model_unpin(m, &m->l[i], expect);
				removes++;
			} else if (sub < 995) {
				uint32_t h = 1 + (uint32_t)rnd_below(M_HOLDERS);
				int want_n = 0;
				for (size_t i = 0; i < m->nl; i++)
					if (m->l[i].alive && m->l[i].holder == h) {
						model_unpin(m, &m->l[i], expect);
						want_n++;
					}
				CHECK_EQ(lease_remove_holder(t, h, on_unpinned, &r), want_n);
				removes += (size_t)want_n;
			} else {
				uint64_t fh = 1 + rnd_below(M_FHS);
				int want_n = 0;
				for (size_t i = 0; i < m->nl; i++)
					if (m->l[i].alive && m->l[i].fh == fh &&
					    (m->l[i].flags & PINFS_PIN_ON_CLOSE)) {
						model_unpin(m, &m->l[i], expect);
						want_n++;
					}
				CHECK_EQ(lease_remove_fh(t, fh, on_unpinned, &r), want_n);
				removes += (size_t)want_n;
			}
			CHECK(!r.out_of_range);
			for (uint64_t p = 0; p < M_POOL; p++)
				CHECK_UEQ(r.count[p], expect[p]);
		} else {
			if (model_query(t, m, buf, want))
				return T_EXIT_FAIL;
			queries++;
		}
		if (op % 97 == 0 && model_check_all(t, m, buf))
			return T_EXIT_FAIL;
	}
	if (model_check_all(t, m, buf))
		return T_EXIT_FAIL;
	if (getenv("CHECK_VERBOSE"))
		fprintf(stderr, "model: %zu adds (%zu over the limit), %zu removes, %zu queries, "
				"%zu live at most, %" PRIu64 " at the end\n",
			adds, enomem, removes, queries, peak, m->alive);
	CHECK(env || enomem > 0); /* the default seed does reach the limits */

	/* empty it: every pinned block is reported exactly once in all */
	reports_clear(&r);
	memset(expect, 0, sizeof(expect));
	for (uint32_t h = 1; h <= M_HOLDERS; h++)
		lease_remove_holder(t, h, on_unpinned, &r);
	for (size_t i = 0; i < m->nl; i++)
		if (m->l[i].alive)
			model_unpin(m, &m->l[i], expect);
	for (uint64_t p = 0; p < M_POOL; p++)
		CHECK_UEQ(r.count[p], expect[p]);
	CHECK_UEQ(nleases(t), 0);
	CHECK_UEQ(pinned_blocks(t), 0);

	for (size_t i = 0; i < m->nl; i++) {
		free(m->l[i].fblk);
		free(m->l[i].pblk);
		free(m->l[i].len);
	}
	free(m);
	free(buf);
	free(want);
	CHECK_OK(lease_table_check(t));
	lease_table_delete(&t);
	return T_EXIT_PASS;
}

/* ---- threads ---------------------------------------------------------------- */

#define TH_N 4
#define TH_ITERS 3000

struct th_arg {
	struct lease_table *t;
	uint32_t holder;
	int failures;
};

/* Each thread pins and unpins pool blocks [0, 64) that all threads share,
 * and checks that its own pins always read as pinned. */
static void *th_main(void *p)
{
	struct th_arg *a = p;
	uint64_t ids[8];
	int n = 0;

	for (int i = 0; i < TH_ITERS; i++) {
		uint64_t pblk = (uint64_t)(i * 7 + a->holder) % 60;
		if (n < 8 && (i % 3 != 2)) {
			if (add1(a->t, a->holder, (uint64_t)i, 4, pblk, a->holder, 0, 0, &ids[n]))
				a->failures++;
			else
				n++;
		} else if (n) {
			if (lease_remove(a->t, ids[--n], NULL, NULL))
				a->failures++;
		}
		for (int k = 0; k < n; k++) {
			uint64_t f, pb, len;
			if (lease_segments(a->t, ids[k], 0, &f, &pb, &len, 1) != 1 ||
			    !lease_block_pinned(a->t, pb))
				a->failures++;
		}
	}
	a->failures += lease_remove_holder(a->t, a->holder, NULL, NULL) != n;
	return NULL;
}

static int test_concurrent_pins_keep_counts_exact(void)
{
	struct lease_table *t = NULL;
	struct th_arg args[TH_N];
	pthread_t th[TH_N];

	CHECK_OK(lease_table_new(&t));
	for (int i = 0; i < TH_N; i++) {
		args[i] = (struct th_arg){ .t = t, .holder = 100 + (uint32_t)i };
		CHECK_EQ(pthread_create(&th[i], NULL, th_main, &args[i]), 0);
	}
	for (int i = 0; i < TH_N; i++) {
		CHECK_EQ(pthread_join(th[i], NULL), 0);
		CHECK_EQ(args[i].failures, 0);
	}
	CHECK_UEQ(nleases(t), 0);
	CHECK_UEQ(pinned_blocks(t), 0);
	CHECK_OK(lease_table_check(t));
	lease_table_delete(&t);
	return T_EXIT_PASS;
}

/* ---- timing ------------------------------------------------------------------ */

#define PERF_N 100000
#define PERF_Q 1000

/* Adds @n one-block leases on even file blocks [0, 2n) of file 1 and times
 * @PERF_Q truncate-style queries past them and in the gaps between them. */
static int perf_round(size_t n, bool print)
{
	struct lease_table *t = NULL;
	uint64_t id, t0, t_add, t_trunc, t_gap, t_pinned, t_rm;
	size_t found = 0;

	CHECK_OK(lease_table_new(&t));
	t0 = now_ns();
	for (size_t i = 0; i < n; i++)
		CHECK_OK(add1(t, 1, 2 * i, 1, 1000 + i, 1 + (uint32_t)(i % 64), 0, 0, &id));
	t_add = now_ns() - t0;
	CHECK_UEQ(nleases(t), n);
	CHECK_OK(lease_table_check(t)); /* among others: the tree is balanced */

	/* truncate to 2n: nothing from there to the end is pinned */
	t0 = now_ns();
	for (int q = 0; q < PERF_Q; q++)
		found += lease_find_overlap(t, 1, 2 * n + (uint64_t)q, UINT64_MAX, NULL, 0);
	t_trunc = now_ns() - t0;
	/* hole punch of one odd block, between two leases */
	rng_state = 42;
	t0 = now_ns();
	for (int q = 0; q < PERF_Q; q++)
		found += lease_find_overlap(t, 1, 2 * rnd_below(n) + 1, 1, NULL, 0);
	t_gap = now_ns() - t0;
	CHECK_UEQ(found, 0);
	/* and one that does hit: the last lease */
	CHECK_UEQ(lease_find_overlap(t, 1, 2 * n - 2, UINT64_MAX, NULL, 0), 1);

	t0 = now_ns();
	for (size_t i = 0; i < n; i++)
		found += !lease_block_pinned(t, 1000 + i);
	t_pinned = now_ns() - t0;
	CHECK_UEQ(found, 0);

	t0 = now_ns();
	for (uint32_t h = 1; h <= 64; h++)
		lease_remove_holder(t, h, NULL, NULL);
	t_rm = now_ns() - t0;
	CHECK_UEQ(nleases(t), 0);
	CHECK_UEQ(pinned_blocks(t), 0);

	if (print)
		printf("pin perf, %6zu leases: add %7.0f ns/lease, truncate query %6.0f ns, "
		       "gap query %6.0f ns, block_pinned %5.0f ns, remove %6.0f ns/lease\n",
		       n, (double)t_add / n, (double)t_trunc / PERF_Q, (double)t_gap / PERF_Q,
		       (double)t_pinned / n, (double)t_rm / n);
	CHECK_OK(lease_table_check(t));
	lease_table_delete(&t);
	return T_EXIT_PASS;
}

static int test_perf_100k_leases_overlap_queries_do_not_scan(void)
{
	/* printed for comparison: query times should hardly differ between
	 * 1 000 and 100 000 leases. Not asserted. */
	if (perf_round(1000, true) || perf_round(PERF_N, true))
		return T_EXIT_FAIL;
	return T_EXIT_PASS;
}

/* Adds a one-run lease of @holder by user @uid. */
static int add_user(struct lease_table *t, uint64_t ino, uint64_t first, uint64_t n,
		    uint64_t pblk, uint32_t holder, uint32_t uid, uint32_t flags, uint64_t fh,
		    uint64_t *id)
{
	return lease_add_gen(t, ino, first, n, holder, 1, uid, flags, fh, &first, &pblk, &n, 1,
			     id);
}

static int test_user_limits_orphans_and_ended_leases(void)
{
	struct lease_table *t = NULL;
	struct lease l[8];
	uint64_t a1, a2, b1, id, n, bytes;
	uint32_t holders[4];
	struct reports r;

	CHECK_OK(lease_table_new(&t));
	lease_table_set_user_limits(t, 3, 8 * 4096);
	/* user 1000: two processes, one budget */
	CHECK_OK(add_user(t, 1, 0, 4, 100, 10, 1000, 0, 0, &a1));
	CHECK_OK(add_user(t, 1, 4, 2, 104, 11, 1000, PINFS_PIN_ON_CLOSE, 7, &a2));
	CHECK_EQ(lease_check_limits(t, 12, 1000, 3), -ENOMEM);
	CHECK_EQ(add_user(t, 1, 6, 3, 106, 12, 1000, 0, 0, &id), -ENOMEM);
	CHECK_OK(lease_check_limits(t, 12, 1000, 2));
	CHECK_OK(lease_check_limits(t, 12, 1001, 8)); /* user 1001 has its own */
	CHECK_EQ(lease_check_limits(t, 12, 1001, 9), -ENOMEM);
	CHECK_OK(add_user(t, 2, 0, 8, 200, 20, 1001, 0, 0, &b1));
	CHECK(!lease_block_pinned(t, 106));
	lease_user_counts(t, 1000, &n, &bytes);
	CHECK_UEQ(n, 2);
	CHECK_UEQ(bytes, 6 * 4096);

	/* the mount's list as one user sees it */
	CHECK_UEQ(lease_list_user(t, 1000, 0, l, 8), 2);
	CHECK_UEQ(l[0].id, a1);
	CHECK_UEQ(l[1].id, a2);
	CHECK_UEQ(l[0].uid, 1000);
	CHECK_UEQ(lease_list_user(t, 1000, 1, l, 8), 2);
	CHECK_UEQ(l[0].id, a2);
	CHECK_UEQ(lease_list_user(t, 1001, 0, l, 8), 1);
	CHECK_UEQ(lease_list_user(t, 7, 0, l, 8), 0);

	/* unpinned while mapped: ended, still its holder's, still counted */
	CHECK_OK(lease_mark_ended(t, a2));
	CHECK_EQ(lease_mark_ended(t, a2), -EALREADY);
	CHECK_OK(lease_get(t, a2, &l[0]));
	CHECK_UEQ(l[0].state, PINFS_LEASE_REVOKED);
	CHECK_UEQ(l[0].flags, LEASE_ENDED);
	CHECK_UEQ(l[0].holder, 11);
	CHECK_EQ(lease_remove_fh(t, 7, NULL, NULL), 0); /* no longer an on-close lease */
	CHECK(lease_block_pinned(t, 104));
	CHECK_OK(lease_table_check(t));

	/* its holder exited while another process maps it: an orphan */
	CHECK_OK(lease_orphan(t, a2));
	CHECK_EQ(lease_orphan(t, a2), -EALREADY);
	CHECK_EQ(lease_orphan(t, 999), -ENOENT);
	CHECK_OK(lease_orphan(t, a1));
	CHECK_UEQ(lease_list_holder(t, LEASE_HOLDER_NONE, 0, l, 8), 2);
	CHECK_UEQ(l[0].id, a1); /* in id order */
	CHECK_UEQ(l[1].id, a2);
	CHECK_UEQ(l[0].holder_gen, 0);
	CHECK_UEQ(lease_list_holder(t, 10, 0, l, 8), 0);
	CHECK_UEQ(lease_holders(t, holders, 4), 1); /* only 20: orphans have no holder */
	CHECK_UEQ(holders[0], 20);
	lease_user_counts(t, 1000, &n, NULL);
	CHECK_UEQ(n, 2); /* the user still pays for them */
	CHECK_EQ(add_user(t, 1, 6, 3, 106, 12, 1000, 0, 0, &id), -ENOMEM);
	CHECK_OK(lease_table_check(t));

	/* the last mapping went: the blocks come back */
	reports_clear(&r);
	CHECK_OK(lease_remove(t, a1, on_unpinned, &r));
	CHECK_OK(lease_remove(t, a2, on_unpinned, &r));
	CHECK_UEQ(r.count[100] + r.count[101] + r.count[102] + r.count[103], 4);
	CHECK_UEQ(r.count[104] + r.count[105], 2);
	lease_user_counts(t, 1000, &n, &bytes);
	CHECK_UEQ(n, 0);
	CHECK_UEQ(bytes, 0);
	CHECK_OK(lease_table_check(t)); /* the orphans' group stays, empty */
	CHECK_UEQ(lease_holders(t, holders, 4), 1);
	CHECK_EQ(add_user(t, 1, 0, 1, 300, LEASE_HOLDER_NONE, 0, 0, 0, &id), -EINVAL);
	lease_table_delete(&t);
	return T_EXIT_PASS;
}

/* lease_pinned_span() agrees with lease_block_pinned() block by block:
 * random pins over a few 2 MiB chunks (runs crossing chunk and word
 * boundaries, chunks nobody pinned), then random spans. */
static int test_pinned_span_matches_per_block_state(void)
{
	struct lease_table *t = NULL;
	const uint64_t blocks = 4 * 512 + 100;
	uint64_t id;

	rng_state = 0x5eedull;
	CHECK_OK(lease_table_new(&t));
	for (int i = 0; i < 40; i++) {
		uint64_t start = 512 + rnd_below(blocks - 512), n = 1 + rnd_below(i % 5 ? 70 : 700);
		if (start + n > blocks)
			n = blocks - start;
		CHECK_OK(add1(t, 1 + (uint64_t)i, 0, n, start, 1, 0, 0, &id));
	}
	for (int q = 0; q < 20000; q++) {
		uint64_t b = rnd_below(blocks + 64), n = 1 + rnd_below(q % 3 ? 80 : 1500), want;
		bool pinned = !lease_block_pinned(t, b);
		uint64_t got = lease_pinned_span(t, b, n, &pinned);

		CHECK_UEQ(pinned, lease_block_pinned(t, b));
		for (want = 1; want < n && lease_block_pinned(t, b + want) == pinned; want++)
			;
		CHECK_UEQ(got, want);
	}
	lease_table_delete(&t);
	return T_EXIT_PASS;
}

int main(void)
{
	RUN(test_overlapping_pins_add_up_and_only_last_unpin_reports);
	RUN(test_unpin_reports_maximal_runs_across_segments);
	RUN(test_unpinned_callback_may_call_into_the_table);
	RUN(test_remove_holder_removes_all_of_its_leases);
	RUN(test_release_removes_only_on_close_leases_of_that_file);
	RUN(test_limits_give_enomem_and_change_nothing);
	RUN(test_user_limits_orphans_and_ended_leases);
	RUN(test_add_rejects_bad_ranges_and_segments);
	RUN(test_snapshots_states_and_listing);
	RUN(test_find_overlap_and_counts_match_brute_force_model);
	RUN(test_concurrent_pins_keep_counts_exact);
	RUN(test_perf_100k_leases_overlap_queries_do_not_scan);
	RUN(test_pinned_span_matches_per_block_state);
	return T_EXIT_PASS;
}

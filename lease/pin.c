/* SPDX-License-Identifier: MIT */
/*
 * lease/pin.c -- the pin table (interface and contracts in lease/pin.h).
 *
 * Every lease is one struct lease_node: a single allocation holding the
 * lease, its segments and a bitmap, linked into
 *
 *   by_id      hash  id -> node                  lease_get/remove/set_state
 *   by_ino     hash  ino -> struct lease_ino:    an AVL interval tree keyed
 *                    by (first, id), each node augmented with the largest
 *                    end in its subtree, for lease_find_overlap; and a list
 *                    in id order for lease_list
 *   by_holder  hash  holder -> struct lease_group: the holder's leases,
 *                    counts and bytes (limits, exit)
 *   by_fh      hash  fh -> struct lease_group: ON_CLOSE leases only (release)
 *   by_user    hash  uid -> struct user_acct: a user's lease count and bytes
 *                    (per-user limits)
 *   all              every lease in id order (lease_list(ino 0), delete)
 *
 * and, per pool block, a pin count, kept in its 2 MiB chunk (`chunks`, an
 * open-addressing hash chunk -> struct chunk holding only chunks with a
 * pinned block): "is this block pinned" is one probe and a bit, and pinning
 * a run of blocks probes once per chunk, not once per block. A chunk with a
 * pinned block takes about 2 KiB: at most 1/1024 of the pool's size.
 *
 * Removal cannot fail, yet must report the blocks whose count reached 0
 * after the lock is dropped. Rather than collect those runs in memory
 * allocated at removal time (which could fail), every node carries one bit
 * per block, allocated with it at lease_add: removal sets the bit of each
 * block it takes to 0 and, once unlocked, walks the detached node's segments
 * and reports the marked runs.
 *
 * Hashes use linear probing with backward-shift deletion (no tombstones):
 * they grow at 70% load and shrink below 1/8, so memory follows the number
 * of leases and pinned blocks.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lease/pin.h"
#include "pmem/layout.h"

/* ---- open-addressing hash: uint64 key -> non-zero uint64 value ----------- */

#define UMAP_MIN_CAP 16

struct umap_ent {
	uint64_t key;
	uint64_t val; /* 0: empty slot */
};

struct umap {
	struct umap_ent *e;
	size_t cap; /* 0 or a power of two */
	size_t used;
};

/* MurmurHash3's finaliser: consecutive block numbers spread evenly. */
static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

static struct umap_ent *umap_find(const struct umap *m, uint64_t key)
{
	if (!m->cap)
		return NULL;
	size_t mask = m->cap - 1;
	/* Terminates: the load is kept below 70%, so an empty slot exists. */
	for (size_t i = mix64(key) & mask;; i = (i + 1) & mask) {
		if (!m->e[i].val)
			return NULL;
		if (m->e[i].key == key)
			return &m->e[i];
	}
}

static void *umap_get_ptr(const struct umap *m, uint64_t key)
{
	struct umap_ent *e = umap_find(m, key);
	return e ? (void *)(uintptr_t)e->val : NULL;
}

static void umap_place(struct umap_ent *e, size_t cap, uint64_t key, uint64_t val)
{
	size_t mask = cap - 1, i = mix64(key) & mask;
	while (e[i].val)
		i = (i + 1) & mask;
	e[i].key = key;
	e[i].val = val;
}

static int umap_rehash(struct umap *m, size_t ncap)
{
	struct umap_ent *ne = calloc(ncap, sizeof(*ne));
	if (!ne)
		return -ENOMEM;
	for (size_t i = 0; i < m->cap; i++)
		if (m->e[i].val)
			umap_place(ne, ncap, m->e[i].key, m->e[i].val);
	free(m->e);
	m->e = ne;
	m->cap = ncap;
	return 0;
}

static bool umap_fits(size_t n, size_t cap)
{
	return n * 10 <= cap * 7;
}

/* Makes room for @n entries in all, so that the next umap_insert()s up to
 * that many cannot fail. 0 or -ENOMEM (the map is then unchanged). */
static int umap_reserve(struct umap *m, size_t n)
{
	if (m->cap && umap_fits(n, m->cap))
		return 0;
	size_t ncap = m->cap ? m->cap * 2 : UMAP_MIN_CAP;
	while (!umap_fits(n, ncap))
		ncap *= 2;
	return umap_rehash(m, ncap);
}

/* @key must be absent and room reserved. */
static void umap_insert(struct umap *m, uint64_t key, uint64_t val)
{
	assert(val && umap_fits(m->used + 1, m->cap) && !umap_find(m, key));
	umap_place(m->e, m->cap, key, val);
	m->used++;
}

/* Deletes entry @ent (from umap_find); every other entry pointer into the
 * map is invalid afterwards. */
static void umap_del(struct umap *m, struct umap_ent *ent)
{
	size_t mask = m->cap - 1, i = (size_t)(ent - m->e), j = i;

	/* Backward shift: pull later members of the probe run into the hole
	 * unless their home slot lies cyclically in (i, j]. */
	for (;;) {
		j = (j + 1) & mask;
		if (!m->e[j].val)
			break;
		size_t k = mix64(m->e[j].key) & mask;
		if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
			continue;
		m->e[i] = m->e[j];
		i = j;
	}
	m->e[i].key = 0;
	m->e[i].val = 0;
	m->used--;

	if (m->cap > UMAP_MIN_CAP && m->used * 8 < m->cap) {
		size_t ncap = m->cap;
		while (ncap / 2 >= UMAP_MIN_CAP && m->used * 2 <= ncap / 2)
			ncap /= 2;
		(void)umap_rehash(m, ncap); /* on failure the map just stays large */
	}
}

static void umap_free(struct umap *m)
{
	free(m->e);
	m->e = NULL;
	m->cap = m->used = 0;
}

/* ---- the table ------------------------------------------------------------ */

/* The leases of one user, counted; exists while it has any. Locking:
 * protected by the table's lock. */
struct user_acct {
	uint64_t n, bytes;
};

/* The lists a node is on; see struct lease_node.link. */
enum { LL_ALL, LL_INO, LL_HOLDER, LL_FH, LL_N };

struct lease_node;
struct lease_link {
	struct lease_node *prev, *next;
};
struct lease_chain {
	struct lease_node *head, *tail;
};

/* One lease. Locking: protected by the table's lock while linked (rule 1
 * below); once node_detach() returns, owned by the removing thread alone
 * (rule 3). */
struct lease_node {
	/* What a tree walk reads comes first: with l.id, l.first and
	 * l.nblocks it spans at most two cache lines. The largest ends of
	 * both subtrees are kept here, not in the children, so that a walk
	 * touches only the nodes on its path. */
	struct lease_node *left, *right; /* interval tree of l.ino */
	uint64_t lmax, rmax; /* largest first + nblocks in the left / right
			      * subtree; 0 when empty (an end is >= 1) */
	int height;
	struct lease l; /* l.seg_* point into this allocation */
	struct lease_link link[LL_N]; /* LL_FH only with PINFS_PIN_ON_CLOSE */
	uint64_t *zero; /* bit b: the pool block of file block first + b
			 * reached count 0 when the lease was removed */
	struct lease_node *dead; /* removed, waiting to be reported and freed */
};

/* The leases of one file; exists while it has any. Locking: protected by
 * the table's lock. */
struct lease_ino {
	uint64_t ino;
	struct lease_node *root; /* interval tree */
	struct lease_chain list; /* id order */
	uint64_t n;
};

/* The leases of one holder, or the ON_CLOSE leases of one open file;
 * exists while it has any. Locking: protected by the table's lock. */
struct lease_group {
	uint64_t key;
	struct lease_chain list; /* id order */
	uint64_t n;
	uint64_t bytes; /* holders only */
};

/*
 * Locking
 *  1. t->lock (a mutex) protects every field of the table and every node,
 *     inode and group reachable from it. One lock is enough: each operation
 *     is a few hash probes and tree steps, or one walk over a lease's blocks
 *     (add/remove), all in memory and never sleeping; pins are rare next to
 *     the I/O they enable.
 *  2. Nothing outside this file sees a node: everything is copied out under
 *     the lock (snapshots without segment pointers), so a lease can be freed
 *     as soon as it is detached.
 *  3. The unpinned callback runs without t->lock, on nodes already detached
 *     (owned by the removing thread alone): it may call back into the table,
 *     and the caller may take its own locks in it without ordering against
 *     ours. t->lock is a leaf: no other lock is taken while holding it.
 */
struct lease_table {
	pthread_mutex_t lock;
	uint64_t next_id;			/* protected by lock */
	uint64_t max_leases, max_bytes;		/* protected by lock; 0: no limit */
	uint64_t max_user_leases, max_user_bytes; /* protected by lock; 0: no limit */
	struct umap by_id, by_ino, by_holder, by_fh; /* protected by lock */
	struct umap by_user;			/* protected by lock: uid -> user_acct */
	size_t npinned;				/* protected by lock: blocks with a count > 0 */
	/* protected by lock: 2 MiB chunk (pblk >> 9) -> struct chunk, a
	 * bitmap of its pinned blocks and their counts. The bitmap comes
	 * first and the table is small, so "is this block pinned?" for the
	 * many blocks a truncate frees touches a few cache lines, however many
	 * pins there are (bench-pins: truncate with 100 000 pins). */
	struct umap chunks;
	struct lease_chain all;			/* protected by lock */
	uint64_t nleases;			/* protected by lock */
	uint64_t gen; /* protected by lock; bumped by every add and removal */
	uint64_t gone_seq; /* protected by lock: keys for lease_forget_ino */
	struct {      /* protected by lock: where the last lease_list stopped */
		uint64_t gen, ino;
		size_t idx;
		struct lease_node *node; /* NULL: none */
	} cursor;
#ifndef NDEBUG
	pthread_t owner; /* protected by lock: who holds it, when locked */
	bool locked;
#endif
};

static void table_lock(struct lease_table *t)
{
	int rc = pthread_mutex_lock(&t->lock);
	if (rc) {
		fprintf(stderr, "pinfs: pin table: pthread_mutex_lock: %s\n", strerror(rc));
		abort();
	}
#ifndef NDEBUG
	t->owner = pthread_self();
	t->locked = true;
#endif
}

static void table_unlock(struct lease_table *t)
{
#ifndef NDEBUG
	t->locked = false;
#endif
	pthread_mutex_unlock(&t->lock);
}

#define ASSERT_LOCKED(t) assert((t)->locked && pthread_equal((t)->owner, pthread_self()))

static void lease_bug(const char *what)
{
	fprintf(stderr, "pinfs: pin table: broken invariant: %s\n", what);
	abort();
}

static inline uint64_t node_end(const struct lease_node *n)
{
	return n->l.first + n->l.nblocks;
}

static inline uint64_t node_bytes(const struct lease_node *n)
{
	return n->l.nblocks << PM_BLOCK_SHIFT;
}

static void snapshot(struct lease *out, const struct lease_node *n)
{
	*out = n->l;
	out->seg_pblk = out->seg_fblk = out->seg_len = NULL;
}

static void chain_append(struct lease_chain *c, struct lease_node *n, int w)
{
	n->link[w].next = NULL;
	n->link[w].prev = c->tail;
	if (c->tail)
		c->tail->link[w].next = n;
	else
		c->head = n;
	c->tail = n;
}

static void chain_del(struct lease_chain *c, struct lease_node *n, int w)
{
	struct lease_link *k = &n->link[w];
	if (k->prev)
		k->prev->link[w].next = k->next;
	else
		c->head = k->next;
	if (k->next)
		k->next->link[w].prev = k->prev;
	else
		c->tail = k->prev;
	k->prev = k->next = NULL;
}

/* ---- interval tree: AVL keyed by (first, id), augmented with max end ----- */

static inline int tree_height(const struct lease_node *n)
{
	return n ? n->height : 0;
}

static inline bool tree_less(const struct lease_node *a, const struct lease_node *b)
{
	return a->l.first < b->l.first || (a->l.first == b->l.first && a->l.id < b->l.id);
}

/* The largest end in the subtree at @n (0 when empty). */
static inline uint64_t tree_maxend(const struct lease_node *n)
{
	uint64_t m;

	if (!n)
		return 0;
	m = node_end(n);
	if (n->lmax > m)
		m = n->lmax;
	return n->rmax > m ? n->rmax : m;
}

static void tree_fix(struct lease_node *n)
{
	int hl = tree_height(n->left), hr = tree_height(n->right);

	n->height = 1 + (hl > hr ? hl : hr);
	n->lmax = tree_maxend(n->left);
	n->rmax = tree_maxend(n->right);
}

static struct lease_node *tree_rot_right(struct lease_node *x)
{
	struct lease_node *y = x->left;
	x->left = y->right;
	y->right = x;
	tree_fix(x);
	tree_fix(y);
	return y;
}

static struct lease_node *tree_rot_left(struct lease_node *x)
{
	struct lease_node *y = x->right;
	x->right = y->left;
	y->left = x;
	tree_fix(x);
	tree_fix(y);
	return y;
}

/* Restores the AVL balance and the augmentation at @x; returns the new root
 * of its subtree. */
static struct lease_node *tree_balance(struct lease_node *x)
{
	tree_fix(x);
	int bf = tree_height(x->left) - tree_height(x->right);
	if (bf > 1) {
		if (tree_height(x->left->left) < tree_height(x->left->right))
			x->left = tree_rot_left(x->left);
		return tree_rot_right(x);
	}
	if (bf < -1) {
		if (tree_height(x->right->right) < tree_height(x->right->left))
			x->right = tree_rot_right(x->right);
		return tree_rot_left(x);
	}
	return x;
}

/* Recursion depth is the tree height, at most 1.44 log2(N). */
static struct lease_node *tree_insert(struct lease_node *root, struct lease_node *n)
{
	if (!root) {
		n->left = n->right = NULL;
		tree_fix(n);
		return n;
	}
	if (tree_less(n, root))
		root->left = tree_insert(root->left, n);
	else
		root->right = tree_insert(root->right, n);
	return tree_balance(root);
}

static struct lease_node *tree_take_min(struct lease_node *root, struct lease_node **min)
{
	if (!root->left) {
		*min = root;
		return root->right;
	}
	root->left = tree_take_min(root->left, min);
	return tree_balance(root);
}

static struct lease_node *tree_remove(struct lease_node *root, struct lease_node *n)
{
	if (!root)
		lease_bug("lease missing from its file's interval tree");
	if (root == n) {
		struct lease_node *m, *r;
		if (!n->left)
			return n->right;
		if (!n->right)
			return n->left;
		r = tree_take_min(n->right, &m);
		m->left = n->left;
		m->right = r;
		return tree_balance(m);
	}
	if (tree_less(n, root))
		root->left = tree_remove(root->left, n);
	else
		root->right = tree_remove(root->right, n);
	return tree_balance(root);
}

struct overlap_query {
	uint64_t qf, qe; /* file blocks [qf, qe) */
	struct lease *out;
	size_t max, total;
};

/*
 * In-order walk of the leases with first < qe and end > qf, from a node
 * whose subtree may hold one. A subtree whose largest end is <= qf holds
 * none; right of a node with first >= qe neither. When nothing overlaps,
 * every lease left of the range ends by qf and every lease right of it
 * starts at qe or later, so the walk is one root-to-leaf path: O(log N),
 * plus O(log N) per lease found.
 */
static void tree_overlap(const struct lease_node *x, struct overlap_query *q)
{
	while (x) {
		if (x->lmax > q->qf)
			tree_overlap(x->left, q);
		if (x->l.first >= q->qe)
			return;
		if (node_end(x) > q->qf) {
			if (q->total < q->max)
				snapshot(&q->out[q->total], x);
			q->total++;
		}
		x = x->rmax > q->qf ? x->right : NULL;
	}
}

/* ---- pool block pin counts ------------------------------------------------ */

#define CHUNK_SHIFT 9
#define CHUNK_BLOCKS (1u << CHUNK_SHIFT)

/* The pinned blocks of one 2 MiB chunk: bit i <=> block (chunk << 9) + i
 * has a non-zero count[i]. */
struct chunk {
	uint32_t npinned; /* bits set */
	uint64_t bits[CHUNK_BLOCKS / 64];
	uint32_t count[CHUNK_BLOCKS];
};

static struct chunk *chunk_of(const struct lease_table *t, uint64_t pblk)
{
	return umap_get_ptr(&t->chunks, pblk >> CHUNK_SHIFT);
}

/* The chunk of the caller's previous block: a run of blocks probes the
 * chunk table once per chunk. */
struct chunk_cache {
	struct chunk *c; /* NULL: none */
	uint64_t key;
};

/* Called with t->lock held. 0 or -ENOMEM (count unchanged). */
static int blocks_pin(struct lease_table *t, uint64_t pblk, struct chunk_cache *cache)
{
	uint64_t key = pblk >> CHUNK_SHIFT;
	struct chunk *c = cache->c && cache->key == key ? cache->c : chunk_of(t, pblk);
	unsigned bit = (unsigned)(pblk & (CHUNK_BLOCKS - 1));

	if (!c) {
		int rc = umap_reserve(&t->chunks, t->chunks.used + 1);
		if (rc)
			return rc;
		c = calloc(1, sizeof(*c));
		if (!c)
			return -ENOMEM;
		umap_insert(&t->chunks, key, (uint64_t)(uintptr_t)c);
	}
	cache->c = c;
	cache->key = key;
	if (c->count[bit]++)
		return 0;
	c->bits[bit / 64] |= 1ull << (bit % 64);
	c->npinned++;
	t->npinned++;
	return 0;
}

/* Called with t->lock held. True when the count reached 0. */
static bool blocks_unpin(struct lease_table *t, uint64_t pblk, struct chunk_cache *cache)
{
	uint64_t key = pblk >> CHUNK_SHIFT;
	struct chunk *c = cache->c && cache->key == key ? cache->c : chunk_of(t, pblk);
	unsigned bit = (unsigned)(pblk & (CHUNK_BLOCKS - 1));
	struct umap_ent *e;

	if (!c || !c->count[bit])
		lease_bug("unpinning a block that is not pinned");
	cache->c = c;
	cache->key = key;
	if (--c->count[bit])
		return false;
	c->bits[bit / 64] &= ~(1ull << (bit % 64));
	t->npinned--;
	if (!--c->npinned) {
		e = umap_find(&t->chunks, key);
		umap_del(&t->chunks, e);
		free(c);
		cache->c = NULL;
	}
	return true;
}

/*
 * Decrements the count of the first @upto blocks of @n, in file order. With
 * @mark, records in n->zero which counts reached 0 (removal); without, it
 * undoes a partial lease_add (a block reaching 0 there was not pinned before
 * that call, so there is nothing to report). Called with t->lock held.
 */
static void node_unpin_blocks(struct lease_table *t, struct lease_node *n, uint64_t upto,
			      bool mark)
{
	struct chunk_cache cache = { NULL, 0 };
	uint64_t b = 0;

	ASSERT_LOCKED(t);
	for (uint64_t i = 0; i < n->l.nseg && b < upto; i++)
		for (uint64_t j = 0; j < n->l.seg_len[i] && b < upto; j++, b++)
			if (blocks_unpin(t, n->l.seg_pblk[i] + j, &cache) && mark)
				n->zero[b / 64] |= 1ull << (b % 64);
}

/* Increments the count of every block of @n; on failure undoes the ones
 * done. Called with t->lock held. 0 or -ENOMEM. */
static int node_pin_blocks(struct lease_table *t, struct lease_node *n)
{
	struct chunk_cache cache = { NULL, 0 };
	uint64_t b = 0;

	ASSERT_LOCKED(t);
	for (uint64_t i = 0; i < n->l.nseg; i++) {
		for (uint64_t j = 0; j < n->l.seg_len[i]; j++, b++) {
			int rc = blocks_pin(t, n->l.seg_pblk[i] + j, &cache);
			if (rc) {
				node_unpin_blocks(t, n, b, false);
				return rc;
			}
		}
	}
	return 0;
}

/* Reports the maximal runs of consecutive pool blocks marked in n->zero.
 * Must not hold t->lock: @n is detached and ours. */
static void node_report(const struct lease_node *n, lease_unpinned_fn fn, void *ctx)
{
	uint64_t b = 0, run = 0, nrun = 0;

	for (uint64_t i = 0; i < n->l.nseg; i++) {
		for (uint64_t j = 0; j < n->l.seg_len[i]; j++, b++) {
			uint64_t p = n->l.seg_pblk[i] + j;
			if (!(n->zero[b / 64] & (1ull << (b % 64))))
				continue;
			if (nrun && run + nrun == p) {
				nrun++;
				continue;
			}
			if (nrun)
				fn(ctx, run, nrun);
			run = p;
			nrun = 1;
		}
	}
	if (nrun)
		fn(ctx, run, nrun);
}

static struct lease_group *group_find(const struct umap *m, uint64_t key)
{
	return umap_get_ptr(m, key);
}

/* Takes @n off its group's list; frees the group when it empties. Called
 * with t->lock held. */
static void group_leave(struct umap *m, uint64_t key, struct lease_node *n, int w, uint64_t bytes)
{
	struct umap_ent *e = umap_find(m, key);
	if (!e)
		lease_bug("lease missing from its holder or open file");
	struct lease_group *g = (void *)(uintptr_t)e->val;
	chain_del(&g->list, n, w);
	g->bytes -= bytes;
	if (--g->n == 0 && !(w == LL_HOLDER && key == LEASE_HOLDER_NONE)) {
		umap_del(m, e);
		free(g);
	}
}

/* Takes @n's blocks off its user's count. Called with t->lock held. */
static void user_leave(struct lease_table *t, const struct lease_node *n)
{
	struct umap_ent *e = umap_find(&t->by_user, n->l.uid);
	if (!e)
		lease_bug("lease missing from its user's count");
	struct user_acct *u = (void *)(uintptr_t)e->val;
	u->bytes -= node_bytes(n);
	if (--u->n == 0) {
		umap_del(&t->by_user, e);
		free(u);
	}
}

/* Unlinks @n from every index and unpins its blocks, marking those that
 * reached 0. Called with t->lock held; @n is the caller's afterwards. */
static void node_detach(struct lease_table *t, struct lease_node *n)
{
	struct umap_ent *e;

	ASSERT_LOCKED(t);
	e = umap_find(&t->by_id, n->l.id);
	if (!e)
		lease_bug("lease missing from the id index");
	umap_del(&t->by_id, e);

	e = umap_find(&t->by_ino, n->l.ino);
	if (!e)
		lease_bug("lease's file missing from the file index");
	struct lease_ino *li = (void *)(uintptr_t)e->val;
	li->root = tree_remove(li->root, n);
	chain_del(&li->list, n, LL_INO);
	if (--li->n == 0) {
		umap_del(&t->by_ino, e);
		free(li);
	}

	group_leave(&t->by_holder, n->l.holder, n, LL_HOLDER, node_bytes(n));
	user_leave(t, n);
	if (n->l.flags & PINFS_PIN_ON_CLOSE)
		group_leave(&t->by_fh, n->l.fh, n, LL_FH, 0);
	chain_del(&t->all, n, LL_ALL);
	t->nleases--;
	t->gen++;

	node_unpin_blocks(t, n, n->l.nblocks, true);
}

/* Reports and frees a list of detached nodes. Must not hold t->lock. */
static void dead_release(struct lease_node *dead, lease_unpinned_fn fn, void *ctx)
{
	while (dead) {
		struct lease_node *next = dead->dead;
		if (fn)
			node_report(dead, fn, ctx);
		free(dead);
		dead = next;
	}
}

/* ---- public interface ----------------------------------------------------- */

int lease_table_new(struct lease_table **out)
{
	struct lease_table *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	int rc = pthread_mutex_init(&t->lock, NULL);
	if (rc) {
		free(t);
		return -rc;
	}
	t->next_id = 1;
	/* the orphans' group always exists, so lease_orphan cannot fail */
	struct lease_group *none = calloc(1, sizeof(*none));
	if (!none || umap_reserve(&t->by_holder, 1)) {
		free(none);
		pthread_mutex_destroy(&t->lock);
		free(t);
		return -ENOMEM;
	}
	none->key = LEASE_HOLDER_NONE;
	umap_insert(&t->by_holder, LEASE_HOLDER_NONE, (uint64_t)(uintptr_t)none);
	*out = t;
	return 0;
}

static void free_groups(struct umap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		if (m->e[i].val)
			free((void *)(uintptr_t)m->e[i].val);
	umap_free(m);
}

void lease_table_delete(struct lease_table **tp)
{
	struct lease_table *t = *tp;
	if (!t)
		return;
	for (struct lease_node *n = t->all.head, *next; n; n = next) {
		next = n->link[LL_ALL].next;
		free(n);
	}
	free_groups(&t->by_ino);
	free_groups(&t->by_holder);
	free_groups(&t->by_fh);
	free_groups(&t->by_user);
	umap_free(&t->by_id);
	for (size_t i = 0; i < t->chunks.cap; i++)
		free((void *)(uintptr_t)t->chunks.e[i].val);
	umap_free(&t->chunks);
	pthread_mutex_destroy(&t->lock);
	free(t);
	*tp = NULL;
}

void lease_table_set_limits(struct lease_table *t, uint64_t max_leases_per_holder,
			    uint64_t max_bytes_per_holder)
{
	table_lock(t);
	t->max_leases = max_leases_per_holder;
	t->max_bytes = max_bytes_per_holder;
	table_unlock(t);
}

void lease_table_set_user_limits(struct lease_table *t, uint64_t max_leases_per_user,
				 uint64_t max_bytes_per_user)
{
	table_lock(t);
	t->max_user_leases = max_leases_per_user;
	t->max_user_bytes = max_bytes_per_user;
	table_unlock(t);
}

/* Would @holder / @uid go over a limit with one more lease of @bytes?
 * Called with t->lock held. */
static bool over_limits(struct lease_table *t, uint32_t holder, uint32_t uid, uint64_t bytes)
{
	const struct lease_group *hg = group_find(&t->by_holder, holder);
	const struct user_acct *u = umap_get_ptr(&t->by_user, uid);

	if (t->max_leases && hg && hg->n >= t->max_leases)
		return true;
	if (t->max_bytes && (bytes > t->max_bytes || (hg && hg->bytes > t->max_bytes - bytes)))
		return true;
	if (t->max_user_leases && u && u->n >= t->max_user_leases)
		return true;
	if (t->max_user_bytes &&
	    (bytes > t->max_user_bytes || (u && u->bytes > t->max_user_bytes - bytes)))
		return true;
	return false;
}

int lease_check_limits(struct lease_table *t, uint32_t holder, uint32_t uid, uint64_t nblocks)
{
	bool over;

	if (nblocks > (UINT64_MAX >> PM_BLOCK_SHIFT))
		return -ENOMEM;
	table_lock(t);
	over = over_limits(t, holder, uid, nblocks << PM_BLOCK_SHIFT);
	table_unlock(t);
	return over ? -ENOMEM : 0;
}

/* The segments tile [first, first + n) in order, and no pool run wraps. */
static bool segs_valid(uint64_t first, uint64_t n, const uint64_t *seg_fblk,
		       const uint64_t *seg_pblk, const uint64_t *seg_len, uint64_t nseg)
{
	uint64_t at = first;

	if (!nseg || !seg_fblk || !seg_pblk || !seg_len)
		return false;
	for (uint64_t i = 0; i < nseg; i++) {
		if (seg_fblk[i] != at || !seg_len[i] || seg_len[i] > first + n - at ||
		    seg_pblk[i] > UINT64_MAX - seg_len[i])
			return false;
		at += seg_len[i];
	}
	return at == first + n;
}

int lease_add(struct lease_table *t, uint64_t ino, uint64_t first, uint64_t n, uint32_t holder,
	      uint32_t flags, uint64_t fh, const uint64_t *seg_fblk, const uint64_t *seg_pblk,
	      const uint64_t *seg_len, uint64_t nseg, uint64_t *id)
{
	return lease_add_gen(t, ino, first, n, holder, 0, 0, flags, fh, seg_fblk, seg_pblk, seg_len,
			     nseg, id);
}

int lease_add_gen(struct lease_table *t, uint64_t ino, uint64_t first, uint64_t n,
		  uint32_t holder, uint64_t holder_gen, uint32_t uid, uint32_t flags, uint64_t fh,
		  const uint64_t *seg_fblk, const uint64_t *seg_pblk, const uint64_t *seg_len,
		  uint64_t nseg, uint64_t *id)
{
	struct lease_ino *li, *new_li = NULL;
	struct lease_group *hg, *fg = NULL, *new_hg = NULL, *new_fg = NULL;
	struct user_acct *ua, *new_ua = NULL;
	struct lease_node *node;
	struct timespec ts;
	uint64_t bytes;
	int rc;

	if (!ino || !n || holder == LEASE_HOLDER_NONE || first > UINT64_MAX - n || n > (UINT64_MAX >> PM_BLOCK_SHIFT) ||
	    (flags & ~(PINFS_PIN_FLAGS | PINFS_PIN_NOTIFY_FLAGS | PINFS_PIN_SHORT | PINFS_PIN_LAYOUT)) || !segs_valid(first, n, seg_fblk, seg_pblk, seg_len, nseg))
		return -EINVAL;

	/* One allocation: node, three segment arrays, the zero bitmap. nseg <= n. */
	uint64_t words = n / 64 + 1;
	if (n > (SIZE_MAX - sizeof(struct lease_node)) / 32)
		return -ENOMEM;
	node = calloc(1, sizeof(*node) + (3 * nseg + words) * sizeof(uint64_t));
	if (!node)
		return -ENOMEM;
	uint64_t *arr = (uint64_t *)(node + 1);
	node->l.ino = ino;
	node->l.first = first;
	node->l.nblocks = n;
	node->l.holder = holder;
	node->l.holder_gen = holder_gen;
	node->l.uid = uid;
	node->l.flags = flags;
	node->l.state = PINFS_LEASE_ACTIVE;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	node->l.start_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	node->l.fh = fh;
	node->l.nseg = nseg;
	node->l.seg_fblk = arr;
	node->l.seg_pblk = arr + nseg;
	node->l.seg_len = arr + 2 * nseg;
	node->zero = arr + 3 * nseg;
	memcpy(node->l.seg_fblk, seg_fblk, nseg * sizeof(uint64_t));
	memcpy(node->l.seg_pblk, seg_pblk, nseg * sizeof(uint64_t));
	memcpy(node->l.seg_len, seg_len, nseg * sizeof(uint64_t));

	table_lock(t);
	hg = group_find(&t->by_holder, holder);
	bytes = node_bytes(node);
	if (over_limits(t, holder, uid, bytes)) {
		rc = -ENOMEM;
		goto fail;
	}

	/* Everything that can fail comes first, so a failure changes nothing. */
	rc = umap_reserve(&t->by_id, t->by_id.used + 1);
	if (rc)
		goto fail;
	li = umap_get_ptr(&t->by_ino, ino);
	if (!li) {
		new_li = calloc(1, sizeof(*new_li));
		rc = new_li ? umap_reserve(&t->by_ino, t->by_ino.used + 1) : -ENOMEM;
		if (rc)
			goto fail;
	}
	if (!hg) {
		new_hg = calloc(1, sizeof(*new_hg));
		rc = new_hg ? umap_reserve(&t->by_holder, t->by_holder.used + 1) : -ENOMEM;
		if (rc)
			goto fail;
	}
	ua = umap_get_ptr(&t->by_user, uid);
	if (!ua) {
		new_ua = calloc(1, sizeof(*new_ua));
		rc = new_ua ? umap_reserve(&t->by_user, t->by_user.used + 1) : -ENOMEM;
		if (rc)
			goto fail;
	}
	if (flags & PINFS_PIN_ON_CLOSE) {
		fg = group_find(&t->by_fh, fh);
		if (!fg) {
			new_fg = calloc(1, sizeof(*new_fg));
			rc = new_fg ? umap_reserve(&t->by_fh, t->by_fh.used + 1) : -ENOMEM;
			if (rc)
				goto fail;
		}
	}
	rc = node_pin_blocks(t, node);
	if (rc)
		goto fail;

	/* From here on nothing fails. */
	node->l.id = t->next_id++;
	umap_insert(&t->by_id, node->l.id, (uintptr_t)node);
	if (new_li) {
		li = new_li;
		li->ino = ino;
		umap_insert(&t->by_ino, ino, (uintptr_t)li);
	}
	li->root = tree_insert(li->root, node);
	chain_append(&li->list, node, LL_INO);
	li->n++;
	if (new_hg) {
		hg = new_hg;
		hg->key = holder;
		umap_insert(&t->by_holder, holder, (uintptr_t)hg);
	}
	chain_append(&hg->list, node, LL_HOLDER);
	hg->n++;
	hg->bytes += bytes;
	if (new_ua) {
		ua = new_ua;
		umap_insert(&t->by_user, uid, (uintptr_t)ua);
	}
	ua->n++;
	ua->bytes += bytes;
	if (new_fg) {
		fg = new_fg;
		fg->key = fh;
		umap_insert(&t->by_fh, fh, (uintptr_t)fg);
	}
	if (fg) {
		chain_append(&fg->list, node, LL_FH);
		fg->n++;
	}
	chain_append(&t->all, node, LL_ALL);
	t->nleases++;
	t->gen++;
	*id = node->l.id;
	table_unlock(t);
	return 0;

fail:
	table_unlock(t);
	free(new_li);
	free(new_hg);
	free(new_ua);
	free(new_fg);
	free(node);
	return rc;
}

int lease_remove(struct lease_table *t, uint64_t id, lease_unpinned_fn fn, void *ctx)
{
	table_lock(t);
	struct lease_node *n = umap_get_ptr(&t->by_id, id);
	if (!n) {
		table_unlock(t);
		return -ENOENT;
	}
	node_detach(t, n);
	table_unlock(t);
	n->dead = NULL;
	dead_release(n, fn, ctx);
	return 0;
}

/* Detaches every lease of group @key in @m (list @w). Called with t->lock
 * held; returns the detached nodes, in id order, through *dead. */
/* Detaches the leases of group @key (only those of holder generation @gen
 * unless it is 0) onto the *dead chain; returns how many. */
static int detach_group(struct lease_table *t, struct umap *m, uint64_t key, int w,
			uint64_t gen, struct lease_node **dead)
{
	struct lease_group *g = group_find(m, key);
	struct lease_node **tail = dead;
	int count = 0;

	*dead = NULL;
	if (!g)
		return 0;
	/* The group is freed with its last lease: read next before detaching. */
	for (struct lease_node *n = g->list.head, *next; n; n = next) {
		next = n->link[w].next;
		if (gen && n->l.holder_gen != gen)
			continue;
		node_detach(t, n);
		n->dead = NULL;
		*tail = n;
		tail = &n->dead;
		count++;
	}
	return count;
}

int lease_remove_holder(struct lease_table *t, uint32_t holder, lease_unpinned_fn fn, void *ctx)
{
	struct lease_node *dead;

	table_lock(t);
	int count = detach_group(t, &t->by_holder, holder, LL_HOLDER, 0, &dead);
	table_unlock(t);
	dead_release(dead, fn, ctx);
	return count;
}

int lease_remove_holder_gen(struct lease_table *t, uint32_t holder, uint64_t gen,
			    lease_unpinned_fn fn, void *ctx)
{
	struct lease_node *dead;

	table_lock(t);
	int count = detach_group(t, &t->by_holder, holder, LL_HOLDER, gen, &dead);
	table_unlock(t);
	dead_release(dead, fn, ctx);
	return count;
}

uint64_t lease_forget_ino(struct lease_table *t, uint64_t ino)
{
	uint64_t n = 0;

	table_lock(t);
	struct umap_ent *e = umap_find(&t->by_ino, ino);
	if (e && !(ino & LEASE_INO_GONE)) {
		struct lease_ino *li = (void *)(uintptr_t)e->val;
		uint64_t key = LEASE_INO_GONE | ++t->gone_seq;
		umap_del(&t->by_ino, e); /* room for the insert below */
		li->ino = key;
		for (struct lease_node *x = li->list.head; x; x = x->link[LL_INO].next)
			x->l.ino = key;
		umap_insert(&t->by_ino, key, (uint64_t)(uintptr_t)li);
		n = li->n;
		t->gen++;
	}
	table_unlock(t);
	return n;
}

int lease_remove_fh(struct lease_table *t, uint64_t fh, lease_unpinned_fn fn, void *ctx)
{
	struct lease_node *dead;

	table_lock(t);
	int count = detach_group(t, &t->by_fh, fh, LL_FH, 0, &dead);
	table_unlock(t);
	dead_release(dead, fn, ctx);
	return count;
}

int lease_mark_ended(struct lease_table *t, uint64_t id)
{
	table_lock(t);
	struct lease_node *n = umap_get_ptr(&t->by_id, id);
	if (!n || (n->l.flags & LEASE_ENDED)) {
		table_unlock(t);
		return n ? -EALREADY : -ENOENT;
	}
	if (n->l.flags & PINFS_PIN_ON_CLOSE)
		group_leave(&t->by_fh, n->l.fh, n, LL_FH, 0);
	n->l.flags = (n->l.flags & ~PINFS_PIN_ON_CLOSE) | LEASE_ENDED;
	n->l.state = PINFS_LEASE_REVOKED;
	t->gen++;
	table_unlock(t);
	return 0;
}

int lease_orphan(struct lease_table *t, uint64_t id)
{
	table_lock(t);
	struct lease_node *n = umap_get_ptr(&t->by_id, id);
	if (!n || n->l.holder == LEASE_HOLDER_NONE) {
		table_unlock(t);
		return n ? -EALREADY : -ENOENT;
	}
	{
		struct lease_group *none = group_find(&t->by_holder, LEASE_HOLDER_NONE);
		group_leave(&t->by_holder, n->l.holder, n, LL_HOLDER, node_bytes(n));
		if (n->l.flags & PINFS_PIN_ON_CLOSE)
			group_leave(&t->by_fh, n->l.fh, n, LL_FH, 0);
		n->l.flags = (n->l.flags & ~PINFS_PIN_ON_CLOSE) | LEASE_ENDED;
		n->l.holder = LEASE_HOLDER_NONE;
		n->l.holder_gen = 0;
		n->l.state = PINFS_LEASE_REVOKED;
		/* the list is in id order: insert in place */
		struct lease_node *at = none->list.tail;
		while (at && at->l.id > n->l.id)
			at = at->link[LL_HOLDER].prev;
		struct lease_link *k = &n->link[LL_HOLDER];
		k->prev = at;
		k->next = at ? at->link[LL_HOLDER].next : none->list.head;
		if (k->next)
			k->next->link[LL_HOLDER].prev = n;
		else
			none->list.tail = n;
		if (at)
			at->link[LL_HOLDER].next = n;
		else
			none->list.head = n;
		none->n++;
		none->bytes += node_bytes(n);
		t->gen++;
	}
	table_unlock(t);
	return 0;
}

size_t lease_list_holder(struct lease_table *t, uint32_t holder, size_t first,
			 struct lease *out, size_t max)
{
	size_t total, idx = 0, k = 0;

	table_lock(t);
	struct lease_group *g = group_find(&t->by_holder, holder);
	total = g ? g->n : 0;
	for (struct lease_node *n = g ? g->list.head : NULL; n && k < max;
	     n = n->link[LL_HOLDER].next, idx++)
		if (idx >= first)
			snapshot(&out[k++], n);
	table_unlock(t);
	return total;
}

size_t lease_list_user(struct lease_table *t, uint32_t uid, size_t first, struct lease *out,
		       size_t max)
{
	size_t total = 0, k = 0;

	table_lock(t);
	for (struct lease_node *n = t->all.head; n; n = n->link[LL_ALL].next) {
		if (n->l.uid != uid)
			continue;
		if (total >= first && k < max)
			snapshot(&out[k++], n);
		total++;
	}
	table_unlock(t);
	return total;
}

void lease_user_counts(struct lease_table *t, uint32_t uid, uint64_t *nleases, uint64_t *nbytes)
{
	table_lock(t);
	const struct user_acct *u = umap_get_ptr(&t->by_user, uid);
	if (nleases)
		*nleases = u ? u->n : 0;
	if (nbytes)
		*nbytes = u ? u->bytes : 0;
	table_unlock(t);
}

int lease_end_fh(struct lease_table *t, uint64_t fh)
{
	int count = 0;

	table_lock(t);
	struct lease_group *g = group_find(&t->by_fh, fh);
	/* The group is freed with its last member: read next first. */
	for (struct lease_node *n = g ? g->list.head : NULL, *next; n; n = next) {
		next = n->link[LL_FH].next;
		group_leave(&t->by_fh, fh, n, LL_FH, 0);
		n->l.flags &= ~PINFS_PIN_ON_CLOSE;
		n->l.state = PINFS_LEASE_REVOKED;
		count++;
	}
	if (count)
		t->gen++;
	table_unlock(t);
	return count;
}

bool lease_block_pinned(struct lease_table *t, uint64_t pblk)
{
	table_lock(t);
	const struct chunk *c = chunk_of(t, pblk);
	unsigned bit = (unsigned)(pblk & (CHUNK_BLOCKS - 1));
	bool pinned = c && (c->bits[bit / 64] >> (bit % 64) & 1);
	table_unlock(t);
	return pinned;
}

uint64_t lease_pinned_span(struct lease_table *t, uint64_t pblk, uint64_t n, bool *pinned)
{
	uint64_t b = pblk, end = pblk + n;
	bool want = false;

	table_lock(t);
	while (b < end) {
		const struct chunk *c = chunk_of(t, b);
		uint64_t cend = ((b >> CHUNK_SHIFT) + 1) << CHUNK_SHIFT;

		if (cend > end)
			cend = end;
		while (b < cend) {
			unsigned bit = (unsigned)(b & (CHUNK_BLOCKS - 1));
			uint64_t w = c ? c->bits[bit / 64] >> (bit % 64) : 0;
			unsigned k = 64 - bit % 64, same;

			if (b == pblk)
				want = w & 1;
			if (!want)
				w = ~w;
			/* the bits from b that equal want: trailing ones of w
			 * (past this word's k bits they may be anything) */
			same = w == ~0ull ? 64 : (unsigned)__builtin_ctzll(~w);
			if (same < k) {
				b += same;
				goto out;
			}
			b += k;
		}
		b = cend;
	}
out:
	table_unlock(t);
	*pinned = want;
	return (b < end ? b : end) - pblk;
}

size_t lease_find_overlap(struct lease_table *t, uint64_t ino, uint64_t first, uint64_t n,
			  struct lease *out, size_t max)
{
	struct overlap_query q = {
		.qf = first,
		.qe = first > UINT64_MAX - n ? UINT64_MAX : first + n,
		.out = out,
		.max = max,
	};

	if (!n)
		return 0;
	table_lock(t);
	struct lease_ino *li = umap_get_ptr(&t->by_ino, ino);
	if (li && tree_maxend(li->root) > q.qf)
		tree_overlap(li->root, &q);
	table_unlock(t);
	return q.total;
}

int lease_get(struct lease_table *t, uint64_t id, struct lease *out)
{
	table_lock(t);
	struct lease_node *n = umap_get_ptr(&t->by_id, id);
	if (n)
		snapshot(out, n);
	table_unlock(t);
	return n ? 0 : -ENOENT;
}

int lease_set_state(struct lease_table *t, uint64_t id, uint32_t state)
{
	if (state != PINFS_LEASE_ACTIVE && state != PINFS_LEASE_BREAKING &&
	    state != PINFS_LEASE_REVOKED)
		return -EINVAL;
	table_lock(t);
	struct lease_node *n = umap_get_ptr(&t->by_id, id);
	if (n)
		n->l.state = state;
	table_unlock(t);
	return n ? 0 : -ENOENT;
}

int lease_set_notify(struct lease_table *t, uint64_t id, uint32_t sig, uint64_t cookie)
{
	table_lock(t);
	struct lease_node *n = umap_get_ptr(&t->by_id, id);
	if (n) {
		n->l.notify_sig = sig;
		n->l.cookie = cookie;
	}
	table_unlock(t);
	return n ? 0 : -ENOENT;
}

size_t lease_list(struct lease_table *t, uint64_t ino, size_t first, struct lease *out, size_t max)
{
	struct lease_node *n;
	size_t total, idx = 0, k = 0;
	int w;

	table_lock(t);
	if (!ino) {
		total = t->nleases;
		n = t->all.head;
		w = LL_ALL;
	} else {
		struct lease_ino *li = umap_get_ptr(&t->by_ino, ino);
		total = li ? li->n : 0;
		n = li ? li->list.head : NULL;
		w = LL_INO;
	}
	if (first >= total)
		goto out;
	/* Paging forward (pinfsctl reads PINFS_LIST_MAX at a time) resumes
	 * where the previous call stopped instead of walking from the head. */
	if (t->cursor.node && t->cursor.gen == t->gen && t->cursor.ino == ino &&
	    t->cursor.idx <= first) {
		n = t->cursor.node;
		idx = t->cursor.idx;
	}
	for (; idx < first; idx++)
		n = n->link[w].next;
	for (; n && k < max; k++, n = n->link[w].next)
		snapshot(&out[k], n);
	t->cursor.gen = t->gen;
	t->cursor.ino = ino;
	t->cursor.idx = first + k;
	t->cursor.node = n;
out:
	table_unlock(t);
	return total;
}

long lease_segments(struct lease_table *t, uint64_t id, size_t first, uint64_t *fblk,
		    uint64_t *pblk, uint64_t *len, size_t max)
{
	table_lock(t);
	struct lease_node *n = umap_get_ptr(&t->by_id, id);
	if (!n) {
		table_unlock(t);
		return -ENOENT;
	}
	long total = (long)n->l.nseg;
	for (size_t i = 0; first + i < n->l.nseg && i < max; i++) {
		if (fblk)
			fblk[i] = n->l.seg_fblk[first + i];
		if (pblk)
			pblk[i] = n->l.seg_pblk[first + i];
		if (len)
			len[i] = n->l.seg_len[first + i];
	}
	table_unlock(t);
	return total;
}

void lease_table_counts(struct lease_table *t, uint64_t *nleases, uint64_t *npinned_blocks)
{
	table_lock(t);
	if (nleases)
		*nleases = t->nleases;
	if (npinned_blocks)
		*npinned_blocks = t->npinned;
	table_unlock(t);
}

uint64_t lease_count_ino(struct lease_table *t, uint64_t ino)
{
	table_lock(t);
	struct lease_ino *li = umap_get_ptr(&t->by_ino, ino);
	uint64_t n = li ? li->n : 0;
	table_unlock(t);
	return n;
}

void lease_holder_counts(struct lease_table *t, uint32_t holder, uint64_t *nleases,
			 uint64_t *nbytes)
{
	table_lock(t);
	struct lease_group *g = group_find(&t->by_holder, holder);
	if (nleases)
		*nleases = g ? g->n : 0;
	if (nbytes)
		*nbytes = g ? g->bytes : 0;
	table_unlock(t);
}

size_t lease_holders(struct lease_table *t, uint32_t *out, size_t max)
{
	size_t k = 0;

	table_lock(t);
	size_t total = t->by_holder.used - 1; /* the orphans' group is no holder */
	for (size_t i = 0; i < t->by_holder.cap && k < max; i++)
		if (t->by_holder.e[i].val && t->by_holder.e[i].key != LEASE_HOLDER_NONE)
			out[k++] = (uint32_t)t->by_holder.e[i].key;
	table_unlock(t);
	return total;
}

/* ---- self-check (tests) ---------------------------------------------------- */

#define CHECK_FAIL(...)                                                       \
	do {                                                                  \
		fprintf(stderr, "pinfs: pin table check: " __VA_ARGS__);      \
		return -EUCLEAN;                                              \
	} while (0)

/* Checks the subtree at @x: order within (lo, hi) exclusive bounds given as
 * nodes (NULL: none), AVL balance, exact height and max ends, inode. Returns
 * 0 or -EUCLEAN; counts nodes into *count. */
static int check_tree(const struct lease_node *x, const struct lease_node *lo,
		      const struct lease_node *hi, uint64_t ino, uint64_t *count)
{
	if (!x)
		return 0;
	if ((lo && !tree_less(lo, x)) || (hi && !tree_less(x, hi)))
		CHECK_FAIL("lease %" PRIu64 " out of order in its tree\n", x->l.id);
	if (x->l.ino != ino)
		CHECK_FAIL("lease %" PRIu64 " in the tree of another file\n", x->l.id);
	int rc = check_tree(x->left, lo, x, ino, count);
	if (!rc)
		rc = check_tree(x->right, x, hi, ino, count);
	if (rc)
		return rc;
	int hl = tree_height(x->left), hr = tree_height(x->right);
	if (x->height != 1 + (hl > hr ? hl : hr) || hl - hr > 1 || hr - hl > 1)
		CHECK_FAIL("lease %" PRIu64 ": bad height or balance\n", x->l.id);
	if (x->lmax != tree_maxend(x->left) || x->rmax != tree_maxend(x->right))
		CHECK_FAIL("lease %" PRIu64 ": subtree ends %" PRIu64 " %" PRIu64
			   ", should be %" PRIu64 " %" PRIu64 "\n", x->l.id, x->lmax, x->rmax,
			   tree_maxend(x->left), tree_maxend(x->right));
	(*count)++;
	return 0;
}

/* Walks list @w of a chain: ids ascending, back links right, @n long. */
static int check_chain(const struct lease_chain *c, int w, uint64_t n, const char *what)
{
	const struct lease_node *prev = NULL;
	uint64_t k = 0;

	for (const struct lease_node *x = c->head; x; prev = x, x = x->link[w].next, k++) {
		if (x->link[w].prev != prev || (prev && prev->l.id >= x->l.id))
			CHECK_FAIL("%s list broken at lease %" PRIu64 "\n", what, x->l.id);
	}
	if (c->tail != prev || k != n)
		CHECK_FAIL("%s list has %" PRIu64 " leases, should have %" PRIu64 "\n", what, k, n);
	return 0;
}

static int check_locked(struct lease_table *t)
{
	struct umap counts = { 0 };
	uint64_t holders = 0, inos = 0, onclose = 0;
	int rc;

	rc = check_chain(&t->all, LL_ALL, t->nleases, "all");
	if (rc)
		return rc;
	if (t->by_id.used != t->nleases)
		CHECK_FAIL("%zu ids indexed for %" PRIu64 " leases\n", t->by_id.used, t->nleases);
	for (const struct lease_node *x = t->all.head; x; x = x->link[LL_ALL].next) {
		if (umap_get_ptr(&t->by_id, x->l.id) != x || x->l.id >= t->next_id)
			CHECK_FAIL("lease %" PRIu64 " not indexed by id\n", x->l.id);
		onclose += !!(x->l.flags & PINFS_PIN_ON_CLOSE);
	}
	for (size_t i = 0; i < t->by_ino.cap; i++) {
		const struct lease_ino *li = (void *)(uintptr_t)t->by_ino.e[i].val;
		uint64_t n = 0;
		if (!li)
			continue;
		if (li->ino != t->by_ino.e[i].key || !li->n)
			CHECK_FAIL("file %" PRIu64 " badly indexed\n", li->ino);
		rc = check_tree(li->root, NULL, NULL, li->ino, &n);
		if (!rc && n != li->n)
			CHECK_FAIL("file %" PRIu64 ": %" PRIu64 " leases in its tree, %" PRIu64
				   " counted\n", li->ino, n, li->n);
		if (!rc)
			rc = check_chain(&li->list, LL_INO, li->n, "file");
		if (rc)
			return rc;
		inos += li->n;
	}
	for (size_t i = 0; i < t->by_holder.cap; i++) {
		const struct lease_group *g = (void *)(uintptr_t)t->by_holder.e[i].val;
		uint64_t bytes = 0;
		if (!g)
			continue;
		rc = check_chain(&g->list, LL_HOLDER, g->n, "holder");
		if (rc)
			return rc;
		for (const struct lease_node *x = g->list.head; x; x = x->link[LL_HOLDER].next) {
			if (x->l.holder != g->key)
				CHECK_FAIL("lease %" PRIu64 " on another holder's list\n", x->l.id);
			bytes += node_bytes(x);
		}
		if ((!g->n && g->key != LEASE_HOLDER_NONE) || g->key != t->by_holder.e[i].key ||
		    bytes != g->bytes)
			CHECK_FAIL("holder %" PRIu64 " badly counted\n", g->key);
		holders += g->n;
	}
	for (size_t i = 0; i < t->by_fh.cap; i++) {
		const struct lease_group *g = (void *)(uintptr_t)t->by_fh.e[i].val;
		if (!g)
			continue;
		rc = check_chain(&g->list, LL_FH, g->n, "open file");
		if (rc)
			return rc;
		for (const struct lease_node *x = g->list.head; x; x = x->link[LL_FH].next)
			if (x->l.fh != g->key || !(x->l.flags & PINFS_PIN_ON_CLOSE))
				CHECK_FAIL("lease %" PRIu64 " on a wrong open file list\n", x->l.id);
		if (!g->n || g->key != t->by_fh.e[i].key)
			CHECK_FAIL("open file %#" PRIx64 " badly indexed\n", g->key);
		onclose -= g->n;
	}
	if (inos != t->nleases || holders != t->nleases || onclose)
		CHECK_FAIL("file, holder or open file indexes miss leases\n");
	if (!group_find(&t->by_holder, LEASE_HOLDER_NONE))
		CHECK_FAIL("the orphans' group is missing\n");
	uint64_t users = 0;
	for (size_t i = 0; i < t->by_user.cap; i++) {
		const struct user_acct *u = (void *)(uintptr_t)t->by_user.e[i].val;
		uint64_t n = 0, bytes = 0;
		if (!u)
			continue;
		for (const struct lease_node *x = t->all.head; x; x = x->link[LL_ALL].next)
			if (x->l.uid == t->by_user.e[i].key) {
				n++;
				bytes += node_bytes(x);
			}
		if (!n || n != u->n || bytes != u->bytes)
			CHECK_FAIL("user %" PRIu64 " badly counted\n", t->by_user.e[i].key);
		users += n;
	}
	if (users != t->nleases)
		CHECK_FAIL("the user counts miss leases\n");

	/* pin counts: recount every lease's blocks */
	for (const struct lease_node *x = t->all.head; x; x = x->link[LL_ALL].next) {
		for (uint64_t s = 0; s < x->l.nseg; s++) {
			for (uint64_t j = 0; j < x->l.seg_len[s]; j++) {
				uint64_t p = x->l.seg_pblk[s] + j;
				struct umap_ent *e = umap_find(&counts, p);
				if (e) {
					e->val++;
				} else if (umap_reserve(&counts, counts.used + 1)) {
					umap_free(&counts);
					return -ENOMEM;
				} else {
					umap_insert(&counts, p, 1);
				}
			}
		}
	}
	rc = 0;
	if (counts.used != t->npinned) {
		fprintf(stderr, "pinfs: pin table check: %zu blocks pinned, %zu counted\n",
			counts.used, t->npinned);
		rc = -EUCLEAN;
	}
	for (size_t i = 0; !rc && i < counts.cap; i++) {
		const struct chunk *c = chunk_of(t, counts.e[i].key);
		uint64_t have = c ? c->count[counts.e[i].key & (CHUNK_BLOCKS - 1)] : 0;
		if (counts.e[i].val && have != counts.e[i].val) {
			fprintf(stderr, "pinfs: pin table check: block %" PRIu64 " count %" PRIu64
				", should be %" PRIu64 "\n", counts.e[i].key, have,
				counts.e[i].val);
			rc = -EUCLEAN;
		}
	}
	umap_free(&counts);
	/* chunk bitmaps: a bit per pinned block, nothing else */
	size_t bits = 0;
	for (size_t i = 0; !rc && i < t->chunks.cap; i++) {
		const struct chunk *c = (const void *)(uintptr_t)t->chunks.e[i].val;
		unsigned n = 0;
		if (!c)
			continue;
		for (unsigned w = 0; w < CHUNK_BLOCKS / 64; w++)
			n += (unsigned)__builtin_popcountll(c->bits[w]);
		for (unsigned k = 0; k < CHUNK_BLOCKS; k++)
			if (!!c->count[k] != (c->bits[k / 64] >> (k % 64) & 1)) {
				fprintf(stderr, "pinfs: pin table check: chunk %" PRIu64 " block %u: "
					"count %u, bit %u\n", t->chunks.e[i].key, k, c->count[k],
					(unsigned)(c->bits[k / 64] >> (k % 64) & 1));
				rc = -EUCLEAN;
				break;
			}
		if (!n || n != c->npinned) {
			fprintf(stderr, "pinfs: pin table check: chunk %" PRIu64 " has %u bits, "
				"counts %u\n", t->chunks.e[i].key, n, c->npinned);
			rc = -EUCLEAN;
		}
		bits += n;
	}
	if (!rc && bits != t->npinned) {
		fprintf(stderr, "pinfs: pin table check: %zu chunk bits, %zu blocks pinned\n",
			bits, t->npinned);
		rc = -EUCLEAN;
	}
	return rc;
}

int lease_table_check(struct lease_table *t)
{
	table_lock(t);
	int rc = check_locked(t);
	table_unlock(t);
	return rc;
}

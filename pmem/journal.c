/* SPDX-License-Identifier: MIT */
/*
 * pmem/journal.c -- metadata transactions: a redo journal on libpmem
 * flush/drain ordering.
 *
 * The crash-consistency protocol, once:
 *
 *  An operation changes metadata only through shadows: DRAM copies of the
 *  4 KiB blocks it touches (pm_tx_block()). Readers inside the transaction
 *  see the shadows (pm_tx_peek()); the pool itself is untouched until the
 *  transaction commits, so a crash before the commit point leaves the old
 *  state, whatever was stored. New data blocks the transaction will point at
 *  are written in place beforehand (they are free in the pool, nobody reads
 *  them) and registered with pm_tx_order().
 *
 *  Commit (pm_tx_commit), in this order:
 *   1. copy each shadow's changed range into the journal as a record
 *      (offset, length, bytes); flush the records and the ordered data;
 *   2. drain                         -- records and new data durable
 *   3. write the header: magic, sequence, state COMMITTED, record count,
 *      length, CRC32C over header and records; flush; drain
 *                                     -- COMMIT POINT
 *   4. copy the records to their places in the pool; flush; drain
 *   5. set the header's state to EMPTY; flush; drain
 *
 *  Recovery (pm_jreplay, at every mount and in fsck) looks at the header:
 *  COMMITTED with a matching CRC means step 3 completed, so it redoes step 4
 *  (idempotent: the records hold final bytes, and no block the records name
 *  can have been reused since, because nothing else commits while the
 *  journal is not EMPTY) and then step 5. Anything else -- EMPTY, a torn
 *  header, a CRC mismatch from records that never became durable -- means
 *  the transaction did not commit, and the pool still holds the old state.
 *
 *  So every transaction is all or nothing, and durable when commit returns.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pmem/crc32c.h"
#include "pmem/fs_int.h"

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n);

	if (!q) {
		fprintf(stderr, "pinfs: out of memory in a transaction\n");
		abort();
	}
	return q;
}

void pm_tx_begin(struct pm_fs *fs)
{
	struct pm_tx *tx = &fs->tx;

	if (tx->active)
		abort(); /* transactions do not nest */
	tx->active = true;
	tx->nsh = 0;
	tx->nfreed = 0;
	tx->nordered = 0;
	tx->nalloced = 0;
	tx->sb_dirty = false;
	if (tx->hcap)
		memset(tx->hkey, 0, tx->hcap * sizeof(*tx->hkey));
}

static size_t hslot(const struct pm_tx *tx, uint64_t blk)
{
	return (size_t)((blk * 0x9e3779b97f4a7c15ull) >> 20) & (tx->hcap - 1);
}

static struct pm_shadow *tx_find(struct pm_tx *tx, uint64_t blk)
{
	size_t i;

	if (!tx->hcap)
		return NULL;
	for (i = hslot(tx, blk);; i = (i + 1) & (tx->hcap - 1)) {
		if (!tx->hkey[i])
			return NULL;
		if (tx->hkey[i] == blk + 1)
			return &tx->sh[tx->hval[i]];
	}
}

static void tx_hash_insert(struct pm_tx *tx, uint64_t blk, uint32_t idx)
{
	size_t i;

	for (i = hslot(tx, blk); tx->hkey[i]; i = (i + 1) & (tx->hcap - 1))
		;
	tx->hkey[i] = blk + 1;
	tx->hval[i] = idx;
}

static struct pm_shadow *tx_add(struct pm_fs *fs, uint64_t blk)
{
	struct pm_tx *tx = &fs->tx;
	struct pm_shadow *s;

	if (!tx->active)
		abort(); /* metadata changed outside a transaction */
	if (blk == 0 ? false : blk >= fs->pool->sb->nblocks)
		abort();
	if (tx->nsh == tx->capsh) {
		size_t ncap = tx->capsh ? tx->capsh * 2 : 16;
		tx->sh = xrealloc(tx->sh, ncap * sizeof(*tx->sh));
		memset(tx->sh + tx->capsh, 0, (ncap - tx->capsh) * sizeof(*tx->sh));
		tx->capsh = ncap;
	}
	if ((tx->nsh + 1) * 2 > tx->hcap) {
		size_t i, ncap = tx->hcap ? tx->hcap * 2 : 64;
		free(tx->hkey);
		free(tx->hval);
		tx->hkey = calloc(ncap, sizeof(*tx->hkey));
		tx->hval = calloc(ncap, sizeof(*tx->hval));
		if (!tx->hkey || !tx->hval)
			abort();
		tx->hcap = ncap;
		for (i = 0; i < tx->nsh; i++)
			tx_hash_insert(tx, tx->sh[i].blk, (uint32_t)i);
	}
	s = &tx->sh[tx->nsh];
	if (!s->buf) {
		s->buf = aligned_alloc(64, PM_BLOCK_SIZE);
		if (!s->buf)
			abort();
	}
	s->blk = blk;
	s->lo = PM_BLOCK_SIZE;
	s->hi = 0;
	tx_hash_insert(tx, blk, (uint32_t)tx->nsh);
	tx->nsh++;
	return s;
}

uint8_t *pm_tx_block(struct pm_fs *fs, uint64_t blk)
{
	struct pm_shadow *s = tx_find(&fs->tx, blk);

	if (!s) {
		s = tx_add(fs, blk);
		memcpy(s->buf, pm_block_ptr(fs->pool, blk), PM_BLOCK_SIZE);
	}
	return s->buf;
}

uint8_t *pm_tx_block_new(struct pm_fs *fs, uint64_t blk)
{
	struct pm_shadow *s = tx_find(&fs->tx, blk);

	if (!s)
		s = tx_add(fs, blk);
	memset(s->buf, 0, PM_BLOCK_SIZE);
	s->lo = 0;
	s->hi = PM_BLOCK_SIZE;
	return s->buf;
}

void pm_tx_dirty(struct pm_fs *fs, const void *p, size_t len)
{
	struct pm_tx *tx = &fs->tx;
	const uint8_t *b = p;
	size_t i;

	/* the shadow holding p: shadows are separate 4 KiB buffers */
	for (i = tx->nsh; i-- > 0;) {
		struct pm_shadow *s = &tx->sh[i];
		if (b >= s->buf && b + len <= s->buf + PM_BLOCK_SIZE) {
			uint32_t lo = (uint32_t)(b - s->buf), hi = lo + (uint32_t)len;
			if (lo < s->lo)
				s->lo = lo;
			if (hi > s->hi)
				s->hi = hi;
			return;
		}
	}
	abort(); /* not a shadow of this transaction */
}

const uint8_t *pm_tx_peek(struct pm_fs *fs, uint64_t blk)
{
	struct pm_shadow *s = fs->tx.active ? tx_find(&fs->tx, blk) : NULL;

	return s ? s->buf : pm_block_ptr(fs->pool, blk);
}

void pm_tx_order(struct pm_fs *fs, const void *p, size_t len)
{
	struct pm_tx *tx = &fs->tx;

	if (tx->nordered == tx->capordered) {
		tx->capordered = tx->capordered ? tx->capordered * 2 : 16;
		tx->ordered = xrealloc(tx->ordered, tx->capordered * sizeof(*tx->ordered));
	}
	if (tx->nordered && (char *)tx->ordered[tx->nordered - 1].iov_base +
					    tx->ordered[tx->nordered - 1].iov_len ==
				    (const char *)p) {
		tx->ordered[tx->nordered - 1].iov_len += len;
		return;
	}
	tx->ordered[tx->nordered].iov_base = (void *)p;
	tx->ordered[tx->nordered].iov_len = len;
	tx->nordered++;
}

static struct pm_jhdr *jhdr(struct pm_pool *p)
{
	return pm_block_ptr(p, p->sb->journal_start);
}

static uint8_t *jbody(struct pm_pool *p)
{
	return pm_block_ptr(p, p->sb->journal_start + 1);
}

static uint64_t jcap(struct pm_pool *p)
{
	return (p->sb->journal_blocks - 1) << PM_BLOCK_SHIFT;
}

bool pm_tx_room(const struct pm_fs *fs, size_t nblocks)
{
	/* a shadow's record is at most a whole block plus its header */
	const uint64_t per = PM_BLOCK_SIZE + sizeof(struct pm_jrec) + 8;
	uint64_t cap = jcap(fs->pool);

	if (fs->debug & PM_DEBUG_SMALL_TX)
		cap = 24 * per; /* the crash test sees every part */
	return (fs->tx.nsh + nblocks) * per <= cap;
}

static uint32_t jcsum(const struct pm_jhdr *h, const uint8_t *body)
{
	struct pm_jhdr t = *h;

	t.csum = 0;
	return pm_crc32c(pm_crc32c(0, &t, sizeof(t)), body, h->body_len);
}

/* The commit point: a header naming @nrecs records, @len bytes of body,
 * checksummed with the body as it is now, made durable. */
static void jhdr_store(struct pm_fs *fs, uint64_t seq, uint32_t nrecs, uint64_t len)
{
	struct pm_pool *p = fs->pool;
	struct pm_jhdr *h = jhdr(p), nh;

	memset(&nh, 0, sizeof(nh));
	nh.magic = PM_JOURNAL_MAGIC;
	nh.seq = seq;
	nh.state = PM_JSTATE_COMMITTED;
	nh.nrecs = nrecs;
	nh.body_len = len;
	nh.csum = jcsum(&nh, jbody(p));
	memcpy(h, &nh, sizeof(nh));
	pm_flush(&p->ops, h, sizeof(nh));
}

static void jcommit(struct pm_fs *fs, uint32_t nrecs, uint64_t len)
{
	jhdr_store(fs, ++fs->jseq, nrecs, len);
	pm_drain(&fs->pool->ops);
}

/* Recovery planted bugs (PM_REPLAY_DEBUG_*): set only by tests. */
unsigned pm_replay_debug;

/*
 * Planted ordering bugs for scripts/crash-states --self-test (PM_DEBUG_*,
 * set only by tests through pm_fs_set_debug()).
 */
/* the in-place updates stored to their homes before the commit point */
static void tx_debug_apply_early(struct pm_fs *fs)
{
	size_t i;

	for (i = 0; i < fs->tx.nsh; i++) {
		struct pm_shadow *s = &fs->tx.sh[i];
		if (s->hi > s->lo)
			memcpy((uint8_t *)pm_block_ptr(fs->pool, s->blk) + s->lo, s->buf + s->lo,
			       s->hi - s->lo);
	}
}

/* a commit record for the records about to be written, made durable before
 * them, its checksum taken over the body as it is now */
static void tx_debug_commit_first(struct pm_fs *fs)
{
	struct pm_tx *tx = &fs->tx;
	uint64_t len = 0;
	uint32_t nrecs = 0;
	size_t i;

	for (i = 0; i < tx->nsh; i++)
		if (tx->sh[i].hi > tx->sh[i].lo) {
			len += sizeof(struct pm_jrec) +
			       ((tx->sh[i].hi - tx->sh[i].lo + 7u) & ~7u);
			nrecs++;
		}
	if (!nrecs || len > jcap(fs->pool))
		return;
	jcommit(fs, nrecs, len);
}

/* the commit record grown in place, one record at a time, each step
 * flushed; only the last is fenced (jcommit). Each step is a valid commit
 * of a part of the transaction, never at a fence: only a model that keeps
 * every value a line held within an epoch sees it. */
static void tx_debug_commit_grows(struct pm_fs *fs, uint32_t nrecs)
{
	const uint8_t *body = jbody(fs->pool);
	uint64_t pos = 0;
	uint32_t i;

	for (i = 0; i + 1 < nrecs; i++) {
		struct pm_jrec r;
		memcpy(&r, body + pos, sizeof(r));
		pos += sizeof(r) + ((r.len + 7u) & ~7u);
		jhdr_store(fs, fs->jseq + 1, i + 1, pos);
	}
}

void pm_tx_commit(struct pm_fs *fs)
{
	struct pm_tx *tx = &fs->tx;
	struct pm_pool *p = fs->pool;
	const struct pm_persist_ops *ops = &p->ops;
	struct pm_jhdr *h = jhdr(p);
	uint8_t *body = jbody(p);
	uint64_t len = 0, cap = jcap(p);
	uint32_t nrecs = 0;
	size_t i;

	if (tx->sb_dirty) {
		uint8_t *b = pm_tx_block(fs, 0);
		fs->sbc.sb_csum = pm_super_csum(&fs->sbc);
		memcpy(b, &fs->sbc, sizeof(fs->sbc));
		pm_tx_dirty(fs, b, sizeof(fs->sbc));
	}

	/* 0. the journal pages the records take are backed before they are
	 * stored into (mkfs backs only the journal's head: backing.c). A
	 * backing store too full for them cannot fail the commit any more:
	 * the store then faults, and pm_fault_catch() makes the request EIO
	 * and the mount read-only (backing.c). */
	if (fs->back_on) {
		uint64_t need = 0;
		for (i = 0; i < tx->nsh; i++)
			if (tx->sh[i].hi > tx->sh[i].lo)
				need += sizeof(struct pm_jrec) +
					((tx->sh[i].hi - tx->sh[i].lo + 7u) & ~7u);
		if (need && need <= cap)
			pm_back_bytes(fs, (uint64_t)(body - (uint8_t *)p->base), need);
	}

	if (fs->debug & PM_DEBUG_APPLY_EARLY)
		tx_debug_apply_early(fs);
	if (fs->debug & PM_DEBUG_COMMIT_FIRST)
		tx_debug_commit_first(fs);

	/* 1. records */
	for (i = 0; i < tx->nsh; i++) {
		struct pm_shadow *s = &tx->sh[i];
		struct pm_jrec r;
		uint64_t need;

		if (s->hi <= s->lo)
			continue;
		need = sizeof(r) + ((s->hi - s->lo + 7u) & ~7u);
		if (len + need > cap) {
			fprintf(stderr, "pinfs: transaction of more than %llu bytes overflows the journal\n",
				(unsigned long long)cap);
			abort();
		}
		r.off = (s->blk << PM_BLOCK_SHIFT) + s->lo;
		r.len = s->hi - s->lo;
		r.pad = 0;
		memcpy(body + len, &r, sizeof(r));
		memcpy(body + len + sizeof(r), s->buf + s->lo, r.len);
		memset(body + len + sizeof(r) + r.len, 0, need - sizeof(r) - r.len);
		len += need;
		nrecs++;
	}
	if (nrecs) {
		if (!(fs->debug & PM_DEBUG_SKIP_BODY_PERSIST))
			pm_flush(ops, body, len);
		for (i = 0; i < tx->nordered; i++)
			pm_flush(ops, tx->ordered[i].iov_base, tx->ordered[i].iov_len);
		/* 2. */
		pm_drain(ops);

		/* 3. commit point */
		if (fs->debug & PM_DEBUG_COMMIT_GROWS)
			tx_debug_commit_grows(fs, nrecs);
		if (!(fs->debug & PM_DEBUG_COMMIT_FIRST)) /* planted: it was, before */
			jcommit(fs, nrecs, len);

		/* 4. apply */
		for (i = 0; i < tx->nsh; i++) {
			struct pm_shadow *s = &tx->sh[i];
			uint8_t *dst;

			if (s->hi <= s->lo)
				continue;
			dst = (uint8_t *)pm_block_ptr(p, s->blk) + s->lo;
			memcpy(dst, s->buf + s->lo, s->hi - s->lo);
			if (!(fs->debug & PM_DEBUG_SKIP_APPLY_PERSIST))
				pm_flush(ops, dst, s->hi - s->lo);
		}
		if (!(fs->debug & PM_DEBUG_SKIP_APPLY_FENCE))
			pm_drain(ops);

		/* 5. */
		h->state = PM_JSTATE_EMPTY;
		pm_persist(ops, &h->state, sizeof(h->state));
	} else if (tx->nordered) {
		for (i = 0; i < tx->nordered; i++)
			pm_flush(ops, tx->ordered[i].iov_base, tx->ordered[i].iov_len);
		pm_drain(ops);
	}
	tx->active = false;
	pm_release_freed(fs);
}

void pm_tx_abort(struct pm_fs *fs)
{
	struct pm_tx *tx = &fs->tx;
	size_t i;

	for (i = 0; i < tx->nalloced; i++)
		pm_bavail_add(fs, tx->alloced[2 * i], tx->alloced[2 * i + 1]);
	/* the pool's superblock is what the last commit wrote */
	fs->sbc = *fs->pool->sb;
	tx->nsh = tx->nordered = tx->nfreed = tx->nalloced = 0;
	tx->sb_dirty = false;
	tx->active = false;
}

void pm_tx_release(struct pm_tx *tx)
{
	size_t i;

	for (i = 0; i < tx->capsh; i++)
		free(tx->sh[i].buf);
	free(tx->sh);
	free(tx->hkey);
	free(tx->hval);
	free(tx->freed);
	free(tx->ordered);
	free(tx->alloced);
	memset(tx, 0, sizeof(*tx));
}

/*
 * Recovery: see the protocol above. Every record is checked to lie inside
 * the pool and outside the journal before it is applied, so a corrupt
 * journal can make the mount fail but never write out of bounds. The
 * record's offset and length are on-media numbers: the checks are written
 * so that no sum can wrap (pm_range_ok()).
 */
int pm_jreplay(struct pm_pool *pool, uint64_t *seq, char *err, size_t errlen)
{
	struct pm_jhdr *h = jhdr(pool);
	const uint8_t *body = jbody(pool);
	const struct pm_persist_ops *ops = &pool->ops;
	uint64_t cap = jcap(pool), pos = 0;
	uint64_t jlo = pool->sb->journal_start << PM_BLOCK_SHIFT;
	uint64_t jhi = (pool->sb->journal_start + pool->sb->journal_blocks) << PM_BLOCK_SHIFT;
	uint32_t i;

	if (seq)
		*seq = h->magic == PM_JOURNAL_MAGIC ? h->seq : 0;
	if (h->magic != PM_JOURNAL_MAGIC || h->state != PM_JSTATE_COMMITTED)
		return 0;
	if (h->body_len > cap || h->csum != jcsum(h, body)) {
		/* never committed: the records did not all become durable */
		h->state = PM_JSTATE_EMPTY;
		pm_persist(ops, &h->state, sizeof(h->state));
		return 0;
	}
	/* validate everything before applying anything; pos <= body_len + 7
	 * <= cap + 7 and len < 2^32, so pos sums cannot wrap */
	for (i = 0; i < h->nrecs; i++) {
		struct pm_jrec r;
		if (pos + sizeof(r) > h->body_len) {
			pm_errmsg(err, errlen,
				  "journal record %u of %u lies past the journal body (%llu bytes)",
				  i, h->nrecs, (unsigned long long)h->body_len);
			return -EUCLEAN;
		}
		memcpy(&r, body + pos, sizeof(r));
		if (r.len == 0 || pos + sizeof(r) + r.len > h->body_len) {
			pm_errmsg(err, errlen, "journal record %u has a bad length %u", i, r.len);
			return -EUCLEAN;
		}
		if (!pm_range_ok(r.off, r.len, pool->sb->pool_size) ||
		    (r.off < jhi && r.off + r.len > jlo)) {
			pm_errmsg(err, errlen,
				  "journal record %u out of range: offset %llu, length %u, pool %llu bytes",
				  i, (unsigned long long)r.off, r.len,
				  (unsigned long long)pool->sb->pool_size);
			return -EUCLEAN;
		}
		pos += sizeof(r) + ((r.len + 7u) & ~7u);
	}
	if (pm_replay_debug & PM_REPLAY_DEBUG_EMPTY_FIRST) {
		/* planted: "done" before it is done */
		h->state = PM_JSTATE_EMPTY;
		pm_persist(ops, &h->state, sizeof(h->state));
	}
	for (pos = 0, i = 0; i < h->nrecs; i++) {
		struct pm_jrec r;
		memcpy(&r, body + pos, sizeof(r));
		memcpy((uint8_t *)pool->base + r.off, body + pos + sizeof(r), r.len);
		pm_flush(ops, (uint8_t *)pool->base + r.off, r.len);
		pos += sizeof(r) + ((r.len + 7u) & ~7u);
	}
	pm_drain(ops);
	h->state = PM_JSTATE_EMPTY;
	pm_persist(ops, &h->state, sizeof(h->state));
	return 1;
}

int pm_journal_recover(struct pm_pool *pool, char *err, size_t errlen)
{
	return pm_jreplay(pool, NULL, err, errlen);
}

/* SPDX-License-Identifier: MIT */
/*
 * pmem/fs.c -- mounting and unmounting the engine: journal recovery, the
 * orphan list, the clean flag, statfs and syncfs.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include "pmem/fs_int.h"
#include "pmem/fsck.h"

int pm_fs_corrupt(struct pm_fs *fs, const char *fmt, ...)
{
	va_list ap;

	if (fs->nsaid++ < 8) { /* the first few: one bad block can be met often */
		char msg[256];
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		fprintf(stderr, "pinfs: %s: the pool is corrupt%s; run fsck.pinfs --repair after "
				"unmounting\n",
			msg, fs->errors ? "" : ", no more changes are made (EROFS)");
	}
	if (!fs->errors) {
		__atomic_store_n(&fs->errors, true, __ATOMIC_RELAXED);
		fs->sbc.errors |= PM_SB_ERR_CORRUPT;
		pm_super_set_errors(fs->pool, PM_SB_ERR_CORRUPT);
	}
	return -EUCLEAN;
}

bool pm_fs_errors(struct pm_fs *fs)
{
	bool e;

	pthread_mutex_lock(&fs->lock);
	e = fs->errors;
	pthread_mutex_unlock(&fs->lock);
	return e;
}

bool pm_ino_bad(const struct pm_fs *fs, uint64_t ino)
{
	size_t lo = 0, hi = fs->nbad;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (fs->bad[mid] == ino)
			return true;
		if (fs->bad[mid] < ino)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

void pm_fs_set_debug(struct pm_fs *fs, unsigned flags)
{
	fs->debug = flags;
}

unsigned pm_fs_debug(const struct pm_fs *fs)
{
	return fs->debug;
}

const char *pm_unsafe_name(unsigned bit)
{
	switch (bit) {
	case PM_UNSAFE_NO_QUARANTINE:
		return "no_quarantine";
	case PM_UNSAFE_MARK_PINNED_CLEAN:
		return "mark_pinned_clean";
	}
	return NULL;
}

int pm_fs_set_unsafe(struct pm_fs *fs, unsigned flags, char *err, size_t errlen)
{
	if (flags & ~PM_UNSAFE_ALL) {
		pm_errmsg(err, errlen, "unknown unsafe switch 0x%x", flags & ~PM_UNSAFE_ALL);
		return -EINVAL;
	}
	if (flags && !(fs->pool->sb->feat_compat & PM_FEAT_COMPAT_EXPERIMENTAL)) {
		pm_errmsg(err, errlen, "-o unsafe=%s turns off a safety rule and may put data into "
			  "the wrong file or lose it: refused on a pool not made for experiments "
			  "(mkfs.pinfs --experimental)",
			  pm_unsafe_name(flags & PM_UNSAFE_NO_QUARANTINE ? PM_UNSAFE_NO_QUARANTINE
									 : PM_UNSAFE_MARK_PINNED_CLEAN));
		return -EPERM;
	}
	fs->unsafe = flags;
	return 0;
}

unsigned pm_fs_unsafe(const struct pm_fs *fs)
{
	return fs->unsafe;
}

int pm_fs_set_pinned_writeback(struct pm_fs *fs, unsigned mode, char *err, size_t errlen)
{
	if (mode != PM_PINNED_WB_SKIP && mode != PM_PINNED_WB_BOUNCE) {
		pm_errmsg(err, errlen, "unknown pinned writeback mode %u", mode);
		return -EINVAL;
	}
	if (mode == PM_PINNED_WB_BOUNCE && !fs->csum) {
		pm_errmsg(err, errlen, "-o pinned_writeback=bounce keeps checksummed snapshots of "
			  "pinned blocks: the pool keeps no checksums (mkfs.pinfs --checksums)");
		return -EINVAL;
	}
	fs->pinned_wb = mode;
	return 0;
}

void pm_fs_persist_pinholders(struct pm_fs *fs, const struct pm_pinholder *h, unsigned n)
{
	pthread_mutex_lock(&fs->lock);
	if (n > PM_PINHOLDERS_MAX)
		n = PM_PINHOLDERS_MAX;
	if (fs->sbc.npinholders == n && !memcmp(fs->sbc.pinholders, h, n * sizeof(*h))) {
		pthread_mutex_unlock(&fs->lock);
		return; /* nothing changed */
	}
	pm_tx_begin(fs);
	memset(fs->sbc.pinholders, 0, sizeof(fs->sbc.pinholders));
	memcpy(fs->sbc.pinholders, h, n * sizeof(*h));
	fs->sbc.npinholders = n;
	pm_sb_dirty(fs);
	pm_tx_commit(fs);
	pthread_mutex_unlock(&fs->lock);
}

void pm_fs_set_pin_hooks(struct pm_fs *fs, const struct pm_pin_hooks *h)
{
	pthread_mutex_lock(&fs->lock);
	fs->hooks = *h;
	pthread_mutex_unlock(&fs->lock);
}

static int cmp_ino(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Adds to @c[i] the entries of directory @d (if it is one) naming @o[i],
 * for each of the @k sorted inodes of @o. */
static void count_named(struct pm_fs *fs, const struct pm_dinode *d, const uint64_t *o, size_t k,
			uint32_t *c)
{
	uint64_t bi;

	/* pm_dinode_check bounds the size by the pool */
	if (!S_ISDIR(d->mode) || pm_dinode_check(fs, d))
		return;
	for (bi = 0; bi < d->size / PM_BLOCK_SIZE; bi++) {
		uint64_t blk = pm_bmap_get(fs, d, bi, false);
		const uint8_t *b;
		unsigned s = 0;

		if (!blk)
			continue;
		b = pm_block_ptr(fs->pool, blk);
		while (s < PM_DIR_SLOTS) {
			int len = pm_dirent_len(fs, b, s);
			const struct pm_dirent *de = (const void *)(b + s * PM_DIR_SLOT);
			const uint64_t *hit;

			if (len <= 0) {
				s++;
				continue;
			}
			hit = bsearch(&de->ino, o, k, sizeof(*o), cmp_ino);
			if (hit && c[hit - o] < PM_LINK_MAX)
				c[hit - o]++;
			s += (unsigned)len;
		}
	}
}

/*
 * A forced mount: the inodes on the orphan list (sorted, in *@orph, @n of
 * them) and how many directory entries name each (@named). The mount
 * check is what proves that no entry names an orphan; a forced mount has
 * not run it, so it reads every directory, reachable or not, with the
 * engine's own reading of entries (pm_dirent_len). Called with fs->lock
 * held, before the pool is served.
 */
static int orphans_named(struct pm_fs *fs, uint64_t **orph, uint32_t **named, size_t *n)
{
	uint64_t ninodes = fs->pool->sb->ninodes, ino = fs->sbc.orphan_head, steps = 0, lo, next;
	size_t k = 0, cap = 0;
	uint64_t *o = NULL;
	uint32_t *c;

	/* as far as the list is sound: free_orphans() stops at the rest */
	while (ino >= PM_ROOT_INO && ino < ninodes && steps++ < ninodes) {
		const struct pm_dinode *d = pm_dinode_ptr(fs->pool, ino);
		if (!d->mode || !(d->flags & PM_IFL_ORPHAN))
			break;
		if (k == cap) {
			uint64_t *no;
			cap = cap ? cap * 2 : 16;
			no = realloc(o, cap * sizeof(*o));
			if (!no) {
				free(o);
				return -ENOMEM;
			}
			o = no;
		}
		o[k++] = ino;
		ino = d->orphan_next;
	}
	c = calloc(k ? k : 1, sizeof(*c));
	if (!c) {
		free(o);
		return -ENOMEM;
	}
	if (k)
		qsort(o, k, sizeof(*o), cmp_ino);
	/* the slots in holes of the inode table are free: skipped unread */
	for (next = PM_ROOT_INO; k && pm_islots_next(fs->pool, next, ninodes, &lo, &next);)
		for (ino = lo; ino < next; ino++)
			count_named(fs, pm_dinode_ptr(fs->pool, ino), o, k, c);
	*orph = o;
	*named = c;
	*n = k;
	return 0;
}

/*
 * Frees what unlinked-but-open files held when the pool was last used. On
 * a forced mount (@forced) an orphan that a directory entry still names is
 * not freed: freeing it would hand its inode and blocks to the next create
 * while the old name reads them. A file leaves the list with the link
 * count its entries give it (what fsck.pinfs --repair does: the entries
 * win); a directory makes the pool corrupt (read-only), for fsck.
 */
static int free_orphans(struct pm_fs *fs, bool forced)
{
	uint64_t n = 0, *orph = NULL;
	uint32_t *named = NULL;
	size_t norph = 0;
	int rc = 0;

	pthread_mutex_lock(&fs->lock);
	if (forced && fs->sbc.orphan_head)
		rc = orphans_named(fs, &orph, &named, &norph);
	while (!rc && fs->sbc.orphan_head && !fs->errors) {
		struct pm_inode *ip;
		uint64_t ino = fs->sbc.orphan_head;
		const uint64_t *hit;
		uint32_t links = 0;

		rc = pm_iget_locked(fs, ino, &ip);
		if (rc || !(ip->d.flags & PM_IFL_ORPHAN) || ip->d.orphan_prev || ++n > fs->pool->sb->ninodes) {
			/* only a forced mount gets here (fsck reports it): serve
			 * the pool read-only, the orphans stay for fsck */
			pm_fs_corrupt(fs, "the orphan list is corrupt at inode %llu",
				      (unsigned long long)ino);
			if (!rc)
				pm_iput_locked(fs, ip); /* frees nothing now */
			rc = 0;
			break;
		}
		hit = norph ? bsearch(&ino, orph, norph, sizeof(*orph), cmp_ino) : NULL;
		if (hit)
			links = named[hit - orph];
		if (links && !ip->d.nlink && S_ISDIR(ip->d.mode)) {
			pm_fs_corrupt(fs, "directory %llu is on the orphan list, but %u entries name it",
				      (unsigned long long)ino, links);
			pm_iput_locked(fs, ip); /* frees nothing now */
			break;
		}
		if (links && !ip->d.nlink) {
			fprintf(stderr, "pinfs: inode %llu is on the orphan list, but %u directory "
					"entr%s it: kept, with link count %u (run fsck.pinfs)\n",
				(unsigned long long)ino, links, links == 1 ? "y names" : "ies name",
				links);
			ip->d.nlink = links;
		}
		if (ip->d.nlink) {
			/* linked again: only take it off the list */
			pm_tx_begin(fs);
			pm_orphan_del(fs, ip);
			if (fs->errors) { /* its neighbours were not what they say */
				pm_tx_abort(fs);
				pm_iput_locked(fs, ip); /* frees nothing now */
				break;
			}
			pm_inode_write(fs, ip);
			pm_tx_commit(fs);
		}
		pm_iput_locked(fs, ip); /* nlink 0: frees it and unlinks it */
	}
	pthread_mutex_unlock(&fs->lock);
	free(orph);
	free(named);
	return rc;
}

/*
 * The checks before a pool is served (see pm_fs_mount_flags in fs.h):
 * after recovery, the errors flag, then the read-only check of fsck. A
 * pool not cleanly unmounted has just been recovered; the check is what
 * proves it consistent.
 */
static int mount_check(struct pm_pool *pool, char *err, size_t errlen)
{
	const char *path = pool->path[0] ? pool->path : "POOL";
	struct pm_fsck_result res;
	int rc;

	if (pool->sb->errors) {
		pm_errmsg(err, errlen,
			  "the pool is marked corrupt (errors flag 0x%x, set while it was served): "
			  "repair it with 'fsck.pinfs --repair %s', or mount it read-only with -o force",
			  pool->sb->errors, path);
		return -EUCLEAN;
	}
	rc = pm_fsck(pool, false, NULL, &res);
	if (rc) {
		pm_errmsg(err, errlen, "cannot check the pool: %s", strerror(-rc));
		return rc;
	}
	if (res.errors) {
		pm_errmsg(err, errlen,
			  "the pool is corrupt: fsck finds %lu problem%s%s; see them with "
			  "'fsck.pinfs %s', repair with 'fsck.pinfs --repair %s', or mount anyway "
			  "with -o force",
			  res.errors, res.errors == 1 ? "" : "s",
			  pool->sb->clean ? "" : " after recovery (not cleanly unmounted)", path, path);
		return -EUCLEAN;
	}
	return 0;
}

int pm_fs_mount(struct pm_pool *pool, struct pm_fs **out, char *err, size_t errlen)
{
	return pm_fs_mount_flags(pool, 0, out, err, errlen);
}

int pm_fs_mount_flags(struct pm_pool *pool, unsigned flags, struct pm_fs **out, char *err,
		      size_t errlen)
{
	struct pm_fs *fs;
	const struct pm_dinode *root;
	char msg[160];
	uint64_t seq;
	int rc;

	rc = pm_jreplay(pool, &seq, msg, sizeof(msg));
	if (rc < 0) {
		pm_errmsg(err, errlen, "the journal is corrupt (%s): run fsck.pinfs", msg);
		return rc;
	}
	/* the replay may have rewritten the superblock */
	rc = pm_super_check(pool->sb, pool->size, err, errlen);
	if (rc)
		return rc;
	if (!(flags & PM_MOUNT_FORCE)) {
		rc = mount_check(pool, err, errlen);
		if (rc)
			return rc;
	}
	root = pm_dinode_ptr(pool, PM_ROOT_INO);
	if (!S_ISDIR(root->mode) || root->nlink < 2) {
		pm_errmsg(err, errlen, "root inode is not a directory: the pool is corrupt");
		return -EUCLEAN;
	}
	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->pool = pool;
	fs->data_start = pool->sb->data_start;
	fs->nblocks = pool->sb->nblocks;
	fs->jseq = seq;
	fs->sbc = *pool->sb;
	pthread_mutex_init(&fs->lock, NULL);
	pthread_mutex_init(&fs->wblock, NULL);
	pthread_mutex_init(&fs->bounce_lock, NULL);
	pthread_mutex_init(&fs->sv_lock, NULL);
	{
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&fs->sv_cv, &ca); /* zero_now waits on it */
		pthread_cond_init(&fs->wbcv, &ca);
		pthread_condattr_destroy(&ca);
	}
	if (pool->sb->feat_incompat & PM_FEAT_INCOMPAT_CSUM)
		fs->csum = pm_block_ptr(pool, pool->sb->csum_start);
	fs->icap = 1024;
	fs->itab = calloc(fs->icap, sizeof(*fs->itab));
	fs->errors = pool->sb->errors != 0; /* forced: serve it read-only */
	rc = fs->itab ? pm_alloc_init(fs) : -ENOMEM;
	/* the check above has compared the bitmap with every map already;
	 * a forced mount has only the walk to keep files apart */
	if (!rc && (flags & PM_MOUNT_FORCE))
		rc = pm_alloc_check(fs);
	pm_sever_init(fs);
	pm_back_init(fs);
	/* a corrupt pool keeps its orphans: freeing trusts their maps */
	if (!rc && !fs->errors)
		rc = free_orphans(fs, flags & PM_MOUNT_FORCE);
	if (rc) {
		if (rc == -ENOMEM)
			pm_errmsg(err, errlen, "out of memory");
		pm_forget_all(fs);
		pm_tx_release(&fs->tx);
		free(fs->bmap);
		free(fs->bad);
		free(fs->itab);
		free(fs->mback);
		free(fs->zmap);
		free(fs);
		return rc;
	}
	pthread_mutex_lock(&fs->lock);
	pm_tx_begin(fs);
	fs->sbc.clean = 0;
	fs->sbc.mount_count++;
	/* the caller has checked that the last mount's holders are gone */
	fs->sbc.npinholders = 0;
	memset(fs->sbc.pinholders, 0, sizeof(fs->sbc.pinholders));
	pm_sb_dirty(fs);
	pm_tx_commit(fs);
	pthread_mutex_unlock(&fs->lock);
	/* free space leaves the pool file: its memory comes back, and a
	 * kernel pin taken before this mount reaches no block handed out
	 * now. Not on a forced mount: there only fs->bmap (the walk) knows
	 * which free blocks a map still names. */
	if (flags & PM_MOUNT_DENSE)
		fs->dense_why = pm_dense_init(fs);
	if (!fs->errors && !(flags & PM_MOUNT_FORCE))
		pm_sever_free_space(fs);
	*out = fs;
	return 0;
}

/* Blocks in [b, end) free and not backed (dense; fs->lock held). */
static uint64_t unbacked(const struct pm_fs *fs, uint64_t b, uint64_t end)
{
	uint64_t n = 0;

	while (b < end) {
		uint64_t s = pm_zfind(fs, b, end, true);

		b = pm_zfind(fs, s, end, false);
		n += b - s;
	}
	return n;
}

bool pm_fs_dense(struct pm_fs *fs, const char **why, uint64_t *zeroed, uint64_t *pending)
{
	if (why)
		*why = fs->dense_why;
	*zeroed = *pending = 0;
	if (!fs->zmap)
		return false;
	pthread_mutex_lock(&fs->lock);
	*zeroed = pm_zmap_count(fs);
	pthread_mutex_lock(&fs->sv_lock);
	/* freed blocks the severer has still to cut out (it waits for the
	 * pool to idle, then backs them at once) */
	*pending = fs->sv_blocks;
	/* the queue's blocks still free and not backed, and what the
	 * severer will find in the bitmaps from fs->zscan_at on, where a
	 * queued run is counted by the scan alone */
	for (size_t i = 0; i < fs->nzpend; i++) {
		const struct pm_svrun *r = &fs->zpend[i];
		uint64_t end = r->start + r->n;

		if (fs->zrescan && end > fs->zscan_at)
			end = r->start > fs->zscan_at ? r->start : fs->zscan_at;
		*pending += unbacked(fs, r->start, end);
	}
	if (fs->zrescan)
		*pending += unbacked(fs, fs->zscan_at, fs->nblocks);
	pthread_mutex_unlock(&fs->sv_lock);
	pthread_mutex_unlock(&fs->lock);
	return true;
}

int pm_syncfs(struct pm_fs *fs)
{
	struct pm_inode **all;
	size_t i, n = 0;

	pthread_mutex_lock(&fs->lock);
	all = malloc((fs->icount + 1) * sizeof(*all));
	if (!all) {
		pthread_mutex_unlock(&fs->lock);
		return -ENOMEM;
	}
	for (i = 0; i < fs->icap; i++) {
		struct pm_inode *ip;
		for (ip = fs->itab[i]; ip; ip = ip->hnext) {
			ip->refs++;
			all[n++] = ip;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	for (i = 0; i < n; i++) {
		pm_fsync(fs, all[i], false);
		pm_iput(fs, all[i]);
	}
	free(all);
	return 0;
}

void pm_fs_unmount(struct pm_fs **fsp)
{
	struct pm_fs *fs = *fsp;
	size_t i;

	if (!fs)
		return;
	pm_flusher_stop(fs);
	pm_forget_all(fs);
	pm_syncfs(fs);
	pthread_mutex_lock(&fs->lock);
	/* references still held here were leaked by the caller: drop them so
	 * timestamps are written and orphans freed */
	for (i = 0; i < fs->icap; i++) {
		while (fs->itab[i]) {
			struct pm_inode *ip = fs->itab[i];
			ip->nlookup = 0;
			ip->refs = 1;
			pm_iput_locked(fs, ip);
		}
	}
	pm_fault_unmount(fs);
	pm_tx_begin(fs);
	fs->sbc.clean = 1;
	pm_sb_dirty(fs);
	pm_tx_commit(fs);
	pthread_mutex_unlock(&fs->lock);
	pm_tx_release(&fs->tx);
	pthread_mutex_destroy(&fs->lock);
	pthread_mutex_destroy(&fs->wblock);
	pthread_mutex_destroy(&fs->bounce_lock);
	pthread_cond_destroy(&fs->wbcv);
	pthread_mutex_destroy(&fs->sv_lock);
	pthread_cond_destroy(&fs->sv_cv);
	free(fs->sv_pend);
	free(fs->sv_done);
	free(fs->qset);
	free(fs->taint);
	free(fs->unsev);
	free(fs->bmap);
	free(fs->bad);
	free(fs->itab);
	free(fs->mback);
	free(fs->zmap);
	free(fs->zpend);
	free(fs);
	*fsp = NULL;
}

void pm_statfs(struct pm_fs *fs, struct statvfs *st)
{
	const struct pm_super *sb = fs->pool->sb;

	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&fs->lock);
	st->f_bsize = PM_BLOCK_SIZE;
	st->f_frsize = PM_BLOCK_SIZE;
	st->f_blocks = sb->nblocks - sb->data_start;
	/* blocks the severer is cutting out are free: an allocation that
	 * needs them takes them (pm_sever_wait) */
	st->f_bfree = fs->avail + pm_sever_pending(fs);
	/* what a file can really be given: f_bfree less the map nodes those
	 * data blocks need at worst (df's Used stays f_blocks - f_bfree, the
	 * blocks in use; the difference is kept for maps) */
	st->f_bavail = pm_bmap_room(st->f_bfree);
	/* a sparse pool's free blocks are holes of its file (freed ones are
	 * punched: sever.c): what its file system has left is all they can
	 * get (backing.c). So free space is capped by the backing store's. */
	if (fs->back_on) {
		struct statvfs v;
		if (fstatvfs(fs->pool->fd, &v) == 0 && v.f_frsize) {
			uint64_t bfree = (uint64_t)v.f_bfree * v.f_frsize / PM_BLOCK_SIZE;
			uint64_t bavail = pm_bmap_room((uint64_t)v.f_bavail * v.f_frsize /
						       PM_BLOCK_SIZE);
			if (st->f_bfree > bfree)
				st->f_bfree = bfree;
			if (st->f_bavail > bavail)
				st->f_bavail = bavail;
			if (st->f_bavail > st->f_bfree)
				st->f_bavail = st->f_bfree;
		}
	}
	st->f_files = sb->ninodes - 1;
	st->f_ffree = fs->sbc.free_inodes;
	st->f_favail = fs->sbc.free_inodes;
	st->f_namemax = PM_NAME_MAX;
	pthread_mutex_unlock(&fs->lock);
}

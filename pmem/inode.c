/* SPDX-License-Identifier: MIT */
/*
 * pmem/inode.c -- in-core inodes: the cache, references, lookup counts,
 * attributes, the orphan list and freeing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pmem/fs_int.h"

struct pm_dinode *pm_dinode_ptr(struct pm_pool *p, uint64_t ino)
{
	return (struct pm_dinode *)pm_block_ptr(p, p->sb->itable_start + ino / PM_INODES_PER_BLOCK) +
	       ino % PM_INODES_PER_BLOCK;
}

bool pm_islots_next(struct pm_pool *p, uint64_t ino, uint64_t end, uint64_t *lo, uint64_t *hi)
{
	const uint64_t isz = sizeof(struct pm_dinode);
	uint64_t base = p->sb->itable_start << PM_BLOCK_SHIFT, s, e;

	if (end > p->sb->ninodes)
		end = p->sb->ninodes;
	if (ino >= end || !pm_pool_data(p, base + ino * isz, base + end * isz, &s, &e))
		return false;
	*lo = (s - base) / isz;
	*hi = PM_DIV_UP(e - base, isz);
	if (*lo < ino)
		*lo = ino;
	if (*hi > end)
		*hi = end;
	return true;
}

void pm_now(struct pm_time *t)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	t->sec = ts.tv_sec;
	t->nsec = (uint32_t)ts.tv_nsec;
	t->pad = 0;
}

void pm_touch(struct pm_inode *ip, bool m, bool c)
{
	struct pm_time now;

	pm_now(&now);
	if (m)
		ip->d.mtime = now;
	if (c)
		ip->d.ctime = now;
}

void pm_sb_dirty(struct pm_fs *fs)
{
	fs->tx.sb_dirty = true;
}

unsigned pm_dtype(uint32_t mode)
{
	return (mode & S_IFMT) >> 12;
}

void pm_inode_reload(struct pm_fs *fs, struct pm_inode *ip)
{
	memcpy(&ip->d, pm_dinode_ptr(fs->pool, ip->ino), sizeof(ip->d));
}

/* Writes ip->d to its slot. Called in a transaction with fs->lock held. */
void pm_inode_write(struct pm_fs *fs, struct pm_inode *ip)
{
	struct pm_super *sb = fs->pool->sb;
	uint8_t *b = pm_tx_block(fs, sb->itable_start + ip->ino / PM_INODES_PER_BLOCK);
	struct pm_dinode *di = (struct pm_dinode *)b + ip->ino % PM_INODES_PER_BLOCK;

	memcpy(di, &ip->d, sizeof(*di));
	pm_tx_dirty(fs, di, sizeof(*di));
	ip->times_dirty = false;
}

static size_t ibucket(const struct pm_fs *fs, uint64_t ino)
{
	return (size_t)((ino * 0x9e3779b97f4a7c15ull) >> 17) & (fs->icap - 1);
}

struct pm_inode *pm_icache_find(struct pm_fs *fs, uint64_t ino)
{
	struct pm_inode *ip;

	for (ip = fs->itab[ibucket(fs, ino)]; ip; ip = ip->hnext)
		if (ip->ino == ino)
			return ip;
	return NULL;
}

static void icache_grow(struct pm_fs *fs)
{
	size_t ocap = fs->icap, i;
	struct pm_inode **old = fs->itab;
	struct pm_inode **nt = calloc(ocap * 2, sizeof(*nt));

	if (!nt)
		return; /* keep the longer chains */
	fs->itab = nt;
	fs->icap = ocap * 2;
	for (i = 0; i < ocap; i++) {
		struct pm_inode *ip = old[i], *next;
		for (; ip; ip = next) {
			size_t b = ibucket(fs, ip->ino);
			next = ip->hnext;
			ip->hnext = nt[b];
			nt[b] = ip;
		}
	}
	free(old);
}

/* Caches a new in-core inode holding @d, with one reference. Called with
 * fs->lock held; the slot must not be cached. */
int pm_icache_insert(struct pm_fs *fs, uint64_t ino, const struct pm_dinode *d,
		     struct pm_inode **out)
{
	struct pm_inode *ip = calloc(1, sizeof(*ip));
	size_t b;

	if (!ip)
		return -ENOMEM;
	ip->ino = ino;
	ip->refs = 1;
	memcpy(&ip->d, d, sizeof(ip->d));
	ip->ftype = d->mode & S_IFMT;
	pthread_rwlock_init(&ip->rw, NULL);
	pthread_mutex_init(&ip->dlock, NULL);
	if (fs->icount + 1 > fs->icap)
		icache_grow(fs);
	b = ibucket(fs, ino);
	ip->hnext = fs->itab[b];
	fs->itab[b] = ip;
	fs->icount++;
	*out = ip;
	return 0;
}

/*
 * Are the on-media numbers of @di that become addresses, shifts or loop
 * bounds in range? A map root or xattr block outside the data area, a map
 * taller than PM_MAP_MAX_HEIGHT (whose shifts would exceed 64 bits), a root
 * without a height (read as a data block), an orphan link or parent past
 * the inode table, a directory size that is not whole blocks of the pool,
 * or a linked-nowhere inode off the orphan list would send the engine
 * outside the pool, into an endless loop or into another file's blocks;
 * such an inode is refused with -EUCLEAN instead (fsck.pinfs reports each
 * of these).
 */
int pm_dinode_check(const struct pm_fs *fs, const struct pm_dinode *di)
{
	uint64_t ninodes = fs->pool->sb->ninodes;

	switch (di->mode & S_IFMT) {
	case S_IFREG: case S_IFDIR: case S_IFLNK: case S_IFCHR: case S_IFBLK:
	case S_IFIFO: case S_IFSOCK:
		break;
	default:
		return -EUCLEAN;
	}
	if (di->map_height > PM_MAP_MAX_HEIGHT || !di->map_root != !di->map_height)
		return -EUCLEAN;
	if (di->map_root && (di->map_root < fs->data_start || di->map_root >= fs->nblocks))
		return -EUCLEAN;
	if (di->xattr_block &&
	    (di->xattr_block < fs->data_start || di->xattr_block >= fs->nblocks))
		return -EUCLEAN;
	if (di->orphan_next >= ninodes || di->orphan_prev >= ninodes || di->parent >= ninodes)
		return -EUCLEAN;
	if (di->size > (1ull << 50)) /* PM_MAX_FILE_SIZE: block arithmetic stays in range */
		return -EUCLEAN;
	if (S_ISDIR(di->mode) &&
	    (di->size % PM_BLOCK_SIZE || di->size / PM_BLOCK_SIZE > fs->nblocks))
		return -EUCLEAN;
	if (S_ISLNK(di->mode) && (di->size == 0 || di->size > PM_SYMLINK_MAX))
		return -EUCLEAN;
	if (di->nlink == 0 && !(di->flags & PM_IFL_ORPHAN))
		return -EUCLEAN;
	return 0;
}

/* Called with fs->lock held. */
int pm_iget_locked(struct pm_fs *fs, uint64_t ino, struct pm_inode **out)
{
	struct pm_inode *ip;
	const struct pm_dinode *di;
	int rc;

	if (ino < PM_ROOT_INO || ino >= fs->pool->sb->ninodes)
		return -ESTALE;
	ip = pm_icache_find(fs, ino);
	if (ip) {
		ip->refs++;
		*out = ip;
		return 0;
	}
	di = pm_dinode_ptr(fs->pool, ino);
	if (!di->mode)
		return -ESTALE;
	if (pm_ino_bad(fs, ino))
		return -EUCLEAN; /* shares blocks with another inode (pm_alloc_check) */
	rc = pm_dinode_check(fs, di);
	if (rc)
		return pm_fs_corrupt(fs, "inode %llu has fields out of range",
				     (unsigned long long)ino);
	return pm_icache_insert(fs, ino, di, out);
}

int pm_iget(struct pm_fs *fs, uint64_t ino, struct pm_inode **out)
{
	int rc;

	pthread_mutex_lock(&fs->lock);
	rc = pm_iget_locked(fs, ino, out);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

uint64_t pm_ino(const struct pm_inode *ip)
{
	return ip->ino;
}

/*
 * Edits the inode @ino whether or not it is cached: returns where to change
 * it; pass the result to di_done() in the same transaction.
 */
static struct pm_dinode *di_edit(struct pm_fs *fs, uint64_t ino, struct pm_inode **cached)
{
	struct pm_super *sb = fs->pool->sb;
	uint8_t *b;

	*cached = pm_icache_find(fs, ino);
	if (*cached)
		return &(*cached)->d;
	b = pm_tx_block(fs, sb->itable_start + ino / PM_INODES_PER_BLOCK);
	return (struct pm_dinode *)b + ino % PM_INODES_PER_BLOCK;
}

static void di_done(struct pm_fs *fs, struct pm_dinode *di, struct pm_inode *cached)
{
	if (cached)
		pm_inode_write(fs, cached);
	else
		pm_tx_dirty(fs, di, sizeof(*di));
}

/* Puts @ip on the orphan list; in a transaction. The caller writes ip. */
void pm_orphan_add(struct pm_fs *fs, struct pm_inode *ip)
{
	uint64_t head = fs->sbc.orphan_head;

	if (ip->d.flags & PM_IFL_ORPHAN)
		return;
	if (head) {
		struct pm_inode *c;
		struct pm_dinode *h = di_edit(fs, head, &c);
		if (!(h->flags & PM_IFL_ORPHAN) || h->orphan_prev) {
			pm_fs_corrupt(fs, "orphan list head %llu is not an orphan",
				      (unsigned long long)head);
			head = 0; /* start a new list; fsck finds the old one */
		} else {
			h->orphan_prev = ip->ino;
			di_done(fs, h, c);
		}
	}
	ip->d.flags |= PM_IFL_ORPHAN;
	ip->d.orphan_next = head;
	ip->d.orphan_prev = 0;
	fs->sbc.orphan_head = ip->ino;
	pm_sb_dirty(fs);
}

/* Points orphan @nbr, @ip's previous (@prev) or next one, past @ip, if it
 * points back at @ip: never edit another inode on the word of a corrupt
 * link (the pool is marked corrupt instead). */
static void orphan_unlink_nbr(struct pm_fs *fs, const struct pm_inode *ip, uint64_t nbr, bool prev)
{
	struct pm_inode *c;
	struct pm_dinode *o = di_edit(fs, nbr, &c);
	uint64_t *back = prev ? &o->orphan_next : &o->orphan_prev;

	if (*back == ip->ino && (o->flags & PM_IFL_ORPHAN)) {
		*back = prev ? ip->d.orphan_next : ip->d.orphan_prev;
		di_done(fs, o, c);
	} else {
		pm_fs_corrupt(fs, "orphan list: inode %llu does not point back at %llu",
			      (unsigned long long)nbr, (unsigned long long)ip->ino);
	}
}

/* Takes @ip off the orphan list; in a transaction. The caller writes ip. */
void pm_orphan_del(struct pm_fs *fs, struct pm_inode *ip)
{
	if (!(ip->d.flags & PM_IFL_ORPHAN))
		return;
	if (ip->d.orphan_prev) {
		orphan_unlink_nbr(fs, ip, ip->d.orphan_prev, true);
	} else if (fs->sbc.orphan_head == ip->ino) {
		fs->sbc.orphan_head = ip->d.orphan_next;
		pm_sb_dirty(fs);
	} else {
		pm_fs_corrupt(fs, "orphan list: inode %llu is not its head",
			      (unsigned long long)ip->ino);
	}
	if (ip->d.orphan_next)
		orphan_unlink_nbr(fs, ip, ip->d.orphan_next, false);
	ip->d.flags &= ~PM_IFL_ORPHAN;
	ip->d.orphan_next = ip->d.orphan_prev = 0;
}

/* Frees every block of @ip; in a transaction. */
void pm_inode_free_blocks(struct pm_fs *fs, struct pm_inode *ip)
{
	pm_bmap_punch(fs, ip, 0, ~0ull);
	pm_xattr_free(fs, ip);
}

/* Frees the inode slot and everything it holds: one transaction. On a pool
 * found corrupt nothing is freed: the inode stays (an orphan, or a leak),
 * for fsck to judge, since its map may name blocks that are not its own. */
static void inode_destroy(struct pm_fs *fs, struct pm_inode *ip)
{
	if (fs->errors)
		return;
	pm_tx_begin(fs);
	pm_orphan_del(fs, ip);
	if (fs->errors) { /* its orphan-list neighbours were not what they say */
		pm_tx_abort(fs);
		return;
	}
	pm_inode_free_blocks(fs, ip);
	memset(&ip->d, 0, sizeof(ip->d));
	pm_inode_write(fs, ip);
	fs->sbc.free_inodes++;
	pm_sb_dirty(fs);
	pm_tx_commit(fs);
	/* pins on it stay (its pinned blocks are quarantined), but no longer
	 * on this number, which the next create may take */
	if (fs->hooks.ino_gone)
		fs->hooks.ino_gone(fs->hooks.ctx, ip->ino);
}

static void icache_remove(struct pm_fs *fs, struct pm_inode *ip)
{
	struct pm_inode **pp = &fs->itab[ibucket(fs, ip->ino)];

	while (*pp != ip)
		pp = &(*pp)->hnext;
	*pp = ip->hnext;
	fs->icount--;
}

static void inode_free(struct pm_inode *ip)
{
	pm_dir_free(&ip->dir);
	pm_dirty_free(&ip->dirty);
	pthread_rwlock_destroy(&ip->rw);
	pthread_mutex_destroy(&ip->dlock);
	free(ip);
}

void pm_icache_discard(struct pm_fs *fs, struct pm_inode *ip)
{
	icache_remove(fs, ip);
	inode_free(ip);
}

/* Called with fs->lock held and no transaction open. */
void pm_iput_locked(struct pm_fs *fs, struct pm_inode *ip)
{
	if (!ip)
		return;
	if (!ip->refs)
		abort();
	if (--ip->refs)
		return;
	if (ip->shadow) { /* its snapshots go with it (an orphan: freed now) */
		struct pm_inode *sh = ip->shadow;
		ip->shadow = NULL;
		pm_iput_locked(fs, sh);
	}
	if (ip->d.nlink == 0) {
		inode_destroy(fs, ip);
	} else {
		pm_writeback_inode(fs, ip, true, 0);
		if (ip->times_dirty && !fs->errors) {
			pm_tx_begin(fs);
			pm_inode_write(fs, ip);
			pm_tx_commit(fs);
		}
	}
	icache_remove(fs, ip);
	inode_free(ip);
}

void pm_iput(struct pm_fs *fs, struct pm_inode *ip)
{
	if (!ip)
		return;
	pthread_mutex_lock(&fs->lock);
	pm_iput_locked(fs, ip);
	pthread_mutex_unlock(&fs->lock);
}

void pm_lookup_ref(struct pm_fs *fs, struct pm_inode *ip)
{
	pthread_mutex_lock(&fs->lock);
	if (ip->nlookup++ == 0)
		ip->refs++;
	pthread_mutex_unlock(&fs->lock);
}

static void forget_locked(struct pm_fs *fs, struct pm_inode *ip, uint64_t n)
{
	if (!ip || !ip->nlookup)
		return;
	if (n > ip->nlookup)
		n = ip->nlookup;
	ip->nlookup -= n;
	if (!ip->nlookup)
		pm_iput_locked(fs, ip);
}

void pm_forget(struct pm_fs *fs, uint64_t ino, uint64_t n)
{
	pthread_mutex_lock(&fs->lock);
	forget_locked(fs, pm_icache_find(fs, ino), n);
	pthread_mutex_unlock(&fs->lock);
}

void pm_forget_all(struct pm_fs *fs)
{
	size_t i;

	pthread_mutex_lock(&fs->lock);
	for (i = 0; i < fs->icap; i++) {
		struct pm_inode *ip = fs->itab[i];
		while (ip) {
			struct pm_inode *next = ip->hnext;
			if (ip->nlookup) {
				forget_locked(fs, ip, ip->nlookup);
				next = fs->itab[i]; /* the chain may have changed */
			}
			ip = next;
		}
	}
	pthread_mutex_unlock(&fs->lock);
}

void pm_stat(struct pm_fs *fs, struct pm_inode *ip, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&fs->lock);
	st->st_ino = ip->ino;
	st->st_mode = ip->d.mode;
	st->st_nlink = ip->d.nlink;
	st->st_uid = ip->d.uid;
	st->st_gid = ip->d.gid;
	st->st_rdev = ip->d.rdev;
	st->st_size = (off_t)ip->d.size;
	st->st_blksize = PM_BLOCK_SIZE;
	st->st_blocks = (blkcnt_t)(ip->d.blocks * (PM_BLOCK_SIZE / 512));
	st->st_atim.tv_sec = ip->d.atime.sec;
	st->st_atim.tv_nsec = ip->d.atime.nsec;
	st->st_mtim.tv_sec = ip->d.mtime.sec;
	st->st_mtim.tv_nsec = ip->d.mtime.nsec;
	st->st_ctim.tv_sec = ip->d.ctime.sec;
	st->st_ctim.tv_nsec = ip->d.ctime.nsec;
	pthread_mutex_unlock(&fs->lock);
}

uint64_t pm_generation(struct pm_fs *fs, struct pm_inode *ip)
{
	uint64_t g;

	pthread_mutex_lock(&fs->lock);
	g = ip->d.generation;
	pthread_mutex_unlock(&fs->lock);
	return g;
}

bool pm_cred_in_group(const struct pm_cred *cr, gid_t gid)
{
	int i;

	if (cr->gid == gid)
		return true;
	for (i = 0; i < cr->ngroups; i++)
		if (cr->groups[i] == gid)
			return true;
	return false;
}

bool pm_kill_priv_needed(const struct pm_cred *cr, const struct pm_dinode *d)
{
	if (cr->uid == 0 || S_ISDIR(d->mode))
		return false;
	return (d->mode & S_ISUID) || ((d->mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP));
}

void pm_kill_priv(struct pm_dinode *d)
{
	d->mode &= ~(uint32_t)S_ISUID;
	if (d->mode & S_IXGRP)
		d->mode &= ~(uint32_t)S_ISGID;
}

static void set_time(struct pm_time *t, const struct timespec *ts)
{
	t->sec = ts->tv_sec;
	t->nsec = (uint32_t)ts->tv_nsec;
	t->pad = 0;
}

/*
 * Changes attributes, all in one transaction. The kernel has already checked
 * permissions (default_permissions); chown is checked again here because the
 * kernel's view of the caller's groups and ours must agree for the
 * supplementary-group rule, and because other callers (tests) have no kernel.
 */
int pm_setattr(struct pm_fs *fs, const struct pm_cred *cr, struct pm_inode *ip,
	       const struct pm_setattr *sa)
{
	bool size = sa->valid & PM_SET_SIZE;
	uint8_t xb[PM_BLOCK_SIZE];
	struct pm_dinode nd;
	int acl = 0, rc = 0;

	if (size) {
		if (S_ISDIR(ip->ftype))
			return -EISDIR;
		if (!S_ISREG(ip->ftype))
			return -EINVAL;
		pthread_rwlock_wrlock(&ip->rw);
		/* shrinking frees blocks: the pins have their say first, with the
		 * data lock held so no new pin can come in between */
		if (sa->size < ip->d.size && fs->hooks.may_free) {
			uint64_t from = PM_DIV_UP(sa->size, PM_BLOCK_SIZE);
			rc = fs->hooks.may_free(fs->hooks.ctx, ip, from, UINT64_MAX);
			if (rc) {
				pthread_rwlock_unlock(&ip->rw);
				return rc;
			}
		}
	}
	pthread_mutex_lock(&fs->lock);
	rc = pm_fs_writable(fs);
	if (rc)
		goto out;
	nd = ip->d;
	if (sa->valid & (PM_SET_UID | PM_SET_GID)) {
		bool uid_change = (sa->valid & PM_SET_UID) && sa->uid != nd.uid;
		bool gid_change = (sa->valid & PM_SET_GID) && sa->gid != nd.gid;
		if (cr->uid != 0 && (uid_change || (gid_change && (cr->uid != nd.uid ||
								    !pm_cred_in_group(cr, sa->gid))))) {
			rc = -EPERM;
			goto out;
		}
		if (sa->valid & PM_SET_UID)
			nd.uid = sa->uid;
		if (sa->valid & PM_SET_GID)
			nd.gid = sa->gid;
		if (!S_ISDIR(nd.mode))
			pm_kill_priv(&nd);
	}
	if (sa->valid & PM_SET_MODE) {
		nd.mode = (nd.mode & S_IFMT) | (sa->mode & 07777);
		if (cr->uid != 0 && !pm_cred_in_group(cr, nd.gid))
			nd.mode &= ~(uint32_t)S_ISGID;
		/* an access ACL follows the mode (posix_acl_chmod) */
		acl = pm_acl_chmod_prepare(fs, ip, nd.mode, xb);
		if (acl < 0) {
			rc = acl;
			goto out;
		}
	}
	if ((sa->valid & PM_SET_KILL_PRIV) && pm_kill_priv_needed(cr, &nd))
		pm_kill_priv(&nd);
	if ((sa->valid & PM_SET_KILL_SUIDGID) && !S_ISDIR(nd.mode))
		pm_kill_priv(&nd);
	if (sa->valid & PM_SET_ATIME_NOW)
		pm_now(&nd.atime);
	else if (sa->valid & PM_SET_ATIME)
		set_time(&nd.atime, &sa->atime);
	if (sa->valid & PM_SET_MTIME_NOW)
		pm_now(&nd.mtime);
	else if (sa->valid & PM_SET_MTIME)
		set_time(&nd.mtime, &sa->mtime);

	pm_tx_begin(fs);
	ip->d = nd;
	if (acl && (rc = pm_xattr_store(fs, ip, xb))) {
		/* the block exists: only a corrupt pool fails here */
		pm_tx_abort(fs);
		pm_inode_reload(fs, ip);
		goto out;
	}
	if (size && sa->size != ip->d.size) {
		rc = pm_truncate_locked(fs, ip, sa->size);
		if (rc) {
			/* nothing changed in the pool yet */
			pm_tx_abort(fs);
			pm_inode_reload(fs, ip);
			goto out;
		}
		pm_touch(ip, true, false);
	}
	if (sa->valid & PM_SET_CTIME)
		set_time(&ip->d.ctime, &sa->ctime);
	else
		pm_touch(ip, false, true);
	pm_inode_write(fs, ip);
	pm_tx_commit(fs);
out:
	pthread_mutex_unlock(&fs->lock);
	if (size)
		pthread_rwlock_unlock(&ip->rw);
	return rc;
}

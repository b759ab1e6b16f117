/* SPDX-License-Identifier: MIT */
/*
 * pmem/namei.c -- namespace operations: lookup, mknod/mkdir, symlink, link,
 * unlink, rmdir, rename, readlink, readdir. Each change is one transaction;
 * every check that can fail is made before the transaction starts, so a
 * failed operation changes nothing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>

#include "pmem/fs_int.h"

/* Blocks one directory insert may need: a directory block and map nodes. */
#define DIR_ADD_WORST (1 + PM_MAP_MAX_HEIGHT + 2)

static int check_name(const char *name)
{
	size_t len = strlen(name);

	if (len == 0)
		return -EINVAL;
	if (len > PM_NAME_MAX)
		return -ENAMETOOLONG;
	if (strchr(name, '/'))
		return -EINVAL;
	return 0;
}

static bool is_dot(const char *name)
{
	return !strcmp(name, ".") || !strcmp(name, "..");
}

/* The directory must be a live directory. */
static int check_dir(struct pm_inode *dir)
{
	if (!S_ISDIR(dir->d.mode))
		return -ENOTDIR;
	if (dir->d.nlink == 0)
		return -ENOENT;
	return 0;
}

/* The inode a directory entry names; fs->lock held. An entry naming an
 * inode with no links (an orphan, or a freed slot's leftovers) is a
 * corrupt pool, not a file: unlinking it again would wrap its count. */
static int iget_entry(struct pm_fs *fs, uint64_t ino, struct pm_inode **out)
{
	int rc = pm_iget_locked(fs, ino, out);

	if (rc || (*out)->d.nlink)
		return rc;
	rc = pm_fs_corrupt(fs, "a directory entry names inode %llu, which has no links",
			   (unsigned long long)ino);
	pm_iput_locked(fs, *out); /* frees nothing: the pool is now corrupt */
	*out = NULL;
	return rc;
}

/*
 * A change failed after its transaction began: the pool proved corrupt
 * under it, or a counter lied. Nothing reaches the pool; @dir (and the
 * directory index, rebuilt at next use) return to what the pool holds and
 * @ip_new, an inode this transaction created, is dropped. Returns @rc.
 */
static int tx_fail(struct pm_fs *fs, int rc, struct pm_inode *dir, struct pm_inode *ip_new)
{
	pm_tx_abort(fs);
	pm_inode_reload(fs, dir);
	pm_dir_free(&dir->dir);
	if (ip_new)
		pm_icache_discard(fs, ip_new);
	return rc;
}

int pm_lookup(struct pm_fs *fs, struct pm_inode *dir, const char *name, struct pm_inode **out)
{
	uint64_t ino;
	uint32_t pos;
	int rc;

	pthread_mutex_lock(&fs->lock);
	rc = check_dir(dir);
	if (!rc && strlen(name) > PM_NAME_MAX)
		rc = -ENAMETOOLONG;
	if (rc)
		goto out;
	if (!strcmp(name, "."))
		ino = dir->ino;
	else if (!strcmp(name, ".."))
		ino = dir->d.parent;
	else if ((rc = pm_dir_find(fs, dir, name, &ino, &pos)))
		goto out;
	else {
		rc = iget_entry(fs, ino, out);
		goto out;
	}
	rc = pm_iget_locked(fs, ino, out);
out:
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

/* A new inode in a fresh slot, owned as POSIX says; in a transaction. */
static int inode_new(struct pm_fs *fs, const struct pm_cred *cr, struct pm_inode *dir,
		     mode_t mode, dev_t rdev, struct pm_inode **out)
{
	struct pm_dinode d;
	uint64_t ino;
	int rc = pm_ialloc(fs, &ino);

	if (rc)
		return rc;
	memset(&d, 0, sizeof(d));
	d.mode = (uint32_t)mode;
	d.uid = cr->uid;
	d.gid = cr->gid;
	if (dir->d.mode & S_ISGID) {
		d.gid = dir->d.gid;
		if (S_ISDIR(mode))
			d.mode |= S_ISGID;
	}
	if (!S_ISDIR(mode) && (d.mode & S_ISGID) && cr->uid != 0 && !pm_cred_in_group(cr, d.gid))
		d.mode &= ~(uint32_t)S_ISGID;
	d.nlink = S_ISDIR(mode) ? 2 : 1;
	pm_now(&d.btime);
	d.atime = d.mtime = d.ctime = d.btime;
	d.generation = fs->sbc.next_generation++;
	d.rdev = (S_ISCHR(mode) || S_ISBLK(mode)) ? rdev : 0;
	d.parent = S_ISDIR(mode) ? dir->ino : 0;
	pm_sb_dirty(fs);
	rc = pm_icache_insert(fs, ino, &d, out);
	if (rc)
		return rc;
	pm_inode_write(fs, *out);
	return 0;
}

/* Checks shared by everything that adds a name to @dir; fs->lock held. */
static int may_add(struct pm_fs *fs, struct pm_inode *dir, const char *name, uint64_t extra)
{
	uint64_t ino;
	uint32_t pos;
	int rc = check_dir(dir);

	if (rc)
		return rc;
	if (is_dot(name))
		return -EEXIST;
	rc = check_name(name);
	if (rc)
		return rc;
	rc = pm_dir_find(fs, dir, name, &ino, &pos);
	if (rc == 0)
		return -EEXIST;
	if (rc != -ENOENT)
		return rc;
	rc = pm_fs_writable(fs); /* loading @dir may have found it corrupt */
	if (rc)
		return rc;
	if (pm_avail_for(fs, DIR_ADD_WORST + extra) < DIR_ADD_WORST + extra)
		return -ENOSPC;
	return 0;
}

static void dir_touch(struct pm_fs *fs, struct pm_inode *dir)
{
	pm_touch(dir, true, true);
	pm_inode_write(fs, dir);
}

/*
 * The mode asked for is masked by the directory's default ACL, which the
 * new inode inherits in the same transaction, or else by the caller's
 * umask (pmem/xattr.c).
 */
int pm_mknod(struct pm_fs *fs, const struct pm_cred *cr, struct pm_inode *dir, const char *name,
	     mode_t mode, dev_t rdev, struct pm_inode **out)
{
	uint8_t xb[PM_BLOCK_SIZE];
	struct pm_inode *ip = NULL;
	int acl, rc;

	switch (mode & S_IFMT) {
	case S_IFREG: case S_IFDIR: case S_IFIFO: case S_IFSOCK: case S_IFCHR: case S_IFBLK:
		break;
	case 0:
		mode |= S_IFREG;
		break;
	default:
		return -EINVAL;
	}
	pthread_mutex_lock(&fs->lock);
	acl = pm_acl_inherit(fs, dir, &mode, cr->umask, xb);
	rc = acl < 0 ? acl : may_add(fs, dir, name, acl ? 1 : 0);
	if (!rc && S_ISDIR(mode) && dir->d.nlink >= PM_LINK_MAX)
		rc = -EMLINK;
	if (!rc && !fs->sbc.free_inodes)
		rc = -ENOSPC;
	if (rc)
		goto out;
	pm_tx_begin(fs);
	rc = inode_new(fs, cr, dir, mode, rdev, &ip);
	if (!rc && acl) {
		rc = pm_xattr_store(fs, ip, xb);
		pm_inode_write(fs, ip);
	}
	if (!rc)
		rc = pm_dir_add(fs, dir, name, ip->ino, pm_dtype((uint32_t)mode));
	if (rc) { /* resources were checked above: the pool is corrupt */
		tx_fail(fs, rc, dir, ip);
		ip = NULL;
		goto out;
	}
	if (S_ISDIR(mode))
		dir->d.nlink++;
	dir_touch(fs, dir);
	pm_tx_commit(fs);
	*out = ip;
out:
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int pm_symlink(struct pm_fs *fs, const struct pm_cred *cr, struct pm_inode *dir, const char *name,
	       const char *target, struct pm_inode **out)
{
	size_t len = strlen(target);
	struct pm_inode *ip = NULL;
	uint64_t blk;
	int rc;

	if (len == 0)
		return -ENOENT;
	if (len > PM_SYMLINK_MAX)
		return -ENAMETOOLONG;
	pthread_mutex_lock(&fs->lock);
	rc = may_add(fs, dir, name, 1 + PM_MAP_MAX_HEIGHT);
	if (!rc && !fs->sbc.free_inodes)
		rc = -ENOSPC;
	if (rc)
		goto out;
	pm_tx_begin(fs);
	rc = inode_new(fs, cr, dir, S_IFLNK | 0777, 0, &ip);
	if (rc || (rc = pm_balloc(fs, 0, 1, &blk)) != 1) {
		rc = rc < 0 ? rc : -ENOSPC; /* space was checked: the pool is corrupt */
		goto fail;
	}
	/* the target is data: written in place, ordered before the commit */
	memset(pm_block_ptr(fs->pool, blk), 0, PM_BLOCK_SIZE);
	memcpy(pm_block_ptr(fs->pool, blk), target, len);
	pm_tx_order(fs, pm_block_ptr(fs->pool, blk), PM_BLOCK_SIZE);
	ip->d.blocks++;
	rc = pm_bmap_set(fs, ip, 0, blk);
	if (rc)
		goto fail;
	ip->d.size = len;
	pm_inode_write(fs, ip);
	rc = pm_dir_add(fs, dir, name, ip->ino, pm_dtype(S_IFLNK));
	if (rc)
		goto fail;
	dir_touch(fs, dir);
	pm_tx_commit(fs);
	*out = ip;
out:
	pthread_mutex_unlock(&fs->lock);
	return rc;
fail:
	tx_fail(fs, rc, dir, ip);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int pm_readlink(struct pm_fs *fs, struct pm_inode *ip, char *buf, size_t size)
{
	uint64_t blk;
	size_t n;

	pthread_mutex_lock(&fs->lock);
	if (!S_ISLNK(ip->d.mode)) {
		pthread_mutex_unlock(&fs->lock);
		return -EINVAL;
	}
	blk = pm_bmap_get(fs, &ip->d, 0, false);
	n = ip->d.size < size - 1 ? ip->d.size : size - 1;
	if (blk && n <= PM_BLOCK_SIZE)
		memcpy(buf, pm_block_ptr(fs->pool, blk), n);
	else
		n = 0;
	buf[n] = 0;
	pthread_mutex_unlock(&fs->lock);
	return (int)n;
}

/*
 * One transaction: the inode (mode masked as pm_mknod's, the directory's
 * default ACL inherited) goes straight onto the orphan list with no link;
 * the directory is not changed.
 */
int pm_tmpfile(struct pm_fs *fs, const struct pm_cred *cr, struct pm_inode *dir, mode_t mode,
	       struct pm_inode **out)
{
	uint8_t xb[PM_BLOCK_SIZE];
	struct pm_inode *ip = NULL;
	int acl, rc;

	mode = S_IFREG | (mode & 07777);
	pthread_mutex_lock(&fs->lock);
	rc = check_dir(dir);
	if (!rc)
		rc = pm_fs_writable(fs);
	acl = rc ? rc : pm_acl_inherit(fs, dir, &mode, cr->umask, xb);
	rc = acl < 0 ? acl : 0;
	if (!rc && (!fs->sbc.free_inodes || (acl && pm_avail_for(fs, 1) < 1)))
		rc = -ENOSPC;
	if (rc)
		goto out;
	pm_tx_begin(fs);
	rc = inode_new(fs, cr, dir, mode, 0, &ip);
	if (!rc && acl)
		rc = pm_xattr_store(fs, ip, xb);
	if (rc) { /* resources were checked above: the pool is corrupt */
		pm_tx_abort(fs);
		if (ip)
			pm_icache_discard(fs, ip);
		goto out;
	}
	ip->d.nlink = 0;
	pm_orphan_add(fs, ip);
	pm_inode_write(fs, ip);
	pm_tx_commit(fs);
	ip->tmpfile = true;
	*out = ip;
out:
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

/* A link to an inode with none is refused (-ENOENT), but for a file made
 * by pm_tmpfile and not yet linked (the kernel lets only O_TMPFILE files
 * opened without O_EXCL get here): it leaves the orphan list. */
int pm_link(struct pm_fs *fs, struct pm_inode *ip, struct pm_inode *dir, const char *name)
{
	bool first;
	int rc;

	pthread_mutex_lock(&fs->lock);
	first = ip->d.nlink == 0 && ip->tmpfile;
	rc = may_add(fs, dir, name, 0);
	if (!rc && S_ISDIR(ip->d.mode))
		rc = -EPERM;
	if (!rc && ip->d.nlink == 0 && !first)
		rc = -ENOENT;
	if (!rc && ip->d.nlink >= PM_LINK_MAX)
		rc = -EMLINK;
	if (rc)
		goto out;
	pm_tx_begin(fs);
	rc = pm_dir_add(fs, dir, name, ip->ino, pm_dtype(ip->d.mode));
	if (rc) { /* space was checked: the pool is corrupt */
		tx_fail(fs, rc, dir, NULL);
		goto out;
	}
	if (first)
		pm_orphan_del(fs, ip);
	ip->d.nlink++;
	pm_touch(ip, false, true);
	pm_inode_write(fs, ip);
	dir_touch(fs, dir);
	pm_tx_commit(fs);
	if (first)
		ip->tmpfile = false;
out:
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

/* Drops one link of @ip in a transaction; an inode with no links left goes
 * on the orphan list until its last reference is put. */
static void drop_link(struct pm_fs *fs, struct pm_inode *ip)
{
	if (S_ISDIR(ip->d.mode))
		ip->d.nlink = 0;
	else
		ip->d.nlink--;
	if (ip->d.nlink == 0)
		pm_orphan_add(fs, ip);
	pm_touch(ip, false, true);
	pm_inode_write(fs, ip);
}

static int remove_entry(struct pm_fs *fs, struct pm_inode *dir, const char *name, bool isdir)
{
	struct pm_inode *ip = NULL;
	uint64_t ino;
	uint32_t pos;
	int rc;

	pthread_mutex_lock(&fs->lock);
	rc = check_dir(dir);
	if (rc)
		goto out;
	if (!strcmp(name, "."))
		rc = -EINVAL;
	else if (!strcmp(name, ".."))
		rc = -ENOTEMPTY;
	else
		rc = pm_dir_find(fs, dir, name, &ino, &pos);
	if (!rc)
		rc = iget_entry(fs, ino, &ip);
	if (!rc)
		rc = pm_fs_writable(fs);
	if (rc)
		goto out;
	if (isdir && !S_ISDIR(ip->d.mode))
		rc = -ENOTDIR;
	else if (!isdir && S_ISDIR(ip->d.mode))
		rc = -EISDIR;
	else if (isdir && ip->d.nentries)
		rc = -ENOTEMPTY;
	if (rc)
		goto out;
	pm_tx_begin(fs);
	pm_dir_del(fs, dir, pos);
	if (isdir)
		dir->d.nlink--;
	dir_touch(fs, dir);
	drop_link(fs, ip);
	pm_tx_commit(fs);
out:
	pm_iput_locked(fs, ip);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int pm_unlink(struct pm_fs *fs, struct pm_inode *dir, const char *name)
{
	return remove_entry(fs, dir, name, false);
}

int pm_rmdir(struct pm_fs *fs, struct pm_inode *dir, const char *name)
{
	return remove_entry(fs, dir, name, true);
}

/* Is @dir (a directory) @anc or below it? Walks ".." up to the root. */
static bool is_below(struct pm_fs *fs, struct pm_inode *dir, uint64_t anc)
{
	uint64_t ino = dir->ino, depth = 0;

	while (depth++ < fs->pool->sb->ninodes) {
		struct pm_inode *c;
		const struct pm_dinode *d;
		if (ino == anc)
			return true;
		if (ino == PM_ROOT_INO)
			return false;
		if (ino == 0 || ino >= fs->pool->sb->ninodes)
			return true; /* a corrupt "..": refuse */
		c = pm_icache_find(fs, ino);
		d = c ? &c->d : pm_dinode_ptr(fs->pool, ino);
		ino = d->parent;
	}
	return true; /* a cycle: treat as below, refuse */
}

/* Moves directory @ip from @from to @to: ".." and link counts. */
static void reparent(struct pm_inode *ip, struct pm_inode *from, struct pm_inode *to)
{
	if (!S_ISDIR(ip->d.mode) || from == to)
		return;
	ip->d.parent = to->ino;
	from->d.nlink--;
	to->d.nlink++;
}

int pm_rename(struct pm_fs *fs, struct pm_inode *odir, const char *oname, struct pm_inode *ndir,
	      const char *nname, unsigned flags)
{
	return pm_rename_as(fs, NULL, odir, oname, ndir, nname, flags);
}

int pm_rename_as(struct pm_fs *fs, const struct pm_cred *cr, struct pm_inode *odir,
		 const char *oname, struct pm_inode *ndir, const char *nname, unsigned flags)
{
	struct pm_inode *src = NULL, *dst = NULL, *wh = NULL;
	bool whiteout = flags & RENAME_WHITEOUT;
	uint64_t sino, dino = 0;
	uint32_t spos, dpos = 0;
	int rc;

	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT))
		return -EINVAL;
	if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE))
		return -EINVAL;
	if (whiteout && (!cr || (flags & RENAME_EXCHANGE)))
		return -EINVAL;
	if (is_dot(oname) || is_dot(nname))
		return -EBUSY;
	pthread_mutex_lock(&fs->lock);
	rc = check_dir(odir);
	if (!rc)
		rc = check_dir(ndir);
	if (!rc)
		rc = check_name(nname);
	if (!rc)
		rc = pm_dir_find(fs, odir, oname, &sino, &spos);
	if (!rc)
		rc = iget_entry(fs, sino, &src);
	if (rc)
		goto out;
	rc = pm_dir_find(fs, ndir, nname, &dino, &dpos);
	if (rc == 0) {
		rc = iget_entry(fs, dino, &dst);
		if (rc)
			goto out;
	} else if (rc != -ENOENT) {
		goto out;
	}
	rc = pm_fs_writable(fs);
	if (rc)
		goto out;
	if (flags & RENAME_EXCHANGE) {
		if (!dst) {
			rc = -ENOENT;
			goto out;
		}
		if (src == dst)
			goto out;
		if ((S_ISDIR(src->d.mode) && odir != ndir && is_below(fs, ndir, src->ino)) ||
		    (S_ISDIR(dst->d.mode) && odir != ndir && is_below(fs, odir, dst->ino))) {
			rc = -EINVAL;
			goto out;
		}
		/* a directory swapped for a non-directory adds a link to the
		 * parent it moves into */
		if (odir != ndir && S_ISDIR(src->d.mode) != S_ISDIR(dst->d.mode) &&
		    (S_ISDIR(src->d.mode) ? ndir : odir)->d.nlink >= PM_LINK_MAX) {
			rc = -EMLINK;
			goto out;
		}
		pm_tx_begin(fs);
		pm_dir_set(fs, odir, spos, dst->ino, pm_dtype(dst->d.mode));
		pm_dir_set(fs, ndir, dpos, src->ino, pm_dtype(src->d.mode));
		reparent(src, odir, ndir);
		reparent(dst, ndir, odir);
		goto commit;
	}
	if (dst) {
		if (flags & RENAME_NOREPLACE)
			rc = -EEXIST;
		else if (src == dst)
			rc = 0; /* two links to one inode: POSIX says do nothing */
		else if (S_ISDIR(src->d.mode) && !S_ISDIR(dst->d.mode))
			rc = -ENOTDIR;
		else if (!S_ISDIR(src->d.mode) && S_ISDIR(dst->d.mode))
			rc = -EISDIR;
		else if (S_ISDIR(dst->d.mode) && dst->d.nentries)
			rc = -ENOTEMPTY;
		if (rc || src == dst)
			goto out;
	} else if (pm_avail_for(fs, DIR_ADD_WORST) < DIR_ADD_WORST) {
		rc = -ENOSPC;
		goto out;
	}
	if (whiteout && !fs->sbc.free_inodes) {
		rc = -ENOSPC;
		goto out;
	}
	if (S_ISDIR(src->d.mode) && odir != ndir) {
		if (is_below(fs, ndir, src->ino)) {
			rc = -EINVAL;
			goto out;
		}
		if (!dst && ndir->d.nlink >= PM_LINK_MAX) {
			rc = -EMLINK;
			goto out;
		}
	}
	pm_tx_begin(fs);
	if (whiteout) {
		rc = inode_new(fs, cr, odir, S_IFCHR, makedev(0, 0), &wh);
		if (rc) { /* a free slot was checked: the pool is corrupt */
			tx_fail(fs, rc, odir, NULL);
			goto out;
		}
	}
	if (dst) {
		pm_dir_set(fs, ndir, dpos, src->ino, pm_dtype(src->d.mode));
		if (S_ISDIR(dst->d.mode))
			ndir->d.nlink--;
		drop_link(fs, dst);
	} else {
		rc = pm_dir_add(fs, ndir, nname, src->ino, pm_dtype(src->d.mode));
		if (rc) { /* space was checked: the pool is corrupt */
			tx_fail(fs, rc, ndir, wh);
			wh = NULL;
			goto out;
		}
	}
	if (whiteout) /* the old entry names the whiteout now */
		pm_dir_set(fs, odir, spos, wh->ino, pm_dtype(S_IFCHR));
	else
		pm_dir_del(fs, odir, spos);
	reparent(src, odir, ndir);
commit:
	pm_touch(src, false, true);
	pm_inode_write(fs, src);
	if (dst && dst->d.nlink) {
		pm_touch(dst, false, true);
		pm_inode_write(fs, dst);
	}
	dir_touch(fs, odir);
	if (ndir != odir)
		dir_touch(fs, ndir);
	pm_tx_commit(fs);
out:
	pm_iput_locked(fs, wh);
	pm_iput_locked(fs, dst);
	pm_iput_locked(fs, src);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

/* Entries are copied out under the lock and handed to @fill without it, so
 * @fill may call back into the engine (readdirplus looks entries up). */
#define RD_BATCH 128
struct rd_ent {
	uint64_t ino, next;
	unsigned type;
	char name[PM_NAME_MAX + 1];
};

int pm_readdir(struct pm_fs *fs, struct pm_inode *dir, uint64_t off, pm_filldir_t fill, void *ctx)
{
	struct rd_ent *e = malloc(RD_BATCH * sizeof(*e));
	int n, i, rc;

	if (!e)
		return -ENOMEM;
	for (;;) {
		n = 0;
		pthread_mutex_lock(&fs->lock);
		rc = S_ISDIR(dir->d.mode) ? pm_dir_load(fs, dir) : -ENOTDIR;
		if (rc) {
			pthread_mutex_unlock(&fs->lock);
			break;
		}
		if (off == 0) {
			e[n].ino = dir->ino;
			e[n].type = pm_dtype(S_IFDIR);
			e[n].next = 1;
			strcpy(e[n++].name, ".");
		}
		if (off <= 1) {
			e[n].ino = dir->d.parent;
			e[n].type = pm_dtype(S_IFDIR);
			e[n].next = 2;
			strcpy(e[n++].name, "..");
		}
		{
			struct pm_dir *dd = dir->dir;
			uint64_t start = off >= 2 ? off - 2 : 0;
			uint64_t bi = start / PM_DIR_SLOTS;

			for (; bi < dd->nblocks && n < RD_BATCH; bi++) {
				const uint8_t *b = pm_tx_peek(fs, dd->pblk[bi]);
				unsigned s = 0;
				while (s < PM_DIR_SLOTS && n < RD_BATCH) {
					const struct pm_dirent *de = (const void *)(b + s * PM_DIR_SLOT);
					uint64_t pos = bi * PM_DIR_SLOTS + s;
					if (pm_dirent_len(fs, b, s) <= 0) {
						s++; /* free, or bad (pm_dir_load said so) */
						continue;
					}
					if (pos >= start) {
						e[n].ino = de->ino;
						e[n].type = de->type;
						e[n].next = 2 + pos + de->nslots;
						memcpy(e[n].name, de->name, de->name_len);
						e[n].name[de->name_len] = 0;
						n++;
					}
					s += de->nslots;
				}
			}
		}
		pthread_mutex_unlock(&fs->lock);
		if (n == 0)
			break;
		for (i = 0; i < n; i++) {
			if (fill(ctx, e[i].name, e[i].ino, e[i].type, e[i].next))
				goto done;
			off = e[i].next;
		}
	}
done:
	free(e);
	return rc;
}

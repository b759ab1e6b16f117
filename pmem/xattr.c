/* SPDX-License-Identifier: MIT */
/*
 * pmem/xattr.c -- extended attributes: one block per inode, rewritten as a
 * whole by each change (layout.h, struct pm_xattr_hdr).
 *
 * The two POSIX ACL xattrs (pmem/acl.h) are stored like any other, but
 * what a disk file system's set_acl, chmod and create do with them is done
 * here, in the same transaction as the change that calls for it, as the
 * kernel leaves it to a FUSE file system: setting an access ACL sets the
 * mode's permission bits from it (and stores nothing when the mode says it
 * all), chmod rewrites the ACL's owner, group class and other entries, and
 * a new object inherits its directory's default ACL instead of having the
 * umask applied. So the mode and the ACL never disagree in the pool, even
 * across a crash.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "pmem/acl.h"
#include "pmem/fs_int.h"

#define XATTR_SIZE_MAX_ 65536

/*
 * Is the attribute block @b well formed: the magic, a used length inside
 * the block, and count entries, each with a name, packed exactly into
 * used bytes? Every reader checks this first, so no entry can send it past
 * the block. A bad block marks the pool corrupt; fs->lock held.
 */
static int xcheck(struct pm_fs *fs, struct pm_inode *ip, const uint8_t *b)
{
	const struct pm_xattr_hdr *h = (const void *)b;
	const uint8_t *p = b + sizeof(*h);
	uint64_t pos = 0;
	unsigned i;

	if (h->magic != PM_XATTR_MAGIC || h->used > PM_XATTR_SPACE || h->count > PM_XATTR_SPACE / 4)
		goto bad;
	for (i = 0; i < h->count; i++) {
		const struct pm_xattr_ent *e = (const void *)(p + pos);
		if (pos + sizeof(*e) > h->used || !e->name_len)
			goto bad;
		pos += pm_xattr_ent_size(e->name_len, e->value_len);
		if (pos > h->used)
			goto bad;
	}
	if (pos != h->used)
		goto bad;
	return 0;
bad:
	return pm_fs_corrupt(fs, "inode %llu: its xattr block %llu is malformed",
			     (unsigned long long)ip->ino, (unsigned long long)ip->d.xattr_block);
}

/* Finds @name in a block xcheck() accepted; returns its byte offset after
 * the header, or -ENODATA. */
static int xfind(const uint8_t *b, const char *name, size_t nlen, unsigned *entsz)
{
	const struct pm_xattr_hdr *h = (const void *)b;
	const uint8_t *p = b + sizeof(*h);
	unsigned i, pos = 0;

	for (i = 0; i < h->count; i++) {
		const struct pm_xattr_ent *e = (const void *)(p + pos);
		unsigned sz = pm_xattr_ent_size(e->name_len, e->value_len);
		if (e->name_len == nlen && !memcmp(e + 1, name, nlen)) {
			*entsz = sz;
			return (int)pos;
		}
		pos += sz;
	}
	return -ENODATA;
}

ssize_t pm_getxattr(struct pm_fs *fs, struct pm_inode *ip, const char *name, void *buf,
		    size_t size)
{
	const uint8_t *b;
	unsigned sz;
	ssize_t rc;
	int pos;

	pthread_mutex_lock(&fs->lock);
	if (!ip->d.xattr_block) {
		rc = -ENODATA;
		goto out;
	}
	b = pm_block_ptr(fs->pool, ip->d.xattr_block);
	rc = xcheck(fs, ip, b);
	if (rc)
		goto out;
	pos = xfind(b, name, strlen(name), &sz);
	if (pos < 0) {
		rc = pos;
		goto out;
	}
	{
		const struct pm_xattr_ent *e = (const void *)(b + sizeof(struct pm_xattr_hdr) + pos);
		rc = e->value_len;
		if (size && size < e->value_len)
			rc = -ERANGE;
		else if (size)
			memcpy(buf, (const uint8_t *)(e + 1) + e->name_len, e->value_len);
	}
out:
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

ssize_t pm_listxattr(struct pm_fs *fs, struct pm_inode *ip, char *buf, size_t size)
{
	const struct pm_xattr_hdr *h;
	const uint8_t *p;
	size_t total = 0;
	unsigned i, pos = 0;
	ssize_t rc;

	pthread_mutex_lock(&fs->lock);
	if (!ip->d.xattr_block) {
		rc = 0;
		goto out;
	}
	h = pm_block_ptr(fs->pool, ip->d.xattr_block);
	p = (const uint8_t *)(h + 1);
	rc = xcheck(fs, ip, (const uint8_t *)h);
	if (rc)
		goto out;
	for (i = 0; i < h->count; i++) {
		const struct pm_xattr_ent *e = (const void *)(p + pos);
		if (size) {
			if (total + e->name_len + 1 > size) {
				rc = -ERANGE;
				goto out;
			}
			memcpy(buf + total, e + 1, e->name_len);
			buf[total + e->name_len] = 0;
		}
		total += e->name_len + 1u;
		pos += pm_xattr_ent_size(e->name_len, e->value_len);
	}
	rc = (ssize_t)total;
out:
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int pm_xattr_load(struct pm_fs *fs, struct pm_inode *ip, uint8_t *nb)
{
	struct pm_xattr_hdr *nh = (void *)nb;

	memset(nb, 0, PM_BLOCK_SIZE);
	nh->magic = PM_XATTR_MAGIC;
	if (ip->d.xattr_block) {
		const uint8_t *b = pm_block_ptr(fs->pool, ip->d.xattr_block);
		const struct pm_xattr_hdr *h = (const void *)b;
		int rc = xcheck(fs, ip, b);
		if (rc)
			return rc;
		memcpy(nb, b, sizeof(*h) + h->used);
	}
	return 0;
}

const void *pm_xattr_lookup(const uint8_t *b, const char *name, size_t *len)
{
	unsigned sz;
	int pos = xfind(b, name, strlen(name), &sz);
	const struct pm_xattr_ent *e;

	if (pos < 0)
		return NULL;
	e = (const void *)(b + sizeof(struct pm_xattr_hdr) + pos);
	*len = e->value_len;
	return (const uint8_t *)(e + 1) + e->name_len;
}

int pm_xattr_edit(uint8_t *nb, const char *name, const void *value, size_t vlen, int flags,
		  bool remove)
{
	struct pm_xattr_hdr *nh = (void *)nb;
	uint8_t *p = nb + sizeof(*nh);
	size_t nlen = strlen(name);
	unsigned sz = 0;
	int pos;

	if (nlen == 0 || nlen > 255)
		return -ERANGE;
	if (vlen > XATTR_SIZE_MAX_)
		return -E2BIG;
	pos = xfind(nb, name, nlen, &sz);
	if (remove && pos < 0)
		return -ENODATA;
	if (!remove) {
		if ((flags & XATTR_CREATE) && pos >= 0)
			return -EEXIST;
		if ((flags & XATTR_REPLACE) && pos < 0)
			return -ENODATA;
		/* room for the new value once the old one is gone */
		if (nh->used - (pos >= 0 ? sz : 0) + pm_xattr_ent_size((unsigned)nlen, (unsigned)vlen) >
		    PM_XATTR_SPACE)
			return -ENOSPC;
	}
	if (pos >= 0) {
		memmove(p + pos, p + pos + sz, nh->used - (unsigned)pos - sz);
		nh->used -= sz;
		nh->count--;
		memset(p + nh->used, 0, sz);
	}
	if (!remove) {
		struct pm_xattr_ent *e = (void *)(p + nh->used);
		e->name_len = (uint8_t)nlen;
		e->value_len = (uint16_t)vlen;
		memcpy(e + 1, name, nlen);
		memcpy((uint8_t *)(e + 1) + nlen, value, vlen);
		nh->used += pm_xattr_ent_size((unsigned)nlen, (unsigned)vlen);
		nh->count++;
	}
	return 0;
}

bool pm_xattr_needs_block(struct pm_inode *ip, const uint8_t *nb)
{
	return !ip->d.xattr_block && ((const struct pm_xattr_hdr *)nb)->count;
}

int pm_xattr_store(struct pm_fs *fs, struct pm_inode *ip, const uint8_t *nb)
{
	const struct pm_xattr_hdr *nh = (const void *)nb;
	unsigned used = (unsigned)sizeof(*nh) + nh->used;
	uint8_t *b;

	if (nh->count == 0) {
		pm_xattr_free(fs, ip);
		return 0;
	}
	if (!ip->d.xattr_block) {
		uint64_t xb;
		if (pm_balloc(fs, 0, 1, &xb) != 1)
			return -ENOSPC; /* the caller saw one free: the pool is corrupt */
		ip->d.xattr_block = xb;
		ip->d.blocks++;
		b = pm_tx_block_new(fs, ip->d.xattr_block);
	} else {
		b = pm_tx_block(fs, ip->d.xattr_block);
	}
	/* write the old length too, so stale bytes past the end are zero */
	{
		const struct pm_xattr_hdr *oh = (const void *)b;
		unsigned old = (unsigned)sizeof(*oh) + (oh->magic == PM_XATTR_MAGIC ? oh->used : 0);
		unsigned n = used > old ? used : old;
		if (n > PM_BLOCK_SIZE)
			n = PM_BLOCK_SIZE;
		memcpy(b, nb, n);
		pm_tx_dirty(fs, b, n);
	}
	return 0;
}

/* Opens the transaction that stores attribute block @nb of @ip: 0 with
 * the transaction open (the caller commits it), or -errno with none. */
static int xstore_begin(struct pm_fs *fs, struct pm_inode *ip, const uint8_t *nb)
{
	int rc;

	if (pm_xattr_needs_block(ip, nb) && fs->avail < 1)
		return -ENOSPC;
	pm_tx_begin(fs);
	rc = pm_xattr_store(fs, ip, nb);
	if (rc) {
		pm_tx_abort(fs);
		pm_inode_reload(fs, ip);
	}
	return rc;
}

/*
 * Rewrites the attribute block without @name and, if @value, with name =
 * value appended; the ACL xattrs go through pmem/acl_fs.c's rules first.
 * Called with fs->lock held, outside a transaction.
 */
static int xupdate(struct pm_fs *fs, struct pm_inode *ip, const char *name, const void *value,
		   size_t vlen, int flags, bool remove)
{
	uint8_t nb[PM_BLOCK_SIZE];
	int rc;

	if (pm_fs_writable(fs))
		return -EROFS;
	rc = pm_xattr_load(fs, ip, nb);
	if (!rc)
		rc = pm_xattr_edit(nb, name, value, vlen, flags, remove);
	if (rc)
		return rc;
	rc = xstore_begin(fs, ip, nb);
	if (rc)
		return rc;
	pm_touch(ip, false, true);
	pm_inode_write(fs, ip);
	pm_tx_commit(fs);
	return 0;
}

/*
 * Sets ACL xattr @name of @ip to @value, or removes it (@value NULL, or an
 * ACL of no entries), as the kernel's posix_acl_update_mode() and a disk
 * file system's set_acl do. An access ACL sets the permission bits of the
 * mode; one the mode says all of is not stored (any stored one is
 * removed); a caller (@cr, NULL: no check) that is neither root nor in the
 * file's group loses the set-group-ID bit. Removing an ACL that is not
 * there succeeds, as on ext4. Called with fs->lock held, outside a
 * transaction; one transaction for the xattr and the mode.
 */
static int acl_update(struct pm_fs *fs, const struct pm_cred *cr, struct pm_inode *ip,
		      const char *name, const void *value, size_t size, int flags)
{
	uint8_t nb[PM_BLOCK_SIZE];
	bool access = !strcmp(name, PM_ACL_ACCESS);
	mode_t mode = ip->d.mode;
	size_t len;
	int n = 0, rc;

	if (pm_fs_writable(fs))
		return -EROFS;
	if (value) {
		n = pm_acl_valid(value, size);
		if (n < 0)
			return n;
	}
	if (n > 0 && !access && !S_ISDIR(ip->d.mode))
		return -EACCES; /* only directories have a default ACL */
	if (n > 0 && access && !pm_acl_equiv_mode(value, size, &mode))
		n = 0; /* the mode says it all: no ACL kept */
	if (n > 0 && access && cr && cr->uid != 0 && !pm_cred_in_group(cr, ip->d.gid))
		mode &= ~(mode_t)S_ISGID;
	rc = pm_xattr_load(fs, ip, nb);
	if (rc)
		return rc;
	if (n > 0)
		rc = pm_xattr_edit(nb, name, value, size, flags, false);
	else if (pm_xattr_lookup(nb, name, &len))
		rc = pm_xattr_edit(nb, name, NULL, 0, 0, true);
	if (rc)
		return rc;
	rc = xstore_begin(fs, ip, nb);
	if (rc)
		return rc;
	ip->d.mode = (uint32_t)mode;
	pm_touch(ip, false, true);
	pm_inode_write(fs, ip);
	pm_tx_commit(fs);
	return 0;
}

int pm_set_acl(struct pm_fs *fs, const struct pm_cred *cr, struct pm_inode *ip, const char *name,
	       const void *value, size_t size, int flags)
{
	int rc;

	pthread_mutex_lock(&fs->lock);
	rc = acl_update(fs, cr, ip, name, value, size, flags);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int pm_setxattr(struct pm_fs *fs, struct pm_inode *ip, const char *name, const void *value,
		size_t size, int flags)
{
	int rc;

	pthread_mutex_lock(&fs->lock);
	if (pm_acl_name(name))
		rc = acl_update(fs, NULL, ip, name, value, size, flags);
	else
		rc = xupdate(fs, ip, name, value, size, flags, false);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int pm_removexattr(struct pm_fs *fs, struct pm_inode *ip, const char *name)
{
	int rc;

	pthread_mutex_lock(&fs->lock);
	if (pm_acl_name(name))
		rc = acl_update(fs, NULL, ip, name, NULL, 0, 0);
	else
		rc = xupdate(fs, ip, name, NULL, 0, 0, true);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

/* @ip's ACL xattr @name, checked, or NULL; points into the pool (or the
 * running transaction's shadow). fs->lock held. */
static const void *acl_peek(struct pm_fs *fs, struct pm_inode *ip, const char *name, size_t *len)
{
	const uint8_t *b;
	const void *v;

	if (!ip->d.xattr_block)
		return NULL;
	b = pm_tx_peek(fs, ip->d.xattr_block);
	if (xcheck(fs, ip, b))
		return NULL;
	v = pm_xattr_lookup(b, name, len);
	/* a malformed ACL (only a damaged pool has one) counts as none: the
	 * kernel then refuses access through it (EINVAL from its parser) */
	return v && pm_acl_valid(v, *len) > 0 ? v : NULL;
}

int pm_acl_inherit(struct pm_fs *fs, struct pm_inode *dir, mode_t *mode, mode_t umask,
		   uint8_t *nb)
{
	uint8_t acl[PM_ACL_MAX_SIZE];
	const void *def;
	size_t len;
	int rc;

	def = acl_peek(fs, dir, PM_ACL_DEFAULT, &len);
	if (!def) {
		*mode &= ~(umask & 0777);
		return 0;
	}
	memset(nb, 0, PM_BLOCK_SIZE);
	((struct pm_xattr_hdr *)nb)->magic = PM_XATTR_MAGIC;
	memcpy(acl, def, len);
	if (S_ISDIR(*mode)) {
		rc = pm_xattr_edit(nb, PM_ACL_DEFAULT, acl, len, 0, false);
		if (rc)
			return rc;
	}
	if (pm_acl_create_masq(acl, len, mode)) {
		rc = pm_xattr_edit(nb, PM_ACL_ACCESS, acl, len, 0, false);
		if (rc)
			return rc;
	}
	return ((struct pm_xattr_hdr *)nb)->count ? 1 : 0;
}

int pm_acl_chmod_prepare(struct pm_fs *fs, struct pm_inode *ip, mode_t mode, uint8_t *nb)
{
	uint8_t acl[PM_ACL_MAX_SIZE];
	size_t len = 0;
	const void *v = acl_peek(fs, ip, PM_ACL_ACCESS, &len);
	int rc;

	if (!v)
		return 0;
	memcpy(acl, v, len);
	pm_acl_chmod(acl, len, mode);
	rc = pm_xattr_load(fs, ip, nb);
	if (!rc)
		rc = pm_xattr_edit(nb, PM_ACL_ACCESS, acl, len, 0, false);
	return rc ? rc : 1;
}

/* Frees the attribute block; in a transaction. */
void pm_xattr_free(struct pm_fs *fs, struct pm_inode *ip)
{
	if (!ip->d.xattr_block)
		return;
	pm_bfree(fs, ip->d.xattr_block);
	ip->d.xattr_block = 0;
	ip->d.blocks--;
}

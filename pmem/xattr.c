/* SPDX-License-Identifier: MIT */
/*
 * pmem/xattr.c -- extended attributes: one block per inode, rewritten as a
 * whole by each change (layout.h, struct pm_xattr_hdr).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

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

/*
 * Rewrites the attribute block without @name and, if @value, with name =
 * value appended. Called with fs->lock held, outside a transaction.
 */
static int xupdate(struct pm_fs *fs, struct pm_inode *ip, const char *name, const void *value,
		   size_t vlen, int flags, bool remove)
{
	uint8_t nb[PM_BLOCK_SIZE];
	struct pm_xattr_hdr *nh = (void *)nb;
	size_t nlen = strlen(name);
	unsigned sz = 0, used;
	int pos = -ENODATA;

	if (nlen == 0 || nlen > 255)
		return -ERANGE;
	if (vlen > XATTR_SIZE_MAX_)
		return -E2BIG;
	if (pm_fs_writable(fs))
		return -EROFS;
	memset(nb, 0, sizeof(nb));
	nh->magic = PM_XATTR_MAGIC;
	if (ip->d.xattr_block) {
		const uint8_t *b = pm_block_ptr(fs->pool, ip->d.xattr_block);
		const struct pm_xattr_hdr *h = (const void *)b;
		int rc = xcheck(fs, ip, b);
		if (rc)
			return rc;
		pos = xfind(b, name, nlen, &sz);
		memcpy(nb, b, sizeof(*h) + h->used);
		if (pos >= 0) {
			uint8_t *p = nb + sizeof(*nh);
			memmove(p + pos, p + pos + sz, nh->used - (unsigned)pos - sz);
			nh->used -= sz;
			nh->count--;
			memset(p + nh->used, 0, sz);
		}
	}
	if (remove && pos < 0)
		return -ENODATA;
	if (!remove) {
		if ((flags & XATTR_CREATE) && pos >= 0)
			return -EEXIST;
		if ((flags & XATTR_REPLACE) && pos < 0)
			return -ENODATA;
		sz = pm_xattr_ent_size((unsigned)nlen, (unsigned)vlen);
		if (nh->used + sz > PM_XATTR_SPACE)
			return -ENOSPC;
		{
			struct pm_xattr_ent *e = (void *)(nb + sizeof(*nh) + nh->used);
			e->name_len = (uint8_t)nlen;
			e->value_len = (uint16_t)vlen;
			memcpy(e + 1, name, nlen);
			memcpy((uint8_t *)(e + 1) + nlen, value, vlen);
		}
		nh->used += sz;
		nh->count++;
	}
	if (!ip->d.xattr_block && fs->avail < 1)
		return -ENOSPC;
	used = (unsigned)sizeof(*nh) + nh->used;

	pm_tx_begin(fs);
	if (nh->count == 0) {
		pm_xattr_free(fs, ip);
	} else {
		uint8_t *b;
		if (!ip->d.xattr_block) {
			uint64_t xb;
			if (pm_balloc(fs, 0, 1, &xb) != 1) {
				/* avail said there was one: the pool is corrupt */
				pm_tx_abort(fs);
				return -ENOSPC;
			}
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
	}
	pm_touch(ip, false, true);
	pm_inode_write(fs, ip);
	pm_tx_commit(fs);
	return 0;
}

int pm_setxattr(struct pm_fs *fs, struct pm_inode *ip, const char *name, const void *value,
		size_t size, int flags)
{
	int rc;

	pthread_mutex_lock(&fs->lock);
	rc = xupdate(fs, ip, name, value, size, flags, false);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int pm_removexattr(struct pm_fs *fs, struct pm_inode *ip, const char *name)
{
	int rc;

	pthread_mutex_lock(&fs->lock);
	rc = xupdate(fs, ip, name, NULL, 0, 0, true);
	pthread_mutex_unlock(&fs->lock);
	return rc;
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

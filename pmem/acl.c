/* SPDX-License-Identifier: MIT */
/*
 * pmem/acl.c -- the rules of POSIX ACLs on their xattr form (acl.h). Each
 * function follows its namesake in the kernel's fs/posix_acl.c, so that what
 * the daemon computes (the mode a new ACL implies, the ACL a chmod leaves,
 * what a new file inherits) is what ext4 or xfs would store, and what it
 * grants is what the kernel's check grants.
 */
#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pmem/acl.h"

#define ACL_VERSION 2
/* tags, <linux/posix_acl.h> */
#define ACL_USER_OBJ 0x01
#define ACL_USER 0x02
#define ACL_GROUP_OBJ 0x04
#define ACL_GROUP 0x08
#define ACL_MASK 0x10
#define ACL_OTHER 0x20

/* An entry is { u16 tag; u16 perm; u32 id; }, little-endian, and may sit at
 * any address (xattr values are packed, requests are byte buffers): read
 * and written through memcpy. */
#define ENT 8u
#define HDR 4u

static unsigned count(size_t size)
{
	return (unsigned)((size - HDR) / ENT);
}

static uint8_t *ent(const void *v, unsigned i)
{
	return (uint8_t *)v + HDR + (size_t)i * ENT;
}

static unsigned tag(const uint8_t *e)
{
	uint16_t t;

	memcpy(&t, e, sizeof(t));
	return le16toh(t);
}

static unsigned perm(const uint8_t *e)
{
	uint16_t p;

	memcpy(&p, e + 2, sizeof(p));
	return le16toh(p);
}

static uint32_t id(const uint8_t *e)
{
	uint32_t i;

	memcpy(&i, e + 4, sizeof(i));
	return le32toh(i);
}

static void set_perm(uint8_t *e, unsigned p)
{
	uint16_t v = htole16((uint16_t)p);

	memcpy(e + 2, &v, sizeof(v));
}

bool pm_acl_name(const char *name)
{
	return !strcmp(name, PM_ACL_ACCESS) || !strcmp(name, PM_ACL_DEFAULT);
}

int pm_acl_valid(const void *v, size_t size)
{
	unsigned i, n, state = ACL_USER_OBJ, needs_mask = 0;
	uint32_t version;

	if (size < HDR || size > PM_ACL_MAX_SIZE || (size - HDR) % ENT)
		return -EINVAL;
	memcpy(&version, v, sizeof(version));
	if (le32toh(version) != ACL_VERSION)
		return -EINVAL;
	n = count(size);
	if (n == 0)
		return 0;
	/* the state machine of posix_acl_valid(): each tag in its place (the
	 * order of named entries is not checked, as the kernel does not) */
	for (i = 0; i < n; i++) {
		const uint8_t *e = ent(v, i);

		if (perm(e) & ~7u)
			return -EINVAL;
		switch (tag(e)) {
		case ACL_USER_OBJ:
			if (state != ACL_USER_OBJ)
				return -EINVAL;
			state = ACL_USER;
			break;
		case ACL_USER:
			if (state != ACL_USER)
				return -EINVAL;
			needs_mask = 1;
			break;
		case ACL_GROUP_OBJ:
			if (state != ACL_USER)
				return -EINVAL;
			state = ACL_GROUP;
			break;
		case ACL_GROUP:
			if (state != ACL_GROUP)
				return -EINVAL;
			needs_mask = 1;
			break;
		case ACL_MASK:
			if (state != ACL_GROUP)
				return -EINVAL;
			state = ACL_OTHER;
			break;
		case ACL_OTHER:
			if (state == ACL_OTHER || (state == ACL_GROUP && !needs_mask)) {
				state = 0;
				break;
			}
			return -EINVAL;
		default:
			return -EINVAL;
		}
	}
	return state == 0 ? (int)n : -EINVAL;
}

int pm_acl_equiv_mode(const void *v, size_t size, mode_t *mode)
{
	unsigned i, n = count(size);
	mode_t m = 0;
	int not_equiv = 0;

	for (i = 0; i < n; i++) {
		const uint8_t *e = ent(v, i);
		switch (tag(e)) {
		case ACL_USER_OBJ:
			m |= (mode_t)(perm(e) & 7) << 6;
			break;
		case ACL_GROUP_OBJ:
			m |= (mode_t)(perm(e) & 7) << 3;
			break;
		case ACL_OTHER:
			m |= perm(e) & 7;
			break;
		case ACL_MASK:
			/* after GROUP_OBJ: the mask is the group class */
			m = (m & ~(mode_t)S_IRWXG) | (mode_t)(perm(e) & 7) << 3;
			not_equiv = 1;
			break;
		default: /* USER, GROUP */
			not_equiv = 1;
			break;
		}
	}
	*mode = (*mode & ~(mode_t)0777) | m;
	return not_equiv;
}

void pm_acl_chmod(void *v, size_t size, mode_t mode)
{
	uint8_t *group_obj = NULL, *mask = NULL;
	unsigned i, n = count(size);

	for (i = 0; i < n; i++) {
		uint8_t *e = ent(v, i);
		switch (tag(e)) {
		case ACL_USER_OBJ:
			set_perm(e, (mode >> 6) & 7);
			break;
		case ACL_GROUP_OBJ:
			group_obj = e;
			break;
		case ACL_MASK:
			mask = e;
			break;
		case ACL_OTHER:
			set_perm(e, mode & 7);
			break;
		}
	}
	if (mask)
		set_perm(mask, (mode >> 3) & 7);
	else if (group_obj)
		set_perm(group_obj, (mode >> 3) & 7);
}

int pm_acl_create_masq(void *v, size_t size, mode_t *mode)
{
	uint8_t *group_obj = NULL, *mask = NULL;
	unsigned i, n = count(size);
	mode_t m = *mode;
	int not_equiv = 0;

	for (i = 0; i < n; i++) {
		uint8_t *e = ent(v, i);
		switch (tag(e)) {
		case ACL_USER_OBJ:
			set_perm(e, perm(e) & ((m >> 6) & 7));
			m &= (mode_t)(perm(e) << 6) | ~(mode_t)S_IRWXU;
			break;
		case ACL_GROUP_OBJ:
			group_obj = e;
			break;
		case ACL_MASK:
			mask = e;
			not_equiv = 1;
			break;
		case ACL_OTHER:
			set_perm(e, perm(e) & (m & 7));
			m &= (mode_t)perm(e) | ~(mode_t)S_IRWXO;
			break;
		default: /* USER, GROUP */
			not_equiv = 1;
			break;
		}
	}
	/* the group class: the mask if any, else the owning group */
	{
		uint8_t *g = mask ? mask : group_obj;
		if (g) {
			set_perm(g, perm(g) & ((m >> 3) & 7));
			m &= (mode_t)(perm(g) << 3) | ~(mode_t)S_IRWXG;
		}
	}
	*mode = (*mode & ~(mode_t)0777) | (m & 0777);
	return not_equiv;
}

int pm_acl_permission(const void *v, size_t size, uid_t owner, gid_t group, mode_t mode, uid_t uid,
		      pm_in_group_fn in_group, void *ctx, int want)
{
	const uint8_t *match = NULL;
	unsigned i, n;
	bool found = false;

	want &= R_OK | W_OK | X_OK;
	if (!v || size <= HDR) {
		/* the mode bits: owner, else group, else other */
		unsigned bits = uid == owner ? (mode >> 6) & 7 :
				in_group(ctx, group) ? (mode >> 3) & 7 : mode & 7;
		return ((int)bits & want) == want ? 0 : -EACCES;
	}
	n = count(size);
	/* posix_acl_permission(): the first entry that names the caller
	 * decides; a named user or group entry is limited by the mask */
	for (i = 0; i < n && !match; i++) {
		const uint8_t *e = ent(v, i);
		switch (tag(e)) {
		case ACL_USER_OBJ:
			if (uid == owner)
				return ((int)perm(e) & want) == want ? 0 : -EACCES;
			break;
		case ACL_USER:
			if (id(e) == (uint32_t)uid)
				match = e;
			break;
		case ACL_GROUP_OBJ:
		case ACL_GROUP:
			if (in_group(ctx, tag(e) == ACL_GROUP_OBJ ? group : (gid_t)id(e))) {
				found = true;
				if (((int)perm(e) & want) == want)
					match = e;
			}
			break;
		case ACL_MASK:
			break;
		case ACL_OTHER:
			if (found)
				return -EACCES;
			return ((int)perm(e) & want) == want ? 0 : -EACCES;
		}
	}
	if (!match)
		return -EACCES;
	for (; i < n; i++) {
		const uint8_t *e = ent(v, i);
		if (tag(e) == ACL_MASK)
			return ((int)(perm(e) & perm(match)) & want) == want ? 0 : -EACCES;
	}
	return ((int)perm(match) & want) == want ? 0 : -EACCES;
}

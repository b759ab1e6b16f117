/* SPDX-License-Identifier: MIT */
/*
 * pmem/acl.h -- POSIX ACLs in the form the kernel hands a file system: the
 * values of the xattrs "system.posix_acl_access" and
 * "system.posix_acl_default" (<linux/posix_acl_xattr.h>), little-endian:
 *
 *	u32 version (2), then entries { u16 tag; u16 perm; u32 id; }
 *
 * sorted by tag (USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER), named
 * entries by id. The engine stores them as plain xattrs; these pure
 * functions are the rules of fs/posix_acl.c that the kernel leaves to a
 * FUSE file system (validity, the mode an ACL implies, chmod, inheritance)
 * and the permission check, for the daemon's own decisions (pins). The
 * kernel checks every VFS access itself from the same xattrs.
 */
#ifndef PINFS_PMEM_ACL_H
#define PINFS_PMEM_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define PM_ACL_ACCESS "system.posix_acl_access"
#define PM_ACL_DEFAULT "system.posix_acl_default"

/* The largest ACL value: the kernel reads and writes them through one page
 * (fs/fuse/acl.c), 511 entries. One inode's xattrs share one block, so an
 * ACL that does not fit beside the others is refused with ENOSPC. */
#define PM_ACL_MAX_SIZE 4096

/* Is @name one of the two ACL xattrs? */
bool pm_acl_name(const char *name);

/* Checks @v as posix_acl_valid() does: the version, whole entries, the
 * order, one USER_OBJ, GROUP_OBJ and OTHER, a MASK when (and only once)
 * there are named entries, permission bits within rwx. Returns the number
 * of entries (0 for a bare header: no ACL) or -EINVAL. */
int pm_acl_valid(const void *v, size_t size);

/* The permission bits ACL @v implies, into the 0777 bits of *@mode (the
 * group class is the MASK when there is one). Returns 0 when @v says no
 * more than those bits (it can be dropped), 1 when it says more. @v must
 * be valid. */
int pm_acl_equiv_mode(const void *v, size_t size, mode_t *mode);

/* chmod: the owner, group class (MASK, else GROUP_OBJ) and other entries
 * of @v take the bits of @mode. */
void pm_acl_chmod(void *v, size_t size, mode_t mode);

/* A new object under a directory whose default ACL is @v (a copy, changed
 * in place into the new object's access ACL): the ACL's permissions and
 * the 0777 bits of *@mode, as asked by the creator, are masked by each
 * other (posix_acl_create_masq). Returns 0 when the result is equivalent
 * to *@mode (no access ACL is needed), 1 otherwise. */
int pm_acl_create_masq(void *v, size_t size, mode_t *mode);

/* Is the caller (fsuid @uid; @in_group says whether a gid is its fsgid
 * or one of its supplementary groups) granted @want (a mask of R_OK,
 * W_OK, X_OK) on an object of owner @owner, group @group, by its access
 * ACL @v (NULL: none) or else by the mode bits @mode, as the kernel's
 * generic_permission() decides before capabilities? 0 or -EACCES. */
typedef bool (*pm_in_group_fn)(void *ctx, gid_t gid);
int pm_acl_permission(const void *v, size_t size, uid_t owner, gid_t group, mode_t mode, uid_t uid,
		      pm_in_group_fn in_group, void *ctx, int want);

#endif

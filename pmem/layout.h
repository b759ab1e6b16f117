/* SPDX-License-Identifier: MIT */
/*
 * pmem/layout.h -- the on-media format of a pinfs pool. This file is the
 * format specification: every structure here is stored in the pool exactly as
 * declared. Nothing else in the tree defines on-media bytes.
 *
 * Byte order: little endian (pinfs runs on x86-64 and little-endian arm64
 * only; mount refuses big-endian hosts at build time, see the assert below).
 * All reserved fields and padding must be zero when written and are checked by
 * fsck.
 *
 * A pool is an array of 4 KiB blocks:
 *
 *	block 0                     superblock (struct pm_super)
 *	[journal_start, +journal_blocks)   redo journal (struct pm_jhdr + records)
 *	[itable_start, +itable_blocks)     inode table, PM_INODES_PER_BLOCK each
 *	[bitmap_start, +bitmap_blocks)     block allocation bitmap, 1 bit/block
 *	[csum_start, +csum_blocks)         with PM_FEAT_INCOMPAT_CSUM: one u32
 *	                                   CRC32C per block (PM_CSUM_*)
 *	[data_start, nblocks)              data, map, directory and xattr blocks
 *	block nblocks - 1                  with PM_FEAT_COMPAT_BACKUP_SB: a copy
 *	                                   of the superblock (see below)
 *
 * Block number 0 is the superblock, so a block pointer of 0 means "none"
 * (a hole in a block map, no xattr block, ...). Inode number 0 is invalid;
 * inode 1 is the root directory (FUSE_ROOT_ID). Inode N lives in slot N of
 * the inode table; a slot is in use iff its mode is non-zero.
 *
 * Metadata (everything but file data blocks) only ever changes through the
 * journal (pmem/journal.c explains the protocol), so it is always consistent
 * after recovery. File data blocks are written in place.
 */
#ifndef PINFS_PMEM_LAYOUT_H
#define PINFS_PMEM_LAYOUT_H

#include <stdint.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pinfs pools are little endian; big-endian hosts are not supported"
#endif

#define PM_BLOCK_SIZE 4096u
#define PM_BLOCK_SHIFT 12

/* "PINFSPL1" read as a little-endian u64 */
#define PM_SUPER_MAGIC 0x314c50534e464950ull
#define PM_VERSION 1u

/* Feature masks, as ext4 has them. A pool with an unknown incompat bit is
 * refused; an unknown ro_compat bit allows read-only use only (refused too,
 * pinfs has no read-only mode); unknown compat bits are ignored. */
#define PM_FEAT_COMPAT_BACKUP_SB 0x1ull /* backup superblock in the last block */
/* Made for experiments (mkfs.pinfs --experimental): only such a pool may be
 * mounted with the demonstration switches -o unsafe=... (pinfs(8)), which
 * turn off a safety rule to show what it prevents. Compat: a pinfs that does
 * not know it ignores it, and it changes nothing on media. */
#define PM_FEAT_COMPAT_EXPERIMENTAL 0x2ull
#define PM_FEAT_COMPAT_SUPP (PM_FEAT_COMPAT_BACKUP_SB | PM_FEAT_COMPAT_EXPERIMENTAL)
#define PM_FEAT_INCOMPAT_CSUM 0x1ull /* CRC32C per data block (issue 4) */
#define PM_FEAT_INCOMPAT_SUPP PM_FEAT_INCOMPAT_CSUM
#define PM_FEAT_RO_COMPAT_SUPP 0ull

#define PM_ROOT_INO 1ull
#define PM_NAME_MAX 255u
#define PM_SYMLINK_MAX 4095u
#define PM_LINK_MAX 65000u

/*
 * Superblock: block 0, bytes 0..4095. Written only through the journal after
 * mkfs. sb_csum is a CRC32C of the whole 4 KiB block with sb_csum taken as 0;
 * it is recomputed by every transaction that touches the superblock.
 */
struct pm_super {
	uint64_t magic;		  /* PM_SUPER_MAGIC */
	uint32_t version;	  /* PM_VERSION */
	uint32_t block_size;	  /* PM_BLOCK_SIZE */
	uint64_t feat_compat;	  /* PM_FEAT_COMPAT_* */
	uint64_t feat_incompat;	  /* PM_FEAT_INCOMPAT_* */
	uint64_t feat_ro_compat;  /* PM_FEAT_RO_COMPAT_* */
	uint8_t uuid[16];	  /* random at mkfs */
	uint64_t pool_size;	  /* bytes; == nblocks * PM_BLOCK_SIZE */
	uint64_t nblocks;	  /* total blocks, superblock included */
	uint64_t journal_start;	  /* first journal block */
	uint64_t journal_blocks;  /* journal length in blocks */
	uint64_t itable_start;	  /* first inode table block */
	uint64_t itable_blocks;	  /* inode table length in blocks */
	uint64_t ninodes;	  /* inode slots, slot 0 included (never used) */
	uint64_t bitmap_start;	  /* first allocation bitmap block */
	uint64_t bitmap_blocks;	  /* bitmap length in blocks */
	uint64_t data_start;	  /* first allocatable block */
	uint64_t free_blocks;	  /* free blocks in [data_start, nblocks) */
	uint64_t free_inodes;	  /* free inode slots */
	uint64_t orphan_head;	  /* first inode on the orphan list, 0 if none */
	uint64_t next_generation; /* generation for the next allocated inode */
	uint32_t clean;		  /* 1 after a clean unmount, 0 while mounted */
	uint32_t mount_count;	  /* incremented at every mount */
	uint64_t mkfs_time;	  /* seconds since the epoch */
	uint32_t sb_csum;	  /* CRC32C, see above */
	uint32_t errors;	  /* PM_SB_ERR_*: the engine found the pool corrupt
				   * while serving it; a mount is refused (unless
				   * forced, then read-only) until fsck.pinfs
				   * --repair clears it (pm_super_clear_errors) */
	uint64_t csum_start;	  /* first checksum block (CSUM feature), else 0 */
	uint64_t csum_blocks;	  /* checksum table length in blocks, else 0 */
	uint32_t npinholders;	  /* entries in pinholders[], <= PM_PINHOLDERS_MAX */
	uint32_t reserved1;	  /* must be zero */
	struct pm_pinholder {
		uint32_t pid;	       /* thread-group id */
		uint32_t pad;	       /* must be zero */
		uint64_t start_ticks;  /* /proc/PID/stat starttime: a reused pid differs */
	} pinholders[128];	  /* processes that hold (held at the last unmount) pins */
	uint8_t reserved[1832];	  /* must be zero */
};
#define PM_PINHOLDERS_MAX 128u
#define PM_SB_ERR_CORRUPT 0x1u /* an impossible on-media state was met */
_Static_assert(sizeof(struct pm_super) == PM_BLOCK_SIZE, "superblock size");

/*
 * Backup superblock (PM_FEAT_COMPAT_BACKUP_SB, set by mkfs since pinfs 0.1):
 * the last block of the pool, nblocks - 1, holds a copy of the superblock as
 * mkfs wrote it, with its own valid sb_csum. Only its static fields (magic,
 * version, features, uuid, geometry, mkfs_time) are meant: the counters, the
 * orphan head, the clean flag and the holder record in it are stale, and
 * fsck recomputes them when it restores the primary from it. The block is
 * marked in use in the allocation bitmap and is never allocated, so pinfs
 * versions that ignore the (compat) feature leave it alone. Pools made
 * without it are still valid; they just have no backup.
 */
static inline uint64_t pm_backup_sb_block(const struct pm_super *sb)
{
	return (sb->feat_compat & PM_FEAT_COMPAT_BACKUP_SB) ? sb->nblocks - 1 : 0;
}

/* A timestamp: seconds and nanoseconds since the epoch. */
struct pm_time {
	int64_t sec;
	uint32_t nsec; /* < 1e9 */
	uint32_t pad;  /* must be zero */
};

/* Inode flags (pm_dinode.flags) */
#define PM_IFL_ORPHAN 0x1u /* on the orphan list (see orphan_next) */

/*
 * Inode: 256 bytes, PM_INODES_PER_BLOCK per inode table block.
 *
 * The file's blocks are found through a radix block map: map_height levels of
 * 4 KiB map nodes, each holding PM_MAP_FANOUT little-endian u64 block
 * numbers (0 = hole). A map of height h covers 512^h file blocks; height 0
 * (map_root 0) is an empty file. File block i is found by taking 9 bits of i
 * per level, most significant level first.
 *
 * Directories keep their entries in their data blocks (struct pm_dirent
 * slots). Symlinks keep their target in data block 0, size == strlen(target).
 *
 * The orphan list links unlinked-but-open inodes (nlink 0, PM_IFL_ORPHAN):
 * their space is freed at the last close, or by the next mount after a crash,
 * which walks the list from pm_super.orphan_head. Truncates need no such list:
 * one journal transaction can always hold a whole truncate (the journal is
 * sized to hold the complete allocation bitmap, see pm_geometry()).
 */
struct pm_dinode {
	uint32_t mode;	      /* S_IFMT | permission bits; 0 = free slot */
	uint32_t uid;
	uint32_t gid;
	uint32_t nlink;
	uint64_t size;	      /* bytes */
	uint64_t blocks;      /* allocated blocks: data + map nodes + xattr */
	struct pm_time atime;
	struct pm_time mtime;
	struct pm_time ctime;
	struct pm_time btime; /* creation */
	uint64_t generation;  /* bumped each time the slot is reused */
	uint64_t rdev;	      /* device number for S_IFCHR / S_IFBLK */
	uint64_t map_root;    /* root map node, 0 if map_height == 0 */
	uint32_t map_height;  /* 0..PM_MAP_MAX_HEIGHT */
	uint32_t flags;	      /* PM_IFL_* */
	uint64_t xattr_block; /* block holding struct pm_xattr_hdr, or 0 */
	uint64_t parent;      /* directories: the parent's inode ("..") */
	uint64_t orphan_next; /* next inode on the orphan list, 0 = end */
	uint64_t orphan_prev; /* previous one, 0 = this is the head */
	uint64_t nentries;    /* directories: live entries, . and .. excluded */
	uint8_t reserved[88]; /* must be zero */
};
_Static_assert(sizeof(struct pm_dinode) == 256, "inode size");

#define PM_INODES_PER_BLOCK (PM_BLOCK_SIZE / sizeof(struct pm_dinode))
#define PM_MAP_FANOUT 512u
#define PM_MAP_SHIFT 9u
#define PM_MAP_MAX_HEIGHT 5u /* 512^5 blocks: far beyond any pool */

/*
 * Directory entries live in 32-byte slots, PM_DIR_SLOTS per directory block.
 * An entry takes pm_dirent_slots(name_len) consecutive slots in one block and
 * never spans blocks; a free slot has ino == 0. The first slot holds the
 * header and the first 16 bytes of the name; the name continues in the
 * following slots. Names are not NUL terminated. readdir offsets are
 * (block index * PM_DIR_SLOTS + slot + 1): entries never move, so offsets stay
 * valid while the directory changes.
 */
struct pm_dirent {
	uint64_t ino;	   /* 0 = free slot */
	uint32_t hash;	   /* pm_name_hash(name) */
	uint8_t name_len;  /* 1..255 */
	uint8_t type;	   /* DT_* of the inode */
	uint8_t nslots;	   /* slots this entry takes, 1..9 */
	uint8_t pad;	   /* must be zero */
	char name[16];	   /* first bytes of the name */
};
_Static_assert(sizeof(struct pm_dirent) == 32, "dirent size");
#define PM_DIR_SLOT 32u
#define PM_DIR_SLOTS (PM_BLOCK_SIZE / PM_DIR_SLOT)

static inline unsigned pm_dirent_slots(unsigned name_len)
{
	return name_len <= 16 ? 1 : 1 + (name_len - 16 + PM_DIR_SLOT - 1) / PM_DIR_SLOT;
}

/*
 * Extended attributes of an inode: one block, a header followed by packed
 * entries (struct pm_xattr_ent, name, value, padded to 4 bytes). The whole
 * set of a file is limited to one block, as in ext4 without ea_inode.
 */
#define PM_XATTR_MAGIC 0x52545841u /* "AXTR" */
struct pm_xattr_hdr {
	uint32_t magic;	 /* PM_XATTR_MAGIC */
	uint32_t count;	 /* entries */
	uint32_t used;	 /* bytes used after the header */
	uint32_t pad;	 /* must be zero */
};
struct pm_xattr_ent {
	uint8_t name_len;   /* 1..255, full name incl. namespace prefix */
	uint8_t pad;	    /* must be zero */
	uint16_t value_len; /* 0..PM_XATTR_SPACE */
};
#define PM_XATTR_SPACE (PM_BLOCK_SIZE - sizeof(struct pm_xattr_hdr))
static inline unsigned pm_xattr_ent_size(unsigned nlen, unsigned vlen)
{
	return (sizeof(struct pm_xattr_ent) + nlen + vlen + 3u) & ~3u;
}

/*
 * Data block checksums (PM_FEAT_INCOMPAT_CSUM): entry i of the table is the
 * CRC32C of pool block i while that block is clean, PM_CSUM_NONE while it is
 * not (dirty, pinned, just allocated, or never checksummed). A checksum is
 * written only after the block's bytes are durable, and invalidated (and
 * made durable) before the block is written again, so a valid entry always
 * describes durable bytes. A CRC of 0 is stored as PM_CSUM_ZERO.
 */
#define PM_CSUM_NONE 0u
#define PM_CSUM_ZERO 0xffffffffu
static inline uint32_t pm_csum_encode(uint32_t crc)
{
	return crc ? crc : PM_CSUM_ZERO;
}

/*
 * Journal: block journal_start holds the header; records follow from the
 * next block on. A record is struct pm_jrec followed by len bytes, padded to
 * 8. A transaction is committed once the header, with state
 * PM_JSTATE_COMMITTED and a CRC32C over the header (csum = 0) and the record
 * area, is durable.
 */
#define PM_JOURNAL_MAGIC 0x4c4e524a53464950ull /* "PIFSJRNL" */
#define PM_JSTATE_EMPTY 0u
#define PM_JSTATE_COMMITTED 1u
struct pm_jhdr {
	uint64_t magic;	   /* PM_JOURNAL_MAGIC */
	uint64_t seq;	   /* transaction sequence number */
	uint32_t state;	   /* PM_JSTATE_* */
	uint32_t nrecs;	   /* records */
	uint64_t body_len; /* bytes of records after the header block */
	uint32_t csum;	   /* CRC32C of header (csum = 0) then body */
	uint32_t pad;	   /* must be zero */
};
struct pm_jrec {
	uint64_t off; /* destination byte offset in the pool */
	uint32_t len; /* bytes */
	uint32_t pad; /* must be zero */
};

#endif /* PINFS_PMEM_LAYOUT_H */

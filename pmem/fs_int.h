/* SPDX-License-Identifier: MIT */
/*
 * pmem/fs_int.h -- internals shared by the engine's files (journal.c,
 * alloc.c, inode.c, bmap.c, dir.c, xattr.c, file.c, fs.c). Not for fusefs/.
 *
 * Locking
 *  1. fs->lock (a mutex) serialises every metadata change: the one open
 *     transaction, the allocator, the inode cache and every directory index.
 *     One lock is enough here: a transaction is a few microseconds of memory
 *     copies, far less than the FUSE round trip that carries it. So data
 *     never moves under fs->lock: a write or a fill that needs new blocks
 *     reserves them under it (pm_breserve), drops it to back them in the
 *     pool file (a page allocation per block on tmpfs), zero them, copy into
 *     them and make them durable, and takes it again to map them in one
 *     transaction (pm_bclaim); a big fill (fallocate, a pin's holes) does
 *     that 8 MiB at a time. Other clients' operations then wait for at most
 *     one batch's metadata, never for a file's data.
 *  2. ip->rw (a rwlock) guards a file's block map and size against the data
 *     path: readers hold it shared while the kernel copies out of the pool,
 *     writers and truncates hold it exclusive. So a block is never freed or
 *     reused while a read is still copying from it. A write or fill holds it
 *     exclusive from before its reservation until after the commit that maps
 *     the blocks, fs->lock dropped in between: no read or pin of the file
 *     sees a block whose bytes are not written yet, or a size ahead of them.
 *  3. ip->dlock (a mutex) guards ip->dirty, the set of blocks written and
 *     not yet flushed.
 *  4. fs->sv_lock (a mutex) guards the severer's queues (sever.c): freed
 *     blocks waiting to be cut out of the pool file, off fs->lock. The
 *     severer holds nothing while it punches, and never takes fs->lock
 *     while it holds sv_lock, so an allocator holding fs->lock may wait on
 *     sv_cv for the blocks in flight.
 *  5. fs->bounce_lock (a mutex, -o pinned_writeback=bounce, writeback.c)
 *     serializes making a file's shadow and writing snapshots into it.
 *  Order: ip->rw before fs->lock before ip->dlock; fs->lock before sv_lock. When two inodes' rw are
 *  needed (never today) take the lower inode number first. The one exception,
 *  bounce writeback: the file's ip->rw (shared), then fs->bounce_lock, then its
 *  shadow's ip->rw, then fs->lock. A shadow is never locked before its file (it
 *  has no name: only its file's fsync, scrub and last iput reach it), so
 *  whatever the inode numbers, no cycle.
 */
#ifndef PINFS_PMEM_FS_INT_H
#define PINFS_PMEM_FS_INT_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "pmem/fs.h"
#include "pmem/layout.h"

#define PM_ALIGN_BLOCKS 512u /* 2 MiB in blocks */

/* A block changed by the open transaction: a DRAM copy and the byte range
 * [lo, hi) that differs from the pool. */
struct pm_shadow {
	uint64_t blk;
	uint32_t lo, hi;
	uint8_t *buf;
};

/* The one open transaction. Locking: protected by fs->lock. */
struct pm_tx {
	bool active;
	struct pm_shadow *sh; /* shadows, in first-touch order */
	size_t nsh, capsh;
	uint64_t *hkey; /* open-addressing blk -> shadow index + 1 */
	uint32_t *hval;
	size_t hcap;
	uint64_t *freed; /* blocks freed: handed back after commit */
	size_t nfreed, capfreed;
	struct iovec *ordered; /* new data to persist before the commit */
	size_t nordered, capordered;
	uint64_t *alloced; /* (start, n) pairs allocated: undone by an abort */
	size_t nalloced, capalloced;
	bool sb_dirty; /* fs->sbc must be written */
};

/* Dirty data blocks of a file: sorted chunks of 512 blocks (2 MiB) with a
 * bitmap each. Locking: protected by ip->dlock. */
struct pm_dchunk {
	uint64_t chunk;
	uint64_t since_ns; /* CLOCK_MONOTONIC when the first block got dirty */
	uint64_t bits[PM_ALIGN_BLOCKS / 64];
};
struct pm_dirty {
	struct pm_dchunk *c;
	size_t n, cap;
};

/* In-core index of one directory. Locking: protected by fs->lock. */
struct pm_dir {
	uint64_t *h;	  /* (hash << 32) | (pos + 1); 0 empty, ~0 deleted */
	uint32_t hcap, hused;
	uint64_t *pblk;	  /* directory block index -> pool block */
	uint8_t *nfree;	  /* free slots per directory block */
	uint64_t nblocks; /* directory blocks */
	uint64_t hint;	  /* first block that may have room */
};

/*
 * In-core inode.
 * Locking: ino, hnext, refs, nlookup, d, times_dirty and dir are protected
 * by fs->lock; d.size and the block map are also only changed with rw held
 * exclusive, so readers holding rw shared may read them without fs->lock.
 */
struct pm_inode {
	uint64_t ino;
	struct pm_inode *hnext;	 /* inode cache chain */
	unsigned refs;		 /* pm_iget references */
	uint64_t nlookup;	 /* FUSE lookups; holds one of refs while > 0 */
	uint32_t ftype;		 /* d.mode & S_IFMT: immutable, read without locks */
	pthread_rwlock_t rw;	 /* data lock, see above */
	pthread_mutex_t dlock;	 /* guards dirty */
	struct pm_dinode d;	 /* the inode as it is (or will be) in the pool */
	bool times_dirty;	 /* d has timestamps the pool does not have yet */
	struct pm_dir *dir;	 /* directories: index, built on first use */
	struct pm_dirty dirty;	 /* data blocks written, not flushed */
	struct pm_wb_stats wb;	 /* this file's writeback counters; dlock */
	bool tmpfile;		 /* made by pm_tmpfile, no name yet: pm_link may
				  * give it one (fs->lock) */
	struct pm_inode *shadow; /* -o pinned_writeback=bounce: the unnamed
				  * file (an orphan) holding the fsync snapshots
				  * of this file's write-pinned blocks, one
				  * reference; protected by fs->bounce_lock, but
				  * the last pm_iput reads it without (no one
				  * else has the inode then) */
};

/* How freed blocks leave the pool file (sever.c). */
enum pm_sever_how {
	PM_SEVER_NONE,	  /* in-memory image or read-only: nothing is cut */
	PM_SEVER_PUNCH,	  /* a page-cache file (tmpfs, ...): PUNCH_HOLE */
	PM_SEVER_HUGETLB, /* hugetlbfs: only whole huge pages leave */
	PM_SEVER_DAX,	  /* an fsdax file: PUNCH_HOLE; no long-term pins */
	PM_SEVER_DEVICE,  /* devdax or no PUNCH_HOLE: nothing can be cut */
};

/* A freed run on its way through the severer (sever.c). */
struct pm_svrun {
	uint64_t start, n;
	bool must;	/* a lease covered it: check that the punch severed */
	int punched;	/* 0 punched and (if must) gone; 1 still resident;
			 * 2 still mapped; -errno the punch failed */
	bool held;	/* a retry of unsevered blocks: counted in
			 * unsev_blocks, not in sv_blocks, until decided */
};

struct pm_fs {
	struct pm_pool *pool;
	uint64_t data_start, nblocks; /* immutable copies: the pool's superblock
				       * is rewritten by every commit */
	pthread_mutex_t lock;	/* see "Locking" above */
	struct pm_tx tx;	/* protected by lock */
	struct pm_super sbc;	/* DRAM superblock; lock */
	uint64_t *bmap;		/* DRAM bitmap: 1 = not allocatable; lock */
	uint64_t avail;		/* blocks allocatable now; lock (the severer
				 * reads it without, as a hint: READ_ONCE) */
	uint64_t alloc_hint;	/* lock */
	uint64_t ino_hint;	/* lock */
	struct pm_inode **itab; /* inode cache buckets; lock */
	size_t icap, icount;	/* lock */
	uint64_t jseq;		/* last journal sequence; lock */
	unsigned debug;		/* PM_DEBUG_* */
	unsigned unsafe;	/* PM_UNSAFE_*: set once before use, then read
				 * without a lock (pm_fs_set_unsafe) */
	unsigned pinned_wb;	/* PM_PINNED_WB_*: set once before use */
	/* bounce writeback (writeback.c): serializes making shadow files and
	 * writing snapshots into them. Order: after ip->rw (the pinned file's,
	 * shared), before the shadow's ip->rw and fs->lock. */
	pthread_mutex_t bounce_lock;
	struct pm_pin_hooks hooks; /* set once before use */
	uint64_t *qset;		/* quarantined blocks: open addressing; lock */
	size_t qcap, qcount;	/* lock */
	/* sever.c: freed blocks leave the pool file before reuse */
	enum pm_sever_how sever_how; /* what the backing allows; lock */
	uint64_t sever_gran;	/* blocks per page of the backing (1, 512..) */
	uint64_t *taint;	/* bitmap, 1 = a lease ended on the block while a
				 * file owned it: sever it when freed. NULL
				 * until the first; lock */
	bool taint_lost;	/* the bitmap could not be had: every freed
				 * block is treated as tainted; lock */
	struct pm_run *unsev;	/* freed, not yet severed: out of the free
				 * list; lock */
	size_t nunsev, capunsev; /* lock */
	uint64_t unsev_blocks, unsev_lost; /* lock */
	uint64_t severed;	/* blocks cut out before reuse (counter); lock */
	/* the severer thread: punches freed blocks off fs->lock (4 KiB-page
	 * backings only); every field below is protected by sv_lock */
	pthread_mutex_t sv_lock;
	pthread_cond_t sv_cv;	/* work queued, or a batch done */
	pthread_t sv_thr;
	bool sv_on, sv_stop;
	struct pm_svrun *sv_pend, *sv_done; /* queued; punched, to give back */
	size_t sv_npend, sv_cappend, sv_ndone, sv_capdone;
	uint64_t sv_inflight;	/* runs taken by the severer, not yet done */
	uint64_t sv_blocks;	/* blocks queued, in flight or done: free soon */
	struct pm_svrun *zpend;	/* dense: free runs not backed yet (the mount's
				 * free space, runs the severer gave back), to
				 * back with zeroed pages once the pool is idle */
	size_t nzpend, capzpend;
	bool zrescan;		/* the queue overflowed: find them in the
				 * bitmaps, from zscan_at on; sv_lock */
	bool zrestart;		/* it overflowed again while a rescan had
				 * sv_lock dropped: start over; sv_lock */
	uint64_t zscan_at;
	uint64_t zseen, zseen_ns; /* fs->zgen as the severer last saw it, and
				   * when (CLOCK_MONOTONIC); sv_lock */
	uint32_t *csum;		/* checksum table in the pool, NULL without */
	struct pm_wb_stats wb;	/* mount writeback counters; wblock */
	pthread_mutex_t wblock;	/* guards wb and the flusher's state */
	pthread_cond_t wbcv;	/* wakes the flusher */
	pthread_t flusher;
	bool flusher_on, flusher_stop; /* wblock */
	double wb_interval, wb_expire;  /* seconds */
	uint8_t *jbuf;		/* journal staging, for non-pmem records */
	bool errors;		/* pool found corrupt: no more changes; lock */
	unsigned nsaid;		/* corruption messages logged; lock */
	uint64_t *bad;		/* inodes refused (-EUCLEAN): sorted; set at mount */
	size_t nbad;
	/* backing.c: the pool file's pages are allocated before the first
	 * store into them (pm_back) */
	bool back_on;		/* a file whose holes must be filled first;
				 * cleared when fallocate says EOPNOTSUPP; lock */
	uint64_t *mback;	/* metadata blocks (< data_start) known backed:
				 * bitmap, NULL without; lock */
	unsigned back_said;	/* backing failures logged; lock */
	/* dense (-o dense, PM_MOUNT_DENSE): free blocks are kept backed by
	 * zeroed pages, so a fill neither allocates nor zeroes them */
	uint64_t *zmap;		/* free blocks whose pool page is allocated and
				 * holds zeros: bitmap, NULL unless dense; lock */
	uint64_t zgen;		/* blocks taken so far (a generation): set
				 * under lock, read atomically without */
	bool zfull;		/* the backing refused a page: no more; atomic */
	const char *dense_why;	/* why -o dense was not taken up; set at mount */
};

/* fs.c -- corruption. The engine met an impossible on-media state: logs
 * @fmt (the first few times), sets the errors flag in DRAM and, durably, in
 * the superblock; from then on every change fails with -EROFS. Called with
 * fs->lock held, in a transaction or not. Returns -EUCLEAN. */
int pm_fs_corrupt(struct pm_fs *fs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* -EROFS once the pool was found corrupt, else 0. Set under fs->lock,
 * never cleared while mounted: callers without the lock may ask too. */
static inline int pm_fs_writable(const struct pm_fs *fs)
{
	return __atomic_load_n(&fs->errors, __ATOMIC_RELAXED) ? -EROFS : 0;
}
/* Is @ino on the mount's list of inodes refused for sharing blocks? */
bool pm_ino_bad(const struct pm_fs *fs, uint64_t ino);

/* journal.c -- transactions */
void pm_tx_begin(struct pm_fs *fs);
/* Returns a writable shadow of @blk (copied from the pool on first touch). */
uint8_t *pm_tx_block(struct pm_fs *fs, uint64_t blk);
/* Like pm_tx_block for a block just allocated: starts zeroed, all dirty. */
uint8_t *pm_tx_block_new(struct pm_fs *fs, uint64_t blk);
/* Marks [p, p+len) of a shadow as changed. */
void pm_tx_dirty(struct pm_fs *fs, const void *p, size_t len);
/* Readable view of @blk: the shadow if the open transaction changed it. */
const uint8_t *pm_tx_peek(struct pm_fs *fs, uint64_t blk);
/* Data that must be durable before the transaction commits (new blocks). */
void pm_tx_order(struct pm_fs *fs, const void *p, size_t len);
/* Can the running transaction touch @nblocks more metadata blocks, each
 * journaled whole in the worst case, and still fit the journal? */
bool pm_tx_room(const struct pm_fs *fs, size_t nblocks);
/* Commits: durable on return. Aborts the process if the journal overflows
 * (an engine bug: every operation is bounded by pm_geometry()). */
void pm_tx_commit(struct pm_fs *fs);
void pm_tx_release(struct pm_tx *tx);
/* Drops an open transaction: nothing reaches the pool, allocations are given
 * back. The caller restores the in-core inodes it changed
 * (pm_inode_reload). For failures found mid-way, e.g. a corrupt map. */
void pm_tx_abort(struct pm_fs *fs);
void pm_inode_reload(struct pm_fs *fs, struct pm_inode *ip);
/* Is @b a block a map may point at? Logs (once) when not. */
bool pm_blk_ok(struct pm_fs *fs, uint64_t b);
/* Replays a committed journal transaction (see journal.c): 1 replayed, 0
 * none, -EUCLEAN (message in @err) if a record lies outside the pool. */
int pm_jreplay(struct pm_pool *pool, uint64_t *seq, char *err, size_t errlen);

/* backing.c -- the pool file's backing. A sparse pool's free blocks and
 * untouched metadata are holes of its file; on tmpfs the first store into
 * one allocates a page, and a full tmpfs answers that store with SIGBUS.
 * So the engine allocates the backing (fallocate KEEP_SIZE) before it
 * stores: a full backing store fails the request with ENOSPC, before
 * anything is written. All with fs->lock held. */
void pm_back_init(struct pm_fs *fs);
/* Backs pool blocks [b, b + n): 0, -ENOSPC (the backing store is full), or
 * -EIO. Blocks below data_start are remembered once backed. */
int pm_back(struct pm_fs *fs, uint64_t b, uint64_t n);
/* Backs a data run about to be allocated (unless @data_backed: a dense
 * pool's zeroed blocks) and the metadata its allocation stores into: its
 * bits in the bitmap, its checksum table entries. */
int pm_back_run(struct pm_fs *fs, uint64_t b, uint64_t n, bool data_backed);
/* Dense pools (backing.c): sets fs->zmap up, at mount, if the backing
 * allows (else why not, and the pool stays sparse); backs blocks
 * [b, b + n), holes of the pool file, with pages that read as zeros
 * (without fs->lock: allocating pages changes no byte, so the blocks may be
 * taken and written meanwhile; false once the backing refuses); marks them
 * in fs->zmap (fs->lock); counts the blocks marked (fs->lock). */
const char *pm_dense_init(struct pm_fs *fs);
bool pm_zero_back(struct pm_fs *fs, uint64_t b, uint64_t n);
void pm_zmap_set(struct pm_fs *fs, uint64_t b, uint64_t n);
uint64_t pm_zmap_count(struct pm_fs *fs);
/* The first block in [b, end) free and not in fs->zmap (@want), or taken
 * or in it (!@want); fs->lock held (alloc.c). */
uint64_t pm_zfind(const struct pm_fs *fs, uint64_t b, uint64_t end, bool want);
/* True when pool blocks [b, b + n) read as zeros without being written: a
 * hole of a page-cache pool file (backing.c). */
bool pm_pool_zeros(struct pm_fs *fs, uint64_t b, uint64_t n);
/* Are blocks [b, b + n) all free in fs->bmap (alloc.c)? fs->lock held. */
bool pm_run_free(const struct pm_fs *fs, uint64_t b, uint64_t n);
/* Whether pool block @pblk is pinned (*@pinned), and how many blocks from
 * it, at most @n (>= 1), are the same: the pin hooks' pinned_span, else
 * their pinned one block at a time (writeback.c). */
uint64_t pm_pinned_span(struct pm_fs *fs, uint64_t pblk, uint64_t n, bool *pinned);
/* Backs the pool bytes [off, off + len) (rounded out to blocks). */
int pm_back_bytes(struct pm_fs *fs, uint64_t off, uint64_t len);
/* Unmount: a SIGBUS met while mounted sets the superblock's errors flag
 * (if pm_fault_take could not); the handler stops watching @fs. */
void pm_fault_unmount(struct pm_fs *fs);

/* bmap.c: does the path to @fblk in @d's map cross a node a SIGBUS
 * replaced with zeros (pm_fault_lost)? Its pointers are lost: the file's
 * blocks under it would read as holes. */
bool pm_bmap_lost(struct pm_fs *fs, const struct pm_dinode *d, uint64_t fblk);

/* alloc.c -- blocks and inode slots; all called in a transaction */
int pm_alloc_init(struct pm_fs *fs);
/* Allocates up to @want contiguous blocks, near @goal; returns the first in
 * *out and the count (>= 1), or -ENOSPC. */
int pm_balloc(struct pm_fs *fs, uint64_t goal, uint64_t want, uint64_t *out);
/* Reservations (see alloc.c): like pm_balloc, but the blocks are only taken
 * in DRAM, outside any transaction, and not backed; the caller backs them
 * (pm_back_run) and fills them without fs->lock, then, in the transaction
 * that maps them, claims them
 * (pm_bclaim: a pm_tx_abort gives claimed blocks back) or gives them back
 * (pm_bunreserve). All with fs->lock held. *@zero: whether every block of
 * the run was backed by zeroed pages (dense, fs->zmap): neither to back nor
 * to zero. Taking a block, by any of these, always forgets that it was. */
int pm_breserve(struct pm_fs *fs, uint64_t goal, uint64_t want, uint64_t *out, bool *zero);
/* Like pm_breserve, but the run starts at a block whose offset in its 2 MiB
 * chunk is @phase (0..511) and stays inside that chunk; -ENOSPC if there is
 * no such run, and the caller falls back to pm_breserve. */
int pm_breserve_aligned(struct pm_fs *fs, unsigned phase, uint64_t want, uint64_t *out,
			bool *zero);
void pm_bclaim(struct pm_fs *fs, uint64_t start, uint64_t n);
void pm_bunreserve(struct pm_fs *fs, uint64_t start, uint64_t n);
void pm_bfree(struct pm_fs *fs, uint64_t blk);
void pm_release_freed(struct pm_fs *fs);
/* First block in [b, end) whose fs->bmap bit is @used, or @end. */
uint64_t pm_bmap_find(const struct pm_fs *fs, uint64_t b, uint64_t end, bool used);
/* Makes blocks [b, b+n) allocatable (they were taken in fs->bmap). */
void pm_bavail_add(struct pm_fs *fs, uint64_t b, uint64_t n);

/* sever.c -- freed blocks leave the pool file before reuse; fs->lock held
 * unless said otherwise. */
/* At mount: what the backing allows (fs->sever_how, fs->sever_gran). */
void pm_sever_init(struct pm_fs *fs);
/* Freed, unpinned blocks [b, b+n) (taken in fs->bmap) become allocatable,
 * cut out of the pool file first; @must: a lease covered them (else only
 * tainted ones must be). Blocks that cannot be severed yet stay taken. */
void pm_sever_release(struct pm_fs *fs, uint64_t b, uint64_t n, bool must);
/* A lease ended on blocks [b, b+n) that a file still owns. */
void pm_sever_taint(struct pm_fs *fs, uint64_t b, uint64_t n);
/* No block is allocatable but the severer holds some: cut them out here
 * and give them back (fs->lock held; waits for the batch in flight).
 * True if any came back. */
bool pm_sever_wait(struct pm_fs *fs);
/* fs->avail, after taking back what the severer holds if fewer than
 * @need blocks are allocatable (fs->lock held). */
uint64_t pm_avail_for(struct pm_fs *fs, uint64_t need);
/* Blocks freed that the severer has not given back yet (fs->lock held). */
uint64_t pm_sever_pending(struct pm_fs *fs);
/* Starts / stops (and drains, giving every block back) the severer. */
void pm_sever_start(struct pm_fs *fs);
void pm_sever_stop(struct pm_fs *fs);
int pm_ialloc(struct pm_fs *fs, uint64_t *ino);
/* At mount: walks every inode's block map and xattr block. A block named
 * twice (by two inodes, or twice by one) puts its owners on fs->bad; a
 * named block the bitmap calls free is taken in DRAM, so never handed out;
 * both mark the pool corrupt. Called before any transaction. */
int pm_alloc_check(struct pm_fs *fs);

/* inode.c */
/* Are the fields of in-use inode @di that the engine follows or computes
 * with in range (type, map height and root, xattr block, orphan links,
 * parent, size, link count)? 0 or -EUCLEAN; logs nothing. */
int pm_dinode_check(const struct pm_fs *fs, const struct pm_dinode *di);
/* Drops a just-created in-core inode whose transaction was aborted. */
void pm_icache_discard(struct pm_fs *fs, struct pm_inode *ip);
struct pm_dinode *pm_dinode_ptr(struct pm_pool *p, uint64_t ino);
/* The next stretch [*lo, *hi) of inode slots at or after @ino, below @end,
 * that may be in use; false if none is left. Slots in a hole of the pool
 * file read as zeros (free) and are skipped without being read: whoever
 * walks the inode table goes through it, since reading a sparse pool's
 * whole table through the mapping (32 GiB per TiB of pool with the default
 * inode count) would allocate all of it on tmpfs (pm_pool_data). */
bool pm_islots_next(struct pm_pool *p, uint64_t ino, uint64_t end, uint64_t *lo, uint64_t *hi);
void pm_inode_write(struct pm_fs *fs, struct pm_inode *ip); /* in a tx */
struct pm_inode *pm_icache_find(struct pm_fs *fs, uint64_t ino);
int pm_iget_locked(struct pm_fs *fs, uint64_t ino, struct pm_inode **out);
int pm_icache_insert(struct pm_fs *fs, uint64_t ino, const struct pm_dinode *d,
		     struct pm_inode **out);
void pm_iput_locked(struct pm_fs *fs, struct pm_inode *ip);
void pm_now(struct pm_time *t);
void pm_touch(struct pm_inode *ip, bool m, bool c);
void pm_inode_free_blocks(struct pm_fs *fs, struct pm_inode *ip);
void pm_orphan_add(struct pm_fs *fs, struct pm_inode *ip);
void pm_orphan_del(struct pm_fs *fs, struct pm_inode *ip);
void pm_sb_dirty(struct pm_fs *fs);
unsigned pm_dtype(uint32_t mode);
/* Is @gid the caller's group or one of its supplementary groups? */
bool pm_cred_in_group(const struct pm_cred *cr, gid_t gid);
/*
 * The setuid/setgid kill of a write or truncate (the kernel's
 * should_remove_suid() and file_remove_privs()): an unprivileged caller
 * (root stands in for CAP_FSETID) clears S_ISUID, and S_ISGID where group
 * execute is set (S_ISGID alone marks mandatory locking and stays).
 * pm_kill_priv_needed() says whether it would change @d; pm_kill_priv()
 * changes it. Called with fs->lock held.
 */
bool pm_kill_priv_needed(const struct pm_cred *cr, const struct pm_dinode *d);
void pm_kill_priv(struct pm_dinode *d);

/* bmap.c -- block maps */
/* Pool block of file block @fblk, 0 for a hole. @tx: see shadows. */
uint64_t pm_bmap_get(struct pm_fs *fs, const struct pm_dinode *d, uint64_t fblk, bool tx);
/* The run starting at @fblk: returns its length (<= @max) and its first pool
 * block in *pblk (0 for a run of holes). */
uint64_t pm_bmap_run(struct pm_fs *fs, const struct pm_dinode *d, uint64_t fblk, uint64_t max,
		     uint64_t *pblk, bool tx);
/* Maps @fblk to @pblk, allocating map nodes; in a tx. */
int pm_bmap_set(struct pm_fs *fs, struct pm_inode *ip, uint64_t fblk, uint64_t pblk);
/* Frees every block of file blocks [from, to) and emptied map nodes; in a
 * tx. Returns the number of data blocks freed. */
uint64_t pm_bmap_punch(struct pm_fs *fs, struct pm_inode *ip, uint64_t from, uint64_t to);
/* Map nodes needed at most to map @n new blocks */
uint64_t pm_bmap_worst(const struct pm_dinode *d, uint64_t n);
/* Data blocks that one file can be given out of @nfree free blocks, the
 * map nodes they need included: by one fallocate, or by writes of any size
 * in order from its start (what statfs promises as f_bavail). */
uint64_t pm_bmap_room(uint64_t nfree);
/* Visits every allocated block (data and map nodes) */
typedef void (*pm_bmap_visit_t)(void *ctx, uint64_t fblk, uint64_t pblk, unsigned level);
int pm_bmap_walk(struct pm_pool *p, const struct pm_dinode *d, pm_bmap_visit_t fn, void *ctx);

/* dir.c */
/* Slots taken by the entry at slot @s of directory block @b: 0 free, -1
 * malformed (skipped as one slot), else its nslots. */
int pm_dirent_len(const struct pm_fs *fs, const uint8_t *b, unsigned s);
uint32_t pm_name_hash(const char *name, size_t len);
int pm_dir_load(struct pm_fs *fs, struct pm_inode *dir);
int pm_dir_find(struct pm_fs *fs, struct pm_inode *dir, const char *name, uint64_t *ino,
		uint32_t *pos);
int pm_dir_add(struct pm_fs *fs, struct pm_inode *dir, const char *name, uint64_t ino,
	       unsigned type);
void pm_dir_del(struct pm_fs *fs, struct pm_inode *dir, uint32_t pos);
void pm_dir_set(struct pm_fs *fs, struct pm_inode *dir, uint32_t pos, uint64_t ino, unsigned type);
void pm_dir_free(struct pm_dir **dp);

/* file.c */
void pm_dirty_free(struct pm_dirty *ds);
int pm_truncate_locked(struct pm_fs *fs, struct pm_inode *ip, uint64_t size);

/* writeback.c */
uint64_t pm_mono_ns(void); /* CLOCK_MONOTONIC, in ns */
/* Marks file blocks [fblk, fblk+n) dirty before they are written in place:
 * a clean block's checksum is invalidated, durably, first. Called with
 * ip->rw held (either way) or the last reference. */
void pm_dirty_mark(struct pm_fs *fs, struct pm_inode *ip, uint64_t fblk, uint64_t n, bool tx);
/* Bytes of file blocks [fblk, fblk+n) are about to change, and the caller
 * makes the change durable before it returns (pm_write_settle, or the
 * commit of the transaction that orders them). With checksums this is
 * pm_dirty_mark: the block is dirty until writeback records its new
 * checksum. Without, only pinned blocks become dirty (never clean while
 * pinned); the others stay clean, since they will be durable. Locks as
 * pm_dirty_mark. */
void pm_dirty_mark_written(struct pm_fs *fs, struct pm_inode *ip, uint64_t fblk, uint64_t n,
			   bool tx);
/* write() has copied [off, off+len) into the file's blocks: makes those bytes
 * durable before write() returns (fs-dax's flushing copies), so sync(2) and
 * syncfs(2), of which a FUSE daemon never hears, find nothing of write()'s
 * left to do. Unpinned blocks end clean (checksummed, on a checksummed pool;
 * a block dirty from before is flushed whole first); pinned ones are flushed
 * too but stay dirty. @ordered: the bytes were already ordered before a
 * transaction's commit, only blocks dirty from before need a flush.
 * Called with ip->rw held exclusive, fs->lock not held. */
void pm_write_settle(struct pm_fs *fs, struct pm_inode *ip, uint64_t off, uint64_t len,
		     bool ordered);
/* File blocks [from, to) left the file (truncate, hole punch, destroy):
 * they leave its dirty set at once, so the counters never count freed
 * blocks. Called with fs->lock held (it takes ip->dlock), ip->rw held
 * exclusive or the last reference. */
void pm_dirty_forget(struct pm_inode *ip, uint64_t from, uint64_t to);
/* Integrity writeback of one file: every dirty block and every block under a
 * write pin is made durable; unpinned ones become clean (checksummed),
 * pinned ones stay dirty. ip->rw held, or the last reference. */
void pm_writeback_inode(struct pm_fs *fs, struct pm_inode *ip, bool integrity,
			uint64_t older_than_ns);
/* Verifies clean blocks of [fblk, fblk+n) against their checksums; -EIO on a
 * mismatch (logged). ip->rw held. */
int pm_csum_verify(struct pm_fs *fs, struct pm_inode *ip, uint64_t fblk, uint64_t n);

/* xattr.c */
void pm_xattr_free(struct pm_fs *fs, struct pm_inode *ip);
/* An attribute block image @nb (PM_BLOCK_SIZE bytes), edited outside a
 * transaction and stored in one; fs->lock held throughout. */
/* @nb becomes a copy of @ip's attribute block (checked), or an empty one. */
int pm_xattr_load(struct pm_fs *fs, struct pm_inode *ip, uint8_t *nb);
/* The value of @name in image @b (*@len its length), or NULL. */
const void *pm_xattr_lookup(const uint8_t *b, const char *name, size_t *len);
/* Removes @name from @nb and, unless @remove, appends name = value;
 * XATTR_CREATE/REPLACE in @flags. -ENOSPC when it does not fit the block. */
int pm_xattr_edit(uint8_t *nb, const char *name, const void *value, size_t vlen, int flags,
		  bool remove);
/* Will storing @nb allocate a block (the caller checks there is one)? */
bool pm_xattr_needs_block(struct pm_inode *ip, const uint8_t *nb);
/* Makes @nb @ip's attribute block (frees the block when @nb is empty); in a
 * transaction; the caller writes the inode. -ENOSPC only on a corrupt pool. */
int pm_xattr_store(struct pm_fs *fs, struct pm_inode *ip, const uint8_t *nb);
/*
 * POSIX ACL inheritance (posix_acl_create) for a new object of *@mode
 * under @dir: with a default ACL on @dir, builds in @nb the new object's
 * attributes (its access ACL when it says more than the mode, and for a
 * directory the default ACL) and masks *@mode by it; without one, takes
 * the bits of @umask out of *@mode. 1: @nb is to be stored, 0: nothing to
 * store, -errno (-ENOSPC: the ACLs do not fit a block). Before the
 * transaction.
 */
int pm_acl_inherit(struct pm_fs *fs, struct pm_inode *dir, mode_t *mode, mode_t umask,
		   uint8_t *nb);
/* chmod of @ip to @mode: when @ip has an access ACL, builds in @nb its
 * attributes with the ACL changed as posix_acl_chmod() does. 1: @nb is to
 * be stored, 0: no ACL, -errno. Before the transaction. */
int pm_acl_chmod_prepare(struct pm_fs *fs, struct pm_inode *ip, mode_t mode, uint8_t *nb);

#define PM_DIV_UP(a, b) (((a) + (b) - 1) / (b))

#endif

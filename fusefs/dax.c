/* SPDX-License-Identifier: MIT */
/*
 * fusefs/dax.c -- the dax state file: how layout leases (PINFS_PIN_LAYOUT,
 * taken by pinfs-dax's preloaded library for unmodified programs) learn,
 * without a round trip, that they were revoked or that their file has page
 * cache users (include/pinfs/abi.h, struct pinfs_dax_slot).
 *
 * The file is POOL.dax, beside the pool, with the pool's owner, group and
 * read bits (who may map the pool may read it; only this daemon writes it),
 * served as the read-only xattr PINFS_XATTR_DAXSTATE. Holders map it
 * read-only and read their slot before and after every copy (a seqlock):
 * the daemon changes a slot's state or flags, then bumps its seq.
 *
 * Slots are handed out at pin time and taken back lazily: a slot whose
 * lease the table no longer holds is free (a holder that unpinned or exited
 * reads it no more), so neither unpin nor exit needs a hook here.
 *
 * Locking: dax.lock guards the slot table's writes (allocation, state and
 * flag changes). It is taken under coh.lock (fusefs/coherent.c marks a
 * file) and under a file's ip->rw (a revocation from lease_may_free), with
 * no lease lock held; under it the lease table's lock is taken (lease_get,
 * to find free slots), never the other way round. It is never held across
 * a syscall other than the futex wake. dax.hdr is set before any request
 * is served and cleared under dax.lock at stop (then unmapped): read
 * without the lock only as a hint, and again under it before a slot is
 * touched.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "fusefs/fusefs.h"
#include "lease/lease.h"
#include "lease/pin.h"
#include "pinfs/abi.h"

#define DAX_SIZE (sizeof(struct pinfs_dax_hdr) + PINFS_DAX_SLOTS * sizeof(struct pinfs_dax_slot))

static struct {
	pthread_mutex_t lock;
	struct pinfs_dax_hdr *hdr; /* NULL: no state file (layout pins refused) */
	struct pinfs_dax_slot *slot;
	struct ffs *f;
	char path[4096 + 8];
} dax = { .lock = PTHREAD_MUTEX_INITIALIZER };

const char *ffs_dax_path(void)
{
	return dax.hdr ? dax.path : NULL;
}

int ffs_dax_start(struct ffs *f)
{
	struct stat ps;
	void *p;
	int fd;

	if (fstat(f->pool->fd, &ps) < 0 || !S_ISREG(ps.st_mode))
		return -EOPNOTSUPP; /* a device: no directory beside it to use */
	snprintf(dax.path, sizeof(dax.path), "%s.dax", f->pool_path);
	(void)unlink(dax.path); /* a previous mount's: nobody may trust it */
	fd = open(dax.path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		goto fail;
	if (ftruncate(fd, DAX_SIZE) < 0 ||
	    (fchown(fd, ps.st_uid, ps.st_gid) < 0 && geteuid() == 0) ||
	    fchmod(fd, (ps.st_mode & 0444) | 0200) < 0) {
		close(fd);
		(void)unlink(dax.path);
		goto fail;
	}
	p = mmap(NULL, DAX_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		(void)unlink(dax.path);
		goto fail;
	}
	dax.hdr = p;
	dax.slot = (struct pinfs_dax_slot *)(dax.hdr + 1);
	dax.hdr->version = 1;
	dax.hdr->nslots = PINFS_DAX_SLOTS;
	__atomic_store_n(&dax.hdr->magic, PINFS_DAX_MAGIC, __ATOMIC_RELEASE);
	dax.f = f;
	return 0;
fail:
	fprintf(stderr, "pinfs: %s: cannot make the dax state file (%s): pinfs-dax runs "
			"through FUSE\n", dax.path, strerror(errno));
	return -errno;
}

static void slot_bump(struct pinfs_dax_slot *s)
{
	__atomic_add_fetch(&s->seq, 1, __ATOMIC_RELEASE);
}

static void revokes_bump(void)
{
	__atomic_add_fetch(&dax.hdr->revokes, 1, __ATOMIC_RELEASE);
	syscall(SYS_futex, &dax.hdr->revokes, FUTEX_WAKE, 0x7fffffff, NULL, NULL, 0);
}

void ffs_dax_stop(void)
{
	struct pinfs_dax_hdr *hdr;

	if (!dax.hdr)
		return;
	/* every holder stops using its map: nobody serves FUSE after this */
	pthread_mutex_lock(&dax.lock);
	for (uint32_t i = 0; i < PINFS_DAX_SLOTS; i++) {
		struct pinfs_dax_slot *s = &dax.slot[i];
		if (s->lease_id && s->state != PINFS_LEASE_REVOKED) {
			s->state = PINFS_LEASE_REVOKED;
			slot_bump(s);
		}
	}
	revokes_bump();
	/* under the lock: a revocation or mark that waited for it finds no
	 * state file, never an unmapped one */
	hdr = dax.hdr;
	__atomic_store_n(&dax.hdr, NULL, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&dax.lock);
	(void)unlink(dax.path);
	munmap(hdr, DAX_SIZE);
}

int ffs_dax_slot_new(uint64_t id, uint64_t ino, bool mmap, uint32_t *slot)
{
	struct lease_table *t;
	struct lease l;
	uint32_t i;

	if (!dax.hdr)
		return -EOPNOTSUPP;
	t = lease_mgr_table(dax.f->lm);
	pthread_mutex_lock(&dax.lock);
	if (!dax.hdr) { /* stopped meanwhile */
		pthread_mutex_unlock(&dax.lock);
		return -EOPNOTSUPP;
	}
	for (i = 0; i < PINFS_DAX_SLOTS; i++) {
		struct pinfs_dax_slot *s = &dax.slot[i];
		if (!s->lease_id || lease_get(t, s->lease_id, &l) == -ENOENT)
			break;
	}
	if (i == PINFS_DAX_SLOTS) {
		pthread_mutex_unlock(&dax.lock);
		return -ENOMEM;
	}
	dax.slot[i].state = PINFS_LEASE_ACTIVE;
	dax.slot[i].flags = mmap ? PINFS_DAX_MMAP : 0;
	dax.slot[i].ino = ino;
	__atomic_store_n(&dax.slot[i].lease_id, id, __ATOMIC_RELEASE);
	/* a truncate may have revoked the lease between the pin and now:
	 * its ffs_dax_revoked() found no slot to mark. The lease's state is
	 * set before that call, which takes dax.lock: a revocation is seen
	 * either here or there, never missed (else the holder would serve a
	 * revoked lease, its stores lost in quarantined blocks) */
	if (lease_get(t, id, &l) || l.state != PINFS_LEASE_ACTIVE)
		dax.slot[i].state = PINFS_LEASE_REVOKED;
	slot_bump(&dax.slot[i]);
	pthread_mutex_unlock(&dax.lock);
	/* after the slot names @ino: a fill that marks the file from now on
	 * finds it (ffs_dax_mapped), one before is seen here */
	if (ffs_coh_cached(ino, 0, 0))
		ffs_dax_mapped(ino, true);
	*slot = i;
	return 0;
}

/* lease_ops.layout_revoked */
void ffs_dax_revoked(void *ctx, uint64_t id)
{
	(void)ctx;
	if (!dax.hdr)
		return;
	pthread_mutex_lock(&dax.lock);
	if (!dax.hdr) { /* stopped meanwhile: every slot was revoked */
		pthread_mutex_unlock(&dax.lock);
		return;
	}
	for (uint32_t i = 0; i < PINFS_DAX_SLOTS; i++) {
		struct pinfs_dax_slot *s = &dax.slot[i];
		if (s->lease_id == id) {
			s->state = PINFS_LEASE_REVOKED;
			slot_bump(s);
			break;
		}
	}
	revokes_bump();
	pthread_mutex_unlock(&dax.lock);
}

/*
 * A plain mapping's first fill of @ino (fusefs/coherent.c), after
 * ffs_dax_mapped(@ino, true) woke the holders: waits, up to a second, until
 * no lease taken for a pinfs-dax shared mapping of it is left (each
 * holder's watcher replaces its mapping by the kernel's and unpins), so
 * that the fill reads every store made through them, and none is made
 * after it. A holder that does not answer in time is left behind: its
 * later stores can be lost to the page cache's writeback, as two programs'
 * unsynchronized stores to one page could be anyway.
 */
void ffs_dax_unmap_wait(uint64_t ino)
{
	struct timespec now, until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += 1;
	for (;;) {
		struct lease_table *t;
		struct lease l;
		bool any = false;

		pthread_mutex_lock(&dax.lock);
		t = dax.hdr ? lease_mgr_table(dax.f->lm) : NULL;
		for (uint32_t k = 0; t && k < PINFS_DAX_SLOTS && !any; k++) {
			struct pinfs_dax_slot *s = &dax.slot[k];
			/* an ended lease (unpinned while a fork child still
			 * maps its blocks) is the child's library's to hand
			 * over, and it does not unpin: not waited for */
			any = s->lease_id && s->ino == ino && (s->flags & PINFS_DAX_MMAP) &&
			      lease_get(t, s->lease_id, &l) == 0 && !(l.flags & LEASE_ENDED);
		}
		pthread_mutex_unlock(&dax.lock);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (!any || now.tv_sec > until.tv_sec ||
		    (now.tv_sec == until.tv_sec && now.tv_nsec >= until.tv_nsec))
			return;
		usleep(100);
	}
}

void ffs_dax_mapped(uint64_t ino, bool on)
{
	bool changed = false;

	if (!dax.hdr)
		return;
	pthread_mutex_lock(&dax.lock);
	for (uint32_t i = 0; dax.hdr && i < PINFS_DAX_SLOTS; i++) {
		struct pinfs_dax_slot *s = &dax.slot[i];
		if (s->lease_id && s->ino == ino &&
		    !!(s->flags & PINFS_DAX_MAPPED) != on) {
			s->flags = on ? s->flags | PINFS_DAX_MAPPED : s->flags & ~PINFS_DAX_MAPPED;
			slot_bump(s);
			changed = true;
		}
	}
	/* a holder's shared mapping of the pool (pinfs-dax mmap) must become
	 * the kernel's, whose pages the plain mapping shares: its watcher
	 * waits on the counter */
	if (changed && on && dax.hdr)
		revokes_bump();
	pthread_mutex_unlock(&dax.lock);
}

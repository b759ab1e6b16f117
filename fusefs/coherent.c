/* SPDX-License-Identifier: MIT */
/*
 * fusefs/coherent.c -- shared mappings coherent with write().
 *
 * Every open is FOPEN_DIRECT_IO, so read() and write() go straight to the
 * pool, but a mapping (FUSE_DIRECT_IO_ALLOW_MMAP) is served from the
 * kernel's page cache: a fault sends a READ that fills a page, a store
 * dirties it, writeback sends the whole page back as a WRITE (writepage).
 * Before a direct write the kernel writes back and drops the pages of the
 * range (fs/fuse/file.c fuse_direct_io), but nothing stops a fault from
 * filling the page again before this daemon has applied the write. That
 * page then holds the bytes from before the write: a mapping shows them
 * after write() returned, and its next writeback puts them back over the
 * write. (Measured: tests/mount/mmaprace.c lost or showed stale bytes in
 * most 2-second runs on both transports.)
 *
 * The rule here: a write to a file whose pages the kernel may cache is
 * answered only once no page of its range can hold bytes from before it.
 *  1. Its range and bytes are registered as pending on the inode.
 *  2. fuse_lowlevel_notify_inval_inode() on the range: the kernel writes
 *     back each dirty page (a writepage WRITE, applied as it comes: its
 *     bytes predate this write, which lands after it), waits for pages
 *     under writeback, and drops them.
 *  3. The write is applied to the pool, and unregistered; then answered.
 * A fill READ overlapping a pending write gets the pool's bytes with the
 * pending write's bytes laid over them, so a page filled during 2 already
 * holds the write; a page filled before 1 was dropped by 2; a page filled
 * after 3 reads the pool. A writepage of an overlaid page that lands after
 * 3 carries the write's bytes too. So no page, and no writeback, can take
 * a write back.
 *
 * Which files: those the daemon served a fill READ for (a READ without a
 * lock owner: the kernel sets FUSE_READ_LOCKOWNER on every direct read and
 * never on a page-cache read), until their last open file is released (a
 * mapping holds its file, so none is left then, and a new mmap drops the
 * whole page cache first: fuse_file_mmap). A write that raced the first
 * fill (applied while the fill read the pool) sees the inode marked when
 * it is done (the mark is made before the fill reads the pool, and ip->rw
 * orders the two) and is put through 1-3 again.
 *
 * Steps 1-3 run on worker threads of this file, not on the transport's:
 * step 2 waits for writepage and fill requests that transport threads must
 * serve, so the request is parked (the transport thread goes on) and the
 * worker answers it. Other files' writes never come here, and neither do
 * writes to pages no fill has read since step 2 last dropped them (a bit
 * per page; the check is made again after the write, as for the first
 * fill). Over io_uring a parked write keeps its ring entry for the few
 * microseconds to milliseconds this takes, and is not counted against
 * max_parked (its writer is blocked in write(), so there is one per
 * writing thread). A limit: were every entry of one queue held by parked
 * requests (32 waiting EVENTS reads or truncates plus about 36 writes to
 * mapped files from that CPU at once), the writeback a worker's step 2
 * sends from that CPU would wait for an entry, and the writes for the
 * worker: a stall that needs that many writers to mapped files on one
 * CPU; 80 concurrent writers on 2 CPUs did not come near it.
 *
 * Locking: coh.lock guards the table, the pending lists and the queue; it
 * is taken before ip->rw (a fill READ with an overlap reads the pool under
 * it, so that the pending bytes stay alive) and never held across a
 * notification, a pmem write or a reply other than that fill's.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fusefs/fusefs.h"

#define PAGE_SIZE_4K 4096u /* the kernel's page: what a fill and a drop cover */

#define COH_BUCKETS 64
#define COH_WORKERS 4
#define COH_MAX_PAGES (1ull << 24) /* 64 GiB of file: a 2 MiB bitmap */

struct coh_write {
	struct ffs *f;
	fuse_req_t req;
	struct pm_inode *ip; /* a reference of its own */
	struct pm_cred cr;
	uint64_t off;
	size_t len;
	char *data;
	struct coh_write *next_pending; /* coh.lock: the inode's pending list */
	struct coh_write *next_queued;	/* coh.lock: the workers' queue */
};

struct coh_inode {
	uint64_t ino;
	struct coh_write *pending; /* registered (step 1), not applied: oldest first */
	/* pages the kernel may cache: a bit set by each fill, cleared when
	 * step 2 drops the page; all: every page (past COH_MAX_PAGES, or no
	 * memory for the bits) */
	uint64_t *pages;
	size_t nwords;
	bool all;
	struct coh_inode *next;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	struct coh_inode *tab[COH_BUCKETS];
	unsigned ninodes; /* atomic reads without the lock: the fast path */
	struct coh_write *head, **tail;
	pthread_t thr[COH_WORKERS];
	int nthr;
	int busy; /* writes taken off the queue, not yet answered */
	bool stop;
} coh = { .lock = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .tail = &coh.head };

static struct coh_inode **coh_slot(uint64_t ino)
{
	struct coh_inode **pp = &coh.tab[ino % COH_BUCKETS];

	while (*pp && (*pp)->ino != ino)
		pp = &(*pp)->next;
	return pp;
}

/* Sets (@on) or clears the bits of pages [@first, @last] of @ci. */
static void coh_mark(struct coh_inode *ci, uint64_t first, uint64_t last, bool on)
{
	if (on && !ci->all && last / 64 >= ci->nwords) {
		size_t n = (size_t)(last / 64 + 1) * 2;
		uint64_t *p = last < COH_MAX_PAGES ? realloc(ci->pages, n * sizeof(*p)) : NULL;
		if (!p) {
			ci->all = true;
		} else {
			memset(p + ci->nwords, 0, (n - ci->nwords) * sizeof(*p));
			ci->pages = p;
			ci->nwords = n;
		}
	}
	if (ci->all)
		return; /* stays set: nobody knows which pages left */
	for (uint64_t pg = first; pg <= last && pg / 64 < ci->nwords; pg++) {
		if (on)
			ci->pages[pg / 64] |= 1ull << (pg % 64);
		else
			ci->pages[pg / 64] &= ~(1ull << (pg % 64));
	}
}

/* May the kernel cache a page of [@first, @last] of @ci? */
static bool coh_any(const struct coh_inode *ci, uint64_t first, uint64_t last)
{
	if (ci->all)
		return true;
	for (uint64_t pg = first; pg <= last && pg / 64 < ci->nwords; pg++)
		if (ci->pages[pg / 64] >> (pg % 64) & 1)
			return true;
	return false;
}

void ffs_coh_filled(uint64_t ino, uint64_t off, size_t size)
{
	struct coh_inode **pp;
	bool first = false;

	pthread_mutex_lock(&coh.lock);
	pp = coh_slot(ino);
	if (!*pp) {
		struct coh_inode *ci = calloc(1, sizeof(*ci));
		if (ci) {
			ci->ino = ino;
			*pp = ci;
			__atomic_add_fetch(&coh.ninodes, 1, __ATOMIC_SEQ_CST);
			/* before the fill reads the pool: pinfs-dax holders
			 * of the file store through FUSE from now on
			 * (fusefs/dax.c; a leaf lock) */
			ffs_dax_mapped(ino, true);
			first = true;
		}
		/* no memory: the fill is served as before; coherence is then
		 * only as good as the kernel's own invalidation */
	}
	if (*pp)
		coh_mark(*pp, off / PAGE_SIZE_4K, (off + (size ? size : 1) - 1) / PAGE_SIZE_4K, true);
	pthread_mutex_unlock(&coh.lock);
	/* and pinfs-dax shared mappings of the file give way, before the
	 * fill reads the pool */
	if (first)
		ffs_dax_unmap_wait(ino);
}

bool ffs_coh_cached(uint64_t ino, uint64_t off, size_t len)
{
	struct coh_inode *ci;
	bool yes;

	if (!__atomic_load_n(&coh.ninodes, __ATOMIC_SEQ_CST))
		return false;
	pthread_mutex_lock(&coh.lock);
	ci = *coh_slot(ino);
	yes = ci && (!len || coh_any(ci, off / PAGE_SIZE_4K, (off + len - 1) / PAGE_SIZE_4K));
	pthread_mutex_unlock(&coh.lock);
	return yes;
}

uint64_t ffs_coh_files(void)
{
	return __atomic_load_n(&coh.ninodes, __ATOMIC_SEQ_CST);
}

void ffs_coh_released(uint64_t ino)
{
	struct coh_inode **pp, *ci;

	if (!__atomic_load_n(&coh.ninodes, __ATOMIC_SEQ_CST))
		return;
	pthread_mutex_lock(&coh.lock);
	pp = coh_slot(ino);
	ci = *pp;
	if (ci && !ci->pending) {
		*pp = ci->next;
		__atomic_sub_fetch(&coh.ninodes, 1, __ATOMIC_SEQ_CST);
		free(ci->pages);
		free(ci);
		ffs_dax_mapped(ino, false);
	}
	pthread_mutex_unlock(&coh.lock);
}

bool ffs_coh_read(struct ffs *f, fuse_req_t req, struct pm_inode *ip, uint64_t off, size_t size)
{
	struct coh_inode *ci;
	struct coh_write *w;
	struct iovec iov[64];
	size_t bytes, end = 0, done = 0;
	char *buf;
	int n;

	pthread_mutex_lock(&coh.lock);
	ci = *coh_slot(pm_ino(ip));
	for (w = ci ? ci->pending : NULL; w; w = w->next_pending)
		if (w->off < off + size && w->off + w->len > off)
			break;
	if (!w) {
		pthread_mutex_unlock(&coh.lock);
		return false;
	}
	buf = calloc(1, size ? size : 1);
	n = buf ? pm_read_begin(f->fs, ip, off, size, iov, 64, &bytes) : -ENOMEM;
	if (n < 0) {
		pthread_mutex_unlock(&coh.lock);
		free(buf);
		fuse_reply_err(req, -n);
		return true;
	}
	for (int i = 0; i < n; i++) {
		memcpy(buf + done, iov[i].iov_base, iov[i].iov_len);
		done += iov[i].iov_len;
	}
	pm_read_end(f->fs, ip);
	end = done;
	/* the pending writes, oldest first, over the pool's bytes */
	for (w = ci->pending; w; w = w->next_pending) {
		uint64_t a, b;
		if (w->off >= off + size || w->off + w->len <= off)
			continue;
		a = w->off > off ? w->off : off;
		b = w->off + w->len < off + size ? w->off + w->len : off + size;
		memcpy(buf + (a - off), w->data + (a - w->off), b - a);
		if (b - off > end)
			end = b - off;
	}
	pthread_mutex_unlock(&coh.lock);
	fuse_reply_buf(req, buf, end);
	free(buf);
	return true;
}

static void coh_apply(struct coh_write *w)
{
	struct ffs *f = w->f;
	struct iovec iov = { .iov_base = w->data, .iov_len = w->len };
	struct coh_inode *ci;
	struct coh_write **pp;
	bool killed = false;
	ssize_t rc;

	/* the range's pages are dropped next: a fill from here on marks
	 * its page again */
	pthread_mutex_lock(&coh.lock);
	ci = *coh_slot(pm_ino(w->ip));
	if (w->len)
		coh_mark(ci, w->off / PAGE_SIZE_4K, (w->off + w->len - 1) / PAGE_SIZE_4K, false);
	pthread_mutex_unlock(&coh.lock);
	/* step 2: the kernel writes back and drops the range's pages;
	 * -ENOENT: it holds no inode, so no page either. Not once the loop
	 * has ended: nobody would serve the requests it waits for. */
	if (f->se && !__atomic_load_n(&coh.stop, __ATOMIC_RELAXED))
		fuse_lowlevel_notify_inval_inode(f->se, pm_ino(w->ip), (off_t)w->off, (off_t)w->len);
	/* step 3 */
	rc = pm_write_kill(f->fs, &w->cr, w->ip, w->off, &iov, 1, &killed);
	if (killed)
		ffs_inval_attr(f, pm_ino(w->ip)); /* before the reply, as ops.c */
	pthread_mutex_lock(&coh.lock);
	ci = *coh_slot(pm_ino(w->ip));
	for (pp = &ci->pending; *pp != w; pp = &(*pp)->next_pending)
		;
	*pp = w->next_pending;
	pthread_mutex_unlock(&coh.lock);
	if (rc < 0)
		fuse_reply_err(w->req, (int)-rc);
	else
		fuse_reply_write(w->req, (size_t)rc);
	pm_iput(f->fs, w->ip);
	free(w->data);
	free(w);
}

static void *coh_worker(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&coh.lock);
	for (;;) {
		struct coh_write *w = coh.head;
		if (!w) {
			if (coh.stop)
				break;
			pthread_cond_wait(&coh.cv, &coh.lock);
			continue;
		}
		coh.head = w->next_queued;
		if (!coh.head)
			coh.tail = &coh.head;
		coh.busy++;
		pthread_mutex_unlock(&coh.lock);
		coh_apply(w);
		pthread_mutex_lock(&coh.lock);
		coh.busy--;
		pthread_cond_broadcast(&coh.cv);
	}
	pthread_mutex_unlock(&coh.lock);
	return NULL;
}

void ffs_coh_write(struct ffs *f, fuse_req_t req, struct pm_inode *ip, const struct pm_cred *cr,
		   uint64_t off, const struct iovec *iov, int n)
{
	struct coh_write *w = calloc(1, sizeof(*w));
	struct coh_inode **slot, *ci;
	struct coh_write **pp;
	size_t len = 0;
	int rc = -ENOMEM;

	for (int i = 0; i < n; i++)
		len += iov[i].iov_len;
	if (w)
		w->data = malloc(len ? len : 1);
	if (!w || !w->data)
		goto fail;
	rc = pm_iget(f->fs, pm_ino(ip), &w->ip);
	if (rc)
		goto fail;
	for (int i = 0; i < n; i++) {
		memcpy(w->data + w->len, iov[i].iov_base, iov[i].iov_len);
		w->len += iov[i].iov_len;
	}
	w->f = f;
	w->req = req;
	w->off = off;
	w->cr.uid = cr->uid;
	w->cr.gid = cr->gid; /* the write path looks at no groups */

	pthread_mutex_lock(&coh.lock);
	slot = coh_slot(pm_ino(ip));
	ci = *slot;
	if (!ci) {
		/* released meanwhile: still register, the entry goes with
		 * the next release */
		ci = calloc(1, sizeof(*ci));
		if (!ci) {
			pthread_mutex_unlock(&coh.lock);
			pm_iput(f->fs, w->ip);
			rc = -ENOMEM;
			goto fail;
		}
		ci->ino = pm_ino(ip);
		*slot = ci;
		__atomic_add_fetch(&coh.ninodes, 1, __ATOMIC_SEQ_CST);
	}
	/* step 1: at the tail, so a fill lays the pending writes over the
	 * pool oldest first */
	for (pp = &ci->pending; *pp; pp = &(*pp)->next_pending)
		;
	*pp = w;
	*coh.tail = w;
	coh.tail = &w->next_queued;
	if (coh.nthr < COH_WORKERS && !coh.stop &&
	    pthread_create(&coh.thr[coh.nthr], NULL, coh_worker, NULL) == 0)
		coh.nthr++;
	if (!coh.nthr) {
		/* no worker could start: unregister and fail the write */
		*pp = NULL;
		coh.head = NULL;
		coh.tail = &coh.head;
		pthread_mutex_unlock(&coh.lock);
		pm_iput(f->fs, w->ip);
		rc = -EAGAIN;
		goto fail;
	}
	pthread_cond_signal(&coh.cv);
	pthread_mutex_unlock(&coh.lock);
	return;
fail:
	if (w)
		free(w->data);
	free(w);
	fuse_reply_err(req, -rc);
}

void ffs_coh_stop(int fuse_fd)
{
	struct timespec until;
	bool stuck = false;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 2;
	pthread_mutex_lock(&coh.lock);
	coh.stop = true;
	pthread_cond_broadcast(&coh.cv);
	while ((coh.busy || coh.head) && !stuck)
		stuck = pthread_cond_timedwait(&coh.cv, &coh.lock, &until) == ETIMEDOUT;
	pthread_mutex_unlock(&coh.lock);
	if (stuck && fuse_fd >= 0) {
		/* the loop has ended, so nobody serves the page fills and
		 * writebacks a worker's invalidation waits for: end the
		 * connection (the kernel fails them), leaving /dev/null in the
		 * descriptor for fuse_session_destroy() to close */
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		fprintf(stderr, "pinfs: stopping: a write to a mapped file waits on the kernel; "
				"ending the connection\n");
		if (null >= 0) {
			dup2(null, fuse_fd);
			close(null);
		}
	}
	for (int i = 0; i < coh.nthr; i++)
		pthread_join(coh.thr[i], NULL);
	coh.nthr = 0;
	for (int b = 0; b < COH_BUCKETS; b++)
		while (coh.tab[b]) {
			struct coh_inode *ci = coh.tab[b];
			coh.tab[b] = ci->next;
			free(ci->pages);
			free(ci);
		}
	coh.ninodes = 0;
}

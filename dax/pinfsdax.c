/* SPDX-License-Identifier: MIT */
/*
 * dax/pinfsdax.c -- libpinfsdax.so, preloaded by pinfs-dax(1): serves
 * read/pread/readv/preadv and write/pwrite/writev/pwritev of regular files
 * of pinfs mounts straight from the pool, under a layout lease
 * (PINFS_PIN_LAYOUT, include/pinfs/abi.h); everything else goes to the
 * kernel (FUSE) untouched.
 *
 * When the pool is used:
 *  - the fd was opened through open/openat/creat (the ones this library
 *    sees; stdio's own opens are never served from the pool) or is a
 *    dup/dup2/dup3/F_DUPFD of such an fd, on a pinfs mount whose pool the
 *    caller may open (else: FUSE, decided once per mount);
 *  - the file has no hole (st_blocks covers the size: a layout pin never
 *    fills holes) and the I/O lies inside the size, or is a write of at
 *    least GROW_MIN bytes starting inside it (grow: blocks preallocated
 *    past EOF, the size grown by PINFS_IOC_GROW before the copy); other
 *    writes past EOF and O_APPEND writes go through FUSE (the daemon
 *    allocates, O_APPEND's position is atomic there);
 *  - a write: the file has no page-cache user (PINFS_DAX_MAPPED clear).
 * A file's leases cover 256 MiB windows, [0, size) cut at window
 * boundaries, each taken at the first such I/O in it and taken again when
 * the file grew past it (at most every 100 ms).
 *
 * Revocation (a truncate or punch under any policy: the daemon never
 * waits): every copy is bracketed by two reads of the lease's slot in the
 * mapped state file (a seqlock). A copy during which the slot changed is
 * done again through FUSE -- a read re-read, a write rewritten (the direct
 * store went to a quarantined block nobody reads) -- and the map is
 * dropped and the lease unpinned. Quarantine keeps the old blocks out of
 * other files until then, so no copy ever sees another file's bytes.
 *
 * Coherence: read() and write() through FUSE are direct I/O, so plain
 * readers and writers see the pool at once and the other way round; a
 * file the kernel caches pages of (plain mmap users) gets its stores
 * through FUSE (the daemon invalidates those pages).
 *
 * Timestamps: a direct store does not reach the daemon; mtime and ctime
 * are set (futimens UTIME_NOW) at the first store after a stamp once
 * 100 ms have passed, and at fsync/fdatasync/close/exec/exit of a file
 * with unstamped stores.
 *
 * fork: maps are MADV_DONTFORK, and the child forgets them (it is not the
 * leases' holder) and takes its own. exec: leases are unpinned first.
 *
 * Concurrency and signals: the I/O path takes no lock. A map is reached
 * through an atomic pointer and a reference count that never rises from 0;
 * its last reference unmaps it. open/close/dup take a spinlock with every
 * signal blocked, so a handler can call any of these without deadlock.
 * read() and write() take their range from the file position with one
 * lseek(SEEK_CUR, +n), atomic under the description's position lock, and
 * give back what they did not use (EOF, an error) with another: a sharer
 * that takes its range between the two, while the file grows, may find a
 * gap (the kernel holds the lock across the whole call).
 *
 * POSIX record locks: closing any fd of a file drops the process's fcntl
 * locks on it. So the library's own dups of a file the program still has
 * open (a mapping's) are parked in the file's entry and closed only at its
 * last close, just before the program's own close drops them anyway.
 */
/* the plain names are the interposed symbols: no 64-bit renaming */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <linux/futex.h>
#include <linux/kcmp.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <time.h>
#include <utime.h>
#include <sys/time.h>
#include <unistd.h>

#include "pinfs/abi.h"

#define EXPORT __attribute__((visibility("default")))
#define FUSE_MAGIC 0x65735546
#define FDMAX 65536
#define NPARKED 16
#define NFILES 1024
#define NMAPS 1024
#define NDEVS 16
#define PAGE 4096ull
#define STAMP_NS 100000000ull
#define RETRY_NS 100000000ull
/* A file's leases cover windows of 256 MiB (a pin's cost grows with its
 * blocks: the daemon counts pins per block), up to NWIN of them at once,
 * window w in map[w % NWIN]. */
#define WIN_SHIFT 28
#define NWIN 4
/* Copies go through pread/pwrite on the pool file at the blocks' pool
 * offsets: the kernel's copy, as tmpfs's own read() makes, with no page
 * fault per fresh page of the map (a fault costs more than the syscall on
 * a hypervisor guest: 4 KiB random reads ran at 0.5x tmpfs through the
 * map, 1.0x through pread). The map serves when the pool fd is gone. */
#define PFD_MIN 512 /* our pool fds live above the program's usual ones */
/* Extending writes of at least GROW_MIN bytes are served from the pool
 * (grow): blocks preallocated past EOF in steps of up to GROW_MAX. */
#define GROW_MIN (256u << 10)
#define GROW_MAX (64ull << 20)
#define GROW_ALIGN (2ull << 20)

struct ddev {
	dev_t dev;
	int state; /* 0 free, 1 pinfs with dax, 2 not served */
	const struct pinfs_dax_hdr *hdr;
	char pool[4096];
};

struct dmap {
	int refs;	  /* atomic; never rises from 0 */
	int free;	  /* atomic: 1 = reusable */
	char *addr;	  /* file offset @base */
	uint64_t base;	  /* the window's first byte */
	size_t len;	  /* pinned bytes from @base */
	uint64_t size;	  /* atomic: the file's size at pin, or as this
			   * process grew it since (grow) */
	uint64_t lease;
	const struct pinfs_dax_slot *slot;
	bool write;
	int pfd;	  /* the pool, for large copies (-1: none) */
	struct pinfs_seg *segs; /* mmap'd, nsegs of them */
	uint32_t nsegs;
	size_t segs_len;
};

struct dfile {
	int refs; /* fds (under tab_lock); 0: free */
	dev_t dev;
	ino_t ino;
	struct ddev *dd;
	struct dmap *map[NWIN]; /* atomic */
	int pinning;	  /* atomic flag */
	uint64_t retry_ns; /* no new lease for a held window before */
	uint64_t fail_ns;  /* no pin before (the last one was refused) */
	int said;	  /* atomic: SAID_* already said (verbose) */
	int dirty;	  /* atomic: stores not stamped */
	uint64_t stamp_ns;
	uint64_t pre_end; /* atomic: the end of what grow preallocated past
			   * EOF and no trim has freed yet; 0: nothing */
	bool foreign;	  /* blocks were allocated past EOF before us (the
			   * program's fallocate KEEP_SIZE): never trimmed */
	int parked[NPARKED]; /* our dups of the file, closed at its last close
			   * (see POSIX record locks above); -1 */
};

#define SAID_REFUSED 1 /* a layout lease refused */
#define SAID_HOLES 2
#define SAID_MMAP 4
/* Says it once per file (verbose). */
#define SAY_ONCE(d, bit, fd, ...)                                                         \
	do {                                                                               \
		if (verbose && !(__atomic_fetch_or(&(d)->said, (bit), __ATOMIC_RELAXED) & (bit))) \
			say((fd), __VA_ARGS__);                                             \
	} while (0)

#define FD_WR 1
#define FD_RD 2
#define FD_APPEND 4
static struct dfile *fdtab[FDMAX]; /* atomic pointers */
static unsigned char fdfl[FDMAX];
static struct dfile files[NFILES];
static struct dmap maps[NMAPS];
static struct ddev devs[NDEVS];
static int tab_lock;
static pid_t owner_pid;

/* Not the process whose tables these are: a vfork() child (it shares our
 * memory; a fork child's atfork handler made them its own), whose opens,
 * closes and mappings must not change the parent's tables. */
static void atfork_child(void);
static bool borrowed(void)
{
	pid_t me = getpid();
	long same;

	if (me == owner_pid)
		return false;
	same = syscall(SYS_kcmp, me, owner_pid, KCMP_VM, 0, 0);
	if (same == 0 || (same < 0 && errno != ESRCH))
		return true; /* our memory (vfork), or cannot tell: hands off */
	/* memory of its own, and no atfork handler ran (_Fork, a raw clone):
	 * the tables are this process's from now on */
	atfork_child();
	return false;
}

static ssize_t (*r_read)(int, void *, size_t);
static ssize_t (*r_write)(int, const void *, size_t);
static ssize_t (*r_pread)(int, void *, size_t, off_t);
static ssize_t (*r_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*r_readv)(int, const struct iovec *, int);
static ssize_t (*r_writev)(int, const struct iovec *, int);
static ssize_t (*r_preadv)(int, const struct iovec *, int, off_t);
static ssize_t (*r_pwritev)(int, const struct iovec *, int, off_t);
static int (*r_open)(const char *, int, ...);
static int (*r_openat)(int, const char *, int, ...);
static int (*r_close)(int);
static int (*r_dup)(int);
static int (*r_dup2)(int, int);
static int (*r_dup3)(int, int, int);
static int (*r_fcntl)(int, int, ...);
static int (*r_fsync)(int);
static int (*r_fdatasync)(int);
static int (*r_fclose)(FILE *);
static int (*r_close_range)(unsigned, unsigned, int);
static void (*r_closefrom)(int);
static int (*r_memfd_create)(const char *, unsigned);
static int (*r_pipe)(int[2]);
static int (*r_pipe2)(int[2], int);
static int (*r_socket)(int, int, int);
static int (*r_socketpair)(int, int, int, int[2]);
static int (*r_accept)(int, struct sockaddr *, socklen_t *);
static int (*r_accept4)(int, struct sockaddr *, socklen_t *, int);
static int (*r_execve)(const char *, char *const[], char *const[]);
static int (*r_execvpe)(const char *, char *const[], char *const[]);
static int (*r_fexecve)(int, char *const[], char *const[]);
static void *(*r_mmap)(void *, size_t, int, int, int, off_t);
static int (*r_munmap)(void *, size_t);
static int (*r_mprotect)(void *, size_t, int);
static int (*r_msync)(void *, size_t, int);
static void *(*r_mremap)(void *, size_t, size_t, int, ...);
static FILE * (*r_fopen)(const char *, const char *);
static FILE * (*r_freopen)(const char *, const char *, FILE *);
static FILE * (*r_tmpfile)(void);
static int (*r_open_2)(const char *, int);
static int (*r_openat_2)(int, const char *, int);
static ssize_t (*r_recvmsg)(int, struct msghdr *, int);
static int (*r_recvmmsg)(int, struct mmsghdr *, unsigned, int, struct timespec *);
static int (*r_futimens)(int, const struct timespec *);
static int (*r_utimensat)(int, const char *, const struct timespec *, int);
static int (*r_futimes)(int, const struct timeval *);
static int (*r_utimes)(const char *, const struct timeval *);
static int (*r_lutimes)(const char *, const struct timeval *);
static int (*r_futimesat)(int, const char *, const struct timeval *);
static int (*r_utime)(const char *, const struct utimbuf *);

static void syms(void);
/* Another library's constructor may call us before ours ran. */
static inline void ensure(void)
{
	if (__builtin_expect(!__atomic_load_n(&r_fexecve, __ATOMIC_ACQUIRE), 0))
		syms();
}

/* PINFS_DAX_VERBOSE set (pinfs-dax -v): one line on stderr for each pinfs
 * mount this process reaches, saying whether its files are served from the
 * pool and, if not, why; and one for each file that goes through FUSE for
 * a reason of its own (a lease refused, holes). */
static bool verbose;

/* Says "pinfs-dax[PID]: PATH-OF-FD: MESSAGE" on stderr (verbose only). */
__attribute__((format(printf, 2, 3))) static void say(int fd, const char *fmt, ...)
{
	char link[64], path[4096], msg[4200], line[8400];
	int saved = errno, n;
	va_list ap;
	ssize_t k;

	if (!verbose)
		return;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	k = readlink(link, path, sizeof(path) - 1);
	path[k > 0 ? k : 0] = 0;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	n = snprintf(line, sizeof(line), "pinfs-dax[%d]: %s: %s\n", (int)getpid(), k > 0 ? path : "?",
		     msg);
	if (n > 0)
		(void)!r_write(2, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
	errno = saved;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- the table lock: every signal blocked while held ---------------- */

static void lock(sigset_t *old)
{
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, old);
	while (__atomic_exchange_n(&tab_lock, 1, __ATOMIC_ACQUIRE))
		__builtin_ia32_pause();
}

static void unlock(const sigset_t *old)
{
	__atomic_store_n(&tab_lock, 0, __ATOMIC_RELEASE);
	pthread_sigmask(SIG_SETMASK, old, NULL);
}

/* ---- maps --------------------------------------------------------------- */

static void map_put(struct dmap *m)
{
	if (__atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		r_munmap(m->addr, m->len);
		if (m->segs)
			r_munmap(m->segs, m->segs_len);
		m->segs = NULL;
		if (m->pfd >= 0)
			r_close(m->pfd);
		m->pfd = -1;
		__atomic_store_n(&m->free, 1, __ATOMIC_RELEASE);
	}
}

/* A reference on @d's map of window @w, or NULL. */
static struct dmap *map_get(struct dfile *d, unsigned w)
{
	struct dmap *m = __atomic_load_n(&d->map[w], __ATOMIC_ACQUIRE);
	int r;

	if (!m)
		return NULL;
	r = __atomic_load_n(&m->refs, __ATOMIC_RELAXED);
	do {
		if (r <= 0)
			return NULL;
	} while (!__atomic_compare_exchange_n(&m->refs, &r, r + 1, false, __ATOMIC_ACQ_REL,
					      __ATOMIC_RELAXED));
	if (__atomic_load_n(&d->map[w], __ATOMIC_ACQUIRE) != m) {
		map_put(m);
		return NULL;
	}
	return m;
}

/* Drops @d's map @m of window @w (if it still is) and ends its lease
 * through @fd. */
static void map_drop(struct dfile *d, unsigned w, struct dmap *m, int fd)
{
	struct pinfs_unpin u = { 0 };

	if (!__atomic_compare_exchange_n(&d->map[w], &m, NULL, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_RELAXED))
		return;
	u.lease_id = m->lease;
	/* unmapped first (unless a copy still runs: then the daemon keeps
	 * the blocks, LEASE_ENDED, until no process maps them) */
	map_put(m); /* the table's reference */
	(void)ioctl(fd, PINFS_IOC_UNPIN, &u);
}

static struct dmap *map_alloc(void)
{
	for (int i = 0; i < NMAPS; i++) {
		int one = 1;
		if (__atomic_compare_exchange_n(&maps[i].free, &one, 0, false, __ATOMIC_ACQ_REL,
						__ATOMIC_RELAXED))
			return &maps[i];
	}
	return NULL;
}

/* Pins window @w of @d, [w << WIN_SHIFT, min(@end, next window)), through
 * @fd, and maps it; @size is the file's size (@end past it: blocks
 * preallocated past EOF, see grow). */
static void map_new(struct dfile *d, unsigned w, int fd, uint64_t size, uint64_t end,
		    bool write)
{
	uint64_t from = (uint64_t)w << WIN_SHIFT, to = from + (1ull << WIN_SHIFT);
	struct pinfs_pin p;
	struct pinfs_segs q;
	struct pinfs_unpin u = { 0 };
	struct dmap *m = NULL;
	char *base = MAP_FAILED;
	uint32_t have, total;
	size_t len;
	int pfd = -1, prot = PROT_READ | (write ? PROT_WRITE : 0);

	memset(&p, 0, sizeof(p));
	if (to > end)
		to = end;
	p.offset = from;
	p.length = to - from;
	p.flags = PINFS_PIN_LAYOUT | PINFS_PIN_REVOCABLE | (write ? PINFS_PIN_WRITE : 0);
	if (ioctl(fd, PINFS_IOC_PIN, &p) < 0) {
		SAY_ONCE(d, SAID_REFUSED, fd, "through FUSE for now: the daemon refused its layout lease (%s)",
			 strerror(errno));
		return;
	}
	u.lease_id = p.lease_id;
	if (!p.reserved || p.reserved > d->dd->hdr->nslots || p.pin_offset != from ||
	    p.nsegs == 0 || p.nsegs > PINFS_SEGS_MAX || p.pin_length > SIZE_MAX)
		goto fail;
	len = (size_t)p.pin_length;
	pfd = r_open(d->dd->pool, (write ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (pfd < 0)
		goto fail;
	m = map_alloc();
	if (!m)
		goto fail;
	m->segs = NULL;
	m->pfd = -1;
	base = r_mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED)
		goto fail;
	total = p.nsegs_total;
	m->segs_len = ((size_t)total * sizeof(struct pinfs_seg) + PAGE - 1) & ~(PAGE - 1);
	m->segs = r_mmap(NULL, m->segs_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m->segs == MAP_FAILED) {
		m->segs = NULL;
		goto fail;
	}
	m->nsegs = total;
	have = 0;
	while (have < total) {
		const struct pinfs_seg *s;
		uint32_t n;
		if (have == 0) {
			s = p.segs;
			n = p.nsegs;
		} else {
			memset(&q, 0, sizeof(q));
			q.lease_id = p.lease_id;
			q.first = have;
			if (ioctl(fd, PINFS_IOC_SEGS, &q) < 0 || !q.nsegs ||
			    q.nsegs > PINFS_SEGS_MAX)
				goto fail;
			s = q.segs;
			n = q.nsegs;
		}
		for (uint32_t i = 0; i < n && have < total; i++, have++) {
			if (s[i].file_off < from || s[i].file_off - from + s[i].len > len ||
			    s[i].file_off % PAGE || s[i].pool_off % PAGE)
				goto fail;
			if (r_mmap(base + (s[i].file_off - from), s[i].len, prot, MAP_SHARED | MAP_FIXED, pfd,
				 (off_t)s[i].pool_off) == MAP_FAILED)
				goto fail;
			m->segs[have] = s[i];
		}
	}
	/* kept, out of the program's way, for large copies */
	m->pfd = r_fcntl(pfd, F_DUPFD_CLOEXEC, PFD_MIN);
	r_close(pfd);
	pfd = -1;
	/* the child of a fork is not the lease's holder: it must not reach
	 * blocks the daemon frees once this process is gone */
	if (madvise(base, len, MADV_DONTFORK) < 0)
		goto fail;
	m->addr = base;
	m->base = from;
	m->len = len;
	__atomic_store_n(&m->size, size, __ATOMIC_RELAXED);
	m->lease = p.lease_id;
	m->slot = (const struct pinfs_dax_slot *)(d->dd->hdr + 1) + (p.reserved - 1);
	m->write = write;
	__atomic_store_n(&m->refs, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&d->map[w % NWIN], m, __ATOMIC_RELEASE);
	return;
fail:
	if (base != MAP_FAILED)
		r_munmap(base, len);
	if (m) {
		if (m->segs)
			r_munmap(m->segs, m->segs_len);
		m->segs = NULL;
		if (m->pfd >= 0)
			r_close(m->pfd);
		m->pfd = -1;
		__atomic_store_n(&m->free, 1, __ATOMIC_RELEASE);
	}
	if (pfd >= 0)
		r_close(pfd);
	(void)ioctl(fd, PINFS_IOC_UNPIN, &u);
}

/* ---- mounts ------------------------------------------------------------- */

/* The mount of @dev as this process sees it; under tab_lock. */
static struct ddev *dev_find(int fd, dev_t dev)
{
	struct ddev *free_dd = NULL;
	struct statfs sf;
	char path[4096];
	ssize_t n;
	int sfd;
	void *p;

	for (int i = 0; i < NDEVS; i++) {
		if (devs[i].state && devs[i].dev == dev)
			return devs[i].state == 1 ? &devs[i] : NULL;
		if (!devs[i].state && !free_dd)
			free_dd = &devs[i];
	}
	if (!free_dd)
		return NULL;
	free_dd->dev = dev;
	free_dd->state = 2;
	if (fstatfs(fd, &sf) < 0 || sf.f_type != FUSE_MAGIC)
		return NULL;
	n = fgetxattr(fd, PINFS_XATTR_POOL, free_dd->pool, sizeof(free_dd->pool) - 1);
	if (n <= 0)
		return NULL;
	free_dd->pool[n] = 0;
	/* may we map the pool at all? (the daemon checks again at pin) */
	sfd = r_open(free_dd->pool, O_RDONLY | O_CLOEXEC);
	if (sfd < 0) {
		say(fd, "a pinfs mount: its files go through FUSE: this user cannot open the pool %s (%s)",
			free_dd->pool, strerror(errno));
		return NULL;
	}
	r_close(sfd);
	n = fgetxattr(fd, PINFS_XATTR_DAXSTATE, path, sizeof(path) - 1);
	if (n <= 0) {
		say(fd, "a pinfs mount: its files go through FUSE: its daemon names no pinfs-dax state (%s)",
			n < 0 ? strerror(errno) : "empty");
		return NULL;
	}
	path[n] = 0;
	sfd = r_open(path, O_RDONLY | O_CLOEXEC);
	if (sfd < 0) {
		say(fd, "a pinfs mount: its files go through FUSE: cannot open its pinfs-dax state %s (%s)", path,
			strerror(errno));
		return NULL;
	}
	p = mmap(NULL, sizeof(struct pinfs_dax_hdr) + PINFS_DAX_SLOTS * sizeof(struct pinfs_dax_slot),
		 PROT_READ, MAP_SHARED, sfd, 0);
	r_close(sfd);
	if (p == MAP_FAILED) {
		say(fd, "a pinfs mount: its files go through FUSE: cannot map its pinfs-dax state %s (%s)", path,
			strerror(errno));
		return NULL;
	}
	free_dd->hdr = p;
	if (free_dd->hdr->magic != PINFS_DAX_MAGIC || free_dd->hdr->nslots > PINFS_DAX_SLOTS) {
		say(fd, "a pinfs mount: its files go through FUSE: %s is no pinfs-dax state this library reads",
			path);
		return NULL;
	}
	free_dd->state = 1;
	say(fd, "a pinfs mount: its files are served from the pool %s", free_dd->pool);
	return free_dd;
}

/* ---- fds ---------------------------------------------------------------- */

static unsigned char acc_flags(int flags)
{
	unsigned char f = 0;

	if ((flags & O_ACCMODE) != O_WRONLY)
		f |= FD_RD;
	if ((flags & O_ACCMODE) != O_RDONLY)
		f |= FD_WR;
	if (flags & O_APPEND)
		f |= FD_APPEND;
	return f;
}

/* @fd was just opened with @flags: is it ours to serve? */
static void fd_opened(int fd, int flags)
{
	struct dfile *d = NULL;
	struct ddev *dd;
	struct stat st;
	sigset_t old;

	if (fd < 0 || fd >= FDMAX || borrowed())
		return;
	if (__atomic_load_n(&fdtab[fd], __ATOMIC_ACQUIRE)) {
		/* the number was closed behind our back (a close this library
		 * does not see): forget it, or the new file would be served
		 * from the old one's blocks. Its lease, if it was the last fd,
		 * stays until exit (no fd of it is left to unpin through). */
		lock(&old);
		d = __atomic_exchange_n(&fdtab[fd], NULL, __ATOMIC_ACQ_REL);
		if (d)
			d->refs--;
		unlock(&old);
		d = NULL;
	}
	if ((flags & (O_PATH | O_DIRECTORY)) || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return;
	lock(&old);
	dd = dev_find(fd, st.st_dev);
	if (dd) {
		struct dfile *last = NULL; /* a free slot this file had: what -v said stays */

		for (int i = 0; i < NFILES; i++)
			if (files[i].dev == st.st_dev && files[i].ino == st.st_ino && files[i].dd) {
				if (files[i].refs) {
					d = &files[i];
					break;
				}
				last = &files[i];
			}
		for (int i = 0; !d && i < NFILES; i++)
			if (!files[i].refs && (!last || &files[i] == last)) {
				d = &files[i];
				d->said = d == last ? d->said : 0;
				d->dev = st.st_dev;
				d->ino = st.st_ino;
				d->dd = dd;
				memset(d->map, 0, sizeof(d->map));
				d->pinning = 0;
				d->retry_ns = 0;
				d->fail_ns = 0;
				d->dirty = 0;
				d->stamp_ns = 0; /* the first direct store stamps */
				d->pre_end = 0;
				d->foreign = false;
				for (int k = 0; k < NPARKED; k++)
					d->parked[k] = -1;
			}
	}
	if (d) {
		d->refs++;
		fdfl[fd] = acc_flags(flags);
		__atomic_store_n(&fdtab[fd], d, __ATOMIC_RELEASE);
	}
	unlock(&old);
}

static void stamp(struct dfile *d, int fd)
{
	static const struct timespec ts[2] = { { 0, UTIME_OMIT }, { 0, UTIME_NOW } };

	if (__atomic_exchange_n(&d->dirty, 0, __ATOMIC_ACQ_REL)) {
		d->stamp_ns = now_ns();
		(void)futimens(fd, ts);
	}
}

/* Frees what grow preallocated past EOF and nothing used, through @fd if
 * it writes (PINFS_IOC_TRIM): the daemon cuts from the EOF it sees, under
 * the file's data lock, so a writer elsewhere that extended the file
 * meanwhile loses nothing. A program's own fallocate(FALLOC_FL_KEEP_SIZE)
 * past that end is kept. */
static int fd_reuse(struct dfile *d, int need);
static void fd_retire(dev_t dev, ino_t ino, int fd);

static void trim(struct dfile *d, int fd)
{
	struct pinfs_trim t = { 0 };
	sigset_t old;
	int w;

	t.end = __atomic_exchange_n(&d->pre_end, 0, __ATOMIC_ACQ_REL);
	if (!t.end)
		return;
	if (fdfl[fd] & FD_WR) {
		(void)ioctl(fd, PINFS_IOC_TRIM, &t);
		return;
	}
	/* a read-only fd closes last: the writer's dup grow parked */
	w = fd_reuse(d, O_WRONLY);
	if (w < 0)
		return;
	(void)ioctl(w, PINFS_IOC_TRIM, &t);
	lock(&old);
	fd_retire(d->dev, d->ino, w);
	unlock(&old);
}

/* @fd is about to be closed (it is still open). */
static void fd_closing(int fd)
{
	struct dfile *d;
	struct dmap *m = NULL;
	sigset_t old;
	bool last = false;

	if (fd < 0 || fd >= FDMAX || !__atomic_load_n(&fdtab[fd], __ATOMIC_ACQUIRE) || borrowed())
		return;
	lock(&old);
	d = __atomic_exchange_n(&fdtab[fd], NULL, __ATOMIC_ACQ_REL);
	if (d && --d->refs == 0) {
		last = true;
		d->refs = 1; /* kept until the lease is gone */
	}
	unlock(&old);
	if (!last)
		return;
	stamp(d, fd);
	for (unsigned w = 0; w < NWIN; w++) {
		m = __atomic_load_n(&d->map[w], __ATOMIC_ACQUIRE);
		if (m)
			map_drop(d, w, m, fd);
	}
	trim(d, fd);
	lock(&old);
	for (int k = 0; k < NPARKED; k++) {
		if (d->parked[k] >= 0)
			r_close(d->parked[k]);
		d->parked[k] = -1;
	}
	d->refs--;
	unlock(&old);
}

static void fd_dup(int from, int to, int cloexec_flags)
{
	struct dfile *d, *stale;
	sigset_t old;

	(void)cloexec_flags;
	if (from < 0 || from >= FDMAX || to < 0 || to >= FDMAX || borrowed())
		return;
	lock(&old);
	d = __atomic_load_n(&fdtab[from], __ATOMIC_ACQUIRE);
	if (d)
		d->refs++;
	fdfl[to] = fdfl[from];
	/* a stale entry (its close unseen) goes: the kernel just gave @to out */
	stale = __atomic_exchange_n(&fdtab[to], d, __ATOMIC_ACQ_REL);
	if (stale)
		stale->refs--;
	unlock(&old);
}

/* ---- the data path ------------------------------------------------------ */

#define FALLBACK (-100000)

static size_t iov_len(const struct iovec *iov, int cnt)
{
	size_t n = 0;

	for (int i = 0; i < cnt; i++)
		n += iov[i].iov_len;
	return n;
}

static void iov_copy(char *base, const struct iovec *iov, int cnt, size_t n, bool write)
{
	for (int i = 0; i < cnt && n; i++) {
		size_t k = iov[i].iov_len < n ? iov[i].iov_len : n;
		if (write)
			memcpy(base, iov[i].iov_base, k);
		else
			memcpy(iov[i].iov_base, base, k);
		base += k;
		n -= k;
	}
}

/* Copies @n bytes at file offset @off between the pool file and @iov with
 * pread/pwrite, segment by segment: true when all went. */
static bool pool_copy(const struct dmap *m, const struct iovec *iov, uint64_t off,
		      size_t n, bool write)
{
	uint32_t lo = 0, hi = m->nsegs;
	int i = 0;
	size_t in = 0; /* bytes used of iov[i] */

	while (lo + 1 < hi) { /* the last segment starting at or before @off */
		uint32_t mid = (lo + hi) / 2;
		if (m->segs[mid].file_off <= off)
			lo = mid;
		else
			hi = mid;
	}
	for (uint32_t k = lo; n && k < m->nsegs; k++) {
		const struct pinfs_seg *s = &m->segs[k];
		uint64_t at = off - s->file_off, left = s->len - at;
		while (n && left) {
			size_t c = iov[i].iov_len - in;
			ssize_t r;
			if (c > n)
				c = n;
			if (c > left)
				c = (size_t)left;
			r = write ? r_pwrite(m->pfd, (char *)iov[i].iov_base + in, c,
					     (off_t)(s->pool_off + at))
				  : r_pread(m->pfd, (char *)iov[i].iov_base + in, c,
					    (off_t)(s->pool_off + at));
			if (r != (ssize_t)c)
				return false;
			n -= c;
			off += c;
			at += c;
			left -= c;
			in += c;
			if (in == iov[i].iov_len) {
				i++;
				in = 0;
			}
		}
	}
	return n == 0;
}

/* *@p = max(*@p, @v), atomically (other threads raise it too) */
static void raise_to(uint64_t *p, uint64_t v)
{
	uint64_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);

	while (cur < v && !__atomic_compare_exchange_n(p, &cur, v, false, __ATOMIC_RELAXED,
						       __ATOMIC_RELAXED))
		;
}

/*
 * An extending write of [off, off + n) in window @w, whose map @m (a
 * reference, or NULL) is put; @st: the kernel's stat of the file (off <= its
 * size), or NULL when @m already holds the blocks. Blocks past EOF are
 * preallocated with fallocate(FALLOC_FL_KEEP_SIZE) -- zeroed, the size
 * unchanged -- ahead of the write, in steps that double with the file up
 * to GROW_MAX and never past the window, and the window's layout lease is
 * taken again to cover them (a layout pin may cover allocated blocks past
 * EOF; a truncate or punch into them revokes it). Then PINFS_IOC_GROW sets
 * the size to off + n if it is below: the daemon never shrinks the file
 * there, so writers in other processes race safely, and it zeroes the
 * stale tail of the old last block, as a truncate up does. The size goes
 * up before the copy: a plain reader may see zeros in [off, off + n) until
 * the bytes land, never other bytes (blocks past EOF hold zeros: a direct
 * copy only goes inside the size). Returns a reference on the map to copy
 * through, or NULL (through FUSE).
 */
static struct dmap *grow(struct dfile *d, int fd, unsigned w, struct dmap *m, uint64_t off,
			 size_t n, const struct stat *st)
{
	uint64_t from = (uint64_t)w << WIN_SHIFT, wend = from + (1ull << WIN_SHIFT);
	uint64_t end = off + n, pre, t;
	struct pinfs_grow g = { 0 };
	unsigned mw = w % NWIN;
	int zero = 0;

	if (!m || !m->write || end > m->base + m->len) {
		t = now_ns();
		if (!st || t < d->fail_ns ||
		    (uint64_t)st->st_blocks * 512 < ((uint64_t)st->st_size & ~(PAGE - 1)))
			goto fail; /* refused lately, or holes: a layout pin fills none */
		pre = end - from;
		if (pre < 4 * n)
			pre = 4 * n;
		if (pre > GROW_MAX)
			pre = GROW_MAX;
		pre = (end + pre + GROW_ALIGN - 1) & ~(GROW_ALIGN - 1);
		if (pre > wend)
			pre = wend;
		if (fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)(pre - off)) < 0) {
			d->fail_ns = t + RETRY_NS; /* ENOSPC, EPERM: the daemon's to say */
			goto fail;
		}
		if (!__atomic_load_n(&d->pre_end, __ATOMIC_ACQUIRE) && !d->foreign) {
			/* the first step: what lies past EOF is ours to trim,
			 * unless the file had blocks there already (map blocks
			 * aside): a program's own preallocation stays whole */
			uint64_t held = (uint64_t)st->st_blocks * 512,
				 used = ((uint64_t)st->st_size + PAGE - 1) & ~(PAGE - 1);
			d->foreign = held > used + (used >> 8) + (64u << 10);
			if (!d->foreign) {
				/* a writer's dup, parked for the trim (the fd
				 * closed last may be read-only) */
				int w = r_fcntl(fd, F_DUPFD_CLOEXEC, PFD_MIN);
				sigset_t old;
				if (w >= 0) {
					lock(&old);
					fd_retire(d->dev, d->ino, w);
					unlock(&old);
				}
			}
		}
		if (!d->foreign)
			raise_to(&d->pre_end, pre);
		if (m) {
			map_put(m);
			map_drop(d, mw, m, fd);
			m = NULL;
		}
		if (!__atomic_compare_exchange_n(&d->pinning, &zero, 1, false, __ATOMIC_ACQ_REL,
						 __ATOMIC_RELAXED))
			return NULL;
		if (!__atomic_load_n(&d->map[mw], __ATOMIC_ACQUIRE))
			map_new(d, w, fd, (uint64_t)st->st_size, pre, true);
		__atomic_store_n(&d->pinning, 0, __ATOMIC_RELEASE);
		m = map_get(d, mw);
		if (!m) {
			d->fail_ns = t + RETRY_NS;
			return NULL;
		}
		if (m->base != from || end > m->base + m->len || !m->write)
			goto fail;
	}
	/* the size up to @end, never down */
	g.size = end;
	if (ioctl(fd, PINFS_IOC_GROW, &g) < 0)
		goto fail;
	raise_to(&m->size, end);
	return m;
fail:
	if (m)
		map_put(m);
	return NULL;
}

/*
 * Copies between the pool and @iov at @off: the bytes copied, or FALLBACK
 * (do the call through FUSE).
 */
static ssize_t dax_io(int fd, const struct iovec *iov, int cnt, uint64_t off, bool write)
{
	struct dfile *d;
	struct dmap *m;
	struct stat st;
	uint64_t s1, s2, size, t;
	size_t n;
	unsigned char fl;
	unsigned w, mw;
	int zero = 0;

	if (fd < 0 || fd >= FDMAX || cnt < 0 || cnt > IOV_MAX)
		return FALLBACK;
	d = __atomic_load_n(&fdtab[fd], __ATOMIC_ACQUIRE);
	if (!d)
		return FALLBACK;
	fl = fdfl[fd];
	if (!(fl & (write ? FD_WR : FD_RD)) || (write && (fl & FD_APPEND)))
		return FALLBACK;
	n = iov_len(iov, cnt);
	if (n == 0 || n > SSIZE_MAX)
		return FALLBACK;
	w = (unsigned)(off >> WIN_SHIFT);
	if (((off + n - 1) >> WIN_SHIFT) != w)
		return FALLBACK; /* across two windows: rare, through FUSE */
	mw = w % NWIN;
	m = map_get(d, mw);
	if (m && m->base != ((uint64_t)w << WIN_SHIFT)) {
		/* another window in that place: the new one replaces it */
		map_put(m);
		map_drop(d, mw, m, fd);
		m = NULL;
	}
	/* inside the size at pin, the lease is all it takes: any shrink that
	 * cuts into the window revokes it (lease/policy.c, layout_first) */
	if (m && off + n <= m->base + m->len && off + n <= __atomic_load_n(&m->size, __ATOMIC_RELAXED) && (!write || m->write))
		goto copy;
	/* a large write past the size this process knows, into blocks the
	 * lease holds past EOF: grown without asking the kernel's size (a
	 * GETATTR; and if the file was cut meanwhile, the lease is revoked
	 * and the copy goes through FUSE) */
	if (m && write && m->write && n >= GROW_MIN && off + n <= m->base + m->len &&
	    off <= __atomic_load_n(&m->size, __ATOMIC_RELAXED)) {
		m = grow(d, fd, w, m, off, n, NULL);
		if (!m)
			return FALLBACK;
		goto copy;
	}
	/* else the kernel's size (its cache: every size change of the file
	 * went through it) */
	if (fstat(fd, &st) < 0)
		goto fallback;
	size = (uint64_t)st.st_size;
	if (!write && off >= size) {
		if (m)
			map_put(m);
		return 0;
	}
	if (write && (off > size || n > size - off)) {
		/* a write that extends the file: from the pool if it is large
		 * and starts inside the size (grow); else the daemon
		 * allocates */
		if (off > size || n < GROW_MIN)
			goto fallback;
		m = grow(d, fd, w, m, off, n, &st);
		if (!m)
			return FALLBACK;
		goto copy;
	}
	if (!write && n > size - off)
		n = (size_t)(size - off);
	if (m && off + n <= m->base + m->len && off + n <= __atomic_load_n(&m->size, __ATOMIC_RELAXED) && (!write || m->write))
		goto copy;
	/* no lease yet, the file grew past it, or it is read-only: take one
	 * (not more often than every RETRY_NS, unless none is held) */
	t = now_ns();
	if (m && t < d->retry_ns)
		goto fallback;
	if ((uint64_t)st.st_blocks * 512 < (size & ~(PAGE - 1))) {
		/* holes: a layout pin fills none */
		SAY_ONCE(d, SAID_HOLES, fd, "through FUSE while it has holes (%llu of %llu bytes allocated)",
			 (unsigned long long)st.st_blocks * 512, (unsigned long long)size);
		goto fallback;
	}
	if (m) {
		d->retry_ns = t + RETRY_NS;
		map_put(m);
		map_drop(d, mw, m, fd);
		m = NULL;
	}
	if (!__atomic_compare_exchange_n(&d->pinning, &zero, 1, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_RELAXED))
		return FALLBACK;
	if (!__atomic_load_n(&d->map[mw], __ATOMIC_ACQUIRE) && t >= d->fail_ns)
		map_new(d, w, fd, size, size, (fl & FD_WR) != 0);
	__atomic_store_n(&d->pinning, 0, __ATOMIC_RELEASE);
	m = map_get(d, mw);
	if (!m) {
		d->fail_ns = t + RETRY_NS; /* refused: not again for a while */
		return FALLBACK;
	}
	if (m->base != ((uint64_t)w << WIN_SHIFT) || off + n > m->base + m->len ||
	    off + n > __atomic_load_n(&m->size, __ATOMIC_RELAXED) || (write && !m->write))
		goto fallback;
copy:
	s1 = __atomic_load_n(&m->slot->seq, __ATOMIC_ACQUIRE);
	if (__atomic_load_n(&m->slot->lease_id, __ATOMIC_RELAXED) != m->lease ||
	    __atomic_load_n(&m->slot->state, __ATOMIC_RELAXED) != PINFS_LEASE_ACTIVE) {
		map_put(m);
		map_drop(d, mw, m, fd);
		return FALLBACK;
	}
	if (__atomic_load_n(&m->slot->flags, __ATOMIC_RELAXED) & PINFS_DAX_MAPPED) {
		/* the kernel caches pages of the file (a plain mapping): they
		 * may hold newer bytes than the pool, or be filled from it
		 * before this store; FUSE writes them back or drops them */
		map_put(m);
		return FALLBACK;
	}
	if (m->pfd < 0 || !pool_copy(m, iov, off, n, write))
		iov_copy(m->addr + (off - m->base), iov, cnt, n, write);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	s2 = __atomic_load_n(&m->slot->seq, __ATOMIC_RELAXED);
	if (s1 != s2) {
		/* revoked (or the file got page-cache users) during the copy:
		 * through FUSE again, which is right either way */
		bool gone = __atomic_load_n(&m->slot->state, __ATOMIC_RELAXED) != PINFS_LEASE_ACTIVE ||
			    __atomic_load_n(&m->slot->lease_id, __ATOMIC_RELAXED) != m->lease;
		map_put(m);
		if (gone)
			map_drop(d, mw, m, fd);
		return FALLBACK;
	}
	map_put(m);
	if (write) {
		__atomic_store_n(&d->dirty, 1, __ATOMIC_RELEASE);
		if (now_ns() - d->stamp_ns > STAMP_NS)
			stamp(d, fd);
	}
	return (ssize_t)n;
fallback:
	if (m)
		map_put(m);
	return FALLBACK;
}

/*
 * read()/write()/readv()/writev(): at the file position, which the open
 * file description may share with other processes (fork, a shell's
 * redirection) and with threads. The range is taken from the position
 * atomically, as the kernel's own read and write do: lseek(SEEK_CUR, +n)
 * moves it under the description's position lock (fdget_pos), so two
 * writers that share it get disjoint ranges and lose nothing. What a read
 * or write did not do (EOF, an error) is given back. O_APPEND is asked of
 * the description itself, which another process may have set: such a
 * write goes through FUSE, which appends.
 */
static ssize_t dax_pos(int fd, const struct iovec *iov, int cnt, bool write)
{
	off_t end, off;
	size_t n;
	ssize_t r;

	if (fd < 0 || fd >= FDMAX || !__atomic_load_n(&fdtab[fd], __ATOMIC_ACQUIRE) || cnt < 0 ||
	    cnt > IOV_MAX)
		return FALLBACK;
	if (write && (fdfl[fd] & FD_APPEND))
		return FALLBACK;
	n = iov_len(iov, cnt);
	if (n == 0 || n > SSIZE_MAX)
		return FALLBACK;
	if (write) {
		int fl = r_fcntl(fd, F_GETFL);
		if (fl < 0 || (fl & O_APPEND))
			return FALLBACK;
	}
	end = lseek(fd, (off_t)n, SEEK_CUR);
	if (end < (off_t)n)
		return FALLBACK; /* past the largest offset: the kernel says */
	off = end - (off_t)n;
	r = dax_io(fd, iov, cnt, (uint64_t)off, write);
	if (r == FALLBACK)
		r = write ? r_pwritev(fd, iov, cnt, off) : r_preadv(fd, iov, cnt, off);
	if (r < (ssize_t)n) {
		int saved = errno;
		(void)lseek(fd, (r > 0 ? (off_t)r : 0) - (off_t)n, SEEK_CUR);
		errno = saved;
	}
	return r;
}

/* ---- shared mappings ---------------------------------------------------- */

/*
 * mmap(MAP_SHARED) of a served file, inside its size (up to the page that
 * holds EOF), maps the pool's blocks under a layout lease of that range,
 * taken through a private dup of the fd (a mapping holds its file, as the
 * kernel's does). A mapping that reaches past EOF goes through FUSE: the
 * file may grow under it, and the kernel's mapping then serves the new
 * pages, as a DAX file system's does. So does a mapping of a file whose
 * pages the kernel caches for a plain mapping (PINFS_DAX_MAPPED): two
 * mappings of one file must be one memory. Not MADV_DONTFORK: a child
 * keeps the mapping, as with the kernel's, and the daemon keeps the
 * blocks while any process maps them (it reads /proc/PID/maps before
 * reusing them); the lease stays the parent's, which alone unpins it.
 *
 * A revocation (truncate, punch), or the file getting a plain mapping, is
 * seen by a thread that waits on the state file's revoke counter (a futex
 * the daemon wakes): it replaces the whole range with the kernel's own
 * FUSE mapping of the file (MAP_FIXED, so the address stays), which is
 * coherent with write() (fusefs/coherent.c) and gives SIGBUS past the new
 * EOF; then it unpins. Until it has, a load or store reaches the old,
 * quarantined blocks: never another file's.
 *
 * The program's own changes to a region's addresses: munmap of all of it
 * unpins; munmap, MAP_FIXED or mprotect of a part of it, and mremap of
 * any of it, first turn the whole region into the kernel's mapping of the
 * file (which then grows, moves or splits as the kernel's does) and end
 * its lease, so that no revocation later maps over what the program put
 * there, and a mapping grown by mremap never reaches the pool's next
 * blocks. MAP_FIXED over all of it ends it as munmap does.
 */
#define NREGIONS 256
struct dregion {
	char *addr;  /* 0: free, 1: being set up; written under tab_lock */
	size_t len;
	off_t off;
	int prot, flags, fd; /* fd: our dup */
	pid_t owner;	     /* the lease's holder (a child of a fork is not) */
	char *spare;	     /* the kernel's mapping of the same range, aside */
	dev_t dev;	     /* the file */
	ino_t ino;
	bool going;	     /* the program is unmapping or replacing all of it:
			      * the watcher leaves it alone (regions_change) */
	uint64_t lease;
	const struct pinfs_dax_slot *slot;
	const struct pinfs_dax_hdr *hdr;
};
static struct dregion regions[NREGIONS];
static int watcher_started;

/* Our dup @fd of file @dev/@ino is no longer needed: parked in the file's
 * entry while the program has the file open (its close would drop the
 * program's record locks), else closed. Under tab_lock. */
static void fd_retire(dev_t dev, ino_t ino, int fd)
{
	for (int i = 0; i < NFILES; i++) {
		struct dfile *d = &files[i];
		if (!d->refs || d->dev != dev || d->ino != ino)
			continue;
		for (int k = 0; k < NPARKED; k++)
			if (d->parked[k] < 0) {
				d->parked[k] = fd;
				return;
			}
		break;
	}
	r_close(fd);
}

/* A parked dup of @d's file taken back, one that allows @need (O_RDONLY,
 * O_WRONLY or O_RDWR access); -1: none. */
static int fd_reuse(struct dfile *d, int need)
{
	sigset_t old;
	int fd = -1;

	lock(&old);
	for (int k = 0; k < NPARKED && fd < 0; k++) {
		int acc = d->parked[k] < 0 ? -1 : r_fcntl(d->parked[k], F_GETFL) & O_ACCMODE;
		if (acc == O_RDWR || acc == need) {
			fd = d->parked[k];
			d->parked[k] = -1;
		}
	}
	unlock(&old);
	return fd;
}

/* Replaces region @r by the kernel's mapping of its file, and ends its
 * lease if ours. Under tab_lock. */
static void region_fallback(struct dregion *r)
{
	struct pinfs_unpin u = { .lease_id = r->lease };
	int fd = r->fd, efd = -1;

	if (!r->lease)
		return; /* done already */
	/* the spare moved over the region: no mmap of the file now, which
	 * would drop its page cache and wait for a page a plain mapping is
	 * filling -- a fill that may be waiting for this (ffs_dax_unmap_wait) */
	if (r->spare && syscall(SYS_mremap, r->spare, r->len, r->len, MREMAP_MAYMOVE | MREMAP_FIXED,
				r->addr) == (long)r->addr) {
		r->spare = NULL;
		goto unpin;
	}
	if (fd < 0) /* the program closed our fd: SIGBUS, never stale bytes */
		fd = efd = (int)syscall(SYS_memfd_create, "pinfs-dax-eof", MFD_CLOEXEC);
	/* no populate: its fill would wait for this very lease */
	if (r_mmap(r->addr, r->len, r->prot,
		   (r->flags & ~(MAP_FIXED_NOREPLACE | MAP_POPULATE | MAP_LOCKED)) | MAP_FIXED, fd,
		   efd >= 0 ? 0 : r->off) == MAP_FAILED)
		(void)r_mmap(r->addr, r->len, PROT_NONE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
	if (efd >= 0) {
		r_close(efd);
		r->lease = 0;
		return;
	}
unpin:
	if (r->owner == getpid())
		(void)ioctl(r->fd, PINFS_IOC_UNPIN, &u);
	r->lease = 0;
}

/* Ends region @r: @keep, its addresses become the kernel's mapping of the
 * file; else they are gone (munmap, MAP_FIXED over all of it). Under
 * tab_lock. */
static void region_end(struct dregion *r, bool keep)
{
	struct pinfs_unpin u = { .lease_id = r->lease };

	if (keep)
		region_fallback(r);
	else if (r->lease && r->fd >= 0 && r->owner == getpid())
		(void)ioctl(r->fd, PINFS_IOC_UNPIN, &u);
	if (r->spare)
		r_munmap(r->spare, r->len);
	r->spare = NULL;
	if (r->fd >= 0)
		fd_retire(r->dev, r->ino, r->fd);
	r->fd = -1;
	r->lease = 0;
	__atomic_store_n(&r->addr, NULL, __ATOMIC_RELEASE);
}

static void *watcher(void *arg)
{
	const struct pinfs_dax_hdr *hdr = arg;
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	for (;;) {
		uint32_t seen = __atomic_load_n(&hdr->revokes, __ATOMIC_ACQUIRE);
		sigset_t old;

		lock(&old);
		for (int i = 0; i < NREGIONS; i++) {
			struct dregion *r = &regions[i];
			char *a = __atomic_load_n(&r->addr, __ATOMIC_ACQUIRE);
			if (a && a != (char *)1 && r->lease && r->hdr == hdr && !r->going &&
			    (__atomic_load_n(&r->slot->lease_id, __ATOMIC_ACQUIRE) != r->lease ||
			     __atomic_load_n(&r->slot->state, __ATOMIC_ACQUIRE) != PINFS_LEASE_ACTIVE ||
			     (__atomic_load_n(&r->slot->flags, __ATOMIC_ACQUIRE) & PINFS_DAX_MAPPED)))
				region_fallback(r);
		}
		unlock(&old);
		syscall(SYS_futex, &hdr->revokes, FUTEX_WAIT, seen, NULL, NULL, 0);
	}
	return NULL;
}

/* One watcher per state file (per mount): each waits on its own revoke
 * counter. watched[] is claimed by compare-and-swap; two threads racing to
 * start one mount's may start two, which is harmless (region_fallback runs
 * under tab_lock and once per lease). */
static const struct pinfs_dax_hdr *watched[NDEVS];

static void watcher_start(const struct pinfs_dax_hdr *hdr)
{
	pthread_t t;
	pthread_attr_t a;
	int i;

	for (i = 0; i < NDEVS; i++)
		if (__atomic_load_n(&watched[i], __ATOMIC_ACQUIRE) == hdr)
			return;
	for (i = 0; i < NDEVS; i++) {
		const struct pinfs_dax_hdr *none = NULL;
		if (__atomic_compare_exchange_n(&watched[i], &none, hdr, false, __ATOMIC_ACQ_REL,
						__ATOMIC_RELAXED))
			break;
	}
	if (i == NDEVS)
		return; /* cannot happen: one state file per ddev */
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&a, 64 << 10);
	if (pthread_create(&t, &a, watcher, (void *)hdr))
		__atomic_store_n(&watched[i], NULL, __ATOMIC_RELEASE);
	else
		__atomic_store_n(&watcher_started, 1, __ATOMIC_RELEASE);
	pthread_attr_destroy(&a);
}

/* The pool mapping of [off, off + len) of @fd's file, or MAP_FAILED (the
 * caller maps through the kernel then). */
static void *dax_mmap(void *want, size_t len, int prot, int flags, int fd, off_t off)
{
	struct pinfs_pin p;
	struct pinfs_segs q;
	struct pinfs_unpin u = { 0 };
	struct dfile *d;
	struct dregion *r = NULL;
	struct stat st;
	char *base = MAP_FAILED;
	uint64_t size, plen;
	uint32_t have = 0;
	size_t mlen;
	int pfd = -1, dfd = -1;
	sigset_t old;

	if (fd < 0 || fd >= FDMAX || !(d = __atomic_load_n(&fdtab[fd], __ATOMIC_ACQUIRE)))
		return MAP_FAILED;
	if ((flags & MAP_TYPE) != MAP_SHARED || off < 0 || off % PAGE || !len ||
	    (flags & (MAP_FIXED_NOREPLACE | MAP_HUGETLB)) || !(fdfl[fd] & FD_RD) ||
	    ((prot & PROT_WRITE) && !(fdfl[fd] & FD_WR)) || (prot & PROT_EXEC))
		return MAP_FAILED;
	if (fstat(fd, &st) < 0)
		return MAP_FAILED;
	size = (uint64_t)st.st_size;
	if ((uint64_t)off >= size)
		return MAP_FAILED;
	if (len > ((size + PAGE - 1) & ~(PAGE - 1)) - (uint64_t)off) {
		SAY_ONCE(d, SAID_MMAP, fd, "a shared mapping past its end goes through FUSE's page cache "
					   "(the file may grow under it)");
		return MAP_FAILED;
	}
	if ((uint64_t)st.st_blocks * 512 < (size & ~(PAGE - 1))) {
		SAY_ONCE(d, SAID_MMAP, fd, "a shared mapping of it goes through FUSE's page cache while "
					   "it has holes");
		return MAP_FAILED;
	}
	mlen = (len + PAGE - 1) & ~(PAGE - 1);
	plen = size - (uint64_t)off < len ? size - (uint64_t)off : len;
	memset(&p, 0, sizeof(p));
	p.offset = (uint64_t)off;
	p.length = plen;
	p.flags = PINFS_PIN_LAYOUT | PINFS_PIN_MMAP | PINFS_PIN_REVOCABLE |
		  ((prot & PROT_WRITE) ? PINFS_PIN_WRITE : 0);
	if (ioctl(fd, PINFS_IOC_PIN, &p) < 0) {
		SAY_ONCE(d, SAID_MMAP, fd, "a shared mapping of it goes through FUSE's page cache: the "
					   "daemon refused its layout lease (%s)", strerror(errno));
		return MAP_FAILED;
	}
	u.lease_id = p.lease_id;
	if (!p.reserved || p.reserved > d->dd->hdr->nslots || p.pin_offset != (uint64_t)off ||
	    p.pin_length != mlen || !p.nsegs || p.nsegs > PINFS_SEGS_MAX)
		goto fail;
	if (__atomic_load_n(&((const struct pinfs_dax_slot *)(d->dd->hdr + 1) + (p.reserved - 1))->flags,
			    __ATOMIC_ACQUIRE) & PINFS_DAX_MAPPED) {
		SAY_ONCE(d, SAID_MMAP, fd, "a shared mapping of it goes through FUSE's page cache while "
					   "another mapping uses it");
		goto fail;
	}
	lock(&old);
	for (int i = 0; i < NREGIONS && !r; i++)
		if (!regions[i].addr) {
			r = &regions[i];
			r->addr = (char *)1; /* taken */
		}
	unlock(&old);
	if (!r)
		goto fail;
	dfd = fd_reuse(d, (prot & PROT_WRITE) ? O_RDWR : O_RDONLY);
	if (dfd < 0)
		dfd = r_fcntl(fd, F_DUPFD_CLOEXEC, PFD_MIN);
	pfd = r_open(d->dd->pool, ((prot & PROT_WRITE) ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (dfd < 0 || pfd < 0)
		goto fail;
	base = r_mmap(want, mlen, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE |
			      (flags & MAP_FIXED), -1, 0);
	if (base == MAP_FAILED)
		goto fail;
	while (have < p.nsegs_total) {
		const struct pinfs_seg *sg = p.segs;
		uint32_t n = p.nsegs;
		if (have) {
			memset(&q, 0, sizeof(q));
			q.lease_id = p.lease_id;
			q.first = have;
			if (ioctl(fd, PINFS_IOC_SEGS, &q) < 0 || !q.nsegs || q.nsegs > PINFS_SEGS_MAX)
				goto fail;
			sg = q.segs;
			n = q.nsegs;
		}
		for (uint32_t i = 0; i < n && have < p.nsegs_total; i++, have++) {
			uint64_t at = sg[i].file_off - (uint64_t)off;
			if (sg[i].file_off < (uint64_t)off || at + sg[i].len > mlen ||
			    r_mmap(base + at, sg[i].len, prot, MAP_SHARED | MAP_FIXED, pfd,
				   (off_t)sg[i].pool_off) == MAP_FAILED)
				goto fail;
		}
	}
	r_close(pfd);
	/* the kernel's mapping of the range, kept aside for the fallback (it
	 * enters the file's cached-I/O mode and drops its page cache now,
	 * when no plain mapping can be waiting for us) */
	r->spare = r_mmap(NULL, mlen, prot, MAP_SHARED, dfd, off);
	if (r->spare == MAP_FAILED)
		r->spare = NULL;
	r->len = mlen;
	r->off = off;
	r->prot = prot;
	r->flags = flags & ~MAP_FIXED;
	r->fd = dfd;
	r->dev = st.st_dev;
	r->ino = st.st_ino;
	r->owner = owner_pid;
	r->lease = p.lease_id;
	r->slot = (const struct pinfs_dax_slot *)(d->dd->hdr + 1) + (p.reserved - 1);
	r->hdr = d->dd->hdr;
	__atomic_store_n(&r->addr, base, __ATOMIC_RELEASE);
	watcher_start(d->dd->hdr);
	/* revoked before the watcher looked: it may have slept through it */
	if (r->slot->lease_id != r->lease || r->slot->state != PINFS_LEASE_ACTIVE ||
	    (r->slot->flags & PINFS_DAX_MAPPED)) {
		lock(&old);
		if (r->lease)
			region_fallback(r);
		unlock(&old);
	}
	return base;
fail:
	if (base != MAP_FAILED && !(flags & MAP_FIXED))
		r_munmap(base, mlen);
	if (pfd >= 0)
		r_close(pfd);
	if (dfd >= 0) {
		lock(&old);
		fd_retire(st.st_dev, st.st_ino, dfd);
		unlock(&old);
	}
	if (r)
		__atomic_store_n(&r->addr, NULL, __ATOMIC_RELEASE);
	(void)ioctl(fd, PINFS_IOC_UNPIN, &u);
	/* MAP_FIXED over @want was done: the kernel's mapping replaces it */
	return MAP_FAILED;
}

/*
 * The program is about to change the addresses [addr, addr + len): munmap
 * or MAP_FIXED (@gone), mprotect or mremap (!@gone). Any region it touches
 * only in part (or at all, !@gone) becomes the kernel's mapping of its file
 * now, so that the call applies to that. Regions wholly inside a range
 * that goes are returned in @whole, marked going (the watcher must not map
 * the file back over them once the call took them away): regions_gone()
 * ends them if the call succeeded, else unmarks them (not a region the
 * call itself makes: dax_mmap MAP_FIXED).
 */
struct region_set {
	uint64_t bits[NREGIONS / 64];
	char *addr[NREGIONS]; /* where each one was */
};

static void regions_change(void *addr, size_t len, bool gone, struct region_set *whole)
{
	char *a = addr;
	sigset_t old;

	memset(whole->bits, 0, sizeof(whole->bits)); /* addr[i] is read where set */
	if (!__atomic_load_n(&watcher_started, __ATOMIC_ACQUIRE) || borrowed())
		return;
	lock(&old);
	for (int i = 0; i < NREGIONS; i++) {
		struct dregion *r = &regions[i];
		if (!r->addr || r->addr == (char *)1 || r->addr + r->len <= a || r->addr >= a + len)
			continue;
		if (gone && r->addr >= a && r->addr + r->len <= a + len) {
			whole->bits[i / 64] |= 1ull << (i % 64);
			whole->addr[i] = r->addr;
			r->going = true;
		} else
			region_end(r, true);
	}
	unlock(&old);
}

static void regions_gone(const struct region_set *whole, bool ok)
{
	sigset_t old;
	bool any = false;

	for (int i = 0; i < NREGIONS / 64; i++)
		any |= whole->bits[i] != 0;
	if (!any)
		return;
	lock(&old);
	for (int i = 0; i < NREGIONS; i++)
		if ((whole->bits[i / 64] >> (i % 64) & 1) && regions[i].addr == whole->addr[i] &&
		    regions[i].going) {
			regions[i].going = false;
			if (ok)
				region_end(&regions[i], false);
		}
	unlock(&old);
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	struct region_set whole;
	void *p;

	ensure();
	memset(whole.bits, 0, sizeof(whole.bits));
	if ((flags & MAP_FIXED) && len)
		regions_change(addr, len, true, &whole);
	p = MAP_FAILED;
	if (fd >= 0 && fd < FDMAX && __atomic_load_n(&fdtab[fd], __ATOMIC_ACQUIRE) && !borrowed())
		p = dax_mmap(addr, len, prot, flags, fd, off);
	if (p == MAP_FAILED)
		p = r_mmap(addr, len, prot, flags, fd, off);
	regions_gone(&whole, p != MAP_FAILED);
	return p;
}
EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
	__attribute__((alias("mmap")));

EXPORT int munmap(void *addr, size_t len)
{
	struct region_set whole;
	int rc;

	ensure();
	memset(whole.bits, 0, sizeof(whole.bits));
	if (len)
		regions_change(addr, len, true, &whole);
	rc = r_munmap(addr, len);
	regions_gone(&whole, rc == 0);
	return rc;
}

/*
 * msync() of a writable pinfs-dax mapping: the pool's pages are the file's,
 * so there is nothing to write back, but POSIX marks mtime and ctime for
 * update between a store through a shared mapping and the next msync():
 * the library cannot see stores, so it sets them here (futimens NOW).
 */
EXPORT int msync(void *addr, size_t len, int flags)
{
	static const struct timespec now[2] = { { 0, UTIME_OMIT }, { 0, UTIME_NOW } };
	char *a = addr;
	sigset_t old;
	int rc;

	ensure();
	rc = r_msync(addr, len, flags);
	if (rc || !(flags & (MS_SYNC | MS_ASYNC)) ||
	    !__atomic_load_n(&watcher_started, __ATOMIC_ACQUIRE) || borrowed())
		return rc;
	/* through the region's own fd, under the lock that keeps it open (a
	 * dup closed again would drop the program's fcntl locks on the file) */
	lock(&old);
	for (int i = 0; i < NREGIONS; i++) {
		struct dregion *r = &regions[i];
		if (r->addr && r->addr != (char *)1 && r->lease && (r->prot & PROT_WRITE) &&
		    r->fd >= 0 && r->addr < a + len && r->addr + r->len > a)
			(void)r_futimens(r->fd, now);
	}
	unlock(&old);
	return rc;
}

EXPORT int mprotect(void *addr, size_t len, int prot)
{
	ensure();
	struct region_set whole;

	if (len)
		regions_change(addr, len, false, &whole);
	return r_mprotect(addr, len, prot);
}

EXPORT void *mremap(void *old, size_t olen, size_t nlen, int flags, ...)
{
	struct region_set whole, dest;
	va_list ap;
	void *want, *p;

	ensure();
	va_start(ap, flags);
	want = va_arg(ap, void *);
	va_end(ap);
	/* the kernel's mapping moves and grows as the program expects (past
	 * EOF: SIGBUS), and no revocation maps over the old place; a fixed
	 * destination unmaps what was there */
	regions_change(old, olen ? olen : 1, false, &whole);
	memset(dest.bits, 0, sizeof(dest.bits));
	if ((flags & MREMAP_FIXED) && nlen)
		regions_change(want, nlen, true, &dest);
	p = r_mremap(old, olen, nlen, flags, want);
	regions_gone(&dest, p != MAP_FAILED);
	return p;
}

/* ---- the interposed calls ----------------------------------------------- */

EXPORT ssize_t read(int fd, void *buf, size_t n)
{
	ensure();
	struct iovec v = { buf, n };
	ssize_t r = dax_pos(fd, &v, 1, false);

	return r != FALLBACK ? r : r_read(fd, buf, n);
}

EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
	ensure();
	struct iovec v = { (void *)buf, n };
	ssize_t r = dax_pos(fd, &v, 1, true);

	return r != FALLBACK ? r : r_write(fd, buf, n);
}

EXPORT ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
	ensure();
	struct iovec v = { buf, n };
	ssize_t r = off < 0 ? FALLBACK : dax_io(fd, &v, 1, (uint64_t)off, false);

	return r != FALLBACK ? r : r_pread(fd, buf, n, off);
}
EXPORT ssize_t pread64(int fd, void *buf, size_t n, off_t off) __attribute__((alias("pread")));

EXPORT ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	ensure();
	struct iovec v = { (void *)buf, n };
	ssize_t r = off < 0 ? FALLBACK : dax_io(fd, &v, 1, (uint64_t)off, true);

	return r != FALLBACK ? r : r_pwrite(fd, buf, n, off);
}
EXPORT ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
	__attribute__((alias("pwrite")));

EXPORT ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
	ensure();
	ssize_t r = dax_pos(fd, iov, cnt, false);

	return r != FALLBACK ? r : r_readv(fd, iov, cnt);
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	ensure();
	ssize_t r = dax_pos(fd, iov, cnt, true);

	return r != FALLBACK ? r : r_writev(fd, iov, cnt);
}

EXPORT ssize_t preadv(int fd, const struct iovec *iov, int cnt, off_t off)
{
	ensure();
	ssize_t r = off < 0 ? FALLBACK : dax_io(fd, iov, cnt, (uint64_t)off, false);

	return r != FALLBACK ? r : r_preadv(fd, iov, cnt, off);
}
EXPORT ssize_t preadv64(int fd, const struct iovec *iov, int cnt, off_t off)
	__attribute__((alias("preadv")));

EXPORT ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	ensure();
	ssize_t r = off < 0 ? FALLBACK : dax_io(fd, iov, cnt, (uint64_t)off, true);

	return r != FALLBACK ? r : r_pwritev(fd, iov, cnt, off);
}
EXPORT ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off)
	__attribute__((alias("pwritev")));

static mode_t mode_arg(int flags, va_list ap)
{
	ensure();
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, mode_t) : 0;
}

EXPORT int open(const char *path, int flags, ...)
{
	ensure();
	va_list ap;
	mode_t mode;
	int fd;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	fd = r_open(path, flags, mode);
	fd_opened(fd, flags);
	return fd;
}
EXPORT int open64(const char *path, int flags, ...) __attribute__((alias("open")));

EXPORT int openat(int dfd, const char *path, int flags, ...)
{
	ensure();
	va_list ap;
	mode_t mode;
	int fd;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	fd = r_openat(dfd, path, flags, mode);
	fd_opened(fd, flags);
	return fd;
}
EXPORT int openat64(int dfd, const char *path, int flags, ...) __attribute__((alias("openat")));

EXPORT int creat(const char *path, mode_t mode)
{
	ensure();
	return open(path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}
EXPORT int creat64(const char *path, mode_t mode) __attribute__((alias("creat")));

/* The program closes fds [first, last] (close, close_range over
 * everything): those of ours among them are forgotten -- a map's pool fd,
 * a region's or a parked dup -- so that we never close a number it reuses. */
static void pfd_closing_range(unsigned first, unsigned last)
{
	if (last < PFD_MIN || borrowed())
		return;
	for (int i = 0; i < NFILES; i++) {
		for (int k = 0; k < NPARKED; k++) {
			int q = __atomic_load_n(&files[i].parked[k], __ATOMIC_RELAXED);
			if (q >= PFD_MIN && (unsigned)q >= first && (unsigned)q <= last)
				__atomic_compare_exchange_n(&files[i].parked[k], &q, -1, false,
							    __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
		}
	}
	for (int i = 0; i < NMAPS; i++) {
		int fd = __atomic_load_n(&maps[i].pfd, __ATOMIC_RELAXED);
		if (fd >= PFD_MIN && (unsigned)fd >= first && (unsigned)fd <= last)
			__atomic_store_n(&maps[i].pfd, -1, __ATOMIC_RELEASE);
	}
	for (int i = 0; i < NREGIONS; i++) {
		int fd = __atomic_load_n(&regions[i].fd, __ATOMIC_RELAXED);
		if (regions[i].addr && fd >= PFD_MIN && (unsigned)fd >= first && (unsigned)fd <= last)
			__atomic_store_n(&regions[i].fd, -1, __ATOMIC_RELEASE);
	}
}

static void pfd_closing(int fd)
{
	if (fd >= 0)
		pfd_closing_range((unsigned)fd, (unsigned)fd);
}

EXPORT int close(int fd)
{
	ensure();
	pfd_closing(fd);
	fd_closing(fd);
	return r_close(fd);
}

EXPORT int fclose(FILE *fp)
{
	ensure();
	if (fp)
		fd_closing(fileno(fp));
	return r_fclose(fp);
}

EXPORT int close_range(unsigned first, unsigned last, int flags)
{
	ensure();
	if (!(flags & CLOSE_RANGE_CLOEXEC)) {
		pfd_closing_range(first, last);
		for (unsigned fd = first; fd <= last && fd < FDMAX; fd++)
			fd_closing((int)fd);
	}
	return r_close_range(first, last, flags);
}

/* glibc's closefrom() closes through its own close_range (or a loop of
 * its own close): seen here, or its fd numbers and our pool fds would be
 * served from the old files' blocks once reused. */
EXPORT void closefrom(int lowfd)
{
	ensure();
	pfd_closing_range(lowfd < 0 ? 0 : (unsigned)lowfd, UINT_MAX);
	for (int fd = lowfd < 0 ? 0 : lowfd; fd < FDMAX; fd++)
		fd_closing(fd);
	r_closefrom(lowfd);
}

/*
 * Descriptors made by something other than open: the number may be one
 * closed behind our back (syscall(SYS_close), io_uring), whose entry would
 * serve the new descriptor's pread/pwrite from the old file's blocks
 * (fd_opened() does the same for opens). The common makers only.
 */
static void fd_made(int fd)
{
	struct dfile *d;
	sigset_t old;

	if (fd < 0 || fd >= FDMAX || !__atomic_load_n(&fdtab[fd], __ATOMIC_ACQUIRE) || borrowed())
		return;
	lock(&old);
	d = __atomic_exchange_n(&fdtab[fd], NULL, __ATOMIC_ACQ_REL);
	if (d)
		d->refs--;
	unlock(&old);
}

/* stdio's opens (never served from the pool): the fd number they got may
 * be one closed behind our back -- freopen() closes its stream's own fd
 * inside glibc -- so its entry goes. */
static FILE *file_made(FILE *fp)
{
	if (fp)
		fd_made(fileno(fp));
	return fp;
}

EXPORT FILE *fopen(const char *path, const char *mode)
{
	ensure();
	return file_made(r_fopen(path, mode));
}

/* one off_t on this ABI: the 64-bit names are the same calls */
EXPORT FILE *fopen64(const char *path, const char *mode) __attribute__((alias("fopen")));

EXPORT FILE *freopen(const char *path, const char *mode, FILE *fp)
{
	ensure();
	if (fp && path)
		fd_closing(fileno(fp));
	return file_made(r_freopen(path, mode, fp));
}

EXPORT FILE *freopen64(const char *path, const char *mode, FILE *fp)
	__attribute__((alias("freopen")));

EXPORT FILE *tmpfile(void)
{
	ensure();
	return file_made(r_tmpfile());
}

/* _FORTIFY_SOURCE's open and openat: served as open() is */
EXPORT int __open_2(const char *path, int flags)
{
	ensure();
	int fd = r_open_2(path, flags);
	fd_opened(fd, flags);
	return fd;
}

EXPORT int __open64_2(const char *path, int flags) __attribute__((alias("__open_2")));

EXPORT int __openat_2(int dfd, const char *path, int flags)
{
	ensure();
	int fd = r_openat_2(dfd, path, flags);
	fd_opened(fd, flags);
	return fd;
}

EXPORT int __openat64_2(int dfd, const char *path, int flags) __attribute__((alias("__openat_2")));

/* descriptors passed in (SCM_RIGHTS) */
static void msg_made(const struct msghdr *msg)
{
	for (const struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)msg); c;
	     c = CMSG_NXTHDR((struct msghdr *)msg, (struct cmsghdr *)c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; (i + 1) * sizeof(int) <= c->cmsg_len - CMSG_LEN(0); i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
			fd_made(fd);
		}
	}
}

EXPORT ssize_t recvmsg(int s, struct msghdr *msg, int flags)
{
	ensure();
	ssize_t r = r_recvmsg(s, msg, flags);
	if (r >= 0 && msg && msg->msg_controllen)
		msg_made(msg);
	return r;
}

EXPORT int recvmmsg(int s, struct mmsghdr *v, unsigned n, int flags, struct timespec *t)
{
	ensure();
	int r = r_recvmmsg(s, v, n, flags, t);
	for (int i = 0; i < r; i++)
		if (v[i].msg_hdr.msg_controllen)
			msg_made(&v[i].msg_hdr);
	return r;
}

static void fd_made2(int r, const int fds[2])
{
	if (r == 0) {
		fd_made(fds[0]);
		fd_made(fds[1]);
	}
}

EXPORT int memfd_create(const char *name, unsigned flags)
{
	ensure();
	int fd = r_memfd_create(name, flags);
	fd_made(fd);
	return fd;
}

EXPORT int pipe(int fds[2])
{
	ensure();
	int r = r_pipe(fds);
	fd_made2(r, fds);
	return r;
}

EXPORT int pipe2(int fds[2], int flags)
{
	ensure();
	int r = r_pipe2(fds, flags);
	fd_made2(r, fds);
	return r;
}

EXPORT int socket(int domain, int type, int proto)
{
	ensure();
	int fd = r_socket(domain, type, proto);
	fd_made(fd);
	return fd;
}

EXPORT int socketpair(int domain, int type, int proto, int fds[2])
{
	ensure();
	int r = r_socketpair(domain, type, proto, fds);
	fd_made2(r, fds);
	return r;
}

EXPORT int accept(int s, struct sockaddr *addr, socklen_t *len)
{
	ensure();
	int fd = r_accept(s, addr, len);
	fd_made(fd);
	return fd;
}

EXPORT int accept4(int s, struct sockaddr *addr, socklen_t *len, int flags)
{
	ensure();
	int fd = r_accept4(s, addr, len, flags);
	fd_made(fd);
	return fd;
}

EXPORT int dup(int fd)
{
	ensure();
	int n = r_dup(fd);

	if (n >= 0)
		fd_dup(fd, n, 0);
	return n;
}

EXPORT int dup2(int fd, int to)
{
	ensure();
	int n;

	if (fd != to && fcntl(fd, F_GETFD) >= 0) {
		pfd_closing(to);
		fd_closing(to);
	}
	n = r_dup2(fd, to);
	if (n >= 0 && fd != to)
		fd_dup(fd, n, 0);
	return n;
}

EXPORT int dup3(int fd, int to, int flags)
{
	ensure();
	int n;

	if (fd != to && fcntl(fd, F_GETFD) >= 0) {
		pfd_closing(to);
		fd_closing(to);
	}
	n = r_dup3(fd, to, flags);
	if (n >= 0)
		fd_dup(fd, n, flags);
	return n;
}

EXPORT int fcntl(int fd, int cmd, ...)
{
	ensure();
	va_list ap;
	long arg;
	int r;

	va_start(ap, cmd);
	arg = va_arg(ap, long);
	va_end(ap);
	r = r_fcntl(fd, cmd, arg);
	if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC))
		fd_dup(fd, r, 0);
	if (r >= 0 && cmd == F_SETFL && fd >= 0 && fd < FDMAX &&
	    __atomic_load_n(&fdtab[fd], __ATOMIC_ACQUIRE)) {
		/* O_APPEND is the description's: its dups' entries may lag,
		 * so every fd of the file goes through FUSE for writes now */
		int fl = r_fcntl(fd, F_GETFL);
		if (fl >= 0 && (fl & O_APPEND)) {
			struct dfile *d = __atomic_load_n(&fdtab[fd], __ATOMIC_ACQUIRE);
			for (int i = 0; i < FDMAX; i++)
				if (__atomic_load_n(&fdtab[i], __ATOMIC_RELAXED) == d)
					fdfl[i] |= FD_APPEND;
		}
	}
	return r;
}
EXPORT int fcntl64(int fd, int cmd, ...) __attribute__((alias("fcntl")));

/*
 * Times the program sets itself (tar, cp -p, touch -d) are the file's:
 * stores it made before are no longer to be stamped at close -- that would
 * put "now" over them. By fd, or by path (the file, if open here).
 */
static void times_set(struct dfile *d)
{
	if (d) {
		__atomic_store_n(&d->dirty, 0, __ATOMIC_RELEASE);
		d->stamp_ns = now_ns();
	}
}

static void times_set_fd(int fd)
{
	if (fd >= 0 && fd < FDMAX)
		times_set(__atomic_load_n(&fdtab[fd], __ATOMIC_ACQUIRE));
}

static void times_set_at(int dfd, const char *path, int flags)
{
	struct stat st;

	if (!path) {
		times_set_fd(dfd);
		return;
	}
	if (fstatat(dfd, path, &st, flags & (AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH)) < 0 ||
	    !S_ISREG(st.st_mode))
		return;
	for (int i = 0; i < NFILES; i++)
		if (__atomic_load_n(&files[i].refs, __ATOMIC_RELAXED) && files[i].dev == st.st_dev &&
		    files[i].ino == st.st_ino)
			times_set(&files[i]);
}

EXPORT int futimens(int fd, const struct timespec ts[2])
{
	ensure();
	int r = r_futimens(fd, ts);
	if (!r && (!ts || ts[1].tv_nsec != UTIME_OMIT)) /* mtime set */
		times_set_fd(fd);
	return r;
}

EXPORT int utimensat(int dfd, const char *path, const struct timespec ts[2], int flags)
{
	ensure();
	int r = r_utimensat(dfd, path, ts, flags);
	if (!r && (!ts || ts[1].tv_nsec != UTIME_OMIT))
		times_set_at(dfd, path, flags);
	return r;
}

EXPORT int futimes(int fd, const struct timeval tv[2])
{
	ensure();
	int r = r_futimes(fd, tv);
	if (!r)
		times_set_fd(fd);
	return r;
}

EXPORT int utimes(const char *path, const struct timeval tv[2])
{
	ensure();
	int r = r_utimes(path, tv);
	if (!r)
		times_set_at(AT_FDCWD, path, 0);
	return r;
}

EXPORT int lutimes(const char *path, const struct timeval tv[2])
{
	ensure();
	int r = r_lutimes(path, tv);
	if (!r)
		times_set_at(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW);
	return r;
}

EXPORT int futimesat(int dfd, const char *path, const struct timeval tv[2])
{
	ensure();
	int r = r_futimesat(dfd, path, tv);
	if (!r)
		times_set_at(dfd, path, 0);
	return r;
}

EXPORT int utime(const char *path, const struct utimbuf *t)
{
	ensure();
	int r = r_utime(path, t);
	if (!r)
		times_set_at(AT_FDCWD, path, 0);
	return r;
}

static void stamp_fd(int fd)
{
	struct dfile *d;

	if (fd >= 0 && fd < FDMAX && (d = __atomic_load_n(&fdtab[fd], __ATOMIC_ACQUIRE)))
		stamp(d, fd);
}

EXPORT int fsync(int fd)
{
	ensure();
	stamp_fd(fd);
	return r_fsync(fd);
}

EXPORT int fdatasync(int fd)
{
	ensure();
	stamp_fd(fd);
	return r_fdatasync(fd);
}

/* Every lease ends and every file is stamped (exec, exit). */
static void drop_all(void)
{
	sigset_t old;

	if (getpid() != owner_pid)
		return; /* a vfork child: the leases are the parent's */
	/* a shared mapping goes over to the kernel's FUSE mapping, then its
	 * lease ends: if the exec fails, the program's stores still reach
	 * the file and a truncate still gives SIGBUS past EOF */
	lock(&old);
	for (int i = 0; i < NREGIONS; i++) {
		struct dregion *r = &regions[i];
		if (r->addr && r->addr != (char *)1 && r->lease && r->owner == owner_pid && !r->going)
			region_fallback(r);
	}
	unlock(&old);
	for (int fd = 0; fd < FDMAX; fd++) {
		struct dfile *d = __atomic_load_n(&fdtab[fd], __ATOMIC_ACQUIRE);
		struct dmap *m;
		if (!d)
			continue;
		stamp(d, fd);
		for (unsigned w = 0; w < NWIN; w++) {
			m = __atomic_load_n(&d->map[w], __ATOMIC_ACQUIRE);
			if (m)
				map_drop(d, w, m, fd);
		}
		trim(d, fd);
	}
}

EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	ensure();
	drop_all();
	return r_execve(path, argv, envp);
}

EXPORT int execv(const char *path, char *const argv[])
{
	ensure();
	drop_all();
	return r_execve(path, argv, environ);
}

EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	ensure();
	drop_all();
	return r_execvpe(file, argv, envp);
}

EXPORT int execvp(const char *file, char *const argv[])
{
	ensure();
	drop_all();
	return r_execvpe(file, argv, environ);
}

EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	ensure();
	drop_all();
	return r_fexecve(fd, argv, envp);
}

/* The child of a fork: the maps are not here (MADV_DONTFORK) and the
 * leases are the parent's; it takes its own. */
static void atfork_child(void)
{
	owner_pid = getpid();
	tab_lock = 0;
	/* the mappings are here (not DONTFORK) but the leases are the
	 * parent's: the child's watcher refreshes them through FUSE when
	 * they are revoked, and never unpins them */
	watcher_started = 0;
	memset(watched, 0, sizeof(watched));
	for (int i = 0; i < NREGIONS; i++)
		if (regions[i].addr && regions[i].addr != (char *)1)
			watcher_start(regions[i].hdr);
	for (int i = 0; i < NMAPS; i++) {
		/* the maps are not here; the pool fds are, close them */
		if (maps[i].pfd >= 0 && maps[i].refs > 0)
			r_close(maps[i].pfd);
		maps[i].pfd = -1;
		if (maps[i].segs && maps[i].refs > 0)
			r_munmap(maps[i].segs, maps[i].segs_len);
		maps[i].segs = NULL;
		maps[i].refs = 0;
		maps[i].free = 1;
	}
	for (int i = 0; i < NFILES; i++) {
		memset(files[i].map, 0, sizeof(files[i].map));
		files[i].pinning = 0;
		files[i].retry_ns = 0;
		files[i].fail_ns = 0;
		files[i].pre_end = 0; /* the parent's to trim */
		for (int k = 0; k < NPARKED; k++) {
			if (files[i].refs && files[i].parked[k] >= 0)
				r_close(files[i].parked[k]);
			files[i].parked[k] = -1;
		}
	}
}

static void at_exit(void)
{
	drop_all();
}

static void syms(void)
{
#define SYM(v, name) v = dlsym(RTLD_NEXT, name)
	SYM(r_read, "read");
	SYM(r_write, "write");
	SYM(r_pread, "pread64");
	SYM(r_pwrite, "pwrite64");
	SYM(r_readv, "readv");
	SYM(r_writev, "writev");
	SYM(r_preadv, "preadv64");
	SYM(r_pwritev, "pwritev64");
	SYM(r_open, "open64");
	SYM(r_openat, "openat64");
	SYM(r_close, "close");
	SYM(r_dup, "dup");
	SYM(r_dup2, "dup2");
	SYM(r_dup3, "dup3");
	SYM(r_fcntl, "fcntl64");
	SYM(r_fsync, "fsync");
	SYM(r_fdatasync, "fdatasync");
	SYM(r_fclose, "fclose");
	SYM(r_close_range, "close_range");
	SYM(r_closefrom, "closefrom");
	SYM(r_memfd_create, "memfd_create");
	SYM(r_pipe, "pipe");
	SYM(r_pipe2, "pipe2");
	SYM(r_socket, "socket");
	SYM(r_socketpair, "socketpair");
	SYM(r_accept, "accept");
	SYM(r_accept4, "accept4");
	SYM(r_execve, "execve");
	SYM(r_execvpe, "execvpe");
	SYM(r_mmap, "mmap64");
	SYM(r_munmap, "munmap");
	SYM(r_fopen, "fopen");
	SYM(r_freopen, "freopen");
	SYM(r_tmpfile, "tmpfile");
	SYM(r_open_2, "__open_2");
	SYM(r_openat_2, "__openat_2");
	SYM(r_recvmsg, "recvmsg");
	SYM(r_recvmmsg, "recvmmsg");
	SYM(r_futimens, "futimens");
	SYM(r_utimensat, "utimensat");
	SYM(r_futimes, "futimes");
	SYM(r_utimes, "utimes");
	SYM(r_lutimes, "lutimes");
	SYM(r_futimesat, "futimesat");
	SYM(r_utime, "utime");
	SYM(r_mprotect, "mprotect");
	SYM(r_msync, "msync");
	SYM(r_mremap, "mremap");
	SYM(r_fexecve, "fexecve");
#undef SYM
}


__attribute__((constructor)) static void init(void)
{
	const char *v;

	ensure();
	v = getenv("PINFS_DAX_VERBOSE");
	verbose = v && *v;
	for (int i = 0; i < NMAPS; i++) {
		maps[i].free = 1;
		maps[i].pfd = -1;
	}
	for (int i = 0; i < NFILES; i++) {
		for (int k = 0; k < NPARKED; k++)
			files[i].parked[k] = -1;
	}
	owner_pid = getpid();
	pthread_atfork(NULL, NULL, atfork_child);
	atexit(at_exit);
	/* fds inherited across exec (a shell's "< file"): served too */
	for (int fd = 0; fd < 256; fd++) {
		int fl = r_fcntl(fd, F_GETFL);
		if (fl >= 0)
			fd_opened(fd, fl);
	}
}

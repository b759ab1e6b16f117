/* SPDX-License-Identifier: MIT */
/*
 * lease/holder.c -- watching lease holders: one pidfd per holder process,
 * all in one epoll set served by one thread. A pidfd becomes readable when
 * its process exits, so the holder's pins end within a scheduling delay of
 * its exit, with no polling loop. Signals to holders go through the same
 * pidfds (pidfd_send_signal), so a recycled pid can never receive a signal
 * meant for a dead holder.
 *
 * A pid is not an identity: between a holder's exit and the moment this
 * thread handles it, the kernel may give the pid to a new process, which
 * may pin too. So every watched process gets a generation number of its
 * own; leases carry it, signals and the exit are handled per generation,
 * and a pid whose watched process has exited is watched again, as a new
 * generation, when it pins.
 *
 * A process leaves the watch (and the pool's holder record) once it holds
 * no lease and maps nothing of the pool: every watched process has one
 * reference count, taken by each pin (lease_watch_add) and dropped by each
 * lease that ends other than by its exit (lease_watch_put); IDLE_MS after
 * it reached 0 its /proc/PID/maps is read, and it stays (a "mapper") while
 * it still maps the pool file -- the daemon does not trust it to have
 * unmapped; a new holder that finds the watch full lets idle processes go
 * at once. Mappers, and
 * processes found mapping blocks of leases that ended, are re-checked every
 * SWEEP_MS by this thread (the sweep callback), until they unmap or exit.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "lease/lease.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

/*
 * Locking
 *  1. w->lock guards the holder array. It is never held while calling
 *     w->gone (which takes the lease table's lock and may call into the file
 *     system), so the order is free of cycles.
 */
struct hold {
	uint32_t tgid;
	int pidfd;
	uint64_t gen; /* unique per watched process, never 0 */
	uint64_t refs; /* leases (and pins under way); 0: idle, or a mapper */
	uint64_t idle_ms; /* mono_ms() when refs last reached 0 */
};

#define SWEEP_MS 200
/* A process stays this long after its last lease ended before the sweep
 * reads its maps and lets it go, so that pin/unpin cycles do not rewrite
 * the pool's record each time; a new holder that finds the record full
 * lets the idle ones go at once. */
#define IDLE_MS 1000

static uint64_t mono_ms(void);

struct lease_watch {
	int epfd;
	int stopfd; /* eventfd: wakes the thread to exit */
	int kickfd; /* eventfd: wakes the thread to sweep */
	pthread_t thread;
	pthread_mutex_t lock;
	struct hold *h; /* protected by lock */
	size_t n, cap;	/* protected by lock */
	size_t max;	/* at most this many holders, 0 = no limit */
	uint64_t next_gen; /* protected by lock */
	void (*gone)(void *ctx, uint32_t tgid, uint64_t gen);
	bool (*sweep)(void *ctx); /* true: sweep again later */
	void *ctx;
	uint64_t pool_dev, pool_ino; /* the pool file; 0, 0: no maps checks */
	bool sweeping;		/* protected by lock: sweep every SWEEP_MS */
	bool changed;		/* protected by lock: mappers left, tell gone() */
};

/* ---- who maps the pool file (/proc/PID/maps) ----------------------------- */

/* Calls @fn for every mapping of file @dev:@ino in /proc/@pid/maps, with
 * the file range [off, end) it maps; stops when @fn returns true. Returns
 * 1 if it stopped, 0 if not, -errno if the maps cannot be read (the
 * process is gone, or not ours to read). */
static int maps_each(uint32_t pid, uint64_t dev, uint64_t ino,
		     bool (*fn)(void *arg, uint64_t off, uint64_t end), void *arg)
{
	char path[64], needle[32], *line = NULL;
	size_t cap = 0;
	int rc = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%u/maps", pid);
	/* the inode field, blank on both sides: only lines with it are parsed */
	snprintf(needle, sizeof(needle), " %" PRIu64 " ", ino);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		unsigned long long a, b, off, i;
		unsigned maj, min;

		if (!strstr(line, needle))
			continue;
		if (sscanf(line, "%llx-%llx %*s %llx %x:%x %llu", &a, &b, &off, &maj, &min, &i) != 6)
			continue;
		if (i != ino || makedev(maj, min) != dev || b < a)
			continue;
		if (fn(arg, off, off + (b - a))) {
			rc = 1;
			break;
		}
	}
	free(line);
	fclose(f);
	return rc;
}

static bool any_mapping(void *arg, uint64_t off, uint64_t end)
{
	(void)arg;
	(void)off;
	(void)end;
	return true;
}

bool lease_maps_pool(uint32_t pid, uint64_t dev, uint64_t ino)
{
	if (!dev && !ino)
		return false;
	return maps_each(pid, dev, ino, any_mapping, NULL) == 1;
}

struct collect {
	struct lease_mapping *v;
	size_t n, cap;
	uint32_t pid;
	bool nomem;
};

static bool collect_one(void *arg, uint64_t off, uint64_t end)
{
	struct collect *c = arg;

	if (c->n == c->cap) {
		size_t ncap = c->cap ? 2 * c->cap : 64;
		struct lease_mapping *nv = realloc(c->v, ncap * sizeof(*nv));
		if (!nv) {
			c->nomem = true;
			return true;
		}
		c->v = nv;
		c->cap = ncap;
	}
	c->v[c->n].pid = c->pid;
	c->v[c->n].off = off;
	c->v[c->n++].end = end;
	return false;
}

int lease_maps_pid(uint32_t pid, uint64_t dev, uint64_t ino, struct lease_mapping **out,
		   size_t *n)
{
	struct collect c = { .pid = pid };
	int rc;

	*out = NULL;
	*n = 0;
	if (!dev && !ino)
		return 0;
	/* gone: it maps nothing; unreadable: it may (the caller keeps the
	 * blocks, the sweep decides) */
	rc = maps_each(pid, dev, ino, collect_one, &c);
	if (rc < 0 && rc != -ENOENT && rc != -ESRCH) {
		free(c.v);
		return rc;
	}
	if (c.nomem) {
		free(c.v);
		return -ENOMEM;
	}
	*out = c.v;
	*n = c.n;
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Rounds of lease_maps_all(): a mapping moves to a new process only by
 * fork, and a process forked during one round shows up in the next. */
#define MAPS_ROUNDS_MAX 8

int lease_maps_all(uint64_t dev, uint64_t ino, struct lease_mapping **out, size_t *n)
{
	struct collect c = { 0 };
	uint32_t self = (uint32_t)getpid(), *seen = NULL;
	size_t nseen = 0, capseen = 0, sorted = 0;
	int round, rc = 0;

	*out = NULL;
	*n = 0;
	if (!dev && !ino)
		return 0;
	/*
	 * /proc is read again until a round meets no process it had not
	 * read: readdir() of /proc may miss a process forked while it runs
	 * (its pid below the cursor), and such a child can inherit a
	 * mapping whose parent unmaps before its own maps are read.
	 */
	for (round = 0; round < MAPS_ROUNDS_MAX; round++) {
		size_t fresh = 0;
		struct dirent *d;
		DIR *dir = opendir("/proc");

		if (!dir) {
			rc = -errno;
			break;
		}
		while ((d = readdir(dir))) {
			char *end;
			unsigned long pid = strtoul(d->d_name, &end, 10);
			uint32_t p32 = (uint32_t)pid;

			if (*end || !pid || pid > UINT32_MAX || p32 == self)
				continue;
			if (sorted && bsearch(&p32, seen, sorted, sizeof(*seen), cmp_u32))
				continue;
			if (nseen == capseen) {
				size_t ncap = capseen ? 2 * capseen : 256;
				uint32_t *ns = realloc(seen, ncap * sizeof(*ns));
				if (!ns) {
					c.nomem = true;
					break;
				}
				seen = ns;
				capseen = ncap;
			}
			seen[nseen++] = p32;
			fresh++;
			c.pid = p32;
			/* a process gone meanwhile, or whose maps we may not
			 * read, maps nothing we can know of */
			(void)maps_each(c.pid, dev, ino, collect_one, &c);
			if (c.nomem)
				break;
		}
		closedir(dir);
		if (c.nomem || !fresh)
			break;
		qsort(seen, nseen, sizeof(*seen), cmp_u32);
		sorted = nseen;
	}
	free(seen);
	if (c.nomem)
		rc = -ENOMEM;
	if (rc) {
		free(c.v);
		return rc;
	}
	*out = c.v;
	*n = c.n;
	return 0;
}

/* Has the process behind @pidfd exited (its pidfd is readable)? */
static bool exited(int pidfd)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };

	return poll(&p, 1, 0) > 0;
}

/* The live watched process with pid @tgid; w->lock held. An entry whose
 * process has exited (its exit not handled yet) is not it. */
static ssize_t find(struct lease_watch *w, uint32_t tgid)
{
	size_t i;

	for (i = 0; i < w->n; i++)
		if (w->h[i].tgid == tgid && !exited(w->h[i].pidfd))
			return (ssize_t)i;
	return -1;
}

static ssize_t find_gen(struct lease_watch *w, uint64_t gen)
{
	size_t i;

	for (i = 0; i < w->n; i++)
		if (w->h[i].gen == gen)
			return (ssize_t)i;
	return -1;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Drops the processes without a lease (refs 0), idle for IDLE_MS (any,
 * with @all), that no longer map the pool; true if some are left. Called
 * without w->lock. *dropped: whether some went. */
static bool sweep_idle(struct lease_watch *w, bool all, bool *dropped_out)
{
	uint64_t *gens = NULL;
	uint32_t *pids = NULL;
	bool *maps = NULL, left = false, dropped = false;
	uint64_t now = mono_ms();
	size_t i, n = 0;

	*dropped_out = false;
	pthread_mutex_lock(&w->lock);
	if (!w->n) {
		pthread_mutex_unlock(&w->lock);
		return false;
	}
	gens = calloc(w->n, sizeof(*gens));
	pids = calloc(w->n, sizeof(*pids));
	maps = calloc(w->n, sizeof(*maps));
	if (!gens || !pids || !maps) {
		pthread_mutex_unlock(&w->lock);
		free(gens);
		free(pids);
		free(maps);
		return true; /* try again later */
	}
	for (i = 0; i < w->n; i++) {
		if (w->h[i].refs)
			continue;
		if (!all && now - w->h[i].idle_ms < IDLE_MS) {
			left = true; /* not yet */
			continue;
		}
		gens[n] = w->h[i].gen;
		pids[n++] = w->h[i].tgid;
	}
	pthread_mutex_unlock(&w->lock);
	for (i = 0; i < n; i++)
		maps[i] = lease_maps_pool(pids[i], w->pool_dev, w->pool_ino);
	pthread_mutex_lock(&w->lock);
	for (i = 0; i < n; i++) {
		ssize_t k = find_gen(w, gens[i]);

		/* gone meanwhile, pinned again, or exited (its pidfd event
		 * handles it) */
		if (k < 0 || w->h[k].refs || exited(w->h[k].pidfd))
			continue;
		if (maps[i]) {
			left = true;
			continue;
		}
		epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->h[k].pidfd, NULL);
		close(w->h[k].pidfd);
		w->h[k] = w->h[--w->n];
		dropped = true;
	}
	pthread_mutex_unlock(&w->lock);
	free(gens);
	free(pids);
	free(maps);
	*dropped_out = dropped;
	return left;
}

void lease_watch_settle(struct lease_watch *w)
{
	bool dropped;

	sweep_idle(w, true, &dropped);
}

static bool sweep_mappers(struct lease_watch *w)
{
	bool dropped, left = sweep_idle(w, false, &dropped);

	if (dropped)
		w->gone(w->ctx, 0, 0); /* no process: the set changed */
	return left;
}

static void *watch_main(void *arg)
{
	struct lease_watch *w = arg;
	struct epoll_event ev[16];
	uint64_t last = mono_ms();

	for (;;) {
		bool sweeping;
		int n, i;

		pthread_mutex_lock(&w->lock);
		sweeping = w->sweeping;
		pthread_mutex_unlock(&w->lock);
		if (sweeping && mono_ms() - last >= SWEEP_MS) {
			bool again;

			pthread_mutex_lock(&w->lock);
			w->sweeping = false;
			pthread_mutex_unlock(&w->lock);
			again = w->sweep ? w->sweep(w->ctx) : false;
			again = sweep_mappers(w) || again;
			pthread_mutex_lock(&w->lock);
			w->sweeping = w->sweeping || again;
			sweeping = w->sweeping;
			pthread_mutex_unlock(&w->lock);
			last = mono_ms();
		}
		n = epoll_wait(w->epfd, ev, 16, sweeping ? SWEEP_MS : -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (i = 0; i < n; i++) {
			uint64_t gen = ev[i].data.u64;
			uint32_t tgid = 0;
			ssize_t k;

			if (gen == UINT64_MAX)
				return NULL;
			if (gen == UINT64_MAX - 1) { /* lease_watch_kick */
				uint64_t v;
				if (read(w->kickfd, &v, sizeof(v)) < 0) {
					/* nothing to drain */
				}
				continue;
			}
			pthread_mutex_lock(&w->lock);
			k = find_gen(w, gen);
			if (k >= 0) {
				tgid = w->h[k].tgid;
				epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->h[k].pidfd, NULL);
				close(w->h[k].pidfd);
				w->h[k] = w->h[--w->n];
			}
			pthread_mutex_unlock(&w->lock);
			if (k >= 0)
				w->gone(w->ctx, tgid, gen);
		}
	}
	return NULL;
}

int lease_watch_new(void (*gone)(void *ctx, uint32_t tgid, uint64_t gen),
		    bool (*sweep)(void *ctx), void *ctx, size_t max, uint64_t pool_dev,
		    uint64_t pool_ino, struct lease_watch **out)
{
	struct lease_watch *w = calloc(1, sizeof(*w));
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = UINT64_MAX };
	struct epoll_event kev = { .events = EPOLLIN, .data.u64 = UINT64_MAX - 1 };
	int rc;

	if (!w)
		return -ENOMEM;
	w->gone = gone;
	w->sweep = sweep;
	w->ctx = ctx;
	w->max = max;
	w->pool_dev = pool_dev;
	w->pool_ino = pool_ino;
	pthread_mutex_init(&w->lock, NULL);
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	w->stopfd = eventfd(0, EFD_CLOEXEC);
	w->kickfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->epfd < 0 || w->stopfd < 0 || w->kickfd < 0 ||
	    epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->stopfd, &ev) < 0 ||
	    epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->kickfd, &kev) < 0) {
		rc = -errno;
		goto fail;
	}
	rc = -pthread_create(&w->thread, NULL, watch_main, w);
	if (rc)
		goto fail;
	*out = w;
	return 0;
fail:
	if (w->epfd >= 0)
		close(w->epfd);
	if (w->stopfd >= 0)
		close(w->stopfd);
	if (w->kickfd >= 0)
		close(w->kickfd);
	free(w);
	return rc;
}

void lease_watch_kick(struct lease_watch *w)
{
	uint64_t one = 1;
	bool was;

	pthread_mutex_lock(&w->lock);
	was = w->sweeping;
	w->sweeping = true;
	pthread_mutex_unlock(&w->lock);
	if (was)
		return; /* it wakes up to sweep anyway */
	if (write(w->kickfd, &one, sizeof(one)) < 0) {
		/* the counter is saturated: the thread is awake anyway */
	}
}

/* Adds @tgid (with one reference if @ref), or takes a reference on its
 * live entry. */
static int watch_add(struct lease_watch *w, uint32_t tgid, bool ref, uint64_t *gen)
{
	struct epoll_event ev = { .events = EPOLLIN };
	bool dropped = false;
	ssize_t k;
	int fd, rc = 0;

	pthread_mutex_lock(&w->lock);
	k = find(w, tgid);
	if (k >= 0) {
		*gen = w->h[k].gen;
		w->h[k].refs += ref;
		goto out;
	}
	if (w->max && w->n >= w->max) {
		/* full: let the idle ones go now (the caller rewrites the
		 * record, as for any new holder; if still full, below) */
		pthread_mutex_unlock(&w->lock);
		sweep_idle(w, true, &dropped);
		pthread_mutex_lock(&w->lock);
		k = find(w, tgid);
		if (k >= 0) {
			*gen = w->h[k].gen;
			w->h[k].refs += ref;
			goto out;
		}
		if (w->n >= w->max) {
			rc = -EUSERS;
			goto out;
		}
	}
	rc = 1; /* a new holder */
	fd = (int)syscall(SYS_pidfd_open, (pid_t)tgid, 0);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	if (w->n == w->cap) {
		size_t ncap = w->cap ? w->cap * 2 : 16;
		struct hold *nh = realloc(w->h, ncap * sizeof(*nh));
		if (!nh) {
			close(fd);
			rc = -ENOMEM;
			goto out;
		}
		w->h = nh;
		w->cap = ncap;
	}
	ev.data.u64 = ++w->next_gen;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		rc = -errno;
		close(fd);
		goto out;
	}
	w->h[w->n].tgid = tgid;
	w->h[w->n].pidfd = fd;
	w->h[w->n].refs = ref;
	w->h[w->n].idle_ms = mono_ms();
	w->h[w->n++].gen = ev.data.u64;
	*gen = ev.data.u64;
	if (!ref)
		w->sweeping = true; /* a mapper: re-checked until it unmaps */
out:
	pthread_mutex_unlock(&w->lock);
	if (dropped && rc <= 0)
		w->gone(w->ctx, 0, 0); /* processes left; the caller writes nothing */
	return rc;
}

int lease_watch_add(struct lease_watch *w, uint32_t tgid, uint64_t *gen)
{
	return watch_add(w, tgid, true, gen);
}

int lease_watch_add_mapper(struct lease_watch *w, uint32_t tgid)
{
	uint64_t gen;

	return watch_add(w, tgid, false, &gen);
}

void lease_watch_put(struct lease_watch *w, uint64_t gen)
{
	ssize_t k;

	pthread_mutex_lock(&w->lock);
	k = find_gen(w, gen);
	if (k < 0 || !w->h[k].refs || --w->h[k].refs) {
		pthread_mutex_unlock(&w->lock);
		return;
	}
	/* its last lease ended: the sweep reads its maps after IDLE_MS and
	 * lets it go unless it still maps the pool */
	w->h[k].idle_ms = mono_ms();
	pthread_mutex_unlock(&w->lock);
	lease_watch_kick(w);
}

size_t lease_watch_list(struct lease_watch *w, uint32_t *out, size_t max)
{
	size_t i, n;

	pthread_mutex_lock(&w->lock);
	for (i = n = 0; i < w->n; i++) {
		if (exited(w->h[i].pidfd))
			continue; /* its exit is being handled */
		if (n < max)
			out[n] = w->h[i].tgid;
		n++;
	}
	pthread_mutex_unlock(&w->lock);
	return n;
}

bool lease_watch_alive(struct lease_watch *w, uint64_t gen)
{
	bool alive;

	pthread_mutex_lock(&w->lock);
	alive = find_gen(w, gen) >= 0;
	pthread_mutex_unlock(&w->lock);
	return alive;
}

bool lease_watch_has(struct lease_watch *w, uint32_t tgid)
{
	bool has;

	pthread_mutex_lock(&w->lock);
	has = find(w, tgid) >= 0;
	pthread_mutex_unlock(&w->lock);
	return has;
}

int lease_watch_signal(struct lease_watch *w, uint64_t gen, int sig, uint64_t id)
{
	siginfo_t info;
	ssize_t k;
	int rc = 0;

	memset(&info, 0, sizeof(info));
	info.si_signo = sig;
	info.si_code = SI_QUEUE;
	info.si_pid = getpid();
	info.si_uid = getuid();
	info.si_value.sival_ptr = (void *)(uintptr_t)id;
	pthread_mutex_lock(&w->lock);
	k = find_gen(w, gen);
	if (k < 0)
		rc = -ESRCH;
	else if (syscall(SYS_pidfd_send_signal, w->h[k].pidfd, sig, &info, 0) < 0)
		rc = -errno;
	pthread_mutex_unlock(&w->lock);
	return rc;
}

void lease_watch_delete(struct lease_watch **wp)
{
	struct lease_watch *w = *wp;
	uint64_t one = 1;
	size_t i;

	if (!w)
		return;
	if (write(w->stopfd, &one, sizeof(one)) == sizeof(one))
		pthread_join(w->thread, NULL);
	for (i = 0; i < w->n; i++)
		close(w->h[i].pidfd);
	close(w->epfd);
	close(w->stopfd);
	close(w->kickfd);
	free(w->h);
	pthread_mutex_destroy(&w->lock);
	free(w);
	*wp = NULL;
}

/* ---- leases that end while a mapping may live ---------------------------- */

/*
 * A lease ends when its holder unpins or exits; an on-close lease, a
 * revoked one and one whose file was destroyed stay on their holder until
 * then, their blocks pinned (quarantined if freed). But the mapping is not
 * the holder's alone to end: a process that mapped the pool file itself
 * may keep its mapping after UNPIN, and a child that inherited it (fork
 * without MADV_DONTFORK) outlives the holder. So at that end the daemon
 * reads who maps the lease's pool blocks: the holder (UNPIN; every process
 * if the holder has children, which may have inherited the mapping), or
 * every process (exit, sweep). A child reparented by a double fork escapes
 * the UNPIN check; the file system reads every process's maps again before
 * it reuses a block a lease covered (pmem/sever.c), off the request path,
 * so an UNPIN costs the holder's maps, not the machine's. A lease still
 * mapped is orphaned
 * (LEASE_HOLDER_NONE, revoked) and its blocks stay pinned; the processes
 * mapping it join the watch (and the pool's holder record) as mappers; the
 * watch thread sweeps the orphans every 200 ms and ends each one no process
 * maps any more.
 */

/* Does any of @mp[0..nmp) overlap the pool blocks of lease @id? With
 * @record, the processes behind the overlapping ones join the watch as
 * mappers (*changed set when one is new). Without memory: true. */
static bool lease_mapped(struct lease_mgr *m, uint64_t id, const struct lease_mapping *mp,
			 size_t nmp, bool record, bool *changed)
{
	struct lease_table *t = lease_mgr_table(m);
	uint64_t *pblk, *len;
	bool found = false;
	long i, total;
	size_t j;

	if (!nmp)
		return false;
	total = lease_segments(t, id, 0, NULL, NULL, NULL, 0);
	if (total <= 0)
		return false;
	pblk = calloc((size_t)total, sizeof(*pblk));
	len = calloc((size_t)total, sizeof(*len));
	if (!pblk || !len) {
		free(pblk);
		free(len);
		return true;
	}
	total = lease_segments(t, id, 0, NULL, pblk, len, (size_t)total);
	for (i = 0; i < total; i++) {
		uint64_t off = pblk[i] << 12, end = (pblk[i] + len[i]) << 12;
		for (j = 0; j < nmp; j++) {
			if (mp[j].off >= end || off >= mp[j].end)
				continue;
			found = true;
			if (!record)
				break;
			if (lease_watch_add_mapper(lease_mgr_watch(m), mp[j].pid) == 1)
				*changed = true;
		}
		if (found && !record)
			break;
	}
	free(pblk);
	free(len);
	return found;
}

/* Has process @pid a child (/proc/PID/task/TID/children)? */
static bool has_children(uint32_t pid)
{
	char path[96], buf[16];
	struct dirent *d;
	bool any = false;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%u/task", pid);
	dir = opendir(path);
	if (!dir)
		return false;
	while (!any && (d = readdir(dir))) {
		int fd;

		if (d->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%u/task/%.20s/children", pid, d->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		any = read(fd, buf, sizeof(buf)) > 0;
		close(fd);
	}
	closedir(dir);
	return any;
}

int lease_end_one(struct lease_mgr *m, const struct lease *l)
{
	struct lease_table *t = lease_mgr_table(m);
	struct lease_mapping *mp = NULL;
	uint64_t dev, ino;
	size_t nmp = 0;
	bool mapped = false, changed = false;
	int rc;

	if (l->flags & LEASE_ENDED && l->holder != LEASE_HOLDER_NONE)
		return -ENOENT; /* unpinned already, waiting for the unmap */
	lease_mgr_pool(m, &dev, &ino);
	if (l->holder != LEASE_HOLDER_NONE) {
		/* the holder's word that it unmapped is not enough; a child may
		 * have inherited the mapping: with children, every process */
		rc = has_children(l->holder) ? lease_maps_all(dev, ino, &mp, &nmp)
					     : lease_maps_pid(l->holder, dev, ino, &mp, &nmp);
		mapped = rc ? true : lease_mapped(m, l->id, mp, nmp, true, &changed);
		free(mp);
	}
	if (mapped) {
		/* stays on its holder, counted, until the sweep sees no
		 * mapping of it */
		rc = lease_mark_ended(t, l->id);
		if (rc == 0)
			lease_watch_kick(lease_mgr_watch(m));
		if (changed) /* processes that map it joined the record */
			lease_mgr_holders_changed(m);
		return rc == -EALREADY ? -ENOENT : rc;
	}
	rc = lease_remove(t, l->id, lease_mgr_unpinned, m);
	if (rc)
		return rc;
	if (l->holder != LEASE_HOLDER_NONE)
		lease_watch_put(lease_mgr_watch(m), l->holder_gen);
	return 0;
}

/* The ids of @holder's leases (of generation @gen unless 0): malloc'd. */
static long holder_ids(struct lease_mgr *m, uint32_t holder, uint64_t gen, uint64_t **out,
		       uint32_t *uid)
{
	struct lease_table *t = lease_mgr_table(m);
	struct lease *v = NULL;
	uint64_t *ids;
	size_t max = 64, total, i, k = 0;

	for (;;) {
		struct lease *nv = realloc(v, max * sizeof(*v));
		if (!nv) {
			free(v);
			return -ENOMEM;
		}
		v = nv;
		total = lease_list_holder(t, holder, 0, v, max);
		if (total <= max)
			break;
		max = total + 16;
	}
	ids = malloc((total ? total : 1) * sizeof(*ids));
	if (!ids) {
		free(v);
		return -ENOMEM;
	}
	for (i = 0; i < total; i++)
		if (!gen || v[i].holder_gen == gen) {
			*uid = v[i].uid;
			ids[k++] = v[i].id;
		}
	free(v);
	*out = ids;
	return (long)k;
}

/* Ends (or orphans, if still mapped) leases ids[0..n); returns how many
 * stay orphaned. */
static size_t end_mapped(struct lease_mgr *m, const uint64_t *ids, long n, bool *changed)
{
	struct lease_table *t = lease_mgr_table(m);
	struct lease_mapping *mp = NULL;
	uint64_t dev, ino;
	size_t nmp = 0, left = 0;
	int rc;
	long i;

	lease_mgr_pool(m, &dev, &ino);
	rc = lease_maps_all(dev, ino, &mp, &nmp);
	for (i = 0; i < n; i++) {
		if (rc || lease_mapped(m, ids[i], mp, nmp, true, changed)) {
			if (lease_orphan(t, ids[i]) != -ENOENT)
				left++;
		} else {
			lease_remove(t, ids[i], lease_mgr_unpinned, m);
		}
	}
	free(mp);
	return left;
}

int lease_end_holder(struct lease_mgr *m, uint32_t tgid, uint64_t gen, uint32_t *uid)
{
	uint64_t *ids = NULL;
	long n = holder_ids(m, tgid, gen, &ids, uid);
	bool changed = false;

	if (n < 0) {
		/* no memory to look at the maps: the blocks stay pinned (a
		 * child may still map them) until the unmount frees them */
		fprintf(stderr, "pinfs: out of memory ending the leases of exited process %u: "
				"their blocks stay pinned until the unmount\n", tgid);
		return 0;
	}
	if (n && end_mapped(m, ids, n, &changed))
		lease_watch_kick(lease_mgr_watch(m));
	free(ids);
	if (changed)
		lease_mgr_holders_changed(m);
	return (int)n;
}

bool lease_sweep_orphans(void *ctx)
{
	struct lease_mgr *m = ctx;
	struct lease_table *t = lease_mgr_table(m);
	struct lease_mapping *mp = NULL;
	struct lease *v = NULL;
	uint64_t dev, ino;
	size_t max = 64, total, i, nmp = 0, left = 0;
	bool changed = false;
	int rc;

	for (;;) {
		struct lease *nv = realloc(v, max * sizeof(*v));
		if (!nv) {
			free(v);
			return true;
		}
		v = nv;
		total = lease_list(t, 0, 0, v, max);
		if (total <= max)
			break;
		max = total + 16;
	}
	for (i = left = 0; i < total; i++)
		if (v[i].flags & LEASE_ENDED)
			v[left++] = v[i];
	total = left;
	left = 0;
	if (!total) { /* nothing to look for: no scan */
		free(v);
		return false;
	}
	lease_mgr_pool(m, &dev, &ino);
	rc = lease_maps_all(dev, ino, &mp, &nmp);
	for (i = 0; i < total; i++) {
		if (rc || lease_mapped(m, v[i].id, mp, nmp, v[i].holder == LEASE_HOLDER_NONE,
				       &changed)) {
			left++;
			continue;
		}
		if (lease_remove(t, v[i].id, lease_mgr_unpinned, m))
			continue; /* its holder's exit ended it meanwhile */
		if (v[i].holder != LEASE_HOLDER_NONE)
			lease_watch_put(lease_mgr_watch(m), v[i].holder_gen);
	}
	free(mp);
	free(v);
	if (changed)
		lease_mgr_holders_changed(m);
	return left > 0;
}

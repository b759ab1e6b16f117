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
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
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
};

struct lease_watch {
	int epfd;
	int stopfd; /* eventfd: wakes the thread to exit */
	pthread_t thread;
	pthread_mutex_t lock;
	struct hold *h; /* protected by lock */
	size_t n, cap;	/* protected by lock */
	size_t max;	/* at most this many holders, 0 = no limit */
	uint64_t next_gen; /* protected by lock */
	void (*gone)(void *ctx, uint32_t tgid, uint64_t gen);
	void *ctx;
};

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

static void *watch_main(void *arg)
{
	struct lease_watch *w = arg;
	struct epoll_event ev[16];

	for (;;) {
		int n = epoll_wait(w->epfd, ev, 16, -1), i;

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

int lease_watch_new(void (*gone)(void *ctx, uint32_t tgid, uint64_t gen), void *ctx,
		    size_t max, struct lease_watch **out)
{
	struct lease_watch *w = calloc(1, sizeof(*w));
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = UINT64_MAX };
	int rc;

	if (!w)
		return -ENOMEM;
	w->gone = gone;
	w->ctx = ctx;
	w->max = max;
	pthread_mutex_init(&w->lock, NULL);
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	w->stopfd = eventfd(0, EFD_CLOEXEC);
	if (w->epfd < 0 || w->stopfd < 0 || epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->stopfd, &ev) < 0) {
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
	free(w);
	return rc;
}

int lease_watch_add(struct lease_watch *w, uint32_t tgid, uint64_t *gen)
{
	struct epoll_event ev = { .events = EPOLLIN };
	ssize_t k;
	int fd, rc = 0;

	pthread_mutex_lock(&w->lock);
	k = find(w, tgid);
	if (k >= 0) {
		*gen = w->h[k].gen;
		goto out;
	}
	if (w->max && w->n >= w->max) {
		rc = -EUSERS;
		goto out;
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
	w->h[w->n++].gen = ev.data.u64;
	*gen = ev.data.u64;
out:
	pthread_mutex_unlock(&w->lock);
	return rc;
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
	free(w->h);
	pthread_mutex_destroy(&w->lock);
	free(w);
	*wp = NULL;
}

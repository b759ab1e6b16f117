/* SPDX-License-Identifier: MIT */
/*
 * fusefs/evchan.c -- the event channel: a pollable fd per holder process for
 * the notices of its leases (include/pinfs/abi.h, PINFS_XATTR_EVENTS).
 *
 * FUSE cannot hand a file descriptor back through an ioctl, so the channel
 * is a unix socket the daemon listens on: SOCK_SEQPACKET (one read() is one
 * record, and the socket is pollable), on an abstract name (no file to
 * clean up, no directory whose mode would decide who may connect: anyone
 * may; what a connection gets is decided by its credentials). The daemon
 * learns the peer's pid and uid from SO_PEERCRED at accept and sends a
 * connection the notices of leases pinned with PINFS_PIN_NOTIFY_EVENTS by
 * that pid as that uid -- nothing else, so no user reads another's notices.
 * The greeting record tells the client that the daemon has accepted the
 * connection, so a pin made after it finds the channel (ENOTCONN before).
 *
 * The daemon never waits for a reader: records are sent with MSG_DONTWAIT
 * into a socket buffer of EVCHAN_SNDBUF bytes; what does not fit is dropped
 * and counted, and the count rides on the next record that fits. A
 * truncate that breaks the lease of a holder that never reads finishes as
 * fast as any other. A connection whose peer closed (or exited) is closed
 * by the server thread when epoll reports the hang-up.
 *
 * One server thread (accept, hang-ups); records are sent by whichever
 * thread decided the notice (a FUSE worker, the lease manager's completer).
 * Started after fuse_daemonize() (a thread started before it would not
 * exist in the daemon), from ffs_leases_start().
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "fusefs/evchan.h"

#define EVCHAN_MAX 1024		 /* connections at once; more are closed at once */
#define EVCHAN_PER_USER 64	 /* of them, one user's other than root: no user
				  * takes every connection (as -o max_parked) */
#define EVCHAN_SNDBUF (32 * 1024) /* per connection: the bound on queued records */

struct evconn {
	int fd;
	uint32_t pid, uid; /* SO_PEERCRED at accept */
	uint64_t lost;	   /* records dropped since the last one sent */
};

/*
 * Locking
 *  1. ch->lock guards the connection table (c, n) and each connection's
 *     lost count. A leaf lock: nothing is called with it held but
 *     send()/close() of a connection's socket (send never blocks:
 *     MSG_DONTWAIT), so any thread may send a record while holding any
 *     other lock.
 *  2. A connection's fd is closed with ch->lock held, so a sender never
 *     writes into an fd number reused by someone else.
 *  3. lfd, epfd, stopfd and name are set before the thread starts and
 *     never change until ffs_evchan_stop() has joined it.
 */
struct ffs_evchan {
	int lfd, epfd, stopfd;
	pthread_t thr;
	pthread_mutex_t lock;
	struct evconn *c; /* lock */
	size_t n, cap;	  /* lock */
	char name[64];	  /* "@pinfs-PID-RANDOM", served as PINFS_XATTR_EVENTS */
};

static uint64_t now_real(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Called with ch->lock held. */
static void conn_drop(struct ffs_evchan *ch, size_t i)
{
	close(ch->c[i].fd); /* leaves the epoll set with it */
	ch->c[i] = ch->c[--ch->n];
}

static void accept_one(struct ffs_evchan *ch)
{
	struct pinfs_lease_event hello;
	struct epoll_event ee;
	struct ucred cr;
	socklen_t len = sizeof(cr);
	int sndbuf = EVCHAN_SNDBUF;
	int fd = accept4(ch->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || cr.pid <= 0) {
		close(fd);
		return;
	}
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	pthread_mutex_lock(&ch->lock);
	size_t mine = 0;
	for (size_t i = 0; cr.uid != 0 && i < ch->n; i++)
		mine += ch->c[i].uid == (uint32_t)cr.uid;
	if (ch->n == EVCHAN_MAX || mine >= EVCHAN_PER_USER) {
		pthread_mutex_unlock(&ch->lock);
		close(fd); /* the client's open sees EOF instead of the greeting */
		return;
	}
	if (ch->n == ch->cap) {
		size_t cap = ch->cap ? 2 * ch->cap : 16;
		struct evconn *c = realloc(ch->c, cap * sizeof(*c));
		if (!c) {
			pthread_mutex_unlock(&ch->lock);
			close(fd);
			return;
		}
		ch->c = c;
		ch->cap = cap;
	}
	memset(&ee, 0, sizeof(ee));
	ee.events = EPOLLIN | EPOLLRDHUP;
	ee.data.fd = fd;
	if (epoll_ctl(ch->epfd, EPOLL_CTL_ADD, fd, &ee) < 0) {
		pthread_mutex_unlock(&ch->lock);
		close(fd);
		return;
	}
	ch->c[ch->n].fd = fd;
	ch->c[ch->n].pid = (uint32_t)cr.pid;
	ch->c[ch->n].uid = (uint32_t)cr.uid;
	ch->c[ch->n].lost = 0;
	ch->n++;
	memset(&hello, 0, sizeof(hello));
	hello.event = PINFS_EV_GREETING;
	hello.holder_pid = (uint32_t)cr.pid;
	hello.time_ns = now_real();
	/* after the table: once the client has it, its pins find the channel */
	if (send(fd, &hello, sizeof(hello), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		conn_drop(ch, ch->n - 1);
	pthread_mutex_unlock(&ch->lock);
}

/* Connection @fd is readable or hung up: clients send nothing, so drain
 * what they did send; at EOF or an error, close it. */
static void conn_event(struct ffs_evchan *ch, int fd, uint32_t events)
{
	char buf[256];
	ssize_t r;
	size_t i;

	if (!(events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR))) {
		while ((r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
			;
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return;
	}
	pthread_mutex_lock(&ch->lock);
	for (i = 0; i < ch->n; i++)
		if (ch->c[i].fd == fd) {
			conn_drop(ch, i);
			break;
		}
	pthread_mutex_unlock(&ch->lock);
}

static void *evchan_main(void *arg)
{
	struct ffs_evchan *ch = arg;
	struct epoll_event ev[32];

	for (;;) {
		int k = epoll_wait(ch->epfd, ev, 32, -1), i;

		if (k < 0 && errno != EINTR)
			break;
		for (i = 0; i < k; i++) {
			if (ev[i].data.fd == ch->stopfd)
				return NULL;
			if (ev[i].data.fd == ch->lfd)
				accept_one(ch);
			else
				conn_event(ch, ev[i].data.fd, ev[i].events);
		}
	}
	return NULL;
}

int ffs_evchan_start(struct ffs_evchan **out)
{
	struct ffs_evchan *ch = calloc(1, sizeof(*ch));
	struct sockaddr_un sa;
	struct epoll_event ee;
	unsigned rnd;
	socklen_t alen;
	int rc = 0;

	if (!ch)
		return -ENOMEM;
	ch->lfd = ch->epfd = ch->stopfd = -1;
	pthread_mutex_init(&ch->lock, NULL);
	{
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		rnd = (unsigned)(ts.tv_nsec ^ (ts.tv_sec << 16));
	}
	/* a name another user cannot take first: the pid is ours, and a
	 * squatter would make bind fail (EADDRINUSE), never impersonate us */
	snprintf(ch->name, sizeof(ch->name), "@pinfs-%d-%08x", (int)getpid(), rnd);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path + 1, ch->name + 1, strlen(ch->name) - 1);
	alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(ch->name));
	ch->lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (ch->lfd < 0 || bind(ch->lfd, (struct sockaddr *)&sa, alen) < 0 ||
	    listen(ch->lfd, 128) < 0)
		rc = -errno;
	if (!rc && ((ch->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
		    (ch->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0))
		rc = -errno;
	if (!rc) {
		memset(&ee, 0, sizeof(ee));
		ee.events = EPOLLIN;
		ee.data.fd = ch->lfd;
		if (epoll_ctl(ch->epfd, EPOLL_CTL_ADD, ch->lfd, &ee) < 0)
			rc = -errno;
		ee.data.fd = ch->stopfd;
		if (!rc && epoll_ctl(ch->epfd, EPOLL_CTL_ADD, ch->stopfd, &ee) < 0)
			rc = -errno;
	}
	if (!rc)
		rc = -pthread_create(&ch->thr, NULL, evchan_main, ch);
	if (rc) {
		if (ch->lfd >= 0)
			close(ch->lfd);
		if (ch->epfd >= 0)
			close(ch->epfd);
		if (ch->stopfd >= 0)
			close(ch->stopfd);
		pthread_mutex_destroy(&ch->lock);
		free(ch);
		return rc;
	}
	*out = ch;
	return 0;
}

void ffs_evchan_stop(struct ffs_evchan **chp)
{
	struct ffs_evchan *ch = *chp;
	uint64_t one = 1;
	size_t i;

	if (!ch)
		return;
	if (write(ch->stopfd, &one, sizeof(one)) != sizeof(one))
		abort(); /* an eventfd takes a write of 1 until 2^64 - 2 */
	pthread_join(ch->thr, NULL);
	for (i = 0; i < ch->n; i++)
		close(ch->c[i].fd); /* the clients read EOF */
	close(ch->lfd);
	close(ch->epfd);
	close(ch->stopfd);
	pthread_mutex_destroy(&ch->lock);
	free(ch->c);
	free(ch);
	*chp = NULL;
}

const char *ffs_evchan_name(const struct ffs_evchan *ch)
{
	return ch->name;
}

bool ffs_evchan_connected(struct ffs_evchan *ch, uint32_t pid, uint32_t uid)
{
	bool found = false;
	size_t i;

	pthread_mutex_lock(&ch->lock);
	for (i = 0; i < ch->n && !found; i++)
		found = ch->c[i].pid == pid && ch->c[i].uid == uid;
	pthread_mutex_unlock(&ch->lock);
	return found;
}

void ffs_evchan_send(struct ffs_evchan *ch, uint32_t pid, uint32_t uid,
		     const struct pinfs_lease_event *ev)
{
	struct pinfs_lease_event r = *ev;
	size_t i;

	r.time_ns = now_real();
	pthread_mutex_lock(&ch->lock);
	for (i = 0; i < ch->n; i++) {
		struct evconn *c = &ch->c[i];
		if (c->pid != pid || c->uid != uid)
			continue;
		r.lost = c->lost;
		if (send(c->fd, &r, sizeof(r), MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)sizeof(r))
			c->lost = 0;
		else
			c->lost++; /* full (a reader that does not read), or gone */
	}
	pthread_mutex_unlock(&ch->lock);
}

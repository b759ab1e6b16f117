/* SPDX-License-Identifier: MIT */
/*
 * client/client.c -- the pinfs client library (see include/pinfs/client.h): pin over
 * the ioctl ABI of include/pinfs/abi.h, then map the pool blocks the daemon reports,
 * segment by segment, into one reserved range of the address space.
 *
 * It only talks to the daemon through ioctls and one xattr, and to the
 * kernel through mmap; it has no state of its own beyond struct pinfs_map.
 * Every range it maps is MADV_DONTFORK: the mapping never outlives the
 * process the daemon holds responsible for it.
 */
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "pinfs/client.h"

#define PAGE 4096ull
#define HUGE_PAGE (2ull << 20)

/* The segments of one lease, as one array. */
struct segs {
	struct pinfs_seg *s;
	uint32_t n;
};

static void map_clear(struct pinfs_map *m)
{
	memset(m, 0, sizeof(*m));
	m->pool_fd = -1;
	m->fd = -1;
}

static int lease_unpin(int fd, uint64_t id)
{
	struct pinfs_unpin u = { .lease_id = id };

	if (ioctl(fd, PINFS_IOC_UNPIN, &u) < 0)
		return -errno;
	return 0;
}

/* Collects all segments of the lease pinned by *p: those in the pin reply
 * and the rest through PINFS_IOC_SEGS. 0, -ENOMEM, -EPROTO, or the ioctl's
 * -errno. */
static int segs_fetch(int fd, const struct pinfs_pin *p, struct segs *out)
{
	uint32_t total = p->nsegs_total, have = p->nsegs;

	if (total == 0 || have == 0 || have > total || have > PINFS_SEGS_MAX)
		return -EPROTO;
	out->s = calloc(total, sizeof(*out->s));
	if (!out->s)
		return -ENOMEM;
	out->n = total;
	memcpy(out->s, p->segs, have * sizeof(*out->s));

	while (have < total) {
		struct pinfs_segs q = { .lease_id = p->lease_id, .first = have };

		if (ioctl(fd, PINFS_IOC_SEGS, &q) < 0)
			return -errno;
		/* The segment list of a lease never changes while it exists. */
		if (q.nsegs_total != total || q.nsegs == 0 || q.nsegs > PINFS_SEGS_MAX ||
		    q.nsegs > total - have)
			return -EPROTO;
		memcpy(out->s + have, q.segs, q.nsegs * sizeof(*out->s));
		have += q.nsegs;
	}
	return 0;
}

/* Do the segments tile [pin_offset, + pin_length) in order, in whole
 * pages, inside a pool of @pool_size bytes? */
static int segs_check(const struct segs *sg, uint64_t pin_offset, uint64_t pin_length,
		      uint64_t pool_size)
{
	uint64_t at = pin_offset;

	if (pin_offset % PAGE || pin_length == 0 || pin_length % PAGE)
		return -EPROTO;
	for (uint32_t i = 0; i < sg->n; i++) {
		const struct pinfs_seg *s = &sg->s[i];

		if (s->file_off != at || s->len == 0 || s->len % PAGE || s->pool_off % PAGE ||
		    s->pool_off > pool_size || s->len > pool_size - s->pool_off ||
		    s->len > pin_offset + pin_length - at)
			return -EPROTO;
		at += s->len;
	}
	return at == pin_offset + pin_length ? 0 : -EPROTO;
}

/* Opens the pool named by the file's PINFS_XATTR_POOL xattr. */
static int pool_open(int fd, uint32_t flags, int *pool_fd)
{
	char path[4096];
	ssize_t n = fgetxattr(fd, PINFS_XATTR_POOL, path, sizeof(path) - 1);

	/* The pin worked, so this is pinfs: a missing xattr is the daemon's fault. */
	if (n < 0)
		return errno == ENODATA || errno == ENOTSUP ? -EPROTO : -errno;
	path[n] = '\0';
	/* A relative path is relative to the daemon's directory, not ours:
	 * opening it here could map an unrelated file. */
	if (n == 0 || path[0] != '/' || strlen(path) != (size_t)n)
		return -EPROTO;
	*pool_fd = open(path, ((flags & PINFS_PIN_WRITE) ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	/* the daemon let the pin through, but the pool is closed to us all
	 * the same (a directory on its path, or it changed): the same answer
	 * as the daemon's refusal, which pinfs_pin_strerror() explains */
	if (*pool_fd < 0)
		return errno == EACCES ? -EPERM : -errno;
	return 0;
}

/*
 * Reserves @len bytes of address space (PROT_NONE), starting at an address
 * congruent to @phase modulo 2 MiB, so that a segment whose pool offset is
 * 2 MiB-aligned relative to the first one can use huge pages. The slack is
 * given back.
 */
static int va_reserve(size_t len, uint64_t phase, void **out)
{
	size_t span = len + HUGE_PAGE;
	char *p = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uintptr_t start;

	if (p == MAP_FAILED)
		return -errno;
	start = ((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
	start += phase % HUGE_PAGE;
	if (start - HUGE_PAGE >= (uintptr_t)p)
		start -= HUGE_PAGE;
	if (start > (uintptr_t)p)
		munmap(p, start - (uintptr_t)p);
	if ((uintptr_t)p + span > start + len)
		munmap((void *)(start + len), (uintptr_t)p + span - (start + len));
	*out = (void *)start;
	return 0;
}

/*
 * Keeps [addr, + len) out of every child of this process (MADV_DONTFORK, as
 * libibverbs' ibv_fork_init() does for RDMA memory). The daemon quarantines a
 * lease's blocks for as long as the process that pinned them lives; a child
 * that inherited the mapping could outlive it and store into blocks already
 * given to another file. In the child the range is simply not mapped: a
 * load or store there is SIGSEGV.
 */
static int range_dontfork(void *addr, size_t len)
{
	if (madvise(addr, len, MADV_DONTFORK) < 0)
		return -errno;
	return 0;
}

/* Maps every segment over the reserved range at @base. */
static int segs_map(const struct segs *sg, char *base, uint64_t pin_offset, uint32_t flags,
		    int pool_fd)
{
	int prot = PROT_READ | ((flags & PINFS_PIN_WRITE) ? PROT_WRITE : 0);

	for (uint32_t i = 0; i < sg->n; i++) {
		const struct pinfs_seg *s = &sg->s[i];
		char *at = base + (s->file_off - pin_offset);
		void *p = mmap(at, s->len, prot, MAP_SHARED | MAP_FIXED, pool_fd,
			       (off_t)s->pool_off);

		if (p == MAP_FAILED)
			return -errno;
		/* For tmpfs huge=advise; harmless (EINVAL) elsewhere. */
		if (s->len >= HUGE_PAGE)
			(void)madvise(p, s->len, MADV_HUGEPAGE);
	}
	return 0;
}

/*
 * Pins and maps. @fixed NULL: as pinfs_map_pin(), into a new range. @fixed
 * set: a re-pin of *@m's range (pinfs_map_repin): the new blocks are mapped
 * over [m->addr, + m->len) with MAP_FIXED, so the address stays; *@m is
 * changed only on success (then the caller ends the old lease).
 */
static int map_pin(int fd, uint64_t off, uint64_t len, uint32_t flags, int sig, uint64_t cookie,
		   struct pinfs_map *m, struct pinfs_map *fixed)
{
	struct pinfs_pin_ex *x = calloc(1, sizeof(*x));
	struct pinfs_pin *p = x ? &x->pin : NULL;
	struct pinfs_map nm;
	struct segs sg = { NULL, 0 };
	struct stat st;
	void *base = NULL;
	int rc, pinned = 0;

	map_clear(&nm);
	if (!fixed)
		map_clear(m);
	if (!x)
		return -ENOMEM;
	if (!(flags & PINFS_PIN_NOTIFY_SIGNAL) && sig) {
		free(x);
		return -EINVAL;
	}
	p->offset = off;
	p->length = len;
	p->flags = flags;
	if (flags & PINFS_PIN_NOTIFY_SIGNAL)
		p->notify_sig = (uint32_t)sig;
	x->cookie = cookie;
	/* PINFS_IOC_PIN_EX only for a cookie: without one, a daemon older
	 * than it still serves the pin */
	if (ioctl(fd, cookie ? PINFS_IOC_PIN_EX : PINFS_IOC_PIN, cookie ? (void *)x : (void *)p) < 0) {
		rc = -errno;
		goto out;
	}
	pinned = 1;
	nm.lease_id = p->lease_id;
	nm.offset = p->pin_offset;
	nm.flags = flags;
	nm.fd = fd;

	rc = segs_fetch(fd, p, &sg);
	if (rc < 0)
		goto out;
	if (p->pin_length > SIZE_MAX) {
		rc = -ENOMEM;
		goto out;
	}
	if (fixed && (p->pin_offset != fixed->offset || p->pin_length != fixed->len)) {
		rc = -EINVAL; /* the file shrank under the old range */
		goto out;
	}
	rc = fixed ? ((nm.pool_fd = fcntl(fixed->pool_fd, F_DUPFD_CLOEXEC, 0)) < 0 ? -errno : 0)
		   : pool_open(fd, flags, &nm.pool_fd);
	if (rc < 0)
		goto out;
	if (fstat(nm.pool_fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	rc = segs_check(&sg, p->pin_offset, p->pin_length, (uint64_t)st.st_size);
	if (rc < 0)
		goto out;
	nm.len = (size_t)p->pin_length;
	if (fixed) {
		base = fixed->addr;
	} else {
		rc = va_reserve(nm.len, sg.s[0].pool_off, &base);
		if (rc < 0)
			goto out;
		rc = range_dontfork(base, nm.len);
		if (rc < 0)
			goto out;
	}
	rc = segs_map(&sg, base, p->pin_offset, flags, nm.pool_fd);
	if (rc < 0)
		goto out;
	/* MAP_FIXED made new mappings, which do not inherit the reservation's
	 * flag: mark them again. */
	rc = range_dontfork(base, nm.len);
	if (rc < 0)
		goto out;
	nm.addr = base;
	nm.nsegs = sg.n;
	rc = 0;
out:
	if (rc < 0) {
		if (base && !fixed)
			munmap(base, nm.len);
		if (nm.pool_fd >= 0)
			close(nm.pool_fd);
		if (pinned)
			(void)lease_unpin(fd, p->lease_id);
	} else {
		*m = nm;
	}
	free(sg.s);
	free(x);
	return rc;
}

int pinfs_map_pin(int fd, uint64_t off, uint64_t len, uint32_t flags, struct pinfs_map *m)
{
	return map_pin(fd, off, len, flags, 0, 0, m, NULL);
}

int pinfs_map_pin_ex(int fd, uint64_t off, uint64_t len, uint32_t flags, int sig,
		     uint64_t cookie, struct pinfs_map *m)
{
	return map_pin(fd, off, len, flags, sig, cookie, m, NULL);
}

int pinfs_lease_state(int fd, uint64_t lease_id, struct pinfs_lease_query *q)
{
	memset(q, 0, sizeof(*q));
	q->lease_id = lease_id;
	if (ioctl(fd, PINFS_IOC_LEASE, q) < 0)
		return -errno;
	return 0;
}

int pinfs_map_repin(struct pinfs_map *m)
{
	struct pinfs_lease_query q;
	struct pinfs_map old = *m;
	struct stat st;
	uint64_t len;
	int rc;

	if (!m->addr || m->fd < 0 || m->pool_fd < 0)
		return -EINVAL;
	/* the mapping is rounded out to blocks, the file need not be: pin up
	 * to its end, which rounds out to the same blocks */
	if (fstat(m->fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size <= m->offset)
		return -EINVAL;
	len = (uint64_t)st.st_size - m->offset < m->len ? (uint64_t)st.st_size - m->offset : m->len;
	/* the old lease's choice of notices and its cookie go to the new one */
	rc = pinfs_lease_state(m->fd, m->lease_id, &q);
	if (rc < 0)
		return rc;
	rc = map_pin(m->fd, m->offset, len, m->flags, (int)q.notify_sig, q.cookie, m, &old);
	if (rc < 0) {
		*m = old; /* the old lease stands; the range may be remapped in part */
		return rc;
	}
	/* the new blocks are mapped over the old ones: end the old lease,
	 * which acknowledges its revocation */
	close(old.pool_fd);
	rc = lease_unpin(old.fd, old.lease_id);
	return rc == -ENOENT || rc == -EINVAL ? 0 : rc;
}

int pinfs_event_open(int fd)
{
	struct pinfs_lease_event hello;
	struct sockaddr_un sa;
	struct pollfd pfd;
	char name[sizeof(sa.sun_path)];
	ssize_t n = fgetxattr(fd, PINFS_XATTR_EVENTS, name, sizeof(name) - 1);
	socklen_t alen;
	int s, rc;

	if (n < 0)
		return errno == ENODATA || errno == ENOTSUP ? -ENOTSUP : -errno;
	if (n < 2 || name[0] != '@' || memchr(name, 0, (size_t)n))
		return -EPROTO;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path + 1, name + 1, (size_t)n - 1); /* abstract: a leading NUL */
	alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)n);
	s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	if (connect(s, (struct sockaddr *)&sa, alen) < 0) {
		rc = -errno;
		goto fail;
	}
	/* the greeting: the daemon has accepted us, pins may ask for it */
	pfd.fd = s;
	pfd.events = POLLIN;
	rc = poll(&pfd, 1, 10000);
	if (rc <= 0) {
		rc = rc < 0 ? -errno : -ETIMEDOUT;
		goto fail;
	}
	n = recv(s, &hello, sizeof(hello), 0);
	if (n != (ssize_t)sizeof(hello) || hello.event != PINFS_EV_GREETING) {
		rc = n < 0 ? -errno : n == 0 ? -ECONNREFUSED : -EPROTO;
		goto fail;
	}
	if (fcntl(s, F_SETFL, O_NONBLOCK) < 0) {
		rc = -errno;
		goto fail;
	}
	return s;
fail:
	close(s);
	return rc;
}

int pinfs_event_read(int evfd, struct pinfs_lease_event *ev)
{
	ssize_t n = recv(evfd, ev, sizeof(*ev), MSG_DONTWAIT);

	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	if (n == 0)
		return -ENOTCONN; /* the daemon closed it: unmounted */
	return n == (ssize_t)sizeof(*ev) ? 0 : -EPROTO;
}

int pinfs_map_unpin(struct pinfs_map *m)
{
	int rc = 0;

	if (m->addr && munmap(m->addr, m->len) < 0)
		rc = -errno; /* only EINVAL: *m was corrupted */
	if (m->pool_fd >= 0)
		close(m->pool_fd);
	/* Unmap first: once the lease ends its blocks may belong to another
	 * file, and no mapping of ours may still reach them. */
	if (m->fd >= 0) {
		int u = lease_unpin(m->fd, m->lease_id);
		if (u < 0)
			rc = u;
	}
	map_clear(m);
	return rc;
}

void *pinfs_map_ptr(const struct pinfs_map *m, uint64_t file_off)
{
	if (!m->addr || file_off < m->offset || file_off - m->offset >= m->len)
		return NULL;
	return (char *)m->addr + (file_off - m->offset);
}

static const char *user_name(uid_t uid, char *buf, size_t size)
{
	struct passwd pw, *p = NULL;
	char tmp[1024];

	if (getpwuid_r(uid, &pw, tmp, sizeof(tmp), &p) == 0 && p)
		snprintf(buf, size, "%s", p->pw_name);
	else
		snprintf(buf, size, "%u", (unsigned)uid);
	return buf;
}

static const char *group_name(gid_t gid, char *buf, size_t size)
{
	struct group gr, *g = NULL;
	char tmp[4096];

	if (getgrgid_r(gid, &gr, tmp, sizeof(tmp), &g) == 0 && g)
		snprintf(buf, size, "%s", g->gr_name);
	else
		snprintf(buf, size, "%u", (unsigned)gid);
	return buf;
}

/* A byte count as "8K", "1G" when it is a whole number of such units,
 * else in bytes. */
static void size_name(uint64_t v, char *out, size_t size)
{
	static const char units[] = "KMGTPE";
	int u = -1;

	while (v && !(v & 1023) && u < 5) {
		v >>= 10;
		u++;
	}
	if (u < 0)
		snprintf(out, size, "%llu", (unsigned long long)v);
	else
		snprintf(out, size, "%llu%c", (unsigned long long)v, units[u]);
}

/* The value of option @name in @opts ("a=1,b=2"), as a number; 0 if
 * absent. */
static uint64_t option_value(const char *opts, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = opts; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
		if (!strncmp(p, name, n) && p[n] == '=')
			return strtoull(p + n + 1, NULL, 10);
	return 0;
}

/* ENOMEM from PINFS_IOC_PIN: the mount's limits, named with their values
 * (PINFS_IOC_STATUS); the bare limit names from a daemon without it. */
static void limits_strerror(int fd, char *buf, size_t size)
{
	struct pinfs_status *st = calloc(1, sizeof(*st));
	uint64_t pins, bytes, upins, ubytes;
	char b[32], ub[32], up[32];
	int k;

	if (!st || ioctl(fd, PINFS_IOC_STATUS, st) < 0) {
		snprintf(buf, size, "the pin would exceed the mount's pin limits (pinfs -o max_pins=N, "
				    "-o max_pinned=SIZE per process, -o max_pins_per_user, "
				    "-o max_pinned_per_user) (%s)", strerror(ENOMEM));
		free(st);
		return;
	}
	st->options[sizeof(st->options) - 1] = '\0';
	pins = option_value(st->options, "max_pins");
	bytes = option_value(st->options, "max_pinned");
	upins = option_value(st->options, "max_pins_per_user");
	ubytes = option_value(st->options, "max_pinned_per_user");
	free(st);
	size_name(bytes, b, sizeof(b));
	size_name(ubytes, ub, sizeof(ub));
	snprintf(up, sizeof(up), "%llu", (unsigned long long)upins);
	k = snprintf(buf, size, "the pin would exceed the mount's pin limits: per process "
				"max_pins=%llu, max_pinned=%s%s",
		     (unsigned long long)pins, bytes ? b : "unlimited",
		     upins || ubytes ? "; per user " : "");
	if (k < 0 || (size_t)k >= size)
		return;
	if (upins || ubytes)
		k += snprintf(buf + k, size - (size_t)k, "max_pins_per_user=%s, max_pinned_per_user=%s",
			      upins ? up : "unlimited", ubytes ? ub : "unlimited");
	if (k < 0 || (size_t)k >= size)
		return;
	snprintf(buf + k, size - (size_t)k, " (pinfs -o; %s)", strerror(ENOMEM));
}

const char *pinfs_pin_strerror(int fd, int err, char *buf, size_t size)
{
	char path[4096], u[64], g[64];
	ssize_t n;
	struct stat st;

	if (err < 0)
		err = -err;
	if (err == ENOMEM) {
		limits_strerror(fd, buf, size);
		return buf;
	}
	if (err == ENOTTY) {
		/* every file of a pinfs mount has the pool xattr */
		if (fgetxattr(fd, PINFS_XATTR_POOL, path, sizeof(path) - 1) < 0)
			snprintf(buf, size, "not a pinfs mount: the file is on no pinfs file system (%s)",
				 strerror(err));
		else
			snprintf(buf, size, "the pinfs daemon does not serve this ioctl (%s)",
				 strerror(err));
		return buf;
	}
	if (err == EACCES) {
		snprintf(buf, size, "you may not pin this file: a pin needs the file's owner or "
				    "CAP_LEASE (or write access to it, if pinfs runs with "
				    "-o pin_access=writer), and a read pin of a hole needs write "
				    "access (%s)", strerror(err));
		return buf;
	}
	if (err != EPERM) {
		snprintf(buf, size, "%s", strerror(err));
		return buf;
	}
	n = fgetxattr(fd, PINFS_XATTR_POOL, path, sizeof(path) - 1);
	if (n < 0) {
		snprintf(buf, size, "%s", strerror(err));
		return buf;
	}
	path[n] = '\0';
	if (stat(path, &st) < 0)
		snprintf(buf, size, "you may not map the pool %s: a directory on its path is closed "
				    "to you (%s); pinning needs root, or membership of the pool's group "
				    "(pinfs -o pin_group=GROUP) and directories up to the pool that "
				    "let you through",
			 path, strerror(errno));
	else
		snprintf(buf, size, "you may not map the pool %s (mode %04o, owner %s, group %s): "
				    "pinning needs root or membership of the pool's group "
				    "(pinfs -o pin_group=GROUP)",
			 path, (unsigned)(st.st_mode & 07777), user_name(st.st_uid, u, sizeof(u)),
			 group_name(st.st_gid, g, sizeof(g)));
	return buf;
}

/* Parses a byte count: decimal or 0x hex, with an optional binary suffix
 * k, m, g or t, which may be spelt KiB, MB, ... 0 or -EINVAL. */
int pinfs_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) ? 16 : 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	default: break;
	}
	if (*end == 'i' && shift)
		end++;
	if ((*end == 'B' || *end == 'b') && shift)
		end++;
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

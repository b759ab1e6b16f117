/* SPDX-License-Identifier: MIT */
/*
 * examples/pinfs-example.c -- the smallest complete client of libpinfs,
 * built against an installed pinfs with nothing but pkg-config:
 *
 *	cc -o pinfs-example pinfs-example.c $(pkg-config --cflags --libs pinfs liburing)
 *	./pinfs-example [--revoke] /mnt/pinfs/example.dat [LEN]
 *
 * It creates (or extends) FILE to LEN bytes (default 1 MiB), pins [0, LEN)
 * for writing, stores a pattern through the direct mapping of the pool,
 * registers the mapping with io_uring as fixed buffers (the long-term page
 * pin that RDMA or O_DIRECT-style I/O would hold), fsyncs the file, then
 * releases in the sensible order -- the io_uring registration first, then
 * the pin -- and reads the file back with pread() to check the pattern.
 * Byte i of the file is (i % 251): a period prime to every block size.
 *
 * It pins revocably and asks for its lease's notices on the event channel
 * (pinfs_event_open, PINFS_PIN_NOTIFY_EVENTS), with a cookie. With
 * --revoke it shows what to do when the lease is revoked: it sets the
 * file's policy to "revoke" and has a child punch a hole in the range (as
 * another process might truncate the file), waits for the
 * PINFS_EV_REVOKE record on the pollable fd, then unregisters the io_uring
 * buffers (the kernel's pin), re-pins at the same address
 * (pinfs_map_repin), stores the pattern again and registers again -- so a
 * peer that knew the address need not learn a new one.
 *
 * Exit status: 0 when the pattern is in the file, 1 otherwise (with a
 * message on stderr).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* fallocate() */
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <liburing.h>
#include <pinfs/client.h>

#define DEFAULT_LEN (1024 * 1024)
#define REG_BUF_MAX (1024ul * 1024 * 1024) /* io_uring's limit per fixed buffer */

static unsigned char pattern_byte(uint64_t off)
{
	return (unsigned char)(off % 251);
}

/* Stores the pattern over [0, len) of the file through the mapping. */
static void pattern_store(const struct pinfs_map *m, uint64_t len)
{
	unsigned char *p = pinfs_map_ptr(m, 0);

	for (uint64_t i = 0; i < len; i++)
		p[i] = pattern_byte(i);
}

/* Reads [0, len) back with pread(); 0 when it is the pattern, else -1. */
static int pattern_check(int fd, uint64_t len)
{
	unsigned char buf[65536];

	for (uint64_t off = 0; off < len;) {
		size_t want = len - off < sizeof(buf) ? (size_t)(len - off) : sizeof(buf);
		ssize_t n = pread(fd, buf, want, (off_t)off);

		if (n <= 0) {
			fprintf(stderr, "pinfs-example: pread at %llu: %s\n",
				(unsigned long long)off, n < 0 ? strerror(errno) : "short file");
			return -1;
		}
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] != pattern_byte(off + (uint64_t)i)) {
				fprintf(stderr, "pinfs-example: byte %llu is %u, expected %u\n",
					(unsigned long long)(off + (uint64_t)i), buf[i],
					pattern_byte(off + (uint64_t)i));
				return -1;
			}
		}
		off += (uint64_t)n;
	}
	return 0;
}

/* Registers the whole mapping as io_uring fixed buffers (1 GiB each at most). */
static int buffers_register(struct io_uring *ring, const struct pinfs_map *m)
{
	unsigned n = (unsigned)((m->len + REG_BUF_MAX - 1) / REG_BUF_MAX);
	struct iovec *iov = calloc(n, sizeof(*iov));
	int rc;

	if (!iov)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		iov[i].iov_base = (char *)m->addr + i * REG_BUF_MAX;
		iov[i].iov_len = i + 1 < n ? REG_BUF_MAX : m->len - i * REG_BUF_MAX;
	}
	rc = io_uring_register_buffers(ring, iov, n);
	free(iov);
	return rc;
}

#define COOKIE 0x70696e6673ull /* ours: comes back in every event of the lease */

/* Waits (poll, up to 10 s) for the revocation record of lease m->lease_id
 * on event channel @evfd. 0, or -1 with a message. */
static int revoke_wait(int evfd, const struct pinfs_map *m)
{
	struct pollfd p = { .fd = evfd, .events = POLLIN };
	struct pinfs_lease_event ev;

	while (poll(&p, 1, 10000) > 0) {
		while (pinfs_event_read(evfd, &ev) == 0) {
			if (ev.lease_id != m->lease_id || ev.cookie != COOKIE)
				continue; /* another lease's */
			printf("pinfs-example: event %u for lease %llu (cookie %#llx), range "
			       "[%llu, +%llu), policy %u\n",
			       ev.event, (unsigned long long)ev.lease_id,
			       (unsigned long long)ev.cookie, (unsigned long long)ev.offset,
			       (unsigned long long)ev.length, ev.reason);
			if (ev.event == PINFS_EV_REVOKE)
				return 0;
		}
	}
	fprintf(stderr, "pinfs-example: no revocation record within 10 s\n");
	return -1;
}

/* --revoke: another process punches a hole in the pinned range under policy
 * revoke; the lease is revoked, and we re-pin at the same address. */
static int revoke_and_repin(int fd, int evfd, struct pinfs_map *m, struct io_uring *ring,
			    uint64_t len)
{
	void *addr = m->addr;
	pid_t child;
	int status, rc;

	if (fsetxattr(fd, PINFS_XATTR_POLICY, "revoke", 6, 0) < 0) {
		fprintf(stderr, "pinfs-example: set the policy: %s\n", strerror(errno));
		return -1;
	}
	child = fork();
	if (child == 0)
		_exit(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096) < 0);
	if (child < 0 || waitpid(child, &status, 0) < 0 || status != 0) {
		fprintf(stderr, "pinfs-example: the hole punch failed\n");
		return -1;
	}
	if (revoke_wait(evfd, m) < 0)
		return -1;
	/* 1. stop using the range and release the kernel's pin of it, as an
	 * RDMA user deregisters its memory region */
	rc = io_uring_unregister_buffers(ring);
	if (rc < 0) {
		fprintf(stderr, "pinfs-example: io_uring_unregister_buffers: %s\n", strerror(-rc));
		return -1;
	}
	/* 2. pin again at the same address; ends (acknowledges) the old lease */
	rc = pinfs_map_repin(m);
	if (rc < 0) {
		fprintf(stderr, "pinfs-example: re-pin: %s\n", strerror(-rc));
		return -1;
	}
	if (m->addr != addr) {
		fprintf(stderr, "pinfs-example: re-pinned at %p, not %p\n", m->addr, addr);
		return -1;
	}
	/* 3. the hole's data went with the revoked blocks: store it again,
	 * and register again */
	pattern_store(m, len);
	rc = buffers_register(ring, m);
	if (rc < 0) {
		fprintf(stderr, "pinfs-example: io_uring_register_buffers: %s\n", strerror(-rc));
		return -1;
	}
	printf("pinfs-example: revoked, re-pinned at the same address %p as lease %llu\n",
	       m->addr, (unsigned long long)m->lease_id);
	return 0;
}

int main(int argc, char **argv)
{
	uint64_t len = DEFAULT_LEN;
	struct pinfs_map m;
	struct io_uring ring;
	struct stat st;
	char msg[512];
	int fd, rc, ok = 1, revoke = 0, evfd, created = 0;

	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("usage: pinfs-example [--revoke] FILE-ON-A-PINFS-MOUNT [LEN]\n");
		return 0;
	}
	if (argc > 1 && !strcmp(argv[1], "--revoke")) {
		revoke = 1;
		argv++;
		argc--;
	}
	/* an option it does not know is no file name: never create "--foo" */
	if (argc < 2 || argc > 3 || argv[1][0] == '-' ||
	    (argc == 3 && (pinfs_parse_size(argv[2], &len) < 0 || !len))) {
		fprintf(stderr, "usage: pinfs-example [--revoke] FILE-ON-A-PINFS-MOUNT [LEN]\n");
		return 1;
	}
	/* O_EXCL first, so that a file we made and could not pin (not on a
	 * pinfs mount) is removed again */
	fd = open(argv[1], O_RDWR | O_CREAT | O_EXCL, 0644);
	if (fd >= 0)
		created = 1;
	else if (errno == EEXIST)
		fd = open(argv[1], O_RDWR);
	if (fd < 0) {
		fprintf(stderr, "pinfs-example: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	/* A pin must lie inside the file: extend it first (holes are allocated
	 * by the pin itself). */
	if (fstat(fd, &st) < 0 || ((uint64_t)st.st_size < len && ftruncate(fd, (off_t)len) < 0)) {
		fprintf(stderr, "pinfs-example: sizing %s: %s\n", argv[1], strerror(errno));
		close(fd);
		return 1;
	}

	/* Notices of our lease come as records on this pollable fd: open it
	 * before the pin. Having chosen the channel, we are sent no SIGBUS on
	 * revocation -- the record is the notice. */
	evfd = pinfs_event_open(fd);
	if (evfd < 0) {
		fprintf(stderr, "pinfs-example: pin %s: the event channel: %s%s\n", argv[1],
			strerror(-evfd),
			evfd == -ENOTSUP ? " (is the file on a pinfs mount?)" : "");
		close(fd);
		if (created)
			unlink(argv[1]);
		return 1;
	}
	rc = pinfs_map_pin_ex(fd, 0, len,
			      PINFS_PIN_WRITE | PINFS_PIN_REVOCABLE | PINFS_PIN_NOTIFY_EVENTS, 0,
			      COOKIE, &m);
	if (rc < 0) {
		fprintf(stderr, "pinfs-example: pin %s: %s\n", argv[1],
			pinfs_pin_strerror(fd, rc, msg, sizeof(msg)));
		close(evfd);
		close(fd);
		return 1;
	}
	pattern_store(&m, len);

	rc = io_uring_queue_init(4, &ring, 0);
	if (rc < 0) {
		fprintf(stderr, "pinfs-example: io_uring_queue_init: %s\n", strerror(-rc));
		pinfs_map_unpin(&m);
		close(fd);
		return 1;
	}
	rc = buffers_register(&ring, &m);
	if (rc < 0) {
		fprintf(stderr, "pinfs-example: io_uring_register_buffers (%zu bytes): %s\n", m.len,
			strerror(-rc));
		ok = 0;
	}
	if (revoke && ok && revoke_and_repin(fd, evfd, &m, &ring, len) < 0)
		ok = 0;

	if (fsync(fd) < 0) {
		fprintf(stderr, "pinfs-example: fsync: %s\n", strerror(errno));
		ok = 0;
	}

	/* The kernel's pin on the pages (fixed buffers) goes before the lease.
	 * Kept past it, it would hold pages the daemon has cut out of the pool
	 * by the time their blocks go to another file: stores through it land
	 * in orphaned pages and are lost (see pinfs/client.h). */
	if (rc == 0) {
		rc = io_uring_unregister_buffers(&ring);
		if (rc < 0) {
			fprintf(stderr, "pinfs-example: io_uring_unregister_buffers: %s\n",
				strerror(-rc));
			ok = 0;
		}
	}
	io_uring_queue_exit(&ring);
	rc = pinfs_map_unpin(&m);
	if (rc < 0) {
		fprintf(stderr, "pinfs-example: unpin: %s\n", strerror(-rc));
		ok = 0;
	}

	close(evfd);
	if (pattern_check(fd, len) < 0)
		ok = 0;
	if (close(fd) < 0) {
		fprintf(stderr, "pinfs-example: close: %s\n", strerror(errno));
		ok = 0;
	}
	if (ok)
		printf("pinfs-example: %llu bytes stored through the pin, fsynced, read back\n",
		       (unsigned long long)len);
	return ok ? 0 : 1;
}

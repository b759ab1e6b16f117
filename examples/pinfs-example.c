/* SPDX-License-Identifier: MIT */
/*
 * examples/pinfs-example.c -- the smallest complete client of libpinfs,
 * built against an installed pinfs with nothing but pkg-config:
 *
 *	cc -o pinfs-example pinfs-example.c $(pkg-config --cflags --libs pinfs liburing)
 *	./pinfs-example /mnt/pinfs/example.dat [LEN]
 *
 * It creates (or extends) FILE to LEN bytes (default 1 MiB), pins [0, LEN)
 * for writing, stores a pattern through the direct mapping of the pool,
 * registers the mapping with io_uring as fixed buffers (the long-term page
 * pin that RDMA or O_DIRECT-style I/O would hold), fsyncs the file, then
 * releases in the sensible order -- the io_uring registration first, then
 * the pin -- and reads the file back with pread() to check the pattern.
 * Byte i of the file is (i % 251): a period prime to every block size.
 *
 * Exit status: 0 when the pattern is in the file, 1 otherwise (with a
 * message on stderr).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
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

int main(int argc, char **argv)
{
	uint64_t len = DEFAULT_LEN;
	struct pinfs_map m;
	struct io_uring ring;
	struct stat st;
	char msg[512];
	int fd, rc, ok = 1;

	if (argc < 2 || argc > 3 || (argc == 3 && (pinfs_parse_size(argv[2], &len) < 0 || !len))) {
		fprintf(stderr, "usage: pinfs-example FILE-ON-A-PINFS-MOUNT [LEN]\n");
		return 1;
	}
	fd = open(argv[1], O_RDWR | O_CREAT, 0644);
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

	rc = pinfs_map_pin(fd, 0, len, PINFS_PIN_WRITE, &m);
	if (rc < 0) {
		fprintf(stderr, "pinfs-example: pin %s: %s\n", argv[1],
			pinfs_pin_strerror(fd, rc, msg, sizeof(msg)));
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

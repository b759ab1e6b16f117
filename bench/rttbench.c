/* SPDX-License-Identifier: MIT */
/*
 * bench/rttbench.c -- the round trips an appending pinfs-dax writer pays,
 * and the fsync of a write-pinned file (scripts/bench-rtt).
 *
 *   rttbench ioctl FILE N   N PINFS_IOC_OPS (a no-op ioctl: the bare FUSE
 *                           round trip) and N PINFS_IOC_GROW of FILE, each
 *                           1 MiB larger than the last; mean microseconds
 *   rttbench fsync FILE N   N times a 4 KiB pwrite at a random block of
 *                           FILE (which must exist, at least 4 KiB) and an
 *                           fsync; mean and max microseconds. Under
 *                           pinfs-dax the first write takes the file's
 *                           write layout lease, so every fsync flushes the
 *                           whole write-pinned file.
 *
 * Output: "KEY VALUE" lines, as bench/iobench.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pinfs/abi.h"

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmd_ioctl(const char *path, long n)
{
	struct pinfs_grow g;
	struct pinfs_ops o;
	double t;
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);

	if (fd < 0) {
		perror(path);
		return 1;
	}
	t = now();
	for (long i = 0; i < n; i++)
		if (ioctl(fd, PINFS_IOC_OPS, &o) < 0) {
			perror("PINFS_IOC_OPS");
			return 1;
		}
	printf("ioctl_noop_us %.1f\n", (now() - t) / (double)n * 1e6);
	memset(&g, 0, sizeof(g));
	t = now();
	for (long i = 0; i < n; i++) {
		g.size = (uint64_t)(i + 1) << 20;
		if (ioctl(fd, PINFS_IOC_GROW, &g) < 0) {
			perror("PINFS_IOC_GROW");
			return 1;
		}
	}
	printf("ioctl_grow_us %.1f\n", (now() - t) / (double)n * 1e6);
	close(fd);
	unlink(path);
	return 0;
}

static int cmd_fsync(const char *path, long n)
{
	char buf[4096];
	struct stat st;
	double t, max = 0;
	int fd = open(path, O_RDWR);

	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size < 4096) {
		fprintf(stderr, "rttbench: %s: %s\n", path, fd < 0 ? strerror(errno) : "too small");
		return 1;
	}
	memset(buf, 0xa5, sizeof(buf));
	srand(1);
	if (pwrite(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
		return 1;
	t = now();
	for (long i = 0; i < n; i++) {
		double t0 = now(), d;
		off_t at = (off_t)(rand() % (st.st_size / 4096)) * 4096;
		if (pwrite(fd, buf, sizeof(buf), at) != (ssize_t)sizeof(buf) || fsync(fd) < 0) {
			perror("pwrite+fsync");
			return 1;
		}
		d = now() - t0;
		if (d > max)
			max = d;
	}
	printf("pwrite_fsync_us %.1f\npwrite_fsync_max_us %.1f\n", (now() - t) / (double)n * 1e6,
	       max * 1e6);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	long n = argc > 3 ? strtol(argv[3], NULL, 10) : 0;

	if (argc != 4 || n <= 0) {
		fprintf(stderr, "usage: rttbench ioctl|fsync FILE N\n");
		return 2;
	}
	if (!strcmp(argv[1], "ioctl"))
		return cmd_ioctl(argv[2], n);
	if (!strcmp(argv[1], "fsync"))
		return cmd_fsync(argv[2], n);
	fprintf(stderr, "rttbench: unknown command %s\n", argv[1]);
	return 2;
}

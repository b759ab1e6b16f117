/* SPDX-License-Identifier: MIT */
/*
 * bench/cohbench.c -- what a write() costs when the file is mapped
 * (scripts/bench-coherence; fusefs/coherent.c).
 *
 *   cohbench FILE MODE BS COUNT
 *
 * FILE is made 64 MiB long (written once, so no write allocates). Then
 * COUNT pwrite()s of BS bytes at random BS-aligned offsets are timed one by
 * one. MODE:
 *   plain    the file is not mapped
 *   mapped   a MAP_SHARED mapping of the whole file is held, and every
 *            page the writes reach has been read through it first
 *   stores   as mapped, and a second thread stores into the mapping
 *            (one byte per page, round robin) the whole time
 *   cold     the mapping is held, but only its first page was read: the
 *            writes reach pages the kernel does not cache
 * Prints: "MODE BS ops/s p50_us p99_us".
 */
#define BENCH_NAME "cohbench"
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "samples.h"

#define FILE_SIZE (64ul << 20)

static atomic_bool stop;
static volatile unsigned char *map;

static void *storer(void *arg)
{
	size_t at = 0;

	(void)arg;
	while (!atomic_load(&stop)) {
		map[at]++;
		at = (at + 4096) % FILE_SIZE;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct samples s = { 0 };
	pthread_t t;
	size_t bs, count;
	char *buf;
	int fd, mode;
	double t0, t1;
	uint64_t rnd = 88172645463325252ull;

	if (argc != 5) {
		fprintf(stderr, "usage: cohbench FILE plain|mapped|stores|cold BS COUNT\n");
		return 1;
	}
	mode = !strcmp(argv[2], "plain")    ? 0
	       : !strcmp(argv[2], "mapped") ? 1
	       : !strcmp(argv[2], "stores") ? 2
	       : !strcmp(argv[2], "cold")   ? 3
					    : -1;
	if (mode < 0) {
		fprintf(stderr, "cohbench: mode plain, mapped, stores or cold\n");
		return 1;
	}
	bs = (size_t)parse_long(argv[3]);
	count = (size_t)parse_long(argv[4]);
	if (!bs || bs > FILE_SIZE || FILE_SIZE % bs)
		return 1;
	buf = aligned_alloc(4096, bs < 4096 ? 4096 : bs);
	if (!buf)
		die("aligned_alloc");
	memset(buf, 0x5a, bs);
	fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die(argv[1]);
	for (size_t off = 0; off < FILE_SIZE; off += bs)
		if (pwrite(fd, buf, bs, (off_t)off) != (ssize_t)bs)
			die("pwrite (fill)");
	if (mode) {
		map = mmap(NULL, FILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (map == MAP_FAILED)
			die("mmap");
		for (size_t off = 0; off < (mode == 3 ? 4096 : FILE_SIZE); off += 4096)
			(void)map[off];
	}
	if (mode == 2 && pthread_create(&t, NULL, storer, NULL))
		die("pthread_create");
	t0 = now();
	for (size_t i = 0; i < count; i++) {
		double a;
		rnd ^= rnd << 13, rnd ^= rnd >> 7, rnd ^= rnd << 17;
		off_t off = (off_t)(rnd % (FILE_SIZE / bs) * bs);
		a = now();
		if (pwrite(fd, buf, bs, off) != (ssize_t)bs)
			die("pwrite");
		samples_add(&s, (now() - a) * 1e6);
	}
	t1 = now();
	if (mode == 2) {
		atomic_store(&stop, true);
		pthread_join(t, NULL);
	}
	if (mode)
		munmap((void *)map, FILE_SIZE);
	close(fd);
	printf("%s %zu %.0f %.1f %.1f\n", argv[2], bs, (double)count / (t1 - t0),
	       samples_pct(&s, 50), samples_pct(&s, 99));
	return 0;
}

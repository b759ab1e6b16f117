/* SPDX-License-Identifier: MIT */
/*
 * tests/mount/mmaprace.c -- write() racing stores through a shared mapping
 * of the same pages (test_mmap_coherence.py).
 *
 *   mmaprace FILE PAGES SECONDS
 *
 * FILE is made PAGES pages long. For SECONDS, three threads run at once:
 *  - "store" stores a counter into the first half of every page through a
 *    MAP_SHARED mapping;
 *  - "write" pwrite()s a counter into the second half of every page;
 *  - "sync" calls msync(MS_SYNC) on the mapping, so pages are written back
 *    while the others run.
 * Then the mapping is synced and unmapped, and the file is read back with
 * read(): each page's first half must hold the last value stored, its
 * second half the last value written. Neither may be lost: POSIX makes a
 * shared mapping and read()/write() views of the same file.
 *
 * While it runs, the write thread checks each pwrite() at once: the
 * mapping and a pread() must show the bytes it just wrote (it alone writes
 * second halves), not a page-cache copy from before the write.
 *
 * Prints one line "mmaprace: ROUNDS rounds, LOST bytes lost by write(),
 * SLOST lost by stores, M stale through the mapping and R through read()
 * ..." and exits 0 when all four are 0, 1 otherwise, 2 on a usage or
 * system error.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u
#define HALF (PAGE / 2)

static int fd;
static unsigned npages;
static unsigned char *map;
static atomic_bool stop;
static uint32_t *stored;  /* per page: last value the store thread put */
static uint32_t *written; /* per page: last value write() put */
static unsigned long rounds;
static unsigned long mapstale, readstale;

static void die(const char *what)
{
	fprintf(stderr, "mmaprace: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void fill(unsigned char *p, uint32_t v)
{
	for (unsigned i = 0; i < HALF; i += 4)
		memcpy(p + i, &v, 4);
}

/* Bytes of @half (PAGE/2 bytes) that are not the 4-byte pattern @v. */
static unsigned long lost(const unsigned char *half, uint32_t v)
{
	unsigned long n = 0;

	for (unsigned i = 0; i < HALF; i += 4)
		if (memcmp(half + i, &v, 4))
			n += 4;
	return n;
}

static void *store_thread(void *arg)
{
	uint32_t v = 0x10000000;

	(void)arg;
	while (!atomic_load(&stop)) {
		v++;
		for (unsigned p = 0; p < npages; p++) {
			fill(map + (size_t)p * PAGE, v);
			stored[p] = v;
		}
	}
	return NULL;
}

static void *write_thread(void *arg)
{
	unsigned char buf[HALF];
	uint32_t v = 0x20000000;

	(void)arg;
	while (!atomic_load(&stop)) {
		v++;
		fill(buf, v);
		for (unsigned p = 0; p < npages; p++) {
			unsigned char back[HALF];
			if (pwrite(fd, buf, HALF, (off_t)p * PAGE + HALF) != HALF)
				die("pwrite");
			written[p] = v;
			/* this thread alone writes the second halves: once
			 * pwrite() returned, the mapping and read() show v */
			mapstale += lost(map + (size_t)p * PAGE + HALF, v);
			if (pread(fd, back, HALF, (off_t)p * PAGE + HALF) != HALF)
				die("pread");
			readstale += lost(back, v);
		}
		rounds++;
	}
	return NULL;
}

static void *sync_thread(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop))
		if (msync(map, (size_t)npages * PAGE, MS_SYNC))
			die("msync");
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t t[3];
	unsigned long wlost = 0, slost = 0;
	unsigned char page[PAGE];

	if (argc != 4) {
		fprintf(stderr, "usage: mmaprace FILE PAGES SECONDS\n");
		return 2;
	}
	npages = (unsigned)strtoul(argv[2], NULL, 0);
	if (!npages)
		return 2;
	fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die(argv[1]);
	if (ftruncate(fd, (off_t)npages * PAGE))
		die("ftruncate");
	map = mmap(NULL, (size_t)npages * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		die("mmap");
	stored = calloc(npages, sizeof(*stored));
	written = calloc(npages, sizeof(*written));
	if (!stored || !written)
		die("calloc");
	if (pthread_create(&t[0], NULL, store_thread, NULL) ||
	    pthread_create(&t[1], NULL, write_thread, NULL) ||
	    pthread_create(&t[2], NULL, sync_thread, NULL))
		die("pthread_create");
	sleep((unsigned)strtoul(argv[3], NULL, 0));
	atomic_store(&stop, true);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	if (msync(map, (size_t)npages * PAGE, MS_SYNC) || munmap(map, (size_t)npages * PAGE))
		die("msync/munmap");
	for (unsigned p = 0; p < npages; p++) {
		if (pread(fd, page, PAGE, (off_t)p * PAGE) != PAGE)
			die("pread");
		slost += lost(page, stored[p]);
		wlost += lost(page + HALF, written[p]);
	}
	close(fd);
	printf("mmaprace: %lu rounds, %lu bytes lost by write(), %lu lost by stores, "
	       "%lu stale through the mapping and %lu through read() after write() returned\n",
	       rounds, wlost, slost, mapstale, readstale);
	return wlost || slost || mapstale || readstale ? 1 : 0;
}

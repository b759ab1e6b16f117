/* SPDX-License-Identifier: MIT */
/*
 * tests/mount/staleholder.c -- a holder whose mapping could outlive its
 * lease, for test_stale_mapping.py. It pins and maps through the client
 * library (include/pinfs/client.h), so it tests what the library does.
 *
 *   staleholder fork FILE LEN   pin (write) and map [0, LEN) of FILE, fork,
 *                               print "lease=ID" and exit without unpinning:
 *                               the lease ends with this process. The child
 *                               closes FILE, prints "child PID", waits for a
 *                               line on stdin, stores, prints "stored" and
 *                               exits 0.
 *   staleholder close FILE LEN  pin with PINFS_PIN_ON_CLOSE and map, close
 *                               FILE (the lease ends), print "closed
 *                               lease=ID", wait for a line, store, print
 *                               "stored", wait for a line, exit 0.
 *
 * The line read is a byte value (decimal): it is stored over the whole
 * mapping. Every store goes through the mapping the library made.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pinfs/client.h"

static int wait_line(void)
{
	char line[64];

	if (!fgets(line, sizeof(line), stdin))
		exit(2);
	return atoi(line);
}

int main(int argc, char **argv)
{
	struct pinfs_map m;
	uint64_t len;
	int fd, rc, byte;
	int on_close;

	if (argc != 4 || (strcmp(argv[1], "fork") && strcmp(argv[1], "close")) ||
	    pinfs_parse_size(argv[3], &len)) {
		fprintf(stderr, "usage: staleholder fork|close FILE LEN\n");
		return 2;
	}
	on_close = !strcmp(argv[1], "close");
	setvbuf(stdout, NULL, _IONBF, 0);
	fd = open(argv[2], O_RDWR);
	if (fd < 0) {
		perror("open");
		return 1;
	}
	rc = pinfs_map_pin(fd, 0, len, PINFS_PIN_WRITE | (on_close ? PINFS_PIN_ON_CLOSE : 0), &m);
	if (rc < 0) {
		fprintf(stderr, "pinfs_map_pin: %s\n", strerror(-rc));
		return 1;
	}
	if (on_close) {
		close(fd);
		printf("closed lease=%llu\n", (unsigned long long)m.lease_id);
		byte = wait_line();
		memset(m.addr, byte, m.len);
		printf("stored\n");
		wait_line();
		return 0;
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid > 0) {
		printf("lease=%llu\n", (unsigned long long)m.lease_id);
		return 0; /* the holder exits, its lease with it */
	}
	close(fd);
	close(m.pool_fd);
	printf("child %d\n", (int)getpid());
	byte = wait_line();
	memset(m.addr, byte, m.len);
	printf("stored\n");
	return 0;
}

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
 *
 *   staleholder raw FILE LEN FLAGS
 *                               a client that does not play by the library's
 *                               rules: pin (FLAGS: letters w r c) and map
 *                               through the library, then MADV_DOFORK the
 *                               mapping (as a client mapping the pool file
 *                               itself would have it), SIGBUS and SIGIO
 *                               blocked; print "lease=ID", then one answer
 *                               line per command on stdin:
 *                                 close    close FILE                "ok"
 *                                 unpin    PINFS_IOC_UNPIN, mapping kept
 *                                          "ok" or "err ERRNO"
 *                                 fork     the process forks; the parent
 *                                          prints "child PID" and exits 0,
 *                                          the child reads the next commands
 *                                 spawn    fork a child that keeps the
 *                                          mapping and sleeps; "child PID"
 *                                 store B  store byte B over the mapping
 *                                          "stored"
 *                                 unmap    munmap the mapping      "ok"
 *                                 exit     exit 0
 *   staleholder many FILE N     N processes, one after the other, each pin
 *                               (write) one block of FILE and unpin it
 *                               through the library, then stay alive: prints "ready ok=K errno=E"
 *                               (E: the first failure's errno, or 0), waits
 *                               for a line, ends them, exits 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pinfs/client.h"

static int wait_line(void)
{
	char line[64];

	if (!fgets(line, sizeof(line), stdin))
		exit(2);
	return atoi(line);
}

static int raw(const char *path, uint64_t len, const char *fl)
{
	uint32_t flags = (strchr(fl, 'w') ? PINFS_PIN_WRITE : 0) |
			 (strchr(fl, 'r') ? PINFS_PIN_REVOCABLE : 0) |
			 (strchr(fl, 'c') ? PINFS_PIN_ON_CLOSE : 0);
	struct pinfs_map m;
	char line[64];
	sigset_t set;
	int fd, rc;

	sigemptyset(&set);
	sigaddset(&set, SIGBUS);
	sigaddset(&set, SIGIO);
	sigprocmask(SIG_BLOCK, &set, NULL);
	fd = open(path, O_RDWR);
	if (fd < 0) {
		perror("open");
		return 1;
	}
	rc = pinfs_map_pin(fd, 0, len, flags, &m);
	if (rc < 0) {
		fprintf(stderr, "pinfs_map_pin: %s\n", strerror(-rc));
		return 1;
	}
	if (madvise(m.addr, m.len, MADV_DOFORK) < 0) {
		perror("madvise");
		return 1;
	}
	close(m.pool_fd);
	printf("lease=%llu\n", (unsigned long long)m.lease_id);
	while (fgets(line, sizeof(line), stdin)) {
		if (!strncmp(line, "close", 5)) {
			close(fd);
			fd = -1;
			printf("ok\n");
		} else if (!strncmp(line, "unpin", 5)) {
			struct pinfs_unpin u = { .lease_id = m.lease_id };
			if (ioctl(fd, PINFS_IOC_UNPIN, &u) < 0)
				printf("err %d\n", errno);
			else
				printf("ok\n");
		} else if (!strncmp(line, "fork", 4)) {
			pid_t pid = fork();
			if (pid < 0) {
				printf("err %d\n", errno);
			} else if (pid > 0) {
				printf("child %d\n", (int)pid);
				return 0; /* the holder exits; the child goes on */
			}
		} else if (!strncmp(line, "spawn", 5)) {
			pid_t pid = fork();
			if (pid == 0) {
				for (;;)
					pause(); /* a child keeping the mapping */
			}
			if (pid < 0)
				printf("err %d\n", errno);
			else
				printf("child %d\n", (int)pid);
		} else if (!strncmp(line, "store ", 6)) {
			memset(m.addr, atoi(line + 6), m.len);
			printf("stored\n");
		} else if (!strncmp(line, "unmap", 5)) {
			munmap(m.addr, m.len);
			printf("ok\n");
		} else if (!strncmp(line, "exit", 4)) {
			return 0;
		} else {
			printf("err %d\n", EINVAL);
		}
	}
	return 0;
}

static int many(const char *path, long n)
{
	pid_t *pids = calloc((size_t)n, sizeof(*pids));
	int p[2], ok = 0, first_err = 0;
	char line[64];
	long i;

	if (!pids || pipe(p) < 0) {
		perror("many");
		return 1;
	}
	for (i = 0; i < n; i++) {
		pids[i] = fork();
		if (pids[i] < 0) {
			perror("fork");
			n = i;
			break;
		}
		if (pids[i] == 0) {
			struct pinfs_map m;
			/* never outlive the test's process */
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() == 1)
				_exit(1);
			int fd = open(path, O_RDWR), e = 0;
			if (fd < 0)
				e = errno;
			else if ((e = -pinfs_map_pin(fd, 0, 4096, PINFS_PIN_WRITE, &m)) == 0)
				e = -pinfs_map_unpin(&m);
			if (fd >= 0)
				close(fd);
			if (write(p[1], &e, sizeof(e)) != sizeof(e))
				_exit(1);
			close(p[1]);
			for (;;)
				pause(); /* alive, holding nothing */
		}
		/* one at a time: each is done before the next pins */
		int e;
		if (read(p[0], &e, sizeof(e)) != sizeof(e)) {
			n = i + 1;
			break;
		}
		if (!e)
			ok++;
		else if (!first_err)
			first_err = e;
	}
	close(p[1]);
	printf("ready ok=%d errno=%d\n", ok, first_err);
	if (!fgets(line, sizeof(line), stdin)) {
		/* end them anyway */
	}
	for (i = 0; i < n; i++)
		kill(pids[i], SIGKILL);
	for (i = 0; i < n; i++)
		waitpid(pids[i], NULL, 0);
	free(pids);
	return 0;
}

int main(int argc, char **argv)
{
	struct pinfs_map m;
	uint64_t len;
	int fd, rc, byte;
	int on_close;

	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc == 5 && !strcmp(argv[1], "raw") && !pinfs_parse_size(argv[3], &len))
		return raw(argv[2], len, argv[4]);
	if (argc == 4 && !strcmp(argv[1], "many"))
		return many(argv[2], atol(argv[3]));
	if (argc != 4 || (strcmp(argv[1], "fork") && strcmp(argv[1], "close")) ||
	    pinfs_parse_size(argv[3], &len)) {
		fprintf(stderr, "usage: staleholder fork|close FILE LEN | raw FILE LEN FLAGS | "
				"many FILE N\n");
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
	/* before the fork: the child's line must come second */
	printf("lease=%llu\n", (unsigned long long)m.lease_id);
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid > 0)
		return 0; /* the holder exits, its lease with it */
	close(fd);
	close(m.pool_fd);
	printf("child %d\n", (int)getpid());
	byte = wait_line();
	memset(m.addr, byte, m.len);
	printf("stored\n");
	return 0;
}

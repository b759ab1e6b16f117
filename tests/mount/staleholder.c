/* SPDX-License-Identifier: MIT */
/*
 * tests/mount/staleholder.c -- a holder whose mapping or kernel pin could
 * outlive its lease, for test_stale_mapping.py, test_holders.py and
 * test_kernel_pins.py. It pins and maps through the client library
 * (include/pinfs/client.h), so it tests what the library does.
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
 *                                 spawn2 B double fork: a child forks a
 *                                          grandchild and exits (reaped
 *                                          here, so this process has no
 *                                          child left and the grandchild is
 *                                          reparented away from it); the
 *                                          grandchild closes FILE and its
 *                                          stdio and stores byte B over the
 *                                          mapping every millisecond until
 *                                          killed; "grandchild PID"
 *                                 store B  store byte B over the mapping
 *                                          "stored"
 *                                 unmap    munmap the mapping      "ok"
 *                                 exit     exit 0
 *   staleholder ring FILE LEN FLAGS
 *                               a kernel pin that outlives the lease: pin
 *                               (FLAGS as for raw) and map through the
 *                               library (its MADV_DONTFORK kept), SIGBUS and
 *                               SIGIO blocked; print "lease=ID", then one
 *                               answer line per command on stdin:
 *                                 ring     register the mapping with io_uring
 *                                          as fixed buffers of RING_BUF bytes
 *                                          each (the last one shorter): the
 *                                          kernel's long-term pin of the
 *                                          pages                     "ok"
 *                                 unpin    pinfs_map_unpin(): munmap and
 *                                          PINFS_IOC_UNPIN (acknowledging a
 *                                          revocation); the ring keeps its
 *                                          buffers    "ok" or "err ERRNO"
 *                                 close    close FILE                "ok"
 *                                 fork     the process forks; the parent
 *                                          prints "child PID" and exits 0
 *                                          without unpinning, the child
 *                                          (the ring inherited, no mapping)
 *                                          reads the next commands
 *                                 dma B    READ_FIXED from a temporary file
 *                                          full of byte B into the whole of
 *                                          every registered buffer, one after
 *                                          the other: "stored N", N the bytes
 *                                          the kernel reported, or "err ERRNO"
 *                                 exit     exit 0 (the ring is not released)
 *   staleholder many FILE N     N processes, one after the other, each pin
 *                               (write) one block of FILE and unpin it
 *                               through the library, then stay alive: prints "ready ok=K errno=E"
 *                               (E: the first failure's errno, or 0), waits
 *                               for a line, ends them, exits 0.
 *
 * Errors of a command are "err ERRNO" (a positive errno), on one line.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/uio.h>
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

/* PINFS_PIN_* of FLAGS letters: w(rite) r(evocable) c (on close). */
static uint32_t pin_flags(const char *fl)
{
	return (strchr(fl, 'w') ? PINFS_PIN_WRITE : 0) |
	       (strchr(fl, 'r') ? PINFS_PIN_REVOCABLE : 0) |
	       (strchr(fl, 'c') ? PINFS_PIN_ON_CLOSE : 0);
}

/* A revocation (SIGBUS, queued) or a lease break notice (SIGIO) stays
 * pending instead of killing the holder: it goes on as if it had not
 * noticed. */
static void block_revocation(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGBUS);
	sigaddset(&set, SIGIO);
	sigprocmask(SIG_BLOCK, &set, NULL);
}

/*
 * spawn2: a child forks a grandchild and exits; the caller reaps the child,
 * so it has no child left, and the grandchild is reparented to the nearest
 * subreaper (or init). The grandchild keeps the mapping [addr, addr + len),
 * closes @fd and its stdio (nothing of the test waits on it), and stores
 * @byte over the mapping every millisecond until it is killed. Returns the
 * grandchild's pid or -errno.
 */
static long spawn2(int fd, void *addr, size_t len, int byte)
{
	pid_t child, gc = -1;
	int p[2], status;

	if (pipe(p) < 0)
		return -errno;
	child = fork();
	if (child < 0) {
		int e = errno;
		close(p[0]);
		close(p[1]);
		return -e;
	}
	if (child == 0) {
		close(p[0]);
		gc = fork();
		if (gc == 0) {
			int null = open("/dev/null", O_RDWR);

			close(p[1]);
			if (fd >= 0)
				close(fd);
			if (null >= 0) {
				dup2(null, 0);
				dup2(null, 1);
				dup2(null, 2);
				if (null > 2)
					close(null);
			}
			for (;;) {
				memset(addr, byte, len);
				usleep(1000);
			}
		}
		if (gc < 0)
			gc = -errno;
		_exit(write(p[1], &gc, sizeof(gc)) == sizeof(gc) ? 0 : 1);
	}
	close(p[1]);
	if (read(p[0], &gc, sizeof(gc)) != sizeof(gc))
		gc = -EIO;
	close(p[0]);
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	return gc;
}

/* The "close" command: closes FILE, "ok". */
static void cmd_close(int *fd)
{
	close(*fd);
	*fd = -1;
	printf("ok\n");
}

/* The "fork" command: true in the parent, which prints "child PID" and must
 * exit 0; false in the child, which reads the next commands (and after a
 * failed fork, "err ERRNO"). */
static bool cmd_fork(void)
{
	pid_t pid = fork();

	if (pid < 0)
		printf("err %d\n", errno);
	else if (pid > 0)
		printf("child %d\n", (int)pid);
	return pid > 0;
}

/* SIGBUS and SIGIO blocked, @path opened and [0, @len) pinned and mapped
 * through the library: the file descriptor, or -1 (said on stderr). */
static int open_and_pin(const char *path, uint64_t len, uint32_t flags, struct pinfs_map *m)
{
	int fd, rc;

	block_revocation();
	fd = open(path, O_RDWR);
	if (fd < 0) {
		perror("open");
		return -1;
	}
	rc = pinfs_map_pin(fd, 0, len, flags, m);
	if (rc < 0) {
		fprintf(stderr, "pinfs_map_pin: %s\n", strerror(-rc));
		close(fd);
		return -1;
	}
	return fd;
}

static int raw(const char *path, uint64_t len, const char *fl)
{
	uint32_t flags = pin_flags(fl);
	struct pinfs_map m;
	char line[64];
	int fd;

	fd = open_and_pin(path, len, flags, &m);
	if (fd < 0)
		return 1;
	if (madvise(m.addr, m.len, MADV_DOFORK) < 0) {
		perror("madvise");
		return 1;
	}
	close(m.pool_fd);
	printf("lease=%llu\n", (unsigned long long)m.lease_id);
	while (fgets(line, sizeof(line), stdin)) {
		if (!strncmp(line, "close", 5)) {
			cmd_close(&fd);
		} else if (!strncmp(line, "unpin", 5)) {
			struct pinfs_unpin u = { .lease_id = m.lease_id };
			if (ioctl(fd, PINFS_IOC_UNPIN, &u) < 0)
				printf("err %d\n", errno);
			else
				printf("ok\n");
		} else if (!strncmp(line, "fork", 4)) {
			if (cmd_fork())
				return 0; /* the holder exits unpinned; the child goes on */
		} else if (!strncmp(line, "spawn2 ", 7)) {
			long gc = spawn2(fd, m.addr, m.len, atoi(line + 7));
			if (gc < 0)
				printf("err %ld\n", -gc);
			else
				printf("grandchild %ld\n", gc);
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

/* ---- ring: io_uring fixed buffers over the library's mapping ------------ */

/* Bytes per registered buffer: several buffers, as a real user of a big
 * mapping would have (io_uring takes at most 1 GiB per buffer). */
#define RING_BUF (256u << 10)

struct ring_pin {
	struct io_uring ring;
	bool up;	 /* ring set up */
	char *addr;	 /* the mapping's address, kept after the unpin */
	size_t len;
	unsigned nbufs;	 /* registered buffers: [addr, addr + len) in RING_BUF pieces */
};

/* Registers [r->addr, r->addr + r->len) as fixed buffers. 0 or -errno. */
static int ring_register(struct ring_pin *r)
{
	unsigned n = (unsigned)((r->len + RING_BUF - 1) / RING_BUF), i;
	struct iovec *iov;
	int rc;

	if (r->up)
		return -EBUSY;
	iov = calloc(n, sizeof(*iov));
	if (!iov)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		iov[i].iov_base = r->addr + (size_t)i * RING_BUF;
		iov[i].iov_len = i + 1 < n ? RING_BUF : r->len - (size_t)i * RING_BUF;
	}
	rc = io_uring_queue_init(4, &r->ring, 0);
	if (rc == 0) {
		rc = io_uring_register_buffers(&r->ring, iov, n);
		if (rc < 0)
			io_uring_queue_exit(&r->ring);
	}
	free(iov);
	if (rc == 0) {
		r->up = true;
		r->nbufs = n;
	}
	return rc;
}

/* A temporary file of RING_BUF bytes @byte (tmpfs, else /tmp): fd or -errno. */
static int source_open(int byte)
{
	static char buf[RING_BUF];
	int fd = open("/dev/shm", O_TMPFILE | O_RDWR | O_EXCL, 0600);

	if (fd < 0)
		fd = open("/tmp", O_TMPFILE | O_RDWR | O_EXCL, 0600);
	if (fd < 0)
		return -errno;
	memset(buf, byte, sizeof(buf));
	if (pwrite(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf)) {
		close(fd);
		return -EIO;
	}
	return fd;
}

/* READ_FIXED of a file full of @byte into the whole of every registered
 * buffer, one at a time: the bytes the kernel stored, or -errno. */
static long ring_dma(struct ring_pin *r, int byte)
{
	long total = 0;
	unsigned i;
	int src;

	if (!r->up)
		return -EINVAL;
	src = source_open(byte);
	if (src < 0)
		return src;
	for (i = 0; i < r->nbufs; i++) {
		size_t off = (size_t)i * RING_BUF, n = i + 1 < r->nbufs ? RING_BUF : r->len - off;
		struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
		struct io_uring_cqe *cqe;
		int rc;

		if (!sqe) {
			total = -EBUSY;
			break;
		}
		io_uring_prep_read_fixed(sqe, src, r->addr + off, (unsigned)n, 0, (int)i);
		rc = io_uring_submit(&r->ring);
		if (rc >= 0) {
			do
				rc = io_uring_wait_cqe(&r->ring, &cqe);
			while (rc == -EINTR);
		}
		if (rc < 0) {
			total = rc;
			break;
		}
		rc = cqe->res;
		io_uring_cqe_seen(&r->ring, cqe);
		if (rc < 0) {
			total = rc;
			break;
		}
		total += rc;
	}
	close(src);
	return total;
}

static int ring(const char *path, uint64_t len, const char *fl)
{
	struct ring_pin r = { .up = false };
	struct pinfs_map m;
	char line[64];
	int fd, rc;

	fd = open_and_pin(path, len, pin_flags(fl), &m);
	if (fd < 0)
		return 1;
	r.addr = m.addr;
	r.len = m.len;
	printf("lease=%llu\n", (unsigned long long)m.lease_id);
	while (fgets(line, sizeof(line), stdin)) {
		if (!strncmp(line, "ring", 4)) {
			rc = ring_register(&r);
			if (rc < 0)
				printf("err %d\n", -rc);
			else
				printf("ok\n");
		} else if (!strncmp(line, "unpin", 5)) {
			/* the library's order: munmap, then UNPIN; the ring stays */
			rc = pinfs_map_unpin(&m);
			if (rc < 0)
				printf("err %d\n", -rc);
			else
				printf("ok\n");
		} else if (!strncmp(line, "close", 5)) {
			cmd_close(&fd);
		} else if (!strncmp(line, "fork", 4)) {
			if (cmd_fork())
				return 0; /* the holder exits unpinned; the child goes on */
		} else if (!strncmp(line, "dma ", 4)) {
			long n = ring_dma(&r, atoi(line + 4));
			if (n < 0)
				printf("err %ld\n", -n);
			else
				printf("stored %ld\n", n);
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
	if (argc == 5 && !strcmp(argv[1], "ring") && !pinfs_parse_size(argv[3], &len))
		return ring(argv[2], len, argv[4]);
	if (argc == 4 && !strcmp(argv[1], "many"))
		return many(argv[2], atol(argv[3]));
	if (argc != 4 || (strcmp(argv[1], "fork") && strcmp(argv[1], "close")) ||
	    pinfs_parse_size(argv[3], &len)) {
		fprintf(stderr, "usage: staleholder fork|close FILE LEN | raw|ring FILE LEN FLAGS | "
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

/* SPDX-License-Identifier: MIT */
/*
 * tests/mount/daxprobe.c -- an ordinary program (no pinfs header, no
 * libpinfs) that tests/mount/test_dax.py runs under pinfs-dax and drives
 * line by line on stdin; one answer line per command on stdout:
 *
 *   open PATH r|w|rw|a|wa|d   -> fd          (a: O_APPEND, d: O_RDWR|O_DIRECT)
 *   pread FD OFF LEN          -> hex bytes   ("-" for none) or "ERR errno"
 *   read FD LEN               -> hex bytes
 *   readv FD LEN              -> hex bytes (two iovecs)
 *   pwrite FD OFF HEX         -> bytes written
 *   pwritefile FD OFF PATH    -> bytes written: one pwrite of PATH's bytes
 *   write FD HEX              -> bytes written
 *   writev FD HEX             -> bytes written (two iovecs)
 *   seek FD OFF               -> new offset
 *   close FD | fsync FD       -> 0
 *   rawclose FD               -> 0 (syscall(SYS_close): unseen by pinfs-dax)
 *   closefrom FD              -> 0 (glibc closefrom: every fd from FD up)
 *   memfd                     -> fd of a new memfd (a descriptor no open() made)
 *   pipe | socketpair         -> the first fd of a new pipe or socket pair
 *   execfail PATH             -> -errno of an execve(PATH) that fails
 *   dup FD | dupfd FD         -> new fd (dup, fcntl F_DUPFD_CLOEXEC)
 *   dup2 FD TO | dup3 FD TO   -> TO
 *   setappend FD              -> 0 (fcntl F_SETFL |= O_APPEND)
 *   maps POOL                 -> how many mappings of file POOL this process has
 *   forkread FD OFF LEN POOL  -> the child's pread hex, then its pool mappings
 *                                before and after: "HEX before after"
 *   threads FD N OFF          -> "ok" or what went wrong: N threads each
 *                                pwrite then pread their own 4 KiB at OFF+i*4096
 *   sigread FD OFF LEN NSIG   -> "ok HEX" : preads in a loop while SIGALRM
 *                                handlers pread the same bytes, NSIG signals
 *   mmap FD LEN rw|r          -> map id (MAP_SHARED of [0, LEN))
 *   mget ID OFF LEN           -> hex bytes, or "SIGBUS"
 *   mput ID OFF HEX           -> "ok", or "SIGBUS"
 *   munmap ID                 -> 0
 *   quit
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static void put_hex(const unsigned char *b, ssize_t n)
{
	if (n < 0) {
		printf("ERR %d\n", errno);
		return;
	}
	if (n == 0)
		putchar('-');
	for (ssize_t i = 0; i < n; i++)
		printf("%02x", b[i]);
	putchar('\n');
}

static size_t from_hex(const char *h, unsigned char *out)
{
	size_t n = 0;

	while (h[0] && h[1]) {
		unsigned v;
		sscanf(h, "%2x", &v);
		out[n++] = (unsigned char)v;
		h += 2;
	}
	return n;
}

static int pool_maps(const char *pool)
{
	char line[8192];
	FILE *f = fopen("/proc/self/maps", "r");
	size_t plen = strlen(pool);
	int n = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char *p = strchr(line, '/');
		if (p && !strncmp(p, pool, plen) && (p[plen] == '\n' || p[plen] == ' '))
			n++;
	}
	fclose(f);
	return n;
}

struct thr {
	int fd, i;
	long off;
	int bad;
};

static void *thr_main(void *arg)
{
	struct thr *t = arg;
	unsigned char w[4096], r[4096];

	for (int round = 0; round < 200; round++) {
		memset(w, 'A' + (t->i + round) % 26, sizeof(w));
		if (pwrite(t->fd, w, sizeof(w), t->off) != (ssize_t)sizeof(w) ||
		    pread(t->fd, r, sizeof(r), t->off) != (ssize_t)sizeof(r) ||
		    memcmp(w, r, sizeof(w))) {
			t->bad = 1;
			break;
		}
	}
	return NULL;
}

static int sig_fd;
static long sig_off, sig_len;
static unsigned char sig_want[65536];
static volatile sig_atomic_t sig_bad, sig_seen;

static void on_alarm(int s)
{
	unsigned char b[65536];
	int e = errno;

	(void)s;
	if (pread(sig_fd, b, (size_t)sig_len, sig_off) != sig_len || memcmp(b, sig_want, (size_t)sig_len))
		sig_bad = 1;
	sig_seen++;
	errno = e;
}

static sigjmp_buf bus_jmp;

static void on_bus(int s)
{
	(void)s;
	siglongjmp(bus_jmp, 1);
}

static char *maps_[16];
static size_t maplen_[16];

int main(void)
{
	struct sigaction bus;

	memset(&bus, 0, sizeof(bus));
	bus.sa_handler = on_bus;
	sigaction(SIGBUS, &bus, NULL);
	char line[1 << 17], cmd[32], a1[4096], a3[1 << 16];
	static unsigned char buf[1 << 16] __attribute__((aligned(4096)));
	long x, y, z;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while (fgets(line, sizeof(line), stdin)) {
		a1[0] = a3[0] = 0;
		x = y = z = 0;
		if (sscanf(line, "%31s", cmd) != 1)
			continue;
		if (!strcmp(cmd, "open")) {
			char mode[8];
			int fl;
			sscanf(line, "%*s %4095s %7s", a1, mode);
			fl = !strcmp(mode, "r") ? O_RDONLY : !strcmp(mode, "w") ? O_WRONLY : O_RDWR;
			if (strchr(mode, 'a'))
				fl = (strchr(mode, 'w') ? O_WRONLY : O_RDWR) | O_APPEND;
			if (strchr(mode, 'd'))
				fl = O_RDWR | O_DIRECT;
			int fd = open(a1, fl | O_CREAT, 0644);
			printf("%d\n", fd < 0 ? -errno : fd);
		} else if (!strcmp(cmd, "pread")) {
			sscanf(line, "%*s %ld %ld %ld", &x, &y, &z);
			put_hex(buf, pread((int)x, buf, (size_t)z, y));
		} else if (!strcmp(cmd, "read")) {
			sscanf(line, "%*s %ld %ld", &x, &y);
			put_hex(buf, read((int)x, buf, (size_t)y));
		} else if (!strcmp(cmd, "readv")) {
			struct iovec v[2];
			sscanf(line, "%*s %ld %ld", &x, &y);
			v[0].iov_base = buf;
			v[0].iov_len = (size_t)y / 3;
			v[1].iov_base = buf + y / 3;
			v[1].iov_len = (size_t)(y - y / 3);
			put_hex(buf, readv((int)x, v, 2));
		} else if (!strcmp(cmd, "pwrite")) {
			sscanf(line, "%*s %ld %ld %65535s", &x, &y, a3);
			size_t n = from_hex(a3, buf);
			ssize_t r = pwrite((int)x, buf, n, y);
			printf("%zd\n", r < 0 ? -errno : r);
		} else if (!strcmp(cmd, "pwritefile")) {
			struct stat st;
			ssize_t r = -1;
			char *big;
			int sfd;
			sscanf(line, "%*s %ld %ld %4095s", &x, &y, a1);
			sfd = open(a1, O_RDONLY);
			if (sfd >= 0 && !fstat(sfd, &st) && (big = malloc((size_t)st.st_size + 1))) {
				if (read(sfd, big, (size_t)st.st_size) == st.st_size)
					r = pwrite((int)x, big, (size_t)st.st_size, y);
				free(big);
			}
			printf("%zd\n", r < 0 ? -errno : r);
			if (sfd >= 0)
				close(sfd);
		} else if (!strcmp(cmd, "write") || !strcmp(cmd, "writev")) {
			sscanf(line, "%*s %ld %65535s", &x, a3);
			size_t n = from_hex(a3, buf);
			ssize_t r;
			if (cmd[5] == 'v') {
				struct iovec v[2] = { { buf, n / 2 }, { buf + n / 2, n - n / 2 } };
				r = writev((int)x, v, 2);
			} else {
				r = write((int)x, buf, n);
			}
			printf("%zd\n", r < 0 ? -errno : r);
		} else if (!strcmp(cmd, "seek")) {
			sscanf(line, "%*s %ld %ld", &x, &y);
			printf("%ld\n", (long)lseek((int)x, y, SEEK_SET));
		} else if (!strcmp(cmd, "close")) {
			sscanf(line, "%*s %ld", &x);
			printf("%d\n", close((int)x) ? -errno : 0);
		} else if (!strcmp(cmd, "rawclose")) { /* a close no library sees */
			sscanf(line, "%*s %ld", &x);
			printf("%ld\n", syscall(SYS_close, (int)x) ? -(long)errno : 0L);
		} else if (!strcmp(cmd, "closefrom")) {
			sscanf(line, "%*s %ld", &x);
			closefrom((int)x);
			printf("0\n");
		} else if (!strcmp(cmd, "memfd")) {
			int fd = memfd_create("daxprobe", MFD_CLOEXEC);
			printf("%d\n", fd < 0 ? -errno : fd);
		} else if (!strcmp(cmd, "pipe") || !strcmp(cmd, "socketpair")) {
			int fds[2];
			int r = cmd[0] == 'p' ? pipe(fds) : socketpair(AF_UNIX, SOCK_STREAM, 0, fds);
			printf("%d\n", r < 0 ? -errno : fds[0]);
		} else if (!strcmp(cmd, "execfail")) {
			char *av[] = { a1, NULL };
			extern char **environ;
			sscanf(line, "%*s %4095s", a1);
			execve(a1, av, environ);
			printf("%d\n", -errno);
		} else if (!strcmp(cmd, "fsync")) {
			sscanf(line, "%*s %ld", &x);
			printf("%d\n", fsync((int)x) ? -errno : 0);
		} else if (!strcmp(cmd, "dup")) {
			sscanf(line, "%*s %ld", &x);
			printf("%d\n", dup((int)x));
		} else if (!strcmp(cmd, "dupfd")) {
			sscanf(line, "%*s %ld", &x);
			printf("%d\n", fcntl((int)x, F_DUPFD_CLOEXEC, 100));
		} else if (!strcmp(cmd, "dup2")) {
			sscanf(line, "%*s %ld %ld", &x, &y);
			printf("%d\n", dup2((int)x, (int)y));
		} else if (!strcmp(cmd, "dup3")) {
			sscanf(line, "%*s %ld %ld", &x, &y);
			printf("%d\n", dup3((int)x, (int)y, O_CLOEXEC));
		} else if (!strcmp(cmd, "setappend")) {
			sscanf(line, "%*s %ld", &x);
			printf("%d\n", fcntl((int)x, F_SETFL, fcntl((int)x, F_GETFL) | O_APPEND) ? -errno : 0);
		} else if (!strcmp(cmd, "maps")) {
			sscanf(line, "%*s %4095s", a1);
			printf("%d\n", pool_maps(a1));
		} else if (!strcmp(cmd, "forkread")) {
			int p[2], st;
			pid_t pid;
			sscanf(line, "%*s %ld %ld %ld %4095s", &x, &y, &z, a1);
			if (pipe(p))
				return 1;
			pid = fork();
			if (pid == 0) {
				int before = pool_maps(a1);
				ssize_t n = pread((int)x, buf, (size_t)z, y);
				dup2(p[1], 1);
				if (n < 0)
					printf("ERR");
				for (ssize_t i = 0; i < n; i++)
					printf("%02x", buf[i]);
				printf(" %d %d\n", before, pool_maps(a1));
				fflush(stdout);
				_exit(0);
			}
			close(p[1]);
			ssize_t n = read(p[0], a3, sizeof(a3) - 1);
			a3[n > 0 ? n : 0] = 0;
			close(p[0]);
			waitpid(pid, &st, 0);
			printf("%s", a3[0] ? a3 : "none\n");
		} else if (!strcmp(cmd, "threads")) {
			pthread_t th[64];
			struct thr t[64];
			int bad = 0;
			sscanf(line, "%*s %ld %ld %ld", &x, &y, &z);
			if (y > 64)
				y = 64;
			for (long i = 0; i < y; i++) {
				t[i] = (struct thr){ (int)x, (int)i, z + i * 4096, 0 };
				pthread_create(&th[i], NULL, thr_main, &t[i]);
			}
			for (long i = 0; i < y; i++) {
				pthread_join(th[i], NULL);
				bad |= t[i].bad;
			}
			printf("%s\n", bad ? "mismatch" : "ok");
		} else if (!strcmp(cmd, "sigread")) {
			struct sigaction sa;
			struct itimerval it = { { 0, 200 }, { 0, 200 } };
			unsigned char b[65536];
			long nsig, loops = 0;
			int bad = 0;
			sscanf(line, "%*s %ld %ld %ld %ld", &x, &y, &z, &nsig);
			sig_fd = (int)x;
			sig_off = y;
			sig_len = z > (long)sizeof(b) ? (long)sizeof(b) : z;
			if (pread(sig_fd, sig_want, (size_t)sig_len, sig_off) != sig_len) {
				printf("ERR %d\n", errno);
				continue;
			}
			memset(&sa, 0, sizeof(sa));
			sa.sa_handler = on_alarm;
			sa.sa_flags = SA_RESTART;
			sigaction(SIGALRM, &sa, NULL);
			sig_seen = 0;
			sig_bad = 0;
			setitimer(ITIMER_REAL, &it, NULL);
			while (sig_seen < nsig && loops < 50000000) {
				if (pread(sig_fd, b, (size_t)sig_len, sig_off) != sig_len ||
				    memcmp(b, sig_want, (size_t)sig_len))
					bad = 1;
				loops++;
			}
			memset(&it, 0, sizeof(it));
			setitimer(ITIMER_REAL, &it, NULL);
			printf("%s %ld\n", bad || sig_bad ? "mismatch" : "ok", (long)sig_seen);
		} else if (!strcmp(cmd, "mmap")) {
			char mode[8] = "r";
			int id = 0;
			sscanf(line, "%*s %ld %ld %7s", &x, &y, mode);
			while (id < 16 && maps_[id])
				id++;
			void *p = mmap(NULL, (size_t)y, PROT_READ | (mode[1] == 'w' ? PROT_WRITE : 0),
				       MAP_SHARED, (int)x, 0);
			if (p == MAP_FAILED || id == 16) {
				printf("ERR %d\n", errno);
				continue;
			}
			maps_[id] = p;
			maplen_[id] = (size_t)y;
			printf("%d\n", id);
		} else if (!strcmp(cmd, "mget") || !strcmp(cmd, "mput")) {
			volatile int wr = cmd[1] == 'p';
			size_t n = 0;
			sscanf(line, "%*s %ld %ld %65535s", &x, &y, a3);
			if (wr)
				n = from_hex(a3, buf);
			else
				n = (size_t)strtol(a3, NULL, 10);
			if (sigsetjmp(bus_jmp, 1)) {
				printf("SIGBUS\n");
				continue;
			}
			if (wr) {
				memcpy(maps_[x] + y, buf, n);
				printf("ok\n");
			} else {
				unsigned char tmp[65536];
				memcpy(tmp, maps_[x] + y, n);
				put_hex(tmp, (ssize_t)n);
			}
		} else if (!strcmp(cmd, "munmap")) {
			sscanf(line, "%*s %ld", &x);
			printf("%d\n", munmap(maps_[x], maplen_[x]));
			maps_[x] = NULL;
		} else if (!strcmp(cmd, "quit")) {
			break;
		} else {
			printf("?\n");
		}
	}
	return 0;
}

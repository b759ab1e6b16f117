/*
 * stallbench - does one client stall the others? Latency of small metadata
 * operations while another process writes or preallocates a big file, for
 * scripts/bench-stalls.
 *
 * Every sub-command prints "KEY VALUE" lines on stdout (latencies in
 * microseconds, rates in MiB/s, times in seconds); diagnostics go to stderr.
 * Exit status: 0 ok, 1 failure.
 *
 *   create DIR N               N times: create (open O_CREAT|O_EXCL) and close
 *                              a new empty file in DIR, each timed; then
 *                              unlinks them (untimed)
 *                              -> create_idle_{p50,p99,max,n}
 *   create-beside-write DIR FILE MIB
 *                              a child process writes MIB MiB to the new
 *                              FILE in 1 MiB writes (each one allocates);
 *                              meanwhile, until the child is done, creates
 *                              and closes new empty files in DIR, each timed;
 *                              then unlinks them and FILE (untimed)
 *                              -> create_busy_{p50,p99,max,n}, write_mibs
 *   stat-beside-fallocate FILE GIB STATPATH
 *                              a child process preallocates GIB GiB
 *                              (fallocate mode 0) to the new FILE;
 *                              meanwhile, until the child is done, stats
 *                              STATPATH (statx with AT_STATX_FORCE_SYNC, so
 *                              each one is a GETATTR the daemon answers)
 *                              every 200 us, each timed; unlinks FILE
 *                              -> stat_busy_{p50,p99,max,n}, fallocate_s
 *   stat-idle STATPATH N       N forced stats of STATPATH, each timed
 *                              -> stat_idle_{p50,p99,max,n}
 *
 * The measuring loop starts only once the child has begun its first
 * write() or fallocate() (it says so through a pipe), so every sample is
 * taken beside it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "samples.h"

#define MIB (1024L * 1024L)

static void report(const char *key, struct samples *s)
{
	if (!s->n) {
		printf("%s_p50 n/a\n%s_p99 n/a\n%s_max n/a\n%s_n 0\n", key, key, key, key);
		return;
	}
	samples_sort(s);
	printf("%s_p50 %.1f\n%s_p99 %.1f\n%s_max %.1f\n%s_n %zu\n", key, samples_pct(s, 50), key,
	       samples_pct(s, 99), key, s->v[s->n - 1], key, s->n);
}

static int create_one(const char *dir, long i, struct samples *s)
{
	char path[4096];
	double t0;
	int fd;

	snprintf(path, sizeof(path), "%s/c%08ld", dir, i);
	t0 = now();
	fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
	if (fd < 0) {
		fprintf(stderr, "stallbench: create %s: %s\n", path, strerror(errno));
		return -1;
	}
	close(fd);
	samples_add(s, (now() - t0) * 1e6);
	return 0;
}

static void unlink_all(const char *dir, long n)
{
	char path[4096];
	long i;

	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/c%08ld", dir, i);
		unlink(path);
	}
}

/* A child that tells the parent (one byte on @go) when its work has begun,
 * then does it; exits 0 on success. */
static pid_t start_child(int (*work)(void *arg, int go), void *arg, int *go_read)
{
	int p[2];
	pid_t pid;

	if (pipe(p)) {
		perror("stallbench: pipe");
		exit(1);
	}
	pid = fork();
	if (pid < 0) {
		perror("stallbench: fork");
		exit(1);
	}
	if (pid == 0) {
		close(p[0]);
		_exit(work(arg, p[1]) ? 1 : 0);
	}
	close(p[1]);
	*go_read = p[0];
	return pid;
}

/* waits for the child's "begun" byte; 0 if it came */
static int wait_go(int fd)
{
	char c;
	ssize_t n = read(fd, &c, 1);

	close(fd);
	return n == 1 ? 0 : -1;
}

static int child_done(pid_t pid, int *status)
{
	return waitpid(pid, status, WNOHANG) == pid;
}

struct writer {
	const char *file;
	long mib;
	double secs;
};

static int write_work(void *arg, int go)
{
	struct writer *w = arg;
	char *buf = malloc(MIB);
	int fd = open(w->file, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	long i;

	if (!buf || fd < 0) {
		fprintf(stderr, "stallbench: writer: %s: %s\n", w->file, strerror(errno));
		return -1;
	}
	memset(buf, 'w', MIB);
	for (i = 0; i < w->mib; i++) {
		ssize_t n = write(fd, buf, MIB);
		if (i == 0 && write(go, "g", 1) != 1)
			return -1;
		if (n != MIB) {
			fprintf(stderr, "stallbench: writer: write: %s\n", n < 0 ? strerror(errno) : "short");
			return -1;
		}
	}
	close(fd);
	close(go);
	return 0;
}

static int cmd_create(const char *dir, long n)
{
	struct samples s = { 0 };
	long i;

	for (i = 0; i < n; i++)
		if (create_one(dir, i, &s)) {
			unlink_all(dir, i);
			return 1;
		}
	unlink_all(dir, n);
	report("create_idle", &s);
	return 0;
}

static int cmd_create_beside_write(const char *dir, const char *file, long mib)
{
	struct writer w = { file, mib, 0 };
	struct samples s = { 0 };
	double t0 = now(), t1;
	int go, status = 0, rc = 0;
	long i = 0;
	pid_t pid = start_child(write_work, &w, &go);

	if (wait_go(go)) {
		waitpid(pid, &status, 0);
		fprintf(stderr, "stallbench: the writer failed to start\n");
		return 1;
	}
	while (!child_done(pid, &status)) {
		if (create_one(dir, i, &s)) {
			rc = 1;
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			break;
		}
		i++;
	}
	t1 = now();
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "stallbench: the writer failed\n");
		rc = 1;
	}
	unlink_all(dir, i);
	unlink(file);
	report("create_busy", &s);
	printf("write_mibs %.1f\n", (double)mib / (t1 - t0));
	return rc;
}

struct falloc {
	const char *file;
	long gib;
};

static int falloc_work(void *arg, int go)
{
	struct falloc *f = arg;
	int fd = open(f->file, O_CREAT | O_TRUNC | O_WRONLY, 0644);

	if (fd < 0) {
		fprintf(stderr, "stallbench: %s: %s\n", f->file, strerror(errno));
		return -1;
	}
	if (write(go, "g", 1) != 1)
		return -1;
	close(go);
	if (fallocate(fd, 0, 0, f->gib << 30)) {
		fprintf(stderr, "stallbench: fallocate %ld GiB: %s\n", f->gib, strerror(errno));
		return -1;
	}
	close(fd);
	return 0;
}

static int stat_one(const char *path, struct samples *s)
{
	struct statx stx;
	double t0 = now();

	if (statx(AT_FDCWD, path, AT_STATX_FORCE_SYNC, STATX_BASIC_STATS, &stx)) {
		fprintf(stderr, "stallbench: statx %s: %s\n", path, strerror(errno));
		return -1;
	}
	samples_add(s, (now() - t0) * 1e6);
	return 0;
}

static void pause_us(long us)
{
	struct timespec ts = { 0, us * 1000 };

	nanosleep(&ts, NULL);
}

static int cmd_stat_beside_fallocate(const char *file, long gib, const char *statpath)
{
	struct falloc f = { file, gib };
	struct samples s = { 0 };
	double t0 = now(), t1;
	int go, status = 0, rc = 0;
	pid_t pid = start_child(falloc_work, &f, &go);

	if (wait_go(go)) {
		waitpid(pid, &status, 0);
		fprintf(stderr, "stallbench: the fallocate child failed to start\n");
		return 1;
	}
	/* the child is about to call fallocate(): give the request a moment
	 * to reach the daemon, then sample until it returns */
	pause_us(2000);
	while (!child_done(pid, &status)) {
		if (stat_one(statpath, &s)) {
			rc = 1;
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			break;
		}
		pause_us(200);
	}
	t1 = now();
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "stallbench: the fallocate child failed\n");
		rc = 1;
	}
	unlink(file);
	report("stat_busy", &s);
	printf("fallocate_s %.2f\n", t1 - t0);
	return rc;
}

static int cmd_stat_idle(const char *statpath, long n)
{
	struct samples s = { 0 };
	long i;

	for (i = 0; i < n; i++) {
		if (stat_one(statpath, &s))
			return 1;
		pause_us(200);
	}
	report("stat_idle", &s);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: stallbench create DIR N\n"
			"       stallbench create-beside-write DIR FILE MIB\n"
			"       stallbench stat-beside-fallocate FILE GIB STATPATH\n"
			"       stallbench stat-idle STATPATH N\n");
	exit(1);
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "create"))
		return cmd_create(argv[2], atol(argv[3]));
	if (argc == 5 && !strcmp(argv[1], "create-beside-write"))
		return cmd_create_beside_write(argv[2], argv[3], atol(argv[4]));
	if (argc == 5 && !strcmp(argv[1], "stat-beside-fallocate"))
		return cmd_stat_beside_fallocate(argv[2], atol(argv[3]), argv[4]);
	if (argc == 4 && !strcmp(argv[1], "stat-idle"))
		return cmd_stat_idle(argv[2], atol(argv[3]));
	usage();
}

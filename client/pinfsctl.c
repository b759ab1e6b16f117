/* SPDX-License-Identifier: MIT */
/*
 * client/pinfsctl.c -- the pinfs control tool: take and hold a pin, end one,
 * list every pin of a mount (like /proc/locks), get or set truncate
 * policies, show counters, follow lease events. Everything goes through the
 * ioctls of include/pinfs/abi.h; nothing here maps pool memory.
 *
 * Ioctls that concern the whole mount are issued on the mount root. FUSE
 * passes ioctls on directories only when the daemon accepts them
 * (FUSE_CAP_IOCTL_DIR); if a FUSE mount answers ENOTTY there we say so once
 * and use any regular file of the mount instead.
 *
 * Exit: 0 success, 1 failure (with a message; also events --timeout
 * expiring before --count events came), 2 usage error, 3 (pin) the held
 * lease was revoked.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "pinfs/abi.h"
#include "pinfs/client.h"
#include "common/mountinfo.h"

#define EXIT_OK 0
#define EXIT_ERR 1
#define EXIT_USAGE 2
#define EXIT_REVOKED 3

#ifndef FUSE_SUPER_MAGIC
#define FUSE_SUPER_MAGIC 0x65735546
#endif

static const char *const policy_names[] = {
	[PINFS_POLICY_DEFAULT] = "default", [PINFS_POLICY_FAIL] = "fail",
	[PINFS_POLICY_REVOKE] = "revoke",   [PINFS_POLICY_WAIT] = "wait",
	[PINFS_POLICY_BREAK] = "break",
	[PINFS_POLICY_NOLONGTERM] = "refuse_longterm",
};
#define NPOLICIES (sizeof(policy_names) / sizeof(policy_names[0]))

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pinfsctl COMMAND ...\n"
		"  pin [--write] [--revocable] [--cooperative] [--on-close] [--short]\n"
		"      [--hold SECONDS]\n"
		"      FILE OFFSET LENGTH   pin a range, print \"lease N\", hold it until SECONDS\n"
		"                           pass (default: forever) or SIGINT/SIGTERM, then unpin;\n"
		"                           --cooperative: unpin on a lease-break notice\n"
		"  unpin FILE LEASE         end a lease (its holder or root)\n"
		"  pins [--json] [--noheadings] PATH\n"
		"                           every pin of the mount holding PATH, one a line\n"
		"                           under a header, as lslocks does:\n"
		"                           LEASE FILE START END SIZE PID COMMAND FLAGS STATE AGE\n"
		"                           START and END in bytes, END is exclusive; SIZE\n"
		"                           human-readable; FLAGS R or W, then ,revocable\n"
		"                           ,on-close ,short ,layout (pinfs-dax); AGE in\n"
		"                           seconds; --noheadings: no header;\n"
		"                           --json: {\"pins\": [{\"lease\", \"path\", \"start\",\n"
		"                           \"end\", \"size\", \"pid\", \"command\", \"flags\": [...],\n"
		"                           \"state\", \"age\"}, ...]}\n"
		"  policy PATH [POLICY]     get/set the truncate policy: of the mount if PATH is\n"
		"                           its root, else of the file; POLICY is one of\n"
		"                           fail, revoke, wait, break, refuse_longterm,\n"
		"                           default (files only)\n"
		"  stats [--json] [--ops] PATH  counters of the file, or of the mount for a\n"
		"                           directory (--json: one object {\"scope\", \"path\",\n"
		"                           NAME: N, ...}); --ops: the requests the kernel sent\n"
		"                           the daemon of PATH's mount since it mounted, per\n"
		"                           FUSE opcode (with --json too: one object\n"
		"                           {\"scope\": \"ops\", \"path\", NAME: N, ..., \"total\"})\n"
		"  scrub PATH               verify the checksums of every clean block of the file,\n"
		"                           or of every file for a directory (mkfs --checksums);\n"
		"                           exit 1 if a block is bad\n"
		"  events [--json] [--count N] [--timeout SECONDS] [--new] MOUNTPOINT\n"
		"                           print lease events as they happen (starting with those\n"
		"                           the daemon still remembers, unless --new); stop after N;\n"
		"                           give up after SECONDS: exit 1 if N events had not come\n"
		"                           (0 without --count); --json: one JSON object a line\n"
		"  status [--json] MOUNTPOINT\n"
		"                           the daemon serving the mount: its pid, the pool, the\n"
		"                           options in effect, the transport, the uptime and the\n"
		"                           processes holding pins (root sees all; a user sees\n"
		"                           their own, and how many of other users' there are)\n"
		"  --help, --version        print this help, or the version, and exit\n"
		"Sizes take a k/m/g/t suffix (powers of 1024).\n"
		"Exit status: 0 success, 1 failure (or events --timeout before N events), 2 usage\n"
		"error, 3 (pin) the lease was revoked.\n");
}

/* One line saying what is wrong (@fmt, or nothing if NULL), then where to
 * look, as coreutils do; returns the usage exit status. */
static int usage_error(const char *fmt, ...)
{
	va_list ap;

	if (fmt) {
		fputs("pinfsctl: ", stderr);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	fprintf(stderr, "Try 'pinfsctl --help'.\n");
	return EXIT_USAGE;
}

/* getopt_long's complaint, in our format (opterr is 0). */
static int usage_bad_option(const char *cmd, char **argv)
{
	if (optopt && optopt != '?' && optopt < 256 && argv[optind - 1][1] != '-')
		return usage_error("%s: unknown option '-%c'", cmd, optopt);
	return usage_error("%s: unknown option or missing argument '%s'", cmd, argv[optind - 1]);
}

/* The operand count check of a subcommand. */
static int usage_operands(const char *cmd, int have, int want, const char *what)
{
	if (have < want)
		return usage_error("%s: missing %s", cmd, what);
	return usage_error("%s: too many arguments", cmd);
}

static int policy_parse(const char *s, uint32_t *out)
{
	for (uint32_t i = 0; i < NPOLICIES; i++) {
		if (!strcmp(s, policy_names[i])) {
			*out = i;
			return 0;
		}
	}
	return -EINVAL;
}

static const char *policy_name(uint32_t p)
{
	return p < NPOLICIES ? policy_names[p] : "unknown";
}

/* What to say about an ioctl failure. */
static const char *ioctl_strerror(int err)
{
	if (err == ENOTTY)
		return "not a pinfs mount, or the daemon does not serve this ioctl (ENOTTY)";
	return strerror(err);
}

/* ---- the mount a path is on ------------------------------------------- */

/* Is @mp the path @p or one of its ancestors? */
static bool path_under(const char *p, const char *mp)
{
	size_t n = strlen(mp);

	if (!strcmp(mp, "/"))
		return true;
	return !strncmp(p, mp, n) && (p[n] == '\0' || p[n] == '/');
}

/*
 * Finds the mount point of the file system holding @path: the longest mount
 * point in /proc/self/mountinfo with the same device that contains the
 * path's real location. 0, -ENOENT, or -errno.
 */
static int mount_root(const char *path, char *out, size_t size)
{
	char real[PATH_MAX], *line = NULL, mp[PATH_MAX + 1];
	size_t cap = 0, best = 0;
	struct stat st;
	FILE *f;

	if (stat(path, &st) < 0 || !realpath(path, real))
		return -errno;
	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		unsigned maj, min;
		char fmt[64];

		snprintf(fmt, sizeof(fmt), "%%*d %%*d %%u:%%u %%*s %%%ds", PATH_MAX);
		if (sscanf(line, fmt, &maj, &min, mp) != 3)
			continue;
		mountinfo_unescape(mp);
		if (makedev(maj, min) != st.st_dev || !path_under(real, mp))
			continue;
		if (strlen(mp) >= best && strlen(mp) < size) {
			best = strlen(mp);
			strcpy(out, mp);
		}
	}
	free(line);
	fclose(f);
	return best ? 0 : -ENOENT;
}

/* ---- walking the mount (nftw has no context pointer) -------------------- */

static struct {
	dev_t dev;
	const uint64_t *ino; /* wanted inode numbers */
	char **path;	     /* found paths, parallel to ino[] */
	size_t n, left;
	char *first_reg;     /* or: the first regular file */
} walk;

static int ino_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Index of @ino in the sorted array ino[0..n), or -1. */
static long ino_find(const uint64_t *ino, size_t n, uint64_t key)
{
	const uint64_t *p = n ? bsearch(&key, ino, n, sizeof(*ino), ino_cmp) : NULL;

	return p ? p - ino : -1;
}

static int walk_resolve(const char *fpath, const struct stat *sb, int type, struct FTW *ftw)
{
	long i;

	(void)type;
	(void)ftw;
	if (sb->st_dev != walk.dev)
		return 0;
	i = ino_find(walk.ino, walk.n, (uint64_t)sb->st_ino);
	if (i >= 0 && !walk.path[i]) {
		walk.path[i] = strdup(fpath);
		if (walk.path[i] && --walk.left == 0)
			return 1; /* all found: stop */
	}
	return 0;
}

static int walk_first_reg(const char *fpath, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)ftw;
	if (type != FTW_F || !S_ISREG(sb->st_mode) || sb->st_dev != walk.dev)
		return 0;
	walk.first_reg = strdup(fpath);
	return 1;
}

/* Looks up a path for each of @n inode numbers (sorted, distinct) under
 * mount point @mp, stopping once all are found; path[i] stays NULL for
 * those not found (unlinked files). */
static void inodes_resolve(const char *mp, const uint64_t *ino, char **path, size_t n)
{
	struct stat st;

	if (n == 0 || stat(mp, &st) < 0)
		return;
	walk.dev = st.st_dev;
	walk.ino = ino;
	walk.path = path;
	walk.n = walk.left = n;
	nftw(mp, walk_resolve, 32, FTW_PHYS | FTW_MOUNT);
}

/*
 * ioctl(*fd, cmd, arg); when *fd is a directory and the daemon refuses
 * directory ioctls (ENOTTY), says so once and retries on the first regular
 * file of the mount holding @path, which then replaces *fd. 0 or -errno.
 */
static int ctl_ioctl(const char *path, int *fd, unsigned long cmd, void *arg)
{
	static bool warned;
	char mp[PATH_MAX];
	struct statfs sfs;
	struct stat st;
	int nfd, err;

	if (ioctl(*fd, cmd, arg) == 0)
		return 0;
	err = errno;
	if (err != ENOTTY || fstat(*fd, &st) < 0 || !S_ISDIR(st.st_mode) ||
	    fstatfs(*fd, &sfs) < 0 || sfs.f_type != FUSE_SUPER_MAGIC)
		return -err;
	if (!warned) {
		fprintf(stderr,
			"pinfsctl: %s: ioctl on a directory answered ENOTTY (daemon without "
			"FUSE_CAP_IOCTL_DIR?); using a regular file of the mount\n",
			path);
		warned = true;
	}
	if (mount_root(path, mp, sizeof(mp)) < 0)
		return -ENOTTY;
	walk.dev = st.st_dev;
	walk.first_reg = NULL;
	nftw(mp, walk_first_reg, 32, FTW_PHYS | FTW_MOUNT);
	if (!walk.first_reg) {
		fprintf(stderr, "pinfsctl: %s: no regular file on the mount to issue it on\n", path);
		return -ENOTTY;
	}
	nfd = open(walk.first_reg, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	err = errno;
	free(walk.first_reg);
	walk.first_reg = NULL;
	if (nfd < 0)
		return -err;
	close(*fd);
	*fd = nfd;
	if (ioctl(*fd, cmd, arg) < 0)
		return -errno;
	return 0;
}

static int open_path(const char *cmd, const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);

	if (fd < 0)
		fprintf(stderr, "pinfsctl: %s: %s: %s\n", cmd, path, strerror(errno));
	return fd;
}

/* ---- pin ---------------------------------------------------------------- */

static int unpin(int fd, uint64_t id)
{
	struct pinfs_unpin u = { .lease_id = id };

	if (ioctl(fd, PINFS_IOC_UNPIN, &u) < 0)
		return -errno;
	return 0;
}

/*
 * Holds the lease until the time passes or a signal ends it. The signals are
 * blocked and taken synchronously with sigtimedwait(): no handler, no race
 * between checking and sleeping.
 */
static int hold(int fd, uint64_t id, double seconds, bool cooperative, const sigset_t *set)
{
	struct timespec end, now;
	int rc;

	clock_gettime(CLOCK_MONOTONIC, &end);
	if (seconds > 0) {
		time_t whole = (time_t)seconds;
		end.tv_sec += whole;
		end.tv_nsec += (long)((seconds - (double)whole) * 1e9);
		if (end.tv_nsec >= 1000000000L) {
			end.tv_sec++;
			end.tv_nsec -= 1000000000L;
		}
	}
	for (;;) {
		struct timespec left, *timeout = NULL;
		siginfo_t si;
		int sig;

		if (seconds > 0) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			left.tv_sec = end.tv_sec - now.tv_sec;
			left.tv_nsec = end.tv_nsec - now.tv_nsec;
			if (left.tv_nsec < 0) {
				left.tv_sec--;
				left.tv_nsec += 1000000000L;
			}
			if (left.tv_sec < 0)
				break;
			timeout = &left;
		}
		sig = sigtimedwait(set, &si, timeout);
		if (sig < 0 && errno == EAGAIN)
			break;
		if (sig < 0)
			continue; /* EINTR: another signal's handler ran */
		if (sig == SIGINT || sig == SIGTERM)
			break;
		if (si.si_code != SI_QUEUE || (uint64_t)(uintptr_t)si.si_value.sival_ptr != id) {
			fprintf(stderr, "pinfsctl: pin: ignoring %s (code %d) not about lease %" PRIu64 "\n",
				sig == SIGBUS ? "SIGBUS" : "SIGIO", si.si_code, id);
			continue;
		}
		if (sig == SIGBUS) {
			printf("lease %" PRIu64 " revoked\n", id);
			fflush(stdout);
			/* Acknowledge, so the quarantined blocks are freed now. */
			rc = unpin(fd, id);
			if (rc < 0 && rc != -ENOENT && rc != -EINVAL)
				fprintf(stderr, "pinfsctl: pin: unpin of revoked lease %" PRIu64 ": %s\n",
					id, strerror(-rc));
			return EXIT_REVOKED;
		}
		/* SIGIO: a lease-break notice */
		if (cooperative) {
			printf("lease %" PRIu64 " break notice, unpinning\n", id);
			fflush(stdout);
			break;
		}
		printf("lease %" PRIu64 " break notice, holding on\n", id);
		fflush(stdout);
	}
	rc = unpin(fd, id);
	if (rc == -ENOENT) {
		/* root's "pinfsctl unpin" ended it under us: no signal says so */
		fprintf(stderr, "pinfsctl: pin: lease %" PRIu64 " was already ended by another "
				"process (pinfsctl unpin)\n", id);
		return EXIT_ERR;
	}
	if (rc < 0) {
		fprintf(stderr, "pinfsctl: unpin %" PRIu64 ": %s\n", id, ioctl_strerror(-rc));
		return EXIT_ERR;
	}
	return EXIT_OK;
}

static int cmd_pin(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "write", no_argument, NULL, 'w' },
		{ "revocable", no_argument, NULL, 'r' },
		{ "cooperative", no_argument, NULL, 'c' },
		{ "on-close", no_argument, NULL, 'o' },
		{ "short", no_argument, NULL, 's' },
		{ "hold", required_argument, NULL, 'H' },
		{ NULL, 0, NULL, 0 },
	};
	struct pinfs_pin *p;
	uint32_t flags = 0;
	bool cooperative = false;
	double seconds = 0;
	uint64_t off, len;
	sigset_t set;
	char *end;
	int opt, fd, rc;

	while ((opt = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (opt) {
		case 'w': flags |= PINFS_PIN_WRITE; break;
		case 'r': flags |= PINFS_PIN_REVOCABLE; break;
		case 'o': flags |= PINFS_PIN_ON_CLOSE; break;
		case 's': flags |= PINFS_PIN_SHORT; break;
		case 'c': cooperative = true; break;
		case 'H':
			errno = 0;
			seconds = strtod(optarg, &end);
			if (errno || end == optarg || *end || !isfinite(seconds) || seconds <= 0) {
				return usage_error("pin: --hold '%s' is not a positive number of seconds",
						   optarg);
			}
			break;
		default: return usage_bad_option("pin", argv);
		}
	}
	if (argc - optind != 3)
		return usage_operands("pin", argc - optind, 3, "FILE OFFSET LENGTH");
	if (pinfs_parse_size(argv[optind + 1], &off) < 0)
		return usage_error("pin: '%s' is not a size (OFFSET)", argv[optind + 1]);
	if (pinfs_parse_size(argv[optind + 2], &len) < 0)
		return usage_error("pin: '%s' is not a size (LENGTH)", argv[optind + 2]);

	/* Blocked before pinning, so that no notice can be lost. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGIO);
	sigaddset(&set, SIGBUS);
	sigprocmask(SIG_BLOCK, &set, NULL);

	fd = open_path("pin", argv[optind], (flags & PINFS_PIN_WRITE) ? O_RDWR : O_RDONLY);
	if (fd < 0)
		return EXIT_ERR;
	p = calloc(1, sizeof(*p));
	if (!p) {
		fprintf(stderr, "pinfsctl: pin: out of memory\n");
		return EXIT_ERR;
	}
	p->offset = off;
	p->length = len;
	/* it reports break notices: it asks for them, as SIGIO (blocked
	 * above and read with sigtimedwait) */
	p->flags = flags | PINFS_PIN_NOTIFY_SIGNAL;
	p->notify_sig = SIGIO;
	if (ioctl(fd, PINFS_IOC_PIN, p) < 0) {
		char why[8192];
		int err = errno;
		struct stat st;

		if (err == ENOTTY)
			snprintf(why, sizeof(why), "%s", ioctl_strerror(err));
		else if (err == EINVAL && fstat(fd, &st) == 0 && (!len || off + len < off ||
								 off + len > (uint64_t)st.st_size))
			/* the one EINVAL a user meets: a pin covers file data */
			snprintf(why, sizeof(why), "%s: the range %s the file's %jd bytes",
				 strerror(err), len ? "ends past" : "is empty; a pin covers some of",
				 (intmax_t)st.st_size);
		else
			pinfs_pin_strerror(fd, err, why, sizeof(why));
		fprintf(stderr, "pinfsctl: pin %s [%" PRIu64 ", +%" PRIu64 "): %s\n", argv[optind],
			off, len, why);
		free(p);
		close(fd);
		return EXIT_ERR;
	}
	printf("lease %" PRIu64 "\n", p->lease_id);
	fflush(stdout);
	rc = hold(fd, p->lease_id, seconds, cooperative, &set);
	free(p);
	close(fd);
	return rc;
}

/* ---- unpin -------------------------------------------------------------- */

static int cmd_unpin(int argc, char **argv)
{
	uint64_t id;
	char *end;
	int fd, rc;

	if (argc != 3)
		return usage_operands("unpin", argc - 1, 2, "FILE LEASE");
	errno = 0;
	id = strtoull(argv[2], &end, 10);
	if (errno || end == argv[2] || *end || argv[2][0] == '-' || id == 0)
		return usage_error("unpin: '%s' is not a lease id", argv[2]);
	fd = open_path("unpin", argv[1], O_RDONLY | O_NONBLOCK);
	if (fd < 0)
		return EXIT_ERR;
	rc = unpin(fd, id);
	close(fd);
	if (rc == -ENOENT) {
		/* not the file's ENOENT: the file is there, the lease is not */
		fprintf(stderr, "pinfsctl: unpin %s %" PRIu64 ": no such lease (ENOENT): it ended "
				"already or never was; 'pinfsctl pins %s' lists the mount's\n",
			argv[1], id, argv[1]);
		return EXIT_ERR;
	}
	if (rc == -EPERM) {
		fprintf(stderr, "pinfsctl: unpin %s %" PRIu64 ": lease %" PRIu64 " is another "
				"process's: only its holder or root may end it (EPERM)\n",
			argv[1], id, id);
		return EXIT_ERR;
	}
	if (rc < 0) {
		fprintf(stderr, "pinfsctl: unpin %s %" PRIu64 ": %s\n", argv[1], id,
			ioctl_strerror(-rc));
		return EXIT_ERR;
	}
	return EXIT_OK;
}

/* ---- pins --------------------------------------------------------------- */

/* Prints @s with whitespace, backslashes and control characters escaped as
 * \ooo, as /proc/mounts does, so that every line splits on spaces. */
static void print_escaped(const char *s)
{
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch <= ' ' || ch == '\\' || ch == 0x7f)
			printf("\\%03o", ch);
		else
			putchar(ch);
	}
}

static void print_comm(const char comm[16])
{
	char c[17];

	memcpy(c, comm, 16);
	c[16] = '\0';
	if (!c[0])
		strcpy(c, "?");
	print_escaped(c);
}

/* "START-END" (END inclusive), or "START-EOF", as /proc/locks does. */
static void print_range(uint64_t off, uint64_t len)
{
	if (len == 0 || len == UINT64_MAX || off + len < off)
		printf("%" PRIu64 "-EOF", off);
	else
		printf("%" PRIu64 "-%" PRIu64, off, off + len - 1);
}

static const char *state_name(uint32_t s)
{
	switch (s) {
	case PINFS_LEASE_ACTIVE: return "active";
	case PINFS_LEASE_BREAKING: return "breaking";
	case PINFS_LEASE_REVOKED: return "revoked";
	default: return "unknown";
	}
}

/* @len bytes as lslocks writes sizes: 1024-based, one letter, one decimal
 * where it matters (512B, 4K, 1.5M, 64K). */
static void human_size(uint64_t len, char *out, size_t size)
{
	static const char units[] = "BKMGTPE";
	uint64_t v = len, rem = 0;
	int u = 0;

	while (v >= 1024 && u < 6) {
		rem = v % 1024;
		v /= 1024;
		u++;
	}
	/* one decimal, rounded, as util-linux's size_to_human_string */
	rem = (rem * 10 + 512) / 1024;
	if (rem >= 10) {
		v++;
		rem = 0;
	}
	if (u && rem)
		snprintf(out, size, "%" PRIu64 ".%" PRIu64 "%c", v, rem, units[u]);
	else
		snprintf(out, size, "%" PRIu64 "%c", v, units[u]);
}

/* @s as the body of a JSON string. */
static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20 || ch == 0x7f)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

/* Is the pin unbounded (to the end of the file, whatever it becomes)? */
static bool range_to_eof(uint64_t off, uint64_t len)
{
	return len == 0 || len == UINT64_MAX || off + len < off;
}

/* The table of `pinfsctl pins`: one row of strings per pin, so the
 * columns can be as wide as their widest cell. */
enum { COL_LEASE, COL_FILE, COL_START, COL_END, COL_SIZE, COL_PID, COL_COMMAND, COL_FLAGS,
       COL_STATE, COL_AGE, NCOLS };
static const char *const col_names[NCOLS] = { "LEASE", "FILE", "START", "END", "SIZE",
					      "PID", "COMMAND", "FLAGS", "STATE", "AGE" };
/* numbers are right-aligned, words left-aligned */
static const bool col_right[NCOLS] = { [COL_LEASE] = true, [COL_START] = true, [COL_END] = true,
				       [COL_SIZE] = true, [COL_PID] = true, [COL_AGE] = true };

/* @s escaped as /proc/mounts does (see print_escaped) into a new string. */
static char *escaped_dup(const char *s)
{
	char *buf = NULL, *out;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch <= ' ' || ch == '\\' || ch == 0x7f)
			fprintf(f, "\\%03o", ch);
		else
			fputc(ch, f);
	}
	if (fclose(f) != 0)
		return NULL;
	out = buf;
	return out;
}

static void comm_copy(const char comm[16], char out[17])
{
	memcpy(out, comm, 16);
	out[16] = '\0';
	if (!out[0])
		strcpy(out, "?");
}

static void pins_print_json(const struct pinfs_lease_info *all, size_t n, char *const *path_of)
{
	printf("{\"pins\": [");
	for (size_t i = 0; i < n; i++) {
		const struct pinfs_lease_info *e = &all[i];
		bool eof = range_to_eof(e->offset, e->length);
		char comm[17], ino[32];
		const char *sep = "";

		comm_copy(e->comm, comm);
		printf("%s\n  {\"lease\": %" PRIu64 ", \"path\": ", i ? "," : "", e->lease_id);
		if (path_of[i]) {
			json_string(path_of[i]);
		} else {
			snprintf(ino, sizeof(ino), "ino:%" PRIu64, e->ino);
			json_string(ino);
		}
		printf(", \"start\": %" PRIu64, e->offset);
		if (eof)
			printf(", \"end\": null, \"size\": null");
		else
			printf(", \"end\": %" PRIu64 ", \"size\": %" PRIu64, e->offset + e->length,
			       e->length);
		printf(", \"pid\": %u, \"command\": ", e->holder_pid);
		json_string(comm);
		printf(", \"flags\": [");
		if (e->flags & PINFS_PIN_WRITE) {
			printf("\"write\"");
			sep = ", ";
		} else {
			printf("\"read\"");
			sep = ", ";
		}
		if (e->flags & PINFS_PIN_REVOCABLE)
			printf("%s\"revocable\"", sep);
		if (e->flags & PINFS_PIN_ON_CLOSE)
			printf("%s\"on-close\"", sep);
		if (e->flags & PINFS_PIN_SHORT)
			printf("%s\"short\"", sep);
		if (e->flags & PINFS_PIN_LAYOUT)
			printf("%s\"layout\"", sep);
		printf("], \"state\": \"%s\", \"age\": %" PRIu64 "}", state_name(e->state),
		       e->age_ns / 1000000000u);
	}
	printf("%s]}\n", n ? "\n" : "");
}

/* The table; 0 or -ENOMEM. */
static int pins_print_table(const struct pinfs_lease_info *all, size_t n, char *const *path_of,
			    bool headings)
{
	char *(*cell)[NCOLS] = calloc(n ? n : 1, sizeof(*cell));
	size_t width[NCOLS];
	int rc = 0;

	if (!cell)
		return -ENOMEM;
	for (int c = 0; c < NCOLS; c++)
		width[c] = headings ? strlen(col_names[c]) : 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		const struct pinfs_lease_info *e = &all[i];
		bool eof = range_to_eof(e->offset, e->length);
		char comm[17], size[32], ino[32];

		comm_copy(e->comm, comm);
		if (eof)
			strcpy(size, "-");
		else
			human_size(e->length, size, sizeof(size));
		snprintf(ino, sizeof(ino), "ino:%" PRIu64, e->ino);
		if (asprintf(&cell[i][COL_LEASE], "%" PRIu64, e->lease_id) < 0 ||
		    !(cell[i][COL_FILE] = path_of[i] ? escaped_dup(path_of[i]) : strdup(ino)) ||
		    asprintf(&cell[i][COL_START], "%" PRIu64, e->offset) < 0 ||
		    (eof ? !(cell[i][COL_END] = strdup("EOF")) :
			   asprintf(&cell[i][COL_END], "%" PRIu64, e->offset + e->length) < 0) ||
		    !(cell[i][COL_SIZE] = strdup(size)) ||
		    asprintf(&cell[i][COL_PID], "%u", e->holder_pid) < 0 ||
		    !(cell[i][COL_COMMAND] = escaped_dup(comm)) ||
		    asprintf(&cell[i][COL_FLAGS], "%s%s%s%s%s", (e->flags & PINFS_PIN_WRITE) ? "W" : "R",
			     (e->flags & PINFS_PIN_REVOCABLE) ? ",revocable" : "",
			     (e->flags & PINFS_PIN_ON_CLOSE) ? ",on-close" : "",
			     (e->flags & PINFS_PIN_SHORT) ? ",short" : "",
			     (e->flags & PINFS_PIN_LAYOUT) ? ",layout" : "") < 0 ||
		    !(cell[i][COL_STATE] = strdup(state_name(e->state))) ||
		    asprintf(&cell[i][COL_AGE], "%" PRIu64, e->age_ns / 1000000000u) < 0) {
			rc = -ENOMEM;
			break;
		}
		for (int c = 0; c < NCOLS; c++)
			if (strlen(cell[i][c]) > width[c])
				width[c] = strlen(cell[i][c]);
	}
	if (rc == 0) {
		if (headings)
			for (int c = 0; c < NCOLS; c++)
				printf("%s%*s%s", c ? " " : "", col_right[c] ? (int)width[c] : -(int)width[c],
				       col_names[c], c == NCOLS - 1 ? "\n" : "");
		for (size_t i = 0; i < n; i++)
			for (int c = 0; c < NCOLS; c++)
				printf("%s%*s%s", c ? " " : "",
				       col_right[c] ? (int)width[c] : c == NCOLS - 1 ? 0 : -(int)width[c],
				       cell[i][c], c == NCOLS - 1 ? "\n" : "");
	}
	for (size_t i = 0; i < n; i++)
		for (int c = 0; c < NCOLS; c++)
			free(cell[i][c]);
	free(cell);
	return rc;
}

static int cmd_pins(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "noheadings", no_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 },
	};
	struct pinfs_list *l = NULL;
	struct pinfs_lease_info *all = NULL;
	uint64_t *inos = NULL;
	char **paths = NULL, **path_of = NULL, mp[PATH_MAX];
	size_t n = 0, cap = 0, ninos = 0;
	bool json = false, headings = true;
	const char *path;
	int opt, fd = -1, rc, status = EXIT_ERR;

	while ((opt = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (opt) {
		case 'j': json = true; break;
		case 'n': headings = false; break;
		default: return usage_bad_option("pins", argv);
		}
	}
	if (argc - optind != 1)
		return usage_operands("pins", argc - optind, 1, "PATH");
	path = argv[optind];
	l = calloc(1, sizeof(*l));
	if (!l)
		goto oom;
	fd = open_path("pins", path, O_RDONLY | O_NONBLOCK);
	if (fd < 0)
		goto out;
	/* Page through; stop when a page comes back empty or the (possibly
	 * shrinking) total is reached. */
	for (uint32_t first = 0;; first += l->n) {
		memset(l, 0, sizeof(*l));
		l->first = first;
		l->all = 1;
		rc = ctl_ioctl(path, &fd, PINFS_IOC_LIST, l);
		if (rc < 0) {
			fprintf(stderr, "pinfsctl: pins %s: %s\n", path, ioctl_strerror(-rc));
			goto out;
		}
		if (l->n > PINFS_LIST_MAX) {
			fprintf(stderr, "pinfsctl: pins: daemon returned %u entries\n", l->n);
			goto out;
		}
		if (n + l->n > cap) {
			size_t ncap = cap ? cap * 2 : 64;
			void *na;
			while (ncap < n + l->n)
				ncap *= 2;
			na = realloc(all, ncap * sizeof(*all));
			if (!na)
				goto oom;
			all = na;
			cap = ncap;
		}
		/* Leases that come and go between pages shift the index: keep
		 * the list in strictly increasing id order, as it is served. */
		for (uint32_t i = 0; i < l->n; i++)
			if (n == 0 || l->l[i].lease_id > all[n - 1].lease_id)
				all[n++] = l->l[i];
		if (l->n == 0 || first + l->n >= l->total)
			break;
	}

	/* One walk of the mount resolves every inode. */
	inos = calloc(n ? n : 1, sizeof(*inos));
	paths = calloc(n ? n : 1, sizeof(*paths));
	if (!inos || !paths)
		goto oom;
	for (size_t i = 0; i < n; i++)
		inos[i] = all[i].ino;
	qsort(inos, n, sizeof(*inos), ino_cmp);
	for (size_t i = 0; i < n; i++)
		if (ninos == 0 || inos[i] != inos[ninos - 1])
			inos[ninos++] = inos[i];
	if (ninos && mount_root(path, mp, sizeof(mp)) == 0)
		inodes_resolve(mp, inos, paths, ninos);

	path_of = calloc(n ? n : 1, sizeof(*path_of));
	if (!path_of)
		goto oom;
	for (size_t i = 0; i < n; i++) {
		long j = ino_find(inos, ninos, all[i].ino);
		path_of[i] = j >= 0 ? paths[j] : NULL;
	}
	if (json)
		pins_print_json(all, n, path_of);
	else if (pins_print_table(all, n, path_of, headings) < 0)
		goto oom;
	status = EXIT_OK;
	goto out;
oom:
	fprintf(stderr, "pinfsctl: pins: out of memory\n");
out:
	if (paths)
		for (size_t j = 0; j < ninos; j++)
			free(paths[j]);
	free(paths);
	free(path_of);
	free(inos);
	free(all);
	free(l);
	if (fd >= 0)
		close(fd);
	return status;
}

/* ---- policy ------------------------------------------------------------- */

/* Is directory @path the root of its mount? */
static bool is_mount_root(const char *path)
{
	char mp[PATH_MAX], real[PATH_MAX];

	return mount_root(path, mp, sizeof(mp)) == 0 && realpath(path, real) && !strcmp(mp, real);
}

static int cmd_policy(int argc, char **argv)
{
	struct pinfs_policy pol = { 0 };
	struct stat st;
	uint32_t set = 0;
	int fd, rc;

	if (argc != 2 && argc != 3)
		return usage_operands("policy", argc - 1, 1, "PATH");
	if (argc == 3 && policy_parse(argv[2], &set) < 0)
		return usage_error("policy: unknown policy '%s' (fail, revoke, wait, break, default)",
				   argv[2]);
	if (stat(argv[1], &st) < 0) {
		fprintf(stderr, "pinfsctl: policy: %s: %s\n", argv[1], strerror(errno));
		return EXIT_ERR;
	}
	if (S_ISDIR(st.st_mode)) {
		if (!is_mount_root(argv[1])) {
			fprintf(stderr, "pinfsctl: policy: %s: a directory but not the mount root; "
					"policies belong to the mount or to regular files\n", argv[1]);
			return EXIT_ERR;
		}
		pol.mount = 1;
	} else if (!S_ISREG(st.st_mode)) {
		fprintf(stderr, "pinfsctl: policy: %s: not a regular file or the mount root\n",
			argv[1]);
		return EXIT_ERR;
	}
	fd = open_path("policy", argv[1], O_RDONLY | O_NONBLOCK);
	if (fd < 0)
		return EXIT_ERR;
	if (argc == 3) {
		pol.policy = set;
		rc = ctl_ioctl(argv[1], &fd, PINFS_IOC_SET_POLICY, &pol);
	} else {
		rc = ctl_ioctl(argv[1], &fd, PINFS_IOC_GET_POLICY, &pol);
	}
	close(fd);
	if (rc < 0) {
		fprintf(stderr, "pinfsctl: policy %s%s%s: %s\n", argv[1], argc == 3 ? " " : "",
			argc == 3 ? argv[2] : "", ioctl_strerror(-rc));
		return EXIT_ERR;
	}
	if (argc == 2)
		printf("%s\n", policy_name(pol.effective ? pol.effective : pol.policy));
	return EXIT_OK;
}

/* ---- stats -------------------------------------------------------------- */

/* pinfsctl stats --ops PATH: the requests the kernel sent the daemon since
 * the mount, per FUSE opcode (PINFS_IOC_OPS), one "NAME: COUNT" line each
 * for those sent at least once, then "total:"; with --json one object
 * {"scope": "ops", "path", NAME: COUNT..., "total"}. */
static int cmd_stats_ops(const char *path, bool json)
{
	static const char *const names[PINFS_OPS_MAX] = {
		[1] = "LOOKUP", [2] = "FORGET", [3] = "GETATTR", [4] = "SETATTR",
		[5] = "READLINK", [6] = "SYMLINK", [8] = "MKNOD", [9] = "MKDIR",
		[10] = "UNLINK", [11] = "RMDIR", [12] = "RENAME", [13] = "LINK",
		[14] = "OPEN", [15] = "READ", [16] = "WRITE", [17] = "STATFS",
		[18] = "RELEASE", [20] = "FSYNC", [21] = "SETXATTR", [22] = "GETXATTR",
		[23] = "LISTXATTR", [24] = "REMOVEXATTR", [25] = "FLUSH", [26] = "INIT",
		[27] = "OPENDIR", [28] = "READDIR", [29] = "RELEASEDIR", [30] = "FSYNCDIR",
		[31] = "GETLK", [32] = "SETLK", [33] = "SETLKW", [34] = "ACCESS",
		[35] = "CREATE", [36] = "INTERRUPT", [37] = "BMAP", [38] = "DESTROY",
		[39] = "IOCTL", [40] = "POLL", [41] = "NOTIFY_REPLY", [42] = "BATCH_FORGET",
		[43] = "FALLOCATE", [44] = "READDIRPLUS", [45] = "RENAME2", [46] = "LSEEK",
		[47] = "COPY_FILE_RANGE", [48] = "SETUPMAPPING", [49] = "REMOVEMAPPING",
		[50] = "SYNCFS", [51] = "TMPFILE", [52] = "STATX",
		[PINFS_OPS_MAX - 1] = "OTHER",
	};
	struct pinfs_ops o;
	uint64_t total = 0;
	int fd, rc;

	fd = open_path("stats", path, O_RDONLY | O_NONBLOCK);
	if (fd < 0)
		return EXIT_ERR;
	memset(&o, 0, sizeof(o));
	rc = ctl_ioctl(path, &fd, PINFS_IOC_OPS, &o);
	close(fd);
	if (rc < 0) {
		fprintf(stderr, "pinfsctl: stats --ops %s: %s\n", path, ioctl_strerror(-rc));
		return EXIT_ERR;
	}
	if (json) {
		printf("{\"scope\": \"ops\", \"path\": ");
		json_string(path);
	}
	for (int i = 0; i < PINFS_OPS_MAX; i++) {
		char name[24];

		if (!o.count[i])
			continue;
		if (names[i])
			snprintf(name, sizeof(name), "%s:", names[i]);
		else
			snprintf(name, sizeof(name), "OP%d:", i);
		if (json)
			printf(", \"%.*s\": %" PRIu64, (int)strlen(name) - 1, name, o.count[i]);
		else
			printf("%-20s%12" PRIu64 "\n", name, o.count[i]);
		total += o.count[i];
	}
	if (json)
		printf(", \"total\": %" PRIu64 "}\n", total);
	else
		printf("%-20s%12" PRIu64 "\n", "total:", total);
	return EXIT_OK;
}

static int cmd_stats(int argc, char **argv)
{
	static const struct {
		const char *name;
		size_t off;
	} counters[] = {
#define C(name, field) { name ":", offsetof(struct pinfs_counters, field) }
		C("pins", pins),
		C("pinned", pinned_blocks),
		C("revoked", leases_revoked),
		C("broken", leases_broken),
		C("refused", refusals),
		C("quarantined", quarantined_blocks),
		C("dirty", dirty_blocks),
		C("clean", clean_blocks),
		C("pinned_dirty", pinned_dirty_blocks),
		C("flushed_background", flushed_background),
		C("flushed_integrity", flushed_integrity),
		C("flushed_write", flushed_write),
		C("pinned_kept_dirty", pinned_kept_dirty),
		C("csum_failures", csum_failures),
		C("mmap_lost_bytes", mmap_lost_bytes),
		C("severed", severed_blocks),
		C("unsevered", unsevered_blocks),
		C("zeroed", zeroed_blocks),
		C("zeroing", zeroing_blocks),
		C("parked", parked),
		C("ring_requests", ring_requests),
#undef C
	};
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "ops", no_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	struct pinfs_stats s;
	const struct pinfs_counters *c;
	const char *path, *transport;
	bool json = false, ops = false;
	struct stat st;
	int fd, rc, opt;

	while ((opt = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (opt) {
		case 'j': json = true; break;
		case 'o': ops = true; break;
		default: return usage_bad_option("stats", argv);
		}
	}
	if (argc - optind != 1)
		return usage_operands("stats", argc - optind, 1, "PATH");
	path = argv[optind];
	if (ops)
		return cmd_stats_ops(path, json);
	fd = open_path("stats", path, O_RDONLY | O_NONBLOCK);
	if (fd < 0)
		return EXIT_ERR;
	if (fstat(fd, &st) < 0) {
		fprintf(stderr, "pinfsctl: stats: %s: %s\n", path, strerror(errno));
		close(fd);
		return EXIT_ERR;
	}
	memset(&s, 0, sizeof(s));
	rc = ctl_ioctl(path, &fd, PINFS_IOC_STATS, &s);
	close(fd);
	if (rc < 0) {
		fprintf(stderr, "pinfsctl: stats %s: %s\n", path, ioctl_strerror(-rc));
		return EXIT_ERR;
	}
	c = S_ISDIR(st.st_mode) ? &s.mount : &s.file;
	transport = c->transport == PINFS_TRANSPORT_IO_URING ? "io_uring"
		    : c->transport == PINFS_TRANSPORT_DEV_FUSE ? "/dev/fuse" : "unknown";
	if (json) {
		printf("{\"scope\": \"%s\", \"path\": ", S_ISDIR(st.st_mode) ? "mount" : "file");
		json_string(path);
	}
	for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
		/* counted for the mount only */
		if (!S_ISDIR(st.st_mode) &&
		    (counters[i].off == offsetof(struct pinfs_counters, mmap_lost_bytes) ||
		     counters[i].off == offsetof(struct pinfs_counters, severed_blocks) ||
		     counters[i].off == offsetof(struct pinfs_counters, unsevered_blocks) ||
		     counters[i].off == offsetof(struct pinfs_counters, zeroed_blocks) ||
		     counters[i].off == offsetof(struct pinfs_counters, zeroing_blocks) ||
		     counters[i].off == offsetof(struct pinfs_counters, parked) ||
		     counters[i].off == offsetof(struct pinfs_counters, ring_requests)))
			continue;
		if (json)
			printf(", \"%.*s\": %" PRIu64, (int)strlen(counters[i].name) - 1,
			       counters[i].name,
			       *(const uint64_t *)((const char *)c + counters[i].off));
		else
			printf("%-20s%12" PRIu64 "\n", counters[i].name,
			       *(const uint64_t *)((const char *)c + counters[i].off));
	}
	/* pins beside ordinary references (Kara's pin counting): an open
	 * file or a plain mapping never holds truncate back, a pin does */
	{
		const struct {
			const char *name;
			uint64_t v;
		} refs[] = {
			{ "long_pins", c->pins - c->short_pins },
			{ "short_pins", c->short_pins },
			{ "open_handles", c->open_handles },
			{ S_ISDIR(st.st_mode) ? "mapped_files" : "mapped", c->mapped_files },
			{ "short_expired", c->short_pins_expired },
			{ "longterm_refused", c->longterm_refused },
		};
		for (size_t k = 0; k < sizeof(refs) / sizeof(refs[0]); k++) {
			if (json)
				printf(", \"%s\": %" PRIu64, refs[k].name, refs[k].v);
			else {
				char label[32];

				snprintf(label, sizeof(label), "%s:", refs[k].name);
				printf("%-20s%12" PRIu64 "\n", label, refs[k].v);
			}
		}
	}
	/* mount only; 0 from a daemon older than the field: nothing said */
	if (S_ISDIR(st.st_mode) && c->transport) {
		if (json)
			printf(", \"transport\": \"%s\"", transport);
		else
			printf("%-20s%12s\n", "transport:", transport);
	}
	if (json)
		printf("}\n");
	return EXIT_OK;
}

static int cmd_scrub(int argc, char **argv)
{
	struct pinfs_scrub r;
	struct stat st;
	int fd, rc;

	if (argc != 2)
		return usage_operands("scrub", argc - 1, 1, "PATH");
	fd = open_path("scrub", argv[1], O_RDONLY | O_NONBLOCK);
	if (fd < 0)
		return EXIT_ERR;
	if (fstat(fd, &st) < 0) {
		fprintf(stderr, "pinfsctl: scrub: %s: %s\n", argv[1], strerror(errno));
		close(fd);
		return EXIT_ERR;
	}
	memset(&r, 0, sizeof(r));
	r.all = S_ISDIR(st.st_mode) ? 1 : 0;
	rc = ctl_ioctl(argv[1], &fd, PINFS_IOC_SCRUB, &r);
	close(fd);
	if (rc == -EOPNOTSUPP) {
		/* pm_scrub's one EOPNOTSUPP: nothing to verify against */
		fprintf(stderr, "pinfsctl: scrub %s: the pool has no block checksums (it was made "
				"without mkfs.pinfs --checksums): nothing to verify\n", argv[1]);
		return EXIT_ERR;
	}
	if (rc < 0) {
		fprintf(stderr, "pinfsctl: scrub %s: %s\n", argv[1], ioctl_strerror(-rc));
		return EXIT_ERR;
	}
	printf("files:              %12" PRIu64 "\n"
	       "checked:            %12" PRIu64 "\n"
	       "bad:                %12" PRIu64 "\n"
	       "skipped_dirty:      %12" PRIu64 "\n"
	       "skipped_pinned:     %12" PRIu64 "\n"
	       "skipped_nocsum:     %12" PRIu64 "\n",
	       r.files, r.checked, r.bad, r.skipped_dirty, r.skipped_pinned, r.skipped_nocsum);
	if (r.bad)
		printf("first_bad:          inode %" PRIu64 " offset %" PRIu64 "\n", r.first_bad_ino,
		       r.first_bad_off);
	return r.bad ? EXIT_ERR : EXIT_OK;
}

/* ---- events ------------------------------------------------------------- */

static volatile sig_atomic_t g_stop;

static void on_stop(int sig)
{
	(void)sig;
	g_stop = 1;
}

static const char *event_name(uint32_t t)
{
	switch (t) {
	case PINFS_EV_PIN: return "pin";
	case PINFS_EV_UNPIN: return "unpin";
	case PINFS_EV_BREAK: return "break";
	case PINFS_EV_REVOKE: return "revoke";
	case PINFS_EV_REFUSE: return "refuse";
	case PINFS_EV_EXIT: return "exit";
	case PINFS_EV_WAIT: return "wait";
	default: return NULL;
	}
}

/* One line: TIME seq=N TYPE lease=L pid=P/COMM ino=I range=S-E err=E policy=P
 * (an exit says leases=N, how many ended with the holder, instead of range) */
static void event_print(const struct pinfs_event *e)
{
	time_t sec = (time_t)(e->time_ns / 1000000000ull);
	const char *type = event_name(e->type), *errname;
	char when[32];
	struct tm tm;

	localtime_r(&sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	printf("%s.%06u seq=%" PRIu64 " ", when, (unsigned)(e->time_ns % 1000000000ull / 1000),
	       e->seq);
	if (type)
		printf("%s", type);
	else
		printf("type:%u", e->type);
	printf(" lease=%" PRIu64 " pid=%u/", e->lease_id, e->holder_pid);
	print_comm(e->comm);
	printf(" ino=%" PRIu64, e->ino);
	if (e->type == PINFS_EV_EXIT) {
		printf(" leases=%" PRIu64, e->nleases);
	} else {
		printf(" range=");
		print_range(e->offset, e->length);
	}
	errname = e->err ? strerrorname_np(e->err < 0 ? -e->err : e->err) : NULL;
	if (errname)
		printf(" err=%s", errname);
	else
		printf(" err=%d", e->err);
	printf(" policy=%s\n", policy_name(e->policy));
}

/* One JSON object on one line: {"time", "time_ns", "seq", "type", "lease",
 * "pid", "command", "ino", "offset", "length" (an exit: "leases" instead),
 * "err" (the errno's name, or null), "policy"}. */
static void event_print_json(const struct pinfs_event *e)
{
	time_t sec = (time_t)(e->time_ns / 1000000000ull);
	const char *type = event_name(e->type), *errname;
	char when[64], comm[17];
	struct tm tm;

	gmtime_r(&sec, &tm);
	strftime(when, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(when + strlen(when), sizeof(when) - strlen(when), ".%06uZ",
		 (unsigned)(e->time_ns % 1000000000ull / 1000));
	printf("{\"time\": \"%s\", \"time_ns\": %" PRIu64 ", \"seq\": %" PRIu64 ", \"type\": ",
	       when, e->time_ns, e->seq);
	if (type)
		printf("\"%s\"", type);
	else
		printf("\"type:%u\"", e->type);
	memcpy(comm, e->comm, 16);
	comm[16] = '\0';
	printf(", \"lease\": %" PRIu64 ", \"pid\": %u, \"command\": ", e->lease_id, e->holder_pid);
	json_string(comm);
	printf(", \"ino\": %" PRIu64, e->ino);
	if (e->type == PINFS_EV_EXIT)
		printf(", \"leases\": %" PRIu64, e->nleases);
	else
		printf(", \"offset\": %" PRIu64 ", \"length\": %" PRIu64, e->offset, e->length);
	errname = e->err ? strerrorname_np(e->err < 0 ? -e->err : e->err) : NULL;
	if (errname)
		printf(", \"err\": \"%s\"", errname);
	else if (e->err)
		printf(", \"err\": %d", e->err);
	else
		printf(", \"err\": null");
	printf(", \"policy\": \"%s\"}\n", policy_name(e->policy));
}

static int cmd_events(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "count", required_argument, NULL, 'n' },
		{ "timeout", required_argument, NULL, 't' },
		{ "new", no_argument, NULL, 'N' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	struct pinfs_events *ev = calloc(1, sizeof(*ev));
	bool json = false;
	uint64_t count = 0, printed = 0, after = 0, lost = 0;
	double timeout = -1; /* seconds; negative: none */
	struct timespec t0;
	bool skip_history = false;
	struct sigaction sa;
	const char *mp;
	char *end;
	int opt, fd, rc, status = EXIT_ERR;

	if (!ev) {
		fprintf(stderr, "pinfsctl: events: out of memory\n");
		return EXIT_ERR;
	}
	while ((opt = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (opt) {
		case 'n':
			errno = 0;
			count = strtoull(optarg, &end, 10);
			if (errno || end == optarg || *end || optarg[0] == '-' || count == 0) {
				free(ev);
				return usage_error("events: --count '%s' is not a positive number",
						   optarg);
			}
			break;
		case 't':
			errno = 0;
			timeout = strtod(optarg, &end);
			if (errno || end == optarg || *end || !isfinite(timeout) || timeout < 0) {
				free(ev);
				return usage_error("events: --timeout '%s' is not a number of seconds",
						   optarg);
			}
			break;
		case 'N': skip_history = true; break;
		case 'j': json = true; break;
		default: free(ev); return usage_bad_option("events", argv);
		}
	}
	if (argc - optind != 1) {
		free(ev);
		return usage_operands("events", argc - optind, 1, "MOUNTPOINT");
	}
	mp = argv[optind];

	/* No SA_RESTART: let a blocked wait end early where it can. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	fd = open_path("events", mp, O_RDONLY | O_DIRECTORY);
	if (fd < 0) {
		free(ev);
		return EXIT_ERR;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (bool skipping = skip_history; !g_stop;) {
		unsigned wait_ms = 1000;
		if (timeout >= 0) {
			struct timespec now;
			double left;
			clock_gettime(CLOCK_MONOTONIC, &now);
			left = timeout - (double)(now.tv_sec - t0.tv_sec) -
			       (double)(now.tv_nsec - t0.tv_nsec) / 1e9;
			if (left <= 0) {
				if (!count)
					break; /* followed for as long as asked */
				fprintf(stderr, "pinfsctl: events: timeout after %g s: %" PRIu64
						" of %" PRIu64 " events\n", timeout, printed, count);
				goto out;
			}
			if (left * 1000 < wait_ms)
				wait_ms = (unsigned)ceil(left * 1000);
		}
		memset(ev, 0, sizeof(*ev));
		ev->after_seq = after;
		ev->timeout_ms = skipping ? 0 : wait_ms;
		rc = ctl_ioctl(mp, &fd, PINFS_IOC_EVENTS, ev);
		if (rc == -EINTR)
			continue;
		if (rc == -EAGAIN) {
			/* the daemon waits for no more of this user's requests
			 * (-o max_parked): look again in a while, as a poll */
			struct timespec ts = { 0, (long)(wait_ms < 250 ? wait_ms : 250) * 1000000L };
			nanosleep(&ts, NULL);
			continue;
		}
		if (rc < 0) {
			fprintf(stderr, "pinfsctl: events %s: %s\n", mp, ioctl_strerror(-rc));
			goto out;
		}
		if (ev->n > PINFS_EVENTS_MAX) {
			fprintf(stderr, "pinfsctl: events: daemon returned %u events\n", ev->n);
			goto out;
		}
		if (skipping) {
			/* Skip what is already there: drain without waiting. */
			after = ev->next_seq > after ? ev->next_seq : after;
			lost = ev->lost;
			if (ev->n == 0)
				skipping = false;
			continue;
		}
		if (ev->lost > lost) {
			fprintf(stderr, "pinfsctl: events: %" PRIu64 " events lost\n", ev->lost - lost);
			lost = ev->lost;
		}
		for (uint32_t i = 0; i < ev->n; i++) {
			if (json)
				event_print_json(&ev->ev[i]);
			else
				event_print(&ev->ev[i]);
			fflush(stdout);
			if (count && ++printed == count) {
				status = EXIT_OK;
				goto out;
			}
		}
		if (ev->next_seq > after)
			after = ev->next_seq;
	}
	status = EXIT_OK;
out:
	close(fd);
	free(ev);
	return status;
}

/* ---- status ------------------------------------------------------------- */

/* Is @s a JSON number as written (digits, one dot, no sign or exponent)? */
static bool json_numeric(const char *s, size_t n)
{
	size_t dots = 0;

	if (!n || s[0] == '.' || s[n - 1] == '.' || (n > 1 && s[0] == '0' && s[1] != '.'))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '.')
			dots++;
		else if (s[i] < '0' || s[i] > '9')
			return false;
	}
	return dots <= 1;
}

/* "a=1,b=x,c" as {"a": 1, "b": "x", "c": true} */
static void json_options(const char *opts)
{
	const char *p = opts;
	bool first = true;

	putchar('{');
	while (*p) {
		size_t len = strcspn(p, ","), klen = strcspn(p, "=,");
		char *k = strndup(p, klen), *v = NULL;

		if (klen < len)
			v = strndup(p + klen + 1, len - klen - 1);
		if (k && *k) {
			printf("%s", first ? "" : ", ");
			json_string(k);
			printf(": ");
			if (!v)
				printf("true");
			else if (json_numeric(v, strlen(v)))
				printf("%s", v);
			else
				json_string(v);
			first = false;
		}
		free(k);
		free(v);
		p += len;
		if (*p == ',')
			p++;
	}
	putchar('}');
}

static const char *transport_name(uint32_t t)
{
	return t == PINFS_TRANSPORT_IO_URING ? "io_uring"
	       : t == PINFS_TRANSPORT_DEV_FUSE ? "/dev/fuse" : "unknown";
}

static int cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	struct pinfs_status *st = calloc(1, sizeof(*st));
	char mp[PATH_MAX], since[64], comm[17], size[32];
	const char *path;
	bool json = false;
	time_t sec;
	struct tm tm;
	int fd, rc, opt;

	if (!st) {
		fprintf(stderr, "pinfsctl: status: out of memory\n");
		return EXIT_ERR;
	}
	while ((opt = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (opt) {
		case 'j': json = true; break;
		default: free(st); return usage_bad_option("status", argv);
		}
	}
	if (argc - optind != 1) {
		free(st);
		return usage_operands("status", argc - optind, 1, "MOUNTPOINT");
	}
	path = argv[optind];
	fd = open_path("status", path, O_RDONLY | O_NONBLOCK);
	if (fd < 0) {
		free(st);
		return EXIT_ERR;
	}
	rc = ctl_ioctl(path, &fd, PINFS_IOC_STATUS, st);
	close(fd);
	if (rc < 0) {
		fprintf(stderr, "pinfsctl: status %s: %s\n", path, ioctl_strerror(-rc));
		free(st);
		return EXIT_ERR;
	}
	if (mount_root(path, mp, sizeof(mp)) < 0)
		snprintf(mp, sizeof(mp), "%s", path);
	st->pool[sizeof(st->pool) - 1] = '\0';
	st->options[sizeof(st->options) - 1] = '\0';
	if (st->nholders > PINFS_STATUS_HOLDERS_MAX)
		st->nholders = PINFS_STATUS_HOLDERS_MAX;
	sec = (time_t)(st->start_time_ns / 1000000000ull);
	if (json) {
		gmtime_r(&sec, &tm);
		strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%SZ", &tm);
		printf("{\"mountpoint\": ");
		json_string(mp);
		printf(", \"daemon_pid\": %u, \"pool\": ", st->daemon_pid);
		json_string(st->pool);
		printf(", \"pmem\": %s, \"read_only\": %s, \"transport\": \"%s\"",
		       (st->flags & PINFS_STATUS_PMEM) ? "true" : "false",
		       (st->flags & PINFS_STATUS_READONLY) ? "true" : "false",
		       transport_name(st->transport));
		printf(", \"started\": \"%s\", \"uptime\": %.3f, \"options\": ", since,
		       (double)st->uptime_ns / 1e9);
		json_options(st->options);
		printf(", \"leases\": %" PRIu64 ", \"holders\": [", st->leases);
		for (uint32_t i = 0; i < st->nholders; i++) {
			const struct pinfs_status_holder *h = &st->holders[i];
			memcpy(comm, h->comm, 16);
			comm[16] = '\0';
			printf("%s{\"pid\": %u, \"uid\": %u, \"command\": ", i ? ", " : "", h->pid,
			       h->uid);
			json_string(comm);
			printf(", \"leases\": %u, \"revoked\": %u, \"pinned\": %" PRIu64 "}",
			       h->leases, h->revoked, h->pinned_bytes);
		}
		printf("], \"holders_total\": %u, \"holders_hidden\": %u}\n", st->holders_total,
		       st->holders_hidden);
		free(st);
		return EXIT_OK;
	}
	localtime_r(&sec, &tm);
	strftime(since, sizeof(since), "%Y-%m-%d %H:%M:%S", &tm);
	printf("mountpoint: %s\n", mp);
	printf("daemon:     pid %u\n", st->daemon_pid);
	printf("pool:       %s (%s%s)\n", st->pool,
	       (st->flags & PINFS_STATUS_PMEM) ? "persistent memory" : "not persistent memory",
	       (st->flags & PINFS_STATUS_READONLY) ? ", corrupt: read-only" : "");
	printf("transport:  %s\n", transport_name(st->transport));
	printf("uptime:     %.0f s (since %s)\n", (double)st->uptime_ns / 1e9, since);
	printf("options:    %s\n", st->options);
	printf("leases:     %" PRIu64 "\n", st->leases);
	printf("holders:    %u", st->holders_total);
	if (st->holders_hidden)
		printf(" (and %u of other users, not shown)", st->holders_hidden);
	putchar('\n');
	if (st->nholders)
		printf("%8s %6s %6s %7s %6s %s\n", "PID", "UID", "LEASES", "REVOKED", "PINNED",
		       "COMMAND");
	for (uint32_t i = 0; i < st->nholders; i++) {
		const struct pinfs_status_holder *h = &st->holders[i];
		memcpy(comm, h->comm, 16);
		comm[16] = '\0';
		human_size(h->pinned_bytes, size, sizeof(size));
		printf("%8u %6u %6u %7u %6s ", h->pid, h->uid, h->leases, h->revoked, size);
		print_comm(h->comm);
		putchar('\n');
	}
	free(st);
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int argc, char **argv);
	} cmds[] = {
		{ "pin", cmd_pin },	  { "unpin", cmd_unpin },   { "pins", cmd_pins },
		{ "policy", cmd_policy }, { "stats", cmd_stats },   { "events", cmd_events },
		{ "scrub", cmd_scrub },	  { "status", cmd_status },
	};

	opterr = 0; /* our messages, in our format */
	if (argc < 2)
		return usage_error("no command given");
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(stdout);
		return EXIT_OK;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("pinfsctl (pinfs) " PINFS_VERSION "\n");
		return EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (!strcmp(argv[1], cmds[i].name)) {
			/* The subcommand parses argv[1..] with getopt from the start. */
			optind = 1;
			return cmds[i].fn(argc - 1, argv + 1);
		}
	}
	if (argv[1][0] == '-')
		return usage_error("unknown option '%s'", argv[1]);
	return usage_error("unknown command '%s'", argv[1]);
}

/* SPDX-License-Identifier: MIT */
/*
 * tools/fsck.c -- fsck.pinfs: checks (and with --repair, mends) a pinfs pool
 * that is not mounted. The checking is pm_fsck() (pmem/fsck.c); this file is
 * the command line: open, journal replay, check, summary, exit status.
 *
 * Modes: -n opens the pool read-only and writes nothing (a committed
 * journal transaction is reported, not replayed: the verdict is the pool as
 * found); the default replays a committed transaction, as a mount would,
 * and counts that as a repaired problem (exit 1, not 0: the pool as found
 * was not consistent), and writes nothing else; --repair mends.
 *
 * Exit status, as e2fsck(8):
 *	0  clean
 *	1  problems were found and all of them repaired
 *	4  problems left (or a corrupt superblock or journal)
 *	8  operational error: cannot open or map the pool, not a pinfs pool,
 *	   a newer format, out of memory, the pool is in use (-EBUSY)
 *	16 usage error
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmem/fs.h"
#include "pmem/fsck.h"
#include "pmem/pool.h"

#define EXIT_CLEAN 0
#define EXIT_REPAIRED 1
#define EXIT_LEFT 4
#define EXIT_OPERATIONAL 8
#define EXIT_USAGE 16

static void usage(FILE *to)
{
	fprintf(to,
		"usage: fsck.pinfs [-y|--repair | -n] [--checksums] POOL\n"
		"  -y, --repair    mend everything that has a safe repair (each repair is\n"
		"                  printed with what it did); report the rest\n"
		"  -n, --no-change open and map the pool read-only: nothing is written, not\n"
		"                  even a journal replay\n"
		"      --checksums verify the CRC32C of every clean data block (pools made\n"
		"                  with mkfs.pinfs --checksums)\n"
		"      --help      print this help and exit\n"
		"      --version   print the version and exit\n"
		"Without -y or -n a committed journal transaction is replayed (as a mount\n"
		"would) and counted as a repaired problem; nothing else is written.\n"
		"Exit: 0 clean, 1 all problems repaired, 4 problems left, 8 operational\n"
		"error, 16 usage error.\n");
}

/* One line saying what is wrong, then where to look; exit status 16. */
static int usage_error(const char *fmt, const char *arg)
{
	fputs("fsck.pinfs: ", stderr);
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'fsck.pinfs --help'.\n");
	return EXIT_USAGE;
}

/* "fsck.pinfs: POOL: ERR", unless ERR already names POOL (pmem/ messages
 * often do): a path is said once. */
static void say_pool_error(const char *path, const char *err)
{
	if (strstr(err, path))
		fprintf(stderr, "fsck.pinfs: %s\n", err);
	else
		fprintf(stderr, "fsck.pinfs: %s: %s\n", path, err);
}

/* The pool is locked: by a daemon serving it, say which and where, and how
 * to look at a live pool instead. False when it is no daemon (the caller
 * prints the lock's own message). */
static bool say_pool_mounted(const char *path, bool no_change)
{
	char comm[32], mps[2048];
	uint32_t pid = pm_pool_user_of(path, comm, sizeof(comm));
	int n;

	if (!pid || strcmp(comm, "pinfs"))
		return false;
	n = pm_pool_mounts(path, mps, sizeof(mps));
	if (!n) {
		fprintf(stderr, "fsck.pinfs: %s: in use by the pinfs daemon (pid %u), mounted where "
				"this process cannot see it: unmount it first%s\n",
			path, pid, no_change ? " (-n does not check a pool in use)" : "");
		return true;
	}
	fprintf(stderr, "fsck.pinfs: %s: mounted at %s by the pinfs daemon (pid %u)%s: unmount it "
			"first (fusermount3 -u %s), or look at it live (pinfsctl status %s, "
			"pinfsctl scrub %s)\n",
		path, mps, pid, no_change ? "; -n does not check a pool in use" : "",
		n == 1 ? mps : "MOUNTPOINT", n == 1 ? mps : "MOUNTPOINT", n == 1 ? mps : "MOUNTPOINT");
	return true;
}

/* Does @path begin with a pinfs superblock magic? Tells a corrupt pinfs
 * superblock (exit 4) from something that is not a pinfs pool (exit 8). */
static bool has_pinfs_magic(const char *path)
{
	uint64_t magic = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return false;
	n = pread(fd, &magic, sizeof(magic), 0);
	close(fd);
	return n == (ssize_t)sizeof(magic) && magic == PM_SUPER_MAGIC;
}

/* What a replay of the committed transaction in @pool's journal would write:
 * "3 records, 8192 bytes"; "" if the journal holds none. */
static void pending_tx(const struct pm_pool *pool, char *buf, size_t size)
{
	const struct pm_jhdr *h = pm_block_ptr(pool, pool->sb->journal_start);

	buf[0] = 0;
	if (h->magic == PM_JOURNAL_MAGIC && h->state == PM_JSTATE_COMMITTED)
		snprintf(buf, size, "%u record%s, %llu bytes of records", h->nrecs,
			 h->nrecs == 1 ? "" : "s", (unsigned long long)h->body_len);
}

/*
 * The open found the primary superblock torn (a crash while a committed
 * transaction was applied: it spans several cache lines) and replayed the
 * journal, which holds it whole, before judging it (pmem/pool.c), as a mount
 * does. Without -n that replay is a repair like the one below; with -n it
 * ran in a private view of the pool (PM_POOL_PRIVATE: nothing reached the
 * pool), so the check that follows sees what a replay would leave, as
 * --repair would, and the replay is a problem left.
 */
static void report_torn_replay(const struct pm_pool *pool, const char *path, bool no_change,
			       unsigned long *jerrors, unsigned long *jfixed)
{
	printf("fsck.pinfs: %s: the primary superblock is torn; the journal holds a committed "
	       "transaction (%u record%s, %llu bytes of records) that rewrites it: %s\n",
	       path, pool->torn_nrecs, pool->torn_nrecs == 1 ? "" : "s",
	       (unsigned long long)pool->torn_len,
	       no_change ? "a mount or fsck without -n replays it; not replayed (-n), the pool "
			   "is checked as the replay would leave it"
			 : "replayed");
	*jerrors += 1;
	*jfixed += !no_change;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "repair", no_argument, NULL, 'y' },
		{ "no-change", no_argument, NULL, 'n' },
		{ "checksums", no_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct pm_fsck_opts o = { 0 };
	struct pm_fsck_result res;
	struct pm_pool *pool = NULL;
	bool no_change = false;
	unsigned long jerrors = 0, jfixed = 0;
	const char *path;
	char err[512], tx[96];
	int c, rc, status;

	opterr = 0; /* our messages, in our format */
	while ((c = getopt_long(argc, argv, ":ynhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'y':
			o.repair = true;
			break;
		case 'n':
			no_change = true;
			break;
		case 'c':
			o.checksums = true;
			break;
		case 'h':
			usage(stdout);
			return EXIT_CLEAN;
		case 'V':
			printf("fsck.pinfs (pinfs) " PINFS_VERSION "\n");
			return EXIT_CLEAN;
		case ':':
			return usage_error("option '%s' needs an argument", argv[optind - 1]);
		default:
			return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind == argc)
		return usage_error("no pool given%s", "");
	if (optind != argc - 1)
		return usage_error("unexpected argument '%s' (one pool only)", argv[optind + 1]);
	if (o.repair && no_change)
		return usage_error("%s--repair and -n exclude each other", "");
	path = argv[optind];

	/* pm_pool_open_flags() takes the pool's lock: a pool a daemon is
	 * serving is refused (-EBUSY), since repairing a live pool would
	 * corrupt it. -n maps it read-only: a stray store would fault. A
	 * corrupt primary superblock is replaced by the backup (in DRAM; only
	 * --repair writes it back) */
	rc = pm_pool_open_flags(path, PM_POOL_BACKUP_SB |
					      (no_change ? PM_POOL_RDONLY | PM_POOL_PRIVATE : 0),
				&pool, err, sizeof(err));
	if (rc) {
		if (rc != -EBUSY || !say_pool_mounted(path, no_change))
			say_pool_error(path, err);
		return rc == -EUCLEAN && has_pinfs_magic(path) ? EXIT_LEFT : EXIT_OPERATIONAL;
	}
	/* As the daemon and mkfs: blocks a crashed daemon kept quarantined are
	 * free in the pool's bitmap, and a holder that lives on may still
	 * store into them; a repair that copies or grows into them would put
	 * those stores into another file. Reading (-n) or replaying the
	 * journal allocates nothing. */
	if (o.repair) {
		uint32_t pid = pm_super_live_holder(pool->sb);

		if (pid) {
			fprintf(stderr, "fsck.pinfs: %s: process %u held pins when the pool was last "
					"mounted and may still store into the pool: end it first; "
					"nothing was changed\n", path, pid);
			pm_pool_close(&pool);
			return EXIT_OPERATIONAL;
		}
	}
	if (!pool->sb->clean)
		printf("fsck.pinfs: %s: was not cleanly unmounted\n", path);

	if (pool->torn_replayed)
		report_torn_replay(pool, path, no_change, &jerrors, &jfixed);
	pending_tx(pool, tx, sizeof(tx));
	if (no_change) {
		/* the verdict is the pool as found: pm_fsck reports the
		 * committed transaction as a problem left */
		if (tx[0])
			printf("fsck.pinfs: %s: the journal holds a committed transaction (%s); a mount "
			       "or fsck without -n replays it; not replayed (-n)\n", path, tx);
	} else {
		char jerr[160] = "";
		rc = pm_journal_recover(pool, jerr, sizeof(jerr));
		if (rc < 0) {
			/* pm_fsck reports the header; --repair discards it */
			printf("fsck.pinfs: %s: the journal is corrupt, not replayed: %s\n", path,
			       jerr[0] ? jerr : strerror(-rc));
		} else if (rc == 1) {
			/* a repair like any other: the pool as found was not clean */
			printf("fsck.pinfs: journal: a committed transaction (%s) was not applied: "
			       "replayed\n", tx);
			jerrors = jfixed = 1;
		}
		rc = pm_pool_reload_super(pool, err, sizeof(err));
		if (rc) {
			fprintf(stderr, "fsck.pinfs: %s: after the journal replay: %s\n", path, err);
			pm_pool_close(&pool);
			return EXIT_LEFT;
		}
	}

	rc = pm_fsck_ex(pool, &o, stdout, &res);
	if (rc) {
		fprintf(stderr, "fsck.pinfs: %s: cannot check: %s\n", path, strerror(-rc));
		pm_pool_close(&pool);
		return EXIT_OPERATIONAL;
	}
	if (o.checksums && !(pool->sb->feat_incompat & PM_FEAT_INCOMPAT_CSUM))
		printf("fsck.pinfs: %s: the pool keeps no block checksums (mkfs.pinfs --checksums): "
		       "none verified\n", path);
	res.errors += jerrors;
	res.repaired += jfixed;

	if (!res.errors) {
		const struct pm_super *sb = pool->sb;
		uint64_t total = sb->nblocks - sb->data_start;
		printf("fsck.pinfs: %s: clean, %llu files, %llu/%llu blocks used\n", path,
		       (unsigned long long)(sb->ninodes - 1 - sb->free_inodes),
		       (unsigned long long)(total - sb->free_blocks), (unsigned long long)total);
		status = EXIT_CLEAN;
	} else if (res.repaired == res.errors) {
		printf("fsck.pinfs: %s: %lu problem%s found, all repaired\n", path, res.errors,
		       res.errors == 1 ? "" : "s");
		status = EXIT_REPAIRED;
	} else {
		printf("fsck.pinfs: %s: %lu problem%s found, %lu repaired, %lu left%s\n", path,
		       res.errors, res.errors == 1 ? "" : "s", res.repaired, res.errors - res.repaired,
		       o.repair || no_change ? "" : " (fsck.pinfs --repair mends what it can)");
		status = EXIT_LEFT;
	}
	if (fflush(stdout) != 0) {
		perror("fsck.pinfs: stdout");
		status = status > EXIT_OPERATIONAL ? status : EXIT_OPERATIONAL;
	}
	pm_pool_close(&pool);
	return status;
}

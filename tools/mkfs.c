/* SPDX-License-Identifier: MIT */
/*
 * tools/mkfs.c -- mkfs.pinfs: formats a pool file or device.
 *
 *   mkfs.pinfs [--size SIZE] [--inodes N] [--checksums] [--experimental] [--force] POOL
 *
 * Without --force it formats only a new path or an empty (or all-hole) file
 * and refuses, naming what is there, anything else: another file's data, a
 * device, an existing pinfs pool. Even with --force it refuses a pool in use
 * (locked by a daemon, fsck.pinfs or mkfs.pinfs) or whose holder record names
 * a live process, a symbolic link (never followed) and a regular file owned
 * by another user than the caller (root included). A formatted regular file
 * ends mode 0600. A refusal writes nothing (pm_mkfs, pmem/pool.c).
 *
 * A pool file is sparse: only what is not zeros is written (about 1 MiB per
 * TiB of pool). A file system without room for that is refused, naming both
 * figures; one with less free space than the whole pool gets a warning line
 * on stderr (the pool still works until it fills up).
 *
 * Exit: 0 formatted, 1 failed or refused (one line on stderr), 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pinfs/client.h"
#include "pmem/pool.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: mkfs.pinfs [--size SIZE] [--inodes N] [--checksums] [--experimental]\n"
		   "                  [--force] POOL\n"
		   "  --size SIZE   pool size, e.g. 256M, 4G (default 256M; sparse on tmpfs)\n"
		   "  --inodes N    inode slots (default: one per 8 KiB)\n"
		   "  --force       overwrite what POOL holds: a non-empty file, a device or\n"
		   "                a pinfs pool (never one in use, or whose recorded pin\n"
		   "                holders are still alive)\n"
		   "  --checksums   keep a CRC32C of every clean data block\n"
		   "  --experimental  mark the pool for experiments: only such a pool may be\n"
		   "                mounted with the unsafe demonstration switches (pinfs -o\n"
		   "                unsafe=...), which can lose or misplace data\n"
		   "  --help        print this help and exit\n"
		   "  --version     print the version and exit\n"
		   "Without --force only a new path or an empty file is formatted.\n"
		   "Never a symbolic link, nor a file another user owns; a formatted file\n"
		   "is made mode 0600.\n"
		   "Exit: 0 formatted, 1 failed or refused, 2 usage.\n");
}

/* One line saying what is wrong, then where to look; exit status 2. */
static int usage_error(const char *fmt, const char *arg)
{
	if (fmt) {
		fputs("mkfs.pinfs: ", stderr);
		fprintf(stderr, fmt, arg);
		fputc('\n', stderr);
	}
	fprintf(stderr, "Try 'mkfs.pinfs --help'.\n");
	return 2;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "size", required_argument, NULL, 's' },
		{ "inodes", required_argument, NULL, 'i' },
		{ "force", no_argument, NULL, 'f' },
		{ "checksums", no_argument, NULL, 'c' },
		{ "experimental", no_argument, NULL, 'E' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct pm_mkfs_opts o = { .size = PM_POOL_DEFAULT_SIZE, .warn = stderr };
	struct pm_super sb;
	char err[256] = "";
	int c, rc;

	opterr = 0; /* our messages, in our format */
	while ((c = getopt_long(argc, argv, ":s:i:fcEhV", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (pinfs_parse_size(optarg, &o.size))
				return usage_error("'%s' is not a size", optarg);
			break;
		case 'i':
			if (pinfs_parse_size(optarg, &o.ninodes) || !o.ninodes)
				return usage_error("'%s' is not an inode count", optarg);
			break;
		case 'f':
			o.force = true;
			break;
		case 'c':
			o.features |= PM_FEAT_INCOMPAT_CSUM;
			break;
		case 'E':
			o.compat |= PM_FEAT_COMPAT_EXPERIMENTAL;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("mkfs.pinfs (pinfs) " PINFS_VERSION "\n");
			return 0;
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
	rc = pm_mkfs(argv[optind], &o, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "mkfs.pinfs: %s\n", err);
		return 1;
	}
	memset(&sb, 0, sizeof(sb));
	pm_geometry(&sb, o.size & ~(uint64_t)(PM_BLOCK_SIZE - 1), o.ninodes, o.features);
	printf("mkfs.pinfs: %s: %llu MiB, %llu blocks of 4 KiB, %llu inodes, journal %llu KiB%s%s\n",
	       argv[optind], (unsigned long long)(sb.pool_size >> 20),
	       (unsigned long long)sb.nblocks, (unsigned long long)sb.ninodes - 1,
	       (unsigned long long)(sb.journal_blocks * 4),
	       (o.features & PM_FEAT_INCOMPAT_CSUM) ? ", block checksums" : "",
	       o.compat & PM_FEAT_COMPAT_EXPERIMENTAL ? ", for experiments (unsafe switches allowed)"
						      : "");
	return 0;
}

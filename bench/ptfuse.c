/*
 * ptfuse - the smallest FUSE passthrough file system, for README "Without a
 * preload": it serves one regular file, "f", whose opens are handed to the
 * kernel as FOPEN_PASSTHROUGH on a backing file (kernel 6.9+,
 * CONFIG_FUSE_PASSTHROUGH), so read/write/mmap of it never reach this
 * daemon. Written on raw /dev/fuse because libfuse 3.14 predates
 * passthrough (fuse_passthrough_open is 3.16; 3.14's fuse_open_out has no
 * backing_id and its INIT knows no flags2).
 *
 *   ptfuse BACKING MOUNTPOINT      (root: the backing ioctl needs CAP_SYS_ADMIN)
 *
 * Runs in the foreground until unmounted. Only what `iobench randread` and
 * `seqread` of MOUNTPOINT/f need: INIT, LOOKUP, GETATTR, OPEN, RELEASE,
 * FLUSH, FORGET; everything else ENOSYS.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* from the kernel's include/uapi/linux/fuse.h (7.40+) */
struct in_hdr { uint32_t len, opcode; uint64_t unique, nodeid; uint32_t uid, gid, pid;
		uint16_t total_extlen, padding; };
struct out_hdr { uint32_t len; int32_t error; uint64_t unique; };
struct init_in { uint32_t major, minor, max_readahead, flags, flags2, unused[11]; };
struct init_out { uint32_t major, minor, max_readahead, flags; uint16_t max_background,
		  congestion_threshold; uint32_t max_write, time_gran; uint16_t max_pages,
		  map_alignment; uint32_t flags2, max_stack_depth; uint16_t request_timeout,
		  unused[11]; };
struct attr { uint64_t ino, size, blocks, atime, mtime, ctime; uint32_t atimensec, mtimensec,
	      ctimensec, mode, nlink, uid, gid, rdev, blksize, flags; };
struct entry_out { uint64_t nodeid, generation, entry_valid, attr_valid;
		   uint32_t entry_valid_nsec, attr_valid_nsec; struct attr attr; };
struct attr_out { uint64_t attr_valid; uint32_t attr_valid_nsec, dummy; struct attr attr; };
struct open_out { uint64_t fh; uint32_t open_flags; int32_t backing_id; };
struct backing_map { int32_t fd; uint32_t flags; uint64_t padding; };
#define FUSE_DEV_IOC_BACKING_OPEN _IOW(229, 1, struct backing_map)
#define FOPEN_PASSTHROUGH (1u << 7)
#define FUSE_INIT_EXT (1u << 30)
#define FUSE_MAX_PAGES (1u << 22)
#define FUSE_PASSTHROUGH_FLAGS2 (1u << (37 - 32))
enum { LOOKUP = 1, FORGET = 2, GETATTR = 3, OPEN = 14, READ = 15, RELEASE = 18, FLUSH = 25,
       INIT = 26, OPENDIR = 27, RELEASEDIR = 29, INTERRUPT = 36, DESTROY = 38,
       BATCH_FORGET = 42 };

static int dev, bfd;
static struct stat bst;

static void reply(uint64_t unique, int err, const void *p, size_t n)
{
	struct out_hdr h = { (uint32_t)(sizeof(h) + (err ? 0 : n)), -err, unique };
	struct iovec v[2] = { { &h, sizeof(h) }, { (void *)p, err ? 0 : n } };

	if (writev(dev, v, 2) < 0 && errno != ENOENT)
		perror("ptfuse: writev");
}

static void fill(struct attr *a, int file)
{
	memset(a, 0, sizeof(*a));
	a->ino = file ? 2 : 1;
	a->mode = file ? (S_IFREG | 0644) : (S_IFDIR | 0755);
	a->nlink = file ? 1 : 2;
	a->size = file ? (uint64_t)bst.st_size : 0;
	a->blocks = file ? (uint64_t)bst.st_blocks : 0;
	a->blksize = 4096;
}

int main(int argc, char **argv)
{
	static char buf[1 << 20 | 4096];
	char opts[256];

	if (argc != 3) {
		fprintf(stderr, "usage: ptfuse BACKING MOUNTPOINT\n");
		return 2;
	}
	bfd = open(argv[1], O_RDWR);
	if (bfd < 0 || fstat(bfd, &bst) < 0) {
		perror(argv[1]);
		return 1;
	}
	dev = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (dev < 0) {
		perror("/dev/fuse");
		return 1;
	}
	snprintf(opts, sizeof(opts), "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other", dev);
	if (mount("ptfuse", argv[2], "fuse.ptfuse", MS_NOSUID | MS_NODEV, opts) < 0) {
		perror("mount");
		return 1;
	}
	for (;;) {
		ssize_t n = read(dev, buf, sizeof(buf));
		struct in_hdr *h = (struct in_hdr *)buf;
		void *arg = h + 1;

		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == ENOENT)
				continue;
			if (errno != ENODEV)
				perror("ptfuse: read");
			return 0;
		}
		switch (h->opcode) {
		case INIT: {
			struct init_in *in = arg;
			struct init_out o;
			memset(&o, 0, sizeof(o));
			o.major = 7;
			o.minor = in->minor < 40 ? in->minor : 40;
			o.max_readahead = in->max_readahead;
			o.flags = FUSE_INIT_EXT | FUSE_MAX_PAGES;
			o.flags2 = FUSE_PASSTHROUGH_FLAGS2 & in->flags2;
			o.max_stack_depth = 1;
			o.max_write = 1 << 20;
			o.max_pages = 256;
			o.max_background = 16;
			o.congestion_threshold = 12;
			o.time_gran = 1;
			if (!(in->flags2 & FUSE_PASSTHROUGH_FLAGS2))
				fprintf(stderr, "ptfuse: the kernel offers no passthrough\n");
			reply(h->unique, 0, &o, sizeof(o));
			break;
		}
		case LOOKUP: {
			struct entry_out e;
			if (h->nodeid != 1 || strcmp((char *)arg, "f")) {
				reply(h->unique, ENOENT, NULL, 0);
				break;
			}
			memset(&e, 0, sizeof(e));
			e.nodeid = 2;
			e.entry_valid = e.attr_valid = 3600;
			fill(&e.attr, 1);
			reply(h->unique, 0, &e, sizeof(e));
			break;
		}
		case GETATTR: {
			struct attr_out a;
			memset(&a, 0, sizeof(a));
			a.attr_valid = 3600;
			fstat(bfd, &bst);
			fill(&a.attr, h->nodeid == 2);
			reply(h->unique, 0, &a, sizeof(a));
			break;
		}
		case OPEN: {
			struct backing_map m = { bfd, 0, 0 };
			struct open_out o = { 0, 0, 0 };
			int id = ioctl(dev, FUSE_DEV_IOC_BACKING_OPEN, &m);
			if (id < 0) {
				perror("ptfuse: FUSE_DEV_IOC_BACKING_OPEN");
				reply(h->unique, errno, NULL, 0);
				break;
			}
			o.open_flags = FOPEN_PASSTHROUGH;
			o.backing_id = id;
			reply(h->unique, 0, &o, sizeof(o));
			break;
		}
		case OPENDIR: {
			struct open_out o = { 0, 0, 0 };
			reply(h->unique, 0, &o, sizeof(o));
			break;
		}
		case READ:
			fprintf(stderr, "ptfuse: a READ reached the daemon: not passthrough\n");
			reply(h->unique, EIO, NULL, 0);
			break;
		case RELEASE: case RELEASEDIR: case FLUSH:
			reply(h->unique, 0, NULL, 0);
			break;
		case FORGET: case BATCH_FORGET: case INTERRUPT:
			break;
		case DESTROY:
			reply(h->unique, 0, NULL, 0);
			return 0;
		default:
			reply(h->unique, ENOSYS, NULL, 0);
		}
	}
}

/* SPDX-License-Identifier: MIT */
/*
 * fusefs/uring.c -- the FUSE-over-io_uring transport (see uring.h for how
 * it fits beside /dev/fuse).
 *
 * The kernel (fs/fuse/dev_uring.c) keeps one queue per possible CPU and
 * puts a request on the queue of the CPU the caller runs on. A queue holds
 * "entries": a header buffer and a payload buffer that the daemon
 * registered with an IORING_OP_URING_CMD (REGISTER). When a request comes,
 * the kernel copies it into a free entry and completes that command; the
 * daemon answers by writing the reply into the same buffers and sending
 * COMMIT_AND_FETCH, which hands the reply over and waits for the next
 * request in the same io_uring_enter().
 *
 * Here each queue has RING_THREADS threads, each with its own io_uring and
 * ONE entry. One entry per thread, not a deep queue per thread, because
 * pinfs handlers may block (policy "wait" sleeps until a holder unpins, and
 * that unpin is a request too, maybe from the same CPU): a blocked handler
 * then holds one thread and one entry, and the queue's other threads go on
 * serving, as the workers of libfuse's multi-threaded loop do. The kernel
 * reuses the most recently freed entry first, so a lone client keeps one
 * hot thread. The threads run on their queue's CPU when the daemon may run
 * there (a daemon started under taskset keeps its CPUs).
 *
 * A request is handed to libfuse 3.14 as if read from /dev/fuse:
 * fuse_in_header, the opcode's fixed struct (the header buffer's op_in) and
 * the payload, made contiguous. For WRITE the header goes into a page kept
 * free just before the payload buffer, so the data is not copied again;
 * every other request is copied into a buffer of its own (small: names,
 * ioctl and xattr arguments), so that a reply written into the payload
 * buffer cannot overwrite a request that its handler still reads. A write
 * handler takes its data before it replies.
 *
 * Locking:
 *  1. ring_lock guards the global state machine (state, counters) and the
 *     start condition; held only for bookkeeping, never across a request.
 *  2. Each thread's t->lock guards its entry's reply hand-over (t->busy,
 *     t->replied, the reply copy into the entry's buffers). Only the
 *     owning thread touches its io_uring (single issuer): a reply from
 *     another thread (an asynchronous reply) copies into the entry under
 *     t->lock and signals t->cv; the owner commits it.
 *  3. No lock of this file is held across fuse_session_process_buf(), an
 *     io_uring wait or a pmem/lease call; ffs_uring_reply() is called by
 *     libfuse from inside handlers, which may hold ip->rw (a read reply
 *     copies from the pool under it): t->lock nests inside them.
 */
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fusefs/uring.h"
#include "pinfs/abi.h"

#define RING_THREADS 4		       /* threads (= entries) per queue */
#define RING_PAYLOAD (1u << 20)	       /* payload buffer: max_write, 256 pages */
#define RING_PAD 4096u		       /* room for in_header + op_in before it */
#define RING_SMALL (RING_PAD + (68u << 10)) /* copy buffer of non-write requests */
#define ENABLE_URING "/sys/module/fuse/parameters/enable_uring"

enum { UD_ENTRY = 1, UD_STOP = 2 };

struct ring_thr {
	unsigned qid;
	pthread_t tid;
	bool started;
	struct io_uring ring;
	bool ring_ok;
	int stop_fd; /* eventfd: wakes the thread out of its wait at stop */
	struct ffs_uring_req_header *hdr;
	char *area;    /* RING_PAD + RING_PAYLOAD, mmap()ed */
	char *payload; /* area + RING_PAD: registered as iov[1] */
	char *small;   /* RING_SMALL: non-write requests are rebuilt here */
	struct iovec reg_iov[2];
	uint64_t unique; /* atomic: the request the entry holds, 0 if none */

	pthread_mutex_t lock;
	pthread_cond_t cv;
	bool replied; /* protected by lock */
};

/* The global state; one session per daemon. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	struct fuse_session *se;
	int fd;
	bool want;	       /* -o io_uring */
	bool rings_ok;	       /* every ring was created */
	char why[256];	       /* why not, for the transport line */
	unsigned nq;	       /* queues = possible CPUs */
	unsigned nthr;	       /* nq * RING_THREADS */
	struct ring_thr *thr;
	uint64_t init_unique;  /* the INIT request seen */
	uint64_t init_flags;
	bool init_seen;
	bool offered;	       /* the INIT reply said FUSE_OVER_IO_URING */
	int go;		       /* 0 wait, 1 register, -1 never (stop or no io_uring) */
	bool stopping;	       /* atomic */
	unsigned registered;   /* threads whose REGISTER was taken */
	unsigned failed;       /* threads whose REGISTER failed */
	unsigned *q_registered; /* per queue */
	bool said;	       /* the transport line was printed */
	uint32_t transport;    /* atomic: PINFS_TRANSPORT_* */
	uint64_t requests;     /* atomic */
} U = { .lock = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .fd = -1,
	.transport = PINFS_TRANSPORT_DEV_FUSE };

/* the entry whose request this thread is handling (fast path of a reply) */
static __thread struct ring_thr *tl_cur;

static bool stopping(void)
{
	return __atomic_load_n(&U.stopping, __ATOMIC_ACQUIRE);
}

/* called with U.lock held: one line, once, saying what serves the mount */
static void say_transport(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say_transport(const char *fmt, ...)
{
	va_list ap;

	if (U.said)
		return;
	U.said = true;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fflush(stderr);
}

/* Why the kernel did not offer io_uring at INIT, for the fallback line. */
static void kernel_refusal(char *out, size_t len)
{
	char v[8] = "";
	FILE *f = fopen(ENABLE_URING, "r");

	if (!f) {
		snprintf(out, len, "this kernel has no FUSE over io_uring (no %s; needs Linux 6.14+ "
				   "with CONFIG_FUSE_IO_URING)", ENABLE_URING);
		return;
	}
	if (!fgets(v, sizeof(v), f))
		v[0] = 0;
	fclose(f);
	v[strcspn(v, "\n")] = 0;
	if (v[0] == 'N' || v[0] == 'n' || v[0] == '0')
		snprintf(out, len, "the kernel did not offer FUSE over io_uring: %s is %s "
				   "(as root: echo Y > %s)", ENABLE_URING, v, ENABLE_URING);
	else
		snprintf(out, len, "the kernel did not offer FUSE over io_uring at INIT (%s is %s)",
			 ENABLE_URING, v[0] ? v : "unreadable");
}

/* The CPUs the kernel makes queues for: /sys/devices/system/cpu/possible,
 * as "0-3,5". The queue count is the highest CPU + 1 (qid = CPU). */
static unsigned possible_cpus(void)
{
	char buf[256], *p, *end;
	unsigned long hi = 0, a, b;
	FILE *f = fopen("/sys/devices/system/cpu/possible", "r");

	if (!f)
		return (unsigned)sysconf(_SC_NPROCESSORS_CONF);
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	for (p = buf; *p && *p != '\n';) {
		a = strtoul(p, &end, 10);
		if (end == p)
			break;
		b = a;
		if (*end == '-')
			b = strtoul(end + 1, &end, 10);
		if (b + 1 > hi)
			hi = b + 1;
		p = *end == ',' ? end + 1 : end;
	}
	return hi ? (unsigned)hi : (unsigned)sysconf(_SC_NPROCESSORS_CONF);
}

/* ---- one thread, one ring, one entry ------------------------------------ */

static struct io_uring_sqe *sqe_cmd(struct ring_thr *t, uint32_t cmd_op, uint64_t commit_id)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&t->ring);
	struct ffs_uring_cmd_req *req;

	if (!sqe)
		return NULL;
	memset(sqe, 0, 128); /* SQE128: the command area is the second half */
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->flags = IOSQE_FIXED_FILE;
	sqe->fd = 0; /* the /dev/fuse fd, registered as fixed file 0 */
	sqe->cmd_op = cmd_op;
	sqe->user_data = UD_ENTRY;
	req = (struct ffs_uring_cmd_req *)sqe->cmd;
	req->qid = (uint16_t)t->qid;
	req->commit_id = commit_id;
	if (cmd_op == FFS_URING_CMD_REGISTER) {
		sqe->addr = (uint64_t)(uintptr_t)t->reg_iov;
		sqe->len = 2;
	}
	return sqe;
}

static void queue_stop_poll(struct ring_thr *t)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&t->ring);

	if (sqe) {
		io_uring_prep_poll_add(sqe, t->stop_fd, POLLIN);
		sqe->user_data = UD_STOP;
	}
}

/* Turns the entry's request into /dev/fuse form and hands it to libfuse;
 * returns once the reply is in the entry (possibly given by another thread
 * later), false if the daemon stops first. */
static bool serve(struct ring_thr *t)
{
	struct ffs_uring_req_header *h = t->hdr;
	const struct fuse_in_header *in = (const void *)h->in_out;
	uint32_t psz = h->ring_ent_in_out.payload_sz;
	uint64_t unique = h->ring_ent_in_out.commit_id;
	struct fuse_buf buf = { .fd = -1 };
	size_t opsz;
	char *start;
	bool done;

	__atomic_add_fetch(&U.requests, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&t->lock);
	t->replied = false;
	pthread_mutex_unlock(&t->lock);
	if (in->len < sizeof(*in) + psz || in->len - sizeof(*in) - psz > FFS_URING_OP_IN_OUT_SZ ||
	    psz > RING_PAYLOAD || in->unique != unique) {
		/* not the layout this file knows: answer EIO, keep serving */
		struct fuse_out_header *oh = (void *)h->in_out;
		fprintf(stderr, "pinfs: io_uring queue %u: malformed request (opcode %u, len %u, "
				"payload %u): EIO\n", t->qid, in->opcode, in->len, psz);
		memset(oh, 0, sizeof(*oh));
		oh->unique = unique;
		oh->error = -EIO;
		oh->len = sizeof(*oh);
		h->ring_ent_in_out.payload_sz = 0;
		return true;
	}
	opsz = in->len - sizeof(*in) - psz;
	if (in->opcode == FUSE_WRITE || sizeof(*in) + opsz + psz > RING_SMALL) {
		start = t->payload - sizeof(*in) - opsz;
	} else {
		start = t->small;
		memcpy(start + sizeof(*in) + opsz, t->payload, psz);
	}
	memcpy(start, in, sizeof(*in));
	memcpy(start + sizeof(*in), h->op_in, opsz);
	buf.mem = start;
	buf.size = in->len;
	__atomic_store_n(&t->unique, unique, __ATOMIC_RELEASE);
	tl_cur = t;
	fuse_session_process_buf(U.se, &buf);
	tl_cur = NULL;
	/* replied in the handler, or later by another thread (async reply) */
	pthread_mutex_lock(&t->lock);
	while (!t->replied && !stopping())
		pthread_cond_wait(&t->cv, &t->lock);
	done = t->replied;
	__atomic_store_n(&t->unique, 0, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&t->lock);
	return done;
}

static void register_result(struct ring_thr *t, int err)
{
	unsigned q;

	pthread_mutex_lock(&U.lock);
	if (err) {
		U.failed++;
		if (!U.said)
			say_transport("pinfs: transport /dev/fuse: io_uring queue %u: REGISTER failed: "
				      "%s\n", t->qid, strerror(-err));
	} else {
		U.registered++;
		U.q_registered[t->qid]++;
	}
	for (q = 0; q < U.nq && U.q_registered[q]; q++)
		;
	if (q == U.nq && U.transport != PINFS_TRANSPORT_IO_URING) {
		__atomic_store_n(&U.transport, PINFS_TRANSPORT_IO_URING, __ATOMIC_RELEASE);
		say_transport("pinfs: transport io_uring: %u queues (one per possible CPU), %u threads "
			      "each, requests up to %u KiB; FORGET and INTERRUPT through /dev/fuse\n",
			      U.nq, RING_THREADS, RING_PAYLOAD >> 10);
	}
	pthread_mutex_unlock(&U.lock);
}

static void *ring_thread(void *arg)
{
	struct ring_thr *t = arg;
	struct io_uring_cqe *cqe;
	char name[16];
	cpu_set_t set;
	sigset_t all;
	int rc;

	/* signals (SIGTERM ...) are for libfuse's loop, never this thread
	 * (a ptrace stop still interrupts io_uring_enter(): retried below) */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	snprintf(name, sizeof(name), "pinfs-ring%u", t->qid);
	pthread_setname_np(pthread_self(), name);
	/* run on the queue's CPU if the daemon may (taskset keeps its say) */
	if (!sched_getaffinity(0, sizeof(set), &set) && CPU_ISSET(t->qid, &set)) {
		CPU_ZERO(&set);
		CPU_SET(t->qid, &set);
		sched_setaffinity(0, sizeof(set), &set);
	}
	pthread_mutex_lock(&U.lock);
	while (!U.go)
		pthread_cond_wait(&U.cv, &U.lock);
	rc = U.go;
	pthread_mutex_unlock(&U.lock);
	if (rc < 0)
		return NULL;

	queue_stop_poll(t);
	if (!sqe_cmd(t, FFS_URING_CMD_REGISTER, 0)) {
		register_result(t, -ENOMEM);
		return NULL;
	}
	do
		rc = io_uring_submit(&t->ring);
	while (rc == -EINTR);
	if (rc < 0) {
		register_result(t, rc);
		return NULL;
	}
	/* a refused REGISTER completes at once; a taken one only when a
	 * request comes */
	if (!io_uring_peek_cqe(&t->ring, &cqe) && cqe->user_data == UD_ENTRY && cqe->res < 0) {
		register_result(t, cqe->res);
		io_uring_cqe_seen(&t->ring, cqe);
		return NULL;
	}
	register_result(t, 0);
	for (;;) {
		rc = io_uring_wait_cqe(&t->ring, &cqe);
		if (rc == -EINTR)
			continue; /* a ptrace stop (strace, gdb): wait again */
		if (rc < 0) {
			fprintf(stderr, "pinfs: io_uring queue %u: wait: %s\n", t->qid, strerror(-rc));
			break;
		}
		if (cqe->user_data == UD_STOP) {
			io_uring_cqe_seen(&t->ring, cqe);
			break;
		}
		rc = cqe->res;
		io_uring_cqe_seen(&t->ring, cqe);
		if (rc < 0) {
			/* ENOTCONN, ECANCELED: unmounted or aborted */
			if (rc != -ENOTCONN && rc != -ECANCELED && !stopping())
				fprintf(stderr, "pinfs: io_uring queue %u: %s\n", t->qid, strerror(-rc));
			break;
		}
		if (!serve(t))
			break;
		if (!sqe_cmd(t, FFS_URING_CMD_COMMIT_AND_FETCH, t->hdr->ring_ent_in_out.commit_id)) {
			fprintf(stderr, "pinfs: io_uring queue %u: no free SQE\n", t->qid);
			break;
		}
		/* commit the reply and sleep for the next request in one
		 * io_uring_enter(); the CQE is that next request */
		do
			rc = io_uring_submit(&t->ring);
		while (rc == -EINTR);
		if (rc < 0) {
			fprintf(stderr, "pinfs: io_uring queue %u: submit: %s\n", t->qid, strerror(-rc));
			break;
		}
	}
	return NULL;
}

/* ---- replies -------------------------------------------------------------- */

ssize_t ffs_uring_reply(const struct iovec *iov, int count)
{
	const struct fuse_out_header *oh = iov[0].iov_base;
	struct ring_thr *t = tl_cur;
	struct fuse_out_header *dst;
	size_t total = 0, off = 0;
	unsigned i;
	int k;

	if (!U.thr || stopping() || iov[0].iov_len != sizeof(*oh) || !oh->unique)
		return -ENOENT;
	if (!t || __atomic_load_n(&t->unique, __ATOMIC_ACQUIRE) != oh->unique) {
		/* an asynchronous reply from another thread: find its entry */
		t = NULL;
		for (i = 0; i < U.nthr; i++)
			if (__atomic_load_n(&U.thr[i].unique, __ATOMIC_ACQUIRE) == oh->unique) {
				t = &U.thr[i];
				break;
			}
		if (!t)
			return -ENOENT; /* a /dev/fuse request (or an interrupt's) */
	}
	for (k = 1; k < count; k++)
		total += iov[k].iov_len;
	pthread_mutex_lock(&t->lock);
	if (__atomic_load_n(&t->unique, __ATOMIC_ACQUIRE) != oh->unique || t->replied) {
		pthread_mutex_unlock(&t->lock);
		return -ENOENT;
	}
	dst = (void *)t->hdr->in_out;
	*dst = *oh;
	if (total > RING_PAYLOAD) {
		/* cannot happen for requests the kernel sized (max_pages):
		 * still, never write past the buffer */
		fprintf(stderr, "pinfs: io_uring: reply of %zu bytes to request %llu is larger than "
				"the %u KiB ring buffer: EIO\n",
			total, (unsigned long long)oh->unique, RING_PAYLOAD >> 10);
		dst->error = -EIO;
		dst->len = sizeof(*dst);
		total = 0;
	} else {
		for (k = 1; k < count; k++) {
			memcpy(t->payload + off, iov[k].iov_base, iov[k].iov_len);
			off += iov[k].iov_len;
		}
	}
	t->hdr->ring_ent_in_out.payload_sz = (uint32_t)total;
	t->replied = true;
	pthread_cond_signal(&t->cv);
	pthread_mutex_unlock(&t->lock);
	return (ssize_t)(sizeof(*oh) + total);
}

/* ---- INIT ------------------------------------------------------------------ */

void ffs_uring_init_request(uint64_t unique, uint64_t flags)
{
	pthread_mutex_lock(&U.lock);
	U.init_unique = unique;
	U.init_flags = flags;
	U.init_seen = true;
	pthread_mutex_unlock(&U.lock);
}

void ffs_uring_init_reply(uint64_t unique, struct fuse_init_out *out)
{
	uint64_t need;

	pthread_mutex_lock(&U.lock);
	if (!U.init_seen || unique != U.init_unique || U.offered) {
		pthread_mutex_unlock(&U.lock);
		return;
	}
	if (!U.want) {
		say_transport("pinfs: transport /dev/fuse: -o no_io_uring\n");
	} else if (!(U.init_flags & FFS_FUSE_OVER_IO_URING)) {
		char why[300];
		kernel_refusal(why, sizeof(why));
		say_transport("pinfs: transport /dev/fuse: %s\n", why);
	} else if (!U.rings_ok) {
		say_transport("pinfs: transport /dev/fuse: %s\n", U.why);
	} else if (!(out->flags & FUSE_INIT_EXT)) {
		say_transport("pinfs: transport /dev/fuse: libfuse did not answer INIT with "
			      "FUSE_INIT_EXT (no room for the io_uring flag)\n");
	} else {
		/* the kernel sizes its payload copies by these: our buffers
		 * must hold the largest */
		need = out->max_write;
		if (out->flags & FUSE_MAX_PAGES && (uint64_t)out->max_pages * 4096 > need)
			need = (uint64_t)out->max_pages * 4096;
		if (need > RING_PAYLOAD) {
			say_transport("pinfs: transport /dev/fuse: requests of %llu KiB do not fit the "
				      "%u KiB ring buffers\n",
				      (unsigned long long)(need >> 10), RING_PAYLOAD >> 10);
		} else {
			out->flags2 |= (uint32_t)(FFS_FUSE_OVER_IO_URING >> 32);
			U.offered = true;
		}
	}
	pthread_mutex_unlock(&U.lock);
}

void ffs_uring_init_done(uint64_t unique, bool ok)
{
	pthread_mutex_lock(&U.lock);
	if (U.init_seen && unique == U.init_unique && !U.go) {
		if (U.offered && !ok)
			say_transport("pinfs: transport /dev/fuse: the kernel refused the INIT reply\n");
		U.go = U.offered && ok ? 1 : -1;
		pthread_cond_broadcast(&U.cv);
	}
	pthread_mutex_unlock(&U.lock);
}

/* ---- set-up and tear-down --------------------------------------------------- */

static int thr_open(struct ring_thr *t, unsigned qid)
{
	struct io_uring_params p;
	int rc;

	t->qid = qid;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cv, NULL);
	t->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (t->stop_fd < 0)
		return -errno;
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SQE128;
	rc = io_uring_queue_init_params(4, &t->ring, &p);
	if (rc < 0)
		return rc;
	t->ring_ok = true;
	rc = io_uring_register_files(&t->ring, &U.fd, 1);
	if (rc < 0)
		return rc;
	t->hdr = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	t->area = mmap(NULL, RING_PAD + RING_PAYLOAD, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	t->small = malloc(RING_SMALL);
	if (t->hdr == MAP_FAILED || t->area == MAP_FAILED || !t->small) {
		if (t->hdr == MAP_FAILED)
			t->hdr = NULL;
		if (t->area == MAP_FAILED)
			t->area = NULL;
		return -ENOMEM;
	}
	t->payload = t->area + RING_PAD;
	t->reg_iov[0].iov_base = t->hdr;
	t->reg_iov[0].iov_len = sizeof(*t->hdr);
	t->reg_iov[1].iov_base = t->payload;
	t->reg_iov[1].iov_len = RING_PAYLOAD;
	return 0;
}

static void thr_close(struct ring_thr *t)
{
	if (t->ring_ok)
		io_uring_queue_exit(&t->ring);
	t->ring_ok = false;
	if (t->stop_fd >= 0)
		close(t->stop_fd);
	t->stop_fd = -1;
	if (t->hdr)
		munmap(t->hdr, 4096);
	if (t->area)
		munmap(t->area, RING_PAD + RING_PAYLOAD);
	free(t->small);
	t->hdr = NULL;
	t->area = NULL;
	t->small = NULL;
	pthread_mutex_destroy(&t->lock);
	pthread_cond_destroy(&t->cv);
}

void ffs_uring_setup(struct fuse_session *se, bool want)
{
	unsigned i;
	int rc = 0;

	U.se = se;
	U.fd = fuse_session_fd(se);
	U.want = want;
	if (!want)
		return;
	U.nq = possible_cpus();
	U.nthr = U.nq * RING_THREADS;
	U.thr = calloc(U.nthr, sizeof(*U.thr));
	U.q_registered = calloc(U.nq, sizeof(*U.q_registered));
	if (!U.thr || !U.q_registered) {
		snprintf(U.why, sizeof(U.why), "out of memory for %u ring threads", U.nthr);
		goto fail;
	}
	for (i = 0; i < U.nthr; i++)
		U.thr[i].stop_fd = -1;
	for (i = 0; i < U.nthr; i++) {
		rc = thr_open(&U.thr[i], i / RING_THREADS);
		if (rc) {
			snprintf(U.why, sizeof(U.why), "cannot set up io_uring %u of %u: %s", i + 1,
				 U.nthr, strerror(-rc));
			goto fail;
		}
	}
	for (i = 0; i < U.nthr; i++) {
		rc = pthread_create(&U.thr[i].tid, NULL, ring_thread, &U.thr[i]);
		if (rc) {
			snprintf(U.why, sizeof(U.why), "cannot start ring thread %u of %u: %s", i + 1,
				 U.nthr, strerror(rc));
			goto fail;
		}
		U.thr[i].started = true;
	}
	U.rings_ok = true;
	return;
fail:
	ffs_uring_stop();
	for (i = 0; U.thr && i < U.nthr; i++)
		thr_close(&U.thr[i]);
}

void ffs_uring_stop(void)
{
	uint64_t one = 1;
	unsigned i;

	if (!U.thr || stopping())
		return;
	__atomic_store_n(&U.stopping, true, __ATOMIC_RELEASE);
	pthread_mutex_lock(&U.lock);
	if (!U.go)
		U.go = -1;
	pthread_cond_broadcast(&U.cv);
	pthread_mutex_unlock(&U.lock);
	for (i = 0; i < U.nthr; i++) {
		struct ring_thr *t = &U.thr[i];
		if (!t->started)
			continue;
		if (t->stop_fd >= 0 && write(t->stop_fd, &one, sizeof(one)) < 0)
			perror("pinfs: io_uring stop");
		pthread_mutex_lock(&t->lock);
		pthread_cond_broadcast(&t->cv);
		pthread_mutex_unlock(&t->lock);
		pthread_join(t->tid, NULL);
		t->started = false;
	}
	__atomic_store_n(&U.transport, PINFS_TRANSPORT_DEV_FUSE, __ATOMIC_RELEASE);
	/* the rings go (their commands are cancelled); the entries' memory
	 * stays until exit: a late asynchronous reply may still look for its
	 * entry, and finds none (stopping) */
	for (i = 0; i < U.nthr; i++)
		if (U.thr[i].ring_ok) {
			io_uring_queue_exit(&U.thr[i].ring);
			U.thr[i].ring_ok = false;
		}
	U.rings_ok = false;
}

uint32_t ffs_uring_transport(void)
{
	return __atomic_load_n(&U.transport, __ATOMIC_ACQUIRE);
}

uint64_t ffs_uring_requests(void)
{
	return __atomic_load_n(&U.requests, __ATOMIC_RELAXED);
}

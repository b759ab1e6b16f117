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
 * Here each queue has RING_THREADS threads, each with its own io_uring,
 * starting with ONE entry each: a handler that blocks for a while (a big
 * fallocate, fs->lock behind one) then holds one thread and one entry, and
 * the queue's other threads go on serving, as the workers of libfuse's
 * multi-threaded loop do. A request that its handler parks (a truncate
 * waiting on pins, an EVENTS read: answered later by the lease manager's
 * thread) keeps its entry until that answer -- the kernel ties a request
 * to its entry until the commit, and has no way to give an entry back --
 * but not its thread: the thread goes on, and registers one more entry
 * when it has none left waiting for requests. The answer is copied into
 * the entry by whoever gives it and the owner thread, woken through an
 * eventfd polled on its ring, commits it. The kernel reuses the most
 * recently freed entry first, so a lone client keeps one hot thread. The
 * threads run on their queue's CPU when the daemon may run there (a daemon
 * started under taskset keeps its CPUs).
 *
 * Parked requests are bounded (issue 15: one user's 3 000 EVENTS readers
 * once held every entry of every queue, and another user's stat waited
 * seconds for one): a queue parks at most RING_QUEUE_PARK requests and a
 * thread has at most RING_MAX_ENTS entries. The bound is the queue's, not
 * each thread's: the kernel hands a request to the entry made available
 * last, which after a park is the parking thread's new one, so one thread
 * of the queue takes every parked request until it is full (all its
 * entries parked, none waiting), then the next; with a bound per thread a
 * queue would park no more than one thread may. RING_QUEUE_PARK <
 * 2 * RING_MAX_ENTS: at most one thread of a queue is full, the other
 * three keep an entry each for the requests answered at once. The lease
 * manager asks ffs_uring_may_park() before it makes a wait, and answers at
 * once when it says no (and counts each user's parked requests:
 * lease/policy.c).
 *
 * Memory: an entry's buffers (RING_ENT_SIZE, one anonymous mapping) hold
 * pages only where a request or a reply was written, but a 1 MiB read
 * fills the payload buffer, and pages once written stay. So an entry that
 * waited in the kernel for RING_IDLE_NS without a request gives its pages
 * back (MADV_DONTNEED), unless they are at most RING_KEEP bytes. That is
 * safe only while nothing can write to it: the rings run with
 * IORING_SETUP_DEFER_TASKRUN, so the kernel copies a request into an entry
 * only inside its owner thread's io_uring_enter(), which posts the
 * completion before it returns; the owner gives pages back after it has
 * taken every completion and before it enters again, and only from
 * entries whose command it submitted and saw no completion for. The most
 * the buffers can hold is RING_ENT_SIZE for every entry: RING_MAX_ENTS
 * of them per thread.
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
 *  1. U.lock guards the global state machine (state, counters) and the
 *     start condition; held only for bookkeeping, never across a request.
 *  2. U.flight_lock guards the list of entries holding a request not yet
 *     answered (e->unique, e->fl_*): a reply finds its entry there and takes
 *     it off, so a request is answered once. Order: U.flight_lock before
 *     t->lock.
 *  3. Each thread's t->lock guards its entries' hand-over (e->replied,
 *     e->parked, t->ready). The reply copy into an entry is done before
 *     it, by the replier, who owns the entry's buffers from taking it off
 *     the in-flight list until it sets e->replied. What only the owner
 *     thread reads and writes (t->nents, t->nparked, e->where, e->*_hw)
 *     needs no lock.
 *     Only the owning thread touches its io_uring (single issuer): a reply
 *     from another thread to a parked request queues the entry on t->ready
 *     and wakes the owner (t->wake_fd), which commits it.
 *  4. No lock of this file is held across fuse_session_process_buf(), an
 *     io_uring wait or a pmem/lease call; ffs_uring_reply() is called by
 *     libfuse from inside handlers, which may hold ip->rw (a read reply
 *     copies from the pool under it): these locks nest inside them.
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
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "fusefs/fusefs.h"
#include "fusefs/uring.h"
#include "pinfs/abi.h"

#define RING_THREADS 4		       /* threads per queue */
#define RING_MAX_ENTS 17	       /* entries per thread, parked ones included */
#define RING_QUEUE_PARK 32	       /* parked requests per queue */
_Static_assert(RING_QUEUE_PARK < 2 * RING_MAX_ENTS, "one full thread per queue at most");
#define RING_SQ 32 /* SQEs: a command for every entry, two polls, a timeout */
_Static_assert(RING_MAX_ENTS + 3 <= RING_SQ, "an SQE for every entry's command");
#define RING_PAYLOAD (1u << 20)	       /* payload buffer: max_write, 256 pages */
#define RING_PAD 4096u		       /* room for in_header + op_in before it */
#define RING_SMALL (RING_PAD + (68u << 10)) /* copy buffer of non-write requests */
#define RING_HDR 4096u		       /* the header buffer's page */
/* an entry's mapping: header page, copy buffer, pad, payload */
#define RING_ENT_SIZE (RING_HDR + RING_SMALL + RING_PAD + RING_PAYLOAD)
#define RING_IDLE_NS 1000000000ull     /* an entry idle this long gives its pages back */
#define RING_KEEP (16u << 10)	       /* unless its buffers hold at most this */
#define ENABLE_URING "/sys/module/fuse/parameters/enable_uring"

/* CQE user_data: an entry's address, or one of these */
enum { UD_STOP = 2, UD_WAKE = 3, UD_TIMER = 4 };

/* Where an entry is, for its owner thread (it gives pages back only from
 * entries in the kernel): its request is being served or parked (ours);
 * its command is queued but not yet submitted; or the kernel holds it,
 * waiting for a request to copy into it. */
enum ent_where { E_OWNED, E_QUEUED, E_KERNEL };

struct ring_thr;

/* One registered entry: the buffers a request comes in and its answer goes
 * out through. Owned by one thread (its ring). */
struct ring_ent {
	struct ring_thr *t;
	char *area;    /* RING_ENT_SIZE, mmap()ed: the buffers below */
	struct ffs_uring_req_header *hdr; /* area: registered as iov[0] */
	char *small;   /* RING_SMALL: non-write requests are rebuilt here */
	char *payload; /* RING_PAD after the copy buffer: registered as iov[1] */
	struct iovec reg_iov[2];
	enum ent_where where; /* owner only */
	uint64_t since;	      /* owner only: queued for the kernel at (CLOCK_MONOTONIC
			       * ns), when its buffers hold more than RING_KEEP */
	size_t small_hw;      /* owner only: bytes of small that may hold pages */
	size_t pay_hw;	      /* owner only: the same from payload - RING_PAD on */
	uint64_t unique;		    /* U.flight_lock: the request held, 0 if none */
	struct ring_ent *fl_prev, *fl_next; /* U.flight_lock: in flight */
	bool replied;			    /* t->lock: the answer is in the buffers */
	bool parked;			    /* t->lock: its handler returned unanswered */
	struct ring_ent *next_ready;	    /* t->lock: on t->ready */
};

struct ring_thr {
	unsigned qid;
	pthread_t tid;
	bool started;
	struct io_uring ring;
	bool ring_ok;
	int stop_fd; /* eventfd: wakes the thread out of its wait at stop */
	int wake_fd; /* eventfd: a parked request was answered */
	struct ring_ent **ents; /* owner only: every entry, for tear-down */
	unsigned nents;		/* owner only */
	bool timer;		/* owner only: a UD_TIMER timeout is queued */
	struct __kernel_timespec timer_ts; /* owner only: its time */
	uint64_t requests;	/* written by the owner only, read atomically by
				 * ffs_uring_requests(): requests it served */

	pthread_mutex_t lock;
	struct ring_ent *ready; /* protected by lock: answered, to commit */
	unsigned nparked;	/* owner only: entries whose request is parked */
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
	int go;		       /* U.lock, atomic: 0 wait, 1 register, -1 never (stop or
				* no io_uring); leaves 0 once, never returns to it */
	bool stopping;	       /* atomic */
	unsigned *q_registered; /* per queue */
	unsigned *q_parked;	/* atomic, per queue: parked requests, and places
				 * taken by ffs_uring_may_park() for the requests
				 * being handled */
	bool said;	       /* the transport line was printed */
	uint32_t transport;    /* atomic: PINFS_TRANSPORT_* */
	pthread_mutex_t flight_lock;
	struct ring_ent flight; /* flight_lock: list head of entries in flight */
} U = { .lock = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .fd = -1,
	.transport = PINFS_TRANSPORT_DEV_FUSE, .flight_lock = PTHREAD_MUTEX_INITIALIZER,
	.flight = { .fl_prev = &U.flight, .fl_next = &U.flight } };

/* the entry whose request this thread is handling (fast path of a reply) */
static __thread struct ring_ent *tl_cur;
/* ffs_uring_may_park() took a place in the queue's U.q_parked for it */
static __thread bool tl_park_place;

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

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static size_t page_up(size_t n)
{
	return (n + 4095) & ~(size_t)4095;
}

/* Hands @t's queued SQEs to the kernel and waits until @wait_nr
 * completions are there: the count taken, or -errno. Retries an
 * io_uring_enter() that a ptrace stop (strace, gdb) interrupted, and, a few
 * times, one refused for want of memory (-EAGAIN). */
static int ring_submit(struct ring_thr *t, unsigned wait_nr)
{
	int rc, again = 0;

	for (;;) {
		rc = io_uring_submit_and_wait(&t->ring, wait_nr);
		if (rc == -EINTR)
			continue;
		if (rc == -EAGAIN && again++ < 16) {
			sched_yield();
			continue;
		}
		return rc;
	}
}

/* A free SQE of @t's ring; when the SQ is full of this round's commands,
 * submits them first. NULL when even that fails. */
static struct io_uring_sqe *ring_sqe(struct ring_thr *t)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&t->ring);
	int rc;

	if (sqe)
		return sqe;
	rc = ring_submit(t, 0);
	if (rc < 0) {
		fprintf(stderr, "pinfs: io_uring queue %u: submit: %s\n", t->qid, strerror(-rc));
		return NULL;
	}
	return io_uring_get_sqe(&t->ring);
}

static struct io_uring_sqe *sqe_cmd(struct ring_ent *e, uint32_t cmd_op, uint64_t commit_id)
{
	struct ring_thr *t = e->t;
	struct io_uring_sqe *sqe = ring_sqe(t);
	struct ffs_uring_cmd_req *req;

	if (!sqe)
		return NULL;
	memset(sqe, 0, 128); /* SQE128: the command area is the second half */
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->flags = IOSQE_FIXED_FILE;
	sqe->fd = 0; /* the /dev/fuse fd, registered as fixed file 0 */
	sqe->cmd_op = cmd_op;
	sqe->user_data = (uint64_t)(uintptr_t)e;
	req = (struct ffs_uring_cmd_req *)sqe->cmd;
	req->qid = (uint16_t)t->qid;
	req->commit_id = commit_id;
	if (cmd_op == FFS_URING_CMD_REGISTER) {
		sqe->addr = (uint64_t)(uintptr_t)e->reg_iov;
		sqe->len = 2;
	} else {
		/* the reply written into the payload buffer */
		size_t hw = RING_PAD + e->hdr->ring_ent_in_out.payload_sz;
		if (e->hdr->ring_ent_in_out.payload_sz && hw > e->pay_hw)
			e->pay_hw = hw;
	}
	e->where = E_QUEUED;
	if (e->small_hw + e->pay_hw > RING_KEEP)
		e->since = mono_ns(); /* submitted right after this round */
	return sqe;
}

/* Queues a one-shot poll of @fd, completing with @ud: 0 or -EBUSY (no SQE). */
static int queue_poll(struct ring_thr *t, int fd, uint64_t ud)
{
	struct io_uring_sqe *sqe = ring_sqe(t);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_poll_add(sqe, fd, POLLIN);
	sqe->user_data = ud;
	return 0;
}

/* A new entry of @t's (not yet registered); NULL when out of memory. */
static struct ring_ent *ent_new(struct ring_thr *t)
{
	struct ring_ent *e, **ents;

	ents = realloc(t->ents, (t->nents + 1) * sizeof(*ents));
	if (!ents)
		return NULL;
	t->ents = ents;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->t = t;
	/* MAP_NORESERVE, untouched until used; what is used is given back
	 * when the entry is idle (ring_reclaim) */
	e->area = mmap(NULL, RING_ENT_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (e->area == MAP_FAILED) {
		free(e);
		return NULL;
	}
	e->hdr = (void *)e->area;
	e->small = e->area + RING_HDR;
	e->payload = e->small + RING_SMALL + RING_PAD;
	e->reg_iov[0].iov_base = e->hdr;
	e->reg_iov[0].iov_len = sizeof(*e->hdr);
	e->reg_iov[1].iov_base = e->payload;
	e->reg_iov[1].iov_len = RING_PAYLOAD;
	t->ents[t->nents++] = e;
	return e;
}

static void ent_delete(struct ring_ent *e)
{
	munmap(e->area, RING_ENT_SIZE);
	free(e);
}

/* Gives back the pages of @e's copy buffer and payload (with the pad
 * before it); the header page stays. Owner only, with @e in the kernel
 * (see the top of this file) or owned. */
static void ent_release(struct ring_ent *e)
{
	if (e->small_hw && madvise(e->small, page_up(e->small_hw), MADV_DONTNEED))
		perror("pinfs: io_uring: madvise");
	if (e->pay_hw && madvise(e->payload - RING_PAD, page_up(e->pay_hw), MADV_DONTNEED))
		perror("pinfs: io_uring: madvise");
	e->small_hw = e->pay_hw = 0;
}

/* Takes @e off the in-flight list; called with U.flight_lock held. */
static void flight_del(struct ring_ent *e)
{
	e->fl_prev->fl_next = e->fl_next;
	e->fl_next->fl_prev = e->fl_prev;
	e->fl_prev = e->fl_next = NULL;
	e->unique = 0;
}

/* Turns the entry's request into /dev/fuse form and hands it to libfuse.
 * Returns true if the answer is in the entry (commit it now), false if the
 * handler parked the request: the answer comes later, from another thread,
 * through t->ready. */
static bool serve(struct ring_ent *e)
{
	struct ring_thr *t = e->t;
	struct ffs_uring_req_header *h = e->hdr;
	const struct fuse_in_header *in = (const void *)h->in_out;
	uint32_t psz = h->ring_ent_in_out.payload_sz;
	uint64_t unique = h->ring_ent_in_out.commit_id;
	struct fuse_buf buf = { .fd = -1 };
	size_t opsz;
	char *start;
	bool done;

	/* one writer: a plain increment, stored whole for the reader; no
	 * counter every CPU's threads would bounce between them */
	__atomic_store_n(&t->requests, t->requests + 1, __ATOMIC_RELAXED);
	e->where = E_OWNED;
	if (psz && psz <= RING_PAYLOAD && RING_PAD + psz > e->pay_hw)
		e->pay_hw = RING_PAD + psz; /* the kernel wrote it */
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
		start = e->payload - sizeof(*in) - opsz;
		if (RING_PAD + psz > e->pay_hw)
			e->pay_hw = RING_PAD + psz; /* and the pad */
	} else {
		start = e->small;
		memcpy(start + sizeof(*in) + opsz, e->payload, psz);
		if (in->len > e->small_hw)
			e->small_hw = in->len;
	}
	memcpy(start, in, sizeof(*in));
	memcpy(start + sizeof(*in), h->op_in, opsz);
	ffs_request_fixup(start, in->len);
	buf.mem = start;
	buf.size = in->len;
	pthread_mutex_lock(&t->lock);
	e->replied = false;
	e->parked = false;
	pthread_mutex_unlock(&t->lock);
	pthread_mutex_lock(&U.flight_lock);
	e->unique = unique;
	e->fl_next = &U.flight;
	e->fl_prev = U.flight.fl_prev;
	e->fl_prev->fl_next = e;
	U.flight.fl_prev = e;
	pthread_mutex_unlock(&U.flight_lock);
	tl_cur = e;
	tl_park_place = false;
	fuse_session_process_buf(U.se, &buf);
	tl_cur = NULL;
	/* answered in the handler (or already by another thread), or parked */
	pthread_mutex_lock(&t->lock);
	done = e->replied;
	if (!done) {
		e->parked = true;
		t->nparked++;
	}
	pthread_mutex_unlock(&t->lock);
	/* parked: it keeps the place taken for it (one that parked without
	 * asking takes one now); answered: the place is free again */
	if (done && tl_park_place)
		__atomic_sub_fetch(&U.q_parked[t->qid], 1, __ATOMIC_RELAXED);
	else if (!done && !tl_park_place)
		__atomic_add_fetch(&U.q_parked[t->qid], 1, __ATOMIC_RELAXED);
	return done;
}

static void register_result(struct ring_thr *t, int err)
{
	unsigned q;

	pthread_mutex_lock(&U.lock);
	if (err) {
		say_transport("pinfs: transport /dev/fuse: io_uring queue %u: REGISTER failed: %s\n",
			      t->qid, strerror(-err));
	} else {
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

/* Commits the answers of @t's parked requests that came in (t->ready).
 * An answer whose commit cannot be queued (-EBUSY: no SQE) goes back on
 * t->ready, still parked, with all those after it: none is dropped. */
static int commit_ready(struct ring_thr *t)
{
	struct ring_ent *e, *sent, *rest, **tail;
	uint64_t v;
	int rc;

	if (read(t->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return -errno;
	rc = queue_poll(t, t->wake_fd, UD_WAKE);
	if (rc)
		return rc; /* t->ready left as it is */
	pthread_mutex_lock(&t->lock);
	sent = rest = t->ready;
	t->ready = NULL;
	pthread_mutex_unlock(&t->lock);
	/* off t->ready and answered: only this thread touches them now */
	for (; rest; rest = rest->next_ready)
		if (!sqe_cmd(rest, FFS_URING_CMD_COMMIT_AND_FETCH,
			     rest->hdr->ring_ent_in_out.commit_id))
			break;
	pthread_mutex_lock(&t->lock);
	for (e = sent; e != rest; e = e->next_ready) {
		e->parked = false;
		t->nparked--;
		__atomic_sub_fetch(&U.q_parked[t->qid], 1, __ATOMIC_RELAXED);
	}
	if (rest) {
		/* not sent: back in front of any answer that came meanwhile */
		for (tail = &rest; *tail; tail = &(*tail)->next_ready)
			;
		*tail = t->ready;
		t->ready = rest;
	}
	pthread_mutex_unlock(&t->lock);
	return rest ? -EBUSY : 0;
}

/* After a request was parked: when none of @t's entries waits for a
 * request any more, registers one more (up to RING_MAX_ENTS: then the
 * queue's other threads serve, see the top of this file). */
static void keep_one_fetching(struct ring_thr *t)
{
	struct ring_ent *e;

	if (t->nparked < t->nents || t->nents >= RING_MAX_ENTS)
		return;
	e = ent_new(t);
	if (!e || !sqe_cmd(e, FFS_URING_CMD_REGISTER, 0))
		fprintf(stderr, "pinfs: io_uring queue %u: cannot add an entry (%u parked "
				"requests): out of memory\n", t->qid, t->nents);
}

/* Handles one completion of @t's ring (@ud, @res): 0, or < 0 when the
 * thread is to stop (stop asked, unmounted, or an error, logged). */
static int ring_complete(struct ring_thr *t, uint64_t ud, int res)
{
	struct ring_ent *e;
	int rc = 0;

	if (ud == UD_STOP)
		return -ECANCELED;
	if (ud == UD_TIMER) {
		t->timer = false; /* ring_reclaim looks after the round */
	} else if (ud == UD_WAKE) {
		rc = commit_ready(t);
	} else if (res < 0) {
		/* ENOTCONN, ECANCELED: unmounted or aborted */
		if (res == -ENOTCONN || res == -ECANCELED || stopping())
			return res;
		/* this entry is lost to the queue; the others serve on */
		((struct ring_ent *)(uintptr_t)ud)->where = E_OWNED;
		fprintf(stderr, "pinfs: io_uring queue %u: %s\n", t->qid, strerror(-res));
		return 0;
	} else {
		e = (struct ring_ent *)(uintptr_t)ud;
		if (serve(e))
			rc = sqe_cmd(e, FFS_URING_CMD_COMMIT_AND_FETCH,
				     e->hdr->ring_ent_in_out.commit_id) ? 0 : -EBUSY;
		else
			keep_one_fetching(t);
	}
	if (rc < 0)
		fprintf(stderr, "pinfs: io_uring queue %u: %s\n", t->qid, strerror(-rc));
	return rc;
}

/* After an io_uring_enter() of @t's: when it took every queued command
 * (none is left in the SQ), their entries are in the kernel from now on. */
static void ring_submitted(struct ring_thr *t)
{
	unsigned i;

	if (io_uring_sq_ready(&t->ring))
		return; /* some still queued: they stay E_QUEUED until next time */
	for (i = 0; i < t->nents; i++)
		if (t->ents[i]->where == E_QUEUED)
			t->ents[i]->where = E_KERNEL;
}

/*
 * Gives back the pages of @t's entries that waited in the kernel for
 * RING_IDLE_NS without a request, and queues a timeout for the next one
 * due (entries whose command is still queued included: the next
 * io_uring_enter() submits them). Called after every completion of the
 * round was taken, before that call: the kernel writes into an entry only
 * inside it (DEFER_TASKRUN), and one it wrote into has its completion
 * taken already, so it is E_OWNED now.
 */
static void ring_reclaim(struct ring_thr *t)
{
	uint64_t now = 0, next = UINT64_MAX;
	struct io_uring_sqe *sqe;
	unsigned i;

	for (i = 0; i < t->nents; i++) {
		struct ring_ent *e = t->ents[i];
		if (e->where == E_OWNED || e->small_hw + e->pay_hw <= RING_KEEP)
			continue;
		if (!now)
			now = mono_ns(); /* only when there is something to give back */
		if (e->where == E_KERNEL && now - e->since >= RING_IDLE_NS)
			ent_release(e);
		else if (e->since + RING_IDLE_NS < next)
			next = e->since + RING_IDLE_NS;
	}
	if (next < now)
		next = now; /* queued, and due: look again right after the submit */
	if (next == UINT64_MAX || t->timer || !(sqe = ring_sqe(t)))
		return;
	next = next - now + 1000000; /* a ms late: then it is due */
	t->timer_ts.tv_sec = (long long)(next / 1000000000ull);
	t->timer_ts.tv_nsec = (long long)(next % 1000000000ull);
	io_uring_prep_timeout(sqe, &t->timer_ts, 0, 0);
	sqe->user_data = UD_TIMER;
	t->timer = true;
}

static void *ring_thread(void *arg)
{
	struct ring_thr *t = arg;
	struct io_uring_cqe *cqe;
	struct ring_ent *e;
	char name[16];
	cpu_set_t set;
	sigset_t all;
	unsigned head, n;
	int rc;

	/* signals (SIGTERM ...) are for libfuse's loop, never this thread
	 * (a ptrace stop still interrupts io_uring_enter(): retried below).
	 * A fault's signal stays deliverable: blocked, the kernel kills the
	 * daemon without its handler (log.c), and a SIGBUS from the pool
	 * mapping would not become the request's EIO (pm_fault_catch). */
	sigfillset(&all);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGILL);
	sigdelset(&all, SIGFPE);
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

	/* this thread is the ring's single issuer from now on (liburing 2.3
	 * declares io_uring_enable_rings() but does not export it) */
	rc = (int)syscall(__NR_io_uring_register, t->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS,
			  NULL, 0);
	if (rc < 0)
		rc = -errno;
	if (rc < 0) {
		register_result(t, rc);
		return NULL;
	}

	if (queue_poll(t, t->stop_fd, UD_STOP) || queue_poll(t, t->wake_fd, UD_WAKE)) {
		register_result(t, -EBUSY);
		return NULL;
	}
	e = ent_new(t);
	if (!e || !sqe_cmd(e, FFS_URING_CMD_REGISTER, 0)) {
		register_result(t, -ENOMEM);
		return NULL;
	}
	rc = ring_submit(t, 0);
	if (rc < 0) {
		register_result(t, rc);
		return NULL;
	}
	ring_submitted(t);
	/* a refused REGISTER completes at once; a taken one only when a
	 * request comes */
	if (!io_uring_peek_cqe(&t->ring, &cqe) && cqe->user_data == (uintptr_t)e && cqe->res < 0) {
		register_result(t, cqe->res);
		io_uring_cqe_seen(&t->ring, cqe);
		return NULL;
	}
	register_result(t, 0);
	for (;;) {
		/* commit this round's answers and sleep for the next requests
		 * in one io_uring_enter(); the CQEs are those next requests */
		rc = ring_submit(t, 1);
		if (rc < 0) {
			fprintf(stderr, "pinfs: io_uring queue %u: submit: %s\n", t->qid, strerror(-rc));
			break;
		}
		ring_submitted(t);
		n = 0;
		io_uring_for_each_cqe(&t->ring, head, cqe) {
			n++;
			rc = ring_complete(t, cqe->user_data, cqe->res);
			if (rc < 0)
				break;
		}
		io_uring_cq_advance(&t->ring, n);
		if (rc < 0)
			break;
		ring_reclaim(t);
	}
	return NULL;
}

bool ffs_uring_may_park(void)
{
	struct ring_ent *e = tl_cur;
	unsigned *q;

	/* a /dev/fuse request holds nothing of the rings while it waits */
	if (!e || tl_park_place)
		return true;
	/* takes the place now, so that the queue's threads asking at once
	 * cannot all pass; serve() gives it back if the request is answered */
	q = &U.q_parked[e->t->qid];
	if (__atomic_add_fetch(q, 1, __ATOMIC_RELAXED) > RING_QUEUE_PARK) {
		__atomic_sub_fetch(q, 1, __ATOMIC_RELAXED);
		return false;
	}
	tl_park_place = true;
	return true;
}

/* ---- replies -------------------------------------------------------------- */

ssize_t ffs_uring_reply(const struct iovec *iov, int count)
{
	const struct fuse_out_header *oh = iov[0].iov_base;
	struct fuse_out_header *dst;
	struct ring_ent *e;
	struct ring_thr *t;
	size_t total = 0, off = 0;
	uint64_t one = 1;
	bool wake = false;
	int k;

	/* no ring serves (not yet, or io_uring was refused): every reply is
	 * for /dev/fuse, without a look at the (empty) in-flight list */
	if (__atomic_load_n(&U.go, __ATOMIC_ACQUIRE) != 1 || stopping() ||
	    iov[0].iov_len != sizeof(*oh) || !oh->unique)
		return -ENOENT;
	for (k = 1; k < count; k++)
		total += iov[k].iov_len;
	pthread_mutex_lock(&U.flight_lock);
	e = tl_cur;
	if (!e || e->unique != oh->unique) {
		/* an asynchronous reply from another thread: find its entry */
		for (e = U.flight.fl_next; e != &U.flight && e->unique != oh->unique; e = e->fl_next)
			;
		if (e == &U.flight) {
			pthread_mutex_unlock(&U.flight_lock);
			return -ENOENT; /* a /dev/fuse request (or an interrupt's) */
		}
	}
	flight_del(e); /* answered once */
	pthread_mutex_unlock(&U.flight_lock);
	/* Off the in-flight list, the entry's buffers are this replier's: no
	 * other reply finds it, and its owner reads them only once it sees
	 * e->replied or finds it on t->ready, under t->lock, which publishes
	 * this copy (up to RING_PAYLOAD) without holding the lock for it. */
	t = e->t;
	dst = (void *)e->hdr->in_out;
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
			memcpy(e->payload + off, iov[k].iov_base, iov[k].iov_len);
			off += iov[k].iov_len;
		}
	}
	e->hdr->ring_ent_in_out.payload_sz = (uint32_t)total;
	pthread_mutex_lock(&t->lock);
	e->replied = true;
	if (e->parked) {
		/* its handler returned long ago: the owner commits it */
		e->next_ready = t->ready;
		t->ready = e;
		wake = true;
	}
	pthread_mutex_unlock(&t->lock);
	if (wake && write(t->wake_fd, &one, sizeof(one)) < 0)
		perror("pinfs: io_uring wake");
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
		__atomic_store_n(&U.go, U.offered && ok ? 1 : -1, __ATOMIC_RELEASE);
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
	t->stop_fd = eventfd(0, EFD_CLOEXEC);
	t->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (t->stop_fd < 0 || t->wake_fd < 0)
		return -errno;
	memset(&p, 0, sizeof(p));
	/* room for a completion of every entry at once, two polls and a
	 * timeout. One issuer, the ring thread, which enables the ring
	 * (R_DISABLED until then: this thread registers the file first);
	 * DEFER_TASKRUN: the kernel writes requests into the entries only
	 * inside that thread's io_uring_enter() (see ring_reclaim) */
	p.flags = IORING_SETUP_SQE128 | IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER |
		  IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED;
	p.cq_entries = 2 * RING_SQ;
	rc = io_uring_queue_init_params(RING_SQ, &t->ring, &p);
	if (rc < 0)
		return rc;
	t->ring_ok = true;
	rc = io_uring_register_files(&t->ring, &U.fd, 1);
	if (rc < 0)
		return rc;
	return 0;
}

static void thr_close(struct ring_thr *t)
{
	unsigned i;

	if (t->ring_ok)
		io_uring_queue_exit(&t->ring);
	t->ring_ok = false;
	if (t->stop_fd >= 0)
		close(t->stop_fd);
	if (t->wake_fd >= 0)
		close(t->wake_fd);
	t->stop_fd = t->wake_fd = -1;
	for (i = 0; i < t->nents; i++)
		ent_delete(t->ents[i]);
	free(t->ents);
	t->ents = NULL;
	t->nents = 0;
	pthread_mutex_destroy(&t->lock);
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
	U.q_parked = calloc(U.nq, sizeof(*U.q_parked));
	if (!U.thr || !U.q_registered || !U.q_parked) {
		snprintf(U.why, sizeof(U.why), "out of memory for %u ring threads", U.nthr);
		goto fail;
	}
	for (i = 0; i < U.nthr; i++)
		U.thr[i].stop_fd = U.thr[i].wake_fd = -1;
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
		__atomic_store_n(&U.go, -1, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&U.cv);
	pthread_mutex_unlock(&U.lock);
	for (i = 0; i < U.nthr; i++) {
		struct ring_thr *t = &U.thr[i];
		if (!t->started)
			continue;
		if (t->stop_fd >= 0 && write(t->stop_fd, &one, sizeof(one)) < 0)
			perror("pinfs: io_uring stop");
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
	uint64_t n = 0;
	unsigned i;

	for (i = 0; U.thr && i < U.nthr; i++)
		n += __atomic_load_n(&U.thr[i].requests, __ATOMIC_RELAXED);
	return n;
}

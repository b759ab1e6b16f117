/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_policy.c -- the four truncate policies of lease/policy.c,
 * without a mount: this process is the holder (SIGBUS and SIGIO are blocked
 * and collected with sigtimedwait), a second thread plays the cooperative
 * holder where one is needed.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lease/lease.h"
#include "tests/unit/check.h"

static uint64_t unpinned_blocks;
/* When armed, the next unpin report blocks (stalling the holder watcher
 * thread, which reports a dead holder's blocks) until stall_go is posted. */
static int stall_armed;
static sem_t stalled, stall_go;

static void on_unpinned(void *ctx, uint64_t pblk, uint64_t n)
{
	(void)ctx;
	(void)pblk;
	__atomic_add_fetch(&unpinned_blocks, n, __ATOMIC_RELAXED);
	if (__atomic_exchange_n(&stall_armed, 0, __ATOMIC_SEQ_CST)) {
		sem_post(&stalled);
		sem_wait(&stall_go);
	}
}

static struct lease_mgr *mgr(uint32_t policy)
{
	struct lease_cfg cfg = { .policy = policy, .busy_errno = EBUSY, .wait_timeout = 0.3,
				 .lease_break_time = 0.3 };
	struct lease_ops ops = { .unpinned = on_unpinned };
	struct lease_mgr *m = NULL;

	if (lease_mgr_new(&cfg, &ops, &m))
		return NULL;
	return m;
}

/* Pins file blocks [0, 8) of inode 7 (pool blocks 1000..1007), asking
 * for break notices as SIGIO (PINFS_PIN_NOTIFY_SIGNAL) unless @flags has
 * NOTIFY_EVENTS (then: notices through lease_ops.notify only). */
static int pin(struct lease_mgr *m, uint32_t flags, uint64_t *id)
{
	uint64_t f = 0, p = 1000, n = 8;
	int rc;

	if (!(flags & PINFS_PIN_NOTIFY_EVENTS))
		flags |= PINFS_PIN_NOTIFY_SIGNAL;
	rc = lease_pin(m, 7, 0, 8, (uint32_t)getpid(), flags, 0, &f, &p, &n, 1, id);
	if (!rc && (flags & PINFS_PIN_NOTIFY_SIGNAL))
		rc = lease_set_notify(lease_mgr_table(m), *id, SIGIO, 0);
	return rc;
}

/* The same without asking for anything: a holder that pinned from
 * client.h alone. */
static int pin_unasked(struct lease_mgr *m, uint32_t flags, uint64_t *id)
{
	uint64_t f = 0, p = 1000, n = 8;

	return lease_pin(m, 7, 0, 8, (uint32_t)getpid(), flags, 0, &f, &p, &n, 1, id);
}

/* The next SIGBUS/SIGIO within @ms: its signal number and si_value. */
static int next_signal(int ms, uint64_t *value)
{
	sigset_t set;
	siginfo_t si;
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGBUS);
	sigaddset(&set, SIGIO);
	sig = sigtimedwait(&set, &si, &ts);
	if (sig > 0) {
		if (si.si_code != SI_QUEUE)
			return -1;
		*value = (uint64_t)(uintptr_t)si.si_value.sival_ptr;
	}
	return sig;
}

static int test_fail_refuses_and_changes_nothing(void)
{
	struct lease_mgr *m = mgr(PINFS_POLICY_FAIL);
	struct lease l;
	uint64_t id, v;

	CHECK(m);
	CHECK_OK(pin(m, PINFS_PIN_WRITE | PINFS_PIN_REVOCABLE, &id));
	CHECK_EQ(lease_may_free(m, 7, 4, UINT64_MAX, PINFS_POLICY_DEFAULT, NULL), -EBUSY);
	CHECK_EQ(lease_may_free(m, 7, 8, UINT64_MAX, PINFS_POLICY_DEFAULT, NULL), 0); /* outside */
	CHECK_EQ(lease_may_free(m, 8, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, NULL), 0); /* other file */
	CHECK_OK(lease_get(lease_mgr_table(m), id, &l));
	CHECK_EQ(l.state, PINFS_LEASE_ACTIVE);
	CHECK_EQ(next_signal(0, &v), -1);
	CHECK_OK(lease_unpin(m, id, (uint32_t)getpid(), 1000));
	lease_mgr_delete(&m);
	return 0;
}

static int test_revoke_signals_sigbus_with_the_lease_id(void)
{
	struct lease_mgr *m = mgr(PINFS_POLICY_REVOKE);
	struct lease l;
	uint64_t id, id2, v = 0;

	CHECK(m);
	CHECK_OK(pin(m, PINFS_PIN_WRITE | PINFS_PIN_REVOCABLE, &id));
	CHECK_EQ(lease_may_free(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, NULL), 0);
	CHECK_EQ(next_signal(1000, &v), SIGBUS);
	CHECK_UEQ(v, id);
	CHECK_OK(lease_get(lease_mgr_table(m), id, &l));
	CHECK_EQ(l.state, PINFS_LEASE_REVOKED);
	/* the blocks stay pinned (quarantined) until the holder unpins */
	CHECK(lease_mgr_block_pinned(m, 1003));
	unpinned_blocks = 0;
	CHECK_OK(lease_unpin(m, id, (uint32_t)getpid(), 1000));
	CHECK_UEQ(unpinned_blocks, 8);
	/* a pin that is not revocable makes revoke refuse, and nothing moves */
	CHECK_OK(pin(m, PINFS_PIN_WRITE, &id2));
	CHECK_EQ(lease_may_free(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, NULL), -EBUSY);
	CHECK_EQ(next_signal(0, &v), -1);
	/* only the holder or root may unpin */
	CHECK_EQ(lease_unpin(m, id2, (uint32_t)getpid() + 1, 1000), -EPERM);
	CHECK_OK(lease_unpin(m, id2, 1, 0));
	lease_mgr_delete(&m);
	return 0;
}

struct coop {
	struct lease_mgr *m;
	uint64_t id;
	int delay_ms;
};

static void *unpin_later(void *arg)
{
	struct coop *c = arg;
	struct timespec ts = { 0, (long)c->delay_ms * 1000000L };

	nanosleep(&ts, NULL);
	lease_unpin(c->m, c->id, (uint32_t)getpid(), 1000);
	return NULL;
}

static int test_wait_blocks_until_unpin_then_times_out(void)
{
	struct lease_mgr *m = mgr(PINFS_POLICY_WAIT);
	struct coop c;
	pthread_t t;
	uint64_t id, v;

	CHECK(m);
	CHECK_OK(pin(m, PINFS_PIN_WRITE | PINFS_PIN_REVOCABLE, &id));
	c.m = m;
	c.id = id;
	c.delay_ms = 100;
	CHECK_OK(pthread_create(&t, NULL, unpin_later, &c));
	CHECK_EQ(lease_may_free(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, NULL), 0);
	pthread_join(t, NULL);
	CHECK_EQ(next_signal(0, &v), -1); /* wait never signals */
	/* nobody unpins: busy after wait_timeout */
	CHECK_OK(pin(m, PINFS_PIN_WRITE | PINFS_PIN_REVOCABLE, &id));
	CHECK_EQ(lease_may_free(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, NULL), -EBUSY);
	CHECK_OK(lease_unpin(m, id, (uint32_t)getpid(), 1000));
	lease_mgr_delete(&m);
	return 0;
}

static int test_break_notices_then_revokes_or_refuses(void)
{
	struct lease_mgr *m = mgr(PINFS_POLICY_BREAK);
	struct lease l;
	uint64_t id, v = 0;

	CHECK(m);
	/* revocable, does not unpin: SIGIO, then SIGBUS after the grace */
	CHECK_OK(pin(m, PINFS_PIN_WRITE | PINFS_PIN_REVOCABLE, &id));
	CHECK_EQ(lease_may_free(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, NULL), 0);
	{
		/* both are pending by now; sigtimedwait hands out the lower
		 * number first, so only the set can be checked here (the mount
		 * tests check the order) */
		int a = next_signal(1000, &v), b;
		uint64_t v2 = 0;
		CHECK_UEQ(v, id);
		b = next_signal(1000, &v2);
		CHECK_UEQ(v2, id);
		CHECK_EQ(a + b, SIGIO + SIGBUS);
		CHECK(a == SIGIO || b == SIGIO);
	}
	CHECK_OK(lease_unpin(m, id, (uint32_t)getpid(), 1000));
	/* not revocable: SIGIO, then a refusal, and the lease is active again */
	CHECK_OK(pin(m, PINFS_PIN_WRITE, &id));
	CHECK_EQ(lease_may_free(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, NULL), -EBUSY);
	CHECK_EQ(next_signal(1000, &v), SIGIO);
	CHECK_EQ(next_signal(0, &v), -1);
	CHECK_OK(lease_get(lease_mgr_table(m), id, &l));
	CHECK_EQ(l.state, PINFS_LEASE_ACTIVE);
	CHECK_OK(lease_unpin(m, id, (uint32_t)getpid(), 1000));
	lease_mgr_delete(&m);
	return 0;
}

/* Issue 17: a holder that asked for nothing is sent no signal under
 * break (SIGIO's default action would kill it): its break time passes,
 * then it is refused (not revocable) or revoked with SIGBUS (revocable:
 * that it accepted). One that named a signal gets exactly that one. */
static int test_break_signals_only_holders_that_asked(void)
{
	struct lease_mgr *m = mgr(PINFS_POLICY_BREAK);
	struct lease l;
	uint64_t id, v = 0;

	CHECK(m);
	CHECK_OK(pin_unasked(m, PINFS_PIN_WRITE, &id));
	CHECK_EQ(lease_may_free(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, NULL), -EBUSY);
	CHECK_EQ(next_signal(200, &v), -1); /* no SIGIO, no SIGBUS */
	CHECK_OK(lease_get(lease_mgr_table(m), id, &l));
	CHECK_EQ(l.state, PINFS_LEASE_ACTIVE);
	CHECK_OK(lease_unpin(m, id, (uint32_t)getpid(), 1000));

	CHECK_OK(pin_unasked(m, PINFS_PIN_WRITE | PINFS_PIN_REVOCABLE, &id));
	CHECK_EQ(lease_may_free(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, NULL), 0);
	CHECK_EQ(next_signal(1000, &v), SIGBUS); /* revocation only */
	CHECK_UEQ(v, id);
	CHECK_EQ(next_signal(100, &v), -1);
	CHECK_OK(lease_unpin(m, id, (uint32_t)getpid(), 1000));

	/* a named signal: SIGBUS here (blocked like SIGIO), as the break
	 * notice; the refusal follows, no second signal */
	CHECK_OK(pin_unasked(m, PINFS_PIN_WRITE | PINFS_PIN_NOTIFY_SIGNAL, &id));
	CHECK_OK(lease_set_notify(lease_mgr_table(m), id, SIGBUS, 0));
	CHECK_EQ(lease_may_free(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, NULL), -EBUSY);
	CHECK_EQ(next_signal(1000, &v), SIGBUS);
	CHECK_UEQ(v, id);
	CHECK_EQ(next_signal(100, &v), -1);
	CHECK_OK(lease_unpin(m, id, (uint32_t)getpid(), 1000));
	lease_mgr_delete(&m);
	return 0;
}

static int notified_revokes;
static uint64_t notified_id;

static void on_notify(void *ctx, const struct lease *l, uint32_t event, uint32_t policy,
		      uint32_t break_ms)
{
	(void)ctx, (void)policy, (void)break_ms;
	if (event == PINFS_EV_REVOKE) {
		notified_revokes++;
		notified_id = l->id;
	}
}

/* A revocable holder that chose the event channel is told of its
 * revocation there, and sent no SIGBUS (under revoke, and when its short
 * pin expires); one that did not gets SIGBUS and no record. */
static int test_revocation_is_told_on_the_chosen_channel(void)
{
	struct lease_cfg cfg = { .policy = PINFS_POLICY_REVOKE, .busy_errno = EBUSY,
				 .wait_timeout = 0.3, .lease_break_time = 0.3,
				 .short_pin_max = 0.2 };
	struct lease_ops ops = { .unpinned = on_unpinned, .notify = on_notify };
	struct lease_mgr *m = NULL;
	uint64_t id, v = 0;

	CHECK_OK(lease_mgr_new(&cfg, &ops, &m));
	notified_revokes = 0;
	CHECK_OK(pin_unasked(m, PINFS_PIN_WRITE | PINFS_PIN_REVOCABLE | PINFS_PIN_NOTIFY_EVENTS,
			     &id));
	CHECK_EQ(lease_may_free(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, NULL), 0);
	CHECK_EQ(notified_revokes, 1);
	CHECK_UEQ(notified_id, id);
	CHECK_EQ(next_signal(300, &v), -1); /* no SIGBUS */
	CHECK_OK(lease_unpin(m, id, (uint32_t)getpid(), 1000));

	/* a short pin kept past short_pin_max: the record, no signal */
	notified_revokes = 0;
	CHECK_OK(pin_unasked(m,
			     PINFS_PIN_WRITE | PINFS_PIN_REVOCABLE | PINFS_PIN_SHORT |
				     PINFS_PIN_NOTIFY_EVENTS,
			     &id));
	CHECK_EQ(lease_may_free(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, NULL), 0);
	CHECK_EQ(notified_revokes, 1);
	CHECK_EQ(next_signal(300, &v), -1);
	CHECK_OK(lease_unpin(m, id, (uint32_t)getpid(), 1000));

	/* without the channel: SIGBUS, no record */
	notified_revokes = 0;
	CHECK_OK(pin_unasked(m, PINFS_PIN_WRITE | PINFS_PIN_REVOCABLE, &id));
	CHECK_EQ(lease_may_free(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, NULL), 0);
	CHECK_EQ(next_signal(1000, &v), SIGBUS);
	CHECK_UEQ(v, id);
	CHECK_EQ(notified_revokes, 0);
	CHECK_OK(lease_unpin(m, id, (uint32_t)getpid(), 1000));
	lease_mgr_delete(&m);
	return 0;
}

static int test_per_file_policy_overrides_and_busy_errno(void)
{
	struct lease_cfg cfg = { .policy = PINFS_POLICY_REVOKE, .busy_errno = ETXTBSY,
				 .wait_timeout = 0.1, .lease_break_time = 0.1 };
	struct lease_ops ops = { .unpinned = on_unpinned };
	struct lease_mgr *m = NULL;
	uint64_t id, v;
	uint32_t p;

	CHECK_OK(lease_mgr_new(&cfg, &ops, &m));
	CHECK_OK(pin(m, PINFS_PIN_WRITE | PINFS_PIN_REVOCABLE, &id));
	CHECK_EQ(lease_may_free(m, 7, 0, UINT64_MAX, PINFS_POLICY_FAIL, NULL), -ETXTBSY);
	lease_mgr_set_policy(m, PINFS_POLICY_FAIL);
	CHECK_EQ(lease_may_free(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, NULL), -ETXTBSY);
	CHECK_EQ(next_signal(0, &v), -1);
	CHECK_OK(lease_unpin(m, id, (uint32_t)getpid(), 1000));
	CHECK_EQ(lease_policy_parse("bogus", &p), -EINVAL);
	CHECK_OK(lease_policy_parse("break", &p));
	CHECK_EQ(p, PINFS_POLICY_BREAK);
	lease_mgr_delete(&m);
	return 0;
}

/* A truncate to a non-zero size waits on [from, end of file): pins that
 * start anywhere in that range get EAGAIN (the range's end once wrapped
 * around, letting every pin past its start through). */
struct waiter {
	struct lease_mgr *m;
	int rc;
};

static void *wait_truncate(void *arg)
{
	struct waiter *w = arg;

	w->rc = lease_may_free(w->m, 7, 4, UINT64_MAX, PINFS_POLICY_WAIT, NULL);
	return NULL;
}

static int test_pins_in_a_waiting_truncates_range_are_eagain(void)
{
	struct lease_mgr *m = mgr(PINFS_POLICY_WAIT);
	struct waiter w = { m, 1 };
	uint64_t id, id2, f = 6, p = 2000, n = 4;
	pthread_t th;

	CHECK(m);
	CHECK_OK(pin(m, PINFS_PIN_WRITE, &id));                 /* file blocks [0, 8) */
	CHECK_OK(pthread_create(&th, NULL, wait_truncate, &w));  /* frees [4, ...) */
	usleep(100000);
	CHECK_EQ(lease_pin(m, 7, 6, 4, (uint32_t)getpid(), 0, 0, &f, &p, &n, 1, &id2), -EAGAIN);
	f = 100;
	CHECK_EQ(lease_pin(m, 7, 100, 4, (uint32_t)getpid(), 0, 0, &f, &p, &n, 1, &id2), -EAGAIN);
	f = 0;
	CHECK_OK(lease_pin(m, 7, 0, 4, (uint32_t)getpid(), 0, 0, &f, &p, &n, 1, &id2)); /* before */
	CHECK_OK(lease_unpin(m, id2, (uint32_t)getpid(), 1000));
	pthread_join(th, NULL);
	CHECK_EQ(w.rc, -EBUSY);                                  /* wait_timeout */
	CHECK_OK(lease_unpin(m, id, (uint32_t)getpid(), 1000));
	lease_mgr_delete(&m);
	return 0;
}

static pid_t sleeper(void)
{
	pid_t pid = fork();

	if (pid == 0) {
		for (;;)
			pause();
	}
	return pid;
}

static bool lease_exists(struct lease_mgr *m, uint64_t id)
{
	struct lease l;

	return lease_get(lease_mgr_table(m), id, &l) == 0;
}

/*
 * A pid the kernel hands to a new process while the old holder's exit is
 * still waiting to be handled: the new process's leases must survive the
 * old exit. The watcher thread is stalled in a report; the pid is reused
 * through /proc/sys/kernel/ns_last_pid (root; skipped otherwise).
 */
static int test_a_reused_pid_keeps_its_new_leases(void)
{
	struct lease_mgr *m = mgr(PINFS_POLICY_FAIL);
	uint64_t f = 0, p = 3000, n = 1, idq, id1, id2;
	pid_t q, p1, p2 = -1;
	int tries, fd;

	CHECK(m);
	fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY);
	if (fd < 0) {
		lease_mgr_delete(&m);
		return T_EXIT_SKIP;
	}
	sem_init(&stalled, 0, 0);
	sem_init(&stall_go, 0, 0);
	/* 1. stall the watcher in the exit of Q */
	q = sleeper();
	CHECK_OK(lease_pin(m, 9, 0, 1, (uint32_t)q, 0, 0, &f, &p, &n, 1, &idq));
	__atomic_store_n(&stall_armed, 1, __ATOMIC_SEQ_CST);
	kill(q, SIGKILL);
	waitpid(q, NULL, 0);
	CHECK_OK(sem_wait(&stalled));
	/* 2. P pins and exits; its exit cannot be handled yet */
	p1 = sleeper();
	p = 3001;
	CHECK_OK(lease_pin(m, 7, 0, 1, (uint32_t)p1, 0, 0, &f, &p, &n, 1, &id1));
	kill(p1, SIGKILL);
	waitpid(p1, NULL, 0);
	/* 3. a new process gets P's pid and pins another file */
	for (tries = 0; tries < 200 && p2 != p1; tries++) {
		char b[32];
		int len = snprintf(b, sizeof(b), "%d", p1 - 1);
		if (p2 > 0) {
			kill(p2, SIGKILL);
			waitpid(p2, NULL, 0);
		}
		if (pwrite(fd, b, (size_t)len, 0) != len)
			break;
		p2 = sleeper();
	}
	close(fd);
	if (p2 != p1) {
		if (p2 > 0) {
			kill(p2, SIGKILL);
			waitpid(p2, NULL, 0);
		}
		sem_post(&stall_go);
		lease_mgr_delete(&m);
		return T_EXIT_SKIP;
	}
	p = 3002;
	CHECK_OK(lease_pin(m, 8, 0, 1, (uint32_t)p2, 0, 0, &f, &p, &n, 1, &id2));
	/* 4. the old exit is handled: the old lease goes, the new one stays */
	sem_post(&stall_go);
	for (tries = 0; tries < 200 && lease_exists(m, id1); tries++)
		usleep(10000);
	CHECK(!lease_exists(m, id1));
	CHECK(!lease_exists(m, idq));
	CHECK(lease_exists(m, id2));
	CHECK_EQ(lease_may_free(m, 8, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, NULL), -EBUSY);
	/* 5. and goes with its own process */
	kill(p2, SIGKILL);
	waitpid(p2, NULL, 0);
	for (tries = 0; tries < 200 && lease_exists(m, id2); tries++)
		usleep(10000);
	CHECK(!lease_exists(m, id2));
	lease_mgr_delete(&m);
	return 0;
}

/* The holder dies between being watched and its lease being added (here:
 * in the holders_changed callback, which runs in between): the pin fails
 * with ESRCH and leaves no lease behind that no exit would ever end. */
static pid_t dying;

static void kill_dying(void *ctx)
{
	/* also called from the watcher thread (after an exit) */
	pid_t pid = __atomic_exchange_n(&dying, 0, __ATOMIC_SEQ_CST);

	(void)ctx;
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		usleep(100000); /* the watcher handles the exit */
	}
}

static int test_a_holder_dying_during_its_pin_leaves_no_lease(void)
{
	struct lease_cfg cfg = { .policy = PINFS_POLICY_FAIL, .busy_errno = EBUSY,
				 .wait_timeout = 0.3, .lease_break_time = 0.3 };
	struct lease_ops ops = { .unpinned = on_unpinned, .holders_changed = kill_dying };
	struct lease_mgr *m = NULL;
	uint64_t f = 0, p = 5000, n = 1, id = 0;
	pid_t pid;

	CHECK_OK(lease_mgr_new(&cfg, &ops, &m));
	pid = sleeper();
	CHECK(pid > 0);
	__atomic_store_n(&dying, pid, __ATOMIC_SEQ_CST);
	CHECK_EQ(lease_pin(m, 9, 0, 1, (uint32_t)pid, 0, 0, &f, &p, &n, 1, &id), -ESRCH);
	usleep(100000);
	CHECK(!lease_mgr_block_pinned(m, 5000));
	CHECK_EQ(lease_count_ino(lease_mgr_table(m), 9), 0);
	lease_mgr_delete(&m);
	return 0;
}

/* A holder's exit is one event: how many leases ended in nleases, err 0. */
static int test_exit_event_counts_the_holders_leases(void)
{
	struct lease_mgr *m = mgr(PINFS_POLICY_FAIL);
	uint64_t f = 0, p = 6000, n = 1, id;
	struct pinfs_events ev;
	pid_t pid = sleeper();
	uint32_t i;

	CHECK(m);
	CHECK(pid > 0);
	CHECK_OK(lease_pin(m, 11, 0, 1, (uint32_t)pid, 0, 0, &f, &p, &n, 1, &id));
	p = 6001;
	CHECK_OK(lease_pin(m, 11, 0, 1, (uint32_t)pid, 0, 0, &f, &p, &n, 1, &id));
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	for (i = 0; i < 50 && lease_count_ino(lease_mgr_table(m), 11); i++)
		usleep(10000);
	memset(&ev, 0, sizeof(ev));
	lease_mgr_events(m, 0, 0, &ev);
	CHECK_EQ(ev.n, 3);
	CHECK_EQ(ev.ev[2].type, PINFS_EV_EXIT);
	CHECK_EQ(ev.ev[2].holder_pid, (uint32_t)pid);
	CHECK_EQ(ev.ev[2].nleases, 2);
	CHECK_EQ(ev.ev[2].err, 0);
	lease_mgr_delete(&m);
	return 0;
}

/* ---- parked waits (lease_may_free_nowait, lease_mgr_events_nowait) ---- */

struct parked {
	sem_t called;
	int status, ncalls;
	uint64_t at_ns; /* CLOCK_MONOTONIC of the call */
	struct lease_mgr *m;
	struct lease_wait *w; /* ended by the callback on -ESHUTDOWN */
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void parked_fn(void *arg, int status)
{
	struct parked *p = arg;

	p->status = status;
	p->ncalls++;
	p->at_ns = mono_ns();
	if (status == -ESHUTDOWN)
		lease_wait_end(p->m, &p->w);
	sem_post(&p->called);
}

/* Waits up to @ms for the callback: 0, or -1 if it did not come. */
static int parked_wait(struct parked *p, int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	while (sem_timedwait(&p->called, &ts) != 0)
		if (errno != EINTR)
			return -1;
	return 0;
}

static int test_a_parked_truncate_is_called_back_when_the_pin_ends(void)
{
	struct lease_mgr *m = mgr(PINFS_POLICY_WAIT);
	struct lease_wait *w = NULL;
	struct parked p = { .m = m };
	struct pinfs_events ev;
	uint64_t id, id2, f = 6, pb = 2000, n = 2, v;

	CHECK(m);
	sem_init(&p.called, 0, 0);
	CHECK_OK(pin(m, PINFS_PIN_WRITE, &id));
	CHECK_EQ(lease_may_free_nowait(m, 7, 4, UINT64_MAX, PINFS_POLICY_DEFAULT, 0, &w), -EINPROGRESS);
	CHECK(w);
	/* it waits: its range takes no new pin meanwhile, and it said so */
	CHECK_EQ(lease_pin(m, 7, 6, 2, (uint32_t)getpid(), 0, 0, &f, &pb, &n, 1, &id2), -EAGAIN);
	lease_mgr_events(m, 0, 0, &ev);
	CHECK_EQ(ev.n, 2);
	CHECK_EQ(ev.ev[1].type, PINFS_EV_WAIT);
	lease_wait_arm(m, w, parked_fn, &p);
	CHECK_EQ(parked_wait(&p, 100), -1); /* nothing to look at again yet */
	CHECK_OK(lease_unpin(m, id, (uint32_t)getpid(), 1000));
	CHECK_OK(parked_wait(&p, 1000));
	CHECK_EQ(p.status, 0);
	CHECK_EQ(lease_may_free_nowait(m, 7, 4, UINT64_MAX, PINFS_POLICY_DEFAULT, 0, &w), 0);
	lease_wait_end(m, &w);
	CHECK(!w);
	CHECK_OK(lease_pin(m, 7, 6, 2, (uint32_t)getpid(), 0, 0, &f, &pb, &n, 1, &id2));
	CHECK_OK(lease_unpin(m, id2, (uint32_t)getpid(), 1000));
	CHECK_EQ(next_signal(0, &v), -1); /* wait never signals */
	CHECK_EQ(p.ncalls, 1);
	lease_mgr_delete(&m);
	sem_destroy(&p.called);
	return 0;
}

static int test_a_parked_truncate_is_refused_at_the_deadline(void)
{
	struct lease_mgr *m = mgr(PINFS_POLICY_WAIT); /* wait_timeout 0.3 s */
	struct lease_wait *w = NULL;
	struct parked p = { .m = m };
	struct pinfs_events ev;
	uint64_t id, t0 = mono_ns();

	CHECK(m);
	sem_init(&p.called, 0, 0);
	CHECK_OK(pin(m, PINFS_PIN_WRITE, &id));
	CHECK_EQ(lease_may_free_nowait(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, 0, &w), -EINPROGRESS);
	lease_wait_arm(m, w, parked_fn, &p);
	CHECK_OK(parked_wait(&p, 2000));
	CHECK_EQ(p.status, 0);
	CHECK_UGE(p.at_ns - t0, 300000000ull);
	CHECK_EQ(lease_may_free_nowait(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, 0, &w), -EBUSY);
	lease_wait_end(m, &w);
	lease_mgr_events(m, 0, 0, &ev);
	CHECK_EQ(ev.n, 3);
	CHECK_EQ(ev.ev[2].type, PINFS_EV_REFUSE);
	CHECK_EQ(ev.ev[2].err, EBUSY);
	CHECK_OK(lease_unpin(m, id, (uint32_t)getpid(), 1000));
	lease_mgr_delete(&m);
	sem_destroy(&p.called);
	return 0;
}

static int test_an_interrupted_parked_break_answers_eintr_and_hands_the_lease_back(void)
{
	struct lease_cfg cfg = { .policy = PINFS_POLICY_BREAK, .busy_errno = EBUSY,
				 .wait_timeout = 10, .lease_break_time = 10 };
	struct lease_ops ops = { .unpinned = on_unpinned };
	struct lease_mgr *m = NULL;
	struct lease_wait *w = NULL;
	struct parked p;
	struct lease l;
	uint64_t id, v = 0;

	CHECK_OK(lease_mgr_new(&cfg, &ops, &m));
	memset(&p, 0, sizeof(p));
	p.m = m;
	sem_init(&p.called, 0, 0);
	CHECK_OK(pin(m, PINFS_PIN_WRITE | PINFS_PIN_REVOCABLE, &id));
	CHECK_EQ(lease_may_free_nowait(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, 0, &w), -EINPROGRESS);
	CHECK_EQ(next_signal(1000, &v), SIGIO);
	CHECK_UEQ(v, id);
	CHECK_OK(lease_get(lease_mgr_table(m), id, &l));
	CHECK_EQ(l.state, PINFS_LEASE_BREAKING);
	lease_wait_arm(m, w, parked_fn, &p);
	lease_wait_interrupt(m, w);
	CHECK_OK(parked_wait(&p, 1000));
	CHECK_EQ(lease_may_free_nowait(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, 0, &w), -EINTR);
	lease_wait_end(m, &w);
	CHECK_OK(lease_get(lease_mgr_table(m), id, &l));
	CHECK_EQ(l.state, PINFS_LEASE_ACTIVE);
	CHECK_EQ(next_signal(0, &v), -1); /* no SIGBUS: nothing was revoked */
	CHECK_OK(lease_unpin(m, id, (uint32_t)getpid(), 1000));
	lease_mgr_delete(&m);
	sem_destroy(&p.called);
	return 0;
}

static int test_deleting_the_manager_answers_every_parked_wait(void)
{
	struct lease_mgr *m = mgr(PINFS_POLICY_WAIT);
	struct parked pt, pe;
	struct pinfs_events *ev = calloc(1, sizeof(*ev));
	uint64_t id, seq;

	CHECK(m);
	CHECK(ev);
	memset(&pt, 0, sizeof(pt));
	memset(&pe, 0, sizeof(pe));
	pt.m = pe.m = m;
	sem_init(&pt.called, 0, 0);
	sem_init(&pe.called, 0, 0);
	CHECK_OK(pin(m, PINFS_PIN_WRITE, &id));
	CHECK_EQ(lease_may_free_nowait(m, 7, 0, UINT64_MAX, PINFS_POLICY_WAIT, 0, &pt.w), -EINPROGRESS);
	lease_mgr_events(m, 0, 0, ev);
	seq = ev->next_seq;
	CHECK_EQ(lease_mgr_events_nowait(m, seq, 1000, 0, ev, &pe.w), -EINPROGRESS);
	lease_wait_arm(m, pt.w, parked_fn, &pt);
	lease_wait_arm(m, pe.w, parked_fn, &pe);
	lease_mgr_delete(&m); /* the lease goes with it */
	CHECK_EQ(pt.ncalls, 1);
	CHECK_EQ(pt.status, -ESHUTDOWN);
	CHECK(!pt.w);
	CHECK_EQ(pe.ncalls, 1);
	CHECK_EQ(pe.status, -ESHUTDOWN);
	CHECK(!pe.w);
	free(ev);
	sem_destroy(&pt.called);
	sem_destroy(&pe.called);
	return 0;
}

/* A reader sees the events of its own holders' leases; root sees all. The
 * holder is this process: its uid is ours. */
static int test_events_show_a_user_only_their_own_holders_events(void)
{
	struct lease_mgr *m = mgr(PINFS_POLICY_FAIL);
	uint32_t me = (uint32_t)geteuid(), other = me ? me + 1 : 12345;
	struct pinfs_events *ev = calloc(1, sizeof(*ev));
	struct lease_wait *w = NULL;
	struct parked p;
	uint64_t id, t0;

	CHECK(m);
	CHECK(ev);
	memset(&p, 0, sizeof(p));
	p.m = m;
	sem_init(&p.called, 0, 0);
	CHECK_OK(pin(m, 0, &id));
	CHECK_EQ(lease_may_free(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, NULL), -EBUSY);
	CHECK_OK(lease_mgr_events_nowait(m, 0, 0, me, ev, &w));
	CHECK_EQ(ev->n, 2); /* PIN, REFUSE */
	CHECK_EQ(ev->ev[0].type, PINFS_EV_PIN);
	CHECK_EQ(ev->ev[1].type, PINFS_EV_REFUSE);
	CHECK_OK(lease_mgr_events_nowait(m, 0, 0, 0, ev, &w));
	CHECK_EQ(ev->n, 2);
	CHECK_OK(lease_mgr_events_nowait(m, 0, 0, other, ev, &w));
	CHECK_EQ(ev->n, 0);
	CHECK_UEQ(ev->next_seq, 2); /* looked past them all the same */
	CHECK(!w);
	/* another user's reader waits out its timeout through our events */
	t0 = mono_ns();
	CHECK_EQ(lease_mgr_events_nowait(m, 2, 300, other, ev, &w), -EINPROGRESS);
	lease_wait_arm(m, w, parked_fn, &p);
	CHECK_OK(lease_unpin(m, id, (uint32_t)getpid(), 1000));
	CHECK_OK(parked_wait(&p, 2000));
	CHECK_EQ(p.status, 0);
	CHECK_UGE(p.at_ns - t0, 300000000ull);
	CHECK_EQ(ev->n, 0);
	CHECK_UEQ(ev->next_seq, 3);
	lease_wait_end(m, &w);
	/* ours is answered by the next event of ours */
	CHECK_EQ(lease_mgr_events_nowait(m, 3, 1000, me, ev, &w), -EINPROGRESS);
	lease_wait_arm(m, w, parked_fn, &p);
	t0 = mono_ns();
	CHECK_OK(pin(m, 0, &id));
	CHECK_OK(parked_wait(&p, 2000));
	CHECK_EQ(p.status, 0);
	CHECK_LT(p.at_ns - t0, 200000000ull);
	CHECK_EQ(ev->n, 1);
	CHECK_EQ(ev->ev[0].type, PINFS_EV_PIN);
	CHECK_UEQ(ev->ev[0].lease_id, id);
	lease_wait_end(m, &w);
	CHECK_OK(lease_unpin(m, id, (uint32_t)getpid(), 1000));
	lease_mgr_delete(&m);
	free(ev);
	sem_destroy(&p.called);
	return 0;
}

/* ---- bounds on parked requests (cfg.max_parked_per_user, ops.may_park) ---- */

static int room_for_more = 1;

static bool may_park(void *ctx)
{
	(void)ctx;
	return room_for_more;
}

/* A user's EVENTS reads past max_parked_per_user answer -EAGAIN and wait
 * for nothing; another user's still wait; a place comes back when a wait
 * ends. */
static int test_parked_events_reads_are_bounded_per_user(void)
{
	struct lease_cfg cfg = { .policy = PINFS_POLICY_FAIL, .busy_errno = EBUSY,
				 .max_parked_per_user = 3 };
	struct lease_ops ops = { .unpinned = on_unpinned };
	struct pinfs_events *ev = calloc(1, sizeof(*ev));
	struct lease_wait *w[5] = { NULL };
	struct lease_mgr *m = NULL;
	int i;

	CHECK(ev);
	CHECK_OK(lease_mgr_new(&cfg, &ops, &m));
	for (i = 0; i < 3; i++)
		CHECK_EQ(lease_mgr_events_nowait(m, 0, 1000, 1000, ev, &w[i]), -EINPROGRESS);
	CHECK_UEQ(lease_mgr_parked(m, 1000), 3);
	CHECK_EQ(lease_mgr_events_nowait(m, 0, 1000, 1000, ev, &w[3]), -EAGAIN);
	CHECK(!w[3]);
	CHECK_UEQ(lease_mgr_parked(m, 1000), 3);
	/* an answer at once needs no place */
	CHECK_OK(lease_mgr_events_nowait(m, 0, 0, 1000, ev, &w[3]));
	CHECK(!w[3]);
	/* the bound is each user's own */
	CHECK_EQ(lease_mgr_events_nowait(m, 0, 1000, 1001, ev, &w[4]), -EINPROGRESS);
	CHECK_UEQ(lease_mgr_parked(m, 1001), 1);
	CHECK_UEQ(lease_mgr_parked(m, 0), 4); /* root's view: every user's */
	lease_wait_end(m, &w[0]);
	CHECK_UEQ(lease_mgr_parked(m, 1000), 2);
	CHECK_EQ(lease_mgr_events_nowait(m, 0, 1000, 1000, ev, &w[0]), -EINPROGRESS);
	for (i = 0; i < 5; i++)
		lease_wait_end(m, &w[i]);
	CHECK_UEQ(lease_mgr_parked(m, 0), 0);
	lease_mgr_delete(&m);
	free(ev);
	return 0;
}

/* Past the bound a truncate that would wait is refused at once, as policy
 * fail refuses (busy_errno, a REFUSE event), sends no break notice and
 * leaves the range open to pins; under it, it waits. */
static int test_a_truncate_past_the_parked_bound_is_refused_not_parked(void)
{
	struct lease_cfg cfg = { .policy = PINFS_POLICY_BREAK, .busy_errno = ETXTBSY,
				 .wait_timeout = 10, .lease_break_time = 10,
				 .max_parked_per_user = 1 };
	struct lease_ops ops = { .unpinned = on_unpinned };
	struct pinfs_events *ev = calloc(1, sizeof(*ev));
	struct lease_wait *w = NULL, *w2 = NULL;
	struct lease_mgr *m = NULL;
	struct lease l;
	uint64_t id, id2, v, seq, f = 6, pb = 2000, n = 2;

	CHECK(ev);
	CHECK_OK(lease_mgr_new(&cfg, &ops, &m));
	CHECK_OK(pin(m, PINFS_PIN_WRITE | PINFS_PIN_REVOCABLE, &id));
	CHECK_EQ(lease_mgr_events_nowait(m, 1, 1000, 1000, ev, &w), -EINPROGRESS);
	lease_mgr_events(m, 0, 0, ev);
	seq = ev->next_seq;
	CHECK_EQ(lease_may_free_nowait(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, 1000, &w2),
		 -ETXTBSY);
	CHECK(!w2);
	lease_mgr_events(m, seq, 0, ev);
	CHECK_EQ(ev->n, 1);
	CHECK_EQ(ev->ev[0].type, PINFS_EV_REFUSE);
	CHECK_EQ(ev->ev[0].err, ETXTBSY);
	CHECK_EQ(next_signal(0, &v), -1); /* no break notice */
	CHECK_OK(lease_get(lease_mgr_table(m), id, &l));
	CHECK_EQ(l.state, PINFS_LEASE_ACTIVE);
	CHECK_OK(lease_pin(m, 7, 6, 2, (uint32_t)getpid(), 0, 0, &f, &pb, &n, 1, &id2));
	CHECK_OK(lease_unpin(m, id2, (uint32_t)getpid(), 1000));
	/* another user's truncate may wait */
	CHECK_EQ(lease_may_free_nowait(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, 1001, &w2),
		 -EINPROGRESS);
	CHECK_EQ(next_signal(1000, &v), SIGIO);
	lease_wait_end(m, &w2);
	lease_wait_end(m, &w);
	CHECK_UEQ(lease_mgr_parked(m, 0), 0);
	CHECK_OK(lease_unpin(m, id, (uint32_t)getpid(), 1000));
	lease_mgr_delete(&m);
	free(ev);
	return 0;
}

/* When the transport has no room (ops.may_park), nothing is parked, for
 * any user, root included. */
static int test_no_wait_is_made_when_the_transport_has_no_room(void)
{
	struct lease_cfg cfg = { .policy = PINFS_POLICY_WAIT, .busy_errno = EBUSY,
				 .wait_timeout = 10 };
	struct lease_ops ops = { .unpinned = on_unpinned, .may_park = may_park };
	struct pinfs_events *ev = calloc(1, sizeof(*ev));
	struct lease_wait *w = NULL;
	struct lease_mgr *m = NULL;
	uint64_t id;

	CHECK(ev);
	CHECK_OK(lease_mgr_new(&cfg, &ops, &m));
	CHECK_OK(pin(m, PINFS_PIN_WRITE, &id));
	room_for_more = 0;
	CHECK_EQ(lease_mgr_events_nowait(m, 1, 1000, 0, ev, &w), -EAGAIN);
	CHECK_EQ(lease_may_free_nowait(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, 0, &w), -EBUSY);
	CHECK(!w);
	room_for_more = 1;
	CHECK_EQ(lease_may_free_nowait(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, 0, &w),
		 -EINPROGRESS);
	lease_wait_end(m, &w);
	CHECK_OK(lease_unpin(m, id, (uint32_t)getpid(), 1000));
	lease_mgr_delete(&m);
	free(ev);
	return 0;
}

static uint64_t layout_revoked_id;
static int layout_revoked_calls;

static void on_layout_revoked(void *ctx, uint64_t id)
{
	(void)ctx;
	layout_revoked_id = id;
	layout_revoked_calls++;
}

/* Layout leases (pinfs-dax): under every policy a truncate over one goes
 * ahead at once, revokes it without a signal and says so through
 * ops.layout_revoked; its blocks stay quarantined until the unpin. A
 * shrink revokes the layout lease on the new last block too; policy fail
 * still refuses for an ordinary pin in the range. */
static int test_layout_leases_are_revoked_at_once_under_every_policy(void)
{
	static const uint32_t policies[] = { PINFS_POLICY_FAIL, PINFS_POLICY_REVOKE,
					     PINFS_POLICY_WAIT, PINFS_POLICY_BREAK };

	for (unsigned i = 0; i < 4; i++) {
		struct lease_cfg cfg = { .policy = policies[i], .busy_errno = EBUSY,
					 .wait_timeout = 30, .lease_break_time = 30 };
		struct lease_ops ops = { .unpinned = on_unpinned,
					 .layout_revoked = on_layout_revoked };
		struct lease_mgr *m = NULL;
		struct timespec t0, t1;
		struct lease l;
		uint64_t id, id2, v;

		CHECK_OK(lease_mgr_new(&cfg, &ops, &m));
		CHECK_OK(pin(m, PINFS_PIN_WRITE | PINFS_PIN_REVOCABLE | PINFS_PIN_LAYOUT, &id));
		layout_revoked_calls = 0;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		/* a shrink to inside block 7: frees nothing the lease has */
		CHECK_EQ(lease_may_free(m, 7, 8, UINT64_MAX, PINFS_POLICY_DEFAULT, NULL), 0);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		CHECK(t1.tv_sec - t0.tv_sec < 5); /* not the 30 s wait */
		CHECK_EQ(layout_revoked_calls, 1);
		CHECK_UEQ(layout_revoked_id, id);
		CHECK_OK(lease_get(lease_mgr_table(m), id, &l));
		CHECK_EQ(l.state, PINFS_LEASE_REVOKED);
		CHECK_EQ(next_signal(0, &v), -1);
		CHECK(lease_mgr_block_pinned(m, 1007));
		unpinned_blocks = 0;
		CHECK_OK(lease_unpin(m, id, (uint32_t)getpid(), 1000));
		CHECK_UEQ(unpinned_blocks, 8);
		/* a punch of a range that is not at the end: only the overlap */
		CHECK_OK(pin(m, PINFS_PIN_LAYOUT, &id));
		CHECK_EQ(lease_may_free(m, 7, 8, 4, PINFS_POLICY_DEFAULT, NULL), 0);
		CHECK_OK(lease_get(lease_mgr_table(m), id, &l));
		CHECK_EQ(l.state, PINFS_LEASE_ACTIVE);
		CHECK_EQ(lease_may_free(m, 7, 2, 1, PINFS_POLICY_DEFAULT, NULL), 0);
		CHECK_OK(lease_get(lease_mgr_table(m), id, &l));
		CHECK_EQ(l.state, PINFS_LEASE_REVOKED);
		CHECK_OK(lease_unpin(m, id, (uint32_t)getpid(), 1000));
		if (policies[i] == PINFS_POLICY_FAIL) {
			/* an ordinary pin still refuses under fail */
			CHECK_OK(pin(m, PINFS_PIN_WRITE | PINFS_PIN_REVOCABLE, &id2));
			CHECK_OK(pin(m, PINFS_PIN_LAYOUT, &id));
			CHECK_EQ(lease_may_free(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, NULL),
				 -EBUSY);
			CHECK_OK(lease_unpin(m, id2, (uint32_t)getpid(), 1000));
			CHECK_OK(lease_unpin(m, id, (uint32_t)getpid(), 1000));
		}
		CHECK_EQ(next_signal(0, &v), -1);
		lease_mgr_delete(&m);
	}
	return 0;
}

/* ---- the positions the kernel shipped (issue 17) -------------------------- */

static int unpinned_flag;

static void *unpin_later_flag(void *arg)
{
	struct coop *c = arg;
	struct timespec ts = { c->delay_ms / 1000, (long)(c->delay_ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
	__atomic_store_n(&unpinned_flag, 1, __ATOMIC_SEQ_CST);
	lease_unpin(c->m, c->id, (uint32_t)getpid(), 1000);
	return NULL;
}

static struct lease_mgr *mgr_cfg(uint32_t policy, double wait_timeout, double short_max)
{
	struct lease_cfg cfg = { .policy = policy, .busy_errno = EBUSY,
				 .wait_timeout = wait_timeout, .lease_break_time = 0.3,
				 .short_pin_max = short_max };
	struct lease_ops ops = { .unpinned = on_unpinned };
	struct lease_mgr *m = NULL;

	if (lease_mgr_new(&cfg, &ops, &m))
		return NULL;
	return m;
}

/* wait_timeout=inf (the mount's) and a file's own inf both outlast the
 * 0.3 s a bounded wait would give: the truncate goes ahead only after the
 * unpin, 1 s later. */
static int test_a_wait_without_bound_lasts_until_the_unpin(void)
{
	struct lease_mgr *m = mgr_cfg(PINFS_POLICY_WAIT, INFINITY, 0);
	struct coop c;
	pthread_t t;
	int pass;

	CHECK(m);
	for (pass = 0; pass < 2; pass++) {
		if (pass == 1) { /* the mount bounded, the file not */
			lease_mgr_delete(&m);
			m = mgr_cfg(PINFS_POLICY_WAIT, 0.3, 0);
			CHECK(m);
		}
		CHECK_OK(pin(m, PINFS_PIN_WRITE, &c.id));
		c.m = m;
		c.delay_ms = 1000;
		unpinned_flag = 0;
		CHECK_OK(pthread_create(&t, NULL, unpin_later_flag, &c));
		CHECK_EQ(lease_may_free_timeout(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT,
						pass ? INFINITY : -1, NULL),
			 0);
		CHECK_EQ(__atomic_load_n(&unpinned_flag, __ATOMIC_SEQ_CST), 1);
		pthread_join(t, NULL);
	}
	/* the file's own bound applies too: busy, the pin stays */
	CHECK_OK(pin(m, PINFS_PIN_WRITE, &c.id));
	CHECK_EQ(lease_may_free_timeout(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, 0.1, NULL),
		 -EBUSY);
	CHECK_OK(lease_unpin(m, c.id, (uint32_t)getpid(), 1000));
	lease_mgr_delete(&m);
	return 0;
}

static bool interrupt_soon(void *arg)
{
	int *n = arg;

	return ++*n > 4; /* after about 4 * 50 ms of waiting */
}

static int test_a_wait_without_bound_is_interruptible(void)
{
	struct lease_mgr *m = mgr_cfg(PINFS_POLICY_WAIT, INFINITY, 0);
	int n = 0;
	struct lease_waiter w = { interrupt_soon, NULL, NULL, &n };
	struct lease l;
	uint64_t id;

	CHECK(m);
	CHECK_OK(pin(m, PINFS_PIN_WRITE, &id));
	CHECK_EQ(lease_may_free(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, &w), -EINTR);
	CHECK_OK(lease_get(lease_mgr_table(m), id, &l));
	CHECK_EQ(l.state, PINFS_LEASE_ACTIVE);
	/* and parked: the bound on parked requests holds for it too */
	CHECK_OK(lease_unpin(m, id, (uint32_t)getpid(), 1000));
	lease_mgr_delete(&m);
	return 0;
}

static int test_parse_wait_timeouts(void)
{
	double t;

	CHECK_OK(lease_timeout_parse("inf", &t));
	CHECK(isinf(t));
	CHECK_OK(lease_timeout_parse("2.5", &t));
	CHECK(t == 2.5);
	CHECK_EQ(lease_timeout_parse("-1", &t), -EINVAL);
	CHECK_EQ(lease_timeout_parse("nan", &t), -EINVAL);
	CHECK_EQ(lease_timeout_parse("3s", &t), -EINVAL);
	CHECK_EQ(lease_timeout_parse("", &t), -EINVAL);
	return 0;
}

static int test_refuse_longterm_refuses_long_pins_and_allows_short_ones(void)
{
	struct lease_mgr *m = mgr_cfg(PINFS_POLICY_NOLONGTERM, 0.3, 0);
	struct pinfs_counters c;
	uint32_t p;

	CHECK(m);
	CHECK_OK(lease_policy_parse("refuse_longterm", &p));
	CHECK_EQ(p, PINFS_POLICY_NOLONGTERM);
	CHECK_STR_EQ(lease_policy_name(PINFS_POLICY_NOLONGTERM), "refuse_longterm");
	CHECK_EQ(lease_pin_allowed(m, 7, PINFS_POLICY_DEFAULT, PINFS_PIN_WRITE, getpid(), 0),
		 -EOPNOTSUPP);
	CHECK_EQ(lease_pin_allowed(m, 7, PINFS_POLICY_DEFAULT, PINFS_PIN_REVOCABLE, getpid(), 0),
		 -EOPNOTSUPP);
	CHECK_OK(lease_pin_allowed(m, 7, PINFS_POLICY_DEFAULT, PINFS_PIN_WRITE | PINFS_PIN_SHORT,
				   getpid(), 0));
	/* a file's own policy decides over the mount's */
	CHECK_OK(lease_pin_allowed(m, 7, PINFS_POLICY_FAIL, PINFS_PIN_WRITE, getpid(), 0));
	lease_mgr_counters(m, 7, &c);
	CHECK_UEQ(c.longterm_refused, 2);
	lease_mgr_counters(m, 0, &c);
	CHECK_UEQ(c.longterm_refused, 2);
	lease_mgr_delete(&m);
	return 0;
}

/* Under fail, revoke and refuse_longterm (which never wait for long-term
 * pins) a truncate waits for a short pin, and goes ahead once it ends. */
static int test_truncate_waits_for_short_pins_under_every_policy(void)
{
	static const uint32_t pols[] = { PINFS_POLICY_FAIL, PINFS_POLICY_REVOKE,
					 PINFS_POLICY_WAIT, PINFS_POLICY_BREAK,
					 PINFS_POLICY_NOLONGTERM };
	size_t i;

	for (i = 0; i < sizeof(pols) / sizeof(pols[0]); i++) {
		struct lease_mgr *m = mgr_cfg(pols[i], 0.2, 30);
		struct pinfs_counters cnt;
		struct coop c;
		pthread_t t;
		uint64_t v;

		CHECK(m);
		CHECK_OK(pin(m, PINFS_PIN_WRITE | PINFS_PIN_SHORT, &c.id));
		lease_mgr_counters(m, 7, &cnt);
		CHECK_UEQ(cnt.short_pins, 1);
		lease_mgr_counters(m, 0, &cnt);
		CHECK_UEQ(cnt.short_pins, 1);
		c.m = m;
		c.delay_ms = 600; /* past wait_timeout and lease_break_time */
		unpinned_flag = 0;
		CHECK_OK(pthread_create(&t, NULL, unpin_later_flag, &c));
		CHECK_EQ(lease_may_free(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, NULL), 0);
		CHECK_EQ(__atomic_load_n(&unpinned_flag, __ATOMIC_SEQ_CST), 1);
		pthread_join(t, NULL);
		CHECK_EQ(next_signal(0, &v), -1); /* nothing told, nothing revoked */
		lease_mgr_counters(m, 0, &cnt);
		CHECK_UEQ(cnt.leases_revoked, 0);
		CHECK_UEQ(cnt.refusals, 0);
		lease_mgr_delete(&m);
	}
	return 0;
}

/* A short pin that outlives short_pin_max is revoked -- with SIGBUS only if
 * it is also revocable -- and a truncate waiting for it goes ahead then. */
static int test_a_short_pin_is_revoked_at_short_pin_max(void)
{
	struct lease_mgr *m = mgr_cfg(PINFS_POLICY_FAIL, 0.3, 0.4);
	struct pinfs_counters cnt;
	struct lease l;
	uint64_t id, id2, v = 0;

	CHECK(m);
	CHECK_OK(pin(m, PINFS_PIN_WRITE | PINFS_PIN_SHORT | PINFS_PIN_REVOCABLE, &id));
	CHECK_EQ(lease_may_free(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, NULL), 0);
	CHECK_OK(lease_get(lease_mgr_table(m), id, &l));
	CHECK_EQ(l.state, PINFS_LEASE_REVOKED);
	CHECK_EQ(next_signal(1000, &v), SIGBUS);
	CHECK_UEQ(v, id);
	/* not revocable: revoked all the same, and never signalled */
	CHECK_OK(pin(m, PINFS_PIN_WRITE | PINFS_PIN_SHORT, &id2));
	CHECK_EQ(lease_may_free(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, NULL), 0);
	CHECK_OK(lease_get(lease_mgr_table(m), id2, &l));
	CHECK_EQ(l.state, PINFS_LEASE_REVOKED);
	CHECK_EQ(next_signal(200, &v), -1);
	lease_mgr_counters(m, 0, &cnt);
	CHECK_UEQ(cnt.short_pins_expired, 2);
	lease_mgr_counters(m, 7, &cnt);
	CHECK_UEQ(cnt.short_pins_expired, 2);
	CHECK_OK(lease_unpin(m, id, (uint32_t)getpid(), 1000));
	CHECK_OK(lease_unpin(m, id2, (uint32_t)getpid(), 1000));
	lease_mgr_delete(&m);
	return 0;
}

/* Beside a long-term pin, a short one is waited for first: fail and
 * refuse_longterm still refuse (the long-term pin), revoke revokes the
 * long-term pin once the short one ended. */
static int test_long_and_short_pins_together(void)
{
	struct lease_mgr *m = mgr_cfg(PINFS_POLICY_REVOKE, 0.3, 30);
	struct lease l;
	struct coop c;
	pthread_t t;
	uint64_t lid, v = 0;

	CHECK(m);
	CHECK_OK(pin(m, PINFS_PIN_WRITE | PINFS_PIN_REVOCABLE, &lid));
	CHECK_OK(pin(m, PINFS_PIN_WRITE | PINFS_PIN_SHORT, &c.id));
	c.m = m;
	c.delay_ms = 300;
	unpinned_flag = 0;
	CHECK_OK(pthread_create(&t, NULL, unpin_later_flag, &c));
	CHECK_EQ(lease_may_free(m, 7, 0, UINT64_MAX, PINFS_POLICY_DEFAULT, NULL), 0);
	CHECK_EQ(__atomic_load_n(&unpinned_flag, __ATOMIC_SEQ_CST), 1);
	pthread_join(t, NULL);
	CHECK_OK(lease_get(lease_mgr_table(m), lid, &l));
	CHECK_EQ(l.state, PINFS_LEASE_REVOKED);
	CHECK_EQ(next_signal(1000, &v), SIGBUS);
	CHECK_UEQ(v, lid);
	CHECK_OK(lease_unpin(m, lid, (uint32_t)getpid(), 1000));
	/* fail, with both: refused at once, the short pin stays */
	CHECK_OK(pin(m, PINFS_PIN_WRITE, &lid));
	CHECK_OK(pin(m, PINFS_PIN_WRITE | PINFS_PIN_SHORT, &c.id));
	CHECK_EQ(lease_may_free(m, 7, 0, UINT64_MAX, PINFS_POLICY_FAIL, NULL), -EBUSY);
	CHECK_EQ(lease_may_free(m, 7, 0, UINT64_MAX, PINFS_POLICY_NOLONGTERM, NULL), -EBUSY);
	CHECK_OK(lease_unpin(m, lid, (uint32_t)getpid(), 1000));
	CHECK_OK(lease_unpin(m, c.id, (uint32_t)getpid(), 1000));
	lease_mgr_delete(&m);
	return 0;
}

int main(void)
{
	sigset_t set;

	/* signals for this process are collected, not delivered */
	sigemptyset(&set);
	sigaddset(&set, SIGBUS);
	sigaddset(&set, SIGIO);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	RUN(test_fail_refuses_and_changes_nothing);
	RUN(test_revoke_signals_sigbus_with_the_lease_id);
	RUN(test_wait_blocks_until_unpin_then_times_out);
	RUN(test_break_notices_then_revokes_or_refuses);
	RUN(test_break_signals_only_holders_that_asked);
	RUN(test_revocation_is_told_on_the_chosen_channel);
	RUN(test_per_file_policy_overrides_and_busy_errno);
	RUN(test_pins_in_a_waiting_truncates_range_are_eagain);
	RUN(test_a_reused_pid_keeps_its_new_leases);
	RUN(test_a_holder_dying_during_its_pin_leaves_no_lease);
	RUN(test_exit_event_counts_the_holders_leases);
	RUN(test_a_parked_truncate_is_called_back_when_the_pin_ends);
	RUN(test_a_parked_truncate_is_refused_at_the_deadline);
	RUN(test_an_interrupted_parked_break_answers_eintr_and_hands_the_lease_back);
	RUN(test_deleting_the_manager_answers_every_parked_wait);
	RUN(test_events_show_a_user_only_their_own_holders_events);
	RUN(test_parked_events_reads_are_bounded_per_user);
	RUN(test_a_truncate_past_the_parked_bound_is_refused_not_parked);
	RUN(test_no_wait_is_made_when_the_transport_has_no_room);
	RUN(test_layout_leases_are_revoked_at_once_under_every_policy);
	RUN(test_a_wait_without_bound_lasts_until_the_unpin);
	RUN(test_a_wait_without_bound_is_interruptible);
	RUN(test_parse_wait_timeouts);
	RUN(test_refuse_longterm_refuses_long_pins_and_allows_short_ones);
	RUN(test_truncate_waits_for_short_pins_under_every_policy);
	RUN(test_a_short_pin_is_revoked_at_short_pin_max);
	RUN(test_long_and_short_pins_together);
	return T_EXIT_PASS;
}

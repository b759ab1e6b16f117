/* SPDX-License-Identifier: MIT */
/*
 * tests/mount/evflood.c -- a flood of parked requests, for test_fairness.py
 * and scripts/bench-fairness: THREADS threads each loop on PINFS_IOC_EVENTS
 * with a 1 s timeout, asking only for events that have not happened yet, so
 * that every call the daemon takes is parked until its timeout.
 *
 *   evflood PATH THREADS SECONDS [BACKOFF_MS [STAGGER_MS]]
 *
 * PATH: a file of the mount (each thread opens it). A call answered EAGAIN
 * (the daemon parks no more of this user's requests) is retried after
 * BACKOFF_MS milliseconds (default 250), as pinfsctl events does. Thread i
 * makes its first call i * STAGGER_MS milliseconds after the start
 * (default 0), so that requests come one after the other. Prints
 * "ready" once every thread runs, and at the end one line:
 *   "calls=N waited=N eagain=N errors=N first_error=ERRNO"
 * waited: calls that took at least 500 ms (parked until their timeout).
 * Exit 0, or 1 if the set-up failed. Thread stacks are 64 KiB, so thousands
 * of threads cost little memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "pinfs/abi.h"

static const char *path;
static unsigned backoff_ms = 250, stagger_ms;
static volatile int stop;
static uint64_t calls, waited, eagain, errors;
static int first_error;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t started;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *flood(void *arg)
{
	struct pinfs_events *ev = malloc(sizeof(*ev));
	uint64_t c = 0, w = 0, a = 0, e = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC), err = 0;

	pthread_barrier_wait(&started);
	usleep((useconds_t)((uintptr_t)arg * stagger_ms * 1000u));
	if (fd < 0 || !ev) {
		err = fd < 0 ? errno : ENOMEM;
		e++;
		goto out;
	}
	while (!stop) {
		double t0;
		memset(ev, 0, sizeof(*ev));
		ev->after_seq = UINT64_MAX >> 1; /* only events to come: none do */
		ev->timeout_ms = 1000;
		t0 = now();
		c++;
		if (ioctl(fd, PINFS_IOC_EVENTS, ev) == 0) {
			if (now() - t0 >= 0.5)
				w++;
		} else if (errno == EAGAIN) {
			a++;
			usleep(backoff_ms * 1000u);
		} else {
			if (!err)
				err = errno;
			e++;
			usleep(100000);
		}
	}
out:
	if (fd >= 0)
		close(fd);
	free(ev);
	pthread_mutex_lock(&lock);
	calls += c;
	waited += w;
	eagain += a;
	errors += e;
	if (err && !first_error)
		first_error = err;
	pthread_mutex_unlock(&lock);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_attr_t attr;
	pthread_t *tid;
	unsigned n, i;
	double secs;

	if (argc < 4 || argc > 6) {
		fprintf(stderr, "usage: evflood PATH THREADS SECONDS [BACKOFF_MS [STAGGER_MS]]\n");
		return 1;
	}
	path = argv[1];
	n = (unsigned)strtoul(argv[2], NULL, 10);
	secs = strtod(argv[3], NULL);
	if (argc >= 5)
		backoff_ms = (unsigned)strtoul(argv[4], NULL, 10);
	if (argc == 6)
		stagger_ms = (unsigned)strtoul(argv[5], NULL, 10);
	tid = calloc(n, sizeof(*tid));
	if (!n || !tid || pthread_barrier_init(&started, NULL, n + 1)) {
		fprintf(stderr, "evflood: cannot set up %u threads\n", n);
		return 1;
	}
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 << 10);
	for (i = 0; i < n; i++) {
		int rc = pthread_create(&tid[i], &attr, flood, (void *)(uintptr_t)i);
		if (rc) {
			/* the others wait at the barrier for all n: give up */
			fprintf(stderr, "evflood: thread %u: %s\n", i + 1, strerror(rc));
			_exit(1);
		}
	}
	pthread_barrier_wait(&started);
	printf("ready\n");
	fflush(stdout);
	usleep((useconds_t)(secs * 1e6));
	stop = 1;
	for (i = 0; i < n; i++)
		pthread_join(tid[i], NULL);
	printf("calls=%llu waited=%llu eagain=%llu errors=%llu first_error=%d\n",
	       (unsigned long long)calls, (unsigned long long)waited, (unsigned long long)eagain,
	       (unsigned long long)errors, first_error);
	return 0;
}

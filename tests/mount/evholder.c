/* SPDX-License-Identifier: MIT */
/*
 * tests/mount/evholder.c -- a lease holder for test_events.py, built on
 * libpinfs alone (include/pinfs/client.h). Unlike pinhold it installs no
 * signal handler and blocks nothing unless told to ("catch"): every signal
 * keeps its default action, as in a holder written from client.h alone.
 *
 *   evholder FILE     commands on stdin, one answer line each
 *
 * Commands (answer "ok ..." or "err errno=N"):
 *   catch SIG          block SIG and take it from a signalfd ("sigwait")
 *   open               pinfs_event_open(): "ok"
 *   pin OFF LEN FLAGS SIG COOKIE
 *                      pinfs_map_pin_ex; FLAGS letters w (write) r
 *                      (revocable) s (PINFS_PIN_NOTIFY_SIGNAL) e
 *                      (PINFS_PIN_NOTIFY_EVENTS) or "-": "ok lease=ID slot=K"
 *   wait MS            poll the event fd: "ok readable" or "ok timeout"
 *   read               pinfs_event_read: "ok event=E lease=ID cookie=C ino=I
 *                      off=O len=L reason=R lost=N break_ms=B pid=P"
 *   drain              read every waiting record: "ok n=N lost=SUM"
 *   sigwait MS         "ok sig=N code=C value=V" or "ok none"
 *   unpin K            pinfs_map_unpin of slot K
 *   state K            pinfs_lease_state: "ok state=S cookie=C sig=G"
 *   repin K            pinfs_map_repin: "ok lease=ID same=0|1"
 *   store K BYTE       memset the mapping of slot K
 *   pid                "ok PID"
 *   exit               exit 0
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "pinfs/client.h"

#define SLOTS 1024

static struct pinfs_map maps[SLOTS];
static int nmaps, fd = -1, evfd = -1, sfd = -1;
static sigset_t caught;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static uint32_t flags_of(const char *s)
{
	uint32_t f = 0;

	for (; *s; s++)
		f |= *s == 'w' ? PINFS_PIN_WRITE : *s == 'r' ? PINFS_PIN_REVOCABLE
		   : *s == 's' ? PINFS_PIN_NOTIFY_SIGNAL : *s == 'e' ? PINFS_PIN_NOTIFY_EVENTS : 0;
	return f;
}

int main(int argc, char **argv)
{
	char line[512];

	if (argc != 2) {
		fprintf(stderr, "usage: evholder FILE\n");
		return 2;
	}
	fd = open(argv[1], O_RDWR);
	if (fd < 0) {
		perror(argv[1]);
		return 1;
	}
	sigemptyset(&caught);
	say("ready");
	while (fgets(line, sizeof(line), stdin)) {
		char cmd[32], a[64];
		unsigned long long x, y, z;
		int k, n;

		n = sscanf(line, "%31s", cmd);
		if (n != 1)
			continue;
		if (!strcmp(cmd, "catch") && sscanf(line, "%*s %d", &k) == 1) {
			sigaddset(&caught, k);
			sigprocmask(SIG_BLOCK, &caught, NULL);
			if (sfd >= 0)
				close(sfd);
			sfd = signalfd(-1, &caught, SFD_CLOEXEC);
			say(sfd < 0 ? "err errno=%d" : "ok", errno);
		} else if (!strcmp(cmd, "open")) {
			evfd = pinfs_event_open(fd);
			if (evfd < 0)
				say("err errno=%d", -evfd);
			else
				say("ok");
		} else if (!strcmp(cmd, "pin") &&
			   sscanf(line, "%*s %llu %llu %63s %d %llu", &x, &y, a, &k, &z) == 5) {
			int rc;
			if (nmaps == SLOTS) {
				say("err errno=%d", ENOSPC);
				continue;
			}
			rc = pinfs_map_pin_ex(fd, x, y, flags_of(a), k, z, &maps[nmaps]);
			if (rc < 0)
				say("err errno=%d", -rc);
			else {
				say("ok lease=%" PRIu64 " slot=%d", maps[nmaps].lease_id, nmaps);
				nmaps++;
			}
		} else if (!strcmp(cmd, "wait") && sscanf(line, "%*s %d", &k) == 1) {
			struct pollfd p = { .fd = evfd, .events = POLLIN };
			n = poll(&p, 1, k);
			say(n < 0 ? "err errno=%d" : n ? "ok readable" : "ok timeout", errno);
		} else if (!strcmp(cmd, "read")) {
			struct pinfs_lease_event ev;
			int rc = pinfs_event_read(evfd, &ev);
			if (rc < 0)
				say("err errno=%d", -rc);
			else
				say("ok event=%u lease=%" PRIu64 " cookie=%" PRIu64 " ino=%" PRIu64
				    " off=%" PRIu64 " len=%" PRIu64 " reason=%u lost=%" PRIu64
				    " break_ms=%u pid=%u",
				    ev.event, ev.lease_id, ev.cookie, ev.ino, ev.offset, ev.length,
				    ev.reason, ev.lost, ev.break_ms, ev.holder_pid);
		} else if (!strcmp(cmd, "drain")) {
			struct pinfs_lease_event ev;
			uint64_t lost = 0;
			int got = 0;
			while (pinfs_event_read(evfd, &ev) == 0) {
				got++;
				lost += ev.lost;
			}
			say("ok n=%d lost=%" PRIu64, got, lost);
		} else if (!strcmp(cmd, "sigwait") && sscanf(line, "%*s %d", &k) == 1) {
			struct pollfd p = { .fd = sfd, .events = POLLIN };
			struct signalfd_siginfo si;
			if (sfd < 0 || poll(&p, 1, k) <= 0 || read(sfd, &si, sizeof(si)) != sizeof(si))
				say("ok none");
			else
				say("ok sig=%u code=%d value=%" PRIu64, si.ssi_signo, si.ssi_code,
				    (uint64_t)si.ssi_ptr);
		} else if (!strcmp(cmd, "unpin") && sscanf(line, "%*s %d", &k) == 1) {
			int rc = pinfs_map_unpin(&maps[k]);
			say(rc < 0 ? "err errno=%d" : "ok", -rc);
		} else if (!strcmp(cmd, "state") && sscanf(line, "%*s %d", &k) == 1) {
			struct pinfs_lease_query q;
			int rc = pinfs_lease_state(fd, maps[k].lease_id, &q);
			if (rc < 0)
				say("err errno=%d", -rc);
			else
				say("ok state=%u cookie=%" PRIu64 " sig=%u", q.info.state, q.cookie,
				    q.notify_sig);
		} else if (!strcmp(cmd, "repin") && sscanf(line, "%*s %d", &k) == 1) {
			void *before = maps[k].addr;
			int rc = pinfs_map_repin(&maps[k]);
			if (rc < 0)
				say("err errno=%d", -rc);
			else
				say("ok lease=%" PRIu64 " same=%d", maps[k].lease_id,
				    maps[k].addr == before);
		} else if (!strcmp(cmd, "store") && sscanf(line, "%*s %d %llu", &k, &x) == 2) {
			memset(maps[k].addr, (int)x, maps[k].len);
			say("ok");
		} else if (!strcmp(cmd, "pid")) {
			say("ok %d", (int)getpid());
		} else if (!strcmp(cmd, "exit")) {
			return 0;
		} else {
			say("err errno=%d", EINVAL);
		}
	}
	return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * fusefs/evchan.h -- the event channel (fusefs/evchan.c says how it works).
 */
#ifndef PINFS_FUSEFS_EVCHAN_H
#define PINFS_FUSEFS_EVCHAN_H

#include <stdbool.h>
#include <stdint.h>

#include "pinfs/abi.h"

struct ffs_evchan;

/* Listens on a new abstract name and starts the server thread: after
 * fuse_daemonize(). 0 or -errno. */
int ffs_evchan_start(struct ffs_evchan **out);
/* Stops the thread, closes every connection (clients read EOF), frees and
 * NULLs *@chp. No sender may be running. */
void ffs_evchan_stop(struct ffs_evchan **chp);
/* "@NAME": the abstract socket name, as PINFS_XATTR_EVENTS serves it. */
const char *ffs_evchan_name(const struct ffs_evchan *ch);
/* Has process @pid, as user @uid, a connection the daemon accepted? */
bool ffs_evchan_connected(struct ffs_evchan *ch, uint32_t pid, uint32_t uid);
/* Sends @ev (time and lost filled in here) to every connection of @pid as
 * @uid; never blocks: a record that does not fit is dropped and counted. */
void ffs_evchan_send(struct ffs_evchan *ch, uint32_t pid, uint32_t uid,
		     const struct pinfs_lease_event *ev);

#endif

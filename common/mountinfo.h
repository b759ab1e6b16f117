/* SPDX-License-Identifier: MIT */
/*
 * common/mountinfo.h -- reading /proc/self/mountinfo, shared by the daemon
 * and fsck (pmem/pool.c) and by pinfsctl (client/pinfsctl.c), which link
 * different libraries: so a static inline here.
 */
#ifndef PINFS_COMMON_MOUNTINFO_H
#define PINFS_COMMON_MOUNTINFO_H

/* Undoes the octal escapes (\040 ...) of a mountinfo field in place. */
static inline void mountinfo_unescape(char *s)
{
	char *w = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*w++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
			s += 3;
		} else {
			*w++ = *s;
		}
	}
	*w = '\0';
}

#endif

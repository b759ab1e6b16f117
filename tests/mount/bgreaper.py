"""Runs a background daemon the way a user does, and still reports how it ended.

    python3 bgreaper.py STATUS_FD COMMAND...

Started by pinfs_mount.py for every background-mode mount.  It becomes a
child subreaper (prctl PR_SET_CHILD_SUBREAPER), runs COMMAND (`pinfs POOL MNT`
without -f), which mounts, forks the daemon and exits; the daemon, orphaned by
that exit, is reparented to this process instead of init, so its exit status
can be collected.  Nothing about the daemon differs from a user's: it is a
session leader with its stdio on /dev/null, its parent gone.

Writes lines to STATUS_FD:
    launcher RC      the exit status of COMMAND (negative: killed by a signal)
    daemon PID       the daemon's pid (only after "launcher 0")
    exit STATUS      the daemon's exit status (negative: killed by a signal)
and exits once the daemon has been reaped (other orphans it collects on the
way are reaped too).
"""

import ctypes
import os
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36


def status_of(wstatus):
    if os.WIFSIGNALED(wstatus):
        return -os.WTERMSIG(wstatus)
    return os.WEXITSTATUS(wstatus)


def children():
    me = os.getpid()
    found = []
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % name) as f:
                stat = f.read()
        except OSError:
            continue
        # the fields after the command name, which may contain spaces
        fields = stat[stat.rindex(')') + 2:].split()
        if int(fields[1]) == me:
            found.append(int(name))
    return found


def main():
    fd = int(sys.argv[1])
    cmd = sys.argv[2:]
    out = os.fdopen(fd, 'w', buffering=1)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        out.write('launcher -1 prctl: %s\n' % os.strerror(ctypes.get_errno()))
        return 1
    launcher = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    rc = launcher.wait()
    out.write('launcher %d\n' % rc)
    if rc != 0:
        return 0
    kids = children()
    if len(kids) != 1:
        out.write('daemon -1 %d processes were left by the launcher: %s\n' % (len(kids), kids))
        for pid in kids:
            os.kill(pid, 9)
        for pid in kids:          # gone (files closed) before the caller goes on
            os.waitpid(pid, 0)
        return 1
    daemon = kids[0]
    out.write('daemon %d\n' % daemon)
    while True:
        pid, wstatus = os.wait()
        if pid == daemon:
            out.write('exit %d\n' % status_of(wstatus))
            return 0


if __name__ == '__main__':
    sys.exit(main())

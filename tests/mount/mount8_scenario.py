"""mount(8) and /etc/fstab with an installed pinfs, inside a private mount namespace.

    unshare --mount --propagation private python3 mount8_scenario.py \
        BINDIR POOL MNT (type OPTIONS | fstab FSTAB_LINE_OPTIONS)

Run by test_mount8.py.  mount(8) clears PATH before it runs a helper, so
mount.fuse3's shell looks for `pinfs` in its default PATH (/usr/local/bin
among it), where `meson install` puts it.  This script bind-mounts BINDIR (a
`meson install --destdir` tree's bin directory) over /usr/local/bin, and for
the fstab case a temporary fstab over /etc/fstab, and a tmpfs over /var/log
(the daemon's log with no syslog), in its own mount namespace, so neither
the machine's /usr/local/bin nor its /etc/fstab nor its /var/log is touched.

It becomes a child subreaper, so the background daemon (orphaned when
pinfs's launcher exits) is reparented to it and its exit status can be read.
Then: mount (`mount -t fuse.pinfs POOL MNT -o OPTIONS`, or `mount MNT` with
the fstab line), check it, write and read a file, `umount MNT`, and wait for
the daemon to exit.  Prints one JSON object on stdout.
"""

import ctypes
import json
import os
import subprocess
import sys
import tempfile
import time

from bgreaper import PR_SET_CHILD_SUBREAPER, children


def run(cmd, **kw):
    res = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, timeout=30, **kw)
    return {'cmd': cmd, 'rc': res.returncode, 'out': res.stdout, 'err': res.stderr}


def mount_entry(mnt):
    with open('/proc/self/mounts') as f:
        for line in f:
            fields = line.split()
            if fields[1] == mnt:
                return fields
    return None


def main():
    bindir, pool, mnt, mode, arg = sys.argv[1:6]
    out = {'steps': []}
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        out['error'] = 'prctl: %s' % os.strerror(ctypes.get_errno())
        print(json.dumps(out))
        return
    # /var/log of the namespace's own: where the daemon logs with no syslog
    for step in (['mount', '--make-rprivate', '/'],
                 ['mount', '--bind', bindir, '/usr/local/bin'],
                 ['mount', '-t', 'tmpfs', '-o', 'mode=0755,size=1M', 'pinfs-test-log',
                  '/var/log']):
        r = run(step)
        out['steps'].append(r)
        if r['rc'] != 0:
            print(json.dumps(out))
            return
    if mode == 'type':
        cmd = ['mount', '-t', 'fuse.pinfs', pool, mnt] + (['-o', arg] if arg else [])
    else:
        fd, fstab = tempfile.mkstemp(prefix='pinfs-fstab-')
        line = '%s %s fuse.pinfs %s 0 0\n' % (pool, mnt, arg)
        os.write(fd, ('# test fstab\n' + line).encode())
        os.close(fd)
        out['fstab'] = line
        r = run(['mount', '--bind', fstab, '/etc/fstab'])
        out['steps'].append(r)
        os.unlink(fstab)
        if r['rc'] != 0:
            print(json.dumps(out))
            return
        cmd = ['mount', mnt]
    out['mount'] = run(cmd)
    out['entry'] = mount_entry(mnt)
    kids = children()
    out['daemons'] = len(kids)
    if out['mount']['rc'] == 0 and out['entry'] and len(kids) == 1:
        daemon = kids[0]
        with open('/proc/%d/cmdline' % daemon, 'rb') as f:
            out['daemon_cmdline'] = f.read().decode(errors='replace').split('\0')[:-1]
        with open('/proc/%d/stat' % daemon) as f:
            stat = f.read()
        fields = stat[stat.rindex(')') + 2:].split()
        out['daemon_is_session_leader'] = int(fields[3]) == daemon
        path = os.path.join(mnt, 'hello')
        with open(path, 'wb') as f:
            f.write(b'mounted by mount(8)\n')
        with open(path, 'rb') as f:
            out['read_back'] = f.read().decode()
        # counted once it has served: mount(8) returns when the daemon has
        # forked, before it starts its threads
        out['daemon_threads'] = len(os.listdir('/proc/%d/task' % daemon))
        out['stat_uid'] = os.stat(path).st_uid
        out['umount'] = run(['umount', mnt])
        deadline = time.monotonic() + 10
        status = None
        while time.monotonic() < deadline:
            pid, wstatus = os.waitpid(-1, os.WNOHANG)
            if pid == daemon:
                status = (-os.WTERMSIG(wstatus) if os.WIFSIGNALED(wstatus)
                          else os.WEXITSTATUS(wstatus))
                break
            if pid == 0:
                time.sleep(0.05)
        if status is None:
            os.kill(daemon, 9)
            os.waitpid(daemon, 0)
        out['daemon_exit'] = status
        out['mounted_after_umount'] = mount_entry(mnt) is not None
    else:
        for pid in kids:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        if mount_entry(mnt):
            run(['umount', '-l', mnt])
    print(json.dumps(out))


if __name__ == '__main__':
    main()

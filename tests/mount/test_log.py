"""Where a background daemon's log goes (fusefs/log.h): syslog over /dev/log;
with no syslog daemon, a file the mount names in one line on stderr; when
syslog stops answering later, that file; and why the daemon died, in any case.

Each test runs the daemon, as users do (in the background, no -o logfile),
inside a private mount namespace (unshare -m) whose /dev is a small tmpfs
holding only what pinfs needs (null, fuse, shm, ...): there /dev/log exists
only when the test binds its own syslog socket there, whatever the machine
has. /var/log there is a tmpfs too, so the fallback file never touches the
machine's. The test reaches the mount, the log and the socket through
/proc/PID/root of a process in the namespace. The namespace, its mounts
and the FUSE mount with it go away when its last process ends.
"""

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time

import pytest

from pinfs_mount import (BIN, EXIT_TIMEOUT_S, MOUNT_TIMEOUT_S, BackgroundDaemon, check_fsck,
                         describe, run, user_runnable, with_transport)
from pinfs_util import read_file, write_file

pytestmark = [pytest.mark.needs_daemon,
              pytest.mark.skipif(os.getuid() != 0, reason='needs root (mount namespaces)')]

FALLBACK = '/var/log/pinfs.log'     # root's, with no syslog
NO_SYSLOG = 'pinfs: no syslog (/dev/log: No such file or directory)'

# -o logfile / fallback file: "2026-01-02 03:04:05.678 [PID] pinfs: ..."
FILE_LINE = re.compile(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \[(\d+)\] (pinfs: .*)$')
# RFC 3164 as glibc's syslog(3) sends it: "<PRI>Mmm dd hh:mm:ss pinfs[PID]: ..."
SYSLOG_RECORD = re.compile(r'^<(\d+)>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d pinfs\[(\d+)\]: '
                           r'(pinfs: .*)$', re.S)
LOG_DAEMON_ERR = 3 * 8 + 3

# what /dev holds in the namespace, each bound from the machine's
DEV_NODES = ('null', 'zero', 'full', 'random', 'urandom', 'tty', 'fuse')
SETUP = r'''
set -e
d=$(mktemp -d /tmp/pinfs-test-dev-XXXXXX)
mount -t tmpfs -o mode=0755,size=1M pinfs-test-dev "$d"
for n in %(nodes)s; do touch "$d/$n"; mount --bind "/dev/$n" "$d/$n"; done
mkdir "$d/shm"; mount --rbind /dev/shm "$d/shm"
ln -s /proc/self/fd "$d/fd"
%(fuse)s
mount --move "$d" /dev
rmdir "$d"
mount -t tmpfs -o mode=0755,size=1M%(logopts)s pinfs-test-log /var/log
''' % {'nodes': ' '.join(DEV_NODES), 'logopts': '%(logopts)s', 'fuse': '%(fuse)s'}
# /dev/fuse as a stock system has it, for a user's mount (the machine's may
# be mode 0600): a node of the namespace's own /dev
USER_FUSE = 'umount "$d/fuse"; rm "$d/fuse"; mknod -m 0666 "$d/fuse" c %d %d'


class Namespace:
    """A private mount namespace held by a sleeping process, set up as the
    module docstring says."""

    def __init__(self, var_log_ro=False, user_fuse=False):
        self.holder = subprocess.Popen(['unshare', '--mount', '--propagation', 'private',
                                        'sleep', '3600'], stdin=subprocess.DEVNULL)
        pid = self.holder.pid
        mine = os.readlink('/proc/self/ns/mnt')
        ok = False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with open('/proc/%d/comm' % pid) as f:
                    ok = f.read().strip() == 'sleep' and os.readlink('/proc/%d/ns/mnt' % pid) != mine
            except OSError:
                pass
            if ok or self.holder.poll() is not None:
                break
            time.sleep(0.01)
        if not ok:
            self.close()
            pytest.fail('unshare -m did not start a namespace')
        rdev = os.stat('/dev/fuse').st_rdev
        res = self.run(['sh', '-c', SETUP % {
            'logopts': ',ro' if var_log_ro else '',
            'fuse': USER_FUSE % (os.major(rdev), os.minor(rdev)) if user_fuse else ''}])
        if res.returncode != 0:
            self.close()
            pytest.fail('setting up the namespace: ' + describe(res))
        assert not os.path.lexists(self.path('/dev/log'))

    def cmd(self, argv):
        return ['nsenter', '-t', str(self.holder.pid), '-m', '--'] + list(argv)

    def run(self, argv, **kw):
        return run(self.cmd(argv), **kw)

    def path(self, p):
        """`p` of the namespace, as this process reaches it."""
        return '/proc/%d/root%s' % (self.holder.pid, p)

    def mounted(self, p):
        with open('/proc/%d/mountinfo' % self.holder.pid) as f:
            return any(line.split()[4] == p for line in f)

    def close(self):
        if self.holder.poll() is None:
            self.holder.kill()
        self.holder.wait()


class FakeSyslog:
    """A syslog daemon of the test's: a datagram socket at /dev/log."""

    def __init__(self, ns):
        self.path = ns.path('/dev/log')
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.records = []

    def until(self, pred, timeout=MOUNT_TIMEOUT_S):
        """Receives records until one satisfies pred(record); returns it."""
        deadline = time.monotonic() + timeout
        for r in self.records:
            if pred(r):
                return r
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                r = self.sock.recv(65536).decode(errors='replace')
            except socket.timeout:
                break
            self.records.append(r)
            if pred(r):
                return r
        return None

    def close(self):
        """Stops answering, as a syslog daemon that died: the socket file
        stays, nobody reads it (connect and send: ECONNREFUSED)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None


@pytest.fixture
def ns():
    made = []

    def make(**kw):
        made.append(Namespace(**kw))
        return made[-1]
    yield make
    for n in made:
        n.close()


class Daemon:
    """pinfs POOL MNT started in namespace `ns` the way a user starts it:
    in the background, its log wherever pinfs decides."""

    def __init__(self, ns, pool, mountpoint, workdir, argv_prefix=(), env=None):
        self.ns = ns
        self.mnt = mountpoint
        self.err_path = os.path.join(workdir, 'launcher.stderr')
        with open(os.path.join(workdir, 'launcher.stdout'), 'wb') as fo, \
                open(self.err_path, 'wb') as fe:
            opts = with_transport([])
            pinfs = user_runnable(BIN['pinfs']) if argv_prefix else BIN['pinfs']
            cmd = ns.cmd(list(argv_prefix) + [pinfs] + (['-o', ','.join(opts)] if opts else [])
                         + [pool, mountpoint])
            self.proc = BackgroundDaemon(cmd, fo, fe, env=env)
        rc, msg = self.proc.launch(MOUNT_TIMEOUT_S)
        assert rc == 0, 'pinfs did not start: %s; stderr:\n%s' % (msg, self.stderr())
        deadline = time.monotonic() + MOUNT_TIMEOUT_S
        while not ns.mounted(mountpoint):
            assert time.monotonic() < deadline and self.proc.poll() is None, \
                'no mount; stderr:\n' + self.stderr()
            time.sleep(0.01)
        # answered, as whoever mounted it: INIT is done
        res = ns.run(list(argv_prefix) + ['stat', '-c', '%i', mountpoint])
        assert res.stdout == '1\n', describe(res)

    TRANSPORT = 'pinfs: transport '

    def stderr(self):
        with open(self.err_path, errors='replace') as f:
            return f.read()

    def path(self, *parts):
        return self.ns.path(os.path.join(self.mnt, *parts))

    def wait(self):
        return self.proc.wait(timeout=EXIT_TIMEOUT_S)

    def stop(self):
        """Unmounts (if still mounted) and reaps; returns the exit status."""
        if self.proc.poll() is None and self.ns.mounted(self.mnt):
            res = self.ns.run(['umount', self.mnt])
            assert res.returncode == 0, describe(res)
        return self.wait()

    def kill(self):
        try:
            self.proc.kill()
            self.proc.wait(timeout=EXIT_TIMEOUT_S)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


@pytest.fixture
def daemons():
    """Maker of Daemons; each one is killed (and reaped) at the end. A test
    asks for it after its pool and mount point, so that it ends first."""
    made = []

    def make(*args, **kw):
        made.append(Daemon(*args, **kw))
        return made[-1]
    yield make
    for d in made:
        d.kill()


def file_lines(path):
    lines = read_file(path).decode().splitlines()
    parsed = [FILE_LINE.match(line) for line in lines]
    assert all(parsed), lines
    return [(int(m.group(1)), m.group(2)) for m in parsed]


def test_with_no_syslog_the_log_goes_to_a_file_the_mount_names(pool, mountpoint, scratch, ns,
                                                               daemons):
    n = ns()
    d = daemons(n, pool, mountpoint, scratch)
    # a successful mount prints nothing (mount helpers don't; issue 15
    # item 5); the file's first line says why it is the log
    assert d.stderr() == ''
    log = n.path(FALLBACK)
    assert file_lines(log)[0] == (d.proc.pid, NO_SYSLOG + ': logging to ' + FALLBACK)
    st = os.stat(log)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    # the file is the daemon's stderr too: raw writes to fd 2 are kept
    assert os.readlink('/proc/%d/fd/2' % d.proc.pid) == FALLBACK
    write_file(d.path('f'), b'logged elsewhere\n')
    assert read_file(d.path('f')) == b'logged elsewhere\n'
    lines = file_lines(log)
    assert any(pid == d.proc.pid and text.startswith('pinfs: %s: not persistent memory' % pool)
               for pid, text in lines), lines
    d.proc.send_signal(signal.SIGTERM)
    assert d.wait() == 0
    # why it ended, as the last line
    assert file_lines(log)[-1] == (d.proc.pid, 'pinfs: %s: SIGTERM: unmounting' % pool)
    assert not n.mounted(mountpoint)
    check_fsck(pool)


def test_a_fatal_signal_is_logged_before_the_daemon_dies_of_it(pool, mountpoint, scratch, ns,
                                                              daemons):
    """abort() is what a broken invariant calls, mostly without a word."""
    n = ns()
    d = daemons(n, pool, mountpoint, scratch)
    pid = d.proc.pid
    d.proc.send_signal(signal.SIGABRT)
    assert d.wait() == -signal.SIGABRT              # it still dies of it
    last = file_lines(n.path(FALLBACK))[-1]
    assert last[0] == pid
    assert re.match(r'pinfs: %s: fatal signal SIGABRT from process %d in thread \d+: '
                    r'the daemon dies' % (re.escape(pool), os.getpid()), last[1]), last
    res = n.run(['umount', mountpoint])
    assert res.returncode == 0, describe(res)


def test_with_syslog_the_log_goes_there_and_the_mount_is_silent(pool, mountpoint, scratch, ns,
                                                                daemons):
    n = ns()
    syslog = FakeSyslog(n)
    try:
        d = daemons(n, pool, mountpoint, scratch)
        assert d.stderr() == ''
        pid = d.proc.pid
        rec = syslog.until(lambda r: 'not persistent memory' in r)
        m = SYSLOG_RECORD.match(rec or '')
        assert m, syslog.records
        assert (int(m.group(1)), int(m.group(2))) == (LOG_DAEMON_ERR, pid), rec
        assert m.group(3).startswith('pinfs: %s: not persistent memory' % pool), rec
        d.proc.send_signal(signal.SIGTERM)
        assert d.wait() == 0
        end = 'pinfs: %s: SIGTERM: unmounting' % pool
        rec = syslog.until(lambda r: r.endswith(end))
        assert rec and SYSLOG_RECORD.match(rec).group(2) == str(pid), syslog.records
    finally:
        syslog.close()
    assert not os.path.exists(n.path(FALLBACK))
    check_fsck(pool)


def test_when_syslog_stops_answering_the_log_goes_to_the_file(pool, mountpoint, scratch, ns,
                                                              daemons):
    """glibc's syslog(3) would drop these lines; here the death of the
    daemon (its reason is the line that matters most) is found in the
    fallback file, after a line saying why it is there."""
    n = ns()
    syslog = FakeSyslog(n)
    try:
        d = daemons(n, pool, mountpoint, scratch)
        # every line of the mount has come: nothing else is to be logged
        assert syslog.until(lambda r: 'not persistent memory' in r), syslog.records
        assert syslog.until(lambda r: Daemon.TRANSPORT in r), syslog.records
    finally:
        syslog.close()
    assert not os.path.exists(n.path(FALLBACK))
    pid = d.proc.pid
    d.proc.send_signal(signal.SIGABRT)
    assert d.wait() == -signal.SIGABRT
    lines = file_lines(n.path(FALLBACK))
    assert [p for p, _ in lines] == [pid, pid], lines
    assert re.match(r'pinfs: syslog \(/dev/log\) does not answer '
                    r'\((ECONNREFUSED|Connection refused)\): logging here until it does$',
                    lines[0][1]), lines
    assert lines[1][1].startswith('pinfs: %s: fatal signal SIGABRT from process %d'
                                  % (pool, os.getpid())), lines
    res = n.run(['umount', mountpoint])
    assert res.returncode == 0, describe(res)


def test_with_no_syslog_and_no_log_file_the_mount_says_nothing_is_logged(pool, mountpoint,
                                                                         scratch, ns, daemons):
    n = ns(var_log_ro=True)
    d = daemons(n, pool, mountpoint, scratch)
    assert d.stderr().splitlines() == [
        NO_SYSLOG + ' and %s: Read-only file system: nothing will be logged '
        '(-o logfile=PATH names a file)' % FALLBACK]
    write_file(d.path('f'), b'still served\n')
    assert d.stop() == 0
    check_fsck(pool)


USER = (1000, 1000)


def test_a_user_without_syslog_logs_to_the_xdg_state_directory(scratch, ns, daemons):
    """A non-root daemon (fusermount3 mounts for it) cannot write /var/log:
    its fallback is $XDG_STATE_HOME/pinfs.log, by default
    ~/.local/state/pinfs.log, the directories made private if missing."""
    uid, gid = USER
    home = tempfile.mkdtemp(prefix='pinfs-home-')
    try:
        os.chown(home, uid, gid)
        os.chmod(scratch, 0o755)
        os.mkdir(os.path.join(scratch, 'user'), 0o700)
        os.chown(os.path.join(scratch, 'user'), uid, gid)
        pool = os.path.join(scratch, 'user', 'pool')
        mnt = os.path.join(home, 'mnt')
        res = run(['setpriv', '--reuid=%d' % uid, '--regid=%d' % gid, '--clear-groups',
                   user_runnable(BIN['mkfs.pinfs']), '--size', '64M', pool])
        assert res.returncode == 0, describe(res)
        os.mkdir(mnt)
        os.chown(mnt, uid, gid)
        n = ns(user_fuse=True)
        env = dict(os.environ, HOME=home)
        env.pop('XDG_STATE_HOME', None)
        d = daemons(n, pool, mnt, scratch, env=env,
                    argv_prefix=['setpriv', '--reuid=%d' % uid, '--regid=%d' % gid,
                                 '--clear-groups'])
        log = os.path.join(home, '.local', 'state', 'pinfs.log')
        assert d.stderr() == ''
        assert file_lines(log)[0] == (d.proc.pid, NO_SYSLOG + ': logging to ' + log)
        for p in (os.path.dirname(log), os.path.dirname(os.path.dirname(log))):
            st = os.stat(p)
            assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o700, uid), p
        st = os.stat(log)
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, uid)
        assert any(p == d.proc.pid and 'not persistent memory' in t for p, t in file_lines(log))
        res = n.run(['setpriv', '--reuid=%d' % uid, '--regid=%d' % gid, '--clear-groups',
                     'fusermount3', '-u', mnt])
        assert res.returncode == 0, describe(res)
        assert d.wait() == 0
        check_fsck(pool)
    finally:
        shutil.rmtree(home, ignore_errors=True)

"""Requests per file of what tar -x does (issue 18 item 4), counted by the
daemon (PINFS_IOC_OPS, pinfsctl stats --ops), and the setuid/setgid kill
that the daemon does itself since it answers FUSE_HANDLE_KILLPRIV_V2.

What tar -x does for each regular file: openat(O_CREAT|O_EXCL), write,
futimens, then as root fchown and fchmod, close.  The kernel of this
machine sends for it LOOKUP (atomic_open looks the name up first), CREATE,
WRITE, SETATTR for each of futimens, fchown and fchmod, RELEASE, and a
GETATTR of the directory (the CREATE marked its attributes stale; the next
path walk checks its mode).  Before FUSE_HANDLE_KILLPRIV_V2 a chown also
cost a GETATTR of the file (fs/fuse/dir.c fuse_setattr refreshed the mode to
compute the setuid/setgid kill); the GETXATTR security.capability of a chown
is notify_change()'s and stays.  As root: 9 per file (10 before); as another
user (no fchown): 7 or fewer.

The kill itself must stay right in the kernel's attribute cache, which
exec() and permission checks use without asking: the reply of the SETATTR
that killed carries the new mode.  statx() asking for the mode only is
answered from that cache.
"""

import array
import errno
import fcntl
import os
import stat
import time

import pytest

from pinfs_util import as_user, write_file
from test_attr_coherence import AT_STATX_FORCE_SYNC, STATX_MODE, statx_field

BOB = dict(uid=1001, gid=1001, groups=[1001])
PRIV = stat.S_ISUID | stat.S_ISGID

pytestmark = [pytest.mark.mount_options('allow_other'),
              pytest.mark.skipif(os.getuid() != 0, reason='needs root to chown and switch users')]

# <linux/fuse.h> opcodes
LOOKUP, GETATTR, SETATTR, WRITE, RELEASE = 1, 3, 4, 16, 18
GETXATTR, RELEASEDIR, CREATE, IOCTL = 22, 29, 35, 39
NAMES = {1: 'LOOKUP', 3: 'GETATTR', 4: 'SETATTR', 16: 'WRITE', 18: 'RELEASE',
         22: 'GETXATTR', 27: 'OPENDIR', 29: 'RELEASEDIR', 35: 'CREATE', 39: 'IOCTL'}

OPS_MAX = 64
# _IOR(PINFS_IOC_MAGIC 0xb7, 0x40, struct pinfs_ops): include/pinfs/abi.h
PINFS_IOC_OPS = (2 << 30) | ((8 * OPS_MAX) << 16) | (0xb7 << 8) | 0x40

N = 200


class Ops:
    """Snapshots of the daemon's per-opcode request counters through one
    descriptor kept open, so that a snapshot costs one IOCTL and nothing else."""

    def __init__(self, mnt):
        self.fd = os.open(mnt.path(), os.O_RDONLY | os.O_DIRECTORY)

    def snap(self):
        buf = array.array('Q', [0] * OPS_MAX)
        fcntl.ioctl(self.fd, PINFS_IOC_OPS, buf, True)
        return list(buf)

    def delta(self, fn, until=None):
        """{opcode: requests} that fn() cost, the snapshots' own IOCTLs left
        out. The kernel sends RELEASE and RELEASEDIR after close() returned
        (and over io_uring on another queue than the snapshot's IOCTL):
        snapshots are taken until until(delta) holds, or for 5 s."""
        before = self.snap()
        fn()
        deadline = time.monotonic() + 5
        snaps = 0
        while True:
            after = self.snap()
            snaps += 1
            d = {op: after[op] - before[op] for op in range(OPS_MAX) if after[op] != before[op]}
            d[IOCTL] -= snaps
            d = {op: n for op, n in d.items() if n}
            if until is None or until(d) or time.monotonic() > deadline:
                return d
            time.sleep(0.01)

    def settle(self):
        """Waits (up to 5 s) until no request comes in for 50 ms: what an
        earlier close() left to send is counted before a delta begins."""
        deadline = time.monotonic() + 5
        last = self.snap()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.snap()
            if all(now[op] == last[op] for op in range(OPS_MAX) if op != IOCTL):
                return
            last = now

    def close(self):
        os.close(self.fd)


@pytest.fixture
def ops(mnt):
    o = Ops(mnt)
    yield o
    o.close()


def _named(d):
    return {NAMES.get(op, 'op%d' % op): n for op, n in sorted(d.items())}


def _closed(n):
    """until= of Ops.delta for an _extract of @n files: every RELEASE in."""
    return lambda d: d.get(RELEASE, 0) >= n and d.get(RELEASEDIR, 0) >= 1


def _extract_ops(d):
    """{name: requests} of an _extract, without the OPENDIR and RELEASEDIR
    of the one directory descriptor it opens (asserted)."""
    named = _named(d)
    assert (named.pop('OPENDIR', 0), named.pop('RELEASEDIR', 0)) == (1, 1), named
    return named


def _extract(d, n, chown):
    """What GNU tar -C @d -x does for @n small regular files of a member
    directory "sub" (strace'd): paths relative to a descriptor of @d."""
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(n):
            fd = os.open('sub/f%04d' % i,
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOCTTY | os.O_CLOEXEC,
                         0o600, dir_fd=dfd)
            try:
                os.write(fd, b'%d\n' % i * 100)
                os.utime(fd, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000 + i))
                if chown:
                    os.fchown(fd, 0, 0)
                os.fchmod(fd, 0o644)
            finally:
                os.close(fd)
    finally:
        os.close(dfd)


def _prepare(d):
    """The member directory, and one file closed in it: the kernel learns at
    the first close that the daemon has no FLUSH, and forgets nothing of it
    afterwards (tar -x pays that once per mount, too)."""
    os.mkdir(os.path.join(d, 'sub'))
    with open(os.path.join(d, 'warm'), 'wb') as f:
        f.write(b'w')


def test_tar_like_extract_as_root_costs_nine_requests_per_file_not_ten(mnt, ops):
    d = mnt.path('x')
    os.mkdir(d)
    _prepare(d)
    ops.settle()
    got = _extract_ops(ops.delta(lambda: _extract(d, N, chown=True), until=_closed(N)))
    per_file = {k: v / N for k, v in got.items()}
    # chown no longer asks for the file's attributes first: one GETATTR per
    # file is left, the directory's after each CREATE
    assert per_file == {'LOOKUP': 1, 'GETATTR': 1, 'SETATTR': 3, 'WRITE': 1, 'RELEASE': 1,
                        'GETXATTR': 1, 'CREATE': 1}, per_file
    assert sum(got.values()) <= 9 * N
    for i in (0, N - 1):
        st = os.stat(os.path.join(d, 'sub', 'f%04d' % i))
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_mtime_ns) == \
            (0o644, 0, 1_700_000_000_000_000_000 + i)


def test_tar_like_extract_as_a_user_costs_seven_requests_or_fewer_per_file(mnt, ops):
    d = mnt.path('x')
    os.mkdir(d)
    os.chown(d, BOB['uid'], BOB['gid'])
    as_user(lambda: _prepare(d), **BOB)
    ops.settle()
    got = _extract_ops(ops.delta(lambda: as_user(lambda: _extract(d, N, chown=False), timeout=60, **BOB),
                                 until=_closed(N)))
    # + 1: the path walk to open the directory descriptor (a user other
    # than the root's owner has the kernel fetch the root's access ACL on
    # every walk through it: README "Round trips")
    assert sum(got.values()) <= 7 * N + 1, {k: v / N for k, v in got.items()}


def _file(mnt, name, mode, uid=0):
    d = mnt.path('shared')
    if not os.path.isdir(d):
        os.mkdir(d)
        os.chmod(d, 0o777)
    path = os.path.join(d, name)
    write_file(path, b'x' * 10000)
    os.chown(path, uid, uid)
    os.chmod(path, mode)
    st = os.stat(path)                   # the kernel caches the mode
    assert stat.S_IMODE(st.st_mode) == mode
    return path


def _cached_and_pool_mode(path):
    cached = statx_field(path, STATX_MODE)
    return stat.S_IMODE(cached), stat.S_IMODE(statx_field(path, STATX_MODE, AT_STATX_FORCE_SYNC))


def test_chown_kills_setuid_setgid_without_a_getattr_and_the_cached_mode_is_true(mnt, ops):
    path = _file(mnt, 'a', 0o6775, uid=BOB['uid'])
    got = ops.delta(lambda: os.chown(path, 0, 0))
    assert GETATTR not in got, _named(got)
    assert _cached_and_pool_mode(path) == (0o775, 0o775)
    # no id given: still a chown, still a kill (a SETATTR that sets nothing)
    path = _file(mnt, 'b', 0o6775)
    got = ops.delta(lambda: os.chown(path, -1, -1))
    assert GETATTR not in got, _named(got)
    assert _cached_and_pool_mode(path) == (0o775, 0o775)
    # setgid without group execute (mandatory locking) stays
    path = _file(mnt, 'c', 0o6745, uid=BOB['uid'])
    os.chown(path, 0, 0)
    assert _cached_and_pool_mode(path) == (0o2745, 0o2745)
    # a directory keeps its setgid
    d = mnt.path('dir')
    os.mkdir(d)
    os.chmod(d, 0o2775)
    os.stat(d)
    os.chown(d, BOB['uid'], BOB['gid'])
    assert _cached_and_pool_mode(d) == (0o2775, 0o2775)


def test_truncate_fallocate_by_a_user_kill_by_root_do_not_and_the_cached_mode_is_true(mnt, ops):
    path = _file(mnt, 't', 0o6777)

    def user_truncate():
        os.truncate(path, 100)
        return _cached_and_pool_mode(path)

    assert as_user(user_truncate, **BOB) == (0o777, 0o777)
    path = _file(mnt, 'r', 0o6777)
    os.truncate(path, 100)
    assert _cached_and_pool_mode(path) == (0o6777, 0o6777)
    path = _file(mnt, 'f', 0o6777)

    def user_fallocate():
        fd = os.open(path, os.O_WRONLY)
        try:
            os.posix_fallocate(fd, 0, 65536)
        finally:
            os.close(fd)
        return _cached_and_pool_mode(path)

    assert as_user(user_fallocate, **BOB) == (0o777, 0o777)


def test_chown_and_truncate_still_remove_security_capability(mnt):
    cap = bytes.fromhex('0100000200200000000000000000000000000000')   # cap_net_raw+ep
    for name, change in (('c', lambda p: os.chown(p, BOB['uid'], BOB['gid'])),
                         ('t', lambda p: os.truncate(p, 5))):
        path = _file(mnt, name, 0o755)
        os.setxattr(path, 'security.capability', cap)
        assert os.getxattr(path, 'security.capability') == cap
        change(path)
        assert 'security.capability' not in os.listxattr(path), name


def test_chown_without_ids_by_a_stranger_is_refused_and_keeps_setuid(mnt):
    """chown(f, -1, -1) reaches the daemon as a SETATTR that sets nothing,
    the kill's own signature.  The kernel (notify_change: the kill is a mode
    change, setattr_prepare wants the owner) refuses it with EPERM to a user
    who neither owns the file nor may write it, and the mode stays: else any
    user could strip setuid from root's programs.  One who may write the
    file kills as the kernel's own file_remove_privs would (fallocate)."""
    path = _file(mnt, 's', 0o6755)

    def stranger_chown():
        try:
            os.chown(path, -1, -1)
        except OSError as e:
            return e.errno, _cached_and_pool_mode(path)
        return 0, _cached_and_pool_mode(path)

    assert as_user(stranger_chown, **BOB) == (errno.EPERM, (0o6755, 0o6755))
    # nothing to kill: the kernel's chown succeeds, and so does ours
    path = _file(mnt, 'n', 0o755)
    assert as_user(stranger_chown, **BOB) == (0, (0o755, 0o755))
    # a writer may kill (it could by writing anyway)
    path = _file(mnt, 'w', 0o6777)
    assert as_user(stranger_chown, **BOB) == (0, (0o777, 0o777))

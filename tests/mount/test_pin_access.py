"""Who may pin (include/pinfs/abi.h PINFS_IOC_PIN, fusefs/access.c), end to end as
unprivileged users.

A pin can refuse, delay or revoke another process's truncate, so by default
only the file's owner (or CAP_LEASE) may pin it, as F_SETLEASE; with
-o pin_access=writer also whoever may write it (EACCES otherwise). A read pin
never fills holes in a file its holder could not write (EACCES). Holders map
the pool file, so a caller who could not open the pool is refused before
anything is pinned (EPERM), and the tools say why in one line;
-o pin_group=GROUP opens the pool to GROUP (mode 0660).

Users: alice (1000) and bob (1001), no passwd entries; group 2000 is the
pool group of the pin_group tests.
"""

import ctypes
import errno
import fcntl
import mmap
import os

import pytest

from pinfs_mount import run, try_mount, user_runnable
from pinfs_util import KiB, MiB, as_user, expect_errno
from test_pins import (IOC_PIN, IOC_SET_POLICY, PIN_HDR, PIN_SIZE, PIN_WRITE, PIN_REVOCABLE,
                       PINCLIENT, PINFSCTL, POLICY, POLICY_NUM, SEG, get_policy, list_leases,
                       needs_pinclient, needs_pinfsctl)

pytestmark = [pytest.mark.needs_daemon,
              pytest.mark.skipif(os.getuid() != 0, reason='needs root to switch users')]

PIN_ON_CLOSE = 4
POOL_GID = 2000
ALICE = dict(uid=1000, gid=1000, groups=[1000, POOL_GID])
BOB = dict(uid=1001, gid=1001, groups=[1001, POOL_GID])
BOB_ALONE = dict(uid=1001, gid=1001, groups=[1001])   # not in the pool's group
ROOT = dict(uid=0, gid=0, groups=[0])


def _pin(path, off, length, flags=0, mode=os.O_RDONLY):
    """PINFS_IOC_PIN from this process; returns (lease id, [(file_off, pool_off, len)])."""
    fd = os.open(path, mode)
    try:
        buf = bytearray(PIN_SIZE)
        PIN_HDR.pack_into(buf, 0, off, length, flags, 0, 0, 0, 0, 0, 0)
        fcntl.ioctl(fd, IOC_PIN, buf, True)
        h = PIN_HDR.unpack_from(buf)
        return h[4], [SEG.unpack_from(buf, PIN_HDR.size + i * SEG.size) for i in range(h[8])]
    finally:
        os.close(fd)


def _open_pool_dir(mnt):
    """The scratch directory is 0700 (mkdtemp): let others reach the pool."""
    os.chmod(os.path.dirname(mnt.pool), 0o755)


def _shared_dir(mnt):
    """A sticky world-writable directory of the mount, like /tmp."""
    d = mnt.path('shared')
    if not os.path.isdir(d):
        os.mkdir(d)
        os.chmod(d, 0o1777)
    return d


def _alice_file(mnt, name, mode, size=4 * MiB, data=b''):
    """A file alice creates: `data` at offset 0, then a hole up to `size`."""
    path = os.path.join(_shared_dir(mnt), name)

    def make():
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            if data:
                os.write(fd, data)
            os.ftruncate(fd, size)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
    as_user(make, **ALICE)
    st = os.stat(path)
    assert (st.st_uid, st.st_size, st.st_mode & 0o777) == (1000, size, mode)
    return path


def _drop_cap_lease():
    """capset(): CAP_LEASE out of this process's effective and permitted sets."""
    class Hdr(ctypes.Structure):
        _fields_ = [('version', ctypes.c_uint32), ('pid', ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [('effective', ctypes.c_uint32), ('permitted', ctypes.c_uint32),
                    ('inheritable', ctypes.c_uint32)]
    libc = ctypes.CDLL(None, use_errno=True)
    hdr, data = Hdr(0x20080522, 0), (Data * 2)()
    if libc.capget(ctypes.byref(hdr), data) != 0:
        raise OSError(ctypes.get_errno(), 'capget')
    data[0].effective &= ~(1 << 28)
    data[0].permitted &= ~(1 << 28)
    if libc.capset(ctypes.byref(hdr), data) != 0:
        raise OSError(ctypes.get_errno(), 'capset')


def _run_as(cmd, who, timeout=30):
    """Runs program cmd[0] of the build as `who`, from a copy that user can
    reach (pinfs_mount.user_runnable)."""
    return run([user_runnable(cmd[0])] + list(cmd[1:]), timeout=timeout, user=who['uid'],
               group=who['gid'], extra_groups=who['groups'])


# --------------------------------------------------------------------------
# the pin rule

@pytest.mark.mount_options('allow_other')
def test_pin_of_another_users_file_is_eacces_even_with_write_access_and_allocates_nothing(mnt):
    path = _alice_file(mnt, 'sparse', 0o666)
    blocks0 = os.stat(path).st_blocks
    for flags, mode in ((0, os.O_RDONLY), (0, os.O_RDWR), (PIN_WRITE, os.O_RDWR),
                        (PIN_WRITE | PIN_REVOCABLE, os.O_RDWR), (PIN_REVOCABLE, os.O_RDONLY),
                        (PIN_ON_CLOSE, os.O_RDONLY), (PIN_WRITE | PIN_ON_CLOSE, os.O_RDWR)):
        expect_errno(errno.EACCES, as_user, lambda: _pin(path, 0, 1 * MiB, flags, mode), **BOB)
    assert os.stat(path).st_blocks == blocks0, 'a refused pin allocated blocks'
    assert list_leases(path) == []
    # the owner's truncate is not held up by anything bob did
    as_user(lambda: os.truncate(path, 0), **ALICE)
    assert os.stat(path).st_size == 0


@pytest.mark.mount_options('allow_other')
def test_cap_lease_lets_root_pin_another_users_file_and_without_it_root_is_eacces(mnt):
    path = _alice_file(mnt, 'f', 0o644, size=1 * MiB, data=b'x' * (64 * KiB))
    lease, _ = as_user(lambda: _pin(path, 0, 64 * KiB), **ROOT)
    assert lease > 0

    def without_cap_lease():
        _drop_cap_lease()
        return _pin(path, 0, 64 * KiB)
    expect_errno(errno.EACCES, as_user, without_cap_lease, **ROOT)


@pytest.mark.mount_options('allow_other', 'pin_access=writer', 'pin_group=%d' % POOL_GID)
def test_pin_access_writer_lets_whoever_may_write_the_file_pin_it(mnt):
    _open_pool_dir(mnt)
    rw = _alice_file(mnt, 'rw', 0o666)
    ro = _alice_file(mnt, 'ro', 0o644)
    blocks_ro = os.stat(ro).st_blocks
    lease, segs = as_user(lambda: _pin(rw, 0, 64 * KiB, PIN_WRITE, os.O_RDWR), **BOB)
    assert lease > 0 and sum(s[2] for s in segs) == 64 * KiB
    lease, _ = as_user(lambda: _pin(rw, 1 * MiB, 64 * KiB), **BOB)   # a read pin, fd read-only
    assert lease > 0
    expect_errno(errno.EACCES, as_user, lambda: _pin(ro, 0, 64 * KiB), **BOB)
    assert os.stat(ro).st_blocks == blocks_ro
    as_user(lambda: os.truncate(ro, 0), **ALICE)


@pytest.mark.mount_options('allow_other', 'pin_group=%d' % POOL_GID)
def test_read_pin_without_write_permission_fills_no_hole_but_pins_allocated_blocks(mnt):
    _open_pool_dir(mnt)
    # alice owns it (the rule lets her pin) but may not write it: mode 0444
    path = _alice_file(mnt, 'ro', 0o444, size=1 * MiB, data=b'a' * (64 * KiB))
    blocks0 = os.stat(path).st_blocks
    assert blocks0 >= 64 * KiB // 512
    for off, length in ((0, 1 * MiB), (512 * KiB, 4 * KiB), (60 * KiB, 8 * KiB)):
        expect_errno(errno.EACCES, as_user, lambda: _pin(path, off, length), **ALICE)
        assert os.stat(path).st_blocks == blocks0, 'a refused read pin filled a hole'
    lease, segs = as_user(lambda: _pin(path, 0, 64 * KiB), **ALICE)
    assert lease > 0 and sum(s[2] for s in segs) == 64 * KiB
    assert os.stat(path).st_blocks == blocks0


# --------------------------------------------------------------------------
# the file's policy needs the pin rule too

@pytest.mark.mount_options('allow_other')
def test_setting_a_files_policy_needs_what_a_pin_needs(mnt):
    path = _alice_file(mnt, 'f', 0o666, size=64 * KiB)

    def set_by_ioctl(name):
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.ioctl(fd, IOC_SET_POLICY, bytearray(POLICY.pack(POLICY_NUM[name], 0, 0, 0)), True)
        finally:
            os.close(fd)
    expect_errno(errno.EACCES, as_user, lambda: set_by_ioctl('revoke'), **BOB)
    expect_errno(errno.EACCES, as_user,
                 lambda: os.setxattr(path, 'user.pinfs.policy', b'revoke'), **BOB)
    assert get_policy(path)[0] == POLICY_NUM['default']
    as_user(lambda: set_by_ioctl('revoke'), **ALICE)
    assert get_policy(path)[0] == POLICY_NUM['revoke']
    as_user(lambda: os.setxattr(path, 'user.pinfs.policy', b'wait'), **ALICE)
    assert get_policy(path)[0] == POLICY_NUM['wait']
    expect_errno(errno.EACCES, as_user,
                 lambda: os.removexattr(path, 'user.pinfs.policy'), **BOB)
    assert get_policy(path)[0] == POLICY_NUM['wait']
    as_user(lambda: os.removexattr(path, 'user.pinfs.policy'), **ALICE)
    assert get_policy(path)[0] == POLICY_NUM['default']


# --------------------------------------------------------------------------
# the pool: who can map it

def _one_clear_line(res, pool):
    assert res.returncode == 1, 'exit %s\n%s%s' % (res.returncode, res.stdout, res.stderr)
    err = res.stderr.strip()
    assert '\n' not in err, 'expected one line:\n' + res.stderr
    assert 'you may not map the pool %s' % pool in err, err
    assert 'pin_group' in err and 'root' in err, 'the message must name the rule: ' + err
    print(err)
    return err


@needs_pinfsctl
@needs_pinclient
@pytest.mark.mount_options('allow_other')
def test_without_pin_group_a_non_root_user_is_told_why_it_cannot_pin(mnt):
    _open_pool_dir(mnt)
    pool = os.path.realpath(mnt.pool)
    assert os.stat(pool).st_mode & 0o777 == 0o600
    path = _alice_file(mnt, 'f', 0o644, size=1 * MiB)
    blocks0 = os.stat(path).st_blocks
    expect_errno(errno.EPERM, as_user, lambda: _pin(path, 0, 64 * KiB), **ALICE)
    expect_errno(errno.EPERM, as_user,
                 lambda: _pin(path, 0, 64 * KiB, PIN_WRITE, os.O_RDWR), **ALICE)
    assert os.stat(path).st_blocks == blocks0, 'a refused pin allocated blocks'

    res = _run_as([PINFSCTL, 'pin', '--hold', '0.2', path, '0', '4096'], ALICE)
    err = _one_clear_line(res, pool)
    assert 'mode 0600' in err and 'owner root' in err, err
    res = _run_as([PINCLIENT, '--duration', '0.2', path, '0', str(64 * KiB)], ALICE)
    err = _one_clear_line(res, pool)
    assert 'mode 0600' in err, err
    assert os.stat(path).st_blocks == blocks0
    assert list_leases(path) == []


@needs_pinfsctl
@needs_pinclient
@pytest.mark.mount_options('allow_other', 'pin_group=%d' % POOL_GID)
def test_pin_group_members_pin_map_and_store_and_others_are_refused(mnt):
    pool = os.path.realpath(mnt.pool)
    st = os.stat(pool)
    assert (st.st_mode & 0o7777, st.st_gid) == (0o660, POOL_GID)
    path = _alice_file(mnt, 'f', 0o644, size=1 * MiB)

    # the pool's directory is still closed (0700): the daemon lets the pin
    # through, the client cannot open the pool and says so
    res = _run_as([PINCLIENT, '--duration', '0.2', path, '0', str(64 * KiB)], ALICE)
    err = _one_clear_line(res, pool)
    assert 'directory' in err, err
    assert list_leases(path) == []

    _open_pool_dir(mnt)
    res = _run_as([PINCLIENT, '--rate', '50', '--duration', '0.5', path, '0', str(64 * KiB)],
                  ALICE)
    assert res.returncode == 0, 'pinclient as a pool-group member:\n%s%s' % (res.stdout,
                                                                          res.stderr)
    res = _run_as([PINFSCTL, 'pin', '--hold', '0.2', path, '0', '4096'], ALICE)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith('lease '), res.stdout

    def store_and_read_back():
        fd = os.open(path, os.O_RDWR)
        try:
            lease, segs = _pin(path, 128 * KiB, 64 * KiB, PIN_WRITE, os.O_RDWR)
            pfd = os.open(os.getxattr(path, 'user.pinfs.pool').decode(), os.O_RDWR)
            try:
                for foff, poff, length in segs:
                    m = mmap.mmap(pfd, length, mmap.MAP_SHARED, offset=poff)
                    m[:] = bytes([0xa5]) * length
                    m.close()
            finally:
                os.close(pfd)
            return os.pread(fd, 64 * KiB, 128 * KiB) == bytes([0xa5]) * (64 * KiB)
        finally:
            os.close(fd)
    assert as_user(store_and_read_back, **ALICE), 'read() does not show the stores'

    # not in the pool's group, on his own file: the rule allows, the pool not
    bobs = os.path.join(mnt.path('shared'), 'bobs')
    as_user(lambda: os.close(os.open(bobs, os.O_RDWR | os.O_CREAT, 0o644)), **BOB_ALONE)
    os.truncate(bobs, 64 * KiB)
    expect_errno(errno.EPERM, as_user, lambda: _pin(bobs, 0, 4 * KiB), **BOB_ALONE)
    lease, _ = as_user(lambda: _pin(bobs, 0, 4 * KiB), **BOB)       # as a member he may
    assert lease > 0


# --------------------------------------------------------------------------
# the options

@pytest.mark.parametrize('opt', ['pin_access=everyone', 'pin_group=no-such-group-pinfs'])
def test_bad_pin_access_or_pin_group_is_refused_at_mount_with_one_line(pool, mountpoint, opt):
    rc, err = try_mount(pool, mountpoint, [opt])
    assert rc != 0
    assert opt.split('=')[0] in err, err
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("Try '")]
    assert len(lines) == 1, 'expected one clear message (and a Try line):\n' + err

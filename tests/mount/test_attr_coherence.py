"""The kernel's cached attributes stay true when the daemon changes an inode
on its own: the setuid/setgid kill of a write or O_TRUNC open by an
unprivileged user, the blocks an extended attribute takes or frees.

The kernel caches attributes for -o timeout seconds (default a day).  It
marks size, mtime, ctime and blocks stale by itself after a write, so a plain
stat() asks the daemon again; but exec() and permission checks read the
cached mode without asking, and so does statx() when it asks only for what
the kernel did not mark stale.  These tests look at the kernel's cache the
way those do: statx() with one field in the mask (answered from the cache
unless that field was marked stale), compared with statx(AT_STATX_FORCE_SYNC),
which always asks the daemon (the pool's view); and exec() of a setuid-root
copy of id(1).
"""

import ctypes
import errno
import mmap
import os
import shutil
import stat
import struct
import subprocess

import pytest

from pinfs_util import as_user, read_file, write_file

BOB = dict(uid=1001, gid=1001, groups=[1001])
PRIV = stat.S_ISUID | stat.S_ISGID

pytestmark = [pytest.mark.mount_options('allow_other'),
              pytest.mark.skipif(os.getuid() != 0, reason='needs root to switch users')]

# --------------------------------------------------------------------------
# statx(2) through libc (Python 3.11 has no os.statx)

_LIBC = ctypes.CDLL(None, use_errno=True)


class _Ts(ctypes.Structure):
    _fields_ = [('tv_sec', ctypes.c_int64), ('tv_nsec', ctypes.c_uint32),
                ('reserved', ctypes.c_int32)]


class _Statx(ctypes.Structure):
    _fields_ = [('mask', ctypes.c_uint32), ('blksize', ctypes.c_uint32),
                ('attributes', ctypes.c_uint64), ('nlink', ctypes.c_uint32),
                ('uid', ctypes.c_uint32), ('gid', ctypes.c_uint32),
                ('mode', ctypes.c_uint16), ('spare0', ctypes.c_uint16),
                ('ino', ctypes.c_uint64), ('size', ctypes.c_uint64),
                ('blocks', ctypes.c_uint64), ('attributes_mask', ctypes.c_uint64),
                ('atime', _Ts), ('btime', _Ts), ('ctime', _Ts), ('mtime', _Ts),
                ('spare', ctypes.c_uint64 * 20)]


STATX_MODE, STATX_MTIME, STATX_CTIME = 0x2, 0x40, 0x80
STATX_SIZE, STATX_BLOCKS = 0x200, 0x400
AT_STATX_FORCE_SYNC = 0x2000
FIELD = {STATX_MODE: 'mode', STATX_MTIME: 'mtime', STATX_CTIME: 'ctime',
         STATX_SIZE: 'size', STATX_BLOCKS: 'blocks'}


def statx_field(path, mask, flags=0):
    """Field `mask` of statx(path) asking for that field only: answered from
    the kernel's cache unless the kernel marked that field stale (or, with
    AT_STATX_FORCE_SYNC, from the daemon)."""
    st = _Statx()
    if _LIBC.statx(-100, os.fsencode(path), flags, mask, ctypes.byref(st)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)
    v = getattr(st, FIELD[mask])
    return (v.tv_sec, v.tv_nsec) if isinstance(v, _Ts) else v


def cached_and_pool(path, mask):
    """(what the kernel's cache says, what the daemon says) of one field;
    the cached one first, before anything refreshes the cache."""
    cached = statx_field(path, mask)
    return cached, statx_field(path, mask, AT_STATX_FORCE_SYNC)


# --------------------------------------------------------------------------


def _shared_dir(mnt):
    d = mnt.path('shared')
    os.mkdir(d)
    os.chmod(d, 0o777)
    return d


def _root_file(d, name, mode=0o6777, data=b'root file'):
    """A root-owned file every user may write, setuid and setgid with group
    execute, its attributes cached by the kernel."""
    path = os.path.join(d, name)
    write_file(path, data)
    os.chmod(path, mode)
    st = os.stat(path)
    assert st.st_mode & PRIV == PRIV and st.st_uid == 0
    return path


def _pwrite(path, data, off=0, flags=os.O_WRONLY):
    fd = os.open(path, flags)
    try:
        os.pwrite(fd, data, off)
    finally:
        os.close(fd)


def test_write_by_other_user_clears_setuid_setgid_and_every_cached_attribute_is_true_at_once(mnt):
    path = _root_file(_shared_dir(mnt), 'f')
    fields = (STATX_MODE, STATX_CTIME, STATX_MTIME, STATX_SIZE, STATX_BLOCKS)

    def write_then_look():
        seen = []
        # each field looked at after an operation of its own, before
        # anything else refreshes the cache; the first write kills
        for i, mask in enumerate(fields):
            _pwrite(path, b'w' * 5000, off=(i + 1) * 16384)
            seen.append(('write', FIELD[mask]) + cached_and_pool(path, mask))
        for i, mask in enumerate(fields):
            fd = os.open(path, os.O_WRONLY)
            try:
                os.posix_fallocate(fd, 0, (i + 8) * 16384)
            finally:
                os.close(fd)
            seen.append(('fallocate', FIELD[mask]) + cached_and_pool(path, mask))
        return seen

    seen = as_user(write_then_look, **BOB)
    assert seen[0][3] & PRIV == 0, 'the daemon did not clear the bits: %o' % seen[0][3]
    stale = ['after %s: %s cached %s, in the pool %s' % (op, f, oct(c) if f == 'mode' else c,
                                                          oct(p) if f == 'mode' else p)
             for op, f, c, p in seen if c != p]
    assert not stale, stale
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o777


def test_write_by_other_user_clears_setuid_but_not_setgid_without_group_exec(mnt):
    # S_ISGID without group execute marks mandatory locking: it stays
    path = _root_file(_shared_dir(mnt), 'f', mode=0o6767)

    def write_then_look():
        _pwrite(path, b'R')
        return cached_and_pool(path, STATX_MODE)

    mode, pool_mode = as_user(write_then_look, **BOB)
    assert mode == pool_mode, 'the kernel caches mode %o, the pool has %o' % (mode, pool_mode)
    assert stat.S_IMODE(pool_mode) == 0o2767
    assert read_file(path) == b'Root file'


@pytest.mark.mount_options('allow_other', 'suid')
def test_exec_after_other_users_write_does_not_run_as_the_owner(mnt):
    """The consequence that matters: a setuid-root program that another user
    rewrote must not run as root afterwards, though nobody stat()ed it."""
    d = _shared_dir(mnt)
    prog = os.path.join(d, 'id')
    shutil.copyfile('/usr/bin/id', prog)
    os.chmod(prog, 0o6777)
    first = read_file('/usr/bin/id')[:1]

    def run(*args):
        return subprocess.run([prog] + list(args), capture_output=True, text=True,
                              timeout=10).stdout.strip()

    def exec_write_exec():
        before = (run('-u'), run('-g'))
        _pwrite(prog, first)             # the same byte: the program still runs
        return before, (run('-u'), run('-g'))

    before, after = as_user(exec_write_exec, **BOB)
    assert before == ('0', '0'), 'the mount does not honour setuid: %s' % (before,)
    assert after == ('1001', '1001'), 'ran as uid, gid %s after a write by uid 1001' % (after,)
    assert not os.stat(prog).st_mode & PRIV


@pytest.mark.mount_options('allow_other', 'suid')
def test_exec_after_other_users_o_trunc_rewrite_does_not_run_as_the_owner(mnt):
    d = _shared_dir(mnt)
    prog = os.path.join(d, 'id')
    shutil.copyfile('/usr/bin/id', prog)
    os.chmod(prog, 0o6777)
    image = read_file('/usr/bin/id')

    def run(*args):
        return subprocess.run([prog] + list(args), capture_output=True, text=True,
                              timeout=10).stdout.strip()

    def exec_rewrite_exec():
        before = run('-u')
        fd = os.open(prog, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, image)
        finally:
            os.close(fd)
        return before, run('-u')

    before, after = as_user(exec_rewrite_exec, **BOB)
    assert before == '0', 'the mount does not honour setuid: %s' % before
    assert after == '1001', 'ran as uid %s after uid 1001 truncated and rewrote it' % after


@pytest.mark.parametrize('size', [9, 0], ids=['with_data', 'empty'])
def test_o_trunc_open_by_other_user_clears_setuid_and_setgid_root_keeps_them(mnt, size):
    d = _shared_dir(mnt)
    path = _root_file(d, 'f', data=b'root file'[:size])
    # root (CAP_FSETID) keeps them, by O_TRUNC and by write
    os.close(os.open(path, os.O_WRONLY | os.O_TRUNC))
    _pwrite(path, b'root file'[:size])
    assert cached_and_pool(path, STATX_MODE) == (0o106777, 0o106777)
    # truncate(2) by another user: the kernel asks for the kill itself
    other = _root_file(d, 'g')

    def trunc_then_look():
        os.close(os.open(path, os.O_WRONLY | os.O_TRUNC))
        looked = cached_and_pool(path, STATX_MODE), os.stat(path).st_mode
        os.truncate(other, 4)
        return looked + (cached_and_pool(other, STATX_MODE),)

    (mode, pool_mode), st_mode, other_modes = as_user(trunc_then_look, **BOB)
    assert not pool_mode & PRIV, 'O_TRUNC by uid 1001 left mode %o in the pool' % pool_mode
    assert mode == pool_mode == st_mode
    assert stat.S_IMODE(pool_mode) == 0o777
    assert os.stat(path).st_size == 0
    assert other_modes == (0o100777, 0o100777)
    mnt.remount()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o777


def test_xattr_that_takes_and_frees_a_block_shows_in_cached_attributes(mnt):
    path = mnt.path('f')
    write_file(path, b'x' * 8192)
    seen = []
    for mask in (STATX_BLOCKS, STATX_CTIME, STATX_SIZE):
        os.stat(path)                    # cached
        os.setxattr(path, 'user.big', b'v' * 3000)
        seen.append(('set', FIELD[mask]) + cached_and_pool(path, mask))
        os.stat(path)
        os.removexattr(path, 'user.big')
        seen.append(('remove', FIELD[mask]) + cached_and_pool(path, mask))
    assert seen[0][3] > seen[1][3], 'the xattr took no block of its own: %s' % seen
    stale = [s for s in seen if s[2] != s[3]]
    assert not stale, '(xattr op, field, cached, pool): %s' % stale


# security.capability, revision 2: CAP_NET_BIND_SERVICE permitted + effective
CAPS = struct.pack('<IIIII', 0x02000001, 1 << 10, 0, 0, 0)


@pytest.mark.parametrize('writer', ['root', 'other_user', 'mapped'])
def test_a_write_drops_the_files_capabilities_as_other_file_systems_do(mnt, writer):
    """file_remove_privs() on tmpfs or ext4 drops security.capability on any
    write, by root too; with FUSE_HANDLE_KILLPRIV_V2 that is the file
    system's job, also for a write through the coherent (mapped) path."""
    d = _shared_dir(mnt)
    path = _root_file(d, 'f', data=b'root file'.ljust(4096, b'.'))
    os.setxattr(path, 'security.capability', CAPS)
    assert os.getxattr(path, 'security.capability') == CAPS
    other = _root_file(d, 'g')
    os.setxattr(other, 'security.capability', CAPS)
    if writer == 'root':
        _pwrite(path, b'new bytes', off=3)
    elif writer == 'other_user':
        as_user(lambda: _pwrite(path, b'new bytes', off=3), **BOB)
    else:
        # a page of the file cached for a shared mapping: the write is
        # applied by coherent.c's worker
        fd = os.open(path, os.O_RDWR)
        try:
            m = mmap.mmap(fd, 4096)
            assert m[:4] == b'root'
            os.pwrite(fd, b'new bytes', 3)
            assert m[3:12] == b'new bytes'
            m.close()
        finally:
            os.close(fd)
    with pytest.raises(OSError) as e:
        os.getxattr(path, 'security.capability')
    assert e.value.errno == errno.ENODATA
    assert read_file(path)[3:12] == b'new bytes'
    # a file nobody wrote keeps them
    assert os.getxattr(other, 'security.capability') == CAPS

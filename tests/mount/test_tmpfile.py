"""O_TMPFILE and RENAME_WHITEOUT on pinfs. O_TMPFILE: an unnamed regular file in a directory, freed when its
last descriptor closes unless linkat() gives it a name first (what
systemd, glibc's tmpfile(3) and atomic file writers do). The kernel's
FUSE_TMPFILE request is served although libfuse 3.14 has no handler for it
(fusefs/ops.c, ffs_request_fixup).

Names are given with linkat(fd, "", ..., AT_EMPTY_PATH), which needs
CAP_DAC_READ_SEARCH: these tests run as root.
"""

import ctypes
import errno
import os
import stat
import subprocess

import pytest

from pinfs_mount import wait_until
from pinfs_util import read_file

pytestmark = [pytest.mark.needs_daemon,
              pytest.mark.skipif(os.getuid() != 0, reason='linkat AT_EMPTY_PATH needs root')]

AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
_libc = ctypes.CDLL(None, use_errno=True)


def link_fd(fd, path):
    if _libc.linkat(fd, b'', AT_FDCWD, os.fsencode(path), AT_EMPTY_PATH) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)


def _free_blocks(mnt):
    return os.statvfs(mnt.dir).f_bfree


def test_tmpfile_has_no_name_and_its_space_comes_back_at_close(mnt):
    free0 = _free_blocks(mnt)
    fd = os.open(mnt.dir, os.O_TMPFILE | os.O_RDWR, 0o666)
    try:
        st = os.fstat(fd)
        assert stat.S_ISREG(st.st_mode) and st.st_nlink == 0
        assert st.st_mode & 0o777 == 0o644                 # the umask (022) applies
        assert os.listdir(mnt.dir) == []
        assert os.write(fd, b'z' * (1 << 20)) == 1 << 20
        assert os.pread(fd, 4, 1000) == b'zzzz'
        assert _free_blocks(mnt) <= free0 - 256
        ffree = os.statvfs(mnt.dir).f_ffree
    finally:
        os.close(fd)
    # the kernel's FORGET and the severer free it in the background
    assert wait_until(lambda: _free_blocks(mnt) == free0, 5), \
        'a closed unnamed tmpfile kept its blocks'
    assert wait_until(lambda: os.statvfs(mnt.dir).f_ffree == ffree + 1, 5)
    assert os.listdir(mnt.dir) == []


def test_linkat_names_a_tmpfile_and_the_name_persists(mnt):
    os.mkdir(mnt.path('d'))
    fd = os.open(mnt.path('d'), os.O_TMPFILE | os.O_WRONLY, 0o600)
    try:
        os.write(fd, b'written before it had a name')
        link_fd(fd, mnt.path('d', 'final'))
        assert os.fstat(fd).st_nlink == 1
        os.write(fd, b', and after')
    finally:
        os.close(fd)
    assert os.listdir(mnt.path('d')) == ['final']
    mnt.remount()
    st = os.stat(mnt.path('d', 'final'))
    assert (st.st_nlink, st.st_mode & 0o777) == (1, 0o600)
    assert read_file(mnt.path('d', 'final')) == b'written before it had a name, and after'


def test_tmpfile_opened_with_o_excl_can_never_be_linked(mnt):
    fd = os.open(mnt.dir, os.O_TMPFILE | os.O_RDWR | os.O_EXCL, 0o600)
    try:
        os.write(fd, b'x')
        with pytest.raises(OSError) as e:
            link_fd(fd, mnt.path('never'))
        assert e.value.errno == errno.ENOENT
    finally:
        os.close(fd)
    assert os.listdir(mnt.dir) == []


def test_tmpfile_inherits_the_default_acl_of_its_directory(mnt):
    d = mnt.path('proj')
    os.mkdir(d)
    res = subprocess.run(['setfacl', '-d', '-m', 'u:1001:rwx,o::---', d],
                         stderr=subprocess.PIPE, universal_newlines=True, timeout=30)
    assert res.returncode == 0, res.stderr
    fd = os.open(d, os.O_TMPFILE | os.O_RDWR, 0o666)
    try:
        link_fd(fd, os.path.join(d, 'f'))
    finally:
        os.close(fd)
    assert os.stat(os.path.join(d, 'f')).st_mode & 0o777 == 0o660   # umask ignored, mask rw-
    acl = subprocess.run(['getfacl', '-cnpE', os.path.join(d, 'f')], stdout=subprocess.PIPE,
                         universal_newlines=True, timeout=30).stdout.split()
    assert 'user:1001:rwx' in acl and 'mask::rw-' in acl


# --------------------------------------------------------------------------
# RENAME_WHITEOUT, the other creation overlayfs asks of an upper layer

RENAME_WHITEOUT = 4


def rename_whiteout(old, new):
    if _libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new),
                       RENAME_WHITEOUT) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), old)


def test_rename_whiteout_leaves_a_whiteout_device_at_the_old_name(mnt):
    os.mkdir(mnt.path('d'))
    with open(mnt.path('d', 'f'), 'wb') as f:
        f.write(b'moved')
    rename_whiteout(mnt.path('d', 'f'), mnt.path('g'))
    assert read_file(mnt.path('g')) == b'moved'
    mnt.remount()
    st = os.lstat(mnt.path('d', 'f'))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0 and st.st_mode & 0o7777 == 0
    assert (st.st_uid, st.st_nlink) == (0, 1)
    assert os.stat(mnt.path('d')).st_nlink == 2
    assert read_file(mnt.path('g')) == b'moved'
    # a directory moves out the same way; the whiteout is no directory
    os.mkdir(mnt.path('d', 'sub'))
    rename_whiteout(mnt.path('d', 'sub'), mnt.path('sub2'))
    assert stat.S_ISCHR(os.lstat(mnt.path('d', 'sub')).st_mode)
    assert os.stat(mnt.path('d')).st_nlink == 2
    with pytest.raises(OSError) as e:     # with RENAME_EXCHANGE: the kernel says no
        _libc_exchange_whiteout(mnt.path('g'), mnt.path('sub2'))
    assert e.value.errno == errno.EINVAL


def _libc_exchange_whiteout(a, b):
    if _libc.renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b),
                       RENAME_WHITEOUT | 2) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), a)

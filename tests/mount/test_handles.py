"""File handles (name_to_handle_at / open_by_handle_at, what an NFS server
exports): pinfs negotiates FUSE_CAP_EXPORT_SUPPORT, and a handle -- the
inode number and its generation -- opens the same file after the pool is
mounted again, when the kernel has never seen the inode; a handle of a file
since removed, or of an inode slot since reused, is ESTALE.
"""

import ctypes
import errno
import os

import pytest

from pinfs_util import read_file, write_file

pytestmark = [pytest.mark.needs_daemon,
              pytest.mark.skipif(os.getuid() != 0,
                                 reason='open_by_handle_at needs CAP_DAC_READ_SEARCH')]

MAX_HANDLE_SZ = 128
_libc = ctypes.CDLL(None, use_errno=True)


class _Handle(ctypes.Structure):
    _fields_ = [('handle_bytes', ctypes.c_uint), ('handle_type', ctypes.c_int),
                ('f_handle', ctypes.c_ubyte * MAX_HANDLE_SZ)]


def name_to_handle(path):
    h = _Handle(MAX_HANDLE_SZ, 0)
    mount_id = ctypes.c_int()
    if _libc.name_to_handle_at(-100, os.fsencode(path), ctypes.byref(h),
                               ctypes.byref(mount_id), 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)
    return h


def open_by_handle(mount_dir, h, flags=os.O_RDONLY):
    mfd = os.open(mount_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = _libc.open_by_handle_at(mfd, ctypes.byref(h), flags)
        if fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        return fd
    finally:
        os.close(mfd)


def test_handles_open_the_same_files_after_a_remount(mnt):
    os.mkdir(mnt.path('d'))
    path = mnt.path('d', 'f')
    write_file(path, b'handled')
    fh, dh = name_to_handle(path), name_to_handle(mnt.path('d'))

    mnt.remount()   # a new kernel super block: it knows none of these inodes
    fd = open_by_handle(mnt.dir, fh, os.O_RDWR)
    try:
        assert os.fstat(fd).st_ino == os.stat(path).st_ino
        assert os.pread(fd, 100, 0) == b'handled'
        os.pwrite(fd, b'H', 0)
    finally:
        os.close(fd)
    assert read_file(path) == b'Handled'
    fd = open_by_handle(mnt.dir, dh, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert os.listdir(fd) == ['f']
        # the parent of a directory found by handle ("..")
        assert os.stat('..', dir_fd=fd).st_ino == os.stat(mnt.dir).st_ino
    finally:
        os.close(fd)


def test_handle_of_a_removed_file_is_estale_even_when_its_slot_is_reused(mnt):
    path = mnt.path('gone')
    write_file(path, b'x')
    ino = os.stat(path).st_ino
    h = name_to_handle(path)
    os.unlink(path)
    mnt.remount()
    with pytest.raises(OSError) as e:
        os.close(open_by_handle(mnt.dir, h))
    assert e.value.errno == errno.ESTALE

    # the slot taken again by another file: another generation
    write_file(mnt.path('new'), b'y')
    assert os.stat(mnt.path('new')).st_ino == ino, 'the engine reuses the lowest free slot'
    hn = name_to_handle(mnt.path('new'))
    assert bytes(hn.f_handle) != bytes(h.f_handle)
    mnt.remount()
    with pytest.raises(OSError) as e:
        os.close(open_by_handle(mnt.dir, h))
    assert e.value.errno == errno.ESTALE
    fd = open_by_handle(mnt.dir, hn)
    try:
        assert os.read(fd, 10) == b'y'
    finally:
        os.close(fd)

"""What statfs promises: f_bavail blocks fit in one file, by fallocate or by
writing, their block-map nodes included (f_bfree counts the free blocks, so
df's Used stays the blocks in use).

The pools are 512 MiB: there the map nodes of the free space (one per 2 MiB)
come to more than the 512 KiB the first test leaves, so a statfs that did not
keep them back is caught.
"""

import os

import pytest

from pinfs_mount import wait_until
from pinfs_util import MiB, fallocate

BLOCK = 4096

pytestmark = pytest.mark.pool_size('512M')


def _avail(mnt):
    st = os.statvfs(mnt.dir)
    assert st.f_frsize == BLOCK
    return st.f_bavail


def _fresh_file(mnt, name):
    """An empty file; its directory got its first block (a directory takes
    its blocks with its first names and keeps them)."""
    path = mnt.path(name)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    return path


def _fallocate(path, length):
    fd = os.open(path, os.O_WRONLY)
    try:
        fallocate(fd, 0, 0, length)
    finally:
        os.close(fd)


def test_fallocate_of_available_less_512k_succeeds(mnt):
    path = _fresh_file(mnt, 'f')
    avail = _avail(mnt)
    _fallocate(path, avail * BLOCK - 512 * 1024)
    assert os.stat(path).st_size == avail * BLOCK - 512 * 1024


def test_one_file_takes_f_bavail_blocks_by_fallocate_and_no_more_is_promised(mnt):
    path = _fresh_file(mnt, 'f')
    avail = _avail(mnt)
    _fallocate(path, avail * BLOCK)
    st = os.stat(path)
    assert st.st_size == avail * BLOCK
    assert st.st_blocks * 512 >= avail * BLOCK
    # tight: what is left promises (almost) nothing more
    assert _avail(mnt) <= 8, 'statfs kept back far more than the maps took'
    os.unlink(path)
    assert wait_until(lambda: _avail(mnt) == avail, 5), (_avail(mnt), avail)


def test_one_file_takes_f_bavail_blocks_written_in_pieces(mnt):
    path = _fresh_file(mnt, 'f')
    avail = _avail(mnt)
    chunk = os.urandom(MiB)
    left = avail * BLOCK
    fd = os.open(path, os.O_WRONLY)
    try:
        while left:
            n = os.write(fd, chunk[:min(left, MiB - BLOCK)])   # pieces across map leaves
            assert n > 0
            left -= n
        os.fsync(fd)
    finally:
        os.close(fd)
    assert os.stat(path).st_size == avail * BLOCK
    assert _avail(mnt) <= 8


def test_statfs_after_many_small_files_counts_used_blocks_and_keeps_its_promise(mnt):
    st0 = os.statvfs(mnt.dir)
    used0 = st0.f_blocks - st0.f_bfree
    blocks0 = os.stat(mnt.dir).st_blocks
    d = mnt.path('small')
    os.mkdir(d)
    for i in range(2000):
        fd = os.open(os.path.join(d, 'f%d' % i), os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.write(fd, b'%d' % i * (1 + i % 700))     # 1 to ~2800 bytes: one block
        finally:
            os.close(fd)
    in_files = sum(os.stat(os.path.join(d, n)).st_blocks for n in os.listdir(d))
    in_files += os.stat(d).st_blocks + os.stat(mnt.dir).st_blocks - blocks0
    st = os.statvfs(mnt.dir)
    # df's Used is what the files hold (data, map nodes, directory blocks)
    assert (st.f_blocks - st.f_bfree) - used0 == in_files * 512 // BLOCK
    assert st.f_bavail < st.f_bfree
    # and f_bavail still fits in one more file
    big = _fresh_file(mnt, 'big')
    _fallocate(big, _avail(mnt) * BLOCK)
    assert _avail(mnt) <= 8

"""A store through a shared mapping on a full pool (README, "Bad input"):
FUSE tells the daemon nothing at mmap or at a page fault, so the space for
a store into a hole can only be found when the kernel writes the page back;
on a full pool that write fails, and the first msync/fsync says ENOSPC.
Space allocated first (fallocate, or a pin) makes the same store safe.
The loss is counted (mmap_lost_bytes of the mount's PINFS_IOC_STATS,
`pinfsctl stats MOUNTPOINT`) and logged by the daemon (one line naming the
inode, the byte range and the errno; not checked here: the log is syslog,
or the file pinfs(8) LOGGING names).
"""

import errno
import mmap
import os
import struct

import pytest

from pinfs_util import KiB, fallocate, read_file
from test_pins import IOC_STATS, STATS_SIZE, _ioctl

pytestmark = [pytest.mark.needs_daemon]

SIZE = 64 * KiB
AT = 8 * KiB
DATA = b'stored through a shared mapping ' * 64      # 2 KiB


def mmap_lost_bytes(any_file):
    """The mount's mmap_lost_bytes counter (include/pinfs/abi.h struct pinfs_counters)."""
    buf = _ioctl(any_file, IOC_STATS, bytearray(STATS_SIZE))
    return struct.unpack_from('<Q', buf, 160 + 13 * 8)[0]


def fill_pool(path):
    """Writes `path` until the pool is full (ENOSPC for even one block)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for chunk in (bytes([0x5a]) * (256 * KiB), bytes([0x5a]) * (4 * KiB)):
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    break
    finally:
        os.close(fd)


def sparse(path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, SIZE)
    return fd


def store_through_mapping(fd):
    """Stores DATA at AT through a MAP_SHARED mapping; returns the mmap."""
    m = mmap.mmap(fd, SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    m[AT:AT + len(DATA)] = DATA
    return m


@pytest.mark.pool_size('16M')
def test_shared_mapping_store_into_hole_on_full_pool_reports_enospc_once(mnt):
    mnt.allow_stderr(r'shared mapping')              # the daemon's one line per lost write
    hole = sparse(mnt.path('hole'))
    fill_pool(mnt.path('filler'))
    assert mmap_lost_bytes(mnt.path('hole')) == 0
    m = store_through_mapping(hole)
    with pytest.raises(OSError) as e:
        m.flush()                                    # msync(MS_SYNC)
    assert e.value.errno == errno.ENOSPC
    m.flush()                                        # reported once (errseq), as on any Linux fs
    m.close()
    os.fsync(hole)
    os.close(hole)
    assert read_file(mnt.path('hole')) == bytes(SIZE), 'the lost store is not in the file'
    assert os.stat(mnt.path('hole')).st_blocks == 0
    assert mmap_lost_bytes(mnt.path('hole')) >= 4 * KiB, 'the loss is not counted'


@pytest.mark.pool_size('16M')
def test_shared_mapping_store_into_fallocated_range_on_full_pool_survives(mnt):
    fd = sparse(mnt.path('pre'))
    fallocate(fd, 0, 0, SIZE)                        # the space first ...
    fill_pool(mnt.path('filler'))                    # ... then the pool fills up
    m = store_through_mapping(fd)
    m.flush()
    m.close()
    os.fsync(fd)
    os.close(fd)
    want = bytearray(SIZE)
    want[AT:AT + len(DATA)] = DATA
    assert read_file(mnt.path('pre')) == bytes(want)
    assert mmap_lost_bytes(mnt.path('pre')) == 0
    mnt.remount()
    assert read_file(mnt.path('pre')) == bytes(want)

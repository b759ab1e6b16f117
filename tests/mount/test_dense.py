"""Dense pools: -o dense keeps free space backed by zeroed pages (README,
"Dense pools"; pmem/backing.c).

A sparse pool's freed blocks are punched out of the pool file and come back
as holes, so the next file to take them pays the backing's page
allocation. With -o dense the daemon backs a freed block again with fresh
zeroed pages right after its punch, and all free space at mount. What a
user relies on:
  - the mount says it is dense (or, on the terminal, why it is not), and
    the pool file stays allocated: deleting files gives no memory back;
  - a new file, its preallocation and its holes read zeros, never the
    bytes of the file that had the blocks before;
  - the punch still comes first: an io_uring buffer kept after its lease
    ended stores into an orphaned page, never into another user's file;
  - a backing store too small for the pool's free space leaves the pool
    sparse, and says so.
"""

import ctypes
import os
import re

import pytest

from pinfs_mount import wait_until
from pinfs_util import MiB, pattern, read_file, write_file
from test_holders import needs_root, raw  # noqa: F401 (fixture)
from test_kernel_pins import ring_kept_after_revocation, ring_kept_after_unpin
from test_pins import needs_pinfsctl
from test_stat_counters import ctl_stats
from test_stale_mapping import staleholder  # noqa: F401 (fixture)

pytestmark = [pytest.mark.needs_daemon]

DENSE_LOG = re.compile(r'dense: free space is kept backed by zeroed pages '
                       r'\((\d+) MiB, from now on, in the background\)')


def libc_fallocate_keep_size(fd, length):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate64.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    if libc.fallocate64(fd, 1, 0, length) != 0:          # FALLOC_FL_KEEP_SIZE
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def pool_allocated(mnt):
    """Bytes of the pool file its file system has allocated."""
    return os.stat(mnt.pool).st_blocks * 512


def severed(mnt):
    """Blocks the severer has cut out of the pool file (pinfsctl stats)."""
    return ctl_stats(mnt.dir)['severed']


def settle(mnt):
    """Waits until the severer stopped cutting blocks out (and, dense,
    backing them again): the severed count stays put for 0.3 s."""
    last = [None, 0]

    def still():
        s = severed(mnt)
        if s == last[0]:
            last[1] += 1
        else:
            last[0], last[1] = s, 0
        return last[1] >= 3
    assert wait_until(still, 30, interval=0.1)


@needs_pinfsctl
@pytest.mark.pool_size('128M')
@pytest.mark.mount_options('dense')
def test_dense_pool_keeps_free_space_backed_and_new_files_read_zeros(mnt):
    m = DENSE_LOG.search(mnt.output())
    assert m, mnt.output()
    assert int(m.group(1)) >= 100          # most of a 128 MiB pool is free
    # backed after the mount, by the severer
    assert wait_until(lambda: pool_allocated(mnt) >= 110 * MiB, 30), pool_allocated(mnt)

    # a file of known bytes takes most of the pool, then goes
    old = mnt.path('old')
    write_file(old, pattern(7, 96 * MiB))
    before = severed(mnt)
    os.unlink(old)
    settle(mnt)
    assert severed(mnt) - before >= 96 * MiB // 4096   # cut out: a kernel pin is orphaned
    # ... and backed again: the pool's memory did not come back
    assert pool_allocated(mnt) >= 110 * MiB

    # new files on those blocks: zeros wherever nothing was written
    pre = mnt.path('prealloc')
    fd = os.open(pre, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.posix_fallocate(fd, 0, 40 * MiB)
        os.pwrite(fd, b'\xee' * 5000, 3 * MiB + 100)
    finally:
        os.close(fd)
    got = read_file(pre)
    assert len(got) == 40 * MiB
    want = bytearray(40 * MiB)
    want[3 * MiB + 100:3 * MiB + 5100] = b'\xee' * 5000
    assert got == want

    fd = os.open(mnt.path('keepsize'), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        libc_fallocate_keep_size(fd, 20 * MiB)
        os.ftruncate(fd, 20 * MiB)              # the preallocation comes into view
        assert os.pread(fd, 20 * MiB, 0) == bytes(20 * MiB)
    finally:
        os.close(fd)

    holes = mnt.path('holes')
    with open(holes, 'wb') as f:
        f.seek(30 * MiB)
        f.write(b'\x01' * 4096)
        f.seek(10 * MiB)
        f.write(b'\x02' * 100)
    got = read_file(holes)
    assert got[:10 * MiB] == bytes(10 * MiB)
    assert got[10 * MiB:10 * MiB + 100] == b'\x02' * 100
    assert got[10 * MiB + 100:30 * MiB] == bytes(20 * MiB - 100)


@needs_pinfsctl
@pytest.mark.pool_size('128M')
def test_sparse_pool_gives_memory_back(mnt):
    """The default, for contrast: what dense changes."""
    assert 'dense' not in mnt.output()
    old = mnt.path('old')
    write_file(old, pattern(7, 96 * MiB))
    assert pool_allocated(mnt) >= 96 * MiB
    os.unlink(old)
    settle(mnt)
    assert pool_allocated(mnt) < 32 * MiB


@needs_root
@pytest.mark.pool_size('64M')
@pytest.mark.mount_options('allow_other', 'dense')
def test_dense_pool_io_uring_buffers_kept_after_unpin_never_store_into_another_users_files(
        mnt, raw):
    """The freed blocks are punched (the ring keeps the orphaned pages)
    before they are backed again and handed to the second user."""
    assert DENSE_LOG.search(mnt.output()), mnt.output()
    ring_kept_after_unpin(mnt, raw)


@needs_root
@pytest.mark.pool_size('64M')
@pytest.mark.mount_options('allow_other', 'policy=revoke', 'dense')
def test_dense_pool_io_uring_buffers_kept_after_revocation_never_store_into_another_users_files(
        mnt, raw):
    assert DENSE_LOG.search(mnt.output()), mnt.output()
    ring_kept_after_revocation(mnt, raw)


@pytest.mark.pool_tmpfs('size=64M')
@pytest.mark.pool_size('256M')
@pytest.mark.mount_options('dense')
def test_dense_is_not_taken_up_on_a_backing_store_too_small(mnt):
    """A 256 MiB pool on a 64 MiB tmpfs: dense would fill the backing
    store, so the mount stays sparse and says why; the pool works (the
    fixture runs fsck after the unmount)."""
    mnt.allow_stderr(r'-o dense not taken up')
    out = mnt.output()
    assert re.search(r"-o dense not taken up: the backing store has less room than the "
                     r"pool's free space; the pool stays sparse", out), out
    assert not DENSE_LOG.search(out)
    write_file(mnt.path('f'), pattern(3, 8 * MiB))
    assert read_file(mnt.path('f')) == pattern(3, 8 * MiB)
    assert pool_allocated(mnt) < 48 * MiB

"""Dense pools: -o dense keeps free space backed by zeroed pages (README,
"Dense pools"; pmem/backing.c).

A sparse pool's freed blocks are punched out of the pool file and come back
as holes, so the next file to take them pays the backing's page
allocation. With -o dense the daemon backs a freed block again with fresh
zeroed pages after its punch, and all free space after the mount, once
the pool is idle (and, while it is busy and has room, punches later too).
What a user relies on:
  - the mount says it is dense (or, on the terminal, why it is not), and
    the pool file stays allocated: deleting files gives no memory back;
  - a new file, its preallocation and its holes read zeros, never the
    bytes of the file that had the blocks before;
  - the punch still comes first: an io_uring buffer kept after its lease
    ended stores into an orphaned page, never into another user's file;
  - a backing store too small for the pool's free space leaves the pool
    sparse, and says so; one that fills later makes it go on sparse,
    saying so once, with ENOSPC where the store has no page.
"""

import errno
import os
import re
import threading

import pytest

from pinfs_mount import wait_until
from pinfs_util import MiB, fallocate, pattern, read_file, write_file
from test_holders import needs_root, raw  # noqa: F401 (fixture)
from test_kernel_pins import ring_kept_after_revocation, ring_kept_after_unpin
from test_pins import needs_pinfsctl
from test_stat_counters import ctl_stats
from test_stale_mapping import staleholder  # noqa: F401 (fixture)

pytestmark = [pytest.mark.needs_daemon]

DENSE_LOG = re.compile(r'dense: free space is kept backed by zeroed pages '
                       r'\((\d+) MiB, from now on, in the background\)')


def pool_allocated(mnt):
    """Bytes of the pool file its file system has allocated."""
    return os.stat(mnt.pool).st_blocks * 512


def severed(mnt):
    """Blocks the severer has cut out of the pool file (pinfsctl stats)."""
    return ctl_stats(mnt.dir)['severed']


def settle(mnt):
    """Waits until the severer stopped cutting blocks out and, dense,
    backing them again: the severed count stays put for 0.3 s with none
    left to back."""
    last = [None, 0]

    def still():
        st = ctl_stats(mnt.dir)
        s = (st['severed'], st['zeroing'])
        if s == last[0] and s[1] == 0:
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
    settle(mnt)
    assert ctl_stats(mnt.dir)['zeroed'] >= 100 * MiB // 4096

    # a file of known bytes takes most of the pool, then goes
    old = mnt.path('old')
    write_file(old, pattern(7, 96 * MiB))
    before = severed(mnt)
    os.unlink(old)
    settle(mnt)
    assert severed(mnt) - before >= 96 * MiB // 4096   # cut out: a kernel pin is orphaned
    # ... and backed again: the pool's memory did not come back
    assert pool_allocated(mnt) >= 110 * MiB
    assert ctl_stats(mnt.dir)['zeroed'] >= 100 * MiB // 4096

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
        fallocate(fd, 1, 0, 20 * MiB)               # FALLOC_FL_KEEP_SIZE
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
    st = ctl_stats(mnt.dir)
    assert (st['zeroed'], st['zeroing']) == (0, 0)


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


def fill_up(path):
    """Writes @path until its file system is full (ENOSPC): bytes written."""
    n = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                n += os.write(fd, b'\xaa' * MiB)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                return n
    finally:
        os.close(fd)


@needs_pinfsctl
@pytest.mark.pool_tmpfs('size=96M')
@pytest.mark.pool_size('64M')
@pytest.mark.mount_options('dense')
def test_dense_pool_whose_backing_store_fills_goes_on_sparse(mnt):
    """The pool's tmpfs fills after the mount (another program's file in
    it) while freed blocks wait for the pool to idle before they are
    backed again. (Fewer blocks are free than the unlink frees, so the
    daemon cuts them out at once, busy or not: the hog gets those pages.)
    The daemon says once that the backing refused, backs no more, and the
    pool works on as a sparse one: ENOSPC while the store has no page,
    then writes, zeros in holes and the other files intact once it has
    (the fixture runs fsck after the unmount)."""
    mnt.allow_stderr(r'dense: the backing refused zeroed pages')
    refused = re.compile(r'dense: the backing refused zeroed pages \((.*)\): free space '
                         r'freed from now on stays unbacked')
    settle(mnt)
    keep = pattern(5, 8 * MiB)
    write_file(mnt.path('keep'), keep)
    hog = os.path.join(os.path.dirname(mnt.pool), 'hog')
    for _ in range(5):      # until the hog got the freed pages first
        write_file(mnt.path('big'), pattern(6, 40 * MiB))
        stop = threading.Event()

        def taker():
            # a block taken every 10 ms: the pool is never idle, so the
            # freed blocks wait in the queue ("zeroing")
            t = mnt.path('taker')
            while not stop.is_set():
                try:
                    write_file(t, b'\x01' * 4096)
                    os.unlink(t)
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                stop.wait(0.01)
        th = threading.Thread(target=taker)
        th.start()
        try:
            os.unlink(mnt.path('big'))
            if wait_until(lambda: ctl_stats(mnt.dir)['zeroing'] >= 30 * MiB // 4096, 10):
                fill_up(hog)     # the pages the punch gave the tmpfs back
        finally:
            stop.set()
            th.join(30)
        assert not th.is_alive()
        assert wait_until(lambda: ctl_stats(mnt.dir)['zeroing'] == 0, 30)
        if refused.search(mnt.output()):
            break
        if os.path.exists(hog):
            os.unlink(hog)   # backed before the hog came: again
    m = refused.search(mnt.output())
    assert m, mnt.output()
    assert len(refused.findall(mnt.output())) == 1

    # the store is full: a new block has no page, the pool says ENOSPC
    with pytest.raises(OSError) as e:
        write_file(mnt.path('nospace'), pattern(7, 16 * MiB))
    assert e.value.errno == errno.ENOSPC
    os.unlink(hog)
    if os.path.exists(mnt.path('nospace')):
        os.unlink(mnt.path('nospace'))

    # room again: a sparse pool from now on
    after = mnt.path('after')
    with open(after, 'wb') as f:
        f.seek(20 * MiB)
        f.write(b'\x02' * 4096)
    got = read_file(after)
    assert got == bytes(20 * MiB) + b'\x02' * 4096
    assert read_file(mnt.path('keep')) == keep
    zeroed = ctl_stats(mnt.dir)['zeroed']
    allocated = pool_allocated(mnt)
    write_file(mnt.path('gone'), pattern(8, 16 * MiB))
    os.unlink(mnt.path('gone'))
    settle(mnt)
    assert ctl_stats(mnt.dir)['zeroed'] <= zeroed     # freed blocks stay unbacked
    assert pool_allocated(mnt) <= allocated


@needs_pinfsctl
@pytest.mark.pool_size('96M')
@pytest.mark.mount_options('dense')
@pytest.mark.parametrize('blocks,punched', [(10000, 5000), (22800, 11200)], ids=['room', 'short'])
def test_dense_pool_backs_what_was_freed_while_busy_once_idle(mnt, blocks, punched):
    """Blocks punched out of a file, one in two, while the pool is never
    idle: they wait (zeroing), to be cut out and backed again once it
    idles. With room (5 000 punched, free space above what waits) the
    punches themselves wait. Short of it (11 200 punched out of a 89 MiB
    file in the 96 MiB pool) the severer makes enough of them at once to
    keep as much free as waits, and queues them to be backed: more separate
    runs than its queue holds (4 096), so that it finds the rest in the
    bitmaps. Every block waiting is counted once, every free block is
    backed in the end, and the file holds its bytes."""
    settle(mnt)
    path = mnt.path('sieve')
    data = pattern(9, blocks * 4096)
    write_file(path, data)
    stop = threading.Event()
    taken = [0]

    def taker():
        t = mnt.path('taker')
        while not stop.is_set():
            write_file(t, b'\x01' * 4096)
            os.unlink(t)
            taken[0] += 1
            stop.wait(0.01)
    th = threading.Thread(target=taker)
    th.start()
    fd = os.open(path, os.O_RDWR)
    try:
        for i in range(0, 2 * punched, 2):
            fallocate(fd, 3, i * 4096, 4096)          # PUNCH_HOLE | KEEP_SIZE
        # all of them waiting: to be punched, queued, or to be found in
        # the bitmaps
        assert wait_until(lambda: ctl_stats(mnt.dir)['zeroing'] >= punched - 16, 30,
                          interval=0.1), ctl_stats(mnt.dir)
        if blocks > 20000:   # the severer punches more than its queue holds
            assert wait_until(lambda: ctl_stats(mnt.dir)['severed'] > 4096, 30,
                              interval=0.1), ctl_stats(mnt.dir)
        # each counted once, though the queue and the bitmaps both know
        # some (the taker's blocks: a few per file, freed ones wait too,
        # and it may take some of the punched ones)
        st = ctl_stats(mnt.dir)
        slack = 4 * taken[0] + 16
        assert punched - slack <= st['zeroing'] <= punched + slack, (st, taken[0])
    finally:
        os.close(fd)
        stop.set()
        th.join(30)
    assert not th.is_alive()
    settle(mnt)
    sv = os.statvfs(mnt.dir)
    free = sv.f_bfree * sv.f_frsize // 4096
    zeroed = ctl_stats(mnt.dir)['zeroed']
    assert free - 256 <= zeroed <= free, (free, zeroed)
    want = bytearray(data)
    for i in range(0, 2 * punched, 2):
        want[i * 4096:(i + 1) * 4096] = bytes(4096)
    assert read_file(path) == want

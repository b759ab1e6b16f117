"""Kernel pins and stray mappings never store into another user's files (issue 14).

io_uring fixed buffers (like RDMA memory regions) hold the pages of a
lease's direct mapping, not the mapping: they survive unpin, revocation,
munmap and fork. A mapping inherited by a process that is no longer the
holder's child survives the holder's unpin. Either way a hostile client
keeps a way to store into the lease's pool blocks after the lease ended.
The blocks must never reach another file while it can: on a tmpfs pool
freed blocks are punched out of the pool file before reuse (the pinned
pages live on, orphaned), and at every lease end the daemon looks at the
maps of every process.

Each test: the lease ends and the pinned file P's blocks are freed; a
second user (uid 1000, the mount has allow_other) fills the pool until
ENOSPC with files of mixed sizes (so block-map nodes are allocated too, not
only data blocks), each of known content; the stale holder stores MARK
through its kernel pin or mapping; every one of the second user's files
must read back what was written, and fsck must find the pool clean (the mnt
fixture runs it after the unmount).

  ring after unpin      the library's unpin (munmap + UNPIN), ring kept
  ring after revoke     policy=revoke, truncate revokes (SIGBUS, blocked),
                        the holder acknowledges with the library's unpin
  ring in a child       the holder forks (the ring is inherited, the
                        MADV_DONTFORK mapping is not) and exits unpinned
  double fork           a raw holder's child forks a grandchild and exits;
                        the grandchild keeps the mapping, storing into it
                        every millisecond; the holder unmaps and unpins

  pinned huge page    tmpfs huge=always: a block freed inside a huge page a
                        ring holds stays out of use until the page can go

The holders are tests/mount/staleholder.c ("ring" and "raw" modes), through
the Raw class and raw fixture of test_holders.py.
"""

import ctypes
import errno
import os
import time

import pytest

from pinfs_mount import wait_until
from pinfs_util import KiB, MiB, as_user, pattern, read_file, write_file
from test_holders import needs_root, raw, _quarantined  # noqa: F401 (fixture)
from test_pins import BLOCK, free_blocks, list_leases, mount_stats
from test_stale_mapping import staleholder  # noqa: F401 (fixture)

pytestmark = [pytest.mark.needs_daemon, needs_root, pytest.mark.pool_size('64M')]

SIZE = 1 * MiB              # the pinned range of P: 256 blocks, 4 fixed buffers
OLD, MARK = 0x11, 0xCD
SECOND = dict(uid=1000, gid=1000)      # 'cloudsdk'
# the second user's file sizes, in turn: one block, a few blocks, two
# levels of block map (over 2 MiB), odd sizes
SIZES = [4 * KiB, 1536 * KiB, 12 * KiB, 3 * MiB + 4 * KiB, 300 * KiB + 7, 1, 64 * KiB,
         700 * KiB + 123, 5 * MiB]


def _released(mnt):
    """Blocks free or quarantined: P's blocks count once its file let them go."""
    return free_blocks(mnt) + _quarantined(mnt)


def _wait_released(mnt, before):
    """Waits (RELEASE is asynchronous) until P's blocks left the file."""
    assert wait_until(lambda: _released(mnt) >= before + SIZE // BLOCK, 5), (
        'P\'s blocks were not let go: %d free or quarantined, %d before'
        % (_released(mnt), before))


def _fill(d):
    """As the second user: files of SIZES in turn in `d`, each the pattern
    of its number, until ENOSPC; then one-block files until even one fails
    with nothing written. Returns ([(path, seed, bytes written)], errno of
    anything but ENOSPC that stopped it, or 0)."""
    files, i, small = [], 0, False
    while True:
        size = 4 * KiB if small else SIZES[i % len(SIZES)]
        path = os.path.join(d, 'f%04d' % i)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as e:
            return files, 0 if e.errno == errno.ENOSPC else e.errno
        data, n, err = pattern(i, size), 0, 0
        try:
            while n < size:
                n += os.write(fd, data[n:n + MiB])
        except OSError as e:
            err = e.errno
        finally:
            os.close(fd)
        files.append((path, i, n))
        i += 1
        if err and err != errno.ENOSPC:
            return files, err
        if err:
            if small and n == 0:
                return files, 0
            small = True


def _second_user_fills(mnt):
    """The second user fills the pool (see _fill); returns its files."""
    d = mnt.path('cloudsdk')
    os.mkdir(d)
    os.chown(d, SECOND['uid'], SECOND['gid'])
    t0 = time.monotonic()
    files, err = as_user(lambda: _fill(d), timeout=60, **SECOND)
    assert files and sum(n for _, _, n in files) > 32 * MiB, (
        'only %d bytes fit in the pool' % sum(n for _, _, n in files))
    left = free_blocks(mnt)
    print('second user: %d files, %d bytes in %.2f s, %d blocks left free, fill errno %d'
          % (len(files), sum(n for _, _, n in files), time.monotonic() - t0, left, err))
    return files, err


def _check_second_users_files(files, err):
    """Every file of the second user is listed in its directory and reads
    back what was written; else says how many files and bytes differ (how
    many of them are MARK) and how many names the directory lost."""
    bad, nbytes, marked = [], 0, 0
    try:
        listed = set(os.listdir(os.path.dirname(files[0][0])))
    except OSError as e:
        listed = set()
        bad.append('the directory: %s' % errno.errorcode.get(e.errno, e.errno))
    unlisted = sum(os.path.basename(path) not in listed for path, _, _ in files)
    for path, seed, n in files:
        want = pattern(seed, n)
        try:
            got = read_file(path)
        except OSError as e:
            bad.append('%s: %s' % (os.path.basename(path), errno.errorcode.get(e.errno, e.errno)))
            nbytes += n
            continue
        if got == want:
            continue
        diff = abs(len(got) - n)
        for off in range(0, min(len(got), n), BLOCK):
            g, w = got[off:off + BLOCK], want[off:off + BLOCK]
            if g != w:
                d = [a for a, b in zip(g, w) if a != b]
                diff += len(d)
                marked += d.count(MARK)
        bad.append('%s (%d bytes)' % (os.path.basename(path), diff))
        nbytes += diff
    assert not bad and not unlisted and not err, (
        'another user\'s files changed: %d of %d files differ, %d bytes (%d of them the '
        'marker %#x)%s%s: %s' % (len(bad), len(files), nbytes, marked, MARK,
                                 '; its directory lists %d of them' % (len(files) - unlisted)
                                 if unlisted else '',
                                 '; the fill stopped with %s' % errno.errorcode[err]
                                 if err else '', ', '.join(bad[:8])
                                 + (', ...' if len(bad) > 8 else '')))


def _pinned_file(mnt):
    path = mnt.path('P')
    write_file(path, bytes([OLD]) * SIZE)
    return path


# --------------------------------------------------------------------------
# io_uring fixed buffers outlive the lease

def _ring_holder(mnt, raw, flags='w'):
    """P, and a holder that pinned all of it and registered the mapping
    with io_uring as fixed buffers (the kernel pins the pages)."""
    path = _pinned_file(mnt)
    h = raw(path, flags, SIZE, mode='ring')
    assert h.cmd('ring') == 'ok'
    return path, h


def _stale_dma_changes_no_other_file(mnt, h, before):
    """P's blocks left it (`before`: free or quarantined blocks before);
    the second user fills the pool; the holder DMAs MARK through its stale
    ring; none of the second user's files may change."""
    _wait_released(mnt, before)
    files, err = _second_user_fills(mnt)
    assert h.cmd('dma %d' % MARK) == 'stored %d' % SIZE
    _check_second_users_files(files, err)


def ring_kept_after_unpin(mnt, raw):
    """The holder unpins, keeping its ring; P is deleted (also run on a
    dense pool by test_dense.py)."""
    path, h = _ring_holder(mnt, raw)
    assert h.cmd('unpin') == 'ok'                # munmap + UNPIN; the ring keeps the pages
    assert list_leases(mnt.dir) == []
    before = _released(mnt)
    os.unlink(path)
    assert h.cmd('close') == 'ok'                # P's last open: its blocks are freed
    _stale_dma_changes_no_other_file(mnt, h, before)


def ring_kept_after_revocation(mnt, raw):
    """policy=revoke: a truncate revokes, the holder acknowledges and keeps
    its ring (also run on a dense pool by test_dense.py)."""
    path, h = _ring_holder(mnt, raw, 'wr')
    before = _released(mnt)
    os.truncate(path, 0)                         # revoked (SIGBUS, blocked), quarantined
    assert [l['state'] for l in list_leases(mnt.dir)] == ['revoked']
    assert h.cmd('unpin') == 'ok'                # acknowledged; the ring keeps the pages
    _stale_dma_changes_no_other_file(mnt, h, before)


@pytest.mark.mount_options('allow_other')
def test_io_uring_buffers_kept_after_unpin_never_store_into_another_users_files(mnt, raw):
    ring_kept_after_unpin(mnt, raw)


@pytest.mark.mount_options('allow_other', 'policy=revoke')
def test_io_uring_buffers_kept_after_acknowledged_revocation_never_store_into_another_users_files(
        mnt, raw):
    ring_kept_after_revocation(mnt, raw)


@pytest.mark.mount_options('allow_other')
def test_io_uring_buffers_inherited_by_a_child_never_store_into_another_users_files(mnt, raw):
    path, h = _ring_holder(mnt, raw)
    before = _released(mnt)
    h.fork()                                     # the holder exits unpinned; its child
    # has the ring, not the mapping; the lease ends with the holder (pidfd)
    assert wait_until(lambda: list_leases(mnt.dir) == [], 3), list_leases(mnt.dir)
    os.unlink(path)
    assert h.cmd('close') == 'ok'                # (the child's copy of P's descriptor)
    _stale_dma_changes_no_other_file(mnt, h, before)


# --------------------------------------------------------------------------
# a mapping reparented away from its holder

@pytest.mark.mount_options('allow_other')
def test_mapping_of_a_double_forked_grandchild_never_stores_into_another_users_files(mnt, raw):
    path = _pinned_file(mnt)
    h = raw(path, 'w', SIZE)
    gc = h.spawn2(MARK)                          # stores MARK every millisecond
    assert wait_until(lambda: MARK in read_file(path), 2), 'the grandchild does not store'
    assert h.cmd('unmap') == 'ok'
    assert h.cmd('unpin') == 'ok'                # the holder has no child left
    before = _released(mnt)
    os.unlink(path)
    assert h.cmd('close') == 'ok'
    _wait_released(mnt, before)
    files, err = _second_user_fills(mnt)
    time.sleep(0.05)                             # ... and it goes on storing
    assert os.waitpid(gc, os.WNOHANG) == (0, 0), 'the grandchild died'
    h.close()                                    # killed: the files stay as they are
    _check_second_users_files(files, err)


# --------------------------------------------------------------------------
# a punch inside a pinned huge page does not sever

LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]


def _mount_counters(mnt):
    st = mount_stats(mnt.dir)
    return st['severed_blocks'], st['unsevered_blocks']


def _shmem_huge_kib():
    with open('/proc/meminfo') as f:
        for line in f:
            if line.startswith('ShmemHugePages:'):
                return int(line.split()[1])
    return 0


@pytest.mark.pool_tmpfs('huge=always,size=128M')
@pytest.mark.mount_options('writeback_interval=0.2')
def test_a_freed_block_in_a_pinned_huge_page_waits_until_the_page_can_go(mnt, raw):
    """tmpfs huge=always: a 4 KiB punch inside a huge page that a kernel pin
    holds zeroes the range but cannot split the page out of the pool file.
    The daemon must see that (mincore) and keep the block out of use while
    the rest of the huge page is still a file's; once the ring is gone the
    flusher's retry cuts it out."""
    path = mnt.path('P')
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, 2 * MiB)                     # a hole: the pin fills it 2 MiB-aligned
        huge0 = _shmem_huge_kib()
        h = raw(path, 'w', 2 * MiB, mode='ring')
        if _shmem_huge_kib() < huge0 + 2048:
            pytest.skip('the pool did not get a 2 MiB page (THP for tmpfs unavailable?)')
        assert h.cmd('ring') == 'ok'                 # io_uring pins the huge page
        assert h.cmd('unpin') == 'ok'                # the ring keeps it
        sev0, _ = _mount_counters(mnt)
        free0 = free_blocks(mnt)
        # fallocate(PUNCH_HOLE | KEEP_SIZE) of P's first block
        assert LIBC.fallocate(fd, 0x02 | 0x01, 0, 4 * KiB) == 0, os.strerror(ctypes.get_errno())
        # the block left P, but not the pool file: held back, retried, still held
        assert wait_until(lambda: _mount_counters(mnt)[1] == 1, 3), _mount_counters(mnt)
        time.sleep(0.5)
        assert _mount_counters(mnt)[1] == 1, 'a block the ring still reaches was reused'
        assert free_blocks(mnt) == free0, 'the block that could not be cut out counts as free'
        assert h.cmd('dma %d' % MARK) == 'stored %d' % (2 * MiB)
        assert read_file(path)[:4 * KiB] == bytes(4 * KiB), 'the punched range does not read zero'
        h.close()                                    # the ring goes with the holder
        assert wait_until(lambda: _mount_counters(mnt)[1] == 0, 5), _mount_counters(mnt)
        assert _mount_counters(mnt)[0] > sev0
        assert wait_until(lambda: free_blocks(mnt) == free0 + 1, 2)
    finally:
        os.close(fd)

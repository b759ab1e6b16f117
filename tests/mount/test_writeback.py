"""Writeback and checksums against a live mount (issue "writeback").

Kara's rule as the user sees it: after fsync the pinned blocks of a file are
still dirty and the others clean; after unpin the next writeback cleans
them; a flipped bit in a clean block of a checksummed pool gives EIO and is
reported by scrub, while the same flip in a pinned block is not corruption.
"""

import errno
import fcntl
import mmap
import os
import struct
import subprocess
import time

import pytest

from pinfs_mount import _find_program

PINFSCTL = _find_program('pinfsctl')


def _ioc(direction, nr, size):
    return (direction << 30) | (size << 16) | (0xb7 << 8) | nr


PIN_SZ = 56 + 64 * 24
PIN = _ioc(3, 1, PIN_SZ)
UNPIN = _ioc(1, 3, 16)
STATS = _ioc(2, 7, 320)
COUNTERS = ('pins pinned revoked broken refused quarantined dirty clean pinned_dirty '
            'flushed_background flushed_integrity pinned_kept_dirty csum_failures '
            'mmap_lost_bytes flushed_write').split()


def pin(fd, off, length, flags):
    buf = bytearray(struct.pack('<QQII', off, length, flags, 0) + bytes(PIN_SZ - 24))
    fcntl.ioctl(fd, PIN, buf)
    lid, _, _, _, n = struct.unpack_from('<QQQII', buf, 24)
    return lid, [struct.unpack_from('<QQQ', buf, 56 + 24 * i) for i in range(n)]


def unpin(fd, lid):
    fcntl.ioctl(fd, UNPIN, struct.pack('<QQ', lid, 0))


def stats(fd):
    buf = bytearray(320)
    fcntl.ioctl(fd, STATS, buf)
    f = dict(zip(COUNTERS, struct.unpack_from('<15Q', buf, 0)))
    m = dict(zip(COUNTERS, struct.unpack_from('<15Q', buf, 160)))
    return f, m


def pool_offset(fd, block):
    """Pool byte offset of file block `block` (a short read pin tells it)."""
    lid, segs = pin(fd, block * 4096, 4096, 0)
    unpin(fd, lid)
    return segs[0][1]


def flip(pool, off):
    with open(pool, 'r+b') as f:
        m = mmap.mmap(f.fileno(), 4096, offset=off & ~4095)
        m[off & 4095] ^= 0x01
        m.close()


@pytest.mark.mount_options('writeback_interval=0.1', 'dirty_expire=0')
def test_fsync_keeps_pinned_blocks_dirty_and_unpin_lets_writeback_clean_them(mnt):
    fd = os.open(mnt.path('f'), os.O_RDWR | os.O_CREAT, 0o644)
    os.pwrite(fd, b'a' * (64 * 4096), 0)
    lid, _ = pin(fd, 0, 16 * 4096, 1)          # write pin: 16 blocks
    os.pwrite(fd, b'b' * (64 * 4096), 0)        # durable at once; pinned stay dirty
    f, m = stats(fd)
    assert f['dirty'] == 16 and f['clean'] == 48, f
    assert f['flushed_write'] >= 128, f        # both writes made every block durable
    os.fsync(fd)
    f, _ = stats(fd)
    assert f['dirty'] == 16 and f['clean'] == 48, f
    assert f['pinned_kept_dirty'] >= 16, f
    unpin(fd, lid)
    deadline = time.time() + 5
    while stats(fd)[0]['dirty'] and time.time() < deadline:
        time.sleep(0.05)
    f, m = stats(fd)
    assert f['dirty'] == 0 and f['clean'] == 64, f
    assert f['flushed_background'] >= 16, f
    assert m['flushed_integrity'] >= 16, m     # fsync: the pinned blocks
    os.close(fd)


@pytest.mark.mount_options('writeback_interval=0.05', 'dirty_expire=0')
def test_background_flusher_skips_pinned_blocks(mnt):
    fd = os.open(mnt.path('f'), os.O_RDWR | os.O_CREAT, 0o644)
    os.pwrite(fd, b'a' * (32 * 4096), 0)
    os.fsync(fd)
    lid, _ = pin(fd, 0, 8 * 4096, 1)
    os.pwrite(fd, b'c' * (32 * 4096), 0)
    deadline = time.time() + 5
    while stats(fd)[0]['dirty'] > 8 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)                             # several more flusher passes
    f, _ = stats(fd)
    assert f['dirty'] == 8, f                   # exactly the pinned ones
    unpin(fd, lid)
    os.close(fd)


@pytest.mark.mkfs_options('--checksums')
def test_flipped_bit_in_clean_block_gives_eio_and_scrub_reports_it(mnt):
    mnt.allow_stderr(r'checksum mismatch')
    fd = os.open(mnt.path('f'), os.O_RDWR | os.O_CREAT, 0o644)
    os.pwrite(fd, os.urandom(16 * 4096), 0)
    os.fsync(fd)
    pool = os.getxattr(mnt.path('f'), 'user.pinfs.pool').decode()
    flip(pool, pool_offset(fd, 3) + 123)
    with pytest.raises(OSError) as e:
        os.pread(fd, 4096, 3 * 4096)
    assert e.value.errno == errno.EIO
    assert len(os.pread(fd, 4096, 4 * 4096)) == 4096   # neighbours are fine
    if PINFSCTL:
        res = subprocess.run([PINFSCTL, 'scrub', mnt.path('f')], stdout=subprocess.PIPE,
                             universal_newlines=True, timeout=30)
        assert res.returncode == 1, res.stdout
        assert 'bad:' in res.stdout and ' 1\n' in res.stdout.split('bad:')[1].split('\n')[0] + '\n'
    assert stats(fd)[0]['csum_failures'] >= 1
    os.close(fd)


@pytest.mark.mkfs_options('--checksums')
def test_same_flip_in_pinned_block_is_not_corruption(mnt):
    fd = os.open(mnt.path('f'), os.O_RDWR | os.O_CREAT, 0o644)
    os.pwrite(fd, os.urandom(16 * 4096), 0)
    os.fsync(fd)
    lid, segs = pin(fd, 5 * 4096, 4096, 1)
    pool = os.getxattr(mnt.path('f'), 'user.pinfs.pool').decode()
    flip(pool, segs[0][1] + 7)                  # the holder "stores"
    assert len(os.pread(fd, 4096, 5 * 4096)) == 4096
    if PINFSCTL:
        res = subprocess.run([PINFSCTL, 'scrub', mnt.path('f')], stdout=subprocess.PIPE,
                             universal_newlines=True, timeout=30)
        assert res.returncode == 0, res.stdout
        assert 'skipped_pinned:' in res.stdout
    assert stats(fd)[0]['csum_failures'] == 0
    unpin(fd, lid)
    os.close(fd)


def test_write_is_durable_without_fsync_so_sync_keeps_its_promise(mnt):
    """sync(2)/syncfs(2) never reach a FUSE daemon (the kernel sends SYNCFS to
    virtiofs only), so every write() is durable when it returns: nothing is
    dirty after writes, sync has nothing left to do, and fsync flushes no data
    block. (The crash-image proof is tests/unit/test_writeback.c.)"""
    path = mnt.path('f')
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, os.urandom(1 << 20), 0)          # allocating
        os.pwrite(fd, b'x' * 100, 5000)                # partial, in place
        os.pwrite(fd, b'y' * (64 << 10), 128 << 10)    # in place
        f, m = stats(fd)
        assert f['dirty'] == 0 and f['clean'] == 256, f
        assert f['flushed_write'] >= 256 + 1 + 16, f
        res = subprocess.run(['sync', '-f', path], timeout=30)
        assert res.returncode == 0
        before = stats(fd)[1]['flushed_integrity']
        os.fsync(fd)
        f, m = stats(fd)
        assert f['dirty'] == 0 and m['flushed_integrity'] == before, (f, m)
    finally:
        os.close(fd)
    # the data is in the pool, read back after a remount
    data = open(path, 'rb').read()
    mnt.remount()
    assert open(path, 'rb').read() == data


def test_write_into_a_write_pinned_block_is_durable_but_stays_dirty(mnt):
    fd = os.open(mnt.path('f'), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b'a' * (8 * 4096), 0)
        lid, _ = pin(fd, 0, 2 * 4096, 1)
        os.pwrite(fd, b'b' * (8 * 4096), 0)
        f, _ = stats(fd)
        assert f['dirty'] == 2 and f['clean'] == 6, f
        subprocess.run(['sync', '-f', mnt.path('f')], timeout=30)
        os.fsync(fd)
        f, _ = stats(fd)
        assert f['dirty'] == 2, f      # Kara's rule: never clean while pinned
        unpin(fd, lid)
    finally:
        os.close(fd)


def test_sync_writes_back_shared_mmap_stores_durably(mnt):
    """sync(2) makes the kernel write a shared mapping's dirty pages back as
    FUSE WRITEs, and every WRITE is durable when answered: after `sync -f`
    the stored bytes are in the pool itself, with nothing left dirty."""
    path = mnt.path('m')
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b'\0' * (16 * 4096), 0)
        off = pool_offset(fd, 3)
        before = stats(fd)[0]['flushed_write']
        m = mmap.mmap(fd, 16 * 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        try:
            m[3 * 4096:3 * 4096 + 11] = b'via mmap!!\n'
            res = subprocess.run(['sync', '-f', path], timeout=30)
            assert res.returncode == 0
            f, _ = stats(fd)
            assert f['flushed_write'] > before, f
            assert f['dirty'] == 0, f
            with open(mnt.pool, 'rb') as p:
                p.seek(off)
                assert p.read(11) == b'via mmap!!\n'
        finally:
            m.close()
    finally:
        os.close(fd)

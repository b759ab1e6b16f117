"""Space accounting through a pinfs mount: statfs, fallocate (preallocate,
KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE), unlinked-but-open files, a full pool."""

import errno
import os
import re
import stat

import pytest

from pinfs_mount import DEFAULT_POOL_SIZE, FAKE, check_fsck, wait_until
from pinfs_util import (FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE,
                        KiB, MiB, expect_errno, fallocate, free_bytes, pattern, pread_all,
                        read_file, write_file)

# Metadata may legitimately take a few blocks that freeing data does not return.
SLACK = 256 * KiB


def _kernel_version():
    return tuple(int(x) for x in re.match(r'(\d+)\.(\d+)', os.uname().release).groups())


def _size_bytes(s):
    return int(s[:-1]) << {'K': 10, 'M': 20, 'G': 30}[s[-1]]


# --------------------------------------------------------------------------
# statfs

def test_statfs_reports_real_block_and_inode_counts(mnt):
    st = os.statvfs(mnt.dir)
    pool_bytes = _size_bytes(DEFAULT_POOL_SIZE)
    assert st.f_frsize > 0 and st.f_bsize > 0
    assert pool_bytes // 2 <= st.f_blocks * st.f_frsize <= pool_bytes
    assert 0 < st.f_bfree <= st.f_blocks
    assert st.f_bavail <= st.f_bfree
    assert st.f_bfree * st.f_frsize >= pool_bytes // 2, 'a fresh pool should be mostly free'
    assert st.f_files > 0
    assert 0 < st.f_ffree < st.f_files, 'the root inode is in use'
    assert st.f_namemax == 255


def test_statfs_free_blocks_drop_after_write_and_return_after_unlink(mnt):
    before = free_bytes(mnt.dir)
    path = mnt.path('big')
    write_file(path, pattern(1, 8 * MiB))
    after_write = free_bytes(mnt.dir)
    assert before - after_write >= 8 * MiB
    assert before - after_write <= 8 * MiB + 2 * MiB, 'writing 8 MiB used far more'
    os.unlink(path)
    assert wait_until(lambda: free_bytes(mnt.dir) >= before - SLACK, 5), (
        'free space did not come back after unlink: before %d, now %d'
        % (before, free_bytes(mnt.dir)))


def test_statfs_free_inodes_drop_after_create_and_return_after_unlink(mnt):
    before = os.statvfs(mnt.dir).f_ffree
    for i in range(10):
        write_file(mnt.path('f%d' % i), b'', fsync=False)
    assert before - os.statvfs(mnt.dir).f_ffree >= 10
    for i in range(10):
        os.unlink(mnt.path('f%d' % i))
    assert wait_until(lambda: os.statvfs(mnt.dir).f_ffree >= before, 5)


# --------------------------------------------------------------------------
# unlinked but open

def test_unlinked_open_file_keeps_working_and_frees_space_on_close(mnt):
    before = free_bytes(mnt.dir)
    path = mnt.path('orphan')
    data = pattern(3, 8 * MiB)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
        os.unlink(path)
        assert os.listdir(mnt.dir) == []
        expect_errno(errno.ENOENT, os.stat, path)
        st = os.fstat(fd)
        assert st.st_nlink == 0
        assert st.st_size == len(data)
        assert pread_all(fd, len(data), 0) == data
        os.pwrite(fd, b'still writable', 4 * MiB)
        os.fsync(fd)
        assert os.pread(fd, 14, 4 * MiB) == b'still writable'
        assert free_bytes(mnt.dir) <= before - 8 * MiB, 'space freed while still open'
    finally:
        os.close(fd)
    assert wait_until(lambda: free_bytes(mnt.dir) >= before - SLACK, 5), (
        'space of the unlinked file not freed after close: before %d, now %d'
        % (before, free_bytes(mnt.dir)))


def test_orphan_left_by_unmount_is_gone_after_remount(mnt):
    before = free_bytes(mnt.dir)
    fd = os.open(mnt.path('orphan'), os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, pattern(4, 4 * MiB))
    os.unlink(mnt.path('orphan'))
    os.close(fd)
    mnt.remount()
    assert os.listdir(mnt.dir) == []
    assert free_bytes(mnt.dir) >= before - SLACK


# --------------------------------------------------------------------------
# fallocate

def _blocks_bytes(path):
    return os.stat(path).st_blocks * 512


def test_fallocate_mode0_grows_size_and_blocks(mnt):
    path = mnt.path('f')
    write_file(path, b'')
    fd = os.open(path, os.O_RDWR)
    try:
        fallocate(fd, 0, 0, MiB)
        assert os.fstat(fd).st_size == MiB
        assert pread_all(fd, MiB, 0) == bytes(MiB)
        # preallocating inside the file keeps its data and size
        os.pwrite(fd, b'data', 100)
        fallocate(fd, 0, 0, 4096)
        assert os.pread(fd, 4, 100) == b'data'
        assert os.fstat(fd).st_size == MiB
    finally:
        os.close(fd)
    assert _blocks_bytes(path) >= MiB
    mnt.remount()
    assert os.stat(path).st_size == MiB
    assert _blocks_bytes(path) >= MiB


def test_fallocate_keep_size_allocates_without_growing(mnt):
    path = mnt.path('f')
    write_file(path, b'abc')
    before_free = free_bytes(mnt.dir)
    fd = os.open(path, os.O_RDWR)
    try:
        fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 2 * MiB)
        assert os.fstat(fd).st_size == 3
        assert pread_all(fd, 100, 0) == b'abc'
    finally:
        os.close(fd)
    assert _blocks_bytes(path) >= 2 * MiB
    assert before_free - free_bytes(mnt.dir) >= 2 * MiB - 4096
    # writing into the preallocated range past EOF extends the file normally
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, b'z', MiB)
    finally:
        os.close(fd)
    assert os.stat(path).st_size == MiB + 1
    assert read_file(path) == b'abc' + bytes(MiB - 3) + b'z'


def test_punch_hole_keep_size_reads_zeros_and_frees_blocks(mnt):
    path = mnt.path('f')
    data = b'\xab' * MiB
    write_file(path, data)
    blocks_before = _blocks_bytes(path)
    assert blocks_before >= MiB
    fd = os.open(path, os.O_RDWR)
    try:
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 256 * KiB, 512 * KiB)
        # unaligned: only bytes 1000..4999 become zero, the rest of those blocks stays
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 1000, 4000)
        os.fsync(fd)
        assert os.fstat(fd).st_size == MiB
        # PUNCH_HOLE without KEEP_SIZE is not a valid mode
        expect_errno(errno.EOPNOTSUPP, fallocate, fd, FALLOC_FL_PUNCH_HOLE, 0, 4096)
    finally:
        os.close(fd)
    expected = bytearray(data)
    expected[256 * KiB:768 * KiB] = bytes(512 * KiB)
    expected[1000:5000] = bytes(4000)

    def check():
        assert os.stat(path).st_size == MiB
        assert read_file(path) == bytes(expected)
        assert _blocks_bytes(path) <= blocks_before - 512 * KiB, (
            'punching 512 KiB freed only %d bytes' % (blocks_before - _blocks_bytes(path)))

    check()
    mnt.remount()
    check()


def test_punch_hole_past_eof_keeps_size(mnt):
    path = mnt.path('f')
    write_file(path, b'q' * 8192)
    fd = os.open(path, os.O_RDWR)
    try:
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, MiB)
        assert os.fstat(fd).st_size == 8192
        assert pread_all(fd, 8192, 0) == b'q' * 4096 + bytes(4096)
    finally:
        os.close(fd)


def test_zero_range_reads_zeros_and_keeps_data_around_it(mnt):
    path = mnt.path('f')
    data = b'\xcd' * MiB
    write_file(path, data)
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            fallocate(fd, FALLOC_FL_ZERO_RANGE, 100000, 200000)   # unaligned on purpose
        except OSError as e:
            if e.errno == errno.EOPNOTSUPP and FAKE:
                pytest.skip('tmpfs has no FALLOC_FL_ZERO_RANGE')
            if e.errno == errno.EOPNOTSUPP and _kernel_version() < (5, 14):
                # FUSE passes ZERO_RANGE on to the daemon only since Linux 5.14
                pytest.skip('this kernel\'s FUSE refuses FALLOC_FL_ZERO_RANGE itself')
            raise
        assert os.fstat(fd).st_size == MiB
        # past EOF without KEEP_SIZE the file grows; with KEEP_SIZE it does not
        fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, MiB, 64 * KiB)
        assert os.fstat(fd).st_size == MiB
        fallocate(fd, FALLOC_FL_ZERO_RANGE, MiB, 64 * KiB)
        assert os.fstat(fd).st_size == MiB + 64 * KiB
        os.fsync(fd)
    finally:
        os.close(fd)
    expected = bytearray(data)
    expected[100000:300000] = bytes(200000)
    expected += bytes(64 * KiB)
    assert read_file(path) == bytes(expected)
    mnt.remount()
    assert read_file(path) == bytes(expected)


# --------------------------------------------------------------------------
# full pool

@pytest.mark.pool_size('16M')
def test_full_pool_gives_enospc_and_stays_consistent(mnt):
    # The daemon may log the condition; that is not an unexpected error.
    mnt.allow_stderr(r'(?i)no space|ENOSPC|full')
    keep = pattern(9, 64 * KiB)
    write_file(mnt.path('keep'), keep)

    chunk = pattern(10, MiB)
    durable = 0
    err = None
    fd = os.open(mnt.path('fill'), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for _ in range(64):           # 64 MiB: far more than the pool holds
            try:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
                durable += len(chunk)
            except OSError as e:
                err = e
                break
    finally:
        try:
            os.close(fd)
        except OSError as e:
            assert e.errno == errno.ENOSPC, 'close after a full pool: %r' % e
    assert err is not None, 'wrote 64 MiB into a 16 MiB pool'
    assert err.errno == errno.ENOSPC, 'expected ENOSPC, got %r' % err
    assert durable >= 4 * MiB, 'pool filled after only %d bytes' % durable

    # creating more files fails cleanly too, or succeeds (inodes may be preallocated)
    try:
        write_file(mnt.path('more'), chunk)
    except OSError as e:
        assert e.errno == errno.ENOSPC, 'expected ENOSPC, got %r' % e
    assert read_file(mnt.path('keep')) == keep

    mnt.unmount()
    check_fsck(mnt.pool)
    mnt.start()
    assert read_file(mnt.path('keep')) == keep
    size = os.stat(mnt.path('fill')).st_size
    assert size >= durable
    with open(mnt.path('fill'), 'rb') as f:
        for i in range(durable // MiB):
            assert f.read(MiB) == chunk, 'fsynced MiB %d of the filler differs' % i

    # freeing space makes the pool writable again
    for name in os.listdir(mnt.dir):
        if name != 'keep':
            os.unlink(mnt.path(name))
    assert wait_until(lambda: free_bytes(mnt.dir) >= 4 * MiB, 5)
    write_file(mnt.path('again'), chunk)
    assert read_file(mnt.path('again')) == chunk
    assert stat.S_ISREG(os.stat(mnt.path('again')).st_mode)

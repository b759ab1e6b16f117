"""File data through a pinfs mount: write, read, fsync, remount, large and
sparse files, SEEK_DATA/SEEK_HOLE, mmap, concurrent writers."""

import errno
import mmap
import os
import stat
import threading

import pytest

from pinfs_mount import wait_until
from pinfs_util import KiB, MiB, expect_errno, pattern, pread_all, read_file, sha256, write_file


def test_write_fsync_remount_reads_back_same_bytes(mnt):
    path = mnt.path('hello.txt')
    data = b'pinfs keeps these bytes\n' * 1000
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        assert os.write(fd, data) == len(data)
        os.fsync(fd)
    finally:
        os.close(fd)

    def check():
        assert read_file(path) == data
        assert os.listdir(mnt.dir) == ['hello.txt']
        st = os.stat(path)
        assert stat.S_ISREG(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o644
        assert st.st_size == len(data)
        assert st.st_nlink == 1
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())

    check()
    mnt.remount()
    check()


def test_fresh_root_is_an_empty_directory(mnt):
    st = os.stat(mnt.dir)
    assert stat.S_ISDIR(st.st_mode)
    assert st.st_nlink == 2
    assert os.listdir(mnt.dir) == []


def test_open_missing_file_fails_with_enoent(mnt):
    expect_errno(errno.ENOENT, os.open, mnt.path('nope'), os.O_RDONLY)
    expect_errno(errno.ENOENT, os.stat, mnt.path('nope'))


def test_create_excl_on_existing_file_fails_with_eexist(mnt):
    write_file(mnt.path('f'), b'x')
    expect_errno(errno.EEXIST, os.open, mnt.path('f'), os.O_WRONLY | os.O_CREAT | os.O_EXCL)


def test_readdir_lists_every_entry_with_its_type(mnt):
    d = mnt.path('many')
    os.mkdir(d)
    files = {'file%04d' % i for i in range(300)}
    dirs = {'dir%02d' % i for i in range(20)}
    links = {'link%d' % i for i in range(5)}
    for n in files:
        write_file(os.path.join(d, n), n.encode(), fsync=False)
    for n in dirs:
        os.mkdir(os.path.join(d, n))
    for n in links:
        os.symlink('file0000', os.path.join(d, n))

    def check():
        seen = {}
        with os.scandir(d) as it:
            for e in it:
                assert e.name not in seen, 'readdir returned %s twice' % e.name
                seen[e.name] = ('d' if e.is_dir(follow_symlinks=False) else
                                'l' if e.is_symlink() else
                                'f' if e.is_file(follow_symlinks=False) else '?')
        assert set(seen) == files | dirs | links
        assert {n for n, t in seen.items() if t == 'f'} == files
        assert {n for n, t in seen.items() if t == 'd'} == dirs
        assert {n for n, t in seen.items() if t == 'l'} == links
        assert read_file(os.path.join(d, 'file0123')) == b'file0123'

    check()
    mnt.remount()
    check()


def test_overwrite_across_block_boundary_reads_back_exactly(mnt):
    path = mnt.path('f')
    model = bytearray(b'a' * (3 * 4096))
    write_file(path, model)
    fd = os.open(path, os.O_RDWR)
    try:
        for off, data in ((4000, b'XYZ' * 1000), (0, b'head'), (12287, b'tail!'),
                          (20000, b'past EOF leaves a zero gap')):
            assert os.pwrite(fd, data, off) == len(data)
            if off > len(model):
                model += bytes(off - len(model))
            model[off:off + len(data)] = data
        os.fsync(fd)
        assert os.fstat(fd).st_size == len(model)
        assert pread_all(fd, len(model) + 100, 0) == bytes(model)
        assert os.pread(fd, 10, len(model)) == b''
    finally:
        os.close(fd)
    mnt.remount()
    assert read_file(path) == bytes(model)


def test_read_after_write_returns_new_data(mnt):
    path = mnt.path('f')
    wfd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    rfd = os.open(path, os.O_RDONLY)
    try:
        os.pwrite(wfd, b'first version', 0)
        assert os.pread(rfd, 100, 0) == b'first version'
        os.pwrite(wfd, b'SECOND', 0)
        assert os.pread(rfd, 100, 0) == b'SECONDversion'
        os.ftruncate(wfd, 6)
        assert os.pread(rfd, 100, 0) == b'SECOND'
    finally:
        os.close(wfd)
        os.close(rfd)


def test_o_append_writes_at_end_and_o_trunc_empties(mnt):
    path = mnt.path('log')
    write_file(path, b'one\n')
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, b'two\n')
    finally:
        os.close(fd)
    assert read_file(path) == b'one\ntwo\n'
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    os.close(fd)
    assert os.stat(path).st_size == 0
    assert read_file(path) == b''


def test_large_file_pattern_survives_remount(mnt):
    path = mnt.path('large')
    chunks = 20
    digests = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for i in range(chunks):
            data = pattern(i, MiB)
            digests.append(sha256(data))
            assert os.write(fd, data) == MiB
        os.fsync(fd)
    finally:
        os.close(fd)

    def check():
        st = os.stat(path)
        assert st.st_size == chunks * MiB
        assert st.st_blocks * 512 >= chunks * MiB
        with open(path, 'rb') as f:
            for i in range(chunks):
                assert sha256(f.read(MiB)) == digests[i], 'MiB %d differs' % i
            assert f.read(1) == b''

    check()
    mnt.remount()
    check()


def test_truncate_and_unlink_free_a_file_reaching_past_2_to_the_48(mnt):
    """A byte at 2^48 makes the block map five levels deep; truncate and
    unlink must still free everything (the punch once overflowed there and
    freed nothing: old bytes came back, the space leaked)."""
    path = mnt.path('deep')
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    st0 = os.statvfs(mnt.dir)   # after the directory got its block
    try:
        os.pwrite(fd, b'SECRET' * 100, 0)
        os.pwrite(fd, b'z', 1 << 48)
        assert os.pread(fd, 1, 1 << 48) == b'z'
        os.ftruncate(fd, 0)
        assert os.fstat(fd).st_blocks == 0
        os.ftruncate(fd, 600)
        assert os.pread(fd, 600, 0) == bytes(600)
        os.pwrite(fd, b'z', (1 << 48) + 4096)
    finally:
        os.close(fd)
    os.unlink(path)
    # the kernel sends RELEASE after close() returns: until it arrives the
    # file is open-unlinked and keeps its blocks
    assert wait_until(lambda: os.statvfs(mnt.dir).f_bfree == st0.f_bfree, timeout=5), \
        (os.statvfs(mnt.dir).f_bfree, st0.f_bfree)


def test_sparse_file_reads_zeros_in_holes_and_uses_few_blocks(mnt):
    path = mnt.path('sparse')
    far = 10 * MiB
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b'start', 0)
        os.pwrite(fd, b'x' * 4096, far)
        os.fsync(fd)
    finally:
        os.close(fd)

    def check():
        st = os.stat(path)
        assert st.st_size == far + 4096
        assert st.st_blocks * 512 < MiB, 'a 10 MiB hole should not be allocated'
        with open(path, 'rb') as f:
            assert f.read(5) == b'start'
            assert f.read(MiB) == bytes(MiB)
            f.seek(far - 4096)
            assert f.read(4096) == bytes(4096)
            assert f.read() == b'x' * 4096

    check()
    mnt.remount()
    check()


def test_seek_data_and_seek_hole_find_written_extents(mnt):
    path = mnt.path('sparse')
    data_at = 8 * MiB
    size = data_at + 4096
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b'a' * 4096, 0)
        os.pwrite(fd, b'b' * 4096, data_at)
        # plain lseek must always work
        assert os.lseek(fd, 0, os.SEEK_END) == size
        assert os.lseek(fd, 100, os.SEEK_SET) == 100
        assert os.lseek(fd, 10, os.SEEK_CUR) == 110
        try:
            hole = os.lseek(fd, 0, os.SEEK_HOLE)
        except OSError as e:
            if e.errno == errno.EINVAL:
                pytest.skip('SEEK_HOLE not supported (EINVAL)')
            raise
        if hole == size:
            pytest.skip('holes are not reported by SEEK_HOLE (whole file is data)')
        assert 4096 <= hole <= data_at
        assert os.lseek(fd, 0, os.SEEK_DATA) == 0
        data = os.lseek(fd, hole, os.SEEK_DATA)
        assert hole < data <= data_at
        assert pread_all(fd, data - hole, hole) == bytes(data - hole)
        assert os.lseek(fd, data_at, os.SEEK_HOLE) == size   # EOF is a hole
        expect_errno(errno.ENXIO, os.lseek, fd, size, os.SEEK_DATA)
        expect_errno(errno.ENXIO, os.lseek, fd, size + 1, os.SEEK_HOLE)
    finally:
        os.close(fd)


def test_mmap_shared_store_is_visible_to_read(mnt):
    path = mnt.path('mapped')
    size = 64 * KiB
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, size)
        data = pattern(7, size)
        with mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as m:
            m[:] = data
            m.flush()   # msync(MS_SYNC)
            assert pread_all(fd, size, 0) == data
        os.fsync(fd)
    finally:
        os.close(fd)
    assert read_file(path) == data
    mnt.remount()
    assert read_file(path) == data


def test_mmap_store_without_msync_reaches_the_pool_by_close(mnt):
    """No FLUSH handler: close() must still write the mapping's dirty pages
    back (the kernel does, before it would send FLUSH), and every close
    returns 0."""
    path = mnt.path('mapped-nosync')
    size = 32 * KiB
    write_file(path, bytes(size))
    data = pattern(9, size)
    fd = os.open(path, os.O_RDWR)
    m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    m[:] = data
    m.close()                  # munmap: the pages stay dirty in the page cache
    os.close(fd)               # raises on a non-zero return
    for _ in range(3):         # later closes too (FLUSH is no longer sent)
        os.close(os.open(path, os.O_RDWR))
    assert read_file(path) == data
    mnt.remount()
    assert read_file(path) == data


def test_mmap_sees_data_written_with_write(mnt):
    path = mnt.path('mapped')
    size = 16 * KiB
    write_file(path, bytes(size))
    fd = os.open(path, os.O_RDWR)
    try:
        with mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ) as m:
            assert m[:] == bytes(size)
            os.pwrite(fd, b'written by write()', 5000)
            assert m[5000:5018] == b'written by write()'
    finally:
        os.close(fd)


def test_parallel_writers_keep_files_separate(mnt):
    d = mnt.path('par')
    os.mkdir(d)
    errors = []

    def worker(n):
        try:
            path = os.path.join(d, 'w%d' % n)
            data = pattern(100 + n, 2 * MiB)
            write_file(path, data)
            for i in range(50):
                write_file(os.path.join(d, 'small-%d-%d' % (n, i)), b'%d-%d' % (n, i), fsync=False)
            if read_file(path) != data:
                errors.append('w%d content differs' % n)
        except Exception as e:  # reported below
            errors.append('worker %d: %r' % (n, e))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), 'writers hung'
    assert errors == []
    assert len(os.listdir(d)) == 8 + 8 * 50
    mnt.remount()
    for n in range(8):
        assert read_file(os.path.join(d, 'w%d' % n)) == pattern(100 + n, 2 * MiB)
        assert read_file(os.path.join(d, 'small-%d-49' % n)) == b'%d-49' % n

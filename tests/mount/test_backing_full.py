"""A backing store that cannot hold a store never kills the daemon (README,
"A full backing store").

A sparse pool is mostly holes of its file: the first store into one makes
the file system under the pool allocate a page, and a full tmpfs answers
with SIGBUS. The engine allocates the backing of every block before it
stores into it, so a full backing store fails the request with ENOSPC, and
statfs does not promise more than the backing store has. What cannot be
allocated ahead -- the pool file truncated underneath the daemon, a poisoned
line of persistent memory -- still raises SIGBUS: the request gets EIO, the
log names the fault, the daemon lives on, read-only.
"""

import errno
import os
import re
import subprocess
import sys

import pytest

from pinfs_mount import PinfsMount, mkfs, wait_until
from test_attr_coherence import AT_STATX_FORCE_SYNC, STATX_BLOCKS, statx_field

pytestmark = [pytest.mark.needs_daemon]

MiB = 1 << 20
KEEP = bytes(range(256)) * 256          # 64 KiB, written before the fill


def tmpfs_free(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def unlink_and_write_again(mnt, name):
    """Freeing space makes writes work again, once the freed blocks are cut
    out of the pool file (asynchronously: statfs counts them then); and
    no store ever met a SIGBUS."""
    if name:
        os.unlink(mnt.path(name))
    backing = os.path.dirname(mnt.pool)
    assert wait_until(lambda: tmpfs_free(backing) >= 16 * MiB, 30), tmpfs_free(backing)
    with open(mnt.path('again'), 'wb') as f:
        f.write(b'\x5a' * (4 * MiB))
    with open(mnt.path('again'), 'rb') as f:
        assert f.read() == b'\x5a' * (4 * MiB)
    assert 'SIGBUS' not in mnt.output()


@pytest.mark.pool_tmpfs('size=64M')
@pytest.mark.pool_size('256M')
def test_statfs_promises_no_more_than_the_backing_store_has(mnt):
    backing = os.path.dirname(mnt.pool)
    mnt.allow_stderr(r'cannot allocate the backing of pool blocks .*No space left')
    st = os.statvfs(mnt.dir)
    assert st.f_blocks * st.f_frsize > 200 * MiB            # the pool's size
    assert st.f_bavail * st.f_frsize <= tmpfs_free(backing), \
        (st.f_bavail * st.f_frsize, tmpfs_free(backing))
    assert st.f_bfree * st.f_frsize <= tmpfs_free(backing) + 1 * MiB
    assert st.f_bavail * st.f_frsize > 32 * MiB             # not nothing either
    # as the backing store fills, so does the pool's free space: a file
    # outside the pool takes 16 MiB of the tmpfs
    before = st.f_bavail * st.f_frsize
    with open(os.path.join(backing, 'other'), 'wb') as f:
        f.write(b'o' * (16 * MiB))
    st = os.statvfs(mnt.dir)
    assert st.f_bavail * st.f_frsize <= tmpfs_free(backing)
    assert before - st.f_bavail * st.f_frsize >= 15 * MiB
    # writes stop at ENOSPC with statfs near zero, never above the tmpfs's
    fd = os.open(mnt.path('fill'), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with pytest.raises(OSError) as ei:
            while True:
                os.write(fd, b'f' * MiB)
        assert ei.value.errno == errno.ENOSPC
    finally:
        os.close(fd)
    st = os.statvfs(mnt.dir)
    assert st.f_bavail * st.f_frsize <= tmpfs_free(backing) < 2 * MiB
    os.unlink(os.path.join(backing, 'other'))


@pytest.mark.pool_tmpfs('size=64M')
@pytest.mark.pool_size('256M')
@pytest.mark.watchdog(300)
def test_full_backing_store_fails_writes_with_enospc_and_the_mount_lives(mnt):
    mnt.allow_stderr(r'cannot allocate the backing of pool blocks .*No space left')
    keep = mnt.path('keep')
    with open(keep, 'wb') as f:
        f.write(KEEP)

    # dd bs=1M count=100 into a 64 MiB tmpfs: ENOSPC at some point
    chunk = b'\xa5' * MiB
    written = 0
    fd = os.open(mnt.path('fill'), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with pytest.raises(OSError) as ei:
            for _ in range(100):
                n = os.write(fd, chunk)
                written += n
                assert n > 0
        assert ei.value.errno == errno.ENOSPC, ei.value
    finally:
        os.close(fd)
    assert 8 * MiB < written < 64 * MiB, written

    # the daemon answers: stat, statfs, reads of what was there
    assert os.stat(mnt.path('fill')).st_size == written
    with open(keep, 'rb') as f:
        assert f.read() == KEEP
    with open(mnt.path('fill'), 'rb') as f:
        got = f.read()
    assert len(got) == written and got == b'\xa5' * written
    # a create on a full backing store: ENOSPC or fine, never a dead daemon
    try:
        with open(mnt.path('new'), 'wb') as f:
            f.write(b'x' * 8192)
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
    assert os.path.isdir(mnt.dir) and os.stat(keep).st_size == len(KEEP)

    unlink_and_write_again(mnt, 'fill')
    # the fixture unmounts (the daemon must exit 0) and runs fsck (clean)



@pytest.mark.pool_tmpfs('size=64M')
@pytest.mark.pool_size('256M')
@pytest.mark.watchdog(300)
def test_concurrent_fills_on_a_full_backing_store(mnt):
    """Fills back their batches with the engine's lock dropped, side by side:
    four processes write and preallocate into a 64 MiB tmpfs at once, each
    meeting ENOSPC somewhere. Every call either succeeds or fails with
    ENOSPC, what each file says it holds reads back, the daemon lives, and
    once the files are gone the space comes back (the fixture then checks
    that fsck finds the pool clean)."""
    mnt.allow_stderr(r'cannot allocate the backing of pool blocks .*No space left')
    script = r"""
import errno, os, sys
d, k = sys.argv[1], int(sys.argv[2])
pat = bytes([0x30 + k]) * (1 << 20)
full = 0
for i in range(24):
    p = os.path.join(d, 'f%d-%d' % (k, i))
    fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        if i % 2:
            os.posix_fallocate(fd, 0, (3 + i % 5) << 20)
        else:
            for _ in range(3):
                os.write(fd, pat)
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        full += 1
    finally:
        os.close(fd)
print('done', full)
"""
    procs = [subprocess.Popen([sys.executable, '-c', script, mnt.dir, str(k)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for k in range(4)]
    full = 0
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0 and out.split()[0] == b'done', err
        full += int(out.split()[1])
    assert full > 0                     # the backing store did fill up
    names = sorted(os.listdir(mnt.dir))
    assert len(names) == 4 * 24
    for name in names:
        path = mnt.path(name)
        st = os.stat(path)
        k = int(name[1])
        with open(path, 'rb') as f:
            got = f.read()
        assert len(got) == st.st_size
        # written files hold their pattern up to the size; preallocated
        # ones are either whole or hold zeros up to their size
        assert got == bytes([0x30 + k]) * len(got) or got == bytes(len(got)), name
    for name in names:
        os.unlink(mnt.path(name))
    unlink_and_write_again(mnt, None)

@pytest.mark.pool_tmpfs('size=64M')
@pytest.mark.pool_size('256M')
@pytest.mark.watchdog(300)
def test_full_backing_store_fails_a_large_fallocate_with_enospc(mnt):
    """A fill backs each 8 MiB batch with fs->lock dropped: the batch the
    backing store cannot hold fails the fallocate with ENOSPC, the batches
    before it stay (a partial preallocation, as after a crash), its own
    blocks go back, and the file and the pool stay consistent."""
    mnt.allow_stderr(r'cannot allocate the backing of pool blocks .*No space left')
    keep = mnt.path('keep')
    with open(keep, 'wb') as f:
        f.write(KEEP)
    free0 = os.statvfs(mnt.dir).f_bfree
    fd = os.open(mnt.path('pre'), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with pytest.raises(OSError) as ei:
            os.posix_fallocate(fd, 0, 100 * MiB)
        assert ei.value.errno == errno.ENOSPC, ei.value
        # the kernel's cached attributes were dropped: stat says what the
        # daemon says
        st = os.fstat(fd)
        assert st.st_blocks == statx_field(mnt.path('pre'), STATX_BLOCKS,
                                           AT_STATX_FORCE_SYNC)
        assert st.st_size == 0                  # the size moves with the last part
        assert 0 < st.st_blocks * 512 < 64 * MiB, st.st_blocks
        # what was preallocated reads as zeros once the size covers it
        have = st.st_blocks * 512
        if have:
            os.ftruncate(fd, have)
            assert os.pread(fd, have, 0) == bytes(have)
    finally:
        os.close(fd)
    with open(keep, 'rb') as f:
        assert f.read() == KEEP
    # the pool counts what the file holds, no more: the failed batch's
    # blocks went back
    used = (free0 - os.statvfs(mnt.dir).f_bfree) * os.statvfs(mnt.dir).f_frsize
    assert used <= os.stat(mnt.path('pre')).st_blocks * 512 + 2 * MiB, used
    unlink_and_write_again(mnt, 'pre')
    # the fixture unmounts (the daemon must exit 0) and runs fsck (clean)


def test_pool_truncated_underneath_gives_eio_and_the_daemon_lives(scratch, mountpoint):
    pool = os.path.join(scratch, 'pool')
    mkfs(pool, '64M')
    m = PinfsMount(pool, mountpoint, scratch)
    m.allow_stderr(r'SIGBUS')
    m.start()
    try:
        path = m.path('f')
        data = os.urandom(16 * MiB)
        with open(path, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # the file's blocks lie past 8 MiB of the pool (the data area
        # starts after about 2.5 MiB of metadata), the metadata below
        os.truncate(pool, 8 * MiB)

        fd = os.open(path, os.O_RDONLY)
        try:
            at = 0
            with pytest.raises(OSError) as ei:
                while at < len(data):
                    assert os.pread(fd, 4096, at) == data[at:at + 4096]
                    at += 4096
            assert ei.value.errno == errno.EIO, (ei.value, m.output())
            assert 0 < at < 8 * MiB, at
            # again: the lost page is a zero page in the daemon now, never
            # passed off as the file's bytes
            with pytest.raises(OSError) as ei:
                os.pread(fd, 4096, at)
            assert ei.value.errno == errno.EIO, ei.value
            assert os.pread(fd, MiB, 0) == data[:MiB]     # what is intact reads
        finally:
            os.close(fd)
        assert os.stat(path).st_size == len(data)       # the daemon answers
        with pytest.raises(OSError) as ei:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.pwrite(fd, b'y' * 4096, 12 * MiB)
            finally:
                os.close(fd)
        assert ei.value.errno in (errno.EIO, errno.EROFS), ei.value
        # read-only from now on
        with pytest.raises(OSError) as ei:
            open(m.path('g'), 'wb').close()
        assert ei.value.errno == errno.EROFS, ei.value
        assert os.listdir(mountpoint) == ['f']
        log = m.output()
        assert re.search(r'SIGBUS \(BUS_ADRERR\) at pool offset 0x[0-9a-f]+ \(block \d+\)', log), log
        assert 'fatal signal' not in log
    finally:
        problems = m.stop()
    assert not problems, '\n'.join(problems)

"""No client stalls the others (issue 10, item 4), against a live mount.

A write that allocates copies its bytes without the engine's metadata lock,
and a huge fill gives way between its parts: so other clients' lookups,
creates and stats get through while one client preallocates gigabytes, and
no reader ever sees a block the write has reserved but not yet written.
These are functional checks, not latency measurements (those are in
scripts/bench-stalls).
"""

import errno
import os
import random
import threading

import pytest

from pinfs_mount import wait_until
from pinfs_util import expect_errno, fallocate

MiB = 1 << 20
GiB = 1 << 30
CHUNK = 256 << 10  # one write; each fills its own bytes with one value
OLD = ord('X')     # what the blocks held before: a deleted file's bytes


def value(off):
    """The byte the writers put at file offset `off` (never 0 or 'X')."""
    v = (off // CHUNK) % 250 + 1
    return v + 1 if v == OLD else v


def expected(off, length):
    """The bytes [off, off+length) once written."""
    out = bytearray()
    while len(out) < length:
        at = off + len(out)
        n = min(CHUNK - at % CHUNK, length - len(out))
        out += bytes([value(at)]) * n
    return bytes(out)


def leave_old_bytes(mnt, size):
    """Writes `size` bytes of 'X' and deletes the file: its blocks go back
    to the allocator still holding them, so new writes get such blocks."""
    path = os.path.join(mnt.dir, 'old')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        buf = bytes([OLD]) * MiB
        for _ in range(size // MiB):
            assert os.write(fd, buf) == MiB
        os.fsync(fd)
    finally:
        os.close(fd)
    os.unlink(path)


def check_read(data, off, allow_zero):
    """Every byte read is the written value, or (in a hole) zero; never
    anything else, least of all a former owner's 'X'. Returns a message."""
    want = expected(off, len(data))
    if data == want:
        return None
    for i, (got, w) in enumerate(zip(data, want)):
        if got != w and not (allow_zero and got == 0):
            return 'byte %d read %r, written %r%s' % (
                off + i, bytes([got]), bytes([w]), " (a deleted file's byte)" if got == OLD else '')
    return None


def run_readers(path, span, stop, allow_zero, nreaders=3):
    """Reader threads pread random ranges of [0, span) (past EOF too) until
    `stop` is set; returns (threads, problems, reads)."""
    problems, reads = [], [0]

    def reader(seed):
        rnd = random.Random(seed)
        fd = os.open(path, os.O_RDONLY)
        try:
            while not stop.is_set() and not problems:
                off = rnd.randrange(0, span)
                data = os.pread(fd, rnd.choice((4096, 64 << 10, MiB)), off)
                reads[0] += 1
                msg = check_read(data, off, allow_zero)
                if msg:
                    problems.append(msg)
        except OSError as e:
            problems.append('reader: %s' % e)
        finally:
            os.close(fd)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(nreaders)]
    for t in threads:
        t.start()
    return threads, problems, reads


@pytest.mark.pool_size('256M')
@pytest.mark.watchdog(180)
def test_readers_never_see_unwritten_bytes_of_an_extending_write(mnt):
    """A file grows by 256 KiB appends into blocks that held a deleted
    file's bytes, while readers read all over it and past its end: what
    they read is the appended data, never those old bytes or zeroes."""
    total = 48 * MiB
    leave_old_bytes(mnt, 96 * MiB)
    path = os.path.join(mnt.dir, 'f')
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
    stop = threading.Event()
    threads, problems, reads = run_readers(path, total, stop, allow_zero=False)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            for off in range(0, total, CHUNK):
                assert os.write(fd, expected(off, CHUNK)) == CHUNK
                if problems:
                    break
        finally:
            os.close(fd)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not problems, problems[0]
    assert reads[0] > 0
    assert os.stat(path).st_size == total
    with open(path, 'rb') as f:
        assert f.read() == expected(0, total)


@pytest.mark.pool_size('256M')
@pytest.mark.watchdog(180)
def test_readers_never_see_unwritten_bytes_of_writes_into_holes(mnt):
    """Writes in random order fill a sparse file's holes (each one
    allocates) with blocks that held a deleted file's bytes, while readers
    read it: every byte is zero (still a hole) or the written data."""
    total = 48 * MiB
    leave_old_bytes(mnt, 96 * MiB)
    path = os.path.join(mnt.dir, 'f')
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, total)
    offs = list(range(0, total, CHUNK))
    random.Random(7).shuffle(offs)
    stop = threading.Event()
    threads, problems, reads = run_readers(path, total, stop, allow_zero=True)
    try:
        for off in offs:
            assert os.pwrite(fd, expected(off, CHUNK), off) == CHUNK
            if problems:
                break
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        os.close(fd)
    assert not problems, problems[0]
    assert reads[0] > 0
    with open(path, 'rb') as f:
        assert f.read() == expected(0, total)


@pytest.mark.pool_size('3G')
@pytest.mark.mount_options('timeout=0')
@pytest.mark.watchdog(300)
def test_long_fallocate_lets_a_lookup_a_create_and_a_stat_complete(mnt):
    """While one client preallocates 2 GiB, another's lookup of a missing
    name, create and stat (every one a request to the daemon: timeout=0)
    complete before the fallocate does: the stat sees the file part-filled.
    Before, the fill held the metadata lock from start to end."""
    size = 2 * GiB
    path = os.path.join(mnt.dir, 'big')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    done = threading.Event()
    errors = []

    def fill():
        try:
            fallocate(fd, 0, 0, size)
        except OSError as e:
            errors.append(e)
        finally:
            done.set()

    t = threading.Thread(target=fill)
    t.start()
    try:
        # under way once the file has its first blocks
        assert wait_until(lambda: os.stat(path).st_blocks > 0 or done.is_set(), 120)
        expect_errno(errno.ENOENT, os.stat, os.path.join(mnt.dir, 'missing'))
        os.close(os.open(os.path.join(mnt.dir, 'new'), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        seen = os.stat(path).st_blocks * 512
        assert os.path.exists(os.path.join(mnt.dir, 'new'))
    finally:
        t.join(240)
        os.close(fd)
    assert not t.is_alive(), 'fallocate did not return'
    assert not errors, errors[0]
    assert seen < size, ('the stat answered only after the whole fallocate (%d bytes allocated): '
                         'the fill held the metadata lock throughout' % seen)
    st = os.stat(path)
    assert st.st_size == size
    assert st.st_blocks * 512 >= size
    with open(path, 'rb') as f:
        for off in (0, size // 2 + 12345, size - 4096):
            f.seek(off)
            assert f.read(4096) == bytes(4096)

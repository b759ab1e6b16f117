"""mkfs.pinfs never destroys what it should not, and never takes the machine's memory.

Without --force it refuses, with one line naming what is there, any existing
non-empty file or device that is not a pinfs pool, and an existing pinfs pool
(formatting it destroys every file in it); an empty file or a new path is
formatted. Even with --force it refuses a pool that a pinfs process holds
(flock) and a pool whose holder record names a live process, which may still
store into the pool through its mapping. A refusal changes nothing.

A pool file is sparse: mkfs writes only the blocks that are not zeros (about
1 MiB per TiB of pool), so a 1 TiB pool fits on a 64 MiB tmpfs, and neither
mkfs, nor mounting it (forced too, with orphans to free and a leaked block
to weigh), nor fsck (--repair too) allocates its holes. A pool whose first
blocks do not fit is refused with both figures, and a file mkfs created for
it is removed.
"""

import contextlib
import fcntl
import hashlib
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import uuid

import pytest

from pinfs_mount import BIN, PinfsMount, _find_program, check_fsck, describe, fsck, run
from pinfs_util import pattern, read_file, write_file

pytestmark = pytest.mark.needs_daemon

SIZE = '64M'
SB_UUID_OFFSET = 40           # struct pm_super (pmem/layout.h): u8 uuid[16]
SB_NPINHOLDERS = 208          # u32 npinholders, then pinholders[] (pid u32, pad, ticks u64) at 216


def _mkfs(path, *extra):
    return run([BIN['mkfs.pinfs'], '--size', SIZE] + list(extra) + [path])


def _one_line(res):
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, 'expected one line on stderr:\n%s' % res.stderr
    return lines[0]


def _digest(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return os.path.getsize(path), h.hexdigest()


def _uuid(pool):
    with open(pool, 'rb') as f:
        f.seek(SB_UUID_OFFSET)
        return str(uuid.UUID(bytes=f.read(16)))


def _pool_holders(pool):
    with open(pool, 'rb') as f:
        sb = f.read(4096)
    n = struct.unpack_from('<I', sb, SB_NPINHOLDERS)[0]
    return [struct.unpack_from('<I', sb, 216 + 16 * i)[0] for i in range(n)]


def _ext4_image():
    img = bytearray(2048)
    struct.pack_into('<H', img, 1080, 0xEF53)
    return bytes(img)


FOREIGN = {
    'text': (b'myhost\n', 'text'),
    'ext4': (_ext4_image(), 'ext2/3/4'),
    'xfs': (b'XFSB' + bytes(508), 'XFS'),
    'elf': (b'\x7fELF\x02\x01\x01' + bytes(57), 'ELF'),
    'gzip': (b'\x1f\x8b\x08\x00' + bytes(20), 'gzip'),
    'zip': (b'PK\x03\x04' + bytes(26), 'ZIP'),
}


@pytest.mark.parametrize('kind', sorted(FOREIGN))
def test_non_empty_foreign_file_is_refused_unchanged_without_force_and_formatted_with_it(
        scratch, kind):
    data, name = FOREIGN[kind]
    path = os.path.join(scratch, 'precious')
    write_file(path, data, mode=0o644)
    before = os.stat(path)

    res = _mkfs(path)
    assert res.returncode == 1, 'mkfs over a %s file: %s\n%s' % (kind, res.returncode, res.stderr)
    line = _one_line(res)
    assert path in line and 'regular file of %d bytes' % len(data) in line, line
    assert name in line, 'message should recognise %s: %r' % (name, line)
    assert 'not a pinfs pool' in line and '--force' in line, line
    after = os.stat(path)
    assert read_file(path) == data, 'a refusing mkfs changed the file'
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == \
        (before.st_size, before.st_mtime_ns, before.st_ino)

    res = _mkfs(path, '--force')
    assert res.returncode == 0, res.stderr
    assert os.path.getsize(path) == 64 << 20
    check_fsck(path)


def test_existing_pool_is_refused_without_force_naming_it_and_reformatted_with_it(pool):
    old_uuid = _uuid(pool)
    before = _digest(pool)
    res = _mkfs(pool)
    assert res.returncode == 1, res.stderr
    line = _one_line(res)
    assert pool in line and 'pinfs pool' in line and old_uuid in line, line
    assert '--force' in line, line
    assert _digest(pool) == before, 'a refusing mkfs changed the pool'
    check_fsck(pool)

    res = _mkfs(pool, '--force')
    assert res.returncode == 0, res.stderr
    assert _uuid(pool) != old_uuid
    assert os.path.getsize(pool) == 64 << 20
    check_fsck(pool)


def test_empty_file_new_path_and_hole_only_file_are_formatted_without_force(scratch):
    empty = os.path.join(scratch, 'empty')
    open(empty, 'wb').close()
    new = os.path.join(scratch, 'new')
    holes = os.path.join(scratch, 'holes')     # all hole: holds nothing to lose
    with open(holes, 'wb') as f:
        f.truncate(1 << 30)
    for path in (empty, new, holes):
        res = _mkfs(path)
        assert res.returncode == 0, '%s: %s' % (path, res.stderr)
        assert os.path.getsize(path) == 64 << 20
        check_fsck(path)


def test_char_device_is_refused_before_anything_is_written(scratch):
    # never with --force: this test must not risk writing to a device
    st = os.stat('/dev/null')
    res = _mkfs('/dev/null')
    assert res.returncode == 1, res.stderr
    line = _one_line(res)
    assert '/dev/null' in line and 'character device' in line, line
    assert 'cannot map' not in line, 'mkfs got as far as mapping the device: %r' % line
    after = os.stat('/dev/null')
    assert (after.st_mode, after.st_rdev) == (st.st_mode, st.st_rdev)


def test_directory_is_refused(scratch):
    res = _mkfs(scratch, '--force')
    assert res.returncode == 1, res.stderr
    assert 'directory' in _one_line(res)


def test_pool_held_by_a_live_daemon_is_refused_even_with_force(mnt):
    write_file(mnt.path('kept'), b'still here')
    old_uuid = _uuid(mnt.pool)
    res = _mkfs(mnt.pool, '--force')
    assert res.returncode == 1, res.stderr
    line = _one_line(res)
    assert mnt.pool in line and 'in use' in line, line
    assert _uuid(mnt.pool) == old_uuid
    assert read_file(mnt.path('kept')) == b'still here'
    write_file(mnt.path('after'), b'the mount still works')
    assert read_file(mnt.path('after')) == b'the mount still works'


def test_pool_locked_by_another_pinfs_process_is_refused_even_with_force(pool):
    # what fsck.pinfs or another mkfs.pinfs does while it works on the pool
    before = _digest(pool)
    with open(pool, 'rb') as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        res = _mkfs(pool, '--force')
    assert res.returncode == 1, res.stderr
    assert 'in use' in _one_line(res)
    assert _digest(pool) == before, 'a refusing mkfs changed the pool'
    check_fsck(pool)


@pytest.mark.pool_size('16M')
def test_pool_whose_holder_lives_is_refused_even_with_force_until_it_exits(mnt):
    pinfsctl = _find_program('pinfsctl')
    if pinfsctl is None:
        pytest.skip('pinfsctl not built')
    path = mnt.path('pinned')
    write_file(path, bytes([0x5A]) * (64 * 1024))
    holder = subprocess.Popen([pinfsctl, 'pin', '--write', '--hold', '120', path, '0', '65536'],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True)
    try:
        first = holder.stdout.readline()
        assert first.startswith('lease '), 'pinfsctl pin: %r %s' % (first, holder.poll())
        assert holder.pid in _pool_holders(mnt.pool)
        mnt.kill_daemon(signal.SIGKILL)
        before = _digest(mnt.pool)

        res = _mkfs(mnt.pool, '--force')
        assert res.returncode == 1, res.stderr
        line = _one_line(res)
        assert str(holder.pid) in line and 'pinfsctl' in line, line
        assert _digest(mnt.pool) == before, 'a refusing mkfs changed the pool'
    finally:
        holder.kill()
        holder.wait(timeout=10)
        holder.stdout.close()
        holder.stderr.close()
    res = _mkfs(mnt.pool, '--force')
    assert res.returncode == 0, res.stderr
    check_fsck(mnt.pool)
    assert _pool_holders(mnt.pool) == []


# ---- sparse pools: what mkfs and a mount take of the backing and of memory

MIB = 1 << 20
# mkfs.pinfs's peak RSS for a 1 TiB pool is about 5 MiB (12 MiB under ASan);
# zeroing its metadata took 32 GiB
MKFS_RSS_MAX = 64 * MIB
BACKING_MAX = 16 * MIB     # a new 1 TiB pool takes 1056 KiB of it


@contextlib.contextmanager
def _tmpfs(size):
    """A tmpfs of `size` (e.g. '64m') mounted on a fresh directory; unmounted after."""
    d = tempfile.mkdtemp(prefix='pinfs-tmpfs-')
    res = run(['mount', '-t', 'tmpfs', '-o', 'size=%s,mode=0700' % size, 'tmpfs', d])
    assert res.returncode == 0, describe(res)
    try:
        yield d
    finally:
        res = run(['umount', d])
        assert res.returncode == 0, describe(res)
        os.rmdir(d)


# Runs argv[1:] and prints its peak RSS (KiB, getrusage of its children) on
# the last line of stderr: this process has no other child.
_MAXRSS = ('import resource, subprocess, sys\n'
           'rc = subprocess.run(sys.argv[1:]).returncode\n'
           'sys.stderr.write("maxrss %d\\n" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n'
           'sys.exit(rc if rc >= 0 else 128 - rc)\n')


def _mkfs_measured(*args):
    """mkfs.pinfs ARGS; returns (CompletedProcess without the RSS line, peak RSS in bytes)."""
    res = run([sys.executable, '-c', _MAXRSS, BIN['mkfs.pinfs']] + list(args))
    lines = res.stderr.splitlines()
    assert lines and lines[-1].startswith('maxrss '), describe(res)
    res.stderr = ''.join(l + '\n' for l in lines[:-1])
    return res, int(lines[-1].split()[1]) * 1024


def _used(fs):
    """Bytes in use on the file system holding `fs`."""
    st = os.statvfs(fs)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _allocated(path):
    return os.stat(path).st_blocks * 512


def _data_regions(path):
    """(offset, bytes) of every stretch of `path` that is not a hole."""
    fd = os.open(path, os.O_RDONLY)
    try:
        end = os.fstat(fd).st_size
        off = 0
        while off < end:
            try:
                start = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                return
            stop = os.lseek(fd, start, os.SEEK_HOLE)
            yield start, os.pread(fd, stop - start, start)
            off = stop
    finally:
        os.close(fd)


@pytest.mark.parametrize('checksums', [False, True], ids=['plain', 'checksums'])
def test_1tib_pool_on_64mib_tmpfs_takes_1mib_of_it_and_mounts_and_checks_clean(
        scratch, mountpoint, checksums):
    extra = ['--checksums'] if checksums else []
    with _tmpfs('64m') as fs:
        pool = os.path.join(fs, 'pool')
        res, rss = _mkfs_measured('--size', '1T', *(extra + [pool]))
        assert res.returncode == 0, describe(res)
        # thin provisioning works, but the user is told, in one line
        warn = _one_line(res)
        assert 'warning' in warn and pool in warn and '1 TiB' in warn and '64 MiB' in warn, warn
        assert os.path.getsize(pool) == 1 << 40
        assert _allocated(pool) < BACKING_MAX, 'mkfs allocated %d bytes' % _allocated(pool)
        assert _used(fs) < BACKING_MAX
        assert rss < MKFS_RSS_MAX, 'mkfs.pinfs peaked at %d MiB of RSS' % (rss >> 20)
        after_mkfs = _allocated(pool)

        # fsck reads the inode table and bitmap without allocating their holes
        check_fsck(pool)
        assert _allocated(pool) == after_mkfs

        m = PinfsMount(pool, mountpoint, scratch)
        m.start()
        try:
            # the mount itself (journal replay, fsck, bitmap, freeing free
            # space) allocates nothing beyond the journal head mkfs reserved
            assert _allocated(pool) == after_mkfs
            st = os.statvfs(mountpoint)
            assert st.f_blocks * st.f_frsize > (1 << 40) * 9 // 10, st
            data = pattern(16, 4 * MIB)
            write_file(m.path('f'), data)
            os.mkdir(m.path('d'))
            write_file(m.path('d', 'g'), b'small')
            assert read_file(m.path('f')) == data
            assert read_file(m.path('d', 'g')) == b'small'
            if checksums:
                # a scrub of the whole mount walks the inode table
                pinfsctl = _find_program('pinfsctl')
                assert pinfsctl, 'pinfsctl not built'
                os.sync()
                before = _allocated(pool)
                res = run([pinfsctl, 'scrub', mountpoint])
                assert res.returncode == 0, describe(res)
                assert re.search(r'^bad:\s+0$', res.stdout, re.M), res.stdout
                assert _allocated(pool) == before
        finally:
            m.unmount()
        assert _allocated(pool) < after_mkfs + 4 * MIB + BACKING_MAX
        check_fsck(pool)

        # a forced mount walks every inode's map (pm_alloc_check): the
        # holes of the inode table stay holes
        before = _allocated(pool)
        m = PinfsMount(pool, mountpoint, scratch, ['force'])
        m.start()
        try:
            assert read_file(m.path('f')) == data
            assert _allocated(pool) == before
        finally:
            m.unmount()
        check_fsck(pool)
        assert _used(fs) < 4 * MIB + 2 * BACKING_MAX


SB_BITMAP_START = 112         # struct pm_super: u64 bitmap_start (a block number)
SB_NBLOCKS = 64               # u64 nblocks


def _super_u64(pool, off):
    with open(pool, 'rb') as f:
        f.seek(off)
        return struct.unpack('<Q', f.read(8))[0]


def _hole(path, off):
    """Is byte `off` of `path` in a hole (never written, no backing)?"""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, off, os.SEEK_DATA) > off
    except OSError:
        return True                  # ENXIO: nothing but hole from off on
    finally:
        os.close(fd)


def test_1tib_pool_forced_mount_with_an_orphan_and_repair_of_a_leak_allocate_no_holes(
        scratch, mountpoint):
    """What a forced mount and fsck --repair read beyond the plain check: a
    forced mount with orphans counts the entries naming them in every
    directory, and weighs each leaked block as a possible map node; a repair
    walks every map first (to find the blocks two inodes name) and weighs
    the leaked blocks too. None of it may read a hole of the inode table,
    and a leaked block that is a hole (marked in use, never written) reads
    as zeros without being read: the backing stays as it was."""
    with _tmpfs('64m') as fs:
        pool = os.path.join(fs, 'pool')
        res = run([BIN['mkfs.pinfs'], '--size', '1T', pool])
        assert res.returncode == 0, describe(res)

        m = PinfsMount(pool, mountpoint, scratch)
        m.start()
        fd = -1
        try:
            os.mkdir(m.path('d'))
            write_file(m.path('d', 'kept'), b'kept' * 1000)
            write_file(m.path('d', 'orphan'), b'orphan' * 1000)
            # open and unlinked, then the daemon dies: it stays on the
            # orphan list for the next mount to free
            fd = os.open(m.path('d', 'orphan'), os.O_RDONLY)
            os.unlink(m.path('d', 'orphan'))
            assert m.kill_daemon() == -signal.SIGKILL
        finally:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass             # the connection is gone
            if m.proc is not None:
                m.unmount()

        # a block far into the data region, a hole, marked in use: leaked
        nblocks = _super_u64(pool, SB_NBLOCKS)
        leak = nblocks // 2
        with open(pool, 'r+b') as f:
            f.seek(_super_u64(pool, SB_BITMAP_START) * 4096 + leak // 8)
            byte = f.read(1)[0]
            assert not byte & (1 << (leak % 8))
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte | (1 << (leak % 8))]))
        assert _hole(pool, leak * 4096)
        before = _allocated(pool)

        # (freeing the orphan gives its blocks' backing back: less, not more)
        m = PinfsMount(pool, mountpoint, scratch, ['force'])
        m.start()
        try:
            assert read_file(m.path('d', 'kept')) == b'kept' * 1000
            assert os.listdir(m.path('d')) == ['kept']
            assert _allocated(pool) <= before
            assert _hole(pool, leak * 4096)
        finally:
            m.unmount()
        assert _allocated(pool) <= before
        before = _allocated(pool)

        res = fsck(pool, '-y')
        assert res.returncode == 1, describe(res)
        assert 'block %d: marked in use, but nothing references it (leaked)' % leak \
            in res.stdout, res.stdout
        assert _allocated(pool) == before
        assert _hole(pool, leak * 4096)
        check_fsck(pool)
        assert _allocated(pool) == before

def _figures(line):
    """The (needed, free) byte counts a refusal for want of space names."""
    m = re.search(r'takes [^(]*\((\d+) bytes\).* only [^(]*\((\d+) bytes\) is free', line)
    assert m, 'the refusal should name what is needed and what is free: %r' % line
    return int(m.group(1)), int(m.group(2))


def test_pool_whose_first_blocks_cannot_fit_is_refused_naming_both_figures(scratch):
    with _tmpfs('1m') as fs:
        free = os.statvfs(fs).f_bavail * os.statvfs(fs).f_frsize
        new = os.path.join(fs, 'pool')
        res, _ = _mkfs_measured('--size', '1T', new)
        assert res.returncode == 1, describe(res)
        line = _one_line(res)
        need, said_free = _figures(line)
        assert new in line and '1 TiB' in line, line
        assert said_free == free and need > free, line
        assert need < 2 * MIB, 'a new 1 TiB pool needs about 1 MiB, not %d bytes' % need
        assert not os.path.exists(new), 'the file mkfs created is left behind'
        assert _used(fs) == 0

        # an empty file the user made is refused the same way, and kept as it was
        empty = os.path.join(fs, 'empty')
        open(empty, 'wb').close()
        res, _ = _mkfs_measured('--size', '1T', empty)
        assert res.returncode == 1, describe(res)
        assert _figures(_one_line(res))[0] == need
        assert os.stat(empty).st_size == 0 and _allocated(empty) == 0

        # what fits is formatted: half the pool, half the bitmap
        res, _ = _mkfs_measured('--size', '512G', new)
        assert res.returncode == 0, describe(res)
        assert _allocated(new) <= free
        check_fsck(new)


def test_force_over_a_used_1tib_pool_leaves_an_empty_fs_and_frees_the_old_blocks(
        scratch, mountpoint):
    marker = b'old pinfs data \x01\x02\x03 that must not survive mkfs --force'
    with _tmpfs('64m') as fs:
        pool = os.path.join(fs, 'pool')
        res = run([BIN['mkfs.pinfs'], '--size', '1T', pool])
        assert res.returncode == 0, describe(res)
        fresh_backing = _allocated(pool)

        m = PinfsMount(pool, mountpoint, scratch)
        m.start()
        try:
            fresh = os.statvfs(mountpoint)
            os.mkdir(m.path('olddir'))
            for i in range(200):
                write_file(m.path('olddir', 'old-%03d' % i), marker * (i + 1))
            write_file(m.path('oldbig'), marker * (8 * MIB // len(marker)))
        finally:
            m.unmount()
        assert _allocated(pool) > fresh_backing + 8 * MIB

        res = run([BIN['mkfs.pinfs'], '--size', '1T', '--force', pool])
        assert res.returncode == 0, describe(res)
        # the old pool's blocks are gone, not rewritten with zeros
        assert _allocated(pool) == fresh_backing
        assert not any(marker in data or b'old-0' in data or b'olddir' in data
                       for _, data in _data_regions(pool)), 'old bytes survive in the pool file'
        check_fsck(pool)

        m = PinfsMount(pool, mountpoint, scratch)
        m.start()
        try:
            assert os.listdir(mountpoint) == []
            st = os.statvfs(mountpoint)
            assert (st.f_blocks, st.f_bfree, st.f_files, st.f_ffree) == \
                (fresh.f_blocks, fresh.f_bfree, fresh.f_files, fresh.f_ffree)
            write_file(m.path('new'), b'new pool')
            assert os.listdir(mountpoint) == ['new']
        finally:
            m.unmount()
        check_fsck(pool)

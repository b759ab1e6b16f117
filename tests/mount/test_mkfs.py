"""mkfs.pinfs never destroys what it should not.

Without --force it refuses, with one line naming what is there, any existing
non-empty file or device that is not a pinfs pool, and an existing pinfs pool
(formatting it destroys every file in it); an empty file or a new path is
formatted. Even with --force it refuses a pool that a pinfs process holds
(flock) and a pool whose holder record names a live process, which may still
store into the pool through its mapping. A refusal changes nothing.
"""

import fcntl
import hashlib
import os
import signal
import struct
import subprocess
import uuid

import pytest

from pinfs_mount import BIN, _find_program, check_fsck, run
from pinfs_util import read_file, write_file

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

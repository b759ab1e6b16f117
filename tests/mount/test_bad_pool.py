"""Bad input: pools that are foreign, truncated, of a newer version or corrupt
must be refused by pinfs and fsck.pinfs with one clear line on stderr and a
non-zero exit, never a crash; bad options and careless mkfs likewise."""

import os
import re
import shutil
import struct
import tempfile

import pytest

from pinfs_mount import (BIN, PinfsMount,
                         check_fsck, force_unmount, fsck, mkfs, mounted, run, try_mount)
from pinfs_util import write_file

pytestmark = pytest.mark.needs_daemon

# Superblock layout, as far as these tests need it: struct pm_super in
# pmem/layout.h (block 0, little endian).  Keep in step with that file;
# test_superblock_constants_match_a_fresh_pool fails loudly when they drift.
SB_SIZE = 4096
SB_MAGIC_OFFSET = 0                   # u64 PM_SUPER_MAGIC
SB_MAGIC = 0x314c50534e464950         # "PINFSPL1"
SB_VERSION_OFFSET = 8                 # u32 PM_VERSION
SB_BLOCK_SIZE_OFFSET = 12             # u32, 4096
SB_FEAT_INCOMPAT_OFFSET = 24          # u64
SB_UUID_OFFSET = 40                   # u8[16]
SB_CSUM_OFFSET = 184                  # u32 CRC32C of the block with this field 0


def _crc32c(data):
    """CRC32C (Castagnoli), as pmem/crc32c.c computes it with crc = 0."""
    table = _crc32c.table
    if table is None:
        table = _crc32c.table = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
            table.append(c)
    crc = 0xFFFFFFFF
    for b in data:
        crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFFFFFF


_crc32c.table = None


def _super_csum(sb):
    sb = bytearray(sb[:SB_SIZE])
    sb[SB_CSUM_OFFSET:SB_CSUM_OFFSET + 4] = bytes(4)
    return _crc32c(bytes(sb))


def _edit_super(pool, offset, fmt, value, fix_csum):
    """Write struct-packed `value` at `offset` of the superblock, optionally
    recomputing the checksum (a well-formed superblock with that value)."""
    with open(pool, 'r+b') as f:
        sb = bytearray(f.read(SB_SIZE))
        sb[offset:offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
        if fix_csum:
            sb[SB_CSUM_OFFSET:SB_CSUM_OFFSET + 4] = struct.pack('<I', _super_csum(sb))
        f.seek(0)
        f.write(sb)


# Crash and sanitizer reports must never show up, even when refusing.  (The
# refusal line itself may well say "error", so ERROR_RE is not used here.)
CRASH_RE = re.compile(r'Sanitizer|runtime error|Segmentation fault|Assertion .* failed|core dumped')


def _read_super(pool):
    with open(pool, 'rb') as f:
        return f.read(SB_SIZE)


def _one_clear_line(stderr):
    lines = [l for l in stderr.splitlines() if l.strip()]
    assert len(lines) == 1, 'expected exactly one line on stderr, got:\n' + stderr
    assert len(lines[0]) >= 10, 'stderr line is not a clear message: %r' % lines[0]
    assert not CRASH_RE.search(lines[0]), 'crash report instead of a message: %r' % lines[0]
    return lines[0]


def _assert_refused(pool, mountpoint, keyword=None):
    rc, err = try_mount(pool, mountpoint)
    assert rc > 0, 'pinfs on a bad pool: exit %s (negative means killed by a signal)\n%s' % (rc, err)
    assert not mounted(mountpoint)
    line = _one_clear_line(err)
    if keyword:
        assert keyword in line.lower(), 'message should mention %r: %r' % (keyword, line)

    res = fsck(pool)
    assert res.returncode in (4, 8), 'fsck.pinfs on a bad pool: exit %s\n%s%s' % (
        res.returncode, res.stdout, res.stderr)
    assert not CRASH_RE.search(res.stdout + res.stderr), res.stdout + res.stderr
    return line


@pytest.fixture
def good_pool(scratch):
    path = os.path.join(scratch, 'good.pool')
    mkfs(path, '64M')
    return path


def test_superblock_constants_match_a_fresh_pool(good_pool):
    sb = _read_super(good_pool)
    hint = 'update the SB_* constants at the top of %s from pmem/layout.h' % os.path.basename(__file__)
    assert struct.unpack_from('<Q', sb, SB_MAGIC_OFFSET)[0] == SB_MAGIC, hint
    assert struct.unpack_from('<I', sb, SB_VERSION_OFFSET)[0] == 1, hint
    assert struct.unpack_from('<I', sb, SB_BLOCK_SIZE_OFFSET)[0] == 4096, hint
    assert struct.unpack_from('<I', sb, SB_CSUM_OFFSET)[0] == _super_csum(sb), hint
    assert os.path.getsize(good_pool) == 64 << 20


def test_foreign_file_is_refused(scratch, mountpoint):
    pool = os.path.join(scratch, 'random.bin')
    write_file(pool, os.urandom(8 << 20))
    _assert_refused(pool, mountpoint)
    assert fsck(pool).returncode == 8


def test_empty_and_missing_files_are_refused(scratch, mountpoint):
    empty = os.path.join(scratch, 'empty')
    write_file(empty, b'')
    _assert_refused(empty, mountpoint)
    missing = os.path.join(scratch, 'missing')
    rc, err = try_mount(missing, mountpoint)
    assert rc > 0
    _one_clear_line(err)
    assert fsck(missing).returncode == 8


def test_truncated_pool_is_refused(scratch, mountpoint, good_pool):
    pool = os.path.join(scratch, 'truncated')
    with open(good_pool, 'rb') as f:
        write_file(pool, f.read(4096))
    _assert_refused(pool, mountpoint)


def test_pool_cut_short_after_mkfs_is_refused(scratch, mountpoint, good_pool):
    # superblock intact, but the file is shorter than the size it records
    pool = os.path.join(scratch, 'short')
    shutil.copyfile(good_pool, pool)
    os.truncate(pool, 8 << 20)
    _assert_refused(pool, mountpoint)


@pytest.mark.parametrize('fix_csum', [True, False], ids=['valid-csum', 'stale-csum'])
def test_pool_of_newer_version_is_refused(scratch, mountpoint, good_pool, fix_csum):
    pool = os.path.join(scratch, 'newer')
    shutil.copyfile(good_pool, pool)
    version = struct.unpack_from('<I', _read_super(pool), SB_VERSION_OFFSET)[0]
    _edit_super(pool, SB_VERSION_OFFSET, '<I', version + 1, fix_csum)
    _assert_refused(pool, mountpoint, keyword='version')


def test_pool_with_unknown_incompatible_feature_is_refused(scratch, mountpoint, good_pool):
    pool = os.path.join(scratch, 'feature')
    shutil.copyfile(good_pool, pool)
    _edit_super(pool, SB_FEAT_INCOMPAT_OFFSET, '<Q', 1 << 40, fix_csum=True)
    _assert_refused(pool, mountpoint, keyword='feature')


@pytest.mark.parametrize('offset', [SB_UUID_OFFSET + 3, SB_BLOCK_SIZE_OFFSET + 1, SB_CSUM_OFFSET,
                                    SB_SIZE - 1],
                         ids=['uuid', 'block_size', 'csum', 'reserved'])
def test_pool_with_flipped_superblock_byte_is_refused(scratch, mountpoint, good_pool, offset):
    pool = os.path.join(scratch, 'corrupt')
    shutil.copyfile(good_pool, pool)
    with open(pool, 'r+b') as f:
        f.seek(offset)
        b = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([b ^ 0x40]))
    _assert_refused(pool, mountpoint)


def test_unknown_mount_option_is_rejected(good_pool, mountpoint):
    rc, err = try_mount(good_pool, mountpoint, options=['no_such_option_xyz'])
    assert rc > 0, 'exit %s\n%s' % (rc, err)
    assert 'no_such_option_xyz' in err, 'the message should name the bad option: %r' % err
    assert not mounted(mountpoint)
    check_fsck(good_pool)


def test_second_mount_of_the_same_pool_is_refused(good_pool, mountpoint, scratch):
    first = PinfsMount(good_pool, mountpoint, scratch)
    other = tempfile.mkdtemp(prefix='pinfs-mnt-')
    try:
        first.start()
        try:
            rc, err = try_mount(good_pool, other)
            assert rc > 0, 'a pool must not be served by two daemons at once\n%s' % err
            _one_clear_line(err)
            # it waited (bounded) for a daemon that might be exiting, then
            # named the one that is not
            assert 'pid %d' % first.proc.pid in err, err
        finally:
            problems = first.stop()
    finally:
        force_unmount(other)
        os.rmdir(other)
    assert problems == []
    check_fsck(good_pool)


def test_mkfs_refuses_existing_pool_without_force(good_pool):
    with open(good_pool, 'rb') as f:
        head = f.read(4096)
    res = run([BIN['mkfs.pinfs'], '--size', '64M', good_pool])
    assert res.returncode == 1, 'mkfs over an existing pool: exit %s\n%s' % (res.returncode, res.stderr)
    assert res.stderr.strip(), 'mkfs should say why it refused'
    with open(good_pool, 'rb') as f:
        assert f.read(4096) == head, 'refusing mkfs modified the pool'
    check_fsck(good_pool)


def test_mkfs_force_reformats_existing_pool(good_pool, mountpoint, scratch):
    m = PinfsMount(good_pool, mountpoint, scratch)
    m.start()
    try:
        write_file(m.path('old'), b'from before')
    finally:
        assert m.stop() == []
    res = run([BIN['mkfs.pinfs'], '--size', '64M', '--force', good_pool])
    assert res.returncode == 0, res.stderr
    check_fsck(good_pool)
    m.start()
    try:
        assert os.listdir(m.dir) == []
    finally:
        assert m.stop() == []


def test_mkfs_makes_pool_of_requested_size(scratch):
    for size, nbytes in (('64M', 64 << 20), ('1G', 1 << 30)):
        pool = os.path.join(scratch, 'sized-' + size)
        mkfs(pool, size)
        assert os.path.getsize(pool) == nbytes
        check_fsck(pool)
    pool = os.path.join(scratch, 'default')
    res = run([BIN['mkfs.pinfs'], pool])
    assert res.returncode == 0, res.stderr
    assert os.path.getsize(pool) == 256 << 20
    check_fsck(pool)


def test_mkfs_rejects_nonsense_sizes(scratch):
    for size in ('4K', 'lots', '-1M'):
        pool = os.path.join(scratch, 'bad-%s' % size)
        res = run([BIN['mkfs.pinfs'], '--size', size, pool])
        assert res.returncode > 0, 'mkfs --size %s: exit %s' % (size, res.returncode)
        assert res.stderr.strip()


def test_fsck_reports_clean_pool_with_exit_0(good_pool):
    res = fsck(good_pool)
    assert res.returncode == 0, res.stdout + res.stderr
    res = fsck(good_pool, '--repair')
    assert res.returncode == 0, 'nothing to repair must exit 0: %s' % (res.stdout + res.stderr)

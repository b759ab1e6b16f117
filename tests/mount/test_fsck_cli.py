"""fsck.pinfs as e2fsck users expect it (issue 8, item 4), on pools the
daemon wrote: -n writes nothing (the pool file is byte-identical), a pending
journal transaction is reported (-n) or replayed and counted as a repair
(exit 1, never a silent 0), --repair mends what it reports (a second run is
clean and the pool mounts with its files), and one flipped bit in the
superblock is repaired from the backup superblock.

The crafted corruptions of every kind are in tests/unit/test_fsck.c; these
tests check the command line: options, exit codes, what is written."""

import hashlib
import os
import shutil
import struct

import pytest

from pinfs_mount import BIN, PinfsMount, fsck, mkfs, mounted, run, try_mount
from pinfs_util import pattern, read_file, write_file
from test_bad_pool import SB_CSUM_OFFSET, _crc32c

pytestmark = pytest.mark.needs_daemon

BLOCK = 4096
# struct pm_super offsets (pmem/layout.h), u64 each
SB_NBLOCKS = 64
SB_JOURNAL_START = 72
SB_ITABLE_START = 88
SB_NINODES = 104
SB_BITMAP_START = 112
SB_DATA_START = 128
SB_FREE_INODES = 144
INODE_SIZE = 256
INODE_NLINK = 12                      # u32 in struct pm_dinode
JOURNAL_MAGIC = 0x4c4e524a53464950    # "PIFSJRNL"
JHDR = struct.Struct('<QQIIQII')      # magic seq state nrecs body_len csum pad


def _digest(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def _super_u64(pool, off):
    with open(pool, 'rb') as f:
        f.seek(off)
        return struct.unpack('<Q', f.read(8))[0]


def _populate(pool, scratch, mountpoint):
    """Mounts @pool, writes a few files, unmounts; returns {name: bytes, ...}
    and the inode number of 'victim'."""
    files = {'a': pattern(1, 300 << 10), 'd/b': pattern(2, 5000), 'victim': b'v' * 100}
    m = PinfsMount(pool, mountpoint, scratch)
    m.start()
    try:
        os.mkdir(m.path('d'))
        for name, data in files.items():
            write_file(m.path(name), data)
        ino = os.stat(m.path('victim')).st_ino
    finally:
        assert not m.stop()
    return files, ino


def _check_files(pool, scratch, mountpoint, files):
    m = PinfsMount(pool, mountpoint, scratch)
    m.start()
    try:
        for name, data in files.items():
            assert read_file(m.path(name)) == data, name
    finally:
        assert not m.stop()


def _fsck(pool, *args):
    res = fsck(pool, *args)
    assert 'Sanitizer' not in res.stderr and 'runtime error' not in res.stderr, res.stderr
    return res


def test_flipped_superblock_bit_is_repaired_from_backup(scratch, mountpoint):
    pool = os.path.join(scratch, 'pool')
    mkfs(pool, '32M')
    files, _ = _populate(pool, scratch, mountpoint)
    with open(pool, 'r+b') as f:
        f.seek(97)
        b = f.read(1)
        f.seek(97)
        f.write(bytes([b[0] ^ 0x10]))

    rc, err = try_mount(pool, mountpoint)
    assert rc != 0 and not mounted(mountpoint)
    assert 'backup superblock' in err and 'fsck.pinfs --repair' in err, err

    before = _digest(pool)
    res = _fsck(pool, '-n')
    assert res.returncode == 4, res.stdout + res.stderr
    assert 'the backup superblock (block 8191) is intact' in res.stdout, res.stdout
    assert _digest(pool) == before, 'fsck -n wrote to the pool'
    res = _fsck(pool)                  # no journal to replay: writes nothing either
    assert res.returncode == 4, res.stdout + res.stderr
    assert _digest(pool) == before, 'fsck without options wrote to the pool'

    res = _fsck(pool, '--repair')
    assert res.returncode == 1, res.stdout + res.stderr
    assert 'rewritten from the backup superblock' in res.stdout, res.stdout
    res = _fsck(pool)
    assert res.returncode == 0, res.stdout + res.stderr
    _check_files(pool, scratch, mountpoint, files)


def _commit_transaction(pool, records):
    """Writes a committed, checksummed journal transaction of @records
    [(offset, bytes)], as a crash right after the commit leaves it."""
    jstart = _super_u64(pool, SB_JOURNAL_START)
    body = b''
    for off, data in records:
        body += struct.pack('<QII', off, len(data), 0) + data
        body += bytes(-len(body) % 8)
    with open(pool, 'r+b') as f:
        f.seek(jstart * BLOCK)
        seq = JHDR.unpack(f.read(JHDR.size))[1]
        hdr = JHDR.pack(JOURNAL_MAGIC, seq + 1, 1, len(records), len(body), 0, 0)
        csum = _crc32c(hdr + body)
        f.seek(jstart * BLOCK)
        f.write(JHDR.pack(JOURNAL_MAGIC, seq + 1, 1, len(records), len(body), csum, 0))
        f.seek((jstart + 1) * BLOCK)
        f.write(body)


def test_pending_transaction_is_reported_and_replay_counts_as_a_repair(scratch, mountpoint):
    pool = os.path.join(scratch, 'pool')
    mkfs(pool, '32M')
    files, ino = _populate(pool, scratch, mountpoint)
    nlink_off = _super_u64(pool, SB_ITABLE_START) * BLOCK + ino * INODE_SIZE + INODE_NLINK
    # the crash: the transaction setting nlink to 1 committed, its in-place
    # write did not happen (the inode says 7)
    with open(pool, 'r+b') as f:
        f.seek(nlink_off)
        f.write(struct.pack('<I', 7))
    _commit_transaction(pool, [(nlink_off, struct.pack('<I', 1))])

    before = _digest(pool)
    res = _fsck(pool, '-n')
    # the verdict is the pool as found: the pending transaction and the
    # link count it would mend are both problems left
    assert res.returncode == 4, res.stdout + res.stderr
    assert 'the journal holds a committed transaction (1 record' in res.stdout, res.stdout
    assert 'link count 7, but 1 directory entries name it' in res.stdout, res.stdout
    assert _digest(pool) == before, 'fsck -n wrote to the pool'

    # without options: replayed, as a mount would, and said so: exit 1
    res = _fsck(pool)
    assert res.returncode == 1, res.stdout + res.stderr
    assert 'was not applied: replayed' in res.stdout, res.stdout
    assert '1 problem found, all repaired' in res.stdout, res.stdout
    res = _fsck(pool)
    assert res.returncode == 0, res.stdout + res.stderr
    _check_files(pool, scratch, mountpoint, files)


def test_torn_superblock_n_checks_what_the_replay_would_leave(scratch, mountpoint):
    """A crash while a committed transaction was applied can leave the
    primary superblock torn, half old and half new (scripts/crash-states
    found it): -n reports the replay that mends it and checks the pool as
    that replay would leave it, writing nothing; without -n the replay is
    done and counted as a repair, never a silent clean (issue 16)."""
    from test_bad_pool import SB_SIZE, _super_csum
    pool = os.path.join(scratch, 'pool')
    mkfs(pool, '32M')
    files, _ = _populate(pool, scratch, mountpoint)
    with open(pool, 'rb') as f:
        new = bytearray(f.read(SB_SIZE))
    # the transaction took one inode: before it, one more was free
    old = bytearray(new)
    free = struct.unpack_from('<Q', new, SB_FREE_INODES)[0]
    struct.pack_into('<Q', old, SB_FREE_INODES, free + 1)
    struct.pack_into('<I', old, SB_CSUM_OFFSET, _super_csum(old))
    # torn: the new counter reached the media, the new checksum did not
    torn = bytearray(old)
    struct.pack_into('<Q', torn, SB_FREE_INODES, free)
    assert struct.unpack_from('<I', torn, SB_CSUM_OFFSET)[0] != _super_csum(torn)
    with open(pool, 'r+b') as f:
        f.write(torn)
    _commit_transaction(pool, [(0, bytes(new))])

    before = _digest(pool)
    res = _fsck(pool, '-n')
    assert res.returncode == 4, res.stdout + res.stderr
    assert 'the primary superblock is torn; the journal holds a committed transaction ' \
        '(1 record' in res.stdout, res.stdout
    assert 'checked as the replay would leave it' in res.stdout, res.stdout
    # nothing else: the replayed pool is consistent (no checksum, counter or
    # pending-journal complaint from the pool as found)
    assert '1 problem found, 0 repaired, 1 left' in res.stdout, res.stdout
    assert _digest(pool) == before, 'fsck -n wrote to the pool'

    # --repair judges it the same way: the replay is its one repair
    copy = os.path.join(scratch, 'copy')
    shutil.copyfile(pool, copy)
    res = _fsck(copy, '--repair')
    assert res.returncode == 1, res.stdout + res.stderr
    assert 'that rewrites it: replayed' in res.stdout, res.stdout
    assert '1 problem found, all repaired' in res.stdout, res.stdout
    os.unlink(copy)

    res = _fsck(pool)
    assert res.returncode == 1, res.stdout + res.stderr
    assert 'that rewrites it: replayed' in res.stdout, res.stdout
    assert '1 problem found, all repaired' in res.stdout, res.stdout
    res = _fsck(pool)
    assert res.returncode == 0, res.stdout + res.stderr
    _check_files(pool, scratch, mountpoint, files)


def test_repair_mends_a_damaged_bitmap_and_the_pool_mounts(scratch, mountpoint):
    pool = os.path.join(scratch, 'pool')
    mkfs(pool, '32M')
    files, _ = _populate(pool, scratch, mountpoint)
    bitmap = _super_u64(pool, SB_BITMAP_START)
    data_start = _super_u64(pool, SB_DATA_START)
    off = bitmap * BLOCK + (data_start + 7) // 8     # 8 blocks of data in use
    with open(pool, 'r+b') as f:
        f.seek(off)
        assert f.read(1) != b'\0'
        f.seek(off)
        f.write(b'\0')

    res = _fsck(pool)
    assert res.returncode == 4, res.stdout + res.stderr
    assert 'is marked free in the allocation bitmap' in res.stdout, res.stdout
    res = _fsck(pool, '-y')
    assert res.returncode == 1, res.stdout + res.stderr
    assert 'marked free in the allocation bitmap: marked in use' in res.stdout, res.stdout
    assert 'left' not in res.stdout.splitlines()[-1], res.stdout
    res = _fsck(pool)
    assert res.returncode == 0, res.stdout + res.stderr
    _check_files(pool, scratch, mountpoint, files)


def test_counters_out_of_range_in_both_superblocks_are_recomputed(scratch, mountpoint):
    """A free counter out of range in the superblock and in its backup, both
    checksums valid (issue 16): the mount refuses the pool in one line that
    names the repair, and --repair recomputes the counter (the old fsck
    could not even open the pool: exit 4 with or without -y)."""
    pool = os.path.join(scratch, 'pool')
    mkfs(pool, '32M')
    files, _ = _populate(pool, scratch, mountpoint)
    nblocks = _super_u64(pool, SB_NBLOCKS)
    ninodes = _super_u64(pool, SB_NINODES)
    for base in (0, (nblocks - 1) * BLOCK):        # the superblock, its backup
        with open(pool, 'r+b') as f:
            f.seek(base)
            sb = bytearray(f.read(BLOCK))
            sb[SB_FREE_INODES:SB_FREE_INODES + 8] = struct.pack('<Q', ninodes + 3)
            sb[SB_CSUM_OFFSET:SB_CSUM_OFFSET + 4] = bytes(4)
            sb[SB_CSUM_OFFSET:SB_CSUM_OFFSET + 4] = struct.pack('<I', _crc32c(bytes(sb)))
            f.seek(base)
            f.write(sb)

    rc, err = try_mount(pool, mountpoint)
    assert rc > 0 and not mounted(mountpoint), err
    assert 'fsck.pinfs --repair recomputes them' in err, err
    res = _fsck(pool)
    assert res.returncode == 4, res.stdout + res.stderr
    assert '%d free inodes, but' % (ninodes + 3) in res.stdout, res.stdout
    res = _fsck(pool, '-y')
    assert res.returncode == 1, res.stdout + res.stderr
    assert 'free inodes, but' in res.stdout and ': fixed' in res.stdout, res.stdout
    assert 'backup superblock' in res.stdout, res.stdout
    res = _fsck(pool)
    assert res.returncode == 0, res.stdout + res.stderr
    with open(pool, 'rb') as f:
        f.seek((nblocks - 1) * BLOCK + SB_FREE_INODES)
        assert struct.unpack('<Q', f.read(8))[0] < ninodes
    _check_files(pool, scratch, mountpoint, files)


def test_options_and_exit_codes(scratch):
    pool = os.path.join(scratch, 'pool')
    mkfs(pool, '16M', extra=('--checksums',))
    res = _fsck(pool, '--checksums')
    assert res.returncode == 0, res.stdout + res.stderr
    res = _fsck(pool, '-n', '--checksums')
    assert res.returncode == 0, res.stdout + res.stderr
    assert _fsck(pool, '-n', '--repair').returncode == 16
    assert _fsck(pool, '--bogus').returncode == 16
    res = run([BIN['fsck.pinfs'], '--help'])
    assert res.returncode == 0 and '--checksums' in res.stdout
    plain = os.path.join(scratch, 'plain')
    mkfs(plain, '16M')
    res = _fsck(plain, '--checksums')
    assert res.returncode == 0 and 'keeps no block checksums' in res.stdout, res.stdout


@pytest.mark.parametrize('mode', [['-n'], [], ['--repair']])
def test_fsck_on_a_mounted_pool_names_the_daemon_and_the_mount_point(scratch, mountpoint,
                                                                      mode):
    """As e2fsck on a mounted file system: refused (exit 8, nothing written),
    and the message says which daemon (pid) serves the pool, where it is
    mounted and how to unmount it."""
    pool = os.path.join(scratch, 'pool')
    mkfs(pool)
    m = PinfsMount(pool, mountpoint, scratch)
    m.start()
    try:
        write_file(m.path('f'), b'x' * 5000)
        res = _fsck(pool, *mode)
        assert res.returncode == 8, res
        assert res.stdout == '', res
        note = '; -n does not check a pool in use' if mode == ['-n'] else ''
        assert res.stderr == (
            'fsck.pinfs: %s: mounted at %s by the pinfs daemon (pid %d)%s: unmount it first '
            '(fusermount3 -u %s), or look at it live (pinfsctl status %s, pinfsctl scrub %s)\n'
            % (pool, mountpoint, m.proc.pid, note, mountpoint, mountpoint, mountpoint)), res
    finally:
        assert not m.stop()

"""Bounce writeback of pinned blocks, Kara's 2019 plan (issue 17, item 4).

With -o pinned_writeback=bounce (checksummed pools only), fsync copies each
write-pinned block to a bounce buffer and writes that snapshot, checksummed,
to the file's shadow (an unnamed file); the live block stays dirty. So after
fsync every pinned block's data as fsync saw it is covered by a valid
checksum: scrub verifies the snapshots, and a crash image (a copy of the
pool taken after the holder stored again) holds them, verified by fsck.pinfs
--checksums -- a damaged snapshot is caught. With skip, the default, the
same scenario leaves the pinned data with no checksum at all.
"""

import os
import shutil
import subprocess

import pytest

from pinfs_mount import BIN, fsck, run
from test_writeback import PINFSCTL, flip, pin, stats, unpin

pytestmark = [pytest.mark.needs_daemon,
              pytest.mark.skipif(not PINFSCTL, reason='needs pinfsctl')]

BLOCK = 4096
NPIN = 16


def _scrub(path):
    res = subprocess.run([PINFSCTL, 'scrub', path], stdout=subprocess.PIPE,
                         universal_newlines=True, timeout=30)
    out = {}
    for line in res.stdout.splitlines():
        k, _, v = line.partition(':')
        if v.strip().isdigit():
            out[k.strip()] = int(v)
    return res.returncode, out


def _blocks_equal_to(image, block):
    """Offsets of the 4 KiB-aligned blocks of `image` that hold `block`."""
    found = []
    with open(image, 'rb') as f:
        off = 0
        while True:
            b = f.read(BLOCK)
            if not b:
                return found
            if b == block:
                found.append(off)
            off += BLOCK


def _pinned_then_stored_again(mnt):
    """A file of NPIN blocks, all write-pinned; the holder stores random
    snapshot data (as its DMA would, through the pool); fsync; then it
    stores again into every block. Returns (fd, lease, the snapshots)."""
    fd = os.open(mnt.path('f'), os.O_RDWR | os.O_CREAT, 0o644)
    os.pwrite(fd, os.urandom(NPIN * BLOCK), 0)
    os.fsync(fd)
    lid, segs = pin(fd, 0, NPIN * BLOCK, 1)
    pool = os.getxattr(mnt.path('f'), 'user.pinfs.pool').decode()
    snaps = []
    with open(pool, 'r+b') as p:
        for _, poff, ln in segs:
            for off in range(poff, poff + ln, BLOCK):
                data = os.urandom(BLOCK)
                p.seek(off)
                p.write(data)
                snaps.append(data)
        p.flush()
    assert len(snaps) == NPIN
    os.fsync(fd)
    for _, poff, ln in segs:
        for off in range(poff, poff + ln, BLOCK):
            flip(pool, off + 11)                # the holder's next store
    return fd, lid, snaps


def test_bounce_is_refused_on_a_pool_without_checksums(pool, mountpoint):
    res = run([BIN['pinfs'], '-o', 'pinned_writeback=bounce', pool, mountpoint])
    assert res.returncode == 1, res
    assert 'pinned_writeback=bounce' in res.stderr and 'mkfs.pinfs --checksums' in res.stderr, \
        res.stderr
    res = run([BIN['pinfs'], '-o', 'pinned_writeback=sometimes', pool, mountpoint])
    assert res.returncode == 1, res
    assert 'skip or bounce' in res.stderr, res.stderr


@pytest.mark.mkfs_options('--checksums')
@pytest.mark.mount_options('pinned_writeback=bounce')
def test_fsync_in_bounce_mode_leaves_checksummed_snapshots_that_scrub_verifies(mnt):
    fd, lid, snaps = _pinned_then_stored_again(mnt)
    try:
        rc, sc = _scrub(mnt.path('f'))
        assert rc == 0, sc
        assert sc['skipped_pinned'] == NPIN and sc['checked'] == NPIN and sc['bad'] == 0, sc
        f, _ = stats(fd)
        assert f['dirty'] == NPIN, f         # Kara's rule still holds for the live blocks
        # the same fsync again: one snapshot per block, refreshed
        os.fsync(fd)
        rc, sc = _scrub(mnt.path('f'))
        assert rc == 0 and sc['checked'] == NPIN, sc
    finally:
        unpin(fd, lid)
        os.close(fd)
    assert 'pinned_writeback=bounce' in mnt.output()


@pytest.mark.mkfs_options('--checksums')
@pytest.mark.mount_options('pinned_writeback=bounce')
def test_crash_image_holds_each_snapshot_under_a_checksum_fsck_verifies(mnt):
    fd, lid, snaps = _pinned_then_stored_again(mnt)
    try:
        image = os.path.join(mnt.workdir, 'crash-image')
        shutil.copyfile(mnt.pool, image)      # the pool as a crash now leaves it
    finally:
        unpin(fd, lid)
        os.close(fd)
    where = [_blocks_equal_to(image, s) for s in snaps]
    assert all(len(w) == 1 for w in where), [len(w) for w in where]
    res = fsck(image, '-n', '--checksums')
    assert res.returncode == 0, res
    # the checksum really covers the snapshot: damage one, fsck says so
    flip(image, where[3][0] + 99)
    res = fsck(image, '-n', '--checksums')
    assert res.returncode == 4, res
    assert 'checksum mismatch' in res.stdout + res.stderr, res
    os.unlink(image)


@pytest.mark.mkfs_options('--checksums')
@pytest.mark.mount_options('pinned_writeback=bounce')
def test_a_damaged_snapshot_is_reported_by_scrub(mnt):
    mnt.allow_stderr(r'checksum mismatch')
    fd, lid, snaps = _pinned_then_stored_again(mnt)
    try:
        image = os.path.join(mnt.workdir, 'peek')
        shutil.copyfile(mnt.pool, image)
        where = _blocks_equal_to(image, snaps[5])
        os.unlink(image)
        assert len(where) == 1, where
        flip(mnt.pool, where[0] + 4000)
        rc, sc = _scrub(mnt.path('f'))
        assert rc == 1 and sc['bad'] == 1 and sc['checked'] == NPIN - 1, sc
    finally:
        unpin(fd, lid)
        os.close(fd)


@pytest.mark.mkfs_options('--checksums')
@pytest.mark.mount_options('pinned_writeback=skip')
def test_skip_mode_leaves_the_pinned_data_without_any_checksum(mnt):
    fd, lid, snaps = _pinned_then_stored_again(mnt)
    try:
        rc, sc = _scrub(mnt.path('f'))
        assert rc == 0 and sc['skipped_pinned'] == NPIN and sc['checked'] == 0, sc
        image = os.path.join(mnt.workdir, 'crash-image')
        shutil.copyfile(mnt.pool, image)
    finally:
        unpin(fd, lid)
        os.close(fd)
    assert all(_blocks_equal_to(image, s) == [] for s in snaps)  # no copy anywhere
    assert fsck(image, '-n', '--checksums').returncode == 0
    os.unlink(image)

"""The unsafe demonstration switches show what each safety rule prevents (issue 17, item 4).

  -o unsafe=no_quarantine      freed pinned blocks (and blocks a lease ended
                               on) go straight back to the free list and stay
                               in the pool file: an io_uring fixed buffer kept
                               after the unpin stores into another file
  -o unsafe=mark_pinned_clean  fsync marks pinned blocks clean and checksums
                               them: a store through the pin afterwards leaves
                               a checksum that fails (scrub, and fsck
                               --checksums on a crash image of the pool)

They are refused, exit 1 with a message naming mkfs.pinfs --experimental,
on a pool not made for experiments; with them the failure shows, and the
same scenario on the same kind of pool without them is safe. The daemon
says so loudly in its log.
"""

import os
import shutil
import struct
import subprocess

import pytest

from pinfs_mount import BIN, fsck, mkfs, mounted, run, wait_until
from pinfs_util import MiB, fill_until_enospc, read_file, write_file
from test_holders import raw  # noqa: F401 (fixture)
from test_kernel_pins import _released
from test_stale_mapping import staleholder  # noqa: F401 (fixture)
from test_writeback import PINFSCTL, flip, pin, unpin

pytestmark = [pytest.mark.needs_daemon]

BLOCK = 4096
SB_FEAT_COMPAT = 16           # struct pm_super: u64 feat_compat
FEAT_COMPAT_EXPERIMENTAL = 0x2
SIZE = 1 * MiB                # the stale holder's pinned range
OLD, FILL, MARK = 0x11, 0x5A, 0xCD
WARN = r'WARNING: UNSAFE -o unsafe='


def _feat_compat(pool):
    with open(pool, 'rb') as f:
        f.seek(SB_FEAT_COMPAT)
        return struct.unpack('<Q', f.read(8))[0]


# --------------------------------------------------------------------------
# refused unless the pool is made for experiments

@pytest.mark.parametrize('switch', ['no_quarantine', 'mark_pinned_clean',
                                    'no_quarantine+mark_pinned_clean'])
def test_unsafe_switch_is_refused_on_a_pool_not_made_for_experiments(pool, mountpoint, switch):
    res = run([BIN['pinfs'], '-o', 'unsafe=' + switch, pool, mountpoint])
    try:
        assert res.returncode == 1, res
        assert 'mkfs.pinfs --experimental' in res.stderr, res.stderr
        assert 'refused' in res.stderr, res.stderr
        assert not mounted(mountpoint)
    finally:
        if mounted(mountpoint):
            run(['fusermount3', '-u', mountpoint])
    assert fsck(pool, '-n').returncode == 0


def test_unknown_unsafe_switch_is_a_usage_error(scratch, mountpoint):
    pool = os.path.join(scratch, 'pool')
    mkfs(pool, extra=['--experimental'])
    res = run([BIN['pinfs'], '-o', 'unsafe=no_rules', pool, mountpoint])
    assert res.returncode == 1, res
    assert "-o unsafe=no_rules: unknown switch" in res.stderr, res.stderr
    assert not mounted(mountpoint)


def test_mkfs_experimental_marks_the_pool_and_fsck_accepts_it(scratch):
    pool = os.path.join(scratch, 'pool')
    mkfs(pool, '32M', extra=['--experimental', '--checksums'])
    assert _feat_compat(pool) & FEAT_COMPAT_EXPERIMENTAL
    for args in (('-n',), ('-n', '--checksums'), ('-y',)):
        res = fsck(pool, *args)
        assert res.returncode == 0, res
    plain = os.path.join(scratch, 'plain')
    mkfs(plain, '32M')
    assert not _feat_compat(plain) & FEAT_COMPAT_EXPERIMENTAL


# --------------------------------------------------------------------------
# no_quarantine: a stale io_uring fixed-buffer store lands in another file

def _stale_ring_store(mnt, raw):  # noqa: F811
    """A holder pins all of P (1 MiB) and registers it with io_uring; it
    unpins but keeps the registration; P is deleted; another file fills the
    pool with FILL; the holder DMAs MARK through the stale registration.
    Returns (bytes of the other file that are not FILL, of them MARK)."""
    path = mnt.path('P')
    write_file(path, bytes([OLD]) * SIZE)
    h = raw(path, 'w', SIZE, mode='ring')
    assert h.cmd('ring') == 'ok'
    assert h.cmd('unpin') == 'ok'                # munmap + UNPIN; the ring keeps the pages
    before = _released(mnt)
    os.unlink(path)
    assert h.cmd('close') == 'ok'                # P's last open: its blocks are freed
    assert wait_until(lambda: _released(mnt) >= before + SIZE // BLOCK, 5)
    other = mnt.path('other')
    written = fill_until_enospc(other, FILL)
    assert written > 8 * MiB, written
    assert h.cmd('dma %d' % MARK) == 'stored %d' % SIZE
    got = read_file(other)
    assert len(got) == written
    return written - got.count(bytes([FILL])), got.count(bytes([MARK]))


@pytest.mark.pool_size('32M')
@pytest.mark.mkfs_options('--experimental')
@pytest.mark.mount_options('unsafe=no_quarantine')
def test_no_quarantine_lets_a_stale_ring_store_land_in_another_file(mnt, raw):  # noqa: F811
    # the stale store may hit the other file's data (MARK bytes read back)
    # or its block-map nodes (it reads other blocks; fsck sees the damage)
    mnt.allow_stderr(r'corrupt|checksum|outside|block map|EUCLEAN|EIO')
    changed, marked = _stale_ring_store(mnt, raw)
    print('no_quarantine: %d bytes of the other file changed, %d of them MARK; log:\n%s'
          % (changed, marked, mnt.output()))
    assert changed > 0, (changed, marked)
    assert 'WARNING: UNSAFE -o unsafe=no_quarantine is on' in mnt.output()
    mnt.unmount()
    res = fsck(mnt.pool, '-n')
    print(res.stdout, res.stderr)
    assert res.returncode in (0, 4), res
    # wrecked on purpose: formatted again, so that the fixture's fsck
    # checks a pool and not the demonstration
    mkfs(mnt.pool, force=True, extra=['--experimental'])


@pytest.mark.pool_size('32M')
@pytest.mark.mkfs_options('--experimental')
def test_same_stale_ring_store_without_the_switch_changes_no_other_file(mnt, raw):  # noqa: F811
    changed, marked = _stale_ring_store(mnt, raw)
    assert changed == 0 and marked == 0, (changed, marked)
    assert WARN not in mnt.output()


# --------------------------------------------------------------------------
# mark_pinned_clean: a store through the pin after fsync fails its checksum

def _store_after_fsync(mnt):
    """16 blocks written and fsynced; block 5 write-pinned; the holder
    stores into it; fsync; the holder stores again. Returns (scrub's exit
    and output, fsck --checksums of a crash image taken now, the pin)."""
    fd = os.open(mnt.path('f'), os.O_RDWR | os.O_CREAT, 0o644)
    os.pwrite(fd, os.urandom(16 * BLOCK), 0)
    os.fsync(fd)
    lid, segs = pin(fd, 5 * BLOCK, BLOCK, 1)
    pool = os.getxattr(mnt.path('f'), 'user.pinfs.pool').decode()
    flip(pool, segs[0][1] + 7)                  # the holder stores ...
    os.fsync(fd)                                # ... fsync ...
    flip(pool, segs[0][1] + 100)                # ... and stores again
    image = os.path.join(mnt.workdir, 'crash-image')
    shutil.copyfile(pool, image)                # the pool as a crash now leaves it
    img = fsck(image, '-n', '--checksums')
    os.unlink(image)
    scrub = subprocess.run([PINFSCTL, 'scrub', mnt.path('f')], stdout=subprocess.PIPE,
                           universal_newlines=True, timeout=30)
    return fd, lid, scrub, img


def _scrub_field(out, name):
    for line in out.splitlines():
        if line.strip().startswith(name + ':'):
            return int(line.split(':')[1].split()[0])
    raise AssertionError('no %s in %r' % (name, out))


@pytest.mark.skipif(not PINFSCTL, reason='needs pinfsctl')
@pytest.mark.mkfs_options('--experimental', '--checksums')
@pytest.mark.mount_options('unsafe=mark_pinned_clean')
def test_mark_pinned_clean_leaves_a_checksum_that_a_store_through_the_pin_breaks(mnt):
    mnt.allow_stderr(r'checksum mismatch')
    fd, lid, scrub, img = _store_after_fsync(mnt)
    try:
        assert scrub.returncode == 1, scrub.stdout
        assert _scrub_field(scrub.stdout, 'bad') == 1, scrub.stdout
        assert img.returncode == 4, img
        assert 'checksum' in img.stdout + img.stderr, img
    finally:
        unpin(fd, lid)
        os.close(fd)
    assert 'WARNING: UNSAFE -o unsafe=mark_pinned_clean is on' in mnt.output()
    mnt.unmount()
    # the pool itself has the stale checksum too
    assert fsck(mnt.pool, '-n', '--checksums').returncode == 4


@pytest.mark.skipif(not PINFSCTL, reason='needs pinfsctl')
@pytest.mark.mkfs_options('--experimental', '--checksums')
def test_same_store_through_the_pin_without_the_switch_leaves_no_bad_checksum(mnt):
    fd, lid, scrub, img = _store_after_fsync(mnt)
    try:
        assert scrub.returncode == 0, scrub.stdout
        assert _scrub_field(scrub.stdout, 'bad') == 0, scrub.stdout
        assert _scrub_field(scrub.stdout, 'skipped_pinned') == 1, scrub.stdout
        assert img.returncode == 0, img
    finally:
        unpin(fd, lid)
        os.close(fd)
    assert WARN not in mnt.output()

"""A mapping of pinned blocks never outlives their quarantine.

The daemon keeps a lease's blocks out of the free list for as long as the
process that pinned them lives (quarantine). Two ways a mapping could outlive
that process's lease, each checked the same way: the lease ends, the file's
blocks are freed, another file fills the pool, and then the old mapping is
stored through -- no other file may change, and fsck stays clean (the mnt
fixture runs it after unmount).

  fork      the holder forks and exits; its child would keep the
            MAP_SHARED segments. The client library maps with MADV_DONTFORK,
            so the child has no mapping and its store is SIGSEGV.
  on close  a PINFS_PIN_ON_CLOSE lease ends at close() while the mapping
            stays; its blocks stay quarantined until the holder exits.

The holder is tests/mount/staleholder.c, linked here against the build's
client library (so it is the library that is tested) and liburing (its
"ring" mode, for test_kernel_pins.py).
"""

import ctypes
import os
import signal
import subprocess
import shutil

import pytest

from pinfs_mount import BUILD, compile_helper, wait_until
from pinfs_util import KiB, MiB, fill_until_enospc, read_file, write_file
from test_pins import list_leases, mount_stats

pytestmark = [pytest.mark.needs_daemon]

PR_SET_CHILD_SUBREAPER = 36
SIZE = 256 * KiB
OLD, FILL, STALE = 0x11, 0x5A, 0xCD


@pytest.fixture(scope='module')
def staleholder():
    lib = os.path.join(BUILD, 'libpinfs_client.a')
    if not os.path.exists(lib):
        pytest.skip('no %s' % lib)
    exe = compile_helper('staleholder', [lib, '-luring'], sanitize=True)
    yield exe
    shutil.rmtree(os.path.dirname(exe), ignore_errors=True)


def _subreaper(on):
    """Makes this process the one the holder's orphaned child is given to, so
    that its exit status can be collected."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), 'prctl(PR_SET_CHILD_SUBREAPER)')


def _fill_pool(path):
    """Writes FILL bytes into a new file until ENOSPC; returns how many."""
    written = fill_until_enospc(path, FILL)
    assert written > 4 * MiB, 'only %d bytes fit in the pool' % written
    return written


def _maps_pool(pid, pool):
    """Does process @pid map the pool file?"""
    st = os.stat(pool)
    inode = str(st.st_ino)
    with open('/proc/%d/maps' % pid) as f:
        return any(line.split()[4:5] == [inode] and pool in line for line in f)


def _check_others(path, other, written):
    assert read_file(path) == b'', 'the truncated file shows data'
    got = read_file(other)
    assert len(got) == written
    assert got == bytes([FILL]) * written, (
        'the other file shows %d bytes it never wrote' % sum(b != FILL for b in got))


@pytest.mark.pool_size('32M')
def test_child_of_a_holder_has_no_mapping_and_its_store_faults(mnt, staleholder):
    path, other = mnt.path('pinned'), mnt.path('other')
    write_file(path, bytes([OLD]) * SIZE)
    _subreaper(True)
    # under ASan the child's fault must still be a plain SIGSEGV, not a report
    env = dict(os.environ, ASAN_OPTIONS=os.environ.get('ASAN_OPTIONS', '') + ':handle_segv=0')
    p = subprocess.Popen([staleholder, 'fork', path, str(SIZE)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    child = None
    try:
        # the holder's "lease=" and its child's "child PID" come in either
        # order; stderr is not read here: the child holds it open
        lines = [p.stdout.readline(), p.stdout.readline()]
        line = next((l for l in lines if l.startswith('child ')), None)
        assert line and any(l.startswith('lease=') for l in lines), lines
        child = int(line.split()[1])
        assert p.wait(timeout=10) == 0           # the holder has exited
        assert wait_until(lambda: list_leases(mnt.dir) == [], 2), (
            'the holder\'s lease did not end with it: %r' % list_leases(mnt.dir))
        inherited = _maps_pool(child, mnt.pool)
        os.truncate(path, 0)                     # no lease: the blocks are free
        written = _fill_pool(other)
        p.stdin.write('%d\n' % STALE)
        p.stdin.flush()
        _, status = os.waitpid(child, 0)         # ours: we are its subreaper
        child = None
        out = p.stdout.read()
        _check_others(path, other, written)
        assert not inherited, 'the child inherited the pool mapping'
        assert 'stored' not in out, 'the child stored through an inherited mapping'
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSEGV, (
            'the child\'s store did not fault: wait status %#x' % status)
    finally:
        if child:
            try:
                os.kill(child, signal.SIGKILL)
                os.waitpid(child, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        if p.poll() is None:
            p.kill()
            p.wait()
        _subreaper(False)


@pytest.mark.pool_size('32M')
def test_on_close_lease_keeps_its_blocks_quarantined_until_the_holder_exits(mnt, staleholder):
    path, other = mnt.path('pinned'), mnt.path('other')
    write_file(path, bytes([OLD]) * SIZE)
    p = subprocess.Popen([staleholder, 'close', path, str(SIZE)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert line.startswith('closed lease='), (line, p.stderr.read())
        lease = int(line.split('=')[1])
        # the lease has ended (RELEASE is asynchronous): it no longer holds the file
        assert wait_until(lambda: all(l['state'] != 'active' for l in list_leases(mnt.dir)),
                          2), list_leases(mnt.dir)
        os.truncate(path, 0)                     # no policy: the range is no one's
        quarantined = mount_stats(mnt.dir)['quarantined_blocks']
        written = _fill_pool(other)
        p.stdin.write('%d\n' % STALE)
        p.stdin.flush()
        assert p.stdout.readline() == 'stored\n'
        _check_others(path, other, written)
        # ... because the ended lease still pins its blocks, shown as revoked
        assert quarantined == SIZE // 4096
        assert [(l['id'], l['state']) for l in list_leases(mnt.dir)] == [(lease, 'revoked')]
        p.stdin.write('0\n')
        p.stdin.flush()
        assert p.wait(timeout=10) == 0
        # the holder is gone with its mapping: the blocks come back
        assert wait_until(lambda: list_leases(mnt.dir) == [], 2), list_leases(mnt.dir)
        assert mount_stats(mnt.dir)['quarantined_blocks'] == 0
        _check_others(path, other, written)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()

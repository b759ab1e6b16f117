"""Holders, their mappings, limits and the holder record, on a live mount.

  mappings   a lease can end while a mapping of its blocks lives: a client
             that maps the pool file itself may keep it after UNPIN, after
             an on-close lease ended, after a revocation or an unlink, or
             fork without MADV_DONTFORK and leave a child with it. The blocks
             stay pinned (quarantined when freed) until /proc/PID/maps shows
             no process mapping them. Each case: the lease ends, its blocks
             are freed, another file fills the pool, then the stale mapping is
             stored through -- no other file may change, fsck stays clean
             (the mnt fixture runs it after unmount).
  limits     checked before any hole is filled; per process and per user.
  record     a process leaves the holder record once it holds no lease and
             maps nothing of the pool (about a second later, or at once when
             a new holder needs its place).
  users      LIST of the whole mount and mount-wide STATS show a user their
             own leases; root sees all.

The raw holder is tests/mount/staleholder.c in its "raw" mode (the client
library's mapping with MADV_DOFORK put back, SIGBUS/SIGIO blocked).
"""

import errno
import os
import queue
import signal
import stat
import subprocess
import threading
import time

import pytest

from pinfs_mount import wait_until
from pinfs_util import (KiB, MiB, Holder, as_user, factory, fill_until_enospc, read_file,
                        write_file)
from test_pins import (BLOCK, free_blocks, list_leases, mount_stats, _pool_holders,
                       PINHOLDERS_MAX)
from test_stale_mapping import staleholder, _subreaper
from test_pin_access import ALICE, BOB, POOL_GID, _alice_file, _open_pool_dir, _shared_dir

pytestmark = [pytest.mark.needs_daemon]

SIZE = 256 * KiB
OLD, FILL, STALE = 0x11, 0x5A, 0xCD
needs_root = pytest.mark.skipif(os.getuid() != 0, reason='needs root to switch users')


class Raw:
    """One staleholder in raw mode (pins [0, size) of `path` and maps it with
    MADV_DOFORK) or, with mode='ring', in ring mode (the library's mapping,
    to be registered with io_uring); commands answer one line each, within
    `timeout` seconds. close() kills by pid every process it started."""

    def __init__(self, exe, path, flags='w', size=SIZE, mode='raw'):
        self.p = subprocess.Popen([exe, mode, path, str(size), flags], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.pid = self.p.pid
        self.child = None
        self.strays = []     # grandchildren (spawn2), reparented to us or init
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        line = self._line(10)
        if not line.startswith('lease='):
            if self.p.poll() is None:
                self.p.kill()
            self.p.wait()
            err = self.p.stderr.read()
            self.close()
            raise AssertionError('staleholder %s: %r, stderr %r' % (mode, line, err))
        self.lease = int(line.split('=')[1])

    def _read(self):
        for line in self.p.stdout:
            self.lines.put(line)
        self.lines.put('')   # end of file: every writer is gone

    def _line(self, timeout):
        try:
            return self.lines.get(timeout=timeout).rstrip('\n')
        except queue.Empty:
            return '<no answer within %s s>' % timeout

    def cmd(self, line, timeout=10):
        """The answer to `line`; '' once the holder (and its child) exited."""
        self.p.stdin.write(line + '\n')
        self.p.stdin.flush()
        return self._line(timeout)

    def fork(self):
        """The holder forks and exits; the child (with the mapping) goes on."""
        ans = self.cmd('fork')
        assert ans.startswith('child '), ans
        self.child = int(ans.split()[1])
        assert self.p.wait(timeout=10) == 0
        return self.child

    def spawn2(self, byte):
        """A grandchild of the holder's that its child left behind: it keeps
        the mapping and stores `byte` over it every millisecond. Its pid."""
        ans = self.cmd('spawn2 %d' % byte)
        assert ans.startswith('grandchild '), ans
        self.strays.append(int(ans.split()[1]))
        return self.strays[-1]

    def close(self):
        live = self.pid if self.p.poll() is None else None
        for pid in self.strays + [self.child, live]:
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for pid in self.strays + [self.child]:
            if pid:
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
        self.strays, self.child = [], None
        if self.p.poll() is None:
            self.p.wait()
        for f in (self.p.stdin, self.p.stderr):   # (stdout is the reader thread's)
            try:
                f.close()
            except OSError:
                pass


def _kill_adopted(exe):
    """Kills by pid and reaps every child of this process that runs `exe`:
    holders' orphans adopted here (we are their subreaper) whose pid a
    failed test never learnt."""
    for task in os.listdir('/proc/self/task'):
        try:
            with open('/proc/self/task/%s/children' % task) as f:
                pids = [int(p) for p in f.read().split()]
        except OSError:
            continue
        for pid in pids:
            try:
                if os.readlink('/proc/%d/exe' % pid) != exe:
                    continue
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (OSError, ChildProcessError):
                pass


@pytest.fixture
def raw(mnt, staleholder):
    """Maker of Raw holders: raw(path, flags='w', size=SIZE, mode='raw')."""
    _subreaper(True)       # orphaned children are ours to reap
    try:
        with factory(lambda *a, **kw: Raw(staleholder, *a, **kw), Raw.close) as make:
            yield make
    finally:
        _kill_adopted(os.path.realpath(staleholder))
        _subreaper(False)


def _setup(mnt):
    path, other = mnt.path('pinned'), mnt.path('other')
    write_file(path, bytes([OLD]) * SIZE)
    return path, other


def _fill_store_check(mnt, r, path, other):
    """Fills the pool with another file, stores through the stale mapping;
    nothing but the quarantined blocks may take the store."""
    written = fill_until_enospc(other, FILL)
    assert written > 4 * MiB, 'only %d bytes fit in the pool' % written
    assert r.cmd('store %d' % STALE) == 'stored'
    got = read_file(other)
    assert len(got) == written
    assert got == bytes([FILL]) * written, (
        'the other file shows %d bytes it never wrote' % sum(b != FILL for b in got))
    assert STALE not in read_file(path), 'the stale mapping wrote into the file'
    return written


def _quarantined(mnt):
    return mount_stats(mnt.dir)['quarantined_blocks']


# --------------------------------------------------------------------------
# a mapping never outlives its quarantine

@pytest.mark.pool_size('32M')
def test_raw_holder_forks_and_exits_its_childs_mapping_keeps_the_blocks(mnt, raw):
    path, other = _setup(mnt)
    r = raw(path, 'w')
    child = r.fork()                             # the holder is gone, the child maps
    # the lease outlives its holder while the child maps its blocks ...
    assert wait_until(lambda: [(l['id'], l['state'], l['pid']) for l in list_leases(mnt.dir)]
                      == [(r.lease, 'revoked', 0)], 3), list_leases(mnt.dir)
    # ... and the child is in the pool's holder record
    assert wait_until(lambda: child in _pool_holders(mnt.pool), 3), _pool_holders(mnt.pool)
    os.truncate(path, 0)                         # no lease holds the range: freed ...
    assert _quarantined(mnt) == SIZE // BLOCK    # ... into quarantine
    written = _fill_store_check(mnt, r, path, other)
    # the child exits with its mapping: the blocks come back
    assert r.cmd('exit') == ''
    os.waitpid(child, 0)
    r.child = None
    assert wait_until(lambda: list_leases(mnt.dir) == [], 3), list_leases(mnt.dir)
    assert _quarantined(mnt) == 0
    assert wait_until(lambda: child not in _pool_holders(mnt.pool), 3)
    assert read_file(other) == bytes([FILL]) * written


@pytest.mark.pool_size('32M')
def test_on_close_lease_ended_while_a_childs_mapping_stays(mnt, raw):
    path, other = _setup(mnt)
    r = raw(path, 'wc')
    assert r.cmd('close') == 'ok'                # the on-close lease ends ...
    assert wait_until(lambda: [l['state'] for l in list_leases(mnt.dir)] == ['revoked'], 2)
    child = r.fork()                             # ... and its holder, but not the mapping
    os.truncate(path, 0)
    assert _quarantined(mnt) == SIZE // BLOCK
    _fill_store_check(mnt, r, path, other)
    assert [(l['id'], l['pid']) for l in list_leases(mnt.dir)] == [(r.lease, 0)]
    assert r.cmd('unmap') == 'ok'                # unmapped: the sweep ends the lease
    assert wait_until(lambda: list_leases(mnt.dir) == [], 3), list_leases(mnt.dir)
    assert _quarantined(mnt) == 0
    assert wait_until(lambda: child not in _pool_holders(mnt.pool), 3)


@pytest.mark.pool_size('32M')
@pytest.mark.mount_options('policy=revoke')
def test_revoked_lease_acknowledged_with_the_mapping_kept_stays_quarantined(mnt, raw):
    path, other = _setup(mnt)
    r = raw(path, 'wr')
    os.truncate(path, 0)                         # revoked (SIGBUS, blocked) and freed
    assert [l['state'] for l in list_leases(mnt.dir)] == ['revoked']
    assert _quarantined(mnt) == SIZE // BLOCK
    assert r.cmd('unpin') == 'ok'                # "acknowledged", yet still mapped
    assert _quarantined(mnt) == SIZE // BLOCK
    assert [l['pid'] for l in list_leases(mnt.dir)] == [r.pid]   # still its, counted
    assert r.cmd('unpin') == 'err %d' % errno.ENOENT
    _fill_store_check(mnt, r, path, other)
    assert r.cmd('unmap') == 'ok'
    assert wait_until(lambda: list_leases(mnt.dir) == [], 3), list_leases(mnt.dir)
    assert _quarantined(mnt) == 0
    # it holds nothing and maps nothing: out of the record
    assert wait_until(lambda: r.pid not in _pool_holders(mnt.pool), 3)


@pytest.mark.pool_size('32M')
def test_unlinked_file_unpinned_while_mapped_keeps_its_blocks(mnt, raw):
    path, other = _setup(mnt)
    r = raw(path, 'w')
    free0 = free_blocks(mnt)
    os.unlink(path)
    assert r.cmd('unpin') == 'ok'                # the file is gone with its last open ...
    assert r.cmd('close') == 'ok'
    # (RELEASE is asynchronous) its blocks go to quarantine, not the free list
    assert wait_until(lambda: _quarantined(mnt) == SIZE // BLOCK, 2), _quarantined(mnt)
    assert free_blocks(mnt) - free0 < SIZE // BLOCK, 'blocks of a mapped file were freed'
    written = fill_until_enospc(other, FILL)
    assert r.cmd('store %d' % STALE) == 'stored'
    assert read_file(other) == bytes([FILL]) * written
    assert r.cmd('unmap') == 'ok'                # ... its blocks come back at the unmap
    assert wait_until(lambda: list_leases(mnt.dir) == [], 3), list_leases(mnt.dir)
    os.unlink(other)
    assert wait_until(lambda: free_blocks(mnt) >= free0 + SIZE // BLOCK, 3)


@pytest.mark.pool_size('32M')
def test_holder_unmaps_and_unpins_while_its_child_still_maps(mnt, raw):
    path, other = _setup(mnt)
    r = raw(path, 'w')
    ans = r.cmd('spawn')                         # a child inherits the mapping
    assert ans.startswith('child '), ans
    child = int(ans.split()[1])
    try:
        assert r.cmd('unmap') == 'ok'
        assert r.cmd('unpin') == 'ok'            # the holder is clean; its child is not
        assert [(l['id'], l['state']) for l in list_leases(mnt.dir)] == [(r.lease, 'revoked')]
        os.truncate(path, 0)
        assert _quarantined(mnt) == SIZE // BLOCK
        assert wait_until(lambda: child in _pool_holders(mnt.pool), 3), _pool_holders(mnt.pool)
    finally:
        os.kill(child, signal.SIGKILL)          # (a zombie of the holder's: maps nothing)
    assert wait_until(lambda: list_leases(mnt.dir) == [], 3), list_leases(mnt.dir)
    assert _quarantined(mnt) == 0
    assert wait_until(lambda: r.pid not in _pool_holders(mnt.pool), 3), (
        open('/proc/%d/maps' % r.pid).read())


# --------------------------------------------------------------------------
# limits before any hole is filled

def _hole(mnt, name, size):
    path = mnt.path(name)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, size)
    os.close(fd)
    return path


@pytest.mark.mount_options('max_pinned=1M', 'max_pins=2')
def test_a_refused_pin_allocates_nothing(mnt, holders):
    path = _hole(mnt, 'hole', 64 * MiB)
    h = holders(path)
    free0 = free_blocks(mnt)
    with pytest.raises(OSError) as e:             # over max_pinned
        h.pin(0, 32 * MiB, 'w')
    assert e.value.errno == errno.ENOMEM
    assert free_blocks(mnt) == free0, 'a refused pin filled holes'
    assert os.stat(path).st_blocks == 0
    h.pin(0, 4096, 'w')
    h.pin(8192, 4096, 'w')
    free1, blocks1 = free_blocks(mnt), os.stat(path).st_blocks
    with pytest.raises(OSError) as e:             # over max_pins
        h.pin(16 * MiB, 4096, 'w')
    assert e.value.errno == errno.ENOMEM
    assert free_blocks(mnt) == free1
    assert os.stat(path).st_blocks == blocks1


@pytest.mark.watchdog(120)
def test_no_holder_slot_refuses_before_filling(mnt, holders):
    path = _hole(mnt, 'hole', 16 * MiB)
    small = _hole(mnt, 'small', 1 * MiB)
    write_file(small, b'x' * MiB)
    hs = []
    for i in range(PINHOLDERS_MAX):
        h = holders(small)
        h.pin((i % 256) * 4096, 4096, 'w')
        hs.append(h)
    late = holders(path)
    free0 = free_blocks(mnt)
    with pytest.raises(OSError) as e:
        late.pin(0, 8 * MiB, 'w')
    assert e.value.errno == errno.EUSERS
    assert free_blocks(mnt) == free0
    assert os.stat(path).st_blocks == 0


@pytest.mark.mount_options('max_pins=2')
def test_ended_on_close_leases_count_against_max_pins(mnt, holders):
    path = mnt.path('f')
    write_file(path, b'\0' * MiB)
    h = holders(path)
    h.pin(0, 4096, 'wc')
    h.pin(4096, 4096, 'wc')
    h.ok('reopen %s' % _hole(mnt, 'other', 4096))   # both end at close ...
    assert wait_until(lambda: [l['state'] for l in list_leases(mnt.dir)] == ['revoked'] * 2, 2)
    h.ok('reopen %s' % path)
    with pytest.raises(OSError) as e:                # ... and still count
        h.pin(8192, 4096, 'w')
    assert e.value.errno == errno.ENOMEM


def _user_holder(pinhold_exe, scratch, who):
    """A pinhold that runs as `who` (setpriv, same pid)."""
    wrapper = os.path.join(scratch, 'pinhold-%d' % who['uid'])
    if not os.path.exists(wrapper):
        with open(wrapper, 'w') as f:
            f.write('#!/bin/sh\nexec setpriv --reuid=%d --regid=%d --groups=%s %s "$@"\n'
                    % (who['uid'], who['gid'], ','.join(map(str, who['groups'])),
                       pinhold_exe))
        os.chmod(wrapper, 0o755)
    return wrapper


def _file_of(mnt, who, name, size=4 * MiB):
    path = os.path.join(_shared_dir(mnt), name)

    def make():
        with open(path, 'wb') as f:
            f.write(b'\0' * size)
    as_user(make, **who)
    return path


@needs_root
@pytest.mark.mount_options('allow_other', 'pin_group=%d' % POOL_GID, 'max_pinned_per_user=1M',
                           'max_pins_per_user=3')
def test_limits_per_user_as_well_as_per_process(mnt, holders, pinhold_exe, tmp_path):
    _open_pool_dir(mnt)
    a_file, b_file = _file_of(mnt, ALICE, 'a'), _file_of(mnt, BOB, 'b')
    alice = [Holder(_user_holder(pinhold_exe, str(tmp_path), ALICE), a_file) for _ in range(3)]
    bob = Holder(_user_holder(pinhold_exe, str(tmp_path), BOB), b_file)
    try:
        alice[0].pin(0, 768 * KiB, 'w')
        free0 = free_blocks(mnt)
        with pytest.raises(OSError) as e:            # another process, the same user
            alice[1].pin(1 * MiB, 512 * KiB, 'w')
        assert e.value.errno == errno.ENOMEM
        assert free_blocks(mnt) == free0
        bob.pin(0, 768 * KiB, 'w')                   # another user has their own
        alice[1].pin(1 * MiB, 4096, 'w')
        alice[2].pin(2 * MiB, 4096, 'w')
        with pytest.raises(OSError) as e:            # max_pins_per_user
            alice[2].pin(3 * MiB, 4096, 'w')
        assert e.value.errno == errno.ENOMEM
        alice[0].exit()                              # ended leases leave the count
        assert wait_until(lambda: len([l for l in list_leases(mnt.dir)
                                       if l['pid'] == alice[0].pid]) == 0, 3)
        alice[2].pin(1 * MiB + 8192, 512 * KiB, 'w')
    finally:
        for h in alice + [bob]:
            h.kill()


@needs_root
@pytest.mark.mount_options('allow_other', 'pin_group=%d' % POOL_GID)
def test_list_and_stats_of_the_mount_show_a_user_their_own_leases(mnt, pinhold_exe, tmp_path):
    _open_pool_dir(mnt)
    a_file, b_file = _file_of(mnt, ALICE, 'a'), _file_of(mnt, BOB, 'b')
    alice = Holder(_user_holder(pinhold_exe, str(tmp_path), ALICE), a_file)
    bob = Holder(_user_holder(pinhold_exe, str(tmp_path), BOB), b_file)
    try:
        la = {alice.pin(0, 64 * KiB, 'w'), alice.pin(1 * MiB, 64 * KiB, 'w')}
        lb = {bob.pin(0, 128 * KiB, 'w')}
        ids = lambda leases: {l['id'] for l in leases}
        assert ids(list_leases(mnt.dir)) == la | lb                      # root: all
        assert ids(as_user(lambda: list_leases(a_file), **ALICE)) == la
        assert ids(as_user(lambda: list_leases(b_file), **BOB)) == lb
        # a file's own list is whoever may open it
        assert ids(as_user(lambda: list_leases(b_file, all_=False), **ALICE)) == lb
        st = mount_stats(mnt.dir)
        assert (st['pins'], st['pinned_blocks']) == (3, 64)
        st = as_user(lambda: mount_stats(a_file), **ALICE)
        assert (st['pins'], st['pinned_blocks']) == (2, 32)
        st = as_user(lambda: mount_stats(b_file), **BOB)
        assert (st['pins'], st['pinned_blocks']) == (1, 32)
    finally:
        alice.kill()
        bob.kill()


# --------------------------------------------------------------------------
# the holder record

def test_a_process_that_unpinned_leaves_the_record_and_blocks_no_remount(mnt, holders):
    path = mnt.path('f')
    write_file(path, b'\0' * MiB)
    h = holders(path)
    lease = h.pin(0, 64 * KiB, 'w')
    h.ok('map %d' % lease)
    assert h.pid in _pool_holders(mnt.pool)
    h.unpin(lease)                      # pinhold unmaps, then unpins
    assert wait_until(lambda: h.pid not in _pool_holders(mnt.pool), 3), _pool_holders(mnt.pool)
    # the daemon dies without cleaning up; the live former holder blocks nothing
    mnt.kill_daemon()
    mnt.start()
    assert read_file(path) == b'\0' * MiB
    h.ok('reopen %s' % path)
    h.pin(0, 4096, 'w')


def test_a_process_that_just_unpinned_does_not_block_the_next_mount(mnt, holders):
    path = mnt.path('f')
    write_file(path, b'\0' * MiB)
    h = holders(path)
    h.unpin(h.pin(0, 64 * KiB, 'w'))
    h.ok('reopen /dev/null')            # (no file of the mount open)
    mnt.remount()                       # at once: not a second later
    assert h.pid not in _pool_holders(mnt.pool)


@pytest.mark.watchdog(120)
def test_a_thousand_processes_that_pinned_once_do_not_stop_a_new_one(mnt, staleholder, holders):
    path = mnt.path('f')
    write_file(path, b'\0' * MiB)
    t0 = time.monotonic()
    p = subprocess.Popen([staleholder, 'many', path, '1000'], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert line == 'ready ok=1000 errno=0\n', (line, p.stderr.read() if not line else '')
        h = holders(path)
        h.pin(0, 4096, 'w')            # at once: idle processes give way
        # and within a second or so they are out of the record anyway
        assert wait_until(lambda: _pool_holders(mnt.pool) == [h.pid], 5), _pool_holders(mnt.pool)
        p.stdin.write('\n')
        p.stdin.flush()
        assert p.wait(timeout=60) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert time.monotonic() - t0 < 60

"""Pins, leases, direct mapping and the four truncate policies, on a live mount.

The holder in most tests is pinhold (tests/mount/pinhold.c, compiled once per
session unless the build has one): a separate process that pins through the
ioctls of include/pinfs/abi.h, maps the pinned blocks straight from the pool file,
and reports every signal the daemon sends it with its exact siginfo
(si_signo, si_code, si_value, si_pid) -- SIGBUS and SIGIO are blocked and
read from a signalfd, so none is lost and none kills it.

The truncating side is this process (truncate, ftruncate, open(O_TRUNC),
fallocate(PUNCH_HOLE|KEEP_SIZE)); it never pins, so it never receives
lease signals.

A signal about a lease is queued (pidfd_send_signal) before the freeing
operation returns, so after the operation a round trip to the holder (its
"pid" command) is a barrier: every signal sent so far is reported before the
answer.

Timeouts are short (wait_timeout / lease_break_time of GRACE seconds) so the
waiting cases stay cheap; every blocking step has its own timeout, and the
mount fixture's watchdog catches a hung daemon.
"""

import ast
import collections
import errno
import fcntl
import mmap
import os
import random
import re
import select
import signal
import struct
import subprocess
import threading
import time

import pytest

from pinfs_mount import check_fsck, BUILD, _find_program, fsck, run, try_mount, wait_until
from pinfs_util import (FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE, KiB,
                        MiB, as_user, fill_until_enospc,
                        expect_errno, interrupt_op, fallocate, pattern, read_file, write_file)
# re-exported: test_stat_counters imports these from here
from conftest import holders, pinhold_exe  # noqa: F401
from pinfs_util import Holder  # noqa: F401

pytestmark = [pytest.mark.needs_daemon]

BLOCK = 4096
GRACE = 0.6          # wait_timeout and lease_break_time of the policy matrix
UNPIN_AFTER = 0.3    # a "wait" holder gives its pin back after this long
INSTANT = 0.3        # an operation the policy does not delay takes less than this
LATE = 0.8           # how much later than expected a delayed operation may end

FILE_SIZE = 4 * MiB
PIN_OFF, PIN_LEN = 1 * MiB, 256 * KiB
PIN_BLOCKS = PIN_LEN // BLOCK
TRUNC_TO = 512 * KiB                      # truncate / ftruncate target
PUNCH_OFF, PUNCH_LEN = 768 * KiB, 1 * MiB  # covers the whole pinned range

POLICIES = ('fail', 'revoke', 'wait', 'break')
PATHS = ('truncate', 'ftruncate', 'open_trunc', 'punch_hole')
HOLDERS = ('revocable', 'nonrevocable', 'cooperative')

MATRIX_OPTS = ('wait_timeout=%s' % GRACE, 'lease_break_time=%s' % GRACE)

SI_QUEUE = -1

PINCLIENT = _find_program('pinclient')
PINFSCTL = _find_program('pinfsctl')
needs_pinclient = pytest.mark.skipif(
    PINCLIENT is None, reason='pinclient not built under %s (client/pinclient.c)' % BUILD)
needs_pinfsctl = pytest.mark.skipif(
    PINFSCTL is None, reason='pinfsctl not built under %s (client/pinfsctl.c)' % BUILD)


# --------------------------------------------------------------------------
# the ioctl ABI (include/pinfs/abi.h), for what this process asks itself

def _ioc(direction, nr, size):
    return (direction << 30) | (size << 16) | (0xb7 << 8) | nr


_W, _R = 1, 2
SEG = struct.Struct('<QQQ')
PIN_HDR = struct.Struct('<QQIIQQQII')
PIN_SIZE = PIN_HDR.size + 64 * SEG.size
LEASE_INFO = struct.Struct('<QQQQIIIIQ16s')
LIST_HDR = struct.Struct('<IIII')
LIST_SIZE = LIST_HDR.size + 64 * LEASE_INFO.size
POLICY = struct.Struct('<IIII')
COUNTERS = ('pins', 'pinned_blocks', 'leases_revoked', 'leases_broken', 'refusals',
            'quarantined_blocks', 'dirty_blocks', 'clean_blocks', 'pinned_dirty_blocks',
            'flushed_background', 'flushed_integrity', 'pinned_kept_dirty', 'csum_failures',
            'mmap_lost_bytes', 'flushed_write', 'severed_blocks', 'unsevered_blocks',
            'parked', 'ring_requests', 'transport')
STATS_SIZE = 2 * 20 * 8

EVENT_SIZE = 80                 # struct pinfs_event
IOC_EVENTS = _ioc(_R | _W, 8, 32 + 128 * EVENT_SIZE)
EV_WAIT = 7                     # PINFS_EV_WAIT

IOC_PIN = _ioc(_R | _W, 1, PIN_SIZE)
IOC_UNPIN = _ioc(_W, 3, 16)
IOC_LIST = _ioc(_R | _W, 4, LIST_SIZE)
IOC_GET_POLICY = _ioc(_R | _W, 5, POLICY.size)
IOC_SET_POLICY = _ioc(_W, 6, POLICY.size)
IOC_STATS = _ioc(_R, 7, STATS_SIZE)
SEGS_HDR = struct.Struct('<QIIII')
IOC_SEGS = _ioc(_R | _W, 2, SEGS_HDR.size + 64 * SEG.size)

POLICY_NUM = {'default': 0, 'fail': 1, 'revoke': 2, 'wait': 3, 'break': 4}
STATE_NAME = {1: 'active', 2: 'breaking', 3: 'revoked'}
PIN_WRITE, PIN_REVOCABLE = 1, 2


def _ioctl(path_or_fd, req, buf):
    if isinstance(path_or_fd, int):
        fcntl.ioctl(path_or_fd, req, buf, True)
        return buf
    fd = os.open(path_or_fd, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, req, buf, True)
    finally:
        os.close(fd)
    return buf


def list_leases(any_file, all_=True):
    """Every lease of the mount (or of `any_file`): dicts, via PINFS_IOC_LIST."""
    out, first = [], 0
    while True:
        buf = bytearray(LIST_SIZE)
        LIST_HDR.pack_into(buf, 0, first, 1 if all_ else 0, 0, 0)
        _ioctl(any_file, IOC_LIST, buf)
        _, _, n, total = LIST_HDR.unpack_from(buf, 0)
        for i in range(n):
            (lid, ino, off, length, pid, flags, state, _, age,
             comm) = LEASE_INFO.unpack_from(buf, LIST_HDR.size + i * LEASE_INFO.size)
            out.append(dict(id=lid, ino=ino, offset=off, length=length, pid=pid, flags=flags,
                            state=STATE_NAME.get(state, state), age_ns=age,
                            comm=comm.rstrip(b'\0').decode(errors='replace')))
        first += n
        if n == 0 or first >= total:
            return out


def mount_stats(any_file):
    """The mount's counters (PINFS_IOC_STATS), as a dict."""
    buf = _ioctl(any_file, IOC_STATS, bytearray(STATS_SIZE))
    vals = struct.unpack_from('<20Q', buf, 160)
    return dict(zip(COUNTERS, vals))


def get_policy(path, mount=False):
    buf = bytearray(POLICY.pack(0, 1 if mount else 0, 0, 0))
    _ioctl(path, IOC_GET_POLICY, buf)
    return POLICY.unpack(buf)  # (policy, mount, effective, reserved)


def set_policy(path, name, mount=False):
    _ioctl(path, IOC_SET_POLICY, bytearray(POLICY.pack(POLICY_NUM[name], 1 if mount else 0, 0, 0)))


def free_blocks(mnt):
    """statfs free blocks of the mount, in 4 KiB blocks."""
    st = os.statvfs(mnt.dir)
    return st.f_bfree * st.f_frsize // BLOCK


# --------------------------------------------------------------------------
# pinhold: the scripted holder

# The pinhold_exe and holders fixtures are in conftest.py, the Holder class
# in pinfs_util.py: every mount test may use them.

def _errname(e):
    return errno.errorcode.get(e, str(e)) if e else 'ok'


def _do(path_kind, path, times=None):
    """Runs one freeing operation; returns (errno or 0, seconds). With
    `times` (a dict), its 'end' is when the call returned (time.monotonic)."""
    t0 = time.monotonic()
    err = 0
    try:
        if path_kind == 'truncate':
            os.truncate(path, TRUNC_TO)
        elif path_kind == 'ftruncate':
            fd = os.open(path, os.O_WRONLY)
            try:
                os.ftruncate(fd, TRUNC_TO)
            finally:
                os.close(fd)
        elif path_kind == 'open_trunc':
            os.close(os.open(path, os.O_WRONLY | os.O_TRUNC))
        elif path_kind == 'punch_hole':
            fd = os.open(path, os.O_WRONLY)
            try:
                fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, PUNCH_OFF, PUNCH_LEN)
            finally:
                os.close(fd)
        else:
            raise AssertionError(path_kind)
    except OSError as e:
        err = e.errno
    t1 = time.monotonic()
    if times is not None:
        times['end'] = t1
    return err, t1 - t0


def _waits(path):
    """How many times a truncate or hole punch of the mount started waiting
    for pins (the PINFS_EV_WAIT events the caller may see)."""
    n, after = 0, 0
    while True:
        buf = bytearray(32 + 128 * EVENT_SIZE)
        struct.pack_into('<QI', buf, 0, after, 0)        # after_seq, timeout_ms
        _ioctl(path, IOC_EVENTS, buf)
        count, after = struct.unpack_from('<IQ', buf, 12)
        if count == 0:
            return n
        n += sum(struct.unpack_from('<I', buf, 32 + i * EVENT_SIZE + 16)[0] == EV_WAIT
                 for i in range(count))


def _do_while_waiting(path_kind, path, started_waiting):
    """Runs one freeing operation in a thread; once the daemon has said it
    waits for pins (a new PINFS_EV_WAIT event), calls started_waiting() and
    returns (errno or 0, when started_waiting was called, when the call
    returned): times that do not depend on how soon this process got the
    CPU to start the call, on a busy machine."""
    res = {}
    waits0 = _waits(path)
    t = threading.Thread(target=lambda: res.update(r=_do(path_kind, path, res)))
    t.start()
    try:
        assert wait_until(lambda: _waits(path) > waits0 or not t.is_alive(), 10), \
            'no WAIT event within 10 s'
        assert t.is_alive(), '%s returned %s without waiting for the pin' % (path_kind, res)
        t_waiting = time.monotonic()
        started_waiting()
    finally:
        t.join(30)
    assert not t.is_alive(), '%s still waits 30 s later' % path_kind
    return res['r'][0], t_waiting, res['end']


def _after(path_kind, data):
    """(size, contents) the file must have after `path_kind` succeeded on `data`."""
    if path_kind in ('truncate', 'ftruncate'):
        return TRUNC_TO, data[:TRUNC_TO]
    if path_kind == 'open_trunc':
        return 0, b''
    return len(data), (data[:PUNCH_OFF] + bytes(PUNCH_LEN) + data[PUNCH_OFF + PUNCH_LEN:])


def _freed_blocks(path_kind):
    """Data blocks the operation frees (pinned ones included)."""
    if path_kind in ('truncate', 'ftruncate'):
        return (FILE_SIZE - TRUNC_TO) // BLOCK
    if path_kind == 'open_trunc':
        return FILE_SIZE // BLOCK
    return PUNCH_LEN // BLOCK


# Freeing data may also free (or, for a hole punch splitting an extent, take)
# a few metadata blocks: allowed on top of the exact data-block count.
META_SLACK = 4


def _check_free(now, before, freed, what):
    assert before + freed - META_SLACK <= now <= before + freed + META_SLACK, (
        '%s: free blocks %d, expected %d (before %d + %d data blocks freed, +-%d)'
        % (what, now, before + freed, before, freed, META_SLACK))


def _setup_file(mnt, name='f', seed=1, size=FILE_SIZE):
    path = mnt.path(name)
    data = pattern(seed, size)
    write_file(path, data)
    return path, data


def _check_file(path, size, contents, what):
    st = os.stat(path)
    assert st.st_size == size, '%s: size %d, expected %d' % (what, st.st_size, size)
    got = read_file(path)
    assert len(got) == size, '%s: read %d bytes, expected %d' % (what, len(got), size)
    if got != contents:
        first = next(i for i in range(len(got)) if got[i] != contents[i])
        pytest.fail('%s: contents differ from the expected from byte %d' % (what, first))


# --------------------------------------------------------------------------
# the policy matrix: 4 policies x 4 freeing paths x 3 holder kinds

Expect = collections.namedtuple('Expect', 'ok signals quarantined latency')


def expected(policy, holder):
    """What a freeing operation over a pinned range must do.

    revocable: pinned with PINFS_PIN_REVOCABLE, does nothing by itself
    nonrevocable: pinned without it, does nothing by itself
    cooperative: not revocable, but unpins as soon as a break notice arrives
    Under "wait" every holder gives its pin back UNPIN_AFTER s after the call
    has started waiting (the wait policy does not care how it was pinned).
    latency: 'instant', 'unpin' (about UNPIN_AFTER), 'grace' (about GRACE)
    """
    if policy == 'fail':
        return Expect(False, [], False, 'instant')
    if policy == 'revoke':
        if holder == 'revocable':
            return Expect(True, [signal.SIGBUS], True, 'instant')
        return Expect(False, [], False, 'instant')
    if policy == 'wait':
        return Expect(True, [], False, 'unpin')
    assert policy == 'break'
    if holder == 'revocable':
        return Expect(True, [signal.SIGIO, signal.SIGBUS], True, 'grace')
    if holder == 'nonrevocable':
        return Expect(False, [signal.SIGIO], False, 'grace')
    return Expect(True, [signal.SIGIO], False, 'instant')


def _check_latency(kind, secs, what):
    if kind == 'instant':
        assert secs < INSTANT, '%s took %.3f s, expected at once' % (what, secs)
    elif kind == 'unpin':
        assert UNPIN_AFTER - 0.05 <= secs < UNPIN_AFTER + LATE, (
            '%s took %.3f s, expected about %s s (until the holder unpinned)'
            % (what, secs, UNPIN_AFTER))
    else:
        assert GRACE - 0.05 <= secs < GRACE + LATE, (
            '%s took %.3f s, expected about %s s (the grace/timeout)' % (what, secs, GRACE))


def _matrix_params():
    out = []
    for policy in POLICIES:
        for path_kind in PATHS:
            for holder in HOLDERS:
                out.append(pytest.param(
                    policy, path_kind, holder,
                    marks=pytest.mark.mount_options('policy=' + policy, *MATRIX_OPTS),
                    id='%s-%s-%s' % (policy, path_kind, holder)))
    return out


@pytest.mark.parametrize('policy,path_kind,holder', _matrix_params())
def test_freeing_pinned_blocks_follows_policy(mnt, holders, policy, path_kind, holder):
    path, data = _setup_file(mnt)
    h = holders(path)
    lease = h.pin(PIN_OFF, PIN_LEN, 'wr' if holder == 'revocable' else 'w')
    h.ok('map %d' % lease)
    if holder == 'cooperative':
        h.ok('coop %d' % lease)
    free0 = free_blocks(mnt)
    exp = expected(policy, holder)
    what = '%s under %s with a %s holder' % (path_kind, policy, holder)

    if policy == 'wait':
        # the holder's timer starts once the call waits: on a busy machine
        # the call may start late, and must still find the pin there
        err, t_told, t_end = _do_while_waiting(
            path_kind, path, lambda: h.ok('unpin_after %d %d' % (lease, UNPIN_AFTER * 1000)))
        secs = t_end - t_told            # from telling the holder to the end of the call
    else:
        err, secs = _do(path_kind, path)
    h.sync()
    print('%s: %s in %.1f ms' % (what, _errname(err), secs * 1000))

    # the result and its timing
    if exp.ok:
        assert err == 0, '%s: got %s, expected success' % (what, _errname(err))
    else:
        assert err == errno.EBUSY, '%s: got %s, expected EBUSY' % (what, _errname(err))
    _check_latency(exp.latency, secs, what)

    # what the holder received: the exact signals, in order, each about its lease
    sigs = h.signals()
    assert [s[0] for s in sigs] == list(exp.signals), (
        '%s: holder got signals %s, expected %s' % (what, sigs, list(exp.signals)))
    for signo, code, value, pid in sigs:
        assert code == SI_QUEUE, '%s: si_code %d, expected SI_QUEUE' % (what, code)
        assert value == lease, '%s: si_value %d, expected the lease id %d' % (what, value, lease)
        assert pid == mnt.proc.pid, '%s: si_pid %d is not the daemon (%d)' % (
            what, pid, mnt.proc.pid)
    if holder == 'cooperative' and policy == 'break':
        assert h.auto_unpins() == [(lease, 0)], h.events
    if policy == 'wait':
        assert h.auto_unpins() == [(lease, 0)], h.events

    # the file
    if exp.ok:
        size, contents = _after(path_kind, data)
    else:
        size, contents = FILE_SIZE, data
    _check_file(path, size, contents, what)

    # the lease and the pool's free space
    leases = {l['id']: l for l in list_leases(path)}
    free1 = free_blocks(mnt)
    print('free blocks %d -> %d (%+d)' % (free0, free1, free1 - free0))
    if not exp.ok:
        assert lease in leases and leases[lease]['state'] != 'revoked', (
            '%s: refused, but the lease is %s' % (what, leases.get(lease)))
        assert free1 == free0, '%s: refused, but free blocks went %d -> %d' % (what, free0, free1)
        assert mount_stats(path)['refusals'] == 1
    elif exp.quarantined:
        assert leases[lease]['state'] == 'revoked', leases
        assert mount_stats(path)['quarantined_blocks'] == PIN_BLOCKS
        _check_free(free1, free0, _freed_blocks(path_kind) - PIN_BLOCKS,
                    what + ', revoked blocks quarantined')
        # the holder acknowledges: the quarantined blocks come back
        h.unpin(lease)
        assert mount_stats(path)['quarantined_blocks'] == 0
        free2 = free_blocks(mnt)
        assert free2 - free1 == PIN_BLOCKS, (
            '%s: unpinning the revoked lease gave back %d blocks, expected %d'
            % (what, free2 - free1, PIN_BLOCKS))
    else:
        assert lease not in leases, leases
        assert mount_stats(path)['quarantined_blocks'] == 0
        _check_free(free1, free0, _freed_blocks(path_kind), what)
    if exp.ok and policy in ('revoke', 'break') and holder == 'revocable':
        assert mount_stats(path)['leases_revoked'] == 1
    if policy == 'break':
        assert mount_stats(path)['leases_broken'] == 1


@pytest.mark.mount_options('policy=wait', *MATRIX_OPTS)
@pytest.mark.parametrize('path_kind', PATHS)
def test_wait_policy_gives_ebusy_after_wait_timeout_when_pin_stays(mnt, holders, path_kind):
    path, data = _setup_file(mnt)
    h = holders(path)
    lease = h.pin(PIN_OFF, PIN_LEN, 'wr')
    free0 = free_blocks(mnt)
    err, secs = _do(path_kind, path)
    h.sync()
    assert err == errno.EBUSY, _errname(err)
    _check_latency('grace', secs, path_kind + ' waiting on a pin that stays')
    assert h.signals() == [], 'the wait policy sends no signal'
    _check_file(path, FILE_SIZE, data, path_kind)
    assert free_blocks(mnt) == free0
    assert [l['state'] for l in list_leases(path)] == ['active']
    h.unpin(lease)


@pytest.mark.mount_options('policy=wait', 'wait_timeout=10')
@pytest.mark.parametrize('path_kind', PATHS)
def test_wait_policy_interrupted_caller_gets_eintr(mnt, holders, pinhold_exe, path_kind):
    path, data = _setup_file(mnt)
    h = holders(path)
    lease = h.pin(PIN_OFF, PIN_LEN, 'w')
    args = {'truncate': ['truncate', path, str(TRUNC_TO)],
            'ftruncate': ['ftruncate', path, str(TRUNC_TO)],
            'open_trunc': ['otrunc', path],
            'punch_hole': ['punch', path, str(PUNCH_OFF), str(PUNCH_LEN)]}[path_kind]
    err, ms = interrupt_op(pinhold_exe, args)   # SIGUSR1: FUSE sends INTERRUPT
    print('interrupted %s: %s after %.1f ms' % (path_kind, _errname(err), ms))
    assert err == errno.EINTR, 'interrupted waiting %s gave %s' % (path_kind, _errname(err))
    assert ms < 2000, 'the interruption took %.0f ms to end the wait' % ms
    _check_file(path, FILE_SIZE, data, 'after the interrupted ' + path_kind)
    assert [l['id'] for l in list_leases(path)] == [lease]
    h.unpin(lease)


@pytest.mark.mount_options('policy=break', 'lease_break_time=1')
def test_break_marks_lease_breaking_during_grace_then_revokes(mnt, holders):
    path, _ = _setup_file(mnt)
    h = holders(path)
    lease = h.pin(PIN_OFF, PIN_LEN, 'wr')
    result = {}
    t = threading.Thread(target=lambda: result.setdefault('r', _do('truncate', path)))
    t.start()
    try:
        seen = wait_until(lambda: [l['state'] for l in list_leases(mnt.path())
                                   if l['id'] == lease] == ['breaking'], 0.8, interval=0.01)
        assert seen, 'the lease never showed state "breaking": %s' % list_leases(mnt.path())
        if PINFSCTL:
            res = run([PINFSCTL, 'pins', mnt.dir], timeout=10)
            # LEASE FILE START END SIZE PID COMMAND FLAGS STATE AGE
            assert re.search(r'^\s*%d\s.*\sbreaking\s+\d+$' % lease, res.stdout, re.M), res.stdout
    finally:
        t.join(10)
    err, secs = result['r']
    assert err == 0 and 0.95 <= secs < 1 + LATE, (err, secs)
    assert [l['state'] for l in list_leases(mnt.path())] == ['revoked']
    h.sync()
    assert [s[0] for s in h.signals()] == [signal.SIGIO, signal.SIGBUS]


@pytest.mark.mount_options('policy=fail')
def test_zero_range_over_pinned_blocks_never_detaches_the_mapping(mnt, holders):
    """ZERO_RANGE may zero in place (the holder sees the zeros) or refuse as a
    freeing operation would; it must never give the file new blocks while the
    holder keeps mapping the old ones."""
    path, data = _setup_file(mnt)
    h = holders(path)
    lease = h.pin(PIN_OFF, PIN_LEN, 'w')
    h.ok('map %d' % lease)
    fd = os.open(path, os.O_RDWR)
    try:
        err = 0
        try:
            fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, PIN_OFF - 64 * KiB,
                      PIN_LEN + 128 * KiB)
        except OSError as e:
            err = e.errno
    finally:
        os.close(fd)
    print('ZERO_RANGE over a pinned range under fail: %s' % _errname(err))
    got = read_file(path)
    if err:
        assert err in (errno.EBUSY, errno.EOPNOTSUPP), _errname(err)
        assert got == data
    else:
        assert got[PIN_OFF - 64 * KiB:PIN_OFF + PIN_LEN + 64 * KiB] == bytes(PIN_LEN + 128 * KiB)
    # whatever happened, the mapping and the file agree
    h.ok('fill %d %d 16 %d' % (lease, PIN_OFF + 4096, 0x77))
    assert read_file(path)[PIN_OFF + 4096:PIN_OFF + 4112] == bytes([0x77]) * 16, (
        'the file no longer shows the stores through the mapping')
    assert h.ok('read %d %d 8' % (lease, PIN_OFF)).strip() == got[PIN_OFF:PIN_OFF + 8].hex()
    assert [l['state'] for l in list_leases(path)] == ['active']


def test_pin_on_close_ends_when_the_file_is_closed(mnt, holders):
    path, _ = _setup_file(mnt, size=1 * MiB)
    write_file(mnt.path('other'), b'x')
    h = holders(path)
    lease = h.pin(0, 64 * KiB, 'wc')
    kept = h.pin(64 * KiB, 64 * KiB, 'w')
    assert {l['id'] for l in list_leases(path)} == {lease, kept}
    h.ok('reopen %s' % mnt.path('other'))      # closes the pinned file
    # it ends as a revoked lease does: the holder may still map its blocks
    state = lambda: sorted((l['id'], l['state']) for l in list_leases(mnt.path('other')))
    assert wait_until(lambda: state() == [(lease, 'revoked'), (kept, 'active')], 1.0), state()
    _punch(path, 0, 64 * KiB)                  # the ended lease no longer holds its range
    assert mount_stats(path)['quarantined_blocks'] == 64 * KiB // BLOCK
    h.unpin(lease)                             # acknowledged: its blocks come back
    assert state() == [(kept, 'active')]
    assert mount_stats(path)['quarantined_blocks'] == 0


@pytest.mark.mkfs_options('--inodes', '64')
def test_a_new_file_with_a_destroyed_pinned_files_number_is_not_held(mnt, holders):
    """A pinned file unlinked and closed is destroyed; its pins keep its
    blocks (quarantined) but not its inode number: the next file to get that
    number is free of them (it used to be held, and its truncate EBUSY)."""
    victim = mnt.path('victim')
    write_file(victim, pattern(3, 64 * KiB))
    write_file(mnt.path('other'), b'x')
    old_ino = os.stat(victim).st_ino
    h = holders(victim)
    lease = h.pin(0, 16 * KiB, 'w')
    h.ok('reopen %s' % mnt.path('other'))    # closes the pinned file
    free0 = free_blocks(mnt)
    os.unlink(victim)
    # destroyed (RELEASE is asynchronous): all but the 4 pinned blocks free
    assert wait_until(lambda: free_blocks(mnt) > free0, 2), (free_blocks(mnt), free0)
    assert mount_stats(mnt.dir)['quarantined_blocks'] == 4
    reused = None
    for i in range(200):                      # the inode allocator goes round
        p = mnt.path('n%d' % i)
        write_file(p, b'new data' * 512)
        if os.stat(p).st_ino == old_ino:
            reused = p
            break
        os.unlink(p)
    assert reused, 'no new file got inode %d: %r' % (old_ino, [os.stat(mnt.path(x)).st_ino for x in os.listdir(mnt.dir)])
    assert list_leases(reused, all_=False) == []
    os.truncate(reused, 0)                    # policy fail: nothing holds it
    [gone] = list_leases(reused)
    assert (gone['id'], gone['ino'], gone['state']) == (lease, 0, 'active')
    f1 = free_blocks(mnt)
    assert mount_stats(mnt.dir)['quarantined_blocks'] == 4
    h.unpin(lease)                            # the quarantined blocks come back
    assert list_leases(reused) == []
    # (>=: the loop's last unlinked file may be destroyed only now, at its
    # asynchronous RELEASE, and give its blocks back too)
    assert mount_stats(mnt.dir)['quarantined_blocks'] == 0
    assert free_blocks(mnt) >= f1 + 4


@pytest.mark.mount_options('wait_timeout=5', 'lease_break_time=5')
@pytest.mark.parametrize('policy', ['wait', 'break'])
def test_waiting_truncate_proceeds_when_holder_dies(mnt, holders, policy):
    path, data = _setup_file(mnt)
    set_policy(path, policy)
    h = holders(path)
    h.pin(PIN_OFF, PIN_LEN, 'w')
    t_killed = []

    def kill():
        h.kill()                         # (reaped: its pins are gone)
        t_killed.append(time.monotonic())
    err, _, t_end = _do_while_waiting('truncate', path, kill)
    secs = t_end - t_killed[0]
    print('%s: truncate %s %.1f ms after the holder was killed and reaped'
          % (policy, _errname(err), secs * 1000))
    assert err == 0, _errname(err)
    assert secs < LATE, secs
    _check_file(path, TRUNC_TO, data[:TRUNC_TO], 'after the holder died')
    st = mount_stats(path)
    assert (st['leases_revoked'], st['quarantined_blocks'], st['pins']) == (0, 0, 0), st


@pytest.mark.mount_options('policy=revoke')
def test_truncate_inside_pinned_range_keeps_partial_block_and_zeroes_tail(mnt, holders):
    path, data = _setup_file(mnt)
    h = holders(path)
    lease = h.pin(PIN_OFF, PIN_LEN, 'wr')
    h.ok('map %d' % lease)
    free0 = free_blocks(mnt)
    cut = PIN_OFF + 2 * BLOCK + 904       # inside the pin's third block
    os.truncate(path, cut)
    _assert_revoked(h, lease, mnt)
    kept = 3                              # the pin's first three blocks stay in the file
    assert mount_stats(path)['quarantined_blocks'] == PIN_BLOCKS - kept
    _check_free(free_blocks(mnt), free0,
                (FILE_SIZE - PIN_OFF) // BLOCK - kept - (PIN_BLOCKS - kept), 'partial truncate')
    os.truncate(path, 2 * MiB)            # grow again: the tail must read as zeros
    got = read_file(path)
    assert got[:cut] == data[:cut]
    assert got[cut:] == bytes(2 * MiB - cut), 'stale data after truncate + grow'
    h.unpin(lease)
    assert mount_stats(path)['quarantined_blocks'] == 0
    assert read_file(path) == got


# --------------------------------------------------------------------------
# what never involves the policy

@pytest.mark.mount_options('wait_timeout=5', 'lease_break_time=5')
@pytest.mark.parametrize('policy', POLICIES)
def test_truncating_unpinned_blocks_or_growing_never_involves_policy(mnt, holders, policy):
    path, data = _setup_file(mnt)
    set_policy(path, policy)
    h = holders(path)
    lease = h.pin(PIN_OFF, PIN_LEN, 'w')
    pin_end = PIN_OFF + PIN_LEN
    steps = [
        ('truncate above the pin', lambda: os.truncate(path, 2 * MiB)),
        ('truncate to the pin end', lambda: os.truncate(path, pin_end)),
        ('grow', lambda: os.truncate(path, 8 * MiB)),
        ('punch below the pin', lambda: _punch(path, 0, PIN_OFF)),
        ('punch above the pin', lambda: _punch(path, pin_end, 1 * MiB)),
        ('shrink again', lambda: os.truncate(path, pin_end)),
    ]
    for what, fn in steps:
        t0 = time.monotonic()
        fn()
        secs = time.monotonic() - t0
        assert secs < INSTANT, '%s under %s took %.3f s' % (what, policy, secs)
    h.sync()
    assert h.signals() == [], 'the holder was signalled: %s' % h.events
    assert os.stat(path).st_size == pin_end
    got = read_file(path)
    assert got[:PIN_OFF] == bytes(PIN_OFF)
    assert got[PIN_OFF:] == data[PIN_OFF:pin_end], 'the pinned range changed'
    st = mount_stats(path)
    assert (st['refusals'], st['leases_broken'], st['leases_revoked']) == (0, 0, 0), st
    assert [l['state'] for l in list_leases(path)] == ['active']
    h.unpin(lease)


def _punch(path, off, length):
    fd = os.open(path, os.O_WRONLY)
    try:
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, length)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------
# choosing the policy and the errno

@pytest.mark.mount_options('busy_errno=ETXTBSY')
@pytest.mark.parametrize('path_kind', PATHS)
def test_busy_errno_etxtbsy_option_changes_refusal_errno(mnt, holders, path_kind):
    path, data = _setup_file(mnt)
    h = holders(path)
    h.pin(PIN_OFF, PIN_LEN, 'w')
    err, _ = _do(path_kind, path)
    assert err == errno.ETXTBSY, _errname(err)
    _check_file(path, FILE_SIZE, data, path_kind)


def _revocable_pinned_file(mnt, holders, name, seed):
    path, data = _setup_file(mnt, name, seed)
    h = holders(path)
    lease = h.pin(PIN_OFF, PIN_LEN, 'wr')
    return path, data, h, lease


def _assert_revoked(h, lease, mnt):
    h.sync()
    assert [(s[0], s[1], s[2]) for s in h.signals()] == [(signal.SIGBUS, SI_QUEUE, lease)], h.events


def test_per_file_policy_xattr_overrides_mount_default(mnt, holders):
    a, data_a, ha, la = _revocable_pinned_file(mnt, holders, 'a', 1)
    b, data_b, hb, lb = _revocable_pinned_file(mnt, holders, 'b', 2)
    os.setxattr(a, 'user.pinfs.policy', b'revoke')
    assert os.getxattr(a, 'user.pinfs.policy') == b'revoke'
    assert get_policy(a)[0] == POLICY_NUM['revoke']
    assert get_policy(b)[2] == POLICY_NUM['fail'], 'b follows the mount default'
    os.truncate(a, 0)
    _assert_revoked(ha, la, mnt)
    expect_errno(errno.EBUSY, os.truncate, b, 0)
    hb.sync()
    assert hb.signals() == []
    _check_file(b, FILE_SIZE, data_b, 'b (mount default fail)')
    # back to the default
    os.setxattr(a, 'user.pinfs.policy', b'default')
    assert get_policy(a)[2] == POLICY_NUM['fail']


def test_per_file_policy_ioctl_overrides_mount_default(mnt, holders):
    a, _, ha, la = _revocable_pinned_file(mnt, holders, 'a', 1)
    set_policy(a, 'revoke')
    assert get_policy(a)[:3:2] == (POLICY_NUM['revoke'], POLICY_NUM['revoke'])
    assert os.getxattr(a, 'user.pinfs.policy') == b'revoke', 'the ioctl and the xattr agree'
    os.truncate(a, 0)
    _assert_revoked(ha, la, mnt)


@needs_pinfsctl
def test_pinfsctl_policy_sets_file_policy(mnt, holders):
    a, _, ha, la = _revocable_pinned_file(mnt, holders, 'a', 1)
    res = run([PINFSCTL, 'policy', a, 'revoke'], timeout=10)
    assert res.returncode == 0, res.stderr
    res = run([PINFSCTL, 'policy', a], timeout=10)
    assert res.returncode == 0 and res.stdout.split() == ['revoke'], res
    os.truncate(a, 0)
    _assert_revoked(ha, la, mnt)


@needs_pinfsctl
def test_pinfsctl_policy_on_mountpoint_changes_live_mount_default(mnt, holders):
    a, data, ha, la = _revocable_pinned_file(mnt, holders, 'a', 1)
    expect_errno(errno.EBUSY, os.truncate, a, 0)
    res = run([PINFSCTL, 'policy', mnt.dir, 'revoke'], timeout=10)
    assert res.returncode == 0, res.stderr
    res = run([PINFSCTL, 'policy', mnt.dir], timeout=10)
    assert res.stdout.split() == ['revoke'], res
    assert get_policy(a, mount=True)[0] == POLICY_NUM['revoke']
    os.truncate(a, 0)
    _assert_revoked(ha, la, mnt)
    assert os.stat(a).st_size == 0


def test_mount_default_policy_set_by_ioctl_on_live_mount(mnt, holders):
    a, _, ha, la = _revocable_pinned_file(mnt, holders, 'a', 1)
    set_policy(a, 'revoke', mount=True)
    assert get_policy(a)[2] == POLICY_NUM['revoke']
    os.truncate(a, 0)
    _assert_revoked(ha, la, mnt)


# --------------------------------------------------------------------------
# holders that exit, quarantine, unlink

@pytest.mark.mount_options('policy=revoke')
def test_sigkilled_holder_loses_pins_promptly_and_quarantine_is_freed(mnt, holders):
    path = mnt.path('f')
    write_file(path, b'')
    free_empty = free_blocks(mnt)
    data = pattern(3, FILE_SIZE)
    write_file(path, data)
    h = holders(path)
    revoked = h.pin(PIN_OFF, PIN_LEN, 'wr')
    h.ok('map %d' % revoked)
    kept = h.pin(0, 64 * KiB, 'w')           # a second, live pin of the same holder
    os.truncate(path, 512 * KiB)             # revokes the first, keeps the second
    _assert_revoked(h, revoked, mnt)
    states = {l['id']: l['state'] for l in list_leases(path)}
    assert states == {revoked: 'revoked', kept: 'active'}
    assert mount_stats(path)['quarantined_blocks'] == PIN_BLOCKS
    free_q = free_blocks(mnt)

    t0 = time.monotonic()
    h.kill(signal.SIGKILL)
    gone = wait_until(lambda: not list_leases(path), 1.0, interval=0.002)
    secs = time.monotonic() - t0
    print('pins of the SIGKILLed holder gone after %.1f ms' % (secs * 1000))
    assert gone, 'pins still there 1 s after the holder died: %s' % list_leases(path)
    assert secs < 1.0
    if PINFSCTL:
        res = run([PINFSCTL, 'pins', mnt.dir], timeout=10)
        assert res.returncode == 0, res.stderr
        assert res.stdout.split('\n')[0].split()[0] == 'LEASE', res.stdout
        assert not re.search(r'^\s*\d+\s', res.stdout, re.M), res.stdout
    assert mount_stats(path)['quarantined_blocks'] == 0
    assert free_blocks(mnt) - free_q == PIN_BLOCKS
    os.truncate(path, 0)
    assert free_blocks(mnt) == free_empty, 'statfs is not back to its value before the pins'


@pytest.mark.mount_options('policy=revoke')
def test_holder_exit_without_revocation_ends_its_pins(mnt, holders):
    path, data = _setup_file(mnt)
    h = holders(path)
    for i in range(3):
        h.pin(i * MiB, 64 * KiB, 'w')
    assert len(list_leases(path)) == 3
    h.exit()
    assert wait_until(lambda: not list_leases(path), 1.0, interval=0.005)
    os.truncate(path, 0)   # nothing left to refuse or revoke


@pytest.mark.pool_size('16M')
@pytest.mark.mount_options('policy=revoke')
def test_revoked_blocks_never_reused_by_other_file_while_holder_maps_them(mnt, holders):
    MARK, LATER, FILL = 0xAB, 0xCD, 0x5A
    path = mnt.path('pinned')
    size = 256 * KiB
    write_file(path, bytes([0x11]) * size)
    h = holders(path)
    lease = h.pin(0, size, 'wr')
    segs = h.last_pin['segs']
    h.ok('map %d' % lease)
    h.ok('fill %d 0 %d %d' % (lease, size, MARK))
    assert read_file(path) == bytes([MARK]) * size, 'stores through the mapping are the file'

    os.truncate(path, 0)
    _assert_revoked(h, lease, mnt)
    # the former holder keeps storing through its mapping, as a NIC would
    h.ok('scribble %d %d' % (lease, LATER))
    # the truncated file itself is written again: it gets other blocks
    write_file(path, bytes([0x99]) * size)
    time.sleep(0.02)
    assert read_file(path) == bytes([0x99]) * size, 'the stale mapping writes into the file'

    # fill the pool with another file
    other = mnt.path('other')
    written = fill_until_enospc(other, FILL)
    assert written > 8 * MiB, 'only %d bytes fit in the pool' % written
    time.sleep(0.05)
    h.ok('scribble %d -1' % lease)

    # the holder's mapping never shows the other file's data ...
    assert h.ok('count %d %d' % (lease, FILL)).strip() == '0'
    assert h.ok('count %d %d' % (lease, LATER)).strip() == str(size)
    # ... the pool blocks behind it hold only the holder's stores ...
    with open(mnt.pool, 'rb') as pf:
        m = mmap.mmap(pf.fileno(), 0, mmap.MAP_SHARED, mmap.PROT_READ)
        try:
            for _, pool_off, length in segs:
                blob = m[pool_off:pool_off + length]
                assert blob == bytes([LATER]) * length, 'pool blocks of the revoked lease changed'
        finally:
            m.close()
    # ... and the other files never show the holder's stores
    assert read_file(path) == bytes([0x99]) * size
    got = read_file(other)
    assert len(got) == written
    assert got == bytes([FILL]) * written, 'the other file shows bytes it never wrote'

    # acknowledging the revocation frees the blocks: the other file can use them
    free_before = free_blocks(mnt)
    h.unpin(lease)
    assert free_blocks(mnt) - free_before == size // BLOCK
    fd = os.open(other, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, bytes([FILL]) * (size // 2))
    finally:
        os.close(fd)
    assert LATER not in read_file(other)


@pytest.mark.mount_options('policy=revoke')
def test_overlapping_revoked_pins_stay_quarantined_until_last_holder_acknowledges(mnt, holders):
    path, _ = _setup_file(mnt)
    h1, h2 = holders(path), holders(path)
    l1 = h1.pin(1 * MiB, 512 * KiB, 'wr')            # blocks [256, 384)
    l2 = h2.pin(1 * MiB + 256 * KiB, 512 * KiB, 'wr')  # blocks [320, 448): 64 shared
    free0 = free_blocks(mnt)
    os.truncate(path, 0)
    for h, lease in ((h1, l1), (h2, l2)):
        _assert_revoked(h, lease, mnt)
    union = (1 * MiB + 768 * KiB - 1 * MiB) // BLOCK            # 192 blocks
    assert mount_stats(path)['quarantined_blocks'] == union
    _check_free(free_blocks(mnt), free0, FILE_SIZE // BLOCK - union, 'both revoked')
    f1 = free_blocks(mnt)
    h1.unpin(l1)
    assert free_blocks(mnt) - f1 == 64, 'only the blocks no other lease pins may come back'
    assert mount_stats(path)['quarantined_blocks'] == union - 64
    h2.unpin(l2)
    assert free_blocks(mnt) - f1 == union
    assert mount_stats(path)['quarantined_blocks'] == 0


@pytest.mark.pool_size('16M')
@pytest.mark.mount_options('policy=revoke')
def test_pool_does_not_mount_again_while_a_former_holder_lives(mnt, holders):
    """A holder maps the pool file itself and may go on storing after the
    daemon is gone: the pool remembers it at unmount, and no later mount may
    hand its (quarantined) blocks to another file while it lives."""
    LATER, FILL = 0xCD, 0x5A
    path = mnt.path('pinned')
    size = 256 * KiB
    write_file(path, bytes([0x11]) * size)
    outside = '/dev/shm/pinfs-test-outside-%d' % os.getpid()
    write_file(outside, b'')
    h = holders(path)
    try:
        lease = h.pin(0, size, 'wr')
        h.ok('map %d' % lease)
        os.truncate(path, 0)
        _assert_revoked(h, lease, mnt)
        # the holder keeps its mapping of the pool but no file of the mount open
        h.ok('reopen %s' % outside)
    finally:
        os.unlink(outside)
    mnt.allow_stderr(r'unmounting with .* leases')
    mnt.unmount()
    check_fsck(mnt.pool)
    # while the former holder lives (and scribbles), the pool refuses to mount
    h.ok('scribble %d %d' % (lease, LATER))
    res = subprocess.run(mnt.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, timeout=20)
    assert res.returncode != 0 and 'held pins when the pool was last mounted' in res.stderr, res.stderr
    assert not os.path.ismount(mnt.dir)
    # once it is gone the pool mounts, and nothing it stored reaches a file
    h.kill()
    mnt.start()
    other = mnt.path('other')
    fd = os.open(other, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                os.write(fd, bytes([FILL]) * (64 * KiB))
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                break
    finally:
        os.close(fd)
    assert LATER not in read_file(other), 'the former holder\'s stores landed in another file'


@pytest.mark.pool_size('16M')
def test_daemon_killed_with_pins_held_does_not_restart_while_the_holder_lives(mnt, holders):
    path = mnt.path('pinned')
    write_file(path, bytes([0x11]) * (64 * KiB))
    h = holders(path)
    lease = h.pin(0, 64 * KiB, 'w')
    h.ok('map %d' % lease)
    mnt.kill_daemon(signal.SIGKILL)
    res = subprocess.run(mnt.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, timeout=20)
    assert res.returncode != 0 and 'held pins when the pool was last mounted' in res.stderr, res.stderr
    h.kill()
    check_fsck(mnt.pool)
    mnt.start()
    assert read_file(path)[:4] == bytes([0x11]) * 4


@pytest.mark.pool_size('16M')
def test_fsck_repair_refuses_a_pool_whose_holder_lives_and_changes_nothing(mnt, holders):
    """A daemon killed with pins held leaves their blocks free in the pool's
    bitmap; a repair that allocated them (a block copy, a grown directory)
    would put the live holder's stores into another file. Like the daemon
    and mkfs, fsck --repair refuses until the holder is gone; -n still reads."""
    path = mnt.path('pinned')
    write_file(path, bytes([0x22]) * (64 * KiB))
    h = holders(path)
    lease = h.pin(0, 64 * KiB, 'w')
    h.ok('map %d' % lease)
    mnt.kill_daemon(signal.SIGKILL)
    with open(mnt.pool, 'rb') as f:
        before = f.read()
    res = fsck(mnt.pool, '--repair')
    assert res.returncode == 8, res
    assert ('process %d held pins when the pool was last mounted' % h.pid) in res.stderr, res
    assert 'nothing was changed' in res.stderr, res
    with open(mnt.pool, 'rb') as f:
        assert f.read() == before, 'fsck --repair wrote to the pool'
    res = fsck(mnt.pool, '-n')
    assert res.returncode in (0, 4), res                    # reads; a pending replay is 4
    h.kill()
    res = fsck(mnt.pool, '--repair')
    assert res.returncode in (0, 1), res
    check_fsck(mnt.pool)
    mnt.start()
    assert read_file(path)[:4] == bytes([0x22]) * 4


def test_direct_mapping_is_coherent_with_read_and_write(mnt, holders):
    path, data = _setup_file(mnt, size=1 * MiB)
    h = holders(path)
    lease = h.pin(128 * KiB, 256 * KiB, 'w')
    h.ok('map %d' % lease)
    # a store through the mapping is what read() returns, without fsync
    h.ok('fill %d %d %d %d' % (lease, 200 * KiB, 10000, 0xE7))
    fd = os.open(path, os.O_RDWR)
    try:
        assert os.pread(fd, 10000, 200 * KiB) == bytes([0xE7]) * 10000
        assert os.pread(fd, 16, 200 * KiB - 16) == data[200 * KiB - 16:200 * KiB]
        # a write() to the file is visible through the mapping at once
        os.pwrite(fd, b'written by write()', 300 * KiB + 5)
        assert h.ok('read %d %d 18' % (lease, 300 * KiB + 5)).strip() == \
            b'written by write()'.hex()
    finally:
        os.close(fd)
    exp = bytearray(data)
    exp[200 * KiB:200 * KiB + 10000] = bytes([0xE7]) * 10000
    exp[300 * KiB + 5:300 * KiB + 23] = b'written by write()'
    h.unpin(lease)
    assert read_file(path) == bytes(exp), 'the stores stay in the file after unpin'


def test_pin_of_a_hole_allocates_blocks(mnt, holders):
    path = mnt.path('sparse')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    os.ftruncate(fd, 4 * MiB)
    os.close(fd)
    free0 = free_blocks(mnt)
    h = holders(path)
    lease = h.pin(1 * MiB, 512 * KiB, 'w')
    assert free0 - free_blocks(mnt) >= 128, 'pinning a hole allocated no blocks'
    h.ok('map %d' % lease)
    h.ok('fill %d %d 4096 %d' % (lease, 1 * MiB, 0x42))
    assert read_file(path)[1 * MiB:1 * MiB + 8] == b'\x42' * 8
    h.unpin(lease)


@pytest.mark.mount_options('policy=fail')
def test_unlink_of_pinned_file_keeps_space_until_last_pin_ends(mnt, holders):
    path = mnt.path('f')
    write_file(path, b'')
    write_file(mnt.path('ctl'), b'')          # where the holders issue ioctls afterwards
    free_empty = free_blocks(mnt)
    write_file(path, pattern(4, FILE_SIZE))
    h1 = holders(path)
    h2 = holders(path)
    l1 = h1.pin(0, 256 * KiB, 'w')
    h1.ok('map %d' % l1)
    l2 = h2.pin(2 * MiB, 256 * KiB, 'w')
    # the pins, not open files, are what keeps the blocks: close the file
    h1.ok('reopen %s' % mnt.path('ctl'))
    h2.ok('reopen %s' % mnt.path('ctl'))
    free0 = free_blocks(mnt)
    os.unlink(path)                       # no policy is involved: the blocks live on
    assert not os.path.exists(path)
    h1.sync()
    h2.sync()
    assert h1.signals() == [] and h2.signals() == []
    assert mount_stats(mnt.path('ctl'))['refusals'] == 0
    # the unpinned blocks may go at once; the pinned ones live on
    time.sleep(0.1)
    free1 = free_blocks(mnt)
    _check_free(free1, free0, FILE_SIZE // BLOCK - 2 * PIN_BLOCKS,
                'after unlinking a file with two pins')
    # the holder still reads and writes its blocks
    h1.ok('fill %d 0 4096 %d' % (l1, 0x33))
    assert h1.ok('read %d 0 4' % l1).strip() == '33333333'
    h1.unpin(l1)
    assert free_blocks(mnt) - free1 == PIN_BLOCKS, 'the first unpin freed the wrong amount'
    assert free_blocks(mnt) <= free_empty - PIN_BLOCKS, (
        'space came back before the last pin ended')
    assert [l['id'] for l in list_leases(mnt.path('ctl'))] == [l2]
    h2.unpin(l2)
    assert wait_until(lambda: free_blocks(mnt) >= free_empty - 2, 2), (
        'the last unpin did not give the space back: %d free, %d before the file'
        % (free_blocks(mnt), free_empty))


@pytest.mark.mount_options('policy=fail')
def test_unlink_of_pinned_file_then_holder_exit_frees_space(mnt, holders):
    path = mnt.path('f')
    write_file(path, b'')
    write_file(mnt.path('ctl'), b'')
    free_empty = free_blocks(mnt)
    write_file(path, pattern(4, FILE_SIZE))
    h = holders(path)
    h.pin(PIN_OFF, PIN_LEN, 'w')
    h.ok('reopen %s' % mnt.path('ctl'))
    os.unlink(path)
    time.sleep(0.1)
    assert free_blocks(mnt) <= free_empty - PIN_BLOCKS, 'the pinned blocks were freed'
    h.kill()
    assert wait_until(lambda: free_blocks(mnt) >= free_empty - 2, 2), (
        'the holder exited but the space of the unlinked file did not come back: %d free, %d before'
        % (free_blocks(mnt), free_empty))


# --------------------------------------------------------------------------
# bad input

def test_zero_length_pin_is_einval(mnt, holders):
    path, _ = _setup_file(mnt, size=64 * KiB)
    h = holders(path)
    with pytest.raises(OSError) as e:
        h.pin(0, 0, 'w')
    assert e.value.errno == errno.EINVAL


def test_pin_past_eof_is_einval(mnt, holders):
    path, _ = _setup_file(mnt, size=64 * KiB)
    h = holders(path)
    for off, length in ((0, 64 * KiB + 1), (60 * KiB, 8 * KiB), (1 * MiB, 4096),
                        (2 ** 64 - 4096, 8192)):
        with pytest.raises(OSError) as e:
            h.pin(off, length, 'w')
        assert e.value.errno == errno.EINVAL, (off, length)
    assert list_leases(path) == []
    h.pin(0, 64 * KiB, 'w')   # the whole file is fine


def test_write_pin_on_read_only_fd_is_ebadf(mnt, holders):
    path, _ = _setup_file(mnt, size=64 * KiB)
    h = holders(path, 'ro')
    with pytest.raises(OSError) as e:
        h.pin(0, 4096, 'w')
    assert e.value.errno == errno.EBADF
    lease = h.pin(0, 4096, '-')       # a read pin is fine
    h.ok('map %d' % lease)
    assert h.ok('read %d 0 4' % lease).strip() == pattern(1, 64 * KiB)[:4].hex()


def test_unknown_ioctl_is_enotty_and_bad_flags_einval(mnt, holders):
    path, _ = _setup_file(mnt, size=64 * KiB)
    h = holders(path)
    for cmd in (_ioc(_R | _W, 99, 64), _ioc(_W, 3, 24), 0x5401, _ioc(_R, 0, 8)):
        assert h.cmd('ioctl %#x' % cmd).startswith('err errno=%d ' % errno.ENOTTY), hex(cmd)
    with pytest.raises(OSError) as e:
        buf = bytearray(PIN_SIZE)
        PIN_HDR.pack_into(buf, 0, 0, 4096, 0x80, 0, 0, 0, 0, 0, 0)
        _ioctl(path, IOC_PIN, buf)
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        _ioctl(path, IOC_UNPIN, bytearray(struct.pack('<QQ', 1, 7)))
    assert e.value.errno == errno.EINVAL


@pytest.mark.mount_options('allow_other')
@pytest.mark.skipif(os.getuid() != 0, reason='needs root to switch users')
def test_unpin_or_segments_of_someone_elses_lease_is_eperm(mnt, holders):
    path, _ = _setup_file(mnt, size=64 * KiB)
    os.chmod(path, 0o666)
    h = holders(path)
    lease = h.pin(0, 4096, 'w')

    def unpin_as_other():
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.ioctl(fd, IOC_UNPIN, bytearray(struct.pack('<QQ', lease, 0)), True)
        finally:
            os.close(fd)
        return True
    with pytest.raises(OSError) as e:
        as_user(unpin_as_other, uid=1000, gid=1000)
    assert e.value.errno == errno.EPERM
    assert [l['id'] for l in list_leases(path)] == [lease]

    def segs_as_other():
        buf = bytearray(IOC_SEGS >> 16 & 0x3fff)
        SEGS_HDR.pack_into(buf, 0, lease, 0, 0, 0, 0)
        _ioctl(path, IOC_SEGS, buf)
        return SEGS_HDR.unpack_from(buf)
    with pytest.raises(OSError) as e:
        as_user(segs_as_other, uid=1000, gid=1000)
    assert e.value.errno == errno.EPERM, 'where a lease sits in the pool is the holder\'s to know'
    lid, first, nsegs, total, _ = segs_as_other()  # root may look
    assert (lid, first, nsegs, total) == (lease, 0, 1, 1)
    # another process of the same user (root) is not the holder either, but root may
    other = holders(path)
    assert other.cmd('unpin %d' % lease) == 'ok', 'root may unpin any lease'
    assert list_leases(path) == []


def test_unknown_policy_name_in_xattr_is_einval(mnt):
    path, _ = _setup_file(mnt, size=4096)
    with pytest.raises(OSError) as e:
        os.setxattr(path, 'user.pinfs.policy', b'bogus')
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        _ioctl(path, IOC_SET_POLICY, bytearray(POLICY.pack(9, 0, 0, 0)))
    assert e.value.errno == errno.EINVAL
    assert get_policy(path)[0] == POLICY_NUM['default']


@needs_pinfsctl
def test_pinfsctl_policy_unknown_name_is_usage_error(mnt):
    path, _ = _setup_file(mnt, size=4096)
    res = run([PINFSCTL, 'policy', path, 'bogus'], timeout=10)
    assert res.returncode == 2, res
    assert 'bogus' in res.stderr


def test_unknown_policy_mount_option_is_refused(pool, mountpoint):
    rc, err = try_mount(pool, mountpoint, ['policy=bogus'])
    assert rc != 0
    assert 'bogus' in err and 'policy' in err, err
    assert err.count('\n') <= 3, 'expected one clear message:\n' + err


@pytest.mark.mount_options('max_pins=2')
def test_pin_count_limit_per_process_is_enomem(mnt, holders):
    path, _ = _setup_file(mnt, size=1 * MiB)
    h = holders(path)
    a = h.pin(0, 4096, 'w')
    h.pin(64 * KiB, 4096, 'w')
    with pytest.raises(OSError) as e:
        h.pin(128 * KiB, 4096, 'w')
    assert e.value.errno == errno.ENOMEM
    other = holders(path)
    other.pin(128 * KiB, 4096, 'w')       # the limit is per process
    h.unpin(a)
    h.pin(128 * KiB, 4096, 'w')           # room again


@pytest.mark.mount_options('max_pinned=1M')
def test_pinned_bytes_limit_per_process_is_enomem(mnt, holders):
    path, _ = _setup_file(mnt, size=4 * MiB)
    h = holders(path)
    h.pin(0, 768 * KiB, 'w')
    with pytest.raises(OSError) as e:
        h.pin(1 * MiB, 512 * KiB, 'w')
    assert e.value.errno in (errno.ENOMEM, errno.EPERM)
    h.pin(1 * MiB, 256 * KiB, 'w')


@pytest.mark.pool_size('2560M')
@pytest.mark.mount_options('max_pinned=3G')
@pytest.mark.watchdog(300)
def test_fallocate_and_pin_bigger_than_one_transaction(mnt, holders):
    """Filling 2.25 GiB of holes in one call needs ~4.6 MiB of new map nodes,
    more than the pool's journal holds: the daemon used to abort. Now the fill
    commits in parts, and the file, the pin and the free space come out right."""
    size = 2304 * MiB
    path = mnt.path('big')
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    free0 = free_blocks(mnt)   # after the directory got its block
    try:
        os.posix_fallocate(fd, 0, size)
        st = os.fstat(fd)
        assert st.st_size == size
        assert st.st_blocks * 512 >= size
        for off in (0, size // 2 + 12345, size - 4096):
            assert os.pread(fd, 4096, off) == bytes(4096)
        assert free0 - free_blocks(mnt) >= size // BLOCK
        # a hole at both ends of every 2 MiB map leaf: refilling them touches
        # only 2 blocks a leaf, but journals each of the 1 152 leaves whole
        # (4.6 MiB, more than this pool's journal), so the parts must be cut
        # by journal room, not by blocks allocated
        chunk = 2 * MiB
        for c in range(size // chunk):
            os.pwrite(fd, b'\x5a' * 4096, c * chunk + 4096)
            fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, c * chunk, 4096)
            fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, c * chunk + chunk - 4096, 4096)
        used = free0 - free_blocks(mnt)
        os.posix_fallocate(fd, 0, size)
        assert free0 - free_blocks(mnt) == used + 2 * (size // chunk)
        for c in (0, size // chunk // 2, size // chunk - 1):
            assert os.pread(fd, 3 * 4096, c * chunk) == bytes(4096) + b'\x5a' * 4096 + bytes(4096)
            assert os.pread(fd, 4096, c * chunk + chunk - 4096) == bytes(4096)
        os.ftruncate(fd, 0)
        assert free_blocks(mnt) == free0
        # a pin over a hole allocates it, as a write fault would
        os.ftruncate(fd, size)
    finally:
        os.close(fd)
    h = holders(path)
    # allocating 2.25 GiB: seconds, more with ASan on a busy machine (the
    # watchdog bounds the whole test)
    lease = h.pin(0, size, 'w', timeout=120)
    assert free0 - free_blocks(mnt) >= size // BLOCK
    assert sum(seg[2] for seg in h.last_pin['segs']) == size
    h.unpin(lease, timeout=120)
    os.truncate(path, 0)
    assert free_blocks(mnt) == free0
    h.kill()                   # its open file would keep the mount busy
    mnt.remount()
    assert os.stat(path).st_size == 0


SCRUB_SIZE = 72
IOC_SCRUB = _ioc(_R | _W, 9, SCRUB_SIZE)
FUZZ_ERRNOS = {errno.EINVAL, errno.ENOENT, errno.EPERM, errno.EBADF, errno.ENOMEM, errno.EAGAIN,
               errno.EBUSY, errno.ENOTTY, errno.EOPNOTSUPP, errno.ENOSPC, errno.EUSERS}


@pytest.mark.mount_options('policy=revoke')
@pytest.mark.watchdog(180)
def test_random_ioctls_get_documented_errors_and_never_hurt_the_daemon(mnt, holders):
    """5 000 ioctls with random payloads (valid command numbers, biased
    fields: small lease ids, offsets near the file, random flags), from a
    child process that then exits: every call succeeds or fails with one of
    the documented errnos, the daemon lives on, the pins of the child end,
    and the pool is fsck-clean after (the fixture checks)."""
    path, data = _setup_file(mnt, size=256 * KiB)
    other = holders(path)
    lease = other.pin(0, 64 * KiB, 'wr')
    cmds = [(IOC_PIN, PIN_SIZE), (IOC_SEGS, IOC_SEGS >> 16 & 0x3fff), (IOC_UNPIN, 16),
            (IOC_LIST, LIST_SIZE), (IOC_GET_POLICY, POLICY.size), (IOC_SET_POLICY, POLICY.size),
            (IOC_STATS, STATS_SIZE), (IOC_EVENTS, 32 + 128 * EVENT_SIZE), (IOC_SCRUB, SCRUB_SIZE)]

    def fuzz():
        rnd = random.Random(20261126)
        seen = collections.Counter()
        fds = [os.open(path, os.O_RDWR), os.open(path, os.O_RDONLY), os.open(mnt.dir, os.O_RDONLY)]
        for _ in range(5000):
            cmd, size = rnd.choice(cmds)
            buf = bytearray(rnd.getrandbits(8) for _ in range(min(size, 64))) + bytearray(size - min(size, 64))
            words = [rnd.choice((0, 1, 2, 3, 4096, 65536, 262144, lease + 1, lease + 2, 2 ** 63,
                                 2 ** 64 - 1, rnd.getrandbits(64))) for _ in range(4)]
            if size >= 32:
                struct.pack_into('<QQQQ', buf, 0, *words)
            if rnd.random() < 0.5 and size >= 24:
                struct.pack_into('<I', buf, 20, 0)          # reserved fields zero half the time
            if cmd == IOC_EVENTS:
                struct.pack_into('<I', buf, 8, rnd.randrange(3))    # timeout_ms: short
            try:
                fcntl.ioctl(rnd.choice(fds), cmd, buf, True)
                seen['ok'] += 1
            except OSError as e:
                if e.errno not in FUZZ_ERRNOS:
                    raise AssertionError('ioctl %#x gave %s' % (cmd, errno.errorcode.get(e.errno)))
                seen[errno.errorcode[e.errno]] += 1
        for fd in fds:
            os.close(fd)
        return dict(seen)
    seen = as_user(fuzz, uid=0, gid=0, groups=[0], timeout=150)
    assert seen.get('ok', 0) > 100 and seen.get('EINVAL', 0) > 100, seen
    # the child is gone, and its pins with it; the other holder's lease and
    # the file are untouched (no ioctl writes data)
    assert wait_until(lambda: [l['id'] for l in list_leases(path)] == [lease], timeout=5), \
        list_leases(path)
    assert read_file(path) == data
    other.unpin(lease)


SB_NPINHOLDERS = 208          # struct pm_super: npinholders, then pinholders[] at 216
PINHOLDERS_MAX = 128


def _pool_holders(pool):
    """The live-holder record in the pool's superblock: a list of pids."""
    with open(pool, 'rb') as f:
        sb = f.read(4096)
    n = struct.unpack_from('<I', sb, SB_NPINHOLDERS)[0]
    return [struct.unpack_from('<I', sb, 216 + 16 * i)[0] for i in range(n)]


@pytest.mark.watchdog(120)
def test_one_holder_more_than_the_pool_records_is_eusers(mnt, holders):
    """The pool records every process holding pins (so it is never mounted
    again under a live one): a new holder past the record's size is refused
    with EUSERS, never pinned unrecorded."""
    path, _ = _setup_file(mnt, size=1 * MiB)
    hs = []
    for i in range(PINHOLDERS_MAX):
        h = holders(path)
        h.pin((i % 256) * 4096, 4096, 'w')
        hs.append(h)
    assert sorted(_pool_holders(mnt.pool)) == sorted(h.pid for h in hs)
    late = holders(path)
    with pytest.raises(OSError) as e:
        late.pin(0, 4096, 'w')
    assert e.value.errno == errno.EUSERS
    assert late.pid not in _pool_holders(mnt.pool)
    hs[0].pin(8192, 4096, 'w')                      # holders already recorded may pin more
    hs[1].kill()                                    # a holder gone frees its place
    deadline = time.monotonic() + 10
    while hs[1].pid in _pool_holders(mnt.pool):
        assert time.monotonic() < deadline, 'the exit of a holder was not noticed'
        time.sleep(0.02)
    late.pin(0, 4096, 'w')
    assert late.pid in _pool_holders(mnt.pool)
    assert len(_pool_holders(mnt.pool)) == PINHOLDERS_MAX


# --------------------------------------------------------------------------
# pinfsctl events, pinclient end to end

@needs_pinfsctl
@pytest.mark.mount_options('policy=revoke')
def test_pinfsctl_events_show_pin_unpin_revoke_refusal_and_exit(mnt, holders):
    a, _ = _setup_file(mnt, 'a', 1, 1 * MiB)
    b, _ = _setup_file(mnt, 'b', 2, 1 * MiB)
    ha, hb = holders(a), holders(b)
    la = ha.pin(0, 64 * KiB, 'wr')
    lb = hb.pin(0, 64 * KiB, 'w')
    expect_errno(errno.EBUSY, os.truncate, b, 0)     # refusal: b's pin is not revocable
    os.truncate(a, 0)                                # revocation
    ha.unpin(la)                                     # unpin (acknowledges)
    hb.exit()                                        # exit
    assert wait_until(lambda: not list_leases(a), 1.0)
    res = run([PINFSCTL, 'events', '--count', '6', mnt.dir], timeout=10)
    assert res.returncode == 0, res
    lines = res.stdout.splitlines()
    print(res.stdout)
    assert len(lines) == 6, res.stdout

    def find(kind, lease=None):
        for ln in lines:
            if re.search(r'\b%s\b' % kind, ln) and (lease is None or
                                                   re.search(r'lease=%d\b' % lease, ln)):
                return ln
        pytest.fail('no %s event%s in:\n%s' % (kind, '' if lease is None else
                                              ' for lease %d' % lease, res.stdout))
    find('pin', la)
    find('pin', lb)
    assert 'EBUSY' in find('refuse', lb)
    assert 'policy=revoke' in find('revoke', la)
    find('unpin', la)
    assert re.search(r'pid=%d\b' % hb.pid, find('exit'))
    order = [next(i for i, ln in enumerate(lines) if re.search(r'\b%s\b' % k, ln))
             for k in ('refuse', 'revoke', 'unpin', 'exit')]
    assert order == sorted(order), res.stdout


def _start_pinclient(args):
    p = subprocess.Popen([PINCLIENT] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, bufsize=1)
    line = p.stdout.readline()
    m = re.search(r'lease (\d+) pinned', line)
    if not m:
        p.kill()
        out, err = p.communicate(timeout=5)
        pytest.fail('pinclient did not pin: %r %s %s' % (line, out, err))
    return p, int(m.group(1)), line


@needs_pinclient
@needs_pinfsctl
@pytest.mark.mount_options('policy=revoke')
def test_pinclient_revocable_is_revoked_under_revoke_and_exits_3(mnt):
    path, _ = _setup_file(mnt)
    free0 = free_blocks(mnt)
    p, lease, first = _start_pinclient(['--revocable', '--rate', '200', path,
                                        str(1 * MiB), str(1 * MiB)])
    try:
        res = run([PINFSCTL, 'pins', mnt.dir], timeout=10)
        assert res.returncode == 0, res
        rows = [ln for ln in res.stdout.splitlines() if re.match(r'\s*%d\s' % lease, ln)]
        assert len(rows) == 1, res.stdout
        assert str(p.pid) in rows[0].split() and 'pinclient' in rows[0], rows[0]
        time.sleep(0.3)                              # let it transfer
        t0 = time.monotonic()
        os.truncate(path, 0)
        assert time.monotonic() - t0 < INSTANT
        out, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    print(first + out + err)
    assert p.returncode == 3, 'pinclient exit %s:\n%s%s' % (p.returncode, out, err)
    m = re.search(r'lease (\d+) revoked after ([\d.]+) s', out)
    assert m and int(m.group(1)) == lease, out
    m = re.search(r'transferred (\d+) bytes', out)
    assert m and int(m.group(1)) > 0, out
    assert wait_until(lambda: not list_leases(path), 1.0)
    assert mount_stats(path)['quarantined_blocks'] == 0
    _check_free(free_blocks(mnt), free0, FILE_SIZE // BLOCK, 'after pinclient exited')


@needs_pinclient
@pytest.mark.mount_options('policy=break', 'lease_break_time=10')
def test_pinclient_cooperative_unpins_on_break_and_exits_0(mnt):
    path, _ = _setup_file(mnt)
    p, lease, first = _start_pinclient(['--cooperative', '--rate', '200', path,
                                        str(1 * MiB), str(1 * MiB)])
    try:
        time.sleep(0.2)
        t0 = time.monotonic()
        os.truncate(path, 0)
        secs = time.monotonic() - t0
        out, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    print(first + out + err, 'truncate took %.1f ms' % (secs * 1000))
    assert secs < 2, 'the break did not end when the holder unpinned (%.3f s)' % secs
    assert p.returncode == 0, 'pinclient exit %s:\n%s%s' % (p.returncode, out, err)
    assert 'lease %d break notice' % lease in out, out
    assert 'revoked' not in out
    st = mount_stats(path)
    assert (st['leases_broken'], st['leases_revoked'], st['quarantined_blocks']) == (1, 0, 0), st


@needs_pinclient
@pytest.mark.mount_options('policy=fail')
def test_pinclient_nonrevocable_under_fail_keeps_transferring_and_exits_0(mnt):
    path, data = _setup_file(mnt)
    p, lease, _ = _start_pinclient(['--rate', '200', '--duration', '1', path,
                                    str(1 * MiB), str(1 * MiB)])
    try:
        time.sleep(0.2)
        expect_errno(errno.EBUSY, os.truncate, path, 0)
        out, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, out + err
    assert os.stat(path).st_size == FILE_SIZE
    got = read_file(path)
    assert got[:1 * MiB] == data[:1 * MiB] and got[2 * MiB:] == data[2 * MiB:], \
        'pinclient wrote outside its pinned range'


# --------------------------------------------------------------------------
# stress

STRESS_S = 3.0
STRESS_WORKERS = 5


def _stress_worker(files, seed, deadline, wfd):
    """Runs in a forked child: random pins, unpins, writes, truncates, punches."""
    rnd = random.Random(seed)
    counts = collections.Counter()
    bad = []
    sigs = {signal.SIGBUS, signal.SIGIO}
    signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    held = []                  # (fd, lease id)
    fds = {}
    try:
        for f in files:
            fds[f] = os.open(f, os.O_RDWR)
        while time.monotonic() < deadline:
            # a revocation or a break notice: give everything back (cooperative)
            if sigs & signal.sigpending():
                while signal.sigtimedwait(sigs, 0) is not None:
                    counts['signal'] += 1
                for fd, lease in held:
                    try:
                        fcntl.ioctl(fd, IOC_UNPIN, bytearray(struct.pack('<QQ', lease, 0)), True)
                    except OSError as e:
                        if e.errno not in (errno.ENOENT, errno.EINVAL):
                            bad.append('unpin after signal: %s' % e)
                held = []
            if len(held) > 4:          # a bounded working set of pins
                fd2, lease = held.pop(0)
                fcntl.ioctl(fd2, IOC_UNPIN, bytearray(struct.pack('<QQ', lease, 0)), True)
                counts['unpin'] += 1
            f = rnd.choice(files)
            fd = fds[f]
            op = rnd.choice(('pin', 'pin', 'unpin', 'write', 'truncate', 'punch', 'otrunc',
                             'read', 'grow'))
            try:
                if op == 'pin':
                    size = os.fstat(fd).st_size
                    if size < 2 * BLOCK:
                        continue
                    off = rnd.randrange(0, size - BLOCK)
                    length = rnd.randrange(1, min(size - off, 512 * KiB) + 1)
                    flags = PIN_WRITE | (PIN_REVOCABLE if rnd.random() < 0.7 else 0)
                    buf = bytearray(PIN_SIZE)
                    PIN_HDR.pack_into(buf, 0, off, length, flags, 0, 0, 0, 0, 0, 0)
                    try:
                        fcntl.ioctl(fd, IOC_PIN, buf, True)
                        held.append((fd, PIN_HDR.unpack_from(buf, 0)[4]))
                    except OSError as e:
                        # EAGAIN: a truncate is waiting for pins on that range
                        if e.errno not in (errno.EINVAL, errno.ENOMEM, errno.ENOSPC,
                                           errno.EAGAIN):
                            raise
                        counts['pin_' + errno.errorcode[e.errno]] += 1
                elif op == 'unpin':
                    if held:
                        fd2, lease = held.pop(rnd.randrange(len(held)))
                        fcntl.ioctl(fd2, IOC_UNPIN, bytearray(struct.pack('<QQ', lease, 0)), True)
                elif op == 'write':
                    off = rnd.randrange(0, 3 * MiB)
                    os.pwrite(fd, bytes([rnd.randrange(256)]) * rnd.randrange(1, 128 * KiB), off)
                elif op == 'read':
                    os.pread(fd, 256 * KiB, rnd.randrange(0, 3 * MiB))
                elif op == 'truncate':
                    os.ftruncate(fd, rnd.randrange(0, 3 * MiB))
                elif op == 'grow':
                    size = os.fstat(fd).st_size
                    if size < 4 * MiB:
                        os.ftruncate(fd, size + rnd.randrange(0, 1 * MiB))
                elif op == 'punch':
                    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                              rnd.randrange(0, 3 * MiB), rnd.randrange(1, 1 * MiB))
                elif op == 'otrunc':
                    os.close(os.open(f, os.O_WRONLY | os.O_TRUNC))
                counts[op] += 1
            except OSError as e:
                if e.errno in (errno.EBUSY, errno.ENOSPC):
                    counts[op + '_' + errno.errorcode[e.errno]] += 1
                else:
                    bad.append('%s: %s' % (op, e))
    except BaseException as e:   # noqa: BLE001 -- reported to the parent
        bad.append('worker crashed: %r' % e)
    msg = repr((dict(counts), bad)).encode()
    os.write(wfd, msg)


@pytest.mark.watchdog(60)
@pytest.mark.mount_options('wait_timeout=0.15', 'lease_break_time=0.15')
@pytest.mark.parametrize('policy', POLICIES)
def test_stress_concurrent_pin_unpin_write_truncate_no_deadlock(request, mnt, policy):
    files = []
    for i in range(3):
        p, _ = _setup_file(mnt, 's%d' % i, i, 2 * MiB)
        files.append(p)
    set_policy(files[0], policy, mount=True)
    # short waits: the stress is about concurrency, not about the timeouts
    assert get_policy(files[0], mount=True)[0] == POLICY_NUM[policy]
    deadline = time.monotonic() + STRESS_S
    kids = []
    for w in range(STRESS_WORKERS):
        r, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                _stress_worker(files, POLICIES.index(policy) * 100 + w, deadline, wfd)
            finally:
                os._exit(0)
        os.close(wfd)
        kids.append((pid, r))
    totals = collections.Counter()
    problems = []
    hard = time.monotonic() + STRESS_S + 20
    for pid, r in kids:
        buf = b''
        while True:
            left = hard - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([r], [], [], left)
            if not ready:
                break
            chunk = os.read(r, 65536)
            if not chunk:
                break
            buf += chunk
        os.close(r)
        done = wait_until(lambda: os.waitpid(pid, os.WNOHANG)[0] == pid,
                          max(0.1, hard - time.monotonic()))
        if not done:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            problems.append('worker %d did not finish: deadlock?' % pid)
            continue
        if not buf:
            problems.append('worker %d reported nothing' % pid)
            continue
        counts, bad = ast.literal_eval(buf.decode())
        totals.update(counts)
        problems += bad
    print('stress under %s: %s' % (policy, dict(sorted(totals.items()))))
    assert not problems, '\n'.join(problems[:20])
    assert mnt.proc.poll() is None, 'the daemon died'
    assert totals['pin'] > 10 and totals['truncate'] + totals.get('truncate_EBUSY', 0) > 10
    # every worker is gone: so are all pins and all quarantine
    assert wait_until(lambda: not list_leases(files[0]), 1.0), list_leases(files[0])
    assert mount_stats(files[0])['quarantined_blocks'] == 0
    for f in files:
        os.truncate(f, 0)

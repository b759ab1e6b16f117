"""No user can freeze the mount (issue 8.6), and EVENTS shows a user only the
events of their own leases (issue 8.5).

libfuse serves the mount with at most 10 worker threads. A truncate that
waits out a pin (policy wait or break) and an EVENTS read that waits for an
event used to sleep in one of them, so one user with enough threads left
none for anybody else. Now such requests are parked (lease/policy.c,
fusefs/ops.c): the worker returns at once and the lease manager's completion
thread replies later -- when the pin goes, at the deadline, on an INTERRUPT,
or at unmount.

Users: alice (1000) sleeps, bob (1001) stats; root holds the pins that make
alice's truncates wait, alice pins one file of her own at the end.
"""

import ctypes
import errno
import os
import signal
import statistics
import struct
import threading
import time

import pytest

from pinfs_mount import wait_until
from pinfs_util import KiB, MiB, as_user, reap_op, start_op
from test_pin_access import ALICE, BOB, POOL_GID, _open_pool_dir, _pin, _shared_dir
from test_pins import _R, _W, _ioc, list_leases

pytestmark = [pytest.mark.needs_daemon,
              pytest.mark.skipif(os.getuid() != 0, reason='needs root to switch users')]

# struct pinfs_events / pinfs_event (include/pinfs/abi.h)
EVENTS_HDR = struct.Struct('<QIIQQ')            # after_seq timeout_ms n next_seq lost
EVENT = struct.Struct('<QQIIQQQQiI16s')         # 80 bytes
EVENTS_SIZE = EVENTS_HDR.size + 128 * EVENT.size
IOC_EVENTS = _ioc(_R | _W, 8, EVENTS_SIZE)
EV_PIN, EV_WAIT = 1, 7

NSLEEP = 16                 # EVENTS readers, and as many waiting truncates
WAIT_S = 8.0                # wait_timeout: long enough to measure meanwhile
STAT_LIMIT_S = 0.050        # the bound for another user's stat
NOISE_S = 0.5               # what CPU contention alone may add, rarely
FILE_SIZE = 1 * MiB
TRUNC_TO = 128 * KiB
PIN_OFF, PIN_LEN = 512 * KiB, 64 * KiB   # inside what the truncate frees

MOUNT_OPTS = ('allow_other', 'wait_timeout=%s' % WAIT_S, 'lease_break_time=%s' % WAIT_S,
              'timeout=0',               # every stat reaches the daemon
              'max_parked=%d' % (2 * NSLEEP),   # alice's sleepers, all parked
              'pin_group=%d' % POOL_GID)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]


def events(fd, after, timeout_ms):
    """PINFS_IOC_EVENTS on `fd`: ([event dicts], next_seq, lost). Through
    ctypes, which lets other threads run meanwhile (fcntl.ioctl holds the
    GIL across the call, so one waiting reader would stop them all)."""
    buf = ctypes.create_string_buffer(EVENTS_SIZE)
    EVENTS_HDR.pack_into(buf, 0, after, timeout_ms, 0, 0, 0)
    if _libc.ioctl(fd, IOC_EVENTS, buf) < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    _, _, n, next_seq, lost = EVENTS_HDR.unpack_from(buf)
    out = []
    for i in range(n):
        (seq, _, typ, pid, lease, ino, off, length, err, policy,
         comm) = EVENT.unpack_from(buf, EVENTS_HDR.size + i * EVENT.size)
        out.append(dict(seq=seq, type=typ, pid=pid, lease=lease, ino=ino, err=err))
    return out, next_seq, lost


def all_events(path, timeout_ms=0):
    """Every event the caller may see, from the start."""
    fd = os.open(path, os.O_RDONLY)
    try:
        got, after = [], 0
        while True:
            evs, after, _ = events(fd, after, timeout_ms)
            if not evs:
                return got
            got += evs
    finally:
        os.close(fd)


def _alice_files(mnt, n):
    """`n` files of alice's, FILE_SIZE bytes each, in a shared directory."""
    d = _shared_dir(mnt)
    paths = [os.path.join(d, 'a%02d' % i) for i in range(n)]

    def make():
        for p in paths:
            fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, b'\x5a' * FILE_SIZE)
            finally:
                os.close(fd)
        return True
    assert as_user(make, **ALICE)
    return paths


def _waits(mnt):
    """How many truncates started waiting so far (root's WAIT events)."""
    return sum(e['type'] == EV_WAIT for e in all_events(mnt.path()))


def _wait_events(mnt, n, timeout=10):
    """Waits until root sees `n` WAIT events (that many truncates parked)."""
    return wait_until(lambda: _waits(mnt) >= n, timeout, interval=0.05)


@pytest.mark.watchdog(120)
@pytest.mark.parametrize('policy', [
    pytest.param(p, marks=pytest.mark.mount_options('policy=' + p, *MOUNT_OPTS))
    for p in ('wait', 'break')])
def test_one_users_32_sleepers_leave_another_users_stat_fast_and_all_get_their_answers(
        mnt, holders, policy):
    """wait: the truncates whose pin stays get EBUSY at wait_timeout; break:
    every holder gets SIGIO at once, those that do not unpin are revoked
    (SIGBUS) at lease_break_time and the truncate goes through."""
    _open_pool_dir(mnt)
    files = _alice_files(mnt, NSLEEP)
    bob_file = os.path.join(_shared_dir(mnt), 'bob')
    as_user(lambda: open(bob_file, 'wb').close() or True, **BOB)
    # root pins a range of every file that alice's truncates would free
    hs = [holders(p) for p in files]
    leases = [h.pin(PIN_OFF, PIN_LEN, 'wr') for h in hs]

    def sleepers():
        """alice: 16 EVENTS readers and 16 truncates, each its own thread."""
        res = {}

        def reader(i):
            fd = os.open(files[i], os.O_RDONLY)
            got, after, t0 = [], 0, time.monotonic()
            try:
                while not got and time.monotonic() - t0 < 60:
                    got, after, _ = events(fd, after, 1000)
            finally:
                os.close(fd)
            res['ev', i] = [(e['type'], e['pid']) for e in got]

        def truncate(i):
            t0 = time.monotonic()
            try:
                os.truncate(files[i], TRUNC_TO)
                err = 0
            except OSError as e:
                err = e.errno
            res['tr', i] = (err, time.monotonic() - t0, time.monotonic())

        ts = []
        for i in range(NSLEEP):
            ts.append(threading.Thread(target=reader, args=(i,)))
            ts.append(threading.Thread(target=truncate, args=(i,)))
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return res

    out = {}
    alice = threading.Thread(target=lambda: out.setdefault('r', as_user(sleepers, timeout=90,
                                                                         **ALICE)))
    alice.start()
    try:
        # measure while every sleeper sleeps, long before the first can
        # time out; not gated on an ioctl of root's, which a daemon whose
        # workers all sleep would itself answer only at that timeout
        time.sleep(1.5)

        def stats():
            fresh, existing = [], []
            for i in range(20):
                t0 = time.monotonic()
                try:
                    os.stat(os.path.join(os.path.dirname(bob_file), 'fresh-%d' % i))
                except FileNotFoundError:
                    pass
                fresh.append(time.monotonic() - t0)
                t0 = time.monotonic()
                os.stat(bob_file)
                existing.append(time.monotonic() - t0)
                time.sleep(0.02)
            return fresh, existing
        fresh, existing = as_user(stats, **BOB)
        print('bob stat ms: fresh median %.1f max %.1f, existing median %.1f max %.1f' % (
            1e3 * statistics.median(fresh), 1e3 * max(fresh),
            1e3 * statistics.median(existing), 1e3 * max(existing)))
        # a stat that waits for a free worker waits until a sleeper's timeout
        # (seconds); on a loaded machine (2 CPUs shared by many builds and
        # tests) a rare stat is late for want of a CPU alone: one in ten
        # may take up to NOISE_S
        lat = fresh + existing
        slow = sorted(x for x in lat if x >= STAT_LIMIT_S)
        assert len(slow) <= len(lat) // 10 and max(lat) < NOISE_S, \
            'bob\'s stat took %.0f ms (fresh name) / %.0f ms (existing file) at worst ' \
            'while alice\'s requests slept; %d of %d over %.0f ms' % (
                1e3 * max(fresh), 1e3 * max(existing), len(slow), len(lat), 1e3 * STAT_LIMIT_S)
        assert _waits(mnt) == NSLEEP, 'not every truncate waited'
        # bob sees none of alice's or root's events
        assert as_user(lambda: all_events(bob_file), **BOB) == []
        # half the pins go: those truncates finish now, the rest at the timeout
        t_unpin = time.monotonic()
        for h, lease in zip(hs[:NSLEEP // 2], leases[:NSLEEP // 2]):
            h.unpin(lease)
        # alice pins a file of her own: her readers get that event
        def own_pin():
            lease, _ = _pin(files[0], 0, 4 * KiB)
            return os.getpid(), lease
        alice_pid, alice_lease = as_user(own_pin, **ALICE)
    finally:
        alice.join(100)
    res = out['r']
    for i in range(NSLEEP):
        err, secs, end = res['tr', i]
        size = os.stat(files[i]).st_size
        if i < NSLEEP // 2:
            assert (err, size) == (0, TRUNC_TO), 'truncate %d: %s, size %d' % (
                i, errno.errorcode.get(err, err), size)
            # (CLOCK_MONOTONIC is one clock for every process)
            assert end - t_unpin < 2, 'truncate %d ended %.1f s after the unpins' % (
                i, end - t_unpin)
        else:
            want = (errno.EBUSY, FILE_SIZE) if policy == 'wait' else (0, TRUNC_TO)
            assert (err, size) == want, 'truncate %d: %s, size %d' % (
                i, errno.errorcode.get(err, err), size)
            assert secs >= WAIT_S - 0.5, 'truncate %d ended after only %.1f s' % (i, secs)
        left = [] if i < NSLEEP // 2 else ['active' if policy == 'wait' else 'revoked']
        assert [l['state'] for l in list_leases(files[i], all_=False)
                if l['id'] == leases[i]] == left
        hs[i].sync()
        sigs = [s[0] for s in hs[i].signals() if s[2] == leases[i]]
        assert sigs == {'wait': [], 'break': [signal.SIGIO] + (
            [signal.SIGBUS] if i >= NSLEEP // 2 else [])}[policy], (i, sigs)
    for i in range(NSLEEP):
        got = res['ev', i]
        assert got, 'reader %d got no event' % i
        assert all(pid == alice_pid for _, pid in got), \
            'reader %d saw events of other users\' leases: %s' % (i, got)
        assert (EV_PIN, alice_pid) in got, got
    # root sees everything: root's pins, the waits, alice's pin
    seen = all_events(mnt.path())
    assert sum(e['type'] == EV_PIN for e in seen) == NSLEEP + 1
    assert any(e['lease'] == alice_lease for e in seen)


def _start_truncate(pinhold_exe, path, user=None):
    """pinhold --op truncate in its own process: (Popen, after "ready")."""
    kw = dict(user=user['uid'], group=user['gid'], extra_groups=user['groups']) if user else {}
    return start_op(pinhold_exe, ['truncate', path, str(TRUNC_TO)], **kw)


@pytest.mark.mount_options('policy=wait', 'wait_timeout=30')
@pytest.mark.parametrize('sig', (signal.SIGINT, signal.SIGKILL), ids=('sigint', 'sigkill'))
def test_killing_a_process_parked_in_a_waiting_truncate_ends_it_and_the_daemon_serves_on(
        mnt, holders, pinhold_exe, sig):
    path = mnt.path('f')
    with open(path, 'wb') as f:
        f.write(b'\x33' * FILE_SIZE)
    h = holders(path)
    lease = h.pin(PIN_OFF, PIN_LEN, 'w')
    op = _start_truncate(pinhold_exe, path)
    try:
        assert _wait_events(mnt, 1), 'the truncate never started waiting'
        t0 = time.monotonic()
        op.send_signal(sig)
        rc = op.wait(timeout=5)
        secs = time.monotonic() - t0
    finally:
        reap_op(op)
    assert rc == -sig, rc
    assert secs < 2, 'the killed truncate took %.1f s to end' % secs
    # nothing changed; the lease is as it was; its range takes pins again
    # (the wait gave it back: a waiting truncate's range refuses new pins)
    assert os.stat(path).st_size == FILE_SIZE
    with open(path, 'rb') as f:
        assert f.read() == b'\x33' * FILE_SIZE
    assert [(l['id'], l['state']) for l in list_leases(path)] == [(lease, 'active')]
    second = h.pin(PIN_OFF, 4 * KiB, 'w')
    # the daemon serves on: a new truncate waits, then goes through at the unpin
    op = _start_truncate(pinhold_exe, path)
    try:
        assert _wait_events(mnt, 2)
        h.unpin(second)
        h.unpin(lease)
        out, _ = op.communicate(timeout=10)
    finally:
        reap_op(op)
    assert 'result errno=0 ' in out, out
    assert os.stat(path).st_size == TRUNC_TO


def test_an_interrupted_event_read_answers_eintr_at_once(mnt):
    path = mnt.path('f')
    open(path, 'wb').close()

    def read():
        signal.signal(signal.SIGALRM, lambda *_: None)   # no SA_RESTART
        fd = os.open(path, os.O_RDONLY)
        try:
            _, after, _ = events(fd, 0, 0)
            signal.setitimer(signal.ITIMER_REAL, 0.3)   # FUSE sends INTERRUPT
            t0 = time.monotonic()
            try:
                events(fd, after, 1000)
                err = 0
            except OSError as e:
                err = e.errno
            return err, time.monotonic() - t0
        finally:
            os.close(fd)
    err, secs = as_user(read, uid=0, gid=0, groups=[0])
    assert err == errno.EINTR, errno.errorcode.get(err, err)
    assert secs < 0.9, 'the interrupted read ended after %.2f s, not at once' % secs


def _pin_and_stay(path):
    """A child process that write-pins PIN_OFF..+PIN_LEN of `path` and lives
    on with the lease but without an open file (an open file of a holder
    would outlive the daemon's unmount); returns its pid."""
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(rd)
            _pin(path, PIN_OFF, PIN_LEN, 1, os.O_RDWR)   # PIN_WRITE; closes the fd
            os.write(wr, b'p')
            time.sleep(120)
        finally:
            os._exit(0)
    os.close(wr)
    try:
        assert os.read(rd, 1) == b'p', 'the pinning child failed'
    finally:
        os.close(rd)
    return pid


@pytest.mark.mount_options('policy=wait', 'wait_timeout=30')
def test_unmount_answers_parked_truncates_and_event_reads(mnt, pinhold_exe):
    path = mnt.path('f')
    with open(path, 'wb') as f:
        f.write(b'\x44' * FILE_SIZE)
    holder = _pin_and_stay(path)
    reader = {}

    def read_events():
        fd = os.open(path, os.O_RDONLY)
        try:
            _, after, _ = events(fd, 0, 0)
            while True:
                evs, after, _ = events(fd, after, 1000)
        except OSError as e:
            reader['errno'] = e.errno
        finally:
            os.close(fd)
    t = threading.Thread(target=read_events, daemon=True)
    op = None
    try:
        op = _start_truncate(pinhold_exe, path)
        assert _wait_events(mnt, 1)
        t.start()
        time.sleep(0.3)
        assert mnt.kill_daemon(signal.SIGTERM) == 0
        out, _ = op.communicate(timeout=10)
        t.join(10)
    finally:
        if op is not None:
            reap_op(op)
        os.kill(holder, signal.SIGKILL)
        os.waitpid(holder, 0)
    assert 'result errno=0 ' not in out, out
    assert not t.is_alive() and reader.get('errno') in (errno.ENOTCONN, errno.ECONNABORTED,
                                                        errno.EINTR, errno.ENODEV), reader
    assert mnt.sanitizer_reports() == []

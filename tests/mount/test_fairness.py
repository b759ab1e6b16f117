"""One user's parked requests and big reads cost the others nothing (issue
15, items 8 and 9), against a live mount, over whichever transport
PINFS_TEST_TRANSPORT names (run it with both).

A parked request (an EVENTS read waiting for events, a truncate waiting on
pins) is answered later; over io_uring it keeps its ring entry until then.
The daemon parks at most -o max_parked (default 16) of one user's requests
and, over io_uring, at most 8 per ring thread, so that entries always wait
for the requests answered at once; past that, EVENTS answers EAGAIN and a
truncate that would wait is refused.

The stat checks are liveness checks with a wide margin (no stat may take 2 s;
before the bound, one stat waited 4 s and 97 were done in 5 s where 22 000
are now); the figures are in README.md (scripts/bench-fairness).
"""

import errno
import os
import struct
import subprocess
import time

import pytest

from pinfs_mount import compile_helper, user_runnable, wait_until
from pinfs_util import OP_RESULT, reap_op, start_op

MiB = 1 << 20
USER = 1000                     # the flooding user
FLOOD_THREADS = 3000            # well above every ring's entries before the bound
MAX_PARKED = 16                 # -o max_parked's default (fusefs/fusefs.h)

# PINFS_IOC_STATS (include/pinfs/abi.h): struct pinfs_stats, two struct
# pinfs_counters of 20 u64; the mount's `parked` is its 18th field
STATS_SIZE = 2 * 20 * 8
IOC_STATS = (2 << 30) | (STATS_SIZE << 16) | (0xb7 << 8) | 7
PARKED_OFF = 20 * 8 + 17 * 8


@pytest.fixture(scope='module')
def evflood_exe():
    """tests/mount/evflood.c, compiled, in a place user 1000 can run it from."""
    exe = compile_helper('evflood', extra=['-lpthread'])
    return user_runnable(exe)


def parked(path):
    """The mount's parked requests now (root's view: every user's)."""
    import fcntl
    fd = os.open(path, os.O_RDONLY)
    try:
        buf = bytearray(STATS_SIZE)
        fcntl.ioctl(fd, IOC_STATS, buf)
    finally:
        os.close(fd)
    return struct.unpack_from('<Q', buf, PARKED_OFF)[0]


def start_flood(exe, path, seconds, threads=FLOOD_THREADS):
    """evflood as user 1000: `threads` threads loop on EVENTS (1 s timeout)
    for `seconds`; returns the Popen once every thread runs."""
    fl = subprocess.Popen([exe, path, str(threads), str(seconds)], user=USER, group=USER,
                          extra_groups=[], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    try:
        line = fl.stdout.readline().strip()
        assert line == 'ready', (line, fl.stderr.read())
    except BaseException:
        fl.kill()
        fl.wait()
        raise
    return fl


def end_flood(fl, timeout=30):
    """The flood's counts once it ended: calls, waited, eagain, errors, first_error."""
    try:
        out, err = fl.communicate(timeout=timeout)
    finally:
        if fl.poll() is None:
            fl.kill()
            fl.wait()
    assert fl.returncode == 0, (out, err)
    counts = dict(kv.split('=') for kv in out.split())
    return {k: int(v) for k, v in counts.items()}


def timed_stats(path, seconds):
    """Stats of `path` (each a request: -o timeout=0) for `seconds`: the
    latencies, in seconds."""
    lat = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        os.stat(path)
        lat.append(time.monotonic() - t0)
    return lat


def shared_file(mnt, name='f', size=0):
    path = mnt.path(name)
    with open(path, 'wb') as f:
        for _ in range(size // MiB):
            f.write(os.urandom(MiB))
    os.chmod(path, 0o644)
    return path


@pytest.mark.mount_options('allow_other', 'timeout=0')
@pytest.mark.watchdog(180)
def test_a_users_flood_of_parked_events_reads_leaves_others_stats_served(mnt, evflood_exe):
    """3 000 threads of one user loop on EVENTS (nothing ever comes, so each
    call the daemon takes waits out its 1 s): at most 16 of them are parked
    at once, the others get EAGAIN (and back off, as pinfsctl does), and
    root's stats meanwhile are served as usual, none taking 2 s."""
    path = shared_file(mnt)
    fl = start_flood(evflood_exe, path, 12)
    try:
        time.sleep(1.5)                   # every thread has had its go
        seen = [parked(path)]
        lat = timed_stats(path, 4)
        seen.append(parked(path))
    finally:
        counts = end_flood(fl)
    assert max(lat) < 2.0, 'a stat took %.2f s (%d stats)' % (max(lat), len(lat))
    assert len(lat) >= 1000, '%d stats in 4 s, the slowest %.3f s' % (len(lat), max(lat))
    assert counts['errors'] == 0, counts
    assert counts['eagain'] > FLOOD_THREADS, counts      # the bound answered
    assert counts['waited'] > 0, counts                  # and some did wait
    assert all(0 < n <= MAX_PARKED for n in seen), seen
    assert wait_until(lambda: parked(path) == 0, 5)


@pytest.mark.mount_options('allow_other', 'timeout=0', 'max_parked=2')
@pytest.mark.watchdog(120)
def test_max_parked_sets_the_bound_and_other_users_are_not_bound_by_it(mnt, evflood_exe):
    """-o max_parked=2: two of user 1000's EVENTS reads are parked; root's
    own waits are parked beside them (the bound is each user's)."""
    path = shared_file(mnt)
    fl = start_flood(evflood_exe, path, 6, threads=50)
    try:
        # a wait that timed out is renewed at once, but not in no time
        assert wait_until(lambda: parked(path) == 2, 5), parked(path)
        time.sleep(1)
        assert parked(path) <= 2
        root = subprocess.Popen([evflood_exe, path, '2', '3'], stdout=subprocess.PIPE,
                                universal_newlines=True)
        try:
            assert root.stdout.readline().strip() == 'ready'
            assert wait_until(lambda: parked(path) == 4, 5), parked(path)
        finally:
            rc = end_flood(root)
        assert rc['waited'] > 0 and rc['eagain'] == 0 and rc['errors'] == 0, rc
    finally:
        counts = end_flood(fl)
    assert counts['errors'] == 0 and counts['eagain'] > 0, counts


@pytest.mark.mount_options('policy=wait', 'wait_timeout=30', 'max_parked=1')
@pytest.mark.watchdog(120)
def test_a_truncate_past_the_parked_bound_is_refused_at_once(mnt, holders, pinhold_exe):
    """policy wait, -o max_parked=1: a truncate of a pinned file waits for
    the pin; the same user's truncate of another pinned file is refused
    with EBUSY at once instead of waiting too; the first goes through when
    its pin ends. (Two files: the kernel lets one truncate of a file at a
    time reach the daemon.)"""
    a, b = shared_file(mnt, 'a', MiB), shared_file(mnt, 'b', MiB)
    ha, hb = holders(a), holders(b)
    lease = ha.pin(0, MiB, 'w')
    hb.pin(0, MiB, 'w')
    first = start_op(pinhold_exe, ['truncate', a, '0'])
    try:
        assert wait_until(lambda: parked(a) == 1, 5)
        assert first.poll() is None
        second = start_op(pinhold_exe, ['truncate', b, '0'])
        try:
            out, _ = second.communicate(timeout=10)
        finally:
            reap_op(second)
        m = OP_RESULT.search(out)
        assert m and int(m.group(1)) == errno.EBUSY, out
        assert float(m.group(2)) < 2000, out
        assert first.poll() is None          # still waiting
        ha.unpin(lease)
        out, _ = first.communicate(timeout=10)
        m = OP_RESULT.search(out)
        assert m and int(m.group(1)) == 0, out
    finally:
        reap_op(first)
    assert os.stat(a).st_size == 0
    assert os.stat(b).st_size == MiB
    assert parked(a) == 0

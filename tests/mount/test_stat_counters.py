"""What stat, pinfsctl stats and pinfsctl events report after pins,
truncates, hole punches and holder exits, on a live mount.

The kernel caches attributes for -o timeout (default 86400 s), so whatever
the daemon changes behind the kernel's back (a pin filling holes) must be
invalidated by the daemon; counters and events must say what really is.
The holders are pinhold processes (see test_pins.py).
"""

import os
import re
import time

import pytest

from pinfs_mount import run, wait_until
from pinfs_util import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, KiB, MiB, fallocate
from test_pins import PINFSCTL, Holder, holders, needs_pinfsctl, pinhold_exe  # noqa: F401

pytestmark = [pytest.mark.needs_daemon]

BLOCK = 4096


def du_kib(path):
    res = run(['du', '-k', path])
    assert res.returncode == 0, res.stderr
    return int(res.stdout.split()[0])


def ctl_stats(path):
    """`pinfsctl stats PATH` as a dict of ints (the mount's transport: a word)."""
    res = run([PINFSCTL, 'stats', path])
    assert res.returncode == 0, res.stderr
    out = {}
    for line in res.stdout.splitlines():
        name, value = line.split(':')
        out[name.strip()] = value.strip() if name == 'transport' else int(value)
    return out


# --------------------------------------------------------------------------
# A. attributes stay true after a pin

def test_pin_of_a_hole_shows_in_stat_and_du_at_once(mnt, holders):
    path = mnt.path('sparse')
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, 4 * MiB)
    os.close(fd)
    st0 = os.stat(path)                       # the kernel caches these attributes
    assert st0.st_blocks == 0 and du_kib(path) == 0
    time.sleep(0.01)
    h = holders(path)
    h.pin(1 * MiB, 512 * KiB, 'w')            # a hole: 128 blocks are allocated
    st1 = os.stat(path)
    assert st1.st_blocks >= 512 * KiB // 512, 'st_blocks %d after pinning a 512 KiB hole' \
        % st1.st_blocks
    assert du_kib(path) >= 512
    assert st1.st_size == 4 * MiB
    assert st1.st_ctime_ns > st0.st_ctime_ns, 'allocating blocks changes ctime'
    # a pin of what is already allocated changes nothing
    h.pin(1 * MiB, 4 * KiB, '')
    assert os.stat(path).st_blocks == st1.st_blocks


# --------------------------------------------------------------------------
# B. counters and events are right

@needs_pinfsctl
def test_truncate_and_punch_drop_freed_blocks_from_dirty_and_clean_at_once(mnt):
    path = mnt.path('f')
    with open(path, 'wb') as f:
        f.write(b'x' * (8 * MiB))             # 2048 blocks, dirty until writeback
    s = ctl_stats(path)
    assert s['dirty'] + s['clean'] == 2048, s
    os.truncate(path, 1 * MiB)                # 256 blocks left
    s = ctl_stats(path)
    assert s['dirty'] + s['clean'] == 256 and s['dirty'] <= 256, s
    m = ctl_stats(mnt.dir)
    assert m['dirty'] <= 256 + 8, m           # the root directory's blocks at most
    fd = os.open(path, os.O_RDWR)
    try:
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 256 * KiB, 512 * KiB)
    finally:
        os.close(fd)
    s = ctl_stats(path)
    assert s['dirty'] + s['clean'] == 128 and s['dirty'] <= 128, s
    assert 128 * BLOCK // 512 <= os.stat(path).st_blocks < 256 * BLOCK // 512  # + map blocks
    os.unlink(path)
    assert wait_until(lambda: ctl_stats(mnt.dir)['dirty'] <= 8, 5), ctl_stats(mnt.dir)


@needs_pinfsctl
def test_exit_event_counts_leases_in_its_own_field_not_in_err(mnt, holders):
    path = mnt.path('f')
    with open(path, 'wb') as f:
        f.write(b'x' * (1 * MiB))
    h = holders(path)
    h.pin(0, 64 * KiB, 'w')
    h.pin(128 * KiB, 64 * KiB, 'w')
    pid = h.pid
    assert h.exit() == 0
    res = run([PINFSCTL, 'events', '--count', '3', '--timeout', '5', mnt.dir], timeout=10)
    assert res.returncode == 0, res
    exits = [ln for ln in res.stdout.splitlines() if re.search(r'\bexit\b', ln)]
    assert len(exits) == 1, res.stdout
    assert re.search(r'pid=%d/' % pid, exits[0]), exits[0]
    assert re.search(r'\bleases=2\b', exits[0]), exits[0]
    assert re.search(r'\berr=0\b', exits[0]), exits[0]


@needs_pinfsctl
def test_events_count_with_timeout_gives_up_with_exit_1(mnt, holders):
    path = mnt.path('f')
    with open(path, 'wb') as f:
        f.write(b'x' * (64 * KiB))
    h = holders(path)
    lease = h.pin(0, 4 * KiB, '')
    t0 = time.monotonic()
    res = run([PINFSCTL, 'events', '--count', '5', '--timeout', '1.5', mnt.dir], timeout=10)
    took = time.monotonic() - t0
    assert res.returncode == 1, res
    assert 1.4 <= took < 4, took
    assert len(res.stdout.splitlines()) == 1, res.stdout      # the pin, printed as it came
    assert re.search(r'timeout', res.stderr) and '1 of 5' in res.stderr, res.stderr
    # enough events within the time: exit 0 at once
    h.unpin(lease)
    t0 = time.monotonic()
    res = run([PINFSCTL, 'events', '--count', '2', '--timeout', '5', mnt.dir], timeout=10)
    assert res.returncode == 0, res
    assert time.monotonic() - t0 < 2
    assert len(res.stdout.splitlines()) == 2, res.stdout
    # a bad value is a usage error
    res = run([PINFSCTL, 'events', '--timeout', 'soon', mnt.dir], timeout=10)
    assert res.returncode == 2, res
    res = run([PINFSCTL, '--help'], timeout=10)
    assert '--timeout' in res.stdout

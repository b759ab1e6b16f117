"""The positions the kernel shipped, beside the 2019 ones (issue 17, item 3),
and pins told apart from ordinary references (item 5), on a live mount.

 - wait without bound: -o wait_timeout=inf, or a file's own
   user.pinfs.wait_timeout: the truncate waits for as long as the pin lives,
   stays interruptible (EINTR, file unchanged) and bounded by max_parked;
 - policy refuse_longterm: a long-term pin is refused at pin time with
   EOPNOTSUPP, a short one is allowed and truncate waits for it;
 - short-term pins (PINFS_PIN_SHORT): truncate waits for them under every
   policy, and the daemon revokes one that outlives -o short_pin_max;
 - pinfsctl stats shows open files and plain mappings beside the pins: a
   plain mapping never blocks truncate, a pin does.

No timed assertions: "waited beyond the timeout" is shown by the operation
still being under way (its thread alive, no answer) after the bound passed,
and "waited until the unpin" by the order of events.
"""
import errno
import mmap
import os
import subprocess
import threading
import time

import pytest

from pinfs_mount import wait_until
from pinfs_util import KiB, MiB, interrupt_op, pattern, read_file, write_file
from conftest import holders, pinhold_exe  # noqa: F401
from test_pins import (PINFSCTL, _waits, list_leases, mount_stats, needs_pinfsctl, set_policy,
                       get_policy,
                       FILE_SIZE, PIN_OFF, PIN_LEN, TRUNC_TO)

pytestmark = [pytest.mark.needs_daemon]

EV_REVOKE = 4
POLICY_NOLONGTERM = 5
XATTR_WAIT = 'user.pinfs.wait_timeout'


def _setup(mnt, name='f', seed=3):
    path = os.path.join(mnt.dir, name)
    data = pattern(seed, FILE_SIZE)
    write_file(path, data)
    return path, data


class Truncate:
    """os.truncate(path, TRUNC_TO) in a thread: started once the daemon says
    it waits (a new PINFS_EV_WAIT event); .err once done."""

    def __init__(self, path, size=TRUNC_TO):
        self.path, self.size, self.err, self.order = path, size, None, []
        waits0 = _waits(path)
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()
        assert wait_until(lambda: _waits(path) > waits0 or not self.t.is_alive(), 10), \
            'no WAIT event within 10 s'
        assert self.t.is_alive(), 'truncate returned %s without waiting' % self.err

    def _run(self):
        try:
            os.truncate(self.path, self.size)
            self.err = 0
        except OSError as e:
            self.err = e.errno
        self.order.append('truncated')

    def still_waiting_after(self, secs):
        """Does the truncate still wait `secs` seconds from now?"""
        self.t.join(secs)
        return self.t.is_alive()

    def join(self, secs=30):
        self.t.join(secs)
        assert not self.t.is_alive(), 'truncate still waits %s s later' % secs
        return self.err


def ctl_stats(path):
    res = subprocess.run([PINFSCTL, 'stats', path], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, timeout=30)
    assert res.returncode == 0, res.stderr
    out = {}
    for line in res.stdout.splitlines():
        name, value = line.split(':')
        out[name.strip()] = value.strip()
    return {k: (int(v) if v.isdigit() else v) for k, v in out.items()}


# --------------------------------------------------------------------------
# wait without bound

@pytest.mark.mount_options('policy=wait', 'wait_timeout=inf')
def test_wait_timeout_inf_waits_until_unpin_and_a_files_own_bound_still_applies(mnt, holders):
    path, data = _setup(mnt)
    bounded, bdata = _setup(mnt, 'bounded', 4)
    os.setxattr(bounded, XATTR_WAIT, b'0.5')
    assert os.getxattr(bounded, XATTR_WAIT) == b'0.5'
    hb = holders(bounded)
    lb = hb.pin(PIN_OFF, PIN_LEN, 'w')
    # the file's own 0.5 s applies under the mount's inf
    tb = Truncate(bounded)
    assert tb.join(30) == errno.EBUSY
    assert read_file(bounded) == bdata
    hb.unpin(lb)

    h = holders(path)
    lease = h.pin(PIN_OFF, PIN_LEN, 'w')
    t = Truncate(path)
    # far beyond any bound a finite timeout of this test would give
    assert t.still_waiting_after(3), 'wait_timeout=inf gave %s' % t.err
    assert [l['state'] for l in list_leases(path)] == ['active']
    t.order.append('unpinned')
    h.unpin(lease)
    assert t.join() == 0
    assert t.order == ['unpinned', 'truncated']
    assert os.stat(path).st_size == TRUNC_TO
    assert read_file(path) == data[:TRUNC_TO]


def test_wait_timeout_xattr_takes_seconds_or_inf_only(mnt):
    path, _ = _setup(mnt)
    for good in (b'inf', b'0', b'2.5', b'30'):
        os.setxattr(path, XATTR_WAIT, good)
        assert os.getxattr(path, XATTR_WAIT) == good
    for bad in (b'-1', b'soon', b'nan', b'1s', b''):
        with pytest.raises(OSError) as e:
            os.setxattr(path, XATTR_WAIT, bad)
        assert e.value.errno == errno.EINVAL, bad
    assert os.getxattr(path, XATTR_WAIT) == b'30'
    os.removexattr(path, XATTR_WAIT)


@pytest.mark.mount_options('policy=wait', 'wait_timeout=0.3', 'max_parked=1')
def test_per_file_inf_wait_is_bounded_by_max_parked_and_blocks_new_pins(mnt, holders):
    path, data = _setup(mnt)
    os.setxattr(path, XATTR_WAIT, b'inf')
    other, odata = _setup(mnt, 'other', 5)
    h = holders(path)
    lease = h.pin(PIN_OFF, PIN_LEN, 'w')
    ho = holders(other)
    lo = ho.pin(PIN_OFF, PIN_LEN, 'w')
    t = Truncate(path)
    assert t.still_waiting_after(1.5), 'the file\'s inf gave %s after the mount\'s 0.3 s' % t.err
    # fairness: no new pin of the range while the truncate waits
    with pytest.raises(OSError) as e:
        h.pin(PIN_OFF, 4 * KiB, 'w')
    assert e.value.errno == errno.EAGAIN
    # max_parked=1: this user's second wait is refused, not parked
    os.setxattr(other, XATTR_WAIT, b'inf')
    try:
        os.truncate(other, TRUNC_TO)
        err = 0
    except OSError as e2:
        err = e2.errno
    assert err == errno.EBUSY
    assert read_file(other) == odata
    h.unpin(lease)
    assert t.join() == 0
    assert read_file(path) == data[:TRUNC_TO]
    ho.unpin(lo)


@pytest.mark.mount_options('policy=wait', 'wait_timeout=0.3')
def test_a_files_inf_wait_interrupted_gives_eintr_and_changes_nothing(mnt, holders, pinhold_exe):
    path, data = _setup(mnt)
    os.setxattr(path, XATTR_WAIT, b'inf')
    h = holders(path)
    lease = h.pin(PIN_OFF, PIN_LEN, 'w')
    # interrupted 1 s into the wait: past the mount's 0.3 s
    err, ms = interrupt_op(pinhold_exe, ['truncate', path, str(TRUNC_TO)], settle=1.0)
    assert err == errno.EINTR, errno.errorcode.get(err, err)
    assert os.stat(path).st_size == FILE_SIZE
    assert read_file(path) == data
    assert [l['id'] for l in list_leases(path)] == [lease]
    h.unpin(lease)


@pytest.mark.mount_options('policy=wait', 'wait_timeout=inf')
def test_mount_wait_inf_interrupted_gives_eintr_and_changes_nothing(mnt, holders, pinhold_exe):
    path, data = _setup(mnt)
    h = holders(path)
    lease = h.pin(PIN_OFF, PIN_LEN, 'w')
    err, ms = interrupt_op(pinhold_exe, ['punch', path, str(PIN_OFF), str(PIN_LEN)], settle=1.0)
    assert err == errno.EINTR, errno.errorcode.get(err, err)
    assert read_file(path) == data
    assert [l['id'] for l in list_leases(path)] == [lease]
    # a SIGKILLed waiter: the wait ends with it, the next truncate goes on
    op = subprocess.Popen([pinhold_exe, '--op', 'truncate', path, str(TRUNC_TO)],
                          stdout=subprocess.PIPE, universal_newlines=True)
    assert op.stdout.readline().strip() == 'ready'
    time.sleep(0.5)
    op.kill()
    op.wait(10)
    # the kernel sent INTERRUPT for it: answered, not left parked to run
    # once the pin is gone
    assert wait_until(lambda: mount_stats(path)['parked'] == 0, 10), mount_stats(path)
    assert read_file(path) == data
    h.unpin(lease)
    time.sleep(0.2)
    assert os.stat(path).st_size == FILE_SIZE
    os.truncate(path, TRUNC_TO)
    assert read_file(path) == data[:TRUNC_TO]


# --------------------------------------------------------------------------
# refuse_longterm

@pytest.mark.mount_options('policy=refuse_longterm')
def test_refuse_longterm_refuses_long_pins_and_waits_for_short_ones(mnt, holders):
    path, data = _setup(mnt)
    assert get_policy(mnt.dir, mount=True)[0] == POLICY_NOLONGTERM
    h = holders(path)
    for flags in ('w', 'wr', '-'):
        with pytest.raises(OSError) as e:
            h.pin(PIN_OFF, PIN_LEN, flags)
        assert e.value.errno == errno.EOPNOTSUPP, flags
    assert list_leases(path) == []
    lease = h.pin(PIN_OFF, PIN_LEN, 'ws')
    assert [l['id'] for l in list_leases(path)] == [lease]
    t = Truncate(path)
    assert t.still_waiting_after(0.5)
    t.order.append('unpinned')
    h.unpin(lease)
    assert t.join() == 0
    assert t.order == ['unpinned', 'truncated']
    assert read_file(path) == data[:TRUNC_TO]
    if PINFSCTL:
        s = ctl_stats(mnt.dir)
        assert s['longterm_refused'] == 3, s


@needs_pinfsctl
def test_refuse_longterm_per_file_by_xattr_and_pinfsctl(mnt, holders):
    path, _ = _setup(mnt)
    plain, _ = _setup(mnt, 'plain', 6)
    os.setxattr(path, 'user.pinfs.policy', b'refuse_longterm')
    assert get_policy(path)[0] == POLICY_NOLONGTERM
    h = holders(path)
    with pytest.raises(OSError) as e:
        h.pin(PIN_OFF, PIN_LEN, 'w')
    assert e.value.errno == errno.EOPNOTSUPP
    hp = holders(plain)
    hp.unpin(hp.pin(PIN_OFF, PIN_LEN, 'w'))   # the mount's fail: allowed
    os.removexattr(path, 'user.pinfs.policy')
    res = subprocess.run([PINFSCTL, 'policy', path, 'refuse_longterm'], stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert os.getxattr(path, 'user.pinfs.policy') == b'refuse_longterm'
    with pytest.raises(OSError) as e:
        h.pin(PIN_OFF, PIN_LEN, 'w')
    assert e.value.errno == errno.EOPNOTSUPP
    h.unpin(h.pin(PIN_OFF, PIN_LEN, 'ws'))
    assert ctl_stats(path)['longterm_refused'] == 2


# --------------------------------------------------------------------------
# short-term pins

@pytest.mark.parametrize('policy', ['fail', 'revoke', 'wait', 'break'])
def test_truncate_waits_for_a_short_pin_under_every_policy(mnt, holders, policy):
    path, data = _setup(mnt)
    set_policy(path, policy)
    h = holders(path)
    lease = h.pin(PIN_OFF, PIN_LEN, 'wrs')
    assert [l['flags'] & 0x20 for l in list_leases(path)] == [0x20]
    t = Truncate(path)
    assert t.still_waiting_after(0.5)
    t.order.append('unpinned')
    h.unpin(lease)
    assert t.join() == 0
    assert t.order == ['unpinned', 'truncated']
    assert read_file(path) == data[:TRUNC_TO]
    h.sync()
    assert h.signals() == [], 'a short pin is waited for, never broken or revoked'


@pytest.mark.mount_options('short_pin_max=1')
@pytest.mark.parametrize('flags', ['ws', 'wrs'])
def test_a_short_pin_past_short_pin_max_is_revoked_and_truncate_goes_on(mnt, holders, flags):
    path, data = _setup(mnt)
    h = holders(path)
    lease = h.pin(PIN_OFF, PIN_LEN, flags)
    t = Truncate(path)             # policy fail: waits for the short pin
    assert t.join() == 0           # ... until the daemon revoked it
    assert read_file(path) == data[:TRUNC_TO]
    assert [(l['id'], l['state']) for l in list_leases(path)] == [(lease, 'revoked')]
    h.sync()
    sigs = [s[0] for s in h.signals()]
    # SIGBUS (7) only for the holder that accepted revocation
    assert sigs == ([7] if 'r' in flags else []), sigs
    if PINFSCTL:
        assert ctl_stats(mnt.dir)['short_expired'] == 1
    h.unpin(lease)


@needs_pinfsctl
def test_pinfsctl_pins_and_stats_show_short_pins(mnt, holders):
    path, _ = _setup(mnt)
    h = holders(path)
    a = h.pin(PIN_OFF, PIN_LEN, 'ws')
    b = h.pin(0, 4 * KiB, 'w')
    res = subprocess.run([PINFSCTL, 'pins', mnt.dir], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, timeout=30)
    assert res.returncode == 0, res.stderr
    rows = {int(l.split()[0]): l.split()[7] for l in res.stdout.splitlines()[1:]}
    assert rows == {a: 'W,short', b: 'W'}, res.stdout
    s = ctl_stats(path)
    assert (s['pins'], s['short_pins'], s['long_pins']) == (2, 1, 1), s
    h.unpin(a)
    h.unpin(b)


# --------------------------------------------------------------------------
# Kara's pin counting: references that are not pins

@needs_pinfsctl
def test_a_plain_mapping_is_counted_apart_from_pins_and_never_blocks_truncate(mnt, holders):
    path, data = _setup(mnt)
    fd = os.open(path, os.O_RDWR)
    try:
        m = mmap.mmap(fd, FILE_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        try:
            assert m[PIN_OFF:PIN_OFF + 16] == data[PIN_OFF:PIN_OFF + 16]   # a page fill
            # open_handles counts pinfsctl's own open file too
            s = ctl_stats(path)
            assert (s['pins'], s['open_handles'], s['mapped']) == (0, 2, 1), s
            ms = ctl_stats(mnt.dir)
            assert ms['mapped_files'] == 1 and ms['open_handles'] >= 1, ms
            # an ordinary reference: truncate (policy fail) goes ahead at once
            os.truncate(path, FILE_SIZE - 64 * KiB)
            assert os.stat(path).st_size == FILE_SIZE - 64 * KiB
        finally:
            m.close()
    finally:
        os.close(fd)
    h = holders(path)                  # pinhold opens the file: one handle
    lease = h.pin(PIN_OFF, PIN_LEN, 'w')
    s = ctl_stats(path)
    assert (s['pins'], s['long_pins'], s['open_handles']) == (1, 1, 2), s
    with pytest.raises(OSError) as e:
        os.truncate(path, TRUNC_TO)
    assert e.value.errno == errno.EBUSY     # a pin does block it
    h.unpin(lease)
    h.exit()
    assert wait_until(lambda: ctl_stats(path)['open_handles'] == 1, 10), ctl_stats(path)
    assert ctl_stats(path)['mapped'] == 0

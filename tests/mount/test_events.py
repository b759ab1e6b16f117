"""Lease notices go only to holders that asked (issue 17), and the pollable
event channel.

Under policy break a holder that pinned from client.h alone
(PINFS_PIN_WRITE, no handler) used to be killed by SIGIO's default action.
Now: no notice unless asked for; a holder may name a signal
(PINFS_PIN_NOTIFY_SIGNAL) or take records from its event channel
(PINFS_PIN_NOTIFY_EVENTS, pinfs_event_open), which carry the lease id, the
file, the range, the policy and the holder's cookie. The holder here is
tests/mount/evholder.c, built on libpinfs; it installs no signal handler
unless a test makes it catch a signal (block it, read a signalfd).
"""

import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest

from pinfs_mount import BUILD, compile_helper, run
from pinfs_util import as_user

pytestmark = [pytest.mark.needs_daemon]

EV_WAIT, EV_BREAK, EV_REVOKE = 7, 3, 4
POLICY_WAIT, POLICY_BREAK, POLICY_REVOKE = 3, 4, 2
LEASE_ACTIVE, LEASE_REVOKED = 1, 3
SI_QUEUE = -1
BREAK_S = 1.0
SIZE = 256 * 1024
RECORD = struct.Struct('<7Q4I3Q')  # struct pinfs_lease_event, 96 bytes
assert RECORD.size == 96


@pytest.fixture(scope='module')
def evholder_exe():
    lib = os.path.join(BUILD, 'libpinfs_client.a')
    if not os.path.exists(lib):
        pytest.skip('no %s' % lib)
    exe = compile_helper('evholder', [lib], sanitize=True)
    yield exe
    shutil.rmtree(os.path.dirname(exe), ignore_errors=True)


class EvHolder:
    """One evholder process on `path`: cmd() sends a line, returns the answer."""

    def __init__(self, exe, path):
        self.p = subprocess.Popen([exe, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, bufsize=1)
        assert self.line(10) == 'ready'

    def line(self, timeout):
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        assert r, 'evholder: no answer within %s s (exit %s)' % (timeout, self.p.poll())
        s = self.p.stdout.readline()
        assert s, 'evholder died: exit %s, stderr %r' % (self.p.wait(5), self.p.stderr.read())
        return s.strip()

    def cmd(self, text, timeout=30):
        self.p.stdin.write(text + '\n')
        self.p.stdin.flush()
        return self.line(timeout)

    def ok(self, text, timeout=30):
        ans = self.cmd(text, timeout)
        assert ans.startswith('ok'), '%r: %s' % (text, ans)
        return dict(kv.split('=', 1) for kv in ans.split()[1:] if '=' in kv)

    def exit(self):
        """Asks it to exit; its exit status (negative: killed by that signal)."""
        if self.p.poll() is None:
            try:
                self.p.stdin.write('exit\n')
                self.p.stdin.flush()
            except BrokenPipeError:
                pass
        try:
            return self.p.wait(10)
        finally:
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait()


@pytest.fixture
def holders(evholder_exe):
    made = []

    def make(path):
        h = EvHolder(evholder_exe, path)
        made.append(h)
        return h
    yield make
    for h in made:
        if h.p.poll() is None:
            h.p.kill()
        h.p.wait()


def _file(mnt, name, policy, size=SIZE):
    path = mnt.path(name)
    with open(path, 'wb') as f:
        f.write(bytes(range(256)) * (size // 256))
    os.setxattr(path, 'user.pinfs.policy', policy.encode())
    return path


def _truncate(path, size=0):
    try:
        os.truncate(path, size)
        return 0
    except OSError as e:
        return e.errno


def _in_thread(fn):
    res = {}
    t = threading.Thread(target=lambda: res.__setitem__('v', fn()))
    t.start()
    return t, res


# --------------------------------------------------------------------------
# item 1: nobody is killed by a notice they did not ask for

@pytest.mark.mount_options('lease_break_time=%s' % BREAK_S)
def test_unasked_write_holder_survives_break_and_the_truncate_gets_ebusy(mnt, holders):
    path = _file(mnt, 'f', 'break')
    h = holders(path)
    lease = int(h.ok('pin 0 %d w 0 0' % SIZE)['lease'])
    t0 = time.monotonic()
    assert _truncate(path) == 16  # EBUSY: not revocable, after the break time
    assert time.monotonic() - t0 >= BREAK_S * 0.9
    assert os.stat(path).st_size == SIZE
    # alive, answering, its lease still active: no SIGIO killed it
    assert h.p.poll() is None
    assert h.ok('state 0') == {'state': str(LEASE_ACTIVE), 'cookie': '0', 'sig': '0'}
    h.ok('unpin 0')
    assert h.exit() == 0, 'the unasked holder did not exit normally'
    assert lease > 0


@pytest.mark.mount_options('lease_break_time=%s' % BREAK_S)
def test_unasked_revocable_holder_is_revoked_with_sigbus_only(mnt, holders):
    path = _file(mnt, 'f', 'break')
    h = holders(path)
    h.ok('catch %d' % signal.SIGBUS)  # it accepted revocation; SIGIO stays default
    lease = int(h.ok('pin 0 %d wr 0 0' % SIZE)['lease'])
    assert _truncate(path) == 0
    assert os.stat(path).st_size == 0
    assert h.ok('sigwait 5000') == {'sig': str(int(signal.SIGBUS)), 'code': str(SI_QUEUE),
                                    'value': str(lease)}
    assert h.ok('sigwait 200') == {}  # "ok none": no second signal
    assert h.ok('state 0')['state'] == str(LEASE_REVOKED)
    h.ok('unpin 0')
    assert h.exit() == 0


@pytest.mark.mount_options('lease_break_time=10')
def test_a_holder_that_named_a_signal_gets_exactly_it_with_the_lease_id(mnt, holders):
    path = _file(mnt, 'f', 'break')
    h = holders(path)
    h.ok('catch %d' % signal.SIGUSR1)
    lease = int(h.ok('pin 0 %d ws %d 77' % (SIZE, signal.SIGUSR1))['lease'])
    assert h.ok('state 0') == {'state': str(LEASE_ACTIVE), 'cookie': '77',
                               'sig': str(int(signal.SIGUSR1))}
    t, res = _in_thread(lambda: _truncate(path))
    assert h.ok('sigwait 5000') == {'sig': str(int(signal.SIGUSR1)), 'code': str(SI_QUEUE),
                                    'value': str(lease)}
    h.ok('unpin 0')  # cooperative: the truncate goes on before the 10 s
    t.join(8)
    assert not t.is_alive() and res['v'] == 0
    assert h.ok('sigwait 200') == {}
    assert h.exit() == 0


def test_notify_flags_are_checked_at_pin_time(mnt, holders):
    path = _file(mnt, 'f', 'break')
    h = holders(path)
    assert h.cmd('pin 0 4096 ws 0 0') == 'err errno=22'     # no signal named
    assert h.cmd('pin 0 4096 ws 999 0') == 'err errno=22'   # not a signal
    assert h.cmd('pin 0 4096 w 10 0') == 'err errno=22'     # a signal without the flag
    assert h.cmd('pin 0 4096 we 0 0') == 'err errno=107'    # ENOTCONN: no channel yet
    h.ok('open')
    h.ok('pin 0 4096 we 0 0')
    assert h.exit() == 0


# --------------------------------------------------------------------------
# item 2: the event channel

def _record(fields):
    return {k: int(v) for k, v in fields.items()}


@pytest.mark.mount_options('lease_break_time=%s' % BREAK_S)
def test_event_fd_is_readable_on_wait_break_and_revoke_with_the_cookie(mnt, holders):
    path = _file(mnt, 'f', 'break')
    ino = os.stat(path).st_ino
    h = holders(path)
    h.ok('catch %d' % signal.SIGBUS)
    h.ok('open')
    assert h.ok('wait 100') == {} and h.cmd('wait 100') == 'ok timeout'
    cookie = 0xfeedface12345678
    lease = int(h.ok('pin 8192 8192 wre 0 %d' % cookie)['lease'])
    pid = int(h.cmd('pid').split()[1])
    t, res = _in_thread(lambda: _truncate(path, 4096))
    assert h.cmd('wait 5000') == 'ok readable'
    base = dict(lease=lease, cookie=cookie, ino=ino, off=8192, len=8192, lost=0, pid=pid)
    r = _record(h.ok('read'))
    assert r == dict(base, event=EV_WAIT, reason=POLICY_BREAK, break_ms=0)
    # the break record follows the wait record, sent a moment later
    assert h.cmd('wait 5000') == 'ok readable'
    r = _record(h.ok('read'))
    assert 0 < r.pop('break_ms') <= BREAK_S * 1000
    assert r == dict(base, event=EV_BREAK, reason=POLICY_BREAK)
    # the holder does not unpin: revoked when the break time is over
    assert h.cmd('wait 5000') == 'ok readable'
    r = _record(h.ok('read'))
    assert r == dict(base, event=EV_REVOKE, reason=POLICY_BREAK, break_ms=0)
    assert h.cmd('read') == 'err errno=11'
    t.join(10)
    assert res['v'] == 0
    assert h.ok('state 0') == {'state': str(LEASE_REVOKED), 'cookie': str(cookie), 'sig': '0'}
    # the holder chose the channel: the revoke record was its notice, no SIGBUS
    assert h.ok('sigwait 500') == {}
    h.ok('unpin 0')
    assert h.exit() == 0


@pytest.mark.mount_options('wait_timeout=0.5')
def test_event_fd_reports_a_wait_under_policy_wait(mnt, holders):
    path = _file(mnt, 'f', 'wait')
    h = holders(path)
    h.ok('open')
    lease = int(h.ok('pin 0 4096 we 0 5')['lease'])
    assert _truncate(path) == 16
    assert h.cmd('wait 2000') == 'ok readable'
    r = _record(h.ok('read'))
    assert (r['event'], r['lease'], r['cookie'], r['reason']) == (EV_WAIT, lease, 5, POLICY_WAIT)
    assert h.cmd('read') == 'err errno=11'   # no break, no revoke
    assert h.exit() == 0


def _evname(path):
    name = os.getxattr(path, 'user.pinfs.events').decode()
    assert name.startswith('@')
    return '\0' + name[1:]


@pytest.mark.mount_options('lease_break_time=0.3')
def test_another_user_cannot_read_your_events(mnt, holders):
    path = _file(mnt, 'f', 'break')
    os.chmod(path, 0o666)
    name = _evname(path)
    h = holders(path)
    h.ok('catch %d' % signal.SIGBUS)
    h.ok('open')
    h.ok('pin 0 4096 wre 0 1')
    flagdir = tempfile.mkdtemp(prefix='pinfs-spy-')
    os.chmod(flagdir, 0o777)
    flag = os.path.join(flagdir, 'connected')

    def spy():
        # any user may connect; it is greeted as itself and told nothing else
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.connect(name)
        got = [RECORD.unpack(s.recv(4096))]
        open(flag, 'w').close()
        s.settimeout(3)
        try:
            while True:
                data = s.recv(4096)
                if not data:
                    break
                got.append(RECORD.unpack(data))
        except socket.timeout:
            pass
        return [(g[7], g[10]) for g in got]   # (event, holder_pid)

    t, res = _in_thread(lambda: as_user(spy, uid=1000, gid=1000, timeout=20))
    deadline = time.monotonic() + 10
    while not os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.01)
    shutil.rmtree(flagdir, ignore_errors=True)
    assert _truncate(path) == 0
    assert h.cmd('wait 3000') == 'ok readable'
    assert h.ok('drain')['n'] == '3'          # wait, break, revoke: the holder's
    t.join(20)
    spied = res['v']
    assert len(spied) == 1 and spied[0][0] == 0, 'uid 1000 read %r' % spied
    assert spied[0][1] != int(h.cmd('pid').split()[1])
    assert h.exit() == 0


@pytest.mark.mount_options('max_pins=4096')
def test_a_holder_that_never_reads_does_not_block_the_daemon(mnt, holders):
    n = 256
    path = _file(mnt, 'f', 'revoke', size=n * 4096)
    h = holders(path)
    h.ok('catch %d' % signal.SIGBUS)
    h.ok('open')
    for i in range(n):
        h.ok('pin %d 4096 wre 0 %d' % (i * 4096, i + 1))
    # 256 revocations at once, 256 records for a reader that reads none
    assert _truncate(path) == 0
    os.stat(mnt.dir)
    for i in range(n):
        h.ok('unpin %d' % i)
    # again, into the still full channel: the truncate still finishes
    with open(path, 'r+b') as f:
        f.truncate(n * 4096)
    for i in range(8):
        h.ok('pin %d 4096 wre 0 %d' % (i * 4096, 1000 + i))
    assert _truncate(path) == 0
    got = h.ok('drain')
    assert 0 < int(got['n']) < n + 8, got
    # the next record that fits says how many were dropped
    with open(path, 'r+b') as f:
        f.truncate(4096)
    h.ok('pin 0 4096 wre 0 9999')
    assert _truncate(path) == 0
    assert h.cmd('wait 3000') == 'ok readable'
    r = _record(h.ok('read'))
    assert r['cookie'] == 9999 and r['event'] == EV_REVOKE
    assert r['lost'] > 0 and int(got['n']) + r['lost'] == n + 8
    assert h.exit() == 0


@pytest.mark.mount_options('lease_break_time=%s' % BREAK_S)
def test_repin_after_a_revoke_keeps_the_address(mnt, holders):
    path = _file(mnt, 'f', 'revoke')
    h = holders(path)
    h.ok('catch %d' % signal.SIGBUS)
    h.ok('open')
    old = int(h.ok('pin 0 65536 wre 0 42')['lease'])
    res = run(['fallocate', '--punch-hole', '--offset', '0', '--length', '65536', path])
    assert res.returncode == 0, res.stderr
    assert h.cmd('wait 3000') == 'ok readable'
    assert _record(h.ok('read'))['event'] == EV_REVOKE
    assert h.ok('state 0')['state'] == str(LEASE_REVOKED)
    got = h.ok('repin 0')
    assert got['same'] == '1' and int(got['lease']) != old
    st = h.ok('state 0')
    assert st == {'state': str(LEASE_ACTIVE), 'cookie': '42', 'sig': '0'}
    # the new lease's blocks are the file's again: stores through the same
    # address reach read()
    h.ok('store 0 171')
    with open(path, 'rb') as f:
        assert f.read(65536) == b'\xab' * 65536
    h.ok('unpin 0')
    assert h.exit() == 0


INFO_EX = struct.Struct('<4Q4IQ16sQII')     # struct pinfs_lease_info_ex, 88 bytes
assert INFO_EX.size == 88
LIST_EX_SIZE = 16 + 64 * INFO_EX.size
IOC_LIST_EX = (3 << 30) | (LIST_EX_SIZE << 16) | (0xb7 << 8) | 12


def test_list_ex_gives_each_lease_its_cookie_and_signal(mnt, holders):
    import fcntl
    path = _file(mnt, 'f', 'break')
    h = holders(path)
    a = int(h.ok('pin 0 4096 ws %d %d' % (signal.SIGUSR1, 0x1234))['lease'])
    b = int(h.ok('pin 4096 4096 w 0 0')['lease'])
    buf = bytearray(LIST_EX_SIZE)
    struct.pack_into('<4I', buf, 0, 0, 1, 0, 0)      # first 0, all 1
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, IOC_LIST_EX, buf)
    finally:
        os.close(fd)
    first, all_, n, total = struct.unpack_from('<4I', buf, 0)
    assert (n, total) == (2, 2)
    got = {}
    for i in range(n):
        f = INFO_EX.unpack_from(buf, 16 + i * INFO_EX.size)
        got[f[0]] = (f[1], f[2], f[3], f[5], f[10], f[11])   # ino off len flags cookie sig
    ino = os.stat(path).st_ino
    assert got == {a: (ino, 0, 4096, 0x1 | 0x8, 0x1234, int(signal.SIGUSR1)),
                   b: (ino, 4096, 4096, 0x1, 0, 0)}
    assert h.exit() == 0


def test_many_channels_each_get_their_own_records_and_a_dead_one_is_forgotten(mnt, holders):
    files = [_file(mnt, 'f%d' % i, 'revoke', size=4096) for i in range(6)]
    hs = []
    for i, path in enumerate(files):
        h = holders(path)
        h.ok('catch %d' % signal.SIGBUS)
        h.ok('open')
        hs.append((h, int(h.ok('pin 0 4096 wre 0 %d' % (100 + i))['lease'])))
    # one of them dies with its channel open and its lease pinned
    dead, _ = hs.pop()
    dead.p.kill()
    assert dead.p.wait(10) == -signal.SIGKILL
    for path in files:
        assert _truncate(path) == 0
    for i, (h, lease) in enumerate(hs):
        assert h.cmd('wait 3000') == 'ok readable'
        r = _record(h.ok('read'))
        assert (r['event'], r['lease'], r['cookie']) == (EV_REVOKE, lease, 100 + i)
        assert h.cmd('read') == 'err errno=11'     # nobody else's
        h.ok('unpin 0')
        assert h.exit() == 0
    os.statvfs(mnt.dir)


def test_one_user_cannot_take_every_channel_connection(mnt):
    """64 connections per user other than root: the 65th of uid 1000 is
    closed without a greeting, while root (and so everyone else) still
    gets one."""
    path = _file(mnt, 'f', 'break')
    name = _evname(path)

    def flood():
        socks, greeted = [], 0
        try:
            for _ in range(80):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                socks.append(s)
                s.settimeout(5)
                s.connect(name)
                try:
                    greeted += len(s.recv(4096)) == RECORD.size
                except (socket.timeout, ConnectionError):
                    pass
            # root connects while uid 1000 holds its connections
            open(flagpath, 'w').close()
            deadline = time.monotonic() + 10
            while os.path.exists(flagpath) and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            for s in socks:
                s.close()
        return greeted

    flagdir = tempfile.mkdtemp(prefix='pinfs-flood-')
    os.chmod(flagdir, 0o777)
    flagpath = os.path.join(flagdir, 'holding')
    try:
        t, res = _in_thread(lambda: as_user(flood, uid=1000, gid=1000, timeout=60))
        deadline = time.monotonic() + 30
        while not os.path.exists(flagpath) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert os.path.exists(flagpath), 'uid 1000 never finished connecting'
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.settimeout(5)
        s.connect(name)
        assert len(s.recv(4096)) == RECORD.size     # root is greeted
        s.close()
        os.unlink(flagpath)
        t.join(60)
    finally:
        shutil.rmtree(flagdir, ignore_errors=True)
    assert res['v'] == 64, 'uid 1000 was greeted on %r connections' % res['v']


@pytest.mark.mount_options('allow_other')
def test_list_ex_shows_cookies_only_to_their_user_as_lease_query_does(mnt, holders):
    """A cookie is its holder's (often a pointer, as ibverbs' user context):
    PINFS_IOC_LEASE gives it to the holder, its user or root only, and so
    must PINFS_IOC_LIST_EX, which lists a file's leases to whoever may open
    the file."""
    import fcntl
    path = _file(mnt, 'f', 'break')
    os.chmod(path, 0o644)
    h = holders(path)
    lease = int(h.ok('pin 0 4096 ws %d %d' % (signal.SIGUSR1, 0x7ffd12345678))['lease'])

    def list_ex():
        buf = bytearray(LIST_EX_SIZE)
        struct.pack_into('<4I', buf, 0, 0, 0, 0, 0)  # first 0, this file's
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.ioctl(fd, IOC_LIST_EX, buf)
        finally:
            os.close(fd)
        n = struct.unpack_from('<4I', buf, 0)[2]
        return [INFO_EX.unpack_from(buf, 16 + i * INFO_EX.size) for i in range(n)]

    mine = list_ex()
    assert [(f[0], f[10], f[11]) for f in mine] == [(lease, 0x7ffd12345678, int(signal.SIGUSR1))]
    theirs = as_user(list_ex, uid=1001, gid=1001)
    # the lease is listed, its cookie and signal are not
    assert [(f[0], f[10], f[11]) for f in theirs] == [(lease, 0, 0)]
    assert h.exit() == 0

"""The FUSE-over-io_uring transport (pinfs -o io_uring) beside /dev/fuse.

Every test here names its transport itself (so PINFS_TEST_TRANSPORT does not
change them) and sets /sys/module/fuse/parameters/enable_uring for its mount,
restoring the value it found afterwards. Without that file (a kernel without
CONFIG_FUSE_IO_URING, or older than 6.14) they are skipped, not passed.

What "served through io_uring" means here: the mount's STATS say transport
io_uring, and the requests the test makes are counted by the daemon as
having come in on a ring entry (ring_requests), not read from /dev/fuse.
"""

import errno
import os
import re
import signal

import pytest

from pinfs_mount import mount_transport, wait_until
from pinfs_util import interrupt_op, pattern, read_file, write_file
from test_pins import PIN_LEN, PIN_OFF, FILE_SIZE, TRUNC_TO, _setup_file, list_leases

ENABLE_URING = '/sys/module/fuse/parameters/enable_uring'
TRANSPORT_LINE = re.compile(r'pinfs: transport .*$', re.M)  # in the log after a stamp

# enable_uring is machine-wide and read when a mount registers its rings
# (a live mount keeps serving through them when it turns N: tried on 6.18):
# N set here while another test's io_uring mount starts sends that one to
# /dev/fuse, and each test puts back what it found, maybe the other's
# value. So these never run beside another shard (conftest.py).
pytestmark = [pytest.mark.needs_daemon, pytest.mark.exclusive]


def _set_enable_uring(value):
    if not os.path.exists(ENABLE_URING):
        pytest.skip('this kernel has no FUSE over io_uring (%s missing)' % ENABLE_URING)
    with open(ENABLE_URING) as f:
        old = f.read().strip()
    try:
        with open(ENABLE_URING, 'w') as f:
            f.write(value)
    except OSError as e:
        pytest.skip('cannot set %s: %s' % (ENABLE_URING, e))
    return old


@pytest.fixture
def uring_on():
    """enable_uring = Y for the test (before the mount: it is the first
    fixture argument), then the value it found."""
    old = _set_enable_uring('Y')
    yield
    with open(ENABLE_URING, 'w') as f:
        f.write(old)


@pytest.fixture
def uring_off():
    old = _set_enable_uring('N')
    yield
    with open(ENABLE_URING, 'w') as f:
        f.write(old)


def _ring_requests(mnt):
    return mount_transport(mnt.dir)[1]


def _wait_io_uring(mnt):
    """The rings register right after INIT: wait until they serve."""
    assert wait_until(lambda: mount_transport(mnt.dir)[0] == 'io_uring', 5), \
        'the mount does not serve through io_uring: %s; log:\n%s' % (
            mount_transport(mnt.dir), mnt.output())


@pytest.mark.mount_options('io_uring')
def test_io_uring_serves_requests_when_enable_uring_is_y(uring_on, mnt):
    _wait_io_uring(mnt)
    lines = TRANSPORT_LINE.findall(mnt.output())
    assert len(lines) == 1, lines
    assert re.match(r'pinfs: transport io_uring: \d+ queues', lines[0]), lines[0]
    before = _ring_requests(mnt)
    for i in range(200):
        with pytest.raises(FileNotFoundError):
            os.stat(mnt.path('missing-%d' % i))      # one LOOKUP each
    data = pattern(7, 3 * 1024 * 1024 + 123)         # several 1 MiB WRITEs
    write_file(mnt.path('big'), data)
    assert read_file(mnt.path('big')) == data
    after = _ring_requests(mnt)
    # 200 LOOKUPs + create, writes, fsync, open, reads, release: all on the rings
    assert after - before >= 200 + 8, (before, after)


@pytest.mark.mount_options('io_uring')
def test_falls_back_to_dev_fuse_with_one_line_when_enable_uring_is_n(uring_off, mnt):
    lines = TRANSPORT_LINE.findall(mnt.output())
    assert len(lines) == 1, lines
    assert lines[0] == ('pinfs: transport /dev/fuse: the kernel did not offer FUSE over '
                        'io_uring: %s is N (as root: echo Y > %s)' % (ENABLE_URING, ENABLE_URING))
    data = pattern(3, 100000)
    write_file(mnt.path('f'), data)
    assert read_file(mnt.path('f')) == data
    assert mount_transport(mnt.dir) == ('/dev/fuse', 0)


@pytest.mark.mount_options('no_io_uring')
def test_no_io_uring_option_keeps_dev_fuse_even_when_enabled(uring_on, mnt):
    lines = TRANSPORT_LINE.findall(mnt.output())
    assert lines == ['pinfs: transport /dev/fuse: -o no_io_uring'], lines
    os.mkdir(mnt.path('d'))
    assert os.listdir(mnt.dir) == ['d']
    assert mount_transport(mnt.dir) == ('/dev/fuse', 0)


@pytest.mark.mount_options('io_uring')
def test_io_uring_in_background_mode_and_unmount_exits_zero(uring_on, mnt):
    # the harness starts the daemon without -f: the ring threads start after
    # fuse_daemonize(); its stop() fails the test unless the daemon exits 0
    _wait_io_uring(mnt)
    for i in range(50):
        write_file(mnt.path('f%d' % i), pattern(i, 5000))
    for i in range(50):
        assert read_file(mnt.path('f%d' % i)) == pattern(i, 5000)
    assert _ring_requests(mnt) > 100
    assert mnt.stop() == []


@pytest.mark.mount_options('io_uring')
def test_sigterm_over_io_uring_exits_zero(uring_on, mnt):
    _wait_io_uring(mnt)
    write_file(mnt.path('f'), pattern(1, 4096))
    assert mnt.kill_daemon(signal.SIGTERM) == 0


@pytest.mark.mount_options('io_uring')
def test_forget_reaches_the_daemon_through_dev_fuse(uring_on, mnt):
    """FORGET is queued on /dev/fuse while every other request uses the
    rings: the blocks of unlinked files come back only when it is served."""
    _wait_io_uring(mnt)
    st0 = os.statvfs(mnt.dir)
    names = [mnt.path('g%d' % i) for i in range(40)]
    for n in names:
        write_file(n, pattern(5, 64 * 1024))
        os.stat(n)
    fds = [os.open(n, os.O_RDONLY) for n in names[:10]]
    for n in names:
        os.unlink(n)
    used = lambda: st0.f_bfree - os.statvfs(mnt.dir).f_bfree  # noqa: E731
    held = used()
    assert held >= 10 * 16, 'open-unlinked files keep their blocks'
    for fd in fds:
        os.close(fd)          # RELEASE on the ring, then FORGET on /dev/fuse
    assert wait_until(lambda: used() <= held - 10 * 16, 10), \
        'the closed unlinked files kept their blocks: %d used, %d before the close' % (
            used(), held)


@pytest.mark.mount_options('io_uring', 'policy=wait', 'wait_timeout=10')
def test_interrupt_of_a_blocked_request_over_io_uring(uring_on, mnt, holders, pinhold_exe):
    """A truncate that waits for a pin (a request parked in a ring thread) is
    interrupted: INTERRUPT comes through /dev/fuse, the EINTR reply goes back
    on the ring entry, and the other threads kept serving meanwhile."""
    _wait_io_uring(mnt)
    path, data = _setup_file(mnt)
    h = holders(path)
    lease = h.pin(PIN_OFF, PIN_LEN, 'w')

    def while_waiting(op):
        # while the truncate waits, the mount answers others (other entries)
        before = _ring_requests(mnt)
        for i in range(20):
            with pytest.raises(FileNotFoundError):
                os.stat(mnt.path('nope%d' % i))
        assert _ring_requests(mnt) - before >= 20
        assert op.poll() is None, 'the truncate did not wait for the pin'
    # then SIGUSR1: FUSE sends INTERRUPT
    err, ms = interrupt_op(pinhold_exe, ['truncate', path, str(TRUNC_TO)], while_waiting)
    assert err == errno.EINTR, errno.errorcode.get(err, err)
    assert ms < 3000, 'the interruption took %.0f ms to end the wait' % ms
    assert os.path.getsize(path) == FILE_SIZE
    assert read_file(path) == data
    assert [l['id'] for l in list_leases(path)] == [lease]
    h.unpin(lease)


@pytest.mark.mount_options('io_uring', 'policy=revoke')
def test_pin_and_sigbus_revoke_over_io_uring(uring_on, mnt, holders):
    _wait_io_uring(mnt)
    path, data = _setup_file(mnt)
    h = holders(path)
    before = _ring_requests(mnt)
    lease = h.pin(PIN_OFF, PIN_LEN, 'wr')                 # 16 KiB restricted ioctl
    assert [l['id'] for l in list_leases(path)] == [lease]
    os.truncate(path, TRUNC_TO)                          # revokes: SIGBUS to the holder
    assert _ring_requests(mnt) - before >= 3
    assert os.path.getsize(path) == TRUNC_TO
    assert read_file(path) == data[:TRUNC_TO]
    h.sync()
    sigs = h.signals()
    assert [(s[0], s[2]) for s in sigs] == [(signal.SIGBUS, lease)], sigs
    assert [l['state'] for l in list_leases(path)] == ['revoked']
    h.unpin(lease)


@pytest.mark.mount_options('io_uring')
def test_pin_filling_holes_updates_stat_at_once_over_io_uring(uring_on, mnt, holders):
    """A pin that fills holes changes st_blocks behind the kernel's cached
    attributes: the daemon sends inval_inode on /dev/fuse (notifications
    never use the rings) from a handler that runs on a ring thread."""
    _wait_io_uring(mnt)
    path = mnt.path('sparse')
    with open(path, 'wb') as f:
        f.truncate(FILE_SIZE)
    assert os.stat(path).st_blocks == 0
    h = holders(path)
    lease = h.pin(0, 256 * 1024, 'w')
    assert os.stat(path).st_blocks * 512 >= 256 * 1024
    h.unpin(lease)

"""Daemon life cycle: what it says at mount, clean shutdown on signals, and
kill -9 in the middle of a workload (every fsynced byte must survive, fsck
must find the pool clean, and the next mount must work)."""

import hashlib
import fcntl
import json
import os
import random
import re
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest

from pinfs_mount import check_fsck, fsck, mounted, try_mount, wait_until
from pinfs_util import read_file, write_file

pytestmark = pytest.mark.needs_daemon


def check_after_crash(pool):
    """fsck after the daemon was SIGKILLed: a transaction committed but not
    yet applied is replayed and reported as the one repair (exit 1, as
    e2fsck counts a journal replay); anything else must not be found. A
    second run finds the pool clean."""
    res = fsck(pool)
    out = res.stdout + res.stderr
    if res.returncode == 1:
        assert 'replayed' in out and '1 problem found, all repaired' in out, out
    else:
        assert res.returncode == 0, out
    check_fsck(pool)


def test_mount_says_whether_pool_is_pmem_or_msync(mnt):
    mnt.unmount()
    out = mnt.output().lower()
    # /dev/shm is tmpfs, not persistent memory: the daemon must fall back to msync
    assert 'msync' in out, 'pinfs should say at mount that it uses msync; it said:\n' + out
    mnt.start()


def test_a_successful_mount_is_silent_on_the_terminal_and_says_it_in_the_log(mnt):
    """Mount helpers print nothing on success (scripts compare their
    output): the pool's kind and what protects reused blocks go to the log."""
    out, err, log = mnt.logs[-1]
    said = mnt._read(out) + mnt._read(err)
    assert said == '', 'a successful mount printed on the terminal:\n' + said
    text = mnt._read(log)
    assert 'not persistent memory: durability by msync' in text, text
    assert 'cut out of the pool file before reuse' in text, text


def test_mount_right_after_umount_waits_for_the_daemon_that_is_exiting(mnt):
    """umount returns before the daemon has written its clean superblock
    and let go of the pool lock (40-160 ms after a 300 MiB write on a busy
    machine); a script that mounts again at once must not be told the pool
    is in use. The slow exit is played by this test: it holds the pool's
    lock, as the exiting daemon does, and lets go 0.5 s into the mount."""
    write_file(mnt.path('f'), b'kept across the remount\n')
    mnt.unmount()
    fd = os.open(mnt.pool, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        t0 = time.monotonic()
        threading.Timer(0.5, os.close, (fd,)).start()
        mnt.start()                       # fails the test if the mount is refused
        waited = time.monotonic() - t0
    finally:
        try:
            os.close(fd)
        except OSError:
            pass                          # the timer closed it
    assert waited >= 0.4, 'the new mount did not wait for the lock (%.2f s)' % waited
    assert read_file(mnt.path('f')) == b'kept across the remount\n'


def test_mounting_a_mounted_pool_names_the_mount_and_the_daemon(mnt, tmp_path):
    """A second pinfs on a pool a daemon serves in a mount is refused at
    once, naming the mount point and the daemon as fsck.pinfs does; it used
    to wait out the lock (5 s) and say only "pool is in use by another
    pinfs process (pid N, pinfs): it still held the pool 5000 ms later"."""
    other = tmp_path / 'second'
    other.mkdir()
    rc, err = try_mount(mnt.pool, str(other))
    assert rc == 1, err
    lines = [l for l in err.splitlines() if l]
    assert len(lines) == 1, err
    assert 'already mounted at %s by the pinfs daemon (pid %d)' % (
        mnt.dir, mnt.proc.pid) in lines[0], err
    assert 'fusermount3 -u %s' % mnt.dir in lines[0], err
    assert 'still held the pool' not in err, err
    # the first mount serves on
    write_file(mnt.path('f'), b'still served\n')
    assert read_file(mnt.path('f')) == b'still served\n'


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT], ids=['SIGTERM', 'SIGINT'])
def test_signal_unmounts_cleanly_and_daemon_exits_0(mnt, sig):
    data = b'not fsynced, but a clean unmount flushes everything\n' * 100
    write_file(mnt.path('unsynced'), data, fsync=False)
    os.mkdir(mnt.path('dir'))
    proc = mnt.proc
    os.kill(proc.pid, sig)
    try:
        rc = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail('daemon did not exit within 10 s of %s' % sig.name)
    mnt.proc = None          # reaped here; the fixture only clears up the mount
    assert rc == 0, 'daemon exited with %s after %s' % (rc, sig.name)
    assert not mounted(mnt.dir), '%s did not unmount %s' % (sig.name, mnt.dir)
    assert mnt.unexpected_lines() == []
    check_fsck(mnt.pool)
    mnt.start()
    assert read_file(mnt.path('unsynced')) == data
    assert os.path.isdir(mnt.path('dir'))


def test_fusermount_unmount_makes_daemon_exit_0(mnt):
    write_file(mnt.path('f'), b'x', fsync=False)
    mnt.unmount()          # fusermount3 -u, then requires exit status 0
    assert not mounted(mnt.dir)
    check_fsck(mnt.pool)
    mnt.start()
    assert read_file(mnt.path('f')) == b'x'


# --------------------------------------------------------------------------
# kill -9 mid-workload

# The writer runs in its own process so that it can be left blocked or failing
# when the daemon dies.  After each durable step it appends a JSON record to a
# side file outside the mount and fsyncs that, so the side file never claims
# more than the file system promised.
WRITER = r'''
import hashlib, json, os, random, sys

mnt, side = sys.argv[1], sys.argv[2]
sidefd = os.open(side, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

def record(**kw):
    os.write(sidefd, (json.dumps(kw) + '\n').encode())
    os.fsync(sidefd)

def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]

def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

logfd = os.open(os.path.join(mnt, 'log'), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
fsync_dir(mnt)
logged = 0
for i in range(1, 100000):
    d = os.path.join(mnt, 'd%d' % (i % 8))
    if not os.path.isdir(d):
        os.mkdir(d)
        fsync_dir(mnt)
    rnd = random.Random(i)
    data = rnd.randbytes(rnd.choice([0, 1, 4095, 4096, 4097, 65536, 300001, 1 << 20]))
    # durable file: write tmp, fsync, rename into place, fsync the directory
    tmp, final = os.path.join(d, 'tmp%d' % i), os.path.join(d, 'f%d' % i)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    write_all(fd, data)
    os.fsync(fd)
    os.close(fd)
    os.rename(tmp, final)
    fsync_dir(d)
    record(kind='file', path=os.path.relpath(final, mnt), size=len(data),
           sha=hashlib.sha256(data).hexdigest())
    # durable append
    line = b'%08d\n' % i
    write_all(logfd, line)
    os.fdatasync(logfd)
    logged += len(line)
    record(kind='log', size=logged)
    # churn that is never fsynced: the crash may lose it, but it must not
    # corrupt anything else
    u = os.path.join(d, 'u%d' % i)
    with open(u, 'wb') as f:
        f.write(rnd.randbytes(rnd.randrange(1, 20000)))
    os.truncate(u, rnd.randrange(0, 8192))
    old = os.path.join(d, 'u%d' % (i - 8))
    if os.path.exists(old):
        os.unlink(old)
    os.setxattr(final, 'user.i', str(i).encode())
'''


def _expected_data(i):
    """What the writer put in f<i> (same generator, same draws)."""
    rnd = random.Random(i)
    return rnd.randbytes(rnd.choice([0, 1, 4095, 4096, 4097, 65536, 300001, 1 << 20]))


def _records(side):
    with open(side) as f:
        # the last line may be torn if the writer died while appending it
        lines = f.read().split('\n')
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


@pytest.mark.parametrize('records_before_kill', [6, 60])
def test_sigkill_mid_workload_loses_no_fsynced_data(mnt, scratch, records_before_kill):
    side = os.path.join(scratch, 'fsynced.jsonl')
    writer_err = os.path.join(scratch, 'writer.stderr')
    with open(writer_err, 'wb') as err:
        writer = subprocess.Popen([sys.executable, '-c', WRITER, mnt.dir, side],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    try:
        def enough():
            if writer.poll() is not None:
                return True
            return os.path.exists(side) and len(_records(side)) >= records_before_kill
        assert wait_until(enough, 30), 'writer made too little progress in 30 s'
        assert writer.poll() is None, 'writer died before the kill:\n' + read_file(writer_err).decode()

        os.kill(mnt.proc.pid, signal.SIGKILL)
        try:
            writer.wait(timeout=10)   # it fails with ENOTCONN once the daemon is gone
        except subprocess.TimeoutExpired:
            pass
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(timeout=10)
    rc = mnt.kill_daemon()           # reap it and clear away the dead mount
    assert rc == -signal.SIGKILL

    records = _records(side)
    assert len(records) >= records_before_kill
    check_after_crash(mnt.pool)
    mnt.start()

    files = [r for r in records if r['kind'] == 'file']
    logged = max([r['size'] for r in records if r['kind'] == 'log'] + [0])
    for r in files:
        path = mnt.path(r['path'])
        assert os.path.exists(path), 'fsynced file %s lost' % r['path']
        data = read_file(path)
        assert len(data) == r['size'], '%s: %d bytes, expected %d' % (r['path'], len(data), r['size'])
        assert hashlib.sha256(data).hexdigest() == r['sha'], '%s: content differs' % r['path']
    log = read_file(mnt.path('log'))
    assert len(log) >= logged, 'log lost fsynced appends: %d < %d bytes' % (len(log), logged)
    lines = log.split(b'\n')
    complete = [l for l in lines[:-1]]
    assert complete == [b'%08d' % (i + 1) for i in range(len(complete))], 'log content corrupt'

    # rename is atomic: any f<i> that exists, recorded or not, is complete
    for d in sorted(os.listdir(mnt.dir)):
        if not d.startswith('d'):
            continue
        for name in os.listdir(mnt.path(d)):
            if name.startswith('f'):
                i = int(name[1:])
                assert read_file(mnt.path(d, name)) == _expected_data(i), \
                    '%s/%s exists but is not what was written' % (d, name)

    # the recovered file system keeps working
    write_file(mnt.path('after'), b'after the crash')
    mnt.remount()
    assert read_file(mnt.path('after')) == b'after the crash'


def test_sigkill_with_open_unlinked_file_recovers_its_space(mnt):
    st0 = os.statvfs(mnt.dir)
    before = st0.f_bfree * st0.f_frsize
    fd = os.open(mnt.path('orphan'), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, os.urandom(4 << 20))
        os.fsync(fd)
        os.unlink(mnt.path('orphan'))
        os.kill(mnt.proc.pid, signal.SIGKILL)
        time.sleep(0.1)
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    assert mnt.kill_daemon() == -signal.SIGKILL
    check_after_crash(mnt.pool)
    mnt.start()
    assert os.listdir(mnt.dir) == []
    st = os.statvfs(mnt.dir)
    assert st.f_bfree * st.f_frsize >= before - (256 << 10), 'orphan space not reclaimed by recovery'


@pytest.mark.foreground
def test_foreground_daemon_serves_the_same_and_exits_0(mnt):
    """-f (debugging) keeps the daemon attached: it is the process the test
    started, its stderr is the log, and an unmount ends it with exit status 0
    and a clean pool, as in the background mode every other test uses."""
    assert isinstance(mnt.proc, subprocess.Popen) and mnt.proc.poll() is None
    write_file(mnt.path('f'), b'foreground\n')
    res = subprocess.run(['sync', '-f', mnt.path('f')], timeout=30)
    assert res.returncode == 0
    mnt.unmount()                    # requires exit status 0 and no error lines
    assert 'msync' in mnt.output()   # the log went to the captured stderr
    check_fsck(mnt.pool)
    mnt.start()
    assert read_file(mnt.path('f')) == b'foreground\n'


LOG_LINE = re.compile(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \[(\d+)\] (pinfs: .*)$')


def test_background_log_file_is_stamped_private_appended_and_the_daemons_stderr(mnt, scratch):
    """-o logfile (the harness gives every background daemon one): the
    lines syslog would get, stamped with the time and the daemon's pid, in
    a file only its owner reads, which is also the daemon's fd 2 (where
    a sanitizer's or libfuse's raw report goes); a second mount appends."""
    log = os.path.join(scratch, 'pinfs.log')
    mnt.unmount()
    mnt.logfile = log
    for start in (1, 2):
        mnt.start()
        pid = mnt.proc.pid
        assert os.readlink('/proc/%d/fd/2' % pid) == log
        assert stat.S_IMODE(os.stat(log).st_mode) == 0o600
        mnt.unmount()
        lines = read_file(log).decode().splitlines()
        parsed = [LOG_LINE.match(line) for line in lines]
        assert all(parsed), lines
        transport = [m for m in parsed if m.group(2).startswith('pinfs: transport ')]
        assert len(transport) == start, lines          # appended, not truncated
        assert int(transport[-1].group(1)) == pid, (pid, lines)
    mnt.logfile = None
    mnt.start()


def test_a_log_file_that_cannot_be_opened_is_refused_before_the_pool(pool, mountpoint, scratch):
    with open(pool, 'rb') as f:
        before = hashlib.sha256(f.read()).hexdigest()
    bad = os.path.join(scratch, 'no-such-dir', 'pinfs.log')
    rc, err = try_mount(pool, mountpoint, ['logfile=' + bad])
    assert rc == 1, err
    assert err.splitlines() == ['pinfs: -o logfile=%s: No such file or directory' % bad], err
    with open(pool, 'rb') as f:
        assert hashlib.sha256(f.read()).hexdigest() == before   # not opened, not recovered

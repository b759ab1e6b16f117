"""Helpers for the pinfs mount tests: syscalls Python's os module lacks
(renameat2 flags, fallocate modes, utimensat UTIME_NOW/UTIME_OMIT), running
code as another user, deterministic data patterns, and the test helper
processes: pinhold --op runs (interrupt_op), the scripted holder (Holder;
fixtures in conftest.py) and fixtures that make several of them (factory).
"""

import contextlib
import ctypes
import errno
import hashlib
import os
import pickle
import platform
import queue
import random
import re
import select
import signal
import subprocess
import threading
import time
import traceback

import pytest

KiB = 1 << 10
MiB = 1 << 20

_libc = ctypes.CDLL(None, use_errno=True)

AT_FDCWD = -100

# --------------------------------------------------------------------------
# renameat2

RENAME_NOREPLACE = 1 << 0
RENAME_EXCHANGE = 1 << 1

# The os module does not expose renameat2 flags; call the syscall directly.
SYS_RENAMEAT2 = {'x86_64': 316, 'aarch64': 276, 'riscv64': 276,
                 'ppc64le': 357, 's390x': 347}.get(platform.machine())


def renameat2(old, new, flags):
    """rename(old, new) with RENAME_* flags; raises OSError on failure."""
    if SYS_RENAMEAT2 is None:
        pytest.skip('SYS_renameat2 number unknown for %s' % platform.machine())
    rc = _libc.syscall(ctypes.c_long(SYS_RENAMEAT2),
                       ctypes.c_int(AT_FDCWD), ctypes.c_char_p(os.fsencode(old)),
                       ctypes.c_int(AT_FDCWD), ctypes.c_char_p(os.fsencode(new)),
                       ctypes.c_uint(flags))
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), old, None, new)


# --------------------------------------------------------------------------
# fallocate

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_ZERO_RANGE = 0x10

_fallocate = getattr(_libc, 'fallocate64', None) or _libc.fallocate
_fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_fallocate.restype = ctypes.c_int


def fallocate(fd, mode, offset, length):
    """fallocate(2) with any mode; raises OSError on failure."""
    if _fallocate(fd, mode, offset, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


# --------------------------------------------------------------------------
# utimensat

UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


class _Timespec(ctypes.Structure):
    _fields_ = [('tv_sec', ctypes.c_long), ('tv_nsec', ctypes.c_long)]


def utimensat(path, atime, mtime, follow=True):
    """Set times; each of atime/mtime is ns since the epoch, UTIME_NOW or UTIME_OMIT."""
    def ts(v):
        if v in (UTIME_NOW, UTIME_OMIT):
            return _Timespec(0, v)
        return _Timespec(v // 10**9, v % 10**9)
    times = (_Timespec * 2)(ts(atime), ts(mtime))
    flags = 0 if follow else 0x100  # AT_SYMLINK_NOFOLLOW
    if _libc.utimensat(ctypes.c_int(AT_FDCWD), ctypes.c_char_p(os.fsencode(path)),
                       times, ctypes.c_int(flags)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)


# --------------------------------------------------------------------------
# errno assertions

def expect_errno(expected, fn, *args, **kw):
    """Call fn and assert it raises OSError with errno in `expected` (one or a tuple)."""
    if isinstance(expected, int):
        expected = (expected,)
    try:
        res = fn(*args, **kw)
    except OSError as e:
        assert e.errno in expected, '%s%r: got %s (%s), expected %s' % (
            getattr(fn, '__name__', fn), args, errno.errorcode.get(e.errno, e.errno), e,
            '/'.join(errno.errorcode[x] for x in expected))
        return e
    pytest.fail('%s%r succeeded (returned %r), expected %s' % (
        getattr(fn, '__name__', fn), args, res, '/'.join(errno.errorcode[x] for x in expected)))


# --------------------------------------------------------------------------
# files and data

def pattern(seed, size):
    """`size` deterministic pseudo-random bytes for `seed`."""
    return random.Random(seed).randbytes(size)


def write_file(path, data, mode=0o644, fsync=True):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def read_file(path):
    with open(path, 'rb') as f:
        return f.read()


def pread_all(fd, size, offset):
    """pread exactly `size` bytes (less only at EOF)."""
    out = bytearray()
    while len(out) < size:
        chunk = os.pread(fd, size - len(out), offset + len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def fill_until_enospc(path, byte):
    """Writes `byte` into a new file `path` in 64 KiB writes until the file
    system is full (ENOSPC, any other errno fails the test); returns the
    number of bytes written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    chunk = bytes([byte]) * (64 << 10)
    written = 0
    try:
        while True:
            try:
                written += os.write(fd, chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                return written
    finally:
        os.close(fd)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bfree * st.f_frsize


# --------------------------------------------------------------------------
# running as another user

class ChildFailed(Exception):
    pass


def as_user(fn, uid=1000, gid=1000, groups=None, timeout=10):
    """Run fn() in a forked child with the given credentials and return its result.

    The child drops to (uid, gid, groups) with setgroups/setgid/setuid, runs
    fn and reports through a pipe: its return value (must pickle), or an
    OSError, which is re-raised here with the same errno.  The child is killed
    if it does not finish within `timeout` seconds.
    """
    if groups is None:
        groups = [gid]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        try:
            os.close(r)
            try:
                os.setgroups(groups)
                os.setgid(gid)
                os.setuid(uid)
                try:
                    msg = ('ok', fn())
                except OSError as e:
                    msg = ('oserror', e.errno, str(e))
            except BaseException:
                msg = ('exc', traceback.format_exc())
            data = pickle.dumps(msg)
            while data:
                data = data[os.write(w, data):]
        finally:
            os._exit(0)
    os.close(w)
    deadline = time.monotonic() + timeout
    buf = b''
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChildFailed('child running as uid %d did not finish in %s s' % (uid, timeout))
            ready, _, _ = select.select([r], [], [], left)
            if ready:
                chunk = os.read(r, 65536)
                if not chunk:
                    break
                buf += chunk
    except ChildFailed:
        os.kill(pid, signal.SIGKILL)
        raise
    finally:
        os.close(r)
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline + 5:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.01)
    if not buf:
        raise ChildFailed('child running as uid %d died without reporting' % uid)
    msg = pickle.loads(buf)
    if msg[0] == 'ok':
        return msg[1]
    if msg[0] == 'oserror':
        raise OSError(msg[1], msg[2])
    raise ChildFailed('child running as uid %d raised:\n%s' % (uid, msg[1]))


# --------------------------------------------------------------------------
# pinhold --op: one freeing operation, timed, in its own process

OP_RESULT = re.compile(r'result errno=(\d+) ms=([\d.]+)')


def reap_op(op):
    """Kills and reaps a `pinhold --op` process that is still running."""
    if op.poll() is None:
        op.kill()
        op.wait()


def start_op(pinhold_exe, args, **popen_kw):
    """Starts `pinhold --op ARGS` (e.g. ['truncate', path, '512']) and waits
    for its "ready" line: the operation starts right after. Returns the
    Popen (stdout a text pipe); the caller reaps it (reap_op)."""
    op = subprocess.Popen([pinhold_exe, '--op'] + list(args), stdout=subprocess.PIPE,
                          universal_newlines=True, **popen_kw)
    try:
        # byte by byte from the pipe itself: a readline() through the text
        # wrapper could buffer the result line behind "ready" (a refusal is
        # that fast), where communicate(timeout=...), which reads the file
        # descriptor, would never see it
        line = b''
        while not line.endswith(b'\n'):
            c = os.read(op.stdout.fileno(), 1)
            if not c:
                break
            line += c
        assert line.strip() == b'ready', line
    except BaseException:
        reap_op(op)
        raise
    return op


def interrupt_op(pinhold_exe, args, while_waiting=None, settle=0.3, timeout=5):
    """Runs `pinhold --op ARGS`, gives the operation `settle` seconds to
    start waiting, calls while_waiting(op) if given (it may check the mount,
    and that op.poll() is still None), then interrupts it with SIGUSR1 --
    pinhold installs a handler, so the syscall is not restarted and FUSE
    sends INTERRUPT. Returns (errno, ms) of the operation's result line."""
    op = start_op(pinhold_exe, args)
    try:
        time.sleep(settle)
        if while_waiting is not None:
            while_waiting(op)
        op.send_signal(signal.SIGUSR1)
        out, _ = op.communicate(timeout=timeout)
    finally:
        reap_op(op)
    m = OP_RESULT.search(out)
    assert m, out
    return int(m.group(1)), float(m.group(2))


# --------------------------------------------------------------------------
# factory fixtures

@contextlib.contextmanager
def factory(make_one, close):
    """For a fixture that hands a test a maker of helper processes: yields
    make(*args, **kw), which returns make_one(*args, **kw) and remembers it;
    on exit, close(obj) runs for every object made, in order -- so each one
    is gone before the mount fixture unmounts.

        with factory(lambda path: Holder(exe, path), Holder.kill) as make:
            yield make
    """
    made = []

    def make(*args, **kw):
        obj = make_one(*args, **kw)
        made.append(obj)
        return obj
    try:
        yield make
    finally:
        for obj in made:
            close(obj)


# --------------------------------------------------------------------------
# pinhold: the scripted holder (tests/mount/pinhold.c; fixtures pinhold_exe
# and holders in conftest.py)

class HolderError(Exception):
    pass


class Holder:
    """One pinhold process holding pins on `path` (opened ro or rw)."""

    def __init__(self, exe, path, mode='rw'):
        self.proc = subprocess.Popen([exe, path, mode], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     universal_newlines=True, bufsize=1)
        self.lines = queue.Queue()
        self.events = []     # unsolicited lines: signals, automatic unpins
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        first = self._line(5)
        m = re.match(r'ready pid=(\d+)', first or '')
        if not m:
            err = ''
            try:
                self.proc.kill()
                self.proc.wait(timeout=5)
                err = self.proc.stderr.read()
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
            self.kill()
            raise HolderError('pinhold did not start: %r, stderr %r' % (first, err))
        self.pid = int(m.group(1))

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip('\n'))
        self.lines.put(None)

    def _line(self, timeout):
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def cmd(self, line, timeout=10):
        """Sends a command; returns the answer ("ok ..."/"err ...")."""
        self.proc.stdin.write(line + '\n')
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            ans = self._line(max(0.0, deadline - time.monotonic()))
            if ans is None:
                raise HolderError('pinhold: no answer to %r within %s s (exit %s)'
                                  % (line, timeout, self.proc.poll()))
            if ans.startswith(('sig ', 'auto ')):
                self.events.append(ans)
                continue
            return ans

    def ok(self, line, timeout=10):
        ans = self.cmd(line, timeout)
        assert ans.startswith('ok'), 'pinhold %r: %s' % (line, ans)
        return ans[3:]

    def pin(self, off, length, flags='w', timeout=10):
        """Pins; returns the lease id (int) or raises OSError with the errno."""
        ans = self.cmd('pin %d %d %s' % (off, length, flags or '-'), timeout)
        m = re.match(r'err errno=(\d+)', ans)
        if m:
            raise OSError(int(m.group(1)), os.strerror(int(m.group(1))))
        m = re.match(r'ok lease=(\d+) off=(\d+) len=(\d+) nsegs=(\d+) segs=(\S*)', ans)
        assert m, ans
        self.last_pin = dict(
            id=int(m.group(1)), off=int(m.group(2)), len=int(m.group(3)),
            segs=[tuple(int(x) for x in s.split(':')) for s in m.group(5).split(',') if s])
        return self.last_pin['id']

    def unpin(self, lease, timeout=10):
        ans = self.cmd('unpin %d' % lease, timeout)
        m = re.match(r'err errno=(\d+)', ans)
        if m:
            raise OSError(int(m.group(1)), os.strerror(int(m.group(1))))

    def sync(self):
        """Barrier: every signal queued before this call has been reported."""
        self.ok('pid')

    def signals(self):
        """[(signo, code, value, pid)] of every signal reported so far."""
        out = []
        for e in self.events:
            m = re.match(r'sig signo=(\d+) code=(-?\d+) value=(\d+) pid=(\d+)', e)
            if m:
                out.append(tuple(int(x) for x in m.groups()))
        return out

    def auto_unpins(self):
        return [tuple(int(x) for x in m.groups()) for m in
                (re.match(r'auto unpin lease=(\d+) rc=(-?\d+)', e) for e in self.events) if m]

    def exit(self, timeout=5):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write('exit\n')
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for f in (self.proc.stdin, self.proc.stderr):
            try:
                f.close()
            except (BrokenPipeError, OSError):
                pass

"""Machinery for the pinfs mount-level tests (used by conftest.py and the tests).

These tests run against a live mount, in the idiom of libfuse's test/util.py:
start the daemon, wait until the mount answers, run the test, and on every
path (pass, fail, exception) unmount and reap the daemon by pid.  A test also
fails if the daemon did not exit 0 or wrote an unexpected error to stderr (or,
under a sanitizer, to its report file), and (after a clean unmount) if
fsck.pinfs does not find the pool clean.

The daemon runs the way users run it: in the background (`pinfs POOL MNT`, no
-f), so it forks and leaves its session.  bgreaper.py starts it as a child
subreaper, which gets the orphaned daemon's pid and exit status.  Its log
after the fork goes to `-o logfile=` in the work directory, which is also its
stderr (sanitizer reports land there), and the test reads and checks it as it
reads the captured stderr of what the daemon printed before it forked (bad
options, a refused pool, the msync line).  Only a test of -f itself marks
itself @pytest.mark.foreground and gets `pinfs -f`, stderr captured.

Every pool is a fresh file in /dev/shm (tmpfs stands in for persistent memory),
every mountpoint a fresh directory from tempfile.mkdtemp(); both are removed
afterwards.  Every blocking step has a timeout, and a per-test watchdog kills
the daemon if a test hangs on the mount, so a hung daemon turns into a failure
instead of a hung test run.

Environment:
  PINFS_BUILD         build directory holding pinfs, mkfs.pinfs and
                      fsck.pinfs (default: <repo>/build; searched recursively)
  PINFS_TEST_REQUIRE  "1": fail instead of skipping when binaries are missing
  PINFS_TEST_TIMEOUT  per-test watchdog in seconds (default 60)
  PINFS_TEST_TRANSPORT  "io_uring" or "dev_fuse": every pinfs the harness
                      starts gets -o io_uring / -o no_io_uring (unless the test
                      names a transport itself); with "io_uring" every mount
                      must then really serve through io_uring (STATS says so),
                      or the test fails: no silent fallback to /dev/fuse
  PINFS_TEST_SHARD    "K/N": run only every N-th test, from the K-th (0-based)
                      of the collected order (conftest.py), for N runs side by
                      side, leaving out those marked exclusive (they change
                      machine-wide state); "exclusive": run only those
  PINFS_TEST_FAKE     debug only: "tmpfs" runs the file-system tests on a
                      bind-mounted tmpfs instead of pinfs, to check the tests'
                      own logic; tests that need the daemon are skipped
"""

import atexit
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# absolute: tests run programs and scripts from other working directories
BUILD = os.path.abspath(os.environ.get('PINFS_BUILD', os.path.join(REPO, 'build')))
FAKE = os.environ.get('PINFS_TEST_FAKE', '')
WATCHDOG_S = float(os.environ.get('PINFS_TEST_TIMEOUT', '60'))

MOUNT_TIMEOUT_S = 10     # daemon start until the mount answers
EXIT_TIMEOUT_S = 10      # unmount until the daemon has exited
CMD_TIMEOUT_S = 60       # mkfs / fsck / umount commands
# How long an unmount may find the mount busy (EBUSY) before that is a
# failure. A process a test has killed and reaped has closed its files, but
# what the kernel tears down after it, asynchronously (an io_uring instance
# and the files its requests hold, closed by a kworker), can keep the mount
# busy a little longer, the longer the busier the machine.
UNMOUNT_BUSY_S = 10

DEFAULT_POOL_SIZE = '128M'

# stderr lines that mean something went wrong in the daemon
ERROR_RE = re.compile(r'error|AddressSanitizer|LeakSanitizer|ThreadSanitizer|'
                      r'UndefinedBehaviorSanitizer|runtime error|'
                      r'Segmentation fault|Assertion .* failed', re.I)

PROGRAMS = ('pinfs', 'mkfs.pinfs', 'fsck.pinfs')

TRANSPORT = os.environ.get('PINFS_TEST_TRANSPORT', '')
TRANSPORT_OPTION = {'': None, 'io_uring': 'io_uring', 'dev_fuse': 'no_io_uring'}
if TRANSPORT not in TRANSPORT_OPTION:
    raise RuntimeError('PINFS_TEST_TRANSPORT=%s: must be io_uring or dev_fuse' % TRANSPORT)
TRANSPORT_OPTIONS = ('io_uring', 'no_io_uring')


def with_transport(options):
    """`options` plus PINFS_TEST_TRANSPORT's option, unless one is there."""
    options = list(options)
    opt = TRANSPORT_OPTION[TRANSPORT]
    if opt and not any(o in TRANSPORT_OPTIONS for o in options):
        options.append(opt)
    return options


# PINFS_IOC_STATS (include/pinfs/abi.h): two struct pinfs_counters of 20
# u64; the mount's `transport` is its last field
STATS_SIZE = 2 * 20 * 8
IOC_STATS = (2 << 30) | (STATS_SIZE << 16) | (0xb7 << 8) | 7
TRANSPORT_NAME = {0: 'unknown', 1: '/dev/fuse', 2: 'io_uring'}


def mount_transport(path):
    """(transport name, ring_requests) of the mount holding `path`."""
    import fcntl
    import struct
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        buf = bytearray(STATS_SIZE)
        fcntl.ioctl(fd, IOC_STATS, buf)
    finally:
        os.close(fd)
    ring_requests, transport = struct.unpack_from('<2Q', buf, 160 + 18 * 8)
    return TRANSPORT_NAME.get(transport, str(transport)), ring_requests


def _find_program(name):
    """Path of an executable `name` in the build dir (any depth), or None."""
    if not os.path.isdir(BUILD):
        return None
    direct = os.path.join(BUILD, name)
    if os.path.isfile(direct) and os.access(direct, os.X_OK):
        return direct
    for root, dirs, files in os.walk(BUILD):
        dirs[:] = sorted(d for d in dirs if not d.startswith('.') and
                         not d.endswith('.p') and d != 'meson-private')
        if name in files:
            path = os.path.join(root, name)
            if os.access(path, os.X_OK):
                return path
    return None


BIN = {name: _find_program(name) for name in PROGRAMS}


def _skip_reason():
    """Why the mount tests cannot run here, or None."""
    if FAKE:
        if FAKE != 'tmpfs':
            return 'PINFS_TEST_FAKE=%r: only "tmpfs" is known' % FAKE
        if os.getuid() != 0:
            return 'PINFS_TEST_FAKE=tmpfs needs root (mount)'
        return None
    missing = [n for n in PROGRAMS if BIN[n] is None]
    if missing:
        return ('pinfs binaries not built: %s not found under %s '
                '(build first, or set PINFS_BUILD)' % (', '.join(missing), BUILD))
    if shutil.which('fusermount3') is None:
        return "can't find fusermount3 (install the fuse3 package)"
    if not os.path.exists('/dev/fuse'):
        return 'FUSE kernel module does not seem to be loaded (/dev/fuse missing)'
    try:
        os.close(os.open('/dev/fuse', os.O_RDWR))
    except OSError as exc:
        return 'unable to open /dev/fuse: %s' % exc.strerror
    return None


SKIP_REASON = _skip_reason()


# --------------------------------------------------------------------------
# commands

def run(cmd, timeout=CMD_TIMEOUT_S, **kw):
    """Run a command to completion with a timeout; returns CompletedProcess (text)."""
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=timeout, **kw)


def describe(res):
    return 'exit %s\nstdout:\n%s\nstderr:\n%s' % (res.returncode, res.stdout, res.stderr)


def sanitize_flags():
    """The -fsanitize= flags of the build under test ([] when it has none):
    a test program linked with one of its static libraries, or with the
    library it installs, needs the same sanitizer runtime."""
    res = run(['meson', 'introspect', BUILD, '--buildoptions'])
    assert res.returncode == 0, 'meson introspect: ' + describe(res)
    for opt in json.loads(res.stdout):
        if opt['name'] == 'b_sanitize' and opt['value'] not in ('', 'none'):
            return ['-fsanitize=' + opt['value']]
    return []


def mkfs(pool, size=DEFAULT_POOL_SIZE, force=False, extra=()):
    """Format `pool`; asserts mkfs.pinfs exits 0."""
    if FAKE:
        return
    cmd = ([BIN['mkfs.pinfs'], '--size', size] + (['--force'] if force else []) + list(extra) +
           [pool])
    res = run(cmd)
    assert res.returncode == 0, 'mkfs.pinfs failed: %s' % describe(res)


def fsck(pool, *args):
    """Run fsck.pinfs on `pool`; returns CompletedProcess."""
    return run([BIN['fsck.pinfs']] + list(args) + [pool])


def check_fsck(pool):
    """Assert fsck.pinfs finds `pool` clean (exit 0)."""
    if FAKE:
        return
    res = fsck(pool)
    assert res.returncode == 0, 'fsck.pinfs %s: %s' % (pool, describe(res))


def try_mount(pool, mountpoint, options=()):
    """Start pinfs on `pool` as users do (in the background, no -f), expecting a
    refusal: everything is checked before the daemon forks, so a refusal is the
    launcher's exit status and stderr. Returns (returncode, stderr); fails the
    test (after unmounting, which ends the daemon) if it mounted instead."""
    options = with_transport(options)
    cmd = [BIN['pinfs']] + (['-o', ','.join(options)] if options else []) + [pool, mountpoint]
    try:
        res = run(cmd, timeout=MOUNT_TIMEOUT_S)
    finally:
        if mounted(mountpoint):
            force_unmount(mountpoint)
            pytest.fail('pinfs mounted %s instead of refusing it' % pool)
    return res.returncode, res.stderr


def compile_helper(name, extra=(), sanitize=False):
    """Compiles tests/mount/NAME.c against the repository's headers (plus
    `extra`: libraries of the build, which need the build's sanitizer flags:
    `sanitize`) into a fresh temporary directory. Returns the executable's
    path; skips the test without a C compiler."""
    d = tempfile.mkdtemp(prefix=name + '-')
    exe = os.path.join(d, name)
    cc = os.environ.get('CC', 'cc')
    try:
        res = run([cc, '-std=gnu11', '-D_GNU_SOURCE', '-O1', '-Wall', '-I', REPO,
                   '-I', os.path.join(REPO, 'include')] + (sanitize_flags() if sanitize else []) +
                  [os.path.join(HERE, name + '.c')] + list(extra) + ['-o', exe], timeout=120)
    except FileNotFoundError:
        shutil.rmtree(d, ignore_errors=True)
        pytest.skip('no C compiler (%s) to build tests/mount/%s.c' % (cc, name))
    assert res.returncode == 0, 'compiling %s.c failed:\n%s' % (name, res.stderr)
    return exe


_USER_RUNNABLE = {}


def user_runnable(path):
    """A copy of executable `path` that every user can run: the build (or a
    clone) may sit in a directory other users cannot enter, such as root's
    home (mode 0700). The copy lives, mode 0755, in a directory of its own
    under /tmp for the rest of the session; the same path gives the same copy."""
    if path not in _USER_RUNNABLE:
        d = tempfile.mkdtemp(prefix='pinfs-user-bin-')
        os.chmod(d, 0o755)
        copy = os.path.join(d, os.path.basename(path))
        shutil.copy2(path, copy)
        os.chmod(copy, 0o755)
        atexit.register(shutil.rmtree, d, True)
        _USER_RUNNABLE[path] = copy
    return _USER_RUNNABLE[path]


def mounted(path):
    """True if `path` is a mount point per /proc/self/mountinfo.

    Unlike os.path.ismount() this also sees a FUSE mount whose daemon died
    (stat on it fails with ENOTCONN).
    """
    path = os.path.realpath(path)
    with open('/proc/self/mountinfo') as f:
        for line in f:
            mp = line.split()[4]
            mp = re.sub(r'\\([0-7]{3})', lambda m: chr(int(m.group(1), 8)), mp)
            if mp == path:
                return True
    return False


def mount_users(path):
    """Processes using the mount at `path` (an open file, cwd, root or
    mapping under it), as 'PID (COMM): WHAT' strings: who keeps it busy."""
    path = os.path.realpath(path)
    out = []

    def under(p):
        return p == path or p.startswith(path + '/')
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        what = []
        try:
            with open('/proc/%s/comm' % pid) as f:
                comm = f.read().strip()
            for link in ('cwd', 'root'):
                try:
                    if under(os.readlink('/proc/%s/%s' % (pid, link))):
                        what.append(link)
                except OSError:
                    pass
            for fd in os.listdir('/proc/%s/fd' % pid):
                try:
                    target = os.readlink('/proc/%s/fd/%s' % (pid, fd))
                except OSError:
                    continue
                if under(target.replace(' (deleted)', '')):
                    what.append('fd %s: %s' % (fd, target))
            with open('/proc/%s/maps' % pid) as f:
                maps = {line.split(None, 5)[5].strip() for line in f
                        if len(line.split(None, 5)) == 6}
            what += ['maps %s' % m for m in sorted(maps)
                     if under(m.replace(' (deleted)', ''))]
        except OSError:
            continue
        if what:
            out.append('%s (%s): %s' % (pid, comm, ', '.join(what)))
    return out


def unmount(path, busy_timeout=UNMOUNT_BUSY_S):
    """`fusermount3 -u path`, tried again while the mount is busy (EBUSY),
    for up to `busy_timeout` s (UNMOUNT_BUSY_S). Returns None once unmounted,
    else what went wrong (with who keeps the mount busy)."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            res = run(['fusermount3', '-u', path], timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return 'fusermount3 -u timed out'
        if res.returncode == 0 or not mounted(path):
            return None
        busy = 'Device or resource busy' in res.stderr
        if not busy or time.monotonic() >= deadline:
            why = 'fusermount3 -u failed: %s' % res.stderr.strip()
            if busy:
                why += ' (for %s s); using it: %s' % (busy_timeout,
                                                      '; '.join(mount_users(path)) or 'nobody')
            return why
        time.sleep(0.05)


def force_unmount(path):
    """Unmount `path` however it can be done: fusermount3 -u, then umount -l."""
    for cmd in (['fusermount3', '-u', path], ['umount', path],
                ['fusermount3', '-u', '-z', path], ['umount', '-l', path]):
        if not mounted(path):
            return True
        try:
            run(cmd, timeout=EXIT_TIMEOUT_S)
        except (subprocess.TimeoutExpired, FileNotFoundError):
            pass
    return not mounted(path)


def wait_until(cond, timeout, interval=0.01):
    """Poll cond() until it is true or `timeout` seconds have passed; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        val = cond()
        if val or time.monotonic() >= deadline:
            return val
        time.sleep(interval)


# --------------------------------------------------------------------------
# a background daemon

REAPER = os.path.join(HERE, 'bgreaper.py')


class BackgroundDaemon:
    """`pinfs POOL MNT` (no -f) run through bgreaper.py.

    Offers what the tests use of subprocess.Popen for the daemon itself:
    pid, poll(), wait(timeout), kill(), send_signal(), returncode.
    """

    def __init__(self, cmd, stdout, stderr, env=None):
        r, w = os.pipe()
        try:
            self.reaper = subprocess.Popen([sys.executable, REAPER, str(w)] + cmd,
                                           stdin=subprocess.DEVNULL, stdout=stdout,
                                           stderr=stderr, pass_fds=(w,), env=env)
        finally:
            os.close(w)
        self._r = r
        self._buf = b''
        self.pid = None
        self.returncode = None
        self.launcher_rc = None

    def _line(self, timeout):
        """The reaper's next status line, or None after `timeout` s (or at EOF)."""
        deadline = time.monotonic() + timeout
        while b'\n' not in self._buf:
            left = deadline - time.monotonic()
            if self._r is None or left < 0:
                return None
            ready, _, _ = select.select([self._r], [], [], max(left, 0))
            if not ready:
                return None
            chunk = os.read(self._r, 4096)
            if not chunk:
                os.close(self._r)
                self._r = None
                continue
            self._buf += chunk
        line, self._buf = self._buf.split(b'\n', 1)
        return line.decode(errors='replace')

    def launch(self, timeout):
        """Waits for the launcher; returns (launcher exit status, message) --
        0 once the daemon runs in the background with self.pid set."""
        line = self._line(timeout)
        if line is None:
            return None, 'the launcher did not exit within %s s' % timeout
        words = line.split(' ', 2)
        self.launcher_rc = int(words[1])
        if self.launcher_rc != 0:
            self._reap_reaper()
            return self.launcher_rc, line
        line = self._line(timeout)
        if line is None or not line.startswith('daemon ') or int(line.split()[1]) <= 0:
            self._reap_reaper()
            return -1, 'no daemon after the launcher exited: %s' % line
        self.pid = int(line.split()[1])
        return 0, ''

    def poll(self):
        if self.returncode is None and self.pid is not None:
            line = self._line(0)
            if line is not None and line.startswith('exit '):
                self.returncode = int(line.split()[1])
                self._reap_reaper()
        return self.returncode

    def wait(self, timeout=None):
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        while self.poll() is None:
            if time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired('pinfs daemon %s' % self.pid, timeout)
            line = self._line(min(0.2, max(deadline - time.monotonic(), 0)))
            if line is not None and line.startswith('exit '):
                self.returncode = int(line.split()[1])
                self._reap_reaper()
        return self.returncode

    def send_signal(self, sig):
        # the reaper reaps the daemon at once and reports it; a pid is
        # signalled only while no exit has been reported
        if self.poll() is None and self.pid is not None:
            os.kill(self.pid, sig)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def _reap_reaper(self):
        try:
            self.reaper.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.reaper.kill()
            self.reaper.wait()
        if self._r is not None:
            os.close(self._r)
            self._r = None


# --------------------------------------------------------------------------
# the mount

class PinfsMount:
    """A pinfs daemon serving `pool` on `dir`.

    start() launches `pinfs` (in the background; -f if `foreground`) and
    waits for the mount; stop() unmounts and
    reaps the daemon and returns what went wrong (empty list when clean);
    unmount() is stop() that fails the test on problems; remount() is
    unmount + fsck + start on the same pool.
    """

    def __init__(self, pool, mountpoint, workdir, options=(), foreground=False):
        self.pool = pool
        self.dir = mountpoint
        self.workdir = workdir
        self.options = list(options)
        self.foreground = foreground
        self.proc = None
        self.starts = 0
        self.allowed_stderr = []     # regexes of error lines a test expects
        self.logs = []               # (stdout, stderr, -o logfile) paths per start
        self.watchdog_fired = False
        self.logfile = None          # -o logfile of the next starts (None: one per start)

    # -- paths
    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    @property
    def stderr_path(self):
        return self.logs[-1][1]

    @property
    def log_path(self):
        """The daemon's log after the mount is up (-o logfile; in the
        background its stderr is this file too, so sanitizer reports that
        ignore log_path, UBSan's among them, land here)."""
        return self.logs[-1][2]

    def output(self):
        """All the daemon's stdout, stderr and log text so far (every start;
        a foreground daemon has no log file)."""
        return ''.join(self._read(p) for paths in self.logs for p in paths)

    def allow_stderr(self, regex):
        """Let lines matching `regex` through the stderr error check."""
        self.allowed_stderr.append(re.compile(regex))

    # -- life cycle
    def command(self, extra_options=()):
        opts = with_transport(self.options + list(extra_options))
        if not self.foreground and self.logs:
            opts.append('logfile=' + self.log_path)
        cmd = [BIN['pinfs']] + (['-f'] if self.foreground else [])
        if opts:
            cmd += ['-o', ','.join(opts)]
        return cmd + [self.pool, self.dir]

    def start(self):
        assert self.proc is None, 'daemon already running'
        assert not mounted(self.dir), '%s is already a mount point' % self.dir
        self.starts += 1
        out = os.path.join(self.workdir, 'daemon-%d.stdout' % self.starts)
        err = os.path.join(self.workdir, 'daemon-%d.stderr' % self.starts)
        self.logs.append((out, err, self.logfile or
                          os.path.join(self.workdir, 'daemon-%d.log' % self.starts)))
        with open(out, 'wb') as fo, open(err, 'wb') as fe:
            if self.foreground:
                self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                             stdout=fo, stderr=fe)
            else:
                self.proc = BackgroundDaemon(self.command(), fo, fe, env=self._env())
        if not self.foreground:
            rc, msg = self.proc.launch(MOUNT_TIMEOUT_S)
            if rc != 0:
                self.proc = None
                force_unmount(self.dir)
                pytest.fail('pinfs (background) failed to start: %s; stderr:\n%s'
                            % (msg, self._read(self.stderr_path)))
        self._wait_for_mount()
        if TRANSPORT == 'io_uring' and not any(o in TRANSPORT_OPTIONS for o in self.options):
            self._check_io_uring()

    def _check_io_uring(self):
        """PINFS_TEST_TRANSPORT=io_uring: the mount must serve through the
        rings (they register right after INIT), not have fallen back."""
        seen = None
        deadline = time.monotonic() + MOUNT_TIMEOUT_S
        while time.monotonic() < deadline:
            seen = mount_transport(self.dir)
            if seen[0] == 'io_uring' and seen[1] > 0:
                return
            time.sleep(0.01)
        self.stop()
        pytest.fail('PINFS_TEST_TRANSPORT=io_uring, but the mount serves through %s '
                    '(ring requests: %s); daemon output:\n%s' % (seen[0], seen[1], self.output()))

    def _env(self):
        """The daemon's environment: in the background its stderr is
        /dev/null, so sanitizer reports go to files in the work dir."""
        env = dict(os.environ)
        for var in ('ASAN_OPTIONS', 'UBSAN_OPTIONS', 'TSAN_OPTIONS', 'LSAN_OPTIONS'):
            opts = env.get(var, '')
            env[var] = (opts + ':' if opts else '') + 'log_path=' + self._sanitizer_prefix()
        return env

    def _sanitizer_prefix(self):
        return os.path.join(self.workdir, 'daemon-%d.sanitizer' % self.starts)

    def sanitizer_reports(self):
        """Text of every sanitizer report file the daemon wrote, by file."""
        out = []
        for name in sorted(os.listdir(self.workdir)):
            if '.sanitizer' in name:
                out.append('%s:\n%s' % (name, self._read(os.path.join(self.workdir, name))))
        return out

    def _wait_for_mount(self):
        deadline = time.monotonic() + MOUNT_TIMEOUT_S
        while time.monotonic() < deadline:
            if os.path.ismount(self.dir):
                return
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                force_unmount(self.dir)
                pytest.fail('pinfs exited with %s before the mount came up; stderr:\n%s'
                            % (rc, self._read(self.stderr_path)))
            time.sleep(0.01)
        self._kill()
        force_unmount(self.dir)
        pytest.fail('mount did not come up within %s s; stderr:\n%s'
                    % (MOUNT_TIMEOUT_S, self._read(self.stderr_path)))

    def stop(self):
        """Unmount and reap the daemon; returns a list of problems (empty: clean)."""
        problems = []
        if self.proc is None:
            if mounted(self.dir):
                force_unmount(self.dir)
            return problems
        if mounted(self.dir):
            why = unmount(self.dir)
            if why:
                problems.append(why)
            if mounted(self.dir):
                force_unmount(self.dir)
        try:
            rc = self.proc.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pid = self.proc.pid
            self._kill()
            rc = None
            problems.append('daemon (pid %d) did not exit within %s s of the unmount; killed'
                            % (pid, EXIT_TIMEOUT_S))
        self.proc = None
        if self.watchdog_fired:
            problems.append('test hung for %s s; the watchdog killed the daemon' % WATCHDOG_S)
        elif rc is not None and rc != 0:
            problems.append('daemon exited with %s (expected 0)' % rc)
        reports = self.sanitizer_reports()
        if reports:
            problems.append('sanitizer reports from the daemon:\n' + '\n'.join(reports))
        bad = self.unexpected_lines()
        if bad:
            problems.append('unexpected error lines on the daemon\'s stderr or log:\n  '
                            + '\n  '.join(bad))
        if problems:
            problems.append('daemon stderr:\n' + self._read(self.stderr_path))
            problems.append('daemon log:\n' + self._read(self.log_path))
        return problems

    def unmount(self):
        problems = self.stop()
        if problems:
            pytest.fail('\n'.join(problems))

    def remount(self, check=True):
        """Unmount (failing on any problem), fsck the pool (must be clean), mount again."""
        self.unmount()
        if check:
            check_fsck(self.pool)
        self.start()

    def kill_daemon(self, sig=signal.SIGKILL):
        """Send `sig` to the daemon, reap it, and clear away the dead mount.

        Returns the daemon's exit status (negative: killed by a signal).
        """
        try:
            self.proc.send_signal(sig)
        except ProcessLookupError:
            pass                         # already dead (a test killed it)
        try:
            rc = self.proc.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._kill()
            pytest.fail('daemon did not die from signal %d' % sig)
        self.proc = None
        assert force_unmount(self.dir), 'could not unmount %s after the daemon died' % self.dir
        return rc

    def _kill(self):
        if self.proc is not None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass                # it has just exited: reaped below all the same
            try:
                self.proc.wait(timeout=EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None

    def watchdog(self):
        """Timer callback: a test hangs; kill the daemon so its syscalls fail with ENOTCONN."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            self.watchdog_fired = True
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # -- stderr
    def unexpected_lines(self):
        """Error lines nobody allowed, on the last start's stderr and log."""
        return self.unexpected_stderr(self.stderr_path) + self.unexpected_stderr(self.log_path)

    def unexpected_stderr(self, path):
        bad = []
        for line in self._read(path).splitlines():
            if ERROR_RE.search(line) and not any(r.search(line) for r in self.allowed_stderr):
                bad.append(line)
        return bad

    @staticmethod
    def _read(path):
        try:
            with open(path, errors='replace') as f:
                return f.read()
        except OSError:
            return ''


class FakeMount(PinfsMount):
    """Debug stand-in (PINFS_TEST_FAKE=tmpfs): the "pool" is a size-limited
    tmpfs, "mounting" bind-mounts it.  Checks the tests' logic, not pinfs."""

    def start(self):
        assert not mounted(self.dir)
        self.starts += 1
        res = run(['mount', '--bind', self.pool, self.dir])
        assert res.returncode == 0, describe(res)

    def stop(self):
        if mounted(self.dir):
            force_unmount(self.dir)
        return []

    def kill_daemon(self, sig=signal.SIGKILL):
        pytest.skip('no daemon in PINFS_TEST_FAKE mode')

    def output(self):
        return ''

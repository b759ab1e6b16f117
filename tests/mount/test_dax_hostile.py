"""pinfs-dax under programs that do what the library does not expect:
mremap of a shared mapping, MAP_FIXED or munmap over part of one, mmap
cycles during truncates, fds that change file behind its back (freopen, a
raw close, SCM_RIGHTS), fork with a child that exits or execs, descriptions
shared with other processes, plain and pinfs-dax processes sharing a
mapping (sqlite's WAL), times set before close, preallocation, vfork.

Each test asks for what tmpfs (or pinfs without pinfs-dax) gives: the
program's bytes, sizes and signals must not change because the library is
preloaded. The programs are subcommands of tests/mount/daxhostile.c (see its
header), a few are cat, dd, fallocate, sqlite3 and python3.
"""

import errno
import os
import select
import shutil
import signal
import subprocess
import sys

import pytest

from pinfs_mount import _find_program, compile_helper, describe, wait_until
from pinfs_util import KiB, MiB, read_file, write_file

pytestmark = [pytest.mark.needs_daemon]

TIMEOUT = 60           # for every program run here
PAGE = 4 * KiB
JAN_2020_NS = 1577836800 * 10 ** 9


@pytest.fixture(scope='module')
def dax_exe():
    exe = _find_program('pinfs-dax')
    assert exe, 'pinfs-dax is not built'
    return exe


@pytest.fixture(scope='module')
def hostile_exe():
    exe = compile_helper('daxhostile', ['-pthread'])
    yield exe
    shutil.rmtree(os.path.dirname(exe), ignore_errors=True)


def run_hostile(dax_exe, hostile_exe, *args, dax=True, timeout=TIMEOUT):
    """Runs daxhostile ARGS (under pinfs-dax unless @dax is false) to the
    end; returns its last stdout line, after asserting it exited 0."""
    cmd = ([dax_exe] if dax else []) + [hostile_exe] + [str(a) for a in args]
    res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, 'daxhostile %s: exit %s\n%s%s' % (
        ' '.join(map(str, args)), res.returncode, res.stdout, res.stderr)
    lines = res.stdout.splitlines()
    assert lines, 'daxhostile %s printed nothing: %s' % (args, res.stderr)
    return lines[-1]


def fields(line):
    """"a 1 b 2" -> {'a': '1', 'b': '2'}"""
    words = line.split()
    assert len(words) % 2 == 0, line
    return dict(zip(words[::2], words[1::2]))


class Interactive:
    """A daxhostile that talks on stdin/stdout, one line at a time, every
    read with a timeout."""

    def __init__(self, argv):
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.buf = b''

    def line(self, timeout=TIMEOUT):
        fd = self.proc.stdout.fileno()
        while b'\n' not in self.buf:
            ready, _, _ = select.select([fd], [], [], timeout)
            assert ready, '%s: no answer within %s s' % (self.argv, timeout)
            chunk = os.read(fd, 4096)
            assert chunk, '%s died (status %s)' % (self.argv, self.proc.wait(timeout=TIMEOUT))
            self.buf += chunk
        line, self.buf = self.buf.split(b'\n', 1)
        return line.decode()

    def send(self, text):
        self.proc.stdin.write(text.encode() + b'\n')
        self.proc.stdin.flush()

    def __call__(self, text, timeout=TIMEOUT):
        self.send(text)
        return self.line(timeout)

    def finish(self, timeout=TIMEOUT):
        """Closes its stdin; returns its exit status."""
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)
            raise

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except (BrokenPipeError, OSError):
                pass


@pytest.fixture
def spawn(mnt, dax_exe, hostile_exe):
    """Starts daxhostile ARGS (under pinfs-dax unless dax=False); any still
    running at the end is killed before the unmount."""
    made = []

    def start(*args, dax=True):
        h = Interactive(([dax_exe] if dax else []) + [hostile_exe] + [str(a) for a in args])
        made.append(h)
        return h
    yield start
    for h in made:
        h.kill()


# ---------------------------------------------------------------- mappings

def test_mremap_grown_mapping_gives_sigbus_past_eof_never_other_files(mnt, dax_exe,
                                                                      hostile_exe):
    """A program grows its shared mapping of a 64 KiB file with
    mremap(MREMAP_MAYMOVE) to 16 MiB, as it may: every page past EOF must
    give SIGBUS on load and on store, as the kernel's mapping does. The
    file is the fresh mount's first (one extent in the pool): the pool
    mapping grown in place showed the next files' bytes ('B', 'L'), and a
    store there changed them."""
    line = run_hostile(dax_exe, hostile_exe, 'mremap', mnt.dir)
    got = fields(line)
    pages = (16 * MiB - 64 * KiB) // PAGE
    assert got == {'pages': str(pages), 'loadbus': str(pages), 'storebus': str(pages),
                   'nonzero': '0', 'head': 'OK'}, line
    assert read_file(mnt.path('A')) == b'A' * (64 * KiB)
    assert read_file(mnt.path('B')) == b'B' * (4 * MiB)
    for i in range(64):
        assert read_file(mnt.path('L%d' % i)) == b'L' * (64 * KiB), 'L%d' % i


@pytest.mark.parametrize('mode', ['anon-all', 'file-all', 'anon-part', 'file-part',
                                  'unmap-part'])
def test_memory_mapped_over_a_mapping_is_left_alone_by_a_truncate(mnt, spawn, mode):
    """A program maps A (1 MiB) shared, then puts its own anonymous memory,
    or B's mapping, MAP_FIXED over all of it or its first 256 KiB (or
    munmaps those first); another process truncates A to 512 KiB. The
    program's memory there must keep its bytes ('M', or B's): the library's
    revocation mapped A's bytes back over them. What is left of A's mapping
    shows 'A' below 512 KiB and gives SIGBUS past it."""
    h = spawn('fixed', mnt.dir, mode)
    assert h.line() == 'ready'
    os.truncate(mnt.path('A'), 512 * KiB)
    got = fields(h('go'))
    part = mode.endswith('-part')
    want = {'replaced': '0',
            'rest_a': str(256 * KiB // PAGE) if part else '0',
            'rest_bus': str(512 * KiB // PAGE) if part else '0',
            'rest_other': '0'}
    assert got == want, got
    assert h.finish() == 0
    assert read_file(mnt.path('B')) == b'B' * MiB
    assert read_file(mnt.path('A')) == b'A' * (512 * KiB)


def test_mmap_cycles_while_another_process_truncates_never_sigsegv(mnt, spawn, dax_exe,
                                                                   hostile_exe):
    """A program maps A (1 MiB) shared read-only, loads from it and unmaps
    it, 1500 times, while another process cuts A to 512 KiB and writes it
    back, again and again: a load gives 'A', 0 or SIGBUS, never SIGSEGV,
    and no piece of the mapping is ever PROT_NONE (the library's
    placeholder was left, or a revocation of a mapping being built mapped
    PROT_NONE over it)."""
    write_file(mnt.path('A'), b'A' * MiB)
    cutter = spawn('mutator', mnt.dir, dax=False)
    assert cutter.line() == 'ready'
    try:
        line = run_hostile(dax_exe, hostile_exe, 'mmaploop', mnt.dir, 1500, timeout=120)
    finally:
        cutter.proc.send_signal(signal.SIGTERM)
        assert cutter.finish() == 0
    assert line == 'ok maps 1500', line


def test_a_mapping_grown_into_by_ftruncate_takes_stores(mnt, dax_exe, hostile_exe):
    """A program maps 1 MiB of a 4 KiB file, grows the file to 1 MiB with
    ftruncate and stores at 512 KiB (as LMDB does): no SIGBUS, and read()
    sees the store."""
    path = mnt.path('grow')
    assert run_hostile(dax_exe, hostile_exe, 'mmapgrow', path) == 'ok'
    got = read_file(path)
    assert len(got) == MiB
    assert got == b'a' * PAGE + bytes(512 * KiB - PAGE) + b'z' + bytes(512 * KiB - 1)


@pytest.mark.parametrize('how', ['exit', 'exec'])
def test_a_child_that_exits_keeps_the_parents_mapping_coherent(mnt, spawn, how):
    """A program maps A shared and forks a child that exit()s (atexit
    handlers run) or execs /bin/true; then another process rewrites A
    (truncate to 0, 1 MiB of 'N'). The parent's mapping must show the new
    bytes (at once with tmpfs; here it waits up to 10 s for the library's
    revocation), never the stale 'A's: the child's exit ended the parent's
    lease. A store through it then reaches the file."""
    path = mnt.path('A')
    h = spawn('forkmap', mnt.dir, how)
    assert h.line() == 'ready'
    os.truncate(path, 0)
    with open(path, 'r+b') as f:
        f.write(b'N' * MiB)
    got = fields(h('go'))
    assert got == {'N': str(MiB // PAGE), 'A': '0', 'zero': '0', 'bus': '0'}, got
    assert h.finish() == 0
    assert read_file(path) == b'N' * PAGE + b'S' + b'N' * (MiB - PAGE - 1)


def test_plain_and_dax_processes_mapping_one_file_see_each_others_stores(mnt, spawn):
    """A plain process and a pinfs-dax process map one file MAP_SHARED (a
    database and its tool, sqlite's -shm): each sees the other's stores
    at once, in its mapping, as two plain processes do; after msync(MS_SYNC)
    pread by either sees them too; the file keeps both."""
    path = mnt.path('shared')
    write_file(path, b'.' * (64 * KiB))
    plain = spawn('mixmap', path, dax=False)
    assert plain.line() == 'mapped'
    assert plain('l 100') == '.'          # the page in plain's page cache
    dax = spawn('mixmap', path)
    assert dax.line() == 'mapped'
    assert dax('l 0') == '.'
    assert dax('s D 100') == 'ok'
    assert plain('l 100') == 'D', "the pinfs-dax process's store, in the plain mapping"
    assert plain('s P 0') == 'ok'
    assert dax('l 0') == 'P', "the plain process's store, in the pinfs-dax mapping"
    assert dax('m') == '0'
    assert plain('r 100') == 'D', "the pinfs-dax process's store, by pread"
    assert plain('m') == '0'
    assert dax('r 0') == 'P', "the plain process's store, by pread"
    assert plain.finish() == 0
    assert dax.finish() == 0
    assert read_file(path) == b'P' + b'.' * 99 + b'D' + b'.' * (64 * KiB - 101)


def has_open(pid, path):
    """Whether process @pid has @path open."""
    try:
        fds = os.listdir('/proc/%d/fd' % pid)
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink('/proc/%d/fd/%s' % (pid, fd)) == path:
                return True
        except OSError:
            pass
    return False


def sqlite_race(db, dax_exe):
    """One round of the sqlite test on a new database @db: returns what
    went wrong, or None."""
    import sqlite3
    res = subprocess.run(['/usr/bin/sqlite3', db, 'PRAGMA journal_mode=WAL; '
                          'CREATE TABLE t(who TEXT, i INTEGER);'],
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert res.returncode == 0 and res.stdout.strip() == 'wal', res

    def script(who):
        return ('.timeout 30000\nPRAGMA busy_timeout=30000;\n' +
                ''.join("INSERT INTO t VALUES('%s', %d);\n" % (who, i) for i in range(200)))
    blocker = sqlite3.connect(db, timeout=30, isolation_level=None)
    procs = []
    outs = []
    try:
        blocker.execute('BEGIN IMMEDIATE')
        for who, cmd in (('dax', [dax_exe]), ('plain', [])):
            p = subprocess.Popen(cmd + ['/usr/bin/sqlite3', db], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            procs.append((who, p))
            p.stdin.write(script(who))
            p.stdin.close()
        for who, p in procs:
            assert wait_until(lambda: has_open(p.pid, db + '-shm') or p.poll() is not None,
                              TIMEOUT), who
        blocker.execute('COMMIT')
        blocker.close()
        for who, p in procs:
            outs.append((who, p.wait(timeout=120), p.stdout.read(), p.stderr.read()))
    finally:
        blocker.close()
        for who, p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=TIMEOUT)
            p.stdout.close()
            p.stderr.close()
    for who, rc, out, err in outs:
        if rc != 0 or err != '':
            return '%s: the %s writer: exit %s: %s' % (db, who, rc, err)
    res = subprocess.run(['/usr/bin/sqlite3', db, 'PRAGMA integrity_check; '
                          'SELECT who, count(*) FROM t GROUP BY who ORDER BY who;'],
                         capture_output=True, text=True, timeout=TIMEOUT)
    if res.returncode != 0 or res.stdout.split() != ['ok', 'dax|200', 'plain|200']:
        return '%s: %s' % (db, describe(res))
    return None


@pytest.mark.skipif(not os.path.exists('/usr/bin/sqlite3'), reason='no /usr/bin/sqlite3')
def test_sqlite_wal_writers_with_and_without_pinfs_dax_lose_no_row(mnt, dax_exe):
    """Two sqlite3 processes insert into one WAL database at once, one
    under pinfs-dax and one plain, 200 rows each (busy_timeout): all 400
    rows are there and the database is intact. The WAL index (-shm) is
    shared by MAP_SHARED: the two must see each other's stores. The test
    holds the write lock until both have the -shm open, so that they run
    at once, and does it with three databases (a round where one writer
    got the lock for all its rows could not lose any)."""
    bad = [why for why in (sqlite_race(mnt.path('db%d' % i), dax_exe) for i in range(3))
           if why]
    assert not bad, '\n'.join(bad)


# ------------------------------------------------------------ descriptors

@pytest.mark.parametrize('how', ['freopen', 'fopen', 'open2', 'scm'])
def test_a_descriptor_that_changes_file_unseen_reaches_the_new_file(mnt, dax_exe,
                                                                    hostile_exe, how):
    """A's fd (read and written, so served from the pool) comes to name B
    without a close() the library sees: freopen() of its FILE on B (glibc
    closes and opens internally), or a raw syscall(SYS_close) and then B
    opened on the same number by fopen, __open_2 (a fortified open()) or
    received by SCM_RIGHTS. pread and pwrite on it reach B, never A."""
    line = run_hostile(dax_exe, hostile_exe, 'reopen', mnt.dir, how)
    assert fields(line) == {'samefd': '1', 'pread': 'B', 'wrote': '1'}, line
    assert read_file(mnt.path('A')) == b'A' * (64 * KiB)
    assert read_file(mnt.path('B')) == b'B' * 100 + b'W' + b'B' * (64 * KiB - 101)


def test_fork_writers_through_one_fd_lose_no_write(mnt, dax_exe, hostile_exe):
    """A parent and its child write() 1024 blocks each through one
    inherited O_WRONLY fd at once: the kernel moves the shared offset
    atomically per write, so every block lands in its own place, none over
    another."""
    line = run_hostile(dax_exe, hostile_exe, 'forkshare', mnt.path('f'))
    assert fields(line) == {'P': '1024', 'C': '1024', 'dot': '0'}, line


def test_background_dds_writing_one_redirect_lose_nothing(mnt, dax_exe, tmp_path):
    """`{ dd if=a & dd if=b & dd if=c & wait; } > f` in a pinfs-dax shell:
    the three dd share the redirect's file description, whose offset the
    kernel moves per write; the file must hold 24 MiB, exactly 8 MiB of each
    source's byte."""
    for c in 'abc':
        (tmp_path / c).write_bytes(c.upper().encode() * (8 * MiB))
    out = mnt.path('f')
    res = subprocess.run([dax_exe, 'bash', '-c',
                          '{ dd if=a bs=1M status=none & dd if=b bs=1M status=none & '
                          'dd if=c bs=1M status=none & wait; } > "$1"', 'bash', out],
                         cwd=str(tmp_path), capture_output=True, timeout=TIMEOUT)
    assert res.returncode == 0, res.stderr
    got = read_file(out)
    assert len(got) == 24 * MiB
    assert [got.count(c) for c in (b'A', b'B', b'C')] == [8 * MiB] * 3


def test_o_append_set_by_another_process_makes_writes_append(mnt, dax_exe, hostile_exe):
    """A child turns O_APPEND on for the description it shares with its
    parent (fcntl F_SETFL): the parent's next write() appends, as the
    kernel does (the flag is the description's, not the process's)."""
    path = mnt.path('f')
    line = run_hostile(dax_exe, hostile_exe, 'forkappend', path)
    assert line == 'size %d' % (68 * KiB), line
    assert read_file(path) == b'a' * (64 * KiB) + b'b' * (4 * KiB)


# ------------------------------------------------------- times and blocks

@pytest.mark.parametrize('how', ['futimens', 'utimensat'])
def test_times_set_before_close_stay(mnt, dax_exe, hostile_exe, how):
    """A program writes 4 MiB with pwrite, sets the times to 2020-01-01
    (futimens on the fd, or utimensat by path, as tar and cp -p do) and
    closes: the mtime is 2020-01-01, not the close's time."""
    path = mnt.path('t')
    assert run_hostile(dax_exe, hostile_exe, 'mtime', path, how) == 'ok'
    st = os.stat(path)
    assert st.st_size == 4 * MiB
    assert st.st_mtime_ns == JAN_2020_NS


def test_unmapping_a_mapping_keeps_the_programs_record_lock(mnt, spawn):
    """A program holds an fcntl write lock on a file it maps; it maps and
    unmaps it 20 times, then unmaps a mapping in part, then in whole. Another process must still find the
    file locked each time: the library's own descriptor of the file, given
    up with the mapping, is not closed while the program has the file open
    (a close of any of its descriptors drops a process's record locks)."""
    import fcntl
    path = mnt.path('locked')
    write_file(path, b'l' * MiB)
    h = spawn('lockmap', path)
    for _ in range(2):
        assert h.line() == 'ready'
        fd = os.open(path, os.O_RDWR)
        try:
            with pytest.raises(OSError) as e:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            assert e.value.errno in (errno.EAGAIN, errno.EACCES)
        finally:
            os.close(fd)
        h.send('go')
    assert h.line() == 'ok'
    assert h.finish() == 0
    assert read_file(path)[:1] == b'x'


def test_setting_the_atime_alone_keeps_the_writes_mtime(mnt, dax_exe, hostile_exe):
    """Writes, then futimens(fd, {2020-01-01, UTIME_OMIT}): the atime is
    2020, and the mtime no earlier than the last writes (the library
    stamps at most every 100 ms, so the second half's is owed at close):
    setting the atime alone does not cancel that stamp."""
    path = mnt.path('a')
    line = run_hostile(dax_exe, hostile_exe, 'mtime', path, 'atime')
    assert line.startswith('ok '), line
    wrote = int(line.split()[1])
    st = os.stat(path)
    assert st.st_size == 4 * MiB
    assert st.st_atime_ns == JAN_2020_NS
    assert st.st_mtime_ns >= wrote, (st.st_mtime_ns, wrote)


def test_a_programs_own_preallocation_survives_a_dax_writer(mnt, dax_exe):
    """`fallocate -n -l 50M` (KEEP_SIZE) reserves 50 MiB past EOF; a
    pinfs-dax dd then writes 1 MiB into the file: the reservation stays
    (the library's trim at close freed blocks it had not allocated)."""
    path = mnt.path('pre')
    write_file(path, b'')
    res = subprocess.run(['fallocate', '-n', '-l', '50M', path], capture_output=True,
                         timeout=TIMEOUT)
    assert res.returncode == 0, res.stderr
    assert os.stat(path).st_blocks * 512 >= 50 * MiB
    res = subprocess.run([dax_exe, 'dd', 'if=/dev/zero', 'of=' + path, 'bs=1M', 'count=1',
                          'conv=notrunc', 'status=none'], capture_output=True, timeout=TIMEOUT)
    assert res.returncode == 0, res.stderr
    st = os.stat(path)
    assert st.st_size == MiB
    assert st.st_blocks * 512 >= 50 * MiB, st.st_blocks


def test_no_preallocation_is_left_when_the_writer_closes_before_a_reader(mnt, dax_exe,
                                                                         hostile_exe):
    """A program with a reader and a writer fd of a new file writes 1 MiB
    (the library preallocates past EOF) and closes the writer first: after
    it exits the file holds its 1 MiB and not much more."""
    path = mnt.path('t')
    assert run_hostile(dax_exe, hostile_exe, 'trimleak', path) == 'ok'
    st = os.stat(path)
    assert st.st_size == MiB
    assert st.st_blocks * 512 <= 2 * MiB, st.st_blocks


VFORK_SCRIPT = r'''
import mmap, os, subprocess, sys, time
path = sys.argv[1]
with open(path, 'wb') as f:
    f.write(b'v' * (8 << 20))
fd = os.open(path, os.O_RDWR)
m = mmap.mmap(fd, 8 << 20, mmap.MAP_SHARED)
assert m[0] == ord('v')
subprocess.run(['/usr/bin/true'], check=True, timeout=60)   # vfork + exec
os.truncate(path, 1 << 20)
for i in range(50):       # across the library's revocation
    assert m[0] == ord('v') and m[(1 << 20) - 1] == ord('v')
    time.sleep(0.01)
print('ok')
'''


def test_a_vfork_child_leaves_the_parents_mapping_readable(mnt, dax_exe):
    """A pinfs-dax python3 maps an 8 MiB file shared, runs a command
    (subprocess: vfork and exec; the child closes fds in the parent's
    memory), then truncates the file to 1 MiB: the first MiB of the mapping
    stays readable (no SIGBUS)."""
    path = mnt.path('v')
    res = subprocess.run([dax_exe, sys.executable, '-c', VFORK_SCRIPT, path],
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert res.returncode == 0 and res.stdout == 'ok\n', (res.returncode, res.stderr)

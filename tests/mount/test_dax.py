"""pinfs-dax: an unmodified program (tests/mount/daxprobe.c, or cat, cp, dd)
served from the pool under layout leases (issue 18, items 1 and 2).

Each test asserts what the program sees (bytes, sizes, errno), what plain
readers and writers through FUSE see, and where it can, that the pool really
served the I/O: the probe's own /proc/self/maps shows the pool file mapped
after its first read (none without pinfs-dax), and `pinfsctl pins` lists the
layout lease with the probe's pid.
"""

import errno
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from pinfs_mount import _find_program, compile_helper, run, describe, user_runnable
from pinfs_util import KiB, MiB, fallocate, fill_until_enospc, pattern, read_file, write_file

pytestmark = [pytest.mark.needs_daemon]

BLOCK = 4 * KiB


@pytest.fixture(scope='module')
def probe_exe():
    exe = compile_helper('daxprobe', ['-pthread'])
    yield exe
    shutil.rmtree(os.path.dirname(exe), ignore_errors=True)


@pytest.fixture(scope='module')
def dax_exe():
    exe = _find_program('pinfs-dax')
    assert exe, 'pinfs-dax is not built'
    return exe


class Probe:
    """daxprobe under pinfs-dax, one command a line."""

    def __init__(self, dax_exe, probe_exe, preexec=None, env=None):
        self.proc = subprocess.Popen([dax_exe, probe_exe], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1,
                                     preexec_fn=preexec, env=env)

    def __call__(self, *args):
        self.proc.stdin.write(' '.join(str(a) for a in args) + '\n')
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, 'daxprobe died (status %s) on %r' % (self.proc.poll(), args)
        return line.strip()

    def alive(self):
        return self.proc.poll() is None

    def open(self, path, mode='rw'):
        fd = int(self('open', path, mode))
        assert fd >= 0, 'open %s: errno %d' % (path, -fd)
        return fd

    def pread(self, fd, off, n):
        out = self('pread', fd, off, n)
        assert not out.startswith('ERR'), out
        return b'' if out == '-' else bytes.fromhex(out)

    def pwrite(self, fd, off, data):
        return int(self('pwrite', fd, off, data.hex()))

    def pwrite_big(self, fd, off, data, tmp):
        """One pwrite of @data (any size), handed over in file @tmp."""
        with open(tmp, 'wb') as f:
            f.write(data)
        return int(self('pwritefile', fd, off, tmp))

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write('quit\n')
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def probe(dax_exe, probe_exe):
    made = []

    def make(**kw):
        p = Probe(dax_exe, probe_exe, **kw)
        made.append(p)
        return p
    yield make
    for p in made:
        p.close()


def pool_of(mnt):
    return os.getxattr(mnt.dir, 'user.pinfs.pool').decode()


def pins(mnt):
    res = run([_find_program('pinfsctl'), 'pins', '--json', mnt.dir])
    assert res.returncode == 0, describe(res)
    return json.loads(res.stdout)['pins']


def layout_pins(mnt, pid):
    return [p for p in pins(mnt) if p['pid'] == pid and 'layout' in p['flags']]


def make_file(path, size, seed=1):
    data = pattern(seed, size)
    write_file(path, data)
    return data


# ---------------------------------------------------------------- coherence

def test_dax_writes_are_read_by_plain_reads_at_once_and_back(mnt, probe):
    path = mnt.path('f')
    data = bytearray(make_file(path, 256 * KiB))
    p = probe()
    fd = p.open(path)
    assert p.pread(fd, 0, 8192) == bytes(data[:8192])
    # the read was served from the pool: the probe maps it now
    assert int(p('maps', pool_of(mnt))) > 0

    # a pinfs-dax store, seen by a plain read() through FUSE at once
    p.pwrite(fd, 5000, b'dax-store' * 100)
    data[5000:5900] = b'dax-store' * 100
    with open(path, 'rb') as f:
        assert f.read() == bytes(data)

    # a plain write through FUSE, seen by the pinfs-dax reader at once
    pfd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(pfd, b'plain' * 1000, 100 * KiB)
    finally:
        os.close(pfd)
    data[100 * KiB:100 * KiB + 5000] = b'plain' * 1000
    assert p.pread(fd, 100 * KiB - 10, 5020) == bytes(data[100 * KiB - 10:100 * KiB + 5010])

    # the positioned calls: seek, write, read, readv, writev
    assert p('seek', fd, 7) == '7'
    assert p('write', fd, (b'W' * 10).hex()) == '10'
    assert p('writev', fd, (b'V' * 11).hex()) == '11'
    data[7:28] = b'W' * 10 + b'V' * 11
    assert p('seek', fd, 0) == '0'
    assert bytes.fromhex(p('read', fd, 30)) == bytes(data[:30])
    assert bytes.fromhex(p('readv', fd, 30)) == bytes(data[30:60])
    assert read_file(path) == bytes(data)

    # reads at and past EOF: short, then nothing
    assert p.pread(fd, len(data) - 10, 100) == bytes(data[-10:])
    assert p.pread(fd, len(data), 100) == b''


def test_writes_past_eof_and_into_holes_go_through_fuse(mnt, probe):
    path = mnt.path('f')
    data = bytearray(make_file(path, 64 * KiB))
    p = probe()
    fd = p.open(path)
    assert p.pread(fd, 0, 10) == bytes(data[:10])
    # straddles EOF: the daemon allocates, the size follows
    assert p.pwrite(fd, 64 * KiB - 5, b'x' * 10) == 10
    assert os.stat(path).st_size == 64 * KiB + 5
    assert p.pwrite(fd, 1 * MiB, b'far') == 3
    assert os.stat(path).st_size == 1 * MiB + 3
    got = read_file(path)
    assert got[:64 * KiB - 5] == bytes(data[:64 * KiB - 5])
    assert got[64 * KiB - 5:64 * KiB + 5] == b'x' * 10
    assert got[64 * KiB + 5:1 * MiB] == bytes(1 * MiB - 64 * KiB - 5)
    assert got[1 * MiB:] == b'far'
    # into the hole, read back by both
    assert p.pwrite(fd, 512 * KiB, b'hole') == 4
    assert read_file(path)[512 * KiB:512 * KiB + 4] == b'hole'
    assert p.pread(fd, 512 * KiB - 2, 8) == b'\0\0hole\0\0'


def test_stores_go_through_fuse_while_a_plain_mapping_caches_the_file(mnt, probe):
    import mmap
    path = mnt.path('f')
    make_file(path, 64 * KiB)
    p = probe()
    fd = p.open(path)
    p.pread(fd, 0, 10)
    mfd = os.open(path, os.O_RDWR)
    try:
        m = mmap.mmap(mfd, 64 * KiB, mmap.MAP_SHARED)
        try:
            assert m[8192:8200] == pattern(1, 64 * KiB)[8192:8200]   # a page in the cache
            assert p.pwrite(fd, 8192, b'NEWBYTES') == 8
            # the kernel's cached page shows the store: it went through FUSE
            assert m[8192:8200] == b'NEWBYTES'
            m[100:104] = b'mmap'
            m.flush()
            assert p.pread(fd, 100, 4) == b'mmap'
        finally:
            m.close()
    finally:
        os.close(mfd)


def test_mtime_and_ctime_follow_direct_stores(mnt, probe):
    path = mnt.path('f')
    make_file(path, 64 * KiB)
    old = time.time_ns() - 10 ** 10
    os.utime(path, ns=(old, old))
    ctime0 = os.stat(path).st_ctime_ns
    p = probe()
    fd = p.open(path)
    assert p.pwrite(fd, 0, b'abc') == 3
    assert p('fsync', fd) == '0'
    st = os.stat(path)
    assert st.st_mtime_ns > old
    assert st.st_ctime_ns > ctime0
    # and at close
    os.utime(path, ns=(old, old))
    assert p.pwrite(fd, 10, b'abc') == 3
    assert p('close', fd) == '0'
    assert os.stat(path).st_mtime_ns > old


# ------------------------------------------------------------------- leases

def test_layout_lease_is_listed_and_ends_at_close(mnt, probe):
    path = mnt.path('f')
    make_file(path, 128 * KiB)
    p = probe()
    fd = p.open(path)
    p.pread(fd, 0, 10)
    ls = layout_pins(mnt, p.proc.pid)
    assert len(ls) == 1, pins(mnt)
    assert ls[0]['start'] == 0 and ls[0]['end'] == 128 * KiB
    assert ls[0]['state'] == 'active'
    assert 'write' in ls[0]['flags']
    assert p('close', fd) == '0'
    assert layout_pins(mnt, p.proc.pid) == []


def events(mnt):
    res = run([_find_program('pinfsctl'), 'events', '--timeout', '0.5', mnt.dir])
    return res.stdout


@pytest.mark.pool_size('64M')
@pytest.mark.mount_options('wait_timeout=30', 'lease_break_time=30')
@pytest.mark.parametrize('policy', ['fail', 'revoke', 'wait', 'break'])
def test_truncate_never_waits_and_never_shows_another_files_bytes(mnt, probe, policy):
    path = mnt.path('f')
    data = make_file(path, 1 * MiB)
    os.setxattr(path, 'user.pinfs.policy', policy.encode())
    p = probe()
    fd = p.open(path)
    assert p.pread(fd, 0, 4096) == data[:4096]
    ls = layout_pins(mnt, p.proc.pid)
    assert len(ls) == 1 and ls[0]['state'] == 'active', pins(mnt)
    lease = ls[0]['lease']

    # wait/break would take 30 s, fail would refuse, revoke would SIGBUS
    # the probe: a layout lease is revoked at once, silently
    t0 = time.monotonic()
    os.truncate(path, 10000)             # inside block 2: the new last block
    took = time.monotonic() - t0
    assert took < 15, 'the truncate waited %.1f s' % took
    assert p.alive()
    ev = events(mnt)
    mine = [l for l in ev.splitlines() if ' lease=%d ' % lease in l]
    assert any(l.split()[2] == 'revoke' for l in mine), ev
    assert not any(l.split()[2] in ('wait', 'break', 'refuse') for l in mine), ev

    # the new size, at once
    assert p.pread(fd, 0, 20000) == data[:10000]
    assert p.pread(fd, 10000, 100) == b''

    # the freed blocks go to another file; ours grows back over them
    fill_until_enospc(mnt.path('other'), 0xEE)
    os.unlink(mnt.path('other'))
    os.truncate(path, 1 * MiB)
    got = p.pread(fd, 0, 65536)
    assert got[:10000] == data[:10000]
    assert got[10000:] == bytes(65536 - 10000)
    for off in range(64 * KiB, 1 * MiB, 64 * KiB):
        assert p.pread(fd, off, 64 * KiB) == bytes(64 * KiB)
    # and stores land in the file, not in a quarantined block
    assert p.pwrite(fd, 2000, b'after') == 5
    assert read_file(path)[2000:2005] == b'after'
    assert read_file(path)[10000:] == bytes(1 * MiB - 10000)


@pytest.mark.parametrize('policy', ['fail', 'revoke', 'wait', 'break'])
@pytest.mark.mount_options('wait_timeout=30', 'lease_break_time=30')
def test_punch_and_o_trunc_revoke_a_layout_lease_at_once(mnt, probe, policy):
    from pinfs_util import fallocate, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE
    path = mnt.path('f')
    data = make_file(path, 256 * KiB)
    os.setxattr(path, 'user.pinfs.policy', policy.encode())
    p = probe()
    fd = p.open(path)
    assert p.pread(fd, 0, 10) == data[:10]
    pfd = os.open(path, os.O_RDWR)
    try:
        fallocate(pfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 64 * KiB, 64 * KiB)
    finally:
        os.close(pfd)
    assert p.pread(fd, 60 * KiB, 8 * KiB) == data[60 * KiB:64 * KiB] + bytes(4 * KiB)
    assert p.alive()
    with open(path, 'wb') as f:          # O_TRUNC
        f.write(b'short')
    assert p.pread(fd, 0, 100) == b'short'
    assert p.alive()


# ---------------------------------------------------- processes and fds

def test_fork_child_reads_through_its_own_lease(mnt, probe):
    path = mnt.path('f')
    data = make_file(path, 64 * KiB)
    p = probe()
    fd = p.open(path)
    assert p.pread(fd, 0, 16) == data[:16]
    pool = pool_of(mnt)
    assert int(p('maps', pool)) > 0
    out = p('forkread', fd, 4096, 32, pool).split()
    assert bytes.fromhex(out[0]) == data[4096:4128]
    # the parent's mapping did not follow the child (MADV_DONTFORK); the
    # child took its own
    assert out[1] == '0' and int(out[2]) > 0, out


def test_exec_keeps_the_preload_and_cat_cp_dd_give_identical_bytes(mnt, dax_exe, tmp_path):
    src = mnt.path('src')
    data = make_file(src, 3 * MiB + 1234, seed=7)
    res = subprocess.run([dax_exe, 'sh', '-c', 'exec cat "$1"', 'sh', src], capture_output=True,
                         timeout=60)
    assert res.returncode == 0 and res.stdout == data
    # an fd inherited across exec (the shell's "< file") is served too:
    # cat pinned the file (a PIN event names it)
    with open(src, 'rb') as f:
        res = subprocess.run([dax_exe, 'sh', '-c', 'exec cat'], stdin=f, capture_output=True,
                             timeout=60)
    assert res.returncode == 0 and res.stdout == data
    assert re.search(r' pin lease=\d+ pid=\d+/cat ', events(mnt)), events(mnt)
    res = subprocess.run([dax_exe, 'cp', src, mnt.path('copy')], capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert read_file(mnt.path('copy')) == data
    # dd into an existing file of the same size: stores inside EOF, direct
    write_file(mnt.path('dd'), bytes(len(data)))
    res = subprocess.run([dax_exe, 'dd', 'if=' + src, 'of=' + mnt.path('dd'), 'bs=64k',
                          'conv=notrunc', 'status=none'], capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert read_file(mnt.path('dd')) == data
    res = subprocess.run([dax_exe, 'dd', 'if=' + src, 'of=' + str(tmp_path / 'out'), 'bs=1M',
                          'status=none'], capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / 'out').read_bytes() == data


def test_dup_dup2_dup3_and_f_dupfd_share_the_lease(mnt, probe):
    path = mnt.path('f')
    data = make_file(path, 64 * KiB)
    p = probe()
    fd = p.open(path)
    assert p.pread(fd, 0, 8) == data[:8]
    d1 = int(p('dup', fd))
    d2 = int(p('dup2', fd, 40))
    d3 = int(p('dup3', fd, 41))
    d4 = int(p('dupfd', fd))
    assert d2 == 40 and d3 == 41 and d1 >= 0 and d4 >= 100
    assert p('close', fd) == '0'
    for i, d in enumerate((d1, d2, d3, d4)):
        assert p.pwrite(d, 100 + i, b'%d' % i) == 1
        assert p.pread(d, 0, 200) == read_file(path)[:200]
    assert len(layout_pins(mnt, p.proc.pid)) == 1
    # dup2 over a pinfs fd closes that one, the rest keep the lease
    other = p.open(mnt.path('f'), 'r')
    assert p('dup2', other, d1) == str(d1)
    for d in (d1, d2, d3):
        assert p('close', d) == '0'
    assert p('close', other) == '0'
    assert len(layout_pins(mnt, p.proc.pid)) == 1
    assert p('close', d4) == '0'
    assert layout_pins(mnt, p.proc.pid) == []


def test_an_fd_number_closed_behind_the_librarys_back_serves_the_new_file(mnt, probe,
                                                                          tmp_path):
    path = mnt.path('f')
    make_file(path, 64 * KiB)
    other = tmp_path / 'other'
    other.write_bytes(b'not the pinfs file' * 100)
    p = probe()
    fd = p.open(path)
    p.pread(fd, 0, 10)
    assert p('rawclose', fd) == '0'
    fd2 = p.open(str(other), 'r')
    assert fd2 == fd
    assert p.pread(fd2, 0, 18) == b'not the pinfs file'
    # and a pinfs file opened on that number is its own
    assert p('rawclose', fd2) == '0'
    data2 = make_file(mnt.path('g'), 8 * KiB, seed=9)
    assert p.open(mnt.path('g')) == fd
    assert p.pread(fd, 0, 8 * KiB) == data2


def test_o_append_writes_append(mnt, probe):
    path = mnt.path('f')
    data = make_file(path, 64 * KiB)
    p = probe()
    fd = p.open(path, 'a')
    assert p('seek', fd, 0) == '0'
    assert p('write', fd, b'tail1'.hex()) == '5'
    assert read_file(path) == data + b'tail1'
    rw = p.open(path, 'rw')
    assert p.pread(rw, 0, 8) == data[:8]
    assert p('setappend', rw) == '0'
    assert p('seek', rw, 0) == '0'
    assert p('write', rw, b'tail2'.hex()) == '5'
    assert read_file(path) == data + b'tail1tail2'


def test_o_direct_is_served_from_the_pool_too(mnt, probe):
    path = mnt.path('f')
    data = bytearray(make_file(path, 64 * KiB))
    p = probe()
    fd = p.open(path, 'd')
    assert p.pread(fd, 8192, 4096) == bytes(data[8192:12288])
    assert int(p('maps', pool_of(mnt))) > 0
    assert p.pwrite(fd, 4096, b'D' * 4096) == 4096
    data[4096:8192] = b'D' * 4096
    assert read_file(path) == bytes(data)


def test_threads_and_signal_handlers(mnt, probe):
    path = mnt.path('f')
    make_file(path, 32 * 4096)
    p = probe()
    fd = p.open(path)
    p.pread(fd, 0, 1)
    assert p('threads', fd, 32, 0) == 'ok'
    got = read_file(path)
    assert len(got) == 32 * 4096
    for i in range(32):
        blk = got[i * 4096:(i + 1) * 4096]
        assert blk == bytes([blk[0]]) * 4096 and 0x41 <= blk[0] <= 0x5a
    out = p('sigread', fd, 1000, 8000, 200).split()
    assert out[0] == 'ok', out
    assert int(out[1]) >= 200
    assert int(p('maps', pool_of(mnt))) > 0


def user_dax(dax_exe):
    """A copy of the wrapper, with the library beside it, that user 1000 can
    run (the build may sit in a directory only root can enter)."""
    dax = user_runnable(dax_exe)
    libcopy = os.path.join(os.path.dirname(dax), 'libpinfsdax.so')
    if not os.path.exists(libcopy):
        shutil.copy(os.path.join(os.path.dirname(dax_exe), 'libpinfsdax.so'), libcopy)
        os.chmod(libcopy, 0o755)
    return dax


def to_user_1000():
    """preexec_fn: become uid/gid 1000, no supplementary groups."""
    os.setgroups([])
    os.setgid(1000)
    os.setuid(1000)


@pytest.mark.mount_options('allow_other')
def test_a_user_who_cannot_open_the_pool_goes_through_fuse(mnt, probe, probe_exe, dax_exe):
    pool = pool_of(mnt)
    assert os.stat(pool).st_mode & 0o077 == 0     # root's alone
    path = mnt.path('f')
    data = bytearray(make_file(path, 64 * KiB))
    os.chmod(path, 0o666)
    exe = user_runnable(probe_exe)
    p = Probe(user_dax(dax_exe), exe, preexec=to_user_1000)
    try:
        fd = p.open(path)
        assert p.pread(fd, 0, 4096) == bytes(data[:4096])
        assert p.pwrite(fd, 10, b'user') == 4
        data[10:14] = b'user'
        assert read_file(path) == bytes(data)
        assert p('maps', pool) == '0'
        assert layout_pins(mnt, p.proc.pid) == []
    finally:
        p.close()


@pytest.mark.mount_options('allow_other')
def test_verbose_says_per_mount_whether_files_are_served_and_why_not(mnt, dax_exe):
    """pinfs-dax -v (and PINFS_DAX_VERBOSE): one line per process and mount
    on stderr: root's files are served from the pool; a user who cannot
    open the pool is told so, with the errno, and is served through FUSE.
    Without it, nothing is said. The bytes are right every way."""
    pool = pool_of(mnt)
    path = mnt.path('f')
    data = make_file(path, 300 * KiB, seed=3)
    os.chmod(path, 0o666)
    def pid_of(line):
        m = re.match(r'pinfs-dax\[(\d+)\]: ', line)
        assert m, line
        return int(m.group(1))
    served = ('pinfs-dax[%d]: ' + path + ': a pinfs mount: its files are served from the pool '
              + pool + '\n')
    res = subprocess.run([dax_exe, '-v', 'sh', '-c', 'cat "$1"; cat "$1"', 'sh', path],
                         capture_output=True, timeout=60)
    assert res.returncode == 0 and res.stdout == data * 2, res.stderr
    lines = res.stderr.decode().splitlines(True)
    assert len(lines) == 2, lines            # one per cat, none for the shell
    for line in lines:
        assert line == served % pid_of(line), line
    res = subprocess.run([dax_exe, 'cat', path], capture_output=True, timeout=60)
    assert res.returncode == 0 and res.stdout == data and res.stderr == b''
    # the library reads the variable itself
    res = subprocess.run([dax_exe, '--', 'cat', path], capture_output=True, timeout=60,
                         env=dict(os.environ, PINFS_DAX_VERBOSE='1'))
    assert res.returncode == 0 and res.stdout == data
    assert res.stderr.decode() == served % pid_of(res.stderr.decode())

    res = subprocess.run([user_dax(dax_exe), '--verbose', 'dd', 'of=' + path, 'bs=4k', 'seek=1',
                          'conv=notrunc', 'status=none'], input=b'u' * 4096,
                         preexec_fn=to_user_1000,
                         capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    m = re.fullmatch(r'pinfs-dax\[\d+\]: (.*): a pinfs mount: its files go through FUSE: this '
                     r'user cannot open the pool (.*) \(Permission denied\)\n', res.stderr.decode())
    assert m and m.groups() == (path, pool), res.stderr
    assert read_file(path) == data[:4096] + b'u' * 4096 + data[8192:]


@pytest.mark.mount_options('allow_other', 'pin_group=2000', 'max_pinned_per_user=64K')
def test_verbose_says_why_a_file_goes_through_fuse(mnt, dax_exe):
    """pinfs-dax -v, for a user of the pool's group (-o pin_group) who may
    open the pool: a file larger than the user may pin (-o
    max_pinned_per_user) is read through FUSE, since the daemon refuses the
    lease, and a file with holes too (a layout lease fills none), for read()
    and for a shared mapping alike; each said once per file, the bytes right."""
    os.chmod(os.path.dirname(mnt.pool), 0o755)     # the scratch dir is 0700
    theirs = mnt.path('big')
    data = make_file(theirs, 200 * KiB, seed=4)
    os.chmod(theirs, 0o644)
    holey = mnt.path('holey')
    with open(holey, 'wb') as f:
        f.truncate(1 * MiB)
        f.seek(512 * KiB)
        f.write(b'abc')
    os.chmod(holey, 0o666)

    def user():
        os.setgroups([2000])
        os.setgid(1000)
        os.setuid(1000)
    script = ('cat "$1" "$1"; cat "$2" | md5sum >/dev/null; '
              'python3 -c "import mmap, os, sys; f = os.open(sys.argv[1], os.O_RDWR); '
              'm = mmap.mmap(f, 1 << 20); sys.stdout.buffer.write(m[512 * 1024:512 * 1024 + 3])" "$2"')
    res = subprocess.run([user_dax(dax_exe), '-v', 'sh', '-c', script, 'sh', theirs, holey],
                         preexec_fn=user, capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout == data * 2 + b'abc'
    said = re.sub(r'pinfs-dax\[\d+\]: ', '', res.stderr.decode()).splitlines()
    served = ': a pinfs mount: its files are served from the pool ' + mnt.pool
    assert said == [
        theirs + served,
        theirs + ': through FUSE for now: the daemon refused its layout lease (Cannot allocate memory)',
        holey + served,
        holey + ': through FUSE while it has holes (%d of 1048576 bytes allocated)'
        % (os.stat(holey).st_blocks * 512),
        holey + served,
        holey + ": a shared mapping of it goes through FUSE's page cache while it has holes",
    ], res.stderr


# ------------------------------------------------------------- shared mmap

@pytest.mark.parametrize('policy', ['fail', 'wait'])
@pytest.mark.mount_options('wait_timeout=30')
def test_shared_mmap_maps_the_pool_and_sigbus_past_eof_after_truncate(mnt, probe, policy):
    path = mnt.path('f')
    data = make_file(path, 256 * KiB)
    os.setxattr(path, 'user.pinfs.policy', policy.encode())
    pool = pool_of(mnt)
    p = probe()
    fd = p.open(path)
    before = int(p('maps', pool))
    mid = p('mmap', fd, 256 * KiB, 'rw')
    assert not mid.startswith('ERR'), mid
    # the pool's blocks, not the page cache: one more mapping of the pool,
    # and a lease listed for it
    assert int(p('maps', pool)) > before
    assert len(layout_pins(mnt, p.proc.pid)) >= 1
    assert bytes.fromhex(p('mget', mid, 4096, 64)) == data[4096:4160]
    # stores are in the file at once, plain writes in the mapping at once
    assert p('mput', mid, 100, b'stored'.hex()) == 'ok'
    assert read_file(path)[100:106] == b'stored'
    wfd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(wfd, b'written', 8192)
    finally:
        os.close(wfd)
    assert bytes.fromhex(p('mget', mid, 8192, 7)) == b'written'

    # a truncate does not wait for the mapping; past the new EOF the
    # mapping gives SIGBUS (once the library has replaced it), below it
    # the file's bytes
    t0 = time.monotonic()
    os.truncate(path, 10000)
    assert time.monotonic() - t0 < 15
    deadline = time.monotonic() + 10
    while p('mget', mid, 64 * KiB, 1) != 'SIGBUS':
        assert time.monotonic() < deadline, 'no SIGBUS past EOF after the truncate'
        time.sleep(0.05)
    assert p('mget', mid, 12 * KiB, 1) == 'SIGBUS'
    assert bytes.fromhex(p('mget', mid, 100, 6)) == b'stored'
    assert bytes.fromhex(p('mget', mid, 0, 100)) == data[:100]
    fill_until_enospc(mnt.path('other'), 0xEE)
    os.unlink(mnt.path('other'))
    # the remaining page still maps the file (through FUSE now)
    assert p('mput', mid, 200, b'again'.hex()) == 'ok'
    assert p('munmap', mid) == '0'
    assert read_file(path)[200:205] == b'again'
    assert p.alive()


def test_meson_installs_the_wrapper_the_library_and_the_man_page(mnt):
    import tempfile
    from pinfs_mount import BUILD
    dest = tempfile.mkdtemp(prefix='pinfs-destdir-', dir='/dev/shm')
    try:
        res = run(['meson', 'install', '-C', BUILD, '--destdir', dest, '--no-rebuild',
                   '--quiet'], timeout=120)
        assert res.returncode == 0, describe(res)
        found = {}
        for root, _, files in os.walk(dest):
            # the bash completion of pinfs-dax has the wrapper's name too
            if root.endswith('bash-completion/completions'):
                continue
            for f in files:
                found.setdefault(f, os.path.join(root, f))
        wrapper, lib = found.get('pinfs-dax'), found.get('libpinfsdax.so')
        assert wrapper and os.path.basename(os.path.dirname(wrapper)) == 'bin', found
        assert os.access(wrapper, os.X_OK)
        assert lib and lib.endswith('/pinfs/libpinfsdax.so'), lib
        assert found.get('pinfs-dax.1', '').endswith('/man1/pinfs-dax.1')
        # the installed wrapper names the library where the prefix puts it
        with open(wrapper) as f:
            text = f.read()
        assert lib[len(dest):] in text
        # and runs a program with it, served from the pool
        path = mnt.path('f')
        data = make_file(path, 100 * KiB)
        out = subprocess.run([wrapper, 'cat', path], capture_output=True, timeout=60,
                             env=dict(os.environ, PINFS_DAX_LIB=lib))
        assert out.returncode == 0 and out.stdout == data
    finally:
        shutil.rmtree(dest, ignore_errors=True)


@pytest.mark.pool_size('400M')
def test_a_big_file_is_pinned_in_windows_and_reads_across_them_are_right(mnt, probe):
    path = mnt.path('big')
    win = 256 * MiB
    size = win + 8 * MiB
    chunk = pattern(3, 1 * MiB)
    with open(path, 'wb') as f:
        for i in range(size // MiB):
            f.write(bytes([i % 251]) + chunk[1:])
    p = probe()
    fd = p.open(path, 'r')
    assert p.pread(fd, win + 5, 4) == chunk[5:9]           # only the second window
    ls = layout_pins(mnt, p.proc.pid)
    assert [(l['start'], l['end']) for l in ls] == [(win, size)], ls
    assert p.pread(fd, 10 * MiB, 2) == bytes([10]) + chunk[1:2]
    ls = layout_pins(mnt, p.proc.pid)
    assert sorted((l['start'], l['end']) for l in ls) == [(0, win), (win, size)], ls
    # a read across the boundary: right bytes (through FUSE)
    got = p.pread(fd, win - 3, 6)
    assert got == chunk[-3:] + bytes([256 % 251]) + chunk[1:3]
    assert p('close', fd) == '0'
    assert layout_pins(mnt, p.proc.pid) == []


def test_closefrom_is_seen_and_a_memfd_on_the_old_number_is_not_served(mnt, probe):
    """glibc's closefrom() closes the program's fds and the library's pool
    fds with them, through no close() the library sees. A descriptor made
    later by something other than open() (memfd_create, pipe, socket) may
    get the old number: its I/O must reach it, not the old file's blocks."""
    path = mnt.path('f')
    data = make_file(path, 64 * KiB)
    p = probe()
    fd = p.open(path)
    assert p.pread(fd, 0, 4096) == data[:4096]
    assert p('closefrom', fd) == '0'
    mfd = int(p('memfd'))
    assert mfd == fd
    assert p.pwrite(mfd, 0, b'memfd bytes') == 11
    assert p.pread(mfd, 0, 11) == b'memfd bytes'
    assert read_file(path) == data
    assert layout_pins(mnt, p.proc.pid) == []


@pytest.mark.parametrize('maker', ['memfd', 'pipe', 'socketpair'])
def test_a_descriptor_no_open_made_on_a_number_closed_unseen_is_not_served(mnt, probe, maker):
    """A close the library cannot see (syscall(SYS_close)), then a
    descriptor made by memfd_create, pipe or socketpair on that number:
    its I/O reaches it, and the old file keeps its bytes."""
    path = mnt.path('f')
    data = make_file(path, 64 * KiB)
    p = probe()
    fd = p.open(path)
    assert p.pread(fd, 0, 4096) == data[:4096]
    assert p('rawclose', fd) == '0'
    nfd = int(p(maker))
    assert nfd == fd
    if maker == 'memfd':
        assert p.pwrite(nfd, 0, b'memfd bytes') == 11
        assert p.pread(nfd, 0, 11) == b'memfd bytes'
    else:
        # a pipe or socket has no offset: ESPIPE, never the file's bytes
        assert p.pwrite(nfd, 0, b'pipe bytes') == -errno.ESPIPE
        assert p('pread', nfd, 0, 10) == 'ERR %d' % errno.ESPIPE
    assert read_file(path) == data


def test_a_failed_execve_leaves_shared_mappings_coherent(mnt, probe):
    """execve() unpins every lease first (the new image holds none). When
    it fails the program goes on with its shared mappings: a store must
    still reach the file and a truncate still give SIGBUS past EOF, not
    land in blocks the file no longer has."""
    path = mnt.path('f')
    data = make_file(path, 64 * KiB)
    p = probe()
    fd = p.open(path)
    mid = p('mmap', fd, 64 * KiB, 'rw')
    assert not mid.startswith('ERR'), mid
    assert bytes.fromhex(p('mget', mid, 0, 16)) == data[:16]
    assert int(p('execfail', '/nonexistent/prog')) == -errno.ENOENT
    os.truncate(path, 8192)
    deadline = time.monotonic() + 10
    while p('mget', mid, 32 * KiB, 1) != 'SIGBUS':
        assert time.monotonic() < deadline, 'no SIGBUS past EOF after the truncate'
        time.sleep(0.05)
    assert p('mput', mid, 100, b'stored'.hex()) == 'ok'
    assert read_file(path)[100:106] == b'stored'
    assert p('munmap', mid) == '0'
    assert p.alive()


def test_shared_mappings_of_a_second_mount_are_revoked_too(mnt, probe, scratch):
    """One process maps files of two pinfs mounts: each mount's state file
    is watched, so a truncate on the second gives SIGBUS past its new EOF
    and later stores reach the file, as on the first."""
    import tempfile
    from pinfs_mount import PinfsMount, mkfs, force_unmount, mounted
    pool2 = os.path.join(scratch, 'pool2')
    mkfs(pool2, '64M')
    mp2 = tempfile.mkdtemp(prefix='pinfs-mnt-')
    m2 = PinfsMount(pool2, mp2, scratch)
    try:
        m2.start()
        p = probe()
        paths = [mnt.path('a'), m2.path('b')]
        datas = [make_file(path, 64 * KiB, seed=i + 1) for i, path in enumerate(paths)]
        mids = []
        for path, data in zip(paths, datas):
            fd = p.open(path)
            mid = p('mmap', fd, 64 * KiB, 'rw')
            assert not mid.startswith('ERR'), mid
            assert bytes.fromhex(p('mget', mid, 0, 16)) == data[:16]
            mids.append(mid)
        for path, mid in zip(paths, mids):
            os.truncate(path, 8192)
            deadline = time.monotonic() + 10
            while p('mget', mid, 32 * KiB, 1) != 'SIGBUS':
                assert time.monotonic() < deadline, 'no SIGBUS past EOF on %s' % path
                time.sleep(0.05)
            assert p('mput', mid, 100, b'stored'.hex()) == 'ok'
            assert read_file(path)[100:106] == b'stored'
            assert p('munmap', mid) == '0'
        p.close()
    finally:
        problems = m2.stop()
        if mounted(mp2):
            force_unmount(mp2)
        os.rmdir(mp2)
    assert not problems, problems


def test_wrapper_usage_errors_and_version_read_like_the_other_programs(dax_exe):
    """pinfs-dax --version says "(pinfs)" as the others do; an unknown option
    is a usage error (exit 2, one line and Try), not a command the shell
    could not find; a missing command is named in one line (exit 127),
    without the shell's "pinfs-dax: 36: exec:"; `--` ends the options."""
    res = run([dax_exe, '--version'])
    assert res.returncode == 0 and res.stdout == 'pinfs-dax (pinfs) 0.1.0\n', describe(res)
    res = run([dax_exe, '-x', 'true'])
    assert res.returncode == 2, describe(res)
    assert res.stderr == "pinfs-dax: unknown option '-x'\nTry 'pinfs-dax --help'.\n", \
        describe(res)
    res = run([dax_exe, '/nonexistent/command', 'arg'])
    assert res.returncode == 127, describe(res)
    assert res.stderr == 'pinfs-dax: /nonexistent/command: command not found\n', describe(res)
    res = run([dax_exe, '--', 'sh', '-c', 'echo "$LD_PRELOAD"'])
    assert res.returncode == 0 and res.stdout.strip().endswith('libpinfsdax.so'), describe(res)
    res = run([dax_exe, '--'])
    assert res.returncode == 2 and res.stderr.startswith('usage: pinfs-dax '), describe(res)


# ------------------------------------------------- appends from the pool

def ops(mnt):
    res = run([_find_program('pinfsctl'), 'stats', '--ops', '--json', mnt.dir])
    assert res.returncode == 0, describe(res)
    return json.loads(res.stdout)


@pytest.mark.pool_size('256M')
def test_large_appends_of_a_new_file_are_served_from_the_pool(mnt, dax_exe, tmp_path):
    """dd bs=1M of a new file: the writes extend it, yet (blocks preallocated
    past EOF under the layout lease, the size grown by fallocate) the bytes
    go straight to the pool: a handful of FUSE WRITEs, not one per MiB
    (there were 40). Size and bytes exact, and durable after fsync across a
    remount."""
    src = tmp_path / 'src'
    data = pattern(11, 40 * MiB + 4321)
    src.write_bytes(data)
    dst = mnt.path('new')
    before = ops(mnt).get('WRITE', 0)
    res = subprocess.run([dax_exe, 'dd', 'if=' + str(src), 'of=' + dst, 'bs=1M',
                          'conv=fsync', 'status=none'], capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr
    writes = ops(mnt).get('WRITE', 0) - before
    assert writes <= 4, 'FUSE WRITEs for 41 extending writes: %d' % writes
    st = os.stat(dst)
    assert st.st_size == len(data)
    # what was preallocated past EOF and not written is freed at the last
    # close (PINFS_IOC_TRIM): the data's blocks and the map's, no more
    assert len(data) <= st.st_blocks * 512 <= len(data) + MiB
    assert read_file(dst) == data
    mnt.remount()
    assert os.stat(dst).st_size == len(data)
    assert read_file(dst) == data


def ioctl_errno(path, flags, req, arg):
    """The errno of ioctl @req with @arg on @path opened with @flags (0: it
    went)."""
    import fcntl
    fd = os.open(path, flags)
    try:
        fcntl.ioctl(fd, req, arg)
        return 0
    except OSError as e:
        return e.errno
    finally:
        os.close(fd)


def test_pinfs_ioc_grow_only_grows_and_zeroes_the_old_tail(mnt):
    """PINFS_IOC_GROW: the size up (stat sees it at once), never down; the
    stale bytes past the old EOF in its last block read as zeros; a
    read-only fd is EBADF, a reserved field EINVAL."""
    import fcntl
    import struct
    grow = (1 << 30) | (16 << 16) | (0xb7 << 8) | 0x21   # _IOW(0xb7, 0x21, 16 bytes)
    path = mnt.path('g')
    write_file(path, b'a' * 8192)
    fd = os.open(path, os.O_RDWR)
    try:
        os.truncate(path, 5000)          # bytes 5000..8191 of block 1 are stale 'a's
        fcntl.ioctl(fd, grow, struct.pack('QQ', 3 * MiB + 7, 0))
        assert os.stat(path).st_size == 3 * MiB + 7
        fcntl.ioctl(fd, grow, struct.pack('QQ', 1 * MiB, 0))
        assert os.fstat(fd).st_size == 3 * MiB + 7
        got = read_file(path)
        assert got == b'a' * 5000 + bytes(3 * MiB + 7 - 5000)
        with pytest.raises(OSError) as e:
            fcntl.ioctl(fd, grow, struct.pack('QQ', 4 * MiB, 1))
        assert e.value.errno == errno.EINVAL
    finally:
        os.close(fd)
    assert ioctl_errno(path, os.O_RDONLY, grow, struct.pack('QQ', 4 * MiB, 0)) == errno.EBADF
    assert os.stat(path).st_size == 3 * MiB + 7


def test_a_small_append_leaves_no_preallocation_after_close(mnt, dax_exe):
    """dd bs=1M count=3 under pinfs-dax: it preallocated 6 MiB past the
    start, and kept all of it after close (du said 6160 KiB) until the
    library trimmed what it did not write at the last close."""
    dst = mnt.path('small')
    res = subprocess.run([dax_exe, 'dd', 'if=/dev/zero', 'of=' + dst, 'bs=1M', 'count=3',
                          'status=none'], capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    st = os.stat(dst)
    assert st.st_size == 3 * MiB
    assert st.st_blocks * 512 <= 3 * MiB + 256 * KiB, st.st_blocks


def test_pinfs_ioc_trim_frees_only_past_eof_up_to_end(mnt):
    """PINFS_IOC_TRIM: the blocks from EOF (rounded up) to @end go, those
    past @end stay (a program's own preallocation), nothing inside the size
    is touched whatever @end says; a read-only fd is EBADF, a reserved field
    EINVAL."""
    import fcntl
    import struct
    trim = (1 << 30) | (16 << 16) | (0xb7 << 8) | 0x22   # _IOW(0xb7, 0x22, 16 bytes)
    path = mnt.path('t')
    data = pattern(5, 8192 + 100)
    write_file(path, data)
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, 1)     # nothing past EOF yet
        base = os.fstat(fd).st_blocks
        fallocate(fd, 1, 0, 4 * MiB)  # FALLOC_FL_KEEP_SIZE
        full = os.fstat(fd).st_blocks
        assert (full - base) * 512 >= 4 * MiB - 16 * KiB
        fcntl.ioctl(fd, trim, struct.pack('QQ', 1 * MiB, 0))
        part = os.fstat(fd).st_blocks
        # [12 KiB, 1 MiB) went, [1 MiB, 4 MiB) stayed
        assert (full - part) * 512 >= 1 * MiB - 12 * KiB - 8 * KiB
        assert (part - base) * 512 >= 3 * MiB
        fcntl.ioctl(fd, trim, struct.pack('QQ', 0, 0))   # below the size: nothing
        assert os.fstat(fd).st_blocks == part
        with pytest.raises(OSError) as e:
            fcntl.ioctl(fd, trim, struct.pack('QQ', 8 * MiB, 1))
        assert e.value.errno == errno.EINVAL
        fcntl.ioctl(fd, trim, struct.pack('QQ', 8 * MiB, 0))
        assert (os.fstat(fd).st_blocks - base) * 512 <= 8 * KiB
        assert os.fstat(fd).st_size == len(data)
    finally:
        os.close(fd)
    assert read_file(path) == data
    assert ioctl_errno(path, os.O_RDONLY, trim, struct.pack('QQ', 8 * MiB, 0)) == errno.EBADF
    mnt.remount()
    assert read_file(path) == data


@pytest.mark.pool_size('128M')
def test_a_plain_reader_during_appends_sees_the_bytes_or_zeros(mnt, dax_exe, tmp_path):
    """While dd appends from the pool, a plain reader through FUSE sees,
    at every offset below the size it reads, the file's byte or a zero
    (the size goes up before the copy), never anything else; at the end,
    every byte."""
    src = tmp_path / 'src'
    data = pattern(12, 48 * MiB)
    src.write_bytes(data)
    dst = mnt.path('new')
    write_file(dst, b'')
    proc = subprocess.Popen([dax_exe, 'dd', 'if=' + str(src), 'of=' + dst, 'bs=512k',
                             'conv=notrunc', 'status=none'])
    checked = 0
    try:
        with open(dst, 'rb', buffering=0) as f:
            while proc.poll() is None or checked < 2:
                if proc.poll() is not None:
                    checked += 1
                f.seek(0)
                got = f.read()
                # the bytes that differ from the source are all zeros
                diff = bytes(a ^ b for a, b in zip(got[-4 * MiB:], data[len(got) - 4 * MiB:]
                                                   if len(got) >= 4 * MiB else data))
                for i in range(0, len(got), 1 * MiB):
                    a, b = got[i:i + 1 * MiB], data[i:i + 1 * MiB][:len(got[i:i + 1 * MiB])]
                    if a != b:
                        bad = [k for k in range(len(a)) if a[k] != b[k] and a[k] != 0]
                        assert not bad, 'offset %d: %r' % (i + bad[0], a[bad[0]:bad[0] + 8])
                del diff
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == 0
    assert read_file(dst) == data


@pytest.mark.pool_size('64M')
@pytest.mark.mount_options('wait_timeout=30', 'lease_break_time=30')
@pytest.mark.parametrize('policy', ['fail', 'revoke', 'wait', 'break'])
def test_a_truncate_during_appends_never_shows_another_files_bytes(mnt, probe, policy, tmp_path):
    """A pinfs-dax appender whose file is cut (its preallocated blocks past
    EOF too) under each policy: the truncate does not wait, the freed blocks
    go to another file, and the appender's next appends land in its own
    file, never in the other's blocks; sizes and bytes exact."""
    tmp = str(tmp_path / 'chunk')
    path = mnt.path('f')
    write_file(path, b'')
    os.setxattr(path, 'user.pinfs.policy', policy.encode())
    p = probe()
    fd = p.open(path)
    chunk = [pattern(20 + i, 512 * KiB) for i in range(8)]
    for i in range(4):
        assert p.pwrite_big(fd, i * 512 * KiB, chunk[i], tmp) == 512 * KiB
    assert os.stat(path).st_size == 2 * MiB
    ls = layout_pins(mnt, p.proc.pid)
    assert len(ls) == 1 and ls[0]['state'] == 'active', pins(mnt)
    # the lease covers blocks past EOF: preallocated
    assert ls[0]['end'] > 2 * MiB, ls
    t0 = time.monotonic()
    os.truncate(path, 10000)
    assert time.monotonic() - t0 < 15
    assert p.alive()
    fill_until_enospc(mnt.path('other'), 0xEE)
    for i in range(4, 8):
        # past the (new) EOF: a hole, then the bytes
        assert p.pwrite_big(fd, i * 512 * KiB, chunk[i], tmp) == 512 * KiB
    os.unlink(mnt.path('other'))
    got = read_file(path)
    assert len(got) == 4 * MiB
    assert got[:10000] == chunk[0][:10000]
    assert got[10000:2 * MiB] == bytes(2 * MiB - 10000)
    assert got[2 * MiB:] == b''.join(chunk[4:])
    # and after that, appends from the pool again
    assert p.pwrite_big(fd, 4 * MiB, chunk[0], tmp) == 512 * KiB
    assert read_file(path)[4 * MiB:] == chunk[0]


@pytest.mark.pool_size('128M')
def test_appenders_in_two_processes_never_shrink_the_file(mnt, probe, tmp_path):
    """Two pinfs-dax processes extending one file: a grow to a size below
    the other's leaves the larger (a truncate would have cut the other's
    bytes off)."""
    tmp = str(tmp_path / 'chunk')
    path = mnt.path('f')
    write_file(path, b'')
    a, b = probe(), probe()
    fa, fb = a.open(path), b.open(path)
    c = [pattern(30 + i, 1 * MiB) for i in range(4)]
    assert a.pwrite_big(fa, 0, c[0], tmp) == MiB          # a knows the size as 1 MiB
    assert b.pwrite_big(fb, 1 * MiB, c[1] + c[2], tmp) == 2 * MiB
    assert os.stat(path).st_size == 3 * MiB
    assert a.pwrite_big(fa, 1 * MiB, c[3], tmp) == MiB    # ends at 2 MiB: no shrink
    assert os.stat(path).st_size == 3 * MiB
    assert read_file(path) == c[0] + c[3] + c[2]
    assert layout_pins(mnt, a.proc.pid) and layout_pins(mnt, b.proc.pid)

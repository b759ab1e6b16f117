"""Mutated pools through a real mount: refused with one clear line, or served
safely -- never a crash, a hang, a sanitizer report or a cross-link.

The images come from tests/unit/test_fuzz.c (FUZZ_WRITE): its tree, its
mutations, its seed; the unit program drives a few hundred of them through
the pmem API in-process, this test a sample of them through the kernel, the
FUSE operations and the daemon's mount checks. Each image is mounted as
users do, in the background (the test reaps the daemon for its exit status;
-o logfile holds its log and its stderr, where sanitizers report); a
refused one must say why in one line on the terminal, and one that the
mount check refused (the line names fsck.pinfs) is then mounted with
-o force. A mounted image must survive `ls -lR` (lstat), listing and
reading every xattr, reading every file, writing a new file, and `rm -rf`
of everything; the daemon must exit 0 at the unmount with no crash or
sanitizer report in its log. Every word read from a file
that looks like a file's tag (tests/unit/test_fuzz.c: 0xf1f1 << 48 | inode)
must be that file's own.

FUZZ_SEED and FUZZ_MOUNT_IMAGES (default 20) choose the sample.

Also: a pool marked corrupt (the superblock's errors flag) is refused with
one line naming fsck.pinfs --repair, and -o force serves it read-only.
"""

import errno
import os
import re
import shutil
import stat
import struct
import subprocess
import threading
import time

import pytest

from pinfs_mount import (BIN, BUILD, EXIT_TIMEOUT_S, MOUNT_TIMEOUT_S, WATCHDOG_S, BackgroundDaemon,
                         PinfsMount,
                         check_fsck, force_unmount, fsck, mounted, run, try_mount)
from test_bad_pool import SB_CSUM_OFFSET, _edit_super

pytestmark = pytest.mark.needs_daemon

TAG_BASE = 0xf1f1 << 48
TAG_MASK = 0xffff << 48
MAX_READ = 8 << 20
SEED = os.environ.get('FUZZ_SEED', '20261202')
IMAGES = int(os.environ.get('FUZZ_MOUNT_IMAGES', '20'))
# indices spread over the unit program's range (it runs 0..299 of this seed)
INDICES = [7 + 15 * k for k in range(IMAGES)]


def _fuzz_program():
    path = os.path.join(BUILD, 'tests', 'test_fuzz')
    if not os.access(path, os.X_OK):
        if os.environ.get('PINFS_TEST_REQUIRE') == '1':
            pytest.fail('%s not built' % path)
        pytest.skip('%s not built' % path)
    return path


def _write_image(index, path):
    env = dict(os.environ, FUZZ_SEED=SEED, FUZZ_ONLY=str(index), FUZZ_WRITE=path)
    res = subprocess.run([_fuzz_program()], env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, 'test_fuzz FUZZ_WRITE: %s' % res.stderr[-2000:]
    os.chmod(path, 0o600)
    return res.stdout.strip()


def _check_words(path, ino, data, offset):
    for i in range(0, len(data) - 7, 8):
        (w,) = struct.unpack_from('<Q', data, i)
        if (w & TAG_MASK) == TAG_BASE and w != TAG_BASE | ino:
            pytest.fail('%s (inode %d) returns inode %d\'s bytes at offset %d'
                        % (path, ino, w & 0xffffffffffff, offset + i))


def _read_file(path, st):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return
    try:
        off = done = 0
        while off < st.st_size and done < MAX_READ:
            try:
                off = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                break
            try:
                data = os.pread(fd, 256 << 10, off)
            except OSError:
                break
            if not data:
                break
            _check_words(path, st.st_ino, data, off)
            off += len(data)
            done += len(data)
    finally:
        os.close(fd)


def _walk(top):
    """ls -lR, getfattr -d and cat of everything under `top`; loops (a corrupt
    entry naming an ancestor) are cut by inode, as ls -R does."""
    seen = set()
    stack = [(top, 0)]
    while stack:
        d, depth = stack.pop()
        try:
            dst = os.lstat(d)
        except OSError:
            continue
        if dst.st_ino in seen or depth > 12:
            continue
        seen.add(dst.st_ino)
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for name in names:
            p = os.path.join(d, name)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            try:
                for x in os.listxattr(p, follow_symlinks=False):
                    try:
                        os.getxattr(p, x, follow_symlinks=False)
                    except OSError:
                        pass
            except OSError:
                pass
            if stat.S_ISDIR(st.st_mode):
                stack.append((p, depth + 1))
            elif stat.S_ISREG(st.st_mode):
                _read_file(p, st)
            elif stat.S_ISLNK(st.st_mode):
                try:
                    os.readlink(p)
                except OSError:
                    pass


def _write_new(top):
    """A new file, if the pool takes one, reads back as written."""
    p = os.path.join(top, 'fuzz-new')
    try:
        fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except OSError as e:
        assert e.errno in (errno.EROFS, errno.EUCLEAN, errno.ENOSPC, errno.EIO, errno.EEXIST,
                           errno.ENOTDIR, errno.ESTALE, errno.ENOENT), e
        return
    try:
        ino = os.fstat(fd).st_ino
        data = struct.pack('<Q', TAG_BASE | ino) * (64 * 512)
        try:
            os.write(fd, data)
        except OSError as e:
            assert e.errno in (errno.EROFS, errno.EUCLEAN, errno.ENOSPC, errno.EIO), e
            return
    finally:
        os.close(fd)
    with open(p, 'rb') as f:
        assert f.read() == data, 'a new file does not read back as written'


CRASH_RE = re.compile(r'Sanitizer|runtime error|Segmentation fault|Aborted|core dumped')


def _attempt(pool, mountpoint, scratch, options):
    """Starts `pinfs` as users do, in the background, its log (and so its
    stderr, where sanitizers report) in a file; returns (daemon, log path)
    once it mounted, or (launcher exit status, launcher stderr text) once
    it refused."""
    err = os.path.join(scratch, 'daemon.stderr')
    log = os.path.join(scratch, 'daemon.log')
    for p in (err, log):
        if os.path.exists(p):
            os.unlink(p)
    opts = options + ['logfile=' + log]
    cmd = [BIN['pinfs'], '-o', ','.join(opts), pool, mountpoint]
    with open(err, 'wb') as fe:
        proc = BackgroundDaemon(cmd, fe, fe)
    rc, msg = proc.launch(MOUNT_TIMEOUT_S)
    if rc is None or rc == -1:
        force_unmount(mountpoint)
        pytest.fail('pinfs %s: %s' % (' '.join(cmd), msg))
    with open(err, errors='replace') as f:
        text = f.read()
    if rc != 0:
        return rc, text
    deadline = time.monotonic() + MOUNT_TIMEOUT_S
    while time.monotonic() < deadline:
        if os.path.ismount(mountpoint):
            return proc, log
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait(EXIT_TIMEOUT_S)
    force_unmount(mountpoint)
    pytest.fail('pinfs (background) went away or did not mount within %s s:\n%s'
                % (MOUNT_TIMEOUT_S, text))


def _exercise(image, proc, err, mountpoint):
    """ls -lR, cat, a new file, rm -rf, unmount: the daemon must exit 0 with
    no crash in its log (its stderr). A hang past the watchdog kills the daemon (so
    the test's system calls fail) and fails the test."""
    hung = []

    def watchdog():
        if proc.poll() is None:
            hung.append(True)
            proc.kill()

    timer = threading.Timer(WATCHDOG_S, watchdog)
    timer.daemon = True
    timer.start()
    try:
        _walk(mountpoint)
        _write_new(mountpoint)
        _walk(mountpoint)
        for name in os.listdir(mountpoint):
            p = os.path.join(mountpoint, name)
            try:
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    os.unlink(p)
            except OSError:
                pass
    finally:
        timer.cancel()
        if mounted(mountpoint):
            run(['fusermount3', '-u', mountpoint], timeout=EXIT_TIMEOUT_S)
        try:
            rc = proc.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait(EXIT_TIMEOUT_S)
        if mounted(mountpoint):
            force_unmount(mountpoint)
    with open(err, errors='replace') as f:
        text = f.read()
    assert not hung, 'image %s: hung for %s s:\n%s' % (image, WATCHDOG_S, text)
    assert rc == 0, 'image %s: the daemon exited with %s:\n%s' % (image, rc, text)
    assert not CRASH_RE.search(text), 'image %s:\n%s' % (image, text)


def _one_line(image, text):
    lines = [l for l in text.splitlines() if l.strip()]
    assert not CRASH_RE.search(text), 'image %s:\n%s' % (image, text)
    assert len(lines) == 1 and lines[0].startswith('pinfs: '), \
        'image %s: the refusal is not one line:\n%s' % (image, text)
    return lines[0]


@pytest.mark.watchdog(1200)
def test_mutated_pools_are_refused_or_served_safely_by_the_daemon(scratch, mountpoint):
    counts = dict(images=0, refused=0, mounted=0, forced=0, forced_refused=0, survived=0)
    for index in INDICES:
        pool = os.path.join(scratch, 'fuzz-%d.pool' % index)
        tree = _write_image(index, pool)
        image = '%d (%s tree; FUZZ_SEED=%s FUZZ_ONLY=%d)' % (index, tree, SEED, index)
        counts['images'] += 1
        res = _attempt(pool, mountpoint, scratch, [])
        if isinstance(res[0], BackgroundDaemon):
            counts['mounted'] += 1
            _exercise(image, res[0], res[1], mountpoint)
            counts['survived'] += 1
        else:
            assert res[0] == 1, 'image %s: refused with exit %s' % (image, res[0])
            line = _one_line(image, res[1])
            counts['refused'] += 1
            if 'fsck.pinfs' in line:
                # the mount check refused it: the engine, forced, must cope
                res = _attempt(pool, mountpoint, scratch, ['force'])
                if isinstance(res[0], BackgroundDaemon):
                    counts['forced'] += 1
                    _exercise(image, res[0], res[1], mountpoint)
                    counts['survived'] += 1
                else:
                    _one_line(image, res[1])
                    counts['forced_refused'] += 1
            else:
                counts['forced_refused'] += 1 # a superblock or journal: nothing to force
        os.unlink(pool)
    print('fuzz (mount): %(images)d images: %(refused)d refused by the mount check, '
          '%(mounted)d mounted; of the refused, %(forced)d mounted forced, '
          '%(forced_refused)d not mountable even forced; %(survived)d mounts survived' % counts)
    assert counts['survived'] == counts['mounted'] + counts['forced']
    assert counts['forced'] > 0


SB_ERRORS_OFFSET = 188  # u32 pm_super.errors (pmem/layout.h), PM_SB_ERR_CORRUPT = 1


def test_pool_marked_corrupt_is_refused_and_served_read_only_with_force(pool, mountpoint,
                                                                        scratch):
    m = PinfsMount(pool, mountpoint, scratch)
    m.start()
    with open(m.path('f'), 'wb') as f:
        f.write(b'kept' * 1024)
    m.unmount()
    assert SB_ERRORS_OFFSET == SB_CSUM_OFFSET + 4
    _edit_super(pool, SB_ERRORS_OFFSET, '<I', 1, fix_csum=True)

    rc, err = try_mount(pool, mountpoint)
    lines = [l for l in err.splitlines() if l.strip()]
    assert rc == 1 and len(lines) == 1, err
    assert 'marked corrupt' in lines[0] and "fsck.pinfs --repair %s" % pool in lines[0], err

    m = PinfsMount(pool, mountpoint, scratch, ['force'])
    m.start()
    try:
        with open(m.path('f'), 'rb') as f:
            assert f.read() == b'kept' * 1024
        fd = os.open(m.path('f'), os.O_WRONLY)
        try:
            changes = (('create', lambda: os.open(m.path('g'), os.O_CREAT | os.O_WRONLY, 0o644)),
                       ('write', lambda: os.pwrite(fd, b'x', 0)),
                       ('truncate', lambda: os.truncate(m.path('f'), 0)),
                       ('unlink', lambda: os.unlink(m.path('f'))),
                       ('mkdir', lambda: os.mkdir(m.path('d'))),
                       ('rename', lambda: os.rename(m.path('f'), m.path('h'))),
                       ('setxattr', lambda: os.setxattr(m.path('f'), 'user.x', b'1')))
            for what, change in changes:
                with pytest.raises(OSError, match='') as e:
                    change()
                assert e.value.errno == errno.EROFS, (what, e.value)
        finally:
            os.close(fd)
    finally:
        m.unmount()

    # fsck -n reports the flag and leaves it; --repair clears it (nothing
    # else is wrong) and the pool mounts again, writable, with its bytes
    r = fsck(pool, '-n')
    assert r.returncode == 4 and 'errors flag 0x1 is set' in r.stdout + r.stderr, r
    r = fsck(pool, '--repair')
    assert r.returncode == 1 and 'cleared' in r.stdout + r.stderr, r
    check_fsck(pool)
    m = PinfsMount(pool, mountpoint, scratch)
    m.start()
    try:
        with open(m.path('f'), 'rb') as f:
            assert f.read() == b'kept' * 1024
        with open(m.path('g'), 'wb') as f:
            f.write(b'new')
    finally:
        m.unmount()

"""setattr through a pinfs mount: chmod, chown, truncate, utimens, and the
timestamps that other operations must update."""

import os
import stat
import time

from pinfs_util import (UTIME_NOW, UTIME_OMIT, pread_all, read_file, utimensat,
                        write_file)

# Long enough for any clock the daemon may use (coarse clocks tick every few ms).
TICK = 0.05


def test_chmod_sets_mode_bits_and_bumps_ctime(mnt):
    path = mnt.path('f')
    write_file(path, b'data')
    before = os.stat(path)
    time.sleep(TICK)
    os.chmod(path, 0o4751)
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o4751
    assert stat.S_ISREG(st.st_mode)
    assert st.st_ctime_ns > before.st_ctime_ns
    assert st.st_mtime_ns == before.st_mtime_ns
    os.chmod(path, 0o600)
    mnt.remount()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_chmod_directory_keeps_type(mnt):
    d = mnt.path('d')
    os.mkdir(d, 0o755)
    os.chmod(d, 0o1707)
    st = os.stat(d)
    assert stat.S_ISDIR(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o1707


def test_chown_by_root_sets_uid_and_gid(mnt):
    path = mnt.path('f')
    write_file(path, b'data')
    before = os.stat(path)
    time.sleep(TICK)
    os.chown(path, 1234, 5678)
    st = os.stat(path)
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    assert st.st_ctime_ns > before.st_ctime_ns
    os.chown(path, -1, 42)
    assert (os.stat(path).st_uid, os.stat(path).st_gid) == (1234, 42)
    os.chown(path, 77, -1)
    assert (os.stat(path).st_uid, os.stat(path).st_gid) == (77, 42)
    mnt.remount()
    assert (os.stat(path).st_uid, os.stat(path).st_gid) == (77, 42)


def test_lchown_changes_symlink_not_target(mnt):
    write_file(mnt.path('target'), b'x')
    os.symlink('target', mnt.path('link'))
    os.lchown(mnt.path('link'), 321, 654)
    assert (os.lstat(mnt.path('link')).st_uid, os.lstat(mnt.path('link')).st_gid) == (321, 654)
    assert os.stat(mnt.path('target')).st_uid == 0


def test_truncate_up_reads_zeros_and_down_drops_tail(mnt):
    path = mnt.path('f')
    write_file(path, b'a' * 10000)
    os.truncate(path, 5000)
    assert os.stat(path).st_size == 5000
    assert read_file(path) == b'a' * 5000
    # growing again must not resurrect the bytes cut off above
    os.truncate(path, 20000)
    assert os.stat(path).st_size == 20000
    assert read_file(path) == b'a' * 5000 + bytes(15000)
    os.truncate(path, 0)
    assert read_file(path) == b''
    os.truncate(path, 3 * 1024 * 1024 + 17)
    assert read_file(path) == bytes(3 * 1024 * 1024 + 17)
    mnt.remount()
    assert os.stat(path).st_size == 3 * 1024 * 1024 + 17


def test_ftruncate_on_open_fd_changes_size_and_mtime(mnt):
    path = mnt.path('f')
    write_file(path, b'b' * 8192)
    before = os.stat(path)
    time.sleep(TICK)
    fd = os.open(path, os.O_RDWR)
    try:
        os.ftruncate(fd, 4097)
        st = os.fstat(fd)
        assert st.st_size == 4097
        assert pread_all(fd, 10000, 0) == b'b' * 4097
    finally:
        os.close(fd)
    st = os.stat(path)
    assert st.st_mtime_ns > before.st_mtime_ns
    assert st.st_ctime_ns > before.st_ctime_ns


def test_utimensat_sets_exact_nanosecond_times(mnt):
    path = mnt.path('f')
    write_file(path, b'data')
    atime = 1_000_000_000 * 10**9 + 123_456_789
    mtime = 1_234_567_890 * 10**9 + 987_654_321
    os.utime(path, ns=(atime, mtime))
    st = os.stat(path)
    assert (st.st_atime_ns, st.st_mtime_ns) == (atime, mtime)
    # on a directory, and times before 1970
    os.mkdir(mnt.path('d'))
    os.utime(mnt.path('d'), ns=(-10**9 + 5, 7))
    st = os.stat(mnt.path('d'))
    assert (st.st_atime_ns, st.st_mtime_ns) == (-10**9 + 5, 7)
    mnt.remount()
    st = os.stat(path)
    assert (st.st_atime_ns, st.st_mtime_ns) == (atime, mtime)
    st = os.stat(mnt.path('d'))
    assert (st.st_atime_ns, st.st_mtime_ns) == (-10**9 + 5, 7)


def test_utime_now_and_omit_touch_only_the_requested_time(mnt):
    path = mnt.path('f')
    write_file(path, b'data')
    old = 1_500_000_000 * 10**9 + 1
    os.utime(path, ns=(old, old))

    t0 = time.time_ns()
    utimensat(path, UTIME_OMIT, UTIME_NOW)
    t1 = time.time_ns()
    st = os.stat(path)
    assert st.st_atime_ns == old
    assert t0 - 10**9 <= st.st_mtime_ns <= t1 + 10**9

    os.utime(path, ns=(old, old))
    t0 = time.time_ns()
    utimensat(path, UTIME_NOW, UTIME_OMIT)
    t1 = time.time_ns()
    st = os.stat(path)
    assert st.st_mtime_ns == old
    assert t0 - 10**9 <= st.st_atime_ns <= t1 + 10**9

    os.utime(path, ns=(old, old))
    before_ctime = os.stat(path).st_ctime_ns
    time.sleep(TICK)
    utimensat(path, UTIME_OMIT, UTIME_OMIT)
    st = os.stat(path)
    assert (st.st_atime_ns, st.st_mtime_ns) == (old, old)

    os.utime(path)          # both now
    st = os.stat(path)
    assert st.st_atime_ns > old and st.st_mtime_ns > old
    assert st.st_ctime_ns > before_ctime


def test_write_updates_mtime_and_ctime(mnt):
    path = mnt.path('f')
    write_file(path, b'data')
    before = os.stat(path)
    time.sleep(TICK)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, b'more', 4)
    finally:
        os.close(fd)
    st = os.stat(path)
    assert st.st_mtime_ns > before.st_mtime_ns
    assert st.st_ctime_ns > before.st_ctime_ns
    assert st.st_size == 8


def test_create_and_unlink_update_parent_mtime_and_ctime(mnt):
    d = mnt.path('d')
    os.mkdir(d)
    old = 1_000_000_000 * 10**9
    for op in (lambda: write_file(os.path.join(d, 'f'), b'x', fsync=False),
               lambda: os.mkdir(os.path.join(d, 'sub')),
               lambda: os.symlink('f', os.path.join(d, 'link')),
               lambda: os.rename(os.path.join(d, 'link'), os.path.join(d, 'link2')),
               lambda: os.unlink(os.path.join(d, 'f')),
               lambda: os.rmdir(os.path.join(d, 'sub'))):
        os.utime(d, ns=(old, old))
        before = os.stat(d)
        time.sleep(TICK)
        op()
        st = os.stat(d)
        assert st.st_mtime_ns > old, 'parent mtime not updated'
        assert st.st_ctime_ns > before.st_ctime_ns, 'parent ctime not updated'


def test_link_updates_ctime_of_the_inode(mnt):
    path = mnt.path('f')
    write_file(path, b'x')
    before = os.stat(path)
    time.sleep(TICK)
    os.link(path, mnt.path('g'))
    st = os.stat(path)
    assert st.st_ctime_ns > before.st_ctime_ns
    assert st.st_mtime_ns == before.st_mtime_ns

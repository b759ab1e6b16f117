"""Names through a pinfs mount: special files, directories, rename (with
RENAME_NOREPLACE / RENAME_EXCHANGE), hard and symbolic links, name limits."""

import errno
import os
import socket
import stat

import pytest

from pinfs_util import (RENAME_EXCHANGE, RENAME_NOREPLACE, expect_errno, read_file,
                        renameat2, write_file)

PATH_MAX = os.pathconf('/', 'PC_PATH_MAX')   # 4096, counting the terminating NUL
NAME_MAX = 255


# --------------------------------------------------------------------------
# special files

def test_mknod_fifo_socket_and_devices_report_type_and_rdev(mnt):
    os.mkfifo(mnt.path('fifo'), 0o640)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(mnt.path('sock'))
    finally:
        sock.close()
    os.mknod(mnt.path('null'), stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(mnt.path('loop'), stat.S_IFBLK | 0o600, os.makedev(7, 200))
    os.mknod(mnt.path('plain'), stat.S_IFREG | 0o600)

    def check():
        st = os.lstat(mnt.path('fifo'))
        assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640
        assert stat.S_ISSOCK(os.lstat(mnt.path('sock')).st_mode)
        st = os.lstat(mnt.path('null'))
        assert stat.S_ISCHR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644 & 0o666
        assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)
        st = os.lstat(mnt.path('loop'))
        assert stat.S_ISBLK(st.st_mode)
        assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (7, 200)
        st = os.lstat(mnt.path('plain'))
        assert stat.S_ISREG(st.st_mode) and st.st_size == 0
        with os.scandir(mnt.dir) as it:
            types = {e.name: stat.S_IFMT(e.stat(follow_symlinks=False).st_mode) for e in it}
        assert types == {'fifo': stat.S_IFIFO, 'sock': stat.S_IFSOCK, 'null': stat.S_IFCHR,
                         'loop': stat.S_IFBLK, 'plain': stat.S_IFREG}

    check()
    mnt.remount()
    check()


def test_fifo_passes_data_between_reader_and_writer(mnt):
    path = mnt.path('fifo')
    os.mkfifo(path)
    rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    wfd = os.open(path, os.O_WRONLY)
    try:
        os.write(wfd, b'through the pipe')
        assert os.read(rfd, 100) == b'through the pipe'
    finally:
        os.close(wfd)
        os.close(rfd)


# --------------------------------------------------------------------------
# directories

def test_mkdir_and_rmdir_round_trip(mnt):
    d = mnt.path('d')
    os.mkdir(d, 0o750)
    st = os.stat(d)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o750
    assert os.listdir(d) == []
    expect_errno(errno.EEXIST, os.mkdir, d)
    os.rmdir(d)
    expect_errno(errno.ENOENT, os.stat, d)
    expect_errno(errno.ENOENT, os.rmdir, d)
    assert os.listdir(mnt.dir) == []


def test_rmdir_nonempty_fails_with_enotempty(mnt):
    os.mkdir(mnt.path('d'))
    write_file(mnt.path('d', 'f'), b'x')
    expect_errno(errno.ENOTEMPTY, os.rmdir, mnt.path('d'))
    os.unlink(mnt.path('d', 'f'))
    os.mkdir(mnt.path('d', 'sub'))
    expect_errno(errno.ENOTEMPTY, os.rmdir, mnt.path('d'))
    assert os.listdir(mnt.path('d')) == ['sub']


def test_unlink_of_directory_fails_with_eisdir(mnt):
    os.mkdir(mnt.path('d'))
    expect_errno(errno.EISDIR, os.unlink, mnt.path('d'))
    assert os.path.isdir(mnt.path('d'))


def test_rmdir_of_file_fails_with_enotdir(mnt):
    write_file(mnt.path('f'), b'x')
    expect_errno(errno.ENOTDIR, os.rmdir, mnt.path('f'))
    expect_errno(errno.ENOTDIR, os.mkdir, mnt.path('f', 'sub'))
    expect_errno(errno.ENOTDIR, os.stat, mnt.path('f', 'x'))
    assert read_file(mnt.path('f')) == b'x'


def test_directory_nlink_is_two_plus_subdirectories(mnt):
    root_links = os.stat(mnt.dir).st_nlink
    a, b = mnt.path('a'), mnt.path('b')
    os.mkdir(a)
    os.mkdir(b)
    assert os.stat(mnt.dir).st_nlink == root_links + 2
    assert os.stat(a).st_nlink == 2
    for n in ('x', 'y', 'z'):
        os.mkdir(os.path.join(a, n))
    write_file(os.path.join(a, 'file'), b'files do not count')
    assert os.stat(a).st_nlink == 5
    os.rmdir(os.path.join(a, 'x'))
    assert os.stat(a).st_nlink == 4
    os.rename(os.path.join(a, 'y'), os.path.join(b, 'y'))   # moving a dir moves its '..'
    assert os.stat(a).st_nlink == 3
    assert os.stat(b).st_nlink == 3
    mnt.remount()
    assert os.stat(a).st_nlink == 3
    assert os.stat(b).st_nlink == 3
    assert os.stat(os.path.join(b, 'y')).st_nlink == 2
    assert os.stat(mnt.dir).st_nlink == root_links + 2


def test_dotdot_of_moved_directory_points_at_new_parent(mnt):
    os.makedirs(mnt.path('a', 'sub'))
    os.mkdir(mnt.path('b'))
    os.rename(mnt.path('a', 'sub'), mnt.path('b', 'sub'))
    assert os.stat(mnt.path('b', 'sub', '..')).st_ino == os.stat(mnt.path('b')).st_ino
    mnt.remount()
    assert os.stat(mnt.path('b', 'sub', '..')).st_ino == os.stat(mnt.path('b')).st_ino


# --------------------------------------------------------------------------
# rename

def test_rename_moves_entry_and_keeps_inode(mnt):
    os.mkdir(mnt.path('d'))
    write_file(mnt.path('a'), b'content')
    ino = os.stat(mnt.path('a')).st_ino
    os.rename(mnt.path('a'), mnt.path('d', 'b'))
    expect_errno(errno.ENOENT, os.stat, mnt.path('a'))
    assert os.stat(mnt.path('d', 'b')).st_ino == ino
    assert read_file(mnt.path('d', 'b')) == b'content'
    mnt.remount()
    assert sorted(os.listdir(mnt.dir)) == ['d']
    assert os.listdir(mnt.path('d')) == ['b']
    assert read_file(mnt.path('d', 'b')) == b'content'


def test_rename_over_existing_file_replaces_it_and_drops_old_inode(mnt):
    write_file(mnt.path('a'), b'new')
    write_file(mnt.path('b'), b'old')
    ino_a = os.stat(mnt.path('a')).st_ino
    fd = os.open(mnt.path('b'), os.O_RDONLY)
    try:
        os.rename(mnt.path('a'), mnt.path('b'))
        assert os.fstat(fd).st_nlink == 0, 'replaced inode must have no links left'
        assert os.pread(fd, 10, 0) == b'old'      # still readable while open
    finally:
        os.close(fd)
    assert os.listdir(mnt.dir) == ['b']
    assert os.stat(mnt.path('b')).st_ino == ino_a
    assert read_file(mnt.path('b')) == b'new'
    mnt.remount()
    assert os.listdir(mnt.dir) == ['b']
    assert read_file(mnt.path('b')) == b'new'


def test_rename_noreplace_onto_existing_fails_with_eexist(mnt):
    write_file(mnt.path('a'), b'A')
    write_file(mnt.path('b'), b'B')
    expect_errno(errno.EEXIST, renameat2, mnt.path('a'), mnt.path('b'), RENAME_NOREPLACE)
    assert read_file(mnt.path('a')) == b'A'
    assert read_file(mnt.path('b')) == b'B'
    renameat2(mnt.path('a'), mnt.path('c'), RENAME_NOREPLACE)
    assert sorted(os.listdir(mnt.dir)) == ['b', 'c']
    assert read_file(mnt.path('c')) == b'A'


def test_rename_exchange_swaps_two_entries(mnt):
    os.mkdir(mnt.path('d'))
    write_file(mnt.path('a'), b'A')
    write_file(mnt.path('d', 'b'), b'B')
    ino_a, ino_b = os.stat(mnt.path('a')).st_ino, os.stat(mnt.path('d', 'b')).st_ino
    renameat2(mnt.path('a'), mnt.path('d', 'b'), RENAME_EXCHANGE)
    assert os.stat(mnt.path('a')).st_ino == ino_b
    assert os.stat(mnt.path('d', 'b')).st_ino == ino_a
    assert read_file(mnt.path('a')) == b'B'
    assert read_file(mnt.path('d', 'b')) == b'A'
    # a file with a directory, across parents: nlink of the parents follows the dir
    os.mkdir(mnt.path('e'))
    os.mkdir(mnt.path('e', 'sub'))
    renameat2(mnt.path('a'), mnt.path('e', 'sub'), RENAME_EXCHANGE)
    assert stat.S_ISDIR(os.stat(mnt.path('a')).st_mode)
    assert read_file(mnt.path('e', 'sub')) == b'B'
    assert os.stat(mnt.path('e')).st_nlink == 2
    assert os.stat(mnt.path('a', '..')).st_ino == os.stat(mnt.dir).st_ino
    mnt.remount()
    assert read_file(mnt.path('d', 'b')) == b'A'
    assert read_file(mnt.path('e', 'sub')) == b'B'
    assert os.stat(mnt.path('e')).st_nlink == 2
    assert stat.S_ISDIR(os.stat(mnt.path('a')).st_mode)


def test_rename_exchange_with_missing_target_fails_with_enoent(mnt):
    write_file(mnt.path('a'), b'A')
    expect_errno(errno.ENOENT, renameat2, mnt.path('a'), mnt.path('nope'), RENAME_EXCHANGE)
    assert read_file(mnt.path('a')) == b'A'


def test_rename_directory_over_empty_directory_replaces_it(mnt):
    os.makedirs(mnt.path('src', 'inner'))
    os.mkdir(mnt.path('dst'))
    ino = os.stat(mnt.path('src')).st_ino
    links = os.stat(mnt.dir).st_nlink
    os.rename(mnt.path('src'), mnt.path('dst'))
    assert os.stat(mnt.path('dst')).st_ino == ino
    assert os.listdir(mnt.path('dst')) == ['inner']
    assert os.stat(mnt.dir).st_nlink == links - 1
    assert sorted(os.listdir(mnt.dir)) == ['dst']


def test_rename_directory_over_nonempty_directory_fails_with_enotempty(mnt):
    os.mkdir(mnt.path('src'))
    os.makedirs(mnt.path('dst', 'keep'))
    expect_errno(errno.ENOTEMPTY, os.rename, mnt.path('src'), mnt.path('dst'))
    assert os.listdir(mnt.path('dst')) == ['keep']
    assert os.path.isdir(mnt.path('src'))


def test_rename_directory_into_its_own_subdirectory_fails_with_einval(mnt):
    os.makedirs(mnt.path('a', 'b', 'c'))
    expect_errno(errno.EINVAL, os.rename, mnt.path('a'), mnt.path('a', 'b', 'c', 'a'))
    expect_errno(errno.EINVAL, os.rename, mnt.path('a'), mnt.path('a', 'x'))
    assert os.path.isdir(mnt.path('a', 'b', 'c'))


def test_rename_file_over_directory_fails_with_eisdir_and_back_with_enotdir(mnt):
    write_file(mnt.path('f'), b'x')
    os.mkdir(mnt.path('d'))
    expect_errno(errno.EISDIR, os.rename, mnt.path('f'), mnt.path('d'))
    expect_errno(errno.ENOTDIR, os.rename, mnt.path('d'), mnt.path('f'))
    assert sorted(os.listdir(mnt.dir)) == ['d', 'f']


def test_rename_onto_itself_or_its_hard_link_changes_nothing(mnt):
    write_file(mnt.path('a'), b'A')
    os.link(mnt.path('a'), mnt.path('b'))
    os.rename(mnt.path('a'), mnt.path('a'))
    os.rename(mnt.path('a'), mnt.path('b'))     # POSIX: same inode, nothing happens
    assert sorted(os.listdir(mnt.dir)) == ['a', 'b']
    assert os.stat(mnt.path('a')).st_nlink == 2


# --------------------------------------------------------------------------
# links

def test_hard_link_shares_inode_and_counts_nlink(mnt):
    write_file(mnt.path('a'), b'shared')
    os.mkdir(mnt.path('d'))
    os.link(mnt.path('a'), mnt.path('d', 'b'))
    sa, sb = os.stat(mnt.path('a')), os.stat(mnt.path('d', 'b'))
    assert sa.st_ino == sb.st_ino
    assert sa.st_nlink == sb.st_nlink == 2
    fd = os.open(mnt.path('d', 'b'), os.O_WRONLY)
    try:
        os.pwrite(fd, b'SH', 0)
    finally:
        os.close(fd)
    assert read_file(mnt.path('a')) == b'SHared'
    mnt.remount()
    assert os.stat(mnt.path('a')).st_nlink == 2
    os.unlink(mnt.path('a'))
    assert os.stat(mnt.path('d', 'b')).st_nlink == 1
    assert read_file(mnt.path('d', 'b')) == b'SHared'
    mnt.remount()
    assert os.stat(mnt.path('d', 'b')).st_nlink == 1
    assert read_file(mnt.path('d', 'b')) == b'SHared'


def test_hard_link_errors(mnt):
    os.mkdir(mnt.path('d'))
    write_file(mnt.path('f'), b'x')
    expect_errno(errno.EPERM, os.link, mnt.path('d'), mnt.path('dlink'))
    expect_errno(errno.EEXIST, os.link, mnt.path('f'), mnt.path('d'))
    expect_errno(errno.ENOENT, os.link, mnt.path('missing'), mnt.path('g'))


def test_symlink_readlink_round_trip(mnt):
    short = 'some/relative/../target'
    long_target = '/'.join(['x' * 99] * 40)          # 3999 bytes
    os.symlink(short, mnt.path('s'))
    os.symlink(long_target, mnt.path('l'))
    write_file(mnt.path('real'), b'followed')
    os.symlink('real', mnt.path('r'))

    def check():
        assert os.readlink(mnt.path('s')) == short
        assert os.readlink(mnt.path('l')) == long_target
        st = os.lstat(mnt.path('s'))
        assert stat.S_ISLNK(st.st_mode)
        assert st.st_size == len(short)
        assert os.lstat(mnt.path('l')).st_size == len(long_target)
        assert read_file(mnt.path('r')) == b'followed'
        assert os.stat(mnt.path('r')).st_ino == os.stat(mnt.path('real')).st_ino
        expect_errno(errno.ENOENT, os.stat, mnt.path('s'))   # dangling
        expect_errno(errno.EINVAL, os.readlink, mnt.path('real'))

    check()
    mnt.remount()
    check()


LINK_MAX = 65000   # PM_LINK_MAX


@pytest.mark.pool_size('1G')
@pytest.mark.watchdog(300)
def test_link_and_subdirectory_limits_are_emlink(mnt):
    """65 000 links at most: link() and mkdir() past it, and a rename or an
    exchange that would move a directory into a full parent, get EMLINK and
    change nothing."""
    f = mnt.path('f')
    write_file(f, b'linked')
    os.mkdir(mnt.path('L'))
    for i in range(LINK_MAX - 1):
        os.link(f, mnt.path('L', str(i)))
    assert os.stat(f).st_nlink == LINK_MAX
    expect_errno(errno.EMLINK, os.link, f, mnt.path('L', 'one-more'))
    full = mnt.path('D')
    os.mkdir(full)
    for i in range(LINK_MAX - 2):           # "." and the entry in its parent
        os.mkdir(os.path.join(full, str(i)))
    assert os.stat(full).st_nlink == LINK_MAX
    expect_errno(errno.EMLINK, os.mkdir, os.path.join(full, 'one-more'))
    os.mkdir(mnt.path('lone'))
    expect_errno(errno.EMLINK, os.rename, mnt.path('lone'), os.path.join(full, 'lone'))
    write_file(os.path.join(full, 'file'), b'x')
    expect_errno(errno.EMLINK, renameat2, mnt.path('lone'), os.path.join(full, 'file'),
                 RENAME_EXCHANGE)
    assert os.path.isdir(mnt.path('lone')) and os.path.isfile(os.path.join(full, 'file'))
    assert os.stat(full).st_nlink == LINK_MAX
    # a rename inside the full parent moves no link: fine
    os.rename(os.path.join(full, '0'), os.path.join(full, 'zero'))
    # below the limit again, both work
    os.unlink(mnt.path('L', '0'))
    os.link(f, mnt.path('L', 'one-more'))
    os.rmdir(os.path.join(full, 'zero'))
    renameat2(mnt.path('lone'), os.path.join(full, 'file'), RENAME_EXCHANGE)
    assert os.path.isfile(mnt.path('lone')) and os.path.isdir(os.path.join(full, 'file'))
    assert os.stat(full).st_nlink == LINK_MAX


def test_symlink_loop_fails_with_eloop(mnt):
    os.symlink('b', mnt.path('a'))
    os.symlink('a', mnt.path('b'))
    os.symlink('self', mnt.path('self'))
    expect_errno(errno.ELOOP, os.open, mnt.path('a'), os.O_RDONLY)
    expect_errno(errno.ELOOP, os.stat, mnt.path('self'))
    expect_errno(errno.ELOOP, os.open, mnt.path('self'), os.O_RDONLY | os.O_NOFOLLOW)


def test_name_of_256_bytes_fails_with_enametoolong(mnt):
    expect_errno(errno.ENAMETOOLONG, os.open, mnt.path('n' * (NAME_MAX + 1)),
                 os.O_WRONLY | os.O_CREAT, 0o644)
    expect_errno(errno.ENAMETOOLONG, os.mkdir, mnt.path('d' * (NAME_MAX + 1)))
    expect_errno(errno.ENAMETOOLONG, os.symlink, 'x', mnt.path('s' * (NAME_MAX + 1)))
    expect_errno(errno.ENAMETOOLONG, os.stat, mnt.path('q' * (NAME_MAX + 1)))
    assert os.listdir(mnt.dir) == []
    # 255 bytes is fine, also in UTF-8 multibyte form
    longest = 'n' * NAME_MAX
    utf8 = '\u00e9' * (NAME_MAX // 2)             # 254 bytes
    write_file(mnt.path(longest), b'255')
    write_file(mnt.path(utf8), b'utf8')
    mnt.remount()
    assert sorted(os.listdir(mnt.dir)) == sorted([longest, utf8])
    assert read_file(mnt.path(longest)) == b'255'
    assert read_file(mnt.path(utf8)) == b'utf8'


def test_path_near_path_max_works_through_nested_directories(mnt):
    # Build mnt/DDD.../DDD.../file with the whole string at PATH_MAX - 6 bytes:
    # every syscall below gets one absolute path just under the limit.
    target_len = PATH_MAX - 6
    path = mnt.dir
    while target_len - len(path) - 1 > NAME_MAX:
        rest = target_len - len(path) - 1          # room left for the final name
        path = os.path.join(path, 'd' * min(250, rest - 1 - 100))
        os.mkdir(path)
    name = 'f' * (target_len - len(path) - 1)
    assert 100 <= len(name) <= NAME_MAX
    full = os.path.join(path, name)
    assert len(full) == target_len < PATH_MAX
    write_file(full, b'deep')
    assert read_file(full) == b'deep'
    assert os.stat(full).st_size == 4
    assert os.listdir(path) == [name]
    # one more component pushes the path over PATH_MAX: refused by the kernel
    expect_errno(errno.ENAMETOOLONG, os.stat, os.path.join(full, 'x' * 10))
    mnt.remount()
    assert read_file(full) == b'deep'

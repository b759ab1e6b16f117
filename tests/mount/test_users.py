"""Several users on one pinfs mount (-o allow_other): ownership of new files,
setgid directories, chown rules, setuid clearing, sticky directories and
permission checks (default_permissions is always on).

Each "other user" action runs in a forked child that drops to that uid/gid
(pinfs_util.as_user) and reports back through a pipe.
"""

import errno
import os
import stat

import pytest

from pinfs_util import as_user, expect_errno, read_file, write_file

ALICE = dict(uid=1000, gid=1000, groups=[1000, 2000])   # also in group 2000
BOB = dict(uid=1001, gid=1001, groups=[1001])

pytestmark = [pytest.mark.mount_options('allow_other'),
              pytest.mark.skipif(os.getuid() != 0, reason='needs root to switch users')]


def _shared_dir(mnt, name='shared', mode=0o777):
    d = mnt.path(name)
    os.mkdir(d)
    os.chmod(d, mode)
    return d


def test_new_files_are_owned_by_caller_uid_and_gid(mnt):
    d = _shared_dir(mnt)

    def create():
        write_file(os.path.join(d, 'file'), b'mine')
        os.mkdir(os.path.join(d, 'dir'))
        os.symlink('file', os.path.join(d, 'link'))
        os.mkfifo(os.path.join(d, 'fifo'))
        return True

    assert as_user(create, **ALICE)
    for name in ('file', 'dir', 'link', 'fifo'):
        st = os.lstat(os.path.join(d, name))
        assert (st.st_uid, st.st_gid) == (1000, 1000), name
    mnt.remount()
    st = os.stat(os.path.join(d, 'file'))
    assert (st.st_uid, st.st_gid) == (1000, 1000)


def test_setgid_directory_gives_new_files_its_gid_and_subdirs_its_setgid_bit(mnt):
    d = _shared_dir(mnt, mode=0o777)
    os.chown(d, 0, 3000)
    os.chmod(d, 0o2777)

    def create():
        write_file(os.path.join(d, 'file'), b'x')
        os.mkdir(os.path.join(d, 'sub'))
        write_file(os.path.join(d, 'sub', 'deeper'), b'y')
        return True

    assert as_user(create, **ALICE)
    f = os.stat(os.path.join(d, 'file'))
    sub = os.stat(os.path.join(d, 'sub'))
    deeper = os.stat(os.path.join(d, 'sub', 'deeper'))
    assert (f.st_uid, f.st_gid) == (1000, 3000)
    assert (sub.st_uid, sub.st_gid) == (1000, 3000)
    assert sub.st_mode & stat.S_ISGID, 'new subdirectory must inherit the setgid bit'
    assert not f.st_mode & stat.S_ISGID
    assert deeper.st_gid == 3000


def test_chown_own_file_to_supplementary_group_allowed_other_group_eperm(mnt):
    d = _shared_dir(mnt)
    path = os.path.join(d, 'f')

    def chown_around():
        write_file(path, b'x')
        os.chown(path, -1, 2000)         # a group alice is in
        res = [os.stat(path).st_gid]
        for uid, gid in ((-1, 3000), (0, -1), (1001, -1)):
            try:
                os.chown(path, uid, gid)
                res.append('allowed %d:%d' % (uid, gid))
            except OSError as e:
                res.append(e.errno)
        return res

    assert as_user(chown_around, **ALICE) == [2000, errno.EPERM, errno.EPERM, errno.EPERM]
    st = os.stat(path)
    assert (st.st_uid, st.st_gid) == (1000, 2000)


def test_chmod_by_non_owner_fails_with_eperm(mnt):
    d = _shared_dir(mnt)
    path = os.path.join(d, 'f')
    write_file(path, b'x', mode=0o666)
    os.chmod(path, 0o666)
    expect_errno(errno.EPERM, as_user, lambda: os.chmod(path, 0o777), **BOB)
    expect_errno(errno.EPERM, as_user, lambda: os.utime(path, ns=(1, 1)), **BOB)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666


def test_write_by_owner_who_is_not_root_clears_setuid_bit(mnt):
    d = _shared_dir(mnt)
    path = os.path.join(d, 'f')

    def own_suid_write():
        write_file(path, b'original')
        os.chmod(path, 0o4755)
        before = os.stat(path).st_mode
        fd = os.open(path, os.O_WRONLY)
        try:
            os.pwrite(fd, b'O', 0)
        finally:
            os.close(fd)
        return before, os.stat(path).st_mode

    before, after = as_user(own_suid_write, **ALICE)
    assert before & stat.S_ISUID
    assert not after & stat.S_ISUID, 'write by a non-root owner must clear S_ISUID'
    assert stat.S_IMODE(after) == 0o755
    assert read_file(path) == b'Original'


def test_write_by_non_owner_clears_setuid_and_setgid_bits(mnt):
    d = _shared_dir(mnt)
    path = os.path.join(d, 'f')
    write_file(path, b'root file')
    os.chmod(path, 0o6777)               # setuid, setgid with group exec

    def write_it():
        fd = os.open(path, os.O_WRONLY)
        try:
            os.pwrite(fd, b'R', 0)
        finally:
            os.close(fd)
        return os.stat(path).st_mode

    mode = as_user(write_it, **BOB)
    assert not mode & (stat.S_ISUID | stat.S_ISGID), oct(mode)
    assert stat.S_IMODE(mode) == 0o777
    assert read_file(path) == b'Root file'


def test_write_by_root_keeps_setuid_bit(mnt):
    path = mnt.path('f')
    write_file(path, b'x')
    os.chmod(path, 0o4755)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, b'y', 0)
    finally:
        os.close(fd)
    assert os.stat(path).st_mode & stat.S_ISUID


def test_sticky_directory_stops_other_users_removing_your_file(mnt):
    d = _shared_dir(mnt, mode=0o1777)
    path = os.path.join(d, 'alices')
    assert as_user(lambda: write_file(path, b'a') or True, **ALICE)
    expect_errno((errno.EPERM, errno.EACCES), as_user, lambda: os.unlink(path), **BOB)
    expect_errno((errno.EPERM, errno.EACCES), as_user,
                 lambda: os.rename(path, os.path.join(d, 'stolen')), **BOB)
    assert read_file(path) == b'a'
    # the owner may
    as_user(lambda: os.unlink(path), **ALICE)
    assert os.listdir(d) == []


def test_open_of_other_users_0600_file_fails_with_eacces(mnt):
    path = mnt.path('secret')
    write_file(path, b'root only', mode=0o600)
    os.chmod(path, 0o600)
    expect_errno(errno.EACCES, as_user, lambda: os.open(path, os.O_RDONLY), **ALICE)
    expect_errno(errno.EACCES, as_user, lambda: os.open(path, os.O_WRONLY), **ALICE)
    expect_errno(errno.EACCES, as_user, lambda: os.truncate(path, 0), **ALICE)
    assert read_file(path) == b'root only'
    # and a 0700 directory can be neither listed nor traversed
    os.mkdir(mnt.path('private'), 0o700)
    write_file(mnt.path('private', 'x'), b'x')
    expect_errno(errno.EACCES, as_user, lambda: os.listdir(mnt.path('private')), **ALICE)
    expect_errno(errno.EACCES, as_user, lambda: os.stat(mnt.path('private', 'x')), **ALICE)
    expect_errno(errno.EACCES, as_user,
                 lambda: write_file(mnt.path('new-in-root'), b'x'), **ALICE)


def test_group_permission_bits_apply_to_group_members(mnt):
    path = mnt.path('groupfile')
    write_file(path, b'for the group')
    os.chown(path, 0, 2000)
    os.chmod(path, 0o640)
    assert as_user(lambda: read_file(path), **ALICE) == b'for the group'
    expect_errno(errno.EACCES, as_user, lambda: read_file(path), **BOB)


@pytest.mark.mount_options()          # this one without allow_other
@pytest.mark.needs_daemon
def test_without_allow_other_other_users_are_denied(mnt):
    """Without -o allow_other the kernel keeps everyone but the mounter out."""
    assert 'allow_other' not in mnt.options
    os.chmod(mnt.dir, 0o777)
    expect_errno(errno.EACCES, as_user, lambda: os.stat(mnt.path('.')), **ALICE)

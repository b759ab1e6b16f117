"""Extended attributes through a pinfs mount."""

import errno
import os

from pinfs_util import expect_errno, write_file

ENODATA = errno.ENODATA


def test_xattr_set_get_list_remove(mnt):
    path = mnt.path('f')
    write_file(path, b'x')
    binary = bytes(range(256)) * 4           # 1 KiB with NULs
    os.setxattr(path, 'user.small', b'1')
    os.setxattr(path, 'user.binary', binary)
    os.setxattr(path, 'user.empty', b'')
    assert os.getxattr(path, 'user.small') == b'1'
    assert os.getxattr(path, 'user.binary') == binary
    assert os.getxattr(path, 'user.empty') == b''
    assert sorted(os.listxattr(path)) == ['user.binary', 'user.empty', 'user.small']
    os.setxattr(path, 'user.small', b'replaced, and longer than before')
    assert os.getxattr(path, 'user.small') == b'replaced, and longer than before'
    os.removexattr(path, 'user.binary')
    expect_errno(ENODATA, os.getxattr, path, 'user.binary')
    assert sorted(os.listxattr(path)) == ['user.empty', 'user.small']


def test_xattr_on_directory_and_symlink(mnt):
    os.mkdir(mnt.path('d'))
    os.setxattr(mnt.path('d'), 'user.dir', b'on a dir')
    assert os.getxattr(mnt.path('d'), 'user.dir') == b'on a dir'
    os.symlink('d', mnt.path('l'))
    os.setxattr(mnt.path('l'), 'trusted.link', b'on a link', follow_symlinks=False)
    assert os.getxattr(mnt.path('l'), 'trusted.link', follow_symlinks=False) == b'on a link'
    assert os.listxattr(mnt.path('d')) == ['user.dir']


def test_xattr_create_flag_on_existing_fails_with_eexist(mnt):
    path = mnt.path('f')
    write_file(path, b'x')
    os.setxattr(path, 'user.a', b'first', os.XATTR_CREATE)
    expect_errno(errno.EEXIST, os.setxattr, path, 'user.a', b'second', os.XATTR_CREATE)
    assert os.getxattr(path, 'user.a') == b'first'


def test_xattr_replace_flag_on_missing_fails_with_enodata(mnt):
    path = mnt.path('f')
    write_file(path, b'x')
    expect_errno(ENODATA, os.setxattr, path, 'user.missing', b'v', os.XATTR_REPLACE)
    assert os.listxattr(path) == []
    os.setxattr(path, 'user.present', b'v1')
    os.setxattr(path, 'user.present', b'v2', os.XATTR_REPLACE)
    assert os.getxattr(path, 'user.present') == b'v2'


def test_get_and_remove_missing_xattr_fail_with_enodata(mnt):
    path = mnt.path('f')
    write_file(path, b'x')
    expect_errno(ENODATA, os.getxattr, path, 'user.missing')
    expect_errno(ENODATA, os.removexattr, path, 'user.missing')


def test_xattrs_persist_across_remount(mnt):
    path = mnt.path('f')
    write_file(path, b'x')
    values = {'user.k%02d' % i: os.urandom(i * 20) for i in range(12)}
    for k, v in values.items():
        os.setxattr(path, k, v)
    os.removexattr(path, 'user.k05')
    del values['user.k05']
    mnt.remount()
    assert sorted(os.listxattr(path)) == sorted(values)
    for k, v in values.items():
        assert os.getxattr(path, k) == v


def test_xattr_too_large_fails_cleanly_and_keeps_the_others(mnt):
    # All of a file's xattrs may share one 4 KiB block (as in ext4): a value
    # that cannot fit must fail with a real errno, not corrupt the set.
    path = mnt.path('f')
    write_file(path, b'x')
    os.setxattr(path, 'user.keep', b'kept')
    expect_errno((errno.ENOSPC, errno.E2BIG), os.setxattr, path, 'user.huge', bytes(65536))
    assert os.listxattr(path) == ['user.keep']
    assert os.getxattr(path, 'user.keep') == b'kept'
    mnt.remount()
    assert os.listxattr(path) == ['user.keep']


def test_xattrs_go_away_with_the_inode(mnt):
    path = mnt.path('f')
    write_file(path, b'x')
    os.setxattr(path, 'user.old', b'old inode')
    os.unlink(path)
    write_file(path, b'y')
    assert os.listxattr(path) == []

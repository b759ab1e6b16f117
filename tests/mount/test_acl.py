"""POSIX ACLs on a pinfs mount, as on ext4: setfacl/getfacl work, the kernel
enforces the ACL (FUSE_CAP_POSIX_ACL), the mode's group bits are the mask,
chmod rewrites the mask, a directory's default ACL is inherited by new files
and directories in place of the umask, setfacl -b goes back to plain mode
checks, all of it persists, and the daemon's own decisions (who may pin)
follow the ACL too.

The ACL is set by root with setfacl(1) (Debian's acl package); what the test
user bob (1001, no passwd entry) may do is tried in a forked child that drops
to his uid (pinfs_util.as_user), as tests/mount/test_users.py does.
"""

import errno
import os
import subprocess

import pytest

from pinfs_util import MiB, as_user, expect_errno, read_file, write_file

BOB = dict(uid=1001, gid=1001, groups=[1001])
ALICE = dict(uid=1000, gid=1000, groups=[1000, 2000])
POOL_GID = 2000
BOB_IN_POOL_GROUP = dict(uid=1001, gid=1001, groups=[1001, POOL_GID])

pytestmark = [pytest.mark.mount_options('allow_other'),
              pytest.mark.skipif(os.getuid() != 0, reason='needs root to switch users')]


def setfacl(*args):
    res = subprocess.run(['setfacl'] + list(args), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=30)
    assert res.returncode == 0, 'setfacl %s: %s' % (' '.join(args), res.stderr)


def getfacl(path):
    """The ACL's entries, numeric ids, no comments or effective rights."""
    res = subprocess.run(['getfacl', '-cnpE', path], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=30)
    assert res.returncode == 0, 'getfacl %s: %s' % (path, res.stderr)
    return [line for line in res.stdout.splitlines() if line]


def _shared_dir(mnt, name='shared', mode=0o755):
    d = mnt.path(name)
    os.mkdir(d)
    os.chmod(d, mode)
    return d


def _perm(path):
    return os.stat(path).st_mode & 0o7777


def _bob_reads(path):
    return as_user(lambda: read_file(path), **BOB)


def _bob_appends(path, data=b'bob'):
    def append():
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            return os.write(fd, data)
        finally:
            os.close(fd)
    return as_user(append, **BOB)


def test_named_user_entry_lets_that_user_read_a_0600_root_file_but_not_write(mnt):
    path = os.path.join(_shared_dir(mnt), 'secret')
    write_file(path, b'for bob')
    os.chmod(path, 0o600)
    expect_errno(errno.EACCES, _bob_reads, path)

    setfacl('-m', 'u:1001:r', path)
    assert getfacl(path) == ['user::rw-', 'user:1001:r--', 'group::---', 'mask::r--',
                             'other::---']
    assert _perm(path) == 0o640, 'the group bits must show the mask'
    assert _bob_reads(path) == b'for bob'
    expect_errno(errno.EACCES, _bob_appends, path)
    # alice, not named, is "other": still nothing
    expect_errno(errno.EACCES, as_user, lambda: read_file(path), **ALICE)
    assert read_file(path) == b'for bob'


def test_mask_limits_named_entries_and_chmod_rewrites_the_mask(mnt):
    path = os.path.join(_shared_dir(mnt), 'f')
    write_file(path, b'data')
    os.chmod(path, 0o600)
    setfacl('-m', 'u:1001:rw,g::r', path)
    assert _perm(path) == 0o660            # mask rw-
    assert _bob_appends(path) == 3

    os.chmod(path, 0o640)                  # the group bits are the mask: now r--
    assert getfacl(path) == ['user::rw-', 'user:1001:rw-', 'group::r--', 'mask::r--',
                             'other::---']
    assert _bob_reads(path) == b'databob'
    expect_errno(errno.EACCES, _bob_appends, path)

    os.chmod(path, 0o600)                  # mask ---: bob's entry grants nothing
    assert getfacl(path)[3] == 'mask::---'
    expect_errno(errno.EACCES, _bob_reads, path)
    os.chmod(path, 0o670)
    assert getfacl(path)[3] == 'mask::rwx'
    assert _bob_appends(path) == 3


def test_default_acl_is_inherited_by_new_files_and_dirs_in_place_of_the_umask(mnt):
    d = _shared_dir(mnt, 'proj')
    setfacl('-d', '-m', 'u:1001:rwx,g::r-x,o::---', d)
    plain = _shared_dir(mnt, 'plain')
    old = os.umask(0o077)    # POSIX: ignored under a default ACL, applied elsewhere
    try:
        fd = os.open(os.path.join(d, 'file'), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        os.write(fd, b'shared')
        os.close(fd)
        os.mkdir(os.path.join(d, 'sub'), 0o777)
        os.mkfifo(os.path.join(d, 'fifo'), 0o644)
        write_file(os.path.join(plain, 'file'), b'x', mode=0o666)
        os.mkdir(os.path.join(plain, 'sub'), 0o777)
    finally:
        os.umask(old)

    f = os.path.join(d, 'file')
    assert _perm(f) == 0o660, oct(_perm(f))  # mode & ACL: mask rw-, other ---
    assert getfacl(f) == ['user::rw-', 'user:1001:rwx', 'group::r-x', 'mask::rw-',
                          'other::---']
    assert _bob_appends(f) == 3
    assert read_file(f) == b'sharedbob'

    sub = os.path.join(d, 'sub')
    assert _perm(sub) == 0o770, oct(_perm(sub))
    default = ['default:user::rwx', 'default:user:1001:rwx', 'default:group::r-x',
               'default:mask::rwx', 'default:other::---']
    assert getfacl(sub) == ['user::rwx', 'user:1001:rwx', 'group::r-x', 'mask::rwx',
                            'other::---'] + default
    # the subdirectory passes it on
    as_user(lambda: write_file(os.path.join(sub, 'bobs'), b'b', mode=0o600), **BOB)
    assert getfacl(os.path.join(sub, 'bobs')) == ['user::rw-', 'user:1001:rwx', 'group::r-x',
                                                  'mask::---', 'other::---']
    assert _perm(os.path.join(sub, 'bobs')) == 0o600
    assert _perm(os.path.join(d, 'fifo')) == 0o640

    # no default ACL: the umask applies, no ACL appears
    assert _perm(os.path.join(plain, 'file')) == 0o600
    assert _perm(os.path.join(plain, 'sub')) == 0o700
    assert getfacl(os.path.join(plain, 'file')) == ['user::rw-', 'group::---', 'other::---']
    assert 'system.posix_acl_access' not in os.listxattr(os.path.join(plain, 'sub'))


def test_setfacl_b_removes_the_acl_and_plain_mode_checks_are_back(mnt):
    path = os.path.join(_shared_dir(mnt), 'f')
    write_file(path, b'data')
    os.chmod(path, 0o640)
    setfacl('-m', 'u:1001:rw', path)
    assert _perm(path) == 0o660
    assert _bob_appends(path) == 3
    assert 'system.posix_acl_access' in os.listxattr(path)

    setfacl('-b', path)
    assert getfacl(path) == ['user::rw-', 'group::r--', 'other::---']
    assert _perm(path) == 0o640
    assert 'system.posix_acl_access' not in os.listxattr(path)
    expect_errno(errno.EACCES, _bob_appends, path)
    expect_errno(errno.EACCES, _bob_reads, path)
    os.chmod(path, 0o644)                  # and the mode alone decides again
    assert _bob_reads(path) == b'databob'

    d = _shared_dir(mnt, 'd')
    setfacl('-d', '-m', 'u:1001:rwx', d)
    setfacl('-k', d)                       # the default ACL goes too
    assert getfacl(d) == ['user::rwx', 'group::r-x', 'other::r-x']
    write_file(os.path.join(d, 'new'), b'', mode=0o666)
    assert _perm(os.path.join(d, 'new')) == 0o644
    setfacl('-k', d)                       # none to remove: not an error, as on ext4


def test_acls_persist_across_remount(mnt):
    d = _shared_dir(mnt, 'd')
    path = os.path.join(d, 'f')
    write_file(path, b'kept')
    os.chmod(path, 0o600)
    setfacl('-m', 'u:1001:r', path)
    setfacl('-d', '-m', 'u:1001:rwx', d)
    before = getfacl(path), getfacl(d)

    mnt.remount()
    assert (getfacl(path), getfacl(d)) == before
    assert _perm(path) == 0o640
    assert _bob_reads(path) == b'kept'
    expect_errno(errno.EACCES, _bob_appends, path)
    write_file(os.path.join(d, 'after'), b'', mode=0o600)
    assert 'user:1001:rwx' in getfacl(os.path.join(d, 'after'))


# --------------------------------------------------------------------------
# the daemon's own checks (fusefs/access.c) follow the ACL

def _pin(path, flags=0, mode=os.O_RDONLY):
    from test_pin_access import _pin as pin
    return pin(path, 0, 64 * 1024, flags, mode)


def _alice_file(mnt, name, mode):
    d = mnt.path('shared')
    if not os.path.isdir(d):
        os.mkdir(d)
        os.chmod(d, 0o1777)
    path = os.path.join(d, name)
    write_file(path, b'a' * 4096)
    os.truncate(path, 1 * MiB)
    os.chown(path, 1000, 1000)
    os.chmod(path, mode)
    return path


@pytest.mark.mount_options('allow_other', 'pin_access=writer', 'pin_group=%d' % POOL_GID)
def test_pin_access_writer_asks_the_acl_whether_the_caller_may_write(mnt):
    os.chmod(os.path.dirname(mnt.pool), 0o755)
    # the mode would let bob write ("other" rw-); his named entry says r--
    denied = _alice_file(mnt, 'denied', 0o666)
    setfacl('-m', 'u:1001:r', denied)
    assert _perm(denied) == 0o666          # mask rw- (group), so the mode is unchanged
    expect_errno(errno.EACCES, as_user, lambda: _pin(denied), **BOB_IN_POOL_GROUP)
    # the mode would not (0600); his named entry grants rw-
    granted = _alice_file(mnt, 'granted', 0o600)
    setfacl('-m', 'u:1001:rw', granted)
    lease, segs = as_user(lambda: _pin(granted), **BOB_IN_POOL_GROUP)
    assert lease > 0 and sum(s[2] for s in segs) == 64 * 1024


@pytest.mark.mount_options('allow_other', 'pin_group=%d' % POOL_GID)
def test_pin_is_refused_when_the_pool_files_acl_denies_the_caller(mnt):
    os.chmod(os.path.dirname(mnt.pool), 0o755)
    path = os.path.join(_shared_dir(mnt, mode=0o777), 'bobs')
    as_user(lambda: write_file(path, b'b' * 65536, mode=0o600), **BOB_IN_POOL_GROUP)
    lease, _ = as_user(lambda: _pin(path), **BOB_IN_POOL_GROUP)
    assert lease > 0
    # the pool is 0660 group 2000 (pin_group); an ACL on it shuts bob out,
    # as the kernel would when his holder opens the pool to map it
    setfacl('-m', 'u:1001:---', mnt.pool)
    expect_errno(errno.EACCES, as_user, lambda: os.open(mnt.pool, os.O_RDONLY),
                 **BOB_IN_POOL_GROUP)
    expect_errno(errno.EPERM, as_user, lambda: _pin(path), **BOB_IN_POOL_GROUP)

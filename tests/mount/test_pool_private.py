"""Pool files are private: whoever can open the pool file can map all of it.

mkfs.pinfs never formats through a symbolic link nor a file another user
owns (--force or not, root included), and leaves what it formats mode 0600.
The daemon refuses, in one line and before it writes anything, a pool that
another user owns or that group or others may open, unless -o pin_group=GROUP
names the pool's group (group bits only) or -o pool_shared says to trust
everyone who can open it.

Runs as root (it chowns files to uid 1000 and gid 2000).
"""

import hashlib
import os
import stat

import pytest

from pinfs_mount import BIN, PinfsMount, check_fsck, describe, run, try_mount

pytestmark = pytest.mark.needs_daemon

OTHER_UID = 1000
POOL_GID = 2000


def _mkfs(path, *args):
    return run([BIN['mkfs.pinfs'], '--size', '64M'] + list(args) + [path])


def _digest(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _refused(pool, mountpoint, options=()):
    """Start pinfs on `pool` as users do, expect a refusal; returns its one
    stderr line.
    The pool must be byte for byte what it was."""
    before = _digest(pool)
    rc, err = try_mount(pool, mountpoint, options)
    assert rc == 1, 'exit %s\n%s' % (rc, err)
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, 'expected one line on stderr, got:\n' + err
    assert _digest(pool) == before, 'the refused pool was written to'
    return lines[0]


def _mounts(pool, mountpoint, scratch, options=()):
    """pinfs serves `pool` with `options`: a file written survives, fsck is clean."""
    m = PinfsMount(pool, mountpoint, scratch, options)
    m.start()
    try:
        with open(m.path('f'), 'w') as f:
            f.write('hello')
    finally:
        problems = m.stop()
    assert not problems, '\n'.join(problems)
    check_fsck(pool)


# -- mkfs.pinfs

@pytest.mark.parametrize('force', [False, True])
def test_mkfs_refuses_a_symlink_and_leaves_its_target_alone(scratch, force):
    target = os.path.join(scratch, 'precious')
    with open(target, 'w') as f:
        f.write('keep me\n')
    link = os.path.join(scratch, 'pool')
    os.symlink(target, link)
    res = _mkfs(link, *(['--force'] if force else []))
    assert res.returncode == 1, describe(res)
    assert 'is a symbolic link' in res.stderr and link in res.stderr, res.stderr
    with open(target) as f:
        assert f.read() == 'keep me\n'
    assert os.path.islink(link)


def test_mkfs_refuses_a_dangling_symlink_without_creating_its_target(scratch):
    target = os.path.join(scratch, 'elsewhere')
    link = os.path.join(scratch, 'pool')
    os.symlink(target, link)
    res = _mkfs(link)
    assert res.returncode == 1, describe(res)
    assert 'is a symbolic link' in res.stderr, res.stderr
    assert not os.path.exists(target)


@pytest.mark.parametrize('force', [False, True])
def test_mkfs_refuses_a_file_another_user_owns_even_as_root(scratch, force):
    path = os.path.join(scratch, 'pool')
    with open(path, 'w'):
        pass
    os.chown(path, OTHER_UID, OTHER_UID)
    os.chmod(path, 0o666)
    res = _mkfs(path, *(['--force'] if force else []))
    assert res.returncode == 1, describe(res)
    assert 'owned by' in res.stderr and str(OTHER_UID) in res.stderr, res.stderr
    st = os.stat(path)
    assert (st.st_size, st.st_uid, _mode(path)) == (0, OTHER_UID, 0o666)


def test_mkfs_makes_what_it_formats_mode_0600(scratch):
    old = os.umask(0)
    try:
        new = os.path.join(scratch, 'new')
        res = _mkfs(new)
        assert res.returncode == 0, describe(res)
        assert _mode(new) == 0o600

        empty = os.path.join(scratch, 'empty')
        with open(empty, 'w'):
            pass
        os.chmod(empty, 0o666)
        res = _mkfs(empty)
        assert res.returncode == 0, describe(res)
        assert _mode(empty) == 0o600

        os.chmod(new, 0o644)
        res = _mkfs(new, '--force')
        assert res.returncode == 0, describe(res)
        assert _mode(new) == 0o600
    finally:
        os.umask(old)
    check_fsck(new)
    check_fsck(empty)


# -- the daemon

def test_daemon_refuses_a_world_readable_pool_unless_pool_shared(pool, mountpoint, scratch):
    os.chmod(pool, 0o644)
    line = _refused(pool, mountpoint)
    assert 'mode 0644 lets other users map the whole pool' in line, line
    assert pool in line and 'chmod 600' in line and 'pool_shared' in line, line
    _mounts(pool, mountpoint, scratch, ['pool_shared'])
    assert _mode(pool) == 0o644


def test_daemon_refuses_a_group_readable_pool_without_pin_group(pool, mountpoint, scratch):
    os.chown(pool, -1, POOL_GID)
    os.chmod(pool, 0o640)
    line = _refused(pool, mountpoint)
    assert 'mode 0640 lets' in line and str(POOL_GID) in line and 'pin_group' in line, line
    # naming the pool's own group: its members were meant to map it
    _mounts(pool, mountpoint, scratch, ['pin_group=%d' % POOL_GID])
    assert _mode(pool) == 0o660 and os.stat(pool).st_gid == POOL_GID


def test_pin_group_does_not_excuse_other_bits_or_another_group(pool, mountpoint, scratch):
    os.chown(pool, -1, POOL_GID)
    os.chmod(pool, 0o664)
    line = _refused(pool, mountpoint, ['pin_group=%d' % POOL_GID])
    assert 'mode 0664 lets other users map the whole pool' in line, line
    os.chmod(pool, 0o660)
    line = _refused(pool, mountpoint, ['pin_group=%d' % (POOL_GID + 1)])
    assert 'mode 0660 lets' in line and str(POOL_GID) in line, line
    _mounts(pool, mountpoint, scratch, ['pin_group=%d' % POOL_GID])


def test_pool_left_to_pin_group_names_that_group_when_mounted_without_it(pool, mountpoint,
                                                                        scratch):
    """-o pin_group leaves the pool its group's, 0660, after the unmount; a
    mount without the option is refused, and the line names the option that
    serves it (it said "-o pin_group=GROUP")."""
    _mounts(pool, mountpoint, scratch, ['pin_group=%d' % POOL_GID])
    assert _mode(pool) == 0o660 and os.stat(pool).st_gid == POOL_GID
    line = _refused(pool, mountpoint)
    try:
        import grp
        name = grp.getgrgid(POOL_GID).gr_name
    except KeyError:
        name = str(POOL_GID)
    assert '-o pin_group=%s ' % name in line, line
    _mounts(pool, mountpoint, scratch, ['pin_group=%s' % name])


def test_root_daemon_refuses_a_pool_another_user_owns_unless_pool_shared(pool, mountpoint,
                                                                         scratch):
    os.chown(pool, OTHER_UID, -1)
    assert _mode(pool) == 0o600
    line = _refused(pool, mountpoint)
    assert 'owned by' in line and str(OTHER_UID) in line and 'pool_shared' in line, line
    _mounts(pool, mountpoint, scratch, ['pool_shared'])

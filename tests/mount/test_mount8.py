"""pinfs as a mount(8) file system type: `mount -t fuse.pinfs POOL MNT -o ...`
and an /etc/fstab line, through mount.fuse3, with pinfs installed by
`meson install`; `umount MNT` ends the daemon cleanly (exit 0, pool clean).

Each test installs the build under test into a temporary --destdir and runs
mount8_scenario.py in a private mount namespace (unshare), where that tree's
bin directory is bind-mounted over /usr/local/bin (mount(8) clears PATH, so
mount.fuse3 finds `pinfs` only in the shell's default PATH) and a temporary
fstab over /etc/fstab: the machine's own files are never touched.
"""

import json
import os
import shutil
import tempfile

import pytest

from pinfs_mount import BUILD, HERE, check_fsck, describe, force_unmount, mkfs, mounted, run

pytestmark = [pytest.mark.needs_daemon,
              pytest.mark.skipif(os.getuid() != 0, reason='needs root (mount, unshare)')]

SCENARIO = os.path.join(HERE, 'mount8_scenario.py')


@pytest.fixture(scope='module')
def installed():
    """bin directory of `meson install --destdir` of the build under test."""
    for tool in ('meson', 'unshare', 'mount.fuse3'):
        if shutil.which(tool) is None and not os.path.exists('/sbin/' + tool):
            pytest.fail('%s not found' % tool)
    dest = tempfile.mkdtemp(prefix='pinfs-destdir-')
    try:
        res = run(['meson', 'install', '-C', BUILD, '--destdir', dest, '--no-rebuild',
                   '--quiet'], timeout=120)
        assert res.returncode == 0, 'meson install: ' + describe(res)
        # the program, not the bash completion file of the same name
        found = [os.path.join(root) for root, _, files in os.walk(dest) if 'pinfs' in files
                 and os.access(os.path.join(root, 'pinfs'), os.X_OK)]
        assert len(found) == 1, 'meson install put pinfs in %s' % found
        assert found[0].endswith('/usr/local/bin'), \
            'pinfs installed in %s, not in the default prefix\'s bin' % found[0]
        yield found[0]
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def scenario(bindir, pool, mnt, mode, arg):
    res = run(['unshare', '--mount', '--propagation', 'private', '/usr/bin/python3', SCENARIO,
               bindir, pool, mnt, mode, arg], timeout=90)
    assert res.returncode == 0, describe(res)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    for step in out['steps']:
        assert step['rc'] == 0, step
    return out


def check_mounted_and_unmounted(out, pool):
    m = out['mount']
    assert m['rc'] == 0, 'mount failed: %s' % m
    assert out['entry'] is not None, 'not mounted after mount exited 0'
    source, _, fstype, opts = out['entry'][:4]
    assert fstype == 'fuse.pinfs', out['entry']
    assert source == 'pinfs:' + pool, out['entry']
    assert out['daemons'] == 1, 'expected one background daemon: %s' % out
    assert out['daemon_is_session_leader'], 'daemon did not leave the session (not in background)'
    # the lease manager's holder watcher and the flusher run in the daemon
    assert out['daemon_threads'] >= 3, out
    assert out['read_back'] == 'mounted by mount(8)\n'
    assert out['umount']['rc'] == 0, out['umount']
    assert not out['mounted_after_umount']
    assert out['daemon_exit'] == 0, 'daemon exit status after umount: %s' % out['daemon_exit']
    return opts


@pytest.fixture
def setup(scratch):
    pool = os.path.join(scratch, 'pool')
    mkfs(pool, '64M')
    mnt = tempfile.mkdtemp(prefix='pinfs-mnt-')
    yield pool, mnt
    if mounted(mnt):
        force_unmount(mnt)
    os.rmdir(mnt)


def test_mount_t_fuse_pinfs_with_options_and_umount_ends_the_daemon(installed, setup):
    pool, mnt = setup
    out = scenario(installed, pool, mnt, 'type', 'allow_other,policy=revoke,noatime')
    opts = check_mounted_and_unmounted(out, pool)
    assert 'allow_other' in opts and 'noatime' in opts, opts
    assert '-o' in out['daemon_cmdline'] and any('policy=revoke' in a
                                                  for a in out['daemon_cmdline']), out
    check_fsck(pool)
    # what was written is in the pool: mount it again and read it
    out = scenario(installed, pool, mnt, 'type', '')
    check_mounted_and_unmounted(out, pool)
    check_fsck(pool)


def test_fstab_line_mounts_with_mount_mountpoint(installed, setup):
    pool, mnt = setup
    out = scenario(installed, pool, mnt, 'fstab', 'defaults,nofail,allow_other,policy=wait')
    opts = check_mounted_and_unmounted(out, pool)
    assert 'allow_other' in opts, opts
    assert any('policy=wait' in a for a in out['daemon_cmdline']), out
    check_fsck(pool)


def test_mount_t_with_a_bad_option_fails_and_leaves_nothing_mounted(installed, setup):
    pool, mnt = setup
    out = scenario(installed, pool, mnt, 'type', 'policy=sometimes')
    assert out['mount']['rc'] != 0
    assert 'unknown policy' in out['mount']['err'], out['mount']
    assert out['entry'] is None and out['daemons'] == 0, out
    check_fsck(pool)

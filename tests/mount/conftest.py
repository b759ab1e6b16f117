"""pytest wiring for the pinfs mount-level tests: skip markers and fixtures.

The machinery (daemon start/stop, fsck, watchdog) lives in pinfs_mount.py;
see its docstring for the environment variables.
"""

import os
import shutil
import tempfile
import threading

import pytest

from pinfs_mount import (DEFAULT_POOL_SIZE, FAKE, HERE, SKIP_REASON, WATCHDOG_S, FakeMount,
                         PinfsMount, _find_program, check_fsck, compile_helper, describe,
                         force_unmount, mkfs, mounted, run)
from pinfs_util import Holder, factory


def pytest_configure(config):
    config.addinivalue_line('markers', 'pool_size(size): size given to mkfs.pinfs --size')
    config.addinivalue_line('markers', 'mount_options(*opts): extra pinfs -o options')
    config.addinivalue_line('markers', 'needs_daemon: cannot run with PINFS_TEST_FAKE')
    config.addinivalue_line('markers', 'watchdog(seconds): a longer per-test watchdog')
    config.addinivalue_line('markers', 'mkfs_options(*opts): extra mkfs.pinfs options')
    config.addinivalue_line('markers', 'pool_tmpfs(opts): the pool on a tmpfs of its own, '
                            'mounted with these options (e.g. huge=always)')
    config.addinivalue_line('markers', 'foreground: run the daemon with -f, its stderr '
                            'captured (default: in the background, as users run it, '
                            'its log in -o logfile)')
    config.addinivalue_line('markers', 'exclusive: changes machine-wide state (enable_uring) '
                            'that other mounts rely on: never run beside another shard')


def _shard():
    """PINFS_TEST_SHARD=K/N: this run takes every N-th test from the K-th
    (0-based) of the collected order, so N runs side by side share the suite
    evenly whatever the files' sizes (scripts/test runs the sanitizer
    build's suite in thirds), leaving out the tests marked `exclusive`;
    PINFS_TEST_SHARD=exclusive runs those alone, afterwards. None when
    unset (everything)."""
    spec = os.environ.get('PINFS_TEST_SHARD', '')
    if not spec or spec == 'exclusive':
        return spec or None
    k, _, n = spec.partition('/')
    if not (k.isdigit() and n.isdigit() and int(k) < int(n)):
        raise pytest.UsageError('PINFS_TEST_SHARD=%r: want K/N with 0 <= K < N, or exclusive'
                                % spec)
    return int(k), int(n)


def pytest_collection_modifyitems(config, items):
    """Keep this run's shard (PINFS_TEST_SHARD); skip every test of this
    directory, with the reason, when pinfs is not usable."""
    shard = _shard()
    if shard is not None:
        keep, i = [], 0
        for it in items:
            if it.get_closest_marker('exclusive') is not None:
                keep.append(shard == 'exclusive')
            else:   # the i-th of the others
                keep.append(shard != 'exclusive' and i % shard[1] == shard[0])
                i += 1
        config.hook.pytest_deselected(items=[it for it, kp in zip(items, keep) if not kp])
        items[:] = [it for it, kp in zip(items, keep) if kp]
    for item in items:
        if not str(getattr(item, 'path', item.fspath)).startswith(HERE + os.sep):
            continue
        if SKIP_REASON is not None:
            if os.environ.get('PINFS_TEST_REQUIRE') != '1':
                item.add_marker(pytest.mark.skip(reason=SKIP_REASON))
        elif FAKE and item.get_closest_marker('needs_daemon'):
            item.add_marker(pytest.mark.skip(reason='needs the pinfs daemon (PINFS_TEST_FAKE set)'))


# --------------------------------------------------------------------------
# fixtures

@pytest.fixture(autouse=True)
def _required():
    """With PINFS_TEST_REQUIRE=1 a missing prerequisite is a failure, not a skip."""
    if SKIP_REASON is not None and os.environ.get('PINFS_TEST_REQUIRE') == '1':
        pytest.fail('PINFS_TEST_REQUIRE=1, but ' + SKIP_REASON, pytrace=False)


@pytest.fixture(autouse=True)
def _umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def scratch():
    """A fresh directory in /dev/shm (pools, logs), removed afterwards."""
    base = '/dev/shm' if os.path.isdir('/dev/shm') else None
    d = tempfile.mkdtemp(prefix='pinfs-test-', dir=base)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def mountpoint():
    """A fresh empty directory to mount on (never in the source tree)."""
    d = tempfile.mkdtemp(prefix='pinfs-mnt-')
    yield d
    if mounted(d):
        force_unmount(d)
    try:
        os.rmdir(d)
    except OSError:
        pass


def _marker_args(request, name, default):
    m = request.node.get_closest_marker(name)
    return m.args if m is not None else default


@pytest.fixture
def pool(request, scratch):
    """Path of a freshly formatted pool (size from @pytest.mark.pool_size)."""
    size = _marker_args(request, 'pool_size', (DEFAULT_POOL_SIZE,))[0]
    if FAKE:
        path = os.path.join(scratch, 'pool.fs')
        os.mkdir(path)
        res = run(['mount', '-t', 'tmpfs', '-o', 'size=%s,mode=0755' % size, 'tmpfs', path])
        assert res.returncode == 0, describe(res)
        yield path
        force_unmount(path)
        return
    tmpfs = _marker_args(request, 'pool_tmpfs', (None,))[0]
    if tmpfs is not None:
        fs = os.path.join(scratch, 'pool.tmpfs')
        os.mkdir(fs)
        res = run(['mount', '-t', 'tmpfs', '-o', 'mode=0700,' + tmpfs, 'tmpfs', fs])
        assert res.returncode == 0, describe(res)
        path = os.path.join(fs, 'pool')
    else:
        path = os.path.join(scratch, 'pool')
    try:
        mkfs(path, size, extra=_marker_args(request, 'mkfs_options', ()))
        yield path
    finally:
        if tmpfs is not None:
            force_unmount(fs)


@pytest.fixture
def mnt(request, pool, mountpoint, scratch):
    """A live pinfs mount of a fresh pool; always unmounted and checked afterwards."""
    options = _marker_args(request, 'mount_options', ())
    cls = FakeMount if FAKE else PinfsMount
    m = cls(pool, mountpoint, scratch, options,
            foreground=request.node.get_closest_marker('foreground') is not None)
    watchdog_s = _marker_args(request, 'watchdog', (WATCHDOG_S,))[0]
    timer = threading.Timer(watchdog_s, m.watchdog)
    timer.daemon = True
    try:
        m.start()
        timer.start()
        yield m
    finally:
        timer.cancel()
        # Leave the mountpoint before unmounting; a test may have chdir'd into it.
        try:
            if os.getcwd().startswith(m.dir):
                os.chdir('/')
        except OSError:
            os.chdir('/')
        problems = m.stop()
        if problems:
            pytest.fail('\n'.join(problems))
        check_fsck(m.pool)


# --------------------------------------------------------------------------
# pinhold, the scripted holder (tests/mount/pinhold.c, class Holder in pinfs_util.py)

@pytest.fixture(scope='session')
def pinhold_exe():
    """Path of the pinhold helper: the build's, else compiled here with cc."""
    built = _find_program('pinhold')
    if built:
        yield built
        return
    exe = compile_helper('pinhold')
    yield exe
    shutil.rmtree(os.path.dirname(exe), ignore_errors=True)


@pytest.fixture
def holders(mnt, pinhold_exe):
    """Factory of holders on the mount; every one is gone before the unmount."""
    with factory(lambda path, mode='rw': Holder(pinhold_exe, path, mode), Holder.kill) as make:
        yield make

"""The installable client library: libpinfs, its headers and pinfs.pc.

The build under test is installed into a temporary --destdir (once per
module); examples/pinfs-example.c is then compiled against that tree using
nothing but `pkg-config --cflags --libs pinfs` (PKG_CONFIG_SYSROOT_DIR and
PKG_CONFIG_PATH point into the destdir; liburing comes from the system) and
run, with LD_LIBRARY_PATH into the destdir, against a file on a live mount:
it pins, stores a pattern through the mapping, registers the mapping with
io_uring, fsyncs, unpins; the test then reads the pattern back itself.

In a sanitizer build (b_sanitize set) the installed library needs the
sanitizer runtime, so the example is compiled with the same -fsanitize=.
"""

import os
import shutil
import subprocess
import tempfile

import pytest

from pinfs_mount import BUILD, REPO, describe, run, sanitize_flags

pytestmark = [pytest.mark.needs_daemon]

EXAMPLE = os.path.join(REPO, 'examples', 'pinfs-example.c')
HEADERS = ('abi.h', 'client.h')
SONAME = 'libpinfs.so.0'
REAL = 'libpinfs.so.0.1.0'
VERSION_NODE = 'PINFS_0.1'
EXAMPLE_LEN = 1024 * 1024 + 1000      # not a whole number of blocks


def example_pattern(size):
    """What examples/pinfs-example.c stores: byte i is i % 251."""
    period = bytes(range(251))
    return (period * (size // 251 + 1))[:size]


class Installed:
    """Paths inside the destdir of `meson install`."""

    def __init__(self, dest):
        self.dest = dest
        pcs = [root for root, _, files in os.walk(dest) if 'pinfs.pc' in files]
        assert len(pcs) == 1, 'pinfs.pc installed in %s' % pcs
        self.pkgconfig = pcs[0]
        self.libdir = os.path.dirname(self.pkgconfig)
        incs = [root for root, dirs, _ in os.walk(dest) if root.endswith('/include')
                and 'pinfs' in dirs]
        assert len(incs) == 1, 'include/pinfs installed in %s' % incs
        self.includedir = incs[0]

    def pkg_config(self, *args):
        env = dict(os.environ, PKG_CONFIG_SYSROOT_DIR=self.dest,
                   PKG_CONFIG_PATH=self.pkgconfig, PKG_CONFIG_LIBDIR=self.pkgconfig)
        res = run(['pkg-config'] + list(args), env=env)
        assert res.returncode == 0, 'pkg-config %s: %s' % (' '.join(args), describe(res))
        return res.stdout.split()


@pytest.fixture(scope='module')
def installed():
    for tool in ('meson', 'pkg-config', 'cc', 'nm', 'readelf'):
        if shutil.which(tool) is None:
            pytest.fail('%s not found (scripts/deps installs it)' % tool)
    dest = tempfile.mkdtemp(prefix='pinfs-destdir-', dir='/dev/shm')
    try:
        res = run(['meson', 'install', '-C', BUILD, '--destdir', dest, '--no-rebuild',
                   '--quiet'], timeout=120)
        assert res.returncode == 0, 'meson install: ' + describe(res)
        yield Installed(dest)
    finally:
        shutil.rmtree(dest, ignore_errors=True)


@pytest.fixture(scope='module')
def example(installed):
    """examples/pinfs-example built against the destdir with pkg-config only."""
    out = os.path.join(installed.dest, 'pinfs-example')
    flags = ['-std=gnu11', '-Wall', '-Wextra', '-Werror', '-g']
    flags += sanitize_flags()
    uring = run(['pkg-config', '--cflags', '--libs', 'liburing'])
    assert uring.returncode == 0, 'pkg-config liburing: ' + describe(uring)
    cmd = (['cc'] + flags + ['-o', out, EXAMPLE] +
           installed.pkg_config('--cflags', '--libs', 'pinfs') + uring.stdout.split())
    res = run(cmd, timeout=120)
    assert res.returncode == 0, '%s\n%s' % (' '.join(cmd), describe(res))
    return out


def test_install_puts_headers_library_and_pc_in_the_prefix(installed):
    for h in HEADERS:
        assert os.path.isfile(os.path.join(installed.includedir, 'pinfs', h)), h
    assert installed.libdir.endswith('/lib/x86_64-linux-gnu') or \
        installed.libdir.endswith('/lib64') or installed.libdir.endswith('/lib'), \
        installed.libdir
    lib = os.path.join(installed.libdir, 'libpinfs.so')
    so0 = os.path.join(installed.libdir, SONAME)
    assert os.path.islink(lib) and os.readlink(lib) == SONAME, 'libpinfs.so -> %s' % (
        os.readlink(lib) if os.path.islink(lib) else 'not a symlink')
    assert os.path.islink(so0) and os.readlink(so0) == REAL, '%s -> %s' % (
        SONAME, os.readlink(so0) if os.path.islink(so0) else 'not a symlink')
    real = os.path.join(installed.libdir, REAL)
    assert os.path.isfile(real) and not os.path.islink(real)
    res = run(['readelf', '-d', real])
    assert res.returncode == 0, describe(res)
    assert 'Library soname: [%s]' % SONAME in res.stdout, res.stdout

    cflags = installed.pkg_config('--cflags', 'pinfs')
    libs = installed.pkg_config('--libs', 'pinfs')
    assert cflags == ['-I' + installed.includedir], cflags
    assert libs == ['-L' + installed.libdir, '-lpinfs'], libs
    assert installed.pkg_config('--modversion', 'pinfs') == ['0.1.0']


def test_library_exports_only_pinfs_symbols(installed):
    res = run(['nm', '-D', '--defined-only', os.path.join(installed.libdir, REAL)])
    assert res.returncode == 0, describe(res)
    names = [line.split()[-1] for line in res.stdout.splitlines() if line.strip()]
    assert VERSION_NODE in names, res.stdout          # the version node itself ("A")
    exported = sorted(n for n in names if n not in (VERSION_NODE, 'PINFS_0.2'))
    assert exported, res.stdout
    bad = [n for n in exported if not n.startswith('pinfs_')]
    assert not bad, 'exported beyond pinfs_*: %s' % bad
    # functions added later are in later nodes (client/libpinfs.map)
    nodes = (VERSION_NODE, 'PINFS_0.2')
    unversioned = [n for n in exported if n not in nodes and
                   not any(n.endswith('@@' + v) for v in nodes)]
    assert not unversioned, 'not in %s: %s' % (' or '.join(nodes), unversioned)
    for fn in ('pinfs_map_pin_ex', 'pinfs_map_repin', 'pinfs_lease_state', 'pinfs_event_open',
               'pinfs_event_read'):
        assert fn + '@@PINFS_0.2' in exported, fn
    for fn in ('pinfs_map_pin', 'pinfs_map_unpin', 'pinfs_map_ptr', 'pinfs_pin_strerror',
               'pinfs_parse_size'):
        assert fn + '@@' + VERSION_NODE in exported, fn


def test_installed_headers_compile_alone_as_c_and_cxx(installed, tmp_path):
    """Each public header is self-contained with -I$includedir only, in C and C++."""
    compilers = [('cc', 'c', ['-std=c11'])]
    if shutil.which('c++'):
        compilers.append(('c++', 'c++', ['-std=c++11']))
    for h in HEADERS:
        for cc, lang, std in compilers:
            src = tmp_path / ('use_%s.%s' % (h.replace('.', '_'), 'c' if lang == 'c' else 'cc'))
            src.write_text('#include <pinfs/%s>\nint main(void) { return 0; }\n' % h)
            cmd = ([cc] + std + ['-Wall', '-Wextra', '-Werror', '-fsyntax-only'] +
                   installed.pkg_config('--cflags', 'pinfs') + [str(src)])
            res = run(cmd)
            assert res.returncode == 0, '%s\n%s' % (' '.join(cmd), describe(res))


def test_example_built_with_pkg_config_pins_stores_and_fsyncs(installed, example, mnt):
    env = dict(os.environ, LD_LIBRARY_PATH=installed.libdir)
    # the example must load the installed library, not one from elsewhere
    res = run(['ldd', example], env=env)
    assert res.returncode == 0, describe(res)
    line = [l for l in res.stdout.splitlines() if SONAME in l]
    assert line and installed.libdir + '/' + SONAME in line[0], res.stdout

    path = mnt.path('example.dat')
    res = run([example, path, str(EXAMPLE_LEN)], env=env, timeout=60)
    assert res.returncode == 0, describe(res)
    assert res.stderr == '', describe(res)
    with open(path, 'rb') as f:
        data = f.read()
    assert len(data) == EXAMPLE_LEN
    assert data == example_pattern(EXAMPLE_LEN), 'the pattern is not in the file'

    # the lease ended: a second run pins the same range again and succeeds
    res = run([example, path, str(EXAMPLE_LEN)], env=env, timeout=60)
    assert res.returncode == 0, describe(res)


def test_example_fails_with_a_message_off_a_pinfs_mount(installed, example, tmp_path):
    env = dict(os.environ, LD_LIBRARY_PATH=installed.libdir)
    res = run([example, str(tmp_path / 'not-pinfs.dat'), '4096'], env=env, timeout=60)
    assert res.returncode == 1, describe(res)
    assert res.stderr.startswith('pinfs-example: pin '), describe(res)
    assert 'is the file on a pinfs mount?' in res.stderr, describe(res)
    # the file it made for the pin is gone again; one that was there stays
    assert not (tmp_path / 'not-pinfs.dat').exists(), 'the example left the file it made'
    (tmp_path / 'there.dat').write_bytes(b'kept')
    res = run([example, str(tmp_path / 'there.dat'), '4096'], env=env, timeout=60)
    assert res.returncode == 1, describe(res)
    assert (tmp_path / 'there.dat').exists(), 'the example removed a file it did not make'


def test_example_help_prints_usage_and_makes_no_file(installed, example, tmp_path):
    """pinfs-example --help (or any option it does not know) is no file name:
    it used to create a 1 MiB file named --help in the current directory."""
    env = dict(os.environ, LD_LIBRARY_PATH=installed.libdir)
    res = subprocess.run([example, '--help'], cwd=str(tmp_path), env=env, timeout=60,
                         capture_output=True, text=True)
    assert res.returncode == 0, res
    assert res.stdout.startswith('usage: pinfs-example '), res
    res = subprocess.run([example, '--bogus', '4096'], cwd=str(tmp_path), env=env,
                         timeout=60, capture_output=True, text=True)
    assert res.returncode == 1, res
    assert res.stderr.startswith('usage: pinfs-example '), res
    assert os.listdir(str(tmp_path)) == [], os.listdir(str(tmp_path))


def test_example_handles_a_revoke_by_repinning_at_the_same_address(installed, example, mnt):
    """pinfs-example --revoke: a child punches a hole under policy revoke; the
    example takes the PINFS_EV_REVOKE record (with its cookie) from the
    pollable event fd, unregisters, re-pins at the same address
    (pinfs_map_repin) and stores again: the whole pattern is in the file."""
    env = dict(os.environ, LD_LIBRARY_PATH=installed.libdir)
    path = mnt.path('revoke.dat')
    res = run([example, '--revoke', path, str(EXAMPLE_LEN)], env=env, timeout=60)
    assert res.returncode == 0, describe(res)
    assert res.stderr == '', describe(res)
    # the lease's range: the pinned blocks
    assert 'event 4 for lease 1 (cookie 0x70696e6673), range [0, +%d), policy 2' % (
        (EXAMPLE_LEN + 4095) // 4096 * 4096) in res.stdout, res.stdout
    assert 're-pinned at the same address' in res.stdout, res.stdout
    with open(path, 'rb') as f:
        assert f.read() == example_pattern(EXAMPLE_LEN)
    assert os.getxattr(path, 'user.pinfs.policy') == b'revoke'

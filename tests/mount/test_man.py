"""The man pages in man/ against the programs they describe.

No mount needed. Each page must render with `man -l` without a warning, and
every option the built program prints in its `--help` today must appear in
its page, so the pages cannot fall behind the programs. `meson install` must
put the pages under share/man/man{1,7,8}/.

For pinfs only its own part of --help counts (up to libfuse's generic
options, which begin with "-h --help"): the page refers to fuse(8) and
mount.fuse3(8) for the rest.
"""

import os
import re
import shutil
import subprocess
import tempfile

import pytest

from pinfs_mount import BUILD, REPO, _find_program

MAN_DIR = os.path.join(REPO, 'man')

# page -> the program whose --help it must cover (None: the overview)
PAGES = {
    'pinfs.8': 'pinfs',
    'mkfs.pinfs.8': 'mkfs.pinfs',
    'fsck.pinfs.8': 'fsck.pinfs',
    'pinfsctl.8': 'pinfsctl',
    'pinclient.1': 'pinclient',
    # scripts/compare-policies as meson builds and installs it
    'pinfs-compare-policies.1': 'pinfs-compare-policies',
    'pinfs-dax.1': 'pinfs-dax',
    'pinfs.7': None,
    # section 3: the client library (no program; pinfs_map_unpin.3,
    # pinfs_map_ptr.3 and pinfs_client.3 are .so links, checked installed)
    'libpinfs.3': None,
    'pinfs_map_pin.3': None,
    'pinfs_pin_strerror.3': None,
    'pinfs_parse_size.3': None,
}
# section 3: the libpinfs functions of the lease notices (issue 17)
PAGES.update({p: None for p in ('pinfs_map_pin_ex.3', 'pinfs_map_repin.3',
                                'pinfs_lease_state.3', 'pinfs_event_open.3',
                                'pinfs_event_read.3')})

# libfuse's generic options start here in pinfs --help
LIBFUSE_PART = re.compile(r'^\s*-h\s+--help\b', re.M)


def _project_version():
    with open(os.path.join(REPO, 'meson.build')) as f:
        return re.search(r"version\s*:\s*'([^']+)'", f.read()).group(1)


def _page_text(page):
    """The page's roff source with the escapes that hide option names undone:
    '\\-' is '-', font changes and quoting go."""
    with open(os.path.join(MAN_DIR, page)) as f:
        src = f.read()
    src = src.replace('\\-', '-').replace('\\(em', '-')
    src = re.sub(r'\\f[BIRP]', '', src)
    return src.replace('"', '')


def _help(program):
    path = _find_program(program)
    assert path is not None, '%s not built under %s' % (program, BUILD)
    res = subprocess.run([path, '--help'], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, timeout=30)
    assert res.returncode == 0, '%s --help exited %d: %s' % (program, res.returncode,
                                                           res.stderr)
    text = res.stdout + res.stderr
    if program == 'pinfs':
        m = LIBFUSE_PART.search(text)
        assert m, 'pinfs --help: no libfuse section found:\n' + text
        text = text[:m.start()]
    return text


def _options(help_text):
    """(long options, -o names with '=' or not, short options) printed by --help."""
    longs = set(re.findall(r'(?<![\w-])(--[a-z][a-z0-9-]*)', help_text))
    onames = set()
    for name, eq in re.findall(r'-o\s+([a-z_][a-z0-9_]*)(=?)', help_text):
        onames.add(name + eq)
    shorts = set(re.findall(r'(?:^|[\s\[|,])(-[a-zA-Z])(?=[\s\],|]|$)', help_text, re.M))
    return longs, onames, shorts


def _render(page):
    env = dict(os.environ, MANWIDTH='80', MANPAGER='cat', PAGER='cat', LC_ALL='C.UTF-8')
    return subprocess.run(['man', '--warnings', '-l', os.path.join(MAN_DIR, page)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env, timeout=60)


@pytest.mark.parametrize('page', sorted(PAGES))
def test_man_page_renders_without_warnings(page):
    assert shutil.which('man'), 'man is not installed (scripts/deps installs man-db)'
    res = _render(page)
    assert res.returncode == 0 and res.stderr == '', \
        'man --warnings -l %s: exit %d, stderr:\n%s' % (page, res.returncode, res.stderr)
    for section in ('NAME', 'SYNOPSIS' if PAGES[page] else 'DESCRIPTION', 'DESCRIPTION',
                    'SEE ALSO'):
        assert re.search(r'^%s$' % section, res.stdout, re.M), \
            '%s has no %s section' % (page, section)
    if PAGES[page]:
        assert re.search(r'^EXIT STATUS$', res.stdout, re.M), '%s: no EXIT STATUS' % page


@pytest.mark.parametrize('page', sorted(PAGES))
def test_man_page_names_the_project_version(page):
    with open(os.path.join(MAN_DIR, page)) as f:
        th = f.readline()
    assert th.startswith('.TH '), '%s: first line is not .TH: %r' % (page, th)
    assert '"pinfs %s"' % _project_version() in th, \
        '%s: .TH does not name pinfs %s: %r' % (page, _project_version(), th)


@pytest.mark.parametrize('page', sorted(p for p in PAGES if PAGES[p]))
def test_man_page_documents_every_help_option(page):
    program = PAGES[page]
    text = _page_text(page)
    longs, onames, shorts = _options(_help(program))
    assert longs or onames, '%s --help printed no options' % program
    missing = [o for o in sorted(longs) if not re.search(re.escape(o) + r'(?![\w-])', text)]
    missing += ['-o ' + o for o in sorted(onames)
                if not re.search(r'(?<![\w-])' + re.escape(o) + (r'' if o.endswith('=')
                                                                 else r'(?![\w=])'), text)]
    missing += [o for o in sorted(shorts) if not re.search(re.escape(o) + r'(?![\w-])', text)]
    assert not missing, '%s: options of `%s --help` missing from the page: %s' % (
        page, program, ', '.join(missing))


def test_pinfsctl_page_documents_every_command():
    text = _page_text('pinfsctl.8')
    commands = re.findall(r'^  ([a-z]+) ', _help('pinfsctl'), re.M)
    assert commands, 'pinfsctl --help lists no commands'
    missing = [c for c in commands if not re.search(r'^\.B pinfsctl %s\b' % c, text, re.M)]
    assert not missing, 'pinfsctl.8: commands missing from SYNOPSIS: %s' % ', '.join(missing)


def test_pinfs_page_refers_to_libfuse_pages():
    text = _page_text('pinfs.8')
    for ref in ('.BR fuse (8)', '.BR mount.fuse3 (8)'):
        assert ref in text, 'pinfs.8 does not refer to %s' % ref


def test_meson_install_puts_man_pages_in_sections():
    assert shutil.which('meson'), 'meson is not installed'
    dest = tempfile.mkdtemp(prefix='pinfs-man-destdir-')
    try:
        res = subprocess.run(['meson', 'install', '-C', BUILD, '--destdir', dest,
                              '--no-rebuild', '--quiet'], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=300)
        assert res.returncode == 0, 'meson install: ' + res.stdout
        found = {}
        for root, _, files in os.walk(dest):
            for name in files:
                found.setdefault(name, []).append(os.path.relpath(root, dest))
        for page in PAGES:
            section = page.rsplit('.', 1)[1]
            dirs = [d for d in found.get(page, []) if d.endswith('share/man/man' + section)]
            assert len(dirs) == 1, 'meson install put %s in %s, not share/man/man%s/' % (
                page, found.get(page), section)
    finally:
        shutil.rmtree(dest, ignore_errors=True)


# ---- section 3: every function libpinfs exports has its page ---------------

@pytest.fixture(scope='module')
def installed_tree():
    """`meson install` of the build into a temporary destdir."""
    assert shutil.which('meson'), 'meson is not installed'
    dest = tempfile.mkdtemp(prefix='pinfs-man3-destdir-')
    try:
        res = subprocess.run(['meson', 'install', '-C', BUILD, '--destdir', dest,
                              '--no-rebuild', '--quiet'], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=300)
        assert res.returncode == 0, 'meson install: ' + res.stdout
        yield dest
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def _installed(dest, name):
    """Every path under dest whose file name is `name`."""
    return [os.path.join(root, name) for root, _, files in os.walk(dest) if name in files]


def _exported_symbols(dest):
    """The global symbols the installed libpinfs.so.0 defines (nm -D
    --defined-only), without the version nodes (type A)."""
    assert shutil.which('nm'), 'nm is not installed (binutils)'
    libs = _installed(dest, 'libpinfs.so.0')
    assert len(libs) == 1, 'libpinfs.so.0 installed at %s' % libs
    res = subprocess.run(['nm', '-D', '--defined-only', libs[0]], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    syms = set()
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] != 'A':
            syms.add(parts[2].split('@')[0])
    return sorted(syms)


def test_every_exported_libpinfs_symbol_has_a_section_3_page(installed_tree):
    """`man 3 NAME` works for every global symbol of the installed library,
    today's and any a later change exports."""
    syms = _exported_symbols(installed_tree)
    assert 'pinfs_map_pin' in syms and 'pinfs_parse_size' in syms, syms
    man3 = [d for d in (os.path.dirname(p) for p in _installed(installed_tree, 'libpinfs.3'))
            if d.endswith('share/man/man3')]
    assert len(man3) == 1, 'libpinfs.3 not installed in share/man/man3: %s' % man3
    manpath = os.path.dirname(man3[0])
    env = dict(os.environ, MANWIDTH='80', MANPAGER='cat', PAGER='cat', LC_ALL='C.UTF-8')
    missing, bad = [], []
    for sym in syms:
        if not os.path.exists(os.path.join(man3[0], sym + '.3')):
            missing.append(sym)
            continue
        res = subprocess.run(['man', '--warnings', '-M', manpath, '3', sym],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env, timeout=60)
        name = re.search(r'^NAME\n(.*?)\n\n', res.stdout, re.M | re.S)
        if res.returncode != 0 or res.stderr or not name or \
                not re.search(r'\b%s\b' % re.escape(sym), name.group(1)):
            bad.append('%s: exit %d, stderr %r, NAME %r' % (
                sym, res.returncode, res.stderr, name.group(1) if name else None))
    assert not missing, 'exported by libpinfs without a section 3 page: %s' % ', '.join(missing)
    assert not bad, 'section 3 pages that do not render as their function:\n' + '\n'.join(bad)


def test_libpinfs_overview_page_lists_every_exported_function(installed_tree):
    text = _page_text('libpinfs.3')
    missing = [s for s in _exported_symbols(installed_tree)
               if not re.search(r'^\.BR %s \(3\)' % re.escape(s), text, re.M)]
    assert not missing, 'libpinfs.3 does not list: %s' % ', '.join(missing)
    for alias in ('libpinfs', 'pinfs_client'):
        res = subprocess.run(['man', '-w', '-M', os.path.dirname(os.path.dirname(
            _installed(installed_tree, 'libpinfs.3')[0])), '3', alias],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
        assert res.returncode == 0, 'man 3 %s: %s' % (alias, res.stderr)


def test_pinfs7_files_names_the_installed_header_directory():
    text = _page_text('pinfs.7')
    files = text[text.index('.SH FILES'):text.index('.SH SEE ALSO')]
    assert 'include/pinfs/abi.h' in files and 'include/pinfs/client.h' in files, files
    assert 'in the source tree (the one header' not in files
    assert '<pinfs/abi.h>' in files

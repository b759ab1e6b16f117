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
    'pinfs-dax.1': 'pinfs-dax',
    'pinfs.7': None,
}

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

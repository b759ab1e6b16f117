"""Operations, as users of ndctl, PMDK and sshfs expect them: `pinfsctl
status` (text and --json), --json for `pinfsctl stats` and `events`, and
messages that say what is wrong (issue 17, item 7)."""
import errno
import json
import os
import re
import time

import pytest

from pinfs_mount import TRANSPORT, _find_program, describe, mount_transport, run
from pinfs_util import write_file

pytestmark = [pytest.mark.needs_daemon]

PINFSCTL = _find_program('pinfsctl')


def ctl(*args, **kw):
    return run([PINFSCTL] + list(args), **kw)


def status_json(path):
    res = ctl('status', '--json', path)
    assert res.returncode == 0, describe(res)
    assert res.stderr == '', describe(res)
    return json.loads(res.stdout)


def expected_transport(mnt):
    """What serves the mount: the transport the run asked for, as the stats
    counter names it."""
    want = {'io_uring': 'io_uring', 'dev_fuse': '/dev/fuse'}.get(TRANSPORT)
    got = mount_transport(mnt.dir)[0]
    if want:
        assert got == want, (got, want)
    return got


# ---- status ---------------------------------------------------------------

def test_status_json_names_the_daemon_pool_transport_and_options(mnt):
    s = status_json(mnt.dir)
    assert s['daemon_pid'] == mnt.proc.pid
    assert s['mountpoint'] == os.path.realpath(mnt.dir)
    assert s['pool'] == os.path.realpath(mnt.pool)
    assert s['transport'] == expected_transport(mnt)
    assert s['options']['policy'] == 'fail'
    assert s['options']['busy_errno'] == 'EBUSY'
    assert s['options']['max_pinned'] == 1 << 30
    assert s['options']['wait_timeout'] == 30
    assert s['options']['pin_access'] == 'owner'
    assert s['read_only'] is False
    assert s['leases'] == 0 and s['holders'] == [] and s['holders_hidden'] == 0
    assert 'subtype' not in s['options']          # libfuse's default, not an option given


@pytest.mark.mount_options('policy=revoke', 'max_pinned=8m', 'lease_break_time=7')
def test_status_shows_the_options_given_and_the_policy_set_later(mnt):
    s = status_json(mnt.dir)
    assert s['options']['policy'] == 'revoke'
    assert s['options']['max_pinned'] == 8 << 20
    assert s['options']['lease_break_time'] == 7
    res = ctl('policy', mnt.dir, 'wait')
    assert res.returncode == 0, describe(res)
    assert status_json(mnt.dir)['options']['policy'] == 'wait'


def test_status_uptime_grows(mnt):
    first = status_json(mnt.dir)['uptime']
    assert first >= 0
    time.sleep(1.2)
    second = status_json(mnt.dir)['uptime']
    assert second >= first + 1.0, (first, second)


def test_status_lists_holders_with_lease_counts(mnt, holders):
    path = mnt.path('f')
    write_file(path, b'x' * (64 << 10))
    h = holders(path)
    h.pin(0, 4096)
    h.pin(8192, 8192)
    s = status_json(mnt.dir)
    assert s['leases'] == 2
    mine = [x for x in s['holders'] if x['pid'] == h.pid]
    assert len(mine) == 1, s['holders']
    assert mine[0]['leases'] == 2 and mine[0]['revoked'] == 0
    assert mine[0]['pinned'] == 4096 + 8192
    assert mine[0]['command'] == 'pinhold'
    assert mine[0]['uid'] == os.getuid()
    # the text form: one row per holder under a header
    res = ctl('status', mnt.dir)
    assert res.returncode == 0, describe(res)
    assert re.search(r'^daemon: +pid %d$' % mnt.proc.pid, res.stdout, re.M), res.stdout
    assert re.search(r'^ +%d +%d +2 +0 +12K pinhold$' % (h.pid, os.getuid()), res.stdout,
                     re.M), res.stdout


def test_status_text_names_pid_pool_transport_and_options(mnt):
    res = ctl('status', mnt.dir)
    assert res.returncode == 0, describe(res)
    out = res.stdout
    assert re.search(r'^daemon: +pid %d$' % mnt.proc.pid, out, re.M), out
    assert re.search(r'^pool: +%s \(' % re.escape(os.path.realpath(mnt.pool)), out, re.M), out
    assert re.search(r'^transport: +%s$' % re.escape(expected_transport(mnt)), out, re.M), out
    assert re.search(r'^options: +policy=fail,busy_errno=EBUSY,', out, re.M), out
    assert re.search(r'^uptime: +\d+ s \(since ', out, re.M), out


def test_status_of_a_file_of_the_mount_is_the_mount_status(mnt):
    write_file(mnt.path('g'), b'y')
    assert status_json(mnt.path('g'))['daemon_pid'] == mnt.proc.pid


def test_status_outside_pinfs_fails_saying_so(scratch):
    res = ctl('status', scratch)
    assert res.returncode == 1, describe(res)
    assert 'not a pinfs mount' in res.stderr, describe(res)


@pytest.mark.mount_options('allow_other')
def test_status_as_another_user_hides_other_users_holders(mnt, holders):
    """A user sees the daemon, pool and options, and only a count of root's
    holders, not their pids or commands."""
    import subprocess
    from pinfs_mount import user_runnable
    from pinfs_util import as_user
    path = mnt.path('f')
    write_file(path, b'x' * 8192)
    os.chmod(mnt.dir, 0o755)
    h = holders(path)
    h.pin(0, 4096)
    exe = user_runnable(PINFSCTL)

    def status():
        res = subprocess.run([exe, 'status', '--json', mnt.dir], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, timeout=30)
        return res.returncode, res.stdout, res.stderr

    rc, out, err = as_user(status, uid=1000, gid=1000, timeout=30)
    assert rc == 0, err
    s = json.loads(out)
    assert s['daemon_pid'] == mnt.proc.pid
    assert s['pool'] == os.path.realpath(mnt.pool)
    assert s['holders'] == [] and s['holders_hidden'] == 1 and s['leases'] == 0, s
    assert str(h.pid) not in out
    # root sees it
    assert [x['pid'] for x in status_json(mnt.dir)['holders']] == [h.pid]


# ---- stats and events --json ----------------------------------------------

def test_stats_json_mount_and_file_counters(mnt, holders):
    path = mnt.path('f')
    write_file(path, b'x' * 65536)
    h = holders(path)
    h.pin(0, 8192)
    res = ctl('stats', '--json', mnt.dir)
    assert res.returncode == 0, describe(res)
    m = json.loads(res.stdout)
    assert m['scope'] == 'mount' and m['path'] == mnt.dir
    assert m['pins'] == 1 and m['pinned'] == 2
    assert m['transport'] == expected_transport(mnt)
    assert 'ring_requests' in m and 'severed' in m
    res = ctl('stats', '--json', path)
    assert res.returncode == 0, describe(res)
    f = json.loads(res.stdout)
    assert f['scope'] == 'file' and f['pins'] == 1 and f['pinned'] == 2
    assert 'transport' not in f and 'ring_requests' not in f
    # the text form carries the same numbers
    text = ctl('stats', mnt.dir).stdout
    assert re.search(r'^pinned: +2$', text, re.M), text


def test_events_json_one_object_a_line(mnt, holders):
    path = mnt.path('f')
    write_file(path, b'x' * 65536)
    h = holders(path)
    lease = h.pin(4096, 8192)
    h.unpin(lease)
    res = ctl('events', '--json', '--count', '2', '--timeout', '10', mnt.dir)
    assert res.returncode == 0, describe(res)
    lines = res.stdout.splitlines()
    assert len(lines) == 2, res.stdout
    evs = [json.loads(line) for line in lines]
    assert [e['type'] for e in evs] == ['pin', 'unpin']
    ino = os.stat(path).st_ino
    for e in evs:
        assert e['lease'] == lease and e['pid'] == h.pid and e['command'] == 'pinhold'
        assert e['ino'] == ino and e['offset'] == 4096 and e['length'] == 8192
        assert e['err'] is None
        assert e['policy'] == 'default'      # no policy decides a pin or an unpin
        assert re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z', e['time'])
    assert evs[1]['seq'] == evs[0]['seq'] + 1


# ---- messages that say what is wrong --------------------------------------

def test_unpin_of_an_unknown_lease_says_no_such_lease(mnt):
    path = mnt.path('f')
    write_file(path, b'x' * 4096)
    res = ctl('unpin', path, '999')
    assert res.returncode == 1, describe(res)
    assert res.stdout == ''
    assert res.stderr == ("pinfsctl: unpin %s 999: no such lease (ENOENT): it ended already or "
                          "never was; 'pinfsctl pins %s' lists the mount's\n" % (path, path)), \
        describe(res)
    assert 'No such file or directory' not in res.stderr


@pytest.mark.mount_options('max_pinned=8k', 'max_pins=3')
def test_a_pin_over_max_pinned_names_the_limit(mnt):
    path = mnt.path('f')
    write_file(path, b'x' * 65536)
    want = ("the pin would exceed the mount's pin limits: per process max_pins=3, "
            "max_pinned=8K (pinfs -o; Cannot allocate memory)")
    res = ctl('pin', '--hold', '1', path, '0', '16k')
    assert res.returncode == 1, describe(res)
    assert res.stderr == 'pinfsctl: pin %s [0, +16384): %s\n' % (path, want), describe(res)
    res = run([_find_program('pinclient'), '--duration', '1', path, '0', '16k'])
    assert res.returncode == 1, describe(res)
    assert res.stderr == 'pinclient: pin %s [0, +16384): %s\n' % (path, want), describe(res)


@pytest.mark.mount_options('max_pinned_per_user=4k')
def test_a_pin_over_a_per_user_limit_names_it(mnt):
    path = mnt.path('f')
    write_file(path, b'x' * 65536)
    res = ctl('pin', '--hold', '1', path, '0', '8k')
    assert res.returncode == 1, describe(res)
    assert ('per user max_pins_per_user=unlimited, max_pinned_per_user=4K'
            in res.stderr), describe(res)


def test_pinclient_outside_pinfs_says_not_a_pinfs_mount(scratch):
    path = os.path.join(scratch, 'plain')
    write_file(path, b'x' * 8192)
    res = run([_find_program('pinclient'), '--duration', '1', path, '0', '4k'])
    assert res.returncode == 1, describe(res)
    assert res.stderr.startswith('pinclient: pin %s [0, +4096): not a pinfs mount' % path), \
        describe(res)


def test_mount_over_a_dead_mount_suggests_fusermount3_u(mnt, scratch):
    import signal
    from pinfs_mount import BIN, mkfs, mounted
    os.kill(mnt.proc.pid, signal.SIGKILL)
    mnt.proc.wait(timeout=30)
    mnt.proc = None                  # the fixture clears the dead mount away
    assert mounted(mnt.dir)
    with pytest.raises(OSError) as e:
        os.statvfs(mnt.dir)
    # ENOTCONN, or ECONNABORTED once the kernel aborted the connection
    assert e.value.errno in (errno.ENOTCONN, errno.ECONNABORTED), e.value
    pool2 = os.path.join(scratch, 'pool2')
    mkfs(pool2)
    res = run([BIN['pinfs'], pool2, mnt.dir])       # background, as users run it
    assert res.returncode == 1, describe(res)
    assert re.fullmatch(r'pinfs: %s: (%s|%s): the daemon that served it is gone; unmount '
                        r'it first: fusermount3 -u %s\n'
                        % (re.escape(mnt.dir), os.strerror(errno.ENOTCONN),
                           os.strerror(errno.ECONNABORTED), re.escape(mnt.dir)),
                        res.stderr), describe(res)
    assert mounted(mnt.dir)          # nothing was mounted over it


# ---- installed: the comparison as a program, bash completion ---------------

@pytest.fixture(scope='module')
def installed():
    """`meson install` of the build into a temporary destdir: (destdir, bindir)."""
    import shutil
    import tempfile
    from pinfs_mount import BUILD
    dest = tempfile.mkdtemp(prefix='pinfs-ops-destdir-', dir='/dev/shm')
    try:
        res = run(['meson', 'install', '-C', BUILD, '--destdir', dest, '--no-rebuild',
                   '--quiet'], timeout=300)
        assert res.returncode == 0, 'meson install: ' + describe(res)
        bins = [root for root, _, files in os.walk(dest) if 'pinfsctl' in files
                and root.endswith('/bin')]
        assert len(bins) == 1, bins
        yield dest, bins[0]
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def test_compare_policies_is_installed_as_a_program_with_help(installed):
    dest, bindir = installed
    prog = os.path.join(bindir, 'pinfs-compare-policies')
    assert os.access(prog, os.X_OK), os.listdir(bindir)
    env = {k: v for k, v in os.environ.items() if k != 'PINFS_BUILD'}
    res = run([prog, '--help'], env=env)
    assert res.returncode == 0, describe(res)
    assert res.stdout.startswith('usage: pinfs-compare-policies '), res.stdout
    for opt in ('--out', '--json', '--grace', '--policies', '--binaries'):
        assert opt in res.stdout, res.stdout
    res = run([prog, '--version'], env=env)
    assert res.returncode == 0 and re.fullmatch(
        r'pinfs-compare-policies \(pinfs\) \d+\.\d+\.\d+\n', res.stdout), describe(res)


def test_installed_compare_policies_runs_the_installed_programs(installed):
    """Not run from the tree and without PINFS_BUILD, it takes the programs
    installed beside it, not a build directory."""
    dest, bindir = installed
    env = {k: v for k, v in os.environ.items() if k != 'PINFS_BUILD'}
    res = run([os.path.join(bindir, 'pinfs-compare-policies'), '--binaries'], env=env,
              cwd='/')
    assert res.returncode == 0, describe(res)
    found = dict(line.split(' ', 1) for line in res.stdout.splitlines())
    assert sorted(found) == sorted(['pinfs', 'mkfs.pinfs', 'fsck.pinfs', 'pinclient',
                                    'pinfsctl']), res.stdout
    for name, path in found.items():
        assert path == os.path.join(bindir, name), (name, path)


def test_installed_compare_policies_has_a_man_page(installed):
    dest, _ = installed
    pages = [os.path.join(root, 'pinfs-compare-policies.1') for root, _, files in os.walk(dest)
             if 'pinfs-compare-policies.1' in files]
    assert len(pages) == 1 and pages[0].endswith('share/man/man1/pinfs-compare-policies.1'), \
        pages
    manpath = os.path.dirname(os.path.dirname(pages[0]))
    env = dict(os.environ, MANWIDTH='80', MANPAGER='cat', PAGER='cat', LC_ALL='C.UTF-8')
    res = run(['man', '--warnings', '-M', manpath, '1', 'pinfs-compare-policies'], env=env)
    assert res.returncode == 0 and res.stderr == '', describe(res)
    assert re.search(r'^NAME\n\s+pinfs-compare-policies\s+-\s', res.stdout, re.M), res.stdout


def _complete(script, func, words, cwd=None):
    """Sources `script` in bash, fills COMP_WORDS/COMP_CWORD as bash would for
    `words` (the last one is being completed) and calls `func`; COMPREPLY."""
    import shlex
    cmd = ('. %s || exit 9; COMP_WORDS=(%s); COMP_CWORD=%d; COMP_LINE=%s; COMP_POINT=${#COMP_LINE}; '
           '%s; printf "%%s\\n" "${COMPREPLY[@]}"'
           % (shlex.quote(script), ' '.join(shlex.quote(w) for w in words), len(words) - 1,
              shlex.quote(' '.join(words)), func))
    res = run(['bash', '--norc', '--noprofile', '-c', cmd], cwd=cwd)
    assert res.returncode == 0, describe(res)
    assert res.stderr == '', describe(res)
    return sorted(x for x in res.stdout.split('\n') if x)


def _completion_file(installed):
    dest, _ = installed
    files = [os.path.join(root, 'pinfs') for root, _, names in os.walk(dest)
             if root.endswith('share/bash-completion/completions') and 'pinfs' in names]
    assert len(files) == 1, files
    return files[0]


def test_bash_completion_is_installed_for_every_program(installed):
    d = os.path.dirname(_completion_file(installed))
    for name in ('pinfs', 'pinfsctl', 'pinclient', 'mkfs.pinfs', 'fsck.pinfs'):
        path = os.path.join(d, name)
        assert os.path.isfile(path), path     # bash-completion loads it by this name
        with open(path) as f:
            assert 'complete -F _%s %s' % (name.replace('.', '_'), name) in f.read()


def test_bash_completion_of_pinfsctl(installed, scratch):
    f = _completion_file(installed)
    assert _complete(f, '_pinfsctl', ['pinfsctl', 'st']) == ['stats', 'status']
    assert _complete(f, '_pinfsctl', ['pinfsctl', 'p']) == ['pin', 'pins', 'policy']
    assert _complete(f, '_pinfsctl', ['pinfsctl', 'policy', '/x', '']) == \
        ['break', 'default', 'fail', 'refuse_longterm', 'revoke', 'wait']
    assert _complete(f, '_pinfsctl', ['pinfsctl', 'status', '--']) == ['--json']
    assert _complete(f, '_pinfsctl', ['pinfsctl', 'events', '--']) == \
        ['--count', '--json', '--new', '--timeout']
    # paths: status takes the mount point (directories only)
    os.mkdir(os.path.join(scratch, 'mnt-a'))
    write_file(os.path.join(scratch, 'mnt-file'), b'x')
    assert _complete(f, '_pinfsctl', ['pinfsctl', 'status', 'mnt-'], cwd=scratch) == ['mnt-a']
    assert _complete(f, '_pinfsctl', ['pinfsctl', 'stats', 'mnt-'], cwd=scratch) == \
        ['mnt-a', 'mnt-file']


def test_bash_completion_of_pinfs_dax(installed, scratch):
    """pinfs-dax: its options, or a command, then the command's arguments
    (file names without bash-completion); installed under its own name so
    that bash-completion loads it (there was none)."""
    f = _completion_file(installed)
    link = os.path.join(os.path.dirname(f), 'pinfs-dax')
    assert os.path.islink(link) and os.readlink(link) == 'pinfs', link
    assert _complete(f, '_pinfs_dax', ['pinfs-dax', '--']) == ['--help', '--version']
    assert 'sha256sum' in _complete(f, '_pinfs_dax', ['pinfs-dax', 'sha256'])
    write_file(os.path.join(scratch, 'dax-file'), b'x')
    assert _complete(f, '_pinfs_dax', ['pinfs-dax', 'cat', 'dax-'], cwd=scratch) == \
        ['dax-file']


def test_bash_completion_of_pinfs_mount_options(installed):
    f = _completion_file(installed)
    assert _complete(f, '_pinfs', ['pinfs', '-o', 'pol']) == ['policy=']
    assert _complete(f, '_pinfs', ['pinfs', '-o', 'max_pins=4,policy=w']) == \
        ['max_pins=4,policy=wait']
    assert _complete(f, '_pinfs', ['pinfs', '-o', 'busy_errno=']) == \
        ['busy_errno=EBUSY', 'busy_errno=ETXTBSY']
    assert 'io_uring' in _complete(f, '_pinfs', ['pinfs', '-o', ''])


@pytest.mark.parametrize('prog,func', [('pinfs', '_pinfs'), ('pinfsctl', '_pinfsctl'),
                                       ('pinclient', '_pinclient'),
                                       ('mkfs.pinfs', '_mkfs_pinfs'),
                                       ('fsck.pinfs', '_fsck_pinfs')])
def test_bash_completion_offers_every_option_of_help(installed, prog, func):
    """What `PROG --help` lists (pinfs: its own -o options; pinfsctl: its
    commands and each command's options) is what completion offers."""
    f = _completion_file(installed)
    text = run([_find_program(prog), '--help']).stdout
    if prog == 'pinfs':
        text = text[:re.search(r'^\s*-h\s+--help\b', text, re.M).start()]
        want = set(re.findall(r'-o ([a-z_]+=?)', text))
        got = set(_complete(f, func, [prog, '-o', '']))
        assert want <= got, sorted(want - got)
        return
    if prog == 'pinfsctl':
        cmds = re.findall(r'^  ([a-z]+) ', text, re.M)
        assert sorted(cmds) == sorted(c for c in _complete(f, func, [prog, ''])
                                      if not c.startswith('-')), cmds
        for cmd in cmds:
            line = re.search(r'^  %s (.*)$' % cmd, text, re.M).group(1)
            want = set(re.findall(r'(--[a-z][a-z-]*)', line.split('  ')[0]))
            got = set(_complete(f, func, [prog, cmd, '--']))
            assert want <= got, (cmd, sorted(want - got))
        return
    want = set(re.findall(r'(?<![\w-])(--[a-z][a-z-]*)', text))
    got = set(_complete(f, func, [prog, '-']))
    assert want <= got, sorted(want - got)


# ---- pinfs(8): the systemd mount unit -------------------------------------

def _pinfs8_rendered():
    from pinfs_mount import REPO
    env = dict(os.environ, MANWIDTH='250', MANPAGER='cat', PAGER='cat', LC_ALL='C.UTF-8')
    res = run(['man', '-l', os.path.join(REPO, 'man', 'pinfs.8')], env=env)
    assert res.returncode == 0, describe(res)
    return res.stdout


def test_pinfs8_systemd_mount_unit_is_valid_and_its_options_mount(scratch, mountpoint):
    from pinfs_mount import PinfsMount, mkfs
    import shutil
    page = _pinfs8_rendered()
    m = re.search(r'^ *(\[Unit\]\n.*?WantedBy=\S+)\n', page, re.M | re.S)
    assert m, 'pinfs(8) has no systemd mount unit'
    unit = '\n'.join(line.strip() for line in m.group(1).splitlines()) + '\n'
    name = re.search(r'as\s+/etc/systemd/system/(\S+\.mount)', page).group(1)
    keys = dict(re.findall(r'^(\w+)=(.*)$', unit, re.M))
    assert keys['Type'] == 'fuse.pinfs'
    # systemd requires a mount unit to be named after its Where= path
    if shutil.which('systemd-escape'):
        esc = run(['systemd-escape', '--path', '--suffix=mount', keys['Where']])
        assert esc.stdout.strip() == name, (esc.stdout, name)
    if shutil.which('systemd-analyze'):
        d = os.path.join(scratch, 'units')
        os.mkdir(d)
        with open(os.path.join(d, name), 'w') as f:
            f.write(unit)
        res = run(['systemd-analyze', 'verify', os.path.join(d, name)])
        assert res.returncode == 0, describe(res)
    # the fstab line says the same
    fstab = re.search(r'^ *(%s +%s +fuse\.pinfs +(\S+) +0 +0)$'
                      % (re.escape(keys['What']), re.escape(keys['Where'])), page, re.M)
    assert fstab, 'no fstab line for the unit in pinfs(8)'
    assert fstab.group(2).startswith(keys['Options'] + ','), fstab.group(2)
    # what systemd runs (mount -t fuse.pinfs What Where -o Options) mounts
    opts = [o for o in keys['Options'].split(',') if not o.startswith('logfile=')]
    pool = os.path.join(scratch, 'pool')
    mkfs(pool)
    mnt = PinfsMount(pool, mountpoint, scratch, opts)
    mnt.start()
    try:
        s = status_json(mountpoint)
        assert s['daemon_pid'] == mnt.proc.pid
        for o in opts:
            k, _, v = o.partition('=')
            assert str(s['options'][k]) == (v or 'True'), (k, s['options'])
    finally:
        problems = mnt.stop()
    assert not problems, problems

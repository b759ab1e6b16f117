"""Every program behaves like its family: --help and --version, usage errors
in one line plus "Try 'NAME --help'." with the family's exit status, an
error names the bad argument, a path is said once, options are checked
before the pool is opened, and `pinfsctl pins` reads like lslocks (header,
--noheadings, --json)."""
import json
import os
import re
import signal
import subprocess

import pytest

from pinfs_mount import _find_program, run

PROGRAMS = ('pinfs', 'mkfs.pinfs', 'fsck.pinfs', 'pinfsctl', 'pinclient')
BIN = {name: _find_program(name) for name in PROGRAMS}
# exit status of a usage error, per family
USAGE_EXIT = {'pinfs': 1, 'mkfs.pinfs': 2, 'fsck.pinfs': 16, 'pinfsctl': 2, 'pinclient': 2}


def _bin(name):
    if not BIN[name]:
        pytest.skip('%s not built' % name)
    return BIN[name]


def _usage_error_shape(name, res, expected_exit):
    assert res.returncode == expected_exit, res
    assert res.stdout == '', res
    lines = res.stderr.splitlines()
    assert lines[-1] == "Try '%s --help'." % name, res.stderr
    assert len(lines) == 2, 'one line saying what is wrong, then Try: %r' % res.stderr
    return lines[0]


@pytest.mark.parametrize('name', PROGRAMS)
def test_help_exits_0_on_stdout_and_names_the_program_not_a_path(name):
    res = run([_bin(name), '--help'])
    assert res.returncode == 0, res
    assert re.search(r'\b%s\b' % re.escape(name), res.stdout), res.stdout
    assert BIN[name] not in res.stdout and '/' + name not in res.stdout, res.stdout
    assert 'xit' in res.stdout, 'the exit statuses are documented: %s' % res.stdout


@pytest.mark.parametrize('name', PROGRAMS)
def test_version_prints_name_package_and_version(name):
    res = run([_bin(name), '--version'])
    assert res.returncode == 0, res
    first = res.stdout.splitlines()[0]
    assert re.fullmatch(r'%s \(pinfs\) \d+\.\d+\.\d+' % re.escape(name), first), res.stdout
    if name == 'pinfs':
        assert 'FUSE library version' in res.stdout.splitlines()[1], res.stdout


@pytest.mark.parametrize('name', PROGRAMS)
def test_unknown_option_is_one_line_and_try_with_the_family_exit(name, scratch, mountpoint):
    args = {'pinfs': [os.path.join(scratch, 'pool'), mountpoint],
            'pinfsctl': ['pins', '/'],
            'pinclient': ['f', '0', '4k']}.get(name, ['x'])
    res = run([_bin(name), '--bogus-option'] + args)
    line = _usage_error_shape(name, res, USAGE_EXIT[name])
    assert 'bogus-option' in line, line


def test_mkfs_bad_size_names_the_argument(scratch):
    pool = os.path.join(scratch, 'pool')
    res = run([_bin('mkfs.pinfs'), '--size', '12Q', pool])
    line = _usage_error_shape('mkfs.pinfs', res, 2)
    assert line == "mkfs.pinfs: '12Q' is not a size", line
    assert not os.path.exists(pool)


@pytest.mark.parametrize('args', [[], ['a', 'b'], ['-y', '-n', 'x']])
def test_fsck_usage_errors_exit_16(args):
    _usage_error_shape('fsck.pinfs', run([_bin('fsck.pinfs')] + args), 16)


@pytest.mark.parametrize('name', ['pinfs', 'fsck.pinfs'])
def test_a_bad_pool_path_is_said_once(name, mountpoint):
    args = ['/etc/passwd', mountpoint] if name == 'pinfs' else ['/etc/passwd']
    res = run([_bin(name)] + args)
    assert res.returncode == (1 if name == 'pinfs' else 8), res
    assert res.stderr.count('/etc/passwd') == 1, res.stderr


@pytest.mark.parametrize('option, named', [
    ('policy=bogus', 'policy=bogus'),
    ('busy_errno=EPERM', 'busy_errno=EPERM'),
    ('wait_timeout=-1', 'wait_timeout'),
    ('lease_break_time=-1', 'lease_break_time'),
    ('lease_break_time=nan', 'lease_break_time'),
    ('short_pin_max=0', 'short_pin_max'),
    ('short_pin_max=1e300', 'short_pin_max'),      # overflowed the deadline
    ('short_pin_max=nan', 'short_pin_max'),
    ('max_pinned=12Q', '12Q'),
    ('max_pinned_per_user=3 GiB', '3 GiB'),
    ('max_pins=-5', "'-5' is not a count"),         # not 2^64 - 5: no limit at all
    ('max_pins=4k', "'4k' is not a count"),
    ('max_pins_per_user=lots', "'lots' is not a count"),
    ('writeback_interval=0', 'writeback_interval'),
    ('dirty_expire=-1', 'dirty_expire'),
    ('timeout=-1', 'timeout'),
    ('pin_access=everyone', 'pin_access=everyone'),
    ('pin_group=no-such-group-pinfs', 'no-such-group-pinfs'),
    ('no_such_option', 'no_such_option'),
])
def test_pinfs_options_are_checked_before_the_pool_is_opened(option, named, scratch,
                                                             mountpoint):
    missing = os.path.join(scratch, 'no-such-pool')
    res = run([_bin('pinfs'), '-o', option, missing, mountpoint])   # as users run it
    line = _usage_error_shape('pinfs', res, 1)
    assert named in line, line
    assert 'no-such-pool' not in res.stderr, 'the pool was opened first: %s' % res.stderr


def test_pinfs_help_lists_each_option_once():
    out = run([_bin('pinfs'), '--help']).stdout
    names = re.findall(r'^\s+(?:-\w\s+)?-o ([a-z_]+)', out, re.M)
    assert 'policy' in names and 'allow_other' in names, out
    dups = sorted({n for n in names if names.count(n) > 1})
    assert not dups, 'listed more than once: %s\n%s' % (dups, out)
    assert out.startswith('usage: pinfs '), out


def test_pinfsctl_pin_bad_size_names_the_argument(tmp_path):
    f = tmp_path / 'f'
    f.write_bytes(b'x')
    res = run([_bin('pinfsctl'), 'pin', str(f), 'abc', '4k'])
    line = _usage_error_shape('pinfsctl', res, 2)
    assert "'abc' is not a size" in line and 'OFFSET' in line, line
    res = run([_bin('pinfsctl'), 'pin', str(f), '0', 'lots'])
    line = _usage_error_shape('pinfsctl', res, 2)
    assert "'lots' is not a size" in line and 'LENGTH' in line, line


def test_pinfsctl_pin_past_the_end_of_file_says_so(mnt):
    path = mnt.path('short')
    with open(path, 'wb') as f:
        f.write(b'hi\n')
    res = run([_bin('pinfsctl'), 'pin', path, '0', '4k'])
    assert res.returncode == 1, res
    assert res.stderr.splitlines() == [
        "pinfsctl: pin %s [0, +4096): Invalid argument: the range ends past the file's 3 "
        "bytes" % path], res.stderr
    res = run([_bin('pinfsctl'), 'pin', '--hold', '0.01', path, '0', '3'])   # inside: pinned
    assert res.returncode == 0 and re.fullmatch(r'lease \d+\n', res.stdout), res


def test_pinclient_bad_size_names_the_argument():
    res = run([_bin('pinclient'), 'f', '4k', 'abc'])
    line = _usage_error_shape('pinclient', res, 2)
    assert "'abc' is not a size" in line, line


@pytest.fixture
def held_pin(mnt):
    """A file of the mount with [64 KiB, 192 KiB) pinned for writing,
    revocably, by a `pinfsctl pin --hold` in the background."""
    name = 'my file'                     # a space: escaped in the table
    path = os.path.join(mnt.dir, name)
    with open(path, 'wb') as f:
        f.write(os.urandom(1 << 20))
    p = subprocess.Popen([_bin('pinfsctl'), 'pin', '--write', '--revocable', '--hold', '60',
                          path, '64k', '128k'], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True)
    try:
        m = re.fullmatch(r'lease (\d+)\n', p.stdout.readline())
        assert m, p.stderr.read()
        yield path, int(m.group(1)), p.pid
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=10)
        assert p.returncode == 0, (p.returncode, out, err)


def test_pinfsctl_pins_table_has_a_header_and_exclusive_end(mnt, held_pin):
    path, lease, pid = held_pin
    res = run([_bin('pinfsctl'), 'pins', mnt.dir])
    assert res.returncode == 0, res
    lines = res.stdout.splitlines()
    assert lines[0].split() == ['LEASE', 'FILE', 'START', 'END', 'SIZE', 'PID', 'COMMAND',
                                'FLAGS', 'STATE', 'AGE'], res.stdout
    rows = [ln.split() for ln in lines[1:]]
    assert len(rows) == 1, res.stdout
    row = rows[0]
    assert row[0] == str(lease) and row[1] == path.replace(' ', '\\040'), row
    assert row[2:5] == [str(64 << 10), str(192 << 10), '128K'], row
    assert row[5:9] == [str(pid), 'pinfsctl', 'W,revocable', 'active'], row
    assert int(row[9]) >= 0, row

    res = run([_bin('pinfsctl'), 'pins', '--noheadings', mnt.dir])
    assert res.returncode == 0, res
    assert [ln.split() for ln in res.stdout.splitlines()] == rows, res.stdout


def test_pinfsctl_pins_json_matches_the_pin(mnt, held_pin):
    path, lease, pid = held_pin
    res = run([_bin('pinfsctl'), 'pins', '--json', mnt.dir])
    assert res.returncode == 0, res
    doc = json.loads(res.stdout)
    assert doc['pins'] == [{'lease': lease, 'path': path, 'start': 64 << 10,
                            'end': 192 << 10, 'size': 128 << 10, 'pid': pid,
                            'command': 'pinfsctl', 'flags': ['write', 'revocable'],
                            'state': 'active', 'age': doc['pins'][0]['age']}], doc
    assert isinstance(doc['pins'][0]['age'], int)


def test_pinfsctl_pins_json_of_no_pins_is_an_empty_list(mnt):
    res = run([_bin('pinfsctl'), 'pins', '--json', mnt.dir])
    assert res.returncode == 0, res
    assert json.loads(res.stdout) == {'pins': []}
    res = run([_bin('pinfsctl'), 'pins', mnt.dir])
    assert res.stdout.split() == ['LEASE', 'FILE', 'START', 'END', 'SIZE', 'PID', 'COMMAND',
                                  'FLAGS', 'STATE', 'AGE'], res.stdout


@pytest.mark.parametrize('order', [('--ops', '--json'), ('--json', '--ops')])
def test_pinfsctl_stats_ops_json_is_one_object_with_the_text_counts(mnt, order):
    """pinfsctl(8): stats --ops with --json prints one JSON object (it was
    refused as "unknown option '--ops'", exit 2, in either order)."""
    with open(mnt.path('f'), 'wb') as f:
        f.write(b'x' * 8192)
    res = run([_bin('pinfsctl'), 'stats'] + list(order) + [mnt.dir])
    assert res.returncode == 0, res
    doc = json.loads(res.stdout)
    assert doc['scope'] == 'ops' and doc['path'] == mnt.dir, doc
    assert doc['WRITE'] >= 1 and doc['CREATE'] == 1, doc
    counts = {k: v for k, v in doc.items() if k not in ('scope', 'path', 'total')}
    assert all(isinstance(v, int) and v > 0 for v in counts.values()), doc
    assert doc['total'] == sum(counts.values()), doc
    # the text form of the same command still works, and ends in total:
    res = run([_bin('pinfsctl'), 'stats', '--ops', mnt.dir])
    assert res.returncode == 0, res
    assert res.stdout.splitlines()[-1].split()[0] == 'total:', res.stdout


def test_pinfsctl_scrub_of_a_pool_without_checksums_says_so(mnt):
    """pinfsctl scrub on a pool made without --checksums: exit 1 and one
    line naming the reason (it said "Operation not supported")."""
    with open(mnt.path('f'), 'wb') as f:
        f.write(b'y' * 4096)
    for path in (mnt.dir, mnt.path('f')):
        res = run([_bin('pinfsctl'), 'scrub', path])
        assert res.returncode == 1, res
        assert res.stdout == '', res
        assert res.stderr == ('pinfsctl: scrub %s: the pool has no block checksums (it was '
                              'made without mkfs.pinfs --checksums): nothing to verify\n'
                              % path), res


def test_pinfsctl_pin_whose_lease_root_unpinned_says_so_at_its_end(mnt):
    """Root's `pinfsctl unpin FILE LEASE` ends another process's lease; the
    holder (`pinfsctl pin --hold`) is not signalled, and at its end it said
    only "pinfsctl: unpin N: No such file or directory"."""
    path = mnt.path('held')
    with open(path, 'wb') as f:
        f.write(b'z' * 8192)
    p = subprocess.Popen([_bin('pinfsctl'), 'pin', '--hold', '60', path, '0', '4k'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True)
    try:
        m = re.fullmatch(r'lease (\d+)\n', p.stdout.readline())
        assert m, p.stderr.read()
        lease = int(m.group(1))
        res = run([_bin('pinfsctl'), 'unpin', path, str(lease)])
        assert res.returncode == 0, res
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=10)
    assert p.returncode == 1, (p.returncode, out, err)
    assert err == ('pinfsctl: pin: lease %d was already ended by another process '
                   '(pinfsctl unpin)\n' % lease), err

"""The project's random-operation tester (tests/fsx/fsx.c) against a live mount.

fsx applies random writes, truncates, hole punches, zero ranges, renames,
exchanges, mmap stores, fsyncs and reads to a few files and checks every byte
against an in-memory model. Every few thousand operations it asks for a
remount; this test serves that request through a pair of FIFOs, so the
remount goes through the same harness (unmount, daemon exit 0, fsck clean,
mount again) as every other test.
"""

import os
import subprocess
import threading

import pytest

from pinfs_mount import BUILD, _find_program

FSX = _find_program('fsx')
OPS = int(os.environ.get('PINFS_FSX_OPS', '50000'))


def _serve_remounts(mnt, req, ack, errors):
    while True:
        with open(req) as f:
            line = f.read().strip()
        if line != 'remount':
            return
        try:
            mnt.remount()
            reply = 'ok'
        except BaseException as exc:  # pytest.fail raises a BaseException
            errors.append(str(exc))
            reply = 'fail'
        with open(ack, 'w') as f:
            f.write(reply + '\n')


@pytest.mark.needs_daemon
@pytest.mark.pool_size('512M')
@pytest.mark.watchdog(900)
@pytest.mark.skipif(FSX is None, reason='fsx not built under %s' % BUILD)
def test_fsx_random_operations_match_the_model_across_remounts(mnt, scratch):
    req = os.path.join(scratch, 'remount.req')
    ack = os.path.join(scratch, 'remount.ack')
    os.mkfifo(req)
    os.mkfifo(ack)
    errors = []
    server = threading.Thread(target=_serve_remounts, args=(mnt, req, ack, errors), daemon=True)
    server.start()
    cmd = ("echo remount > '%s' && read r < '%s' && test \"$r\" = ok" % (req, ack))
    workdir = mnt.path('fsx')
    os.mkdir(workdir)
    try:
        res = subprocess.run([FSX, '-N', str(OPS), '-S', '12345', '-R', '10000', '-c', cmd,
                              '-l', '2m', workdir], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True, timeout=840)
    finally:
        with open(req, 'w') as f:
            f.write('stop\n')
        server.join(timeout=30)
    assert not errors, errors
    assert res.returncode == 0, res.stdout[-4000:]
    assert ': ok' in res.stdout.splitlines()[-1]

#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A failing backing store under a served device, with real components (issue 34).

The CBD image sits behind `nbdkit --filter=error file` (writes fail with EIO while a trigger
file exists), exported as a file by nbdfuse; `cbd serve` serves that file; a libnbd client
keeps a model of what was acknowledged. Checks: once a commit fails, no write, trim or zero is
acknowledged (EIO at once); every acknowledged block still reads back; a stop (SIGTERM) that
could not store them says so and exits non-zero; the device is left DIRTY, and once the disk
works again fsck.cbd -fy repairs it and everything flushed before the failure reads back.

usage: fault_test.py BIN_DIR      (prints 'N passed, N failed')
"""
import os
import signal
import subprocess
import sys
import tempfile
import time

import nbd

BIN = sys.argv[1]
BS = 65536
passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print('FAIL:', what)


def block(i):
    return bytes((i * 7 + j // 1000) % 251 for j in range(BS))


def wait_for(path, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(path):
            return True
        time.sleep(0.05)
    return False


def main():
    work = tempfile.mkdtemp(prefix='cbd-fault-')
    back, trig, mnt = f'{work}/back.img', f'{work}/trig', f'{work}/mnt'
    bsock, csock = f'{work}/b.sock', f'{work}/c.sock'
    os.mkdir(mnt)
    subprocess.run(['truncate', '-s', '64M', back], check=True)
    subprocess.run([f'{BIN}/mkfs.cbd', '-q', back], check=True)
    procs = []
    try:
        procs.append(subprocess.Popen(['nbdkit', '-f', '-U', bsock, '--filter=error', 'file', back,
                                       'error-pwrite=EIO', 'error-pwrite-rate=100%', f'error-pwrite-file={trig}']))
        assert wait_for(bsock), 'backing nbdkit did not start'
        procs.append(subprocess.Popen(['nbdfuse', mnt, f'nbd+unix:///?socket={bsock}']))
        assert wait_for(f'{mnt}/nbd'), 'nbdfuse did not start'
        dev = f'{mnt}/nbd'
        serve = subprocess.Popen([f'{BIN}/cbd', 'serve', '--socket', csock, dev],
                                 stderr=subprocess.PIPE, text=True)
        assert wait_for(csock), 'cbd serve did not start'
        time.sleep(0.3)
        h = nbd.NBD()
        h.connect_uri(f'nbd+unix:///?socket={csock}')
        for i in range(8):
            h.pwrite(block(i), i * BS)
        h.flush()                                 # stored and synced
        open(trig, 'w').close()                   # the disk fails from now on
        acked = []
        for i in range(8, 24):
            try:
                h.pwrite(block(i), i * BS)
                acked.append(i)
            except nbd.Error:
                break
        try:
            h.flush()
            flush_ok = True
        except nbd.Error:
            flush_ok = False
        check(not flush_ok, 'a flush whose commit failed reported success')
        refused = 0
        for op in ('write', 'trim', 'zero'):
            try:
                if op == 'write':
                    h.pwrite(block(40), 40 * BS)
                elif op == 'trim':
                    h.trim(BS, 2 * BS)
                else:
                    h.zero(BS, 3 * BS)
            except nbd.Error as e:
                refused += e.errno == 'EIO'
        check(refused == 3, f'after the failure {refused} of write, trim, zero failed with EIO')
        wrong = [i for i in list(range(8)) + acked if h.pread(BS, i * BS) != block(i)]
        check(not wrong, f'acknowledged blocks that do not read back: {wrong}')
        h.shutdown()
        serve.send_signal(signal.SIGTERM)
        _, err = serve.communicate(timeout=30)
        check(serve.returncode != 0, f'a stop that could not store acknowledged writes exited {serve.returncode}')
        check('acknowledged block' in err and 'not stored' in err, f'the stop did not say what was lost: {err[-300:]}')
        check('reads go on' in err, f'no read-only line in the log: {err[-300:]}')
        os.unlink(trig)                           # the disk works again
        info = subprocess.run([f'{BIN}/cbd', 'info', dev], capture_output=True, text=True)
        check('DIRTY' in info.stdout, f'the device is not DIRTY after the failure: {info.stdout}')
        fix = subprocess.run([f'{BIN}/fsck.cbd', '-fy', '--lost-found', f'{work}/lf', dev], capture_output=True, text=True)
        again = subprocess.run([f'{BIN}/fsck.cbd', '-fn', dev], capture_output=True, text=True)
        check(fix.returncode in (0, 1) and again.returncode == 0, f'fsck: {fix.stdout[-300:]} / {again.stdout[-300:]}')
        for i in range(8):
            got = subprocess.run([f'{BIN}/cbd', 'read', dev, '-o', str(i * BS), '-l', str(BS)], capture_output=True).stdout
            check(got == block(i), f'flushed block {i} lost')
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(['rm', '-rf', work])
    print(f'{passed} passed, {failed} failed')
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()

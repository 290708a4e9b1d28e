#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A failing backing store under a served device, with real components (issue 34).

The CBD image sits behind nbdkit's file plugin with fault filters, exported as a file by
nbdfuse; `cbd serve` serves that file; a libnbd client keeps a model of what was acknowledged
and what was flushed. Three disks:
  pwrite:   nbdkit's error filter, writes fail with EIO while a trigger file exists;
  flush:    our own filter (flushfault.c, built here: nbdkit 1.32's error filter cannot fail
            a flush), flushes and FUA writes fail while a trigger file exists;
  powercut: nbdkit's cache filter in writeback mode, then the backing nbdkit killed with -9:
            what the disk had not flushed is gone, as in a power cut.
Checks: once a commit fails, no write, trim or zero is acknowledged (EIO at once) and flushes
keep failing; every acknowledged block still reads back; a stop (SIGTERM) that could not store
them says so and exits non-zero; the device is left DIRTY, and once the disk works again
fsck.cbd -fy repairs it and everything flushed before the failure reads back (after the power
cut: every block is old or new).

usage: fault_test.py BIN_DIR      (prints 'N passed, N failed')
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import nbd

import checks

BIN = sys.argv[1]
BS = 65536
check = checks.check


def block(i):
    return bytes((i * 7 + j // 1000) % 251 for j in range(BS))


def appears(path):
    return checks.wait_for(lambda: os.path.exists(path), timeout=10)


def build_filter(work):
    """flushfault.so from flushfault.c beside this script, with the C compiler there is."""
    cc = shutil.which('cc') or shutil.which('clang') or shutil.which('gcc')
    out = f'{work}/flushfault.so'
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'flushfault.c')
    subprocess.run([cc, '-shared', '-fPIC', '-o', out, src], check=True)
    return out


class Stack:
    """back.img behind nbdkit (with `filters`), nbdfuse, and cbd serve on that file."""

    def __init__(self, work, name, filters, serve_args=(), serve=True):
        self.work, self.procs = work, []
        try:
            self.start(name, filters, serve_args, serve)
        except BaseException:
            self.close()  # a failed start leaves no server or mount behind (they hold our pipes)
            raise

    def start(self, name, filters, serve_args, serve):
        work = self.work
        self.back, self.trig = f'{work}/{name}.img', f'{work}/{name}.trig'
        self.mnt, self.bsock, self.csock = f'{work}/{name}.mnt', f'{work}/{name}.b.sock', f'{work}/{name}.c.sock'
        os.mkdir(self.mnt)
        subprocess.run(['truncate', '-s', '64M', self.back], check=True)
        subprocess.run([f'{BIN}/mkfs.cbd', '-q', self.back], check=True)
        self.backing = subprocess.Popen(['nbdkit', '-f', '-U', self.bsock, *filters, 'file', self.back,
                                         *[a.replace('TRIGGER', self.trig) for a in filters_args(filters)]])
        self.procs.append(self.backing)
        assert appears(self.bsock), 'backing nbdkit did not start'
        self.procs.append(subprocess.Popen(['nbdfuse', self.mnt, f'nbd+unix:///?socket={self.bsock}']))
        assert appears(f'{self.mnt}/nbd'), 'nbdfuse did not start'
        self.dev = f'{self.mnt}/nbd'
        if not serve:
            return
        args, env = checks.sanitized([f'{BIN}/cbd', 'serve', '--socket', self.csock, *serve_args, self.dev])
        self.serve = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
        self.procs.append(self.serve)
        if not appears(self.csock):
            self.serve.kill()
            raise AssertionError('cbd serve did not start: ' + self.serve.communicate()[1][-300:])
        time.sleep(0.3)
        self.h = nbd.NBD()
        self.h.connect_uri(f'nbd+unix:///?socket={self.csock}')

    def stop_serve(self):
        """SIGTERM to cbd serve: (exit status, its log)."""
        self.h.shutdown()
        self.serve.send_signal(signal.SIGTERM)
        _, err = self.serve.communicate(timeout=60)
        return self.serve.returncode, err

    def close(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        # nbdfuse unmounts at SIGTERM; if it died with its server, the mount may stay.
        fusermount = shutil.which('fusermount3') or shutil.which('fusermount')
        with open('/proc/mounts') as f:     # a dead FUSE mount fails stat: ismount says no
            mounted = any(line.split()[1] == self.mnt for line in f)
        if mounted:
            subprocess.run([fusermount, '-u', '-q', self.mnt] if fusermount else ['umount', '-l', self.mnt],
                           capture_output=True)


FILTER_ARGS = {}


def filters_args(filters):
    return [a for f in filters for a in FILTER_ARGS.get(f, [])]


def repaired_keeps(dev, flushed, what, lost_found):
    """fsck.cbd -fy on `dev` (the disk works again), a second run clean, and every flushed
    block as the model says."""
    fix = subprocess.run([f'{BIN}/fsck.cbd', '-fy', '--lost-found', lost_found, dev], capture_output=True, text=True)
    again = subprocess.run([f'{BIN}/fsck.cbd', '-fn', dev], capture_output=True, text=True)
    check(fix.returncode in (0, 1) and again.returncode == 0, f'{what}: fsck: {fix.stdout[-300:]} / {again.stdout[-300:]}')
    for i in flushed:
        got = subprocess.run([f'{BIN}/cbd', 'read', dev, '-o', str(i * BS), '-l', str(BS)],
                             capture_output=True).stdout
        check(got == block(i), f'{what}: flushed block {i} lost')


def failing_disk(work, name, filters):
    """The disk fails under acknowledged writes: read-only, nothing lost that was acknowledged
    while the server runs, a lossy stop exits non-zero, fsck keeps what was flushed."""
    st = Stack(work, name, filters)
    try:
        h = st.h
        for i in range(8):
            h.pwrite(block(i), i * BS)
        h.flush()                                 # stored and synced
        open(st.trig, 'w').close()                # the disk fails from now on
        acked = []
        for i in range(8, 24):
            try:
                h.pwrite(block(i), i * BS)
                acked.append(i)
            except nbd.Error:
                break
        flushes_ok = 0
        for _ in range(2):
            try:
                h.flush()
                flushes_ok += 1
            except nbd.Error:
                pass
        check(flushes_ok == 0, f'{name}: {flushes_ok} flushes reported success after the commit failed')
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
        check(refused == 3, f'{name}: after the failure {refused} of write, trim, zero failed with EIO')
        wrong = [i for i in list(range(8)) + acked if h.pread(BS, i * BS) != block(i)]
        check(not wrong, f'{name}: acknowledged blocks that do not read back: {wrong}')
        code, err = st.stop_serve()
        check(code != 0, f'{name}: a stop that could not store acknowledged writes exited {code}')
        check('acknowledged block' in err and 'not stored' in err, f'{name}: the stop did not say what was lost: {err[-300:]}')
        check('reads go on' in err, f'{name}: no read-only line in the log: {err[-300:]}')
        os.unlink(st.trig)                        # the disk works again
        info = subprocess.run([f'{BIN}/cbd', 'info', st.dev], capture_output=True, text=True)
        check('DIRTY' in info.stdout, f'{name}: the device is not DIRTY after the failure: {info.stdout}')
        # Why it stopped outlives the server (the runtime folder's note): info and fsck say it.
        check('stopped_by' in info.stdout and 'I/O error' in info.stdout, f'{name}: info does not say why: {info.stdout}')
        n = subprocess.run([f'{BIN}/fsck.cbd', '-n', st.dev], capture_output=True, text=True)
        check('DIRTY' in n.stdout and 'I/O error' in n.stdout, f'{name}: fsck -n does not say why: {n.stdout}')
        repaired_keeps(st.dev, range(8), name, f'{work}/{name}.lf')
        info = subprocess.run([f'{BIN}/cbd', 'info', st.dev], capture_output=True, text=True)
        check('clean' in info.stdout and 'stopped_by' not in info.stdout, f'{name}: after the repair: {info.stdout}')
    finally:
        st.close()


def offline_tools(work, filters):
    """Offline tools on a failing disk: one line, exit 1 (fsck: 8 with 4, nothing corrected),
    and a device that the next fsck.cbd -y repairs once the disk works again."""
    st = Stack(work, 'offline', filters, serve=False)
    try:
        data = f'{work}/data'
        with open(data, 'wb') as f:
            f.write(b''.join(block(i) for i in range(8)))
        r = subprocess.run([f'{BIN}/cbd', 'write', st.dev], stdin=open(data, 'rb'), capture_output=True, text=True)
        check(r.returncode == 0, f'offline: cbd write on a working disk: {r.stderr}')
        open(st.trig, 'w').close()
        for args, want in ((['cbd', 'write', st.dev, '-o', str(16 * BS)], 1),
                           (['cbd', 'discard', st.dev, '-o', '0', '-l', str(BS)], 1),
                           (['fsck.cbd', '-fy', '--lost-found', f'{work}/offline.lf', st.dev], None)):
            r = subprocess.run([f'{BIN}/{args[0]}', *args[1:]], stdin=open(data, 'rb'), capture_output=True, text=True)
            lines = [line for line in r.stderr.splitlines() if line.strip()]
            ok = r.returncode == want if want is not None else r.returncode in (0, 8, 12)
            check(ok and (r.returncode == 0 or (len(lines) == 1 and st.dev in lines[0])),
                  f'offline: {args[0]} {args[1]} on a failing disk: exit {r.returncode}, {lines}')
        os.unlink(st.trig)
        repaired_keeps(st.dev, range(8), 'offline', f'{work}/offline.lf2')
    finally:
        st.close()


def power_cut(work):
    """The backing store loses power (its writeback cache dies with it) while cbd serve holds
    acknowledged, unflushed writes: the stop says they were not stored and exits non-zero;
    after fsck every flushed block is there and every other block is old or new."""
    st = Stack(work, 'powercut', ['--filter=cache'], serve_args=['--cache', '1M'])
    unflushed = list(range(16, 40))
    try:
        h = st.h
        for i in range(16):
            h.pwrite(block(i), i * BS)
        h.flush()
        for i in unflushed:                       # 1 MiB cache: commits run meanwhile
            h.pwrite(block(i), i * BS)
        st.backing.send_signal(signal.SIGKILL)    # the power cut
        st.backing.wait()
        code, err = st.stop_serve()
        check(code != 0, f'powercut: a stop onto a dead disk exited {code}: {err[-300:]}')
    finally:
        st.close()
    repaired_keeps(st.back, range(16), 'powercut', f'{work}/powercut.lf')
    torn = []
    for i in unflushed:
        got = subprocess.run([f'{BIN}/cbd', 'read', st.back, '-o', str(i * BS), '-l', str(BS)],
                             capture_output=True).stdout
        if got not in (block(i), bytes(BS)):
            torn.append(i)
    check(not torn, f'powercut: unflushed blocks neither old nor new: {torn}')


def main():
    work = tempfile.mkdtemp(prefix='cbd-fault-')
    try:
        flushfault = build_filter(work)
        FILTER_ARGS['--filter=error'] = ['error-pwrite=EIO', 'error-pwrite-rate=100%', 'error-pwrite-file=TRIGGER']
        FILTER_ARGS[f'--filter={flushfault}'] = ['flushfault-file=TRIGGER']
        failing_disk(work, 'pwrite', ['--filter=error'])
        failing_disk(work, 'flush', [f'--filter={flushfault}'])
        power_cut(work)
        offline_tools(work, ['--filter=error'])
    finally:
        subprocess.run(['rm', '-rf', work])
    checks.finish()


if __name__ == '__main__':
    checks.run(main)

#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""cbd serve as an operator runs it (issue 34): a process to find, watch and stop.

Started as the README shows (in the foreground, its pid is the serving process): cbd info names
that pid and the URI; ENOSPC refusals and the low-water warning reach its stderr, the warning as
a warning; SIGTERM leaves the device clean, removes the socket and exits 0. Killed with -9 after
a flush: the flushed data survives fsck.cbd, and a restart on the same socket replaces the stale
socket file. A live socket is refused. --fork returns once the socket listens; --pid-file names
the serving process, which cbd info names too; both files go at the stop. Socket activation
(systemd-socket-activate, as cbd-serve@.socket): the server serves on the passed socket.

usage: service_test.py BIN_DIR      (prints 'N passed, N failed')
"""
import json
import os
import signal
import subprocess
import sys
import tempfile

import nbd

import checks

BIN = sys.argv[1]
BS = 65536
check = checks.check


def tool(*args):
    return subprocess.run([f'{BIN}/{args[0]}', *args[1:]], capture_output=True, text=True)


wait_for = checks.wait_for


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (ours, not yet reaped) is gone for this purpose.
    with open(f'/proc/{pid}/stat') as f:
        return f.read().split(') ')[1][0] != 'Z'


def info(dev):
    r = tool('cbd', 'info', '--json', dev)
    try:
        return json.loads(r.stdout)
    except ValueError:
        return {'error': r.stdout + r.stderr}


def listening(sock):
    try:
        connect(sock).shutdown()
        return True
    except nbd.Error:
        return False


def connect(sock):
    h = nbd.NBD()
    h.connect_unix(sock)
    return h


def serve(dev, sock, err, *extra):
    """cbd serve in the foreground, as `cbd serve ... &` starts it; waits for the socket."""
    p = subprocess.Popen([f'{BIN}/cbd', 'serve', '--socket', sock, *extra, dev], stderr=err)
    # The socket first: nbdkit binds it once the plugin holds the device's lock (a cbd info
    # that held the lock for a moment while the server started would make the start fail).
    check(wait_for(lambda: listening(sock)) and wait_for(lambda: info(dev).get('server_pid') == p.pid),
          f'server {p.pid} listens on {sock} and cbd info names it')
    return p


def main():
    work = tempfile.mkdtemp(prefix='cbd-service-')
    dev, sock = f'{work}/d.cbd', f'{work}/s.sock'
    subprocess.run([f'{BIN}/mkfs.cbd', '-q', dev, '8M', '-L', '64M'], check=True)
    with open(f'{work}/err1', 'w') as err:
        p = serve(dev, sock, err)
        i = info(dev)
        check(i.get('uri') == f'nbd+unix:///?socket={sock}', f'cbd info gives the URI: {i}')
        check(str(p.pid) in i.get('state', ''), f'the state names the serving process: {i}')
        # Fill the device with data that does not compress: the last writes fail with ENOSPC.
        h = connect(sock)
        refused = 0
        for n in range(0, 64 << 20, BS):
            try:
                h.pwrite(os.urandom(BS), n)
            except nbd.Error:
                refused += 1
                if refused > 3:
                    break
        check(refused > 0, 'the device filled up')
        h.shutdown()
        p.send_signal(signal.SIGTERM)
        code = p.wait(timeout=60)
    log = open(f'{work}/err1').read()
    check(code == 0, f'a clean SIGTERM stop exits 0, not {code}: {log[-400:]}')
    check('no space left on the device' in log, f'ENOSPC refusals reach stderr: {log[-500:]}')
    warning = [line for line in log.splitlines() if 'free space is below' in line]
    check(len(warning) == 1 and 'warning:' in warning[0] and 'error' not in warning[0],
          f'the low-water warning reads as a warning: {warning}')
    check(not os.path.exists(sock), 'the socket is removed at a clean stop')
    check(tool('fsck.cbd', '-fn', dev).returncode == 0, 'the device is clean after the stop')
    check('server_pid' not in info(dev), 'cbd info opens the device itself once the server is gone')

    # Killed with -9 after a flush: the socket file stays; the flushed block survives fsck; a
    # restart on the same socket works.
    with open(f'{work}/err2', 'w') as err:
        p = serve(dev, sock, err)
        h = connect(sock)
        h.trim(64 << 20, 0)
        h.pwrite(b'\x5a' * BS, 3 * BS)
        h.flush()
        h.pwrite(b'\x6b' * BS, 5 * BS)      # not flushed: may be lost, must not corrupt
        p.send_signal(signal.SIGKILL)
        p.wait()
    check(os.path.exists(sock), 'a killed server leaves its socket file')
    fsck = tool('fsck.cbd', '-fy', dev)
    check(fsck.returncode in (0, 1), f'fsck.cbd -fy after kill -9: {fsck.returncode} {fsck.stdout}')
    with open(f'{work}/err3', 'w') as err:
        p = serve(dev, sock, err)
        h = connect(sock)
        check(h.pread(BS, 3 * BS) == b'\x5a' * BS, 'the flushed block survives kill -9')
        check(h.pread(BS, 5 * BS) in (b'\x6b' * BS, bytes(BS)), 'the unflushed block is old or new')
        # A second server on the live socket is refused, the first goes on.
        other = f'{work}/o.cbd'
        subprocess.run([f'{BIN}/mkfs.cbd', '-q', other, '8M'], check=True)
        r = tool('cbd', 'serve', '--socket', sock, other)
        check(r.returncode != 0 and 'listening' in r.stderr, f'a live socket is refused: {r.stderr}')
        check(h.pread(BS, 3 * BS) == b'\x5a' * BS, 'the first server still serves')
        h.shutdown()
        p.send_signal(signal.SIGTERM)
        check(p.wait(timeout=60) == 0, 'the restarted server stops cleanly')

    # --fork: back once the socket listens; the pid file and cbd info name the serving process.
    pidfile = f'{work}/serve.pid'
    r = subprocess.run([f'{BIN}/cbd', 'serve', '--fork', '--pid-file', pidfile, '--socket', sock, dev],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0 and os.path.exists(sock), f'--fork returns with the socket listening: {r.stderr}')
    # nbdkit's parent returns once the socket listens; its child writes the pid file just after.
    wait_for(lambda: os.path.exists(pidfile) and open(pidfile).read().strip() != '', timeout=10)
    pid = int(open(pidfile).read().split()[0]) if os.path.exists(pidfile) else -1
    check(pid > 0 and alive(pid), f'the pid file names a running process: {pid}')
    check(info(dev).get('server_pid') == pid, f'cbd info names the forked server: {info(dev)}')
    h = connect(sock)
    check(h.pread(BS, 3 * BS) == b'\x5a' * BS, 'the forked server serves')
    h.shutdown()
    if pid > 0:
        os.kill(pid, signal.SIGTERM)
    check(wait_for(lambda: not alive(pid), 60), 'the forked server stops on SIGTERM')
    check(not os.path.exists(sock) and not os.path.exists(pidfile), 'its socket and pid file are removed')
    check(tool('fsck.cbd', '-fn', dev).returncode == 0, 'the device is clean after the forked server stops')
    socket_activation(work, dev)
    subprocess.run(['rm', '-rf', work])
    checks.finish()


def socket_activation(work, dev):
    """Started by socket activation (systemd-socket-activate passes the listening socket as
    systemd does for cbd-serve@.socket): the server takes it, cbd info names it and its URI, a
    SIGTERM stops it cleanly and leaves the socket to its owner; a --socket naming another path
    is refused with one line."""
    activate = '/usr/bin/systemd-socket-activate'
    if not os.path.exists(activate):
        print('skipped: socket activation (systemd-socket-activate is not installed)')
        return
    sock = f'{work}/activated.sock'
    with open(f'{work}/err4', 'w') as err:
        p = subprocess.Popen([activate, '-l', sock, f'{BIN}/cbd', 'serve', '--socket', sock, dev], stderr=err)
        check(wait_for(lambda: os.path.exists(sock)), 'systemd-socket-activate listens')
        h = connect(sock)                   # the first connection starts the server
        h.pwrite(b'\x7c' * BS, 7 * BS)
        h.flush()
        i = info(dev)
        check(i.get('server_pid') == p.pid and i.get('uri') == f'nbd+unix:///?socket={sock}',
              f'cbd info names the activated server {p.pid} and its URI: {i}')
        h.shutdown()
        p.send_signal(signal.SIGTERM)
        code = p.wait(timeout=60)
    check(code == 0, f'the activated server stops cleanly on SIGTERM: {code} {open(work + "/err4").read()[-300:]}')
    check(os.path.exists(sock), 'the socket stays with its owner (systemd), not removed by the server')
    check(tool('fsck.cbd', '-fn', dev).returncode == 0, 'the device is clean after the activated server stops')
    r = subprocess.run([f'{BIN}/cbd', 'read', '-o', str(7 * BS), '-l', str(BS), dev], capture_output=True)
    check(r.returncode == 0 and r.stdout == b'\x7c' * BS, 'the block written through the activated server is there')
    os.unlink(sock)
    with open(f'{work}/err5', 'w') as err:
        p = subprocess.Popen([activate, '-l', sock, f'{BIN}/cbd', 'serve', '--socket', f'{work}/other.sock', dev],
                             stderr=err)
        check(wait_for(lambda: os.path.exists(sock)), 'systemd-socket-activate listens again')
        try:
            connect(sock).shutdown()
        except nbd.Error:
            pass
        code = p.wait(timeout=60)
    log = open(f'{work}/err5').read()
    check(code != 0 and 'is not the socket systemd passed' in log,
          f'a --socket other than the passed one is refused: {code} {log[-300:]}')


if __name__ == '__main__':
    checks.run(main)

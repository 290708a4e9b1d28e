#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""cbd serve and the nbdkit plugin with real NBD clients: nbdcopy, qemu-img, nbdinfo, libnbd
(Python bindings, from Debian's python3-libnbd: run with /usr/bin/python3), nbdfuse.

usage: serve_test.py BIN_DIR [CASE ...]
Prints one line per case and 'N passed, N failed'; exit 1 on any failure.
"""
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'fsck'))
import cbdimg  # noqa: E402  (the independent reader and checker)
import nbd  # noqa: E402

import checks  # noqa: E402  (beside this script)
from history import SECTOR, History, now, sector_bytes  # noqa: E402  (beside this script)

BIN = os.path.abspath(sys.argv[1])
BS = 65536   # the block size mkfs.cbd gives the test devices
CASES = []


def case(f):
    CASES.append(f)
    return f


def sh(*args, check=True, **kw):
    args, env = checks.sanitized(args)
    r = subprocess.run(args, capture_output=True, env=env, **kw)
    if check and r.returncode != 0:
        raise AssertionError('%s: exit %d: %s' % (' '.join(args), r.returncode, (r.stdout + r.stderr).decode()[-500:]))
    return r


def tool(name):
    return os.path.join(BIN, name)


def ext4_image(d, size='48M'):
    img = os.path.join(d, 'fs.img')
    sh('mke2fs', '-q', '-F', '-t', 'ext4', '-d', '/usr/share/perl', img, size)
    return img


def fresh_device(d, name='dev.cbd', size='64M'):
    dev = os.path.join(d, name)
    sh(tool('mkfs.cbd'), '-q', dev, size)
    return dev


def logical(dev):
    """The logical device, by the independent reader."""
    out = dev + '.raw'
    cbdimg.read_image(cbdimg.Image(dev), out)
    with open(out, 'rb') as f:
        data = f.read()
    os.unlink(out)
    return data


def consistent(dev):
    assert sh(tool('fsck.cbd'), '-fn', dev, check=False).returncode == 0, 'fsck.cbd -fn is not clean'
    problems = cbdimg.check(cbdimg.Image(dev))
    assert not problems, 'independent check: %s' % problems[:3]


def stopped_holding(status, dev, expected):
    """After a case's requests: the server stopped cleanly, both checkers find the device
    clean, and its logical device starts with `expected`."""
    assert status == 0, 'server exit status %s' % status
    consistent(dev)
    assert logical(dev)[:len(expected)] == expected, 'the device after the stop differs from what was expected'


class Server:
    """cbd serve in the background on a Unix socket, stopped with SIGTERM (or killed)."""

    def __init__(self, d, dev, *extra, preload=None, environment=None):
        self.sock = os.path.join(d, 'nbd.sock')
        args, env = checks.sanitized([tool('cbd'), 'serve', '--socket', self.sock, *extra, dev])
        if preload or environment:
            env = dict(env or os.environ, **(environment or {}))
        if preload:
            env['LD_PRELOAD'] = ' '.join(filter(None, [preload, env.get('LD_PRELOAD')]))
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        for _ in range(500):
            if os.path.exists(self.sock):
                return
            if self.p.poll() is not None:
                raise AssertionError('server ended: %s' % self.p.stderr.read().decode())
            time.sleep(0.01)
        raise AssertionError('no socket after 5 s')

    def connect(self):
        """A connection; nbdkit binds the socket a moment before it listens, so a refusal in
        the first seconds (a loaded machine) is retried."""
        for attempt in range(500):
            h = nbd.NBD()
            try:
                h.connect_unix(self.sock)
                return h
            except nbd.Error as e:
                if 'ECONNREFUSED' not in str(e) or attempt == 499:
                    raise
                time.sleep(0.01)

    def stop(self, sig=signal.SIGTERM):
        """The server's exit status; one still running after 30 s (a case that failed with
        connections open) is killed and gives None, so the case's own error is the one shown."""
        self.p.send_signal(sig)
        try:
            return self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            return None

    def stop_cleanly(self):
        """SIGTERM, and an AssertionError that quotes the server's last words unless it exits 0."""
        status = self.stop()
        if status != 0:
            err = self.p.stderr.read().decode(errors='replace').strip()
            if os.environ.get('CBD_SERVE_STDERR'):  # debugging: the whole of it
                with open(os.environ['CBD_SERVE_STDERR'] + '.%d' % os.getpid(), 'w') as f:
                    f.write(err)
            crash = err.find('*** Program crashed')  # a Swift backtrace: its headline, not the registers
            raise AssertionError('cbd serve exited %s: %s' % (status, (err[crash:crash + 200] if crash >= 0 else err[-400:]) or '(nothing on stderr)'))


@case
def nbdcopy_round_trip(d):
    """An ext4 image copied in through the server reads back byte for byte; both fscks agree."""
    img, dev = ext4_image(d), fresh_device(d)
    sh(tool('cbd'), 'serve', dev, '--run', 'nbdcopy %s "$uri"' % img)
    back = os.path.join(d, 'back.img')
    sh(tool('cbd'), 'convert', '-q', dev, back)
    with open(img, 'rb') as a, open(back, 'rb') as b:
        want = a.read()
        assert b.read(len(want)) == want, 'bytes differ'
    consistent(dev)
    sh('e2fsck', '-fn', back)


@case
def qemu_img_both_ways(d):
    """qemu-img converts the served device to qcow2 and back into a fresh one: equal."""
    img, dev = ext4_image(d), fresh_device(d)
    sh(tool('cbd'), 'serve', dev, '--run', 'nbdcopy %s "$uri"' % img)
    qcow = os.path.join(d, 'out.qcow2')
    sh(tool('cbd'), 'serve', '-r', dev, '--run', 'qemu-img convert -f raw -O qcow2 "$uri" %s' % qcow)
    dev2 = fresh_device(d, 'dev2.cbd')
    sh(tool('cbd'), 'serve', dev2, '--run', 'qemu-img convert -n -f qcow2 -O raw %s "$uri"' % qcow)
    sh(tool('cbd'), 'serve', '-r', dev2, '--run', 'qemu-img compare -f raw -F qcow2 "$uri" %s' % qcow)
    assert logical(dev2) == logical(dev)
    consistent(dev2)


@case
def map_is_the_allocation(d):
    """nbdinfo --map: holes exactly where entries are unallocated."""
    img, dev = ext4_image(d), fresh_device(d)
    sh(tool('cbd'), 'serve', dev, '--run', 'nbdcopy %s "$uri"' % img)
    out = sh(tool('cbd'), 'serve', '-r', dev, '--run', 'nbdinfo --map --json "$uri"').stdout
    extents = json.loads(out)
    im = cbdimg.Image(dev)
    hole = [im.entry(n)[0] == 0 for n in range(im.nr_lblk)]
    seen = [None] * im.nr_lblk
    for e in extents:
        assert e['offset'] % im.lblk_size == 0 and e['length'] % im.lblk_size == 0, e
        for n in range(e['offset'] // im.lblk_size, (e['offset'] + e['length']) // im.lblk_size):
            seen[n] = (e['type'] & 1) == 1
    assert seen == hole, 'map and entries disagree'
    assert any(hole) and not all(hole)
    # The block size the plugin advertises: any request works, a whole block costs least.
    info = json.loads(sh(tool('cbd'), 'serve', '-r', dev, '--run', 'nbdinfo --json "$uri"').stdout)
    export = info['exports'][0]
    assert (export['block_size_minimum'], export['block_size_preferred'], export['block_size_maximum']) == \
        (1, im.lblk_size, 32 << 20), export


@case
def random_operations_on_two_connections(d):
    """pread, pwrite, trim, zero and flush at random on two connections, against a model."""
    dev = fresh_device(d, size='16M')
    rng = random.Random(5)
    srv = Server(d, dev, '--cache', '256K')
    try:
        conns = [srv.connect(), srv.connect()]
        size = conns[0].get_size()
        model = bytearray(size)
        for i in range(300):
            h = conns[rng.randrange(2)]
            off = rng.randrange(size)
            n = min(rng.choice([1, 100, 4096, 65536, 200000]), size - off)
            op = rng.random()
            if op < 0.35:
                data = bytes(rng.randrange(256) for _ in range(n)) if rng.random() < 0.3 else bytes([i % 251]) * n
                h.pwrite(data, off, nbd.CMD_FLAG_FUA if rng.random() < 0.1 else 0)
                model[off:off + n] = data
            elif op < 0.45:
                # A trim frees the whole blocks of its range and leaves the parts of blocks at
                # its ends as they are (advisory, never needing space): model exactly that.
                h.trim(n, off)
                first, end = -(-off // BS) * BS, (off + n) // BS * BS
                if end > first:
                    model[first:end] = bytes(end - first)
            elif op < 0.55:
                h.zero(n, off)
                model[off:off + n] = bytes(n)
            elif op < 0.6:
                h.flush()
            else:
                got = h.pread(n, off)
                assert got == bytes(model[off:off + n]), 'read %d+%d differs from the model (op %d)' % (off, n, i)
        concurrent_reads_and_writes(srv, conns, model, rng)
        for h in conns:
            h.flush()
            h.shutdown()
    finally:
        status = srv.stop()
    stopped_holding(status, dev, bytes(model))


def concurrent_reads_and_writes(srv, conns, model, rng):
    """Requests that really overlap in the server: two threads read the first half (one on
    a third connection) while a third thread writes the second half, then every byte is
    checked against the model."""
    half = len(model) // 2
    third = srv.connect()
    writes = [(half + rng.randrange(half - 70000), bytes([rng.randrange(256)]) * rng.choice([512, 4096, 65536]))
              for _ in range(60)]
    wrong = []

    def reader(h, seed):
        r = random.Random(seed)
        for _ in range(150):
            off = r.randrange(half - 70000)
            n = r.choice([4096, 65536, 70000])
            if h.pread(n, off) != bytes(model[off:off + n]):
                wrong.append((off, n))

    def writer(h):
        for off, data in writes:
            h.pwrite(data, off)

    threads = [threading.Thread(target=reader, args=(conns[0], 1)), threading.Thread(target=reader, args=(third, 2)),
               threading.Thread(target=writer, args=(conns[1],))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    third.shutdown()
    assert not wrong, 'concurrent reads differ from the model: %s' % wrong[:3]
    for off, data in writes:
        model[off:off + len(data)] = data
    assert conns[0].pread(len(model) - half, half) == bytes(model[half:]), 'second half differs after the writes'


@case
def many_connections_never_read_stale(d):
    """Six connections at once on one small region: overlapping writes (whole blocks and parts,
    some FUA), zeros, trims of whole blocks, flushes and reads, through a cache of two blocks,
    so that blocks are committed, evicted and read again all the time. Every read is checked
    against the history of what was sent and acknowledged (history.py): never a block older
    than a write acknowledged before the read was sent (the stale read of the seed's kernel
    target), never bytes of no write. At the end the device holds, sector by sector, what a
    read then must see, and both checkers find it clean."""
    dev = fresh_device(d, size='16M')
    srv = Server(d, dev, '--cache', '128K')
    blocks, per_block = 10, BS // SECTOR
    sectors = blocks * per_block
    hist = History(sectors)
    failures = []

    def span(rng):
        first = rng.randrange(sectors)
        return first, min(rng.choice([1, 3, per_block, per_block + 5, 2 * per_block]), sectors - first)

    def worker(seed):
        rng = random.Random(seed)
        h = srv.connect()
        try:
            for _ in range(300):
                r = rng.random()
                if r < 0.45:
                    first, count = span(rng)
                    op, entry = hist.begin(first, count)
                    data = b''.join(sector_bytes(op, x) for x in range(first, first + count))
                    h.pwrite(data, first * SECTOR, nbd.CMD_FLAG_FUA if rng.random() < 0.1 else 0)
                    hist.end(entry)
                elif r < 0.52:
                    first, count = span(rng)
                    _, entry = hist.begin(first, count, zeros=True)
                    h.zero(count * SECTOR, first * SECTOR)
                    hist.end(entry)
                elif r < 0.58:
                    b = rng.randrange(blocks)
                    n = min(rng.choice([1, 2]), blocks - b)
                    _, entry = hist.begin(b * per_block, n * per_block, zeros=True)
                    h.trim(n * BS, b * BS)
                    hist.end(entry)
                elif r < 0.62:
                    h.flush()
                else:
                    first, count = span(rng)
                    sent = now()
                    data = h.pread(count * SECTOR, first * SECTOR)
                    hist.check_read(first, data, sent, now())
            h.shutdown()
        except Exception as e:  # reported below, with the history's findings
            failures.append('connection %d: %r' % (seed, e))

    try:
        threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures, failures[:3]
        assert not hist.errors, '%d stale or wrong sectors read: %s' % (len(hist.errors), hist.errors[:3])
        h = srv.connect()
        sent = now()
        final = h.pread(sectors * SECTOR, 0)
        hist.check_read(0, final, sent, now())
        assert not hist.errors, 'after every request: %s' % hist.errors[:3]
        h.flush()
        h.shutdown()
    finally:
        status = srv.stop()
    stopped_holding(status, dev, final)


@case
def background_commit_before_the_cache_fills(d):
    """Once a quarter of the cache is dirty, the plugin's committer stores the oldest blocks
    with no flush from the client (the device's entries, read beside the server, name them);
    with --no-background-commit nothing reaches the device while the cache has room. Either
    way a clean stop stores everything, consistently."""
    rng = random.Random(35)
    data = b''.join(bytes([rng.randrange(256)]) * 4096 + bytes(61440) for _ in range(8))
    for background in (True, False):
        dev = fresh_device(d, name='bg%d.cbd' % background, size='16M')
        srv = Server(d, dev, '--cache', '1M', *([] if background else ['--no-background-commit']))
        h = srv.connect()
        for i in range(8):  # half of a 16-block cache
            h.pwrite(data[i * 65536:(i + 1) * 65536], i * 65536)
        deadline = time.time() + (20 if background else 1)
        stored = False
        while not stored and time.time() < deadline:
            stored = cbdimg.Image(dev).entry(0)[0] != 0
            time.sleep(0.05)
        assert stored == background, 'block 0 %s before a flush' % ('stored' if stored else 'not stored')
        h.shutdown()
        srv.stop_cleanly()
        consistent(dev)
        assert logical(dev)[:len(data)] == data, 'written blocks differ after the stop'


def build_shim(d, name):
    """Tests/serve/NAME.c built as a library to preload into the server."""
    cc = shutil.which('cc') or shutil.which('clang') or shutil.which('gcc')
    shim = os.path.join(d, name + '.so')
    sh(cc, '-shared', '-fPIC', '-o', shim, os.path.join(os.path.dirname(os.path.abspath(__file__)), name + '.c'), '-ldl')
    return shim


@case
def a_write_short_of_room_waits_for_the_commit_storing_its_data(d):
    """While the committer writes a plan's data with no lock, its blocks' promises still count
    beside the pblks it took, and their old copies are freed only when it is published. On a
    device with room for four raw blocks and not five, four blocks are written again (the
    committer stores two of them; slowsync.c makes its sync last 1.5 s) and a fifth comes
    meanwhile. It fits once the plan is published, so it must succeed: the plugin waits for
    the plan and tries it again (refused at once with ENOSPC before)."""
    shim = build_shim(d, 'slowsync')
    flag = os.path.join(d, 'slow')
    dev = fresh_device(d, size='8M')
    srv = Server(d, dev, '--cache', '1M', preload=shim, environment={'CBD_TEST_SLOW_SYNC': flag})
    h = srv.connect()
    bs, rng = 65536, random.Random(53)
    blocks = h.get_size() // bs
    model = {}
    for i in range(blocks):  # raw blocks until the device is full
        data = bytes(rng.randrange(256) for _ in range(bs))
        try:
            h.pwrite(data, i * bs)
        except nbd.Error as e:
            assert e.errnum == errno.ENOSPC, e
            break
        model[i] = data
    h.flush()
    full = len(model)
    assert 20 < full < blocks, 'filled %d of %d blocks' % (full, blocks)
    for i in range(full - 4, full):  # room for four raw blocks (less than one was free)
        h.trim(bs, i * bs)
        del model[i]
    h.flush()
    open(flag, 'w').close()
    for i in range(4):  # dirty: the committer plans two of them
        model[i] = bytes(rng.randrange(256) for _ in range(bs))
        h.pwrite(model[i], i * bs)
    time.sleep(0.5)  # it stores them: its sync waits
    fifth = bytes(rng.randrange(256) for _ in range(bs))
    try:
        h.pwrite(fifth, (full - 4) * bs)
    except nbd.Error as e:
        raise AssertionError('a write that fits once the stored plan is published was refused: %s' % e)
    model[full - 4] = fifth
    os.unlink(flag)
    h.flush()
    for i, data in model.items():
        assert h.pread(bs, i * bs) == data, 'block %d differs' % i
    h.shutdown()
    srv.stop_cleanly()
    consistent(dev)
    image = logical(dev)
    for i, data in model.items():
        assert image[i * bs:(i + 1) * bs] == data, 'block %d differs after the stop' % i


@case
def stop_is_clean_when_threads_outlive_the_plugin(d):
    """A flush packs on all cores, so Dispatch's worker threads exist when nbdkit unloads the
    plugin and dlcloses it. They must not wake in unmapped code: slowclose.c (preloaded) waits
    3 s after dlclose, and the stop still exits 0 with every block stored. Without the plugin's
    `-z nodelete` every such stop died of SIGSEGV."""
    shim = build_shim(d, 'slowclose')
    dev = fresh_device(d, size='16M')
    data = bytes(random.Random(43).randrange(256) for _ in range(8 * 65536))
    srv = Server(d, dev, '--cache', '1M', preload=shim)
    h = srv.connect()
    h.pwrite(data, 0)
    h.flush()
    h.shutdown()
    srv.stop_cleanly()
    consistent(dev)
    assert logical(dev)[:len(data)] == data, 'flushed blocks differ after the stop'


@case
def fio_jobs_beside_background_commits(d):
    """fio (its nbd engine, one connection per job) as a real parallel load: four jobs write
    4K and 24K pieces at random into regions of their own, with fio's own checksums, and read
    them back to verify; two more read the whole area at random meanwhile. A 1 MiB cache keeps
    the committer storing beside those reads and the writers publishing its plans. fio finds
    every block it wrote; the stop is clean and the device consistent. (Under
    scripts/tsan-serve.sh this is the load that makes requests overlap: Python's clients
    seldom do.)"""
    dev = fresh_device(d, size='64M')
    srv = Server(d, dev, '--cache', '1M')
    uri = 'nbd+unix:///?socket=' + srv.sock
    common = ['--ioengine=nbd', '--uri=' + uri]
    writers = ['--name=write', '--rw=randwrite', '--bsrange=4k-24k', '--size=4M',
               '--offset_increment=4M', '--numjobs=4', '--iodepth=8', '--verify=crc32c',
               '--verify_fatal=1', '--randseed=35']
    readers = ['--name=read', '--rw=randread', '--bs=4k', '--size=16M', '--numjobs=2', '--iodepth=8',
               '--time_based=1', '--runtime=3']
    # In the case's folder: fio leaves its verify state files where it runs.
    r = subprocess.run(['fio', *common, *writers, *common, *readers], capture_output=True, text=True, cwd=d)
    assert r.returncode == 0, 'fio failed: %s' % (r.stderr or r.stdout)[-600:]
    srv.stop_cleanly()
    consistent(dev)


@case
def killed_server_keeps_flushed_data(d):
    """kill -9 during writes after a flush: fsck -fy makes it consistent, flushed bytes stay."""
    dev = fresh_device(d, size='16M')
    srv = Server(d, dev, '--cache', '128K')
    h = srv.connect()
    rng = random.Random(9)
    flushed = bytes(rng.randrange(256) for _ in range(3 << 20))
    h.pwrite(flushed, 0)
    h.flush()
    for i in range(40):
        h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(os.urandom(65536))), (4 << 20) + i * 65536)
    srv.stop(signal.SIGKILL)
    r = sh(tool('fsck.cbd'), '-fy', dev, check=False)
    assert r.returncode in (0, 1), r.stdout.decode()[-300:]
    consistent(dev)
    assert logical(dev)[:len(flushed)] == flushed, 'flushed data lost'


def piece_data(rng, i, size):
    """Piece i of a fill: two of three incompressible, the third compressible (text-like)."""
    if i % 3:
        return rng.randbytes(size)
    words = [b'block', b'zone', b'entry', b'pblk', b'lblk', b'%d' % i]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words) + b' '
    return bytes(out[:size])


@case
def full_device_keeps_acknowledged_writes(d):
    """Fill a small device on two connections until ENOSPC: every acknowledged write reads back
    before and after a flush and after kill -9 and fsck; a refused write changes nothing; trims
    free space and writes succeed again; cbd info shows live use; the log warns at low water."""
    dev = fresh_device(d, size='8M')
    srv = Server(d, dev, '--cache', '1M', '--low-water', '30')
    conns = [srv.connect(), srv.connect()]
    size = conns[0].get_size()
    piece = 256 << 10
    rng = random.Random(20)
    model = bytearray(size)
    accepted, refused = [], []
    for i in range(size // piece):
        data = piece_data(rng, i, piece)
        h = conns[i % 2]
        try:
            h.pwrite(data, i * piece)
            model[i * piece:(i + 1) * piece] = data
            accepted.append(i)
        except nbd.Error as e:
            assert e.errnum == errno.ENOSPC, 'refused with %s, not ENOSPC: %s' % (e.errnum, e)
            refused.append(i)
            assert h.pread(piece, i * piece) == bytes(model[i * piece:(i + 1) * piece]), 'a refused write changed data'
    assert refused and accepted, 'accepted %d, refused %d' % (len(accepted), len(refused))
    assert any(i % 3 == 0 for i in accepted[len(accepted) // 2:]), 'no compressible piece fitted late'

    def all_read_back(why):
        for h in conns:
            for i in accepted:
                assert h.pread(piece, i * piece) == bytes(model[i * piece:(i + 1) * piece]), \
                    'piece %d lost %s' % (i, why)

    all_read_back('before the flush')
    info = json.loads(sh(tool('cbd'), 'info', '--json', dev).stdout)
    assert info['state'].startswith('served') and info['use_percent'] > 90, info
    conns[0].flush()
    all_read_back('after the flush')
    # Flushed, the device on disk is consistent while still served (the independent checker).
    problems = cbdimg.check(cbdimg.Image(dev))
    assert not problems, 'independent check after the flush: %s' % problems[:3]
    # Freeing needs no space: trim every second accepted piece, then write new data there.
    freed = accepted[::2]
    for i in freed:
        conns[1].trim(piece, i * piece)
        model[i * piece:(i + 1) * piece] = bytes(piece)
    for i in freed[:3]:
        data = piece_data(rng, 1, piece)
        conns[0].pwrite(data, i * piece)
        model[i * piece:(i + 1) * piece] = data
    conns[1].flush()
    all_read_back('after trims and new writes')
    problems = cbdimg.check(cbdimg.Image(dev))
    assert not problems, 'independent check after the trims: %s' % problems[:3]
    srv.stop(signal.SIGKILL)
    r = sh(tool('fsck.cbd'), '-fy', dev, check=False)
    assert r.returncode in (0, 1), r.stdout.decode()[-300:]
    consistent(dev)
    assert logical(dev) == bytes(model), 'the device differs from what was acknowledged'
    log = srv.p.stderr.read().decode()
    assert 'free space is below 30%' in log and log.count('no space left') == len(refused), log[-600:]


@case
def read_only_serve(d):
    """-r refuses writes and leaves the image byte for byte; readers share it, writers not."""
    img, dev = ext4_image(d), fresh_device(d)
    sh(tool('cbd'), 'serve', dev, '--run', 'nbdcopy %s "$uri"' % img)
    with open(dev, 'rb') as f:
        before = f.read()
    srv = Server(d, dev, '-r')
    try:
        h = srv.connect()
        assert h.is_read_only()
        try:
            h.pwrite(b'x' * 512, 0)
            raise AssertionError('a write went through a read-only server')
        except nbd.Error:
            pass
        assert sh(tool('cbd'), 'info', dev, check=False).returncode == 0, 'a reader was refused'
        w = sh(tool('cbd'), 'discard', '-o', '0', '-l', '64K', dev, check=False)
        assert w.returncode == 1 and b'in use' in w.stderr, w.stderr
        h.shutdown()
    finally:
        srv.stop()
    with open(dev, 'rb') as f:
        assert f.read() == before, 'the image changed'


@case
def writers_refuse_a_served_device(d):
    """While served read-write, every writing tool (and every reader but cbd info, which shows
    the server's live figures) is refused; nothing changes."""
    dev = fresh_device(d)
    raw = os.path.join(d, 'raw.img')
    with open(raw, 'wb') as f:
        f.write(os.urandom(1 << 20))
    srv = Server(d, dev)
    try:
        with open(dev, 'rb') as f:
            before = f.read()
        undo = os.path.join(d, 'u')
        with open(undo, 'wb') as f:
            f.write(b'CBDUNDO2')
        attempts = [
            [tool('cbd'), 'write', '-o', '0', dev],
            [tool('cbd'), 'discard', '-o', '0', '-l', '4K', dev],
            [tool('fsck.cbd'), '-fy', dev],
            [tool('cbd'), 'resize', dev, '+1M'],
            [tool('cbd'), 'undo', undo, dev],
            [tool('cbd'), 'convert', '-q', '-f', raw, dev],
            [tool('mkfs.cbd'), '-f', dev],
            [tool('cbddump'), dev],
        ]
        for a in attempts:
            r = subprocess.run(a, input=b'x' * 100, capture_output=True)
            assert r.returncode != 0 and b'in use' in r.stderr, '%s: %d %s' % (a[1:], r.returncode, r.stderr)
        # cbd info reports what the server publishes, without opening the device.
        live = sh(tool('cbd'), 'info', dev).stdout.decode()
        assert 'served by process %d (live)' % srv.p.pid in live and 'use_percent:' in live, live
        with open(dev, 'rb') as f:
            assert f.read() == before, 'a refused tool changed the device'
    finally:
        srv.stop_cleanly()


@case
def nbdfuse_file_with_ext4(d):
    """nbdfuse exposes the device as a file: mkfs.ext4 on it, files copied in, e2fsck clean."""
    dev = fresh_device(d, size='48M')
    mnt = os.path.join(d, 'mnt')
    os.mkdir(mnt)
    srv = Server(d, dev)
    fuse = subprocess.Popen(['nbdfuse', mnt, '--unix', srv.sock], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        disk = os.path.join(mnt, 'nbd')
        for _ in range(500):
            if os.path.exists(disk):
                break
            if fuse.poll() is not None:
                raise AssertionError('nbdfuse ended: %s' % fuse.stderr.read().decode())
            time.sleep(0.01)
        sh('mke2fs', '-q', '-F', '-t', 'ext4', '-d', '/usr/share/perl', disk)
        sh('e2fsck', '-fn', disk)
    finally:
        subprocess.run(['umount', mnt], capture_output=True)
        fuse.wait(timeout=30)
        srv.stop()
    back = os.path.join(d, 'back.img')
    sh(tool('cbd'), 'convert', '-q', dev, back)
    sh('e2fsck', '-fn', back)
    consistent(dev)


def nbdfuse_mount(srv, mnt):
    """nbdfuse on the server's socket: the device as the file mnt/nbd."""
    fuse = subprocess.Popen(['nbdfuse', mnt, '--unix', srv.sock], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    disk = os.path.join(mnt, 'nbd')
    for _ in range(500):
        if os.path.exists(disk):
            return fuse, disk
        if fuse.poll() is not None:
            raise AssertionError('nbdfuse ended: %s' % fuse.stderr.read().decode())
        time.sleep(0.01)
    raise AssertionError('nbdfuse gave no file after 5 s')


def sha(path):
    import hashlib
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


@case
def ext4_on_a_device_that_fills(d):
    """ext4 (loop-mounted through nbdfuse) on a 32 MiB device: 10 MiB files of random data until
    a write or fsync fails. The failure reaches the writer; every file whose write and fsync
    succeeded reads back whole afterwards (the filesystem's journal recovered on a copy)."""
    if os.geteuid() != 0:
        print('skip: needs root (loop mount)')
        return
    dev = fresh_device(d, size='32M')
    mnt, fs = os.path.join(d, 'mnt'), os.path.join(d, 'fs')
    os.mkdir(mnt)
    os.mkdir(fs)
    srv = Server(d, dev)
    fuse, disk = nbdfuse_mount(srv, mnt)
    good, failed = {}, None
    try:
        sh('mke2fs', '-q', '-F', '-t', 'ext4', disk)
        # Direct I/O from the loop device to the FUSE file: each write reaches the server, and
        # its answer (ENOSPC) the filesystem. Buffered, the page cache of the FUSE file takes
        # the write, and its writeback error is reported to at most one later fsync.
        loop = sh('losetup', '-f', '--show', '--direct-io=on', disk).stdout.decode().strip()
        sh('mount', loop, fs)
        try:
            for i in range(12):
                path, data = os.path.join(fs, 'f%d' % i), os.urandom(10 << 20)
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
                    try:
                        os.write(fd, data)
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                    good['f%d' % i] = sha(path)
                except OSError as e:
                    failed = e
                    break
        finally:
            subprocess.run(['umount', fs], capture_output=True)
            subprocess.run(['losetup', '-d', loop], capture_output=True)
    finally:
        subprocess.run(['umount', mnt], capture_output=True)
        fuse.wait(timeout=60)
        srv.stop()
    assert failed is not None, 'twelve 10 MiB random files fitted a 32 MiB device'
    assert good, 'not even the first file fitted'
    print('   %d files fsynced, then: %s' % (len(good), failed))
    raw = os.path.join(d, 'back.img')
    sh(tool('cbd'), 'convert', '-q', dev, raw)
    consistent(dev)
    r = sh('e2fsck', '-fn', raw, check=False)
    assert r.returncode in (0, 4), 'e2fsck -fn: exit %d' % r.returncode
    sh('mount', '-o', 'loop', raw, fs)   # replays the journal, as a reboot would
    try:
        for name, digest in good.items():
            assert sha(os.path.join(fs, name)) == digest, '%s, written and fsynced, reads back different' % name
    finally:
        subprocess.run(['umount', fs], capture_output=True)


def main():
    wanted = sys.argv[2:]
    passed = failed = 0
    for c in CASES:
        if wanted and c.__name__ not in wanted:
            continue
        with tempfile.TemporaryDirectory(prefix='cbd-serve-') as d:
            t = time.time()
            try:
                c(d)
                print('ok    %-40s %.1f s' % (c.__name__, time.time() - t))
                passed += 1
            except Exception as e:  # one line per failed case, then go on
                # An assert with no message says nothing in str(): name its line.
                where = traceback.extract_tb(e.__traceback__)[-1]
                print('FAIL  %-40s %s (line %d: %s)' % (c.__name__, (str(e) or repr(e))[:400], where.lineno, where.line))
                failed += 1
    print('%d passed, %d failed' % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    checks.run(main)

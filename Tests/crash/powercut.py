#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Power cuts, not only kills: every write and sync of a tool is recorded (pwlog.c, loaded with
LD_PRELOAD), then the states a power cut could leave are built from the record and checked.

The model (CrashMonkey's and ALICE's): a cut after event k keeps, for each file, every write
made before that file's last fsync (or a sync(2)) before k, and any subset of its later writes,
torn at 4 KiB. Metadata (a file's creation, size, rename, unlink) persists in order, as a
journaling filesystem commits it: everything before the last sync of any file, then a prefix of
the rest. A state is then recovered as a user would, by what the tools print ("restore it with:
cbd undo ..." is run as printed), and must satisfy the scenario's rule: `fsck.cbd -fy`, then a
clean `fsck.cbd -fn` and the independent checker, and every block old or new; after a flush
or FUA reply of the server, the flushed blocks new.

usage: powercut.py BIN_DIR PRELOAD.so [SCENARIO ...]   (default: all but discard, fulldiscard)
Prints one line per scenario (events, syncs, states checked, bad) and 'N passed, N failed'.

Each scenario plays CBD_POWERCUT_STATES (default 10) crash states drawn with a fixed seed: half
cut just before a sync (a whole epoch unsynced), half anywhere; an epoch of at most 3 unsynced
4 KiB pieces is played in every subset. States are played in the directory the tool ran in
(undo files and resize markers name absolute paths), one after another; scenarios run in
parallel processes.
"""
import concurrent.futures
import itertools
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
TSAN_NBDKIT = os.path.normpath(os.path.join(HERE, '..', '..', 'scripts', 'tsan-nbdkit'))  # make tsan
import crashpoints as cp  # noqa: E402  (the scenarios, the independent reader and checker)

PIECE = 4096
META = 'TRUC'        # size, rename, unlink, and C: an event that first names a new file


class Event:
    __slots__ = ('op', 'path', 'ino', 'a', 'b', 'data', 'new')

    def __init__(self, op, path, ino, a, b, data):
        self.op, self.path, self.ino, self.a, self.b, self.data = op, path, ino, a, b, data
        self.new = False      # the first event that names a file the directory did not hold

    def pieces(self):
        """The 4 KiB pieces (start, end) of a write or zeroing, by file offset."""
        if self.op not in 'WZ':
            return []
        length = len(self.data) if self.op == 'W' else self.b
        out, at = [], self.a
        while at < self.a + length:
            end = min(self.a + length, (at // PIECE + 1) * PIECE)
            out.append((at, end))
            at = end
        return out


def parse(log):
    with open(log, 'rb') as f:
        b = f.read()
    events, i = [], 0
    while i < len(b):
        op, pl, dl, ino, a, bb = struct.unpack_from('<B3xII4xQQQ', b, i)
        path = b[i + 40:i + 40 + pl].decode()
        data = b[i + 40 + pl:i + 40 + pl + dl]
        events.append(Event(chr(op), path, ino, a, bb, data))
        i += 40 + pl + dl
    return events


def snapshot(d):
    """The directory's files: path -> (inode, bytes), and its symlinks: path -> target."""
    files, links = {}, {}
    for name in os.listdir(d):
        p = os.path.join(d, name)
        if os.path.islink(p):
            links[p] = os.readlink(p)
        elif os.path.isfile(p):
            with open(p, 'rb') as f:
                files[p] = (os.stat(p).st_ino, f.read())
    return files, links


class Recording:
    """One uninterrupted run of the command: the base directory and the events."""

    def __init__(self, base, events):
        self.base, self.events = base, events
        known = {ino for ino, _ in base[0].values()}
        for e in events:
            if e.op in 'WZTS' and e.ino not in known:
                e.new = True
                known.add(e.ino)
        self.syncs = [i for i, e in enumerate(events) if e.op in 'SG']

    def is_meta(self, e):
        return e.new or e.op in 'TRU'

    def unsynced(self, cut):
        """The pieces and metadata events before `cut` that a power cut there may lose."""
        last_sync, last_global, barrier = {}, -1, -1
        for i, e in enumerate(self.events[:cut]):
            if e.op == 'S':
                last_sync[e.ino] = i
                barrier = i
            elif e.op == 'G':
                last_global = barrier = i
        pieces, meta = [], []
        for i, e in enumerate(self.events[:cut]):
            if self.is_meta(e) and i > barrier:
                meta.append(i)
            if i > max(last_sync.get(e.ino, -1), last_global):
                pieces += [(i, j) for j in range(len(e.pieces()))]
        return pieces, meta

    def state(self, cut, kept, meta_kept):
        """The files a cut leaves: `kept` the unsynced pieces that persisted, `meta_kept` the
        unsynced metadata events that did (a prefix)."""
        pieces, meta = self.unsynced(cut)
        lost = set(pieces) - set(kept)
        lost_meta = set(meta[meta_kept:])
        files, links = self.base
        names = {p: ino for p, (ino, _) in files.items()}
        content = {ino: bytearray(data) for ino, data in files.values()}
        dead = set()       # files whose creation was lost
        for i, e in enumerate(self.events[:cut]):
            if i in lost_meta:
                if e.new:
                    dead.add(e.ino)
                continue
            if e.ino in dead:
                continue
            if e.new:
                content[e.ino] = bytearray()
                names[e.path] = e.ino
            if e.op == 'T':
                c = content[e.ino]
                del c[e.a:]
                c.extend(bytes(max(0, e.a - len(c))))
            elif e.op == 'R':
                # Paths as the program named them ('./.out.tmp-1'): the same normal form as the
                # names of the files written (from /proc/self/fd), or the rename is never seen.
                old, new = (os.path.normpath(p) for p in e.path.split('\0'))
                if old in names:
                    names[new] = names.pop(old)
            elif e.op == 'U':
                names.pop(os.path.normpath(e.path), None)
            for j, (s, t) in enumerate(e.pieces()):
                if (i, j) in lost:
                    continue
                c = content[e.ino]
                if len(c) < t:
                    c.extend(bytes(t - len(c)))
                c[s:t] = e.data[s - e.a:t - e.a] if e.op == 'W' else bytes(t - s)
        return {p: bytes(content[ino]) for p, ino in names.items()}, links

    def specs(self, count, seed, cuts=None):
        """The crash states to play: (cut, kept pieces, kept metadata count); only at `cuts` when
        given."""
        rng = random.Random(seed)
        if cuts:
            out = []
            for _ in range(count):
                cut = rng.choice(cuts)
                pieces, meta = self.unsynced(cut)
                out.append((cut, [p for p in pieces if rng.random() < 0.5], rng.randrange(len(meta) + 1)))
            return out, (0, 0)
        out = []
        for s in self.syncs:
            pieces, meta = self.unsynced(s)
            if 0 < len(pieces) <= 3 and len(meta) <= 1:
                for r in range(len(pieces) + 1):
                    out += [(s, list(k), m) for k in itertools.combinations(pieces, r) for m in range(len(meta) + 1)]
        small = len(out)
        rng.shuffle(out)
        out = out[:count // 2]
        exhaustive = (len(out), small)
        while len(out) < count:
            cut = rng.choice(self.syncs) if self.syncs and rng.random() < 0.5 else rng.randrange(len(self.events) + 1)
            pieces, meta = self.unsynced(cut)
            out.append((cut, [p for p in pieces if rng.random() < 0.5], rng.randrange(len(meta) + 1)))
        return out, exhaustive


def materialize(d, files, links):
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for p, data in files.items():
        if os.path.dirname(p) == d:
            with open(p, 'wb') as f:
                f.write(data)
    for p, target in links.items():
        os.symlink(target, p)


def recover(sc, d):
    """What a user does after the cut: the interrupted command again where that is the way
    (cbd undo), then what fsck asks for (cbd undo), until it asks no more."""
    if sc.rerun:
        r = cp.sh(sc.command(), d)
        if r.returncode not in sc.ok_codes:
            return 'rerun: exit %d: %s' % (r.returncode, r.stderr.decode().strip()[-200:])
    for _ in range(3):
        r = cp.sh([sc.tool('fsck.cbd'), '-fn', sc.device], d)
        m = re.search(r'restore it with: cbd undo (\S+) (\S+)', (r.stdout + r.stderr).decode())
        if not m:
            return None
        u = cp.sh([sc.tool('cbd'), 'undo', m.group(1), m.group(2)], d)
        if u.returncode != 0:
            return 'cbd undo as fsck asked: exit %d: %s' % (u.returncode, u.stderr.decode().strip()[-200:])
    return 'fsck still asks for cbd undo after it ran'


def play(sc, preload, count):
    run = os.path.join(sc.work, 'run')
    os.makedirs(run)
    sc.prepare(run)
    base = snapshot(run)
    log = os.path.join(sc.work, 'events.log')
    tmp = os.path.join(sc.work, 'tmp')
    os.makedirs(tmp, exist_ok=True)
    env = dict(os.environ, LD_PRELOAD=preload, CBD_PWLOG=log, CBD_PWLOG_DIR=run, TMPDIR=tmp)
    if os.environ.get('CBD_SERVE_PRELOAD') and getattr(sc, 'serves', False):
        # Under make tsan the server's plugin needs the TSan runtime, which scripts/tsan-nbdkit
        # preloads into nbdkit only (before the recorder), first in the PATH of cbd serve.
        env['PATH'] = TSAN_NBDKIT + ':' + env.get('PATH', '')
    with open(sc.stdin or os.devnull, 'rb') as f:
        r = subprocess.run(sc.command(), cwd=run, stdin=f, capture_output=True, env=env)
    if r.returncode not in sc.ok_codes:
        return 0, 0, 0, (0, 0), ['the uninterrupted run failed: exit %d: %s' % (r.returncode, (r.stdout + r.stderr)[-300:])]
    rec = Recording(base, parse(log) if os.path.exists(log) else [])
    return check(sc, rec, count)


def check(sc, rec, count, cuts=None):
    """Plays `count` crash states of `rec`; returns its figures and the states that break the rules."""
    run = os.path.join(sc.work, 'run')
    sc.recording = rec
    specs, exhaustive = rec.specs(count, seed=sc.name, cuts=cuts)
    bad = []
    for n, (cut, kept, meta) in enumerate(specs):
        files, links = rec.state(cut, kept, meta)
        materialize(run, files, links)
        sc.cut = cut
        why = recover(sc, run) or sc.verify(run)
        if why:
            bad.append('state %d (cut at event %d of %d, %d of %d unsynced pieces kept): %s'
                       % (n, cut, len(rec.events), len(kept), len(rec.unsynced(cut)[0]), why))
    return len(rec.events), len(rec.syncs), len(specs), exhaustive, bad


# ---- scenarios: the crash test's, and those only a power cut shows --------------------------

def power(cls):
    """A crash test scenario as a power-cut one: its device is dev.cbd; it ran to the end."""
    return type(cls.__name__, (cls,), {'device': 'dev.cbd', 'rerun': False, 'ok_codes': getattr(cls, 'ok_codes', (0,))})


class PowerDevice(cp.DeviceScenario):
    """A scenario of this file on the crash test's device: dev.cbd, exit 0, not run again."""
    device = 'dev.cbd'
    ok_codes = (0,)
    rerun = False


class SameContent(PowerDevice):
    """A command that changes the layout, never a block's content: old and new are the same."""

    def setup(self):
        super().setup()
        self.new = self.old


class Relayout(SameContent):
    """cbd resize -z: the logical size grows 16x, so every zone's table grows and the whole
    device is rewritten in place behind the undo file. Old (after cbd undo) or new: the same
    blocks, and zeros past them."""

    def command(self):
        return [self.tool('cbd'), 'resize', '-z', 'undo.bin', '-L', str(16 * cp.NR_LBLK * cp.BS), 'dev.cbd']

    def old_or_new(self, d, dev='dev.cbd'):
        got = cp.blocks(os.path.join(d, dev))
        for n, b in enumerate(got):
            want = self.old[n] if n < len(self.old) else bytes(cp.BS)
            if b != want:
                return 'block %d is %s' % (n, 'unreadable' if b is None else 'neither old nor new')
        return None


class RelayoutFile(Relayout):
    """cbd resize without -z on an image file: the same re-layout written to a new file beside
    it, synced and renamed over it. Old (the rename not yet on disk) or new, never a mix."""

    def command(self):
        return [self.tool('cbd'), 'resize', '-L', str(16 * cp.NR_LBLK * cp.BS), 'dev.cbd']


class Undo(Relayout):
    """cbd undo of a completed re-layout, cut anywhere: run again (what a user does after an
    interrupted command), the device is the original byte for byte."""
    rerun = True

    def setup(self):
        super().setup()
        done = os.path.join(self.work, 'done')
        os.makedirs(done)
        shutil.copy(os.path.join(self.work, 'base.cbd'), os.path.join(done, 'dev.cbd'))
        r = cp.sh(Relayout.command(self), done)
        assert r.returncode == 0, r.stderr

    def prepare(self, d):
        for name in ('dev.cbd', 'undo.bin'):
            shutil.copy(os.path.join(self.work, 'done', name), os.path.join(d, name))

    def command(self):
        return [self.tool('cbd'), 'undo', 'undo.bin', 'dev.cbd']

    def verify(self, d):
        with open(os.path.join(self.work, 'base.cbd'), 'rb') as a, open(os.path.join(d, 'dev.cbd'), 'rb') as b:
            if a.read() != b.read():
                return 'the device is not the original byte for byte'
        return None


class Grow(SameContent):
    def command(self):
        return [self.tool('cbd'), 'resize', 'dev.cbd', '80M']


class Minimize(Grow):
    def command(self):
        return [self.tool('cbd'), 'resize', '-M', 'dev.cbd']


CLIENT = textwrap.dedent('''
    import nbd, os, struct, sys
    BS = %(bs)d
    def mark(n):
        # A record the recorder's parser reads as op 'M': the reply to a flush or FUA write came.
        with open(os.environ['CBD_PWLOG'], 'ab') as f:
            f.write(struct.pack('<B3xII4xQQQ', ord('M'), 0, 0, n, 0, 0))
    h = nbd.NBD()
    h.connect_uri(sys.argv[1])
    data = open(sys.argv[2], 'rb').read()
    h.pwrite(data[0:3 * BS], 119 * BS)                 # lblks 119-121, then a flush
    h.flush()
    mark(1)
    h.pwrite(data[3 * BS:6 * BS], 200 * BS, nbd.CMD_FLAG_FUA)   # 200-202 with FUA
    mark(2)
    h.pwrite(data[6 * BS:7 * BS], 50 * BS)             # 50: never flushed
    h.trim(2 * BS, 10 * BS)                            # 10-11 trimmed, never flushed
    h.shutdown()
''')


class Serve(PowerDevice):
    """The nbdkit plugin under `cbd serve`: a client writes, flushes, writes with FUA, writes and
    trims without either. After each reply the blocks it covered are new in every later cut."""
    FLUSHED = {1: (119, 120, 121), 2: (200, 201, 202)}

    def setup(self):
        super().setup()
        new = cp.raw_data(6)
        self.writes = new[:7 * cp.BS]
        with open(os.path.join(self.work, 'client.py'), 'w') as f:
            f.write(CLIENT % {'bs': cp.BS})
        with open(os.path.join(self.work, 'new.bin'), 'wb') as f:
            f.write(self.writes)
        self.new = list(self.old)
        for k, n in enumerate((119, 120, 121, 200, 201, 202, 50)):
            self.new[n] = self.writes[k * cp.BS:(k + 1) * cp.BS]
        for n in (10, 11):
            self.new[n] = bytes(cp.BS)

    serves = True

    def command(self):
        client = '/usr/bin/python3 %s "$uri" %s' % (os.path.join(self.work, 'client.py'), os.path.join(self.work, 'new.bin'))
        if os.environ.get('CBD_SERVE_PRELOAD'):
            client = 'env -u LD_PRELOAD ' + client  # the client goes without the sanitizer
        return [self.tool('cbd'), 'serve', 'dev.cbd', '--run', client]

    def verify(self, d):
        why = self.repaired(d) or self.old_or_new(d)
        if why:
            return why
        got = cp.blocks(os.path.join(d, 'dev.cbd'))
        for i, e in enumerate(self.events_before_cut()):
            if e.op == 'M':
                for n in self.FLUSHED[e.ino]:
                    if got[n] != self.new[n]:
                        return 'block %d was flushed (reply %d came) but reads old' % (n, e.ino)
        return None

    def events_before_cut(self):
        return self.recording.events[:self.cut]


class Control(power(cp.Write)):
    """The negative control: the write scenario's record with one of its syncs taken out, as
    if the writer had skipped it. Some crash state must then break the rules (each sync is tried
    in turn, with cuts just before the sync after it), or the simulator could not see a missing
    sync at all."""

    def play(self, preload, count):
        events, syncs, states, exhaustive, bad = play(self, preload, count)
        if bad:
            return events, syncs, states, exhaustive, ['the uninterrupted record already fails: ' + bad[0]]
        full = self.recording
        for k in full.syncs:
            # Cut where the loss shows: just before the next sync (the two epochs now one).
            rec = Recording(full.base, [e for i, e in enumerate(full.events) if i != k])
            later = [s for s in rec.syncs if s >= k] or [len(rec.events)]
            n, _, played, _, caught = check(self, rec, count, cuts=[later[0]])
            states += played
            if caught:
                self.caught = (k, len(caught), played)
                return events, syncs, states, exhaustive, []
        return events, syncs, states, exhaustive, ['no skipped sync of %d was caught' % len(full.syncs)]


SCENARIOS = {
    'write': power(cp.Write), 'discard': power(cp.Discard), 'fsck': power(cp.Fsck),
    'shrink': power(cp.Resize), 'grow': Grow, 'minimize': Minimize, 'relayout': Relayout,
    'relayoutfile': RelayoutFile, 'undo': Undo,
    'convert': power(cp.Convert), 'convert-back': power(cp.ConvertBack), 'fulldiscard': power(cp.FullDiscard),
    'serve': Serve, 'control': Control,
}
# Discard and discard on a full device are also played in-process by PowerLossTests.swift.
DEFAULT = [n for n in SCENARIOS if n not in ('discard', 'fulldiscard')]


def run_one(top, name, bin_dir, preload, count):
    cls = SCENARIOS[name]
    work = os.path.join(top, name)
    os.makedirs(work)
    sc = cls(name, work, bin_dir)
    sc.setup()
    started = time.monotonic()
    result = sc.play(preload, count) if isinstance(sc, Control) else play(sc, preload, count)
    return name, result, time.monotonic() - started, getattr(sc, 'caught', None)


def main():
    bin_dir, preload = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    names = sys.argv[3:] or DEFAULT
    count = int(os.environ.get('CBD_POWERCUT_STATES', '10'))
    top = os.path.join('/dev/shm' if os.path.isdir('/dev/shm') else '/tmp', 'cbd-powercut-%d' % os.getpid())
    os.makedirs(top)
    passed = failed = 0
    try:
        with concurrent.futures.ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            results = list(pool.map(run_one, *zip(*[(top, n, bin_dir, preload, count) for n in names])))
        for name, (events, syncs, states, exhaustive, bad), seconds, caught in results:
            print('%-13s %5d events, %3d syncs, %3d crash states (%d of the %d subsets of small epochs), %d bad, %.0f s'
                  % (name, events, syncs, states, exhaustive[0], exhaustive[1], len(bad), seconds))
            if caught:
                print('  control: without sync event %d, %d of %d crash states break the rules' % caught)
            for why in bad[:4]:
                print('  ' + why)
            if not events or not syncs:
                bad.append('nothing recorded')
                print('  nothing recorded: is the preload working?')
            failed += 1 if bad else 0
            passed += 0 if bad else 1
    finally:
        shutil.rmtree(top, ignore_errors=True)
    print('%d passed, %d failed' % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()

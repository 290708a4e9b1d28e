#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Kills the writing tools at every pwrite64, fsync and ftruncate they make (strace's syscall
fault injection, signal=KILL), then checks what a crash there leaves:

- after `fsck.cbd -fy`, a second `fsck.cbd -fn` is clean and the independent checker
  (Tests/fsck/cbdimg.py) finds the device consistent;
- every logical block reads as its old or its new content (the independent reader), never a
  mix: a straddling table entry half written, a pblk reused too early;
- a conversion leaves no output or a complete one.

usage: crashpoints.py BIN_DIR [SCENARIO ...]   (scenarios: write discard fsck resize convert full)
Prints one line per scenario and 'N passed, N failed' at the end; exit 1 on any failure.

A scenario with more kill points than CBD_CRASH_POINTS (default 24) is killed at a sample of
them, drawn with a fixed seed (the same points every run) and always holding the first and
the last five: the suite's time stays bounded as the tools grow. CBD_CRASH_POINTS=0 kills at
every point.
"""
import collections
import concurrent.futures
import contextlib
import io
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'fsck'))
import cbdimg  # noqa: E402  (the independent reader and checker)

SYSCALLS = ('pwrite64', 'fsync', 'ftruncate')
BS = 65536            # 64 KiB blocks: 34-byte entries, lblk 120 straddles table pblks
NR_LBLK = 300
CHANGED = (119, 120, 121)


def sh(args, cwd, stdin=None):
    with open(stdin or os.devnull, 'rb') as f:
        return subprocess.run(args, cwd=cwd, stdin=f, capture_output=True)


def raw_data(seed):
    """NR_LBLK blocks: random (raw when stored) every third, zeros every seventh, text-like else."""
    rng = random.Random(seed)
    out = bytearray()
    for n in range(NR_LBLK):
        if n % 7 == 0:
            out += bytes(BS)
        elif n % 3 == 0:
            out += rng.randbytes(BS)
        else:
            word = (b'block %d seed %d ' % (n, seed)) * 8
            out += (word * (BS // len(word) + 1))[:BS]
    return bytes(out)


def blocks(path):
    """Each logical block's bytes by the independent reader, None where it cannot be read."""
    img = cbdimg.Image(path)
    lz4 = cbdimg.liblz4()
    raw_len = (1 << (8 * img.len_bytes)) - 1
    out = []
    for n in range(img.nr_lblk):
        try:
            length, slots = img.entry(n)
            if length == 0:
                out.append(bytes(img.lblk_size))
                continue
            data = b''.join(img.read(p * cbdimg.PBLK, cbdimg.PBLK) for p in slots if p)
            if length == raw_len:
                out.append(data if len(data) == img.lblk_size else None)
                continue
            import ctypes
            dst = ctypes.create_string_buffer(img.lblk_size)
            got = lz4.LZ4_decompress_safe(data[:length], dst, length, img.lblk_size)
            out.append(dst.raw if got == img.lblk_size else None)
        except Exception:
            out.append(None)
    return out


def trace_counts(cmd, cwd, stdin):
    """How many times the command makes each syscall (threads included)."""
    log = os.path.join(cwd, 'trace.log')
    with open(stdin or os.devnull, 'rb') as f:
        subprocess.run(['strace', '-f', '-qq', '-o', log, '-e', 'trace=' + ','.join(SYSCALLS)] + cmd,
                       cwd=cwd, stdin=f, capture_output=True)
    counts = collections.Counter()
    pattern = re.compile(r'^\d+\s+(%s)\(' % '|'.join(SYSCALLS))
    with open(log) as f:
        for line in f:
            m = pattern.match(line)
            if m:
                counts[m.group(1)] += 1
    return counts


class Scenario:
    """A device (base), a command that changes it, and the contents allowed after a crash."""

    def __init__(self, name, work, bin_dir):
        self.name, self.work, self.bin = name, work, bin_dir
        self.stdin = None

    def tool(self, name):
        return os.path.join(self.bin, name)

    def points(self):
        """Every kill point of the command, or a fixed sample of them (CBD_CRASH_POINTS)."""
        probe = os.path.join(self.work, 'probe')
        os.makedirs(probe)
        self.prepare(probe)
        counts = trace_counts(self.command(), probe, self.stdin)
        shutil.rmtree(probe)
        every = [(s, n) for s in SYSCALLS for n in range(1, counts[s] + 1)]
        limit = int(os.environ.get('CBD_CRASH_POINTS', '24'))
        if limit <= 0 or len(every) <= limit:
            return every
        ends = set(every[:5] + every[-5:]) | {(s, counts[s]) for s in SYSCALLS if counts[s]}
        rest = [p for p in every if p not in ends]
        return sorted(ends | set(random.Random(self.name).sample(rest, max(0, limit - len(ends)))))

    def crash_at(self, syscall, n):
        d = tempfile.mkdtemp(dir=self.work)
        try:
            self.prepare(d)
            inject = ['strace', '-f', '-qq', '-o', '/dev/null', '-e', 'trace=' + syscall,
                      '-e', 'inject=%s:signal=KILL:when=%d' % (syscall, n)]
            sh(inject + self.command(), d, self.stdin)
            return self.verify(d)
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def repaired(self, d, dev='dev.cbd'):
        """fsck -fy, then a clean second run and the independent checker; None when all hold."""
        first = sh([self.tool('fsck.cbd'), '-fy', dev], d)
        if first.returncode not in (0, 1):
            return 'fsck -fy exit %d: %s' % (first.returncode, (first.stdout + first.stderr).decode()[-300:])
        second = sh([self.tool('fsck.cbd'), '-fn', dev], d)
        if second.returncode != 0:
            return 'fsck -fn after repair exit %d: %s' % (second.returncode, second.stdout.decode()[-300:])
        problems = cbdimg.check(cbdimg.Image(os.path.join(d, dev)))
        if problems:
            return 'independent check: ' + '; '.join(problems[:3])
        return None

    def old_or_new(self, d, dev='dev.cbd'):
        got = blocks(os.path.join(d, dev))
        for n, b in enumerate(got):
            if b is None or (b != self.old[n] and b != self.new[n]):
                return 'block %d is %s' % (n, 'unreadable' if b is None else 'neither old nor new')
        return None

    def verify(self, d):
        return self.repaired(d) or self.old_or_new(d)


class DeviceScenario(Scenario):
    """A command on a copy of a 64 KiB-block device converted from raw_data(1)."""
    ok_codes = (0,)

    def setup(self):
        with open(os.path.join(self.work, 'raw.img'), 'wb') as f:
            f.write(raw_data(1))
        r = sh([self.tool('cbd'), 'convert', '-q', '-b', '64K', '-s', '40M', 'raw.img', 'base.cbd'], self.work)
        assert r.returncode == 0, r.stderr
        self.damage(os.path.join(self.work, 'base.cbd'))
        self.old = blocks(os.path.join(self.work, 'base.cbd'))

    def damage(self, path):
        pass

    def prepare(self, d):
        shutil.copy(os.path.join(self.work, 'base.cbd'), os.path.join(d, 'dev.cbd'))

    def reference(self):
        """The new contents: the command run to the end."""
        d = tempfile.mkdtemp(dir=self.work)
        self.prepare(d)
        r = sh(self.command(), d, self.stdin)
        assert r.returncode in self.ok_codes, r.stdout + r.stderr
        self.new = blocks(os.path.join(d, 'dev.cbd'))
        shutil.rmtree(d)


class Write(DeviceScenario):
    def setup(self):
        super().setup()
        self.stdin = os.path.join(self.work, 'new.bin')
        new = raw_data(2)
        with open(self.stdin, 'wb') as f:
            f.write(new[CHANGED[0] * BS:(CHANGED[-1] + 1) * BS])
        self.reference()

    def command(self):
        return [self.tool('cbd'), 'write', '-o', str(CHANGED[0] * BS), 'dev.cbd']


class Discard(DeviceScenario):
    def setup(self):
        super().setup()
        self.reference()

    def command(self):
        return [self.tool('cbd'), 'discard', '-o', str(CHANGED[0] * BS), '-l', str(len(CHANGED) * BS), 'dev.cbd']


class Fsck(DeviceScenario):
    """Repairs that rewrite straddling entries: a raw block (120) sharing a pblk with another
    (3) gets a clone; a malformed entry (240) is cleared."""
    ok_codes = (1,)

    def damage(self, path):
        img = cbdimg.Image(path)
        _, slots3 = img.entry(3)
        length, slots = img.entry(120)
        assert length == 0xFFFF, 'lblk 120 should be raw'
        slots[2] = slots3[2]
        img.set_entry(120, length, slots)
        _, slots240 = img.entry(240)
        img.set_entry(240, 0xFFF0, slots240)

    def setup(self):
        super().setup()
        self.reference()

    def command(self):
        return [self.tool('fsck.cbd'), '-fy', 'dev.cbd']


class Resize(Scenario):
    """A shrink that moves blocks placed at random by the independent writer: nothing changes."""

    def setup(self):
        with open(os.path.join(self.work, 'raw.img'), 'wb') as f:
            f.write(raw_data(3))
        with contextlib.redirect_stdout(io.StringIO()):   # its counts line
            cbdimg.write_image(os.path.join(self.work, 'base.cbd'), os.path.join(self.work, 'raw.img'),
                               40 << 20, 4, 9, 7)
        self.old = self.new = blocks(os.path.join(self.work, 'base.cbd'))

    def prepare(self, d):
        shutil.copy(os.path.join(self.work, 'base.cbd'), os.path.join(d, 'dev.cbd'))

    def command(self):
        return [self.tool('cbd'), 'resize', 'dev.cbd', '24M']


class Convert(Scenario):
    """raw -> cbd over an existing output (-f): the old output stays whole, or the new one is
    complete; then cbd -> raw into a new file: absent, or every byte."""

    def setup(self):
        self.raw = raw_data(4)
        with open(os.path.join(self.work, 'raw.img'), 'wb') as f:
            f.write(self.raw)
        r = sh([self.tool('cbd'), 'convert', '-q', '-b', '16K', 'raw.img', 'old.cbd'], self.work)
        assert r.returncode == 0, r.stderr
        self.old = blocks(os.path.join(self.work, 'old.cbd'))

    def prepare(self, d):
        os.symlink(os.path.join(self.work, 'raw.img'), os.path.join(d, 'raw.img'))
        shutil.copy(os.path.join(self.work, 'old.cbd'), os.path.join(d, 'dev.cbd'))

    def command(self):
        return [self.tool('cbd'), 'convert', '-q', '-f', '-b', '64K', 'raw.img', 'dev.cbd']

    def verify(self, d):
        dev = os.path.join(d, 'dev.cbd')
        got = blocks(dev)
        if got == self.old:
            return None
        if b''.join(b or b'' for b in got)[:len(self.raw)] != self.raw:
            return 'output is neither the old device nor the whole new one'
        return self.repaired(d)


class ConvertBack(Convert):
    def prepare(self, d):
        shutil.copy(os.path.join(self.work, 'old.cbd'), os.path.join(d, 'dev.cbd'))

    def command(self):
        return [self.tool('cbd'), 'convert', '-q', 'dev.cbd', 'out.raw']

    def verify(self, d):
        out = os.path.join(d, 'out.raw')
        if not os.path.exists(out):
            return None
        with open(out, 'rb') as f:
            data = f.read()
        return None if data[:len(self.raw)] == self.raw else 'out.raw exists but is not the whole image'


class FullDevice(DeviceScenario):
    """The device of the other scenarios, made full: a 7 MiB physical size, then random blocks
    and one-pblk blocks written at its unallocated lblks until not one pblk is free."""

    def setup(self):
        with open(os.path.join(self.work, 'raw.img'), 'wb') as f:
            f.write(raw_data(1))
        base = os.path.join(self.work, 'base.cbd')
        r = sh([self.tool('cbd'), 'convert', '-q', '-b', '64K', '-s', '7M', 'raw.img', 'base.cbd'], self.work)
        assert r.returncode == 0, r.stderr
        rng = random.Random(5)
        holes = [n for n in range(NR_LBLK) if cbdimg.Image(base).entry(n)[0] == 0]
        for make in (lambda: rng.randbytes(BS), lambda: rng.randbytes(2000) + bytes(BS - 2000)):
            while holes:
                data = os.path.join(self.work, 'fill.bin')
                with open(data, 'wb') as f:
                    f.write(make())
                if sh([self.tool('cbd'), 'write', '-o', str(holes[0] * BS), 'base.cbd'], self.work, data).returncode:
                    break
                holes.pop(0)
        img = cbdimg.Image(base)
        used = {p for p, _ in img.used()}
        assert all(p in used for z in range(img.nr_zones) for p in range(img.data_start(z), img.data_end(z))), \
            'the device is not full'
        self.damage(base)
        self.old = blocks(base)
        self.reference()


class FullDiscard(FullDevice):
    """A discard of lblks 119-121 (120's entry straddles) on the full device: it needs no space."""

    def command(self):
        return [self.tool('cbd'), 'discard', '-o', str(CHANGED[0] * BS), '-l', str(len(CHANGED) * BS), 'dev.cbd']


class FullFsck(FullDevice):
    """fsck -y clears the malformed straddling entry of lblk 120 on the full device."""
    ok_codes = (1,)

    def damage(self, path):
        img = cbdimg.Image(path)
        length, slots = img.entry(120)
        assert length == 0xFFFF, 'lblk 120 should be raw'
        img.set_entry(120, 0xFFF0, slots)

    def command(self):
        return [self.tool('fsck.cbd'), '-fy', 'dev.cbd']


SCENARIOS = {'write': [Write], 'discard': [Discard], 'fsck': [Fsck], 'resize': [Resize],
             'convert': [Convert, ConvertBack], 'full': [FullDiscard, FullFsck]}


def main():
    bin_dir = os.path.abspath(sys.argv[1])
    names = sys.argv[2:] or list(SCENARIOS)
    base = '/dev/shm' if os.path.isdir('/dev/shm') else None
    passed = failed = 0
    with tempfile.TemporaryDirectory(dir=base, prefix='cbd-crash-') as top:
        for name in names:
            for cls in SCENARIOS[name]:
                work = os.path.join(top, cls.__name__)
                os.makedirs(work)
                sc = cls(cls.__name__.lower(), work, bin_dir)
                sc.setup()
                points = sc.points()
                with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
                    results = list(pool.map(lambda p: (p, sc.crash_at(*p)), points))
                bad = [(p, why) for p, why in results if why]
                print('%-12s %4d kill points, %d bad' % (sc.name, len(points), len(bad)))
                for (syscall, n), why in bad[:5]:
                    print('  killed at %s #%d: %s' % (syscall, n, why))
                if not points:
                    bad = [(None, 'no syscall traced')]
                    print('  no syscall traced: is strace working?')
                failed += 1 if bad else 0
                passed += 0 if bad else 1
    print('%d passed, %d failed' % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()

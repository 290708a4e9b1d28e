#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Throws damaged devices of an independent writer at every tool (make hostile).

For each seed: cbdimg.py write-image builds a device (random block size, zone shift,
one or several zones, blocks scattered over every zone, compressed or raw), random bytes
of its header, tables, bitmaps and data are changed, sometimes a whole header, bitmap or table
pblk is zeroed or a reserved header byte set, sometimes the file is cut short.
Then every read-only tool runs on it (cbddump views, cbd info/read/convert, fsck -n,
resize -P): none may crash, hang, die of a signal, or change the file. fsck.cbd -fy -c
(saving orphans to a lost+found folder) must then either refuse the header (exit 8, file
unchanged: no layout, or several, fit the zones) or leave a device that a
second run finds clean and cbdimg.py's own checker finds consistent, also after
cbd resize -M.

usage: scripts/hostile.py BIN_DIR FIRST_SEED COUNT
"""
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CBDIMG = os.path.join(HERE, '..', 'Tests', 'fsck', 'cbdimg.py')


def run(args, timeout=120):
    try:
        r = subprocess.run(args, capture_output=True, timeout=timeout)
        return r.returncode, r.stdout.decode(errors='replace'), r.stderr.decode(errors='replace')
    except subprocess.TimeoutExpired:
        return 'timeout', '', ''


def digest(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def died(rc):
    return rc == 'timeout' or rc < 0 or rc >= 128


def build(work, rng, seed):
    """A foreign device with 4..80 blocks; returns (path, blocks, physical bytes) or None."""
    raw, img = os.path.join(work, 'raw.img'), os.path.join(work, 'd.cbd')
    shift = rng.choice([0, 1, 2, 4, 4, 5, 8])
    lblk = 4096 << shift
    blocks = rng.randrange(4, 80)
    subprocess.run(['python3', CBDIMG, raw, 'make-raw', str(blocks * lblk - rng.randrange(0, 4096)), str(seed)], check=True)
    phys = blocks * lblk + rng.choice([2 << 20, 2 << 20, 200 << 20, 300 << 20])
    for zs in range(max(0, (blocks - 1).bit_length() - rng.choice([0, 1, 2, 3])), 25):
        r = subprocess.run(['python3', CBDIMG, img, 'write-image', raw, str(phys), str(shift), str(zs), str(seed)],
                           capture_output=True)
        if r.returncode == 0:
            return img, blocks, phys
    return None


def damage(img, rng):
    with open(img, 'rb') as f:
        data = bytearray(f.read())
    for _ in range(rng.randrange(1, 40)):
        where = rng.random()
        off = (rng.randrange(0, 32) if where < 0.02 else
               4096 + rng.randrange(0, 4096 * 3) if where < 0.6 else rng.randrange(0, len(data)))
        data[off] = rng.randrange(256)
    # What disks really do to whole pblks: the header, a bitmap or a table pblk zeroed, a
    # reserved header byte set (each then repaired by fsck.cbd: found again, saved, relinked).
    kind = rng.random()
    if kind < 0.1:
        data[0:4096] = bytes(4096)
    elif kind < 0.2:
        data[4096:8192] = bytes(4096)
    elif kind < 0.35:
        p = rng.randrange(2, 6)
        data[p * 4096:(p + 1) * 4096] = bytes(4096)
    elif kind < 0.4:
        data[rng.randrange(64, 4096)] = rng.randrange(1, 256)
    if rng.random() < 0.1:
        data = data[:rng.randrange(0, len(data))]
    with open(img, 'wb') as f:
        f.write(data)


def main():
    bin_dir, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    tool = lambda name: os.path.join(bin_dir, name)
    failures = refused = repaired = 0
    for seed in range(first, first + count):
        rng = random.Random(seed)
        work = tempfile.mkdtemp(prefix='cbd-hostile-')
        try:
            built = build(work, rng, seed)
            if built is None:
                print(f'seed {seed}: write-image found no valid zone shift'); failures += 1
                continue
            img, blocks, phys = built
            damage(img, rng)
            before = digest(img)

            def fail(msg):
                nonlocal failures
                print(f'seed {seed}: {msg}'); failures += 1

            readers = [
                [tool('cbddump'), img], [tool('cbddump'), '--json', img], [tool('cbddump'), '--zone', '0', img],
                [tool('cbddump'), '--lblk', str(rng.randrange(blocks)), '--json', img],
                [tool('cbddump'), '--pblk', str(rng.randrange(phys // 4096)), '--hex', img],
                [tool('cbd'), 'info', '--json', img], [tool('cbd'), 'read', img],
                [tool('fsck.cbd'), '-fn', img], [tool('fsck.cbd'), '-fn', '-c', img],
                [tool('cbd'), 'resize', '-P', img], [tool('cbd'), 'convert', '-q', img, os.path.join(work, 'out.raw')],
            ]
            for args in readers:
                rc, _, err = run(args)
                if died(rc):
                    fail(f'{os.path.basename(args[0])} {" ".join(args[1:-1])}: {rc} {err[-300:]}')
                elif 'unexpected end of device' in err and 'header' not in err:
                    # the header passed, so every read must stay inside the device
                    fail(f'{os.path.basename(args[0])} {" ".join(args[1:-1])} read past the device: {err[-300:]}')
            if digest(img) != before:
                fail('a read-only tool changed the device')
            lost_found = os.path.join(work, 'lost+found')
            rc, _, err = run([tool('fsck.cbd'), '-fy', '-c', '--lost-found', lost_found, img])
            if died(rc):
                fail(f'fsck -fy: {rc} {err[-300:]}'); continue
            if rc & 8:
                refused += 1
                if digest(img) != before:
                    fail(f'fsck exit {rc} but the device changed')
                continue
            repaired += 1
            rc, out, _ = run([tool('fsck.cbd'), '-fy', '-c', '--lost-found', lost_found, img])
            if rc != 0:
                fail(f'second fsck -fy: exit {rc}: {out[-400:]}')
            rc, out, err = run(['python3', CBDIMG, img, 'check'])
            if rc != 0:
                fail(f'independent check after fsck: {out[:300]}{err[-200:]}')
            rc, _, err = run([tool('cbd'), 'resize', '-M', '-z', os.path.join(work, 'undo'), img])
            if died(rc):
                fail(f'resize -M: {rc} {err[-300:]}')
            rc, out, err = run(['python3', CBDIMG, img, 'check'])
            if rc != 0:
                fail(f'independent check after resize -M: {out[:300]}{err[-200:]}')
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(f'seeds {first}..{first + count - 1}: {failures} failures, {refused} headers refused '
          f'(device unchanged), {repaired} repaired and checked')
    sys.exit(1 if failures else 0)


if __name__ == '__main__':
    main()

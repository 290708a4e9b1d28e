#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""An independent little reader/writer of the CBD format (format-v1), for building damaged
test images. It implements the geometry from the format page by itself, so the tests do
not trust the library they test.

usage: cbdimg.py IMAGE COMMAND [ARGS]
  make-raw SIZE SEED        write IMAGE as raw test data: text, random and zero blocks
  info                      print the geometry as key=value lines
  entry N                   print lblk N's entry: LEN SLOT0,SLOT1,...
  set-entry N LEN SLOTS     write lblk N's entry (SLOTS comma separated, missing = 0)
  bit Z K                   print bit K of zone Z's bitmap
  set-bit Z K 0|1           set or clear bit K of zone Z's bitmap
  poke OFFSET HEX           write bytes at a byte offset
  set-dirty 0|1             set or clear the header's DIRTY flag
  used                      print the data pblks used by entries: PBLK LBLK per line
  write-image RAW PHYS_BYTES LBLK_SHIFT ZONE_SHIFT SEED
                            write IMAGE as a new device holding the bytes of RAW, placed
                            like another writer might: each block in a random free pblk of
                            any zone, slots out of order, compressed (liblz4 through ctypes)
                            or raw at random, zero blocks unallocated or stored compressed
  read-image OUT            write the logical device to OUT (this reader, not the tools')
  check                     the consistency rules of format-v1, checked here: print each
                            problem, exit 1 if any
"""
import ctypes
import ctypes.util
import random
import struct
import sys

PBLK = 4096


class Image:
    def __init__(self, path):
        self.path = path
        with open(path, 'rb') as f:
            h = f.read(PBLK)
        assert h[:4] == b'CBD*', 'not a CBD image'
        (self.major, self.minor, phys, logi, self.lblk_shift, self.zone_shift,
         self.flags, self.algorithm) = struct.unpack_from('<HHQQHHHB', h, 4)
        self.nr_pblk = phys // 8
        self.lblk_size = PBLK << self.lblk_shift
        self.slots = 1 << self.lblk_shift
        self.nr_lblk = logi // (8 << self.lblk_shift)
        self.lblk_per_zone = 1 << self.zone_shift
        self.len_bytes = 2 if self.lblk_size <= 65536 else 4
        self.pblk_bytes = 2 if self.nr_pblk <= 1 << 16 else 4 if self.nr_pblk <= 1 << 32 else 6
        self.entry_len = self.len_bytes + self.pblk_bytes * self.slots
        self.table_blocks = -(-self.lblk_per_zone * self.entry_len // PBLK)
        self.zone_span = 1 + self.table_blocks + 32768
        self.nr_zones = -(-(self.nr_pblk - 1) // self.zone_span)

    def zone_start(self, z): return 1 + z * self.zone_span
    def data_start(self, z): return self.zone_start(z) + 1 + self.table_blocks
    def data_end(self, z): return min(self.zone_start(z) + self.zone_span, self.nr_pblk)

    def read(self, off, n):
        with open(self.path, 'rb') as f:
            f.seek(off)
            return f.read(n)

    def write(self, off, data):
        with open(self.path, 'r+b') as f:
            f.seek(off)
            f.write(data)

    def entry_offset(self, n):
        z = n >> self.zone_shift
        return (self.zone_start(z) + 1) * PBLK + (n & (self.lblk_per_zone - 1)) * self.entry_len

    def entry(self, n):
        b = self.read(self.entry_offset(n), self.entry_len)
        length = int.from_bytes(b[:self.len_bytes], 'little')
        slots = [int.from_bytes(b[self.len_bytes + i * self.pblk_bytes:self.len_bytes + (i + 1) * self.pblk_bytes], 'little')
                 for i in range(self.slots)]
        return length, slots

    def set_entry(self, n, length, slots):
        b = length.to_bytes(self.len_bytes, 'little')
        for i in range(self.slots):
            b += (slots[i] if i < len(slots) else 0).to_bytes(self.pblk_bytes, 'little')
        self.write(self.entry_offset(n), b)

    def bit(self, z, k):
        byte = self.read(self.zone_start(z) * PBLK + k // 8, 1)[0]
        return (byte >> (k % 8)) & 1

    def set_bit(self, z, k, v):
        off = self.zone_start(z) * PBLK + k // 8
        byte = self.read(off, 1)[0]
        byte = byte | (1 << (k % 8)) if v else byte & ~(1 << (k % 8))
        self.write(off, bytes([byte]))

    def used(self):
        out = []
        for n in range(self.nr_lblk):
            length, slots = self.entry(n)
            out += [(s, n) for s in slots if s]
        return out


def liblz4():
    lib = ctypes.CDLL(ctypes.util.find_library('lz4') or 'liblz4.so.1')
    lib.LZ4_compress_default.restype = ctypes.c_int
    lib.LZ4_compress_default.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
    lib.LZ4_decompress_safe.restype = ctypes.c_int
    lib.LZ4_decompress_safe.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
    return lib


def write_image(path, raw_path, phys, lblk_shift, zone_shift, seed):
    """A device written by a writer other than the tools: format-v1's rules, its own choices."""
    rng = random.Random(seed)
    lz4 = liblz4()
    with open(raw_path, 'rb') as f:
        raw = f.read()
    lblk_size = PBLK << lblk_shift
    nr_lblk = max(1, -(-len(raw) // lblk_size))
    header = bytearray(PBLK)
    struct.pack_into('<4sHHQQHHHB', header, 0, b'CBD*', 1, 0, phys // 512, nr_lblk * lblk_size // 512,
                     lblk_shift, zone_shift, 0, 0)
    with open(path, 'wb') as f:
        f.truncate(phys)
    with open(path, 'r+b') as f:
        f.write(header)
    img = Image(path)
    assert img.nr_zones >= 1 and img.data_end(img.nr_zones - 1) > img.data_start(img.nr_zones - 1), 'geometry'
    assert nr_lblk <= img.nr_zones * img.lblk_per_zone, 'zone shift too small'
    free = [p for z in range(img.nr_zones) for p in range(img.data_start(z), img.data_end(z))]
    rng.shuffle(free)
    used = set()
    raw_len = (1 << (8 * img.len_bytes)) - 1
    counts = {'unallocated': 0, 'compressed': 0, 'raw': 0}
    with open(path, 'r+b') as f:
        for n in range(nr_lblk):
            block = raw[n * lblk_size:(n + 1) * lblk_size].ljust(lblk_size, b'\0')
            zero = block.count(0) == lblk_size
            if zero and (lblk_shift == 0 or rng.random() < 0.5):
                counts['unallocated'] += 1
                continue
            dst = ctypes.create_string_buffer(lblk_size + lblk_size // 255 + 16)
            clen = lz4.LZ4_compress_default(block, dst, lblk_size, len(dst))
            if 0 < clen <= lblk_size - PBLK and rng.random() < 0.8:
                length, data = clen, dst.raw[:clen]
                counts['compressed'] += 1
            else:
                length, data = raw_len, block
                counts['raw'] += 1
            nslots = -(-len(data) // PBLK)
            slots = [free.pop() for _ in range(nslots)]
            assert not used.intersection(slots)
            used.update(slots)
            for i, p in enumerate(slots):
                f.seek(p * PBLK)
                f.write(data[i * PBLK:(i + 1) * PBLK])
            img.set_entry(n, length, slots)
    for z in range(img.nr_zones):
        bits = bytearray(PBLK)
        for k in range(8 * PBLK):
            p = img.data_start(z) + k
            if p >= img.data_end(z) or p in used:
                bits[k >> 3] |= 1 << (k & 7)
        img.write(img.zone_start(z) * PBLK, bytes(bits))
    print(' '.join(f'{k}={v}' for k, v in counts.items()))


def read_image(img, out_path):
    lz4 = liblz4()
    raw_len = (1 << (8 * img.len_bytes)) - 1
    with open(out_path, 'wb') as out:
        for n in range(img.nr_lblk):
            length, slots = img.entry(n)
            if length == 0:
                block = bytes(img.lblk_size)
            else:
                data = b''.join(img.read(p * PBLK, PBLK) for p in slots if p)
                if length == raw_len:
                    block = data
                else:
                    dst = ctypes.create_string_buffer(img.lblk_size)
                    got = lz4.LZ4_decompress_safe(data[:length], dst, length, img.lblk_size)
                    assert got == img.lblk_size, f'lblk {n}: decompressed to {got}'
                    block = dst.raw
            out.write(block)


def check(img):
    """format-v1's consistency rules 1-6, independently of the tools; returns problem lines."""
    import os
    problems = []
    lz4 = liblz4()
    if img.nr_pblk * PBLK > os.path.getsize(img.path):
        return [f'header: {img.nr_pblk} pblks but the file is smaller']
    raw_len = (1 << (8 * img.len_bytes)) - 1
    owner = {}
    def data_zone(p):
        if p < 1: return None
        z = (p - 1) // img.zone_span
        return z if z < img.nr_zones and img.data_start(z) <= p < img.data_end(z) else None
    for z in range(img.nr_zones):
        table = img.read((img.zone_start(z) + 1) * PBLK, img.table_blocks * PBLK)
        tail = table[img.lblk_per_zone * img.entry_len:]
        if tail.count(0) != len(tail):
            problems.append(f'zone {z}: table padding not zero')
        for i in range(img.lblk_per_zone):
            n = z * img.lblk_per_zone + i
            b = table[i * img.entry_len:(i + 1) * img.entry_len]
            if n >= img.nr_lblk:
                if b.count(0) != len(b): problems.append(f'lblk {n}: entry beyond the logical size')
                continue
            length = int.from_bytes(b[:img.len_bytes], 'little')
            slots = [int.from_bytes(b[img.len_bytes + k * img.pblk_bytes:img.len_bytes + (k + 1) * img.pblk_bytes], 'little')
                     for k in range(img.slots)]
            if length == 0:
                need = 0
            elif length == raw_len:
                need = img.slots
            elif length <= img.lblk_size - PBLK:
                need = -(-length // PBLK)
            else:
                problems.append(f'lblk {n}: bad length {length}'); continue
            if any(s == 0 for s in slots[:need]) or any(s != 0 for s in slots[need:]):
                problems.append(f'lblk {n}: slots do not match length {length}'); continue
            for p in slots[:need]:
                if data_zone(p) is None: problems.append(f'lblk {n}: pblk {p} outside the data areas')
                elif p in owner: problems.append(f'pblk {p}: used by lblk {owner[p]} and lblk {n}')
                else: owner[p] = n
            if 0 < length < raw_len and all(data_zone(p) is not None for p in slots[:need]):
                data = b''.join(img.read(p * PBLK, PBLK) for p in slots[:need])[:length]
                dst = ctypes.create_string_buffer(img.lblk_size)
                if lz4.LZ4_decompress_safe(data, dst, length, img.lblk_size) != img.lblk_size:
                    problems.append(f'lblk {n}: does not decompress to one block')
    for z in range(img.nr_zones):
        bits = img.read(img.zone_start(z) * PBLK, PBLK)
        count = img.data_end(z) - img.data_start(z)
        for k in range(8 * PBLK):
            bit = (bits[k >> 3] >> (k & 7)) & 1
            p = img.data_start(z) + k
            if k >= count:
                if not bit: problems.append(f'zone {z}: padding bit {k} clear')
            elif bit != (p in owner):
                problems.append(f'pblk {p}: bitmap says {"used" if bit else "free"}, entries say {"used" if p in owner else "free"}')
    return problems


def make_raw(path, size, seed):
    rng = random.Random(seed)
    words = b'the quick brown fox jumps over the lazy dog compressed block device zone entry '
    out = bytearray()
    while len(out) < size:
        kind = rng.randrange(4)
        if kind == 0:
            out += bytes(65536)
        elif kind == 1:
            out += bytes(rng.randrange(256) for _ in range(65536))
        else:
            out += b''.join(words[rng.randrange(len(words) - 8):][:8] for _ in range(8192))
    with open(path, 'wb') as f:
        f.write(out[:size])


def main(argv):
    path, cmd, args = argv[1], argv[2], argv[3:]
    if cmd == 'make-raw':
        make_raw(path, int(args[0]), int(args[1]))
        return
    if cmd == 'write-image':
        write_image(path, args[0], int(args[1]), int(args[2]), int(args[3]), int(args[4]))
        return
    img = Image(path)
    if cmd == 'check':
        problems = check(img)
        for line in problems:
            print(line)
        sys.exit(1 if problems else 0)
    elif cmd == 'read-image':
        read_image(img, args[0])
    elif cmd == 'info':
        for k in ('nr_pblk', 'nr_lblk', 'lblk_size', 'lblk_per_zone', 'entry_len', 'table_blocks', 'nr_zones'):
            print(f'{k}={getattr(img, k)}')
        for z in range(img.nr_zones):
            print(f'zone{z}_data={img.data_start(z)}-{img.data_end(z) - 1}')
    elif cmd == 'entry':
        length, slots = img.entry(int(args[0]))
        print(length, ','.join(map(str, slots)))
    elif cmd == 'set-entry':
        slots = [int(s) for s in args[2].split(',')] if len(args) > 2 and args[2] else []
        img.set_entry(int(args[0]), int(args[1], 0), slots)
    elif cmd == 'bit':
        print(img.bit(int(args[0]), int(args[1])))
    elif cmd == 'set-bit':
        img.set_bit(int(args[0]), int(args[1]), int(args[2]))
    elif cmd == 'poke':
        img.write(int(args[0], 0), bytes.fromhex(args[1]))
    elif cmd == 'set-dirty':
        flags = (img.flags | 1) if int(args[0]) else (img.flags & ~1)
        img.write(28, struct.pack('<H', flags))
    elif cmd == 'free':
        # The first N data pblks that no entry uses, comma-separated (for filling a device).
        used = {p for p, _ in img.used()}
        free = [p for z in range(img.nr_zones) for p in range(img.data_start(z), img.data_end(z)) if p not in used]
        print(','.join(map(str, free[:int(args[0])])))
    elif cmd == 'set-intent':
        # A pending intent record (format 1.1): the current entries of the given lblks saved
        # in the first data pblk that is neither used nor marked, named from the header.
        lblks = [int(a) for a in args]
        payload = b''.join(struct.pack('<Q', n) + img.read(img.entry_offset(n), img.entry_len) for n in lblks)
        assert len(payload) <= PBLK, 'one journal pblk only'
        used = {p for p, _ in img.used()}
        journal = next(p for z in range(img.nr_zones) for p in range(img.data_start(z), img.data_end(z))
                       if p not in used and not img.bit(z, p - img.data_start(z)))
        img.write(journal * PBLK, payload.ljust(PBLK, b'\0'))
        img.write(6, struct.pack('<H', 1))
        img.write(28, struct.pack('<H', img.flags | 1))
        img.write(64, b'INTN' + struct.pack('<IIIQQ', len(lblks), 1, 0, len(payload), journal))
    elif cmd == 'used':
        for p, n in img.used():
            print(p, n)
    else:
        sys.exit(f'unknown command {cmd}')


if __name__ == '__main__':
    main(sys.argv)

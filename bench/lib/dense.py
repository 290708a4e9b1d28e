#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Fills the metadata of a freshly made CBD image as a densely written device would have it:
the first ZONES zones' bitmaps full and every lblk of those zones compressed into 4 pblks of its
own zone (len 16000; the data pblks stay holes and read as zeros). Also writes META, the same
bitmap and table bytes back to back: what `dd` reads as fsck's floor. Usage: dense.py IMG ZONES META
"""
import struct, sys

PBLK = 4096


def main(img, zones, meta_path):
    with open(img, 'r+b') as f, open(meta_path, 'wb') as meta:
        h = f.read(PBLK)
        assert h[:4] == b'CBD*', 'not a CBD image'
        phys, logi, lblk_shift, zone_shift = struct.unpack_from('<QQHH', h, 8)
        nr_pblk, slots, per_zone = phys // 8, 1 << lblk_shift, 1 << zone_shift
        assert (PBLK << lblk_shift) == 65536 and 1 << 16 < nr_pblk <= 1 << 32, 'made for 64 KiB blocks, u32 pblks'
        entry = 2 + 4 * slots
        table_blocks = -(-per_zone * entry // PBLK)
        span = 1 + table_blocks + 32768
        lblks = min(per_zone, 32768 // 4, logi // 8 // slots - 1)
        fmt = struct.Struct('<H4I')
        for z in range(zones):
            start = 1 + z * span
            first = start + 1 + table_blocks
            bitmap = bytearray(PBLK)
            bitmap[:lblks * 4 // 8] = b'\xff' * (lblks * 4 // 8)
            table = bytearray(table_blocks * PBLK)
            for i in range(lblks):
                p = first + 4 * i
                fmt.pack_into(table, i * entry, 16000, p, p + 1, p + 2, p + 3)
            f.seek(start * PBLK)
            f.write(bitmap + table)
            meta.write(bitmap + table)
    print(zones * lblks * 4 * PBLK)


if __name__ == '__main__':
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])

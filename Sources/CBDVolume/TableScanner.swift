// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice
/// Walks a zone's allocation table in reads of about 1 MiB, so that memory stays bounded
/// whatever the table size (up to 2^24 entries of up to 1.5 MiB each). Chunks that are holes
/// in a sparse image, or all zero, hold only unallocated entries and are skipped.
package struct TableScanner {
    static let chunkBytes = 1 << 20
    let device: BlockDevice
    let geometry: Geometry

    package init(device: BlockDevice, geometry: Geometry) {
        self.device = device
        self.geometry = geometry
    }

    /// The zones whose bitmap or table pblks hold data on the device, in order: the others
    /// are holes of a sparse image (an all-zero table, an all-free bitmap), found without
    /// reading them, one SEEK_DATA per zone that holds metadata or data. On a device that
    /// cannot tell (a block device), every zone.
    package func zonesWithMetadata(from first: Int = 0) -> [Int] {
        let g = geometry
        var out: [Int] = []
        var z = first
        while z < g.nrZones, let at = device.nextData(from: g.zoneStart(z) * Units.pblkSize) {
            let p = at / Units.pblkSize
            z = g.zone(spanning: p)
            guard z < g.nrZones else { break }
            if p < g.dataStart(z) { out.append(z) }
            z += 1
        }
        return out
    }

    /// A buffer large enough for one chunk (give one per thread).
    package func makeBuffer() -> ByteBuffer {
        ByteBuffer(count: TableScanner.chunkBytes + 2 * Units.pblkSize + geometry.entryLen)
    }

    /// Calls `body(lblk, entry)` for every entry of zone `z` that is not all zero, in order.
    package func forEachEntry(zone z: Int, buffer: ByteBuffer, _ body: (Int, UnsafeRawPointer) throws -> Void) throws {
        let entryLen = geometry.entryLen
        try forEachChunk(zone: z, buffer: buffer) { first, base, count in
            for i in 0..<count {
                let p = base + i * entryLen
                if isAllZero(p, entryLen) { continue }
                try body(first + i, p)
            }
        }
    }

    /// Calls `body(lblk, entries, count)` for each chunk of zone `z`'s table that may hold
    /// entries: `count` entries back to back from `entries`, the first for `lblk`; chunks
    /// that are holes or all zero are skipped. For a reader whose per-entry work is so small
    /// that a call per entry would be most of it (fsck's pass 1); it skips zero entries itself.
    package func forEachChunk(
        zone z: Int, buffer: ByteBuffer,
        _ body: (Int, UnsafeRawPointer, Int) throws -> Void
    ) throws {
        let g = geometry
        let perChunk = max(1, TableScanner.chunkBytes / g.entryLen)
        var i0 = 0
        while i0 < g.lblkPerZone {
            let i1 = min(g.lblkPerZone, i0 + perChunk)
            // Whole pblks around the chunk's entries (the first and last may straddle).
            let startByte = g.entryOffset(zone: z, index: i0), endByte = g.entryOffset(zone: z, index: i1)
            let bytes =
                startByte / Units.pblkSize * Units.pblkSize..<(endByte + Units.pblkSize - 1) / Units.pblkSize
                * Units.pblkSize
            defer { i0 = i1 }
            if device.isHole(bytes) { continue }
            try device.read(into: buffer[0..<bytes.count], at: bytes.lowerBound)
            let base = UnsafeRawPointer(buffer.base) + (startByte - bytes.lowerBound)
            if isAllZero(base, endByte - startByte) { continue }
            try body((z << g.lblkPerZoneShift) + i0, base, i1 - i0)
        }
    }
}

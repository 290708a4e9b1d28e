// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice
import CBDVolume

/// What a device holds, counted as `dumpe2fs` counts (not as `e2fsck` checks): the pblks its
/// bitmaps mark, and its entries by kind. Only the zones whose metadata holds data are read
/// (one SEEK_DATA each), on all cores, a table chunk at a time: the cost follows what is
/// allocated, and nothing is judged beyond whether each entry decodes. Whether the device
/// is consistent is the checker's question (`cbd info --check`).
public struct DeviceUsage: Sendable, Equatable {
    /// Data pblks the bitmaps mark in use (padding bits of a short last zone not counted).
    public var markedPblks = 0
    public var compressedBlocks = 0
    public var rawBlocks = 0
    /// Pblks the entries name (the compression ratio's denominator).
    public var entryPblks = 0
    /// Entries that do not decode (fsck.cbd repairs them).
    public var damagedEntries = 0

    public init() {}

    /// Counts the device `opened` holds.
    public static func count(_ opened: OpenedDevice) throws -> DeviceUsage {
        let (dev, g) = (opened.device, opened.geometry)
        let scanner = TableScanner(device: dev, geometry: g)
        let zones = scanner.zonesWithMetadata()
        let total = Lock()
        var sum = DeviceUsage()
        try Parallel.forEachSlice(count: zones.count, parts: Parallel.workers) { _, range in
            let buffer = scanner.makeBuffer()
            var part = DeviceUsage()
            for z in zones[range] { try part.add(zone: z, of: g, on: dev, scanner: scanner, buffer: buffer) }
            total.withLock { sum.merge(part) }
        }
        return sum
    }

    /// Adds zone `z`: its bitmap's marks, then each entry of its table.
    private mutating func add(
        zone z: Int, of g: Geometry, on dev: BlockDevice, scanner: TableScanner, buffer: ByteBuffer
    ) throws {
        markedPblks += Bitmap(bytes: try dev.readPblks(g.bitmapPblk(z))).countSet(below: g.dataPblkCount(z))
        let codec = EntryCodec(g)
        let (first, count) = (Pblk(g.dataStart(z)), Pblk(g.dataPblkCount(z)))
        try scanner.forEachEntry(zone: z, buffer: buffer) { n, p in
            guard n < g.nrLblk else { return }
            // The common entry (valid, its pblks in its own zone) is counted without building
            // its pblk array; any other is decoded and checked.
            let used =
                codec.usedSlots(p, within: first, count: count, lenBytes: codec.lenBytes, pblkBytes: codec.pblkBytes)
                ?? (try? codec.decodeChecked(p)).map { $0.pblks.count }
            guard let used else { return damagedEntries += 1 }
            guard used > 0 else { return }  // unallocated
            if codec.length(at: p) == codec.rawLength { rawBlocks += 1 } else { compressedBlocks += 1 }
            entryPblks += used
        }
    }

    private mutating func merge(_ o: DeviceUsage) {
        markedPblks += o.markedPblks
        compressedBlocks += o.compressedBlocks
        rawBlocks += o.rawBlocks
        entryPblks += o.entryPblks
        damagedEntries += o.damagedEntries
    }

    /// The compression ratio of the allocated blocks.
    public func compressionRatio(lblkSize: Int) -> Double {
        Ratios.compression(allocatedBlocks: compressedBlocks + rawBlocks, lblkSize: lblkSize, pblks: entryPblks)
    }
}

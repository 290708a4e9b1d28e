// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice
import CBDVolume

/// A metadata image of a device, for bug reports (as `e2image -r`): a sparse copy of the
/// header, every bitmap and every table pblk that holds data, and the journal pblks of an
/// interrupted update; data pblks are holes, so none of the device's contents leaves it.
/// fsck.cbd finds the same structural problems on it as on the device (without -c: its
/// compressed blocks read as zeros and do not decompress). Only zones that hold metadata are
/// read (one seek each on a sparse image), and only table chunks that hold data are written.
public struct MetadataImage {
    /// Told (zones read, zones) as the image is written.
    public var progress: ProgressHandler?

    public init() {}

    public struct Summary: Sendable {
        public var metadataPblks = 0
        public var physicalBytes = 0
    }

    /// A damaged pblk 0 is what such a report is about: it is copied as it is, and the layout
    /// followed is the one the caller opened the device with (fsck's `OpenedDevice.recovering`
    /// gets past a damaged header); a truncated device's missing end is left out.
    public func write(from opened: OpenedDevice, to target: any OutputTarget) throws -> Summary {
        let device = opened.device
        try target.refuse(input: device)
        let header = try device.readPblks(0)
        let (h, g) = (opened.header, opened.geometry)
        let out = try target.open(size: g.physicalBytes)
        var summary = Summary()
        summary.physicalBytes = g.physicalBytes
        try out.writePblks(header, at: 0)
        summary.metadataPblks = 1
        let chunk = ByteBuffer(count: 1 << 20)
        let pblksPerChunk = chunk.count / Units.pblkSize
        for z in TableScanner(device: device, geometry: g).zonesWithMetadata() {
            let metadata = g.bitmapPblk(z)..<g.tablePblks(z).upperBound
            var p = metadata.lowerBound
            // A truncated device holds nothing past its end.
            while p < min(metadata.upperBound, device.size / Units.pblkSize) {
                let n = min(pblksPerChunk, min(metadata.upperBound, device.size / Units.pblkSize) - p)
                let bytes = p * Units.pblkSize..<(p + n) * Units.pblkSize
                defer { p += n }
                if device.isHole(bytes) { continue }
                try device.read(into: chunk[0..<bytes.count], at: bytes.lowerBound)
                for k in 0..<n where !isAllZero(chunk.base + k * Units.pblkSize, Units.pblkSize) {
                    try out.write(
                        UnsafeRawBufferPointer(chunk[k * Units.pblkSize..<(k + 1) * Units.pblkSize]),
                        at: (p + k) * Units.pblkSize)
                    summary.metadataPblks += 1
                }
            }
            progress?(z + 1, g.nrZones)
        }
        // Journal pblks as the header names them: only those the device holds are copied.
        for j in h.intent?.journal ?? []
        where j > 0 && j < UInt64(min(g.nrPblk, device.size / Units.pblkSize))
            && !device.isHole(Int(j) * Units.pblkSize..<(Int(j) + 1) * Units.pblkSize)
        {
            try out.writePblks(try device.readPblks(Int(j)), at: Int(j))
            summary.metadataPblks += 1
        }
        try target.commit()
        return summary
    }
}

// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice

/// `cbd measure`: the size `cbd convert` would make of an input, before making it (as
/// `qemu-img measure` and `vdoestimator`). By default a sample of blocks spread over the
/// input's data is packed as the conversion would pack it, and the result carries a bound on
/// its error; `exact` packs every block (pass 1 of a conversion, writing nothing).
public struct Measurer {
    public var lblkShift = 4
    public var level = CompressionLevel.fast
    public var exact = false
    /// Told (input bytes packed, input size) by an exact measurement.
    public var progress: ProgressHandler?
    /// Blocks sampled: 1 in `sampleDivisor` of those with data, within `sampleRange`.
    public static let sampleDivisor = 64
    public static let sampleRange = 256...8192

    public init() {}

    public struct Measurement: Sendable {
        public var logicalBytes = 0
        public var blocks = 0
        /// Blocks that hold data, estimated (exact: counted); the rest are holes or zeros.
        public var allocatedBlocks = 0
        /// Bytes of packed data, and its error bound (two standard errors; 0 when exact).
        public var dataBytes = 0
        public var errorBytes = 0
        /// What `cbd convert` makes: the compact physical size, data plus the default headroom.
        public var physicalBytes = 0
        /// The same with the error bound added.
        public var physicalBytesBound = 0
        public var sampledBlocks = 0
        public var exact = false

        public var compressionRatio: Double {
            guard dataBytes > 0, blocks > 0 else { return 0 }
            return Ratios.compression(
                allocatedBlocks: allocatedBlocks, lblkSize: logicalBytes / blocks,
                pblks: dataBytes / Units.pblkSize)
        }
    }

    public func measure(input: any BlockDevice, scratch: String) throws -> Measurement {
        var c = RawToCBD()
        c.lblkShift = lblkShift
        c.level = level
        c.progress = progress
        let lblkSize = Units.pblkSize << lblkShift
        guard input.size > 0 else { throw CBDError("\(input.path): input is empty") }
        var m = Measurement()
        m.blocks = (input.size + lblkSize - 1) / lblkSize
        m.logicalBytes = m.blocks * lblkSize
        m.exact = exact
        var pblks: Int, errorPblks: Int
        if exact {
            let summary = try c.compress(
                input, nrLblk: m.blocks, data: DiscardedStream(), lengths: Spill(directory: scratch))
            pblks = summary.dataPblks
            errorPblks = 0
            m.allocatedBlocks = summary.compressedBlocks + summary.rawBlocks
        } else {
            let want = min(
                Measurer.sampleRange.upperBound,
                max(
                    Measurer.sampleRange.lowerBound,
                    m.blocks / Measurer.sampleDivisor))
            let s = try c.sample(input, blocks: want)
            pblks = s.pblks
            errorPblks = Int((2 * s.standardError).rounded(.up))
            m.allocatedBlocks = Int((Double(s.blocksWithData) * (1 - s.zeroFraction)).rounded())
            m.sampledBlocks = s.sampled
        }
        m.dataBytes = pblks * Units.pblkSize
        m.errorBytes = errorPblks * Units.pblkSize
        m.physicalBytes = try c.chooseGeometry(dataPblks: pblks, nrLblk: m.blocks, for: input.path).physicalBytes
        m.physicalBytesBound = try c.chooseGeometry(dataPblks: pblks + errorPblks, nrLblk: m.blocks, for: input.path)
            .physicalBytes
        return m
    }
}

/// A packed stream that keeps only its size: pass 1 of a conversion that writes nothing.
final class DiscardedStream: PackedStream {
    private(set) var size = 0
    func append(_ p: UnsafeRawPointer, _ count: Int) throws { size += count }
    func offset(ofStreamPblk t: Int) -> Int { t * Units.pblkSize }
    func read(into p: UnsafeMutableRawPointer, _ count: Int, at offset: Int) throws {
        throw CBDError("packed data was not kept")
    }
    var file: Int32? { nil }
    var placedIn: (any BlockDevice)? { nil }
}

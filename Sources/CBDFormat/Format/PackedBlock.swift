// SPDX-License-Identifier: Apache-2.0
/// How one logical block is stored (format-v1 rule 2), decided in one place for the write path
/// (`Volume`), convert (`RawToCBD`), resize and the length log between their passes: all zeros
/// take no pblk; otherwise the block is stored LZ4-compressed when that saves at least one pblk,
/// and raw when it does not.
public enum PackedBlock: Equatable, Sendable {
    /// All zeros: unallocated, no pblk.
    case zero
    /// Stored as it is, in `lblkSize / 4096` pblks.
    case raw
    /// Stored LZ4-compressed in `length` bytes, padded with zeros to whole pblks.
    case compressed(length: Int)

    /// The longest compressed length that is kept: compression must save at least one pblk.
    @inline(__always) public static func maxCompressedLength(lblkSize: Int) -> Int { lblkSize - Units.pblkSize }

    /// Packs the `lblkSize` bytes at `src`: compressed into `out` (room for
    /// `maxCompressedLength(lblkSize:)` bytes) and padded there with zeros to whole pblks,
    /// when that saves a pblk; at `level` (the lz4 tool's numbering).
    public static func pack(
        _ src: UnsafeRawPointer, lblkSize: Int, into out: UnsafeMutableRawPointer,
        level: CompressionLevel = .fast
    ) -> PackedBlock {
        guard !isAllZero(src, lblkSize) else { return .zero }
        let capacity = maxCompressedLength(lblkSize: lblkSize)
        guard capacity > 0,
            let n = LZ4Codec.compress(src, count: lblkSize, into: out, capacity: capacity, level: level)
        else {
            return .raw
        }
        (out + n).initializeMemory(as: UInt8.self, repeating: 0, count: padded(n) - n)
        return .compressed(length: n)
    }

    /// The pblks the block takes.
    public func pblks(lblkSize: Int) -> Int {
        switch self {
        case .zero: return 0
        case .raw: return lblkSize / Units.pblkSize
        case .compressed(let length): return PackedBlock.padded(length) / Units.pblkSize
        }
    }

    /// Its stored bytes: whole pblks.
    public func bytes(lblkSize: Int) -> Int { pblks(lblkSize: lblkSize) * Units.pblkSize }

    /// Its word in a length log (one u32 per block between a writer's passes): 0 for zeros,
    /// all ones for raw, else the compressed length.
    public var logWord: UInt32 {
        switch self {
        case .zero: return 0
        case .raw: return UInt32.max
        case .compressed(let length): return UInt32(length)
        }
    }

    /// The block a length log's word describes.
    public init(logWord w: UInt32) {
        self = w == 0 ? .zero : w == UInt32.max ? .raw : .compressed(length: Int(w))
    }

    /// The entry length field it is stored with (the codec's raw length for raw).
    public func entryLength(_ codec: EntryCodec) -> Int {
        switch self {
        case .zero: return 0
        case .raw: return codec.rawLength
        case .compressed(let length): return length
        }
    }

    private static func padded(_ n: Int) -> Int { (n + Units.pblkSize - 1) / Units.pblkSize * Units.pblkSize }
}

// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice

/// What a run of orphaned pblks (marked in use, named by no entry, not all zeros) holds, told
/// apart the only way the bytes allow: a compressed block is the shortest prefix whose LZ4
/// data decodes, through liblz4, to exactly one logical block; where none does, a whole
/// block's pblks are taken as a raw block; what is left over is a fragment.
enum OrphanPiece: Equatable {
    /// A logical block's worth: the entry that would name it (compressed or raw).
    case block(AllocationEntry)
    /// Fewer pblks than a raw block, none of which decode: only their bytes can be kept.
    case fragment(Range<Int>)

    var pblks: Range<Int> {
        switch self {
        case .fragment(let r): return r
        case .block(let e):
            let p = e.pblks.map { Int($0) }
            return (p.first ?? 0)..<(p.last ?? -1) + 1
        }
    }
}

/// Splits runs of orphaned pblks into pieces (`OrphanPiece`), reading each run once.
struct OrphanParser {
    let device: BlockDevice
    let geometry: Geometry
    /// The stored bytes of one block, then its decoded bytes.
    private let buffer: ByteBuffer

    /// LZ4 ends a block with at least five literals, and its last match starts twelve bytes
    /// before the end or earlier: the data's last bytes are literals, which may be zeros. A
    /// compressed block therefore ends at most this many bytes after its last non-zero byte.
    static let trailingZeroLiterals = 16

    init(device: BlockDevice, geometry: Geometry) {
        self.device = device
        self.geometry = geometry
        buffer = ByteBuffer(count: 2 * geometry.lblkSize)
    }

    /// The pieces of `run`, in pblk order, covering it exactly.
    func pieces(of run: Range<Int>) throws -> [OrphanPiece] {
        let perBlock = geometry.pblkPerLblk
        var out: [OrphanPiece] = []
        var p = run.lowerBound
        while p < run.upperBound {
            let avail = min(perBlock, run.upperBound - p)
            try device.read(into: buffer[0..<avail * Units.pblkSize], at: p * Units.pblkSize)
            if let length = compressedLength(available: avail) {
                let k = (length + Units.pblkSize - 1) / Units.pblkSize
                out.append(.block(.compressed(length: length, pblks: (p..<p + k).map { Pblk($0) })))
                p += k
            } else if avail == perBlock {
                out.append(.block(.raw(pblks: (p..<p + perBlock).map { Pblk($0) })))
                p += perBlock
            } else {
                out.append(.fragment(p..<run.upperBound))
                p = run.upperBound
            }
        }
        return out
    }

    /// The length of the compressed block at the start of `buffer` (`avail` pblks read), or
    /// nil when no prefix of fewer pblks than a raw block decodes to exactly one block.
    private func compressedLength(available avail: Int) -> Int? {
        let lblkSize = geometry.lblkSize, pblk = Units.pblkSize
        let out = buffer.base + lblkSize
        // A compressed block saves at least one pblk: fewer pblks than a block has.
        for k in 1..<min(geometry.pblkPerLblk, avail + 1) {
            guard let last = lastNonZero(below: k * pblk) else { continue }
            let low = max((k - 1) * pblk + 1, last + 1)
            let high = min(k * pblk, last + 1 + Self.trailingZeroLiterals, lblkSize - pblk)
            guard low <= high else { continue }
            for length in low...high
            where LZ4Codec.decompress(
                buffer.base, count: length, into: out,
                expected: lblkSize)
            {
                return length
            }
        }
        return nil
    }

    /// The offset of the last non-zero byte of the first `end` bytes of `buffer`.
    private func lastNonZero(below end: Int) -> Int? {
        let b = buffer.base.assumingMemoryBound(to: UInt8.self)
        var i = end - 1
        while i >= 0 && b[i] == 0 { i -= 1 }
        return i >= 0 ? i : nil
    }

    /// The bytes a lost+found file keeps for `piece`: a compressed block decoded, anything
    /// else as stored. `body` sees them before the next call.
    func withSavedBytes<T>(of piece: OrphanPiece, _ body: (UnsafeRawBufferPointer) throws -> T) throws -> T {
        let lblkSize = geometry.lblkSize
        switch piece {
        case .block(let e):
            try device.readBlock(e, lblk: 0, lblkSize: lblkSize, into: buffer.base + lblkSize, scratch: buffer.base)
            return try body(UnsafeRawBufferPointer(buffer[lblkSize..<2 * lblkSize]))
        case .fragment(let r):
            let n = r.count * Units.pblkSize
            try device.read(into: buffer[0..<n], at: r.lowerBound * Units.pblkSize)
            return try body(UnsafeRawBufferPointer(buffer[0..<n]))
        }
    }
}

// SPDX-License-Identifier: Apache-2.0
import CBDFormat

/// How a logical block is read back (format-v1 rule 3), in one place for the read path
/// (`Volume`), conversion to raw (`CBDToRaw`) and fsck (`Pass1`, `Pass1B`): a raw block is its
/// pblks in slot order; a compressed one is the first `length` bytes of its pblks, which must
/// decompress to exactly one block.
extension BlockDevice {
    /// Reads the block that entry `e` of lblk `n` names into `out` (`lblkSize` bytes; left as
    /// it is for an unallocated block), through `scratch` (`lblkSize` bytes) when compressed.
    /// Compressed data that does not decompress is a `.corrupt` error naming the block.
    package func readBlock(
        _ e: AllocationEntry, lblk n: Int, lblkSize: Int, into out: UnsafeMutableRawPointer,
        scratch: UnsafeMutableRawPointer
    ) throws {
        switch e {
        case .unallocated:
            break
        case .raw(let pblks):
            try readPblkRuns(pblks, into: out)
        case .compressed(let length, let pblks):
            try readPblkRuns(pblks, into: scratch)
            guard LZ4Codec.decompress(scratch, count: length, into: out, expected: lblkSize) else {
                throw CBDError(
                    "\(path): logical block \(n) (bytes \(n * lblkSize)-\((n + 1) * lblkSize - 1)): "
                        + "compressed data is corrupt", kind: .corrupt)
            }
        }
    }

    /// Reads bytes `part` of the block that entry `e` of lblk `n` names into `out`
    /// (`part.count` bytes; left as they are for an unallocated block), reading only what they
    /// need: a raw block's pblks that hold them, a compressed block's bytes decoded up to the
    /// part's end (in buffers of the compressed length and of `part.upperBound` bytes, made
    /// here). A 4 KiB read of a 1 GiB block so costs its compressed bytes, not two blocks.
    package func readBlock(
        _ e: AllocationEntry, lblk n: Int, lblkSize: Int, part: Range<Int>,
        into out: UnsafeMutableRawPointer
    ) throws {
        let pblk = Units.pblkSize
        switch e {
        case .unallocated:
            break
        case .raw(let pblks):
            let slots = Array(pblks[part.lowerBound / pblk..<(part.upperBound + pblk - 1) / pblk])
            let buffer = ByteBuffer(uninitializedCount: slots.count * pblk)  // read whole, or thrown
            try readPblkRuns(slots, into: buffer.base)
            out.copyMemory(from: buffer.base + part.lowerBound % pblk, byteCount: part.count)
        case .compressed(let length, let pblks):
            let input = ByteBuffer(uninitializedCount: pblks.count * pblk)
            try readPblkRuns(pblks, into: input.base)
            guard LZ4Codec.decompress(input.base, count: length, part: part, ofBlock: lblkSize, into: out) else {
                throw CBDError(
                    "\(path): logical block \(n) (bytes \(n * lblkSize)-\((n + 1) * lblkSize - 1)): "
                        + "compressed data is corrupt", kind: .corrupt)
            }
        }
    }

    /// Whether the compressed block of lblk `n` (`length` bytes in `pblks`) decompresses; `scratch`
    /// holds at least two blocks. Other read errors are thrown.
    package func decompresses(lblk n: Int, length: Int, pblks: [Pblk], lblkSize: Int, scratch: UnsafeMutableRawPointer)
        throws -> Bool
    {
        do {
            try readBlock(
                .compressed(length: length, pblks: pblks), lblk: n, lblkSize: lblkSize,
                into: scratch + lblkSize, scratch: scratch)
            return true
        } catch let error as CBDError where error.kind == .corrupt {
            return false
        }
    }
}

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
    package func readBlock(_ e: AllocationEntry, lblk n: Int, lblkSize: Int, into out: UnsafeMutableRawPointer,
                           scratch: UnsafeMutableRawPointer) throws {
        switch e {
        case .unallocated:
            break
        case .raw(let pblks):
            try readPblkRuns(pblks, into: out)
        case .compressed(let length, let pblks):
            try readPblkRuns(pblks, into: scratch)
            guard LZ4Codec.decompress(scratch, count: length, into: out, expected: lblkSize) else {
                throw CBDError("\(path): logical block \(n) (bytes \(n * lblkSize)-\((n + 1) * lblkSize - 1)): "
                    + "compressed data is corrupt", kind: .corrupt)
            }
        }
    }

    /// Whether the compressed block of lblk `n` (`length` bytes in `pblks`) decompresses; `scratch`
    /// holds at least two blocks. Other read errors are thrown.
    package func decompresses(lblk n: Int, length: Int, pblks: [Pblk], lblkSize: Int, scratch: UnsafeMutableRawPointer) throws -> Bool {
        do {
            try readBlock(.compressed(length: length, pblks: pblks), lblk: n, lblkSize: lblkSize,
                          into: scratch + lblkSize, scratch: scratch)
            return true
        } catch let error as CBDError where error.kind == .corrupt {
            return false
        }
    }
}

// SPDX-License-Identifier: Apache-2.0
import Glibc
import CBDFormat
import CBDDevice

/// Compares the logical contents of two devices (`cbd compare`, as `qemu-img compare`): the
/// bytes, and in strict mode the sizes and where each holds data. Only ranges where either
/// side may hold data are read (holes of both read as zeros on both), so two sparse images
/// compare in time that follows their data.
public struct Comparison {
    public enum Result: Equatable, Sendable {
        case same
        /// The first byte that differs.
        case contentDiffers(offset: Int)
        /// Strict: the sizes differ.
        case sizeDiffers(Int, Int)
        /// Strict: from `offset` one side holds data (allocated) where the other has a hole.
        case allocationDiffers(offset: Int)
    }

    /// Sizes and allocation must match too; a zero block allocated on one side differs.
    public var strict = false
    /// Bytes compared per read.
    public var chunkBytes = 1 << 20
    /// Told (offset reached, end) as the comparison goes.
    public var progress: ProgressHandler?

    public init() {}

    public func compare(_ a: any BlockDevice, _ b: any BlockDevice) throws -> Result {
        if strict && a.size != b.size { return .sizeDiffers(a.size, b.size) }
        let end = max(a.size, b.size)
        let bufA = ByteBuffer(count: chunkBytes), bufB = ByteBuffer(count: chunkBytes)
        var pos = 0
        while pos < end {
            let da = Self.nextData(a, from: pos), db = Self.nextData(b, from: pos)
            guard let start = [da, db].compactMap({ $0 }).min() else { break }  // holes on both sides
            if strict && da != db { return .allocationDiffers(offset: start) }
            // The segment up to the next change of either side (data to hole, hole to data).
            let stop = max(start + 1, min(Self.boundary(a, at: start, end: end), Self.boundary(b, at: start, end: end)))
            var off = start
            while off < stop {
                let n = min(chunkBytes, stop - off)
                try Self.read(a, into: bufA, n, at: off)
                try Self.read(b, into: bufB, n, at: off)
                if memcmp(bufA.base, bufB.base, n) != 0 {
                    let i =
                        (0..<n).first {
                            bufA.base.load(fromByteOffset: $0, as: UInt8.self)
                                != bufB.base.load(fromByteOffset: $0, as: UInt8.self)
                        } ?? 0
                    return .contentDiffers(offset: off + i)
                }
                off += n
                progress?(off, end)
            }
            pos = stop
        }
        progress?(end, end)
        return .same
    }

    /// The next byte at or after `pos` where `d` may hold data; nil past its end or its data.
    static func nextData(_ d: any BlockDevice, from pos: Int) -> Int? {
        guard pos < d.size else { return nil }
        return d.nextData(from: pos)
    }

    /// Where the state of `d` at `pos` (data or hole) changes, at most `end`.
    static func boundary(_ d: any BlockDevice, at pos: Int, end: Int) -> Int {
        guard pos < d.size else { return end }
        guard let next = d.nextData(from: pos) else { return d.size }
        return next > pos ? next : d.nextHole(from: pos)
    }

    /// Reads `n` bytes at `off`; what lies past the device's end reads as zeros.
    static func read(_ d: any BlockDevice, into buf: ByteBuffer, _ n: Int, at off: Int) throws {
        let have = max(0, min(n, d.size - off))
        if have > 0 { try d.read(into: buf[0..<have], at: off) }
        if have < n { (buf.base + have).initializeMemory(as: UInt8.self, repeating: 0, count: n - have) }
    }
}

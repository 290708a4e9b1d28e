// SPDX-License-Identifier: Apache-2.0
/// A zone's physical block allocation bitmap: bit k set means data pblk
/// `data_start + k` is in use. Bits past a short last zone's end are always set.
public struct Bitmap: Equatable, Sendable {
    public private(set) var bytes: [UInt8]

    public init(bytes: [UInt8]) {
        precondition(bytes.count == Units.pblkSize)
        self.bytes = bytes
    }

    /// A fresh bitmap for a zone with `dataPblks` data pblks: all free, padding set.
    public init(dataPblks: Int) {
        bytes = [UInt8](repeating: 0, count: Units.pblkSize)
        for k in dataPblks..<Units.pblksPerBitmap { set(k) }
    }

    @inline(__always) public func isSet(_ k: Int) -> Bool { bytes[k >> 3] & (1 << UInt8(k & 7)) != 0 }
    @inline(__always) public mutating func set(_ k: Int) { bytes[k >> 3] |= 1 << UInt8(k & 7) }
    @inline(__always) public mutating func clear(_ k: Int) { bytes[k >> 3] &= ~(1 << UInt8(k & 7)) }

    /// Number of set bits among the first `limit` (the zone's real data pblks).
    public func countSet(below limit: Int = Units.pblksPerBitmap) -> Int {
        var n = 0
        for k in 0..<limit >> 3 { n += bytes[k].nonzeroBitCount }
        for k in (limit & ~7)..<limit where isSet(k) { n += 1 }
        return n
    }

    /// The first clear bit at or after `start` and below `limit`, scanning bytes at a time.
    public func firstClear(from start: Int = 0, below limit: Int) -> Int? {
        var k = start
        while k < limit {
            if k & 7 == 0, k + 8 <= limit, bytes[k >> 3] == 0xFF { k += 8; continue }
            if !isSet(k) { return k }
            k += 1
        }
        return nil
    }

    /// Runs of clear bits below `limit`, as half-open ranges.
    public func freeExtents(below limit: Int) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var k = 0
        while let s = firstClear(from: k, below: limit) {
            var e = s
            while e < limit && !isSet(e) { e += 1 }
            out.append(s..<e)
            k = e
        }
        return out
    }
}

// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice
/// A sparse device in memory, for tests: unwritten pblks read as zeros, so a device of any
/// size costs only what is written to it.
public final class MemoryDevice: BlockDevice, @unchecked Sendable {
    public let path: String
    public private(set) var size: Int
    public var isWritable: Bool = true
    private var pblks: [Int: [UInt8]] = [:]
    /// Count of write calls, for tests that interrupt a writer at a chosen point.
    public private(set) var writeCount = 0
    /// When set, the write with this index (0-based) and every later one fails.
    public var failAtWrite: Int?
    /// The byte offset of every write call that succeeded, in order (to find a writer's steps).
    public private(set) var writeOffsets: [Int] = []

    public init(size: Int, name: String = "memory") {
        self.size = size
        path = name
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        guard offset >= 0, offset + buffer.count <= size else {
            throw CBDError("\(path): read past the end at byte \(offset)")
        }
        guard let out = buffer.baseAddress else { return }
        Self.forEachPiece(offset: offset, count: buffer.count) { p, inner, done, n in
            if let b = pblks[p] {
                b.withUnsafeBytes { src in (out + done).copyMemory(from: src.baseAddress! + inner, byteCount: n) }
            } else {
                (out + done).initializeMemory(as: UInt8.self, repeating: 0, count: n)
            }
        }
    }

    /// Cuts a byte range into its pieces within single pblks: (pblk, offset in it, offset in the range, length).
    private static func forEachPiece(offset: Int, count: Int, _ body: (Int, Int, Int, Int) -> Void) {
        var done = 0
        while done < count {
            let pos = offset + done
            let p = pos / Units.pblkSize, inner = pos % Units.pblkSize
            let n = min(Units.pblkSize - inner, count - done)
            body(p, inner, done, n)
            done += n
        }
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: Int) throws {
        guard isWritable else { throw CBDError("\(path): read-only", kind: .readOnly) }
        if let f = failAtWrite, writeCount >= f { throw CBDError("\(path): injected write failure") }
        writeCount += 1
        writeOffsets.append(offset)
        guard offset >= 0, offset + buffer.count <= size else {
            throw CBDError("\(path): write past the end at byte \(offset)")
        }
        guard let src = buffer.baseAddress else { return }
        Self.forEachPiece(offset: offset, count: buffer.count) { p, inner, done, n in
            var b = pblks[p] ?? [UInt8](repeating: 0, count: Units.pblkSize)
            b.withUnsafeMutableBytes { dst in (dst.baseAddress! + inner).copyMemory(from: src + done, byteCount: n) }
            pblks[p] = b.allSatisfy { $0 == 0 } ? nil : b
        }
    }

    public func zero(_ range: Range<Int>) throws {
        let zeros = [UInt8](repeating: 0, count: Units.pblkSize)
        var off = range.lowerBound
        while off < range.upperBound {
            let n = min(Units.pblkSize - off % Units.pblkSize, range.upperBound - off)
            if n == Units.pblkSize {
                pblks[off / Units.pblkSize] = nil
            } else {
                try zeros.withUnsafeBytes { try write(UnsafeRawBufferPointer(rebasing: $0[0..<n]), at: off) }
            }
            off += n
        }
    }

    public func release(_ range: Range<Int>) {
        for p in range.lowerBound / Units.pblkSize..<range.upperBound / Units.pblkSize { pblks[p] = nil }
    }

    public func setSize(_ bytes: Int) throws {
        if let f = failAtWrite, writeCount >= f { throw CBDError("\(path): injected failure") }
        writeCount += 1
        size = bytes
        for p in pblks.keys where p * Units.pblkSize >= bytes { pblks[p] = nil }
    }

    /// Pblks never written (or written as zeros) are holes.
    public func nextData(from offset: Int) -> Int? {
        guard offset < size else { return nil }
        if pblks[offset / Units.pblkSize] != nil { return offset }
        return pblks.keys.filter { $0 > offset / Units.pblkSize }.min().map { $0 * Units.pblkSize }
    }

    public func nextHole(from offset: Int) -> Int {
        var p = offset / Units.pblkSize
        while pblks[p] != nil { p += 1 }
        return min(size, max(offset, p * Units.pblkSize))
    }

    public func sync() throws {
        if let f = failAtWrite, writeCount >= f { throw CBDError("\(path): injected sync failure") }
        syncCount += 1
    }

    /// Count of sync calls, for tests of how often a writer makes its data durable.
    public private(set) var syncCount = 0

    /// An independent copy with the same contents (no failure injected).
    public func copy() -> MemoryDevice {
        let m = MemoryDevice(size: size, name: path)
        m.pblks = pblks
        return m
    }

    /// Every byte, for comparisons in tests of small devices.
    public func snapshot() -> [Int: [UInt8]] { pblks }
}

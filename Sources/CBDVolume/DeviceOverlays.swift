// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice

/// A device that reads as zeros past its end, up to `size`: a truncated image as it will be
/// once grown back. Writes go to the device (the repair grows it first).
final class ZeroTail: BlockDevice {
    let inner: BlockDevice
    let size: Int

    init(_ inner: BlockDevice, size: Int) {
        self.inner = inner
        self.size = max(size, inner.size)
    }

    var path: String { inner.path }
    var isWritable: Bool { inner.isWritable }
    var openFile: Int32? { inner.openFile }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        let real = max(0, min(buffer.count, inner.size - offset))
        if real > 0 { try inner.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<real]), at: offset) }
        if real < buffer.count, let base = buffer.baseAddress {
            (base + real).initializeMemory(as: UInt8.self, repeating: 0, count: buffer.count - real)
        }
    }

    func write(_ buffer: UnsafeRawBufferPointer, at offset: Int) throws { try inner.write(buffer, at: offset) }
    func zero(_ range: Range<Int>) throws { try inner.zero(range) }
    func sync() throws { try inner.sync() }
    func setSize(_ bytes: Int) throws { try inner.setSize(bytes) }
    func isHole(_ range: Range<Int>) -> Bool { range.lowerBound >= inner.size || inner.isHole(range) }
    func nextData(from offset: Int) -> Int? { offset < inner.size ? inner.nextData(from: offset) : nil }
    func nextHole(from offset: Int) -> Int { offset < inner.size ? inner.nextHole(from: offset) : offset }
}

/// A device whose pblk 0 reads as a given header: how a candidate geometry is checked without
/// writing it. Reads only; everything else goes to the device beneath.
package final class HeaderOverlay: BlockDevice {
    let inner: BlockDevice
    let headerBytes: [UInt8]

    package init(_ inner: BlockDevice, header: Header) {
        self.inner = inner
        headerBytes = header.encoded()
    }

    package var path: String { inner.path }
    package var size: Int { inner.size }
    package var isWritable: Bool { false }

    package func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        try inner.read(into: buffer, at: offset)
        guard offset < Units.pblkSize, let base = buffer.baseAddress else { return }
        let n = min(buffer.count, Units.pblkSize - offset)
        headerBytes.withUnsafeBytes { h in
            if let hb = h.baseAddress { base.copyMemory(from: hb + offset, byteCount: n) }
        }
    }

    package func write(_ buffer: UnsafeRawBufferPointer, at offset: Int) throws {
        throw CBDError("\(path): opened read-only", kind: .readOnly)
    }
    package func zero(_ range: Range<Int>) throws { throw CBDError("\(path): opened read-only", kind: .readOnly) }
    package func sync() throws {}
    package func isHole(_ range: Range<Int>) -> Bool { range.lowerBound >= Units.pblkSize && inner.isHole(range) }
    package func nextData(from offset: Int) -> Int? { offset < Units.pblkSize ? offset : inner.nextData(from: offset) }
    package func nextHole(from offset: Int) -> Int {
        offset < Units.pblkSize ? Units.pblkSize : inner.nextHole(from: offset)
    }
}

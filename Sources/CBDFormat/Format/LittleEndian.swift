// SPDX-License-Identifier: Apache-2.0
/// Little-endian integers of 1 to 8 bytes, the only integer encoding of the format.
@usableFromInline package enum LE {
    @inline(__always)
    package static func get(_ b: [UInt8], _ offset: Int, _ width: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in stride(from: width - 1, through: 0, by: -1) { v = v << 8 | UInt64(b[offset + i]) }
        return v
    }

    @inline(__always)
    package static func put(_ value: UInt64, _ width: Int, _ b: inout [UInt8], _ offset: Int) {
        var v = value
        for i in 0..<width { b[offset + i] = UInt8(truncatingIfNeeded: v); v >>= 8 }
    }

    /// Inlinable (fsck reads tens of millions of entry fields): the common widths are one load.
    @inlinable @inline(__always)
    package static func get(_ p: UnsafeRawPointer, _ width: Int) -> UInt64 {
        switch width {
        case 2: return UInt64(UInt16(littleEndian: p.loadUnaligned(as: UInt16.self)))
        case 4: return UInt64(UInt32(littleEndian: p.loadUnaligned(as: UInt32.self)))
        case 8: return UInt64(littleEndian: p.loadUnaligned(as: UInt64.self))
        default: break
        }
        var v: UInt64 = 0
        for i in stride(from: width - 1, through: 0, by: -1) {
            v =
                v << 8
                | UInt64(
                    p.load(
                        fromByteOffset: i,
                        as: UInt8.self))
        }
        return v
    }

    @inline(__always)
    package static func put(_ value: UInt64, _ width: Int, _ p: UnsafeMutableRawPointer) {
        var v = value
        for i in 0..<width { p.storeBytes(of: UInt8(truncatingIfNeeded: v), toByteOffset: i, as: UInt8.self); v >>= 8 }
    }
}

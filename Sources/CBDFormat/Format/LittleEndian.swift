// SPDX-License-Identifier: Apache-2.0
/// Little-endian integers of 1 to 8 bytes, the only integer encoding of the format.
package enum LE {
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

    @inline(__always)
    package static func get(_ p: UnsafeRawPointer, _ width: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in stride(from: width - 1, through: 0, by: -1) { v = v << 8 | UInt64(p.load(fromByteOffset: i,
            as: UInt8.self)) }
        return v
    }

    @inline(__always)
    package static func put(_ value: UInt64, _ width: Int, _ p: UnsafeMutableRawPointer) {
        var v = value
        for i in 0..<width { p.storeBytes(of: UInt8(truncatingIfNeeded: v), toByteOffset: i, as: UInt8.self); v >>= 8 }
    }
}

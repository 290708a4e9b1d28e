// SPDX-License-Identifier: Apache-2.0
/// Whether `count` bytes at `p` are all zero: 32 bytes a test (ORed words, so that a short
/// run such as an entry's unused slots costs one branch), then words, then bytes.
@inline(__always)
@inlinable package func isAllZero(_ p: UnsafeRawPointer, _ count: Int) -> Bool {
    var i = 0
    while i &+ 32 <= count {
        let w = p.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            | p.loadUnaligned(fromByteOffset: i &+ 8, as: UInt64.self)
            | p.loadUnaligned(fromByteOffset: i &+ 16, as: UInt64.self)
            | p.loadUnaligned(fromByteOffset: i &+ 24, as: UInt64.self)
        if w != 0 { return false }
        i &+= 32
    }
    var w: UInt64 = 0
    while i &+ 8 <= count {
        w |= p.loadUnaligned(fromByteOffset: i, as: UInt64.self)
        i &+= 8
    }
    while i < count {
        w |= UInt64(p.load(fromByteOffset: i, as: UInt8.self))
        i &+= 1
    }
    return w == 0
}

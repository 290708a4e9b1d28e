// SPDX-License-Identifier: Apache-2.0
/// Whether `count` bytes at `p` are all zero, a word at a time.
@inline(__always)
@inlinable package func isAllZero(_ p: UnsafeRawPointer, _ count: Int) -> Bool {
    var i = 0
    while i + 8 <= count {
        if p.loadUnaligned(fromByteOffset: i, as: UInt64.self) != 0 { return false }
        i += 8
    }
    while i < count {
        if p.load(fromByteOffset: i, as: UInt8.self) != 0 { return false }
        i += 1
    }
    return true
}

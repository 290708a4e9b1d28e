// SPDX-License-Identifier: Apache-2.0
/// Whether `count` bytes at `p` are all zero: 32 bytes a test, ORed words, the last block
/// overlapping the one before instead of a loop over the rest, so that a short run such as an
/// entry's unused slots (fsck asks this of every entry) costs a few loads and one branch.
@inline(__always)
@inlinable package func isAllZero(_ p: UnsafeRawPointer, _ count: Int) -> Bool {
    @inline(__always) func word(_ at: Int) -> UInt64 { p.loadUnaligned(fromByteOffset: at, as: UInt64.self) }
    @inline(__always) func block(_ at: Int) -> UInt64 { word(at) | word(at &+ 8) | word(at &+ 16) | word(at &+ 24) }
    if count >= 32 && count <= 64 { return block(0) | block(count &- 32) == 0 }
    if count > 64 {
        var i = 0
        while i &+ 32 < count {
            if block(i) != 0 { return false }
            i &+= 32
        }
        return block(count &- 32) == 0
    }
    if count >= 16 { return word(0) | word(8) | word(count &- 16) | word(count &- 8) == 0 }
    if count >= 8 { return word(0) | word(count &- 8) == 0 }
    var w: UInt64 = 0
    for i in 0..<count { w |= UInt64(p.load(fromByteOffset: i, as: UInt8.self)) }
    return w == 0
}

// SPDX-License-Identifier: Apache-2.0
import CBDFormat

/// The claims one zone's entries make on that zone's own data pblks, gathered by a pass-1
/// worker without touching the shared `ClaimMap`: one bit per data pblk (the bitmap's order).
/// 4 KiB, for the few zones a scan has in flight.
///
/// Why: a densely written device has tens of millions of claims. Made one by one in lblk order
/// on one thread they cost most of the check; gathered per zone on all cores, they are folded
/// into the claims a word at a time (`ClaimMap.fold`). Entries that name another zone's pblks
/// are left to the per-entry path. A pblk named twice in the zone sets its bit once, so it
/// shows as fewer bits than claims (`namesSomePblkTwice`): then the zone goes entry by entry,
/// and the result is always the same as claiming entry by entry.
final class ZoneClaims {
    static let words = Units.pblksPerBitmap / 64
    let zone: Int
    /// Claimed data indices of the zone.
    let bits: UnsafeMutablePointer<UInt64>
    /// How many claims were made (a pblk claimed twice counts twice).
    var claims = 0

    init(zone: Int) {
        self.zone = zone
        bits = .allocate(capacity: ZoneClaims.words)
        bits.initialize(repeating: 0, count: ZoneClaims.words)
    }

    deinit { bits.deallocate() }

    /// Claims in a register, a word of `bits` at a time: the entries of a densely written zone
    /// name runs of neighbouring pblks, and a read-modify-write of memory per claim would chain
    /// each claim to the one before. Call `flush` before the bits are read.
    struct Accumulator {
        let bits: UnsafeMutablePointer<UInt64>
        var word = 0
        var mask: UInt64 = 0

        init(_ claims: ZoneClaims) { bits = claims.bits }

        /// Claims data index `k` (below `Units.pblksPerBitmap`).
        @inline(__always)
        mutating func claim(_ k: Int) { add(1 &<< UInt64(k & 63), toWord: k &>> 6) }

        /// Claims data indices `k ..< k + n` (a run of neighbouring pblks), a word at a time.
        @inline(__always)
        mutating func claim(run k: Int, _ n: Int) {
            var k = k, n = n
            while n > 0 {
                let bit = k & 63, take = min(n, 64 &- bit)
                add((take == 64 ? ~0 : (1 &<< UInt64(take)) &- 1) &<< UInt64(bit), toWord: k &>> 6)
                k &+= take
                n &-= take
            }
        }

        /// ORs `m` into word `w`, writing the word held before when `w` is another.
        @inline(__always)
        private mutating func add(_ m: UInt64, toWord w: Int) {
            if w != word {
                bits[word] |= mask
                word = w
                mask = 0
            }
            mask |= m
        }

        mutating func flush() {
            bits[word] |= mask
            mask = 0
        }
    }

    /// Whether fewer pblks are claimed than claims were made: some pblk is named twice.
    var namesSomePblkTwice: Bool {
        (0..<ZoneClaims.words).reduce(0) { $0 + bits[$1].nonzeroBitCount } != claims
    }

    /// Whether some claimed pblk's bit is clear in `bitmap` (the zone's bitmap as read).
    func claimsUnmarked(in bitmap: Bitmap) -> Bool {
        bitmap.bytes.withUnsafeBytes { b in
            (0..<ZoneClaims.words).contains { i in
                bits[i] & ~UInt64(littleEndian: b.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)) != 0
            }
        }
    }
}

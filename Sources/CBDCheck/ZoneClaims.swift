// SPDX-License-Identifier: Apache-2.0
import CBDFormat

/// The claims one zone's entries make on that zone's own data pblks, gathered by a pass-1
/// worker without touching the shared `ClaimMap`: one bit per data pblk (the bitmap's order),
/// and a second set of bits, made only when needed, for pblks named twice inside the zone.
///
/// Why: a densely written device has tens of millions of claims. Made one by one in lblk order
/// on one thread they cost most of the check; gathered per zone on all cores, they are folded
/// into the claims a word at a time (`ClaimMap.fold`). Entries that name another zone's pblks
/// are left to the per-entry path, so the result is the same as claiming entry by entry.
final class ZoneClaims {
    static let words = Units.pblksPerBitmap / 64
    let zone: Int
    let bits = UnsafeMutablePointer<UInt64>.allocate(capacity: ZoneClaims.words)
    /// Bits of pblks named a second time within the zone, or nil while there are none.
    private(set) var twice: UnsafeMutablePointer<UInt64>?
    /// What the entries claimed here add to the check's statistics.
    var stats = CheckStats()

    init(zone: Int) {
        self.zone = zone
        bits.initialize(repeating: 0, count: ZoneClaims.words)
    }

    deinit {
        bits.deallocate()
        twice?.deallocate()
    }

    /// Claims data index `k` of the zone.
    @inline(__always) func claim(_ k: Int) {
        let bit: UInt64 = 1 << UInt64(k & 63)
        if bits[k >> 6] & bit != 0 {
            if twice == nil {
                let t = UnsafeMutablePointer<UInt64>.allocate(capacity: ZoneClaims.words)
                t.initialize(repeating: 0, count: ZoneClaims.words)
                twice = t
            }
            twice?[k >> 6] |= bit
        }
        bits[k >> 6] |= bit
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

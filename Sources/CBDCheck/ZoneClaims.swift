// SPDX-License-Identifier: Apache-2.0
import CBDFormat

/// The claims one zone's entries make on that zone's own data pblks, gathered by a pass-1
/// worker without touching the shared `ClaimMap`: one bit per data pblk (the bitmap's order),
/// and a second set of bits for pblks named twice inside the zone. 8 KiB, for the few zones a
/// scan has in flight.
///
/// Why: a densely written device has tens of millions of claims. Made one by one in lblk order
/// on one thread they cost most of the check; gathered per zone on all cores, they are folded
/// into the claims a word at a time (`ClaimMap.fold`). Entries that name another zone's pblks
/// are left to the per-entry path, so the result is the same as claiming entry by entry.
final class ZoneClaims {
    static let words = Units.pblksPerBitmap / 64
    let zone: Int
    /// Claimed data indices of the zone.
    let bits: UnsafeMutablePointer<UInt64>
    /// Data indices named a second time within the zone.
    let twice: UnsafeMutablePointer<UInt64>

    init(zone: Int) {
        self.zone = zone
        bits = .allocate(capacity: 2 * ZoneClaims.words)
        bits.initialize(repeating: 0, count: 2 * ZoneClaims.words)
        twice = bits + ZoneClaims.words
    }

    deinit { bits.deallocate() }

    /// Claims data index `k` in `bits`, noting a second claim in `twice` (raw pointers: the
    /// hot loop of pass 1 touches no reference count).
    @inline(__always)
    static func claim(_ k: Int, bits: UnsafeMutablePointer<UInt64>, twice: UnsafeMutablePointer<UInt64>) {
        let bit: UInt64 = 1 << UInt64(k & 63)
        twice[k >> 6] |= bits[k >> 6] & bit
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

import CBDFormat
import CBDVolume
/// One bit per data pblk of the device: which pblks some entry uses. Indexed by
/// zone * 32768 + data index, so its size is 4 KiB per zone whatever the device holds.
struct ClaimMap {
    private(set) var bits: [UInt64]
    let geometry: Geometry
    /// Data pblks claimed: kept as claims come and go, so the free count costs nothing.
    private(set) var claimedCount = 0
    /// Data pblks that entries on disk still name but the repaired device will not (old pblks
    /// of a clone, pblks of a cleared entry): free once the repairs are written, never handed
    /// out before, or a crash would leave a committed entry naming overwritten bytes.
    private(set) var reserved: Set<Int> = []

    init(_ g: Geometry) {
        geometry = g
        bits = [UInt64](repeating: 0, count: g.nrZones * Units.pblksPerBitmap / 64)
    }

    /// The bit index of data pblk `p`, or nil when `p` is not a data pblk.
    func index(_ p: Int) -> Int? {
        guard case .data(let z, let k) = geometry.place(ofPblk: p) else { return nil }
        return z * Units.pblksPerBitmap + k
    }

    func isClaimed(_ i: Int) -> Bool { bits[i >> 6] & (1 << UInt64(i & 63)) != 0 }
    mutating func claim(_ i: Int) {
        reserved.remove(i)
        guard !isClaimed(i) else { return }
        bits[i >> 6] |= 1 << UInt64(i & 63)
        claimedCount += 1
    }

    mutating func release(_ i: Int) {
        guard isClaimed(i) else { return }
        bits[i >> 6] &= ~(1 << UInt64(i & 63))
        claimedCount -= 1
    }

    /// Keeps an unclaimed pblk from being allocated in this run (see `reserved`).
    mutating func reserve(_ i: Int) {
        if !isClaimed(i) { reserved.insert(i) }
    }

    /// Data pblks that can be allocated: neither claimed nor reserved.
    var freeCount: Int { geometry.totalDataPblks - claimedCount - reserved.count }

    /// Zone `z`'s bitmap as the claims say it should be (padding bits set).
    /// The claim bits use the bitmap's own order (bit k of byte k/8, least significant
    /// first), so a zone's 512 words are its bitmap bytes in little-endian order.
    func expectedBitmap(_ z: Int) -> Bitmap {
        let words = Units.pblksPerBitmap / 64
        var bytes = [UInt8](repeating: 0, count: Units.pblkSize)
        bytes.withUnsafeMutableBytes { out in
            bits.withUnsafeBytes { src in
                out.baseAddress!.copyMemory(from: src.baseAddress! + z * words * 8, byteCount: Units.pblkSize)
            }
        }
        var b = Bitmap(bytes: bytes.map { UInt8(littleEndian: $0) })
        for k in geometry.dataPblkCount(z)..<Units.pblksPerBitmap { b.set(k) }
        return b
    }

    /// A free data pblk, searching zone `home` first; claims it.
    package mutating func allocate(near home: Int) -> Int? {
        for z in geometry.zones(from: home) {
            let base = z * Units.pblksPerBitmap
            for k in 0..<geometry.dataPblkCount(z) where !isClaimed(base + k) && !reserved.contains(base + k) {
                claim(base + k)
                return geometry.dataStart(z) + k
            }
        }
        return nil
    }
}

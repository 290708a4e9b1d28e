import CBDFormat
import CBDVolume

/// Which data pblks some entry uses: one bit per data pblk, kept in 4 KiB pages of one zone
/// each, a page only for a zone that holds a claim. So its memory follows the zones in use
/// (4 KiB each), not the device: a 1 PiB device with data in three places costs 12 KiB.
/// Bits are indexed zone * 32768 + data index, in the bitmap's own order.
struct ClaimMap {
    let geometry: Geometry
    private var pages: [Int: [UInt64]] = [:]
    /// Data pblks claimed: kept as claims come and go, so the free count costs nothing.
    private(set) var claimedCount = 0
    /// Data pblks that entries on disk still name but the repaired device will not (old pblks
    /// of a clone, pblks of a cleared entry): free once the repairs are written, never handed
    /// out before, or a crash would leave a committed entry naming overwritten bytes.
    private(set) var reserved: Set<Int> = []

    private static let wordsPerPage = Units.pblksPerBitmap / 64

    init(_ g: Geometry) { geometry = g }

    /// The bit index of data pblk `p`, or nil when `p` is not a data pblk.
    func index(_ p: Int) -> Int? {
        guard case .data(let z, let k) = geometry.place(ofPblk: p) else { return nil }
        return z * Units.pblksPerBitmap + k
    }

    /// The zones that hold a claim, in no order.
    var zones: Dictionary<Int, [UInt64]>.Keys { pages.keys }

    /// Bytes the pages take: what a check's claims cost.
    var memoryBytes: Int { pages.count * Units.pblkSize }

    func isClaimed(_ i: Int) -> Bool {
        guard let page = pages[i / Units.pblksPerBitmap] else { return false }
        let k = i % Units.pblksPerBitmap
        return page[k >> 6] & (1 << UInt64(k & 63)) != 0
    }

    mutating func claim(_ i: Int) {
        reserved.remove(i)
        guard !isClaimed(i) else { return }
        let k = i % Units.pblksPerBitmap
        pages[i / Units.pblksPerBitmap, default: [UInt64](repeating: 0, count: Self.wordsPerPage)][k >> 6]
            |= 1 << UInt64(k & 63)
        claimedCount += 1
    }

    mutating func release(_ i: Int) {
        guard isClaimed(i) else { return }
        let z = i / Units.pblksPerBitmap, k = i % Units.pblksPerBitmap
        pages[z]?[k >> 6] &= ~(1 << UInt64(k & 63))
        claimedCount -= 1
        if pages[z]?.allSatisfy({ $0 == 0 }) == true { pages[z] = nil }
    }

    /// Keeps an unclaimed pblk from being allocated in this run (see `reserved`).
    mutating func reserve(_ i: Int) {
        if !isClaimed(i) { reserved.insert(i) }
    }

    /// Data pblks that can be allocated: neither claimed nor reserved.
    var freeCount: Int { geometry.totalDataPblks - claimedCount - reserved.count }

    /// Zone `z`'s bitmap as the claims say it should be (padding bits set). A zone's page is
    /// its bitmap bytes in little-endian word order.
    func expectedBitmap(_ z: Int) -> Bitmap {
        guard let page = pages[z] else { return Bitmap(dataPblks: geometry.dataPblkCount(z)) }
        var bytes = [UInt8](repeating: 0, count: Units.pblkSize)
        bytes.withUnsafeMutableBytes { out in
            page.withUnsafeBytes { out.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: Units.pblkSize) }
        }
        var b = Bitmap(bytes: bytes.map { UInt8(littleEndian: $0) })
        for k in geometry.dataPblkCount(z)..<Units.pblksPerBitmap { b.set(k) }
        return b
    }

    /// A free data pblk, searching zone `home` first; claims it. A zone without a page is
    /// free from its first pblk (unless reserved).
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

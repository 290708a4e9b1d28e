// SPDX-License-Identifier: Apache-2.0
import CBDFormat

/// Which data pblks some entry uses: one bit per data pblk, kept in 4 KiB pages of one zone
/// each, a page only for a zone that holds a claim. So its memory follows the zones in use
/// (4 KiB each), not the device: a 1 PiB device with data in three places costs 12 KiB.
/// Bits are indexed zone * 32768 + data index, in the bitmap's own order.
///
/// A class: one Checker owns it, and a page is changed in place (a dictionary of arrays would
/// hash and copy on write per claim). Claims come in runs inside one zone, so the last page
/// used is kept at hand: a dense device's 16 million claims cost one lookup per zone change.
final class ClaimMap {
    let geometry: Geometry
    /// One zone's claim bits.
    final class Page {
        let words = UnsafeMutablePointer<UInt64>.allocate(capacity: ClaimMap.wordsPerPage)
        init() { words.initialize(repeating: 0, count: ClaimMap.wordsPerPage) }
        deinit { words.deallocate() }
        var isEmpty: Bool { (0..<ClaimMap.wordsPerPage).allSatisfy { words[$0] == 0 } }
    }
    private var pages: [Int: Page] = [:]
    private var lastZone = -1
    private var lastPage: Page?
    /// Data pblks claimed: kept as claims come and go, so the free count costs nothing.
    private(set) var claimedCount = 0
    /// Data pblks that entries on disk still name but the repaired device will not (old pblks
    /// of a clone, pblks of a cleared entry): free once the repairs are written, never handed
    /// out before, or a crash would leave a committed entry naming overwritten bytes.
    private(set) var reserved: Set<Int> = []
    /// Data pblks the device's bitmaps mark in use that no entry claimed after pass 1: they may
    /// hold orphaned data, which pass 3 saves (or leaves in use), so nothing in this run is
    /// written there (a clone of pass 1B once overwrote such data before pass 3 saw it). Pages
    /// as the claims: one per zone that has some.
    private var held: [Int: Page] = [:]
    private(set) var heldCount = 0

    private static let wordsPerPage = Units.pblksPerBitmap / 64

    init(_ g: Geometry) { geometry = g }

    /// The bit index of data pblk `p`, or nil when `p` is not a data pblk.
    func index(_ p: Int) -> Int? {
        guard case .data(let z, let k) = geometry.place(ofPblk: p) else { return nil }
        return z * Units.pblksPerBitmap + k
    }

    /// The zones that hold a claim, in no order.
    var zones: Dictionary<Int, Page>.Keys { pages.keys }

    /// Zone `z`'s page, or nil; the last one asked is answered without a lookup.
    @inline(__always) private func page(_ z: Int) -> Page? {
        if z == lastZone { return lastPage }
        lastZone = z
        lastPage = pages[z]
        return lastPage
    }

    /// Bytes the pages take: what a check's claims cost.
    var memoryBytes: Int { pages.count * Units.pblkSize }

    func isClaimed(_ i: Int) -> Bool { ClaimMap.isSet(i % Units.pblksPerBitmap, in: page(i / Units.pblksPerBitmap)) }

    func claim(_ i: Int) { _ = claimIfFree(i) }

    func isHeld(_ i: Int) -> Bool { ClaimMap.isSet(i % Units.pblksPerBitmap, in: held[i / Units.pblksPerBitmap]) }

    /// Bit `k` of a zone's page (none: clear).
    private static func isSet(_ k: Int, in page: Page?) -> Bool {
        guard let page else { return false }
        return page.words[k >> 6] & (1 << UInt64(k & 63)) != 0
    }

    /// Holds the pblks that `bitmap` (zone `z`'s, as read) marks in use and no entry claims.
    func hold(unclaimedIn bitmap: Bitmap, zone z: Int) {
        let limit = geometry.dataPblkCount(z), claimed = pages[z]?.words
        bitmap.bytes.withUnsafeBytes { b in
            for w in 0..<ClaimMap.wordsPerPage where limit - w * 64 > 0 {
                let below = limit - w * 64  // data pblks in this word, the rest padding
                var bits = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: w * 8, as: UInt64.self))
                if below < 64 { bits &= (1 << UInt64(below)) - 1 }
                bits &= ~(claimed?[w] ?? 0)
                var rest = reserved.isEmpty ? 0 : bits  // reserved already: counted once
                while rest != 0 {
                    let bit = rest & (~rest &+ 1)
                    if reserved.contains(z * Units.pblksPerBitmap + w * 64 + rest.trailingZeroBitCount) { bits &= ~bit }
                    rest &= rest - 1
                }
                guard bits != 0 else { continue }
                let page = held[z] ?? Page()
                if held[z] == nil { held[z] = page }
                heldCount += (bits & ~page.words[w]).nonzeroBitCount
                page.words[w] |= bits
            }
        }
    }

    /// The held pblks, as runs of bits in each zone that has some (the ranges pass 2 finds
    /// leaked, where no clone claimed a pblk since).
    func heldRuns() -> [(zone: Int, runs: [Range<Int>])] {
        held.keys.sorted().map { z in
            var runs: [Range<Int>] = []
            for k in 0..<Units.pblksPerBitmap where ClaimMap.isSet(k, in: held[z]) {
                if let last = runs.last, last.upperBound == k {
                    runs[runs.count - 1] = last.lowerBound..<k + 1
                } else {
                    runs.append(k..<k + 1)
                }
            }
            return (z, runs)
        }
    }

    /// A held pblk claimed (pass 3 relinks an orphan, a clone takes it) or found to hold only
    /// zeros (nothing to save) is no longer held.
    func unhold(_ i: Int) {
        guard let page = held[i / Units.pblksPerBitmap] else { return }
        let k = i % Units.pblksPerBitmap, bit: UInt64 = 1 << UInt64(k & 63)
        guard page.words[k >> 6] & bit != 0 else { return }
        page.words[k >> 6] &= ~bit
        heldCount -= 1
    }

    /// Claims `i`; false when it was claimed already (a second owner).
    @discardableResult
    func claimIfFree(_ i: Int) -> Bool {
        if !reserved.isEmpty { reserved.remove(i) }
        if heldCount > 0 { unhold(i) }
        let z = i / Units.pblksPerBitmap, k = i % Units.pblksPerBitmap
        let p: Page
        if let found = page(z) {
            p = found
        } else {
            p = Page()
            pages[z] = p
            lastPage = p
        }
        let bit: UInt64 = 1 << UInt64(k & 63)
        guard p.words[k >> 6] & bit == 0 else { return false }
        p.words[k >> 6] |= bit
        claimedCount += 1
        return true
    }

    /// Adds the claims a pass-1 worker gathered for one zone, a word at a time. Returns the
    /// pblks now claimed twice (claimed before by another entry; `zc` names each pblk once, see
    /// `ZoneClaims.namesSomePblkTwice`): the same as claiming them one by one with `claimIfFree`.
    func fold(_ zc: ZoneClaims) -> [Int] {
        let z = zc.zone
        guard (0..<ClaimMap.wordsPerPage).contains(where: { zc.bits[$0] != 0 }) else { return [] }
        let p: Page
        if let found = page(z) {
            p = found
        } else {
            p = Page()
            pages[z] = p
            lastPage = p
        }
        var twice: [Int] = []
        let first = geometry.dataStart(z)
        for w in 0..<ClaimMap.wordsPerPage where zc.bits[w] != 0 {
            let new = zc.bits[w], old = p.words[w]
            var again = new & old
            p.words[w] = old | new
            claimedCount += (new & ~old).nonzeroBitCount
            while again != 0 {
                twice.append(first + w * 64 + again.trailingZeroBitCount)
                again &= again - 1
            }
        }
        if !reserved.isEmpty {
            reserved = reserved.filter { $0 / Units.pblksPerBitmap != z || !isClaimed($0) }
        }
        return twice
    }

    func release(_ i: Int) {
        guard isClaimed(i) else { return }
        let z = i / Units.pblksPerBitmap, k = i % Units.pblksPerBitmap
        guard let p = page(z) else { return }
        p.words[k >> 6] &= ~(1 << UInt64(k & 63))
        claimedCount -= 1
        if p.isEmpty {
            pages[z] = nil
            lastPage = nil
        }
    }

    /// Keeps an unclaimed pblk from being allocated in this run (see `reserved`).
    func reserve(_ i: Int) {
        if !isClaimed(i) && !isHeld(i) { reserved.insert(i) }
    }

    /// Data pblks that can be allocated: neither claimed, reserved nor held.
    var freeCount: Int { geometry.totalDataPblks - claimedCount - reserved.count - heldCount }

    /// Whether `have` is exactly `expectedBitmap(z)`: compared a word at a time without
    /// building it, as pass 2 asks this of every zone and nearly always hears yes.
    func marksExactly(_ have: Bitmap, zone z: Int) -> Bool {
        let limit = geometry.dataPblkCount(z), words = pages[z]?.words
        return have.bytes.withUnsafeBytes { b in
            (0..<ClaimMap.wordsPerPage).allSatisfy { w in
                let stored = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: w * 8, as: UInt64.self))
                let below = limit - w * 64  // data pblks in this word, the rest padding (set)
                let padding: UInt64 = below >= 64 ? 0 : below <= 0 ? ~0 : ~0 << UInt64(below)
                return stored == (words?[w] ?? 0) | padding
            }
        }
    }

    /// Zone `z`'s bitmap as the claims say it should be (padding bits set). A zone's page is
    /// its bitmap bytes in little-endian word order.
    func expectedBitmap(_ z: Int) -> Bitmap {
        guard let page = pages[z] else { return Bitmap(dataPblks: geometry.dataPblkCount(z)) }
        var bytes = [UInt8](repeating: 0, count: Units.pblkSize)
        bytes.withUnsafeMutableBytes { out in
            out.baseAddress!.copyMemory(from: page.words, byteCount: Units.pblkSize)
        }
        var b = Bitmap(bytes: bytes.map { UInt8(littleEndian: $0) })
        for k in geometry.dataPblkCount(z)..<Units.pblksPerBitmap { b.set(k) }
        return b
    }

    /// A free data pblk, searching zone `home` first; claims it. A zone without a page is
    /// free from its first pblk (unless reserved or held).
    package func allocate(near home: Int) -> Int? {
        for z in geometry.zones(from: home) {
            let base = z * Units.pblksPerBitmap, heldHere = held[z]  // one lookup per zone
            for k in 0..<geometry.dataPblkCount(z)
            where !isClaimed(base + k) && !reserved.contains(base + k) && !ClaimMap.isSet(k, in: heldHere) {
                claim(base + k)
                return geometry.dataStart(z) + k
            }
        }
        return nil
    }
}

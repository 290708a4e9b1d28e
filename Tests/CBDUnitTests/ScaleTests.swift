// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDFormat
@testable import CBDTestSupport
@testable import CBDDevice
@testable import CBDVolume
@testable import CBDLayout
@testable import CBDCheck

/// Structures whose size must follow what is allocated, not the device: checked on a 1 PiB
/// geometry by counting bytes and seeks, never by timing.
@Suite struct ScaleTests {
    static let pebibyte = 1 << 50

    /// The claim store answers as a plain bit per pblk does, on random claims, releases and
    /// reservations at both ends and in the middle of a 1 PiB device; its pages cost 4 KiB per
    /// zone holding a claim.
    @Test func claimStoreMatchesABitPerPblk() throws {
        let g = try LayoutPlanner.plan(physicalBytes: Self.pebibyte, logicalBytes: Self.pebibyte, lblkShift: 4)
        let claims = ClaimMap(g)
        var reference = Set<Int>(), reserved = Set<Int>()
        var rng = SplitMix(seed: 23)
        let regions = [0, g.nrZones / 2, g.nrZones - 1]
        func randomIndex() -> Int {
            let z = regions[Int(rng.next() % 3)] + Int(rng.next() % 2)
            let zone = min(z, g.nrZones - 1)
            return zone * Units.pblksPerBitmap + Int(rng.next() % UInt64(g.dataPblkCount(zone)))
        }
        for _ in 0..<5_000 {
            let i = randomIndex()
            switch rng.next() % 4 {
            case 0, 1:
                claims.claim(i); reference.insert(i); reserved.remove(i)
            case 2:
                claims.release(i); reference.remove(i)
            default:
                claims.reserve(i); if !reference.contains(i) { reserved.insert(i) }
            }
        }
        #expect(claims.claimedCount == reference.count)
        #expect(claims.freeCount == g.totalDataPblks - reference.count - reserved.count)
        for _ in 0..<5_000 {
            let i = randomIndex()
            #expect(claims.isClaimed(i) == reference.contains(i))
        }
        let zones = Set(reference.map { $0 / Units.pblksPerBitmap })
        #expect(Set(claims.zones) == zones)
        for z in zones {
            var want = Bitmap(dataPblks: g.dataPblkCount(z))
            for i in reference where i / Units.pblksPerBitmap == z { want.set(i % Units.pblksPerBitmap) }
            #expect(claims.expectedBitmap(z) == want, "zone \(z)")
        }
        // Allocation never hands out a claimed or reserved pblk.
        for _ in 0..<100 {
            guard let p = claims.allocate(near: regions[1]), let i = claims.index(p) else {
                Issue.record("no pblk"); break
            }
            #expect(!reference.contains(i) && !reserved.contains(i))
            reference.insert(i)
        }
        #expect(claims.memoryBytes <= (zones.count + 1) * Units.pblkSize)
        #expect(claims.memoryBytes < 1 << 20, "\(claims.memoryBytes) bytes of claims on a 1 PiB device")
    }

    /// A 1 PiB device in memory, written at its first and last lblk and in the middle: the
    /// check reads the metadata of the few zones that hold some (one seek per zone), its
    /// memory stays that of those zones, and it finds the device consistent.
    @Test func aCheckOfA1PiBDeviceFollowsItsData() throws {
        let g = try LayoutPlanner.plan(physicalBytes: Self.pebibyte, logicalBytes: Self.pebibyte, lblkShift: 4)
        let mem = MemoryDevice(size: g.physicalBytes)
        try Formatter.format(mem, geometry: g)
        #expect(mem.writeCount < 10, "mkfs wrote \(mem.writeCount) times on an empty 1 PiB device")
        let v = try Volume(device: mem)
        let bs = g.lblkSize
        for n in [0, g.nrLblk / 2, g.nrLblk - 1] {
            try [UInt8](repeating: UInt8(n & 0xFF) | 1, count: bs).withUnsafeBytes { try v.write($0, at: n * bs) }
        }
        try v.close()
        let check = try Checker(device: mem, options: Checker.Options())
        try check.run()
        #expect(check.problems.isEmpty, "\(check.problems.map(\.message))")
        #expect(check.stats.compressed + check.stats.raw == 3)
        #expect(check.bitmaps.active.count <= 4, "\(check.bitmaps.active)")
        #expect(check.bitmaps.memoryBytes + check.claims.memoryBytes < 1 << 20)
        // The read path maps the holes between in a few runs.
        let v2 = try Volume(device: mem)
        var runs = 0, n = 0
        while n < g.nrLblk {
            n = try v2.allocationRun(from: n, below: g.nrLblk).end
            runs += 1
        }
        #expect(runs == 5, "\(runs) runs")
        #expect(try v2.usage().free == g.totalDataPblks - check.stats.usedPblks)
    }
}

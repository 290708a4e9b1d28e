// SPDX-License-Identifier: Apache-2.0
import Testing
@testable import CBDFormat
@testable import CBDDevice
@testable import CBDCheck
@testable import CBDTestSupport

/// Pass 1 gathers the claims of entries that stay in their zone per zone, on all cores
/// (`ZoneClaims`), and folds them in a word at a time. It must find exactly what claiming
/// entry by entry finds: the same problems, statistics and exit code, and the same repairs.
/// Each round damages a written device at random (entries copied over others, in the zone or
/// from another, slots pointed at another zone's data, bitmap bits cleared, table bytes
/// flipped) and checks it both ways, on three entry variants: pass 1's loop is specialized
/// for 2- and 4-byte lengths with 4-byte slots, and generic for the others (2-byte slots here).
@Suite struct ClaimGatheringTests {
    /// Where repairs save orphaned data (fsck never frees data without saving it).
    let lostFound: Scratch
    init() throws { lostFound = try Scratch() }

    /// A device shape and how many rounds it gets.
    struct Shape: Sendable, CustomTestStringConvertible {
        let variant: String, physical: Int, lblkShift: Int, blocks: Int, rounds: Int
        var testDescription: String { variant }
    }
    static let shapes = [
        Shape(variant: "lblk_alloc_16_32", physical: 320 << 20, lblkShift: 2, blocks: 800, rounds: 12),
        Shape(variant: "lblk_alloc_16_16", physical: 200 << 20, lblkShift: 2, blocks: 800, rounds: 6),
        Shape(variant: "lblk_alloc_32_32", physical: 320 << 20, lblkShift: 5, blocks: 400, rounds: 6)
    ]

    func check(_ d: MemoryDevice, gather: Bool, fix: Bool) throws -> (findings: [String], stats: String, exit: Int32) {
        var o = Checker.Options()
        o.mode = fix ? .fixAll : .readOnly
        o.gatherClaims = gather
        o.lostFound = LostFound(directory: lostFound.file("lost+found"))
        let c = try Checker(device: d, options: o)
        try c.run()
        let findings = c.problems.map {
            "\($0.kind) \($0.facts.lblk ?? -1) \($0.facts.zone ?? -1) \($0.pblks) \($0.facts.others) \($0.message)"
        }
        return (findings, "\(c.stats)", c.exitCode)
    }

    @Test(arguments: shapes) func gatheredClaimsFindWhatEntryByEntryFinds(_ shape: Shape) throws {
        let (base, _) = try populatedDevice(
            physical: shape.physical, logical: 1 << 30, lblkShift: shape.lblkShift,
            blocks: shape.blocks, every: 18, seed: 5)
        let (_, g) = try headerAndGeometry(base)
        #expect(g.nrZones >= 2)
        // Undamaged, every zone takes the gathered path: none is scanned twice.
        var o = Checker.Options()
        o.mode = .readOnly
        let clean = try Checker(device: base, options: o)
        try clean.run()
        #expect(clean.problems.isEmpty && clean.stats.compressed + clean.stats.raw == shape.blocks)
        #expect(clean.rescannedZones == 0)
        #expect(g.variantName == shape.variant)
        var rng = SplitMix(seed: 41)
        func pick(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
        let written = stride(from: 0, to: shape.blocks * 18, by: 18).map { $0 }
        var damagedRounds = 0
        for round in 0..<shape.rounds {
            let d = base.copy()
            for _ in 0...pick(3) {
                switch pick(4) {
                case 0:  // an entry copied over another: its pblks claimed twice
                    let from = written[pick(written.count)], to = written[pick(written.count)]
                    let e = try d.readBytes(g.entryOffset(ofLblk: from), g.entryLen)
                    try d.writeBytes(e, g.entryOffset(ofLblk: to))
                case 1:  // slot 0 names a data pblk of a zone picked at random
                    let z = pick(g.nrZones)
                    var e = try d.readBytes(g.entryOffset(ofLblk: written[pick(written.count)]), g.entryLen)
                    let p = g.dataStart(z) + pick(min(64, g.dataPblkCount(z)))
                    for b in 0..<g.pblkBytes { e[g.lenBytes + b] = UInt8(truncatingIfNeeded: p >> (8 * b)) }
                    try d.writeBytes(e, g.entryOffset(ofLblk: written[pick(written.count)]))
                case 2:  // a bitmap bit of a used pblk cleared
                    let z = pick(g.nrZones)
                    var b = try d.readBytes(g.zoneStart(z) * Units.pblkSize, 64)
                    b[pick(64)] = 0
                    try d.writeBytes(b, g.zoneStart(z) * Units.pblkSize)
                default:  // a byte of an entry flipped
                    let at = g.entryOffset(ofLblk: written[pick(written.count)]) + pick(g.entryLen)
                    let b = try d.readBytes(at, 1)
                    try d.writeBytes([b[0] ^ UInt8(1 + pick(255))], at)
                }
            }
            let a = try check(d, gather: true, fix: false), b = try check(d, gather: false, fix: false)
            #expect(a.findings == b.findings, "round \(round)")
            #expect(a.stats == b.stats && a.exit == b.exit, "round \(round)")
            guard !a.findings.isEmpty else { continue }
            damagedRounds += 1
            let fixedA = d.copy(), fixedB = d.copy()
            _ = try check(fixedA, gather: true, fix: true)
            _ = try check(fixedB, gather: false, fix: true)
            let sameRepairs = fixedA.snapshot() == fixedB.snapshot()
            #expect(sameRepairs, "round \(round): the repairs differ")
        }
        #expect(damagedRounds >= shape.rounds * 2 / 3)
    }
}

extension MemoryDevice {
    func readBytes(_ offset: Int, _ count: Int) throws -> [UInt8] {
        var b = [UInt8](repeating: 0, count: count)
        try b.withUnsafeMutableBytes { try read(into: $0, at: offset) }
        return b
    }

    func writeBytes(_ bytes: [UInt8], _ offset: Int) throws {
        try bytes.withUnsafeBytes { try write($0, at: offset) }
    }
}

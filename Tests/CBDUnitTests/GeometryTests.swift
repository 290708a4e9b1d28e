// SPDX-License-Identifier: Apache-2.0
import Testing
@testable import CBDFormat
@testable import CBDTestSupport
@testable import CBDDevice
@testable import CBDVolume
@testable import CBDLayout
@testable import CBDCheck

@Suite struct GeometryTests {
    @Test func seedExample64KBlocks() throws {
        // 1 GiB, 64 KiB blocks, 3x: the worked example of the format page (entry 2 + 4*16 = 66).
        let g = try LayoutPlanner.plan(physicalBytes: 1 << 30, logicalBytes: 3 << 30, lblkShift: 4)
        #expect(g.entryLen == 66)
        #expect(g.variantName == "lblk_alloc_16_32")
        #expect(g.nrLblk == 49152)
        // Smallest zone shift that fits: 8 zones hold 49152 blocks only with 8192 per zone.
        #expect(g.lblkPerZoneShift == 13)
        #expect(g.tableBlocks == (8192 * 66 + 4095) / 4096)
        #expect(g.zoneSpan == 1 + g.tableBlocks + 32768)
        #expect(g.nrZones == (262144 - 1 + g.zoneSpan - 1) / g.zoneSpan)
        #expect(g.zoneStart(1) == 1 + g.zoneSpan)
        #expect(g.dataStart(0) == 2 + g.tableBlocks)
        #expect(g.dataEnd(g.nrZones - 1) == 262144)
        #expect(g.nrZones << (g.lblkPerZoneShift - 1) < g.nrLblk)
    }

    @Test(arguments: [
        (0, 2, 2, "lblk_alloc_16_16"), (4, 1 << 16, 2, "lblk_alloc_16_16"),
        (4, (1 << 16) + 1, 4, "lblk_alloc_16_32"), (4, 1 << 32, 4, "lblk_alloc_16_32"),
        (4, (1 << 32) + 1, 6, "lblk_alloc_16_48"), (5, 1000, 2, "lblk_alloc_32_16"),
        (5, 1 << 20, 4, "lblk_alloc_32_32"), (18, 1 << 40, 6, "lblk_alloc_32_48")
    ])
    func sixVariants(lblkShift: Int, nrPblk: Int, pblkBytes: Int, name: String) throws {
        let g = try Geometry(unchecked: nrPblk, lblkShift: lblkShift, lblkPerZoneShift: 0, nrLblk: 1)
        #expect(g.pblkBytes == pblkBytes)
        #expect(g.variantName == name)
        #expect(g.entryLen == g.lenBytes + pblkBytes << lblkShift)
        #expect(g.lenBytes == (lblkShift <= 4 ? 2 : 4))
    }

    @Test func minimumDevice() throws {
        // Header, bitmap, one table pblk, one data pblk: 4 pblks.
        let g = try LayoutPlanner.plan(physicalBytes: 4 * 4096, logicalBytes: 4096, lblkShift: 0)
        #expect(g.nrPblk == 4 && g.nrZones == 1 && g.dataPblkCount(0) == 1)
        #expect(throws: CBDError.self) {
            try LayoutPlanner.plan(physicalBytes: 3 * 4096, logicalBytes: 4096, lblkShift: 0)
        }
        #expect(throws: GeometryError.self) {
            try Geometry(nrPblk: 3, lblkShift: 0, lblkPerZoneShift: 0, nrLblk: 1)
        }
    }

    /// A device whose last zone has exactly `extra` pblks past `full` whole zones.
    func planned(fullZones: Int, extra: Int) throws -> Geometry {
        // 4 KiB blocks, 65536 of them: two zones need lblk_per_zone_shift 15 (three zones of
        // 2^14 hold only 49152), so the shift and the entry width stay the same for every size here.
        let probe = try Geometry(unchecked: 1 + 32768 * 2, lblkShift: 0, lblkPerZoneShift: 15, nrLblk: 1)
        let n = 1 + fullZones * probe.zoneSpan + extra
        let g = try LayoutPlanner.plan(physicalBytes: n * 4096, logicalBytes: 65536 * 4096, lblkShift: 0)
        #expect(g.lblkPerZoneShift == 15 && g.tableBlocks == probe.tableBlocks)
        return g
    }

    @Test func exactZoneBoundaries() throws {
        let exact = try planned(fullZones: 2, extra: 0)
        #expect(exact.nrZones == 2)
        #expect(exact.dataPblkCount(1) == 32768)
        // One data pblk past bitmap and table: kept as a short last zone.
        let short = try planned(fullZones: 2, extra: 1 + exact.tableBlocks + 1)
        #expect(short.nrZones == 3)
        #expect(short.dataPblkCount(2) == 1)
        #expect(short.nrPblk == exact.nrPblk + 2 + exact.tableBlocks)
    }

    @Test func lastZoneTooSmallIsTrimmed() throws {
        let exact = try planned(fullZones: 2, extra: 0)
        for extra in [1, 2, exact.tableBlocks, 1 + exact.tableBlocks] {
            let g = try planned(fullZones: 2, extra: extra)
            #expect(g.nrZones == 2, "extra \(extra)")
            #expect(g.nrPblk == exact.nrPblk, "extra \(extra)")
        }
    }

    @Test func pblkCountsAroundTwoToThe16() throws {
        for (n, bytes) in [((1 << 16) - 1, 2), (1 << 16, 2), ((1 << 16) + 1, 4)] {
            let g = try LayoutPlanner.plan(physicalBytes: n * 4096, logicalBytes: n * 4096, lblkShift: 0)
            #expect(g.nrPblk <= n)
            #expect(g.pblkBytes == Geometry.pblkBytes(forPblkCount: g.nrPblk))
            #expect(g.pblkBytes == bytes || g.nrPblk < n, "n \(n)")
        }
    }

    @Test func trimmingAcrossTheWidthBoundaryShrinksTheEntry() throws {
        // 2^16 + 1 pblks with 4 KiB blocks: two zones, the second has 1 + table... or is trimmed;
        // whatever survives must use the width its own pblk count needs.
        for extra in 0..<40 {
            let n = (1 << 16) + extra
            let g = try LayoutPlanner.plan(physicalBytes: n * 4096, logicalBytes: 4096 * 1000, lblkShift: 0)
            #expect(g.pblkBytes == Geometry.pblkBytes(forPblkCount: g.nrPblk))
            #expect(g.dataEnd(g.nrZones - 1) > g.dataStart(g.nrZones - 1))
        }
    }

    @Test func pblkCountsAroundTwoToThe32() throws {
        for (n, bytes) in [((1 << 32) - 1, 4), (1 << 32, 4), ((1 << 32) + 1, 6), ((1 << 32) + 40000, 6)] {
            let g = try LayoutPlanner.plan(
                physicalBytes: n * 4096, logicalBytes: n * 4096 / 65536 * 65536, lblkShift: 4)
            #expect(g.pblkBytes == Geometry.pblkBytes(forPblkCount: g.nrPblk))
            if g.nrPblk == n { #expect(g.pblkBytes == bytes) }
            #expect(g.nrLblk <= g.nrZones << g.lblkPerZoneShift)
        }
    }

    @Test func smallestZoneShiftIsChosen() throws {
        for (phys, ratio, shift) in [
            (64 << 20, 3, 4), (1 << 30, 3, 4), (1 << 40, 3, 4), (256 << 20, 1, 0), (1 << 30, 10, 6)
        ] {
            let logical = phys * ratio / (4096 << shift) * (4096 << shift)
            let g = try LayoutPlanner.plan(physicalBytes: phys, logicalBytes: logical, lblkShift: shift)
            #expect(g.nrLblk <= g.nrZones << g.lblkPerZoneShift)
            if g.lblkPerZoneShift > 0 {
                let smaller = LayoutPlanner.trimmed(
                    maxPblk: phys / 4096, lblkShift: shift,
                    zoneShift: g.lblkPerZoneShift - 1, nrLblk: g.nrLblk)
                #expect(smaller.map { g.nrLblk > $0.nrZones << ($0.lblkPerZoneShift) } ?? true)
            }
        }
    }

    @Test func logicalTooLargeIsRefused() {
        #expect(
            throws: SizeError.logicalTooLarge(
                logicalBytes: 1 << 50, physicalBytes: 1 << 20,
                maxBlocks: 131072, lblkSize: 4096)
        ) {
            try LayoutPlanner.plan(physicalBytes: 1 << 20, logicalBytes: 1 << 50, lblkShift: 0)
        }
        #expect(throws: CBDError.self) {
            try LayoutPlanner.plan(physicalBytes: 1 << 30, logicalBytes: 65536 + 4096, lblkShift: 4)
        }
    }

    @Test func placesOfPblks() throws {
        let g = try LayoutPlanner.plan(physicalBytes: 1 << 30, logicalBytes: 3 << 30, lblkShift: 4)
        #expect(g.place(ofPblk: 0) == .header)
        #expect(g.place(ofPblk: 1) == .bitmap(zone: 0))
        #expect(g.place(ofPblk: 2) == .table(zone: 0, block: 0))
        #expect(g.place(ofPblk: g.dataStart(0)) == .data(zone: 0, index: 0))
        #expect(g.place(ofPblk: g.zoneStart(3)) == .bitmap(zone: 3))
        #expect(g.place(ofPblk: g.zoneStart(3) - 1) == .data(zone: 2, index: 32767))
        #expect(g.place(ofPblk: g.nrPblk) == .beyondEnd)
        #expect(g.zone(ofLblk: 8191) == 0 && g.zone(ofLblk: 8192) == 1 && g.entryIndex(ofLblk: 8193) == 1)
    }

    @Test func geometryFromHeaderChecksValidity() {
        // Claims more logical blocks than its one zone has entries.
        let h = Header(nrPhysicalSectors: 8 * 100, nrLogicalSectors: 8 * 5, lblkShift: 0, lblkPerZoneShift: 2)
        #expect(throws: GeometryError.logicalTooLarge(nrLblk: 5, capacity: 4)) { try Geometry(header: h) }
        let tiny = Header(nrPhysicalSectors: 8 * 3, nrLogicalSectors: 8, lblkShift: 0, lblkPerZoneShift: 0)
        #expect(throws: GeometryError.self) { try Geometry(header: tiny) }
        let none = Header(nrPhysicalSectors: 8, nrLogicalSectors: 8, lblkShift: 0, lblkPerZoneShift: 0)
        #expect(throws: GeometryError.noZone(nrPblk: 1)) { try Geometry(header: none) }
    }
}

// SPDX-License-Identifier: Apache-2.0
import Testing
@testable import CBDFormat
@testable import CBDTestSupport
@testable import CBDLayout
@testable import CBDCheck

@Suite struct HeaderTests {
    let sample = Header(
        nrPhysicalSectors: 8 * 262144, nrLogicalSectors: 3 * 8 * 262144,
        lblkShift: 4, lblkPerZoneShift: 13)

    @Test func roundTrip() throws {
        var h = sample
        h.isDirty = true
        let b = h.encoded()
        #expect(b.count == 4096)
        #expect(Array(b[0..<4]) == [0x43, 0x42, 0x44, 0x2A])
        #expect(try Header.decode(b) == h)
        #expect(b[31...].allSatisfy { $0 == 0 })
    }

    @Test func fieldOffsetsFollowFormatV1() {
        let b = sample.encoded()
        #expect(LE.get(b, 4, 2) == 1)
        #expect(LE.get(b, 6, 2) == 0)
        #expect(LE.get(b, 8, 8) == 8 * 262144)
        #expect(LE.get(b, 16, 8) == 3 * 8 * 262144)
        #expect(LE.get(b, 24, 2) == 4)
        #expect(LE.get(b, 26, 2) == 13)
        #expect(LE.get(b, 28, 2) == 0)
        #expect(b[30] == 0)
    }

    /// Sets `width` bytes at `offset` of an encoded valid header and expects `error`.
    func rejects(
        _ offset: Int, _ width: Int, _ value: UInt64, _ error: HeaderError,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        var b = sample.encoded()
        LE.put(value, width, &b, offset)
        #expect(throws: error, sourceLocation: sourceLocation) { try Header.decode(b) }
    }

    /// Version 1.1: an intent record in the reserved bytes, only on a DIRTY device; clearing
    /// it gives back the 1.0 header byte for byte.
    @Test func intentRecordRoundTrip() throws {
        var h = sample
        h.isDirty = true
        let plain = h.encoded()
        h.intent = Intent(records: 3, payloadBytes: 3 * 42, journal: [77])
        let b = h.encoded()
        #expect(LE.get(b, 6, 2) == 1 && Array(b[64..<68]) == Array("INTN".utf8))
        #expect(try Header.decode(b) == h)
        h.intent = nil
        #expect(h.encoded() == plain && h.versionMinor == 0)
        // Not DIRTY, a payload larger than its pblks, pblk 0 in the journal, a byte after it.
        var clean = b
        LE.put(0, 2, &clean, 28)
        #expect(throws: HeaderError.badIntent("on a device not marked DIRTY")) { try Header.decode(clean) }
        var big = b
        LE.put(4097, 8, &big, 80)
        #expect(throws: HeaderError.self) { try Header.decode(big) }
        var zero = b
        LE.put(0, 8, &zero, 88)
        #expect(throws: HeaderError.self) { try Header.decode(zero) }
        var after = b
        after[96] = 1
        #expect(throws: HeaderError.reservedNotZero(offset: 96)) { try Header.decode(after) }
    }

    @Test func everyRejectionRule() {
        rejects(0, 1, 0x44, .badMagic([0x44, 0x42, 0x44, 0x2A]))
        rejects(4, 2, 2, .unsupportedMajor(2))
        rejects(4, 2, 0, .unsupportedMajor(0))
        rejects(6, 2, 2, .unsupportedMinor(2))
        rejects(6, 2, 1, .badIntent("no intent magic"))
        rejects(28, 2, 2, .unknownFlags(2))
        rejects(28, 2, 0x8001, .unknownFlags(0x8001))
        rejects(30, 1, 1, .unknownAlgorithm(1))
        rejects(24, 2, 19, .lblkShiftOutOfRange(19))
        rejects(26, 2, 25, .lblkPerZoneShiftOutOfRange(25))
        rejects(8, 8, 8 * 1000 + 4, .physicalSectorsNotPblkMultiple(8 * 1000 + 4))
        rejects(8, 8, 8 * (1 << 48) + 8, .tooManyPblks((1 << 48) + 1))
        rejects(8, 8, UInt64.max & ~7, .tooManyPblks(UInt64.max / 8))
        rejects(16, 8, 0, .logicalSizeZero)
        // Found by fuzzing: a logical size past 2^63 bytes overflowed Geometry.logicalBytes.
        rejects(16, 8, 0xFFFF_FE46_0000_0000, .logicalTooLarge(0xFFFF_FE46_0000_0000))
        rejects(
            16, 8, (Header.maxLogicalSectors + 128) / 128 * 128,
            .logicalTooLarge((Header.maxLogicalSectors + 128) / 128 * 128))
        rejects(16, 8, 128 + 8, .logicalSectorsNotLblkMultiple(136, lblkSectors: 128))
        rejects(100, 1, 7, .reservedNotZero(offset: 100))
        rejects(4095, 1, 1, .reservedNotZero(offset: 4095))
        #expect(throws: HeaderError.truncated(10)) { try Header.decode([UInt8](repeating: 0, count: 10)) }
    }

    @Test func limitsAreAccepted() throws {
        var h = sample
        h.lblkShift = 18
        h.lblkPerZoneShift = 24
        h.nrPhysicalSectors = 8 << 48
        h.nrLogicalSectors = 8 << 18
        #expect(try Header.decode(h.encoded()) == h)
    }

    @Test func everyMessageNamesTheField() {
        let errors: [HeaderError] = [
            .unknownFlags(2), .lblkShiftOutOfRange(19), .lblkPerZoneShiftOutOfRange(30),
            .physicalSectorsNotPblkMultiple(9), .logicalSizeZero
        ]
        let words = ["flag", "lblk_shift", "lblk_per_zone_shift", "nr_physical_sectors", "nr_logical_sectors"]
        for (e, w) in zip(errors, words) { #expect(e.description.contains(w)) }
    }
}

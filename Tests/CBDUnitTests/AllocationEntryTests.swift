// SPDX-License-Identifier: Apache-2.0
import Testing
@testable import CBDFormat
@testable import CBDTestSupport
@testable import CBDLayout

@Suite struct AllocationEntryTests {
    /// One geometry per variant: (lblk_shift, nr_pblk).
    static let variants: [(Int, Int)] = [
        (0, 1000), (4, 1 << 16), (4, 1 << 20), (4, 1 << 40),
        (5, 1 << 16), (5, 1 << 30), (6, 1 << 48)
    ]

    func codec(_ shift: Int, _ n: Int) throws -> EntryCodec {
        EntryCodec(try Geometry(unchecked: n, lblkShift: shift, lblkPerZoneShift: 0, nrLblk: 1))
    }

    @Test(arguments: variants)
    func roundTrips(shift: Int, nrPblk: Int) throws {
        let c = try codec(shift, nrPblk)
        let maxPblk = Pblk(nrPblk - 1)
        let slots = (0..<c.slots).map { maxPblk - Pblk($0) }
        var entries: [AllocationEntry] = [.unallocated, .raw(pblks: slots)]
        if c.maxCompressedLength > 0 {
            entries.append(.compressed(length: 1, pblks: [maxPblk]))
            entries.append(.compressed(length: c.maxCompressedLength, pblks: Array(slots.dropLast())))
            entries.append(.compressed(length: 4097, pblks: [2, maxPblk]))
        }
        for e in entries {
            let bytes = c.encode(e)
            #expect(bytes.count == c.entryLen)
            #expect(try c.decode(bytes) == e)
        }
        #expect(c.encode(.unallocated).allSatisfy { $0 == 0 })
        #expect(Array(c.encode(.raw(pblks: slots)).prefix(c.lenBytes)) == [UInt8](repeating: 0xFF, count: c.lenBytes))
    }

    @Test(arguments: variants)
    func malformedEntriesAreRejected(shift: Int, nrPblk: Int) throws {
        let c = try codec(shift, nrPblk)
        // A length in the gap between the largest compressed length and all ones.
        var b = c.encode(.raw(pblks: (0..<c.slots).map { Pblk($0 + 5) }))
        LE.put(UInt64(c.maxCompressedLength + 1), c.lenBytes, &b, 0)
        #expect(throws: EntryError.badLength(c.maxCompressedLength + 1)) { try c.decode(b) }
        // Unallocated with a stray slot.
        var u = c.encode(.unallocated)
        LE.put(9, c.pblkBytes, &u, c.lenBytes + (c.slots - 1) * c.pblkBytes)
        #expect(throws: EntryError.badSlot(slot: c.slots - 1, value: 9)) { try c.decode(u) }
        // Raw with an empty slot.
        var r = c.encode(.raw(pblks: (0..<c.slots).map { Pblk($0 + 5) }))
        LE.put(0, c.pblkBytes, &r, c.lenBytes)
        #expect(throws: EntryError.badSlot(slot: 0, value: 0)) { try c.decode(r) }
        if c.maxCompressedLength >= 4097 {
            // Compressed over two pblks with only one named, and with a third named.
            var e = c.encode(.compressed(length: 4097, pblks: [7, 8]))
            LE.put(0, c.pblkBytes, &e, c.lenBytes + c.pblkBytes)
            #expect(throws: EntryError.badSlot(slot: 1, value: 0)) { try c.decode(e) }
            var f = c.encode(.compressed(length: 4097, pblks: [7, 8]))
            LE.put(11, c.pblkBytes, &f, c.lenBytes + 2 * c.pblkBytes)
            #expect(throws: EntryError.badSlot(slot: 2, value: 11)) { try c.decode(f) }
        }
    }

    @Test func fourKBlocksHaveNoCompressedRange() throws {
        let c = try codec(0, 1000)
        #expect(c.maxCompressedLength == 0)
        var b = c.encode(.unallocated)
        LE.put(1, 2, &b, 0)
        #expect(throws: EntryError.badLength(1)) { try c.decode(b) }
    }

    @Test func thirtyTwoBitRawLength() throws {
        let c = try codec(5, 1 << 30)
        #expect(c.rawLength == 0xFFFF_FFFF && c.lenBytes == 4)
        #expect(c.maxCompressedLength == 128 * 1024 - 4096)
    }
}

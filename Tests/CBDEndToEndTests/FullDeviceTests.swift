// SPDX-License-Identifier: Apache-2.0
import Foundation
import Glibc
import Testing
@testable import CBDFormat
@testable import CBDTestSupport
@testable import CBDDevice
@testable import CBDVolume
@testable import CBDLayout
@testable import CBDCheck

/// A device that fills up, as a thin-provisioned device will: no write that was accepted is
/// lost, the one that does not fit is refused with `.noSpace` and changes nothing, freeing
/// space never needs space, and writes succeed again once space is freed.
@Suite struct FullDeviceTests {
    let bs = 65536

    func random(_ seed: UInt64, _ count: Int) -> [UInt8] {
        var rng = SplitMix(seed: seed)
        return (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    }

    /// A block that compresses into one pblk: 2000 random bytes, then zeros.
    func small(_ seed: UInt64) -> [UInt8] { random(seed, 2000) + [UInt8](repeating: 0, count: bs - 2000) }

    func write(_ v: Volume, _ data: [UInt8], lblk n: Int) throws {
        try data.withUnsafeBytes { try v.write($0, at: n * v.geometry.lblkSize) }
    }

    func read(_ v: Volume, lblk n: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0xEE, count: v.geometry.lblkSize)
        try out.withUnsafeMutableBytes { try v.read(into: $0, at: n * v.geometry.lblkSize) }
        return out
    }

    func isNoSpace(_ body: () throws -> Void) -> Bool {
        do { try body(); return false } catch let e as CBDError { return e.kind == .noSpace } catch { return false }
    }

    func checkClean(_ dev: BlockDevice) throws {
        var options = Checker.Options()
        options.verifyData = true
        options.mode = .readOnly
        let check = try Checker(device: dev, options: options)
        try check.run()
        #expect(check.problems.isEmpty, "\(check.problems.map(\.message))")
    }

    /// Fills `v` block by block (raw blocks, then one-pblk blocks) at the lblks in `order`
    /// until not one pblk is free; returns what each accepted lblk holds.
    func fill(_ v: Volume, order: [Int]) throws -> [Int: [UInt8]] {
        var model: [Int: [UInt8]] = [:]
        var rest = order[...]
        for compressible in [false, true] {
            while let n = rest.first {
                let data = compressible ? small(UInt64(n)) : random(UInt64(n), bs)
                if isNoSpace({ try write(v, data, lblk: n) }) {
                    #expect(
                        try read(v, lblk: n) == [UInt8](repeating: 0, count: bs), "a refused write changed lblk \(n)")
                    break
                }
                model[n] = data
                rest = rest.dropFirst()
            }
        }
        return model
    }

    /// The cases on one device, through the library: fill with a small cache (early
    /// commits) until not one pblk is free; every accepted block reads back, before and after
    /// a flush and a reopen. Then, on the full device: a discard of lblk 120 (its entry
    /// straddles two table pblks), an overwrite with zeros; both free pblks, and writes that
    /// did not fit before succeed on the same Volume.
    @Test func fillFreeAndWriteAgain() throws {
        let mem = try memoryDevice(physical: 1 << 20, logical: 8 << 20, lblkShift: 4)
        let v = try Volume(device: mem, cacheBytes: 4 * bs)
        #expect(EntryJournal(device: mem, geometry: v.geometry).straddles(120))
        let model = try fill(v, order: [120] + Array(0..<120) + Array(121..<128))
        #expect(model[120] != nil && model.count > 20)
        let u = try v.usage()
        #expect(u.free - u.promised == 0, "\(u)")
        for (n, data) in model { #expect(try read(v, lblk: n) == data, "lblk \(n) before the flush") }
        try v.flush()
        for (n, data) in model { #expect(try read(v, lblk: n) == data, "lblk \(n) after the flush") }
        try v.close()
        try checkClean(mem)
        #expect(try Volume(device: mem).usage().free == 0)

        // Full: discard the straddling raw block and zero another: both need no space.
        let w = try Volume(device: mem, cacheBytes: 4 * bs)
        let zeroed = try #require(
            model.keys.sorted().first { $0 != 120 && model[$0]!.count == bs && model[$0]![0] != 0 })
        try w.discard(offset: 120 * bs, length: bs)
        try write(w, [UInt8](repeating: 0, count: bs), lblk: zeroed)
        try w.flush()
        let freed = try w.usage().free
        #expect(freed >= 17, "\(freed) free")
        // Writes fit again, without a restart.
        try write(w, random(900, bs), lblk: 120)
        try w.close()
        #expect(try headerAndGeometry(mem).0.isDirty == false)
        try checkClean(mem)
        let back = try Volume(device: mem)
        #expect(try read(back, lblk: 120) == random(900, bs))
        #expect(try read(back, lblk: zeroed) == [UInt8](repeating: 0, count: bs))
        for (n, data) in model where n != 120 && n != zeroed { #expect(try read(back, lblk: n) == data, "lblk \(n)") }
    }

    /// With every block dirty in a large cache (nothing committed yet), the reservations alone
    /// must stop the writes in time: the commit at close stores every accepted block.
    @Test func reservationsHoldWithEverythingCached() throws {
        let mem = try memoryDevice(physical: 1 << 20, logical: 8 << 20, lblkShift: 4)
        let v = try Volume(device: mem, cacheBytes: 128 * bs)
        let model = try fill(v, order: Array(0..<128))
        try v.close()
        try checkClean(mem)
        let back = try Volume(device: mem)
        for (n, data) in model { #expect(try read(back, lblk: n) == data, "lblk \(n)") }
        for n in 0..<128 where model[n] == nil { #expect(try read(back, lblk: n) == [UInt8](repeating: 0, count: bs)) }
    }

    /// A request of several blocks that does not fit is refused whole: none of its blocks
    /// changes, not even the ones that would have fitted.
    @Test func aRefusedRequestChangesNoBlock() throws {
        let mem = try memoryDevice(physical: 1 << 20, logical: 8 << 20, lblkShift: 4)
        let v = try Volume(device: mem, cacheBytes: 8 * bs)
        for n in 0..<12 { try write(v, random(UInt64(n), bs), lblk: n) }
        let before = try (0..<24).map { try read(v, lblk: $0) }
        let big = random(77, 12 * bs)
        #expect(isNoSpace { try big.withUnsafeBytes { try v.write($0, at: 12 * bs) } })
        #expect(try (0..<24).map { try read(v, lblk: $0) } == before)
        try v.close()
        try checkClean(mem)
    }

    /// Blocks of 4 MiB with 4-byte slots: an entry (4100 bytes) is too large for the header, so
    /// the journal needs data pblks; the Volume keeps them, never promising them to data, so a
    /// discard on a device filled through it still succeeds.
    @Test func journalRoomIsKeptForLargeEntries() throws {
        let lbs = 4 << 20
        let mem = try memoryDevice(physical: 264 << 20, logical: 4 << 30, lblkShift: 10)
        let v = try Volume(device: mem, cacheBytes: 2 * lbs)
        let journal = EntryJournal(device: mem, geometry: v.geometry)
        #expect(journal.needsJournalPblks && v.geometry.entryLen == 4100)
        var accepted: [Int] = []
        var data = random(1, lbs)  // incompressible; each block differs in its first bytes
        for n in 0..<v.geometry.nrLblk {
            data[0] = UInt8(truncatingIfNeeded: n)
            data[1] = UInt8(truncatingIfNeeded: n >> 8)
            if isNoSpace({ try data.withUnsafeBytes { try v.write($0, at: n * lbs) } }) { break }
            accepted.append(n)
        }
        // Then blocks of one pblk (2000 random bytes, then zeros) until not one more fits.
        var tiny = random(2, 2000) + [UInt8](repeating: 0, count: lbs - 2000)
        for n in (accepted.count)..<v.geometry.nrLblk {
            tiny[0] = UInt8(truncatingIfNeeded: n)
            if isNoSpace({ try tiny.withUnsafeBytes { try v.write($0, at: n * lbs) } }) { break }
        }
        try v.flush()
        let u = try v.usage()
        // What is left is the kept journal room, and less than the smallest block takes beside it.
        #expect(u.free >= journal.pblksPerRecord && u.free < journal.pblksPerRecord + 8, "\(u)")
        let victim = try #require(accepted.last)
        try v.discard(offset: victim * lbs, length: lbs)
        try v.close()
        #expect(try headerAndGeometry(mem).0.isDirty == false)
        try checkClean(mem)
        #expect(try Volume(device: mem).usage().free == u.free + v.geometry.pblkPerLblk)
    }

    /// A server's status file is trusted only whole and in range: it round-trips, and a torn,
    /// garbled or out-of-range one reads as no status (cbd info does arithmetic on it).
    @Test func serveStatusIsCheckedBeforeUse() throws {
        let g = try headerAndGeometry(memoryDevice(physical: 1 << 20, logical: 8 << 20, lblkShift: 4)).1
        let s = ServeStatus(pid: 42, readOnly: false, geometry: g, usage: (g.totalDataPblks, 100, 16), refusals: 3)
        let bytes = s.encoded()
        #expect(ServeStatus.decode(bytes) == s)
        var named = s  // the serving process's URI and a failed device's read-only mode
        named.uri = "nbd+unix:///?socket=/run/cbd-serve/disk.sock"
        named.failed = true
        #expect(ServeStatus.decode(named.encoded()) == named)
        #expect(ServeStatus.decode(Array(bytes.prefix(40))) == nil)
        var flipped = bytes
        flipped[5] ^= 1
        #expect(ServeStatus.decode(flipped) == nil)
        for (key, value) in [
            ("refusals", "3"), ("free_pblks", "-1"), ("free_pblks", "\(g.totalDataPblks + 1)"), ("pid", "0"),
            ("data_pblks", "\(1 << 60)")
        ] {
            // The same record with one figure changed, and a crc that matches it.
            let text =
                String(decoding: bytes, as: UTF8.self).split(separator: "\n")
                .filter { !$0.hasPrefix("crc=") }
                .map { $0.hasPrefix(key + "=") ? "\(key)=\(value)" : String($0) }.joined(separator: "\n") + "\n"
            let body = Array(text.utf8)
            let decoded = ServeStatus.decode(body + Array("crc=\(CRC32.of(body))\n".utf8))
            // The first is the control: the unchanged figure, re-encoded this way, reads back.
            #expect(key == "refusals" ? decoded == s : decoded == nil, "\(key)=\(value)")
        }
    }

    /// cbd info says how full a device is (offline), and that it is full.
    @Test func infoShowsUseAndFull() throws {
        let s = try Scratch()
        let img = s.file("d.cbd")
        try #require(try Tools.run("mkfs.cbd", ["-q", img, "1M", "-L", "8M"]).status == 0)
        let empty = try Tools.run("cbd", ["info", "--json", img])
        #expect(
            empty.stdout.contains("\"use_percent\":0") && empty.stdout.contains("\"full\":false"), "\(empty.stdout)")
        do {  // the device (and its lock) is closed at the end of this scope
            let v = try Volume(device: try FileDevice(path: img, mode: .readWrite))
            _ = try fill(v, order: Array(0..<128))
            try v.close()
        }
        let full = try Tools.run("cbd", ["info", img])
        #expect(
            full.stdout.contains("use_percent:        100") && full.stdout.contains("full:               yes"),
            "\(full.stdout)")
    }
}

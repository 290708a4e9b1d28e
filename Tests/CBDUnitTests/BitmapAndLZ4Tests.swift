// SPDX-License-Identifier: Apache-2.0
import Testing
@testable import CBDFormat
@testable import CBDTestSupport
import CBDCLI
@testable import CBDDevice
@testable import CBDVolume
@testable import CBDLayout
@testable import CBDCheck

@Suite struct BitmapTests {
    @Test func paddingOfAShortZone() {
        let b = Bitmap(dataPblks: 10)
        #expect((0..<10).allSatisfy { !b.isSet($0) })
        #expect((10..<32768).allSatisfy { b.isSet($0) })
        #expect(b.countSet(below: 10) == 0)
        #expect(b.bytes[0] == 0 && b.bytes[1] == 0xFC)
        #expect(Bitmap(dataPblks: 32768).bytes.allSatisfy { $0 == 0 })
    }

    @Test func setClearAndSearch() {
        var b = Bitmap(dataPblks: 32768)
        for k in 0..<20 { b.set(k) }
        b.set(1000)
        #expect(b.firstClear(below: 32768) == 20)
        #expect(b.countSet() == 21)
        b.clear(3)
        #expect(b.firstClear(below: 32768) == 3)
        #expect(b.bytes[0] == 0xF7)
        #expect(b.freeExtents(below: 1002) == [3..<4, 20..<1000, 1001..<1002])
        var full = Bitmap(dataPblks: 0)
        #expect(full.firstClear(below: 32768) == nil)
        full.clear(32767)
        #expect(full.firstClear(from: 5, below: 32768) == 32767)
    }
}

@Suite struct LZ4Tests {
    @Test func roundTripAndBounds() throws {
        let n = 65536
        let src = (0..<n).map { UInt8(truncatingIfNeeded: $0 / 100) }
        var dst = [UInt8](repeating: 0, count: n - 4096)
        let len = try #require(
            src.withUnsafeBytes { s in
                dst.withUnsafeMutableBytes { d in
                    LZ4Codec.compress(s.baseAddress!, count: n, into: d.baseAddress!, capacity: d.count)
                }
            })
        #expect(len < 4096)
        var back = [UInt8](repeating: 0, count: n)
        let ok = dst.withUnsafeBytes { s in
            back.withUnsafeMutableBytes { d in
                LZ4Codec.decompress(s.baseAddress!, count: len, into: d.baseAddress!, expected: n)
            }
        }
        #expect(ok && back == src)
        // Expecting a different size fails: the block must be exactly one logical block.
        var small = [UInt8](repeating: 0, count: n * 2)
        let wrong = dst.withUnsafeBytes { s in
            small.withUnsafeMutableBytes { d in
                LZ4Codec.decompress(s.baseAddress!, count: len, into: d.baseAddress!, expected: n * 2)
            }
        }
        #expect(!wrong)
    }

    @Test func incompressibleDataDoesNotFit() {
        var rng = SplitMix(seed: 1)
        let src = (0..<65536).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        var dst = [UInt8](repeating: 0, count: 65536 - 4096)
        let len = src.withUnsafeBytes { s in
            dst.withUnsafeMutableBytes { d in
                LZ4Codec.compress(s.baseAddress!, count: s.count, into: d.baseAddress!, capacity: d.count)
            }
        }
        #expect(len == nil)
    }

    @Test func garbageFailsToDecompress() {
        let junk: [UInt8] = [0xFF, 0xFF, 0xFF, 0x00, 0x01, 0x02]
        var out = [UInt8](repeating: 0, count: 65536)
        let ok = junk.withUnsafeBytes { s in
            out.withUnsafeMutableBytes { d in
                LZ4Codec.decompress(s.baseAddress!, count: s.count, into: d.baseAddress!, expected: 65536)
            }
        }
        #expect(!ok)
    }
}

@Suite struct ByteSizeTests {
    @Test func parses() {
        #expect(ByteSize.parse("4096") == 4096)
        #expect(ByteSize.parse("64K") == 65536)
        #expect(ByteSize.parse("64k") == 65536)
        #expect(ByteSize.parse("1G") == 1 << 30)
        #expect(ByteSize.parse("1GiB") == 1 << 30)
        #expect(ByteSize.parse("1.5M") == 3 << 19)
        #expect(ByteSize.parse("2T") == 2 << 40)
        // util-linux's decimal units, and the byte unit alone.
        #expect(ByteSize.parse("10MB") == 10_000_000)
        #expect(ByteSize.parse("64kB") == 64_000)
        #expect(ByteSize.parse("1GB") == 1_000_000_000)
        #expect(ByteSize.parse("10gib") == 10 << 30)
        #expect(ByteSize.parse("512B") == 512)
        #expect(ByteSize.parse("1E") == 1 << 60 && ByteSize.parse("1P") == 1 << 50)
        for bad in [
            "", "-1", "1X", "abc", "1..2K", "99999999999999999999", "16E", "K", "0x10", "1KK", "1 K B", "1iB", "."
        ] {
            #expect(ByteSize.parse(bad) == nil, "\(bad)")
        }
        #expect(ByteSize.format(1 << 30) == "1.00 GiB")
        #expect(ByteSize.format(3 << 19) == "1.50 MiB")
    }
}

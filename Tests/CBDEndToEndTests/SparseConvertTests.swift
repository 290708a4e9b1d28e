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

/// A sparse disk image converts in the time its data takes, not its logical size: a 1 TiB
/// file with a few MiB at scattered offsets (the very last block among them) goes to a CBD
/// and back with its data and its holes. Before the conversions skipped holes, this took
/// minutes; now it is part of the normal suite.
@Suite struct SparseConvertTests {
    static let logical = 1 << 40

    /// (offset, length, seed) of each piece of data: unaligned, straddling blocks and zones,
    /// compressible and not, and the last byte of the file.
    static let pieces: [(Int, Int, UInt64)] = [
        (0, 4096, 1),
        (3 << 20 + 1000, 1 << 20, 2),
        (7 << 30 + 65536 * 3 - 17, 300_000, 3),
        (300 << 30, 2 << 20, 4),
        (777 << 30 + 12345, 65536, 5),
        (logical - (1 << 20), 1 << 20, 6)
    ]

    static func bytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix(seed: seed)
        return (0..<count).map { i in
            seed % 2 == 0 ? UInt8(truncatingIfNeeded: rng.next()) : UInt8(truncatingIfNeeded: i / 50)
        }
    }

    /// The data extents of a file, by SEEK_DATA/SEEK_HOLE.
    static func dataExtents(_ path: String) throws -> [Range<Int>] {
        let fd = open(path, O_RDONLY)
        try #require(fd >= 0)
        defer { close(fd) }
        var extents: [Range<Int>] = []
        let seekData: Int32 = 3, seekHole: Int32 = 4  // Linux's SEEK_DATA, SEEK_HOLE (macros Swift misses)
        var pos: off_t = 0
        while true {
            let d = lseek(fd, pos, seekData)
            if d < 0 { break }
            let h = lseek(fd, d, seekHole)
            extents.append(Int(d)..<Int(h))
            pos = h
        }
        return extents
    }

    @Test func terabyteSparseFileBothWays() throws {
        let s = try Scratch()
        let raw = s.file("sparse.img"), cbd = s.file("sparse.cbd"), back = s.file("back.img")
        #expect(try Tools.run("truncate", ["-s", String(Self.logical), raw]).status == 0)
        let fh = try FileHandle(forWritingTo: URL(fileURLWithPath: raw))
        for (offset, length, seed) in Self.pieces {
            try fh.seek(toOffset: UInt64(offset))
            try fh.write(contentsOf: Data(Self.bytes(length, seed: seed)))
        }
        try fh.close()

        let there = try Tools.run("cbd", ["convert", "-q", raw, cbd])
        try #require(there.status == 0, "\(there.stderr)")
        #expect(try Tools.run("fsck.cbd", ["-fn", cbd]).status == 0)
        let g = try headerAndGeometry(FileDevice(path: cbd, mode: .readOnly)).1
        #expect(g.logicalBytes == Self.logical)
        // Only the blocks that hold data are allocated: about the pieces' size, not 1 TiB.
        #expect(FileFacts.allocated(cbd) < 64 << 20, "\(FileFacts.allocated(cbd)) bytes allocated")

        let backAgain = try Tools.run("cbd", ["convert", "-q", cbd, back])
        try #require(backAgain.status == 0, "\(backAgain.stderr)")
        #expect(FileFacts.size(back) == Self.logical)
        // The data: every piece reads back.
        let reader = try FileHandle(forReadingFrom: URL(fileURLWithPath: back))
        for (offset, length, seed) in Self.pieces {
            try reader.seek(toOffset: UInt64(offset))
            let got = try reader.read(upToCount: length) ?? Data()
            #expect(got == Data(Self.bytes(length, seed: seed)), "piece at \(offset)")
        }
        try reader.close()
        // The holes: data only in the blocks that hold a piece.
        let bs = g.lblkSize
        let blocks = Set(Self.pieces.flatMap { (offset, length, _) in (offset / bs)...((offset + length - 1) / bs) })
        let extents = try Self.dataExtents(back)
        #expect(!extents.isEmpty)
        for e in extents {
            let inside = (e.lowerBound / bs...(e.upperBound - 1) / bs).allSatisfy { blocks.contains($0) }
            #expect(inside, "data at \(e) outside the pieces' blocks")
        }
        #expect(extents.reduce(0) { $0 + $1.count } <= blocks.count * bs)
    }

    /// To standard output the holes are zeros, written in order between the blocks around
    /// them, also where whole windows of blocks are skipped for a table that is a hole.
    @Test func sparseDeviceToStandardOutput() throws {
        let s = try Scratch()
        let raw = s.file("sparse.img"), cbd = s.file("sparse.cbd")
        #expect(try Tools.run("truncate", ["-s", "1G", raw]).status == 0)
        let fh = try FileHandle(forWritingTo: URL(fileURLWithPath: raw))
        for (offset, seed) in [(0, 1), (300 << 20 + 5, 2), ((1 << 30) - 70000, 3)] {
            try fh.seek(toOffset: UInt64(offset))
            try fh.write(contentsOf: Data(Self.bytes(70000, seed: UInt64(seed))))
        }
        try fh.close()
        try #require(try Tools.run("cbd", ["convert", "-q", raw, cbd]).status == 0)
        let r = try Tools.run("sh", ["-c", "'\(Tools.binDir)/cbd' convert -q '\(cbd)' - | cmp - '\(raw)'"])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
    }
}

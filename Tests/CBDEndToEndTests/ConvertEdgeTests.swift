// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDFormat
@testable import CBDTestSupport
import CBDCLI
@testable import CBDDevice
@testable import CBDVolume
@testable import CBDLayout
@testable import CBDCheck

/// What a new user tripped on in convert and discard: the input as output, a damaged CBD
/// header taken for raw data, symbolic links, standard output, a whole-device discard.
@Suite struct ConvertEdgeTests {
    func sample(_ s: Scratch) throws -> (raw: String, cbd: String) {
        var rng = SplitMix(seed: 21)
        var bytes = [UInt8]()
        for n in 0..<48 {
            bytes += (0..<65536).map { i in
                n % 4 == 0
                    ? UInt8(truncatingIfNeeded: rng.next()) : n % 5 == 0 ? 0 : UInt8(truncatingIfNeeded: i / 33 + n)
            }
        }
        let raw = s.file("raw.img"), cbd = s.file("dev.cbd")
        try #require(FileManager.default.createFile(atPath: raw, contents: Data(bytes)))
        try #require(try Tools.run("cbd", ["convert", "-q", raw, cbd]).status == 0)
        return (raw, cbd)
    }

    @Test func inputAsOutputIsRefused() throws {
        let s = try Scratch()
        let (raw, cbd) = try sample(s)
        for file in [raw, cbd] {
            let before = try FileFacts.bytes(file)
            let r = try Tools.run("cbd", ["convert", "-f", file, file])
            #expect(r.status == 1 && r.stderr.contains("is the input itself"), "\(r.stderr)")
            #expect(try FileFacts.bytes(file) == before)
        }
        // Also through a link to it.
        try FileManager.default.createSymbolicLink(atPath: s.file("link"), withDestinationPath: raw)
        #expect(try Tools.run("cbd", ["convert", "-f", raw, s.file("link")]).status == 1)
    }

    @Test func damagedHeaderIsNotTakenForRawData() throws {
        let s = try Scratch()
        let (_, cbd) = try sample(s)
        let h = try FileHandle(forUpdating: URL(fileURLWithPath: cbd))
        try h.seek(toOffset: 4)
        try h.write(contentsOf: Data([7, 0]))  // version_major 7: the magic is right, the rest is not
        try h.close()
        let out = s.file("out.cbd")
        let r = try Tools.run("cbd", ["convert", cbd, out])
        #expect(r.status == 1 && r.stderr.contains("damaged CBD device") && r.stderr.contains("--raw"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out))
        #expect(try Tools.run("cbd", ["convert", "-q", "--raw", cbd, out]).status == 0)
    }

    @Test func symbolicLinkOutputIsWrittenThrough() throws {
        let s = try Scratch()
        let (raw, cbd) = try sample(s)
        let target = s.file("target.img"), link = s.file("link.img")
        try #require(FileManager.default.createFile(atPath: target, contents: Data([1, 2, 3])))
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: "target.img")
        let r = try Tools.run("cbd", ["convert", "-q", "-f", cbd, link])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(
            (try? FileManager.default.destinationOfSymbolicLink(atPath: link)) == "target.img", "the link was replaced")
        #expect(try FileFacts.bytes(target).prefix(FileFacts.size(raw)) == FileFacts.bytes(raw))
    }

    @Test func standardOutputForCBDToRaw() throws {
        let s = try Scratch()
        let (raw, cbd) = try sample(s)
        let r = try Tools.run("cbd", ["convert", cbd, "-"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.out.prefix(FileFacts.size(raw)) == (try FileFacts.bytes(raw)))
        #expect(r.out.count == (try headerAndGeometry(FileDevice(path: cbd, mode: .readOnly)).1.logicalBytes))
        let wrongWay = try Tools.run("cbd", ["convert", raw, "-"])
        #expect(wrongWay.status == 1 && wrongWay.stderr.contains("standard output"), "\(wrongWay.stderr)")
    }

    @Test func wholeDeviceDiscardNeedsForceAndFreesSpace() throws {
        let s = try Scratch()
        let (_, cbd) = try sample(s)
        let before = try FileFacts.bytes(cbd)
        let r = try Tools.run("cbd", ["discard", cbd])
        #expect(r.status == 1 && r.stderr.contains("whole device") && r.stderr.contains("-f"), "\(r.stderr)")
        #expect(try FileFacts.bytes(cbd) == before)
        let used = FileFacts.allocated(cbd)
        #expect(try Tools.run("cbd", ["discard", "-f", cbd]).status == 0)
        #expect(try Tools.run("cbd", ["read", cbd]).out.allSatisfy { $0 == 0 })
        #expect(try Tools.run("fsck.cbd", ["-fn", cbd]).status == 0)
        // The freed pblks are holes again.
        #expect(FileFacts.allocated(cbd) < used / 4, "\(FileFacts.allocated(cbd)) of \(used) bytes still allocated")
    }
}

/// One vocabulary: the compression ratio of a device is the same number in convert's summary,
/// fsck's summary line and JSON, and cbd info.
@Suite struct RatioTests {
    @Test func sameRatioEverywhere() throws {
        let s = try Scratch()
        let (raw, _) = try ConvertEdgeTests().sample(s)
        let out = s.file("r.cbd")
        let conv = try Tools.run("cbd", ["convert", raw, out])
        let line = try #require(conv.stdout.split(separator: "\n").first { $0.contains("compression ratio:") })
        let ratio = try #require(line.split(separator: " ").first { Double($0) != nil }).description
        let fsck = try Tools.run("fsck.cbd", ["-fn", out])
        #expect(fsck.stdout.contains("compression ratio \(ratio)"), "\(ratio) vs \(fsck.stdout)")
        let js = try #require(
            JSONSerialization.jsonObject(with: try Tools.run("fsck.cbd", ["-fn", "--json", out]).out) as? [String: Any])
        #expect(String(format2: (js["summary"] as? [String: Any])?["compression_ratio"] as? Double ?? -1) == ratio)
        let info = try Tools.run("cbd", ["info", out])
        #expect(
            info.stdout.contains("compression_ratio:  \(ratio)") || info.stdout.contains("compression_ratio: \(ratio)")
                || info.stdout.split(separator: "\n").contains {
                    $0.hasPrefix("compression_ratio:") && $0.hasSuffix(ratio)
                },
            "\(info.stdout)")
        // The provisioning ratio is another quantity, named as such.
        #expect(conv.stdout.contains("provisioning ratio:"))
    }
}

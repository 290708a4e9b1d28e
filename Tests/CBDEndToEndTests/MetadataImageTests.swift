// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDTestSupport

/// `cbd image --metadata`: a damaged device's metadata image gives the same fsck findings,
/// holds none of its data, and costs what the metadata is.
@Suite struct MetadataImageTests {
    static let cbdimg = FsckTests.corpus + "/cbdimg.py"

    /// fsck.cbd -fn's findings, the device's name taken out.
    func findings(_ dev: String) throws -> (Int32, [String]) {
        let r = try Tools.run("fsck.cbd", ["-fn", dev])
        return (r.status, r.stdout.replacingOccurrences(of: dev, with: "DEV").split(separator: "\n").map(String.init))
    }

    @Test func sameFindingsNoData() throws {
        let s = try Scratch()
        let raw = try ConvertTests().ext4Image(s, size: "24M")
        let dev = s.file("d.cbd"), meta = s.file("d.meta")
        try #require(try Tools.run("cbd", ["convert", "-q", raw, dev]).status == 0)
        // Damage: a leaked bit, an entry cleared (its pblks leak), a cross-link.
        let used = try Tools.run("python3", [Self.cbdimg, dev, "entry", "40"]).stdout
        let slots = used.split(separator: " ")[1].trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(
            try Tools.run(
                "python3", [Self.cbdimg, dev, "set-entry", "41", used.split(separator: " ")[0].description, slots]
            ).status == 0)
        #expect(try Tools.run("python3", [Self.cbdimg, dev, "set-entry", "50", "0"]).status == 0)
        let before = try findings(dev)
        #expect(before.0 == 4, "the device is damaged: \(before.1)")
        let r = try Tools.run("cbd", ["image", "--metadata", dev, meta])
        try #require(r.status == 0, "\(r.stderr)")
        let after = try findings(meta)
        #expect(after.0 == before.0)
        // The same problems. Two lines depend on the data and are left out: the summary's count
        // of data, and how pass 1B resolves a shared pblk (it reads the shared block to choose
        // clone or clear; on the image that block reads as zeros), but both sides name the sharing.
        // Pblks no entry names are orphans where they hold data (pass 3) and plain leaks where
        // they read as zeros (pass 2, as every data pblk of the image): compared as ranges.
        func structural(_ lines: [String]) -> [String] {
            var out: [String] = [], unclaimed: [String] = []
            for l in lines
            where !l.contains("data pblks used") && !l.contains("shares pblks") && !l.contains("problems found") {
                if l.hasPrefix("Pass 2") || l.hasPrefix("Pass 3") { continue }
                if let r = l.range(of: "used by no entry: ") {
                    unclaimed += l[r.upperBound...].prefix { $0 != "." }.split(separator: ",").map(String.init)
                } else if l.contains("hold data no entry names") || l.contains("holds data no entry names") {
                    unclaimed.append(String(l.split(separator: " ")[3]))
                } else {
                    out.append(l)
                }
            }
            return out + unclaimed.sorted().map { "unclaimed \($0)" }
        }
        #expect(
            structural(after.1) == structural(before.1),
            "device:\n\(before.1.joined(separator: "\n"))\nimage:\n\(after.1.joined(separator: "\n"))")
        #expect(after.1.contains { $0.contains("Logical block 41") && $0.contains("shares pblks") }, "\(after.1)")
        // No data: the image holds only metadata pblks, far less than the device.
        #expect(
            FileFacts.allocated(meta) * 10 < FileFacts.allocated(dev),
            "\(FileFacts.allocated(meta)) of \(FileFacts.allocated(dev))")
        #expect(FileFacts.size(meta) == FileFacts.size(dev))
        let data = try FileFacts.bytes(raw)
        let image = try FileFacts.bytes(meta)
        // A 64 KiB piece of the filesystem's data does not occur in the image.
        let piece = data[(4 << 20)..<(4 << 20) + 4096]
        #expect(!piece.allSatisfy { $0 == 0 } ? image.range(of: piece) == nil : true)
        #expect(try Tools.run("cbd", ["image", dev, meta]).status == 64, "--metadata is required")
    }

    /// A zeroed header, a set reserved byte, a truncated image: the metadata image is written
    /// (the layout found again, pblk 0 copied as it is), and fsck.cbd -n finds the same header
    /// problem in it as in the device.
    @Test(arguments: ["zeroed", "reserved", "truncated"])
    func damagedHeaderStillImages(damage: String) throws {
        let s = try Scratch()
        let (_, dev) = try convertedExt4(s)
        let meta = s.file("d.meta")
        switch damage {
        case "zeroed": try overwrite(dev, at: 0, with: Data(count: 4096))
        case "reserved": try overwrite(dev, at: 200, with: Data([7]))
        default: try #require(truncate(dev, off_t(FileFacts.size(dev) - (2 << 20))) == 0)
        }
        let r = try Tools.run("cbd", ["image", "--metadata", dev, meta])
        #expect(r.status == 0, "\(r.stderr)")
        let kind = ["zeroed": "header_lost", "reserved": "header_reserved", "truncated": "header_lost"][damage] ?? ""
        for path in [dev, meta] where damage != "truncated" || path == dev {
            let f = try Tools.run("fsck.cbd", ["-fn", "--json", path])
            #expect(f.status == 4, "\(path): \(f.stdout)\(f.stderr)")
            let kinds =
                ((try JSONSerialization.jsonObject(with: f.out) as? [String: Any])?["problems"] as? [[String: Any]])?
                .compactMap { $0["kind"] as? String } ?? []
            #expect(kinds.contains(damage == "truncated" ? "device_short" : kind), "\(path): \(kinds)")
        }
    }
}

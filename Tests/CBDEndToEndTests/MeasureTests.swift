// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDTestSupport

/// `cbd measure`: the estimate and its bound against the size `cbd convert` really makes.
@Suite struct MeasureTests {
    func measure(_ args: [String]) throws -> [String: Any] {
        let r = try Tools.run("cbd", ["measure", "--json"] + args)
        try #require(r.status == 0, "\(r.stderr)")
        return try #require(JSONSerialization.jsonObject(with: r.out) as? [String: Any])
    }

    /// Inputs of every kind: compressible, incompressible, sparse, mixed.
    func inputs(_ s: Scratch) throws -> [String: String] {
        var rng = SplitMix(seed: 11)
        let text = Data((0..<(12 << 20)).map { UInt8(truncatingIfNeeded: ($0 / 5) % 40 + 40 + ($0 % 97 == 0 ? 7 : 0)) })
        let random = Data((0..<(6 << 20)).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        var mixed = Data()
        for i in 0..<48 {
            mixed +=
                i % 3 == 0
                ? random[(i * 65536)..<(i + 1) * 65536]
                : i % 3 == 1 ? text[(i * 65536)..<(i + 1) * 65536] : Data(count: 65536)
        }
        var out: [String: String] = [:]
        for (name, data) in [("text", text), ("random", random), ("mixed", mixed)] {
            out[name] = s.file("\(name).img")
            try #require(FileManager.default.createFile(atPath: s.file("\(name).img"), contents: data))
        }
        out["ext4"] = try ConvertTests().ext4Image(s, size: "24M")
        let sparse = s.file("sparse.img")
        try #require(try Tools.run("truncate", ["-s", "100G", sparse]).status == 0)
        let h = try #require(FileHandle(forWritingAtPath: sparse))
        for off in [0, 40 << 30, (100 << 30) - (4 << 20)] {
            try h.seek(toOffset: UInt64(off)); h.write(mixed.prefix(4 << 20))
        }
        try h.close()
        out["sparse"] = sparse
        return out
    }

    @Test func estimateBoundHoldsAndExactIsExact() throws {
        let s = try Scratch()
        for (name, input) in try inputs(s).sorted(by: { $0.key < $1.key }) {
            let out = s.file("\(name).cbd")
            try #require(try Tools.run("cbd", ["convert", "-q", input, out]).status == 0)
            let real = FileFacts.size(out)
            let m = try measure([input])
            let estimate = try #require(m["physical_size"] as? Int),
                bound = try #require(m["physical_size_bound"] as? Int)
            let error = try #require(m["data_size_error"] as? Int)
            // The real size lies within the error bound of the estimate (pblk rounding of the headroom aside).
            #expect(
                abs(real - estimate) <= error + real / 64 && real <= bound + real / 64,
                "\(name): estimate \(estimate) (bound \(bound), error \(error)), real \(real)")
            let exact = try measure(["--exact", input])
            #expect(exact["physical_size"] as? Int == real, "\(name): exact \(exact), real \(real)")
            // A CBD measured as its logical device, re-blocked the same way: the same answer.
            #expect(try measure(["--exact", out])["physical_size"] as? Int == real, "\(name) as a CBD")
        }
    }
}

// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDFormat
@testable import CBDTestSupport
@testable import CBDDevice
@testable import CBDVolume
@testable import CBDLayout
@testable import CBDInspect

/// Inputs that once crashed a fuzz target (Tests/fuzz-regressions/TARGET/*), replayed through
/// the same target by the plain build of cbd-fuzz: they must now run clean.
@Suite struct FuzzRegressionTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("fuzz-regressions").path

    static var cases: [String] {
        let fm = FileManager.default
        return ((try? fm.contentsOfDirectory(atPath: root)) ?? []).sorted().flatMap { target in
            ((try? fm.contentsOfDirectory(atPath: "\(root)/\(target)")) ?? []).sorted().map { "\(target)/\($0)" }
        }
    }

    @Test(arguments: FuzzRegressionTests.cases)
    func replay(_ input: String) throws {
        let target = String(input.split(separator: "/")[0])
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Tools.binDir + "/cbd-fuzz")
        p.arguments = ["\(Self.root)/\(input)"]
        p.environment = ["CBD_FUZZ_TARGET": target]
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0 && p.terminationReason == .exit, "\(input)")
    }

    /// The seed-like inputs of every target run clean too (the replayer itself works).
    @Test func replayerRunsEveryTarget() throws {
        let s = try Scratch()
        let img = s.file("d.cbd")
        #expect(try Tools.run("mkfs.cbd", ["-q", img, "256K"]).status == 0)
        for target in ["header", "entry", "volume", "fsck"] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Tools.binDir + "/cbd-fuzz")
            p.arguments = [img]
            p.environment = ["CBD_FUZZ_TARGET": target]
            try p.run()
            p.waitUntilExit()
            #expect(p.terminationStatus == 0, "\(target)")
        }
    }
}

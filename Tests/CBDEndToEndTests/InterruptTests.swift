// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDFormat
@testable import CBDTestSupport
@testable import CBDDevice
@testable import CBDLayout
@testable import CBDCheck
@testable import CBDInspect

/// SIGINT, SIGTERM and SIGHUP during a writing tool: what it created is removed, one line says
/// what was left, and the exit status is 128 + the signal.
@Suite(.serialized) struct InterruptTests {
    /// Starts `tool args`, sends `signal` as soon as `ready()` holds, and returns (status, stderr).
    func interrupt(_ tool: String, _ args: [String], signal sig: Int32, when ready: () -> Bool) throws -> (
        Int32, String
    ) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Tools.binDir + "/" + tool)
        p.arguments = args
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(60)
        while !ready() && p.isRunning && Date() < deadline { usleep(500) }
        #expect(p.isRunning, "\(tool) finished before the signal could be sent")
        kill(p.processIdentifier, sig)
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, text)
    }

    func leftovers(_ dir: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir).filter {
            $0.contains(".tmp-") || $0.hasPrefix(".cbd-spill")
        }
    }

    @Test(arguments: [(SIGINT, Int32(130)), (SIGTERM, Int32(143)), (SIGHUP, Int32(129))])
    func convertCleansUp(signal sig: Int32, status: Int32) throws {
        let s = try Scratch()
        let raw = s.file("raw.img"), out = s.file("out.cbd")
        try #require(try Tools.run("sh", ["-c", "head -c 192M /dev/urandom > \(raw)"]).status == 0)
        let (code, text) = try interrupt("cbd", ["convert", "-q", raw, out], signal: sig) {
            ((try? self.leftovers(s.path)) ?? []).contains { $0.contains(".tmp-") }
        }
        #expect(code == status, "\(text)")
        #expect(text.contains("interrupted; \(out) not written"), "\(text)")
        #expect(text.split(separator: "\n").count == 1, "one line: \(text)")
        let left = try leftovers(s.path)
        #expect(left.isEmpty, "left behind: \(left)")
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    /// A re-layout interrupted mid-way: the tool says how to get back, and so does every tool
    /// that meets the device afterwards; cbd undo then puts it back byte for byte.
    @Test func interruptedRelayoutSaysHowToGetBack() throws {
        let s = try Scratch()
        let raw = s.file("raw.img"), img = s.file("dev.cbd"), undo = s.file("undo")
        try #require(try Tools.run("sh", ["-c", "head -c 96M /dev/urandom > \(raw)"]).status == 0)
        try #require(try Tools.run("cbd", ["convert", "-q", "-s", "200M", raw, img]).status == 0)
        let before = try FileFacts.bytes(img)
        let (code, text) = try interrupt("cbd", ["resize", "-z", undo, img, "300M"], signal: SIGINT) {
            FileFacts.size(undo) > 3 * (UndoFile.headBytes + UndoFile.recordBytes)
        }
        #expect(code == 130 && text.contains("cbd undo \(undo) \(img)"), "\(code): \(text)")
        let fsck = try Tools.run("fsck.cbd", ["-fn", img])
        #expect(fsck.status == 8 && fsck.stderr.contains("restore it with: cbd undo"), "\(fsck.stderr)")
        let back = try Tools.run("cbd", ["undo", undo, img])
        #expect(back.status == 0, "\(back.stderr)")
        #expect(try FileFacts.bytes(img) == before)
    }
}

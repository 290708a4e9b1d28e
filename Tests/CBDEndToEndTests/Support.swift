// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDFormat
@testable import CBDTestSupport
@testable import CBDDevice
@testable import CBDVolume

/// Runs the built tools and system commands from tests.
enum Tools {
    /// The build products folder: the test binary sits beside the tools.
    static let binDir: String = {
        if let env = ProcessInfo.processInfo.environment["CBD_BIN"] { return env }
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("mkfs.cbd").path),
            dir.path != "/"
        { dir = dir.deletingLastPathComponent() }
        return dir.path
    }()

    struct Result { var status: Int32; var stdout: String; var stderr: String; var out: Data }

    /// Runs a tool of ours by name, or a system command by absolute path or PATH lookup.
    @discardableResult
    static func run(_ tool: String, _ args: [String], stdin: Data? = nil) throws -> Result {
        let p = Process()
        let local = "\(binDir)/\(tool)"
        if FileManager.default.isExecutableFile(atPath: local) {
            p.executableURL = URL(fileURLWithPath: local)
            (p.arguments, p.environment) = sanitized(tool, args)
        } else {
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = [tool] + args
            var env = ProcessInfo.processInfo.environment
            env["PATH"] = (env["PATH"] ?? "") + ":/usr/sbin:/sbin"
            p.environment = env
        }
        // Output goes to files: pipes would need concurrent readers to avoid filling up.
        let tmp = NSTemporaryDirectory() + "/cbd-run-" + UUID().uuidString
        guard FileManager.default.createFile(atPath: tmp + ".out", contents: nil) else {
            throw CBDError("cannot create \(tmp)")
        }
        guard FileManager.default.createFile(atPath: tmp + ".err", contents: nil) else {
            throw CBDError("cannot create \(tmp)")
        }
        defer {
            try? FileManager.default.removeItem(atPath: tmp + ".out")
            try? FileManager.default.removeItem(atPath: tmp + ".err")
        }
        let o = try FileHandle(forWritingTo: URL(fileURLWithPath: tmp + ".out"))
        let e = try FileHandle(forWritingTo: URL(fileURLWithPath: tmp + ".err"))
        let i = Pipe()
        p.standardOutput = o
        p.standardError = e
        p.standardInput = i
        try p.run()
        if let d = stdin { try? i.fileHandleForWriting.write(contentsOf: d) }
        try? i.fileHandleForWriting.close()
        p.waitUntilExit()
        try o.close()
        try e.close()
        let outData = try FileFacts.bytes(tmp + ".out")
        let errData = try FileFacts.bytes(tmp + ".err")
        return Result(
            status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self), out: outData)
    }

    /// Under `make tsan` (CBD_SERVE_PRELOAD set), `cbd serve` runs nbdkit with the plugin
    /// built under ThreadSanitizer: scripts/tsan-nbdkit, first in its PATH, preloads the runtime
    /// into nbdkit only (the TSan-built cbd holds its own: preloading it there crashed every
    /// `cbd serve`), and the client it runs (--run) goes without it, as serve_test.py's
    /// `sanitized` does. Other commands as given.
    static func sanitized(_ tool: String, _ args: [String]) -> ([String], [String: String]?) {
        let env = ProcessInfo.processInfo.environment
        guard env["CBD_SERVE_PRELOAD"] != nil, tool == "cbd", args.first == "serve" else { return (args, nil) }
        var args = args
        if let i = args.firstIndex(of: "--run"), i + 1 < args.count { args[i + 1] = "env -u LD_PRELOAD " + args[i + 1] }
        let wrapper = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "../../scripts/tsan-nbdkit"
        ).standardizedFileURL.path
        return (args, env.merging(["PATH": wrapper + ":" + (env["PATH"] ?? "/usr/bin:/bin")]) { $1 })
    }

    static func available(_ command: String) -> Bool {
        (try? run("sh", ["-c", "command -v \(command)"]).status) == 0
    }

    /// Fails the test when a helper program is missing: `make deps` installs every one, so a
    /// missing one is a broken machine, not a reason to pass.
    static func require(_ commands: String...) throws {
        for c in commands { try #require(available(c), "\(c) is missing: run make deps") }
    }
}

/// Writes `bytes` over a file at `offset`: how tests damage a device as a disk would.
func overwrite(_ path: String, at offset: Int, with bytes: Data) throws {
    let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    defer { try? h.close() }
    try h.seek(toOffset: UInt64(offset))
    try h.write(contentsOf: bytes)
}

/// An ext4 image of `/usr/share/perl` (`size`) and its conversion to a CBD, in `s`.
func convertedExt4(_ s: Scratch, size: String = "24M") throws -> (raw: String, dev: String) {
    let raw = try ConvertTests().ext4Image(s, size: size)
    let dev = s.file("d.cbd")
    try #require(try Tools.run("cbd", ["convert", "-q", raw, dev]).status == 0)
    return (raw, dev)
}

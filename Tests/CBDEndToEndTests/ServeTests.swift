// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDFormat
@testable import CBDTestSupport
@testable import CBDDevice
@testable import CBDVolume

/// cbd serve and the nbdkit plugin with real clients (Tests/serve/serve_test.py): nbdcopy,
/// qemu-img, nbdinfo --map, libnbd's Python bindings on two connections against a model, a
/// killed server, read-only serving, the lock refusals, nbdfuse.
@Suite(.serialized) struct ServeTests {
    static let script: String = {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("serve/serve_test.py").path
    }()

    /// Runs a script of Tests/serve with the system's python3 (Debian's python3-libnbd) and
    /// expects every one of its checks to pass.
    static func runScript(_ name: String) throws {
        let python = "/usr/bin/python3"
        try #require(
            try Tools.run(python, ["-c", "import nbd"]).status == 0, "python3-libnbd is missing: run make deps")
        let script = URL(fileURLWithPath: Self.script).deletingLastPathComponent().appendingPathComponent(name).path
        let r = try Tools.run(python, [script, Tools.binDir])
        #expect(r.status == 0 && r.stdout.contains(" passed, 0 failed"), "\(name): \(r.stdout)\(r.stderr.suffix(2000))")
    }

    @Test func realClients() throws {
        try Tools.require("nbdkit", "nbdcopy", "nbdinfo", "nbdfuse", "qemu-img", "mke2fs")
        // libnbd's Python bindings are Debian's (python3-libnbd): the system's python3.
        let python = "/usr/bin/python3"
        try #require(
            try Tools.run(python, ["-c", "import nbd"]).status == 0, "python3-libnbd is missing: run make deps")
        let r = try Tools.run(python, [Self.script, Tools.binDir])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("15 passed, 0 failed"), "\(r.stdout)")
    }

    /// A failing backing store (Tests/serve/fault_test.py: nbdkit's error filter, our own
    /// flushfault filter in C, and a power cut of nbdkit's writeback cache, under nbdfuse under
    /// cbd serve; a libnbd client with a model): after a failed commit nothing more is
    /// acknowledged and flushes keep failing, every acknowledged block reads back, the stop that
    /// loses them exits 1; fsck keeps every flushed block, and after the power cut every block
    /// is old or new.
    @Test func failingBackingStore() throws {
        try Tools.require("nbdkit", "nbdfuse")
        try Self.runScript("fault_test.py")
    }

    /// cbd serve as an operator runs it (Tests/serve/service_test.py): in the foreground its
    /// pid serves and cbd info names it with the URI; refusals and a warning (as a warning) on
    /// stderr; SIGTERM stops it clean and removes the socket; after kill -9 a restart on the
    /// same socket works and the flushed data is there; a live socket is refused; --fork and
    /// --pid-file.
    @Test func asAService() throws {
        try Tools.require("nbdkit")
        try Self.runScript("service_test.py")
    }

    /// The plugin is where cbd serve looks for it, and nbdkit loads it.
    @Test func pluginLoads() throws {
        try Tools.require("nbdkit")
        let plugin = Tools.binDir + "/libnbdkit-cbd-plugin.so"
        #expect(FileManager.default.fileExists(atPath: plugin))
        let r = try Tools.run("nbdkit", [plugin, "--dump-plugin"])
        #expect(
            r.status == 0 && r.stdout.contains("name=cbd") && r.stdout.contains("thread_model="),
            "\(r.stdout)\(r.stderr)")
    }

    /// A DIRTY device is served read-only only; a missing file gives one clear line.
    @Test func refusals() throws {
        try Tools.require("nbdkit", "nbdinfo")
        let s = try Scratch()
        let dev = s.file("d.cbd")
        try #require(try Tools.run("mkfs.cbd", ["-q", dev, "16M"]).status == 0)
        try Tools.run("python3", [FsckTests.corpus + "/cbdimg.py", dev, "set-dirty", "1"])
        let rw = try Tools.run("cbd", ["serve", dev, "--run", "nbdinfo \"$uri\""])
        #expect(rw.status != 0 && rw.stderr.contains("DIRTY"), "\(rw.stderr)")
        let ro = try Tools.run("cbd", ["serve", "-r", dev, "--run", "nbdinfo \"$uri\""])
        #expect(ro.status == 0, "\(ro.stderr)")
        let missing = try Tools.run("cbd", ["serve", s.file("nope.cbd")])
        #expect(missing.status == 1 && missing.stderr.contains("no such file"), "\(missing.stderr)")
    }
}

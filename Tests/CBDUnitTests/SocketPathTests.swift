// SPDX-License-Identifier: Apache-2.0
import Foundation
import Glibc
import Testing
@testable import CBDCLI
import CBDFormat
import CBDTestSupport

/// The socket cbd serve listens on: its URI parses for any path, a stale one is replaced, a
/// live one and a file that is not a socket are refused.
@Suite struct SocketPathTests {
    @Test func uriEncodesThePath() {
        #expect(SocketPath.uri("/run/disk.sock") == "nbd+unix:///?socket=/run/disk.sock")
        // A systemd instance name (srv-my\x2ddisk.cbd) and a space: percent-encoded.
        #expect(
            SocketPath.uri("/run/cbd-serve/srv-my\\x2ddisk a&b.sock")
                == "nbd+unix:///?socket=/run/cbd-serve/srv-my%5Cx2ddisk%20a%26b.sock")
    }

    @Test func staleSocketIsReplacedLiveOneRefused() throws {
        let dir = try Scratch()
        let path = dir.file("s.sock")
        try SocketPath.claim(path)  // nothing there
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { dst in for (i, b) in path.utf8.enumerated() { dst[i] = b } }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        try #require(bound == 0)
        // Bound, not listening: what a killed server leaves. Replaced.
        try SocketPath.claim(path)
        #expect(!FileManager.default.fileExists(atPath: path))
        // A listener: refused, and the file stays.
        let fd2 = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd2) }
        let bound2 = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd2, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        try #require(bound2 == 0 && listen(fd2, 1) == 0)
        #expect(throws: CBDError.self) { try SocketPath.claim(path) }
        #expect(FileManager.default.fileExists(atPath: path))
        // A regular file is not ours to remove.
        let file = dir.file("plain")
        try Data([1]).write(to: URL(fileURLWithPath: file))
        #expect(throws: CBDError.self) { try SocketPath.claim(file) }
        #expect(FileManager.default.fileExists(atPath: file))
    }
}

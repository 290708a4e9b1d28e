// SPDX-License-Identifier: Apache-2.0
import CSysShim
import Glibc
import CBDFormat

/// An unlinked temporary file: scratch space that vanishes with the process, even on a crash.
public final class Spill {
    package let fd: Int32
    public private(set) var size = 0
    /// How errors name it: a full disk is the folder's problem, so the folder is named.
    let name: String

    /// Creates it in `directory` (its size counts against that filesystem).
    public init(directory: String) throws {
        var template = Array("\(directory)/.cbd-spill-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw systemError("cannot create a temporary file", directory, errno: errno) }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        self.fd = fd
        name = "temporary file in \(directory)"
    }
    deinit { close(fd) }

    public func append(_ p: UnsafeRawPointer, _ count: Int) throws {
        try write(p, count, at: size)
    }

    /// Writes at `offset`; what lies between the old end and `offset` reads as zeros (a hole).
    package func write(_ p: UnsafeRawPointer, _ count: Int, at offset: Int) throws {
        try pwriteAll(fd, p, count, offset, what: name)
        size = max(size, offset + count)
    }

    /// Grows the file to `bytes` with a hole (zeros).
    package func extend(to bytes: Int) throws {
        guard bytes > size else { return }
        guard ftruncate(fd, off_t(bytes)) == 0 else { throw systemError("cannot extend", name, errno: errno) }
        size = bytes
    }

    /// The first byte at or after `offset` that is not in a hole (SEEK_DATA), nil when only
    /// holes follow; `offset` itself where the filesystem cannot tell.
    package func nextData(from offset: Int) -> Int? {
        offset < size ? seekData(fd, from: offset) : nil
    }

    public func read(into p: UnsafeMutableRawPointer, _ count: Int, at offset: Int) throws {
        try preadAll(fd, p, count, offset, what: name)
    }
}

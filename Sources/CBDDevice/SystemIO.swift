// SPDX-License-Identifier: Apache-2.0
import CSysShim
import Glibc
import CBDFormat

/// The loop of every whole transfer (one home, as swift-system's `Syscalls.swift`):
/// `step(done)` moves bytes from `done` on and returns how many, 0 at the end of the input, or
/// -1 with errno set. An interrupted call (EINTR) is made again; another error throws
/// `failure(errno, done)`. Returns the bytes moved: `count`, or fewer at the end.
package func transfer(_ count: Int, _ step: (Int) -> Int, failure: (Int32, Int) -> Error) throws -> Int {
    var done = 0
    while done < count {
        let n = step(done)
        if n < 0 {
            let code = errno
            if code == EINTR { continue }
            throw failure(code, done)
        }
        if n == 0 { break }
        done += n
    }
    return done
}

/// pwrite(2) until every byte is written.
package func pwriteAll(_ fd: Int32, _ p: UnsafeRawPointer, _ count: Int, _ offset: Int, what: String) throws {
    let done = try transfer(count, { pwrite(fd, p + $0, count - $0, off_t(offset + $0)) }) {
        systemError("write error at byte \(offset + $1)", what, errno: $0)
    }
    if done < count { throw systemError("write error at byte \(offset + done)", what, errno: EIO) }
}

/// pread(2) until every byte is read; the end of the file is an error.
package func preadAll(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ count: Int, _ offset: Int, what: String) throws {
    let done = try transfer(count, { pread(fd, p + $0, count - $0, off_t(offset + $0)) }) {
        systemError("read error at byte \(offset + $1)", what, errno: $0)
    }
    if done < count { throw CBDError("\(what): unexpected end of device at byte \(offset + done)") }
}

/// The first byte at or after `offset` of file `fd` that is not in a hole (SEEK_DATA); nil
/// when only holes follow; `offset` itself where the filesystem cannot tell.
func seekData(_ fd: Int32, from offset: Int) -> Int? {
    let next = cbd_seek_data(fd, Int64(offset))
    if next < 0 { return errno == ENXIO ? nil : offset }
    return Int(next)
}

/// Copies `count` bytes at `offset` of file `from` to `target` of file `to` inside the kernel
/// (copy_file_range: no round trip through a buffer, a reflink where the filesystem can).
/// False, with nothing promised about the target, when the kernel cannot do it here.
package func copyFileRange(_ count: Int, from: Int32, at offset: Int, to: Int32, at target: Int) -> Bool {
    let done = try? transfer(
        count,
        {
            Int(
                cbd_copy_range(
                    from, Int64(offset + $0), to, Int64(target + $0),
                    Int64(count - $0)))
        }
    ) { code, _ in CBDError("", kind: .system(code)) }
    return done == count
}

/// Flushes standard output: 0, or the errno of a write to it that failed (stdio keeps it).
package func flushStandardOutput() -> Int32 { cbd_flush_stdout() }

// SPDX-License-Identifier: Apache-2.0
import CSysShim
import Glibc
import CBDFormat

/// pwrite(2) until every byte is written.
package func pwriteAll(_ fd: Int32, _ p: UnsafeRawPointer, _ count: Int, _ offset: Int, what: String) throws {
    var done = 0
    while done < count {
        let n = pwrite(fd, p + done, count - done, off_t(offset + done))
        if n < 0 { if errno == EINTR { continue }; throw systemError("write error at byte \(offset + done)", what,
            errno: errno) }
        done += n
    }
}

/// pread(2) until every byte is read; the end of the file is an error.
package func preadAll(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ count: Int, _ offset: Int, what: String) throws {
    var done = 0
    while done < count {
        let n = pread(fd, p + done, count - done, off_t(offset + done))
        if n < 0 { if errno == EINTR { continue }; throw systemError("read error at byte \(offset + done)", what,
            errno: errno) }
        if n == 0 { throw CBDError("\(what): unexpected end of device at byte \(offset + done)") }
        done += n
    }
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
    var done = 0
    while done < count {
        let n = cbd_copy_range(from, Int64(offset + done), to, Int64(target + done), Int64(count - done))
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { return false }
        done += Int(n)
    }
    return true
}

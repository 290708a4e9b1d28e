import CSysShim
import Glibc

/// An unlinked temporary file: scratch space that vanishes with the process, even on a crash.
public final class Spill {
    let fd: Int32
    public private(set) var size = 0
    /// How errors name it: a full disk is the folder's problem, so the folder is named.
    let name: String

    /// Creates it in `directory` (beside the output, so the same filesystem holds it).
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
    func write(_ p: UnsafeRawPointer, _ count: Int, at offset: Int) throws {
        try pwriteAll(fd, p, count, offset, what: name)
        size = max(size, offset + count)
    }

    /// Grows the file to `bytes` with a hole (zeros).
    func extend(to bytes: Int) throws {
        guard bytes > size else { return }
        guard ftruncate(fd, off_t(bytes)) == 0 else { throw systemError("cannot extend", name, errno: errno) }
        size = bytes
    }

    /// The first byte at or after `offset` that is not in a hole (SEEK_DATA), nil when only
    /// holes follow; `offset` itself where the filesystem cannot tell.
    func nextData(from offset: Int) -> Int? {
        offset < size ? seekData(fd, from: offset) : nil
    }

    /// Copies `count` bytes at `offset` into the file `fd` at `target` inside the kernel
    /// (copy_file_range: no round trip through a buffer, a reflink where the filesystem can).
    /// False, with nothing promised about the target, when the kernel cannot do it here.
    func copy(_ count: Int, at offset: Int, toFile fd: Int32, at target: Int) -> Bool {
        var done = 0
        while done < count {
            let n = cbd_copy_range(self.fd, Int64(offset + done), fd, Int64(target + done), Int64(count - done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            done += Int(n)
        }
        return true
    }

    public func read(into p: UnsafeMutableRawPointer, _ count: Int, at offset: Int) throws {
        try preadAll(fd, p, count, offset, what: name)
    }
}

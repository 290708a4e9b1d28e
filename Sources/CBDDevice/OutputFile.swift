import Glibc
import CBDFormat

/// Where a conversion writes: a new image file, written under a temporary name and renamed
/// into place only when complete, or an existing block device (whose header is written last).
public final class OutputFile {
    public let path: String
    public let device: FileDevice
    private let tempPath: String?
    /// The file being replaced, held open and locked until the rename: no other program
    /// can be writing it (its data would go to a file that no longer has a name).
    private var replaced: FileDevice?
    /// Committed or abandoned: the temporary name is no longer this object's to remove.
    private var finished = false

    /// Opens `path` for a conversion of `size` bytes. An existing regular file is replaced
    /// only with `overwrite`; a block device must be large enough.
    public init(path given: String, size: Int, overwrite: Bool) throws {
        let path = OutputFile.target(of: given)
        self.path = path
        var st = stat()
        if stat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFBLK {
            device = try FileDevice(path: path, mode: .readWrite)
            tempPath = nil
            replaced = nil
            guard device.size >= size else {
                throw SizeError.deviceTooSmall(path: path, has: device.size, needs: size)
            }
            return
        }
        if FileProbe.exists(path) {
            guard st.st_mode & S_IFMT == S_IFREG else { throw CBDError("\(path): not a regular file or block device") }
            guard overwrite else { throw CBDError("\(path): already exists", hint: .overwrite) }
            // Opened for writing as any writer would: a read-only file, one in use by another
            // program, or one a loop device maps is refused, and it stays locked until replaced.
            replaced = try FileDevice(path: path, mode: .readWrite)
        } else {
            replaced = nil
        }
        let temp = OutputFile.temporaryPath(for: path)
        unlink(temp)
        device = try FileDevice(path: temp, mode: .readWrite, createSize: size)
        tempPath = temp
        if replaced != nil { fchmod(device.fd, st.st_mode & 0o7777) }   // the new file keeps the old one's mode
    }

    deinit { if !finished, let t = tempPath { unlink(t) } }

    /// Gives the output up before it is complete, so that a new `OutputFile` can take the
    /// same path: the temporary file loses its name at once (what was written stays readable
    /// through `device` while it is open), and the file being replaced is released.
    public func abandon() {
        if !finished, let t = tempPath { unlink(t) }
        finished = true
        replaced = nil
    }

    public var isBlockDevice: Bool { tempPath == nil }

    /// Makes the output durable and, for a file, gives it its final name.
    public func commit() throws {
        try device.sync()
        if let t = tempPath {
            guard rename(t, path) == 0 else { throw systemError("cannot rename \(t) to", path, errno: errno) }
            let dfd = open(OutputFile.directory(of: path), O_RDONLY | O_DIRECTORY)
            if dfd >= 0 { fsync(dfd); close(dfd) }
        }
        finished = true
    }

    /// Where the output is written until it is complete: beside it, hidden, named for this process.
    public static func temporaryPath(for path: String) -> String {
        let target = target(of: path)
        return "\(directory(of: target))/.\(baseName(of: target)).tmp-\(getpid())"
    }

    /// The file an output path names: a symbolic link is written through (its target is
    /// replaced, the link stays), as cp and dd do.
    public static func target(of path: String, depth: Int = 0) -> String {
        var st = stat()
        guard depth < 40, lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFLNK else { return path }
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buf, buf.count - 1)
        guard n > 0 else { return path }
        let link = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let resolved = link.hasPrefix("/") ? link : "\(directory(of: path))/\(link)"
        return target(of: resolved, depth: depth + 1)   // a chain of links, to its end
    }

    public static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    static func baseName(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }
}

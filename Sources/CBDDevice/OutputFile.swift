// SPDX-License-Identifier: Apache-2.0
import Glibc
import CBDFormat

/// An output named by a path: a new image file, written under a temporary name and renamed
/// into place only when complete, or an existing block device (whose header is written last).
public final class OutputFile: OutputTarget {
    /// The file the path names (a symbolic link is written through).
    public let path: String
    public var name: String { path }
    public let isBlockDevice: Bool
    public var isFresh: Bool { !isBlockDevice }
    public let scratchDirectory: String
    private let overwrite: Bool
    private var device: FileDevice?
    private var tempPath: String?
    /// The file being replaced, held open and locked until the rename: no other program
    /// can be writing it (its data would go to a file that no longer has a name).
    private var replaced: FileDevice?

    /// An output at `path`. An existing regular file is replaced only with `overwrite`; a
    /// block device keeps its spill files in `deviceScratch` (its own folder, /dev, is a
    /// small tmpfs). Nothing is opened or created until `open`.
    public init(path given: String, overwrite: Bool, deviceScratch: String = "/var/tmp") {
        path = OutputFile.target(of: given)
        self.overwrite = overwrite
        isBlockDevice = FileProbe.isBlockDevice(path)
        scratchDirectory = isBlockDevice ? deviceScratch : OutputFile.directory(of: path)
    }

    /// An output that replaces the regular file `device` is open on, whose lock its caller
    /// already holds (a re-layout of an image file into a new one): held until the rename.
    public init(replacing device: FileDevice) {
        path = device.path
        overwrite = true
        isBlockDevice = false
        scratchDirectory = OutputFile.directory(of: path)
        replaced = device
    }

    deinit { if let t = tempPath { unlink(t) } }

    public func open(size: Int) throws -> any BlockDevice {
        if isBlockDevice {
            let d = try device ?? FileDevice(path: path, mode: .readWrite)
            guard d.size >= size else { throw SizeError.deviceTooSmall(path: path, has: d.size, needs: size) }
            device = d
            return d
        }
        var st = stat()
        if stat(path, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFREG else { throw CBDError("\(path): not a regular file or block device") }
            guard overwrite else { throw CBDError("\(path): already exists", hint: .overwrite) }
            // Opened for writing as any writer would: a read-only file, one in use by another
            // program, or one a loop device maps is refused, and it stays locked until replaced.
            replaced = try replaced ?? FileDevice(path: path, mode: .readWrite)
        }
        let temp = OutputFile.temporaryPath(for: path)
        unlink(temp)
        OutputFile.removeStaleTemporaries(for: path)
        let d = try FileDevice(path: temp, mode: .readWrite, createSize: size)
        tempPath = temp
        if replaced != nil { fchmod(d.fd, st.st_mode & 0o7777) }  // the new file keeps the old one's mode
        device = d
        return d
    }

    public func abandon() {
        if let t = tempPath { unlink(t) }
        tempPath = nil
        replaced = nil
        device = nil
    }

    public func commit() throws {
        guard let d = device else { return }
        try d.sync()
        if let t = tempPath {
            guard rename(t, path) == 0 else { throw systemError("cannot rename \(t) to", path, errno: errno) }
            tempPath = nil
            let dfd = Glibc.open(OutputFile.directory(of: path), O_RDONLY | O_DIRECTORY)
            if dfd >= 0 { fsync(dfd); close(dfd) }
        }
        replaced = nil
    }

    /// Same file (or, for block devices, the same device number) as the open file behind `device`.
    public func isSame(as device: any BlockDevice) -> Bool {
        var a = stat(), b = stat()
        guard let fd = device.openFile, fstat(fd, &a) == 0, stat(path, &b) == 0 else { return false }
        if a.st_mode & S_IFMT == S_IFBLK && b.st_mode & S_IFMT == S_IFBLK { return a.st_rdev == b.st_rdev }
        return a.st_dev == b.st_dev && a.st_ino == b.st_ino
    }

    /// Removes what a killed run left while writing the same output: `.NAME.tmp-PID` files of
    /// ours whose process is gone (a pid that is alive, even reused, keeps its file).
    static func removeStaleTemporaries(for path: String) {
        let dir = directory(of: path), prefix = ".\(baseName(of: path)).tmp-"
        guard let d = opendir(dir) else { return }
        defer { closedir(d) }
        while let entry = readdir(d) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard name.hasPrefix(prefix), let pid = Int32(name.dropFirst(prefix.count)), pid > 0, pid != getpid() else {
                continue
            }
            var st = stat()
            let file = dir + "/" + name
            guard lstat(file, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_uid == geteuid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { unlink(file) }
        }
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
        return target(of: resolved, depth: depth + 1)  // a chain of links, to its end
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

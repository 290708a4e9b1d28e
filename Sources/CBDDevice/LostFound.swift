// SPDX-License-Identifier: Apache-2.0
import Glibc
import CBDFormat

/// Where fsck.cbd saves data that no entry names before it frees the pblks that hold it, as
/// e2fsck connects unattached inodes to /lost+found: one file per orphaned block, and a
/// `LISTING` of what each file is. Files are never overwritten (a name already taken gets a
/// `~N` suffix), so a second run into the same folder keeps the first run's files; every file
/// and the folder itself are synced before `finish` returns, so the pblks are freed only once
/// their bytes are safe.
public final class LostFound {
    public let directory: String
    private var listing: [String] = []
    private(set) public var savedFiles = 0

    private var ready = false

    /// Names the folder; it is created (0700) by the first save, so that a run with nothing
    /// to save leaves no trace.
    public init(directory: String) {
        self.directory = directory
    }

    /// Creates the folder when missing; an existing one must be a folder we can write.
    private func prepare() throws {
        guard !ready else { return }
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw systemError("cannot create the lost+found folder", directory, errno: errno)
        }
        var st = stat()
        guard stat(directory, &st) == 0 else { throw systemError("cannot open", directory, errno: errno) }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { throw CBDError("\(directory): not a folder") }
        guard access(directory, W_OK | X_OK) == 0 else {
            throw systemError("cannot write into the lost+found folder", directory, errno: errno)
        }
        ready = true
    }

    /// Writes `bytes` as a new file named `name` (or `name~N`), synced, and lists it with
    /// `description`; returns the name used.
    @discardableResult
    public func save(_ bytes: UnsafeRawBufferPointer, name: String, description: String) throws -> String {
        try prepare()
        var used = name
        var fd: Int32 = -1
        for n in 0..<1000 {
            used = n == 0 ? name : "\(name)~\(n)"
            fd = open("\(directory)/\(used)", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            if fd >= 0 || errno != EEXIST { break }
        }
        guard fd >= 0 else { throw systemError("cannot create a file", "\(directory)/\(used)", errno: errno) }
        defer { close(fd) }
        if let base = bytes.baseAddress, bytes.count > 0 {
            try pwriteAll(fd, base, bytes.count, 0, what: "\(directory)/\(used)")
        }
        guard fsync(fd) == 0 else { throw systemError("cannot sync", "\(directory)/\(used)", errno: errno) }
        listing.append("\(used)\t\(description)")
        savedFiles += 1
        return used
    }

    /// Appends this run's lines to `LISTING` and syncs it and the folder: after this, every
    /// file saved is on stable storage under its name.
    public func finish() throws {
        guard !listing.isEmpty else { return }
        let path = "\(directory)/LISTING"
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw systemError("cannot create", path, errno: errno) }
        defer { close(fd) }
        let text = Array((listing.joined(separator: "\n") + "\n").utf8)
        let end = Int(lseek(fd, 0, SEEK_END))
        try text.withUnsafeBytes { b in
            if let base = b.baseAddress { try pwriteAll(fd, base, b.count, max(0, end), what: path) }
        }
        guard fsync(fd) == 0 else { throw systemError("cannot sync", path, errno: errno) }
        let dir = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dir >= 0 else { throw systemError("cannot open", directory, errno: errno) }
        defer { close(dir) }
        guard fsync(dir) == 0 else { throw systemError("cannot sync", directory, errno: errno) }
        listing.removeAll()
    }
}

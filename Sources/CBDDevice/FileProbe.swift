// SPDX-License-Identifier: Apache-2.0
import Glibc
import CBDFormat

/// Path checks the tools make before opening anything.
public enum FileProbe {
    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    public static func remove(_ path: String) { unlink(path) }
}

extension FileProbe {
    public static func isBlockDevice(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFBLK
    }

    /// Whether the first bytes of `path` are a CBD magic (or a resize marker): a CBD device,
    /// perhaps a damaged one.
    public static func hasCBDMagic(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var b = [UInt8](repeating: 0, count: Units.pblkSize)
        guard pread(fd, &b, b.count, 0) == b.count else { return false }
        return Array(b[0..<4]) == Header.magic || ResizeMarker.undoPath(in: b) != nil
    }

    /// Bytes allocated on disk (st_blocks), or -1.
    public static func allocatedBytes(_ path: String) -> Int {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_blocks) * 512 : -1
    }
}

import Glibc

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

    /// Bytes allocated on disk (st_blocks), or -1.
    public static func allocatedBytes(_ path: String) -> Int {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_blocks) * 512 : -1
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// Path checks the tools make before opening anything.
public enum FileProbe {
    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    public static func remove(_ path: String) { unlink(path) }
}

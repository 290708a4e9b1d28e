// SPDX-License-Identifier: Apache-2.0
import Glibc
import CBDFormat

/// The Unix socket a server is about to listen on. A socket file that no process listens on
/// (left by a server that was killed) is removed, so that a restart on the same path works;
/// one that answers is a live server, refused; any other file is not ours to remove.
public enum SocketPath {
    /// Makes `path` free for a new listener, or throws naming why it cannot be.
    public static func claim(_ path: String) throws {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }  // nothing there
        guard st.st_mode & S_IFMT == S_IFSOCK else {
            throw CBDError("\(path): exists and is not a socket; give another --socket")
        }
        switch listening(path) {
        case .some(true):
            throw CBDError("\(path): a server is listening on this socket already", kind: .busy)
        case .some(false):
            guard unlink(path) == 0 || errno == ENOENT else {
                throw CBDError("\(path): a stale socket that cannot be removed (\(String(cString: strerror(errno))))")
            }
        case nil:
            throw CBDError("\(path): cannot tell whether a server listens on it (\(String(cString: strerror(errno))))")
        }
    }

    /// The NBD URI of a Unix socket: `nbd+unix:///?socket=PATH`, the path percent-encoded
    /// (a systemd instance name holds backslashes, any path may hold spaces or '&'), which
    /// libnbd decodes.
    public static func uri(_ path: String) -> String {
        let unreserved = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/".utf8)
        let encoded = path.utf8.map { unreserved.contains($0) ? String(UnicodeScalar($0)) : "%" + hex($0) }.joined()
        return "nbd+unix:///?socket=" + encoded
    }

    private static func hex(_ b: UInt8) -> String {
        let digits = Array("0123456789ABCDEF")
        return String([digits[Int(b >> 4)], digits[Int(b & 15)]])
    }

    /// True when a process accepts connections on `path`, false when nothing listens (a stale
    /// socket file), nil when that cannot be told (errno says why).
    static func listening(_ path: String) -> Bool? {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard bytes.count < capacity else { errno = ENAMETOOLONG; return nil }
        withUnsafeMutableBytes(of: &addr.sun_path) { dst in
            for (i, b) in bytes.enumerated() { dst[i] = b }
        }
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if r == 0 { return true }
        return errno == ECONNREFUSED ? false : nil
    }
}

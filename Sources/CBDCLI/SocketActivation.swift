// SPDX-License-Identifier: Apache-2.0
import Glibc

/// A listening socket handed over by systemd (socket activation: `LISTEN_PID` names this
/// process, `LISTEN_FDS` counts the sockets from fd 3). nbdkit takes such sockets itself when
/// it finds those variables, and then refuses -U, -p and --run and stays in the foreground;
/// `cbd serve` execs nbdkit, so the pid systemd named is nbdkit's too. What cbd serve needs
/// to know is only that it happens, and the socket's path for the URI it prints and
/// publishes. The socket belongs to systemd: it is neither claimed nor removed at the stop.
public struct SocketActivation {
    /// The Unix socket's path, nil for a TCP or unnamed socket.
    public let path: String?
    /// How many sockets were passed.
    public let count: Int

    /// The socket activation this process was started with, or nil when it was not
    /// (no `LISTEN_FDS`, or a `LISTEN_PID` naming another process, as sd_listen_fds(3) reads it).
    public static func inherited() -> SocketActivation? {
        guard let pidText = getenv("LISTEN_PID").map({ String(cString: $0) }),
            let pid = Int32(pidText), pid == getpid(),
            let countText = getenv("LISTEN_FDS").map({ String(cString: $0) }),
            let count = Int(countText), count >= 1
        else { return nil }
        return SocketActivation(path: unixPath(of: 3), count: count)
    }

    /// The path a listening Unix socket is bound to, nil when `fd` is not one.
    static func unixPath(of fd: Int32) -> String? {
        var addr = sockaddr_un()
        var length = socklen_t(MemoryLayout<sockaddr_un>.size)
        let r = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard r == 0, addr.sun_family == sa_family_t(AF_UNIX) else { return nil }
        let path = withUnsafeBytes(of: &addr.sun_path) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        return path.isEmpty ? nil : path
    }
}

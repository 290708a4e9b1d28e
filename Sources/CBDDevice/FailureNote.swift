// SPDX-License-Identifier: Apache-2.0
import Glibc

/// Why a server stopped taking writes: the one line the nbdkit plugin leaves when the device
/// failed under it (dm-vdo keeps its read-only mode in its super block). On the device itself
/// that state is DIRTY, which keeps a restart read-only until fsck.cbd: format-v1 has no field
/// for the reason (other flag bits and the reserved bytes must be zero, and other readers
/// refuse anything else), so the reason lives beside the live-use file (`ServeStatus`), in the
/// runtime folder: it survives a restart of the server, not a reboot. `cbd info` and fsck.cbd
/// print it while the device is DIRTY; fsck.cbd removes it once the device is clean.
public enum FailureNote {
    static func file(for devicePath: String) -> [String] {
        guard let name = ServeStatus.name(for: devicePath) else { return [] }
        let base = name.hasSuffix(".status") ? String(name.dropLast(".status".count)) : name
        return ServeStatus.directories.map { "\($0)/\(base).failed" }
    }

    /// Records `line` (with the time) for the device at `devicePath`, synced: best effort, a
    /// note is a convenience and the device's DIRTY flag is what counts.
    public static func record(_ line: String, for devicePath: String) {
        var t = time(nil)
        var tm = tm()
        gmtime_r(&t, &tm)
        var buf = [CChar](repeating: 0, count: 32)
        strftime(&buf, buf.count, "%Y-%m-%d %H:%M:%S UTC", &tm)
        let stamp = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let bytes = Array("\(stamp): \(line.filter { $0 != "\n" })\n".utf8)
        for path in file(for: devicePath) {
            let dir = String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)])
            mkdir(dir, 0o755)
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { continue }
            _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            fsync(fd)
            close(fd)
            return
        }
    }

    /// The note left for the device at `devicePath`, if any (its first line, at most 1 KiB).
    public static func read(for devicePath: String) -> String? {
        for path in file(for: devicePath) {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            var bytes = [UInt8](repeating: 0, count: 1024)
            let n = Glibc.read(fd, &bytes, bytes.count)
            guard n > 0 else { continue }
            let text = String(decoding: bytes[..<n], as: UTF8.self)
            return text.split(separator: "\n").first.map(String.init)
        }
        return nil
    }

    /// Removes the note: the device is clean again.
    public static func clear(for devicePath: String) {
        for path in file(for: devicePath) { unlink(path) }
    }
}

// SPDX-License-Identifier: Apache-2.0
import Glibc
import CBDFormat

/// What a server (the nbdkit plugin) publishes about the device it holds, so that `cbd info`
/// reports live use while the device's lock keeps every other program out.
///
/// It is a small text file named for the device's identity (a block device's number, an
/// image's st_dev and st_ino) in a runtime folder: `/run/cbd` for root, else
/// `$XDG_RUNTIME_DIR/cbd`, else `/tmp/cbd-UID`. The server rewrites it in place with one
/// `pwrite` (no rename, no sync: it costs the server a microsecond), ending in a crc32 of the
/// lines before it, so that a reader that catches a write half done reads again. It is removed
/// when the server stops; one left by a server that was killed names a process that is gone,
/// and is ignored.
public struct ServeStatus: Equatable, Sendable {
    public var pid: Int32
    public var readOnly: Bool
    public var physicalBytes: Int
    public var logicalBytes: Int
    public var lblkSize: Int
    public var dataPblks: Int
    /// Data pblks free in the server's bitmaps (committed or not).
    public var freePblks: Int
    /// Free pblks promised to blocks waiting in the server's cache, or kept for the journal.
    public var promisedPblks: Int
    /// Requests refused for want of space since the server started.
    public var refusals: Int
    /// A commit failed: the server refuses writes and serves reads only (dm-vdo's read-only mode).
    public var failed = false
    /// Where clients connect (`nbd+unix:///?socket=...`, `nbd://host:port`), when the server was
    /// told (cbd serve tells it; the plugin under another nbdkit command line may not know).
    public var uri: String?

    public init(
        pid: Int32, readOnly: Bool, geometry: Geometry, usage: (dataPblks: Int, free: Int, promised: Int),
        refusals: Int
    ) {
        self.init(
            pid: pid, readOnly: readOnly, physicalBytes: geometry.physicalBytes,
            logicalBytes: geometry.logicalBytes, lblkSize: geometry.lblkSize, dataPblks: usage.dataPblks,
            freePblks: usage.free, promisedPblks: usage.promised, refusals: refusals)
    }

    private init(
        pid: Int32, readOnly: Bool, physicalBytes: Int, logicalBytes: Int, lblkSize: Int, dataPblks: Int,
        freePblks: Int, promisedPblks: Int, refusals: Int
    ) {
        self.pid = pid
        self.readOnly = readOnly
        self.physicalBytes = physicalBytes
        self.logicalBytes = logicalBytes
        self.lblkSize = lblkSize
        self.dataPblks = dataPblks
        self.freePblks = freePblks
        self.promisedPblks = promisedPblks
        self.refusals = refusals
    }

    /// Free pblks a new write may still take.
    public var availablePblks: Int { max(0, freePblks - promisedPblks) }

    private var fields: [(String, Int)] {
        [
            ("pid", Int(pid)), ("readonly", readOnly ? 1 : 0), ("physical_bytes", physicalBytes),
            ("logical_bytes", logicalBytes), ("lblk_size", lblkSize), ("data_pblks", dataPblks),
            ("free_pblks", freePblks), ("promised_pblks", promisedPblks), ("refusals", refusals)
        ]
    }

    /// The file's bytes: `key=value` lines (the URI last, the only text, percent-free as
    /// nbd URIs are written), then `crc=` of them, padded with newlines to a fixed size so
    /// that a rewrite in place always covers the old contents.
    func encoded() -> [UInt8] {
        var lines = fields.map { "\($0.0)=\($0.1)\n" }
        if failed { lines.append("failed=1\n") }
        if let u = uri?.filter({ $0 != "\n" }), u.utf8.count <= ServeStatus.uriBytes { lines.append("uri=\(u)\n") }
        let body = Array(lines.joined().utf8)
        var out = body + Array("crc=\(CRC32.of(body))\n".utf8)
        out += [UInt8](repeating: UInt8(ascii: "\n"), count: max(0, ServeStatus.fileBytes - out.count))
        return out
    }

    static let fileBytes = 4096
    /// A longer URI (a socket path near PATH_MAX) is left out rather than cut.
    static let uriBytes = 3072

    /// The status in `bytes`, or nil when they are not a whole, checked record whose figures
    /// are in range (a reader does arithmetic on them: nothing negative, nothing past the
    /// format's 2^48 pblks, no more free pblks than data pblks).
    static func decode(_ bytes: [UInt8]) -> ServeStatus? {
        guard let text = String(validating: bytes.prefix { $0 != 0 }, as: UTF8.self) else { return nil }
        var values: [String: Int] = [:]
        var uri: String?
        var bodyBytes = 0
        var crc: UInt32?
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let kv = line.split(separator: "=", maxSplits: 1)
            guard kv.count == 2 else { return nil }
            if kv[0] == "crc" { crc = UInt32(kv[1]); break }
            bodyBytes += line.utf8.count + 1
            if kv[0] == "uri" { uri = String(kv[1]); continue }
            guard let v = Int(kv[1]) else { return nil }
            values[String(kv[0])] = v
        }
        guard let crc, crc == CRC32.of(Array(bytes[..<bodyBytes])) else { return nil }
        let maxPblks = 1 << 48, maxBytes = maxPblks * Units.pblkSize
        func get(_ k: String, below limit: Int) -> Int? { values[k].flatMap { (0..<limit).contains($0) ? $0 : nil } }
        guard let pid = get("pid", below: Int(Int32.max)), let ro = get("readonly", below: 2),
            let phys = get("physical_bytes", below: maxBytes), let logi = get("logical_bytes", below: maxBytes),
            let lblk = get("lblk_size", below: 1 << 31), let data = get("data_pblks", below: maxPblks),
            let free = get("free_pblks", below: data + 1), let promised = get("promised_pblks", below: maxPblks),
            let refusals = get("refusals", below: Int.max), pid > 0
        else { return nil }
        var s = ServeStatus(
            pid: Int32(pid), readOnly: ro != 0, physicalBytes: phys, logicalBytes: logi,
            lblkSize: lblk, dataPblks: data, freePblks: free, promisedPblks: promised,
            refusals: refusals)
        s.failed = get("failed", below: 2) == 1
        s.uri = uri
        return s
    }

    // MARK: Where

    /// The folders a status may be in, the publisher's first.
    static var directories: [String] {
        var out: [String] = []
        if geteuid() == 0 { out.append("/run/cbd") }
        if let x = getenv("XDG_RUNTIME_DIR").map({ String(cString: $0) }), !x.isEmpty { out.append(x + "/cbd") }
        out.append("/tmp/cbd-\(geteuid())")
        if geteuid() != 0 { out.append("/run/cbd") }
        return out
    }

    /// The file name for the device at `path`: its identity, so that any name of it finds it.
    static func name(for path: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return st.st_mode & S_IFMT == S_IFBLK ? "blk-\(st.st_rdev).status" : "file-\(st.st_dev)-\(st.st_ino).status"
    }

    /// The live status of the device at `path`, if a server that is still running publishes one.
    public static func read(for path: String) -> ServeStatus? {
        guard let name = name(for: path) else { return nil }
        for dir in directories {
            let fd = open(dir + "/" + name, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            // A write caught half done fails its check: read again.
            for _ in 0..<100 {
                var bytes = [UInt8](repeating: 0, count: fileBytes)
                let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, fileBytes, 0) }
                guard n > 0 else { break }
                if let s = decode(Array(bytes[..<n])) {
                    return kill(s.pid, 0) == 0 || errno == EPERM ? s : nil
                }
                usleep(1000)
            }
        }
        return nil
    }

    // MARK: Publishing

    /// The server's side: the file, kept open and rewritten in place.
    public final class Publisher {
        private let fd: Int32
        public let path: String

        /// Creates the status file of the device at `devicePath`; nil when no runtime folder can
        /// take it (the server then runs without publishing: a status is a convenience).
        public init?(devicePath: String) {
            guard let name = ServeStatus.name(for: devicePath) else { return nil }
            for dir in ServeStatus.directories {
                mkdir(dir, 0o755)
                let p = dir + "/" + name
                let fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
                if fd >= 0 {
                    self.fd = fd
                    path = p
                    return
                }
            }
            return nil
        }

        public func publish(_ s: ServeStatus) {
            let bytes = s.encoded()
            _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        }

        /// The server stops: the status goes.
        public func remove() {
            unlink(path)
            close(fd)
        }
    }
}

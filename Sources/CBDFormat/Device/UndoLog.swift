import Glibc

/// An undo file in the manner of e2undo: before a risky rewrite overwrites a pblk, its old
/// contents are appended to the undo file and synced, so `cbd undo` can put the device back
/// exactly as it was, even after a crash in the middle.
///
/// Format: "CBDUNDO1", u64 original device size, u64 pblk size (4096), then records of
/// u64 pblk number + 4096 bytes, in the order they were saved. Only the first save of a pblk
/// matters; pblks past the original size are not saved (restoring cuts the file back).
final class UndoRecorder: BlockDevice {
    static let magic: [UInt8] = Array("CBDUNDO1".utf8)
    let inner: BlockDevice
    let fd: Int32
    let undoPath: String
    let originalSize: Int
    private var saved = Set<Int>()
    private var end = 24

    init(wrapping inner: BlockDevice, undoPath: String) throws {
        self.inner = inner
        self.undoPath = undoPath
        originalSize = inner.size
        let fd = open(undoPath, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw errno == EEXIST ? CBDError("\(undoPath): undo file already exists")
                                  : systemError("cannot create undo file", undoPath, errno: errno)
        }
        self.fd = fd
        var head = UndoRecorder.magic + [UInt8](repeating: 0, count: 16)
        LE.put(UInt64(originalSize), 8, &head, 8)
        LE.put(UInt64(Units.pblkSize), 8, &head, 16)
        try pwriteAll(fd, head, head.count, 0, what: undoPath)
        guard fsync(fd) == 0 else { throw systemError("cannot sync", undoPath, errno: errno) }
    }

    deinit { close(fd) }

    public var path: String { inner.path }
    public var size: Int { inner.size }
    public var isWritable: Bool { inner.isWritable }

    /// Saves the old contents of every pblk in `range` not saved yet, then syncs the undo file.
    private func save(_ range: Range<Int>) throws {
        guard !range.isEmpty else { return }
        var record = [UInt8](repeating: 0, count: 8 + Units.pblkSize)
        var wrote = false
        for p in range.lowerBound / Units.pblkSize ..< (range.upperBound + Units.pblkSize - 1) / Units.pblkSize {
            guard (p + 1) * Units.pblkSize <= originalSize, saved.insert(p).inserted else { continue }
            LE.put(UInt64(p), 8, &record, 0)
            try record.withUnsafeMutableBytes { b in
                try inner.read(into: UnsafeMutableRawBufferPointer(rebasing: b[8...]), at: p * Units.pblkSize)
            }
            try pwriteAll(fd, record, record.count, end, what: undoPath)
            end += record.count
            wrote = true
        }
        if wrote { guard fsync(fd) == 0 else { throw systemError("cannot sync", undoPath, errno: errno) } }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        try inner.read(into: buffer, at: offset)
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: Int) throws {
        try save(offset ..< offset + buffer.count)
        try inner.write(buffer, at: offset)
    }

    public func zero(_ range: Range<Int>) throws {
        try save(range)
        try inner.zero(range)
    }

    public func sync() throws { try inner.sync() }

    /// A shrink cuts pblks no write saved: save what they hold first (holes need no saving:
    /// they read as zeros again once the file grows back).
    public func setSize(_ bytes: Int) throws {
        if bytes < inner.size {
            var p = bytes / Units.pblkSize
            while p * Units.pblkSize < min(inner.size, originalSize) {
                let run = min(256, (min(inner.size, originalSize) / Units.pblkSize) - p)
                let range = p * Units.pblkSize ..< (p + run) * Units.pblkSize
                if !inner.isHole(range) { try save(range) }
                p += run
            }
        }
        try inner.setSize(bytes)
    }
}

/// Puts a device back as an undo file recorded it.
public enum Undo {
    /// Restores every saved pblk and the original size; returns the number of pblks restored.
    @discardableResult
    public static func apply(undoPath: String, to device: BlockDevice) throws -> Int {
        let fd = open(undoPath, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw systemError("cannot open undo file", undoPath, errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw systemError("cannot stat", undoPath, errno: errno) }
        let fileSize = Int(st.st_size)
        var head = [UInt8](repeating: 0, count: 24)
        guard fileSize >= 24 else { throw CBDError("\(undoPath): not an undo file (too short)") }
        try preadAll(fd, &head, 24, 0, what: undoPath)
        guard Array(head[0..<8]) == UndoRecorder.magic, LE.get(head, 16, 8) == UInt64(Units.pblkSize) else {
            throw CBDError("\(undoPath): not a cbd undo file")
        }
        let original = LE.get(head, 8, 8)
        guard original <= UInt64(Int.max / 2) else { throw CBDError("\(undoPath): corrupt undo header") }
        let recordSize = 8 + Units.pblkSize
        let records = (fileSize - 24) / recordSize   // a torn last record is ignored: it was never used
        if Int(original) > device.size { try device.setSize(Int(original)) }
        var restored = Set<Int>()
        var record = [UInt8](repeating: 0, count: recordSize)
        for i in 0..<records {
            try preadAll(fd, &record, recordSize, 24 + i * recordSize, what: undoPath)
            let p = LE.get(record, 0, 8)
            guard p < original / UInt64(Units.pblkSize) else { throw CBDError("\(undoPath): record \(i) names pblk "
                + "\(p) past the device") }
            guard restored.insert(Int(p)).inserted else { continue }
            try record.withUnsafeBytes { try device.write(UnsafeRawBufferPointer(rebasing: $0[8...]),
                at: Int(p) * Units.pblkSize) }
        }
        try device.sync()
        if Int(original) < device.size { try device.setSize(Int(original)) }
        try device.sync()
        return restored.count
    }
}

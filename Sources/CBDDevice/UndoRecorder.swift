// SPDX-License-Identifier: Apache-2.0
import Glibc
import CBDFormat

/// A device wrapper that saves every pblk before it is first overwritten (see `UndoFile`).
package final class UndoRecorder: BlockDevice {
    let inner: BlockDevice
    let fd: Int32
    let undoPath: String
    let originalSize: Int
    /// Saved pblks, in the order saved.
    private var order: [Int] = []
    private var saved = Set<Int>()
    private var end = UndoFile.headBytes

    package init(wrapping inner: BlockDevice, undoPath: String, targetSize: Int) throws {
        self.inner = inner
        self.undoPath = undoPath
        originalSize = inner.size
        let fd = open(undoPath, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw errno == EEXIST
                ? CBDError("\(undoPath): undo file already exists")
                : systemError("cannot create undo file", undoPath, errno: errno)
        }
        self.fd = fd
        do {
            let head = UndoFile.head(original: originalSize, target: targetSize, pblk0: try inner.readPblks(0))
            try pwriteAll(fd, head, head.count, 0, what: undoPath)
            guard fsync(fd) == 0 else { throw systemError("cannot sync", undoPath, errno: errno) }
            try UndoRecorder.syncDirectory(of: undoPath)
        } catch {
            close(fd)
            unlink(undoPath)  // nothing was changed yet: an empty undo file would only mislead
            throw error
        }
    }

    deinit { close(fd) }

    /// The new file's name must survive a power cut as long as pblk 0 asks for it: its folder
    /// is synced too (POSIX makes a file's name durable only so).
    static func syncDirectory(of path: String) throws {
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw systemError("cannot open the undo file's folder", dir, errno: errno) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw systemError("cannot sync the undo file's folder", dir, errno: errno) }
    }

    public var path: String { inner.path }
    public var size: Int { inner.size }
    public var isWritable: Bool { inner.isWritable }

    /// Saves the old contents of every pblk in `range` not saved yet, then syncs the undo file.
    private func save(_ range: Range<Int>) throws {
        guard !range.isEmpty else { return }
        var record = [UInt8](repeating: 0, count: UndoFile.recordBytes)
        var wrote = false
        for p in range.lowerBound / Units.pblkSize..<(range.upperBound + Units.pblkSize - 1) / Units.pblkSize {
            guard (p + 1) * Units.pblkSize <= originalSize, saved.insert(p).inserted else { continue }
            try record.withUnsafeMutableBytes { b in
                try inner.read(
                    into: UnsafeMutableRawBufferPointer(rebasing: b[UndoFile.dataStart...]), at: p * Units.pblkSize)
            }
            UndoFile.seal(&record, pblk: p)
            try pwriteAll(fd, record, record.count, end, what: undoPath)
            end += record.count
            order.append(p)
            wrote = true
        }
        if wrote { guard fsync(fd) == 0 else { throw systemError("cannot sync", undoPath, errno: errno) } }
    }

    /// Removes the undo file when nothing was saved (the rewrite failed before changing
    /// anything): an undo file that restores nothing would only mislead.
    package func discardIfEmpty() {
        if order.isEmpty { unlink(undoPath) }
    }

    /// Marks the undo file complete: the trailer records what the rewrite left, so that
    /// `cbd undo` recognises this device in this state and no other.
    package func finish() throws {
        try inner.sync()
        var sum: UInt32 = 0
        let buffer = ByteBuffer(count: Units.pblkSize)
        for p in order where (p + 1) * Units.pblkSize <= inner.size {
            try inner.read(into: buffer.raw, at: p * Units.pblkSize)
            sum = UndoFile.crc(buffer.base, Units.pblkSize, sum)
        }
        let t = UndoFile.trailer(records: order.count, finalSize: inner.size, sum: sum)
        try pwriteAll(fd, t, t.count, end, what: undoPath)
        guard fsync(fd) == 0 else { throw systemError("cannot sync", undoPath, errno: errno) }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        try inner.read(into: buffer, at: offset)
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: Int) throws {
        try save(offset..<offset + buffer.count)
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
                let range = p * Units.pblkSize..<(p + run) * Units.pblkSize
                if !inner.isHole(range) { try save(range) }
                p += run
            }
        }
        try inner.setSize(bytes)
    }
}
